//! RUN: an OCI bundle over the mounted overlay, executed by a runc-compatible runtime.
//!
//! Owns the bundle's `config.json` (process from the image config: args, env, user, cwd; the
//! default namespaces; /proc, /dev, /sys mounts; for the default and host networks the host's
//! network namespace and its /etc/resolv.conf bound read-only) and the runtime's command line:
//! `RUNTIME --root STATE run --bundle DIR ID`. The runtime is only ever driven by that command
//! line, so runc, crun or brig all work. Mount points the runtime needs but the image lacks are
//! created before the run and removed from the new layer after, so they never leak into it.

use crate::fsroot::Root;
use rustix::fs::OFlags;
use serde_json::{json, Value};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `--network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Host network namespace, host resolv.conf (what `docker build` gives by default).
    Default,
    /// A new, empty network namespace.
    None,
    /// Host network namespace, resolv.conf and hosts.
    Host,
}

/// `--network` of the command line or of a RUN.
pub fn parse_network(s: &str) -> Result<Network, String> {
    match s {
        "default" => Ok(Network::Default),
        "none" => Ok(Network::None),
        "host" => Ok(Network::Host),
        _ => Err(format!("--network={s}: expected default, none or host")),
    }
}

/// The capabilities docker gives a RUN step.
const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// What one RUN executes.
pub struct Process {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub uid: u32,
    pub gid: u32,
    pub cwd: String,
}

/// The bundle config for `rootfs` (absolute path of the mounted overlay).
pub fn spec(p: &Process, rootfs: &Path, net: Network) -> Value {
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    match net {
        Network::None => namespaces.push(json!({"type": "network"})),
        Network::Default | Network::Host => {
            for f in host_net_files(net) {
                mounts.push(json!({"destination": f, "type": "bind", "source": f,
                                   "options": ["rbind", "ro"]}));
            }
        }
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": p.uid, "gid": p.gid},
            "args": p.args,
            "env": p.env,
            "cwd": p.cwd,
            "capabilities": {"bounding": CAPS, "effective": CAPS, "permitted": CAPS},
            "noNewPrivileges": false
        },
        "root": {"path": rootfs, "readonly": false},
        "hostname": "brig-build",
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                            "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"]
        }
    })
}

/// The host files bound into a RUN step for `net` (only those that exist).
pub fn host_net_files(net: Network) -> Vec<&'static str> {
    let files: &[&'static str] = match net {
        Network::None => &[],
        Network::Default => &["/etc/resolv.conf"],
        Network::Host => &["/etc/resolv.conf", "/etc/hosts"],
    };
    files
        .iter()
        .copied()
        .filter(|f| Path::new(f).exists())
        .collect()
}

/// Runs the bundle at `bundle` with `runtime`; returns the exit code (128+signal if the
/// runtime died of a signal). The step's and the runtime's output (stdout and stderr through
/// one pipe, in order) go to `output` as they come.
pub fn run_bundle(
    runtime: &Path,
    state: &Path,
    bundle: &Path,
    id: &str,
    output: &mut dyn FnMut(&[u8]),
) -> io::Result<i32> {
    use std::os::unix::process::ExitStatusExt;
    let (mut r, w) = io::pipe()?;
    let mut child = {
        // The command holds the pipe's write ends: dropped at the end of this block, so the
        // read below ends when the runtime and the step have closed theirs.
        let mut cmd = Command::new(runtime);
        cmd.arg("--root")
            .arg(state)
            .arg("run")
            .arg("--bundle")
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(w.try_clone()?)
            .stderr(w);
        cmd.spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", runtime.display())))?
    };
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => output(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        }
    }
    let st = child.wait()?;
    // A runtime that died before deleting: remove the container (errors mean it is gone).
    let _ = Command::new(runtime)
        .arg("--root")
        .arg(state)
        .args(["delete", "--force", id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    Ok(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)))
}

/// The runtime to use: `--runtime`, else `brig` next to this binary, else `brig` in PATH.
pub fn default_runtime() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            let p = dir.join("brig");
            if p.is_file() {
                return p;
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join("brig");
            if p.is_file() {
                return p;
            }
        }
    }
    PathBuf::from("brig")
}

/// Reads a file of the rootfs (in-root resolution); None if it does not exist.
pub fn read_in_root(root: &Root, rel: &str) -> io::Result<Option<String>> {
    match root.open_at(Path::new(rel), OFlags::RDONLY) {
        Ok(fd) => {
            let mut s = String::new();
            std::fs::File::from(fd).read_to_string(&mut s)?;
            Ok(Some(s))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Resolves `USER`-style `user[:group]` against the rootfs' /etc/passwd and /etc/group.
pub fn lookup_user(root: &Root, spec: &str) -> Result<(u32, u32), String> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_in_root(root, "etc/passwd").map_err(|e| e.to_string())?;
    let entry = |name: &str, by_id: Option<u32>| -> Option<(u32, u32)> {
        passwd.as_deref()?.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            let (uid, gid) = (f[2].parse().ok()?, f[3].parse().ok()?);
            (f[0] == name || by_id == Some(uid)).then_some((uid, gid))
        })
    };
    let (uid, mut gid) = match u.parse::<u32>() {
        Ok(n) => (n, entry("", Some(n)).map(|e| e.1).unwrap_or(0)),
        Err(_) => entry(u, None).ok_or_else(|| {
            format!("unable to find user {u}: no matching entries in passwd file")
        })?,
    };
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let group = read_in_root(root, "etc/group").map_err(|e| e.to_string())?;
                group
                    .as_deref()
                    .and_then(|t| {
                        t.lines().find_map(|l| {
                            let f: Vec<&str> = l.split(':').collect();
                            (f.len() >= 3 && f[0] == g)
                                .then(|| f[2].parse().ok())
                                .flatten()
                        })
                    })
                    .ok_or_else(|| {
                        format!("unable to find group {g}: no matching entries in group file")
                    })?
            }
        };
    }
    Ok((uid, gid))
}
