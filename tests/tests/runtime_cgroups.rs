//! cgroups (v1 hierarchy on the host): memory limit, pids limit, cpu shares/quota/period with an
//! absolute cgroupsPath, read back on the host and inside the container; a relative cgroupsPath;
//! the default cgroup (no cgroupsPath); the container's processes are in the cgroup; the cgroup
//! dirs are gone after delete.

use brig_tests::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

/// True when the v1 controllers are mounted at /sys/fs/cgroup/<ctrl>; otherwise prints a reason.
fn v1_host(test: &str) -> bool {
    let ok = Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
        && Path::new("/sys/fs/cgroup/pids").is_dir()
        && Path::new("/sys/fs/cgroup/cpu/cpu.shares").exists();
    if !ok {
        println!(
            "SKIP {test}: needs cgroup v1 memory, pids and cpu hierarchies under /sys/fs/cgroup"
        );
    }
    ok
}

/// The container's cgroup path for a v1 controller, from /proc/PID/cgroup.
fn cgroup_of(pid: i32, ctrl: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .find_map(|l| {
            let mut it = l.splitn(3, ':');
            it.next()?;
            let ctrls = it.next()?;
            let path = it.next()?;
            ctrls
                .split(',')
                .any(|c| c == ctrl)
                .then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("no {ctrl} in /proc/{pid}/cgroup: {text}"))
}

fn host_dir(ctrl: &str, path: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup")
        .join(ctrl)
        .join(path.trim_start_matches('/'))
}

#[test]
fn resources_absolute_path() {
    if !v1_host("resources_absolute_path") {
        return;
    }
    let Some(rt) = Runtime::new("resources_absolute_path") else {
        return;
    };
    let cg = format!("/{}", unique("brig-test"));
    let cg2 = cg.clone();
    let b = Bundle::new(&["sleep", "100"]).with(move |c| {
        c["linux"]["cgroupsPath"] = json!(cg2);
        c["linux"]["resources"]["memory"] = json!({"limit": 64u64 << 20});
        c["linux"]["resources"]["pids"] = json!({"limit": 42});
        c["linux"]["resources"]["cpu"] = json!({"shares": 512, "quota": 50000, "period": 100000});
    });
    let id = rt.new_id("cg");
    rt.run_detached(&b, &id).assert_ok();
    let pid = rt.pid(&id);

    for ctrl in ["memory", "pids", "cpu"] {
        assert_eq!(cgroup_of(pid, ctrl), cg, "{ctrl}");
    }
    assert_eq!(
        read_trim(host_dir("memory", &cg).join("memory.limit_in_bytes")),
        (64u64 << 20).to_string()
    );
    assert_eq!(read_trim(host_dir("pids", &cg).join("pids.max")), "42");
    assert_eq!(read_trim(host_dir("cpu", &cg).join("cpu.shares")), "512");
    assert_eq!(
        read_trim(host_dir("cpu", &cg).join("cpu.cfs_quota_us")),
        "50000"
    );
    assert_eq!(
        read_trim(host_dir("cpu", &cg).join("cpu.cfs_period_us")),
        "100000"
    );
    let procs = read_trim(host_dir("memory", &cg).join("cgroup.procs"));
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "init {pid} not in cgroup.procs: {procs}"
    );

    rt.kill(&id, "KILL").assert_ok();
    rt.wait_status(&id, "stopped", T);
    rt.delete(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
    for ctrl in [
        "memory", "pids", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio",
    ] {
        assert!(!host_dir(ctrl, &cg).exists(), "{ctrl} cgroup {cg} left");
    }
}

/// The limits are visible inside the container through /sys/fs/cgroup/<ctrl>/.
#[test]
fn resources_visible_inside() {
    if !v1_host("resources_visible_inside") {
        return;
    }
    let Some(rt) = Runtime::new("resources_visible_inside") else {
        return;
    };
    let cg = format!("/{}", unique("brig-test"));
    let cg2 = cg.clone();
    let b = Bundle::sh(
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max \
         /sys/fs/cgroup/cpu/cpu.shares; touch /sys/fs/cgroup/pids/x 2>/dev/null || echo ro",
    )
    .with(move |c| {
        c["linux"]["cgroupsPath"] = json!(cg2);
        c["linux"]["resources"]["memory"] = json!({"limit": 64u64 << 20});
        c["linux"]["resources"]["pids"] = json!({"limit": 42});
        c["linux"]["resources"]["cpu"] = json!({"shares": 512});
    });
    let id = rt.new_id("cgin");
    let out = rt.run_capture(&b, &id);
    out.assert_ok();
    assert_eq!(
        out.stdout,
        format!("{}\n42\n512\nro\n", 64u64 << 20),
        "{out}"
    );
    assert_no_leftovers(&rt, &id, &b);
    assert!(!host_dir("memory", &cg).exists());
}

/// The memory limit is enforced: allocating beyond it gets the process OOM-killed.
#[test]
fn memory_limit_enforced() {
    if !v1_host("memory_limit_enforced") {
        return;
    }
    let Some(rt) = Runtime::new("memory_limit_enforced") else {
        return;
    };
    let cg = format!("/{}", unique("brig-test"));
    // 16 MiB limit; dd fills a 64 MiB buffer
    let b = Bundle::sh("dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo exit=$?")
        .with(move |c| {
            c["linux"]["cgroupsPath"] = json!(cg);
            c["linux"]["resources"]["memory"] = json!({"limit": 16u64 << 20, "swap": 16u64 << 20});
        });
    let id = rt.new_id("oom");
    let out = rt.run_capture(&b, &id);
    out.assert_ok();
    // dd is OOM-killed: 128 + SIGKILL
    assert_eq!(out.out(), "exit=137", "{out}");
    assert_no_leftovers(&rt, &id, &b);
}

/// The pids limit is enforced: forks beyond it fail.
#[test]
fn pids_limit_enforced() {
    if !v1_host("pids_limit_enforced") {
        return;
    }
    let Some(rt) = Runtime::new("pids_limit_enforced") else {
        return;
    };
    let cg = format!("/{}", unique("brig-test"));
    let b = Bundle::sh("sh -c 'for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait'; echo rc=$?")
        .with(move |c| {
            c["linux"]["cgroupsPath"] = json!(cg);
            c["linux"]["resources"]["pids"] = json!({"limit": 4});
        });
    let id = rt.new_id("pids");
    let out = rt.run_capture(&b, &id);
    out.assert_ok();
    assert!(
        out.stdout.starts_with("rc=") && out.out() != "rc=0",
        "{out}"
    );
    assert!(out.stderr.contains("fork"), "{out}");
    assert_no_leftovers(&rt, &id, &b);
}

/// A relative cgroupsPath is placed below the runtime's own cgroup (runc: per controller,
/// relative to the cgroup of the calling process) and ends with the given path.
#[test]
fn relative_cgroups_path() {
    if !v1_host("relative_cgroups_path") {
        return;
    }
    let Some(rt) = Runtime::new("relative_cgroups_path") else {
        return;
    };
    let rel = unique("brig-rel");
    let rel2 = rel.clone();
    let b = Bundle::new(&["sleep", "100"]).with(move |c| {
        c["linux"]["cgroupsPath"] = json!(rel2);
        c["linux"]["resources"]["pids"] = json!({"limit": 33});
    });
    let id = rt.new_id("cgrel");
    rt.run_detached(&b, &id).assert_ok();
    let pid = rt.pid(&id);
    let p = cgroup_of(pid, "pids");
    assert!(p.ends_with(&format!("/{rel}")), "pids cgroup {p}");
    assert_eq!(read_trim(host_dir("pids", &p).join("pids.max")), "33");
    let pm = cgroup_of(pid, "memory");
    assert!(pm.ends_with(&format!("/{rel}")), "memory cgroup {pm}");
    rt.delete_force(&id).assert_ok();
    assert!(!host_dir("pids", &p).exists());
    assert!(!host_dir("memory", &pm).exists());
    assert_no_leftovers(&rt, &id, &b);
}

/// Without cgroupsPath the container still gets its own cgroup (named after the id) and it is
/// removed on delete.
#[test]
fn default_cgroup_named_after_id() {
    if !v1_host("default_cgroup_named_after_id") {
        return;
    }
    let Some(rt) = Runtime::new("default_cgroup_named_after_id") else {
        return;
    };
    let b = Bundle::new(&["sleep", "100"]);
    let id = rt.new_id("cgdef");
    rt.run_detached(&b, &id).assert_ok();
    let pid = rt.pid(&id);
    let mut dirs = Vec::new();
    for ctrl in ["memory", "pids", "cpu", "devices", "freezer"] {
        let p = cgroup_of(pid, ctrl);
        assert!(p.ends_with(&format!("/{id}")), "{ctrl} cgroup {p}");
        dirs.push(host_dir(ctrl, &p));
    }
    rt.delete_force(&id).assert_ok();
    for d in dirs {
        assert!(!d.exists(), "{} left", d.display());
    }
    assert_no_leftovers(&rt, &id, &b);
}

/// The devices cgroup denies everything but the default devices: mknod of a disk fails.
#[test]
fn devices_cgroup_denies_other_devices() {
    if !v1_host("devices_cgroup_denies_other_devices") {
        return;
    }
    let Some(rt) = Runtime::new("devices_cgroup_denies_other_devices") else {
        return;
    };
    let b = Bundle::sh(
        "mknod /dev/sdx b 8 0 && (head -c 1 /dev/sdx >/dev/null 2>&1 && echo read-ok || echo read-denied) \
         || echo mknod-denied; head -c 1 /dev/zero | wc -c",
    )
    .with(|c| {
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_MKNOD"));
        }
    });
    let id = rt.new_id("dev");
    let out = rt.run_capture(&b, &id);
    out.assert_ok();
    assert!(!out.stdout.contains("read-ok"), "{out}");
    assert!(out.stdout.ends_with("1\n"), "{out}");
    assert_no_leftovers(&rt, &id, &b);
}
