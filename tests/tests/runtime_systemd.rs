//! `--systemd-cgroup` (the systemd cgroup driver) where systemd cannot make the container's
//! scope: no bus at all (this host has no systemd as PID 1), and a real bus without systemd on
//! it (a dbus-daemon of the test's own). Both fail with an error naming the cause, a non-zero
//! exit, and leave nothing behind (state dir, cgroup, mount, process). The driver at work on a
//! systemd host is tested in the systemd guest (tests/vm, `--systemd`).

use brig_tests::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `brig --systemd-cgroup run` with `env` set, its output, and what it left.
fn run_systemd(rt: &Runtime, b: &Bundle, env: &[(&str, &str)]) -> (i32, String, String) {
    let id = rt.new_id("sd");
    rt.track(&id);
    let mut c = rt.command(
        &["--systemd-cgroup"],
        &["run", "--bundle", b.path_str(), &id],
    );
    c.env_remove("DBUS_SYSTEM_BUS_ADDRESS");
    c.envs(env.iter().copied());
    let out = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run brig");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_ne!(out.status.code(), Some(0), "run succeeded: {stderr}");
    assert_no_leftovers(rt, &id, b);
    for dir in [
        "/sys/fs/cgroup/system.slice",
        "/sys/fs/cgroup/unified/system.slice",
    ] {
        let unit = Path::new(dir).join(format!("runc-{id}.scope"));
        assert!(!unit.exists(), "{} left behind", unit.display());
    }
    (out.status.code().unwrap_or(-1), id, stderr)
}

#[test]
fn systemd_cgroup_without_a_bus_names_the_bus() {
    let Some(rt) = Runtime::new("systemd_cgroup_without_a_bus_names_the_bus") else {
        return;
    };
    let b = Bundle::new(&["true"]);
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("no-bus-here");
    let addr = format!("unix:path={}", sock.display());
    let (_, _, err) = run_systemd(&rt, &b, &[("DBUS_SYSTEM_BUS_ADDRESS", &addr)]);
    if rt.skip_unless_brig("error names the bus") {
        return;
    }
    let want = format!(
        "systemd cgroup driver: cannot connect to the system bus at {}",
        sock.display()
    );
    assert!(err.contains(&want), "stderr lacks {want:?}: {err}");
    // The default bus, where the host has none (no systemd as PID 1 here).
    if !Path::new("/run/dbus/system_bus_socket").exists() {
        let (_, _, err) = run_systemd(&rt, &b, &[]);
        assert!(
            err.contains(
                "systemd cgroup driver: cannot connect to the system bus at /run/dbus/system_bus_socket: "
            ),
            "{err}"
        );
    }
}

#[test]
fn systemd_cgroup_on_a_bus_without_systemd_cleans_up() {
    let Some(rt) = Runtime::new("systemd_cgroup_on_a_bus_without_systemd_cleans_up") else {
        return;
    };
    let Some(daemon) = ["/usr/bin/dbus-daemon", "/bin/dbus-daemon"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        println!("SKIP systemd_cgroup_on_a_bus_without_systemd_cleans_up: no dbus-daemon");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("bus");
    let conf = tmp.path().join("bus.conf");
    std::fs::write(
        &conf,
        format!(
            "<busconfig><type>system</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>\
             <policy context=\"default\"><allow send_destination=\"*\"/><allow own=\"*\"/><allow receive_sender=\"*\"/>\
             </policy></busconfig>",
            sock.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(daemon)
        .arg(format!("--config-file={}", conf.display()))
        .arg("--nofork")
        .spawn()
        .expect("start dbus-daemon");
    for _ in 0..500 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let b = Bundle::new(&["true"]).with(|c| {
        c["linux"]["cgroupsPath"] = serde_json::json!("system.slice:brigtest:x");
    });
    let addr = format!("unix:path={}", sock.display());
    let result =
        std::panic::catch_unwind(|| run_systemd(&rt, &b, &[("DBUS_SYSTEM_BUS_ADDRESS", &addr)]));
    let _ = child.kill();
    let _ = child.wait();
    let (_, _, err) = result.unwrap();
    for dir in [
        "/sys/fs/cgroup/system.slice",
        "/sys/fs/cgroup/unified/system.slice",
    ] {
        let unit = Path::new(dir).join("brigtest-x.scope");
        assert!(!unit.exists(), "{} left behind", unit.display());
    }
    if rt.skip_unless_brig("error names the unit and the bus's answer") {
        return;
    }
    assert!(
        err.contains("start unit brigtest-x.scope")
            && err.contains("org.freedesktop.DBus.Error.ServiceUnknown"),
        "{err}"
    );
}
