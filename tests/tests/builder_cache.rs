//! End-to-end tests of the build cache of `brig-build` and of its store under stress: what a
//! rebuild runs (seen from outside the build), which changes invalidate which steps,
//! `--no-cache`, `--no-cache-filter`, `prune --keep-storage`, `--cache-to`/`--cache-from` a
//! directory, two builds sharing a store, a build SIGKILLed at many points, and stages run in
//! parallel.
//!
//! Whether a RUN step ran is observed for real: RUN steps use the host's network namespace
//! (the default `--network`), so each step calls a witness HTTP server of the test on
//! 127.0.0.1 with busybox `wget`; the server counts the calls. The same server gives two
//! stages a rendezvous: each stage's RUN announces itself and waits (at most 60 s) for the
//! other, so the build succeeds only if both stages run at the same time.

use brig_tests::builder::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The names in a store directory.
fn names(store: &Path, dir: &str) -> BTreeSet<String> {
    fs::read_dir(store.join(dir))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks the store's invariants: every blob's sha256 is its name, every unpacked layer and
/// cache entry is a complete, well-named entry, everything the index and the cache reference
/// exists, and nothing temporary shows up outside `tmp/`.
fn check_store(store: &Path) {
    let blobs = names(store, "blobs/sha256");
    for b in &blobs {
        assert!(is_hex64(b), "not a blob name: {b}");
    }
    if !blobs.is_empty() {
        let out = run(Command::new("sha256sum")
            .current_dir(store.join("blobs/sha256"))
            .args(&blobs));
        out.assert_ok();
        for l in out.stdout.lines() {
            let (sum, name) = l.split_once("  ").unwrap();
            assert_eq!(sum, name, "blob {name} has the wrong content");
        }
    }
    let layers = names(store, "layers");
    for l in &layers {
        assert!(is_hex64(l), "not a layer name: {l}");
        assert!(store.join("layers").join(l).is_dir(), "layer {l}");
    }
    let has_blob = |d: &str| blobs.contains(d.trim_start_matches("sha256:"));
    for c in names(store, "cache") {
        let hex = c.strip_suffix(".json").unwrap_or("");
        assert!(is_hex64(hex), "not a cache entry name: {c}");
        let e: Value = serde_json::from_slice(&fs::read(store.join("cache").join(&c)).unwrap())
            .unwrap_or_else(|e| panic!("cache entry {c}: {e}"));
        if let Some(l) = e.get("layer") {
            let d = l["digest"].as_str().unwrap();
            let id = l["diff_id"].as_str().unwrap();
            assert!(has_blob(d), "cache entry {c}: blob {d} missing");
            // A cache directory (--cache-to) holds blobs only, no unpacked layers.
            let unpacked = store.join("layers").is_dir();
            assert!(
                !unpacked || layers.contains(id.trim_start_matches("sha256:")),
                "cache entry {c}: layer {id} missing"
            );
        }
    }
    if !store.join("index.json").exists() {
        return; // a cache directory (--cache-to): no images
    }
    let idx: Value = serde_json::from_slice(&fs::read(store.join("index.json")).unwrap())
        .expect("index.json parses");
    for m in idx["manifests"].as_array().unwrap() {
        let d = m["digest"].as_str().unwrap();
        assert!(has_blob(d), "index: manifest {d} missing");
        let man: Value =
            serde_json::from_slice(&fs::read(store.join("blobs/sha256").join(&d[7..])).unwrap())
                .unwrap();
        assert!(has_blob(man["config"]["digest"].as_str().unwrap()));
        for l in man["layers"].as_array().unwrap() {
            assert!(has_blob(l["digest"].as_str().unwrap()), "{d}: layer {l}");
        }
    }
}

#[test]
fn cache_reuses_unchanged_steps_and_reruns_from_the_first_change() {
    if !ready("cache_reuses_unchanged_steps_and_reruns_from_the_first_change") {
        return;
    }
    let w = Witness::start();
    let df = |label: &str| {
        format!(
            "{from} AS app\nARG V=1\nENV E=e\nCOPY a.txt /a\nRUN {h1} && date +%s%N > /t1\nCOPY b.txt /b\nRUN {h2} && date +%s%N > /t2\nLABEL l={label}\n",
            from = from_base(),
            h1 = w.hit("one"),
            h2 = w.hit("two")
        )
    };
    let c = Ctx::new(&df("x"));
    c.write("a.txt", "a");
    c.write("b.txt", "b");
    c.write("ignored.txt", "i");
    c.write(".dockerignore", "ignored.txt\n");
    let build = |args: &[&str]| {
        let mut a = vec!["-t", "app:1"];
        a.extend_from_slice(args);
        let out = c.build(&a);
        out.assert_ok();
        out.stdout.trim().to_string()
    };
    let ran = |want: (usize, usize), what: &str| {
        assert_eq!(
            (w.count("one"), w.count("two")),
            want,
            "RUN steps that ran after {what}"
        );
        w.reset();
    };
    let first = build(&[]);
    ran((1, 1), "the first build");
    let blobs = names(&c.store(), "blobs/sha256");
    let layers = names(&c.store(), "layers");

    // Unchanged: nothing runs, the same image, not one new blob or layer.
    assert_eq!(build(&[]), first, "same image id");
    ran((0, 0), "an unchanged rebuild");
    assert_eq!(names(&c.store(), "blobs/sha256"), blobs);
    assert_eq!(names(&c.store(), "layers"), layers);

    // A .dockerignore'd file is not part of any key.
    c.write("ignored.txt", "changed");
    assert_eq!(build(&[]), first);
    ran((0, 0), "changing an ignored file");

    // A metadata-only change: a new config, no step runs, no new layer.
    c.write("Dockerfile", &df("y"));
    assert_ne!(build(&[]), first);
    ran((0, 0), "changing a LABEL");
    assert_eq!(names(&c.store(), "layers"), layers);
    c.write("Dockerfile", &df("x"));
    assert_eq!(build(&[]), first, "back to the first image");

    // One COPY source changes: the steps after it run, the ones before do not.
    c.write("b.txt", "b2");
    let second = build(&[]);
    assert_ne!(second, first);
    ran((0, 1), "changing b.txt");
    assert_eq!(build(&[]), second);
    ran((0, 0), "rebuilding after b.txt");

    // A build arg in scope invalidates everything after its ARG.
    build(&["--build-arg", "V=2"]);
    ran((1, 1), "--build-arg V=2");

    // --no-cache runs everything; --no-cache-filter the named stage.
    build(&["--no-cache"]);
    ran((1, 1), "--no-cache");
    build(&["--no-cache-filter", "app"]);
    ran((1, 1), "--no-cache-filter app");
    build(&["--no-cache-filter", "other"]);
    ran((0, 0), "--no-cache-filter of another stage");
    check_store(&c.store());
}

#[test]
fn prune_keeps_the_newest_cache_within_the_bound() {
    if !ready("prune_keeps_the_newest_cache_within_the_bound") {
        return;
    }
    let w = Witness::start();
    // Two images whose RUN layers hold 1 MiB of random data each.
    let df = |n: &str| {
        format!(
            "{}\nRUN {} && head -c 1048576 /dev/urandom > /big{n}\n",
            from_base(),
            w.hit(n)
        )
    };
    let c = Ctx::new(&df("a"));
    let a = c.path("ctx-a");
    let b = c.path("ctx-b");
    for (dir, n) in [(&a, "a"), (&b, "b")] {
        fs::create_dir(dir).unwrap();
        fs::write(dir.join("Dockerfile"), df(n)).unwrap();
    }
    let build = |ctx: &Path| {
        run(Command::new(builder_path())
            .arg("--store")
            .arg(c.store())
            .args(["build", "--runtime"])
            .arg(binary_path())
            .arg(ctx))
        .assert_ok();
    };
    let cli = |args: &[&str]| {
        let out = run(Command::new(builder_path())
            .arg("--store")
            .arg(c.store())
            .args(args));
        out.assert_ok();
        out
    };
    // Removes every image: what stays is only what the cache holds.
    let rm_all = || {
        for l in cli(&["images"]).stdout.lines().skip(1) {
            cli(&["rm", l.split_whitespace().nth(1).unwrap()]);
        }
    };
    build(&a);
    std::thread::sleep(Duration::from_millis(20));
    build(&b);
    assert_eq!((w.count("a"), w.count("b")), (1, 1));
    rm_all();
    check_store(&c.store());
    w.reset();
    build(&b);
    assert_eq!(w.count("b"), 0, "the cache survives rm");
    rm_all();
    // Each entry holds about 2 MiB (1 MiB of random data as a gzip blob and unpacked): a
    // bound of 3 MiB keeps only the one used last (b).
    let out = cli(&["prune", "--keep-storage", "3M"]);
    assert!(out.stdout.contains("removed 1 cache entries"), "{out}");
    check_store(&c.store());
    w.reset();
    build(&b);
    build(&a);
    assert_eq!(
        (w.count("a"), w.count("b")),
        (1, 0),
        "the older entry went, the newer stayed"
    );
    // Without a bound everything goes.
    rm_all();
    cli(&["prune"]);
    check_store(&c.store());
    assert!(names(&c.store(), "cache").is_empty());
    assert!(names(&c.store(), "blobs/sha256").is_empty());
    assert!(names(&c.store(), "tmp").is_empty());
    w.reset();
    build(&b);
    assert_eq!(w.count("b"), 1, "a pruned step runs again");
}

#[test]
fn prune_removes_cache_mounts_least_recently_used_first() {
    if !ready("prune_removes_cache_mounts_least_recently_used_first") {
        return;
    }
    // Each build's cache mount gets 1 MiB and a mark; the RUN layer records the mark it found.
    let df = |id: &str| {
        format!(
            "{}\nRUN --mount=type=cache,id={id},target=/c (cat /c/mark 2>/dev/null || echo none) > /prev && head -c 1048576 /dev/urandom > /c/big && echo {id} > /c/mark\n",
            from_base()
        )
    };
    let c = Ctx::new(&df("a"));
    c.build(&[]).assert_ok();
    std::thread::sleep(Duration::from_millis(20));
    c.write("Dockerfile", &df("b"));
    c.build(&[]).assert_ok();
    assert_eq!(names(&c.store(), "cache-mounts").len(), 2);
    let prune = |args: &[&str]| {
        let out = run(Command::new(builder_path())
            .arg("--store")
            .arg(c.store())
            .arg("prune")
            .args(args));
        out.assert_ok();
        out
    };
    // The two mounts hold 2 MiB, the cache entries a few KiB (the images hold their layers):
    // a bound of 1.5 MiB removes the mount used first and nothing else.
    let out = prune(&["--keep-storage", "1536K"]);
    assert!(
        out.stdout
            .contains("removed 0 cache entries, 1 cache mounts"),
        "{out}"
    );
    assert_eq!(names(&c.store(), "cache-mounts").len(), 1);
    check_store(&c.store());
    let img = c.build_oci(&["--no-cache"]);
    assert_eq!(img.layer_file(-1, "prev"), "b\n", "the newer mount stayed");
    c.write("Dockerfile", &df("a"));
    let img = c.build_oci(&["--no-cache"]);
    assert_eq!(img.layer_file(-1, "prev"), "none\n", "the older mount went");
    // Without a bound every mount goes.
    let out = prune(&[]);
    assert!(out.stdout.contains(", 2 cache mounts,"), "{out}");
    assert!(names(&c.store(), "cache-mounts").is_empty());
    check_store(&c.store());
}

#[test]
fn concurrent_builds_share_a_store() {
    if !ready("concurrent_builds_share_a_store") {
        return;
    }
    let c = Ctx::new("");
    // The same first steps, then different ones ("a" and "a2" are the same Dockerfile); with
    // SOURCE_DATE_EPOCH equal steps give byte-identical layers and images, so the builds race
    // to write the same blobs, layer directories, cache entries and index.
    let df = |n: &str| {
        format!(
            "{}\nRUN head -c 300000 /dev/zero > /same\nRUN yes {} | head -c 200000 > /own\n",
            from_base(),
            n.trim_end_matches('2')
        )
    };
    let spawn = |n: &str| {
        let dir = c.path(&format!("ctx-{n}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("Dockerfile"), df(n)).unwrap();
        Command::new(builder_path())
            .arg("--store")
            .arg(c.store())
            .args([
                "build",
                "--no-cache",
                "-t",
                &format!("img:{n}"),
                "--runtime",
            ])
            .arg(binary_path())
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Import the base once so both builds start their RUN steps together.
    c.write("Dockerfile", &format!("{}\n", from_base()));
    c.build(&[]).assert_ok();
    for round in 0..4 {
        let kids: Vec<_> = ["a", "a2", "b", "c"].iter().map(|n| spawn(n)).collect();
        for k in kids {
            let o = k.wait_with_output().unwrap();
            assert!(
                o.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        check_store(&c.store());
    }
    let images = run(Command::new(builder_path())
        .arg("--store")
        .arg(c.store())
        .arg("images"));
    for n in ["img:a", "img:a2", "img:b", "img:c"] {
        assert!(images.stdout.contains(n), "{images}");
    }
}

#[test]
fn a_build_killed_at_any_point_leaves_the_store_consistent() {
    if !ready("a_build_killed_at_any_point_leaves_the_store_consistent") {
        return;
    }
    let c = Ctx::new(&format!(
        "{}\nCOPY data /data\nRUN head -c 2000000 /dev/urandom > /r1\nRUN head -c 2000000 /dev/urandom > /r2 && echo ok > /done\nENV X=1\nRUN cat /done\n",
        from_base()
    ));
    c.write("data", &"x".repeat(500_000));
    let t0 = Instant::now();
    c.build(&["--no-cache", "-t", "warm:1"]).assert_ok();
    let full = t0.elapsed();
    // Eight kill points spread over one build's duration (so over its steps, on any machine);
    // each attempt has new data, so it writes new blobs, layers and cache entries all along.
    let mut killed = 0;
    for i in 0..8u32 {
        let at = full * (i + 1) / 9;
        c.write("data", &format!("{i}{}", "x".repeat(500_000)));
        let mut child = Command::new(builder_path())
            .arg("--store")
            .arg(c.store())
            .args(["build", "-t", "k:1", "--runtime"])
            .arg(binary_path())
            .arg(c.ctx())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while t0.elapsed() < at && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        check_store(&c.store());
    }
    println!("{killed} of 8 builds killed while running (a full build took {full:?})");
    assert!(killed > 0, "no build was killed while running");
    // Whatever got killed where, the next build works and the store stays sound; finding no
    // other build running, it cleared what the killed ones left in tmp/.
    let left = names(&c.store(), "tmp");
    c.build(&["-t", "after:1"]).assert_ok();
    check_store(&c.store());
    assert!(
        names(&c.store(), "tmp").is_empty(),
        "killed builds left {left:?} in tmp/, still there after the next build"
    );
    c.build(&["--no-cache", "-t", "after:2"]).assert_ok();
    check_store(&c.store());
}

#[test]
fn independent_stages_run_at_the_same_time() {
    if !ready("independent_stages_run_at_the_same_time") {
        return;
    }
    let w = Witness::start();
    // Each stage's RUN waits (at most 60 s) for the other's: run one after the other, the first
    // gives up and the build fails.
    let meet = |me: &str, other: &str| w.meet(me, other);
    let c = Ctx::new(&format!(
        "{from} AS left\nRUN {l} && echo L > /l\n\n{from} AS right\nRUN {r} && echo R > /r\n\n{from} AS unused\nRUN {u}\n\n{from}\nCOPY --from=left /l /l\nCOPY --from=right /r /r\n",
        from = from_base(),
        l = meet("left", "right"),
        r = meet("right", "left"),
        u = w.hit("unused"),
    ));
    let img = c.build_oci(&[]);
    assert_eq!(img.layer_file(-2, "l"), "L\n");
    assert_eq!(img.layer_file(-1, "r"), "R\n");
    assert_eq!((w.count("left"), w.count("right")), (1, 1));
    assert_eq!(w.count("unused"), 0, "a stage the target does not need ran");
    check_store(&c.store());
}

#[test]
fn cache_to_a_directory_and_from_it_into_a_fresh_store() {
    if !ready("cache_to_a_directory_and_from_it_into_a_fresh_store") {
        return;
    }
    let w = Witness::start();
    let c = two_run_steps(&w);
    let dir = c.path("cache-dir");
    let to = format!("type=local,dest={}", dir.display());
    let from = format!("type=local,src={}", dir.display());
    let build = |store: &Path, args: &[&str]| {
        let out = run(Command::new(builder_path())
            .arg("--store")
            .arg(store)
            .args(["build", "--runtime"])
            .arg(binary_path())
            .args(args)
            .arg(c.ctx()));
        out.assert_ok();
        out.stdout.trim().to_string()
    };
    let first = build(&c.path("store-a"), &["--cache-to", &to]);
    assert_eq!((w.count("one"), w.count("two")), (1, 1));
    // The directory is sound: blobs are what their names say, entries name existing blobs.
    check_store(&dir);
    w.reset();
    // A fresh store, nothing in it: every step comes from the directory.
    assert_eq!(build(&c.path("store-b"), &["--cache-from", &from]), first);
    assert_eq!((w.count("one"), w.count("two")), (0, 0));
    check_store(&c.path("store-b"));
    // Another fresh store, one source changed: the steps before it still come from there.
    c.write("b.txt", "b2");
    assert_ne!(build(&c.path("store-c"), &["--cache-from", &from]), first);
    assert_eq!((w.count("one"), w.count("two")), (0, 1));
    // Bad options name the flag.
    let out = c.build(&["--cache-to", "type=gha"]);
    out.assert_fail();
    assert!(
        out.stderr.contains("--cache-to") && out.stderr.contains("not supported"),
        "{out}"
    );
}

#[test]
fn parallel_stages_build_again_and_again() {
    if !ready("parallel_stages_build_again_and_again") {
        return;
    }
    // Three RUN stages at once, twelve times: a runtime starting for one stage briefly holds
    // copies of the builder's descriptors, once enough to fail another stage's unmount
    // (EBUSY) in about 4 builds of 10.
    let c = Ctx::new(&format!(
        "{from} AS a\nRUN echo a > /a\n{from} AS b\nRUN echo b > /b\n{from} AS c\nRUN echo c > /c\n{from}\nCOPY --from=a /a /\nCOPY --from=b /b /\nCOPY --from=c /c /\n",
        from = from_base()
    ));
    for _ in 0..12 {
        c.build(&["--no-cache"]).assert_ok();
    }
    check_store(&c.store());
}

/// `RUN --mount=type=cache,sharing=...` with two stages holding the same cache id at once
/// (they meet at the witness inside their RUN): `shared` gives both the one directory, each
/// seeing what the other wrote; `private` gives the second its own instance.
#[test]
fn cache_mount_sharing_modes_when_two_stages_run_at_once() {
    if !ready("cache_mount_sharing_modes_when_two_stages_run_at_once") {
        return;
    }
    let w = Witness::start();
    let meet = |me: &str, other: &str| w.meet(me, other);
    for (sharing, dirs) in [("shared", 1), ("private", 2)] {
        w.reset();
        // Each writes its name, meets the other (both hold the mount now), then lists it.
        let stage = |me: &str, other: &str| {
            format!(
                "RUN --mount=type=cache,id=x,target=/c,sharing={sharing} echo {me} > /c/{me} && {} && {} && ls /c > /{me}",
                meet(&format!("{me}1"), &format!("{other}1")),
                meet(&format!("{me}2"), &format!("{other}2")),
            )
        };
        let c = Ctx::new(&format!(
            "{from} AS left\n{l}\n\n{from} AS right\n{r}\n\n{from}\nCOPY --from=left /left /\nCOPY --from=right /right /\n",
            from = from_base(),
            l = stage("left", "right"),
            r = stage("right", "left"),
        ));
        let img = c.build_oci(&[]);
        let (l, r) = (img.layer_file(-2, "left"), img.layer_file(-1, "right"));
        if sharing == "shared" {
            assert_eq!((l.as_str(), r.as_str()), ("left\nright\n", "left\nright\n"));
        } else {
            assert_eq!((l.as_str(), r.as_str()), ("left\n", "right\n"));
        }
        assert_eq!(
            names(&c.store(), "cache-mounts").len(),
            dirs,
            "sharing={sharing}"
        );
        check_store(&c.store());
    }
}

/// A RUN that reads the context through a bind mount depends on what it reads: a change there
/// re-runs it (BuildKit keys the mount's content), a change elsewhere in the context does not.
/// A cache that keyed only the instruction text would keep the old output.
#[test]
fn run_bind_mount_content_is_part_of_the_key() {
    if !ready("run_bind_mount_content_is_part_of_the_key") {
        return;
    }
    let c = Ctx::new(&format!(
        "{}\nRUN --mount=type=bind,source=data,target=/d cat /d/x > /out\n",
        from_base()
    ));
    c.write("data/x", "one\n");
    c.write("other", "a\n");
    let img = c.build_oci(&[]);
    assert_eq!(img.layer_file(-1, "out"), "one\n");
    c.write("other", "b\n");
    let again = c.build_oci(&[]);
    assert_eq!(
        again.manifest, img.manifest,
        "a change outside the mount re-ran the step"
    );
    c.write("data/x", "two\n");
    let img = c.build_oci(&[]);
    assert_eq!(
        img.layer_file(-1, "out"),
        "two\n",
        "stale cache for a bind-mounted source"
    );
}

/// A context file is read again only when it changed: its digest is remembered by stat
/// (`STORE/sums`), and a change that keeps its size and modification time is still seen (the
/// change time moves): the COPY and the RUN after it run again, the image holds the new bytes.
#[test]
fn a_changed_file_is_seen_even_with_its_size_and_mtime_kept() {
    if !ready("a_changed_file_is_seen_even_with_its_size_and_mtime_kept") {
        return;
    }
    let w = Witness::start();
    let c = Ctx::new(&format!(
        "{}\nCOPY a.txt /a\nRUN {}\n",
        from_base(),
        w.hit("run")
    ));
    let set = |content: &str| {
        c.write("a.txt", content);
        fs::File::options()
            .append(true)
            .open(c.ctx().join("a.txt"))
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
            .unwrap();
    };
    set("old");
    // Older than brig-build's window for files still being written: its digest is remembered.
    std::thread::sleep(Duration::from_secs(3));
    c.build(&["-q", "-t", "sums:1"]).assert_ok();
    assert!(c.store().join("sums").is_file(), "no digest remembered");
    c.build(&["-q", "-t", "sums:1"]).assert_ok();
    assert_eq!(w.count("run"), 1, "an unchanged context missed the cache");
    set("new");
    std::thread::sleep(Duration::from_secs(3));
    let img = c.build_oci(&[]);
    assert_eq!(w.count("run"), 2, "the change of a.txt was not seen");
    assert_eq!(img.layer_file(-2, "a"), "new");
    check_store(&c.store());
}
