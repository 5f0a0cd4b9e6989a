//! AFL++ entry of the `shim_options` target (see `brig_fuzz::shim_options`).

fn main() {
    let dir = brig_fuzz::scratch_base().join(format!("shim-{}", std::process::id()));
    let target = brig_fuzz::shim_options::ShimOptions::new(&dir)
        .unwrap_or_else(|e| panic!("bundle in {}: {e}", dir.display()));
    afl::fuzz!(|data: &[u8]| target.run(data));
}
