//! Rootless: an unprivileged user runs containers with brig. The test makes a system user, gives
//! it a bundle, and runs brig as that user (runuser): `brig spec --rootless` output runs as is,
//! the container's root is the user's uid (one mapping, written by brig itself), state lives
//! under $XDG_RUNTIME_DIR/brig, no cgroup is made, and limits that would need a delegated cgroup
//! fail clearly and leave nothing behind.

use brig_tests::*;
use serde_json::{json, Value};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

const USER: &str = ROOTLESS_USER;

/// `brig ARGS` as the test user, in `dir`, with `input` on stdin. Output goes to files: a
/// detached container keeps its stdio open after brig returns.
fn as_user(rt: &Runtime, xdg: &Path, dir: &Path, args: &[&str], input: &str) -> Out {
    let out_f = tempfile::NamedTempFile::new().unwrap();
    let err_f = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new("runuser")
        .args([
            "-u",
            USER,
            "--",
            "env",
            &format!("XDG_RUNTIME_DIR={}", xdg.display()),
        ])
        .arg(rt.bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(out_f.reopen().unwrap())
        .stderr(err_f.reopen().unwrap())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let st = wait_child(child, std::time::Duration::from_secs(30))
        .expect("brig as the test user timed out");
    Out {
        code: st.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(out_f.path()).unwrap_or_default(),
        stderr: std::fs::read_to_string(err_f.path()).unwrap_or_default(),
        cmdline: format!(
            "runuser -u {USER} -- {} {}",
            rt.bin().display(),
            args.join(" ")
        ),
    }
}

/// No process runs as the test user (the kernel may take a moment to reap a
/// pid namespace after its init exits).
fn assert_no_user_processes() {
    let start = std::time::Instant::now();
    loop {
        let ps = Command::new("pgrep").args(["-u", USER]).output().unwrap();
        if ps.stdout.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "processes of {USER} left: {}",
            String::from_utf8_lossy(&ps.stdout)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn edit(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

/// One test, in steps: the user's processes are checked between them.
#[test]
fn rootless() {
    let Some(rt) = Runtime::new("rootless") else {
        return;
    };
    if rt.skip_unless_brig("brig's rootless defaults (state dir, no cgroup)") {
        return;
    }
    spec_runs_as_is(&rt);
    detached_lifecycle_and_limits(&rt);
}

fn spec_runs_as_is(rt: &Runtime) {
    let (uid, _gid) = rootless_user();
    let (_top, bundle, xdg) = rootless_bundle();
    as_user(rt, &xdg, &bundle, &["spec", "--rootless"], "").assert_ok();
    // As is: terminal true, "sh" reading what we type.
    let id = unique("rootless");
    let script = "id -u; cat /proc/self/uid_map | tr -s ' '; grep -c . /proc/self/setgroups; hostname; exit 3\n";
    let out = as_user(rt, &xdg, &bundle, &["run", &id], script);
    assert_eq!(out.code, 3, "{out}");
    let text = out.stdout.replace('\r', "");
    assert!(
        text.contains("\n0\n") || text.starts_with("0\n"),
        "container root is not uid 0: {text:?}"
    );
    assert!(text.contains(&format!(" 0 {uid} 1")), "uid map: {text:?}");
    assert!(text.contains("runc"), "hostname from the spec: {text:?}");
    // Nothing left: state under $XDG_RUNTIME_DIR/brig is gone, no process of the user.
    let state = xdg.join("brig").join(&id);
    assert!(!state.exists(), "state dir left: {}", state.display());
    assert_no_user_processes();
}

fn detached_lifecycle_and_limits(rt: &Runtime) {
    let (uid, _gid) = rootless_user();
    let (_top, bundle, xdg) = rootless_bundle();
    as_user(rt, &xdg, &bundle, &["spec", "--rootless"], "").assert_ok();
    let cfg = bundle.join("config.json");
    edit(&cfg, |c| {
        c["process"]["terminal"] = json!(false);
        c["process"]["args"] = json!(["sleep", "1000"]);
    });
    let id = unique("rootless-d");
    as_user(rt, &xdg, &bundle, &["run", "-d", &id], "").assert_ok();
    // State in the user's runtime dir, owned by the user.
    let state = xdg.join("brig").join(&id);
    assert_eq!(std::fs::metadata(&state).unwrap().uid(), uid);
    let st: Value =
        serde_json::from_str(&as_user(rt, &xdg, &bundle, &["state", &id], "").stdout).unwrap();
    assert_eq!(st["status"], "running");
    let pid = st["pid"].as_i64().unwrap();
    // The init runs as the user on the host, and exec works.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let host_uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        host_uid.split_whitespace().nth(1),
        Some(uid.to_string().as_str())
    );
    let out = as_user(rt, &xdg, &bundle, &["exec", &id, "id", "-u"], "");
    out.assert_ok();
    assert_eq!(out.stdout.trim(), "0", "{out}");
    as_user(rt, &xdg, &bundle, &["delete", "-f", &id], "").assert_ok();
    assert!(!state.exists());

    // A memory limit needs a cgroup the user may write: refused, nothing left behind.
    edit(&cfg, |c| {
        c["process"]["args"] = json!(["true"]);
        c["linux"]["resources"] = json!({"memory": {"limit": 67108864}});
    });
    let id = unique("rootless-lim");
    let out = as_user(rt, &xdg, &bundle, &["run", &id], "");
    out.assert_fail();
    assert!(
        out.stderr.to_lowercase().contains("permission denied") || out.stderr.contains("cgroup"),
        "{out}"
    );
    assert!(!xdg.join("brig").join(&id).exists(), "state dir left");
    assert_no_user_processes();
}
