//! `linux.resources` as systemd unit properties, translated as runc does.
//!
//! Owns: the mapping only (pure functions, no I/O but reading /proc/devices
//! for device-type names). What has no property (swap on v1, blkio, hugetlb,
//! rdma, network, unified keys systemd has no property for...) is written to the
//! cgroup files by the cgroupfs backend after the properties are set. On cgroup v2
//! the unified keys systemd has a property for become it too, after the others (so
//! they win, as in runc): were they only written to the files, systemd would write
//! its own values back at its next change to the unit.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::dbus::Value;

/// systemd's "infinity" for u64 limits.
const INFINITY: u64 = u64::MAX;

/// Properties every container scope gets at creation.
pub fn base(description: &str, slice: &str, pid: u32, v2: bool) -> Vec<(String, Value)> {
    let mut p = vec![
        ("Description".into(), Value::Str(description.into())),
        ("Slice".into(), Value::Str(slice.into())),
        ("Delegate".into(), Value::Bool(true)),
        ("DefaultDependencies".into(), Value::Bool(false)),
        ("PIDs".into(), Value::U32s(vec![pid])),
        ("MemoryAccounting".into(), Value::Bool(true)),
        ("CPUAccounting".into(), Value::Bool(true)),
        ("TasksAccounting".into(), Value::Bool(true)),
    ];
    let io = if v2 {
        "IOAccounting"
    } else {
        "BlockIOAccounting"
    };
    p.push((io.into(), Value::Bool(true)));
    p
}

/// runc's conversion of cgroup v1 cpu shares to a v2 weight.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262142
}

/// A cpu list ("0-3,7") as systemd's byte mask (cpu n = bit n%8 of byte n/8).
pub fn cpu_mask(list: &str) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::new();
    for part in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<usize>().ok()?,
                b.trim().parse::<usize>().ok()?,
            ),
            None => {
                let n = part.parse::<usize>().ok()?;
                (n, n)
            }
        };
        if a > b || b > 1 << 16 {
            return None;
        }
        for n in a..=b {
            if out.len() <= n / 8 {
                out.resize(n / 8 + 1, 0);
            }
            out[n / 8] |= 1 << (n % 8);
        }
    }
    Some(out)
}

/// The properties for `r` (what `update` and `create` set).
pub fn resources(r: &LinuxResources, v2: bool) -> Vec<(String, Value)> {
    let mut p: Vec<(String, Value)> = Vec::new();
    let limit = |v: i64| if v < 0 { INFINITY } else { v as u64 };
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit() {
            let name = if v2 { "MemoryMax" } else { "MemoryLimit" };
            p.push((name.into(), Value::U64(limit(l))));
        }
        if v2 {
            if let Some(l) = m.reservation() {
                p.push(("MemoryLow".into(), Value::U64(limit(l))));
            }
            // OCI's swap is memory+swap; systemd's MemorySwapMax is swap alone. As runc:
            // 0 is unset, and an unlimited memory with swap unset makes swap unlimited too.
            let v = match (m.swap().unwrap_or(0), m.limit()) {
                (0, Some(-1)) => Some(INFINITY),
                (0, _) => None,
                (s, _) if s < 0 => Some(INFINITY),
                (s, Some(l)) if l > 0 && s >= l => Some((s - l) as u64),
                (s, _) => Some(s as u64),
            };
            if let Some(v) = v {
                p.push(("MemorySwapMax".into(), Value::U64(v)));
            }
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares().filter(|s| *s != 0) {
            if v2 {
                p.push(("CPUWeight".into(), Value::U64(shares_to_weight(s))));
            } else {
                p.push(("CPUShares".into(), Value::U64(s)));
            }
        }
        let period = c.period().filter(|p| *p != 0);
        if let Some(per) = period {
            p.push(("CPUQuotaPeriodUSec".into(), Value::U64(per)));
        }
        if let Some(q) = c.quota().filter(|q| *q != 0) {
            let v = if q < 0 {
                INFINITY
            } else {
                quota_per_sec(q as u64, period.unwrap_or(100_000))
            };
            p.push(("CPUQuotaPerSecUSec".into(), Value::U64(v)));
        }
        // On v1 too, as runc: systemd records them (brig writes cpuset's files itself).
        if let Some(m) = c.cpus().as_deref().and_then(cpu_mask) {
            p.push(("AllowedCPUs".into(), Value::Bytes(m)));
        }
        if let Some(m) = c.mems().as_deref().and_then(cpu_mask) {
            p.push(("AllowedMemoryNodes".into(), Value::Bytes(m)));
        }
    }
    if let Some(l) = r.pids().map(|p| p.limit()) {
        let v = if l <= 0 { INFINITY } else { l as u64 };
        p.push(("TasksMax".into(), Value::U64(v)));
    }
    if let Some(d) = r.devices() {
        p.extend(devices(d));
    }
    if let Some(u) = r.unified().as_ref().filter(|_| v2) {
        p.extend(unified(u));
    }
    p
}

/// CPU quota per period as systemd's quota per second of CPU time, rounded up to whole
/// percents (systemd's unit), so that the cgroup gets at least the quota asked for.
fn quota_per_sec(quota: u64, period: u64) -> u64 {
    let v = quota.saturating_mul(1_000_000) / period.max(1);
    v.div_ceil(10_000) * 10_000
}

/// The unified (cgroup v2 file) keys systemd has a property for, as runc translates them:
/// cpu.max, cpu.weight, cpuset.cpus/mems, memory.min/low/high/max/swap.max, pids.max. Other
/// keys, and values that do not parse, are left to the cgroupfs backend, which writes every
/// key to its file (and reports a bad one naming it).
pub fn unified(u: &std::collections::HashMap<String, String>) -> Vec<(String, Value)> {
    let mut keys: Vec<&String> = u.keys().collect();
    keys.sort();
    let num = |v: &str| match v {
        "max" => Some(INFINITY),
        v => v.parse::<u64>().ok(),
    };
    let mut p = Vec::new();
    for k in keys {
        let v = u[k].trim();
        let name = match k.as_str() {
            "cpu.max" => {
                // "QUOTA [PERIOD]", QUOTA "max" for none.
                let f: Vec<&str> = v.split_whitespace().collect();
                let period = match f.get(1).map(|s| s.parse::<u64>()) {
                    None => 100_000,
                    Some(Ok(n)) if n > 0 => n,
                    Some(_) => continue,
                };
                let quota = match f.first().and_then(|q| num(q)) {
                    Some(q) if f.len() <= 2 => q,
                    _ => continue,
                };
                if f.len() == 2 {
                    p.push(("CPUQuotaPeriodUSec".into(), Value::U64(period)));
                }
                let per_sec = match quota {
                    INFINITY | 0 => INFINITY,
                    q => quota_per_sec(q, period),
                };
                p.push(("CPUQuotaPerSecUSec".into(), Value::U64(per_sec)));
                continue;
            }
            "cpuset.cpus" | "cpuset.mems" => {
                if let Some(m) = cpu_mask(v) {
                    let name = match k.as_str() {
                        "cpuset.cpus" => "AllowedCPUs",
                        _ => "AllowedMemoryNodes",
                    };
                    p.push((name.into(), Value::Bytes(m)));
                }
                continue;
            }
            "cpu.weight" => {
                if let Ok(n) = v.parse::<u64>() {
                    p.push(("CPUWeight".into(), Value::U64(n)));
                }
                continue;
            }
            "memory.min" => "MemoryMin",
            "memory.low" => "MemoryLow",
            "memory.high" => "MemoryHigh",
            "memory.max" => "MemoryMax",
            "memory.swap.max" => "MemorySwapMax",
            "pids.max" => "TasksMax",
            _ => continue,
        };
        if let Some(n) = num(v) {
            p.push((name.into(), Value::U64(n)));
        }
    }
    p
}

/// Device rules as DevicePolicy and DeviceAllow, as runc: strict with the
/// allowed devices listed, or auto with none when everything is allowed.
/// Deny rules after allows cannot be said to systemd; the cgroupfs backend's
/// own device program (v2) or devices.* files (v1) still enforce them.
pub fn devices(rules: &[LinuxDeviceCgroup]) -> Vec<(String, Value)> {
    let mut allow: Vec<(String, String)> = Vec::new();
    let mut all = false;
    for r in rules {
        let access = r.access().clone().unwrap_or_else(|| "rwm".into());
        let wild_type = matches!(r.typ(), None | Some(LinuxDeviceType::A));
        if !r.allow() {
            if wild_type && r.major().is_none() && r.minor().is_none() {
                allow.clear();
                all = false;
            }
            continue;
        }
        if wild_type && r.major().is_none() && r.minor().is_none() {
            all = access.contains('r') && access.contains('w') && access.contains('m');
            continue;
        }
        let kind = match r.typ() {
            Some(LinuxDeviceType::B) => "block",
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => "char",
            _ => {
                allow.push(("char-*".into(), access.clone()));
                allow.push(("block-*".into(), access));
                continue;
            }
        };
        let entry = match (r.major(), r.minor()) {
            (None, _) => format!("{kind}-*"),
            (Some(maj), None) => match device_type_name(kind, maj) {
                Some(name) => format!("{kind}-{name}"),
                None => continue,
            },
            (Some(maj), Some(min)) => format!("/dev/{kind}/{maj}:{min}"),
        };
        allow.push((entry, access));
    }
    if all {
        return vec![("DevicePolicy".into(), Value::Str("auto".into()))];
    }
    vec![
        ("DevicePolicy".into(), Value::Str("strict".into())),
        ("DeviceAllow".into(), Value::StrPairs(allow)),
    ]
}

/// The name of device type `major` in /proc/devices (systemd's `char-pts`).
fn device_type_name(kind: &str, major: i64) -> Option<String> {
    let text = std::fs::read_to_string("/proc/devices").ok()?;
    let section = if kind == "block" {
        "Block devices:"
    } else {
        "Character devices:"
    };
    text.split("\n\n")
        .find(|s| s.trim_start().starts_with(section))?
        .lines()
        .skip(1)
        .find_map(|l| {
            let (n, name) = l.trim().split_once(' ')?;
            (n.parse::<i64>().ok()? == major).then(|| name.trim().to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn translates_as_runc() {
        let r = res(
            r#"{"memory":{"limit":33554432,"swap":67108864},"cpu":{"shares":1024,"quota":50000,"period":100000,"cpus":"0-1,3"},"pids":{"limit":42}}"#,
        );
        let p = resources(&r, true);
        let get = |n: &str| p.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(get("MemoryMax"), Some(Value::U64(33554432)));
        assert_eq!(get("MemorySwapMax"), Some(Value::U64(33554432)));
        assert_eq!(get("CPUWeight"), Some(Value::U64(39)));
        assert_eq!(get("CPUQuotaPerSecUSec"), Some(Value::U64(500_000)));
        assert_eq!(get("CPUQuotaPeriodUSec"), Some(Value::U64(100_000)));
        assert_eq!(get("AllowedCPUs"), Some(Value::Bytes(vec![0b1011])));
        assert_eq!(get("TasksMax"), Some(Value::U64(42)));
        let p = resources(&r, false);
        assert!(p
            .iter()
            .any(|(k, v)| k == "MemoryLimit" && *v == Value::U64(33554432)));
        assert!(p
            .iter()
            .any(|(k, v)| k == "CPUShares" && *v == Value::U64(1024)));
        // AllowedCPUs on v1 as well (runc's update.bats checks it there).
        assert!(p.contains(&("AllowedCPUs".into(), Value::Bytes(vec![0b1011]))));
        let q = resources(&res(r#"{"cpu":{"quota":3333,"period":100000}}"#), true);
        assert!(q.contains(&("CPUQuotaPerSecUSec".into(), Value::U64(40_000))));
        let q = resources(&res(r#"{"memory":{"limit":-1},"pids":{"limit":-1}}"#), true);
        assert!(q.contains(&("MemoryMax".into(), Value::U64(u64::MAX))));
        // Unlimited memory, swap unset: unlimited swap (runc's update --memory -1).
        assert!(q.contains(&("MemorySwapMax".into(), Value::U64(u64::MAX))));
        assert!(q.contains(&("TasksMax".into(), Value::U64(u64::MAX))));
        let q = resources(&res(r#"{"memory":{"limit":1048576,"swap":0}}"#), true);
        assert!(!q.iter().any(|(k, _)| k == "MemorySwapMax"));
    }

    #[test]
    fn unified_keys_as_runc() {
        let r = res(
            r#"{"pids":{"limit":10},"unified":{"memory.min":"131072","memory.max":"max",
                "pids.max":" 42\n","cpu.max":"10000 50000","cpu.weight":"7","cpuset.cpus":"1",
                "memory.oom.group":"1","memory.high":"lots"}}"#,
        );
        let p = resources(&r, true);
        // After the pids limit's TasksMax, so it wins; keys sorted; unknown or bad ones left out.
        let names: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "TasksMax",
                "CPUQuotaPeriodUSec",
                "CPUQuotaPerSecUSec",
                "CPUWeight",
                "AllowedCPUs",
                "MemoryMax",
                "MemoryMin",
                "TasksMax"
            ]
        );
        assert_eq!(p[2].1, Value::U64(200_000));
        assert_eq!(p[5].1, Value::U64(u64::MAX));
        assert_eq!(p[6].1, Value::U64(131072));
        assert_eq!(p[7].1, Value::U64(42));
        let p = unified(
            &res(r#"{"unified":{"cpu.max":"max"}}"#)
                .unified()
                .clone()
                .unwrap(),
        );
        assert_eq!(p, [("CPUQuotaPerSecUSec".into(), Value::U64(u64::MAX))]);
        // On cgroup v1 the unified keys are not systemd's business.
        assert_eq!(resources(&r, false).len(), 1);
    }

    #[test]
    fn device_rules() {
        let rules: Vec<LinuxDeviceCgroup> = serde_json::from_str(
            r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},{"allow":true,"type":"b","access":"m"}]"#,
        )
        .unwrap();
        let p = devices(&rules);
        assert_eq!(p[0], ("DevicePolicy".into(), Value::Str("strict".into())));
        assert_eq!(
            p[1].1,
            Value::StrPairs(vec![
                ("/dev/char/1:3".into(), "rwm".into()),
                ("block-*".into(), "m".into())
            ])
        );
        let all: Vec<LinuxDeviceCgroup> =
            serde_json::from_str(r#"[{"allow":true,"access":"rwm"}]"#).unwrap();
        assert_eq!(
            devices(&all),
            vec![("DevicePolicy".into(), Value::Str("auto".into()))]
        );
    }

    #[test]
    fn masks() {
        assert_eq!(cpu_mask("0"), Some(vec![1]));
        assert_eq!(cpu_mask("8-9"), Some(vec![0, 3]));
        assert_eq!(cpu_mask("x"), None);
    }
}
