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

/// [`ready`], on an amd64 host (arm64 is the emulated platform) with Linux 6.7 or later.
fn emulation_ready(test: &str) -> bool {
    if !ready(test) {
        return false;
    }
    if std::env::consts::ARCH != "x86_64" || !kernel_has_binfmt_instances() {
        println!("SKIP {test}: needs an amd64 host with Linux 6.7 or later");
        return false;
    }
    true
}

/// Debian's arm64 busybox (static), fetched once per machine (see [`arm64_debs`]).
fn arm64_busybox() -> PathBuf {
    let dir = std::env::temp_dir().join("brig-tests/arm64-busybox");
    let bin = dir.join("files/bin/busybox");
    if bin.is_file() {
        return bin;
    }
    let debs = arm64_debs(&["busybox-static"]);
    let deb = fs::read_dir(&debs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("apt-get download wrote the .deb");
    let tmp = tempfile::Builder::new()
        .prefix("arm64-busybox-")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    let files = tmp.path().join("files");
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

/// A directory holding the arm64 .debs of Debian's `packages` (no dependencies), fetched once
/// per machine into $TMPDIR/brig-tests without touching the host's dpkg or apt configuration:
/// `apt-get update` and `apt-get download` for arm64 with a private state.
fn arm64_debs(packages: &[&str]) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("brig-tests/arm64-debs")
        .join(packages.join("+"));
    if dir.is_dir() {
        return dir;
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
        "debs",
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
        c.args(args).current_dir(t.join("debs"));
        run(&mut c).assert_ok();
    };
    apt(&["update"]);
    let mut args = vec!["download"];
    args.extend(packages);
    apt(&args);
    fs::create_dir_all(dir.parent().unwrap()).unwrap();
    let _ = fs::rename(t.join("debs"), &dir);
    assert!(dir.is_dir(), "{}", dir.display());
    dir
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
fn validate(layout: &Path, work: &Path, images: usize) {
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
    // Every image was checked, through the index.
    let checked = if images == 1 {
        "manifests[0]"
    } else {
        "manifests[0] manifests[1]"
    };
    assert!(out.stdout.contains(checked), "{out}");
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

/// Runs `sh -c script` in `rootfs` (arm64) with brig in a user and mount namespace of its own;
/// with `register`, qemu is registered with binfmt_misc there first.
fn run_arm64(c: &Ctx, rootfs: &Path, register: Option<&str>, script: &str) -> Out {
    let bundle = c.path("bundle");
    fs::create_dir_all(&bundle).unwrap();
    let mut spec = brig_tests::bundle::default_spec(&["/bin/sh", "-c", script]);
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

    validate(&layout, c.dir.path(), 2);

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
    let ran = run_arm64(&c, &rootfs, Some(&line), "uname -m; cat /machine");
    ran.assert_ok();
    assert_eq!(ran.stdout, "aarch64\naarch64\n", "{ran}");
    let plain = run_arm64(&c, &rootfs, None, "uname -m; cat /machine");
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
    if !emulation_ready(test) {
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
/// finished by its second stage in a RUN under emulation, then `RUN apt-get update && apt-get
/// install` of an arm64 package and its dependency; exported as an OCI layout with an SBOM, the
/// image-spec validator passes, and the image runs with brig under the same emulation. (The
/// one index of two platforms is `two_platforms_one_index_each_run_on_its_own_machine`'s: here
/// an amd64 Debian beside it would add a second debootstrap and prove nothing more.)
///
/// Kept within CI's time: the debs of the first stage are cached per machine (debootstrap's
/// --cache-dir under $TMPDIR/brig-tests, checked against the mirror's index each run); dpkg in
/// the base has `force-unsafe-io` (as Docker's Debian images), so the second stage does not
/// fsync every file; apt's source is a flat repository the test makes from arm64 debs of
/// Debian's mirror (jq, libjq1, libonig5), so apt-get update under qemu parses a small index
/// instead of the whole of bookworm's.
#[test]
fn debootstrap_foreign_arm64_base_finished_under_emulation() {
    let test = "debootstrap_foreign_arm64_base_finished_under_emulation";
    if !emulation_ready(test) {
        return;
    }
    for tool in ["debootstrap", "dpkg-scanpackages"] {
        assert!(
            have(tool),
            "{test}: {tool} is missing (debootstrap, dpkg-dev)"
        );
    }
    let c = Ctx::new(
        "FROM scratch\n\
         COPY rootfs/ /\n\
         RUN container=lxc /debootstrap/debootstrap --second-stage\n\
         COPY repo/ /srv/repo/\n\
         RUN echo 'deb [trusted=yes] file:/srv/repo ./' > /etc/apt/sources.list \
             && apt-get update && apt-get install -y --no-install-recommends jq \
             && uname -m > /machine && dpkg --print-architecture > /dpkg-arch \
             && echo '[1,2,3]' | jq -c 'map(. * 2)' > /jq-out\n",
    );
    let started = std::time::Instant::now();
    let repo = c.ctx().join("repo");
    fs::create_dir_all(&repo).unwrap();
    for e in fs::read_dir(arm64_debs(&["jq", "libjq1", "libonig5"])).unwrap() {
        let e = e.unwrap().path();
        fs::copy(&e, repo.join(e.file_name().unwrap())).unwrap();
    }
    let scan = run(Command::new("dpkg-scanpackages")
        .args(["--multiversion", "."])
        .current_dir(&repo));
    scan.assert_ok();
    assert_eq!(scan.stdout.matches("Package: ").count(), 3, "{scan}");
    fs::write(repo.join("Packages"), &scan.stdout).unwrap();
    let rootfs = c.ctx().join("rootfs");
    let debs = std::env::temp_dir().join("brig-tests/debootstrap-arm64");
    fs::create_dir_all(&debs).unwrap();
    run(Command::new("debootstrap")
        .args(["--foreign", "--arch=arm64", "--variant=minbase"])
        .arg(format!("--cache-dir={}", debs.display()))
        .arg("bookworm")
        .arg(&rootfs)
        .arg("http://deb.debian.org/debian"))
    .assert_ok();
    println!(
        "debootstrap --foreign and the repo: {:?}",
        started.elapsed()
    );
    // The first stage leaves /proc a symlink to the host's; a RUN needs a directory there.
    let proc_ = rootfs.join("proc");
    if proc_.is_symlink() {
        fs::remove_file(&proc_).unwrap();
        fs::create_dir(&proc_).unwrap();
    }
    let dpkg_cfg = rootfs.join("etc/dpkg/dpkg.cfg.d");
    fs::create_dir_all(&dpkg_cfg).unwrap();
    fs::write(dpkg_cfg.join("unsafe-io"), "force-unsafe-io\n").unwrap();

    let files = c.path("files");
    let layout = c.path("oci");
    let started = std::time::Instant::now();
    let out = c.build(&[
        "--platform",
        "linux/arm64",
        "--progress",
        "plain",
        "--sbom",
        "-o",
        &format!("type=local,dest={}", files.display()),
        "-o",
        &format!("type=oci,dest={},name=debian-arm64:1", layout.display()),
    ]);
    println!("the build under emulation: {:?}", started.elapsed());
    out.assert_ok();
    // Where the time went (the steps' durations), for whoever trims this test next.
    for l in out.stderr.lines().filter(|l| l.contains(" DONE ")) {
        println!("{l}");
    }
    let read = |f: &str| fs::read_to_string(files.join(f)).unwrap();
    assert_eq!(read("machine"), "aarch64\n");
    assert_eq!(read("dpkg-arch"), "arm64\n");
    assert_eq!(read("jq-out"), "[2,4,6]\n");
    let status = read("var/lib/dpkg/status");
    for p in ["jq", "libjq1", "libonig5"] {
        assert!(
            status.contains(&format!("Package: {p}\nStatus: install ok installed")),
            "{p} is not installed"
        );
    }
    // The second stage's packages were configured on arm64.
    assert!(
        status.contains("Package: libc6\nStatus: install ok installed\n")
            && status.contains("Architecture: arm64"),
        "the base is not installed"
    );

    // One arm64 image in the layout's index, its SBOM lists what apt installed.
    let (images, attestations) = index_of(&layout);
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].0, "linux/arm64");
    assert_eq!(attestations.len(), 1);
    let sbom = attestations[0].1["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| blob(&layout, &l["digest"]))
        .find(|st| st["predicateType"] == "https://spdx.dev/Document")
        .expect("an SPDX statement");
    let names: Vec<&str> = sbom["predicate"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for p in ["jq", "libjq1", "libonig5", "libc6", "dpkg"] {
        assert!(names.contains(&p), "{p} not in the SBOM: {names:?}");
    }
    validate(&layout, c.dir.path(), 1);

    // The image runs with brig under the same emulation.
    let ran = run_arm64(
        &c,
        &files,
        Some(&register_line(&c.store())),
        "uname -m; cat /machine; echo '{\"a\":[1,2]}' | jq -c '.a|add'",
    );
    ran.assert_ok();
    assert_eq!(ran.stdout, "aarch64\naarch64\n3\n", "{ran}");
}

/// A foreign-platform build without RUN runs nothing of the image: it fetches no emulator, so
/// it needs neither apt-get nor dpkg-deb (PATH here has neither).
#[test]
fn copy_only_foreign_build_fetches_no_emulator() {
    let test = "copy_only_foreign_build_fetches_no_emulator";
    if !emulation_ready(test) {
        return;
    }
    let c = Ctx::new("FROM scratch\nCOPY a.txt /a\n");
    c.write("a.txt", "a");
    let files = c.path("files");
    let out = run(Command::new(builder_path())
        .arg("--store")
        .arg(c.store())
        .args(["build", "--platform", "linux/arm64", "-o"])
        .arg(format!("type=local,dest={}", files.display()))
        .arg(c.ctx())
        .env(
            "PATH",
            path_without(&c.path("bin"), &["apt-get", "dpkg-deb"]),
        ));
    out.assert_ok();
    assert_eq!(fs::read_to_string(files.join("a")).unwrap(), "a");
    assert!(
        !c.store().join("emulators").exists(),
        "an emulator was fetched for a build without RUN"
    );
}

/// What a host lacks for a foreign RUN is an error naming it, given before the store is made:
/// apt-get or dpkg-deb missing from PATH (to fetch qemu-user-static), a kernel before 6.7 and
/// one without binfmt_misc (the kernel's own files, /proc/sys/kernel/osrelease and
/// /proc/filesystems, replaced by bind mounts in a private mount namespace: what brig-build
/// reads of the kernel, nothing of it stubbed).
#[test]
fn missing_emulator_prerequisites_are_named_before_anything_is_written() {
    let test = "missing_emulator_prerequisites_are_named_before_anything_is_written";
    if !emulation_ready(test) {
        return;
    }
    let c = Ctx::new("FROM scratch\nCOPY a.txt /a\nRUN [\"/a\"]\n");
    c.write("a.txt", "a");
    let build = |store: &Path, path: &Path, prefix: &str| {
        let cmd = format!(
            "{prefix}exec {} --store {} build --runtime {} --platform linux/arm64 {}",
            builder_path().display(),
            store.display(),
            binary_path().display(),
            c.ctx().display()
        );
        let out = run(Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(&cmd)
            .env("BRIG_TEST_PATH", path));
        out.assert_fail();
        assert!(!store.exists(), "{} was written: {out}", store.display());
        out
    };
    // PATH without apt-get, then without dpkg-deb.
    for lacks in ["apt-get", "dpkg-deb"] {
        let bin = path_without(&c.path(&format!("bin-{lacks}")), &[lacks]);
        let out = build(
            &c.path(&format!("store-{lacks}")),
            &bin,
            "export PATH=$BRIG_TEST_PATH; ",
        );
        assert!(
            out.stderr.contains(&format!("{lacks} was not found"))
                && out.stderr.contains("qemu-user-static"),
            "{out}"
        );
    }
    // A kernel before 6.7, and one without binfmt_misc.
    let release = c.path("osrelease");
    fs::write(&release, "6.1.0-28-amd64\n").unwrap();
    let fss = c.path("filesystems");
    let real = fs::read_to_string("/proc/filesystems").unwrap();
    fs::write(
        &fss,
        real.lines()
            .filter(|l| !l.ends_with("binfmt_misc"))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let out = build(
        &c.path("store-old-kernel"),
        Path::new("/usr/bin:/bin"),
        &format!(
            "mount --bind {} /proc/sys/kernel/osrelease && ",
            release.display()
        ),
    );
    assert!(
        out.stderr.contains("needs Linux 6.7 or later")
            && out.stderr.contains("\"6.1.0-28-amd64\""),
        "{out}"
    );
    let out = build(
        &c.path("store-no-binfmt"),
        Path::new("/usr/bin:/bin"),
        &format!("mount --bind {} /proc/filesystems && ", fss.display()),
    );
    assert!(out.stderr.contains("no binfmt_misc file system"), "{out}");
}

/// A directory at `dir` for PATH: the host's programs (of PATH's usual directories) but `lacks`.
fn path_without(dir: &Path, lacks: &[&str]) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    for d in ["/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        for e in fs::read_dir(d).into_iter().flatten().flatten() {
            let name = e.file_name();
            let to = dir.join(&name);
            if lacks.iter().any(|l| name == *l) || to.symlink_metadata().is_ok() {
                continue;
            }
            std::os::unix::fs::symlink(e.path(), to).unwrap();
        }
    }
    dir.to_path_buf()
}

/// A multi-platform build whose second platform fails leaves nothing of that platform: its
/// layers and cache entries are undone (the first platform's complete image and its layers
/// stay in the store, as a single-platform build's would).
#[test]
fn a_failed_platform_leaves_nothing_behind() {
    let test = "a_failed_platform_leaves_nothing_behind";
    if !emulation_ready(test) {
        return;
    }
    let arm64 = arm64_busybox();
    let c = Ctx::new(
        "FROM scratch\nARG TARGETARCH\nCOPY rootfs-${TARGETARCH}/ /\n\
         RUN test \"$TARGETARCH\" = amd64\n",
    );
    busybox_rootfs(&c.ctx().join("rootfs-amd64"));
    busybox_rootfs(&c.ctx().join("rootfs-arm64"));
    fs::copy(&arm64, c.ctx().join("rootfs-arm64/bin/busybox")).unwrap();
    let out = c.build(&["--platform", "linux/amd64,linux/arm64"]);
    out.assert_fail();
    assert!(out.stderr.contains("[linux/arm64]"), "{out}");
    let store = c.store();
    let size = fs::metadata(&arm64).unwrap().len();
    let mut layers = 0;
    for e in fs::read_dir(store.join("layers")).unwrap().flatten() {
        layers += 1;
        let b = e.path().join("bin/busybox");
        assert!(
            fs::metadata(&b).map(|m| m.len()).ok() != Some(size),
            "the failed platform's layer is left: {}",
            e.path().display()
        );
    }
    assert!(
        layers > 0,
        "the first platform's layers stay, as build cache"
    );
}
