//! `brig-build` against a real registry (Debian's `docker-registry`, distribution 2.8) started
//! here on 127.0.0.1 with a temporary config: push, pull into another store, FROM it in a
//! build, `--output type=registry`; plain HTTP refused without `--insecure-registry`; htpasswd
//! Basic auth and token (Bearer) auth with a token server of our own, wrong passwords failing
//! with a message that says so.

use brig_tests::builder::*;
use brig_tests::registry::Registry;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

/// `brig-build --store STORE ARGS`.
fn bb(store: &Path, args: &[&str]) -> Out {
    run(Command::new(builder_path())
        .arg("--store")
        .arg(store)
        .args(args))
}

/// Builds the busybox base into `store` as `busybox:base` (from the shared OCI layout).
fn base_in(c: &Ctx, store: &Path) {
    c.write("Dockerfile", &format!("{}\n", from_base()));
    run(Command::new(builder_path())
        .arg("--store")
        .arg(store)
        .args(["build", "-q", "-t", "busybox:base"])
        .arg(c.ctx()))
    .assert_ok();
}

#[test]
fn registry_push_pull_and_from() {
    if !ready("registry_push_pull_and_from") {
        return;
    }
    let Some(reg) = Registry::start("registry_push_pull_and_from", "") else {
        return;
    };
    let h = reg.host.as_str();
    let c = Ctx::new("");
    let (a, b) = (c.path("store-a"), c.path("store-b"));
    base_in(&c, &a);
    let dest = format!("{h}/busybox:1");
    // Plain HTTP only when asked for.
    let out = bb(&a, &["push", "busybox:base", &dest]);
    out.assert_fail();
    assert!(
        out.stderr.contains(&format!("--insecure-registry {h}")),
        "the error names the flag: {out}"
    );
    let pushed = bb(
        &a,
        &["--insecure-registry", h, "push", "busybox:base", &dest],
    );
    pushed.assert_ok();
    // A second push finds every blob there and only writes the manifest.
    bb(
        &a,
        &["--insecure-registry", h, "push", "busybox:base", &dest],
    )
    .assert_ok();
    let pulled = bb(&b, &["--insecure-registry", h, "pull", &dest]);
    pulled.assert_ok();
    assert_eq!(pulled.stdout.trim(), pushed.stdout.trim(), "same manifest");
    let images = bb(&b, &["images"]);
    assert!(images.stdout.contains(&dest), "{images}");
    // Peers read what we pushed.
    if have("skopeo") {
        let out = run(Command::new("skopeo")
            .args(["inspect", "--tls-verify=false"])
            .arg(format!("docker://{dest}")));
        out.assert_ok();
        assert!(out.stdout.contains(pushed.stdout.trim()), "{out}");
    }
    // FROM the registry (store C has nothing), RUN on it, push the result with --output.
    let built = format!("{h}/built:2");
    c.write(
        "Dockerfile",
        &format!("FROM {dest}\nRUN echo from-registry > /msg\n"),
    );
    let c_store = c.path("store-c");
    run(Command::new(builder_path())
        .arg("--store")
        .arg(&c_store)
        .args(["--insecure-registry", h, "build", "--runtime"])
        .arg(binary_path())
        .args(["-o", &format!("type=registry,name={built}")])
        .arg(c.ctx()))
    .assert_ok();
    // A fourth store builds FROM that pushed image and reads the file back.
    c.write("Dockerfile", &format!("FROM {built}\nRUN cp /msg /copy\n"));
    let d_store = c.path("store-d");
    let oci = c.path("oci");
    run(Command::new(builder_path())
        .arg("--store")
        .arg(&d_store)
        .args(["--insecure-registry", h, "build", "--runtime"])
        .arg(binary_path())
        .args(["-o", &format!("type=oci,dest={},name=t:1", oci.display())])
        .arg(c.ctx()))
    .assert_ok();
    let img = Image::open(&oci, "1");
    assert_eq!(img.layers(), 3);
    assert_eq!(img.layer_file(1, "msg"), "from-registry\n");
    assert_eq!(img.layer_file(2, "copy"), "from-registry\n");
    // A name the registry does not have: the error names it.
    let out = bb(
        &b,
        &[
            "--insecure-registry",
            h,
            "pull",
            &format!("{h}/nothing:here"),
        ],
    );
    out.assert_fail();
    assert!(
        out.stderr.contains("nothing:here") && out.stderr.contains("MANIFEST_UNKNOWN"),
        "{out}"
    );
}

#[test]
fn registry_basic_auth() {
    if !ready("registry_basic_auth") {
        return;
    }
    if !have("htpasswd") {
        println!("SKIP registry_basic_auth: htpasswd not installed (apache2-utils)");
        return;
    }
    let pw = tempfile::tempdir().unwrap();
    let htpasswd = pw.path().join("htpasswd");
    let out = run(Command::new("htpasswd").args(["-Bbn", "tester", "s3cret:pw"]));
    out.assert_ok();
    fs::write(&htpasswd, out.stdout).unwrap();
    let auth = format!(
        "auth:\n  htpasswd:\n    realm: brig-test\n    path: {}\n",
        htpasswd.display()
    );
    let Some(reg) = Registry::start("registry_basic_auth", &auth) else {
        return;
    };
    let h = reg.host.as_str();
    let c = Ctx::new("");
    let (a, b) = (c.path("store-a"), c.path("store-b"));
    base_in(&c, &a);
    let dest = format!("{h}/private/busybox:1");
    let push = |extra: &[&str]| {
        let mut args = vec!["--insecure-registry", h];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["push", "busybox:base", &dest]);
        bb(&a, &args)
    };
    // No auth file anywhere this test did not write.
    let noauth = c.path("no-auth.json");
    let out = push(&["--authfile", noauth.to_str().unwrap()]);
    out.assert_fail();
    assert!(
        out.stderr
            .contains("authentication required and no credentials given"),
        "{out}"
    );
    let out = push(&["--creds", "tester:wrong"]);
    out.assert_fail();
    assert!(
        out.stderr
            .contains("authentication failed for user \"tester\" (credentials from --creds)"),
        "{out}"
    );
    push(&["--creds", "tester:s3cret:pw"]).assert_ok();
    // Pull with a docker-style auth file (base64 of user:pass).
    pull_with_authfile(&c, &b, h, h, "tester:s3cret:pw", &dest).assert_ok();
}

/// Writes an auth file whose entry `key` holds `user_pass`, then pulls `dest` into `store`
/// with it.
fn pull_with_authfile(
    c: &Ctx,
    store: &Path,
    host: &str,
    key: &str,
    user_pass: &str,
    dest: &str,
) -> Out {
    let authfile = c.path("auth.json");
    fs::write(
        &authfile,
        format!(
            "{{\"auths\":{{\"{key}\":{{\"auth\":\"{}\"}}}}}}",
            b64(user_pass.as_bytes(), false)
        ),
    )
    .unwrap();
    bb(
        store,
        &[
            "--insecure-registry",
            host,
            "--authfile",
            authfile.to_str().unwrap(),
            "pull",
            dest,
        ],
    )
}

/// Base64 (standard, or URL-safe without padding).
fn b64(data: &[u8], url: bool) -> String {
    let abc: &[u8] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut s = String::new();
    for ch in data.chunks(3) {
        let n = ch.iter().fold(0u32, |n, b| n << 8 | *b as u32) << (8 * (3 - ch.len()));
        for i in 0..=ch.len() {
            s.push(abc[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if !url {
            for _ in ch.len()..3 {
                s.push('=');
            }
        }
    }
    s
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A token server in the style of docker's auth service: GET /token?service=S&scope=SCOPE with
/// Basic credentials → `{"token": JWT}` (RS256, the signing certificate in `x5c`) granting the
/// scope's actions; wrong credentials → 401.
fn token_server(dir: &Path, user: &str, pass: &str, service: &str, issuer: &str) -> String {
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
        ])
        .arg("/CN=brig-test-token")
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert))
    .assert_ok();
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&cert)
        .output()
        .unwrap()
        .stdout;
    let header = format!(
        "{{\"alg\":\"RS256\",\"typ\":\"JWT\",\"x5c\":[\"{}\"]}}",
        b64(&der, false)
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let want = format!("Basic {}", b64(format!("{user}:{pass}").as_bytes(), false));
    let (service, issuer) = (service.to_string(), issuer.to_string());
    let pass = pass.to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let mut target = line.split(' ').nth(1).unwrap_or("").to_string();
            let mut authz = String::new();
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("authorization") {
                        authz = v.trim().to_string();
                    }
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            // OAuth2 (docker's identity tokens): a POSTed form whose refresh_token is the
            // password stands for the user.
            if line.starts_with("POST ") {
                let mut form = vec![0u8; length];
                let _ = std::io::Read::read_exact(&mut r, &mut form);
                let form = String::from_utf8_lossy(&form).into_owned();
                let refresh = form
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("refresh_token="));
                if refresh.map(percent_decode).as_deref() == Some(pass.as_str())
                    && form.contains("grant_type=refresh_token")
                {
                    authz = want.clone();
                }
                target = format!("/token?{form}");
            }
            let (status, body) = if authz != want {
                (
                    "401 Unauthorized",
                    "{\"details\":\"bad credentials\"}".to_string(),
                )
            } else {
                let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
                let mut access = Vec::new();
                for kv in query.split('&') {
                    if let Some(("scope", v)) = kv.split_once('=') {
                        let v = percent_decode(v);
                        let parts: Vec<&str> = v.splitn(3, ':').collect();
                        if parts.len() == 3 {
                            let actions: Vec<String> =
                                parts[2].split(',').map(|a| format!("\"{a}\"")).collect();
                            access.push(format!(
                                "{{\"type\":\"{}\",\"name\":\"{}\",\"actions\":[{}]}}",
                                parts[0],
                                parts[1],
                                actions.join(",")
                            ));
                        }
                    }
                }
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let claims = format!(
                    "{{\"iss\":\"{issuer}\",\"sub\":\"tester\",\"aud\":\"{service}\",\"exp\":{},\"nbf\":{},\"iat\":{},\"jti\":\"{now}\",\"access\":[{}]}}",
                    now + 600,
                    now - 60,
                    now - 60,
                    access.join(",")
                );
                let signing = format!(
                    "{}.{}",
                    b64(header.as_bytes(), true),
                    b64(claims.as_bytes(), true)
                );
                let mut child = Command::new("openssl")
                    .args(["dgst", "-sha256", "-sign"])
                    .arg(&key)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap();
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(signing.as_bytes())
                    .unwrap();
                let sig = child.wait_with_output().unwrap().stdout;
                (
                    "200 OK",
                    format!("{{\"token\":\"{signing}.{}\"}}", b64(&sig, true)),
                )
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/token")
}

#[test]
fn registry_token_auth() {
    if !ready("registry_token_auth") {
        return;
    }
    if !have("openssl") {
        println!("SKIP registry_token_auth: openssl not installed");
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let realm = token_server(keys.path(), "tok", "en-pass", "brig-reg", "brig-issuer");
    let auth = format!(
        "auth:\n  token:\n    realm: {realm}\n    service: brig-reg\n    issuer: brig-issuer\n    rootcertbundle: {}\n",
        keys.path().join("cert.pem").display()
    );
    let Some(reg) = Registry::start("registry_token_auth", &auth) else {
        return;
    };
    let h = reg.host.as_str();
    let c = Ctx::new("");
    let (a, b) = (c.path("store-a"), c.path("store-b"));
    base_in(&c, &a);
    let dest = format!("{h}/team/busybox:tok");
    let out = bb(
        &a,
        &[
            "--insecure-registry",
            h,
            "--creds",
            "tok:nope",
            "push",
            "busybox:base",
            &dest,
        ],
    );
    out.assert_fail();
    assert!(
        out.stderr.contains("token server") && out.stderr.contains("refused user \"tok\""),
        "{out}"
    );
    bb(
        &a,
        &[
            "--insecure-registry",
            h,
            "--creds",
            "tok:en-pass",
            "push",
            "busybox:base",
            &dest,
        ],
    )
    .assert_ok();
    // The token realm is plain HTTP: refused unless the registry is marked insecure (it is
    // here), and pulling needs a token too.
    pull_with_authfile(&c, &b, h, &format!("https://{h}"), "tok:en-pass", &dest).assert_ok();
    let images = bb(&b, &["images"]);
    assert!(images.stdout.contains(&dest), "{images}");
    // An identity token (docker's `identitytoken`) is a refresh token for the token server.
    let authfile = c.path("identity.json");
    let store_c = c.path("store-c");
    for (token, ok) in [("wrong", false), ("en-pass", true)] {
        fs::write(
            &authfile,
            format!("{{\"auths\":{{\"{h}\":{{\"identitytoken\":\"{token}\"}}}}}}"),
        )
        .unwrap();
        let out = bb(
            &store_c,
            &[
                "--insecure-registry",
                h,
                "--authfile",
                authfile.to_str().unwrap(),
                "pull",
                &dest,
            ],
        );
        assert_eq!(out.success(), ok, "identity token {token}: {out}");
    }
}

#[test]
fn stages_from_one_registry_image_pull_it_once() {
    if !ready("stages_from_one_registry_image_pull_it_once") {
        return;
    }
    let Some(reg) = Registry::start("stages_from_one_registry_image_pull_it_once", "") else {
        return;
    };
    let h = reg.host.as_str();
    let c = Ctx::new("");
    let a = c.path("store-a");
    base_in(&c, &a);
    let dest = format!("{h}/once:1");
    bb(
        &a,
        &["--insecure-registry", h, "push", "busybox:base", &dest],
    )
    .assert_ok();
    // Three stages FROM the image, two of them built at the same time; a fresh store.
    c.write(
        "Dockerfile",
        &format!(
            "FROM {dest} AS one\nRUN echo 1 > /one\n\nFROM {dest} AS two\nRUN echo 2 > /two\n\nFROM {dest}\nCOPY --from=one /one /\nCOPY --from=two /two /\n"
        ),
    );
    let log = reg.dir.path().join("registry.log");
    let before = fs::read_to_string(&log).unwrap_or_default().len();
    run(Command::new(builder_path())
        .arg("--store")
        .arg(c.path("store-b"))
        .args(["--insecure-registry", h, "build", "--runtime"])
        .arg(binary_path())
        .arg(c.ctx()))
    .assert_ok();
    let text = fs::read_to_string(&log).unwrap_or_default();
    let gets: Vec<&str> = text[before..]
        .lines()
        .filter(|l| l.contains("GET /v2/once/blobs/"))
        .collect();
    if gets.is_empty() {
        println!("SKIP blob count: the registry logs no requests:\n{text}");
        return;
    }
    // The base has one layer and a config: each fetched once.
    assert_eq!(gets.len(), 2, "blob requests: {gets:#?}");
}

/// `GET http://HOST/PATH` (HTTP/1.0, manifests accepted as OCI): status line and body.
fn http_get(host: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(host).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut s, &mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

#[test]
fn cache_to_a_registry_and_from_it_into_a_fresh_store() {
    let name = "cache_to_a_registry_and_from_it_into_a_fresh_store";
    if !ready(name) {
        return;
    }
    let Some(reg) = Registry::start(name, "") else {
        return;
    };
    let h = reg.host.as_str();
    let w = Witness::start();
    let c = two_run_steps(&w);
    let cache = format!("type=registry,ref={h}/cache:build");
    let build = |store: &Path, args: &[&str]| {
        let out = run(Command::new(builder_path())
            .arg("--store")
            .arg(store)
            .args(["--insecure-registry", h, "build", "--runtime"])
            .arg(binary_path())
            .args(args)
            .arg(c.ctx()));
        out.assert_ok();
        out
    };
    // A cache ref not there yet is a notice: the build runs every step and then exports.
    let out = build(
        &c.path("store-a"),
        &["--cache-from", &cache, "--cache-to", &cache],
    );
    assert!(out.stderr.contains("no build cache there"), "{out}");
    let first = out.stdout.trim().to_string();
    assert_eq!((w.count("one"), w.count("two")), (1, 1));
    // One OCI image manifest: the cache config and the four layers of COPY and RUN steps.
    let (status, body) = http_get(h, "/v2/cache/manifests/build");
    assert!(status.contains(" 200 "), "{status}\n{body}");
    let m: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        m["config"]["mediaType"], "application/vnd.brig.build.cache.config.v1+json",
        "{m:#}"
    );
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 4, "{m:#}");
    for l in layers {
        let mt = l["mediaType"].as_str().unwrap();
        assert!(
            mt.starts_with("application/vnd.oci.image.layer.v1.tar+"),
            "{m:#}"
        );
    }
    w.reset();
    // A fresh store: every step comes from the registry, same image.
    let out = build(&c.path("store-b"), &["--cache-from", &cache]);
    assert_eq!(out.stdout.trim(), first, "{out}");
    assert_eq!((w.count("one"), w.count("two")), (0, 0));
    // Another fresh store, b.txt changed: the steps before it come from the registry, which
    // sends only their two layers (and the cache config).
    c.write("b.txt", "b2");
    let log = reg.dir.path().join("registry.log");
    let before = fs::read_to_string(&log).unwrap_or_default().len();
    let out = build(
        &c.path("store-c"),
        &["--cache-from", &cache, "-t", "built:1"],
    );
    assert_ne!(out.stdout.trim(), first, "{out}");
    assert_eq!((w.count("one"), w.count("two")), (0, 1));
    let text = fs::read_to_string(&log).unwrap_or_default();
    let gets: Vec<&str> = text[before..]
        .lines()
        .filter(|l| l.contains("GET /v2/cache/blobs/"))
        .collect();
    if gets.is_empty() {
        println!("SKIP blob count: the registry logs no requests:\n{text}");
    } else {
        assert_eq!(gets.len(), 3, "blob requests: {gets:#?}");
    }
    // A missing tag in an existing repository is a notice too.
    let missing = format!("type=registry,ref={h}/cache:none");
    let out = build(&c.path("store-c"), &["--cache-from", &missing]);
    assert!(out.stderr.contains("no build cache there"), "{out}");
    // An image without an inline cache is a notice too (as BuildKit: no cache to import), and
    // every step runs.
    let img = format!("{h}/cache:image");
    bb(
        &c.path("store-c"),
        &["--insecure-registry", h, "push", "built:1", &img],
    )
    .assert_ok();
    let out = run(Command::new(builder_path())
        .arg("--store")
        .arg(c.path("store-d"))
        .args(["--insecure-registry", h, "build", "--runtime"])
        .arg(binary_path())
        .args(["--cache-from", &format!("type=registry,ref={img}")])
        .arg(c.ctx()));
    out.assert_ok();
    assert!(
        out.stderr.contains("--cache-from") && out.stderr.contains("without an inline cache"),
        "{out}"
    );
    assert_eq!((w.count("one"), w.count("two")), (1, 2));
}
