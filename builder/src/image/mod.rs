//! Images: layers ([`layer`] writes them, [`unpack`] extracts them safely), the image config
//! ([`config`]), the local content-addressed store ([`store`]) and base images from OCI layouts
//! and archives ([`source`]).

pub mod config;
pub mod layer;
pub mod source;
pub mod store;
pub mod unpack;

use sha2::{Digest as _, Sha256};
use std::io::{self, Write};

/// A writer that hashes (sha256) and counts what goes through it.
pub struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The inner writer, the digest (`sha256:HEX`) and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        let d = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, d, self.count)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `sha256:HEX` of bytes.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The hex part of `sha256:HEX` (the whole string if there is no algorithm).
pub fn hex_of(digest: &str) -> &str {
    digest.split_once(':').map(|(_, h)| h).unwrap_or(digest)
}

/// True for a well-formed `sha256:` digest (64 lower-case hex digits): the only form used as a
/// file name.
pub fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .map(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .unwrap_or(false)
}

/// RFC 3339 UTC time of a unix timestamp (`2024-01-02T03:04:05Z`).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1709251199), "2024-02-29T23:59:59Z");
    }
}
