//! Named build contexts (`--build-context NAME=VALUE`): a name that `FROM`, `COPY --from` and
//! `RUN --mount=from=` resolve before looking for an image of that name.
//!
//! Owns the forms BuildKit accepts that make sense without a daemon: a local directory
//! (`NAME=PATH`, for `COPY --from` and bind mounts), an OCI layout (`oci-layout://DIR[:TAG]`)
//! and an image reference (`docker-image://REF`), both usable wherever an image is.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// What a named context stands for.
#[derive(Debug, Clone, PartialEq)]
pub enum Named {
    /// A directory read like the main context (no `.dockerignore`).
    Dir(PathBuf),
    /// An image reference as `FROM` takes it (`oci-layout://...`, `host/repo:tag`).
    Image(String),
}

/// Parses the `--build-context` values.
pub fn parse(list: &[String]) -> Result<BTreeMap<String, Named>, String> {
    let mut m = BTreeMap::new();
    for s in list {
        let (name, value) = s
            .split_once('=')
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
            .ok_or_else(|| format!("--build-context {s:?}: expected NAME=PATH|oci-layout://DIR[:TAG]|docker-image://REF"))?;
        let named = if value.starts_with("oci-layout://") {
            Named::Image(value.to_string())
        } else if let Some(r) = value.strip_prefix("docker-image://") {
            Named::Image(r.to_string())
        } else if value.contains("://") {
            return Err(format!(
                "--build-context {s:?}: unsupported source (a directory, oci-layout:// or docker-image://)"
            ));
        } else {
            let p = PathBuf::from(value);
            if !p.is_dir() {
                return Err(format!("--build-context {s:?}: {value} is not a directory"));
            }
            Named::Dir(p)
        };
        m.insert(name.to_ascii_lowercase(), named);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let m = parse(&[
            "Base=oci-layout:///x:1".into(),
            "img=docker-image://h/r:t".into(),
            "d=/".into(),
        ])
        .unwrap();
        assert_eq!(m["base"], Named::Image("oci-layout:///x:1".into()));
        assert_eq!(m["img"], Named::Image("h/r:t".into()));
        assert_eq!(m["d"], Named::Dir("/".into()));
        assert!(parse(&["x=git://h/r".into()]).is_err());
        assert!(parse(&["x=/no/such/dir".into()])
            .unwrap_err()
            .contains("not a directory"));
        assert!(parse(&["novalue".into()]).is_err());
    }
}
