//! End-to-end tests of `brig-build`: each Dockerfile instruction checked on the produced image,
//! multi-stage builds, RUN through brig (and runc), failures naming `Dockerfile:LINE` and
//! leaving the store untouched, hostile base layers, and outputs read by skopeo, umoci and
//! podman when they are installed.
//!
//! The base image (a busybox rootfs as an OCI layout, `oci-layout://DIR:base`) and the other
//! helpers live in `brig_tests::builder`, shared with the other builder_* files.

use brig_tests::builder::*;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn blob_count(store: &Path) -> usize {
    fs::read_dir(store.join("blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn metadata_instructions_land_in_the_config() {
    if !ready("metadata_instructions_land_in_the_config") {
        return;
    }
    let df = format!(
        r#"ARG TAGGED=one
{from}
ARG TAGGED
ARG LATE=dflt
ENV A=1 B="two words"
ENV C=${{A}}-${{UNSET:-d}}-${{A:+alt}} D=$LATE-$TAGGED
LABEL org.example.k="v w" plain=x
WORKDIR /srv
WORKDIR sub
USER 1000:1000
EXPOSE 80 53/udp
VOLUME ["/data", "/cache"]
STOPSIGNAL SIGTERM
SHELL ["/bin/sh", "-ec"]
ENTRYPOINT ["/bin/echo"]
CMD echo shell form
HEALTHCHECK --interval=30s --retries=3 CMD wget -q localhost
MAINTAINER someone
"#,
        from = from_base()
    );
    let c = Ctx::new(&df);
    let img = c.build_oci(&["--build-arg", "LATE=given", "--label", "extra=1"]);
    let cfg = &img.config["config"];
    let env: Vec<&str> = cfg["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"A=1"), "{env:?}");
    assert!(env.contains(&"B=two words"), "{env:?}");
    assert!(env.contains(&"C=1-d-alt"), "{env:?}");
    assert!(env.contains(&"D=given-one"), "{env:?}");
    assert_eq!(cfg["Labels"]["org.example.k"], "v w");
    assert_eq!(cfg["Labels"]["plain"], "x");
    assert_eq!(cfg["Labels"]["extra"], "1");
    assert_eq!(cfg["WorkingDir"], "/srv/sub");
    assert_eq!(cfg["User"], "1000:1000");
    assert!(cfg["ExposedPorts"]["80/tcp"].is_object());
    assert!(cfg["ExposedPorts"]["53/udp"].is_object());
    assert!(cfg["Volumes"]["/data"].is_object() && cfg["Volumes"]["/cache"].is_object());
    assert_eq!(cfg["StopSignal"], "SIGTERM");
    assert_eq!(cfg["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/bin/echo"]));
    assert_eq!(
        cfg["Cmd"],
        serde_json::json!(["/bin/sh", "-ec", "echo shell form"])
    );
    assert_eq!(
        cfg["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "wget -q localhost"])
    );
    assert_eq!(cfg["Healthcheck"]["Interval"], 30_000_000_000u64);
    assert_eq!(cfg["Healthcheck"]["Retries"], 3);
    assert_eq!(img.config["author"], "someone");
    // Metadata only but for WORKDIR, which makes /srv and /srv/sub (a layer each, as
    // BuildKit): the base layer and those two, every other new history entry empty.
    assert_eq!(img.layers(), 3);
    assert_eq!(
        img.config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        3
    );
    let hist = img.config["history"].as_array().unwrap();
    assert_eq!(
        hist.iter().filter(|h| h["empty_layer"] != true).count(),
        3,
        "{hist:?}"
    );
    assert!(hist
        .iter()
        .any(|h| h["created_by"] == "ENV A=1 B=two words"));
}

#[test]
fn run_writes_deletes_and_chowns() {
    if !ready("run_writes_deletes_and_chowns") {
        return;
    }
    run_steps(&binary_path());
}

#[test]
fn run_steps_with_runc_underneath() {
    if !ready("run_steps_with_runc_underneath") {
        return;
    }
    if !Path::new("/usr/sbin/runc").is_file() {
        println!("SKIP run_steps_with_runc_underneath: /usr/sbin/runc not installed");
        return;
    }
    run_steps(Path::new("/usr/sbin/runc"));
}

/// crun 1.8 refuses this host's hybrid cgroups ("cgroups in hybrid mode not supported"): the
/// wrapper runs it in a private mount namespace without the cgroup2 mount at
/// /sys/fs/cgroup/unified, so crun sees cgroup v1 only; the host's mounts are not touched.
#[test]
fn run_steps_with_crun_underneath() {
    if !ready("run_steps_with_crun_underneath") {
        return;
    }
    if !Path::new("/usr/bin/crun").is_file() {
        println!("SKIP run_steps_with_crun_underneath: /usr/bin/crun not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("crun");
    fs::write(
        &wrapper,
        "#!/bin/sh\nexec unshare -m sh -c \
         'umount /sys/fs/cgroup/unified 2>/dev/null; exec /usr/bin/crun \"$@\"' crun \"$@\"\n",
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    run_steps(&wrapper);
}

fn run_steps(runtime: &Path) {
    let df = format!(
        "{}\nENV WHO=builder\nRUN echo \"hi $WHO\" > /tmp/new && mkdir -p /opt/d && echo x > /opt/d/f && ln /tmp/new /tmp/hard\nRUN rm /bin/vi && rm -r /opt/d && mkdir /opt/d && chown 1000:1000 /tmp/new && chmod 0640 /tmp/new\nWORKDIR /w\nRUN pwd > here && id -u > uid\n",
        from_base()
    );
    let c = Ctx::new(&df);
    let dest = format!("type=oci,dest={},name=t:1", c.path("oci").display());
    c.build_with(runtime, &["-o", &dest]).assert_ok();
    let img = Image::open(&c.path("oci"), "1");
    // Base, two RUNs, WORKDIR's mkdir of /w, the last RUN.
    assert_eq!(img.layers(), 5);
    let l1 = img.layer_listing(1).join("\n");
    assert!(l1.contains("tmp/new"), "{l1}");
    assert!(
        l1.contains("tmp/hard link to tmp/new") || l1.contains("tmp/new link to tmp/hard"),
        "hard link kept: {l1}"
    );
    assert!(
        !l1.contains(" proc/") && !l1.contains(" dev/") && !l1.contains("resolv.conf"),
        "mount points leaked: {l1}"
    );
    // One of the two names is the hard link entry (no data), the other the file.
    let data = img.layer_file(1, "tmp/new") + &img.layer_file(1, "tmp/hard");
    assert_eq!(data, "hi builder\n");
    let l2 = img.layer_listing(2).join("\n");
    assert!(
        l2.contains("bin/.wh.vi"),
        "whiteout for a deleted file: {l2}"
    );
    assert!(
        l2.contains("opt/d/.wh..wh..opq"),
        "opaque dir for a recreated dir: {l2}"
    );
    assert!(
        l2.lines()
            .any(|l| l.starts_with("-rw-r----- 1000/1000") && l.ends_with("tmp/new")),
        "chown and chmod kept: {l2}"
    );
    assert!(listed(&img.layer_listing(3), "w/").starts_with("drwxr-xr-x 0/0 "));
    assert_eq!(img.layer_file(4, "w/here"), "/w\n");
    assert_eq!(img.layer_file(4, "w/uid"), "0\n");
}

#[test]
fn multi_stage_builds_only_what_the_target_needs() {
    if !ready("multi_stage_builds_only_what_the_target_needs") {
        return;
    }
    let df = format!(
        "{from} AS build\nRUN echo built > /artifact && chown 5:6 /artifact\n\n{from} AS unused\nRUN exit 3\n\nFROM scratch AS final\nCOPY --from=build /artifact /out/\nCOPY --from=0 --chown=7:8 /artifact /out/owned\n",
        from = from_base()
    );
    let c = Ctx::new(&df);
    let img = c.build_oci(&[]);
    assert_eq!(img.layers(), 2);
    // COPY --from keeps the owners of the stage's files (docker since moby#38599, BuildKit,
    // buildah); --chown overrides them.
    let l = img.layer_listing(0).join("\n");
    assert!(
        l.lines()
            .any(|l| l.contains(" 5/6 ") && l.ends_with("out/artifact")),
        "{l}"
    );
    assert!(img.layer_listing(1).join("\n").contains("7/8"), "--chown");
    assert_eq!(img.layer_file(0, "out/artifact"), "built\n");
    // --target picks the failing stage: now it runs and fails.
    let out = c.build(&["--target", "unused"]);
    out.assert_fail();
    assert!(out.stderr.contains("Dockerfile:5:"), "{out}");
}

/// Identical layers (two `RUN true`, the same COPY twice) share one unpacked directory, which
/// overlayfs refused to take twice as a lower layer ("Too many levels of symbolic links"). The
/// image still has every layer and history entry, as BuildKit's has.
#[test]
fn identical_layers_in_a_row_then_run() {
    if !ready("identical_layers_in_a_row_then_run") {
        return;
    }
    let diff_ids = |img: &Image| -> Vec<String> {
        img.config["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect()
    };
    let layer_history = |img: &Image| {
        img.config["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["empty_layer"] != true)
            .count()
    };
    // SOURCE_DATE_EPOCH clamps mtimes: each `RUN true` layer holds `etc/` (the runtime's
    // mount points touch it), equal in both only when their mtimes are.
    let sde = ["--source-date-epoch", "1700000000"];
    // Two empty RUN layers, then a RUN that writes.
    let c = Ctx::new(&format!(
        "{}\nRUN true\nRUN true\nRUN echo hi > /x\n",
        from_base()
    ));
    let img = c.build_oci(&sde);
    assert_eq!(img.layers(), 4);
    assert_eq!(layer_history(&img), 4);
    let ids = diff_ids(&img);
    assert_eq!(
        ids[1], ids[2],
        "both RUN true layers are the same (empty) layer"
    );
    assert_eq!(img.layer_file(-1, "x"), "hi\n");
    // The same COPY twice, then a RUN; and the same layer again further up (not adjacent).
    let c = Ctx::new(&format!(
        "{}\nCOPY a /a\nCOPY a /a\nRUN cat /a > /y\nCOPY a /a\nRUN cat /a /y > /z\n",
        from_base()
    ));
    c.write("a", "same\n");
    let img = c.build_oci(&sde);
    assert_eq!(img.layers(), 6);
    assert_eq!(layer_history(&img), 6);
    let ids = diff_ids(&img);
    assert!(ids[1] == ids[2] && ids[2] == ids[4], "{ids:?}");
    assert_eq!(img.layer_file(3, "y"), "same\n");
    assert_eq!(img.layer_file(-1, "z"), "same\nsame\n");
}

/// A stage of 60 layers, then a RUN: the lowerdir of the RUN's overlay, with the store's absolute
/// layer paths, is longer than the page of mount options the kernel takes (it failed with a
/// misleading ENOENT: the kernel cut the last path). BuildKit builds such Dockerfiles.
#[test]
fn many_layers_then_run() {
    if !ready("many_layers_then_run") {
        return;
    }
    let mut df = from_base();
    for i in 0..60 {
        df.push_str(&format!("\nCOPY f{i} /l/"));
    }
    df.push_str("\nRUN ls /l | wc -l > /count && cat /l/f0 /l/f59 >> /count\n");
    let c = Ctx::new(&df);
    for i in 0..60 {
        c.write(&format!("f{i}"), &format!("{i}\n"));
    }
    let img = c.build_oci(&[]);
    assert_eq!(img.layers(), 62);
    assert_eq!(img.layer_file(-1, "count"), "60\n0\n59\n");
    // The links the long mount went through are gone.
    let left = run(Command::new("find")
        .arg(c.store())
        .args(["-name", ".lowers-*"]));
    left.assert_ok();
    assert!(left.stdout.is_empty(), "{left}");
}

#[test]
fn copy_add_rules() {
    if !ready("copy_add_rules") {
        return;
    }
    let df = format!(
        "{}\nCOPY --chmod=755 a.sh b.txt /dst/\nCOPY dir /tree\nCOPY *.md /docs/\nADD arch.tar.gz /x/\nADD arch.tar.gz /raw.tgz.d/\nCOPY <<EOF /inline\nhello heredoc\nEOF\n",
        from_base()
    );
    let c = Ctx::new(&df);
    c.write("a.sh", "#!/bin/sh\n");
    c.write("b.txt", "b");
    c.write("dir/sub/f", "f");
    c.write("dir/secret.key", "no");
    c.write("one.md", "1");
    c.write("two.md", "2");
    c.write(".dockerignore", "dir/*.key\n");
    let src = c.path("arch");
    fs::create_dir_all(src.join("in")).unwrap();
    fs::write(src.join("in/file"), "from tar").unwrap();
    run(Command::new("tar")
        .arg("-czf")
        .arg(c.ctx().join("arch.tar.gz"))
        .arg("-C")
        .arg(&src)
        .arg("in"))
    .assert_ok();
    let img = c.build_oci(&[]);
    let l = |i| img.layer_listing(i).join("\n");
    assert!(
        l(1).contains("-rwxr-xr-x 0/0") && l(1).contains("dst/b.txt"),
        "{}",
        l(1)
    );
    assert!(
        l(2).contains("tree/sub/f") && !l(2).contains("secret.key"),
        "{}",
        l(2)
    );
    assert!(
        l(3).contains("docs/one.md") && l(3).contains("docs/two.md"),
        "{}",
        l(3)
    );
    assert_eq!(img.layer_file(4, "x/in/file"), "from tar");
    assert_eq!(img.layer_file(6, "inline"), "hello heredoc\n");
}

#[test]
fn run_failure_names_the_line_and_leaves_nothing() {
    if !ready("run_failure_names_the_line_and_leaves_nothing") {
        return;
    }
    let c = Ctx::new(&format!(
        "{}\nRUN echo ok > /a\n\nRUN exit 7\n",
        from_base()
    ));
    // One successful build first so the store exists.
    let ok = Ctx::new(&format!("{}\n", from_base()));
    let _ = ok;
    let before_blobs = blob_count(&c.store());
    let out = c.build(&["-t", "failing:1"]);
    out.assert_fail();
    assert!(out.stderr.contains("Dockerfile:4:"), "{out}");
    assert!(
        out.stderr.contains("exit 7") && out.stderr.contains(": 7"),
        "{out}"
    );
    let idx: Value =
        serde_json::from_slice(&fs::read(c.store().join("index.json")).unwrap()).unwrap();
    assert_eq!(
        idx["manifests"].as_array().unwrap().len(),
        0,
        "no image recorded: {idx}"
    );
    // The base image's blobs were imported; nothing the failed build wrote stays.
    let after: Vec<String> = fs::read_dir(c.store().join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        after.len() <= 1,
        "only the base layer may stay unpacked: {after:?}"
    );
    assert!(
        blob_count(&c.store()) <= before_blobs + 3,
        "base manifest, config, layer at most"
    );
    let tmp: Vec<_> = fs::read_dir(c.store().join("tmp")).unwrap().collect();
    assert!(
        tmp.iter().all(|e| !e.as_ref().unwrap().path().is_dir()),
        "work dirs removed: {tmp:?}"
    );
    let images = run(Command::new(builder_path())
        .arg("--store")
        .arg(c.store())
        .arg("images"));
    assert!(!images.stdout.contains("failing"), "{images}");
}

#[test]
fn bad_dockerfiles_name_the_line() {
    if !ready("bad_dockerfiles_name_the_line") {
        return;
    }
    for (df, want) in [
        (
            "FROM scratch\n\nFROBNICATE x\n",
            "Dockerfile:3: unknown instruction: FROBNICATE",
        ),
        (
            "FROM scratch\nCOPY onlyone\n",
            "Dockerfile:2: COPY needs at least two arguments",
        ),
        ("FROM scratch\nENV\n", "Dockerfile:2: ENV needs"),
        (
            "FROM scratch\nCOPY --from=nowhere /a /b\n",
            "Dockerfile:2: COPY --from=nowhere: no stage named",
        ),
        (
            "FROM scratch\nRUN <<EOF\nnever closed\n",
            "Dockerfile:2: unterminated heredoc",
        ),
        (
            "FROM scratch\nENV A=\"unterminated\n",
            "Dockerfile:2: ENV: unterminated quote",
        ),
        (
            "FROM scratch\nUSER nobody-here\nRUN true\n",
            "Dockerfile:3: unable to find user nobody-here",
        ),
    ] {
        let c = Ctx::new(df);
        let out = c.build(&[]);
        out.assert_fail();
        assert!(out.stderr.contains(want), "want {want:?}: {out}");
    }
}

/// Runaway Dockerfiles are refused with the limit and the line named, instead of growing
/// memory without bound: a doubling ARG chain, a repeated big ENV, a huge instruction, and
/// bytes that are not UTF-8.
#[test]
fn dockerfile_limits_and_bad_bytes_name_the_line() {
    if !ready("dockerfile_limits_and_bad_bytes_name_the_line") {
        return;
    }
    let check = |df: &[u8], want: &[&str]| {
        let c = Ctx::new("");
        fs::write(c.ctx().join("Dockerfile"), df).unwrap();
        let out = c.build(&[]);
        out.assert_fail();
        for w in want {
            assert!(out.stderr.contains(w), "want {w:?}: {out}");
        }
    };
    // Each ARG doubles the last: L11 is the first over 1 MiB (1000 * 2^11 bytes).
    let mut chain = format!("FROM scratch\nARG L0={}\n", "x".repeat(1000));
    for n in 1..=12 {
        chain += &format!("ARG L{n}=${{L{p}}}${{L{p}}}\n", p = n - 1);
    }
    check(chain.as_bytes(), &["Dockerfile:13: ", "MAX_EXPANDED_WORD"]);
    // A 1 MiB value set again and again: the config (ENV, history) would grow a MiB a line.
    let mut repeat = format!("FROM scratch\nARG B0={}\n", "y".repeat(1000));
    for n in 1..=10 {
        repeat += &format!("ARG B{n}=${{B{p}}}${{B{p}}}\n", p = n - 1);
    }
    repeat += &"ENV A=$B10\n".repeat(20);
    check(repeat.as_bytes(), &["MAX_STAGE_TEXT"]);
    // One instruction of 2 MiB, continued over two lines.
    let half = "z".repeat(1 << 20);
    check(
        format!("FROM scratch\n\nRUN echo {half} \\\n {half}\n").as_bytes(),
        &[
            "Dockerfile:3: instruction longer than",
            "MAX_INSTRUCTION_BYTES",
        ],
    );
    // Invalid UTF-8: the line, column and offset of the first bad byte.
    check(
        b"FROM scratch\nLABEL a=b\nLABEL c=\xff\n",
        &["Dockerfile:3: invalid UTF-8: byte 0xff at column 9 (byte offset 31 in the file)"],
    );
}

/// Writes an OCI layout whose single layer is the tar `members` made by python's tarfile.
fn hostile_layout(dir: &Path, members: &str) {
    let script = format!(
        r#"
import tarfile, io, gzip, hashlib, json, os, sys
d = sys.argv[1]
os.makedirs(d + "/blobs/sha256", exist_ok=True)
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
    def add(name, kind="f", data=b"pwned", link=""):
        i = tarfile.TarInfo(name)
        if kind == "f":
            i.size = len(data); t.addfile(i, io.BytesIO(data))
        elif kind == "d":
            i.type = tarfile.DIRTYPE; i.mode = 0o755; t.addfile(i)
        elif kind == "l":
            i.type = tarfile.SYMTYPE; i.linkname = link; t.addfile(i)
        elif kind == "h":
            i.type = tarfile.LNKTYPE; i.linkname = link; t.addfile(i)
{members}
raw = buf.getvalue()
gz = gzip.compress(raw, mtime=0)
def put(b):
    h = hashlib.sha256(b).hexdigest()
    open(d + "/blobs/sha256/" + h, "wb").write(b)
    return "sha256:" + h, len(b)
ld, ls = put(gz)
cfg = json.dumps({{"architecture": "amd64", "os": "linux", "config": {{}},
    "rootfs": {{"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]}}}}).encode()
cd, cs = put(cfg)
man = json.dumps({{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs}},
    "layers": [{{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": ls}}]}}).encode()
md, ms = put(man)
json.dump({{"schemaVersion": 2, "manifests": [{{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": md, "size": ms, "annotations": {{"org.opencontainers.image.ref.name": "evil"}}}}]}}, open(d + "/index.json", "w"))
open(d + "/oci-layout", "w").write('{{"imageLayoutVersion":"1.0.0"}}')
"#
    );
    run(Command::new("python3").arg("-c").arg(script).arg(dir)).assert_ok();
}

#[test]
fn hostile_base_layers_are_rejected_or_contained() {
    if !ready("hostile_base_layers_are_rejected_or_contained") {
        return;
    }
    if !have("python3") {
        println!("SKIP hostile_base_layers_are_rejected_or_contained: python3 not installed");
        return;
    }
    let host = tempfile::Builder::new()
        .prefix("brig-host-victim-")
        .tempdir()
        .unwrap();
    let victim = host.path().display().to_string();
    // 1. `..` escapes are refused, naming the layer entry.
    let c = Ctx::new("FROM scratch\n");
    let depth = "../".repeat(20);
    hostile_layout(
        &c.path("evil1"),
        &format!(
            "    add('{depth}{}/dotdot')",
            victim.trim_start_matches('/')
        ),
    );
    c.write(
        "Dockerfile",
        &format!("FROM oci-layout://{}:evil\n", c.path("evil1").display()),
    );
    let out = c.build(&[]);
    out.assert_fail();
    assert!(
        out.stderr.contains("Dockerfile:1:") && out.stderr.contains("'..'"),
        "{out}"
    );
    assert!(!host.path().join("dotdot").exists());
    // 2. Absolute names and writes through symlinks stay inside the layer.
    hostile_layout(
        &c.path("evil2"),
        &format!(
            "    add('{victim}/absolute')\n    add('esc', 'l', link='{victim}')\n    add('esc/through-symlink')\n    add('rel', 'l', link='../../../../../../../..{victim}')\n    add('rel/through-relative')\n    add('hl', 'h', link='{victim}/absolute')"
        ),
    );
    c.write(
        "Dockerfile",
        &format!(
            "FROM oci-layout://{}:evil\nCOPY x /x\n",
            c.path("evil2").display()
        ),
    );
    c.write("x", "x");
    let out = c.build(&[]);
    let left: Vec<_> = fs::read_dir(host.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "files written on the host: {left:?}\n{out}"
    );
    out.assert_ok();
    let inside = fs::read_dir(c.store().join("layers"))
        .unwrap()
        .map(|e| e.unwrap().path().join(victim.trim_start_matches('/')))
        .find(|p| p.is_dir())
        .expect("the hostile layer is unpacked in the store");
    assert!(
        inside.join("absolute").is_file(),
        "absolute name contained in the layer"
    );
    assert!(
        inside.join("through-symlink").is_file(),
        "symlink write contained"
    );
    assert!(
        inside.join("through-relative").is_file(),
        "relative symlink write contained"
    );
}

#[test]
fn outputs_are_read_by_skopeo_umoci_and_podman() {
    if !ready("outputs_are_read_by_skopeo_umoci_and_podman") {
        return;
    }
    let c = Ctx::new(&format!(
        "{}\nRUN echo peer-ok > /msg\nCMD [\"cat\", \"/msg\"]\n",
        from_base()
    ));
    let oci = c.path("oci");
    let arch = c.path("img.oci.tar");
    let dock = c.path("img.docker.tar");
    c.build(&[
        "-t",
        "localhost/brig-peer:v1",
        "-o",
        &format!("type=oci,dest={}", oci.display()),
        "-o",
        &format!("type=oci-archive,dest={}", arch.display()),
        "-o",
        &format!("type=docker-archive,dest={}", dock.display()),
    ])
    .assert_ok();
    // Our own store lists it.
    let images = run(Command::new(builder_path())
        .arg("--store")
        .arg(c.store())
        .arg("images"));
    assert!(images.stdout.contains("localhost/brig-peer:v1"), "{images}");
    if have("skopeo") {
        let out = run(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:v1", oci.display())));
        out.assert_ok();
        assert!(out.stdout.contains("\"Architecture\": \"amd64\""), "{out}");
        run(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}", arch.display())))
        .assert_ok();
    } else {
        println!("SKIP skopeo checks: skopeo not installed");
    }
    if have("umoci") {
        let b = c.path("umoci-bundle");
        run(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:v1", oci.display()))
            .arg(&b))
        .assert_ok();
        assert_eq!(
            fs::read_to_string(b.join("rootfs/msg")).unwrap(),
            "peer-ok\n"
        );
        assert!(b.join("rootfs/bin/busybox").is_file());
    } else {
        println!("SKIP umoci checks: umoci not installed");
    }
    if have("podman") {
        let root = c.path("podman-root");
        let runroot = c.path("podman-run");
        let podman = |args: &[&str]| {
            run(Command::new("podman")
                .arg("--root")
                .arg(&root)
                .arg("--runroot")
                .arg(&runroot)
                .arg("--storage-driver")
                .arg("vfs")
                .arg("--runtime")
                .arg("/usr/sbin/runc")
                .args(args))
        };
        let out = podman(&["load", "-i", dock.to_str().unwrap()]);
        out.assert_ok();
        // The host lacks CAP_SYS_RESOURCE: podman's default rlimits would fail to apply.
        let out = podman(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            "localhost/brig-peer:v1",
        ]);
        out.assert_ok();
        assert_eq!(out.out(), "peer-ok", "{out}");
        let _ = podman(&["rmi", "-a", "-f"]);
    } else {
        println!("SKIP podman checks: podman not installed");
    }
    // rm removes the name and what only it used.
    run(Command::new(builder_path())
        .arg("--store")
        .arg(c.store())
        .args(["rm", "localhost/brig-peer:v1"]))
    .assert_ok();
    let images = run(Command::new(builder_path())
        .arg("--store")
        .arg(c.store())
        .arg("images"));
    assert!(!images.stdout.contains("brig-peer"), "{images}");
    // The build cache still holds the RUN layer; prune drops it and what only it used.
    assert!(
        blob_count(&c.store()) <= 1,
        "gc left blobs besides the cached layer"
    );
    run(Command::new(builder_path())
        .arg("--store")
        .arg(c.store())
        .arg("prune"))
    .assert_ok();
    assert_eq!(blob_count(&c.store()), 0, "prune left blobs");
}

#[test]
fn skopeo_copies_the_layout_and_ctr_imports_the_archive() {
    if !ready("skopeo_copies_the_layout_and_ctr_imports_the_archive") {
        return;
    }
    let c = Ctx::new(&format!(
        "{}\nRUN echo ctr-ok > /msg\nCMD [\"cat\", \"/msg\"]\n",
        from_base()
    ));
    let oci = c.path("oci");
    let arch = c.path("img.oci.tar");
    let name = "docker.io/brigtest/built:v1";
    c.build(&[
        "-t",
        name,
        "-o",
        &format!("type=oci,dest={}", oci.display()),
        "-o",
        &format!("type=oci-archive,dest={}", arch.display()),
    ])
    .assert_ok();
    let ours = Image::open(&oci, "v1");
    // skopeo: OCI layout → docker-archive, which keeps the name and the layers' diffIDs.
    if have("skopeo") {
        let dock = c.path("skopeo.docker.tar");
        run(Command::new("skopeo")
            .arg("copy")
            .arg(format!("oci:{}:v1", oci.display()))
            .arg(format!("docker-archive:{}:{name}", dock.display())))
        .assert_ok();
        let out = run(Command::new("tar")
            .arg("-xOf")
            .arg(&dock)
            .arg("manifest.json"));
        out.assert_ok();
        let m: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(m[0]["RepoTags"][0], name, "{m}");
        let out = run(Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("docker-archive:{}", dock.display())));
        out.assert_ok();
        let cfg: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(cfg["rootfs"]["diff_ids"], ours.config["rootfs"]["diff_ids"]);
        assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["cat", "/msg"]));
    } else {
        println!("SKIP skopeo copy: skopeo not installed");
    }
    // ctr: import the oci-archive into a containerd of our own and run it through our shim.
    if !brig_tests::shim_path().is_file() {
        println!(
            "SKIP ctr image import: shim {} not built (cargo build -p containerd-shim-brig-v2, or \
             BRIG_SHIM=PATH)",
            brig_tests::shim_path().display()
        );
        return;
    }
    let ctrd = match brig_tests::Containerd::start() {
        Ok(c) => c,
        Err(why) => {
            println!("SKIP ctr image import: {why}");
            return;
        }
    };
    ctrd.ctr(&["image", "import", arch.to_str().unwrap()])
        .assert_ok();
    let ls = ctrd.ctr(&["image", "ls", "-q"]);
    assert!(ls.stdout.lines().any(|l| l == name), "{ls}");
    let id = brig_tests::unique("built");
    let out = ctrd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        "io.containerd.brig.v2",
        name,
        &id,
    ]);
    out.assert_ok();
    assert_eq!(out.out(), "ctr-ok", "{out}");
}

/// ENV names are words as their values are (BuildKit and docker expand and unquote both):
/// `ENV "BUILD_LOGLEVEL"="5"` sets BUILD_LOGLEVEL, not `"BUILD_LOGLEVEL"`; so do single
/// quotes and the legacy `ENV "NAME" value` form, and a later `$NAME` sees the value.
#[test]
fn env_names_lose_their_quotes() {
    if !ready("env_names_lose_their_quotes") {
        return;
    }
    let c = Ctx::new(&format!(
        "{}\nENV \"BUILD_LOGLEVEL\"=\"5\"\nENV 'SQ'=v\nENV \"OLD\" legacy value\nRUN echo \"$BUILD_LOGLEVEL $SQ $OLD\" > /seen\n",
        from_base()
    ));
    let img = c.build_oci(&[]);
    let env: Vec<&str> = img.config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for want in ["BUILD_LOGLEVEL=5", "SQ=v", "OLD=legacy value"] {
        assert!(env.contains(&want), "{want} not in {env:?}");
    }
    assert!(!env.iter().any(|e| e.contains(['"', '\''])), "{env:?}");
    assert_eq!(img.layer_file(-1, "seen"), "5 v legacy value\n");
}

/// Among several COPY/ADD sources, a wildcard that matches nothing is no error while another
/// source matches (BuildKit allows empty wildcards; the legacy docker builder failed the
/// step); when nothing at all matches, the step still fails naming the wildcard and the line.
#[test]
fn an_empty_wildcard_beside_a_match_is_no_error() {
    if !ready("an_empty_wildcard_beside_a_match_is_no_error") {
        return;
    }
    let c = Ctx::new(&format!(
        "{}\nCOPY a.txt nothing*.txt /dst/\nADD none?.tar *.md /add/\n",
        from_base()
    ));
    c.write("a.txt", "a");
    c.write("r.md", "r");
    let img = c.build_oci(&[]);
    assert_eq!(img.layer_file(-2, "dst/a.txt"), "a");
    assert_eq!(img.layer_file(-1, "add/r.md"), "r");

    let c = Ctx::new(&format!(
        "{}\nCOPY a.txt /a\nCOPY nothing* none?.txt /dst/\n",
        from_base()
    ));
    c.write("a.txt", "a");
    let out = c.build(&[]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("Dockerfile:3: COPY failed: no source files were specified by \"nothing*\""),
        "{}",
        out.stderr
    );
}

/// The `tar -tv` line of `path` (`dir/` for a directory) in a listing.
fn listed<'a>(listing: &'a [String], path: &str) -> &'a str {
    listing
        .iter()
        .find(|l| {
            l.split_whitespace()
                .last()
                .map(|n| n.trim_start_matches("./"))
                == Some(path)
        })
        .unwrap_or_else(|| panic!("{path} not in {listing:#?}"))
}

/// COPY of a directory into a directory the image already has keeps that directory's owner
/// and mode; only what is copied takes `--chown` (or 0:0 without it), as BuildKit (fsutil
/// copies the top directory's metadata only when it creates it) and docker do.
#[test]
fn copy_into_an_existing_directory_keeps_its_owner_and_mode() {
    if !ready("copy_into_an_existing_directory_keeps_its_owner_and_mode") {
        return;
    }
    let c = Ctx::new(&format!(
        "{}\nRUN mkdir /subdir /owned && chmod 750 /subdir && chown 99:99 /owned && chmod 700 /owned\nCOPY --chown=99:99 subdir/ subdir/\nCOPY owned/ /owned/\n",
        from_base()
    ));
    c.write("subdir/f", "f");
    c.write("owned/g", "g");
    let img = c.build_oci(&[]);
    let chowned = img.layer_listing(-2);
    assert!(
        listed(&chowned, "subdir/").starts_with("drwxr-x--- 0/0 "),
        "{chowned:#?}"
    );
    assert!(
        listed(&chowned, "subdir/f").contains(" 99/99 "),
        "{chowned:#?}"
    );
    let plain = img.layer_listing(-1);
    assert!(
        listed(&plain, "owned/").starts_with("drwx------ 99/99 "),
        "{plain:#?}"
    );
    assert!(listed(&plain, "owned/g").contains(" 0/0 "), "{plain:#?}");
}

/// WORKDIR makes its directory at its own step, as BuildKit does (a mkdir layer; the legacy
/// builder made it owned by root, we follow BuildKit): missing components belong to the
/// current USER as BuildKit resolves it (a numeric user is its own group, a name takes its
/// passwd uid and group), so a later `COPY f /subdir` lands inside the directory and a last
/// `WORKDIR /new` leaves /new in the last layer. WorkingDir keeps an absolute path as written (`/app/` stays `/app/`).
#[test]
fn workdir_makes_its_directory_owned_by_the_user() {
    if !ready("workdir_makes_its_directory_owned_by_the_user") {
        return;
    }
    let c = Ctx::new(&format!(
        "{}\nUSER 4242\nWORKDIR /subdir\nCOPY f /subdir\nUSER nobody\nWORKDIR /new\n",
        from_base()
    ));
    c.write("f", "f");
    let img = c.build_oci(&[]);
    assert_eq!(img.config["config"]["WorkingDir"], "/new");
    let made = img.layer_listing(1);
    assert!(
        listed(&made, "subdir/").starts_with("drwxr-xr-x 4242/4242 "),
        "{made:#?}"
    );
    assert_eq!(img.layer_file(2, "subdir/f"), "f");
    let last = img.layer_listing(-1);
    assert!(
        listed(&last, "new/").starts_with("drwxr-xr-x 65534/65534 "),
        "{last:#?}"
    );
    // From the cache: the same layers and config.
    let again = c.build_oci(&[]);
    assert_eq!(again.manifest, img.manifest);

    let c = Ctx::new(&format!("{}\nWORKDIR /app/\nWORKDIR sub/\n", from_base()));
    let img = c.build_oci(&[]);
    assert_eq!(img.config["config"]["WorkingDir"], "/app/sub");
    assert_eq!(img.layers(), 3);
    assert!(listed(&img.layer_listing(1), "app/").starts_with("drwxr-xr-x 0/0 "));
    let c = Ctx::new(&format!("{}\nWORKDIR /app/\n", from_base()));
    assert_eq!(c.build_oci(&[]).config["config"]["WorkingDir"], "/app/");
}
