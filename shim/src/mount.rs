//! The rootfs mounts containerd passes in Create (overlay from the
//! snapshotter, or a bind of a native snapshot), made on `bundle/rootfs`,
//! and their removal on delete.
//!
//! Hand-written instead of `containerd_shim::mount`: that one forks a
//! child per mount and waits for it through the library's own reaper,
//! which races ours ([`crate::reaper`]) for the status. mount(2) needs no
//! child here. mount(2) takes at most a page of options; an overlay of many
//! layers (about 55 and more of containerd's snapshot paths) has more. Then,
//! as containerd does for its own mounts, the lower directories are named
//! relative to their common parent, and the mount is made from a thread of
//! ours that has unshared its working directory (`unshare(CLONE_FS)`) and
//! changed into that parent: the shim's other threads keep theirs.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{Error, Result};

/// Splits mount(8) options into flags and the data string.
fn parse_options(options: &[String]) -> (MsFlags, MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data: Vec<&str> = Vec::new();
    for o in options {
        let (set, clear) = match o.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let p = match o.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                propagation |= p;
                if o.starts_with('r') {
                    propagation |= MsFlags::MS_REC;
                }
                continue;
            }
            other => {
                data.push(other);
                continue;
            }
        };
        flags.insert(set);
        flags.remove(clear);
    }
    (flags, propagation, data.join(","))
}

/// Mounts one of containerd's mounts on `target`.
pub fn mount_one(fs_type: &str, source: &str, options: &[String], target: &Path) -> Result<()> {
    let (flags, propagation, data) = parse_options(options);
    let what = || format!("mount {fs_type} {source} on {}", target.display());
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    if data.len() >= page {
        // (The target is absolute: containerd's bundle path.)
        let compact = (fs_type == "overlay" && target.is_absolute())
            .then(|| compact_lowerdir(&data))
            .flatten()
            .filter(|(_, d)| d.len() < page);
        let Some((parent, data)) = compact else {
            return Err(Error::Other(format!(
                "{}: options are {} bytes, longer than a page{}",
                what(),
                data.len(),
                if fs_type == "overlay" {
                    " even with the lower directories relative to their common parent"
                } else {
                    ""
                }
            )));
        };
        return mount_from(&parent, fs_type, source, flags, propagation, &data, target);
    }
    mount_here(fs_type, source, flags, propagation, &data, target)
}

/// overlay options with `lowerdir=` relative to the lower directories' common parent, and
/// that parent; `None` when they have none but `/` or are not all absolute.
fn compact_lowerdir(data: &str) -> Option<(PathBuf, String)> {
    let opts: Vec<&str> = data.split(',').collect();
    let lower = opts.iter().find_map(|o| o.strip_prefix("lowerdir="))?;
    let dirs: Vec<&str> = lower.split(':').collect();
    if dirs.iter().any(|d| !d.starts_with('/') || d.contains('\\')) {
        return None;
    }
    // The longest run of whole components that every directory starts with.
    let first: Vec<&str> = dirs[0].split('/').collect();
    let mut common = first.len() - 1; // a directory is never its own parent here
    for d in &dirs[1..] {
        let parts: Vec<&str> = d.split('/').collect();
        let same = first.iter().zip(&parts).take_while(|(a, b)| a == b).count();
        common = common.min(same).min(parts.len() - 1);
    }
    let parent = first[..common].join("/");
    if parent.is_empty() {
        return None;
    }
    let relative: Vec<String> = dirs
        .iter()
        .map(|d| d.split('/').skip(common).collect::<Vec<_>>().join("/"))
        .collect();
    let rebuilt: Vec<String> = opts
        .iter()
        .map(|o| match o.strip_prefix("lowerdir=") {
            Some(_) => format!("lowerdir={}", relative.join(":")),
            None => o.to_string(),
        })
        .collect();
    Some((PathBuf::from(parent), rebuilt.join(",")))
}

/// [`mount_here`] from a thread whose working directory is `dir` (its own: unshared).
fn mount_from(
    dir: &Path,
    fs_type: &str,
    source: &str,
    flags: MsFlags,
    propagation: MsFlags,
    data: &str,
    target: &Path,
) -> Result<()> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)
                .map_err(|e| Error::io("unshare(CLONE_FS) for a long overlay mount", e.into()))?;
            nix::unistd::chdir(dir)
                .map_err(|e| Error::io(format!("chdir {}", dir.display()), e.into()))?;
            mount_here(fs_type, source, flags, propagation, data, target)
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Other("the overlay mount thread panicked".into())))
    })
}

fn mount_here(
    fs_type: &str,
    source: &str,
    flags: MsFlags,
    propagation: MsFlags,
    data: &str,
    target: &Path,
) -> Result<()> {
    let what = || format!("mount {fs_type} {source} on {}", target.display());
    let fs_type = Some(fs_type).filter(|t| !t.is_empty());
    let source = Some(source).filter(|s| !s.is_empty());
    let data = Some(data).filter(|d| !d.is_empty());
    let err = |e: nix::Error| Error::io(what(), e.into());
    mount(source, target, fs_type, flags, data).map_err(err)?;
    if flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY) {
        mount::<str, Path, str, str>(None, target, None, flags | MsFlags::MS_REMOUNT, None)
            .map_err(err)?;
    }
    if !propagation.is_empty() {
        mount::<str, Path, str, str>(None, target, None, propagation, None).map_err(err)?;
    }
    Ok(())
}

/// The mount points at and below `target`, deepest first.
fn mounts_under(target: &Path) -> Vec<String> {
    let target = target.display().to_string();
    let prefix = format!("{}/", target.trim_end_matches('/'));
    let mut points: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|p| *p == target || p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    points
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts everything at and below `target` (lazily, as runc's shim).
pub fn unmount_all(target: &Path) -> Result<()> {
    for point in mounts_under(target) {
        match umount2(point.as_str(), MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(Error::io(format!("unmount {point}"), e.into())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let opts: Vec<String> = [
            "ro",
            "rbind",
            "nosuid",
            "lowerdir=/a:/b",
            "upperdir=/u",
            "rprivate",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (flags, prop, data) = parse_options(&opts);
        assert!(flags.contains(
            MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NOSUID
        ));
        assert_eq!(prop, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(data, "lowerdir=/a:/b,upperdir=/u");
        let (flags, _, _) = parse_options(&["ro".to_string(), "rw".to_string()]);
        assert!(!flags.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn long_lowerdirs_are_made_relative_to_their_common_parent() {
        let snaps = "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots";
        let lower: Vec<String> = (1..=120).rev().map(|n| format!("{snaps}/{n}/fs")).collect();
        let data = format!(
            "index=off,lowerdir={},upperdir={snaps}/121/fs,workdir={snaps}/121/work",
            lower.join(":")
        );
        assert!(data.len() > 4096);
        let (parent, short) = compact_lowerdir(&data).expect("compacted");
        assert_eq!(parent, Path::new(snaps));
        let expect: Vec<String> = (1..=120).rev().map(|n| format!("{n}/fs")).collect();
        assert_eq!(
            short,
            format!(
                "index=off,lowerdir={},upperdir={snaps}/121/fs,workdir={snaps}/121/work",
                expect.join(":")
            )
        );
        assert!(short.len() < 4096);
        // Nothing in common but the root, or relative dirs: nothing to do.
        assert_eq!(compact_lowerdir("lowerdir=/a/x:/b/y"), None);
        assert_eq!(compact_lowerdir("lowerdir=a/x:/a/y"), None);
        // One directory is never its own parent.
        assert_eq!(
            compact_lowerdir("lowerdir=/s/1/fs"),
            Some((PathBuf::from("/s/1"), "lowerdir=fs".into()))
        );
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
