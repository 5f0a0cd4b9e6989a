//! `brig update`: change the resource limits of a container.

use brig::state::Root;
use brig::Result;

#[derive(clap::Args)]
pub struct UpdateArgs {
    /// File with the resources to update, or '-' for stdin (other options are then ignored).
    #[arg(short = 'r', long)]
    resources: Option<String>,
    /// Per cgroup weight, 10 to 1000.
    #[arg(long = "blkio-weight", allow_hyphen_values = true)]
    blkio_weight: Option<String>,
    /// CPU CFS period (usecs).
    #[arg(long = "cpu-period", allow_hyphen_values = true)]
    cpu_period: Option<String>,
    /// CPU CFS quota (usecs) per period.
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    cpu_quota: Option<String>,
    /// CPU shares (relative weight).
    #[arg(
        long = "cpu-share",
        visible_alias = "cpu-shares",
        allow_hyphen_values = true
    )]
    cpu_share: Option<String>,
    /// CPU realtime period (usecs).
    #[arg(long = "cpu-rt-period", allow_hyphen_values = true)]
    cpu_rt_period: Option<String>,
    /// CPU realtime runtime (usecs) per period.
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
    cpu_rt_runtime: Option<String>,
    /// CPUs to use.
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Memory nodes to use.
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    #[arg(long = "kernel-memory", hide = true, allow_hyphen_values = true)]
    kernel_memory: Option<String>,
    #[arg(long = "kernel-memory-tcp", hide = true, allow_hyphen_values = true)]
    kernel_memory_tcp: Option<String>,
    /// Memory limit (bytes, or with a unit: 50M, 1g; -1 for unlimited).
    #[arg(long, allow_hyphen_values = true)]
    memory: Option<String>,
    /// Memory reservation (soft limit).
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    memory_reservation: Option<String>,
    /// Memory plus swap limit; -1 for unlimited swap.
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Maximum number of pids (-1 for unlimited).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<String>,
    /// Intel RDT/CAT L3 cache schema.
    #[arg(long = "l3-cache-schema")]
    l3_cache_schema: Option<String>,
    /// Intel RDT/MBA memory bandwidth schema.
    #[arg(long = "mem-bw-schema")]
    mem_bw_schema: Option<String>,
    id: String,
}

#[inline(never)]
pub fn run(root: &Root, a: UpdateArgs) -> Result<()> {
    let id = a.id.clone();
    brig::update::update(root, &id, &flags(a))
}

fn flags(a: UpdateArgs) -> brig::update::Flags {
    brig::update::Flags {
        resources: a.resources,
        blkio_weight: a.blkio_weight,
        cpu_period: a.cpu_period,
        cpu_quota: a.cpu_quota,
        cpu_shares: a.cpu_share,
        cpu_rt_period: a.cpu_rt_period,
        cpu_rt_runtime: a.cpu_rt_runtime,
        cpuset_cpus: a.cpuset_cpus,
        cpuset_mems: a.cpuset_mems,
        kernel_memory: a.kernel_memory,
        kernel_memory_tcp: a.kernel_memory_tcp,
        memory: a.memory,
        memory_reservation: a.memory_reservation,
        memory_swap: a.memory_swap,
        pids_limit: a.pids_limit,
        l3_cache_schema: a.l3_cache_schema,
        mem_bw_schema: a.mem_bw_schema,
    }
}
