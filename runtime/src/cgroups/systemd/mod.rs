//! The systemd cgroup driver (`brig --systemd-cgroup`), as runc's.
//!
//! Owns: `linux.cgroupsPath` in the form `slice:prefix:name`, the transient
//! scope unit `<prefix>-<name>.scope` in that slice that systemd creates over
//! D-Bus (StartTransientUnit with Delegate=yes, the init's pid, and the
//! resource limits as unit properties, see [`props`]), `update` through
//! SetUnitProperties, and stopping the unit at `delete`. Root talks to the
//! system instance, rootless users to their own (`DBUS_SESSION_BUS_ADDRESS`,
//! else `$XDG_RUNTIME_DIR/bus`).
//!
//! Everything else — the files of what systemd has no property for, stats,
//! freezing, pids, the container's `/sys/fs/cgroup` mounts — is the cgroupfs
//! backend's ([`super::v1`], [`super::v2`]) on the directory systemd made: the
//! manager here wraps one.
//!
//! Must never: reach the bus unless the driver was asked for
//! (`--systemd-cgroup`): the cgroupfs path stays as it was. A bus that cannot
//! be reached is an error naming its socket, before anything is made.

pub mod dbus;
pub mod props;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use oci_spec::runtime::LinuxResources;

use super::layout::{Layout, Mode};
use super::{CgroupMount, Inner, Manager, OomWatch, Stats, PATH_FIELD};
use crate::error::{Error, Result};
use dbus::{BusError, Conn, Value};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Use the systemd driver for this run of brig (the global `--systemd-cgroup`).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether `--systemd-cgroup` was given.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

const SYSTEMD: &str = "org.freedesktop.systemd1";
const SYSTEMD_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const DEFAULT_SYSTEM_BUS: &str = "/run/dbus/system_bus_socket";

/// The uid the bus sees us as (outside a user namespace we may be in, as the
/// daemon checks it against the socket's peer credentials), from uid_map.
fn host_uid() -> u32 {
    let euid = nix::unistd::geteuid().as_raw();
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    map.lines()
        .find_map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            let (inside, outside, len) = (*f.first()?, *f.get(1)?, *f.get(2)?);
            let e = u64::from(euid);
            (e >= inside && e < inside + len).then(|| (outside + e - inside) as u32)
        })
        .unwrap_or(euid)
}

/// Which systemd: the system's (root) or the user's own (rootless).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Instance {
    System,
    User(u32),
}

impl Instance {
    fn detect() -> Instance {
        match host_uid() {
            0 => Instance::System,
            uid => Instance::User(uid),
        }
    }

    fn socket(self) -> Result<PathBuf> {
        let (var, default) = match self {
            Instance::System => (
                "DBUS_SYSTEM_BUS_ADDRESS",
                Some(PathBuf::from(DEFAULT_SYSTEM_BUS)),
            ),
            Instance::User(_) => (
                "DBUS_SESSION_BUS_ADDRESS",
                std::env::var_os("XDG_RUNTIME_DIR")
                    .filter(|d| !d.is_empty())
                    .map(|d| Path::new(&d).join("bus")),
            ),
        };
        if let Some(addr) = std::env::var(var).ok().filter(|a| !a.is_empty()) {
            return dbus::socket_path(&addr).ok_or_else(|| {
                Error::msg(format!(
                    "systemd cgroup driver: ${var} {addr:?} has no unix:path= address"
                ))
            });
        }
        default.ok_or_else(|| {
            Error::msg(
                "systemd cgroup driver: cannot find the user's bus: neither DBUS_SESSION_BUS_ADDRESS nor XDG_RUNTIME_DIR is set",
            )
        })
    }

    fn connect(self) -> Result<Conn> {
        let sock = self.socket()?;
        let (name, uid) = match self {
            Instance::System => ("system bus", 0),
            Instance::User(uid) => ("user's session bus", uid),
        };
        let mut c = Conn::connect(&sock, uid).map_err(|e| {
            Error::msg(format!(
                "systemd cgroup driver: cannot connect to the {name} at {}: {e}",
                sock.display()
            ))
        })?;
        let rule = format!(
            "type='signal',sender='{SYSTEMD}',interface='{MANAGER}',member='JobRemoved',path='{SYSTEMD_PATH}'"
        );
        c.call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "AddMatch",
            &[Value::Str(rule)],
        )
        .map_err(|e| bus_err("subscribe to systemd's job signals", e))?;
        Ok(c)
    }
}

fn bus_err(what: &str, e: BusError) -> Error {
    Error::msg(format!("systemd cgroup driver: {what}: {e}"))
}

/// The slice and unit of `linux.cgroupsPath` (`slice:prefix:name`; empty:
/// runc's default `:runc:<id>`). An empty slice is `system.slice`
/// (`user.slice` rootless); the unit is `<prefix>-<name>.scope` (no prefix:
/// `<name>.scope`).
pub(crate) fn parse_path(p: Option<&str>, id: &str, rootless: bool) -> Result<(String, String)> {
    let bad = |msg: String| Error::config("config.json", PATH_FIELD, msg);
    let raw = p.filter(|s| !s.is_empty()).map(str::to_string);
    let raw = raw.unwrap_or_else(|| format!(":runc:{id}"));
    let parts: Vec<&str> = raw.split(':').collect();
    let [slice, prefix, name] = parts[..] else {
        return Err(bad(format!(
            "{raw:?} is not of the form \"slice:prefix:name\" that systemd cgroups (--systemd-cgroup) need"
        )));
    };
    if name.is_empty() || name.contains('/') || prefix.contains('/') {
        return Err(bad(format!(
            "{raw:?}: the unit's prefix and name must be non-empty names without \"/\""
        )));
    }
    if name.ends_with(".slice") {
        return Err(bad(format!(
            "{raw:?}: a slice as the container's unit is not supported; give a scope name"
        )));
    }
    let slice = match slice {
        "" if rootless => "user.slice",
        "" => "system.slice",
        s => s,
    };
    expand_slice(slice).map_err(|m| bad(format!("{raw:?}: {m}")))?;
    let unit = if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    Ok((slice.to_string(), unit))
}

/// A slice's cgroup path below its instance's root: `a-b.slice` is
/// `a.slice/a-b.slice`, `-.slice` the root.
pub(crate) fn expand_slice(slice: &str) -> std::result::Result<PathBuf, String> {
    let Some(base) = slice.strip_suffix(".slice") else {
        return Err(format!("slice {slice:?} does not end in \".slice\""));
    };
    if slice.contains('/') {
        return Err(format!("slice {slice:?} contains \"/\""));
    }
    if base == "-" {
        return Ok(PathBuf::new());
    }
    let mut out = PathBuf::new();
    let mut prefix = String::new();
    for comp in base.split('-') {
        if comp.is_empty() {
            return Err(format!("slice {slice:?} has an empty component"));
        }
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(comp);
        out.push(format!("{prefix}.slice"));
    }
    Ok(out)
}

/// A container's cgroups made and ruled by systemd: the scope unit, and the
/// cgroupfs manager of its directory for the rest.
pub struct SystemdManager {
    unit: String,
    slice: String,
    instance: Instance,
    v2: bool,
    /// Whether `apply` creates the unit (a new container) or only joins.
    create: AtomicBool,
    /// Whether the unit may exist (systemd accepted its start, or a loaded container).
    started: AtomicBool,
    /// A loaded container (`update`), whose processes may be running its code.
    loaded: bool,
    conn: Mutex<Option<Conn>>,
    fs: Box<dyn Manager>,
}

impl std::fmt::Debug for SystemdManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemdManager")
            .field("unit", &self.unit)
            .field("slice", &self.slice)
            .field("fs", &self.fs)
            .finish()
    }
}

/// The manager of a new container under systemd. Connects to the bus first:
/// an unreachable bus fails here, before anything exists.
pub(crate) fn new(cgroups_path: Option<&str>, id: &str) -> Result<Box<dyn Manager>> {
    let instance = Instance::detect();
    let (slice, unit) = parse_path(cgroups_path, id, instance != Instance::System)?;
    let layout = Layout::detect()?;
    let mode = layout.mode()?;
    // A user's systemd delegates only on cgroup v2 (v1 hierarchies are root's): refused
    // before anything is made, as runc refuses it.
    if let (Instance::User(uid), Mode::Legacy | Mode::Hybrid) = (instance, mode) {
        return Err(Error::msg(format!(
            "systemd cgroup driver: rootless containers (uid {uid}) need cgroup v2: this host has cgroup v1 controllers, which the user's systemd cannot delegate"
        )));
    }
    let mut conn = instance.connect()?;
    let mut base = PathBuf::new();
    if let Instance::User(_) = instance {
        let m = conn
            .call(
                SYSTEMD,
                SYSTEMD_PATH,
                "org.freedesktop.DBus.Properties",
                "Get",
                &[
                    Value::Str(MANAGER.into()),
                    Value::Str("ControlGroup".into()),
                ],
            )
            .map_err(|e| bus_err("read the user manager's ControlGroup", e))?;
        base.push(
            m.args
                .first()
                .map(|s| s.trim_start_matches('/'))
                .unwrap_or(""),
        );
    }
    base.push(expand_slice(&slice).map_err(Error::msg)?);
    base.push(&unit);
    let inner = Inner::Absolute(base);
    let (fs, v2): (Box<dyn Manager>, bool) = match mode {
        Mode::Legacy | Mode::Hybrid => {
            (Box::new(super::v1::V1Manager::new(&layout, &inner)?), false)
        }
        Mode::Unified => (Box::new(super::v2::V2Manager::new(&layout, &inner)?), true),
    };
    Ok(Box::new(SystemdManager {
        unit,
        slice,
        instance,
        v2,
        create: AtomicBool::new(true),
        started: AtomicBool::new(false),
        loaded: false,
        conn: Mutex::new(Some(conn)),
        fs,
    }))
}

/// The manager of an existing container from its stored paths: its unit is
/// the `.scope` directory they end in. Paths without one were not made by
/// systemd: `fs` is returned as it is.
pub(crate) fn load(paths: &BTreeMap<String, PathBuf>, fs: Box<dyn Manager>) -> Box<dyn Manager> {
    let unit = paths.values().find_map(|p| {
        let n = p.file_name()?.to_str()?;
        n.ends_with(".scope").then(|| n.to_string())
    });
    let Some(unit) = unit else { return fs };
    let v2 = paths.len() == 1 && paths.contains_key(super::v2::KEY);
    Box::new(SystemdManager {
        unit,
        slice: String::new(),
        instance: Instance::detect(),
        v2,
        create: AtomicBool::new(false),
        started: AtomicBool::new(true),
        loaded: true,
        conn: Mutex::new(None),
        fs,
    })
}

impl SystemdManager {
    /// Run `f` with the bus connection, connecting on first use.
    fn with_bus<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(self.instance.connect()?);
        }
        f(guard.as_mut().expect("connected just above"))
    }

    /// Wait until systemd reports `job` finished; anything but "done" fails.
    fn wait_job(&self, c: &mut Conn, job: &str, what: &str) -> Result<()> {
        let m = c
            .wait_signal("JobRemoved", |m| {
                m.args.get(1).map(String::as_str) == Some(job)
            })
            .map_err(|e| bus_err(&format!("wait for {what} of unit {}", self.unit), e))?;
        match m.args.get(3).map(String::as_str) {
            Some("done") => Ok(()),
            r => Err(Error::msg(format!(
                "systemd cgroup driver: {what} of unit {} failed: job result {:?}",
                self.unit,
                r.unwrap_or("")
            ))),
        }
    }

    fn start_unit(&self, pid: i32) -> Result<()> {
        let description = format!("brig container {}", self.unit);
        let props = props::base(&description, &self.slice, pid as u32, self.v2);
        self.with_bus(|c| {
            let reply = match c.call(
                SYSTEMD,
                SYSTEMD_PATH,
                MANAGER,
                "StartTransientUnit",
                &[
                    Value::Str(self.unit.clone()),
                    Value::Str("replace".into()),
                    Value::Props(props),
                    Value::AuxUnits,
                ],
            ) {
                Ok(reply) => reply,
                // The unit of another container with the same cgroupsPath: this one joins
                // its cgroup (the cgroupfs backend writes the pid there), as runc's does.
                Err(BusError::Reply { name, .. })
                    if name == "org.freedesktop.systemd1.UnitExists" =>
                {
                    self.started.store(true, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) => return Err(bus_err(&format!("start unit {}", self.unit), e)),
            };
            self.started.store(true, Ordering::Relaxed);
            let job = reply.args.first().cloned().unwrap_or_default();
            self.wait_job(c, &job, "start")
        })
    }

    /// SetUnitProperties of the unit with `p`, for its runtime (not saved to disk).
    fn set_properties(&self, p: Vec<(String, Value)>) -> Result<()> {
        self.with_bus(|c| {
            c.call(
                SYSTEMD,
                SYSTEMD_PATH,
                MANAGER,
                "SetUnitProperties",
                &[
                    Value::Str(self.unit.clone()),
                    Value::Bool(true),
                    Value::Props(p),
                ],
            )
            .map(|_| ())
            .map_err(|e| bus_err(&format!("set properties of unit {}", self.unit), e))
        })
    }

    fn stop_unit(&self) -> Result<()> {
        self.with_bus(|c| {
            match c.call(
                SYSTEMD,
                SYSTEMD_PATH,
                MANAGER,
                "StopUnit",
                &[Value::Str(self.unit.clone()), Value::Str("replace".into())],
            ) {
                Ok(reply) => {
                    let job = reply.args.first().cloned().unwrap_or_default();
                    self.wait_job(c, &job, "stop")
                }
                // Gone already (systemd collects a scope once it is empty).
                Err(BusError::Reply { name, .. })
                    if name == "org.freedesktop.systemd1.NoSuchUnit" =>
                {
                    Ok(())
                }
                Err(e) => Err(bus_err(&format!("stop unit {}", self.unit), e)),
            }
        })
    }
}

impl Manager for SystemdManager {
    fn apply(&self, pid: i32) -> Result<()> {
        if self.create.swap(false, Ordering::Relaxed) {
            self.start_unit(pid)?;
            // systemd enables only the controllers it manages (not hugetlb, rdma, misc) on
            // the way to the scope; the container gets every one its ancestors have, as
            // with the cgroupfs driver (runc: the scope's controllers equal its slice's).
            if self.v2 {
                for dir in self.fs.paths().values() {
                    super::v2::enable_ancestor_controllers(dir);
                }
            }
        }
        // The hierarchies systemd does not manage (v1), and the pid's place in them.
        self.fs.apply(pid)
    }

    fn set(&self, r: &LinuxResources) -> Result<()> {
        let p = props::resources(r, self.v2);
        if !p.is_empty() {
            // On cgroup v1 systemd applies a unit's device rules by denying every device
            // first: a running container would see spurious EPERM (opening /dev/null). As
            // runc, a running container is frozen while systemd sets properties (unless it
            // already is), and thawed after. Not at create: the init runs none of the
            // container's code yet (and a run -d hung once in the emulated hybrid guest
            // when its init was frozen mid-setup).
            let freeze = !self.v2 && self.loaded && !self.fs.state_frozen().unwrap_or(true);
            if freeze {
                self.fs.freeze()?;
            }
            let set = self.set_properties(p);
            let thawed = if freeze { self.fs.thaw() } else { Ok(()) };
            set.and(thawed)?;
        }
        self.fs.set(r)
    }

    fn freeze(&self) -> Result<()> {
        self.fs.freeze()
    }

    fn thaw(&self) -> Result<()> {
        self.fs.thaw()
    }

    fn state_frozen(&self) -> Result<bool> {
        self.fs.state_frozen()
    }

    fn pids(&self) -> Result<Vec<i32>> {
        self.fs.pids()
    }

    fn destroy(&self) -> Result<()> {
        // A unit systemd never accepted (create failed before) has nothing to stop.
        let stopped = if self.started.load(Ordering::Relaxed) {
            self.stop_unit()
        } else {
            Ok(())
        };
        let removed = self.fs.destroy();
        stopped.and(removed)
    }

    fn paths(&self) -> BTreeMap<String, PathBuf> {
        self.fs.paths()
    }

    fn mounts(&self) -> Vec<CgroupMount> {
        self.fs.mounts()
    }

    fn current(&self, like: &LinuxResources) -> Result<LinuxResources> {
        self.fs.current(like)
    }

    fn stats(&self) -> Result<Stats> {
        self.fs.stats()
    }

    fn watch_oom(&self) -> Result<OomWatch> {
        self.fs.watch_oom()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_path_forms() {
        let p = |s: Option<&str>| parse_path(s, "ctr", false).map_err(|e| e.to_string());
        assert_eq!(
            p(Some("system.slice:cri-containerd:abc")),
            Ok(("system.slice".into(), "cri-containerd-abc.scope".into()))
        );
        assert_eq!(
            p(None),
            Ok(("system.slice".into(), "runc-ctr.scope".into()))
        );
        assert_eq!(
            p(Some("::x")),
            Ok(("system.slice".into(), "x.scope".into()))
        );
        assert_eq!(
            parse_path(None, "ctr", true).map_err(|e| e.to_string()),
            Ok(("user.slice".into(), "runc-ctr.scope".into()))
        );
        for bad in [
            "/a/b",
            "a:b",
            "x:p:n",
            "a.slice:p:",
            "a/b.slice:p:n",
            "a--b.slice:p:n",
        ] {
            let e = p(Some(bad)).unwrap_err();
            assert!(e.contains("linux.cgroupsPath"), "{bad}: {e}");
        }
    }

    #[test]
    fn slices_expand() {
        assert_eq!(expand_slice("-.slice"), Ok(PathBuf::new()));
        assert_eq!(
            expand_slice("a-b-c.slice"),
            Ok(PathBuf::from("a.slice/a-b.slice/a-b-c.slice"))
        );
        assert!(expand_slice("system").is_err());
    }
}
