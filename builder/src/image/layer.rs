//! A directory in overlayfs upper form → a layer tar, deterministic, gzip- or zstd-compressed.
//!
//! Owns the translation from overlayfs to the OCI layer format: a character device 0/0 is a
//! deletion (`.wh.NAME`), a directory with `trusted.overlay.opaque=y` is opaque
//! (`.wh..wh..opq` after it). Entries are sorted by name, headers are ustar with PAX records
//! for long names and xattrs, owner names are left empty, hard links (same inode) become link
//! entries, and mtimes can be clamped to a fixed time (SOURCE_DATE_EPOCH) so two builds of the
//! same input give the same digest (the gzip header carries no time or name; the zstd stream
//! is single-threaded, so its bytes depend only on the input). It never follows a symlink.

use super::HashWriter;
use flate2::write::GzEncoder;
use oci_spec::image::MediaType;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use tar::{EntryType, Header};

/// The xattr that marks an opaque directory in an overlay upper dir.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// A written layer blob.
#[derive(Debug, Clone)]
pub struct Written {
    /// sha256 of the compressed blob.
    pub digest: String,
    /// sha256 of the uncompressed tar.
    pub diff_id: String,
    pub size: u64,
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
}

impl Compression {
    /// The OCI media type of a layer compressed so.
    pub fn media_type(self) -> MediaType {
        match self {
            Compression::Gzip => MediaType::ImageLayerGzip,
            Compression::Zstd => MediaType::ImageLayerZstd,
        }
    }
}

/// Options for [`write()`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Clamp every mtime to at most this unix time.
    pub clamp_mtime: Option<i64>,
    pub compression: Compression,
}

/// The tar of `dir` into `w`; returns `w` and the diffID.
fn tar_into<W: Write>(w: W, dir: &Path, opts: Options) -> io::Result<(W, String)> {
    let mut b = tar::Builder::new(HashWriter::new(w));
    append_tree(&mut b, dir, opts)?;
    let (w, diff_id, _) = b.into_inner()?.finish();
    Ok((w, diff_id))
}

/// Writes the layer of `dir`, compressed as `opts` says, to `out_path`.
pub fn write(dir: &Path, out_path: &Path, opts: Options) -> io::Result<Written> {
    let file = File::create(out_path)?;
    let outer = HashWriter::new(io::BufWriter::new(file));
    let (outer, diff_id) = match opts.compression {
        Compression::Gzip => {
            let gz = GzEncoder::new(outer, flate2::Compression::default());
            let (gz, diff_id) = tar_into(gz, dir, opts)?;
            (gz.finish()?, diff_id)
        }
        Compression::Zstd => {
            let z = zstd::Encoder::new(outer, zstd::DEFAULT_COMPRESSION_LEVEL)?;
            let (z, diff_id) = tar_into(z, dir, opts)?;
            (z.finish()?, diff_id)
        }
    };
    let (mut buf, digest, size) = outer.finish();
    buf.flush()?;
    buf.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(Written {
        digest,
        diff_id,
        size,
    })
}

/// Appends every entry below `dir` (not `dir` itself), sorted.
pub fn append_tree<W: Write>(b: &mut tar::Builder<W>, dir: &Path, opts: Options) -> io::Result<()> {
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let walk = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name();
    for e in walk {
        let e = e.map_err(io::Error::other)?;
        let rel = e
            .path()
            .strip_prefix(dir)
            .expect("walkdir yields paths below its root")
            .to_path_buf();
        let md = e.path().symlink_metadata()?;
        let ft = md.file_type();
        if ft.is_char_device() && md.rdev() == 0 {
            let name = rel.file_name().expect("entry has a name").to_string_lossy();
            let wh = rel.with_file_name(format!(".wh.{name}"));
            let mut h = base_header(&md, opts, EntryType::Regular);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            append(b, h, &wh, None, &[], io::empty())?;
            continue;
        }
        let xattrs = xattrs(e.path())?;
        if ft.is_dir() {
            let mut h = base_header(&md, opts, EntryType::Directory);
            h.set_size(0);
            append(b, h, &rel, None, &xattrs, io::empty())?;
            if xattr_value(e.path(), OPAQUE_XATTR)?.as_deref() == Some(b"y") {
                let mut h = base_header(&md, opts, EntryType::Regular);
                h.set_mode(0o644);
                append(b, h, &rel.join(".wh..wh..opq"), None, &[], io::empty())?;
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(e.path())?;
            let h = base_header(&md, opts, EntryType::Symlink);
            append(b, h, &rel, Some(&target), &xattrs, io::empty())?;
        } else if ft.is_file() {
            if md.nlink() > 1 {
                if let Some(first) = links.get(&(md.dev(), md.ino())) {
                    let h = base_header(&md, opts, EntryType::Link);
                    append(b, h, &rel, Some(first), &[], io::empty())?;
                    continue;
                }
                links.insert((md.dev(), md.ino()), rel.clone());
            }
            let mut h = base_header(&md, opts, EntryType::Regular);
            h.set_size(md.len());
            let f = File::open(e.path())?;
            append(b, h, &rel, None, &xattrs, f)?;
        } else {
            let kind = if ft.is_char_device() {
                EntryType::Char
            } else if ft.is_block_device() {
                EntryType::Block
            } else if ft.is_fifo() {
                EntryType::Fifo
            } else {
                // Sockets have no tar form; tar(1) skips them too.
                continue;
            };
            let mut h = base_header(&md, opts, kind);
            let dev = md.rdev();
            h.set_device_major(libc::major(dev))?;
            h.set_device_minor(libc::minor(dev))?;
            append(b, h, &rel, None, &xattrs, io::empty())?;
        }
    }
    Ok(())
}

fn base_header(md: &fs::Metadata, opts: Options, kind: EntryType) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(md.mode() & 0o7777);
    h.set_uid(md.uid() as u64);
    h.set_gid(md.gid() as u64);
    let mut mtime = md.mtime().max(0);
    if let Some(c) = opts.clamp_mtime {
        mtime = mtime.min(c.max(0));
    }
    h.set_mtime(mtime as u64);
    h.set_size(0);
    h
}

/// Appends one entry; names that do not fit ustar and xattrs go in a PAX header before it.
fn append<W: Write>(
    b: &mut tar::Builder<W>,
    mut h: Header,
    rel: &Path,
    link: Option<&Path>,
    xattrs: &[(String, Vec<u8>)],
    data: impl io::Read,
) -> io::Result<()> {
    let mut name = rel.to_string_lossy().into_owned();
    if h.entry_type() == EntryType::Directory {
        name.push('/');
    }
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    if h.set_path(&name).is_err() {
        pax.push(("path".into(), name.clone().into_bytes()));
        // A truncated but valid name for readers without PAX support.
        let short: String = name
            .chars()
            .rev()
            .take(90)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        h.set_path(short.trim_start_matches('/'))?;
    }
    if let Some(l) = link {
        if h.set_link_name(l).is_err() {
            pax.push((
                "linkpath".into(),
                l.to_string_lossy().into_owned().into_bytes(),
            ));
            h.set_link_name("pax-linkpath")?;
        }
    }
    for (k, v) in xattrs {
        pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
    }
    if !pax.is_empty() {
        b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    }
    h.set_cksum();
    b.append(&h, data)
}

/// The xattrs of `path` worth keeping in a layer: everything but overlayfs' own.
fn xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut buf = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(path, &mut buf) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for name in buf[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        if name.starts_with("trusted.overlay.") {
            continue;
        }
        if let Some(v) = xattr_value(path, &name)? {
            out.push((name, v));
        }
    }
    out.sort();
    Ok(out)
}

/// One xattr of `path` (not following a final symlink).
pub fn xattr_value(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 65536];
    match rustix::fs::lgetxattr(path, name, &mut buf) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(rustix::io::Errno::NODATA) | Err(rustix::io::Errno::NOTSUP) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
