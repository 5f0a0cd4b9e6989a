//! End-to-end tests of what brig-build gives where BuildKit and it used to differ (issue 19):
//! destinations through symlinks, `.dockerignore` exceptions, xattrs, cache mounts seeded from
//! a stage. Each builds on the busybox base and checks the image, mostly with RUN steps that
//! fail the build when a file is not where BuildKit puts it. Where BuildKit and docker's legacy
//! builder differ, BuildKit is followed and the test says so.

use brig_tests::builder::*;
use std::fs;
use std::os::unix::fs::symlink;
use std::process::Command;

/// Every destination is resolved inside the image with its symlinks followed (BuildKit's
/// RootPath); an ADD'ed archive is extracted with its destination as root.
#[test]
fn destinations_resolve_symlinks_inside_the_image() {
    if !ready("destinations_resolve_symlinks_inside_the_image") {
        return;
    }
    let c = Ctx::new(&format!(
        r#"{}
RUN mkdir /dir
# The archive holds `link -> ..` and then `link/etc/myfile`: the file lands under /dir.
ADD a.tar /dir
RUN test -f /dir/etc/myfile && test ! -e /etc/myfile
# A dangling link as destination: its target is made (docker and BuildKit).
RUN ln -s /made /dangling && ln -s /nowhere /symlink && mkdir -p /real/sub && ln -s /real /wdlink
COPY f /dangling
RUN test -L /dangling && test "$(cat /made)" = f
# `/symlink/..` is `/` as written, wherever the link points.
ADD f /symlink/..
RUN test "$(cat /f)" = f && test ! -e /nowhere
# WORKDIR through a link, then COPY into it.
WORKDIR /wdlink/w
COPY f ./
RUN test "$(cat /real/w/f)" = f
"#,
        from_base()
    ));
    c.write("f", "f");
    // A tar whose first entry is `link -> ..` and whose second is `link/etc/myfile`.
    let a = c.path("arc-a");
    let b = c.path("arc-b");
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(b.join("link/etc")).unwrap();
    symlink("..", a.join("link")).unwrap();
    fs::write(b.join("link/etc/myfile"), "mine\n").unwrap();
    let tar = c.ctx().join("a.tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&a)
        .arg("link"))
    .assert_ok();
    run(Command::new("tar")
        .arg("-rf")
        .arg(&tar)
        .arg("-C")
        .arg(&b)
        .arg("link/etc/myfile"))
    .assert_ok();
    let img = c.build_oci(&["--no-cache"]);
    assert_eq!(img.layer_file(2, "dir/etc/myfile"), "mine\n");
}

/// `.dockerignore` exceptions under excluded directories re-include their files (moby's
/// patternmatcher, BuildKit's fsutil walk): with `**`, alternating lines, two levels down, and
/// a COPY naming the excluded directory itself.
#[test]
fn dockerignore_exceptions_reach_into_excluded_directories() {
    if !ready("dockerignore_exceptions_reach_into_excluded_directories") {
        return;
    }
    let c = Ctx::new(&format!(
        r#"{}
COPY . /ctx/
COPY folder1 /f1
RUN test -f /ctx/folder1/keep && test ! -e /ctx/folder1/drop \
 && test -f /ctx/x/important.log && test ! -e /ctx/x/y.log \
 && test ! -e /ctx/a/top && test -f /ctx/a/b/f && test ! -e /ctx/a/b/c/y && test -f /ctx/a/b/c/d \
 && test -f /f1/keep && test ! -e /f1/drop
"#,
        from_base()
    ));
    c.write(
        ".dockerignore",
        "folder1\n!folder1/keep\n**/*.log\n!**/important.log\na\n!a/b\na/b/c\n!a/b/c/d\n",
    );
    for f in [
        "folder1/keep",
        "folder1/drop",
        "x/y.log",
        "x/important.log",
        "a/top",
        "a/b/f",
        "a/b/c/y",
        "a/b/c/d",
    ] {
        c.write(f, f);
    }
    let img = c.build_oci(&[]);
    assert_eq!(img.layer_file(1, "ctx/a/b/c/d"), "a/b/c/d");
    // A change to a re-included file is a cache miss.
    c.write("a/b/c/d", "changed");
    let again = c.build_oci(&[]);
    assert_eq!(again.layer_file(1, "ctx/a/b/c/d"), "changed");
}

/// The xattrs of entry `path` in layer `i` of `img` (PAX SCHILY.xattr records).
fn layer_xattrs(img: &Image, i: isize, path: &str) -> Vec<(String, Vec<u8>)> {
    let n = img.layers() as isize;
    let i = if i < 0 { n + i } else { i } as usize;
    let d = img.manifest["layers"][i]["digest"].as_str().unwrap();
    let f = fs::File::open(img.dir.join("blobs/sha256").join(&d[7..])).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        if p.trim_start_matches("./") != path {
            continue;
        }
        let mut out = Vec::new();
        if let Ok(Some(exts)) = e.pax_extensions() {
            for x in exts.flatten() {
                if let Some(k) = x.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                    out.push((k.to_string(), x.value_bytes().to_vec()));
                }
            }
        }
        return out;
    }
    panic!("{path} not in layer {i}");
}

/// xattrs of context files (`user.*`, security.capability) are kept by COPY and across
/// `COPY --from` (layers written with PAX SCHILY.xattr records, restored when applied).
#[test]
fn xattrs_survive_copy_and_copy_from() {
    if !ready("xattrs_survive_copy_and_copy_from") {
        return;
    }
    let c = Ctx::new(&format!(
        "{}\nCOPY . /src/\nRUN true\n\nFROM scratch\nCOPY --from=0 /src/ /from-stage/\n",
        from_base()
    ));
    c.write("tagged", "t");
    c.write("dir/inner", "i");
    c.write("capped", "c");
    set_xattr(&c.ctx().join("tagged"), "user.brig.note", b"hello");
    set_xattr(&c.ctx().join("dir/inner"), "user.brig.deep", b"v1");
    // VFS_CAP_REVISION_2, effective, CAP_NET_BIND_SERVICE permitted.
    let cap = [1u8, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    set_xattr(&c.ctx().join("capped"), "security.capability", &cap);
    let img = c.build_oci(&[]);
    assert_eq!(
        layer_xattrs(&img, 0, "from-stage/tagged"),
        [("user.brig.note".to_string(), b"hello".to_vec())]
    );
    assert_eq!(
        layer_xattrs(&img, 0, "from-stage/dir/inner"),
        [("user.brig.deep".to_string(), b"v1".to_vec())]
    );
    assert_eq!(
        layer_xattrs(&img, 0, "from-stage/capped"),
        [("security.capability".to_string(), cap.to_vec())]
    );
}

/// `RUN --mount=type=cache,from=STAGE,source=PATH`: a new cache starts as the stage's path
/// (BuildKit), and stays a cache (what a RUN writes there is seen by the next build).
#[test]
fn cache_mount_seeded_from_a_stage() {
    if !ready("cache_mount_seeded_from_a_stage") {
        return;
    }
    let df = |n: &str| {
        format!(
            "{b} AS seed\nRUN mkdir -p /out/sub && echo seeded > /out/sub/file && chown 5:6 /out/sub\n\n\
             {b}\nRUN --mount=type=cache,from=seed,source=/out,target=/c \
             cat /c/sub/file > /got && stat -c %u:%g /c/sub > /owner && ls /c > /listing{n} && touch /c/run{n}\n",
            b = from_base()
        )
    };
    let c = Ctx::new(&df("1"));
    let img = c.build_oci(&[]);
    assert_eq!(img.layer_file(-1, "got"), "seeded\n");
    assert_eq!(img.layer_file(-1, "owner"), "5:6\n");
    assert_eq!(img.layer_file(-1, "listing1"), "sub\n");
    // The same cache the next time: the first run's file is there.
    c.write("Dockerfile", &df("2"));
    let img = c.build_oci(&[]);
    assert_eq!(img.layer_file(-1, "listing2"), "run1\nsub\n");
}

/// Files hard-linked to each other in a copied directory stay linked (BuildKit's copy), also
/// across `COPY --from`; a single file named as the source is copied alone.
#[test]
fn hard_links_in_a_copied_directory_stay_linked() {
    if !ready("hard_links_in_a_copied_directory_stay_linked") {
        return;
    }
    let c = Ctx::new(&format!(
        "{}\nCOPY . /ctx/\nCOPY a-link /single\n\nFROM scratch\nCOPY --from=0 /ctx /from-stage\n",
        from_base()
    ));
    c.write("a", "shared");
    c.write("sub/b", "other");
    fs::hard_link(c.ctx().join("a"), c.ctx().join("a-link")).unwrap();
    fs::hard_link(c.ctx().join("a"), c.ctx().join("sub/a-link2")).unwrap();
    let img = c.build_oci(&[]);
    let l = img.layer_listing(0);
    for (link, to) in [
        ("from-stage/a-link", "from-stage/a"),
        ("from-stage/sub/a-link2", "from-stage/a"),
    ] {
        assert!(
            l.iter()
                .any(|e| e.ends_with(&format!("{link} link to {to}"))),
            "{link} is not a hard link to {to}: {l:#?}"
        );
    }
}

/// The symlinks of layer `i` of `img`: path -> target, as the tar's bytes say.
fn layer_symlinks(img: &Image, i: usize) -> std::collections::BTreeMap<String, Vec<u8>> {
    let d = img.manifest["layers"][i]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let f = fs::File::open(img.dir.join("blobs/sha256").join(&d[7..])).unwrap();
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut out = std::collections::BTreeMap::new();
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        if e.header().entry_type() == tar::EntryType::Symlink {
            let p = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            out.insert(p, e.link_name_bytes().unwrap().into_owned());
        }
    }
    out
}

/// A symlink's target is written into the layer exactly as readlink gives it, as BuildKit
/// writes it: `/` stays `/` (the tar crate's path-based setter made it `//`), `a//b` and `./x/.`
/// are not cleaned, a non-UTF-8 target keeps its bytes; from RUN, COPY and an ADD'ed archive.
#[test]
fn symlink_targets_are_kept_byte_for_byte() {
    if !ready("symlink_targets_are_kept_byte_for_byte") {
        return;
    }
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let c = Ctx::new(&format!(
        "{}\nRUN ln -s / /rootlink && ln -s a//b /dbl && ln -s ./x/. /dotx\nCOPY links/ /ctx-links/\nADD a.tar /arc/\n",
        from_base()
    ));
    let links = c.ctx().join("links");
    fs::create_dir_all(&links).unwrap();
    symlink("/", links.join("root")).unwrap();
    symlink(OsStr::from_bytes(b"caf\xe9"), links.join("latin1")).unwrap();
    let arc = c.path("arc");
    fs::create_dir_all(&arc).unwrap();
    symlink("/", arc.join("rootlink")).unwrap();
    run(Command::new("tar")
        .arg("-cf")
        .arg(c.ctx().join("a.tar"))
        .arg("-C")
        .arg(&arc)
        .arg("rootlink"))
    .assert_ok();
    let img = c.build_oci(&["--no-cache"]);
    let n = img.layers();
    let want: [(usize, &str, &[u8]); 6] = [
        (n - 3, "rootlink", b"/"),
        (n - 3, "dbl", b"a//b"),
        (n - 3, "dotx", b"./x/."),
        (n - 2, "ctx-links/root", b"/"),
        (n - 2, "ctx-links/latin1", b"caf\xe9"),
        (n - 1, "arc/rootlink", b"/"),
    ];
    for (i, path, target) in want {
        let got = layer_symlinks(&img, i);
        assert_eq!(
            got.get(path).map(Vec::as_slice),
            Some(target),
            "layer {i}: {path}: {got:?}"
        );
    }
}

/// A RUN step is confined and set up as BuildKit's: the default seccomp profile's meaning
/// (Seccomp: 2; a user namespace is refused, which needs no capability otherwise), a generated
/// /etc/hosts where localhost and the step's hostname resolve, the host's /etc/resolv.conf,
/// whatever the network, its cgroups on /sys/fs/cgroup (read-only); neither bind's mount point
/// is left in the layer.
#[test]
fn run_steps_are_confined_and_named_as_buildkits() {
    if !ready("run_steps_are_confined_and_named_as_buildkits") {
        return;
    }
    let c = Ctx::new(&format!(
        "{}\nRUN grep -E '^Seccomp:' /proc/self/status > /seccomp \
         && (unshare -U true 2>/dev/null && echo allowed || echo refused) > /userns \
         && cat /etc/hosts > /hosts && hostname > /hostname \
         && (test -f /etc/resolv.conf && echo yes || echo no) > /resolv \
         && (ls /sys/fs/cgroup | grep -c .) > /cgroups\n",
        from_base()
    ));
    let host_resolv = if std::path::Path::new("/etc/resolv.conf").exists() {
        "yes\n"
    } else {
        "no\n"
    };
    for net in ["none", "default", "host"] {
        let img = c.build_oci(&["--no-cache", "--network", net]);
        let seen = |f: &str| img.layer_file(-1, f);
        assert_eq!(seen("seccomp"), "Seccomp:\t2\n", "--network {net}");
        assert_eq!(seen("userns"), "refused\n", "--network {net}");
        let host = seen("hostname");
        let hosts = seen("hosts");
        assert!(
            hosts.starts_with(&format!("127.0.0.1\tlocalhost {}", host.trim())),
            "--network {net}: {hosts}"
        );
        assert!(hosts.contains("::1\tlocalhost"), "--network {net}: {hosts}");
        assert_eq!(seen("resolv"), host_resolv, "--network {net}");
        let cgroups: u32 = seen("cgroups").trim().parse().unwrap();
        assert!(
            cgroups > 0,
            "--network {net}: no cgroup mounted on /sys/fs/cgroup"
        );
        let listing = img.layer_listing(-1).join("\n");
        assert!(
            !listing.contains("etc/hosts") && !listing.contains("etc/resolv.conf"),
            "{listing}"
        );
    }
}
