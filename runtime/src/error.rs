//! The runtime's error type. Every variant names the thing that is wrong: the
//! file and JSON path of a bad config, the syscall and its target, the
//! container id.

use std::path::PathBuf;

use nix::errno::Errno;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value in a file (config.json, a state file) is wrong.
    #[error("{}: {path}: {msg}", file.display())]
    Config {
        file: PathBuf,
        path: String,
        msg: String,
    },
    /// A syscall failed: `mount /proc on /run/x/rootfs/proc: EPERM: Operation not permitted`.
    #[error("{op} {target}: {errno}")]
    Sys {
        op: &'static str,
        target: String,
        errno: Errno,
    },
    /// An I/O error with what was being done.
    #[error("{ctx}: {source}")]
    Io {
        ctx: String,
        #[source]
        source: std::io::Error,
    },
    #[error("container \"{0}\" does not exist")]
    NotFound(String),
    #[error("container with id {0} already exists")]
    Exists(String),
    /// Anything else, already phrased for the user.
    #[error("{0}")]
    Msg(String),
}

impl Error {
    pub fn sys(op: &'static str, target: impl std::fmt::Display, errno: Errno) -> Self {
        Error::Sys {
            op,
            target: abbreviate(target.to_string(), MAX_TARGET),
            errno,
        }
    }

    pub fn io(ctx: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            ctx: ctx.into(),
            source,
        }
    }

    pub fn msg(m: impl Into<String>) -> Self {
        Error::Msg(m.into())
    }

    pub fn config(
        file: impl Into<PathBuf>,
        path: impl Into<String>,
        msg: impl Into<String>,
    ) -> Self {
        Error::Config {
            file: file.into(),
            path: path.into(),
            msg: msg.into(),
        }
    }
}

/// How much of a syscall's target an error shows: a 10 MB hostname or argument is named by its
/// start and size.
const MAX_TARGET: usize = 256;

/// `s` cut to its first `max` bytes (at a character boundary) and its size, when longer.
pub fn abbreviate(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], s.len())
}

/// Attach an operation and target to a nix result.
pub trait SysContext<T> {
    fn sys(self, op: &'static str, target: impl std::fmt::Display) -> Result<T>;
}

impl<T> SysContext<T> for nix::Result<T> {
    fn sys(self, op: &'static str, target: impl std::fmt::Display) -> Result<T> {
        self.map_err(|e| Error::sys(op, target, e))
    }
}

/// Attach context to an io result.
pub trait IoContext<T> {
    fn ctx(self, ctx: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, ctx: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(ctx(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_targets_are_abbreviated() {
        let e = Error::sys("sethostname", "a".repeat(10_000_000), Errno::EINVAL);
        let m = e.to_string();
        assert!(m.len() < 400, "{}", m.len());
        assert!(m.starts_with("sethostname aaa") && m.contains("(10000000 bytes): EINVAL"));
        assert_eq!(abbreviate("é".repeat(3), 3), "é... (6 bytes)");
        assert_eq!(abbreviate("short".into(), 10), "short");
    }
}
