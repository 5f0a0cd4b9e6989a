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
//! The build cache ([`crate::image::cache`]): every step has a key, the sha256 of its parent's
//! key (a base image's key is its manifest digest; a stage built on another stage continues
//! that stage's chain), the instruction as parsed, with every flag (its `Debug` form, so flags
//! the parser learns later are part of the key without a change here), the stage's run config
//! (ENV, USER, WORKDIR, SHELL...) and build args in scope, which together fix what the
//! instruction expands to; SOURCE_DATE_EPOCH; for RUN the network; for COPY/ADD a digest of
//! the sources ([`copy::sources_digest`], `.dockerignore` honoured) or the key of the `--from`
//! stage or the digest of the `--from` image. A layer step whose key has an entry reuses the recorded layer
//! and runs nothing; a metadata step (ENV, LABEL, ...) is applied (it is only a config change)
//! and takes the recorded history entry, so an unchanged rebuild yields byte-identical config
//! and manifest blobs: the same image digest and no new blob.

pub mod contexts;
pub mod copy;
pub mod mounts;
pub mod overlay;
pub mod remote;
pub mod run;

use crate::dockerfile::{
    expand, ignore::Ignore, Command, CopyArgs, DfError, Dockerfile, Instr, RunArgs,
};
use crate::fsroot::Root;
use crate::image::config::{History, ImageConfig};
use crate::image::layer;
use crate::image::platform::Platform;
use crate::image::source::{self, SourceError};
use crate::image::store::{Store, StoreError};
use crate::image::{cache, rfc3339};
use crate::progress::Progress;
use oci_spec::image::{Descriptor, ImageManifestBuilder, MediaType};
use run::Network;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

/// A failed build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Dockerfile(#[from] DfError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Source(#[from] SourceError),
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
    /// How new layers are compressed (`--compression`).
    pub compression: layer::Compression,
    /// How base images are pulled from registries.
    pub registry: crate::registry::Options,
    /// `--platform`: the target platform (this host's unless given).
    pub platform: Platform,
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
}

/// The image a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    pub manifest: Descriptor,
    pub config_digest: String,
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
}

/// An opened `--cache-from` cache.
enum CacheFrom {
    Local(PathBuf),
    Registry(Box<Mutex<crate::registry::RemoteCache>>),
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
    opts.platform
        .check_buildable()
        .map_err(|e| BuildError::Other(format!("--platform: {e}")))?;
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
            cache::Location::Registry(r) => {
                match crate::registry::RemoteCache::open(&opts.registry, r)
                    .map_err(|e| BuildError::Other(format!("--cache-from: {e}")))?
                {
                    Some(c) => cache_from.push(CacheFrom::Registry(Box::new(Mutex::new(c)))),
                    // As BuildKit: a cache not there yet is no reason to fail a build.
                    None => progress.notice(&format!(
                        "[notice] --cache-from: {r}: no such cache in the registry, ignored"
                    )),
                }
            }
        }
    }
    let build_lock = store.build_lock()?;
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
    };
    let mut r = b.build_all();
    if let (Ok(_), Some(to)) = (&r, &opts.cache_to) {
        let used = lock(&b.added).used.clone();
        let done = match to {
            cache::Location::Local(dir) => {
                cache::export_local(store, &used, dir).map_err(|e| e.to_string())
            }
            cache::Location::Registry(dest) => {
                crate::registry::push_cache(store, &opts.registry, &used, dest)
                    .map_err(|e| e.to_string())
            }
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
    drop(build_lock);
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

    /// Global ARG values (defaults overridden by --build-arg), over BuildKit's automatic
    /// platform ARGs.
    fn global_args(&self) -> Result<BTreeMap<String, String>> {
        let mut m = Platform::automatic_args(&self.opts.platform);
        for (line, k, v) in &self.df.global_args {
            let val = match self.opts.build_args.get(k) {
                Some(v) => Some(v.clone()),
                None => match v {
                    Some(v) => {
                        let look = |n: &str| m.get(n).cloned();
                        Some(
                            expand::word(v, &look, self.df.escape)
                                .map_err(|e| self.err(*line, e))?,
                        )
                    }
                    None => None,
                },
            };
            if let Some(v) = val {
                m.insert(k.clone(), v);
            }
        }
        Ok(m)
    }

    /// The target and the stages it needs, each with the stages it needs directly.
    fn needed(
        &self,
        globals: &BTreeMap<String, String>,
    ) -> Result<(usize, BTreeMap<usize, Vec<usize>>)> {
        let target = match &self.opts.target {
            Some(t) => {
                self.df
                    .stage(t)
                    .ok_or_else(|| BuildError::Other(format!("target stage {t:?} not found")))?
                    .index
            }
            None => self.df.stages.len() - 1,
        };
        let look = |n: &str| globals.get(n).cloned();
        let mut need: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if need.contains_key(&i) {
                continue;
            }
            let mut deps = Vec::new();
            let st = &self.df.stages[i];
            let base =
                expand::word(&st.base, &look, self.df.escape).map_err(|e| self.err(st.line, e))?;
            if let Some(dep) = self.df.stage(&base) {
                if dep.index >= i {
                    return Err(self.err(
                        st.line,
                        format!("FROM {base}: stage is not defined before this one"),
                    ));
                }
                deps.push(dep.index);
            }
            for l in &st.instrs {
                if let Instr::Run(r) = &l.instr {
                    for f in r.mounts.iter().filter_map(|m| mounts::from_of(m)) {
                        let f = expand::word(f, &look, self.df.escape)
                            .map_err(|e| self.err(l.line, e))?;
                        if let Some(dep) = self.df.stage(&f).filter(|d| d.index < i) {
                            deps.push(dep.index);
                        }
                    }
                }
                if let Instr::Copy(CopyArgs { from: Some(f), .. }) = &l.instr {
                    let f =
                        expand::word(f, &look, self.df.escape).map_err(|e| self.err(l.line, e))?;
                    match self.df.stage(&f) {
                        Some(dep) if dep.index < i => deps.push(dep.index),
                        Some(_) => {
                            return Err(self.err(
                                l.line,
                                format!("COPY --from={f}: stage is not defined before this one"),
                            ))
                        }
                        None if self.opts.build_contexts.contains_key(&f.to_ascii_lowercase()) => {}
                        None if source::is_transport(&f) || f.contains(':') || f.contains('/') => {}
                        None => {
                            return Err(self.err(
                                l.line,
                                format!("COPY --from={f}: no stage named {f:?} (and it is not an image reference)"),
                            ))
                        }
                    }
                }
            }
            todo.extend(&deps);
            need.insert(i, deps);
        }
        Ok((target, need))
    }

    fn build_all(&self) -> Result<Built> {
        let globals = self.global_args()?;
        let (target, need) = self.needed(&globals)?;
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

    /// Builds the stages of `need`, each in its own thread as soon as the stages it needs are
    /// built, so independent stages run at the same time. The first error wins; stages not yet
    /// started then do not start.
    fn build_stages(
        &self,
        need: &BTreeMap<usize, Vec<usize>>,
        globals: &BTreeMap<String, String>,
    ) -> Result<HashMap<usize, State>> {
        let shared: (Mutex<Done>, Condvar) = (Mutex::new((HashMap::new(), None)), Condvar::new());
        std::thread::scope(|scope| {
            for (&i, deps) in need {
                let shared = &shared;
                scope.spawn(move || {
                    let (m, cv) = shared;
                    let mut g = lock(m);
                    while g.1.is_none() && !deps.iter().all(|d| g.0.contains_key(d)) {
                        g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
                    }
                    if g.1.is_some() {
                        return;
                    }
                    let inputs: HashMap<usize, State> =
                        deps.iter().map(|d| (*d, g.0[d].clone())).collect();
                    drop(g);
                    // Should the stage panic, the stages waiting for it must not wait forever.
                    let unwinding = Unwinding { shared, i };
                    let r = self.build_stage(i, globals, &inputs);
                    std::mem::forget(unwinding);
                    let mut g = lock(m);
                    match r {
                        Ok(st) => {
                            g.0.insert(i, st);
                        }
                        Err(e) => {
                            g.1.get_or_insert(e);
                        }
                    }
                    cv.notify_all();
                });
            }
        });
        let (done, err) = shared.0.into_inner().unwrap_or_else(|e| e.into_inner());
        match err {
            Some(e) => Err(e),
            None => Ok(done),
        }
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
        if let Some(p) = &stage.platform {
            let p = expand::word(p, &look, df.escape).map_err(|e| self.err(stage.line, e))?;
            Platform::parse(&p)
                .and_then(|p| p.check_buildable())
                .map_err(|e| self.err(stage.line, format!("FROM --platform: {e}")))?;
        }
        let id = self.progress(stage.line, &format!("FROM {base}"));
        let from = match df.stage(&base).filter(|s| s.index < i) {
            Some(dep) => {
                let mut s = done[&dep.index].clone();
                s.args.clear();
                Ok((s, false))
            }
            None => self
                .named_image(&base, stage.line, "FROM")
                .and_then(|base| self.base_state(&base, stage.line))
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

    /// One instruction of a stage, from the cache when `use_cache` and its key has an entry
    /// (then true), else applied and recorded.
    fn cached_step(
        &self,
        st: &mut State,
        l: &crate::dockerfile::Located,
        text: &str,
        globals: &BTreeMap<String, String>,
        done: &HashMap<usize, State>,
        use_cache: bool,
    ) -> Result<bool> {
        let line = l.line;
        let writes_layer = matches!(l.instr, Instr::Run(_) | Instr::Copy(_) | Instr::Add(_));
        if !writes_layer {
            // A config change only: apply it, then key it by the result.
            self.apply(st, line, &l.instr, text, globals, done)?;
            let key = self.step_key(st, &l.instr, "");
            let hit = if use_cache {
                self.cache_get(&key, line)?
            } else {
                None
            };
            let cached = hit.is_some();
            match hit {
                Some(e) => {
                    if let Some(h) = st.config.history.last_mut() {
                        *h = e.history;
                    }
                }
                None => self.record(st, &key, None)?,
            }
            st.key = key;
            return Ok(cached);
        }
        let inputs = self.step_inputs(st, line, &l.instr, done)?;
        let key = self.step_key(st, &l.instr, &inputs);
        let hit = if use_cache {
            self.cache_get(&key, line)?
        } else {
            None
        };
        let cached = match hit.and_then(|e| e.layer.clone().map(|l| (e, l))) {
            Some((e, layer)) => {
                let desc = Descriptor::new(
                    self.opts.compression.media_type(),
                    layer.size,
                    layer
                        .digest
                        .parse::<oci_spec::image::Digest>()
                        .map_err(|e| self.err(line, e))?,
                );
                st.layers.push(Layer {
                    desc,
                    diff_id: layer.diff_id.clone(),
                    dir: self.store.layer_dir(&layer.diff_id),
                });
                st.config.rootfs.diff_ids.push(layer.diff_id);
                st.config.history.push(e.history);
                true
            }
            None => {
                self.apply(st, line, &l.instr, text, globals, done)?;
                let last = st.layers.last().expect("a layer step adds a layer");
                let layer = cache::LayerRef {
                    digest: last.desc.digest().to_string(),
                    diff_id: last.diff_id.clone(),
                    size: last.desc.size(),
                };
                self.record(st, &key, Some(layer))?;
                false
            }
        };
        st.key = key;
        Ok(cached)
    }

    /// The key of a step applied to `st` (see the module doc); `inputs` is what the step reads
    /// besides the state.
    fn step_key(&self, st: &State, instr: &Instr, inputs: &str) -> String {
        let mut k = cache::Key::new(&st.key)
            .add("instr", format!("{instr:?}"))
            .add(
                "config",
                serde_json::to_vec(&st.config.config).expect("a config serializes"),
            )
            .add(
                "args",
                serde_json::to_vec(&st.args).expect("a map serializes"),
            )
            .add("inputs", inputs)
            // Clamps layer mtimes and sets history times: a different epoch, different results.
            .add("epoch", format!("{:?}", self.opts.source_date_epoch))
            // A recorded layer blob is in the compression of the build that made it.
            .add(
                "compression",
                self.opts.compression.media_type().to_string(),
            );
        if matches!(instr, Instr::Run(_)) {
            k = k.add("network", format!("{:?}", self.opts.network));
        }
        k.finish()
    }

    /// What a RUN/COPY/ADD reads besides the state: the network for RUN (in the key), the
    /// sources for COPY/ADD. A source that cannot be read gives a key that matches nothing, so
    /// the step runs and reports the real error.
    fn step_inputs(
        &self,
        st: &State,
        line: usize,
        instr: &Instr,
        done: &HashMap<usize, State>,
    ) -> Result<String> {
        let unique = |why: &str| format!("{why} {:?}", std::time::SystemTime::now());
        if let Instr::Run(r) = instr {
            // What bind mounts show the step is an input like COPY's sources.
            let mut inputs = Vec::new();
            for m in &r.mounts {
                let m = self.word(st, line, m)?;
                let Ok(spec) = mounts::parse(&m) else {
                    return Ok(unique("bad mount"));
                };
                mounts::check_given(&spec, &self.opts.secrets, &self.opts.ssh)
                    .map_err(|e| self.err(line, format!("RUN --mount: {e}")))?;
                let mounts::Kind::Bind { from, source, .. } = &spec.kind else {
                    continue;
                };
                let digest = match from {
                    None => copy::sources_digest(
                        &self.context,
                        Some(&self.ignore),
                        std::slice::from_ref(source),
                    ),
                    Some(f) => match (
                        self.df.stage(f),
                        self.opts.build_contexts.get(&f.to_ascii_lowercase()),
                    ) {
                        (Some(s), _) => match done.get(&s.index) {
                            Some(s) => Ok(format!("stage {}", s.key)),
                            None => return Ok(unique("unbuilt")),
                        },
                        (None, Some(contexts::Named::Dir(d))) => Root::open(d).and_then(|root| {
                            copy::sources_digest(&root, None, std::slice::from_ref(source))
                        }),
                        _ => return Ok(unique("unknown from")),
                    },
                };
                match digest {
                    Ok(d) => inputs.push(format!("bind {} {d}", spec.target)),
                    Err(e) => return Ok(unique(&format!("unreadable {e}"))),
                }
            }
            return Ok(inputs.join("\n"));
        }
        let (Instr::Copy(a) | Instr::Add(a)) = instr else {
            return Ok(String::new());
        };
        let mut paths = self.each_word(st, line, &a.paths)?;
        paths.pop();
        paths.retain(|p| !p.starts_with("<<"));
        let Some(f) = &a.from else {
            return Ok(
                match copy::sources_digest(&self.context, Some(&self.ignore), &paths) {
                    Ok(d) => d,
                    Err(e) => format!("unreadable {e} {:?}", std::time::SystemTime::now()),
                },
            );
        };
        let f = self.word(st, line, f)?;
        let from = match self.df.stage(&f) {
            Some(s) => match done.get(&s.index) {
                Some(s) => s.key.clone(),
                None => return Ok(unique("unbuilt")),
            },
            None => match self.opts.build_contexts.get(&f.to_ascii_lowercase()) {
                Some(contexts::Named::Dir(d)) => {
                    match Root::open(d).and_then(|root| copy::sources_digest(&root, None, &paths)) {
                        Ok(digest) => format!("context {digest}"),
                        Err(e) => return Ok(unique(&format!("unreadable {e}"))),
                    }
                }
                Some(contexts::Named::Image(i)) => self.base_state(i, line)?.key,
                None => self.base_state(&f, line)?.key,
            },
        };
        Ok(format!("from {from} {}", paths.join("\n")))
    }

    /// The cache entry for `key`: from the store, else from a `--cache-from` directory.
    fn cache_get(&self, key: &str, line: usize) -> Result<Option<cache::Entry>> {
        if let Some(e) = self.store.cache_get(key) {
            self.note(|a| a.used.push(key.to_string()));
            return Ok(Some(e));
        }
        for from in &self.cache_from {
            let found = match from {
                CacheFrom::Local(dir) => cache::import_local(self.store, dir, key),
                CacheFrom::Registry(c) => lock(c).import(self.store, key),
            };
            if found.map_err(|e| self.err(line, format!("--cache-from: {e}")))? {
                if let Some(e) = self.store.cache_get(key) {
                    self.note(|a| a.used.push(key.to_string()));
                    return Ok(Some(e));
                }
            }
        }
        Ok(None)
    }

    /// Records the last step of `st` under `key`.
    fn record(&self, st: &State, key: &str, layer: Option<cache::LayerRef>) -> Result<()> {
        let history = st
            .config
            .history
            .last()
            .cloned()
            .expect("every step adds a history entry");
        self.store
            .cache_put(key, &cache::Entry { history, layer })?;
        self.note(|a| {
            a.keys.push(key.to_string());
            a.used.push(key.to_string());
        });
        Ok(())
    }

    fn base_state(&self, base: &str, line: usize) -> Result<State> {
        // One stage at a time: a second stage FROM the same image finds it in the store.
        let _one = lock(&self.base_lock);
        let img = source::resolve(self.store, base, &self.opts.registry)
            .map_err(|e| self.err(line, e))?;
        let Some(img) = img else {
            let mut config = ImageConfig::scratch();
            config.set_env("PATH", DEFAULT_PATH);
            return Ok(State {
                config,
                layers: Vec::new(),
                args: BTreeMap::new(),
                cmd_inherited: false,
                key: cache::Key::new("").add("from", "scratch").finish(),
                text: 0,
            });
        };
        let dirs = source::layer_dirs(self.store, &img).map_err(|e| self.err(line, e))?;
        drop(_one);
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
            key: cache::Key::new("")
                .add("from", &img.manifest_digest)
                .finish(),
            text: 0,
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

    fn history(&self, st: &mut State, text: &str, empty: bool) {
        st.text = st.text.saturating_add(text.len());
        st.config.history.push(History {
            created: Some(self.now()),
            created_by: Some(text.to_string()),
            comment: Some("brig-build".into()),
            empty_layer: empty,
            ..Default::default()
        });
    }

    fn shell(st: &State) -> Vec<String> {
        st.config
            .config
            .shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    fn argv(st: &State, c: &Command) -> Vec<String> {
        match c {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) => {
                let mut v = Self::shell(st);
                v.push(s.clone());
                v
            }
        }
    }

    fn apply(
        &self,
        st: &mut State,
        line: usize,
        instr: &Instr,
        text: &str,
        globals: &BTreeMap<String, String>,
        done: &HashMap<usize, State>,
    ) -> Result<()> {
        match instr {
            Instr::From { .. } => unreachable!("FROM starts a stage"),
            Instr::Arg(args) => {
                let mut parts = Vec::new();
                for (k, v) in args {
                    let val = match (self.opts.build_args.get(k), v) {
                        (Some(b), _) => Some(b.clone()),
                        (None, Some(d)) => Some(self.word(st, line, d)?),
                        (None, None) => globals.get(k).cloned(),
                    };
                    self.grow(st, line, k.len() + val.as_ref().map_or(0, String::len))?;
                    match &val {
                        Some(v) => {
                            parts.push(format!("{k}={v}"));
                            st.args.insert(k.clone(), v.clone());
                        }
                        None => parts.push(k.clone()),
                    }
                }
                self.history(st, &format!("ARG {}", parts.join(" ")), true);
            }
            Instr::Env(pairs) => {
                let mut shown = Vec::new();
                for (k, v) in pairs {
                    let v = self.word(st, line, v)?;
                    self.grow(st, line, k.len() + v.len())?;
                    st.config.set_env(k, &v);
                    shown.push(format!("{k}={v}"));
                }
                self.history(st, &format!("ENV {}", shown.join(" ")), true);
            }
            Instr::Label(pairs) => {
                let mut shown = Vec::new();
                for (k, v) in pairs {
                    let k = self.word(st, line, k)?;
                    let v = self.word(st, line, v)?;
                    self.grow(st, line, k.len() + v.len())?;
                    shown.push(format!("{k}={v}"));
                    cfg(st)
                        .labels
                        .get_or_insert_with(BTreeMap::new)
                        .insert(k, v);
                }
                self.history(st, &format!("LABEL {}", shown.join(" ")), true);
            }
            Instr::Maintainer(m) => {
                st.config.author = Some(m.clone());
                self.history(st, text, true);
            }
            Instr::Workdir(w) => {
                let w = self.word(st, line, w)?;
                let cur = cfg(st).working_dir.clone().unwrap_or_else(|| "/".into());
                let p = if w.starts_with('/') {
                    PathBuf::from(&w)
                } else {
                    Path::new(&cur).join(&w)
                };
                cfg(st).working_dir = Some(clean_abs(&p));
                let shown = format!(
                    "WORKDIR {}",
                    cfg(st).working_dir.clone().unwrap_or_default()
                );
                self.history(st, &shown, true);
            }
            Instr::User(u) => {
                let u = self.word(st, line, u)?;
                cfg(st).user = Some(u.clone());
                self.history(st, &format!("USER {u}"), true);
            }
            Instr::Expose(e) => {
                let ports = self.words(st, line, e)?;
                for p in ports {
                    let p = if p.contains('/') {
                        p.to_ascii_lowercase()
                    } else {
                        format!("{p}/tcp")
                    };
                    let (num, proto) = p.split_once('/').expect("has a /");
                    let ok_num = num.split('-').all(|n| n.parse::<u16>().is_ok());
                    if !ok_num || !matches!(proto, "tcp" | "udp" | "sctp") {
                        return Err(self.err(line, format!("EXPOSE: invalid port {p:?}")));
                    }
                    cfg(st)
                        .exposed_ports
                        .get_or_insert_with(BTreeMap::new)
                        .insert(p, json!({}));
                }
                self.history(st, text, true);
            }
            Instr::Volume(v) => {
                for v in v {
                    let v = self.word(st, line, v)?;
                    if v.is_empty() {
                        return Err(self.err(line, "VOLUME: empty path"));
                    }
                    self.grow(st, line, v.len())?;
                    cfg(st)
                        .volumes
                        .get_or_insert_with(BTreeMap::new)
                        .insert(v, json!({}));
                }
                self.history(st, text, true);
            }
            Instr::StopSignal(s) => {
                let s = self.word(st, line, s)?;
                let ok = s.parse::<u32>().is_ok()
                    || (s.starts_with("SIG")
                        && s.len() > 3
                        && s[3..]
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-'));
                if !ok {
                    return Err(self.err(line, format!("STOPSIGNAL: invalid signal {s:?}")));
                }
                cfg(st).stop_signal = Some(s);
                self.history(st, text, true);
            }
            Instr::Shell(v) => {
                cfg(st).shell = Some(v.clone());
                self.history(st, text, true);
            }
            Instr::Cmd(c) => {
                cfg(st).cmd = Some(Self::argv(st, c));
                st.cmd_inherited = false;
                self.history(st, text, true);
            }
            Instr::Entrypoint(c) => {
                cfg(st).entrypoint = Some(Self::argv(st, c));
                if st.cmd_inherited {
                    cfg(st).cmd = None;
                    st.cmd_inherited = false;
                }
                self.history(st, text, true);
            }
            Instr::Onbuild(t) => {
                cfg(st)
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(t.clone());
                self.history(st, text, true);
            }
            Instr::Healthcheck(h) => {
                let v = match h {
                    None => json!({"Test": ["NONE"]}),
                    Some(h) => {
                        let test = match &h.cmd {
                            Command::Exec(v) => {
                                let mut t = vec!["CMD".to_string()];
                                t.extend(v.iter().cloned());
                                t
                            }
                            Command::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                        };
                        let mut o = json!({"Test": test});
                        for (k, v) in &h.flags {
                            let v = v.clone().unwrap_or_default();
                            let (key, val) = match k.as_str() {
                                "retries" => (
                                    "Retries",
                                    json!(v.parse::<u64>().map_err(|_| self
                                        .err(line, format!("HEALTHCHECK: bad --retries={v}")))?),
                                ),
                                "interval" => (
                                    "Interval",
                                    json!(duration_ns(&v).ok_or_else(|| self
                                        .err(line, format!("HEALTHCHECK: bad --interval={v}")))?),
                                ),
                                "timeout" => (
                                    "Timeout",
                                    json!(duration_ns(&v).ok_or_else(|| self
                                        .err(line, format!("HEALTHCHECK: bad --timeout={v}")))?),
                                ),
                                "start-period" => (
                                    "StartPeriod",
                                    json!(duration_ns(&v).ok_or_else(|| self.err(
                                        line,
                                        format!("HEALTHCHECK: bad --start-period={v}")
                                    ))?),
                                ),
                                _ => (
                                    "StartInterval",
                                    json!(duration_ns(&v).ok_or_else(|| self.err(
                                        line,
                                        format!("HEALTHCHECK: bad --start-interval={v}")
                                    ))?),
                                ),
                            };
                            o[key] = val;
                        }
                        o
                    }
                };
                cfg(st).healthcheck = Some(v);
                self.history(st, text, true);
            }
            Instr::Run(r) => self.run_step(st, line, r, text, done)?,
            Instr::Copy(a) => self.copy_step(st, line, a, false, text, done)?,
            Instr::Add(a) => self.copy_step(st, line, a, true, text, done)?,
        }
        self.grow(st, line, 0)
    }

    /// Counts `n` more bytes of expanded text kept in the stage's config (see
    /// [`MAX_STAGE_TEXT`]); history lines are counted when recorded.
    fn grow(&self, st: &mut State, line: usize, n: usize) -> Result<()> {
        st.text = st.text.saturating_add(n);
        if st.text > MAX_STAGE_TEXT {
            return Err(self.err(
                line,
                format!(
                    "the stage's ARG, ENV, LABEL and VOLUME values and history lines exceed \
                     {MAX_STAGE_TEXT} bytes (MAX_STAGE_TEXT)"
                ),
            ));
        }
        Ok(())
    }

    /// A fresh work area: upper, work, merged, empty.
    fn area(&self) -> Result<PathBuf> {
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

    fn mount_rw(&self, st: &State, line: usize) -> Result<(PathBuf, overlay::Mounted)> {
        let a = self.area()?;
        let lowers: Vec<PathBuf> = st.layers.iter().map(|l| l.dir.clone()).collect();
        let m = overlay::mount_overlay(
            &lowers,
            Some((&a.join("upper"), &a.join("work"))),
            &a.join("merged"),
            &a.join("empty"),
        )
        .map_err(|e| self.err(line, e))?;
        Ok((a, m))
    }

    fn run_step(
        &self,
        st: &mut State,
        line: usize,
        r: &RunArgs,
        text: &str,
        done: &HashMap<usize, State>,
    ) -> Result<()> {
        let c = &r.cmd;
        let network = match r.network.as_deref() {
            None => self.opts.network,
            Some(n) => run::parse_network(n).map_err(|e| self.err(line, e))?,
        };
        let mut specs = Vec::new();
        for m in &r.mounts {
            let m = self.word(st, line, m)?;
            specs.push(
                mounts::parse(&m).map_err(|e| self.err(line, format!("RUN --mount={m}: {e}")))?,
            );
        }
        let (area, m) = self.mount_rw(st, line)?;
        let merged = area.join("merged");
        let root = Root::open(&merged).map_err(|e| self.err(line, e))?;
        // Mount points the runtime needs: made now, removed from the layer after.
        let mut made: Vec<PathBuf> = Vec::new();
        for d in ["proc", "sys", "dev"] {
            let (_, created) = root
                .mkdir_all(Path::new(d), 0o755)
                .map_err(|e| self.err(line, e))?;
            made.extend(created);
        }
        // An empty file as a mount point (and its parent dirs), unless there is one.
        let touch = |rel: &Path, made: &mut Vec<PathBuf>| -> Result<()> {
            if root.open_at(rel, rustix::fs::OFlags::PATH).is_ok() {
                return Ok(());
            }
            let (pfd, created) = root
                .mkdir_all(rel.parent().unwrap_or(Path::new("")), 0o755)
                .map_err(|e| self.err(line, e))?;
            made.extend(created);
            rustix::fs::openat(
                &pfd,
                rel.file_name().expect("file has a name"),
                rustix::fs::OFlags::CREATE
                    | rustix::fs::OFlags::WRONLY
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::from_raw_mode(0o644),
            )
            .map_err(|e| self.err(line, std::io::Error::from(e)))?;
            made.push(rel.to_path_buf());
            Ok(())
        };
        let extra = self.run_mounts(st, line, &specs, &area, done)?;
        for (t, is_dir) in &extra.targets {
            let rel = Path::new(t.trim_start_matches('/'));
            if *is_dir {
                let (_, created) = root.mkdir_all(rel, 0o755).map_err(|e| self.err(line, e))?;
                made.extend(created);
            } else {
                touch(rel, &mut made)?;
            }
        }
        for f in run::host_net_files(network) {
            touch(Path::new(f.trim_start_matches('/')), &mut made)?;
        }
        let cwd = st
            .config
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into());
        root.mkdir_all(Path::new(&cwd), 0o755)
            .map_err(|e| self.err(line, e))?;
        let (uid, gid) = match st.config.config.user.as_deref() {
            None | Some("") => (0, 0),
            Some(u) => run::lookup_user(&root, u).map_err(|e| self.err(line, e))?,
        };
        let mut env: Vec<String> = st.config.config.env.clone().unwrap_or_default();
        for (k, v) in &st.args {
            if st.config.env(k).is_none() {
                env.push(format!("{k}={v}"));
            }
        }
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        env.extend(extra.env.iter().cloned());
        let mut extra_oci = extra.oci.clone();
        let args = match &r.heredoc {
            // A heredoc with a shebang is a script file run by its interpreter (BuildKit).
            Some(h) if h.content.starts_with("#!") => {
                let script = area.join("heredoc-script");
                fs::write(&script, &h.content).map_err(|e| self.err(line, e))?;
                fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                    .map_err(|e| self.err(line, e))?;
                let dst = format!("/dev/pipes/{}", h.name);
                extra_oci.push(json!({"destination": dst, "type": "bind",
                                      "source": script, "options": ["rbind", "ro"]}));
                vec![dst]
            }
            _ => Self::argv(st, c),
        };
        let proc_ = run::Process {
            args: args.clone(),
            env,
            uid,
            gid,
            cwd,
        };
        let mut spec = run::spec(&proc_, &merged, network);
        if let Some(ms) = spec["mounts"].as_array_mut() {
            ms.extend(extra_oci);
        }
        fs::write(
            area.join("config.json"),
            serde_json::to_vec_pretty(&spec).expect("json"),
        )
        .map_err(|e| self.err(line, e))?;
        let n = area.file_name().map(|n| n.to_string_lossy().into_owned());
        let id = format!(
            "brig-build-{}-{}",
            std::process::id(),
            n.unwrap_or_default()
        );
        let code = run::run_bundle(
            &self.opts.runtime,
            &self.work.path().join("state"),
            &area,
            &id,
            &mut |d| lock(&self.progress).run_output(CURRENT_STEP.with(|c| c.get()), d),
        )
        .map_err(|e| self.err(line, format!("RUN: cannot start the runtime: {e}")))?;
        drop(root);
        extra.finish().map_err(|e| self.err(line, e))?;
        m.unmount().map_err(|e| self.err(line, e))?;
        if code != 0 {
            return Err(self.err(
                line,
                format!("RUN {} returned a non-zero code: {code}", show_cmd(c)),
            ));
        }
        let upper = area.join("upper");
        for p in made.iter().rev() {
            let up = upper.join(p);
            if let Ok(md) = up.symlink_metadata() {
                if md.is_dir() {
                    let _ = fs::remove_dir(&up);
                } else if md.len() == 0 {
                    let _ = fs::remove_file(&up);
                }
            }
        }
        let _ = text;
        let by = format!("RUN {}", args.join(" "));
        self.commit_layer(st, line, &upper, &by)
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

    /// ADD's URL and git sources: fetched into a staging directory of this step, which
    /// becomes the copy's source root (`sources` renamed into it). None if all are local.
    fn fetch_remotes(
        &self,
        line: usize,
        a: &CopyArgs,
        sources: &mut Vec<String>,
    ) -> Result<Option<Root>> {
        let remotes: Vec<Option<remote::Remote>> =
            sources.iter().map(|s| remote::classify(s)).collect();
        if remotes.iter().all(Option::is_none) {
            return Ok(None);
        }
        if remotes.iter().any(Option::is_none) {
            return Err(self.err(
                line,
                "ADD: URL and git sources cannot be mixed with local sources in one ADD",
            ));
        }
        let staging = self.area()?.join("remote");
        let mut names = Vec::new();
        for (i, r) in remotes.into_iter().flatten().enumerate() {
            if a.checksum.is_some() && matches!(r, remote::Remote::Git { .. }) {
                return Err(self.err(line, "ADD --checksum: not supported for git sources"));
            }
            let n = remote::fetch(&r, &staging.join(i.to_string()), a.keep_git_dir)
                .map_err(|e| self.err(line, format!("ADD: {e}")))?;
            names.push(format!("{i}/{n}"));
        }
        *sources = names;
        Root::open(&staging)
            .map(Some)
            .map_err(|e| self.err(line, e))
    }

    /// Sets up a RUN's `--mount`s in its work area.
    fn run_mounts(
        &self,
        st: &State,
        line: usize,
        specs: &[mounts::Spec],
        area: &Path,
        done: &HashMap<usize, State>,
    ) -> Result<mounts::Prepared> {
        let mut stage_layers = |f: &str| -> std::result::Result<mounts::From, String> {
            let f = self.word(st, line, f).map_err(|e| e.to_string())?;
            match self.df.stage(&f) {
                Some(s) => Ok(mounts::From::Layers(
                    done.get(&s.index)
                        .ok_or_else(|| format!("from={f}: stage not built before this one"))?
                        .layers
                        .iter()
                        .map(|l| l.dir.clone())
                        .collect(),
                )),
                None => match self.opts.build_contexts.get(&f.to_ascii_lowercase()) {
                    Some(contexts::Named::Dir(d)) => Ok(mounts::From::Dir(d.clone())),
                    _ => Err(format!(
                        "from={f}: no stage or directory build context named {f:?}"
                    )),
                },
            }
        };
        let src = mounts::Sources {
            store_root: self.store.root(),
            context: &self.context,
            secrets: &self.opts.secrets,
            ssh: &self.opts.ssh,
            work: &area.join("mounts"),
        };
        mounts::prepare(specs, &src, &mut stage_layers)
            .map_err(|e| self.err(line, format!("RUN --mount: {e}")))
    }

    fn copy_step(
        &self,
        st: &mut State,
        line: usize,
        a: &CopyArgs,
        add: bool,
        text: &str,
        done: &HashMap<usize, State>,
    ) -> Result<()> {
        let mut paths = self.each_word(st, line, &a.paths)?;
        let dest_raw = paths.pop().expect("parser checked two paths");
        let wd = st
            .config
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into());
        let mut dest = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{}/{}", wd.trim_end_matches('/'), dest_raw)
        };
        if dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.") {
            dest = format!("{}/", clean_abs(Path::new(&dest)).trim_end_matches('/'));
        }
        let mut inline = Vec::new();
        let mut sources = Vec::new();
        for p in paths {
            match p
                .strip_prefix("<<")
                .map(|n| n.trim_start_matches('-').trim_matches(['"', '\'']))
            {
                Some(name) => {
                    let h = a
                        .heredocs
                        .iter()
                        .find(|h| h.name == name)
                        .ok_or_else(|| self.err(line, format!("heredoc {name} not found")))?;
                    let content = if h.quoted {
                        h.content.clone()
                    } else {
                        self.word(st, line, &h.content.replace('"', "\\\""))?
                    };
                    inline.push((name.to_string(), content));
                }
                None => sources.push(p),
            }
        }
        let remote_root = if add {
            self.fetch_remotes(line, a, &mut sources)?
        } else {
            None
        };
        let (area, m) = self.mount_rw(st, line)?;
        let merged = area.join("merged");
        let dst = Root::open(&merged).map_err(|e| self.err(line, e))?;
        let owner = match &a.chown {
            Some(c) => {
                let c = self.word(st, line, c)?;
                Some(
                    run::lookup_user(&dst, &c)
                        .map_err(|e| self.err(line, format!("--chown={c}: {e}")))?,
                )
            }
            None => None,
        };
        let chmod = match &a.chmod {
            Some(c) => {
                Some(copy::parse_chmod(&self.word(st, line, c)?).map_err(|e| self.err(line, e))?)
            }
            None => None,
        };
        // The source root: the context, another stage (read-only overlay) or an image.
        let mut _src_mount = None;
        let src_tmp;
        let from_root;
        let (src_root, ignore) = match &a.from {
            None => match &remote_root {
                Some(r) => (r, None),
                None => (&self.context, Some(&self.ignore)),
            },
            Some(f) => {
                let f = self.word(st, line, f)?;
                let named = match self.df.stage(&f) {
                    None => self.opts.build_contexts.get(&f.to_ascii_lowercase()),
                    Some(_) => None,
                };
                if let Some(contexts::Named::Dir(d)) = named {
                    from_root =
                        Root::open(d).map_err(|e| self.err(line, format!("--from={f}: {e}")))?;
                } else {
                    let layers: Vec<PathBuf> = match (self.df.stage(&f), named) {
                        (Some(s), _) => done
                            .get(&s.index)
                            .ok_or_else(|| {
                                self.err(line, format!("COPY --from={f}: stage not built"))
                            })?
                            .layers
                            .iter()
                            .map(|l| l.dir.clone())
                            .collect(),
                        (None, named) => {
                            let r = match named {
                                Some(contexts::Named::Image(r)) => r.clone(),
                                _ => f.clone(),
                            };
                            let s = self.base_state(&r, line)?;
                            s.layers.iter().map(|l| l.dir.clone()).collect()
                        }
                    };
                    src_tmp = self.area()?;
                    let mm = overlay::mount_overlay(
                        &layers,
                        None,
                        &src_tmp.join("merged"),
                        &src_tmp.join("empty"),
                    )
                    .map_err(|e| self.err(line, e))?;
                    from_root = Root::open(mm.path()).map_err(|e| self.err(line, e))?;
                    _src_mount = Some(mm);
                }
                (&from_root, None)
            }
        };
        let op = copy::CopyOp {
            src: src_root,
            ignore,
            sources,
            inline,
            dest,
            owner,
            keep_owners: a.from.is_some(),
            chmod,
            // Remote sources are never extracted.
            add: add && remote_root.is_none(),
            exclude: (!a.excludes.is_empty()).then(|| Ignore::parse(&a.excludes.join("\n"))),
            parents: a.parents,
            checksum: a.checksum.clone(),
        };
        let kw = if add { "ADD" } else { "COPY" };
        copy::copy(&op, &dst).map_err(|e| self.err(line, format!("{kw} failed: {e}")))?;
        drop(dst);
        m.unmount().map_err(|e| self.err(line, e))?;
        let by = text.to_string();
        self.commit_layer(st, line, &area.join("upper"), &by)
    }

    /// Turns `upper` into a layer blob and an unpacked layer of the store; appends it.
    fn commit_layer(&self, st: &mut State, line: usize, upper: &Path, by: &str) -> Result<()> {
        let n = self.n.fetch_add(1, Ordering::Relaxed) + 1;
        let blob_tmp = self.work.path().join(format!("layer{n}.tar.gz"));
        let w = layer::write(
            upper,
            &blob_tmp,
            layer::Options {
                clamp_mtime: self.opts.source_date_epoch,
                compression: self.opts.compression,
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
            self.opts.compression.media_type(),
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

    fn commit_image(&self, mut st: State) -> Result<Built> {
        // The time of the last step, as docker does: a rebuild from the cache gives the same
        // config, hence the same image.
        st.config.created = st
            .config
            .history
            .last()
            .and_then(|h| h.created.clone())
            .or_else(|| Some(self.now()));
        st.config.rootfs.diff_ids = st.layers.iter().map(|l| l.diff_id.clone()).collect();
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
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(cdesc)
            .layers(st.layers.iter().map(|l| l.desc.clone()).collect::<Vec<_>>())
            .build()
            .map_err(bad)?;
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
        })
    }
}

/// The stages built so far and the first error (see `Builder::build_stages`).
type Done = (HashMap<usize, State>, Option<BuildError>);

/// Alive while stage `i` builds; dropped only if that panics: records an error for it and
/// wakes the stages waiting.
struct Unwinding<'a> {
    shared: &'a (Mutex<Done>, Condvar),
    i: usize,
}

impl Drop for Unwinding<'_> {
    fn drop(&mut self) {
        let (m, cv) = self.shared;
        lock(m)
            .1
            .get_or_insert_with(|| BuildError::Other(format!("stage {} panicked", self.i)));
        cv.notify_all();
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

fn cfg(st: &mut State) -> &mut crate::image::config::RunConfig {
    &mut st.config.config
}

/// `/a/./b/../c` → `/a/c`.
fn clean_abs(p: &Path) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    format!("/{}", out.join("/"))
}

/// `30s`, `1m30s`, `500ms`, `2h` → nanoseconds.
fn duration_ns(s: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let v: f64 = num.parse().ok()?;
        num.clear();
        let mult = match unit.as_str() {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += v * mult;
        any = true;
    }
    (any && num.is_empty()).then_some(total as u64)
}

fn show_cmd(c: &Command) -> String {
    match c {
        Command::Shell(s) => s.lines().next().unwrap_or("").to_string(),
        Command::Exec(v) => serde_json::to_string(v).unwrap_or_default(),
    }
}

/// The instruction as history shows it.
fn instr_text(i: &Instr) -> String {
    let cmd = |c: &Command| match c {
        Command::Shell(s) => s.clone(),
        Command::Exec(v) => serde_json::to_string(v).unwrap_or_default(),
    };
    match i {
        Instr::From { image, .. } => format!("FROM {image}"),
        Instr::Run(r) => format!("RUN {}", cmd(&r.cmd)),
        Instr::Cmd(c) => format!("CMD {}", cmd(c)),
        Instr::Entrypoint(c) => format!("ENTRYPOINT {}", cmd(c)),
        Instr::Shell(v) => format!("SHELL {}", serde_json::to_string(v).unwrap_or_default()),
        Instr::Env(p) => format!(
            "ENV {}",
            p.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Instr::Label(p) => format!(
            "LABEL {}",
            p.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Instr::Arg(a) => format!(
            "ARG {}",
            a.iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={v}"),
                    None => k.clone(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Instr::Workdir(w) => format!("WORKDIR {w}"),
        Instr::User(u) => format!("USER {u}"),
        Instr::Expose(e) => format!("EXPOSE {e}"),
        Instr::Volume(v) => format!("VOLUME {}", serde_json::to_string(v).unwrap_or_default()),
        Instr::StopSignal(s) => format!("STOPSIGNAL {s}"),
        Instr::Maintainer(m) => format!("MAINTAINER {m}"),
        Instr::Copy(a) | Instr::Add(a) => {
            let kw = if matches!(i, Instr::Copy(_)) {
                "COPY"
            } else {
                "ADD"
            };
            let mut s = kw.to_string();
            for (k, v) in [("from", &a.from), ("chown", &a.chown), ("chmod", &a.chmod)] {
                if let Some(v) = v {
                    s.push_str(&format!(" --{k}={v}"));
                }
            }
            format!("{s} {}", a.paths.join(" "))
        }
        Instr::Onbuild(t) => format!("ONBUILD {t}"),
        Instr::Healthcheck(None) => "HEALTHCHECK NONE".into(),
        Instr::Healthcheck(Some(h)) => format!("HEALTHCHECK CMD {}", cmd(&h.cmd)),
    }
}
