//! Namespaces: which to create with clone, which to join by path, in the
//! order the kernel needs.
//!
//! New namespaces come from the one clone3 call (all flags at once), except
//! cgroup (unshared by the child after the parent has put it into its
//! cgroup, so the namespace root is the container's cgroup) and time (its
//! offsets must be written before a process enters it, so the child
//! unshares it and execve moves the container process in). A pid namespace
//! given by path is joined by the parent before clone, as setns(CLONE_NEWPID)
//! only affects children; the others are joined by the child.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use crate::error::{Error, Result, SysContext};

pub fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // CLONE_NEWTIME is not in nix's CloneFlags for clone(2) (it clashes
        // with CSIGNAL); we only ever unshare it.
        LinuxNamespaceType::Time => CloneFlags::empty(),
    }
}

/// A namespace to join, opened in the parent so a bad path fails early.
#[derive(Debug)]
pub struct Join {
    pub typ: LinuxNamespaceType,
    pub path: PathBuf,
    pub fd: OwnedFd,
}

/// The namespace plan of a container.
#[derive(Debug, Default)]
pub struct Plan {
    /// Flags for clone3.
    pub clone_flags: u64,
    /// Namespaces the child joins with setns (not pid: see module doc).
    pub join: Vec<Join>,
    /// A pid namespace the parent joins before clone.
    pub join_pid: Option<Join>,
    pub new_cgroup: bool,
    pub new_time: bool,
    pub has: Vec<LinuxNamespaceType>,
}

impl Plan {
    pub fn from_spec(list: &[LinuxNamespace]) -> Result<Self> {
        let mut plan = Plan::default();
        for (i, ns) in list.iter().enumerate() {
            plan.has.push(ns.typ());
            match ns.path() {
                Some(path) => {
                    let fd = nix::fcntl::open(
                        path.as_path(),
                        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| {
                        Error::config(
                            "config.json",
                            format!("linux.namespaces[{i}].path"),
                            format!("{}: {}", path.display(), e.desc()),
                        )
                    })?;
                    let j = Join {
                        typ: ns.typ(),
                        path: path.clone(),
                        fd,
                    };
                    if ns.typ() == LinuxNamespaceType::Pid {
                        plan.join_pid = Some(j);
                    } else {
                        plan.join.push(j);
                    }
                }
                None => match ns.typ() {
                    LinuxNamespaceType::Cgroup => plan.new_cgroup = true,
                    LinuxNamespaceType::Time => plan.new_time = true,
                    t => plan.clone_flags |= flag(t).bits() as u64,
                },
            }
        }
        Ok(plan)
    }

    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        self.has.contains(&t)
    }

    /// In the child: joins the namespaces given by path (mount last so the
    /// other paths stay reachable).
    pub fn join_all(&self) -> Result<()> {
        let mut order: Vec<&Join> = self.join.iter().collect();
        // The user namespace first (it owns the others and gives us the
        // capabilities to join them), the mount namespace last.
        order.sort_by_key(|j| match j.typ {
            LinuxNamespaceType::User => 0,
            LinuxNamespaceType::Mount => 2,
            _ => 1,
        });
        for j in order {
            nix::sched::setns(&j.fd, flag_for_setns(j.typ)).sys("setns", j.path.display())?;
        }
        Ok(())
    }
}

/// setns accepts 0 (any type); we pass the type so a wrong file is refused.
fn flag_for_setns(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
        t => flag(t),
    }
}

/// Joins a pid namespace for our future children (parent side).
pub fn join_pid_for_children(j: &Join) -> Result<()> {
    nix::sched::setns(&j.fd, CloneFlags::CLONE_NEWPID).sys("setns", j.path.display())
}

/// Unshares the cgroup namespace (child, after the parent joined the cgroup).
pub fn unshare_cgroup() -> Result<()> {
    nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).sys("unshare", "cgroup namespace")
}

/// Unshares a time namespace with offsets; the process enters it at execve.
pub fn unshare_time(offsets: &[(String, i64, u32)]) -> Result<()> {
    nix::sched::unshare(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
        .sys("unshare", "time namespace")?;
    if !offsets.is_empty() {
        let mut s = String::new();
        for (clock, secs, nanos) in offsets {
            s.push_str(&format!("{clock} {secs} {nanos}\n"));
        }
        std::fs::write("/proc/self/timens_offsets", s)
            .map_err(|e| Error::io("write /proc/self/timens_offsets", e))?;
    }
    Ok(())
}

/// Whether this process runs in a user namespace other than the initial one: its uid_map is
/// not the identity over all ids (runc's `userns.RunningInUserNS`). Root there owns no cgroup
/// and may not mknod: a build of a plain user's brig-build runs the runtime so.
pub fn running_in_user_namespace() -> bool {
    static IN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN.get_or_init(|| {
        std::fs::read_to_string("/proc/self/uid_map")
            .map(|m| !is_identity_map(&m))
            .unwrap_or(false)
    })
}

/// The initial user namespace's uid_map: `0 0 4294967295`.
fn is_identity_map(text: &str) -> bool {
    let f: Vec<&str> = text.split_whitespace().collect();
    f == ["0", "0", "4294967295"]
}

/// Writes a new user namespace's id maps. As root: directly. Otherwise
/// directly only for the one mapping of our own ids the kernel allows an
/// unprivileged process (setgroups denied first), else through the setuid
/// newuidmap/newgidmap of the uidmap package, which check /etc/subuid.
pub fn write_id_maps(
    pid: i32,
    uid: &[oci_spec::runtime::LinuxIdMapping],
    gid: &[oci_spec::runtime::LinuxIdMapping],
) -> Result<()> {
    let text = |maps: &[oci_spec::runtime::LinuxIdMapping]| {
        maps.iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    let own = |maps: &[oci_spec::runtime::LinuxIdMapping], id: u32| {
        maps.len() == 1 && maps[0].host_id() == id && maps[0].size() == 1
    };
    for (file, maps, field, tool, self_id) in [
        ("uid_map", uid, "linux.uidMappings", "newuidmap", euid),
        ("gid_map", gid, "linux.gidMappings", "newgidmap", egid),
    ] {
        let path = format!("/proc/{pid}/{file}");
        if euid == 0 || own(maps, self_id) {
            if euid != 0 && file == "gid_map" {
                std::fs::write(format!("/proc/{pid}/setgroups"), "deny")
                    .map_err(|e| Error::io(format!("write /proc/{pid}/setgroups"), e))?;
            }
            std::fs::write(&path, text(maps))
                .map_err(|e| Error::config("config.json", field, format!("write {path}: {e}")))?;
            continue;
        }
        let mut cmd = std::process::Command::new(tool);
        cmd.arg(pid.to_string());
        for m in maps {
            cmd.args([
                m.container_id().to_string(),
                m.host_id().to_string(),
                m.size().to_string(),
            ]);
        }
        let out = cmd.output().map_err(|e| {
            Error::config(
                "config.json",
                field,
                format!("run {tool}: {e} (install uidmap)"),
            )
        })?;
        if !out.status.success() {
            return Err(Error::config(
                "config.json",
                field,
                format!("{tool}: {}", String::from_utf8_lossy(&out.stderr).trim()),
            ));
        }
    }
    Ok(())
}

/// In a process that just entered a user namespace: become its root, so
/// files we create are owned by a mapped id.
pub fn become_userns_root() -> Result<()> {
    let _ = nix::unistd::setgroups(&[]);
    let root_g = nix::unistd::Gid::from_raw(0);
    nix::unistd::setresgid(root_g, root_g, root_g).sys("setgid", "0 in the user namespace")?;
    let root_u = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresuid(root_u, root_u, root_u).sys("setuid", "0 in the user namespace")?;
    Ok(())
}

/// A user namespace with the given id maps, held by an fd (for idmapped
/// mounts): a child is cloned into a new user namespace, its maps written,
/// its namespace opened, and the child reaped.
pub fn userns_with_maps(
    uid: &[oci_spec::runtime::LinuxIdMapping],
    gid: &[oci_spec::runtime::LinuxIdMapping],
) -> Result<OwnedFd> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).sys("pipe", "idmap user namespace")?;
    let w_raw = std::os::fd::AsRawFd::as_raw_fd(&w);
    let pid = crate::linux::clone::clone_init(libc::CLONE_NEWUSER as u64, || {
        let _ = nix::unistd::close(w_raw);
        // Wait until the parent is done with us (it closes its end).
        let mut b = [0u8; 1];
        let _ = nix::unistd::read(&r, &mut b);
        0
    })?;
    drop(r);
    let res = write_id_maps(pid, uid, gid).and_then(|_| {
        nix::fcntl::open(
            format!("/proc/{pid}/ns/user").as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .sys("open", format!("/proc/{pid}/ns/user"))
    });
    drop(w);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    res
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_full_identity_map_is_the_initial_namespace() {
        assert!(super::is_identity_map("         0          0 4294967295\n"));
        assert!(!super::is_identity_map(
            "         0       1000          1\n"
        ));
        assert!(!super::is_identity_map("0 1000 1\n1 100000 65536\n"));
    }
}
