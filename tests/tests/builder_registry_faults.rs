//! brig-build against registries as they are (issue 15): TLS with a CA of the test's own and a
//! client certificate (`--cert-dir`, and the registry's certs.d directory), credentials from a
//! docker credential helper (`credHelpers`, `credsStore`), and a proxy in front of the registry
//! that answers 429 and 503 and drops a connection in the middle of a blob.

use brig_tests::builder::*;
use brig_tests::registry::Registry;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// `brig-build --store STORE ARGS` with `env` set.
fn bb(store: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(builder_path());
    cmd.arg("--store").arg(store).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

/// Builds the busybox base into `store` as `busybox:base`.
fn base_in(c: &Ctx, store: &Path) {
    c.write("Dockerfile", &format!("{}\n", from_base()));
    bb(
        store,
        &[
            "build",
            "-q",
            "-t",
            "busybox:base",
            c.ctx().to_str().unwrap(),
        ],
        &[],
    )
    .assert_ok();
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args)).assert_ok();
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate it signed, in `dir`.
fn make_pki(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=brig test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.crt"),
            ],
        );
    }
}

/// Removes a directory when dropped (a certs.d entry the test made on the host).
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn registry_over_tls_with_a_ca_and_client_certificate() {
    if !ready("registry_over_tls_with_a_ca_and_client_certificate") || !have("openssl") {
        return;
    }
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let p = |f: &str| pki.path().join(f).display().to_string();
    // Under http: (Registry::start appends this after `addr:`): TLS, client certificates
    // signed by the CA required.
    let tls = format!(
        "  tls:\n    certificate: {}\n    key: {}\n    clientcas:\n      - {}\n",
        p("server.crt"),
        p("server.key"),
        p("ca.crt")
    );
    let Some(reg) = Registry::start("registry_over_tls_with_a_ca_and_client_certificate", &tls)
    else {
        return;
    };
    let h = reg.host.as_str();
    let c = Ctx::new("");
    let store = c.path("store");
    base_in(&c, &store);
    let dest = format!("{h}/tls/busybox:1");
    // Nothing trusts the CA: refused, and the error says it is about the certificate.
    let out = bb(&store, &["push", "busybox:base", &dest], &[]);
    out.assert_fail();
    assert!(out.stderr.to_lowercase().contains("certificate"), "{out}");
    // --cert-dir: the CA and the client certificate (NAME.cert + NAME.key).
    let certs = c.path("certs");
    fs::create_dir(&certs).unwrap();
    fs::copy(pki.path().join("ca.crt"), certs.join("ca.crt")).unwrap();
    fs::copy(pki.path().join("client.crt"), certs.join("client.cert")).unwrap();
    fs::copy(pki.path().join("client.key"), certs.join("client.key")).unwrap();
    let cd = certs.to_str().unwrap();
    // The CA alone: the registry wants a client certificate.
    let ca_only = c.path("ca-only");
    fs::create_dir(&ca_only).unwrap();
    fs::copy(pki.path().join("ca.crt"), ca_only.join("ca.crt")).unwrap();
    bb(
        &store,
        &[
            "--cert-dir",
            ca_only.to_str().unwrap(),
            "push",
            "busybox:base",
            &dest,
        ],
        &[],
    )
    .assert_fail();
    bb(
        &store,
        &["--cert-dir", cd, "push", "busybox:base", &dest],
        &[],
    )
    .assert_ok();
    // The registry's own directory under /etc/docker/certs.d, as docker and podman read it.
    let etc = PathBuf::from("/etc/docker/certs.d").join(h);
    fs::create_dir_all(&etc).unwrap();
    let _gone = RemoveDir(etc.clone());
    for f in ["ca.crt", "client.cert", "client.key"] {
        fs::copy(certs.join(f), etc.join(f)).unwrap();
    }
    let other = c.path("store-b");
    bb(&other, &["pull", &dest], &[]).assert_ok();
}

/// A credential helper program `docker-credential-NAME` in `bin` answering `user`/`secret`
/// for `host` (and "credentials not found" for anything else); it logs each call.
fn helper(bin: &Path, name: &str, host: &str, user: &str, secret: &str) -> PathBuf {
    let log = bin.join(format!("{name}.log"));
    let p = bin.join(format!("docker-credential-{name}"));
    fs::write(
        &p,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread -r server\necho \"$server\" >> '{}'\n\
             if [ \"$server\" = '{host}' ]; then\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{secret}\"}}' \"$server\"\n\
             else echo 'credentials not found in native keychain'; exit 1; fi\n",
            log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    log
}

#[test]
fn registry_credentials_from_helpers() {
    if !ready("registry_credentials_from_helpers") || !have("htpasswd") {
        return;
    }
    let pw = tempfile::tempdir().unwrap();
    let out = run(Command::new("htpasswd").args(["-Bbn", "ci", "t0ken"]));
    out.assert_ok();
    fs::write(pw.path().join("htpasswd"), out.stdout).unwrap();
    let auth = format!(
        "auth:\n  htpasswd:\n    realm: brig-test\n    path: {}\n",
        pw.path().join("htpasswd").display()
    );
    let Some(reg) = Registry::start("registry_credentials_from_helpers", &auth) else {
        return;
    };
    let h = reg.host.as_str();
    let c = Ctx::new("");
    let store = c.path("store");
    base_in(&c, &store);
    let bin = c.path("bin");
    fs::create_dir(&bin).unwrap();
    let per_host = helper(&bin, "brigtest", h, "ci", "t0ken");
    let store_log = helper(&bin, "brigstore", h, "ci", "t0ken");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = [("PATH", path.as_str())];
    let config = c.path("config.json");
    let push = |cfg: &str, tag: &str| {
        fs::write(&config, cfg).unwrap();
        bb(
            &store,
            &[
                "--insecure-registry",
                h,
                "--authfile",
                config.to_str().unwrap(),
                "push",
                "busybox:base",
                &format!("{h}/helped/busybox:{tag}"),
            ],
            &env,
        )
    };
    // credHelpers: the registry's own helper.
    push(
        &format!("{{\"credHelpers\":{{\"{h}\":\"brigtest\"}}}}"),
        "1",
    )
    .assert_ok();
    assert!(fs::read_to_string(&per_host).unwrap().contains(h));
    // credsStore: the helper for every registry.
    push("{\"credsStore\":\"brigstore\"}", "2").assert_ok();
    assert!(fs::read_to_string(&store_log).unwrap().contains(h));
    // A helper that is not there is named.
    let out = push(&format!("{{\"credHelpers\":{{\"{h}\":\"nothere\"}}}}"), "3");
    out.assert_fail();
    assert!(out.stderr.contains("docker-credential-nothere"), "{out}");
    // A helper that has nothing for the registry ("credentials not found"): no credentials,
    // and the registry's 401 says so.
    helper(&bin, "brignone", "elsewhere.example", "x", "y");
    let out = push("{\"credsStore\":\"brignone\"}", "4");
    out.assert_fail();
    assert!(out.stderr.contains("no credentials given"), "{out}");
}

/// What the proxy did: answers it faked, connections it cut, and each request it passed on
/// ("METHOD PATH -> STATUS").
#[derive(Default)]
struct Faults {
    /// Fake 429, 503 and a cut blob; else only record.
    inject: bool,
    requests: AtomicUsize,
    too_many: AtomicUsize,
    unavailable: AtomicUsize,
    cut: AtomicUsize,
    log: std::sync::Mutex<Vec<String>>,
}

/// A proxy on 127.0.0.1 in front of `upstream`, one request per connection: the first request
/// gets 429 (Retry-After: 1), the second 503, and the first blob GET is cut after half its
/// body; everything else is passed through.
fn flaky_proxy(upstream: String, inject: bool) -> (String, Arc<Faults>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let faults = Arc::new(Faults {
        inject,
        ..Faults::default()
    });
    let f = faults.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(client) = conn else { continue };
            let (f, upstream) = (f.clone(), upstream.clone());
            std::thread::spawn(move || {
                let _ = serve(client, &upstream, &f);
            });
        }
    });
    (addr, faults)
}

/// Reads one request head (and its Content-Length body) from `s`.
fn read_request(s: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((head, body))
}

fn serve(mut client: TcpStream, upstream: &str, f: &Faults) -> std::io::Result<()> {
    let (head, body) = read_request(&mut client)?;
    let n = if f.inject {
        f.requests.fetch_add(1, Ordering::SeqCst)
    } else {
        usize::MAX
    };
    let close = "Content-Length: 0\r\nConnection: close\r\n\r\n";
    if n == 0 {
        f.too_many.fetch_add(1, Ordering::SeqCst);
        return client.write_all(
            format!("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\n{close}").as_bytes(),
        );
    }
    if n == 1 {
        f.unavailable.fetch_add(1, Ordering::SeqCst);
        return client.write_all(format!("HTTP/1.1 503 Service Unavailable\r\n{close}").as_bytes());
    }
    // Forward with the connection closed after the answer, so its end is the stream's end.
    let mut lines: Vec<&str> = head
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(format!("{}\r\n\r\n", lines.join("\r\n")).as_bytes())?;
    up.write_all(&body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    let request_line = head.lines().next().unwrap_or("");
    let mut what: Vec<&str> = request_line.split(' ').take(2).collect();
    let status = String::from_utf8_lossy(&answer[..answer.len().min(12)]).into_owned();
    what.push(status.split(' ').nth(1).unwrap_or("?"));
    let range = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-range:"))
        .map(|l| l.to_string());
    f.log.lock().unwrap().push(format!(
        "{} {} -> {}{}",
        what[0],
        what.get(1).unwrap_or(&""),
        what.last().unwrap(),
        range.map(|r| format!(" [{r}]")).unwrap_or_default()
    ));
    let is_blob_get = head.starts_with("GET ") && head.contains("/blobs/sha256:");
    if f.inject && is_blob_get && answer.len() > 2048 && f.cut.fetch_add(1, Ordering::SeqCst) == 0 {
        // Half the answer, then the connection drops.
        client.write_all(&answer[..answer.len() / 2])?;
        return client.shutdown(std::net::Shutdown::Both);
    }
    client.write_all(&answer)
}

#[test]
fn registry_faults_are_retried() {
    if !ready("registry_faults_are_retried") {
        return;
    }
    let Some(reg) = Registry::start("registry_faults_are_retried", "") else {
        return;
    };
    let h = reg.host.as_str();
    let c = Ctx::new("");
    let store = c.path("store");
    base_in(&c, &store);
    let direct = format!("{h}/flaky/busybox:1");
    bb(
        &store,
        &["--insecure-registry", h, "push", "busybox:base", &direct],
        &[],
    )
    .assert_ok();
    let (proxy, faults) = flaky_proxy(h.to_string(), true);
    let through = format!("{proxy}/flaky/busybox:1");
    let other = c.path("store-b");
    let out = bb(
        &other,
        &["--insecure-registry", &proxy, "pull", &through],
        &[],
    );
    out.assert_ok();
    assert_eq!(faults.too_many.load(Ordering::SeqCst), 1);
    assert_eq!(faults.unavailable.load(Ordering::SeqCst), 1);
    assert!(
        faults.cut.load(Ordering::SeqCst) >= 1,
        "a blob download was cut"
    );
    // The pulled image is whole: a build FROM it runs.
    c.write(
        "Dockerfile",
        &format!("FROM {through}\nRUN test -x /bin/busybox\n"),
    );
    bb(
        &other,
        &[
            "--insecure-registry",
            &proxy,
            "build",
            "-q",
            "--runtime",
            binary_path().to_str().unwrap(),
            c.ctx().to_str().unwrap(),
        ],
        &[],
    )
    .assert_ok();
}

/// A layer larger than one upload chunk goes up in PATCHes with Content-Range; a blob the
/// registry has in another repository the store pulled from is mounted, not sent.
#[test]
fn large_layers_in_chunks_and_mounts_across_repositories() {
    if !ready("large_layers_in_chunks_and_mounts_across_repositories") {
        return;
    }
    let Some(reg) = Registry::start("large_layers_in_chunks_and_mounts_across_repositories", "")
    else {
        return;
    };
    let (proxy, seen) = flaky_proxy(reg.host.clone(), false);
    let p = proxy.as_str();
    let c = Ctx::new("");
    let store = c.path("store");
    base_in(&c, &store);
    let on = |store: &Path, extra: &[&str]| -> Out {
        let mut v = vec!["--insecure-registry", p];
        v.extend_from_slice(extra);
        bb(store, &v, &[])
    };
    let base = format!("{p}/team/base:1");
    on(&store, &["push", "busybox:base", &base]).assert_ok();
    // 20 MB of random bytes: one layer above the 16 MiB chunk.
    c.write(
        "Dockerfile",
        &format!("FROM {base}\nRUN head -c 20000000 /dev/urandom > /big\n"),
    );
    let other = c.path("store-b");
    on(&other, &["pull", &base]).assert_ok();
    seen.log.lock().unwrap().clear();
    let app = format!("{p}/team/app:1");
    let built = on(
        &other,
        &[
            "build",
            "-q",
            "--runtime",
            binary_path().to_str().unwrap(),
            "-o",
            &format!("type=registry,name={app}"),
            c.ctx().to_str().unwrap(),
        ],
    );
    built.assert_ok();
    let log = seen.log.lock().unwrap().clone();
    let patches: Vec<&String> = log
        .iter()
        .filter(|l| {
            l.starts_with("PATCH ") && l.to_ascii_lowercase().contains("-> 202 [content-range")
        })
        .collect();
    assert!(patches.len() >= 2, "the big layer in chunks: {log:#?}");
    let mounted: Vec<&String> = log
        .iter()
        .filter(|l| {
            l.contains("mount=sha256:") && l.contains("from=team/base") && l.contains("-> 201")
        })
        .collect();
    assert!(
        !mounted.is_empty(),
        "the base layer mounted from team/base: {log:#?}"
    );
    // The pushed image is whole: pulled into a third store and built on.
    let third = c.path("store-c");
    on(&third, &["pull", &app]).assert_ok();
}

/// `--registry-mirror`: Docker Hub images come from the mirror (no other network here).
#[test]
fn docker_hub_images_from_a_mirror() {
    if !ready("docker_hub_images_from_a_mirror") {
        return;
    }
    let Some(mirror) = Registry::start("docker_hub_images_from_a_mirror", "") else {
        return;
    };
    let m = mirror.host.as_str();
    let c = Ctx::new("");
    let store = c.path("store");
    base_in(&c, &store);
    bb(
        &store,
        &[
            "--insecure-registry",
            m,
            "push",
            "busybox:base",
            &format!("{m}/library/busybox:mirrored"),
        ],
        &[],
    )
    .assert_ok();
    let other = c.path("store-b");
    let flags = ["--insecure-registry", m, "--registry-mirror", m];
    let mut pull = flags.to_vec();
    pull.extend(["pull", "busybox:mirrored"]);
    bb(&other, &pull, &[]).assert_ok();
    let images = bb(&other, &["images"], &[]);
    assert!(images.stdout.contains("busybox:mirrored"), "{images}");
    // FROM a Docker Hub name builds from the mirror too.
    c.write("Dockerfile", "FROM busybox:mirrored\nRUN true\n");
    let third = c.path("store-c");
    let mut build = flags.to_vec();
    let ctx = c.ctx();
    let rt = binary_path();
    build.extend([
        "build",
        "-q",
        "--runtime",
        rt.to_str().unwrap(),
        ctx.to_str().unwrap(),
    ]);
    bb(&third, &build, &[]).assert_ok();
}
