//! brig-build: Dockerfile → layered OCI image.
//!
//! Stages, one module each: [`dockerfile`] (parse, expand, ignore) → [`plan`] (which stages the
//! target needs) → [`exec`] (COPY/ADD/RUN write layers; RUN through a runc-compatible runtime)
//! → [`image`] (layers, config, the local store, safe unpacking) → [`export`] (OCI layout,
//! oci-archive, docker-archive, registry); [`registry`] pulls and pushes over the OCI
//! distribution API; [`progress`] prints what the build does.

pub mod dockerfile;
pub mod exec;
pub mod export;
pub mod fsroot;
pub mod image;
pub mod progress;
pub mod registry;
