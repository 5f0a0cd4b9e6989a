//! The runtime, driven only through its command line, as runc's shim does:
//! `BIN --root ROOT --log LOG --log-format json COMMAND ...`. Works with
//! brig, runc or crun.
//!
//! A failed command's error is the runtime's last `"level":"error"` line
//! written to LOG during that command (what runc writes for containerd), else
//! its stderr, else its exit status.
//!
//! Must never: wait for the commands it spawns itself: their status comes
//! from the [`crate::reaper`].

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, IoContext, Result};
use crate::reaper::reaper;

/// The runtime binary the shim uses when no `BinaryName` option is given.
pub const DEFAULT_BINARY: &str = "brig";
/// The runtime's state root when no `Root` option is given (one folder per
/// containerd namespace below it).
pub const DEFAULT_ROOT: &str = "/run/containerd/brig";

#[derive(Debug, Clone)]
pub struct Runtime {
    pub binary: PathBuf,
    pub root: PathBuf,
    pub log: PathBuf,
    /// Pass `--systemd-cgroup` (containerd's `SystemdCgroup = true`), as runc's shim does.
    pub systemd_cgroup: bool,
    /// Pass `--criu PATH` (the runc options' `CriuPath`), as runc's shim does.
    pub criu: Option<PathBuf>,
}

/// Stdio for the runtime process of `create`/`exec` (the container gets it).
pub struct ChildStdio {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

impl ChildStdio {
    pub fn null() -> ChildStdio {
        ChildStdio {
            stdin: Stdio::null(),
            stdout: Stdio::null(),
            stderr: Stdio::null(),
        }
    }
}

/// Finds `name`: as is if it has a slash; else next to the shim (as invoked
/// and as resolved); else in `PATH`.
pub fn find_binary(name: &str) -> PathBuf {
    if name.contains('/') {
        return PathBuf::from(name);
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(arg0) = std::env::args_os().next() {
        let arg0 = PathBuf::from(arg0);
        if arg0.components().count() > 1 {
            if let Some(d) = arg0.parent() {
                dirs.push(d.to_path_buf());
            }
        }
    }
    if let Some(d) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        dirs.push(d);
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
        .unwrap_or_else(|| PathBuf::from(name))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

impl Runtime {
    /// `binary` as given in the options (empty: the default), `root` the
    /// `Root` option (empty: the default) to which `namespace` is appended.
    pub fn new(binary: &str, root: &str, namespace: &str, bundle: &Path) -> Runtime {
        let binary = if binary.is_empty() {
            DEFAULT_BINARY
        } else {
            binary
        };
        let root = if root.is_empty() { DEFAULT_ROOT } else { root };
        Runtime {
            binary: find_binary(binary),
            root: Path::new(root).join(namespace),
            log: bundle.join("log.json"),
            systemd_cgroup: false,
            criu: None,
        }
    }

    /// The same runtime, with `--systemd-cgroup` on every command when `on`.
    pub fn with_systemd_cgroup(mut self, on: bool) -> Runtime {
        self.systemd_cgroup = on;
        self
    }

    /// The same runtime, with `--criu PATH` on every command when `path` is not empty.
    pub fn with_criu(mut self, path: &str) -> Runtime {
        self.criu = (!path.is_empty()).then(|| PathBuf::from(path));
        self
    }

    fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .args(["--log-format", "json"]);
        if self.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        if let Some(criu) = &self.criu {
            cmd.arg("--criu").arg(criu);
        }
        cmd.args(args);
        cmd
    }

    /// Runs a command whose stdio the container inherits (`create`, `exec`).
    pub fn run_with_stdio<S: AsRef<OsStr>>(&self, args: &[S], stdio: ChildStdio) -> Result<()> {
        let mut cmd = self.command(args);
        cmd.stdin(stdio.stdin)
            .stdout(stdio.stdout)
            .stderr(stdio.stderr);
        self.execute(cmd, args).map(|_| ())
    }

    /// Runs a command and returns its stdout.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<String> {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.execute(cmd, args)
    }

    fn execute<S: AsRef<OsStr>>(&self, mut cmd: Command, args: &[S]) -> Result<String> {
        let name = args
            .first()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .unwrap_or_default();
        let log_start = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let mut child = cmd.spawn().ctx(|| {
            format!(
                "{} {name}: start {}",
                self.binary.display(),
                self.binary.display()
            )
        })?;
        // Drop our copies of the container's stdio now, or the container
        // never sees EOF on them.
        drop(cmd);
        let (mut out, mut err) = (String::new(), String::new());
        let stderr = child.stderr.take();
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut e) = stderr {
                let _ = e.read_to_string(&mut s);
            }
            s
        });
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        if let Ok(s) = err_reader.join() {
            err = s;
        }
        let code = reaper().wait(child.id() as i32);
        if code == 0 {
            return Ok(out);
        }
        let msg = last_error(&self.log, log_start)
            .or_else(|| Some(err.trim().to_string()).filter(|s| !s.is_empty()))
            .unwrap_or_else(|| {
                format!("{} {name} exited with status {code}", self.binary.display())
            });
        Err(Error::Runtime { msg })
    }
}

/// The `msg` of the last `"level":"error"` line written to `log` after
/// byte `from`.
pub fn last_error(log: &Path, from: u64) -> Option<String> {
    let mut f = File::open(log).ok()?;
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut text = String::new();
    f.read_to_string(&mut text).ok()?;
    text.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        (v.get("level")?.as_str()? == "error")
            .then(|| v.get("msg")?.as_str().map(str::to_string))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_error_takes_the_newest_error_after_offset() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.json");
        std::fs::write(
            &log,
            "{\"level\":\"error\",\"msg\":\"old\"}\n{\"level\":\"info\",\"msg\":\"x\"}\n",
        )
        .unwrap();
        let from = std::fs::metadata(&log).unwrap().len();
        assert_eq!(last_error(&log, 0).as_deref(), Some("old"));
        assert_eq!(last_error(&log, from), None);
        let mut text = std::fs::read_to_string(&log).unwrap();
        text.push_str("{\"level\":\"error\",\"msg\":\"new one\",\"time\":\"t\"}\nnot json\n");
        std::fs::write(&log, text).unwrap();
        assert_eq!(last_error(&log, from).as_deref(), Some("new one"));
    }

    #[test]
    fn failing_command_reports_its_log_error() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("rt");
        crate::write_test_script(&script, "#!/bin/sh\nwhile [ \"$1\" != --log ]; do shift; done\n\
             echo '{\"level\":\"error\",\"msg\":\"bad bundle: no config.json\"}' >> \"$2\"\nexit 1\n");
        let rt = Runtime::new(script.to_str().unwrap(), "/nonexistent", "ns", dir.path());
        match rt.run(&["state", "x"]) {
            Err(Error::Runtime { msg }) => assert_eq!(msg, "bad bundle: no config.json"),
            other => panic!("{other:?}"),
        }
    }

    /// A runtime that records its arguments in DIR/args.
    fn recording_runtime() -> (tempfile::TempDir, Runtime) {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("rt");
        crate::write_test_script(
            &script,
            &format!(
                "#!/bin/sh\necho \"$@\" > {}\n",
                dir.path().join("args").display()
            ),
        );
        let rt = Runtime::new(script.to_str().unwrap(), "/r", "ns", dir.path());
        (dir, rt)
    }

    #[test]
    fn systemd_cgroup_option_becomes_the_global_flag() {
        let (dir, rt) = recording_runtime();
        let seen = dir.path().join("args");
        rt.clone()
            .with_systemd_cgroup(true)
            .run(&["state", "x"])
            .unwrap();
        let args = std::fs::read_to_string(&seen).unwrap();
        assert!(args.contains("--systemd-cgroup state x"), "{args}");
        rt.run(&["state", "x"]).unwrap();
        let args = std::fs::read_to_string(&seen).unwrap();
        assert!(!args.contains("--systemd-cgroup"), "{args}");
    }

    #[test]
    fn criu_path_option_becomes_the_global_flag() {
        let (dir, rt) = recording_runtime();
        let seen = dir.path().join("args");
        rt.clone()
            .with_criu("/opt/criu/bin/criu")
            .run(&["checkpoint", "x"])
            .unwrap();
        let args = std::fs::read_to_string(&seen).unwrap();
        assert!(
            args.contains("--criu /opt/criu/bin/criu checkpoint x"),
            "{args}"
        );
        rt.with_criu("").run(&["checkpoint", "x"]).unwrap();
        let args = std::fs::read_to_string(&seen).unwrap();
        assert!(!args.contains("--criu"), "{args}");
    }
}
