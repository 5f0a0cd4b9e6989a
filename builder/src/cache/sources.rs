//! The digest of what a COPY/ADD (or a RUN bind mount) reads from a directory: the part of a
//! step's cache key that stands for file contents ([`super::key`]).
//!
//! Reads only: paths are resolved inside their root ([`Root`]), as the copy resolves them.

use crate::dockerfile::ignore::{excluded_path as excluded, pruned_path, Ignore};
use crate::fsroot::Root;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A digest of what a COPY/ADD of `sources` from `src` reads, for the build cache: for every
/// file, directory and symlink the copy would see (wildcards expanded, `.dockerignore`d paths
/// left out, as `exec::copy` does), its path, type, permission bits and content or link target.
/// Modification times and owners are left out, as docker does: a `touch` or a fresh checkout
/// does not invalidate (context owners become 0:0 anyway).
pub fn digest(src: &Root, ignore: Option<&Ignore>, sources: &[String]) -> io::Result<String> {
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
            let mut fh = crate::image::HashWriter::new(io::sink());
            io::copy(&mut fs::File::open(path)?, &mut fh)?;
            let (_, d, _) = fh.finish();
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
        let digest = || digest(&root, Some(&ignore), &srcs).unwrap();
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
            super::digest(&root, Some(&ignore), &["dir/*".to_string()]).unwrap(),
            "the sources as written"
        );
    }
}
