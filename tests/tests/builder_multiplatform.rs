//! Multi-platform builds: `--platform linux/amd64,linux/arm64` builds each platform and
//! writes one OCI image index (a layout, a registry push); FROM takes the platform's entry of a
//! base's index; the automatic platform ARGs are per platform; RUN for arm64 runs under Debian's
//! qemu-user-static registered in a user namespace of the RUN's own (never on the host); a stage
//! `FROM --platform=$BUILDPLATFORM` runs once; the image-spec validators pass; the arm64 image
//! runs with brig under the same emulation.
//!
//! The arm64 files come from Debian's mirror: busybox-static for arm64, fetched with apt-get
//! against a private apt state (the host's dpkg architectures stay as they are), once per
//! machine in $TMPDIR/brig-tests.

use brig_tests::builder::*;
use brig_tests::registry::Registry;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Linux 6.7 gave binfmt_misc an instance per user namespace; before it, nothing to test.
fn kernel_has_binfmt_instances() -> bool {
    let r = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = r.trim().split(|c: char| !c.is_ascii_digit());
    let v: (u32, u32) = (
        it.next().and_then(|n| n.parse().ok()).unwrap_or(0),
        it.next().and_then(|n| n.parse().ok()).unwrap_or(0),
    );
    v >= (6, 7)
}

/// Debian's arm64 busybox (static), fetched once per machine without touching the host's dpkg
/// or apt configuration: `apt-get update` and `apt-get download` for arm64 with a private state.
fn arm64_busybox() -> PathBuf {
    let dir = std::env::temp_dir().join("brig-tests/arm64-busybox");
    let bin = dir.join("files/bin/busybox");
    if bin.is_file() {
        return bin;
    }
    let tmp = tempfile::Builder::new()
        .prefix("arm64-apt-")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    let t = tmp.path();
    for d in [
        "state/lists/partial",
        "cache/archives/partial",
        "etc/parts",
        "etc/prefs",
    ] {
        fs::create_dir_all(t.join(d)).unwrap();
    }
    fs::write(t.join("state/status"), "").unwrap();
    fs::write(
        t.join("etc/sources.list"),
        "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
         http://deb.debian.org/debian bookworm main\n",
    )
    .unwrap();
    let p = |s: &str| t.join(s).display().to_string();
    let opts = [
        format!("Dir::State={}", p("state")),
        format!("Dir::State::status={}", p("state/status")),
        format!("Dir::Cache={}", p("cache")),
        format!("Dir::Etc::SourceList={}", p("etc/sources.list")),
        format!("Dir::Etc::SourceParts={}", p("etc/none")),
        format!("Dir::Etc::Parts={}", p("etc/parts")),
        format!("Dir::Etc::PreferencesParts={}", p("etc/prefs")),
        "APT::Architecture=arm64".into(),
        "APT::Architectures::=arm64".into(),
        "APT::Sandbox::User=root".into(),
        "Debug::NoLocking=1".into(),
    ];
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.arg("-q");
        for o in &opts {
            c.args(["-o", o]);
        }
        c.args(args).current_dir(t);
        run(&mut c).assert_ok();
    };
    apt(&["update"]);
    apt(&["download", "busybox-static"]);
    let deb = fs::read_dir(t)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("apt-get download wrote the .deb");
    let files = t.join("files");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&files)).assert_ok();
    fs::create_dir_all(&dir).unwrap();
    let _ = fs::rename(&files, dir.join("files"));
    assert!(
        bin.is_file(),
        "{} after extracting {}",
        bin.display(),
        deb.display()
    );
    bin
}

fn json(p: &Path) -> Value {
    serde_json::from_slice(&fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn blob(layout: &Path, d: &Value) -> Value {
    json(&layout.join("blobs/sha256").join(&d.as_str().unwrap()[7..]))
}

/// The image entries `(os/arch, manifest digest)` of the one index the layout's index.json
/// names, and its attestation manifests `(the digest they refer to, manifest)`.
#[allow(clippy::type_complexity)]
fn index_of(layout: &Path) -> (Vec<(String, String)>, Vec<(String, Value)>) {
    let top = json(&layout.join("index.json"));
    let ms = top["manifests"].as_array().unwrap();
    assert_eq!(ms.len(), 1, "one entry: the image index: {top}");
    assert_eq!(
        ms[0]["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{top}"
    );
    let idx = blob(layout, &ms[0]["digest"]);
    let (mut images, mut attestations) = (Vec::new(), Vec::new());
    for m in idx["manifests"].as_array().unwrap() {
        let p = format!(
            "{}/{}",
            m["platform"]["os"].as_str().unwrap(),
            m["platform"]["architecture"].as_str().unwrap()
        );
        let manifest = blob(layout, &m["digest"]);
        if p == "unknown/unknown" {
            assert_eq!(
                m["annotations"]["vnd.docker.reference.type"], "attestation-manifest",
                "{idx}"
            );
            let of = m["annotations"]["vnd.docker.reference.digest"]
                .as_str()
                .unwrap();
            attestations.push((of.to_string(), manifest));
            continue;
        }
        let config = blob(layout, &manifest["config"]["digest"]);
        assert_eq!(
            format!(
                "{}/{}",
                config["os"].as_str().unwrap(),
                config["architecture"].as_str().unwrap()
            ),
            p,
            "the config's platform is the index entry's"
        );
        images.push((p, m["digest"].as_str().unwrap().to_string()));
    }
    (images, attestations)
}

/// The image-spec's validator (conformance/image-spec/validate.go, built as
/// conformance/image-spec.sh builds it) on `layout`: every check passes.
fn validate(layout: &Path, work: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/image-spec");
    let bin = work.join("validate");
    run(Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg("validate.go")
        .current_dir(&src)
        .env("GOPATH", "/usr/share/gocode")
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOCACHE", std::env::temp_dir().join("brig-tests/gocache")))
    .assert_ok();
    let out = run(Command::new(&bin).arg(layout));
    let ok = out.stdout.lines().filter(|l| l.starts_with("ok ")).count();
    let failed: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("FAIL "))
        .collect();
    assert!(ok > 0 && failed.is_empty(), "{out}");
    // Both images were checked, through the index.
    assert!(out.stdout.contains("manifests[0] manifests[1]"), "{out}");
}

/// The arm64 binfmt_misc line of the store's qemu-user-static, with its interpreter.
fn register_line(store: &Path) -> String {
    let q = store.join("emulators/qemu-user-static");
    let conf = fs::read_to_string(q.join("usr/lib/binfmt.d/qemu-aarch64.conf")).unwrap();
    let line = conf.lines().find(|l| l.starts_with(':')).unwrap();
    let mut f: Vec<String> = line.split(':').map(str::to_string).collect();
    // :NAME:M:OFFSET:MAGIC:MASK:INTERPRETER:FLAGS
    f[6] = q.join("usr/bin/qemu-aarch64-static").display().to_string();
    f.join(":")
}

/// Runs `rootfs` (arm64) with brig in a user and mount namespace of its own; with `register`,
/// qemu is registered with binfmt_misc there first.
fn run_arm64(c: &Ctx, rootfs: &Path, register: Option<&str>) -> Out {
    let bundle = c.path("bundle");
    fs::create_dir_all(&bundle).unwrap();
    let mut spec = brig_tests::bundle::default_spec(&["/bin/sh", "-c", "uname -m; cat /machine"]);
    // Only root is mapped in this namespace: no gid= for devpts.
    for m in spec["mounts"].as_array_mut().unwrap() {
        if let Some(o) = m["options"].as_array_mut() {
            o.retain(|o| !o.as_str().unwrap_or_default().starts_with("gid="));
        }
    }
    spec["root"]["path"] = rootfs.display().to_string().into();
    fs::write(bundle.join("config.json"), spec.to_string()).unwrap();
    let mnt = c.path("binfmt");
    fs::create_dir_all(&mnt).unwrap();
    let reg = match register {
        Some(l) => format!(
            "mount -t binfmt_misc binfmt_misc {m} && printf '%s' '{l}' > {m}/register && ",
            m = mnt.display()
        ),
        None => String::new(),
    };
    let script = format!(
        "{reg}exec {} --root {} run --bundle {} mp-arm64",
        binary_path().display(),
        c.path("state").display(),
        bundle.display()
    );
    run(Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(&script))
}

fn host_binfmt() -> Vec<String> {
    fs::read_dir("/proc/sys/fs/binfmt_misc")
        .map(|rd| {
            let mut v: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default()
}

#[test]
fn two_platforms_one_index_each_run_on_its_own_machine() {
    let test = "two_platforms_one_index_each_run_on_its_own_machine";
    if !ready(test) {
        return;
    }
    if std::env::consts::ARCH != "x86_64" {
        println!("SKIP {test}: written for an amd64 host (arm64 is the emulated platform)");
        return;
    }
    if !kernel_has_binfmt_instances() {
        println!("SKIP {test}: the kernel is older than 6.7 (no binfmt_misc per user namespace)");
        return;
    }
    let Some(reg) = Registry::start(test, "") else {
        return;
    };
    let arm64 = arm64_busybox();
    let c = Ctx::new("");
    // The arm64 busybox cannot run on this host: the build must not change that.
    let exec_arm64 = || Command::new(&arm64).status().map_err(|e| e.raw_os_error());
    let native = exec_arm64();
    let host_before = host_binfmt();

    // A two-platform busybox base, pushed as one index.
    let ctx = c.ctx();
    busybox_rootfs(&ctx.join("rootfs-amd64"));
    busybox_rootfs(&ctx.join("rootfs-arm64"));
    fs::copy(&arm64, ctx.join("rootfs-arm64/bin/busybox")).unwrap();
    c.write(
        "Dockerfile.base",
        "FROM scratch\nARG TARGETARCH\nCOPY rootfs-${TARGETARCH}/ /\nCMD [\"sh\"]\n",
    );
    let base = format!("{}/multi/busybox:1", reg.host);
    let f = ctx.join("Dockerfile.base");
    let out = c.build(&[
        "--insecure-registry",
        &reg.host,
        "--platform",
        "linux/amd64,linux/arm64",
        "-f",
        f.to_str().unwrap(),
        "-t",
        &base,
        "--push",
        "-o",
        &format!(
            "type=oci,dest={},name=busybox:1",
            c.path("base-oci").display()
        ),
    ]);
    out.assert_ok();
    let got = run(Command::new("curl").args([
        "-sf",
        "-H",
        "Accept: application/vnd.oci.image.index.v1+json",
        &format!("http://{}/v2/multi/busybox/manifests/1", reg.host),
    ]));
    got.assert_ok();
    let idx: Value = serde_json::from_str(&got.stdout).unwrap();
    let plats: Vec<String> = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        plats,
        ["amd64", "arm64"],
        "the registry's tag is one index: {idx}"
    );

    // FROM the index; a stage on the build platform (runs once, even under --no-cache); the
    // platform ARGs per platform; RUN on each platform's machine.
    c.write(
        "Dockerfile",
        &format!(
            "FROM --platform=$BUILDPLATFORM {base} AS tool\n\
             RUN uname -m > /build-machine\n\
             FROM {base}\n\
             ARG TARGETPLATFORM\nARG TARGETOS\nARG TARGETARCH\nARG TARGETVARIANT\n\
             ARG BUILDPLATFORM\nARG BUILDOS\nARG BUILDARCH\n\
             COPY --from=tool /build-machine /\n\
             RUN uname -m > /machine && echo \"$TARGETPLATFORM $TARGETOS $TARGETARCH v=$TARGETVARIANT on $BUILDPLATFORM $BUILDOS $BUILDARCH\" > /platforms\n"
        ),
    );
    let layout = c.path("oci");
    let files = c.path("files");
    let cache = format!("type=registry,ref={}/multi/cache:1", reg.host);
    let out = c.build(&[
        "--insecure-registry",
        &reg.host,
        "--platform",
        "linux/amd64,linux/arm64",
        "--no-cache",
        "--progress",
        "plain",
        "--sbom",
        "--provenance=mode=max",
        "-o",
        &format!("type=oci,dest={},name=multi:1", layout.display()),
        "-o",
        &format!("type=local,dest={}", files.display()),
        "-o",
        &format!("type=oci-archive,dest={}", c.path("oci.tar").display()),
        "--cache-to",
        &cache,
        "--iidfile",
        c.path("iid").to_str().unwrap(),
        "--metadata-file",
        c.path("meta.json").to_str().unwrap(),
    ]);
    out.assert_ok();
    // The build's id is its index (buildx: no one config for several platforms).
    let index_digest = json(&layout.join("index.json"))["manifests"][0]["digest"].clone();
    assert_eq!(
        fs::read_to_string(c.path("iid")).unwrap(),
        index_digest.as_str().unwrap()
    );
    let meta = json(&c.path("meta.json"));
    assert_eq!(meta["containerimage.digest"], index_digest);
    assert!(meta.get("containerimage.config.digest").is_none(), "{meta}");
    // The oci-archive holds the same index as the layout.
    let archived = run(Command::new("tar")
        .arg("-xOf")
        .arg(c.path("oci.tar"))
        .arg("index.json"));
    archived.assert_ok();
    let archived: Value = serde_json::from_str(&archived.stdout).unwrap();
    assert_eq!(
        archived["manifests"][0]["digest"],
        json(&layout.join("index.json"))["manifests"][0]["digest"]
    );
    let (images, attestations) = index_of(&layout);
    let names: Vec<&str> = images.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["linux/amd64", "linux/arm64"]);
    // An attestation manifest per image (BuildKit's layout), each about its image.
    assert_eq!(attestations.len(), 2);
    for ((platform, digest), (of, att)) in images.iter().zip(&attestations) {
        assert_eq!(of, digest, "attestations follow the images' order");
        let statements: Vec<Value> = att["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| blob(&layout, &l["digest"]))
            .collect();
        assert_eq!(statements.len(), 2, "an SBOM and provenance");
        for st in &statements {
            assert_eq!(st["subject"][0]["digest"]["sha256"], digest[7..], "{st}");
            assert!(
                st["subject"][0]["name"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("platform={}", platform.replace('/', "%2F"))),
                "{st}"
            );
        }
    }
    let read = |p: &str, f: &str| fs::read_to_string(files.join(p).join(f)).unwrap();
    assert_eq!(read("linux_amd64", "machine"), "x86_64\n");
    assert_eq!(read("linux_arm64", "machine"), "aarch64\n");
    assert_eq!(read("linux_amd64", "build-machine"), "x86_64\n");
    assert_eq!(read("linux_arm64", "build-machine"), "x86_64\n");
    assert_eq!(
        read("linux_amd64", "platforms"),
        "linux/amd64 linux amd64 v= on linux/amd64 linux amd64\n"
    );
    assert_eq!(
        read("linux_arm64", "platforms"),
        "linux/arm64 linux arm64 v= on linux/amd64 linux amd64\n"
    );
    // The build-platform stage ran for the first platform only.
    let second = out
        .stderr
        .split("[linux/arm64] building")
        .nth(1)
        .unwrap_or_else(|| panic!("no arm64 build in {out}"));
    let step = second
        .lines()
        .find(|l| l.contains("RUN uname -m > /build-machine"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        second.contains(&format!("{step} CACHED")),
        "the $BUILDPLATFORM stage ran again for arm64: {out}"
    );
    let first = out.stderr.split("[linux/arm64] building").next().unwrap();
    assert!(!first.contains(" CACHED"), "--no-cache: {out}");

    validate(&layout, c.dir.path());

    // The registry cache holds both platforms' steps: a fresh store builds from it alone.
    let again = run(Command::new(builder_path())
        .arg("--store")
        .arg(c.path("store-2"))
        .args(["--insecure-registry", &reg.host, "build", "--runtime"])
        .arg(binary_path())
        .args([
            "--platform",
            "linux/amd64,linux/arm64",
            "--progress",
            "plain",
        ])
        .args(["--cache-from", &cache])
        .arg(c.ctx()));
    again.assert_ok();
    // Each platform's steps are numbered from #1: look at each platform's part.
    let parts: Vec<&str> = again.stderr.split("] building (").skip(1).collect();
    assert_eq!(parts.len(), 2, "{again}");
    for part in parts {
        let runs: Vec<&str> = part
            .lines()
            .filter(|l| l.contains("] RUN "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(runs.len(), 2, "{again}");
        for id in runs {
            assert!(
                part.contains(&format!("\n{id} CACHED")),
                "every RUN of both platforms from the cache: {again}"
            );
        }
    }

    // FROM an OCI layout's index takes the platform's entry too.
    c.write(
        "Dockerfile.layout",
        &format!(
            "FROM oci-layout://{}:1\nRUN uname -m > /m && ls /bin/busybox\n",
            c.path("base-oci").display()
        ),
    );
    let f = ctx.join("Dockerfile.layout");
    let lfiles = c.path("layout-files");
    c.build(&[
        "--platform",
        "linux/arm64",
        "-f",
        f.to_str().unwrap(),
        "-o",
        &format!("type=local,dest={}", lfiles.display()),
    ])
    .assert_ok();
    assert_eq!(fs::read_to_string(lfiles.join("m")).unwrap(), "aarch64\n");

    // The arm64 image runs with brig under the same emulation, and only with it.
    let rootfs = files.join("linux_arm64");
    let line = register_line(&c.store());
    let ran = run_arm64(&c, &rootfs, Some(&line));
    ran.assert_ok();
    assert_eq!(ran.stdout, "aarch64\naarch64\n", "{ran}");
    let plain = run_arm64(&c, &rootfs, None);
    plain.assert_fail();
    assert!(
        plain.stderr.contains("ENOEXEC") || plain.stderr.contains("format"),
        "{plain}"
    );

    // The host's binfmt_misc is as it was: the arm64 busybox runs there as before (or not).
    assert_eq!(host_binfmt(), host_before);
    assert_eq!(exec_arm64(), native);
}

/// A plain user's build (its own user namespace) runs arm64 RUN steps too: the RUN's user
/// namespace is nested in the build's, with the build's ids.
#[test]
fn a_plain_users_build_runs_arm64_steps_too() {
    let test = "a_plain_users_build_runs_arm64_steps_too";
    if !ready(test) {
        return;
    }
    if std::env::consts::ARCH != "x86_64" || !kernel_has_binfmt_instances() {
        println!("SKIP {test}: needs an amd64 host with Linux 6.7 or later");
        return;
    }
    for tool in ["newuidmap", "runuser", "useradd", "usermod"] {
        assert!(
            have(tool),
            "{test}: {tool} is missing (Debian's uidmap, util-linux, passwd)"
        );
    }
    let arm64 = arm64_busybox();
    let c = Ctx::new(
        "FROM scratch\nCOPY rootfs/ /\nRUN uname -m > /machine && chown 1000:1000 /machine\n",
    );
    let (uid, gid) = brig_tests::rootless::build_user();
    fs::set_permissions(
        c.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    busybox_rootfs(&c.ctx().join("rootfs"));
    fs::copy(&arm64, c.ctx().join("rootfs/bin/busybox")).unwrap();
    let home = c.path("home");
    fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
    let files = home.join("files");
    let rt = binary_path();
    let ctx = c.ctx();
    let dest = format!("type=local,dest={}", files.display());
    let out = brig_tests::rootless::run_as_build_user(
        &builder_path(),
        &home,
        &home,
        &[],
        &[
            "build",
            "--runtime",
            rt.to_str().unwrap(),
            "--platform",
            "linux/arm64",
            "-o",
            &dest,
            ctx.to_str().unwrap(),
        ],
    );
    out.assert_ok();
    let m = files.join("machine");
    assert_eq!(fs::read_to_string(&m).unwrap(), "aarch64\n", "{out}");
}

/// A Debian arm64 base made by `debootstrap --foreign` (files only, nothing run on the host),
/// finished by its second stage in a RUN under emulation, then `RUN apt-get install` for arm64.
/// Opt-in (`cargo test --test builder_multiplatform -- --ignored`): dpkg and apt under
/// qemu-user take minutes here, beyond the CI budget of this file.
#[test]
#[ignore = "slow: Debian's second stage and apt-get under qemu-user take minutes"]
fn debootstrap_foreign_arm64_base_finished_under_emulation() {
    let test = "debootstrap_foreign_arm64_base_finished_under_emulation";
    if !ready(test) {
        return;
    }
    if std::env::consts::ARCH != "x86_64" || !kernel_has_binfmt_instances() {
        println!("SKIP {test}: needs an amd64 host with Linux 6.7 or later");
        return;
    }
    assert!(have("debootstrap"), "{test}: debootstrap is missing");
    let c = Ctx::new(
        "FROM scratch\n\
         COPY rootfs/ /\n\
         RUN container=lxc /debootstrap/debootstrap --second-stage\n\
         RUN apt-get update && apt-get install -y --no-install-recommends hello \
             && hello > /hello && uname -m > /machine && dpkg --print-architecture > /dpkg-arch\n",
    );
    let rootfs = c.ctx().join("rootfs");
    let started = std::time::Instant::now();
    run(Command::new("debootstrap")
        .args(["--foreign", "--arch=arm64", "--variant=minbase", "bookworm"])
        .arg(&rootfs)
        .arg("http://deb.debian.org/debian"))
    .assert_ok();
    println!("debootstrap --foreign: {:?}", started.elapsed());
    // The first stage leaves /proc a symlink to the host's; a RUN needs a directory there.
    let proc_ = rootfs.join("proc");
    if proc_.is_symlink() {
        fs::remove_file(&proc_).unwrap();
        fs::create_dir(&proc_).unwrap();
    }
    let files = c.path("files");
    let started = std::time::Instant::now();
    let out = c.build(&[
        "--platform",
        "linux/arm64",
        "--progress",
        "plain",
        "-o",
        &format!("type=local,dest={}", files.display()),
    ]);
    println!("the build under emulation: {:?}", started.elapsed());
    out.assert_ok();
    let read = |f: &str| fs::read_to_string(files.join(f)).unwrap();
    assert_eq!(read("machine"), "aarch64\n");
    assert_eq!(read("dpkg-arch"), "arm64\n");
    assert_eq!(read("hello"), "Hello, world!\n");
    let status = read("var/lib/dpkg/status");
    assert!(
        status.contains("Package: hello\nStatus: install ok installed"),
        "hello is not installed"
    );
}
