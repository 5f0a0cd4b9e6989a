//! Platforms (`os/arch[/variant]`): `--platform`, `FROM --platform`, and BuildKit's automatic
//! platform ARGs (`TARGETPLATFORM`, `TARGETOS`, `TARGETARCH`, `TARGETVARIANT` and the same
//! with `BUILD`).
//!
//! RUN steps for this host's platform run natively, those for another one under qemu-user
//! (`crate::emulate`, which decides what a host can build for).

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

    /// BuildKit's automatic platform ARGs: the target platform and the build's (this host's).
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

    /// True when an image of `os/arch/variant` serves this platform: same OS and architecture,
    /// and the variant asked for (none asked: any; arm64's `v8` is its default).
    pub fn matches(&self, os: &str, arch: &str, variant: &str) -> bool {
        let norm = |a: &str, v: &str| match (a, v) {
            ("arm64", "v8") => String::new(),
            (_, v) => v.to_string(),
        };
        os == self.os
            && arch == self.arch
            && (self.variant.is_empty() || norm(arch, variant) == norm(&self.arch, &self.variant))
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

/// The entry of a multi-platform index for `p` (an exact variant first, else the first that
/// [`Platform::matches`]).
pub fn platform_manifest<'a>(
    idx: &'a oci_spec::image::ImageIndex,
    p: &Platform,
) -> Option<&'a oci_spec::image::Descriptor> {
    let of = |m: &oci_spec::image::Descriptor| {
        m.platform().as_ref().map(|q| {
            (
                q.os().to_string(),
                q.architecture().to_string(),
                q.variant().clone().unwrap_or_default(),
            )
        })
    };
    let ms = idx.manifests();
    ms.iter()
        .find(|m| of(m).is_some_and(|(o, a, v)| p.matches(&o, &a, &v) && v == p.variant))
        .or_else(|| {
            ms.iter()
                .find(|m| of(m).is_some_and(|(o, a, v)| p.matches(&o, &a, &v)))
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
    fn index_entries_by_platform() {
        let idx: oci_spec::image::ImageIndex = serde_json::from_str(
            r#"{"schemaVersion":2,"manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,
             "digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
             "platform":{"os":"linux","architecture":"amd64"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,
             "digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
             "platform":{"os":"linux","architecture":"arm","variant":"v6"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,
             "digest":"sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
             "platform":{"os":"linux","architecture":"arm","variant":"v7"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,
             "digest":"sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
             "platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}"#,
        )
        .unwrap();
        let pick = |p: &str| {
            platform_manifest(&idx, &Platform::parse(p).unwrap())
                .map(|d| d.digest().to_string()[7..8].to_string())
        };
        assert_eq!(pick("linux/amd64").as_deref(), Some("a"));
        assert_eq!(pick("linux/arm/v7").as_deref(), Some("c"));
        assert_eq!(pick("linux/arm/v6").as_deref(), Some("b"));
        assert_eq!(pick("linux/arm64").as_deref(), Some("d"));
        assert_eq!(pick("linux/s390x"), None);
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
