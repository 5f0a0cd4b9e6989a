//! Runtime options containerd passes in Create: runc's shim options
//! (`containerd.runc.v1.Options`: `BinaryName`, `Root`, ...), kept in the
//! bundle as `options.json` so the `delete` subcommand, run after a shim
//! crash, drives the same runtime.

use std::path::Path;

use containerd_shim::util::{read_options, write_options};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::Options;

use crate::error::{Error, Result};

const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";

/// Decodes the options of a Create request (none: the defaults).
pub fn from_any(any: Option<&Any>) -> Result<Options> {
    let Some(any) = any else {
        return Ok(Options::default());
    };
    if any.type_url.is_empty() && any.value.is_empty() {
        return Ok(Options::default());
    }
    if any.type_url.rsplit('/').next() == Some(RUNC_OPTIONS) {
        return Options::parse_from_bytes(&any.value)
            .map_err(|e| Error::InvalidArgument(format!("runtime options {}: {e}", any.type_url)));
    }
    Err(Error::InvalidArgument(format!(
        "runtime options of type {:?} are not supported (want {RUNC_OPTIONS})",
        any.type_url
    )))
}

pub fn save(bundle: &Path, opts: &Options) -> Result<()> {
    write_options(&bundle.display().to_string(), opts)
        .map_err(|e| Error::Other(format!("write {}/options.json: {e}", bundle.display())))
}

/// The options saved at Create, or the defaults.
pub fn load(bundle: &Path) -> Options {
    read_options(bundle).unwrap_or_default()
}
