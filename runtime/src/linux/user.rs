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
        // In a user namespace whose setgroups is "deny" (an unprivileged
        // caller's single mapping) the call is refused: skip it unless groups
        // were asked for, as runc does.
        let denied =
            std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
        if !denied {
            setgroups(&groups).sys("setgroups", format!("{:?}", self.additional_gids))?;
        } else if !groups.is_empty() {
            return Err(crate::error::Error::msg(format!(
                "process.user.additionalGids {:?}: setgroups is denied in this user namespace (rootless)",
                self.additional_gids
            )));
        }
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

/// Gives the container user its stdio (a pty, pipes from the caller) as
/// runc does, so a non-root process can use its terminal; only the owner
/// changes (devpts may set a group), /dev/null is left alone, and refusals
/// by the kernel (unmapped ids, read-only /dev) are not errors.
pub fn fix_stdio_owner(uid: u32) -> Result<()> {
    let null = nix::sys::stat::stat("/dev/null").ok().map(|s| s.st_rdev);
    for fd in 0..3 {
        // SAFETY: stdio fds stay open for the life of the process.
        let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let Ok(st) = nix::sys::stat::fstat(bfd) else {
            continue;
        };
        if st.st_uid == uid
            || Some(st.st_rdev) == null && st.st_mode & libc::S_IFMT == libc::S_IFCHR
        {
            continue;
        }
        match nix::unistd::fchown(bfd, Some(Uid::from_raw(uid)), None) {
            Ok(())
            | Err(
                nix::errno::Errno::EINVAL | nix::errno::Errno::EPERM | nix::errno::Errno::EROFS,
            ) => {}
            Err(e) => {
                return Err(crate::error::Error::sys(
                    "chown",
                    format!("stdio fd {fd}"),
                    e,
                ))
            }
        }
    }
    Ok(())
}

/// Changes to the process's cwd while still privileged, as runc does, so a
/// directory the runtime can reach but the user cannot still works; returns
/// true when only the user can reach it (try again after the switch).
pub fn chdir_before_switch(cwd: &std::path::Path) -> Result<bool> {
    match nix::unistd::chdir(cwd) {
        Ok(()) => verify_cwd(cwd).map(|_| false),
        Err(nix::errno::Errno::EACCES | nix::errno::Errno::EPERM) => Ok(true),
        Err(e) => Err(crate::error::Error::sys(
            "chdir",
            format!("{} (process.cwd)", cwd.display()),
            e,
        )),
    }
}

/// The second try of [`chdir_before_switch`], as the container user.
pub fn chdir_after_switch(cwd: &std::path::Path) -> Result<()> {
    nix::unistd::chdir(cwd).sys("chdir", format!("{} (process.cwd)", cwd.display()))?;
    verify_cwd(cwd)
}

/// A cwd reached through a leaked fd of a host directory (CVE-2024-21626)
/// lies outside our root: getcwd then fails (ENOENT, "(unreachable)").
fn verify_cwd(cwd: &std::path::Path) -> Result<()> {
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => Err(crate::error::Error::msg(format!(
            "process.cwd {}: the directory is outside the container's root",
            cwd.display()
        ))),
    }
}

/// Field `field` (0 name, 5 home, ...) of the first entry for `uid` in the
/// passwd file at `path`, read directly as runc does (no NSS: brig is
/// linked statically, where glibc's NSS would need dlopen).
pub fn passwd_field(path: &str, uid: u32, field: usize) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > field && f.len() >= 3 && f[2].parse() == Ok(uid)).then(|| f[field].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_fields_by_uid() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("passwd");
        std::fs::write(
            &p,
            "root:x:0:0:root:/root:/bin/sh\nbroken\nalice:x:1000:1000::/home/alice:/bin/sh\nshort:x:7\n",
        )
        .unwrap();
        let p = p.to_str().unwrap();
        assert_eq!(passwd_field(p, 0, 0).as_deref(), Some("root"));
        assert_eq!(passwd_field(p, 1000, 5).as_deref(), Some("/home/alice"));
        // An entry too short for the field, an unknown uid, a missing file: none.
        assert_eq!(passwd_field(p, 7, 5), None);
        assert_eq!(passwd_field(p, 7, 0).as_deref(), Some("short"));
        assert_eq!(passwd_field(p, 42, 0), None);
        assert_eq!(passwd_field("/nonexistent/passwd", 0, 0), None);
    }
}
