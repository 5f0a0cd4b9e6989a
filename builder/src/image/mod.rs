//! Images, the lower layer of the builder: layers ([`layer`] writes them, [`unpack`] extracts
//! them safely, [`unpacked`] keeps them unpacked in the store, [`whiteout`] reads an overlay
//! upper dir's deletion marks), the image config ([`config`]),
//! platforms ([`platform`]), the index of a build's manifests ([`index`]), the local
//! content-addressed store ([`store`]) and the compression of its plain layers on their way out
//! ([`compress`]).
//!
//! Never imports the build cache, the registry client or the build: they sit above and extend
//! the store ([`crate::cache`] keeps its entries there).

pub mod compress;
pub mod config;
pub mod index;
pub mod layer;
pub mod platform;
pub mod store;
pub mod unpack;
pub mod unpacked;
pub mod whiteout;

use sha2::{Digest as _, Sha256};
use std::io::{self, Write};

/// A writer that hashes (sha256) and counts what goes through it.
pub struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The inner writer, the digest (`sha256:HEX`) and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        let d = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, d, self.count)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A layer blob's tar stream: gzip and zstd are recognised by their magic bytes, anything else
/// is read as a plain tar.
pub fn decompress<R: io::BufRead + 'static>(mut r: R) -> io::Result<Box<dyn io::Read>> {
    let head = r.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::GzDecoder::new(r)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::Decoder::with_buffer(r)?))
    } else {
        Ok(Box::new(r))
    }
}

/// The media type of the layer blob at `path`, from its first bytes (gzip or zstd magic, else
/// a plain tar).
pub fn blob_media_type(path: &std::path::Path) -> io::Result<oci_spec::image::MediaType> {
    use oci_spec::image::MediaType;
    use std::io::Read as _;
    let mut magic = [0u8; 4];
    let n = std::fs::File::open(path)?.read(&mut magic)?;
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => MediaType::ImageLayerGzip,
        [0x28, 0xb5, 0x2f, 0xfd] => MediaType::ImageLayerZstd,
        _ => MediaType::ImageLayer,
    })
}

/// `sha256:HEX` of bytes.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The hex part of `sha256:HEX` (the whole string if there is no algorithm).
pub fn hex_of(digest: &str) -> &str {
    digest.split_once(':').map(|(_, h)| h).unwrap_or(digest)
}

/// True for a well-formed `sha256:` digest (64 lower-case hex digits): the only form used as a
/// file name.
pub fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .map(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .unwrap_or(false)
}

/// Bytes under `p` (a file, or a directory counted recursively; symlinks not followed).
pub fn disk_size(p: &std::path::Path) -> u64 {
    walkdir::WalkDir::new(p)
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter_map(|e| e.path().symlink_metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// RFC 3339 UTC time of a unix timestamp (`2024-01-02T03:04:05Z`); times
/// before 1970 are clamped to the epoch.
pub fn rfc3339(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1709251199), "2024-02-29T23:59:59Z");
    }
}
