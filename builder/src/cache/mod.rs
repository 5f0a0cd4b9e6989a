//! The build cache: what a rebuild reuses instead of running a step.
//!
//! One small JSON file per build step, `STORE/cache/HEX.json`, named by the step's cache key
//! ([`key`]: pure functions of what the step reads; [`sources`]: the digest of the files a COPY
//! or a bind mount reads). An entry records what the step produced: its history entry (so a
//! rebuild gets the same `created` times, hence the same config and image digest) and, for
//! steps that write a layer, the layer's blob digest and diffID. The layer itself lives where
//! every layer lives (`blobs/`, `layers/`); the cache only points at it. [`gc`] removes what
//! neither an image nor an entry holds; [`local`] and [`remote`] export and import entries
//! (`--cache-to`, `--cache-from`).
//!
//! Invariants, kept across a SIGKILL at any point:
//! * an entry is written (temporary file + rename) only after its blob and unpacked layer are in
//!   place, and removed before them ([`Store::gc`], [`Store::prune`]);
//! * a reader still checks that the blob and the layer directory exist, so an entry whose data
//!   went missing is a miss, not an error.
//!
//! Entries are touched on every hit; `prune` removes the least recently used first.
//!
//! Above [`crate::image`] (whose store it extends) and [`crate::registry`] (which carries a
//! cache's bytes for [`remote`]); neither of them knows the cache.

pub mod gc;
pub mod key;
pub mod local;
pub mod remote;
pub mod sources;

use crate::image::config::History;
use crate::image::hex_of;
use crate::image::layer::Compression;
use crate::image::store::{Store, StoreError};
use crate::image::unpacked::{self, bad, LayerError};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A layer a step wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRef {
    /// sha256 of the blob: the plain tar (then equal to `diff_id`) or a compressed one.
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
}

/// What one step produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub history: History,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<LayerRef>,
}

pub(crate) fn err(p: &Path, e: io::Error) -> StoreError {
    StoreError {
        path: p.display().to_string(),
        err: e,
    }
}

/// What `prune` removed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pruned {
    pub entries: usize,
    /// `RUN --mount=type=cache` directories removed.
    pub mounts: usize,
    /// Bytes freed: blobs, unpacked layers and cache mounts.
    pub bytes: u64,
}

impl Store {
    pub fn cache_dir(&self) -> PathBuf {
        self.root().join("cache")
    }

    pub(crate) fn entry_path(&self, key: &str) -> PathBuf {
        self.cache_dir().join(format!("{}.json", hex_of(key)))
    }

    /// The entry for `key` if it exists and its layer (if any) is complete in the store.
    pub fn cache_get(&self, key: &str) -> Option<Entry> {
        let p = self.entry_path(key);
        let bytes = fs::read(&p).ok()?;
        let e: Entry = serde_json::from_slice(&bytes).ok()?;
        if let Some(l) = &e.layer {
            if !self.has_blob(&l.digest) || !self.layer_dir(&l.diff_id).is_dir() {
                return None;
            }
        }
        // Least recently used goes first in `prune`.
        if let Ok(f) = fs::File::options().append(true).open(&p) {
            let _ = f.set_modified(SystemTime::now());
        }
        Some(e)
    }

    /// Records `entry` under `key` (replacing an older one).
    pub fn cache_put(&self, key: &str, entry: &Entry) -> Result<(), StoreError> {
        let dir = self.cache_dir();
        let tmp_dir = self.root().join("tmp");
        let mut t = tempfile::Builder::new()
            .prefix(".cache-")
            .tempfile_in(&tmp_dir)
            .map_err(|e| err(&tmp_dir, e))?;
        serde_json::to_writer(&mut t, entry).map_err(|e| err(t.path(), io::Error::other(e)))?;
        let p = self.entry_path(key);
        t.persist(&p).map_err(|e| err(&dir, e.error))?;
        Ok(())
    }

    /// Removes the entry for `key` (missing is fine).
    pub fn cache_remove(&self, key: &str) -> Result<(), StoreError> {
        let p = self.entry_path(key);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(err(&p, e)),
            _ => Ok(()),
        }
    }

    /// Every entry: (file, entry or None if unreadable, last use).
    pub fn cache_entries(&self) -> Result<Vec<(PathBuf, Option<Entry>, SystemTime)>, StoreError> {
        let dir = self.cache_dir();
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(|e| err(&dir, e))?.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let entry = fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let t = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            out.push((p, entry, t));
        }
        out.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
    }
}

/// Where `--cache-to` writes or `--cache-from` reads build cache entries.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    /// `type=local,dest|src=DIR`: a directory ([`local::export_local`], [`local::import_local`]).
    Local(PathBuf),
    /// `type=registry,ref=REF`: one image manifest in a registry
    /// ([`remote::push_cache`], [`remote::RemoteCache`]); as `--cache-from`, also an image
    /// whose config carries an inline cache.
    Registry(crate::registry::Reference),
    /// `--cache-to type=inline`: the entries of the image's own steps in its config
    /// ([`remote::INLINE_CACHE_KEY`]), read back by `--cache-from` of the pushed image.
    Inline,
}

/// `--cache-to type=local,dest=DIR|type=registry,ref=REF` / `--cache-from
/// type=local,src=DIR|type=registry,ref=REF`; `want` is the local form's key (`dest` or
/// `src`). `flag` names the option in errors.
pub fn parse(flag: &str, s: &str, want: &str) -> Result<Location, String> {
    // buildx: a bare reference is a registry cache (or an image with an inline cache).
    if !s.contains('=') {
        return crate::registry::Reference::parse(s)
            .map(Location::Registry)
            .ok_or_else(|| format!("{flag} {s:?}: not an image reference"));
    }
    let kind = s.split(',').find_map(|p| p.strip_prefix("type="));
    if kind == Some("inline") {
        if want != "dest" {
            return Err(format!(
                "{flag} {s:?}: type=inline is for --cache-to; --cache-from takes the pushed \
                 image (type=registry,ref=REF)"
            ));
        }
        return match s
            .split(',')
            .find(|p| !p.starts_with("type=") && *p != "mode=min")
        {
            Some(part) => Err(format!(
                "{flag} {s:?}: unknown part {part:?} (type=inline has none)"
            )),
            None => Ok(Location::Inline),
        };
    }
    let key = match kind {
        Some("local") => want,
        Some("registry") => "ref",
        Some(k) => {
            return Err(format!(
                "{flag} {s:?}: cache type {k:?} is not supported (local, registry or inline)"
            ))
        }
        None => {
            return Err(format!(
                "{flag} {s:?}: type=local or type=registry is missing"
            ))
        }
    };
    let mut val = None;
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("type", _)) => {}
            Some((k, v)) if k == key => val = Some(v),
            // The only mode: every step of every stage built is exported.
            Some(("mode", "max")) => {}
            _ => {
                return Err(format!(
                    "{flag} {s:?}: unknown part {part:?} (expected type=local,{want}=DIR or \
                     type=registry,ref=REF)"
                ))
            }
        }
    }
    match (kind, val) {
        (Some("local"), Some(d)) if !d.is_empty() => Ok(Location::Local(PathBuf::from(d))),
        (Some("local"), _) => Err(format!("{flag} {s:?}: {want}=DIR is missing")),
        (_, Some(r)) if !r.is_empty() => crate::registry::Reference::parse(r)
            .map(Location::Registry)
            .ok_or_else(|| format!("{flag} {s:?}: ref={r:?} is not an image reference")),
        _ => Err(format!("{flag} {s:?}: ref=REF is missing")),
    }
}

/// The entries among `keys` that the store holds (unreadable ones skipped): key, the entry's
/// file, the entry, with their plain layers compressed as `c` ([`crate::image::compress`]).
/// What both exports write.
pub fn exportable(
    store: &Store,
    keys: &[String],
    c: Compression,
) -> Result<Vec<(String, Vec<u8>, Entry)>, StoreError> {
    let mut out = Vec::new();
    for key in keys {
        let Ok(bytes) = fs::read(store.entry_path(key)) else {
            continue;
        };
        let Ok(e) = serde_json::from_slice::<Entry>(&bytes) else {
            continue;
        };
        out.push((key.clone(), bytes, e));
    }
    // Layers are recorded plain (digest = diffID); they leave compressed.
    let mut plain: Vec<String> = Vec::new();
    for (_, _, e) in &out {
        if let Some(l) = &e.layer {
            if l.digest == l.diff_id && !plain.contains(&l.digest) {
                plain.push(l.digest.clone());
            }
        }
    }
    if c == Compression::Uncompressed || plain.is_empty() {
        return Ok(out);
    }
    let done = crate::image::compress::layers(store, &plain, c)?;
    for (_, bytes, e) in &mut out {
        if let Some(l) = &mut e.layer {
            if let Some(z) = done.get(&l.digest) {
                l.digest = z.digest.clone();
                l.size = z.size;
                *bytes = serde_json::to_vec(&*e).expect("an entry serializes");
            }
        }
    }
    Ok(out)
}

/// Opens a cache's blob by digest (a file of a directory, a registry's blob).
pub type OpenBlob<'a> = dyn FnMut(&str) -> Result<Box<dyn io::Read + 'a>, String> + 'a;

/// Records entry `e` (read from `origin`, named in errors) under `key`, first bringing its layer
/// into the store: the blob from `open` unless the store has it, verified against its digest,
/// then unpacked and checked against its diffID. What both imports share.
pub fn import_entry(
    store: &Store,
    key: &str,
    e: &Entry,
    origin: &str,
    open: &mut OpenBlob,
) -> Result<(), LayerError> {
    if let Some(l) = &e.layer {
        if !crate::image::valid_digest(&l.digest) || !crate::image::valid_digest(&l.diff_id) {
            return Err(bad(origin, format!("bad digest in {l:?}")));
        }
        if !store.has_blob(&l.digest) {
            let mut r = open(&l.digest).map_err(|m| bad(origin, m))?;
            if let Some(got) = store.put_blob_checked(&mut r, &l.digest)? {
                return Err(bad(origin, format!("blob {} has digest {got}", l.digest)));
            }
        }
        let dst = store.layer_dir(&l.diff_id);
        if !dst.is_dir() {
            unpacked::unpack_layer(store, &l.digest, &l.diff_id, &dst)?;
        }
    }
    store.cache_put(key, e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_cache_options() {
        let p = |s| parse("--cache-to", s, "dest");
        let local = |d: &str| Ok(Location::Local(PathBuf::from(d)));
        assert_eq!(p("type=local,dest=/x"), local("/x"));
        assert_eq!(p("dest=/x,type=local,mode=max"), local("/x"));
        match p("type=registry,ref=127.0.0.1:5000/c:t") {
            Ok(Location::Registry(r)) => assert_eq!(r.to_string(), "127.0.0.1:5000/c:t"),
            other => panic!("{other:?}"),
        }
        assert!(p("type=registry")
            .unwrap_err()
            .contains("ref=REF is missing"));
        assert!(p("type=registry,ref=a b")
            .unwrap_err()
            .contains("not an image reference"));
        assert!(p("type=gha").unwrap_err().contains("not supported"));
        assert_eq!(p("type=inline"), Ok(Location::Inline));
        assert!(p("type=inline,ref=x").unwrap_err().contains("unknown part"));
        assert!(parse("--cache-from", "type=inline", "src")
            .unwrap_err()
            .contains("for --cache-to"));
        match parse("--cache-from", "127.0.0.1:5000/app:1", "src") {
            Ok(Location::Registry(r)) => assert_eq!(r.to_string(), "127.0.0.1:5000/app:1"),
            other => panic!("{other:?}"),
        }
        assert!(p("type=local").unwrap_err().contains("dest=DIR is missing"));
        assert!(p("type=local,src=/x").unwrap_err().contains("unknown part"));
        assert!(p("dest=/x")
            .unwrap_err()
            .contains("type=local or type=registry is missing"));
    }

    #[test]
    fn entries_round_trip_and_need_their_layer() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let key = key::Key::new("").finish();
        let meta = Entry {
            history: History {
                created_by: Some("ENV A=1".into()),
                empty_layer: true,
                ..Default::default()
            },
            layer: None,
        };
        assert!(s.cache_get(&key).is_none());
        s.cache_put(&key, &meta).unwrap();
        assert_eq!(s.cache_get(&key), Some(meta));
        let (digest, _) = s.put_blob(b"layer").unwrap();
        let with_layer = Entry {
            history: History::default(),
            layer: Some(LayerRef {
                digest: digest.clone(),
                diff_id: digest.clone(),
                size: 5,
            }),
        };
        s.cache_put(&key, &with_layer).unwrap();
        assert!(s.cache_get(&key).is_none(), "no unpacked layer: a miss");
        fs::create_dir(s.layer_dir(&digest)).unwrap();
        assert_eq!(s.cache_get(&key), Some(with_layer));
        assert_eq!(s.cache_entries().unwrap().len(), 1);
        s.cache_remove(&key).unwrap();
        assert!(s.cache_get(&key).is_none());
        let leftovers: Vec<_> = fs::read_dir(d.path().join("tmp")).unwrap().collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
