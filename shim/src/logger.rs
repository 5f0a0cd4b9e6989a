//! containerd's `binary://` logging driver: a program the shim starts for
//! a process's output (`binary:///usr/bin/logger?--tag=web` runs
//! `/usr/bin/logger --tag web`).
//!
//! The protocol, as containerd's own shims speak it: the program's
//! environment is only `CONTAINER_ID` and `CONTAINER_NAMESPACE`; it reads
//! stdout from fd 3 and stderr from fd 4, and closes fd 5 (or writes a
//! byte to it) once it is ready, before which the process does not start.
//! When the process is deleted the program reads EOF; it gets SIGTERM if
//! it has not exited within a moment, and SIGKILL 12 s later.
//!
//! Must never: wait for the program with `Child::wait` (the
//! [`crate::reaper`] takes every child's status).

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::error::{Error, IoContext, Result};
use crate::lock;
use crate::reaper::reaper;

/// How long a logger may take to exit after SIGTERM (containerd's value).
const TERM_TIMEOUT: Duration = Duration::from_secs(12);

/// A running logging program.
pub struct Logger {
    pid: i32,
    exited: Arc<(Mutex<bool>, Condvar)>,
}

/// The program and its arguments named by a `binary://` URI.
pub fn command_line(uri: &str) -> Result<(String, Vec<String>)> {
    let rest = uri
        .strip_prefix("binary://")
        .ok_or_else(|| Error::InvalidArgument(format!("{uri}: not a binary:// URI")))?;
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    // Skip an authority ("binary://host/path" names /path, as url.Parse).
    let path = match location.find('/') {
        Some(i) => &location[i..],
        None => "",
    };
    let path = percent_decode(path);
    if path.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{uri}: binary:// URI without a program path"
        )));
    }
    let mut args = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        args.push(query_decode(k));
        args.push(query_decode(v));
    }
    Ok((path, args))
}

fn query_decode(s: &str) -> String {
    percent_decode(&s.replace('+', " "))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A copy of `fd` numbered 10 or above, so that the child's `dup2` onto
/// 3, 4 and 5 never overwrites a source.
fn high_dup(fd: &OwnedFd) -> Result<OwnedFd> {
    let raw = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(10)).ctx(|| "dup a pipe".to_string())?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that we own.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(raw) })
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe".to_string())
}

impl Logger {
    /// Starts the program of `uri` for the output of process `id` in
    /// `namespace`; returns once it is ready, with the write ends of its
    /// stdout and stderr pipes.
    // The reaper, not Child::wait, collects the program.
    #[allow(clippy::zombie_processes)]
    pub fn start(uri: &str, id: &str, namespace: &str) -> Result<(Logger, File, File)> {
        let (program, args) = command_line(uri)?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (ready_r, ready_w) = pipe()?;
        let fds = [high_dup(&out_r)?, high_dup(&err_r)?, high_dup(&ready_w)?];
        drop((out_r, err_r, ready_w));
        let raw: [i32; 3] = [fds[0].as_raw_fd(), fds[1].as_raw_fd(), fds[2].as_raw_fd()];
        let mut cmd = Command::new(&program);
        cmd.args(&args)
            .env_clear()
            .env("CONTAINER_ID", id)
            .env("CONTAINER_NAMESPACE", namespace)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only dup2 (async-signal-safe) runs in the child; the
        // sources are 10 or above, distinct from the targets.
        unsafe {
            cmd.pre_exec(move || {
                for (target, src) in (3..).zip(raw) {
                    if libc::dup2(src, target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .ctx(|| format!("start the logging binary {program} of {uri}"))?;
        drop(cmd);
        drop(fds);
        let exited = Arc::new((Mutex::new(false), Condvar::new()));
        let done = exited.clone();
        reaper().watch(
            child.id() as i32,
            Box::new(move |_| {
                *lock(&done.0) = true;
                done.1.notify_all();
            }),
        );
        let logger = Logger {
            pid: child.id() as i32,
            exited,
        };
        // Ready: a byte, or EOF when the program closed fd 5 (or died).
        let mut ready = File::from(ready_r);
        let mut byte = [0u8; 1];
        ready
            .read(&mut byte)
            .ctx(|| format!("wait for the logging binary {program} to be ready"))?;
        Ok((logger, File::from(out_w), File::from(err_w)))
    }

    fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (flag, cv) = &*self.exited;
        let mut exited = lock(flag);
        while !*exited {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            exited = cv
                .wait_timeout(exited, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// Ends the program once its input is closed: it may exit by itself
    /// within `grace`; then SIGTERM, and SIGKILL after 12 s.
    pub fn stop(&self, grace: Duration) {
        if self.wait_exit(grace) {
            return;
        }
        // SAFETY: kill(2) has no memory preconditions; the pid is our
        // unreaped child (the reaper has not filed its exit yet).
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        if !self.wait_exit(TERM_TIMEOUT) {
            log::warn!(
                "logging binary (pid {}) ignored SIGTERM: killing it",
                self.pid
            );
            // SAFETY: as above.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn uri_to_command_line() {
        let (p, a) = command_line("binary:///usr/bin/log%20ger?--tag=web&-v&x=a+b%2Fc").unwrap();
        assert_eq!(p, "/usr/bin/log ger");
        assert_eq!(a, ["--tag", "web", "-v", "", "x", "a b/c"]);
        let (p, a) = command_line("binary://host/bin/l").unwrap();
        assert_eq!((p.as_str(), a.len()), ("/bin/l", 0));
        assert!(command_line("binary://").is_err());
        assert!(command_line("file:///x").is_err());
    }

    #[test]
    fn logger_reads_fds_3_and_4_after_ready() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("logger");
        let out = dir.path().join("out");
        crate::write_test_script(
            &script,
            &format!(
                "#!/bin/sh\necho \"$CONTAINER_NAMESPACE/$CONTAINER_ID $*\" > {d}/meta\n\
                 exec 5>&-\n/bin/cat <&3 > {d}/out & /bin/cat <&4 > {d}/err &\nwait\n",
                d = dir.path().display()
            ),
        );
        let uri = format!("binary://{}?a=b", script.display());
        let (logger, mut o, mut e) = Logger::start(&uri, "c1", "ns").unwrap();
        o.write_all(b"to-out\n").unwrap();
        e.write_all(b"to-err\n").unwrap();
        drop((o, e));
        logger.stop(Duration::from_secs(10));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "to-out\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("err")).unwrap(),
            "to-err\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("meta")).unwrap(),
            "ns/c1 a b\n"
        );
    }
}
