//! A new container process entering its cgroups by itself, without the kernel's global lock.
//!
//! Writing a pid to `cgroup.procs` takes the kernel's threadgroup lock for writing, which
//! first waits for an RCU grace period: measured on this project's hosts, 5 to 15 ms of
//! every `create`, idle time that runc and crun pay too. Two ways into a cgroup skip that
//! lock, and a container's init uses them:
//! - cgroup v1: a single-threaded process writing "0" (itself) to the `tasks` file of each
//!   hierarchy. The kernel then moves one thread, the caller, under the cgroup mutex only
//!   (Linux 5.13 on; older kernels take the lock as for `cgroup.procs`, still correct). The
//!   runtime makes the directories and opens the files before the clone; the child writes
//!   them first thing, before it does anything else.
//! - cgroup v2 (also the unified hierarchy of a hybrid host): clone3 with CLONE_INTO_CGROUP
//!   and the cgroup's directory, which starts the child there (Linux 5.7 on).
//!
//! The permission checks are the kernel's own on the opener's credentials, as for the
//! runtime's write. Where neither way applies (systemd's scopes; a kernel that refuses
//! CLONE_INTO_CGROUP), the runtime writes the pid itself ([`super::Manager::apply`]).
//!
//! Owns only these descriptors; the directories are made by the backends.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::error::{Error, Result, SysContext};

/// The container's cgroups, opened for a process to enter them as it starts.
#[derive(Debug, Default)]
pub struct Entry {
    /// The `tasks` file of each v1 hierarchy's container cgroup, opened for writing.
    tasks: Vec<(OwnedFd, PathBuf)>,
    /// The container's cgroup2 directory, for CLONE_INTO_CGROUP.
    dir: Option<OwnedFd>,
}

impl Entry {
    /// Adds the v1 cgroup `dir` (which must exist): its `tasks` file, opened now.
    pub(crate) fn add_v1(&mut self, dir: &Path) -> Result<()> {
        let path = dir.join("tasks");
        let fd = nix::fcntl::open(&path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())
            .sys("open", path.display())?;
        self.tasks.push((fd, path));
        Ok(())
    }

    /// Sets the cgroup2 directory `dir` (which must exist); false when one is set already.
    pub(crate) fn set_v2(&mut self, dir: &Path) -> Result<bool> {
        if self.dir.is_some() {
            return Ok(false);
        }
        let fd = nix::fcntl::open(
            dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .sys("open", dir.display())?;
        self.dir = Some(fd);
        Ok(true)
    }

    /// The directory for clone3's CLONE_INTO_CGROUP, if there is a cgroup2 one.
    pub fn clone_into(&self) -> Option<BorrowedFd<'_>> {
        self.dir.as_ref().map(|d| d.as_fd())
    }

    /// In the new process, single-threaded, before anything else: joins every v1 cgroup.
    /// The descriptors are close-on-exec; nothing of the container inherits them.
    pub fn join_self(&self) -> Result<()> {
        for (fd, path) in &self.tasks {
            match nix::unistd::write(fd, b"0") {
                Ok(1) => {}
                Ok(n) => {
                    return Err(Error::msg(format!(
                        "write 0 to {}: short write ({n} of 1 byte)",
                        path.display()
                    )))
                }
                Err(e) => return Err(Error::sys("write", format!("0 to {}", path.display()), e)),
            }
        }
        Ok(())
    }
}
