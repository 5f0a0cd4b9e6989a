//! The undo list of a container being made (`create`, `restore`): whatever
//! was made so far goes again if the making fails, so a failed create leaves
//! no process, cgroup or state folder behind.

use std::path::PathBuf;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cgroups::Manager;
use crate::logging;

/// What was made so far, undone on drop until [`Undo::disarm`].
pub struct Undo {
    /// What is being made, for the warning when cleaning up fails.
    what: &'static str,
    /// The container's state folder.
    pub dir: Option<PathBuf>,
    pub cgroup: Option<Box<dyn Manager>>,
    /// Also kill every process in the cgroup (a cgroup made for this container alone; a
    /// create that took over a cgroup with processes in it must leave them be).
    pub kill_members: bool,
    /// The init, a child of ours: killed and reaped.
    pub pid: Option<i32>,
    /// A helper mount point, unmounted and removed whatever the outcome.
    pub mount: Option<PathBuf>,
    armed: bool,
}

impl Undo {
    pub fn new(what: &'static str) -> Undo {
        Undo {
            what,
            dir: None,
            cgroup: None,
            kill_members: false,
            pid: None,
            mount: None,
            armed: true,
        }
    }

    /// The container is made: keep it.
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some(m) = &self.mount {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(m);
        }
        if !self.armed {
            return;
        }
        if let Some(pid) = self.pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
        }
        if let Some(cg) = &self.cgroup {
            if self.kill_members {
                for pid in cg.pids().unwrap_or_default() {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            if let Err(e) = cg.destroy() {
                logging::warn(&format!("cleanup after a failed {}: {e}", self.what));
            }
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
