//! `brig delete`: remove a stopped container (with --force, any container).

use brig::container;
use brig::state::Root;
use brig::Result;

#[derive(clap::Args)]
pub struct DeleteArgs {
    /// Kill the container first if it is running.
    #[arg(short, long)]
    force: bool,
    id: String,
}

#[inline(never)]
pub fn run(root: &Root, a: &DeleteArgs) -> Result<()> {
    container::delete(root, &a.id, a.force)
}
