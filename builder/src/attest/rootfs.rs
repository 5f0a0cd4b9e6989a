//! Reading one file of an image from its unpacked layers (`STORE/layers/HEX`, overlayfs upper
//! form), the way overlayfs would show it, without mounting anything: the topmost layer that
//! has the path decides; a whiteout (character device 0/0) deletes it; an ancestor that is not
//! a directory, or is a whiteout, hides it; an opaque ancestor directory hides the layers below.
//! Symlinks are not followed (the databases the SBOM reads are plain files in plain
//! directories); the files are read through [`crate::fsroot::Root`], scoped to the layer.

use crate::fsroot::Root;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The most a file read this way may hold.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

fn is_whiteout(m: &std::fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    // Either: a layer unpacked by root (trusted.*) or in a plain user's build (user.*, overlayfs
    // mounted with `userxattr`).
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| {
            let mut v = [0u8; 4];
            matches!(rustix::fs::lgetxattr(dir, *name, &mut v), Ok(n) if v[..n] == *b"y")
        })
}

/// The content of `rel` (relative to the image's root) in the image whose layers are `layers`
/// (bottom first); `None` when the image does not have it as a regular file.
pub fn read(layers: &[PathBuf], rel: &str) -> io::Result<Option<Vec<u8>>> {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    'layer: for layer in layers.iter().rev() {
        let mut dir = layer.clone();
        let mut opaque = false;
        for (i, part) in parts.iter().enumerate() {
            let p = dir.join(part);
            let m = match std::fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if opaque {
                        return Ok(None);
                    }
                    continue 'layer;
                }
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", p.display()))),
            };
            let last = i + 1 == parts.len();
            if is_whiteout(&m) || (!last && !m.is_dir()) {
                return Ok(None);
            }
            if last {
                if !m.is_file() {
                    return Ok(None);
                }
                if m.len() > MAX_FILE_BYTES {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("/{rel}: {} bytes, more than {MAX_FILE_BYTES}", m.len()),
                    ));
                }
                let root = Root::open(layer)?;
                let fd = root.open_at(
                    Path::new(rel),
                    rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW,
                )?;
                let mut out = Vec::new();
                std::fs::File::from(fd)
                    .take(MAX_FILE_BYTES)
                    .read_to_end(&mut out)?;
                return Ok(Some(out));
            }
            opaque |= is_opaque(&p);
            dir = p;
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn the_topmost_layer_decides() {
        let t = tempfile::tempdir().unwrap();
        let l = |n: &str| t.path().join(n);
        for (layer, content) in [("a", "one"), ("b", "two")] {
            fs::create_dir_all(l(layer).join("var/lib/dpkg")).unwrap();
            fs::write(l(layer).join("var/lib/dpkg/status"), content).unwrap();
        }
        fs::create_dir_all(l("c/etc")).unwrap();
        let layers = [l("a"), l("b"), l("c")];
        assert_eq!(
            read(&layers, "var/lib/dpkg/status").unwrap().unwrap(),
            b"two"
        );
        assert_eq!(read(&layers, "var/lib/dpkg/missing").unwrap(), None);
        // A directory replaced by a file above hides what is below.
        fs::create_dir_all(l("d/var/lib")).unwrap();
        fs::write(l("d/var/lib/dpkg"), "").unwrap();
        let layers = [l("a"), l("b"), l("d")];
        assert_eq!(read(&layers, "var/lib/dpkg/status").unwrap(), None);
    }
}
