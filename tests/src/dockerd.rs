//! A dockerd of the test's own (Debian's docker.io: its data root, exec root, pid file, config
//! file and socket in a temporary dir, no network setup), with `--add-runtime brig=BRIG`, in a
//! private mount namespace where /run/containerd and /etc/docker are empty tmpfs (nothing of
//! the host's containerd or docker configuration is seen or touched); stopped and everything it
//! mounted or started removed when dropped. `docker` runs the client with BuildKit
//! (DOCKER_BUILDKIT=1) and a client config dir of its own.

use crate::command::{binary_path, run_timeout, Out};
use crate::host::{kill_pid, wait_for};
use crate::is_root;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Dockerd {
    dir: tempfile::TempDir,
    child: Child,
}

impl Dockerd {
    /// Starts dockerd; `Err` says exactly why it cannot run here.
    pub fn start() -> Result<Dockerd, String> {
        Dockerd::start_with(&[])
    }

    /// [`Dockerd::start`] with more daemon flags (`--exec-opt native.cgroupdriver=systemd`).
    pub fn start_with(flags: &[&str]) -> Result<Dockerd, String> {
        if !is_root() {
            return Err("needs root".into());
        }
        if !Path::new("/usr/sbin/dockerd").is_file() || !Path::new("/usr/bin/docker").is_file() {
            return Err("dockerd is not installed (docker.io; scripts/deps.sh installs it)".into());
        }
        let dir = tempfile::Builder::new()
            .prefix("brig-dockerd-")
            .tempdir_in("/tmp")
            .map_err(|e| format!("tempdir: {e}"))?;
        let d = dir.path();
        std::fs::write(d.join("daemon.json"), "{}").map_err(|e| e.to_string())?;
        std::fs::create_dir(d.join("client")).map_err(|e| e.to_string())?;
        let script = format!(
            "for m in /run/containerd /etc/docker; do \
             [ ! -d $m ] || mount -t tmpfs brig-test $m || exit 1; done; \
             exec /usr/sbin/dockerd --config-file {d}/daemon.json --data-root {d}/data \
             --exec-root {d}/exec --pidfile {d}/docker.pid -H unix://{d}/docker.sock \
             --add-runtime brig={brig} --iptables=false --ip6tables=false --ip-masq=false \
             --bridge=none \"$@\"",
            d = d.display(),
            brig = binary_path().display()
        );
        let log = std::fs::File::create(d.join("dockerd.log")).map_err(|e| e.to_string())?;
        // No network setup: the containers run with --network none (or host). `flags` go last,
        // as the script's own arguments.
        let child = Command::new("unshare")
            .args([
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
                "dockerd",
            ])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("dockerd cannot start: {e}"))?;
        let mut dockerd = Dockerd { dir, child };
        let up = wait_for(Duration::from_secs(60), || {
            dockerd.docker(&["version"]).success()
        });
        if !up {
            let log =
                std::fs::read_to_string(dockerd.dir().join("dockerd.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            let status = dockerd.child.try_wait().ok().flatten();
            return Err(format!(
                "dockerd did not answer on its socket within 60 s (exit: {status:?}); its log ends: {}",
                tail.join(" | ")
            ));
        }
        Ok(dockerd)
    }

    /// Its API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir().join("docker.sock")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `docker -H unix://SOCK ARGS` with BuildKit and a client config of its own (at most
    /// 300 s: builds go through it).
    pub fn docker(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new("/usr/bin/docker");
        cmd.env("DOCKER_BUILDKIT", "1")
            .env("DOCKER_CONFIG", self.dir().join("client"))
            .arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .args(args);
        run_timeout(&mut cmd, Duration::from_secs(300))
    }

    /// Processes whose command line names our directory (dockerd's own
    /// containerd and its shims).
    fn helpers(&self) -> Vec<i32> {
        let dir = self.dir().display().to_string();
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if pid != self.child.id() as i32 && String::from_utf8_lossy(&cmdline).contains(&dir) {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM: dockerd stops its containers and its containerd.
        kill_pid(self.child.id() as i32, libc::SIGTERM);
        let stopped = wait_for(Duration::from_secs(20), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for pid in self.helpers() {
            kill_pid(pid, libc::SIGKILL);
        }
        let prefix = format!("{}/", self.dir().display());
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|p| p.starts_with(&prefix))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            if let Ok(c) = std::ffi::CString::new(m) {
                // SAFETY: umount2 with a valid C string.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}
