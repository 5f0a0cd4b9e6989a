//! What the host shows of a container: its cgroups, its processes, [`assert_no_leftovers`] (state dir, cgroups, mounts, processes), and polling.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::bundle::Bundle;
use crate::runtime::Runtime;

/// This process's cgroup path per v1 controller (and "" for the v2 line), from /proc/self/cgroup.
fn own_cgroups() -> Vec<(String, String)> {
    fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _ = it.next()?;
            let ctrls = it.next()?.to_string();
            let path = it.next()?.to_string();
            Some((ctrls, path))
        })
        .collect()
}

/// The cgroup directories a container with this id / cgroupsPath could have been put in:
/// `/sys/fs/cgroup/<ctrl>/<id>`, `/sys/fs/cgroup/<ctrl>/<our cgroup>/<id>`, and the same for
/// cgroupsPath (absolute: under the mount; relative: also under our own cgroup).
pub fn candidate_cgroup_dirs(id: &str, cgroups_path: Option<&str>) -> Vec<PathBuf> {
    let own = own_cgroups();
    let mut names = Vec::new();
    if !id.is_empty() {
        names.push(id.to_string());
    }
    if let Some(p) = cgroups_path {
        if !p.is_empty() {
            // "slice:prefix:name" (systemd driver) ends with the name
            let n = if p.contains(':') {
                p.rsplit(':').next().unwrap()
            } else {
                p.trim_start_matches('/')
            };
            if !n.is_empty() {
                names.push(n.to_string());
            }
        }
    }
    let mut dirs = Vec::new();
    let Ok(rd) = fs::read_dir("/sys/fs/cgroup") else {
        return dirs;
    };
    for e in rd.flatten() {
        let mount = e.path();
        if !mount.is_dir() {
            continue;
        }
        let ctrl = e.file_name().to_string_lossy().into_owned();
        let mut parents = vec![mount.clone()];
        for (ctrls, path) in &own {
            let matches = if ctrl == "unified" {
                ctrls.is_empty()
            } else {
                ctrls
                    .split(',')
                    .any(|c| c == ctrl || c == format!("name={ctrl}"))
            };
            if matches && path != "/" {
                parents.push(mount.join(path.trim_start_matches('/')));
            }
        }
        // cgroup v2 mounted directly at /sys/fs/cgroup
        if ctrl.starts_with("cgroup.") {
            continue;
        }
        for p in &parents {
            for n in &names {
                dirs.push(p.join(n));
            }
        }
    }
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        for n in &names {
            dirs.push(Path::new("/sys/fs/cgroup").join(n));
        }
    }
    dirs
}

/// Processes whose cwd or root is inside `dir`: the link target starts with `dir`, or (for
/// processes in another mount namespace, whose links cannot be resolved to a path from here)
/// the directory it points at is `dir` itself or `dir/rootfs` (same device and inode).
pub fn processes_in(dir: &Path) -> Vec<(i32, PathBuf)> {
    use std::os::unix::fs::MetadataExt;
    let mut found = Vec::new();
    let ids: Vec<(u64, u64)> = [dir.to_path_buf(), dir.join("rootfs")]
        .iter()
        .filter_map(|p| fs::metadata(p).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    let Ok(rd) = fs::read_dir("/proc") else {
        return found;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        for what in ["cwd", "root"] {
            let link = e.path().join(what);
            let Ok(target) = fs::read_link(&link) else {
                continue;
            };
            let same_inode = fs::metadata(&link)
                .map(|m| ids.contains(&(m.dev(), m.ino())))
                .unwrap_or(false);
            if target.starts_with(dir) || same_inode {
                found.push((pid, link));
                break;
            }
        }
    }
    found
}

/// Asserts the container `id` left nothing behind: no state dir `ROOT/ID`, no cgroup dir for it,
/// no host mount mentioning the bundle dir, no process with cwd/root in the bundle.
#[track_caller]
pub fn assert_no_leftovers(rt: &Runtime, id: &str, bundle: &Bundle) {
    assert_no_leftovers_at(
        rt.root(),
        id,
        bundle.path(),
        bundle.cgroups_path().as_deref(),
    );
}

/// [`assert_no_leftovers`] with explicit paths.
#[track_caller]
pub fn assert_no_leftovers_at(
    root: &Path,
    id: &str,
    bundle_dir: &Path,
    cgroups_path: Option<&str>,
) {
    let mut problems = Vec::new();
    // Processes can take a moment to be reaped after a kill; give them a short grace period.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        problems.clear();
        if !id.is_empty() && !id.contains('/') && id != ".." && id != "." {
            let st = root.join(id);
            if st.exists() {
                problems.push(format!("state dir {} still exists", st.display()));
            }
        }
        for d in candidate_cgroup_dirs(id, cgroups_path) {
            if d.is_dir() {
                problems.push(format!("cgroup dir {} still exists", d.display()));
            }
        }
        let bundle_s = bundle_dir.to_string_lossy();
        for l in fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
        {
            if l.contains(&*bundle_s) {
                problems.push(format!("mount left: {l}"));
            }
        }
        for (pid, t) in processes_in(bundle_dir) {
            problems.push(format!(
                "process {pid}: {} is inside the bundle",
                t.display()
            ));
        }
        if problems.is_empty() || Instant::now() > deadline {
            break;
        }
        sleep(Duration::from_millis(50));
    }
    assert!(
        problems.is_empty(),
        "container {id} left things behind:\n  {}",
        problems.join("\n  ")
    );
}

/// Polls `f` every 10ms until it returns true; false after `timeout`.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        sleep(Duration::from_millis(10));
    }
    f()
}

/// True if the process exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            // state is the field after the ")" that closes comm
            let st = s
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start())
                .unwrap_or("");
            !st.starts_with('Z') && !st.starts_with('X')
        }
        Err(_) => false,
    }
}

/// Sends a signal to a host pid.
pub fn kill_pid(pid: i32, sig: i32) {
    // SAFETY: plain kill(2).
    unsafe {
        libc::kill(pid, sig);
    }
}

/// A field of a /proc/PID/status-like text ("CapEff" -> "0000000020000420").
pub fn status_field<'a>(status: &'a str, field: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == field).then(|| v.trim())
    })
}

/// Reads a file to a trimmed string, panicking with the path on error.
#[track_caller]
pub fn read_trim(p: impl AsRef<Path>) -> String {
    let p = p.as_ref();
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// Whether this host enforces AppArmor profiles (runc's test: the securityfs directory and
/// the module's `enabled` parameter).
pub fn apparmor_enabled() -> bool {
    Path::new("/sys/kernel/security/apparmor").exists()
        && fs::read("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|b| b.first() == Some(&b'Y'))
}

/// Whether `lsm` ("apparmor", "selinux") is the LSM of the test guest we run in (tests/vm sets
/// BRIG_VM_LSM): a test of that LSM must then run, not skip.
pub fn guest_lsm_is(lsm: &str) -> bool {
    std::env::var("BRIG_VM_LSM").is_ok_and(|v| v == lsm)
}

/// Loads (or replaces) AppArmor profile `name` with the host's apparmor_parser: everything
/// allowed but reading or writing `deny` (a path; none: nothing denied). No cache is written
/// (the guest's /etc and /var/cache are read-only).
pub fn load_apparmor_profile(name: &str, deny: Option<&str>) {
    let deny = deny.map_or(String::new(), |p| format!("  deny {p} rwklx,\n"));
    let text = format!(
        "profile {name} flags=(attach_disconnected,mediate_deleted) {{\n  file,\n  capability,\n  \
         network,\n  signal,\n  ptrace,\n  unix,\n  mount,\n  umount,\n  pivot_root,\n{deny}}}\n"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join(name);
    fs::write(&f, text).expect("write the profile");
    let out = crate::command::run_timeout(
        std::process::Command::new("apparmor_parser")
            .args(["-r", "-K"])
            .arg(&f),
        Duration::from_secs(120),
    );
    out.assert_ok();
}

/// Removes AppArmor profile `name` from the kernel (best effort).
pub fn unload_apparmor_profile(name: &str) {
    let _ = fs::write("/sys/kernel/security/apparmor/.remove", name);
}
