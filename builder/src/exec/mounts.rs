//! `RUN --mount=...`: BuildKit's build-time mounts, as extra OCI mounts of the RUN bundle.
//!
//! Owns the mount spec (`type=bind|cache|tmpfs|secret|ssh` with `target`, `source`, `from`,
//! `ro`/`rw`, `id`, `sharing`, `mode`, `uid`, `gid`, `size`, `required`) and where each
//! mount's content lives: a bind of the context or of another stage (read-only by default; a
//! read-write bind writes to a throw-away overlay upper), a cache directory under
//! `STORE/cache-mounts/` that outlives the build (seeded from a stage's `source` path when
//! `from=` names one, as BuildKit does), a tmpfs, a secret file (given by `--secret
//! id=ID,src=PATH`) copied onto a tmpfs of the build's private mount namespace, so it is never
//! written to disk, an SSH agent socket (`--ssh ID=PATH`). None of
//! them is ever part of the overlay upper the layer is made from: the runtime mounts them over
//! the rootfs, and the mount points created for them are removed from the layer by the caller.
//!
//! Hand-written: the spec is a small comma list; BuildKit's parser is Go and not a crate.

use super::overlay::{self, Mounted};
use crate::fsroot::Root;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where `--mount=type=ssh` puts the agent socket unless `target=` says otherwise.
pub const SSH_DEFAULT_TARGET: &str = "/run/buildkit/ssh_agent.0";

/// How builds running at the same time use one cache mount (BuildKit's `sharing=`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sharing {
    /// Every build uses the same directory at once (a shared flock, so that `private`
    /// users see it is in use).
    Shared,
    /// One build at a time; the others wait (an exclusive flock).
    Locked,
    /// A build that finds the directory in use gets another instance of it
    /// (`<id hash>-1`, `-2`, ...: the first no build holds), which persists too.
    Private,
}

/// The kind of a mount and its own options.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Bind {
        from: Option<String>,
        source: String,
        rw: bool,
    },
    Cache {
        id: String,
        /// `from=STAGE|IMAGE|CONTEXT`: a new cache is seeded with its `source` path.
        from: Option<String>,
        source: String,
        sharing: Sharing,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Tmpfs {
        size: Option<u64>,
    },
    Secret {
        id: String,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Ssh {
        id: String,
        required: bool,
    },
}

/// One parsed `--mount`.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub kind: Kind,
    /// Absolute path inside the container.
    pub target: String,
}

fn parse_bool(k: &str, v: Option<&str>) -> Result<bool, String> {
    match v {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(v) => Err(format!("{k}={v}: expected true or false")),
    }
}

fn parse_num(k: &str, v: Option<&str>, radix: u32) -> Result<u32, String> {
    let v = v.ok_or_else(|| format!("{k} needs a value"))?;
    u32::from_str_radix(v, radix).map_err(|_| format!("{k}={v}: not a number"))
}

/// Err when `spec` needs a secret or an SSH agent socket the build was not given (checked
/// before the cache too: a build with missing inputs fails even where its steps are cached).
pub fn check_given(
    spec: &Spec,
    secrets: &BTreeMap<String, PathBuf>,
    ssh: &BTreeMap<String, PathBuf>,
) -> Result<(), String> {
    match &spec.kind {
        Kind::Secret {
            id, required: true, ..
        } if !secrets.contains_key(id) => Err(format!(
            "secret {id:?} is required but was not given (--secret id={id},src=PATH)"
        )),
        Kind::Ssh { id, required } if !ssh.contains_key(id) && (*required || id == "default") => {
            Err(format!(
                "type=ssh: no SSH agent socket {id:?} was given (--ssh {id}=$SSH_AUTH_SOCK)"
            ))
        }
        _ => Ok(()),
    }
}

/// Parses the (expanded) value of one `--mount=` flag.
pub fn parse(spec: &str) -> Result<Spec, String> {
    let mut kv: Vec<(String, Option<String>)> = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        match part.split_once('=') {
            Some((k, v)) => kv.push((k.to_ascii_lowercase(), Some(v.to_string()))),
            None => kv.push((part.to_ascii_lowercase(), None)),
        }
    }
    let ty = kv
        .iter()
        .find(|(k, _)| k == "type")
        .and_then(|(_, v)| v.clone())
        .unwrap_or_else(|| "bind".into());
    let allowed: &[&str] = match ty.as_str() {
        "bind" => &["source", "src", "from", "ro", "readonly", "rw", "readwrite"],
        "cache" => &[
            "id",
            "from",
            "source",
            "src",
            "sharing",
            "mode",
            "uid",
            "gid",
            "ro",
            "readonly",
            "rw",
            "readwrite",
        ],
        "tmpfs" => &["size"],
        "secret" => &["id", "required", "mode", "uid", "gid", "source", "src"],
        "ssh" => &["id", "required", "mode", "uid", "gid"],
        other => {
            return Err(format!(
                "unknown mount type {other:?} (bind, cache, tmpfs, secret or ssh)"
            ))
        }
    };
    let mut target = None;
    let mut o: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (k, v) in kv {
        match k.as_str() {
            "type" => {}
            "target" | "dst" | "destination" => {
                target = Some(v.ok_or("target needs a value")?);
            }
            k if allowed.contains(&k) => {
                o.insert(k.to_string(), v);
            }
            k => return Err(format!("type={ty}: unknown option {k:?}")),
        }
    }
    let get = |k: &str| o.get(k).map(|v| v.as_deref());
    let rw = match (
        get("rw").or(get("readwrite")),
        get("ro").or(get("readonly")),
    ) {
        (Some(v), _) => parse_bool("rw", v)?,
        (None, Some(v)) => !parse_bool("ro", v)?,
        (None, None) => ty != "bind",
    };
    let num = |k: &str, radix: u32, dflt: u32| -> Result<u32, String> {
        match get(k) {
            Some(v) => parse_num(k, v, radix),
            None => Ok(dflt),
        }
    };
    let id = get("id").flatten().map(str::to_string);
    let required = match get("required") {
        Some(v) => parse_bool("required", v)?,
        None => false,
    };
    let source = get("source").or(get("src")).flatten().map(str::to_string);
    let kind = match ty.as_str() {
        "bind" => Kind::Bind {
            from: get("from").flatten().map(str::to_string),
            source: source.unwrap_or_default(),
            rw,
        },
        "cache" => {
            if !rw {
                return Err("type=cache: read-only cache mounts are not supported".into());
            }
            let t = target.as_deref().ok_or("type=cache needs target=PATH")?;
            let sharing = match get("sharing").flatten() {
                None | Some("shared") => Sharing::Shared,
                Some("private") => Sharing::Private,
                Some("locked") => Sharing::Locked,
                Some(s) => return Err(format!("sharing={s}: expected shared, private or locked")),
            };
            Kind::Cache {
                id: id.unwrap_or_else(|| t.to_string()),
                from: get("from").flatten().map(str::to_string),
                source: source.unwrap_or_default(),
                sharing,
                mode: num("mode", 8, 0o755)?,
                uid: num("uid", 10, 0)?,
                gid: num("gid", 10, 0)?,
            }
        }
        "tmpfs" => Kind::Tmpfs {
            size: match get("size") {
                Some(v) => Some(parse_num("size", v, 10)? as u64),
                None => None,
            },
        },
        "secret" => {
            let id = match (id, &target, source) {
                (Some(id), _, _) => id,
                (None, _, Some(s)) => s,
                (None, Some(t), None) => Path::new(t)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .ok_or("type=secret needs id=ID")?,
                (None, None, None) => return Err("type=secret needs id=ID".into()),
            };
            if target.is_none() {
                target = Some(format!("/run/secrets/{id}"));
            }
            Kind::Secret {
                id,
                required,
                mode: num("mode", 8, 0o400)?,
                uid: num("uid", 10, 0)?,
                gid: num("gid", 10, 0)?,
            }
        }
        _ => {
            if target.is_none() {
                target = Some(SSH_DEFAULT_TARGET.into());
            }
            Kind::Ssh {
                id: id.unwrap_or_else(|| "default".into()),
                required,
            }
        }
    };
    let target = target.ok_or_else(|| format!("type={ty} needs target=PATH"))?;
    if !target.starts_with('/') {
        return Err(format!("target={target}: must be an absolute path"));
    }
    if target == "/" {
        return Err("target=/: cannot mount over the root".into());
    }
    Ok(Spec { kind, target })
}

/// What `from=` names: a stage's (or image's) layers, or a directory (a named build context).
pub enum From {
    Layers(Vec<PathBuf>),
    Dir(PathBuf),
}

/// What the build provides to mounts.
pub struct Sources<'a> {
    pub store_root: &'a Path,
    pub context: &'a Root,
    /// `--secret id=ID,src=PATH`.
    pub secrets: &'a BTreeMap<String, PathBuf>,
    /// `--ssh ID=SOCKET`.
    pub ssh: &'a BTreeMap<String, PathBuf>,
    /// A private directory for this step (removed after the build).
    pub work: &'a Path,
}

/// The mounts of one RUN, ready to add to the bundle; holds what must stay alive (overlays,
/// cache locks) until the step ends.
#[derive(Default)]
pub struct Prepared {
    /// OCI mount entries for config.json.
    pub oci: Vec<Value>,
    /// Environment additions (SSH_AUTH_SOCK).
    pub env: Vec<String>,
    /// (target, is a directory) of every mount, to create the mount points.
    pub targets: Vec<(String, bool)>,
    held: Vec<Mounted>,
    tmpfs: Vec<Tmpfs>,
    locks: Vec<fs::File>,
}

/// A tmpfs mounted by us (secrets); unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Result<Tmpfs, String> {
        use rustix::mount::{mount, MountFlags};
        mount(
            "tmpfs",
            dir,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            c"mode=0700,size=16m",
        )
        .map_err(|e| format!("mount tmpfs on {}: {e}", dir.display()))?;
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

impl Prepared {
    /// Unmounts the overlays made for binds and releases cache locks.
    pub fn finish(self) -> std::io::Result<()> {
        for m in self.held.into_iter().rev() {
            m.unmount()?;
        }
        drop(self.tmpfs);
        drop(self.locks);
        Ok(())
    }
}

fn bind(src: &Path, dst: &str, ro: bool) -> Value {
    let mut opts = vec!["rbind"];
    if ro {
        opts.push("ro");
    }
    json!({"destination": dst, "type": "bind", "source": src, "options": opts})
}

/// Sets up `specs`; `stage_layers(from)` gives what `from=` names: the layer dirs (bottom
/// first) of a stage, or a directory.
pub fn prepare(
    specs: &[Spec],
    src: &Sources<'_>,
    stage_layers: &mut dyn FnMut(&str) -> Result<From, String>,
) -> Result<Prepared, String> {
    let mut p = Prepared::default();
    for (n, s) in specs.iter().enumerate() {
        let dir = src.work.join(format!("m{n}"));
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        match &s.kind {
            Kind::Bind { from, source, rw } => {
                let root_holder;
                let root = match from {
                    None => src.context,
                    Some(f) => {
                        match stage_layers(f)? {
                            From::Dir(d) => {
                                root_holder = Root::open(&d)
                                    .map_err(|e| format!("from={f}: {}: {e}", d.display()))?;
                            }
                            From::Layers(layers) => {
                                for d in ["merged", "empty"] {
                                    fs::create_dir_all(dir.join(d)).map_err(|e| e.to_string())?;
                                }
                                let m = overlay::mount_overlay(
                                    &layers,
                                    None,
                                    &dir.join("merged"),
                                    &dir.join("empty"),
                                )
                                .map_err(|e| format!("from={f}: {e}"))?;
                                root_holder = Root::open(m.path()).map_err(|e| e.to_string())?;
                                p.held.push(m);
                            }
                        }
                        &root_holder
                    }
                };
                let rel = crate::fsroot::inner(Path::new(source));
                let real = root
                    .real_path(&rel)
                    .map_err(|e| format!("source={source}: {e}"))?;
                let is_dir = real.is_dir();
                let real = if *rw && is_dir {
                    // Writes go to an upper directory that is thrown away with the step.
                    for d in ["rw-upper", "rw-work", "rw-merged"] {
                        fs::create_dir_all(dir.join(d)).map_err(|e| e.to_string())?;
                    }
                    let m = overlay::mount_overlay(
                        std::slice::from_ref(&real),
                        Some((&dir.join("rw-upper"), &dir.join("rw-work"))),
                        &dir.join("rw-merged"),
                        &dir.join("empty"),
                    )
                    .map_err(|e| format!("source={source}: {e}"))?;
                    let path = m.path().to_path_buf();
                    p.held.push(m);
                    path
                } else if *rw {
                    let copy = dir.join("file");
                    fs::copy(&real, &copy).map_err(|e| format!("source={source}: {e}"))?;
                    copy
                } else {
                    real
                };
                p.oci.push(bind(&real, &s.target, !rw));
                p.targets.push((s.target.clone(), is_dir));
            }
            Kind::Cache {
                id,
                from,
                source,
                sharing,
                mode,
                uid,
                gid,
            } => {
                // A seeded cache is its own per (id, what seeds it), as BuildKit keys it.
                let seed = match from {
                    Some(f) => Some((f, stage_layers(f)?)),
                    None => None,
                };
                let mut key = id.clone();
                if let Some((_, what)) = &seed {
                    let paths = match what {
                        From::Layers(l) => l.clone(),
                        From::Dir(d) => vec![d.clone()],
                    };
                    for p in paths {
                        key.push('\0');
                        key.push_str(&p.to_string_lossy());
                    }
                    key.push('\0');
                    key.push_str(source);
                }
                let base = crate::image::hex_of(&crate::image::sha256(key.as_bytes())).to_string();
                let mounts = src.store_root.join("cache-mounts");
                let mut instance = 0;
                let (cache, lock) = loop {
                    let name = match instance {
                        0 => base.clone(),
                        i => format!("{base}-{i}"),
                    };
                    let cache = mounts.join(name);
                    let tmp = src.work.join(format!("cache{n}"));
                    if !cache.exists() {
                        if let Some((f, what)) = &seed {
                            seed_cache(&tmp, what, source, &dir)
                                .map_err(|e| format!("from={f},source={source}: {e}"))?;
                        }
                    }
                    make_cache_dir(&cache, &tmp, *mode, *uid, *gid)?;
                    let lock = fs::File::open(&cache).map_err(|e| e.to_string())?;
                    use rustix::fs::FlockOperation as F;
                    let op = match sharing {
                        Sharing::Shared => F::LockShared,
                        Sharing::Locked => F::LockExclusive,
                        Sharing::Private => F::NonBlockingLockExclusive,
                    };
                    match rustix::fs::flock(lock.as_fd(), op) {
                        // The path still names the directory locked (prune may have removed
                        // it between the open and the lock): else take it again.
                        Ok(()) if same_file(&lock, &cache) => break (cache, lock),
                        Ok(()) => continue,
                        Err(rustix::io::Errno::WOULDBLOCK) => instance += 1,
                        Err(e) => return Err(format!("lock {}: {e}", cache.display())),
                    }
                };
                p.locks.push(lock);
                // Its mtime says when it was last used, for prune's order.
                if let Ok(d) = fs::File::open(&cache) {
                    let _ = d.set_modified(std::time::SystemTime::now());
                }
                p.oci.push(bind(&cache, &s.target, false));
                p.targets.push((s.target.clone(), true));
            }
            Kind::Tmpfs { size } => {
                let mut opts = vec!["nosuid".to_string(), "nodev".to_string()];
                if let Some(sz) = size {
                    opts.push(format!("size={sz}"));
                }
                p.oci.push(json!({"destination": s.target, "type": "tmpfs",
                                  "source": "tmpfs", "options": opts}));
                p.targets.push((s.target.clone(), true));
            }
            Kind::Secret {
                id,
                required: _,
                mode,
                uid,
                gid,
            } => {
                check_given(s, src.secrets, src.ssh)?;
                let Some(path) = src.secrets.get(id) else {
                    continue;
                };
                // A private copy with the mode and owner asked for, on a tmpfs of our own mount
                // namespace: never on disk, gone even if the build is killed.
                p.tmpfs.push(Tmpfs::mount(&dir)?);
                let copy = dir.join("secret");
                fs::copy(path, &copy)
                    .map_err(|e| format!("secret {id}: {}: {e}", path.display()))?;
                fs::set_permissions(&copy, fs::Permissions::from_mode(*mode))
                    .map_err(|e| e.to_string())?;
                std::os::unix::fs::chown(&copy, Some(*uid), Some(*gid))
                    .map_err(|e| e.to_string())?;
                p.oci.push(bind(&copy, &s.target, true));
                p.targets.push((s.target.clone(), false));
            }
            Kind::Ssh { id, required: _ } => {
                check_given(s, src.secrets, src.ssh)?;
                let Some(sock) = src.ssh.get(id) else {
                    continue;
                };
                if !sock.exists() {
                    return Err(format!("--ssh {id}={}: no such socket", sock.display()));
                }
                p.oci.push(bind(sock, &s.target, false));
                p.targets.push((s.target.clone(), false));
                p.env.push(format!("SSH_AUTH_SOCK={}", s.target));
            }
        }
    }
    Ok(p)
}

/// Fills `tmp` with the `source` path of a stage, image or directory (owners and modes kept,
/// the directory's own included): the first content of a `from=` cache. `work` is scratch
/// space for the read-only overlay of layers.
fn seed_cache(tmp: &Path, what: &From, source: &str, work: &Path) -> Result<(), String> {
    let _held;
    let root = match what {
        From::Dir(d) => Root::open(d).map_err(|e| e.to_string())?,
        From::Layers(layers) => {
            for d in ["seed", "seed-empty"] {
                fs::create_dir_all(work.join(d)).map_err(|e| e.to_string())?;
            }
            let m =
                overlay::mount_overlay(layers, None, &work.join("seed"), &work.join("seed-empty"))
                    .map_err(|e| e.to_string())?;
            let r = Root::open(m.path()).map_err(|e| e.to_string())?;
            _held = m;
            r
        }
    };
    let rel = crate::fsroot::inner(Path::new(source));
    let md = fs::metadata(root.real_path(&rel).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    if !md.is_dir() {
        return Err("not a directory".into());
    }
    fs::create_dir_all(tmp).map_err(|e| e.to_string())?;
    let op = super::copy::CopyOp {
        src: &root,
        ignore: None,
        sources: vec![rel.to_string_lossy().into_owned()],
        inline: Vec::new(),
        dest: "/".into(),
        owner: None,
        keep_owners: true,
        chmod: None,
        add: false,
        exclude: None,
        parents: false,
        checksum: None,
    };
    let into = Root::open(tmp).map_err(|e| e.to_string())?;
    super::copy::copy(&op, &into)?;
    use std::os::unix::fs::MetadataExt;
    fs::set_permissions(tmp, fs::Permissions::from_mode(md.mode() & 0o7777))
        .map_err(|e| e.to_string())?;
    std::os::unix::fs::chown(tmp, Some(md.uid()), Some(md.gid())).map_err(|e| e.to_string())
}

/// Creates the cache mount directory `cache` with its mode and owner unless it exists, through
/// `tmp` and a rename so that a build never sees a half-made one; a `tmp` already made (seeded)
/// keeps its own mode and owner.
fn make_cache_dir(cache: &Path, tmp: &Path, mode: u32, uid: u32, gid: u32) -> Result<(), String> {
    if cache.exists() {
        return Ok(());
    }
    if tmp.exists() {
        fs::create_dir_all(cache.parent().expect("has a parent")).map_err(|e| e.to_string())?;
        return install_dir(tmp, cache);
    }
    fs::create_dir_all(tmp).map_err(|e| e.to_string())?;
    fs::set_permissions(tmp, fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())?;
    std::os::unix::fs::chown(tmp, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    fs::create_dir_all(cache.parent().expect("has a parent")).map_err(|e| e.to_string())?;
    install_dir(tmp, cache)
}

/// Moves the prepared directory `tmp` to `cache` unless another build (or another stage of
/// this one) made `cache` meanwhile: theirs wins. A plain rename(2) would replace an empty
/// `cache` that its maker may already hold locked, and the two would then lock different
/// inodes while both bind-mounting the one path: `sharing=private` shared after all.
fn install_dir(tmp: &Path, cache: &Path) -> Result<(), String> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    let r = renameat_with(CWD, tmp, CWD, cache, RenameFlags::NOREPLACE);
    let _ = fs::remove_dir(tmp);
    match r {
        Ok(()) => Ok(()),
        Err(_) if cache.is_dir() => Ok(()),
        Err(e) => Err(format!("cannot create cache dir {}: {e}", cache.display())),
    }
}

/// Whether `path` still names the file open as `f`.
fn same_file(f: &fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two stages making one cache id at once: the second's directory must not replace the
    /// first's (which it may hold locked already), else both end up in one directory.
    #[test]
    fn a_cache_dir_made_meanwhile_is_kept() {
        let t = std::env::temp_dir().join(format!("brig-cache-dir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&t);
        let (cache, tmp) = (t.join("cache"), t.join("tmp"));
        fs::create_dir_all(&cache).unwrap();
        let held = fs::File::open(&cache).unwrap();
        fs::create_dir_all(&tmp).unwrap();
        install_dir(&tmp, &cache).unwrap();
        assert!(same_file(&held, &cache), "the held directory was replaced");
        assert!(!tmp.exists());
        // And with nothing there, the prepared directory becomes the cache dir.
        fs::remove_dir(&cache).unwrap();
        fs::create_dir_all(&tmp).unwrap();
        let prepared = fs::File::open(&tmp).unwrap();
        install_dir(&tmp, &cache).unwrap();
        assert!(same_file(&prepared, &cache));
        fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn specs() {
        let s = parse("type=secret,id=tok").unwrap();
        assert_eq!(s.target, "/run/secrets/tok");
        let s = parse("type=cache,target=/c").unwrap();
        assert!(matches!(s.kind, Kind::Cache { ref id, .. } if id == "/c"));
        let s = parse("target=/src,source=sub").unwrap();
        assert_eq!(
            s.kind,
            Kind::Bind {
                from: None,
                source: "sub".into(),
                rw: false
            }
        );
        let s = parse("type=bind,target=/src,rw").unwrap();
        assert!(matches!(s.kind, Kind::Bind { rw: true, .. }));
        let s = parse("type=ssh").unwrap();
        assert_eq!(s.target, SSH_DEFAULT_TARGET);
        for (bad, want) in [
            ("type=nfs,target=/x", "unknown mount type"),
            ("type=cache", "needs target"),
            ("type=tmpfs,target=/t,bogus=1", "unknown option \"bogus\""),
            ("type=cache,target=/c,sharing=weird", "sharing=weird"),
            ("type=bind,target=rel", "absolute"),
            ("type=secret", "needs id"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
