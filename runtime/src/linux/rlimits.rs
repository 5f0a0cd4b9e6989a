//! rlimits: `process.rlimits`, set in the container init before the user
//! switch (raising a hard limit needs CAP_SYS_RESOURCE).

use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

use crate::error::{Error, Result};

/// One resolved limit.
#[derive(Debug, Clone, Copy)]
pub struct Rlimit {
    pub resource: libc::__rlimit_resource_t,
    pub soft: u64,
    pub hard: u64,
}

fn resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// Resolves the spec's limits; a soft limit above the hard one is an error.
pub fn from_spec(list: Option<&Vec<PosixRlimit>>) -> Result<Vec<Rlimit>> {
    let mut out = Vec::new();
    for (i, r) in list.into_iter().flatten().enumerate() {
        if r.soft() > r.hard() {
            return Err(Error::config(
                "config.json",
                format!("process.rlimits[{i}]"),
                format!("soft limit {} is above hard limit {}", r.soft(), r.hard()),
            ));
        }
        out.push(Rlimit {
            resource: resource(r.typ()),
            soft: r.soft(),
            hard: r.hard(),
        });
    }
    Ok(out)
}

/// Applies the limits to the calling process.
pub fn apply(limits: &[Rlimit]) -> Result<()> {
    for l in limits {
        let rl = libc::rlimit {
            rlim_cur: l.soft,
            rlim_max: l.hard,
        };
        // SAFETY: setrlimit with a valid pointer to a local struct.
        let r = unsafe { libc::setrlimit(l.resource, &rl) };
        if r != 0 {
            return Err(Error::sys(
                "setrlimit",
                format!("resource {} to {}/{}", l.resource, l.soft, l.hard),
                nix::errno::Errno::last(),
            ));
        }
    }
    Ok(())
}

/// After [`apply`]: fails, naming the limit, when RLIMIT_NOFILE leaves no descriptor for the
/// runtime to open (the init opens exec.fifo once `create` has returned, too late for an
/// error to reach anyone: `start` would only find the container stopped). `fd` is any open
/// descriptor, duplicated and closed again to probe.
pub fn check_fd_left(limits: &[Rlimit], fd: std::os::fd::BorrowedFd) -> Result<()> {
    let Some(l) = limits.iter().find(|l| l.resource == libc::RLIMIT_NOFILE) else {
        return Ok(());
    };
    match nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(0)) {
        Ok(probe) => {
            // SAFETY: the descriptor fcntl just made for us, closed once.
            drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(probe) });
            Ok(())
        }
        Err(e) => Err(Error::sys(
            "open",
            format!(
                "exec.fifo under RLIMIT_NOFILE {}/{} (no descriptor left for the runtime)",
                l.soft, l.hard
            ),
            e,
        )),
    }
}
