//! Device access control on cgroup v2: an eBPF program of type
//! `BPF_PROG_TYPE_CGROUP_DEVICE` attached to the container's cgroup with
//! `BPF_F_ALLOW_MULTI`, as runc and crun do.
//!
//! Owns: turning the device rules (the same list [`super::device_rules`]
//! builds for v1, reduced by the v1 kernel semantics of
//! [`super::devices::State`]) into BPF instructions, loading the program,
//! attaching it and detaching the programs it replaces.
//!
//! The instructions are hand-written: the program is a straight list of
//! compare-and-jump blocks (a dozen opcodes), and the crates that could emit
//! it either pull in a whole BPF loader and ELF toolchain (aya, libbpf-rs
//! need a compiled object) or have no cgroup-device attach at all; raw
//! `bpf(2)` through libc is smaller and keeps every byte reviewable.
//!
//! Program semantics (runc's, with one fix): registers hold the device type,
//! requested access, major and minor from `struct bpf_cgroup_dev_ctx`; each
//! exception of the reduced rule set is a block that returns "not the
//! default" when it matches; the fall-through returns the default. An allow
//! exception matches when the request's access bits are all in the rule's
//! (as the v1 kernel checks); a deny exception (on an allow-by-default set)
//! matches when they overlap, so `rw` on a device denied only `w` is refused
//! (runc's subset check lets it through).
//!
//! Must never: leave the cgroup with no program while replacing one (the new
//! program is attached before the old ones are detached, so for a moment
//! both apply and access can only be narrower), or detach programs it did
//! not find on the container's own cgroup.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;

use super::devices::State;
use crate::error::{Error, Result};

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

// struct bpf_cgroup_dev_ctx: access_type = (access << 16) | type.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// One `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    /// dst (low nibble) and src (high nibble) registers.
    regs: u8,
    off: i16,
    imm: i32,
}

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}
/// dst = *(u32 *)(src + off)
fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x61, dst, src, off, 0)
}
/// dst &= imm (32-bit)
fn and32(dst: u8, imm: i32) -> Insn {
    insn(0x54, dst, 0, 0, imm)
}
/// dst >>= imm (32-bit)
fn rsh32(dst: u8, imm: i32) -> Insn {
    insn(0x74, dst, 0, 0, imm)
}
/// dst = src (32-bit)
fn mov32_reg(dst: u8, src: u8) -> Insn {
    insn(0xbc, dst, src, 0, 0)
}
/// dst = imm (64-bit)
fn mov64(dst: u8, imm: i32) -> Insn {
    insn(0xb7, dst, 0, 0, imm)
}
/// if dst != imm goto +off
fn jne(dst: u8, imm: i32, off: i16) -> Insn {
    insn(0x55, dst, 0, off, imm)
}
/// if dst != src goto +off
fn jne_reg(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x5d, dst, src, off, 0)
}
/// if dst == imm goto +off
fn jeq(dst: u8, imm: i32, off: i16) -> Insn {
    insn(0x15, dst, 0, off, imm)
}
fn exit() -> Insn {
    insn(0x95, 0, 0, 0, 0)
}

/// The program enforcing `state` (what the rules reduce to).
pub(crate) fn program(state: &State) -> Result<Vec<Insn>> {
    let mut p = vec![
        // R2 = device type, R3 = requested access, R4 = major, R5 = minor.
        ldx_w(R2, R1, 0),
        and32(R2, 0xffff),
        ldx_w(R3, R1, 0),
        rsh32(R3, 16),
        ldx_w(R4, R1, 4),
        ldx_w(R5, R1, 8),
    ];
    let allow_on_match = !state.default_allow;
    for (&(kind, major, minor), &access) in &state.exceptions {
        let mut checks: Vec<Box<dyn Fn(i16) -> Vec<Insn>>> = Vec::new();
        let ty = match kind {
            super::devices::Kind::Block => DEV_BLOCK,
            super::devices::Kind::Char => DEV_CHAR,
        };
        checks.push(Box::new(move |to_next| vec![jne(R2, ty, to_next)]));
        let mut acc = 0;
        if access & super::devices::R != 0 {
            acc |= ACC_READ;
        }
        if access & super::devices::W != 0 {
            acc |= ACC_WRITE;
        }
        if access & super::devices::M != 0 {
            acc |= ACC_MKNOD;
        }
        if acc != ACC_READ | ACC_WRITE | ACC_MKNOD {
            checks.push(Box::new(move |to_next| {
                if allow_on_match {
                    // All requested bits must be granted: (R3 & acc) == R3.
                    vec![mov32_reg(R1, R3), and32(R1, acc), jne_reg(R1, R3, to_next)]
                } else {
                    // Any requested bit denied: (R3 & acc) != 0.
                    vec![mov32_reg(R1, R3), and32(R1, acc), jeq(R1, 0, to_next)]
                }
            }));
        }
        for (reg, v) in [(R4, major), (R5, minor)] {
            if v >= 0 {
                let v = i32::try_from(v).map_err(|_| {
                    Error::msg(format!(
                        "linux.resources.devices: device number {v} does not fit the cgroup v2 device program"
                    ))
                })?;
                checks.push(Box::new(move |to_next| vec![jne(reg, v, to_next)]));
            }
        }
        // Lay out the block: the checks jump past its two-instruction tail.
        let lens: Vec<usize> = checks.iter().map(|c| c(0).len()).collect();
        let total: usize = lens.iter().sum::<usize>() + 2;
        let mut done = 0;
        for (c, len) in checks.iter().zip(&lens) {
            done += len;
            let to_next = i16::try_from(total - done).expect("a block is a few instructions");
            p.extend(c(to_next));
        }
        p.push(mov64(R0, i32::from(allow_on_match)));
        p.push(exit());
    }
    p.push(mov64(R0, i32::from(state.default_allow)));
    p.push(exit());
    Ok(p)
}

fn bpf(cmd: libc::c_int, attr: &mut [u64; 16]) -> std::result::Result<i64, Errno> {
    // SAFETY: `attr` is a zeroed, 128-byte, 8-aligned buffer laid out as the
    // union bpf_attr member for `cmd`; the kernel reads at most its size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr) as libc::c_uint,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

fn set_u32(attr: &mut [u64; 16], off: usize, v: u32) {
    let bytes = attr.as_mut_ptr().cast::<u8>();
    assert!(off + 4 <= 128, "bpf_attr offset");
    // SAFETY: in bounds of the 128-byte buffer (checked above).
    unsafe { std::ptr::copy_nonoverlapping(v.to_ne_bytes().as_ptr(), bytes.add(off), 4) }
}

fn fd_u32(fd: RawFd) -> u32 {
    u32::try_from(fd).expect("an open fd is not negative")
}

/// Load `insns` as a cgroup device program.
fn load(insns: &[Insn]) -> Result<OwnedFd> {
    let license = c"Apache";
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = [0u64; 16];
    set_u32(&mut attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE);
    set_u32(
        &mut attr,
        4,
        u32::try_from(insns.len()).expect("a short program"),
    );
    attr[1] = insns.as_ptr() as u64;
    attr[2] = license.as_ptr() as u64;
    set_u32(&mut attr, 24, 1); // log_level
    set_u32(&mut attr, 28, log.len() as u32);
    attr[4] = log.as_mut_ptr() as u64;
    set_u32(&mut attr, 68, BPF_CGROUP_DEVICE); // expected_attach_type
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: BPF_PROG_LOAD returned a new fd that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
        Err(e) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            Err(Error::msg(format!(
                "linux.resources.devices: load the cgroup v2 device program ({} instructions): {e}{}",
                insns.len(),
                if text.trim().is_empty() {
                    String::new()
                } else {
                    format!("; verifier: {}", text.trim())
                }
            )))
        }
    }
}

/// Ids of the device programs attached to the cgroup `dir_fd` itself.
fn query(dir_fd: RawFd, dir: &Path) -> Result<Vec<u32>> {
    let mut ids = [0u32; 64];
    let mut attr = [0u64; 16];
    set_u32(&mut attr, 0, fd_u32(dir_fd));
    set_u32(&mut attr, 4, BPF_CGROUP_DEVICE);
    attr[2] = ids.as_mut_ptr() as u64;
    set_u32(&mut attr, 24, ids.len() as u32);
    bpf(BPF_PROG_QUERY, &mut attr)
        .map_err(|e| Error::sys("query cgroup device programs of", dir.display(), e))?;
    let cnt = (attr[3] & 0xffff_ffff) as usize;
    Ok(ids[..cnt.min(ids.len())].to_vec())
}

/// Make the cgroup `dir` enforce `state`: attach the new program, then
/// detach the ones that were there.
pub(crate) fn set_devices(dir: &Path, state: &State) -> Result<()> {
    let prog = load(&program(state)?)?;
    let cg = nix::fcntl::open(
        dir,
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys("open", dir.display(), e))?;
    let old = query(cg.as_raw_fd(), dir)?;
    let mut attr = [0u64; 16];
    set_u32(&mut attr, 0, fd_u32(cg.as_raw_fd()));
    set_u32(&mut attr, 4, fd_u32(prog.as_raw_fd()));
    set_u32(&mut attr, 8, BPF_CGROUP_DEVICE);
    set_u32(&mut attr, 12, BPF_F_ALLOW_MULTI);
    bpf(BPF_PROG_ATTACH, &mut attr)
        .map_err(|e| Error::sys("attach the device program to", dir.display(), e))?;
    for id in old {
        let mut attr = [0u64; 16];
        set_u32(&mut attr, 0, id);
        let fd = match bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) {
            // SAFETY: a new fd that nothing else owns.
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd as RawFd) },
            // Detached meanwhile.
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(Error::sys("open device program of", dir.display(), e)),
        };
        let mut attr = [0u64; 16];
        set_u32(&mut attr, 0, fd_u32(cg.as_raw_fd()));
        set_u32(&mut attr, 4, fd_u32(fd.as_raw_fd()));
        set_u32(&mut attr, 8, BPF_CGROUP_DEVICE);
        match bpf(BPF_PROG_DETACH, &mut attr) {
            Ok(_) | Err(Errno::ENOENT) => {}
            Err(e) => {
                return Err(Error::sys(
                    "detach the old device program from",
                    dir.display(),
                    e,
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::devices::{device_rules, parse_rules};
    use super::*;

    /// Runs `prog` on one request the way the kernel's interpreter would,
    /// for the handful of opcodes [`program`] emits.
    fn run(prog: &[Insn], ty: i32, acc: i32, major: u32, minor: u32) -> u64 {
        let ctx = [((acc as u32) << 16) | ty as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (d, s) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            let jump = |pc: &mut usize, c: bool| {
                if c {
                    *pc = (*pc as isize + i.off as isize) as usize
                }
            };
            match i.code {
                0x61 => {
                    assert_eq!(s, 1);
                    r[d] = u64::from(ctx[i.off as usize / 4]);
                }
                0x54 => r[d] = (r[d] as u32 & i.imm as u32) as u64,
                0x74 => r[d] = ((r[d] as u32) >> i.imm) as u64,
                0xbc => r[d] = r[s] as u32 as u64,
                0xb7 => r[d] = i.imm as i64 as u64,
                0x55 => jump(&mut pc, r[d] != i.imm as i64 as u64),
                0x5d => jump(&mut pc, r[d] != r[s]),
                0x15 => jump(&mut pc, r[d] == i.imm as i64 as u64),
                0x95 => return r[0],
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn default_rules() {
        let rules = parse_rules(&device_rules(None, None)).expect("rules");
        let p = program(&State::from_rules(&rules)).expect("program");
        // /dev/null read+write, /dev/zero read, mknod of anything.
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 5), 1);
        assert_eq!(run(&p, DEV_BLOCK, ACC_MKNOD, 8, 0), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 136, 7), 1);
        // Not listed: a disk, /dev/mem.
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 0), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 1), 0);
    }

    #[test]
    fn deny_list_overlap() {
        use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
        let mut all = LinuxDeviceCgroup::default();
        all.set_allow(true).set_access(Some("rwm".into()));
        let mut no_w = LinuxDeviceCgroup::default();
        no_w.set_allow(false)
            .set_typ(Some(LinuxDeviceType::C))
            .set_major(Some(1))
            .set_minor(Some(5))
            .set_access(Some("w".into()));
        let rules = parse_rules(&[all, no_w]).expect("rules");
        let p = program(&State::from_rules(&rules)).expect("program");
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 5), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 1, 5), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 5), 0);
        assert_eq!(run(&p, DEV_BLOCK, ACC_WRITE, 8, 0), 1);
    }

    #[test]
    fn kernel_accepts_program() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: loading BPF programs needs root");
            return;
        }
        let rules = parse_rules(&device_rules(None, None)).expect("rules");
        let p = program(&State::from_rules(&rules)).expect("program");
        load(&p).expect("the verifier accepts the program");
    }
}
