//! `brig start`: let a created container's process run its program.

use brig::container;
use brig::state::Root;
use brig::Result;

#[derive(clap::Args)]
pub struct StartArgs {
    id: String,
}

#[inline(never)]
pub fn run(root: &Root, a: &StartArgs) -> Result<()> {
    container::start(root, &a.id)
}
