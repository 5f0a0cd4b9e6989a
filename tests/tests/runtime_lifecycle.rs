//! Lifecycle: create -> start -> kill -> delete, `run -d`, foreground `run` exit codes and signal
//! forwarding, `--pid-file`, the state JSON, `list`, `delete` of running/created containers,
//! `kill --all`, pause/resume, and status derived from facts (init killed behind the runtime's
//! back).

use brig_tests::*;
use serde_json::json;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

#[test]
fn create_start_kill_delete() {
    let Some(rt) = Runtime::new("create_start_kill_delete") else {
        return;
    };
    let b = Bundle::new(&["sleep", "100"]);
    let id = rt.new_id("life");
    rt.create_ok(&b, &id);
    let st = rt.state(&id);
    assert_eq!(st["status"], "created", "{st}");
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0, "{st}");
    assert!(process_alive(pid as i32));

    rt.start(&id).assert_ok();
    rt.wait_status(&id, "running", T);
    assert_eq!(rt.pid(&id) as i64, pid, "pid changes on start");

    // start twice fails
    rt.start(&id).assert_fail();

    rt.kill(&id, "KILL").assert_ok();
    rt.wait_status(&id, "stopped", T);

    rt.delete(&id).assert_ok();
    assert!(!rt.root().join(&id).exists());
    let out = rt.cmd(&["state", &id]);
    out.assert_fail();
    assert_no_leftovers(&rt, &id, &b);
}

/// kill accepts "SIGTERM", "TERM", "9", "KILL"; a plain sleep as pid 1 ignores TERM unless it
/// traps it, so the container traps TERM and exits.
#[test]
fn kill_signal_spellings() {
    let Some(rt) = Runtime::new("kill_signal_spellings") else {
        return;
    };
    for sig in ["SIGTERM", "TERM", "15"] {
        let b = Bundle::sh("trap 'exit 3' TERM; while :; do sleep 0.05; done");
        let id = rt.new_id("sig");
        rt.run_detached(&b, &id).assert_ok();
        rt.wait_status(&id, "running", T);
        rt.kill(&id, sig).assert_ok();
        rt.wait_status(&id, "stopped", T);
        rt.delete(&id).assert_ok();
        assert_no_leftovers(&rt, &id, &b);
    }
    for sig in ["9", "KILL", "SIGKILL"] {
        let b = Bundle::new(&["sleep", "100"]);
        let id = rt.new_id("sig");
        rt.run_detached(&b, &id).assert_ok();
        rt.wait_status(&id, "running", T);
        rt.kill(&id, sig).assert_ok();
        rt.wait_status(&id, "stopped", T);
        rt.delete(&id).assert_ok();
        assert_no_leftovers(&rt, &id, &b);
    }
}

/// `kill ID` with no signal sends SIGTERM.
#[test]
fn kill_default_is_sigterm() {
    let Some(rt) = Runtime::new("kill_default_is_sigterm") else {
        return;
    };
    let b = Bundle::sh("trap 'exit 3' TERM; while :; do sleep 0.05; done");
    let id = rt.new_id("sigdef");
    rt.run_detached(&b, &id).assert_ok();
    rt.wait_status(&id, "running", T);
    rt.cmd(&["kill", &id]).assert_ok();
    rt.wait_status(&id, "stopped", T);
    rt.delete(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

#[test]
fn run_detached() {
    let Some(rt) = Runtime::new("run_detached") else {
        return;
    };
    let b = Bundle::new(&["sleep", "100"]);
    let id = rt.new_id("rund");
    let out = rt.run_detached(&b, &id);
    out.assert_ok();
    let st = rt.state(&id);
    assert_eq!(st["status"], "running", "{st}");
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

#[test]
fn run_foreground_exit_code() {
    let Some(rt) = Runtime::new("run_foreground_exit_code") else {
        return;
    };
    let b = Bundle::sh("echo out; echo err >&2; exit 42");
    let id = rt.new_id("exit");
    let out = rt.run_capture(&b, &id);
    assert_eq!(out.code, 42, "{out}");
    assert_eq!(out.out(), "out", "{out}");
    assert!(out.stderr.contains("err"), "{out}");
    // foreground run deletes the container when it exits
    assert!(rt.cmd(&["state", &id]).code != 0);
    assert_no_leftovers(&rt, &id, &b);

    let b = Bundle::new(&["true"]);
    let id = rt.new_id("exit0");
    let out = rt.run_capture(&b, &id);
    assert_eq!(out.code, 0, "{out}");
    assert_no_leftovers(&rt, &id, &b);
}

/// A foreground `run` whose container is killed with SIGKILL exits 128+9.
#[test]
fn run_foreground_killed_exits_137() {
    let Some(rt) = Runtime::new("run_foreground_killed_exits_137") else {
        return;
    };
    let b = Bundle::new(&["sleep", "100"]);
    let id = rt.new_id("k137");
    rt.track(&id);
    let child = rt.spawn(&["run", "--bundle", b.path_str(), &id]);
    assert!(
        wait_for(T, || rt.status(&id).as_deref() == Some("running")),
        "container never ran"
    );
    rt.kill(&id, "KILL").assert_ok();
    let out = child.wait_timeout(T);
    assert_eq!(out.code, 137, "{out}");
    assert_no_leftovers(&rt, &id, &b);
}

/// SIGTERM sent to a foreground `run` is forwarded to the container's init.
#[test]
fn run_foreground_forwards_sigterm() {
    let Some(rt) = Runtime::new("run_foreground_forwards_sigterm") else {
        return;
    };
    let b =
        Bundle::sh("trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done");
    let id = rt.new_id("fwd");
    rt.track(&id);
    let child = rt.spawn(&["run", "--bundle", b.path_str(), &id]);
    assert!(
        wait_for(T, || rt.status(&id).as_deref() == Some("running")),
        "container never ran"
    );
    // give sh time to install its trap
    std::thread::sleep(Duration::from_millis(300));
    child.signal(libc::SIGTERM);
    let out = child.wait_timeout(T);
    assert_eq!(out.code, 7, "{out}");
    assert!(out.stdout.contains("got-term"), "{out}");
    assert_no_leftovers(&rt, &id, &b);
}

#[test]
fn pid_file_matches_state() {
    let Some(rt) = Runtime::new("pid_file_matches_state") else {
        return;
    };
    let b = Bundle::new(&["sleep", "100"]);
    let id = rt.new_id("pidf");
    rt.track(&id);
    let pidfile = b.path().join("container.pid");
    rt.cmd(&[
        "create",
        "--bundle",
        b.path_str(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
    ])
    .assert_ok();
    let text = std::fs::read_to_string(&pidfile).expect("pid file written");
    let pid: i64 = text.trim().parse().expect("pid file holds a number");
    assert_eq!(pid, rt.state(&id)["pid"].as_i64().unwrap());
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);

    // run -d with a relative --pid-file is relative to the runtime's cwd
    let b = Bundle::new(&["sleep", "100"]);
    let id = rt.new_id("pidf");
    rt.track(&id);
    let out = rt
        .spawn_in(b.path(), &["run", "-d", "--pid-file", "rel.pid", &id])
        .wait_timeout(T);
    out.assert_ok();
    let pid: i64 = read_trim(b.path().join("rel.pid")).parse().unwrap();
    assert_eq!(pid, rt.state(&id)["pid"].as_i64().unwrap());
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

#[test]
fn state_json_fields() {
    let Some(rt) = Runtime::new("state_json_fields") else {
        return;
    };
    let b = Bundle::new(&["sleep", "100"]).with(|c| {
        c["annotations"] = json!({"org.brig.test": "yes", "x": "1"});
    });
    let id = rt.new_id("stjs");
    rt.create_ok(&b, &id);
    let st = rt.state(&id);
    for k in [
        "ociVersion",
        "id",
        "pid",
        "status",
        "bundle",
        "rootfs",
        "created",
    ] {
        assert!(st.get(k).is_some(), "state lacks {k}: {st}");
    }
    assert!(st["ociVersion"].as_str().unwrap().starts_with("1."), "{st}");
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["status"], "created");
    assert_eq!(st["bundle"], b.path_str(), "bundle must be absolute: {st}");
    let rootfs = st["rootfs"].as_str().unwrap();
    assert!(rootfs.starts_with('/'), "{st}");
    assert_eq!(
        std::fs::canonicalize(rootfs).unwrap(),
        std::fs::canonicalize(b.rootfs()).unwrap()
    );
    // RFC 3339 timestamp, e.g. 2024-01-02T03:04:05.123456789Z
    let created = st["created"].as_str().unwrap();
    assert!(
        created.len() >= 20 && created.as_bytes()[4] == b'-' && created.contains('T'),
        "{created}"
    );
    assert_eq!(st["annotations"]["org.brig.test"], "yes", "{st}");
    assert_eq!(st["annotations"]["x"], "1", "{st}");

    // bundle given relative to the cwd is stored absolute
    let b2 = Bundle::new(&["sleep", "100"]);
    let id2 = rt.new_id("strel");
    rt.track(&id2);
    let parent = b2.path().parent().unwrap();
    let rel = b2.path().file_name().unwrap().to_str().unwrap();
    rt.spawn_in(parent, &["create", "--bundle", rel, &id2])
        .wait_timeout(T)
        .assert_ok();
    assert_eq!(rt.state(&id2)["bundle"], b2.path_str());

    rt.delete_force(&id).assert_ok();
    rt.delete_force(&id2).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
    assert_no_leftovers(&rt, &id2, &b2);
}

#[test]
fn list_formats() {
    let Some(rt) = Runtime::new("list_formats") else {
        return;
    };
    let b1 = Bundle::new(&["sleep", "100"]);
    let b2 = Bundle::new(&["sleep", "100"]);
    let c = rt.new_id("lc");
    let r = rt.new_id("lr");
    rt.create_ok(&b1, &c);
    rt.run_detached(&b2, &r).assert_ok();

    let out = rt.cmd(&["list", "--format", "json"]);
    out.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("list json");
    let arr = v.as_array().expect("list --format json is an array");
    let find = |id: &str| arr.iter().find(|e| e["id"] == id).cloned();
    let ec = find(&c).expect("created container listed");
    let er = find(&r).expect("running container listed");
    assert_eq!(ec["status"], "created");
    assert_eq!(er["status"], "running");
    assert_eq!(er["bundle"], b2.path_str());
    assert!(er["pid"].as_i64().unwrap() > 0);

    let out = rt.cmd(&["list", "-q"]);
    out.assert_ok();
    let mut ids: Vec<&str> = out.stdout.lines().collect();
    ids.sort();
    let mut want = vec![c.as_str(), r.as_str()];
    want.sort();
    assert_eq!(ids, want, "{out}");

    // table format has a header and a row per container
    let out = rt.cmd(&["list"]);
    out.assert_ok();
    assert!(out.stdout.starts_with("ID"), "{out}");
    assert!(out.stdout.contains(&c) && out.stdout.contains(&r), "{out}");

    rt.delete_force(&c).assert_ok();
    rt.delete_force(&r).assert_ok();
    assert_no_leftovers(&rt, &c, &b1);
    assert_no_leftovers(&rt, &r, &b2);

    let out = rt.cmd(&["list", "-q"]);
    out.assert_ok();
    assert_eq!(out.stdout.trim(), "", "{out}");
}

/// `list` with a --root that does not exist yet lists nothing and succeeds.
#[test]
fn list_empty_root() {
    let Some(rt) = Runtime::new("list_empty_root") else {
        return;
    };
    let out = rt.cmd(&["list", "--format", "json"]);
    out.assert_ok();
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("json");
    // runc prints `null`; an empty array is as good
    assert!(
        v.is_null() || v.as_array().map(|a| a.is_empty()).unwrap_or(false),
        "{out}"
    );
}

#[test]
fn delete_running_needs_force() {
    let Some(rt) = Runtime::new("delete_running_needs_force") else {
        return;
    };
    let b = Bundle::new(&["sleep", "100"]);
    let id = rt.new_id("delrun");
    rt.run_detached(&b, &id).assert_ok();
    let pid = rt.pid(&id);
    let out = rt.delete(&id);
    out.assert_fail();
    assert_eq!(rt.status(&id).as_deref(), Some("running"), "{out}");
    assert!(process_alive(pid));
    rt.delete_force(&id).assert_ok();
    assert!(
        wait_for(T, || !process_alive(pid)),
        "init survived delete --force"
    );
    assert!(rt.cmd(&["state", &id]).code != 0);
    assert_no_leftovers(&rt, &id, &b);
}

#[test]
fn delete_created_container() {
    let Some(rt) = Runtime::new("delete_created_container") else {
        return;
    };
    let b = Bundle::new(&["sleep", "100"]);
    let id = rt.new_id("delcr");
    rt.create_ok(&b, &id);
    let pid = rt.pid(&id);
    rt.delete(&id).assert_ok();
    assert!(wait_for(T, || !process_alive(pid)), "init survived delete");
    assert!(rt.cmd(&["state", &id]).code != 0);
    assert_no_leftovers(&rt, &id, &b);
}

/// delete --force of a stopped container and of an unknown id.
#[test]
fn delete_stopped_and_force_unknown() {
    let Some(rt) = Runtime::new("delete_stopped_and_force_unknown") else {
        return;
    };
    let b = Bundle::new(&["true"]);
    let id = rt.new_id("delst");
    rt.run_detached(&b, &id).assert_ok();
    rt.wait_status(&id, "stopped", T);
    rt.delete(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
    // --force on a container that does not exist succeeds (runc semantics)
    let out = rt.delete_force(&rt.new_id("nosuch"));
    out.assert_ok();
}

#[test]
fn kill_all() {
    let Some(rt) = Runtime::new("kill_all") else {
        return;
    };
    let b = Bundle::sh("sleep 100 & sleep 100 & trap '' TERM; while :; do sleep 1; done");
    let id = rt.new_id("kall");
    rt.run_detached(&b, &id).assert_ok();
    rt.wait_status(&id, "running", T);
    rt.cmd(&["kill", "--all", &id, "KILL"]).assert_ok();
    rt.wait_status(&id, "stopped", T);
    rt.delete(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// The status is derived from facts: when init dies behind the runtime's back it is "stopped".
#[test]
fn status_after_init_killed_from_host() {
    let Some(rt) = Runtime::new("status_after_init_killed_from_host") else {
        return;
    };
    let b = Bundle::new(&["sleep", "100"]);
    let id = rt.new_id("fact");
    rt.run_detached(&b, &id).assert_ok();
    let pid = rt.pid(&id);
    kill_pid(pid, libc::SIGKILL);
    assert!(wait_for(T, || !process_alive(pid)));
    rt.wait_status(&id, "stopped", T);
    // killing a stopped container fails, deleting it works without --force
    let out = rt.kill(&id, "KILL");
    out.assert_fail();
    rt.delete(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);

    // same for a created (never started) container
    let b = Bundle::new(&["sleep", "100"]);
    let id = rt.new_id("factc");
    rt.create_ok(&b, &id);
    let pid = rt.pid(&id);
    kill_pid(pid, libc::SIGKILL);
    rt.wait_status(&id, "stopped", T);
    rt.start(&id).assert_fail();
    rt.delete(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// A container whose process exits by itself becomes "stopped" and can be deleted.
#[test]
fn exits_by_itself() {
    let Some(rt) = Runtime::new("exits_by_itself") else {
        return;
    };
    let b = Bundle::new(&["true"]);
    let id = rt.new_id("self");
    rt.create_ok(&b, &id);
    rt.start(&id).assert_ok();
    rt.wait_status(&id, "stopped", T);
    rt.delete(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// Container stdio is the runtime's for create/start: output of the process lands in the file
/// the creating runtime had as stdout.
#[test]
fn detached_stdio_is_inherited() {
    let Some(rt) = Runtime::new("detached_stdio_is_inherited") else {
        return;
    };
    let b = Bundle::sh("echo hello-out; echo hello-err >&2");
    let id = rt.new_id("stdio");
    rt.track(&id);
    let out_f = b.path().join("out.txt");
    let err_f = b.path().join("err.txt");
    let mut cmd = rt.command(&[], &["create", "--bundle", b.path_str(), &id]);
    cmd.stdout(std::fs::File::create(&out_f).unwrap());
    cmd.stderr(std::fs::File::create(&err_f).unwrap());
    let st = wait_child(cmd.spawn().unwrap(), CMD_TIMEOUT).expect("create timed out");
    assert!(st.success(), "{}", read_trim(&err_f));
    rt.start(&id).assert_ok();
    rt.wait_status(&id, "stopped", T);
    assert_eq!(read_trim(&out_f), "hello-out");
    assert!(read_trim(&err_f).contains("hello-err"));
    rt.delete(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// pause -> "paused" (the process is frozen), resume -> "running"; delete of a paused container
/// needs --force.
#[test]
fn pause_resume() {
    let Some(rt) = Runtime::new("pause_resume") else {
        return;
    };
    let b = Bundle::new(&["sleep", "100"]);
    let id = rt.new_id("pause");
    rt.run_detached(&b, &id).assert_ok();
    let pid = rt.pid(&id);
    rt.cmd(&["pause", &id]).assert_ok();
    assert_eq!(rt.status(&id).as_deref(), Some("paused"));
    rt.delete(&id).assert_fail();
    rt.cmd(&["resume", &id]).assert_ok();
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    // resume of a running container fails
    rt.cmd(&["resume", &id]).assert_fail();
    rt.cmd(&["pause", &id]).assert_ok();
    rt.delete_force(&id).assert_ok();
    assert!(
        wait_for(T, || !process_alive(pid)),
        "paused init survived delete --force"
    );
    assert_no_leftovers(&rt, &id, &b);
}

/// Forced deletes of one container racing each other all succeed: the ones that find it gone
/// (removed by another while they waited) have nothing left to do, as with runc.
#[test]
fn parallel_forced_deletes_all_succeed() {
    let Some(rt) = Runtime::new("parallel_forced_deletes_all_succeed") else {
        return;
    };
    let b = Bundle::new(&["sleep", "100"]);
    for round in 0..3 {
        let id = rt.new_id("delpar");
        rt.run_detached(&b, &id).assert_ok();
        let deletes: Vec<Spawned> = (0..12).map(|_| rt.spawn(&["delete", "-f", &id])).collect();
        for d in deletes {
            let out = d.wait_timeout(Duration::from_secs(60));
            assert!(out.success(), "round {round}: {out}");
        }
        assert!(rt.cmd(&["state", &id]).code != 0);
        assert_no_leftovers(&rt, &id, &b);
    }
}

/// `delete -f` ends a container even while another brig command holds its lock and never lets
/// go (as a `checkpoint --lazy-pages` whose page client never comes: in runc's checkpoint.bats
/// under load, teardown's `delete -f` then waited forever). runc's `delete -f` does not wait on
/// a checkpoint either.
#[test]
fn forced_delete_of_a_locked_container_ends_it() {
    use std::os::fd::AsRawFd;
    let Some(rt) = Runtime::new("forced_delete_of_a_locked_container_ends_it") else {
        return;
    };
    let b = Bundle::new(&["sleep", "100"]);
    let id = rt.new_id("dellock");
    rt.run_detached(&b, &id).assert_ok();
    let pid = rt.pid(&id);
    // The lock every brig command takes: flock(2) on the container's state directory.
    let dir = std::fs::File::open(rt.root().join(&id)).expect("state dir");
    // SAFETY: flock on an fd we own.
    assert_eq!(unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) }, 0);
    let out = rt
        .spawn(&["delete", "-f", &id])
        .wait_timeout(Duration::from_secs(60));
    assert!(out.success(), "{out}");
    assert!(
        !process_alive(pid),
        "init survived delete -f of a locked container"
    );
    assert!(rt.cmd(&["state", &id]).code != 0);
    drop(dir);
    assert_no_leftovers(&rt, &id, &b);
}

/// A forced delete that finds a container directory without state but locked (a create under
/// way, say one that runs slow hooks) leaves it to its creator: it succeeds and removes
/// nothing, as runc's finds no container there. Once unlocked, such a directory is a create
/// that died, and a forced delete removes it.
#[test]
fn forced_delete_leaves_a_create_under_way_alone() {
    use std::os::fd::AsRawFd;
    let Some(rt) = Runtime::new("forced_delete_leaves_a_create_under_way_alone") else {
        return;
    };
    let id = rt.new_id("delcreating");
    let dir = rt.root().join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let held = std::fs::File::open(&dir).unwrap();
    // SAFETY: flock on an fd we own.
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
    let out = rt
        .spawn(&["delete", "-f", &id])
        .wait_timeout(Duration::from_secs(60));
    assert!(out.success(), "{out}");
    assert!(
        dir.is_dir(),
        "delete -f removed a directory another command holds"
    );
    drop(held);
    rt.delete_force(&id).assert_ok();
    assert!(
        !dir.exists(),
        "an unlocked directory without state stays after delete -f"
    );
}

/// A relative `--root` names a directory below the caller's working directory, for every
/// command (create changes into the bundle first), as runc's.
#[test]
fn relative_root() {
    let Some(rt) = Runtime::new("relative_root") else {
        return;
    };
    let cwd = tempfile::tempdir().unwrap();
    let b = Bundle::new(&["sleep", "100"]);
    let id = rt.new_id("relroot");
    // Output to files: the container's stdio is the runtime's, and would hold a pipe open.
    let brig = |args: &[&str]| {
        let (o, e) = (cwd.path().join("out"), cwd.path().join("err"));
        let ok = std::process::Command::new(rt.bin())
            .current_dir(cwd.path())
            .args(["--root", "rr"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&o).unwrap())
            .stderr(std::fs::File::create(&e).unwrap())
            .status()
            .unwrap()
            .success();
        let out = std::fs::read_to_string(o).unwrap();
        let text = format!("{args:?}: {out}{}", std::fs::read_to_string(e).unwrap());
        (ok, out, text)
    };
    let (ok, _, text) = brig(&["create", "--bundle", b.path_str(), &id]);
    assert!(ok, "{text}");
    assert!(cwd.path().join("rr").join(&id).is_dir(), "{text}");
    let (ok, listed, text) = brig(&["list", "-q"]);
    assert!(ok && listed.lines().any(|l| l == id), "{text}");
    let (ok, state, text) = brig(&["state", &id]);
    assert!(ok && state.contains("\"created\""), "{text}");
    let (ok, _, text) = brig(&["start", &id]);
    assert!(ok, "{text}");
    let (ok, _, text) = brig(&["delete", "-f", &id]);
    assert!(ok, "{text}");
    assert!(!cwd.path().join("rr").join(&id).exists());
    assert!(
        !b.path().join("rr").exists(),
        "state written below the bundle"
    );
    assert_no_leftovers(&rt, &id, &b);
}
