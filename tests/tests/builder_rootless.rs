//! brig-build as a plain user (its own user namespace, the user's /etc/subuid range): the
//! same Dockerfile built by root and by [`BUILD_USER`] with SOURCE_DATE_EPOCH gives the same
//! image digest (owners by `COPY --chown`, `RUN chown`, several ids, a whiteout, an opaque
//! directory, a setuid bit; a debootstrap base, its device nodes, `RUN apt-get install`); an
//! id outside the range (COPY --chown, RUN chown or chgrp) is a clear error.

use brig_tests::builder::*;
use brig_tests::rootless::{build_user, run_as_build_user, BUILD_USER, SUB_COUNT};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
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
    let dest = format!("type=oci,dest={},name=t:1", home.join("oci").display());
    let mut args = vec!["build", "--runtime"];
    let rt = binary_path();
    args.push(rt.to_str().unwrap());
    args.extend_from_slice(&["-o", &dest]);
    args.extend_from_slice(extra);
    let ctx = c.ctx();
    args.push(ctx.to_str().unwrap());
    run_as_build_user(&builder_path(), &home, &home, &[EPOCH], &args)
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
