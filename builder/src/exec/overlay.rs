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
//!
//! Which overlay: `BRIG_BUILD_OVERLAY` ([`OVERLAY_ENV`]) is `kernel`, `fuse` (fuse-overlayfs,
//! [`super::fuse`]) or `auto` (the default): the kernel's first; where it refuses the mount
//! (EPERM, EINVAL, ENODEV: an older kernel, a user namespace it does not allow overlayfs in,
//! a store on a filesystem it cannot stack) fuse-overlayfs, for that mount and every later
//! one of the process. When both fail the error names both and what to change. A read-write
//! mount's upper dir is settled when it is unmounted ([`super::upper::settle`]), so layers and
//! the store are the same whichever overlay made them.

use super::fuse;
use rustix::io::Errno;
use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

/// The environment variable that chooses the overlay: `kernel`, `fuse` or `auto`.
pub const OVERLAY_ENV: &str = "BRIG_BUILD_OVERLAY";

/// Which overlay [`OVERLAY_ENV`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The kernel's, else fuse-overlayfs where the kernel refuses it.
    Auto,
    Kernel,
    Fuse,
}

/// Parses a value of [`OVERLAY_ENV`] (empty is `auto`).
pub fn parse_choice(v: &str) -> Result<Choice, String> {
    match v {
        "" | "auto" => Ok(Choice::Auto),
        "kernel" => Ok(Choice::Kernel),
        "fuse" => Ok(Choice::Fuse),
        _ => Err(format!(
            "{OVERLAY_ENV}={v:?}: expected kernel, fuse or auto (the default)"
        )),
    }
}

/// The overlay [`OVERLAY_ENV`] asks for, read once; an error names the variable.
pub fn choice() -> Result<Choice, String> {
    static C: OnceLock<Result<Choice, String>> = OnceLock::new();
    C.get_or_init(|| parse_choice(&std::env::var(OVERLAY_ENV).unwrap_or_default()))
        .clone()
}

/// What `auto` found: 0 nothing yet, [`KERNEL`] or [`FUSE`].
static FOUND: AtomicU8 = AtomicU8::new(0);
const KERNEL: u8 = 1;
const FUSE: u8 = 2;

/// Lines for the build's log, until taken: the one saying fuse-overlayfs is used (once), the
/// warnings of settled upper dirs.
static NOTES: Mutex<Vec<String>> = Mutex::new(Vec::new());
static NOTED: AtomicBool = AtomicBool::new(false);

fn note(msg: String) {
    if !NOTED.swap(true, Ordering::Relaxed) {
        NOTES.lock().unwrap_or_else(|e| e.into_inner()).push(msg);
    }
}

/// The lines for the build's log since the last call: which overlay this process falls back
/// to (once), warnings about what a step left on fuse-overlayfs.
pub fn take_notes() -> Vec<String> {
    std::mem::take(&mut *NOTES.lock().unwrap_or_else(|e| e.into_inner()))
}

/// A mounted overlay; unmounted (lazily) on drop unless [`Mounted::unmount`] was called.
pub struct Mounted {
    target: PathBuf,
    active: bool,
    /// The fuse-overlayfs daemon serving it.
    fuse: Option<fuse::Daemon>,
    /// A read-write mount's upper dir and lowers (bottom first), to settle after the unmount.
    settle: Option<(PathBuf, Vec<PathBuf>)>,
}

impl Mounted {
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Unmounts now, reporting errors; a fuse-overlayfs mount's daemon is waited for, a
    /// read-write mount's upper dir settled ([`super::upper::settle`]).
    ///
    /// While stages run in parallel, a runtime another stage is starting holds, for a moment,
    /// copies of this process's file descriptors (between its fork and exec), some of which may
    /// point into this mount, making it busy (seen: EBUSY for up to ~120 ms on a loaded host);
    /// so EBUSY is retried for up to 0.5 s, then the mount is detached (the step's processes
    /// are gone, nothing writes to it any more).
    pub fn unmount(mut self) -> io::Result<()> {
        if let Some(d) = self.fuse.as_mut() {
            // Dropped: detached, and the daemon's remains reaped.
            d.check_alive()?;
        }
        self.active = false;
        let shown = |e: Errno| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("umount {}: {e}", self.target.display()),
            )
        };
        let mut i = 0;
        loop {
            match unmount(&self.target, UnmountFlags::empty()) {
                Ok(()) => break,
                Err(Errno::BUSY) if i < 50 => {
                    i += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(Errno::BUSY) => {
                    unmount(&self.target, UnmountFlags::DETACH).map_err(shown)?;
                    break;
                }
                Err(e) => return Err(shown(e)),
            }
        }
        let fuse = self.fuse.take();
        let by_fuse = fuse.is_some();
        if let Some(d) = fuse {
            d.wait()?;
        }
        if let Some((upper, lowers)) = self.settle.take() {
            let warnings = super::upper::settle(&upper, &lowers, by_fuse)?;
            NOTES
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(warnings);
        }
        Ok(())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // A fuse daemon still here: its mount may be too (an unmount that failed).
        if self.active || self.fuse.is_some() {
            let _ = unmount(&self.target, UnmountFlags::DETACH);
        }
        // A fuse daemon still running is killed (and reaped) as `fuse` drops.
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
/// else read-only. `empty` is an empty directory used when there are too few lowers. The
/// overlay is the one [`OVERLAY_ENV`] asks for (see the module doc).
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
    let choice = choice().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mounted = |fuse| Mounted {
        target: target.to_path_buf(),
        active: true,
        fuse,
        settle: upper.map(|(u, _)| (u.to_path_buf(), lowers.to_vec())),
    };
    let by_fuse = || -> io::Result<Mounted> { Ok(mounted(Some(fuse::mount(&ls, upper, target)?))) };
    let kernel_mounted = || mounted(None);
    match choice {
        Choice::Kernel => {
            mount_kernel(&ls, upper, target).map_err(|(errno, e)| match errno {
                Some(Errno::PERM | Errno::INVAL | Errno::NODEV) => io::Error::new(
                    e.kind(),
                    format!(
                        "{} ({OVERLAY_ENV}=kernel: unset it to fall back to fuse-overlayfs)",
                        errno_of(&e)
                    ),
                ),
                _ => e,
            })?;
            Ok(kernel_mounted())
        }
        Choice::Fuse => {
            let m = by_fuse().map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "mount fuse-overlayfs on {} ({OVERLAY_ENV}=fuse): {e}: {}, or unset \
                         {OVERLAY_ENV} to use the kernel's overlayfs",
                        target.display(),
                        fuse_needs()
                    ),
                )
            })?;
            note(format!(
                "overlay: fuse-overlayfs ({OVERLAY_ENV}=fuse) for the steps' root"
            ));
            Ok(m)
        }
        Choice::Auto if FOUND.load(Ordering::Relaxed) == FUSE => by_fuse().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "mount fuse-overlayfs on {} (the kernel's overlayfs refused an earlier \
                     mount of this build): {e}: {}",
                    target.display(),
                    fuse_needs()
                ),
            )
        }),
        Choice::Auto => match mount_kernel(&ls, upper, target) {
            Ok(()) => {
                FOUND.store(KERNEL, Ordering::Relaxed);
                Ok(kernel_mounted())
            }
            Err((Some(Errno::PERM | Errno::INVAL | Errno::NODEV), ke)) => match by_fuse() {
                Ok(m) => {
                    FOUND.store(FUSE, Ordering::Relaxed);
                    note(format!(
                        "overlay: fuse-overlayfs for the steps' root: the kernel's overlayfs \
                         refused it ({})",
                        errno_of(&ke)
                    ));
                    Ok(m)
                }
                Err(fe) => Err(io::Error::new(ke.kind(), both_failed(target, &ke, &fe))),
            },
            Err((_, e)) => Err(e),
        },
    }
}

/// What fuse-overlayfs needs, for errors.
fn fuse_needs() -> String {
    format!(
        "it needs {} in PATH (Debian's package fuse-overlayfs) and a usable /dev/fuse (in a \
         container: its device, e.g. --device /dev/fuse)",
        fuse::PROGRAM
    )
}

/// The error of a mount neither overlay made: both attempts and what to change.
fn both_failed(target: &Path, kernel: &io::Error, fuse: &io::Error) -> String {
    format!(
        "no overlay could be mounted on {}: the kernel's overlayfs refused it ({}), and \
         fuse-overlayfs, the fallback, failed ({fuse}): a build needs either the kernel's \
         overlayfs (Linux 5.11 or later for a plain user's build; in a container, a seccomp \
         profile and LSM that allow mount, and a store, --store, on a filesystem it stacks \
         on: not overlayfs) or fuse-overlayfs: {}",
        target.display(),
        errno_of(kernel),
        fuse_needs()
    )
}

/// The errno text at the end of a kernel mount error (its mount data can be pages long).
fn errno_of(e: &io::Error) -> String {
    let s = e.to_string();
    match s.rsplit_once("): ") {
        Some((head, errno)) => format!("{}: {errno}", head.split(" (").next().unwrap_or(head)),
        None => s,
    }
}

/// The kernel's overlayfs at `target`; an error carries the mount's errno where that failed.
fn mount_kernel(
    ls: &[&Path],
    upper: Option<(&Path, &Path)>,
    target: &Path,
) -> Result<(), (Option<Errno>, io::Error)> {
    let other = |e: io::Error| (None, e);
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
    let fail = |data: &str, e: Errno| {
        (
            Some(e),
            io::Error::new(
                e.kind(),
                format!("mount overlay on {} ({data}): {e}", target.display()),
            ),
        )
    };
    if data.len() <= MAX_MOUNT_DATA {
        mount(
            "overlay",
            target,
            "overlay",
            flags,
            Some(cstring(&data).map_err(other)?.as_c_str()),
        )
        .map_err(|e| fail(&data, e))?;
    } else {
        let short = lowerdir(&mut (0..ls.len()).map(|i| i.to_string()));
        if short.len() > MAX_MOUNT_DATA {
            return Err(other(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "mount overlay on {}: {} lower layers are more than one page of mount \
                     options holds (the most is about 1000)",
                    target.display(),
                    ls.len()
                ),
            )));
        }
        let parent = target.parent().unwrap_or(Path::new("/"));
        let links = tempfile::Builder::new()
            .prefix(".lowers-")
            .tempdir_in(parent)
            .map_err(|e| {
                other(io::Error::new(
                    e.kind(),
                    format!("{}: {e}", parent.display()),
                ))
            })?;
        for (i, p) in ls.iter().enumerate() {
            std::os::unix::fs::symlink(p, links.path().join(i.to_string())).map_err(other)?;
        }
        let (dir, target_owned, cdata) = (
            links.path().to_path_buf(),
            target.to_path_buf(),
            cstring(&short).map_err(other)?,
        );
        std::thread::scope(|s| {
            s.spawn(move || -> Result<(), Errno> {
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
            .unwrap_or(Err(Errno::INTR))
        })
        .map_err(|e| fail(&format!("{data} through {short}"), e))?;
    }
    Ok(())
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
    fn the_overlay_setting_is_parsed_and_errors_name_both_attempts() {
        assert_eq!(parse_choice(""), Ok(Choice::Auto));
        assert_eq!(parse_choice("auto"), Ok(Choice::Auto));
        assert_eq!(parse_choice("kernel"), Ok(Choice::Kernel));
        assert_eq!(parse_choice("fuse"), Ok(Choice::Fuse));
        let e = parse_choice("fuse-overlayfs").unwrap_err();
        assert!(e.contains("BRIG_BUILD_OVERLAY=\"fuse-overlayfs\"") && e.contains("kernel, fuse"));
        let kernel = io::Error::new(
            io::ErrorKind::InvalidInput,
            "mount overlay on /s/merged (lowerdir=/a:/b,upperdir=/u): Invalid argument",
        );
        let fuse = io::Error::new(io::ErrorKind::NotFound, "fuse-overlayfs not found in PATH");
        let msg = both_failed(Path::new("/s/merged"), &kernel, &fuse);
        assert!(
            msg.contains("refused it (mount overlay on /s/merged: Invalid argument)")
                && msg.contains("fuse-overlayfs not found in PATH")
                && msg.contains("Debian's package fuse-overlayfs")
                && msg.contains("/dev/fuse")
                && !msg.contains("lowerdir"),
            "{msg}"
        );
    }

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
