//! Terminals and exec: the pty master arrives on the console socket (what containerd and podman
//! rely on), a foreground `run` relays its pty, and `exec` runs a process inside a running
//! container: its namespaces, cgroups, user, environment, capabilities, terminal, exit code and
//! nothing of the runtime's own fds.

use brig_tests::*;
use serde_json::json;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

/// Reads from a pty master until `done` says the text is complete or `T` passes.
fn read_until(master: &OwnedFd, done: impl Fn(&str) -> bool) -> String {
    let mut f = std::fs::File::from(master.try_clone().unwrap());
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on an fd we own.
    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
    let mut text = String::new();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while !done(&text) && start.elapsed() < T {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(_) => break,
        }
    }
    text
}

#[test]
fn terminal_through_console_socket() {
    let Some(rt) = Runtime::new("terminal_through_console_socket") else {
        return;
    };
    let b = Bundle::sh(
        "tty; stty size; stat -c '%t:%T' /dev/console; id -u; echo END; read line; echo got:$line",
    )
    .with(|c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["consoleSize"] = json!({"height": 21, "width": 93});
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    });
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("console.sock");
    let got = receive_console_master(UnixListener::bind(&sock).unwrap());
    let id = rt.new_id("tty");
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
    let text = read_until(&master, |t| t.contains("END"));
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    // The container's own devpts: the first pty there.
    assert_eq!(lines.first().copied(), Some("/dev/pts/0"), "{text:?}");
    assert!(
        lines.contains(&"21 93"),
        "consoleSize not applied: {text:?}"
    );
    // /dev/console is the pty (major 136 = 0x88).
    assert!(
        lines.contains(&"88:0"),
        "/dev/console is not the pty: {text:?}"
    );
    assert!(lines.contains(&"1000"), "{text:?}");
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    // What we type reaches the process.
    let mut w = std::fs::File::from(master.try_clone().unwrap());
    w.write_all(b"typed\n").unwrap();
    let text = read_until(&master, |t| t.contains("got:typed"));
    assert!(text.contains("got:typed"), "{text:?}");
    rt.wait_status(&id, "stopped", T);
    rt.delete(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// Runs the runtime under script(1), so it has a controlling terminal as a user's shell would
/// give it (runc insists on one for a foreground terminal), with `input` typed in.
fn in_pty(rt: &Runtime, args: &[&str], input: &[u8]) -> std::process::Output {
    let cmdline = format!(
        "{} --root {} {}",
        rt.bin().display(),
        rt.root().display(),
        args.join(" ")
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn terminal_in_foreground_run() {
    let Some(rt) = Runtime::new("terminal_in_foreground_run") else {
        return;
    };
    let b = Bundle::new(&["sh"]).with(|c| c["process"]["terminal"] = json!(true));
    let id = rt.new_id("fg-tty");
    let out = in_pty(
        &rt,
        &["run", "--bundle", b.path_str(), &id],
        b"tty; echo hello-$((6*7)); exit 3\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("hello-42"), "{stdout:?}");
    assert!(stdout.contains("/dev/pts/0"), "{stdout:?}");
    assert_no_leftovers(&rt, &id, &b);
}

#[test]
fn terminal_flag_errors() {
    let Some(rt) = Runtime::new("terminal_flag_errors") else {
        return;
    };
    // terminal without a console socket cannot detach.
    let b = Bundle::new(&["true"]).with(|c| c["process"]["terminal"] = json!(true));
    let id = rt.new_id("tty-err");
    let out = rt.create(&b, &id);
    out.assert_fail();
    assert!(out.stderr.contains("cannot allocate tty"), "{out}");
    assert_no_leftovers(&rt, &id, &b);
    // a console socket without a terminal.
    let b = Bundle::new(&["true"]);
    let out = rt.cmd(&[
        "create",
        "--console-socket",
        "/nonexistent.sock",
        "--bundle",
        b.path_str(),
        &id,
    ]);
    out.assert_fail();
    assert!(out.stderr.contains("cannot use console socket"), "{out}");
    assert_no_leftovers(&rt, &id, &b);
    // a console socket nobody listens on: named in the error.
    let b = Bundle::new(&["true"]).with(|c| c["process"]["terminal"] = json!(true));
    let out = rt.cmd(&[
        "create",
        "--console-socket",
        "/nonexistent.sock",
        "--bundle",
        b.path_str(),
        &id,
    ]);
    out.assert_fail();
    assert!(out.stderr.contains("/nonexistent.sock"), "{out}");
    assert_no_leftovers(&rt, &id, &b);
}

fn running(rt: &Runtime, name: &str) -> (Bundle, String) {
    let b = Bundle::new(&["sleep", "1000"]);
    let id = rt.new_id(name);
    rt.run_detached(&b, &id).assert_ok();
    (b, id)
}

#[test]
fn exec_runs_inside_the_container() {
    let Some(rt) = Runtime::new("exec_runs_inside_the_container") else {
        return;
    };
    let (b, id) = running(&rt, "exec");
    let init = rt.pid(&id);
    // Same pid namespace (sees the init as pid 1), same hostname, own exit code.
    let out = rt.cmd(&[
        "exec",
        &id,
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '; echo; hostname; exit 7",
    ]);
    assert_eq!(out.code, 7, "{out}");
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0].trim(), "sleep 1000", "{out}");
    assert_ne!(lines[1], host_name.trim(), "{out}");
    // The exec'd process is in the init's cgroups.
    let out = rt.cmd(&["exec", &id, "cat", "/proc/self/cgroup"]);
    out.assert_ok();
    let init_cg = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
    let sorted = |s: &str| {
        let mut v: Vec<String> = s.lines().map(String::from).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&out.stdout), sorted(&init_cg), "{out}");
    // Flags: env, cwd, user and additional gids.
    let out = rt.cmd(&[
        "exec",
        "-e",
        "FOO=bar",
        "-e",
        "PATH=/bin",
        "--cwd",
        "/tmp",
        "-u",
        "1000:1000",
        "-g",
        "29",
        &id,
        "sh",
        "-c",
        "echo $FOO; echo $PATH; pwd; id -u; id -g; grep ^Groups /proc/self/status",
    ]);
    out.assert_ok();
    let lines: Vec<String> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        ["bar", "/bin", "/tmp", "1000", "1000", "Groups: 29"],
        "{out}"
    );
    // A process JSON.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("process.json");
    std::fs::write(
        &p,
        json!({"args": ["sh", "-c", "echo $X; id -u"], "env": ["X=from-json", "PATH=/bin"], "cwd": "/", "user": {"uid": 4242, "gid": 4242}})
            .to_string(),
    )
    .unwrap();
    let out = rt.cmd(&["exec", "-p", p.to_str().unwrap(), &id]);
    out.assert_ok();
    assert_eq!(out.stdout, "from-json\n4242\n", "{out}");
    // A terminal for exec, in the foreground.
    let out = in_pty(&rt, &["exec", "-t", &id, "tty"], b"");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("/dev/pts/"), "{stdout}");
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

#[test]
fn exec_capabilities_and_no_new_privs() {
    let Some(rt) = Runtime::new("exec_capabilities_and_no_new_privs") else {
        return;
    };
    let (b, id) = running(&rt, "exec-caps");
    let caps = |extra: &[&str]| {
        let mut args = vec!["exec"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            id.as_str(),
            "grep",
            "-E",
            "^(Cap(Inh|Eff|Amb)|NoNewPrivs)",
            "/proc/self/status",
        ]);
        let out = rt.cmd(&args);
        out.assert_ok();
        out.stdout
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
    };
    let plain = caps(&[]);
    assert!(plain.contains(&"NoNewPrivs: 1".to_string()), "{plain:?}");
    // CAP_SYS_ADMIN is bit 21 (0x200000); never inheritable (CVE-2022-29162).
    let with = caps(&["--cap", "CAP_SYS_ADMIN"]);
    let eff = with.iter().find(|l| l.starts_with("CapEff")).unwrap();
    let eff = u64::from_str_radix(eff.split(' ').nth(1).unwrap(), 16).unwrap();
    assert_ne!(eff & (1 << 21), 0, "{with:?}");
    assert!(
        with.contains(&"CapInh: 0000000000000000".to_string()),
        "{with:?}"
    );
    let plain_eff = plain.iter().find(|l| l.starts_with("CapEff")).unwrap();
    assert_eq!(
        u64::from_str_radix(plain_eff.split(' ').nth(1).unwrap(), 16).unwrap() & (1 << 21),
        0
    );
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// CVE-2024-21626 class: an exec'd process gets only stdio (no runtime fds, no fd to a host
/// directory) and its cwd is inside the container's root.
#[test]
fn exec_leaks_no_fds_and_no_host_cwd() {
    let Some(rt) = Runtime::new("exec_leaks_no_fds_and_no_host_cwd") else {
        return;
    };
    let (b, id) = running(&rt, "exec-fds");
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("exec.pid");
    let out = rt.cmd(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "sleep",
        "1000",
    ]);
    out.assert_ok();
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    fds.sort();
    assert_eq!(fds, [0, 1, 2], "exec'd process holds extra fds");
    // The cwd is the container's root directory (same inode as the rootfs).
    use std::os::unix::fs::MetadataExt;
    let cwd = std::fs::metadata(format!("/proc/{pid}/cwd")).unwrap();
    let rootfs = std::fs::metadata(b.rootfs()).unwrap();
    assert_eq!(
        (cwd.dev(), cwd.ino()),
        (rootfs.dev(), rootfs.ino()),
        "cwd is not the container's root"
    );
    // and a cwd naming one of the runtime's fds does not work.
    for n in 3..=10 {
        let out = rt.cmd(&["exec", "--cwd", &format!("/proc/self/fd/{n}"), &id, "pwd"]);
        assert!(!out.success() || !out.stdout.starts_with("/proc"), "{out}");
        if out.success() {
            assert!(!out.stdout.contains(".."), "{out}");
        }
    }
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

#[test]
fn exec_errors() {
    let Some(rt) = Runtime::new("exec_errors") else {
        return;
    };
    let (b, id) = running(&rt, "exec-err");
    // A program that is not there: runc's 255, and the name in the message.
    let out = rt.cmd(&["exec", &id, "no-such-program"]);
    assert_eq!(out.code, 255, "{out}");
    assert!(out.stderr.contains("no-such-program"), "{out}");
    // Paused: refused unless --ignore-paused.
    rt.cmd(&["pause", &id]).assert_ok();
    let out = rt.cmd(&["exec", &id, "true"]);
    out.assert_fail();
    assert!(out.stderr.contains("paused"), "{out}");
    rt.cmd(&["resume", &id]).assert_ok();
    // Stopped.
    rt.kill(&id, "KILL").assert_ok();
    rt.wait_status(&id, "stopped", T);
    let out = rt.cmd(&["exec", &id, "true"]);
    out.assert_fail();
    assert!(out.stderr.contains("stopped"), "{out}");
    // Unknown container.
    let out = rt.cmd(&["exec", "no-such-container", "true"]);
    out.assert_fail();
    rt.delete(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
    // Nothing of the failed execs is left running on the host.
    let left = Command::new("pgrep")
        .args(["-f", "no-such-program"])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty());
}

/// One rule for a terminal and a console socket, in runc's words, for create, run and exec: a
/// detached terminal needs a socket; a socket needs a detached terminal.
#[test]
fn console_socket_rule_for_every_command() {
    let Some(rt) = Runtime::new("console_socket_rule_for_every_command") else {
        return;
    };
    let no_socket = "cannot allocate tty if";
    let no_tty = "cannot use console socket if";
    let sock = tempfile::tempdir().unwrap();
    let sock = sock.path().join("console.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let sock = sock.to_str().unwrap();
    let tty = Bundle::new(&["true"]).with(|c| c["process"]["terminal"] = true.into());
    let plain = Bundle::new(&["true"]);
    for (args, bundle, want) in [
        (vec!["create"], &tty, no_socket),
        (vec!["run", "-d"], &tty, no_socket),
        (vec!["create", "--console-socket", sock], &plain, no_tty),
        (vec!["run", "--console-socket", sock], &tty, no_tty),
    ] {
        let id = rt.new_id("cons");
        let mut full = args.clone();
        full.extend(["--bundle", bundle.path_str(), &id]);
        let out = rt.cmd(&full);
        out.assert_fail();
        assert!(out.stderr.contains(want), "{args:?}: {out}");
        assert_no_leftovers(&rt, &id, bundle);
    }
    let (_b, id) = running(&rt, "cons");
    for (args, want) in [
        (vec!["exec", "-t", "-d"], no_socket),
        (vec!["exec", "--console-socket", sock, "-d"], no_tty),
        (vec!["exec", "-t", "--console-socket", sock], no_tty),
    ] {
        let mut full = args.clone();
        full.extend([id.as_str(), "true"]);
        let out = rt.cmd(&full);
        out.assert_fail();
        assert!(out.stderr.contains(want), "{args:?}: {out}");
    }
    rt.delete_force(&id).assert_ok();
}
