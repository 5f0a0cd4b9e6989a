//! `brig events`: stream a container's OOM notices and resource usage, or print its stats once.

use brig::state::Root;
use brig::Result;

#[derive(clap::Args)]
pub struct EventsArgs {
    /// The stats collection interval.
    #[arg(long, default_value = "5s")]
    interval: String,
    /// Display the container's stats then exit.
    #[arg(long)]
    stats: bool,
    id: String,
}

#[inline(never)]
pub fn run(root: &Root, a: &EventsArgs) -> Result<()> {
    let opts = brig::events::Opts {
        stats_only: a.stats,
        interval: brig::events::parse_duration(&a.interval)?,
    };
    brig::events::run(root, &a.id, opts, &mut std::io::stdout().lock())
}
