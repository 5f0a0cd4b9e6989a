//! Task metrics on a cgroup v1 (or hybrid) host: the `data` of the runtime's `events --stats`
//! JSON (runc's `types.Stats`) turned into containerd's cgroup v1 `Metrics`, which `ctr task
//! metrics` and the CRI read. On a v2 host: [`crate::stats_v2`].

use containerd_shim_protos::cgroups::metrics::{
    BlkIOEntry, BlkIOStat, CPUStat, CPUUsage, HugetlbStat, MemoryEntry, MemoryStat, Metrics,
    PidsStat, Throttle,
};
use serde_json::Value;

fn u(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(next) => cur = next,
            None => return 0,
        }
    }
    cur.as_u64().unwrap_or(0)
}

fn mem_entry(v: &Value, key: &str) -> MemoryEntry {
    let e = &v["memory"][key];
    MemoryEntry {
        limit: u(e, &["limit"]),
        usage: u(e, &["usage"]),
        max: u(e, &["max"]),
        failcnt: u(e, &["failcnt"]),
        ..Default::default()
    }
}

fn blkio(v: &Value, key: &str) -> Vec<BlkIOEntry> {
    v["blkio"][key]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| BlkIOEntry {
                    op: e["op"].as_str().unwrap_or_default().to_string(),
                    major: u(e, &["major"]),
                    minor: u(e, &["minor"]),
                    value: u(e, &["value"]),
                    ..Default::default()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `data` of a `{"type":"stats"}` event → cgroup v1 metrics.
pub fn metrics(data: &Value) -> Metrics {
    let raw = |k: &str| u(data, &["memory", "raw", k]);
    let mut m = Metrics::new();
    m.cpu = Some(CPUStat {
        usage: Some(CPUUsage {
            total: u(data, &["cpu", "usage", "total"]),
            kernel: u(data, &["cpu", "usage", "kernel"]),
            user: u(data, &["cpu", "usage", "user"]),
            per_cpu: data["cpu"]["usage"]["percpu"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default(),
            ..Default::default()
        })
        .into(),
        throttling: Some(Throttle {
            periods: u(data, &["cpu", "throttling", "periods"]),
            throttled_periods: u(data, &["cpu", "throttling", "throttledPeriods"]),
            throttled_time: u(data, &["cpu", "throttling", "throttledTime"]),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    })
    .into();
    m.memory = Some(MemoryStat {
        cache: u(data, &["memory", "cache"]),
        rss: raw("rss"),
        rss_huge: raw("rss_huge"),
        mapped_file: raw("mapped_file"),
        dirty: raw("dirty"),
        writeback: raw("writeback"),
        pg_pg_in: raw("pgpgin"),
        pg_pg_out: raw("pgpgout"),
        pg_fault: raw("pgfault"),
        pg_maj_fault: raw("pgmajfault"),
        inactive_anon: raw("inactive_anon"),
        active_anon: raw("active_anon"),
        inactive_file: raw("inactive_file"),
        active_file: raw("active_file"),
        unevictable: raw("unevictable"),
        hierarchical_memory_limit: raw("hierarchical_memory_limit"),
        hierarchical_swap_limit: raw("hierarchical_memsw_limit"),
        total_cache: raw("total_cache"),
        total_rss: raw("total_rss"),
        total_rss_huge: raw("total_rss_huge"),
        total_mapped_file: raw("total_mapped_file"),
        total_dirty: raw("total_dirty"),
        total_writeback: raw("total_writeback"),
        total_pg_pg_in: raw("total_pgpgin"),
        total_pg_pg_out: raw("total_pgpgout"),
        total_pg_fault: raw("total_pgfault"),
        total_pg_maj_fault: raw("total_pgmajfault"),
        total_inactive_anon: raw("total_inactive_anon"),
        total_active_anon: raw("total_active_anon"),
        total_inactive_file: raw("total_inactive_file"),
        total_active_file: raw("total_active_file"),
        total_unevictable: raw("total_unevictable"),
        usage: Some(mem_entry(data, "usage")).into(),
        swap: Some(mem_entry(data, "swap")).into(),
        kernel: Some(mem_entry(data, "kernel")).into(),
        kernel_tcp: Some(mem_entry(data, "kernelTCP")).into(),
        ..Default::default()
    })
    .into();
    m.pids = Some(PidsStat {
        current: u(data, &["pids", "current"]),
        limit: u(data, &["pids", "limit"]),
        ..Default::default()
    })
    .into();
    m.blkio = Some(BlkIOStat {
        io_service_bytes_recursive: blkio(data, "ioServiceBytesRecursive"),
        io_serviced_recursive: blkio(data, "ioServicedRecursive"),
        io_queued_recursive: blkio(data, "ioQueueRecursive"),
        io_service_time_recursive: blkio(data, "ioServiceTimeRecursive"),
        io_wait_time_recursive: blkio(data, "ioWaitTimeRecursive"),
        io_merged_recursive: blkio(data, "ioMergedRecursive"),
        io_time_recursive: blkio(data, "ioTimeRecursive"),
        sectors_recursive: blkio(data, "sectorsRecursive"),
        ..Default::default()
    })
    .into();
    if let Some(h) = data["hugetlb"].as_object() {
        m.hugetlb = h
            .iter()
            .map(|(size, e)| HugetlbStat {
                pagesize: size.clone(),
                usage: u(e, &["usage"]),
                max: u(e, &["max"]),
                failcnt: u(e, &["failcnt"]),
                ..Default::default()
            })
            .collect();
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_stats_become_v1_metrics() {
        let data: Value = serde_json::from_str(
            r#"{"cpu":{"usage":{"total":1500,"percpu":[1000,500],"kernel":10,"user":20},"throttling":{}},
                "memory":{"cache":4096,"usage":{"limit":1048576,"usage":8192,"max":9000,"failcnt":0},
                          "swap":{"limit":0,"failcnt":0},"kernel":{"limit":0,"failcnt":0},
                          "kernelTCP":{"limit":0,"failcnt":0},"raw":{"rss":123,"total_rss":456}},
                "pids":{"current":3,"limit":100},
                "blkio":{"ioServiceBytesRecursive":[{"major":8,"op":"Read","value":42}]},
                "hugetlb":{"2MB":{"failcnt":0}}}"#,
        )
        .unwrap();
        let m = metrics(&data);
        assert_eq!(m.cpu.usage.total, 1500);
        assert_eq!(m.cpu.usage.per_cpu, vec![1000, 500]);
        assert_eq!(m.memory.usage.usage, 8192);
        assert_eq!(m.memory.usage.limit, 1048576);
        assert_eq!(m.memory.rss, 123);
        assert_eq!(m.memory.total_rss, 456);
        assert_eq!(m.pids.current, 3);
        assert_eq!(m.blkio.io_service_bytes_recursive[0].value, 42);
        assert_eq!(m.hugetlb[0].pagesize, "2MB");
    }
}
