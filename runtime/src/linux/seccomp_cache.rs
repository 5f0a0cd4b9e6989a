//! Compiled seccomp filters kept between runs of the runtime.
//!
//! libseccomp's compile of a profile of the size containerd, docker and podman pass (some
//! 380 syscalls, three x86 architectures) takes about 11 ms of CPU, more than the rest of a
//! `run` (bench/README.md). The same profile comes with every container, so the compiled
//! program is kept in the state root's `~seccomp` directory (`~` is in no container id),
//! one file per profile, and taken from there when everything it was compiled from is the
//! same: the profile (its JSON, as parsed), the runtime's executable (device, inode, size,
//! modification time: a rebuilt brig compiles anew) and the kernel (release and version:
//! the flag probes are its answers).
//!
//! A file is named by a hash of that key but holds the key whole, and is used only when
//! its key is byte for byte the one asked for: a hash collision, a truncated or foreign
//! file, anything unreadable means a compile, never a wrong filter. The directory is the
//! runtime's own (mode 0700 in the state root, which is the runtime's too); files are
//! written under a temporary name and renamed. Writing is best effort: the cache never
//! makes a run fail.
//!
//! Hand-written: a few dozen lines of file format; no crate caches libseccomp output.

use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxSeccomp;

use crate::error::Result;
use crate::linux::seccomp::{self, SeccompProgram};

/// The cache's directory under the state root (no container id contains `~`).
pub const DIR: &str = "~seccomp";

/// Files larger than this are not ours (a key of a few hundred KB, a program of 32 KB).
const MAX_FILE: u64 = 16 << 20;

/// [`seccomp::compile`], through the cache in `dir` when there is one.
pub fn compile(profile: &LinuxSeccomp, dir: Option<&Path>) -> Result<SeccompProgram> {
    let (Some(dir), Some(key)) = (dir, key(profile)) else {
        return seccomp::compile(profile);
    };
    let file = dir.join(name(&key));
    if let Some(p) = read(&file, &key) {
        return Ok(p);
    }
    let p = seccomp::compile(profile)?;
    let _ = write(dir, &file, &key, &p);
    Ok(p)
}

/// Everything the compiled program depends on; `None` when some of it cannot be told.
fn key(profile: &LinuxSeccomp) -> Option<Vec<u8>> {
    let mut k = b"brig seccomp cache 1\n".to_vec();
    k.extend(serde_json::to_vec(profile).ok()?);
    let exe = std::fs::metadata("/proc/self/exe").ok()?;
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let version = std::fs::read_to_string("/proc/sys/kernel/version").ok()?;
    k.extend(
        format!(
            "\nexe {} {} {} {}.{}\nkernel {} {}",
            exe.dev(),
            exe.ino(),
            exe.size(),
            exe.mtime(),
            exe.mtime_nsec(),
            release.trim(),
            version.trim()
        )
        .as_bytes(),
    );
    Some(k)
}

fn name(key: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// The program in `file` if the file holds exactly `key` and a valid program.
fn read(file: &Path, key: &[u8]) -> Option<SeccompProgram> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(file)
        .ok()?;
    let meta = f.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE {
        return None;
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut data).ok()?;
    let len = u64::from_le_bytes(data.get(..8)?.try_into().ok()?) as usize;
    let stored = data.get(8..8usize.checked_add(len)?)?;
    if stored != key {
        return None;
    }
    SeccompProgram::from_bytes(&data[8 + len..])
}

fn write(dir: &Path, file: &Path, key: &[u8], p: &SeccompProgram) -> std::io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let tmp: PathBuf = dir.join(format!(".{}.{}", name(key), std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    let mut data = (key.len() as u64).to_le_bytes().to_vec();
    data.extend_from_slice(key);
    data.extend(p.to_bytes());
    let r = f.write_all(&data).and_then(|_| std::fs::rename(&tmp, file));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(names: &[&str]) -> LinuxSeccomp {
        serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
        }))
        .expect("profile")
    }

    #[test]
    fn a_cached_program_is_the_compiled_one_and_only_for_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join(DIR);
        let a = profile(&["read", "write", "exit_group", "no_such_syscall_xyz"]);
        let fresh = seccomp::compile(&a).expect("compile");
        // Miss, then hit: the same program either way.
        let first = compile(&a, Some(&cache)).expect("first");
        assert_eq!(std::fs::read_dir(&cache).expect("cache dir").count(), 1);
        let key_a = key(&a).expect("key");
        let hit = read(&cache.join(name(&key_a)), &key_a).expect("cached program");
        for p in [&first, &hit] {
            assert_eq!(p.to_bytes(), fresh.to_bytes());
            assert_eq!(p.unknown_syscalls(), ["no_such_syscall_xyz"]);
        }
        // Another profile gets its own entry, and never the first one's program.
        let b = profile(&["read", "exit_group"]);
        let other = compile(&b, Some(&cache)).expect("other");
        assert_eq!(
            other.to_bytes(),
            seccomp::compile(&b).expect("b").to_bytes()
        );
        assert_ne!(other.to_bytes(), fresh.to_bytes());
        assert_eq!(std::fs::read_dir(&cache).expect("cache dir").count(), 2);
        // A file whose key differs by one byte, or that is cut short, is not used.
        let file = cache.join(name(&key_a));
        let mut wrong = key_a.clone();
        wrong[0] ^= 1;
        assert!(read(&file, &wrong).is_none());
        let whole = std::fs::read(&file).expect("entry");
        std::fs::write(&file, &whole[..whole.len() - 3]).expect("truncate");
        assert!(read(&file, &key_a).is_none());
        let again = compile(&a, Some(&cache)).expect("recompiled");
        assert_eq!(again.to_bytes(), fresh.to_bytes());
        assert!(
            read(&file, &key_a).is_some(),
            "rewritten after the bad entry"
        );
        // No cache without a directory to keep it in (the root not made yet).
        let none = dir.path().join("missing/root").join(DIR);
        assert_eq!(
            compile(&a, Some(&none)).expect("uncached").to_bytes(),
            fresh.to_bytes()
        );
        assert!(!none.exists());
    }
}
