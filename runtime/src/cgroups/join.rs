//! The cgroups an exec process joins: the container's (`--cgroup` sub-paths
//! of it, if given), written to their cgroup.procs by the runtime before the
//! process runs anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cgroups;
use crate::error::{Error, Result};

/// Puts the exec process `pid` into the container's cgroups (`paths`, as recorded at create),
/// or into the sub-cgroups `--cgroup` names; on cgroup v2 without `--cgroup`, into the
/// init's (`init`) when the container's own cgroup takes no process.
pub fn exec_process(
    paths: &BTreeMap<String, PathBuf>,
    subs: &[String],
    init: i32,
    pid: i32,
) -> Result<()> {
    if !subs.is_empty() {
        return sub_cgroups(paths, subs).and_then(|p| join_cgroups(&p, pid));
    }
    let r = cgroups::load(paths.clone()).apply(pid);
    match (&r, paths.get(cgroups::v2::KEY)) {
        (Err(_), Some(dir)) if paths.len() == 1 && has_child_controllers(dir) => {
            join_init_cgroup(init, pid)
        }
        _ => r,
    }
}

/// The container's cgroup paths with `--cgroup` sub-paths applied: a bare
/// path applies to every controller, `a,b:path` to those named.
pub fn sub_cgroups(
    paths: &BTreeMap<String, PathBuf>,
    specs: &[String],
) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = paths.clone();
    for s in specs {
        let (ctrls, sub) = match s.split_once(':') {
            Some((c, p)) => (Some(c), p),
            None => (None, s.as_str()),
        };
        let rel = Path::new(sub);
        if rel
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(Error::msg(format!(
                "bad --cgroup value {s:?}: {sub} is not a sub cgroup path"
            )));
        }
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        match ctrls {
            None => {
                for (k, v) in out.iter_mut() {
                    *v = paths[k].join(rel);
                }
            }
            Some(list) => {
                for c in list.split(',') {
                    let base = paths.get(c).ok_or_else(|| {
                        Error::msg(format!(
                            "bad --cgroup value {s:?}: unknown controller {c:?}"
                        ))
                    })?;
                    out.insert(c.to_string(), base.join(rel));
                }
            }
        }
    }
    Ok(out)
}

/// Whether a cgroup v2 directory has controllers enabled for its children: then
/// no process can join it (only leaf cgroups hold processes).
fn has_child_controllers(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.subtree_control")).is_ok_and(|s| !s.trim().is_empty())
}

/// cgroup v2, no `--cgroup`: the container's cgroup takes no process since
/// the container enabled controllers in it for its sub-cgroups (moving its
/// init down into one first), so the exec joins the init's cgroup instead, as
/// runc does. An explicit `--cgroup` never falls back.
fn join_init_cgroup(init: i32, pid: i32) -> Result<()> {
    let own = std::fs::read_to_string(format!("/proc/{init}/cgroup"))
        .map_err(|e| Error::io(format!("read /proc/{init}/cgroup"), e))?;
    let rel = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| Error::msg(format!("/proc/{init}/cgroup has no cgroup v2 entry")))?;
    let dir = Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
    join_cgroups(&[(cgroups::v2::KEY.to_string(), dir)].into(), pid)
}

fn join_cgroups(paths: &BTreeMap<String, PathBuf>, pid: i32) -> Result<()> {
    for dir in paths.values() {
        let procs = dir.join("cgroup.procs");
        if let Err(e) = std::fs::OpenOptions::new()
            .write(true)
            .open(&procs)
            .and_then(|mut f| {
                use std::io::Write;
                f.write_all(pid.to_string().as_bytes())
            })
        {
            let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0));
            return Err(Error::msg(format!(
                "adding pid {pid} to cgroups: write {}: {}",
                procs.display(),
                errno.desc().to_lowercase()
            )));
        }
    }
    Ok(())
}
