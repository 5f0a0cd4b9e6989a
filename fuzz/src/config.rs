//! Target `config`: config.json bytes → the runtime's plan, through
//! `brig::container::fuzz_plan`, which runs what `create` runs on a spec
//! (parse, validate, root.path checks, namespaces, sysctls, seccomp
//! compilation, mount and device plan, process plan) without touching the
//! host. The bundle is one directory per process, its config.json
//! rewritten for each input.

use std::io;
use std::path::{Path, PathBuf};

/// A bundle with a rootfs and a bind-mount source, for the inputs to name.
pub struct Config {
    bundle: PathBuf,
}

impl Config {
    /// Makes the bundle in `dir` (created if missing).
    pub fn new(dir: &Path) -> io::Result<Config> {
        let bundle = dir.join("bundle");
        std::fs::create_dir_all(bundle.join("rootfs/etc"))?;
        std::fs::create_dir_all(bundle.join("volume"))?;
        std::fs::write(bundle.join("hosts"), "127.0.0.1 localhost\n")?;
        Ok(Config { bundle })
    }

    pub fn run(&self, data: &[u8]) {
        let config = self.bundle.join("config.json");
        if let Err(e) = std::fs::write(&config, data) {
            panic!("write {}: {e}", config.display());
        }
        // Rendering the error is part of the path a user sees.
        if let Err(e) = brig::container::fuzz_plan(&self.bundle) {
            let _ = e.to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_and_findings() {
        let dir = tempfile::tempdir().unwrap();
        let t = Config::new(dir.path()).unwrap();
        crate::replay("seeds/config", |d| t.run(d));
    }

    /// The seeds reach the end of the plan, not an early error.
    #[test]
    fn seeds_make_a_plan() {
        let dir = tempfile::tempdir().unwrap();
        let t = Config::new(dir.path()).unwrap();
        for seed in ["basic", "minimal", "mounts_devices", "seccomp_userns"] {
            let path = format!("{}/seeds/config/{seed}.json", env!("CARGO_MANIFEST_DIR"));
            std::fs::copy(path, t.bundle.join("config.json")).unwrap();
            brig::container::fuzz_plan(&t.bundle).unwrap();
        }
    }
}
