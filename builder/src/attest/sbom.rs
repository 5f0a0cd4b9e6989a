//! The SBOM: an SPDX 2.3 JSON document of what the image holds, read from the image itself:
//! the packages in dpkg's database (`/var/lib/dpkg/status`, installed ones only) and apk's
//! (`/lib/apk/db/installed`), each with its package URL (`pkg:deb/...`, `pkg:apk/...`, the
//! distribution from `/etc/os-release`), plus the base images the build used. BuildKit runs a
//! scanner image (Syft) for this; brig-build reads the package databases directly, which covers
//! what Debian-, Ubuntu- and Alpine-based images hold (not language packages).

use super::{docker_purl, rootfs, BuildInfo};
use crate::image::store::{Image, Store};
use crate::image::{hex_of, rfc3339, unpacked};
use serde_json::{json, Value};

pub const PREDICATE_TYPE: &str = "https://spdx.dev/Document";

/// An installed OS package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// `deb` or `apk`.
    pub kind: &'static str,
    pub name: String,
    pub version: String,
    pub arch: String,
    pub source: Option<String>,
    pub supplier: Option<String>,
    pub license: Option<String>,
    pub homepage: Option<String>,
}

/// The installed packages of dpkg's status file.
pub fn dpkg_packages(status: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for para in status.split("\n\n") {
        let field = |name: &str| -> Option<String> {
            para.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let (Some(name), Some(status)) = (field("Package"), field("Status")) else {
            continue;
        };
        if !status.ends_with(" installed") {
            continue;
        }
        out.push(Package {
            kind: "deb",
            name,
            version: field("Version").unwrap_or_default(),
            arch: field("Architecture").unwrap_or_default(),
            // "Source: name (version)" when the source version differs.
            source: field("Source").map(|s| s.split(' ').next().unwrap_or("").to_string()),
            supplier: field("Maintainer"),
            license: None,
            homepage: field("Homepage"),
        });
    }
    out
}

/// The packages of apk's installed database.
pub fn apk_packages(db: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for para in db.split("\n\n") {
        let field = |k: char| -> Option<String> {
            para.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let Some(name) = field('P') else { continue };
        out.push(Package {
            kind: "apk",
            name,
            version: field('V').unwrap_or_default(),
            arch: field('A').unwrap_or_default(),
            source: field('o'),
            supplier: field('m'),
            license: field('L'),
            homepage: field('U'),
        });
    }
    out
}

/// `ID` and `VERSION_ID` of an os-release file, as a purl `distro` (`debian-12`).
fn distro(os_release: &str) -> Option<(String, String)> {
    let get = |k: &str| {
        os_release.lines().find_map(|l| {
            let v = l.strip_prefix(k)?.strip_prefix('=')?;
            Some(v.trim().trim_matches('"').to_string())
        })
    };
    let id = get("ID")?;
    let distro = match get("VERSION_ID") {
        Some(v) => format!("{id}-{v}"),
        None => id.clone(),
    };
    Some((id, distro))
}

/// A package URL, its parts percent-encoded where purl wants them to be.
fn purl(p: &Package, namespace: &str, distro: Option<&str>) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let mut q = vec![format!("arch={}", enc(&p.arch))];
    if let Some(d) = distro {
        q.push(format!("distro={}", enc(d)));
    }
    if let Some(s) = &p.source {
        if s != &p.name {
            q.push(format!("upstream={}", enc(s)));
        }
    }
    format!(
        "pkg:{}/{}/{}@{}?{}",
        p.kind,
        enc(namespace),
        enc(&p.name),
        enc(&p.version),
        q.join("&")
    )
}

/// The SPDX document for `img`.
pub fn document(store: &Store, img: &Image, info: &BuildInfo) -> Result<Value, String> {
    let layers = unpacked::layer_dirs(store, img).map_err(|e| e.to_string())?;
    let read = |p: &str| -> Result<Option<String>, String> {
        Ok(rootfs::read(&layers, p)
            .map_err(|e| format!("SBOM: /{p}: {e}"))?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    };
    let os = read("etc/os-release")?.or(read("usr/lib/os-release")?);
    let (ns, distro) = match os.as_deref().and_then(distro) {
        Some((id, d)) => (id, Some(d)),
        None => (String::new(), None),
    };
    let mut pkgs = Vec::new();
    if let Some(s) = read("var/lib/dpkg/status")? {
        pkgs.extend(dpkg_packages(&s));
    }
    if let Some(s) = read("lib/apk/db/installed")? {
        pkgs.extend(apk_packages(&s));
    }
    let platform = super::platform_of(img);
    let image_name = info.name.clone().unwrap_or_else(|| "image".into());
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-Image",
        "name": image_name,
        "versionInfo": img.manifest_digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": docker_purl(&image_name, &platform),
        }],
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    for (i, m) in info.materials.iter().enumerate() {
        let id = format!("SPDXRef-BaseImage-{i}");
        packages.push(json!({
            "SPDXID": id,
            "name": m.reference,
            "versionInfo": m.digest,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "primaryPackagePurpose": "CONTAINER",
            "checksums": [{"algorithm": "SHA256", "checksumValue": hex_of(&m.digest)}],
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": format!("{}&digest=sha256%3A{}", docker_purl(&m.reference, &platform), hex_of(&m.digest)),
            }],
        }));
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "DESCENDANT_OF",
            "relatedSpdxElement": id,
        }));
    }
    for (i, p) in pkgs.iter().enumerate() {
        let id = format!("SPDXRef-Package-{}-{i}", p.kind);
        let mut v = json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "downloadLocation": p.homepage.clone().unwrap_or_else(|| "NOASSERTION".into()),
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "primaryPackagePurpose": "OPERATING-SYSTEM",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl(p, &ns, distro.as_deref()),
            }],
        });
        if p.kind != "deb" {
            v["primaryPackagePurpose"] = json!("LIBRARY");
        }
        if let Some(s) = &p.supplier {
            v["supplier"] = json!(format!("Person: {s}"));
        }
        if let Some(l) = &p.license {
            v["licenseDeclared"] = json!(spdx_license(l));
        }
        packages.push(v);
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let created = rfc3339(info.source_date_epoch.unwrap_or(info.finished));
    Ok(json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("sbom-{image_name}"),
        "documentNamespace": format!("https://spdx.org/spdxdocs/brig-build-{}", hex_of(&img.manifest_digest)),
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: brig-build-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    }))
}

/// apk's license field as an SPDX expression: its space-separated list means AND; anything
/// that is not a plain identifier list is left as NOASSERTION rather than guessed.
fn spdx_license(l: &str) -> String {
    let ids: Vec<&str> = l.split_whitespace().collect();
    if ids.iter().all(|i| {
        i.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.+".contains(&b))
    }) && !ids.is_empty()
    {
        ids.join(" AND ")
    } else {
        "NOASSERTION".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_dpkg_packages_only() {
        let status = "Package: jq\nStatus: install ok installed\nVersion: 1.6-2.1\nArchitecture: amd64\nMaintainer: A <a@b>\nSource: jq (1.6-2)\nDescription: x\n more\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: libc6\nStatus: install ok installed\nVersion: 2.36-9\nArchitecture: amd64\n";
        let p = dpkg_packages(status);
        assert_eq!(
            p.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["jq", "libc6"]
        );
        assert_eq!(p[0].source.as_deref(), Some("jq"));
        assert_eq!(
            purl(&p[0], "debian", Some("debian-12")),
            "pkg:deb/debian/jq@1.6-2.1?arch=amd64&distro=debian-12"
        );
    }

    #[test]
    fn apk_packages_and_licenses() {
        let db = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\no:musl\nm:N <n@a>\n\nP:busybox\nV:1.36\nA:x86_64\nL:GPL-2.0-only\n";
        let p = apk_packages(db);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].version, "1.2.4-r2");
        assert_eq!(spdx_license("MIT BSD-3-Clause"), "MIT AND BSD-3-Clause");
        assert_eq!(spdx_license("GPL-2.0 (custom)"), "NOASSERTION");
        assert_eq!(
            purl(&p[1], "alpine", Some("alpine-3.19")),
            "pkg:apk/alpine/busybox@1.36?arch=x86_64&distro=alpine-3.19"
        );
    }

    #[test]
    fn distro_from_os_release() {
        let d = distro("PRETTY_NAME=\"Debian GNU/Linux 12\"\nID=debian\nVERSION_ID=\"12\"\n");
        assert_eq!(d, Some(("debian".into(), "debian-12".into())));
    }
}
