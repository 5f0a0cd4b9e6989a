//! `brig create`: set a container up from its bundle, its process waiting for `start`.

use std::path::PathBuf;

use brig::container::{self, CreateOpts};
use brig::state::Root;
use brig::{Error, Result};

/// Where the bundle is and where its process's pty master and pid go (create, run, restore).
#[derive(clap::Args, Clone)]
pub struct BundleArgs {
    /// Path to the bundle directory.
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket to receive the pty master of a terminal container.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// File to write the container's pid to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
}

impl BundleArgs {
    /// The same paths made absolute against the cwd (the library chdirs into the bundle).
    pub fn absolute(&self) -> Result<BundleArgs> {
        let cwd = std::env::current_dir().map_err(|e| Error::io("getcwd", e))?;
        Ok(BundleArgs {
            bundle: cwd.join(&self.bundle),
            console_socket: self.console_socket.as_ref().map(|p| cwd.join(p)),
            pid_file: self.pid_file.as_ref().map(|p| cwd.join(p)),
        })
    }
}

#[derive(clap::Args, Clone)]
pub struct CreateArgs {
    #[command(flatten)]
    paths: BundleArgs,
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

#[inline(never)]
pub fn run(root: &Root, a: &CreateArgs) -> Result<()> {
    container::create(root, &opts(a)?)?;
    Ok(())
}

/// The library's options from the flags, paths made absolute (create and run).
pub fn opts(a: &CreateArgs) -> Result<CreateOpts> {
    let paths = a.paths.absolute()?;
    Ok(CreateOpts {
        id: a.id.clone(),
        bundle: paths.bundle,
        console_socket: paths.console_socket,
        pid_file: paths.pid_file,
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
        console_fd: None,
    })
}
