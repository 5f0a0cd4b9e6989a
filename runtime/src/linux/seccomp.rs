//! seccomp: OCI profile → libseccomp filter (compiled in the parent, loaded in the child).
//!
//! This module owns the translation of `linux.seccomp` into a classic BPF
//! program and the one syscall that installs it. [`compile`] runs in the
//! parent, before clone: it validates the profile (errors carry the JSON path
//! in config.json), asks libseccomp to generate the filter and exports it as
//! raw BPF instructions. [`SeccompProgram::load`] runs in the child, after
//! clone, and is a single `seccomp(SECCOMP_SET_MODE_FILTER)` call on the
//! precomputed instructions: no parsing, no libseccomp, no allocation.
//!
//! It must never: set `no_new_privs` (the caller owns that ordering), touch
//! capabilities, log, or allocate on the child's success path. The libseccomp
//! context never crosses the clone.
//!
//! Semantics follow runc: `SCMP_ACT_KILL` is `KILL_THREAD`; `errnoRet`
//! defaults to `EPERM` for `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE`; syscall
//! names libseccomp does not know are skipped; rules whose action equals the
//! default action are skipped; a rule with several conditions on the same
//! argument index becomes one rule per condition (an OR), because libseccomp
//! ANDs the conditions of a rule and cannot AND two on one argument;
//! `SECCOMP_FILTER_FLAG_TSYNC` is accepted but not passed to the kernel (the
//! child is single-threaded, and TSYNC conflicts with NEW_LISTENER).
//! The other flags are passed to `seccomp(2)` directly, so they work whatever
//! the libseccomp version; a flag the kernel rejects is a profile error, and
//! `WAIT_KILLABLE_RECV` only takes effect with a listener. No flag is added
//! by default (runc 1.1 adds none; later runc adds `SPEC_ALLOW`).
//! Stricter than runc, as the runtime-spec requires: `errnoRet` on an action
//! that takes no errno is an error.
//!
//! Like runc, a profile whose default is not "allow" gets a stub in front of
//! libseccomp's program that answers `ENOSYS` for syscall numbers above the
//! highest one the profile names (per x86 architecture): a syscall newer than
//! the profile then looks unimplemented, and libc falls back to an older one
//! instead of failing with the default errno. libseccomp has no such option,
//! so the stub is a few hand-written BPF instructions (`enosys_stub`).

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
    ScmpVersion,
};
use nix::errno::Errno;
use nix::sys::memfd::{memfd_create, MFdFlags};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

use crate::error::{Error, Result};

/// The file named in profile errors.
const CONFIG: &str = "config.json";

/// The kernel's limit on the length of one classic BPF program.
const BPF_MAXINSNS: usize = 4096;

/// Linux syscalls take at most six arguments.
const SYSCALL_MAX_ARGS: usize = 6;

/// The size of one exported `struct sock_filter`.
const SOCK_FILTER_LEN: usize = std::mem::size_of::<libc::sock_filter>();

/// Above this many syscall entries, ask libseccomp for a binary-tree filter
/// (runc's threshold; libseccomp <= 2.5.4 misbehaves with the tree and no rules).
const OPTIMIZE_ABOVE: usize = 32;

/// Seccomp actions brig recognises, sorted (as `runc features` lists them).
pub const KNOWN_ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];

/// Argument comparison operators brig recognises, sorted.
pub const KNOWN_OPERATORS: &[&str] = &[
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

/// Filter flags brig recognises (the runtime-spec list, in runc's order).
pub const KNOWN_FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];

/// Every architecture name of the runtime-spec, sorted, with its token.
const ARCHS: &[(&str, Arch)] = &[
    ("SCMP_ARCH_AARCH64", Arch::ScmpArchAarch64),
    ("SCMP_ARCH_ARM", Arch::ScmpArchArm),
    ("SCMP_ARCH_LOONGARCH64", Arch::ScmpArchLoongarch64),
    ("SCMP_ARCH_M68K", Arch::ScmpArchM68k),
    ("SCMP_ARCH_MIPS", Arch::ScmpArchMips),
    ("SCMP_ARCH_MIPS64", Arch::ScmpArchMips64),
    ("SCMP_ARCH_MIPS64N32", Arch::ScmpArchMips64n32),
    ("SCMP_ARCH_MIPSEL", Arch::ScmpArchMipsel),
    ("SCMP_ARCH_MIPSEL64", Arch::ScmpArchMipsel64),
    ("SCMP_ARCH_MIPSEL64N32", Arch::ScmpArchMipsel64n32),
    ("SCMP_ARCH_PARISC", Arch::ScmpArchParisc),
    ("SCMP_ARCH_PARISC64", Arch::ScmpArchParisc64),
    ("SCMP_ARCH_PPC", Arch::ScmpArchPpc),
    ("SCMP_ARCH_PPC64", Arch::ScmpArchPpc64),
    ("SCMP_ARCH_PPC64LE", Arch::ScmpArchPpc64le),
    ("SCMP_ARCH_RISCV64", Arch::ScmpArchRiscv64),
    ("SCMP_ARCH_S390", Arch::ScmpArchS390),
    ("SCMP_ARCH_S390X", Arch::ScmpArchS390x),
    ("SCMP_ARCH_SH", Arch::ScmpArchSh),
    ("SCMP_ARCH_SHEB", Arch::ScmpArchSheb),
    ("SCMP_ARCH_X32", Arch::ScmpArchX32),
    ("SCMP_ARCH_X86", Arch::ScmpArchX86),
    ("SCMP_ARCH_X86_64", Arch::ScmpArchX86_64),
];

/// A seccomp filter ready to install: plain BPF plus the `seccomp(2)` flags.
///
/// Built by [`compile`] in the parent; [`SeccompProgram::load`] installs it
/// in the child.
#[derive(Clone)]
pub struct SeccompProgram {
    filter: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
    notify: bool,
    unknown: Vec<String>,
}

impl fmt::Debug for SeccompProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeccompProgram")
            .field("instructions", &self.filter.len())
            .field("flags", &format_args!("{:#x}", self.flags))
            .field("notify", &self.notify)
            .field("unknown_syscalls", &self.unknown)
            .finish()
    }
}

impl SeccompProgram {
    /// Install the filter on the calling thread. Runs in the child after
    /// clone; it makes one syscall and allocates nothing unless it fails.
    ///
    /// The caller must first have set `no_new_privs`, or still hold
    /// `CAP_SYS_ADMIN` in its user namespace; otherwise the kernel answers
    /// `EACCES`. Every syscall the runtime makes after this returns, up to
    /// and including `execve`, is subject to the filter.
    ///
    /// Returns the notification listener fd when the profile uses
    /// `SCMP_ACT_NOTIFY` (see [`SeccompProgram::needs_notify`]).
    pub fn load(&self) -> Result<Option<OwnedFd>> {
        // compile() guarantees 1..=BPF_MAXINSNS instructions, so this fits.
        let len = self.filter.len() as libc::c_ushort;
        let prog = libc::sock_fprog {
            len,
            filter: self.filter.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at `len` initialised instructions owned by
        // `self`, which outlive the call; the kernel only reads (copies) the
        // program and does not keep the pointer.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if ret < 0 {
            let errno = Errno::last();
            return Err(match errno {
                Errno::EACCES => Error::msg(
                    "seccomp(SECCOMP_SET_MODE_FILTER): EACCES: no_new_privs is not set \
                     and CAP_SYS_ADMIN is not held",
                ),
                _ => Error::sys(
                    "seccomp(SECCOMP_SET_MODE_FILTER)",
                    format_args!("filter of {} instructions, flags {:#x}", len, self.flags),
                    errno,
                ),
            });
        }
        if !self.notify {
            return Ok(None);
        }
        let fd = RawFd::try_from(ret)
            .map_err(|_| Error::msg(format!("seccomp returned an impossible listener fd {ret}")))?;
        // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER the kernel returns a
        // new file descriptor that nothing else owns.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Whether the profile uses `SCMP_ACT_NOTIFY`: then [`load`](Self::load)
    /// returns the listener fd, which the runtime must hand to the agent at
    /// `linux.seccomp.listenerPath`.
    pub fn needs_notify(&self) -> bool {
        self.notify
    }

    /// Syscall names of the profile that libseccomp does not know; they were
    /// skipped (runc logs them at debug level).
    pub fn unknown_syscalls(&self) -> &[String] {
        &self.unknown
    }

    /// The number of BPF instructions in the filter.
    pub fn instruction_count(&self) -> usize {
        self.filter.len()
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits [`load`](Self::load) passes to the kernel.
    pub fn kernel_flags(&self) -> libc::c_ulong {
        self.flags
    }

    /// The program as bytes, for [`crate::linux::seccomp_cache`]: flags, notify, the
    /// unknown names (each length-prefixed), then the instructions.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.filter.len() * SOCK_FILTER_LEN);
        // Eight bytes whatever the width of c_ulong (u32 on 32-bit targets).
        #[allow(clippy::useless_conversion)]
        let flags = u64::from(self.flags);
        out.extend_from_slice(&flags.to_le_bytes());
        out.push(self.notify as u8);
        out.extend_from_slice(&(self.unknown.len() as u32).to_le_bytes());
        for n in &self.unknown {
            out.extend_from_slice(&(n.len() as u32).to_le_bytes());
            out.extend_from_slice(n.as_bytes());
        }
        for i in &self.filter {
            out.extend_from_slice(&i.code.to_le_bytes());
            out.push(i.jt);
            out.push(i.jf);
            out.extend_from_slice(&i.k.to_le_bytes());
        }
        out
    }

    /// The inverse of [`SeccompProgram::to_bytes`]; `None` for anything that is not
    /// exactly such bytes of a loadable program.
    pub(crate) fn from_bytes(b: &[u8]) -> Option<SeccompProgram> {
        let take = |b: &mut &[u8], n: usize| -> Option<Vec<u8>> {
            let (h, t) = (b.get(..n)?.to_vec(), b.get(n..)?);
            *b = t;
            Some(h)
        };
        let mut b = b;
        let flags = u64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?);
        let notify = match take(&mut b, 1)?[0] {
            0 => false,
            1 => true,
            _ => return None,
        };
        let n = u32::from_le_bytes(take(&mut b, 4)?.try_into().ok()?) as usize;
        let mut unknown = Vec::new();
        for _ in 0..n {
            let len = u32::from_le_bytes(take(&mut b, 4)?.try_into().ok()?) as usize;
            unknown.push(String::from_utf8(take(&mut b, len)?).ok()?);
        }
        if b.is_empty()
            || !b.len().is_multiple_of(SOCK_FILTER_LEN)
            || b.len() / SOCK_FILTER_LEN > BPF_MAXINSNS
        {
            return None;
        }
        let filter = b
            .chunks_exact(SOCK_FILTER_LEN)
            .map(|c| libc::sock_filter {
                code: u16::from_le_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Some(SeccompProgram {
            filter,
            flags: libc::c_ulong::try_from(flags).ok()?,
            notify,
            unknown,
        })
    }
}

/// Compile an OCI seccomp profile into a loadable program. Runs in the parent.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<SeccompProgram> {
    let default = action(
        seccomp.default_action(),
        seccomp.default_errno_ret(),
        "linux.seccomp.defaultErrnoRet",
    )?;
    if default == ScmpAction::Notify {
        return Err(bad(
            "linux.seccomp.defaultAction",
            "SCMP_ACT_NOTIFY cannot be the default action",
        ));
    }

    let mut ctx = ScmpFilterContext::new(default)
        .map_err(|e| Error::msg(format!("creating the seccomp filter: {e}")))?;

    for (i, arch) in seccomp.architectures().iter().flatten().enumerate() {
        add_arch(&mut ctx, *arch)
            .map_err(|msg| bad(format!("linux.seccomp.architectures[{i}]"), msg))?;
    }

    let mut flags: libc::c_ulong = 0;
    let mut wait_killable = false;
    for (i, flag) in seccomp.flags().iter().flatten().enumerate() {
        let (name, bits) = flag_bits(*flag);
        if !kernel_accepts(probe_bits(bits)) {
            return Err(bad(
                format!("linux.seccomp.flags[{i}]"),
                format!("{name} is not supported by this kernel"),
            ));
        }
        match *flag {
            // Single-threaded child: nothing to synchronise.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => {}
            // Only meaningful with a listener; decided below.
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => wait_killable = true,
            _ => flags |= bits,
        }
    }

    let syscalls = seccomp.syscalls().as_deref().unwrap_or_default();
    if syscalls.len() > OPTIMIZE_ABOVE {
        // Not fatal: older libseccomp has no binary tree, the filter is still right.
        let _ = ctx.set_ctl_optimize(2);
    }

    let mut notify = false;
    let mut unknown = Vec::new();
    for (i, call) in syscalls.iter().enumerate() {
        let act = action(
            call.action(),
            call.errno_ret(),
            &format!("linux.seccomp.syscalls[{i}].errnoRet"),
        )?;
        let conds = conditions(i, call.args().as_deref().unwrap_or_default())?;
        if act == ScmpAction::Notify {
            if call.names().iter().any(|n| n == "write") {
                return Err(bad(
                    format!("linux.seccomp.syscalls[{i}].action"),
                    "SCMP_ACT_NOTIFY cannot be used for the write syscall",
                ));
            }
            notify = true;
        }
        if act == default {
            // libseccomp rejects a rule that repeats the default action.
            continue;
        }
        for (k, name) in call.names().iter().enumerate() {
            if name.is_empty() {
                return Err(bad(
                    format!("linux.seccomp.syscalls[{i}].names[{k}]"),
                    "empty string is not a valid syscall",
                ));
            }
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                unknown.push(name.clone());
                continue;
            };
            add_rules(&mut ctx, act, nr, &conds).map_err(|e| {
                bad(
                    format!("linux.seccomp.syscalls[{i}]"),
                    format!("adding the rule for {name}: {e}"),
                )
            })?;
        }
    }

    if notify {
        if seccomp.listener_path().is_none() {
            return Err(bad(
                "linux.seccomp.listenerPath",
                "SCMP_ACT_NOTIFY is used but listenerPath is not set",
            ));
        }
        let listener = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
        if !kernel_accepts(listener) {
            return Err(Error::msg(
                "SCMP_ACT_NOTIFY: this kernel has no seccomp user notification",
            ));
        }
        flags |= listener;
        if wait_killable {
            flags |= libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
        }
    }

    let mut filter = export(&ctx)?;
    if !matches!(default, ScmpAction::Allow | ScmpAction::Log) {
        let names = syscalls.iter().flat_map(|c| c.names().iter());
        let stub = enosys_stub(&ctx, names);
        if stub.len() + filter.len() > BPF_MAXINSNS {
            return Err(Error::msg(format!(
                "the seccomp profile compiles to {} BPF instructions; the kernel takes at most {}",
                stub.len() + filter.len(),
                BPF_MAXINSNS
            )));
        }
        filter.splice(0..0, stub);
    }
    Ok(SeccompProgram {
        filter,
        flags,
        notify,
        unknown,
    })
}

/// The `ENOSYS` stub (see the module doc): for each x86 architecture in the
/// filter, a syscall number above the highest one `names` resolves to there
/// returns `ENOSYS`; everything else falls through to the program after it.
fn enosys_stub<'a>(
    ctx: &ScmpFilterContext,
    names: impl Iterator<Item = &'a String> + Clone,
) -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const JGT_K: u16 = 0x25;
    const JSET_K: u16 = 0x45;
    const JA: u16 = 0x05;
    const RET_K: u16 = 0x06;
    const OFF_NR: u32 = 0;
    const OFF_ARCH: u32 = 4;
    const X32_BIT: u32 = 0x4000_0000;
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;
    let max_for = |arch: ScmpArch| -> Option<u32> {
        if !ctx.is_arch_present(arch).unwrap_or(false) {
            return None;
        }
        names
            .clone()
            .filter_map(|n| ScmpSyscall::from_name_by_arch(n, arch).ok())
            .map(i32::from)
            .filter(|nr| *nr >= 0)
            .max()
            .map(|nr| nr as u32)
    };
    let (x64, x32, i386) = (
        max_for(ScmpArch::X8664),
        max_for(ScmpArch::X32),
        max_for(ScmpArch::X86),
    );
    if x64.is_none() && x32.is_none() && i386.is_none() {
        return Vec::new();
    }
    // Instructions with symbolic jump targets, resolved below.
    #[derive(Clone, Copy, PartialEq)]
    enum L {
        Next,
        X64,
        I386,
        X32Check,
        Enosys,
        Orig,
    }
    let mut prog: Vec<(u16, L, L, u32)> = Vec::new();
    let mut labels: Vec<(L, usize)> = Vec::new();
    prog.push((LD_W_ABS, L::Next, L::Next, OFF_ARCH));
    if x64.is_some() || x32.is_some() {
        prog.push((JEQ_K, L::X64, L::Next, AUDIT_ARCH_X86_64));
    }
    if i386.is_some() {
        prog.push((JEQ_K, L::I386, L::Next, AUDIT_ARCH_I386));
    }
    prog.push((JA, L::Orig, L::Orig, 0));
    if x64.is_some() || x32.is_some() {
        labels.push((L::X64, prog.len()));
        prog.push((LD_W_ABS, L::Next, L::Next, OFF_NR));
        prog.push((JSET_K, L::X32Check, L::Next, X32_BIT));
        match x64 {
            Some(max) => prog.push((JGT_K, L::Enosys, L::Orig, max)),
            None => prog.push((JA, L::Orig, L::Orig, 0)),
        }
        labels.push((L::X32Check, prog.len()));
        match x32 {
            // libseccomp gives x32 numbers with the x32 bit set.
            Some(max) => prog.push((JGT_K, L::Enosys, L::Orig, max | X32_BIT)),
            None => prog.push((JA, L::Orig, L::Orig, 0)),
        }
    }
    if let Some(max) = i386 {
        labels.push((L::I386, prog.len()));
        prog.push((LD_W_ABS, L::Next, L::Next, OFF_NR));
        prog.push((JGT_K, L::Enosys, L::Orig, max));
    }
    labels.push((L::Enosys, prog.len()));
    prog.push((
        RET_K,
        L::Next,
        L::Next,
        libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
    ));
    labels.push((L::Orig, prog.len()));
    let at = |l: L| {
        labels
            .iter()
            .find(|(x, _)| *x == l)
            .map(|(_, i)| *i)
            .expect("label placed")
    };
    prog.iter()
        .enumerate()
        .map(|(i, &(code, jt, jf, k))| {
            // Jumps are relative to the next instruction and only go forward.
            let rel = |l: L| {
                if l == L::Next {
                    0
                } else {
                    (at(l) - i - 1) as u32
                }
            };
            if code == JA {
                libc::sock_filter {
                    code,
                    jt: 0,
                    jf: 0,
                    k: rel(jt),
                }
            } else {
                libc::sock_filter {
                    code,
                    jt: rel(jt) as u8,
                    jf: rel(jf) as u8,
                    k,
                }
            }
        })
        .collect()
}

/// The filter flags of [`KNOWN_FLAGS`] this kernel accepts.
pub fn supported_flags() -> Vec<&'static str> {
    [
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
        LinuxSeccompFilterFlag::SeccompFilterFlagLog,
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
    ]
    .into_iter()
    .map(flag_bits)
    .filter(|(_, bits)| kernel_accepts(probe_bits(*bits)))
    .map(|(name, _)| name)
    .collect()
}

/// The architecture names of the runtime-spec that the installed libseccomp
/// knows, sorted. A filter holds only architectures of the host's byte
/// order, so not every one of them can be added to a profile on this host.
pub fn supported_archs() -> Vec<&'static str> {
    ARCHS
        .iter()
        .filter(|(_, arch)| libseccomp_knows(*arch))
        .map(|(name, _)| *name)
        .collect()
}

/// Whether libseccomp knows `arch`: it resolves a syscall every
/// architecture has only for architectures it knows.
fn libseccomp_knows(arch: Arch) -> bool {
    ScmpSyscall::from_name_by_arch("read", scmp_arch(arch)).is_ok()
}

/// The version of the libseccomp brig runs with, e.g. "2.5.4".
pub fn libseccomp_version() -> Option<String> {
    ScmpVersion::current()
        .ok()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
}

fn bad(path: impl Into<String>, msg: impl Into<String>) -> Error {
    Error::config(CONFIG, path, msg)
}

/// The libseccomp action for an OCI action; `errno_path` names the errnoRet
/// field for errors.
fn action(act: LinuxSeccompAction, errno_ret: Option<u32>, errno_path: &str) -> Result<ScmpAction> {
    let ret = match errno_ret {
        None => libc::EPERM as u16,
        Some(v) => match act {
            LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace => u16::try_from(v)
                .map_err(|_| {
                    bad(
                        errno_path,
                        format!("{v} does not fit the 16-bit errno field"),
                    )
                })?,
            _ => return Err(bad(errno_path, format!("{act} takes no errno value"))),
        },
    };
    Ok(match act {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(ret)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(ret),
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
    })
}

/// The conditions of `syscalls[i]`, and whether two share an argument index.
struct Conditions {
    conds: Vec<ScmpArgCompare>,
    shared_index: bool,
}

fn conditions(i: usize, args: &[LinuxSeccompArg]) -> Result<Conditions> {
    let mut seen = [false; SYSCALL_MAX_ARGS];
    let mut shared_index = false;
    let mut conds = Vec::with_capacity(args.len());
    for (j, arg) in args.iter().enumerate() {
        let index = arg.index();
        let Some(slot) = seen.get_mut(index) else {
            return Err(bad(
                format!("linux.seccomp.syscalls[{i}].args[{j}].index"),
                format!(
                    "{index} is out of range: syscalls take at most {SYSCALL_MAX_ARGS} arguments"
                ),
            ));
        };
        shared_index |= *slot;
        *slot = true;
        let (op, datum) = match arg.op() {
            LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, arg.value()),
            LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, arg.value()),
            LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, arg.value()),
            LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, arg.value()),
            LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, arg.value()),
            LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, arg.value()),
            // (argument & value) == valueTwo
            LinuxSeccompOperator::ScmpCmpMaskedEq => (
                ScmpCompareOp::MaskedEqual(arg.value()),
                arg.value_two().unwrap_or(0),
            ),
        };
        // index < SYSCALL_MAX_ARGS, checked above.
        conds.push(ScmpArgCompare::new(index as u32, op, datum));
    }
    Ok(Conditions {
        conds,
        shared_index,
    })
}

fn add_rules(
    ctx: &mut ScmpFilterContext,
    act: ScmpAction,
    nr: ScmpSyscall,
    c: &Conditions,
) -> std::result::Result<(), libseccomp::error::SeccompError> {
    if c.conds.is_empty() {
        ctx.add_rule(act, nr)?;
    } else if c.shared_index {
        // As runc: one rule per condition, i.e. the conditions are ORed.
        for cond in &c.conds {
            ctx.add_rule_conditional(act, nr, std::slice::from_ref(cond))?;
        }
    } else {
        ctx.add_rule_conditional(act, nr, &c.conds)?;
    }
    Ok(())
}

fn scmp_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// Add `arch` to the filter unless it is there (the native one always is).
fn add_arch(ctx: &mut ScmpFilterContext, arch: Arch) -> std::result::Result<(), String> {
    let token = scmp_arch(arch);
    let present = ctx.is_arch_present(token).unwrap_or(false);
    if present {
        return Ok(());
    }
    ctx.add_arch(token).map(|_| ()).map_err(|e| {
        if libseccomp_knows(arch) {
            format!("{arch} cannot share a filter with this host's architecture (byte order): {e}")
        } else {
            let version = libseccomp_version().unwrap_or_else(|| "?".into());
            format!("{arch} is not supported by libseccomp {version}: {e}")
        }
    })
}

/// The spec name and kernel bits of a filter flag.
fn flag_bits(flag: LinuxSeccompFilterFlag) -> (&'static str, libc::c_ulong) {
    match flag {
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => {
            ("SECCOMP_FILTER_FLAG_TSYNC", libc::SECCOMP_FILTER_FLAG_TSYNC)
        }
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => (
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
            libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        ),
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => {
            ("SECCOMP_FILTER_FLAG_LOG", libc::SECCOMP_FILTER_FLAG_LOG)
        }
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => (
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
            libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
        ),
    }
}

/// The bits to probe for `bits`: the kernel accepts WAIT_KILLABLE_RECV only
/// together with NEW_LISTENER.
fn probe_bits(bits: libc::c_ulong) -> libc::c_ulong {
    if bits & libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV != 0 {
        bits | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
    } else {
        bits
    }
}

/// Whether the kernel accepts these `SECCOMP_SET_MODE_FILTER` flags.
fn kernel_accepts(flags: libc::c_ulong) -> bool {
    // SAFETY: the program pointer is NULL. The kernel checks the flags first
    // (EINVAL when unknown or inconsistent), then fails to copy the program
    // with EFAULT; no filter is ever installed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    ret < 0 && Errno::last() == Errno::EFAULT
}

/// Export the filter as BPF through a memfd (libseccomp writes to an fd) and
/// decode it into instructions.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>> {
    let fd = memfd_create(c"brig-seccomp-bpf", MFdFlags::MFD_CLOEXEC)
        .map_err(|e| Error::sys("memfd_create", "brig-seccomp-bpf", e))?;
    ctx.export_bpf(&fd)
        .map_err(|e| Error::msg(format!("exporting the seccomp filter as BPF: {e}")))?;
    let mut file = File::from(fd);
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| Error::io("reading the exported seccomp BPF", e))?;
    if bytes.len() % SOCK_FILTER_LEN != 0 {
        return Err(Error::msg(format!(
            "libseccomp exported {} bytes of BPF, not a whole number of instructions",
            bytes.len()
        )));
    }
    let filter: Vec<libc::sock_filter> = bytes
        .chunks_exact(SOCK_FILTER_LEN)
        .map(|b| libc::sock_filter {
            code: u16::from_ne_bytes([b[0], b[1]]),
            jt: b[2],
            jf: b[3],
            k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        })
        .collect();
    if filter.is_empty() || filter.len() > BPF_MAXINSNS {
        return Err(Error::msg(format!(
            "the seccomp profile compiles to {} BPF instructions; the kernel takes 1 to {}",
            filter.len(),
            BPF_MAXINSNS
        )));
    }
    Ok(filter)
}

/// In the runtime: sends the seccomp listener fd to the agent listening at
/// `listener_path`, with the container process state (runtime-spec
/// "ContainerProcessState": ociVersion, fds, pid, metadata, state).
pub fn send_to_agent(
    listener_path: &std::path::Path,
    metadata: Option<&str>,
    fd: std::os::fd::BorrowedFd,
    pid: i32,
    state_json: &str,
) -> Result<()> {
    let state: serde_json::Value =
        serde_json::from_str(state_json).map_err(|e| Error::msg(e.to_string()))?;
    let mut msg = serde_json::json!({
        "ociVersion": crate::OCI_VERSION,
        "fds": ["seccompFd"],
        "pid": pid,
    });
    if let Some(m) = metadata.filter(|m| !m.is_empty()) {
        msg["metadata"] = m.into();
    }
    msg["state"] = state;
    let sock = std::os::unix::net::UnixStream::connect(listener_path).map_err(|e| {
        Error::io(
            format!(
                "failed to connect with seccomp agent at {}",
                listener_path.display()
            ),
            e,
        )
    })?;
    let data = msg.to_string();
    use std::os::fd::AsRawFd;
    let fds = [fd.as_raw_fd()];
    let iov = [std::io::IoSlice::new(data.as_bytes())];
    nix::sys::socket::sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .map_err(|e| Error::sys("send seccomp fd to", listener_path.display(), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn profile(v: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(v).expect("test profile deserialises")
    }

    fn config_err(v: serde_json::Value) -> (String, String) {
        match compile(&profile(v)) {
            Err(Error::Config { path, msg, .. }) => (path, msg),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn compiles_allow_all() {
        let p = compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW"}))).unwrap();
        assert!(p.instruction_count() > 0);
        assert!(!p.needs_notify());
        assert_eq!(p.kernel_flags(), 0);
    }

    #[test]
    fn compiles_a_docker_like_profile() {
        let p = compile(&profile(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"],
            "syscalls": [
                {"names": ["read", "write", "exit_group", "no_such_syscall_xyz"],
                 "action": "SCMP_ACT_ALLOW"},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                          {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0,
                           "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["ptrace"], "action": "SCMP_ACT_TRACE", "errnoRet": 5},
                {"names": ["reboot"], "action": "SCMP_ACT_KILL_PROCESS"},
                {"names": ["swapon"], "action": "SCMP_ACT_TRAP"},
                {"names": ["acct"], "action": "SCMP_ACT_LOG"},
                {"names": ["mount"], "action": "SCMP_ACT_KILL"},
                // Same as the default action: skipped, not an error.
                {"names": ["chroot"], "action": "SCMP_ACT_ERRNO"}
            ]
        })))
        .unwrap();
        assert_eq!(p.unknown_syscalls(), ["no_such_syscall_xyz"]);
        // TSYNC is accepted but not passed on.
        assert_eq!(p.kernel_flags(), libc::SECCOMP_FILTER_FLAG_LOG);
        assert!(p.instruction_count() > 10);
    }

    #[test]
    fn notify_asks_for_a_listener() {
        let p = compile(&profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]
        })))
        .unwrap();
        assert!(p.needs_notify());
        assert_ne!(p.kernel_flags() & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER, 0);
    }

    #[test]
    fn bad_profiles_name_the_json_path() {
        let cases = [
            (
                json!({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 3}),
                "linux.seccomp.defaultErrnoRet",
            ),
            (
                json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"}),
                "linux.seccomp.defaultAction",
            ),
            (
                json!({"defaultAction": "SCMP_ACT_ALLOW",
                       "syscalls": [{"names": ["read"], "action": "SCMP_ACT_LOG"},
                                    {"names": ["mkdir"], "action": "SCMP_ACT_KILL",
                                     "errnoRet": 1}]}),
                "linux.seccomp.syscalls[1].errnoRet",
            ),
            (
                json!({"defaultAction": "SCMP_ACT_ALLOW",
                       "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                                     "errnoRet": 70000}]}),
                "linux.seccomp.syscalls[0].errnoRet",
            ),
            (
                json!({"defaultAction": "SCMP_ACT_ALLOW",
                       "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                     "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"},
                                              {"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}),
                "linux.seccomp.syscalls[0].args[1].index",
            ),
            (
                json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x",
                       "syscalls": [{"names": ["read", "write"],
                                     "action": "SCMP_ACT_NOTIFY"}]}),
                "linux.seccomp.syscalls[0].action",
            ),
            (
                json!({"defaultAction": "SCMP_ACT_ALLOW",
                       "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]}),
                "linux.seccomp.listenerPath",
            ),
            (
                json!({"defaultAction": "SCMP_ACT_ALLOW",
                       "syscalls": [{"names": ["read", ""], "action": "SCMP_ACT_ERRNO"}]}),
                "linux.seccomp.syscalls[0].names[1]",
            ),
        ];
        for (v, want) in cases {
            let (path, msg) = config_err(v.clone());
            assert_eq!(path, want, "profile {v}: {msg}");
        }
    }

    #[test]
    fn enosys_for_syscalls_newer_than_the_profile() {
        // default ERRNO(EPERM); getppid allowed. In a forked child with the
        // filter loaded: getppid works, getpid (older, not named) gets EPERM,
        // syscall 1000 (newer than anything named) gets ENOSYS.
        let p = compile(&profile(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["getppid", "exit_group", "exit", "write"], "action": "SCMP_ACT_ALLOW"}]
        })))
        .unwrap();
        // SAFETY: fork in a test; the child only makes raw syscalls and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                if p.load().is_err() {
                    libc::_exit(10);
                }
                let ok = libc::syscall(libc::SYS_getppid) > 0;
                let eperm = libc::syscall(libc::SYS_getpid) == -1
                    && *libc::__errno_location() == libc::EPERM;
                let enosys = libc::syscall(1000) == -1 && *libc::__errno_location() == libc::ENOSYS;
                libc::_exit(if !ok {
                    11
                } else if !eperm {
                    12
                } else if !enosys {
                    13
                } else {
                    0
                });
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "child died: {status:#x}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "11: getppid blocked, 12: no EPERM, 13: no ENOSYS"
        );
    }

    #[test]
    fn unsupported_arch_names_the_json_path() {
        // Pick an architecture the installed libseccomp does not know, if any.
        let supported = supported_archs();
        let Some((name, _)) = ARCHS.iter().find(|(n, _)| !supported.contains(n)) else {
            return;
        };
        let (path, msg) = config_err(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86", name]
        }));
        assert_eq!(path, "linux.seccomp.architectures[1]");
        assert!(msg.contains(name), "{msg}");
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn foreign_byte_order_arch_names_the_json_path() {
        let (path, msg) = config_err(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_S390X"]
        }));
        assert_eq!(path, "linux.seccomp.architectures[0]");
        assert!(msg.contains("SCMP_ARCH_S390X"), "{msg}");
    }

    #[test]
    fn unknown_names_fail_when_parsing_with_their_path() {
        // Unknown action, arch, operator and flag names never reach compile():
        // oci-spec's enums reject them, and serde_path_to_error names the
        // field (the spec loader prefixes "linux.seccomp.").
        for (v, want) in [
            (
                json!({"defaultAction": "SCMP_ACT_ALLOW",
                       "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                                    {"names": ["read"], "action": "SCMP_ACT_EXPLODE"}]}),
                "syscalls[1].action",
            ),
            (
                json!({"defaultAction": "SCMP_ACT_ALLOW",
                       "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_Z80"]}),
                "architectures[1]",
            ),
            (
                json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NOPE"]}),
                "flags[0]",
            ),
        ] {
            let err = serde_path_to_error::deserialize::<_, LinuxSeccomp>(v).unwrap_err();
            assert_eq!(err.path().to_string(), want);
        }
    }

    #[test]
    fn introspection() {
        assert_eq!(
            libseccomp_version().unwrap().split('.').count(),
            3,
            "version looks like x.y.z"
        );
        let archs = supported_archs();
        for a in ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"] {
            assert!(archs.contains(&a), "{a} missing from {archs:?}");
        }
        let flags = supported_flags();
        assert!(flags.contains(&"SECCOMP_FILTER_FLAG_LOG"), "{flags:?}");
        assert!(flags.iter().all(|f| KNOWN_FLAGS.contains(f)));
    }

    /// Fork, run `check` in the child after loading `p` with no_new_privs,
    /// and return the child's wait status. The child only makes raw
    /// syscalls: the test harness is multi-threaded.
    fn in_child(p: &SeccompProgram, check: fn(Option<OwnedFd>) -> i32) -> i32 {
        // SAFETY: the child only calls async-signal-safe functions
        // (prctl, seccomp, raw syscalls, _exit) before exiting.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: plain prctl with constant arguments.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                // SAFETY: _exit never returns and is async-signal-safe.
                unsafe { libc::_exit(100) };
            }
            let code = match p.load() {
                Ok(fd) => check(fd),
                Err(_) => 101,
            };
            // SAFETY: as above.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: pid is our child; status is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(r, pid);
        status
    }

    fn errno() -> i32 {
        Errno::last_raw()
    }

    const GETPID_ERRNO: i32 = libc::ENOKEY;
    const DUP_ERRNO: i32 = libc::EBADFD;

    fn check_errnos(_: Option<OwnedFd>) -> i32 {
        // mkdir → EPERM
        // SAFETY: raw syscalls with valid C strings / integer arguments.
        unsafe {
            if libc::mkdir(c"/nonexistent-brig-seccomp-test".as_ptr(), 0o755) != -1
                || errno() != libc::EPERM
            {
                return 1;
            }
            if libc::syscall(libc::SYS_getpid) != -1 || errno() != GETPID_ERRNO {
                return 2;
            }
            // Two conditions on arg 0: ORed (runc semantics).
            for fd in [998, 999] {
                if libc::syscall(libc::SYS_dup, fd) != -1 || errno() != DUP_ERRNO {
                    return 3;
                }
            }
            let fd = libc::syscall(libc::SYS_dup, 0);
            if fd < 0 {
                return 4;
            }
            // MASKED_EQ: (flags & O_CLOEXEC) == O_CLOEXEC is denied.
            if libc::syscall(libc::SYS_dup3, 0, 100, libc::O_CLOEXEC) != -1 || errno() != DUP_ERRNO
            {
                return 5;
            }
            if libc::syscall(libc::SYS_dup3, 0, 100, 0) != 100 {
                return 6;
            }
            // Still allowed by default.
            if libc::syscall(libc::SYS_getppid) <= 0 {
                return 7;
            }
        }
        0
    }

    #[test]
    fn loaded_filter_returns_the_errnos() {
        let p = compile(&profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": GETPID_ERRNO},
                {"names": ["dup"], "action": "SCMP_ACT_ERRNO", "errnoRet": DUP_ERRNO,
                 "args": [{"index": 0, "value": 998, "op": "SCMP_CMP_EQ"},
                          {"index": 0, "value": 999, "op": "SCMP_CMP_EQ"}]},
                {"names": ["dup3"], "action": "SCMP_ACT_ERRNO", "errnoRet": DUP_ERRNO,
                 "args": [{"index": 2, "value": libc::O_CLOEXEC, "valueTwo": libc::O_CLOEXEC,
                           "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        })))
        .unwrap();
        let status = in_child(&p, check_errnos);
        assert!(libc::WIFEXITED(status), "child died: status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "child check failed");
    }

    #[test]
    fn kill_process_kills_with_sigsys() {
        let p = compile(&profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]
        })))
        .unwrap();
        let status = in_child(&p, |_| {
            // SAFETY: raw syscall without arguments.
            unsafe { libc::syscall(libc::SYS_getppid) };
            0
        });
        assert!(libc::WIFSIGNALED(status), "status {status:#x}");
        assert_eq!(libc::WTERMSIG(status), libc::SIGSYS);
    }

    #[test]
    fn notify_load_returns_a_listener_fd() {
        let p = compile(&profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]
        })))
        .unwrap();
        let status = in_child(&p, |fd| {
            use std::os::fd::AsRawFd;
            let Some(fd) = fd else { return 1 };
            // SAFETY: fcntl on an fd we own.
            let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
            if flags < 0 {
                return 2;
            }
            0
        });
        assert!(libc::WIFEXITED(status), "status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0);
    }
}
