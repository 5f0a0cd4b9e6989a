//! Image references of a registry: `[docker://][HOST[:PORT]/]REPO[:TAG][@DIGEST]`, with
//! docker's defaults (no host: `docker.io`, a one-part repository there: `library/NAME`, no tag:
//! `latest`).
//!
//! Owns the split only; which host speaks plain HTTP and who we are to it live in
//! [`super::auth`] and [`super::client`].

use std::fmt;

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The registry as named (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// The repository path (`library/busybox`, `team/app`).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `s`; None if it is not a valid reference.
    pub fn parse(s: &str) -> Option<Reference> {
        let s = s.strip_prefix("docker://").unwrap_or(s);
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.to_string())),
            None => (s, None),
        };
        let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_string())),
            None => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, more))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), more.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        };
        if !repository.split('/').all(component_ok) {
            return None;
        }
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return None;
            }
        }
        if let Some(d) = &digest {
            if !crate::image::valid_digest(d) {
                return None;
            }
        }
        Some(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The `host[:port]` the HTTP requests go to (docker.io's API lives elsewhere).
    pub fn api_host(&self) -> &str {
        if self.registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// What `/manifests/` is asked for: the digest, else the tag, else `latest`.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The name an image pulled by this reference gets in the local store.
    pub fn store_name(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Reference {
    /// `HOST/REPO:TAG` (`:latest` when neither tag nor digest is given), `HOST/REPO@DIGEST`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        match (&self.tag, &self.digest) {
            (Some(t), _) => write!(f, ":{t}")?,
            (None, None) => write!(f, ":latest")?,
            (None, Some(_)) => {}
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Reference;

    #[test]
    fn parse() {
        let r = Reference::parse("127.0.0.1:5000/busybox:1").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "busybox");
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert_eq!(r.to_string(), "127.0.0.1:5000/busybox:1");
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r = Reference::parse("docker://localhost/a/b").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("localhost", "a/b")
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("quay.io/x/y@{d}")).unwrap();
        assert_eq!(r.manifest_ref(), d);
        assert!(Reference::parse("Upper/case").is_none());
        assert!(Reference::parse("host:5000/x:bad/tag").is_none());
        assert!(Reference::parse("x@sha256:short").is_none());
    }
}
