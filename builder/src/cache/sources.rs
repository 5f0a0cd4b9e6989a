//! The digest of what a COPY/ADD (or a RUN bind mount) reads from a directory: the part of a
//! step's cache key that stands for file contents ([`super::key`]).
//!
//! Reads only: paths are resolved inside their root ([`Root`]), as the copy resolves them.
//!
//! A file's content digest is remembered ([`Sums`], `STORE/sums`) by its device, inode, size,
//! modification and change time, so a rebuild reads only the files that changed (as BuildKit's
//! contenthash keeps checksums by stat): a write, truncate, chmod, rename or `touch` moves the
//! change time, which no plain user can set back. A file changed less than
//! [`RACY_SECONDS`] before it is hashed is not remembered: within a timestamp's granularity a
//! later write could keep every field the same (git's "racy" entries).

use crate::dockerfile::ignore::{excluded_path as excluded, pruned_path, Ignore};
use crate::fsroot::Root;
use std::collections::HashMap;
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Files changed this recently (seconds) are hashed but not remembered.
pub const RACY_SECONDS: i64 = 2;
/// The most file digests `STORE/sums` keeps (those of the last build first); about 72 bytes each.
pub const SUMS_MAX: usize = 500_000;
const SUMS_MAGIC: &[u8; 16] = b"brig-sums-v1\n\0\0\0";
const RECORD: usize = 72;

/// What identifies a file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Stat {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl Stat {
    fn of(md: &fs::Metadata) -> Stat {
        Stat {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
        }
    }
}

/// File content digests remembered across builds, by stat (see the module doc).
#[derive(Debug, Default)]
pub struct Sums {
    path: Option<PathBuf>,
    /// Only files whose change time (unix seconds) is before this are remembered.
    remember_before: i64,
    inner: Mutex<SumsInner>,
}

#[derive(Debug, Default)]
struct SumsInner {
    /// (dev, ino) → stat and sha256.
    known: HashMap<(u64, u64), (Stat, [u8; 32])>,
    /// Used or added by this build: kept first when the file is bounded.
    used: Vec<(u64, u64)>,
    changed: bool,
}

impl Sums {
    /// The digests remembered in `path` (none if it is missing or not in this format).
    pub fn load(path: &Path) -> Sums {
        let mut known = HashMap::new();
        let mut buf = Vec::new();
        let read = fs::File::open(path).and_then(|mut f| f.read_to_end(&mut buf));
        if read.is_ok() && buf.starts_with(SUMS_MAGIC) {
            for r in buf[SUMS_MAGIC.len()..].chunks_exact(RECORD) {
                let n = |i: usize| u64::from_le_bytes(r[i * 8..i * 8 + 8].try_into().expect("8"));
                let st = Stat {
                    dev: n(0),
                    ino: n(1),
                    size: n(2),
                    mtime_ns: n(3) as i64,
                    ctime_ns: n(4) as i64,
                };
                let sum: [u8; 32] = r[40..72].try_into().expect("32");
                known.insert((st.dev, st.ino), (st, sum));
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Sums {
            path: Some(path.to_path_buf()),
            remember_before: now - RACY_SECONDS,
            inner: Mutex::new(SumsInner {
                known,
                ..Default::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SumsInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sha256 of the regular file at `path` with metadata `md`: remembered, or read now.
    fn file(&self, path: &Path, md: &fs::Metadata) -> io::Result<[u8; 32]> {
        use sha2::{Digest as _, Sha256};
        let st = Stat::of(md);
        let id = (st.dev, st.ino);
        {
            let mut g = self.lock();
            if let Some((known, sum)) = g.known.get(&id).copied() {
                if known == st {
                    g.used.push(id);
                    return Ok(sum);
                }
            }
        }
        let mut h = Sha256::new();
        let mut f = fs::File::open(path)?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let sum: [u8; 32] = h.finalize().into();
        // Only what has not changed lately, and still is as it was when it was read.
        let after = f.metadata().map(|m| Stat::of(&m)).ok();
        if md.ctime() < self.remember_before && after == Some(st) {
            let mut g = self.lock();
            g.known.insert(id, (st, sum));
            g.used.push(id);
            g.changed = true;
        }
        Ok(sum)
    }

    /// Writes the digests back (if any was added): this build's first, at most [`SUMS_MAX`].
    /// A cache: failing to write it is no error of the build.
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        let g = self.lock();
        if !g.changed {
            return;
        }
        let mut order: Vec<(u64, u64)> = Vec::with_capacity(g.known.len());
        let mut seen = std::collections::HashSet::new();
        for id in g.used.iter().chain(g.known.keys()) {
            if order.len() >= SUMS_MAX {
                break;
            }
            if seen.insert(*id) {
                order.push(*id);
            }
        }
        let mut out = Vec::with_capacity(SUMS_MAGIC.len() + order.len() * RECORD);
        out.extend_from_slice(SUMS_MAGIC);
        for id in order {
            let (st, sum) = g.known[&id];
            for n in [
                st.dev,
                st.ino,
                st.size,
                st.mtime_ns as u64,
                st.ctime_ns as u64,
            ] {
                out.extend_from_slice(&n.to_le_bytes());
            }
            out.extend_from_slice(&sum);
        }
        let Some(dir) = path.parent() else { return };
        if let Ok(mut t) = tempfile::Builder::new().prefix(".sums-").tempfile_in(dir) {
            if t.write_all(&out).is_ok() {
                let _ = t.persist(path);
            }
        }
    }
}

/// A digest of what a COPY/ADD of `sources` from `src` reads, for the build cache: for every
/// file, directory and symlink the copy would see (wildcards expanded, `.dockerignore`d paths
/// left out, as `exec::copy` does), its path, type, permission bits and content or link target.
/// Modification times and owners are left out, as docker does: a `touch` or a fresh checkout
/// does not invalidate (context owners become 0:0 anyway). File contents come from `sums` when
/// it knows them.
pub fn digest(
    src: &Root,
    ignore: Option<&Ignore>,
    sources: &[String],
    sums: &Sums,
) -> io::Result<String> {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    let mut put = |parts: &[&[u8]]| {
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
    };
    let entry = |rel: &Path, path: &Path, put: &mut dyn FnMut(&[&[u8]])| -> io::Result<()> {
        let md = path.symlink_metadata()?;
        let name = rel.to_string_lossy();
        let mode = (md.mode() & 0o7777).to_le_bytes();
        let ft = md.file_type();
        if ft.is_symlink() {
            let t = fs::read_link(path)?;
            put(&[b"l", name.as_bytes(), &mode, t.to_string_lossy().as_bytes()]);
        } else if ft.is_dir() {
            put(&[b"d", name.as_bytes(), &mode]);
        } else if ft.is_file() {
            let d = format!("sha256:{}", hex::encode(sums.file(path, &md)?));
            put(&[b"f", name.as_bytes(), &mode, d.as_bytes()]);
        }
        Ok(())
    };
    for s in sources {
        put(&[b"source", s.as_bytes()]);
        let rel = s.trim_start_matches('/');
        let found = if rel.contains(['*', '?', '[']) {
            src.glob(rel)?
        } else {
            vec![crate::fsroot::inner(Path::new(rel))]
        };
        for rel in found
            .into_iter()
            .filter(|p| !pruned_path(ignore, p, src.is_dir(p)))
        {
            let real = src.real_path(&rel)?;
            if !real.symlink_metadata()?.is_dir() {
                // A symlink source is followed by the copy; hash what it reads.
                let md = fs::metadata(&real)?;
                if md.is_file() {
                    entry(&rel, &real, &mut put)?;
                }
                continue;
            }
            let mut walk = walkdir::WalkDir::new(&real)
                .follow_links(false)
                .sort_by_file_name()
                .into_iter();
            while let Some(e) = walk.next() {
                let e = e.map_err(io::Error::other)?;
                let sub = rel.join(e.path().strip_prefix(&real).expect("below the root"));
                if e.depth() > 0 && excluded(ignore, &sub) {
                    // As the copy walks: into an excluded directory an exception may reach.
                    if pruned_path(ignore, &sub, e.file_type().is_dir()) && e.file_type().is_dir() {
                        walk.skip_current_dir();
                    }
                    continue;
                }
                entry(&sub, e.path(), &mut put)?;
            }
        }
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn contents_modes_and_links_count_times_and_ignored_files_do_not() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::create_dir(p.join("dir")).unwrap();
        fs::write(p.join("dir/f"), "1").unwrap();
        fs::write(p.join("dir/skip"), "s").unwrap();
        std::os::unix::fs::symlink("f", p.join("dir/l")).unwrap();
        let root = Root::open(p).unwrap();
        let ignore = Ignore::parse("dir/skip\n");
        let srcs = ["dir".to_string()];
        let none = Sums::default();
        let digest = || digest(&root, Some(&ignore), &srcs, &none).unwrap();
        let first = digest();
        assert_eq!(first, digest(), "same tree, same digest");
        fs::write(p.join("dir/skip"), "changed").unwrap();
        assert_eq!(first, digest(), "an ignored file does not count");
        fs::File::options()
            .append(true)
            .open(p.join("dir/f"))
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH)
            .unwrap();
        assert_eq!(first, digest(), "modification times do not count");
        let mut seen = vec![first];
        let mut changed = |what: &str| {
            let d = digest();
            assert!(!seen.contains(&d), "{what} did not change the digest");
            seen.push(d);
        };
        fs::write(p.join("dir/f"), "2").unwrap();
        changed("content");
        fs::set_permissions(p.join("dir/f"), fs::Permissions::from_mode(0o600)).unwrap();
        changed("mode");
        fs::remove_file(p.join("dir/l")).unwrap();
        std::os::unix::fs::symlink("g", p.join("dir/l")).unwrap();
        changed("link target");
        fs::write(p.join("dir/new"), "").unwrap();
        changed("a new file");
        assert_ne!(
            digest(),
            super::digest(&root, Some(&ignore), &["dir/*".to_string()], &none).unwrap(),
            "the sources as written"
        );
    }

    #[test]
    fn file_digests_are_remembered_by_stat_and_changes_are_seen() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ctx");
        fs::create_dir(&p).unwrap();
        fs::write(p.join("f"), "1").unwrap();
        let root = Root::open(&p).unwrap();
        let srcs = ["f".to_string()];
        let db = d.path().join("sums");
        let load = |remember_all: bool| {
            let mut s = Sums::load(&db);
            if remember_all {
                s.remember_before = i64::MAX;
            }
            s
        };
        // A file changed within RACY_SECONDS is hashed, not remembered.
        let fresh = load(false);
        let first = digest(&root, None, &srcs, &fresh).unwrap();
        assert!(fresh.lock().known.is_empty());
        fresh.save();
        assert!(!db.exists(), "nothing to remember, nothing written");
        // Remembered, saved, loaded back: the same digest, from the record.
        let s = load(true);
        assert_eq!(digest(&root, None, &srcs, &s).unwrap(), first);
        s.save();
        let again = load(true);
        assert_eq!(again.lock().known.len(), 1);
        assert_eq!(digest(&root, None, &srcs, &again).unwrap(), first);
        assert_eq!(again.lock().used.len(), 1, "served from the record");
        assert!(!again.lock().changed);
        // A change of content moves the change time: read again, a new digest.
        fs::write(p.join("f"), "2").unwrap();
        let changed = digest(&root, None, &srcs, &again).unwrap();
        assert_ne!(changed, first);
        assert_eq!(
            changed,
            digest(&root, None, &srcs, &Sums::default()).unwrap()
        );
        // Same size, content and mtime put back: the change time still tells.
        fs::write(p.join("f"), "1").unwrap();
        fs::File::options()
            .append(true)
            .open(p.join("f"))
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH)
            .unwrap();
        assert_eq!(digest(&root, None, &srcs, &again).unwrap(), first);
        // A file of another format is ignored, not trusted.
        fs::write(&db, b"something else entirely, not sums").unwrap();
        assert!(load(true).lock().known.is_empty());
    }
}
