//! A busybox rootfs and the bundle around it: [`default_spec`] (what `runc spec` writes, non-terminal), [`Bundle`], and shorthands that edit a config.

use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where busybox lives on the host.
pub fn busybox_path() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    panic!("busybox not found: apt-get install -y busybox-static");
}

/// busybox's applets, asked once per test process.
fn applets() -> &'static [String] {
    static APPLETS: OnceLock<Vec<String>> = OnceLock::new();
    APPLETS.get_or_init(|| {
        let out = Command::new(busybox_path())
            .arg("--list")
            .output()
            .expect("busybox --list");
        assert!(out.status.success(), "busybox --list failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty() && l != "busybox" && !l.contains('/'))
            .collect()
    })
}

pub const ETC_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
brig:x:1000:1000:brig test user:/tmp:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
";

pub const ETC_GROUP: &str = "root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
tty:x:5:
uucp:x:10:
dialout:x:20:
audio:x:29:
brig:x:1000:
nogroup:x:65534:
";

/// Builds a busybox rootfs in `dir` (created if missing): bin/busybox plus a symlink per applet,
/// etc/{passwd,group,hostname}, tmp (1777), proc sys dev root mnt dirs; `dir` gets mode 0755.
pub fn busybox_rootfs(dir: &Path) {
    let d = |p: &str, mode: u32| {
        let path = dir.join(p);
        fs::create_dir_all(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    };
    d("", 0o755);
    for p in [
        "bin", "etc", "proc", "sys", "dev", "root", "mnt", "usr", "usr/bin",
    ] {
        d(p, 0o755);
    }
    d("tmp", 0o1777);
    fs::copy(busybox_path(), dir.join("bin/busybox")).expect("copy busybox");
    fs::set_permissions(dir.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
    for a in applets() {
        let _ = symlink("busybox", dir.join("bin").join(a));
    }
    fs::write(dir.join("etc/passwd"), ETC_PASSWD).unwrap();
    fs::write(dir.join("etc/group"), ETC_GROUP).unwrap();
    fs::write(dir.join("etc/hostname"), "brig-test\n").unwrap();
}

/// The default config: what `runc spec` writes, but non-terminal, ociVersion 1.0.2, without
/// ambient capabilities and running `args`.
pub fn default_spec(args: &[&str]) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024u64, "soft": 1024u64}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "brig",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

/// A temporary bundle: `<dir>/rootfs` (busybox) and `<dir>/config.json`.
pub struct Bundle {
    dir: tempfile::TempDir,
    path_str: String,
    config: Value,
}

impl Bundle {
    /// A bundle running `args` with the default spec.
    pub fn new(args: &[&str]) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("brig-bundle-")
            .tempdir()
            .expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        busybox_rootfs(&dir.path().join("rootfs"));
        let path_str = dir.path().to_str().expect("utf-8 temp path").to_string();
        let b = Bundle {
            dir,
            path_str,
            config: default_spec(args),
        };
        b.write_config();
        b
    }

    /// A bundle running `sh -c SCRIPT`.
    pub fn sh(script: &str) -> Bundle {
        Bundle::new(&["sh", "-c", script])
    }

    /// Edits the config (builder style) and rewrites config.json.
    pub fn with(mut self, f: impl FnOnce(&mut Value)) -> Self {
        self.edit(f);
        self
    }

    /// Edits the config in place and rewrites config.json.
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) {
        f(&mut self.config);
        self.write_config();
    }

    pub fn config(&self) -> &Value {
        &self.config
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn path_str(&self) -> &str {
        &self.path_str
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    /// Writes the current config to config.json.
    pub fn write_config(&self) {
        fs::write(
            self.config_path(),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    /// Overwrites config.json with arbitrary text.
    pub fn write_raw_config(&self, text: &str) {
        fs::write(self.config_path(), text).unwrap();
    }

    /// `linux.cgroupsPath` of the config, if any.
    pub fn cgroups_path(&self) -> Option<String> {
        self.config["linux"]["cgroupsPath"]
            .as_str()
            .map(str::to_string)
    }

    /// A new directory inside the bundle dir (host side), e.g. for hook output or bind mounts.
    pub fn host_dir(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::create_dir_all(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o777)).unwrap();
        p
    }
}

/// Sets process.args.
pub fn set_args(cfg: &mut Value, args: &[&str]) {
    cfg["process"]["args"] = json!(args);
}

/// Appends a mount.
pub fn add_mount(cfg: &mut Value, mount: Value) {
    cfg["mounts"].as_array_mut().unwrap().push(mount);
}

/// Removes the namespace of `ty` from linux.namespaces.
pub fn remove_namespace(cfg: &mut Value, ty: &str) {
    cfg["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != ty);
}

/// Sets (or adds) the namespace of `ty` with `path`.
pub fn set_namespace_path(cfg: &mut Value, ty: &str, path: &str) {
    remove_namespace(cfg, ty);
    cfg["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": ty, "path": path}));
}
