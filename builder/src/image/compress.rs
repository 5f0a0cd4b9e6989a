//! Layers leave the store compressed; they are not compressed to enter it.
//!
//! A layer a build makes is stored as a plain tar (its digest is its diffID): writing it costs a
//! pass over the files and a sha256, no compression. BuildKit keeps its own snapshots the same
//! way and compresses only when an exporter asks. Here [`for_export`] does that: before an image
//! goes to a layout, an archive or a registry, each plain layer is compressed once per
//! compression (layers in parallel), the result is remembered in `STORE/compressed/HEX.KIND`
//! (the compressed blob's digest and size) so the next export, push or cache export of the
//! same layer only reads that small record, and the manifest is rewritten with the compressed
//! descriptors. The config, and with it the image id and the diffIDs, do not change.
//!
//! Compressed blobs are referenced by no tag: gc may remove them, and a record whose blob is gone
//! is ignored (the layer is compressed again). Layers that came compressed (a pulled base,
//! a cache import) are exported as they are, as BuildKit does without `force-compression`.

use super::layer::Compression;
use super::store::{at, Image, Result, Store};
use super::HashWriter;
use oci_spec::image::{Descriptor, MediaType};
use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// A compressed layer blob in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compressed {
    pub digest: String,
    pub size: u64,
    pub media_type: MediaType,
}

fn record_path(store: &Store, plain: &str, c: Compression) -> PathBuf {
    store
        .root()
        .join("compressed")
        .join(format!("{}.{}", super::hex_of(plain), c.name()))
}

/// The remembered compression of `plain`, if its blob is still in the store.
fn recorded(store: &Store, plain: &str, c: Compression) -> Option<Compressed> {
    let text = fs::read_to_string(record_path(store, plain, c)).ok()?;
    let (digest, size) = text.trim().split_once(' ')?;
    let size: u64 = size.parse().ok()?;
    let on_disk = fs::metadata(store.blob_path(digest)).ok()?.len();
    (store.has_blob(digest) && on_disk == size).then(|| Compressed {
        digest: digest.to_string(),
        size,
        media_type: c.media_type(),
    })
}

/// The blob of the plain layer `plain` compressed as `c`: remembered, or made now.
pub fn layer(store: &Store, plain: &str, c: Compression) -> Result<Compressed> {
    if let Some(done) = recorded(store, plain, c) {
        return Ok(done);
    }
    let src = store.blob_path(plain);
    let tmp = store.tempdir("compress-")?;
    let out = tmp.path().join("blob");
    let file = at(&out, fs::File::create(&out))?;
    let hw = HashWriter::new(io::BufWriter::with_capacity(1 << 20, file));
    let mut enc = at(&out, c.encoder(hw))?;
    let input = at(&src, fs::File::open(&src))?;
    at(
        &src,
        io::copy(&mut io::BufReader::with_capacity(1 << 20, input), &mut enc),
    )?;
    let (buf, digest, size) = at(&out, enc.finish())?.finish();
    let file = at(&out, buf.into_inner().map_err(|e| e.into_error()))?;
    at(&out, file.sync_all())?;
    store.put_blob_file(&out, &digest)?;
    let rec = record_path(store, plain, c);
    let dir = rec.parent().expect("a record has a directory");
    at(dir, fs::create_dir_all(dir))?;
    let mut t = at(
        dir,
        tempfile::Builder::new().prefix(".record-").tempfile_in(dir),
    )?;
    at(&rec, writeln!(t, "{digest} {size}"))?;
    at(&rec, t.persist(&rec).map(|_| ()).map_err(|e| e.error))?;
    Ok(Compressed {
        digest,
        size,
        media_type: c.media_type(),
    })
}

/// Compresses the plain layers `plain` (digests) as `c`, up to one thread per core.
pub fn layers(
    store: &Store,
    plain: &[String],
    c: Compression,
) -> Result<HashMap<String, Compressed>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(plain.len());
    let next = AtomicUsize::new(0);
    let done = Mutex::new(HashMap::new());
    let failed = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(d) = plain.get(i) else { break };
                match layer(store, d, c) {
                    Ok(z) => {
                        done.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(d.clone(), z);
                    }
                    Err(e) => {
                        failed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                        break;
                    }
                }
            });
        }
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(done.into_inner().unwrap_or_else(|p| p.into_inner())),
    }
}

/// `img` as it leaves the store: its plain layers compressed as `c` and a manifest naming them
/// (stored as a blob). `img` itself when there is nothing to compress.
pub fn for_export(store: &Store, img: &Image, c: Compression) -> Result<Image> {
    if c == Compression::Uncompressed {
        return Ok(img.clone());
    }
    let mut plain: Vec<String> = Vec::new();
    for l in img.manifest.layers() {
        let d = l.digest().to_string();
        if *l.media_type() == MediaType::ImageLayer && !plain.contains(&d) {
            plain.push(d);
        }
    }
    if plain.is_empty() {
        return Ok(img.clone());
    }
    let done = layers(store, &plain, c)?;
    let mut manifest = img.manifest.clone();
    let new_layers: Vec<Descriptor> = manifest
        .layers()
        .iter()
        .map(|l| match done.get(l.digest().as_ref()) {
            Some(z) => {
                let mut d = Descriptor::new(
                    z.media_type.clone(),
                    z.size,
                    z.digest
                        .parse::<oci_spec::image::Digest>()
                        .expect("a sha256 digest of our own"),
                );
                d.set_annotations(l.annotations().clone());
                d
            }
            None => l.clone(),
        })
        .collect();
    manifest.set_layers(new_layers);
    let bytes = serde_json::to_vec(&manifest).expect("manifest serializes");
    let (digest, _) = store.put_blob(&bytes)?;
    Ok(Image {
        manifest_digest: digest,
        manifest,
        config_digest: img.config_digest.clone(),
        config: img.config.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::layer;

    fn plain_layer(store: &Store, content: &str) -> String {
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("f"), content).unwrap();
        let out = store.tempdir("t-").unwrap();
        let p = out.path().join("l");
        let w = layer::write(
            src.path(),
            &p,
            layer::Options {
                clamp_mtime: Some(0),
                compression: Compression::Uncompressed,
            },
        )
        .unwrap();
        store.put_blob_file(&p, &w.digest).unwrap();
        w.digest
    }

    #[test]
    fn a_plain_layer_is_compressed_once_and_decompresses_to_itself() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let plain = plain_layer(&store, "hello\n");
        let z = layer(&store, &plain, Compression::Gzip).unwrap();
        assert_eq!(z.media_type, MediaType::ImageLayerGzip);
        assert_ne!(z.digest, plain);
        let mut back = Vec::new();
        io::Read::read_to_end(
            &mut crate::image::decompress(io::BufReader::new(
                fs::File::open(store.blob_path(&z.digest)).unwrap(),
            ))
            .unwrap(),
            &mut back,
        )
        .unwrap();
        assert_eq!(crate::image::sha256(&back), plain);
        // Remembered: the second call finds the record, even with the plain blob gone.
        let rec = record_path(&store, &plain, Compression::Gzip);
        assert!(rec.is_file());
        assert_eq!(layer(&store, &plain, Compression::Gzip).unwrap(), z);
        // A record whose blob gc removed is not trusted: compressed again.
        fs::remove_file(store.blob_path(&z.digest)).unwrap();
        assert_eq!(recorded(&store, &plain, Compression::Gzip), None);
        assert_eq!(layer(&store, &plain, Compression::Gzip).unwrap(), z);
        assert!(store.has_blob(&z.digest));
        let zz = layer(&store, &plain, Compression::Zstd).unwrap();
        assert_eq!(zz.media_type, MediaType::ImageLayerZstd);
    }

    #[test]
    fn a_missing_plain_blob_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let missing = format!("sha256:{}", "a".repeat(64));
        let e = layers(&store, std::slice::from_ref(&missing), Compression::Gzip)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&"a".repeat(64)), "{e}");
    }
}
