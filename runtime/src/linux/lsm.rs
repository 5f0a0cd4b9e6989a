//! Linux security modules: the AppArmor profile and SELinux labels of the
//! container's processes and mounts, applied as runc applies them.
//!
//! - Host detection (parent side): AppArmor is enabled when its securityfs
//!   directory exists and `/sys/module/apparmor/parameters/enabled` says `Y`;
//!   SELinux when selinuxfs is mounted and our own context is not `kernel`
//!   (no policy loaded).
//! - Checks (parent side, before anything exists): a profile or process label
//!   on a host without its LSM is refused naming the field, as runc refuses
//!   both (runc's AppArmor refusal is the kernel's EINVAL at the write; ours
//!   names the field). So is `linux.mountLabel`: runc puts its `context=` into
//!   the mounts' data whatever the host, and the kernel refuses the first
//!   tmpfs with EINVAL (measured with Debian's runc 1.1.5); we name the field.
//! - Application (child side, [`Labels::apply`]): the profile and the exec
//!   label are written to the process's own `attr/exec` files just before the
//!   user switch (after it the non-dumpable process no longer owns its /proc
//!   files); both take effect at execve. The writes go through a procfs handle
//!   checked with fstatfs, by pid, never through the `self` symlink
//!   (CVE-2019-16884: a container image's fake /proc must not swallow them).
//!
//! Hand-written: the whole interface is a few writes to /proc files; the
//! selinux crate binds libselinux, which the static binary cannot load, and
//! no crate does AppArmor's change_onexec without libapparmor.

use std::path::Path;

use nix::fcntl::OFlag;
use oci_spec::runtime::Process;

use crate::error::{Error, Result, SysContext};
use crate::linux::rootfs::ProcHandle;

const SELINUX_MAGIC: i64 = 0xf97c_ff8c;

/// Whether the host enforces AppArmor profiles (runc's test).
pub fn apparmor_enabled() -> bool {
    Path::new("/sys/kernel/security/apparmor").exists()
        && std::fs::read("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|b| b.first() == Some(&b'Y'))
}

/// Whether the host has SELinux with a policy loaded (go-selinux's test).
pub fn selinux_enabled() -> bool {
    let mounted = ["/sys/fs/selinux", "/selinux"].iter().any(|p| {
        nix::sys::statfs::statfs(*p).is_ok_and(|s| s.filesystem_type().0 == SELINUX_MAGIC)
    });
    mounted
        && std::fs::read("/proc/self/attr/current").is_ok_and(|c| {
            let c = String::from_utf8_lossy(&c);
            let c = c.trim_end_matches(['\0', '\n']);
            !c.is_empty() && c != "kernel"
        })
}

fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// Refuses a process that names an AppArmor profile or an SELinux label the host cannot
/// apply: `(field, message)`, the field relative to the process object.
pub fn check(p: &Process) -> std::result::Result<(), (&'static str, &'static str)> {
    if set(p.apparmor_profile()).is_some() && !apparmor_enabled() {
        return Err((
            "apparmorProfile",
            "an AppArmor profile is set, but AppArmor is not enabled on this host",
        ));
    }
    if set(p.selinux_label()).is_some() && !selinux_enabled() {
        return Err((
            "selinuxLabel",
            "an SELinux label is set, but SELinux is disabled or not supported on this host",
        ));
    }
    Ok(())
}

/// Refuses `linux.mountLabel` on a host without SELinux: `(field, message)`, the field
/// relative to the linux object.
pub fn check_mount_label(
    label: Option<&str>,
) -> std::result::Result<(), (&'static str, &'static str)> {
    if label.is_some_and(|l| !l.is_empty()) && !selinux_enabled() {
        return Err((
            "mountLabel",
            "a mount label is set, but SELinux is disabled or not supported on this host",
        ));
    }
    Ok(())
}

/// The mount label to put on the container's mounts: `linux.mountLabel` where the host has
/// SELinux ([`check_mount_label`] refused it elsewhere).
pub fn mount_label(label: Option<&str>) -> Option<String> {
    label
        .filter(|l| !l.is_empty())
        .filter(|_| selinux_enabled())
        .map(str::to_string)
}

/// Whether a mount of filesystem type `typ` gets the mount label in its data: the
/// filesystems runc mounts with `label.FormatMountLabel` (not binds, whose data the kernel
/// ignores, nor proc, sysfs, mqueue and cgroup, which runc mounts without it).
pub fn takes_mount_label(typ: &str, bind: bool) -> bool {
    !bind && !matches!(typ, "proc" | "sysfs" | "mqueue" | "cgroup" | "cgroup2")
}

/// `data` with the SELinux context option of `label` appended (runc's
/// `label.FormatMountLabel`): the label quoted, for it holds commas (`s0:c1,c2`).
pub fn format_mount_label(data: &str, label: &str) -> String {
    if data.is_empty() {
        format!("context=\"{label}\"")
    } else {
        format!("{data},context=\"{label}\"")
    }
}

/// The labels of one process, taken from the spec by the parent.
#[derive(Debug, Default, Clone)]
pub struct Labels {
    /// process.apparmorProfile (checked: AppArmor is enabled).
    pub apparmor: Option<String>,
    /// process.selinuxLabel (checked: SELinux is enabled).
    pub selinux: Option<String>,
}

impl Labels {
    pub fn from_spec(p: &Process) -> Self {
        Labels {
            apparmor: set(p.apparmor_profile()).map(str::to_string),
            selinux: set(p.selinux_label()).map(str::to_string),
        }
    }

    /// In the child, before the user switch: the profile and the label the next execve
    /// gives the process.
    pub fn apply(&self) -> Result<()> {
        if self.apparmor.is_none() && self.selinux.is_none() {
            return Ok(());
        }
        let proc = ProcHandle::open(Path::new("/proc"))?;
        if let Some(profile) = &self.apparmor {
            // The stacking-aware file where the kernel has it, else the shared one.
            let pid = nix::unistd::getpid();
            let new = format!("{pid}/attr/apparmor/exec");
            let rel = match proc.open_file(&new, OFlag::O_WRONLY) {
                Ok(fd) => Ok((fd, new)),
                Err(_) => {
                    let old = format!("{pid}/attr/exec");
                    proc.open_file(&old, OFlag::O_WRONLY).map(|fd| (fd, old))
                }
            };
            let (fd, rel) = rel?;
            nix::unistd::write(&fd, format!("exec {profile}").as_bytes()).map_err(|e| {
                Error::msg(format!(
                    "apparmor failed to apply profile {profile:?}: write /proc/{rel}: {}",
                    e.desc()
                ))
            })?;
        }
        if let Some(label) = &self.selinux {
            write_attr(&proc, "exec", label)?;
        }
        Ok(())
    }
}

/// Writes the SELinux attribute `attr` (exec, keycreate) of this process; an empty value
/// resets it.
fn write_attr(proc: &ProcHandle, attr: &str, value: &str) -> Result<()> {
    let rel = format!("{}/attr/{attr}", nix::unistd::getpid());
    let fd = proc.open_file(&rel, OFlag::O_WRONLY)?;
    nix::unistd::write(&fd, value.as_bytes())
        .map(drop)
        .sys("write", format!("/proc/{rel} ({value:?})"))
}

/// With the container's /proc: joins the session keyring named `_ses.<id>` (runc's), so
/// the container does not share the runtime's: the init creates it, with the process's
/// SELinux label as its key-creation label, and makes it searchable by the container's ids
/// (`searchable`: Some(with a user namespace): by others, else by the possessor's uid), as
/// runc does; exec processes join it (`searchable` None).
/// A kernel without keyrings (ENOSYS) is tolerated, as runc tolerates it.
pub fn join_session_keyring(
    id: &str,
    selinux: Option<&str>,
    searchable: Option<bool>,
) -> Result<()> {
    let proc = match selinux {
        Some(label) => {
            let proc = ProcHandle::open(Path::new("/proc"))?;
            write_attr(&proc, "keycreate", label)?;
            Some(proc)
        }
        None => None,
    };
    let joined = join_keyring(id);
    if let Some(proc) = &proc {
        write_attr(proc, "keycreate", "")?;
    }
    let serial = match joined {
        Ok(serial) => serial,
        Err(nix::errno::Errno::ENOSYS) => return Ok(()),
        Err(e) => return Err(Error::sys("keyctl join session keyring", id, e)),
    };
    let Some(userns) = searchable else {
        return Ok(());
    };
    let add: u32 = if userns { 0x8 } else { 0x8_0000 };
    let perm = key_perm(serial).sys("keyctl describe", "the session keyring")?;
    // SAFETY: keyctl with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, libc::KEYCTL_SETPERM, serial, perm | add) };
    nix::errno::Errno::result(r)
        .map(drop)
        .sys("keyctl setperm", "the session keyring")
}

fn join_keyring(id: &str) -> nix::Result<i64> {
    let name =
        std::ffi::CString::new(format!("_ses.{id}")).map_err(|_| nix::errno::Errno::EINVAL)?;
    // SAFETY: a NUL-terminated name that outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            libc::KEYCTL_JOIN_SESSION_KEYRING,
            name.as_ptr(),
        )
    };
    nix::errno::Errno::result(r)
}

/// The permission mask of key `serial`: KEYCTL_DESCRIBE gives "type;uid;gid;perm;desc".
fn key_perm(serial: i64) -> nix::Result<u32> {
    let mut buf = [0u8; 512];
    // SAFETY: the buffer and its length.
    let r = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            libc::KEYCTL_DESCRIBE,
            serial,
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    let n = nix::errno::Errno::result(r)? as usize;
    let text = String::from_utf8_lossy(&buf[..n.min(buf.len())]);
    text.split(';')
        .nth(3)
        .and_then(|p| u32::from_str_radix(p.trim_end_matches('\0'), 16).ok())
        .ok_or(nix::errno::Errno::EINVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_label_is_appended_quoted() {
        let l = "system_u:object_r:container_file_t:s0:c1,c2";
        assert_eq!(
            format_mount_label("", l),
            "context=\"system_u:object_r:container_file_t:s0:c1,c2\""
        );
        assert_eq!(
            format_mount_label("mode=755,size=65536k", l),
            "mode=755,size=65536k,context=\"system_u:object_r:container_file_t:s0:c1,c2\""
        );
    }

    #[test]
    fn which_mounts_take_the_label() {
        for t in ["tmpfs", "devpts", "shm", "overlay"] {
            assert!(takes_mount_label(t, false), "{t}");
        }
        for t in ["proc", "sysfs", "mqueue", "cgroup", "cgroup2"] {
            assert!(!takes_mount_label(t, false), "{t}");
        }
        assert!(!takes_mount_label("tmpfs", true));
    }

    #[test]
    fn labels_skip_empty_values() {
        let p: Process = serde_json::from_value(serde_json::json!({
            "cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}, "apparmorProfile": "", "selinuxLabel": "x:y:z:s0"
        }))
        .unwrap();
        let l = Labels::from_spec(&p);
        assert_eq!(l.apparmor, None);
        assert_eq!(l.selinux.as_deref(), Some("x:y:z:s0"));
    }

    #[test]
    fn refusals_follow_the_host() {
        let p: Process = serde_json::from_value(serde_json::json!({
            "cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}, "apparmorProfile": "p"
        }))
        .unwrap();
        assert_eq!(check(&p).is_err(), !apparmor_enabled());
        let p: Process = serde_json::from_value(serde_json::json!({
            "cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}, "selinuxLabel": "x:y:z:s0"
        }))
        .unwrap();
        assert_eq!(check(&p).is_err(), !selinux_enabled());
        assert_eq!(
            check_mount_label(Some("x:y:z:s0")).is_err(),
            !selinux_enabled()
        );
        assert!(check_mount_label(Some("")).is_ok());
        assert_eq!(mount_label(Some("x:y:z:s0")).is_some(), selinux_enabled());
        assert_eq!(mount_label(Some("")), None);
    }
}
