//! Whether RUN steps may have a /proc of their own, decided once per build.
//!
//! Inside a user namespace the kernel mounts a new proc only where the proc already mounted in
//! the mount namespace is fully visible: a container whose /proc has masked or read-only paths
//! (the default of docker, containerd and Kubernetes: `procMount: Default`) gets EPERM for it,
//! when a plain user builds there. [`probe`] tries that very mount in a throw-away mount and pid
//! namespace; where it is refused, [`own_proc`] is false and RUN steps get this process's /proc
//! bound instead (its masks stay), as BuildKit's rootless mode without a process sandbox does.
//!
//! [`probe`] forks: main calls it before any thread is started, after [`crate::rootless`] made
//! the user namespace. Hand-written with libc: a fork that goes on in Rust-free code (unshare,
//! fork, mount, _exit), which no crate offers.

use std::sync::atomic::{AtomicBool, Ordering};

static OWN_PROC: AtomicBool = AtomicBool::new(true);

/// True unless [`probe`] found that a new proc mount is refused here.
pub fn own_proc() -> bool {
    OWN_PROC.load(Ordering::Relaxed)
}

/// In a user namespace, tries to mount a new proc in a new mount and pid namespace of a
/// child; returns [`own_proc`]. Must run before any thread is started.
pub fn probe() -> bool {
    if !crate::idmap::in_user_namespace() {
        return true;
    }
    // SAFETY: no thread runs yet; the child calls only async-signal-safe functions on
    // constant C strings and exits with _exit.
    let ok = unsafe {
        let pid = libc::fork();
        if pid == 0 {
            if libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWPID) != 0 {
                libc::_exit(2);
            }
            let inner = libc::fork();
            if inner == 0 {
                let none = std::ptr::null::<libc::c_char>();
                libc::mount(
                    none,
                    c"/".as_ptr(),
                    none,
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                );
                let r = libc::mount(
                    c"proc".as_ptr(),
                    c"/proc".as_ptr(),
                    c"proc".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    std::ptr::null(),
                );
                libc::_exit(if r == 0 { 0 } else { 1 });
            }
            let mut st = 0;
            if inner < 0 || libc::waitpid(inner, &mut st, 0) != inner {
                libc::_exit(2);
            }
            libc::_exit(if libc::WIFEXITED(st) {
                libc::WEXITSTATUS(st)
            } else {
                2
            });
        }
        let mut st = 0;
        pid > 0
            && libc::waitpid(pid, &mut st, 0) == pid
            && libc::WIFEXITED(st)
            && libc::WEXITSTATUS(st) == 0
    };
    OWN_PROC.store(ok, Ordering::Relaxed);
    ok
}
