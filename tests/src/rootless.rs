//! The runtime run by an unprivileged user.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::bundle::busybox_rootfs;
use crate::command::{wait_child, Out, CMD_TIMEOUT};

/// The unprivileged user that rootless tests run the runtime as.
pub const ROOTLESS_USER: &str = "brigrootless";

/// [`ROOTLESS_USER`]'s uid and gid, creating the user (a system user without home) when missing.
pub fn rootless_user() -> (u32, u32) {
    system_user(ROOTLESS_USER)
}

/// `name`'s uid and gid, creating it (a system user without home, no login shell) when missing.
fn system_user(name: &str) -> (u32, u32) {
    let id = |flag: &str| Command::new("id").args([flag, name]).output().unwrap();
    if !id("-u").status.success() {
        let st = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ])
            .status()
            .unwrap();
        assert!(st.success(), "useradd {name}");
    }
    let num = |flag: &str| {
        String::from_utf8(id(flag).stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (num("-u"), num("-g"))
}

/// A bundle dir (busybox rootfs, no config yet) and an XDG_RUNTIME_DIR, both owned by
/// [`ROOTLESS_USER`], in a temporary dir others may enter. Returns (temp dir, bundle, xdg).
pub fn rootless_bundle() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (uid, gid) = rootless_user();
    let top = tempfile::tempdir().unwrap();
    fs::set_permissions(top.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let bundle = top.path().join("bundle");
    fs::create_dir(&bundle).unwrap();
    busybox_rootfs(&bundle.join("rootfs"));
    let xdg = top.path().join("xdg");
    fs::create_dir(&xdg).unwrap();
    fs::set_permissions(&xdg, fs::Permissions::from_mode(0o700)).unwrap();
    let st = Command::new("chown")
        .args(["-R", &format!("{uid}:{gid}")])
        .arg(&bundle)
        .arg(&xdg)
        .status()
        .unwrap();
    assert!(st.success());
    (top, bundle, xdg)
}

/// `BIN ARGS` as [`ROOTLESS_USER`] (runuser) in `dir`, with XDG_RUNTIME_DIR=`xdg`, stdin
/// /dev/null and output to files (a detached container keeps its stdio open).
pub fn run_as_rootless_user(bin: &Path, xdg: &Path, dir: &Path, args: &[&str]) -> Out {
    let out_f = tempfile::NamedTempFile::new().unwrap();
    let err_f = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new("runuser")
        .args(["-u", ROOTLESS_USER, "--", "env"])
        .arg(format!("XDG_RUNTIME_DIR={}", xdg.display()))
        .arg(bin)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out_f.reopen().unwrap())
        .stderr(err_f.reopen().unwrap())
        .spawn()
        .unwrap();
    let st = wait_child(child, CMD_TIMEOUT).expect("the runtime as the rootless user timed out");
    Out {
        code: st.code().unwrap_or(-1),
        stdout: fs::read_to_string(out_f.path()).unwrap_or_default(),
        stderr: fs::read_to_string(err_f.path()).unwrap_or_default(),
        cmdline: format!(
            "runuser -u {ROOTLESS_USER} -- {} {}",
            bin.display(),
            args.join(" ")
        ),
    }
}

/// The plain user brig-build's rootless tests build as.
pub const BUILD_USER: &str = "brigbuild";

/// The ids [`BUILD_USER`]'s range in /etc/subuid and /etc/subgid gives: its namespace maps
/// 1..=SUB_COUNT to them.
pub const SUB_COUNT: u32 = 65536;

/// [`BUILD_USER`]'s uid and gid: a system user made when missing, with a range of
/// [`SUB_COUNT`] ids in /etc/subuid and /etc/subgid added when it has none.
pub fn build_user() -> (u32, u32) {
    let ids = system_user(BUILD_USER);
    for (file, flag) in [
        ("/etc/subuid", "--add-subuids"),
        ("/etc/subgid", "--add-subgids"),
    ] {
        let text = fs::read_to_string(file).unwrap_or_default();
        if !text
            .lines()
            .any(|l| l.starts_with(&format!("{BUILD_USER}:")))
        {
            let range = format!("400000-{}", 400000 + SUB_COUNT - 1);
            let st = Command::new("usermod")
                .args([flag, &range, BUILD_USER])
                .status()
                .unwrap();
            assert!(st.success(), "usermod {flag} {range} {BUILD_USER}");
        }
    }
    ids
}

/// `BIN ARGS` as [`BUILD_USER`] (runuser) in `dir` with HOME=`home` and `env`.
pub fn run_as_build_user(bin: &Path, home: &Path, dir: &Path, env: &[&str], args: &[&str]) -> Out {
    let o = Command::new("runuser")
        .args(["-u", BUILD_USER, "--", "env"])
        .arg(format!("HOME={}", home.display()))
        .args(env)
        .arg(bin)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        cmdline: format!(
            "runuser -u {BUILD_USER} -- {} {}",
            bin.display(),
            args.join(" ")
        ),
    }
}
