//! The container init: what the child of the clone does, in spec order, up
//! to execve of the container process.
//!
//! Runs after clone in a single-threaded child. Every step's error goes back
//! to the parent as a message so `create` fails with the real cause.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

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
    /// Join a new session keyring of the container's own (unless --no-new-keyring).
    pub new_keyring: bool,
    /// The container's cgroups, which the init enters first thing (or `None`: the parent
    /// puts it in).
    pub cgroups: Option<crate::cgroups::Entry>,
    /// The parent works on the new process before it may go on (writes its id maps or its
    /// oom_score_adj).
    pub parent_first: bool,
    /// The spec has prestart or createRuntime hooks, which the parent runs when the mounts
    /// are ready.
    pub runtime_hooks: bool,
}

/// Whether the init waits for the parent's `Go`: when the parent has work on it first, or
/// puts it into its cgroups (`joins`: the init enters them itself).
pub fn awaits_go(plan: &Plan, joins: bool) -> bool {
    plan.parent_first || !joins
}

/// Runs the init; returns only on error (the exit code for the child). `joins`: it enters
/// its cgroups itself ([`Plan::cgroups`]).
pub fn run(plan: &Plan, sync: &Channel, joins: bool) -> i32 {
    match setup(plan, sync, joins) {
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

fn setup(plan: &Plan, sync: &Channel, joins: bool) -> Result<Never> {
    if joins {
        if let Some(entry) = &plan.cgroups {
            entry.join_self()?;
        }
    }
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
    // The parent puts us into our cgroups, writes our id maps or oom_score_adj first.
    if awaits_go(plan, joins) {
        expect(sync, "go")?;
    }
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
    if plan.runtime_hooks {
        sync.send(&Msg::Hooks)?;
        expect(sync, "hooks-done")?;
    }
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
    if plan.new_keyring {
        crate::linux::lsm::join_session_keyring(
            &plan.id,
            plan.process.labels.selinux.as_deref(),
            Some(plan.ns.has(oci_spec::runtime::LinuxNamespaceType::User)),
        )?;
    }

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

/// Runs the init's own hooks of `kind` (createContainer, startContainer)
/// with the container's state as `status`, the init's pid in it.
fn run_hooks(plan: &Plan, kind: &str, status: &str, hooks: &[Hook]) -> Result<()> {
    let pid = nix::unistd::getpid().as_raw();
    let state = crate::hooks::state_json(&plan.id, status, pid, &plan.bundle, &plan.annotations);
    crate::hooks::run_all(kind, hooks, &state)
}
