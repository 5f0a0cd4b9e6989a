//! `brig spec`: write a default config.json into a bundle, never over an existing one.

use std::path::PathBuf;

use brig::{Error, Result};

#[derive(clap::Args)]
pub struct SpecArgs {
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Generate a config for a rootless container.
    #[arg(long = "rootless", id = "spec_rootless")]
    rootless: bool,
}

#[inline(never)]
pub fn run(a: &SpecArgs) -> Result<()> {
    let path = a.bundle.join("config.json");
    if path.exists() {
        return Err(Error::msg(format!(
            "File {} exists. Remove it first",
            path.display()
        )));
    }
    let spec = brig::template::default_spec(a.rootless, brig::template::host_is_unified());
    let text = serde_json::to_string_pretty(&spec).expect("json");
    std::fs::write(&path, text + "\n")
        .map_err(|e| Error::io(format!("write {}", path.display()), e))
}
