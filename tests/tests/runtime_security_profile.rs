//! Security profile of the container process: capability sets (CapInh/CapPrm/CapEff/CapBnd/
//! CapAmb in /proc/self/status against masks computed from the config's names), capabilities
//! really enforced, noNewPrivileges, and seccomp (errno rules with and without errnoRet, argument
//! conditions, defaultAction ERRNO with defaultErrnoRet, SCMP_ACT_KILL).

use brig_tests::*;
use serde_json::json;

/// Runs `sh -c script` in a fresh container built by `edit`; returns the output (exit 0 required).
#[track_caller]
fn run_sh(rt: &Runtime, script: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Out {
    let b = Bundle::sh(script).with(edit);
    let id = rt.new_id("sec");
    let out = rt.run_capture(&b, &id);
    out.assert_ok();
    assert_no_leftovers(rt, &id, &b);
    out
}

fn caps_of(out: &str) -> [u64; 5] {
    let f = |k: &str| {
        u64::from_str_radix(
            status_field(out, k).unwrap_or_else(|| panic!("{k} missing in {out}")),
            16,
        )
        .unwrap()
    };
    [
        f("CapInh"),
        f("CapPrm"),
        f("CapEff"),
        f("CapBnd"),
        f("CapAmb"),
    ]
}

/// The default config (runc spec without ambient): eff = prm = bnd = the 3 caps, inh = amb = 0.
#[test]
fn capabilities_default() {
    let Some(rt) = Runtime::new("capabilities_default") else {
        return;
    };
    let out = run_sh(&rt, "grep ^Cap /proc/self/status", |_| {});
    let m = cap_mask(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    assert_eq!(m, 0x20000420);
    assert_eq!(caps_of(&out.stdout), [0, m, m, m, 0], "{out}");
}

/// All five sets equal to S (root user): every Cap line equals mask(S).
#[test]
fn capabilities_all_sets() {
    let Some(rt) = Runtime::new("capabilities_all_sets") else {
        return;
    };
    let s = [
        "CAP_CHOWN",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_SETUID",
    ];
    let out = run_sh(&rt, "grep ^Cap /proc/self/status", |c| {
        for set in [
            "bounding",
            "effective",
            "permitted",
            "inheritable",
            "ambient",
        ] {
            c["process"]["capabilities"][set] = json!(s);
        }
    });
    let m = cap_mask(&s);
    assert_eq!(caps_of(&out.stdout), [m, m, m, m, m], "{out}");
}

/// Non-root user with ambient capabilities: after exec eff = prm = amb; bounding keeps the extra
/// capability; inheritable as configured.
#[test]
fn capabilities_non_root_ambient() {
    let Some(rt) = Runtime::new("capabilities_non_root_ambient") else {
        return;
    };
    let s = ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"];
    let bnd = [
        "CAP_CHOWN",
        "CAP_NET_BIND_SERVICE",
        "CAP_SETUID",
        "CAP_KILL",
    ];
    let out = run_sh(&rt, "grep ^Cap /proc/self/status; id -u", |c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        c["process"]["capabilities"] = json!({
            "bounding": bnd, "effective": s, "permitted": s, "inheritable": s, "ambient": s
        });
    });
    let m = cap_mask(&s);
    assert_eq!(caps_of(&out.stdout), [m, m, m, cap_mask(&bnd), m], "{out}");
    assert!(out.stdout.ends_with("1000\n"));
}

/// A dropped capability really is gone: without CAP_CHOWN root cannot chown.
#[test]
fn capabilities_enforced() {
    let Some(rt) = Runtime::new("capabilities_enforced") else {
        return;
    };
    let script = "touch /tmp/f && chown 1000 /tmp/f && echo chown-ok || echo chown-failed";
    let tmpfs = |c: &mut serde_json::Value| {
        add_mount(
            c,
            json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]}),
        );
    };
    let out = run_sh(&rt, script, tmpfs);
    assert_eq!(out.out(), "chown-failed", "{out}");
    let out = run_sh(&rt, script, |c| {
        tmpfs(c);
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_CHOWN"));
        }
    });
    assert_eq!(out.out(), "chown-ok", "{out}");
}

#[test]
fn no_new_privileges() {
    let Some(rt) = Runtime::new("no_new_privileges") else {
        return;
    };
    let out = run_sh(&rt, "grep NoNewPrivs /proc/self/status", |_| {});
    assert_eq!(status_field(&out.stdout, "NoNewPrivs"), Some("1"), "{out}");
    let out = run_sh(&rt, "grep NoNewPrivs /proc/self/status", |c| {
        c["process"]["noNewPrivileges"] = json!(false);
    });
    assert_eq!(status_field(&out.stdout, "NoNewPrivs"), Some("0"), "{out}");
}

fn tmpfs_tmp(c: &mut serde_json::Value) {
    add_mount(
        c,
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]}),
    );
}

/// defaultAction ALLOW, mkdir/mkdirat -> errno 1 (EPERM).
#[test]
fn seccomp_errno_rule() {
    let Some(rt) = Runtime::new("seccomp_errno_rule") else {
        return;
    };
    let out = run_sh(
        &rt,
        "mkdir /tmp/x; echo rc=$?; touch /tmp/y && echo touch-ok; grep ^Seccomp: /proc/self/status",
        |c| {
            tmpfs_tmp(c);
            c["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
            });
        },
    );
    assert!(out.stdout.contains("rc=1"), "{out}");
    assert!(out.stdout.contains("touch-ok"), "{out}");
    assert_eq!(status_field(&out.stdout, "Seccomp"), Some("2"), "{out}");
    assert!(out.stderr.contains("Operation not permitted"), "{out}");

    // without errnoRet, SCMP_ACT_ERRNO returns EPERM
    let out = run_sh(&rt, "mkdir /tmp/x; echo rc=$?", |c| {
        tmpfs_tmp(c);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
        });
    });
    assert!(out.stdout.contains("rc=1"), "{out}");
    assert!(out.stderr.contains("Operation not permitted"), "{out}");
}

/// An errnoRet other than EPERM (ENOSPC=28 "No space left on device").
#[test]
fn seccomp_errno_value() {
    let Some(rt) = Runtime::new("seccomp_errno_value") else {
        return;
    };
    let out = run_sh(&rt, "mkdir /tmp/x; echo rc=$?", |c| {
        tmpfs_tmp(c);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28}]
        });
    });
    assert!(out.stdout.contains("rc=1"), "{out}");
    assert!(out.stderr.contains("No space left on device"), "{out}");
}

/// A rule with an argument condition: personality(PER_LINUX32 = 8) fails with EPERM, other
/// personalities work. busybox `linux32` calls personality(8), `linux64` personality(0).
#[test]
fn seccomp_argument_condition() {
    let Some(rt) = Runtime::new("seccomp_argument_condition") else {
        return;
    };
    let out = run_sh(
        &rt,
        "linux64 true; echo l64=$?; linux32 true; echo l32=$?",
        |c| {
            c["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{
                    "names": ["personality"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": 1,
                    "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]
                }]
            });
        },
    );
    assert!(out.stdout.contains("l64=0"), "{out}");
    assert!(!out.stdout.contains("l32=0"), "{out}");
    // without the filter both work
    let out = run_sh(&rt, "linux32 true; echo l32=$?", |_| {});
    assert!(out.stdout.contains("l32=0"), "{out}");
}

/// defaultAction ERRNO with defaultErrnoRet, everything but mkdir/mkdirat allowed by a rule:
/// mkdir fails with the default errno (EOPNOTSUPP = 95).
#[cfg(target_arch = "x86_64")]
#[test]
fn seccomp_default_errno_ret() {
    let Some(rt) = Runtime::new("seccomp_default_errno_ret") else {
        return;
    };
    let out = run_sh(&rt, "mkdir /tmp/x; echo rc=$?; echo still-running", |c| {
        tmpfs_tmp(c);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 95,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": syscalls_except_mkdir(), "action": "SCMP_ACT_ALLOW"}]
        });
    });
    assert!(out.stdout.contains("rc=1"), "{out}");
    assert!(out.stdout.contains("still-running"), "{out}");
    assert!(out.stderr.contains("not supported"), "{out}");
}

/// SCMP_ACT_KILL on a syscall kills the process: the foreground run reports 128+SIGSYS (159).
#[test]
fn seccomp_kill_action() {
    let Some(rt) = Runtime::new("seccomp_kill_action") else {
        return;
    };
    let b = Bundle::new(&["mkdir", "/tmp/x"]).with(|c| {
        tmpfs_tmp(c);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}]
        });
    });
    let id = rt.new_id("skill");
    let out = rt.run_capture(&b, &id);
    assert_eq!(out.code, 128 + libc::SIGSYS, "{out}");
    assert_no_leftovers(&rt, &id, &b);
}
