//! Errors: bad configs and bad commands fail with a non-zero exit and leave nothing behind
//! (state dir, cgroups, mounts, processes): config.json not JSON, wrong JSON type, unknown
//! namespace type, relative namespace path, missing rootfs, bundle not a directory, duplicate id,
//! invalid ids, state/kill/delete/start of an unknown container, unknown signal, `--log FILE
//! --log-format json`.
//!
//! BRIG-ONLY checks: for brig, stderr must also name the file and the JSON path of the problem
//! (e.g. `config.json: linux.namespaces[0].type: unknown variant "foo", ...`). These checks are
//! skipped (with a printed reason) for any binary whose basename is not `brig`; the rest of each
//! test runs against runc too.

use brig_tests::*;
use serde_json::json;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

/// BRIG-ONLY: asserts that stderr contains each of `needles` when the binary is brig.
#[track_caller]
fn brig_stderr_contains(rt: &Runtime, out: &Out, needles: &[&str]) {
    if rt.skip_unless_brig(&format!("stderr contains {needles:?}")) {
        return;
    }
    for n in needles {
        assert!(out.stderr.contains(n), "brig stderr lacks {n:?}: {out}");
    }
}

/// `create` then `run` of `b` must both fail and leave nothing behind.
#[track_caller]
fn create_and_run_fail(rt: &Runtime, b: &Bundle) -> Out {
    let id = rt.new_id("err");
    let out = rt.create(b, &id);
    out.assert_fail();
    assert!(
        rt.cmd(&["state", &id]).code != 0,
        "state of failed create works"
    );
    assert_no_leftovers(rt, &id, b);
    let id2 = rt.new_id("err");
    let out2 = rt.run_capture(b, &id2);
    out2.assert_fail();
    assert_no_leftovers(rt, &id2, b);
    // `list` does not show half-created containers
    let l = rt.cmd(&["list", "-q"]);
    l.assert_ok();
    assert!(!l.stdout.contains(&id) && !l.stdout.contains(&id2), "{l}");
    out
}

#[test]
fn config_not_json() {
    let Some(rt) = Runtime::new("config_not_json") else {
        return;
    };
    let b = Bundle::new(&["true"]);
    b.write_raw_config("{not json");
    let out = create_and_run_fail(&rt, &b);
    // BRIG-ONLY: `config.json: key must be a string at line 1 column 2`
    brig_stderr_contains(&rt, &out, &["config.json", "line 1"]);
}

#[test]
fn config_missing() {
    let Some(rt) = Runtime::new("config_missing") else {
        return;
    };
    let b = Bundle::new(&["true"]);
    std::fs::remove_file(b.config_path()).unwrap();
    let out = create_and_run_fail(&rt, &b);
    // BRIG-ONLY
    brig_stderr_contains(&rt, &out, &["config.json"]);
}

#[test]
fn config_wrong_type() {
    let Some(rt) = Runtime::new("config_wrong_type") else {
        return;
    };
    let b = Bundle::new(&["true"]).with(|c| c["process"]["args"] = json!("true"));
    let out = create_and_run_fail(&rt, &b);
    // runc: json: cannot unmarshal string into Go struct field Process.process.args of type []string
    assert!(out.stderr.contains("process.args"), "{out}");
    // BRIG-ONLY: `config.json: process.args: invalid type: string "true", expected a sequence`
    brig_stderr_contains(&rt, &out, &["config.json", "process.args"]);

    let b = Bundle::new(&["true"]).with(|c| c["process"]["user"]["uid"] = json!("root"));
    let out = create_and_run_fail(&rt, &b);
    // BRIG-ONLY
    brig_stderr_contains(&rt, &out, &["config.json", "process.user.uid"]);
}

#[test]
fn unknown_namespace_type() {
    let Some(rt) = Runtime::new("unknown_namespace_type") else {
        return;
    };
    let b = Bundle::new(&["true"]).with(|c| c["linux"]["namespaces"][0]["type"] = json!("foo"));
    let out = create_and_run_fail(&rt, &b);
    // runc: namespace {"foo" ""} does not exist
    assert!(out.stderr.contains("foo"), "{out}");
    // BRIG-ONLY: `config.json: linux.namespaces[0].type: unknown variant "foo", expected one of ...`
    brig_stderr_contains(
        &rt,
        &out,
        &["config.json", "linux.namespaces[0].type", "foo"],
    );
}

#[test]
fn duplicate_namespace() {
    let Some(rt) = Runtime::new("duplicate_namespace") else {
        return;
    };
    let b = Bundle::new(&["true"]).with(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "pid"}));
    });
    let out = create_and_run_fail(&rt, &b);
    // BRIG-ONLY: `config.json: linux.namespaces[5]: duplicate namespace "pid"`
    brig_stderr_contains(&rt, &out, &["config.json", "linux.namespaces[5]", "pid"]);
}

/// A namespace path must be absolute.
#[test]
fn relative_namespace_path() {
    let Some(rt) = Runtime::new("relative_namespace_path") else {
        return;
    };
    let b = Bundle::new(&["true"]).with(|c| {
        c.as_object_mut().unwrap().remove("hostname");
        c["linux"]["namespaces"][3] = json!({"type": "uts", "path": "proc/1/ns/uts"});
    });
    let out = create_and_run_fail(&rt, &b);
    assert!(out.stderr.contains("proc/1/ns/uts"), "{out}");
    // BRIG-ONLY: `config.json: linux.namespaces[3].path: "proc/1/ns/uts" is not an absolute path`
    brig_stderr_contains(
        &rt,
        &out,
        &["config.json", "linux.namespaces[3].path", "absolute"],
    );
}

/// A namespace path that does not exist.
#[test]
fn missing_namespace_path() {
    let Some(rt) = Runtime::new("missing_namespace_path") else {
        return;
    };
    let b = Bundle::new(&["true"]).with(|c| {
        c.as_object_mut().unwrap().remove("hostname");
        c["linux"]["namespaces"][3] = json!({"type": "uts", "path": "/no/such/ns"});
    });
    let out = create_and_run_fail(&rt, &b);
    assert!(out.stderr.contains("/no/such/ns"), "{out}");
}

/// A sysctl of the network namespace without a network namespace is refused (it would change
/// the host).
#[test]
fn net_sysctl_without_netns() {
    let Some(rt) = Runtime::new("net_sysctl_without_netns") else {
        return;
    };
    let before = read_trim("/proc/sys/net/ipv4/ip_default_ttl");
    let b = Bundle::new(&["true"]).with(|c| {
        remove_namespace(c, "network");
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_default_ttl": "33"});
    });
    let out = create_and_run_fail(&rt, &b);
    assert!(out.stderr.contains("net.ipv4.ip_default_ttl"), "{out}");
    assert_eq!(read_trim("/proc/sys/net/ipv4/ip_default_ttl"), before);
}

#[test]
fn missing_rootfs() {
    let Some(rt) = Runtime::new("missing_rootfs") else {
        return;
    };
    let b = Bundle::new(&["true"]).with(|c| c["root"]["path"] = json!("no-such-rootfs"));
    let out = create_and_run_fail(&rt, &b);
    // runc: invalid rootfs: stat /tmp/.../no-such-rootfs: no such file or directory
    assert!(out.stderr.contains("no-such-rootfs"), "{out}");
    // BRIG-ONLY
    brig_stderr_contains(&rt, &out, &["root.path"]);
}

#[test]
fn missing_process_or_args() {
    let Some(rt) = Runtime::new("missing_process_or_args") else {
        return;
    };
    let b = Bundle::new(&["true"]).with(|c| {
        c.as_object_mut().unwrap().remove("process");
    });
    let out = create_and_run_fail(&rt, &b);
    // BRIG-ONLY
    brig_stderr_contains(&rt, &out, &["config.json", "process"]);

    let b = Bundle::new(&["true"]).with(|c| c["process"]["args"] = json!([]));
    let out = create_and_run_fail(&rt, &b);
    // BRIG-ONLY
    brig_stderr_contains(&rt, &out, &["config.json", "process.args"]);
}

/// An executable that does not exist: create fails (runc checks at create time).
#[test]
fn missing_executable() {
    let Some(rt) = Runtime::new("missing_executable") else {
        return;
    };
    let b = Bundle::new(&["/no/such/binary"]);
    let out = create_and_run_fail(&rt, &b);
    assert!(out.stderr.contains("/no/such/binary"), "{out}");
    let b = Bundle::new(&["no-such-command"]);
    let out = create_and_run_fail(&rt, &b);
    assert!(out.stderr.contains("no-such-command"), "{out}");
}

#[test]
fn unknown_rlimit() {
    let Some(rt) = Runtime::new("unknown_rlimit") else {
        return;
    };
    let b =
        Bundle::new(&["true"]).with(|c| c["process"]["rlimits"][0]["type"] = json!("RLIMIT_FOO"));
    let out = create_and_run_fail(&rt, &b);
    assert!(out.stderr.contains("RLIMIT_FOO"), "{out}");
    // BRIG-ONLY
    brig_stderr_contains(&rt, &out, &["config.json", "process.rlimits[0].type"]);
}

#[test]
fn bad_seccomp_action() {
    let Some(rt) = Runtime::new("bad_seccomp_action") else {
        return;
    };
    let b = Bundle::new(&["true"])
        .with(|c| c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_FOO"}));
    let out = create_and_run_fail(&rt, &b);
    assert!(out.stderr.contains("SCMP_ACT_FOO"), "{out}");
    // BRIG-ONLY
    brig_stderr_contains(&rt, &out, &["config.json", "linux.seccomp.defaultAction"]);
}

#[test]
fn bundle_not_a_directory() {
    let Some(rt) = Runtime::new("bundle_not_a_directory") else {
        return;
    };
    let b = Bundle::new(&["true"]);
    let cfg = b.config_path();
    let cfg_s = cfg.to_str().unwrap();
    let id = rt.new_id("nodir");
    let out = rt.cmd(&["create", "--bundle", cfg_s, &id]);
    out.assert_fail();
    // runc: chdir /tmp/.../config.json: not a directory
    assert!(out.stderr.contains(cfg_s), "{out}");
    assert_no_leftovers(&rt, &id, &b);

    let missing = b.path().join("missing-bundle");
    let out = rt.cmd(&["create", "--bundle", missing.to_str().unwrap(), &id]);
    out.assert_fail();
    assert!(out.stderr.contains("missing-bundle"), "{out}");
    assert_no_leftovers(&rt, &id, &b);
}

#[test]
fn duplicate_id() {
    let Some(rt) = Runtime::new("duplicate_id") else {
        return;
    };
    let b = Bundle::new(&["sleep", "100"]);
    let id = rt.new_id("dup");
    rt.create_ok(&b, &id);
    let st1 = rt.state(&id);
    let b2 = Bundle::new(&["sleep", "100"]);
    let out = rt.create(&b2, &id);
    out.assert_fail();
    // runc: container with given ID already exists
    assert!(out.stderr.contains("already exists"), "{out}");
    let out = rt.run_capture(&b2, &id);
    out.assert_fail();
    // the first container is intact
    let st2 = rt.state(&id);
    assert_eq!(st1, st2);
    assert!(process_alive(rt.pid(&id)));
    rt.start(&id).assert_ok();
    rt.wait_status(&id, "running", T);
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
    assert!(processes_in(b2.path()).is_empty());
}

#[test]
fn invalid_ids() {
    let Some(rt) = Runtime::new("invalid_ids") else {
        return;
    };
    let b = Bundle::new(&["sleep", "100"]);
    for id in ["a/b", "..", "../escape", ".", "/abs", "", "a b"] {
        let out = rt.cmd(&["create", "--bundle", b.path_str(), id]);
        out.assert_fail();
        // no state at all under --root, no process in the bundle
        let entries: Vec<_> = std::fs::read_dir(rt.root())
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            entries.is_empty(),
            "id {id:?} left {entries:?} in the root: {out}"
        );
        assert!(processes_in(b.path()).is_empty(), "id {id:?}: process left");
        // nothing was created outside the root either
        assert!(!rt.root().join("..").join("escape").exists());
        if !id.is_empty() {
            // BRIG-ONLY: the message names the bad id
            brig_stderr_contains(&rt, &out, &[id]);
        }
    }
    // no state was created at all
    let l = rt.cmd(&["list", "-q"]);
    assert_eq!(l.stdout.trim(), "", "{l}");
}

#[test]
fn unknown_container() {
    let Some(rt) = Runtime::new("unknown_container") else {
        return;
    };
    let id = rt.new_id("ghost");
    for args in [
        vec!["state", id.as_str()],
        vec!["kill", id.as_str(), "KILL"],
        vec!["delete", id.as_str()],
        vec!["start", id.as_str()],
    ] {
        let out = rt.cmd(&args);
        assert_eq!(out.code, 1, "{out}");
        // runc: container does not exist
        assert!(out.stderr.contains("does not exist"), "{out}");
        // BRIG-ONLY: `container "ID" does not exist`
        brig_stderr_contains(&rt, &out, &[&id]);
    }
}

#[test]
fn kill_unknown_signal() {
    let Some(rt) = Runtime::new("kill_unknown_signal") else {
        return;
    };
    let b = Bundle::new(&["sleep", "100"]);
    let id = rt.new_id("sigfoo");
    rt.run_detached(&b, &id).assert_ok();
    for sig in ["SIGFOO", "FOO", "-1", "x9"] {
        let out = rt.kill(&id, sig);
        out.assert_fail();
        if sig.contains("FOO") {
            // runc: unknown signal "SIGFOO"
            assert!(out.stderr.contains(sig), "{out}");
        }
    }
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    // signal 0 is a valid existence check
    rt.kill(&id, "0").assert_ok();
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// Operations that do not fit the container's status fail.
#[test]
fn wrong_status_operations() {
    let Some(rt) = Runtime::new("wrong_status_operations") else {
        return;
    };
    let b = Bundle::new(&["true"]);
    let id = rt.new_id("wst");
    rt.run_detached(&b, &id).assert_ok();
    rt.wait_status(&id, "stopped", T);
    // start of a stopped container, kill of a stopped container
    rt.start(&id).assert_fail();
    rt.kill(&id, "KILL").assert_fail();
    assert_eq!(rt.status(&id).as_deref(), Some("stopped"));
    rt.delete(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// `--log FILE --log-format json` writes JSON lines with level "error" and msg.
#[test]
fn log_file_json() {
    let Some(rt) = Runtime::new("log_file_json") else {
        return;
    };
    let b = Bundle::new(&["true"]);
    b.write_raw_config("{not json");
    let log = b.path().join("runtime.log");
    let log_s = log.to_str().unwrap();
    let id = rt.new_id("log");
    let out = rt.cmd_with(
        &["--log", log_s, "--log-format", "json"],
        &["create", "--bundle", b.path_str(), &id],
    );
    out.assert_fail();
    let text = std::fs::read_to_string(&log).expect("log file written");
    let mut errors = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line not JSON ({e}): {line}"));
        assert!(v["msg"].is_string(), "{line}");
        assert!(v["level"].is_string(), "{line}");
        if v["level"] == "error" {
            errors += 1;
        }
    }
    assert!(errors >= 1, "no error line in log: {text}");
    assert_no_leftovers(&rt, &id, &b);

    // unknown container: the error message goes to the log too
    let log2 = b.path().join("runtime2.log");
    let out = rt.cmd_with(
        &["--log", log2.to_str().unwrap(), "--log-format", "json"],
        &["state", "nope-no-such"],
    );
    out.assert_fail();
    let text = std::fs::read_to_string(&log2).expect("log file written");
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(v["level"], "error", "{text}");
    assert!(
        v["msg"].as_str().unwrap().contains("does not exist"),
        "{text}"
    );
    // BRIG-ONLY: the log line also names the id
    if !rt.skip_unless_brig("log msg names the id") {
        assert!(
            v["msg"].as_str().unwrap().contains("nope-no-such"),
            "{text}"
        );
    }
}

/// Text logs (the default format) to a file; the file is appended to, not truncated.
#[test]
fn log_file_text_appends() {
    let Some(rt) = Runtime::new("log_file_text_appends") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("rt.log");
    std::fs::write(&log, "previous line\n").unwrap();
    let out = rt.cmd_with(
        &["--log", log.to_str().unwrap()],
        &["state", "nope-no-such"],
    );
    out.assert_fail();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("previous line\n"), "{text}");
    assert!(text.contains("does not exist"), "{text}");
    assert!(text.contains("error"), "{text}");
}

/// Usage errors: a missing container id.
#[test]
fn usage_errors() {
    let Some(rt) = Runtime::new("usage_errors") else {
        return;
    };
    for args in [
        vec!["create"],
        vec!["start"],
        vec!["state"],
        vec!["delete"],
        vec!["kill"],
        vec!["no-such-subcommand"],
    ] {
        let out = rt.cmd(&args);
        out.assert_fail();
    }
}

/// (uid_t)-1 means "no change" to set*id: a process asking for uid or gid 4294967295 would keep
/// running as root. Refused (as runc refuses ids above 2147483647) in config.json and by exec.
#[test]
fn ids_out_of_range_refused() {
    let Some(rt) = Runtime::new("ids_out_of_range_refused") else {
        return;
    };
    for (field, value) in [
        ("uid", json!(4294967295u32)),
        ("gid", json!(4294967295u32)),
        ("additionalGids", json!([4294967295u32])),
    ] {
        let b = Bundle::new(&["id"]).with(|c| c["process"]["user"][field] = value.clone());
        let out = create_and_run_fail(&rt, &b);
        // BRIG-ONLY: config.json: process.user.uid: 4294967295 is out of range ...
        brig_stderr_contains(&rt, &out, &["config.json", "process.user.", "out of range"]);
    }
    let b = Bundle::new(&["sleep", "100"]);
    let id = rt.new_id("ids");
    rt.run_detached(&b, &id).assert_ok();
    for user in ["4294967295:4294967295", "0:4294967295", "4294967295"] {
        let out = rt.cmd(&["exec", "-u", user, &id, "id"]);
        out.assert_fail();
        assert!(!out.stdout.contains("uid="), "exec -u {user} ran: {out}");
        brig_stderr_contains(&rt, &out, &["out of range"]);
    }
    let out = rt.cmd(&["exec", "--additional-gids", "4294967295", &id, "id"]);
    out.assert_fail();
    assert!(!out.stdout.contains("uid="), "{out}");
    rt.cmd(&["exec", "-u", "2147483647:2147483647", &id, "true"])
        .assert_ok();
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// A change to a config.json.
type Edit = fn(&mut serde_json::Value);
/// A change to a config.json that holds its values.
type BoxedEdit = Box<dyn Fn(&mut serde_json::Value)>;
/// What stderr must contain.
type Needles = &'static [&'static str];

/// Values the runtime-spec does not allow, and fields brig does not implement: refused by
/// name, never ignored.
#[test]
fn unallowed_and_unimplemented_fields_refused_by_name() {
    let Some(rt) = Runtime::new("unallowed_and_unimplemented_fields_refused_by_name") else {
        return;
    };
    if rt.skip_unless_brig("runc 1.1 accepts some of these") {
        return;
    }
    let cases: [(&str, Edit); 7] = [
        ("process.env[0]", |c| c["process"]["env"] = json!(["=x"])),
        ("linux.resources.hugepageLimits[0].limit", |c| {
            c["linux"]["resources"]["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": -1}])
        }),
        ("linux.intelRdt.closID", |c| {
            c["linux"]["intelRdt"] = json!({"closID": "../../x"})
        }),
        ("linux.personality", |c| {
            c["linux"]["personality"] = json!({"domain": "LINUX32"})
        }),
        ("linux.netDevices", |c| {
            c["linux"]["netDevices"] = json!({"eth9": {}})
        }),
        ("process.scheduler", |c| {
            c["process"]["scheduler"] = json!({"policy": "SCHED_IDLE"})
        }),
        ("process.ioPriority", |c| {
            c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0})
        }),
    ];
    for (field, edit) in cases {
        let b = Bundle::new(&["true"]).with(edit);
        let out = create_and_run_fail(&rt, &b);
        brig_stderr_contains(&rt, &out, &["config.json", &format!("{field}:")]);
    }
}

/// Failures of the container init name their step and what it acted on, however large that
/// is, and never reach the caller as "init exited" or as a stopped container at `start`.
#[test]
fn init_failures_name_their_step() {
    let Some(rt) = Runtime::new("init_failures_name_their_step") else {
        return;
    };
    let huge = "a".repeat(10 << 20);
    let sysctl = huge.clone();
    let cases: Vec<(BoxedEdit, Needles)> = vec![
        (
            Box::new(move |c| c["linux"]["sysctl"] = json!({"kernel.domainname": sysctl})),
            &["sysctl kernel.domainname", "bytes)"],
        ),
        (
            Box::new(move |c| c["process"]["args"] = json!([huge])),
            &["exec", "not found"],
        ),
        (
            Box::new(|c| {
                c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 1, "soft": 1}])
            }),
            &["RLIMIT_NOFILE"],
        ),
        (
            Box::new(|c| {
                c["process"]["user"]["additionalGids"] = json!((0..70_000).collect::<Vec<u32>>())
            }),
            &["additionalGids"],
        ),
        (
            Box::new(|c| c["hostname"] = json!("h".repeat(10 << 20))),
            &["hostname"],
        ),
    ];
    for (edit, needles) in cases {
        let b = Bundle::new(&["true"]).with(|c| edit(c));
        let out = create_and_run_fail(&rt, &b);
        if rt.skip_unless_brig("runc quotes the whole value") {
            continue;
        }
        let head = &out.stderr[..out.stderr.len().min(2000)];
        assert!(!out.stderr.contains("exited during setup"), "{head}");
        assert!(
            out.stderr.len() < 64 * 1024,
            "{} bytes: {head}",
            out.stderr.len()
        );
        brig_stderr_contains(&rt, &out, needles);
    }
}
