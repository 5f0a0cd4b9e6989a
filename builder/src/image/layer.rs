//! A directory in overlayfs upper form → a layer tar, deterministic, uncompressed (what the
//! store keeps: [`super::compress`] compresses at export) or gzip- or zstd-compressed.
//!
//! Owns the translation from an overlay upper dir to the OCI layer format, for the marks of
//! kernel overlayfs and of fuse-overlayfs alike ([`super::whiteout`] reads them): a
//! deletion (character device 0/0, or fuse-overlayfs' `.wh.NAME` file) is `.wh.NAME`, an
//! opaque directory (an opaque xattr, or fuse-overlayfs' `.wh..wh..opq` file) has
//! `.wh..wh..opq` after it; neither overlay's private marks nor xattrs reach a layer. Entries
//! are sorted by name (a whiteout by the name it deletes), headers are ustar with PAX records
//! for long names and xattrs, owner names are left empty, hard links (same inode) become link
//! entries, and mtimes can be clamped to a fixed time (SOURCE_DATE_EPOCH) so two builds of the
//! same input give the same digest (the gzip header carries no time or name; the zstd stream
//! is single-threaded, so its bytes depend only on the input). It never follows a symlink.

use super::whiteout::{self, Entry};
use super::HashWriter;
use flate2::write::GzEncoder;
use oci_spec::image::MediaType;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use tar::{EntryType, Header};

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
    /// A plain tar: its digest is its diffID.
    Uncompressed,
}

impl Compression {
    /// The OCI media type of a layer compressed so.
    pub fn media_type(self) -> MediaType {
        match self {
            Compression::Gzip => MediaType::ImageLayerGzip,
            Compression::Zstd => MediaType::ImageLayerZstd,
            Compression::Uncompressed => MediaType::ImageLayer,
        }
    }

    /// The name used for it in file names and messages (`gzip`, `zstd`, `uncompressed`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Uncompressed => "uncompressed",
        }
    }

    /// The encoder of this compression around `w` (finished by [`Encoder::finish`]).
    pub fn encoder<W: Write>(self, w: W) -> io::Result<Encoder<W>> {
        Ok(match self {
            Compression::Gzip => Encoder::Gzip(GzEncoder::new(w, flate2::Compression::default())),
            Compression::Zstd => {
                Encoder::Zstd(zstd::Encoder::new(w, zstd::DEFAULT_COMPRESSION_LEVEL)?)
            }
            Compression::Uncompressed => Encoder::Plain(w),
        })
    }
}

/// A writer compressing as a [`Compression`] says.
pub enum Encoder<W: Write> {
    Gzip(GzEncoder<W>),
    Zstd(zstd::Encoder<'static, W>),
    Plain(W),
}

impl<W: Write> Encoder<W> {
    /// Ends the stream; returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
            Encoder::Plain(w) => Ok(w),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Plain(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
            Encoder::Plain(w) => w.flush(),
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
    let (file, written) = if opts.compression == Compression::Uncompressed {
        // The blob is the tar: hashed once, its digest is the diffID.
        let (w, diff_id) = tar_into(io::BufWriter::new(file), dir, opts)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        let size = file.metadata()?.len();
        let digest = diff_id.clone();
        (
            file,
            Written {
                digest,
                diff_id,
                size,
            },
        )
    } else {
        let outer = HashWriter::new(io::BufWriter::new(file));
        let (enc, diff_id) = tar_into(opts.compression.encoder(outer)?, dir, opts)?;
        let (buf, digest, size) = enc.finish()?.finish();
        let file = buf.into_inner().map_err(|e| e.into_error())?;
        (
            file,
            Written {
                digest,
                diff_id,
                size,
            },
        )
    };
    file.sync_all()?;
    Ok(written)
}

/// Appends every entry below `dir` (not `dir` itself), sorted.
pub fn append_tree<W: Write>(b: &mut tar::Builder<W>, dir: &Path, opts: Options) -> io::Result<()> {
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let walk = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .follow_links(false)
        .sort_by(|a, b| sort_name(a).cmp(sort_name(b)));
    for e in walk {
        let e = e.map_err(io::Error::other)?;
        let rel = e
            .path()
            .strip_prefix(dir)
            .expect("walkdir yields paths below its root")
            .to_path_buf();
        let md = e.path().symlink_metadata()?;
        let ft = md.file_type();
        match whiteout::classify(e.file_name(), &md) {
            Entry::Whiteout(victim) => {
                let mut wh = OsString::from(whiteout::PREFIX);
                wh.push(victim);
                let mut h = base_header(&md, opts, EntryType::Regular);
                h.set_mode(0o644);
                h.set_uid(0);
                h.set_gid(0);
                append(b, h, &rel.with_file_name(wh), None, &[], io::empty())?;
                continue;
            }
            // Written once, after its directory.
            Entry::OpaqueFile | Entry::Stray => continue,
            Entry::Content => {}
        }
        let xattrs = xattrs(e.path())?;
        if ft.is_dir() {
            let mut h = base_header(&md, opts, EntryType::Directory);
            h.set_size(0);
            append(b, h, &rel, None, &xattrs, io::empty())?;
            if whiteout::is_opaque_dir(e.path())? {
                let mut h = base_header(&md, opts, EntryType::Regular);
                h.set_mode(0o644);
                append(
                    b,
                    h,
                    &rel.join(whiteout::OPAQUE_FILE),
                    None,
                    &[],
                    io::empty(),
                )?;
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(e.path())?;
            let h = base_header(&md, opts, EntryType::Symlink);
            append(b, h, &rel, Some(&target), &xattrs, io::empty())?;
        } else if let Some((chr, major, minor)) = device_standin(e.path(), &md)? {
            let kind = if chr {
                EntryType::Char
            } else {
                EntryType::Block
            };
            let mut h = base_header(&md, opts, kind);
            h.set_device_major(major)?;
            h.set_device_minor(minor)?;
            append(b, h, &rel, None, &xattrs, io::empty())?;
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

/// Where an entry sorts: by its name, a whiteout by the name it deletes in either form (so
/// fuse-overlayfs' `.wh.NAME` file lands where the kernel's device NAME does).
fn sort_name(e: &walkdir::DirEntry) -> &OsStr {
    let name = e.file_name();
    match name.as_bytes().strip_prefix(whiteout::PREFIX.as_bytes()) {
        Some(victim)
            if !victim.is_empty() && e.file_type().is_file() && name != whiteout::OPAQUE_FILE =>
        {
            OsStr::from_bytes(victim)
        }
        _ => name,
    }
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
/// Names and link targets are written as their bytes: a symlink's target exactly as readlink
/// gives it (`/`, `a//b`, `./x`, non-UTF-8), as BuildKit writes it; the tar crate's
/// `set_link_name` rewrites targets by their components (`/` became `//`).
fn append<W: Write>(
    b: &mut tar::Builder<W>,
    mut h: Header,
    rel: &Path,
    link: Option<&Path>,
    xattrs: &[(String, Vec<u8>)],
    data: impl io::Read,
) -> io::Result<()> {
    let mut name = rel.as_os_str().as_bytes().to_vec();
    if h.entry_type() == EntryType::Directory {
        name.push(b'/');
    }
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    if h.set_path(Path::new(OsStr::from_bytes(&name))).is_err() {
        pax.push(("path".into(), name.clone()));
        // A truncated but valid name for readers without PAX support.
        let short = utf8_tail(&name, 90);
        let short = short.strip_prefix(b"/").unwrap_or(short);
        h.set_path(Path::new(OsStr::from_bytes(short)))?;
    }
    if let Some(l) = link {
        let l = l.as_os_str().as_bytes();
        if h.set_link_name_literal(l).is_err() {
            pax.push(("linkpath".into(), l.to_vec()));
            h.set_link_name_literal("pax-linkpath")?;
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

/// The last `max` bytes of `name` or fewer, starting at a character boundary if it is UTF-8.
fn utf8_tail(name: &[u8], max: usize) -> &[u8] {
    let mut start = name.len().saturating_sub(max);
    while start < name.len() && name[start] & 0b1100_0000 == 0b1000_0000 {
        start += 1;
    }
    &name[start..]
}

/// The xattrs of `path` worth keeping in a layer: everything but overlayfs' own.
pub(crate) fn xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let names = xattrs_named(path, |name| {
        !crate::idmap::is_overlay_xattr(name)
            && !whiteout::is_fuse_xattr(name)
            && name != crate::idmap::DEVICE_STANDIN_XATTR
    })?;
    let mut out = Vec::new();
    for name in names {
        if let Some(v) = xattr_value(path, &name)? {
            out.push((name, v));
        }
    }
    out.sort();
    Ok(out)
}

/// The names of the xattrs of `path` (not following a final symlink) that `keep` takes.
pub(crate) fn xattrs_named(path: &Path, keep: impl Fn(&str) -> bool) -> io::Result<Vec<String>> {
    let mut buf = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(path, &mut buf) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(buf[..n]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .filter(|n| keep(n))
        .collect())
}

/// The device an empty regular file stands for ([`crate::idmap::DEVICE_STANDIN_XATTR`]).
fn device_standin(path: &Path, md: &fs::Metadata) -> io::Result<Option<(bool, u32, u32)>> {
    if !md.is_file() || md.len() != 0 {
        return Ok(None);
    }
    Ok(xattr_value(path, crate::idmap::DEVICE_STANDIN_XATTR)?
        .and_then(|v| crate::idmap::parse_device_standin(&v)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsroot::Root;
    use crate::idmap::opaque_xattr;
    use crate::image::unpack;
    use std::io::Read;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    fn mode(path: &Path, m: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(m)).unwrap();
    }

    /// A tree with a file, an executable, a setuid file, a hard link, a symlink, an empty
    /// directory, a fifo, a socket and a name too long for ustar; `reverse` makes it in the
    /// other order (other inodes, other directory order).
    fn tree(dir: &Path, reverse: bool) {
        let mut steps: Vec<Box<dyn Fn() + '_>> = vec![
            Box::new(|| {
                fs::create_dir(dir.join("a")).unwrap();
                fs::write(dir.join("a/file"), "hello\n").unwrap();
                mode(&dir.join("a/file"), 0o640);
                fs::hard_link(dir.join("a/file"), dir.join("a/hard")).unwrap();
                mode(&dir.join("a"), 0o750);
            }),
            Box::new(|| {
                fs::create_dir(dir.join("bin")).unwrap();
                mode(&dir.join("bin"), 0o755);
                fs::write(dir.join("bin/tool"), "#!/bin/sh\n").unwrap();
                mode(&dir.join("bin/tool"), 0o755);
                fs::write(dir.join("bin/su"), "x").unwrap();
                mode(&dir.join("bin/su"), 0o4755);
            }),
            Box::new(|| symlink("a/file", dir.join("link")).unwrap()),
            Box::new(|| {
                fs::create_dir(dir.join("empty")).unwrap();
                mode(&dir.join("empty"), 0o700);
            }),
            Box::new(|| {
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    dir.join("fifo"),
                    rustix::fs::FileType::Fifo,
                    rustix::fs::Mode::from_raw_mode(0o600),
                    0,
                )
                .unwrap();
            }),
            Box::new(|| {
                std::os::unix::net::UnixListener::bind(dir.join("sock")).unwrap();
            }),
            Box::new(|| {
                let long = dir.join("l").join("n".repeat(150));
                fs::create_dir(dir.join("l")).unwrap();
                mode(&dir.join("l"), 0o755);
                fs::write(&long, "long").unwrap();
                mode(&long, 0o644);
                // A relative target over the 100 bytes of ustar's link name.
                symlink(format!("./{}", "n".repeat(150)), dir.join("l/to-long")).unwrap();
            }),
        ];
        if reverse {
            steps.reverse();
        }
        for s in steps {
            s();
        }
    }

    /// An entry's name, type, mode, link target and data.
    type Summary<'a> = (&'a str, EntryType, u32, Option<String>, &'a [u8]);

    /// One entry as read back: name (PAX applied), type, mode, link target, data.
    #[derive(Debug, PartialEq)]
    struct Got {
        name: String,
        kind: EntryType,
        mode: u32,
        link: Option<String>,
        data: Vec<u8>,
        mtime: u64,
        xattrs: Vec<(String, Vec<u8>)>,
    }

    /// The tar stream of the layer blob at `path`.
    fn open_layer(path: &Path) -> Box<dyn Read> {
        super::super::decompress(io::BufReader::new(File::open(path).unwrap())).unwrap()
    }

    /// The layer blob at `path` unpacked (whiteouts on) into a new directory.
    fn unpack_layer(path: &Path, owners: bool) -> tempfile::TempDir {
        let dst = tempfile::tempdir().unwrap();
        let opts = unpack::Options {
            whiteouts: true,
            owners,
        };
        let root = Root::open(dst.path()).unwrap();
        unpack::unpack(&root, Path::new(""), open_layer(path), "layer", opts).unwrap();
        dst
    }

    /// The diffID of `dir` with every mtime clamped to 0.
    fn diff_id(dir: &Path, out: &Path) -> String {
        let opts = Options {
            clamp_mtime: Some(0),
            ..Options::default()
        };
        write_layer(dir, out, opts).diff_id
    }

    fn read_layer(path: &Path) -> Vec<Got> {
        let mut ar = tar::Archive::new(open_layer(path));
        let mut out = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let mut xattrs = Vec::new();
            if let Some(pax) = e.pax_extensions().unwrap() {
                for x in pax {
                    let x = x.unwrap();
                    let k = x.key().unwrap();
                    if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                        xattrs.push((name.to_string(), x.value_bytes().to_vec()));
                    }
                }
            }
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            out.push(Got {
                name: e.path().unwrap().to_string_lossy().into_owned(),
                kind: e.header().entry_type(),
                mode: e.header().mode().unwrap(),
                link: e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned()),
                data,
                mtime: e.header().mtime().unwrap(),
                xattrs,
            });
        }
        out
    }

    /// An entry's name, type, mode and xattrs.
    type Brief = (String, EntryType, u32, Vec<(String, Vec<u8>)>);

    /// Name, type, mode and xattrs of each entry of the layer of `dir`, written to `blob`.
    fn entries_of(dir: &Path, blob: &Path) -> Vec<Brief> {
        write_layer(dir, blob, Options::default());
        read_layer(blob)
            .into_iter()
            .map(|e| (e.name, e.kind, e.mode, e.xattrs))
            .collect()
    }

    fn write_layer(dir: &Path, out: &Path, opts: Options) -> Written {
        write(dir, out, opts).unwrap()
    }

    /// [`tree`] (without root's parts) written as a layer with the default options: the
    /// tree's dir, the output dir, the blob's path in it, and what was written.
    fn tree_layer() -> (tempfile::TempDir, tempfile::TempDir, PathBuf, Written) {
        let src = tempfile::tempdir().unwrap();
        tree(src.path(), false);
        let out = tempfile::tempdir().unwrap();
        let blob = out.path().join("layer");
        let w = write_layer(src.path(), &blob, Options::default());
        (src, out, blob, w)
    }

    #[test]
    fn entries_sorted_with_types_modes_and_links() {
        let (_src, _out, blob, w) = tree_layer();
        let got = read_layer(&blob);
        let long = format!("l/{}", "n".repeat(150));
        let long_target = format!("./{}", "n".repeat(150));
        let s = |x: &str| Some(x.to_string());
        let want: Vec<Summary> = vec![
            ("a/", EntryType::Directory, 0o750, None, b""),
            ("a/file", EntryType::Regular, 0o640, None, b"hello\n"),
            ("a/hard", EntryType::Link, 0o640, s("a/file"), b""),
            ("bin/", EntryType::Directory, 0o755, None, b""),
            ("bin/su", EntryType::Regular, 0o4755, None, b"x"),
            ("bin/tool", EntryType::Regular, 0o755, None, b"#!/bin/sh\n"),
            ("empty/", EntryType::Directory, 0o700, None, b""),
            ("fifo", EntryType::Fifo, 0o600, None, b""),
            ("l/", EntryType::Directory, 0o755, None, b""),
            (long.as_str(), EntryType::Regular, 0o644, None, b"long"),
            (
                "l/to-long",
                EntryType::Symlink,
                0o777,
                Some(long_target),
                b"",
            ),
            ("link", EntryType::Symlink, 0o777, s("a/file"), b""),
            // No socket: it has no tar form.
        ];
        let got: Vec<Summary> = got
            .iter()
            .map(|e| {
                (
                    e.name.as_str(),
                    e.kind,
                    e.mode,
                    e.link.clone(),
                    e.data.as_slice(),
                )
            })
            .collect();
        assert_eq!(got, want);

        // The digests: of the blob as written, and of the tar inside it.
        let bytes = fs::read(&blob).unwrap();
        assert_eq!(w.digest, super::super::sha256(&bytes));
        assert_eq!(w.size, bytes.len() as u64);
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(w.diff_id, super::super::sha256(&tar));
        // Owner names are left empty.
        let mut ar = tar::Archive::new(tar.as_slice());
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().username_bytes(), Some(&b""[..]));
            assert_eq!(e.header().groupname_bytes(), Some(&b""[..]));
        }
    }

    #[test]
    fn same_tree_same_digest() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        tree(one.path(), false);
        tree(two.path(), true);
        let out = tempfile::tempdir().unwrap();
        let opts = |compression| Options {
            clamp_mtime: Some(1_000),
            compression,
        };
        for c in [
            Compression::Gzip,
            Compression::Zstd,
            Compression::Uncompressed,
        ] {
            let w1 = write_layer(one.path(), &out.path().join("1"), opts(c));
            let w2 = write_layer(two.path(), &out.path().join("2"), opts(c));
            assert_eq!(w1.digest, w2.digest, "{c:?}");
            assert_eq!(w1.diff_id, w2.diff_id, "{c:?}");
            assert_eq!(
                fs::read(out.path().join("1")).unwrap(),
                fs::read(out.path().join("2")).unwrap()
            );
            assert!(read_layer(&out.path().join("1"))
                .iter()
                .all(|e| e.mtime == 1_000));
        }
        // The same tar, compressed two ways: one diffID, two digests.
        let g = write_layer(one.path(), &out.path().join("g"), opts(Compression::Gzip));
        let z = write_layer(one.path(), &out.path().join("z"), opts(Compression::Zstd));
        let u = write_layer(
            one.path(),
            &out.path().join("u"),
            opts(Compression::Uncompressed),
        );
        assert_eq!(g.diff_id, z.diff_id);
        assert_eq!(g.diff_id, u.diff_id);
        assert_ne!(g.digest, z.digest);
        // The plain tar is its own diffID, and what a gzip layer decompresses to.
        assert_eq!(u.digest, u.diff_id);
        assert_eq!(u.size, fs::metadata(out.path().join("u")).unwrap().len());
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(fs::File::open(out.path().join("g")).unwrap())
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, fs::read(out.path().join("u")).unwrap());
        assert_eq!(
            &fs::read(out.path().join("z")).unwrap()[..4],
            &[0x28, 0xb5, 0x2f, 0xfd]
        );
        assert_eq!(Compression::Gzip.media_type(), MediaType::ImageLayerGzip);
        assert_eq!(Compression::Zstd.media_type(), MediaType::ImageLayerZstd);

        // A change of content shows.
        fs::write(one.path().join("a/file"), "hullo\n").unwrap();
        let w3 = write_layer(one.path(), &out.path().join("3"), opts(Compression::Gzip));
        assert_ne!(w3.diff_id, g.diff_id);
    }

    #[test]
    fn mtimes_clamped_not_raised() {
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("f"), "x").unwrap();
        let now = fs::metadata(src.path().join("f")).unwrap().mtime() as u64;
        let out = tempfile::tempdir().unwrap();
        let read = |clamp| {
            let opts = Options {
                clamp_mtime: clamp,
                ..Options::default()
            };
            write_layer(src.path(), &out.path().join("l"), opts);
            read_layer(&out.path().join("l"))[0].mtime
        };
        assert_eq!(read(None), now);
        assert_eq!(read(Some(5)), 5);
        assert_eq!(read(Some(now as i64 + 1000)), now);
        assert_eq!(read(Some(-1)), 0);
    }

    #[test]
    fn user_xattrs_go_in_pax_records() {
        let src = tempfile::tempdir().unwrap();
        let f = src.path().join("f");
        fs::write(&f, "x").unwrap();
        if let Err(e) =
            rustix::fs::setxattr(&f, "user.brig", b"v1", rustix::fs::XattrFlags::empty())
        {
            eprintln!("skipping: {} has no user xattrs: {e}", src.path().display());
            return;
        }
        let out = tempfile::tempdir().unwrap();
        write_layer(src.path(), &out.path().join("l"), Options::default());
        let got = read_layer(&out.path().join("l"));
        assert_eq!(got[0].name, "f");
        assert_eq!(got[0].xattrs, [("user.brig".to_string(), b"v1".to_vec())]);
    }

    #[test]
    fn round_trip_through_unpack() {
        let (src, out, blob, _) = tree_layer();
        let dst = unpack_layer(&blob, false);
        let d = dst.path();
        let md = |p: &str| fs::symlink_metadata(d.join(p)).unwrap();
        assert_eq!(fs::read(d.join("a/file")).unwrap(), b"hello\n");
        assert_eq!(md("a/file").mode() & 0o7777, 0o640);
        assert_eq!(md("a").mode() & 0o7777, 0o750);
        assert_eq!(md("a/hard").ino(), md("a/file").ino());
        assert_eq!(md("bin/tool").mode() & 0o7777, 0o755);
        assert_eq!(fs::read_link(d.join("link")).unwrap(), Path::new("a/file"));
        assert!(md("fifo").file_type().is_fifo());
        assert!(md("empty").is_dir());
        assert!(!d.join("sock").exists());
        let long = format!("l/{}", "n".repeat(150));
        assert_eq!(fs::read(d.join(&long)).unwrap(), b"long");
        assert_eq!(
            fs::read_link(d.join("l/to-long")).unwrap(),
            Path::new(&format!("./{}", "n".repeat(150)))
        );
        // Written again, the unpacked tree gives the same tar.
        let (first, again) = (out.path().join("first"), out.path().join("again"));
        if is_root() {
            assert_eq!(diff_id(src.path(), &first), diff_id(d, &again));
        } else {
            eprintln!("skipping the byte-for-byte comparison: unpacked files are owned by us");
        }
    }

    #[test]
    fn whiteouts_opaque_dirs_and_devices() {
        if !is_root() {
            eprintln!("skipping: whiteouts (char 0/0), devices and trusted xattrs need root");
            return;
        }
        let src = tempfile::tempdir().unwrap();
        let s = src.path();
        let mknod = |p: &Path, ft, dev| {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                p,
                ft,
                rustix::fs::Mode::from_raw_mode(0o640),
                dev,
            )
        };
        use rustix::fs::FileType::{BlockDevice, CharacterDevice};
        mknod(&s.join("gone"), CharacterDevice, 0).unwrap();
        mknod(&s.join("null"), CharacterDevice, rustix::fs::makedev(1, 3)).unwrap();
        mknod(&s.join("sda"), BlockDevice, rustix::fs::makedev(8, 1)).unwrap();
        fs::create_dir(s.join("o")).unwrap();
        fs::write(s.join("o/kept"), "k").unwrap();
        mode(&s.join("o"), 0o755);
        mode(&s.join("o/kept"), 0o644);
        if let Err(e) = rustix::fs::setxattr(
            s.join("o"),
            opaque_xattr(),
            b"y",
            rustix::fs::XattrFlags::empty(),
        ) {
            eprintln!("skipping: no trusted xattrs on {}: {e}", s.display());
            return;
        }
        let out = tempfile::tempdir().unwrap();
        let blob = out.path().join("l");
        let got = entries_of(s, &blob);
        assert_eq!(
            got,
            [
                (".wh.gone".into(), EntryType::Regular, 0o644, vec![]),
                ("null".into(), EntryType::Char, 0o640, vec![]),
                ("o/".into(), EntryType::Directory, 0o755, vec![]),
                ("o/.wh..wh..opq".into(), EntryType::Regular, 0o644, vec![]),
                ("o/kept".into(), EntryType::Regular, 0o644, vec![]),
                ("sda".into(), EntryType::Block, 0o640, vec![]),
            ]
        );
        let mut ar = tar::Archive::new(open_layer(&blob));
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            match e.path().unwrap().to_str().unwrap() {
                "null" => assert_eq!(
                    (
                        e.header().device_major().unwrap(),
                        e.header().device_minor().unwrap()
                    ),
                    (Some(1), Some(3))
                ),
                "sda" => assert_eq!(
                    (
                        e.header().device_major().unwrap(),
                        e.header().device_minor().unwrap()
                    ),
                    (Some(8), Some(1))
                ),
                ".wh.gone" => {
                    assert_eq!(
                        (e.header().uid().unwrap(), e.header().gid().unwrap()),
                        (0, 0)
                    )
                }
                _ => {}
            }
        }

        // Unpacked with whiteouts, the layer is the same overlayfs upper dir again.
        let dst = unpack_layer(&blob, true);
        let gone = fs::symlink_metadata(dst.path().join("gone")).unwrap();
        assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
        assert_eq!(
            xattr_value(&dst.path().join("o"), opaque_xattr())
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
        assert!(!dst.path().join("o/.wh..wh..opq").exists());
        assert_eq!(
            diff_id(dst.path(), &out.path().join("again")),
            diff_id(s, &out.path().join("first"))
        );
    }

    #[test]
    fn fuse_overlayfs_marks_become_oci_whiteouts() {
        // A fuse-overlayfs upper dir as it leaves one where it may not mknod or set trusted
        // xattrs: `.wh.NAME` files, an opaque directory with the `.wh..wh..opq` file and (in
        // another) `user.fuseoverlayfs.opaque`, its own whiteout of that file (`.wh..opq`, a
        // device 0/0), and its private xattrs on a file.
        let src = tempfile::tempdir().unwrap();
        let s = src.path();
        let set = |p: &Path, k: &str, v: &[u8]| {
            rustix::fs::lsetxattr(p, k, v, rustix::fs::XattrFlags::empty())
        };
        fs::write(s.join(".wh.gone"), "").unwrap();
        mode(&s.join(".wh.gone"), 0o700);
        for d in ["o", "x"] {
            fs::create_dir(s.join(d)).unwrap();
            mode(&s.join(d), 0o755);
            fs::write(s.join(d).join("kept"), "k").unwrap();
            mode(&s.join(d).join("kept"), 0o644);
        }
        fs::write(s.join("o/.wh..wh..opq"), "").unwrap();
        mode(&s.join("o/.wh..wh..opq"), 0o700);
        fs::write(s.join("o/.wh.old"), "").unwrap();
        let stray = rustix::fs::mknodat(
            rustix::fs::CWD,
            s.join("o/.wh..opq"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o700),
            0,
        );
        fs::write(s.join("f"), "f").unwrap();
        mode(&s.join("f"), 0o644);
        if let Err(e) = set(&s.join("x"), whiteout::FUSE_OPAQUE_XATTR, b"y")
            .and_then(|_| {
                set(
                    &s.join("f"),
                    "user.fuseoverlayfs.override_stat",
                    b"0:0:0644",
                )
            })
            .and_then(|_| set(&s.join("f"), "user.kept", b"v"))
        {
            eprintln!("skipping: {} has no user xattrs: {e}", s.display());
            return;
        }
        let out = tempfile::tempdir().unwrap();
        let blob = out.path().join("l");
        let got = entries_of(s, &blob);
        let r = EntryType::Regular;
        let kept = vec![("user.kept".to_string(), b"v".to_vec())];
        assert_eq!(
            got,
            [
                // Whiteouts sort by the name they delete, as the kernel's devices do.
                ("f".into(), r, 0o644, kept),
                (".wh.gone".into(), r, 0o644, vec![]),
                ("o/".into(), EntryType::Directory, 0o755, vec![]),
                ("o/.wh..wh..opq".into(), r, 0o644, vec![]),
                ("o/kept".into(), r, 0o644, vec![]),
                ("o/.wh.old".into(), r, 0o644, vec![]),
                ("x/".into(), EntryType::Directory, 0o755, vec![]),
                ("x/.wh..wh..opq".into(), r, 0o644, vec![]),
                ("x/kept".into(), r, 0o644, vec![]),
            ],
            "the stray device was {}made",
            if stray.is_ok() { "" } else { "not " }
        );
        let mut ar = tar::Archive::new(open_layer(&blob));
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            if e.path().unwrap().to_string_lossy().contains(".wh.") {
                let h = e.header();
                assert_eq!(
                    (h.uid().unwrap(), h.gid().unwrap(), h.size().unwrap()),
                    (0, 0, 0)
                );
            }
        }
    }
}
