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
        for (i, m) in spec.mounts().iter().flatten().enumerate() {
            let opts = mount_options::parse(m.options().as_deref().unwrap_or(&[]));
            let typ = m.typ().clone().unwrap_or_default();
            let is_bind = opts.bind || typ == "bind";
            let mut opts = opts;
            opts.bind = is_bind;
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
            let plan = rootfs::MountPlan {
                index: i,
                destination: m.destination().clone(),
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
        Ok(Plan {
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
            bind_devices: linux
                .namespaces()
                .iter()
                .flatten()
                .any(|n| n.typ() == LinuxNamespaceType::User),
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
