//! `brig`: the command line, a drop-in for runc's. Thin: each command parses
//! its flags and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use brig::container::{self, CreateOpts};
use brig::logging::{self, Format};
use brig::state::Root;
use brig::{Error, Result};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "brig",
    about = "brig: an OCI container runtime, a drop-in for runc",
    disable_help_subcommand = true,
    disable_version_flag = true
)]
struct Cli {
    /// Print the version.
    #[arg(short = 'v', long = "version")]
    version: bool,
    /// Root directory for container state.
    /// (default: /run/brig; $XDG_RUNTIME_DIR/brig when not root)
    #[arg(long)]
    root: Option<PathBuf>,
    /// Log file (default: stderr).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Log format.
    #[arg(long = "log-format", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log debug messages.
    #[arg(long)]
    debug: bool,
    /// Use systemd for cgroups.
    #[arg(long = "systemd-cgroup")]
    systemd_cgroup: bool,
    /// Rootless mode: true, false or auto.
    #[arg(long)]
    rootless: Option<String>,
    /// Path to criu.
    #[arg(long)]
    criu: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Clone)]
struct CreateArgs {
    /// Path to the bundle directory.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket to receive the pty master of a terminal container.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// File to write the container's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Do not use pivot_root (for ramdisk roots).
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Do not create a new session keyring.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass N extra fds (3..3+N) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: i32,
    id: String,
}

#[derive(clap::Args)]
#[command(trailing_var_arg = true)]
struct ExecArgs {
    /// Unix socket to receive the pty master.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Working directory in the container.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Set an environment variable (NAME=value).
    #[arg(short, long)]
    env: Vec<String>,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    tty: bool,
    /// uid[:gid] to run as.
    #[arg(short, long)]
    user: Option<String>,
    /// Additional gids.
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<i64>,
    /// Path to a process.json.
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Detach from the process.
    #[arg(short, long)]
    detach: bool,
    /// File to write the process pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// SELinux label of the process.
    #[arg(long = "process-label")]
    process_label: Option<String>,
    /// AppArmor profile of the process.
    #[arg(long)]
    apparmor: Option<String>,
    /// Set no_new_privs.
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    /// Add a capability.
    #[arg(short, long)]
    cap: Vec<String>,
    /// Pass N extra fds (3..3+N).
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: i32,
    /// Exec even if the container is paused.
    #[arg(long = "ignore-paused")]
    ignore_paused: bool,
    /// Run in a sub-cgroup: [controller[,controller]:]path (repeatable).
    #[arg(long = "cgroup")]
    cgroup: Vec<String>,
    id: String,
    /// The command and its arguments.
    #[arg(allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a container.
    Create(CreateArgs),
    /// Run the user process of a created container.
    Start { id: String },
    /// Create and run a container.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Detach from the container's process.
        #[arg(short, long)]
        detach: bool,
        /// Do not delete the container after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Output the state of a container.
    State { id: String },
    /// Send a signal to the container's init process.
    Kill {
        /// Send to all processes in the container.
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container.
    Delete {
        /// Kill the container first if it is running.
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// List containers.
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Print only ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Suspend all processes of a container.
    Pause { id: String },
    /// Resume a paused container.
    Resume { id: String },
    /// Write a default config.json.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// Generate a config for a rootless container.
        #[arg(long = "rootless", id = "spec_rootless")]
        rootless: bool,
    },
    /// Run a process in a running container.
    Exec(Box<ExecArgs>),
    /// Show what this runtime supports (runtime-spec features document).
    Features,
    /// Checkpoint a running container (with criu).
    Checkpoint(Box<CheckpointArgs>),
    /// Restore a container from a checkpoint (with criu).
    Restore(Box<RestoreArgs>),
    /// Display the processes running inside a container.
    Ps {
        /// Select one of: table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
        /// Arguments for ps (default: -ef).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Update container resource constraints.
    Update(Box<UpdateArgs>),
    /// Display container events such as OOM notifications and usage statistics.
    Events {
        /// The stats collection interval.
        #[arg(long, default_value = "5s")]
        interval: String,
        /// Display the container's stats then exit.
        #[arg(long)]
        stats: bool,
        id: String,
    },
}

/// Flags of criu shared by checkpoint and restore.
#[derive(clap::Args)]
struct CriuArgs {
    /// Path for criu's image files (default: ./checkpoint).
    #[arg(long = "image-path")]
    image_path: Option<PathBuf>,
    /// Path for criu's work files and logs (default: the image path).
    #[arg(long = "work-path")]
    work_path: Option<PathBuf>,
    /// Allow open TCP connections.
    #[arg(long = "tcp-established")]
    tcp_established: bool,
    /// Allow external unix sockets.
    #[arg(long = "ext-unix-sk")]
    ext_unix_sk: bool,
    /// Allow shell jobs.
    #[arg(long = "shell-job")]
    shell_job: bool,
    /// Handle file locks.
    #[arg(long = "file-locks")]
    file_locks: bool,
    /// cgroups mode: soft (default), full, strict or ignore.
    #[arg(long = "manage-cgroups-mode")]
    manage_cgroups_mode: Option<String>,
    /// Create a namespace but do not restore its properties (only "network").
    #[arg(long = "empty-ns")]
    empty_ns: Vec<String>,
    /// Deduplicate memory images.
    #[arg(long = "auto-dedup")]
    auto_dedup: bool,
}

#[derive(clap::Args)]
struct CheckpointArgs {
    #[command(flatten)]
    criu: CriuArgs,
    /// Path of the images of a previous pre-dump, relative to the image path.
    #[arg(long = "parent-path")]
    parent_path: Option<PathBuf>,
    /// Leave the container running after checkpointing.
    #[arg(long = "leave-running")]
    leave_running: bool,
    /// Dump memory only and leave the container running.
    #[arg(long = "pre-dump")]
    pre_dump: bool,
    /// Serve memory pages lazily (criu's lazy migration; with --page-server).
    #[arg(long = "lazy-pages")]
    lazy_pages: bool,
    /// ADDRESS:PORT of the page server (with --lazy-pages: where to serve pages).
    #[arg(long = "page-server", value_name = "ADDRESS:PORT")]
    page_server: Option<String>,
    /// An fd criu writes a zero byte to once it is ready to serve lazy pages.
    #[arg(long = "status-fd", value_name = "FD")]
    status_fd: Option<i32>,
    id: String,
}

#[derive(clap::Args)]
struct RestoreArgs {
    #[command(flatten)]
    criu: CriuArgs,
    /// Path to the bundle directory.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Detach from the container's process.
    #[arg(short, long)]
    detach: bool,
    /// Unix socket to receive the pty master of a terminal container.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// File to write the container's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Accepted for runc compatibility: criu restores the root itself.
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Accepted for runc compatibility: brig never makes itself a subreaper.
    #[arg(long = "no-subreaper")]
    no_subreaper: bool,
    /// Take memory pages lazily from criu's lazy-pages daemon.
    #[arg(long = "lazy-pages")]
    lazy_pages: bool,
    id: String,
}

/// `--page-server ADDRESS:PORT` (runc's form; the address may be empty for any).
fn parse_page_server(s: &str) -> Result<(String, u16)> {
    let bad = || Error::msg(format!("--page-server {s:?}: expected ADDRESS:PORT"));
    let (addr, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    let addr = if addr.is_empty() { "0.0.0.0" } else { addr };
    Ok((addr.to_string(), port))
}

fn criu_opts(a: &CriuArgs, criu: Option<PathBuf>) -> Result<brig::checkpoint::CriuOpts> {
    let cwd = std::env::current_dir().map_err(|e| Error::io("getcwd", e))?;
    Ok(brig::checkpoint::CriuOpts {
        criu,
        image_path: cwd.join(a.image_path.as_deref().unwrap_or("checkpoint".as_ref())),
        work_path: a.work_path.as_ref().map(|p| cwd.join(p)),
        tcp_established: a.tcp_established,
        ext_unix_sk: a.ext_unix_sk,
        shell_job: a.shell_job,
        file_locks: a.file_locks,
        manage_cgroups_mode: a
            .manage_cgroups_mode
            .as_deref()
            .map(brig::checkpoint::CgroupMode::parse)
            .transpose()?,
        empty_net_ns: empty_net_ns(&a.empty_ns)?,
        auto_dedup: a.auto_dedup,
    })
}

/// runc's `--empty-ns`: only "network" is supported.
fn empty_net_ns(list: &[String]) -> Result<bool> {
    for ns in list {
        if ns != "network" {
            return Err(Error::msg(format!(
                "namespace {ns:?} is not supported with --empty-ns (only \"network\")"
            )));
        }
    }
    Ok(!list.is_empty())
}

#[derive(clap::Args)]
struct UpdateArgs {
    /// File with the resources to update, or '-' for stdin (other options are then ignored).
    #[arg(short = 'r', long)]
    resources: Option<String>,
    /// Per cgroup weight, 10 to 1000.
    #[arg(long = "blkio-weight", allow_hyphen_values = true)]
    blkio_weight: Option<String>,
    /// CPU CFS period (usecs).
    #[arg(long = "cpu-period", allow_hyphen_values = true)]
    cpu_period: Option<String>,
    /// CPU CFS quota (usecs) per period.
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    cpu_quota: Option<String>,
    /// CPU shares (relative weight).
    #[arg(
        long = "cpu-share",
        visible_alias = "cpu-shares",
        allow_hyphen_values = true
    )]
    cpu_share: Option<String>,
    /// CPU realtime period (usecs).
    #[arg(long = "cpu-rt-period", allow_hyphen_values = true)]
    cpu_rt_period: Option<String>,
    /// CPU realtime runtime (usecs) per period.
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
    cpu_rt_runtime: Option<String>,
    /// CPUs to use.
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Memory nodes to use.
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    #[arg(long = "kernel-memory", hide = true, allow_hyphen_values = true)]
    kernel_memory: Option<String>,
    #[arg(long = "kernel-memory-tcp", hide = true, allow_hyphen_values = true)]
    kernel_memory_tcp: Option<String>,
    /// Memory limit (bytes, or with a unit: 50M, 1g; -1 for unlimited).
    #[arg(long, allow_hyphen_values = true)]
    memory: Option<String>,
    /// Memory reservation (soft limit).
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    memory_reservation: Option<String>,
    /// Memory plus swap limit; -1 for unlimited swap.
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Maximum number of pids (-1 for unlimited).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<String>,
    /// Intel RDT/CAT L3 cache schema.
    #[arg(long = "l3-cache-schema")]
    l3_cache_schema: Option<String>,
    /// Intel RDT/MBA memory bandwidth schema.
    #[arg(long = "mem-bw-schema")]
    mem_bw_schema: Option<String>,
    id: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // clap's model of the whole command line (every command and flag) is
    // most of the heap, freed once parsed but kept resident by malloc, in
    // this process (a foreground `run` stays for the container's life) and
    // in every child cloned from it: hand it back (60 KB of 240 resident).
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe { libc::malloc_trim(0) };
    // Commands that start container processes run from a binary the
    // container cannot write (CVE-2019-5736); this may re-execute brig.
    if matches!(
        cli.cmd,
        Some(Cmd::Create(_) | Cmd::Run { .. } | Cmd::Exec(_))
    ) {
        if let Err(e) = brig::linux::selfexe::protect() {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    }
    if cli.version {
        print_version();
        return ExitCode::SUCCESS;
    }
    let format = match cli.log_format {
        LogFormat::Text => Format::Text,
        LogFormat::Json => Format::Json,
    };
    logging::init(cli.log.clone(), format, cli.debug);
    if cli.debug {
        let args: Vec<String> = std::env::args().collect();
        logging::debug(&format!(
            "brig {}: {}",
            env!("CARGO_PKG_VERSION"),
            args.join(" ")
        ));
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report(&e.to_string());
            ExitCode::from(1)
        }
    }
}

/// An error for the user: on stderr, and in the --log file when there is one.
fn report(msg: &str) {
    if logging::has_file() {
        logging::error(msg);
    }
    eprintln!("{msg}");
}

fn create_opts(a: &CreateArgs) -> Result<CreateOpts> {
    let cwd = std::env::current_dir().map_err(|e| Error::io("getcwd", e))?;
    Ok(CreateOpts {
        id: a.id.clone(),
        bundle: cwd.join(&a.bundle),
        console_socket: a.console_socket.as_ref().map(|p| cwd.join(p)),
        pid_file: a.pid_file.as_ref().map(|p| cwd.join(p)),
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
        console_fd: None,
    })
}

fn run(cli: Cli) -> Result<u8> {
    if cli.systemd_cgroup {
        return Err(Error::msg(
            "systemd cgroup driver is not supported by this version of brig",
        ));
    }
    let _ = &cli.rootless;
    // Absolute from the start, as runc's: create changes into the bundle, where a relative
    // root would name another directory (and its undo would miss what it made).
    let root = cli.root.clone().unwrap_or_else(default_root);
    let root = Root::new(std::path::absolute(&root).unwrap_or(root));
    let Some(cmd) = cli.cmd else {
        use clap::CommandFactory;
        Cli::command()
            .print_help()
            .map_err(|e| Error::io("print help", e))?;
        return Ok(0);
    };
    match cmd {
        Cmd::Create(a) => {
            container::create(&root, &create_opts(&a)?)?;
        }
        Cmd::Start { id } => container::start(&root, &id)?,
        Cmd::Run {
            create,
            detach,
            keep,
        } => {
            let mut opts = create_opts(&create)?;
            // In the foreground brig itself takes the pty master (if the
            // spec asks for a terminal) through a socketpair.
            let pair = if detach {
                None
            } else {
                Some(
                    std::os::unix::net::UnixStream::pair()
                        .map_err(|e| Error::io("socketpair", e))?,
                )
            };
            opts.console_fd = pair
                .as_ref()
                .map(|(ours, _)| std::os::fd::AsRawFd::as_raw_fd(ours));
            let (pid, sync) = container::create_with_sync(&root, &opts)?;
            let master = match &pair {
                Some((_, theirs)) => {
                    brig::linux::tty::recv_fd(std::os::fd::AsFd::as_fd(theirs), false)?
                }
                None => None,
            };
            drop(pair);
            if let Err(e) =
                container::start(&root, &opts.id).and_then(|_| container::wait_exec(&sync))
            {
                let _ = container::delete(&root, &opts.id, true);
                return Err(e);
            }
            drop(sync);
            if detach {
                return Ok(0);
            }
            let code = container::wait_foreground(pid, master)?;
            if !keep {
                if let Err(e) = container::delete(&root, &opts.id, true) {
                    logging::warn(&e.to_string());
                }
            }
            return Ok((code & 0xff) as u8);
        }
        Cmd::State { id } => {
            let saved = root.load(&id)?;
            let st = saved.to_oci(saved.status(&root));
            println!("{}", serde_json::to_string_pretty(&st).expect("json"));
        }
        Cmd::Kill { all, id, signal } => {
            let sig = parse_signal(&signal)?;
            container::kill_container(&root, &id, sig, all)?;
        }
        Cmd::Delete { force, id } => container::delete(&root, &id, force)?,
        Cmd::List { format, quiet } => list(&root, &format, quiet)?,
        Cmd::Pause { id } => container::pause(&root, &id)?,
        Cmd::Resume { id } => container::resume(&root, &id)?,
        Cmd::Spec { bundle, rootless } => {
            let path = bundle.join("config.json");
            if path.exists() {
                return Err(Error::msg(format!(
                    "File {} exists. Remove it first",
                    path.display()
                )));
            }
            let spec = brig::template::default_spec(rootless, brig::template::host_is_unified());
            let text = serde_json::to_string_pretty(&spec).expect("json");
            std::fs::write(&path, text + "\n")
                .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        }
        Cmd::Ps {
            format,
            id,
            ps_args,
        } => print!("{}", brig::ps::render(&root, &id, &format, &ps_args)?),
        Cmd::Update(a) => {
            let id = a.id.clone();
            brig::update::update(&root, &id, &update_flags(*a))?;
        }
        Cmd::Events {
            interval,
            stats,
            id,
        } => {
            let opts = brig::events::Opts {
                stats_only: stats,
                interval: brig::events::parse_duration(&interval)?,
            };
            brig::events::run(&root, &id, opts, &mut std::io::stdout().lock())?;
        }
        Cmd::Exec(a) => {
            if a.process.is_none() && a.command.is_empty() {
                return Err(Error::msg("exec: no command given (args or --process)"));
            }
            let opts = brig::exec::ExecOpts {
                id: a.id,
                process: a.process.as_deref().map(brig::exec::absolute),
                args: a.command,
                cwd: a.cwd,
                env: a.env,
                tty: a.tty,
                user: a.user,
                additional_gids: a.additional_gids,
                caps: a.cap,
                no_new_privs: a.no_new_privs,
                apparmor: a.apparmor,
                process_label: a.process_label,
                detach: a.detach,
                console_socket: a.console_socket.as_deref().map(brig::exec::absolute),
                pid_file: a.pid_file.as_deref().map(brig::exec::absolute),
                preserve_fds: a.preserve_fds,
                ignore_paused: a.ignore_paused,
                cgroups: a.cgroup,
            };
            // Like runc, a failure to start the process exits 255, so it
            // can be told from the process's own exit codes.
            return match brig::exec::exec(&root, &opts) {
                Ok(code) => Ok((code & 0xff) as u8),
                Err(e) => {
                    report(&format!("exec failed: {e}"));
                    Ok(255)
                }
            };
        }
        Cmd::Checkpoint(a) => {
            let opts = brig::checkpoint::CheckpointOpts {
                criu: criu_opts(&a.criu, cli.criu.clone())?,
                leave_running: a.leave_running,
                pre_dump: a.pre_dump,
                parent_path: a.parent_path.clone(),
                lazy_pages: a.lazy_pages,
                page_server: a
                    .page_server
                    .as_deref()
                    .map(parse_page_server)
                    .transpose()?,
                status_fd: a.status_fd,
            };
            brig::checkpoint::checkpoint(&root, &a.id, &opts)?;
        }
        Cmd::Restore(a) => {
            let cwd = std::env::current_dir().map_err(|e| Error::io("getcwd", e))?;
            let opts = brig::checkpoint::RestoreOpts {
                criu: criu_opts(&a.criu, cli.criu.clone())?,
                id: a.id.clone(),
                bundle: cwd.join(&a.bundle),
                detach: a.detach,
                console_socket: a.console_socket.as_ref().map(|p| cwd.join(p)),
                pid_file: a.pid_file.as_ref().map(|p| cwd.join(p)),
                lazy_pages: a.lazy_pages,
            };
            let _ = (a.no_pivot, a.no_subreaper);
            let code = brig::checkpoint::restore(&root, &opts)?;
            return Ok((code & 0xff) as u8);
        }
        Cmd::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&brig::features::features()).expect("json")
            );
        }
    }
    Ok(0)
}

fn update_flags(a: UpdateArgs) -> brig::update::Flags {
    brig::update::Flags {
        resources: a.resources,
        blkio_weight: a.blkio_weight,
        cpu_period: a.cpu_period,
        cpu_quota: a.cpu_quota,
        cpu_shares: a.cpu_share,
        cpu_rt_period: a.cpu_rt_period,
        cpu_rt_runtime: a.cpu_rt_runtime,
        cpuset_cpus: a.cpuset_cpus,
        cpuset_mems: a.cpuset_mems,
        kernel_memory: a.kernel_memory,
        kernel_memory_tcp: a.kernel_memory_tcp,
        memory: a.memory,
        memory_reservation: a.memory_reservation,
        memory_swap: a.memory_swap,
        pids_limit: a.pids_limit,
        l3_cache_schema: a.l3_cache_schema,
        mem_bw_schema: a.mem_bw_schema,
    }
}

/// /run/brig for root; for anyone else $XDG_RUNTIME_DIR/brig (as runc
/// does), or a per-user directory under /tmp without it.
fn default_root() -> PathBuf {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return PathBuf::from("/run/brig");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("brig"),
        None => PathBuf::from(format!("/tmp/brig-{uid}")),
    }
}

/// runc's version block: name and version, the commit, the spec and libseccomp.
fn print_version() {
    let v = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_else(|_| "unknown".into());
    println!("brig version {}", env!("CARGO_PKG_VERSION"));
    let commit = env!("BRIG_COMMIT");
    if !commit.is_empty() {
        println!("commit: {commit}");
    }
    println!("spec: {}", brig::OCI_VERSION);
    println!("libseccomp: {v}");
}

fn list(root: &Root, format: &str, quiet: bool) -> Result<()> {
    let mut rows = Vec::new();
    for id in root.list()? {
        let Ok(saved) = root.load(&id) else { continue };
        let status = saved.status(root);
        let mut v = saved.to_oci(status);
        v["owner"] = owner_of(&root.container_dir(&id)).into();
        rows.push(v);
    }
    if quiet {
        for r in &rows {
            println!("{}", r["id"].as_str().unwrap_or_default());
        }
        return Ok(());
    }
    match format {
        "json" => {
            let out = if rows.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::Value::Array(rows)
            };
            println!("{out}");
        }
        "table" => {
            let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"];
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    ["id", "pid", "status", "bundle", "created", "owner"]
                        .iter()
                        .map(|k| match &r[*k] {
                            serde_json::Value::String(s) => s.clone(),
                            v => v.to_string(),
                        })
                        .collect()
                })
                .collect();
            let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
            for row in &table {
                for (i, c) in row.iter().enumerate() {
                    widths[i] = widths[i].max(c.len());
                }
            }
            let print = |cells: Vec<&str>| {
                let line: Vec<String> = cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                    .collect();
                println!("{}", line.join("   ").trim_end());
            };
            print(header.to_vec());
            for row in &table {
                print(row.iter().map(String::as_str).collect());
            }
        }
        other => {
            return Err(Error::msg(format!(
                "invalid format option {other:?}: use table or json"
            )))
        }
    }
    Ok(())
}

fn owner_of(dir: &std::path::Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(uid) = std::fs::metadata(dir).map(|m| m.uid()) else {
        return String::new();
    };
    brig::process::init::passwd_field("/etc/passwd", uid, 0).unwrap_or_else(|| format!("#{uid}"))
}

/// A signal by number, name, or name without the SIG prefix (any case).
fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return Ok(n);
    }
    let up = s.to_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| Error::msg(format!("unknown signal {s:?}")))
}
