//! cgroup v1 backend, for legacy and hybrid hosts.
//!
//! Owns the container's directory in each v1 hierarchy (every known
//! controller plus `name=systemd`) and, on hybrid hosts, in the cgroup2
//! hierarchy, which carries no v1 limits but may carry `hugetlb` when the
//! kernel offers it only there.
//!
//! Must never: write a setting that was not asked for, skip one that was
//! (a missing controller or file is an error naming the JSON field), or
//! rmdir anything outside the container's directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::statfs::{statfs, CGROUP_SUPER_MAGIC};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::devices::{parse_rules, set_devices};
use super::layout::{own_dir, rank, read_own_cgroups, Layout, UNIFIED_KEY};
use super::oom::OomWatch;
use super::shared::{self, Dirs};
use super::stats::{self, Stats};
use super::util::{
    all_pids, mkdir_all, read_file, read_u64, remove_cgroup, write_file, write_some,
};
use super::{CgroupMount, Entry, Inner, Manager};
use crate::error::{Error, Result};

/// The container's directory in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    /// `paths()` keys: the controllers ("cpu", "cpuacct"), "name=systemd",
    /// or "unified".
    keys: Vec<String>,
    /// The hybrid cgroup2 hierarchy.
    v2: bool,
    /// Where the hierarchy is mounted, when known.
    mountpoint: Option<PathBuf>,
    /// The container's cgroup directory.
    path: PathBuf,
}

impl Group {
    fn has(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k == key)
    }
}

/// Cgroups of one container on a v1 or hybrid host.
#[derive(Debug)]
pub struct V1Manager {
    /// In join order (cpuset first, unified last).
    groups: Vec<Group>,
    /// The groups with their hierarchies' mount points and the kernel's order of their
    /// keys: known when made by [`V1Manager::new`]; for a loaded manager, from the host's
    /// layout when first needed (mounts, a hugetlb limit on cgroup2), so that the commands
    /// that only read, signal or remove (state, kill, delete) never look for it.
    located: OnceLock<Vec<Group>>,
}

impl Dirs for V1Manager {
    fn need(&self, key: &str, field: &str) -> Result<&Path> {
        self.group(key).map(|g| g.path.as_path()).ok_or_else(|| {
            Error::msg(format!(
                "{field}: cannot apply: the {key} cgroup controller is not mounted on this host"
            ))
        })
    }
}

impl V1Manager {
    pub(crate) fn new(layout: &Layout, inner: &Inner) -> Result<V1Manager> {
        let own = match inner {
            Inner::Relative(_) => read_own_cgroups()?,
            Inner::Absolute(_) => Vec::new(),
        };
        let mut groups = Vec::new();
        for h in layout.joinable() {
            let path = match inner {
                Inner::Absolute(rel) => h.mountpoint.join(rel),
                Inner::Relative(rel) => own_dir(h, &own)?.join(rel),
            };
            groups.push(Group {
                keys: h.keys(),
                v2: h.v2,
                mountpoint: Some(h.mountpoint.clone()),
                path,
            });
        }
        if !groups.iter().any(|g| g.has("devices")) {
            return Err(Error::msg(
                "the devices cgroup controller is not mounted; refusing to run a container without device access control",
            ));
        }
        Ok(V1Manager {
            located: OnceLock::from(groups.clone()),
            groups,
        })
    }

    /// The manager of the cgroups at `paths` (as [`Manager::paths`] gave them); `layout`,
    /// when given, locates them now, else when first needed.
    pub(crate) fn load(layout: Option<&Layout>, paths: BTreeMap<String, PathBuf>) -> V1Manager {
        let mut by_path: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
        for (k, p) in paths {
            by_path.entry(p).or_default().push(k);
        }
        let mut groups: Vec<Group> = by_path
            .into_iter()
            .map(|(path, keys)| Group {
                v2: keys.iter().any(|k| k == UNIFIED_KEY),
                keys,
                mountpoint: None,
                path,
            })
            .collect();
        groups.sort_by_key(|g| g.keys.iter().map(|k| rank(k)).min().unwrap_or(usize::MAX));
        let located = match layout {
            Some(l) => OnceLock::from(locate(l, &groups)),
            None => OnceLock::new(),
        };
        V1Manager { groups, located }
    }

    /// [`V1Manager::located`], finding the host's layout on first use (without one, the
    /// groups stay unlocated: no mounts, no hugetlb on cgroup2).
    fn located(&self) -> &[Group] {
        self.located.get_or_init(|| match Layout::detect() {
            Ok(l) => locate(&l, &self.groups),
            Err(_) => self.groups.clone(),
        })
    }

    /// Makes the container's directory in every hierarchy (cpuset's with cpus and mems).
    fn make_dirs(&self) -> Result<()> {
        for g in &self.groups {
            if g.has("cpuset") {
                cpuset_prepare(&g.path)?;
            } else {
                mkdir_all(&g.path)?;
            }
        }
        Ok(())
    }

    fn group(&self, key: &str) -> Option<&Group> {
        self.groups.iter().find(|g| !g.v2 && g.has(key))
    }

    fn set_memory(&self, m: &LinuxMemory) -> Result<()> {
        const F: &str = "linux.resources.memory";
        let limit = m.limit().unwrap_or(0);
        let mut swap = m.swap().unwrap_or(0);
        let swappiness = m.swappiness().filter(|s| *s != u64::MAX);
        let wants = limit != 0
            || swap != 0
            || m.reservation().unwrap_or(0) != 0
            || swappiness.is_some()
            || m.disable_oom_killer().is_some();
        if !wants {
            return Ok(());
        }
        let dir = self.need("memory", F)?;
        if let Some(s) = swappiness {
            if s > 100 {
                return Err(Error::config(
                    "config.json",
                    format!("{F}.swappiness"),
                    format!("{s} is out of range (0-100)"),
                ));
            }
        }
        if limit > 0 && swap > 0 && swap < limit {
            return Err(Error::config(
                "config.json",
                format!("{F}.swap"),
                format!("memory+swap limit {swap} must not be lower than the memory limit {limit}"),
            ));
        }
        let memsw = dir.join("memory.memsw.limit_in_bytes").exists();
        // Unlimited memory with swap unset: lift the swap limit too (runc).
        if limit == -1 && swap == 0 && memsw {
            swap = -1;
        }
        if swap != 0 && !memsw {
            return Err(Error::msg(format!(
                "{F}.swap: cannot apply: {} has no memory.memsw.limit_in_bytes (swap accounting is disabled on this host)",
                dir.display()
            )));
        }
        // memory.memsw.limit_in_bytes may never be below memory.limit_in_bytes,
        // so raise swap first when it grows past the current memory limit.
        let swap_first = limit != 0
            && swap != 0
            && (swap == -1 || read_u64(dir, "memory.limit_in_bytes")? < swap as u64);
        if swap_first {
            set_swap(dir, swap)?;
            set_mem_limit(dir, limit)?;
        } else {
            set_mem_limit(dir, limit)?;
            set_swap(dir, swap)?;
        }
        let resv = m.reservation().filter(|r| *r != 0);
        let oom = m.disable_oom_killer().map(u8::from);
        let f = |name: &str| format!("{F}.{name}");
        write_some(dir, "memory.soft_limit_in_bytes", resv, &f("reservation"))?;
        write_some(dir, "memory.oom_control", oom, &f("disableOOMKiller"))?;
        write_some(dir, "memory.swappiness", swappiness, &f("swappiness"))?;
        // kernel / kernelTCP are ignored, as in runc 1.1 (deprecated in the
        // kernel); useHierarchy and checkBeforeUpdate are not v1 settings runc
        // writes either.
        Ok(())
    }

    fn set_cpu(&self, c: &LinuxCpu) -> Result<()> {
        const F: &str = "linux.resources.cpu";
        if !shared::wants_cpu(c) {
            return Ok(());
        }
        let shares = c.shares().filter(|v| *v != 0);
        let quota = c.quota().filter(|v| *v != 0);
        let period = c.period().filter(|v| *v != 0);
        let rt_period = c.realtime_period().filter(|v| *v != 0);
        let rt_runtime = c.realtime_runtime().filter(|v| *v != 0);
        let dir = self.need("cpu", F)?;
        if let Some(s) = shares {
            let field = "linux.resources.cpu.shares";
            write_file(dir, "cpu.shares", &s.to_string(), Some(field))?;
            let got = read_u64(dir, "cpu.shares")?;
            if s != got {
                let which = if s > got { "maximum" } else { "minimum" };
                return Err(Error::config(
                    "config.json",
                    field,
                    format!("{s} is out of range: the {which} allowed cpu shares is {got}"),
                ));
            }
        }
        // Changing the period can fail with EINVAL until the quota is set
        // (and the burst until the quota allows it): retry those after.
        let (period_file, period_field) = ("cpu.cfs_period_us", "linux.resources.cpu.period");
        let period_later =
            shared::write_or_later(dir, period_file, period, period_field, quota.is_some())?;
        // Like runc, a kernel without cpu.cfs_burst_us ignores burst.
        let burst = c.burst().filter(|_| dir.join("cpu.cfs_burst_us").exists());
        let (burst_file, burst_field) = ("cpu.cfs_burst_us", "linux.resources.cpu.burst");
        let burst_later =
            shared::write_or_later(dir, burst_file, burst, burst_field, quota.is_some())?;
        if let Some(q) = quota {
            write_file(
                dir,
                "cpu.cfs_quota_us",
                &q.to_string(),
                Some("linux.resources.cpu.quota"),
            )?;
            write_some(dir, period_file, period_later, period_field)?;
            write_some(dir, burst_file, burst_later, burst_field)?;
        }
        let f = |name: &str| format!("{F}.{name}");
        write_some(dir, "cpu.idle", c.idle(), &f("idle"))?;
        write_some(dir, "cpu.rt_period_us", rt_period, &f("realtimePeriod"))?;
        write_some(dir, "cpu.rt_runtime_us", rt_runtime, &f("realtimeRuntime"))?;
        Ok(())
    }

    fn set_blkio(&self, b: &LinuxBlockIo) -> Result<()> {
        const F: &str = "linux.resources.blockIO";
        let weight = b.weight().filter(|w| *w != 0);
        let leaf = b.leaf_weight().filter(|w| *w != 0);
        let wdev = b.weight_device().as_deref().unwrap_or(&[]);
        let throttles = shared::throttles(b);
        let any_throttle = throttles.iter().any(|(_, l)| !l.is_empty());
        if weight.is_none() && leaf.is_none() && wdev.is_empty() && !any_throttle {
            return Ok(());
        }
        let dir = self.need("blkio", F)?;
        // Weight files: CFQ's, else BFQ's.
        let pick = |cfq: &'static str, bfq: &'static str, field: &str| -> Result<&'static str> {
            if dir.join(cfq).exists() {
                Ok(cfq)
            } else if dir.join(bfq).exists() {
                Ok(bfq)
            } else {
                Err(Error::msg(format!(
                    "{field}: cannot apply: {} has neither {cfq} nor {bfq} (no proportional-weight I/O scheduler on this host)",
                    dir.display()
                )))
            }
        };
        let need_file = |file: &str, field: &str| -> Result<()> {
            if dir.join(file).exists() {
                Ok(())
            } else {
                Err(Error::msg(format!(
                    "{field}: cannot apply: {} has no {file} on this host",
                    dir.display()
                )))
            }
        };
        if let Some(w) = weight {
            let field = format!("{F}.weight");
            let file = pick("blkio.weight", "blkio.bfq.weight", &field)?;
            write_file(dir, file, &w.to_string(), Some(&field))?;
        }
        if let Some(w) = leaf {
            let field = format!("{F}.leafWeight");
            need_file("blkio.leaf_weight", &field)?;
            write_file(dir, "blkio.leaf_weight", &w.to_string(), Some(&field))?;
        }
        for (i, d) in wdev.iter().enumerate() {
            if let Some(w) = d.weight().filter(|w| *w != 0) {
                let field = format!("{F}.weightDevice[{i}].weight");
                let file = pick("blkio.weight_device", "blkio.bfq.weight_device", &field)?;
                let v = format!("{}:{} {w}", d.major(), d.minor());
                write_file(dir, file, &v, Some(&field))?;
            }
            if let Some(w) = d.leaf_weight().filter(|w| *w != 0) {
                let field = format!("{F}.weightDevice[{i}].leafWeight");
                need_file("blkio.leaf_weight_device", &field)?;
                let v = format!("{}:{} {w}", d.major(), d.minor());
                write_file(dir, "blkio.leaf_weight_device", &v, Some(&field))?;
            }
        }
        let files = [
            "blkio.throttle.read_bps_device",
            "blkio.throttle.write_bps_device",
            "blkio.throttle.read_iops_device",
            "blkio.throttle.write_iops_device",
        ];
        for ((name, list), file) in throttles.into_iter().zip(files) {
            for (i, t) in list.iter().enumerate() {
                let field = format!("{F}.{name}[{i}]");
                need_file(file, &field)?;
                let v = format!("{}:{} {}", t.major(), t.minor(), t.rate());
                write_file(dir, file, &v, Some(&field))?;
            }
        }
        Ok(())
    }

    fn set_hugetlb(&self, r: &LinuxResources) -> Result<()> {
        const F: &str = shared::HUGETLB;
        let limits = r.hugepage_limits().as_deref().unwrap_or(&[]);
        if limits.is_empty() {
            return Ok(());
        }
        // Check the sizes before anything is written (or enabled).
        for (i, l) in limits.iter().enumerate() {
            if !host_has_page_size(l.page_size()) {
                return Err(Error::config(
                    "config.json",
                    format!("{F}[{i}].pageSize"),
                    format!(
                        "unsupported huge page size {:?} (not in /sys/kernel/mm/hugepages)",
                        l.page_size()
                    ),
                ));
            }
        }
        // v1 hugetlb if mounted; else the hybrid cgroup2 hierarchy if its
        // root offers hugetlb (the kernel may have it only there).
        let (dir, v2) = if let Some(g) = self.group("hugetlb") {
            (g.path.as_path(), false)
        } else {
            let g = self
                .located()
                .iter()
                .find(|g| g.v2)
                .and_then(|g| g.mountpoint.as_deref().map(|m| (g, m)))
                .filter(|(_, m)| {
                    read_file(m, "cgroup.controllers")
                        .map(|c| c.split_whitespace().any(|c| c == "hugetlb"))
                        .unwrap_or(false)
                });
            let Some((g, mnt)) = g else {
                return Err(Error::msg(format!(
                    "{F}: cannot apply: no cgroup hierarchy on this host has the hugetlb controller"
                )));
            };
            enable_v2_controller(mnt, &g.path, "hugetlb", F)?;
            (g.path.as_path(), true)
        };
        shared::write_hugetlb(dir, limits, v2)
    }

    fn set_network(&self, r: &LinuxResources) -> Result<()> {
        const F: &str = "linux.resources.network";
        let Some(n) = r.network() else {
            return Ok(());
        };
        if let Some(id) = n.class_id() {
            let field = format!("{F}.classID");
            let dir = self.need("net_cls", &field)?;
            write_file(dir, "net_cls.classid", &id.to_string(), Some(&field))?;
        }
        for (i, p) in n.priorities().as_deref().unwrap_or(&[]).iter().enumerate() {
            let field = format!("{F}.priorities[{i}]");
            let dir = self.need("net_prio", &field)?;
            let v = format!("{} {}", p.name(), p.priority());
            write_file(dir, "net_prio.ifpriomap", &v, Some(&field))?;
        }
        Ok(())
    }

    fn freezer(&self, what: &str) -> Result<&Path> {
        self.group("freezer")
            .map(|g| g.path.as_path())
            .ok_or_else(|| {
                Error::msg(format!(
                    "cannot {what}: the freezer cgroup controller is not mounted on this host"
                ))
            })
    }
}

/// Whether the kernel supports huge pages of `size` ("2MB", "1GB", "64KB"),
/// as the hugetlb controller names them.
fn host_has_page_size(size: &str) -> bool {
    let Some(kb) = page_size_kb(size) else {
        return false;
    };
    Path::new(&format!("/sys/kernel/mm/hugepages/hugepages-{kb}kB")).is_dir()
}

fn page_size_kb(size: &str) -> Option<u64> {
    let (n, mult) = if let Some(n) = size.strip_suffix("KB") {
        (n, 1)
    } else if let Some(n) = size.strip_suffix("MB") {
        (n, 1 << 10)
    } else if let Some(n) = size.strip_suffix("GB") {
        (n, 1 << 20)
    } else {
        return None;
    };
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse::<u64>().ok()?.checked_mul(mult)
}

fn set_mem_limit(dir: &Path, limit: i64) -> Result<()> {
    const FIELD: &str = "linux.resources.memory.limit";
    if limit == 0 {
        return Ok(());
    }
    match write_file(
        dir,
        "memory.limit_in_bytes",
        &limit.to_string(),
        Some(FIELD),
    ) {
        Err(Error::Sys {
            errno: Errno::EBUSY,
            target,
            ..
        }) => {
            let usage = read_u64(dir, "memory.usage_in_bytes").unwrap_or(0);
            let peak = read_u64(dir, "memory.max_usage_in_bytes").unwrap_or(0);
            Err(Error::msg(format!(
                "write {target}: EBUSY: the limit is below the current usage {usage} (peak {peak})"
            )))
        }
        other => other,
    }
}

fn set_swap(dir: &Path, swap: i64) -> Result<()> {
    if swap == 0 {
        return Ok(());
    }
    write_file(
        dir,
        "memory.memsw.limit_in_bytes",
        &swap.to_string(),
        Some("linux.resources.memory.swap"),
    )
}

/// Enable `ctrl` in `cgroup.subtree_control` of every cgroup from the
/// cgroup2 root `mnt` down to the parent of `leaf`.
fn enable_v2_controller(mnt: &Path, leaf: &Path, ctrl: &str, field: &str) -> Result<()> {
    let Ok(rel) = leaf.strip_prefix(mnt) else {
        return Err(Error::msg(format!(
            "{field}: {} is not under the cgroup2 mount {}",
            leaf.display(),
            mnt.display()
        )));
    };
    let mut dir = mnt.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for (i, c) in comps.iter().enumerate() {
        let enabled = read_file(&dir, "cgroup.subtree_control")?
            .split_whitespace()
            .any(|c| c == ctrl);
        if !enabled {
            write_file(
                &dir,
                "cgroup.subtree_control",
                &format!("+{ctrl}"),
                Some(field),
            )?;
        }
        if i + 1 == comps.len() {
            break;
        }
        dir.push(c);
        mkdir_all(&dir)?;
    }
    Ok(())
}

/// `groups` with the mount points of their hierarchies in `layout`, and their keys in the
/// kernel's order ("cpu,cpuacct", as mounts name them).
fn locate(layout: &Layout, groups: &[Group]) -> Vec<Group> {
    groups
        .iter()
        .map(|g| {
            let mut g = g.clone();
            if let Some(h) = layout.containing(&g.path, g.v2) {
                let hk = h.keys();
                if hk.len() == g.keys.len() && g.keys.iter().all(|k| hk.contains(k)) {
                    g.keys = hk;
                }
                g.mountpoint = Some(h.mountpoint.clone());
            }
            g
        })
        .collect()
}

/// Make the cpuset cgroup `dir` (and any missing parent) with cpus and mems
/// copied from its parent when empty: a process cannot join a cpuset cgroup
/// whose cpus or mems are empty.
fn cpuset_prepare(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    match statfs(parent) {
        // `dir` is the hierarchy root.
        Ok(st) if st.filesystem_type() != CGROUP_SUPER_MAGIC => return Ok(()),
        Ok(_) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(Error::sys("statfs", parent.display(), e)),
    }
    cpuset_prepare(parent)?;
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(Error::sys(
                "mkdir",
                dir.display(),
                super::util::errno_of(&e),
            ))
        }
    }
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if read_file(dir, file)?.trim().is_empty() {
            let from_parent = read_file(parent, file)?;
            write_file(dir, file, from_parent.trim(), None)?;
        }
    }
    Ok(())
}

impl Manager for V1Manager {
    fn apply(&self, pid: i32) -> Result<()> {
        self.make_dirs()?;
        let pid = pid.to_string();
        for g in &self.groups {
            write_file(&g.path, "cgroup.procs", &pid, None)?;
        }
        Ok(())
    }

    fn entry(&self) -> Result<Option<Entry>> {
        self.make_dirs()?;
        let mut e = Entry::default();
        for g in &self.groups {
            if g.v2 {
                if !e.set_v2(&g.path)? {
                    return Ok(None);
                }
            } else {
                e.add_v1(&g.path)?;
            }
        }
        Ok(Some(e))
    }

    fn set(&self, r: &LinuxResources) -> Result<()> {
        // Checks that need no writes come first.
        if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(Error::config(
                "config.json",
                "linux.resources.unified",
                "invalid configuration: cannot be used with cgroup v1",
            ));
        }
        let rules = match r.devices() {
            Some(list) => Some(parse_rules(list)?),
            None => None,
        };
        // runc's order: cpuset, devices, memory, cpu, pids, blkio, hugetlb,
        // net_cls, net_prio, rdma.
        if let Some(c) = r.cpu() {
            shared::set_cpuset(self, c)?;
        }
        if let Some(rules) = rules {
            let dir = self.need("devices", "linux.resources.devices")?;
            set_devices(dir, &rules)?;
        }
        if let Some(m) = r.memory() {
            self.set_memory(m)?;
        }
        if let Some(c) = r.cpu() {
            self.set_cpu(c)?;
        }
        if let Some(p) = r.pids() {
            shared::set_pids(self, p)?;
        }
        if let Some(b) = r.block_io() {
            self.set_blkio(b)?;
        }
        self.set_hugetlb(r)?;
        self.set_network(r)?;
        shared::set_rdma(self, r)?;
        Ok(())
    }

    fn freeze(&self) -> Result<()> {
        let dir = self.freezer("freeze")?;
        let res = freeze_loop(dir);
        if res.is_err() {
            let _ = write_file(dir, "freezer.state", "THAWED", None);
        }
        res
    }

    fn thaw(&self) -> Result<()> {
        let dir = self.freezer("thaw")?;
        write_file(dir, "freezer.state", "THAWED", None)?;
        for _ in 0..1000 {
            match read_file(dir, "freezer.state")?.trim() {
                "THAWED" => return Ok(()),
                _ => sleep(Duration::from_millis(1)),
            }
        }
        Err(Error::msg(format!(
            "thaw {}: still not THAWED after 1s (is a parent cgroup frozen?)",
            dir.display()
        )))
    }

    fn state_frozen(&self) -> Result<bool> {
        let dir = self.freezer("read the freezer state")?;
        for _ in 0..1000 {
            match read_file(dir, "freezer.state")?.trim() {
                "THAWED" => return Ok(false),
                // Frozen itself, or only through an ancestor?
                "FROZEN" => return Ok(read_file(dir, "freezer.self_freezing")?.trim() == "1"),
                // Wait for a stable state.
                _ => sleep(Duration::from_millis(1)),
            }
        }
        Err(Error::msg(format!(
            "read {}/freezer.state: still FREEZING after 1s",
            dir.display()
        )))
    }

    fn pids(&self) -> Result<Vec<i32>> {
        let g = ["devices", "pids", "freezer"]
            .iter()
            .find_map(|k| self.group(k))
            .or_else(|| self.groups.first());
        match g {
            Some(g) => all_pids(&g.path),
            None => Ok(Vec::new()),
        }
    }

    fn destroy(&self) -> Result<()> {
        let mut first_err = None;
        for g in &self.groups {
            if let Err(e) = remove_cgroup(&g.path) {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn paths(&self) -> BTreeMap<String, PathBuf> {
        self.groups
            .iter()
            .flat_map(|g| g.keys.iter().map(|k| (k.clone(), g.path.clone())))
            .collect()
    }

    fn current(&self, like: &LinuxResources) -> Result<LinuxResources> {
        let mut out = LinuxResources::default();
        // A setting `like` has → its file's value in the controller's dir.
        let read_i64 = |key: &str, file: &str| -> Result<Option<i64>> {
            let Some(g) = self.group(key) else {
                return Ok(None);
            };
            let text = read_file(&g.path, file)?;
            match text.trim() {
                "max" => Ok(Some(-1)),
                t => t.parse().map(Some).map_err(|_| {
                    Error::msg(format!(
                        "parse {}: {t:?} is not a number",
                        g.path.join(file).display()
                    ))
                }),
            }
        };
        let read_str = |key: &str, file: &str| -> Result<Option<String>> {
            match self.group(key) {
                Some(g) => Ok(Some(read_file(&g.path, file)?.trim().to_string())),
                None => Ok(None),
            }
        };
        if let Some(m) = like.memory() {
            let mut cur = LinuxMemory::default();
            if m.limit().is_some() || m.swap().is_some() {
                // Both, so that writing them back keeps the pair in order.
                cur.set_limit(read_i64("memory", "memory.limit_in_bytes")?);
                if self
                    .group("memory")
                    .is_some_and(|g| g.path.join("memory.memsw.limit_in_bytes").exists())
                {
                    cur.set_swap(read_i64("memory", "memory.memsw.limit_in_bytes")?);
                }
            }
            if m.reservation().is_some() {
                cur.set_reservation(read_i64("memory", "memory.soft_limit_in_bytes")?);
            }
            out.set_memory(Some(cur));
        }
        if let Some(c) = like.cpu() {
            let mut cur = LinuxCpu::default();
            let u = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
            if c.shares().is_some() {
                cur.set_shares(u(read_i64("cpu", "cpu.shares")?));
            }
            if c.quota().is_some() || c.period().is_some() {
                cur.set_quota(read_i64("cpu", "cpu.cfs_quota_us")?);
                cur.set_period(u(read_i64("cpu", "cpu.cfs_period_us")?));
            }
            if c.realtime_period().is_some() || c.realtime_runtime().is_some() {
                cur.set_realtime_period(u(read_i64("cpu", "cpu.rt_period_us")?));
                cur.set_realtime_runtime(read_i64("cpu", "cpu.rt_runtime_us")?);
            }
            if c.cpus().is_some() {
                cur.set_cpus(read_str("cpuset", "cpuset.cpus")?);
            }
            if c.mems().is_some() {
                cur.set_mems(read_str("cpuset", "cpuset.mems")?);
            }
            out.set_cpu(Some(cur));
        }
        if like
            .block_io()
            .as_ref()
            .is_some_and(|b| b.weight().is_some())
        {
            if let Some(g) = self.group("blkio") {
                let file = ["blkio.weight", "blkio.bfq.weight"]
                    .into_iter()
                    .find(|f| g.path.join(f).exists());
                if let Some(file) = file {
                    // bfq.weight reads "default 100".
                    let text = read_file(&g.path, file)?;
                    let w = text
                        .split_whitespace()
                        .last()
                        .and_then(|w| w.parse::<u16>().ok());
                    let mut b = LinuxBlockIo::default();
                    b.set_weight(w);
                    out.set_block_io(Some(b));
                }
            }
        }
        if like.pids().is_some() {
            if let Some(limit) = read_i64("pids", "pids.max")? {
                let mut p = oci_spec::runtime::LinuxPids::default();
                p.set_limit(limit);
                out.set_pids(Some(p));
            }
        }
        Ok(out)
    }

    fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        let dir = |key: &str| self.group(key).map(|g| g.path.as_path());
        type Reader = fn(&Path, &mut Stats) -> Result<()>;
        let readers: [(&str, Reader); 6] = [
            ("cpuacct", |d, s| stats::read_cpuacct(d, &mut s.cpu)),
            ("cpu", |d, s| stats::read_cpu(d, &mut s.cpu)),
            ("cpuset", |d, s| stats::read_cpuset(d, &mut s.cpuset)),
            ("memory", |d, s| stats::read_memory(d, &mut s.memory)),
            ("pids", |d, s| stats::read_pids(d, &mut s.pids)),
            ("blkio", |d, s| stats::read_blkio(d, &mut s.blkio)),
        ];
        for (key, read) in readers {
            if let Some(d) = dir(key) {
                read(d, &mut s)?;
            }
        }
        match dir("hugetlb") {
            Some(d) => stats::read_hugetlb_v1(d, &mut s.hugetlb)?,
            None => {
                // Hybrid hosts may offer hugetlb only on cgroup2 (set_hugetlb
                // puts limits there too).
                if let Some(g) = self.groups.iter().find(|g| g.v2) {
                    stats::read_hugetlb_v2(&g.path, &mut s.hugetlb)?;
                }
            }
        }
        Ok(s)
    }

    fn watch_oom(&self) -> Result<OomWatch> {
        let dir = self
            .group("memory")
            .map(|g| g.path.as_path())
            .ok_or_else(|| {
                Error::msg(
                    "watch for OOM: the memory cgroup controller is not mounted on this host",
                )
            })?;
        OomWatch::new(dir)
    }

    fn mounts(&self) -> Vec<CgroupMount> {
        self.located()
            .iter()
            .filter_map(|g| {
                let name = g
                    .mountpoint
                    .as_ref()?
                    .file_name()?
                    .to_string_lossy()
                    .into_owned();
                let links = if name.contains(',') {
                    name.split(',').map(str::to_string).collect()
                } else {
                    Vec::new()
                };
                Some(CgroupMount {
                    name,
                    host_path: g.path.clone(),
                    fstype: if g.v2 { "cgroup2" } else { "cgroup" }.to_string(),
                    options: if g.v2 {
                        String::new()
                    } else {
                        g.keys.join(",")
                    },
                    links,
                })
            })
            .collect()
    }
}

/// runc's freezing loop: write FROZEN and read back until FROZEN; every 50
/// tries thaw briefly to let a process stuck in a vfork-style wait go on.
fn freeze_loop(dir: &Path) -> Result<()> {
    for i in 0..1000 {
        if i % 50 == 49 {
            let _ = write_file(dir, "freezer.state", "THAWED", None);
            sleep(Duration::from_millis(10));
        }
        write_file(dir, "freezer.state", "FROZEN", None)?;
        if i % 25 == 24 {
            sleep(Duration::from_micros(10));
        }
        match read_file(dir, "freezer.state")?.trim() {
            "FREEZING" => continue,
            "FROZEN" => return Ok(()),
            other => {
                return Err(Error::msg(format!(
                    "freeze {}: unexpected state {other}",
                    dir.display()
                )))
            }
        }
    }
    Err(Error::msg(format!(
        "freeze {}: still FREEZING after 1000 tries",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxPids};
    use std::process::{Child, Command};
    use std::sync::atomic::{AtomicUsize, Ordering};

    static N: AtomicUsize = AtomicUsize::new(0);

    fn root() -> bool {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: cgroup tests need root");
            return false;
        }
        let v1 = Layout::detect()
            .ok()
            .and_then(|l| l.mode().ok())
            .is_some_and(|m| m != super::super::layout::Mode::Unified);
        if !v1 {
            eprintln!("skipping: not a cgroup v1/hybrid host");
        }
        v1
    }

    fn unique() -> String {
        format!(
            "/brig-unit-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        )
    }

    /// Kills and reaps the child and removes the cgroups even when a check fails.
    struct Guard {
        child: Child,
        mgr: Box<dyn Manager>,
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.mgr.thaw();
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = self.mgr.destroy();
        }
    }

    fn start() -> Guard {
        let mgr = super::super::new(Some(&unique()), "x").expect("new manager");
        let child = Command::new("sleep")
            .arg("10")
            .spawn()
            .expect("spawn sleep");
        Guard { child, mgr }
    }

    fn proc_state(pid: u32) -> String {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("State:"))
            .unwrap_or_default()
            .to_string()
    }

    fn read(p: &Path, f: &str) -> String {
        std::fs::read_to_string(p.join(f))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size_kb("2MB"), Some(2048));
        assert_eq!(page_size_kb("1GB"), Some(1 << 20));
        assert_eq!(page_size_kb("64KB"), Some(64));
        assert_eq!(page_size_kb("2M"), None);
        assert_eq!(page_size_kb("MB"), None);
        assert_eq!(page_size_kb("-1MB"), None);
    }

    #[test]
    fn lifecycle() {
        if !root() {
            return;
        }
        let g = start();
        let pid = g.child.id() as i32;
        g.mgr.apply(pid).expect("apply");
        let paths = g.mgr.paths();
        for (k, p) in &paths {
            assert!(p.is_dir(), "{k}: {}", p.display());
            let procs = read(p, "cgroup.procs");
            assert!(procs.lines().any(|l| l == pid.to_string()), "{k}: {procs}");
        }

        let mut r = LinuxResources::default();
        let mut m = LinuxMemory::default();
        m.set_limit(Some(64 << 20));
        r.set_memory(Some(m));
        let mut p = LinuxPids::default();
        p.set_limit(10);
        r.set_pids(Some(p));
        let mut c = LinuxCpu::default();
        c.set_shares(Some(512));
        r.set_cpu(Some(c));
        r.set_devices(Some(super::super::device_rules(None, None)));
        g.mgr.set(&r).expect("set");
        assert_eq!(
            read(&paths["memory"], "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(read(&paths["pids"], "pids.max"), "10");
        assert_eq!(read(&paths["cpu"], "cpu.shares"), "512");
        let list = read(&paths["devices"], "devices.list");
        assert!(
            list.contains("c 1:3 rwm") && !list.contains("a *:* rwm"),
            "{list}"
        );
        // Setting the same again changes nothing and still verifies.
        g.mgr.set(&r).expect("set again");

        // What is in effect reads back as what was set; stats see it too.
        let cur = g.mgr.current(&r).expect("current");
        assert_eq!(
            cur.memory().as_ref().and_then(|m| m.limit()),
            Some(64 << 20)
        );
        assert_eq!(cur.pids().as_ref().map(|p| p.limit()), Some(10));
        assert_eq!(cur.cpu().as_ref().and_then(|c| c.shares()), Some(512));
        assert!(cur.block_io().is_none() && cur.devices().is_none());
        let st = g.mgr.stats().expect("stats");
        assert_eq!((st.pids.current, st.pids.limit), (1, 10));
        assert_eq!(st.memory.usage.limit, 64 << 20);
        let _oom = g.mgr.watch_oom().expect("watch oom");

        assert!(g.mgr.pids().expect("pids").contains(&pid));

        g.mgr.freeze().expect("freeze");
        assert!(g.mgr.state_frozen().expect("state"));
        assert_eq!(read(&paths["freezer"], "freezer.state"), "FROZEN");
        // Frozen tasks show as uninterruptible sleep.
        let st = proc_state(g.child.id());
        assert!(st.contains("D"), "{st}");
        g.mgr.thaw().expect("thaw");
        assert!(!g.mgr.state_frozen().expect("state"));

        // A loaded manager sees the same cgroups.
        let loaded = super::super::load(paths.clone());
        assert_eq!(loaded.paths(), paths);
        assert_eq!(loaded.mounts(), g.mgr.mounts());
        let mounts = g.mgr.mounts();
        assert!(mounts
            .iter()
            .any(|m| m.name == "memory" && m.options == "memory"));
        assert!(mounts.iter().all(|m| m.host_path.is_dir()));

        let mut g = g;
        let _ = g.child.kill();
        let _ = g.child.wait();
        let mgr = &g.mgr;
        // Children are removed first.
        std::fs::create_dir(paths["memory"].join("sub")).expect("child cgroup");
        mgr.destroy().expect("destroy");
        for p in paths.values() {
            assert!(!p.exists(), "{} still exists", p.display());
        }
        mgr.destroy().expect("destroy again is fine");
    }

    #[test]
    fn errors_name_fields() {
        if !root() {
            return;
        }
        let g = start();
        g.mgr.apply(g.child.id() as i32).expect("apply");
        let set_err = |r: &LinuxResources| {
            g.mgr
                .set(r)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let mut r = LinuxResources::default();
        let mut m = LinuxMemory::default();
        m.set_swappiness(Some(101));
        r.set_memory(Some(m));
        let e = set_err(&r);
        assert!(e.contains("linux.resources.memory.swappiness"), "{e}");

        let mut r = LinuxResources::default();
        let mut h = LinuxHugepageLimit::default();
        h.set_page_size("3MB".to_string());
        h.set_limit(1 << 30);
        r.set_hugepage_limits(Some(vec![h]));
        let e = set_err(&r);
        assert!(e.contains("linux.resources.hugepageLimits"), "{e}");

        let mut r = LinuxResources::default();
        let mut c = LinuxCpu::default();
        c.set_shares(Some(1 << 30));
        r.set_cpu(Some(c));
        let e = set_err(&r);
        assert!(e.contains("linux.resources.cpu.shares"), "{e}");
    }
}
