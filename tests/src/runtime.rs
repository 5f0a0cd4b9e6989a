//! [`Runtime`]: the runtime under test with a private state root, and the containers it made removed on drop.

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::bundle::Bundle;
use crate::command::{binary_path, is_root, unique, wait_child, Out, Spawned, CMD_TIMEOUT};

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
