//! `brig features`: print the runtime-spec features document of this runtime.

use brig::Result;

#[inline(never)]
pub fn run() -> Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(&brig::features::features()).expect("json")
    );
    Ok(())
}
