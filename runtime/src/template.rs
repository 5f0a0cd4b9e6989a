//! `brig spec`: the default config.json.
//!
//! This module owns the template `brig spec` writes: the same document
//! `runc spec` (and `runc spec --rootless`) of runc 1.1.5 produces, with
//! ociVersion "1.0.2-dev" and `process.terminal` true. It only builds a
//! value: it must never write files, read the bundle or consult the host
//! beyond the caller's effective uid/gid for the rootless id mappings and
//! whether the host has cgroup v2 alone (as runc does).

use serde_json::{json, Value};

/// The default spec, as `runc spec` prints it; `rootless` gives
/// `runc spec --rootless`: a user namespace mapping container root to the
/// caller's effective uid/gid, no network namespace, /sys bind-mounted, no
/// device cgroup rules and no `gid=5` on /dev/pts. `cgroupns` adds a cgroup
/// namespace, as runc does on a host with cgroup v2 alone
/// ([`host_is_unified`]).
pub fn default_spec(rootless: bool, cgroupns: bool) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);

    let mut devpts_options = vec![
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
    ];
    if !rootless {
        devpts_options.push("gid=5");
    }

    let sys = if rootless {
        json!({
            "destination": "/sys",
            "type": "none",
            "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]
        })
    } else {
        json!({
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"]
        })
    };

    let mut namespaces = vec![json!({"type": "pid"})];
    if !rootless {
        namespaces.push(json!({"type": "network"}));
    }
    namespaces.extend([
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ]);
    if cgroupns {
        namespaces.push(json!({"type": "cgroup"}));
    }
    if rootless {
        namespaces.push(json!({"type": "user"}));
    }

    let mut linux = json!({
        "namespaces": namespaces,
        "maskedPaths": [
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/proc/scsi"
        ],
        "readonlyPaths": [
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
        ]
    });
    if rootless {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        linux["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        linux["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}]);
    } else {
        linux["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
    }

    json!({
        "ociVersion": crate::OCI_VERSION,
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
                "ambient": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": devpts_options
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"]
            },
            sys,
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
            }
        ],
        "linux": linux
    })
}

/// Whether /sys/fs/cgroup is a cgroup2 mount (no v1 hierarchies): where
/// `runc spec` adds a cgroup namespace to the template.
pub fn host_is_unified() -> bool {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
    statfs("/sys/fs/cgroup").is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxNamespaceType, Spec};

    fn ns_types(v: &Value) -> Vec<&str> {
        v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn key_fields() {
        let v = default_spec(false, false);
        assert_eq!(v["ociVersion"], "1.0.2-dev");
        assert_eq!(v["process"]["terminal"], true);
        assert_eq!(v["process"]["args"], json!(["sh"]));
        assert_eq!(v["process"]["noNewPrivileges"], true);
        assert_eq!(v["root"], json!({"path": "rootfs", "readonly": true}));
        assert_eq!(v["hostname"], "runc");
        assert_eq!(v["mounts"].as_array().unwrap().len(), 7);
        assert_eq!(ns_types(&v), ["pid", "network", "ipc", "uts", "mount"]);
        assert_eq!(v["linux"]["resources"]["devices"][0]["access"], "rwm");
        assert!(v["linux"].get("uidMappings").is_none());

        let r = default_spec(true, false);
        assert_eq!(ns_types(&r), ["pid", "ipc", "uts", "mount", "user"]);
        // On a cgroup v2 host runc adds a cgroup namespace (before user, rootless).
        let v = default_spec(false, true);
        assert_eq!(
            ns_types(&v),
            ["pid", "network", "ipc", "uts", "mount", "cgroup"]
        );
        let r = default_spec(true, true);
        assert_eq!(
            ns_types(&r),
            ["pid", "ipc", "uts", "mount", "cgroup", "user"]
        );
        assert!(r["linux"].get("resources").is_none());
        assert_eq!(
            r["linux"]["uidMappings"][0]["hostID"],
            nix::unistd::geteuid().as_raw()
        );
        assert_eq!(r["mounts"][5]["type"], "none");
        assert_eq!(r["mounts"][5]["options"][0], "rbind");
        assert!(!r["mounts"][2]["options"]
            .as_array()
            .unwrap()
            .contains(&json!("gid=5")));
    }

    #[test]
    fn deserialises_into_oci_spec() {
        for rootless in [false, true] {
            let spec: Spec = serde_json::from_value(default_spec(rootless, true)).unwrap();
            assert_eq!(spec.version(), "1.0.2-dev");
            let process = spec.process().as_ref().unwrap();
            assert_eq!(process.terminal(), Some(true));
            let linux = spec.linux().as_ref().unwrap();
            let has_user = linux
                .namespaces()
                .as_ref()
                .unwrap()
                .iter()
                .any(|n| n.typ() == LinuxNamespaceType::User);
            assert_eq!(has_user, rootless);
        }
    }

    /// Compare with `runc spec` itself when runc is installed.
    #[test]
    fn matches_runc_spec() {
        let Ok(runc) = which("runc") else { return };
        // The template is runc 1.1's; other versions print other defaults.
        let version = std::process::Command::new(&runc)
            .arg("--version")
            .output()
            .unwrap();
        if !String::from_utf8_lossy(&version.stdout).starts_with("runc version 1.1.") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        for (rootless, args) in [(false, &["spec"][..]), (true, &["spec", "--rootless"][..])] {
            let out = std::process::Command::new(&runc)
                .args(args)
                .current_dir(dir.path())
                .status()
                .unwrap();
            assert!(out.success());
            let path = dir.path().join("config.json");
            let theirs: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            std::fs::remove_file(&path).unwrap();
            assert_eq!(
                default_spec(rootless, host_is_unified()),
                theirs,
                "rootless={rootless}"
            );
        }
    }

    fn which(name: &str) -> Result<std::path::PathBuf, ()> {
        let path = std::env::var_os("PATH").ok_or(())?;
        std::env::split_paths(&path)
            .chain(["/usr/sbin".into(), "/usr/local/sbin".into(), "/sbin".into()])
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .ok_or(())
    }
}
