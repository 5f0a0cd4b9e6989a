//! `linux.resources` as systemd unit properties, translated as runc does.
//!
//! Owns: the mapping only (pure functions, no I/O but reading /proc/devices
//! for device-type names). What has no property (swap on v1, blkio, hugetlb,
//! rdma, network, unified keys...) is written to the cgroup files by the
//! cgroupfs backend after the properties are set.

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
            // OCI's swap is memory+swap; systemd's MemorySwapMax is swap alone.
            if let Some(s) = m.swap() {
                let v = match m.limit() {
                    _ if s < 0 => INFINITY,
                    Some(l) if l > 0 && s >= l => (s - l) as u64,
                    _ => s as u64,
                };
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
                // Per second of CPU time, rounded up to whole percents (systemd's unit).
                let per = period.unwrap_or(100_000);
                let v = (q as u64).saturating_mul(1_000_000) / per;
                v.div_ceil(10_000) * 10_000
            };
            p.push(("CPUQuotaPerSecUSec".into(), Value::U64(v)));
        }
        if v2 {
            if let Some(m) = c.cpus().as_deref().and_then(cpu_mask) {
                p.push(("AllowedCPUs".into(), Value::Bytes(m)));
            }
            if let Some(m) = c.mems().as_deref().and_then(cpu_mask) {
                p.push(("AllowedMemoryNodes".into(), Value::Bytes(m)));
            }
        }
    }
    if let Some(l) = r.pids().map(|p| p.limit()) {
        let v = if l <= 0 { INFINITY } else { l as u64 };
        p.push(("TasksMax".into(), Value::U64(v)));
    }
    if let Some(d) = r.devices() {
        p.extend(devices(d));
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
        let q = resources(&res(r#"{"cpu":{"quota":3333,"period":100000}}"#), true);
        assert!(q.contains(&("CPUQuotaPerSecUSec".into(), Value::U64(40_000))));
        let q = resources(&res(r#"{"memory":{"limit":-1},"pids":{"limit":-1}}"#), true);
        assert!(q.contains(&("MemoryMax".into(), Value::U64(u64::MAX))));
        assert!(q.contains(&("TasksMax".into(), Value::U64(u64::MAX))));
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
