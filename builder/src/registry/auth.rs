//! Who we are to a registry: credentials from `--creds USER:PASS` or a docker-style auth file,
//! and the `WWW-Authenticate` challenges (Basic, Bearer) a registry answers 401 with.
//!
//! Auth files are read in the order podman and buildah use: `--authfile`, then
//! `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`, `$DOCKER_CONFIG/config.json`,
//! `~/.docker/config.json`; the first that has an entry for the registry wins. In a file, as
//! docker reads it: the registry's `credHelpers` entry (the program `docker-credential-NAME`,
//! asked with `get`), else its inline `auths` entry (`auth`, base64 `user:pass`, or
//! `identitytoken`), else the `credsStore` program. An identity token (a helper's user
//! `<token>`) is an OAuth2 refresh token: the token server is asked with it instead of a
//! password (`grant_type=refresh_token`).

use base64::Engine as _;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// A user name and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Creds {
    pub user: String,
    pub pass: String,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Creds({:?}, <password>)", self.user)
    }
}

impl Creds {
    /// Parses `USER:PASS` (the password may contain colons).
    pub fn parse(s: &str) -> Result<Creds, String> {
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Creds {
                user: u.into(),
                pass: p.into(),
            }),
            _ => Err("--creds: expected USER:PASSWORD".into()),
        }
    }

    /// The value of an `Authorization: Basic` header.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.user, self.pass);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// The user name under which helpers and `identitytoken` hand out an identity token.
pub const IDENTITY_TOKEN_USER: &str = "<token>";

impl Creds {
    /// An identity (refresh) token rather than a password.
    pub fn is_identity_token(&self) -> bool {
        self.user == IDENTITY_TOKEN_USER
    }
}

/// The longest answer of a credential helper we read.
const MAX_HELPER_OUTPUT: usize = 64 << 10;

/// Asks `docker-credential-NAME get` for `registry`'s credentials (Ok(None): it has none).
pub fn from_helper(name: &str, registry: &str, from: &Path) -> Result<Option<Creds>, String> {
    use std::io::Write as _;
    let program = format!("docker-credential-{name}");
    // docker keys Docker Hub by its old index URL.
    let server = if registry == "docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    };
    let mut child = std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "{}: credential helper {program}: {e}{}",
                from.display(),
                if e.kind() == std::io::ErrorKind::NotFound {
                    " (not in PATH)"
                } else {
                    ""
                }
            )
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("credential helper {program}: {e}"))?;
    let text = |b: &[u8]| {
        String::from_utf8_lossy(&b[..b.len().min(MAX_HELPER_OUTPUT)])
            .trim()
            .to_string()
    };
    if !out.status.success() {
        let msg = format!("{} {}", text(&out.stdout), text(&out.stderr));
        if msg.contains("credentials not found") {
            return Ok(None);
        }
        return Err(format!(
            "credential helper {program} (from {}) failed for {server}: {}",
            from.display(),
            msg.trim()
        ));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let a: Answer = serde_json::from_slice(&out.stdout[..out.stdout.len().min(MAX_HELPER_OUTPUT)])
        .map_err(|e| format!("credential helper {program}: its answer is not JSON: {e}"))?;
    if a.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Creds {
        user: a.username,
        pass: a.secret,
    }))
}

/// The auth files to look in, in order.
pub fn auth_files(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut v = Vec::new();
    v.extend(env("REGISTRY_AUTH_FILE"));
    v.extend(env("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")));
    v.extend(env("DOCKER_CONFIG").map(|d| d.join("config.json")));
    v.extend(env("HOME").map(|d| d.join(".docker/config.json")));
    v
}

/// The credentials for `registry` in the auth file at `path`: Ok(None) if the file has no entry
/// (or does not exist), Err if it exists but cannot be read.
pub fn from_auth_file(path: &Path, registry: &str) -> Result<Option<Creds>, String> {
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        auths: BTreeMap<String, Entry>,
        #[serde(default, rename = "credHelpers")]
        cred_helpers: BTreeMap<String, String>,
        #[serde(default, rename = "credsStore")]
        creds_store: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        auth: Option<String>,
        #[serde(default)]
        identitytoken: Option<String>,
    }
    let f: File = serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    // Keys may be `host`, `https://host`, `http://host/v1/`; docker.io also as index.docker.io.
    let want: Vec<&str> = if registry == "docker.io" {
        vec!["docker.io", "index.docker.io", "registry-1.docker.io"]
    } else {
        vec![registry]
    };
    let host_of = |key: &str| -> String {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        host.split('/').next().unwrap_or(host).to_string()
    };
    if let Some((_, helper)) = f
        .cred_helpers
        .iter()
        .find(|(k, _)| want.contains(&host_of(k).as_str()))
    {
        return from_helper(helper, registry, path);
    }
    for (key, entry) in &f.auths {
        if !want.contains(&host_of(key).as_str()) {
            continue;
        }
        if let Some(t) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(Creds {
                user: IDENTITY_TOKEN_USER.into(),
                pass: t.clone(),
            }));
        }
        let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) else {
            continue;
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| format!("{}: auths.{key}.auth: {e}", path.display()))?;
        let s = String::from_utf8(raw)
            .map_err(|_| format!("{}: auths.{key}.auth: not UTF-8", path.display()))?;
        return Creds::parse(&s)
            .map(Some)
            .map_err(|_| format!("{}: auths.{key}.auth: not USER:PASSWORD", path.display()));
    }
    match f.creds_store.as_deref().filter(|s| !s.is_empty()) {
        Some(store) => from_helper(store, registry, path),
        None => Ok(None),
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer` (lower-cased).
    pub scheme: String,
    /// Parameters (`realm`, `service`, `scope`), names lower-cased.
    pub params: BTreeMap<String, String>,
}

/// Parses `Scheme k="v", k2=v2`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_ascii_lowercase();
        s = s[eq + 1..].trim_start();
        let value;
        if let Some(q) = s.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => v.push(c),
                }
            }
            value = v;
            s = &q[end?..];
        } else {
            let end = s.find(',').unwrap_or(s.len());
            value = s[..end].trim().to_string();
            s = &s[end..];
        }
        params.insert(key, value);
        s = s.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let c = parse_challenge(r#"Basic realm="basic-realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.params["realm"], "basic-realm");
    }

    #[test]
    fn auth_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("auth.json");
        fs::write(
            &p,
            r#"{"auths":{"https://127.0.0.1:5000/v1/":{"auth":"dTpwOng="},"other":{"auth":"eDp5"}}}"#,
        )
        .unwrap();
        let c = from_auth_file(&p, "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!((c.user.as_str(), c.pass.as_str()), ("u", "p:x"));
        assert!(from_auth_file(&p, "elsewhere").unwrap().is_none());
        assert!(from_auth_file(&d.path().join("none"), "x")
            .unwrap()
            .is_none());
    }
}
