//! checkpoint/restore through criu: a busybox container counting into a bind-mounted host file
//! is checkpointed, restored into the same id, and counts on from where it was; `--leave-running`
//! keeps it running; `--pre-dump` + `--parent-path`; a checkpoint of an unknown container and a
//! restore from an empty image dir fail clearly and leave nothing behind.
//!
//! criu must pass `criu check` on this kernel (3.17 fails on 6.18's vdso); where it does not,
//! the tests print why and skip. tests/vm/run.sh runs them on Debian's 6.1 kernel.

use brig_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// Runtime for a checkpoint test, or None (printing why) when criu cannot work here.
fn runtime(test: &str) -> Option<Runtime> {
    let rt = Runtime::new(test)?;
    match Command::new("criu").arg("check").output() {
        Err(e) => {
            println!("SKIP {test}: criu not runnable: {e}");
            None
        }
        Ok(o) if !o.status.success() => {
            let err = String::from_utf8_lossy(&o.stderr);
            let first = err
                .lines()
                .find(|l| l.contains("Error"))
                .unwrap_or("no error text");
            println!("SKIP {test}: `criu check` fails on this kernel: {first}");
            None
        }
        Ok(_) => Some(rt),
    }
}

/// A container that appends 1, 2, 3, ... to /data/count (a host dir) every 0.1 s. Its stdio is
/// the container's own /dev/null, so nothing outside the container is open in it.
fn counter_bundle() -> (Bundle, PathBuf) {
    let mut b = Bundle::sh(
        "exec </dev/null >/dev/null 2>&1; i=0; \
         while :; do i=$((i+1)); echo $i >> /data/count; sleep 0.1; done",
    );
    let data = b.host_dir("data");
    let src = data.to_str().unwrap().to_string();
    b.edit(|c| {
        add_mount(
            c,
            serde_json::json!({"destination": "/data", "type": "bind", "source": src,
                               "options": ["rbind", "rw"]}),
        )
    });
    (b, data.join("count"))
}

fn numbers(file: &Path) -> Vec<u64> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn last(file: &Path) -> u64 {
    numbers(file).last().copied().unwrap_or(0)
}

/// criu's log lines with "Error", for a failure message.
fn criu_errors(dir: &Path) -> String {
    let mut s = String::new();
    for name in ["dump.log", "restore.log"] {
        if let Ok(t) = std::fs::read_to_string(dir.join(name)) {
            for l in t.lines().filter(|l| l.contains("Error")) {
                s.push_str(&format!("{name}: {l}\n"));
            }
        }
    }
    s
}

#[track_caller]
fn ok(out: Out, work: &Path) {
    assert!(out.success(), "{out}\ncriu:\n{}", criu_errors(work));
}

#[test]
fn checkpoint_and_restore_counts_on() {
    let Some(rt) = runtime("checkpoint_and_restore_counts_on") else {
        return;
    };
    let (b, count) = counter_bundle();
    let id = rt.new_id("cr");
    let tmp = tempfile::tempdir().unwrap();
    let (images, work) = (tmp.path().join("images"), tmp.path().join("work"));
    let (images_s, work_s) = (images.to_str().unwrap(), work.to_str().unwrap());
    rt.run_detached(&b, &id).assert_ok();
    assert!(wait_for(T, || last(&count) >= 5), "counter never started");

    let out = rt.cmd(&[
        "checkpoint",
        "--image-path",
        images_s,
        "--work-path",
        work_s,
        &id,
    ]);
    ok(out, &work);
    // As with runc, the checkpointed container is gone: its id is free.
    rt.cmd(&["state", &id]).assert_fail();
    let before = last(&count);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(last(&count), before, "the counter runs on after checkpoint");
    assert!(images.join("inventory.img").is_file());

    let out = rt.cmd(&[
        "restore",
        "-d",
        "--image-path",
        images_s,
        "--work-path",
        work_s,
        "--bundle",
        b.path_str(),
        &id,
    ]);
    ok(out, &work);
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    let pid = rt.pid(&id);
    assert!(process_alive(pid), "restored init {pid} is not alive");
    assert!(
        wait_for(T, || last(&count) >= before + 3),
        "counter did not go on after restore (last {before})"
    );
    // It counts on from where it was: the first number after restore follows the last one.
    let n = numbers(&count);
    let i = n.iter().position(|&x| x == before).unwrap();
    assert_eq!(n[i + 1], before + 1, "{n:?}");
    assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "{n:?}");

    // A second round, as runc's test does.
    ok(
        rt.cmd(&[
            "checkpoint",
            "--image-path",
            images_s,
            "--work-path",
            work_s,
            &id,
        ]),
        &work,
    );
    let before = last(&count);
    ok(
        rt.cmd(&[
            "restore",
            "-d",
            "--image-path",
            images_s,
            "--work-path",
            work_s,
            "--bundle",
            b.path_str(),
            &id,
        ]),
        &work,
    );
    assert!(wait_for(T, || last(&count) > before + 1));

    rt.kill(&id, "KILL").assert_ok();
    rt.wait_status(&id, "stopped", T);
    rt.delete(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

#[test]
fn checkpoint_leave_running() {
    let Some(rt) = runtime("checkpoint_leave_running") else {
        return;
    };
    let (b, count) = counter_bundle();
    let id = rt.new_id("crlr");
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    rt.run_detached(&b, &id).assert_ok();
    assert!(wait_for(T, || last(&count) >= 3));
    let pid = rt.pid(&id);
    ok(
        rt.cmd(&[
            "checkpoint",
            "--leave-running",
            "--image-path",
            images.to_str().unwrap(),
            &id,
        ]),
        &images,
    );
    assert!(images.join("inventory.img").is_file());
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    assert_eq!(rt.pid(&id), pid);
    let after = last(&count);
    assert!(wait_for(T, || last(&count) > after + 2), "counter stopped");
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

#[test]
fn pre_dump_then_dump_and_restore() {
    let Some(rt) = runtime("pre_dump_then_dump_and_restore") else {
        return;
    };
    let (b, count) = counter_bundle();
    let id = rt.new_id("crpre");
    let tmp = tempfile::tempdir().unwrap();
    let (parent, images) = (tmp.path().join("parent"), tmp.path().join("images"));
    rt.run_detached(&b, &id).assert_ok();
    assert!(wait_for(T, || last(&count) >= 3));
    ok(
        rt.cmd(&[
            "checkpoint",
            "--pre-dump",
            "--image-path",
            parent.to_str().unwrap(),
            &id,
        ]),
        &parent,
    );
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    // An absolute --parent-path is refused, as by runc.
    let out = rt.cmd(&[
        "checkpoint",
        "--parent-path",
        parent.to_str().unwrap(),
        "--image-path",
        images.to_str().unwrap(),
        &id,
    ]);
    out.assert_fail();
    assert!(out.stderr.contains("--parent-path"), "{out}");
    ok(
        rt.cmd(&[
            "checkpoint",
            "--parent-path",
            "../parent",
            "--image-path",
            images.to_str().unwrap(),
            &id,
        ]),
        &images,
    );
    let before = last(&count);
    ok(
        rt.cmd(&[
            "restore",
            "-d",
            "--image-path",
            images.to_str().unwrap(),
            "--bundle",
            b.path_str(),
            &id,
        ]),
        &images,
    );
    assert!(wait_for(T, || last(&count) > before + 1));
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

#[test]
fn checkpoint_unknown_container_fails() {
    // No criu needed: runs everywhere.
    let Some(rt) = Runtime::new("checkpoint_unknown_container_fails") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    let out = rt.cmd(&[
        "checkpoint",
        "--image-path",
        images.to_str().unwrap(),
        "no-such-ctr",
    ]);
    out.assert_fail();
    assert!(out.stderr.contains("does not exist"), "{out}");
    assert!(!images.exists(), "checkpoint made {}", images.display());
    assert!(!rt.root().join("no-such-ctr").exists());
}

#[test]
fn restore_from_empty_image_dir_fails() {
    let Some(rt) = Runtime::new("restore_from_empty_image_dir_fails") else {
        return;
    };
    let (b, _) = counter_bundle();
    let id = rt.new_id("crempty");
    let tmp = tempfile::tempdir().unwrap();
    let out = rt.cmd(&[
        "restore",
        "-d",
        "--image-path",
        tmp.path().to_str().unwrap(),
        "--bundle",
        b.path_str(),
        &id,
    ]);
    out.assert_fail();
    assert!(out.stderr.contains("no checkpoint"), "{out}");
    rt.cmd(&["state", &id]).assert_fail();
    assert_no_leftovers(&rt, &id, &b);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

/// `restore` without `-d` waits for the container like `run`, writes `--pid-file`, exits with
/// the container's status (137 after SIGKILL), and then the container is gone.
#[test]
fn restore_in_foreground_with_pid_file() {
    let Some(rt) = runtime("restore_in_foreground_with_pid_file") else {
        return;
    };
    let (b, count) = counter_bundle();
    let id = rt.new_id("crfg");
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    let pid_file = tmp.path().join("pid");
    rt.run_detached(&b, &id).assert_ok();
    assert!(wait_for(T, || last(&count) >= 3));
    ok(
        rt.cmd(&["checkpoint", "--image-path", images.to_str().unwrap(), &id]),
        &images,
    );
    let before = last(&count);
    let fg = rt.spawn(&[
        "restore",
        "--image-path",
        images.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--bundle",
        b.path_str(),
        &id,
    ]);
    assert!(
        wait_for(T, || rt.status(&id).as_deref() == Some("running")),
        "restored container never ran; criu:\n{}",
        criu_errors(&images)
    );
    assert_eq!(read_trim(&pid_file), rt.pid(&id).to_string());
    assert!(wait_for(T, || last(&count) > before + 1));
    rt.kill(&id, "KILL").assert_ok();
    let out = fg.wait_timeout(T);
    assert_eq!(out.code, 137, "{out}");
    rt.cmd(&["state", &id]).assert_fail();
    assert_no_leftovers(&rt, &id, &b);
}

/// The init's stdio are pipes (as containerd and runc's own test give it): restore hands its own
/// stdio to the restored process in their place, so its output arrives on the new pipe.
#[test]
fn restore_replaces_stdio_pipes() {
    let Some(rt) = runtime("restore_replaces_stdio_pipes") else {
        return;
    };
    let b = Bundle::sh("i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done");
    let id = rt.new_id("crpipe");
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    // Runs `args` with three fresh pipes as stdio; returns the test's ends (stdin's writer is
    // kept open) and a thread collecting the numbers printed on stdout.
    let with_pipes = |args: &[&str]| {
        let (in_r, in_w) = std::io::pipe().unwrap();
        let (out_r, out_w) = std::io::pipe().unwrap();
        let (err_r, err_w) = std::io::pipe().unwrap();
        let st = rt
            .command(&[], args)
            .stdin(in_r)
            .stdout(out_w)
            .stderr(err_w)
            .status()
            .unwrap();
        let mut err = String::new();
        if !st.success() {
            use std::io::Read;
            let mut e = err_r;
            let _ = e.read_to_string(&mut err);
            panic!(
                "{args:?} failed: {st}: {err}\ncriu:\n{}",
                criu_errors(&images)
            );
        }
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
        let s2 = seen.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(out_r).lines() {
                let Ok(l) = l else { break };
                if let Ok(n) = l.trim().parse() {
                    s2.lock().unwrap().push(n);
                }
            }
        });
        (in_w, err_r, seen)
    };
    let (_in1, _err1, seen1) = with_pipes(&["run", "-d", "--bundle", b.path_str(), &id]);
    let last_of = |s: &std::sync::Mutex<Vec<u64>>| s.lock().unwrap().last().copied().unwrap_or(0);
    assert!(
        wait_for(T, || last_of(&seen1) >= 3),
        "no output from the container"
    );
    ok(
        rt.cmd(&["checkpoint", "--image-path", images.to_str().unwrap(), &id]),
        &images,
    );
    std::thread::sleep(Duration::from_millis(300));
    let before = last_of(&seen1);
    let (_in2, _err2, seen2) = with_pipes(&[
        "restore",
        "-d",
        "--image-path",
        images.to_str().unwrap(),
        "--bundle",
        b.path_str(),
        &id,
    ]);
    assert!(
        wait_for(T, || last_of(&seen2) > before + 1),
        "no output on the new pipe after restore (last before: {before})"
    );
    assert_eq!(seen2.lock().unwrap()[0], before + 1);
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// `--criu` chooses the binary; a criu that fails leaves a running container running, and a
/// failed restore leaves no state dir, cgroup or mount behind. Needs no working criu.
#[test]
fn criu_failure_leaves_nothing_behind() {
    let Some(rt) = Runtime::new("criu_failure_leaves_nothing_behind") else {
        return;
    };
    let (b, count) = counter_bundle();
    let id = rt.new_id("crfail");
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    rt.run_detached(&b, &id).assert_ok();
    assert!(wait_for(T, || last(&count) >= 2));
    let out = rt.cmd_with(
        &["--criu", "/bin/false"],
        &["checkpoint", "--image-path", images.to_str().unwrap(), &id],
    );
    out.assert_fail();
    assert!(out.stderr.contains("criu dump failed"), "{out}");
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    let n = last(&count);
    assert!(wait_for(T, || last(&count) > n + 1), "counter stopped");
    rt.delete_force(&id).assert_ok();

    // A restore whose criu fails: the image dir looks like a checkpoint, criu says no.
    std::fs::write(images.join("inventory.img"), b"").unwrap();
    let id2 = rt.new_id("crfail2");
    let out = rt.cmd_with(
        &["--criu", "/bin/false"],
        &[
            "restore",
            "-d",
            "--image-path",
            images.to_str().unwrap(),
            "--bundle",
            b.path_str(),
            &id2,
        ],
    );
    out.assert_fail();
    assert!(out.stderr.contains("criu restore failed"), "{out}");
    rt.cmd(&["state", &id2]).assert_fail();
    assert_no_leftovers(&rt, &id2, &b);
    assert_no_leftovers(&rt, &id, &b);
}

/// Reads from a pty master until `want` shows up or `T` passes.
fn read_until(master: &std::os::fd::OwnedFd, want: &str) -> String {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut f = std::fs::File::from(master.try_clone().unwrap());
    // SAFETY: fcntl on an fd we own.
    unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let mut text = String::new();
    let start = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    while !text.contains(want) && start.elapsed() < T {
        match f.read(&mut buf) {
            Ok(n) if n > 0 => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    text
}

fn type_line(master: &std::os::fd::OwnedFd, line: &str) {
    use std::io::Write;
    let mut w = std::fs::File::from(master.try_clone().unwrap());
    w.write_all(format!("{line}\n").as_bytes()).unwrap();
}

/// A container with a terminal (as runc's checkpoint.bats runs them): checkpointed, restored with
/// a new pty whose master arrives on the console socket, and the same shell (its line count kept
/// in memory) goes on reading what is typed there and answering through the /dev/tty it holds
/// open, with the pty as /dev/console and as its controlling terminal.
#[test]
fn checkpoint_and_restore_terminal_container() {
    let Some(rt) = runtime("checkpoint_and_restore_terminal_container") else {
        return;
    };
    // It answers through /dev/tty (held open, as an interactive shell holds it).
    let b = Bundle::sh(
        "exec 3<>/dev/tty; i=0; while read line; do i=$((i+1)); echo \"line$i:$line\" >&3; done",
    )
    .with(|c| c["process"]["terminal"] = true.into());
    let id = rt.new_id("crtty");
    let tmp = tempfile::tempdir().unwrap();
    let (images, work) = (tmp.path().join("images"), tmp.path().join("work"));
    let (images_s, work_s) = (images.to_str().unwrap(), work.to_str().unwrap());
    let sock = tmp.path().join("console.sock");
    let got = receive_console_master(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    rt.track(&id);
    rt.cmd(&[
        "run",
        "-d",
        "--console-socket",
        sock.to_str().unwrap(),
        "--bundle",
        b.path_str(),
        &id,
    ])
    .assert_ok();
    let master = got.join().unwrap();
    type_line(&master, "one");
    let text = read_until(&master, "line1:one");
    assert!(text.contains("line1:one"), "{text:?}");

    let out = rt.cmd(&[
        "checkpoint",
        "--image-path",
        images_s,
        "--work-path",
        work_s,
        &id,
    ]);
    ok(out, &work);
    rt.cmd(&["state", &id]).assert_fail();
    drop(master);

    let sock2 = tmp.path().join("console2.sock");
    let got = receive_console_master(std::os::unix::net::UnixListener::bind(&sock2).unwrap());
    let out = rt.cmd(&[
        "restore",
        "-d",
        "--image-path",
        images_s,
        "--work-path",
        work_s,
        "--console-socket",
        sock2.to_str().unwrap(),
        "--bundle",
        b.path_str(),
        &id,
    ]);
    ok(out, &work);
    let master = got.join().unwrap();
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    type_line(&master, "two");
    let text = read_until(&master, "line2:two");
    assert!(
        text.contains("line2:two"),
        "the restored shell does not read the new pty: {text:?}"
    );

    // The new pty is /dev/console (a pty peer: major 136 = 0x88) and the init's controlling
    // terminal (tty_nr, field 7 of /proc/PID/stat, is set).
    let out = rt.cmd(&["exec", &id, "stat", "-c", "%t", "/dev/console"]);
    out.assert_ok();
    assert_eq!(out.stdout.trim(), "88", "{out}");
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", rt.pid(&id))).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let tty_nr: u64 = after_comm.split(' ').nth(4).unwrap().parse().unwrap();
    assert_ne!(
        tty_nr, 0,
        "the restored init has no controlling terminal: {stat}"
    );

    rt.kill(&id, "KILL").assert_ok();
    rt.wait_status(&id, "stopped", T);
    rt.delete(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// A checkpoint restored under another id lives in the new container's cgroup (not the old
/// one's), so `kill --all`, `ps` and `delete` of the new id find its processes.
#[test]
fn restore_under_new_id_uses_its_cgroup() {
    let Some(rt) = runtime("restore_under_new_id_uses_its_cgroup") else {
        return;
    };
    let (b, count) = counter_bundle();
    let old = rt.new_id("crold");
    let new = rt.new_id("crnew");
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    rt.run_detached(&b, &old).assert_ok();
    assert!(wait_for(T, || last(&count) >= 2));
    ok(
        rt.cmd(&["checkpoint", "--image-path", images.to_str().unwrap(), &old]),
        &images,
    );
    let before = last(&count);
    ok(
        rt.cmd(&[
            "restore",
            "-d",
            "--image-path",
            images.to_str().unwrap(),
            "--bundle",
            b.path_str(),
            &new,
        ]),
        &images,
    );
    assert!(wait_for(T, || last(&count) > before + 1));
    let pid = rt.pid(&new);
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cg.contains(&new) && !cg.contains(&old),
        "restored init {pid} is in {cg:?}, not in {new}'s cgroup"
    );
    rt.delete_force(&new).assert_ok();
    assert_no_leftovers(&rt, &new, &b);
    assert_no_leftovers(&rt, &old, &b);
}

/// A container that joined a network namespace by path: the namespace is external to criu at
/// dump and handed back (an inherited fd) at restore, so the restored container is in it again.
#[test]
fn restore_into_external_network_namespace() {
    let Some(rt) = runtime("restore_into_external_network_namespace") else {
        return;
    };
    let ns = unique("brigcr");
    let st = Command::new("ip").args(["netns", "add", &ns]).status();
    if !st.is_ok_and(|s| s.success()) {
        println!("SKIP restore_into_external_network_namespace: `ip netns add` failed");
        return;
    }
    struct DelNs(String);
    impl Drop for DelNs {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _del = DelNs(ns.clone());
    let ns_path = format!("/run/netns/{ns}");
    let (mut b, count) = counter_bundle();
    b.edit(|c| set_namespace_path(c, "network", &ns_path));
    let id = rt.new_id("crnet");
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    rt.run_detached(&b, &id).assert_ok();
    assert!(wait_for(T, || last(&count) >= 2));
    let want = std::fs::read_link(format!("/proc/{}/ns/net", rt.pid(&id))).unwrap();
    ok(
        rt.cmd(&["checkpoint", "--image-path", images.to_str().unwrap(), &id]),
        &images,
    );
    let before = last(&count);
    ok(
        rt.cmd(&[
            "restore",
            "-d",
            "--image-path",
            images.to_str().unwrap(),
            "--bundle",
            b.path_str(),
            &id,
        ]),
        &images,
    );
    assert!(wait_for(T, || last(&count) > before + 1));
    let got = std::fs::read_link(format!("/proc/{}/ns/net", rt.pid(&id))).unwrap();
    assert_eq!(got, want, "restored container is not in {ns_path}");
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// The usual detached container: stdin is the host's /dev/null and stdout/stderr are host files
/// (outside the container's mounts), as `run -d` from a shell or a test gives them.
#[test]
fn host_stdio_files() {
    let Some(rt) = runtime("host_stdio_files") else {
        return;
    };
    let (mut b, count) = counter_bundle();
    b.edit(|c| {
        set_args(
            c,
            &[
                "sh",
                "-c",
                "i=0; while :; do i=$((i+1)); echo $i >> /data/count; sleep 0.1; done",
            ],
        )
    });
    let id = rt.new_id("crhost");
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    rt.run_detached(&b, &id).assert_ok();
    assert!(wait_for(T, || last(&count) >= 2));
    ok(
        rt.cmd(&["checkpoint", "--image-path", images.to_str().unwrap(), &id]),
        &images,
    );
    let before = last(&count);
    ok(
        rt.cmd(&[
            "restore",
            "-d",
            "--image-path",
            images.to_str().unwrap(),
            "--bundle",
            b.path_str(),
            &id,
        ]),
        &images,
    );
    assert!(wait_for(T, || last(&count) > before + 1));
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// A paused container can be checkpointed: with --leave-running it stays paused, and its
/// checkpoint restores into a running container that counts on.
#[test]
fn checkpoint_paused_container() {
    let Some(rt) = runtime("checkpoint_paused_container") else {
        return;
    };
    let (b, count) = counter_bundle();
    let id = rt.new_id("crpause");
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    rt.run_detached(&b, &id).assert_ok();
    assert!(wait_for(T, || last(&count) >= 2));
    rt.cmd(&["pause", &id]).assert_ok();
    ok(
        rt.cmd(&[
            "checkpoint",
            "--leave-running",
            "--image-path",
            images.to_str().unwrap(),
            &id,
        ]),
        &images,
    );
    assert_eq!(rt.status(&id).as_deref(), Some("paused"));
    let before = last(&count);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(last(&count), before, "a paused container counted");
    rt.delete_force(&id).assert_ok();
    ok(
        rt.cmd(&[
            "restore",
            "-d",
            "--image-path",
            images.to_str().unwrap(),
            "--bundle",
            b.path_str(),
            &id,
        ]),
        &images,
    );
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    assert!(wait_for(T, || last(&count) > before + 1));
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// Restoring a terminal container detached needs a console socket to send the new pty's master
/// to, and a checkpoint made without a terminal cannot be restored with one: both fail before
/// criu runs, naming what is wrong, with nothing left behind. Needs no working criu.
#[test]
fn restore_terminal_container_checks() {
    let Some(rt) = Runtime::new("restore_terminal_container_checks") else {
        return;
    };
    let b = Bundle::new(&["sleep", "100"]).with(|c| c["process"]["terminal"] = true.into());
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    std::fs::create_dir(&images).unwrap();
    // A checkpoint as far as restore's first look goes (criu never runs here).
    std::fs::write(images.join("inventory.img"), b"").unwrap();
    let images_s = images.to_str().unwrap();
    let id = rt.new_id("crttychk");
    let restore = |extra: &[&str]| {
        let mut args = vec!["restore", "-d", "--image-path", images_s];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--bundle", b.path_str(), &id]);
        rt.cmd(&args)
    };
    let out = restore(&[]);
    out.assert_fail();
    assert!(out.stderr.contains("console socket"), "{out}");
    assert_no_leftovers(&rt, &id, &b);

    let sock = tmp.path().join("console.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let out = restore(&["--console-socket", sock.to_str().unwrap()]);
    out.assert_fail();
    assert!(out.stderr.contains("process.terminal"), "{out}");
    assert!(out.stderr.contains("has no terminal"), "{out}");
    assert_no_leftovers(&rt, &id, &b);
}
