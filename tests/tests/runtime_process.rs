//! The container process: rlimits, user uid/gid/additionalGids, umask, cwd, env, args and PATH
//! lookup, oomScoreAdj. (Capabilities, noNewPrivileges and seccomp: security_profile.rs.)

use brig_tests::*;
use serde_json::json;

/// Runs `sh -c script` in a fresh container built by `edit`; returns the output (exit 0 required).
#[track_caller]
fn run_sh(rt: &Runtime, script: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Out {
    let b = Bundle::sh(script).with(edit);
    let id = rt.new_id("proc");
    let out = rt.run_capture(&b, &id);
    out.assert_ok();
    assert_no_leftovers(rt, &id, &b);
    out
}

#[test]
fn rlimits() {
    let Some(rt) = Runtime::new("rlimits") else {
        return;
    };
    let out = run_sh(&rt, "ulimit -n", |_| {});
    assert_eq!(out.out(), "1024");

    let out = run_sh(
        &rt,
        "ulimit -Sn; ulimit -Hn; grep -E 'Max (open files|core file size|processes)' /proc/self/limits",
        |c| {
            c["process"]["rlimits"] = json!([
                {"type": "RLIMIT_NOFILE", "soft": 512u64, "hard": 2048u64},
                {"type": "RLIMIT_CORE", "soft": 0u64, "hard": 4096u64},
                {"type": "RLIMIT_NPROC", "soft": 100u64, "hard": 200u64}
            ]);
        },
    );
    let lines: Vec<String> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(lines[0], "512", "{out}");
    assert_eq!(lines[1], "2048", "{out}");
    assert!(
        lines.contains(&"Max open files 512 2048 files".to_string()),
        "{out}"
    );
    assert!(
        lines.contains(&"Max core file size 0 4096 bytes".to_string()),
        "{out}"
    );
    assert!(
        lines.contains(&"Max processes 100 200 processes".to_string()),
        "{out}"
    );
}

#[test]
fn user_uid_gid_additional_gids() {
    let Some(rt) = Runtime::new("user_uid_gid_additional_gids") else {
        return;
    };
    let out = run_sh(
        &rt,
        "id -u; id -g; grep -E '^(Uid|Gid|Groups):' /proc/self/status; whoami",
        |c| {
            c["process"]["user"] =
                json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 20, 29]});
        },
    );
    let lines: Vec<String> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(lines[0], "1000", "{out}");
    assert_eq!(lines[1], "1000", "{out}");
    assert_eq!(lines[2], "Uid: 1000 1000 1000 1000", "{out}");
    assert_eq!(lines[3], "Gid: 1000 1000 1000 1000", "{out}");
    assert_eq!(lines[4], "Groups: 10 20 29", "{out}");
    assert_eq!(lines[5], "brig", "{out}");

    // uid 0 with no additionalGids: no supplementary groups (host's are dropped)
    let out = run_sh(&rt, "grep ^Groups: /proc/self/status", |_| {});
    assert_eq!(out.out().trim_end(), "Groups:", "{out}");

    // a uid/gid without passwd entries works too
    let out = run_sh(&rt, "id -u; id -g", |c| {
        c["process"]["user"] = json!({"uid": 4242, "gid": 4343});
    });
    assert_eq!(out.stdout, "4242\n4343\n", "{out}");
}

#[test]
fn umask() {
    let Some(rt) = Runtime::new("umask") else {
        return;
    };
    let out = run_sh(&rt, "umask", |c| {
        c["process"]["user"]["umask"] = json!(0o027);
    });
    assert_eq!(out.out(), "0027");
    // default is 0022
    let out = run_sh(&rt, "umask", |_| {});
    assert_eq!(out.out(), "0022");
}

#[test]
fn cwd() {
    let Some(rt) = Runtime::new("cwd") else {
        return;
    };
    let out = run_sh(&rt, "pwd", |c| c["process"]["cwd"] = json!("/etc"));
    assert_eq!(out.out(), "/etc");
    // a cwd that does not exist in the rootfs is created
    let out = run_sh(&rt, "pwd", |c| {
        c["process"]["cwd"] = json!("/work/dir");
        c["root"]["readonly"] = json!(false);
    });
    assert_eq!(out.out(), "/work/dir");
}

#[test]
fn env() {
    let Some(rt) = Runtime::new("env") else {
        return;
    };
    let out = run_sh(&rt, "echo \"$FOO|$BAR|$PATH\"; env | grep -c ^HOME=", |c| {
        c["process"]["env"] = json!(["PATH=/bin:/usr/bin", "FOO=bar baz", "BAR="]);
    });
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "bar baz||/bin:/usr/bin", "{out}");
    // runc sets HOME from /etc/passwd (or "/") when env lacks it
    assert_eq!(lines[1], "1", "{out}");

    // the runtime's own environment does not leak in
    let out = run_sh(&rt, "env | sort", |c| {
        c["process"]["env"] = json!(["PATH=/bin", "ONLY=1"]);
    });
    for l in out.stdout.lines() {
        let k = l.split('=').next().unwrap();
        assert!(
            ["PATH", "ONLY", "HOME", "PWD", "SHLVL", "_", "HOSTNAME"].contains(&k),
            "unexpected env {l}: {out}"
        );
    }
}

/// An environment of 50,000 entries arrives whole, a duplicate name once with its last value
/// (the order is process::plan's unit test's). The runtime's handling of it is linear: it was
/// quadratic, 158 s for 100,000 entries (bench/env.sh times brig against runc; no timing here).
/// The container runs `env` itself: a shell would spend seconds hashing 50,000 variables.
#[test]
fn large_env_arrives_whole() {
    let Some(rt) = Runtime::new("large-env") else {
        return;
    };
    const N: usize = 50_000;
    let b = Bundle::new(&["env"]).with(|c| {
        let mut env: Vec<String> = vec!["PATH=/bin".into()];
        env.extend((0..N).map(|i| format!("K{i}=v{i}")));
        env.push("K7=last".into());
        c["process"]["env"] = json!(env);
    });
    let id = rt.new_id("large-env");
    let out = rt.run_capture(&b, &id);
    out.assert_ok();
    assert_no_leftovers(&rt, &id, &b);
    let ks: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with('K')).collect();
    assert_eq!(ks.len(), N, "{} K entries", ks.len());
    let k7: Vec<&str> = ks
        .iter()
        .copied()
        .filter(|l| l.starts_with("K7="))
        .collect();
    assert_eq!(k7, ["K7=last"]);
    assert!(ks.contains(&"K49999=v49999"));
}

/// process.args[0] is looked up in the container's PATH.
#[test]
fn args_path_lookup() {
    let Some(rt) = Runtime::new("args_path_lookup") else {
        return;
    };
    let b = Bundle::new(&["echo", "a b", "c"]);
    let id = rt.new_id("args");
    let out = rt.run_capture(&b, &id);
    out.assert_ok();
    assert_eq!(out.stdout, "a b c\n");
    assert_no_leftovers(&rt, &id, &b);

    let b = Bundle::new(&["/bin/busybox", "echo", "abs"]);
    let id = rt.new_id("args");
    let out = rt.run_capture(&b, &id);
    assert_eq!(out.stdout, "abs\n", "{out}");
    assert_no_leftovers(&rt, &id, &b);
}

#[test]
fn oom_score_adj() {
    let Some(rt) = Runtime::new("oom_score_adj") else {
        return;
    };
    let out = run_sh(&rt, "cat /proc/self/oom_score_adj", |c| {
        c["process"]["oomScoreAdj"] = json!(345);
    });
    assert_eq!(out.out(), "345");
    let out = run_sh(&rt, "cat /proc/self/oom_score_adj", |c| {
        c["process"]["oomScoreAdj"] = json!(1000);
    });
    assert_eq!(out.out(), "1000");
    // (negative values need CAP_SYS_RESOURCE, which this test machine's sandbox lacks)
}
