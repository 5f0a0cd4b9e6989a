//! AFL++ entry of the `layer` target (see `brig_fuzz::layer`). As root it
//! fuzzes inside its own mount namespace and chroot, so an escape is seen
//! and harms nothing; otherwise it says what it cannot see.

use brig_fuzz::layer::Layer;

fn main() {
    let dir = brig_fuzz::scratch_base().join(format!("layer-{}", std::process::id()));
    let target = if nix::unistd::geteuid().is_root() {
        Layer::isolated(&dir).unwrap_or_else(|e| panic!("isolating the layer target: {e}"))
    } else {
        eprintln!(
            "fuzz_layer: not root: no chroot, so escapes through absolute symlinks go unseen"
        );
        Layer::new(&dir).unwrap_or_else(|e| panic!("scratch {}: {e}", dir.display()))
    };
    afl::fuzz!(|data: &[u8]| target.run(data));
}
