//! `--cache-to type=registry,ref=REF` and `--cache-from type=registry,ref=REF`: a build cache
//! as one image manifest in a registry (BuildKit's image-manifest style), its entries in the
//! config blob, the layers they name as the manifest's layers; `--cache-to type=inline`: the
//! entries of an image's own steps in its config ([`INLINE_CACHE_KEY`]), which `--cache-from`
//! reads from the pushed image. The bytes go through
//! [`crate::registry`]'s client; the entries are imported as [`super::local`]'s are
//! ([`super::import_entry`]).

use super::{exportable, import_entry, Entry};
use crate::image::layer::Compression;
use crate::image::store::Store;
use crate::image::unpacked::LayerError;
use crate::image::{sha256, valid_digest};
use crate::registry::client::Client;
use crate::registry::{failed, Options, Reference, RegistryError};
use oci_spec::image::{Descriptor, ImageManifest, MediaType};
use std::fs;

/// The config media type of a build cache manifest (`--cache-to type=registry`).
pub const CACHE_CONFIG_MEDIA_TYPE: &str = "application/vnd.brig.build.cache.config.v1+json";

/// The config blob of a build cache manifest: every exported entry by cache key.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct CacheConfig {
    entries: std::collections::BTreeMap<String, Entry>,
}

/// The key of the image config that holds an inline cache (`--cache-to type=inline`): the
/// entries of the steps whose layers are the image's own (or that made none), as a
/// `CacheConfig` object (`{"entries": {KEY: ENTRY}}`). BuildKit keeps its own format under
/// `moby.buildkit.cache.v0`; a key of our own keeps each builder from misreading the other's.
pub const INLINE_CACHE_KEY: &str = "brig.build.cache.v0";

/// The inline cache of an image whose layers have the diffIDs `diff_ids`: the entries among
/// `keys` whose layer is one of them or that have none, their layers compressed as `c` (the
/// image's export compresses them alike: [`crate::image::compress`]), so that they name the
/// blobs the pushed image has.
pub fn inline_cache(
    store: &Store,
    keys: &[String],
    diff_ids: &[&str],
    c: Compression,
) -> Result<serde_json::Value, crate::image::store::StoreError> {
    let mut config = CacheConfig::default();
    for (key, _, e) in exportable(store, keys, c)? {
        if e.layer
            .as_ref()
            .is_none_or(|l| diff_ids.contains(&l.diff_id.as_str()))
        {
            config.entries.insert(key, e);
        }
    }
    Ok(serde_json::to_value(&config).expect("cache entries serialize"))
}

/// Pushes the cache entries `keys` to `dest` as one image manifest (BuildKit's image-manifest
/// style): a config of media type [`CACHE_CONFIG_MEDIA_TYPE`] holding the entries, and as layers
/// the blobs they name (those the registry lacks are uploaded). Returns how many entries.
pub fn push_cache(
    store: &Store,
    opts: &Options,
    keys: &[String],
    dest: &Reference,
    compression: Compression,
) -> Result<usize, RegistryError> {
    let f = |e| failed(dest, e);
    let mut c = Client::new(opts, dest, true).map_err(f)?;
    let mut config = CacheConfig::default();
    let mut layers: Vec<Descriptor> = Vec::new();
    for (key, _, e) in exportable(store, keys, compression)? {
        if let Some(l) = &e.layer {
            if !layers.iter().any(|d| d.digest().as_ref() == l.digest) {
                let path = store.blob_path(&l.digest);
                let size = fs::metadata(&path)
                    .map_err(|e| f(format!("{}: {e}", path.display())))?
                    .len();
                if !c.has_blob(&l.digest).map_err(f)? {
                    c.put_blob(&l.digest, &path, size, None).map_err(f)?;
                }
                let digest = l
                    .digest
                    .parse::<oci_spec::image::Digest>()
                    .map_err(|e| f(format!("{e}")))?;
                layers.push(Descriptor::new(
                    crate::image::blob_media_type(&path)
                        .map_err(|e| f(format!("{}: {e}", path.display())))?,
                    size,
                    digest,
                ));
            }
        }
        config.entries.insert(key, e);
    }
    let n = config.entries.len();
    let bytes = serde_json::to_vec(&config).map_err(|e| f(e.to_string()))?;
    let digest = sha256(&bytes);
    if !c.has_blob(&digest).map_err(f)? {
        let tmp = store.tempdir("cache-config-")?;
        let path = tmp.path().join("config.json");
        fs::write(&path, &bytes).map_err(|e| f(format!("{}: {e}", path.display())))?;
        c.put_blob(&digest, &path, bytes.len() as u64, None)
            .map_err(f)?;
    }
    let manifest = oci_spec::image::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::Other(CACHE_CONFIG_MEDIA_TYPE.into()),
            bytes.len() as u64,
            digest
                .parse::<oci_spec::image::Digest>()
                .map_err(|e| f(e.to_string()))?,
        ))
        .layers(layers)
        .build()
        .map_err(|e| f(e.to_string()))?;
    let mbytes = serde_json::to_vec(&manifest).map_err(|e| f(e.to_string()))?;
    c.put_manifest(
        dest.manifest_ref(),
        &mbytes,
        MediaType::ImageManifest.as_ref(),
    )
    .map_err(f)?;
    Ok(n)
}

/// A build cache in a registry (`--cache-from type=registry,ref=REF`): its entries, read once,
/// and a client to fetch the layer blobs of the entries a build takes.
pub struct RemoteCache {
    reference: Reference,
    client: Client,
    config: CacheConfig,
}

impl RemoteCache {
    /// Reads the cache manifest and config at `r` (verified against their digests); None if
    /// the registry has no manifest there.
    pub fn open(opts: &Options, r: &Reference) -> Result<Option<RemoteCache>, RegistryError> {
        let f = |e| failed(r, e);
        let mut client = Client::new(opts, r, false).map_err(f)?;
        let Some((bytes, _)) = client.find_manifest(r.manifest_ref()).map_err(f)? else {
            return Ok(None);
        };
        if let Some(d) = &r.digest {
            if &sha256(&bytes) != d {
                return Err(f(format!("manifest has digest {}", sha256(&bytes))));
            }
        }
        let m = ImageManifest::from_reader(&bytes[..]).map_err(|e| f(e.to_string()))?;
        let cd = m.config();
        let inline = *cd.media_type() == MediaType::ImageConfig
            || cd.media_type().to_string() == "application/vnd.docker.container.image.v1+json";
        if !inline && cd.media_type().to_string() != CACHE_CONFIG_MEDIA_TYPE {
            return Err(f(format!(
                "not a build cache: the config's media type is {}, not {CACHE_CONFIG_MEDIA_TYPE} \
                 (a cache manifest) or an image config (an inline cache)",
                cd.media_type()
            )));
        }
        let digest = cd.digest().to_string();
        if !valid_digest(&digest) {
            return Err(f(format!("unsupported digest {digest:?}")));
        }
        let mut raw = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(client.get_blob(&digest).map_err(f)?, 64 << 20),
            &mut raw,
        )
        .map_err(|e| f(format!("config {digest}: {e}")))?;
        if sha256(&raw) != digest {
            return Err(f(format!(
                "config {digest}: the registry sent content with digest {}",
                sha256(&raw)
            )));
        }
        let config: CacheConfig = if inline {
            // An image: its inline cache, if it was built with one.
            let image: serde_json::Value = serde_json::from_slice(&raw)
                .map_err(|e| f(format!("image config {digest}: {e}")))?;
            match image.get(INLINE_CACHE_KEY) {
                Some(c) => serde_json::from_value(c.clone())
                    .map_err(|e| f(format!("image config {digest}: {INLINE_CACHE_KEY}: {e}")))?,
                None => return Ok(None),
            }
        } else {
            serde_json::from_slice(&raw).map_err(|e| f(format!("config {digest}: {e}")))?
        };
        Ok(Some(RemoteCache {
            reference: r.clone(),
            client,
            config,
        }))
    }

    /// Brings the entry `key` into the store with its layer (fetched only if the store lacks
    /// it, verified, unpacked: [`import_entry`]). Ok(false) if the cache has no such
    /// entry.
    pub fn import(&mut self, store: &Store, key: &str) -> Result<bool, LayerError> {
        let Some(e) = self.config.entries.get(key) else {
            return Ok(false);
        };
        let origin = self.reference.to_string();
        let client = &mut self.client;
        import_entry(store, key, e, &origin, &mut |digest| {
            Ok(Box::new(client.get_blob(digest)?))
        })?;
        Ok(true)
    }
}
