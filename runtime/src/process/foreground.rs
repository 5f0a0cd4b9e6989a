//! The caller's side of a process it runs in the foreground (`run`, `exec`
//! and `restore` without `--detach`): signals forwarded to it, its pty master
//! relayed to our stdio, its exit code returned.
//!
//! Must never: outlive the process (it returns once the process is reaped),
//! or leave our terminal in raw mode (the guard restores it on every path).

use std::os::fd::{AsFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::{Error, Result, SysContext};
use crate::linux::tty;

/// Waits for `pid`, a child of ours (the init of a foreground `run`, an
/// exec'd process, a restored init), forwarding signals to it, and
/// returns its exit code (128+signal when killed), like runc. With a pty
/// master, relays it to our stdio (stdin in raw mode when it is a terminal,
/// window size changes passed on) until the init exits and the output is
/// drained.
pub fn wait(pid: i32, master: Option<OwnedFd>) -> Result<i32> {
    let mut set = SigSet::all();
    for s in [
        Signal::SIGKILL,
        Signal::SIGSTOP,
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGILL,
        Signal::SIGFPE,
    ] {
        set.remove(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .sys("sigprocmask", "run")?;
    let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .sys("signalfd", "run")?;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let _raw = master.as_ref().and_then(|_| tty::RawMode::stdin());
    if let Some(m) = &master {
        tty::set_nonblocking(m.as_fd())?;
        if let Some((rows, cols)) = tty::size_of(stdin.as_fd()) {
            let _ = tty::resize(m.as_fd(), rows, cols);
        }
    }
    let mut master_open = master.is_some();
    let mut stdin_open = master.is_some();
    // Only a pty has output to copy.
    let mut buf = vec![0u8; if master.is_some() { 32 * 1024 } else { 0 }];
    // Copies what the pty has for us to stdout; false once it is closed.
    let drain = |m: &OwnedFd, buf: &mut [u8]| -> bool {
        loop {
            match nix::unistd::read(m, buf) {
                Ok(0) | Err(nix::errno::Errno::EIO) => return false,
                Ok(n) => {
                    if tty::write_all(stdout.as_fd(), &buf[..n]).is_err() {
                        return false;
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => return true,
                Err(_) => return false,
            }
        }
    };
    loop {
        // The init may have exited before the mask was set: check first.
        let exited = match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => Some(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => Some(128 + sig as i32),
            Ok(_) => None,
            Err(nix::errno::Errno::ECHILD) => Some(255),
            Err(e) => return Err(Error::sys("waitpid", pid, e)),
        };
        if let Some(code) = exited {
            if let (Some(m), true) = (&master, master_open) {
                drain(m, &mut buf);
            }
            return Ok(code);
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let (Some(m), true) = (&master, master_open) {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Error::sys("poll", "run", e)),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut k = 1;
        if let (Some(m), true) = (&master, master_open) {
            if ready[k] {
                master_open = drain(m, &mut buf);
            }
            k += 1;
        }
        if stdin_open && ready[k] {
            match nix::unistd::read(&stdin, &mut buf) {
                Ok(0) => stdin_open = false,
                Ok(n) => {
                    if let Some(m) = &master {
                        let _ = tty::write_all(m.as_fd(), &buf[..n]);
                    }
                }
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                Err(_) => stdin_open = false,
            }
        }
        if ready[0] {
            while let Ok(Some(info)) = sfd.read_signal() {
                let sig = info.ssi_signo as i32;
                match sig {
                    libc::SIGCHLD => {}
                    libc::SIGWINCH => {
                        if let (Some(m), Some((rows, cols))) =
                            (&master, tty::size_of(stdin.as_fd()))
                        {
                            let _ = tty::resize(m.as_fd(), rows, cols);
                        }
                    }
                    // SAFETY: kill(2) with a signal number we received.
                    _ => unsafe {
                        libc::kill(pid, sig);
                    },
                }
            }
        }
    }
}
