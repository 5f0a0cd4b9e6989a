//! containerd's CRI plugin with the brig shim, driven by crictl as kubelet drives CRI: a pod
//! (host network, sandbox image of our own) and a container in it that works, whose
//! ContainerStats (what kubelet's summary API, `kubectl top` and eviction read) come back
//! with cpu usage and memory working set. On cgroup v2 the shim must answer Stats with v2
//! metrics for containerd to fill them (the v2 guest, tests/vm, runs this test). crictl is
//! built from cri-tools by conformance/critest.sh (`--build-only`), as tests/vm/run.sh does.

use brig_tests::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// A stats value as crictl's JSON gives it (`{"value": "123"}`, uint64 as a string).
fn stat(v: &Value, path: &[&str]) -> u64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    match &v["value"] {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

#[test]
fn container_stats_through_cri_have_cpu_and_working_set() {
    let test = "container_stats_through_cri_have_cpu_and_working_set";
    if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        println!("SKIP {test}: the host is not cgroup v2 (the v2 guest of make vm-test runs it)");
        return;
    }
    // In the test guest (tests/vm) nothing may skip.
    let in_guest = std::env::var_os("BRIG_VM_LSM").is_some();
    let crictl = crictl_path();
    if !crictl.is_file() {
        assert!(
            !in_guest,
            "{} is missing in the test guest: tests/vm/run.sh builds it",
            crictl.display()
        );
        println!(
            "SKIP {test}: no crictl at {} (bash conformance/critest.sh --build-only)",
            crictl.display()
        );
        return;
    }
    let c = match Containerd::start_cri() {
        Ok(c) => c,
        Err(why) => {
            assert!(!in_guest, "containerd with CRI in the test guest: {why}");
            println!("SKIP {test}: {why}");
            return;
        }
    };
    let image = c.import_cri_images();
    let d = c.dir();
    let pod = d.join("pod.json");
    std::fs::write(
        &pod,
        serde_json::json!({
            "metadata": {"name": "stats", "namespace": "brig", "uid": unique("uid"), "attempt": 0},
            "log_directory": d.join("pod-logs"),
            "linux": {"security_context": {"namespace_options": {"network": 2}}},
        })
        .to_string(),
    )
    .unwrap();
    // Work: 8 MB in /dev/shm (shared memory: in the working set, not reclaimable file
    // cache), and a busy loop with short rests.
    let ctr = d.join("container.json");
    std::fs::write(
        &ctr,
        serde_json::json!({
            "metadata": {"name": "worker"},
            "image": {"image": image},
            "command": ["sh", "-c", "head -c 8000000 /dev/zero > /dev/shm/fill; \
                while :; do i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; sleep 1; done"],
            "log_path": "worker.log",
        })
        .to_string(),
    )
    .unwrap();
    let out = c.crictl(&["runp", "--runtime", "brig", pod.to_str().unwrap()]);
    let pod_id = out.assert_ok().stdout.trim().to_string();
    let out = c.crictl(&[
        "create",
        &pod_id,
        ctr.to_str().unwrap(),
        pod.to_str().unwrap(),
    ]);
    let id = out.assert_ok().stdout.trim().to_string();
    c.crictl(&["start", &id]).assert_ok();
    let mut last = String::new();
    let ok = wait_for(Duration::from_secs(60), || {
        let out = c.crictl(&["stats", "-o", "json", &id]);
        last = out.to_string();
        let Ok(v) = serde_json::from_str::<Value>(&out.stdout) else {
            return false;
        };
        let s = &v["stats"][0];
        stat(s, &["cpu", "usageCoreNanoSeconds"]) > 0
            && stat(s, &["memory", "workingSetBytes"]) >= 8_000_000
    });
    c.crictl(&["rmp", "-f", &pod_id]).assert_ok();
    assert!(
        ok,
        "ContainerStats of {id} never gave cpu usage > 0 and a working set >= 8 MB: {last}"
    );
    assert!(
        wait_for(Duration::from_secs(20), || c.shim_pids().is_empty()),
        "shims left after the pod was removed: {:?}",
        c.shim_pids()
    );
}
