//! The marks an overlay upper directory uses for deletions, in every form brig-build's two
//! overlays leave them, read in one place: the layer writer ([`super::layer`]) turns them into
//! OCI whiteouts, a work area's upper dir is settled with them ([`crate::exec::upper`]).
//!
//! Kernel overlayfs: a deletion is a character device 0/0 of the deleted name; an opaque
//! directory carries `trusted.overlay.opaque=y` (`user.overlay.opaque=y` when mounted with
//! `userxattr` in a user namespace). fuse-overlayfs (1.10, `main.c`: `create_whiteout`,
//! `set_fd_opaque`): a deletion is the same device when it may mknod one, else an empty file
//! `.wh.NAME`; an opaque directory gets `trusted.overlay.opaque=y`, or where that is refused
//! (EPERM: a user namespace) `user.fuseoverlayfs.opaque=y`, and always a file `.wh..wh..opq`
//! in it; making a directory over a deleted one (`hide_all`) whiteouts every name the merged
//! directory had, that file's `.wh..opq` included. Its private xattrs (`user.fuseoverlayfs.*`,
//! `security.fuseoverlayfs.*`) are never part of a layer.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// The OCI (and fuse-overlayfs) whiteout prefix.
pub const PREFIX: &str = ".wh.";

/// The OCI opaque-directory entry, also fuse-overlayfs' opaque file.
pub const OPAQUE_FILE: &str = ".wh..wh..opq";

/// fuse-overlayfs' opaque xattr where `trusted.overlay.opaque` is refused.
pub const FUSE_OPAQUE_XATTR: &str = "user.fuseoverlayfs.opaque";

/// The opaque xattrs either overlay reads, kernel's first.
const OPAQUE_XATTRS: [&str; 3] = [
    "trusted.overlay.opaque",
    "user.overlay.opaque",
    FUSE_OPAQUE_XATTR,
];

/// What an entry of an upper directory is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A deletion of this name (a device 0/0, or fuse-overlayfs' `.wh.NAME` file).
    Whiteout(std::ffi::OsString),
    /// fuse-overlayfs' `.wh..wh..opq` file: its directory is opaque ([`is_opaque_dir`]).
    OpaqueFile,
    /// A device 0/0 whose name starts with `.wh.`: fuse-overlayfs' whiteout of its own
    /// marker file (`hide_all`); no name of an image starts so.
    Stray,
    /// Anything else: content.
    Content,
}

/// Classifies the entry `name` with metadata `md` (not followed).
pub fn classify(name: &std::ffi::OsStr, md: &fs::Metadata) -> Entry {
    let ft = md.file_type();
    let marked = name.as_bytes().strip_prefix(PREFIX.as_bytes());
    if ft.is_char_device() && md.rdev() == 0 {
        return match marked {
            Some(_) => Entry::Stray,
            None => Entry::Whiteout(name.to_os_string()),
        };
    }
    if ft.is_file() {
        if name == OPAQUE_FILE {
            return Entry::OpaqueFile;
        }
        if let Some(victim) = marked.filter(|v| !v.is_empty()) {
            return Entry::Whiteout(std::ffi::OsStr::from_bytes(victim).to_os_string());
        }
    }
    Entry::Content
}

/// True when the directory `dir` is marked opaque in any form: one of the opaque xattrs is
/// `y`, or it holds a regular `.wh..wh..opq` file.
pub fn is_opaque_dir(dir: &Path) -> io::Result<bool> {
    for x in OPAQUE_XATTRS {
        if super::layer::xattr_value(dir, x)?.as_deref() == Some(b"y") {
            return Ok(true);
        }
    }
    match fs::symlink_metadata(dir.join(OPAQUE_FILE)) {
        Ok(md) => Ok(md.is_file()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The opaque xattrs `dir` may carry (to clear them all).
pub fn opaque_xattrs() -> &'static [&'static str] {
    &OPAQUE_XATTRS
}

/// An xattr of fuse-overlayfs' own (its opaque mark, its stored owners and modes): never
/// part of a layer.
pub fn is_fuse_xattr(name: &str) -> bool {
    name.starts_with("user.fuseoverlayfs.") || name.starts_with("security.fuseoverlayfs.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn each_form_is_classified() {
        let d = tempfile::tempdir().unwrap();
        let md = |n: &str| fs::symlink_metadata(d.path().join(n)).unwrap();
        fs::write(d.path().join(".wh.gone"), "").unwrap();
        fs::write(d.path().join(OPAQUE_FILE), "").unwrap();
        fs::write(d.path().join("plain"), "x").unwrap();
        fs::create_dir(d.path().join(".wh.dir")).unwrap();
        let c = |n: &str| classify(OsStr::new(n), &md(n));
        assert_eq!(c(".wh.gone"), Entry::Whiteout("gone".into()));
        assert_eq!(c(OPAQUE_FILE), Entry::OpaqueFile);
        assert_eq!(c("plain"), Entry::Content);
        assert_eq!(c(".wh.dir"), Entry::Content, "a directory is never a mark");
        assert!(is_opaque_dir(d.path()).unwrap());
        fs::remove_file(d.path().join(OPAQUE_FILE)).unwrap();
        assert!(!is_opaque_dir(d.path()).unwrap());
        assert!(is_fuse_xattr("user.fuseoverlayfs.override_stat"));
        assert!(is_fuse_xattr("security.fuseoverlayfs.override_stat"));
        assert!(!is_fuse_xattr("user.overlay.opaque") && !is_fuse_xattr("user.mime_type"));
    }
}
