//! buildx's command line, as pipelines use it (issue 15): `--push` to each `-t` name,
//! `--iidfile`, `--metadata-file` (buildx's keys), `-o type=local` and `-o type=tar` (the
//! image's files), `--load` into a docker daemon over its socket, `--cache-to type=inline` and
//! `--cache-from` of the pushed image.

use brig_tests::builder::*;
use brig_tests::dockerd::Dockerd;
use brig_tests::registry::Registry;
use serde_json::Value;
use std::fs;
use std::process::Command;

/// `brig-build --store S [GLOBAL] build --runtime BRIG ARGS CONTEXT` with `env` set.
fn build(c: &Ctx, global: &[&str], args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(builder_path());
    cmd.arg("--store")
        .arg(c.store())
        .args(global)
        .arg("build")
        .arg("--runtime")
        .arg(binary_path())
        .args(args)
        .arg(c.ctx());
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

#[test]
fn push_iidfile_and_metadata_file() {
    if !ready("push_iidfile_and_metadata_file") {
        return;
    }
    let Some(reg) = Registry::start("push_iidfile_and_metadata_file", "") else {
        return;
    };
    let h = reg.host.as_str();
    let c = Ctx::new(&format!("{}\nRUN echo pushed > /f\n", from_base()));
    // --push needs a name.
    let out = build(&c, &["--insecure-registry", h], &["--push"], &[]);
    out.assert_fail();
    assert!(out.stderr.contains("-t NAME"), "{out}");
    let (a, b) = (format!("{h}/app:1"), format!("{h}/app:latest"));
    let (iid, meta) = (c.path("iid"), c.path("meta.json"));
    let out = build(
        &c,
        &["--insecure-registry", h],
        &[
            "-t",
            &a,
            "-t",
            &b,
            "--push",
            "--iidfile",
            iid.to_str().unwrap(),
            "--metadata-file",
            meta.to_str().unwrap(),
        ],
        &[],
    );
    out.assert_ok();
    let config_digest = out.stdout.trim().to_string();
    assert_eq!(fs::read_to_string(&iid).unwrap(), config_digest);
    let m: Value = serde_json::from_slice(&fs::read(&meta).unwrap()).unwrap();
    assert_eq!(m["containerimage.config.digest"], config_digest.as_str());
    assert_eq!(m["image.name"], format!("{a},{b}"));
    let digest = m["containerimage.digest"].as_str().unwrap().to_string();
    assert_eq!(m["containerimage.descriptor"]["digest"], digest.as_str());
    assert_eq!(
        m["containerimage.descriptor"]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    // Both names are in the registry, as that manifest.
    if have("skopeo") {
        for name in [&a, &b] {
            let out = run(Command::new("skopeo")
                .args(["inspect", "--tls-verify=false"])
                .arg(format!("docker://{name}")));
            out.assert_ok();
            let got: Value = serde_json::from_str(&out.stdout).unwrap();
            assert_eq!(got["Digest"], digest.as_str(), "{name}");
        }
    }
}

#[test]
fn files_as_a_directory_and_a_tar() {
    if !ready("files_as_a_directory_and_a_tar") {
        return;
    }
    // A file with an owner, a base file removed (a whiteout in the layer), a symlink.
    let c = Ctx::new(&format!(
        "{}\nRUN echo mine > /f && chown 1234:5678 /f && rm /etc/hostname && ln -s f /link\n",
        from_base()
    ));
    let (dir, tar) = (c.path("files"), c.path("files.tar"));
    let out = build(
        &c,
        &[],
        &[
            "-o",
            &format!("type=local,dest={}", dir.display()),
            "-o",
            &format!("type=tar,dest={}", tar.display()),
        ],
        &[],
    );
    out.assert_ok();
    use std::os::unix::fs::MetadataExt;
    let md = fs::metadata(dir.join("f")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 5678));
    assert_eq!(fs::read_to_string(dir.join("f")).unwrap(), "mine\n");
    assert!(
        dir.join("bin/busybox").is_file(),
        "the base's files are there"
    );
    assert!(
        !dir.join("etc/hostname").exists(),
        "the removed file is not"
    );
    assert_eq!(
        fs::read_link(dir.join("link")).unwrap(),
        std::path::Path::new("f")
    );
    let listing = run(Command::new("tar")
        .args(["-tvf"])
        .arg(&tar)
        .arg("--numeric-owner"));
    listing.assert_ok();
    let line = |name: &str| {
        listing
            .stdout
            .lines()
            .find(|l| {
                // mode owner size date time NAME [-> TARGET]
                let path = l.split_whitespace().nth(5).unwrap_or("");
                path.trim_start_matches("./") == name
            })
            .unwrap_or_else(|| panic!("no {name} in {listing}"))
            .to_string()
    };
    assert!(line("f").contains("1234/5678"), "{}", line("f"));
    assert!(line("link").starts_with('l'), "{}", line("link"));
    assert!(!listing.stdout.contains("etc/hostname"), "{listing}");
    // Nothing stays mounted.
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(c.store().to_str().unwrap()),
        "a mount in the store is left: {mounts}"
    );
}

#[test]
fn load_into_docker() {
    if !ready("load_into_docker") {
        return;
    }
    let dockerd = match Dockerd::start() {
        Ok(d) => d,
        Err(why) => panic!("dockerd: {why}"),
    };
    let c = Ctx::new(&format!(
        "{}\nRUN echo loaded > /f\nCMD [\"cat\", \"/f\"]\n",
        from_base()
    ));
    let host = format!("unix://{}", dockerd.socket().display());
    let out = build(
        &c,
        &[],
        &["-t", "brigtest/loaded:1", "--load"],
        &[("DOCKER_HOST", host.as_str())],
    );
    out.assert_ok();
    let id = dockerd.docker(&["image", "inspect", "-f", "{{.Id}}", "brigtest/loaded:1"]);
    id.assert_ok();
    assert_eq!(
        id.stdout.trim(),
        out.stdout.trim(),
        "docker's image id is our config digest"
    );
    let ran = dockerd.docker(&["run", "--rm", "--network", "none", "brigtest/loaded:1"]);
    ran.assert_ok();
    assert_eq!(ran.stdout.trim(), "loaded");
    // A socket nobody listens on: the error names it.
    let out = build(
        &c,
        &[],
        &["-t", "brigtest/loaded:2", "--load"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    out.assert_fail();
    assert!(out.stderr.contains("/nonexistent/docker.sock"), "{out}");
}

#[test]
fn annotations_on_the_manifest_and_the_index() {
    if !ready("annotations_on_the_manifest_and_the_index") {
        return;
    }
    let c = Ctx::new(&format!("{}\nRUN true\n", from_base()));
    let oci = c.path("oci");
    let out = build(
        &c,
        &[],
        &[
            "--annotation",
            "org.opencontainers.image.source=https://example.org/app",
            "--annotation",
            "manifest:org.example.m=1",
            "--annotation",
            "index:org.example.i=2",
            "--provenance",
            "-o",
            &format!("type=oci,dest={},name=t:1", oci.display()),
        ],
        &[],
    );
    out.assert_ok();
    let blob = |d: &Value| -> Value {
        serde_json::from_slice(
            &fs::read(oci.join("blobs/sha256").join(&d.as_str().unwrap()[7..])).unwrap(),
        )
        .unwrap()
    };
    let layout: Value = serde_json::from_slice(&fs::read(oci.join("index.json")).unwrap()).unwrap();
    let index = blob(&layout["manifests"][0]["digest"]);
    assert_eq!(index["annotations"]["org.example.i"], "2", "{index}");
    let manifest = blob(&index["manifests"][0]["digest"]);
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.source"],
        "https://example.org/app"
    );
    assert_eq!(manifest["annotations"]["org.example.m"], "1");
    // An index annotation needs an index; an unknown type is named.
    let out = build(&c, &[], &["--annotation", "index:a=b"], &[]);
    out.assert_fail();
    assert!(out.stderr.contains("no index"), "{out}");
    let out = build(&c, &[], &["--annotation", "layer:a=b"], &[]);
    out.assert_fail();
    assert!(out.stderr.contains("\"layer\""), "{out}");
}

/// `--pull`: FROM takes the registry's current image, not the store's older copy.
#[test]
fn pull_takes_the_registry_image() {
    if !ready("pull_takes_the_registry_image") {
        return;
    }
    let Some(reg) = Registry::start("pull_takes_the_registry_image", "") else {
        return;
    };
    let h = reg.host.as_str();
    let base = format!("{h}/base:1");
    let g = ["--insecure-registry", h];
    let publisher = Ctx::new(&format!("{}\nRUN echo one > /v\n", from_base()));
    build(&publisher, &g, &["-t", &base, "--push"], &[]).assert_ok();
    let c = Ctx::new(&format!("FROM {base}\nRUN cat /v > /seen\n"));
    let seen = |extra: &[&str]| -> String {
        let oci = c.path("oci");
        let _ = fs::remove_dir_all(&oci);
        let dest = format!("type=oci,dest={},name=t:1", oci.display());
        let mut args = vec!["-o", dest.as_str()];
        args.extend_from_slice(extra);
        build(&c, &g, &args, &[]).assert_ok();
        Image::open(&oci, "1").layer_file(-1, "seen")
    };
    assert_eq!(seen(&[]), "one\n");
    // The registry's image changes; the store keeps the one it pulled.
    publisher.write(
        "Dockerfile",
        &format!("{}\nRUN echo two > /v\n", from_base()),
    );
    build(&publisher, &g, &["-t", &base, "--push"], &[]).assert_ok();
    assert_eq!(seen(&[]), "one\n", "without --pull the store's copy serves");
    assert_eq!(seen(&["--pull"]), "two\n", "--pull takes the registry's");
}

/// `--add-host`, `--shm-size`, `--ulimit` reach RUN steps, and are part of their cache key.
#[test]
fn run_steps_get_hosts_shm_and_ulimits() {
    if !ready("run_steps_get_hosts_shm_and_ulimits") {
        return;
    }
    let c = Ctx::new(&format!(
        "{}\nRUN (cat /etc/hosts 2>/dev/null || true) > /hosts && df -k /dev/shm | tail -1 > /shm && ulimit -n > /nofile && ulimit -Hn >> /nofile\n",
        from_base()
    ));
    let built = |args: &[&str]| -> Image {
        let oci = c.path("oci");
        let _ = fs::remove_dir_all(&oci);
        let dest = format!("type=oci,dest={},name=t:1", oci.display());
        let mut a = vec!["--network", "none", "-o", dest.as_str()];
        a.extend_from_slice(args);
        build(&c, &[], &a, &[]).assert_ok();
        Image::open(&oci, "1")
    };
    let img = built(&[
        "--add-host",
        "db.internal:10.1.2.3",
        "--add-host",
        "v6.internal=fd00::1",
        "--shm-size",
        "128m",
        "--ulimit",
        "nofile=1024:2048",
    ]);
    let hosts = img.layer_file(-1, "hosts");
    assert!(hosts.contains("10.1.2.3\tdb.internal"), "{hosts}");
    assert!(hosts.contains("fd00::1\tv6.internal"), "{hosts}");
    assert!(hosts.contains("localhost"), "{hosts}");
    let shm = img.layer_file(-1, "shm");
    assert_eq!(shm.split_whitespace().nth(1), Some("131072"), "{shm}");
    assert_eq!(img.layer_file(-1, "nofile"), "1024\n2048\n");
    // The bind's mount point is not part of the layer.
    let listing = img.layer_listing(-1).join("\n");
    assert!(!listing.contains("etc/hosts"), "{listing}");
    // Without them the step runs again (a cache hit would keep the extra host).
    let img = built(&[]);
    assert!(!img.layer_file(-1, "hosts").contains("db.internal"));
    // Bad values are named.
    for (flag, value, says) in [
        ("--add-host", "nocolon", "NAME:IP"),
        ("--add-host", "h:not-an-ip", "not an IP address"),
        ("--shm-size", "lots", "--shm-size"),
        ("--ulimit", "bogus=1", "unknown limit \"bogus\""),
        ("--ulimit", "nofile=10:5", "soft limit"),
    ] {
        let out = build(&c, &[], &[flag, value], &[]);
        out.assert_fail();
        assert!(out.stderr.contains(says), "{flag} {value}: {out}");
    }
}

#[test]
fn cache_to_inline_and_from_the_pushed_image() {
    if !ready("cache_to_inline_and_from_the_pushed_image") {
        return;
    }
    let Some(reg) = Registry::start("cache_to_inline_and_from_the_pushed_image", "") else {
        return;
    };
    let h = reg.host.as_str();
    let w = Witness::start();
    let c = Ctx::new(&format!(
        "{}\nRUN {} && echo one > /one\nENV E=1\nRUN {} && echo two > /two\n",
        from_base(),
        w.hit("one"),
        w.hit("two")
    ));
    // Each build in a store of its own: `--store S build --push -t NAME ARGS`.
    let build_in = |store: &str, name: &str, args: &[&str]| {
        let meta = c.path(&format!("{store}.json"));
        let out = run(Command::new(builder_path())
            .arg("--store")
            .arg(c.path(store))
            .args(["--insecure-registry", h, "build", "--runtime"])
            .arg(binary_path())
            .args(["--push", "-t", &format!("{h}/{name}"), "--metadata-file"])
            .arg(&meta)
            .args(args)
            .arg(c.ctx()));
        out.assert_ok();
        let m: Value = serde_json::from_slice(&fs::read(&meta).unwrap()).unwrap();
        (out, m)
    };
    let (_, first) = build_in("store-a", "app:1", &["--cache-to", "type=inline"]);
    assert_eq!((w.count("one"), w.count("two")), (1, 1));
    // The pushed config carries the entries of the image's steps.
    let blob = |d: &str| {
        let hex = &d["sha256:".len()..];
        let p = reg
            .dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data");
        serde_json::from_slice::<Value>(&fs::read(p).unwrap()).unwrap()
    };
    let config = blob(first["containerimage.config.digest"].as_str().unwrap());
    let entries = config["brig.build.cache.v0"]["entries"]
        .as_object()
        .unwrap_or_else(|| panic!("no inline cache in {config}"));
    let manifest = blob(first["containerimage.digest"].as_str().unwrap());
    let layers: Vec<&Value> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["digest"])
        .collect();
    let with_layer: Vec<&Value> = entries.values().filter_map(|e| e.get("layer")).collect();
    assert_eq!(entries.len(), 3, "RUN, ENV, RUN: {config}");
    assert_eq!(with_layer.len(), 2, "{config}");
    assert!(with_layer.iter().all(|l| layers.contains(&&l["digest"])));
    // A fresh store, the pushed image as --cache-from (buildx's bare form): no step runs, and
    // the image is the same, inline cache included.
    w.reset();
    let (_, again) = build_in(
        "store-b",
        "app:2",
        &[
            "--cache-from",
            &format!("{h}/app:1"),
            "--cache-to",
            "type=inline",
        ],
    );
    assert_eq!((w.count("one"), w.count("two")), (0, 0));
    assert_eq!(
        again["containerimage.digest"],
        first["containerimage.digest"]
    );
    // An image pushed without it has no inline cache: ignored, with a notice; steps run.
    build_in("store-b", "plain:1", &[]);
    let (out, _) = build_in(
        "store-c",
        "app:3",
        &["--cache-from", &format!("type=registry,ref={h}/plain:1")],
    );
    assert!(out.stderr.contains("no build cache there"), "{out}");
    assert_eq!((w.count("one"), w.count("two")), (1, 1));
    // An image FROM the one with the inline cache does not inherit it.
    let d = Ctx::new(&format!("FROM {h}/app:1\nENV X=1\n"));
    let oci = d.path("oci");
    build(
        &d,
        &["--insecure-registry", h],
        &["-o", &format!("type=oci,dest={},name=t:1", oci.display())],
        &[],
    )
    .assert_ok();
    let child = Image::open(&oci, "1");
    assert!(
        child.config.get("brig.build.cache.v0").is_none(),
        "{}",
        child.config
    );
}
