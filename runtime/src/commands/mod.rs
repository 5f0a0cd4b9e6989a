//! One module per command of the CLI: its flags and the library calls it makes.
//!
//! Each command's `run` is `#[inline(never)]`: inlined into `dispatch`, every command's
//! locals shared one stack frame of some 50 KB, which the stack probes touch whole on every
//! call (resident memory of each `brig` process; bench/README.md).

pub mod checkpoint;
pub mod create;
pub mod criu;
pub mod delete;
pub mod events;
pub mod exec;
pub mod features;
pub mod kill;
pub mod list;
pub mod pause;
pub mod ps;
pub mod restore;
pub mod resume;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;
pub mod update;
