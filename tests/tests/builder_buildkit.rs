//! Differential check of `brig-build` against BuildKit, the reference: every Dockerfile under
//! `tests/testdata/dockerfiles/*/` and `tests/testdata/buildkit/*/` is built by both from the
//! same busybox base, and the images are compared: the config fields docker fills, the history
//! (count and `empty_layer` flags; `created_by` aside) and the flattened file tree (type, mode,
//! uid/gid, size, content, link target, xattrs). Any difference fails the test unless
//! [`ALLOWED`] lists it with its reason.
//!
//! BuildKit is the one inside a dockerd of the test's own (Debian's docker.io 20.10): its own
//! `--data-root`, `--exec-root`, config file and unix socket under a temp dir, no bridge and no
//! iptables, started in a private mount namespace with a tmpfs over /run/containerd so that it
//! neither finds nor touches the host's containerd (it starts its own, under the exec root),
//! and one over /etc/docker, where it would write its key.
//! Both images come back as `docker save` archives (which keep owners and xattrs, where
//! `-o type=local` does not): brig-build writes one with `-o type=docker-archive`. The busybox
//! base is made by brig-build and `docker load`ed; nothing comes from the network.
//!
//! A case may carry a `setup` file applied to its context copy before the builds, for what git
//! does not keep: `xattr PATH NAME VALUE` (VALUE in hex for `security.*`), `hardlink FROM TO`,
//! `chmod PATH OCTAL`, `mkfifo PATH`, `mkdir PATH`, `write PATH TEXT` (a path git does not take).
//! A hard link is compared as what it shares (its target's entry) plus the path it links to
//! within its layer.

use brig_tests::builder::*;
use brig_tests::dockerd::Dockerd;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Differences that are expected: (Dockerfile dir or `*`, path or `config.FIELD[.key]` or
/// `history`, reason).
const ALLOWED: &[(&str, &str, &str)] = &[
    ("cache-from", "c", MOUNT_STUB),
    ("steps-and-modes", "m", MOUNT_STUB),
    ("steps-and-modes", "t", MOUNT_STUB),
    ("steps-and-modes", "chm", CHMOD_DIRS),
    ("steps-and-modes", "parent", CHMOD_DIRS),
    ("steps-and-modes", "parent/sub", CHMOD_DIRS),
    ("common-patterns", "tools", CHMOD_DIRS),
    ("xattrs", "direct/tagged", USER_XATTR),
    ("xattrs", "from-stage/tagged", USER_XATTR),
    ("xattrs", "from-stage/dir", USER_XATTR),
    ("xattrs", "from-stage/dir/inner", USER_XATTR),
    ("xattrs", "direct/capped", CAP_XATTR),
    ("xattrs", "from-stage/capped", CAP_XATTR),
];

const MOUNT_STUB: &str = "dockerd 20.10's BuildKit (v0.8) leaves the empty directory it made \
     for a RUN mount's target in the layer (its stub cleaner removed only empty files); BuildKit \
     since v0.11 (moby/buildkit 677897377) removes it, as brig-build does";

const CHMOD_DIRS: &str = "directories a COPY --chmod=MODE makes (its destination, the parents) \
     get MODE in BuildKit since 2025 (tonistiigi/fsutil 183e7fb, BuildKit's testCopyChmod), as \
     brig-build does; dockerd 20.10's BuildKit made them 0755";

const USER_XATTR: &str = "BuildKit keeps user.* xattrs in its layers (seen in the overlay2 diff \
     directories of the test's dockerd), but `docker save` of dockerd 20.10 writes only \
     security.capability into the layer tars (moby's pkg/archive), so the saved image lacks them";

const CAP_XATTR: &str = "dockerd 20.10's BuildKit drops security.capability of context files \
     (its own layer has no xattr there); brig-build keeps it, as the issue asks";

const DOCKER: &str = "/usr/bin/docker";
const DOCKERD: &str = "/usr/sbin/dockerd";

/// Build args every Dockerfile gets (unused ones are ignored by both).
const BUILD_ARGS: &[&str] = &["--build-arg", "FROM_CLI=cli"];

fn case_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut dirs = Vec::new();
    for set in ["dockerfiles", "buildkit"] {
        for e in fs::read_dir(root.join(set)).unwrap() {
            let p = e.unwrap().path();
            if p.join("Dockerfile").is_file() {
                dirs.push(p);
            }
        }
    }
    dirs.sort_by_key(|p| p.file_name().unwrap().to_os_string());
    dirs
}

/// One entry of a flattened image.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    content: Vec<u8>,
    link: Option<String>,
    xattrs: BTreeMap<String, Vec<u8>>,
    /// The path a hard link entry of the layer names.
    hard_to: Option<String>,
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
        for (k, v) in &self.xattrs {
            write!(f, " {k}={}", hex(v))?;
        }
        if let Some(t) = &self.hard_to {
            write!(f, " hard link to {t}")?;
        }
        Ok(())
    }
}

fn hex(v: &[u8]) -> String {
    v.iter().map(|b| format!("{b:02x}")).collect()
}

fn norm(p: &Path) -> String {
    let s = p.to_string_lossy();
    s.trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

/// A `docker save` archive read back: config JSON and the flattened tree.
struct Saved {
    config: Value,
    tree: BTreeMap<String, Entry>,
}

fn open_layer(bytes: Vec<u8>) -> Box<dyn Read> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(std::io::Cursor::new(bytes)))
    } else {
        Box::new(std::io::Cursor::new(bytes))
    }
}

fn read_saved(archive: &Path) -> Saved {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut ar = tar::Archive::new(fs::File::open(archive).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = norm(&e.path().unwrap());
        let mut v = Vec::new();
        e.read_to_end(&mut v).unwrap();
        files.insert(p, v);
    }
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let m = &manifest[0];
    let config: Value = serde_json::from_slice(&files[m["Config"].as_str().unwrap()]).unwrap();
    let mut tree: BTreeMap<String, Entry> = BTreeMap::new();
    for l in m["Layers"].as_array().unwrap() {
        apply_layer(&mut tree, open_layer(files[l.as_str().unwrap()].clone()));
    }
    Saved { config, tree }
}

/// Applies one layer: its whiteouts (and opaque markers) to the tree below it, then its
/// entries; a hard link takes its target's entry.
fn apply_layer(tree: &mut BTreeMap<String, Entry>, r: Box<dyn Read>) {
    let mut ar = tar::Archive::new(r);
    let mut adds: Vec<(String, Entry, Option<String>)> = Vec::new();
    let mut gone: Vec<(String, bool)> = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = norm(&e.path().unwrap());
        if path.is_empty() {
            continue;
        }
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (d.to_string(), n.to_string()),
            None => (String::new(), path.clone()),
        };
        if name == ".wh..wh..opq" {
            gone.push((dir, true));
            continue;
        }
        if let Some(n) = name.strip_prefix(".wh.") {
            let p = if dir.is_empty() {
                n.to_string()
            } else {
                format!("{dir}/{n}")
            };
            gone.push((p, false));
            continue;
        }
        let h = e.header().clone();
        let mut xattrs = BTreeMap::new();
        if let Ok(Some(exts)) = e.pax_extensions() {
            for x in exts.flatten() {
                if let Some(k) = x.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                    xattrs.insert(k.to_string(), x.value_bytes().to_vec());
                }
            }
        }
        let et = h.entry_type();
        let kind = match et {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Char => 'c',
            tar::EntryType::Block => 'b',
            tar::EntryType::Fifo => 'p',
            _ => 'f',
        };
        let mut content = Vec::new();
        if kind == 'f' {
            e.read_to_end(&mut content).unwrap();
        }
        let link = e
            .link_name()
            .ok()
            .flatten()
            .map(|l| l.to_string_lossy().into_owned());
        let hard = (kind == 'h').then(|| norm(Path::new(link.as_deref().unwrap_or(""))));
        adds.push((
            path,
            Entry {
                kind,
                mode: h.mode().unwrap() & 0o7777,
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                size: content.len() as u64,
                content,
                link: if kind == 'l' { link } else { None },
                xattrs,
                hard_to: None,
            },
            hard,
        ));
    }
    for (p, opaque) in gone {
        let below = format!("{p}/");
        tree.retain(|k, _| !(k.starts_with(&below) || (!opaque && *k == p)));
    }
    for (p, mut entry, hard) in adds {
        if let Some(t) = hard {
            match tree.get(&t) {
                Some(target) => entry = target.clone(),
                None => entry.link = Some(format!("hard link to missing {t}")),
            }
            entry.hard_to = Some(t);
        }
        if entry.kind != 'd' {
            let below = format!("{p}/");
            tree.retain(|k, _| !k.starts_with(&below));
        }
        tree.insert(p, entry);
    }
}

fn describe(e: Option<&Entry>) -> String {
    e.map(|e| e.to_string()).unwrap_or_else(|| "absent".into())
}

/// The compared config fields ([`compared_config`]; Env in order) and the history.
fn config_fields(cfg: &Value) -> BTreeMap<String, Value> {
    let mut m = compared_config(cfg, false);
    // The fields BuildKit fills beside those (buildah's docker format differs in them).
    for f in ["Healthcheck", "OnBuild", "Shell", "ArgsEscaped"] {
        let v = &cfg["config"][f];
        if !v.is_null() {
            m.insert(format!("config.{f}"), v.clone());
        }
    }
    for f in ["architecture", "os", "variant"] {
        if !cfg[f].is_null() {
            m.insert(f.into(), cfg[f].clone());
        }
    }
    // History: how many entries, and which are empty layers (created_by differs in form).
    let flags: Vec<bool> = cfg["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|e| e["empty_layer"].as_bool().unwrap_or(false))
                .collect()
        })
        .unwrap_or_default();
    m.insert("history".into(), serde_json::json!(flags));
    m
}

fn differences(ours: &Saved, theirs: &Saved) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let keys: BTreeSet<&String> = ours.tree.keys().chain(theirs.tree.keys()).collect();
    for k in keys {
        let (a, b) = (ours.tree.get(k), theirs.tree.get(k));
        if a != b {
            let mut why = format!("brig-build={} buildkit={}", describe(a), describe(b));
            if let (Some(a), Some(b)) = (a, b) {
                if a.content != b.content && a.size == b.size {
                    why.push_str(" (content differs)");
                }
                // Small text files: both contents, to see what differs.
                fn text(c: &[u8]) -> Option<&str> {
                    (c.len() <= 400).then(|| std::str::from_utf8(c).ok())?
                }
                if let (true, Some(ta), Some(tb)) =
                    (a.content != b.content, text(&a.content), text(&b.content))
                {
                    why.push_str(&format!("\n    brig-build: {ta:?}\n    buildkit:   {tb:?}"));
                }
            }
            out.push((k.clone(), why));
        }
    }
    let (ca, cb) = (config_fields(&ours.config), config_fields(&theirs.config));
    let keys: BTreeSet<&String> = ca.keys().chain(cb.keys()).collect();
    for k in keys {
        let (a, b) = (ca.get(k), cb.get(k));
        if a != b {
            let show = |v: Option<&Value>| v.map(|v| v.to_string()).unwrap_or("absent".into());
            let mut why = format!("brig-build={} buildkit={}", show(a), show(b));
            if k == "history" {
                // created_by is not compared (its form differs), but it shows which step differs.
                for (who, cfg) in [("brig-build", &ours.config), ("buildkit", &theirs.config)] {
                    why.push_str(&format!("\n    {who}:"));
                    for h in cfg["history"].as_array().into_iter().flatten() {
                        let by = h["created_by"].as_str().unwrap_or("");
                        let empty = h["empty_layer"].as_bool().unwrap_or(false);
                        let by: String = by.chars().take(60).collect();
                        why.push_str(&format!("\n      {} {by}", if empty { "-" } else { "L" }));
                    }
                }
            }
            out.push((k.clone(), why));
        }
    }
    out
}

/// Applies a case's `setup` file to its context copy.
fn setup(ctx: &Path) {
    let Ok(spec) = fs::read_to_string(ctx.join("setup")) else {
        return;
    };
    for l in spec
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let w: Vec<&str> = l.splitn(4, ' ').collect();
        match w.as_slice() {
            ["xattr", p, name, value] => {
                let value: Vec<u8> = if name.starts_with("security.") {
                    (0..value.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&value[i..i + 2], 16).unwrap())
                        .collect()
                } else {
                    value.as_bytes().to_vec()
                };
                set_xattr(&ctx.join(p), name, &value);
            }
            ["hardlink", from, to] => fs::hard_link(ctx.join(from), ctx.join(to)).unwrap(),
            ["mkdir", p] => fs::create_dir_all(ctx.join(p)).unwrap(),
            ["write", p, text] => {
                fs::create_dir_all(ctx.join(p).parent().unwrap()).unwrap();
                fs::write(ctx.join(p), format!("{text}\n")).unwrap();
            }
            ["mkfifo", p] => {
                run(Command::new("mkfifo").arg(ctx.join(p))).assert_ok();
            }
            ["chmod", p, mode] => {
                let mode = u32::from_str_radix(mode, 8).unwrap();
                fs::set_permissions(ctx.join(p), fs::Permissions::from_mode(mode)).unwrap();
            }
            _ => panic!("{}: bad setup line {l:?}", ctx.display()),
        }
    }
}

/// True if some layer directory of the dockerd's overlay2 store has `path` with the `user.*`
/// xattrs of `ours`.
fn in_buildkit_layers(d: &Dockerd, path: &str, ours: &Entry) -> bool {
    let want: BTreeMap<&String, &Vec<u8>> = ours
        .xattrs
        .iter()
        .filter(|(k, _)| k.starts_with("user."))
        .collect();
    let Ok(layers) = fs::read_dir(d.dir().join("data/overlay2")) else {
        return false;
    };
    layers.flatten().any(|l| {
        let p = l.path().join("diff").join(path);
        if fs::symlink_metadata(&p).is_err() {
            return false;
        }
        let got = xattrs_of(&p);
        want.iter().all(|(k, v)| got.get(*k) == Some(*v))
    })
}

#[test]
fn same_images_as_buildkit() {
    if !ready("same_images_as_buildkit") {
        return;
    }
    for tool in [DOCKER, DOCKERD, "/usr/sbin/runc"] {
        if !Path::new(tool).is_file() {
            println!("SKIP same_images_as_buildkit: {tool} not installed");
            return;
        }
    }
    let t0 = Instant::now();
    let dockerd = Dockerd::start().unwrap_or_else(|why| panic!("dockerd: {why}"));
    let c = Ctx::new("");
    let store = c.store();
    // The same base in both: made by brig-build (tagged in its store), loaded into dockerd.
    c.write("Dockerfile", &format!("{}\n", from_base()));
    let base_tar = c.path("base.tar");
    run(Command::new(builder_path())
        .arg("--store")
        .arg(&store)
        .args(["build", "-q", "-t", "localhost/busybox:base", "-o"])
        .arg(format!(
            "type=docker-archive,dest={},name=localhost/busybox:base",
            base_tar.display()
        ))
        .arg(c.ctx()))
    .assert_ok();
    dockerd
        .docker(&["load", "-i", base_tar.to_str().unwrap()])
        .assert_ok();

    let dirs = case_dirs();
    assert!(dirs.len() >= 12, "testdata Dockerfiles missing: {dirs:?}");
    let mut unexpected = Vec::new();
    let mut report = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let ctx = c.path(&format!("ctx-{name}"));
        run(Command::new("cp").arg("-a").arg(dir).arg(&ctx)).assert_ok();
        setup(&ctx);
        let ours_tar = c.path(&format!("{name}-brig.tar"));
        let dest = format!(
            "type=docker-archive,dest={},name=diff/{name}:1",
            ours_tar.display()
        );
        let mut args = vec!["build", "--network", "none", "-o", &dest];
        args.extend_from_slice(BUILD_ARGS);
        let ours_built = run(Command::new(builder_path())
            .arg("--store")
            .arg(&store)
            .args(&args)
            .arg("--runtime")
            .arg(binary_path())
            .arg(&ctx));
        let tag = format!("diff-{name}:1");
        let mut args = vec!["build", "--network", "none", "-t", &tag];
        args.extend_from_slice(BUILD_ARGS);
        let ctx_s = ctx.to_str().unwrap();
        args.push(ctx_s);
        let theirs_built = dockerd.docker(&args);
        // A case one of them refuses is a difference too; the others still run.
        if !ours_built.success() || !theirs_built.success() {
            let last = |o: &Out| {
                if o.success() {
                    "built".to_string()
                } else {
                    o.stderr.lines().last().unwrap_or("").to_string()
                }
            };
            unexpected.push(format!(
                "{name}: build: brig-build: {} / buildkit: {}",
                last(&ours_built),
                last(&theirs_built)
            ));
            report.push(format!("{name}: a build failed"));
            continue;
        }
        let theirs_tar = c.path(&format!("{name}-buildkit.tar"));
        dockerd
            .docker(&["save", "-o", theirs_tar.to_str().unwrap(), &tag])
            .assert_ok();
        let ours = read_saved(&ours_tar);
        let theirs = read_saved(&theirs_tar);
        let diffs = differences(&ours, &theirs);
        let with_xattrs = |s: &Saved| s.tree.values().filter(|e| !e.xattrs.is_empty()).count();
        report.push(format!(
            "{name}: {} paths ({} with xattrs; BuildKit's: {}), {} differences",
            ours.tree.len(),
            with_xattrs(&ours),
            with_xattrs(&theirs),
            diffs.len()
        ));
        for (key, why) in diffs {
            match ALLOWED
                .iter()
                .find(|(d, k, _)| (*d == name || *d == "*") && *k == key)
            {
                // What only `docker save` drops must be in BuildKit's own layers.
                Some((_, _, reason))
                    if *reason == USER_XATTR
                        && !in_buildkit_layers(&dockerd, &key, &ours.tree[&key]) =>
                {
                    unexpected.push(format!(
                        "{name}: {key}: {why}, and no layer of BuildKit's dockerd has these xattrs"
                    ))
                }
                Some((_, _, reason)) => report.push(format!("  allowed {key}: {why} ({reason})")),
                None => unexpected.push(format!("{name}: {key}: {why}")),
            }
        }
    }
    drop(dockerd);
    println!(
        "{}\n{} cases in {:.1} s",
        report.join("\n"),
        dirs.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        unexpected.is_empty(),
        "brig-build and BuildKit differ:\n{}",
        unexpected.join("\n")
    );
}
