//! brig-build: Dockerfile → layered OCI image.
//!
//! Stages, one module each: [`dockerfile`] (parse, expand, ignore) → [`plan`] (which stages the
//! target needs, as a graph) → [`cache`] (keys as pure functions, the store's entries, export
//! and import) → [`exec`] (COPY/ADD/RUN write layers; RUN through a runc-compatible runtime)
//! → [`image`] (layers, config, the local store, safe unpacking) → [`export`] (OCI layout,
//! oci-archive, docker-archive, registry); [`source`] brings base images into the store,
//! [`registry`] pulls and pushes over the OCI distribution API; [`progress`] prints what the
//! build does.
//!
//! Imports go down that list, never up: `image` imports none of the others but [`fsroot`] and [`idmap`];
//! [`rootless`] (the user namespace of a plain user's build) and [`procfs`] (whether RUN steps
//! get a /proc of their own there) are main's, before all else; `exec` reads the latter's answer;
//! [`emulate`] (qemu-user for RUN steps of another platform) imports `image` and [`idmap`];
//! `registry` imports `image`; `source` and `cache` import both; `plan` imports `dockerfile`,
//! `image` and `source`; `exec` imports them all.

pub mod attest;
pub mod cache;
pub mod docker;
pub mod dockerfile;
pub mod emulate;
pub mod exec;
pub mod export;
pub mod fsroot;
pub mod idmap;
pub mod image;
pub mod plan;
pub mod procfs;
pub mod progress;
pub mod registry;
pub mod rootless;
pub mod source;
