//! cgroup v2 backend, for hosts that mount only the unified hierarchy.
//!
//! Owns the container's one directory in the cgroup2 hierarchy: making it
//! (with the controllers it needs enabled in its ancestors'
//! `cgroup.subtree_control`, as runc does), the v2 limit files, the device
//! program (`bpf.rs`), `cgroup.freeze`, the statistics files, and the
//! `unified` passthrough of `linux.resources`.
//!
//! Settings are translated as runc 1.1 translates them: cpu shares to
//! `cpu.weight` (`1 + (shares - 2) * 9999 / 262142`), blkio weights to
//! `io.weight` (`1 + (weight - 10) * 9999 / 990`) unless BFQ's
//! `io.bfq.weight` exists, v1 memory+swap to `memory.swap.max` = swap -
//! memory, reservation to `memory.low`. `memory.high` and any other v2 file
//! are set through `unified`.
//!
//! Must never: write a setting that was not asked for (one exception:
//! `cpu.max` keeps the quota in effect when only the period is given), skip
//! one that was without an error or, for the v1-only knobs cgroup v2 has no
//! file for (swappiness, disableOOMKiller, leaf weights), a warning; rmdir
//! anything but the container's directory and its children.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::devices::{parse_rules, State};
use super::layout::{own_dir, read_own_cgroups, Layout};
use super::oom::OomWatch;
use super::shared::{self, Dirs};
use super::stats::{self, Stats};
use super::util::{all_pids, errno_of, read_file, remove_cgroup, write_file, write_some};
use super::{bpf, CgroupMount, Entry, Inner, Manager};
use crate::error::{Error, Result};
use crate::logging;

/// The [`Manager::paths`] key of the v2 directory (runc's state file uses
/// the empty key too).
pub(crate) const KEY: &str = "";

/// Controllers that only work in domain cgroups (not in threaded ones).
const DOMAIN_ONLY: &[&str] = &["memory", "io", "hugetlb", "rdma", "misc"];

/// Cgroup of one container on a cgroup v2 host.
#[derive(Debug)]
pub struct V2Manager {
    /// Where the cgroup2 hierarchy is mounted: known when made by [`V2Manager::new`]; for a
    /// loaded manager, found when first needed (only to make a missing directory).
    mountpoint: OnceLock<Option<PathBuf>>,
    /// The container's cgroup directory.
    path: PathBuf,
}

impl Dirs for V2Manager {
    fn need(&self, ctrl: &str, field: &str) -> Result<&Path> {
        if self.controllers().iter().any(|c| c == ctrl) {
            return Ok(&self.path);
        }
        let dir = self.path.display();
        let parent = self.path.parent().unwrap_or(Path::new("/"));
        let ty = read_file(&self.path, "cgroup.type").unwrap_or_default();
        let ty = ty.trim();
        let why = if DOMAIN_ONLY.contains(&ctrl) && ty.contains("threaded") {
            format!("{dir} is a threaded cgroup (cgroup.type {ty:?}) and {ctrl} works only in domain cgroups")
        } else if read_file(parent, "cgroup.controllers")
            .map(|c| c.split_whitespace().any(|c| c == ctrl))
            .unwrap_or(false)
        {
            let busy = read_file(parent, "cgroup.procs")
                .map(|p| !p.trim().is_empty())
                .unwrap_or(false);
            if busy {
                format!(
                    "{} has processes of its own, and cgroup v2 lets such a cgroup enable no controller for its children (no internal processes): move them to a leaf cgroup or use another linux.cgroupsPath",
                    parent.display()
                )
            } else {
                format!(
                    "{ctrl} is not in {}/cgroup.subtree_control and could not be enabled there",
                    parent.display()
                )
            }
        } else {
            format!(
                "{} does not have it (not delegated to this part of the hierarchy, or not in this kernel)",
                parent.display()
            )
        };
        Err(Error::msg(format!(
            "{field}: cannot apply: the {ctrl} controller is not enabled for {dir}: {why}"
        )))
    }
}

impl V2Manager {
    pub(crate) fn new(layout: &Layout, inner: &Inner) -> Result<V2Manager> {
        let h = layout
            .hierarchies
            .iter()
            .find(|h| h.v2)
            .ok_or_else(|| Error::msg("no cgroup2 hierarchy is mounted"))?;
        let path = match inner {
            Inner::Absolute(rel) => h.mountpoint.join(rel),
            Inner::Relative(rel) => own_dir(h, &read_own_cgroups()?)?.join(rel),
        };
        Ok(V2Manager {
            mountpoint: OnceLock::from(Some(h.mountpoint.clone())),
            path,
        })
    }

    /// The manager of the cgroup `path`; `layout`, when given, locates it now, else when
    /// first needed.
    pub(crate) fn load(layout: Option<&Layout>, path: PathBuf) -> V2Manager {
        let mountpoint = match layout {
            Some(l) => OnceLock::from(l.containing(&path, true).map(|h| h.mountpoint.clone())),
            None => OnceLock::new(),
        };
        V2Manager { mountpoint, path }
    }

    fn mountpoint(&self) -> Option<&PathBuf> {
        self.mountpoint
            .get_or_init(|| {
                let l = Layout::detect().ok()?;
                l.containing(&self.path, true).map(|h| h.mountpoint.clone())
            })
            .as_ref()
    }

    fn controllers(&self) -> Vec<String> {
        read_file(&self.path, "cgroup.controllers")
            .map(|t| t.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Make the directory and its missing parents, enabling every controller
    /// the parents have for their children (best effort, as runc: what
    /// cannot be enabled is reported by [`Self::need`] when a setting needs
    /// it).
    fn create(&self) -> Result<()> {
        let Some(mnt) = self.mountpoint() else {
            return Err(Error::msg(format!(
                "{}: not under a mounted cgroup2 hierarchy",
                self.path.display()
            )));
        };
        let rel = self.path.strip_prefix(mnt).map_err(|_| {
            Error::msg(format!(
                "{} is not under the cgroup2 mount {}",
                self.path.display(),
                mnt.display()
            ))
        })?;
        let mut dir = mnt.clone();
        for c in rel.components() {
            enable_controllers(&dir);
            dir.push(c);
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::sys("mkdir", dir.display(), errno_of(&e))),
            }
            let ty = read_file(&dir, "cgroup.type").unwrap_or_default();
            if ty.trim() == "domain invalid" {
                return Err(Error::msg(format!(
                    "cgroup {} is \"domain invalid\": it sits under a threaded cgroup, so no process can join it; put the container outside the threaded subtree",
                    dir.display()
                )));
            }
        }
        Ok(())
    }

    fn set_memory(&self, m: &LinuxMemory) -> Result<()> {
        const F: &str = "linux.resources.memory";
        let limit = m.limit().unwrap_or(0);
        let swap_in = m.swap().unwrap_or(0);
        let low = m.reservation().unwrap_or(0);
        if m.swappiness().is_some_and(|s| s != u64::MAX) {
            logging::warn(&format!(
                "{F}.swappiness is ignored: cgroup v2 has no per-cgroup swappiness"
            ));
        }
        if m.disable_oom_killer().is_some_and(|d| d) {
            logging::warn(&format!(
                "{F}.disableOOMKiller is ignored: cgroup v2 cannot disable the OOM killer"
            ));
        }
        if limit == 0 && swap_in == 0 && low == 0 {
            return Ok(());
        }
        let dir = self.need("memory", F)?;
        let swap = swap_v2(limit, swap_in)?;
        // memory and memory+swap equal: no swap at all.
        let swap_val = match swap {
            0 if swap_in > 0 => Some("0".to_string()),
            0 => None,
            -1 => Some("max".to_string()),
            v => Some(v.to_string()),
        };
        if let Some(v) = swap_val {
            match write_file(dir, "memory.swap.max", &v, Some(&format!("{F}.swap"))) {
                Ok(()) => {}
                // No swap accounting: "unlimited" or "none" need nothing.
                Err(_) if (v == "max" || v == "0") && !dir.join("memory.swap.max").exists() => {}
                Err(e) => return Err(e),
            }
        }
        let limit = (limit != 0).then(|| max_or(limit));
        write_some(dir, "memory.max", limit, &format!("{F}.limit"))?;
        let low = (low != 0).then(|| max_or(low));
        write_some(dir, "memory.low", low, &format!("{F}.reservation"))?;
        Ok(())
    }

    fn set_cpu(&self, c: &LinuxCpu) -> Result<()> {
        const F: &str = "linux.resources.cpu";
        if c.realtime_period().is_some_and(|v| v != 0)
            || c.realtime_runtime().is_some_and(|v| v != 0)
        {
            return Err(Error::config(
                "config.json",
                format!("{F}.realtimeRuntime"),
                "cannot apply: cgroup v2 has no realtime cpu scheduling limits",
            ));
        }
        if !shared::wants_cpu(c) {
            return Ok(());
        }
        let shares = c.shares().filter(|v| *v != 0);
        let quota = c.quota().filter(|v| *v != 0);
        let period = c.period().filter(|v| *v != 0);
        let dir = self.need("cpu", F)?;
        if let Some(s) = shares {
            let field = format!("{F}.shares");
            if !(2..=262_144).contains(&s) {
                return Err(Error::config(
                    "config.json",
                    &field,
                    format!("{s} is out of range (2-262144)"),
                ));
            }
            write_file(
                dir,
                "cpu.weight",
                &shares_to_weight(s).to_string(),
                Some(&field),
            )?;
        }
        write_some(dir, "cpu.idle", c.idle(), &format!("{F}.idle"))?;
        // A larger burst may be refused until the quota allows it.
        let burst = c.burst().filter(|_| dir.join("cpu.max.burst").exists());
        let burst_field = format!("{F}.burst");
        let burst_later =
            shared::write_or_later(dir, "cpu.max.burst", burst, &burst_field, quota.is_some())?;
        if quota.is_some() || period.is_some() {
            let (cur_quota, cur_period) = read_cpu_max(dir)?;
            let q = match quota {
                Some(q) if q > 0 => q.to_string(),
                Some(_) => "max".to_string(),
                None => cur_quota,
            };
            let p = period.unwrap_or(cur_period);
            write_file(
                dir,
                "cpu.max",
                &format!("{q} {p}"),
                Some(&format!("{F}.quota")),
            )?;
            write_some(dir, "cpu.max.burst", burst_later, &burst_field)?;
        }
        Ok(())
    }

    fn set_io(&self, b: &LinuxBlockIo) -> Result<()> {
        const F: &str = "linux.resources.blockIO";
        let weight = b.weight().filter(|w| *w != 0);
        if b.leaf_weight().is_some_and(|w| w != 0) {
            logging::warn(&format!(
                "{F}.leafWeight is ignored: cgroup v2 has no leaf weights"
            ));
        }
        let wdev = b.weight_device().as_deref().unwrap_or(&[]);
        let throttles = shared::throttles(b);
        let any_throttle = throttles.iter().any(|(_, l)| !l.is_empty());
        let any_wdev = wdev.iter().any(|d| d.weight().is_some_and(|w| w != 0));
        if weight.is_none() && !any_wdev && !any_throttle {
            return Ok(());
        }
        let dir = self.need("io", F)?;
        let bfq = dir.join("io.bfq.weight").exists();
        let weight_file = || -> Result<&'static str> {
            if bfq {
                Ok("io.bfq.weight")
            } else if dir.join("io.weight").exists() {
                Ok("io.weight")
            } else {
                Err(Error::msg(format!(
                    "{F}.weight: cannot apply: {} has neither io.bfq.weight nor io.weight (no proportional I/O control in this kernel)",
                    dir.display()
                )))
            }
        };
        let convert = |w: u16, field: &str| -> Result<u64> {
            if !(10..=1000).contains(&w) {
                return Err(Error::config(
                    "config.json",
                    field,
                    format!("{w} is out of range (10-1000)"),
                ));
            }
            Ok(if bfq {
                u64::from(w)
            } else {
                blkio_to_io_weight(w)
            })
        };
        if let Some(w) = weight {
            let field = format!("{F}.weight");
            let v = convert(w, &field)?;
            write_file(dir, weight_file()?, &v.to_string(), Some(&field))?;
        }
        for (i, d) in wdev.iter().enumerate() {
            if let Some(w) = d.weight().filter(|w| *w != 0) {
                let field = format!("{F}.weightDevice[{i}].weight");
                let v = convert(w, &field)?;
                let line = format!("{}:{} {v}", d.major(), d.minor());
                write_file(dir, weight_file()?, &line, Some(&field))?;
            }
        }
        for ((name, list), key) in throttles
            .into_iter()
            .zip(["rbps", "wbps", "riops", "wiops"])
        {
            for (i, t) in list.iter().enumerate() {
                let field = format!("{F}.{name}[{i}]");
                let rate = if t.rate() == 0 {
                    "max".to_string()
                } else {
                    t.rate().to_string()
                };
                let line = format!("{}:{} {key}={rate}", t.major(), t.minor());
                write_file(dir, "io.max", &line, Some(&field))?;
            }
        }
        Ok(())
    }

    /// `linux.resources.unified`, checked before anything is written.
    fn check_unified(&self, u: &BTreeMap<String, String>) -> Result<()> {
        const F: &str = "linux.resources.unified";
        let have = self.controllers();
        for k in u.keys() {
            let bad = |msg: String| Error::config("config.json", format!("{F}.{k}"), msg);
            if k.contains('/') || k == "." || k == ".." {
                return Err(bad("must be a file name (no slashes)".to_string()));
            }
            let Some((ctrl, param)) = k.split_once('.') else {
                return Err(bad(
                    "must be in the form CONTROLLER.PARAMETER (e.g. memory.high)".to_string(),
                ));
            };
            if ctrl.is_empty() || param.is_empty() {
                return Err(bad(
                    "must be in the form CONTROLLER.PARAMETER (e.g. memory.high)".to_string(),
                ));
            }
            if matches!(
                k.as_str(),
                "cgroup.procs" | "cgroup.threads" | "cgroup.subtree_control" | "cgroup.type"
            ) {
                return Err(bad(
                    "is managed by the runtime and cannot be set through unified".to_string(),
                ));
            }
            if ctrl != "cgroup" && !have.iter().any(|c| c == ctrl) {
                self.need(ctrl, &format!("{F}.{k}"))?;
            }
            if !self.path.join(k).exists() {
                return Err(bad(format!("{} has no such file", self.path.display())));
            }
        }
        Ok(())
    }

    fn freeze_state(&self) -> Result<bool> {
        let text = read_file(&self.path, "cgroup.events")?;
        Ok(text
            .lines()
            .any(|l| l.split_whitespace().eq(["frozen", "1"])))
    }

    /// Wait until `cgroup.events` says `frozen` is `want`.
    fn wait_frozen(&self, want: bool, timeout: Duration) -> Result<bool> {
        let end = Instant::now() + timeout;
        let mut delay = Duration::from_micros(100);
        loop {
            if self.freeze_state()? == want {
                return Ok(true);
            }
            if Instant::now() >= end {
                return Ok(false);
            }
            sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(10));
        }
    }
}

/// `value`, or "max" for -1.
fn max_or(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

/// runc's conversion of the v1 memory+swap limit to `memory.swap.max`:
/// 0 unset, -1 unlimited.
fn swap_v2(limit: i64, memsw: i64) -> Result<i64> {
    const F: &str = "linux.resources.memory.swap";
    let bad = |m: &str| Error::config("config.json", F, m.to_string());
    // Unlimited memory with swap unset: unlimited swap too.
    if limit == -1 && memsw == 0 {
        return Ok(-1);
    }
    if memsw == -1 || memsw == 0 {
        return Ok(memsw);
    }
    if limit == 0 || limit == -1 {
        return Err(bad("unable to set swap limit without memory limit"));
    }
    if limit < 0 {
        return Err(Error::config(
            "config.json",
            "linux.resources.memory.limit",
            format!("invalid memory value: {limit}"),
        ));
    }
    if memsw < limit {
        return Err(bad("memory+swap limit should be >= memory limit"));
    }
    Ok(memsw - limit)
}

/// runc 1.1's cpu shares (2-262144) → cpu.weight (1-10000).
fn shares_to_weight(shares: u64) -> u64 {
    1 + (shares - 2) * 9999 / 262_142
}

/// The smallest shares that [`shares_to_weight`] maps to `weight`.
fn weight_to_shares(weight: u64) -> u64 {
    2 + (weight.max(1) - 1).saturating_mul(262_142).div_ceil(9999)
}

/// runc's blkio weight (10-1000) → io.weight (1-10000).
fn blkio_to_io_weight(w: u16) -> u64 {
    1 + (u64::from(w) - 10) * 9999 / 990
}

/// The smallest blkio weight that [`blkio_to_io_weight`] maps to `w`.
fn io_weight_to_blkio(w: u64) -> u16 {
    let b = 10 + (w.max(1) - 1).saturating_mul(990).div_ceil(9999);
    u16::try_from(b).unwrap_or(1000)
}

/// `cpu.max` as (quota or "max", period).
fn read_cpu_max(dir: &Path) -> Result<(String, u64)> {
    let text = read_file(dir, "cpu.max")?;
    let mut it = text.split_whitespace();
    let q = it.next().unwrap_or("max").to_string();
    let p = it.next().and_then(|p| p.parse().ok()).unwrap_or(100_000);
    Ok((q, p))
}

/// Enable in `dir`'s `cgroup.subtree_control` every controller `dir` has
/// (all at once, else one by one); failures are left for [`V2Manager::need`]
/// to explain.
fn enable_controllers(dir: &Path) {
    let Ok(have) = read_file(dir, "cgroup.controllers") else {
        return;
    };
    let on = read_file(dir, "cgroup.subtree_control").unwrap_or_default();
    let missing: Vec<&str> = have
        .split_whitespace()
        .filter(|c| !on.split_whitespace().any(|o| o == *c))
        .collect();
    if missing.is_empty() {
        return;
    }
    let all: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
    if write_file(dir, "cgroup.subtree_control", &all.join(" "), None).is_err() {
        for c in all {
            let _ = write_file(dir, "cgroup.subtree_control", &c, None);
        }
    }
}

/// Enables, in every ancestor of `dir` in its cgroup2 hierarchy (top down), every controller
/// that ancestor has, as the directories [`V2Manager`] makes get them: for a cgroup another
/// made (a systemd scope), as runc's systemd driver does after systemd made it. Failures are
/// left for [`V2Manager::need`] to explain.
pub(crate) fn enable_ancestor_controllers(dir: &Path) {
    let mut chain: Vec<&Path> = dir
        .ancestors()
        .skip(1)
        .take_while(|d| d.join("cgroup.controllers").exists())
        .collect();
    chain.reverse();
    for d in chain {
        enable_controllers(d);
    }
}

impl Manager for V2Manager {
    fn entry(&self) -> Result<Option<Entry>> {
        if !self.path.is_dir() {
            self.create()?;
        }
        let mut e = Entry::default();
        e.set_v2(&self.path)?;
        Ok(Some(e))
    }

    fn apply(&self, pid: i32) -> Result<()> {
        // An exec joins the existing directory.
        if !self.path.is_dir() {
            self.create()?;
        }
        match write_file(&self.path, "cgroup.procs", &pid.to_string(), None) {
            Ok(()) => Ok(()),
            Err(Error::Sys {
                errno: Errno::EBUSY,
                target,
                ..
            }) => Err(Error::msg(format!(
                "write {target}: EBUSY: {} has controllers enabled for its children (cgroup.subtree_control), and cgroup v2 allows processes only in leaf cgroups",
                self.path.display()
            ))),
            Err(Error::Sys {
                errno: Errno::EOPNOTSUPP,
                target,
                ..
            }) => {
                let ty = read_file(&self.path, "cgroup.type").unwrap_or_default();
                Err(Error::msg(format!(
                    "write {target}: EOPNOTSUPP: {} is a {:?} cgroup; a process can join only a domain cgroup or the threaded subtree it is already in",
                    self.path.display(),
                    ty.trim()
                )))
            }
            Err(e) => Err(e),
        }
    }

    fn set(&self, r: &LinuxResources) -> Result<()> {
        // Checks that need no writes come first.
        let unified: BTreeMap<String, String> = r
            .unified()
            .as_ref()
            .map(|u| u.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        self.check_unified(&unified)?;
        let rules = match r.devices() {
            Some(list) => Some(parse_rules(list)?),
            None => None,
        };
        if let Some(n) = r.network() {
            if n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
                return Err(Error::config(
                    "config.json",
                    "linux.resources.network",
                    "cannot apply: net_cls and net_prio are cgroup v1 controllers, absent on cgroup v2",
                ));
            }
        }
        // runc's order: pids, memory, io, cpu, devices, cpuset, hugetlb,
        // rdma, unified.
        if let Some(p) = r.pids() {
            shared::set_pids(self, p)?;
        }
        if let Some(m) = r.memory() {
            self.set_memory(m)?;
        }
        if let Some(b) = r.block_io() {
            self.set_io(b)?;
        }
        if let Some(c) = r.cpu() {
            self.set_cpu(c)?;
        }
        if let Some(rules) = rules {
            bpf::set_devices(&self.path, &State::from_rules(&rules))?;
        }
        if let Some(c) = r.cpu() {
            shared::set_cpuset(self, c)?;
        }
        if let Some(l) = r.hugepage_limits().as_deref().filter(|l| !l.is_empty()) {
            shared::write_hugetlb(self.need("hugetlb", shared::HUGETLB)?, l, true)?;
        }
        shared::set_rdma(self, r)?;
        for (k, v) in &unified {
            let field = format!("linux.resources.unified.{k}");
            write_file(&self.path, k, v, Some(&field))?;
        }
        Ok(())
    }

    fn freeze(&self) -> Result<()> {
        write_file(&self.path, "cgroup.freeze", "1", None)?;
        if self.wait_frozen(true, Duration::from_secs(10))? {
            return Ok(());
        }
        let _ = write_file(&self.path, "cgroup.freeze", "0", None);
        Err(Error::msg(format!(
            "freeze {}: cgroup.events still says frozen 0 after 10s",
            self.path.display()
        )))
    }

    fn thaw(&self) -> Result<()> {
        write_file(&self.path, "cgroup.freeze", "0", None)?;
        if self.wait_frozen(false, Duration::from_secs(1))? {
            return Ok(());
        }
        Err(Error::msg(format!(
            "thaw {}: still frozen after 1s (is a parent cgroup frozen?)",
            self.path.display()
        )))
    }

    fn state_frozen(&self) -> Result<bool> {
        match read_file(&self.path, "cgroup.freeze") {
            Ok(t) => Ok(t.trim() == "1"),
            Err(Error::Sys {
                errno: Errno::ENOENT,
                ..
            }) if !self.path.exists() => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn pids(&self) -> Result<Vec<i32>> {
        all_pids(&self.path)
    }

    fn destroy(&self) -> Result<()> {
        remove_cgroup(&self.path)
    }

    fn paths(&self) -> BTreeMap<String, PathBuf> {
        BTreeMap::from([(KEY.to_string(), self.path.clone())])
    }

    fn mounts(&self) -> Vec<CgroupMount> {
        vec![CgroupMount {
            name: String::new(),
            host_path: self.path.clone(),
            fstype: "cgroup2".to_string(),
            options: String::new(),
            links: Vec::new(),
        }]
    }

    fn current(&self, like: &LinuxResources) -> Result<LinuxResources> {
        let mut out = LinuxResources::default();
        let has = |c: &str| self.controllers().iter().any(|x| x == c);
        let read_i64 = |file: &str| -> Result<i64> {
            let t = read_file(&self.path, file)?;
            match t.trim() {
                "max" => Ok(-1),
                s => s.parse().map_err(|_| {
                    Error::msg(format!(
                        "parse {}: {s:?} is not a number",
                        self.path.join(file).display()
                    ))
                }),
            }
        };
        if let Some(m) = like.memory().as_ref().filter(|_| has("memory")) {
            let mut cur = LinuxMemory::default();
            if m.limit().is_some() || m.swap().is_some() {
                let limit = read_i64("memory.max")?;
                cur.set_limit(Some(limit));
                if self.path.join("memory.swap.max").exists() {
                    // Back to v1's memory+swap.
                    let swap = read_i64("memory.swap.max")?;
                    cur.set_swap(Some(if swap < 0 || limit < 0 {
                        -1
                    } else {
                        limit + swap
                    }));
                }
            }
            if m.reservation().is_some() {
                cur.set_reservation(Some(read_i64("memory.low")?));
            }
            out.set_memory(Some(cur));
        }
        if let Some(c) = like.cpu() {
            let mut cur = LinuxCpu::default();
            if c.shares().is_some() && has("cpu") {
                let w = read_i64("cpu.weight")?.max(1) as u64;
                cur.set_shares(Some(weight_to_shares(w)));
            }
            if (c.quota().is_some() || c.period().is_some()) && has("cpu") {
                let (q, p) = read_cpu_max(&self.path)?;
                cur.set_quota(Some(q.parse().unwrap_or(-1)));
                cur.set_period(Some(p));
            }
            if c.cpus().is_some() && has("cpuset") {
                cur.set_cpus(Some(
                    read_file(&self.path, "cpuset.cpus")?.trim().to_string(),
                ));
            }
            if c.mems().is_some() && has("cpuset") {
                cur.set_mems(Some(
                    read_file(&self.path, "cpuset.mems")?.trim().to_string(),
                ));
            }
            out.set_cpu(Some(cur));
        }
        if like
            .block_io()
            .as_ref()
            .is_some_and(|b| b.weight().is_some())
            && has("io")
        {
            let bfq = self.path.join("io.bfq.weight").exists();
            let file = if bfq { "io.bfq.weight" } else { "io.weight" };
            if self.path.join(file).exists() {
                // "default 100" then per-device lines.
                let text = read_file(&self.path, file)?;
                let w = text
                    .lines()
                    .find_map(|l| l.strip_prefix("default "))
                    .or_else(|| text.lines().next())
                    .and_then(|w| w.trim().parse::<u64>().ok());
                let mut b = LinuxBlockIo::default();
                b.set_weight(w.map(|w| {
                    if bfq {
                        u16::try_from(w).unwrap_or(1000)
                    } else {
                        io_weight_to_blkio(w)
                    }
                }));
                out.set_block_io(Some(b));
            }
        }
        if like.pids().is_some() && has("pids") {
            let mut p = oci_spec::runtime::LinuxPids::default();
            p.set_limit(read_i64("pids.max")?);
            out.set_pids(Some(p));
        }
        Ok(out)
    }

    fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        let d = &self.path;
        stats::read_cpu_v2(d, &mut s.cpu)?;
        stats::read_memory_v2(d, &mut s.memory)?;
        if d.join("pids.current").exists() {
            stats::read_pids(d, &mut s.pids)?;
        }
        stats::read_io_v2(d, &mut s.blkio)?;
        stats::read_hugetlb_v2(d, &mut s.hugetlb)?;
        Ok(s)
    }

    fn watch_oom(&self) -> Result<OomWatch> {
        OomWatch::new_v2(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        for s in [2u64, 3, 512, 1024, 100_000, 262_144] {
            let w = shares_to_weight(s);
            assert_eq!(shares_to_weight(weight_to_shares(w)), w, "{s}");
        }
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(500), 4950);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
        for b in [10u16, 11, 300, 500, 1000] {
            let w = blkio_to_io_weight(b);
            assert_eq!(blkio_to_io_weight(io_weight_to_blkio(w)), w, "{b}");
        }
    }

    #[test]
    fn swap_arithmetic() {
        assert_eq!(swap_v2(-1, 0).ok(), Some(-1));
        assert_eq!(swap_v2(100, 0).ok(), Some(0));
        assert_eq!(swap_v2(100, -1).ok(), Some(-1));
        assert_eq!(swap_v2(100, 300).ok(), Some(200));
        assert_eq!(swap_v2(100, 100).ok(), Some(0));
        for (m, s) in [(0, 100), (-1, 100), (200, 100)] {
            let e = swap_v2(m, s)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("linux.resources.memory.swap"), "{m} {s}: {e}");
        }
    }
}
