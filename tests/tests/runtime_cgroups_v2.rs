//! cgroup v2 end-to-end tests: limits read back from the v2 files, update,
//! pause through cgroup.freeze, the eBPF device program, the `unified`
//! passthrough, stats and OOM events.
//!
//! They need a host with only cgroup2 mounted at /sys/fs/cgroup and skip with
//! a printed reason elsewhere; tests/vm/run.sh runs them in a KVM guest.

use brig_tests::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

/// True on a host with only cgroup2 mounted at /sys/fs/cgroup; otherwise prints why not.
fn v2_host(test: &str) -> bool {
    let ok = Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        && !Path::new("/sys/fs/cgroup/memory").exists();
    if !ok {
        println!("SKIP {test}: needs cgroup v2 mounted alone at /sys/fs/cgroup");
    }
    ok
}

fn setup(test: &str) -> Option<Runtime> {
    if !v2_host(test) {
        return None;
    }
    Runtime::new(test)
}

/// A bundle in the absolute cgroup `/<unique>`, with `resources`.
fn bundle(args: &[&str], resources: Value) -> (Bundle, PathBuf) {
    let cg = format!("/{}", unique("brig-v2"));
    let dir = Path::new("/sys/fs/cgroup").join(cg.trim_start_matches('/'));
    let b = Bundle::new(args).with(move |c| {
        c["linux"]["cgroupsPath"] = json!(cg);
        for (k, v) in resources.as_object().into_iter().flatten() {
            c["linux"]["resources"][k] = v.clone();
        }
    });
    (b, dir)
}

fn read(dir: &Path, file: &str) -> String {
    let p = dir.join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// `MAJ:MIN` of the guest's virtio disk, if there is one.
fn disk() -> Option<String> {
    std::fs::read_to_string("/sys/block/vda/dev")
        .ok()
        .map(|s| s.trim().to_string())
}

#[test]
fn limits_are_written_to_the_v2_files() {
    let Some(rt) = setup("limits_are_written_to_the_v2_files") else {
        return;
    };
    let mut res = json!({
        "memory": {"limit": 33554432, "reservation": 25165824, "swap": 50331648},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 20},
        "blockIO": {"weight": 500}
    });
    let dev = disk();
    if let Some(d) = &dev {
        let (ma, mi) = d.split_once(':').expect("MAJ:MIN");
        let (ma, mi): (i64, i64) = (ma.parse().expect("major"), mi.parse().expect("minor"));
        res["blockIO"]["throttleReadBpsDevice"] =
            json!([{"major": ma, "minor": mi, "rate": 1048576}]);
        res["blockIO"]["throttleWriteIOPSDevice"] =
            json!([{"major": ma, "minor": mi, "rate": 100}]);
    } else {
        println!("SKIP io.max checks: no /sys/block/vda to throttle");
    }
    let (b, cg) = bundle(&["sleep", "100"], res);
    let id = rt.new_id("lim");
    rt.run_detached(&b, &id).assert_ok();

    assert_eq!(read(&cg, "memory.max"), "33554432");
    assert_eq!(read(&cg, "memory.low"), "25165824");
    if cg.join("memory.swap.max").exists() {
        // v1's memory+swap 48M with memory 32M is 16M of swap.
        assert_eq!(read(&cg, "memory.swap.max"), "16777216");
    }
    // runc 1.1's shares → weight: 1 + (1024 - 2) * 9999 / 262142.
    assert_eq!(read(&cg, "cpu.weight"), "39");
    assert_eq!(read(&cg, "cpu.max"), "50000 100000");
    assert_eq!(read(&cg, "cpuset.cpus"), "0");
    assert_eq!(read(&cg, "cpuset.mems"), "0");
    assert_eq!(read(&cg, "pids.max"), "20");
    if cg.join("io.bfq.weight").exists() {
        assert!(read(&cg, "io.bfq.weight").contains("500"));
    } else if cg.join("io.weight").exists() {
        // 1 + (500 - 10) * 9999 / 990
        assert_eq!(read(&cg, "io.weight"), "default 4950");
    }
    if let Some(d) = &dev {
        let max = read(&cg, "io.max");
        assert!(max.contains(&format!("{d} rbps=1048576")), "{max}");
        assert!(max.contains("wiops=100"), "{max}");
    }
    let pid = rt.pid(&id);
    let procs = read(&cg, "cgroup.procs");
    assert!(procs.lines().any(|l| l == pid.to_string()), "{procs}");

    // update, read back.
    let up = |args: &[&str]| {
        let mut a = vec!["update", &id];
        a.extend_from_slice(args);
        rt.cmd(&a)
    };
    up(&["--memory", "64M", "--memory-swap", "96M"]).assert_ok();
    assert_eq!(read(&cg, "memory.max"), (64u64 << 20).to_string());
    if cg.join("memory.swap.max").exists() {
        assert_eq!(read(&cg, "memory.swap.max"), (32u64 << 20).to_string());
    }
    up(&["--pids-limit", "10", "--cpu-share", "512"]).assert_ok();
    assert_eq!(read(&cg, "pids.max"), "10");
    assert_eq!(read(&cg, "cpu.weight"), "20");
    // Period alone keeps the quota.
    up(&["--cpu-period", "200000"]).assert_ok();
    assert_eq!(read(&cg, "cpu.max"), "50000 200000");
    up(&["--cpu-quota", "-1"]).assert_ok();
    assert_eq!(read(&cg, "cpu.max"), "max 200000");
    up(&["--memory", "-1", "--pids-limit", "-1"]).assert_ok();
    assert_eq!(read(&cg, "memory.max"), "max");
    assert_eq!(read(&cg, "pids.max"), "max");

    // Stats from the v2 files, with runc's field names.
    let out = rt.cmd(&["events", "--stats", &id]);
    out.assert_ok();
    let ev: Value = serde_json::from_str(out.out().trim()).expect("stats JSON");
    let d = &ev["data"];
    assert!(
        d["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "{ev}"
    );
    assert!(d["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0, "{ev}");
    assert_eq!(d["pids"]["current"], json!(1), "{ev}");
    assert!(d["memory"]["raw"]["anon"].is_u64(), "{ev}");

    rt.delete_force(&id).assert_ok();
    assert!(!cg.exists(), "{} left", cg.display());
    assert_no_leftovers(&rt, &id, &b);
}

#[test]
fn limits_are_enforced() {
    let Some(rt) = setup("limits_are_enforced") else {
        return;
    };
    // pids.max 5: the shell cannot start 8 children; pids.events counts the refusals.
    let (b, cg) = bundle(
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8; do sleep 100 & done 2>/dev/null; sleep 100",
        ],
        json!({"pids": {"limit": 5}}),
    );
    let id = rt.new_id("pid");
    rt.run_detached(&b, &id).assert_ok();
    let refused = || {
        read(&cg, "pids.events")
            .strip_prefix("max ")
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(
        wait_for(T, || refused() > 0),
        "pids.events: {}",
        read(&cg, "pids.events")
    );
    let current: u64 = read(&cg, "pids.current").parse().expect("pids.current");
    assert!(current <= 5, "pids.current {current}");
    rt.delete_force(&id).assert_ok();

    // memory.max 16M, no swap: dd with a 64M buffer is killed.
    let (b, _cg) = bundle(
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null && echo survived",
        ],
        json!({"memory": {"limit": 16777216, "swap": 16777216}}),
    );
    let id = rt.new_id("mem");
    let out = rt.run_capture(&b, &id);
    assert!(!out.out().contains("survived"), "{}", out.out());
    rt.delete_force(&id);
}

#[test]
fn pause_uses_cgroup_freeze() {
    let Some(rt) = setup("pause_uses_cgroup_freeze") else {
        return;
    };
    let (b, cg) = bundle(&["sleep", "100"], json!({}));
    let id = rt.new_id("frz");
    rt.run_detached(&b, &id).assert_ok();
    rt.cmd(&["pause", &id]).assert_ok();
    assert_eq!(read(&cg, "cgroup.freeze"), "1");
    assert!(read(&cg, "cgroup.events").contains("frozen 1"));
    assert_eq!(rt.status(&id).as_deref(), Some("paused"));
    rt.cmd(&["resume", &id]).assert_ok();
    assert_eq!(read(&cg, "cgroup.freeze"), "0");
    assert!(read(&cg, "cgroup.events").contains("frozen 0"));
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    // ps lists the init from cgroup.procs.
    let out = rt.cmd(&["ps", "--format", "json", &id]);
    out.assert_ok();
    assert_eq!(out.out().trim(), format!("[{}]", rt.pid(&id)));
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

#[test]
fn device_program_denies_unlisted_devices() {
    let Some(rt) = setup("device_program_denies_unlisted_devices") else {
        return;
    };
    // /dev/zero listed in linux.devices drops its default allow rule, so
    // the node exists but the device program refuses it; /dev/null stays.
    let (b, _cg) = bundle(
        &[
            "sh",
            "-c",
            "echo x > /dev/null && echo null-ok; head -c1 /dev/zero >/dev/null 2>&1 && echo zero-ok || echo zero-denied; \
             head -c1 /dev/urandom >/dev/null && echo urandom-ok",
        ],
        json!({}),
    );
    let b = b.with(|c| {
        c["linux"]["devices"] = json!([{"path": "/dev/zero", "type": "c", "major": 1, "minor": 5, "fileMode": 438}]);
    });
    let id = rt.new_id("dev");
    let out = rt.run_capture(&b, &id);
    let text = out.out();
    assert!(text.contains("null-ok"), "{text}");
    assert!(text.contains("zero-denied"), "{text}");
    assert!(text.contains("urandom-ok"), "{text}");
    rt.delete_force(&id);

    // An explicit allow rule lets it through again.
    let b = b.with(|c| {
        c["linux"]["resources"]["devices"] = json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}
        ]);
    });
    let id = rt.new_id("dev");
    let out = rt.run_capture(&b, &id);
    assert!(out.out().contains("zero-ok"), "{}", out.out());
    rt.delete_force(&id);
}

#[test]
fn unified_passthrough() {
    let Some(rt) = setup("unified_passthrough") else {
        return;
    };
    let (b, cg) = bundle(&["sleep", "100"], json!({}));
    let b = b.with(|c| {
        c["linux"]["resources"]["unified"] = json!({"memory.high": "52428800", "pids.max": "7"});
    });
    let id = rt.new_id("uni");
    rt.run_detached(&b, &id).assert_ok();
    assert_eq!(read(&cg, "memory.high"), "52428800");
    assert_eq!(read(&cg, "pids.max"), "7");
    rt.delete_force(&id).assert_ok();

    for (key, want) in [
        ("memory/../x", "no slashes"),
        ("nodot", "CONTROLLER.PARAMETER"),
        ("cgroup.procs", "managed by the runtime"),
        ("bogus.max", "bogus"),
    ] {
        let (b, _cg) = bundle(&["true"], json!({}));
        let b = b.with(|c| c["linux"]["resources"]["unified"] = json!({key: "1"}));
        let id = rt.new_id("unb");
        let out = rt.create(&b, &id);
        out.assert_fail();
        if rt.is_brig() {
            assert!(
                out.stderr.contains("linux.resources.unified"),
                "{key}: {out}"
            );
            assert!(out.stderr.contains(want), "{key}: {out}");
        }
        assert_no_leftovers(&rt, &id, &b);
    }
}

#[test]
fn oom_event_from_memory_events() {
    let Some(rt) = setup("oom_event_from_memory_events") else {
        return;
    };
    let (b, cg) = bundle(
        &[
            "sh",
            "-c",
            "while [ ! -e /tmp/go ]; do sleep 0.1; done; sh -c 't=$(dd if=/dev/zero ibs=64M count=1 2>/dev/null | cat)'; sleep 100",
        ],
        json!({"memory": {"limit": 16777216, "swap": 16777216}}),
    );
    let id = rt.new_id("oom");
    rt.run_detached(&b, &id).assert_ok();
    let log = b.host_dir("events").join("events.log");
    let mut events = rt
        .command(&[], &["events", "--interval", "500ms", &id])
        .stdout(std::fs::File::create(&log).expect("events.log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn events");
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_for(T, || text().lines().count() >= 1),
        "no stats: {}",
        text()
    );
    std::fs::write(b.rootfs().join("tmp/go"), "").expect("go");
    let oom = format!("{{\"type\":\"oom\",\"id\":\"{id}\"}}");
    let seen = wait_for(Duration::from_secs(30), || text().lines().any(|l| l == oom));
    assert!(
        seen,
        "no OOM event; memory.events: {}; {}",
        read(&cg, "memory.events"),
        text()
    );
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    rt.delete_force(&id).assert_ok();
    let ended = wait_for(T, || matches!(events.try_wait(), Ok(Some(_))));
    if !ended {
        let _ = events.kill();
    }
    let _ = events.wait();
    assert!(ended, "events did not end after delete: {}", text());
    assert_no_leftovers(&rt, &id, &b);
}

/// The container sees its own cgroup at /sys/fs/cgroup: bound read-only without a cgroup
/// namespace, a fresh cgroup2 mount with one (as runc does).
#[test]
fn container_sees_its_cgroup() {
    let Some(rt) = setup("container_sees_its_cgroup") else {
        return;
    };
    let script =
        "cat /sys/fs/cgroup/pids.max; grep -c . /proc/self/cgroup; cat /proc/self/cgroup; \
                  echo 5 > /sys/fs/cgroup/pids.max 2>/dev/null || echo ro";
    for cgroupns in [false, true] {
        let (b, cg) = bundle(&["sh", "-c", script], json!({"pids": {"limit": 20}}));
        let b = b.with(|c| {
            if cgroupns {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .expect("namespaces")
                    .push(json!({"type": "cgroup"}));
            }
        });
        let id = rt.new_id("see");
        let out = rt.run_capture(&b, &id);
        let lines: Vec<&str> = out.out().lines().collect();
        assert_eq!(lines.first(), Some(&"20"), "cgroupns {cgroupns}: {out}");
        assert_eq!(lines.get(1), Some(&"1"), "one hierarchy: {out}");
        let own = format!("0::/{}", cg.file_name().unwrap().to_string_lossy());
        let want = if cgroupns { "0::/" } else { own.as_str() };
        assert_eq!(lines.get(2), Some(&want), "cgroupns {cgroupns}: {out}");
        assert_eq!(lines.get(3), Some(&"ro"), "cgroupns {cgroupns}: {out}");
        rt.delete_force(&id);
        assert_no_leftovers(&rt, &id, &b);
    }
}

/// exec puts the new process into the container's cgroup.
#[test]
fn exec_joins_the_cgroup() {
    let Some(rt) = setup("exec_joins_the_cgroup") else {
        return;
    };
    let (b, cg) = bundle(&["sleep", "100"], json!({}));
    let id = rt.new_id("exe");
    rt.run_detached(&b, &id).assert_ok();
    let out = rt.cmd(&["exec", &id, "/bin/cat", "/proc/self/cgroup"]);
    out.assert_ok();
    let own = format!("0::/{}", cg.file_name().unwrap().to_string_lossy());
    assert_eq!(out.out(), own);
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// Once the container moved its init into a sub-cgroup and enabled a controller for its
/// children, its own cgroup takes no process (only leaves do): exec then joins the init's
/// cgroup, as runc does, and an explicit `--cgroup /` fails with the kernel's reason.
#[test]
fn exec_falls_back_to_the_init_cgroup() {
    let Some(rt) = setup("exec_falls_back_to_the_init_cgroup") else {
        return;
    };
    let (b, cg) = bundle(&["sleep", "100"], json!({}));
    let b = b.with(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces")
            .push(json!({"type": "cgroup"}));
        for m in c["mounts"].as_array_mut().expect("mounts") {
            if m["type"] == "cgroup" {
                m["options"] = json!(["nosuid", "noexec", "nodev", "relatime"]);
            }
        }
    });
    let id = rt.new_id("fb");
    rt.run_detached(&b, &id).assert_ok();
    let exec = |args: &[&str]| {
        let mut a = vec!["exec"];
        a.extend_from_slice(args);
        rt.cmd(&a)
    };
    exec(&[&id, "sh", "-euc", "mkdir /sys/fs/cgroup/foo && echo 1 > /sys/fs/cgroup/foo/cgroup.procs && echo $$ > /sys/fs/cgroup/foo/cgroup.procs && echo +pids > /sys/fs/cgroup/cgroup.subtree_control"]).assert_ok();
    assert_eq!(read(&cg, "cgroup.subtree_control"), "pids");
    let out = exec(&[&id, "cat", "/proc/self/cgroup"]);
    out.assert_ok();
    assert_eq!(out.out(), "0::/foo", "exec did not join the init's cgroup");
    let out = exec(&["--cgroup", "/", &id, "true"]);
    out.assert_fail();
    assert!(out.stderr.contains("device or resource busy"), "{out}");
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// A cgroupsPath inside a threaded subtree cannot hold a container; the error says why.
#[test]
fn threaded_subtree_is_explained() {
    let Some(rt) = setup("threaded_subtree_is_explained") else {
        return;
    };
    let parent = Path::new("/sys/fs/cgroup").join(unique("brig-v2-thr"));
    std::fs::create_dir(&parent).expect("mkdir parent");
    let t = parent.join("t");
    std::fs::create_dir(&t).expect("mkdir t");
    std::fs::write(t.join("cgroup.type"), "threaded").expect("make t threaded");
    let cg = format!("/{}/t/c", parent.file_name().unwrap().to_string_lossy());
    let b = Bundle::new(&["true"]).with(|c| c["linux"]["cgroupsPath"] = json!(cg));
    let id = rt.new_id("thr");
    let out = rt.create(&b, &id);
    out.assert_fail();
    if rt.is_brig() {
        assert!(out.stderr.contains("domain invalid"), "{out}");
        assert!(out.stderr.contains("threaded"), "{out}");
    }
    let _ = std::fs::remove_dir(t.join("c"));
    let _ = std::fs::remove_dir(&t);
    let _ = std::fs::remove_dir(&parent);
}
