//! What the build cache holds in the store, and the removals that must respect it: [`Store::gc`]
//! keeps what images or cache entries reference, [`Store::undo`] takes back a failed build,
//! [`Store::prune`] removes entries and cache mounts least recently used first, and
//! [`Store::remove`] untags images then collects. The store itself ([`crate::image::store`])
//! knows images only; these pass it the cache's references.

use super::{Entry, Pruned};
use crate::image::store::{at, Refs, Result, Store};
use crate::image::{disk_size, hex_of};
use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;

impl Store {
    /// Blobs and layers that images or build cache entries reference; unreadable cache entries
    /// are removed on the way (only with the gc lock held).
    pub(crate) fn held(&self) -> Result<Refs> {
        let Refs {
            mut blobs,
            mut layers,
        } = self.image_refs()?;
        for (p, e, _) in self.cache_entries()? {
            match e {
                Some(e) => {
                    if let Some(l) = e.layer {
                        blobs.insert(hex_of(&l.digest).to_string());
                        layers.insert(hex_of(&l.diff_id).to_string());
                    }
                }
                None => at(&p, fs::remove_file(&p))?,
            }
        }
        Ok(Refs { blobs, layers })
    }

    /// Deletes blobs and unpacked layers that neither an image of the index nor a build cache
    /// entry references. Waits for running builds to finish.
    pub fn gc(&self) -> Result<()> {
        let _g = self.gc_lock()?;
        let _l = self.lock()?;
        self.gc_locked(&self.held()?, None).map(|_| ())
    }

    /// Undo of a failed build that holds the gc lock exclusively: removes its cache entries,
    /// then those of its blobs and layers (digests / diffIDs) nothing else references.
    pub fn undo(&self, keys: &[String], blobs: &[String], layers: &[String]) -> Result<()> {
        let _l = self.lock()?;
        for k in keys {
            self.cache_remove(k)?;
        }
        self.gc_locked(&self.held()?, Some((blobs, layers)))
            .map(|_| ())
    }

    /// Removes the images named (or with the id); then deletes what nothing references.
    /// Returns the references that matched nothing.
    pub fn remove(&self, refs: &[String]) -> Result<Vec<String>> {
        let missing = self.untag(refs)?;
        self.gc()?;
        Ok(missing)
    }

    /// Removes build cache entries and `RUN --mount=type=cache` directories, least recently
    /// used first, until they and the blobs and layers only the cache references take at most
    /// `keep` bytes (all of them without `keep`), as BuildKit's prune does; then what became
    /// unreferenced, and the leftovers of killed builds in `tmp/`. Waits for running builds to
    /// finish (none holds a cache mount then).
    pub fn prune(&self, keep: Option<u64>) -> Result<Pruned> {
        let _g = self.gc_lock()?;
        let _l = self.lock()?;
        let Refs {
            blobs: img_blobs,
            layers: img_layers,
        } = self.image_refs()?;
        let entries = self.cache_entries()?;
        // What each entry holds that no image does, and how many entries hold it.
        let mut count: HashMap<PathBuf, usize> = HashMap::new();
        let held = |e: &Option<Entry>| -> Vec<PathBuf> {
            let Some(l) = e.as_ref().and_then(|e| e.layer.as_ref()) else {
                return Vec::new();
            };
            let mut v = Vec::new();
            if !img_blobs.contains(hex_of(&l.digest)) {
                v.push(self.blob_path(&l.digest));
            }
            if !img_layers.contains(hex_of(&l.diff_id)) {
                v.push(self.layer_dir(&l.diff_id));
            }
            v
        };
        let mut total = 0u64;
        let mut sizes: HashMap<PathBuf, u64> = HashMap::new();
        for (p, e, _) in &entries {
            total += disk_size(p);
            for h in held(e) {
                let c = count.entry(h.clone()).or_insert(0);
                if *c == 0 {
                    let s = disk_size(&h);
                    total += s;
                    sizes.insert(h.clone(), s);
                }
                *c += 1;
            }
        }
        // Cache mount directories (their mtime is set at each use), with their sizes.
        let mounts_dir = self.root().join("cache-mounts");
        let mut mounts = Vec::new();
        if mounts_dir.is_dir() {
            for e in at(&mounts_dir, fs::read_dir(&mounts_dir))?.flatten() {
                let path = e.path();
                let t = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
                let size = disk_size(&path);
                total += size;
                mounts.push((path, size, t));
            }
        }
        // One least-recently-used order over entries and mounts.
        enum Item<'a> {
            Entry(&'a PathBuf, &'a Option<Entry>),
            Mount(&'a PathBuf, u64),
        }
        let mut items: Vec<(std::time::SystemTime, Item)> = entries
            .iter()
            .map(|(p, e, t)| (*t, Item::Entry(p, e)))
            .chain(mounts.iter().map(|(p, s, t)| (*t, Item::Mount(p, *s))))
            .collect();
        items.sort_by_key(|(t, _)| *t);
        let keep = keep.unwrap_or(0);
        let mut pruned = Pruned::default();
        let mut mount_bytes = 0;
        for (_, item) in &items {
            if total <= keep && keep > 0 {
                break;
            }
            match item {
                Item::Entry(p, e) => {
                    total = total.saturating_sub(disk_size(p));
                    at(p, fs::remove_file(p))?;
                    pruned.entries += 1;
                    for h in held(e) {
                        let c = count.get_mut(&h).expect("counted above");
                        *c -= 1;
                        if *c == 0 {
                            total = total.saturating_sub(sizes[&h]);
                        }
                    }
                }
                Item::Mount(p, size) => {
                    total = total.saturating_sub(*size);
                    at(p, fs::remove_dir_all(p))?;
                    pruned.mounts += 1;
                    mount_bytes += size;
                }
            }
        }
        pruned.bytes = self.gc_locked(&self.held()?, None)? + mount_bytes;
        self.clear_tmp()?;
        Ok(pruned)
    }
}
