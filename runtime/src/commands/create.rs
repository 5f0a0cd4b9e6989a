//! `brig create`: set a container up from its bundle, its process waiting for `start`.

use std::path::PathBuf;

use brig::container::{self, CreateOpts};
use brig::state::Root;
use brig::{Error, Result};

#[derive(clap::Args, Clone)]
pub struct CreateArgs {
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

pub fn run(root: &Root, a: &CreateArgs) -> Result<()> {
    container::create(root, &opts(a)?)?;
    Ok(())
}

/// The library's options from the flags, paths made absolute (create and run).
pub fn opts(a: &CreateArgs) -> Result<CreateOpts> {
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
