//! A docker-registry (Debian's, distribution 2.8) of the test's own on 127.0.0.1, its storage
//! and config in a temporary directory.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REGISTRY: &str = "/usr/bin/docker-registry";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A docker-registry on 127.0.0.1 with its storage and config in a temporary directory.
pub struct Registry {
    pub dir: tempfile::TempDir,
    child: Child,
    /// `127.0.0.1:PORT`.
    pub host: String,
}

impl Registry {
    /// Starts one; `auth` is the YAML of its `auth:` section (empty: none). None (after saying
    /// why) if docker-registry is not installed.
    pub fn start(test: &str, auth: &str) -> Option<Registry> {
        if !Path::new(REGISTRY).is_file() {
            println!(
                "SKIP {test}: {REGISTRY} not installed (scripts/deps.sh installs docker-registry)"
            );
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("brig-registry-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n{auth}",
            dir.path().join("data").display()
        );
        fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let r = Registry { dir, child, host };
        let start = Instant::now();
        while TcpStream::connect(&r.host).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "registry did not listen on {} within 15 s: {}",
                r.host,
                fs::read_to_string(r.dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(r)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
