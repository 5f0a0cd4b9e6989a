//! `brig pause`: freeze every process of a container.

use brig::container;
use brig::state::Root;
use brig::Result;

#[derive(clap::Args)]
pub struct PauseArgs {
    id: String,
}

#[inline(never)]
pub fn run(root: &Root, a: &PauseArgs) -> Result<()> {
    container::pause(root, &a.id)
}
