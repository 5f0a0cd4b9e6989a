//! brig's fuzz targets, one module each: the runtime's config.json → plan
//! ([`config`]), the Dockerfile parser ([`dockerfile`]) and its ARG/ENV
//! expansion ([`expand`]), layer extraction ([`layer`]), and the shim's
//! runtime options ([`shim_options`]).
//!
//! Each target is a function of the input bytes that calls the library's
//! real entry points and panics only when an invariant breaks (an error
//! returned for bad input is the expected outcome, not a finding). The
//! binaries in `src/bin/` hand these functions to AFL++ (`make fuzz`); the
//! tests here run every committed seed and every past finding through them,
//! so the targets stay built and correct with a plain `cargo test`.

pub mod config;
pub mod dockerfile;
pub mod expand;
pub mod layer;
pub mod shim_options;

use std::path::PathBuf;

/// Where a target keeps its files: `$BRIG_FUZZ_SCRATCH` (`make fuzz` points
/// it into `fuzz/out/`, so nothing is left in /tmp when AFL++ kills a
/// target), else the system's temp dir.
pub fn scratch_base() -> PathBuf {
    std::env::var_os("BRIG_FUZZ_SCRATCH")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// Runs `target` on each file below `fuzz/<dir>/` (seeds and past
/// findings), naming the file if it panics.
#[cfg(test)]
pub(crate) fn replay(dir: &str, mut target: impl FnMut(&[u8])) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut n = 0;
    for e in std::fs::read_dir(&root).unwrap() {
        let path = e.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        eprintln!("replay {}", path.display());
        target(&data);
        n += 1;
    }
    assert!(n > 0, "no inputs in {}", root.display());
}
