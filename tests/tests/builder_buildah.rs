//! Differential check of `brig-build` against buildah: each Dockerfile under
//! `tests/testdata/dockerfiles/*/` is built by both from the same busybox base (an OCI layout
//! made here, imported into buildah with `oci:DIR:TAG`), both images are exported as OCI
//! layouts and unpacked with umoci, and the file trees (path, type, mode, uid/gid, size,
//! content, link target) and the config fields docker fills are compared. Any difference fails
//! the test unless [`ALLOWED`] lists it with its reason.
//!
//! buildah runs with `--runtime /usr/sbin/runc` (its default, crun, refuses this host's hybrid
//! cgroups), the default isolation (`oci`: runc works here, `--isolation chroot` is not needed),
//! the vfs storage driver in a private `--root`, and `--network none` like our builds.

use brig_tests::builder::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Differences that are expected: (Dockerfile dir or `*`, path or `config.FIELD[.key]`,
/// reason).
const ALLOWED: &[(&str, &str, &str)] = &[
    (
        "multistage",
        "config.WorkingDir",
        "the final stage is FROM scratch: BuildKit's empty image has WorkingDir /, which \
         brig-build follows (builder_buildkit checks it); buildah and docker's legacy builder \
         leave it out",
    ),
    (
        "*",
        "run",
        "buildah leaves /run, the mount point it makes for its RUN containers, in the image; \
         brig-build (like BuildKit) removes the mount points it created",
    ),
    (
        "*",
        "config.Labels.io.buildah.version",
        "buildah labels every image with its own version",
    ),
    (
        "ownership",
        "etc/hostname",
        "buildah bind-mounts a generated /etc/hostname into RUN containers, so a RUN's \
         chown/chmod of it never reaches buildah's image; brig-build binds only /etc/resolv.conf \
         and a generated /etc/hosts, as BuildKit does, so the change is kept",
    ),
];

const RUNC: &str = "/usr/sbin/runc";

/// Build args every Dockerfile gets (unused ones are ignored by both).
const BUILD_ARGS: &[&str] = &["--build-arg", "FROM_CLI=cli"];

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/dockerfiles")
}

/// One entry of an unpacked tree.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    content: Option<Vec<u8>>,
    link: Option<String>,
    rdev: u64,
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:04o} {}:{} size={}",
            self.kind, self.mode, self.uid, self.gid, self.size
        )?;
        if let Some(l) = &self.link {
            write!(f, " -> {l}")?;
        }
        if self.kind == 'c' || self.kind == 'b' {
            write!(f, " rdev={:x}", self.rdev)?;
        }
        Ok(())
    }
}

/// Walks `root`: relative path → entry.
fn tree(root: &Path) -> BTreeMap<String, Entry> {
    let mut m = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let md = fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                todo.push(p.clone());
                'd'
            } else if ft.is_symlink() {
                'l'
            } else if ft.is_file() {
                'f'
            } else if ft.is_char_device() {
                'c'
            } else if ft.is_block_device() {
                'b'
            } else if ft.is_fifo() {
                'p'
            } else {
                's'
            };
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            m.insert(
                rel,
                Entry {
                    kind,
                    mode: md.mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                    size: if kind == 'f' { md.len() } else { 0 },
                    content: (kind == 'f').then(|| fs::read(&p).unwrap()),
                    link: (kind == 'l').then(|| fs::read_link(&p).unwrap().display().to_string()),
                    rdev: md.rdev(),
                },
            );
        }
    }
    m
}

/// Unpacks `layout:tag` with umoci into `dest`; returns (tree, config JSON).
fn unpack(layout: &Path, tag: &str, dest: &Path) -> (BTreeMap<String, Entry>, Value) {
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(dest))
    .assert_ok();
    let img = Image::open(layout, tag);
    (tree(&dest.join("rootfs")), img.config)
}

fn describe(e: Option<&Entry>) -> String {
    e.map(|e| e.to_string()).unwrap_or_else(|| "absent".into())
}

/// The differences between two builds of Dockerfile `name`, one line each:
/// `KEY: brig-build=... buildah=...`.
fn differences(
    ours: &(BTreeMap<String, Entry>, Value),
    theirs: &(BTreeMap<String, Entry>, Value),
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let keys: std::collections::BTreeSet<&String> = ours.0.keys().chain(theirs.0.keys()).collect();
    for k in keys {
        let (a, b) = (ours.0.get(k), theirs.0.get(k));
        if a != b {
            let mut why = format!("brig-build={} buildah={}", describe(a), describe(b));
            if let (Some(a), Some(b)) = (a, b) {
                if a.content != b.content && a.size == b.size {
                    why.push_str(" (content differs)");
                }
            }
            out.push((k.clone(), why));
        }
    }
    let (ca, cb) = (
        compared_config(&ours.1, true),
        compared_config(&theirs.1, true),
    );
    let keys: std::collections::BTreeSet<&String> = ca.keys().chain(cb.keys()).collect();
    for k in keys {
        let (a, b) = (ca.get(k), cb.get(k));
        if a != b {
            out.push((
                k.clone(),
                format!(
                    "brig-build={} buildah={}",
                    a.map(|v| v.to_string()).unwrap_or_else(|| "absent".into()),
                    b.map(|v| v.to_string()).unwrap_or_else(|| "absent".into())
                ),
            ));
        }
    }
    out
}

/// `buildah --root R --runroot RR --storage-driver vfs ARGS`.
fn buildah(dir: &Path, args: &[&str]) -> Out {
    run(Command::new("buildah")
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("runroot"))
        .args(["--storage-driver", "vfs"])
        .args(args))
}

#[test]
fn same_trees_and_configs_as_buildah() {
    if !ready("same_trees_and_configs_as_buildah") {
        return;
    }
    for tool in ["buildah", "umoci"] {
        if !have(tool) {
            println!("SKIP same_trees_and_configs_as_buildah: {tool} not installed");
            return;
        }
    }
    if !Path::new(RUNC).is_file() {
        println!("SKIP same_trees_and_configs_as_buildah: {RUNC} not installed");
        return;
    }
    let c = Ctx::new("");
    let bh = c.path("buildah");
    // The same base in both: our store gets it from the shared layout, buildah pulls the layout.
    let store = c.store();
    c.write("Dockerfile", &format!("{}\n", from_base()));
    run(Command::new(builder_path())
        .arg("--store")
        .arg(&store)
        .args(["build", "-q", "-t", "localhost/busybox:base"])
        .arg(c.ctx()))
    .assert_ok();
    let layout = base().join("oci");
    let pulled = buildah(
        &bh,
        &["pull", "-q", &format!("oci:{}:base", layout.display())],
    );
    pulled.assert_ok();
    buildah(
        &bh,
        &["tag", pulled.stdout.trim(), "localhost/busybox:base"],
    )
    .assert_ok();

    let mut dirs: Vec<PathBuf> = fs::read_dir(testdata())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 6, "testdata Dockerfiles missing: {dirs:?}");
    let mut unexpected = Vec::new();
    let mut report = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let ours_oci = c.path(&format!("{name}-brig-oci"));
        let theirs_oci = c.path(&format!("{name}-buildah-oci"));
        let mut args = vec![
            "--store",
            store.to_str().unwrap(),
            "build",
            "--network",
            "none",
        ];
        args.extend_from_slice(BUILD_ARGS);
        let dest = format!("type=oci,dest={},name=t:{name}", ours_oci.display());
        args.extend_from_slice(&["--runtime", RUNC, "-o", &dest]);
        run(Command::new(builder_path()).args(&args).arg(dir)).assert_ok();
        let tag = format!("localhost/diff-{name}:1");
        let mut args = vec![
            "build",
            "--runtime",
            RUNC,
            "--network",
            "none",
            "--pull-never",
            "-t",
            &tag,
        ];
        args.extend_from_slice(BUILD_ARGS);
        let d = dir.to_str().unwrap();
        args.push(d);
        buildah(&bh, &args).assert_ok();
        buildah(
            &bh,
            &[
                "push",
                &tag,
                &format!("oci:{}:{name}", theirs_oci.display()),
            ],
        )
        .assert_ok();
        let ours = unpack(&ours_oci, &name, &c.path(&format!("{name}-brig")));
        let theirs = unpack(&theirs_oci, &name, &c.path(&format!("{name}-buildah")));
        let diffs = differences(&ours, &theirs);
        report.push(format!(
            "{name}: {} paths, {} differences",
            ours.0.len(),
            diffs.len()
        ));
        for (key, why) in diffs {
            match ALLOWED
                .iter()
                .find(|(d, k, _)| (*d == name || *d == "*") && *k == key)
            {
                Some((_, _, reason)) => report.push(format!("  allowed {key}: {why} ({reason})")),
                None => unexpected.push(format!("{name}: {key}: {why}")),
            }
        }
    }
    println!("{}", report.join("\n"));
    let _ = buildah(&bh, &["rmi", "-a", "-f"]);
    assert!(
        unexpected.is_empty(),
        "brig-build and buildah differ:\n{}",
        unexpected.join("\n")
    );
}
