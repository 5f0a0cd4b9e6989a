//! `brig resume`: thaw a paused container.

use brig::container;
use brig::state::Root;
use brig::Result;

#[derive(clap::Args)]
pub struct ResumeArgs {
    id: String,
}

#[inline(never)]
pub fn run(root: &Root, a: &ResumeArgs) -> Result<()> {
    container::resume(root, &a.id)
}
