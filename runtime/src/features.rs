//! `brig features`.
//!
//! This module owns the runtime-spec "features" document (features.md,
//! features-linux.md): what config.json vocabulary brig recognises. It only
//! describes: it must never change host state, and it reports brig's own
//! vocabulary, not what the host happens to offer, except for the seccomp
//! flags and architectures, which depend on the kernel and libseccomp brig
//! runs with (as runc reports them).

use serde_json::{json, Value};

use crate::linux::seccomp;

/// The lowest runtime-spec version brig accepts in config.json.
pub const OCI_VERSION_MIN: &str = "1.0.0";

/// The highest runtime-spec version brig accepts in config.json.
pub const OCI_VERSION_MAX: &str = "1.1.0";

/// The hooks brig runs, in the order of the container lifecycle.
pub const HOOKS: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// The mount options brig's mount parser recognises, sorted: mount(8)
/// flags, their recursive (mount_setattr) `r` forms, bind/rbind, remount and
/// the propagation flags. Filesystem data options (`mode=`, `size=`, …) are
/// passed through to mount(2) and are not listed, as features.md asks.
/// Keep in step with the parser.
pub const MOUNT_OPTIONS: &[&str] = &[
    "acl",
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "idmap",
    "iversion",
    "lazytime",
    "loud",
    "mand",
    "noacl",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "noiversion",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "ridmap",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "unbindable",
];

/// The namespace types brig can create or join, sorted.
pub const NAMESPACES: &[&str] = &[
    "cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts",
];

/// Every capability name the `caps` crate knows, in kernel number order.
pub fn capabilities() -> Vec<String> {
    let mut all: Vec<caps::Capability> = caps::all().into_iter().collect();
    all.sort_by_key(|c| c.index());
    all.iter().map(ToString::to_string).collect()
}

/// The features document `brig features` prints.
pub fn features() -> Value {
    let libseccomp = seccomp::libseccomp_version().unwrap_or_default();
    json!({
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION_MAX,
        "hooks": HOOKS,
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": NAMESPACES,
            "capabilities": capabilities(),
            "cgroup": {
                "v1": true,
                "v2": true,
                // --systemd-cgroup: the system instance (root) and the user's (rootless).
                "systemd": true,
                "systemdUser": true
            },
            "seccomp": {
                "enabled": true,
                "actions": seccomp::KNOWN_ACTIONS,
                "operators": seccomp::KNOWN_OPERATORS,
                "archs": seccomp::supported_archs(),
                "knownFlags": seccomp::KNOWN_FLAGS,
                "supportedFlags": seccomp::supported_flags()
            },
            // The spec's meaning: support built in, whatever the host has (runc's answer);
            // the host's state is in the annotations below.
            "apparmor": {"enabled": true},
            "selinux": {"enabled": true},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": true}}
        },
        "annotations": {
            "io.github.brig.version": env!("CARGO_PKG_VERSION"),
            "io.github.brig.libseccomp.version": libseccomp,
            // The key runc and crun use, which tools read.
            "io.github.seccomp.libseccomp.version": libseccomp,
            "io.github.brig.apparmor.host": host_state(crate::linux::lsm::apparmor_enabled()),
            "io.github.brig.selinux.host": host_state(crate::linux::lsm::selinux_enabled())
        }
    })
}

/// An LSM's state on this host, for the annotations.
fn host_state(enabled: bool) -> &'static str {
    if enabled {
        "enabled"
    } else {
        "disabled"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::Features;

    #[test]
    fn document_has_the_keys() {
        let v = features();
        let text = serde_json::to_string_pretty(&v).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["ociVersionMin"], "1.0.0");
        assert_eq!(v["ociVersionMax"], "1.1.0");
        assert_eq!(v["hooks"].as_array().unwrap().len(), 6);
        for key in ["bind", "rbind", "ro", "rro", "rshared", "nosymfollow"] {
            assert!(
                v["mountOptions"].as_array().unwrap().contains(&json!(key)),
                "{key}"
            );
        }
        let linux = &v["linux"];
        assert_eq!(linux["namespaces"].as_array().unwrap().len(), 8);
        let caps = linux["capabilities"].as_array().unwrap();
        assert_eq!(caps[0], "CAP_CHOWN");
        assert!(caps.contains(&json!("CAP_SYS_ADMIN")));
        assert!(caps.contains(&json!("CAP_CHECKPOINT_RESTORE")));
        assert_eq!(
            linux["cgroup"],
            json!({"v1": true, "v2": true, "systemd": true, "systemdUser": true})
        );
        let sc = &linux["seccomp"];
        assert_eq!(sc["enabled"], true);
        assert_eq!(sc["actions"].as_array().unwrap().len(), 9);
        assert_eq!(sc["operators"].as_array().unwrap().len(), 7);
        assert!(sc["archs"]
            .as_array()
            .unwrap()
            .contains(&json!("SCMP_ARCH_X86_64")));
        assert_eq!(sc["knownFlags"].as_array().unwrap().len(), 4);
        assert!(sc["supportedFlags"].is_array());
        for on in ["apparmor", "selinux"] {
            assert_eq!(linux[on]["enabled"], true, "{on}");
        }
        assert_eq!(linux["intelRdt"]["enabled"], false);
        assert_eq!(
            v["annotations"]["io.github.brig.apparmor.host"],
            host_state(crate::linux::lsm::apparmor_enabled())
        );
        assert_eq!(linux["mountExtensions"]["idmap"]["enabled"], true);
        let ann = &v["annotations"];
        assert_eq!(ann["io.github.brig.version"], env!("CARGO_PKG_VERSION"));
        assert!(!ann["io.github.brig.libseccomp.version"]
            .as_str()
            .unwrap()
            .is_empty());
    }

    #[test]
    fn deserialises_into_oci_features() {
        let f: Features = serde_json::from_value(features()).unwrap();
        assert_eq!(f.oci_version_max(), "1.1.0");
        let linux = f.linux().as_ref().unwrap();
        assert_eq!(linux.namespaces().as_ref().unwrap().len(), 8);
    }

    #[test]
    fn lists_are_sorted_and_unique() {
        for list in [
            MOUNT_OPTIONS,
            NAMESPACES,
            seccomp::KNOWN_ACTIONS,
            seccomp::KNOWN_OPERATORS,
        ] {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "{list:?}");
        }
    }
}
