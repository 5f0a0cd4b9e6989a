//! The HTTP side of the OCI distribution API: manifests and blobs of one repository, with the
//! 401 → challenge → credentials (Basic) or token (Bearer) → retry dance.
//!
//! HTTPS always (CAs and client certificates as [`super::tls`] finds them), plain HTTP only for
//! the hosts `--insecure-registry` names: a registry that answers HTTPS with plain HTTP gets an
//! error that says which flag would allow it. Blocking `ureq` (no async runtime: a build moves
//! one blob at a time).
//!
//! Registries as they are: a request that meets 429 Too Many Requests, a 5xx gateway or
//! availability error, or a dropped connection is sent again, up to [`MAX_ATTEMPTS`] times,
//! after the Retry-After the registry asked for (at most [`MAX_RETRY_AFTER`]) or a doubling
//! backoff; a blob whose download breaks off is fetched again from its start.

use super::auth::{self, Creds};
use super::reference::Reference;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;
use ureq::http::{Method, Request, Response};
use ureq::SendBody;

/// How to reach registries: which hosts speak plain HTTP, and who we are.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Registries (`HOST[:PORT]`) reached over plain HTTP.
    pub insecure: Vec<String>,
    /// `--creds`: used for every registry, before any auth file.
    pub creds: Option<Creds>,
    /// `--authfile`: the only auth file read when set.
    pub authfile: Option<PathBuf>,
    /// `build --pull`: base images come from their registry even when the store has them.
    pub pull_always: bool,
    /// `--cert-dir`: the registry's CAs and client certificate, instead of its certs.d.
    pub cert_dir: Option<PathBuf>,
    /// `--registry-mirror`: registries tried first for Docker Hub images.
    pub mirrors: Vec<String>,
}

/// Blobs larger than this are uploaded in chunks of this size (PATCH with Content-Range).
pub const UPLOAD_CHUNK_BYTES: u64 = 16 << 20;

/// How many times one request is sent at most.
pub const MAX_ATTEMPTS: u32 = 6;
/// The longest Retry-After we wait for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Whether an answer with `status` is worth sending again.
fn retryable(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// The wait before attempt `n` (1-based) after a failed one: Retry-After when given (seconds),
/// else 250 ms doubled each time, at most 8 s.
fn backoff(n: u32, retry_after: Option<&str>) -> Duration {
    if let Some(secs) = retry_after.and_then(|v| v.trim().parse::<u64>().ok()) {
        return Duration::from_secs(secs).min(MAX_RETRY_AFTER);
    }
    Duration::from_millis(250u64 << n.saturating_sub(1).min(5)).min(Duration::from_secs(8))
}

/// The media types a manifest GET accepts.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// What a request sends.
enum Body<'a> {
    None,
    Bytes(&'a [u8]),
    File(&'a Path, u64),
    /// (path, offset, length): a part of a file.
    Range(&'a Path, u64, u64),
}

/// The reader of a part of a file.
fn file_range(p: &Path, offset: u64, len: u64) -> Result<impl Read + 'static, String> {
    use std::io::Seek;
    let mut f = std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
    f.seek(std::io::SeekFrom::Start(offset))
        .map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(f.take(len))
}

/// A client for one repository of one registry.
pub struct Client {
    agent: ureq::Agent,
    /// `http://HOST` or `https://HOST`.
    base: String,
    registry: String,
    repository: String,
    insecure: bool,
    /// The token scope we ask for (`repository:R:pull` or `...:pull,push`).
    scope: String,
    creds: Option<Creds>,
    /// Where the credentials came from, for error messages.
    creds_from: String,
    /// The `Authorization` header once a challenge was answered.
    authorization: Option<String>,
}

impl Client {
    /// A client for `r`'s repository; `push` asks for push access too.
    pub fn new(opts: &Options, r: &Reference, push: bool) -> Result<Client, String> {
        let insecure = opts.insecure.iter().any(|h| h == &r.registry);
        let (creds, creds_from) = match &opts.creds {
            Some(c) => (Some(c.clone()), "--creds".to_string()),
            None => {
                let mut found = (None, String::new());
                for f in auth::auth_files(opts.authfile.as_deref()) {
                    if let Some(c) = auth::from_auth_file(&f, &r.registry)? {
                        found = (Some(c), f.display().to_string());
                        break;
                    }
                }
                found
            }
        };
        let tls = super::tls::config(&r.registry, opts.cert_dir.as_deref())?;
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .user_agent(concat!("brig-build/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Client {
            agent: config.into(),
            base: format!(
                "{}://{}",
                if insecure { "http" } else { "https" },
                r.api_host()
            ),
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            insecure,
            scope: format!(
                "repository:{}:{}",
                r.repository,
                if push { "pull,push" } else { "pull" }
            ),
            creds,
            creds_from,
            authorization: None,
        })
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.base, self.repository)
    }

    /// Describes a transport error, with the hint a TLS failure against a plain-HTTP registry
    /// needs.
    fn transport(&self, url: &str, e: ureq::Error) -> String {
        let mut m = format!("{url}: {e}");
        if !self.insecure
            && matches!(
                e,
                ureq::Error::Tls(_)
                    | ureq::Error::Rustls(_)
                    | ureq::Error::Io(_)
                    | ureq::Error::Protocol(_)
            )
        {
            m.push_str(&format!(
                " (if {} speaks plain HTTP, pass --insecure-registry {})",
                self.registry, self.registry
            ));
        }
        m
    }

    /// One request, answering a 401 challenge once.
    fn send(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<Response<ureq::Body>, String> {
        for attempt in 0..2 {
            let mut req = Request::builder().method(method.clone()).uri(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(a) = &self.authorization {
                req = req.header("Authorization", a);
            }
            let send = match &body {
                Body::None => SendBody::none(),
                Body::Bytes(b) => {
                    req = req.header("Content-Length", b.len().to_string());
                    SendBody::from_owned_reader(std::io::Cursor::new(b.to_vec()))
                }
                Body::File(p, size) => {
                    req = req.header("Content-Length", size.to_string());
                    let f = std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
                    SendBody::from_owned_reader(f)
                }
                Body::Range(p, offset, len) => {
                    req = req.header("Content-Length", len.to_string());
                    SendBody::from_owned_reader(file_range(p, *offset, *len)?)
                }
            };
            let req = req.body(send).map_err(|e| format!("{url}: {e}"))?;
            let resp = self.run_retrying(req, url, &body)?;
            if resp.status() != 401 || attempt == 1 {
                if resp.status() == 401 {
                    return Err(self.unauthorized(resp));
                }
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .and_then(auth::parse_challenge);
            let Some(challenge) = challenge else {
                return Err(self.unauthorized(resp));
            };
            self.answer(&challenge)?;
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Runs `req`, sending it again (rebuilt from `body`) while the registry answers with a
    /// retryable status or the connection fails, up to [`MAX_ATTEMPTS`] times.
    fn run_retrying(
        &self,
        req: Request<SendBody<'static>>,
        url: &str,
        body: &Body,
    ) -> Result<Response<ureq::Body>, String> {
        let (parts, first) = req.into_parts();
        let mut send = Some(first);
        for n in 1..=MAX_ATTEMPTS {
            let b = match send.take() {
                Some(b) => b,
                None => match body {
                    Body::None => SendBody::none(),
                    Body::Bytes(b) => SendBody::from_owned_reader(std::io::Cursor::new(b.to_vec())),
                    Body::File(p, _) => SendBody::from_owned_reader(
                        std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()))?,
                    ),
                    Body::Range(p, offset, len) => {
                        SendBody::from_owned_reader(file_range(p, *offset, *len)?)
                    }
                },
            };
            let mut rb = Request::builder()
                .method(parts.method.clone())
                .uri(parts.uri.clone());
            for (k, v) in &parts.headers {
                rb = rb.header(k, v);
            }
            let req = rb.body(b).map_err(|e| format!("{url}: {e}"))?;
            let last = n == MAX_ATTEMPTS;
            match self.agent.run(req) {
                Ok(resp) if retryable(resp.status().as_u16()) && !last => {
                    let wait = backoff(
                        n,
                        resp.headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok()),
                    );
                    std::thread::sleep(wait);
                }
                Ok(resp) => return Ok(resp),
                Err(
                    ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::Protocol(_),
                ) if !last => {
                    std::thread::sleep(backoff(n, None));
                }
                Err(e) => {
                    let m = self.transport(url, e);
                    return Err(if n > 1 {
                        format!("{m} (after {n} attempts)")
                    } else {
                        m
                    });
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    fn unauthorized(&self, resp: Response<ureq::Body>) -> String {
        let detail = error_text(resp);
        match &self.creds {
            Some(c) => format!(
                "{}: authentication failed for user {:?} (credentials from {}): {detail}",
                self.registry, c.user, self.creds_from
            ),
            None => format!(
                "{}: authentication required and no credentials given (--creds USER:PASS or an \
                 auth file): {detail}",
                self.registry
            ),
        }
    }

    /// Sets `authorization` for the challenge: Basic from the credentials, Bearer from a token
    /// the challenge's realm issues.
    fn answer(&mut self, c: &auth::Challenge) -> Result<(), String> {
        match c.scheme.as_str() {
            "basic" => {
                let creds = self.creds.as_ref().ok_or_else(|| {
                    format!(
                        "{}: authentication required and no credentials given (--creds USER:PASS \
                         or an auth file)",
                        self.registry
                    )
                })?;
                if creds.is_identity_token() {
                    return Err(format!(
                        "{}: the registry asks for a password (Basic) and the credentials from \
                         {} are an identity token",
                        self.registry, self.creds_from
                    ));
                }
                self.authorization = Some(creds.basic_header());
                Ok(())
            }
            "bearer" => {
                let realm = c
                    .params
                    .get("realm")
                    .ok_or_else(|| format!("{}: Bearer challenge without realm", self.registry))?;
                if realm.starts_with("http://") && !self.insecure {
                    return Err(format!(
                        "{}: token realm {realm} is plain HTTP (pass --insecure-registry {} to \
                         allow it)",
                        self.registry, self.registry
                    ));
                }
                let service = c.params.get("service").cloned().unwrap_or_default();
                let mut resp = match &self.creds {
                    // OAuth2: the identity token is a refresh token (docker's way).
                    Some(cr) if cr.is_identity_token() => {
                        let form = [
                            ("grant_type", "refresh_token"),
                            ("refresh_token", cr.pass.as_str()),
                            ("service", service.as_str()),
                            ("scope", self.scope.as_str()),
                            ("client_id", "brig-build"),
                        ];
                        self.agent.post(realm.as_str()).send_form(form)
                    }
                    _ => {
                        let mut req = self.agent.get(realm.as_str());
                        if !service.is_empty() {
                            req = req.query("service", &service);
                        }
                        req = req.query("scope", &self.scope);
                        if let Some(cr) = &self.creds {
                            req = req.header("Authorization", &cr.basic_header());
                        }
                        req.call()
                    }
                }
                .map_err(|e| format!("token from {realm}: {e}"))?;
                if resp.status() == 401 || resp.status() == 403 {
                    return Err(self.unauthorized_token(realm, resp));
                }
                if !resp.status().is_success() {
                    return Err(format!("token from {realm}: {}", error_text(resp)));
                }
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let t: Token = serde_json::from_slice(
                    &resp
                        .body_mut()
                        .with_config()
                        .limit(1 << 20)
                        .read_to_vec()
                        .map_err(|e| format!("token from {realm}: {e}"))?,
                )
                .map_err(|e| format!("token from {realm}: {e}"))?;
                let tok = t
                    .token
                    .or(t.access_token)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| format!("token from {realm}: the answer has no token"))?;
                self.authorization = Some(format!("Bearer {tok}"));
                Ok(())
            }
            other => Err(format!(
                "{}: unsupported authentication scheme {other:?}",
                self.registry
            )),
        }
    }

    fn unauthorized_token(&self, realm: &str, resp: Response<ureq::Body>) -> String {
        let detail = error_text(resp);
        match &self.creds {
            Some(c) => format!(
                "{}: token server {realm} refused user {:?} (credentials from {}): {detail}",
                self.registry, c.user, self.creds_from
            ),
            None => format!(
                "{}: token server {realm} wants credentials (--creds USER:PASS or an auth \
                 file): {detail}",
                self.registry
            ),
        }
    }

    /// GET a manifest: its bytes and media type.
    pub fn get_manifest(&mut self, reference: &str) -> Result<(Vec<u8>, String), String> {
        self.manifest(reference, false)
            .map(|m| m.expect("only a missing manifest is None"))
    }

    /// GET a manifest: its bytes and media type, None if the registry has no such manifest
    /// (404).
    pub fn find_manifest(&mut self, reference: &str) -> Result<Option<(Vec<u8>, String)>, String> {
        self.manifest(reference, true)
    }

    fn manifest(
        &mut self,
        reference: &str,
        missing_ok: bool,
    ) -> Result<Option<(Vec<u8>, String)>, String> {
        let url = self.url(&format!("manifests/{reference}"));
        let mut resp = self.send(
            Method::GET,
            &url,
            &[("Accept", MANIFEST_ACCEPT)],
            Body::None,
        )?;
        if missing_ok && resp.status() == 404 {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(format!("manifest {reference}: {}", error_text(resp)));
        }
        let mt = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(8 << 20)
            .read_to_vec()
            .map_err(|e| format!("{url}: {e}"))?;
        Ok(Some((bytes, mt)))
    }

    /// GET a blob: a reader of its bytes.
    pub fn get_blob(&mut self, digest: &str) -> Result<impl Read, String> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.send(Method::GET, &url, &[], Body::None)?;
        if !resp.status().is_success() {
            return Err(format!("blob {digest}: {}", error_text(resp)));
        }
        Ok(resp.into_body().into_reader())
    }

    /// True if the repository has the blob (HEAD).
    pub fn has_blob(&mut self, digest: &str) -> Result<bool, String> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.send(Method::HEAD, &url, &[], Body::None)?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(format!("blob {digest}: {}", error_text(resp))),
        }
    }

    /// Uploads the blob at `path` (monolithic: POST for a session, PUT with the digest).
    /// Uploads blob `digest` (the file at `path`, `size` bytes): mounted from repository
    /// `mount_from` of this registry when given and the registry agrees, else sent in one
    /// PUT, or in chunks of [`UPLOAD_CHUNK_BYTES`] (PATCH with Content-Range) when larger.
    pub fn put_blob(
        &mut self,
        digest: &str,
        path: &Path,
        size: u64,
        mount_from: Option<&str>,
    ) -> Result<(), String> {
        let mut url = self.url("blobs/uploads/");
        if let Some(from) = mount_from {
            url.push_str(&format!("?mount={digest}&from={from}"));
        }
        let resp = self.send(Method::POST, &url, &[], Body::Bytes(&[]))?;
        // 201: mounted from the other repository, nothing to send.
        if resp.status() == 201 && mount_from.is_some() {
            return Ok(());
        }
        if resp.status() != 202 {
            return Err(format!("start upload of {digest}: {}", error_text(resp)));
        }
        let mut loc = self.location(&resp, digest)?;
        let mut body = Body::File(path, size);
        if size > UPLOAD_CHUNK_BYTES {
            let mut offset = 0;
            while offset < size {
                let len = UPLOAD_CHUNK_BYTES.min(size - offset);
                let range = format!("{}-{}", offset, offset + len - 1);
                let resp = self.send(
                    Method::PATCH,
                    &loc,
                    &[
                        ("Content-Type", "application/octet-stream"),
                        ("Content-Range", range.as_str()),
                    ],
                    Body::Range(path, offset, len),
                )?;
                if resp.status() != 202 {
                    return Err(format!(
                        "upload of {digest}, bytes {range}: {}",
                        error_text(resp)
                    ));
                }
                loc = self.location(&resp, digest)?;
                offset += len;
            }
            // An empty body, said so: Content-Length 0 (not a chunked stream).
            body = Body::Bytes(&[]);
        }
        let sep = if loc.contains('?') { '&' } else { '?' };
        let put = format!("{loc}{sep}digest={digest}");
        let resp = self.send(
            Method::PUT,
            &put,
            &[("Content-Type", "application/octet-stream")],
            body,
        )?;
        if resp.status() != 201 {
            return Err(format!("upload of {digest}: {}", error_text(resp)));
        }
        Ok(())
    }

    /// The absolute upload URL an answer's Location gives.
    fn location(&self, resp: &Response<ureq::Body>, digest: &str) -> Result<String, String> {
        let loc = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("upload of {digest}: no Location in the answer"))?
            .to_string();
        Ok(
            if loc.starts_with("http://") || loc.starts_with("https://") {
                loc
            } else {
                format!("{}{}", self.base, loc)
            },
        )
    }

    /// PUT a manifest under `reference` (a tag or digest).
    pub fn put_manifest(
        &mut self,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(), String> {
        let url = self.url(&format!("manifests/{reference}"));
        let resp = self.send(
            Method::PUT,
            &url,
            &[("Content-Type", media_type)],
            Body::Bytes(bytes),
        )?;
        if resp.status() != 201 {
            return Err(format!("manifest {reference}: {}", error_text(resp)));
        }
        Ok(())
    }
}

/// `STATUS: code: message` of an error answer (the distribution API's `errors` JSON when there
/// is one).
fn error_text(mut resp: Response<ureq::Body>) -> String {
    let status = resp.status();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 << 10)
        .read_to_vec()
        .unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Errs {
        errors: Vec<Err1>,
    }
    #[derive(serde::Deserialize)]
    struct Err1 {
        code: Option<String>,
        message: Option<String>,
    }
    let detail = match serde_json::from_slice::<Errs>(&body) {
        Ok(e) if !e.errors.is_empty() => e
            .errors
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.code.as_deref().unwrap_or("?"),
                    e.message.as_deref().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::from_utf8_lossy(&body)
            .trim()
            .chars()
            .take(200)
            .collect(),
    };
    if detail.is_empty() {
        format!("{status}")
    } else {
        format!("{status}: {detail}")
    }
}
