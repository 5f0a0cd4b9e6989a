//! The OCI image index a build writes out when it has more than one manifest to give: one
//! image per platform (`--platform linux/amd64,linux/arm64`), each with its attestation
//! manifest when attestations are asked for (`crate::attest`), as BuildKit lays them out:
//!
//! ```text
//! index ─┬─ image manifest (linux/amd64)       platform of its config
//!        ├─ image manifest (linux/arm64)
//!        ├─ attestation manifest (of amd64)    platform unknown/unknown,
//!        └─ attestation manifest (of arm64)    vnd.docker.reference.{type,digest}
//! ```
//!
//! Owns the index's bytes (put in the store) and the list of what an exporter must copy with
//! it. Knows nothing of what the attestations say.

use super::store::{Image, Store};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";

/// An attestation manifest in the store, for one image.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub digest: String,
    pub size: u64,
    /// Its config and layers.
    pub blobs: Vec<String>,
}

/// An index in the store and what it names.
#[derive(Debug, Clone)]
pub struct Indexed {
    pub digest: String,
    pub size: u64,
    /// The image manifests, in the index's order.
    pub images: Vec<String>,
    /// The attestation manifests and every blob they name.
    pub attestations: Vec<String>,
    pub attestation_blobs: Vec<String>,
}

/// `{"architecture", "os"[, "variant"]}` of `img`'s config.
pub fn platform_json(img: &Image) -> Value {
    let c = &img.config;
    let mut p = json!({"architecture": c.architecture, "os": c.os});
    if let Some(v) = c.variant() {
        p["variant"] = json!(v);
    }
    p
}

/// Writes the index of `entries` (images with their attestation manifests, if any) to the
/// store, with `annotations`.
pub fn write(
    store: &Store,
    entries: &[(Image, Option<Attachment>)],
    annotations: &BTreeMap<String, String>,
) -> Result<Indexed, String> {
    let mut manifests = Vec::new();
    let mut out = Indexed {
        digest: String::new(),
        size: 0,
        images: Vec::new(),
        attestations: Vec::new(),
        attestation_blobs: Vec::new(),
    };
    for (img, _) in entries {
        let path = store.blob_path(&img.manifest_digest);
        let size = std::fs::metadata(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        manifests.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": img.manifest_digest,
            "size": size,
            "platform": platform_json(img),
        }));
        out.images.push(img.manifest_digest.clone());
    }
    for (img, att) in entries {
        let Some(a) = att else { continue };
        manifests.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": a.digest,
            "size": a.size,
            "annotations": {
                REFERENCE_DIGEST: img.manifest_digest,
                REFERENCE_TYPE: "attestation-manifest",
            },
            "platform": {"architecture": "unknown", "os": "unknown"},
        }));
        out.attestations.push(a.digest.clone());
        out.attestation_blobs.extend(a.blobs.iter().cloned());
    }
    let mut index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    if !annotations.is_empty() {
        index["annotations"] = json!(annotations);
    }
    let bytes = serde_json::to_vec(&index).expect("json");
    let (digest, _) = store.put_blob(&bytes).map_err(|e| e.to_string())?;
    out.digest = digest;
    out.size = bytes.len() as u64;
    Ok(out)
}
