//! The container init process: one clone3 with every namespace flag, and the
//! parent↔child sync protocol over a SOCK_SEQPACKET socketpair.
//!
//! brig does not re-exec itself as init: the child of the clone *is* the
//! init, running the plan computed by the parent ([`init::Plan`]) and then
//! execve'ing the container process. The parent is single-threaded when it
//! clones, so the child may allocate (no other thread can hold the
//! allocator's lock); it still does no parsing or file reading it can avoid.
//!
//! Protocol (one JSON message per datagram), each step only when it has work, so that
//! the common container runs from clone to `Ready` without waiting on the parent (every
//! round trip is a wait for the scheduler on a busy host): parent → child `Go` once the
//! parent has put the child into its cgroups (where it could not enter them itself),
//! written its id maps or oom_score_adj; child → parent `Hooks` when the mounts are ready
//! and the spec has prestart or createRuntime hooks (the parent runs them, then answers
//! `HooksDone`); child → parent `Ready` when it only has to wait for `start`; or `Error`
//! with the real cause at any step.

pub mod foreground;
pub mod init;
pub mod parent;
pub mod plan;
pub mod undo;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, SysContext};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Msg {
    Go,
    Hooks,
    HooksDone,
    Ready,
    /// Child → parent, with the seccomp listener fd attached: hand it to
    /// the agent at listenerPath; the parent answers `SeccompDone`.
    SeccompFd,
    SeccompDone,
    Error {
        msg: String,
    },
    /// Child → parent: a log line (`--debug`), written by the parent to the
    /// `--log` destination. The child never opens the log itself: after it
    /// joins the container's mount namespace a host path would resolve
    /// inside the container, and an fd of the log file must not reach it.
    Log {
        level: String,
        msg: String,
    },
}

/// One end of the sync socket.
pub struct Channel {
    fd: OwnedFd,
}

impl std::os::fd::AsFd for Channel {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Channel {
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .sys("socketpair", "sync")?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    pub fn send(&self, m: &Msg) -> Result<()> {
        let data = serde_json::to_vec(m).map_err(|e| Error::msg(e.to_string()))?;
        nix::unistd::write(&self.fd, &data).sys("write", "sync socket")?;
        Ok(())
    }

    /// Child → parent: the error that ends the child, cut to fit one sync message (a
    /// datagram must fit the socket's buffer; a 10 MB hostname quoted whole would leave the
    /// parent with no error at all).
    pub fn send_error(&self, e: &Error) {
        let msg = crate::error::abbreviate(e.to_string(), 4096);
        let _ = self.send(&Msg::Error { msg });
    }

    /// Child → parent: a debug line for the runtime's log (only with `--debug`).
    pub fn debug(&self, msg: &str) {
        if crate::logging::debug_enabled() {
            let _ = self.send(&Msg::Log {
                level: "debug".into(),
                msg: msg.into(),
            });
        }
    }

    /// Sends `m` with `fd` attached (SCM_RIGHTS).
    pub fn send_with_fd(&self, m: &Msg, fd: std::os::fd::BorrowedFd) -> Result<()> {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        let data = serde_json::to_vec(m).map_err(|e| Error::msg(e.to_string()))?;
        let fds = [fd.as_raw_fd()];
        let iov = [std::io::IoSlice::new(&data)];
        sendmsg::<()>(
            self.fd.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .sys("sendmsg", "sync socket")?;
        Ok(())
    }

    /// Receives one message; `None` when the other side closed.
    pub fn recv(&self) -> Result<Option<Msg>> {
        Ok(self.recv_with_fd()?.map(|(m, _)| m))
    }

    /// Receives one message and the fd sent with it, if any. Log lines from
    /// the child are written to the runtime's log on the way.
    pub fn recv_with_fd(&self) -> Result<Option<(Msg, Option<OwnedFd>)>> {
        loop {
            match self.recv_one()? {
                Some((Msg::Log { level, msg }, _)) => crate::logging::write(&level, &msg),
                other => return Ok(other),
            }
        }
    }

    fn recv_one(&self) -> Result<Option<(Msg, Option<OwnedFd>)>> {
        use nix::sys::socket::{recv, recvmsg, ControlMessageOwned, MsgFlags};
        // The datagram's size first, so that the buffer is what the message needs: one of
        // 64 KiB, zeroed for every message, was resident memory of every create.
        let len = loop {
            match recv(
                self.fd.as_raw_fd(),
                &mut [],
                MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("recv", "sync socket", e)),
                Ok(n) => break n,
            }
        };
        let mut buf = vec![0u8; len.max(1)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let (n, fd) = loop {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("recvmsg", "sync socket", e)),
                Ok(msg) => {
                    let mut fd = None;
                    for c in msg.cmsgs().sys("recvmsg", "sync socket")? {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            for (i, raw) in fds.into_iter().enumerate() {
                                // SAFETY: the kernel installed these fds for us.
                                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                                if i == 0 {
                                    fd = Some(owned);
                                }
                            }
                        }
                    }
                    break (msg.bytes, fd);
                }
            }
        };
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&buf[..n])
            .map(|m| Some((m, fd)))
            .map_err(|e| Error::msg(format!("bad sync message: {e}")))
    }
}

pub use crate::linux::clone::{clone_init, clone_into};

/// Clones a container process (`flags`: its CLONE_NEW* bits) that enters the container's
/// cgroups itself where `entry` allows ([`crate::cgroups::Entry`]): started in its cgroup2
/// directory by clone3, and writing its v1 `tasks` files first thing, as `child(true)` does.
/// Should the kernel refuse the start in the cgroup2 directory, the process starts where we
/// are and `child(false)` leaves the joining to the caller ([`crate::cgroups::Manager::apply`]).
/// Returns the pid and whether the process enters by itself.
pub fn clone_entering<F: FnOnce() -> i32>(
    flags: u64,
    entry: Option<&crate::cgroups::Entry>,
    child: impl Fn(bool) -> F,
) -> Result<(i32, bool)> {
    let joins = entry.is_some();
    match entry.and_then(|e| e.clone_into()) {
        Some(into) => match clone_into(flags, Some(into), child(true)) {
            Ok(pid) => Ok((pid, true)),
            Err(e) => {
                crate::logging::debug(&format!("clone3 into the container's cgroup: {e}"));
                clone_init(flags, child(false)).map(|pid| (pid, false))
            }
        },
        None => clone_init(flags, child(joins)).map(|pid| (pid, joins)),
    }
}

/// Takes ownership of an inherited raw fd.
///
/// # Safety
/// `fd` must be open and owned by nobody else.
pub unsafe fn own_fd(fd: i32) -> OwnedFd {
    // SAFETY: the caller guarantees ownership.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

impl AsRawFd for Channel {
    fn as_raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}
