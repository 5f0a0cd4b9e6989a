//! Container lifecycle: create, start, kill, delete, pause, resume.
//!
//! `run` is not here: the binary's `commands/run.rs` chains the steps this
//! module gives it ([`create_with_sync`], [`start`], [`wait_exec`],
//! [`delete`], and [`process::foreground::wait`]).
//!
//! `create` reads the bundle, turns the spec into the init's plan, clones the
//! init, drives it through the sync protocol, and records the state once.
//! Any failure undoes what was done (process, cgroup, state dir), so a failed
//! create leaves nothing behind. Status is always derived from facts
//! ([`state::Saved::status`]).

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxNamespaceType;

use crate::cgroups;
use crate::error::{Error, Result, SysContext};
use crate::hooks;
use crate::linux::{capabilities, namespaces, rootfs, seccomp, tty};
use crate::process::plan::ProcessPlan;
use crate::process::{self, init, Channel, Msg};
use crate::state::{self, Root, Saved, Status};
use crate::{logging, spec};

/// Options of `create` and `run`.
#[derive(Debug, Default, Clone)]
pub struct CreateOpts {
    pub id: String,
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: i32,
    /// Instead of a console socket path: a connected socket (owned by the
    /// caller) to send the pty master to; foreground `run` uses it.
    pub console_fd: Option<i32>,
}

/// Creates a container; returns the init's pid. The caller's process is the
/// parent of the init (needed by foreground `run` to wait for it).
pub fn create(root: &Root, opts: &CreateOpts) -> Result<i32> {
    create_with_sync(root, opts).map(|(pid, _)| pid)
}

/// [`create`], also returning the parent's end of the sync socket: after
/// `start` it reports an error of the init's last steps (startContainer
/// hooks, execve), or closes when the container process runs.
pub fn create_with_sync(root: &Root, opts: &CreateOpts) -> Result<(i32, Channel)> {
    root.check_new(&opts.id)?;
    let bundle = spec::load(&opts.bundle)?;
    let spec = &bundle.spec;
    let process_spec = process_of(&bundle)?;
    let linux = spec.linux().as_ref().expect("validated");
    let console = console_for(process_spec.terminal() == Some(true), opts)?;
    let cache = root.dir.join(crate::linux::seccomp_cache::DIR);
    let (ns, seccomp) = checked_plans(spec, process_spec, Some(&cache))?;
    let sysctls = linux.sysctl().clone().unwrap_or_default();

    let mut undo = process::undo::Undo::new("create");
    let dir = root.create_dir(&opts.id)?;
    undo.dir = Some(dir.clone());
    let exec_fifo = state::make_exec_fifo(&dir)?;
    let (cg, use_cgroup) = cgroups::for_container(linux, &opts.id)?;
    let cgroup_mounts = cg.mounts();
    undo.cgroup = Some(cg);
    let cgroup_entry = undo.cgroup.as_ref().expect("set above").entry()?;

    let rootfs_plan = rootfs::Plan::from_spec(
        spec,
        &bundle.dir,
        &bundle.rootfs,
        opts.no_pivot,
        cgroup_mounts,
        ns.has(LinuxNamespaceType::Cgroup),
        true,
    )?;
    let hooks = spec.hooks().clone().unwrap_or_default();
    let annotations: BTreeMap<String, String> = spec
        .annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let rootless_maps =
        !nix::unistd::geteuid().is_root() && ns.clone_flags & libc::CLONE_NEWUSER as u64 != 0;
    let id_maps = spec::new_user_namespace(linux);
    let runtime_hooks = [hooks.prestart(), hooks.create_runtime()]
        .iter()
        .any(|h| h.as_ref().is_some_and(|l| !l.is_empty()));
    let plan = init::Plan {
        id: opts.id.clone(),
        bundle: bundle.dir.clone(),
        annotations: annotations.clone(),
        time_offsets: linux
            .time_offsets()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.secs().unwrap_or(0), v.nanosecs().unwrap_or(0)))
            .collect(),
        ns,
        rootfs: rootfs_plan,
        hostname: spec.hostname().clone(),
        domainname: spec.domainname().clone(),
        sysctl: sysctls,
        process: ProcessPlan::from_spec(process_spec, seccomp, opts.preserve_fds)?,
        create_container_hooks: hooks.create_container().clone().unwrap_or_default(),
        start_container_hooks: hooks.start_container().clone().unwrap_or_default(),
        exec_fifo,
        console,
        // Rootless with a new user namespace: we write the child's id maps through its /proc
        // files, which it must be dumpable for; it inherits this flag at the clone and drops
        // it once the maps are written.
        rootless_maps,
        new_keyring: !opts.no_new_keyring,
        cgroups: cgroup_entry,
        parent_first: id_maps || process_spec.oom_score_adj().is_some(),
        runtime_hooks,
    };

    if let Some(j) = &plan.ns.join_pid {
        namespaces::join_pid_for_children(j)?;
    }
    let (parent_sync, child_sync) = Channel::pair()?;
    std::env::set_current_dir(&bundle.dir)
        .map_err(|e| Error::io(format!("chdir {}", bundle.dir.display()), e))?;
    if rootless_maps {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    }
    crate::logging::debug(&format!(
        "nsexec container setup: clone3 of the container init (namespace flags {:#x})",
        plan.ns.clone_flags
    ));
    let (plan_ref, parent_raw, child_ref) = (&plan, parent_sync.as_raw_fd(), &child_sync);
    let child = |joins: bool| {
        move || {
            let _ = nix::unistd::close(parent_raw);
            init::run(plan_ref, child_ref, joins)
        }
    };
    // The init enters its cgroups itself where it can (cgroups::Entry).
    let (pid, joins) =
        match process::clone_entering(plan.ns.clone_flags, plan.cgroups.as_ref(), child) {
            Ok((pid, joins)) => (Ok(pid), joins),
            Err(e) => (Err(e), false),
        };
    if rootless_maps {
        // SAFETY: as above.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    }
    let pid = pid?;
    drop(child_sync);
    undo.pid = Some(pid);
    let cg = undo.cgroup.as_ref().expect("set above");

    let run_parent = || -> Result<()> {
        if !joins {
            cg.apply(pid)?;
        }
        if let Some(adj) = process_spec.oom_score_adj() {
            std::fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string())
                .map_err(|e| Error::io(format!("set process.oomScoreAdj to {adj}"), e))?;
        }
        if id_maps {
            namespaces::write_id_maps(
                pid,
                linux.uid_mappings().as_deref().unwrap_or(&[]),
                linux.gid_mappings().as_deref().unwrap_or(&[]),
            )?;
        }
        if init::awaits_go(&plan, joins) {
            if let Err(e) = parent_sync.send(&Msg::Go) {
                // A child that failed already (entering its cgroups) said why.
                return Err(match parent_sync.recv() {
                    Ok(Some(Msg::Error { msg })) => Error::Msg(msg),
                    _ => e,
                });
            }
        }
        let listener = process::parent::Listener {
            profile: linux.seccomp().as_ref(),
            pid,
            state_json: hooks::state_json(&opts.id, "creating", pid, &bundle.dir, &annotations),
        };
        let run_hooks = || {
            let st = &listener.state_json;
            let r = hooks::run_all("prestart", hooks.prestart().as_deref().unwrap_or(&[]), st)
                .and_then(|_| {
                    let list = hooks.create_runtime().as_deref().unwrap_or(&[]);
                    hooks::run_all("createRuntime", list, st)
                });
            if r.is_err() {
                let st = hooks::state_json(&opts.id, "stopped", pid, &bundle.dir, &annotations);
                let list = hooks.poststop().as_deref().unwrap_or(&[]);
                if let Err(pe) = hooks::run_all("poststop", list, &st) {
                    logging::warn(&pe.to_string());
                }
            }
            r
        };
        match process::parent::drive(&parent_sync, &listener, run_hooks)? {
            process::parent::End::Ready => Ok(()),
            process::parent::End::Closed => Err(Error::msg("container init exited during setup")),
        }
    };
    run_parent()?;
    // Rootless without limits: no cgroup to configure.
    if use_cgroup {
        let mut res = linux.resources().clone().unwrap_or_default();
        // Rootless, the container reaches only the devices its user can, and an
        // unprivileged caller can load no device program (cgroup v2) nor write a
        // devices cgroup it does not own (v1): no device rules, as runc ignores them.
        let devices = cgroups::privileged()
            .then(|| cgroups::device_rules(res.devices().as_deref(), linux.devices().as_deref()));
        res.set_devices(devices);
        cg.set(&res)?;
    }

    state::record(
        &dir,
        &bundle,
        &opts.id,
        pid,
        cg.paths(),
        opts.no_new_keyring,
    )?;
    if let Some(p) = &opts.pid_file {
        state::write_pid_file(&absolute(p)?, pid)?;
    }
    undo.disarm();
    Ok((pid, parent_sync))
}

/// The bundle's process, which a container needs.
fn process_of(bundle: &spec::Bundle) -> Result<&oci_spec::runtime::Process> {
    bundle.spec.process().as_ref().ok_or_else(|| {
        Error::config(
            bundle.dir.join("config.json"),
            "process",
            "missing: nothing to run",
        )
    })
}

/// What create checks of a validated spec against this host, and the plans it makes before
/// anything exists: the namespaces and the compiled seccomp filter (kept in `cache`, when
/// given, for the next container with the same profile).
fn checked_plans(
    spec: &oci_spec::runtime::Spec,
    process_spec: &oci_spec::runtime::Process,
    cache: Option<&Path>,
) -> Result<(namespaces::Plan, Option<seccomp::SeccompProgram>)> {
    let linux = spec.linux().as_ref().expect("validated");
    crate::linux::lsm::check(process_spec)
        .map_err(|(field, msg)| Error::config("config.json", format!("process.{field}"), msg))?;
    crate::linux::lsm::check_mount_label(linux.mount_label().as_deref())
        .map_err(|(field, msg)| Error::config("config.json", format!("linux.{field}"), msg))?;
    for name in capabilities::unknown(process_spec.capabilities().as_ref()) {
        logging::warn(&format!(
            "ignoring unknown or unavailable capability {name:?}"
        ));
    }
    let ns = namespaces::Plan::from_spec(linux.namespaces().as_deref().unwrap_or(&[]))?;
    spec::check_namespaced(spec, |t| ns.has(t))?;
    let seccomp = linux
        .seccomp()
        .as_ref()
        .map(|p| crate::linux::seccomp_cache::compile(p, cache))
        .transpose()?;
    Ok((ns, seccomp))
}

/// For the fuzz targets (fuzz/): every check and plan `create` makes from the bundle at
/// `bundle`, making nothing (no state dir, cgroup, mount or process; bind sources are not
/// cloned).
#[doc(hidden)]
pub fn fuzz_plan(bundle: &Path) -> Result<()> {
    let bundle = spec::load(bundle)?;
    let spec = &bundle.spec;
    let process_spec = process_of(&bundle)?;
    let (ns, seccomp) = checked_plans(spec, process_spec, None)?;
    let cgroupns = ns.has(LinuxNamespaceType::Cgroup);
    rootfs::Plan::from_spec(
        spec,
        &bundle.dir,
        &bundle.rootfs,
        false,
        Vec::new(),
        cgroupns,
        false,
    )?;
    ProcessPlan::from_spec(process_spec, seccomp, 0)?;
    let linux = spec.linux().as_ref().expect("validated");
    let resources = linux.resources().as_ref();
    cgroups::device_rules(
        resources.and_then(|r| r.devices().as_deref()),
        linux.devices().as_deref(),
    );
    Ok(())
}

/// After `start` of a container made by [`create_with_sync`]: waits until
/// the init has exec'd the container process, or returns its error.
pub fn wait_exec(sync: &Channel) -> Result<()> {
    match sync.recv() {
        Ok(None) | Err(_) => Ok(()),
        Ok(Some(Msg::Error { msg })) => Err(Error::Msg(msg)),
        Ok(Some(m)) => Err(Error::msg(format!("sync: unexpected {m:?}"))),
    }
}

/// The socket the init sends the pty master to, checked like runc's
/// checkTerminal.
/// Where the init sends its pty master: the console socket, or (foreground `run`) the
/// caller's end of a socketpair.
fn console_for(terminal: bool, opts: &CreateOpts) -> Result<Option<std::os::fd::OwnedFd>> {
    let detach = opts.console_fd.is_none();
    tty::check_console(terminal, detach, opts.console_socket.is_some())?;
    match (terminal, &opts.console_socket, opts.console_fd) {
        (true, Some(path), _) => Ok(Some(tty::connect_console(path)?.into())),
        (true, None, Some(fd)) => {
            // SAFETY: the caller keeps `fd` open during create.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            Ok(Some(
                fd.try_clone_to_owned()
                    .map_err(|e| Error::io("dup console fd", e))?,
            ))
        }
        _ => Ok(None),
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    // Relative to where brig was started; create chdirs into the bundle,
    // so callers resolve before create (see main).
    Ok(std::env::current_dir()
        .map_err(|e| Error::io("getcwd", e))?
        .join(p))
}

/// `start`: lets the init exec the container process, then runs poststart.
pub fn start(root: &Root, id: &str) -> Result<()> {
    let _lock = root.lock(id)?;
    let saved = root.load(id)?;
    match saved.status(root) {
        Status::Created => {}
        Status::Stopped => return Err(Error::msg("cannot start a container that has stopped")),
        _ => return Err(Error::msg("cannot start an already running container")),
    }
    let fifo_path = root.container_dir(id).join(state::EXEC_FIFO);
    let fifo = nix::fcntl::open(
        &fifo_path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .sys("open", fifo_path.display())?;
    let mut buf = [0u8; 1];
    loop {
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&fifo),
            nix::poll::PollFlags::POLLIN,
        )];
        let n = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16));
        match n {
            Ok(0) | Err(nix::errno::Errno::EINTR) => {}
            Ok(_) => match nix::unistd::read(&fifo, &mut buf) {
                Ok(1) => break,
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => {}
                Err(e) => return Err(Error::sys("read", fifo_path.display(), e)),
            },
            Err(e) => return Err(Error::sys("poll", fifo_path.display(), e)),
        }
        if !state::init_alive(&saved) {
            return Err(Error::msg("container init exited before start"));
        }
    }
    // The init holds its end open until execve: EOF means the container
    // process runs (or the init died in a startContainer hook, which `run`
    // reports from the sync socket; a short-lived process may also be gone
    // already, so the init's absence is no error here).
    loop {
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&fifo),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => {}
            Ok(_) => match nix::unistd::read(&fifo, &mut buf) {
                Ok(0) => break,
                Ok(_) | Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(Error::sys("read", fifo_path.display(), e)),
            },
            Err(e) => return Err(Error::sys("poll", fifo_path.display(), e)),
        }
    }
    std::fs::remove_file(&fifo_path)
        .map_err(|e| Error::io(format!("remove {}", fifo_path.display()), e))?;
    if let Some(list) = saved.hooks.as_ref().and_then(|h| h.poststart().clone()) {
        let st = hooks::state_json(id, "running", saved.pid, &saved.bundle, &saved.annotations);
        if let Err(e) = hooks::run_all("poststart", &list, &st) {
            let _ = kill(Pid::from_raw(saved.pid), Signal::SIGKILL);
            return Err(e);
        }
    }
    Ok(())
}

/// `kill`.
pub fn kill_container(root: &Root, id: &str, sig: i32, all: bool) -> Result<()> {
    let saved = root.load(id)?;
    let status = saved.status(root);
    // --all signals whatever is left in the cgroup, even of a stopped
    // container, as runc does.
    if status == Status::Stopped && !all {
        return Err(Error::msg("container not running"));
    }
    let signal = |pid: i32| -> Result<()> {
        // SAFETY: kill(2) with a plain signal number (0 included).
        let r = unsafe { libc::kill(pid, sig) };
        nix::errno::Errno::result(r).map(drop).map_err(|e| {
            Error::msg(format!(
                "unable to signal init: {}",
                e.desc().to_lowercase()
            ))
        })
    };
    if all {
        let cg = cgroups::load(saved.cgroup_paths.clone());
        for pid in cg.pids().unwrap_or_default() {
            let _ = signal(pid);
        }
        // A stopped task ignores everything but SIGKILL until continued.
        if status == Status::Paused && sig == libc::SIGKILL {
            let _ = cg.thaw();
        }
        return Ok(());
    }
    signal(saved.pid)
}

/// `delete`.
pub fn delete(root: &Root, id: &str, force: bool) -> Result<()> {
    // Locked first, then read: a delete that waited here for another one finds the container
    // gone, which a forced delete takes as done (as runc's).
    let lock = match lock_for_delete(root, id, force) {
        Err(Error::NotFound(_)) if force => return Ok(()),
        r => r?,
    };
    let saved = match root.load(id) {
        Ok(s) => s,
        // A dir without state whose lock another command still holds: a create under way,
        // which is not ours to remove (runc's delete -f finds no container there either).
        Err(Error::NotFound(_)) if force && lock.is_none() => return Ok(()),
        Err(Error::NotFound(_)) if force => {
            // A dir without state (a create that died): remove it.
            let _ = std::fs::remove_dir_all(root.container_dir(id));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    match saved.status(root) {
        Status::Stopped => {}
        Status::Created => kill_and_wait(&saved)?,
        s if force => {
            if s == Status::Paused {
                let _ = cgroups::load(saved.cgroup_paths.clone()).thaw();
            }
            kill_and_wait(&saved)?;
        }
        s => {
            return Err(Error::msg(format!(
                "cannot delete container {id} that is not stopped: {s}"
            )))
        }
    }
    destroy(root, &saved)
}

/// How long a forced delete that found the container locked, and killed its processes, waits
/// for the holder to let go before it goes on without the lock.
const FORCED_DELETE_LOCK_WAIT: Duration = Duration::from_secs(10);

/// The container's lock for `delete`. A forced delete does not wait on whatever holds it: a
/// command can hold it for as long as the container lives (a `checkpoint --lazy-pages` serves
/// pages until they are all fetched, which may be never), and `delete -f` must end the
/// container regardless, as runc's does. So it kills the container's processes first, which
/// ends such a holder, waits a little, and then goes on without the lock: `None`.
fn lock_for_delete(root: &Root, id: &str, force: bool) -> Result<Option<OwnedFd>> {
    if !force {
        return root.lock(id).map(Some);
    }
    if let Some(fd) = root.lock_within(id, Some(Duration::ZERO))? {
        return Ok(Some(fd));
    }
    if let Ok(saved) = root.load(id) {
        if state::init_alive(&saved) {
            logging::debug(&format!(
                "delete -f {id}: locked by another brig command; killing the container first"
            ));
            let _ = cgroups::load(saved.cgroup_paths.clone()).thaw();
            if let Err(e) = kill_and_wait(&saved) {
                logging::warn(&format!("delete -f {id}: {e}"));
            }
        }
    }
    let fd = root.lock_within(id, Some(FORCED_DELETE_LOCK_WAIT))?;
    if fd.is_none() {
        logging::warn(&format!(
            "delete -f {id}: another brig command still holds the container's lock after {}s; \
             deleting without it",
            FORCED_DELETE_LOCK_WAIT.as_secs()
        ));
    }
    Ok(fd)
}

fn kill_and_wait(saved: &Saved) -> Result<()> {
    let cg = cgroups::load(saved.cgroup_paths.clone());
    let _ = kill(Pid::from_raw(saved.pid), Signal::SIGKILL);
    if !saved.own_pid_ns {
        for pid in cg.pids().unwrap_or_default() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut nap = Duration::from_micros(100);
    while state::init_alive(saved) {
        if Instant::now() > deadline {
            return Err(Error::msg(format!(
                "container init {} did not die after SIGKILL",
                saved.pid
            )));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(10));
    }
    Ok(())
}

/// Removes what a stopped container still holds: leftover processes in its
/// cgroup, the cgroup, then runs poststop hooks and removes the state dir.
pub fn destroy(root: &Root, saved: &Saved) -> Result<()> {
    let cg = cgroups::load(saved.cgroup_paths.clone());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = cg.pids().unwrap_or_default();
        if pids.is_empty() || Instant::now() > deadline {
            break;
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let cg_err = cg.destroy().err();
    if let Some(list) = saved.hooks.as_ref().and_then(|h| h.poststop().clone()) {
        let st = hooks::state_json(&saved.id, "stopped", 0, &saved.bundle, &saved.annotations);
        if let Err(e) = hooks::run_all("poststop", &list, &st) {
            logging::warn(&e.to_string());
        }
    }
    std::fs::remove_dir_all(root.container_dir(&saved.id)).map_err(|e| {
        Error::io(
            format!("remove {}", root.container_dir(&saved.id).display()),
            e,
        )
    })?;
    match cg_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `pause`.
pub fn pause(root: &Root, id: &str) -> Result<()> {
    let saved = root.load(id)?;
    match saved.status(root) {
        Status::Running | Status::Created => cgroups::load(saved.cgroup_paths.clone()).freeze(),
        Status::Paused => Ok(()),
        s => Err(Error::msg(format!("container not running: {s}"))),
    }
}

/// `resume`.
pub fn resume(root: &Root, id: &str) -> Result<()> {
    let saved = root.load(id)?;
    match saved.status(root) {
        Status::Paused => cgroups::load(saved.cgroup_paths.clone()).thaw(),
        _ => Err(Error::msg("container not paused")),
    }
}
