//! Registries over the OCI distribution API: [`pull`] an image into the local store (FROM,
//! `brig-build pull`), [`push`] one from it (`brig-build push`, `--output type=registry`).
//! The build cache's bytes go through [`client`] too (`crate::cache::remote`); this module
//! knows nothing of the cache.
//!
//! [`mod@reference`] parses names, [`auth`] finds credentials and reads challenges, [`client`]
//! speaks HTTP. Owns bringing registry content into the store with the same rules as
//! `crate::source`: every blob is hashed while it is written and refused if its
//! digest differs, and the manifest is stored last, so a failed pull never leaves a name that
//! points at missing blobs. Hand-written on `ureq` rather than `oci-client`: that crate needs
//! an async runtime (tokio) for what is here a sequence of blocking requests.

pub mod auth;
pub mod client;
pub mod reference;
pub mod tls;

pub use client::Options;
pub use reference::Reference;

use crate::image::platform::Platform;
use crate::image::store::{Image, Store, StoreError};
use crate::image::{sha256, valid_digest};
use client::Client;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use std::fs;

/// A pull or push that failed, naming the reference.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{reference}: {msg}")]
    Failed { reference: String, msg: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A [`RegistryError::Failed`] about `r`.
pub fn failed(r: &Reference, msg: impl std::fmt::Display) -> RegistryError {
    RegistryError::Failed {
        reference: r.to_string(),
        msg: msg.to_string(),
    }
}

/// The media type of a manifest or index: the HTTP Content-Type, else its `mediaType` field,
/// else OCI's manifest type.
fn media_type_of(content_type: &str, bytes: &[u8]) -> String {
    if !content_type.is_empty() && content_type != "application/json" {
        return content_type.to_string();
    }
    #[derive(serde::Deserialize)]
    struct M {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<M>(bytes) {
        Ok(M {
            media_type: Some(m),
            ..
        }) => m,
        Ok(M {
            manifests: Some(_), ..
        }) => MediaType::ImageIndex.to_string(),
        _ => MediaType::ImageManifest.to_string(),
    }
}

fn is_index(media_type: &str) -> bool {
    media_type == MediaType::ImageIndex.to_string()
        || media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
}

/// Pulls `r` (this host's platform of it) into the store and names it `r` there; returns the
/// image.
pub fn pull(store: &Store, opts: &Options, r: &Reference) -> Result<Image, RegistryError> {
    pull_for(store, opts, r, &Platform::host())
}

/// Pulls the `platform` image of `r` into the store; returns it. The store names it `r` when
/// it is of this host's platform (a name serves the host: another platform's image is found
/// again through the registry, its blobs already in the store). A Docker Hub image comes from
/// the first `--registry-mirror` that has it, else from Docker Hub (docker's
/// `registry-mirrors`).
pub fn pull_for(
    store: &Store,
    opts: &Options,
    r: &Reference,
    platform: &Platform,
) -> Result<Image, RegistryError> {
    if r.registry == "docker.io" {
        let mut tried = Vec::new();
        for m in &opts.mirrors {
            let via = Reference {
                registry: m.clone(),
                ..r.clone()
            };
            match pull_from(store, opts, r, &via, platform) {
                Ok(img) => return Ok(img),
                Err(e) => tried.push(e.to_string()),
            }
        }
        return pull_from(store, opts, r, r, platform).map_err(|e| {
            if tried.is_empty() {
                e
            } else {
                failed(r, format!("{e}; mirrors: {}", tried.join("; ")))
            }
        });
    }
    pull_from(store, opts, r, r, platform)
}

/// Pulls `r` from `via` (the same repository and tag on another registry: a mirror, or `r`).
fn pull_from(
    store: &Store,
    opts: &Options,
    r: &Reference,
    via: &Reference,
    platform: &Platform,
) -> Result<Image, RegistryError> {
    let mut c = Client::new(opts, via, false).map_err(|e| failed(via, e))?;
    let (mut bytes, ct) = c.get_manifest(r.manifest_ref()).map_err(|e| failed(r, e))?;
    if let Some(d) = &r.digest {
        if &sha256(&bytes) != d {
            return Err(failed(r, format!("manifest has digest {}", sha256(&bytes))));
        }
    }
    let mut mt = media_type_of(&ct, &bytes);
    // An index (multi-platform): take the platform's entry.
    for _ in 0..4 {
        if !is_index(&mt) {
            break;
        }
        let idx = ImageIndex::from_reader(&bytes[..]).map_err(|e| failed(r, e))?;
        let desc = crate::image::platform::platform_manifest(&idx, platform)
            .ok_or_else(|| failed(r, format!("no {platform} manifest in the index")))?;
        let d = desc.digest().to_string();
        let (b, ct) = c.get_manifest(&d).map_err(|e| failed(r, e))?;
        if sha256(&b) != d {
            return Err(failed(r, format!("manifest {d} has digest {}", sha256(&b))));
        }
        mt = media_type_of(&ct, &b);
        bytes = b;
    }
    let manifest = ImageManifest::from_reader(&bytes[..]).map_err(|e| failed(r, e))?;
    for d in manifest
        .layers()
        .iter()
        .chain(std::iter::once(manifest.config()))
    {
        fetch_blob(store, &mut c, d.digest().as_ref()).map_err(|e| failed(r, e))?;
    }
    let (mdigest, _) = store.put_blob(&bytes)?;
    let desc = Descriptor::new(
        MediaType::from(mt.as_str()),
        bytes.len() as u64,
        mdigest
            .parse::<oci_spec::image::Digest>()
            .map_err(|e| failed(r, e))?,
    );
    let img = store.image(&mdigest)?;
    if img.config.rootfs.diff_ids.len() != img.manifest.layers().len() {
        return Err(failed(
            r,
            "config rootfs.diff_ids and manifest layers differ in number",
        ));
    }
    let host = Platform::host();
    if platform.os == host.os && platform.arch == host.arch {
        store.tag(&desc, &[r.store_name()])?;
    }
    Ok(img)
}

/// Copies blob `digest` from the registry into the store unless it is there, verifying it.
fn fetch_blob(store: &Store, c: &mut Client, digest: &str) -> Result<(), String> {
    if !valid_digest(digest) {
        return Err(format!("unsupported digest {digest:?}"));
    }
    if store.has_blob(digest) {
        return Ok(());
    }
    // A download that breaks off (a dropped connection, a proxy's timeout) starts again; what
    // it wrote is a temporary file the store drops.
    let mut attempt = 1;
    loop {
        let mut src = c.get_blob(digest)?;
        // A short read may also end "cleanly" and show as another digest: tried again too.
        let failure = match store.put_blob_checked(&mut src, digest) {
            Ok(None) => return Ok(()),
            Ok(Some(got)) => format!("the registry sent content with digest {got}"),
            Err(e) => e.to_string(),
        };
        if attempt == client::MAX_ATTEMPTS {
            return Err(format!(
                "blob {digest}: {failure} (after {attempt} attempts)"
            ));
        }
        attempt += 1;
        std::thread::sleep(std::time::Duration::from_millis(250 * attempt as u64));
    }
}

/// Pushes `img` from the store to `dest`: the blobs the registry lacks, then the manifest
/// under `dest`'s tag (or digest). Returns the manifest digest.
pub fn push(
    store: &Store,
    opts: &Options,
    img: &Image,
    dest: &Reference,
) -> Result<String, RegistryError> {
    let mut c = Client::new(opts, dest, true).map_err(|e| failed(dest, e))?;
    push_blobs(&mut c, store, dest, &image_blobs(img))?;
    let bytes = store.read_blob(&img.manifest_digest)?;
    let mt = media_type_of("", &bytes);
    if let Some(d) = &dest.digest {
        if d != &img.manifest_digest {
            return Err(failed(
                dest,
                format!("the image's manifest is {}", img.manifest_digest),
            ));
        }
    }
    c.put_manifest(dest.manifest_ref(), &bytes, &mt)
        .map_err(|e| failed(dest, e))?;
    Ok(img.manifest_digest.clone())
}

/// Pushes the index of a build (`imgs`, one a platform, and their attestations): every blob
/// the registry lacks, each manifest by digest, then the index under `dest`'s tag (or digest).
/// Returns the index digest.
pub fn push_index(
    store: &Store,
    opts: &Options,
    imgs: &[Image],
    idx: &crate::image::index::Indexed,
    dest: &Reference,
) -> Result<String, RegistryError> {
    let mut c = Client::new(opts, dest, true).map_err(|e| failed(dest, e))?;
    let mut blobs: Vec<String> = imgs.iter().flat_map(image_blobs).collect();
    blobs.extend(idx.attestation_blobs.iter().cloned());
    push_blobs(&mut c, store, dest, &blobs)?;
    for m in idx.images.iter().chain(&idx.attestations) {
        let bytes = store.read_blob(m)?;
        c.put_manifest(m, &bytes, &media_type_of("", &bytes))
            .map_err(|e| failed(dest, e))?;
    }
    if let Some(d) = &dest.digest {
        if d != &idx.digest {
            return Err(failed(dest, format!("the image's index is {}", idx.digest)));
        }
    }
    let bytes = store.read_blob(&idx.digest)?;
    c.put_manifest(
        dest.manifest_ref(),
        &bytes,
        "application/vnd.oci.image.index.v1+json",
    )
    .map_err(|e| failed(dest, e))?;
    Ok(idx.digest.clone())
}

/// The layers and config of `img`.
fn image_blobs(img: &Image) -> Vec<String> {
    img.manifest
        .layers()
        .iter()
        .chain(std::iter::once(img.manifest.config()))
        .map(|d| d.digest().to_string())
        .collect()
}

/// Uploads those of `digests` the registry lacks; one that an image of the store pulled from
/// another repository of the same registry has is mounted from there (no upload).
fn push_blobs(
    c: &mut Client,
    store: &Store,
    dest: &Reference,
    digests: &[String],
) -> Result<(), RegistryError> {
    let mut sources: Option<Vec<(String, Vec<String>)>> = None;
    for digest in digests {
        if c.has_blob(digest).map_err(|e| failed(dest, e))? {
            continue;
        }
        let sources = match &mut sources {
            Some(s) => s,
            None => sources.insert(repositories_on(store, &dest.registry)),
        };
        let from = sources
            .iter()
            .find(|(repo, blobs)| repo != &dest.repository && blobs.contains(digest))
            .map(|(repo, _)| repo.as_str());
        let path = store.blob_path(digest);
        let size = fs::metadata(&path)
            .map_err(|e| failed(dest, format!("{}: {e}", path.display())))?
            .len();
        c.put_blob(digest, &path, size, from)
            .map_err(|e| failed(dest, e))?;
    }
    Ok(())
}

/// The repositories of `registry` the store has images from (by their names), with the
/// blobs each image holds.
fn repositories_on(store: &Store, registry: &str) -> Vec<(String, Vec<String>)> {
    let Ok(idx) = store.index() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for m in idx.manifests() {
        let Some(name) = crate::image::store::ref_name(m) else {
            continue;
        };
        let Some(r) = Reference::parse(&name) else {
            continue;
        };
        if r.registry != registry {
            continue;
        }
        if let Ok(img) = store.image(m.digest().as_ref()) {
            out.push((r.repository, image_blobs(&img)));
        }
    }
    out
}
