//! File helpers shared by the cgroup backends: one-write writes of control
//! files with errors naming the file and the config field, reads, recursive
//! pid listing and removal of a cgroup directory tree.
//!
//! Never removes anything but empty cgroup directories (rmdir only), and never
//! retries a write except on EINTR.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use nix::errno::Errno;

use crate::error::{Error, Result};

pub(crate) fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Write `value` to `dir/file` in one write(2), as cgroup files need.
/// `field` is the JSON path of the setting the value came from; it is named
/// in the error.
pub(crate) fn write_file(dir: &Path, file: &str, value: &str, field: Option<&str>) -> Result<()> {
    let path = dir.join(file);
    let target = match field {
        Some(f) => format!("{value} to {} ({f})", path.display()),
        None => format!("{value} to {}", path.display()),
    };
    let fail = |e: std::io::Error| -> Error {
        let errno = errno_of(&e);
        if errno == Errno::ENOENT {
            if !dir.is_dir() {
                return Error::msg(format!(
                    "write {target}: cgroup {} does not exist",
                    dir.display()
                ));
            }
            return Error::msg(format!(
                "write {target}: {file} does not exist: the kernel or this cgroup hierarchy does not support the setting"
            ));
        }
        Error::sys("write", &target, errno)
    };
    let mut f = OpenOptions::new().write(true).open(&path).map_err(fail)?;
    loop {
        match f.write(value.as_bytes()) {
            Ok(n) if n == value.len() => return Ok(()),
            Ok(n) => {
                return Err(Error::msg(format!(
                    "write {target}: short write ({n} of {} bytes)",
                    value.len()
                )))
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(e)),
        }
    }
}

/// [`write_file`] of `value`, when there is one, naming `field`.
pub(crate) fn write_some<T: ToString>(
    dir: &Path,
    file: &str,
    value: Option<T>,
    field: &str,
) -> Result<()> {
    match value {
        Some(v) => write_file(dir, file, &v.to_string(), Some(field)),
        None => Ok(()),
    }
}

pub(crate) fn read_file(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    std::fs::read_to_string(&path).map_err(|e| Error::sys("read", path.display(), errno_of(&e)))
}

pub(crate) fn read_u64(dir: &Path, file: &str) -> Result<u64> {
    let s = read_file(dir, file)?;
    s.trim().parse::<u64>().map_err(|e| {
        Error::msg(format!(
            "parse {}: {:?} is not a number: {e}",
            dir.join(file).display(),
            s.trim()
        ))
    })
}

/// Make `dir` and its missing parents.
pub(crate) fn mkdir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::sys("mkdir", dir.display(), errno_of(&e)))
}

/// Every pid in `dir` and the cgroups below it, sorted. A missing `dir`
/// holds no processes.
pub(crate) fn all_pids(dir: &Path) -> Result<Vec<i32>> {
    let mut pids = Vec::new();
    if !dir.exists() {
        return Ok(pids);
    }
    collect_pids(dir, &mut pids)?;
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    let procs = match read_file(dir, "cgroup.procs") {
        Ok(s) => s,
        // A child cgroup removed while walking.
        Err(Error::Sys {
            errno: Errno::ENOENT | Errno::ENODEV,
            ..
        }) => return Ok(()),
        Err(e) => return Err(e),
    };
    for line in procs.lines() {
        if let Ok(pid) = line.trim().parse::<i32>() {
            out.push(pid);
        }
    }
    for sub in subdirs(dir)? {
        collect_pids(&sub, out)?;
    }
    Ok(())
}

fn subdirs(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::sys("readdir", dir.display(), errno_of(&e))),
    };
    let mut v = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| Error::sys("readdir", dir.display(), errno_of(&e)))?;
        if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            v.push(ent.path());
        }
    }
    Ok(v)
}

/// Remove the cgroup `dir` and every cgroup below it, children first.
/// Missing is fine. EBUSY (processes still leaving) is retried a few times
/// with a growing delay, as runc does.
pub(crate) fn remove_cgroup(dir: &Path) -> Result<()> {
    let mut delay = Duration::from_millis(10);
    let mut last = Errno::EBUSY;
    for attempt in 0..5 {
        if attempt > 0 {
            sleep(delay);
            delay *= 2;
        }
        match remove_tree(dir) {
            Ok(()) => return Ok(()),
            Err(Errno::EBUSY) => last = Errno::EBUSY,
            Err(e) => return Err(Error::sys("rmdir", dir.display(), e)),
        }
    }
    Err(Error::sys("rmdir", dir.display(), last))
}

fn remove_tree(dir: &Path) -> std::result::Result<(), Errno> {
    match std::fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            let errno = errno_of(&e);
            if errno != Errno::EBUSY && errno != Errno::ENOTEMPTY {
                return Err(errno);
            }
        }
    }
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(errno_of(&e)),
    };
    for ent in rd.flatten() {
        if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&ent.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => match errno_of(&e) {
            Errno::ENOTEMPTY => Err(Errno::EBUSY),
            other => Err(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_errors_name_file_and_field() {
        let d = std::env::temp_dir().join(format!("brig-util-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&d);
        let e = write_file(&d, "nope", "5", Some("linux.resources.pids.limit"));
        let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("nope does not exist"), "{msg}");
        assert!(msg.contains("(linux.resources.pids.limit)"), "{msg}");
        assert!(write_file(&d, "f", "x", None).is_err());
        std::fs::write(d.join("f"), "").expect("create f");
        write_file(&d, "f", "12", None).expect("write f");
        assert_eq!(read_u64(&d, "f").ok(), Some(12));
        let gone = d.join("gone");
        let msg = write_file(&gone, "x", "1", None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("does not exist"), "{msg}");
        assert!(remove_cgroup(&gone).is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }
}
