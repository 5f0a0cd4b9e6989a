//! The criu flags checkpoint and restore share, and the library's options made from them.

use std::path::PathBuf;

use brig::checkpoint::{CgroupMode, CriuOpts};
use brig::{Error, Result};

#[derive(clap::Args)]
pub struct CriuArgs {
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

/// The options of criu from its flags and the global `--criu` path; paths
/// are made absolute against the current directory.
pub fn opts(a: &CriuArgs, criu: Option<PathBuf>) -> Result<CriuOpts> {
    let cwd = std::env::current_dir().map_err(|e| Error::io("getcwd", e))?;
    Ok(CriuOpts {
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
            .map(CgroupMode::parse)
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
