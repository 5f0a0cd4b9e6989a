//! Host cgroup layout: which hierarchies are mounted where (from
//! `/proc/self/mountinfo`) and which cgroup the calling process is in (from
//! `/proc/self/cgroup`).
//!
//! Owns only parsing; it never creates, writes or removes anything.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// v1 controllers brig knows how to join, in the order runc applies them.
/// `name=systemd` and the hybrid `unified` hierarchy come last.
pub(crate) const JOIN_ORDER: &[&str] = &[
    "cpuset",
    "devices",
    "memory",
    "cpu",
    "cpuacct",
    "pids",
    "blkio",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "freezer",
    "rdma",
    "misc",
    "name=systemd",
    UNIFIED_KEY,
];

/// The key under which the cgroup2 hierarchy of a hybrid host is stored in
/// [`super::Manager::paths`].
pub(crate) const UNIFIED_KEY: &str = "unified";

/// Every v1 controller name the kernel may print in mount options.
const V1_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "debug",
];

/// Rank of a `paths()` key in [`JOIN_ORDER`]; unknown keys sort last.
pub(crate) fn rank(key: &str) -> usize {
    JOIN_ORDER
        .iter()
        .position(|k| *k == key)
        .unwrap_or(JOIN_ORDER.len())
}

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Only v1 hierarchies.
    Legacy,
    /// v1 controllers plus a cgroup2 hierarchy (usually /sys/fs/cgroup/unified).
    Hybrid,
    /// Only cgroup2 (v1 named hierarchies at most).
    Unified,
}

/// One mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hierarchy {
    /// `true` for cgroup2.
    pub v2: bool,
    /// v1 controllers and `name=` options as in the mount options, e.g.
    /// `["cpu", "cpuacct"]` or `["name=systemd"]`; empty for cgroup2.
    pub controllers: Vec<String>,
    /// Where the hierarchy is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mountpoint: PathBuf,
    /// The cgroup the mount shows as its root (`/` unless bind-mounted from
    /// inside the hierarchy, as in nested containers).
    pub root: PathBuf,
}

impl Hierarchy {
    /// The names this hierarchy is stored under in `paths()`.
    pub fn keys(&self) -> Vec<String> {
        if self.v2 {
            vec![UNIFIED_KEY.to_string()]
        } else {
            self.controllers.clone()
        }
    }

    /// Whether brig joins this hierarchy: known v1 controllers, the systemd
    /// named hierarchy, and cgroup2 on a hybrid host.
    fn joinable(&self) -> bool {
        self.v2
            || self.controllers.iter().any(|c| {
                c == "name=systemd" || (c != "debug" && V1_CONTROLLERS.contains(&c.as_str()))
            })
    }
}

/// All cgroup hierarchies visible to this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub hierarchies: Vec<Hierarchy>,
}

/// Where systemd and the distributions mount the cgroup filesystems.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

impl Layout {
    /// The hierarchies of a conventional host ([`Layout::conventional`]), or else those
    /// `/proc/self/mountinfo` lists.
    pub fn detect() -> Result<Layout> {
        if let Some(l) = Layout::conventional() {
            return Ok(l);
        }
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .ctx(|| "read /proc/self/mountinfo".to_string())?;
        Ok(Layout::parse(&text))
    }

    /// The layout of a host that mounts its cgroups where systemd and the distributions do,
    /// told from `/proc/self/cgroup` and a statfs of each mount point, without reading the
    /// mount table (which grows with every container rootfs mounted on the host, so that
    /// reading it made each container cost more than the one before): a cgroup2 mount at
    /// /sys/fs/cgroup; or a tmpfs there with a mount for each v1 hierarchy, named after its
    /// controllers (`systemd` for name=systemd), and `unified` for cgroup2. Each mount must
    /// show the whole hierarchy: our own cgroup is found under it by its full path. `None`
    /// when anything differs from that (a hierarchy mounted elsewhere, a mount of part of a
    /// hierarchy, v1 without a cgroup2 mount): the mount table decides then.
    fn conventional() -> Option<Layout> {
        use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC, TMPFS_MAGIC};
        let own = read_own_cgroups().ok()?;
        let top = Path::new(CGROUP_ROOT);
        let at = |mountpoint: PathBuf, controllers: &[String], own: &str| -> Option<Hierarchy> {
            let v2 = controllers.is_empty();
            let want = if v2 {
                CGROUP2_SUPER_MAGIC
            } else {
                CGROUP_SUPER_MAGIC
            };
            if statfs(&mountpoint).ok()?.filesystem_type() != want {
                return None;
            }
            let rel = Path::new(own).strip_prefix("/").ok()?;
            if rel.components().any(|c| !matches!(c, Component::Normal(_)))
                || !mountpoint.join(rel).is_dir()
            {
                return None;
            }
            Some(Hierarchy {
                v2,
                controllers: controllers.to_vec(),
                mountpoint,
                root: PathBuf::from("/"),
            })
        };
        let kind = statfs(top).ok()?.filesystem_type();
        let mut hierarchies = Vec::new();
        if kind == CGROUP2_SUPER_MAGIC {
            // cgroup2 alone: its line is the only one.
            let [only] = own.as_slice() else { return None };
            hierarchies.push(at(top.to_path_buf(), &only.controllers, &only.path)?);
            return (only.controllers.is_empty()).then_some(Layout { hierarchies });
        }
        if kind != TMPFS_MAGIC {
            return None;
        }
        for p in &own {
            let known = |c: &String| V1_CONTROLLERS.contains(&c.as_str()) || c.starts_with("name=");
            if !p.controllers.iter().all(known) {
                return None;
            }
            let dir = match p.controllers.as_slice() {
                [] => "unified".to_string(),
                [one] if one.starts_with("name=") => one["name=".len()..].to_string(),
                all => all.join(","),
            };
            hierarchies.push(at(top.join(dir), &p.controllers, &p.path)?);
        }
        Some(Layout { hierarchies })
    }

    /// Parse mountinfo text. The first mount of each hierarchy wins.
    pub fn parse(mountinfo: &str) -> Layout {
        let mut hierarchies: Vec<Hierarchy> = Vec::new();
        for line in mountinfo.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(sep) = fields.iter().position(|f| *f == "-") else {
                continue;
            };
            if fields.len() < 5 || fields.len() < sep + 4 {
                continue;
            }
            let root = crate::linux::mountinfo::unescape(fields[3]);
            let mountpoint = crate::linux::mountinfo::unescape(fields[4]);
            let fstype = fields[sep + 1];
            let superopts = fields[sep + 3];
            let h = match fstype {
                "cgroup" => {
                    let controllers: Vec<String> = superopts
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                        .map(str::to_string)
                        .collect();
                    if controllers.is_empty() {
                        continue;
                    }
                    Hierarchy {
                        v2: false,
                        controllers,
                        mountpoint,
                        root,
                    }
                }
                "cgroup2" => Hierarchy {
                    v2: true,
                    controllers: Vec::new(),
                    mountpoint,
                    root,
                },
                _ => continue,
            };
            let seen = hierarchies
                .iter()
                .any(|o| o.v2 == h.v2 && set_of(&o.controllers) == set_of(&h.controllers));
            if !seen {
                hierarchies.push(h);
            }
        }
        Layout { hierarchies }
    }

    pub fn mode(&self) -> Result<Mode> {
        let v1 = self
            .hierarchies
            .iter()
            .any(|h| !h.v2 && h.controllers.iter().any(|c| !c.starts_with("name=")));
        let v2 = self.hierarchies.iter().any(|h| h.v2);
        match (v1, v2) {
            (true, false) => Ok(Mode::Legacy),
            (true, true) => Ok(Mode::Hybrid),
            (false, true) => Ok(Mode::Unified),
            (false, false) => Err(Error::msg(
                "no cgroup filesystem is mounted (see /proc/self/mountinfo)",
            )),
        }
    }

    /// The hierarchies a v1/hybrid container joins, in join order.
    pub fn joinable(&self) -> Vec<&Hierarchy> {
        let mut v: Vec<&Hierarchy> = self.hierarchies.iter().filter(|h| h.joinable()).collect();
        v.sort_by_key(|h| h.keys().iter().map(|k| rank(k)).min().unwrap_or(usize::MAX));
        v
    }

    /// The hierarchy whose mountpoint holds `path`, for rebuilding a manager
    /// from stored paths.
    pub fn containing(&self, path: &Path, v2: bool) -> Option<&Hierarchy> {
        self.hierarchies
            .iter()
            .filter(|h| h.v2 == v2 && path.starts_with(&h.mountpoint))
            .max_by_key(|h| h.mountpoint.as_os_str().len())
    }
}

fn set_of(v: &[String]) -> BTreeSet<&str> {
    v.iter().map(String::as_str).collect()
}

/// One line of `/proc/<pid>/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcCgroup {
    /// Controllers of a v1 hierarchy (`name=systemd` included); empty for cgroup2.
    pub controllers: Vec<String>,
    /// The process's cgroup, as seen from its cgroup namespace.
    pub path: String,
}

pub(crate) fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroup> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.splitn(3, ':');
            let _id = it.next()?;
            let ctrls = it.next()?;
            let path = it.next()?;
            Some(ProcCgroup {
                controllers: ctrls
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

pub(crate) fn read_own_cgroups() -> Result<Vec<ProcCgroup>> {
    let text = std::fs::read_to_string("/proc/self/cgroup")
        .ctx(|| "read /proc/self/cgroup".to_string())?;
    Ok(parse_proc_cgroup(&text))
}

/// The directory under `h.mountpoint` of the cgroup `own` lists for `h`.
pub(crate) fn own_dir(h: &Hierarchy, own: &[ProcCgroup]) -> Result<PathBuf> {
    let entry = own.iter().find(|p| {
        if h.v2 {
            p.controllers.is_empty()
        } else {
            set_of(&p.controllers) == set_of(&h.controllers)
        }
    });
    let name = if h.v2 {
        "cgroup2".to_string()
    } else {
        h.controllers.join(",")
    };
    let Some(entry) = entry else {
        return Err(Error::msg(format!(
            "/proc/self/cgroup has no entry for the {name} hierarchy mounted at {}",
            h.mountpoint.display()
        )));
    };
    let own_path = Path::new(&entry.path);
    let rel = own_path.strip_prefix(&h.root).map_err(|_| {
        Error::msg(format!(
            "own {name} cgroup {} is outside the mounted part of the hierarchy ({} at {})",
            entry.path,
            h.root.display(),
            h.mountpoint.display()
        ))
    })?;
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(Error::msg(format!(
            "own {name} cgroup {} is outside this cgroup namespace",
            entry.path
        )));
    }
    Ok(h.mountpoint.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:9 - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
99 31 0:32 /x /mnt/memory\\040copy rw,relatime - cgroup cgroup rw,memory
";

    #[test]
    fn parses_hybrid() {
        let l = Layout::parse(HYBRID);
        assert_eq!(l.mode().ok(), Some(Mode::Hybrid));
        assert_eq!(l.hierarchies.len(), 8);
        let j: Vec<Vec<String>> = l.joinable().iter().map(|h| h.keys()).collect();
        assert_eq!(j[0], vec!["cpuset"]);
        assert_eq!(j[1], vec!["devices"]);
        assert_eq!(j[j.len() - 2], vec!["name=systemd"]);
        assert_eq!(j[j.len() - 1], vec!["unified"]);
        let mem = l
            .containing(Path::new("/sys/fs/cgroup/memory/a/b"), false)
            .map(|h| h.controllers.clone());
        assert_eq!(mem, Some(vec!["memory".to_string()]));
    }

    #[test]
    fn comounted_and_escapes() {
        let l = Layout::parse(
            "1 0 0:1 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             2 0 0:2 /a /x\\040y rw - cgroup cgroup rw,memory\n",
        );
        assert_eq!(l.mode().ok(), Some(Mode::Legacy));
        assert_eq!(l.hierarchies[0].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(l.hierarchies[1].mountpoint, PathBuf::from("/x y"));
        assert_eq!(l.hierarchies[1].root, PathBuf::from("/a"));
    }

    #[test]
    fn conventional_host_as_its_mount_table_says() {
        // This host's own layout both ways: where /sys/fs/cgroup is conventional, what the
        // quick way finds is what the mount table lists (the hierarchies brig joins).
        let Some(quick) = Layout::conventional() else {
            eprintln!("skipped: /sys/fs/cgroup is not laid out conventionally here");
            return;
        };
        let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let table = Layout::parse(&text);
        let view = |l: &Layout| -> Vec<(Vec<String>, PathBuf, PathBuf)> {
            l.joinable()
                .iter()
                .map(|h| (h.keys(), h.mountpoint.clone(), h.root.clone()))
                .collect()
        };
        assert_eq!(view(&quick), view(&table));
        assert_eq!(quick.mode().ok(), table.mode().ok());
    }

    #[test]
    fn unified_only() {
        let l = Layout::parse("1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        assert_eq!(l.mode().ok(), Some(Mode::Unified));
        assert!(Layout::parse("").mode().is_err());
    }

    #[test]
    fn own_dirs() {
        let own = parse_proc_cgroup("4:memory:/a/b\n3:cpu,cpuacct:/\n0::/u\n");
        let l = Layout::parse(
            "1 0 0:1 / /cg/cpu,cpuacct rw - cgroup cgroup rw,cpuacct,cpu\n\
             2 0 0:2 /a /cg/memory rw - cgroup cgroup rw,memory\n\
             3 0 0:3 / /cg/unified rw - cgroup2 cgroup2 rw\n\
             4 0 0:4 /zz /cg/pids rw - cgroup cgroup rw,pids\n",
        );
        let dirs: Vec<_> = l
            .hierarchies
            .iter()
            .map(|h| own_dir(h, &own).ok())
            .collect();
        assert_eq!(dirs[0], Some(PathBuf::from("/cg/cpu,cpuacct")));
        assert_eq!(dirs[1], Some(PathBuf::from("/cg/memory/b")));
        assert_eq!(dirs[2], Some(PathBuf::from("/cg/unified/u")));
        assert_eq!(dirs[3], None);
    }
}
