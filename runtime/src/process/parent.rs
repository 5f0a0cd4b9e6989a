//! The parent's side of the sync protocol with a child it cloned (the
//! container init, or an exec process), after it sent `Go`: runs the hooks
//! the child asks for, hands a seccomp listener to its agent, and returns
//! when the child is ready or has exec'd, or with the child's own error.

use std::os::fd::AsFd;

use oci_spec::runtime::LinuxSeccomp;

use crate::error::{Error, Result};
use crate::linux::seccomp;
use crate::process::{Channel, Msg};

/// How the child's setup ended.
#[derive(Debug, PartialEq)]
pub enum End {
    /// The init is ready and waits for `start`.
    Ready,
    /// The child closed its end: it exec'd (or died without a word).
    Closed,
}

/// Where a seccomp listener the child sends goes: the profile's agent, told the process's
/// pid and the container's state.
pub struct Listener<'a> {
    pub profile: Option<&'a LinuxSeccomp>,
    pub pid: i32,
    pub state_json: String,
}

/// Serves the child until it is ready or closes; `hooks` runs when the child asks for the
/// runtime's hooks (prestart, createRuntime). An error of the child comes back as its own.
pub fn drive(
    sync: &Channel,
    listener: &Listener,
    mut hooks: impl FnMut() -> Result<()>,
) -> Result<End> {
    loop {
        let (msg, fd) = match sync.recv_with_fd()? {
            Some((m, fd)) => (m, fd),
            None => return Ok(End::Closed),
        };
        match msg {
            Msg::Hooks => {
                hooks()?;
                sync.send(&Msg::HooksDone)?;
            }
            Msg::Ready => return Ok(End::Ready),
            Msg::SeccompFd => {
                let (Some(fd), Some(profile)) = (fd, listener.profile) else {
                    return Err(Error::msg(
                        "sync: seccomp message without its fd or profile",
                    ));
                };
                let path = profile
                    .listener_path()
                    .clone()
                    .ok_or_else(|| Error::msg("sync: a seccomp listener without listenerPath"))?;
                seccomp::send_to_agent(
                    &path,
                    profile.listener_metadata().as_deref(),
                    fd.as_fd(),
                    listener.pid,
                    &listener.state_json,
                )?;
                drop(fd);
                sync.send(&Msg::SeccompDone)?;
            }
            Msg::Error { msg } => return Err(Error::Msg(msg)),
            m => return Err(Error::msg(format!("sync: unexpected {m:?}"))),
        }
    }
}
