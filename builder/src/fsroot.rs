//! Paths resolved inside a directory tree that may be hostile: an image rootfs, a layer being
//! unpacked, the build context.
//!
//! Owns every lookup that follows a path we did not write: each goes through `openat2(2)` with
//! `RESOLVE_IN_ROOT`, so `..` and absolute symlinks stop at the root instead of reaching the
//! host (the kernel does the scoping; a user-space resolver would race with a RUN step or a
//! layer that swaps a directory for a symlink). Final components are then created with `*at`
//! calls and `O_NOFOLLOW` relative to the resolved parent. It never follows a final symlink when
//! creating.

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// A directory every lookup is scoped to.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV
}

impl Root {
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = rfs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `rel` (relative or absolute, meaning inside the root) with `flags`, symlinks
    /// resolved inside the root.
    pub fn open_at(&self, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
        let rel = inner(rel);
        let rel: &Path = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &rel
        };
        // Retried on EAGAIN: with RESOLVE_IN_ROOT the kernel gives up on a lookup through ".."
        // when any rename or mount happens anywhere on the system meanwhile.
        let mut tries = 0;
        loop {
            match rfs::openat2(
                &self.fd,
                rel,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                resolve_flags(),
            ) {
                Err(rustix::io::Errno::AGAIN) if tries < 1000 => tries += 1,
                r => break r,
            }
        }
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("open {} in {}: {e}", rel.display(), self.path.display()),
            )
        })
    }

    /// Opens the directory `rel` for `*at` calls.
    pub fn dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        self.open_at(rel, OFlags::DIRECTORY | OFlags::RDONLY)
    }

    /// Opens the directory `rel`, creating missing components (mode `mode`, owner root). A
    /// component that exists and is not a directory (after in-root symlink resolution) is an
    /// error. Returns the directory fd and the components that were created.
    pub fn mkdir_all(&self, rel: &Path, mode: u32) -> io::Result<(OwnedFd, Vec<PathBuf>)> {
        let rel = inner(rel);
        let mut created = Vec::new();
        let mut cur = PathBuf::new();
        let mut fd = self.dir(Path::new("."))?;
        for c in rel.components() {
            let Component::Normal(name) = c else { continue };
            cur.push(name);
            match self.dir(&cur) {
                Ok(f) => fd = f,
                Err(e) if e.kind() == io::ErrorKind::NotFound && is_symlink(&fd, name) => {
                    return Err(self.through_symlink(&fd, name, &cur, e))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match rfs::mkdirat(&fd, name, Mode::from_raw_mode(mode)) {
                        Ok(()) => created.push(cur.clone()),
                        Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => {
                            return Err(io::Error::new(
                                e.kind(),
                                format!("mkdir {} in {}: {e}", cur.display(), self.path.display()),
                            ))
                        }
                    }
                    // mkdir ignores the umask only via fchmod.
                    let f = self.dir(&cur)?;
                    rfs::fchmod(&f, Mode::from_raw_mode(mode))?;
                    fd = f;
                }
                Err(e) if is_symlink(&fd, name) => {
                    return Err(self.through_symlink(&fd, name, &cur, e))
                }
                Err(e) => return Err(e),
            }
        }
        Ok((fd, created))
    }

    /// The error for a path whose component `cur` (`name` in `parent`) is a symlink that does
    /// not lead to a directory inside the root: it names the symlink and its target, where the
    /// bare lookup error ("open x in ...: No such file or directory") hid that a link was
    /// followed at all.
    fn through_symlink(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        cur: &Path,
        e: io::Error,
    ) -> io::Error {
        let target = rfs::readlinkat(parent, name, Vec::new())
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default();
        let why = match e.kind() {
            io::ErrorKind::NotFound => "which does not exist",
            io::ErrorKind::NotADirectory => "which is not a directory",
            _ => "which does not lead to a directory",
        };
        io::Error::new(
            e.kind(),
            format!(
                "the path goes through symlink {} -> {target:?}, {why} in {} (followed inside it)",
                cur.display(),
                self.path.display()
            ),
        )
    }

    /// `rel` as an absolute path inside the root with every symlink followed, the final one
    /// included, as BuildKit resolves a COPY or ADD destination (its `fs.RootPath`): absolute
    /// targets restart at the root, `..` stops there, and components that do not exist (a
    /// dangling link's target) are kept as written. The result is still opened with
    /// [`Root::open_at`] by callers, so a tree changed meanwhile cannot lead outside the root.
    pub fn resolve(&self, rel: &Path) -> io::Result<PathBuf> {
        let mut todo: Vec<std::ffi::OsString> = inner(rel)
            .components()
            .rev()
            .map(|c| c.as_os_str().to_os_string())
            .collect();
        let mut out = PathBuf::from("/");
        let mut links = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                out.pop();
                continue;
            }
            let cand = out.join(&c);
            let target = self
                .dir(&out)
                .ok()
                .and_then(|d| rfs::readlinkat(&d, c.as_os_str(), Vec::new()).ok());
            let Some(target) = target else {
                out = cand;
                continue;
            };
            links += 1;
            if links > 255 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{}: too many levels of symbolic links in {}",
                        rel.display(),
                        self.path.display()
                    ),
                ));
            }
            let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
            if target.is_absolute() {
                out = PathBuf::from("/");
            }
            todo.extend(
                target
                    .components()
                    .rev()
                    .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
                    .map(|c| c.as_os_str().to_os_string()),
            );
        }
        Ok(out)
    }

    /// True if `rel` is a directory (symlinks followed inside the root).
    pub fn is_dir(&self, rel: &Path) -> bool {
        self.open_at(rel, OFlags::DIRECTORY | OFlags::PATH).is_ok()
    }

    /// The directory `rel` (resolved inside this root) as a root of its own: what an ADD'ed
    /// archive is extracted into, so its links cannot lead outside the destination.
    pub fn sub(&self, rel: &Path) -> io::Result<Root> {
        let fd = self.dir(rel)?;
        let path = fd_path(&fd)?;
        Ok(Root { fd, path })
    }

    /// The paths below the root that `pat` (`/`-separated, `*`, `?`, `[...]` in any segment)
    /// matches, sorted by name within each directory; a segment without wildcards is taken
    /// as is. Only paths that exist are returned.
    pub fn glob(&self, pat: &str) -> io::Result<Vec<PathBuf>> {
        let mut cur = vec![PathBuf::new()];
        for seg in pat.split('/').filter(|s| !s.is_empty() && *s != ".") {
            let mut next = Vec::new();
            for base in &cur {
                if !seg.contains(['*', '?', '[']) {
                    next.push(base.join(seg));
                    continue;
                }
                let Ok(real) = self.real_path(base) else {
                    continue;
                };
                let Ok(rd) = fs::read_dir(&real) else {
                    continue;
                };
                let mut names: Vec<String> = rd
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| crate::dockerfile::ignore::glob(seg.as_bytes(), n.as_bytes()))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| base.join(n)));
            }
            cur = next;
        }
        Ok(cur
            .into_iter()
            .filter(|p| self.open_at(p, OFlags::PATH).is_ok())
            .collect())
    }

    /// The real host path of `rel` after in-root resolution (for tools that want a path, such
    /// as directory walks). Only meaningful while nobody else modifies the tree.
    pub fn real_path(&self, rel: &Path) -> io::Result<PathBuf> {
        let fd = self.open_at(rel, OFlags::PATH)?;
        fd_path(&fd)
    }
}

/// True if `name` in `dir` is a symlink (not followed).
fn is_symlink(dir: &OwnedFd, name: &OsStr) -> bool {
    rfs::statat(dir, name, rfs::AtFlags::SYMLINK_NOFOLLOW)
        .map(|st| rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Symlink)
        .unwrap_or(false)
}

/// The path of an open fd (readlink of /proc/self/fd/N).
pub fn fd_path(fd: &impl AsFd) -> io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

/// `rel` with root, `.` and prefix components removed (`..` is kept: openat2 scopes it).
pub fn inner(rel: &Path) -> PathBuf {
    rel.components()
        .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
        .collect()
}

/// Removes `name` in `dir` whatever it is (a directory recursively). Missing is fine.
/// Opens the directory `name` of `dir` without following a symlink there.
pub fn open_dir_at<P: rustix::path::Arg>(dir: impl AsFd, name: P) -> io::Result<OwnedFd> {
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rfs::openat(dir, name, flags, Mode::empty())?)
}

pub fn remove_at(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    match rfs::unlinkat(dir, name, rfs::AtFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(rustix::io::Errno::ISDIR) => {
            let sub = open_dir_at(dir, name)?;
            let p = fd_path(&sub)?;
            std::fs::remove_dir_all(&p)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn resolve_follows_every_link_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("real/sub")).unwrap();
        symlink("/real", d.path().join("abs")).unwrap();
        symlink("abs/sub", d.path().join("chain")).unwrap();
        symlink("../../../../made", d.path().join("real/up")).unwrap();
        symlink("/nowhere/x", d.path().join("dangling")).unwrap();
        symlink("loop", d.path().join("loop")).unwrap();
        let root = Root::open(d.path()).unwrap();
        let r = |p: &str| root.resolve(Path::new(p)).unwrap();
        assert_eq!(r("/chain/f"), Path::new("/real/sub/f"));
        assert_eq!(r("chain"), Path::new("/real/sub"));
        assert_eq!(r("/real/up"), Path::new("/made"), ".. stops at the root");
        assert_eq!(r("/dangling"), Path::new("/nowhere/x"));
        assert_eq!(r("/abs/../x"), Path::new("/x"));
        assert!(root.resolve(Path::new("/loop/a")).is_err());
    }

    #[test]
    fn mkdir_all_through_a_symlink_that_leads_nowhere_names_the_symlink() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("plain"), "p").unwrap();
        symlink("/somewhere", d.path().join("x")).unwrap();
        symlink("plain", d.path().join("y")).unwrap();
        let root = Root::open(d.path()).unwrap();
        let e = root.mkdir_all(Path::new("x/sub"), 0o755).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "the path goes through symlink x -> \"/somewhere\", which does not exist in "
            ),
            "{e}"
        );
        let e = root.mkdir_all(Path::new("/y/sub"), 0o755).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "the path goes through symlink y -> \"plain\", which is not a directory in "
            ),
            "{e}"
        );
        // Nothing was made where the links point.
        assert!(!d.path().join("somewhere").exists());
        // A link to a directory is followed, inside the root.
        std::fs::create_dir(d.path().join("real")).unwrap();
        symlink("/real", d.path().join("z")).unwrap();
        let (_, made) = root.mkdir_all(Path::new("z/new"), 0o755).unwrap();
        assert_eq!(made, [PathBuf::from("z/new")]);
        assert!(d.path().join("real/new").is_dir());
    }
}
