//! The upper dir a work area's overlay leaves, settled before it becomes a layer (and an
//! unpacked layer of the store, which later builds mount as a lower with either overlay).
//!
//! The kernel's overlayfs and fuse-overlayfs ([`super::fuse`]) record the same step
//! differently ([`crate::image::whiteout`] reads both): fuse-overlayfs may write `.wh.NAME`
//! files where the kernel makes devices, marks every directory it makes opaque (the kernel
//! only one made over a deleted entry, or a new one renamed into a directory of the lower
//! layers), and writes a whiteout for every name of a directory made over a deleted one. Both
//! are settled into one form, the one the kernel's gives for the same result: whiteout devices
//! (or `.wh.` files where the filesystem refuses devices), and only the marks that hide
//! something of the lower layers: an opaque mark stays on a directory a lower layer has (and
//! that no opaque directory above hides already), a whiteout only for a name a lower layer has
//! and no opaque directory hides. The merged tree is unchanged, so the layer means what the
//! step saw, and it is the same bytes whichever overlay made it. Directories keep their
//! times (a mark removed or a device made in one changes nothing the step did).

use crate::image::whiteout::{self, Entry};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// True when `rel` exists in the merged tree of `lowers` (bottom first; their marks in either
/// overlay's form, [`whiteout`]).
fn lower_has(lowers: &[PathBuf], rel: &Path) -> io::Result<bool> {
    Ok(lower_entry(lowers, rel)?.is_some())
}

/// What `rel` is in the merged tree of `lowers` (bottom first): the topmost entry's metadata.
fn lower_entry(lowers: &[PathBuf], rel: &Path) -> io::Result<Option<fs::Metadata>> {
    let parts: Vec<_> = rel.components().collect();
    for layer in lowers.iter().rev() {
        let mut p = layer.clone();
        let mut opaque_above = false;
        for (i, c) in parts.iter().enumerate() {
            p.push(c);
            let md = match fs::symlink_metadata(&p) {
                Ok(md) => md,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => break,
                Err(e) => return Err(e),
            };
            if whiteout::classify(c.as_os_str(), &md) != Entry::Content {
                return Ok(None);
            }
            if i + 1 == parts.len() {
                return Ok(Some(md));
            }
            if !md.is_dir() {
                // A file here hides the directories of the layers below.
                return Ok(None);
            }
            opaque_above |= whiteout::is_opaque_dir(&p)?;
        }
        if opaque_above {
            return Ok(None);
        }
    }
    Ok(None)
}

/// Settles the upper dir at `upper` over `lowers` (bottom first), as the module doc says:
/// `.wh.NAME` files become whiteout devices, the opaque marks (`.wh..wh..opq` files,
/// `user.fuseoverlayfs.opaque`, the overlay's xattr) become the overlay's opaque xattr on the
/// directories that hide something and go elsewhere, whiteouts that hide nothing go, and so
/// do fuse-overlayfs' private xattrs. Where the filesystem refuses whiteout devices or the
/// opaque xattr (a store on overlayfs, which the kernel's overlay cannot stack on anyway),
/// fuse-overlayfs' files stay, which it and the layer writer read.
///
/// With `fuse`, a directory of the lower layers whose entries are still the lower layers'
/// (the same names and types: only copied up) gets the lower directory's mtime back:
/// fuse-overlayfs moves an entry it copies up into its directory, which changes the
/// directory's mtime, where the kernel's copy-up leaves it as it was.
///
/// Returns warnings for the build's log: with `fuse`, a file copied up from a lower layer where
/// it has hard links. fuse-overlayfs 1.10 serves a lower layer's hard links as one inode and
/// copies up the name it holds for it, whichever name a step changed the file through (the
/// kernel's copies up that name): the change may be on another name than the step's.
pub fn settle(upper: &Path, lowers: &[PathBuf], fuse: bool) -> io::Result<Vec<String>> {
    let mut notes = Vec::new();
    settle_dir(upper, Path::new(""), lowers, false, fuse, &mut notes)?;
    Ok(notes)
}

fn settle_dir(
    upper: &Path,
    rel: &Path,
    lowers: &[PathBuf],
    hidden: bool,
    fuse: bool,
    notes: &mut Vec<String>,
) -> io::Result<()> {
    let dir = upper.join(rel);
    let fail = |p: &Path, e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", p.display()));
    let times = fs::symlink_metadata(&dir).map_err(|e| fail(&dir, e))?;
    // An entry of this directory made or removed: its times are put back at the end.
    let mut changed = false;
    let mut opaque = false;
    if !rel.as_os_str().is_empty() {
        let marked = whiteout::is_opaque_dir(&dir).map_err(|e| fail(&dir, e))?;
        opaque = marked && !hidden && lower_has(lowers, rel).map_err(|e| fail(&dir, e))?;
        let want = crate::idmap::opaque_xattr();
        let marks = crate::image::layer::xattrs_named(&dir, |n| {
            whiteout::opaque_xattrs().contains(&n) || whiteout::is_fuse_xattr(n)
        })
        .map_err(|e| fail(&dir, e))?;
        for x in marks.iter().filter(|x| !opaque || *x != want) {
            remove_xattr(&dir, x)?;
        }
        let by_xattr = opaque
            && (marks.iter().any(|x| x == want)
                || rustix::fs::lsetxattr(&dir, want, b"y", rustix::fs::XattrFlags::empty())
                    .is_ok());
        let file = dir.join(whiteout::OPAQUE_FILE);
        let has_file = fs::symlink_metadata(&file).is_ok_and(|m| m.is_file());
        if opaque && !by_xattr && !has_file {
            // A filesystem without the overlay's xattrs: the mark is fuse-overlayfs' file.
            fs::write(&file, "").map_err(|e| fail(&file, e))?;
            changed = true;
        } else if (!opaque || by_xattr) && has_file {
            fs::remove_file(&file).map_err(|e| fail(&file, e))?;
            changed = true;
        }
    }
    let below_hidden = hidden || opaque;
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(|e| fail(&dir, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(|e| fail(&dir, e))?;
    names.sort();
    for name in names {
        let p = dir.join(&name);
        let md = fs::symlink_metadata(&p).map_err(|e| fail(&p, e))?;
        match whiteout::classify(&name, &md) {
            // Settled with its directory, above.
            Entry::OpaqueFile => {}
            Entry::Stray => {
                fs::remove_file(&p).map_err(|e| fail(&p, e))?;
                changed = true;
            }
            Entry::Whiteout(victim) => {
                let keep = !below_hidden
                    && lower_has(lowers, &rel.join(&victim)).map_err(|e| fail(&p, e))?;
                if !keep {
                    fs::remove_file(&p).map_err(|e| fail(&p, e))?;
                    changed = true;
                } else if victim != name && fs::symlink_metadata(dir.join(&victim)).is_err() {
                    // fuse-overlayfs' `.wh.NAME` file becomes the kernel's device where this
                    // filesystem lets us make one (overlayfs does not): the file stays else.
                    let made = rustix::fs::mknodat(
                        rustix::fs::CWD,
                        dir.join(&victim),
                        rustix::fs::FileType::CharacterDevice,
                        rustix::fs::Mode::empty(),
                        0,
                    );
                    if made.is_ok() {
                        fs::remove_file(&p).map_err(|e| fail(&p, e))?;
                        changed = true;
                    }
                }
            }
            Entry::Content => {
                // Only fuse-overlayfs leaves its xattrs on files (one listxattr a file).
                if fuse && !md.file_type().is_symlink() && !md.is_dir() {
                    for x in crate::image::layer::xattrs_named(&p, whiteout::is_fuse_xattr)
                        .map_err(|e| fail(&p, e))?
                    {
                        remove_xattr(&p, &x)?;
                    }
                }
                if md.is_dir() {
                    settle_dir(upper, &rel.join(&name), lowers, below_hidden, fuse, notes)?;
                }
                if fuse && md.is_file() && md.nlink() == 1 {
                    let lower = lower_entry(lowers, &rel.join(&name)).map_err(|e| fail(&p, e))?;
                    if let Some(l) = lower.filter(|l| l.is_file() && l.nlink() > 1) {
                        notes.push(format!(
                            "warning: /{} changed on fuse-overlayfs, where it is one of {} hard \
                             links of a lower layer's file: fuse-overlayfs changes one name of \
                             such a file whichever name a step used (BRIG_BUILD_OVERLAY=kernel \
                             changes the step's)",
                            rel.join(&name).display(),
                            l.nlink()
                        ));
                    }
                }
            }
        }
    }
    let mut mtime = (times.mtime(), times.mtime_nsec());
    if fuse && !opaque && !rel.as_os_str().is_empty() {
        if let Some(lower) = copied_up_only(&dir, rel, lowers).map_err(|e| fail(&dir, e))? {
            mtime = (lower.mtime(), lower.mtime_nsec());
            changed = true;
        }
    }
    if changed {
        let ts = |s: i64, ns: i64| rustix::fs::Timespec {
            tv_sec: s,
            tv_nsec: ns as _,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            &dir,
            &rustix::fs::Timestamps {
                last_access: ts(times.atime(), times.atime_nsec()),
                last_modification: ts(mtime.0, mtime.1),
            },
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| fail(&dir, e.into()))?;
    }
    Ok(())
}

/// The lower layers' directory `rel` (settled upper dir `dir`) when every entry of `dir` is one
/// the lower directory has too, of the same type: the step only copied entries up.
fn copied_up_only(dir: &Path, rel: &Path, lowers: &[PathBuf]) -> io::Result<Option<fs::Metadata>> {
    let Some(lower) = lower_entry(lowers, rel)?.filter(|m| m.is_dir()) else {
        return Ok(None);
    };
    for e in fs::read_dir(dir)? {
        let e = e?;
        let md = e.metadata()?;
        if whiteout::classify(&e.file_name(), &md) != Entry::Content {
            return Ok(None);
        }
        let same = lower_entry(lowers, &rel.join(e.file_name()))?
            .is_some_and(|l| l.file_type() == md.file_type());
        if !same {
            return Ok(None);
        }
    }
    Ok(Some(lower))
}

fn remove_xattr(p: &Path, name: &str) -> io::Result<()> {
    match rustix::fs::lremovexattr(p, name) {
        Ok(()) | Err(rustix::io::Errno::NODATA) => Ok(()),
        Err(e) => Err(io::Error::new(
            io::Error::from(e).kind(),
            format!("removing {name} of {}: {e}", p.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn whiteout_at(p: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap();
    }

    /// Makes each file of `files` (and its parents) below `dir`, holding `content`.
    fn make(dir: &Path, files: &[&str], content: &str) {
        for f in files {
            let p = dir.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
    }

    fn is_whiteout(p: &Path) -> bool {
        fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
    }

    #[test]
    fn a_fuse_upper_dir_settles_into_the_kernels_form() {
        let t = tempfile::tempdir().unwrap();
        let (low, up) = (t.path().join("low"), t.path().join("up"));
        // The lower layer: /a, /d/sub/f, /keep/x, /keep/y.
        make(&low, &["a", "d/sub/f", "keep/x", "keep/y"], "l");
        // What fuse-overlayfs left for: rm /a /keep/x; rm -rf /d && mkdir /d && touch /d/new;
        // mkdir /n (new: marked opaque by fuse-overlayfs, not by the kernel); rm /keep/y
        // where it could not mknod (a `.wh.` file); a whiteout of what no layer has.
        fs::create_dir_all(up.join("d")).unwrap();
        fs::create_dir_all(up.join("n/m")).unwrap();
        fs::create_dir_all(up.join("keep")).unwrap();
        whiteout_at(&up.join("a"));
        whiteout_at(&up.join("keep/x"));
        fs::write(up.join("keep/.wh.y"), "").unwrap();
        whiteout_at(&up.join("ghost"));
        whiteout_at(&up.join("d/sub"));
        whiteout_at(&up.join("d/.wh..opq"));
        fs::write(up.join("d/new"), "").unwrap();
        for d in ["d", "n", "n/m"] {
            fs::write(up.join(d).join(whiteout::OPAQUE_FILE), "").unwrap();
        }
        let xattrs = rustix::fs::setxattr(
            up.join("d/new"),
            "user.fuseoverlayfs.origin",
            b"x",
            rustix::fs::XattrFlags::empty(),
        );
        settle(&up, std::slice::from_ref(&low), true).unwrap();
        assert!(is_whiteout(&up.join("a")) && is_whiteout(&up.join("keep/x")));
        assert!(is_whiteout(&up.join("keep/y")) && !up.join("keep/.wh.y").exists());
        assert!(!up.join("ghost").exists(), "a whiteout of nothing stays");
        let opaque = |d: &str| {
            crate::image::layer::xattr_value(&up.join(d), crate::idmap::opaque_xattr())
                .unwrap()
                .is_some()
        };
        if xattrs.is_ok() || rustix::process::geteuid().is_root() {
            assert!(
                opaque("d"),
                "the directory made over a deleted one is opaque"
            );
            assert!(crate::image::layer::xattrs(&up.join("d/new"))
                .unwrap()
                .is_empty());
        }
        assert!(
            !opaque("n") && !opaque("n/m"),
            "new directories are not opaque"
        );
        let left: Vec<_> = fs::read_dir(up.join("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["new"], "the opaque directory holds only its content");
        assert!(!up.join("n").join(whiteout::OPAQUE_FILE).exists());
    }

    #[test]
    fn lower_paths_are_looked_up_through_whiteouts_and_opaque_dirs() {
        let t = tempfile::tempdir().unwrap();
        let (l0, l1) = (t.path().join("0"), t.path().join("1"));
        make(&l0, &["d/a", "d/b", "e/c", "f"], "");
        fs::create_dir_all(l1.join("d")).unwrap();
        fs::write(l1.join("d/new"), "").unwrap();
        whiteout_at(&l1.join("e"));
        fs::write(l1.join("d").join(whiteout::OPAQUE_FILE), "").unwrap();
        let lowers = [l0, l1];
        let has = |p: &str| lower_has(&lowers, Path::new(p)).unwrap();
        assert!(has("d") && has("d/new") && has("f"));
        assert!(!has("d/a"), "hidden by the opaque d above");
        assert!(!has("e") && !has("e/c"), "deleted above");
        assert!(!has("g") && !has("f/x"));
    }

    fn set_mtime(p: &Path, secs: i64) {
        let t = rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            p,
            &rustix::fs::Timestamps {
                last_access: t,
                last_modification: t,
            },
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }

    fn mtime(p: &Path) -> i64 {
        fs::symlink_metadata(p).unwrap().mtime()
    }

    #[test]
    fn directories_keep_the_times_the_kernels_overlay_gives() {
        let t = tempfile::tempdir().unwrap();
        let (low, up) = (t.path().join("low"), t.path().join("up"));
        make(&low, &["a/x", "b/y"], "l");
        set_mtime(&low.join("a"), 1000);
        // a: x copied up and changed (fuse-overlayfs moved it in: a's mtime is now's);
        // b: z made (a real change); n: new, with fuse-overlayfs' opaque file.
        make(&up, &["a/x", "b/z", "n/.wh..wh..opq"], "u");
        set_mtime(&up.join("b"), 2000);
        set_mtime(&up.join("n"), 3000);
        let kernel = t.path().join("kernel");
        fs::create_dir_all(kernel.join("a")).unwrap();
        fs::write(kernel.join("a/x"), "u").unwrap();
        set_mtime(&kernel.join("a"), 4000);
        settle(&up, std::slice::from_ref(&low), true).unwrap();
        assert_eq!(
            mtime(&up.join("a")),
            1000,
            "only copied up: the lower's time"
        );
        assert_eq!(mtime(&up.join("b")), 2000, "changed by the step: its time");
        assert_eq!(mtime(&up.join("n")), 3000, "a mark removed changes no time");
        assert!(!up.join("n/.wh..wh..opq").exists());
        // The kernel's: its times are left as they are; a directory it marked opaque where no
        // lower layer has one (a new directory renamed into a lower one's) loses the mark.
        fs::create_dir_all(kernel.join("a/renamed")).unwrap();
        let marked = rustix::fs::setxattr(
            kernel.join("a/renamed"),
            crate::idmap::opaque_xattr(),
            b"y",
            rustix::fs::XattrFlags::empty(),
        );
        set_mtime(&kernel.join("a"), 4000);
        settle(&kernel, std::slice::from_ref(&low), false).unwrap();
        assert_eq!(mtime(&kernel.join("a")), 4000);
        if marked.is_ok() {
            assert!(!whiteout::is_opaque_dir(&kernel.join("a/renamed")).unwrap());
        }
    }

    #[test]
    fn a_copied_up_hard_link_of_a_lower_file_is_warned_of_on_fuse() {
        let t = tempfile::tempdir().unwrap();
        let (low, up) = (t.path().join("low"), t.path().join("up"));
        make(&low, &["d/new", "d/other"], "l");
        fs::hard_link(low.join("d/new"), low.join("d/hard")).unwrap();
        make(&up, &["d/hard", "d/other"], "u");
        let notes = settle(&up, std::slice::from_ref(&low), true).unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("/d/hard") && notes[0].contains("2 hard links"));
        // The kernel's overlay copies up the name a step used: nothing to say.
        assert!(settle(&up, std::slice::from_ref(&low), false)
            .unwrap()
            .is_empty());
    }
}
