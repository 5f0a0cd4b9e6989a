//! User namespaces: the container's root is an unprivileged host id (the maps are written by
//! the runtime), device nodes are bound from the host, a bind source the mapped root cannot read
//! is still mounted (the runtime takes it before the clone), and exec joins the user namespace
//! first. Bad mappings fail with the field named and nothing left behind.

use brig_tests::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

fn with_userns(c: &mut serde_json::Value) {
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
}

#[test]
fn userns_root_is_mapped() {
    let Some(rt) = Runtime::new("userns_root_is_mapped") else {
        return;
    };
    let mut b = Bundle::new(&["sleep", "1000"]);
    // A bind source below a directory only host root can enter (0700): the mapped root could
    // not reach it to mount it, but may read it once mounted.
    let secret = b.host_dir("secret");
    let dir = secret.join("dir");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("f.txt"), "hidden\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).unwrap();
    let src = dir.to_str().unwrap().to_string();
    b.edit(|c| {
        with_userns(c);
        add_mount(c, json!({"destination": "/tmp/secret", "type": "bind", "source": src, "options": ["bind", "ro"]}));
    });
    let id = rt.new_id("userns");
    rt.run_detached(&b, &id).assert_ok();
    let pid = rt.pid(&id);
    // Seen from the host, the container's root is uid 100000.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().nth(1),
        Some("100000"),
        "{uid_line}"
    );
    let out = rt.cmd(&[
        "exec",
        &id,
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map | tr -s ' '; cat /tmp/secret/f.txt; stat -c %t:%T /dev/null; echo x > /dev/null && echo null-ok",
    ]);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        ["0", "0 100000 65536", "hidden", "1:3", "null-ok"],
        "{out}"
    );
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

#[test]
fn userns_bad_mappings() {
    let Some(rt) = Runtime::new("userns_bad_mappings") else {
        return;
    };
    // A new user namespace without mappings.
    let b = Bundle::new(&["true"]).with(|c| {
        with_userns(c);
        c["linux"]["gidMappings"] = json!([]);
    });
    let id = rt.new_id("userns-bad");
    let out = rt.run_capture(&b, &id);
    out.assert_fail();
    assert!(out.stderr.to_lowercase().contains("gid"), "{out}");
    assert_no_leftovers(&rt, &id, &b);
    // Overlapping container ranges.
    let b = Bundle::new(&["true"]).with(|c| {
        with_userns(c);
        c["linux"]["uidMappings"] = json!([
            {"containerID": 0, "hostID": 100000, "size": 1000},
            {"containerID": 500, "hostID": 300000, "size": 1000}
        ]);
    });
    let out = rt.run_capture(&b, &id);
    out.assert_fail();
    // brig names the field (linux.uidMappings[1]); runc passes on the kernel's refusal.
    assert!(out.stderr.contains("uid"), "{out}");
    assert_no_leftovers(&rt, &id, &b);
    // A user namespace path that does not exist.
    let b = Bundle::new(&["true"]).with(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user", "path": "/proc/self/ns/nonexistent"}));
    });
    let out = rt.run_capture(&b, &id);
    out.assert_fail();
    // runc 1.1 stops earlier (it wants mappings even to join); brig names the path's field.
    if rt.is_brig() {
        assert!(out.stderr.contains("linux.namespaces["), "{out}");
    }
    assert_no_leftovers(&rt, &id, &b);
}

/// Idmapped bind mounts (`uidMappings`/`gidMappings` on a mount, or `idmap` with the
/// container's maps). The mapping is the mount's user namespace, as runc 1.2 makes it: an id on
/// disk (containerID) shows as hostID. With 1000 → 0, files owned by 1000 on disk show as owned
/// by 0 through the mount, and what root writes through it lands on disk as 1000. runc 1.1 has
/// no idmapped mounts.
#[test]
fn idmapped_bind_mount() {
    let Some(rt) = Runtime::new("idmapped_bind_mount") else {
        return;
    };
    if rt.skip_unless_brig("idmapped mounts (runc 1.2+)") {
        return;
    }
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "stat -c %u:%g /data/f; touch /data/new && echo wrote",
    ]);
    let data = b.host_dir("data");
    std::fs::write(data.join("f"), "x").unwrap();
    std::os::unix::fs::chown(data.join("f"), Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::chown(&data, Some(1000), Some(1000)).unwrap();
    let src = data.to_str().unwrap().to_string();
    b.edit(|c| {
        add_mount(
            c,
            json!({"destination": "/data", "type": "bind", "source": src, "options": ["bind"],
                   "uidMappings": [{"containerID": 1000, "hostID": 0, "size": 1}],
                   "gidMappings": [{"containerID": 1000, "hostID": 0, "size": 1}]}),
        );
    });
    let id = rt.new_id("idmap");
    let out = rt.run_capture(&b, &id);
    out.assert_ok();
    assert_eq!(out.stdout, "0:0\nwrote\n", "{out}");
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(data.join("new")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (1000, 1000),
        "written through the idmapped mount"
    );
    assert_no_leftovers(&rt, &id, &b);

    // Mappings on a mount that is not a bind: refused, naming the mount.
    let b = Bundle::new(&["true"]).with(|c| {
        add_mount(
            c,
            json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                   "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
                   "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}),
        );
    });
    let out = rt.run_capture(&b, &id);
    out.assert_fail();
    assert!(out.stderr.contains("mounts["), "{out}");
    assert_no_leftovers(&rt, &id, &b);
}
