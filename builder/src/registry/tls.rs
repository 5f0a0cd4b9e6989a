//! Whom we trust over HTTPS, as docker and podman decide it: the system's CA bundle
//! (`$SSL_CERT_FILE`, else the distribution's bundle file; Mozilla's roots built in when there
//! is none) plus the registry's own CAs, and a client certificate, from its certs.d directory:
//! `/etc/containers/certs.d/HOST[:PORT]/`, `/etc/docker/certs.d/HOST[:PORT]/` and (for a plain
//! user) `~/.config/containers/certs.d/HOST[:PORT]/`, or the one `--cert-dir` names instead
//! (podman's flag). In them `*.crt` are CAs, `NAME.cert` with `NAME.key` a client certificate.

use std::fs;
use std::path::{Path, PathBuf};
use ureq::tls::{Certificate, ClientCert, PemItem, RootCerts, TlsConfig};

/// The system bundles looked for, in order (Debian/Ubuntu, Fedora/RHEL, Alpine/others).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The certs.d directories for `registry` (`HOST[:PORT]`), those that exist.
pub fn cert_dirs(registry: &str, cert_dir: Option<&Path>) -> Vec<PathBuf> {
    if let Some(d) = cert_dir {
        return vec![d.to_path_buf()];
    }
    let mut v = vec![
        Path::new("/etc/containers/certs.d").join(registry),
        Path::new("/etc/docker/certs.d").join(registry),
    ];
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        v.push(
            Path::new(&home)
                .join(".config/containers/certs.d")
                .join(registry),
        );
    }
    v.into_iter().filter(|d| d.is_dir()).collect()
}

fn pem_items(path: &Path) -> Result<Vec<PemItem<'static>>, String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    ureq::tls::parse_pem(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not PEM: {e}", path.display()))
}

fn certs(path: &Path) -> Result<Vec<Certificate<'static>>, String> {
    Ok(pem_items(path)?
        .into_iter()
        .filter_map(|i| match i {
            PemItem::Certificate(c) => Some(c),
            _ => None,
        })
        .collect())
}

/// The TLS settings for `registry`.
pub fn config(registry: &str, cert_dir: Option<&Path>) -> Result<TlsConfig, String> {
    let mut extra = Vec::new();
    let mut client = None;
    for dir in cert_dirs(registry, cert_dir) {
        let mut names: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        names.sort();
        for p in names {
            match p.extension().and_then(|e| e.to_str()) {
                Some("crt") => extra.extend(certs(&p)?),
                Some("cert") if client.is_none() => {
                    let key = p.with_extension("key");
                    let k = pem_items(&key)
                        .map_err(|e| format!("client certificate {}: {e}", p.display()))?
                        .into_iter()
                        .find_map(|i| match i {
                            PemItem::PrivateKey(k) => Some(k),
                            _ => None,
                        })
                        .ok_or_else(|| format!("{}: no private key", key.display()))?;
                    client = Some(ClientCert::new_with_certs(&certs(&p)?, k));
                }
                _ => {}
            }
        }
    }
    let system = std::env::var_os("SSL_CERT_FILE")
        .filter(|f| !f.is_empty())
        .map(PathBuf::from)
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
        .find(|p| p.is_file());
    let roots = match system {
        Some(bundle) => {
            let mut all = certs(&bundle)?;
            all.extend(extra);
            RootCerts::new_with_certs(&all)
        }
        None if extra.is_empty() => RootCerts::WebPki,
        None => RootCerts::new_with_certs(&extra),
    };
    Ok(TlsConfig::builder()
        .root_certs(roots)
        .client_cert(client)
        .build())
}
