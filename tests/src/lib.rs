//! Helpers for the end-to-end tests of brig (or any runc-compatible binary).
//!
//! * [`Runtime`] runs `BIN --root ROOT <args>` with a private temporary state root and deletes
//!   (with `--force`) every container id it handed out when dropped, even on panic.
//! * [`Bundle`] is a temporary bundle directory: a busybox rootfs plus a `config.json` built from
//!   [`default_spec`] (the equivalent of `runc spec`, non-terminal) and edited with [`Bundle::with`].
//! * [`assert_no_leftovers`] checks that a container left nothing behind: state dir, cgroups,
//!   mounts, processes.
//!
//! The binary under test is `$BRIG` if set (absolute path; `BRIG=/usr/sbin/runc` validates the
//! tests against runc), else `target/{debug,release}/brig` of this workspace (the newer one).

use serde_json::{json, Value};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long any single runtime command may take before the test fails.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Binary and environment
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Command output
// ---------------------------------------------------------------------------------------------

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
    out_path: PathBuf,
    err_path: PathBuf,
    cmdline: String,
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

// ---------------------------------------------------------------------------------------------
// Runtime
// ---------------------------------------------------------------------------------------------

/// The runtime binary with a private `--root`.
pub struct Runtime {
    bin: PathBuf,
    tmp: tempfile::TempDir,
    root: PathBuf,
    ids: std::sync::Mutex<Vec<String>>,
    n: AtomicUsize,
}

impl Runtime {
    /// The runtime under test, or None (after printing why) when the test cannot run here:
    /// not root, or the binary is missing. Use as `let Some(rt) = Runtime::new("t") else { return };`
    pub fn new(test: &str) -> Option<Runtime> {
        Runtime::with_binary(test, binary_path())
    }

    /// Like [`new`](Self::new), for another binary (a private copy of the runtime under test,
    /// for a test that attacks the binary itself).
    pub fn with_binary(test: &str, bin: PathBuf) -> Option<Runtime> {
        if !is_root() {
            println!("SKIP {test}: needs root (euid is not 0)");
            return None;
        }
        if !bin.is_file() {
            println!(
                "SKIP {test}: runtime binary {} not found (build brig or set BRIG=/usr/sbin/runc)",
                bin.display()
            );
            return None;
        }
        let tmp = tempfile::Builder::new()
            .prefix("brig-rt-")
            .tempdir()
            .expect("tempdir");
        let root = tmp.path().join("state");
        fs::create_dir_all(tmp.path().join("io")).unwrap();
        Some(Runtime {
            bin,
            tmp,
            root,
            ids: Default::default(),
            n: AtomicUsize::new(0),
        })
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The `--root` state directory (not created until the runtime creates it).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True when the binary under test is brig (basename `brig`).
    pub fn is_brig(&self) -> bool {
        self.bin.file_name().map(|n| n == "brig").unwrap_or(false)
    }

    /// For brig-specific checks: returns true (after printing the reason) when the binary is not
    /// brig, so the caller skips the check.
    pub fn skip_unless_brig(&self, what: &str) -> bool {
        if self.is_brig() {
            false
        } else {
            println!(
                "SKIP brig-only check ({what}): binary {} is not brig",
                self.bin.display()
            );
            true
        }
    }

    /// A new unique container id, deleted with `--force` when the Runtime is dropped.
    pub fn new_id(&self, name: &str) -> String {
        let id = unique(name);
        self.track(&id);
        id
    }

    /// Registers an id for cleanup on drop.
    pub fn track(&self, id: &str) {
        self.ids.lock().unwrap().push(id.to_string());
    }

    /// A `Command` for `BIN --root ROOT <global> <args>` (stdin /dev/null, no output redirection).
    pub fn command(&self, global: &[&str], args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root);
        c.args(global);
        c.args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Spawns `BIN --root ROOT <global> <args>` with stdin /dev/null and stdout/stderr to fresh
    /// files.
    pub fn spawn_with(&self, global: &[&str], args: &[&str]) -> Spawned {
        self.spawn_full(None, global, args)
    }

    /// Like [`spawn`](Self::spawn) with the runtime's working directory set to `cwd`.
    pub fn spawn_in(&self, cwd: &Path, args: &[&str]) -> Spawned {
        self.spawn_full(Some(cwd), &[], args)
    }

    fn spawn_full(&self, cwd: Option<&Path>, global: &[&str], args: &[&str]) -> Spawned {
        let n = self.n.fetch_add(1, Ordering::SeqCst);
        let out_path = self.tmp.path().join(format!("io/{n}.out"));
        let err_path = self.tmp.path().join(format!("io/{n}.err"));
        let mut c = self.command(global, args);
        if let Some(d) = cwd {
            c.current_dir(d);
        }
        c.stdout(fs::File::create(&out_path).unwrap());
        c.stderr(fs::File::create(&err_path).unwrap());
        let cmdline = format!(
            "{} --root {} {}",
            self.bin.display(),
            self.root.display(),
            global
                .iter()
                .chain(args.iter())
                .copied()
                .collect::<Vec<_>>()
                .join(" ")
        );
        let child = c.spawn().unwrap_or_else(|e| panic!("spawn {cmdline}: {e}"));
        Spawned {
            child,
            out_path,
            err_path,
            cmdline,
        }
    }

    pub fn spawn(&self, args: &[&str]) -> Spawned {
        self.spawn_with(&[], args)
    }

    /// Runs `BIN --root ROOT <args>` to completion (timeout [`CMD_TIMEOUT`]).
    #[track_caller]
    pub fn cmd(&self, args: &[&str]) -> Out {
        self.spawn(args).wait_timeout(CMD_TIMEOUT)
    }

    /// Like [`cmd`](Self::cmd) with global flags before the subcommand (`--log FILE` ...).
    #[track_caller]
    pub fn cmd_with(&self, global: &[&str], args: &[&str]) -> Out {
        self.spawn_with(global, args).wait_timeout(CMD_TIMEOUT)
    }

    /// Foreground `run --bundle B ID`, stdin /dev/null, output captured.
    #[track_caller]
    pub fn run_capture(&self, bundle: &Bundle, id: &str) -> Out {
        self.track(id);
        self.cmd(&["run", "--bundle", bundle.path_str(), id])
    }

    /// `create --bundle B ID` (container stdio = the runtime's: files).
    #[track_caller]
    pub fn create(&self, bundle: &Bundle, id: &str) -> Out {
        self.track(id);
        self.cmd(&["create", "--bundle", bundle.path_str(), id])
    }

    /// `create` that must succeed.
    #[track_caller]
    pub fn create_ok(&self, bundle: &Bundle, id: &str) {
        self.create(bundle, id).assert_ok();
    }

    #[track_caller]
    pub fn start(&self, id: &str) -> Out {
        self.cmd(&["start", id])
    }

    /// `run -d --bundle B ID`.
    #[track_caller]
    pub fn run_detached(&self, bundle: &Bundle, id: &str) -> Out {
        self.track(id);
        self.cmd(&["run", "-d", "--bundle", bundle.path_str(), id])
    }

    #[track_caller]
    pub fn kill(&self, id: &str, sig: &str) -> Out {
        self.cmd(&["kill", id, sig])
    }

    #[track_caller]
    pub fn delete(&self, id: &str) -> Out {
        self.cmd(&["delete", id])
    }

    #[track_caller]
    pub fn delete_force(&self, id: &str) -> Out {
        self.cmd(&["delete", "--force", id])
    }

    /// `state ID` parsed; Err(output) if the command failed.
    #[track_caller]
    pub fn try_state(&self, id: &str) -> Result<Value, Out> {
        let out = self.cmd(&["state", id]);
        if !out.success() {
            return Err(out);
        }
        Ok(serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("state output is not JSON ({e}): {out}")))
    }

    /// `state ID` parsed; panics if it fails.
    #[track_caller]
    pub fn state(&self, id: &str) -> Value {
        match self.try_state(id) {
            Ok(v) => v,
            Err(out) => panic!("state failed: {out}"),
        }
    }

    /// The `status` field of `state ID`, None if `state` fails.
    #[track_caller]
    pub fn status(&self, id: &str) -> Option<String> {
        self.try_state(id)
            .ok()
            .and_then(|v| v["status"].as_str().map(str::to_string))
    }

    /// The `pid` field of `state ID`.
    #[track_caller]
    pub fn pid(&self, id: &str) -> i32 {
        self.state(id)["pid"].as_i64().expect("state has pid") as i32
    }

    /// Polls `state` until status == `want`; panics after `timeout`.
    #[track_caller]
    pub fn wait_status(&self, id: &str, want: &str, timeout: Duration) {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < timeout {
            last = self.status(id);
            if last.as_deref() == Some(want) {
                return;
            }
            sleep(Duration::from_millis(20));
        }
        panic!("container {id}: status {last:?} after {timeout:?}, wanted {want:?}");
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut *self.ids.lock().unwrap());
        for id in ids {
            if let Ok(child) = self
                .command(&[], &["delete", "--force", &id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                let _ = wait_child(child, Duration::from_secs(10));
            }
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

// ---------------------------------------------------------------------------------------------
// Rootfs and bundle
// ---------------------------------------------------------------------------------------------

/// Where busybox lives on the host.
pub fn busybox_path() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    panic!("busybox not found: apt-get install -y busybox-static");
}

/// busybox's applets, asked once per test process.
fn applets() -> &'static [String] {
    static APPLETS: OnceLock<Vec<String>> = OnceLock::new();
    APPLETS.get_or_init(|| {
        let out = Command::new(busybox_path())
            .arg("--list")
            .output()
            .expect("busybox --list");
        assert!(out.status.success(), "busybox --list failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty() && l != "busybox" && !l.contains('/'))
            .collect()
    })
}

pub const ETC_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
brig:x:1000:1000:brig test user:/tmp:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
";

pub const ETC_GROUP: &str = "root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
tty:x:5:
uucp:x:10:
dialout:x:20:
audio:x:29:
brig:x:1000:
nogroup:x:65534:
";

/// Builds a busybox rootfs in `dir` (created if missing): bin/busybox plus a symlink per applet,
/// etc/{passwd,group,hostname}, tmp (1777), proc sys dev root mnt dirs; `dir` gets mode 0755.
pub fn busybox_rootfs(dir: &Path) {
    let d = |p: &str, mode: u32| {
        let path = dir.join(p);
        fs::create_dir_all(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    };
    d("", 0o755);
    for p in [
        "bin", "etc", "proc", "sys", "dev", "root", "mnt", "usr", "usr/bin",
    ] {
        d(p, 0o755);
    }
    d("tmp", 0o1777);
    fs::copy(busybox_path(), dir.join("bin/busybox")).expect("copy busybox");
    fs::set_permissions(dir.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
    for a in applets() {
        let _ = symlink("busybox", dir.join("bin").join(a));
    }
    fs::write(dir.join("etc/passwd"), ETC_PASSWD).unwrap();
    fs::write(dir.join("etc/group"), ETC_GROUP).unwrap();
    fs::write(dir.join("etc/hostname"), "brig-test\n").unwrap();
}

/// The default config: what `runc spec` writes, but non-terminal, ociVersion 1.0.2, without
/// ambient capabilities and running `args`.
pub fn default_spec(args: &[&str]) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024u64, "soft": 1024u64}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "brig",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

/// A temporary bundle: `<dir>/rootfs` (busybox) and `<dir>/config.json`.
pub struct Bundle {
    dir: tempfile::TempDir,
    path_str: String,
    config: Value,
}

impl Bundle {
    /// A bundle running `args` with the default spec.
    pub fn new(args: &[&str]) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("brig-bundle-")
            .tempdir()
            .expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        busybox_rootfs(&dir.path().join("rootfs"));
        let path_str = dir.path().to_str().expect("utf-8 temp path").to_string();
        let b = Bundle {
            dir,
            path_str,
            config: default_spec(args),
        };
        b.write_config();
        b
    }

    /// A bundle running `sh -c SCRIPT`.
    pub fn sh(script: &str) -> Bundle {
        Bundle::new(&["sh", "-c", script])
    }

    /// Edits the config (builder style) and rewrites config.json.
    pub fn with(mut self, f: impl FnOnce(&mut Value)) -> Self {
        self.edit(f);
        self
    }

    /// Edits the config in place and rewrites config.json.
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) {
        f(&mut self.config);
        self.write_config();
    }

    pub fn config(&self) -> &Value {
        &self.config
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn path_str(&self) -> &str {
        &self.path_str
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    /// Writes the current config to config.json.
    pub fn write_config(&self) {
        fs::write(
            self.config_path(),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    /// Overwrites config.json with arbitrary text.
    pub fn write_raw_config(&self, text: &str) {
        fs::write(self.config_path(), text).unwrap();
    }

    /// `linux.cgroupsPath` of the config, if any.
    pub fn cgroups_path(&self) -> Option<String> {
        self.config["linux"]["cgroupsPath"]
            .as_str()
            .map(str::to_string)
    }

    /// A new directory inside the bundle dir (host side), e.g. for hook output or bind mounts.
    pub fn host_dir(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::create_dir_all(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o777)).unwrap();
        p
    }
}

// Config editing shorthands ---------------------------------------------------------------------

/// Sets process.args.
pub fn set_args(cfg: &mut Value, args: &[&str]) {
    cfg["process"]["args"] = json!(args);
}

/// Appends a mount.
pub fn add_mount(cfg: &mut Value, mount: Value) {
    cfg["mounts"].as_array_mut().unwrap().push(mount);
}

/// Removes the namespace of `ty` from linux.namespaces.
pub fn remove_namespace(cfg: &mut Value, ty: &str) {
    cfg["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != ty);
}

/// Sets (or adds) the namespace of `ty` with `path`.
pub fn set_namespace_path(cfg: &mut Value, ty: &str, path: &str) {
    remove_namespace(cfg, ty);
    cfg["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": ty, "path": path}));
}

// ---------------------------------------------------------------------------------------------
// Leftover checker
// ---------------------------------------------------------------------------------------------

/// This process's cgroup path per v1 controller (and "" for the v2 line), from /proc/self/cgroup.
fn own_cgroups() -> Vec<(String, String)> {
    fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _ = it.next()?;
            let ctrls = it.next()?.to_string();
            let path = it.next()?.to_string();
            Some((ctrls, path))
        })
        .collect()
}

/// The cgroup directories a container with this id / cgroupsPath could have been put in:
/// `/sys/fs/cgroup/<ctrl>/<id>`, `/sys/fs/cgroup/<ctrl>/<our cgroup>/<id>`, and the same for
/// cgroupsPath (absolute: under the mount; relative: also under our own cgroup).
pub fn candidate_cgroup_dirs(id: &str, cgroups_path: Option<&str>) -> Vec<PathBuf> {
    let own = own_cgroups();
    let mut names = Vec::new();
    if !id.is_empty() {
        names.push(id.to_string());
    }
    if let Some(p) = cgroups_path {
        if !p.is_empty() {
            // "slice:prefix:name" (systemd driver) ends with the name
            let n = if p.contains(':') {
                p.rsplit(':').next().unwrap()
            } else {
                p.trim_start_matches('/')
            };
            if !n.is_empty() {
                names.push(n.to_string());
            }
        }
    }
    let mut dirs = Vec::new();
    let Ok(rd) = fs::read_dir("/sys/fs/cgroup") else {
        return dirs;
    };
    for e in rd.flatten() {
        let mount = e.path();
        if !mount.is_dir() {
            continue;
        }
        let ctrl = e.file_name().to_string_lossy().into_owned();
        let mut parents = vec![mount.clone()];
        for (ctrls, path) in &own {
            let matches = if ctrl == "unified" {
                ctrls.is_empty()
            } else {
                ctrls
                    .split(',')
                    .any(|c| c == ctrl || c == format!("name={ctrl}"))
            };
            if matches && path != "/" {
                parents.push(mount.join(path.trim_start_matches('/')));
            }
        }
        // cgroup v2 mounted directly at /sys/fs/cgroup
        if ctrl.starts_with("cgroup.") {
            continue;
        }
        for p in &parents {
            for n in &names {
                dirs.push(p.join(n));
            }
        }
    }
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        for n in &names {
            dirs.push(Path::new("/sys/fs/cgroup").join(n));
        }
    }
    dirs
}

/// Processes whose cwd or root is inside `dir`: the link target starts with `dir`, or (for
/// processes in another mount namespace, whose links cannot be resolved to a path from here)
/// the directory it points at is `dir` itself or `dir/rootfs` (same device and inode).
pub fn processes_in(dir: &Path) -> Vec<(i32, PathBuf)> {
    use std::os::unix::fs::MetadataExt;
    let mut found = Vec::new();
    let ids: Vec<(u64, u64)> = [dir.to_path_buf(), dir.join("rootfs")]
        .iter()
        .filter_map(|p| fs::metadata(p).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    let Ok(rd) = fs::read_dir("/proc") else {
        return found;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        for what in ["cwd", "root"] {
            let link = e.path().join(what);
            let Ok(target) = fs::read_link(&link) else {
                continue;
            };
            let same_inode = fs::metadata(&link)
                .map(|m| ids.contains(&(m.dev(), m.ino())))
                .unwrap_or(false);
            if target.starts_with(dir) || same_inode {
                found.push((pid, link));
                break;
            }
        }
    }
    found
}

/// Asserts the container `id` left nothing behind: no state dir `ROOT/ID`, no cgroup dir for it,
/// no host mount mentioning the bundle dir, no process with cwd/root in the bundle.
#[track_caller]
pub fn assert_no_leftovers(rt: &Runtime, id: &str, bundle: &Bundle) {
    assert_no_leftovers_at(
        rt.root(),
        id,
        bundle.path(),
        bundle.cgroups_path().as_deref(),
    );
}

/// [`assert_no_leftovers`] with explicit paths.
#[track_caller]
pub fn assert_no_leftovers_at(
    root: &Path,
    id: &str,
    bundle_dir: &Path,
    cgroups_path: Option<&str>,
) {
    let mut problems = Vec::new();
    // Processes can take a moment to be reaped after a kill; give them a short grace period.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        problems.clear();
        if !id.is_empty() && !id.contains('/') && id != ".." && id != "." {
            let st = root.join(id);
            if st.exists() {
                problems.push(format!("state dir {} still exists", st.display()));
            }
        }
        for d in candidate_cgroup_dirs(id, cgroups_path) {
            if d.is_dir() {
                problems.push(format!("cgroup dir {} still exists", d.display()));
            }
        }
        let bundle_s = bundle_dir.to_string_lossy();
        for l in fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
        {
            if l.contains(&*bundle_s) {
                problems.push(format!("mount left: {l}"));
            }
        }
        for (pid, t) in processes_in(bundle_dir) {
            problems.push(format!(
                "process {pid}: {} is inside the bundle",
                t.display()
            ));
        }
        if problems.is_empty() || Instant::now() > deadline {
            break;
        }
        sleep(Duration::from_millis(50));
    }
    assert!(
        problems.is_empty(),
        "container {id} left things behind:\n  {}",
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------------------------

/// Polls `f` every 10ms until it returns true; false after `timeout`.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        sleep(Duration::from_millis(10));
    }
    f()
}

/// True if the process exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            // state is the field after the ")" that closes comm
            let st = s
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start())
                .unwrap_or("");
            !st.starts_with('Z') && !st.starts_with('X')
        }
        Err(_) => false,
    }
}

/// Sends a signal to a host pid.
pub fn kill_pid(pid: i32, sig: i32) {
    // SAFETY: plain kill(2).
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Linux capability names (without the CAP_ prefix) in bit order.
pub const CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The bit mask of capability names ("CAP_KILL" or "KILL").
pub fn cap_mask(names: &[&str]) -> u64 {
    names.iter().fold(0, |m, n| {
        let n = n.strip_prefix("CAP_").unwrap_or(n);
        let bit = CAPABILITIES
            .iter()
            .position(|c| *c == n)
            .unwrap_or_else(|| panic!("unknown capability {n}"));
        m | (1u64 << bit)
    })
}

/// A field of a /proc/PID/status-like text ("CapEff" -> "0000000020000420").
pub fn status_field<'a>(status: &'a str, field: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == field).then(|| v.trim())
    })
}

/// Reads a file to a trimmed string, panicking with the path on error.
#[track_caller]
pub fn read_trim(p: impl AsRef<Path>) -> String {
    let p = p.as_ref();
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// The seccomp syscall table without mkdir/mkdirat, see [`SYSCALLS_EXCEPT_MKDIR`].
#[cfg(target_arch = "x86_64")]
pub fn syscalls_except_mkdir() -> Vec<&'static str> {
    SYSCALLS_EXCEPT_MKDIR.to_vec()
}

/// x86_64 syscall names except `mkdir`/`mkdirat` (from the kernel's unistd_64.h), for an
/// allow-list seccomp profile whose default action is an errno.
#[cfg(target_arch = "x86_64")]
pub const SYSCALLS_EXCEPT_MKDIR: &[&str] = &[
    "read",
    "write",
    "open",
    "close",
    "stat",
    "fstat",
    "lstat",
    "poll",
    "lseek",
    "mmap",
    "mprotect",
    "munmap",
    "brk",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "ioctl",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "access",
    "pipe",
    "select",
    "sched_yield",
    "mremap",
    "msync",
    "mincore",
    "madvise",
    "shmget",
    "shmat",
    "shmctl",
    "dup",
    "dup2",
    "pause",
    "nanosleep",
    "getitimer",
    "alarm",
    "setitimer",
    "getpid",
    "sendfile",
    "socket",
    "connect",
    "accept",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "shutdown",
    "bind",
    "listen",
    "getsockname",
    "getpeername",
    "socketpair",
    "setsockopt",
    "getsockopt",
    "clone",
    "fork",
    "vfork",
    "execve",
    "exit",
    "wait4",
    "kill",
    "uname",
    "semget",
    "semop",
    "semctl",
    "shmdt",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "fcntl",
    "flock",
    "fsync",
    "fdatasync",
    "truncate",
    "ftruncate",
    "getdents",
    "getcwd",
    "chdir",
    "fchdir",
    "rename",
    "rmdir",
    "creat",
    "link",
    "unlink",
    "symlink",
    "readlink",
    "chmod",
    "fchmod",
    "chown",
    "fchown",
    "lchown",
    "umask",
    "gettimeofday",
    "getrlimit",
    "getrusage",
    "sysinfo",
    "times",
    "ptrace",
    "getuid",
    "syslog",
    "getgid",
    "setuid",
    "setgid",
    "geteuid",
    "getegid",
    "setpgid",
    "getppid",
    "getpgrp",
    "setsid",
    "setreuid",
    "setregid",
    "getgroups",
    "setgroups",
    "setresuid",
    "getresuid",
    "setresgid",
    "getresgid",
    "getpgid",
    "setfsuid",
    "setfsgid",
    "getsid",
    "capget",
    "capset",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigqueueinfo",
    "rt_sigsuspend",
    "sigaltstack",
    "utime",
    "mknod",
    "uselib",
    "personality",
    "ustat",
    "statfs",
    "fstatfs",
    "sysfs",
    "getpriority",
    "setpriority",
    "sched_setparam",
    "sched_getparam",
    "sched_setscheduler",
    "sched_getscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_rr_get_interval",
    "mlock",
    "munlock",
    "mlockall",
    "munlockall",
    "vhangup",
    "modify_ldt",
    "pivot_root",
    "_sysctl",
    "prctl",
    "arch_prctl",
    "adjtimex",
    "setrlimit",
    "chroot",
    "sync",
    "acct",
    "settimeofday",
    "mount",
    "umount2",
    "swapon",
    "swapoff",
    "reboot",
    "sethostname",
    "setdomainname",
    "iopl",
    "ioperm",
    "create_module",
    "init_module",
    "delete_module",
    "get_kernel_syms",
    "query_module",
    "quotactl",
    "nfsservctl",
    "getpmsg",
    "putpmsg",
    "afs_syscall",
    "tuxcall",
    "security",
    "gettid",
    "readahead",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "tkill",
    "time",
    "futex",
    "sched_setaffinity",
    "sched_getaffinity",
    "set_thread_area",
    "io_setup",
    "io_destroy",
    "io_getevents",
    "io_submit",
    "io_cancel",
    "get_thread_area",
    "lookup_dcookie",
    "epoll_create",
    "epoll_ctl_old",
    "epoll_wait_old",
    "remap_file_pages",
    "getdents64",
    "set_tid_address",
    "restart_syscall",
    "semtimedop",
    "fadvise64",
    "timer_create",
    "timer_settime",
    "timer_gettime",
    "timer_getoverrun",
    "timer_delete",
    "clock_settime",
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "exit_group",
    "epoll_wait",
    "epoll_ctl",
    "tgkill",
    "utimes",
    "vserver",
    "mbind",
    "set_mempolicy",
    "get_mempolicy",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
    "kexec_load",
    "waitid",
    "add_key",
    "request_key",
    "keyctl",
    "ioprio_set",
    "ioprio_get",
    "inotify_init",
    "inotify_add_watch",
    "inotify_rm_watch",
    "migrate_pages",
    "openat",
    "mknodat",
    "fchownat",
    "futimesat",
    "newfstatat",
    "unlinkat",
    "renameat",
    "linkat",
    "symlinkat",
    "readlinkat",
    "fchmodat",
    "faccessat",
    "pselect6",
    "ppoll",
    "unshare",
    "set_robust_list",
    "get_robust_list",
    "splice",
    "tee",
    "sync_file_range",
    "vmsplice",
    "move_pages",
    "utimensat",
    "epoll_pwait",
    "signalfd",
    "timerfd_create",
    "eventfd",
    "fallocate",
    "timerfd_settime",
    "timerfd_gettime",
    "accept4",
    "signalfd4",
    "eventfd2",
    "epoll_create1",
    "dup3",
    "pipe2",
    "inotify_init1",
    "preadv",
    "pwritev",
    "rt_tgsigqueueinfo",
    "perf_event_open",
    "recvmmsg",
    "fanotify_init",
    "fanotify_mark",
    "prlimit64",
    "name_to_handle_at",
    "open_by_handle_at",
    "clock_adjtime",
    "syncfs",
    "sendmmsg",
    "setns",
    "getcpu",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "finit_module",
    "sched_setattr",
    "sched_getattr",
    "renameat2",
    "seccomp",
    "getrandom",
    "memfd_create",
    "kexec_file_load",
    "bpf",
    "execveat",
    "userfaultfd",
    "membarrier",
    "mlock2",
    "copy_file_range",
    "preadv2",
    "pwritev2",
    "pkey_mprotect",
    "pkey_alloc",
    "pkey_free",
    "statx",
    "io_pgetevents",
    "rseq",
    "pidfd_send_signal",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "pidfd_open",
    "clone3",
    "close_range",
    "openat2",
    "pidfd_getfd",
    "faccessat2",
    "process_madvise",
    "epoll_pwait2",
    "mount_setattr",
    "quotactl_fd",
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
];

// ---------------------------------------------------------------------------------------------
// brig-build
// ---------------------------------------------------------------------------------------------

/// The image builder under test: `$BRIG_BUILD`, else the newer of `target/{debug,release}/
/// brig-build` (honouring `$CARGO_TARGET_DIR`).
pub fn builder_path() -> PathBuf {
    workspace_binary("BRIG_BUILD", "brig-build")
}

// ---------------------------------------------------------------------------------------------
// containerd and the shim
// ---------------------------------------------------------------------------------------------

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

/// sha256 of a file, hex (by `sha256sum`, which coreutils always has).
fn sha256_file(p: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum prints a digest")
        .to_string()
}

/// Writes an OCI image archive (a tar of an OCI layout) of a busybox rootfs whose index names
/// it `name` (`io.containerd.image.name`), as `ctr image import` reads it. Returns its path.
pub fn busybox_oci_archive(dir: &Path, name: &str) -> PathBuf {
    let rootfs = dir.join("image-rootfs");
    busybox_rootfs(&rootfs);
    let layout = dir.join("image-layout");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let add_blob = |path: &Path| -> (String, u64) {
        let digest = sha256_file(path);
        let size = fs::metadata(path).unwrap().len();
        fs::rename(path, blobs.join(&digest)).unwrap();
        (digest, size)
    };
    let layer = dir.join("layer.tar");
    let st = Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(&rootfs)
        .arg("-cf")
        .arg(&layer)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success(), "tar of the busybox rootfs failed");
    let (layer_digest, layer_size) = add_blob(&layer);
    let config = dir.join("config.json");
    let config_json = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]},
    });
    fs::write(&config, config_json.to_string()).unwrap();
    let (config_digest, config_size) = add_blob(&config);
    let manifest = dir.join("manifest.json");
    let manifest_json = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{config_digest}"), "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{layer_digest}"), "size": layer_size}],
    });
    fs::write(&manifest, manifest_json.to_string()).unwrap();
    let (manifest_digest, manifest_size) = add_blob(&manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": format!("sha256:{manifest_digest}"), "size": manifest_size,
                       "annotations": {"io.containerd.image.name": name,
                                       "org.opencontainers.image.ref.name": "latest"}}],
    });
    fs::write(layout.join("index.json"), index.to_string()).unwrap();
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let archive = dir.join("busybox-oci.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success(), "tar of the OCI layout failed");
    archive
}

/// A containerd of our own: config, root, state and sockets in a temporary directory, with
/// `bin/` first in its PATH holding `containerd-shim-brig-v2` (the shim under test) and `brig`
/// (the runtime under test). Dropping it stops containerd and every shim it started, and
/// unmounts what they left.
pub struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
    pub namespace: String,
}

impl Containerd {
    /// Starts containerd; `Err` says why it cannot run here (the caller skips).
    pub fn start() -> Result<Containerd, String> {
        if !is_root() {
            return Err("needs root".into());
        }
        for tool in ["containerd", "ctr", "script"] {
            let found = std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
                .unwrap_or(false);
            if !found {
                return Err(format!(
                    "{tool} is not installed (scripts/deps.sh installs it)"
                ));
            }
        }
        let shim = shim_path();
        assert!(
            shim.is_file(),
            "{} is missing: cargo build -p containerd-shim-brig-v2",
            shim.display()
        );
        let brig = binary_path();
        assert!(
            brig.is_file(),
            "{} is missing: cargo build -p brig",
            brig.display()
        );
        // Short: the shim's sockets and containerd's paths live below it.
        let dir = tempfile::Builder::new()
            .prefix("brig-ctrd-")
            .tempdir_in("/tmp")
            .map_err(|e| format!("tempdir: {e}"))?;
        let d = dir.path();
        let bin = d.join("bin");
        fs::create_dir_all(&bin).unwrap();
        symlink(&shim, bin.join("containerd-shim-brig-v2")).unwrap();
        symlink(&brig, bin.join("brig")).unwrap();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n",
            d = d.display()
        );
        fs::write(d.join("config.toml"), config).unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("containerd cannot start: {e}"))?;
        let mut c = Containerd {
            dir,
            child,
            namespace: "brigtest".into(),
        };
        let up = wait_for(Duration::from_secs(15), || c.ctr(&["version"]).success());
        if !up {
            let log = fs::read_to_string(c.dir.path().join("containerd.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            let _ = c.child.kill();
            return Err(format!(
                "containerd did not answer on its socket within 15 s; its log ends: {}",
                tail.join(" | ")
            ));
        }
        Ok(c)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills containerd (SIGKILL: no clean shutdown) and starts it again on
    /// the same config and state dirs; its shims keep running meanwhile.
    pub fn restart(&mut self) -> Result<(), String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let d = self.dir.path();
        let path = format!(
            "{}:{}",
            d.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = fs::OpenOptions::new()
            .append(true)
            .open(d.join("containerd.log"))
            .map_err(|e| format!("containerd.log: {e}"))?;
        self.child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("containerd cannot start again: {e}"))?;
        if wait_for(Duration::from_secs(15), || self.ctr(&["version"]).success()) {
            Ok(())
        } else {
            Err("containerd did not answer after its restart".into())
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    /// `ctr -a SOCK -n NS ARGS` (at most 60 s).
    pub fn ctr(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new("ctr");
        cmd.arg("-a")
            .arg(self.socket())
            .arg("-n")
            .arg(&self.namespace)
            .args(args);
        run_timeout(&mut cmd, Duration::from_secs(60))
    }

    /// `ctr ... ARGS` inside a pseudo-terminal (`script`), for `run -t`.
    pub fn ctr_tty(&self, args: &[&str]) -> Out {
        let mut line = format!("ctr -a {} -n {}", self.socket().display(), self.namespace);
        for a in args {
            line.push_str(&format!(" '{}'", a.replace('\'', "'\\''")));
        }
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"]);
        run_timeout(&mut cmd, Duration::from_secs(60))
    }

    /// Imports a busybox image made here; returns its name.
    pub fn import_busybox(&self) -> String {
        let name = "docker.io/brigtest/busybox:latest";
        let archive = busybox_oci_archive(self.dir.path(), name);
        self.ctr(&["image", "import", archive.to_str().unwrap()])
            .assert_ok();
        name.to_string()
    }

    /// Pids of the shims serving this containerd (their command line names its socket).
    pub fn shim_pids(&self) -> Vec<i32> {
        let sock = self.socket().display().to_string();
        let mut pids = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if args
                .first()
                .map(|a| a.contains("containerd-shim"))
                .unwrap_or(false)
                && args.contains(&sock)
            {
                pids.push(pid);
            }
        }
        pids
    }

    /// Mount points below our directory.
    pub fn mounts(&self) -> Vec<String> {
        let prefix = format!("{}/", self.dir.path().display());
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|p| p.starts_with(&prefix))
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in self.shim_pids() {
            kill_pid(pid, libc::SIGKILL);
        }
        let mut mounts = self.mounts();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            if let Ok(c) = std::ffi::CString::new(m) {
                // SAFETY: umount2 with a valid C string.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rootless: the runtime run by an unprivileged user
// ---------------------------------------------------------------------------------------------

/// The unprivileged user that rootless tests run the runtime as.
pub const ROOTLESS_USER: &str = "brigrootless";

/// [`ROOTLESS_USER`]'s uid and gid, creating the user (a system user without home) when missing.
pub fn rootless_user() -> (u32, u32) {
    let id = |flag: &str| {
        Command::new("id")
            .args([flag, ROOTLESS_USER])
            .output()
            .unwrap()
    };
    if !id("-u").status.success() {
        let st = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                ROOTLESS_USER,
            ])
            .status()
            .unwrap();
        assert!(st.success(), "useradd {ROOTLESS_USER}");
    }
    let num = |flag: &str| {
        String::from_utf8(id(flag).stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (num("-u"), num("-g"))
}

/// A bundle dir (busybox rootfs, no config yet) and an XDG_RUNTIME_DIR, both owned by
/// [`ROOTLESS_USER`], in a temporary dir others may enter. Returns (temp dir, bundle, xdg).
pub fn rootless_bundle() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (uid, gid) = rootless_user();
    let top = tempfile::tempdir().unwrap();
    fs::set_permissions(top.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let bundle = top.path().join("bundle");
    fs::create_dir(&bundle).unwrap();
    busybox_rootfs(&bundle.join("rootfs"));
    let xdg = top.path().join("xdg");
    fs::create_dir(&xdg).unwrap();
    fs::set_permissions(&xdg, fs::Permissions::from_mode(0o700)).unwrap();
    let st = Command::new("chown")
        .args(["-R", &format!("{uid}:{gid}")])
        .arg(&bundle)
        .arg(&xdg)
        .status()
        .unwrap();
    assert!(st.success());
    (top, bundle, xdg)
}

/// `BIN ARGS` as [`ROOTLESS_USER`] (runuser) in `dir`, with XDG_RUNTIME_DIR=`xdg`, stdin
/// /dev/null and output to files (a detached container keeps its stdio open).
pub fn run_as_rootless_user(bin: &Path, xdg: &Path, dir: &Path, args: &[&str]) -> Out {
    let out_f = tempfile::NamedTempFile::new().unwrap();
    let err_f = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new("runuser")
        .args(["-u", ROOTLESS_USER, "--", "env"])
        .arg(format!("XDG_RUNTIME_DIR={}", xdg.display()))
        .arg(bin)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out_f.reopen().unwrap())
        .stderr(err_f.reopen().unwrap())
        .spawn()
        .unwrap();
    let st = wait_child(child, CMD_TIMEOUT).expect("the runtime as the rootless user timed out");
    Out {
        code: st.code().unwrap_or(-1),
        stdout: fs::read_to_string(out_f.path()).unwrap_or_default(),
        stderr: fs::read_to_string(err_f.path()).unwrap_or_default(),
        cmdline: format!(
            "runuser -u {ROOTLESS_USER} -- {} {}",
            bin.display(),
            args.join(" ")
        ),
    }
}

/// One message from a unix socket: its bytes (at most `max`) and the fd it carried with
/// SCM_RIGHTS, if any. What a runtime sends to a console socket or a seccomp agent.
pub fn recv_with_fd(
    conn: &std::os::unix::net::UnixStream,
    max: usize,
) -> (Vec<u8>, Option<std::os::fd::OwnedFd>) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut buf = vec![0u8; max];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::empty(),
    )
    .expect("recvmsg");
    let mut fd = None;
    for c in msg.cmsgs().expect("cmsgs") {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel gave us this fd.
            fd = Some(unsafe { OwnedFd::from_raw_fd(fds[0]) });
        }
    }
    let n = msg.bytes;
    buf.truncate(n);
    (buf, fd)
}

/// Accepts one connection on a `--console-socket` listener and returns (from a thread) the pty
/// master the runtime sends over it with SCM_RIGHTS.
pub fn receive_console_master(
    listener: std::os::unix::net::UnixListener,
) -> std::thread::JoinHandle<std::os::fd::OwnedFd> {
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().expect("accept on console socket");
        recv_with_fd(&conn, 256)
            .1
            .expect("no fd on the console socket")
    })
}
