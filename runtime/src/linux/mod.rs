//! One file per kernel facility the container init sets up.

pub mod capabilities;
pub mod fs;
pub mod lsm;
pub mod mountinfo;
pub mod mounts;
pub mod namespaces;
pub mod rlimits;
pub mod rootfs;
pub mod rootfs_plan;
pub mod seccomp;
pub mod selfexe;
pub mod sysctl;
pub mod tty;
pub mod user;
