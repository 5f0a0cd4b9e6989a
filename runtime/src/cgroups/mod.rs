//! cgroups: a [`Manager`] per container, with a backend chosen from the host.
//!
//! Owns: finding the container's cgroup directories from `linux.cgroupsPath`
//! (runc's non-systemd "cgroupfs" semantics), creating and joining them,
//! writing `linux.resources` into them, freezing, listing and removing them,
//! and describing what to mount at the container's `/sys/fs/cgroup`.
//!
//! Must never: change host cgroup mounts, write to any cgroup outside the
//! container's own directories (three exceptions, all as runc does: filling
//! an ancestor's empty `cpuset.cpus`/`cpuset.mems` from its parent on v1,
//! enabling `hugetlb` in the `cgroup.subtree_control` of the container's
//! ancestors on the hybrid cgroup2 hierarchy — only when hugepage limits are
//! asked for and v1 has no hugetlb — and, on cgroup v2, enabling the
//! available controllers in the `cgroup.subtree_control` of the ancestors
//! of a new container cgroup), remove anything but the container's own
//! (empty) cgroup directories, or leave a requested setting silently
//! unapplied.
//!
//! Backends: [`v1`] handles legacy (v1 only) and hybrid hosts (v1 controllers
//! plus a cgroup2 hierarchy, usually at /sys/fs/cgroup/unified, which the
//! container also joins); [`v2`] handles hosts with only the unified cgroup2
//! hierarchy (devices through an eBPF program, see `bpf`).
//!
//! Order of use by the runtime (as runc): [`new`] → [`Manager::entry`] before
//! the clone of the init, which enters the cgroups itself (or
//! [`Manager::apply`] with the init's pid), before that process unshares its cgroup
//! namespace (the namespace root is the cgroup it is in at unshare time) →
//! [`Manager::set`] with the resources (devices list built with
//! [`device_rules`]) once the init has made its device nodes, before it
//! execs → store [`Manager::paths`] in the state file → later [`load`] →
//! freeze/thaw/pids/set (`update`)/stats → [`Manager::destroy`] after every
//! process has exited.

mod bpf;
mod devices;
mod entry;
pub mod join;
mod layout;
pub mod oom;
mod shared;
pub mod stats;
pub mod systemd;
mod util;
pub mod v1;
pub mod v2;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use devices::{device_rules, DefaultDevice, DEFAULT_DEVICES};
pub use entry::Entry;
pub use oom::{OomEvent, OomWatch};
pub use stats::Stats;

use layout::{Layout, Mode};

/// The container's cgroups.
pub trait Manager: std::fmt::Debug + Send + Sync {
    /// Create the container's directory in every hierarchy and move `pid`
    /// into each (`cgroup.procs`). Also used to put an exec'd process into a
    /// running container's cgroups.
    fn apply(&self, pid: i32) -> Result<()>;

    /// Creates the container's directories and opens them for a new process to enter by
    /// itself as it starts ([`Entry`], which spares the kernel's global lock that
    /// [`Manager::apply`] takes); `None` where that is not possible, and `apply` puts the
    /// process in.
    fn entry(&self) -> Result<Option<Entry>> {
        Ok(None)
    }

    /// Write the resource limits. Settings that are `None` are left as they
    /// are; `devices: Some(list)` replaces the device rules with exactly
    /// `list` applied on top of "deny everything".
    fn set(&self, r: &LinuxResources) -> Result<()>;

    /// Freeze every process, returning once the kernel reports FROZEN.
    fn freeze(&self) -> Result<()>;

    /// Thaw, returning once the kernel reports THAWED.
    fn thaw(&self) -> Result<()>;

    /// Whether the container's cgroup itself is frozen (a frozen ancestor
    /// does not count, as in runc).
    fn state_frozen(&self) -> Result<bool>;

    /// Every process in the container's cgroups, recursively, sorted.
    fn pids(&self) -> Result<Vec<i32>>;

    /// Remove the container's directories (children first). Missing ones
    /// are fine; busy ones are retried a few times.
    fn destroy(&self) -> Result<()>;

    /// Controller (or `name=systemd`, or `unified`) → the container's
    /// directory; what the state file stores and [`load`] takes back.
    fn paths(&self) -> BTreeMap<String, PathBuf>;

    /// What to mount under the container's `/sys/fs/cgroup`, one entry per
    /// hierarchy the container joined.
    fn mounts(&self) -> Vec<CgroupMount>;

    /// The values now in effect for the settings `like` has (memory limit,
    /// reservation and swap; cpu shares, quota, period, realtime period and
    /// runtime, cpus and mems; blkio weight; pids limit — what `update`
    /// changes), as resources that [`Manager::set`] can write back to undo
    /// a change. Settings `like` lacks, or others, are left out.
    fn current(&self, like: &LinuxResources) -> Result<LinuxResources>;

    /// Resource usage now, from the statistics files of every controller
    /// the container has (missing controllers read as zero).
    fn stats(&self) -> Result<Stats>;

    /// Start listening for out-of-memory events of the container's memory
    /// cgroup.
    fn watch_oom(&self) -> Result<OomWatch>;
}

/// One hierarchy as the container should see it under `/sys/fs/cgroup`.
///
/// cgroup v2 hosts have one entry with an empty `name` and `fstype`
/// "cgroup2": it goes at `/sys/fs/cgroup` itself, with no tmpfs: with a
/// cgroup namespace a fresh cgroup2 mount, without one a recursive bind of
/// `host_path` (as runc does).
///
/// Without a cgroup namespace (runc's v1 way): mount a tmpfs at
/// `/sys/fs/cgroup`, bind `host_path` (recursively) at
/// `/sys/fs/cgroup/<name>`, then for each entry make the `links` as
/// symlinks `/sys/fs/cgroup/<link> -> <name>`.
///
/// With a cgroup namespace: same tmpfs and links, but mount a fresh
/// filesystem of type `fstype` with data `options` at
/// `/sys/fs/cgroup/<name>` (source "cgroup", or "systemd" for the named
/// hierarchy, as runc does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupMount {
    /// Directory name under `/sys/fs/cgroup`: "memory", "cpu,cpuacct",
    /// "systemd", "unified"; empty for `/sys/fs/cgroup` itself (cgroup v2).
    pub name: String,
    /// The container's cgroup in this hierarchy, on the host.
    pub host_path: PathBuf,
    /// "cgroup" (v1) or "cgroup2" (the hybrid unified hierarchy, or the
    /// whole of a cgroup v2 host when `name` is empty).
    pub fstype: String,
    /// Mount data for a fresh mount: "memory", "cpu,cpuacct",
    /// "name=systemd"; empty for cgroup2.
    pub options: String,
    /// Symlinks to make next to `name` pointing at it, for co-mounted
    /// controllers: ["cpu", "cpuacct"] for "cpu,cpuacct". Usually empty.
    pub links: Vec<String>,
}

/// The manager for a new container.
///
/// `cgroups_path` is `linux.cgroupsPath`: absolute → that path under the
/// root of every hierarchy; relative → relative to the calling process's own
/// cgroup in each hierarchy (from /proc/self/cgroup); absent → relative
/// path `<id>` (runc 1.1's default). `..` may not climb above the start;
/// the path may not name the root (or own) cgroup itself; the systemd form
/// `slice:prefix:name` is refused. With `--systemd-cgroup` ([`systemd::enable`])
/// the path is systemd's form and systemd makes the cgroup ([`systemd`]).
pub fn new(cgroups_path: Option<&str>, id: &str) -> Result<Box<dyn Manager>> {
    if systemd::enabled() {
        return systemd::new(cgroups_path, id);
    }
    let inner = parse_cgroups_path(cgroups_path, id)?;
    let layout = Layout::detect()?;
    match layout.mode()? {
        Mode::Legacy | Mode::Hybrid => Ok(Box::new(v1::V1Manager::new(&layout, &inner)?)),
        Mode::Unified => Ok(Box::new(v2::V2Manager::new(&layout, &inner)?)),
    }
}

/// The cgroup of a container being created, and whether it has one of its own. Rootless, a
/// container gets none unless linux.resources sets a limit (which then needs a cgroup
/// delegated to the caller, or fails naming linux.resources). A cgroup someone froze would
/// stop the init mid-setup, and it is not ours to remove: refused before taking it over, as
/// runc does.
pub fn for_container(
    linux: &oci_spec::runtime::Linux,
    id: &str,
) -> Result<(Box<dyn Manager>, bool)> {
    // Root of a user namespace (a plain user's build) owns no cgroup either: as runc, no
    // cgroup is made unless limits are asked (then a refused write is the error). Under
    // systemd every container gets its scope, rootless too (as runc).
    let own = privileged() || systemd::enabled() || wants_limits(linux.resources().as_ref());
    let cg = if own {
        new(linux.cgroups_path().as_ref().and_then(|p| p.to_str()), id)?
    } else {
        load(BTreeMap::new())
    };
    if cg.state_frozen().unwrap_or(false) {
        return Err(Error::msg("container's cgroup unexpectedly frozen"));
    }
    if cg.pids().is_ok_and(|p| !p.is_empty()) {
        crate::logging::warn("container's cgroup is not empty: it already has processes");
    }
    Ok((cg, own))
}

/// Whether this brig runs as the host's root (not a plain user, nor root of a user
/// namespace): only then does it own cgroups it did not get delegated, and devices rules.
pub fn privileged() -> bool {
    nix::unistd::geteuid().is_root() && !crate::linux::namespaces::running_in_user_namespace()
}

/// Whether `linux.resources` sets a limit (device rules alone do not count:
/// a rootless container cannot have them and gets the host's devices only).
fn wants_limits(r: Option<&oci_spec::runtime::LinuxResources>) -> bool {
    let Some(r) = r else { return false };
    let Ok(serde_json::Value::Object(mut v)) = serde_json::to_value(r) else {
        return false;
    };
    v.remove("devices");
    v.values()
        .any(|x| !x.is_null() && x != &serde_json::json!({}) && x != &serde_json::json!([]))
}

/// Rebuild the manager of an existing container from its stored
/// [`Manager::paths`]: one entry under the empty key is a cgroup v2
/// container (as in runc's state), anything else v1/hybrid. The host layout
/// is read again when [`Manager::mounts`] or hugetlb need it; if that
/// fails those degrade (no mounts). With `--systemd-cgroup`, a container in
/// a systemd scope also gets its unit stopped at destroy and properties set.
pub fn load(paths: BTreeMap<String, PathBuf>) -> Box<dyn Manager> {
    let fs = load_fs(&paths);
    if systemd::enabled() {
        return systemd::load(&paths, fs);
    }
    fs
}

/// The host's layout is read only by what needs it (mounts, a missing directory, hugetlb on
/// cgroup2), not by every command that loads a container.
fn load_fs(paths: &BTreeMap<String, PathBuf>) -> Box<dyn Manager> {
    let paths = paths.clone();
    if paths.len() == 1 {
        if let Some(p) = paths.get(v2::KEY) {
            return Box::new(v2::V2Manager::load(None, p.clone()));
        }
    }
    Box::new(v1::V1Manager::load(None, paths))
}

/// `linux.cgroupsPath`, cleaned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inner {
    /// Under each hierarchy's root (relative path, no `..`).
    Absolute(PathBuf),
    /// Under the caller's own cgroup (relative path, no `..`).
    Relative(PathBuf),
}

const PATH_FIELD: &str = "linux.cgroupsPath";

pub(crate) fn parse_cgroups_path(p: Option<&str>, id: &str) -> Result<Inner> {
    let bad = |msg: String| Error::config("config.json", PATH_FIELD, msg);
    let (raw, field_is_id) = match p {
        Some(s) if !s.is_empty() => (s, false),
        _ => (id, true),
    };
    if !field_is_id && !raw.starts_with('/') && raw.split(':').count() == 3 {
        return Err(bad(format!(
            "{raw:?} is in the systemd form \"slice:prefix:name\": systemd cgroups need --systemd-cgroup"
        )));
    }
    let mut clean = PathBuf::new();
    for c in Path::new(raw).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => clean.push(n),
            Component::ParentDir => {
                if !clean.pop() {
                    return Err(bad(format!(
                        "{raw:?} climbs above its starting point with \"..\""
                    )));
                }
            }
            Component::Prefix(_) => return Err(bad(format!("{raw:?} is not a valid path"))),
        }
    }
    if clean.as_os_str().is_empty() {
        let what = if field_is_id {
            format!("container id {raw:?} is not usable as a cgroup name")
        } else if raw.starts_with('/') {
            format!("{raw:?} names the root cgroup")
        } else {
            format!("{raw:?} names the runtime's own cgroup")
        };
        return Err(bad(what));
    }
    Ok(if raw.starts_with('/') {
        Inner::Absolute(clean)
    } else {
        Inner::Relative(clean)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_path() {
        let p = |s: Option<&str>| parse_cgroups_path(s, "ctr").map_err(|e| e.to_string());
        assert_eq!(p(None), Ok(Inner::Relative("ctr".into())));
        assert_eq!(p(Some("")), Ok(Inner::Relative("ctr".into())));
        assert_eq!(
            p(Some("/a//b/./c/../d")),
            Ok(Inner::Absolute("a/b/d".into()))
        );
        assert_eq!(p(Some("x/y")), Ok(Inner::Relative("x/y".into())));
        for bad in ["/", "/a/../..", "../x", ".", "system.slice:docker:abc"] {
            let e = p(Some(bad)).err().unwrap_or_default();
            assert!(e.contains("linux.cgroupsPath"), "{bad}: {e}");
        }
        let e = p(Some("system.slice:docker:abc")).err().unwrap_or_default();
        assert!(e.contains("systemd"), "{e}");
        assert!(parse_cgroups_path(None, "..").is_err());
    }
}
