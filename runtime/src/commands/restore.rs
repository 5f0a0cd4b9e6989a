//! `brig restore`: bring a container back from criu's images.

use std::path::PathBuf;

use brig::checkpoint::RestoreOpts;
use brig::state::Root;
use brig::{Error, Result};

use super::criu::{self, CriuArgs};

#[derive(clap::Args)]
pub struct RestoreArgs {
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

/// The restored container's exit code (0 when detached); `criu` is the
/// global `--criu` path.
pub fn run(root: &Root, a: &RestoreArgs, criu: Option<PathBuf>) -> Result<u8> {
    let cwd = std::env::current_dir().map_err(|e| Error::io("getcwd", e))?;
    let opts = RestoreOpts {
        criu: criu::opts(&a.criu, criu)?,
        id: a.id.clone(),
        bundle: cwd.join(&a.bundle),
        detach: a.detach,
        console_socket: a.console_socket.as_ref().map(|p| cwd.join(p)),
        pid_file: a.pid_file.as_ref().map(|p| cwd.join(p)),
        lazy_pages: a.lazy_pages,
    };
    let _ = (a.no_pivot, a.no_subreaper);
    let code = brig::checkpoint::restore(root, &opts)?;
    Ok((code & 0xff) as u8)
}
