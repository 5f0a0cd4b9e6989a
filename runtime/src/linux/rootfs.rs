//! The container's root filesystem: mounts of config.json, /dev, pivot_root,
//! masked and read-only paths, the read-only root.
//!
//! Runs in the container init, in its new mount namespace. Every destination
//! is resolved inside the rootfs by [`crate::linux::resolve`] and mounted through
//! `/proc/self/fd/N` of the resolved fd, so a symlink in the image can never
//! redirect a mount onto the host. Masked paths are covered from an fd of
//! /dev/null that is checked to be the 1:3 character device first, and every
//! write under /proc goes through a [`ProcHandle`] that is checked to be procfs.
//!
//! The plan ([`Plan`]) is computed in the parent from the spec; this module
//! only carries it out.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, ResolveFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};

use crate::cgroups::CgroupMount;
use crate::error::{Error, Result, SysContext};
use crate::linux::mount_options::Options;
use crate::linux::resolve::{ensure_target, fd_path, is_dir, mkdir_all_in_root, open_in_root};

const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// One mount of config.json, resolved by the parent.
#[derive(Debug, Clone)]
pub struct MountPlan {
    pub index: usize,
    pub destination: PathBuf,
    pub typ: String,
    /// Host path for binds (made absolute against the bundle), else the
    /// source string.
    pub source: PathBuf,
    pub opts: Options,
    /// For binds: whether the source is a directory (else a file target).
    pub source_is_dir: bool,
    /// For binds: the source, opened by the runtime before the clone.
    pub source_fd: Option<std::sync::Arc<OwnedFd>>,
    /// The SELinux label set on the mount's root once mounted (`security.selinux`): the
    /// mount label for an mqueue mount, which takes no `context=` option (runc's
    /// SetFileLabel).
    pub file_label: Option<std::ffi::CString>,
}

/// A device node to create.
#[derive(Debug, Clone)]
pub struct DevicePlan {
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub rootfs: PathBuf,
    pub mounts: Vec<MountPlan>,
    pub devices: Vec<DevicePlan>,
    pub masked: Vec<PathBuf>,
    pub readonly: Vec<PathBuf>,
    pub readonly_root: bool,
    pub propagation: Option<MsFlags>,
    pub no_pivot: bool,
    /// The container has a mount namespace of its own. Without one (runtime-spec allows it)
    /// it shares the caller's: nothing is mounted or made, the init only chroots.
    pub own_mount_ns: bool,
    pub cgroup_mounts: Vec<CgroupMount>,
    pub cgroupns: bool,
    /// process.cwd, created (as runc does) when missing.
    pub cwd: PathBuf,
    /// In a user namespace device nodes cannot be made: bind the host's.
    pub bind_devices: bool,
    /// Mount data of the read-only tmpfs over a masked directory: the mount label's
    /// `context=` where there is one (as runc), else none.
    pub mask_data: Option<String>,
}

/// The default device nodes every container gets (runc's list).
pub fn default_devices() -> Vec<DevicePlan> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .map(|(name, major, minor)| DevicePlan {
        path: PathBuf::from("/dev").join(name),
        kind: SFlag::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: Some(0),
        gid: Some(0),
    })
    .collect()
}

/// Paths under /proc that may be mount destinations (lxcfs-style overlays),
/// as runc allows; anything else under /proc is refused (CVE-2019-16884).
const PROC_ALLOWED: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// Checks, in the parent, destinations that must never be mounted on.
pub fn check_destination(m: &MountPlan) -> Result<()> {
    let dest = m.destination.as_path();
    let under_proc = dest.starts_with("/proc") && dest != Path::new("/proc");
    if under_proc && !PROC_ALLOWED.iter().any(|p| Path::new(p) == dest) {
        return Err(Error::config(
            "config.json",
            format!("mounts[{}].destination", m.index),
            format!(
                "{} is under /proc: mounting there is not allowed",
                dest.display()
            ),
        ));
    }
    // A bind of another procfs (host /proc with a shared pid namespace) is
    // still proc; anything else over /proc is refused (CVE-2019-16884).
    let source_is_proc = || {
        m.opts.bind
            && nix::sys::statfs::statfs(&m.source)
                .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
    };
    if dest == Path::new("/proc") && m.typ != "proc" && !source_is_proc() {
        return Err(Error::config(
            "config.json",
            format!("mounts[{}].destination", m.index),
            format!("/proc may only be a proc mount, not {:?}", m.typ),
        ));
    }
    Ok(())
}

/// Stage 1, before the createRuntime hooks: propagation, the rootfs bind,
/// every mount, /dev.
pub fn prepare(plan: &Plan) -> Result<()> {
    if !plan.own_mount_ns {
        return Ok(());
    }
    let prop = plan
        .propagation
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    mount(None::<&str>, "/", None::<&str>, prop, None::<&str>).sys("mount", "propagation of /")?;
    // Unless every mount here is now a slave or private (the default rslave, or rprivate), the
    // rootfs may lie on a mount that is still a peer of the host's: made private before the
    // bind, as runc does. Else the bind is a peer too: what is mounted on it would appear on
    // the host, and pivot_root(".", ".") refuses a shared new root (EINVAL). The rootfs turns
    // shared again in finish when rootfsPropagation asks for it.
    let all_private_or_slave =
        prop.contains(MsFlags::MS_REC) && prop.intersects(MsFlags::MS_SLAVE | MsFlags::MS_PRIVATE);
    if !all_private_or_slave {
        make_rootfs_mount_private(&plan.rootfs)?;
    }
    mount(
        Some(&plan.rootfs),
        &plan.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .sys("bind mount rootfs", plan.rootfs.display())?;
    let root = open_dir(&plan.rootfs, OFlag::O_PATH)?;
    for m in &plan.mounts {
        mount_one(root.as_fd(), plan, m)?;
    }
    create_devices(root.as_fd(), &plan.devices, plan.bind_devices)?;
    dev_symlinks(root.as_fd())?;
    // Before the root may turn read-only.
    mkdir_all_in_root(root.as_fd(), &plan.cwd, 0o755)
        .map_err(|e| Error::msg(format!("create process.cwd {}: {e}", plan.cwd.display())))?;
    Ok(())
}

fn mount_one(root: BorrowedFd, plan: &Plan, m: &MountPlan) -> Result<()> {
    let dest = &m.destination;
    let what = || format!("{} (mounts[{}])", dest.display(), m.index);
    if m.typ == "cgroup" {
        return mount_cgroups(root, plan, m);
    }
    if m.typ == "proc" || m.typ == "sysfs" {
        // The destination must be a real directory inside the rootfs, never
        // a symlink (CVE-2019-19921).
        let target = mkdir_all_in_root(root, dest, 0o755)?;
        if let Err(nix::errno::Errno::ELOOP) = crate::linux::resolve::openat2(
            root,
            dest.strip_prefix("/").unwrap_or(dest),
            nix::fcntl::OpenHow::new()
                .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
                .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS),
        ) {
            return Err(Error::msg(format!(
                "mount destination {} is a symlink: {} must be mounted on ordinary directory",
                dest.display(),
                m.typ
            )));
        }
        return do_mount(&target, m, &what);
    }
    if m.opts.bind {
        let target = ensure_target(root, dest, !m.source_is_dir)?;
        let mut flags = MsFlags::MS_BIND;
        if m.opts.recursive {
            flags |= MsFlags::MS_REC;
        }
        let attached = match &m.source_fd {
            Some(tree) => attach_mount(tree.as_fd(), target.as_fd()),
            None => mount(
                Some(&m.source),
                fd_path(target.as_fd()).as_str(),
                None::<&str>,
                flags,
                None::<&str>,
            ),
        };
        attached.map_err(|e| {
            Error::sys(
                "bind mount",
                format!("{} on {}", m.source.display(), what()),
                e,
            )
        })?;
        let extra = m.opts.flags - MsFlags::MS_REMOUNT;
        if !extra.is_empty() {
            // Re-resolve: the fd still names the covered directory.
            let flags = extra | (flags & MsFlags::MS_REC);
            bind_remount(root, dest, flags, "remount", &what)?;
        }
        apply_recursive_attrs(root, m, &what)?;
        return apply_propagation(root, dest, &m.opts.propagation, &what);
    }
    let target = mkdir_all_in_root(root, dest, 0o755)?;
    // A read-only tmpfs or /dev is mounted writable first: files are made
    // in it (devices, mount points) before it turns read-only (runc's order).
    let delay_ro = (m.typ == "tmpfs" || dest == Path::new("/dev"))
        && m.opts.flags.contains(MsFlags::MS_RDONLY);
    if delay_ro {
        let mut rw = m.clone();
        rw.opts.flags.remove(MsFlags::MS_RDONLY);
        do_mount(&target, &rw, &what)?;
        if dest != Path::new("/dev") {
            remount_readonly(root, dest, &what)?;
        }
    } else {
        do_mount(&target, m, &what)?;
    }
    if let Some(label) = &m.file_label {
        set_file_label(root, dest, label, &what)?;
    }
    apply_recursive_attrs(root, m, &what)?;
    apply_propagation(root, dest, &m.opts.propagation, &what)
}

/// `security.selinux` of the mount at `dest` (inside `root`), reopened: the fd the mount
/// was made on still names the covered directory.
fn set_file_label(
    root: BorrowedFd,
    dest: &Path,
    label: &std::ffi::CStr,
    what: &dyn Fn() -> String,
) -> Result<()> {
    let target = open_in_root(root, dest, OFlag::O_PATH).sys("open", what())?;
    let path = std::ffi::CString::new(fd_path(target.as_fd()))
        .map_err(|_| Error::msg(format!("label {}: path with a NUL byte", what())))?;
    // SAFETY: NUL-terminated path, name and value that outlive the call; the value's
    // length excludes the NUL, as the kernel wants the label.
    let r = unsafe {
        libc::setxattr(
            path.as_ptr(),
            c"security.selinux".as_ptr(),
            label.as_ptr().cast(),
            label.to_bytes().len(),
            0,
        )
    };
    nix::errno::Errno::result(r)
        .map(drop)
        .sys("set the SELinux label of", what())
}

/// A detached copy of the mount at `source` (the whole subtree when
/// `recursive`), made with open_tree(OPEN_TREE_CLONE) so it can be attached
/// in another mount namespace, by a process that could not open `source`.
pub fn clone_mount(source: &Path, recursive: bool) -> nix::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let path = std::ffi::CString::new(source.as_os_str().as_encoded_bytes())
        .map_err(|_| nix::errno::Errno::EINVAL)?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: open_tree with a valid C string; returns a new fd we own.
    let r = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    let fd = nix::errno::Errno::result(r)?;
    // SAFETY: fresh fd from the kernel.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) })
}

/// Makes a detached mount (from [`clone_mount`]) idmapped through the user
/// namespace `userns` (its whole subtree when `recursive`).
pub fn idmap_mount(tree: BorrowedFd, userns: BorrowedFd, recursive: bool) -> nix::Result<()> {
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        userns_fd: std::os::fd::AsRawFd::as_raw_fd(&userns) as u64,
        ..MountAttr::default()
    };
    let flags = if recursive { libc::AT_RECURSIVE } else { 0 };
    mount_setattr(tree, flags, &attr)
}

/// The kernel's `struct mount_attr`, for [`mount_setattr`].
#[repr(C)]
#[derive(Default)]
pub(crate) struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

/// mount_setattr(2) on the mount `fd` refers to itself (`AT_EMPTY_PATH`), `flags` added
/// (`AT_RECURSIVE` for its whole subtree).
pub(crate) fn mount_setattr(
    fd: BorrowedFd,
    flags: libc::c_int,
    attr: &MountAttr,
) -> nix::Result<()> {
    // SAFETY: mount_setattr on our fd with a valid, sized attribute struct.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    nix::errno::Errno::result(r).map(drop)
}

/// Attaches a detached mount from [`clone_mount`] on the directory or file
/// `target` refers to (no path is resolved again).
fn attach_mount(tree: BorrowedFd, target: BorrowedFd) -> nix::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
    // SAFETY: move_mount between two fds we hold, with empty paths.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            std::os::fd::AsRawFd::as_raw_fd(&tree),
            c"".as_ptr(),
            std::os::fd::AsRawFd::as_raw_fd(&target),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    nix::errno::Errno::result(r).map(drop)
}

fn remount_readonly(root: BorrowedFd, dest: &Path, what: &dyn Fn() -> String) -> Result<()> {
    remount_readonly_with(root, dest, MsFlags::empty(), what)
}

/// A read-only bind remount of the mount at `dest` (inside `root`), with
/// `extra` flags.
fn remount_readonly_with(
    root: BorrowedFd,
    dest: &Path,
    extra: MsFlags,
    what: &dyn Fn() -> String,
) -> Result<()> {
    let flags = MsFlags::MS_RDONLY | extra;
    bind_remount(root, dest, flags, "remount read-only", what)
}

/// A bind remount of the mount at `dest` (inside `root`) with `flags`, and the ones the kernel
/// has locked on it kept; `op` and `what` name it in errors.
fn bind_remount(
    root: BorrowedFd,
    dest: &Path,
    flags: MsFlags,
    op: &'static str,
    what: &dyn Fn() -> String,
) -> Result<()> {
    let target = open_in_root(root, dest, OFlag::O_PATH).sys("open", what())?;
    let keep = locked_flags(target.as_fd());
    mount(
        None::<&str>,
        fd_path(target.as_fd()).as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | keep,
        None::<&str>,
    )
    .sys(op, what())
}

/// `rro`, `rnosuid`, ...: mount_setattr(AT_RECURSIVE) on the mount and
/// everything below it.
fn apply_recursive_attrs(root: BorrowedFd, m: &MountPlan, what: &dyn Fn() -> String) -> Result<()> {
    if m.opts.rec_set == 0 && m.opts.rec_clr == 0 {
        return Ok(());
    }
    let target = open_in_root(root, &m.destination, OFlag::O_PATH).sys("open", what())?;
    let attr = MountAttr {
        attr_set: m.opts.rec_set,
        attr_clr: m.opts.rec_clr,
        ..MountAttr::default()
    };
    mount_setattr(target.as_fd(), libc::AT_RECURSIVE, &attr)
        .sys("set recursive mount attributes of", what())
}

fn do_mount(target: &OwnedFd, m: &MountPlan, what: &dyn Fn() -> String) -> Result<()> {
    let data = (!m.opts.data.is_empty()).then_some(m.opts.data.as_str());
    let r = mount(
        Some(&m.source),
        fd_path(target.as_fd()).as_str(),
        Some(m.typ.as_str()),
        m.opts.flags,
        data,
    );
    match r {
        // mqueue/sysfs without the namespace, or /dev/mqueue on kernels
        // without it: fail as runc does, naming the mount.
        Err(e) => Err(Error::sys("mount", format!("{} ({})", what(), m.typ), e)),
        Ok(()) => Ok(()),
    }
}

fn apply_propagation(
    root: BorrowedFd,
    dest: &Path,
    props: &[MsFlags],
    what: &dyn Fn() -> String,
) -> Result<()> {
    if props.is_empty() {
        return Ok(());
    }
    let target = open_in_root(root, dest, OFlag::O_PATH).sys("open", what())?;
    for p in props {
        mount(
            None::<&str>,
            fd_path(target.as_fd()).as_str(),
            None::<&str>,
            *p,
            None::<&str>,
        )
        .sys("set propagation of", what())?;
    }
    Ok(())
}

/// Mount flags of the mount at `fd` that a bind remount must keep.
fn locked_flags(fd: BorrowedFd) -> MsFlags {
    let Ok(st) = nix::sys::statvfs::fstatvfs(fd) else {
        return MsFlags::empty();
    };
    use nix::sys::statvfs::FsFlags;
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (a, b) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(a) {
            out |= b;
        }
    }
    out
}

/// `type: cgroup`: a tmpfs with the container's cgroup of each hierarchy
/// bound (or, with a cgroup namespace, mounted fresh) below it.
fn mount_cgroups(root: BorrowedFd, plan: &Plan, m: &MountPlan) -> Result<()> {
    let dest = &m.destination;
    let what = || format!("{} (mounts[{}])", dest.display(), m.index);
    let target = mkdir_all_in_root(root, dest, 0o755)?;
    let base = m.opts.flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    // cgroup v2 host: the one hierarchy goes at the destination itself.
    if let Some(cg) = plan.cgroup_mounts.iter().find(|c| c.name.is_empty()) {
        let tp = fd_path(target.as_fd());
        let fresh = plan.cgroupns.then(|| {
            mount(
                Some("cgroup2"),
                tp.as_str(),
                Some("cgroup2"),
                m.opts.flags | base,
                None::<&str>,
            )
        });
        match fresh {
            Some(Ok(())) => {}
            // Where /sys/fs/cgroup already is the host's cgroup2 (a rootless container's
            // /sys is a bind of the host's), the kernel refuses the same filesystem on the
            // same mount point (EBUSY); in a user namespace that owns no cgroup namespace,
            // EPERM. Then, as runc, the container's own cgroup is bound there, which shows
            // what a cgroup namespace would.
            Some(Err(nix::errno::Errno::EBUSY | nix::errno::Errno::EPERM)) | None => {
                bind_cgroup(cg, &tp, what())?;
                if m.opts.flags.contains(MsFlags::MS_RDONLY) {
                    remount_readonly_with(root, dest, base, &what)?;
                }
            }
            Some(Err(e)) => return Err(Error::sys("mount cgroup2 on", what(), e)),
        }
        return Ok(());
    }
    mount(
        Some("tmpfs"),
        fd_path(target.as_fd()).as_str(),
        Some("tmpfs"),
        base,
        Some("mode=755"),
    )
    .sys("mount tmpfs for cgroups on", what())?;
    for cg in plan.cgroup_mounts.iter().filter(|c| c.fstype == "cgroup") {
        let sub = dest.join(&cg.name);
        let t = mkdir_all_in_root(root, &sub, 0o755)?;
        let tp = fd_path(t.as_fd());
        if plan.cgroupns {
            let src = if cg.name == "systemd" {
                "systemd"
            } else {
                "cgroup"
            };
            mount(
                Some(src),
                tp.as_str(),
                Some("cgroup"),
                (m.opts.flags - MsFlags::MS_RDONLY) | base,
                Some(cg.options.as_str()),
            )
            .sys("mount cgroup on", sub.display())?;
        } else {
            bind_cgroup(cg, &tp, sub.display())?;
        }
        if m.opts.flags.contains(MsFlags::MS_RDONLY) {
            remount_readonly_with(root, &sub, base, &|| sub.display().to_string())?;
        }
        for link in &cg.links {
            let dir = open_in_root(root, dest, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                .sys("open", what())?;
            match nix::unistd::symlinkat(cg.name.as_str(), dir.as_fd(), link.as_str()) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(Error::sys("symlink", dest.join(link).display(), e)),
            }
        }
    }
    if m.opts.flags.contains(MsFlags::MS_RDONLY) {
        let t = open_in_root(root, dest, OFlag::O_PATH).sys("open", what())?;
        mount(
            None::<&str>,
            fd_path(t.as_fd()).as_str(),
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base,
            None::<&str>,
        )
        .sys("remount read-only", what())?;
    }
    Ok(())
}

/// Binds the container's cgroup `cg` of the host, recursively, on `target` (a path from
/// [`fd_path`]); `what` names the target in errors.
fn bind_cgroup(cg: &CgroupMount, target: &str, what: impl std::fmt::Display) -> Result<()> {
    mount(
        Some(&cg.host_path),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .sys("bind cgroup on", what)
}

fn create_devices(root: BorrowedFd, devices: &[DevicePlan], bind: bool) -> Result<()> {
    for d in devices {
        let parent = d.path.parent().unwrap_or(Path::new("/dev"));
        let name = d
            .path
            .file_name()
            .ok_or_else(|| Error::msg(format!("device {}: no name", d.path.display())))?;
        let dir = mkdir_all_in_root(root, parent, 0o755)?;
        let dir = crate::linux::resolve::reopen(dir.as_fd(), OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .sys("open", parent.display())?;
        // Replace whatever is there (a file from the image, a stale node),
        // but never a directory.
        let _ = nix::unistd::unlinkat(dir.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir);
        if bind {
            bind_host_device(dir.as_fd(), name, &d.path)?;
            continue;
        }
        let dev = nix::sys::stat::makedev(d.major, d.minor);
        nix::sys::stat::mknodat(
            dir.as_fd(),
            name,
            d.kind,
            Mode::from_bits_truncate(d.mode),
            dev,
        )
        .sys("mknod", d.path.display())?;
        // mknod honours the umask; set the exact mode.
        nix::sys::stat::fchmodat(
            dir.as_fd(),
            name,
            Mode::from_bits_truncate(d.mode),
            nix::sys::stat::FchmodatFlags::NoFollowSymlink,
        )
        .or_else(|e| {
            if e == nix::errno::Errno::EOPNOTSUPP {
                Ok(())
            } else {
                Err(e)
            }
        })
        .sys("chmod", d.path.display())?;
        if d.uid.is_some() || d.gid.is_some() {
            nix::unistd::fchownat(
                dir.as_fd(),
                name,
                d.uid.map(nix::unistd::Uid::from_raw),
                d.gid.map(nix::unistd::Gid::from_raw),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .sys("chown", d.path.display())?;
        }
    }
    Ok(())
}

/// A user namespace may not mknod: bind the host's node of the same path
/// onto an empty file (runc's way).
fn bind_host_device(dir: BorrowedFd, name: &std::ffi::OsStr, host: &Path) -> Result<()> {
    let f = nix::fcntl::openat(
        dir,
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .sys("create", host.display())?;
    drop(f);
    let target = nix::fcntl::openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .sys("open", host.display())?;
    mount(
        Some(host),
        fd_path(target.as_fd()).as_str(),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .sys("bind mount host device", host.display())
}

fn dev_symlinks(root: BorrowedFd) -> Result<()> {
    let dev = mkdir_all_in_root(root, Path::new("/dev"), 0o755)?;
    let dev = crate::linux::resolve::reopen(dev.as_fd(), OFlag::O_RDONLY | OFlag::O_DIRECTORY)
        .sys("open", "/dev")?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        match nix::unistd::symlinkat(target, dev.as_fd(), name) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(Error::sys("symlink", format!("/dev/{name}"), e)),
        }
    }
    // /dev/ptmx follows the container's own devpts instance.
    if nix::sys::stat::fstatat(dev.as_fd(), "pts", nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFDIR)
    {
        let _ = nix::unistd::unlinkat(dev.as_fd(), "ptmx", nix::unistd::UnlinkatFlags::NoRemoveDir);
        nix::unistd::symlinkat("pts/ptmx", dev.as_fd(), "ptmx").sys("symlink", "/dev/ptmx")?;
    }
    Ok(())
}

/// Makes private the mount the rootfs lies on: the rootfs's own when it is a mount point (the
/// overlay containerd mounts there), else the one holding its directory. Its bind is then
/// private too, which pivot_root needs. A change of propagation on a path that is no mount
/// point fails with EINVAL, so the rootfs's path (absolute, its symlinks resolved) is
/// walked up until one takes it, as crun does: no read of the mount table, whose size grows
/// with every container on the host.
fn make_rootfs_mount_private(rootfs: &Path) -> Result<()> {
    let mut at = rootfs;
    loop {
        match mount(
            None::<&str>,
            at,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        ) {
            Err(nix::errno::Errno::EINVAL) => match at.parent() {
                Some(up) => at = up,
                None => {
                    return Err(Error::sys(
                        "make private",
                        at.display(),
                        nix::errno::Errno::EINVAL,
                    ))
                }
            },
            r => return r.sys("make private", at.display()),
        }
    }
}

/// Opens the directory `path` (`O_DIRECTORY | O_CLOEXEC | flags`).
fn open_dir(path: &Path, flags: OFlag) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | flags,
        Mode::empty(),
    )
    .sys("open", path.display())
}

/// Stage 2, after the createContainer hooks: switch the root.
pub fn enter(plan: &Plan) -> Result<()> {
    if !plan.own_mount_ns {
        nix::unistd::chdir(&plan.rootfs).sys("chdir", plan.rootfs.display())?;
        nix::unistd::chroot(".").sys("chroot", plan.rootfs.display())?;
        return nix::unistd::chdir("/").sys("chdir", "/");
    }
    if plan.no_pivot {
        hide_host_pseudo_fs(&plan.rootfs)?;
        nix::unistd::chdir(&plan.rootfs).sys("chdir", plan.rootfs.display())?;
        mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .sys("move mount", plan.rootfs.display())?;
        nix::unistd::chroot(".").sys("chroot", plan.rootfs.display())?;
        nix::unistd::chdir("/").sys("chdir", "/")?;
        return Ok(());
    }
    let old = open_dir(Path::new("/"), OFlag::O_RDONLY)?;
    let new = open_dir(&plan.rootfs, OFlag::O_RDONLY)?;
    nix::unistd::fchdir(&new).sys("chdir", plan.rootfs.display())?;
    // pivot_root(".", "."): the old root ends up on top of the new one and
    // is then detached, with no directory needed for it in the image.
    nix::unistd::pivot_root(".", ".").sys("pivot_root", plan.rootfs.display())?;
    nix::unistd::fchdir(&old).sys("fchdir", "old root")?;
    // Don't let the unmount propagate back to the host.
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .sys("make old root slave", ".")?;
    umount2(".", MntFlags::MNT_DETACH).sys("unmount", "old root")?;
    nix::unistd::chdir("/").sys("chdir", "/")?;
    drop(new);
    Ok(())
}

/// Without pivot_root the host's mounts stay in our namespace under the
/// chroot, and a full procfs or sysfs mount among them lets the container
/// mount a fresh, unmasked /proc. Detach every full proc and sysfs mount
/// outside the rootfs (or cover it with a tmpfs when that is refused), as
/// runc does.
fn hide_host_pseudo_fs(rootfs: &Path) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read /proc/self/mountinfo", e))?;
    let mut targets: Vec<PathBuf> = Vec::new();
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        let (root, mp, fstype) = (f.get(3), f.get(4), f.get(sep + 1));
        let (Some(root), Some(mp), Some(fstype)) = (root, mp, fstype) else {
            continue;
        };
        let mp = crate::linux::mountinfo::unescape(mp);
        if *root == "/" && (*fstype == "proc" || *fstype == "sysfs") && !mp.starts_with(rootfs) {
            targets.push(mp);
        }
    }
    // Deepest first, so a parent's detach does not hide a child we still list.
    targets.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in targets {
        match mount(
            None::<&str>,
            &p,
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        ) {
            Err(nix::errno::Errno::ENOENT) => continue,
            r => r.sys("make slave", p.display())?,
        }
        match umount2(&p, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::EPERM) => mount(
                Some("tmpfs"),
                &p,
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            )
            .sys("cover", p.display())?,
            Err(e) => return Err(Error::sys("unmount", p.display(), e)),
        }
    }
    Ok(())
}

/// Stage 3, after pivot_root: masked paths, read-only paths, read-only root.
pub fn finish(plan: &Plan) -> Result<()> {
    if !plan.own_mount_ns {
        return Ok(());
    }
    let root = open_dir(Path::new("/"), OFlag::O_PATH)?;
    for p in &plan.readonly {
        readonly_path(root.as_fd(), p)?;
    }
    if !plan.masked.is_empty() {
        let null = checked_dev_null()?;
        for p in &plan.masked {
            mask_path(root.as_fd(), p, null.as_fd(), plan.mask_data.as_deref())?;
        }
    }
    for m in &plan.mounts {
        if m.destination == Path::new("/dev")
            && !m.opts.bind
            && m.opts.flags.contains(MsFlags::MS_RDONLY)
        {
            remount_readonly(root.as_fd(), &m.destination, &|| "/dev".to_string())?;
        }
    }
    if plan.readonly_root {
        let keep = locked_flags(root.as_fd());
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | keep,
            None::<&str>,
        )
        .sys("remount read-only", "/")?;
    }
    if let Some(p) = plan.propagation {
        // The rootfs alone: the mounts on it keep the propagation config.json gave each (a
        // recursive change would make an `rprivate` bind shared). What the recursive form is
        // for, binds that stay peers of the host's mounts, was done in prepare.
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            p - MsFlags::MS_REC,
            None::<&str>,
        )
        .sys("set propagation of", "/")?;
    }
    Ok(())
}

fn readonly_path(root: BorrowedFd, p: &Path) -> Result<()> {
    let fd = match open_in_root(root, p, OFlag::O_PATH) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(Error::sys("open readonly path", p.display(), e)),
    };
    let path = fd_path(fd.as_fd());
    mount(
        Some(path.as_str()),
        path.as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .sys("bind readonly path", p.display())?;
    let fd = open_in_root(root, p, OFlag::O_PATH).sys("open readonly path", p.display())?;
    let keep = locked_flags(fd.as_fd());
    mount(
        None::<&str>,
        fd_path(fd.as_fd()).as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC | keep,
        None::<&str>,
    )
    .sys("remount read-only", p.display())
}

/// Opens /dev/null of the container and checks it is the 1:3 character
/// device: a rootfs that swapped it for a symlink or a regular file must not
/// turn masking into a bind of something else (CVE-2025-31133).
fn checked_dev_null() -> Result<OwnedFd> {
    let fd = nix::fcntl::open(
        "/dev/null",
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .sys("open", "/dev/null")?;
    let st = nix::sys::stat::fstat(&fd).sys("stat", "/dev/null")?;
    let ok = st.st_mode & libc::S_IFMT == libc::S_IFCHR
        && nix::sys::stat::major(st.st_rdev) == 1
        && nix::sys::stat::minor(st.st_rdev) == 3;
    if !ok {
        return Err(Error::msg(
            "/dev/null in the container is not the 1:3 character device: refusing to mask paths with it",
        ));
    }
    Ok(fd)
}

fn mask_path(root: BorrowedFd, p: &Path, null: BorrowedFd, data: Option<&str>) -> Result<()> {
    let fd = match open_in_root(root, p, OFlag::O_PATH) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(Error::sys("open masked path", p.display(), e)),
    };
    let target = fd_path(fd.as_fd());
    if is_dir(fd.as_fd()) {
        mount(
            Some("tmpfs"),
            target.as_str(),
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            data,
        )
        .sys("mask", p.display())
    } else {
        mount(
            Some(fd_path(null).as_str()),
            target.as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .sys("mask", p.display())
    }
}

/// A handle on a procfs mount, checked with fstatfs. Files below it are
/// opened with openat2 so that neither a symlink nor a bind mount placed in
/// /proc can redirect a write to another file (CVE-2025-52881).
pub struct ProcHandle {
    fd: OwnedFd,
}

impl ProcHandle {
    pub fn open(path: &Path) -> Result<Self> {
        let fd = open_dir(path, OFlag::O_PATH)?;
        check_proc(fd.as_fd(), path)?;
        Ok(ProcHandle { fd })
    }

    /// Opens `rel` (e.g. "sys/net/ipv4/ip_forward") below the handle.
    pub fn open_file(&self, rel: &str, flags: OFlag) -> Result<OwnedFd> {
        let how = nix::fcntl::OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS
                    | ResolveFlag::RESOLVE_NO_XDEV,
            );
        let fd = crate::linux::resolve::openat2(self.fd.as_fd(), rel, how)
            .sys("open", format!("/proc/{rel}"))?;
        check_proc(fd.as_fd(), Path::new(rel))?;
        Ok(fd)
    }
}

fn check_proc(fd: BorrowedFd, path: &Path) -> Result<()> {
    let st = nix::sys::statfs::fstatfs(fd).sys("statfs", path.display())?;
    if st.filesystem_type().0 as i64 != PROC_SUPER_MAGIC {
        return Err(Error::msg(format!("{} is not on procfs", path.display())));
    }
    Ok(())
}
