//! SLSA provenance v0.2, in the shape BuildKit gives it (`buildType`
//! `https://mobyproject.org/buildkit@v1`, the Dockerfile frontend's parameters): who built
//! (`builder.id`, brig-build's package URL with its version), from what (`materials`: every
//! base image with the digest the build used; the context and Dockerfile as `locals`, and the
//! git checkout the context is in, when it is one), how (`invocation`: frontend, target,
//! platform; in `mode=max` also the build arguments and the Dockerfile's text), and when.

use super::{docker_purl, BuildInfo, Mode};
use crate::image::hex_of;
use crate::image::rfc3339;
use serde_json::{json, Map, Value};

pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v0.2";
pub const BUILD_TYPE: &str = "https://mobyproject.org/buildkit@v1";
const METADATA_KEY: &str = "https://mobyproject.org/buildkit@v1#metadata";

/// The source repository and revision of the git checkout `dir` is in, when git knows one.
fn vcs(dir: &std::path::Path) -> Option<(String, String)> {
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !s.is_empty()).then_some(s)
    };
    let rev = git(&["rev-parse", "HEAD"])?;
    let source = git(&["config", "--get", "remote.origin.url"]).unwrap_or_default();
    Some((source, rev))
}

/// The predicate for `img`.
pub fn predicate(info: &BuildInfo, mode: Mode, platform: &str) -> Value {
    let materials: Vec<Value> = info
        .materials
        .iter()
        .map(|m| {
            json!({
                "uri": docker_purl(&m.reference, platform),
                "digest": {"sha256": hex_of(&m.digest)},
            })
        })
        .collect();
    let mut args = Map::new();
    if let Some(t) = &info.target {
        args.insert("target".into(), json!(t));
    }
    if mode == Mode::Max {
        for (k, v) in &info.build_args {
            args.insert(format!("build-arg:{k}"), json!(v));
        }
    }
    let started = info.source_date_epoch.unwrap_or(info.started);
    let finished = info.source_date_epoch.unwrap_or(info.finished);
    let mut meta = Map::new();
    if let Some((source, revision)) = vcs(&info.context) {
        meta.insert(
            "vcs".into(),
            json!({"source": source, "revision": revision}),
        );
    }
    if mode == Mode::Max {
        use base64::Engine as _;
        meta.insert(
            "source".into(),
            json!({"infos": [{
                "filename": info.dockerfile_name,
                "language": "Dockerfile",
                "data": base64::engine::general_purpose::STANDARD.encode(&info.dockerfile_text),
            }]}),
        );
    }
    json!({
        "builder": {"id": format!("pkg:generic/brig-build@{}", env!("CARGO_PKG_VERSION"))},
        "buildType": BUILD_TYPE,
        "materials": materials,
        "invocation": {
            "configSource": {"entryPoint": info.dockerfile_name},
            "parameters": {
                "frontend": "dockerfile.v0",
                "args": args,
                "locals": [{"name": "context"}, {"name": "dockerfile"}],
            },
            "environment": {"platform": platform},
        },
        "metadata": {
            "buildStartedOn": rfc3339(started),
            "buildFinishedOn": rfc3339(finished),
            "completeness": {
                "parameters": mode == Mode::Max,
                "environment": true,
                "materials": false,
            },
            "reproducible": false,
            METADATA_KEY: meta,
        },
    })
}
