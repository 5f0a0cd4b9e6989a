//! `brig-build`: the command line of the builder (`build`, `pull`, `push`, `images`, `rm`,
//! `prune`).

use brig_build::cache;
use brig_build::exec::{self, run::Network};
use brig_build::export;
use brig_build::image::platform::Platform;
use brig_build::image::store::Store;
use brig_build::registry::{self, auth::Creds, Reference};
use brig_build::rootless;
use clap::{Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The environment variables brig-build reads, for `--help`.
const ENV_HELP: &str = "Environment:\n  \
    SOURCE_DATE_EPOCH     build's time and every layer's latest mtime (as --source-date-epoch)\n  \
    BRIG_BUILD_OVERLAY    the overlay of RUN/COPY steps: auto (default: the kernel's overlayfs,\n  \
    \x20                     fuse-overlayfs where the kernel refuses it), kernel or fuse";

#[derive(Parser)]
#[command(
    name = "brig-build",
    version,
    about = "Build OCI images from Dockerfiles",
    after_help = ENV_HELP
)]
struct Cli {
    /// The local image store (default: /var/lib/brig-build for root; for a plain user
    /// $XDG_DATA_HOME/brig-build, else ~/.local/share/brig-build).
    #[arg(long, global = true)]
    store: Option<PathBuf>,
    /// Reach this registry (HOST[:PORT]) over plain HTTP instead of HTTPS (repeatable).
    #[arg(long = "insecure-registry", global = true, value_name = "HOST[:PORT]")]
    insecure_registry: Vec<String>,
    /// The registries' CAs (*.crt) and client certificate (NAME.cert, NAME.key), instead of
    /// /etc/containers/certs.d/HOST/ and /etc/docker/certs.d/HOST/ (podman's flag).
    #[arg(long = "cert-dir", global = true, value_name = "DIR")]
    cert_dir: Option<PathBuf>,
    /// A registry (HOST[:PORT]) to pull Docker Hub images from first, falling back to Docker
    /// Hub (docker's registry-mirrors; repeatable).
    #[arg(long = "registry-mirror", global = true, value_name = "HOST[:PORT]")]
    registry_mirror: Vec<String>,
    /// Registry credentials (take precedence over any auth file).
    #[arg(long, global = true, value_name = "USER:PASS")]
    creds: Option<String>,
    /// A docker-style auth file ({"auths":{"HOST":{"auth":"base64(user:pass)"}}}); default:
    /// $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json.
    #[arg(long, global = true, value_name = "PATH")]
    authfile: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProgressMode {
    Auto,
    Plain,
    Tty,
}

#[derive(Clone, Copy, ValueEnum)]
enum Compress {
    Gzip,
    Zstd,
    Uncompressed,
}

#[derive(Clone, Copy, ValueEnum)]
enum Net {
    Default,
    None,
    Host,
}

// Parsed once per process: the size of the build variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Build an image from a Dockerfile.
    #[command(after_help = ENV_HELP)]
    Build {
        /// The Dockerfile (default: CONTEXT/Dockerfile).
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// Name the image NAME[:TAG] in the store (repeatable).
        #[arg(short = 't', long = "tag")]
        tags: Vec<String>,
        /// Set a build argument (repeatable).
        #[arg(long = "build-arg", value_name = "K=V")]
        build_args: Vec<String>,
        /// Build this stage (and what it needs) instead of the last.
        #[arg(long)]
        target: Option<String>,
        /// Also write the image: type=oci|oci-archive|docker-archive,dest=PATH[,name=REF],
        /// type=registry,name=REF (push), type=docker (load into docker), or its files:
        /// type=local,dest=DIR, type=tar,dest=FILE (`-` for stdout).
        #[arg(long = "output", short = 'o')]
        outputs: Vec<String>,
        /// Push the image to the registry of each -t name (`-o type=registry` for each).
        #[arg(long)]
        push: bool,
        /// Load the image into docker, over $DOCKER_HOST or /var/run/docker.sock
        /// (`-o type=docker`).
        #[arg(long)]
        load: bool,
        /// Add NAME:IP to /etc/hosts of every RUN step (repeatable).
        #[arg(long = "add-host", value_name = "NAME:IP")]
        add_hosts: Vec<String>,
        /// The size of /dev/shm in RUN steps (e.g. 128m; default 64m).
        #[arg(long = "shm-size", value_name = "SIZE")]
        shm_size: Option<String>,
        /// A resource limit of RUN steps: NAME=SOFT[:HARD] (nofile, nproc, ...; repeatable).
        #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
        ulimits: Vec<String>,
        /// Pull every base image from its registry, even when the store has it.
        #[arg(long)]
        pull: bool,
        /// Annotate the image manifest (`KEY=VALUE` or `manifest:KEY=VALUE`) or the index that
        /// holds it and its attestations (`index:KEY=VALUE`); repeatable.
        #[arg(long = "annotation", value_name = "[TYPE:]KEY=VALUE")]
        annotations: Vec<String>,
        /// Write the image id (its config digest) to FILE.
        #[arg(long, value_name = "FILE")]
        iidfile: Option<PathBuf>,
        /// Write the build's result as buildx does (containerimage.digest,
        /// containerimage.config.digest, containerimage.descriptor, image.name) to FILE.
        #[arg(long = "metadata-file", value_name = "FILE")]
        metadata_file: Option<PathBuf>,
        /// The OCI runtime for RUN steps (default: brig next to this binary, else in PATH).
        #[arg(long)]
        runtime: Option<PathBuf>,
        /// Network of RUN steps.
        #[arg(long, value_enum, default_value = "default")]
        network: Net,
        /// Use no build cache entry: every step runs (the results are cached for later builds).
        #[arg(long)]
        no_cache: bool,
        /// Use no build cache entry in this stage (name or index; repeatable).
        #[arg(long = "no-cache-filter", value_name = "STAGE")]
        no_cache_filter: Vec<String>,
        /// Take missing build cache entries from a directory or registry ref --cache-to wrote
        /// (repeatable; a registry ref that does not exist is skipped with a notice).
        #[arg(
            long = "cache-from",
            value_name = "type=local,src=DIR|type=registry,ref=REF"
        )]
        cache_from: Vec<String>,
        /// Export the build cache of every step of this build to a directory or, as one image
        /// manifest, to a registry.
        #[arg(
            long = "cache-to",
            value_name = "type=local,dest=DIR|type=registry,ref=REF"
        )]
        cache_to: Option<String>,
        /// Add a label to the image (repeatable).
        #[arg(long = "label", value_name = "K=V")]
        labels: Vec<String>,
        /// The target platforms, OS/ARCH[/VARIANT][,...] (default: this host's): one image a
        /// platform, written out as one index when there are several; RUN steps for another
        /// platform than the host's run under qemu-user (Debian's qemu-user-static, fetched
        /// into the store, registered in the RUN's own user namespace: Linux 6.7+). Sets the
        /// TARGET* platform ARGs.
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
        /// A secret for `RUN --mount=type=secret` (repeatable): id=ID,src=PATH (or env=VAR).
        #[arg(long = "secret", value_name = "id=ID,src=PATH")]
        secrets: Vec<String>,
        /// An SSH agent socket for `RUN --mount=type=ssh` (repeatable): ID=SOCKET, or
        /// `default` for $SSH_AUTH_SOCK.
        #[arg(long = "ssh", value_name = "ID=SOCKET")]
        ssh: Vec<String>,
        /// Clamp layer mtimes and set created times to this unix time (default:
        /// $SOURCE_DATE_EPOCH); two builds of the same input give the same digests.
        #[arg(long = "source-date-epoch", value_name = "SECONDS")]
        source_date_epoch: Option<i64>,
        /// A named context (repeatable): NAME=PATH (for COPY --from and RUN --mount from=),
        /// NAME=oci-layout://DIR[:TAG] or NAME=docker-image://REF (also for FROM).
        #[arg(long = "build-context", value_name = "NAME=VALUE")]
        build_contexts: Vec<String>,
        /// Compression of the layers built here when the image or cache is exported (zstd:
        /// media type ...layer.v1.tar+zstd); the store keeps them uncompressed.
        #[arg(long, value_enum, default_value = "gzip")]
        compression: Compress,
        /// Progress output on stderr: tty (steps with status and timings, redrawn), plain (one
        /// line per event with RUN output, for CI logs), auto (tty on a terminal, else plain).
        #[arg(long, value_enum, default_value = "auto")]
        progress: ProgressMode,
        /// Print only the image id on stdout (nothing on stderr unless the build fails).
        #[arg(short, long)]
        quiet: bool,
        /// Attach an SPDX SBOM attestation (dpkg and apk packages, base images) to what
        /// --output writes, as BuildKit does: `--sbom` or `--sbom=true|false`.
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        sbom: Option<String>,
        /// Attach SLSA provenance to what --output writes: `--provenance`,
        /// `--provenance=mode=min|mode=max` (max adds build args and the Dockerfile), `=false`.
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        provenance: Option<String>,
        /// The build context directory.
        context: PathBuf,
    },
    /// Pull an image from a registry into the store (named as pulled).
    Pull {
        /// [docker://]HOST[:PORT]/REPO[:TAG|@DIGEST]
        image: String,
    },
    /// Push an image of the store to a registry.
    Push {
        /// The image in the store (name or id).
        image: String,
        /// [docker://]HOST[:PORT]/REPO[:TAG] (default: the image's name).
        dest: Option<String>,
    },
    /// List the images of the store.
    Images,
    /// Remove images (by name or id) from the store.
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove build cache entries and cache mounts (least recently used first) and the layers
    /// only the cache uses.
    Prune {
        /// Keep this much cache (bytes, or with a K/M/G suffix); default: remove it all.
        #[arg(long = "keep-storage", value_name = "SIZE", value_parser = parse_size)]
        keep_storage: Option<u64>,
    },
}

/// `512`, `10K`, `200M`, `1G` (powers of 1024; a trailing `B`/`iB` is allowed).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix(['B', 'b']))
        .unwrap_or(t);
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("{s:?}: unknown size suffix {c:?} (K, M, G, T)")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a size (e.g. 500M)"))
}

fn kv(list: &[String], what: &str) -> Result<BTreeMap<String, String>, String> {
    let mut m = BTreeMap::new();
    for s in list {
        match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                m.insert(k.to_string(), v.to_string());
            }
            _ => match (what, std::env::var(s)) {
                // `--build-arg NAME` takes the value from the environment, as docker does.
                ("--build-arg", Ok(v)) => {
                    m.insert(s.clone(), v);
                }
                _ => return Err(format!("{what} {s:?}: expected KEY=VALUE")),
            },
        }
    }
    Ok(m)
}

/// `--secret id=ID,src=PATH` / `id=ID,env=VAR` (the variable's value is written to a private
/// temporary file that lives as long as this process).
fn parse_secrets(list: &[String]) -> Result<BTreeMap<String, PathBuf>, String> {
    let mut m = BTreeMap::new();
    for s in list {
        let (mut id, mut src, mut env) = (None, None, None);
        for part in s.split(',') {
            match part.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
                Some(("env", v)) => env = Some(v.to_string()),
                Some(("type", "file" | "env")) => {}
                _ => return Err(format!("--secret {s:?}: unknown part {part:?}")),
            }
        }
        let id = id
            .or_else(|| env.clone())
            .ok_or_else(|| format!("--secret {s:?}: needs id=ID"))?;
        let path = match (src, env) {
            (Some(p), _) => {
                if !p.is_file() {
                    return Err(format!("--secret {s:?}: {}: not a file", p.display()));
                }
                p
            }
            (None, Some(var)) => {
                let v = std::env::var(&var)
                    .map_err(|_| format!("--secret {s:?}: ${var} is not set"))?;
                let f = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
                std::fs::write(f.path(), v).map_err(|e| e.to_string())?;
                let (_, p) = f.keep().map_err(|e| e.to_string())?;
                SECRET_FILES.with(|v| v.borrow_mut().push(p.clone()));
                p
            }
            (None, None) => return Err(format!("--secret {s:?}: needs src=PATH or env=VAR")),
        };
        m.insert(id, path);
    }
    Ok(m)
}

thread_local! {
    /// Secret files made from environment variables, removed before exit.
    static SECRET_FILES: std::cell::RefCell<Vec<PathBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `--ssh ID=SOCKET` or `--ssh ID` / `--ssh default` ($SSH_AUTH_SOCK).
fn parse_ssh(list: &[String]) -> Result<BTreeMap<String, PathBuf>, String> {
    let mut m = BTreeMap::new();
    for s in list {
        let (id, path) = match s.split_once('=') {
            Some((id, p)) => (id.to_string(), PathBuf::from(p)),
            None => (
                s.clone(),
                std::env::var_os("SSH_AUTH_SOCK")
                    .map(PathBuf::from)
                    .ok_or_else(|| format!("--ssh {s}: $SSH_AUTH_SOCK is not set"))?,
            ),
        };
        m.insert(id, path);
    }
    Ok(m)
}

/// Makes our mounts private to this process: a killed build leaves no overlay on the host.
fn private_mounts() -> Result<(), String> {
    use rustix::mount::{mount_change, MountPropagationFlags};
    use rustix::thread::{unshare_unsafe, UnshareFlags};
    // SAFETY: single-threaded at this point; unsharing the mount namespace affects only us.
    unsafe { unshare_unsafe(UnshareFlags::NEWNS) }
        .map_err(|e| format!("unshare(CLONE_NEWNS): {e} (brig-build needs root)"))?;
    mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .map_err(|e| format!("make / private: {e}"))
}

fn registry_options(cli: &Cli) -> Result<registry::Options, String> {
    Ok(registry::Options {
        insecure: cli.insecure_registry.clone(),
        creds: cli.creds.as_deref().map(Creds::parse).transpose()?,
        authfile: cli.authfile.clone(),
        pull_always: false,
        cert_dir: cli.cert_dir.clone(),
        mirrors: cli.registry_mirror.clone(),
    })
}

fn parse_ref(s: &str) -> Result<Reference, String> {
    Reference::parse(s).ok_or_else(|| {
        format!("{s:?} is not an image reference ([docker://]HOST[:PORT]/REPO[:TAG|@DIGEST])")
    })
}

/// `--annotation [TYPE:]KEY=VALUE` as buildx takes it: (manifest's, index's).
#[allow(clippy::type_complexity)]
fn parse_annotations(
    list: &[String],
) -> Result<(BTreeMap<String, String>, BTreeMap<String, String>), String> {
    let (mut manifest, mut index) = (BTreeMap::new(), BTreeMap::new());
    for a in list {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| format!("--annotation {a:?}: expected [TYPE:]KEY=VALUE"))?;
        let (ty, key) = match k.split_once(':') {
            // A key may hold ':' itself (org.example:x): only the known types are prefixes.
            Some((t, key)) if t.chars().all(|c| c.is_ascii_lowercase() || c == '-') => (t, key),
            _ => ("manifest", k),
        };
        if key.is_empty() {
            return Err(format!("--annotation {a:?}: empty key"));
        }
        match ty {
            "manifest" => manifest.insert(key.to_string(), v.to_string()),
            "index" => index.insert(key.to_string(), v.to_string()),
            _ => {
                return Err(format!(
                    "--annotation {a:?}: type {ty:?} is not supported (manifest, index)"
                ))
            }
        };
    }
    Ok((manifest, index))
}

/// Writes `data` to `path` through a temporary file and a rename.
fn write_file(path: &Path, data: &[u8]) -> Result<(), String> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, data)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("{}: {e}", path.display())
        })
}

/// `--platform OS/ARCH[/VARIANT][,...]` (this host's when not given), each once.
fn parse_platforms(arg: Option<&str>) -> Result<Vec<Platform>, String> {
    let Some(arg) = arg else {
        return Ok(vec![Platform::host()]);
    };
    let mut out: Vec<Platform> = Vec::new();
    for p in arg.split(',') {
        let p = Platform::parse(p).map_err(|e| format!("--platform: {e}"))?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn run(cli: Cli) -> Result<(), String> {
    let reg = registry_options(&cli)?;
    match cli.cmd {
        Cmd::Build {
            file,
            tags,
            build_args,
            target,
            outputs,
            runtime,
            network,
            no_cache,
            no_cache_filter,
            cache_from,
            cache_to,
            labels,
            platform,
            quiet,
            secrets,
            ssh,
            source_date_epoch,
            compression,
            progress,
            build_contexts,
            context,
            sbom,
            provenance,
            push,
            load,
            iidfile,
            metadata_file,
            pull,
            annotations,
            add_hosts,
            shm_size,
            ulimits,
        } => {
            let mut run_extra = exec::run::RunExtra::default();
            for h in &add_hosts {
                run_extra.add_host(h)?;
            }
            if let Some(s) = &shm_size {
                run_extra.shm_size(s)?;
            }
            for u in &ulimits {
                run_extra.ulimit(u)?;
            }
            let (manifest_annotations, index_annotations) = parse_annotations(&annotations)?;
            let mut reg = reg.clone();
            reg.pull_always = pull;
            let attest = brig_build::attest::Request {
                sbom: sbom
                    .as_deref()
                    .map(brig_build::attest::parse_sbom)
                    .transpose()?
                    .unwrap_or(false),
                provenance: provenance
                    .as_deref()
                    .map(brig_build::attest::parse_provenance)
                    .transpose()?
                    .flatten(),
            };
            let started = now_secs();
            let platforms = parse_platforms(platform.as_deref())?;
            if !index_annotations.is_empty() && !attest.any() && platforms.len() < 2 {
                return Err(
                    "--annotation index:...: this image has no index (it gets one with \
                            --sbom or --provenance, or with several --platform)"
                        .into(),
                );
            }
            let mut outputs = outputs
                .iter()
                .map(|o| export::parse_output(o))
                .collect::<Result<Vec<_>, _>>()?;
            if push {
                if tags.is_empty() {
                    return Err("--push: the image needs a name to push to (-t NAME)".into());
                }
                for t in &tags {
                    outputs.push(export::parse_output(&format!("type=registry,name={t}"))?);
                }
            }
            if load {
                outputs.push(export::parse_output("type=docker")?);
            }
            for o in &outputs {
                export::check_platforms(o, platforms.len())?;
            }
            // Before the store is touched: a refused build leaves nothing behind.
            brig_build::emulate::check_host(&platforms).map_err(|e| format!("--platform: {e}"))?;
            let opts = exec::Options {
                dockerfile: file.unwrap_or_else(|| context.join("Dockerfile")),
                context,
                tags: tags.clone(),
                build_args: kv(&build_args, "--build-arg")?,
                target,
                runtime: runtime.unwrap_or_else(exec::run::default_runtime),
                network: match network {
                    Net::Default => Network::Default,
                    Net::None => Network::None,
                    Net::Host => Network::Host,
                },
                labels: kv(&labels, "--label")?,
                source_date_epoch: match source_date_epoch {
                    Some(t) => Some(t),
                    None => match std::env::var("SOURCE_DATE_EPOCH") {
                        Ok(s) if !s.is_empty() => Some(s.parse().map_err(|_| {
                            format!("SOURCE_DATE_EPOCH={s:?}: not a unix time in seconds")
                        })?),
                        _ => None,
                    },
                },
                progress: match (quiet, progress) {
                    (true, _) => brig_build::progress::Mode::Quiet,
                    (false, ProgressMode::Auto) => brig_build::progress::Mode::Auto,
                    (false, ProgressMode::Plain) => brig_build::progress::Mode::Plain,
                    (false, ProgressMode::Tty) => brig_build::progress::Mode::Tty,
                },
                compression: match compression {
                    Compress::Gzip => brig_build::image::layer::Compression::Gzip,
                    Compress::Zstd => brig_build::image::layer::Compression::Zstd,
                    Compress::Uncompressed => brig_build::image::layer::Compression::Uncompressed,
                },
                registry: reg.clone(),
                platform: platforms[0].clone(),
                emulators: Default::default(),
                built_keys: Default::default(),
                earlier_keys: Default::default(),
                no_cache,
                no_cache_filter,
                cache_from: cache_from
                    .iter()
                    .map(|s| cache::parse("--cache-from", s, "src"))
                    .collect::<Result<_, _>>()?,
                cache_to: cache_to
                    .map(|s| cache::parse("--cache-to", &s, "dest"))
                    .transpose()?,
                secrets: parse_secrets(&secrets)?,
                ssh: parse_ssh(&ssh)?,
                build_contexts: exec::contexts::parse(&build_contexts)?,
                annotations: manifest_annotations,
                run_extra,
            };
            private_mounts()?;
            let store_dir = cli.store.as_deref().expect("main sets the store");
            let mut opts = opts;
            // A Dockerfile without RUN (COPY-only, say) runs nothing of the image: no emulator
            // to fetch. One that cannot be read or parsed is refused by the build, as before.
            if needs_emulators(&opts.dockerfile) {
                opts.emulators =
                    brig_build::emulate::prepare(&store_dir.join("emulators"), &platforms)
                        .map_err(|e| format!("--platform: {e}"))?;
            }
            let store = Store::open(store_dir).map_err(|e| e.to_string())?;
            // One build a platform; the store names the image of this host's platform (else
            // the first), as a name there serves one platform.
            let named = platforms
                .iter()
                .position(|p| !brig_build::emulate::needed(p))
                .unwrap_or(0);
            // The images of the platforms built first have no name in the store: no gc until
            // all are written out. A platform's build that fails is undone under this lock
            // when no other build runs (the complete images of the platforms before it stay).
            let platforms_lock = if platforms.len() > 1 {
                Some(store.build_lock().map_err(|e| e.to_string())?)
            } else {
                None
            };
            let mut builds = Vec::new();
            for (n, p) in platforms.iter().enumerate() {
                if platforms.len() > 1 && !quiet {
                    eprintln!("[{p}] building ({} of {})", n + 1, platforms.len());
                }
                let one = exec::Options {
                    platform: p.clone(),
                    tags: if n == named { tags.clone() } else { Vec::new() },
                    ..opts.clone()
                };
                let built = exec::build_under(&one, &store, platforms_lock.as_ref());
                builds.push(built.map_err(|e| {
                    if platforms.len() > 1 {
                        format!("[{p}] {e}")
                    } else {
                        e.to_string()
                    }
                })?);
            }
            // Attestation and index blobs are referenced by no tag: no gc until they are
            // written out.
            let _building = store.build_lock().map_err(|e| e.to_string())?;
            let imgs = builds
                .iter()
                .map(|b| store.image(b.manifest.digest().as_ref()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            // What leaves as OCI (layouts, archives, registries) has its layers compressed; the
            // attestations and the index name those manifests.
            let imgs = if outputs.iter().any(|o| o.kind.compressed()) {
                imgs.iter()
                    .map(|img| {
                        brig_build::image::compress::for_export(&store, img, opts.compression)
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("compressing the layers: {e}"))?
            } else {
                imgs
            };
            let mut entries = Vec::new();
            for (img, built) in imgs.iter().zip(&builds) {
                let att = if attest.any() {
                    let info = brig_build::attest::BuildInfo {
                        name: outputs
                            .iter()
                            .find_map(|o| o.name.clone())
                            .or_else(|| tags.first().cloned()),
                        dockerfile_name: opts
                            .dockerfile
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_else(|| "Dockerfile".into()),
                        dockerfile_text: std::fs::read_to_string(&opts.dockerfile)
                            .map_err(|e| format!("{}: {e}", opts.dockerfile.display()))?,
                        context: opts.context.clone(),
                        build_args: opts
                            .build_args
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                        target: opts.target.clone(),
                        materials: built.materials.clone(),
                        started,
                        finished: now_secs(),
                        source_date_epoch: opts.source_date_epoch,
                    };
                    Some(brig_build::attest::attach(&store, img, attest, &info)?)
                } else {
                    None
                };
                entries.push((img.clone(), att));
            }
            if attest.any() && outputs.is_empty() && !quiet {
                eprintln!(
                    "[notice] --sbom/--provenance: attestations go with --output; the \
                     store's image has none (as with buildx --load)"
                );
            }
            let indexed = if attest.any() || imgs.len() > 1 {
                Some(brig_build::image::index::write(
                    &store,
                    &entries,
                    &index_annotations,
                )?)
            } else {
                None
            };
            for o in &outputs {
                export::export(&store, &imgs, indexed.as_ref(), o, &tags, &reg)?;
            }
            let built = &builds[named];
            let img = &imgs[named];
            // A build for several platforms has no one config: its id is the index's digest,
            // and its metadata names no config (as buildx writes them).
            let index_id = indexed
                .as_ref()
                .filter(|_| platforms.len() > 1)
                .map(|a| a.digest.clone());
            if let Some(f) = &iidfile {
                let id = index_id.as_ref().unwrap_or(&built.config_digest);
                write_file(f, id.as_bytes())?;
            }
            if let Some(f) = &metadata_file {
                let (media_type, digest, size) = match &indexed {
                    Some(a) => (
                        "application/vnd.oci.image.index.v1+json",
                        a.digest.clone(),
                        a.size,
                    ),
                    None => (
                        "application/vnd.oci.image.manifest.v1+json",
                        img.manifest_digest.clone(),
                        std::fs::metadata(store.blob_path(&img.manifest_digest))
                            .map_err(|e| format!("{}: {e}", img.manifest_digest))?
                            .len(),
                    ),
                };
                let mut names: Vec<String> = tags.clone();
                for o in &outputs {
                    if let Some(n) = &o.name {
                        if !names.contains(n) {
                            names.push(n.clone());
                        }
                    }
                }
                let mut meta = serde_json::json!({
                    "containerimage.digest": digest,
                    "containerimage.config.digest": built.config_digest,
                    "containerimage.descriptor": {
                        "mediaType": media_type,
                        "digest": digest,
                        "size": size,
                    },
                    "image.name": names.join(","),
                });
                if index_id.is_some() {
                    meta.as_object_mut()
                        .expect("an object")
                        .remove("containerimage.config.digest");
                }
                write_file(f, &serde_json::to_vec_pretty(&meta).expect("json"))?;
            }
            if !quiet {
                eprintln!("COMMIT {}", tags.join(" "));
                eprintln!(
                    "Successfully built {}",
                    &brig_build::image::hex_of(&built.config_digest)[..12]
                );
            }
            println!("{}", built.config_digest);
            Ok(())
        }
        Cmd::Pull { image } => {
            let r = parse_ref(&image)?;
            let store = Store::open(cli.store.as_deref().expect("main sets the store"))
                .map_err(|e| e.to_string())?;
            // Like a build: no gc may take the blobs before the image is named.
            let _building = store.build_lock().map_err(|e| e.to_string())?;
            let img = registry::pull(&store, &reg, &r).map_err(|e| format!("pull: {e}"))?;
            eprintln!("pulled {r}");
            println!("{}", img.manifest_digest);
            Ok(())
        }
        Cmd::Push { image, dest } => {
            let store = Store::open(cli.store.as_deref().expect("main sets the store"))
                .map_err(|e| e.to_string())?;
            let digest = store
                .resolve(&image)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no such image: {image}"))?;
            // As a build: no gc may take the compressed blobs before they are pushed.
            let _pushing = store.build_lock().map_err(|e| e.to_string())?;
            let img = store.image(&digest).map_err(|e| e.to_string())?;
            let img = brig_build::image::compress::for_export(
                &store,
                &img,
                brig_build::image::layer::Compression::Gzip,
            )
            .map_err(|e| format!("compressing the layers: {e}"))?;
            let r = parse_ref(dest.as_deref().unwrap_or(&image))?;
            let d = registry::push(&store, &reg, &img, &r).map_err(|e| format!("push: {e}"))?;
            eprintln!("pushed {r}");
            println!("{d}");
            Ok(())
        }
        Cmd::Images => {
            let store = Store::open(cli.store.as_deref().expect("main sets the store"))
                .map_err(|e| e.to_string())?;
            println!(
                "{:<40} {:<14} {:<22} {:>10}",
                "NAME", "IMAGE ID", "CREATED", "SIZE"
            );
            for (name, digest) in store.list().map_err(|e| e.to_string())? {
                let img = store.image(&digest).map_err(|e| e.to_string())?;
                let size: u64 = img.manifest.layers().iter().map(|l| l.size()).sum();
                println!(
                    "{:<40} {:<14} {:<22} {:>10}",
                    name.unwrap_or_else(|| "<none>".into()),
                    &brig_build::image::hex_of(&img.config_digest)[..12],
                    img.config.created.unwrap_or_default(),
                    size
                );
            }
            Ok(())
        }
        Cmd::Prune { keep_storage } => {
            let store = Store::open(cli.store.as_deref().expect("main sets the store"))
                .map_err(|e| e.to_string())?;
            let p = store.prune(keep_storage).map_err(|e| e.to_string())?;
            println!(
                "removed {} cache entries, {} cache mounts, freed {} bytes",
                p.entries, p.mounts, p.bytes
            );
            Ok(())
        }
        Cmd::Rm { images } => {
            let store = Store::open(cli.store.as_deref().expect("main sets the store"))
                .map_err(|e| e.to_string())?;
            let missing = store.remove(&images).map_err(|e| e.to_string())?;
            if !missing.is_empty() {
                return Err(format!("no such image: {}", missing.join(", ")));
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    // The store's default is decided by who runs the command, before a plain user becomes
    // root of the build's user namespace.
    if cli.store.is_none() {
        // SAFETY: a plain getter.
        cli.store = Some(if unsafe { libc::geteuid() } == 0 {
            PathBuf::from("/var/lib/brig-build")
        } else {
            match rootless::user_store() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("brig-build: error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        });
    }
    if let (Cmd::Build { .. }, Err(e)) = (&cli.cmd, exec::overlay::choice()) {
        eprintln!("brig-build: error: {e}");
        return ExitCode::FAILURE;
    }
    match rootless::enter() {
        Ok(rootless::Entered::Root) => {}
        Ok(rootless::Entered::Parent(code)) => return ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("brig-build: error: {e}");
            return ExitCode::FAILURE;
        }
    }
    if !brig_build::procfs::probe() && matches!(cli.cmd, Cmd::Build { .. }) {
        eprintln!(
            "brig-build: note: this container's /proc has masked paths and the kernel mounts \
             no new proc under them: RUN steps get this /proc bound (their processes see the \
             container's); for a /proc of their own run the container with an unmasked /proc \
             (Kubernetes: securityContext.procMount: Unmasked; docker, podman: \
             --security-opt systempaths=unconfined)"
        );
    }
    let r = run(cli);
    SECRET_FILES.with(|v| {
        for p in v.borrow().iter() {
            let _ = std::fs::remove_file(p);
        }
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("brig-build: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// False only when the Dockerfile reads and parses, and has no RUN instruction. (ONBUILD
/// triggers of a base image are out of reach here: a COPY-only Dockerfile whose base adds a RUN
/// gets the emulator-missing error naming that RUN.)
fn needs_emulators(dockerfile: &Path) -> bool {
    let name = dockerfile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into());
    std::fs::read(dockerfile)
        .ok()
        .and_then(|b| brig_build::dockerfile::decode(&name, b).ok())
        .and_then(|t| brig_build::dockerfile::Dockerfile::parse(&name, &t).ok())
        .is_none_or(|df| df.has_run())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        use super::parse_size;
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("10K"), Ok(10 << 10));
        assert_eq!(parse_size("3M"), Ok(3 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1gb"), Ok(1 << 30));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("-1").is_err());
    }
}
