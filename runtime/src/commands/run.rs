//! `brig run`: create and start a container, then (unless detached) wait for it and delete it.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;

use brig::container;
use brig::logging;
use brig::state::Root;
use brig::{Error, Result};

use super::create;

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    create: create::CreateArgs,
    /// Detach from the container's process.
    #[arg(short, long)]
    detach: bool,
    /// Do not delete the container after it exits.
    #[arg(long)]
    keep: bool,
}

/// The container's exit code (0 when detached).
#[inline(never)]
pub fn run(root: &Root, a: &RunArgs) -> Result<u8> {
    let mut opts = create::opts(&a.create)?;
    // In the foreground brig itself takes the pty master (if the
    // spec asks for a terminal) through a socketpair.
    let pair = if a.detach {
        None
    } else {
        Some(UnixStream::pair().map_err(|e| Error::io("socketpair", e))?)
    };
    opts.console_fd = pair.as_ref().map(|(ours, _)| ours.as_raw_fd());
    let (pid, sync) = container::create_with_sync(root, &opts)?;
    let master = match &pair {
        Some((_, theirs)) => brig::linux::tty::recv_fd(theirs.as_fd(), false)?,
        None => None,
    };
    drop(pair);
    if let Err(e) = container::start(root, &opts.id).and_then(|_| container::wait_exec(&sync)) {
        let _ = container::delete(root, &opts.id, true);
        return Err(e);
    }
    drop(sync);
    if a.detach {
        return Ok(0);
    }
    let code = brig::process::foreground::wait(pid, master)?;
    if !a.keep {
        if let Err(e) = container::delete(root, &opts.id, true) {
            logging::warn(&e.to_string());
        }
    }
    Ok((code & 0xff) as u8)
}
