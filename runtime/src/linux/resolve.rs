//! Path resolution inside the container's root filesystem.
//!
//! Every path that comes from config.json and lands inside the rootfs (mount
//! destinations, device nodes, masked paths, the cwd) is resolved here with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, one component at a
//! time for creation, so a symlink in the rootfs can never lead outside it
//! (CVE-2021-30465 and its kin). Callers then act through the returned fd
//! (`/proc/self/fd/N`), never through the path again.
//!
//! Hand-written rather than libpathrs: the few operations we need (open,
//! mkdir -p, create a file) are a screenful on top of openat2, and libpathrs
//! would add a C library to the build.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{mkdirat, Mode};

use crate::error::{Error, Result, SysContext};

fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// openat2(2), retried on EAGAIN: with RESOLVE_IN_ROOT or RESOLVE_BENEATH the
/// kernel gives up on a lookup through ".." when any rename or mount happens
/// anywhere on the system meanwhile, and expects the caller to try again.
pub fn openat2<P: ?Sized + nix::NixPath, Fd: std::os::fd::AsFd>(
    dirfd: Fd,
    path: &P,
    how: OpenHow,
) -> nix::Result<OwnedFd> {
    let mut tries = 0;
    loop {
        match nix::fcntl::openat2(dirfd.as_fd(), path, how) {
            Err(Errno::EAGAIN) if tries < 1000 => tries += 1,
            r => return r,
        }
    }
}

/// The relative form of an absolute path inside the root ("" for "/").
fn rel(path: &Path) -> &Path {
    path.strip_prefix("/").unwrap_or(path)
}

/// Opens `path` (absolute, inside `root`) with `flags`, never leaving `root`.
pub fn open_in_root(root: BorrowedFd, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let r = rel(path);
    let r = if r.as_os_str().is_empty() {
        Path::new(".")
    } else {
        r
    };
    openat2(root, r, how(flags))
}

/// `mkdir -p` of `path` inside `root`; returns an O_PATH fd of the directory.
/// Existing symlinks on the way are followed, but only within `root`; a
/// dangling one gets its target created inside `root` (what a lexical
/// secure join followed by `mkdir -p` does in runc).
///
/// Most paths exist already, or all but their last component (the mount points of a
/// runtime's default mounts): those take one or three calls, each resolved within `root` as
/// the walk resolves them, instead of two per component; anything else (a symlink on the
/// way, a dangling one, `..`) takes the walk.
pub fn mkdir_all_in_root(root: BorrowedFd, path: &Path, mode: u32) -> Result<OwnedFd> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
    if let Ok(fd) = open_in_root(root, path, flags) {
        return Ok(fd);
    }
    if let (Some(parent), Some(name)) = (path.parent(), path.file_name()) {
        if let Ok(up) = open_in_root(root, parent, flags) {
            // Only a directory we made here: whatever exists by that name takes the walk.
            if mkdirat(up.as_fd(), name, Mode::from_bits_truncate(mode)).is_ok() {
                if let Ok(fd) = openat2(up.as_fd(), name, how_beneath(flags)) {
                    return Ok(fd);
                }
            }
        }
    }
    mkdir_all_depth(root, path, mode, 0)
}

fn mkdir_all_depth(root: BorrowedFd, path: &Path, mode: u32, depth: u32) -> Result<OwnedFd> {
    let in_root = |p: &Path| format!("{} (in rootfs)", p.display());
    let mut dir = open_in_root(root, Path::new("/"), OFlag::O_PATH | OFlag::O_DIRECTORY)
        .sys("open", "rootfs")?;
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
    for comp in rel(path).components() {
        let name: &OsStr = match comp {
            Component::Normal(n) => n,
            // ".." must not climb above the root: resolve the prefix so far
            // with RESOLVE_IN_ROOT, which clamps it.
            Component::ParentDir => {
                dir = open_in_root(root, &prefix_upto(path, comp), flags)
                    .sys("open", in_root(path))?;
                continue;
            }
            _ => continue,
        };
        // One component below a directory already known to be inside the
        // root, refusing symlinks; a symlink is then resolved from the root.
        match openat2(dir.as_fd(), name, how_beneath(flags)) {
            Ok(fd) => dir = fd,
            Err(Errno::ENOENT) => {
                match mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(mode)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(Error::sys("mkdir", in_root(path), e)),
                }
                dir = openat2(dir.as_fd(), name, how_beneath(flags)).sys("open", in_root(path))?;
            }
            Err(Errno::ELOOP | Errno::EXDEV | Errno::ENOTDIR)
                if nix::sys::stat::fstatat(
                    dir.as_fd(),
                    name,
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK) =>
            {
                let prefix = prefix_upto(path, comp);
                dir = match open_in_root(root, &prefix, flags) {
                    Ok(fd) => fd,
                    Err(Errno::ENOENT) if depth < 40 => {
                        let target = nix::fcntl::readlinkat(dir.as_fd(), name)
                            .sys("readlink", in_root(&prefix))?;
                        let target = Path::new(&target);
                        let resolved = if target.is_absolute() {
                            target.to_path_buf()
                        } else {
                            prefix.parent().unwrap_or(Path::new("/")).join(target)
                        };
                        mkdir_all_depth(root, &resolved, mode, depth + 1)?
                    }
                    Err(e) => return Err(Error::sys("open", in_root(&prefix), e)),
                };
            }
            Err(e) => return Err(Error::sys("open", in_root(path), e)),
        }
    }
    Ok(dir)
}

/// Resolution for one component below an already-safe directory: symlinks
/// are refused (ELOOP) so the caller can resolve them inside the root.
fn how_beneath(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

fn prefix_upto(path: &Path, upto: Component) -> std::path::PathBuf {
    let mut p = std::path::PathBuf::from("/");
    for c in rel(path).components() {
        p.push(c.as_os_str());
        if std::ptr::eq(c.as_os_str(), upto.as_os_str()) {
            break;
        }
    }
    p
}

/// Makes sure a mount target exists inside `root`: a directory, or an empty
/// file when `file` is set (bind mounts of files). Returns an O_PATH fd.
pub fn ensure_target(root: BorrowedFd, path: &Path, file: bool) -> Result<OwnedFd> {
    if !file {
        return mkdir_all_in_root(root, path, 0o755);
    }
    if let Ok(fd) = open_in_root(root, path, OFlag::O_PATH) {
        return Ok(fd);
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().ok_or_else(|| {
        Error::msg(format!(
            "mount destination {}: no file name",
            path.display()
        ))
    })?;
    let dir = mkdir_all_in_root(root, parent, 0o755)?;
    // Reopen the directory for writing a new entry: O_PATH fds can't openat O_CREAT.
    let dirfd =
        reopen(dir.as_fd(), OFlag::O_RDONLY | OFlag::O_DIRECTORY).sys("open", parent.display())?;
    match nix::fcntl::openat(
        dirfd.as_fd(),
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::from_bits_truncate(0o644),
    ) {
        Ok(_) | Err(Errno::EEXIST) => {}
        Err(e) => {
            return Err(Error::sys(
                "create",
                format!("{} (in rootfs)", path.display()),
                e,
            ))
        }
    }
    openat2(dirfd.as_fd(), name, how_beneath(OFlag::O_PATH))
        .sys("open", format!("{} (in rootfs)", path.display()))
}

/// Reopens an O_PATH fd with real access flags through /proc/self/fd.
pub fn reopen(fd: BorrowedFd, flags: OFlag) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        fd_path(fd).as_str(),
        flags | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// `/proc/self/fd/N`: the name through which we act on a resolved fd.
pub fn fd_path(fd: BorrowedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Whether an O_PATH fd refers to a directory.
pub fn is_dir(fd: BorrowedFd) -> bool {
    nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// Bytes of a path for a CString, without a trailing NUL.
pub fn path_bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(dir: &Path) -> OwnedFd {
        nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn mkdir_all_stays_inside_through_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let r = t.path().join("root");
        std::fs::create_dir(&r).unwrap();
        // An absolute symlink to a host dir, and a relative one climbing out.
        std::os::unix::fs::symlink(outside.path(), r.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../..", r.join("up")).unwrap();
        let rfd = root(&r);
        mkdir_all_in_root(rfd.as_fd(), Path::new("/abs/x/y"), 0o755).unwrap();
        mkdir_all_in_root(rfd.as_fd(), Path::new("/up/z"), 0o755).unwrap();
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        // The absolute link resolved inside the root: <root>/<outside path>/x/y.
        let inside = r
            .join(outside.path().strip_prefix("/").unwrap())
            .join("x/y");
        assert!(inside.is_dir(), "{}", inside.display());
        assert!(r.join("z").is_dir());
    }

    #[test]
    fn ensure_file_target() {
        let t = tempfile::tempdir().unwrap();
        let rfd = root(t.path());
        let fd = ensure_target(rfd.as_fd(), Path::new("/etc/resolv.conf"), true).unwrap();
        assert!(!is_dir(fd.as_fd()));
        assert!(t.path().join("etc/resolv.conf").is_file());
        let fd = ensure_target(rfd.as_fd(), Path::new("/a/b"), false).unwrap();
        assert!(is_dir(fd.as_fd()));
    }
}
