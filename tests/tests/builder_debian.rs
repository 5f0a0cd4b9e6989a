//! brig-build on a real distribution: a Debian base made by debootstrap (minbase), added to
//! `FROM scratch` as a compressed tarball the way Debian's own docker images are made, then
//! `RUN apt-get update && apt-get install` with the default network, and the result run by
//! brig. Also: ADD extracts a tar in every compression docker recognises (gzip, bzip2, xz,
//! zstd), by content and not by name.
//!
//! The debootstrap rootfs is the conformance suite's image when `make conformance` made it
//! already (conformance/work/images/debian-amd64.tar.xz), else made here once per target dir.

use brig_tests::builder::*;
use brig_tests::{registry::Registry, Containerd};
use serde_json::json;
use std::fs;
use std::path::Path;
use std::process::Command;

#[test]
fn debootstrap_base_runs_apt_get_install() {
    if !ready("debootstrap_base_runs_apt_get_install") {
        return;
    }
    let tarball = match debian_tarball(Path::new(env!("CARGO_TARGET_TMPDIR"))) {
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

/// `--sbom` and `--provenance=mode=max` (issue 16): a build FROM a debootstrap base gives an
/// index of the image and an attestation manifest, as BuildKit lays them out, in an OCI layout
/// and in a registry. The SBOM lists the base's dpkg packages with their package URLs and the
/// base image with its digest; the provenance names the base's digest, the build argument and
/// the Dockerfile. Peers still take the image: skopeo picks the image out of the index, and
/// containerd pulls the pushed index and runs it with brig's shim.
#[test]
fn sbom_and_provenance_beside_the_image() {
    if !ready("sbom_and_provenance_beside_the_image") {
        return;
    }
    let Some(reg) = Registry::start("sbom_and_provenance_beside_the_image", "") else {
        return;
    };
    let h = reg.host.as_str();
    let tarball = debian_tarball(Path::new(env!("CARGO_TARGET_TMPDIR")))
        .unwrap_or_else(|why| panic!("no Debian base: {why}"));
    let c = Ctx::new("FROM scratch\nADD debian.tar.xz /\n");
    fs::copy(&tarball, c.ctx().join("debian.tar.xz")).unwrap();
    c.build(&["-q", "-t", "localhost/debian:base"]).assert_ok();
    let store_idx: serde_json::Value =
        serde_json::from_slice(&fs::read(c.store().join("index.json")).unwrap()).unwrap();
    let base_digest = store_idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "localhost/debian:base")
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .expect("the base in the store");
    fs::remove_file(c.ctx().join("debian.tar.xz")).unwrap();
    c.write(
        "Dockerfile",
        "FROM localhost/debian:base\nARG GREETING=hi\nRUN echo $GREETING > /greeting\nCMD [\"cat\", \"/greeting\"]\n",
    );
    let oci = c.path("oci");
    let pushed = format!("{h}/attested:1");
    let out = run(Command::new(builder_path())
        .arg("--store")
        .arg(c.store())
        .args(["--insecure-registry", h, "build", "--runtime"])
        .arg(binary_path())
        .args([
            "--sbom",
            "--provenance=mode=max",
            "--build-arg",
            "GREETING=hello",
        ])
        .args([
            "-o",
            &format!("type=oci,dest={},name=localhost/attested:1", oci.display()),
        ])
        .args(["-o", &format!("type=registry,name={pushed}")])
        .arg(c.ctx()));
    out.assert_ok();

    let blob = |d: &str| -> serde_json::Value {
        serde_json::from_slice(&fs::read(oci.join("blobs/sha256").join(&d[7..])).unwrap()).unwrap()
    };
    let layout: serde_json::Value =
        serde_json::from_slice(&fs::read(oci.join("index.json")).unwrap()).unwrap();
    let top = &layout["manifests"][0];
    assert_eq!(
        top["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{layout}"
    );
    let index = blob(top["digest"].as_str().unwrap());
    let ms = index["manifests"].as_array().unwrap();
    assert_eq!(ms.len(), 2, "{index}");
    let image = &ms[0];
    assert_eq!(image["platform"]["os"], "linux");
    let image_digest = image["digest"].as_str().unwrap();
    let att = &ms[1];
    assert_eq!(
        att["platform"],
        json!({"architecture": "unknown", "os": "unknown"})
    );
    assert_eq!(
        att["annotations"]["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(
        att["annotations"]["vnd.docker.reference.digest"],
        image_digest
    );
    let att_manifest = blob(att["digest"].as_str().unwrap());
    let statement = |ptype: &str| -> serde_json::Value {
        let l = att_manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["annotations"]["in-toto.io/predicate-type"] == ptype)
            .unwrap_or_else(|| panic!("no {ptype} statement in {att_manifest}"));
        assert_eq!(l["mediaType"], "application/vnd.in-toto+json");
        let s = blob(l["digest"].as_str().unwrap());
        assert_eq!(s["_type"], "https://in-toto.io/Statement/v0.1");
        assert_eq!(s["subject"][0]["digest"]["sha256"], &image_digest[7..]);
        s
    };
    let sbom = statement("https://spdx.dev/Document")["predicate"].clone();
    assert_eq!(sbom["spdxVersion"], "SPDX-2.3");
    let packages = sbom["packages"].as_array().unwrap();
    let purls: Vec<&str> = packages
        .iter()
        .filter_map(|p| p["externalRefs"][0]["referenceLocator"].as_str())
        .collect();
    for name in ["dpkg", "apt", "libc6", "base-files"] {
        let prefix = format!("pkg:deb/debian/{name}@");
        assert!(
            purls
                .iter()
                .any(|p| p.starts_with(&prefix) && p.contains("distro=debian-")),
            "no {name} in the SBOM: {purls:?}"
        );
    }
    let debs = purls.iter().filter(|p| p.starts_with("pkg:deb/")).count();
    assert!(debs > 50, "a minbase has some 90 packages, the SBOM {debs}");
    assert!(
        packages
            .iter()
            .any(|p| p["versionInfo"] == base_digest.as_str()),
        "the base image with its digest {base_digest}: {packages:?}"
    );
    let prov = statement("https://slsa.dev/provenance/v0.2")["predicate"].clone();
    assert_eq!(
        prov["materials"][0]["digest"]["sha256"],
        &base_digest[7..],
        "{prov}"
    );
    assert_eq!(
        prov["invocation"]["parameters"]["args"]["build-arg:GREETING"],
        "hello"
    );
    assert!(prov["builder"]["id"]
        .as_str()
        .unwrap()
        .starts_with("pkg:generic/brig-build@"));
    let df = prov["metadata"]["https://mobyproject.org/buildkit@v1#metadata"]["source"]["infos"][0]
        ["data"]
        .as_str()
        .expect("mode=max has the Dockerfile");
    use base64::Engine as _;
    let df = base64::engine::general_purpose::STANDARD
        .decode(df)
        .unwrap();
    assert!(String::from_utf8_lossy(&df).contains("ARG GREETING=hi"));

    // Peers: skopeo takes the host's image out of the layout's index and the registry's.
    if have("skopeo") {
        let out = run(Command::new("skopeo")
            .args(["inspect", "--tls-verify=false"])
            .arg(format!("docker://{pushed}")));
        out.assert_ok();
        // skopeo names the index it resolved, and reads the host's image out of it.
        assert!(
            out.stdout.contains(top["digest"].as_str().unwrap()),
            "{out}"
        );
        let arch = format!("\"Architecture\": {}", image["platform"]["architecture"]);
        assert!(out.stdout.contains(&arch), "{out}");
        let copied = c.path("copied");
        run(Command::new("skopeo")
            .arg("copy")
            .arg(format!("oci:{}:1", oci.display()))
            .arg(format!("oci:{}:1", copied.display())))
        .assert_ok();
    }
    // containerd pulls the pushed index (the attestation manifest matches no platform) and
    // runs the image through brig's shim.
    let ctrd = match Containerd::start() {
        Ok(c) => c,
        Err(why) => panic!("containerd: {why}"),
    };
    ctrd.ctr(&["images", "pull", "--plain-http", &pushed])
        .assert_ok();
    let id = format!("att-{}", std::process::id());
    let out = ctrd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        "io.containerd.brig.v2",
        &pushed,
        &id,
    ]);
    out.assert_ok();
    assert_eq!(out.stdout.trim(), "hello", "{out}");
}
