//! Out-of-memory notification of a memory cgroup.
//!
//! v1: owns one eventfd registered through `cgroup.event_control` against
//! the cgroup's `memory.oom_control`: the kernel signals it on every OOM in
//! the cgroup, and once more when the cgroup is removed (told apart by the
//! control file being gone, as runc does).
//!
//! v2: owns an inotify watch on the cgroup's `memory.events`; an OOM is an
//! increase of its `oom_kill` counter (the count at registration is the
//! baseline, so an old OOM is not reported again), and the cgroup is gone
//! when its directory is.
//!
//! Must never: write anything to the cgroup but the v1 registration line.

use std::cell::Cell;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use super::util::{errno_of, read_file, write_file};
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
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    V1 {
        efd: EventFd,
        /// Kept open: the registration refers to this file.
        _oom_control: File,
        event_control: PathBuf,
    },
    V2 {
        inotify: OwnedFd,
        dir: PathBuf,
        seen: Cell<u64>,
    },
}

/// `oom_kill` of a v2 `memory.events`.
fn oom_kills(dir: &Path) -> Result<u64> {
    let text = read_file(dir, "memory.events")?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == "oom_kill")
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0))
}

impl OomWatch {
    /// Watch the v2 cgroup `dir` (its `memory.events`).
    pub(crate) fn new_v2(dir: &Path) -> Result<OomWatch> {
        let file = dir.join("memory.events");
        // SAFETY: inotify_init1 takes flags only.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return Err(Error::sys("inotify_init1", dir.display(), Errno::last()));
        }
        // SAFETY: a new fd that nothing else owns.
        let inotify = unsafe { OwnedFd::from_raw_fd(fd) };
        let c = CString::new(file.as_os_str().as_bytes())
            .map_err(|_| Error::msg(format!("{}: path has a NUL byte", file.display())))?;
        // SAFETY: valid fd and NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_MODIFY) };
        if wd < 0 {
            let e = Errno::last();
            if e == Errno::ENOENT {
                return Err(Error::msg(format!(
                    "watch for OOM: {} does not exist (is the memory controller enabled for this cgroup?)",
                    file.display()
                )));
            }
            return Err(Error::sys("inotify_add_watch", file.display(), e));
        }
        Ok(OomWatch {
            inner: Inner::V2 {
                inotify,
                dir: dir.to_path_buf(),
                seen: Cell::new(oom_kills(dir)?),
            },
        })
    }

    /// Register on the v1 memory cgroup `dir`.
    pub(crate) fn new(dir: &Path) -> Result<OomWatch> {
        let path = dir.join("memory.oom_control");
        let oom_control =
            File::open(&path).map_err(|e| Error::sys("open", path.display(), errno_of(&e)))?;
        let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC).sys("eventfd", dir.display())?;
        let line = format!("{} {}", efd.as_raw_fd(), oom_control.as_raw_fd());
        write_file(dir, "cgroup.event_control", &line, None)?;
        Ok(OomWatch {
            inner: Inner::V1 {
                efd,
                _oom_control: oom_control,
                event_control: dir.join("cgroup.event_control"),
            },
        })
    }

    /// Wait up to `timeout` for an OOM or the removal of the cgroup.
    pub fn wait(&self, timeout: Duration) -> Result<OomEvent> {
        let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        match &self.inner {
            Inner::V1 {
                efd, event_control, ..
            } => {
                let mut fds = [PollFd::new(efd.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, ms) {
                    Ok(0) | Err(Errno::EINTR) => return Ok(OomEvent::Timeout),
                    Ok(_) => {}
                    Err(e) => return Err(Error::sys("poll", "OOM eventfd", e)),
                }
                efd.read().sys("read", "OOM eventfd")?;
                if !event_control.exists() {
                    return Ok(OomEvent::Gone);
                }
                Ok(OomEvent::Oom)
            }
            Inner::V2 { inotify, dir, seen } => {
                let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, ms) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => return Err(Error::sys("poll", "OOM inotify", e)),
                }
                // Drain the queue; the counter says what happened.
                let mut buf = [0u8; 4096];
                // SAFETY: reads into a local buffer of the given size.
                while unsafe { libc::read(inotify.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) }
                    > 0
                {}
                if !dir.join("memory.events").exists() {
                    return Ok(OomEvent::Gone);
                }
                let now = match oom_kills(dir) {
                    Ok(n) => n,
                    Err(_) if !dir.exists() => return Ok(OomEvent::Gone),
                    Err(e) => return Err(e),
                };
                if now > seen.get() {
                    seen.set(now);
                    return Ok(OomEvent::Oom);
                }
                Ok(OomEvent::Timeout)
            }
        }
    }
}
