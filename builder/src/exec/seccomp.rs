//! The seccomp profile of every RUN step: what docker's and containerd's default profile (the
//! one BuildKit applies to its RUN containers) refuses a process with RUN's capabilities.
//!
//! Written as a deny-list over an allowing default, from the profiles' published meaning (not
//! copied): the calls gated on CAP_SYS_ADMIN (mounts, namespaces, setns, bpf, ...) or on
//! capabilities RUN lacks (modules, clocks, reboot, raw I/O, accounting, NUMA policy,
//! process_vm_*), those refused to every container (keyrings, kexec, userfaultfd, perf, obsolete
//! calls), `clone` with a namespace flag, and `clone3` (ENOSYS, so that libc falls back to
//! `clone`, whose flags a filter can see). A deny-list holds on every architecture a build runs
//! on without a table of each one's system calls; the architectures listed keep a 32-bit
//! binary in the step under the same filter.

use serde_json::{json, Value};

/// Calls refused with EPERM.
const REFUSED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "fanotify_init",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setdomainname",
    "sethostname",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "_sysctl",
    "sysfs",
    "syslog",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vhangup",
    "vm86",
    "vm86old",
];

/// The namespace flags of clone(2): CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID,
/// NEWNET (CLONE_NEWTIME shares clone's exit-signal byte: clone3 and unshare only, refused).
const CLONE_NAMESPACES: &[u64] = &[
    0x0002_0000,
    0x0200_0000,
    0x0400_0000,
    0x0800_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
];

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The `linux.seccomp` of a RUN step's bundle.
pub fn profile() -> Value {
    let mut syscalls = vec![
        json!({"names": REFUSED, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}),
        json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}),
    ];
    // One rule a flag: rules are alternatives, the comparisons of one rule all must hold.
    for flag in CLONE_NAMESPACES {
        syscalls.push(json!({
            "names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
            "args": [{"index": clone_flags_arg(), "value": flag, "valueTwo": flag,
                      "op": "SCMP_CMP_MASKED_EQ"}]
        }));
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(),
        "syscalls": syscalls,
    })
}

/// clone(2)'s flags are its first argument on every architecture but s390x (the second).
fn clone_flags_arg() -> u32 {
    if cfg!(target_arch = "s390x") {
        1
    } else {
        0
    }
}

fn architectures() -> &'static [&'static str] {
    if cfg!(target_arch = "x86_64") {
        &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    } else if cfg!(target_arch = "aarch64") {
        &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    } else {
        &[]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_allows_by_default_and_refuses_namespaces_and_mounts() {
        let p = profile();
        assert_eq!(p["defaultAction"], "SCMP_ACT_ALLOW");
        let names = |i: usize| p["syscalls"][i]["names"].as_array().unwrap().clone();
        for call in ["mount", "unshare", "setns", "keyctl", "bpf", "pivot_root"] {
            assert!(names(0).iter().any(|n| n == call), "{call}");
        }
        assert_eq!(p["syscalls"][1]["errnoRet"], ENOSYS);
        let clone_rules = p["syscalls"].as_array().unwrap()[2..].len();
        assert_eq!(clone_rules, CLONE_NAMESPACES.len());
    }
}
