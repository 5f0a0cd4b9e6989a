//! The state directory: `--root` (default `/run/brig`), one folder per
//! container holding `state.json` (written once, atomically) and, until the
//! container is started, the `exec.fifo` that `start` opens.
//!
//! The status a reader sees is derived from facts every time (is the init
//! process alive with the start time we recorded, does the fifo still exist,
//! is the cgroup frozen), never trusted from the file.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result, SysContext};

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";
/// The container's config.json as it was at create.
pub const CONFIG_FILE: &str = "config.json";

/// What brig records about a container, once, at create.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub id: String,
    pub pid: i32,
    /// Start time of `pid` in clock ticks since boot (/proc/PID/stat field 22):
    /// tells our process from a later one that reused the pid.
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 UTC time of creation.
    pub created: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The cgroup directory of the container in each hierarchy.
    #[serde(default)]
    pub cgroup_paths: BTreeMap<String, PathBuf>,
    /// Hooks that run after create: poststart (by `start`), poststop (by `delete`).
    #[serde(default)]
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// Whether the container has its own pid namespace (kill --all and delete
    /// rely on the kernel killing the rest when init dies if so).
    #[serde(default)]
    pub own_pid_ns: bool,
    /// Created with --no-new-keyring: exec processes keep the caller's session keyring too
    /// (else they join the container's, `_ses.<id>`).
    #[serde(default)]
    pub no_new_keyring: bool,
}

/// The OCI status of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state root (`--root`).
#[derive(Debug, Clone)]
pub struct Root {
    pub dir: PathBuf,
}

impl Root {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Root { dir: dir.into() }
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Checks that `id` is a valid id no container has yet (create, restore).
    pub fn check_new(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        if self.container_dir(id).join(STATE_FILE).exists() {
            return Err(Error::Exists(id.to_string()));
        }
        Ok(())
    }

    /// Creates the folder of a new container; fails if the id is taken.
    pub fn create_dir(&self, id: &str) -> Result<PathBuf> {
        validate_id(id)?;
        // 0700 like runc's: nobody else may reach a container's exec fifo
        // (reading it would start the container) or its state.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .ctx(|| format!("create state root {}", self.dir.display()))?;
        let dir = self.container_dir(id);
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Error::Exists(id.to_string()))
            }
            Err(e) => Err(Error::io(format!("create state dir {}", dir.display()), e)),
        }
    }

    /// Loads the saved state of an existing container.
    pub fn load(&self, id: &str) -> Result<Saved> {
        validate_id(id)?;
        let file = self.container_dir(id).join(STATE_FILE);
        let data = match fs::read(&file) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()))
            }
            Err(e) => return Err(Error::io(format!("read {}", file.display()), e)),
        };
        serde_json::from_slice(&data).map_err(|e| Error::config(&file, "(document)", e.to_string()))
    }

    /// Ids of all containers with a state file, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("read {}", self.dir.display()), e)),
        };
        let mut ids: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join(STATE_FILE).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Takes the container's lock (released when the fd is dropped).
    pub fn lock(&self, id: &str) -> Result<OwnedFd> {
        Ok(self
            .lock_within(id, None)?
            .expect("a lock without a time limit is taken"))
    }

    /// Takes the container's lock, waiting at most `limit` (`None`: as long as it takes);
    /// `Ok(None)` when another brig command still holds it then.
    pub fn lock_within(&self, id: &str, limit: Option<Duration>) -> Result<Option<OwnedFd>> {
        validate_id(id)?;
        let dir = self.container_dir(id);
        let fd: OwnedFd = match fs::File::open(&dir) {
            Ok(f) => f.into(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()))
            }
            Err(e) => return Err(Error::io(format!("open {}", dir.display()), e)),
        };
        let deadline = limit.map(|l| Instant::now() + l);
        let mut nap = Duration::from_millis(1);
        loop {
            let how = if deadline.is_some() {
                libc::LOCK_EX | libc::LOCK_NB
            } else {
                libc::LOCK_EX
            };
            // SAFETY: flock on an fd we own.
            let r = unsafe { libc::flock(fd.as_raw_fd(), how) };
            match nix::errno::Errno::result(r) {
                Ok(_) => return Ok(Some(fd)),
                Err(nix::errno::Errno::EWOULDBLOCK) => {}
                Err(nix::errno::Errno::EINTR) if deadline.is_none() => continue,
                Err(e) => return Err(Error::sys("flock", dir.display(), e)),
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(50));
        }
    }
}

/// Records a container just made (by create or restore) in its state folder `dir`: its
/// config, which exec reads later rather than a bundle that may have changed since, and its
/// state, written once.
pub fn record(
    dir: &Path,
    bundle: &crate::spec::Bundle,
    id: &str,
    pid: i32,
    cgroup_paths: BTreeMap<String, PathBuf>,
    no_new_keyring: bool,
) -> Result<Saved> {
    let spec = &bundle.spec;
    let st = proc_stat(pid)
        .ok_or_else(|| Error::msg(format!("container init {pid} exited during setup")))?;
    let own_pid_ns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter().any(|n| {
                n.typ() == oci_spec::runtime::LinuxNamespaceType::Pid && n.path().is_none()
            })
        });
    let saved = Saved {
        id: id.to_string(),
        pid,
        pid_start: st.start_time,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: crate::logging::now_rfc3339(),
        owner: String::new(),
        annotations: spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        cgroup_paths,
        hooks: spec.hooks().clone(),
        own_pid_ns,
        no_new_keyring,
    };
    let cfg = serde_json::to_vec(spec).map_err(|e| Error::msg(format!("encode config: {e}")))?;
    let cfg_file = dir.join(CONFIG_FILE);
    fs::write(&cfg_file, cfg).map_err(|e| Error::io(format!("write {}", cfg_file.display()), e))?;
    save(dir, &saved)?;
    Ok(saved)
}

/// Makes `dir`'s exec fifo (which `start` opens to let the init go on) and opens it O_PATH
/// for the init.
pub fn make_exec_fifo(dir: &Path) -> Result<OwnedFd> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(EXEC_FIFO);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .sys("mkfifo", path.display())?;
    // The umask narrowed it; a non-root container user must be able to open it for writing.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o622))
        .map_err(|e| Error::io(format!("chmod {}", path.display()), e))?;
    nix::fcntl::open(
        &path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .sys("open", path.display())
}

/// Writes the state file atomically (temp file + rename).
pub fn save(dir: &Path, saved: &Saved) -> Result<()> {
    let file = dir.join(STATE_FILE);
    let tmp = dir.join(".state.json.tmp");
    let data = serde_json::to_vec(saved).map_err(|e| Error::msg(format!("encode state: {e}")))?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .ctx(|| format!("write {}", tmp.display()))?;
    f.write_all(&data)
        .ctx(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, &file).ctx(|| format!("rename to {}", file.display()))?;
    Ok(())
}

/// A container id: non-empty, no '/' and not '.' or '..', printable.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::msg(format!(
            "invalid container id {id:?}: use letters, digits, '_', '+', '-', '.', and not '.' or '..'"
        )))
    }
}

/// Fields of /proc/PID/stat that status derivation needs.
#[derive(Debug, Clone, Copy)]
pub struct ProcStat {
    pub state: char,
    pub start_time: u64,
}

/// Reads /proc/PID/stat; `None` if the process does not exist.
pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let data = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&data)
}

fn parse_stat(data: &str) -> Option<ProcStat> {
    // comm (field 2) may hold spaces and parens: split after the last ')'.
    let rest = &data[data.rfind(')')? + 1..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    // After the state (field 3) comes field 4; start time is field 22.
    let start_time = it.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

/// Whether `pid` is our container's init (same start time) and not dead.
pub fn init_alive(saved: &Saved) -> bool {
    if saved.pid <= 0 {
        return false;
    }
    match proc_stat(saved.pid) {
        Some(st) => st.start_time == saved.pid_start && !matches!(st.state, 'Z' | 'X' | 'x'),
        None => false,
    }
}

impl Saved {
    /// The status, from facts.
    pub fn status(&self, root: &Root) -> Status {
        if !init_alive(self) {
            return Status::Stopped;
        }
        if root.container_dir(&self.id).join(EXEC_FIFO).exists() {
            return Status::Created;
        }
        if crate::cgroups::load(self.cgroup_paths.clone())
            .state_frozen()
            .unwrap_or(false)
        {
            return Status::Paused;
        }
        Status::Running
    }

    /// The OCI state JSON, with the fields runc adds (rootfs, created, owner).
    pub fn to_oci(&self, status: Status) -> serde_json::Value {
        let pid = if status == Status::Stopped {
            0
        } else {
            self.pid
        };
        // runc's field order; annotations only when there are some.
        let mut v = serde_json::json!({
            "ociVersion": crate::OCI_VERSION,
            "id": self.id,
            "pid": pid,
            "status": status.as_str(),
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
        });
        if !self.annotations.is_empty() {
            v["annotations"] = serde_json::json!(self.annotations);
        }
        v["owner"] = self.owner.clone().into();
        v
    }
}

/// Opens a file for writing with mode 0644 (pid files).
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    // runc writes the pid file atomically via a temp file in the same dir.
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, pid.to_string()).ctx(|| format!("write pid file {}", tmp.display()))?;
    fs::rename(&tmp, path).ctx(|| format!("write pid file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_id("abc-1_2.3+x").is_ok());
        for bad in ["", ".", "..", "a/b", "../x", "a b", "a\n"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn stat_with_parens_in_comm() {
        let line = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 12345 1000 10";
        let st = parse_stat(line).unwrap();
        assert_eq!(st.state, 'S');
        assert_eq!(st.start_time, 12345);
    }

    #[test]
    fn own_stat_parses() {
        let st = proc_stat(std::process::id() as i32).unwrap();
        assert!(st.start_time > 0);
    }

    #[test]
    fn rfc3339() {
        let t = crate::logging::now_rfc3339();
        // 2026-11-23T17:12:28.823332563Z
        assert_eq!(t.len(), 30, "{t}");
        assert!(
            t.ends_with('Z') && t.as_bytes()[10] == b'T' && t.as_bytes()[19] == b'.',
            "{t}"
        );
    }
}
