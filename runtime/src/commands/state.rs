//! `brig state`: print a container's OCI state JSON.

use brig::state::Root;
use brig::Result;

#[derive(clap::Args)]
pub struct StateArgs {
    id: String,
}

#[inline(never)]
pub fn run(root: &Root, a: &StateArgs) -> Result<()> {
    let saved = root.load(&a.id)?;
    let st = saved.to_oci(saved.status(root));
    println!("{}", serde_json::to_string_pretty(&st).expect("json"));
    Ok(())
}
