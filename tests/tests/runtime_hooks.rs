//! Hooks: prestart, createRuntime, createContainer, startContainer, poststart and poststop run in
//! order, receive the state JSON on stdin, their args and env; a failing createRuntime hook makes
//! create fail and leaves nothing behind; a hook timeout fails create; a failing poststart /
//! poststop hook.

use brig_tests::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

const ALL: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// A hook that records stdin, args and env into `dir` (an absolute path that is the same on the
/// host and inside the container: the test bind-mounts it there).
fn recording_hook(dir: &Path, name: &str) -> Value {
    let d = dir.display();
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c",
                 format!("cat > {d}/{name}.json; echo {name} >> {d}/order; \
                          echo \"$@\" > {d}/{name}.args; env > {d}/{name}.env"),
                 "sh", "arg-one", name],
        "env": [format!("HOOK_NAME={name}"), "HOOK_X=y"]
    })
}

/// A bundle whose config has a recording hook of every kind, writing into `<bundle>/hooks`, which
/// is bind-mounted at the same path into the container (for startContainer, which runs inside).
fn bundle_with_all_hooks(args: &[&str]) -> (Bundle, std::path::PathBuf) {
    let mut b = Bundle::new(args);
    let dir = b.host_dir("hooks");
    let ds = dir.to_str().unwrap().to_string();
    b.edit(|c| {
        let mut hooks = serde_json::Map::new();
        for h in ALL {
            hooks.insert(h.to_string(), json!([recording_hook(&dir, h)]));
        }
        c["hooks"] = Value::Object(hooks);
        add_mount(
            c,
            json!({"destination": ds, "type": "bind", "source": ds, "options": ["rbind", "rw"]}),
        );
    });
    (b, dir)
}

fn order(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("order"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn hook_state(dir: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(format!("{name}.json")))
        .unwrap_or_else(|e| panic!("{name} hook did not run: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} stdin is not JSON ({e}): {text}"))
}

#[test]
fn all_hooks_run_in_order_with_state() {
    let Some(rt) = Runtime::new("all_hooks_run_in_order_with_state") else {
        return;
    };
    let (b, dir) = bundle_with_all_hooks(&["sleep", "100"]);
    let id = rt.new_id("hooks");
    rt.create_ok(&b, &id);
    let pid = rt.pid(&id);
    let after_create = order(&dir);
    // runc <= 1.3 runs poststart hooks during `create` (runc issue #4347, fixed by runc PR
    // #5186); the spec wants them after the process started, before `start` returns.
    let runc_quirk = !rt.is_brig() && after_create.last().map(String::as_str) == Some("poststart");
    if runc_quirk {
        println!(
            "NOTE: {} runs poststart during create (old runc behaviour)",
            rt.bin().display()
        );
    }
    let spec_order = [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
    ];
    let quirk_order = [
        "prestart",
        "createRuntime",
        "createContainer",
        "poststart",
        "startContainer",
    ];
    let want: &[&str] = if runc_quirk {
        &quirk_order
    } else {
        &spec_order
    };
    assert_eq!(
        after_create,
        want[..if runc_quirk { 4 } else { 3 }],
        "hooks run by create"
    );
    rt.start(&id).assert_ok();
    if !runc_quirk {
        // poststart runs after the process started and before `start` returns
        assert!(
            order(&dir).iter().any(|h| h == "poststart"),
            "poststart had not run when start returned: {:?}",
            order(&dir)
        );
    }
    // startContainer runs in the container just before exec; `start` need not wait for it
    assert!(
        wait_for(T, || order(&dir).len() >= 5),
        "start hooks: {:?}",
        order(&dir)
    );
    assert_eq!(order(&dir), want, "hooks after start");
    rt.delete_force(&id).assert_ok();
    assert_eq!(order(&dir).last().map(String::as_str), Some("poststop"));
    assert_eq!(order(&dir).len(), 6);

    for h in ALL {
        let st = hook_state(&dir, h);
        assert_eq!(st["id"], id.as_str(), "{h}: {st}");
        assert_eq!(st["bundle"], b.path_str(), "{h}: {st}");
        assert!(st["ociVersion"].is_string(), "{h}: {st}");
        let want_status = match h {
            "prestart" | "createRuntime" | "createContainer" => "creating",
            "startContainer" => "created",
            // (runc 1.1 runs it during create, so it sees "created")
            "poststart" if runc_quirk => "created",
            "poststart" => "running",
            _ => "stopped",
        };
        assert_eq!(st["status"], want_status, "{h}: {st}");
        if h == "createContainer" || h == "startContainer" {
            // these run inside the container: runc 1.1 passes the pid as seen in the
            // container's pid namespace (1); the host pid is accepted as well
            let p = st["pid"].as_i64();
            assert!(p == Some(pid as i64) || p == Some(1), "{h}: {st}");
        } else if h != "poststop" {
            assert_eq!(st["pid"].as_i64(), Some(pid as i64), "{h}: {st}");
        }
        // args: argv[0] is "sh" (args[0] of the hook), then our extra args after $0
        assert_eq!(
            read_trim(dir.join(format!("{h}.args"))),
            format!("arg-one {h}"),
            "{h}"
        );
        // env: exactly the hook's env (plus what sh adds itself)
        let env = std::fs::read_to_string(dir.join(format!("{h}.env"))).unwrap();
        assert!(
            env.lines().any(|l| l == format!("HOOK_NAME={h}")),
            "{h}: {env}"
        );
        assert!(env.lines().any(|l| l == "HOOK_X=y"), "{h}: {env}");
    }
    assert_no_leftovers(&rt, &id, &b);
}

/// With `run`, all hooks fire, poststop when the container exits.
#[test]
fn hooks_with_run() {
    let Some(rt) = Runtime::new("hooks_with_run") else {
        return;
    };
    let (b, dir) = bundle_with_all_hooks(&["true"]);
    let id = rt.new_id("hrun");
    rt.run_capture(&b, &id).assert_ok();
    let got = order(&dir);
    if !rt.is_brig() && got[3] == "poststart" {
        println!(
            "NOTE: {} runs poststart before startContainer (old runc behaviour)",
            rt.bin().display()
        );
        assert_eq!(
            got,
            [
                "prestart",
                "createRuntime",
                "createContainer",
                "poststart",
                "startContainer",
                "poststop"
            ]
        );
    } else {
        assert_eq!(got, ALL);
    }
    assert_no_leftovers(&rt, &id, &b);
}

/// A hook that runs inside the container (startContainer) sees the container's filesystem.
#[test]
fn start_container_hook_runs_in_container() {
    let Some(rt) = Runtime::new("start_container_hook_runs_in_container") else {
        return;
    };
    let mut b = Bundle::new(&["true"]);
    let dir = b.host_dir("hooks");
    let ds = dir.to_str().unwrap().to_string();
    std::fs::write(b.rootfs().join("etc/marker"), "in-rootfs\n").unwrap();
    b.edit(|c| {
        c["hooks"] = json!({"startContainer": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("cat /etc/marker > {ds}/seen; hostname >> {ds}/seen")]
        }]});
        c["hostname"] = json!("hook-host");
        add_mount(
            c,
            json!({"destination": ds, "type": "bind", "source": ds, "options": ["rbind", "rw"]}),
        );
    });
    let id = rt.new_id("hsc");
    rt.run_capture(&b, &id).assert_ok();
    assert_eq!(read_trim(dir.join("seen")), "in-rootfs\nhook-host");
    assert_no_leftovers(&rt, &id, &b);
}

/// A failing createRuntime hook makes create fail; nothing is left behind and the process
/// never runs.
#[test]
fn failing_create_runtime_hook() {
    let Some(rt) = Runtime::new("failing_create_runtime_hook") else {
        return;
    };
    let mut b = Bundle::new(&["sleep", "100"]);
    let dir = b.host_dir("hooks");
    let ds = dir.to_str().unwrap().to_string();
    b.edit(|c| {
        c["hooks"] = json!({
            "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "echo hook-failing >&2; exit 3"]}],
            "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", format!("touch {ds}/poststop")]}]
        });
    });
    let id = rt.new_id("hfail");
    let out = rt.create(&b, &id);
    out.assert_fail();
    assert!(rt.cmd(&["state", &id]).code != 0);
    assert_no_leftovers(&rt, &id, &b);

    // same through run
    let id = rt.new_id("hfail");
    let out = rt.run_capture(&b, &id);
    out.assert_fail();
    assert_no_leftovers(&rt, &id, &b);
}

/// A failing prestart hook also fails create.
#[test]
fn failing_prestart_hook() {
    let Some(rt) = Runtime::new("failing_prestart_hook") else {
        return;
    };
    let b = Bundle::new(&["sleep", "100"]).with(|c| {
        c["hooks"] = json!({"prestart": [{"path": "/bin/false"}]});
    });
    let id = rt.new_id("hpre");
    rt.create(&b, &id).assert_fail();
    assert_no_leftovers(&rt, &id, &b);
}

/// A hook that outlives its timeout fails create.
#[test]
fn hook_timeout() {
    let Some(rt) = Runtime::new("hook_timeout") else {
        return;
    };
    let b = Bundle::new(&["sleep", "100"]).with(|c| {
        c["hooks"] = json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]});
    });
    let id = rt.new_id("htmo");
    let start = std::time::Instant::now();
    let out = rt.create(&b, &id);
    out.assert_fail();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "timeout not enforced: {:?}",
        start.elapsed()
    );
    assert_no_leftovers(&rt, &id, &b);

    // a hook that finishes within its timeout is fine
    let b = Bundle::new(&["true"]).with(|c| {
        c["hooks"] = json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "0.1"], "timeout": 5}]});
    });
    let id = rt.new_id("htmo");
    rt.run_capture(&b, &id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// Several hooks of one kind run in array order.
#[test]
fn hooks_of_one_kind_in_array_order() {
    let Some(rt) = Runtime::new("hooks_of_one_kind_in_array_order") else {
        return;
    };
    let mut b = Bundle::new(&["true"]);
    let dir = b.host_dir("hooks");
    let ds = dir.to_str().unwrap().to_string();
    b.edit(|c| {
        let h = |n: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {n} >> {ds}/order")]});
        c["hooks"] = json!({"createRuntime": [h("a"), h("b"), h("c")]});
    });
    let id = rt.new_id("harr");
    rt.run_capture(&b, &id).assert_ok();
    assert_eq!(order(&dir), ["a", "b", "c"]);
    assert_no_leftovers(&rt, &id, &b);
}

/// A failing poststop hook does not prevent delete from cleaning up.
#[test]
fn failing_poststop_hook_still_deletes() {
    let Some(rt) = Runtime::new("failing_poststop_hook_still_deletes") else {
        return;
    };
    let b = Bundle::new(&["sleep", "100"]).with(|c| {
        c["hooks"] = json!({"poststop": [{"path": "/bin/false"}]});
    });
    let id = rt.new_id("hpost");
    rt.run_detached(&b, &id).assert_ok();
    let _ = rt.delete_force(&id);
    assert!(rt.cmd(&["state", &id]).code != 0);
    assert_no_leftovers(&rt, &id, &b);
}
