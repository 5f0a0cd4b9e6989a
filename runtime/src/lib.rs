//! brig: an OCI low-level container runtime, a drop-in for runc.
//!
//! The path of one `brig run` reads top to bottom: [`container::create`]
//! (spec checked in [`spec`], the plans made: [`linux::rootfs_plan`],
//! [`process::plan`]) → [`linux::clone::clone_init`] → (in the child)
//! [`process::init`]: [`linux`] in spec order → exec, while the parent serves
//! it ([`process::parent`]) and records the state ([`state::record`]).

pub mod cgroups;
pub mod checkpoint;
pub mod container;
pub mod error;
pub mod events;
pub mod exec;
pub mod features;
pub mod hooks;
pub mod linux;
pub mod logging;
pub mod process;
pub mod ps;
pub mod spec;
pub mod state;
pub mod template;
pub mod update;

pub use error::{Error, Result};

/// The OCI runtime-spec version brig implements.
pub const OCI_VERSION: &str = "1.0.2-dev";
