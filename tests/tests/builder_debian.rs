//! brig-build on a real distribution: a Debian base made by debootstrap (minbase), added to
//! `FROM scratch` as a compressed tarball the way Debian's own docker images are made, then
//! `RUN apt-get update && apt-get install` with the default network, and the result run by
//! brig. Also: ADD extracts a tar in every compression docker recognises (gzip, bzip2, xz,
//! zstd), by content and not by name.
//!
//! The debootstrap rootfs is the conformance suite's image when `make conformance` made it
//! already (conformance/work/images/debian-amd64.tar.xz), else made here once per target dir.

use brig_tests::builder::*;
use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A debootstrap minbase rootfs of the host's Debian release as a .tar.xz.
fn debian_tarball() -> Result<PathBuf, String> {
    let conformance =
        brig_tests::workspace_dir().join("conformance/work/images/debian-amd64.tar.xz");
    if conformance.is_file() {
        return Ok(conformance);
    }
    let cached = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian-minbase.tar.xz");
    if cached.is_file() {
        return Ok(cached);
    }
    if !have("debootstrap") {
        return Err("debootstrap is not installed (make deps installs it)".into());
    }
    let mirror = fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
        .ok()
        .and_then(|s| {
            s.lines()
                .filter_map(|l| l.strip_prefix("URIs:"))
                .map(str::trim)
                .find(|u| !u.contains("security"))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "http://deb.debian.org/debian".into());
    let codename = fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME=").map(str::to_string))
        .unwrap_or_else(|| "bookworm".into());
    let tmp = tempfile::Builder::new()
        .prefix("debian-minbase-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let rootfs = tmp.path().join("rootfs");
    let out = run(Command::new("debootstrap")
        .args(["--variant=minbase", &codename])
        .arg(&rootfs)
        .arg(&mirror));
    if !out.success() {
        return Err(format!("debootstrap failed: {out}"));
    }
    let part = tmp.path().join("out.tar.xz");
    let out = run(Command::new("sh").arg("-c").arg(format!(
        "tar --numeric-owner -C '{}' -cf - . | xz -T0 > '{}'",
        rootfs.display(),
        part.display()
    )));
    out.assert_ok();
    fs::rename(&part, &cached).unwrap();
    Ok(cached)
}

#[test]
fn debootstrap_base_runs_apt_get_install() {
    if !ready("debootstrap_base_runs_apt_get_install") {
        return;
    }
    let tarball = match debian_tarball() {
        Ok(t) => t,
        Err(why) => panic!("no Debian base: {why}"),
    };
    let c = Ctx::new(
        "FROM scratch\n\
         ADD debian.tar.xz /\n\
         ENV DEBIAN_FRONTEND=noninteractive\n\
         RUN apt-get update && apt-get install -y --no-install-recommends hello \\\n\
         \x20   && rm -rf /var/lib/apt/lists/*\n\
         CMD [\"hello\"]\n",
    );
    fs::copy(&tarball, c.ctx().join("debian.tar.xz")).unwrap();
    let img = c.build_oci(&[]);
    assert_eq!(img.layers(), 2, "{}", img.manifest);
    let listing = img.layer_listing(-1).join("\n");
    assert!(
        listing.contains("usr/bin/hello"),
        "hello not installed: {listing}"
    );
    assert!(
        img.layer_listing(0)
            .iter()
            .any(|l| l.ends_with("usr/bin/apt-get")),
        "the debootstrap tree is not the first layer"
    );

    // Run it with brig: unpack with umoci (a peer's reading of our layout), then brig run.
    let bundle = c.path("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:1", img.dir.display()))
        .arg(&bundle))
    .assert_ok();
    let cfg_path = bundle.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&fs::read(&cfg_path).unwrap()).unwrap();
    assert_eq!(
        cfg["process"]["args"],
        json!(["hello"]),
        "CMD not carried: {cfg}"
    );
    cfg["process"]["terminal"] = json!(false);
    fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let root = c.path("brig-root");
    let id = format!("deb-{}", std::process::id());
    let out = run(Command::new(binary_path())
        .arg("--root")
        .arg(&root)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id));
    let _ = run(Command::new(binary_path())
        .arg("--root")
        .arg(&root)
        .args(["delete", "-f", &id]));
    out.assert_ok();
    assert_eq!(out.stdout.trim(), "Hello, world!", "{out}");
}

#[test]
fn add_extracts_gzip_bzip2_xz_and_zstd_by_content() {
    if !ready("add_extracts_gzip_bzip2_xz_and_zstd_by_content") {
        return;
    }
    let c = Ctx::new("");
    let tree = c.path("tree");
    fs::create_dir_all(tree.join("d")).unwrap();
    fs::write(tree.join("d/f"), "packed\n").unwrap();
    // Names that hide the format: the content decides, as in docker.
    let formats = [
        ("plain.bin", "cat"),
        ("gz.bin", "gzip -c"),
        ("bz.bin", "bzip2 -c"),
        ("xz.bin", "xz -c"),
        ("zst.bin", "zstd -q -c"),
    ];
    let mut dockerfile = from_base();
    dockerfile.push('\n');
    for (name, filter) in formats {
        run(Command::new("sh").arg("-c").arg(format!(
            "tar -C '{}' -cf - d | {filter} > '{}'",
            tree.display(),
            c.ctx().join(name).display()
        )))
        .assert_ok();
        dockerfile.push_str(&format!("ADD {name} /{name}.d/\n"));
    }
    // Not an archive: copied as is.
    fs::write(c.ctx().join("not-a-tar.xz"), "text, not xz\n").unwrap();
    dockerfile.push_str("ADD not-a-tar.xz /raw/\n");
    c.write("Dockerfile", &dockerfile);
    let img = c.build_oci(&[]);
    for (i, (name, _)) in formats.iter().enumerate() {
        let layer = 1 + i as isize;
        assert_eq!(
            img.layer_file(layer, &format!("{name}.d/d/f")),
            "packed\n",
            "{name} not extracted"
        );
    }
    assert_eq!(img.layer_file(-1, "raw/not-a-tar.xz"), "text, not xz\n");
}
