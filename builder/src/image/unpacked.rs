//! The store's unpacked layers (`STORE/layers/HEX`, named by diffID), what RUN steps mount:
//! each extracted once from its blob through [`super::unpack`] (hostile-tar safe) into a
//! temporary directory of the store, its diffID checked, then moved in by rename, so a layer
//! directory is always complete.

use super::store::{Image, Store, StoreError};
use super::unpack::{self, UnpackError};
use super::HashWriter;
use crate::fsroot::Root;
use std::fs;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

/// A layer that cannot be brought into the store, naming where it came from.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("image {reference:?}: {msg}")]
    Bad { reference: String, msg: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
}

/// A [`LayerError::Bad`] about `reference`.
pub fn bad(reference: &str, msg: impl std::fmt::Display) -> LayerError {
    LayerError::Bad {
        reference: reference.to_string(),
        msg: msg.to_string(),
    }
}

/// The unpacked directories of the image's layers, bottom first, unpacking what is missing.
pub fn layer_dirs(store: &Store, img: &Image) -> Result<Vec<PathBuf>, LayerError> {
    let mut dirs = Vec::new();
    for (l, diff_id) in img
        .manifest
        .layers()
        .iter()
        .zip(img.config.rootfs.diff_ids.iter())
    {
        let dst = store.layer_dir(diff_id);
        if !dst.is_dir() {
            unpack_layer(store, l.digest().as_ref(), diff_id, &dst)?;
        }
        dirs.push(dst);
    }
    Ok(dirs)
}

/// A reader that hashes what it reads.
struct HashReader<R> {
    inner: R,
    hw: HashWriter<io::Sink>,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        io::Write::write_all(&mut self.hw, &buf[..n])?;
        Ok(n)
    }
}

/// Unpacks the blob `digest` of the store to `dst` (the layer directory of `diff_id`), checking
/// that its content has that diffID.
pub fn unpack_layer(
    store: &Store,
    digest: &str,
    diff_id: &str,
    dst: &Path,
) -> Result<(), LayerError> {
    let blob = store.blob_path(digest);
    let f = fs::File::open(&blob).map_err(|e| bad(digest, e))?;
    let stream = super::decompress(BufReader::new(f)).map_err(|e| bad(digest, e))?;
    let mut hr = HashReader {
        inner: stream,
        hw: HashWriter::new(io::sink()),
    };
    let tmp = store.tempdir("unpack-")?;
    let tdir = tmp.path().join("layer");
    fs::create_dir(&tdir).map_err(|e| bad(digest, e))?;
    let root = Root::open(&tdir).map_err(|e| bad(digest, e))?;
    unpack::unpack(
        &root,
        Path::new(""),
        &mut hr,
        &format!("layer {digest}"),
        unpack::Options {
            whiteouts: true,
            owners: true,
        },
    )?;
    // Drain the tar padding so the hash covers the whole stream.
    io::copy(&mut hr, &mut io::sink()).map_err(|e| bad(digest, e))?;
    let (_, got, _) = hr.hw.finish();
    if got != diff_id {
        return Err(bad(
            digest,
            format!("layer content has diffID {got}, the config says {diff_id}"),
        ));
    }
    match fs::rename(&tdir, dst) {
        Ok(()) => Ok(()),
        Err(_) if dst.is_dir() => Ok(()),
        Err(e) => Err(bad(digest, e)),
    }
}
