//! Base images: `scratch`, `oci-layout://DIR[:TAG]`, `oci-archive:PATH[:TAG]`, images of the
//! local store and, for a name the store lacks, a registry ([`crate::registry::pull`]).
//!
//! Owns bringing outside content into the store: every blob is hashed while it is copied and
//! refused if its digest differs, layers are unpacked through [`crate::image::unpack`] (hostile-tar
//! safe) and their diffIDs checked against the image config. Never writes outside the store.

use crate::fsroot::Root;
use crate::image::platform::{platform_manifest, Platform};
use crate::image::store::{ref_name, Image, Store};
use crate::image::unpack::{self, UnpackError};
use crate::image::unpacked::LayerError;
use crate::image::{hex_of, valid_digest};
use oci_spec::image::{ImageIndex, ImageManifest, MediaType};
use std::fs;
use std::io::BufReader;
use std::path::Path;

/// A base image that cannot be used, naming the reference.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("image {reference:?}: {msg}")]
    Bad { reference: String, msg: String },
    #[error(transparent)]
    Store(#[from] crate::image::store::StoreError),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error(transparent)]
    Layer(#[from] LayerError),
}

fn bad(reference: &str, msg: impl std::fmt::Display) -> SourceError {
    SourceError::Bad {
        reference: reference.to_string(),
        msg: msg.to_string(),
    }
}

/// Splits `DIR:TAG` at a colon after the last slash.
fn split_tag(s: &str) -> (&str, Option<&str>) {
    let slash = s.rfind('/').map(|i| i + 1).unwrap_or(0);
    match s[slash..].rfind(':') {
        Some(i) => (&s[..slash + i], Some(&s[slash + i + 1..])),
        None => (s, None),
    }
}

/// True if `reference` names something [`resolve`] can find without a stage.
pub fn is_transport(reference: &str) -> bool {
    reference.starts_with("oci-layout://") || reference.starts_with("oci-archive:")
}

/// The image `reference` names for `platform` (its entry, when it is an index), imported into
/// the store (pulled from its registry if the store has no image of that name for that
/// platform); None for `scratch`.
pub fn resolve(
    store: &Store,
    reference: &str,
    registry: &crate::registry::Options,
    platform: &Platform,
) -> Result<Option<Image>, SourceError> {
    if reference == "scratch" {
        return Ok(None);
    }
    if let Some(rest) = reference.strip_prefix("oci-layout://") {
        let (dir, tag) = split_tag(rest);
        return import_layout(store, reference, Path::new(dir), tag, platform).map(Some);
    }
    if let Some(rest) = reference.strip_prefix("oci-archive:") {
        let (path, tag) = split_tag(rest);
        let tmp = store.tempdir("archive-")?;
        let f = fs::File::open(path).map_err(|e| bad(reference, format!("open {path}: {e}")))?;
        let root = Root::open(tmp.path()).map_err(|e| bad(reference, e))?;
        unpack::unpack(
            &root,
            Path::new(""),
            BufReader::new(f),
            path,
            unpack::Options {
                whiteouts: false,
                owners: false,
            },
        )?;
        return import_layout(store, reference, tmp.path(), tag, platform).map(Some);
    }
    if registry.pull_always {
        // --pull, as BuildKit's: the registry's current image, whatever the store has.
        if let Some(r) = crate::registry::Reference::parse(reference) {
            return Ok(Some(crate::registry::pull_for(
                store, registry, &r, platform,
            )?));
        }
    }
    // The store's names name one image each: used when it is of the platform asked for.
    let mut other = None;
    if let Some(d) = store.resolve(reference)? {
        let img = store.image(&d)?;
        if of_platform(&img, platform) {
            return Ok(Some(img));
        }
        other = Some(img);
    }
    match crate::registry::Reference::parse(reference) {
        Some(r) => {
            if let Some(d) = store.resolve(&r.store_name())? {
                let img = store.image(&d)?;
                if of_platform(&img, platform) {
                    return Ok(Some(img));
                }
            }
            Ok(Some(crate::registry::pull_for(
                store, registry, &r, platform,
            )?))
        }
        None => Err(bad(
            reference,
            match other {
                Some(img) => format!(
                    "the store's image is {}/{}, not {platform}, and the name is not a \
                     registry reference to pull {platform} from",
                    img.config.os, img.config.architecture
                ),
                None => "not in the local store and not a valid registry reference".into(),
            },
        )),
    }
}

/// True when `img`'s config is of `platform` (an image without an architecture serves any).
pub fn of_platform(img: &Image, platform: &Platform) -> bool {
    let c = &img.config;
    c.architecture.is_empty()
        || platform.matches(&c.os, &c.architecture, c.variant().unwrap_or_default())
}

/// Imports the image tagged `tag` of the layout at `dir`.
fn import_layout(
    store: &Store,
    reference: &str,
    dir: &Path,
    tag: Option<&str>,
    platform: &Platform,
) -> Result<Image, SourceError> {
    let idx_path = dir.join("index.json");
    let idx = ImageIndex::from_file(&idx_path)
        .map_err(|e| bad(reference, format!("{}: {e}", idx_path.display())))?;
    let ms = idx.manifests();
    let pick = match tag {
        Some(t) => ms.iter().find(|m| {
            ref_name(m)
                .map(|n| n == t || split_tag(&n).1 == Some(t))
                .unwrap_or(false)
        }),
        None if ms.len() == 1 => ms.first(),
        None => ms.iter().find(|m| ref_name(m).as_deref() == Some("latest")),
    }
    .ok_or_else(|| {
        bad(
            reference,
            format!(
                "no manifest tagged {:?} in {}",
                tag.unwrap_or("latest"),
                idx_path.display()
            ),
        )
    })?;
    let mut desc = pick.clone();
    // An index (multi-platform): take the platform's entry.
    for _ in 0..4 {
        if !matches!(desc.media_type(), MediaType::ImageIndex)
            && desc.media_type().to_string()
                != "application/vnd.docker.distribution.manifest.list.v2+json"
        {
            break;
        }
        let bytes = copy_blob(store, reference, dir, desc.digest().as_ref())?;
        let sub = ImageIndex::from_reader(&bytes[..]).map_err(|e| bad(reference, e))?;
        desc = platform_manifest(&sub, platform)
            .cloned()
            .ok_or_else(|| bad(reference, format!("no {platform} manifest")))?;
    }
    let mdigest = desc.digest().to_string();
    let mbytes = copy_blob(store, reference, dir, &mdigest)?;
    let manifest = ImageManifest::from_reader(&mbytes[..]).map_err(|e| bad(reference, e))?;
    copy_blob(store, reference, dir, manifest.config().digest().as_ref())?;
    for l in manifest.layers() {
        copy_blob(store, reference, dir, l.digest().as_ref())?;
    }
    let img = store.image(&mdigest)?;
    if img.config.rootfs.diff_ids.len() != img.manifest.layers().len() {
        return Err(bad(
            reference,
            "config rootfs.diff_ids and manifest layers differ in number",
        ));
    }
    Ok(img)
}

/// Copies blob `digest` from the layout `dir` into the store (verified); returns it if it is
/// small (manifests, configs, indexes) or empty.
fn copy_blob(
    store: &Store,
    reference: &str,
    dir: &Path,
    digest: &str,
) -> Result<Vec<u8>, SourceError> {
    if !valid_digest(digest) {
        return Err(bad(reference, format!("unsupported digest {digest:?}")));
    }
    let small = |p: &Path| -> Result<Vec<u8>, SourceError> {
        let md = fs::metadata(p).map_err(|e| bad(reference, e))?;
        if md.len() < 4 << 20 {
            fs::read(p).map_err(|e| bad(reference, e))
        } else {
            Ok(Vec::new())
        }
    };
    if store.has_blob(digest) {
        return small(&store.blob_path(digest));
    }
    let src = dir.join("blobs/sha256").join(hex_of(digest));
    let mut f =
        fs::File::open(&src).map_err(|e| bad(reference, format!("{}: {e}", src.display())))?;
    if let Some(got) = store.put_blob_checked(&mut f, digest)? {
        return Err(bad(
            reference,
            format!("blob {} has digest {got}, expected {digest}", src.display()),
        ));
    }
    small(&store.blob_path(digest))
}
