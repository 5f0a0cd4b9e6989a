//! One module per command of the CLI: its flags and the library calls it makes.

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
