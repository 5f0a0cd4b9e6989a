//! `/proc/PID/mountinfo`: the one reader of its escaped fields.
//!
//! The kernel writes a space, tab, newline and backslash in a path as a
//! three-digit octal escape (`\040`); any other byte is as it is, so a path
//! need not be UTF-8.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// A path field of a mountinfo line (root or mount point), unescaped.
pub fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        // Three octal digits of a byte (at most \377).
        let oct = b
            .get(i + 1..i + 4)
            .filter(|o| o[0] <= b'3' && o.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(o) if b[i] == b'\\' => {
                out.push((o[0] - b'0') * 64 + (o[1] - b'0') * 8 + (o[2] - b'0'));
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// The mount points of a mountinfo text (field 5), unescaped, in its order.
pub fn mount_points(text: &str) -> impl Iterator<Item = PathBuf> + '_ {
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            unescape("/a\\040b\\011c\\012d\\134e"),
            PathBuf::from("/a b\tc\nd\\e")
        );
        assert_eq!(unescape("/plain"), PathBuf::from("/plain"));
        // Not an escape: left as it is.
        assert_eq!(unescape("/x\\9"), PathBuf::from("/x\\9"));
        assert_eq!(unescape("/x\\777"), PathBuf::from("/x\\777"));
        assert_eq!(unescape("/end\\04"), PathBuf::from("/end\\04"));
        // Bytes that are not UTF-8 survive.
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(unescape("/\\377").as_os_str().as_bytes(), b"/\xff");
        let text = "22 27 0:21 / /proc rw - proc proc rw\n30 27 0:5 / /mnt/a\\040b rw - x x rw\n";
        let points: Vec<PathBuf> = mount_points(text).collect();
        assert_eq!(points, [PathBuf::from("/proc"), PathBuf::from("/mnt/a b")]);
    }
}
