//! Outputs of a build: an OCI image layout directory, an oci-archive (that layout as a tar),
//! a docker-archive (`docker save` format: manifest.json, config, uncompressed layer tars) and
//! a registry push, as `--output type=oci|oci-archive|docker-archive,dest=PATH[,name=REF]` or
//! `--output type=registry,name=REF` asks.
//!
//! Owns the names peers look for: in a layout, `org.opencontainers.image.ref.name` holds the
//! tag (what `skopeo oci:DIR:TAG` and `umoci DIR:TAG` match) and
//! `io.containerd.image.name` the full name (for `ctr image import`); in a docker-archive,
//! RepoTags holds `NAME:TAG`. Archives are written to a temporary name and renamed, so a failed
//! export leaves no partial file at `dest`.

use crate::image::index::Indexed;
use crate::image::store::{new_index, normalize, ref_name, Store, REF_NAME};
use crate::image::{hex_of, store::Image};
use oci_spec::image::{Descriptor, ImageIndex};
use serde_json::json;
use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The kind of output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Oci,
    OciArchive,
    DockerArchive,
    /// Push to the registry `name` names.
    Registry,
    /// Load into docker (`type=docker` without `dest`, buildx's `--load`).
    DockerLoad,
    /// The image's files in a directory.
    Local,
    /// The image's files as a tar (`-`: stdout).
    Tar,
}

impl Kind {
    /// True for the outputs whose layers are OCI blobs (compressed: [`crate::image::compress`]);
    /// docker's archives carry plain tars, the file outputs no layers.
    pub fn compressed(self) -> bool {
        matches!(self, Kind::Oci | Kind::OciArchive | Kind::Registry)
    }
}

/// One `--output`.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub kind: Kind,
    pub dest: PathBuf,
    pub name: Option<String>,
}

/// Parses `type=KIND,dest=PATH[,name=REF]`.
pub fn parse_output(s: &str) -> Result<Output, String> {
    let (mut kind, mut dest, mut name) = (None, None, None);
    for part in s.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("--output {s:?}: {part:?} is not KEY=VALUE"))?;
        match k {
            "type" => {
                kind = Some(match v {
                    "oci" => Kind::Oci,
                    "oci-archive" => Kind::OciArchive,
                    "docker-archive" => Kind::DockerArchive,
                    // Loaded into docker unless a dest= says where the archive goes.
                    "docker" => Kind::DockerLoad,
                    "registry" => Kind::Registry,
                    "local" => Kind::Local,
                    "tar" => Kind::Tar,
                    _ => {
                        return Err(format!(
                            "--output: unknown type {v:?} (oci, oci-archive, docker, \
                             docker-archive, registry, local, tar)"
                        ))
                    }
                })
            }
            "dest" => dest = Some(PathBuf::from(v)),
            "name" => name = Some(v.to_string()),
            // BuildKit's spelling: push=true is what type=registry means.
            "push" if v == "true" => {}
            _ => return Err(format!("--output: unknown key {k:?}")),
        }
    }
    let kind = kind.ok_or_else(|| format!("--output {s:?}: type= is required"))?;
    if kind == Kind::DockerLoad {
        // As buildx: type=docker with a dest writes the archive, without one loads it.
        return Ok(Output {
            kind: if dest.is_some() {
                Kind::DockerArchive
            } else {
                Kind::DockerLoad
            },
            dest: dest.unwrap_or_default(),
            name,
        });
    }
    if kind == Kind::Registry {
        let name = name.ok_or_else(|| format!("--output {s:?}: type=registry needs name=REF"))?;
        if crate::registry::Reference::parse(&name).is_none() {
            return Err(format!(
                "--output {s:?}: {name:?} is not an image reference"
            ));
        }
        return Ok(Output {
            kind,
            dest: dest.unwrap_or_default(),
            name: Some(name),
        });
    }
    Ok(Output {
        kind,
        dest: dest.ok_or_else(|| format!("--output {s:?}: dest= is required"))?,
        name,
    })
}

fn io_at(p: &Path) -> impl Fn(io::Error) -> String + '_ {
    move |e| format!("{}: {e}", p.display())
}

/// Err when `out` cannot hold the images of `platforms` builds (checked before a build): a
/// docker-archive and docker's image store hold one platform's image under a name (as
/// buildx's docker exporter), a files tar one tree.
pub fn check_platforms(out: &Output, platforms: usize) -> Result<(), String> {
    if platforms < 2 {
        return Ok(());
    }
    let what = match out.kind {
        Kind::DockerArchive => "a docker-archive holds one platform's image under a name",
        Kind::DockerLoad => "docker's image store (--load) takes one platform's image",
        Kind::Tar => "a files tar holds one tree (type=local writes one directory a platform)",
        _ => return Ok(()),
    };
    Err(format!(
        "--output type={}: {what}; build one platform for it (--platform)",
        match out.kind {
            Kind::DockerArchive => "docker-archive",
            Kind::DockerLoad => "docker",
            _ => "tar",
        }
    ))
}

/// The directory of `img`'s files under a `type=local` dest of a build for several platforms
/// (BuildKit's `linux_arm64`).
fn platform_dir(img: &Image) -> String {
    let p = crate::image::index::platform_json(img);
    let mut s = format!(
        "{}_{}",
        p["os"].as_str().unwrap_or_default(),
        p["architecture"].as_str().unwrap_or_default()
    );
    if let Some(v) = p["variant"].as_str() {
        s = format!("{s}_{v}");
    }
    s
}

/// Writes `imgs` (one a platform; with the index of them and their attestations when
/// `indexed`, which a build for several platforms always has) as `out` asks; `tags` are the
/// build's `-t` names; `registry` says how to reach registries. A docker-archive has no room
/// for attestations (as buildx's docker exporter): they are left out, with a notice.
pub fn export(
    store: &Store,
    imgs: &[Image],
    indexed: Option<&Indexed>,
    out: &Output,
    tags: &[String],
    registry: &crate::registry::Options,
) -> Result<(), String> {
    check_platforms(out, imgs.len())?;
    let img = imgs.first().ok_or("nothing was built")?;
    let full = out
        .name
        .clone()
        .or_else(|| tags.first().cloned())
        .map(|n| normalize(&n));
    match out.kind {
        Kind::Registry => {
            let name = out.name.as_deref().unwrap_or_default();
            let r = crate::registry::Reference::parse(name)
                .ok_or_else(|| format!("{name:?} is not an image reference"))?;
            match indexed {
                Some(a) => crate::registry::push_index(store, registry, imgs, a, &r),
                None => crate::registry::push(store, registry, img, &r),
            }
            .map(|_| ())
            .map_err(|e| format!("push: {e}"))
        }
        Kind::Oci => write_layout(store, imgs, indexed, &out.dest, full.as_deref()),
        Kind::OciArchive => {
            let tmp = store.tempdir("export-").map_err(|e| e.to_string())?;
            let dir = tmp.path().join("layout");
            write_layout(store, imgs, indexed, &dir, full.as_deref())?;
            write_tar(&out.dest, |b| {
                let mut entries: Vec<PathBuf> = walkdir::WalkDir::new(&dir)
                    .min_depth(1)
                    .sort_by_file_name()
                    .into_iter()
                    .filter_map(|e| e.ok())
                    .map(|e| e.path().to_path_buf())
                    .collect();
                entries.sort();
                for p in entries {
                    let rel = p.strip_prefix(&dir).expect("below the layout");
                    if p.is_dir() {
                        let mut h = dir_header();
                        b.append_data(&mut h, rel, io::empty())?;
                    } else {
                        let f = fs::File::open(&p)?;
                        let mut h = file_header(f.metadata()?.len());
                        b.append_data(&mut h, rel, f)?;
                    }
                }
                Ok(())
            })
        }
        Kind::DockerArchive => write_tar(&out.dest, |b| {
            if indexed.is_some() {
                eprintln!(
                    "[notice] {}: a docker-archive holds no attestations; left out",
                    out.dest.display()
                );
            }
            docker_archive(b, store, img, &repo_tags(out, tags))
        }),
        Kind::DockerLoad => {
            let tmp = store.tempdir("load-").map_err(|e| e.to_string())?;
            let tar = tmp.path().join("image.tar");
            write_tar(&tar, |b| {
                docker_archive(b, store, img, &repo_tags(out, tags))
            })?;
            crate::docker::load(&tar).map_err(|e| format!("--load: {e}"))
        }
        Kind::Local if imgs.len() > 1 => imgs.iter().try_for_each(|i| {
            let dest = out.dest.join(platform_dir(i));
            let one = Output {
                dest,
                ..out.clone()
            };
            export(store, std::slice::from_ref(i), None, &one, tags, registry)
        }),
        Kind::Local | Kind::Tar => {
            let tmp = store.tempdir("files-").map_err(|e| e.to_string())?;
            let merged = tmp.path().join("merged");
            let empty = tmp.path().join("empty");
            for d in [&merged, &empty] {
                fs::create_dir(d).map_err(io_at(d))?;
            }
            let layers =
                crate::image::unpacked::layer_dirs(store, img).map_err(|e| e.to_string())?;
            let m = crate::exec::overlay::mount_overlay(&layers, None, &merged, &empty)
                .map_err(|e| e.to_string())?;
            let r = if out.kind == Kind::Local {
                copy_tree(&merged, &out.dest)
            } else {
                files_tar(&merged, &out.dest)
            };
            m.unmount().map_err(|e| e.to_string())?;
            r
        }
    }
}

/// The docker-archive `RepoTags`: the output's name, else the build's tags.
fn repo_tags(out: &Output, tags: &[String]) -> Vec<String> {
    match &out.name {
        Some(n) => vec![normalize(n)],
        None => tags.iter().map(|t| normalize(t)).collect(),
    }
}

/// `docker save`'s format: the config, each layer uncompressed, manifest.json.
fn docker_archive(
    b: &mut tar::Builder<io::BufWriter<fs::File>>,
    store: &Store,
    img: &Image,
    repo_tags: &[String],
) -> io::Result<()> {
    let cfg_name = format!("{}.json", hex_of(&img.config_digest));
    let cfg = fs::read(store.blob_path(&img.config_digest))?;
    let mut h = file_header(cfg.len() as u64);
    b.append_data(&mut h, &cfg_name, &cfg[..])?;
    let mut layers = Vec::new();
    for (l, diff_id) in img
        .manifest
        .layers()
        .iter()
        .zip(&img.config.rootfs.diff_ids)
    {
        let name = format!("{}/layer.tar", hex_of(diff_id));
        // docker load wants the uncompressed tar: its size first (a plain layer's is its
        // blob's; a compressed one is read through once).
        let blob = store.blob_path(l.digest().as_ref());
        let size = if l.digest().as_ref() == diff_id.as_str() {
            fs::metadata(&blob)?.len()
        } else {
            io::copy(&mut open_layer(&blob)?, &mut io::sink())?
        };
        let mut hd = dir_header();
        b.append_data(&mut hd, format!("{}/", hex_of(diff_id)), io::empty())?;
        let mut h = file_header(size);
        b.append_data(&mut h, &name, open_layer(&blob)?)?;
        layers.push(name);
    }
    let manifest = json!([{
        "Config": cfg_name,
        "RepoTags": if repo_tags.is_empty() { serde_json::Value::Null } else { json!(repo_tags) },
        "Layers": layers,
    }]);
    let m = serde_json::to_vec(&manifest).expect("json");
    let mut h = file_header(m.len() as u64);
    b.append_data(&mut h, "manifest.json", &m[..])?;
    Ok(())
}

/// `type=local`: the image's files copied to `dest` with GNU cp (modes, owners when root,
/// times, symlinks and hard links kept), as BuildKit's local exporter writes them.
fn copy_tree(merged: &Path, dest: &Path) -> Result<(), String> {
    fs::create_dir_all(dest).map_err(io_at(dest))?;
    let out = std::process::Command::new("cp")
        .args(["-a", "--no-target-directory", "--"])
        .arg(merged)
        .arg(dest)
        .output()
        .map_err(|e| format!("cp: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "type=local,dest={}: cp: {}",
            dest.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// `type=tar`: the image's files as one tar at `dest` (`-`: stdout).
fn files_tar(merged: &Path, dest: &Path) -> Result<(), String> {
    fn fill<W: Write>(b: &mut tar::Builder<W>, merged: &Path) -> io::Result<()> {
        b.follow_symlinks(false);
        b.mode(tar::HeaderMode::Complete);
        b.append_dir_all(".", merged)
    }
    if dest == Path::new("-") {
        let mut b = tar::Builder::new(io::stdout().lock());
        return fill(&mut b, merged)
            .and_then(|()| b.finish())
            .map_err(|e| format!("type=tar,dest=-: {e}"));
    }
    write_tar(dest, |b| fill(b, merged))
}

fn open_layer(blob: &Path) -> io::Result<Box<dyn io::Read>> {
    crate::image::decompress(io::BufReader::new(fs::File::open(blob)?))
}

fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(0);
    h
}

fn dir_header() -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_mtime(0);
    h
}

/// Writes a tar at `dest` through a temporary file and a rename.
fn write_tar(
    dest: &Path,
    f: impl FnOnce(&mut tar::Builder<io::BufWriter<fs::File>>) -> io::Result<()>,
) -> Result<(), String> {
    let tmp = dest.with_file_name(format!(
        ".{}.tmp",
        dest.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let r = (|| -> io::Result<()> {
        let file = fs::File::create(&tmp)?;
        let mut b = tar::Builder::new(io::BufWriter::new(file));
        f(&mut b)?;
        let mut w = b.into_inner()?;
        w.flush()?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, dest)
    })();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r.map_err(io_at(dest))
}

/// Writes (or adds to) the OCI layout at `dir`: the image, or the index of the images and
/// their attestations.
pub fn write_layout(
    store: &Store,
    imgs: &[Image],
    indexed: Option<&Indexed>,
    dir: &Path,
    full: Option<&str>,
) -> Result<(), String> {
    let img = imgs.first().ok_or("nothing was built")?;
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(io_at(&blobs))?;
    let mut digests = Vec::new();
    for i in imgs {
        digests.extend([i.manifest_digest.clone(), i.config_digest.clone()]);
        digests.extend(i.manifest.layers().iter().map(|l| l.digest().to_string()));
    }
    if let Some(a) = indexed {
        digests.push(a.digest.clone());
        digests.extend(a.attestations.iter().cloned());
        digests.extend(a.attestation_blobs.iter().cloned());
    }
    for d in digests {
        let dst = blobs.join(hex_of(&d));
        if dst.exists() {
            continue;
        }
        let src = store.blob_path(&d);
        let tmp = blobs.join(format!(".{}.tmp", hex_of(&d)));
        fs::copy(&src, &tmp).map_err(io_at(&src))?;
        fs::rename(&tmp, &dst).map_err(io_at(&dst))?;
    }
    let layout = dir.join("oci-layout");
    fs::write(&layout, "{\"imageLayoutVersion\":\"1.0.0\"}").map_err(io_at(&layout))?;
    let idx_path = dir.join("index.json");
    let mut manifests: Vec<Descriptor> = match ImageIndex::from_file(&idx_path) {
        Ok(i) => i.manifests().clone(),
        Err(_) => Vec::new(),
    };
    let (media_type, top) = match indexed {
        Some(a) => (oci_spec::image::MediaType::ImageIndex, &a.digest),
        None => (
            oci_spec::image::MediaType::ImageManifest,
            &img.manifest_digest,
        ),
    };
    let size = fs::metadata(store.blob_path(top))
        .map_err(io_at(&idx_path))?
        .len();
    let mut d = Descriptor::new(
        media_type,
        size,
        top.parse::<oci_spec::image::Digest>()
            .map_err(|e| e.to_string())?,
    );
    let tag = full.map(|f| {
        let last = f.rsplit('/').next().unwrap_or(f);
        last.split_once(':')
            .map(|(_, t)| t.to_string())
            .unwrap_or_else(|| "latest".into())
    });
    if let (Some(tag), Some(full)) = (&tag, full) {
        manifests.retain(|m| ref_name(m).as_deref() != Some(tag.as_str()));
        d.set_annotations(Some(HashMap::from([
            (REF_NAME.to_string(), tag.clone()),
            ("io.containerd.image.name".to_string(), full.to_string()),
        ])));
    } else {
        manifests.retain(|m| m.digest() != d.digest() || ref_name(m).is_some());
    }
    manifests.push(d);
    let idx = new_index(manifests);
    let tmp = dir.join(".index.json.tmp");
    fs::write(&tmp, serde_json::to_vec_pretty(&idx).expect("json")).map_err(io_at(&tmp))?;
    fs::rename(&tmp, &idx_path).map_err(io_at(&idx_path))
}
