//! File descriptors received over unix sockets: a console socket's pty master, a seccomp agent's listener.

/// One message from a unix socket: its bytes (at most `max`) and the fd it carried with
/// SCM_RIGHTS, if any. What a runtime sends to a console socket or a seccomp agent.
pub fn recv_with_fd(
    conn: &std::os::unix::net::UnixStream,
    max: usize,
) -> (Vec<u8>, Option<std::os::fd::OwnedFd>) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut buf = vec![0u8; max];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::empty(),
    )
    .expect("recvmsg");
    let mut fd = None;
    for c in msg.cmsgs().expect("cmsgs") {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel gave us this fd.
            fd = Some(unsafe { OwnedFd::from_raw_fd(fds[0]) });
        }
    }
    let n = msg.bytes;
    buf.truncate(n);
    (buf, fd)
}

/// Accepts one connection on a `--console-socket` listener and returns (from a thread) the pty
/// master the runtime sends over it with SCM_RIGHTS.
pub fn receive_console_master(
    listener: std::os::unix::net::UnixListener,
) -> std::thread::JoinHandle<std::os::fd::OwnedFd> {
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().expect("accept on console socket");
        recv_with_fd(&conn, 256)
            .1
            .expect("no fd on the console socket")
    })
}
