//! The runc options' ShimCgroup: the shim's daemon process moved into a cgroup the caller made
//! (kubelet's or the pod's), as containerd-shim-runc-v2 does at `start`. The rest of cgroup
//! work is the runtime's.

use std::path::Path;

use crate::error::{Error, Result};

const ROOT: &str = "/sys/fs/cgroup";

/// Moves `pid` into the cgroup `path` (relative to the hierarchies' roots): on cgroup v2 the
/// unified one; on v1 every hierarchy that has that path (at least one must).
pub fn join(path: &str, pid: u32) -> Result<()> {
    join_under(Path::new(ROOT), path, pid)
}

fn join_under(root: &Path, path: &str, pid: u32) -> Result<()> {
    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return Err(Error::InvalidArgument(format!(
            "ShimCgroup {path:?}: a cgroup path may not name a parent (..)"
        )));
    }
    let add = |dir: &Path| -> Result<()> {
        let procs = dir.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).map_err(|e| {
            Error::io(
                format!(
                    "ShimCgroup: move the shim (pid {pid}) into {}",
                    procs.display()
                ),
                e,
            )
        })
    };
    if root.join("cgroup.controllers").exists() {
        return add(&root.join(rel));
    }
    let mut joined = 0;
    for h in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let dir = h.path().join(rel);
        // (Named hierarchies like name=systemd and the hybrid unified one count too.)
        if h.path().is_dir() && !h.path().is_symlink() && dir.is_dir() {
            add(&dir)?;
            joined += 1;
        }
    }
    if joined == 0 {
        return Err(Error::Other(format!(
            "ShimCgroup {path:?}: no cgroup hierarchy under {} has it",
            root.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_hierarchies_that_have_the_path_get_the_pid() {
        let root = tempfile::tempdir().unwrap();
        for h in ["pids", "memory", "cpu"] {
            std::fs::create_dir_all(root.path().join(h)).unwrap();
        }
        for h in ["pids", "memory"] {
            std::fs::create_dir_all(root.path().join(h).join("pod/shim")).unwrap();
        }
        join_under(root.path(), "/pod/shim", 42).unwrap();
        for h in ["pids", "memory"] {
            let procs = root.path().join(h).join("pod/shim/cgroup.procs");
            assert_eq!(std::fs::read_to_string(procs).unwrap(), "42");
        }
        assert!(!root.path().join("cpu/pod").exists());
        let e = join_under(root.path(), "/elsewhere", 42).unwrap_err();
        assert!(e.to_string().contains("no cgroup hierarchy"), "{e}");
        let e = join_under(root.path(), "/pod/../..", 42).unwrap_err();
        assert!(e.to_string().contains("(..)"), "{e}");
    }

    #[test]
    fn v2_uses_the_unified_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "pids").unwrap();
        std::fs::create_dir_all(root.path().join("pod")).unwrap();
        join_under(root.path(), "pod", 7).unwrap();
        let procs = root.path().join("pod/cgroup.procs");
        assert_eq!(std::fs::read_to_string(procs).unwrap(), "7");
        assert!(join_under(root.path(), "missing", 7).is_err());
    }
}
