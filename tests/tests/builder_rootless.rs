//! brig-build as a plain user (its own user namespace, the user's /etc/subuid range): the
//! same Dockerfile built by root and by [`BUILD_USER`] with SOURCE_DATE_EPOCH gives the same
//! image digest (owners by `COPY --chown`, `RUN chown`, several ids, a whiteout, an opaque
//! directory, a setuid bit; a debootstrap base, its device nodes, `RUN apt-get install`); an
//! id outside the range (COPY --chown, RUN chown or chgrp) is a clear error. The same images
//! again where the steps' root is fuse-overlayfs (BRIG_BUILD_OVERLAY=fuse, and the fallback
//! where the kernel refuses overlayfs: a store on overlayfs), and the errors when neither
//! overlay can be mounted.

use brig_tests::builder::*;
use brig_tests::rootless::{build_user, run_as_build_user, BUILD_USER, SUB_COUNT};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const EPOCH: &str = "SOURCE_DATE_EPOCH=1700000000";

/// A context of the busybox rootfs (with /etc/base and /d/sub/f to remove) and `dockerfile`,
/// in a temporary dir the build user may read, with a home of its own there.
fn context(dockerfile: &str) -> Ctx {
    let c = Ctx::new(dockerfile);
    fs::set_permissions(c.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    busybox_rootfs(&c.ctx().join("rootfs"));
    c.write("rootfs/etc/base", "base\n");
    c.write("rootfs/d/sub/f", "f\n");
    c.write("f", "chowned\n");
    let (uid, gid) = build_user();
    let home = c.path("home");
    fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
    c
}

fn digest(oci: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(oci.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .expect("a manifest digest")
        .to_string()
}

fn build_as_user(c: &Ctx, extra: &[&str]) -> brig_tests::Out {
    let home = c.path("home");
    let args = user_build_args(c, &home.join("oci"), extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_as_build_user(&builder_path(), &home, &home, &[EPOCH], &args)
}

/// brig-build's arguments for a build of `c` into the OCI layout `oci`.
fn user_build_args(c: &Ctx, oci: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["build".into(), "--runtime".into()];
    args.push(binary_path().display().to_string());
    args.push("-o".into());
    args.push(format!("type=oci,dest={},name=t:1", oci.display()));
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(c.ctx().display().to_string());
    args
}

/// brig-build `args` as [`BUILD_USER`] with HOME=`home` and `env`, in a private mount
/// namespace where root first ran the shell commands `setup`.
fn build_as_user_after(setup: &str, home: &Path, env: &[&str], args: &[String]) -> brig_tests::Out {
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", &format!("{setup} && exec \"$@\""), "sh"])
        .args(["runuser", "-u", BUILD_USER, "--", "env"])
        .arg(format!("HOME={}", home.display()))
        .args(env)
        .arg(builder_path())
        .args(args)
        .current_dir(home);
    run(&mut cmd)
}

/// The command lines of the running processes that name `dir` and `what`.
fn processes(dir: &Path, what: &str) -> Vec<String> {
    let me = dir.to_string_lossy().into_owned();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let cmdline = fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (cmdline.contains(what) && cmdline.contains(&me)).then_some(cmdline)
        })
        .collect()
}

/// Fails if a fuse-overlayfs process whose command line names `dir` is still running.
fn no_daemon_left(dir: &Path) {
    let left = processes(dir, "fuse-overlayfs");
    assert!(left.is_empty(), "left running: {left:?}");
}

/// Fails if the store at `store` keeps a work dir of a build.
fn no_work_left(store: &Path) {
    let left: Vec<_> = fs::read_dir(store.join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}/tmp: {left:?}", store.display());
}

/// Root's overlay (lower, upper, work) for `home`, a mount point; the shell command that mounts
/// it there and gives it to [`BUILD_USER`].
fn overlay_home(c: &Ctx, home: &Path) -> String {
    let ov = c.path("ov");
    for d in ["l", "u", "w"] {
        fs::create_dir_all(ov.join(d)).unwrap();
    }
    fs::create_dir_all(home).unwrap();
    format!(
        "mount -t overlay overlay -o lowerdir={0}/l,upperdir={0}/u,workdir={0}/w {1} \
         && chown {BUILD_USER}: {1}",
        ov.display(),
        home.display()
    )
}

/// Builds `c` as root with SOURCE_DATE_EPOCH into `root-oci`, returned.
fn build_as_root(c: &Ctx) -> std::path::PathBuf {
    let root_oci = c.path("root-oci");
    let dest = format!("type=oci,dest={},name=t:1", root_oci.display());
    let out = run(Command::new(builder_path())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg("--store")
        .arg(c.store())
        .args(["build", "--runtime"])
        .arg(binary_path())
        .args(["-o", &dest])
        .arg(c.ctx()));
    out.assert_ok();
    root_oci
}

fn ready_rootless(test: &str) -> bool {
    if !ready(test) {
        return false;
    }
    for tool in ["newuidmap", "runuser", "useradd", "usermod"] {
        if !have(tool) {
            panic!("{test}: {tool} is missing (Debian's uidmap, util-linux, passwd)");
        }
    }
    true
}

#[test]
fn a_plain_users_image_is_roots_image() {
    if !ready_rootless("a_plain_users_image_is_roots_image") {
        return;
    }
    let top = SUB_COUNT; // the highest id the user's namespace maps
    let c = context(&format!(
        "FROM scratch\n\
         COPY rootfs/ /\n\
         COPY --chown=1234:1234 f /f\n\
         RUN chown 2000:2000 /f\n\
         RUN echo 'app:x:3000:3001::/home/app:/bin/sh' >> /etc/passwd \
             && mkdir -p /home/app && chown 3000:3001 /home/app \
             && touch /home/app/a /home/app/b && chown 3000:3001 /home/app/a \
             && chown {top}:{top} /home/app/b\n\
         RUN rm /etc/base && rm -rf /d && mkdir /d && touch /d/new && chmod 4755 /d/new\n\
         USER app\n\
         RUN touch /home/app/mine\n"
    ));
    let root_oci = build_as_root(&c);
    let user = build_as_user(&c, &[]);
    user.assert_ok();
    // The default store of a plain user is under its home.
    assert!(
        c.path("home/.local/share/brig-build/index.json").is_file(),
        "no store under ~/.local/share: {user}"
    );
    let img = Image::open(&c.path("home/oci"), "1");
    let listing = img.layer_listing(-2).join("\n");
    for want in ["d/.wh..wh..opq", "etc/.wh.base", "rwsr-xr-x 0/0"] {
        assert!(listing.contains(want), "no {want} in the layer: {listing}");
    }
    assert!(
        img.layer_listing(-3)
            .join("\n")
            .contains(&format!("{top}/{top}")),
        "the top id of the range is not in the layer"
    );
    assert_eq!(
        digest(&c.path("home/oci")),
        digest(&root_oci),
        "{BUILD_USER}'s image differs from root's"
    );
}

#[test]
fn a_debootstrap_base_with_apt_get_install_is_roots_image() {
    if !ready_rootless("a_debootstrap_base_with_apt_get_install_is_roots_image") {
        return;
    }
    let tarball = debian_tarball(Path::new(env!("CARGO_TARGET_TMPDIR")))
        .unwrap_or_else(|why| panic!("no Debian base: {why}"));
    // What differs run to run (package lists, apt's and dpkg's logs, caches) is removed.
    let c = context(
        "FROM scratch\n\
         ADD debian.tar.xz /\n\
         ENV DEBIAN_FRONTEND=noninteractive\n\
         RUN apt-get update && apt-get install -y --no-install-recommends hello \\\n\
         \x20   && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/* \\\n\
         \x20      /var/cache/ldconfig/aux-cache /var/cache/debconf/*-old\n",
    );
    fs::copy(&tarball, c.ctx().join("debian.tar.xz")).unwrap();
    let root_oci = build_as_root(&c);
    build_as_user(&c, &[]).assert_ok();
    // Again on fuse-overlayfs (dpkg's renames, copy-ups in directories it does not change).
    let home = c.path("home");
    let fuse_store = home.join("store-fuse");
    let args = user_build_args(
        &c,
        &home.join("oci-fuse"),
        &["--store", fuse_store.to_str().unwrap()],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let fuse = run_as_build_user(
        &builder_path(),
        &home,
        &home,
        &[EPOCH, "BRIG_BUILD_OVERLAY=fuse"],
        &args,
    );
    fuse.assert_ok();
    assert!(
        format!("{}{}", fuse.stdout, fuse.stderr)
            .contains("overlay: fuse-overlayfs (BRIG_BUILD_OVERLAY=fuse)"),
        "{fuse}"
    );
    no_work_left(&fuse_store);
    assert_eq!(
        digest(&home.join("oci-fuse")),
        digest(&root_oci),
        "{BUILD_USER}'s image on fuse-overlayfs differs from root's"
    );
    let img = Image::open(&c.path("home/oci"), "1");
    // debootstrap's device nodes, which a user namespace cannot make, are in the layer as
    // they are in the tarball (mode included).
    let base = img.layer_listing(0).join("\n");
    assert!(
        base.lines()
            .any(|l| l.starts_with("crw-rw-rw- 0/0") && l.ends_with("dev/null")),
        "{}",
        &base[..base.len().min(2000)]
    );
    assert!(img
        .layer_listing(-1)
        .iter()
        .any(|l| l.ends_with("usr/bin/hello")));
    assert_eq!(
        digest(&c.path("home/oci")),
        digest(&root_oci),
        "{BUILD_USER}'s image differs from root's"
    );
}

#[test]
fn an_id_outside_the_users_range_is_named() {
    if !ready_rootless("an_id_outside_the_users_range_is_named") {
        return;
    }
    let beyond = SUB_COUNT + 1;
    let c = context(&format!(
        "FROM scratch\nCOPY rootfs/ /\nCOPY --chown={beyond}:0 f /f\n"
    ));
    let out = build_as_user(&c, &[]);
    out.assert_fail();
    assert!(
        out.stderr.contains(&format!("uid {beyond} is outside"))
            && out.stderr.contains(&format!("1-{SUB_COUNT}"))
            && out.stderr.contains("/etc/subuid"),
        "{out}"
    );
}

#[test]
fn a_run_chown_outside_the_users_range_is_named() {
    if !ready_rootless("a_run_chown_outside_the_users_range_is_named") {
        return;
    }
    let beyond = SUB_COUNT + 1;
    for (chown, what) in [
        (
            format!("chown -R {beyond}:0 /f"),
            format!("uid {beyond} is outside"),
        ),
        // By name, from the image's /etc/group.
        (
            format!("echo far:x:{beyond}: >> /etc/group && chgrp far /f"),
            format!("gid {beyond} is outside"),
        ),
    ] {
        let c = context(&format!(
            "FROM scratch\nCOPY rootfs/ /\nCOPY f /f\nRUN {chown}\n"
        ));
        let out = build_as_user(&c, &[]);
        out.assert_fail();
        assert!(
            out.stderr.contains("Dockerfile:4: RUN")
                && out.stderr.contains(&what)
                && out.stderr.contains(&format!("1-{SUB_COUNT}"))
                && out.stderr.contains("/etc/sub"),
            "{out}"
        );
    }
}

#[test]
fn a_user_without_a_subuid_range_is_told_how_to_get_one() {
    if !ready_rootless("a_user_without_a_subuid_range_is_told_how_to_get_one") {
        return;
    }
    // The runtime's rootless user has no range (its tests map only its own id).
    let (uid, _) = brig_tests::rootless::rootless_user();
    let subuid = fs::read_to_string("/etc/subuid").unwrap_or_default();
    let name = brig_tests::rootless::ROOTLESS_USER;
    if subuid
        .lines()
        .any(|l| l.starts_with(&format!("{name}:")) || l.starts_with(&format!("{uid}:")))
    {
        panic!("{name} has a range in /etc/subuid: this test needs a user without one");
    }
    let c = context("FROM scratch\nCOPY f /f\n");
    let home = c.path("home");
    std::os::unix::fs::chown(&home, Some(uid), None).unwrap();
    let o = Command::new("runuser")
        .args(["-u", name, "--", "env"])
        .arg(format!("HOME={}", home.display()))
        .arg(builder_path())
        .arg("build")
        .arg(c.ctx())
        .current_dir(&home)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("/etc/subuid") && err.contains("usermod --add-subuids"),
        "{err}"
    );
    assert!(
        !home.join(".local/share/brig-build").exists(),
        "a refused build made a store"
    );
}

/// Prints the type of the step's root filesystem into the build's log (its layer is empty).
const ROOTFS_TYPE: &str =
    r"RUN sed -n 's|^[0-9]* [0-9]* [^ ]* / / .* - \([^ ]*\) .*|rootfs: \1|p' /proc/self/mountinfo";

/// The same Dockerfile (deletions of lower layers' files, by root and by a USER; a directory
/// deleted and made again; owners in range) built by root, by [`BUILD_USER`] on the kernel's
/// overlay, on fuse-overlayfs (BRIG_BUILD_OVERLAY=fuse) and by default with the store on
/// overlayfs (the kernel refuses, fuse-overlayfs takes over): one image digest. A step prints
/// its root's filesystem type from /proc/self/mountinfo, so the log shows which overlay ran.
#[test]
fn fuse_overlayfs_gives_roots_image() {
    if !ready_rootless("fuse_overlayfs_gives_roots_image") {
        return;
    }
    if !have("fuse-overlayfs") {
        panic!("fuse-overlayfs is missing (Debian's package fuse-overlayfs)");
    }
    let top = SUB_COUNT;
    // Deletions of files of lower layers (root's and the app user's), a directory deleted
    // and made again (opaque) with a new directory in it, a new directory, owners in range.
    let c = context(&format!(
        "FROM scratch\n\
         COPY rootfs/ /\n\
         COPY --chown=1234:1234 f /f\n\
         RUN chown 2000:2000 /f\n\
         {ROOTFS_TYPE}\n\
         RUN echo 'app:x:3000:3001::/home/app:/bin/sh' >> /etc/passwd \
             && mkdir -p /home/app && chown 3000:3001 /home/app \
             && touch /home/app/a /home/app/b && chown 3000:3001 /home/app/a \
             && chown {top}:{top} /home/app/b\n\
         RUN rm /f /etc/base /home/app/b && rm -rf /d && mkdir -p /d/sub && touch /d/new \
             && chmod 4755 /d/new && mkdir /n && chown 3000:3001 /n\n\
         USER app\n\
         RUN rm /home/app/a && touch /home/app/mine\n"
    ));
    let root_oci = build_as_root(&c);
    let home = c.path("home");
    let mut logs = Vec::new();
    for (name, overlay) in [("kernel", "kernel"), ("fuse", "fuse")] {
        let store = home.join(format!("store-{name}"));
        let args = user_build_args(
            &c,
            &home.join(format!("oci-{name}")),
            &["--progress", "plain", "--store", store.to_str().unwrap()],
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env = format!("BRIG_BUILD_OVERLAY={overlay}");
        let out = run_as_build_user(&builder_path(), &home, &home, &[EPOCH, &env], &args);
        out.assert_ok();
        no_work_left(&store);
        logs.push(format!("{}{}", out.stdout, out.stderr));
    }
    // The default (auto) with the store on overlayfs, which the kernel refuses as an upper
    // dir (as in a container whose root is overlayfs): fuse-overlayfs, and where the store's
    // filesystem refuses whiteout devices its `.wh.` files.
    let ohome = c.path("ohome");
    let setup = overlay_home(&c, &ohome);
    let args = user_build_args(&c, &ohome.join("oci"), &["--progress", "plain"]);
    let auto = build_as_user_after(&setup, &ohome, &[EPOCH], &args);
    auto.assert_ok();
    let auto_store = c.path("ov/u/.local/share/brig-build");
    no_work_left(&auto_store);
    logs.push(format!("{}{}", auto.stdout, auto.stderr));
    no_daemon_left(c.dir.path());

    assert!(logs[0].contains("rootfs: overlay\n"), "{}", logs[0]);
    assert!(
        logs[1].contains("rootfs: fuse.fuse-overlayfs")
            && logs[1].contains("overlay: fuse-overlayfs (BRIG_BUILD_OVERLAY=fuse)"),
        "{}",
        logs[1]
    );
    assert!(
        logs[2].contains("rootfs: fuse.fuse-overlayfs")
            && logs[2].contains("the kernel's overlayfs refused it"),
        "{}",
        logs[2]
    );
    let img = Image::open(&home.join("oci-fuse"), "1");
    let listing = img.layer_listing(-2).join("\n");
    for want in [
        " .wh.f",
        "etc/.wh.base",
        "d/.wh..wh..opq",
        "rwsr-xr-x 0/0",
        " n/",
    ] {
        assert!(listing.contains(want), "no {want} in the layer: {listing}");
    }
    for not in ["d/sub/.wh..wh..opq", "n/.wh..wh..opq", "d/.wh.sub"] {
        assert!(!listing.contains(not), "{not} in the layer: {listing}");
    }
    let want = digest(&root_oci);
    // The overlay's files are in its upper dir, here.
    for oci in [
        home.join("oci-kernel"),
        home.join("oci-fuse"),
        c.path("ov/u/oci"),
    ] {
        assert_eq!(
            digest(&oci),
            want,
            "{BUILD_USER}'s image in {} differs from root's",
            oci.display()
        );
    }
}

/// One build of [`overlay_failures_are_named_and_leave_nothing`].
struct Failing<'a> {
    /// Shell commands root runs first, in the build's private mount namespace.
    setup: String,
    home: &'a Path,
    /// The store, as seen from outside that namespace.
    store: PathBuf,
    env: [&'a str; 2],
    build_args: &'a [&'a str],
    /// What the error says.
    want: &'a [&'a str],
}

/// A step failing on fuse-overlayfs, fuse-overlayfs asked for but missing or without a usable
/// /dev/fuse, the kernel refusing overlayfs (a store on overlayfs) with fuse-overlayfs missing
/// or forbidden (BRIG_BUILD_OVERLAY=kernel): each a non-zero exit whose error names what
/// failed and what to change, with no daemon, work dir or layer left.
#[test]
fn overlay_failures_are_named_and_leave_nothing() {
    if !ready_rootless("overlay_failures_are_named_and_leave_nothing") {
        return;
    }
    let c = context("FROM scratch\nCOPY rootfs/ /\nARG STEP=true\nRUN $STEP\n");
    let empty = c.path("empty-path");
    fs::create_dir(&empty).unwrap();
    let no_fuse = format!("PATH={}", empty.display());
    let (home, ohome) = (c.path("home"), c.path("ohome"));
    let fuse = "BRIG_BUILD_OVERLAY=fuse";
    let cases = [
        Failing {
            setup: "true".into(),
            home: &home,
            store: home.join("store"),
            env: [fuse, "PATH=/usr/bin:/bin"],
            build_args: &["--build-arg", "STEP=false"],
            want: &["Dockerfile:4: RUN", "returned a non-zero code: 1"],
        },
        Failing {
            setup: "true".into(),
            home: &home,
            store: home.join("store"),
            env: [fuse, &no_fuse],
            build_args: &[],
            want: &[
                "Dockerfile:2: mount fuse-overlayfs",
                "BRIG_BUILD_OVERLAY=fuse",
                "fuse-overlayfs not found in PATH",
                "Debian's package fuse-overlayfs",
                "unset BRIG_BUILD_OVERLAY",
            ],
        },
        Failing {
            setup: "mount --bind /dev/null /dev/fuse".into(),
            home: &home,
            store: home.join("store"),
            env: [fuse, "PATH=/usr/bin:/bin"],
            build_args: &[],
            want: &[
                "Dockerfile:2: mount fuse-overlayfs",
                "/usr/bin/fuse-overlayfs -o",
                "--device /dev/fuse",
            ],
        },
        Failing {
            setup: overlay_home(&c, &ohome),
            home: &ohome,
            store: c.path("ov/u/store"),
            env: ["BRIG_BUILD_OVERLAY=auto", &no_fuse],
            build_args: &[],
            want: &[
                "Dockerfile:2: no overlay could be mounted",
                "the kernel's overlayfs refused it",
                "Invalid argument",
                "fuse-overlayfs not found in PATH",
                "Debian's package fuse-overlayfs",
                "not overlayfs",
            ],
        },
        // The kernel refuses, and the setting forbids the fallback.
        Failing {
            setup: overlay_home(&c, &ohome),
            home: &ohome,
            store: c.path("ov/u/store"),
            env: ["BRIG_BUILD_OVERLAY=kernel", "PATH=/usr/bin:/bin"],
            build_args: &[],
            want: &[
                "Dockerfile:2: mount overlay on",
                "Invalid argument",
                "BRIG_BUILD_OVERLAY=kernel: unset it to fall back to fuse-overlayfs",
            ],
        },
    ];
    for f in cases {
        let store = f.home.join("store");
        let mut extra = vec!["--store", store.to_str().unwrap()];
        extra.extend_from_slice(f.build_args);
        let args = user_build_args(&c, &f.home.join("oci"), &extra);
        let env = [EPOCH, f.env[0], f.env[1]];
        let out = build_as_user_after(&f.setup, f.home, &env, &args);
        out.assert_fail();
        for w in f.want {
            assert!(out.stderr.contains(w), "no {w:?} in: {out}");
        }
        assert!(
            f.store.join("index.json").is_file(),
            "no store at {}",
            f.store.display()
        );
        no_work_left(&f.store);
        no_daemon_left(c.dir.path());
        let layers: Vec<_> = fs::read_dir(f.store.join("layers"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(layers.is_empty(), "layers left: {layers:?}");
        assert!(!f.home.join("oci").exists(), "an output was written: {out}");
    }
}

/// Ctrl-C in a terminal (SIGINT to the build's process group) while a RUN runs on
/// fuse-overlayfs: the daemon, in a process group of its own, is killed with brig-build, so
/// none is left running (its mount went with the build's namespace).
#[test]
fn ctrl_c_leaves_no_fuse_overlayfs_running() {
    if !ready_rootless("ctrl_c_leaves_no_fuse_overlayfs_running") {
        return;
    }
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};
    let c = context("FROM scratch\nCOPY rootfs/ /\nRUN sleep 3\n");
    let home = c.path("home");
    let store = home.join("store");
    let args = user_build_args(&c, &home.join("oci"), &["--store", store.to_str().unwrap()]);
    let mut build = Command::new("runuser")
        .args(["-u", BUILD_USER, "--", "env"])
        .arg(format!("HOME={}", home.display()))
        .args([EPOCH, "BRIG_BUILD_OVERLAY=fuse"])
        .arg(builder_path())
        .args(&args)
        .current_dir(&home)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let wait_for = |what: &str, there: bool| {
        let start = Instant::now();
        while processes(c.dir.path(), what).is_empty() == there {
            if start.elapsed() > Duration::from_secs(60) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    };
    // The RUN's runtime names the store; its step runs on the daemon's mount.
    let running = wait_for("run --bundle", true);
    std::thread::sleep(Duration::from_millis(300));
    let daemons = processes(c.dir.path(), "fuse-overlayfs");
    // SAFETY: a signal to the process group of our child.
    unsafe { libc::kill(-(build.id() as i32), libc::SIGINT) };
    let st = build.wait().unwrap();
    let gone = wait_for("fuse-overlayfs", false);
    // The step's runtime ends with its `sleep` (as it does on the kernel's overlay).
    wait_for("run --bundle", false);
    assert!(running, "the RUN never ran");
    assert!(
        !daemons.is_empty(),
        "no fuse-overlayfs served the RUN (BRIG_BUILD_OVERLAY=fuse)"
    );
    assert!(!st.success(), "the interrupted build succeeded");
    assert!(
        gone,
        "left running: {:?}",
        processes(c.dir.path(), "fuse-overlayfs")
    );
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(c.dir.path().to_str().unwrap()), "{mounts}");
}

/// A base image whose layers delete (a file, a directory made again), pulled into a store on
/// overlayfs, which refuses whiteout devices: its layers keep fuse-overlayfs' `.wh.` files,
/// which fuse-overlayfs (the kernel refuses to stack there) reads; a RUN on it deletes again,
/// and the image is the one a plain store gives.
#[test]
fn a_base_with_whiteouts_pulled_into_a_store_on_overlayfs() {
    if !ready_rootless("a_base_with_whiteouts_pulled_into_a_store_on_overlayfs") {
        return;
    }
    let Some(reg) = brig_tests::registry::Registry::start(
        "a_base_with_whiteouts_pulled_into_a_store_on_overlayfs",
        "",
    ) else {
        return;
    };
    let base = context(
        "FROM scratch\nCOPY rootfs/ /\nRUN rm /etc/base && rm -rf /d && mkdir /d \
                        && touch /d/new\n",
    );
    let name = format!("{}/wh:1", reg.host);
    run(Command::new(builder_path())
        .arg("--store")
        .arg(base.store())
        .args(["--insecure-registry", &reg.host, "build", "--runtime"])
        .arg(binary_path())
        .args(["-o", &format!("type=registry,name={name}")])
        .arg(base.ctx()))
    .assert_ok();
    let c = context(&format!(
        "FROM {name}\nRUN ls /d /etc > /listing && rm /d/new\n"
    ));
    let (home, ohome) = (c.path("home"), c.path("ohome"));
    let reg_arg = ["--insecure-registry", reg.host.as_str()];
    let plain = user_build_args(&c, &home.join("oci"), &reg_arg);
    let plain: Vec<&str> = plain.iter().map(String::as_str).collect();
    run_as_build_user(&builder_path(), &home, &home, &[EPOCH], &plain).assert_ok();
    let setup = overlay_home(&c, &ohome);
    let args = user_build_args(&c, &ohome.join("oci"), &reg_arg);
    let out = build_as_user_after(&setup, &ohome, &[EPOCH], &args);
    out.assert_ok();
    let store = c.path("ov/u/.local/share/brig-build");
    let kept = Command::new("find")
        .arg(store.join("layers"))
        .args(["-name", ".wh.base", "-type", "f"])
        .output()
        .unwrap();
    assert!(
        !kept.stdout.is_empty(),
        "no .wh.base file in the store's layers: {out}"
    );
    no_work_left(&store);
    no_daemon_left(c.dir.path());
    assert_eq!(digest(&c.path("ov/u/oci")), digest(&home.join("oci")));
}
