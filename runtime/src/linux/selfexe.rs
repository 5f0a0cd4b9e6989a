//! The runtime's own executable, as the container could reach it (CVE-2019-5736).
//!
//! brig does not re-exec itself for the init: the init and exec children are
//! clones of the `create`/`run`/`exec` process, so until their execve
//! `/proc/self/exe` is whatever that process runs from. A container image
//! whose entrypoint is `#!/proc/self/exe` makes the kernel run that file
//! inside the container; a process there keeps an fd of it and, once no brig
//! runs any more, reopens it for writing and replaces brig on the host.
//!
//! So before a command that starts container processes, brig re-executes
//! itself from a view of its binary that cannot be written: a detached,
//! read-only bind mount of the file (`open_tree` + `mount_setattr`), or, where
//! mounts are not allowed, a sealed memfd copy (runc 1.1's way). An
//! executable already on a read-only mount or in a sealed memfd is used as
//! it is. The process is then made non-dumpable, so the clones start
//! non-dumpable too (CVE-2016-9962) before they enter the container's pid
//! namespace.
//!
//! Runs first thing in `main`, single-threaded, before any fd is opened.

use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::error::{Error, Result, SysContext};
use crate::linux::rootfs::{mount_setattr, MountAttr};

/// Set in the environment of the re-executed runtime (and removed by it).
const MARK: &str = "_BRIG_PROTECTED_EXE";

/// Re-executes the runtime from a read-only view of its binary unless it
/// already runs from one, then makes the process non-dumpable. Returns only
/// when the process is protected.
pub fn protect() -> Result<()> {
    let reexecuted = std::env::var_os(MARK).is_some();
    if reexecuted {
        std::env::remove_var(MARK);
    }
    if !is_protected()? {
        if reexecuted {
            return Err(Error::msg(
                "re-executed from a read-only copy of brig, but /proc/self/exe is still writable",
            ));
        }
        let fd = match read_only_view() {
            Ok(fd) => fd,
            Err(_) => sealed_copy()?,
        };
        reexec(fd)?;
    }
    // SAFETY: prctl with integer arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    nix::errno::Errno::result(r).sys("prctl", "PR_SET_DUMPABLE")?;
    Ok(())
}

/// Whether /proc/self/exe is on a read-only mount or a write-sealed memfd.
fn is_protected() -> Result<bool> {
    let exe = nix::fcntl::open(
        "/proc/self/exe",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .sys("open", "/proc/self/exe")?;
    let st = nix::sys::statvfs::fstatvfs(&exe).sys("statvfs", "/proc/self/exe")?;
    if st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
        return Ok(true);
    }
    // SAFETY: fcntl on our own fd; fails with EINVAL on anything but a memfd.
    let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
    Ok(seals >= 0 && seals & libc::F_SEAL_WRITE != 0)
}

/// A detached bind mount of our executable, made read-only; the fd names
/// the file itself.
fn read_only_view() -> Result<OwnedFd> {
    let tree = crate::linux::rootfs::clone_mount(std::path::Path::new("/proc/self/exe"), false)
        .sys("open_tree", "/proc/self/exe")?;
    let attr = MountAttr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        ..MountAttr::default()
    };
    mount_setattr(tree.as_fd(), 0, &attr)
        .sys("mount_setattr", "read-only view of /proc/self/exe")?;
    Ok(tree)
}

/// A memfd copy of our executable with every seal that forbids writing.
fn sealed_copy() -> Result<OwnedFd> {
    // SAFETY: memfd_create with a valid C string; returns a new fd we own.
    let fd = unsafe {
        libc::memfd_create(
            c"brig".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    let fd = nix::errno::Errno::result(fd).sys("memfd_create", "copy of brig")?;
    // SAFETY: fresh fd from the kernel.
    let mem = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut src =
        std::fs::File::open("/proc/self/exe").map_err(|e| Error::io("open /proc/self/exe", e))?;
    let mut dst = std::fs::File::from(mem);
    std::io::copy(&mut src, &mut dst).map_err(|e| Error::io("copy brig into a memfd", e))?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on our own memfd.
    let r = unsafe { libc::fcntl(dst.as_raw_fd(), libc::F_ADD_SEALS, seals) };
    nix::errno::Errno::result(r).sys("seal", "memfd copy of brig")?;
    Ok(dst.into())
}

/// execveat(fd) with our argv and environment plus [`MARK`].
fn reexec(fd: OwnedFd) -> Result<()> {
    let cstr = |v: OsString| CString::new(v.into_vec()).map_err(|_| Error::msg("NUL in argv"));
    let argv: Vec<CString> = std::env::args_os().map(cstr).collect::<Result<_>>()?;
    let mut envp: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            cstr(kv)
        })
        .collect::<Result<_>>()?;
    envp.push(cstr(format!("{MARK}=1").into())?);
    let mut argp: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argp.push(std::ptr::null());
    let mut envpp: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envpp.push(std::ptr::null());
    // SAFETY: execveat with NUL-terminated arrays of valid C strings that
    // outlive the call; returns only on error.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            argp.as_ptr(),
            envpp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Err(Error::sys(
        "execveat",
        "read-only copy of brig",
        nix::errno::Errno::last(),
    ))
}
