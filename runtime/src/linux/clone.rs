//! clone3(2) of a new process into new namespaces, used for the container init, exec'd
//! processes and the short-lived holder of an idmapped mount's user namespace.

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

/// Clones the container init with `flags` (CLONE_NEW* bits). The child runs
/// `child` and never returns; the parent gets the child's pid.
pub fn clone_init(flags: u64, child: impl FnOnce() -> i32) -> Result<i32> {
    let mut args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
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
