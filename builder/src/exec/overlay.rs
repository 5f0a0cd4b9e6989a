//! overlayfs mounts of a stage's layers: read-write (lower = parent layers, upper = the new
//! layer) for RUN/COPY/ADD, read-only for reading another stage (COPY --from).
//!
//! Owns the mount options: `index=off` (layers are reused across mounts), `metacopy=off` (an
//! upper file must hold its data, it becomes a layer) and `redirect_dir=off` (a renamed lower
//! directory must be copied up whole, layers have no redirects); in a user namespace (a plain
//! user's build) `userxattr` and `redirect_dir=nofollow`. A [`Mounted`] unmounts when
//! dropped, so an error path never leaves a mount behind.

use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};
use std::io;
use std::path::{Path, PathBuf};

/// A mounted overlay; unmounted (lazily) on drop unless [`Mounted::unmount`] was called.
pub struct Mounted {
    target: PathBuf,
    active: bool,
}

impl Mounted {
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Unmounts now, reporting errors.
    ///
    /// While stages run in parallel, a runtime another stage is starting holds, for a moment,
    /// copies of this process's file descriptors (between its fork and exec), some of which may
    /// point into this mount, making it busy (seen: EBUSY for up to ~120 ms on a loaded host);
    /// so EBUSY is retried for up to 0.5 s, then the mount is detached (the step's processes
    /// are gone, nothing writes to it any more).
    pub fn unmount(mut self) -> io::Result<()> {
        self.active = false;
        for i in 0.. {
            match unmount(&self.target, UnmountFlags::empty()) {
                Ok(()) => return Ok(()),
                Err(rustix::io::Errno::BUSY) if i < 50 => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(rustix::io::Errno::BUSY) => {
                    return unmount(&self.target, UnmountFlags::DETACH).map_err(|e| {
                        io::Error::new(e.kind(), format!("umount {}: {e}", self.target.display()))
                    });
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("umount {}: {e}", self.target.display()),
                    ))
                }
            }
        }
        unreachable!("the loop returns")
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.active {
            let _ = unmount(&self.target, UnmountFlags::DETACH);
        }
    }
}

/// The `lowerdir` list (top first) for `lowers` (bottom first), padded with `empty` to `need`
/// entries.
///
/// A directory named twice is kept only where it is topmost: overlayfs refuses a lower layer
/// that appears twice (ELOOP, "overlapping layers"), and identical layers are common (two
/// `RUN true`, the same COPY twice give the same diffID, hence the same unpacked directory).
/// Dropping the lower copy changes nothing in the merged tree: every path the layer has
/// (file, whiteout, opaque directory) is decided by its topmost copy, and a path it lacks is
/// lacking in the lower copy too. Only the mount changes; the image keeps every layer.
fn lower_stack<'a>(lowers: &'a [PathBuf], need: usize, empty: &'a Path) -> Vec<&'a Path> {
    let mut ls: Vec<&Path> = Vec::with_capacity(lowers.len().max(need));
    for p in lowers.iter().rev() {
        if !ls.contains(&p.as_path()) {
            ls.push(p);
        }
    }
    while ls.len() < need {
        ls.push(empty);
    }
    ls
}

/// Mounts `lowers` (bottom first) at `target`; with `upper` = (upperdir, workdir) read-write,
/// else read-only. `empty` is an empty directory used when there are too few lowers.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    target: &Path,
    empty: &Path,
) -> io::Result<Mounted> {
    let ls = lower_stack(lowers, if upper.is_some() { 1 } else { 2 }, empty);
    for p in ls.iter().chain(upper.iter().flat_map(|(u, w)| [u, w])) {
        let s = p.to_string_lossy();
        if s.contains(',') || s.contains(':') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("overlay path {s:?} contains ',' or ':'"),
            ));
        }
    }
    let mut data = format!(
        "lowerdir={}",
        ls.iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":")
    );
    if let Some((u, w)) = upper {
        // In a user namespace `userxattr` conflicts with redirect_dir=off, which follows
        // redirects when the kernel's redirect_always_follow is on: nofollow there.
        let redirect = if crate::idmap::in_user_namespace() {
            "nofollow"
        } else {
            "off"
        };
        data.push_str(&format!(
            ",upperdir={},workdir={},metacopy=off,redirect_dir={redirect}",
            u.display(),
            w.display()
        ));
    }
    data.push_str(",index=off");
    if crate::idmap::in_user_namespace() {
        // Overlayfs mounted in a user namespace (kernel 5.11+) keeps its opaque marks in
        // user.overlay.* xattrs, the only ones its mounter may write.
        data.push_str(",userxattr");
    }
    let flags = if upper.is_some() {
        MountFlags::empty()
    } else {
        MountFlags::RDONLY
    };
    let cdata = std::ffi::CString::new(data.clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    mount("overlay", target, "overlay", flags, Some(cdata.as_c_str())).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("mount overlay on {} ({data}): {e}", target.display()),
        )
    })?;
    Ok(Mounted {
        target: target.to_path_buf(),
        active: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_named_twice_is_mounted_once_where_it_is_topmost() {
        let p = |s: &str| PathBuf::from(s);
        let empty = Path::new("/e");
        // Bottom first: base, an empty RUN layer twice, a layer, the empty one again.
        let lowers = [p("/base"), p("/nil"), p("/nil"), p("/x"), p("/nil")];
        assert_eq!(
            lower_stack(&lowers, 1, empty),
            [Path::new("/nil"), Path::new("/x"), Path::new("/base")]
        );
        assert_eq!(
            lower_stack(&[p("/a"), p("/a")], 2, empty),
            [Path::new("/a"), Path::new("/e")]
        );
        assert_eq!(
            lower_stack(&[p("/a"), p("/b")], 1, empty),
            [Path::new("/b"), Path::new("/a")]
        );
    }
}
