//! Platforms: BuildKit's automatic platform ARGs (TARGETPLATFORM, TARGETARCH, BUILDPLATFORM,
//! ...) in FROM lines and, once declared, in a stage; `--platform` and `FROM --platform` for this
//! host's platform; a platform brig-build cannot build for (no qemu-user emulator for it, not
//! linux), and outputs that hold one platform's image asked for several, refused with the
//! reason, the Dockerfile line where it comes from, and nothing written. Builds for other
//! platforms (under emulation): builder_multiplatform.rs.

use brig_tests::builder::*;

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn other_platform() -> &'static str {
    if host_arch() == "arm64" {
        "linux/amd64"
    } else {
        "linux/arm64"
    }
}

#[test]
fn automatic_platform_args_in_from_and_declared_in_stages() {
    if !ready("automatic_platform_args_in_from_and_declared_in_stages") {
        return;
    }
    let base = from_base();
    let base_ref = base.strip_prefix("FROM ").unwrap();
    // BUILDPLATFORM in FROM --platform (the cross-compilation idiom); TARGETARCH used in a
    // stage only after `ARG TARGETARCH`, undeclared TARGETOS stays empty there (BuildKit).
    let df = format!(
        "ARG IMG={base_ref}\n\
         FROM --platform=$BUILDPLATFORM ${{IMG}} AS build\n\
         ARG TARGETARCH\n\
         ARG BUILDPLATFORM\n\
         RUN echo \"$TARGETARCH $BUILDPLATFORM os=$TARGETOS.\" > /arch\n\
         FROM --platform=${{TARGETPLATFORM}} ${{IMG}}\n\
         ARG TARGETPLATFORM\n\
         COPY --from=build /arch /arch\n\
         LABEL target=$TARGETPLATFORM\n"
    );
    let c = Ctx::new(&df);
    let platform = format!("linux/{}", host_arch());
    let img = c.build_oci(&["--platform", &platform]);
    assert_eq!(
        img.layer_file(-1, "arch"),
        format!("{} {platform} os=.\n", host_arch())
    );
    assert_eq!(img.config["config"]["Labels"]["target"], platform.as_str());
    assert_eq!(img.config["architecture"], host_arch());
    assert_eq!(img.config["os"], "linux");
    // Aliases are normalised (x86_64 → amd64, aarch64 → arm64).
    let alias = if host_arch() == "amd64" {
        "linux/x86_64"
    } else {
        "linux/aarch64"
    };
    c.build(&["--platform", alias]).assert_ok();
}

#[test]
fn platforms_that_cannot_be_built_are_refused_with_the_reason_and_nothing_written() {
    if !ready("platforms_that_cannot_be_built_are_refused_with_the_reason_and_nothing_written") {
        return;
    }
    let c = Ctx::new(&format!("{}\nRUN true\n", from_base()));
    let host = format!("linux/{}", host_arch());
    for (platform, why) in [
        ("linux/sparc64".to_string(), "no qemu-user emulator"),
        (format!("{host},windows/amd64"), "linux images only"),
        ("linux//x".to_string(), "invalid platform"),
    ] {
        let out = c.build(&["--platform", &platform]);
        out.assert_fail();
        assert!(out.stderr.contains("--platform"), "{out}");
        assert!(out.stderr.contains(why), "{out}");
        assert!(!c.store().exists(), "the store was created: {out}");
    }
    // Outputs that hold one platform's image, for two platforms.
    let two = format!("{host},{}", other_platform());
    for o in ["type=docker-archive,dest=x.tar", "type=tar,dest=x.tar"] {
        let out = c.build(&["--platform", &two, "-o", o]);
        out.assert_fail();
        assert!(out.stderr.contains("one platform"), "{out}");
        assert!(!c.store().exists(), "the store was created: {out}");
    }

    // FROM --platform of another platform than the build's names its line.
    c.write(
        "Dockerfile",
        &format!(
            "{}\nRUN true\n{} AS x\nRUN true\n",
            from_base(),
            from_base().replace("FROM ", &format!("FROM --platform={} ", other_platform()))
        ),
    );
    let out = c.build(&[]);
    out.assert_fail();
    assert!(out.stderr.contains("Dockerfile:3"), "{out}");
    assert!(out.stderr.contains("FROM --platform"), "{out}");
    assert!(out.stderr.contains("not a platform of this build"), "{out}");

    // A stage of another platform with no RUN step needs no emulator (BuildKit builds it).
    c.write(
        "Dockerfile",
        &format!(
            "{} AS x\n{}\nCOPY --from=x /bin/busybox /bb\n",
            from_base().replace("FROM ", &format!("FROM --platform={} ", other_platform())),
            from_base()
        ),
    );
    c.build(&[]).assert_ok();
}
