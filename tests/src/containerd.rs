//! [`Containerd`]: a containerd of the test's own, with the shim and runtime under test on its PATH.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::command::{binary_path, is_root, run_timeout, shim_path, Out};
use crate::host::{kill_pid, wait_for};
use crate::image::{busybox_oci_archive_with_cmd, layered_busybox_oci_archive};

/// The sandbox image of [`Containerd::start_cri`].
const CRI_PAUSE: &str = "docker.io/brigtest/pause:latest";

/// crictl, built from cri-tools by conformance/critest.sh: `$CRICTL`, else
/// `conformance/work/cri/bin/crictl` of the workspace.
pub fn crictl_path() -> PathBuf {
    match std::env::var_os("CRICTL") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => crate::command::workspace_dir().join("conformance/work/cri/bin/crictl"),
    }
}

/// A containerd of our own: config, root, state and sockets in a temporary directory, with
/// `bin/` first in its PATH holding `containerd-shim-brig-v2` (the shim under test) and `brig`
/// (the runtime under test). Dropping it stops containerd and every shim it started, and
/// unmounts what they left.
pub struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
    pub namespace: String,
}

impl Containerd {
    /// Starts containerd; `Err` says why it cannot run here (the caller skips).
    pub fn start() -> Result<Containerd, String> {
        Containerd::launch(false)
    }

    /// [`Containerd::start`] with containerd's CRI plugin, as kubelet talks to it (on the
    /// socket [`Containerd::socket`], in the namespace `k8s.io`, which [`Containerd::ctr`]
    /// then uses): runtime handlers `brig` (the shim under test, the default) and `runc`
    /// (containerd's runc shim); the sandbox image `docker.io/brigtest/pause:latest`, which
    /// [`Containerd::import_cri_images`] imports. No CNI: pods use the host's network
    /// (`namespace_options.network` 2).
    pub fn start_cri() -> Result<Containerd, String> {
        Containerd::launch(true)
    }

    fn launch(cri: bool) -> Result<Containerd, String> {
        if !is_root() {
            return Err("needs root".into());
        }
        for tool in ["containerd", "ctr", "script"] {
            let found = std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
                .unwrap_or(false);
            if !found {
                return Err(format!(
                    "{tool} is not installed (scripts/deps.sh installs it)"
                ));
            }
        }
        let shim = shim_path();
        assert!(
            shim.is_file(),
            "{} is missing: cargo build -p containerd-shim-brig-v2",
            shim.display()
        );
        let brig = binary_path();
        assert!(
            brig.is_file(),
            "{} is missing: cargo build -p brig",
            brig.display()
        );
        // Short: the shim's sockets and containerd's paths live below it.
        let dir = tempfile::Builder::new()
            .prefix("brig-ctrd-")
            .tempdir_in("/tmp")
            .map_err(|e| format!("tempdir: {e}"))?;
        let d = dir.path();
        let bin = d.join("bin");
        fs::create_dir_all(&bin).unwrap();
        symlink(&shim, bin.join("containerd-shim-brig-v2")).unwrap();
        symlink(&brig, bin.join("brig")).unwrap();
        let mut config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [{cri}]\n\
             [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n",
            d = d.display(),
            cri = if cri {
                ""
            } else {
                "\"io.containerd.grpc.v1.cri\""
            },
        );
        if cri {
            fs::create_dir_all(d.join("net.d")).unwrap();
            let p = "plugins.\"io.containerd.grpc.v1.cri\"";
            config.push_str(&format!(
                "[{p}]\n  sandbox_image = \"{CRI_PAUSE}\"\n  stream_server_address = \"127.0.0.1\"\n\
                 \x20 # (no CAP_SYS_RESOURCE on the host: sandboxes cannot get oom_score_adj -998)\n\
                 \x20 restrict_oom_score_adj = true\n\
                 [{p}.cni]\n  conf_dir = \"{d}/net.d\"\n\
                 [{p}.containerd]\n  default_runtime_name = \"brig\"\n  snapshotter = \"overlayfs\"\n\
                 [{p}.containerd.runtimes.brig]\n  runtime_type = \"io.containerd.brig.v2\"\n\
                 [{p}.containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n",
                d = d.display()
            ));
        }
        fs::write(d.join("config.toml"), config).unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("containerd cannot start: {e}"))?;
        let mut c = Containerd {
            dir,
            child,
            namespace: if cri { "k8s.io" } else { "brigtest" }.into(),
        };
        let up = wait_for(Duration::from_secs(15), || c.ctr(&["version"]).success());
        if !up {
            let log = fs::read_to_string(c.dir.path().join("containerd.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            let _ = c.child.kill();
            return Err(format!(
                "containerd did not answer on its socket within 15 s; its log ends: {}",
                tail.join(" | ")
            ));
        }
        Ok(c)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills containerd (SIGKILL: no clean shutdown) and starts it again on
    /// the same config and state dirs; its shims keep running meanwhile.
    pub fn restart(&mut self) -> Result<(), String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let d = self.dir.path();
        let path = format!(
            "{}:{}",
            d.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = fs::OpenOptions::new()
            .append(true)
            .open(d.join("containerd.log"))
            .map_err(|e| format!("containerd.log: {e}"))?;
        self.child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("containerd cannot start again: {e}"))?;
        if wait_for(Duration::from_secs(15), || self.ctr(&["version"]).success()) {
            Ok(())
        } else {
            Err("containerd did not answer after its restart".into())
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    /// `ctr -a SOCK -n NS ARGS` (at most 60 s).
    pub fn ctr(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new("ctr");
        cmd.arg("-a")
            .arg(self.socket())
            .arg("-n")
            .arg(&self.namespace)
            .args(args);
        run_timeout(&mut cmd, Duration::from_secs(60))
    }

    /// `ctr ... ARGS` inside a pseudo-terminal (`script`), for `run -t`.
    pub fn ctr_tty(&self, args: &[&str]) -> Out {
        let mut line = format!("ctr -a {} -n {}", self.socket().display(), self.namespace);
        for a in args {
            line.push_str(&format!(" '{}'", a.replace('\'', "'\\''")));
        }
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"]);
        run_timeout(&mut cmd, Duration::from_secs(60))
    }

    /// Imports a busybox image made here; returns its name.
    pub fn import_busybox(&self) -> String {
        self.import_layered_busybox(0)
    }

    /// Imports busybox with `extra` layers on top ([`layered_busybox_oci_archive`]); returns
    /// the image's name.
    pub fn import_layered_busybox(&self, extra: usize) -> String {
        let name = match extra {
            0 => "docker.io/brigtest/busybox:latest".to_string(),
            n => format!("docker.io/brigtest/busybox-{n}-layers:latest"),
        };
        let dir = self.dir.path().join(format!("image-{extra}"));
        fs::create_dir_all(&dir).unwrap();
        let archive = layered_busybox_oci_archive(&dir, &name, extra);
        self.ctr(&["image", "import", archive.to_str().unwrap()])
            .assert_ok();
        name
    }

    /// Imports what pods of [`Containerd::start_cri`] run: the sandbox image (busybox whose
    /// command sleeps, in pause's place) and busybox; returns busybox's name.
    pub fn import_cri_images(&self) -> String {
        let dir = self.dir.path().join("image-pause");
        fs::create_dir_all(&dir).unwrap();
        let archive = busybox_oci_archive_with_cmd(&dir, CRI_PAUSE, &["sleep", "2147483647"]);
        self.ctr(&["image", "import", archive.to_str().unwrap()])
            .assert_ok();
        self.import_busybox()
    }

    /// `crictl --runtime-endpoint unix://SOCK ARGS` (at most 120 s), with `crictl` from
    /// [`crictl_path`].
    pub fn crictl(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new(crictl_path());
        cmd.arg("--runtime-endpoint")
            .arg(format!("unix://{}", self.socket().display()))
            .arg("--timeout")
            .arg("100s")
            .args(args);
        run_timeout(&mut cmd, Duration::from_secs(120))
    }

    /// Pids of the shims serving this containerd (their command line names its socket).
    pub fn shim_pids(&self) -> Vec<i32> {
        let sock = self.socket().display().to_string();
        let mut pids = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if args
                .first()
                .map(|a| a.contains("containerd-shim"))
                .unwrap_or(false)
                && args.contains(&sock)
            {
                pids.push(pid);
            }
        }
        pids
    }

    /// Mount points below our directory.
    pub fn mounts(&self) -> Vec<String> {
        let prefix = format!("{}/", self.dir.path().display());
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|p| p.starts_with(&prefix))
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in self.shim_pids() {
            kill_pid(pid, libc::SIGKILL);
        }
        let mut mounts = self.mounts();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            if let Ok(c) = std::ffi::CString::new(m) {
                // SAFETY: umount2 with a valid C string.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}
