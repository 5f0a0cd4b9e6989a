//! sysctl: `linux.sysctl`, written under /proc/sys of the container after
//! pivot_root, through a checked procfs handle.
//!
//! Which keys are allowed follows runc: kernel.msg*/sem/shm* and fs.mqueue.*
//! need an IPC namespace, net.* needs a network namespace, kernel.hostname
//! and kernel.domainname need a UTS namespace; anything else would change
//! the host and is refused.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use nix::fcntl::OFlag;

use crate::error::{Error, IoContext, Result};

/// Which of the container's own namespaces a sysctl needs.
pub fn check(key: &str, has_ipc: bool, has_net: bool, has_uts: bool) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::config(
            "config.json",
            format!("linux.sysctl.{key}"),
            format!("sysctl {key:?} not allowed {why}"),
        ))
    };
    let ipc = matches!(
        key,
        "kernel.msgmax"
            | "kernel.msgmnb"
            | "kernel.msgmni"
            | "kernel.sem"
            | "kernel.shmall"
            | "kernel.shmmax"
            | "kernel.shmmni"
            | "kernel.shm_rmid_forced"
    ) || key.starts_with("fs.mqueue.");
    if ipc {
        return if has_ipc {
            Ok(())
        } else {
            bad("in host IPC namespace")
        };
    }
    if key.starts_with("net.") {
        return if has_net {
            Ok(())
        } else {
            bad("in host network namespace")
        };
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        return if has_uts {
            Ok(())
        } else {
            bad("in host UTS namespace")
        };
    }
    bad("because it is not in a namespace of the container")
}

/// Writes every sysctl into the (container's) /proc/sys.
pub fn apply(sysctl: &HashMap<String, String>) -> Result<()> {
    if sysctl.is_empty() {
        return Ok(());
    }
    let procfs = crate::linux::rootfs::ProcHandle::open(Path::new("/proc"))?;
    let mut keys: Vec<_> = sysctl.keys().collect();
    keys.sort();
    for key in keys {
        let rel = format!("sys/{}", key.replace('.', "/"));
        let fd = procfs.open_file(&rel, OFlag::O_WRONLY | OFlag::O_TRUNC)?;
        let mut f = std::fs::File::from(fd);
        f.write_all(sysctl[key].as_bytes()).ctx(|| {
            let value = crate::error::abbreviate(sysctl[key].clone(), 256);
            format!("write sysctl {key}={value}")
        })?;
    }
    Ok(())
}
