//! Target `shim_options`: the runtime options of a Create request as the
//! shim decodes them: runc's options protobuf (`containerd.runc.v1.Options`),
//! the config path of a `runtimeoptions.v1.Options`, the TOML file it
//! names, and the options.json the shim keeps in the bundle.
//!
//! The first byte picks the decoder, the rest is its input.

use std::path::{Path, PathBuf};

use brig_shim::options;
use containerd_shim_protos::protobuf::well_known_types::any::Any;

/// A bundle directory for options.json.
pub struct ShimOptions {
    bundle: PathBuf,
}

impl ShimOptions {
    pub fn new(dir: &Path) -> std::io::Result<ShimOptions> {
        let bundle = dir.join("bundle");
        std::fs::create_dir_all(&bundle)?;
        Ok(ShimOptions { bundle })
    }

    pub fn run(&self, data: &[u8]) {
        let Some((&which, rest)) = data.split_first() else {
            return;
        };
        match which % 5 {
            0 => any("type.googleapis.com/containerd.runc.v1.Options", rest),
            1 => any("runtimeoptions.v1.Options", rest),
            2 => {
                let _ = options::config_path(rest);
            }
            3 => {
                let _ = options::from_toml("runtime.toml", &String::from_utf8_lossy(rest));
            }
            _ => {
                let file = self.bundle.join("options.json");
                if let Err(e) = std::fs::write(&file, rest) {
                    panic!("write {}: {e}", file.display());
                }
                let _ = options::load(&self.bundle);
            }
        }
    }
}

/// `from_any` on an Any of `type_url`. A `runtimeoptions.v1.Options` names a
/// file to read: only names that are safe to read here (no FIFO or endless
/// device to block on) go on to be read.
fn any(type_url: &str, value: &[u8]) {
    if type_url.starts_with("runtimeoptions") {
        match options::config_path(value) {
            Ok(p) if p.is_empty() || p.starts_with("/proc/") || p.starts_with("/dev/") => return,
            Ok(p) if std::fs::metadata(&p).is_ok_and(|m| !m.is_file()) => return,
            Ok(_) => {}
            Err(_) => {}
        }
    }
    let mut a = Any::new();
    a.type_url = type_url.to_string();
    a.value = value.to_vec();
    if let Err(e) = options::from_any(Some(&a)) {
        let _ = e.to_string();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_and_findings() {
        let dir = tempfile::tempdir().unwrap();
        let t = ShimOptions::new(dir.path()).unwrap();
        crate::replay("seeds/shim_options", |d| t.run(d));
    }
}
