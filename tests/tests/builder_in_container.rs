//! brig-build in a CI job container: a container started by brig as containerd starts a
//! Kubernetes pod's (containerd's default capabilities, noNewPrivileges off as with
//! `allowPrivilegeEscalation` unset, /proc with masked and read-only paths as with
//! `procMount: Default`, seccomp unconfined: the pod settings README names), running
//! brig-build as a plain user with a /etc/subuid range of the container's own, newuidmap and
//! newgidmap with file capabilities as the job image ships them. README's CI job builds a
//! Dockerfile with RUN steps and pushes it to a registry with htpasswd auth on 127.0.0.1; the
//! image's owners and /proc are checked. Under the default seccomp profile, with no_new_privs
//! or with setuid-root newuidmap, the error says what to change.

use brig_tests::builder::*;
use brig_tests::registry::Registry;
use brig_tests::rootless::build_user;
use brig_tests::{add_mount, default_seccomp_profile, remove_namespace, Bundle, Out, Runtime};
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

/// containerd's default capability set (docker's is the same).
const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// How the job image carries newuidmap and newgidmap.
#[derive(PartialEq)]
enum IdMappers {
    /// Copies in /opt (first on PATH) with file capabilities, setuid bit cleared.
    FileCaps,
    /// Debian's setuid-root programs in /usr/bin.
    SetuidRoot,
}

/// The job container: busybox with the host's /usr bound read-only (libraries, newuidmap),
/// brig-build and brig in /opt, a user `ci` with the test's build user's ids and a subuid
/// range, a home bound from the host, the context at /ctx; runs `script` as `ci`.
fn job_container(script: &str, seccomp: Option<Value>, mappers: IdMappers) -> Bundle {
    let (uid, gid) = build_user();
    let b = Bundle::sh(script);
    let root = b.rootfs();
    for (link, to) in [("lib", "usr/lib"), ("lib64", "usr/lib64")] {
        symlink(to, root.join(link)).unwrap();
    }
    let opt = root.join("opt");
    fs::create_dir(&opt).unwrap();
    fs::copy(builder_path(), opt.join("brig-build")).unwrap();
    fs::copy(binary_path(), opt.join("brig")).unwrap();
    if mappers == IdMappers::FileCaps {
        for (prog, cap) in [
            ("newuidmap", "cap_setuid=ep"),
            ("newgidmap", "cap_setgid=ep"),
        ] {
            fs::copy(Path::new("/usr/bin").join(prog), opt.join(prog)).unwrap();
            // chmod u-s: fs::copy keeps the setuid bit, and setuid root wins over the caps.
            fs::set_permissions(opt.join(prog), fs::Permissions::from_mode(0o755)).unwrap();
            let out = run(std::process::Command::new("setcap")
                .arg(cap)
                .arg(opt.join(prog)));
            out.assert_ok();
        }
    }
    let etc = |f: &str, line: String| {
        let p = root.join("etc").join(f);
        let mut text = fs::read_to_string(&p).unwrap_or_default();
        text.push_str(&line);
        fs::write(p, text).unwrap();
    };
    etc("passwd", format!("ci:x:{uid}:{gid}::/home/ci:/bin/sh\n"));
    etc("group", format!("ci:x:{gid}:\n"));
    etc("subuid", "ci:400000:65536\n".into());
    etc("subgid", "ci:400000:65536\n".into());
    let home = b.host_dir("home");
    std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
    let ctx = b.host_dir("ctx");
    busybox_rootfs(&ctx.join("rootfs"));
    fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\n\
         COPY rootfs/ /\n\
         RUN echo built > /built && chown 1000:1000 /built && mkdir /app && chown 2000:3000 /app\n\
         RUN grep -q '^Pid:' /proc/self/status && echo ok > /app/proc\n",
    )
    .unwrap();
    b.with(|c| {
        c["process"]["user"] = json!({"uid": uid, "gid": gid});
        c["process"]["env"] = json!(["PATH=/opt:/usr/bin:/bin", "HOME=/home/ci"]);
        c["process"]["cwd"] = json!("/home/ci");
        c["process"]["noNewPrivileges"] = json!(false);
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set] = json!(DEFAULT_CAPS);
        }
        if let Some(profile) = seccomp {
            c["linux"]["seccomp"] = profile;
        }
        for (dest, src, opts) in [
            ("/usr", "/usr".to_string(), json!(["rbind", "ro"])),
            ("/home/ci", home.display().to_string(), json!(["rbind"])),
            ("/ctx", ctx.display().to_string(), json!(["rbind", "ro"])),
        ] {
            add_mount(
                c,
                json!({"destination": dest, "type": "bind", "source": src, "options": opts}),
            );
        }
        add_mount(
            c,
            json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "nodev", "mode=1777"]}),
        );
    })
}

/// The build the job runs.
const BUILD: &str = "id -u; brig-build build --runtime /opt/brig \
                     -o type=oci,dest=/home/ci/oci,name=t:1 /ctx";

/// README's CI job (GitLab's variables; GitHub's step runs the same two commands): the
/// registry's credentials into ~/.docker/config.json, then build and push as the plain user.
/// The test adds --insecure-registry (its registry speaks HTTP) and an OCI layout to check;
/// the context is read-only, so meta.json goes to the home.
const CI_JOB: &str = r#"set -e
id -u
mkdir -p ~/.docker
printf '{"auths":{"%s":{"auth":"%s"}}}' "$CI_REGISTRY" \
  "$(printf '%s:%s' "$CI_REGISTRY_USER" "$CI_REGISTRY_PASSWORD" | base64)" > ~/.docker/config.json
cd /ctx
brig-build build --insecure-registry "$CI_REGISTRY" -o type=oci,dest=/home/ci/oci,name=t:1 \
  --push -t "$CI_REGISTRY_IMAGE:$CI_COMMIT_SHORT_SHA" --metadata-file /home/ci/meta.json .
"#;

fn ready_here(test: &str) -> Option<Runtime> {
    if !ready(test) {
        return None;
    }
    for tool in ["newuidmap", "setcap"] {
        assert!(
            have(tool),
            "{test}: {tool} is missing (Debian's uidmap, libcap2-bin)"
        );
    }
    Runtime::new(test)
}

fn run_job(rt: &Runtime, b: &Bundle) -> Out {
    let id = rt.new_id("job");
    rt.run_capture(b, &id)
}

#[test]
fn a_job_container_builds_and_pushes() {
    let Some(rt) = ready_here("a_job_container_builds_and_pushes") else {
        return;
    };
    if !have("htpasswd") {
        panic!("htpasswd is missing (apache2-utils)");
    }
    let pw = tempfile::tempdir().unwrap();
    let htpasswd = pw.path().join("htpasswd");
    let out = run(std::process::Command::new("htpasswd").args(["-Bbn", "ci-user", "ci-pass"]));
    out.assert_ok();
    fs::write(&htpasswd, out.stdout).unwrap();
    let auth = format!(
        "auth:\n  htpasswd:\n    realm: brig-test\n    path: {}\n",
        htpasswd.display()
    );
    let Some(reg) = Registry::start("a_job_container_builds_and_pushes", &auth) else {
        return;
    };
    let mut b = job_container(CI_JOB, None, IdMappers::FileCaps);
    b.edit(|c| {
        // The job reaches the test's registry on 127.0.0.1: the host's network.
        remove_namespace(c, "network");
        let env = c["process"]["env"].as_array_mut().unwrap();
        for (k, v) in [
            ("CI_REGISTRY", reg.host.clone()),
            ("CI_REGISTRY_USER", "ci-user".into()),
            ("CI_REGISTRY_PASSWORD", "ci-pass".into()),
            ("CI_REGISTRY_IMAGE", format!("{}/group/app", reg.host)),
            ("CI_COMMIT_SHORT_SHA", "1a2b3c4d".into()),
        ] {
            env.push(json!(format!("{k}={v}")));
        }
    });
    let out = run_job(&rt, &b);
    out.assert_ok();
    // The registry has the tag, at the digest the metadata file gives.
    let meta: Value =
        serde_json::from_slice(&fs::read(b.path().join("home/meta.json")).unwrap()).unwrap();
    let link = reg.dir.path().join(
        "data/docker/registry/v2/repositories/group/app/_manifests/tags/1a2b3c4d/current/link",
    );
    assert_eq!(
        fs::read_to_string(&link).unwrap_or_default(),
        meta["containerimage.digest"].as_str().unwrap(),
        "{out}"
    );
    let (uid, _) = build_user();
    assert!(out.stdout.starts_with(&format!("{uid}\n")), "{out}");
    // /proc is masked as in a pod with procMount Default: RUN steps get it bound, and are told.
    assert!(out.stderr.contains("procMount: Unmasked"), "{out}");
    let img = Image::open(&b.path().join("home/oci"), "1");
    let run1 = img.layer_listing(-2).join("\n");
    assert!(
        run1.contains("1000/1000") && run1.contains("built") && run1.contains("2000/3000"),
        "the RUN layer's owners: {run1}"
    );
    assert_eq!(img.layer_file(-2, "built"), "built\n");
    assert_eq!(img.layer_file(-1, "app/proc"), "ok\n");
}

#[test]
fn the_default_seccomp_profile_is_named_with_the_setting_to_change() {
    let Some(rt) = ready_here("the_default_seccomp_profile_is_named_with_the_setting_to_change")
    else {
        return;
    };
    let b = job_container(BUILD, Some(default_seccomp_profile()), IdMappers::FileCaps);
    let out = run_job(&rt, &b);
    out.assert_fail();
    assert!(
        out.stderr.contains("unshare of a user namespace")
            && out.stderr.contains("Seccomp: 2")
            && out.stderr.contains("seccompProfile.type: Unconfined"),
        "{out}"
    );
    assert!(!b.path().join("home/oci").exists(), "{out}");
}

#[test]
fn a_setuid_newuidmap_is_told_to_have_file_capabilities() {
    let Some(rt) = ready_here("a_setuid_newuidmap_is_told_to_have_file_capabilities") else {
        return;
    };
    let b = job_container(BUILD, None, IdMappers::SetuidRoot);
    let out = run_job(&rt, &b);
    out.assert_fail();
    assert!(
        out.stderr.contains("write to uid_map failed")
            && out
                .stderr
                .contains("setcap cap_setuid=ep /usr/bin/newuidmap"),
        "{out}"
    );
}

#[test]
fn no_new_privileges_is_named_with_the_setting_to_change() {
    let Some(rt) = ready_here("no_new_privileges_is_named_with_the_setting_to_change") else {
        return;
    };
    let mut b = job_container(BUILD, None, IdMappers::FileCaps);
    b.edit(|c| c["process"]["noNewPrivileges"] = json!(true));
    let out = run_job(&rt, &b);
    out.assert_fail();
    assert!(
        out.stderr.contains("NoNewPrivs: 1")
            && out.stderr.contains("allowPrivilegeEscalation: false"),
        "{out}"
    );
}
