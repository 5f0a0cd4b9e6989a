//! CLI surface: `--version`/`-v`, `--help`, `spec` (writes a config.json that `run` can use
//! after pointing root.path at a rootfs; refuses to overwrite; `--bundle`), `features` JSON, and a
//! self-test of the leftover checker used by the other tests.

use brig_tests::*;
use serde_json::{json, Value};
use std::process::{Command, Stdio};

#[test]
fn version() {
    let Some(rt) = Runtime::new("version") else {
        return;
    };
    for flag in ["--version", "-v"] {
        let out = rt.cmd(&[flag]);
        out.assert_ok();
        let first = out.stdout.lines().next().unwrap_or("");
        assert!(first.contains("version"), "{out}");
        assert!(first.chars().any(|c| c.is_ascii_digit()), "{out}");
        // then the commit it was built from (docker info shows it; brig
        // built outside a git checkout leaves the line out)
        let second = out.stdout.lines().nth(1).unwrap_or("");
        assert!(second.starts_with("commit: "), "{out}");
        // runc also prints the spec version it implements: "spec: 1.0.2-dev"
        assert!(
            out.stdout.lines().any(|l| l.starts_with("spec: 1.")),
            "{out}"
        );
    }
}

/// Global flags go before the command, as with runc (urfave/cli): after it they are unknown
/// flags of that command, refused.
#[test]
fn global_flags_only_before_the_command() {
    let Some(rt) = Runtime::new("global_flags_only_before_the_command") else {
        return;
    };
    rt.cmd(&["list", "-q"]).assert_ok();
    let other = tempfile::tempdir().unwrap();
    for global in ["--root", "--log"] {
        let out = rt.cmd(&["list", "-q", global, other.path().to_str().unwrap()]);
        out.assert_fail();
        assert!(out.stderr.contains(&global[2..]), "{global}: {out}");
    }
    let out = rt.cmd(&["list", "-q", "--debug"]);
    out.assert_fail();
    assert!(out.stderr.contains("debug"), "{out}");
}

#[test]
fn help() {
    let Some(rt) = Runtime::new("help") else {
        return;
    };
    let out = rt.cmd(&["--help"]);
    out.assert_ok();
    for sub in [
        "create", "start", "run", "kill", "delete", "state", "list", "spec", "features",
    ] {
        assert!(out.stdout.contains(sub), "help lacks {sub}: {out}");
    }
}

/// `spec` writes config.json in the cwd; the config runs as is once root.path points at a
/// rootfs (and terminal is off, since the test has no tty).
#[test]
fn spec_then_run() {
    let Some(rt) = Runtime::new("spec_then_run") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = rt.spawn_in(dir.path(), &["spec"]).wait_timeout(CMD_TIMEOUT);
    out.assert_ok();
    let cfg_path = dir.path().join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap())
        .expect("spec writes JSON");
    assert!(
        cfg["ociVersion"].as_str().unwrap().starts_with("1."),
        "{cfg}"
    );
    assert_eq!(cfg["root"]["path"], "rootfs");
    assert_eq!(cfg["process"]["args"], json!(["sh"]));
    assert_eq!(cfg["process"]["terminal"], true);
    let ns: Vec<&str> = cfg["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    for t in ["pid", "network", "ipc", "uts", "mount"] {
        assert!(ns.contains(&t), "spec namespaces {ns:?} lack {t}");
    }
    assert!(cfg["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["destination"] == "/proc"));

    // refuses to overwrite
    let out = rt.spawn_in(dir.path(), &["spec"]).wait_timeout(CMD_TIMEOUT);
    out.assert_fail();

    // point root.path at a busybox rootfs elsewhere, run without a terminal
    let rootfs = tempfile::tempdir().unwrap();
    busybox_rootfs(rootfs.path());
    cfg["root"]["path"] = json!(rootfs.path().to_str().unwrap());
    cfg["process"]["terminal"] = json!(false);
    cfg["process"]["args"] = json!(["sh", "-c", "echo spec-works; hostname"]);
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    let id = rt.new_id("spec");
    let out = rt
        .spawn_in(dir.path(), &["run", &id])
        .wait_timeout(CMD_TIMEOUT);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "spec-works", "{out}");
    // the default spec sets a hostname (runc: "runc")
    assert_eq!(Some(lines[1]), cfg["hostname"].as_str(), "{out}");
    assert!(rt.cmd(&["state", &id]).code != 0);
    assert!(processes_in(rootfs.path()).is_empty());
}

/// `spec --bundle DIR` writes DIR/config.json.
#[test]
fn spec_bundle_flag() {
    let Some(rt) = Runtime::new("spec_bundle_flag") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    rt.cmd(&["spec", "--bundle", dir.path().to_str().unwrap()])
        .assert_ok();
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert!(v["process"].is_object());
    // a bundle dir that does not exist fails
    let out = rt.cmd(&[
        "spec",
        "--bundle",
        dir.path().join("nope").to_str().unwrap(),
    ]);
    out.assert_fail();
}

/// The full default spec (the one the tests use) runs under the runtime exactly as written.
#[test]
fn default_spec_runs() {
    let Some(rt) = Runtime::new("default_spec_runs") else {
        return;
    };
    let b = Bundle::new(&["true"]);
    let id = rt.new_id("def");
    rt.run_capture(&b, &id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

#[test]
fn features() {
    let Some(rt) = Runtime::new("features") else {
        return;
    };
    let out = rt.cmd(&["features"]);
    out.assert_ok();
    let v: Value = serde_json::from_str(&out.stdout).expect("features prints JSON");
    assert!(
        v["ociVersionMin"].as_str().unwrap().starts_with("1.0"),
        "{v}"
    );
    assert!(
        v["ociVersionMax"].as_str().unwrap().starts_with("1."),
        "{v}"
    );
    let hooks: Vec<&str> = v["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    for h in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(hooks.contains(&h), "features hooks lack {h}: {hooks:?}");
    }
    let opts: Vec<&str> = v["mountOptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    for o in [
        "ro", "rw", "bind", "rbind", "nosuid", "nodev", "noexec", "relatime",
    ] {
        assert!(opts.contains(&o), "mountOptions lack {o}");
    }
    let ns: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    for n in ["cgroup", "ipc", "mount", "network", "pid", "uts"] {
        assert!(ns.contains(&n), "namespaces lack {n}: {ns:?}");
    }
    let caps = v["linux"]["capabilities"].as_array().expect("capabilities");
    assert!(caps.iter().any(|c| c == "CAP_SYS_ADMIN"));
    assert_eq!(v["linux"]["cgroup"]["v1"], true, "{v}");
}

/// The leftover checker itself catches a live container (state dir, cgroup, process).
#[test]
fn leftover_checker_detects_live_container() {
    let Some(rt) = Runtime::new("leftover_checker_detects_live_container") else {
        return;
    };
    let b = Bundle::new(&["sleep", "100"]);
    let id = rt.new_id("chk");
    rt.run_detached(&b, &id).assert_ok();
    let pid = rt.pid(&id);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_no_leftovers_at(rt.root(), &id, b.path(), None)
    }));
    let msg = match r {
        Ok(()) => panic!("checker missed a running container"),
        Err(e) => e.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    assert!(msg.contains("state dir"), "{msg}");
    assert!(msg.contains(&format!("process {pid}")), "{msg}");
    if std::path::Path::new("/sys/fs/cgroup/pids").is_dir() {
        assert!(msg.contains("cgroup dir"), "{msg}");
    }
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// `$BRIG` not set: the default binary path points into this workspace's target dir.
#[test]
fn binary_selection() {
    let p = binary_path();
    if std::env::var_os("BRIG").is_some() {
        assert_eq!(
            p,
            std::path::PathBuf::from(std::env::var_os("BRIG").unwrap())
        );
    } else {
        assert!(
            p.ends_with("debug/brig") || p.ends_with("release/brig"),
            "{}",
            p.display()
        );
    }
    // busybox is usable for the rootfs
    let st = Command::new(busybox_path())
        .arg("true")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
}

/// `--debug` lines from every stage reach the `--log` destination chosen by the caller, in its
/// format, and nothing else: the container's output holds none, and the init and exec
/// children (which run in the container's mount namespace) never write the log path
/// themselves. A runtime whose exec child opened the `--log` path after joining the container's
/// mounts would create that file inside the rootfs (the path exists there: /tmp), and one
/// that logged to stdout would mix debug lines into the container's output. The stage names
/// are runc's, which runc's own debug.bats and exec.bats match.
#[test]
fn debug_lines_of_init_and_exec_reach_the_log() {
    let Some(rt) = Runtime::new("debug_lines_of_init_and_exec_reach_the_log") else {
        return;
    };
    let logs = tempfile::Builder::new()
        .prefix("brig-debug-")
        .tempdir_in("/tmp")
        .unwrap();
    let inside = |log: &std::path::Path, b: &Bundle| {
        b.rootfs()
            .join(log.strip_prefix("/").unwrap())
            .parent()
            .unwrap()
            .exists()
    };

    // run, foreground, JSON log: init's stages.
    let b = Bundle::new(&["echo", "hello-debug"]);
    let log = logs.path().join("run.json");
    let id = rt.new_id("dbg");
    let out = rt.cmd_with(
        &[
            "--debug",
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
        ],
        &["run", "--bundle", b.path_str(), &id],
    );
    out.assert_ok();
    assert_eq!(out.stdout.trim(), "hello-debug", "{out}");
    assert!(
        !out.stderr.contains("level"),
        "debug on stderr despite --log: {out}"
    );
    let text = std::fs::read_to_string(&log).expect("log written");
    let mut msgs = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["level"] == "debug" {
            msgs.push(v["msg"].as_str().unwrap().to_string());
        }
    }
    let all = msgs.join("\n");
    for stage in [
        "nsexec container setup",
        "child process in init()",
        "init: closing the pipe to signal completion",
    ] {
        assert!(all.contains(stage), "no {stage:?} in {text}");
    }
    assert!(!inside(&log, &b), "log dir created in the rootfs");
    rt.delete(&id);

    // exec, text log to stderr (no --log): the exec child's stages.
    let b = Bundle::new(&["sleep", "100"]);
    let id = rt.new_id("dbg-exec");
    rt.run_detached(&b, &id).assert_ok();
    let out = rt.cmd_with(&["--debug"], &["exec", &id, "echo", "from-exec"]);
    out.assert_ok();
    assert_eq!(out.stdout.trim(), "from-exec", "{out}");
    for stage in [
        "nsexec container setup",
        "child process in init()",
        "setns_init: about to exec",
    ] {
        assert!(
            out.stderr
                .lines()
                .any(|l| l.contains("level=debug") && l.contains(stage)),
            "no {stage:?}: {out}"
        );
    }
    // exec with --log: the file on the host gets the lines, nothing appears in the rootfs.
    let log = logs.path().join("exec.log");
    let out = rt.cmd_with(
        &["--debug", "--log", log.to_str().unwrap()],
        &["exec", &id, "true"],
    );
    out.assert_ok();
    assert!(!out.stderr.contains("level=debug"), "{out}");
    let text = std::fs::read_to_string(&log).expect("exec log written");
    assert!(text.contains("setns_init: about to exec"), "{text}");
    assert!(!inside(&log, &b), "exec wrote its log inside the rootfs");
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}
