//! clone3(2) of a new process into new namespaces, used for the container init, exec'd
//! processes and the short-lived holder of an idmapped mount's user namespace.

use std::os::fd::{AsRawFd, BorrowedFd};

use crate::error::{Error, Result};

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// clone3's flag that starts the child in the cgroup2 directory `CloneArgs::cgroup`.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Clones the container init with `flags` (CLONE_NEW* bits). The child runs
/// `child` and never returns; the parent gets the child's pid.
pub fn clone_init(flags: u64, child: impl FnOnce() -> i32) -> Result<i32> {
    clone_into(flags, None, child)
}

/// [`clone_init`], the child starting in the cgroup2 directory `cgroup` when given.
pub fn clone_into(
    flags: u64,
    cgroup: Option<BorrowedFd>,
    child: impl FnOnce() -> i32,
) -> Result<i32> {
    let mut args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: clone3 without CLONE_VM behaves like fork: the child gets a
    // copy of our address space and continues here with a return of 0. The
    // process is single-threaded at this point.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r < 0 {
        return Err(Error::sys(
            "clone3",
            "new process",
            nix::errno::Errno::last(),
        ));
    }
    if r == 0 {
        let code = child();
        // SAFETY: leave the child without running the parent's atexit
        // handlers or destructors.
        unsafe { libc::_exit(code) };
    }
    Ok(r as i32)
}
