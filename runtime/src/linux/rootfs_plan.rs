//! The rootfs plan: what [`rootfs`](super::rootfs::prepare) mounts and makes in the
//! container, computed by the runtime from config.json before the clone (the
//! child only carries it out). Bind sources are checked here, and cloned as
//! detached mounts (idmapped ones too) where a user namespace needs it.

use std::path::{Path, PathBuf};

use nix::sys::stat::SFlag;
use oci_spec::runtime::{LinuxDeviceType, LinuxNamespaceType, Spec};

use crate::cgroups;
use crate::error::{Error, Result};
use crate::linux::rootfs::{self, Plan};
use crate::linux::{mount_options, namespaces};

impl Plan {
    /// The rootfs plan of a validated spec: every mount resolved (bind sources against the
    /// bundle, cloned as detached mounts where a user namespace needs it), the device nodes,
    /// masked and read-only paths, propagation. `clone_sources`: clone bind sources now where
    /// a user namespace needs it (create); without it (the fuzz targets) nothing is opened.
    pub fn from_spec(
        spec: &Spec,
        bundle: &Path,
        rootfs: &Path,
        no_pivot: bool,
        cgroup_mounts: Vec<cgroups::CgroupMount>,
        cgroupns: bool,
        clone_sources: bool,
    ) -> Result<rootfs::Plan> {
        let linux = spec.linux().as_ref().expect("validated");
        let mut mounts_out = Vec::new();
        let mount_label = crate::linux::lsm::mount_label(linux.mount_label().as_deref());
        for (i, m) in spec.mounts().iter().flatten().enumerate() {
            let opts = mount_options::parse(m.options().as_deref().unwrap_or(&[]));
            let typ = m.typ().clone().unwrap_or_default();
            let is_bind = opts.bind || typ == "bind";
            let mut opts = opts;
            opts.bind = is_bind;
            if let Some(label) = &mount_label {
                if crate::linux::lsm::takes_mount_label(&typ, is_bind) {
                    opts.data = crate::linux::lsm::format_mount_label(&opts.data, label);
                }
            }
            let source = m.source().clone().unwrap_or_default();
            let (source, source_is_dir) = if is_bind {
                let abs = if source.is_absolute() {
                    source
                } else {
                    bundle.join(source)
                };
                let meta = std::fs::metadata(&abs).map_err(|e| {
                    Error::config(
                        "config.json",
                        format!("mounts[{i}].source"),
                        format!("{}: {e}", abs.display()),
                    )
                })?;
                (abs, meta.is_dir())
            } else {
                (source, true)
            };
            // With a user namespace, cloned here by the runtime as a detached mount
            // (open_tree): the init may run as an id that cannot reach the source.
            // Without one the init binds by path, as runc: a clone made now would get
            // its mount id now, and kernels from 6.8 list mountinfo by mount id, so the
            // binds would come before the rootfs and every other mount.
            // open_tree needs CAP_SYS_ADMIN here: a rootless caller binds by
            // path from inside its user namespace instead, with its own access.
            let idmap = idmap_of(i, m, &opts, spec)?;
            let in_userns = crate::spec::has_namespace(spec, LinuxNamespaceType::User);
            let source_fd = if is_bind
                && clone_sources
                && (in_userns || idmap.is_some())
                && nix::unistd::geteuid().is_root()
            {
                let fd = rootfs::clone_mount(&source, opts.recursive).map_err(|e| {
                    Error::config(
                        "config.json",
                        format!("mounts[{i}].source"),
                        format!("{}: {}", source.display(), e.desc()),
                    )
                })?;
                if let Some((uid, gid, recursive)) = &idmap {
                    let userns = namespaces::userns_with_maps(uid, gid)?;
                    rootfs::idmap_mount(
                        std::os::fd::AsFd::as_fd(&fd),
                        std::os::fd::AsFd::as_fd(&userns),
                        *recursive,
                    )
                    .map_err(|e| {
                        Error::config(
                            "config.json",
                            format!("mounts[{i}].uidMappings"),
                            format!("idmapped mount of {}: {}", source.display(), e.desc()),
                        )
                    })?;
                }
                Some(std::sync::Arc::new(fd))
            } else if idmap.is_some() {
                return Err(Error::config(
                    "config.json",
                    format!("mounts[{i}].uidMappings"),
                    "idmapped mounts need a bind mount made by root",
                ));
            } else {
                None
            };
            let file_label = match (&mount_label, typ.as_str()) {
                (Some(l), "mqueue") => std::ffi::CString::new(l.as_str()).ok(),
                _ => None,
            };
            let plan = rootfs::MountPlan {
                index: i,
                destination: m.destination().clone(),
                file_label,
                typ,
                source,
                opts,
                source_is_dir,
                source_fd,
            };
            rootfs::check_destination(&plan)?;
            mounts_out.push(plan);
        }
        let mut devices = rootfs::default_devices();
        for (i, d) in linux.devices().iter().flatten().enumerate() {
            let kind = match d.typ() {
                LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
                LinuxDeviceType::B => SFlag::S_IFBLK,
                LinuxDeviceType::P => SFlag::S_IFIFO,
                LinuxDeviceType::A => {
                    return Err(Error::config(
                        "config.json",
                        format!("linux.devices[{i}].type"),
                        "\"a\" is not a device node type",
                    ))
                }
            };
            devices.retain(|x| x.path != *d.path());
            devices.push(rootfs::DevicePlan {
                path: d.path().clone(),
                kind,
                major: d.major() as u64,
                minor: d.minor() as u64,
                mode: d.file_mode().unwrap_or(0o666) & 0o7777,
                uid: d.uid(),
                gid: d.gid(),
            });
        }
        let propagation = match linux.rootfs_propagation().as_deref() {
            None | Some("") => None,
            Some(p) => mount_options::propagation(p),
        };
        let mask_data = mount_label
            .as_deref()
            .map(|l| crate::linux::lsm::format_mount_label("", l));
        Ok(Plan {
            mask_data,
            rootfs: rootfs.to_path_buf(),
            mounts: mounts_out,
            devices,
            masked: linux
                .masked_paths()
                .iter()
                .flatten()
                .map(PathBuf::from)
                .collect(),
            readonly: linux
                .readonly_paths()
                .iter()
                .flatten()
                .map(PathBuf::from)
                .collect(),
            readonly_root: spec
                .root()
                .as_ref()
                .and_then(|r| r.readonly())
                .unwrap_or(false),
            propagation,
            no_pivot,
            own_mount_ns: crate::spec::has_namespace(spec, LinuxNamespaceType::Mount),
            cgroup_mounts,
            cgroupns,
            // A new user namespace, or one the runtime already runs in: no mknod there.
            bind_devices: linux
                .namespaces()
                .iter()
                .flatten()
                .any(|n| n.typ() == LinuxNamespaceType::User)
                || namespaces::running_in_user_namespace(),
            cwd: spec
                .process()
                .as_ref()
                .map(|p| p.cwd().clone())
                .unwrap_or_else(|| PathBuf::from("/")),
        })
    }
}

type IdMaps = Vec<oci_spec::runtime::LinuxIdMapping>;

/// The id maps of an idmapped mount: its own `uidMappings`/`gidMappings`,
/// or with only the `idmap`/`ridmap` option those of the container's user
/// namespace. `ridmap` (or rbind) maps the whole subtree.
fn idmap_of(
    i: usize,
    m: &oci_spec::runtime::Mount,
    opts: &mount_options::Options,
    spec: &Spec,
) -> Result<Option<(IdMaps, IdMaps, bool)>> {
    let field = |f: &str| format!("mounts[{i}].{f}");
    let (uid, gid) = (m.uid_mappings().clone(), m.gid_mappings().clone());
    if uid.is_none() && gid.is_none() && opts.idmap.is_none() {
        return Ok(None);
    }
    if !opts.bind {
        return Err(Error::config(
            "config.json",
            field("uidMappings"),
            "idmapped mounts must be bind mounts",
        ));
    }
    let recursive = opts.idmap.unwrap_or(false) || opts.recursive;
    let linux = spec.linux().as_ref().expect("validated");
    let (uid, gid) = match (uid, gid) {
        (Some(u), Some(g)) if !u.is_empty() && !g.is_empty() => (u, g),
        (None, None) => match (linux.uid_mappings(), linux.gid_mappings()) {
            (Some(u), Some(g)) if !u.is_empty() && !g.is_empty() => (u.clone(), g.clone()),
            _ => {
                return Err(Error::config(
                    "config.json",
                    field("options"),
                    "idmap without mappings needs the container's user namespace mappings",
                ))
            }
        },
        _ => {
            return Err(Error::config(
                "config.json",
                field("uidMappings"),
                "uidMappings and gidMappings must both be given",
            ))
        }
    };
    Ok(Some((uid, gid, recursive)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::mount::MsFlags;
    use serde_json::{json, Value};

    /// A bundle directory with `rootfs/`, a directory `data/` and a file `hosts`.
    fn bundle() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        std::fs::write(dir.path().join("hosts"), "127.0.0.1 localhost\n").unwrap();
        dir
    }

    fn config() -> Value {
        json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]}
        })
    }

    fn with_mounts(mounts: Value) -> Value {
        let mut v = config();
        v["mounts"] = mounts;
        v
    }

    /// The config with a user namespace mapping ids 0..65536 to 100000.
    fn with_userns(mut v: Value) -> Value {
        let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        v["linux"]["uidMappings"] = map.clone();
        v["linux"]["gidMappings"] = map;
        v
    }

    /// The plan of `v` (validated as `create` does) in `bundle`.
    fn plan_of(v: &Value, bundle: &Path, clone_sources: bool) -> Result<Plan> {
        let spec = crate::spec::parse(&serde_json::to_vec(v).unwrap()).unwrap();
        crate::spec::validate(&spec).unwrap();
        Plan::from_spec(
            &spec,
            bundle,
            &bundle.join("rootfs"),
            false,
            Vec::new(),
            false,
            clone_sources,
        )
    }

    fn plan(v: &Value, bundle: &Path) -> Plan {
        plan_of(v, bundle, false).unwrap()
    }

    fn refusal(v: &Value, bundle: &Path, clone_sources: bool) -> String {
        plan_of(v, bundle, clone_sources).unwrap_err().to_string()
    }

    #[test]
    fn mounts_keep_their_config_order() {
        let b = bundle();
        let v = with_mounts(json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data", "type": "bind", "source": "data"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
            {"destination": "/etc/hosts", "source": "hosts", "options": ["bind"]},
            {"destination": "/a", "type": "tmpfs", "source": "tmpfs"},
        ]));
        let p = plan(&v, b.path());
        let got: Vec<_> = p
            .mounts
            .iter()
            .map(|m| (m.index, m.destination.to_str().unwrap(), m.typ.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (0, "/proc", "proc"),
                (1, "/data", "bind"),
                (2, "/dev", "tmpfs"),
                (3, "/dev/pts", "devpts"),
                (4, "/etc/hosts", ""),
                (5, "/a", "tmpfs"),
            ]
        );
        assert_eq!(p.rootfs, b.path().join("rootfs"));
    }

    #[test]
    fn binds_by_type_or_option_with_sources_resolved() {
        let b = bundle();
        let abs = b.path().join("data");
        let v = with_mounts(json!([
            {"destination": "/d1", "type": "bind", "source": "data"},
            {"destination": "/d2", "type": "none", "source": abs, "options": ["rbind", "ro"]},
            {"destination": "/etc/hosts", "source": "hosts", "options": ["bind"]},
            {"destination": "/t", "type": "tmpfs", "source": "no-such-thing"},
        ]));
        let p = plan(&v, b.path());
        let m = &p.mounts;
        // `type: bind` alone makes a bind, not recursive; a relative source is the bundle's.
        assert!(m[0].opts.bind && !m[0].opts.recursive);
        assert_eq!(m[0].source, abs);
        assert!(m[0].source_is_dir);
        // The `rbind` option makes a recursive bind whatever the type; the flags stay.
        assert!(m[1].opts.bind && m[1].opts.recursive);
        assert_eq!(m[1].source, abs);
        assert!(m[1].opts.flags.contains(MsFlags::MS_RDONLY));
        // A file source is bound on a file.
        assert!(m[2].opts.bind);
        assert_eq!(m[2].source, b.path().join("hosts"));
        assert!(!m[2].source_is_dir);
        // Other mounts keep their source as given, unchecked.
        assert!(!m[3].opts.bind);
        assert_eq!(m[3].source, PathBuf::from("no-such-thing"));
        assert!(m[3].source_is_dir);
        // Nothing is cloned without clone_sources.
        assert!(m.iter().all(|m| m.source_fd.is_none()));
    }

    #[test]
    fn missing_bind_source_is_refused_naming_the_mount() {
        let b = bundle();
        let v = with_mounts(json!([
            {"destination": "/t", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/x", "type": "bind", "source": "nope"},
        ]));
        let e = refusal(&v, b.path(), false);
        let want = format!(
            "config.json: mounts[1].source: {}: ",
            b.path().join("nope").display()
        );
        assert!(e.starts_with(&want), "{e}");
        assert!(e.contains("No such file or directory"), "{e}");
    }

    #[test]
    fn mount_options_flags_data_and_propagation_in_order() {
        let b = bundle();
        let v = with_mounts(json!([{
            "destination": "/t",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "rprivate", "mode=755", "nodev", "size=1k", "shared", "rro"]
        }]));
        let p = plan(&v, b.path());
        let o = &p.mounts[0].opts;
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_NODEV);
        assert_eq!(
            o.propagation,
            [MsFlags::MS_PRIVATE | MsFlags::MS_REC, MsFlags::MS_SHARED]
        );
        assert_eq!(o.data, "mode=755,size=1k");
        assert_eq!(o.rec_set, mount_options::attr::RDONLY);
        assert!(!o.bind);
    }

    #[test]
    fn rootfs_propagation() {
        let b = bundle();
        let prop = |p: Option<&str>| {
            let mut v = config();
            if let Some(p) = p {
                v["linux"]["rootfsPropagation"] = p.into();
            }
            plan(&v, b.path()).propagation
        };
        // None: `prepare` applies its default (rslave).
        assert_eq!(prop(None), None);
        assert_eq!(prop(Some("")), None);
        assert_eq!(
            prop(Some("rslave")),
            Some(MsFlags::MS_SLAVE | MsFlags::MS_REC)
        );
        assert_eq!(prop(Some("private")), Some(MsFlags::MS_PRIVATE));
        assert_eq!(
            prop(Some("rshared")),
            Some(MsFlags::MS_SHARED | MsFlags::MS_REC)
        );
        assert_eq!(
            prop(Some("runbindable")),
            Some(MsFlags::MS_UNBINDABLE | MsFlags::MS_REC)
        );
    }

    #[test]
    fn masked_readonly_paths_and_the_rest_of_the_spec() {
        let b = bundle();
        let mut v = config();
        v["linux"]["maskedPaths"] = json!(["/proc/kcore", "/sys/firmware", "/proc/acpi"]);
        v["linux"]["readonlyPaths"] = json!(["/proc/sys", "/proc/bus"]);
        v["root"]["readonly"] = true.into();
        v["process"]["cwd"] = "/work".into();
        let p = plan(&v, b.path());
        assert_eq!(
            p.masked,
            [
                PathBuf::from("/proc/kcore"),
                PathBuf::from("/sys/firmware"),
                PathBuf::from("/proc/acpi")
            ]
        );
        assert_eq!(
            p.readonly,
            [PathBuf::from("/proc/sys"), PathBuf::from("/proc/bus")]
        );
        assert!(p.readonly_root);
        assert_eq!(p.cwd, PathBuf::from("/work"));
        assert!(p.own_mount_ns);
        assert!(!p.bind_devices);
        assert!(!p.no_pivot && !p.cgroupns);

        let p = plan(&config(), b.path());
        assert!(p.masked.is_empty() && p.readonly.is_empty() && !p.readonly_root);
        // Without a process (a bundle for `create` only), the cwd is /.
        let mut v = config();
        v.as_object_mut().unwrap().remove("process");
        assert_eq!(plan(&v, b.path()).cwd, PathBuf::from("/"));
    }

    #[test]
    fn no_pivot_cgroupns_and_namespaces_are_carried() {
        let b = bundle();
        let spec =
            crate::spec::parse(&serde_json::to_vec(&with_userns(config())).unwrap()).unwrap();
        let p = Plan::from_spec(&spec, b.path(), b.path(), true, Vec::new(), true, false).unwrap();
        assert!(p.no_pivot && p.cgroupns);
        // In a user namespace device nodes cannot be made: the host's are bound.
        assert!(p.bind_devices);

        let mut v = config();
        v["linux"]["namespaces"] = json!([{"type": "pid"}]);
        assert!(!plan(&v, b.path()).own_mount_ns);
    }

    #[test]
    fn devices_default_and_from_config() {
        let b = bundle();
        let p = plan(&config(), b.path());
        let names: Vec<_> = p.devices.iter().map(|d| d.path.to_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "/dev/null",
                "/dev/zero",
                "/dev/full",
                "/dev/random",
                "/dev/urandom",
                "/dev/tty"
            ]
        );

        let mut v = config();
        v["linux"]["devices"] = json!([
            {"path": "/dev/null", "type": "c", "major": 1, "minor": 99},
            {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0, "fileMode": 0o100660, "uid": 5, "gid": 6},
            {"path": "/dev/fifo", "type": "p", "major": 0, "minor": 0},
            {"path": "/dev/ttyU", "type": "u", "major": 4, "minor": 1, "fileMode": 0o4755},
        ]);
        let p = plan(&v, b.path());
        let got: Vec<_> = p
            .devices
            .iter()
            .map(|d| (d.path.to_str().unwrap(), d.kind, d.major, d.minor, d.mode))
            .collect();
        // A config device replaces the default of its path, and comes after the defaults.
        assert_eq!(
            got,
            [
                ("/dev/zero", SFlag::S_IFCHR, 1, 5, 0o666),
                ("/dev/full", SFlag::S_IFCHR, 1, 7, 0o666),
                ("/dev/random", SFlag::S_IFCHR, 1, 8, 0o666),
                ("/dev/urandom", SFlag::S_IFCHR, 1, 9, 0o666),
                ("/dev/tty", SFlag::S_IFCHR, 5, 0, 0o666),
                ("/dev/null", SFlag::S_IFCHR, 1, 99, 0o666),
                ("/dev/sda", SFlag::S_IFBLK, 8, 0, 0o660),
                ("/dev/fifo", SFlag::S_IFIFO, 0, 0, 0o666),
                ("/dev/ttyU", SFlag::S_IFCHR, 4, 1, 0o4755),
            ]
        );
        let sda = &p.devices[6];
        assert_eq!((sda.uid, sda.gid), (Some(5), Some(6)));
        assert_eq!((p.devices[5].uid, p.devices[5].gid), (None, None));
    }

    #[test]
    fn device_type_a_is_refused() {
        let b = bundle();
        let mut v = config();
        v["linux"]["devices"] = json!([
            {"path": "/dev/x", "type": "c", "major": 1, "minor": 3},
            {"path": "/dev/all", "type": "a"},
        ]);
        assert_eq!(
            refusal(&v, b.path(), false),
            "config.json: linux.devices[1].type: \"a\" is not a device node type"
        );
    }

    #[test]
    fn proc_destinations() {
        let b = bundle();
        // The lxcfs-style files are allowed, proc itself, and a bind of another procfs.
        let ok = with_mounts(json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/proc/cpuinfo", "type": "bind", "source": "hosts"},
        ]));
        plan_of(&ok, b.path(), false).unwrap();
        let host_proc = with_mounts(json!([
            {"destination": "/proc", "type": "bind", "source": "/proc", "options": ["rbind"]},
        ]));
        plan_of(&host_proc, b.path(), false).unwrap();
        // Anything else under /proc is refused (CVE-2019-16884).
        assert_eq!(
            refusal(
                &with_mounts(json!([
                    {"destination": "/proc", "type": "proc", "source": "proc"},
                    {"destination": "/proc/sys/kernel", "type": "tmpfs", "source": "tmpfs"},
                ])),
                b.path(),
                false
            ),
            "config.json: mounts[1].destination: /proc/sys/kernel is under /proc: \
             mounting there is not allowed"
        );
        assert_eq!(
            refusal(
                &with_mounts(json!([{"destination": "/proc", "type": "tmpfs", "source": "tmpfs"}])),
                b.path(),
                false
            ),
            "config.json: mounts[0].destination: /proc may only be a proc mount, not \"tmpfs\""
        );
        // A bind of a directory that is not a procfs is not proc either.
        assert_eq!(
            refusal(
                &with_mounts(json!([{"destination": "/proc", "type": "bind", "source": "data"}])),
                b.path(),
                false
            ),
            "config.json: mounts[0].destination: /proc may only be a proc mount, not \"bind\""
        );
    }

    #[test]
    fn idmapped_mount_refusals() {
        let b = bundle();
        let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        let with = |v: Value, m: Value| {
            let mut v = v;
            v["mounts"] = json!([{"destination": "/t", "type": "tmpfs", "source": "tmpfs"}, m]);
            v
        };
        let e = refusal(
            &with(
                config(),
                json!({"destination": "/x", "type": "tmpfs", "source": "tmpfs",
                       "uidMappings": map, "gidMappings": map}),
            ),
            b.path(),
            true,
        );
        assert_eq!(
            e,
            "config.json: mounts[1].uidMappings: idmapped mounts must be bind mounts"
        );
        // `idmap` alone takes the container's mappings: there must be some.
        let e = refusal(
            &with(
                config(),
                json!({"destination": "/x", "type": "bind", "source": "data", "options": ["idmap"]}),
            ),
            b.path(),
            true,
        );
        assert_eq!(
            e,
            "config.json: mounts[1].options: \
             idmap without mappings needs the container's user namespace mappings"
        );
        let e = refusal(
            &with(
                config(),
                json!({"destination": "/x", "type": "bind", "source": "data", "uidMappings": map}),
            ),
            b.path(),
            true,
        );
        assert_eq!(
            e,
            "config.json: mounts[1].uidMappings: uidMappings and gidMappings must both be given"
        );
        // Without clone_sources (the fuzz targets) nothing is cloned, so nothing is idmapped.
        let e = refusal(
            &with(
                with_userns(config()),
                json!({"destination": "/x", "type": "bind", "source": "data", "options": ["ridmap"]}),
            ),
            b.path(),
            false,
        );
        assert_eq!(
            e,
            "config.json: mounts[1].uidMappings: idmapped mounts need a bind mount made by root"
        );
    }

    #[test]
    fn clone_sources_only_with_a_user_namespace() {
        let b = bundle();
        let mounts = json!([
            {"destination": "/d", "type": "bind", "source": "data"},
            {"destination": "/t", "type": "tmpfs", "source": "tmpfs"},
        ]);
        // Without a user namespace the init binds by path, even with clone_sources.
        let v = with_mounts(mounts.clone());
        let p = plan_of(&v, b.path(), true).unwrap();
        assert!(p.mounts.iter().all(|m| m.source_fd.is_none()));
        // With one, and without clone_sources, nothing is opened either.
        let mut v = with_userns(config());
        v["mounts"] = mounts;
        let p = plan_of(&v, b.path(), false).unwrap();
        assert!(p.mounts.iter().all(|m| m.source_fd.is_none()));

        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping the clone of a bind source: open_tree needs root");
            return;
        }
        // As root, with both, the bind source is cloned as a detached mount; the tmpfs is not.
        let p = plan_of(&v, b.path(), true).unwrap();
        let fd = p.mounts[0].source_fd.as_ref().expect("bind source cloned");
        let st = nix::sys::stat::fstat(&**fd).unwrap();
        let data = std::fs::metadata(b.path().join("data")).unwrap();
        assert_eq!(st.st_ino, std::os::unix::fs::MetadataExt::ino(&data));
        assert!(p.mounts[1].source_fd.is_none());
    }
}
