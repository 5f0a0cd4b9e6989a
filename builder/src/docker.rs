//! Loading an image into docker (`--load`, `-o type=docker`): a docker-archive POSTed to the
//! Engine API's `/images/load` over docker's unix socket (`$DOCKER_HOST` when it is
//! `unix://PATH`, else `/var/run/docker.sock`), as `docker load` does.
//!
//! Hand-written HTTP/1.1: one request with a Content-Length body and a response read to its
//! end. ureq, our HTTP client for registries, has no unix-socket transport, and a full client
//! stack (hyper) for one call is more than it is worth.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// The most of docker's answer we read.
const MAX_RESPONSE_BYTES: u64 = 1 << 20;

/// docker's socket: `$DOCKER_HOST` (`unix://PATH` only) or the default.
pub fn socket() -> Result<PathBuf, String> {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => h
            .strip_prefix("unix://")
            .map(PathBuf::from)
            .ok_or_else(|| format!("DOCKER_HOST={h:?}: only unix:// sockets are supported")),
        _ => Ok(PathBuf::from("/var/run/docker.sock")),
    }
}

/// Loads the docker-archive at `archive` into the docker daemon.
pub fn load(archive: &Path) -> Result<(), String> {
    let sock = socket()?;
    let mut s = UnixStream::connect(&sock).map_err(|e| {
        format!(
            "cannot reach docker at {} ({e}); is dockerd running? ($DOCKER_HOST selects another \
             socket)",
            sock.display()
        )
    })?;
    let mut f = std::fs::File::open(archive).map_err(|e| format!("{}: {e}", archive.display()))?;
    let len = f
        .metadata()
        .map_err(|e| format!("{}: {e}", archive.display()))?
        .len();
    let io_err = |e: io::Error| format!("docker at {}: {e}", sock.display());
    write!(
        s,
        "POST /images/load?quiet=1 HTTP/1.1\r\nHost: docker\r\nContent-Type: application/x-tar\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n"
    )
    .map_err(io_err)?;
    io::copy(&mut f, &mut s).map_err(io_err)?;
    s.flush().map_err(io_err)?;
    let mut r = BufReader::new(s.take(MAX_RESPONSE_BYTES));
    let mut status = String::new();
    r.read_line(&mut status).map_err(io_err)?;
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            format!(
                "docker at {}: not an HTTP answer: {status:?}",
                sock.display()
            )
        })?;
    let mut body = Vec::new();
    r.read_to_end(&mut body).map_err(io_err)?;
    let text = String::from_utf8_lossy(&body);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    if code != 200 {
        return Err(format!("docker refused the image: {code}: {}", body.trim()));
    }
    // The answer streams JSON messages; a failure mid-way is one with "error".
    if let Some(err) = body
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .find_map(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
    {
        return Err(format!("docker refused the image: {err}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn docker_host_must_be_a_unix_socket() {
        // The environment is the process's: one test only touches DOCKER_HOST.
        std::env::set_var("DOCKER_HOST", "tcp://127.0.0.1:2375");
        assert!(super::socket().unwrap_err().contains("unix://"));
        std::env::set_var("DOCKER_HOST", "unix:///run/x.sock");
        assert_eq!(
            super::socket().unwrap(),
            std::path::PathBuf::from("/run/x.sock")
        );
        std::env::remove_var("DOCKER_HOST");
        assert_eq!(
            super::socket().unwrap(),
            std::path::PathBuf::from("/var/run/docker.sock")
        );
    }
}
