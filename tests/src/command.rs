//! Running the binaries under test: where they are, their output, waiting with a limit.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long any single runtime command may take before the test fails.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// The workspace directory (parent of this crate).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate has a parent dir")
        .to_path_buf()
}

/// The binary under test: `$BRIG`, else the newer of `target/debug/brig` and
/// `target/release/brig` (honouring `$CARGO_TARGET_DIR`).
pub fn binary_path() -> PathBuf {
    workspace_binary("BRIG", "brig")
}

/// `$VAR` if set, else the newer of `target/{debug,release}/NAME` (honouring
/// `$CARGO_TARGET_DIR`); the shared lookup of every binary under test.
pub fn workspace_binary(var: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target"));
    let candidates = [
        target.join("debug").join(name),
        target.join("release").join(name),
    ];
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    candidates
        .iter()
        .filter_map(|p| mtime(p).map(|t| (t, p.clone())))
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p)
        .unwrap_or_else(|| candidates[0].clone())
}

/// True if we run as root (euid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A name unique within this machine run: `<prefix>-<pid>-<counter><random>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}{:04x}", std::process::id(), nanos & 0xffff)
}

/// The result of one runtime invocation.
#[derive(Debug, Clone)]
pub struct Out {
    /// Exit code, or 128+signal if the runtime itself died of a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The command line, for messages.
    pub cmdline: String,
}

impl Out {
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Panics with the full output unless the command exited 0.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(self.success(), "command failed: {self}");
        self
    }

    /// Panics with the full output unless the command exited non-zero.
    #[track_caller]
    pub fn assert_fail(&self) -> &Self {
        assert!(!self.success(), "command unexpectedly succeeded: {self}");
        self
    }

    /// stdout with trailing whitespace removed.
    pub fn out(&self) -> &str {
        self.stdout.trim_end()
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline, self.code, self.stdout, self.stderr
        )
    }
}

fn exit_code(st: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

/// A spawned runtime process whose stdout/stderr go to files (never pipes: a detached container
/// inherits them and would keep a pipe open forever).
pub struct Spawned {
    pub child: Child,
    pub(crate) out_path: PathBuf,
    pub(crate) err_path: PathBuf,
    pub(crate) cmdline: String,
}

impl Spawned {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `sig` to the runtime process itself.
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Non-blocking: Some(output) if the process has exited.
    pub fn try_wait(&mut self) -> Option<Out> {
        self.child
            .try_wait()
            .expect("try_wait")
            .map(|st| self.collect(st))
    }

    /// Waits at most `timeout`; on timeout kills the process and panics.
    #[track_caller]
    pub fn wait_timeout(mut self, timeout: Duration) -> Out {
        let start = Instant::now();
        loop {
            if let Some(out) = self.try_wait() {
                return out;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                let st = self.child.wait().expect("wait");
                let out = self.collect(st);
                panic!("timed out after {timeout:?}: {out}");
            }
            sleep(Duration::from_millis(5));
        }
    }

    fn collect(&self, st: ExitStatus) -> Out {
        let read = |p: &Path| {
            let mut s = String::new();
            if let Ok(mut f) = fs::File::open(p) {
                let mut b = Vec::new();
                let _ = f.read_to_end(&mut b);
                s = String::from_utf8_lossy(&b).into_owned();
            }
            s
        };
        Out {
            code: exit_code(st),
            stdout: read(&self.out_path),
            stderr: read(&self.err_path),
            cmdline: self.cmdline.clone(),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits for `child` at most `timeout`; kills it after that. None on timeout.
pub fn wait_child(mut child: Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if start.elapsed() < timeout => sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// The image builder under test: `$BRIG_BUILD`, else the newer of `target/{debug,release}/
/// brig-build` (honouring `$CARGO_TARGET_DIR`).
pub fn builder_path() -> PathBuf {
    workspace_binary("BRIG_BUILD", "brig-build")
}

/// The shim under test: `$BRIG_SHIM`, else the newer of `target/{debug,release}/
/// containerd-shim-brig-v2` (honouring `$CARGO_TARGET_DIR`).
pub fn shim_path() -> PathBuf {
    workspace_binary("BRIG_SHIM", "containerd-shim-brig-v2")
}

/// Runs `cmd` with stdout/stderr in files, killing it after `timeout` (then the result has
/// code 137 and says so in stderr).
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> Out {
    run_timeout_input(cmd, None, timeout)
}

/// [`run_timeout`] with `input` written to the command's stdin, which stays open (no EOF)
/// until the command exits; `None` gives it /dev/null.
pub fn run_timeout_input(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Out {
    let dir = tempfile::tempdir().expect("tempdir");
    let (o, e) = (dir.path().join("out"), dir.path().join("err"));
    let cmdline = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(fs::File::create(&o).expect("out file"))
        .stderr(fs::File::create(&e).expect("err file"))
        .spawn()
        .unwrap_or_else(|err| panic!("spawn {cmdline}: {err}"));
    // Held until the child is reaped, so the command never sees EOF on stdin.
    let _stdin = input.map(|bytes| {
        let mut w = child.stdin.take().expect("piped stdin");
        w.write_all(bytes).expect("write stdin");
        w
    });
    let st = wait_child_or_kill(&mut child, timeout);
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    let mut stderr = read(&e);
    let code = match st {
        Some(st) => exit_code(st),
        None => {
            stderr.push_str(&format!("\n[killed after {timeout:?}]"));
            137
        }
    };
    Out {
        code,
        stdout: read(&o),
        stderr,
        cmdline,
    }
}

fn wait_child_or_kill(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        sleep(Duration::from_millis(10));
    }
}
