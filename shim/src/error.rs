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
