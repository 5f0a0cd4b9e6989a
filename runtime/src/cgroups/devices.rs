//! Device access rules for the v1 `devices` controller (and, reduced the
//! same way, for the cgroup v2 device program of [`super::bpf`]).
//!
//! Owns: parsing `linux.resources.devices` rules, the default allowed devices
//! (runc's list), and emulating the kernel's v1 device-exception semantics so
//! that [`set_devices`] writes only the changes from what `devices.list` shows
//! to what the rules ask for — on a fresh cgroup that is "deny `a`, then the
//! allows"; on a running container (update) no device loses access it keeps.
//!
//! Never grants anything the rules do not: after writing, the resulting list is
//! read back and compared.

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use super::util::{read_file, write_file};
use crate::error::{Error, Result};

const FIELD: &str = "linux.resources.devices";

pub(crate) const R: u8 = 1;
pub(crate) const W: u8 = 2;
pub(crate) const M: u8 = 4;

/// A device the runtime allows (and, when it has a path, creates) in every
/// container unless the spec's `linux.devices` has an entry with that path.
/// This is runc's `AllowedDevices` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultDevice {
    /// Device node to create in the container, if any.
    pub path: Option<&'static str>,
    /// 'c' or 'b'.
    pub typ: char,
    /// -1 is a wildcard.
    pub major: i64,
    /// -1 is a wildcard.
    pub minor: i64,
    pub access: &'static str,
    /// Mode of the created node (permission bits); owned by 0:0.
    pub file_mode: u32,
}

const fn dd(
    path: Option<&'static str>,
    typ: char,
    major: i64,
    minor: i64,
    access: &'static str,
) -> DefaultDevice {
    DefaultDevice {
        path,
        typ,
        major,
        minor,
        access,
        file_mode: 0o666,
    }
}

/// runc's default allowed devices, in runc's order.
pub const DEFAULT_DEVICES: &[DefaultDevice] = &[
    // mknod of any device
    dd(None, 'c', -1, -1, "m"),
    dd(None, 'b', -1, -1, "m"),
    dd(Some("/dev/null"), 'c', 1, 3, "rwm"),
    dd(Some("/dev/random"), 'c', 1, 8, "rwm"),
    dd(Some("/dev/full"), 'c', 1, 7, "rwm"),
    dd(Some("/dev/tty"), 'c', 5, 0, "rwm"),
    dd(Some("/dev/zero"), 'c', 1, 5, "rwm"),
    dd(Some("/dev/urandom"), 'c', 1, 9, "rwm"),
    // /dev/pts/*
    dd(None, 'c', 136, -1, "rwm"),
    // /dev/ptmx
    dd(None, 'c', 5, 2, "rwm"),
    // tuntap
    dd(None, 'c', 10, 200, "rwm"),
];

/// The full rule list to pass in `LinuxResources::devices` to
/// [`super::Manager::set`], as runc builds it: the spec's
/// `linux.resources.devices` in order, then [`DEFAULT_DEVICES`] except those
/// whose path is also in the spec's `linux.devices`. The list is applied on
/// top of "deny everything".
pub fn device_rules(
    spec_rules: Option<&[LinuxDeviceCgroup]>,
    spec_devices: Option<&[LinuxDevice]>,
) -> Vec<LinuxDeviceCgroup> {
    let mut out: Vec<LinuxDeviceCgroup> = spec_rules.map(<[_]>::to_vec).unwrap_or_default();
    for d in DEFAULT_DEVICES {
        if let (Some(p), Some(devs)) = (d.path, spec_devices) {
            if devs.iter().any(|sd| sd.path() == Path::new(p)) {
                continue;
            }
        }
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true)
            .set_typ(Some(if d.typ == 'b' {
                LinuxDeviceType::B
            } else {
                LinuxDeviceType::C
            }))
            .set_major((d.major >= 0).then_some(d.major))
            .set_minor((d.minor >= 0).then_some(d.minor))
            .set_access(Some(d.access.to_string()));
        out.push(r);
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Block,
    Char,
}

impl Kind {
    fn ch(self) -> char {
        match self {
            Kind::Block => 'b',
            Kind::Char => 'c',
        }
    }
}

/// (type, major, minor); -1 is '*'.
type Key = (Kind, i64, i64);

/// One parsed rule. `key == None` is a type-`a` rule, which the kernel treats
/// as "reset to allow/deny everything" whatever follows the `a`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rule {
    allow: bool,
    key: Option<Key>,
    access: u8,
}

fn parse_access(s: &str) -> Option<u8> {
    if s.is_empty() {
        return None;
    }
    let mut a = 0;
    for c in s.chars() {
        a |= match c {
            'r' => R,
            'w' => W,
            'm' => M,
            _ => return None,
        };
    }
    Some(a)
}

fn access_str(a: u8) -> String {
    let mut s = String::new();
    if a & R != 0 {
        s.push('r');
    }
    if a & W != 0 {
        s.push('w');
    }
    if a & M != 0 {
        s.push('m');
    }
    s
}

fn num(n: i64) -> String {
    if n < 0 {
        "*".to_string()
    } else {
        n.to_string()
    }
}

fn rule_string(k: &Key, access: u8) -> String {
    format!(
        "{} {}:{} {}",
        k.0.ch(),
        num(k.1),
        num(k.2),
        access_str(access)
    )
}

/// Parse and check the rules; errors name the rule's index.
pub(crate) fn parse_rules(list: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>> {
    let mut out = Vec::with_capacity(list.len());
    for (i, d) in list.iter().enumerate() {
        let acc = d.access().as_deref().unwrap_or("");
        // Like runc, letters other than r, w and m are ignored ("rwa" is
        // "rw"), but one of them must be there.
        let known: String = acc
            .chars()
            .filter(|c| matches!(c, 'r' | 'w' | 'm'))
            .collect();
        let Some(access) = parse_access(&known) else {
            return Err(Error::config(
                "config.json",
                format!("{FIELD}[{i}].access"),
                format!("{acc:?} has none of r, w and m"),
            ));
        };
        let kind = match d.typ() {
            None | Some(LinuxDeviceType::A) => None,
            Some(LinuxDeviceType::B) => Some(Kind::Block),
            Some(LinuxDeviceType::C) => Some(Kind::Char),
            Some(t) => {
                return Err(Error::config(
                    "config.json",
                    format!("{FIELD}[{i}].type"),
                    format!(
                        "invalid cgroup device type {:?} (want a, b or c)",
                        t.as_str()
                    ),
                ))
            }
        };
        for (name, v) in [("major", d.major()), ("minor", d.minor())] {
            if let Some(v) = v {
                if v > i64::from(u32::MAX) {
                    return Err(Error::config(
                        "config.json",
                        format!("{FIELD}[{i}].{name}"),
                        format!("{v} is out of range"),
                    ));
                }
            }
        }
        out.push(Rule {
            allow: d.allow(),
            key: kind.map(|k| {
                (
                    k,
                    d.major().unwrap_or(-1).max(-1),
                    d.minor().unwrap_or(-1).max(-1),
                )
            }),
            access,
        });
    }
    Ok(out)
}

/// What the kernel keeps per cgroup: a default and exceptions to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct State {
    pub(crate) default_allow: bool,
    pub(crate) exceptions: BTreeMap<Key, u8>,
}

impl State {
    fn deny_all() -> State {
        State {
            default_allow: false,
            exceptions: BTreeMap::new(),
        }
    }

    /// The state `rules` produce when applied to "deny everything".
    pub(crate) fn from_rules(rules: &[Rule]) -> State {
        let mut s = State::deny_all();
        for r in rules {
            s.apply(r);
        }
        s
    }

    /// Apply one rule as the kernel does (security/device_cgroup.c).
    fn apply(&mut self, r: &Rule) {
        let Some(key) = r.key else {
            self.default_allow = r.allow;
            self.exceptions.clear();
            return;
        };
        // A rule that agrees with the default removes an exception; one that
        // disagrees adds one.
        if r.allow == self.default_allow {
            if let Some(a) = self.exceptions.get_mut(&key) {
                *a &= !r.access;
                if *a == 0 {
                    self.exceptions.remove(&key);
                }
            }
        } else {
            *self.exceptions.entry(key).or_insert(0) |= r.access;
        }
    }

    /// Parse `devices.list`. In allow-by-default mode the kernel shows only
    /// `a *:* rwm` and hides deny exceptions.
    pub(crate) fn from_list(text: &str) -> Result<State> {
        let mut s = State::deny_all();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let bad = || Error::msg(format!("cannot parse devices.list line {line:?}"));
            let mut it = line.split_whitespace();
            let (Some(t), Some(mm), Some(acc)) = (it.next(), it.next(), it.next()) else {
                return Err(bad());
            };
            let kind = match t {
                "a" => {
                    s.default_allow = true;
                    s.exceptions.clear();
                    return Ok(s);
                }
                "b" => Kind::Block,
                "c" => Kind::Char,
                _ => return Err(bad()),
            };
            let (ma, mi) = mm.split_once(':').ok_or_else(bad)?;
            let p = |x: &str| -> Result<i64> {
                if x == "*" {
                    Ok(-1)
                } else {
                    x.parse::<i64>().map_err(|_| bad())
                }
            };
            let access = parse_access(acc).ok_or_else(bad)?;
            *s.exceptions.entry((kind, p(ma)?, p(mi)?)).or_insert(0) |= access;
        }
        Ok(s)
    }

    /// Writes (`true` = devices.allow) turning `self` (what the kernel shows)
    /// into `target`.
    pub(crate) fn transition(&self, target: &State) -> Vec<(bool, String)> {
        let mut w = Vec::new();
        if target.default_allow || self.default_allow {
            // A mode change, or a target whose deny list we cannot compare
            // with the kernel's hidden one: reset, then add the exceptions.
            w.push((target.default_allow, "a".to_string()));
            for (k, a) in &target.exceptions {
                w.push((!target.default_allow, rule_string(k, *a)));
            }
            return w;
        }
        // Both deny by default: grant what is missing first, then revoke
        // what is extra, so nothing kept is briefly lost.
        for (k, a) in &target.exceptions {
            let add = a & !self.exceptions.get(k).copied().unwrap_or(0);
            if add != 0 {
                w.push((true, rule_string(k, add)));
            }
        }
        for (k, a) in &self.exceptions {
            let rm = a & !target.exceptions.get(k).copied().unwrap_or(0);
            if rm != 0 {
                w.push((false, rule_string(k, rm)));
            }
        }
        w
    }
}

/// Make the devices cgroup at `dir` enforce exactly `rules` (applied on top
/// of "deny everything").
pub(crate) fn set_devices(dir: &Path, rules: &[Rule]) -> Result<()> {
    let target = State::from_rules(rules);
    let current = State::from_list(&read_file(dir, "devices.list")?)?;
    for (allow, rule) in current.transition(&target) {
        let file = if allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        write_file(dir, file, &rule, Some(FIELD))?;
    }
    let after = State::from_list(&read_file(dir, "devices.list")?)?;
    let ok = if target.default_allow {
        after.default_allow
    } else {
        after == target
    };
    if !ok {
        return Err(Error::msg(format!(
            "{FIELD}: the devices cgroup {} does not match the requested rules after writing them (kernel shows {:?}, wanted {:?})",
            dir.display(),
            after,
            target
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        allow: bool,
        t: Option<LinuxDeviceType>,
        ma: Option<i64>,
        mi: Option<i64>,
        a: &str,
    ) -> LinuxDeviceCgroup {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow)
            .set_typ(t)
            .set_major(ma)
            .set_minor(mi)
            .set_access(Some(a.to_string()));
        r
    }

    #[test]
    fn defaults_and_fresh_cgroup() {
        let spec = vec![rule(false, None, None, None, "rwm")];
        let all = device_rules(Some(&spec), None);
        assert_eq!(all.len(), 1 + DEFAULT_DEVICES.len());
        let target = State::from_rules(&parse_rules(&all).expect("parse"));
        let fresh = State::from_list("a *:* rwm\n").expect("list");
        let w = fresh.transition(&target);
        assert_eq!(w[0], (false, "a".to_string()));
        assert!(w.contains(&(true, "c 1:3 rwm".to_string())));
        assert!(w.contains(&(true, "c *:* m".to_string())));
        assert!(w.contains(&(true, "c 136:* rwm".to_string())));
        assert_eq!(w.len(), 1 + DEFAULT_DEVICES.len());
    }

    #[test]
    fn spec_device_path_drops_default() {
        let mut d = LinuxDevice::default();
        d.set_path("/dev/null".into());
        let all = device_rules(None, Some(&[d]));
        assert_eq!(all.len(), DEFAULT_DEVICES.len() - 1);
    }

    #[test]
    fn update_is_incremental() {
        let cur = State::from_list("c 1:3 rwm\nc 1:5 rwm\nc *:* m\n").expect("list");
        let rules = vec![
            rule(true, Some(LinuxDeviceType::C), Some(1), Some(3), "rw"),
            rule(true, Some(LinuxDeviceType::C), Some(1), Some(9), "rwm"),
            rule(true, Some(LinuxDeviceType::C), None, None, "m"),
        ];
        let target = State::from_rules(&parse_rules(&rules).expect("parse"));
        let w = cur.transition(&target);
        assert_eq!(
            w,
            vec![
                (true, "c 1:9 rwm".to_string()),
                (false, "c 1:3 m".to_string()),
                (false, "c 1:5 rwm".to_string()),
            ]
        );
    }

    #[test]
    fn kernel_semantics() {
        let rules = vec![
            rule(true, Some(LinuxDeviceType::A), None, None, "rwm"),
            rule(false, Some(LinuxDeviceType::C), Some(1), Some(3), "w"),
            rule(true, Some(LinuxDeviceType::C), Some(1), Some(3), "w"),
            rule(false, Some(LinuxDeviceType::B), Some(8), None, "rwm"),
        ];
        let s = State::from_rules(&parse_rules(&rules).expect("parse"));
        assert!(s.default_allow);
        assert_eq!(s.exceptions.len(), 1);
        let w = State::deny_all().transition(&s);
        assert_eq!(
            w,
            vec![(true, "a".to_string()), (false, "b 8:* rwm".to_string())]
        );
    }

    #[test]
    fn bad_rules_name_index() {
        let e = parse_rules(&[
            rule(true, None, None, None, ""),
            rule(true, None, None, None, "x"),
        ]);
        let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("linux.resources.devices[0].access"), "{msg}");
        let e = parse_rules(&[
            rule(true, None, None, None, "rwm"),
            rule(true, None, None, None, "x"),
        ]);
        let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("linux.resources.devices[1].access"), "{msg}");
        // Unknown letters are dropped, as runc does.
        let ok = parse_rules(&[rule(
            false,
            Some(LinuxDeviceType::C),
            Some(1),
            Some(11),
            "rwa",
        )]);
        assert_eq!(ok.map(|r| r.len()).ok(), Some(1));
        let e = parse_rules(&[rule(true, Some(LinuxDeviceType::P), None, None, "r")]);
        let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("linux.resources.devices[0].type"), "{msg}");
    }
}
