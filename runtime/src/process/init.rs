//! The container init: what the child of the clone does, in spec order, up
//! to execve of the container process.
//!
//! Runs after clone in a single-threaded child. Every step's error goes back
//! to the parent as a message so `create` fails with the real cause.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use oci_spec::runtime::Hook;

use crate::error::{Error, Result, SysContext};
use crate::linux::{namespaces, rootfs, sysctl};
use crate::process::{Channel, Msg};

/// Everything the init needs, computed by the parent before clone.
pub struct Plan {
    pub id: String,
    pub bundle: PathBuf,
    pub annotations: std::collections::BTreeMap<String, String>,
    pub ns: namespaces::Plan,
    pub time_offsets: Vec<(String, i64, u32)>,
    pub rootfs: rootfs::Plan,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub sysctl: HashMap<String, String>,
    /// The container process.
    pub process: crate::process::plan::ProcessPlan,
    pub create_container_hooks: Vec<Hook>,
    pub start_container_hooks: Vec<Hook>,
    /// O_PATH fd of exec.fifo, reopened for writing to wait for `start`.
    pub exec_fifo: OwnedFd,
    /// Where to send the pty master when process.terminal is set.
    pub console: Option<OwnedFd>,
    /// An unprivileged runtime writes the id maps of the init's new user namespace through
    /// its /proc files: the init stays dumpable until `go`.
    pub rootless_maps: bool,
}

/// Runs the init; returns only on error (the exit code for the child).
pub fn run(plan: &Plan, sync: &Channel) -> i32 {
    match setup(plan, sync) {
        Ok(never) => match never {},
        Err(e) => {
            sync.send_error(&e);
            1
        }
    }
}

enum Never {}

fn expect(sync: &Channel, want: &str) -> Result<()> {
    match sync.recv()? {
        Some(Msg::Go) if want == "go" => Ok(()),
        Some(Msg::HooksDone) if want == "hooks-done" => Ok(()),
        other => Err(Error::msg(format!("sync: expected {want}, got {other:?}"))),
    }
}

fn setup(plan: &Plan, sync: &Channel) -> Result<Never> {
    // Not dumpable until execve (CVE-2016-9962): no process of the container
    // may open our /proc entries or ptrace us while we hold the runtime's
    // memory and fds. `create` is non-dumpable already; this keeps it so
    // for any other caller of the init.
    // An unprivileged parent writes the id maps of our new user namespace
    // through /proc/<us>/{uid,gid}_map, which only a dumpable process lets
    // it open: it made us dumpable (to our own uid only) for that, until go.
    // Decided by the parent: here, in the new user namespace, geteuid() says root as soon as
    // the parent has written the uid map, which may be before this line runs; we would then
    // drop dumpable while the parent still has the gid map to write (EACCES).
    let rootless_maps = plan.rootless_maps;
    let set_dumpable = |on: bool| -> Result<()> {
        // SAFETY: prctl with integer arguments.
        let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, on as libc::c_ulong, 0, 0, 0) };
        nix::errno::Errno::result(r)
            .map(drop)
            .sys("prctl", "PR_SET_DUMPABLE")
    };
    if !rootless_maps {
        set_dumpable(false)?;
    }
    sync.debug(&format!(
        "child process in init(): container init {}, in its new namespaces",
        std::process::id()
    ));
    // The parent puts us into our cgroups (and writes our id maps) first.
    expect(sync, "go")?;
    if rootless_maps {
        set_dumpable(false)?;
    }
    // SAFETY: setsid in a fresh child; not a process group leader.
    unsafe { libc::setsid() };
    plan.ns.join_all()?;
    if plan.ns.has(oci_spec::runtime::LinuxNamespaceType::User) {
        // The parent wrote our id maps before `go`.
        namespaces::become_userns_root()?;
    }
    if plan.ns.new_cgroup {
        namespaces::unshare_cgroup()?;
    }
    if plan.ns.new_time {
        namespaces::unshare_time(&plan.time_offsets)?;
    }
    if let Some(h) = &plan.hostname {
        nix::unistd::sethostname(h).sys("sethostname", h)?;
    }
    if let Some(d) = &plan.domainname {
        // SAFETY: valid pointer and length of a Rust string.
        let r = unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) };
        nix::errno::Errno::result(r).sys("setdomainname", d)?;
    }
    rootfs::prepare(&plan.rootfs)?;
    sync.send(&Msg::Hooks)?;
    expect(sync, "hooks-done")?;
    // createContainer hooks run from the rootfs (runc's cwd there).
    nix::unistd::chdir(&plan.rootfs.rootfs).sys("chdir", plan.rootfs.rootfs.display())?;
    let hooks = &plan.create_container_hooks;
    run_hooks(plan, "createContainer", "creating", hooks)?;
    // Without a mount namespace nothing is mounted, /proc neither: the exec fifo is reopened
    // through the host's procfs, opened before the chroot and closed before execve.
    let host_proc = if plan.rootfs.own_mount_ns {
        None
    } else {
        Some(
            nix::fcntl::open(
                "/proc",
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .sys("open", "/proc")?,
        )
    };
    rootfs::enter(&plan.rootfs)?;
    sysctl::apply(&plan.sysctl)?;
    // Before finish: /dev may turn read-only there.
    if let Some(sock) = &plan.console {
        crate::linux::tty::setup(sock.as_fd(), plan.process.console_size, true)?;
    }
    rootfs::finish(&plan.rootfs)?;

    let exec = plan.process.resolve()?;
    plan.process.become_process(sync)?;
    // With no_new_privs the filter goes on as late as it can while errors
    // still reach `create` (runc's order): startContainer hooks run under it.
    plan.process.seal(sync)?;

    sync.debug("init: closing the pipe to signal completion (ready; waiting for start)");
    sync.send(&Msg::Ready)?;
    // Wait for `start`: opening the fifo for writing blocks until it is read.
    let fifo = match &host_proc {
        Some(proc) => nix::fcntl::openat(
            proc,
            format!("self/fd/{}", plan.exec_fifo.as_raw_fd()).as_str(),
            OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ),
        None => nix::fcntl::open(
            crate::linux::resolve::fd_path(plan.exec_fifo.as_fd()).as_str(),
            OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ),
    }
    .sys("open", "exec fifo")?;
    drop(host_proc);
    nix::unistd::write(&fifo, b"0").sys("write", "exec fifo")?;
    // Kept open (CLOEXEC) until execve: `start` reads to EOF, so it knows
    // the startContainer hooks ran and the process is exec'd before it runs
    // the poststart hooks.
    let _fifo = fifo;

    run_hooks(
        plan,
        "startContainer",
        "created",
        &plan.start_container_hooks,
    )?;

    Err(plan.process.exec(&exec))
}

pub(crate) fn close_range_cloexec(from: i32) {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            from as u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
}

pub(crate) fn cstrings(v: &[String]) -> Result<Vec<CString>> {
    v.iter()
        .map(|s| CString::new(s.as_str()).map_err(|_| Error::msg(format!("{s:?}: contains NUL"))))
        .collect()
}

/// Environment with duplicates removed: the last value of a name wins, at
/// the place of its first occurrence (what runc's os.Setenv loop yields).
pub(crate) fn dedupe_env(env: &[String]) -> Vec<String> {
    // One map lookup per entry: linear in the size of the environment (a scan of the output
    // for each entry took 158 s for 100k entries).
    let mut out: Vec<String> = Vec::with_capacity(env.len());
    let mut at: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(env.len());
    for e in env {
        let name = e.split_once('=').map_or(e.as_str(), |(n, _)| n);
        match at.get(name) {
            Some(&i) => out[i] = e.clone(),
            None => {
                at.insert(name, out.len());
                out.push(e.clone());
            }
        }
    }
    out
}

/// Adds HOME from the container's /etc/passwd (or "/") if env lacks it, as runc does.
pub(crate) fn with_home(env: &[String], uid: u32) -> Vec<String> {
    if env.iter().any(|e| e.starts_with("HOME=")) {
        return env.to_vec();
    }
    let home = passwd_field("/etc/passwd", uid, 5).unwrap_or_else(|| "/".to_string());
    let mut env = env.to_vec();
    env.push(format!("HOME={home}"));
    env
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

/// Resolves argv[0] in the container like execvp, so a missing program
/// fails `create` rather than `start`.
pub(crate) fn find_program(arg0: &str, env: &[String]) -> Result<CString> {
    let named = || crate::error::abbreviate(format!("{arg0:?}"), 256);
    let exists = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.is_file() && m.permissions().mode() & 0o111 != 0
        })
    };
    if arg0.contains('/') {
        if !Path::new(arg0).exists() {
            return Err(Error::msg(format!(
                "exec: {}: stat {}: no such file or directory",
                named(),
                crate::error::abbreviate(arg0.to_string(), 256)
            )));
        }
        return CString::new(arg0).map_err(|_| Error::msg("process.args[0] contains NUL"));
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let cand = Path::new(dir).join(arg0);
        if exists(&cand) {
            return CString::new(cand.into_os_string().into_encoded_bytes())
                .map_err(|_| Error::msg("path contains NUL"));
        }
    }
    Err(Error::msg(format!(
        "exec: {}: executable file not found in $PATH",
        named()
    )))
}

/// Runs the init's own hooks of `kind` (createContainer, startContainer)
/// with the container's state as `status`, the init's pid in it.
fn run_hooks(plan: &Plan, kind: &str, status: &str, hooks: &[Hook]) -> Result<()> {
    let pid = nix::unistd::getpid().as_raw();
    let state = crate::hooks::state_json(&plan.id, status, pid, &plan.bundle, &plan.annotations);
    crate::hooks::run_all(kind, hooks, &state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_duplicates_last_value_at_first_place() {
        let env: Vec<String> = ["A=1", "B=2", "A=3", "C", "C=4", "B=", "=x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(dedupe_env(&env), ["A=3", "B=", "C=4", "=x"]);
        // 100k distinct names: kept in order (the bench times this; runc takes 21 s).
        let many: Vec<String> = (0..100_000).map(|i| format!("K{i}=v")).collect();
        assert_eq!(dedupe_env(&many), many);
    }

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
