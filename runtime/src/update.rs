//! `update`: change the cgroup limits of a created, running or paused
//! container, with runc 1.1's flags and `-r` document.
//!
//! Owns turning the flags (memory sizes with units, "-1" for unlimited) or
//! the resources document (a file, or `-` for stdin) into the part of
//! `linux.resources` runc lets `update` change — memory limit, reservation
//! and swap; cpu shares, quota, period, realtime runtime and period, cpuset
//! cpus and mems; blkio weight; pids limit; `unified` — and handing it to
//! [`Manager::set`](crate::cgroups::Manager::set). Zero or absent means
//! "leave as it is", as in runc; with `-r` every flag is ignored.
//!
//! The document's keys match case-insensitively (`"CPU": {"Cpus": "1"}`
//! works), because runc decodes it with Go's encoding/json, which does.
//!
//! A change that fails part way is undone: the values the files held
//! before are read first ([`Manager::current`](crate::cgroups::Manager::current))
//! and written back, as runc writes back its saved config. Nothing else is
//! recorded: the cgroup files are the state.
//!
//! Must never: touch device rules (runc skips them on update too) or change
//! a stopped container.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};
use serde::Deserialize;
use serde_json::Value;

use crate::cgroups;
use crate::error::{Error, Result};
use crate::logging;
use crate::state::{Root, Status};

/// The `update` command line, values as typed.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    /// `-r FILE` or `-r -`: read the document, ignore every other flag.
    pub resources: Option<String>,
    pub blkio_weight: Option<String>,
    pub cpu_period: Option<String>,
    pub cpu_quota: Option<String>,
    pub cpu_shares: Option<String>,
    pub cpu_rt_period: Option<String>,
    pub cpu_rt_runtime: Option<String>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub kernel_memory: Option<String>,
    pub kernel_memory_tcp: Option<String>,
    pub memory: Option<String>,
    pub memory_reservation: Option<String>,
    pub memory_swap: Option<String>,
    pub pids_limit: Option<String>,
    pub l3_cache_schema: Option<String>,
    pub mem_bw_schema: Option<String>,
}

/// What `update` may change; zero/empty = unchanged.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Request {
    pub memory: Memory,
    pub cpu: Cpu,
    #[serde(rename = "blockIO")]
    pub block_io: BlockIo,
    pub pids: Pids,
    pub unified: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Memory {
    pub limit: Option<i64>,
    pub reservation: Option<i64>,
    pub swap: Option<i64>,
    pub kernel: Option<i64>,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: Option<i64>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Cpu {
    pub shares: Option<u64>,
    pub quota: Option<i64>,
    pub period: Option<u64>,
    pub realtime_runtime: Option<i64>,
    pub realtime_period: Option<u64>,
    pub cpus: Option<String>,
    pub mems: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct BlockIo {
    pub weight: Option<u16>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Pids {
    pub limit: Option<i64>,
}

/// Parse the `-r` document.
pub fn parse_document(text: &str, source: &str) -> Result<Request> {
    let bad = |path: String, msg: String| Error::config(source, path, msg);
    let mut v: Value =
        serde_json::from_str(text).map_err(|e| bad("(document)".into(), e.to_string()))?;
    crate::spec::fold_resource_keys(&mut v);
    if let Value::Object(map) = &mut v {
        // Go leaves a field alone when the document says null.
        for key in ["memory", "cpu", "blockIO", "pids"] {
            if map.get(key).is_some_and(Value::is_null) {
                map.remove(key);
            }
        }
    }
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        bad(path, e.into_inner().to_string())
    })
}

/// A size as docker's `RAMInBytes` reads it: a decimal number, optional
/// space, optional unit k/m/g/t/p (any case, powers of 1024), optional `i`
/// and `b`: "1024", "10M", "1.5g", "512 KiB".
pub fn ram_in_bytes(s: &str) -> Option<i64> {
    let invalid = || None;
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, rest) = s.split_at(digits_end);
    if num.is_empty() || !num.starts_with(|c: char| c.is_ascii_digit()) || num.ends_with('.') {
        return invalid();
    }
    let value: f64 = num.parse().ok()?;
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let mut chars = rest.chars().peekable();
    let shift = match chars.peek().map(|c| c.to_ascii_lowercase()) {
        Some(c @ ('k' | 'm' | 'g' | 't' | 'p')) => {
            chars.next();
            10 * (1 + "kmgtp".find(c).expect("c is one of kmgtp"))
        }
        _ => 0,
    };
    if chars.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'i')) {
        chars.next();
    }
    if chars.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'b')) {
        chars.next();
    }
    if chars.next().is_some() {
        return invalid();
    }
    let bytes = value * (1u64 << shift) as f64;
    if bytes >= i64::MAX as f64 {
        return invalid();
    }
    Some(bytes as i64)
}

fn memory_flag(name: &str, v: &Option<String>) -> Result<Option<i64>> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some("-1") => Ok(Some(-1)),
        Some(s) => ram_in_bytes(s)
            .map(Some)
            .ok_or_else(|| Error::msg(format!("invalid value for {name}: invalid size: '{s}'"))),
    }
}

fn number_flag<T: std::str::FromStr>(name: &str, v: &Option<String>) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<T>()
            .map(Some)
            .map_err(|e| Error::msg(format!("invalid value for {name}: parsing {s:?}: {e}"))),
    }
}

impl Flags {
    /// The request these flags make (or the `-r` document, read here).
    pub fn request(&self) -> Result<Request> {
        if let Some(src) = self.resources.as_deref().filter(|s| !s.is_empty()) {
            let mut text = String::new();
            if src == "-" {
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|e| Error::io("read resources from stdin", e))?;
            } else {
                text = std::fs::read_to_string(Path::new(src))
                    .map_err(|e| Error::io(format!("open {src}"), e))?;
            }
            let source = if src == "-" { "<stdin>" } else { src };
            return parse_document(&text, source);
        }
        let weight: Option<i64> = number_flag("blkio-weight", &self.blkio_weight)?;
        let weight = match weight {
            None | Some(0) => None,
            Some(w) => Some(u16::try_from(w).map_err(|_| {
                Error::msg(format!(
                    "invalid value for blkio-weight: {w} is out of range"
                ))
            })?),
        };
        Ok(Request {
            memory: Memory {
                limit: memory_flag("memory", &self.memory)?,
                reservation: memory_flag("memory-reservation", &self.memory_reservation)?,
                swap: memory_flag("memory-swap", &self.memory_swap)?,
                kernel: memory_flag("kernel-memory", &self.kernel_memory)?,
                kernel_tcp: memory_flag("kernel-memory-tcp", &self.kernel_memory_tcp)?,
            },
            cpu: Cpu {
                shares: number_flag("cpu-share", &self.cpu_shares)?,
                quota: number_flag("cpu-quota", &self.cpu_quota)?,
                period: number_flag("cpu-period", &self.cpu_period)?,
                realtime_runtime: number_flag("cpu-rt-runtime", &self.cpu_rt_runtime)?,
                realtime_period: number_flag("cpu-rt-period", &self.cpu_rt_period)?,
                cpus: self.cpuset_cpus.clone().filter(|s| !s.is_empty()),
                mems: self.cpuset_mems.clone().filter(|s| !s.is_empty()),
            },
            block_io: BlockIo { weight },
            pids: Pids {
                limit: number_flag("pids-limit", &self.pids_limit)?,
            },
            unified: None,
        })
    }
}

fn nonzero<T: Default + PartialEq>(v: Option<T>) -> Option<T> {
    v.filter(|x| *x != T::default())
}

impl Request {
    /// The `linux.resources` to hand to the cgroup manager: only what
    /// changes, devices untouched.
    pub fn resources(&self) -> LinuxResources {
        let mut r = LinuxResources::default();
        let m = &self.memory;
        if [m.limit, m.reservation, m.swap]
            .iter()
            .any(|v| nonzero(*v).is_some())
        {
            let mut mem = LinuxMemory::default();
            mem.set_limit(nonzero(m.limit));
            mem.set_reservation(nonzero(m.reservation));
            mem.set_swap(nonzero(m.swap));
            r.set_memory(Some(mem));
        }
        let c = &self.cpu;
        let mut cpu = LinuxCpu::default();
        cpu.set_shares(nonzero(c.shares));
        cpu.set_quota(nonzero(c.quota));
        cpu.set_period(nonzero(c.period));
        cpu.set_realtime_runtime(nonzero(c.realtime_runtime));
        cpu.set_realtime_period(nonzero(c.realtime_period));
        cpu.set_cpus(c.cpus.clone().filter(|s| !s.is_empty()));
        cpu.set_mems(c.mems.clone().filter(|s| !s.is_empty()));
        if cpu != LinuxCpu::default() {
            r.set_cpu(Some(cpu));
        }
        if let Some(w) = nonzero(self.block_io.weight) {
            let mut b = LinuxBlockIo::default();
            b.set_weight(Some(w));
            r.set_block_io(Some(b));
        }
        if let Some(l) = nonzero(self.pids.limit) {
            let mut p = LinuxPids::default();
            p.set_limit(l);
            r.set_pids(Some(p));
        }
        if let Some(u) = self.unified.clone().filter(|u| !u.is_empty()) {
            r.set_unified(Some(u.into_iter().collect()));
        }
        r
    }
}

/// Intel RDT schemata are accepted only when the kernel offers them, with
/// runc's messages; brig does not manage resctrl groups.
fn check_rdt(flags: &Flags) -> Result<()> {
    let info = Path::new("/sys/fs/resctrl/info");
    for (schema, resource, msg) in [
        (
            &flags.l3_cache_schema,
            "L3",
            "Intel RDT/CAT: l3 cache schema is not enabled",
        ),
        (
            &flags.mem_bw_schema,
            "MB",
            "Intel RDT/MBA: memory bandwidth schema is not enabled",
        ),
    ] {
        if schema.as_deref().is_some_and(|s| !s.is_empty()) && !info.join(resource).is_dir() {
            return Err(Error::msg(msg));
        }
    }
    if flags.l3_cache_schema.is_some() || flags.mem_bw_schema.is_some() {
        return Err(Error::msg(
            "Intel RDT schemata cannot be updated: brig does not manage resctrl groups",
        ));
    }
    Ok(())
}

/// `update`.
pub fn update(root: &Root, id: &str, flags: &Flags) -> Result<()> {
    let saved = root.load(id)?;
    let req = flags.request()?;
    if nonzero(req.memory.kernel).is_some() || nonzero(req.memory.kernel_tcp).is_some() {
        logging::warn("Kernel memory settings are ignored and will be removed");
    }
    check_rdt(flags)?;
    let _lock = root.lock(id)?;
    if saved.status(root) == Status::Stopped {
        return Err(Error::msg("container not running"));
    }
    let cg = cgroups::load(saved.cgroup_paths);
    let new = req.resources();
    // Like runc, a change that fails part way is undone (runc writes its
    // saved config back; we write back what the files held).
    let old = cg.current(&new)?;
    if let Err(e) = cg.set(&new) {
        if let Err(e2) = cg.set(&old) {
            logging::warn(&format!(
                "setting back cgroup configs failed due to error: {e2}, the container's limits might be inconsistent"
            ));
        }
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let mib = 1 << 20;
        for (s, want) in [
            ("1024", Some(1024)),
            ("10M", Some(10 * mib)),
            ("50m", Some(50 * mib)),
            ("1g", Some(1 << 30)),
            ("1.5G", Some(3 << 29)),
            ("512 KiB", Some(512 << 10)),
            ("2kb", Some(2048)),
            ("3b", Some(3)),
            ("1T", Some(1 << 40)),
            ("", None),
            ("abc", None),
            ("-5", None),
            ("10X", None),
            ("10MM", None),
            ("1.", None),
            (".5", None),
            ("1.2.3", None),
        ] {
            assert_eq!(ram_in_bytes(s), want, "{s:?}");
        }
    }

    #[test]
    fn flags_to_resources() {
        let f = Flags {
            memory: Some("50M".into()),
            memory_swap: Some("-1".into()),
            cpu_period: Some("900000".into()),
            pids_limit: Some("-1".into()),
            cpuset_cpus: Some("1".into()),
            ..Flags::default()
        };
        let r = f.request().expect("request").resources();
        let m = r.memory().as_ref().expect("memory");
        assert_eq!(m.limit(), Some(50 << 20));
        assert_eq!(m.swap(), Some(-1));
        assert_eq!(m.reservation(), None);
        let c = r.cpu().as_ref().expect("cpu");
        assert_eq!(c.period(), Some(900000));
        assert_eq!(c.quota(), None);
        assert_eq!(c.cpus().as_deref(), Some("1"));
        assert_eq!(r.pids().as_ref().map(|p| p.limit()), Some(-1));
        assert!(r.block_io().is_none());
        assert!(r.devices().is_none());

        // Nothing asked: nothing to write.
        let r = Flags::default().request().expect("request").resources();
        assert_eq!(r, LinuxResources::default());

        let error = |f: Flags| f.request().err().map(|e| e.to_string()).unwrap_or_default();
        let e = error(Flags {
            memory: Some("lots".into()),
            ..Flags::default()
        });
        assert_eq!(e, "invalid value for memory: invalid size: 'lots'");
        let e = error(Flags {
            cpu_quota: Some("x".into()),
            ..Flags::default()
        });
        assert!(e.starts_with("invalid value for cpu-quota"), "{e}");
    }

    #[test]
    fn document_keys_fold_case() {
        let r = parse_document(
            r#"{"CPU": {"Cpus": "1", "QUOTA": 5000}, "memory": {"limit": 33554432, "swappiness": 3},
                "pids": {"limit": 20}, "blockio": {"weight": 300}, "extra": 1}"#,
            "x.json",
        )
        .expect("parse");
        assert_eq!(r.cpu.cpus.as_deref(), Some("1"));
        assert_eq!(r.cpu.quota, Some(5000));
        assert_eq!(r.memory.limit, Some(33554432));
        assert_eq!(r.pids.limit, Some(20));
        assert_eq!(r.block_io.weight, Some(300));
        // An exact key wins over a folded one.
        let r =
            parse_document(r#"{"CPU": {"shares": 1}, "cpu": {"shares": 2}}"#, "x").expect("parse");
        assert_eq!(r.cpu.shares, Some(2));
        let r = parse_document(r#"{"unified": {"Pids.Max": "10"}, "memory": null}"#, "x")
            .expect("parse");
        assert_eq!(
            r.unified
                .as_ref()
                .and_then(|u| u.get("Pids.Max"))
                .map(String::as_str),
            Some("10")
        );
        let e = parse_document(r#"{"cpu": {"shares": "many"}}"#, "r.json")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("r.json: cpu.shares:"), "{e}");
    }
}
