//! `exec`: runs another process in a running container.
//!
//! The process comes from `--process` (a runtime-spec process JSON) or from
//! the container's own config with runc's flag overrides. brig joins the
//! namespaces the init lives in (those that differ from ours, read from
//! /proc/PID/ns, so nothing depends on a config that may have changed), has
//! the new process enter the container's cgroups before it runs anything
//! (itself, see `cgroups::Entry`, or put there by brig),
//! and applies the process's user, capabilities, rlimits, seccomp filter and
//! no_new_privileges as the init does.
//!
//! The child is not dumpable until execve (CVE-2016-9962): a process in the
//! container cannot ptrace it or open its /proc entries while it still holds
//! brig's memory and fds. Success is the sync socket closing on execve
//! (CLOEXEC); any earlier failure comes back as a message.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, Process, Spec};

use crate::cgroups;
use crate::error::{Error, Result, SysContext};
use crate::linux::{namespaces, tty};
use crate::process::plan::ProcessPlan;
use crate::process::{self, Channel, Msg};
use crate::state::{self, Root, Status};

/// Options of `exec`, as on runc's command line.
#[derive(Debug, Default, Clone)]
pub struct ExecOpts {
    pub id: String,
    /// `--process`: a process JSON instead of the flags below.
    pub process: Option<PathBuf>,
    pub args: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<String>,
    pub tty: bool,
    /// `uid[:gid]`.
    pub user: Option<String>,
    pub additional_gids: Vec<i64>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub apparmor: Option<String>,
    pub process_label: Option<String>,
    pub detach: bool,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: i32,
    pub ignore_paused: bool,
    /// `--cgroup [ctrl[,ctrl]:]path`: sub-cgroups to run in.
    pub cgroups: Vec<String>,
}

/// The container's config as saved at create (falls back to the bundle's).
pub fn container_spec(root: &Root, saved: &state::Saved) -> Result<Spec> {
    let saved_cfg = root.container_dir(&saved.id).join(state::CONFIG_FILE);
    let path = if saved_cfg.exists() {
        saved_cfg
    } else {
        saved.bundle.join("config.json")
    };
    let data =
        std::fs::read(&path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    crate::spec::parse(&data).map_err(|(field, msg)| Error::config(path.clone(), field, msg))
}

/// Runs `exec`; returns the exit code to leave with (0 when detached).
pub fn exec(root: &Root, opts: &ExecOpts) -> Result<i32> {
    let saved = root.load(&opts.id)?;
    match saved.status(root) {
        Status::Stopped => return Err(Error::msg("cannot exec in a stopped container")),
        Status::Paused if !opts.ignore_paused => {
            return Err(Error::msg(
                "cannot exec in a paused container (use --ignore-paused to override)",
            ))
        }
        _ => {}
    }
    if !opts.cgroups.is_empty() {
        cgroups::join::sub_cgroups(&saved.cgroup_paths, &opts.cgroups)?;
    }
    let spec = container_spec(root, &saved)?;
    let p = process_of(&spec, opts)?;
    tty::check_console(
        p.terminal() == Some(true),
        opts.detach,
        opts.console_socket.is_some(),
    )?;
    crate::linux::lsm::check(&p).map_err(|(field, msg)| match &opts.process {
        Some(path) => Error::config(path.clone(), field, msg),
        // From the container's config.json or exec's flags (--apparmor, --process-label).
        None => Error::config("exec", format!("process.{field}"), msg),
    })?;
    let linux = spec.linux().clone().unwrap_or_default();
    let cache = root.dir.join(crate::linux::seccomp_cache::DIR);
    let seccomp = linux
        .seccomp()
        .as_ref()
        .map(|p| crate::linux::seccomp_cache::compile(p, Some(&cache)))
        .transpose()?;
    let ns = namespaces::Plan::from_spec(&namespaces_of(saved.pid)?)?;
    crate::logging::debug(&format!(
        "exec: joining the namespaces of pid {} ({} to join)",
        saved.pid,
        ns.join.len() + ns.join_pid.is_some() as usize
    ));

    // A foreground terminal: brig takes the master through a socketpair.
    let pair = if p.terminal() == Some(true) && opts.console_socket.is_none() {
        Some(std::os::unix::net::UnixStream::pair().map_err(|e| Error::io("socketpair", e))?)
    } else {
        None
    };
    let console: Option<OwnedFd> = match (&opts.console_socket, &pair) {
        (Some(path), _) => Some(tty::connect_console(path)?.into()),
        (None, Some((ours, _))) => Some(
            ours.as_fd()
                .try_clone_to_owned()
                .map_err(|e| Error::io("dup", e))?,
        ),
        _ => None,
    };
    let mut ns = ns;
    let mut in_userns = false;
    if !nix::unistd::geteuid().is_root() {
        // Rootless: only inside the container's user namespace may we join
        // its pid namespace (below, before the clone). Joining it here costs
        // this short-lived process nothing: its ids and files stay its own.
        if let Some(i) = ns
            .join
            .iter()
            .position(|j| j.typ == LinuxNamespaceType::User)
        {
            let j = ns.join.remove(i);
            nix::sched::setns(&j.fd, nix::sched::CloneFlags::CLONE_NEWUSER)
                .sys("setns", j.path.display())?;
            in_userns = true;
        }
    }
    // A container without a mount namespace of its own shares ours, chrooted into its rootfs:
    // the exec process takes the init's root, else it would run at the host's.
    let root = if ns.has(LinuxNamespaceType::Mount) {
        None
    } else {
        let path = format!("/proc/{}/root", saved.pid);
        Some(
            nix::fcntl::open(
                path.as_str(),
                nix::fcntl::OFlag::O_PATH
                    | nix::fcntl::OFlag::O_DIRECTORY
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .sys("open", &path)?,
        )
    };
    let plan = Plan {
        process: ProcessPlan::from_spec(&p, seccomp, opts.preserve_fds)?,
        ns,
        console,
        in_userns,
        root,
        keyring: (!saved.no_new_keyring).then(|| saved.id.clone()),
        // Where the entry cannot be made, the parent's join below says why.
        cgroups: match opts.cgroups.is_empty() {
            true => cgroups::load(saved.cgroup_paths.clone())
                .entry()
                .ok()
                .flatten(),
            false => None,
        },
    };
    // pid and time namespaces apply to children: join them before the clone.
    if let Some(j) = &plan.ns.join_pid {
        namespaces::join_pid_for_children(j)?;
    }
    for j in plan
        .ns
        .join
        .iter()
        .filter(|j| j.typ == LinuxNamespaceType::Time)
    {
        nix::sched::setns(
            &j.fd,
            nix::sched::CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
        )
        .sys("setns", j.path.display())?;
    }
    let (parent_sync, child_sync) = Channel::pair()?;
    crate::logging::debug(&format!(
        "nsexec container setup: clone3 of the exec process for container {} (pid {})",
        saved.id, saved.pid
    ));
    let (plan_ref, parent_raw, child_ref) = (&plan, parent_sync.as_raw_fd(), &child_sync);
    let run_child = |joins: bool| {
        move || {
            let _ = nix::unistd::close(parent_raw);
            match child(plan_ref, child_ref, joins) {
                Ok(never) => match never {},
                Err(e) => {
                    child_ref.send_error(&e);
                    1
                }
            }
        }
    };
    // As the init, it enters the container's cgroups itself where it can.
    let (pid, joins) = process::clone_entering(0, plan.cgroups.as_ref(), run_child)?;
    drop(child_sync);
    drop(plan);
    let kill_child = || {
        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    };
    if !joins {
        let joined =
            cgroups::join::exec_process(&saved.cgroup_paths, &opts.cgroups, saved.pid, pid);
        // Rootless, the caller may sit outside the subtree delegated to its user (a login
        // session's scope, a system service), and the kernel refuses to move the process
        // out of there: it stays in its caller's cgroup, as runc leaves it. A --cgroup
        // asked for explicitly still fails.
        let joined = match joined {
            Err(_) if !cgroups::privileged() && opts.cgroups.is_empty() => Ok(()),
            j => j,
        };
        if let Err(e) = joined.and_then(|_| parent_sync.send(&Msg::Go)) {
            kill_child();
            return Err(e);
        }
    }
    // Until the child has exec'd (closing its end) or failed.
    let listener = process::parent::Listener {
        profile: linux.seccomp().as_ref(),
        pid,
        state_json: crate::hooks::state_json(
            &saved.id,
            "running",
            saved.pid,
            &saved.bundle,
            &saved.annotations,
        ),
    };
    let no_hooks = || Err(Error::msg("sync: an exec process asked for hooks"));
    match process::parent::drive(&parent_sync, &listener, no_hooks) {
        Ok(process::parent::End::Closed) => {}
        Ok(process::parent::End::Ready) => {
            kill_child();
            return Err(Error::msg("sync: unexpected ready from an exec process"));
        }
        Err(e) => {
            kill_child();
            return Err(e);
        }
    }
    if let Some(path) = &opts.pid_file {
        state::write_pid_file(path, pid)?;
    }
    if opts.detach {
        return Ok(0);
    }
    let master = match &pair {
        Some((_, theirs)) => tty::recv_fd(theirs.as_fd(), true)?,
        None => None,
    };
    drop(pair);
    crate::process::foreground::wait(pid, master)
}

/// The process to run: `--process` as given, or the container's process
/// with the flags applied (runc's getProcess).
fn process_of(spec: &Spec, o: &ExecOpts) -> Result<Process> {
    let mut p =
        if let Some(path) = &o.process {
            let data = std::fs::read(path)
                .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
            let mut v: serde_json::Value = serde_json::from_slice(&data)
                .map_err(|e| Error::config(path.clone(), "(document)", e.to_string()))?;
            // runc takes a process without "user" as uid 0, gid 0.
            if let Some(obj) = v.as_object_mut() {
                obj.entry("user")
                    .or_insert_with(|| serde_json::json!({"uid": 0, "gid": 0}));
            }
            serde_path_to_error::deserialize::<_, Process>(v).map_err(|e| {
                Error::config(
                    path.clone(),
                    e.path().to_string(),
                    e.into_inner().to_string(),
                )
            })?
        } else {
            let mut p = spec
                .process()
                .clone()
                .ok_or_else(|| Error::msg("container config has no process"))?;
            p.set_args(Some(o.args.clone()));
            if let Some(cwd) = &o.cwd {
                p.set_cwd(cwd.clone());
            }
            if let Some(a) = &o.apparmor {
                p.set_apparmor_profile(Some(a.clone()));
            }
            if let Some(l) = &o.process_label {
                p.set_selinux_label(Some(l.clone()));
            }
            if !o.caps.is_empty() {
                let mut c = p.capabilities().clone().unwrap_or_default();
                for name in &o.caps {
                    let full = if name.to_uppercase().starts_with("CAP_") {
                        name.to_uppercase()
                    } else {
                        format!("CAP_{}", name.to_uppercase())
                    };
                    let cap: oci_spec::runtime::Capability =
                        serde_json::from_value(serde_json::Value::String(full))
                            .map_err(|_| Error::msg(format!("unknown capability {name:?}")))?;
                    let add = |set: &Option<oci_spec::runtime::Capabilities>| {
                        let mut set = set.clone().unwrap_or_default();
                        set.insert(cap);
                        Some(set)
                    };
                    c.set_bounding(add(c.bounding()));
                    c.set_effective(add(c.effective()));
                    c.set_permitted(add(c.permitted()));
                    c.set_ambient(add(c.ambient()));
                }
                p.set_capabilities(Some(c));
            }
            let mut env = p.env().clone().unwrap_or_default();
            env.extend(o.env.iter().cloned());
            p.set_env(Some(env));
            p.set_terminal(Some(o.tty));
            if o.no_new_privs {
                p.set_no_new_privileges(Some(true));
            }
            if let Some(u) = &o.user {
                let mut user = p.user().clone();
                let (uid, gid) = match u.split_once(':') {
                    Some((a, b)) => (a, Some(b)),
                    None => (u.as_str(), None),
                };
                if let Some(g) = gid {
                    user.set_gid(g.parse().map_err(|e| {
                        Error::msg(format!("parsing {g} as int for gid failed: {e}"))
                    })?);
                }
                user.set_uid(uid.parse().map_err(|e| {
                    Error::msg(format!("parsing {uid} as int for uid failed: {e}"))
                })?);
                p.set_user(user);
            }
            if !o.additional_gids.is_empty() {
                let mut user = p.user().clone();
                let mut gids = user.additional_gids().clone().unwrap_or_default();
                for g in &o.additional_gids {
                    if *g < 0 {
                        return Err(Error::msg(format!(
                            "additional-gids must be a positive number {g}"
                        )));
                    }
                    gids.push(*g as u32);
                }
                user.set_additional_gids(Some(gids));
                p.set_user(user);
            }
            p
        };
    // The rules config.json's process follows, for the one exec runs (a uid of 4294967295
    // would leave it root).
    crate::spec::validate_process(&p, "").map_err(|(field, msg)| match &o.process {
        Some(path) => Error::config(path.clone(), field, msg),
        None => Error::msg(format!("exec process: {field}: {msg}")),
    })?;
    if o.process.is_some() && o.tty {
        p.set_terminal(Some(true));
    }
    Ok(p)
}

/// The namespaces of `pid` that differ from ours, as join-by-path entries.
fn namespaces_of(pid: i32) -> Result<Vec<LinuxNamespace>> {
    use std::os::unix::fs::MetadataExt;
    let kinds = [
        ("user", LinuxNamespaceType::User),
        ("ipc", LinuxNamespaceType::Ipc),
        ("uts", LinuxNamespaceType::Uts),
        ("net", LinuxNamespaceType::Network),
        ("pid", LinuxNamespaceType::Pid),
        ("mnt", LinuxNamespaceType::Mount),
        ("cgroup", LinuxNamespaceType::Cgroup),
        ("time", LinuxNamespaceType::Time),
    ];
    let mut out = Vec::new();
    for (name, typ) in kinds {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let (Ok(a), Ok(b)) = (
            std::fs::metadata(&theirs),
            std::fs::metadata(format!("/proc/self/ns/{name}")),
        ) else {
            continue;
        };
        if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
            out.push(
                LinuxNamespaceBuilder::default()
                    .typ(typ)
                    .path(PathBuf::from(theirs))
                    .build()
                    .map_err(|e| Error::msg(e.to_string()))?,
            );
        }
    }
    Ok(out)
}

/// What the exec child needs, computed before the clone.
struct Plan {
    process: ProcessPlan,
    ns: namespaces::Plan,
    console: Option<OwnedFd>,
    /// The user namespace was joined by the parent already.
    in_userns: bool,
    /// The init's root, to chroot into, when the container has no mount namespace.
    root: Option<OwnedFd>,
    /// The container's session keyring to join (`_ses.<id>`), unless it was created with
    /// --no-new-keyring.
    keyring: Option<String>,
    /// The container's cgroups, which the process enters first thing when they are all it
    /// joins (no `--cgroup`); else the parent puts it in before `Go`.
    cgroups: Option<cgroups::Entry>,
}

enum Never {}

/// The exec process; `joins`: it enters its cgroups itself ([`Plan::cgroups`]), and does
/// not wait for the parent's `Go`.
fn child(plan: &Plan, sync: &Channel, joins: bool) -> Result<Never> {
    if joins {
        if let Some(entry) = &plan.cgroups {
            entry.join_self()?;
        }
    }
    // SAFETY: prctl with integer arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    nix::errno::Errno::result(r).sys("prctl", "PR_SET_DUMPABLE")?;
    sync.debug(&format!(
        "child process in init(): exec process {}, joining the container's namespaces",
        std::process::id()
    ));
    if !joins {
        match sync.recv()? {
            Some(Msg::Go) => {}
            other => return Err(Error::msg(format!("sync: expected go, got {other:?}"))),
        }
    }
    // SAFETY: setsid in a fresh child.
    unsafe { libc::setsid() };
    // Time was joined by the parent; setns into it again is harmless but
    // only affects children, so skip it here.
    let mut order: Vec<&namespaces::Join> = plan
        .ns
        .join
        .iter()
        .filter(|j| j.typ != LinuxNamespaceType::Time)
        .collect();
    order.sort_by_key(|j| match j.typ {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Mount => 2,
        _ => 1,
    });
    for j in order {
        nix::sched::setns(&j.fd, namespaces::flag(j.typ)).sys("setns", j.path.display())?;
    }
    if plan.in_userns || plan.ns.has(LinuxNamespaceType::User) {
        namespaces::become_userns_root()?;
    }
    if let Some(root) = &plan.root {
        nix::unistd::fchdir(root).sys("fchdir", "the container's root")?;
        nix::unistd::chroot(".").sys("chroot", "the container's root")?;
        nix::unistd::chdir("/").sys("chdir", "/")?;
    }
    if let Some(sock) = &plan.console {
        tty::setup(sock.as_fd(), plan.process.console_size, false)?;
    }
    if let Some(id) = &plan.keyring {
        crate::linux::lsm::join_session_keyring(id, plan.process.labels.selinux.as_deref(), None)?;
    }
    let exec = plan.process.resolve()?;
    plan.process.become_process(sync)?;
    // Before the seccomp filter, which may forbid the socket write.
    sync.debug(&format!(
        "setns_init: about to exec {:?}",
        plan.process.args
    ));
    plan.process.seal(sync)?;
    Err(plan.process.exec(&exec))
}

/// `path` relative to the caller's cwd.
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    }
}
