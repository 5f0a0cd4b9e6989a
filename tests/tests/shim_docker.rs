//! docker end to end: a dockerd of our own (Debian's docker.io: its data
//! root, exec root, pid file and socket in a temp dir) runs busybox with
//! `--add-runtime brig=BRIG` and `docker run --runtime brig`. dockerd
//! drives brig through containerd's runc shim with brig as its binary.

use brig_tests::dockerd::Dockerd;
use brig_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const IMAGE: &str = "brigtest/busybox:latest";

/// A docker-archive of busybox made by brig-build (`FROM scratch`).
fn busybox_docker_archive(dir: &Path) -> PathBuf {
    let builder = builder_path();
    assert!(
        builder.is_file(),
        "{} is missing: cargo build -p brig-build",
        builder.display()
    );
    let ctx = dir.join("context");
    busybox_rootfs(&ctx.join("rootfs"));
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/sbin:/usr/bin:/sbin:/bin\nCMD [\"sh\"]\n",
    )
    .unwrap();
    let archive = dir.join("busybox-docker.tar");
    let mut cmd = Command::new(&builder);
    cmd.arg("build")
        .arg("--store")
        .arg(dir.join("build-store"))
        .arg("-q")
        .arg("-t")
        .arg(IMAGE)
        .arg("-o")
        .arg(format!(
            "type=docker-archive,dest={},name={IMAGE}",
            archive.display()
        ))
        .arg(&ctx);
    run_timeout(&mut cmd, Duration::from_secs(120)).assert_ok();
    archive
}

#[test]
fn docker_run_exec_stop_with_brig_runtime() {
    let dockerd = match Dockerd::start() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("skipping docker_run_exec_stop_with_brig_runtime: {why}");
            return;
        }
    };
    let archive = busybox_docker_archive(dockerd.dir());
    dockerd
        .docker(&["load", "-i", archive.to_str().unwrap()])
        .assert_ok();

    let out = dockerd.docker(&[
        "run",
        "--rm",
        "--runtime",
        "brig",
        "--network",
        "none",
        IMAGE,
        "sh",
        "-c",
        "echo from-docker; exit 4",
    ]);
    assert_eq!(out.code, 4, "{out}");
    assert!(out.stdout.contains("from-docker"), "{out}");

    let name = unique("dk");
    dockerd
        .docker(&[
            "run",
            "-d",
            "--runtime",
            "brig",
            "--network",
            "none",
            "--name",
            &name,
            IMAGE,
            "sleep",
            "1000",
        ])
        .assert_ok();
    let id = dockerd.docker(&["inspect", "-f", "{{.Id}}", &name]);
    let id = id.assert_ok().stdout.trim().to_string();
    // brig made it: its state (which runc cannot read) is in dockerd's runtime root.
    let root = dockerd.dir().join("exec/runtime-runc/moby");
    let state = Command::new(binary_path())
        .arg("--root")
        .arg(&root)
        .args(["state", &id])
        .output()
        .unwrap();
    let state = String::from_utf8_lossy(&state.stdout);
    assert!(state.contains("\"running\""), "brig state {id}: {state}");

    let exec = dockerd.docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo from-exec; cat /proc/1/cmdline",
    ]);
    assert!(exec.assert_ok().stdout.contains("from-exec"), "{exec}");
    assert!(exec.stdout.contains("sleep"), "{exec}");

    // sleep as pid 1 ignores SIGTERM: stop ends it with SIGKILL after 1 s.
    dockerd.docker(&["stop", "-t", "1", &name]).assert_ok();
    let status = dockerd.docker(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        &name,
    ]);
    assert_eq!(status.assert_ok().stdout.trim(), "exited 137", "{status}");
    dockerd.docker(&["rm", &name]).assert_ok();
    assert!(!root.join(&id).exists(), "brig's state of {id} is left");
}

/// Where AppArmor is enabled (the systemd guest): `docker run --runtime brig` and
/// `docker exec` are confined by docker's default profile, docker-default, which dockerd
/// loads and names in process.apparmorProfile; and a profile of ours that denies a path
/// (`--security-opt apparmor=...`) denies it in the container and in `docker exec`. With
/// systemd as PID 1, dockerd runs as on such hosts, with `--exec-opt
/// native.cgroupdriver=systemd`: its runc shim runs brig with `--systemd-cgroup`, and the
/// container is in the scope `docker-ID.scope` that systemd made, gone after `docker rm`.
#[test]
fn docker_apparmor_profiles_confine_brig_containers() {
    if !apparmor_enabled() {
        assert!(
            !guest_lsm_is("apparmor"),
            "the test guest should run AppArmor, but it is not enabled"
        );
        println!(
            "docker_apparmor_profiles_confine_brig_containers: AppArmor is not enabled here \
             (dockerd sets no profile); the cgroup v2 guest (make vm-test) runs this test"
        );
        return;
    }
    let systemd = Path::new("/run/systemd/system").is_dir();
    let flags: &[&str] = match systemd {
        true => &["--exec-opt", "native.cgroupdriver=systemd"],
        false => &[],
    };
    let dockerd = Dockerd::start_with(flags).unwrap_or_else(|why| panic!("dockerd: {why}"));
    let archive = busybox_docker_archive(dockerd.dir());
    dockerd
        .docker(&["load", "-i", archive.to_str().unwrap()])
        .assert_ok();
    let run = |extra: &[&str], args: &[&str]| {
        let mut a = vec!["run", "--runtime", "brig", "--network", "none"];
        a.extend_from_slice(extra);
        a.push(IMAGE);
        a.extend_from_slice(args);
        dockerd.docker(&a)
    };
    let out = run(&["--rm"], &["cat", "/proc/self/attr/current"]);
    assert_eq!(
        out.assert_ok().stdout.trim(),
        "docker-default (enforce)",
        "{out}"
    );
    let name = unique("dk-aa");
    run(&["-d", "--name", &name], &["sleep", "1000"]).assert_ok();
    let out = dockerd.docker(&["exec", &name, "cat", "/proc/self/attr/current"]);
    assert_eq!(
        out.assert_ok().stdout.trim(),
        "docker-default (enforce)",
        "{out}"
    );
    let scope = systemd.then(|| {
        let out = dockerd.docker(&["inspect", "-f", "{{.Id}} {{.State.Pid}}", &name]);
        let text = out.assert_ok().stdout.clone();
        let (id, pid) = text.trim().split_once(' ').expect("id and pid");
        let scope = format!("docker-{id}.scope");
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        assert_eq!(
            cgroup.trim(),
            format!("0::/system.slice/{scope}"),
            "the container's init is not in the scope systemd made"
        );
        assert!(
            systemctl_active(&scope),
            "{scope} is not an active unit of systemd's"
        );
        scope
    });
    dockerd.docker(&["rm", "-f", &name]).assert_ok();
    if let Some(scope) = scope {
        assert!(
            wait_for(Duration::from_secs(10), || !systemctl_active(&scope)),
            "{scope} is left after docker rm"
        );
        assert!(
            !Path::new("/sys/fs/cgroup/system.slice")
                .join(&scope)
                .exists(),
            "the cgroup of {scope} is left after docker rm"
        );
    }

    let profile = "brig-test-docker-deny";
    load_apparmor_profile(profile, Some("/etc/passwd"));
    let opt = format!("apparmor={profile}");
    let name = unique("dk-deny");
    run(
        &["-d", "--name", &name, "--security-opt", &opt],
        &["sleep", "1000"],
    )
    .assert_ok();
    let out = dockerd.docker(&["exec", &name, "cat", "/proc/1/attr/current"]);
    assert_eq!(
        out.assert_ok().stdout.trim(),
        format!("{profile} (enforce)"),
        "{out}"
    );
    let out = dockerd.docker(&["exec", &name, "cat", "/etc/passwd"]);
    out.assert_fail();
    assert!(out.stderr.contains("Permission denied"), "{out}");
    dockerd
        .docker(&["exec", &name, "cat", "/etc/group"])
        .assert_ok();
    dockerd.docker(&["rm", "-f", &name]).assert_ok();
    let out = run(&["--rm", "--security-opt", &opt], &["cat", "/etc/passwd"]);
    out.assert_fail();
    assert!(out.stderr.contains("Permission denied"), "{out}");
    drop(dockerd);
    unload_apparmor_profile(profile);
}

fn systemctl_active(unit: &str) -> bool {
    Command::new("systemctl")
        .args(["is-active", "-q", unit])
        .status()
        .is_ok_and(|s| s.success())
}
