//! AFL++ entry of the `config` target (see `brig_fuzz::config`).

fn main() {
    let dir = brig_fuzz::scratch_base().join(format!("config-{}", std::process::id()));
    let target = brig_fuzz::config::Config::new(&dir)
        .unwrap_or_else(|e| panic!("bundle in {}: {e}", dir.display()));
    afl::fuzz!(|data: &[u8]| target.run(data));
}
