//! Runtime options containerd passes in Create: runc's shim options
//! (`containerd.runc.v1.Options`: `BinaryName`, `Root`, ...), or a
//! `runtimeoptions.v1.Options` naming a TOML file with the same keys (what
//! `ctr run --runtime-config-path` sends). They are kept in the bundle as
//! `options.json` so the `delete` subcommand, run after a shim crash,
//! drives the same runtime.
//!
//! `CriuPath` (field 8 of containerd 1.6's runc options, which containerd 2.0 removed, and
//! so has no field in the protos crate's `Options`) is kept where protobuf keeps a field it
//! does not know: among the message's unknown fields, field 8, as containerd sends it;
//! [`criu_path`] reads it, [`from_toml`] puts the TOML key there. Only checkpoint and
//! restore need it, so `options.json` (for the `delete` subcommand) does without it.

use std::path::Path;

use containerd_shim::util::{read_options, write_options};
use containerd_shim_protos::protobuf;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::Options;

use crate::error::{Error, Result};

const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";
/// `criu_path` of containerd 1.6's `containerd.runc.v1.Options`.
const CRIU_PATH_FIELD: u32 = 8;
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

/// runc's shim options from a TOML file (the keys of containerd's CRI runtime options:
/// `BinaryName`, `Root`, `SystemdCgroup`, ...), as containerd's runc shim decodes it: the
/// top-level keys it knows, each of its type; others, and tables, are not options.
pub fn from_toml_file(path: &Path) -> Result<Options> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("read runtime options {}", path.display()), e))?;
    from_toml(&path.display().to_string(), &text)
}

/// [`from_toml_file`] on the file's text; `name` names it in errors.
pub fn from_toml(name: &str, text: &str) -> Result<Options> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .map(|l| format!(":{l}"))
            .unwrap_or_default();
        Error::InvalidArgument(format!("{name}{line}: {}", e.message().trim_end()))
    })?;
    let mut opts = Options::default();
    for (key, value) in &table {
        let bad =
            |want: &str| Error::InvalidArgument(format!("{name}: {key} = {value}: want {want}"));
        let string = || {
            value
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| bad("a string"))
        };
        let boolean = || value.as_bool().ok_or_else(|| bad("true or false"));
        let id = || {
            value
                .as_integer()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| bad("an id from 0 to 4294967295"))
        };
        match key.as_str() {
            "BinaryName" => opts.binary_name = string()?,
            "Root" => opts.root = string()?,
            "SystemdCgroup" => opts.systemd_cgroup = boolean()?,
            "NoPivotRoot" => opts.no_pivot_root = boolean()?,
            "NoNewKeyring" => opts.no_new_keyring = boolean()?,
            "ShimCgroup" => opts.shim_cgroup = string()?,
            "CriuWorkPath" => opts.criu_work_path = string()?,
            "CriuPath" => opts
                .special_fields
                .mut_unknown_fields()
                .add_length_delimited(CRIU_PATH_FIELD, string()?.into_bytes()),
            // Kept, and (as by containerd's runc shim) not used: the image path comes with
            // each Create and Checkpoint.
            "CriuImagePath" => opts.criu_image_path = string()?,
            "IoUid" => opts.io_uid = id()?,
            "IoGid" => opts.io_gid = id()?,
            _ => {}
        }
    }
    Ok(opts)
}

/// The runc options' `CriuPath`: the criu binary for checkpoint and restore (empty: criu
/// from `PATH`).
pub fn criu_path(opts: &Options) -> String {
    match opts.special_fields.unknown_fields().get(CRIU_PATH_FIELD) {
        Some(protobuf::UnknownValueRef::LengthDelimited(b)) => {
            String::from_utf8_lossy(b).into_owned()
        }
        _ => String::new(),
    }
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
            "rt.toml: IoUid = -1: want an id from 0 to 4294967295"
        );
        let e = from_toml("rt.toml", "NoPivotRoot = \"yes\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "rt.toml: NoPivotRoot = \"yes\": want true or false"
        );
    }

    /// A `runtimeoptions.v1.Options` naming `path`, as `ctr --runtime-config-path` sends it.
    fn config_any(path: &Path) -> Any {
        let path = path.to_str().unwrap().as_bytes();
        // field 1 (type_url, "x"), then field 2 (config_path): tag, varint length, bytes.
        let mut value = vec![10, 1, b'x', 18];
        let mut n = path.len();
        while n >= 0x80 {
            value.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        value.push(n as u8);
        value.extend_from_slice(path);
        Any {
            type_url: format!("type.googleapis.com/{CONFIG_OPTIONS}"),
            value,
            ..Default::default()
        }
    }

    fn runc_any(opts: &Options) -> Any {
        Any {
            type_url: format!("type.googleapis.com/{RUNC_OPTIONS}"),
            value: opts.write_to_bytes().unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn runc_options_every_field_we_use() {
        let want = Options {
            binary_name: "/opt/brig".into(),
            root: "/run/brig-k8s".into(),
            systemd_cgroup: true,
            no_pivot_root: true,
            no_new_keyring: true,
            shim_cgroup: "/shim".into(),
            ..Default::default()
        };
        // containerd sends the full type URL; the bare message name works too.
        let got = from_any(Some(&runc_any(&want))).unwrap();
        assert_eq!(got, want);
        let mut bare = runc_any(&want);
        bare.type_url = RUNC_OPTIONS.into();
        assert_eq!(from_any(Some(&bare)).unwrap(), want);
        // A message with no field set is the defaults.
        let empty = runc_any(&Options::default());
        assert!(empty.value.is_empty());
        assert_eq!(from_any(Some(&empty)).unwrap(), Options::default());
    }

    /// containerd 1.6 sends CriuPath as field 8 of the runc options; a runtime options file
    /// names it `CriuPath`. Either way it comes back from [`criu_path`].
    #[test]
    fn criu_path_from_runc_options_and_from_a_config_file() {
        assert_eq!(criu_path(&Options::default()), "");
        // field 6 (binary_name) "b", field 8 (criu_path) "/opt/criu", field 11 "/w".
        let mut value = vec![50, 1, b'b', 66, 9];
        value.extend_from_slice(b"/opt/criu");
        value.extend_from_slice(&[90, 2, b'/', b'w']);
        let any = Any {
            type_url: format!("type.googleapis.com/{RUNC_OPTIONS}"),
            value,
            ..Default::default()
        };
        let o = from_any(Some(&any)).unwrap();
        assert_eq!(
            (o.binary_name.as_str(), o.criu_work_path.as_str()),
            ("b", "/w")
        );
        assert_eq!(criu_path(&o), "/opt/criu");

        let o = from_toml("rt.toml", "CriuPath = \"/usr/local/sbin/criu\"\n").unwrap();
        assert_eq!(criu_path(&o), "/usr/local/sbin/criu");
        let e = from_toml("rt.toml", "CriuPath = 1\n").unwrap_err();
        assert_eq!(e.to_string(), "rt.toml: CriuPath = 1: want a string");
    }

    #[test]
    fn missing_or_empty_options_are_the_defaults() {
        assert_eq!(from_any(None).unwrap(), Options::default());
        assert_eq!(from_any(Some(&Any::default())).unwrap(), Options::default());
    }

    #[test]
    fn malformed_options_are_refused_naming_the_type() {
        // A length-delimited field 1 (binary_name) claiming 5 bytes, with 1.
        let mut bad = runc_any(&Options::default());
        bad.value = vec![10, 5, b'a'];
        let e = from_any(Some(&bad)).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("runtime options type.googleapis.com/containerd.runc.v1.Options: "),
            "{e}"
        );

        // config_path (field 2) claiming 40 bytes, with 1.
        let mut bad = config_any(Path::new("/x"));
        bad.value = vec![18, 40, b'/'];
        let e = from_any(Some(&bad)).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        assert!(e.to_string().contains("runtimeoptions.v1.Options: "), "{e}");

        // Only a type URL, or only a value, is not "no options".
        let e = from_any(Some(&Any {
            value: vec![10, 1, b'a'],
            ..Default::default()
        }))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "runtime options of type \"\" are not supported \
             (want containerd.runc.v1.Options or runtimeoptions.v1.Options)"
        );
        let e = from_any(Some(&Any {
            type_url: "io.containerd.runsc.v1.options".into(),
            ..Default::default()
        }))
        .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        assert!(
            e.to_string().contains("\"io.containerd.runsc.v1.options\""),
            "{e}"
        );
    }

    #[test]
    fn config_path_skips_other_fields() {
        // field 3 varint 7, field 1 string "t", field 2 string "/c.toml", field 4 fixed32.
        let mut v = vec![24, 7, 10, 1, b't', 18, 7];
        v.extend_from_slice(b"/c.toml");
        v.extend_from_slice(&[37, 1, 2, 3, 4]);
        assert_eq!(config_path(&v).unwrap(), "/c.toml");
        assert_eq!(config_path(&[]).unwrap(), "");
        assert!(config_path(&[18, 9, b'/']).is_err());
    }

    #[test]
    fn config_file_long_path_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        // A path over 127 bytes takes a two-byte length.
        let sub = dir.path().join("d".repeat(150));
        std::fs::create_dir(&sub).unwrap();
        let toml = sub.join("rt.toml");
        std::fs::write(&toml, "SystemdCgroup = true\n").unwrap();
        assert!(from_any(Some(&config_any(&toml))).unwrap().systemd_cgroup);

        let missing = dir.path().join("nope.toml");
        let e = from_any(Some(&config_any(&missing))).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with(&format!("read runtime options {}: ", missing.display())),
            "{e}"
        );
    }

    #[test]
    fn toml_keys_and_values() {
        let text = "\
# runtime options for brig
BinaryName = \"/usr/local/bin/brig\"   # trailing comment
Root=\"/run/brig\"

SystemdCgroup = true
NoPivotRoot = false
NoNewKeyring = true
ShimCgroup = '/shim'
IoUid = 5
TaskAPIAddress = \"elsewhere\"
";
        // Keys brig does not use (TaskAPIAddress here) are ignored.
        let want = Options {
            binary_name: "/usr/local/bin/brig".into(),
            root: "/run/brig".into(),
            systemd_cgroup: true,
            no_new_keyring: true,
            shim_cgroup: "/shim".into(),
            io_uid: 5,
            ..Default::default()
        };
        assert_eq!(from_toml("rt.toml", text).unwrap(), want);

        let o = from_toml("rt.toml", "SystemdCgroup = false\n").unwrap();
        assert!(!o.systemd_cgroup);
        assert_eq!(from_toml("rt.toml", "").unwrap(), Options::default());
        assert_eq!(
            from_toml("rt.toml", "# nothing\n\n").unwrap(),
            Options::default()
        );
    }

    #[test]
    fn toml_line_without_equals_is_refused_with_its_line() {
        let e = from_toml("/etc/brig/rt.toml", "Root = \"/r\"\n\nBinaryName \"/x\"\n").unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        assert!(e.to_string().starts_with("/etc/brig/rt.toml:3: "), "{e}");
    }

    #[test]
    fn toml_strings_keep_a_hash_and_lose_their_quotes() {
        let o = from_toml(
            "rt.toml",
            "Root = \"/run/a#b\" # the root\nShimCgroup = '/shim#1'\n",
        )
        .unwrap();
        assert_eq!(o.root, "/run/a#b");
        assert_eq!(o.shim_cgroup, "/shim#1");
        // A bare word is no TOML value (containerd refuses it too).
        assert!(from_toml("rt.toml", "BinaryName = brig\n").is_err());
    }

    #[test]
    fn toml_keys_of_tables_are_not_top_level() {
        // containerd decodes the file into the options struct: keys below a table header
        // belong to that table (gVisor's `[runsc_config]`, say), not to the options.
        let o = from_toml(
            "rt.toml",
            "BinaryName = \"/usr/bin/brig\"\n[runsc_config]\n  Root = \"/elsewhere\"\n",
        )
        .unwrap();
        assert_eq!(o.binary_name, "/usr/bin/brig");
        assert_eq!(o.root, "");
    }

    #[test]
    fn saved_options_load_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), Options::default());
        let opts = Options {
            binary_name: "/usr/bin/brig".into(),
            root: "/run/x".into(),
            systemd_cgroup: true,
            ..Default::default()
        };
        save(dir.path(), &opts).unwrap();
        assert!(dir.path().join("options.json").exists());
        assert_eq!(load(dir.path()), opts);
        let e = save(&dir.path().join("missing"), &opts).unwrap_err();
        assert!(e.to_string().contains("missing/options.json"), "{e}");
    }
}
