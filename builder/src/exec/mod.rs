//! The build: the stages the target needs form a graph (FROM another stage, COPY --from); each
//! stage runs in its own thread once the stages it reads are built, so independent stages (and
//! their layer compression) run at the same time. Within a stage, each instruction is applied
//! to an image config and a list of layers. COPY/ADD/RUN mount the stage's layers with
//! overlayfs ([`overlay`]), change the merged tree ([`copy`], [`run`]) and turn the upper
//! directory into a new layer. Only the stages the target needs are built.
//!
//! Owns the Dockerfile's semantics (ARG scoping, ENV over ARG, what each instruction records in
//! the config and history) and the undo of a failed build: cache entries, blobs and unpacked
//! layers this build added are removed (when no other build shares the store at that moment)
//! and no name in the store moves, so a failure leaves nothing half-written.
//!
//! The build cache ([`crate::cache`]): every step has a key ([`key::step`], a pure function of
//! the parent's key, the instruction, the stage's config and args and what the step reads),
//! gathered here. A layer step whose key has an entry reuses the recorded layer and runs
//! nothing; a metadata step (ENV, LABEL, ...) is applied (it is only a config change) and takes
//! the recorded history entry (WORKDIR also its recorded mkdir layer), so an unchanged rebuild yields byte-identical config and
//! manifest blobs: the same image digest and no new blob.

mod apply;
mod cached;
mod commit;
pub mod contexts;
pub mod copy;
pub mod fuse;
pub mod mounts;
pub mod overlay;
pub mod remote;
pub mod run;
mod schedule;
mod seccomp;
pub mod upper;

use crate::cache::{self, key};
use crate::dockerfile::{expand, ignore::Ignore, DfError, Dockerfile, Instr};
use crate::fsroot::Root;
use crate::image::config::ImageConfig;
use crate::image::layer;
use crate::image::platform::Platform;
use crate::image::rfc3339;
use crate::image::store::{Lock, Store, StoreError};
use crate::image::unpacked::{self, LayerError};
use crate::plan::{self, PlanError};
use crate::progress::Progress;
use crate::source::{self, SourceError};
use apply::instr_text;
use oci_spec::image::Descriptor;
use run::Network;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// A failed build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Dockerfile(#[from] DfError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, BuildError>;

/// The most expanded text one stage may put in its image config: ARG, ENV, LABEL and VOLUME
/// values and history lines, counted as they are recorded. Each word is bounded by
/// [`expand::MAX_EXPANDED_WORD`], but without this a Dockerfile repeating `ENV A=$BIG` (or one
/// LABEL with many `k=$BIG` pairs) would grow the config, and memory, by a MiB per line.
pub const MAX_STAGE_TEXT: usize = 16 << 20;

/// The PATH a stage's config gets when its base has none (docker's and buildah's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What `brig-build build` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    pub dockerfile: PathBuf,
    pub context: PathBuf,
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub runtime: PathBuf,
    pub network: Network,
    pub labels: BTreeMap<String, String>,
    /// SOURCE_DATE_EPOCH: created times and clamped layer mtimes.
    pub source_date_epoch: Option<i64>,
    /// `--progress` (`Quiet` for `--quiet`).
    pub progress: crate::progress::Mode,
    /// How layers are compressed when they leave the store (`--compression`): exported images
    /// ([`crate::image::compress`]) and exported cache.
    pub compression: layer::Compression,
    /// How base images are pulled from registries.
    pub registry: crate::registry::Options,
    /// `--platform`: the target platform (this host's unless given; a build for several is
    /// one build per platform, see [`Options::built_keys`]).
    pub platform: Platform,
    /// The emulators for RUN steps of other platforms than this host's, by platform
    /// (`crate::emulate::prepare`); a RUN for a platform missing here is an error.
    pub emulators: crate::emulate::Handlers,
    /// Cache keys recorded by this invocation's builds so far (those of other platforms): a
    /// step with one of them is taken from the cache even under `--no-cache`, so a stage that
    /// does not depend on the target platform (`FROM --platform=$BUILDPLATFORM`) runs once.
    pub built_keys: std::sync::Arc<Mutex<HashSet<String>>>,
    /// The keys this invocation's earlier builds (other platforms) used or recorded: with
    /// `cache_to`, a build exports them with its own, so the export of the last platform's
    /// build holds every platform's steps (a registry cache is one manifest, replaced).
    pub earlier_keys: std::sync::Arc<Mutex<Vec<String>>>,
    /// Use no cache entry (entries are still recorded).
    pub no_cache: bool,
    /// Use no cache entry in these stages (names or indexes).
    pub no_cache_filter: Vec<String>,
    /// Caches (`--cache-from type=local,src=DIR|type=registry,ref=REF`) to take missing
    /// entries from, in order.
    pub cache_from: Vec<cache::Location>,
    /// Where to export every step of this build (`--cache-to type=local,dest=DIR|
    /// type=registry,ref=REF`).
    pub cache_to: Option<cache::Location>,
    /// `--secret id=ID,src=PATH`: files for `RUN --mount=type=secret`.
    pub secrets: BTreeMap<String, PathBuf>,
    /// `--ssh ID=SOCKET`: agent sockets for `RUN --mount=type=ssh`.
    pub ssh: BTreeMap<String, PathBuf>,
    /// `--build-context NAME=...` (lower-cased names).
    pub build_contexts: BTreeMap<String, contexts::Named>,
    /// `--annotation KEY=VALUE` (and `manifest:KEY=VALUE`): the image manifest's annotations.
    pub annotations: BTreeMap<String, String>,
    /// `--add-host`, `--shm-size`, `--ulimit`: what every RUN step gets.
    pub run_extra: run::RunExtra,
}

/// A layer of an image being built.
#[derive(Debug, Clone)]
struct Layer {
    desc: Descriptor,
    diff_id: String,
    dir: PathBuf,
}

/// A stage's result so far.
#[derive(Debug, Clone)]
struct State {
    config: ImageConfig,
    layers: Vec<Layer>,
    /// ARGs declared in this stage (name → value).
    args: BTreeMap<String, String>,
    /// CMD came from the base image (ENTRYPOINT resets it).
    cmd_inherited: bool,
    /// The cache key of the last step.
    key: String,
    /// Bytes of Dockerfile text this stage put in its config so far (expanded ARG, ENV, LABEL
    /// and VOLUME values, history lines; replaced values still count), see [`MAX_STAGE_TEXT`].
    text: usize,
    /// The platform the stage builds for (`FROM --platform`, else the target's): its base
    /// images' entry, its RUN steps' emulator, the root of its keys.
    platform: Platform,
}

impl State {
    /// WORKDIR, `/` if none was set.
    fn workdir(&self) -> String {
        self.config
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into())
    }
}

/// The image a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    pub manifest: Descriptor,
    pub config_digest: String,
    /// The base images the build used, each once, in the order first used.
    pub materials: Vec<crate::attest::Material>,
}

struct Builder<'a> {
    opts: &'a Options,
    store: &'a Store,
    df: &'a Dockerfile,
    ignore: Ignore,
    context: Root,
    /// What this build added to the store (undone on failure): blob digests, layer diffIDs,
    /// cache keys.
    added: Mutex<Added>,
    work: tempfile::TempDir,
    steps: AtomicUsize,
    step: AtomicUsize,
    /// Numbers work areas, layer files and RUN containers (stages run in parallel threads).
    n: AtomicUsize,
    /// Held while a base image is resolved: two stages FROM one image pull it once.
    base_lock: Mutex<()>,
    /// Progress output, shared by the stages' threads.
    progress: Mutex<Progress>,
    /// The `--cache-from` caches, opened (a registry cache that does not exist is left out).
    cache_from: Vec<CacheFrom>,
    /// The base images used so far (for provenance and the SBOM).
    materials: Mutex<Vec<crate::attest::Material>>,
    /// Content digests of context files, remembered across builds (`STORE/sums`).
    sums: cache::sources::Sums,
}

/// An opened `--cache-from` cache.
enum CacheFrom {
    Local(PathBuf),
    Registry(Box<Mutex<cache::remote::RemoteCache>>),
}

#[derive(Default)]
struct Added {
    blobs: Vec<String>,
    layers: Vec<String>,
    keys: Vec<String>,
    /// Every key this build used or recorded (for `--cache-to`).
    used: Vec<String>,
}

/// Builds the Dockerfile; on success the image is in the store under `opts.tags`.
pub fn build(opts: &Options, store: &Store) -> Result<Built> {
    build_under(opts, store, None)
}

/// [`build`] under `held`, the store's build lock of a caller that builds several images
/// (a multi-platform build): a failure is undone through that lock when no other process holds
/// one (a lock of this build's own would keep the caller's from turning exclusive).
pub fn build_under(opts: &Options, store: &Store, held: Option<&Lock>) -> Result<Built> {
    let file = opts
        .dockerfile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into());
    let mut bytes = Vec::new();
    // One byte over the limit is enough to refuse the file.
    fs::File::open(&opts.dockerfile)
        .and_then(|f| {
            f.take(crate::dockerfile::MAX_DOCKERFILE_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(|e| BuildError::Other(format!("{}: {e}", opts.dockerfile.display())))?;
    let text = crate::dockerfile::decode(&file, bytes)?;
    let df = Dockerfile::parse(&file, &text)?;
    let mut progress = Progress::new(opts.progress);
    for n in &df.notices {
        progress.notice(&format!("[notice] {n}"));
    }
    let ignore = read_ignore(&opts.context, &opts.dockerfile);
    let context =
        Root::open(&opts.context).map_err(|e| BuildError::Other(format!("build context: {e}")))?;
    let mut cache_from = Vec::new();
    for l in &opts.cache_from {
        match l {
            cache::Location::Local(d) => cache_from.push(CacheFrom::Local(d.clone())),
            // parse refuses it for --cache-from.
            cache::Location::Inline => {}
            cache::Location::Registry(r) => {
                match cache::remote::RemoteCache::open(&opts.registry, r)
                    .map_err(|e| BuildError::Other(format!("--cache-from: {e}")))?
                {
                    Some(c) => cache_from.push(CacheFrom::Registry(Box::new(Mutex::new(c)))),
                    // As BuildKit: a cache not there yet is no reason to fail a build.
                    None => progress.notice(&format!(
                        "[notice] --cache-from: {r}: no build cache there (no such manifest, or an image without an inline cache), ignored"
                    )),
                }
            }
        }
    }
    let own = match held {
        Some(_) => None,
        None => Some(store.build_lock()?),
    };
    let build_lock = held
        .or(own.as_ref())
        .expect("either the caller's lock or our own");
    let b = Builder {
        opts,
        store,
        df: &df,
        ignore,
        context,
        added: Mutex::default(),
        work: store.tempdir("build-")?,
        steps: AtomicUsize::new(0),
        step: AtomicUsize::new(0),
        n: AtomicUsize::new(0),
        base_lock: Mutex::new(()),
        progress: Mutex::new(progress),
        cache_from,
        materials: Mutex::default(),
        sums: cache::sources::Sums::load(&store.root().join("sums")),
    };
    let mut r = b.build_all();
    b.sums.save();
    if let (Ok(_), Some(to)) = (&r, &opts.cache_to) {
        let used = {
            let mut all = lock(&opts.earlier_keys);
            all.extend(lock(&b.added).used.iter().cloned());
            all.clone()
        };
        let done = match to {
            cache::Location::Local(dir) => {
                cache::local::export_local(store, &used, dir, opts.compression)
                    .map_err(|e| e.to_string())
            }
            cache::Location::Registry(dest) => {
                cache::remote::push_cache(store, &opts.registry, &used, dest, opts.compression)
                    .map_err(|e| e.to_string())
            }
            // Written into the image's config by commit_image.
            cache::Location::Inline => Ok(0),
        };
        if let Err(e) = done {
            r = Err(BuildError::Other(format!("--cache-to: {e}")));
        }
    }
    {
        // The failed step reported its error; steps of other stages still open are cancelled.
        lock(&b.progress).finish(r.is_ok());
    }
    if r.is_err() {
        drop(b.work);
        let a = b.added.into_inner().unwrap_or_else(|e| e.into_inner());
        // Only when no other build runs: another one may already use what this one wrote.
        // Otherwise everything stays consistent (entries point at complete layers) and
        // `prune` reclaims it.
        if build_lock.try_exclusive() {
            let _ = store.undo(&a.keys, &a.blobs, &a.layers);
        }
    }
    drop(own);
    r
}

/// `.dockerignore` (or `<Dockerfile>.dockerignore` next to the Dockerfile, which wins).
fn read_ignore(context: &Path, dockerfile: &Path) -> Ignore {
    let specific = PathBuf::from(format!("{}.dockerignore", dockerfile.display()));
    for p in [specific, context.join(".dockerignore")] {
        if let Ok(t) = fs::read_to_string(&p) {
            return Ignore::parse(&t);
        }
    }
    Ignore::default()
}

impl Builder<'_> {
    fn err(&self, line: usize, msg: impl std::fmt::Display) -> BuildError {
        BuildError::Dockerfile(DfError::new(&self.df.file, line, msg.to_string()))
    }

    fn build_all(&self) -> Result<Built> {
        let plan = plan::plan(
            self.df,
            &plan::Request {
                build_args: &self.opts.build_args,
                target: self.opts.target.as_deref(),
                platform: &self.opts.platform,
                contexts: &self.opts.build_contexts,
            },
        )?;
        let (globals, target, need) = (plan.globals, plan.target, plan.needs);
        // Before any step runs: a stage whose RUN steps would need an emulator the build has
        // not prepared (its FROM --platform is none of the build's platforms).
        for &i in need.keys() {
            let stage = &self.df.stages[i];
            let has_run = stage
                .instrs
                .iter()
                .any(|l| matches!(l.instr, Instr::Run(_)));
            if let (Some(p), true) = (&stage.platform, has_run) {
                let p = self.stage_platform(i, p, &globals)?;
                if crate::emulate::needed(&p) && !self.opts.emulators.contains_key(&p.to_string()) {
                    return Err(self.err(
                        stage.line,
                        format!(
                            "FROM --platform={p}: not a platform of this build (--platform): \
                             its RUN steps would have no emulator; add {p} to --platform"
                        ),
                    ));
                }
            }
        }
        self.steps.store(
            need.keys()
                .map(|&i| 1 + self.df.stages[i].instrs.len())
                .sum(),
            Ordering::Relaxed,
        );
        let mut done = self.build_stages(&need, &globals)?;
        let mut st = done.remove(&target).expect("the target stage was built");
        for (k, v) in &self.opts.labels {
            st.config
                .config
                .labels
                .get_or_insert_with(BTreeMap::new)
                .insert(k.clone(), v.clone());
        }
        let used: HashSet<&String> = self
            .df
            .global_args
            .iter()
            .map(|(_, k, _)| k)
            .chain(self.df.stages.iter().flat_map(|s| {
                s.instrs.iter().flat_map(|l| match &l.instr {
                    Instr::Arg(a) => a.iter().map(|(k, _)| k).collect::<Vec<_>>(),
                    _ => Vec::new(),
                })
            }))
            .collect();
        for k in self.opts.build_args.keys() {
            if !used.contains(k) {
                lock(&self.progress).notice(&format!(
                    "[Warning] one or more build args were not consumed: {k}"
                ));
            }
        }
        self.commit_image(st)
    }

    fn now(&self) -> String {
        let t = self.opts.source_date_epoch.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
        rfc3339(t)
    }

    fn note(&self, f: impl FnOnce(&mut Added)) {
        f(&mut lock(&self.added));
    }

    /// A step starts: its progress id, also this thread's current step (RUN output goes
    /// there).
    fn progress(&self, _line: usize, text: &str) -> usize {
        let step = self.step.fetch_add(1, Ordering::Relaxed) + 1;
        let id = lock(&self.progress).step_start(step, self.steps.load(Ordering::Relaxed), text);
        CURRENT_STEP.with(|c| c.set(id));
        id
    }

    /// Ends step `id` with the outcome of `r` (`Ok(true)`: a cache hit).
    fn step_end<T>(&self, id: usize, r: Result<(T, bool)>) -> Result<T> {
        let mut p = lock(&self.progress);
        match r {
            Ok((v, cached)) => {
                if cached {
                    p.step_cached(id);
                } else {
                    p.step_done(id);
                }
                Ok(v)
            }
            Err(e) => {
                p.step_error(id, &e.to_string());
                Err(e)
            }
        }
    }

    fn build_stage(
        &self,
        i: usize,
        globals: &BTreeMap<String, String>,
        done: &HashMap<usize, State>,
    ) -> Result<State> {
        let df = self.df;
        let stage = &df.stages[i];
        let look = |n: &str| globals.get(n).cloned();
        let base =
            expand::word(&stage.base, &look, df.escape).map_err(|e| self.err(stage.line, e))?;
        let platform = match &stage.platform {
            Some(p) => self.stage_platform(i, p, globals)?,
            None => self.opts.platform.clone(),
        };
        let id = self.progress(stage.line, &format!("FROM {base}"));
        let from = match df.stage(&base).filter(|s| s.index < i) {
            Some(dep) => {
                let mut s = done[&dep.index].clone();
                s.args.clear();
                Ok((s, false))
            }
            None => self
                .named_image(&base, stage.line, "FROM")
                .and_then(|base| self.base_state(&base, stage.line, &platform))
                .map(|s| (s, false)),
        };
        let from_stage = df.stage(&base).filter(|s| s.index < i).is_some();
        let mut st = self.step_end(id, from)?;

        let use_cache = !self.opts.no_cache
            && !self.opts.no_cache_filter.iter().any(|f| {
                stage.name.as_deref() == Some(f.to_ascii_lowercase().as_str())
                    || f.parse::<usize>().ok() == Some(i)
            });
        if !from_stage {
            self.onbuild_triggers(&mut st, stage.line, &base, globals, done, use_cache)?;
        }
        for l in &stage.instrs {
            let text = instr_text(&l.instr);
            let id = self.progress(l.line, &text);
            let r = self
                .cached_step(&mut st, l, &text, globals, done, use_cache)
                .map(|hit| ((), hit));
            self.step_end(id, r)?;
        }
        Ok(st)
    }

    /// The ONBUILD triggers of a base image run first, as instructions of this stage (docker's
    /// order), and are not passed on: the new image has none of them (docker and BuildKit).
    /// Errors name the FROM line.
    fn onbuild_triggers(
        &self,
        st: &mut State,
        line: usize,
        base: &str,
        globals: &BTreeMap<String, String>,
        done: &HashMap<usize, State>,
        use_cache: bool,
    ) -> Result<()> {
        let Some(triggers) = st.config.config.on_build.take() else {
            return Ok(());
        };
        if triggers.is_empty() {
            return Ok(());
        }
        let text = format!("FROM scratch\n{}\n", triggers.join("\n"));
        let parsed = Dockerfile::parse(&self.df.file, &text)
            .map_err(|e| self.err(line, format!("ONBUILD trigger of {base}: {}", e.msg)))?;
        self.steps
            .fetch_add(parsed.stages[0].instrs.len(), Ordering::Relaxed);
        for l in &parsed.stages[0].instrs {
            let l = crate::dockerfile::Located {
                line,
                instr: l.instr.clone(),
            };
            let text = instr_text(&l.instr);
            let id = self.progress(line, &format!("ONBUILD {text}"));
            let r = self
                .cached_step(st, &l, &text, globals, done, use_cache)
                .map(|hit| ((), hit));
            self.step_end(id, r)?;
        }
        Ok(())
    }

    /// The platform `FROM --platform=SPEC` of stage `i` names (expanded with the global ARGs).
    fn stage_platform(
        &self,
        i: usize,
        spec: &str,
        globals: &BTreeMap<String, String>,
    ) -> Result<Platform> {
        let line = self.df.stages[i].line;
        let look = |n: &str| globals.get(n).cloned();
        let p = expand::word(spec, &look, self.df.escape).map_err(|e| self.err(line, e))?;
        Platform::parse(&p).map_err(|e| self.err(line, format!("FROM --platform: {e}")))
    }

    /// The state of a stage FROM `base` (or what `COPY --from` an image reads) for `platform`.
    fn base_state(&self, base: &str, line: usize, platform: &Platform) -> Result<State> {
        // One stage at a time: a second stage FROM the same image finds it in the store.
        let _one = lock(&self.base_lock);
        let img = source::resolve(self.store, base, &self.opts.registry, platform)
            .map_err(|e| self.err(line, e))?;
        let Some(img) = img else {
            let mut config = ImageConfig::scratch();
            config.set_platform(&platform.os, &platform.arch, &platform.variant);
            config.set_env("PATH", DEFAULT_PATH);
            // BuildKit's empty image has WorkingDir `/` (docker's legacy builder leaves it out).
            config.config.working_dir = Some("/".into());
            return Ok(State {
                config,
                layers: Vec::new(),
                args: BTreeMap::new(),
                cmd_inherited: false,
                key: key::scratch(&platform.to_string()),
                text: 0,
                platform: platform.clone(),
            });
        };
        let dirs = unpacked::layer_dirs(self.store, &img).map_err(|e| self.err(line, e))?;
        drop(_one);
        let material = crate::attest::Material {
            reference: crate::image::store::normalize(base),
            digest: img.manifest_digest.clone(),
        };
        let mut materials = lock(&self.materials);
        if !materials.contains(&material) {
            materials.push(material);
        }
        drop(materials);
        let layers = img
            .manifest
            .layers()
            .iter()
            .zip(img.config.rootfs.diff_ids.iter())
            .zip(dirs)
            .map(|((d, id), dir)| Layer {
                desc: d.clone(),
                diff_id: id.clone(),
                dir,
            })
            .collect();
        let mut config = img.config.clone();
        config.extra.remove("container_config");
        if config.env("PATH").is_none() {
            config.set_env("PATH", DEFAULT_PATH);
        }
        let cmd_inherited = config.config.cmd.is_some();
        Ok(State {
            config,
            layers,
            args: BTreeMap::new(),
            cmd_inherited,
            key: key::base_image(&img.config_digest, &platform.to_string()),
            text: 0,
            platform: platform.clone(),
        })
    }

    /// Expansion environment: ENV first, then the stage's ARGs.
    fn word(&self, st: &State, line: usize, s: &str) -> Result<String> {
        let look = |n: &str| st.config.env(n).or_else(|| st.args.get(n).cloned());
        expand::word(s, &look, self.df.escape).map_err(|e| self.err(line, e))
    }

    /// Expands each of `items` (COPY/ADD sources and destination), at most
    /// [`expand::MAX_EXPANDED_WORD`] bytes together, as the words of one list are.
    fn each_word(&self, st: &State, line: usize, items: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(items.len());
        let mut total = 0usize;
        for i in items {
            let w = self.word(st, line, i)?;
            total += w.len();
            if total > expand::MAX_EXPANDED_WORD {
                return Err(self.err(
                    line,
                    format!(
                        "expanded paths longer than {} bytes together (MAX_EXPANDED_WORD)",
                        expand::MAX_EXPANDED_WORD
                    ),
                ));
            }
            out.push(w);
        }
        Ok(out)
    }

    fn words(&self, st: &State, line: usize, s: &str) -> Result<Vec<String>> {
        let look = |n: &str| st.config.env(n).or_else(|| st.args.get(n).cloned());
        expand::words(s, &look, self.df.escape).map_err(|e| self.err(line, e))
    }

    /// `FROM`'s image: a named context's image if one is so named (a directory context cannot
    /// be a base), else the reference itself.
    fn named_image(&self, r: &str, line: usize, what: &str) -> Result<String> {
        match self.opts.build_contexts.get(&r.to_ascii_lowercase()) {
            None => Ok(r.to_string()),
            Some(contexts::Named::Image(i)) => Ok(i.clone()),
            Some(contexts::Named::Dir(d)) => Err(self.err(
                line,
                format!(
                    "{what} {r}: the build context {r:?} is a directory ({}); only oci-layout:// and docker-image:// contexts can be a base image",
                    d.display()
                ),
            )),
        }
    }
}

thread_local! {
    /// The progress id of the step this thread (a stage) runs.
    static CURRENT_STEP: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Locks `m`; a thread that panicked while holding it does not make the data unusable here
/// (every holder leaves it consistent between statements).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
