//! Settings the v1 and v2 backends write the same way: the same files
//! (`cpuset.cpus`, `cpuset.mems`, `pids.max`, `rdma.max`,
//! `hugetlb.<size>.max` of a cgroup2 hierarchy), the same checks and the same
//! JSON paths in errors. Only how a backend finds the container's directory
//! for a controller differs: [`Dirs`].
//!
//! Must never: write a setting that was not asked for.

use std::path::Path;

use nix::errno::Errno;
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxPids, LinuxResources, LinuxThrottleDevice,
};

use super::util::write_file;
use crate::error::{Error, Result};

/// How a backend finds the container's directory for a controller.
pub(crate) trait Dirs {
    /// The container's directory for controller `ctrl`, or an error saying
    /// why the setting at `field` cannot be applied.
    fn need(&self, ctrl: &str, field: &str) -> Result<&Path>;
}

/// `linux.resources.cpu.cpus` and `.mems`; empty values are left alone.
pub(crate) fn set_cpuset(d: &impl Dirs, c: &LinuxCpu) -> Result<()> {
    for (val, file, field) in [
        (c.cpus(), "cpuset.cpus", "linux.resources.cpu.cpus"),
        (c.mems(), "cpuset.mems", "linux.resources.cpu.mems"),
    ] {
        if let Some(v) = val.as_deref().filter(|v| !v.is_empty()) {
            write_file(d.need("cpuset", field)?, file, v, Some(field))?;
        }
    }
    Ok(())
}

/// `linux.resources.pids.limit`: zero or less is "max".
pub(crate) fn set_pids(d: &impl Dirs, p: &LinuxPids) -> Result<()> {
    let field = "linux.resources.pids.limit";
    let dir = d.need("pids", field)?;
    let v = if p.limit() > 0 {
        p.limit().to_string()
    } else {
        "max".to_string()
    };
    write_file(dir, "pids.max", &v, Some(field))
}

/// `linux.resources.rdma` as `rdma.max` lines, devices sorted; devices with
/// no limit are left out.
pub(crate) fn set_rdma(d: &impl Dirs, r: &LinuxResources) -> Result<()> {
    let Some(map) = r.rdma() else {
        return Ok(());
    };
    let mut devs: Vec<_> = map.iter().collect();
    devs.sort_by(|a, b| a.0.cmp(b.0));
    for (dev, l) in devs {
        let mut v = dev.clone();
        if let Some(h) = l.hca_handles() {
            v.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = l.hca_objects() {
            v.push_str(&format!(" hca_object={o}"));
        }
        if v.len() != dev.len() {
            let field = format!("linux.resources.rdma.{dev}");
            write_file(d.need("rdma", &field)?, "rdma.max", &v, Some(&field))?;
        }
    }
    Ok(())
}

/// The JSON path of the huge page limits.
pub(crate) const HUGETLB: &str = "linux.resources.hugepageLimits";

/// `linux.resources.hugepageLimits` written into `dir`, a v1 hugetlb cgroup
/// (`hugetlb.<size>.limit_in_bytes`, -1 unlimited) or, `v2`, a cgroup2 one
/// (`hugetlb.<size>.max`, "max" unlimited); a size without its file is an
/// error naming the entry.
pub(crate) fn write_hugetlb(dir: &Path, limits: &[LinuxHugepageLimit], v2: bool) -> Result<()> {
    const F: &str = HUGETLB;
    for (i, l) in limits.iter().enumerate() {
        let size = l.page_size();
        let file = if v2 {
            format!("hugetlb.{size}.max")
        } else {
            format!("hugetlb.{size}.limit_in_bytes")
        };
        if size.is_empty() || size.contains('/') || !dir.join(&file).exists() {
            return Err(Error::config(
                "config.json",
                format!("{F}[{i}].pageSize"),
                format!(
                    "unsupported huge page size {size:?} (no {file} in {})",
                    dir.display()
                ),
            ));
        }
        let v = match (l.limit() < 0, v2) {
            (true, true) => "max".to_string(),
            (true, false) => "-1".to_string(),
            (false, _) => l.limit().to_string(),
        };
        write_file(dir, &file, &v, Some(&format!("{F}[{i}].limit")))?;
    }
    Ok(())
}

/// The four throttle lists of `linux.resources.blockIO` with their JSON
/// names, in runc's order: read bps, write bps, read iops, write iops.
pub(crate) fn throttles(b: &LinuxBlockIo) -> [(&'static str, &[LinuxThrottleDevice]); 4] {
    [
        ("throttleReadBpsDevice", b.throttle_read_bps_device()),
        ("throttleWriteBpsDevice", b.throttle_write_bps_device()),
        ("throttleReadIOPSDevice", b.throttle_read_iops_device()),
        ("throttleWriteIOPSDevice", b.throttle_write_iops_device()),
    ]
    .map(|(name, list)| (name, list.as_deref().unwrap_or(&[])))
}

/// Whether `linux.resources.cpu` sets anything of the cpu controller (zero
/// shares, quota, period and realtime values count as unset).
pub(crate) fn wants_cpu(c: &LinuxCpu) -> bool {
    c.shares().is_some_and(|v| v != 0)
        || c.quota().is_some_and(|v| v != 0)
        || c.period().is_some_and(|v| v != 0)
        || c.burst().is_some()
        || c.idle().is_some()
        || c.realtime_period().is_some_and(|v| v != 0)
        || c.realtime_runtime().is_some_and(|v| v != 0)
}

/// Writes `value` as [`write_file`] does, except that with `later` (a quota
/// is still to be written, which may make the value valid) the kernel's
/// EINVAL is no error: the value comes back, to be written after the quota.
pub(crate) fn write_or_later<T: ToString>(
    dir: &Path,
    file: &str,
    value: Option<T>,
    field: &str,
    later: bool,
) -> Result<Option<T>> {
    let Some(value) = value else {
        return Ok(None);
    };
    match write_file(dir, file, &value.to_string(), Some(field)) {
        Ok(()) => Ok(None),
        Err(Error::Sys {
            errno: Errno::EINVAL,
            ..
        }) if later => Ok(Some(value)),
        Err(e) => Err(e),
    }
}
