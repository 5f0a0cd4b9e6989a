//! overlayfs mounts of a stage's layers: read-write (lower = parent layers, upper = the new
//! layer) for RUN/COPY/ADD, read-only for reading another stage (COPY --from).
//!
//! Owns the mount options: `index=off` (layers are reused across mounts), `metacopy=off` (an
//! upper file must hold its data, it becomes a layer) and `redirect_dir=off` (a renamed lower
//! directory must be copied up whole, layers have no redirects); in a user namespace (a plain
//! user's build) `userxattr` and `redirect_dir=nofollow`. A [`Mounted`] unmounts when
//! dropped, so an error path never leaves a mount behind.
//!
//! Mount data is limited to one page: with the store's absolute layer paths (~100 bytes each)
//! that is about 40 layers, and images and Dockerfiles have more (BuildKit takes up to the
//! kernel's 500). A longer `lowerdir` goes through a directory of numbered symlinks to the layers,
//! named relative to it from a thread of ours that has its own working directory
//! (`unshare(CLONE_FS)`, so the process's stays): `lowerdir=0:1:2:...`. overlayfs resolves the
//! names when it mounts; the links are removed right after.

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
    let userns = crate::idmap::in_user_namespace();
    let lowerdir = |names: &mut dyn Iterator<Item = String>| {
        let mut data = format!("lowerdir={}", names.collect::<Vec<_>>().join(":"));
        if let Some((u, w)) = upper {
            // In a user namespace `userxattr` conflicts with redirect_dir=off, which follows
            // redirects when the kernel's redirect_always_follow is on: nofollow there.
            let redirect = if userns { "nofollow" } else { "off" };
            data.push_str(&format!(
                ",upperdir={},workdir={},metacopy=off,redirect_dir={redirect}",
                u.display(),
                w.display()
            ));
        }
        data.push_str(",index=off");
        if userns {
            // Overlayfs mounted in a user namespace (kernel 5.11+) keeps its opaque marks in
            // user.overlay.* xattrs, the only ones its mounter may write.
            data.push_str(",userxattr");
        }
        data
    };
    let data = lowerdir(&mut ls.iter().map(|p| p.to_string_lossy().into_owned()));
    let flags = if upper.is_some() {
        MountFlags::empty()
    } else {
        MountFlags::RDONLY
    };
    let fail = |data: &str, e: rustix::io::Errno| {
        io::Error::new(
            e.kind(),
            format!("mount overlay on {} ({data}): {e}", target.display()),
        )
    };
    if data.len() <= MAX_MOUNT_DATA {
        mount(
            "overlay",
            target,
            "overlay",
            flags,
            Some(cstring(&data)?.as_c_str()),
        )
        .map_err(|e| fail(&data, e))?;
    } else {
        let short = lowerdir(&mut (0..ls.len()).map(|i| i.to_string()));
        if short.len() > MAX_MOUNT_DATA {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "mount overlay on {}: {} lower layers are more than one page of mount \
                     options holds (the most is about 1000)",
                    target.display(),
                    ls.len()
                ),
            ));
        }
        let parent = target.parent().unwrap_or(Path::new("/"));
        let links = tempfile::Builder::new()
            .prefix(".lowers-")
            .tempdir_in(parent)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", parent.display())))?;
        for (i, p) in ls.iter().enumerate() {
            std::os::unix::fs::symlink(p, links.path().join(i.to_string()))?;
        }
        let (dir, target_owned, cdata) = (
            links.path().to_path_buf(),
            target.to_path_buf(),
            cstring(&short)?,
        );
        std::thread::scope(|s| {
            s.spawn(move || -> Result<(), rustix::io::Errno> {
                // SAFETY: CLONE_FS only gives this thread its own cwd, root and umask; nothing
                // else in the process reads this thread's.
                unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS)? };
                rustix::process::chdir(&dir)?;
                mount(
                    "overlay",
                    &target_owned,
                    "overlay",
                    flags,
                    Some(cdata.as_c_str()),
                )
            })
            .join()
            .unwrap_or(Err(rustix::io::Errno::INTR))
        })
        .map_err(|e| fail(&format!("{data} through {short}"), e))?;
    }
    Ok(Mounted {
        target: target.to_path_buf(),
        active: true,
    })
}

/// The most mount data the kernel takes: one page, its NUL included.
const MAX_MOUNT_DATA: usize = 4095;

fn cstring(s: &str) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(s).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
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
