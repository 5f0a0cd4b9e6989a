//! A step through the build cache: its key ([`key::step`]) from the stage's state and what the
//! step reads ([`Builder::step_inputs`]: COPY sources, bind-mounted directories, `--from`
//! stages and images), the entry looked up in the store and then in the `--cache-from` caches,
//! and, on a miss, the step applied and its result recorded.

use super::apply::clean_abs;
use super::{contexts, lock, mounts, Builder, CacheFrom, Layer, Result, State};
use crate::cache::{self, key, sources};
use crate::dockerfile::Instr;
use crate::fsroot::Root;
use oci_spec::image::Descriptor;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

impl Builder<'_> {
    /// One instruction of a stage, from the cache when `use_cache` and its key has an entry
    /// (then true), else applied and recorded.
    pub(super) fn cached_step(
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
            let hit = if use_cache || self.built_here(&key) {
                self.cache_get(&key, line)?
            } else {
                None
            };
            // WORKDIR also makes its directory (unless `/`), a layer as BuildKit's mkdir is.
            let mkdir = matches!(l.instr, Instr::Workdir(_))
                .then(|| clean_abs(Path::new(&st.workdir())))
                .filter(|d| d != "/");
            if let Some(dir) = mkdir {
                let made = st
                    .config
                    .history
                    .pop()
                    .expect("WORKDIR adds a history entry");
                let cached = match hit.and_then(|e| e.layer.clone().map(|l| (e, l))) {
                    Some((e, layer)) => {
                        self.reuse_layer(st, line, e, layer)?;
                        true
                    }
                    None => {
                        let by = made.created_by.unwrap_or_default();
                        self.workdir_mkdir(st, line, &dir, &by)?;
                        self.record(st, &key, Some(last_layer(st)))?;
                        false
                    }
                };
                st.key = key;
                return Ok(cached);
            }
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
        let hit = if use_cache || self.built_here(&key) {
            self.cache_get(&key, line)?
        } else {
            None
        };
        let cached = match hit.and_then(|e| e.layer.clone().map(|l| (e, l))) {
            Some((e, layer)) => {
                self.reuse_layer(st, line, e, layer)?;
                true
            }
            None => {
                self.apply(st, line, &l.instr, text, globals, done)?;
                self.record(st, &key, Some(last_layer(st)))?;
                false
            }
        };
        st.key = key;
        Ok(cached)
    }

    /// Appends the recorded layer and history entry of a cache hit to `st`.
    fn reuse_layer(
        &self,
        st: &mut State,
        line: usize,
        e: cache::Entry,
        layer: cache::LayerRef,
    ) -> Result<()> {
        // Entries recorded before layers were stored plain hold gzip or zstd blobs.
        let blob = self.store.blob_path(&layer.digest);
        let media_type = crate::image::blob_media_type(&blob)
            .map_err(|e| self.err(line, format!("{}: {e}", blob.display())))?;
        let desc = Descriptor::new(
            media_type,
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
        Ok(())
    }

    /// The key of a step applied to `st` ([`key::step`]); `inputs` is what the step reads
    /// besides the state.
    pub(super) fn step_key(&self, st: &State, instr: &Instr, inputs: &str) -> String {
        // --add-host, --shm-size and --ulimit change what a RUN sees: keyed with the network
        // (only when given, so that keys without them stay as they were).
        let with_extra;
        let network: &dyn std::fmt::Debug = if self.opts.run_extra.is_empty() {
            &self.opts.network
        } else {
            with_extra = (&self.opts.network, &self.opts.run_extra);
            &with_extra
        };
        key::step(&key::Step {
            parent: &st.key,
            instr,
            config: &st.config.config,
            args: &st.args,
            inputs,
            epoch: self.opts.source_date_epoch,
            network,
        })
    }

    /// What a RUN/COPY/ADD reads besides the state (see [`key::Step::inputs`]): for RUN what
    /// its bind mounts show, for COPY/ADD the sources. A source that cannot be read gives
    /// inputs that match nothing ([`key::unique`]), so the step runs and reports the real error.
    pub(super) fn step_inputs(
        &self,
        st: &State,
        line: usize,
        instr: &Instr,
        done: &HashMap<usize, State>,
    ) -> Result<String> {
        if let Instr::Run(r) = instr {
            let mut inputs = Vec::new();
            for m in &r.mounts {
                let m = self.word(st, line, m)?;
                let Ok(spec) = mounts::parse(&m) else {
                    return Ok(key::unique("bad mount"));
                };
                mounts::check_given(&spec, &self.opts.secrets, &self.opts.ssh)
                    .map_err(|e| self.err(line, format!("RUN --mount: {e}")))?;
                let mounts::Kind::Bind { from, source, .. } = &spec.kind else {
                    continue;
                };
                let source = std::slice::from_ref(source);
                let digest = match from {
                    None => sources::digest(&self.context, Some(&self.ignore), source, &self.sums),
                    Some(f) => match (
                        self.df.stage(f),
                        self.opts.build_contexts.get(&f.to_ascii_lowercase()),
                    ) {
                        (Some(s), _) => match done.get(&s.index) {
                            Some(s) => Ok(key::stage(&s.key)),
                            None => return Ok(key::unique("unbuilt")),
                        },
                        (None, Some(contexts::Named::Dir(d))) => Root::open(d)
                            .and_then(|root| sources::digest(&root, None, source, &self.sums)),
                        _ => return Ok(key::unique("unknown from")),
                    },
                };
                match digest {
                    Ok(d) => inputs.push(key::bind(&spec.target, &d)),
                    Err(e) => return Ok(key::unique(&format!("unreadable {e}"))),
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
                match sources::digest(&self.context, Some(&self.ignore), &paths, &self.sums) {
                    Ok(d) => d,
                    Err(e) => key::unique(&format!("unreadable {e}")),
                },
            );
        };
        let f = self.word(st, line, f)?;
        let from = match self.df.stage(&f) {
            Some(s) => match done.get(&s.index) {
                Some(s) => s.key.clone(),
                None => return Ok(key::unique("unbuilt")),
            },
            None => match self.opts.build_contexts.get(&f.to_ascii_lowercase()) {
                Some(contexts::Named::Dir(d)) => {
                    match Root::open(d)
                        .and_then(|root| sources::digest(&root, None, &paths, &self.sums))
                    {
                        Ok(digest) => key::named_dir(&digest),
                        Err(e) => return Ok(key::unique(&format!("unreadable {e}"))),
                    }
                }
                Some(contexts::Named::Image(i)) => self.base_state(i, line, &st.platform)?.key,
                None => self.base_state(&f, line, &st.platform)?.key,
            },
        };
        Ok(key::copy_from(&from, &paths))
    }

    /// The cache entry for `key`: from the store, else from a `--cache-from` directory.
    pub(super) fn cache_get(&self, key: &str, line: usize) -> Result<Option<cache::Entry>> {
        if let Some(e) = self.store.cache_get(key) {
            self.note(|a| a.used.push(key.to_string()));
            return Ok(Some(e));
        }
        for from in &self.cache_from {
            let found = match from {
                CacheFrom::Local(dir) => cache::local::import_local(self.store, dir, key),
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
    pub(super) fn record(
        &self,
        st: &State,
        key: &str,
        layer: Option<cache::LayerRef>,
    ) -> Result<()> {
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
        lock(&self.opts.built_keys).insert(key.to_string());
        Ok(())
    }

    /// True when this invocation recorded `key` (for another platform): see
    /// [`super::Options::built_keys`].
    fn built_here(&self, key: &str) -> bool {
        lock(&self.opts.built_keys).contains(key)
    }
}

/// The last layer of `st`, as a cache entry records it.
fn last_layer(st: &State) -> cache::LayerRef {
    let last = st.layers.last().expect("a layer step adds a layer");
    cache::LayerRef {
        digest: last.desc.digest().to_string(),
        diff_id: last.diff_id.clone(),
        size: last.desc.size(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A context of files, a directory and a symlink, with fixed modes.
    fn fixed_context() -> tempfile::TempDir {
        let ctx = tempfile::tempdir().unwrap();
        let c = ctx.path();
        // (path, file content or None for a directory, mode)
        let tree = [
            ("a.txt", Some("hello\n"), 0o644),
            ("d", None, 0o755),
            ("d/b", Some("x"), 0o600),
            ("d/skip", Some("s"), 0o644),
        ];
        for (path, content, mode) in tree {
            match content {
                Some(t) => fs::write(c.join(path), t).unwrap(),
                None => fs::create_dir(c.join(path)).unwrap(),
            }
            fs::set_permissions(c.join(path), fs::Permissions::from_mode(mode)).unwrap();
        }
        std::os::unix::fs::symlink("b", c.join("d/l")).unwrap();
        ctx
    }

    /// The keys of a fixed Dockerfile over a fixed context, as the builder computed them
    /// before keys moved to `cache::key` (commit 9586dd6): they name existing cache entries.
    /// Changed once since, on purpose: `FROM scratch` got BuildKit's WorkingDir `/`, which is
    /// part of every later step's run config (entries of scratch-based builds made before
    /// miss once; they hold configs without it). And once more: the platform became part of
    /// every key's root (`key::scratch`, `key::base_image`), so that two platforms' steps (and
    /// two hosts' exported caches) never share an entry; every entry made before misses once.
    #[test]
    fn step_keys_are_pinned() {
        let ctx = fixed_context();
        let c = ctx.path();
        let sd = tempfile::tempdir().unwrap();
        let store = Store::open(sd.path()).unwrap();
        let text = "FROM scratch\nARG V=1\nENV A=$V B=2\nRUN echo $A\nCOPY --chmod=644 a.txt d /dst/\nRUN --mount=type=bind,source=d,target=/m cat /m/b\nWORKDIR /w\n";
        let df = Dockerfile::parse("Dockerfile", text).unwrap();
        let opts = Options {
            dockerfile: c.join("Dockerfile"),
            context: c.to_path_buf(),
            tags: vec![],
            build_args: BTreeMap::new(),
            target: None,
            runtime: "runc".into(),
            network: Network::Default,
            labels: BTreeMap::new(),
            source_date_epoch: Some(1700000000),
            progress: crate::progress::Mode::Quiet,
            compression: layer::Compression::Gzip,
            registry: Default::default(),
            platform: Platform::host(),
            emulators: Default::default(),
            built_keys: Default::default(),
            earlier_keys: Default::default(),
            no_cache: false,
            no_cache_filter: vec![],
            cache_from: vec![],
            cache_to: None,
            secrets: BTreeMap::new(),
            ssh: BTreeMap::new(),
            build_contexts: BTreeMap::new(),
            annotations: BTreeMap::new(),
            run_extra: Default::default(),
        };
        let b = Builder {
            opts: &opts,
            store: &store,
            df: &df,
            ignore: Ignore::parse("d/skip\n"),
            context: Root::open(c).unwrap(),
            added: Mutex::default(),
            work: store.tempdir("t-").unwrap(),
            steps: AtomicUsize::new(0),
            step: AtomicUsize::new(0),
            n: AtomicUsize::new(0),
            base_lock: Mutex::new(()),
            progress: Mutex::new(Progress::new(crate::progress::Mode::Quiet)),
            cache_from: vec![],
            materials: Mutex::default(),
            sums: Default::default(),
        };
        // A fixed platform: the pinned keys are the same on every host.
        let amd64 = Platform::parse("linux/amd64").unwrap();
        let mut st = b.base_state("scratch", 1, &amd64).unwrap();
        assert_eq!(st.key, key::scratch("linux/amd64"));
        let done = HashMap::new();
        let globals = BTreeMap::new();
        let mut got = Vec::new();
        for l in &df.stages[0].instrs {
            let text = instr_text(&l.instr);
            let writes = matches!(l.instr, Instr::Run(_) | Instr::Copy(_) | Instr::Add(_));
            if writes {
                let inputs = b.step_inputs(&st, l.line, &l.instr, &done).unwrap();
                let key = b.step_key(&st, &l.instr, &inputs);
                got.push((text, inputs, key.clone()));
                st.key = key;
            } else {
                b.apply(&mut st, l.line, &l.instr, &text, &globals, &done)
                    .unwrap();
                let key = b.step_key(&st, &l.instr, "");
                got.push((text, String::new(), key.clone()));
                st.key = key;
            }
        }
        let want = [
            (
                "ARG V=1",
                "",
                "51b9b10bc8f30ba114ea4cd7d54941a5883744e11250dd8d3929e01b2aa0ddda",
            ),
            (
                "ENV A=$V B=2",
                "",
                "0c011eac4ab6dc1d746ed183db96a08513da3b5f42338f5a63f7977bb87bbd84",
            ),
            (
                "RUN echo $A",
                "",
                "634eba6152c70299fe03542d82bb51bf8920e7deb1ac2d00bd2c640a975a0e81",
            ),
            (
                "COPY --chmod=644 a.txt d /dst/",
                "sha256:596e24139f934d0737c6567894c0bc1bbfdf8967444221144370ca45c8e5e573",
                "9e94d3de78967e335016511bc80d4d6ffab155debbb687a98dbb8835352d5842",
            ),
            (
                "RUN cat /m/b",
                "bind /m sha256:92ba4ed713da6967e3a77c592775d0500008564397d63e27fc2940b1e04ba253",
                "626953b52cca7e3340c8f1029e1e43e35ddfea89428690a1c95be0c2f3498a5c",
            ),
            (
                "WORKDIR /w",
                "",
                "c9a3046f67e9930aadd04b8b6158d6a05b4fe3f2169933e0c008e835f7dc36d7",
            ),
        ];
        let want: Vec<(String, String, String)> = want
            .iter()
            .map(|(t, i, k)| (t.to_string(), i.to_string(), format!("sha256:{k}")))
            .collect();
        assert_eq!(got, want);
    }
}
