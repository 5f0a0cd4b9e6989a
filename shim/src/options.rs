//! Runtime options containerd passes in Create: runc's shim options
//! (`containerd.runc.v1.Options`: `BinaryName`, `Root`, ...), or a
//! `runtimeoptions.v1.Options` naming a TOML file with the same keys (what
//! `ctr run --runtime-config-path` sends). They are kept in the bundle as
//! `options.json` so the `delete` subcommand, run after a shim crash,
//! drives the same runtime.

use std::path::Path;

use containerd_shim::util::{read_options, write_options};
use containerd_shim_protos::protobuf;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::Options;

use crate::error::{Error, Result};

const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";
const CONFIG_OPTIONS: &str = "runtimeoptions.v1.Options";

/// Decodes the options of a Create request (none: the defaults).
pub fn from_any(any: Option<&Any>) -> Result<Options> {
    let Some(any) = any else {
        return Ok(Options::default());
    };
    if any.type_url.is_empty() && any.value.is_empty() {
        return Ok(Options::default());
    }
    if any.type_url.rsplit('/').next() == Some(RUNC_OPTIONS) {
        return Options::parse_from_bytes(&any.value)
            .map_err(|e| Error::InvalidArgument(format!("runtime options {}: {e}", any.type_url)));
    }
    if any.type_url.rsplit('/').next() == Some(CONFIG_OPTIONS) {
        let path = config_path(&any.value).map_err(|e| {
            Error::InvalidArgument(format!("runtime options {}: {e}", any.type_url))
        })?;
        return from_toml_file(Path::new(&path));
    }
    Err(Error::InvalidArgument(format!(
        "runtime options of type {:?} are not supported (want {RUNC_OPTIONS} or {CONFIG_OPTIONS})",
        any.type_url
    )))
}

/// `config_path` (field 2) of a `runtimeoptions.v1.Options`; the message
/// is not in containerd-shim-protos, and this is its only field we need.
pub fn config_path(bytes: &[u8]) -> std::result::Result<String, protobuf::Error> {
    let mut input = protobuf::CodedInputStream::from_bytes(bytes);
    let mut path = String::new();
    while let Some(tag) = input.read_raw_tag_or_eof()? {
        match tag {
            18 => path = input.read_string()?,
            _ => input.skip_field(
                protobuf::rt::WireType::new(tag & 7)
                    .unwrap_or(protobuf::rt::WireType::LengthDelimited),
            )?,
        }
    }
    Ok(path)
}

/// runc's shim options from a TOML file of `Key = value` lines (the keys
/// of containerd's CRI runtime options: `BinaryName`, `Root`,
/// `SystemdCgroup`, ...). Only top-level string and bool keys are read.
pub fn from_toml_file(path: &Path) -> Result<Options> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("read runtime options {}", path.display()), e))?;
    from_toml(&path.display().to_string(), &text)
}

/// [`from_toml_file`] on the file's text; `name` names it in errors.
pub fn from_toml(name: &str, text: &str) -> Result<Options> {
    let mut opts = Options::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('[') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(Error::InvalidArgument(format!(
                "{name}:{}: want Key = value",
                n + 1
            )));
        };
        let value = value.trim();
        let string = || value.trim_matches('"').to_string();
        match key.trim() {
            "BinaryName" => opts.binary_name = string(),
            "Root" => opts.root = string(),
            "SystemdCgroup" => opts.systemd_cgroup = value == "true",
            "NoPivotRoot" => opts.no_pivot_root = value == "true",
            "NoNewKeyring" => opts.no_new_keyring = value == "true",
            "ShimCgroup" => opts.shim_cgroup = string(),
            "CriuWorkPath" => opts.criu_work_path = string(),
            // Kept, and (as by containerd's runc shim) not used: the image path comes with
            // each Create and Checkpoint.
            "CriuImagePath" => opts.criu_image_path = string(),
            key @ ("IoUid" | "IoGid") => {
                let id: u32 = value.parse().map_err(|_| {
                    Error::InvalidArgument(format!(
                        "{name}:{}: {key} = {value}: want an id from 0 to 4294967295",
                        n + 1
                    ))
                })?;
                match key {
                    "IoUid" => opts.io_uid = id,
                    _ => opts.io_gid = id,
                }
            }
            _ => {}
        }
    }
    Ok(opts)
}

pub fn save(bundle: &Path, opts: &Options) -> Result<()> {
    write_options(&bundle.display().to_string(), opts)
        .map_err(|e| Error::Other(format!("write {}/options.json: {e}", bundle.display())))
}

/// The options saved at Create, or the defaults.
pub fn load(bundle: &Path) -> Options {
    read_options(bundle).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_options_and_config_file_options() {
        let runc = Options {
            binary_name: "/usr/sbin/runc".into(),
            ..Default::default()
        };
        let any = Any {
            type_url: RUNC_OPTIONS.into(),
            value: runc.write_to_bytes().unwrap(),
            ..Default::default()
        };
        assert_eq!(from_any(Some(&any)).unwrap().binary_name, "/usr/sbin/runc");
        assert_eq!(from_any(None).unwrap().binary_name, "");

        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("rt.toml");
        std::fs::write(
            &toml,
            "# brig\nBinaryName = \"/usr/bin/crun\"\nRoot = \"/run/x\"\n",
        )
        .unwrap();
        // runtimeoptions.v1.Options { type_url: "x", config_path: toml }
        let path = toml.to_str().unwrap().as_bytes();
        let mut value = vec![10, 1, b'x', 18, path.len() as u8];
        value.extend_from_slice(path);
        let any = Any {
            type_url: CONFIG_OPTIONS.into(),
            value,
            ..Default::default()
        };
        let opts = from_any(Some(&any)).unwrap();
        assert_eq!(opts.binary_name, "/usr/bin/crun");
        assert_eq!(opts.root, "/run/x");

        let bad = Any {
            type_url: "other.Options".into(),
            value: vec![],
            ..Default::default()
        };
        assert!(from_any(Some(&bad)).is_err());
    }

    #[test]
    fn io_ids_and_criu_work_path_from_a_config_file() {
        let o = from_toml(
            "rt.toml",
            "IoUid = 1234\nIoGid = 2345\nCriuWorkPath = \"/w\"\n",
        )
        .unwrap();
        assert_eq!(
            (o.io_uid, o.io_gid, o.criu_work_path.as_str()),
            (1234, 2345, "/w")
        );
        let e = from_toml("rt.toml", "BinaryName = \"x\"\nIoUid = -1\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "rt.toml:2: IoUid = -1: want an id from 0 to 4294967295"
        );
    }
}
