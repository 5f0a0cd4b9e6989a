//! Terminals: the container's pty and the console socket.
//!
//! A process with `terminal: true` gets a pty made inside the container, from
//! the container's own devpts instance (so `tty` says /dev/pts/0): the init
//! opens /dev/ptmx after pivot_root, opens the peer with TIOCGPTPEER (no path
//! lookup of /dev/pts/N that a hostile rootfs could redirect), bind-mounts
//! the peer on /dev/console, makes it its stdio and controlling terminal, and
//! sends the master over the console socket with SCM_RIGHTS, as runc does;
//! containerd and podman receive it there. For a foreground `run` without a
//! socket, brig itself is on the other end of a socketpair and relays the
//! master to its own stdio (`process::foreground`).

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::stat::Mode;

use crate::error::{Error, Result, SysContext};
use crate::linux::resolve::{fd_path, open_in_root, reopen};

const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;

/// In the container, after pivot_root: makes the pty, mounts the console,
/// sends the master to `socket`, and makes the peer our stdio and
/// controlling terminal.
/// runc's rule for a terminal and a console socket, for create, run, exec and restore: a
/// terminal that brig leaves behind (detached) needs a socket to send its master to, and a
/// socket needs a detached terminal.
pub fn check_console(terminal: bool, detach: bool, socket: bool) -> Result<()> {
    if terminal && detach && !socket {
        return Err(Error::msg(
            "cannot allocate tty if brig will detach without setting console socket",
        ));
    }
    if socket && !(terminal && detach) {
        return Err(Error::msg(
            "cannot use console socket if brig will not detach or allocate tty",
        ));
    }
    Ok(())
}

/// Connects to the console socket at `path` (given by the caller).
pub fn connect_console(path: &Path) -> Result<std::os::unix::net::UnixStream> {
    std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| Error::io(format!("connect to console socket {}", path.display()), e))
}

pub fn setup(socket: BorrowedFd, size: Option<(u16, u16)>, mount_console: bool) -> Result<()> {
    let (master, peer, n) = new_pty()?;
    if let Some((rows, cols)) = size {
        resize(master.as_fd(), rows, cols)?;
    }
    if mount_console {
        mount_on_console(peer.as_fd())?;
    }
    send_fd(socket, &format!("/dev/pts/{n}"), master.as_fd())?;
    drop(master);
    for fd in 0..3 {
        // SAFETY: dup2 onto stdio, which we mean to replace.
        let r = unsafe { libc::dup2(peer.as_raw_fd(), fd) };
        nix::errno::Errno::result(r).sys("dup2", format!("/dev/pts/{n}"))?;
    }
    // SAFETY: make the pty (now fd 0) our controlling terminal; we are a
    // session leader without one.
    let r = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
    nix::errno::Errno::result(r).sys("set controlling terminal", format!("/dev/pts/{n}"))?;
    Ok(())
}

/// A new pty from /dev/ptmx as this process sees it: (master, peer, index).
/// The peer comes from TIOCGPTPEER, not a path lookup of /dev/pts/N.
pub fn new_pty() -> Result<(OwnedFd, OwnedFd, u32)> {
    let master = nix::fcntl::open(
        "/dev/ptmx",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .sys("open", "/dev/ptmx")?;
    let fs = nix::sys::statfs::fstatfs(&master).sys("statfs", "/dev/ptmx")?;
    if fs.filesystem_type().0 as i64 != DEVPTS_SUPER_MAGIC {
        return Err(Error::msg("/dev/ptmx is not on a devpts file system"));
    }
    let raw = master.as_raw_fd();
    let unlock: libc::c_int = 0;
    // SAFETY: ioctls on our own pty master with valid pointers.
    unsafe {
        nix::errno::Errno::result(libc::ioctl(raw, libc::TIOCSPTLCK, &unlock))
            .sys("unlockpt", "/dev/ptmx")?;
    }
    let mut n: libc::c_uint = 0;
    // SAFETY: as above.
    unsafe {
        nix::errno::Errno::result(libc::ioctl(raw, libc::TIOCGPTN, &mut n))
            .sys("ptsname", "/dev/ptmx")?
    };
    // SAFETY: TIOCGPTPEER returns a new fd that we own.
    let peer = unsafe {
        libc::ioctl(
            raw,
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    let peer = nix::errno::Errno::result(peer).sys("open pty peer", format!("/dev/pts/{n}"))?;
    // SAFETY: fresh fd from the kernel.
    let peer = unsafe { OwnedFd::from_raw_fd(peer) };
    Ok((master, peer, n))
}

/// Binds the pty peer on /dev/console. A /dev/console that is a symlink or
/// anything but a plain file or device node is replaced, never followed, so
/// a rootfs cannot turn the mount toward a host path (CVE-2025-52565).
fn mount_on_console(peer: BorrowedFd) -> Result<()> {
    let root = nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .sys("open", "/")?;
    let dev = open_in_root(
        root.as_fd(),
        Path::new("/dev"),
        OFlag::O_PATH | OFlag::O_DIRECTORY,
    )
    .sys("open", "/dev")?;
    let dev = reopen(dev.as_fd(), OFlag::O_RDONLY | OFlag::O_DIRECTORY).sys("open", "/dev")?;
    match nix::sys::stat::fstatat(dev.as_fd(), "console", AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => {
            let kind = st.st_mode & libc::S_IFMT;
            if kind != libc::S_IFREG && kind != libc::S_IFCHR {
                nix::unistd::unlinkat(
                    dev.as_fd(),
                    "console",
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                )
                .sys("remove", "/dev/console")?;
            }
        }
        Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(Error::sys("stat", "/dev/console", e)),
    }
    match nix::fcntl::openat(
        dev.as_fd(),
        "console",
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    ) {
        Ok(_) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(Error::sys("create", "/dev/console", e)),
    }
    let target = nix::fcntl::openat(
        dev.as_fd(),
        "console",
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .sys("open", "/dev/console")?;
    nix::mount::mount(
        Some(fd_path(peer).as_str()),
        fd_path(target.as_fd()).as_str(),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .sys("bind mount pty on", "/dev/console")
}

/// Sets a terminal's window size.
pub fn resize(fd: BorrowedFd, rows: u16, cols: u16) -> Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ with a valid winsize.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    nix::errno::Errno::result(r)
        .map(drop)
        .sys("set window size", "pty")
}

/// The window size of a terminal, if `fd` is one.
pub fn size_of(fd: BorrowedFd) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ with a valid winsize.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0).then_some((ws.ws_row, ws.ws_col))
}

/// Sends `fd` with its name as payload, the way runc's console socket
/// protocol does.
pub fn send_fd(socket: BorrowedFd, name: &str, fd: BorrowedFd) -> Result<()> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(socket.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .sys("send pty master to", "console socket")?;
    Ok(())
}

/// Receives one fd sent with [`send_fd`]; with `wait` false, `None` when
/// nothing was sent yet.
pub fn recv_fd(socket: BorrowedFd, wait: bool) -> Result<Option<OwnedFd>> {
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let mut flags = MsgFlags::MSG_CMSG_CLOEXEC;
    if !wait {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    let msg = loop {
        match recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut space), flags) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) if !wait => return Ok(None),
            r => break r.sys("receive pty master from", "console socket")?,
        }
    };
    for c in msg
        .cmsgs()
        .sys("receive pty master from", "console socket")?
    {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel installed this fd for us.
                return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
    }
    Err(Error::msg("console socket: no pty master received"))
}

/// Saved terminal mode of our stdin, restored on drop.
pub struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    /// Puts stdin in raw mode if it is a terminal.
    pub fn stdin() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = nix::sys::termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        nix::sys::termios::tcsetattr(stdin.as_fd(), nix::sys::termios::SetArg::TCSANOW, &raw)
            .ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin().as_fd(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}

/// Writes all of `data` to `fd`, waiting while it is full.
pub fn write_all(fd: BorrowedFd, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLOUT)];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sets O_NONBLOCK on `fd`.
pub fn set_nonblocking(fd: BorrowedFd) -> Result<()> {
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).sys("fcntl", "F_GETFL")?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags)).sys("fcntl", "F_SETFL")?;
    Ok(())
}
