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
