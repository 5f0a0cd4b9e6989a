//! The user of the container process: groups, gid, uid, umask.
//!
//! Runs in the container init after pivot_root. PR_SET_KEEPCAPS keeps the
//! permitted set across setuid so the capability sets can be applied after.

use nix::unistd::{setgroups, Gid, Uid};

use crate::error::{Result, SysContext};

#[derive(Debug, Clone)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
}

impl User {
    pub fn from_spec(u: &oci_spec::runtime::User) -> Self {
        User {
            uid: u.uid(),
            gid: u.gid(),
            additional_gids: u.additional_gids().clone().unwrap_or_default(),
            umask: u.umask(),
        }
    }

    /// Switches to the user, keeping capabilities for the caller to set.
    pub fn switch(&self) -> Result<()> {
        // SAFETY: prctl with integer arguments.
        let r = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
        nix::errno::Errno::result(r).sys("prctl", "PR_SET_KEEPCAPS")?;
        let groups: Vec<Gid> = self
            .additional_gids
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect();
        setgroups(&groups).sys("setgroups", format!("{:?}", self.additional_gids))?;
        // setresgid/setresuid: real, effective and saved all change.
        let g = Gid::from_raw(self.gid);
        nix::unistd::setresgid(g, g, g).sys("setgid", self.gid)?;
        let u = Uid::from_raw(self.uid);
        nix::unistd::setresuid(u, u, u).sys("setuid", self.uid)?;
        // SAFETY: prctl with integer arguments.
        let r = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
        nix::errno::Errno::result(r).sys("prctl", "PR_SET_KEEPCAPS")?;
        let mask = self.umask.unwrap_or(0o022);
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
        Ok(())
    }
}
