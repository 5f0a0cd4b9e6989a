//! Task metrics on a cgroup v2 host: containerd's cgroup v2 `Metrics`, read from the
//! container's cgroup directory, as containerd-shim-runc-v2 gives them (kubelet's working set
//! is `memory.usage - memory.inactive_file`; eviction and `kubectl top` read these). The
//! runtime's `events --stats` JSON is runc's v1-shaped `types.Stats`: it has no room for
//! memory.events, the pressure (PSI) files or the v2 names, so the files are read here.

use std::path::{Path, PathBuf};

use containerd_shim_protos::cgroups_v2::metrics::{
    CPUStat, HugeTlbStat, IOEntry, IOStat, MemoryEvents, MemoryStat, Metrics, PSIData, PSIStats,
    PidsStat, RdmaEntry, RdmaStat,
};

const ROOT: &str = "/sys/fs/cgroup";

/// True on a cgroup v2 (unified) host.
pub fn unified() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

/// The cgroup directory of `pid` on a v2 host (its `0::` line), if it still runs.
pub fn cgroup_dir(pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = Path::new(ROOT).join(path.trim_start_matches('/'));
    dir.is_dir().then_some(dir)
}

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

/// A single-value file: a number, or `max` (no limit: u64::MAX, as containerd reads it).
fn value(dir: &Path, file: &str) -> u64 {
    match read(dir, file).as_deref().map(str::trim) {
        Some("max") => u64::MAX,
        Some(v) => v.parse().unwrap_or(0),
        None => 0,
    }
}

/// The `key value` lines of a flat-keyed file.
fn pairs(dir: &Path, file: &str) -> Vec<(String, u64)> {
    read(dir, file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// A pressure file (`some avg10=.. avg60=.. avg300=.. total=..`, and `full ...`); `None`
/// where the kernel has no PSI.
fn psi(dir: &Path, file: &str) -> Option<PSIStats> {
    let text = read(dir, file)?;
    let line = |kind: &str| {
        let l = text.lines().find(|l| l.starts_with(kind))?;
        let mut d = PSIData::new();
        for field in l.split_whitespace().skip(1) {
            let (k, v) = field.split_once('=')?;
            match k {
                "avg10" => d.avg10 = v.parse().ok()?,
                "avg60" => d.avg60 = v.parse().ok()?,
                "avg300" => d.avg300 = v.parse().ok()?,
                "total" => d.total = v.parse().ok()?,
                _ => {}
            }
        }
        Some(d)
    };
    let mut p = PSIStats::new();
    p.some = line("some").into();
    p.full = line("full").into();
    Some(p)
}

/// Sets each named field from a flat-keyed file's `key value` lines (`aliases`: other names
/// the kernel has used for a key).
fn fill(dir: &Path, file: &str, fields: &mut [(&str, &mut u64)], aliases: &[(&str, &str)]) {
    for (k, v) in pairs(dir, file) {
        let k = aliases
            .iter()
            .find_map(|(old, new)| (*old == k).then_some(*new))
            .unwrap_or(&k);
        if let Some((_, field)) = fields.iter_mut().find(|(name, _)| *name == k) {
            **field = v;
        }
    }
}

fn cpu(dir: &Path) -> CPUStat {
    let mut c = CPUStat::new();
    fill(
        dir,
        "cpu.stat",
        &mut [
            ("usage_usec", &mut c.usage_usec),
            ("user_usec", &mut c.user_usec),
            ("system_usec", &mut c.system_usec),
            ("nr_periods", &mut c.nr_periods),
            ("nr_throttled", &mut c.nr_throttled),
            ("throttled_usec", &mut c.throttled_usec),
            ("nr_bursts", &mut c.nr_bursts),
            ("burst_usec", &mut c.burst_usec),
        ],
        &[],
    );
    c.psi = psi(dir, "cpu.pressure").into();
    c
}

fn memory(dir: &Path) -> MemoryStat {
    let mut m = MemoryStat::new();
    fill(
        dir,
        "memory.stat",
        &mut [
            ("anon", &mut m.anon),
            ("file", &mut m.file),
            ("kernel_stack", &mut m.kernel_stack),
            ("slab", &mut m.slab),
            ("sock", &mut m.sock),
            ("shmem", &mut m.shmem),
            ("file_mapped", &mut m.file_mapped),
            ("file_dirty", &mut m.file_dirty),
            ("file_writeback", &mut m.file_writeback),
            ("anon_thp", &mut m.anon_thp),
            ("inactive_anon", &mut m.inactive_anon),
            ("active_anon", &mut m.active_anon),
            ("inactive_file", &mut m.inactive_file),
            ("active_file", &mut m.active_file),
            ("unevictable", &mut m.unevictable),
            ("slab_reclaimable", &mut m.slab_reclaimable),
            ("slab_unreclaimable", &mut m.slab_unreclaimable),
            ("pgfault", &mut m.pgfault),
            ("pgmajfault", &mut m.pgmajfault),
            ("workingset_refault", &mut m.workingset_refault),
            ("workingset_activate", &mut m.workingset_activate),
            ("workingset_nodereclaim", &mut m.workingset_nodereclaim),
            ("pgrefill", &mut m.pgrefill),
            ("pgscan", &mut m.pgscan),
            ("pgsteal", &mut m.pgsteal),
            ("pgactivate", &mut m.pgactivate),
            ("pgdeactivate", &mut m.pgdeactivate),
            ("pglazyfree", &mut m.pglazyfree),
            ("pglazyfreed", &mut m.pglazyfreed),
            ("thp_fault_alloc", &mut m.thp_fault_alloc),
            ("thp_collapse_alloc", &mut m.thp_collapse_alloc),
        ],
        // Since 5.9 the kernel splits these into _anon and _file; the file part is the old one.
        &[
            ("workingset_refault_file", "workingset_refault"),
            ("workingset_activate_file", "workingset_activate"),
        ],
    );
    m.usage = value(dir, "memory.current");
    m.usage_limit = value(dir, "memory.max");
    m.max_usage = value(dir, "memory.peak");
    m.swap_usage = value(dir, "memory.swap.current");
    m.swap_limit = value(dir, "memory.swap.max");
    m.swap_max_usage = value(dir, "memory.swap.peak");
    m.psi = psi(dir, "memory.pressure").into();
    m
}

fn memory_events(dir: &Path) -> MemoryEvents {
    let mut e = MemoryEvents::new();
    fill(
        dir,
        "memory.events",
        &mut [
            ("low", &mut e.low),
            ("high", &mut e.high),
            ("max", &mut e.max),
            ("oom", &mut e.oom),
            ("oom_kill", &mut e.oom_kill),
            ("oom_group_kill", &mut e.oom_group_kill),
        ],
        &[],
    );
    e
}

/// io.stat: `MAJ:MIN rbytes=N wbytes=N rios=N wios=N ...` a device.
fn io(dir: &Path) -> IOStat {
    let mut s = IOStat::new();
    for line in read(dir, "io.stat").unwrap_or_default().lines() {
        let mut f = line.split_whitespace();
        let Some((major, minor)) = f.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let mut e = IOEntry::new();
        e.major = major.parse().unwrap_or(0);
        e.minor = minor.parse().unwrap_or(0);
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let v = v.parse().unwrap_or(0);
            match k {
                "rbytes" => e.rbytes = v,
                "wbytes" => e.wbytes = v,
                "rios" => e.rios = v,
                "wios" => e.wios = v,
                _ => {}
            }
        }
        s.usage.push(e);
    }
    s.psi = psi(dir, "io.pressure").into();
    s
}

/// One hugetlb entry a page size the kernel has (`hugetlb.2MB.current`, ...).
fn hugetlb(dir: &Path) -> Vec<HugeTlbStat> {
    let mut sizes: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            let size = n.strip_prefix("hugetlb.")?.strip_suffix(".current")?;
            (!size.contains('.')).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    sizes
        .into_iter()
        .map(|size| {
            let mut h = HugeTlbStat::new();
            h.current = value(dir, &format!("hugetlb.{size}.current"));
            h.max = value(dir, &format!("hugetlb.{size}.max"));
            h.failcnt = pairs(dir, &format!("hugetlb.{size}.events"))
                .into_iter()
                .find_map(|(k, v)| (k == "max").then_some(v))
                .unwrap_or(0);
            h.pagesize = size;
            h
        })
        .collect()
}

/// rdma.current / rdma.max: `DEVICE hca_handle=N hca_object=N` a line (`max` is u32::MAX).
fn rdma_entries(dir: &Path, file: &str) -> Vec<RdmaEntry> {
    let num = |v: &str| match v {
        "max" => u32::MAX,
        v => v.parse().unwrap_or(0),
    };
    read(dir, file)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let mut e = RdmaEntry::new();
            e.device = f.next()?.to_string();
            for kv in f {
                match kv.split_once('=') {
                    Some(("hca_handle", v)) => e.hca_handles = num(v),
                    Some(("hca_object", v)) => e.hca_objects = num(v),
                    _ => {}
                }
            }
            Some(e)
        })
        .collect()
}

/// The metrics of the cgroup at `dir`.
pub fn metrics(dir: &Path) -> Metrics {
    let mut m = Metrics::new();
    let mut pids = PidsStat::new();
    pids.current = value(dir, "pids.current");
    pids.limit = value(dir, "pids.max");
    m.pids = Some(pids).into();
    m.cpu = Some(cpu(dir)).into();
    m.memory = Some(memory(dir)).into();
    m.memory_events = Some(memory_events(dir)).into();
    m.io = Some(io(dir)).into();
    m.hugetlb = hugetlb(dir);
    let mut rdma = RdmaStat::new();
    rdma.current = rdma_entries(dir, "rdma.current");
    rdma.limit = rdma_entries(dir, "rdma.max");
    m.rdma = Some(rdma).into();
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(d.path().join(name), text).unwrap();
        }
        d
    }

    #[test]
    fn every_controller_is_read() {
        let d = dir(&[
            ("pids.current", "3\n"),
            ("pids.max", "max\n"),
            (
                "cpu.stat",
                "usage_usec 10\nuser_usec 7\nsystem_usec 3\nnr_periods 4\nnr_throttled 1\n\
                 throttled_usec 5\nnr_bursts 0\nburst_usec 0\n",
            ),
            (
                "cpu.pressure",
                "some avg10=1.50 avg60=0.25 avg300=0.00 total=1234\n\
                 full avg10=0.00 avg60=0.00 avg300=0.00 total=56\n",
            ),
            (
                "memory.stat",
                "anon 4096\nfile 8192\ninactive_file 4096\nactive_file 4096\npgfault 9\n\
                 workingset_refault_file 2\n",
            ),
            ("memory.current", "12288\n"),
            ("memory.max", "1048576\n"),
            ("memory.peak", "20000\n"),
            ("memory.swap.current", "0\n"),
            ("memory.swap.max", "max\n"),
            ("memory.events", "low 0\nhigh 1\nmax 2\noom 1\noom_kill 1\n"),
            (
                "io.stat",
                "254:0 rbytes=512 wbytes=1024 rios=1 wios=2 dbytes=0 dios=0\n",
            ),
            ("hugetlb.2MB.current", "0\n"),
            ("hugetlb.2MB.max", "max\n"),
            ("hugetlb.2MB.events", "max 4\n"),
            ("hugetlb.2MB.rsvd.current", "0\n"),
            ("rdma.max", "mlx4_0 hca_handle=2 hca_object=max\n"),
        ]);
        let m = metrics(d.path());
        assert_eq!((m.pids.current, m.pids.limit), (3, u64::MAX));
        let c = &m.cpu;
        assert_eq!(
            (c.usage_usec, c.user_usec, c.system_usec, c.throttled_usec),
            (10, 7, 3, 5)
        );
        assert_eq!(c.psi.some.avg10, 1.5);
        assert_eq!((c.psi.some.total, c.psi.full.total), (1234, 56));
        let mem = &m.memory;
        assert_eq!(
            (mem.usage, mem.usage_limit, mem.max_usage),
            (12288, 1048576, 20000)
        );
        assert_eq!((mem.anon, mem.file, mem.inactive_file), (4096, 8192, 4096));
        assert_eq!((mem.pgfault, mem.workingset_refault), (9, 2));
        assert_eq!(mem.swap_limit, u64::MAX);
        assert!(mem.psi.is_none(), "no memory.pressure file: no PSI");
        assert_eq!((m.memory_events.max, m.memory_events.oom_kill), (2, 1));
        assert_eq!(m.io.usage.len(), 1);
        let io = &m.io.usage[0];
        assert_eq!((io.major, io.minor, io.rbytes, io.wios), (254, 0, 512, 2));
        assert_eq!(m.hugetlb.len(), 1, "{:?}", m.hugetlb);
        let h = &m.hugetlb[0];
        assert_eq!(
            (h.pagesize.as_str(), h.max, h.failcnt),
            ("2MB", u64::MAX, 4)
        );
        let r = &m.rdma.limit[0];
        assert_eq!(
            (r.device.as_str(), r.hca_handles, r.hca_objects),
            ("mlx4_0", 2, u32::MAX)
        );
    }

    #[test]
    fn missing_files_read_as_zero() {
        let d = dir(&[]);
        let m = metrics(d.path());
        assert_eq!(
            (m.pids.current, m.memory.usage, m.cpu.usage_usec),
            (0, 0, 0)
        );
        assert!(m.io.usage.is_empty() && m.hugetlb.is_empty());
    }
}
