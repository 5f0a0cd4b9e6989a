//! Loading and validating a bundle's `config.json`.
//!
//! This module owns the one place where the OCI config is read. It parses
//! with `oci-spec` through `serde_path_to_error`, so a type error names the
//! JSON path (`config.json: process.args: invalid type ...`), then checks the
//! rules the types cannot express (absolute paths, duplicate namespaces,
//! rootfs present). Everything later can assume a valid spec.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

/// A loaded, validated bundle.
#[derive(Debug)]
pub struct Bundle {
    /// Absolute path of the bundle directory.
    pub dir: PathBuf,
    /// Absolute path of the root filesystem.
    pub rootfs: PathBuf,
    pub spec: Spec,
}

const CONFIG: &str = "config.json";

/// Loads `<bundle>/config.json` and validates it.
pub fn load(bundle: &Path) -> Result<Bundle> {
    let meta = std::fs::metadata(bundle)
        .map_err(|e| Error::io(format!("bundle {}", bundle.display()), e))?;
    if !meta.is_dir() {
        return Err(Error::msg(format!(
            "bundle {}: not a directory",
            bundle.display()
        )));
    }
    let dir = std::fs::canonicalize(bundle)
        .map_err(|e| Error::io(format!("bundle {}", bundle.display()), e))?;
    let file = dir.join(CONFIG);
    let data = std::fs::read(&file).map_err(|e| Error::io(format!("{}", file.display()), e))?;
    let spec = parse(&data).map_err(|(path, msg)| Error::config(&file, path, msg))?;
    validate(&spec).map_err(|(path, msg)| Error::config(&file, path, msg))?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::config(&file, "root", "missing"))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        dir.join(root.path())
    };
    match std::fs::metadata(&rootfs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::config(
                &file,
                "root.path",
                format!("{}: not a directory", rootfs.display()),
            ))
        }
        Err(e) => {
            return Err(Error::config(
                &file,
                "root.path",
                format!("{}: {e}", rootfs.display()),
            ))
        }
    }
    let real = std::fs::canonicalize(&rootfs)
        .map_err(|e| Error::config(&file, "root.path", format!("{}: {e}", rootfs.display())))?;
    // The rootfs is named by its real path, as runc wants: a symlink there
    // (say an image's `rootfs -> /`) would be followed by root, once now and
    // again by whoever reads the path later. Below the bundle (a relative
    // root.path) no component may be a symlink; an absolute root.path is the
    // caller's own, and only its last component is checked (runc checks all,
    // which refuses any caller whose temp dir lies under a symlink).
    let named = lexically_clean(&rootfs);
    let named = match (root.path().is_absolute(), named.parent(), named.file_name()) {
        (true, Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|p| p.join(name))
            .unwrap_or(named),
        _ => named,
    };
    if real != named {
        return Err(Error::config(
            &file,
            "root.path",
            format!(
                "{}: is a symlink or lies under one (it resolves to {}); give the real path",
                rootfs.display(),
                real.display()
            ),
        ));
    }
    Ok(Bundle {
        dir,
        rootfs: real,
        spec,
    })
}

/// `p` with `.` and `..` resolved by name only (as Go's filepath.Clean).
fn lexically_clean(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Parses config.json bytes; an error carries the JSON path and the message.
pub fn parse(data: &[u8]) -> std::result::Result<Spec, (String, String)> {
    let de = &mut serde_json::Deserializer::from_slice(data);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." || path == "?" {
            "(document)".to_string()
        } else {
            path
        };
        (path, e.into_inner().to_string())
    })
}

type Invalid = (String, String);

fn bad(path: impl Into<String>, msg: impl Into<String>) -> Invalid {
    (path.into(), msg.into())
}

/// Checks what the types do not: absolute paths, duplicates, required parts.
pub fn validate(spec: &Spec) -> std::result::Result<(), Invalid> {
    let v = spec.version();
    if !v.starts_with("1.") {
        return Err(bad("ociVersion", format!("unsupported version {v:?}")));
    }
    if spec.root().is_none() {
        return Err(bad("root", "missing"));
    }
    if let Some(p) = spec.process() {
        match p.args() {
            Some(a) if !a.is_empty() => {}
            _ => return Err(bad("process.args", "must name at least the program to run")),
        }
        if !p.cwd().is_absolute() {
            return Err(bad(
                "process.cwd",
                format!("{:?} is not an absolute path", p.cwd()),
            ));
        }
        if let Some(env) = p.env() {
            for (i, e) in env.iter().enumerate() {
                if !e.contains('=') {
                    return Err(bad(
                        format!("process.env[{i}]"),
                        format!("{e:?} is not KEY=VALUE"),
                    ));
                }
            }
        }
    }
    if let Some(mounts) = spec.mounts() {
        for (i, m) in mounts.iter().enumerate() {
            if !m.destination().is_absolute() {
                return Err(bad(
                    format!("mounts[{i}].destination"),
                    format!("{:?} is not an absolute path", m.destination()),
                ));
            }
        }
    }
    if let Some(hooks) = spec.hooks() {
        let kinds = [
            ("prestart", hooks.prestart()),
            ("createRuntime", hooks.create_runtime()),
            ("createContainer", hooks.create_container()),
            ("startContainer", hooks.start_container()),
            ("poststart", hooks.poststart()),
            ("poststop", hooks.poststop()),
        ];
        for (kind, list) in kinds {
            for (i, h) in list.iter().flatten().enumerate() {
                if !h.path().is_absolute() {
                    return Err(bad(
                        format!("hooks.{kind}[{i}].path"),
                        format!("{:?} is not an absolute path", h.path()),
                    ));
                }
                if matches!(h.timeout(), Some(t) if t <= 0) {
                    return Err(bad(
                        format!("hooks.{kind}[{i}].timeout"),
                        "must be greater than zero",
                    ));
                }
            }
        }
    }
    if let Some(linux) = spec.linux() {
        let mut seen = HashSet::new();
        let mut has_user = false;
        let mut has_mount = false;
        for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
            if !seen.insert(ns.typ()) {
                return Err(bad(
                    format!("linux.namespaces[{i}].type"),
                    format!("namespace {:?} given twice", ns_name(ns.typ())),
                ));
            }
            if let Some(path) = ns.path() {
                if !path.is_absolute() {
                    return Err(bad(
                        format!("linux.namespaces[{i}].path"),
                        format!("{path:?} is not an absolute path"),
                    ));
                }
            }
            has_user |= ns.typ() == LinuxNamespaceType::User;
            has_mount |= ns.typ() == LinuxNamespaceType::Mount;
        }
        if !has_mount {
            return Err(bad(
                "linux.namespaces",
                "a mount namespace is required to set up the root filesystem",
            ));
        }
        let new_user = linux
            .namespaces()
            .iter()
            .flatten()
            .any(|ns| ns.typ() == LinuxNamespaceType::User && ns.path().is_none());
        if new_user {
            for (field, maps) in [
                ("linux.uidMappings", linux.uid_mappings()),
                ("linux.gidMappings", linux.gid_mappings()),
            ] {
                let maps = maps.as_deref().unwrap_or(&[]);
                if maps.is_empty() {
                    return Err(bad(field, "a new user namespace needs id mappings"));
                }
                let mut ranges: Vec<(u64, u64)> = Vec::new();
                for (i, m) in maps.iter().enumerate() {
                    if m.size() == 0 {
                        return Err(bad(format!("{field}[{i}].size"), "must not be 0"));
                    }
                    let r = (
                        m.container_id() as u64,
                        m.container_id() as u64 + m.size() as u64,
                    );
                    if let Some(o) = ranges.iter().find(|o| r.0 < o.1 && o.0 < r.1) {
                        return Err(bad(
                            format!("{field}[{i}]"),
                            format!(
                                "container ids {}..{} overlap another mapping ({}..{})",
                                r.0, r.1, o.0, o.1
                            ),
                        ));
                    }
                    ranges.push(r);
                }
            }
        }
        if !has_user && (linux.uid_mappings().is_some() || linux.gid_mappings().is_some()) {
            let any = linux.uid_mappings().iter().flatten().count()
                + linux.gid_mappings().iter().flatten().count();
            if any > 0 {
                return Err(bad(
                    "linux.uidMappings",
                    "id mappings need a user namespace in linux.namespaces",
                ));
            }
        }
        for (i, d) in linux.devices().iter().flatten().enumerate() {
            if !d.path().is_absolute() {
                return Err(bad(
                    format!("linux.devices[{i}].path"),
                    format!("{:?} is not an absolute path", d.path()),
                ));
            }
        }
        for (i, p) in linux.masked_paths().iter().flatten().enumerate() {
            if !p.starts_with('/') {
                return Err(bad(
                    format!("linux.maskedPaths[{i}]"),
                    format!("{p:?} is not an absolute path"),
                ));
            }
        }
        for (i, p) in linux.readonly_paths().iter().flatten().enumerate() {
            if !p.starts_with('/') {
                return Err(bad(
                    format!("linux.readonlyPaths[{i}]"),
                    format!("{p:?} is not an absolute path"),
                ));
            }
        }
        if let Some(prop) = linux.rootfs_propagation() {
            if !matches!(
                prop.as_str(),
                "" | "private"
                    | "rprivate"
                    | "slave"
                    | "rslave"
                    | "shared"
                    | "rshared"
                    | "unbindable"
                    | "runbindable"
            ) {
                return Err(bad(
                    "linux.rootfsPropagation",
                    format!("unknown propagation {prop:?}"),
                ));
            }
        }
    } else {
        return Err(bad("linux", "missing: brig runs Linux containers"));
    }
    Ok(())
}

/// The name of a namespace type as config.json spells it.
pub fn ns_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexically_clean_resolves_dots_by_name() {
        assert_eq!(
            lexically_clean(Path::new("/b/./rootfs/../r/")),
            PathBuf::from("/b/r")
        );
        assert_eq!(lexically_clean(Path::new("/../x")), PathBuf::from("/x"));
    }

    fn minimal() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]}
        })
    }

    fn check(v: serde_json::Value) -> std::result::Result<Spec, Invalid> {
        let s = parse(&serde_json::to_vec(&v).unwrap())?;
        validate(&s)?;
        Ok(s)
    }

    #[test]
    fn minimal_is_valid() {
        check(minimal()).unwrap();
    }

    #[test]
    fn unknown_namespace_names_path() {
        let mut v = minimal();
        v["linux"]["namespaces"][1]["type"] = "foo".into();
        let (path, msg) = check(v).unwrap_err();
        assert_eq!(path, "linux.namespaces[1].type");
        assert!(msg.contains("foo"), "{msg}");
    }

    #[test]
    fn wrong_type_names_path() {
        let mut v = minimal();
        v["process"]["args"] = "sh".into();
        let (path, _) = check(v).unwrap_err();
        assert_eq!(path, "process.args");
    }

    #[test]
    fn not_json() {
        let (path, _) = parse(b"{ nope").unwrap_err();
        assert_eq!(path, "(document)");
    }

    #[test]
    fn relative_paths_rejected() {
        let mut v = minimal();
        v["linux"]["namespaces"][1]["path"] = "proc/1/ns/pid".into();
        assert_eq!(check(v).unwrap_err().0, "linux.namespaces[1].path");
        let mut v = minimal();
        v["mounts"] =
            serde_json::json!([{"destination": "tmp", "type": "tmpfs", "source": "tmpfs"}]);
        assert_eq!(check(v).unwrap_err().0, "mounts[0].destination");
        let mut v = minimal();
        v["process"]["cwd"] = "tmp".into();
        assert_eq!(check(v).unwrap_err().0, "process.cwd");
    }

    #[test]
    fn duplicate_namespace_rejected() {
        let mut v = minimal();
        v["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "mount"}]);
        assert_eq!(check(v).unwrap_err().0, "linux.namespaces[1].type");
    }
}
