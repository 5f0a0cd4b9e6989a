//! One file per kernel facility the container init sets up.

pub mod capabilities;
pub mod clone;
pub mod lsm;
pub mod mount_options;
pub mod mountinfo;
pub mod namespaces;
pub mod resolve;
pub mod rlimits;
pub mod rootfs;
pub mod rootfs_plan;
pub mod seccomp;
pub mod seccomp_cache;
pub mod selfexe;
pub mod sysctl;
pub mod tty;
pub mod user;
