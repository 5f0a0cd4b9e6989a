//! fuse-overlayfs, the overlay a work area falls back to where the kernel's is refused
//! ([`super::overlay`] decides): the daemon's life (started in the foreground as a child of
//! ours, in its own process group so a terminal's Ctrl-C reaches only us, killed by the kernel
//! when we die, SIGKILL: its mount is in the build's private mount namespace, which goes with
//! us; waited for after the unmount, so no daemon outlives its mount). The upper dir it leaves
//! is settled with the kernel's ([`super::upper`]).
//!
//! fuse-overlayfs runs as whoever runs the build: root, or root of a plain user's namespace
//! ([`crate::rootless`]), where it mounts without fusermount3 and stores owners as they are
//! (chown to any mapped id), like the kernel's overlay; so no `uidmapping=`, `squash_to_root`
//! or `xattr_permissions` (which would keep owners in `user.fuseoverlayfs.override_stat`
//! instead) is given. It must be that namespace, not one with fewer ids (such as a namespace
//! of its own mapping only the user, `unshare -r`): the kernel sends a FUSE request with the
//! caller's fsuid and fsgid as seen in the namespace the daemon mounted in, and refuses with
//! EOVERFLOW a request from a caller with an id that has no mapping there; lookups and reads
//! pass, but unlink, mkdir, create, rename fail, so a step running as a user of the image
//! (`USER app`) could read but not delete (seen: `rm: Value too large for defined data
//! type`). In the build's namespace every id a step can have is mapped.

use std::io::{self, Read, Seek};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The program, looked up in PATH only (so PATH decides, as for any tool).
pub const PROGRAM: &str = "fuse-overlayfs";

/// statfs' f_type of a FUSE mount.
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// How long the daemon may take to mount, and to exit once unmounted.
const WAIT: Duration = Duration::from_secs(30);

/// A running fuse-overlayfs daemon serving one mount.
pub struct Daemon {
    child: Option<Child>,
    /// Its stderr.
    log: std::fs::File,
    target: PathBuf,
}

fn find_program() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(PROGRAM))
        .find(|p| p.is_file())
}

/// Mounts fuse-overlayfs at `target`: `lowers` top first, `upper` = (upperdir, workdir) for a
/// read-write mount. Returns once the mount is there; an error carries the daemon's message.
pub fn mount(lowers: &[&Path], upper: Option<(&Path, &Path)>, target: &Path) -> io::Result<Daemon> {
    let prog = find_program().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{PROGRAM} not found in PATH"),
        )
    })?;
    let mut opts = format!(
        "lowerdir={}",
        lowers
            .iter()
            .map(|p| p.to_string_lossy())
            .collect::<Vec<_>>()
            .join(":")
    );
    if let Some((u, w)) = upper {
        opts.push_str(&format!(
            ",upperdir={},workdir={}",
            u.display(),
            w.display()
        ));
    }
    // The mount is there when the target's device changes to a FUSE one (the store itself
    // may be on FUSE).
    let before = rustix::fs::stat(target)?.st_dev;
    let log = tempfile::tempfile()?;
    let mut cmd = Command::new(&prog);
    cmd.arg("-f")
        .arg("-o")
        .arg(&opts)
        .arg(target)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.try_clone()?);
    // SAFETY: setpgid and prctl are async-signal-safe and touch only the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setpgid(0, 0) != 0
                || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", prog.display())))?;
    let mut d = Daemon {
        child: Some(child),
        log,
        target: target.to_path_buf(),
    };
    let start = Instant::now();
    loop {
        let child = d.child.as_mut().expect("set above");
        if let Some(st) = child.try_wait()? {
            d.child = None;
            return Err(io::Error::other(format!(
                "{} -o {opts} {}: {st}{}",
                prog.display(),
                target.display(),
                d.said()?
            )));
        }
        if rustix::fs::stat(target).is_ok_and(|s| s.st_dev != before)
            && rustix::fs::statfs(target).is_ok_and(|s| is_fuse(&s))
        {
            return Ok(d);
        }
        if start.elapsed() > WAIT {
            // It may have mounted meanwhile: the mount goes before the daemon (dropped).
            let _ = rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH);
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{} did not mount {} within {} s",
                    prog.display(),
                    target.display(),
                    WAIT.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// f_type's integer type differs between architectures.
#[allow(clippy::unnecessary_cast)]
fn is_fuse(s: &rustix::fs::StatFs) -> bool {
    s.f_type as i64 == FUSE_SUPER_MAGIC
}

impl Daemon {
    /// What the daemon wrote on stderr, as `: LINE; LINE` (empty if nothing), without its notes
    /// on options the kernel does not know (not a reason it failed).
    fn said(&mut self) -> io::Result<String> {
        let mut msg = String::new();
        self.log.rewind()?;
        self.log.read_to_string(&mut msg)?;
        let lines: Vec<&str> = msg
            .lines()
            .filter(|l| !l.starts_with("unknown argument ignored"))
            .collect();
        Ok(match lines.is_empty() {
            true => String::new(),
            false => format!(": {}", lines.join("; ")),
        })
    }

    /// An error if the daemon has died while its mount is still there (killed, crashed: the
    /// step's root went away under it, though the step may have ended with 0). Asked before
    /// the unmount: after it, the daemon may end with an error of its own (a request it was
    /// reading as the connection closed: ECONNABORTED), which means nothing.
    pub fn check_alive(&mut self) -> io::Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        match child.try_wait()? {
            None => Ok(()),
            Some(st) => {
                self.child = None;
                let said = self.said()?;
                Err(io::Error::other(format!(
                    "{PROGRAM} serving {} died: {st}{said}",
                    self.target.display()
                )))
            }
        }
    }

    /// Waits for the daemon to exit once its mount is gone (it ends by itself); killed after
    /// 30 s.
    pub fn wait(mut self) -> io::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let start = Instant::now();
        while child.try_wait()?.is_none() {
            if start.elapsed() > WAIT {
                let _ = child.kill();
                child.wait()?;
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{PROGRAM} serving {} did not exit after its unmount",
                        self.target.display()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
