//! seccomp user notification: with `SCMP_ACT_NOTIFY` and `listenerPath`, the runtime hands the
//! filter's listener fd to the agent listening there, together with the container process state
//! (runtime-spec "ContainerProcessState"), and the agent answers the container's syscalls.
//!
//! The agent here is written in the test: it checks the state document, then answers every
//! notified `mkdir` with a fake success, so the container sees mkdir succeed while no directory
//! appears. Both the container's init and an `exec`'d process are covered.

use brig_tests::*;
use serde_json::{json, Value};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::sync::mpsc;
use std::time::Duration;

#[repr(C)]
#[derive(Default)]
struct SeccompData {
    nr: i32,
    arch: u32,
    ip: u64,
    args: [u64; 6],
}

#[repr(C)]
#[derive(Default)]
struct Notif {
    id: u64,
    pid: u32,
    flags: u32,
    data: SeccompData,
}

#[repr(C)]
struct NotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

// _IOWR('!', 0, struct seccomp_notif) and _IOWR('!', 1, struct seccomp_notif_resp).
const NOTIF_RECV: u64 = 0xc050_2100;
const NOTIF_SEND: u64 = 0xc018_2101;

/// Accepts connections on `listener`; for each, sends the received state document on `tx` and
/// answers every notification of that listener with success (value 0) until it closes.
fn agent(listener: UnixListener, tx: mpsc::Sender<Value>) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let (buf, fd) = recv_with_fd(&conn, 64 * 1024);
            let doc: Value = serde_json::from_slice(&buf).expect("state document is JSON");
            let _ = tx.send(doc);
            let fd = fd.expect("no listener fd received");
            std::thread::spawn(move || loop {
                let mut req = Notif::default();
                // SAFETY: ioctl on the listener fd with a correctly sized buffer.
                let r = unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_RECV as _, &mut req) };
                if r < 0 {
                    return;
                }
                let resp = NotifResp {
                    id: req.id,
                    val: 0,
                    error: 0,
                    flags: 0,
                };
                // SAFETY: as above.
                unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_SEND as _, &resp) };
            });
        }
    });
}

fn notify_profile(sock: &str) -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "listenerMetadata": "brig-test",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    })
}

#[test]
fn notify_agent_answers_for_init_and_exec() {
    let Some(rt) = Runtime::new("notify_agent_answers_for_init_and_exec") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let (tx, rx) = mpsc::channel();
    agent(UnixListener::bind(&sock).unwrap(), tx);
    let sock_s = sock.to_str().unwrap().to_string();
    let script = "mkdir /tmp/faked && echo mkdir-ok; test -d /tmp/faked && echo exists || echo absent; sleep 1000";
    let b = Bundle::sh(script).with(|c| {
        c["linux"]["seccomp"] = notify_profile(&sock_s);
        add_mount(
            c,
            json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]}),
        );
    });
    let id = rt.new_id("notify");
    let out_file = dir.path().join("out");
    let mut cmd = rt.command(&[], &["run", "-d", "--bundle", b.path_str(), &id]);
    cmd.stdout(std::fs::File::create(&out_file).unwrap());
    let st = cmd.status().unwrap();
    assert!(st.success(), "run -d failed");
    let doc = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("agent got no state document");
    assert_eq!(doc["fds"], json!(["seccompFd"]), "{doc}");
    assert_eq!(doc["metadata"], "brig-test", "{doc}");
    assert_eq!(doc["state"]["id"], id.as_str(), "{doc}");
    assert_eq!(doc["pid"].as_i64(), Some(rt.pid(&id) as i64), "{doc}");
    // The agent's fake success: mkdir "worked", yet nothing was made.
    let start = std::time::Instant::now();
    let text = loop {
        let t = std::fs::read_to_string(&out_file).unwrap_or_default();
        if t.contains("exists") || t.contains("absent") || start.elapsed() > Duration::from_secs(10)
        {
            break t;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(text, "mkdir-ok\nabsent\n");

    // An exec'd process gets the filter and its listener goes to the agent too.
    let out = rt.cmd(&[
        "exec",
        &id,
        "sh",
        "-c",
        "mkdir /tmp/again && echo ok2; test -d /tmp/again || echo absent2",
    ]);
    out.assert_ok();
    assert_eq!(out.stdout, "ok2\nabsent2\n", "{out}");
    let doc = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("no state document for exec");
    assert_eq!(doc["state"]["id"], id.as_str(), "{doc}");

    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

#[test]
fn notify_without_agent_fails_cleanly() {
    let Some(rt) = Runtime::new("notify_without_agent_fails_cleanly") else {
        return;
    };
    let b = Bundle::new(&["true"])
        .with(|c| c["linux"]["seccomp"] = notify_profile("/nonexistent/agent.sock"));
    let id = rt.new_id("notify-noagent");
    let out = rt.run_capture(&b, &id);
    out.assert_fail();
    assert!(out.stderr.contains("/nonexistent/agent.sock"), "{out}");
    assert_no_leftovers(&rt, &id, &b);
}
