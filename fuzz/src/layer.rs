//! Target `layer`: a layer blob (gzip, zstd or plain tar) extracted the way
//! the builder extracts base-image layers: `brig_build::image::decompress`,
//! then `brig_build::image::unpack::unpack` with whiteouts and owners into a
//! fresh directory per input.
//!
//! The invariant is the unpacker's promise: nothing is created, changed or
//! linked outside the target directory. Beside the target lies `outside/`
//! holding `canary`; after each input the scratch directory must hold only
//! what it held, and `outside/`, `canary` and the scratch directory itself
//! must be unchanged (entries, mode, owner, link count, size, mtime), which
//! catches writes, chmods and chowns through symlinks, `..` and hard links.
//!
//! Under `make fuzz` (root) the scratch directory is a size-bounded tmpfs
//! that the target process chroots into, in a mount namespace of its own,
//! with a read-only /proc (the unpacker reads /proc/self/fd): an escape
//! through an absolute symlink then lands in the scratch root, where the
//! check sees it, instead of on the host. Without root, only escapes that
//! stay below the scratch directory (`..`, relative symlinks) are seen.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use brig_build::fsroot::Root;
use brig_build::image::{decompress, unpack};

/// What must not change outside the target, as (mode, uid, gid, nlink,
/// size, mtime, mtime_nsec).
type Facts = (u32, u32, u32, u64, u64, i64, i64);

/// `p`'s facts; without the times for the scratch directory, whose mtime
/// each input's fresh target changes.
fn facts(p: &Path, times: bool) -> Facts {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{} is gone: {e}", p.display()));
    let (mtime, nsec) = if times {
        (m.mtime(), m.mtime_nsec())
    } else {
        (0, 0)
    };
    (m.mode(), m.uid(), m.gid(), m.nlink(), m.size(), mtime, nsec)
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| {
            e.expect("readdir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// The scratch directory and what it must keep looking like.
pub struct Layer {
    scratch: PathBuf,
    target: PathBuf,
    names: BTreeSet<String>,
    watched: Vec<(PathBuf, bool, Facts)>,
}

impl Layer {
    /// Uses `scratch` (created if missing) as it is.
    pub fn new(scratch: &Path) -> io::Result<Layer> {
        let outside = scratch.join("outside");
        std::fs::create_dir_all(&outside)?;
        std::fs::write(outside.join("canary"), "canary\n")?;
        let target = scratch.join("layer");
        std::fs::create_dir_all(&target)?;
        let names = names(scratch);
        let watched = [
            (scratch.to_path_buf(), false),
            (outside.clone(), true),
            (outside.join("canary"), true),
        ]
        .into_iter()
        .map(|(p, times)| {
            let f = facts(&p, times);
            (p, times, f)
        })
        .collect();
        Ok(Layer {
            scratch: scratch.to_path_buf(),
            target,
            names,
            watched,
        })
    }

    /// Mounts a tmpfs on `scratch` in a new mount namespace, with a
    /// read-only /proc in it, and chroots there; then [`Layer::new`] on
    /// its root. Needs root; changes this whole process (call it once,
    /// before fuzzing, in the target binary only).
    pub fn isolated(scratch: &Path) -> Result<Layer, String> {
        use nix::mount::{mount, MsFlags};
        let none: Option<&str> = None;
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
            .map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
        mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
            .map_err(|e| format!("make / private: {e}"))?;
        std::fs::create_dir_all(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
        mount(
            Some("tmpfs"),
            scratch,
            Some("tmpfs"),
            MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
            Some("size=256m,mode=0755"),
        )
        .map_err(|e| format!("mount tmpfs on {}: {e}", scratch.display()))?;
        let proc = scratch.join("proc");
        std::fs::create_dir(&proc).map_err(|e| format!("{}: {e}", proc.display()))?;
        let ro = MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
        mount(Some("proc"), &proc, Some("proc"), ro, none)
            .map_err(|e| format!("mount proc on {}: {e}", proc.display()))?;
        nix::unistd::chroot(scratch).map_err(|e| format!("chroot {}: {e}", scratch.display()))?;
        std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
        Layer::new(Path::new("/")).map_err(|e| format!("scratch layout: {e}"))
    }

    pub fn run(&self, data: &[u8]) {
        if let Err(e) = std::fs::remove_dir_all(&self.target) {
            panic!("clear {}: {e}", self.target.display());
        }
        if let Err(e) = std::fs::create_dir(&self.target) {
            panic!("create {}: {e}", self.target.display());
        }
        let root = match Root::open(&self.target) {
            Ok(r) => r,
            Err(e) => panic!("open {}: {e}", self.target.display()),
        };
        if let Ok(stream) = decompress(io::Cursor::new(data.to_vec())) {
            let opts = unpack::Options {
                whiteouts: true,
                owners: true,
            };
            if let Err(e) = unpack::unpack(&root, Path::new(""), stream, "layer", opts) {
                let _ = e.to_string();
            }
        }
        self.check();
    }

    /// Nothing outside the target changed.
    fn check(&self) {
        let now = names(&self.scratch);
        assert_eq!(
            now,
            self.names,
            "the layer wrote outside its directory, into {}",
            self.scratch.display()
        );
        assert_eq!(
            names(&self.scratch.join("outside")),
            BTreeSet::from(["canary".to_string()]),
            "the layer wrote into outside/"
        );
        for (p, times, f) in &self.watched {
            assert_eq!(&facts(p, *times), f, "the layer changed {}", p.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_and_findings() {
        let dir = tempfile::tempdir().unwrap();
        let t = Layer::new(dir.path()).unwrap();
        crate::replay("seeds/layer", |d| t.run(d));
    }

    /// A seed unpacks whole (the target reaches the unpacker's end).
    #[test]
    fn basic_seed_unpacks() {
        let dir = tempfile::tempdir().unwrap();
        let t = Layer::new(dir.path()).unwrap();
        let path = format!("{}/seeds/layer/basic.tar.gz", env!("CARGO_MANIFEST_DIR"));
        t.run(&std::fs::read(path).unwrap());
        let passwd = std::fs::read_to_string(dir.path().join("layer/etc/passwd")).unwrap();
        assert!(passwd.starts_with("root:"));
        assert!(dir.path().join("layer/bin/ash").exists());
    }

    /// The check itself: an "unpacker" that escapes is caught.
    #[test]
    #[should_panic(expected = "changed")]
    fn a_hard_link_to_the_canary_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let t = Layer::new(dir.path()).unwrap();
        std::fs::hard_link(
            dir.path().join("outside/canary"),
            dir.path().join("layer/x"),
        )
        .unwrap();
        t.check();
    }

    #[test]
    #[should_panic(expected = "outside its directory")]
    fn a_file_beside_the_target_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let t = Layer::new(dir.path()).unwrap();
        std::fs::write(dir.path().join("escaped"), "x").unwrap();
        t.check();
    }
}
