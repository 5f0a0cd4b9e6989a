//! RUN: an OCI bundle over the mounted overlay, executed by a runc-compatible runtime.
//!
//! Owns the bundle's `config.json` (process from the image config: args, env, user, cwd; the
//! default namespaces; /proc, /dev, /sys mounts; the host's network namespace for the default
//! and host networks; the host's /etc/resolv.conf and a generated /etc/hosts bound read-only,
//! as BuildKit binds them) and the runtime's command line:
//! `RUNTIME --root STATE run --bundle DIR ID`. The runtime is only ever driven by that command
//! line, so runc, crun or brig all work. Mount points the runtime needs but the image lacks are
//! created before the run and removed from the new layer after, so they never leak into it.

use super::{
    contexts, lock, mounts, Builder, Result as BuildResult, State, CURRENT_STEP, DEFAULT_PATH,
};
use crate::dockerfile::{Command as Cmd, RunArgs};
use crate::fsroot::Root;
use rustix::fs::OFlags;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `--network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Host network namespace (what `docker build` gives by default, with a bridge there).
    Default,
    /// A new, empty network namespace.
    None,
    /// Host network namespace (BuildKit's `network.host` entitlement).
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

/// What buildx's `--add-host`, `--shm-size` and `--ulimit` give every RUN step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunExtra {
    /// (name, address) lines added to /etc/hosts.
    pub hosts: Vec<(String, String)>,
    /// The size of /dev/shm in bytes (default 64 MiB).
    pub shm_bytes: Option<u64>,
    /// (RLIMIT_NAME, soft, hard).
    pub ulimits: Vec<(String, u64, u64)>,
}

impl RunExtra {
    pub fn is_empty(&self) -> bool {
        *self == RunExtra::default()
    }

    /// Parses `--add-host NAME:IP` (an IPv6 address may hold colons: the name ends at the
    /// first one, as docker's; `NAME=IP` too, as buildx).
    pub fn add_host(&mut self, s: &str) -> Result<(), String> {
        let (name, ip) = s
            .split_once('=')
            .or_else(|| s.split_once(':'))
            .ok_or_else(|| format!("--add-host {s:?}: expected NAME:IP"))?;
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!("--add-host {s:?}: invalid host name {name:?}"));
        }
        ip.parse::<std::net::IpAddr>()
            .map_err(|_| format!("--add-host {s:?}: {ip:?} is not an IP address"))?;
        self.hosts.push((name.to_string(), ip.to_string()));
        Ok(())
    }

    /// Parses `--shm-size 128m` (b, k, m, g; bytes without a unit), at most 64 GiB.
    pub fn shm_size(&mut self, s: &str) -> Result<(), String> {
        let t = s.trim().to_ascii_lowercase();
        let (num, mult) = match t.strip_suffix('b').unwrap_or(&t) {
            n if n.ends_with('k') => (&n[..n.len() - 1], 1u64 << 10),
            n if n.ends_with('m') => (&n[..n.len() - 1], 1 << 20),
            n if n.ends_with('g') => (&n[..n.len() - 1], 1 << 30),
            n => (n, 1),
        };
        let bytes = num
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(mult))
            .filter(|&b| b > 0 && b <= 64 << 30)
            .ok_or_else(|| {
                format!("--shm-size {s:?}: expected a size from 1 byte to 64g (e.g. 128m)")
            })?;
        self.shm_bytes = Some(bytes);
        Ok(())
    }

    /// Parses `--ulimit NAME=SOFT[:HARD]` (docker's names: nofile, nproc, core, ...; -1 or
    /// `unlimited` for no limit).
    pub fn ulimit(&mut self, s: &str) -> Result<(), String> {
        let (name, vals) = s
            .split_once('=')
            .ok_or_else(|| format!("--ulimit {s:?}: expected NAME=SOFT[:HARD]"))?;
        const NAMES: &[&str] = &[
            "as",
            "core",
            "cpu",
            "data",
            "fsize",
            "locks",
            "memlock",
            "msgqueue",
            "nice",
            "nofile",
            "nproc",
            "rss",
            "rtprio",
            "rttime",
            "sigpending",
            "stack",
        ];
        if !NAMES.contains(&name) {
            return Err(format!(
                "--ulimit {s:?}: unknown limit {name:?} ({})",
                NAMES.join(", ")
            ));
        }
        let num = |v: &str| -> Result<u64, String> {
            match v {
                "-1" | "unlimited" => Ok(u64::MAX),
                _ => v
                    .parse()
                    .map_err(|_| format!("--ulimit {s:?}: {v:?} is not a number")),
            }
        };
        let (soft, hard) = match vals.split_once(':') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(vals)?, num(vals)?),
        };
        if soft > hard {
            return Err(format!(
                "--ulimit {s:?}: the soft limit is above the hard one"
            ));
        }
        self.ulimits
            .push((format!("RLIMIT_{}", name.to_ascii_uppercase()), soft, hard));
        Ok(())
    }

    /// Applies these to a RUN step's `spec`; `area` is the step's work dir (for /etc/hosts).
    pub fn apply(&self, spec: &mut Value, area: &Path) -> std::io::Result<()> {
        if let Some(b) = self.shm_bytes {
            if let Some(m) = spec["mounts"]
                .as_array_mut()
                .and_then(|ms| ms.iter_mut().find(|m| m["destination"] == "/dev/shm"))
            {
                if let Some(opts) = m["options"].as_array_mut() {
                    opts.retain(|o| !o.as_str().is_some_and(|o| o.starts_with("size=")));
                    opts.push(json!(format!("size={}k", b.div_ceil(1024))));
                }
            }
        }
        if !self.ulimits.is_empty() {
            spec["process"]["rlimits"] = json!(self
                .ulimits
                .iter()
                .map(|(t, soft, hard)| json!({"type": t, "soft": soft, "hard": hard}))
                .collect::<Vec<_>>());
        }
        // Every step gets a generated /etc/hosts, whatever the network (BuildKit's): localhost
        // and the step's own hostname resolve (a tool that looks its host up, as the JVM does,
        // works under --network none), then the --add-host lines.
        let mut text =
            format!("127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        for (name, ip) in &self.hosts {
            text.push_str(&format!("{ip}\t{name}\n"));
        }
        let file = area.join("hosts");
        std::fs::write(&file, text)?;
        if let Some(ms) = spec["mounts"].as_array_mut() {
            ms.retain(|m| m["destination"] != "/etc/hosts");
            ms.push(
                json!({"destination": "/etc/hosts", "type": "bind", "source": file,
                           "options": ["nosuid", "noexec", "nodev", "rbind", "ro"]}),
            );
        }
        Ok(())
    }
}

/// The hostname of every RUN step (in its /etc/hosts too).
const HOSTNAME: &str = "brig-build";

/// What one RUN executes.
pub struct Process {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub uid: u32,
    pub gid: u32,
    pub cwd: String,
}

/// The bundle config for `rootfs` (absolute path of the mounted overlay); `own_userns`: the
/// runtime runs in a user namespace of the RUN's own (an emulated RUN, [`crate::emulate`]).
pub fn spec(p: &Process, rootfs: &Path, net: Network, own_userns: bool) -> Value {
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
        // The step's own cgroups, read-only, as BuildKit mounts them (a JVM or a build tool
        // reads its limits there).
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if !crate::procfs::own_proc() {
        // A new proc is refused under this container's masked /proc (see procfs): bind it.
        mounts[0] = json!({"destination": "/proc", "type": "bind", "source": "/proc",
                           "options": ["rbind", "nosuid", "noexec", "nodev"]});
    }
    if net != Network::None && (own_userns || crate::idmap::in_user_namespace()) {
        // sysfs may be mounted only by the owner of the network namespace: a runtime in a user
        // namespace (a plain user's build, an emulated RUN) with the host's network binds the
        // host's /sys (read-only), as buildah does.
        mounts[5] = json!({"destination": "/sys", "type": "bind", "source": "/sys",
                           "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
    }
    if net == Network::None {
        namespaces.push(json!({"type": "network"}));
    }
    for f in host_net_files() {
        mounts.push(json!({"destination": f, "type": "bind", "source": f,
                           "options": ["nosuid", "noexec", "nodev", "rbind", "ro"]}));
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
        "hostname": HOSTNAME,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                            "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
            "seccomp": super::seccomp::profile()
        }
    })
}

/// The host files bound into a RUN step (only those that exist): the host's
/// /etc/resolv.conf, whatever the network, as BuildKit binds one into every step.
pub fn host_net_files() -> Vec<&'static str> {
    ["/etc/resolv.conf"]
        .into_iter()
        .filter(|f| Path::new(f).exists())
        .collect()
}

/// Runs the bundle at `bundle` with `runtime`; returns the exit code (128+signal if the
/// runtime died of a signal). The step's and the runtime's output (stdout and stderr through
/// one pipe, in order) go to `output` as they come. With `emulator`, the runtime runs in a
/// user namespace of its own where that emulator is registered ([`crate::emulate::spawn`],
/// binfmt_misc mounted on `bundle/binfmt`).
pub fn run_bundle(
    runtime: &Path,
    state: &Path,
    bundle: &Path,
    id: &str,
    emulator: Option<&crate::emulate::Handler>,
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
        match emulator {
            None => cmd.spawn(),
            Some(h) => {
                let dir = bundle.join("binfmt");
                fs::create_dir_all(&dir)?;
                crate::emulate::spawn(&mut cmd, h, &dir)
            }
        }
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

/// The owner BuildKit gives what a file operation creates for USER `spec` (WORKDIR's
/// directory; BuildKit's `llb.WithUser`): a numeric user is its own group too, a named one
/// takes its passwd uid and group (root without an entry); a group after `:` is numeric or
/// looked up in /etc/group.
pub fn file_op_owner(root: &Root, spec: &str) -> Result<(u32, u32), String> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, gid) = match u.parse::<u32>() {
        Ok(n) => (n, n),
        Err(_) => lookup_user(root, u).unwrap_or((0, 0)),
    };
    let gid = match g {
        None => gid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup_user(root, &format!("0:{g}"))?.1,
        },
    };
    Ok((uid, gid))
}

impl Builder<'_> {
    pub(super) fn run_step(
        &self,
        st: &mut State,
        line: usize,
        r: &RunArgs,
        text: &str,
        done: &HashMap<usize, State>,
    ) -> BuildResult<()> {
        let c = &r.cmd;
        let network = match r.network.as_deref() {
            None => self.opts.network,
            Some(n) => parse_network(n).map_err(|e| self.err(line, e))?,
        };
        let mut specs = Vec::new();
        for m in &r.mounts {
            let m = self.word(st, line, m)?;
            specs.push(
                mounts::parse(&m).map_err(|e| self.err(line, format!("RUN --mount={m}: {e}")))?,
            );
        }
        let (area, m) = self.mount_rw(st, line)?;
        let merged = area.join("merged");
        let root = Root::open(&merged).map_err(|e| self.err(line, e))?;
        // Mount points the runtime needs: made now, removed from the layer after.
        let mut made: Vec<PathBuf> = Vec::new();
        for d in ["proc", "sys", "dev"] {
            let (_, created) = root
                .mkdir_all(Path::new(d), 0o755)
                .map_err(|e| self.err(line, e))?;
            made.extend(created);
        }
        // An empty file as a mount point (and its parent dirs), unless there is one.
        let touch = |rel: &Path, made: &mut Vec<PathBuf>| -> BuildResult<()> {
            if root.open_at(rel, rustix::fs::OFlags::PATH).is_ok() {
                return Ok(());
            }
            let (pfd, created) = root
                .mkdir_all(rel.parent().unwrap_or(Path::new("")), 0o755)
                .map_err(|e| self.err(line, e))?;
            made.extend(created);
            rustix::fs::openat(
                &pfd,
                rel.file_name().expect("file has a name"),
                rustix::fs::OFlags::CREATE
                    | rustix::fs::OFlags::WRONLY
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::from_raw_mode(0o644),
            )
            .map_err(|e| self.err(line, std::io::Error::from(e)))?;
            made.push(rel.to_path_buf());
            Ok(())
        };
        let extra = self.run_mounts(st, line, &specs, &area, done)?;
        for (t, is_dir) in &extra.targets {
            let rel = Path::new(t.trim_start_matches('/'));
            if *is_dir {
                let (_, created) = root.mkdir_all(rel, 0o755).map_err(|e| self.err(line, e))?;
                made.extend(created);
            } else {
                touch(rel, &mut made)?;
            }
        }
        for f in host_net_files() {
            touch(Path::new(f.trim_start_matches('/')), &mut made)?;
        }
        touch(Path::new("etc/hosts"), &mut made)?;
        let cwd = st.workdir();
        root.mkdir_all(Path::new(&cwd), 0o755)
            .map_err(|e| self.err(line, e))?;
        let (uid, gid) = match st.config.config.user.as_deref() {
            None | Some("") => (0, 0),
            Some(u) => lookup_user(&root, u).map_err(|e| self.err(line, e))?,
        };
        let mut env: Vec<String> = st.config.config.env.clone().unwrap_or_default();
        for (k, v) in &st.args {
            if st.config.env(k).is_none() {
                env.push(format!("{k}={v}"));
            }
        }
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        env.extend(extra.env.iter().cloned());
        let mut extra_oci = extra.oci.clone();
        let args = match &r.heredoc {
            // A heredoc with a shebang is a script file run by its interpreter (BuildKit).
            Some(h) if h.content.starts_with("#!") => {
                let script = area.join("heredoc-script");
                fs::write(&script, &h.content).map_err(|e| self.err(line, e))?;
                fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                    .map_err(|e| self.err(line, e))?;
                let dst = format!("/dev/pipes/{}", h.name);
                extra_oci.push(json!({"destination": dst, "type": "bind",
                                      "source": script, "options": ["rbind", "ro"]}));
                vec![dst]
            }
            _ => Self::argv(st, c),
        };
        let proc_ = Process {
            args: args.clone(),
            env,
            uid,
            gid,
            cwd,
        };
        let emulator = if crate::emulate::needed(&st.platform) {
            let p = st.platform.to_string();
            Some(self.opts.emulators.get(&p).ok_or_else(|| {
                self.err(
                    line,
                    format!(
                        "RUN for {p}: not a platform of this build (--platform), so it has no \
                         emulator; add {p} to --platform"
                    ),
                )
            })?)
        } else {
            None
        };
        let mut spec = spec(&proc_, &merged, network, emulator.is_some());
        if let Some(ms) = spec["mounts"].as_array_mut() {
            ms.extend(extra_oci);
        }
        self.opts
            .run_extra
            .apply(&mut spec, &area)
            .map_err(|e| self.err(line, e))?;
        fs::write(
            area.join("config.json"),
            serde_json::to_vec_pretty(&spec).expect("json"),
        )
        .map_err(|e| self.err(line, e))?;
        let n = area.file_name().map(|n| n.to_string_lossy().into_owned());
        let id = format!(
            "brig-build-{}-{}",
            std::process::id(),
            n.unwrap_or_default()
        );
        let code = run_bundle(
            &self.opts.runtime,
            &self.work.path().join("state"),
            &area,
            &id,
            emulator,
            &mut |d| lock(&self.progress).run_output(CURRENT_STEP.with(|c| c.get()), d),
        )
        .map_err(|e| self.err(line, format!("RUN: cannot start the runtime: {e}")))?;
        let why = if code != 0 {
            unmapped_chown(&root, &args.join(" "))
        } else {
            None
        };
        drop(root);
        extra.finish().map_err(|e| self.err(line, e))?;
        m.unmount().map_err(|e| self.err(line, e))?;
        if code != 0 {
            return Err(self.err(
                line,
                match why {
                    Some(why) => format!(
                        "RUN {} returned a non-zero code: {code}; the step's chown: {why}",
                        show_cmd(c)
                    ),
                    None => format!("RUN {} returned a non-zero code: {code}", show_cmd(c)),
                },
            ));
        }
        let upper = area.join("upper");
        for p in made.iter().rev() {
            let up = upper.join(p);
            if let Ok(md) = up.symlink_metadata() {
                if md.is_dir() {
                    let _ = fs::remove_dir(&up);
                } else if md.len() == 0 {
                    let _ = fs::remove_file(&up);
                }
            }
        }
        let _ = text;
        let by = format!("RUN {}", args.join(" "));
        self.commit_layer(st, line, &upper, &by)
    }

    /// Sets up a RUN's `--mount`s in its work area.
    pub(super) fn run_mounts(
        &self,
        st: &State,
        line: usize,
        specs: &[mounts::Spec],
        area: &Path,
        done: &HashMap<usize, State>,
    ) -> BuildResult<mounts::Prepared> {
        let mut stage_layers = |f: &str| -> Result<mounts::From, String> {
            let f = self.word(st, line, f).map_err(|e| e.to_string())?;
            match self.df.stage(&f) {
                Some(s) => Ok(mounts::From::Layers(
                    done.get(&s.index)
                        .ok_or_else(|| format!("from={f}: stage not built before this one"))?
                        .layers
                        .iter()
                        .map(|l| l.dir.clone())
                        .collect(),
                )),
                None => match self.opts.build_contexts.get(&f.to_ascii_lowercase()) {
                    Some(contexts::Named::Dir(d)) => Ok(mounts::From::Dir(d.clone())),
                    _ => Err(format!(
                        "from={f}: no stage or directory build context named {f:?}"
                    )),
                },
            }
        };
        let src = mounts::Sources {
            store_root: self.store.root(),
            context: &self.context,
            secrets: &self.opts.secrets,
            ssh: &self.opts.ssh,
            work: &area.join("mounts"),
        };
        mounts::prepare(specs, &src, &mut stage_layers)
            .map_err(|e| self.err(line, format!("RUN --mount: {e}")))
    }
}

/// The `OWNER[:GROUP]` (chown) and `GROUP` (chgrp, as `:GROUP`) arguments a shell command
/// gives, options skipped: what a failed RUN step may have asked for beyond the ids mapped.
fn chown_owners(cmd: &str) -> Vec<String> {
    let words: Vec<String> = cmd
        .split(|c: char| c.is_whitespace() || ";&|()".contains(c))
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_matches(|c| c == '"' || c == '\'').to_string())
        .collect();
    let mut found = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let prog = w.rsplit('/').next().unwrap_or(w);
        if prog != "chown" && prog != "chgrp" {
            continue;
        }
        if let Some(owner) = words[i + 1..].iter().find(|a| !a.starts_with('-')) {
            found.push(if prog == "chgrp" {
                format!(":{owner}")
            } else {
                owner.clone()
            });
        }
    }
    found
}

/// Why a failed RUN step's chown (or chgrp) was refused, when it names an id (by number or by
/// the image's /etc/passwd and /etc/group) outside the ids this build maps (see
/// [`crate::idmap::unmapped`]). None when it names none.
fn unmapped_chown(root: &Root, cmd: &str) -> Option<String> {
    chown_owners(cmd).into_iter().find_map(|o| {
        let (u, g) = o.split_once([':', '.']).unwrap_or((&o, ""));
        let uid = match u {
            "" => 0,
            u => u
                .parse()
                .ok()
                .or_else(|| lookup_user(root, u).ok().map(|e| e.0))?,
        };
        let gid = match g {
            "" => 0,
            g => g
                .parse()
                .ok()
                .or_else(|| lookup_user(root, &format!("0:{g}")).ok().map(|e| e.1))?,
        };
        crate::idmap::unmapped(uid, gid)
    })
}

fn show_cmd(c: &Cmd) -> String {
    match c {
        Cmd::Shell(s) => s.lines().next().unwrap_or("").to_string(),
        Cmd::Exec(v) => serde_json::to_string(v).unwrap_or_default(),
    }
}

#[cfg(test)]
mod chown_tests {
    use super::chown_owners;

    #[test]
    fn chown_and_chgrp_arguments_are_found() {
        assert_eq!(
            chown_owners("/bin/sh -c mkdir /a && chown -R 70000:70000 /a; chgrp app /b"),
            ["70000:70000", ":app"]
        );
        assert_eq!(
            chown_owners("/bin/sh -c /bin/chown --no-dereference 'app' /x|true"),
            ["app"]
        );
        assert!(chown_owners("/bin/sh -c echo chowned").is_empty());
    }
}
