//! Platforms (`os/arch[/variant]`): `--platform`, `FROM --platform`, and BuildKit's automatic
//! platform ARGs (`TARGETPLATFORM`, `TARGETOS`, `TARGETARCH`, `TARGETVARIANT` and the same
//! with `BUILD`).
//!
//! brig-build runs RUN steps natively, without emulation, so it builds for this host's platform
//! only; another platform is refused up front with the reason, rather than producing an image
//! labelled for an architecture its binaries were not built for.

use super::config::host_arch;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: String,
}

impl Platform {
    /// This host (always linux: the only OS brig runs on).
    pub fn host() -> Platform {
        Platform {
            os: "linux".into(),
            arch: host_arch().into(),
            variant: String::new(),
        }
    }

    /// Parses `os/arch[/variant]` (or `os`, `arch` alone as BuildKit accepts), normalising the
    /// architecture's aliases (x86_64 → amd64, aarch64 → arm64, ...).
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        let bad =
            || format!("invalid platform {s:?}: expected OS/ARCH[/VARIANT], e.g. linux/amd64");
        if parts.iter().any(|p| p.is_empty()) || parts.len() > 3 {
            return Err(bad());
        }
        let (os, arch, variant) = match parts.as_slice() {
            [one] if *one == "linux" => ("linux", host_arch(), ""),
            [one] => ("linux", *one, ""),
            [os, arch] => (*os, *arch, ""),
            [os, arch, variant] => (*os, *arch, *variant),
            _ => return Err(bad()),
        };
        let os = os.to_ascii_lowercase();
        let (arch, variant) = match (arch.to_ascii_lowercase().as_str(), variant) {
            ("x86_64" | "x86-64" | "amd64", v) => ("amd64".to_string(), v.to_string()),
            ("aarch64" | "arm64", "v8") => ("arm64".to_string(), String::new()),
            ("aarch64" | "arm64", v) => ("arm64".to_string(), v.to_string()),
            ("armhf", _) => ("arm".to_string(), "v7".to_string()),
            ("armel", _) => ("arm".to_string(), "v6".to_string()),
            ("arm", "") => ("arm".to_string(), "v7".to_string()),
            ("i386" | "i686" | "x86", v) => ("386".to_string(), v.to_string()),
            (a, v) => (a.to_string(), v.to_string()),
        };
        Ok(Platform { os, arch, variant })
    }

    /// Err with the reason when builds for this platform cannot run here.
    pub fn check_buildable(&self) -> Result<(), String> {
        let host = Platform::host();
        if *self == host || (self.os == host.os && self.arch == host.arch) {
            return Ok(());
        }
        Err(format!(
            "cannot build for {self}: brig-build runs RUN steps natively on this {host} host \
             and has no emulation for other platforms"
        ))
    }

    /// BuildKit's automatic platform ARGs: target and build platform (both this host's).
    pub fn automatic_args(target: &Platform) -> BTreeMap<String, String> {
        let build = Platform::host();
        let mut m = BTreeMap::new();
        for (prefix, p) in [("TARGET", target), ("BUILD", &build)] {
            m.insert(format!("{prefix}PLATFORM"), p.to_string());
            m.insert(format!("{prefix}OS"), p.os.clone());
            m.insert(format!("{prefix}ARCH"), p.arch.clone());
            m.insert(format!("{prefix}VARIANT"), p.variant.clone());
        }
        m
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// The entry of a multi-platform index for this host (linux and our architecture).
pub fn host_manifest(idx: &oci_spec::image::ImageIndex) -> Option<&oci_spec::image::Descriptor> {
    idx.manifests().iter().find(|m| {
        m.platform()
            .as_ref()
            .map(|p| p.os().to_string() == "linux" && p.architecture().to_string() == host_arch())
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let p = Platform::parse("linux/x86_64").unwrap();
        assert_eq!(p.to_string(), "linux/amd64");
        assert_eq!(
            Platform::parse("linux/aarch64/v8").unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            Platform::parse("linux/arm").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(Platform::parse("arm64").unwrap().to_string(), "linux/arm64");
        assert!(Platform::parse("linux//amd64").is_err());
        assert!(Platform::parse("a/b/c/d").is_err());
        assert!(Platform::parse("").is_err());
    }

    #[test]
    fn only_the_host_is_buildable() {
        assert!(Platform::host().check_buildable().is_ok());
        let other = if host_arch() == "arm64" {
            "linux/amd64"
        } else {
            "linux/arm64"
        };
        let e = Platform::parse(other)
            .unwrap()
            .check_buildable()
            .unwrap_err();
        assert!(e.contains("no emulation"), "{e}");
        assert!(Platform::parse("windows/amd64")
            .unwrap()
            .check_buildable()
            .is_err());
    }

    #[test]
    fn automatic_args_name_target_and_build() {
        let m = Platform::automatic_args(&Platform::host());
        assert_eq!(m["TARGETOS"], "linux");
        assert_eq!(m["BUILDARCH"], host_arch());
        assert_eq!(m["TARGETPLATFORM"], format!("linux/{}", host_arch()));
        assert_eq!(m["TARGETVARIANT"], "");
    }
}
