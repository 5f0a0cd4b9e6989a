//! OOM notifications of the containers' memory cgroups, for TaskOOM.
//!
//! The shim watches the cgroup itself (as containerd's runc shim does)
//! rather than running `RUNTIME events` per container: it works with every
//! runtime (crun has no `events`), costs one thread for all containers
//! instead of one process each, and needs nothing from the runtime but the
//! init's pid: its memory cgroup is read from `/proc/PID/cgroup`.
//!
//! * v1: an eventfd registered through `cgroup.event_control` against the
//!   cgroup's `memory.oom_control`. The kernel signals it on each OOM and
//!   once when the cgroup is removed (then `memory.oom_control` is gone).
//! * v2: an inotify watch on the cgroup's `memory.events`; an OOM is an
//!   increase of its `oom_kill` count.
//!
//! One thread waits on all of them with epoll and calls the handler with
//! the container's id. Must never: write to a cgroup anything but the v1
//! registration line.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::error::{Error, IoContext, Result};
use crate::lock;

/// Called with the id of a container whose cgroup ran out of memory.
pub type OnOom = Box<dyn Fn(&str) + Send + Sync>;

enum Source {
    V1 {
        efd: EventFd,
        /// The registration refers to this open file.
        _oom_control: File,
        oom_control: PathBuf,
    },
    V2 {
        inotify: Inotify,
        events: PathBuf,
        oom_kills: u64,
    },
}

impl Source {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Source::V1 { efd, .. } => efd.as_fd(),
            Source::V2 { inotify, .. } => inotify.as_fd(),
        }
    }

    /// Drains the readiness; `Some(oom)` while the cgroup exists.
    fn check(&mut self) -> Option<bool> {
        match self {
            Source::V1 {
                efd, oom_control, ..
            } => {
                let _ = efd.read();
                oom_control.exists().then_some(true)
            }
            Source::V2 {
                inotify,
                events,
                oom_kills,
            } => {
                let _ = inotify.read_events();
                let text = std::fs::read_to_string(&*events).ok()?;
                let now = oom_kill_count(&text);
                let oom = now > *oom_kills;
                *oom_kills = now;
                Some(oom)
            }
        }
    }
}

/// The `oom_kill` count of a v2 `memory.events` file.
fn oom_kill_count(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

struct Watched {
    id: String,
    source: Source,
}

/// The OOM watcher of every container of the shim.
pub struct Monitor {
    epoll: Arc<Epoll>,
    watched: Arc<Mutex<HashMap<u64, Watched>>>,
    next: Mutex<u64>,
}

impl Monitor {
    /// Starts the watching thread; `on_oom` runs on it.
    pub fn start(on_oom: OnOom) -> Result<Monitor> {
        let epoll = Arc::new(
            Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).ctx(|| "epoll_create1".to_string())?,
        );
        let watched: Arc<Mutex<HashMap<u64, Watched>>> = Arc::default();
        let (ep, w) = (epoll.clone(), watched.clone());
        std::thread::Builder::new()
            .name("oom".into())
            .spawn(move || {
                let mut events = [EpollEvent::empty(); 16];
                loop {
                    let n = match ep.wait(&mut events, EpollTimeout::NONE) {
                        Ok(n) => n,
                        Err(nix::errno::Errno::EINTR) => continue,
                        Err(e) => {
                            log::error!("oom monitor: epoll_wait: {e}");
                            return;
                        }
                    };
                    for ev in &events[..n] {
                        let token = ev.data();
                        let mut map = lock(&w);
                        let Some(entry) = map.get_mut(&token) else {
                            continue;
                        };
                        match entry.source.check() {
                            Some(true) => on_oom(&entry.id),
                            Some(false) => {}
                            None => {
                                if let Some(gone) = map.remove(&token) {
                                    let _ = ep.delete(gone.source.fd());
                                }
                            }
                        }
                    }
                }
            })
            .ctx(|| "spawn the oom thread".to_string())?;
        Ok(Monitor {
            epoll,
            watched,
            next: Mutex::new(0),
        })
    }

    /// Watches the memory cgroup of process `pid` for container `id`.
    pub fn add(&self, id: &str, pid: u32) -> Result<()> {
        let source = source_for(pid)?;
        let token = {
            let mut next = lock(&self.next);
            *next += 1;
            *next
        };
        self.epoll
            .add(source.fd(), EpollEvent::new(EpollFlags::EPOLLIN, token))
            .ctx(|| format!("epoll_ctl add the OOM watch of container {id}"))?;
        lock(&self.watched).insert(
            token,
            Watched {
                id: id.to_string(),
                source,
            },
        );
        Ok(())
    }

    /// Stops watching container `id`.
    pub fn remove(&self, id: &str) {
        let mut map = lock(&self.watched);
        let tokens: Vec<u64> = map
            .iter()
            .filter(|(_, w)| w.id == id)
            .map(|(t, _)| *t)
            .collect();
        for t in tokens {
            if let Some(w) = map.remove(&t) {
                let _ = self.epoll.delete(w.source.fd());
            }
        }
    }
}

/// Where `pid`'s memory cgroup is: `Ok(dir, is_v2)`.
fn memory_cgroup(pid: u32) -> Result<(PathBuf, bool)> {
    let cgroup_file = format!("/proc/{pid}/cgroup");
    let cgroups = std::fs::read_to_string(&cgroup_file).ctx(|| format!("read {cgroup_file}"))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .ctx(|| "read /proc/self/mountinfo".to_string())?;
    let (path, v2) = cgroup_path(&cgroups)
        .ok_or_else(|| Error::NotFound(format!("{cgroup_file}: a memory cgroup")))?;
    let (root, mount) = cgroup_mount(&mountinfo, v2).ok_or_else(|| {
        Error::NotFound(format!(
            "/proc/self/mountinfo: a {} mount",
            if v2 { "cgroup2" } else { "memory cgroup" }
        ))
    })?;
    let rel = Path::new(&path)
        .strip_prefix(&root)
        .unwrap_or(Path::new(&path));
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    Ok((Path::new(&mount).join(rel), v2))
}

/// The memory cgroup's path in a `/proc/PID/cgroup` text: the v1 memory
/// controller's line, else the v2 (`0::`) line.
fn cgroup_path(text: &str) -> Option<(String, bool)> {
    let mut v2 = None;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (hier, controllers, path) = (f.next()?, f.next()?, f.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            return Some((path.to_string(), false));
        }
        if hier == "0" && controllers.is_empty() {
            v2 = Some((path.to_string(), true));
        }
    }
    v2
}

/// `(root, mount point)` of the memory cgroup v1 hierarchy, or of the
/// cgroup2 file system, in a mountinfo text.
fn cgroup_mount(mountinfo: &str, v2: bool) -> Option<(String, String)> {
    mountinfo.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (fstype, super_opts) = (*post.first()?, *post.get(2)?);
        let wanted = if v2 {
            fstype == "cgroup2"
        } else {
            fstype == "cgroup" && super_opts.split(',').any(|o| o == "memory")
        };
        if !wanted {
            return None;
        }
        Some((pre.get(3)?.to_string(), pre.get(4)?.to_string()))
    })
}

fn source_for(pid: u32) -> Result<Source> {
    let (dir, v2) = memory_cgroup(pid)?;
    if v2 {
        let events = dir.join("memory.events");
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .ctx(|| "inotify_init1".to_string())?;
        inotify
            .add_watch(&events, AddWatchFlags::IN_MODIFY)
            .ctx(|| format!("inotify_add_watch {}", events.display()))?;
        let oom_kills = std::fs::read_to_string(&events)
            .map(|t| oom_kill_count(&t))
            .ctx(|| format!("read {}", events.display()))?;
        return Ok(Source::V2 {
            inotify,
            events,
            oom_kills,
        });
    }
    let oom_control = dir.join("memory.oom_control");
    let file = File::open(&oom_control).ctx(|| format!("open {}", oom_control.display()))?;
    let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
        .ctx(|| "eventfd".to_string())?;
    let control = dir.join("cgroup.event_control");
    let line = format!("{} {}", efd.as_fd().as_raw_fd(), file.as_raw_fd());
    std::fs::write(&control, line).ctx(|| format!("write {}", control.display()))?;
    Ok(Source::V1 {
        efd,
        _oom_control: file,
        oom_control,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_memory_cgroup_v1_and_v2() {
        let v1 = "12:pids:/x\n4:memory:/brigtest/c1\n0::/\n";
        assert_eq!(cgroup_path(v1), Some(("/brigtest/c1".into(), false)));
        let v2 = "0::/system.slice/c2\n";
        assert_eq!(cgroup_path(v2), Some(("/system.slice/c2".into(), true)));
        assert_eq!(cgroup_path("3:cpu:/a\n"), None);

        let mi = "30 25 0:26 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
                  33 25 0:29 /outer /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                  40 25 0:35 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup_mount(mi, false),
            Some(("/outer".into(), "/sys/fs/cgroup/memory".into()))
        );
        assert_eq!(
            cgroup_mount(mi, true),
            Some(("/".into(), "/sys/fs/cgroup/unified".into()))
        );
    }

    #[test]
    fn counts_oom_kills() {
        let text = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(oom_kill_count(text), 2);
        assert_eq!(oom_kill_count("low 0\n"), 0);
    }
}
