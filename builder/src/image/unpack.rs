//! A layer tar (possibly hostile) → a directory: base image layers, ADD of a local archive.
//!
//! Owns the one place where bytes from outside become files on the host, so it trusts nothing
//! in the archive:
//! * entry names with a `..` component are refused (the error names the layer and the entry);
//!   absolute names are taken relative to the target (contained, as tar(1) does by default);
//! * every parent directory is resolved with `openat2(RESOLVE_IN_ROOT)` through [`Root`], so a
//!   symlink entry followed by a file "through" it (`evil -> /etc`, then `evil/passwd`) lands
//!   inside the target, never on the host; the final component is created with `O_NOFOLLOW` /
//!   `*at` calls and an existing entry of that name is removed first, never written through;
//! * hard link targets are resolved inside the target the same way;
//! * with whiteouts on (layers), `.wh.NAME` becomes an overlayfs whiteout (char device 0/0) and
//!   `.wh..wh..opq` sets `trusted.overlay.opaque=y`, so the directory can serve as an overlayfs
//!   lower layer as is;
//! * not yet: a cap on PAX/GNU long-name header sizes (the `tar` crate buffers them whole).
//!
//! Hand-written on top of the `tar` crate because `tar::Entry::unpack_in` checks names lexically
//! and then uses path-based calls that follow symlinks planted by earlier entries of the same
//! layer, and it knows nothing of whiteouts.

use crate::fsroot::{remove_at, Root};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
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
    let mut ar = tar::Archive::new(r);
    let mut dirs: Vec<(PathBuf, u64)> = Vec::new();
    let rd = |err| UnpackError::Read {
        layer: layer.to_string(),
        err,
    };
    let entries = ar.entries().map_err(rd)?;
    for e in entries {
        let mut e = e.map_err(rd)?;
        let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let hostile = |why: &str| UnpackError::Hostile {
            layer: layer.to_string(),
            entry: raw.clone(),
            why: why.to_string(),
        };
        let rel = clean(&raw).ok_or_else(|| hostile("path has a '..' component"))?;
        if rel.as_os_str().is_empty() {
            continue;
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
            if name_s == ".wh..wh..opq" {
                rfs::fsetxattr(
                    &pfd,
                    super::layer::OPAQUE_XATTR,
                    b"y",
                    rfs::XattrFlags::empty(),
                )
                .map_err(|e| io_err(e.into()))?;
                continue;
            }
            if let Some(victim) = name_s.strip_prefix(".wh.") {
                if victim.is_empty() || victim == "." || victim == ".." {
                    return Err(hostile("bad whiteout name"));
                }
                remove_at(&pfd, OsStr::new(victim)).map_err(io_err)?;
                rfs::mknodat(&pfd, victim, FileType::CharacterDevice, Mode::empty(), 0)
                    .map_err(|e| io_err(e.into()))?;
                continue;
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
        let mtime = h.mtime().unwrap_or(0);
        let kind = h.entry_type();
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
                            rfs::mkdirat(&pfd, name.as_os_str(), mode)
                                .map_err(|e| io_err(e.into()))?;
                        }
                    }
                    Err(e) => return Err(io_err(e.into())),
                }
                let d = rfs::openat(
                    &pfd,
                    name.as_os_str(),
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io_err(e.into()))?;
                rfs::fchown(&d, Some(uid.into_uid()), Some(gid.into_gid()))
                    .map_err(|e| io_err(e.into()))?;
                rfs::fchmod(&d, mode).map_err(|e| io_err(e.into()))?;
                set_xattrs(&d, &mut e).map_err(io_err)?;
                dirs.push((target.clone(), mtime));
            }
            EntryType::Regular | EntryType::Continuous => {
                let f = rfs::openat(
                    &pfd,
                    name.as_os_str(),
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| io_err(e.into()))?;
                let mut file = std::fs::File::from(f);
                io::copy(&mut e, &mut file).map_err(io_err)?;
                rfs::fchown(&file, Some(uid.into_uid()), Some(gid.into_gid()))
                    .map_err(|e| io_err(e.into()))?;
                rfs::fchmod(&file, mode).map_err(|e| io_err(e.into()))?;
                let fd = OwnedFd::from(file);
                set_xattrs(&fd, &mut e).map_err(io_err)?;
                rfs::futimens(&fd, &times(mtime)).map_err(|e| io_err(e.into()))?;
            }
            EntryType::Symlink => {
                let link = e
                    .link_name_bytes()
                    .ok_or_else(|| hostile("symlink without target"))?;
                let link = String::from_utf8_lossy(&link).into_owned();
                rfs::symlinkat(link.as_str(), &pfd, name.as_os_str())
                    .map_err(|e| io_err(e.into()))?;
                rfs::chownat(
                    &pfd,
                    name.as_os_str(),
                    Some(uid.into_uid()),
                    Some(gid.into_gid()),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| io_err(e.into()))?;
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
                let lrel =
                    clean(&link).ok_or_else(|| hostile("link target has a '..' component"))?;
                let ltarget = base.join(&lrel);
                let lparent = ltarget.parent().unwrap_or(Path::new(""));
                let lname = ltarget
                    .file_name()
                    .ok_or_else(|| hostile("hard link to the root"))?;
                let lfd = root.dir(lparent).map_err(io_err)?;
                rfs::linkat(&lfd, lname, &pfd, name.as_os_str(), AtFlags::empty())
                    .map_err(|e| io_err(e.into()))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let ft = match kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                rfs::mknodat(&pfd, name.as_os_str(), ft, mode, rfs::makedev(major, minor))
                    .map_err(|e| io_err(e.into()))?;
                rfs::chownat(
                    &pfd,
                    name.as_os_str(),
                    Some(uid.into_uid()),
                    Some(gid.into_gid()),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| io_err(e.into()))?;
            }
            EntryType::XHeader
            | EntryType::XGlobalHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => {}
            other => {
                return Err(hostile(&format!("unsupported entry type {other:?}")));
            }
        }
    }
    // Directory mtimes last: creating their children changed them.
    for (d, mtime) in dirs.iter().rev() {
        if let Ok(fd) = root.dir(d) {
            let _ = rfs::futimens(&fd, &times(*mtime));
        }
    }
    Ok(())
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
            if name.starts_with("trusted.overlay.") {
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

/// The entry name as a relative path: `.` and root components dropped, None if it has `..`.
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
