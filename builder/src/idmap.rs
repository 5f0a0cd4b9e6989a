//! The ids this process can give files: the identity map of the initial user namespace, or
//! the map of the user namespace a plain user's build runs in ([`crate::rootless`]).
//!
//! Owns the explanation of a chown the kernel refuses (EINVAL: an id with no mapping), and
//! the choice of overlayfs' xattr namespace (`trusted.overlay.*` needs CAP_SYS_ADMIN in the
//! initial user namespace; inside another one overlayfs is mounted with `userxattr` and reads
//! `user.overlay.*`), and the stand-in for a device node a user namespace cannot make
//! ([`DEVICE_STANDIN_XATTR`]). Reads /proc/self/uid_map and gid_map only; imports nothing of
//! the crate.

use std::fs;
use std::sync::OnceLock;

/// One line of a uid_map or gid_map: `inside` .. `inside + count` are `outside` ...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// Parses the text of /proc/PID/uid_map (or gid_map).
pub fn parse_map(text: &str) -> Vec<Range> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(|n| n.parse::<u32>().ok());
            Some(Range {
                inside: f.next()??,
                outside: f.next()??,
                count: f.next()??,
            })
        })
        .collect()
}

fn map_of(which: &str) -> Vec<Range> {
    parse_map(&fs::read_to_string(format!("/proc/self/{which}")).unwrap_or_default())
}

/// True when this process runs in a user namespace other than the initial one (its uid_map is
/// not the identity over every id), as runc's and BuildKit's userns detection decide.
pub fn in_user_namespace() -> bool {
    static IN: OnceLock<bool> = OnceLock::new();
    *IN.get_or_init(|| {
        let m = map_of("uid_map");
        m != [Range {
            inside: 0,
            outside: 0,
            count: u32::MAX,
        }]
    })
}

/// The xattr of a regular file that stands for a device node a user namespace may not make
/// (mknod: EPERM): `c MAJOR MINOR` or `b MAJOR MINOR`. Unpacking writes it; the layer writer
/// turns the file back into the device entry (same mode, owner, time), so a plain user's layer
/// is root's. Never part of a layer itself.
pub const DEVICE_STANDIN_XATTR: &str = "user.brig.build.device";

/// The device a stand-in's [`DEVICE_STANDIN_XATTR`] value names: (is a char device, major,
/// minor).
pub fn parse_device_standin(v: &[u8]) -> Option<(bool, u32, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let mut f = s.split(' ');
    let chr = match f.next()? {
        "c" => true,
        "b" => false,
        _ => return None,
    };
    let major = f.next()?.parse().ok()?;
    let minor = f.next()?.parse().ok()?;
    f.next().is_none().then_some((chr, major, minor))
}

/// The prefix of overlayfs' xattrs (opaque directories) for mounts made by this process.
pub fn overlay_xattr_prefix() -> &'static str {
    if in_user_namespace() {
        "user.overlay."
    } else {
        "trusted.overlay."
    }
}

/// The xattr that marks an opaque directory in an overlay upper or lower dir of this process.
pub fn opaque_xattr() -> &'static str {
    if in_user_namespace() {
        "user.overlay.opaque"
    } else {
        "trusted.overlay.opaque"
    }
}

/// An xattr of overlayfs' own (either namespace): never part of a layer.
pub fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")
}

fn mapped(map: &[Range], id: u32) -> bool {
    map.iter()
        .any(|r| id >= r.inside && id - r.inside < r.count)
}

fn show(map: &[Range]) -> String {
    map.iter()
        .map(|r| match r.count {
            1 => format!("{}", r.inside),
            n => format!("{}-{}", r.inside, r.inside as u64 + n as u64 - 1),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why chown to `uid`:`gid` failed with EINVAL in this user namespace, when an id has no
/// mapping: names the id, the ids there are and where they come from. None if both are mapped.
pub fn unmapped(uid: u32, gid: u32) -> Option<String> {
    let (um, gm) = (map_of("uid_map"), map_of("gid_map"));
    let (what, id, map, file) = if !mapped(&um, uid) {
        ("uid", uid, um, "/etc/subuid")
    } else if !mapped(&gm, gid) {
        ("gid", gid, gm, "/etc/subgid")
    } else {
        return None;
    };
    Some(format!(
        "{what} {id} is outside the ids this build can give files ({}): a build as a plain \
         user maps 0 to the user and 1.. to the user's range in {file}; give the user a larger \
         range there (usermod --add-subuids/--add-subgids FIRST-LAST USER)",
        show(&map)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_parse_and_ids_are_found() {
        let m = parse_map("         0       1000          1\n         1     100000      65536\n");
        assert_eq!(m.len(), 2);
        assert!(mapped(&m, 0) && mapped(&m, 1) && mapped(&m, 65536));
        assert!(!mapped(&m, 65537));
        assert_eq!(show(&m), "0, 1-65536");
        assert_eq!(
            show(&parse_map("0 0 4294967295")),
            "0-4294967294",
            "the identity map"
        );
    }
}
