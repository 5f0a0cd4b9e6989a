//! Linux security modules: process.apparmorProfile applied to the container process and to
//! `exec` processes (the container's profile, `exec --apparmor`), the clear error where the
//! host lacks AppArmor or SELinux, `features`, and the container's own session keyring.
//!
//! The AppArmor tests need a host with AppArmor enabled: the cgroup v2 guest (tests/vm, whose
//! Debian kernel enables it) runs this file; on a host without it the same configs must fail
//! naming the field, and the confinement test says where it runs instead.

use std::path::Path;

use brig_tests::*;
use serde_json::json;

/// A file the profile under test denies reading, in the container's rootfs.
const SECRET: &str = "/brig-secret";

/// A detached container confined by a profile that denies reading SECRET: its process, its
/// `exec` processes (the container's profile, and another one with `exec --apparmor`), and
/// the same denial through `exec -p process.json` naming the profile.
#[test]
fn apparmor_profile_confines_container_and_exec() {
    let Some(rt) = Runtime::new("apparmor_profile_confines_container_and_exec") else {
        return;
    };
    if !apparmor_enabled() {
        assert!(
            !guest_lsm_is("apparmor"),
            "the test guest should run AppArmor, but it is not enabled"
        );
        println!(
            "apparmor_profile_confines_container_and_exec: AppArmor is not enabled here; \
             lsm_fields_without_the_lsm_are_refused checks this host, the cgroup v2 \
             guest (make vm-test) runs this test"
        );
        return;
    }
    let deny = "brig-test-deny";
    let other = "brig-test-other";
    load_apparmor_profile(deny, Some(SECRET));
    load_apparmor_profile(other, None);
    let b = Bundle::new(&["sleep", "300"]).with(|c| c["process"]["apparmorProfile"] = json!(deny));
    std::fs::write(b.rootfs().join(SECRET.trim_start_matches('/')), "secret\n").unwrap();
    let id = rt.new_id("aa");
    rt.run_detached(&b, &id).assert_ok();

    // The container process: confined, SECRET denied, the rest readable.
    let pid = rt.pid(&id);
    let current = std::fs::read_to_string(format!("/proc/{pid}/attr/current")).unwrap();
    assert_eq!(current.trim_end(), format!("{deny} (enforce)"));
    // exec with the container's process: the container's profile.
    let out = rt.cmd(&["exec", &id, "cat", "/proc/self/attr/current"]);
    assert_eq!(out.assert_ok().out(), format!("{deny} (enforce)"), "{out}");
    let out = rt.cmd(&["exec", &id, "cat", SECRET]);
    out.assert_fail();
    assert!(out.stderr.contains("Permission denied"), "{out}");
    rt.cmd(&["exec", &id, "cat", "/etc/passwd"]).assert_ok();
    // exec --apparmor: another profile, which lets it read SECRET.
    let out = rt.cmd(&[
        "exec",
        "--apparmor",
        other,
        &id,
        "sh",
        "-c",
        &format!("cat /proc/self/attr/current; cat {SECRET}"),
    ]);
    assert_eq!(
        out.assert_ok().out(),
        format!("{other} (enforce)\nsecret"),
        "{out}"
    );
    // exec -p process.json with the deny profile.
    let pj = b.host_dir("exec").join("process.json");
    std::fs::write(
        &pj,
        json!({"cwd": "/", "args": ["cat", SECRET], "apparmorProfile": deny,
               "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}})
        .to_string(),
    )
    .unwrap();
    let out = rt.cmd(&["exec", "-p", pj.to_str().unwrap(), &id]);
    out.assert_fail();
    assert!(out.stderr.contains("Permission denied"), "{out}");

    rt.kill(&id, "KILL").assert_ok();
    rt.wait_status(&id, "stopped", std::time::Duration::from_secs(30));
    rt.delete(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);

    // A profile the kernel does not know: create fails, nothing left behind.
    let b = Bundle::new(&["true"]).with(|c| c["process"]["apparmorProfile"] = json!("brig-none"));
    let id = rt.new_id("aa-none");
    let out = rt.run_capture(&b, &id);
    out.assert_fail();
    assert!(out.stderr.contains("apparmor"), "{out}");
    assert_no_leftovers(&rt, &id, &b);
    unload_apparmor_profile(deny);
    unload_apparmor_profile(other);
}

/// On a host without AppArmor (or SELinux), a config naming a profile (or label) fails with
/// an error naming the field, and leaves nothing; so do `exec --apparmor` and
/// `exec --process-label`.
#[test]
fn lsm_fields_without_the_lsm_are_refused() {
    let Some(rt) = Runtime::new("lsm_fields_without_the_lsm_are_refused") else {
        return;
    };
    let selinux = selinux_enabled();
    let mut cases = Vec::new();
    if !apparmor_enabled() {
        cases.push((
            "apparmorProfile",
            "docker-default",
            "AppArmor is not enabled",
        ));
    }
    if !selinux {
        cases.push((
            "selinuxLabel",
            "system_u:system_r:container_t:s0:c1,c2",
            "SELinux is disabled",
        ));
    }
    if cases.is_empty() {
        println!("lsm_fields_without_the_lsm_are_refused: this host has both LSMs");
        return;
    }
    for (field, value, says) in &cases {
        let b = Bundle::new(&["true"]).with(|c| c["process"][field] = json!(value));
        let id = rt.new_id("lsm-off");
        let out = rt.run_capture(&b, &id);
        out.assert_fail();
        assert!(out.stderr.contains(&format!("process.{field}")), "{out}");
        assert!(out.stderr.contains(says), "{out}");
        assert_no_leftovers(&rt, &id, &b);
    }
    // exec's flags, into a running container.
    let b = Bundle::new(&["sleep", "300"]);
    let id = rt.new_id("lsm-exec");
    rt.run_detached(&b, &id).assert_ok();
    for (field, value, says) in &cases {
        let flag = if *field == "apparmorProfile" {
            "--apparmor"
        } else {
            "--process-label"
        };
        let out = rt.cmd(&["exec", flag, value, &id, "true"]);
        out.assert_fail();
        assert!(out.stderr.contains(field), "{out}");
        assert!(out.stderr.contains(says), "{out}");
    }
    rt.cmd(&["exec", &id, "true"]).assert_ok();
    rt.kill(&id, "KILL").assert_ok();
    rt.wait_status(&id, "stopped", std::time::Duration::from_secs(30));
    rt.delete(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// A mount label on a host without SELinux: refused naming the field (runc passes its
/// context= to the kernel, which refuses the first tmpfs with EINVAL), nothing left behind.
#[test]
fn mount_label_without_selinux_is_refused() {
    let Some(rt) = Runtime::new("mount_label_without_selinux_is_refused") else {
        return;
    };
    if selinux_enabled() {
        println!("mount_label_without_selinux_is_refused: this host has SELinux");
        return;
    }
    let b = Bundle::new(&["true"])
        .with(|c| c["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0:c1,c2"));
    let id = rt.new_id("mntlabel");
    let out = rt.run_capture(&b, &id);
    out.assert_fail();
    if rt.is_brig() {
        assert!(out.stderr.contains("linux.mountLabel"), "{out}");
        assert!(out.stderr.contains("SELinux is disabled"), "{out}");
    }
    assert_no_leftovers(&rt, &id, &b);
}

/// `features` says AppArmor and SELinux support is built in (the spec's meaning, runc's
/// answer) and tells in its annotations whether this host has them.
#[test]
fn features_report_lsm_support_and_the_host() {
    let Some(rt) = Runtime::new("features_report_lsm_support_and_the_host") else {
        return;
    };
    if rt.skip_unless_brig("brig's annotations") {
        return;
    }
    let out = rt.cmd(&["features"]);
    let v: serde_json::Value = serde_json::from_str(&out.assert_ok().stdout).unwrap();
    assert_eq!(v["linux"]["apparmor"]["enabled"], true, "{out}");
    assert_eq!(v["linux"]["selinux"]["enabled"], true, "{out}");
    let aa = if apparmor_enabled() {
        "enabled"
    } else {
        "disabled"
    };
    assert_eq!(
        v["annotations"]["io.github.brig.apparmor.host"], aa,
        "{out}"
    );
}

/// Each container gets a session keyring of its own, `_ses.<id>` (runc's), not the
/// runtime's, and its `exec` processes join it; `--no-new-keyring` keeps the caller's, for
/// both.
#[test]
fn container_gets_its_own_session_keyring() {
    let Some(rt) = Runtime::new("container_gets_its_own_session_keyring") else {
        return;
    };
    // (/proc/keys lists the keys the reader may view: its session keyring among them.)
    let b = Bundle::new(&["sleep", "300"]).with(|c| c["linux"]["maskedPaths"] = json!([]));
    for new_keyring in [true, false] {
        let id = rt.new_id("keys");
        rt.track(&id);
        let mut args = vec!["run", "-d", "--bundle", b.path_str(), &id];
        if !new_keyring {
            args.insert(1, "--no-new-keyring");
        }
        rt.cmd(&args).assert_ok();
        let ring = format!("_ses.{id}:");
        let exec = rt.cmd(&["exec", &id, "cat", "/proc/keys"]);
        exec.assert_ok();
        assert_eq!(exec.stdout.contains(&ring), new_keyring, "{exec}");
        rt.kill(&id, "KILL").assert_ok();
        rt.wait_status(&id, "stopped", std::time::Duration::from_secs(30));
        rt.delete(&id).assert_ok();
        assert_no_leftovers(&rt, &id, &b);
    }
    // The init itself (run in the foreground, reading its own /proc/keys).
    let b = Bundle::sh("cat /proc/keys").with(|c| c["linux"]["maskedPaths"] = json!([]));
    let id = rt.new_id("keys-init");
    let out = rt.run_capture(&b, &id);
    out.assert_ok();
    assert!(out.stdout.contains(&format!("_ses.{id}:")), "{out}");
    assert_no_leftovers(&rt, &id, &b);
}

fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
        && std::fs::read_to_string("/proc/self/attr/current")
            .is_ok_and(|c| c.trim_end_matches(['\0', '\n']) != "kernel")
}

/// Where SELinux runs (the SELinux guest: `VM_SELINUX=1 tests/vm/run.sh`, Debian's reference
/// policy, permissive): process.selinuxLabel is the container process's context,
/// linux.mountLabel the context of its tmpfs mounts; `exec` takes the container's label and
/// `exec --process-label` another.
#[test]
fn selinux_labels_apply_to_process_mounts_and_exec() {
    let Some(rt) = Runtime::new("selinux_labels_apply_to_process_mounts_and_exec") else {
        return;
    };
    if !selinux_enabled() {
        assert!(
            !guest_lsm_is("selinux"),
            "the test guest should run SELinux, but it is not enabled"
        );
        println!(
            "selinux_labels_apply_to_process_mounts_and_exec: SELinux is not enabled here; \
             the SELinux guest (make vm-test) runs this test"
        );
        return;
    }
    let label = "system_u:system_r:initrc_t:s0";
    let mount_label = "system_u:object_r:tmp_t:s0";
    let b = Bundle::sh("cat /proc/self/attr/current; echo; grep ' /dev ' /proc/self/mounts").with(
        |c| {
            c["process"]["selinuxLabel"] = json!(label);
            c["linux"]["mountLabel"] = json!(mount_label);
        },
    );
    let id = rt.new_id("se");
    let out = rt.run_capture(&b, &id);
    out.assert_ok();
    let mut lines = out.stdout.lines();
    assert_eq!(
        lines.next().map(|l| l.trim_end_matches('\0')),
        Some(label),
        "{out}"
    );
    assert!(
        out.stdout.contains(&format!("context={mount_label}"))
            || out.stdout.contains(&format!("context=\"{mount_label}\"")),
        "{out}"
    );
    assert_no_leftovers(&rt, &id, &b);

    let b = Bundle::new(&["sleep", "300"]).with(|c| c["process"]["selinuxLabel"] = json!(label));
    let id = rt.new_id("se-exec");
    rt.run_detached(&b, &id).assert_ok();
    let out = rt.cmd(&["exec", &id, "cat", "/proc/self/attr/current"]);
    assert_eq!(out.assert_ok().out().trim_end_matches('\0'), label, "{out}");
    let other = "system_u:system_r:kernel_t:s0";
    let out = rt.cmd(&[
        "exec",
        "--process-label",
        other,
        &id,
        "cat",
        "/proc/self/attr/current",
    ]);
    assert_eq!(out.assert_ok().out().trim_end_matches('\0'), other, "{out}");
    rt.kill(&id, "KILL").assert_ok();
    rt.wait_status(&id, "stopped", std::time::Duration::from_secs(30));
    rt.delete(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// `security.selinux` of `path` (as the test sees it: through /proc/PID/root).
fn selinux_label_of(path: &Path) -> String {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: NUL-terminated name and path, a buffer of the length given.
    let n = unsafe {
        libc::getxattr(
            c.as_ptr(),
            c"security.selinux".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert!(
        n >= 0,
        "getxattr {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    buf.truncate(n as usize);
    String::from_utf8_lossy(&buf)
        .trim_end_matches('\0')
        .to_string()
}

/// Where SELinux runs: linux.mountLabel also labels what takes no `context=` option, as runc
/// does: the mqueue mount's root (set as a file label after mounting) and the read-only tmpfs
/// over a masked directory (mounted with the label's `context=`).
#[test]
fn selinux_mount_label_on_mqueue_and_masked_directories() {
    let test = "selinux_mount_label_on_mqueue_and_masked_directories";
    let Some(rt) = Runtime::new(test) else {
        return;
    };
    if !selinux_enabled() {
        assert!(
            !guest_lsm_is("selinux"),
            "the test guest should run SELinux, but it is not enabled"
        );
        println!("{test}: SELinux is not enabled here; the SELinux guest (make vm-test) runs it");
        return;
    }
    let mount_label = "system_u:object_r:tmp_t:s0";
    let b = Bundle::new(&["sleep", "300"]).with(|c| {
        c["linux"]["mountLabel"] = json!(mount_label);
        c["linux"]["maskedPaths"] = json!(["/masked-dir"]);
    });
    std::fs::create_dir_all(b.rootfs().join("masked-dir")).unwrap();
    let id = rt.new_id("se-mq");
    rt.run_detached(&b, &id).assert_ok();
    let root = std::path::PathBuf::from(format!("/proc/{}/root", rt.pid(&id)));
    let mqueue = selinux_label_of(&root.join("dev/mqueue"));
    let masked = selinux_label_of(&root.join("masked-dir"));
    rt.kill(&id, "KILL").assert_ok();
    rt.wait_status(&id, "stopped", std::time::Duration::from_secs(30));
    rt.delete(&id).assert_ok();
    assert_eq!(mqueue, mount_label, "/dev/mqueue's label");
    assert_eq!(masked, mount_label, "the masked directory's label");
    assert_no_leftovers(&rt, &id, &b);
}
