//! `brig restore`: bring a container back from criu's images.

use std::path::PathBuf;

use brig::checkpoint::RestoreOpts;
use brig::state::Root;
use brig::Result;

use super::create::BundleArgs;
use super::criu::{self, CriuArgs};

#[derive(clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    criu: CriuArgs,
    #[command(flatten)]
    paths: BundleArgs,
    /// Detach from the container's process.
    #[arg(short, long)]
    detach: bool,
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
#[inline(never)]
pub fn run(root: &Root, a: &RestoreArgs, criu: Option<PathBuf>) -> Result<u8> {
    let paths = a.paths.absolute()?;
    let opts = RestoreOpts {
        criu: criu::opts(&a.criu, criu)?,
        id: a.id.clone(),
        bundle: paths.bundle,
        detach: a.detach,
        console_socket: paths.console_socket,
        pid_file: paths.pid_file,
        lazy_pages: a.lazy_pages,
    };
    let _ = (a.no_pivot, a.no_subreaper);
    let code = brig::checkpoint::restore(root, &opts)?;
    Ok((code & 0xff) as u8)
}
