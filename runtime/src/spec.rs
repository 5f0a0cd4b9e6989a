//! Loading and validating a bundle's `config.json`.
//!
//! This module owns the one place where the OCI config is read. It parses
//! with `oci-spec` through `serde_path_to_error`, so a type error names the
//! JSON path (`config.json: process.args: invalid type ...`), then checks the
//! rules the types cannot express (absolute paths, duplicate namespaces,
//! rootfs present). Everything later can assume a valid spec.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

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

/// The keys of `linux.resources` per level, as runc's Go decoder matches them: case
/// insensitively (`"CPU": {"Cpus": "0"}` is `cpu.cpus`). Go decodes both of `"cpu"` and
/// `"CPU"` into the one field, merging objects; here an object under a miscased key is
/// merged into the exact key's, whose own values win.
const RESOURCES: &[&str] = &[
    "devices",
    "memory",
    "cpu",
    "pids",
    "blockIO",
    "hugepageLimits",
    "network",
    "rdma",
    "unified",
];
const MEMORY: &[&str] = &[
    "limit",
    "reservation",
    "swap",
    "kernel",
    "kernelTCP",
    "swappiness",
    "disableOOMKiller",
    "useHierarchy",
    "checkBeforeUpdate",
];
const CPU: &[&str] = &[
    "shares",
    "quota",
    "burst",
    "period",
    "realtimeRuntime",
    "realtimePeriod",
    "cpus",
    "mems",
    "idle",
];
const BLOCK_IO: &[&str] = &[
    "weight",
    "leafWeight",
    "weightDevice",
    "throttleReadBpsDevice",
    "throttleWriteBpsDevice",
    "throttleReadIOPSDevice",
    "throttleWriteIOPSDevice",
];
const PIDS: &[&str] = &["limit"];

/// Rename the keys of `v` (an object) that match a name of `known` but for
/// case, as Go's decoder accepts them; an exact match wins over a folded one, and an
/// object under a folded key adds its keys to the exact key's object.
fn fold_keys(v: &mut serde_json::Value, known: &[&str]) {
    let serde_json::Value::Object(map) = v else {
        return;
    };
    let old = std::mem::take(map);
    let mut folded = Vec::new();
    for (k, val) in old {
        match known.iter().find(|n| n.eq_ignore_ascii_case(&k)) {
            Some(n) if *n != k => folded.push((n.to_string(), val)),
            _ => {
                map.insert(k, val);
            }
        }
    }
    for (k, val) in folded {
        match (map.get_mut(&k), val) {
            (Some(serde_json::Value::Object(exact)), serde_json::Value::Object(more)) => {
                for (k, v) in more {
                    exact.entry(k).or_insert(v);
                }
            }
            (Some(_), _) => {}
            (None, val) => {
                map.insert(k, val);
            }
        }
    }
}

/// [`fold_keys`] on a `linux.resources` object (config.json's, or `update -r`'s document)
/// and its memory, cpu, blockIO and pids objects.
pub(crate) fn fold_resource_keys(v: &mut serde_json::Value) {
    fold_keys(v, RESOURCES);
    if let serde_json::Value::Object(map) = v {
        for (key, known) in [
            ("memory", MEMORY),
            ("cpu", CPU),
            ("blockIO", BLOCK_IO),
            ("pids", PIDS),
        ] {
            if let Some(sub) = map.get_mut(key) {
                fold_keys(sub, known);
            }
        }
    }
}

/// Whether the text may hold a key that starts with a capital letter (`"X...":`): every
/// key of the runtime spec starts lower case, so only then can one need folding. A cheap
/// scan, so that config.json is parsed once in the usual case.
fn may_have_capitalised_key(data: &[u8]) -> bool {
    data.windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] == b'"' && w[1].is_ascii_uppercase())
        .any(|(i, _)| {
            let rest = &data[i + 1..];
            rest.iter().position(|b| *b == b'"').is_some_and(|end| {
                rest[end + 1..]
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    .is_some_and(|b| *b == b':')
            })
        })
}

/// Parses config.json bytes; an error carries the JSON path and the message. Keys of
/// `linux.resources` match case-insensitively, as runc's decoder matches them.
pub fn parse(data: &[u8]) -> std::result::Result<Spec, (String, String)> {
    if may_have_capitalised_key(data) {
        if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(data) {
            if let Some(r) = v.pointer_mut("/linux/resources") {
                fold_resource_keys(r);
                if let Ok(text) = serde_json::to_vec(&v) {
                    return parse_exact(&text);
                }
            }
        }
    }
    parse_exact(data)
}

fn parse_exact(data: &[u8]) -> std::result::Result<Spec, (String, String)> {
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
    for (field, name) in [
        ("hostname", spec.hostname()),
        ("domainname", spec.domainname()),
    ] {
        if let Some(n) = name.as_deref().filter(|n| n.len() > MAX_HOSTNAME) {
            return Err(bad(
                field,
                format!("{} bytes: the kernel takes at most {MAX_HOSTNAME}", n.len()),
            ));
        }
    }
    if let Some(p) = spec.process() {
        validate_process(p, "process.")?;
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
            // The container then runs in the caller's mount namespace (as runc's), chrooted
            // into its rootfs: whatever would mount there would mount on the host.
            let why = "needs a mount namespace (without one, the container shares the caller's)";
            let root_ro = spec
                .root()
                .as_ref()
                .is_some_and(|r| r.readonly() == Some(true));
            for (field, set) in [
                (
                    "mounts",
                    spec.mounts().as_ref().is_some_and(|m| !m.is_empty()),
                ),
                ("root.readonly", root_ro),
                (
                    "linux.maskedPaths",
                    linux.masked_paths().as_ref().is_some_and(|m| !m.is_empty()),
                ),
                (
                    "linux.readonlyPaths",
                    linux
                        .readonly_paths()
                        .as_ref()
                        .is_some_and(|m| !m.is_empty()),
                ),
                (
                    "linux.devices",
                    linux.devices().as_ref().is_some_and(|d| !d.is_empty()),
                ),
                (
                    "linux.rootfsPropagation",
                    linux
                        .rootfs_propagation()
                        .as_ref()
                        .is_some_and(|p| !p.is_empty()),
                ),
            ] {
                if set {
                    return Err(bad(field, why));
                }
            }
        }
        if new_user_namespace(linux) {
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
                    // No range may reach 4294967295, the kernel's "no id".
                    for (what, start) in
                        [("containerID", m.container_id()), ("hostID", m.host_id())]
                    {
                        if start as u64 + m.size() as u64 > u32::MAX as u64 {
                            return Err(bad(
                                format!("{field}[{i}]"),
                                format!(
                                    "{what} {start} + size {} is out of range (ids end at {})",
                                    m.size(),
                                    u32::MAX - 1
                                ),
                            ));
                        }
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
        if let Some(rdt) = linux.intel_rdt() {
            if let Some(clos) = rdt.clos_id() {
                if clos.is_empty() || clos == "." || clos == ".." || clos.contains('/') {
                    return Err(bad(
                        "linux.intelRdt.closID",
                        format!("{clos:?} is not a plain name (it names a resctrl group)"),
                    ));
                }
            }
            return Err(bad(
                "linux.intelRdt",
                "not supported by brig (no resctrl support)",
            ));
        }
        for (field, set) in [
            ("netDevices", linux.net_devices().is_some()),
            ("memoryPolicy", linux.memory_policy().is_some()),
            ("personality", linux.personality().is_some()),
        ] {
            if set {
                return Err(bad(format!("linux.{field}"), "not supported by brig"));
            }
        }
        for (i, h) in linux
            .resources()
            .iter()
            .flat_map(|r| r.hugepage_limits().iter().flatten())
            .enumerate()
        {
            if h.limit() < 0 {
                return Err(bad(
                    format!("linux.resources.hugepageLimits[{i}].limit"),
                    format!("{} is negative", h.limit()),
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

/// The largest uid or gid a process may run as: runc's bound. Above it lies 4294967295,
/// which the kernel's set*id calls take as "leave unchanged": a process asking for it would
/// keep running as root.
pub const MAX_ID: u32 = i32::MAX as u32;

/// The most supplementary groups the kernel takes (NGROUPS_MAX).
const MAX_GROUPS: usize = 65536;

/// The kernel's limit on a host or domain name (HOST_NAME_MAX).
const MAX_HOSTNAME: usize = 64;

/// Checks a process, the container's (`prefix` "process.") or one `exec` runs ("" for a
/// process.json): args, cwd, env, ids, and the fields brig does not implement.
pub fn validate_process(p: &Process, prefix: &str) -> std::result::Result<(), Invalid> {
    match p.args() {
        Some(a) if !a.is_empty() => {}
        _ => {
            return Err(bad(
                format!("{prefix}args"),
                "must name at least the program to run",
            ))
        }
    }
    if !p.cwd().is_absolute() {
        return Err(bad(
            format!("{prefix}cwd"),
            format!("{:?} is not an absolute path", p.cwd()),
        ));
    }
    for (i, e) in p.env().iter().flatten().enumerate() {
        match e.split_once('=') {
            Some((name, _)) if !name.is_empty() => {}
            Some(_) => {
                return Err(bad(
                    format!("{prefix}env[{i}]"),
                    format!("{e:?} has an empty name"),
                ))
            }
            None => {
                return Err(bad(
                    format!("{prefix}env[{i}]"),
                    format!("{e:?} is not KEY=VALUE"),
                ))
            }
        }
    }
    let u = p.user();
    check_id(&format!("{prefix}user.uid"), u.uid())?;
    check_id(&format!("{prefix}user.gid"), u.gid())?;
    let gids = u.additional_gids().as_deref().unwrap_or(&[]);
    if gids.len() > MAX_GROUPS {
        return Err(bad(
            format!("{prefix}user.additionalGids"),
            format!(
                "{} groups: the kernel takes at most {MAX_GROUPS} (NGROUPS_MAX)",
                gids.len()
            ),
        ));
    }
    for (i, g) in gids.iter().enumerate() {
        check_id(&format!("{prefix}user.additionalGids[{i}]"), *g)?;
    }
    for (field, set) in [
        ("ioPriority", p.io_priority().is_some()),
        ("scheduler", p.scheduler().is_some()),
        ("execCPUAffinity", p.exec_cpu_affinity().is_some()),
    ] {
        if set {
            return Err(bad(format!("{prefix}{field}"), "not supported by brig"));
        }
    }
    Ok(())
}

/// A uid or gid a process may take: 0 to [`MAX_ID`], as runc.
pub fn check_id(path: &str, id: u32) -> std::result::Result<(), Invalid> {
    if id > MAX_ID {
        return Err(bad(
            path,
            format!("{id} is out of range (ids are 0 to {MAX_ID})"),
        ));
    }
    Ok(())
}

/// The settings that need a namespace of the container's own: the hostname a uts namespace,
/// each sysctl the namespace it belongs to. `has` tells the namespaces the container gets.
pub fn check_namespaced(spec: &Spec, has: impl Fn(LinuxNamespaceType) -> bool) -> Result<()> {
    if spec.hostname().as_deref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(Error::config(
            "config.json",
            "hostname",
            "setting the hostname needs a new uts namespace",
        ));
    }
    let linux = spec.linux().as_ref();
    for key in linux
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        crate::linux::sysctl::check(
            key,
            has(LinuxNamespaceType::Ipc),
            has(LinuxNamespaceType::Network),
            has(LinuxNamespaceType::Uts),
        )?;
    }
    Ok(())
}

/// Whether the container has (or joins) a namespace of type `t`.
pub fn has_namespace(spec: &Spec, t: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == t))
}

/// Whether the container gets a user namespace of its own (one not joined by
/// path), whose id maps the runtime writes.
pub fn new_user_namespace(linux: &oci_spec::runtime::Linux) -> bool {
    linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none())
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

    #[test]
    fn resource_keys_match_case_insensitively() {
        let mut v = minimal();
        // As runc's update.bats writes it: jq adds "CPU" beside the "cpu" set up before.
        v["linux"] = serde_json::json!({"resources": {
            "cpu": {"shares": 2, "cpus": "1"},
            "CPU": {"Cpus": "0", "MEMS": "0", "shares": 3},
            "Pids": {"Limit": 7},
            "memory": {"limit": 1048576, "Limit": 5}
        }});
        let s = parse(&serde_json::to_vec(&v).unwrap()).unwrap();
        let r = s.linux().as_ref().unwrap().resources().as_ref().unwrap();
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!(cpu.cpus().as_deref(), Some("1"));
        assert_eq!(cpu.mems().as_deref(), Some("0"));
        assert_eq!(cpu.shares(), Some(2));
        assert_eq!(r.pids().as_ref().unwrap().limit(), 7);
        // The exact key wins over a folded one.
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(1048576));
        let mut v = minimal();
        v["linux"] = serde_json::json!({"resources": {
            "cpu": {"shares": 2}, "CPU": {"Cpus": "0"}}});
        let s = parse(&serde_json::to_vec(&v).unwrap()).unwrap();
        let r = s.linux().as_ref().unwrap().resources().as_ref().unwrap();
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!((cpu.shares(), cpu.cpus().as_deref()), (Some(2), Some("0")));
        assert!(may_have_capitalised_key(b"{\"A\" : 1}"));
        assert!(!may_have_capitalised_key(
            b"{\"env\": [\"PATH=/bin\"], \"a\": \"X\"}"
        ));
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

    /// (uid_t)-1 is "no change" to setresuid: a process asking for it would stay root.
    #[test]
    fn ids_out_of_range_rejected() {
        for (field, path) in [("uid", "process.user.uid"), ("gid", "process.user.gid")] {
            for id in [4294967295u32, 2147483648] {
                let mut v = minimal();
                v["process"]["user"][field] = id.into();
                let (p, msg) = check(v).unwrap_err();
                assert_eq!(p, path);
                assert!(msg.contains("out of range"), "{msg}");
            }
        }
        let mut v = minimal();
        v["process"]["user"]["uid"] = 2147483647u32.into();
        check(v).unwrap();
        let mut v = minimal();
        v["process"]["user"]["additionalGids"] = serde_json::json!([1, 4294967295u32]);
        assert_eq!(check(v).unwrap_err().0, "process.user.additionalGids[1]");
        let mut v = minimal();
        v["process"]["user"]["additionalGids"] = (0..70_000).collect::<Vec<u32>>().into();
        let (p, msg) = check(v).unwrap_err();
        assert_eq!(p, "process.user.additionalGids");
        assert!(msg.contains("NGROUPS_MAX"), "{msg}");
        let mut v = minimal();
        v["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "user"}]);
        v["linux"]["uidMappings"] =
            serde_json::json!([{"containerID": 0, "hostID": 4294967295u32, "size": 1}]);
        v["linux"]["gidMappings"] =
            serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        assert_eq!(check(v).unwrap_err().0, "linux.uidMappings[0]");
    }

    #[test]
    fn refused_values_name_their_field() {
        let cases = [
            ("/process/env", serde_json::json!(["=x"]), "process.env[0]"),
            ("/hostname", "a".repeat(65).into(), "hostname"),
            ("/domainname", "a".repeat(65).into(), "domainname"),
            (
                "/linux/resources",
                serde_json::json!({"hugepageLimits": [{"pageSize": "2MB", "limit": -1}]}),
                "linux.resources.hugepageLimits[0].limit",
            ),
            (
                "/linux/intelRdt",
                serde_json::json!({"closID": "../../x"}),
                "linux.intelRdt.closID",
            ),
            (
                "/linux/intelRdt",
                serde_json::json!({"closID": "x"}),
                "linux.intelRdt",
            ),
            (
                "/linux/personality",
                serde_json::json!({"domain": "LINUX32"}),
                "linux.personality",
            ),
            (
                "/linux/netDevices",
                serde_json::json!({"eth1": {}}),
                "linux.netDevices",
            ),
            (
                "/process/ioPriority",
                serde_json::json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0}),
                "process.ioPriority",
            ),
            (
                "/process/scheduler",
                serde_json::json!({"policy": "SCHED_IDLE"}),
                "process.scheduler",
            ),
            (
                "/process/execCPUAffinity",
                serde_json::json!({"initial": "0"}),
                "process.execCPUAffinity",
            ),
        ];
        for (at, value, want) in cases {
            let mut v = minimal();
            let (parent, key) = at.rsplit_once('/').unwrap();
            v.pointer_mut(parent).unwrap()[key] = value;
            assert_eq!(check(v).unwrap_err().0, want, "{at}");
        }
    }

    #[test]
    fn duplicate_namespace_rejected() {
        let mut v = minimal();
        v["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "mount"}]);
        assert_eq!(check(v).unwrap_err().0, "linux.namespaces[1].type");
    }
}
