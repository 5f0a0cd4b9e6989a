//! `--cache-to type=local,dest=DIR` and `--cache-from type=local,src=DIR`: a build cache as a
//! directory, `DIR/cache/HEX.json` and `DIR/blobs/sha256/HEX`.

use super::{err, exportable, import_entry, Entry};
use crate::image::hex_of;
use crate::image::layer::Compression;
use crate::image::store::{Store, StoreError};
use crate::image::unpacked::{bad, LayerError};
use std::fs;
use std::io;
use std::path::Path;

/// Writes the entries `keys` and their layer blobs to the cache directory `dir` (created):
/// `DIR/cache/HEX.json` and `DIR/blobs/sha256/HEX`, each by rename of a complete file, blobs
/// before the entries that name them. Returns how many entries were written.
pub fn export_local(
    store: &Store,
    keys: &[String],
    dir: &Path,
    c: Compression,
) -> Result<usize, StoreError> {
    let blobs = dir.join("blobs/sha256");
    let entries = dir.join("cache");
    for d in [&blobs, &entries] {
        fs::create_dir_all(d).map_err(|e| err(d, e))?;
    }
    let list = exportable(store, keys, c)?;
    for (key, bytes, e) in &list {
        if let Some(l) = &e.layer {
            let dst = blobs.join(hex_of(&l.digest));
            if !dst.is_file() {
                copy_atomic(&store.blob_path(&l.digest), &dst)?;
            }
        }
        let dst = entries.join(format!("{}.json", hex_of(key)));
        let mut t = tempfile::Builder::new()
            .prefix(".entry-")
            .tempfile_in(&entries)
            .map_err(|e| err(&entries, e))?;
        io::Write::write_all(&mut t, bytes).map_err(|e| err(&dst, e))?;
        t.persist(&dst).map_err(|e| err(&dst, e.error))?;
    }
    Ok(list.len())
}

/// Copies `src` to `dst` through a temporary file next to `dst`.
fn copy_atomic(src: &Path, dst: &Path) -> Result<(), StoreError> {
    let parent = dst.parent().unwrap_or(Path::new("."));
    let mut t = tempfile::Builder::new()
        .prefix(".blob-")
        .tempfile_in(parent)
        .map_err(|e| err(parent, e))?;
    let mut f = fs::File::open(src).map_err(|e| err(src, e))?;
    io::copy(&mut f, &mut t).map_err(|e| err(dst, e))?;
    t.persist(dst).map_err(|e| err(dst, e.error))?;
    Ok(())
}

/// Brings the entry `key` of the cache directory `dir` into the store, with its layer (the blob
/// verified against its digest, unpacked and checked against its diffID). Ok(false) if `dir`
/// has no such entry.
pub fn import_local(store: &Store, dir: &Path, key: &str) -> Result<bool, LayerError> {
    let p = dir.join("cache").join(format!("{}.json", hex_of(key)));
    let Ok(bytes) = fs::read(&p) else {
        return Ok(false);
    };
    let origin = p.display().to_string();
    let e: Entry = serde_json::from_slice(&bytes).map_err(|e| bad(&origin, e))?;
    import_entry(store, key, &e, &origin, &mut |digest| {
        let src = dir.join("blobs/sha256").join(hex_of(digest));
        let f = fs::File::open(&src).map_err(|e| format!("{}: {e}", src.display()))?;
        Ok(Box::new(f))
    })?;
    Ok(true)
}
