//! A process's stdio: what containerd names (FIFO paths, `file://` URIs,
//! or `binary://` URIs: a [`crate::logger`] program) connected to what the
//! container gets (pipes, or the pty master received on a console socket),
//! with one copy thread per direction.
//!
//! The container never holds containerd's FIFOs itself, so CloseIO can close
//! its stdin and a client that goes away does not kill it with SIGPIPE.
//! Output FIFOs are opened read-write (never blocks, never EPIPE) and closed
//! when the container's side reaches EOF, which is the client's EOF.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use crate::error::{Error, IoContext, Result};
use crate::lock;
use crate::logger::Logger;
use crate::runtime::ChildStdio;

/// Stdio as containerd asks for it in Create or Exec.
#[derive(Debug, Clone, Default)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// The shim's end of a process's stdio.
#[derive(Default)]
pub struct ProcessIo {
    /// Writes reach the container's stdin; `None` once closed.
    stdin: Arc<Mutex<Option<File>>>,
    /// The pty master, for resizing.
    console: Option<File>,
    /// Output copy threads still running.
    copies: Arc<(Mutex<usize>, Condvar)>,
    /// The `binary://` logging program of the output.
    logger: Option<Logger>,
}

/// Whose output a logging program gets (its `CONTAINER_*` environment).
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub id: &'a str,
    pub namespace: &'a str,
}

fn pipe() -> Result<(File, File)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe".to_string())?;
    Ok((File::from(r), File::from(w)))
}

/// Opens where output goes: a FIFO (read-write: never blocks) or a
/// `file://` path (appended).
fn open_output(uri: &str) -> Result<File> {
    if let Some(path) = uri.strip_prefix("file://") {
        if let Some(dir) = Path::new(path).parent() {
            std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
        }
        return OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .ctx(|| format!("open log file {path}"));
    }
    let path = uri.strip_prefix("fifo://").unwrap_or(uri);
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .ctx(|| format!("open {path}"))
}

/// Copies `from` to `to` until EOF; `copies` counts the running copies.
fn spawn_copy(name: &str, mut from: File, mut to: File, copies: &Arc<(Mutex<usize>, Condvar)>) {
    let copies = copies.clone();
    *lock(&copies.0) += 1;
    let done = copies.clone();
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    // EIO: the pty's last peer closed.
                    Err(_) => break,
                }
            }
            drop(to);
            *lock(&done.0) -= 1;
            done.1.notify_all();
        });
    if spawned.is_err() {
        *lock(&copies.0) -= 1;
    }
}

/// Copies the stdin FIFO into `target` until the client closes it, then
/// closes `target`. The FIFO is opened in the thread: opening it for
/// reading blocks until the client opens it for writing.
fn spawn_stdin(path: String, target: Arc<Mutex<Option<File>>>) {
    let _ = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let Ok(mut fifo) = File::open(&path) else {
                return;
            };
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = match fifo.read(&mut buf) {
                    Ok(0) | Err(_) => 0,
                    Ok(n) => n,
                };
                let mut guard = lock(&target);
                let Some(w) = guard.as_mut() else { return };
                if n == 0 || w.write_all(&buf[..n]).is_err() {
                    *guard = None;
                    return;
                }
            }
        });
}

/// A console socket in a temporary directory: the runtime sends the pty
/// master over it.
pub struct ConsoleSocket {
    dir: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn new() -> Result<ConsoleSocket> {
        let base = std::env::temp_dir();
        let dir = tempdir_in(&base)?;
        let path = dir.join("console.sock");
        let listener = UnixListener::bind(&path).ctx(|| format!("bind {}", path.display()))?;
        Ok(ConsoleSocket { dir, listener })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("console.sock")
    }

    /// Takes the pty master the runtime sent. Call after the runtime
    /// command returned: its connection waits in the backlog.
    pub fn receive(&self) -> Result<File> {
        self.listener
            .set_nonblocking(true)
            .ctx(|| "console socket".to_string())?;
        let (conn, _) = self.listener.accept().ctx(|| {
            format!(
                "accept on {}: the runtime sent no terminal",
                self.path().display()
            )
        })?;
        conn.set_nonblocking(false)
            .ctx(|| "console socket".to_string())?;
        let mut name = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .ctx(|| "receive the pty master".to_string())?;
        for cmsg in msg.cmsgs().ctx(|| "receive the pty master".to_string())? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                if let Some(&fd) = fds.first() {
                    for &extra in &fds[1..] {
                        // SAFETY: received with SCM_RIGHTS: we own it.
                        drop(unsafe { OwnedFd::from_raw_fd(extra) });
                    }
                    // SAFETY: received with SCM_RIGHTS: we own it.
                    return Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
                }
            }
        }
        Err(Error::Other(
            "console socket: the runtime sent no file descriptor".into(),
        ))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tempdir_in(base: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    for n in 0..1000u32 {
        let dir = base.join(format!("brig-shim-{}-{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(format!("create {}", dir.display()), e)),
        }
    }
    Err(Error::Other(format!(
        "no free temporary directory in {}",
        base.display()
    )))
}

/// Where stdout and stderr go: a `binary://` URI starts one logging
/// program for both (containerd gives both the same URI).
fn outputs(paths: &StdioPaths, owner: Owner) -> Result<Outputs> {
    let mut outs = Outputs::default();
    if paths.stdout.starts_with("binary://") {
        let (logger, out, err) = Logger::start(&paths.stdout, owner.id, owner.namespace)?;
        outs.stdout = Some(out);
        if paths.stderr == paths.stdout {
            outs.stderr = Some(err);
        }
        outs.logger = Some(logger);
    } else if !paths.stdout.is_empty() {
        outs.stdout = Some(open_output(&paths.stdout)?);
    }
    if outs.stderr.is_none() && !paths.stderr.is_empty() {
        if paths.stderr.starts_with("binary://") {
            return Err(Error::InvalidArgument(format!(
                "{}: a binary:// stderr needs the same URI for stdout",
                paths.stderr
            )));
        }
        outs.stderr = Some(open_output(&paths.stderr)?);
    }
    Ok(outs)
}

#[derive(Default)]
struct Outputs {
    stdout: Option<File>,
    stderr: Option<File>,
    logger: Option<Logger>,
}

/// Prepares non-terminal stdio: pipes for the container, copy threads to
/// and from containerd's FIFOs (or files, or a logging program).
/// `io_ids`: the uid and gid the container's ends of the pipes belong to (the runc options'
/// IoUid and IoGid, for a container whose user cannot otherwise reopen them).
pub fn pipes(
    paths: &StdioPaths,
    owner: Owner,
    io_ids: Option<(u32, u32)>,
) -> Result<(ProcessIo, ChildStdio)> {
    let outs = outputs(paths, owner)?;
    let chown = |f: &File, what: &str| -> Result<()> {
        if let Some((uid, gid)) = io_ids {
            std::os::unix::fs::fchown(f, Some(uid), Some(gid))
                .ctx(|| format!("chown the {what} pipe to {uid}:{gid} (IoUid, IoGid)"))?;
        }
        Ok(())
    };
    let io = ProcessIo {
        logger: outs.logger,
        ..Default::default()
    };
    let mut child = ChildStdio::null();
    if !paths.stdin.is_empty() {
        let (r, w) = pipe()?;
        chown(&r, "stdin")?;
        child.stdin = Stdio::from(r);
        *lock(&io.stdin) = Some(w);
        spawn_stdin(paths.stdin.clone(), io.stdin.clone());
    }
    if let Some(out) = outs.stdout {
        let (r, w) = pipe()?;
        chown(&w, "stdout")?;
        child.stdout = Stdio::from(w);
        spawn_copy("stdout", r, out, &io.copies);
    }
    if let Some(out) = outs.stderr {
        let (r, w) = pipe()?;
        chown(&w, "stderr")?;
        child.stderr = Stdio::from(w);
        spawn_copy("stderr", r, out, &io.copies);
    }
    Ok((io, child))
}

/// Connects a received pty master to containerd's FIFOs.
pub fn console(paths: &StdioPaths, owner: Owner, master: File) -> Result<ProcessIo> {
    let outs = outputs(paths, owner)?;
    let mut io = ProcessIo {
        logger: outs.logger,
        ..Default::default()
    };
    if let Some(out) = outs.stdout {
        let reader = master.try_clone().ctx(|| "dup pty master".to_string())?;
        spawn_copy("console-out", reader, out, &io.copies);
    }
    if !paths.stdin.is_empty() {
        let writer = master.try_clone().ctx(|| "dup pty master".to_string())?;
        *lock(&io.stdin) = Some(writer);
        spawn_stdin(paths.stdin.clone(), io.stdin.clone());
    }
    io.console = Some(master);
    Ok(io)
}

impl ProcessIo {
    /// Waits (at most `timeout`) until the output reached containerd: the
    /// copies end when the process and its children closed their side.
    pub fn wait_output(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let (count, cv) = &*self.copies;
        let mut n = lock(count);
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            n = cv
                .wait_timeout(n, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// After the output ended: lets the logging program finish (it has
    /// read EOF), then ends it.
    pub fn stop_logger(&self) {
        if let Some(logger) = &self.logger {
            logger.stop(Duration::from_secs(2));
        }
    }

    /// CloseIO: the container reads EOF on stdin.
    pub fn close_stdin(&self) {
        *lock(&self.stdin) = None;
    }

    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        let Some(console) = &self.console else {
            // Nothing to resize: done, as runc's shim answers.
            return Ok(());
        };
        let ws = libc::winsize {
            ws_row: height as u16,
            ws_col: width as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
        let rc = unsafe { libc::ioctl(console.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if rc < 0 {
            return Err(Error::io("resize pty", std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

#[cfg(test)]
// The reaper, not Child::wait, collects these children.
#[allow(clippy::zombie_processes)]
mod tests {
    use super::*;

    #[test]
    fn file_uri_output_appends() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sub/out.log");
        let uri = format!("file://{}", log.display());
        let mut f = open_output(&uri).unwrap();
        f.write_all(b"one\n").unwrap();
        let mut f = open_output(&uri).unwrap();
        f.write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\ntwo\n");
    }

    #[test]
    fn stdin_fifo_reaches_the_pipe_and_closes() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("in");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let paths = StdioPaths {
            stdin: fifo.to_str().unwrap().into(),
            ..Default::default()
        };
        let owner = Owner {
            id: "c",
            namespace: "ns",
        };
        let (_io, child) = pipes(&paths, owner, None).unwrap();
        let mut w = File::options().write(true).open(&fifo).unwrap();
        w.write_all(b"hello").unwrap();
        drop(w);
        // The child's stdin end, as the container would read it.
        let mut cmd = std::process::Command::new("cat");
        cmd.stdin(child.stdin).stdout(Stdio::piped());
        let mut proc = cmd.spawn().unwrap();
        drop(cmd);
        let mut out = String::new();
        proc.stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "hello");
        assert_eq!(crate::reaper::reaper().wait(proc.id() as i32), 0);
    }
}
