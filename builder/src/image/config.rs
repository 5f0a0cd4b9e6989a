//! The image configuration (`application/vnd.oci.image.config.v1+json`) with the fields docker
//! adds (Healthcheck, OnBuild, Shell, ...).
//!
//! Our own serde types rather than `oci_spec::image::ImageConfiguration`: that type has no
//! Healthcheck/OnBuild/Shell, and a base image's unknown fields must survive a rebuild, which
//! the `extra` maps keep.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub config: RunConfig,
    pub rootfs: RootFs,
    #[serde(default)]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `config` object: what a container of this image runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct History {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

impl ImageConfig {
    /// The config of `FROM scratch`.
    pub fn scratch() -> ImageConfig {
        ImageConfig {
            architecture: host_arch().into(),
            os: "linux".into(),
            ..Default::default()
        }
    }

    /// The architecture's variant (`v7`, `v8`), None when the config names none.
    pub fn variant(&self) -> Option<&str> {
        self.extra
            .get("variant")
            .and_then(serde_json::Value::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Sets the platform's fields (`os`, `architecture`, `variant`).
    pub fn set_platform(&mut self, os: &str, arch: &str, variant: &str) {
        self.os = os.into();
        self.architecture = arch.into();
        if variant.is_empty() {
            self.extra.remove("variant");
        } else {
            self.extra.insert("variant".into(), variant.into());
        }
    }

    /// The value of `NAME` in Env.
    pub fn env(&self, name: &str) -> Option<String> {
        self.config.env.as_ref()?.iter().find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then(|| v.to_string())
        })
    }

    /// Sets `NAME=VALUE` in Env, replacing an earlier value in place.
    pub fn set_env(&mut self, name: &str, value: &str) {
        let env = self.config.env.get_or_insert_with(Vec::new);
        let kv = format!("{name}={value}");
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map(|(k, _)| k).unwrap_or(e) == name)
        {
            Some(e) => *e = kv,
            None => env.push(kv),
        }
    }
}

/// The OCI architecture name of this build.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
