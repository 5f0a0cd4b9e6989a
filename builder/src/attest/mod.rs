//! Supply-chain attestations beside the image (`--sbom`, `--provenance`), laid out as BuildKit
//! lays them out, so that tools that read BuildKit's (docker buildx imagetools, cosign, trivy,
//! registries' UIs) read ours:
//!
//! ```text
//! index ─┬─ image manifest            platform linux/ARCH
//!        └─ attestation manifest      platform unknown/unknown,
//!             │                       vnd.docker.reference.type = attestation-manifest,
//!             │                       vnd.docker.reference.digest = the image manifest's digest
//!             ├─ config               {"architecture":"unknown","os":"unknown",...}
//!             └─ layers               in-toto statements (application/vnd.in-toto+json),
//!                                     annotation in-toto.io/predicate-type
//! ```
//!
//! Runtimes never pull the attestation manifest: its platform matches no host. The statements
//! are in-toto v0.1 with an SPDX 2.3 document ([`sbom`]) and SLSA provenance v0.2
//! ([`provenance`]). They are made after the build from the image itself and what the build
//! recorded, and attached only to what is exported: the store's tag names the image manifest,
//! as `docker buildx build --load` leaves attestations out of the local image. A build for
//! several platforms has one attestation manifest per image, all in the one index
//! ([`crate::image::index`]).

pub mod provenance;
mod rootfs;
pub mod sbom;

use crate::image::hex_of;
use crate::image::index::Attachment;
use crate::image::store::{Image, Store};
use serde_json::{json, Value};

pub const IN_TOTO_MEDIA_TYPE: &str = "application/vnd.in-toto+json";
pub const PREDICATE_TYPE_ANNOTATION: &str = "in-toto.io/predicate-type";
pub use crate::image::index::{REFERENCE_DIGEST, REFERENCE_TYPE};

/// Provenance detail, as BuildKit's `mode=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Builder, materials, the build's shape; no build arguments, no Dockerfile.
    Min,
    /// Also the build arguments and the Dockerfile's text.
    Max,
}

/// What `--sbom` and `--provenance` ask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Request {
    pub sbom: bool,
    pub provenance: Option<Mode>,
}

impl Request {
    pub fn any(&self) -> bool {
        self.sbom || self.provenance.is_some()
    }
}

/// `--sbom[=true|false]` (buildx also takes `generator=IMAGE`, a BuildKit scanner image we
/// cannot run: refused by name).
pub fn parse_sbom(v: &str) -> Result<bool, String> {
    let mut on = true;
    for part in v.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            None | Some(("enabled", _)) => {
                on = parse_bool(part.rsplit('=').next().unwrap_or(part))
                    .ok_or_else(|| format!("--sbom={v}: {part:?} is not true or false"))?
            }
            Some(("generator", _)) => {
                return Err(format!(
                    "--sbom={v}: generator= (a scanner image) is not supported: brig-build \
                     writes the SBOM itself from dpkg's and apk's databases"
                ))
            }
            Some((k, _)) => return Err(format!("--sbom={v}: unknown key {k:?}")),
        }
    }
    Ok(on)
}

/// `--provenance[=true|false|mode=min|mode=max]` (true means min, as in buildx).
pub fn parse_provenance(v: &str) -> Result<Option<Mode>, String> {
    let mut mode = Some(Mode::Min);
    for part in v.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            None => {
                mode = parse_bool(part)
                    .ok_or_else(|| format!("--provenance={v}: {part:?} is not true or false"))?
                    .then_some(Mode::Min)
            }
            Some(("mode", "min")) => mode = Some(Mode::Min),
            Some(("mode", "max")) => mode = Some(Mode::Max),
            Some(("mode", m)) => {
                return Err(format!("--provenance={v}: mode {m:?} is not min or max"))
            }
            Some(("disabled", b)) => {
                if parse_bool(b).ok_or_else(|| format!("--provenance={v}: {b:?} is not a bool"))? {
                    mode = None
                }
            }
            Some((k, _)) => return Err(format!("--provenance={v}: unknown key {k:?}")),
        }
    }
    Ok(mode)
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// A base image a stage was built FROM: its reference as written (normalised) and the digest
/// of the manifest the build used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    pub reference: String,
    pub digest: String,
}

/// What the build knew that the attestations tell.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    /// The image's first name (`NAME:TAG`), if it has one.
    pub name: Option<String>,
    pub dockerfile_name: String,
    pub dockerfile_text: String,
    pub context: std::path::PathBuf,
    pub build_args: Vec<(String, String)>,
    pub target: Option<String>,
    pub materials: Vec<Material>,
    /// Unix seconds; both are SOURCE_DATE_EPOCH when it is set.
    pub started: i64,
    pub finished: i64,
    pub source_date_epoch: Option<i64>,
}

/// `pkg:docker/NAME@TAG?platform=OS%2FARCH` (BuildKit's subject and material names).
pub fn docker_purl(reference: &str, platform: &str) -> String {
    let name = crate::image::store::normalize(reference);
    let (repo, tag) = match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
        _ => (name.clone(), "latest".to_string()),
    };
    let repo = repo
        .strip_prefix("docker.io/library/")
        .or_else(|| repo.strip_prefix("docker.io/"))
        .unwrap_or(&repo);
    format!(
        "pkg:docker/{repo}@{tag}?platform={}",
        platform.replace('/', "%2F")
    )
}

fn platform_of(img: &Image) -> String {
    let c = &img.config;
    match c.variant() {
        Some(v) => format!("{}/{}/{v}", c.os, c.architecture),
        None => format!("{}/{}", c.os, c.architecture),
    }
}

/// An in-toto v0.1 statement about the image.
fn statement(img: &Image, info: &BuildInfo, predicate_type: &str, predicate: Value) -> Value {
    let name = match &info.name {
        Some(n) => docker_purl(n, &platform_of(img)),
        None => "_".to_string(),
    };
    json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": predicate_type,
        "subject": [{"name": name, "digest": {"sha256": hex_of(&img.manifest_digest)}}],
        "predicate": predicate,
    })
}

/// Makes the attestations `req` asks for `img`: their manifest in the store, for the build's
/// index ([`crate::image::index::write`]).
pub fn attach(
    store: &Store,
    img: &Image,
    req: Request,
    info: &BuildInfo,
) -> Result<Attachment, String> {
    let mut statements = Vec::new();
    if req.sbom {
        let doc = sbom::document(store, img, info)?;
        statements.push((
            sbom::PREDICATE_TYPE,
            statement(img, info, sbom::PREDICATE_TYPE, doc),
        ));
    }
    if let Some(mode) = req.provenance {
        let p = provenance::predicate(info, mode, &platform_of(img));
        statements.push((
            provenance::PREDICATE_TYPE,
            statement(img, info, provenance::PREDICATE_TYPE, p),
        ));
    }
    let put = |v: &Value| -> Result<(String, u64), String> {
        let bytes = serde_json::to_vec(v).expect("json");
        let (d, _) = store.put_blob(&bytes).map_err(|e| e.to_string())?;
        Ok((d, bytes.len() as u64))
    };
    let mut layers = Vec::new();
    let mut blobs = Vec::new();
    for (ptype, st) in &statements {
        let (d, size) = put(st)?;
        layers.push(json!({
            "mediaType": IN_TOTO_MEDIA_TYPE,
            "digest": d,
            "size": size,
            "annotations": {PREDICATE_TYPE_ANNOTATION: ptype},
        }));
        blobs.push(d);
    }
    let config = json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": blobs},
    });
    let (config_digest, config_size) = put(&config)?;
    blobs.push(config_digest.clone());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": layers,
    });
    let (digest, size) = put(&manifest)?;
    Ok(Attachment {
        digest,
        size,
        blobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_as_buildx_takes_them() {
        assert_eq!(parse_sbom("true"), Ok(true));
        assert_eq!(parse_sbom("false"), Ok(false));
        assert_eq!(parse_sbom(""), Ok(true));
        assert!(parse_sbom("generator=docker/scout-sbom-indexer")
            .unwrap_err()
            .contains("generator"));
        assert_eq!(parse_provenance(""), Ok(Some(Mode::Min)));
        assert_eq!(parse_provenance("true"), Ok(Some(Mode::Min)));
        assert_eq!(parse_provenance("false"), Ok(None));
        assert_eq!(parse_provenance("mode=max"), Ok(Some(Mode::Max)));
        assert_eq!(parse_provenance("mode=min"), Ok(Some(Mode::Min)));
        assert!(parse_provenance("mode=all")
            .unwrap_err()
            .contains("\"all\""));
        assert!(parse_provenance("x=1").unwrap_err().contains("\"x\""));
    }

    #[test]
    fn purls_as_buildkit_writes_them() {
        assert_eq!(
            docker_purl("busybox", "linux/amd64"),
            "pkg:docker/busybox@latest?platform=linux%2Famd64"
        );
        assert_eq!(
            docker_purl("localhost:5000/a/b:v1", "linux/arm64/v8"),
            "pkg:docker/localhost:5000/a/b@v1?platform=linux%2Farm64%2Fv8"
        );
    }
}
