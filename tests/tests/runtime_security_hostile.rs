//! Hostile bundles and runtime hardening (issue 9): a rootfs whose /dev, /sys, mount targets,
//! device paths and cwd are symlinks to host paths (absolute, or `..` chains climbing out of the
//! rootfs), a rootfs path that is itself a symlink, container ids that would escape `--root`,
//! and the fds and state the container must never reach.
//!
//! Each symlink test gives the link a host directory as target, holding one marker file, and
//! checks after `run` (whether the runtime refused or ran the container) that the directory holds
//! nothing else and that nothing was mounted on it. A runtime that resolves a container path
//! on the host (a plain `mkdir -p`, `mknod` or `mount` on `rootfs + path`) creates or mounts
//! there, because it runs as root in the host's view of the filesystem at that moment.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use brig_tests::*;
use serde_json::json;

/// A host directory that must stay as it is: it holds only `marker`.
struct HostDir {
    dir: tempfile::TempDir,
}

impl HostDir {
    fn new() -> HostDir {
        let dir = tempfile::Builder::new()
            .prefix("brig-host-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("marker"), "host\n").unwrap();
        HostDir { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The two symlink targets that name this directory from `link` (a path inside a rootfs):
    /// the absolute path, and a `..` chain that climbs from the link's directory to `/` first.
    fn targets(&self, link: &Path) -> Vec<String> {
        let depth = link.parent().unwrap().components().count();
        let up = "../".repeat(depth + 2);
        let rel = self.path().to_str().unwrap().trim_start_matches('/');
        vec![
            self.path().to_str().unwrap().to_string(),
            format!("{up}{rel}"),
        ]
    }

    /// Panics if anything but the marker is in the directory or mounted on it.
    #[track_caller]
    fn assert_untouched(&self, what: &str) {
        let names: Vec<String> = std::fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["marker"],
            "{what}: the runtime wrote into the host directory {}",
            self.path().display()
        );
        let p = self.path().to_str().unwrap();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.lines().any(|l| l.contains(p)),
            "{what}: something is mounted on the host directory: {mounts}"
        );
    }
}

/// Replaces `path` (relative to the rootfs) by a symlink to `target`.
fn make_symlink(b: &Bundle, path: &str, target: &str) -> PathBuf {
    let p = b.rootfs().join(path);
    if p.is_dir() {
        std::fs::remove_dir_all(&p).unwrap();
    } else if p.symlink_metadata().is_ok() {
        std::fs::remove_file(&p).unwrap();
    }
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, &p).unwrap();
    p
}

/// Runs `b` to completion, then checks the host directory and that the container left nothing.
fn run_and_check(rt: &Runtime, b: &Bundle, host: &HostDir, what: &str) -> Out {
    let id = rt.new_id("hostile");
    let out = rt.run_capture(b, &id);
    println!("{what}: {out}");
    rt.delete_force(&id);
    host.assert_untouched(what);
    assert_no_leftovers(rt, &id, b);
    out
}

/// /dev a symlink to a host directory. With the usual tmpfs on /dev, a vulnerable runtime
/// mounts it on the host directory and creates the device nodes there; without it (the config
/// has no /dev mount, so the runtime makes its nodes in the image's /dev) the nodes land in the
/// host directory. Devices listed in the config with a path that climbs out of /dev must be
/// made inside the root as well.
#[test]
fn hostile_rootfs_dev_symlink_to_host() {
    let Some(rt) = Runtime::new("hostile_rootfs_dev_symlink_to_host") else {
        return;
    };
    let host = HostDir::new();
    for target in host.targets(Path::new("/dev")) {
        for with_tmpfs in [true, false] {
            let mut b = Bundle::new(&["true"]);
            make_symlink(&b, "dev", &target);
            b.edit(|c| {
                if !with_tmpfs {
                    c["mounts"]
                        .as_array_mut()
                        .unwrap()
                        .retain(|m| m["destination"] != "/dev");
                }
            });
            run_and_check(
                &rt,
                &b,
                &host,
                &format!("/dev -> {target}, tmpfs on /dev: {with_tmpfs}"),
            );
        }
    }
    // A device whose path climbs out of /dev (and out of the rootfs, if resolved on the host).
    let rel = host.path().to_str().unwrap().trim_start_matches('/');
    for path in [
        format!("/dev/../../../../../../../../{rel}/evil"),
        format!("{}/evil", host.path().display()),
    ] {
        let b = Bundle::new(&["true"]).with(|c| {
            c["linux"]["devices"] = json!([{"path": path, "type": "c", "major": 1, "minor": 3,
                                            "fileMode": 438, "uid": 0, "gid": 0}]);
        });
        run_and_check(&rt, &b, &host, &format!("device at {path}"));
    }
}

/// /sys a symlink to a host directory: the runtime mounts sysfs there and makes
/// /sys/fs/cgroup below it. A vulnerable runtime creates `fs/cgroup` in the host directory
/// (and mounts sysfs and a cgroup tmpfs on it in the container's mount namespace).
#[test]
fn hostile_rootfs_sys_symlink_to_host() {
    let Some(rt) = Runtime::new("hostile_rootfs_sys_symlink_to_host") else {
        return;
    };
    let host = HostDir::new();
    for target in host.targets(Path::new("/sys")) {
        let b = Bundle::new(&["true"]);
        make_symlink(&b, "sys", &target);
        run_and_check(&rt, &b, &host, &format!("/sys -> {target}"));
    }
}

/// Mount destinations below a symlink to a host directory: a tmpfs at /mnt/a/b (mkdir-all of
/// `a/b`), a file bind at /mnt/f (the runtime creates the file to mount on), and a directory
/// bind at /mnt. A vulnerable runtime creates `a/b` and `f` in the host directory, or mounts
/// over it.
#[test]
fn hostile_rootfs_mount_destination_symlink_to_host() {
    let Some(rt) = Runtime::new("hostile_rootfs_mount_destination_symlink_to_host") else {
        return;
    };
    let host = HostDir::new();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("file"), "src\n").unwrap();
    let file = src.path().join("file").to_str().unwrap().to_string();
    let dir = src.path().to_str().unwrap().to_string();
    for target in host.targets(Path::new("/mnt")) {
        for m in [
            json!({"destination": "/mnt/a/b", "type": "tmpfs", "source": "tmpfs"}),
            json!({"destination": "/mnt/f", "type": "bind", "source": file, "options": ["bind"]}),
            json!({"destination": "/mnt", "type": "bind", "source": dir, "options": ["rbind"]}),
        ] {
            let b = Bundle::new(&["true"]).with(|c| add_mount(c, m.clone()));
            make_symlink(&b, "mnt", &target);
            run_and_check(&rt, &b, &host, &format!("/mnt -> {target}, mount {m}"));
        }
    }
}

/// Mount destinations through /proc's magic links: /proc/self/root, /proc/self/cwd and
/// /proc/1/root name, while the runtime sets up the mounts, the runtime's own root, cwd or the
/// host's init, all outside the container. A runtime that resolves destinations with magic
/// links allowed (plain path walks, or openat2 RESOLVE_IN_ROOT without RESOLVE_NO_MAGICLINKS)
/// mounts a tmpfs or creates directories on the host. Named directly, or reached through a
/// symlink of the image. Refused or kept inside the root.
#[test]
fn hostile_mount_destination_through_proc_magic_link() {
    let Some(rt) = Runtime::new("hostile_mount_destination_through_proc_magic_link") else {
        return;
    };
    let host = HostDir::new();
    let hp = host.path().display().to_string();
    let cwd_rel = hp.trim_start_matches('/').to_string();
    // (destination, symlink /x in the rootfs to this target, if any)
    let mut cases: Vec<(String, Option<String>)> = vec![
        (format!("/proc/self/root{hp}/a/b"), None),
        (format!("/proc/1/root{hp}/a/b"), None),
        (format!("/proc/thread-self/root{hp}/a"), None),
        (format!("/proc/self/cwd/{cwd_rel}/a"), None),
    ];
    // The same through a symlink of the image: procfs is mounted by then, so the link's
    // target is a magic link when resolved inside the container's root.
    for t in ["/proc/self/root", "/proc/1/root", "/proc/self/cwd"] {
        cases.push(("/x/a/b".to_string(), Some(format!("{t}{hp}"))));
    }
    for (dest, link) in cases {
        let b = Bundle::new(&["true"]).with(|c| {
            add_mount(
                c,
                json!({"destination": dest, "type": "tmpfs", "source": "tmpfs"}),
            )
        });
        if let Some(t) = &link {
            make_symlink(&b, "x", t);
        }
        let dest = format!("{dest} (/x -> {link:?})");
        let id = rt.new_id("magic");
        let out = rt
            .command(&[], &["run", "--bundle", b.path_str(), &id])
            .current_dir("/")
            .output()
            .unwrap();
        rt.track(&id);
        println!(
            "mount on {dest}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        rt.delete_force(&id);
        host.assert_untouched(&format!("mount on {dest}"));
        assert_no_leftovers(&rt, &id, &b);
    }
}

/// `process.cwd` below, or at, a symlink to a host directory. The runtime creates a missing
/// cwd (as runc does) and changes into it: a vulnerable runtime creates `sub` in the host
/// directory, or gives the container a cwd there (it would list the marker).
#[test]
fn hostile_rootfs_cwd_symlink_to_host() {
    let Some(rt) = Runtime::new("hostile_rootfs_cwd_symlink_to_host") else {
        return;
    };
    let host = HostDir::new();
    for target in host.targets(Path::new("/w")) {
        for cwd in ["/w", "/w/sub"] {
            let b = Bundle::sh("pwd; ls").with(|c| c["process"]["cwd"] = json!(cwd));
            make_symlink(&b, "w", &target);
            let out = run_and_check(&rt, &b, &host, &format!("/w -> {target}, cwd {cwd}"));
            assert!(
                !out.stdout.contains("marker"),
                "cwd {cwd}: the container's cwd is the host directory: {out}"
            );
        }
    }
}

/// `root.path` itself a symlink (to the real rootfs next to it, or to the host's `/`; named
/// relative to the bundle or by an absolute path): refused,
/// as runc refuses it, with an error naming root.path, and nothing left behind. A vulnerable
/// runtime follows the link as root and runs the container with the host's root filesystem.
#[test]
fn hostile_rootfs_path_is_symlink() {
    let Some(rt) = Runtime::new("hostile_rootfs_path_is_symlink") else {
        return;
    };
    for (target, absolute) in [("rootfs", false), ("/", false), ("rootfs", true)] {
        let mut b = Bundle::sh("ls /work /home /boot 2>/dev/null | head -c 200");
        let link = b.path().join("rootfs-link");
        let path = if absolute {
            link.to_str().unwrap().to_string()
        } else {
            "rootfs-link".to_string()
        };
        b.edit(|c| c["root"]["path"] = json!(path));
        std::os::unix::fs::symlink(target, &link).unwrap();
        let id = rt.new_id("rootlink");
        let out = rt.run_capture(&b, &id);
        println!("{path} -> {target}: {out}");
        assert!(!out.success(), "{path} -> {target} accepted: {out}");
        assert!(
            out.stderr.contains("root.path") || out.stderr.contains("rootfs"),
            "the error does not name the rootfs: {out}"
        );
        assert!(
            std::fs::symlink_metadata(b.path().join("rootfs-link"))
                .unwrap()
                .file_type()
                .is_symlink(),
            "the rootfs link was replaced"
        );
        rt.delete_force(&id);
        assert_no_leftovers(&rt, &id, &b);
    }
}

/// Container ids that name something outside `--root` (`../x`, `a/b`, `.`, `..`, empty) are
/// refused by every command, and nothing is created, read or removed outside the root. A
/// vulnerable runtime joins the id to the root path: `create ../x` makes a state dir next to
/// the root, and `delete --force ../x` removes whatever is there.
#[test]
fn container_ids_that_escape_root_are_refused() {
    let Some(rt) = Runtime::new("container_ids_that_escape_root_are_refused") else {
        return;
    };
    let b = Bundle::new(&["true"]);
    // The root exists (one container made it) and has a neighbour `x` holding a file.
    let ok = rt.new_id("ok");
    rt.create_ok(&b, &ok);
    let parent = rt.root().parent().unwrap().to_path_buf();
    let x = parent.join("x");
    std::fs::create_dir(&x).unwrap();
    std::fs::write(x.join("state.json"), "{}").unwrap();
    let listing = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "io")
            .collect();
        v.sort();
        v
    };
    let before = (listing(&parent), listing(rt.root()), listing(&x));
    for id in ["../x", "a/b", ".", "..", "", "../../x"] {
        for args in [
            vec!["create", "--bundle", b.path_str(), id],
            vec!["run", "--bundle", b.path_str(), id],
            vec!["state", id],
            vec!["start", id],
            vec!["kill", id, "KILL"],
            vec!["delete", "--force", id],
        ] {
            let out = rt.cmd(&args);
            assert!(!out.success(), "id {id:?} accepted: {out}");
            assert!(
                !out.stderr.is_empty(),
                "id {id:?}: refused without a message: {out}"
            );
            assert_eq!(
                (listing(&parent), listing(rt.root()), listing(&x)),
                before,
                "id {id:?}: {} changed something outside the root",
                args[0]
            );
        }
    }
    rt.delete_force(&ok).assert_ok();
    assert_no_leftovers(&rt, &ok, &b);
}

/// The fds of `pid` as "N -> target", sorted.
fn fds_of(pid: i32) -> Vec<String> {
    let mut fds: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let n: i32 = e.file_name().to_str().unwrap().parse().unwrap();
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            (n, format!("{n} -> {}", target.display()))
        })
        .collect();
    fds.sort();
    fds.into_iter().map(|(_, s)| s).collect()
}

/// Runs the runtime with fds 3 and 4 open on `extra` (the caller's fds to preserve), stdin
/// /dev/null and output to files.
fn run_with_extra_fds(rt: &Runtime, extra: &Path, args: &[&str]) -> Out {
    let f3 = std::fs::File::open(extra).unwrap();
    let f4 = std::fs::File::open(extra).unwrap();
    let (r3, r4) = {
        use std::os::fd::AsRawFd;
        (f3.as_raw_fd(), f4.as_raw_fd())
    };
    let mut cmd = rt.command(&[], args);
    // SAFETY: dup2 between fds this process owns, in the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            for (from, to) in [(r3, 3), (r4, 4)] {
                let r = if from == to {
                    libc::fcntl(to, libc::F_SETFD, 0)
                } else {
                    libc::dup2(from, to)
                };
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let dir = tempfile::tempdir().unwrap();
    cmd.stdout(std::fs::File::create(dir.path().join("out")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("err")).unwrap());
    let out = run_timeout(&mut cmd, CMD_TIMEOUT);
    Out {
        stdout: std::fs::read_to_string(dir.path().join("out")).unwrap_or_default(),
        stderr: std::fs::read_to_string(dir.path().join("err")).unwrap_or_default(),
        ..out
    }
}

/// Only stdio and the fds given with --preserve-fds reach the container's init and an exec'd
/// process; nothing of the runtime (state dir, sync sockets, namespace fds, the seccomp
/// listener, cgroup dirs), and the cwd is the container's. A runtime that forgets to close an
/// fd before execve (CVE-2024-21626's leaked cgroup fd) fails on the extra entry.
#[test]
fn no_runtime_fd_reaches_init_or_exec() {
    let Some(rt) = Runtime::new("no_runtime_fd_reaches_init_or_exec") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let extra = tmp.path().join("extra");
    std::fs::write(&extra, "x").unwrap();
    let ex = extra.to_str().unwrap();
    let b = Bundle::new(&["sleep", "1000"]);
    for preserve in [0, 2] {
        let id = rt.new_id("fds");
        rt.track(&id);
        let n = preserve.to_string();
        run_with_extra_fds(
            &rt,
            &extra,
            &[
                "run",
                "-d",
                "--preserve-fds",
                &n,
                "--bundle",
                b.path_str(),
                &id,
            ],
        )
        .assert_ok();
        let pidfile = tmp.path().join(format!("exec-{preserve}.pid"));
        run_with_extra_fds(
            &rt,
            &extra,
            &[
                "exec",
                "-d",
                "--preserve-fds",
                &n,
                "--pid-file",
                pidfile.to_str().unwrap(),
                &id,
                "sleep",
                "1000",
            ],
        )
        .assert_ok();
        let exec_pid: i32 = read_trim(&pidfile).parse().unwrap();
        for (who, pid) in [("init", rt.pid(&id)), ("exec", exec_pid)] {
            let fds = fds_of(pid);
            let allowed = 3 + preserve;
            let bad: Vec<&String> = fds
                .iter()
                .filter(|f| {
                    let n: i32 = f.split(' ').next().unwrap().parse().unwrap();
                    n >= allowed || (n >= 3 && !f.ends_with(ex))
                })
                .collect();
            assert!(
                bad.is_empty(),
                "--preserve-fds {preserve}: the {who} holds {bad:?} (all: {fds:?})"
            );
            assert_eq!(
                fds.len() as i32,
                allowed,
                "--preserve-fds {preserve}: the {who}'s fds {fds:?}"
            );
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
            assert_eq!(cwd, PathBuf::from("/"), "{who}'s cwd");
        }
        rt.delete_force(&id).assert_ok();
        assert_no_leftovers(&rt, &id, &b);
    }
}

/// The state dir is not reachable from the container: its path does not exist in the
/// container's mount namespace, for the init or an exec'd process, and no fd of the container
/// names it (checked above). A runtime that bind-mounted it, or kept it under the rootfs, fails.
#[test]
fn state_dir_not_reachable_from_container() {
    let Some(rt) = Runtime::new("state_dir_not_reachable_from_container") else {
        return;
    };
    let b = Bundle::new(&["sleep", "1000"]);
    let id = rt.new_id("statedir");
    rt.run_detached(&b, &id).assert_ok();
    let root = rt.root().to_str().unwrap().to_string();
    let st = std::fs::metadata(rt.root()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(st.permissions().mode() & 0o077, 0, "state root mode");
    for p in [root.clone(), format!("{root}/{id}")] {
        let out = rt.cmd(&["exec", &id, "ls", "-d", &p]);
        assert!(!out.success(), "the container reaches {p}: {out}");
    }
    let mounts = std::fs::read_to_string(format!("/proc/{}/mountinfo", rt.pid(&id))).unwrap();
    assert!(
        !mounts.contains(&root),
        "the state dir is mounted in the container: {mounts}"
    );
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}
