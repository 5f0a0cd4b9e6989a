//! Isolation: pid namespace (init is pid 1), hostname, a private mount table with the rootfs as
//! `/`, masked and read-only paths, read-only rootfs, extra tmpfs and bind mounts, the /dev
//! set-up, sysctls, and joining another container's namespace by path.

use brig_tests::*;
use serde_json::json;

/// Runs `sh -c script` in a fresh container built by `edit`, asserting exit 0; returns stdout.
#[track_caller]
fn run_sh(rt: &Runtime, script: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let b = Bundle::sh(script).with(edit);
    let id = rt.new_id("iso");
    let out = rt.run_capture(&b, &id);
    out.assert_ok();
    assert_no_leftovers(rt, &id, &b);
    out.stdout
}

#[test]
fn pid_namespace_init_is_pid_1() {
    let Some(rt) = Runtime::new("pid_namespace_init_is_pid_1") else {
        return;
    };
    let out = run_sh(&rt, "echo $$; ps -o pid,comm | wc -l", |_| {});
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1"), "{out}");
    // header + sh + ps (+ wc) only: the host's processes are invisible
    let n: usize = lines.next().unwrap().trim().parse().unwrap();
    assert!(n <= 5, "container sees {n} lines of ps: {out}");
}

#[test]
fn hostname_from_config() {
    let Some(rt) = Runtime::new("hostname_from_config") else {
        return;
    };
    let out = run_sh(&rt, "hostname; cat /proc/sys/kernel/hostname", |c| {
        c["hostname"] = json!("brig-box-7");
    });
    assert_eq!(out, "brig-box-7\nbrig-box-7\n");
}

/// Without a uts namespace the hostname cannot be set: the runtime must refuse (runc:
/// "unable to set hostname without a private UTS namespace").
#[test]
fn hostname_needs_uts_namespace() {
    let Some(rt) = Runtime::new("hostname_needs_uts_namespace") else {
        return;
    };
    let b = Bundle::new(&["true"]).with(|c| remove_namespace(c, "uts"));
    let id = rt.new_id("nouts");
    let out = rt.run_capture(&b, &id);
    out.assert_fail();
    assert_no_leftovers(&rt, &id, &b);
}

#[test]
fn private_mount_table() {
    let Some(rt) = Runtime::new("private_mount_table") else {
        return;
    };
    let b = Bundle::sh("cat /proc/self/mountinfo");
    let id = rt.new_id("mnt");
    let out = rt.run_capture(&b, &id);
    out.assert_ok();
    let inside = out.stdout.clone();
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_ne!(inside, host);
    // the line for "/" is the bundle's rootfs, read-only
    let root_line = inside
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap_or_else(|| panic!("no / in {inside}"));
    let fields: Vec<&str> = root_line.split(' ').collect();
    assert!(fields[3].ends_with("/rootfs"), "{root_line}");
    assert!(
        fields[5].split(',').any(|o| o == "ro"),
        "rootfs not ro: {root_line}"
    );
    // proc, sysfs, devpts, mqueue, tmpfs /dev are mounted
    for (mp, ty) in [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/sys", "sysfs"),
    ] {
        assert!(
            inside.lines().any(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                let sep = f.iter().position(|x| *x == "-").unwrap();
                f[4] == mp && f[sep + 1] == ty
            }),
            "no {ty} on {mp}:\n{inside}"
        );
    }
    // /sys is read-only
    let sys = inside
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/sys"))
        .unwrap();
    assert!(sys.split(' ').nth(5).unwrap().split(',').any(|o| o == "ro"));
    // nothing of the host's bundle path is visible as a mount point
    assert!(!inside.contains(&format!(" {} ", b.path_str())));
    assert_no_leftovers(&rt, &id, &b);
}

#[test]
fn masked_paths() {
    let Some(rt) = Runtime::new("masked_paths") else {
        return;
    };
    // Files that exist on this host among the default masked files (kcore is absent on some
    // kernels) read as empty; masked directories list as empty.
    let files: Vec<&str> = [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
    ]
    .into_iter()
    .filter(|p| std::path::Path::new(p).exists())
    .collect();
    assert!(
        !files.is_empty(),
        "no default masked file exists on this host"
    );
    let dirs: Vec<&str> = ["/sys/firmware", "/proc/acpi", "/proc/scsi", "/proc/asound"]
        .into_iter()
        .filter(|p| std::path::Path::new(p).exists())
        .collect();
    let mut script = String::new();
    for f in &files {
        script += &format!("echo \"{f} $(wc -c < {f})\"; ");
    }
    for d in &dirs {
        script += &format!("echo \"{d} $(ls -A {d} | wc -l)\"; ");
    }
    let out = run_sh(&rt, &script, |_| {});
    let want: Vec<String> = files
        .iter()
        .chain(dirs.iter())
        .map(|p| format!("{p} 0"))
        .collect();
    let got: Vec<String> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(got, want, "{out}");
}

/// A masked path that is a regular file on the host reads as /dev/null; an extra masked file
/// and directory of the test's choice are masked too.
#[test]
fn masked_paths_custom() {
    let Some(rt) = Runtime::new("masked_paths_custom") else {
        return;
    };
    let out = run_sh(
        &rt,
        "wc -c < /proc/version; ls -A /proc/driver | wc -l; cat /proc/cmdline | wc -c",
        |c| {
            c["linux"]["maskedPaths"] = json!(["/proc/version", "/proc/driver", "/no/such/path"]);
        },
    );
    let v: Vec<i64> = out.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(v[0], 0, "{out}");
    assert_eq!(v[1], 0, "{out}");
    assert!(v[2] > 0, "unmasked file should be readable: {out}");
}

#[test]
fn readonly_paths() {
    let Some(rt) = Runtime::new("readonly_paths") else {
        return;
    };
    let b = Bundle::sh(
        "echo x > /proc/sys/kernel/domainname; echo rc=$?; \
         echo x > /proc/sysrq-trigger; echo rc=$?; \
         cat /proc/sys/kernel/ostype",
    );
    let id = rt.new_id("ro");
    let out = rt.run_capture(&b, &id);
    out.assert_ok();
    assert!(out.stdout.contains("rc=1"), "{out}");
    assert!(!out.stdout.contains("rc=0"), "{out}");
    assert!(
        out.stdout.contains("Linux"),
        "readonly path must stay readable: {out}"
    );
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert_no_leftovers(&rt, &id, &b);
}

#[test]
fn readonly_rootfs() {
    let Some(rt) = Runtime::new("readonly_rootfs") else {
        return;
    };
    let b = Bundle::sh("touch /x; echo rc=$?; touch /tmp/y; echo rc=$?");
    let id = rt.new_id("rootro");
    let out = rt.run_capture(&b, &id);
    out.assert_ok();
    assert_eq!(out.stdout, "rc=1\nrc=1\n", "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert!(!b.rootfs().join("x").exists());
    assert_no_leftovers(&rt, &id, &b);

    // readonly: false -> writable, and the write lands in the bundle's rootfs
    let b = Bundle::sh("touch /x && echo ok").with(|c| c["root"]["readonly"] = json!(false));
    let id = rt.new_id("rootrw");
    let out = rt.run_capture(&b, &id);
    out.assert_ok();
    assert_eq!(out.out(), "ok");
    assert!(b.rootfs().join("x").exists());
    assert_no_leftovers(&rt, &id, &b);
}

#[test]
fn tmpfs_mount_with_options() {
    let Some(rt) = Runtime::new("tmpfs_mount_with_options") else {
        return;
    };
    let out = run_sh(
        &rt,
        "grep ' /mnt/scratch ' /proc/mounts; stat -c %a /mnt/scratch; \
         echo hi > /mnt/scratch/f && cat /mnt/scratch/f",
        |c| {
            add_mount(
                c,
                json!({"destination": "/mnt/scratch", "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "nodev", "size=1m", "mode=750"]}),
            )
        },
    );
    let mut lines = out.lines();
    let m = lines.next().unwrap();
    let f: Vec<&str> = m.split(' ').collect();
    assert_eq!(f[2], "tmpfs", "{m}");
    let opts: Vec<&str> = f[3].split(',').collect();
    for o in ["rw", "nosuid", "nodev", "size=1024k", "mode=750"] {
        assert!(opts.contains(&o), "{o} missing in {m}");
    }
    assert_eq!(lines.next(), Some("750"));
    assert_eq!(lines.next(), Some("hi"));
}

#[test]
fn bind_mount_readonly() {
    let Some(rt) = Runtime::new("bind_mount_readonly") else {
        return;
    };
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("hello.txt"), "from-host\n").unwrap();
    let hp = host.path().to_str().unwrap().to_string();
    let hp2 = hp.clone();
    let out = run_sh(
        &rt,
        "cat /data/hello.txt; touch /data/new; echo rc=$?; grep ' /data ' /proc/mounts",
        move |c| {
            add_mount(
                c,
                json!({"destination": "/data", "type": "bind", "source": hp2,
                       "options": ["rbind", "ro"]}),
            )
        },
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("from-host"), "{out}");
    assert_eq!(lines.next(), Some("rc=1"), "{out}");
    let m = lines.next().unwrap();
    assert!(
        m.split(' ').nth(3).unwrap().split(',').any(|o| o == "ro"),
        "{m}"
    );
    assert!(!host.path().join("new").exists());

    // a rw bind mount writes through to the host
    let hp3 = hp.clone();
    let out = run_sh(&rt, "echo written > /data/new && echo ok", move |c| {
        add_mount(
            c,
            json!({"destination": "/data", "type": "bind", "source": hp3, "options": ["bind"]}),
        )
    });
    assert_eq!(out.trim(), "ok");
    assert_eq!(read_trim(host.path().join("new")), "written");
}

/// A bind mount of a single file onto a path that does not exist in the rootfs.
#[test]
fn bind_mount_file() {
    let Some(rt) = Runtime::new("bind_mount_file") else {
        return;
    };
    let host = tempfile::tempdir().unwrap();
    let f = host.path().join("conf");
    std::fs::write(&f, "file-content\n").unwrap();
    let fp = f.to_str().unwrap().to_string();
    let out = run_sh(&rt, "cat /etc/brig/conf", move |c| {
        add_mount(
            c,
            json!({"destination": "/etc/brig/conf", "type": "bind", "source": fp,
                   "options": ["rbind", "ro"]}),
        )
    });
    assert_eq!(out, "file-content\n");
}

#[test]
fn dev_setup() {
    let Some(rt) = Runtime::new("dev_setup") else {
        return;
    };
    let out = run_sh(
        &rt,
        "for d in null zero full random urandom tty; do \
           [ -c /dev/$d ] && echo \"$d $(stat -c '%t:%T %a' /dev/$d)\" || echo \"$d MISSING\"; \
         done; \
         for l in fd stdin stdout stderr ptmx; do echo \"$l -> $(readlink /dev/$l)\"; done; \
         [ -d /dev/pts ] && echo pts-dir; [ -d /dev/shm ] && echo shm-dir; \
         echo data > /dev/null && echo null-ok; \
         head -c 4 /dev/zero | wc -c; head -c 8 /dev/urandom | wc -c",
        |_| {},
    );
    let want = [
        "null 1:3 666",
        "zero 1:5 666",
        "full 1:7 666",
        "random 1:8 666",
        "urandom 1:9 666",
        "tty 5:0 666",
        "fd -> /proc/self/fd",
        "stdin -> /proc/self/fd/0",
        "stdout -> /proc/self/fd/1",
        "stderr -> /proc/self/fd/2",
        "ptmx -> pts/ptmx",
        "pts-dir",
        "shm-dir",
        "null-ok",
        "4",
        "8",
    ];
    let got: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(got, want, "{out}");
}

/// Host devices other than the default ones are not visible.
#[test]
fn dev_has_no_host_devices() {
    let Some(rt) = Runtime::new("dev_has_no_host_devices") else {
        return;
    };
    let out = run_sh(&rt, "ls /dev | sort | tr '\\n' ' '", |_| {});
    for bad in ["sda", "vda", "kmsg", "mem", "loop0", "console"] {
        assert!(
            !out.split_whitespace().any(|d| d == bad),
            "/dev/{bad} visible: {out}"
        );
    }
}

/// linux.devices creates extra device nodes (here: a second /dev/null-like node).
#[test]
fn extra_device_node() {
    let Some(rt) = Runtime::new("extra_device_node") else {
        return;
    };
    let out = run_sh(&rt, "stat -c '%F %t:%T %a' /dev/mynull", |c| {
        c["linux"]["devices"] = json!([{"path": "/dev/mynull", "type": "c", "major": 1,
                                         "minor": 3, "fileMode": 438, "uid": 0, "gid": 0}]);
    });
    assert_eq!(out.trim(), "character special file 1:3 666");
}

#[test]
fn sysctl_in_netns() {
    let Some(rt) = Runtime::new("sysctl_in_netns") else {
        return;
    };
    let host_fwd = read_trim("/proc/sys/net/ipv4/ip_forward");
    let out = run_sh(
        &rt,
        "cat /proc/sys/net/ipv4/ip_forward; cat /proc/sys/kernel/msgmax",
        |c| {
            c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.msgmax": "12345"});
        },
    );
    assert_eq!(out, "1\n12345\n");
    // the host is untouched
    assert_eq!(read_trim("/proc/sys/net/ipv4/ip_forward"), host_fwd);
}

/// A network namespace has only a loopback interface.
#[test]
fn network_namespace_is_empty() {
    let Some(rt) = Runtime::new("network_namespace_is_empty") else {
        return;
    };
    let out = run_sh(&rt, "ls /sys/class/net | tr '\\n' ' '", |_| {});
    assert_eq!(out.trim(), "lo");
}

/// A second container joins the first one's uts, ipc and network namespaces by path and sees
/// its hostname and its (namespaced) sysctls.
#[test]
fn join_namespace_by_path() {
    let Some(rt) = Runtime::new("join_namespace_by_path") else {
        return;
    };
    let a = Bundle::new(&["sleep", "100"]).with(|c| {
        c["hostname"] = json!("shared-host-a");
        c["linux"]["sysctl"] = json!({"kernel.msgmax": "23456", "net.ipv4.ip_default_ttl": "77"});
    });
    let ida = rt.new_id("nsa");
    rt.run_detached(&a, &ida).assert_ok();
    let pid = rt.pid(&ida);
    let ns = |t: &str| format!("/proc/{pid}/ns/{t}");
    let (uts, ipc, net) = (ns("uts"), ns("ipc"), ns("net"));
    let b =
        Bundle::sh("hostname; cat /proc/sys/kernel/msgmax; cat /proc/sys/net/ipv4/ip_default_ttl")
            .with(|c| {
                // setting a hostname would change A's: leave it out
                c.as_object_mut().unwrap().remove("hostname");
                set_namespace_path(c, "uts", &uts);
                set_namespace_path(c, "ipc", &ipc);
                set_namespace_path(c, "network", &net);
            });
    let idb = rt.new_id("nsb");
    let out = rt.run_capture(&b, &idb);
    out.assert_ok();
    assert_eq!(out.stdout, "shared-host-a\n23456\n77\n", "{out}");
    assert_no_leftovers(&rt, &idb, &b);
    // A is unaffected
    assert_eq!(rt.status(&ida).as_deref(), Some("running"));
    rt.delete_force(&ida).assert_ok();
    assert_no_leftovers(&rt, &ida, &a);
}

/// Joining a pid namespace by path: the second container's processes are visible in the first.
#[test]
fn join_pid_namespace() {
    let Some(rt) = Runtime::new("join_pid_namespace") else {
        return;
    };
    let a = Bundle::new(&["sleep", "100"]);
    let ida = rt.new_id("pida");
    rt.run_detached(&a, &ida).assert_ok();
    let pid = rt.pid(&ida);
    let pidns = format!("/proc/{pid}/ns/pid");
    let b = Bundle::sh("echo $$; ps -o comm | grep -c sleep").with(|c| {
        set_namespace_path(c, "pid", &pidns);
    });
    let idb = rt.new_id("pidb");
    let out = rt.run_capture(&b, &idb);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_ne!(lines[0], "1", "joined pid ns: sh is not pid 1: {out}");
    assert_eq!(lines[1], "1", "A's sleep visible: {out}");
    assert_no_leftovers(&rt, &idb, &b);
    rt.delete_force(&ida).assert_ok();
    assert_no_leftovers(&rt, &ida, &a);
}

/// Without a pid namespace the container sees the host's processes.
#[test]
fn no_pid_namespace_shares_host_pids() {
    let Some(rt) = Runtime::new("no_pid_namespace_shares_host_pids") else {
        return;
    };
    let me = std::process::id();
    let out = run_sh(
        &rt,
        &format!("[ -d /proc/{me} ] && echo yes; echo $$"),
        |c| remove_namespace(c, "pid"),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "yes", "{out}");
    assert_ne!(lines[1], "1", "{out}");
}

/// A cgroup namespace makes the container's cgroup appear as "/".
#[test]
fn cgroup_namespace() {
    let Some(rt) = Runtime::new("cgroup_namespace") else {
        return;
    };
    let out = run_sh(&rt, "cat /proc/self/cgroup", |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "cgroup"}));
    });
    for l in out.lines() {
        let path = l.splitn(3, ':').nth(2).unwrap();
        assert_eq!(path, "/", "{out}");
    }
}

/// Bind mounts with propagation options are listed in the container's mountinfo in the order
/// config.json gives them, after the rootfs and the mounts before them (as runc; kernels from
/// 6.8 list mountinfo by mount id, so a bind made early shows early), each with its
/// propagation; `rootfsPropagation: shared` works (pivot_root refused a shared new root).
#[test]
fn propagation_binds_in_config_order_and_shared_rootfs() {
    let Some(rt) = Runtime::new("propagation_binds_in_config_order_and_shared_rootfs") else {
        return;
    };
    let src = tempfile::tempdir().unwrap();
    let opts = [
        ("/m-shared", "rshared"),
        ("/m-slave", "rslave"),
        ("/m-private", "private"),
        ("/m-runbindable", "runbindable"),
    ];
    for (dest, _) in opts {
        std::fs::create_dir(src.path().join(&dest[1..])).unwrap();
    }
    // The sources on a shared mount of the test's own, so that a slave has a master to show.
    let shared = SharedMount::new(src.path());
    let binds: Vec<serde_json::Value> = opts
        .iter()
        .map(|(dest, prop)| {
            json!({"destination": dest, "type": "bind",
                   "source": src.path().join(&dest[1..]), "options": ["rbind", prop]})
        })
        .collect();
    for rootfs_prop in ["shared", "rshared", "rslave", "private"] {
        let b = Bundle::sh("cat /proc/self/mountinfo").with(|c| {
            c["linux"]["rootfsPropagation"] = json!(rootfs_prop);
            for b in &binds {
                add_mount(c, b.clone());
            }
        });
        // The rootfs a shared mount point of its own, as containerd's overlay is on a host
        // whose / is shared (systemd's default).
        let rootfs_mount = SharedMount::new(&b.rootfs());
        let id = rt.new_id("prop");
        let run = rt.run_capture(&b, &id);
        drop(rootfs_mount);
        run.assert_ok();
        assert_no_leftovers(&rt, &id, &b);
        let out = run.stdout;
        let points: Vec<&str> = out.lines().filter_map(|l| l.split(' ').nth(4)).collect();
        let at = |p: &str| points.iter().position(|x| *x == p);
        let order: Vec<Option<usize>> = ["/", "/proc", "/sys/fs/cgroup"]
            .into_iter()
            .chain(opts.iter().map(|(d, _)| *d))
            .map(at)
            .collect();
        assert!(
            order.iter().all(Option::is_some) && order.windows(2).all(|w| w[0] < w[1]),
            "rootfsPropagation {rootfs_prop}: mounts out of config order: {points:?}"
        );
        let fields = |p: &str| {
            out.lines()
                .find(|l| l.split(' ').nth(4) == Some(p))
                .map(|l| l.split(" - ").next().unwrap_or("").to_string())
                .unwrap_or_default()
        };
        assert!(fields("/m-shared").contains("shared:"), "{out}");
        assert!(fields("/m-slave").contains("master:"), "{out}");
        assert!(fields("/m-runbindable").contains("unbindable"), "{out}");
        let private = fields("/m-private");
        assert!(
            !private.contains("shared:") && !private.contains("master:"),
            "{out}"
        );
        // (runc 1.1 leaves its rootfs private.)
        if rootfs_prop.ends_with("shared") && rt.is_brig() {
            assert!(fields("/").contains("shared:"), "rootfs not shared: {out}");
        }
    }
    drop(shared);
}

/// `dir` bind-mounted onto itself and made shared, unmounted on drop.
struct SharedMount(std::path::PathBuf);

impl SharedMount {
    fn new(dir: &std::path::Path) -> SharedMount {
        for args in [&["--bind", "."][..], &["--make-shared"][..]] {
            let ok = std::process::Command::new("mount")
                .args(args)
                .current_dir(dir)
                .arg(dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "mount {args:?} {}", dir.display());
        }
        SharedMount(dir.to_path_buf())
    }
}

impl Drop for SharedMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Without a mount namespace (the runtime-spec allows it; runc does it) the container shares
/// the caller's mount namespace, chrooted into its rootfs: nothing is mounted, and `exec`
/// lands in the same root. Anything that would mount there is refused by name.
#[test]
fn no_mount_namespace_shares_the_callers() {
    let Some(rt) = Runtime::new("no_mount_namespace_shares_the_callers") else {
        return;
    };
    if rt.skip_unless_brig("runc binds the rootfs and sets propagation in the caller's mount namespace, the host's here") {
        return;
    }
    let bare = |c: &mut serde_json::Value| {
        remove_namespace(c, "mount");
        c["mounts"] = json!([]);
        c["root"]["readonly"] = json!(false);
        c["linux"]["maskedPaths"] = json!([]);
        c["linux"]["readonlyPaths"] = json!([]);
    };
    let b = Bundle::new(&["sleep", "100"]).with(bare);
    std::fs::write(b.rootfs().join("marker"), "in the rootfs\n").unwrap();
    let id = rt.new_id("nomnt");
    rt.run_detached(&b, &id).assert_ok();
    let pid = rt.pid(&id);
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/mnt")).unwrap();
    assert_eq!(
        ns(&pid.to_string()),
        ns("self"),
        "not the caller's mount namespace"
    );
    let root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap();
    assert_eq!(root, std::fs::canonicalize(b.rootfs()).unwrap());
    let out = rt.cmd(&["exec", &id, "cat", "/marker"]);
    out.assert_ok();
    assert_eq!(out.stdout, "in the rootfs\n");
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
    assert!(
        std::fs::read_dir(b.rootfs().join("dev")).map_or(true, |mut d| d.next().is_none()),
        "device nodes made in the rootfs on the host"
    );
    for (field, edit) in [
        (
            "mounts",
            (|c| c["mounts"] = json!([{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}]))
                as Edit,
        ),
        ("root.readonly", |c| c["root"]["readonly"] = json!(true)),
        ("linux.maskedPaths", |c| {
            c["linux"]["maskedPaths"] = json!(["/proc/kcore"])
        }),
        ("linux.rootfsPropagation", |c| {
            c["linux"]["rootfsPropagation"] = json!("shared")
        }),
    ] {
        let b = Bundle::new(&["true"]).with(bare).with(edit);
        let id = rt.new_id("nomnt");
        let out = rt.create(&b, &id);
        out.assert_fail();
        assert!(
            out.stderr
                .contains(&format!("{field}: needs a mount namespace")),
            "{out}"
        );
        assert_no_leftovers(&rt, &id, &b);
    }
}

type Edit = fn(&mut serde_json::Value);
