//! The local store (default `/var/lib/brig-build`): an OCI image layout plus the unpacked
//! layers RUN steps mount.
//!
//! ```text
//! STORE/oci-layout, index.json   the images; annotation org.opencontainers.image.ref.name = NAME:TAG
//! STORE/blobs/sha256/HEX         configs, manifests, layers (those built here as plain tars)
//! STORE/layers/HEX               a layer unpacked in overlayfs form (HEX = its diffID)
//! STORE/compressed/HEX.KIND      the compressed blob of plain layer HEX (`crate::image::compress`)
//! STORE/sums                     content digests of build context files by stat (`crate::cache::sources`)
//! STORE/cache/HEX.json           the build cache (kept by `crate::cache`)
//! STORE/tmp/                     work dirs of running builds; runtime state
//! STORE/lock                     flock: one writer of index.json at a time
//! STORE/gc.lock                  flock: shared by every build, exclusive for gc and prune
//! ```
//! Every file appears by rename of a complete temporary file, so a killed build leaves at worst
//! orphans in `tmp/` and unreferenced blobs, never a reference to something half-written.
//! Builds sharing a store run at once (each holds `gc.lock` shared); deleting anything waits
//! until no build runs, so a build never loses a blob it has written but not yet referenced.

use super::config::ImageConfig;
use super::{hex_of, sha256, valid_digest};
use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// The annotation naming an image in an index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An error about the store, naming the path.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {err}")]
pub struct StoreError {
    pub path: String,
    pub err: io::Error,
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// `r` with its error naming `p`.
pub fn at<T>(p: &Path, r: io::Result<T>) -> Result<T> {
    r.map_err(|err| StoreError {
        path: p.display().to_string(),
        err,
    })
}

/// Blobs and unpacked layers (hex names) something holds: what gc keeps.
#[derive(Debug, Default)]
pub struct Refs {
    pub blobs: HashSet<String>,
    pub layers: HashSet<String>,
}

/// An image in the store: its manifest, config and their digests.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest_digest: String,
    pub manifest: ImageManifest,
    pub config_digest: String,
    pub config: ImageConfig,
}

/// The local store.
pub struct Store {
    root: PathBuf,
}

/// Holds one of the store's locks while alive.
pub struct Lock(fs::File);

impl Lock {
    /// Turns a shared lock into an exclusive one if nobody else holds it; false if others do
    /// (the lock may then be lost: use this only when giving it up anyway).
    pub fn try_exclusive(&self) -> bool {
        use rustix::fs::FlockOperation;
        rustix::fs::flock(self.0.as_fd(), FlockOperation::NonBlockingLockExclusive).is_ok()
    }

    /// (Back to) a shared lock, waiting for an exclusive holder.
    fn shared(&self) -> io::Result<()> {
        rustix::fs::flock(self.0.as_fd(), rustix::fs::FlockOperation::LockShared)
            .map_err(io::Error::from)
    }
}

impl Store {
    /// Opens (creating) the store at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        for d in ["blobs/sha256", "layers", "cache", "tmp"] {
            at(&root.join(d), fs::create_dir_all(root.join(d)))?;
        }
        for (name, initial) in [
            ("oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}"),
            ("index.json", "{\"schemaVersion\":2,\"manifests\":[]}"),
        ] {
            let p = root.join(name);
            if !p.exists() {
                at(&p, fs::write(&p, initial))?;
            }
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the store's exclusive lock.
    pub fn lock(&self) -> Result<Lock> {
        self.flock("lock", rustix::fs::FlockOperation::LockExclusive)
    }

    /// Takes the lock every build holds (shared) while it runs: nothing is deleted meanwhile.
    /// A build that finds no other build (nor prune) running first clears what killed builds
    /// left in `tmp/`, holding the lock exclusively for that moment.
    pub fn build_lock(&self) -> Result<Lock> {
        let l = self.flock("gc.lock", rustix::fs::FlockOperation::LockShared)?;
        if l.try_exclusive() {
            self.clear_tmp()?;
        }
        // Shared again: from exclusive, or taken anew if the failed upgrade dropped it.
        let p = self.root.join("gc.lock");
        at(&p, l.shared())?;
        Ok(l)
    }

    /// Takes the lock of gc and prune: waits until no build runs.
    pub fn gc_lock(&self) -> Result<Lock> {
        self.flock("gc.lock", rustix::fs::FlockOperation::LockExclusive)
    }

    fn flock(&self, name: &str, op: rustix::fs::FlockOperation) -> Result<Lock> {
        let p = self.root.join(name);
        let f = at(
            &p,
            fs::OpenOptions::new().create(true).append(true).open(&p),
        )?;
        at(
            &p,
            rustix::fs::flock(f.as_fd(), op).map_err(io::Error::from),
        )?;
        Ok(Lock(f))
    }

    /// A fresh private directory under `tmp/`.
    pub fn tempdir(&self, prefix: &str) -> Result<tempfile::TempDir> {
        let t = self.root.join("tmp");
        at(&t, tempfile::Builder::new().prefix(prefix).tempdir_in(&t))
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex_of(digest))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        valid_digest(digest) && self.blob_path(digest).is_file()
    }

    /// Moves the complete file `tmp` in as blob `digest`. Returns true if it was new.
    pub fn put_blob_file(&self, tmp: &Path, digest: &str) -> Result<bool> {
        let dst = self.blob_path(digest);
        if dst.exists() {
            let _ = fs::remove_file(tmp);
            return Ok(false);
        }
        at(&dst, fs::rename(tmp, &dst))?;
        Ok(true)
    }

    /// Copies the stream `r` in as blob `digest`, hashing it on the way; nothing is stored and
    /// `Ok(Some(actual digest))` is returned if the content has another digest.
    pub fn put_blob_checked(&self, r: &mut dyn io::Read, digest: &str) -> Result<Option<String>> {
        let tmp = self.tempdir("blob-")?;
        let path = tmp.path().join("blob");
        let f = at(&path, fs::File::create(&path))?;
        let mut hw = super::HashWriter::new(io::BufWriter::new(f));
        let what = PathBuf::from(format!("blob {digest}"));
        at(&what, io::copy(r, &mut hw))?;
        let (w, got, _) = hw.finish();
        at(&path, w.into_inner().map_err(|e| e.into_error()))?;
        if got != digest {
            return Ok(Some(got));
        }
        self.put_blob_file(&path, digest)?;
        Ok(None)
    }

    /// Stores `data`; returns its digest and whether it was new.
    pub fn put_blob(&self, data: &[u8]) -> Result<(String, bool)> {
        let digest = sha256(data);
        let dst = self.blob_path(&digest);
        if dst.exists() {
            return Ok((digest, false));
        }
        // A name of our own: two builds writing the same blob must not share a temporary file.
        let dir = self.root.join("tmp");
        let mut t = at(
            &dir,
            tempfile::Builder::new().prefix(".blob-").tempfile_in(&dir),
        )?;
        if let Err(e) = io::Write::write_all(&mut t, data) {
            return at(t.path(), Err(e));
        }
        at(&dst, t.persist(&dst).map(|_| ()).map_err(|e| e.error))?;
        Ok((digest, true))
    }

    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let p = self.blob_path(digest);
        if !valid_digest(digest) {
            return at(
                &p,
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("bad digest {digest:?}"),
                )),
            );
        }
        at(&p, fs::read(&p))
    }

    /// The unpacked form of the layer with `diff_id`.
    pub fn layer_dir(&self, diff_id: &str) -> PathBuf {
        self.root.join("layers").join(hex_of(diff_id))
    }

    pub fn index(&self) -> Result<ImageIndex> {
        let p = self.root.join("index.json");
        at(
            &p,
            ImageIndex::from_file(&p).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        )
    }

    fn write_index(&self, idx: &ImageIndex) -> Result<()> {
        let p = self.root.join("index.json");
        let tmp = self.root.join("tmp/.index.json");
        let text = serde_json::to_vec_pretty(idx).expect("an index serializes");
        at(&tmp, fs::write(&tmp, text))?;
        at(&p, fs::rename(&tmp, &p))
    }

    /// The manifest digest of `reference` (`NAME[:TAG]` or an image id prefix).
    pub fn resolve(&self, reference: &str) -> Result<Option<String>> {
        let name = normalize(reference);
        let idx = self.index()?;
        for m in idx.manifests() {
            if ref_name(m).as_deref() == Some(name.as_str()) {
                return Ok(Some(m.digest().to_string()));
            }
        }
        let id = reference.strip_prefix("sha256:").unwrap_or(reference);
        if id.len() >= 6 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            for m in idx.manifests() {
                let d = m.digest().to_string();
                if hex_of(&d).starts_with(id) {
                    return Ok(Some(d));
                }
                if let Ok(img) = self.image(&d) {
                    if hex_of(&img.config_digest).starts_with(id) {
                        return Ok(Some(d));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Loads the image whose manifest is `manifest_digest`.
    pub fn image(&self, manifest_digest: &str) -> Result<Image> {
        let p = self.blob_path(manifest_digest);
        let bytes = self.read_blob(manifest_digest)?;
        let manifest = at(
            &p,
            ImageManifest::from_reader(&bytes[..])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        )?;
        let config_digest = manifest.config().digest().to_string();
        let cbytes = self.read_blob(&config_digest)?;
        let config: ImageConfig = at(
            &self.blob_path(&config_digest),
            serde_json::from_slice(&cbytes).map_err(io::Error::other),
        )?;
        Ok(Image {
            manifest_digest: manifest_digest.to_string(),
            manifest,
            config_digest,
            config,
        })
    }

    /// Points each of `names` at the manifest (moving a name if it pointed elsewhere); with no
    /// names, records the image untagged.
    pub fn tag(&self, desc: &Descriptor, names: &[String]) -> Result<()> {
        let _l = self.lock()?;
        let mut idx = self.index()?;
        let names: Vec<String> = names.iter().map(|n| normalize(n)).collect();
        let mut ms: Vec<Descriptor> = idx
            .manifests()
            .iter()
            .filter(|m| match ref_name(m) {
                Some(n) => !names.contains(&n),
                None => m.digest() != desc.digest(),
            })
            .cloned()
            .collect();
        if names.is_empty() {
            ms.push(desc.clone());
        }
        for n in &names {
            let mut d = desc.clone();
            d.set_annotations(Some(HashMap::from([(REF_NAME.to_string(), n.clone())])));
            ms.push(d);
        }
        idx.set_manifests(ms);
        self.write_index(&idx)
    }

    /// Removes the names (or ids) `refs` from the index; returns those that matched nothing.
    /// Blobs stay: `Store::remove` (with the build cache's references) collects them.
    pub fn untag(&self, refs: &[String]) -> Result<Vec<String>> {
        let _l = self.lock()?;
        let mut idx = self.index()?;
        let mut missing = Vec::new();
        let mut ms: Vec<Descriptor> = idx.manifests().clone();
        for r in refs {
            let name = normalize(r);
            let before = ms.len();
            ms.retain(|m| ref_name(m).as_deref() != Some(name.as_str()));
            if ms.len() == before {
                let id = r.strip_prefix("sha256:").unwrap_or(r);
                let matches: Vec<String> = ms
                    .iter()
                    .map(|m| m.digest().to_string())
                    .filter(|d| {
                        id.len() >= 6
                            && (hex_of(d).starts_with(id)
                                || self
                                    .image(d)
                                    .map(|i| hex_of(&i.config_digest).starts_with(id))
                                    .unwrap_or(false))
                    })
                    .collect();
                ms.retain(|m| !matches.contains(&m.digest().to_string()));
                if matches.is_empty() {
                    missing.push(r.clone());
                }
            }
        }
        idx.set_manifests(ms);
        self.write_index(&idx)?;
        Ok(missing)
    }

    /// Blobs and unpacked layers that images of the index reference.
    pub fn image_refs(&self) -> Result<Refs> {
        let idx = self.index()?;
        let mut blobs = HashSet::new();
        let mut layers = HashSet::new();
        for m in idx.manifests() {
            let d = m.digest().to_string();
            blobs.insert(hex_of(&d).to_string());
            if let Ok(img) = self.image(&d) {
                blobs.insert(hex_of(&img.config_digest).to_string());
                for l in img.manifest.layers() {
                    blobs.insert(hex_of(l.digest().as_ref()).to_string());
                }
                for d in &img.config.rootfs.diff_ids {
                    layers.insert(hex_of(d).to_string());
                }
            }
        }
        Ok(Refs { blobs, layers })
    }

    /// gc with the locks held: removes what `keep` does not hold (or, with `only`, what it
    /// does not hold among those candidates); returns the bytes freed.
    pub fn gc_locked(&self, keep: &Refs, only: Option<(&[String], &[String])>) -> Result<u64> {
        let Refs { blobs, layers } = keep;
        let mut freed = 0;
        for (dir, keep, cand) in [
            ("blobs/sha256", blobs, only.map(|o| o.0)),
            ("layers", layers, only.map(|o| o.1)),
        ] {
            let p = self.root.join(dir);
            for e in at(&p, fs::read_dir(&p))?.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if keep.contains(&n) {
                    continue;
                }
                if let Some(c) = cand {
                    if !c.iter().any(|d| hex_of(d) == n) {
                        continue;
                    }
                }
                let path = e.path();
                freed += super::disk_size(&path);
                let r = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                at(&path, r)?;
            }
        }
        // Records of compressed layers whose blob is gone ([`super::compress`]).
        let p = self.root.join("compressed");
        for e in fs::read_dir(&p).into_iter().flatten().flatten() {
            let gone = fs::read_to_string(e.path())
                .ok()
                .and_then(|t| t.split_whitespace().next().map(|d| !self.has_blob(d)))
                .unwrap_or(true);
            if gone {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(freed)
    }

    /// Removes everything in `tmp/`. Only with `gc.lock` held exclusively: no build runs, so
    /// whatever is there was left by a killed one.
    pub fn clear_tmp(&self) -> Result<()> {
        let t = self.root.join("tmp");
        for e in at(&t, fs::read_dir(&t))?.flatten() {
            let path = e.path();
            let r = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match r {
                // A build that has just let go of its lock removes its own work dir meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                r => at(&path, r)?,
            }
        }
        Ok(())
    }

    /// (name or None, manifest digest) of every image.
    pub fn list(&self) -> Result<Vec<(Option<String>, String)>> {
        Ok(self
            .index()?
            .manifests()
            .iter()
            .map(|m| (ref_name(m), m.digest().to_string()))
            .collect())
    }
}

/// The ref name annotation of an index entry.
pub fn ref_name(d: &Descriptor) -> Option<String> {
    d.annotations().as_ref()?.get(REF_NAME).cloned()
}

/// `NAME` → `NAME:latest`; a name with a tag or digest is kept.
pub fn normalize(reference: &str) -> String {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains(':') || reference.contains('@') {
        reference.to_string()
    } else {
        format!("{reference}:latest")
    }
}

/// Builds an index with these manifests (for layouts written elsewhere).
pub fn new_index(manifests: Vec<Descriptor>) -> ImageIndex {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .expect("an index with schemaVersion and manifests is complete")
}
