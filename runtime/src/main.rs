//! `brig`: the command line, a drop-in for runc's. Thin: this file parses the
//! global flags, resolves the state root and dispatches; each command's flags
//! and body live in `commands/`, one file per command.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use brig::logging::{self, Format};
use brig::state::Root;
use brig::{Error, Result};
use clap::{Parser, Subcommand, ValueEnum};
use commands::{
    checkpoint, create, delete, events, exec, features, kill, list, pause, ps, restore, resume,
    run, spec, start, state, update,
};

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

#[derive(Subcommand)]
enum Cmd {
    /// Create a container.
    Create(create::CreateArgs),
    /// Run the user process of a created container.
    Start(start::StartArgs),
    /// Create and run a container.
    Run(run::RunArgs),
    /// Output the state of a container.
    State(state::StateArgs),
    /// Send a signal to the container's init process.
    Kill(kill::KillArgs),
    /// Delete a container.
    Delete(delete::DeleteArgs),
    /// List containers.
    List(list::ListArgs),
    /// Suspend all processes of a container.
    Pause(pause::PauseArgs),
    /// Resume a paused container.
    Resume(resume::ResumeArgs),
    /// Write a default config.json.
    Spec(spec::SpecArgs),
    /// Run a process in a running container.
    Exec(Box<exec::ExecArgs>),
    /// Show what this runtime supports (runtime-spec features document).
    Features,
    /// Checkpoint a running container (with criu).
    Checkpoint(Box<checkpoint::CheckpointArgs>),
    /// Restore a container from a checkpoint (with criu).
    Restore(Box<restore::RestoreArgs>),
    /// Display the processes running inside a container.
    Ps(ps::PsArgs),
    /// Update container resource constraints.
    Update(Box<update::UpdateArgs>),
    /// Display container events such as OOM notifications and usage statistics.
    Events(events::EventsArgs),
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
    if matches!(cli.cmd, Some(Cmd::Create(_) | Cmd::Run(_) | Cmd::Exec(_))) {
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
    match dispatch(cli) {
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

fn dispatch(cli: Cli) -> Result<u8> {
    if cli.systemd_cgroup {
        brig::cgroups::systemd::enable();
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
    // Commands with an exit code of their own return it; the others exit 0.
    match cmd {
        Cmd::Run(a) => return run::run(&root, &a),
        Cmd::Exec(a) => return exec::run(&root, *a),
        Cmd::Restore(a) => return restore::run(&root, &a, cli.criu),
        Cmd::Create(a) => create::run(&root, &a)?,
        Cmd::Start(a) => start::run(&root, &a)?,
        Cmd::State(a) => state::run(&root, &a)?,
        Cmd::Kill(a) => kill::run(&root, &a)?,
        Cmd::Delete(a) => delete::run(&root, &a)?,
        Cmd::List(a) => list::run(&root, &a)?,
        Cmd::Pause(a) => pause::run(&root, &a)?,
        Cmd::Resume(a) => resume::run(&root, &a)?,
        Cmd::Spec(a) => spec::run(&a)?,
        Cmd::Ps(a) => ps::run(&root, &a)?,
        Cmd::Update(a) => update::run(&root, *a)?,
        Cmd::Events(a) => events::run(&root, &a)?,
        Cmd::Checkpoint(a) => checkpoint::run(&root, &a, cli.criu)?,
        Cmd::Features => features::run()?,
    }
    Ok(0)
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
