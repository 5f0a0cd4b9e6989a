//! brig-build run by a plain user: the user and mount namespace the build runs in, as
//! buildah's and BuildKit's rootless modes make it.
//!
//! [`enter`] forks before anything else runs (no threads yet): the child unshares a user and
//! a mount namespace and waits; the parent maps, with Debian's `newuidmap`/`newgidmap`
//! (package uidmap, setuid root), the child's 0 to the user's own uid/gid and 1..N to the
//! user's ranges in /etc/subuid and /etc/subgid; then the child goes on with the build as
//! root of that namespace (it mounts overlayfs, chowns to any mapped id, runs the runtime),
//! and the parent waits for it, forwards the signals a job gets and exits with its status.
//! Mounts made inside never reach the host: the new mount namespace's mounts are slaves of
//! the host's at most.
//!
//! Owns the subordinate id files' format (`NAME|UID:FIRST:COUNT`, the first line of the user
//! wins, as shadow's tools read it) and the errors for a user without a range or a host
//! without newuidmap. Hand-written with libc: the fork must happen in this single-threaded
//! process and continue it (no exec), which no crate for spawning processes offers.

use std::ffi::CStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

/// One subordinate id range of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubRange {
    pub first: u32,
    pub count: u32,
}

/// The first range of `name` (or numeric `uid`) in the text of /etc/subuid or /etc/subgid.
pub fn sub_range(text: &str, name: &str, uid: u32) -> Option<SubRange> {
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let who = f.next()?;
        if who != name && who.parse::<u32>().ok() != Some(uid) {
            return None;
        }
        let first = f.next()?.trim().parse().ok()?;
        let count: u32 = f.next()?.trim().parse().ok()?;
        (count > 0).then_some(SubRange { first, count })
    })
}

/// The default store of a plain user: $XDG_DATA_HOME/brig-build, else
/// ~/.local/share/brig-build (as podman and BuildKit place theirs).
pub fn user_store() -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(Path::new(&d).join("brig-build"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => Ok(Path::new(&h).join(".local/share/brig-build")),
        None => Err("neither XDG_DATA_HOME nor HOME is set: name the store with --store".into()),
    }
}

fn user_name(uid: u32) -> Option<String> {
    // SAFETY: getpwuid returns NULL or a pointer to static storage, read at once; no other
    // thread runs yet.
    unsafe {
        let pw = libc::getpwuid(uid);
        if pw.is_null() {
            return None;
        }
        Some(CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned())
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// What the maps need, read and checked before the fork: nothing is left behind on an error.
struct Plan {
    uid: u32,
    gid: u32,
    subuid: SubRange,
    subgid: SubRange,
    newuidmap: PathBuf,
    newgidmap: PathBuf,
}

fn plan(uid: u32, gid: u32) -> Result<Plan, String> {
    let name = user_name(uid).unwrap_or_else(|| uid.to_string());
    let range = |file: &str, flag: &str| -> Result<SubRange, String> {
        let text = fs::read_to_string(file).unwrap_or_default();
        sub_range(&text, &name, uid).ok_or_else(|| {
            format!(
                "{file}: no range of ids for user {name} (uid {uid}): a build as a plain user \
                 needs one, e.g. as root: usermod {flag} 100000-165535 {name}"
            )
        })
    };
    let subuid = range("/etc/subuid", "--add-subuids")?;
    let subgid = range("/etc/subgid", "--add-subgids")?;
    let prog = |p: &str| {
        find_program(p).ok_or_else(|| {
            format!(
                "{p} not found: a build as a plain user needs newuidmap and newgidmap \
                 (Debian's package uidmap: apt-get install uidmap)"
            )
        })
    };
    Ok(Plan {
        uid,
        gid,
        subuid,
        subgid,
        newuidmap: prog("newuidmap")?,
        newgidmap: prog("newgidmap")?,
    })
}

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

fn map_child(p: &Plan, pid: i32) -> Result<(), String> {
    for (prog, own, r) in [
        (&p.newuidmap, p.uid, p.subuid),
        (&p.newgidmap, p.gid, p.subgid),
    ] {
        let out = Command::new(prog)
            .arg(pid.to_string())
            .args(["0", &own.to_string(), "1"])
            .args(["1", &r.first.to_string(), &r.count.to_string()])
            .output()
            .map_err(|e| format!("{}: {e}", prog.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} {pid} 0 {own} 1 1 {} {}: {}{}",
                prog.display(),
                r.first,
                r.count,
                String::from_utf8_lossy(&out.stderr).trim(),
                map_refused_because(prog).unwrap_or_default()
            ));
        }
    }
    Ok(())
}

/// A field of /proc/self/status (`Seccomp`, `CapBnd`).
fn status_field(name: &str) -> Option<String> {
    let text = fs::read_to_string("/proc/self/status").ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim().to_string())
    })
}

/// Why unshare(CLONE_NEWUSER) was refused here and what to change: a seccomp filter (the
/// default profiles of docker and containerd, Kubernetes' RuntimeDefault, allow it only with
/// CAP_SYS_ADMIN), no user namespaces allowed by sysctl, or else an LSM.
fn unshare_refused() -> String {
    if status_field("Seccomp").as_deref() == Some("2") {
        return "a seccomp filter refuses it (Seccomp: 2 in /proc/self/status; the default \
                profiles of docker and containerd, Kubernetes' RuntimeDefault, allow \
                unshare(CLONE_NEWUSER) only with CAP_SYS_ADMIN): run this container with \
                seccomp unconfined (Kubernetes: securityContext.seccompProfile.type: \
                Unconfined; docker, podman: --security-opt seccomp=unconfined) or a profile \
                that allows unshare"
            .into();
    }
    let max = fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    if max.trim() == "0" {
        return "user.max_user_namespaces is 0: on the host, sysctl -w \
                user.max_user_namespaces=15000"
            .into();
    }
    "the kernel or an LSM refuses user namespaces here (AppArmor: Kubernetes' \
     securityContext.appArmorProfile.type: Unconfined, or on Ubuntu's hosts \
     kernel.apparmor_restrict_unprivileged_userns=0)"
        .into()
}

/// Why newuidmap (or newgidmap) could not write the map, where this process can tell: with
/// no_new_privs set it gains neither setuid root nor its file capabilities; setuid root in a
/// container whose capability bounding set lacks CAP_SYS_ADMIN has its map refused (written
/// as root for a namespace root does not own), where the same program with a file capability
/// writes it as the user. None otherwise.
fn map_refused_because(prog: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if status_field("NoNewPrivs").as_deref() == Some("1") {
        return Some(
            "; no_new_privs is set on this process (NoNewPrivs: 1 in /proc/self/status), so \
             newuidmap runs without the privilege it needs: run the container without it \
             (Kubernetes: do not set securityContext.allowPrivilegeEscalation: false; docker, \
             podman: no --security-opt no-new-privileges)"
                .into(),
        );
    }
    let m = fs::metadata(prog).ok()?;
    let bounding = u64::from_str_radix(&status_field("CapBnd")?, 16).ok()?;
    let sys_admin = 1u64 << 21;
    if m.mode() & 0o4000 == 0 || m.uid() != 0 || bounding & sys_admin != 0 {
        return None;
    }
    Some(
        "; newuidmap and newgidmap are setuid root, which in a container without \
         CAP_SYS_ADMIN cannot write the maps: give them file capabilities instead, in the \
         image as root: chmod u-s /usr/bin/newuidmap /usr/bin/newgidmap && setcap \
         cap_setuid=ep /usr/bin/newuidmap && setcap cap_setgid=ep /usr/bin/newgidmap"
            .into(),
    )
}

/// What [`enter`] did.
pub enum Entered {
    /// Root already (or the namespace is entered): go on.
    Root,
    /// This is the parent; the build ran in the child, which exited with this code.
    Parent(i32),
}

/// Makes this plain user's process root of a new user and mount namespace (see the module
/// doc). Must run before any thread is started.
pub fn enter() -> Result<Entered, String> {
    // SAFETY: plain getters.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 {
        return Ok(Entered::Root);
    }
    let plan = plan(uid, gid)?;
    let mut to_parent = [0; 2];
    let mut to_child = [0; 2];
    // SAFETY: pipe2 fills the arrays it is given.
    if unsafe { libc::pipe2(to_parent.as_mut_ptr(), libc::O_CLOEXEC) } != 0
        || unsafe { libc::pipe2(to_child.as_mut_ptr(), libc::O_CLOEXEC) } != 0
    {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: no thread runs yet (main calls this first), so the child is a full copy of this
    // process and may go on running Rust code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // The child: unshare, tell the parent, wait for the maps.
        // SAFETY: fds from pipe2 above; unshare in a single-threaded process.
        unsafe {
            libc::close(to_parent[0]);
            libc::close(to_child[1]);
            let r = libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS);
            let err = std::io::Error::last_os_error();
            let byte: u8 = if r == 0 { 0 } else { 1 };
            libc::write(to_parent[1], &byte as *const u8 as *const libc::c_void, 1);
            if r != 0 {
                eprintln!(
                    "brig-build: error: unshare of a user namespace: {err}: {}",
                    unshare_refused()
                );
                libc::_exit(1);
            }
            let mut ok = 0u8;
            if libc::read(to_child[0], &mut ok as *mut u8 as *mut libc::c_void, 1) != 1 || ok != 0 {
                libc::_exit(1);
            }
            libc::close(to_parent[1]);
            libc::close(to_child[0]);
        }
        return Ok(Entered::Root);
    }
    // The parent.
    // SAFETY: fds from pipe2 above.
    unsafe {
        libc::close(to_parent[1]);
        libc::close(to_child[0]);
    }
    CHILD.store(pid, Ordering::Relaxed);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: forward is async-signal-safe (an atomic load and kill).
        unsafe { libc::signal(sig, forward as *const () as libc::sighandler_t) };
    }
    let mut byte = 1u8;
    // SAFETY: reading one byte into a local.
    let n = unsafe { libc::read(to_parent[0], &mut byte as *mut u8 as *mut libc::c_void, 1) };
    let mapped = if n == 1 && byte == 0 {
        map_child(&plan, pid)
    } else {
        Err(String::new())
    };
    let ok: u8 = if mapped.is_ok() { 0 } else { 1 };
    // SAFETY: writing one byte from a local; fds from pipe2 above.
    unsafe {
        libc::write(to_child[1], &ok as *const u8 as *const libc::c_void, 1);
        libc::close(to_child[1]);
        libc::close(to_parent[0]);
    }
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
        }
    }
    if let Err(e) = mapped {
        if !e.is_empty() {
            return Err(format!(
                "mapping the ids of the build's user namespace: {e}"
            ));
        }
    }
    Ok(Entered::Parent(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_range_of_the_user_by_name_or_uid() {
        let t = "other:100000:65536\nbuild:165536:65536\nbuild:300000:10\n1500:400000:1000\n";
        assert_eq!(
            sub_range(t, "build", 1000),
            Some(SubRange {
                first: 165536,
                count: 65536
            })
        );
        assert_eq!(
            sub_range(t, "nobody-here", 1500),
            Some(SubRange {
                first: 400000,
                count: 1000
            })
        );
        assert_eq!(sub_range(t, "nobody-here", 7), None);
        assert_eq!(sub_range("x:1:0\n", "x", 1), None, "an empty range");
    }
}
