//! Helpers for the end-to-end tests of brig (or any runc-compatible binary).
//!
//! * [`Runtime`] runs `BIN --root ROOT <args>` with a private temporary state root and deletes
//!   (with `--force`) every container id it handed out when dropped, even on panic.
//! * [`Bundle`] is a temporary bundle directory: a busybox rootfs plus a `config.json` built from
//!   [`default_spec`] (the equivalent of `runc spec`, non-terminal) and edited with [`Bundle::with`].
//! * [`assert_no_leftovers`] checks that a container left nothing behind: state dir, cgroups,
//!   mounts, processes.
//!
//! The binary under test is `$BRIG` if set (absolute path; `BRIG=/usr/sbin/runc` validates the
//! tests against runc), else `target/{debug,release}/brig` of this workspace (the newer one).

//! One module a concern, all re-exported at the root (`use brig_tests::*`), except the builder's
//! helpers ([`builder`]), which only the `builder_*` files use:
//!
//! | module | what |
//! |---|---|
//! | [`command`] | where the binaries under test are, running them with a limit, their [`Out`] |
//! | [`runtime`] | [`Runtime`] |
//! | [`bundle`] | the busybox rootfs, [`default_spec`], [`Bundle`], config shorthands |
//! | [`host`] | cgroups and processes of a container, [`assert_no_leftovers`], polling |
//! | [`caps`], [`syscalls`] | capability masks; a seccomp allow-list |
//! | [`socket`] | fds received over unix sockets (console, seccomp agent) |
//! | [`rootless`] | the runtime run by an unprivileged user |
//! | [`image`], [`containerd`] | a busybox OCI archive; a containerd of the test's own with the shim |
//! | [`registry`], [`dockerd`] | a docker-registry on 127.0.0.1, a dockerd, of the test's own (not re-exported) |
//!
//! The end-to-end files in tests/ are named by the program they test: `runtime_*`, `shim_*`,
//! `builder_*`.

pub mod builder;
pub mod bundle;
pub mod caps;
pub mod command;
pub mod containerd;
pub mod dockerd;
pub mod host;
pub mod image;
pub mod registry;
pub mod rootless;
pub mod runtime;
pub mod socket;
pub mod syscalls;

pub use bundle::*;
pub use caps::*;
pub use command::*;
pub use containerd::*;
pub use host::*;
pub use image::*;
pub use rootless::*;
pub use runtime::*;
pub use socket::*;
pub use syscalls::*;
