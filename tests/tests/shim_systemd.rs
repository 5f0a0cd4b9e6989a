//! containerd with the brig shim and `SystemdCgroup = true` (containerd's runc option, as
//! Kubernetes sets it) on a host with systemd as PID 1 and cgroup v2 (the systemd guest,
//! tests/vm with VM_SYSTEMD=1): the task runs in the scope `cri-containerd-ID.scope` of
//! `system.slice` made through systemd (cgroupsPath `system.slice:cri-containerd:ID`), exec
//! joins it, update changes the limit as a file and as systemd's property, metrics read it,
//! and after delete no unit and no cgroup are left. (ctr 1.6 has no `task update`: the update
//! is the runtime command the shim gives for it, `brig --systemd-cgroup update`, on the
//! shim's state root.)

use brig_tests::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const BRIG_SHIM: &str = "io.containerd.brig.v2";

fn systemctl_show(unit: &str, prop: &str) -> String {
    let out = Command::new("systemctl")
        .args(["show", "-P", prop, unit])
        .output()
        .expect("systemctl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn systemd_cgroup_option_puts_the_task_in_a_systemd_scope() {
    if !Path::new("/run/systemd/system").is_dir()
        || !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    {
        println!("SKIP systemd_cgroup_option_puts_the_task_in_a_systemd_scope: needs systemd as PID 1 and cgroup v2 (the VM_SYSTEMD=1 guest)");
        return;
    }
    let c = match Containerd::start() {
        Ok(c) => c,
        Err(why) => {
            println!("SKIP systemd_cgroup_option_puts_the_task_in_a_systemd_scope: {why}");
            return;
        }
    };
    let image = c.import_busybox();
    let id = unique("sdscope");
    let opts = c.dir().join("systemd-options.toml");
    let root = c.dir().join("brig-root");
    std::fs::write(
        &opts,
        format!("SystemdCgroup = true\nRoot = \"{}\"\n", root.display()),
    )
    .unwrap();
    let cgpath = format!("system.slice:cri-containerd:{id}");
    c.ctr(&[
        "run",
        "-d",
        "--runtime",
        BRIG_SHIM,
        "--runtime-config-path",
        opts.to_str().unwrap(),
        "--cgroup",
        &cgpath,
        "--memory-limit",
        "67108864",
        &image,
        &id,
        "sleep",
        "1000",
    ])
    .assert_ok();
    let unit = format!("cri-containerd-{id}.scope");
    let dir = Path::new("/sys/fs/cgroup/system.slice").join(&unit);
    assert_eq!(systemctl_show(&unit, "ActiveState"), "active");
    assert_eq!(systemctl_show(&unit, "MemoryMax"), "67108864");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    assert_eq!(read("memory.max").trim(), "67108864");
    let exec = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "cat",
        "/proc/self/cgroup",
    ]);
    exec.assert_ok();
    assert!(exec.stdout.contains("0::/"), "{exec}");
    let up = Command::new(binary_path())
        .arg("--root")
        .arg(root.join(&c.namespace))
        .args(["--systemd-cgroup", "update", "--memory", "134217728", &id])
        .output()
        .expect("brig update");
    assert!(
        up.status.success(),
        "update: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert_eq!(read("memory.max").trim(), "134217728");
    assert_eq!(systemctl_show(&unit, "MemoryMax"), "134217728");
    let m = c.ctr(&["task", "metrics", &id]);
    m.assert_ok();
    assert!(
        m.stdout.lines().any(
            |l| l.split_whitespace().collect::<Vec<_>>() == ["memory.usage_limit", "134217728"]
        ),
        "{m}"
    );
    c.ctr(&["task", "kill", "-s", "SIGKILL", &id]).assert_ok();
    assert!(
        wait_for(Duration::from_secs(20), || c
            .ctr(&["task", "delete", &id])
            .success()),
        "task {id} could not be deleted"
    );
    c.ctr(&["container", "rm", &id]).assert_ok();
    assert!(
        wait_for(Duration::from_secs(10), || !dir.exists()),
        "{} left after delete",
        dir.display()
    );
    let state = systemctl_show(&unit, "ActiveState");
    assert!(
        state == "inactive" || state.is_empty(),
        "unit {unit} is {state}"
    );
    assert!(
        c.shim_pids().is_empty() || wait_for(Duration::from_secs(10), || c.shim_pids().is_empty())
    );
}
