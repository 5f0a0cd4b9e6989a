//! `brig exec`: run another process in a running container.

use std::path::PathBuf;

use brig::exec::{absolute, ExecOpts};
use brig::state::Root;
use brig::{Error, Result};

#[derive(clap::Args)]
#[command(trailing_var_arg = true)]
pub struct ExecArgs {
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

/// The process's exit code, or 255 (reported here) when it could not be started.
#[inline(never)]
pub fn run(root: &Root, a: ExecArgs) -> Result<u8> {
    if a.process.is_none() && a.command.is_empty() {
        return Err(Error::msg("exec: no command given (args or --process)"));
    }
    let opts = ExecOpts {
        id: a.id,
        process: a.process.as_deref().map(absolute),
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
        console_socket: a.console_socket.as_deref().map(absolute),
        pid_file: a.pid_file.as_deref().map(absolute),
        preserve_fds: a.preserve_fds,
        ignore_paused: a.ignore_paused,
        cgroups: a.cgroup,
    };
    // Like runc, a failure to start the process exits 255, so it
    // can be told from the process's own exit codes.
    match brig::exec::exec(root, &opts) {
        Ok(code) => Ok((code & 0xff) as u8),
        Err(e) => {
            crate::report(&format!("exec failed: {e}"));
            Ok(255)
        }
    }
}
