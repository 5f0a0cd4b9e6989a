//! Work areas and commits: a fresh overlay work area per step, the overlay upper directory
//! turned into a layer (blob and unpacked directory of the store, recorded for the undo of a
//! failed build), and the target stage turned into config and manifest blobs, tagged.

use super::{overlay, BuildError, Builder, Built, Layer, Result, State};
use crate::image::layer;
use oci_spec::image::{Descriptor, ImageManifestBuilder, MediaType};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

impl Builder<'_> {
    /// A fresh work area: upper, work, merged, empty.
    pub(super) fn area(&self) -> Result<PathBuf> {
        let n = self.n.fetch_add(1, Ordering::Relaxed) + 1;
        let a = self.work.path().join(format!("s{n}"));
        for d in ["upper", "work", "merged", "empty"] {
            fs::create_dir_all(a.join(d))
                .map_err(|e| BuildError::Other(format!("{}: {e}", a.display())))?;
        }
        fs::set_permissions(
            a.join("upper"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .map_err(|e| BuildError::Other(e.to_string()))?;
        Ok(a)
    }

    pub(super) fn mount_rw(&self, st: &State, line: usize) -> Result<(PathBuf, overlay::Mounted)> {
        let a = self.area()?;
        let lowers: Vec<PathBuf> = st.layers.iter().map(|l| l.dir.clone()).collect();
        let m = overlay::mount_overlay(
            &lowers,
            Some((&a.join("upper"), &a.join("work"))),
            &a.join("merged"),
            &a.join("empty"),
        )
        .map_err(|e| self.err(line, e))?;
        self.overlay_notes();
        Ok((a, m))
    }

    /// Shows what the overlays have to say ([`overlay::take_notes`]).
    fn overlay_notes(&self) {
        for n in overlay::take_notes() {
            super::lock(&self.progress).notice(&n);
        }
    }

    /// Turns `upper` into a layer blob and an unpacked layer of the store; appends it.
    pub(super) fn commit_layer(
        &self,
        st: &mut State,
        line: usize,
        upper: &Path,
        by: &str,
    ) -> Result<()> {
        self.overlay_notes();
        let n = self.n.fetch_add(1, Ordering::Relaxed) + 1;
        // A plain tar: compression waits for an export that asks (`crate::image::compress`).
        let blob_tmp = self.work.path().join(format!("layer{n}.tar"));
        let w = layer::write(
            upper,
            &blob_tmp,
            layer::Options {
                clamp_mtime: self.opts.source_date_epoch,
                compression: layer::Compression::Uncompressed,
            },
        )
        .map_err(|e| self.err(line, format!("writing the layer: {e}")))?;
        if self.store.put_blob_file(&blob_tmp, &w.digest)? {
            self.note(|a| a.blobs.push(w.digest.clone()));
        }
        let dir = self.store.layer_dir(&w.diff_id);
        if !dir.exists() {
            match fs::rename(upper, &dir) {
                Ok(()) => self.note(|a| a.layers.push(w.diff_id.clone())),
                // Another build sharing the store moved the same layer in first.
                Err(_) if dir.is_dir() => {}
                Err(e) => return Err(self.err(line, e)),
            }
        }
        let desc = Descriptor::new(
            layer::Compression::Uncompressed.media_type(),
            w.size,
            w.digest
                .parse::<oci_spec::image::Digest>()
                .map_err(|e| self.err(line, e))?,
        );
        st.layers.push(Layer {
            desc,
            diff_id: w.diff_id.clone(),
            dir,
        });
        st.config.rootfs.diff_ids.push(w.diff_id);
        self.history(st, by, false);
        Ok(())
    }

    pub(super) fn commit_image(&self, mut st: State) -> Result<Built> {
        // The time of the last step, as docker does: a rebuild from the cache gives the same
        // config, hence the same image.
        st.config.created = st
            .config
            .history
            .last()
            .and_then(|h| h.created.clone())
            .or_else(|| Some(self.now()));
        st.config.rootfs.diff_ids = st.layers.iter().map(|l| l.diff_id.clone()).collect();
        // A base image's inline cache is not this image's.
        st.config
            .extra
            .remove(crate::cache::remote::INLINE_CACHE_KEY);
        if self.opts.cache_to == Some(crate::cache::Location::Inline) {
            let used = super::lock(&self.added).used.clone();
            let diff_ids: Vec<&str> = st.layers.iter().map(|l| l.diff_id.as_str()).collect();
            let inline = crate::cache::remote::inline_cache(
                self.store,
                &used,
                &diff_ids,
                self.opts.compression,
            )?;
            st.config
                .extra
                .insert(crate::cache::remote::INLINE_CACHE_KEY.into(), inline);
        }
        let cbytes = serde_json::to_vec(&st.config).expect("config serializes");
        let (cdigest, new) = self.store.put_blob(&cbytes)?;
        if new {
            self.note(|a| a.blobs.push(cdigest.clone()));
        }
        let bad = |e: oci_spec::OciSpecError| BuildError::Other(format!("manifest: {e}"));
        let cdesc = Descriptor::new(
            MediaType::ImageConfig,
            cbytes.len() as u64,
            cdigest.parse::<oci_spec::image::Digest>().map_err(bad)?,
        );
        let mut manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(cdesc)
            .layers(st.layers.iter().map(|l| l.desc.clone()).collect::<Vec<_>>())
            .build()
            .map_err(bad)?;
        if !self.opts.annotations.is_empty() {
            manifest.set_annotations(Some(self.opts.annotations.clone().into_iter().collect()));
        }
        let mbytes = serde_json::to_vec(&manifest).expect("manifest serializes");
        let (mdigest, new) = self.store.put_blob(&mbytes)?;
        if new {
            self.note(|a| a.blobs.push(mdigest.clone()));
        }
        let mdesc = Descriptor::new(
            MediaType::ImageManifest,
            mbytes.len() as u64,
            mdigest.parse::<oci_spec::image::Digest>().map_err(bad)?,
        );
        self.store.tag(&mdesc, &self.opts.tags)?;
        Ok(Built {
            manifest: mdesc,
            config_digest: cdigest,
            materials: super::lock(&self.materials).clone(),
        })
    }
}
