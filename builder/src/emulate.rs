//! RUN steps for a foreign platform (`--platform linux/arm64` on an amd64 host), under
//! qemu-user: Debian's qemu-user-static, registered with binfmt_misc only inside a user
//! namespace of the RUN's own.
//!
//! From Linux 6.7 on, binfmt_misc mounted inside a user namespace is an instance of that
//! namespace: handlers registered there serve exec in it and in the namespaces below it, and
//! the host's handlers (`/proc/sys/fs/binfmt_misc`) are neither read nor changed. So a foreign
//! RUN starts the runtime through [`spawn`]: the child unshares a user and a mount namespace,
//! the builder maps it (the ids the builder has, identity, less the last id of the full range:
//! so the runtime sees a user namespace and binds /sys and devices as it does rootless),
//! the child mounts binfmt_misc on a directory of the RUN's work area and registers qemu with
//! the `F` flag (the interpreter is opened at registration, so it needs no path inside the
//! container's root), then execs the runtime. The mount lives as long as that mount namespace:
//! the runtime and the step, nothing longer.
//!
//! The emulators are never installed on the host: [`prepare`] extracts Debian's package
//! (`apt-get download qemu-user-static`, `dpkg-deb -x`, as root of nothing but a cache dir of
//! the store) and takes each architecture's magic and mask from the package's own
//! `/usr/lib/binfmt.d/qemu-ARCH.conf`. What a host lacks (a kernel before 6.7, no binfmt_misc,
//! no user namespaces, no apt-get) is an error that names it, given before the build writes
//! anything.
//!
//! Hand-written with libc: the steps between fork and exec (unshare, wait for the map, mount,
//! register) must run in the child, and only the parent can write a map wider than one id;
//! no crate for spawning processes offers that.

use crate::image::platform::Platform;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// The package the emulators come from, and where [`prepare`] extracts it under its cache dir.
pub const PACKAGE: &str = "qemu-user-static";

/// The first kernel whose binfmt_misc has an instance per user namespace.
pub const MIN_KERNEL: (u32, u32) = (6, 7);

/// An emulator ready to register: the interpreter and the binfmt_misc `register` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    /// The platform it runs (`linux/arm64`).
    pub platform: String,
    pub interpreter: PathBuf,
    /// `:NAME:M:OFFSET:MAGIC:MASK:INTERPRETER:FLAGS`, as written to `register`.
    pub register: Vec<u8>,
}

/// The emulators of a build, by platform (`linux/arm64`).
pub type Handlers = BTreeMap<String, Handler>;

/// True when RUN steps for `p` need an emulator on this host.
pub fn needed(p: &Platform) -> bool {
    let host = Platform::host();
    !(p.os == host.os && p.arch == host.arch)
}

/// qemu's name for the architecture of `p` (its `qemu-NAME-static`).
pub fn qemu_arch(p: &Platform) -> Option<&'static str> {
    Some(match (p.arch.as_str(), p.variant.as_str()) {
        ("amd64", _) => "x86_64",
        ("arm64", _) => "aarch64",
        ("arm", _) => "arm",
        ("386", _) => "i386",
        ("ppc64le", _) => "ppc64le",
        ("s390x", _) => "s390x",
        ("riscv64", _) => "riscv64",
        ("mips64le", _) => "mips64el",
        ("loong64", _) => "loongarch64",
        _ => return None,
    })
}

/// `MAJOR.MINOR` of a kernel release string (`6.18.44-...`).
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Err naming what this host lacks to run RUN steps for `platforms` (those that need
/// emulation); reads only /proc.
pub fn check_host(platforms: &[Platform]) -> Result<(), String> {
    let foreign: Vec<&Platform> = platforms.iter().filter(|p| needed(p)).collect();
    let Some(first) = foreign.first() else {
        return Ok(());
    };
    let why = |what: String| {
        format!(
            "cannot build for {first} on this {} host: {what}",
            Platform::host()
        )
    };
    for p in &foreign {
        if p.os != "linux" {
            return Err(format!(
                "cannot build for {p}: brig-build builds linux images only"
            ));
        }
        if qemu_arch(p).is_none() {
            return Err(format!(
                "cannot build for {p}: no qemu-user emulator is known for architecture {:?}",
                p.arch
            ));
        }
    }
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    match kernel_version(release) {
        Some(v) if v >= MIN_KERNEL => {}
        _ => {
            return Err(why(format!(
                "RUN steps run under qemu-user registered with binfmt_misc inside the build's \
                 own user namespace, which needs Linux {}.{} or later (this kernel: {release:?})",
                MIN_KERNEL.0, MIN_KERNEL.1
            )))
        }
    }
    let fss = fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !fss
        .lines()
        .any(|l| l.split_whitespace().last() == Some("binfmt_misc"))
    {
        return Err(why(
            "the kernel has no binfmt_misc file system (CONFIG_BINFMT_MISC; modprobe binfmt_misc)"
                .into(),
        ));
    }
    let max = fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    if max.trim().parse::<u64>().ok() == Some(0) {
        return Err(why(
            "user namespaces are disabled (sysctl user.max_user_namespaces is 0)".into(),
        ));
    }
    Ok(())
}

/// The handlers for the foreign ones of `platforms`, with the emulators extracted under
/// `cache` (fetched with apt-get the first time). Call [`check_host`] first.
pub fn prepare(cache: &Path, platforms: &[Platform]) -> Result<Handlers, String> {
    let mut out = Handlers::new();
    let foreign: Vec<&Platform> = platforms.iter().filter(|p| needed(p)).collect();
    if foreign.is_empty() {
        return Ok(out);
    }
    let root = cache.join(PACKAGE);
    let arches: Vec<&str> = foreign.iter().filter_map(|p| qemu_arch(p)).collect();
    let have = |a: &str| root.join(format!("usr/bin/qemu-{a}-static")).is_file();
    if !arches.iter().all(|a| have(a)) {
        fetch(cache, &root)?;
    }
    for p in foreign {
        let a = qemu_arch(p).expect("check_host refused platforms without one");
        let interpreter = root.join(format!("usr/bin/qemu-{a}-static"));
        if !interpreter.is_file() {
            return Err(format!(
                "cannot build for {p}: {} has no {} ({PACKAGE} of this Debian release lacks it)",
                root.display(),
                interpreter.display()
            ));
        }
        let conf = root.join(format!("usr/lib/binfmt.d/qemu-{a}.conf"));
        let text = fs::read_to_string(&conf).map_err(|e| format!("{}: {e}", conf.display()))?;
        let register =
            register_line(&text, &interpreter).map_err(|e| format!("{}: {e}", conf.display()))?;
        out.insert(
            p.to_string(),
            Handler {
                platform: p.to_string(),
                interpreter,
                register,
            },
        );
    }
    Ok(out)
}

/// Our `register` line from a binfmt.d line of the package: its name, magic and mask, our
/// interpreter, its flags with `F` (open the interpreter now) and `P` (keep `argv[0]`: busybox
/// and friends pick their applet by it).
pub fn register_line(conf: &str, interpreter: &Path) -> Result<Vec<u8>, String> {
    let line = conf
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(':'))
        .ok_or("no binfmt_misc line")?;
    let delim = &line[..1];
    let f: Vec<&str> = line[1..].split(delim).collect();
    // NAME TYPE OFFSET MAGIC MASK INTERPRETER FLAGS
    if f.len() != 7 || f[1] != "M" {
        return Err(format!(
            "{line:?}: not a magic (M) binfmt_misc line of 7 fields"
        ));
    }
    let mut flags: String = f[6].chars().filter(|c| "POCF".contains(*c)).collect();
    for c in ['F', 'P'] {
        if !flags.contains(c) {
            flags.push(c);
        }
    }
    let interp = interpreter.to_string_lossy();
    if interp.contains(delim) || interp.contains('\n') {
        return Err(format!(
            "{interp:?}: a path with {delim:?} cannot be registered"
        ));
    }
    Ok(format!(":{}:M:{}:{}:{}:{interp}:{flags}", f[0], f[2], f[3], f[4]).into_bytes())
}

/// Extracts Debian's qemu-user-static under `cache` as `root` (through a temporary dir and a
/// rename: a build killed midway leaves no half package).
fn fetch(cache: &Path, root: &Path) -> Result<(), String> {
    let missing = |tool: &str| {
        format!(
            "RUN steps for another platform need Debian's {PACKAGE}, fetched with apt-get \
             download and extracted with dpkg-deb under {}: {tool} was not found",
            cache.display()
        )
    };
    for tool in ["apt-get", "dpkg-deb"] {
        if !in_path(tool) {
            return Err(missing(tool));
        }
    }
    fs::create_dir_all(cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(cache)
        .map_err(|e| format!("{}: {e}", cache.display()))?;
    let run = |cmd: &mut Command, what: &str| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{what} failed ({}): {}; RUN steps for another platform need it (or put the \
             package's files at {})",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            root.display()
        ))
    };
    run(
        Command::new("apt-get")
            .args(["-q", "-o", "APT::Sandbox::User=root", "download", PACKAGE])
            .current_dir(tmp.path()),
        &format!("apt-get download {PACKAGE}"),
    )?;
    let deb = fs::read_dir(tmp.path())
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| format!("apt-get download {PACKAGE}: no .deb was written"))?;
    let files = tmp.path().join("files");
    run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&files),
        &format!("dpkg-deb -x {}", deb.display()),
    )?;
    match fs::rename(&files, root) {
        Ok(()) => Ok(()),
        // Another build extracted it meanwhile.
        Err(_) if root.join("usr/bin").is_dir() => Ok(()),
        Err(e) => Err(format!("{}: {e}", root.display())),
    }
}

fn in_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).any(|d| d.join(tool).is_file())
}

/// The map of the RUN's user namespace: every id this process has, as itself, but the last id
/// of a full range (so that the runtime sees a user namespace, not the initial one).
pub fn child_map(own: &str) -> String {
    crate::idmap::parse_map(own)
        .iter()
        .map(|r| {
            let count = if r.inside as u64 + r.count as u64 >= u32::MAX as u64 {
                u32::MAX - 1 - r.inside
            } else {
                r.count
            };
            format!("{} {} {count}\n", r.inside, r.inside)
        })
        .collect()
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just opened and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::other("a path with a NUL"))
}

/// Spawns `cmd` (the runtime) in a user and mount namespace of its own with `h` registered
/// with binfmt_misc there (see the module doc); `dir` is an empty directory for the mount.
pub fn spawn(cmd: &mut Command, h: &Handler, dir: &Path) -> io::Result<Child> {
    let mount_dir = cstring(dir)?;
    let register = cstring(&dir.join("register"))?;
    let line = h.register.clone();
    let (from_child_r, from_child_w) = pipe()?;
    let (to_child_r, to_child_w) = pipe()?;
    let (cw, cr) = (from_child_w.as_raw_fd(), to_child_r.as_raw_fd());
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe calls (unshare, getpid, read, write, mount, open, close) on data
    // prepared here; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let fail = || Err(io::Error::last_os_error());
            if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
                return fail();
            }
            let pid = libc::getpid().to_ne_bytes();
            if libc::write(cw, pid.as_ptr().cast(), pid.len()) != pid.len() as isize {
                return fail();
            }
            let mut ok = 1u8;
            if libc::read(cr, (&mut ok as *mut u8).cast(), 1) != 1 || ok != 0 {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            if libc::mount(
                c"binfmt_misc".as_ptr(),
                mount_dir.as_ptr(),
                c"binfmt_misc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ) != 0
            {
                return fail();
            }
            let fd = libc::open(register.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return fail();
            }
            let n = libc::write(fd, line.as_ptr().cast(), line.len());
            if n != line.len() as isize {
                let r = fail();
                libc::close(fd);
                return r;
            }
            libc::close(fd);
            Ok(())
        });
    }
    // The map is written by this side while spawn waits for the child's exec.
    let mapper = std::thread::spawn(move || -> Result<(), String> {
        let mut r = fs::File::from(from_child_r);
        let mut w = fs::File::from(to_child_w);
        let mut pid = [0u8; 4];
        if r.read_exact(&mut pid).is_err() {
            return Ok(()); // the child failed before it unshared: spawn says why
        }
        let pid = i32::from_ne_bytes(pid);
        let mapped = ["uid_map", "gid_map"].iter().try_for_each(|m| {
            let own = fs::read_to_string(format!("/proc/self/{m}")).map_err(|e| e.to_string())?;
            let map = child_map(&own);
            fs::write(format!("/proc/{pid}/{m}"), &map)
                .map_err(|e| format!("write /proc/{pid}/{m} ({:?}): {e}", map.trim()))
        });
        let _ = w.write_all(&[u8::from(mapped.is_err())]);
        mapped
    });
    let child = cmd.spawn();
    // The child's ends: closed here so that the mapper sees EOF if the child died early.
    drop(from_child_w);
    drop(to_child_r);
    let mapped = mapper
        .join()
        .unwrap_or_else(|_| Err("the mapping thread panicked".into()));
    let what = format!(
        "running RUN for {} under {}",
        h.platform,
        h.interpreter.display()
    );
    match (child, mapped) {
        (Ok(c), _) => Ok(c),
        (Err(e), Ok(())) => Err(io::Error::new(
            e.kind(),
            format!(
                "{what}: user namespace, binfmt_misc mount on {} or registration: {e}",
                dir.display()
            ),
        )),
        (Err(_), Err(m)) => Err(io::Error::other(format!("{what}: {m}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.18.44-fc-v1272"), Some((6, 18)));
        assert_eq!(kernel_version("6.1.0-30-amd64"), Some((6, 1)));
        assert!(kernel_version("6.1.0").unwrap() < MIN_KERNEL);
        assert!(kernel_version("6.7").unwrap() >= MIN_KERNEL);
        assert_eq!(kernel_version(""), None);
    }

    #[test]
    fn register_line_from_debian_conf() {
        let conf = ":qemu-aarch64:M::\\x7f\\x45:\\xff\\xfe:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF\n";
        let l = register_line(conf, Path::new("/s/qemu-aarch64-static")).unwrap();
        assert_eq!(
            String::from_utf8(l).unwrap(),
            ":qemu-aarch64:M::\\x7f\\x45:\\xff\\xfe:/s/qemu-aarch64-static:OPF"
        );
        let l = register_line(":q:M:0:\\x7f:\\xff:/x:\n", Path::new("/i")).unwrap();
        assert_eq!(String::from_utf8(l).unwrap(), ":q:M:0:\\x7f:\\xff:/i:FP");
        assert!(register_line(":q:E::exe::/x:\n", Path::new("/i")).is_err());
        assert!(register_line("# nothing\n", Path::new("/i")).is_err());
    }

    #[test]
    fn child_maps_keep_the_ids_and_leave_the_initial_namespace() {
        assert_eq!(child_map("0 0 4294967295\n"), "0 0 4294967294\n");
        assert_eq!(
            child_map("0 1000 1\n1 100000 65536\n"),
            "0 0 1\n1 1 65536\n"
        );
    }

    #[test]
    fn platforms_that_need_emulation() {
        assert!(!needed(&Platform::host()));
        let other = if Platform::host().arch == "arm64" {
            "linux/amd64"
        } else {
            "linux/arm64"
        };
        let p = Platform::parse(other).unwrap();
        assert!(needed(&p));
        assert!(qemu_arch(&p).is_some());
        assert!(check_host(&[Platform::parse("linux/sparc64").unwrap()])
            .unwrap_err()
            .contains("sparc64"));
        assert!(check_host(&[Platform::parse("windows/arm64").unwrap()])
            .unwrap_err()
            .contains("linux images only"));
    }
}
