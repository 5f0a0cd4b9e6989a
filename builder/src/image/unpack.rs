//! A layer tar (possibly hostile) → a directory: base image layers, ADD of a local archive.
//!
//! Owns the one place where bytes from outside become files on the host, so it trusts nothing
//! in the archive:
//! * in layers, entry names with a `..` component are refused (the error names the layer and
//!   the entry); in an ADD'ed archive they are cleaned as in a chroot at the destination, as
//!   BuildKit does; absolute names are taken relative to the target (contained, as tar(1) does);
//! * every parent directory is resolved with `openat2(RESOLVE_IN_ROOT)` through [`Root`], so a
//!   symlink entry followed by a file "through" it (`evil -> /etc`, then `evil/passwd`) lands
//!   inside the target, never on the host; the final component is created with `O_NOFOLLOW` /
//!   `*at` calls and an existing entry of that name is removed first, never written through;
//! * hard link targets are resolved inside the target the same way;
//! * with whiteouts on (layers), `.wh.NAME` becomes an overlayfs whiteout (char device 0/0) and
//!   `.wh..wh..opq` sets `trusted.overlay.opaque=y` (`user.overlay.opaque` in a user namespace), so the directory can serve as an overlayfs
//!   lower layer as is; where the filesystem refuses either (a store on overlayfs), the entry
//!   stays an empty file, fuse-overlayfs' form ([`super::whiteout`]);
//! * the headers of one entry (PAX extended header, GNU long name and link, which the `tar`
//!   crate buffers whole) may take at most [`MAX_ENTRY_HEADERS`] bytes: the stream is metered
//!   while the crate reads them;
//! * GNU sparse files: the PAX forms 0.0, 0.1 and 1.0 (`tar --sparse --format=pax`) are read
//!   here, because the crate does not know them (it would unpack `GNUSparseFile.NNN/name`
//!   holding the packed data and map); the file gets its real name and its holes, once its map
//!   is checked (in order, inside the file, adding up to the data stored). The old GNU form
//!   (type `S`) the crate reads itself, holes as zeros.
//!
//! Hand-written on top of the `tar` crate because `tar::Entry::unpack_in` checks names lexically
//! and then uses path-based calls that follow symlinks planted by earlier entries of the same
//! layer, and it knows nothing of whiteouts.

use crate::fsroot::{open_dir_at, remove_at, Root};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use std::cell::Cell;
use std::ffi::OsStr;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use tar::EntryType;

/// A refusal or failure, naming the entry.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("{layer}: entry {entry:?}: {why}")]
    Hostile {
        layer: String,
        entry: String,
        why: String,
    },
    #[error("{layer}: entry {entry:?}: {err}")]
    Io {
        layer: String,
        entry: String,
        err: io::Error,
    },
    #[error("{layer}: {err}")]
    Read { layer: String, err: io::Error },
}

/// The most bytes the headers of one entry may take: its header blocks, PAX extended header
/// and GNU long name and link records together (and a PAX 1.0 sparse map). The `tar` crate
/// reads these records whole into memory; unbounded, a 512 MiB PAX header cost 594 MB. Go's
/// archive/tar (docker, containerd) allows 1 MiB for one such record too.
pub const MAX_ENTRY_HEADERS: u64 = 1 << 20;

/// The stream under the archive; while `left` is Some (the crate is reading an entry's
/// headers) at most that many bytes more may be read.
struct Metered<R> {
    inner: R,
    left: Rc<Cell<Option<u64>>>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(left) = self.left.get() else {
            return self.inner.read(buf);
        };
        if left == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "tar headers over MAX_ENTRY_HEADERS",
            ));
        }
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let got = self.inner.read(&mut buf[..n])?;
        self.left.set(Some(left - got as u64));
        Ok(got)
    }
}

/// Options for [`unpack`].
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Turn `.wh.` entries into overlayfs whiteouts (layers), or keep them as files (ADD).
    pub whiteouts: bool,
    /// Keep the owners of the archive (true) or make everything root's.
    pub owners: bool,
}

/// Unpacks the tar stream `r` below `base` inside `root`; `layer` names the archive in errors.
pub fn unpack(
    root: &Root,
    base: &Path,
    r: impl Read,
    layer: &str,
    opts: Options,
) -> Result<(), UnpackError> {
    let left = Rc::new(Cell::new(None));
    let mut ar = tar::Archive::new(Metered {
        inner: r,
        left: left.clone(),
    });
    let mut dirs: Vec<(PathBuf, u64)> = Vec::new();
    let rd = |err| UnpackError::Read {
        layer: layer.to_string(),
        err,
    };
    let mut entries = ar.entries().map_err(rd)?;
    let mut last = String::new();
    loop {
        // The crate reads the next entry's headers, buffering PAX and GNU long-name records
        // whole: only then is the stream metered.
        left.set(Some(MAX_ENTRY_HEADERS));
        let next = entries.next();
        let over = left.get() == Some(0);
        left.set(None);
        let Some(e) = next else { break };
        let mut e = e.map_err(|err| match over {
            true => rd(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the tar headers (PAX extended header, GNU long name or link) of the entry \
                     {} exceed {MAX_ENTRY_HEADERS} bytes (MAX_ENTRY_HEADERS)",
                    match last.as_str() {
                        "" => "at the start".to_string(),
                        l => format!("after {l:?}"),
                    }
                ),
            )),
            false => rd(err),
        })?;
        last = entry(root, base, &mut e, layer, opts, &mut dirs)?;
        // What the entry did not use is skipped now, not metered with the next headers.
        io::copy(&mut e, &mut io::sink()).map_err(rd)?;
    }
    // Directory mtimes last: creating their children changed them.
    for (d, mtime) in dirs.iter().rev() {
        if let Ok(fd) = root.dir(d) {
            let _ = rfs::futimens(&fd, &times(*mtime));
        }
    }
    Ok(())
}

/// Unpacks one entry; returns its name (for errors about what follows it).
fn entry<R: Read>(
    root: &Root,
    base: &Path,
    e: &mut tar::Entry<'_, R>,
    layer: &str,
    opts: Options,
    dirs: &mut Vec<(PathBuf, u64)>,
) -> Result<String, UnpackError> {
    let sparse = match pax_sparse(e) {
        Ok(s) => s,
        Err(SparseRecords { name, err }) => {
            let entry = match name {
                Some(n) => String::from_utf8_lossy(&n).into_owned(),
                None => String::from_utf8_lossy(&e.path_bytes()).into_owned(),
            };
            let layer = layer.to_string();
            return Err(match err {
                SparseError::Bad(why) => UnpackError::Hostile { layer, entry, why },
                SparseError::Io(err) => UnpackError::Io { layer, entry, err },
            });
        }
    };
    let raw = match sparse.as_ref().and_then(|s| s.name.as_ref()) {
        Some(n) => String::from_utf8_lossy(n).into_owned(),
        None => String::from_utf8_lossy(&e.path_bytes()).into_owned(),
    };
    let hostile = |why: &str| UnpackError::Hostile {
        layer: layer.to_string(),
        entry: raw.clone(),
        why: why.to_string(),
    };
    let rel = name_in(&raw, opts.whiteouts).ok_or_else(|| hostile("path has a '..' component"))?;
    if rel.as_os_str().is_empty() {
        return Ok(raw);
    }
    let io_err = |err: io::Error| UnpackError::Io {
        layer: layer.to_string(),
        entry: raw.clone(),
        err,
    };
    let target = base.join(&rel);
    let parent = target.parent().unwrap_or(Path::new("")).to_path_buf();
    let name = target
        .file_name()
        .expect("cleaned non-empty path has a name")
        .to_os_string();
    let (pfd, _) = root.mkdir_all(&parent, 0o755).map_err(io_err)?;
    let name_s = name.to_string_lossy();
    if opts.whiteouts {
        // Where the filesystem refuses the overlay's marks (overlayfs refuses whiteout
        // devices), fuse-overlayfs' forms, which only it reads (the kernel's overlay cannot
        // stack on such a store anyway): the entry's own name as an empty file.
        let as_file = |e: rustix::io::Errno| match e {
            rustix::io::Errno::PERM | rustix::io::Errno::NOTSUP => rfs::openat(
                &pfd,
                name.as_os_str(),
                OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .map(drop)
            .map_err(|e| io_err(e.into())),
            e => Err(io_err(e.into())),
        };
        if name_s == ".wh..wh..opq" {
            rfs::fsetxattr(
                &pfd,
                crate::idmap::opaque_xattr(),
                b"y",
                rfs::XattrFlags::empty(),
            )
            .or_else(as_file)?;
            return Ok(raw);
        }
        if let Some(victim) = name_s.strip_prefix(".wh.") {
            if victim.is_empty() || victim == "." || victim == ".." {
                return Err(hostile("bad whiteout name"));
            }
            remove_at(&pfd, OsStr::new(victim)).map_err(io_err)?;
            rfs::mknodat(&pfd, victim, FileType::CharacterDevice, Mode::empty(), 0)
                .or_else(as_file)?;
            return Ok(raw);
        }
    }
    let h = e.header().clone();
    let mode = Mode::from_raw_mode(h.mode().map_err(io_err)? & 0o7777);
    let (uid, gid) = if opts.owners {
        (
            h.uid().map_err(io_err)? as u32,
            h.gid().map_err(io_err)? as u32,
        )
    } else {
        (0, 0)
    };
    // The entry itself, not what a symlink entry points at.
    let chown_entry = |pfd: &OwnedFd| {
        rfs::chownat(
            pfd,
            name.as_os_str(),
            Some(uid.into_uid()),
            Some(gid.into_gid()),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io_err(chown_error(e, uid, gid)))
    };
    let mtime = h.mtime().unwrap_or(0);
    let kind = h.entry_type();
    let size = e.size();
    if sparse.is_some() && kind != EntryType::Regular {
        return Err(hostile(&format!(
            "GNU sparse records on a {kind:?} entry (only regular files are sparse)"
        )));
    }
    if kind != EntryType::Directory {
        remove_at(&pfd, &name).map_err(io_err)?;
    }
    match kind {
        EntryType::Directory => {
            match rfs::mkdirat(&pfd, name.as_os_str(), mode) {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => {
                    // Replace a non-directory; keep an existing directory.
                    let st = rfs::statat(&pfd, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| io_err(e.into()))?;
                    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                        remove_at(&pfd, &name).map_err(io_err)?;
                        rfs::mkdirat(&pfd, name.as_os_str(), mode).map_err(|e| io_err(e.into()))?;
                    }
                }
                Err(e) => return Err(io_err(e.into())),
            }
            let d = open_dir_at(&pfd, name.as_os_str()).map_err(io_err)?;
            rfs::fchown(&d, Some(uid.into_uid()), Some(gid.into_gid()))
                .map_err(|e| io_err(chown_error(e, uid, gid)))?;
            rfs::fchmod(&d, mode).map_err(|e| io_err(e.into()))?;
            set_xattrs(&d, e).map_err(io_err)?;
            dirs.push((target.clone(), mtime));
        }
        // Old GNU sparse ('S'): the crate reads the holes back as zeros.
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
            let f = rfs::openat(
                &pfd,
                name.as_os_str(),
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|e| io_err(e.into()))?;
            let mut file = std::fs::File::from(f);
            match &sparse {
                Some(sp) => write_sparse(&mut file, e, sp, size).map_err(|err| match err {
                    SparseError::Bad(why) => hostile(&why),
                    SparseError::Io(err) => io_err(err),
                })?,
                None => {
                    io::copy(e, &mut file).map_err(io_err)?;
                }
            }
            rfs::fchown(&file, Some(uid.into_uid()), Some(gid.into_gid()))
                .map_err(|e| io_err(chown_error(e, uid, gid)))?;
            rfs::fchmod(&file, mode).map_err(|e| io_err(e.into()))?;
            let fd = OwnedFd::from(file);
            set_xattrs(&fd, e).map_err(io_err)?;
            rfs::futimens(&fd, &times(mtime)).map_err(|e| io_err(e.into()))?;
        }
        EntryType::Symlink => {
            let link = e
                .link_name_bytes()
                .ok_or_else(|| hostile("symlink without target"))?;
            // The target as its bytes: a non-UTF-8 target stays what the archive says.
            let link = OsStr::from_bytes(&link);
            rfs::symlinkat(link, &pfd, name.as_os_str()).map_err(|e| io_err(e.into()))?;
            chown_entry(&pfd)?;
            rfs::utimensat(
                &pfd,
                name.as_os_str(),
                &times(mtime),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io_err(e.into()))?;
        }
        EntryType::Link => {
            let link = e
                .link_name_bytes()
                .ok_or_else(|| hostile("hard link without target"))?;
            let link = String::from_utf8_lossy(&link).into_owned();
            let lrel = name_in(&link, opts.whiteouts)
                .ok_or_else(|| hostile("link target has a '..' component"))?;
            let ltarget = base.join(&lrel);
            let lparent = ltarget.parent().unwrap_or(Path::new(""));
            let lname = ltarget
                .file_name()
                .ok_or_else(|| hostile("hard link to the root"))?;
            let lfd = root.dir(lparent).map_err(io_err)?;
            rfs::linkat(&lfd, lname, &pfd, name.as_os_str(), AtFlags::empty())
                .map_err(|e| io_err(e.into()))?;
            // The link entry's owner, mode and mtime apply to the file it shares, as containerd
            // and moby's archive apply them (BuildKit's ADD); a link to a symlink keeps the
            // symlink's.
            let st = rfs::statat(&pfd, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| io_err(e.into()))?;
            if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                chown_entry(&pfd)?;
                rfs::chmodat(&pfd, name.as_os_str(), mode, AtFlags::empty())
                    .map_err(|e| io_err(e.into()))?;
                rfs::utimensat(&pfd, name.as_os_str(), &times(mtime), AtFlags::empty())
                    .map_err(|e| io_err(e.into()))?;
            }
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            let ft = match kind {
                EntryType::Char => FileType::CharacterDevice,
                EntryType::Block => FileType::BlockDevice,
                _ => FileType::Fifo,
            };
            let major = h.device_major().ok().flatten().unwrap_or(0);
            let minor = h.device_minor().ok().flatten().unwrap_or(0);
            match rfs::mknodat(&pfd, name.as_os_str(), ft, mode, rfs::makedev(major, minor)) {
                // A user namespace may make no device node (a plain user's build, a
                // debootstrap tree's /dev): a stand-in file says which (see idmap).
                Err(rustix::io::Errno::PERM)
                    if ft != FileType::Fifo && crate::idmap::in_user_namespace() =>
                {
                    let f = rfs::openat(
                        &pfd,
                        name.as_os_str(),
                        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW,
                        mode,
                    )
                    .map_err(|e| io_err(e.into()))?;
                    let kind = if ft == FileType::CharacterDevice {
                        'c'
                    } else {
                        'b'
                    };
                    rfs::fsetxattr(
                        &f,
                        crate::idmap::DEVICE_STANDIN_XATTR,
                        format!("{kind} {major} {minor}").as_bytes(),
                        rfs::XattrFlags::empty(),
                    )
                    .map_err(|e| io_err(e.into()))?;
                    rfs::fchmod(&f, mode).map_err(|e| io_err(e.into()))?;
                }
                r => {
                    r.map_err(|e| io_err(e.into()))?;
                    // mknod's mode went through the umask: the entry's mode, exactly.
                    rfs::chmodat(&pfd, name.as_os_str(), mode, AtFlags::empty())
                        .map_err(|e| io_err(e.into()))?;
                }
            }
            chown_entry(&pfd)?;
        }
        EntryType::XHeader
        | EntryType::XGlobalHeader
        | EntryType::GNULongName
        | EntryType::GNULongLink => {}
        other => {
            return Err(hostile(&format!("unsupported entry type {other:?}")));
        }
    }
    Ok(raw)
}

/// A refused chown; EINVAL for an id this user namespace does not map says which and why.
fn chown_error(e: rustix::io::Errno, uid: u32, gid: u32) -> io::Error {
    match (e, crate::idmap::unmapped(uid, gid)) {
        (rustix::io::Errno::INVAL, Some(why)) => io::Error::new(io::ErrorKind::InvalidInput, why),
        _ => e.into(),
    }
}

trait IntoIds {
    fn into_uid(self) -> rfs::Uid;
    fn into_gid(self) -> rfs::Gid;
}

impl IntoIds for u32 {
    fn into_uid(self) -> rfs::Uid {
        rfs::Uid::from_raw(self)
    }
    fn into_gid(self) -> rfs::Gid {
        rfs::Gid::from_raw(self)
    }
}

fn times(mtime: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime as i64,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// PAX `SCHILY.xattr.*` records of the entry, set on `fd`.
fn set_xattrs<R: Read>(fd: &OwnedFd, e: &mut tar::Entry<'_, R>) -> io::Result<()> {
    let Some(exts) = e.pax_extensions()? else {
        return Ok(());
    };
    for ext in exts {
        let ext = ext?;
        let Ok(key) = ext.key() else { continue };
        if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
            if crate::idmap::is_overlay_xattr(name) {
                continue;
            }
            match rfs::fsetxattr(fd, name, ext.value_bytes(), rfs::XattrFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOTSUP) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// A GNU sparse file in PAX form: its real name and size and where its data goes.
#[derive(Debug, PartialEq)]
struct Sparse {
    /// `GNU.sparse.name` (0.1, 1.0); else the entry's own name is the real one (0.0).
    name: Option<Vec<u8>>,
    /// The size of the file with its holes.
    size: u64,
    /// (offset, length) of each stored segment (0.0, 0.1); None for 1.0, whose map leads the
    /// entry's data.
    map: Option<Vec<(u64, u64)>>,
}

/// Why a sparse entry cannot be unpacked: a bad map (hostile) or an I/O error.
enum SparseError {
    Bad(String),
    Io(io::Error),
}

impl From<io::Error> for SparseError {
    fn from(e: io::Error) -> Self {
        SparseError::Io(e)
    }
}

/// The entry's `GNU.sparse.*` PAX records, if any, as a [`Sparse`] (see "Storing Sparse
/// Files" in the GNU tar manual). An unknown format version is refused, not unpacked packed.
fn pax_sparse<R: Read>(e: &mut tar::Entry<'_, R>) -> Result<Option<Sparse>, SparseRecords> {
    let Some(exts) = e.pax_extensions().map_err(|err| SparseRecords {
        name: None,
        err: SparseError::Io(err),
    })?
    else {
        return Ok(None);
    };
    let mut records: Vec<(String, Vec<u8>)> = Vec::new();
    let mut name = None;
    for ext in exts {
        let ext = ext.map_err(|err| SparseRecords {
            name: None,
            err: SparseError::Io(err),
        })?;
        let Some(k) = ext.key().ok().and_then(|k| k.strip_prefix("GNU.sparse.")) else {
            continue;
        };
        if k == "name" {
            name = Some(ext.value_bytes().to_vec());
        }
        records.push((k.to_string(), ext.value_bytes().to_vec()));
    }
    sparse_records(&records)
        .map_err(|why| SparseRecords {
            name: name.clone(),
            err: SparseError::Bad(why),
        })
        .map(|s| s.map(|s| Sparse { name, ..s }))
}

/// A [`pax_sparse`] failure, with the real name when the records gave one.
struct SparseRecords {
    name: Option<Vec<u8>>,
    err: SparseError,
}

/// The `GNU.sparse.*` records (prefix removed, in order) as a [`Sparse`] without its name.
fn sparse_records(records: &[(String, Vec<u8>)]) -> Result<Option<Sparse>, String> {
    let (mut major, mut minor, mut size, mut map) = (None, None, None, None);
    let mut pairs: Vec<u64> = Vec::new();
    let num = |k: &str, v: &[u8]| {
        std::str::from_utf8(v)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| format!("GNU.sparse.{k}: not a number"))
    };
    for (k, v) in records {
        match k.as_str() {
            "major" => major = Some(v.as_slice()),
            "minor" => minor = Some(v.as_slice()),
            "size" | "realsize" => size = Some(num(k, v)?),
            "map" => map = Some(v.as_slice()),
            // 0.0 repeats these two, in this order, for each segment.
            "offset" | "numbytes" => {
                if pairs.len().is_multiple_of(2) != (k == "offset") {
                    return Err("GNU.sparse.offset and numbytes out of order".into());
                }
                pairs.push(num(k, v)?);
            }
            _ => {}
        }
    }
    let v1 = match (major, minor) {
        (Some(b"1"), Some(b"0")) => true,
        (Some(b"0"), Some(b"0" | b"1")) => false,
        // 0.0 and 0.1 had no version records.
        (None, None) if map.is_some() || !pairs.is_empty() => false,
        (None, None) => return Ok(None),
        (ma, mi) => {
            let show = |v: Option<&[u8]>| String::from_utf8_lossy(v.unwrap_or(b"?")).into_owned();
            return Err(format!(
                "GNU sparse format {}.{} is not supported (0.0, 0.1 and 1.0 are)",
                show(ma),
                show(mi)
            ));
        }
    };
    let size = size.ok_or("GNU sparse entry without GNU.sparse.size")?;
    let map = match (v1, map) {
        (true, _) => None,
        (false, Some(m)) => Some(
            m.split(|&b| b == b',')
                .map(|n| num("map", n))
                .collect::<Result<Vec<u64>, String>>()?,
        ),
        (false, None) => Some(pairs),
    };
    if map.as_ref().is_some_and(|m| !m.len().is_multiple_of(2)) {
        return Err("GNU sparse map with an odd count of numbers".into());
    }
    Ok(Some(Sparse {
        name: None,
        size,
        map: map.map(|m| m.chunks(2).map(|c| (c[0], c[1])).collect()),
    }))
}

/// The 1.0 map at the start of the entry's data: decimal numbers, one a line (the count, then
/// offset and length of each segment), padded with NULs to a 512-byte block. Returns the map
/// and the bytes it took.
fn read_v1_map(r: &mut impl Read) -> Result<(Vec<(u64, u64)>, u64), SparseError> {
    let mut buf: Vec<u8> = Vec::new();
    // The next number starts at `pos`; `buf[pos..scan]` has no newline.
    let (mut pos, mut scan) = (0, 0);
    let mut count: Option<usize> = None;
    let mut nums: Vec<u64> = Vec::new();
    while count.is_none_or(|c| nums.len() < 2 * c) {
        let Some(nl) = buf[scan..].iter().position(|&b| b == b'\n') else {
            scan = buf.len();
            if buf.len() as u64 >= MAX_ENTRY_HEADERS {
                return Err(SparseError::Bad(format!(
                    "GNU sparse map longer than {MAX_ENTRY_HEADERS} bytes (MAX_ENTRY_HEADERS)"
                )));
            }
            let mut block = [0u8; 512];
            r.read_exact(&mut block).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => {
                    SparseError::Bad("GNU sparse map cut short by the end of the entry".into())
                }
                _ => SparseError::Io(e),
            })?;
            buf.extend_from_slice(&block);
            continue;
        };
        let nl = scan + nl;
        let n = std::str::from_utf8(&buf[pos..nl])
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or_else(|| SparseError::Bad("GNU sparse map: not a number".into()))?;
        pos = nl + 1;
        scan = pos;
        match count {
            // Each segment takes at least four bytes ("0\n0\n").
            None => {
                count = Some(
                    usize::try_from(n)
                        .ok()
                        .filter(|&c| c as u64 <= MAX_ENTRY_HEADERS / 4)
                        .ok_or_else(|| {
                            SparseError::Bad(format!(
                                "GNU sparse map of {n} segments: over MAX_ENTRY_HEADERS"
                            ))
                        })?,
                )
            }
            Some(_) => nums.push(n),
        }
    }
    let map = nums.chunks(2).map(|c| (c[0], c[1])).collect();
    Ok((map, buf.len() as u64))
}

/// Writes the sparse entry's data (`stored` bytes in `data`) to `file`: each segment at its
/// offset, the holes left as holes, the file cut to its real size.
fn write_sparse(
    file: &mut std::fs::File,
    data: &mut impl Read,
    sp: &Sparse,
    mut stored: u64,
) -> Result<(), SparseError> {
    let bad = SparseError::Bad;
    let v1;
    let map = match &sp.map {
        Some(m) => m,
        None => {
            let (m, took) = read_v1_map(data)?;
            stored = stored
                .checked_sub(took)
                .ok_or_else(|| bad("GNU sparse map longer than the entry".into()))?;
            v1 = m;
            &v1
        }
    };
    let (mut end, mut total) = (0u64, 0u64);
    for &(off, len) in map {
        if off < end {
            return Err(bad(format!(
                "GNU sparse map: segment at {off} overlaps or is out of order"
            )));
        }
        end = off
            .checked_add(len)
            .filter(|&e| e <= sp.size)
            .ok_or_else(|| {
                bad(format!(
                    "GNU sparse map: segment {off}+{len} ends past the file size {}",
                    sp.size
                ))
            })?;
        total += len;
    }
    if total != stored {
        return Err(bad(format!(
            "GNU sparse map lists {total} bytes of data, the entry holds {stored}"
        )));
    }
    for &(off, len) in map.iter().filter(|(_, len)| *len > 0) {
        file.seek(SeekFrom::Start(off))?;
        let n = io::copy(&mut data.take(len), file)?;
        if n != len {
            return Err(bad(format!("GNU sparse data cut short at {}", off + n)));
        }
    }
    file.set_len(sp.size)?;
    Ok(())
}

/// The entry name as a relative path: `.` and root components dropped, None if it has `..`.
/// An entry's name below the target: a layer's (`layer`) with a `..` component is refused; an
/// ADD'ed archive's is cleaned as inside a chroot at the destination (`..` at the top stays
/// there), as BuildKit's chrooted untar resolves it.
fn name_in(name: &str, layer: bool) -> Option<PathBuf> {
    if layer {
        return clean(name);
    }
    let mut out = PathBuf::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Some(out)
}

pub fn clean(name: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => return None,
            _ => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;
    use std::process::Command;

    /// One tar member: a ustar header and its data, padded to 512 bytes.
    fn member(name: &str, kind: EntryType, data: &[u8], link: &str) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_mtime(0);
        if !link.is_empty() {
            h.set_link_name(link).unwrap();
        }
        h.set_cksum();
        let mut v = h.as_bytes().to_vec();
        v.extend_from_slice(data);
        v.resize(v.len().div_ceil(512) * 512, 0);
        v
    }

    fn file(name: &str, data: &[u8]) -> Vec<u8> {
        member(name, EntryType::Regular, data, "")
    }

    /// A PAX extended header member with `records`.
    fn pax(records: &[(&str, &str)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = format!(" {k}={v}\n");
            let mut n = rest.len() + 1;
            while format!("{n}{rest}").len() != n {
                n = format!("{n}{rest}").len();
            }
            body.extend_from_slice(format!("{n}{rest}").as_bytes());
        }
        member("PaxHeaders/x", EntryType::XHeader, &body, "")
    }

    fn archive(members: &[Vec<u8>]) -> Vec<u8> {
        let mut v = members.concat();
        v.extend_from_slice(&[0; 1024]);
        v
    }

    fn unpack_into(dir: &Path, tar: &[u8]) -> Result<(), UnpackError> {
        let root = Root::open(dir).unwrap();
        let opts = Options {
            whiteouts: true,
            owners: false,
        };
        unpack(&root, Path::new(""), tar, "layer L", opts)
    }

    /// The sparse file the tests store: 20000 bytes, "hello" at 0, "abc" at 10000.
    fn expected_sparse() -> Vec<u8> {
        let mut want = vec![0u8; 20000];
        want[..5].copy_from_slice(b"hello");
        want[10000..10003].copy_from_slice(b"abc");
        want
    }

    #[test]
    fn pax_sparse_files_are_unpacked_with_their_holes() {
        let map = [("0", "5"), ("10000", "3"), ("20000", "0")];
        let mut v00 = vec![
            ("GNU.sparse.size", "20000".to_string()),
            ("GNU.sparse.numblocks", "3".to_string()),
        ];
        for (o, n) in map {
            v00.push(("GNU.sparse.offset", o.into()));
            v00.push(("GNU.sparse.numbytes", n.into()));
        }
        let v00: Vec<(&str, &str)> = v00.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let v01 = [
            ("GNU.sparse.size", "20000"),
            ("GNU.sparse.numblocks", "3"),
            ("GNU.sparse.name", "d/f"),
            ("GNU.sparse.map", "0,5,10000,3,20000,0"),
        ];
        let v10 = [
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.name", "d/f"),
            ("GNU.sparse.realsize", "20000"),
        ];
        let mut data10 = b"3\n0\n5\n10000\n3\n20000\n0\n".to_vec();
        data10.resize(512, 0);
        data10.extend_from_slice(b"helloabc");
        for (version, records, name, data) in [
            ("0.0", &v00[..], "d/f", b"helloabc".to_vec()),
            ("0.1", &v01[..], "d/GNUSparseFile.1/f", b"helloabc".to_vec()),
            ("1.0", &v10[..], "d/GNUSparseFile.1/f", data10),
        ] {
            let d = tempfile::tempdir().unwrap();
            let tar = archive(&[pax(records), file(name, &data), file("after", b"x")]);
            unpack_into(d.path(), &tar).unwrap_or_else(|e| panic!("{version}: {e}"));
            assert_eq!(
                fs::read(d.path().join("d/f")).unwrap(),
                expected_sparse(),
                "{version}"
            );
            assert!(!d.path().join("d/GNUSparseFile.1").exists(), "{version}");
            assert_eq!(fs::read(d.path().join("after")).unwrap(), b"x", "{version}");
        }
    }

    /// Sparse files as GNU tar writes them: every PAX version and the old GNU format.
    #[test]
    fn sparse_files_from_gnu_tar() {
        if Command::new("tar").arg("--version").output().is_err() {
            println!("SKIP sparse_files_from_gnu_tar: GNU tar not installed");
            return;
        }
        let src = tempfile::tempdir().unwrap();
        let f = src.path().join("s");
        let mut want = vec![0u8; 3 << 20];
        want[..5].copy_from_slice(b"start");
        want[1 << 20..(1 << 20) + 6].copy_from_slice(b"middle");
        want[(3 << 20) - 3..].copy_from_slice(b"end");
        let mut out = fs::File::create(&f).unwrap();
        for (off, part) in [(0, 5), (1 << 20, 6), ((3 << 20) - 3, 3)] {
            out.seek(SeekFrom::Start(off as u64)).unwrap();
            io::Write::write_all(&mut out, &want[off..off + part]).unwrap();
        }
        drop(out);
        for args in [
            &["--format=pax", "--sparse-version=0.0"][..],
            &["--format=pax", "--sparse-version=0.1"],
            &["--format=pax", "--sparse-version=1.0"],
            &["--format=gnu"],
        ] {
            let tar = Command::new("tar")
                .arg("--sparse")
                .args(args)
                .arg("-C")
                .arg(src.path())
                .args(["-cf", "-", "s"])
                .output()
                .unwrap();
            assert!(tar.status.success(), "{args:?}");
            let d = tempfile::tempdir().unwrap();
            unpack_into(d.path(), &tar.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let got = d.path().join("s");
            assert!(
                got.is_file(),
                "{args:?}: {:?}",
                fs::read_dir(d.path()).unwrap()
            );
            assert!(fs::read(&got).unwrap() == want, "{args:?}: content differs");
            if args[0] == "--format=pax" {
                // The holes stay holes (the old GNU form is read back with zeros written).
                assert!(
                    fs::metadata(&got).unwrap().blocks() * 512 < 1 << 20,
                    "{args:?}"
                );
            }
        }
    }

    #[test]
    fn bad_sparse_maps_are_refused_naming_the_entry() {
        let sparse = |records: &[(&str, &str)], data: &[u8], want: &str| {
            let d = tempfile::tempdir().unwrap();
            let tar = archive(&[pax(records), file("GNUSparseFile.1/f", data)]);
            let e = unpack_into(d.path(), &tar).unwrap_err().to_string();
            assert!(e.starts_with("layer L: entry \"f\": "), "{e}");
            assert!(e.contains(want), "want {want:?}: {e}");
        };
        let v01 = |map: &'static str| {
            [
                ("GNU.sparse.size", "100"),
                ("GNU.sparse.name", "f"),
                ("GNU.sparse.map", map),
            ]
        };
        sparse(&v01("0,5,200,3"), b"12345678", "ends past the file size");
        sparse(
            &v01("10,5,12,3"),
            b"12345678",
            "overlaps or is out of order",
        );
        sparse(&v01("0,5,50,4"), b"12345678", "lists 9 bytes of data");
        sparse(&v01("0,5,50"), b"12345", "odd count");
        let v2 = [
            ("GNU.sparse.major", "2"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.name", "f"),
            ("GNU.sparse.realsize", "10"),
        ];
        let d = tempfile::tempdir().unwrap();
        let tar = archive(&[pax(&v2), file("GNUSparseFile.1/f", b"x")]);
        let e = unpack_into(d.path(), &tar).unwrap_err().to_string();
        assert!(e.contains("GNU sparse format 2.0 is not supported"), "{e}");
        let v10 = [
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.name", "f"),
            ("GNU.sparse.realsize", "10"),
        ];
        sparse(&v10, b"1\n0\n", "cut short");
        let mut huge = b"99999999999\n".to_vec();
        huge.resize(512, 0);
        sparse(&v10, &huge, "segments: over MAX_ENTRY_HEADERS");
        // A map of only digits, never ending, stops at the limit.
        let endless = vec![b'1'; MAX_ENTRY_HEADERS as usize + 512];
        sparse(
            &v10,
            &endless,
            "map longer than 1048576 bytes (MAX_ENTRY_HEADERS)",
        );
    }

    #[test]
    fn entry_headers_are_capped() {
        let big = "a".repeat(MAX_ENTRY_HEADERS as usize + 1);
        for (what, first) in [
            ("pax", pax(&[("comment", &big)])),
            (
                "long name",
                member("././@LongLink", EntryType::GNULongName, big.as_bytes(), ""),
            ),
        ] {
            let d = tempfile::tempdir().unwrap();
            let tar = archive(&[file("ok", b"1"), first, file("f", b"2")]);
            let e = unpack_into(d.path(), &tar).unwrap_err().to_string();
            assert!(
                e.starts_with("layer L: the tar headers")
                    && e.contains("after \"ok\"")
                    && e.contains("MAX_ENTRY_HEADERS"),
                "{what}: {e}"
            );
        }
        // Big but within the limit: a 200 KiB PAX header and a 4 KiB name.
        let long = format!("{}f", format!("{}/", "n".repeat(200)).repeat(20));
        let d = tempfile::tempdir().unwrap();
        let tar = archive(&[
            pax(&[("comment", &"c".repeat(200 << 10)), ("path", &long)]),
            file("short", b"data"),
            file("next", b"n"),
        ]);
        unpack_into(d.path(), &tar).unwrap();
        assert_eq!(fs::read(d.path().join(&long)).unwrap(), b"data");
        assert_eq!(fs::read(d.path().join("next")).unwrap(), b"n");
    }

    #[test]
    fn a_file_through_a_symlink_that_leads_nowhere_names_the_symlink() {
        for (link, target, want) in [
            (
                "x",
                "/somewhere",
                "x -> \"/somewhere\", which does not exist",
            ),
            ("y", "plain", "y -> \"plain\", which is not a directory"),
        ] {
            let d = tempfile::tempdir().unwrap();
            let tar = archive(&[
                file("plain", b"p"),
                member(link, EntryType::Symlink, b"", target),
                file(&format!("{link}/file"), b"f"),
            ]);
            let e = unpack_into(d.path(), &tar).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("layer L: entry \"{link}/file\": ")),
                "{e}"
            );
            assert!(
                e.contains(&format!("the path goes through symlink {want}")),
                "{e}"
            );
        }
        // A symlink to a directory of the layer is followed, inside the layer.
        let d = tempfile::tempdir().unwrap();
        let tar = archive(&[
            member("real", EntryType::Directory, b"", ""),
            member("d", EntryType::Symlink, b"", "/real"),
            file("d/in", b"i"),
        ]);
        unpack_into(d.path(), &tar).unwrap();
        assert_eq!(fs::read(d.path().join("real/in")).unwrap(), b"i");
    }
}
