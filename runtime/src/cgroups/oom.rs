//! Out-of-memory notification of a v1 memory cgroup.
//!
//! Owns one eventfd registered through `cgroup.event_control` against the
//! cgroup's `memory.oom_control`: the kernel signals it on every OOM in the
//! cgroup, and once more when the cgroup is removed (told apart by the
//! control file being gone, as runc does).
//!
//! Must never: write anything to the cgroup but the registration line.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use super::util::{errno_of, write_file};
use crate::error::{Error, Result, SysContext};

/// What [`OomWatch::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomEvent {
    /// The cgroup ran out of memory (one or more times).
    Oom,
    /// Nothing happened within the timeout.
    Timeout,
    /// The cgroup was removed: no more events will come.
    Gone,
}

/// A registered OOM listener on one memory cgroup.
#[derive(Debug)]
pub struct OomWatch {
    efd: EventFd,
    /// Kept open: the registration refers to this file.
    _oom_control: File,
    event_control: PathBuf,
}

impl OomWatch {
    /// Register on the memory cgroup `dir`.
    pub(crate) fn new(dir: &Path) -> Result<OomWatch> {
        let path = dir.join("memory.oom_control");
        let oom_control =
            File::open(&path).map_err(|e| Error::sys("open", path.display(), errno_of(&e)))?;
        let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC).sys("eventfd", dir.display())?;
        let line = format!("{} {}", efd.as_raw_fd(), oom_control.as_raw_fd());
        write_file(dir, "cgroup.event_control", &line, None)?;
        Ok(OomWatch {
            efd,
            _oom_control: oom_control,
            event_control: dir.join("cgroup.event_control"),
        })
    }

    /// Wait up to `timeout` for an OOM or the removal of the cgroup.
    pub fn wait(&self, timeout: Duration) -> Result<OomEvent> {
        let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.efd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) | Err(Errno::EINTR) => return Ok(OomEvent::Timeout),
            Ok(_) => {}
            Err(e) => return Err(Error::sys("poll", "OOM eventfd", e)),
        }
        self.efd.read().sys("read", "OOM eventfd")?;
        if !self.event_control.exists() {
            return Ok(OomEvent::Gone);
        }
        Ok(OomEvent::Oom)
    }
}
