//! `brig-build`: the command line of the builder (`build`, `images`, `rm`).

use brig_build::exec::{self, run::Network};
use brig_build::export;
use brig_build::image::store::Store;
use clap::{Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "brig-build",
    version,
    about = "Build OCI images from Dockerfiles"
)]
struct Cli {
    /// The local image store.
    #[arg(long, global = true, default_value = "/var/lib/brig-build")]
    store: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Net {
    Default,
    None,
    Host,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build an image from a Dockerfile.
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
        /// Also write the image: type=oci|oci-archive|docker-archive,dest=PATH[,name=REF].
        #[arg(long = "output", short = 'o')]
        outputs: Vec<String>,
        /// The OCI runtime for RUN steps (default: brig next to this binary, else in PATH).
        #[arg(long)]
        runtime: Option<PathBuf>,
        /// Network of RUN steps.
        #[arg(long, value_enum, default_value = "default")]
        network: Net,
        /// Do not use the build cache (there is no cache yet: every build is cold).
        #[arg(long)]
        no_cache: bool,
        /// Add a label to the image (repeatable).
        #[arg(long = "label", value_name = "K=V")]
        labels: Vec<String>,
        /// Print only the image id on stdout.
        #[arg(short, long)]
        quiet: bool,
        /// The build context directory.
        context: PathBuf,
    },
    /// List the images of the store.
    Images,
    /// Remove images (by name or id) from the store.
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
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

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Build {
            file,
            tags,
            build_args,
            target,
            outputs,
            runtime,
            network,
            no_cache: _,
            labels,
            quiet,
            context,
        } => {
            let outputs = outputs
                .iter()
                .map(|o| export::parse_output(o))
                .collect::<Result<Vec<_>, _>>()?;
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
                source_date_epoch: std::env::var("SOURCE_DATE_EPOCH")
                    .ok()
                    .and_then(|s| s.parse().ok()),
            };
            private_mounts()?;
            let store = Store::open(&cli.store).map_err(|e| e.to_string())?;
            let built = exec::build(&opts, &store).map_err(|e| e.to_string())?;
            let img = store
                .image(built.manifest.digest().as_ref())
                .map_err(|e| e.to_string())?;
            for o in &outputs {
                export::export(&store, &img, o, &tags)?;
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
        Cmd::Images => {
            let store = Store::open(&cli.store).map_err(|e| e.to_string())?;
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
        Cmd::Rm { images } => {
            let store = Store::open(&cli.store).map_err(|e| e.to_string())?;
            let missing = store.remove(&images).map_err(|e| e.to_string())?;
            if !missing.is_empty() {
                return Err(format!("no such image: {}", missing.join(", ")));
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("brig-build: error: {e}");
            ExitCode::FAILURE
        }
    }
}
