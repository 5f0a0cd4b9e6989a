//! Resource usage of a container, read from its cgroup files.
//!
//! Owns the [`Stats`] document and the parsers of the v1 statistics files
//! (`cpuacct.*`, `cpu.stat`, `cpuset.*`, `memory.*`, `pids.*`, `blkio.*`,
//! `hugetlb.*`) and of their v2 counterparts (`cpu.stat`, `memory.*`,
//! `io.stat`, `pids.*`, `hugetlb.*`), mapped to the same fields as runc. [`Stats`] serializes exactly as the `data` of runc's
//! `events` stream (runc's `types/events.go`: field names, and Go's
//! `omitempty`, which drops zero numbers and empty lists but never a
//! nested object), because tools parse that JSON.
//!
//! Must never: write to a cgroup. A missing controller or an optional
//! file the kernel lacks yields zero values (as runc); a malformed file is
//! an error naming it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::util::read_file;
use crate::error::{Error, Result};

fn zero(v: &u64) -> bool {
    *v == 0
}

fn empty<T>(v: &[T]) -> bool {
    v.is_empty()
}

/// One stats snapshot: the `data` of a `{"type":"stats"}` event.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub cpuset: CpuSet,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    /// Page size ("2MB") → usage. Always present, `{}` when none.
    pub hugetlb: BTreeMap<String, Hugetlb>,
    /// Intel RDT is not supported: always `{}`.
    pub intel_rdt: IntelRdt,
    /// Interfaces of runc's (unused) veth networks: always `null`.
    pub network_interfaces: Option<Vec<()>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// CPU time in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "empty")]
    pub percpu: Vec<u64>,
    #[serde(skip_serializing_if = "empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(skip_serializing_if = "empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Throttling {
    #[serde(skip_serializing_if = "zero")]
    pub periods: u64,
    #[serde(rename = "throttledPeriods", skip_serializing_if = "zero")]
    pub throttled_periods: u64,
    #[serde(rename = "throttledTime", skip_serializing_if = "zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CpuSet {
    #[serde(skip_serializing_if = "empty")]
    pub cpus: Vec<u16>,
    pub cpu_exclusive: u64,
    #[serde(skip_serializing_if = "empty")]
    pub mems: Vec<u16>,
    pub mem_hardwall: u64,
    pub mem_exclusive: u64,
    pub memory_migrate: u64,
    pub memory_spread_page: u64,
    pub memory_spread_slab: u64,
    pub memory_pressure: u64,
    pub sched_load_balance: u64,
    pub sched_relax_domain_level: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Memory {
    #[serde(skip_serializing_if = "zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// memory.stat as is.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Pids {
    #[serde(skip_serializing_if = "zero")]
    pub current: u64,
    /// 0 when unlimited.
    #[serde(skip_serializing_if = "zero")]
    pub limit: u64,
}

/// One line of a blkio statistics file: `MAJ:MIN [Op] VALUE`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "zero")]
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "zero")]
    pub value: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    #[serde(skip_serializing_if = "empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioQueueRecursive", skip_serializing_if = "empty")]
    pub io_queued_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "empty")]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "empty")]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "empty")]
    pub io_merged_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "empty")]
    pub io_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "empty")]
    pub sectors_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IntelRdt {}

/// The kernel's USER_HZ, the unit of `cpuacct.stat` (fixed at 100 on Linux,
/// whatever CONFIG_HZ is).
const USER_HZ: u64 = 100;

fn bad(dir: &Path, file: &str, what: impl std::fmt::Display) -> Error {
    Error::msg(format!("parse {}: {what}", dir.join(file).display()))
}

/// `dir/file`, or `None` when the kernel does not have it.
fn read_opt(dir: &Path, file: &str) -> Result<Option<String>> {
    if !dir.join(file).exists() {
        return Ok(None);
    }
    read_file(dir, file).map(Some)
}

/// A number as cgroup files hold it: "max" is `u64::MAX` and a negative
/// value (an unlimited `-1`) is 0, as runc reads them.
fn parse_num(dir: &Path, file: &str, s: &str) -> Result<u64> {
    let s = s.trim();
    if s == "max" {
        return Ok(u64::MAX);
    }
    if let Ok(v) = s.parse::<u64>() {
        return Ok(v);
    }
    match s.parse::<i128>() {
        Ok(v) if v < 0 => Ok(0),
        _ => Err(bad(dir, file, format!("{s:?} is not a number"))),
    }
}

fn num(dir: &Path, file: &str) -> Result<u64> {
    parse_num(dir, file, &read_file(dir, file)?)
}

fn num_opt(dir: &Path, file: &str) -> Result<u64> {
    match read_opt(dir, file)? {
        Some(s) => parse_num(dir, file, &s),
        None => Ok(0),
    }
}

/// The `key value` lines of `dir/file` (memory.stat, cpu.stat, *.events),
/// or `None` when the kernel does not have the file.
fn key_values(dir: &Path, file: &str) -> Result<Option<Vec<(String, u64)>>> {
    let Some(text) = read_opt(dir, file)? else {
        return Ok(None);
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split_whitespace();
            match (it.next(), it.next(), it.next()) {
                (Some(k), Some(v), None) => Ok((k.to_string(), parse_num(dir, file, v)?)),
                _ => Err(bad(dir, file, format!("malformed line {l:?}"))),
            }
        })
        .collect::<Result<_>>()
        .map(Some)
}

/// The count of the `max` line of an events file (`memory.events`,
/// `hugetlb.<size>.events`): how often the limit was hit; 0 when missing.
fn max_events(dir: &Path, file: &str) -> Result<u64> {
    Ok(key_values(dir, file)?
        .into_iter()
        .flatten()
        .find(|(k, _)| k == "max")
        .map_or(0, |(_, v)| v))
}

/// `memory.stat` as `m.raw`, with `m.cache` from its `cache` line (v1) or
/// `file` line (v2); false when the kernel has no `memory.stat`.
fn read_memory_stat(dir: &Path, m: &mut Memory, cache: &str) -> Result<bool> {
    let Some(kv) = key_values(dir, "memory.stat")? else {
        return Ok(false);
    };
    m.raw = kv.into_iter().collect();
    m.cache = m.raw.get(cache).copied().unwrap_or(0);
    Ok(true)
}

/// cpuacct: total, per-cpu and user/system time.
pub(crate) fn read_cpuacct(dir: &Path, cpu: &mut Cpu) -> Result<()> {
    let u = &mut cpu.usage;
    let file = "cpuacct.stat";
    let text = read_file(dir, file)?;
    let f: Vec<&str> = text.split_whitespace().collect();
    if f.len() < 4 || f[0] != "user" || f[2] != "system" {
        return Err(bad(dir, file, format!("unexpected content {text:?}")));
    }
    let ticks = |s: &str| -> Result<u64> {
        let t = parse_num(dir, file, s)?;
        Ok(t.saturating_mul(1_000_000_000) / USER_HZ)
    };
    u.user = ticks(f[1])?;
    u.kernel = ticks(f[3])?;
    u.total = num(dir, "cpuacct.usage")?;
    let file = "cpuacct.usage_percpu";
    u.percpu = read_file(dir, file)?
        .split_whitespace()
        .map(|v| parse_num(dir, file, v))
        .collect::<Result<_>>()?;
    // "cpu user system" header, then one row per cpu.
    let file = "cpuacct.usage_all";
    if let Some(text) = read_opt(dir, file)? {
        for l in text.lines().skip(1) {
            let cols: Vec<&str> = l.split(' ').collect();
            if cols.len() != 3 {
                continue;
            }
            u.percpu_user.push(parse_num(dir, file, cols[1])?);
            u.percpu_kernel.push(parse_num(dir, file, cols[2])?);
        }
    }
    Ok(())
}

/// cpu: CFS throttling counters.
pub(crate) fn read_cpu(dir: &Path, cpu: &mut Cpu) -> Result<()> {
    for (k, v) in key_values(dir, "cpu.stat")?.into_iter().flatten() {
        match k.as_str() {
            "nr_periods" => cpu.throttling.periods = v,
            "nr_throttled" => cpu.throttling.throttled_periods = v,
            "throttled_time" => cpu.throttling.throttled_time = v,
            _ => {}
        }
    }
    Ok(())
}

/// A cpu or memory-node list ("0-3,5") expanded.
fn parse_list(dir: &Path, file: &str, text: &str) -> Result<Vec<u16>> {
    let text = text.trim();
    let mut out = Vec::new();
    if text.is_empty() {
        return Ok(out);
    }
    let n = |s: &str| -> Result<u16> {
        s.parse::<u16>().map_err(|_| {
            bad(
                dir,
                file,
                format!("{s:?} in {text:?} is not a cpu or node number"),
            )
        })
    };
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (n(a)?, n(b)?);
                if a > b {
                    return Err(bad(dir, file, format!("range {part:?} is reversed")));
                }
                out.extend(a..=b);
            }
            None => out.push(n(part)?),
        }
    }
    Ok(out)
}

pub(crate) fn read_cpuset(dir: &Path, s: &mut CpuSet) -> Result<()> {
    if let Some(t) = read_opt(dir, "cpuset.cpus")? {
        s.cpus = parse_list(dir, "cpuset.cpus", &t)?;
    }
    if let Some(t) = read_opt(dir, "cpuset.mems")? {
        s.mems = parse_list(dir, "cpuset.mems", &t)?;
    }
    s.cpu_exclusive = num_opt(dir, "cpuset.cpu_exclusive")?;
    s.mem_hardwall = num_opt(dir, "cpuset.mem_hardwall")?;
    s.mem_exclusive = num_opt(dir, "cpuset.mem_exclusive")?;
    s.memory_migrate = num_opt(dir, "cpuset.memory_migrate")?;
    s.memory_spread_page = num_opt(dir, "cpuset.memory_spread_page")?;
    s.memory_spread_slab = num_opt(dir, "cpuset.memory_spread_slab")?;
    s.memory_pressure = num_opt(dir, "cpuset.memory_pressure")?;
    s.sched_load_balance = num_opt(dir, "cpuset.sched_load_balance")?;
    let file = "cpuset.sched_relax_domain_level";
    if let Some(t) = read_opt(dir, file)? {
        s.sched_relax_domain_level = t
            .trim()
            .parse()
            .map_err(|_| bad(dir, file, format!("{:?} is not a number", t.trim())))?;
    }
    Ok(())
}

/// `memory[.<kind>].{usage,max_usage,failcnt,limit}_in_bytes`; all zero when
/// the kernel has no such counter (swap, kmem are optional).
fn memory_entry(dir: &Path, kind: &str) -> Result<MemoryEntry> {
    let prefix = if kind.is_empty() {
        "memory".to_string()
    } else {
        format!("memory.{kind}")
    };
    let usage = format!("{prefix}.usage_in_bytes");
    if !kind.is_empty() && !dir.join(&usage).exists() {
        return Ok(MemoryEntry::default());
    }
    Ok(MemoryEntry {
        usage: num(dir, &usage)?,
        max: num(dir, &format!("{prefix}.max_usage_in_bytes"))?,
        failcnt: num(dir, &format!("{prefix}.failcnt"))?,
        limit: num(dir, &format!("{prefix}.limit_in_bytes"))?,
    })
}

pub(crate) fn read_memory(dir: &Path, m: &mut Memory) -> Result<()> {
    if !read_memory_stat(dir, m, "cache")? {
        return Ok(());
    }
    m.usage = memory_entry(dir, "")?;
    m.swap = memory_entry(dir, "memsw")?;
    m.kernel = memory_entry(dir, "kmem")?;
    m.kernel_tcp = memory_entry(dir, "kmem.tcp")?;
    Ok(())
}

pub(crate) fn read_pids(dir: &Path, p: &mut Pids) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    p.current = num(dir, "pids.current")?;
    p.limit = match num(dir, "pids.max")? {
        u64::MAX => 0,
        v => v,
    };
    Ok(())
}

/// A blkio statistics file; empty when missing or holding only "Total".
fn blkio_file(dir: &Path, file: &str) -> Result<Vec<BlkioEntry>> {
    let Some(text) = read_opt(dir, file)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = l.split([' ', ':']).filter(|s| !s.is_empty()).collect();
        if f.len() == 2 && f[0] == "Total" {
            continue;
        }
        if f.len() < 3 {
            return Err(bad(dir, file, format!("malformed line {l:?}")));
        }
        let (op, value) = if f.len() == 4 {
            (f[2].to_string(), f[3])
        } else {
            (String::new(), f[2])
        };
        out.push(BlkioEntry {
            major: parse_num(dir, file, f[0])?,
            minor: parse_num(dir, file, f[1])?,
            op,
            value: parse_num(dir, file, value)?,
        });
    }
    Ok(out)
}

/// blkio: the first family of files the kernel fills (BFQ debug, BFQ, CFQ,
/// recursive throttle, throttle), runc's order.
pub(crate) fn read_blkio(dir: &Path, b: &mut Blkio) -> Result<()> {
    type Slot = fn(&mut Blkio) -> &mut Vec<BlkioEntry>;
    let bytes: Slot = |b| &mut b.io_service_bytes_recursive;
    let serviced: Slot = |b| &mut b.io_serviced_recursive;
    let queued: Slot = |b| &mut b.io_queued_recursive;
    let time: Slot = |b| &mut b.io_time_recursive;
    let svc_time: Slot = |b| &mut b.io_service_time_recursive;
    let wait: Slot = |b| &mut b.io_wait_time_recursive;
    let merged: Slot = |b| &mut b.io_merged_recursive;
    let sectors: Slot = |b| &mut b.sectors_recursive;
    let full = |p: &str| -> Vec<(String, Slot)> {
        vec![
            (format!("blkio.{p}sectors_recursive"), sectors),
            (format!("blkio.{p}io_service_time_recursive"), svc_time),
            (format!("blkio.{p}io_wait_time_recursive"), wait),
            (format!("blkio.{p}io_merged_recursive"), merged),
            (format!("blkio.{p}io_queued_recursive"), queued),
            (format!("blkio.{p}time_recursive"), time),
            (format!("blkio.{p}io_serviced_recursive"), serviced),
            (format!("blkio.{p}io_service_bytes_recursive"), bytes),
        ]
    };
    let two = |serv: &str, byt: &str| -> Vec<(String, Slot)> {
        vec![
            (format!("blkio.{serv}"), serviced),
            (format!("blkio.{byt}"), bytes),
        ]
    };
    let families = [
        full("bfq."),
        two(
            "bfq.io_serviced_recursive",
            "bfq.io_service_bytes_recursive",
        ),
        full(""),
        two(
            "throttle.io_serviced_recursive",
            "throttle.io_service_bytes_recursive",
        ),
        two("throttle.io_serviced", "throttle.io_service_bytes"),
    ];
    'family: for family in families {
        let last = family.len() - 1;
        for (i, (file, slot)) in family.iter().enumerate() {
            let entries = match blkio_file(dir, file) {
                // Nothing in the family's first file: try the next family.
                Err(_) if i == 0 => continue 'family,
                Ok(v) if v.is_empty() && i == 0 => continue 'family,
                Err(e) => return Err(e),
                // A family that stops filling part way ends the search.
                Ok(v) if v.is_empty() => return Ok(()),
                Ok(v) => v,
            };
            *slot(b) = entries;
            if i == last {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Page sizes the kernel offers, as cgroup files name them ("2MB", "1GB").
pub(crate) fn huge_page_sizes() -> Vec<String> {
    let Ok(rd) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut sizes: Vec<u64> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()
        })
        .collect();
    sizes.sort_unstable();
    sizes.into_iter().map(page_size_name).collect()
}

fn page_size_name(kb: u64) -> String {
    if kb != 0 && kb.trailing_zeros() >= 20 {
        format!("{}GB", kb >> 20)
    } else if kb != 0 && kb.trailing_zeros() >= 10 {
        format!("{}MB", kb >> 10)
    } else {
        format!("{kb}KB")
    }
}

/// hugetlb in a v1 hierarchy.
pub(crate) fn read_hugetlb_v1(dir: &Path, out: &mut BTreeMap<String, Hugetlb>) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for size in huge_page_sizes() {
        let f = |what: &str| format!("hugetlb.{size}.{what}");
        let h = Hugetlb {
            usage: num(dir, &f("usage_in_bytes"))?,
            max: num(dir, &f("max_usage_in_bytes"))?,
            failcnt: num(dir, &f("failcnt"))?,
        };
        out.insert(size, h);
    }
    Ok(())
}

/// hugetlb in the hybrid cgroup2 hierarchy (no maximum-usage counter there;
/// the failure count is the `max` line of `hugetlb.<size>.events`).
pub(crate) fn read_hugetlb_v2(dir: &Path, out: &mut BTreeMap<String, Hugetlb>) -> Result<()> {
    for size in huge_page_sizes() {
        let current = format!("hugetlb.{size}.current");
        if !dir.join(&current).exists() {
            continue;
        }
        let failcnt = max_events(dir, &format!("hugetlb.{size}.events"))?;
        out.insert(
            size,
            Hugetlb {
                usage: num(dir, &current)?,
                max: 0,
                failcnt,
            },
        );
    }
    Ok(())
}

/// cgroup v2 `cpu.stat`: usage and throttling in microseconds, reported
/// in nanoseconds as runc does.
pub(crate) fn read_cpu_v2(dir: &Path, cpu: &mut Cpu) -> Result<()> {
    for (k, v) in key_values(dir, "cpu.stat")?.into_iter().flatten() {
        let ns = v.saturating_mul(1000);
        match k.as_str() {
            "usage_usec" => cpu.usage.total = ns,
            "user_usec" => cpu.usage.user = ns,
            "system_usec" => cpu.usage.kernel = ns,
            "nr_periods" => cpu.throttling.periods = v,
            "nr_throttled" => cpu.throttling.throttled_periods = v,
            "throttled_usec" => cpu.throttling.throttled_time = ns,
            _ => {}
        }
    }
    Ok(())
}

/// `memory.<kind>current` and `memory.<kind>max` (and `memory.peak` for
/// plain memory) as a v1-shaped entry; "max" is `u64::MAX`.
fn memory_entry_v2(dir: &Path, kind: &str) -> Result<MemoryEntry> {
    let current = format!("memory.{kind}current");
    if !dir.join(&current).exists() {
        return Ok(MemoryEntry::default());
    }
    Ok(MemoryEntry {
        usage: num(dir, &current)?,
        max: num_opt(dir, &format!("memory.{kind}peak"))?,
        failcnt: 0,
        limit: num_opt(dir, &format!("memory.{kind}max"))?,
    })
}

/// cgroup v2 memory: `memory.stat` raw, cache from its `file` line, usage
/// from `memory.current`/`peak`/`max`, and swap reported as memory+swap as
/// v1 does (runc's mapping).
pub(crate) fn read_memory_v2(dir: &Path, m: &mut Memory) -> Result<()> {
    if !read_memory_stat(dir, m, "file")? {
        return Ok(());
    }
    m.usage = memory_entry_v2(dir, "")?;
    let mut swap = memory_entry_v2(dir, "swap.")?;
    swap.usage = swap.usage.saturating_add(m.usage.usage);
    if swap.limit != u64::MAX {
        swap.limit = swap.limit.saturating_add(m.usage.limit);
    }
    m.swap = swap;
    // The failure count of v1 is the `max` event count on v2.
    m.usage.failcnt = max_events(dir, "memory.events")?;
    Ok(())
}

/// cgroup v2 `io.stat` (`MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=..`) as
/// runc maps it: bytes and ios read/written per device.
pub(crate) fn read_io_v2(dir: &Path, b: &mut Blkio) -> Result<()> {
    let file = "io.stat";
    let Some(text) = read_opt(dir, file)? else {
        return Ok(());
    };
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = l.split_whitespace();
        let dev = it.next().unwrap_or_default();
        let (ma, mi) = dev
            .split_once(':')
            .ok_or_else(|| bad(dir, file, format!("malformed line {l:?}")))?;
        let (major, minor) = (parse_num(dir, file, ma)?, parse_num(dir, file, mi)?);
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(bad(dir, file, format!("malformed line {l:?}")));
            };
            let (list, op) = match k {
                "rbytes" => (&mut b.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut b.io_service_bytes_recursive, "Write"),
                "rios" => (&mut b.io_serviced_recursive, "Read"),
                "wios" => (&mut b.io_serviced_recursive, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value: parse_num(dir, file, v)?,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(d.path().join(name), text).expect("write");
        }
        d
    }

    #[test]
    fn empty_stats_json_is_runcs() {
        let v = serde_json::to_value(Stats::default()).expect("json");
        let want = serde_json::json!({
            "cpu": {"usage": {"kernel": 0, "user": 0}, "throttling": {}},
            "cpuset": {"cpu_exclusive": 0, "mem_hardwall": 0, "mem_exclusive": 0,
                "memory_migrate": 0, "memory_spread_page": 0, "memory_spread_slab": 0,
                "memory_pressure": 0, "sched_load_balance": 0, "sched_relax_domain_level": 0},
            "memory": {
                "usage": {"limit": 0, "failcnt": 0},
                "swap": {"limit": 0, "failcnt": 0},
                "kernel": {"limit": 0, "failcnt": 0},
                "kernelTCP": {"limit": 0, "failcnt": 0}
            },
            "pids": {},
            "blkio": {},
            "hugetlb": {},
            "intel_rdt": {},
            "network_interfaces": null
        });
        assert_eq!(v, want);
    }

    #[test]
    fn cpuacct_and_cpu() {
        let d = scratch(&[
            ("cpuacct.stat", "user 150\nsystem 20\n"),
            ("cpuacct.usage", "1234\n"),
            ("cpuacct.usage_percpu", "1000 234 \n"),
            (
                "cpuacct.usage_all",
                "cpu user system\n0 900 100\n1 200 34\n",
            ),
            (
                "cpu.stat",
                "nr_periods 7\nnr_throttled 2\nthrottled_time 99\nnr_bursts 0\n",
            ),
        ]);
        let mut c = Cpu::default();
        read_cpuacct(d.path(), &mut c).expect("cpuacct");
        read_cpu(d.path(), &mut c).expect("cpu");
        assert_eq!(c.usage.user, 1_500_000_000);
        assert_eq!(c.usage.kernel, 200_000_000);
        assert_eq!(c.usage.total, 1234);
        assert_eq!(c.usage.percpu, vec![1000, 234]);
        assert_eq!(c.usage.percpu_user, vec![900, 200]);
        assert_eq!(c.usage.percpu_kernel, vec![100, 34]);
        assert_eq!(c.throttling.periods, 7);
        assert_eq!(c.throttling.throttled_periods, 2);
        assert_eq!(c.throttling.throttled_time, 99);
        let v = serde_json::to_value(&c).expect("json");
        assert_eq!(v["throttling"]["throttledPeriods"], 2);

        let d = scratch(&[("cpuacct.stat", "system 1 user 2\n")]);
        let e = read_cpuacct(d.path(), &mut c).err().map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("cpuacct.stat"));
    }

    #[test]
    fn cpuset_lists() {
        let d = scratch(&[
            ("cpuset.cpus", "0-2,5\n"),
            ("cpuset.mems", "0\n"),
            ("cpuset.sched_relax_domain_level", "-1\n"),
            ("cpuset.sched_load_balance", "1\n"),
        ]);
        let mut s = CpuSet::default();
        read_cpuset(d.path(), &mut s).expect("cpuset");
        assert_eq!(s.cpus, vec![0, 1, 2, 5]);
        assert_eq!(s.mems, vec![0]);
        assert_eq!(s.sched_relax_domain_level, -1);
        assert_eq!(s.sched_load_balance, 1);
        assert!(parse_list(d.path(), "x", "3-1").is_err());
        assert!(parse_list(d.path(), "x", "a").is_err());
    }

    #[test]
    fn memory_and_pids() {
        let d = scratch(&[
            ("memory.stat", "cache 4096\nrss 8192\n"),
            ("memory.usage_in_bytes", "12288\n"),
            ("memory.max_usage_in_bytes", "20000\n"),
            ("memory.failcnt", "3\n"),
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("pids.current", "2\n"),
            ("pids.max", "max\n"),
        ]);
        let mut m = Memory::default();
        read_memory(d.path(), &mut m).expect("memory");
        assert_eq!(m.cache, 4096);
        assert_eq!(m.raw["rss"], 8192);
        assert_eq!(m.usage.usage, 12288);
        assert_eq!(m.usage.failcnt, 3);
        assert_eq!(m.usage.limit, 9223372036854771712);
        // No memsw/kmem files: zero, not an error.
        assert_eq!(m.swap, MemoryEntry::default());
        let mut p = Pids::default();
        read_pids(d.path(), &mut p).expect("pids");
        assert_eq!(
            p,
            Pids {
                current: 2,
                limit: 0
            }
        );
    }

    #[test]
    fn blkio_families() {
        let d = scratch(&[
            (
                "blkio.throttle.io_serviced_recursive",
                "8:0 Read 5\n8:0 Write 6\nTotal 11\n",
            ),
            (
                "blkio.throttle.io_service_bytes_recursive",
                "8:0 Read 512\nTotal 512\n",
            ),
            ("blkio.bfq.io_serviced_recursive", "Total 0\n"),
        ]);
        let mut b = Blkio::default();
        read_blkio(d.path(), &mut b).expect("blkio");
        assert_eq!(b.io_serviced_recursive.len(), 2);
        assert_eq!(
            b.io_service_bytes_recursive,
            vec![BlkioEntry {
                major: 8,
                minor: 0,
                op: "Read".into(),
                value: 512
            }]
        );
        let v = serde_json::to_value(&b).expect("json");
        assert!(v.get("ioServicedRecursive").is_some(), "{v}");
    }

    #[test]
    fn v2_files() {
        let d = scratch(&[
            (
                "cpu.stat",
                "usage_usec 10\nuser_usec 7\nsystem_usec 3\nnr_periods 4\nnr_throttled 1\nthrottled_usec 5\n",
            ),
            ("memory.stat", "anon 4096\nfile 8192\n"),
            ("memory.current", "12288\n"),
            ("memory.peak", "20000\n"),
            ("memory.max", "max\n"),
            ("memory.events", "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n"),
            ("memory.swap.current", "0\n"),
            ("memory.swap.max", "max\n"),
            ("io.stat", "254:0 rbytes=512 wbytes=1024 rios=1 wios=2 dbytes=0 dios=0\n"),
        ]);
        let mut c = Cpu::default();
        read_cpu_v2(d.path(), &mut c).expect("cpu");
        assert_eq!(
            (c.usage.total, c.usage.user, c.usage.kernel),
            (10_000, 7_000, 3_000)
        );
        assert_eq!(c.throttling.throttled_time, 5_000);
        let mut m = Memory::default();
        read_memory_v2(d.path(), &mut m).expect("memory");
        assert_eq!(m.cache, 8192);
        assert_eq!(
            (m.usage.usage, m.usage.max, m.usage.limit),
            (12288, 20000, u64::MAX)
        );
        assert_eq!(m.usage.failcnt, 2);
        assert_eq!((m.swap.usage, m.swap.limit), (12288, u64::MAX));
        let mut b = Blkio::default();
        read_io_v2(d.path(), &mut b).expect("io");
        assert_eq!(b.io_service_bytes_recursive.len(), 2);
        assert_eq!(b.io_serviced_recursive[1].op, "Write");
        assert_eq!(b.io_serviced_recursive[1].value, 2);
    }

    #[test]
    fn page_names() {
        assert_eq!(page_size_name(2048), "2MB");
        assert_eq!(page_size_name(1 << 20), "1GB");
        assert_eq!(page_size_name(64), "64KB");
    }
}
