//! `checkpoint` and `restore`: a running container saved to disk and
//! brought back, by Debian's `criu` driven through its command line.
//!
//! The container is described to criu as runc describes it: the rootfs as
//! `--root`, every bind mount (and each masked file, which is /dev/null
//! bound over it, and each device node) as an external mount keyed by its
//! destination, a network or pid namespace joined by path as an external
//! namespace, and cgroups per `--manage-cgroups-mode`. The image dir also
//! gets `descriptors.json` (where the init's stdio pointed, as runc writes
//! it) and the stdio files outside the container's mounts that criu was
//! told are external (the host's /dev/null, a log file), so a restore hands
//! its own stdio to the restored process in place of those and of pipes.
//!
//! Semantics follow runc 1.1: without `--leave-running` (or `--pre-dump`)
//! criu kills the container's processes and the container is destroyed
//! (cgroup, state, poststop hooks), so its id is free for `restore`;
//! `restore` creates the container anew from the bundle, restores its
//! processes as a sibling of brig (so a foreground restore waits for them
//! like `run`), and records the state `kill`, `delete` and `state` use.
//!
//! A container with `process.terminal`: its init's pty is told to criu as an
//! external terminal (`tty[rdev:dev]`, criu keeps its settings), and the
//! /dev/console bound from it as an external mount. `restore` makes a new
//! pty, hands criu its peer in the old one's place (`--inherit-fd`) and
//! binds it on /dev/console, then sends the master over `--console-socket`
//! (or relays it to its own stdio in the foreground). runc gets the same
//! from criu's RPC protocol (an orphan pty master criu sends back), which
//! the command line does not offer; the restored init's terminal is thus a
//! pty of the host's devpts rather than of the container's own.
//!
//! In a user namespace brig binds the host's default device nodes (it
//! cannot make them): they are external mounts like the spec's devices, so
//! such a container is dumped. Not handled: restoring it (the restored
//! tasks, the mapped root, cannot open criu's 0600 images of host root).

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::cgroups;
use crate::container;
use crate::error::{Error, Result, SysContext};
use crate::linux::mount_options;
use crate::logging;
use crate::state::{self, Root, Status};

/// File in the image dir that records the init's stdio (as runc names it).
pub const DESCRIPTORS: &str = "descriptors.json";
/// brig's own: the init's stdio files criu was told are external.
const EXTERNAL_STDIO: &str = "brig-external-stdio.json";
/// brig's own: the init's terminal criu was told is external ([`Terminal`]).
const TERMINAL: &str = "brig-terminal.json";
const DUMP_LOG: &str = "dump.log";
const RESTORE_LOG: &str = "restore.log";
/// criu writes this first into every image dir; its absence means "no checkpoint here".
const INVENTORY: &str = "inventory.img";

/// `--manage-cgroups-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    Soft,
    Full,
    Strict,
    Ignore,
}

impl CgroupMode {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "soft" => Ok(CgroupMode::Soft),
            "full" => Ok(CgroupMode::Full),
            "strict" => Ok(CgroupMode::Strict),
            "ignore" => Ok(CgroupMode::Ignore),
            other => Err(Error::msg(format!(
                "invalid --manage-cgroups-mode {other:?}: use soft, full, strict or ignore"
            ))),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            CgroupMode::Soft => "soft",
            CgroupMode::Full => "full",
            CgroupMode::Strict => "strict",
            CgroupMode::Ignore => "ignore",
        }
    }
}

/// Options shared by checkpoint and restore.
#[derive(Debug, Clone, Default)]
pub struct CriuOpts {
    /// The criu binary (global `--criu`, default `criu` from $PATH).
    pub criu: Option<PathBuf>,
    /// Image directory (default `./checkpoint`, as runc).
    pub image_path: PathBuf,
    /// Work directory for logs (default: the image directory).
    pub work_path: Option<PathBuf>,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub manage_cgroups_mode: Option<CgroupMode>,
    /// `--empty-ns network`: the network namespace is created empty on
    /// restore (its contents are not dumped), for a caller that sets it up.
    pub empty_net_ns: bool,
    /// Deduplicate memory images as criu goes.
    pub auto_dedup: bool,
}

impl CriuOpts {
    /// criu's work directory (`work_path`, else the image directory), created.
    fn work_dir(&self) -> Result<PathBuf> {
        let work = self.work_path.as_ref().unwrap_or(&self.image_path);
        make_dir(work)?;
        Ok(work.clone())
    }
}

/// Options of `checkpoint`.
#[derive(Debug, Clone, Default)]
pub struct CheckpointOpts {
    pub criu: CriuOpts,
    pub leave_running: bool,
    pub pre_dump: bool,
    /// Images of a previous pre-dump, relative to the image path.
    pub parent_path: Option<PathBuf>,
    /// `--lazy-pages`: criu serves the memory pages on demand (from the
    /// `--page-server` address) and the dump ends once they are all taken.
    pub lazy_pages: bool,
    /// `--page-server ADDR:PORT`: criu sends the pages there (with
    /// `--lazy-pages`, listens there for the restore side's daemon).
    pub page_server: Option<(String, u16)>,
    /// `--status-fd N`: an fd of ours criu writes a zero byte to once it is
    /// ready to serve lazy pages.
    pub status_fd: Option<i32>,
}

/// Options of `restore`.
#[derive(Debug, Clone, Default)]
pub struct RestoreOpts {
    pub criu: CriuOpts,
    pub id: String,
    pub bundle: PathBuf,
    pub detach: bool,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    /// `--lazy-pages`: memory comes from criu's lazy-pages daemon as touched.
    pub lazy_pages: bool,
}

/// `checkpoint`: dumps the container's processes into the image dir.
pub fn checkpoint(root: &Root, id: &str, opts: &CheckpointOpts) -> Result<()> {
    let saved = root.load(id)?;
    let _lock = root.lock(id)?;
    let status = saved.status(root);
    if matches!(status, Status::Created | Status::Stopped | Status::Creating) {
        return Err(Error::msg(format!(
            "container cannot be checkpointed in {status} state"
        )));
    }
    let spec = stored_spec(root, id)?;
    let images = &opts.criu.image_path;
    if let Some(parent) = &opts.parent_path {
        if parent.is_absolute() {
            return Err(Error::msg(format!(
                "--parent-path {}: must be relative to the image path",
                parent.display()
            )));
        }
        // Lexically, as runc's filepath.Join: the image dir may not exist yet.
        let real = PathBuf::from(clean(&images.join(parent)));
        match std::fs::metadata(&real) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::msg(format!(
                    "--parent-path {}: not a directory",
                    real.display()
                )))
            }
            Err(e) => return Err(Error::io(format!("--parent-path {}", real.display()), e)),
        }
    }
    make_dir(images)?;
    let work = opts.criu.work_dir()?;

    let mut args: Vec<String> = vec![
        if opts.pre_dump { "pre-dump" } else { "dump" }.into(),
        "--tree".into(),
        saved.pid.to_string(),
        "--images-dir".into(),
        path_arg(images),
        "--work-dir".into(),
        path_arg(&work),
        "--log-file".into(),
        DUMP_LOG.into(),
        "-v4".into(),
        "--root".into(),
        path_arg(&saved.rootfs),
    ];
    common_args(&mut args, &opts.criu);
    config_file_args(&mut args, &spec);
    if opts.leave_running && !opts.pre_dump {
        args.push("--leave-running".into());
    }
    if let Some(parent) = &opts.parent_path {
        args.extend(["--prev-images-dir".into(), path_arg(parent)]);
    }
    if opts.pre_dump || opts.parent_path.is_some() {
        args.push("--track-mem".into());
    }
    if opts.lazy_pages {
        args.push("--lazy-pages".into());
    } else if opts.page_server.is_some() {
        args.push("--page-server".into());
    }
    if let Some((addr, port)) = &opts.page_server {
        args.extend([
            "--address".into(),
            addr.clone(),
            "--port".into(),
            port.to_string(),
        ]);
    }
    if let Some(fd) = opts.status_fd {
        // Inherited by criu as is (not close-on-exec: the caller gave it to us).
        args.extend(["--status-fd".into(), fd.to_string()]);
    }
    // The whole cgroup is frozen while criu collects the tasks.
    let cg = cgroups::load(saved.cgroup_paths.clone());
    if let Some(p) = freezer_path(&saved.cgroup_paths) {
        args.extend(["--freeze-cgroup".into(), path_arg(&p)]);
    }
    for ns in external_namespaces(&spec)? {
        args.extend(["--external".into(), ns.dump_key()]);
    }
    if !opts.pre_dump {
        for dest in external_mount_keys(&spec, saved.pid) {
            args.extend(["--external".into(), format!("mnt[{dest}]:{dest}")]);
        }
        // With a cgroup namespace the cgroup file system is a real mount (its
        // root looks like a subtree only from our namespace): criu dumps it,
        // and restore gives no mapping for it (as runc).
        if !crate::spec::has_namespace(&spec, LinuxNamespaceType::Cgroup) {
            for dest in cgroup_bind_mounts(saved.pid) {
                args.extend(["--external".into(), format!("mnt[{dest}]:{dest}")]);
            }
        }
        for path in masked_files(&spec, saved.pid) {
            args.extend(["--external".into(), format!("mnt[{path}]:/dev/null")]);
        }
        let ext = external_stdio(saved.pid);
        for (_, key) in &ext {
            args.extend(["--external".into(), key.clone()]);
        }
        write_external_stdio(images, &ext)?;
        if has_terminal(&spec) {
            let pids = cg.pids().unwrap_or_else(|_| vec![saved.pid]);
            let term = Terminal::of(saved.pid, &pids);
            for key in term.tty.iter().chain(&term.ctty) {
                args.extend(["--external".into(), key.clone()]);
            }
            if term.console {
                args.extend(["--external".into(), format!("mnt[{CONSOLE}]:{CONSOLE}")]);
            }
            term.write(images)?;
        } else {
            let _ = std::fs::remove_file(images.join(TERMINAL));
        }
        write_descriptors(images, saved.pid)?;
    }
    let was_paused = status == Status::Paused;
    if opts.lazy_pages {
        run_lazy_dump(&opts.criu, &args, &work, &saved)?;
    } else {
        run_criu(&opts.criu, &args, &work, DUMP_LOG)?;
    }
    if opts.leave_running || opts.pre_dump {
        // criu thaws what it froze; a container that was paused stays so.
        if was_paused && !cg.state_frozen().unwrap_or(true) {
            let _ = cg.freeze();
        }
        return Ok(());
    }
    // criu killed the processes: the container is gone, as after runc's
    // checkpoint, and its id is free for restore.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while state::init_alive(&saved) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    container::destroy(root, &saved)
}

/// `restore`: creates the container `opts.id` from its bundle with the
/// processes of the checkpoint in `opts.criu.image_path`. Returns the exit
/// code for the command (the container's in the foreground, else 0).
pub fn restore(root: &Root, opts: &RestoreOpts) -> Result<i32> {
    root.check_new(&opts.id)?;
    let images = &opts.criu.image_path;
    if !images.join(INVENTORY).is_file() {
        return Err(Error::msg(format!(
            "restore: no checkpoint in {} ({INVENTORY} is missing)",
            images.display()
        )));
    }
    let bundle = crate::spec::load(&opts.bundle)?;
    let spec = &bundle.spec;
    let terminal = has_terminal(spec);
    crate::linux::tty::check_console(terminal, opts.detach, opts.console_socket.is_some())?;
    // The new pty, and the socket its master goes to, before anything is made.
    let pty = if terminal {
        let term = Terminal::read(images).ok_or_else(|| {
            Error::config(
                "config.json",
                "process.terminal",
                format!(
                    "the checkpoint in {} has no terminal ({TERMINAL} is missing): \
                     it was made of a container without one",
                    images.display()
                ),
            )
        })?;
        let socket = opts
            .console_socket
            .as_deref()
            .map(crate::linux::tty::connect_console)
            .transpose()?;
        let (master, peer, n) = crate::linux::tty::new_pty()?;
        Some((term, socket, master, peer, n))
    } else {
        None
    };
    let linux = spec.linux().as_ref().expect("validated");
    let work = opts.criu.work_dir()?;
    // Namespaces joined by path are handed to criu as inherited fds; opened
    // before anything is created.
    let ext_ns = external_namespaces(spec)?;

    let mut undo = crate::process::undo::Undo::new("restore");
    undo.kill_members = true;
    let dir = root.create_dir(&opts.id)?;
    undo.dir = Some(dir.clone());
    let cg = cgroups::new(
        linux.cgroups_path().as_ref().and_then(|p| p.to_str()),
        &opts.id,
    )?;
    let mut res = linux.resources().clone().unwrap_or_default();
    res.set_devices(Some(cgroups::device_rules(
        res.devices().as_deref(),
        linux.devices().as_deref(),
    )));
    let cgroup_paths = cg.paths();
    undo.cgroup = Some(cg);
    let cg = undo.cgroup.as_ref().expect("set above");

    // criu wants the root to be a mount point: the rootfs bound (with
    // whatever is mounted below it) on a directory of the state dir.
    let criu_root = dir.join("criu-root");
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(&criu_root)
        .map_err(|e| Error::io(format!("create {}", criu_root.display()), e))?;
    prepare_mountpoints(spec, &bundle.dir, &bundle.rootfs)?;
    bind_rec(&bundle.rootfs, &criu_root)?;
    undo.mount = Some(criu_root.clone());

    let pidfile = dir.join("criu.pid");
    let mut args: Vec<String> = vec![
        "restore".into(),
        "--images-dir".into(),
        path_arg(images),
        "--work-dir".into(),
        path_arg(&work),
        "--log-file".into(),
        RESTORE_LOG.into(),
        "-v4".into(),
        "--root".into(),
        path_arg(&criu_root),
        "--restore-detached".into(),
        "--restore-sibling".into(),
        "--pidfile".into(),
        path_arg(&pidfile),
        "--evasive-devices".into(),
    ];
    if opts.lazy_pages {
        args.push("--lazy-pages".into());
    }
    common_args(&mut args, &opts.criu);
    config_file_args(&mut args, spec);
    for (dest, source) in external_mount_sources(spec, &bundle.dir, &bundle.rootfs) {
        args.extend([
            "--external".into(),
            format!("mnt[{dest}]:{}", source.display()),
        ]);
    }
    for (dest, source) in cgroup_bind_sources(spec, cg.as_ref()) {
        args.extend([
            "--external".into(),
            format!("mnt[{dest}]:{}", source.display()),
        ]);
    }
    if linux.masked_paths().as_ref().is_some_and(|m| !m.is_empty())
        && !crate::spec::has_namespace(spec, LinuxNamespaceType::User)
    {
        // (With a user namespace the default devices above name it already.)
        args.extend(["--external".into(), "mnt[/dev/null]:/dev/null".into()]);
    }
    // The new pty once more for each /dev/tty (criu takes one fd per key).
    let mut ctty_fds = Vec::new();
    if let Some((term, _, _, peer, _)) = &pty {
        for _ in &term.ctty {
            ctty_fds.push(peer.try_clone().map_err(|e| Error::io("dup pty peer", e))?);
        }
    }
    // Inherited fds: namespaces first (numbered from 3 in criu), then the
    // pipes the init had as stdio, which become ours.
    let mut keep: Vec<(i32, &OwnedFd)> = Vec::new();
    for (i, ns) in ext_ns.iter().enumerate() {
        let fd = 3 + i as i32;
        args.extend(["--inherit-fd".into(), format!("fd[{fd}]:{}", ns.key())]);
        keep.push((fd, &ns.fd));
    }
    for (i, link) in read_descriptors(images).iter().enumerate() {
        if link.starts_with("pipe:") {
            args.extend(["--inherit-fd".into(), format!("fd[{i}]:{link}")]);
        }
    }
    for (fd, key) in read_external_stdio(images) {
        args.extend(["--inherit-fd".into(), format!("fd[{fd}]:{key}")]);
    }
    if let Some((term, _, _, peer, n)) = &pty {
        if let Some(key) = &term.tty {
            let fd = 3 + keep.len() as i32;
            args.extend(["--inherit-fd".into(), format!("fd[{fd}]:{key}")]);
            keep.push((fd, peer));
        }
        for (key, dup) in term.ctty.iter().zip(&ctty_fds) {
            let fd = 3 + keep.len() as i32;
            args.extend(["--inherit-fd".into(), format!("fd[{fd}]:{key}")]);
            keep.push((fd, dup));
        }
        if term.console {
            args.extend(["--external".into(), format!("mnt[{CONSOLE}]:/dev/pts/{n}")]);
        }
    }

    let fds: Vec<(i32, i32)> = keep.iter().map(|(n, fd)| (fd.as_raw_fd(), *n)).collect();
    let status = spawn_in_cgroup(&opts.criu, &args, &fds, cg.as_ref(), &res)?;
    check_status(status, &work, RESTORE_LOG, "restore")?;
    drop(keep);
    drop(ctty_fds);
    let mut master = None;
    if let Some((_, socket, m, peer, n)) = pty {
        drop(peer);
        match socket {
            Some(s) => {
                use std::os::fd::AsFd;
                crate::linux::tty::send_fd(s.as_fd(), &format!("/dev/pts/{n}"), m.as_fd())?
            }
            None => master = Some(m),
        }
    }

    let text = std::fs::read_to_string(&pidfile)
        .map_err(|e| Error::io(format!("read criu's pidfile {}", pidfile.display()), e))?;
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| Error::msg(format!("criu's pidfile {}: {text:?}", pidfile.display())))?;
    let _ = std::fs::remove_file(&pidfile);
    // (criu restores the keyrings the checkpoint had: exec joins the container's.)
    state::record(&dir, &bundle, &opts.id, pid, cgroup_paths, false)?;
    if let Some(p) = &opts.pid_file {
        state::write_pid_file(p, pid)?;
    }
    // From here the container exists; only the helper mount goes.
    undo.disarm();
    drop(undo);
    if opts.detach {
        return Ok(0);
    }
    let code = crate::process::foreground::wait(pid, master)?;
    if let Err(e) = container::delete(root, &opts.id, true) {
        logging::warn(&e.to_string());
    }
    Ok(code)
}

/// The container's config as recorded at create.
fn stored_spec(root: &Root, id: &str) -> Result<Spec> {
    let file = root.container_dir(id).join(state::CONFIG_FILE);
    let data =
        std::fs::read(&file).map_err(|e| Error::io(format!("read {}", file.display()), e))?;
    serde_json::from_slice(&data).map_err(|e| Error::config(&file, "(document)", e.to_string()))
}

fn has_terminal(spec: &Spec) -> bool {
    spec.process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false)
}

/// Where brig binds the init's pty in the container.
const CONSOLE: &str = "/dev/console";

/// What a checkpoint records of the init's terminal.
#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Terminal {
    /// criu's name of the pty the init's stdio is on, `tty[rdev:dev]`
    /// (hex, as criu prints them); none when no stdio fd is a pty.
    tty: Option<String>,
    /// Whether /dev/console is a mount (the pty bound there).
    console: bool,
    /// `tty[rdev:dev]` of each /dev/tty node open in the container (an
    /// interactive shell opens it): criu 3.17 refuses to dump /dev/tty
    /// whose terminal is external, so it is external too, and gets the new
    /// pty on restore (what /dev/tty opens to there).
    #[serde(default)]
    ctty: Vec<String>,
}

impl Terminal {
    /// The terminal of the init `pid`, and /dev/tty as open in `pids`.
    fn of(pid: i32, pids: &[i32]) -> Terminal {
        use std::os::unix::fs::MetadataExt;
        let mut ctty = Vec::new();
        for p in pids {
            let Ok(dir) = std::fs::read_dir(format!("/proc/{p}/fd")) else {
                continue;
            };
            for e in dir.flatten() {
                let Ok(m) = std::fs::metadata(e.path()) else {
                    continue;
                };
                if is_char_dev(&m) && m.rdev() == libc::makedev(5, 0) {
                    ctty.push(format!("tty[{:x}:{:x}]", m.rdev(), m.dev()));
                }
            }
        }
        ctty.sort();
        ctty.dedup();
        let tty = (0..3).find_map(|fd| {
            let m = std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).ok()?;
            let major = libc::major(m.rdev());
            (is_char_dev(&m)
                && (UNIX98_PTY_SLAVE_MAJOR..UNIX98_PTY_SLAVE_MAJOR + 8).contains(&major))
            .then(|| format!("tty[{:x}:{:x}]", m.rdev(), m.dev()))
        });
        let console = crate::linux::mountinfo::mount_points(
            &std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default(),
        )
        .any(|mp| mp == Path::new(CONSOLE));
        Terminal { tty, console, ctty }
    }

    fn write(&self, images: &Path) -> Result<()> {
        let file = images.join(TERMINAL);
        let data = serde_json::to_vec(self).expect("json of a struct");
        std::fs::write(&file, data).map_err(|e| Error::io(format!("write {}", file.display()), e))
    }

    fn read(images: &Path) -> Option<Terminal> {
        std::fs::read(images.join(TERMINAL))
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
    }
}

/// The first major number of Unix98 pty peers (there are eight).
const UNIX98_PTY_SLAVE_MAJOR: u32 = 136;

fn make_dir(p: &Path) -> Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && p.is_dir() => Ok(()),
        Err(e) => Err(Error::io(format!("create {}", p.display()), e)),
    }
}

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn common_args(args: &mut Vec<String>, o: &CriuOpts) {
    match o.manage_cgroups_mode {
        Some(m) => args.push(format!("--manage-cgroups={}", m.as_str())),
        None => args.push("--manage-cgroups".into()),
    }
    if o.empty_net_ns {
        args.extend(["--empty-ns".into(), "net".into()]);
    }
    for (on, flag) in [
        (o.auto_dedup, "--auto-dedup"),
        (o.tcp_established, "--tcp-established"),
        (o.ext_unix_sk, "--ext-unix-sk"),
        (o.shell_job, "--shell-job"),
        (o.file_locks, "--file-locks"),
    ] {
        if on {
            args.push(flag.into());
        }
    }
}

/// The container's own criu configuration file, as runc picks it: the
/// `org.criu.config` annotation (empty: none), else /etc/criu/runc.conf.
/// criu reads a `--config` file instead of its default ones, and lets its
/// command line override the file; runc's RPC settings are overridden by
/// the file instead, so an option the file sets (only `log-file` is one
/// brig passes) is left off the command line.
fn config_file_args(args: &mut Vec<String>, spec: &Spec) {
    let file = match spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get("org.criu.config"))
    {
        Some(f) if f.is_empty() => return,
        Some(f) => PathBuf::from(f),
        None => PathBuf::from("/etc/criu/runc.conf"),
    };
    let Ok(text) = std::fs::read_to_string(&file) else {
        return; // criu ignores a missing file too
    };
    args.extend(["--config".into(), path_arg(&file)]);
    if config_sets(&text, "log-file") {
        if let Some(i) = args.iter().position(|a| a == "--log-file") {
            args.drain(i..i + 2);
        }
    }
}

/// Whether a criu configuration file sets `option`: each line is an option
/// name without its dashes, then its value (after a space or `=`); `#`
/// starts a comment.
fn config_sets(text: &str, option: &str) -> bool {
    text.lines().any(|l| {
        let word = l.split_whitespace().next().unwrap_or("");
        !word.starts_with('#') && word.split('=').next() == Some(option)
    })
}

/// Runs criu in the container's cgroup (so what it restores starts there,
/// as runc does): forked, moved into the cgroup, resources set, and only
/// then let exec criu, told with `--cgroup-root` that the checkpoint's
/// cgroups go where it now is (the container's id may be another one).
/// `fds` are (open fd, number criu must find it at).
fn spawn_in_cgroup(
    o: &CriuOpts,
    args: &[String],
    fds: &[(i32, i32)],
    cg: &dyn cgroups::Manager,
    res: &oci_spec::runtime::LinuxResources,
) -> Result<std::process::ExitStatus> {
    use std::ffi::CString;
    use std::os::unix::process::ExitStatusExt;
    let bin = o.criu.clone().unwrap_or_else(|| PathBuf::from("criu"));
    let cstr =
        |s: &str| CString::new(s).map_err(|_| Error::msg(format!("NUL in criu argument {s:?}")));
    let prog = cstr(&bin.to_string_lossy())?;
    let mut argv = vec![prog.clone()];
    for a in args {
        argv.push(cstr(a)?);
    }
    logging::debug(&format!("criu: {} {}", bin.display(), args.join(" ")));
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).sys("pipe2", "criu")?;
    // SAFETY: brig is single-threaded, so the child may allocate; it reads
    // the rest of its arguments, moves fds, then execs or _exits.
    let child = match unsafe { nix::unistd::fork() }.sys("fork", "criu")? {
        nix::unistd::ForkResult::Child => unsafe {
            libc::close(wr.as_raw_fd());
            // "go\0" then extra arguments, NUL-terminated; EOF without it
            // means the parent gave up.
            let mut msg = Vec::new();
            let mut buf = [0u8; 512];
            loop {
                let n = libc::read(rd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len());
                if n <= 0 {
                    break;
                }
                msg.extend_from_slice(&buf[..n as usize]);
            }
            let Some(extra) = msg.strip_prefix(b"go\0") else {
                libc::_exit(1);
            };
            for a in extra.split(|c| *c == 0).filter(|a| !a.is_empty()) {
                argv.push(CString::new(a).expect("split at NUL"));
            }
            let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
            ptrs.push(std::ptr::null());
            // Out of the way first, so no target clobbers a source.
            for (i, (from, _)) in fds.iter().enumerate() {
                if libc::dup2(*from, 200 + i as i32) < 0 {
                    libc::_exit(126);
                }
            }
            for (i, (_, to)) in fds.iter().enumerate() {
                if libc::dup2(200 + i as i32, *to) < 0 {
                    libc::_exit(126);
                }
                libc::close(200 + i as i32);
            }
            libc::execvp(prog.as_ptr(), ptrs.as_ptr());
            libc::_exit(127);
        },
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(rd);
    let joined = cg.apply(child.as_raw()).and_then(|_| cg.set(res));
    if let Err(e) = joined {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(child, None);
        return Err(e);
    }
    let mut msg = b"go\0".to_vec();
    for root in cgroup_roots(child.as_raw()) {
        msg.extend_from_slice(b"--cgroup-root\0");
        msg.extend_from_slice(root.as_bytes());
        msg.push(0);
    }
    {
        use std::io::Write;
        let mut f = std::fs::File::from(wr);
        f.write_all(&msg)
            .map_err(|e| Error::io("write to criu's start pipe", e))?;
    }
    loop {
        match nix::sys::wait::waitpid(child, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => {
                return Ok(std::process::ExitStatus::from_raw(code << 8))
            }
            Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => {
                return Ok(std::process::ExitStatus::from_raw(sig as i32))
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Error::sys("waitpid", "criu", e)),
        }
    }
}

/// `--cgroup-root` values for the cgroups `pid` is in: `CTRL:/path` per
/// v1 controller (as runc passes them), `/path` for cgroup v2.
fn cgroup_roots(pid: i32) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if ctrls.is_empty() {
            out.push(path.to_string());
        } else {
            out.extend(ctrls.split(',').map(|c| format!("{c}:{path}")));
        }
    }
    out
}

fn criu_command(o: &CriuOpts) -> Command {
    Command::new(o.criu.as_deref().unwrap_or(Path::new("criu")))
}

fn run_criu(o: &CriuOpts, args: &[String], work: &Path, log: &str) -> Result<()> {
    let mut cmd = criu_command(o);
    cmd.args(args);
    let what = args.first().map(String::as_str).unwrap_or("criu");
    run_command(cmd, work, log, what)
}

/// How long a lazy dump's criu may go on serving pages after the container's init is gone.
const LAZY_DUMP_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// A lazy dump: criu serves the container's pages until a restore has fetched them all, and
/// only then ends the container and exits. If the container ends otherwise (`delete -f`, a
/// kill), criu would wait for a page client forever, and so would we (holding the container's
/// lock): once the init has been gone for LAZY_DUMP_GRACE, criu is stopped and that is the
/// error.
fn run_lazy_dump(o: &CriuOpts, args: &[String], work: &Path, saved: &state::Saved) -> Result<()> {
    let mut cmd = criu_command(o);
    cmd.args(args);
    logging::debug(&format!("criu: {cmd:?}"));
    let bin = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("run {bin}"), e))?;
    let mut gone_since: Option<std::time::Instant> = None;
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Error::io(format!("wait for {bin}"), e))?
        {
            return check_status(status, work, DUMP_LOG, "dump");
        }
        if gone_since.is_none() && !state::init_alive(saved) {
            gone_since = Some(std::time::Instant::now());
        }
        if gone_since.is_some_and(|t| t.elapsed() >= LAZY_DUMP_GRACE) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::msg(format!(
                "criu dump --lazy-pages: the container's init {} ended while its pages were \
                 being served (killed or deleted?); criu was stopped {}s later, see {}",
                saved.pid,
                LAZY_DUMP_GRACE.as_secs(),
                work.join(DUMP_LOG).display()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Runs criu; on failure the error carries criu's own error lines from its log.
fn run_command(mut cmd: Command, work: &Path, log: &str, what: &str) -> Result<()> {
    logging::debug(&format!("criu: {cmd:?}"));
    let bin = cmd.get_program().to_string_lossy().into_owned();
    // criu's stdio is ours.
    let status = cmd
        .status()
        .map_err(|e| Error::io(format!("run {bin}"), e))?;
    check_status(status, work, log, what)
}

/// An error with criu's own error lines from its log, unless it succeeded.
fn check_status(
    status: std::process::ExitStatus,
    work: &Path,
    log: &str,
    what: &str,
) -> Result<()> {
    if status.success() {
        return Ok(());
    }
    let log_path = work.join(log);
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("Error")).collect();
    let tail = errors[errors.len().saturating_sub(5)..].join("\n");
    Err(Error::msg(format!(
        "criu {what} failed ({status}), see {}:\n{tail}",
        log_path.display()
    )))
}

/// A namespace the container joined by path: external to criu.
struct ExtNs {
    kind: &'static str,
    inode: u64,
    fd: OwnedFd,
}

impl ExtNs {
    fn key(&self) -> String {
        match self.kind {
            "net" => "extRootNetNS".into(),
            _ => "extRootPidNS".into(),
        }
    }

    fn dump_key(&self) -> String {
        format!("{}[{}]:{}", self.kind, self.inode, self.key())
    }
}

fn external_namespaces(spec: &Spec) -> Result<Vec<ExtNs>> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let linux = spec.linux().as_ref().expect("validated");
    for (i, n) in linux.namespaces().iter().flatten().enumerate() {
        let kind = match n.typ() {
            LinuxNamespaceType::Network => "net",
            LinuxNamespaceType::Pid => "pid",
            _ => continue,
        };
        let Some(path) = n.path() else { continue };
        let file = std::fs::File::open(path).map_err(|e| {
            Error::config(
                "config.json",
                format!("linux.namespaces[{i}].path"),
                format!("{}: {e}", path.display()),
            )
        })?;
        let inode = file
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
            .ino();
        out.push(ExtNs {
            kind,
            inode,
            fd: file.into(),
        });
    }
    Ok(out)
}

/// Bind mounts of the spec (destination, absolute source).
fn bind_mounts(spec: &Spec, bundle: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let opts = mount_options::parse(m.options().as_deref().unwrap_or(&[]));
        let typ = m.typ().as_deref().unwrap_or("");
        if !(opts.bind || typ == "bind") {
            continue;
        }
        let source = m.source().clone().unwrap_or_default();
        let source = if source.is_absolute() {
            source
        } else {
            bundle.join(source)
        };
        out.push((clean(m.destination()), source));
    }
    out
}

/// A destination as criu names the mount: absolute, without `.`/`..`.
fn clean(p: &Path) -> String {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    let mut s = String::new();
    for p in parts {
        s.push('/');
        s.push_str(&p.to_string_lossy());
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

/// The mount points criu will meet as external at dump: bind mounts (their
/// destination resolved inside the rootfs, a symlink included) and device
/// nodes bound from the host (the spec's, and in a user namespace, where
/// no node can be made, the default ones too).
fn external_mount_keys(spec: &Spec, pid: i32) -> Vec<String> {
    let mut keys: Vec<String> = bind_mounts(spec, Path::new("/"))
        .into_iter()
        .map(|(dest, _)| resolve_in_container(pid, &dest))
        .collect();
    if let Some(devs) = spec.linux().as_ref().and_then(|l| l.devices().clone()) {
        keys.extend(devs.iter().map(|d| clean(d.path())));
    }
    if crate::spec::has_namespace(spec, LinuxNamespaceType::User) {
        keys.extend(default_device_paths());
    }
    keys.sort();
    keys.dedup();
    keys
}

/// The restore side of [`external_mount_keys`]: key → host source (bind
/// destinations resolved in `rootfs` as the dump resolved them).
fn external_mount_sources(spec: &Spec, bundle: &Path, rootfs: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = bind_mounts(spec, bundle)
        .into_iter()
        .map(|(dest, source)| (resolve_under(rootfs, &dest), source))
        .collect();
    if let Some(devs) = spec.linux().as_ref().and_then(|l| l.devices().clone()) {
        out.extend(devs.iter().map(|d| (clean(d.path()), d.path().clone())));
    }
    if crate::spec::has_namespace(spec, LinuxNamespaceType::User) {
        out.extend(default_device_paths().map(|p| (p.clone(), PathBuf::from(p))));
    }
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|(key, _)| seen.insert(key.clone()));
    out
}

/// Whether the spec gives the container a namespace of type `t`.
/// The default device nodes' paths (/dev/null, ...).
fn default_device_paths() -> impl Iterator<Item = String> {
    crate::linux::rootfs::default_devices()
        .into_iter()
        .map(|d| clean(&d.path))
}

/// A path as the container sees it after following its symlinks (read
/// through /proc/PID/root, so the host's files are never reached).
fn resolve_in_container(pid: i32, dest: &str) -> String {
    resolve_under(Path::new(&format!("/proc/{pid}/root")), dest)
}

/// `dest` with its symlinks followed as if `base` were the root (an
/// absolute link target starts again at `base`, `..` stops there).
fn resolve_under(base: &Path, dest: &str) -> String {
    let mut cur = String::new();
    let mut budget = 40;
    let mut todo: Vec<String> = dest
        .split('/')
        .filter(|s| !s.is_empty())
        .rev()
        .map(str::to_string)
        .collect();
    while let Some(part) = todo.pop() {
        if part == "." {
            continue;
        }
        if part == ".." {
            if let Some(i) = cur.rfind('/') {
                cur.truncate(i);
            }
            continue;
        }
        let next = format!("{cur}/{part}");
        match std::fs::read_link(base.join(next.trim_start_matches('/'))) {
            Ok(target) if budget > 0 => {
                budget -= 1;
                let t = target.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    cur.clear();
                }
                for p in t.split('/').filter(|s| !s.is_empty()).rev() {
                    todo.push(p.to_string());
                }
            }
            _ => cur = next,
        }
    }
    if cur.is_empty() {
        "/".into()
    } else {
        cur
    }
}

/// Masked paths that are files (brig binds /dev/null over them).
fn masked_files(spec: &Spec, pid: i32) -> Vec<String> {
    let base = PathBuf::from(format!("/proc/{pid}/root"));
    spec.linux()
        .as_ref()
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            std::fs::metadata(base.join(p.trim_start_matches('/'))).is_ok_and(|m| !m.is_dir())
        })
        .collect()
}

/// `mount --rbind source target`.
fn bind_rec(source: &Path, target: &Path) -> Result<()> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| {
        Error::sys(
            "mount",
            format!("{} on {}", source.display(), target.display()),
            e,
        )
    })
}

/// Mount points must exist in the rootfs before criu mounts there: files for
/// bind mounts of files, directories otherwise (a fresh rootfs, as
/// containerd's restore without the rw layer gives, lacks e.g. /run); those
/// below a tmpfs are left alone, criu restores the tmpfs's content. Paths are
/// resolved in the rootfs as the dump resolved them ([`resolve_under`]: a
/// symlink in the rootfs never leads out of it). As at create, each bind
/// source is bound on its mount point in turn, so that a mount point inside
/// another bind mount is made in that mount's source; the binds go again
/// before criu runs.
fn prepare_mountpoints(spec: &Spec, bundle: &Path, rootfs: &Path) -> Result<()> {
    let in_rootfs = |dest: &str| rootfs.join(resolve_under(rootfs, dest).trim_start_matches('/'));
    let all: Vec<(String, &str)> = spec
        .mounts()
        .iter()
        .flatten()
        .map(|m| (clean(m.destination()), m.typ().as_deref().unwrap_or("")))
        .collect();
    let below_tmpfs = |dest: &str| {
        all.iter().any(|(d, typ)| {
            *typ == "tmpfs" && dest != d && Path::new(dest).starts_with(Path::new(d.as_str()))
        })
    };
    let binds = bind_mounts(spec, bundle);
    for (dest, _) in &all {
        if binds.iter().any(|(d, _)| d == dest) || below_tmpfs(dest) {
            continue;
        }
        let target = in_rootfs(dest);
        if std::fs::symlink_metadata(&target).is_err() {
            std::fs::create_dir_all(&target)
                .map_err(|e| Error::io(format!("create {}", target.display()), e))?;
        }
    }
    let mut bound: Vec<PathBuf> = Vec::new();
    let res = (|| {
        for (dest, source) in binds {
            let target = in_rootfs(&dest);
            if std::fs::symlink_metadata(&target).is_err() {
                if std::fs::metadata(&source).is_ok_and(|m| !m.is_dir()) {
                    if let Some(parent) = target.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(|e| Error::io(format!("create {}", parent.display()), e))?;
                    }
                    std::fs::File::create(&target)
                        .map_err(|e| Error::io(format!("create {}", target.display()), e))?;
                } else {
                    std::fs::create_dir_all(&target)
                        .map_err(|e| Error::io(format!("create {}", target.display()), e))?;
                }
            }
            bind_rec(&source, &target)?;
            bound.push(target);
        }
        Ok(())
    })();
    for target in bound.iter().rev() {
        let _ = umount2(target, MntFlags::MNT_DETACH);
    }
    res
}

/// The init's stdio files that live outside the container's mounts (the
/// host's /dev/null, a log file): criu cannot dump them, so they are
/// external (`file[mnt_id:inode]`) and restore passes its own stdio in
/// their place, as with pipes. Returns (fd, key).
fn external_stdio(pid: i32) -> Vec<(i32, String)> {
    use std::os::unix::fs::MetadataExt;
    let ids: Vec<String> = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').next().map(str::to_string))
        .collect();
    let mut out = Vec::new();
    for fd in 0..3 {
        let Ok(link) = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")) else {
            continue;
        };
        if !link.is_absolute() {
            continue; // pipe:[..], socket:[..], anon_inode:..
        }
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
        let Some(mnt) = info
            .lines()
            .find_map(|l| l.strip_prefix("mnt_id:"))
            .map(|v| v.trim().to_string())
        else {
            continue;
        };
        if ids.contains(&mnt) {
            continue;
        }
        let Ok(meta) = std::fs::metadata(format!("/proc/{pid}/fd/{fd}")) else {
            continue;
        };
        if meta.file_type().is_file() || meta.file_type().is_dir() || is_char_dev(&meta) {
            // criu prints both in hex.
            let Ok(mnt_id) = mnt.parse::<u64>() else {
                continue;
            };
            out.push((fd, format!("file[{mnt_id:x}:{:x}]", meta.ino())));
        }
    }
    out
}

fn is_char_dev(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_char_device()
}

/// Where the init's fds 0..2 point, for restore to replace pipes.
fn write_descriptors(images: &Path, pid: i32) -> Result<()> {
    let links: Vec<String> = (0..3)
        .map(|fd| {
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "/dev/null".into())
        })
        .collect();
    let file = images.join(DESCRIPTORS);
    let data = serde_json::to_vec(&links).expect("json of strings");
    std::fs::write(&file, data).map_err(|e| Error::io(format!("write {}", file.display()), e))
}

fn write_external_stdio(images: &Path, ext: &[(i32, String)]) -> Result<()> {
    let file = images.join(EXTERNAL_STDIO);
    let data = serde_json::to_vec(ext).expect("json of pairs");
    std::fs::write(&file, data).map_err(|e| Error::io(format!("write {}", file.display()), e))
}

fn read_external_stdio(images: &Path) -> Vec<(i32, String)> {
    std::fs::read(images.join(EXTERNAL_STDIO))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default()
}

fn read_descriptors(images: &Path) -> Vec<String> {
    std::fs::read(images.join(DESCRIPTORS))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default()
}

/// The cgroup criu freezes: v1's freezer or the v2 cgroup.
fn freezer_path(paths: &BTreeMap<String, PathBuf>) -> Option<PathBuf> {
    paths
        .get("freezer")
        .or_else(|| paths.get(""))
        .filter(|p| p.is_dir())
        .cloned()
}

/// Mount points of the container's cgroup file systems that show a
/// subtree (brig binds the container's own cgroup there when there is no
/// cgroup namespace): criu cannot dump them, they are external.
fn cgroup_bind_mounts(pid: i32) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let f: Vec<&str> = pre.split(' ').collect();
        let fstype = post.split(' ').next().unwrap_or("");
        if f.len() >= 5 && matches!(fstype, "cgroup" | "cgroup2") && f[3] != "/" {
            out.push(
                crate::linux::mountinfo::unescape(f[4])
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    out
}

/// The restore side of [`cgroup_bind_mounts`]: where brig binds the new
/// container's cgroup of each hierarchy, unless it has a cgroup namespace.
fn cgroup_bind_sources(spec: &Spec, cg: &dyn cgroups::Manager) -> Vec<(String, PathBuf)> {
    if crate::spec::has_namespace(spec, LinuxNamespaceType::Cgroup) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for m in spec.mounts().iter().flatten() {
        if m.typ().as_deref() != Some("cgroup") {
            continue;
        }
        let dest = clean(m.destination());
        for c in cg.mounts() {
            let key = if c.name.is_empty() {
                dest.clone()
            } else {
                format!("{}/{}", dest.trim_end_matches('/'), c.name)
            };
            out.push((key, c.host_path.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mount points of a restore are made inside the rootfs even where a restored rootfs
    /// has symlinks pointing out of it (to the host's /etc, say): nothing is created outside.
    #[test]
    fn restore_mount_points_stay_inside_the_rootfs() {
        let top = tempfile::tempdir().unwrap();
        let rootfs = top.path().join("rootfs");
        let host = top.path().join("host");
        std::fs::create_dir_all(&rootfs).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        std::os::unix::fs::symlink(&host, rootfs.join("run")).unwrap();
        std::os::unix::fs::symlink("../../host", rootfs.join("data")).unwrap();
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/run/secrets", "type": "proc", "source": "proc"},
                {"destination": "/data/sys", "type": "sysfs", "source": "sysfs"},
                {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/tmp/below", "type": "mqueue", "source": "mqueue"},
            ],
        }))
        .unwrap();
        prepare_mountpoints(&spec, top.path(), &rootfs).unwrap();
        assert_eq!(
            std::fs::read_dir(&host).unwrap().count(),
            0,
            "created on the host through a symlink"
        );
        // The symlinks were followed inside the rootfs: their targets exist there now.
        assert!(rootfs
            .join(host.strip_prefix("/").unwrap())
            .join("secrets")
            .is_dir());
        assert!(rootfs.join("host/sys").is_dir());
        assert!(rootfs.join("tmp").is_dir());
        assert!(!rootfs.join("tmp/below").exists(), "made below a tmpfs");
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean(Path::new("/a/./b/../c/")), "/a/c");
        assert_eq!(clean(Path::new("x")), "/x");
        assert_eq!(clean(Path::new("/")), "/");
        assert_eq!(clean(Path::new("/../..")), "/");
    }

    #[test]
    fn modes() {
        for m in ["soft", "full", "strict", "ignore"] {
            assert_eq!(CgroupMode::parse(m).unwrap().as_str(), m);
        }
        let e = CgroupMode::parse("hard").unwrap_err().to_string();
        assert!(e.contains("--manage-cgroups-mode"), "{e}");
    }

    #[test]
    fn mountinfo_escapes() {}

    #[test]
    fn own_root_resolves() {
        let me = std::process::id() as i32;
        assert_eq!(resolve_in_container(me, "/proc/../etc"), "/etc");
    }
}
