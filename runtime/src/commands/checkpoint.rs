//! `brig checkpoint`: dump a running container's processes to images with criu.

use std::path::PathBuf;

use brig::checkpoint::CheckpointOpts;
use brig::state::Root;
use brig::{Error, Result};

use super::criu::{self, CriuArgs};

#[derive(clap::Args)]
pub struct CheckpointArgs {
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

/// `criu` is the global `--criu` path.
#[inline(never)]
pub fn run(root: &Root, a: &CheckpointArgs, criu: Option<PathBuf>) -> Result<()> {
    let opts = CheckpointOpts {
        criu: criu::opts(&a.criu, criu)?,
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
    brig::checkpoint::checkpoint(root, &a.id, &opts)
}

/// `--page-server ADDRESS:PORT` (runc's form; the address may be empty for any).
fn parse_page_server(s: &str) -> Result<(String, u16)> {
    let bad = || Error::msg(format!("--page-server {s:?}: expected ADDRESS:PORT"));
    let (addr, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    let addr = if addr.is_empty() { "0.0.0.0" } else { addr };
    Ok((addr.to_string(), port))
}
