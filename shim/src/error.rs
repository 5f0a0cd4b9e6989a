//! The shim's error type and how it reaches containerd.
//!
//! Every error names what failed (the runtime command and the runtime's own
//! last error line, the FIFO path, the mount target). [`Error::into_ttrpc`]
//! maps each kind to the gRPC code containerd turns into its `errdefs`
//! (`NotFound`, `AlreadyExists`, `FailedPrecondition`), so `ctr` shows the
//! runtime's words followed by the kind.

use containerd_shim_protos::ttrpc;
use containerd_shim_protos::ttrpc::Code;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runtime binary failed; `msg` is its last error line (or stderr).
    #[error("{msg}")]
    Runtime { msg: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: not found")]
    NotFound(String),
    #[error("{0}: already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub fn into_ttrpc(self) -> ttrpc::Error {
        let code = match &self {
            Error::NotFound(_) => Code::NOT_FOUND,
            Error::AlreadyExists(_) => Code::ALREADY_EXISTS,
            Error::Precondition(_) => Code::FAILED_PRECONDITION,
            Error::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            _ => Code::UNKNOWN,
        };
        ttrpc::Error::RpcStatus(ttrpc::get_status(code, self.to_string()))
    }
}

impl From<Error> for ttrpc::Error {
    fn from(e: Error) -> Self {
        e.into_ttrpc()
    }
}

impl Error {
    pub fn from_shim(e: containerd_shim::Error) -> Error {
        Error::Other(e.to_string())
    }
}

/// A failed kill as containerd-shim-runc-v2 reports it: a process that is already gone (the
/// runtime says "container not running" or "no such process", or kill(2) gives ESRCH) and a
/// container the runtime no longer knows ("does not exist") are NotFound, which containerd
/// and kubelet take as "already stopped"; anything else stays as it was.
pub fn kill_error(e: Error) -> Error {
    let text = e.to_string().to_lowercase();
    let esrch =
        matches!(&e, Error::Io { source, .. } if source.raw_os_error() == Some(libc::ESRCH));
    if esrch
        || text.contains("container not running")
        || text.contains("no such process")
        || text.contains("process already finished")
    {
        Error::NotFound(format!("process already finished ({e})"))
    } else if text.contains("does not exist") {
        Error::NotFound(format!("no such container ({e})"))
    } else {
        e
    }
}

/// `Result<T, std::io::Error>` → our error naming `what`.
pub trait IoContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), std::io::Error::from(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: Error) -> Code {
        match e.into_ttrpc() {
            ttrpc::Error::RpcStatus(s) => s.code(),
            other => panic!("not a status: {other:?}"),
        }
    }

    fn runtime(msg: &str) -> Error {
        Error::Runtime { msg: msg.into() }
    }

    #[test]
    fn a_kill_of_a_process_already_gone_is_not_found() {
        for msg in [
            "container not running",
            "kill: No such process",
            "os: process already finished",
        ] {
            assert_eq!(code(kill_error(runtime(msg))), Code::NOT_FOUND, "{msg}");
        }
        let esrch = Error::io(
            "kill exec e1 (pid 7)",
            std::io::Error::from_raw_os_error(libc::ESRCH),
        );
        let mapped = kill_error(esrch);
        assert!(mapped.to_string().contains("pid 7"), "{mapped}");
        assert_eq!(code(mapped), Code::NOT_FOUND);
    }

    #[test]
    fn a_kill_of_a_container_the_runtime_does_not_know_is_not_found() {
        let e = kill_error(runtime("container \"x\" does not exist"));
        assert!(e.to_string().starts_with("no such container"), "{e}");
        assert_eq!(code(e), Code::NOT_FOUND);
    }

    #[test]
    fn other_kill_failures_keep_their_kind() {
        assert_eq!(
            code(kill_error(runtime("permission denied"))),
            Code::UNKNOWN
        );
        let eperm = Error::io("kill", std::io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(code(kill_error(eperm)), Code::UNKNOWN);
        let pre = kill_error(Error::Precondition("process not created".into()));
        assert_eq!(code(pre), Code::FAILED_PRECONDITION);
    }
}
