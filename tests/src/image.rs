//! A busybox image as an OCI archive, for `ctr image import`.

use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bundle::busybox_rootfs;

/// sha256 of a file, hex (by `sha256sum`, which coreutils always has).
fn sha256_file(p: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum prints a digest")
        .to_string()
}

/// Writes an OCI image archive (a tar of an OCI layout) of a busybox rootfs whose index names
/// it `name` (`io.containerd.image.name`), as `ctr image import` reads it. Returns its path.
pub fn busybox_oci_archive(dir: &Path, name: &str) -> PathBuf {
    layered_busybox_oci_archive(dir, name, 0)
}

/// [`busybox_oci_archive`] whose config's command is `cmd` (instead of `sh`).
pub fn busybox_oci_archive_with_cmd(dir: &Path, name: &str, cmd: &[&str]) -> PathBuf {
    oci_archive(dir, name, 0, cmd)
}

/// [`busybox_oci_archive`] with `extra` layers on top of the busybox one, layer N (1-based)
/// adding the file `/layers/N` that holds `N`.
pub fn layered_busybox_oci_archive(dir: &Path, name: &str, extra: usize) -> PathBuf {
    oci_archive(dir, name, extra, &["sh"])
}

fn oci_archive(dir: &Path, name: &str, extra: usize, cmd: &[&str]) -> PathBuf {
    let rootfs = dir.join("image-rootfs");
    busybox_rootfs(&rootfs);
    let layout = dir.join("image-layout");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let add_blob = |path: &Path| -> (String, u64) {
        let digest = sha256_file(path);
        let size = fs::metadata(path).unwrap().len();
        fs::rename(path, blobs.join(&digest)).unwrap();
        (digest, size)
    };
    let layer = dir.join("layer.tar");
    let st = Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(&rootfs)
        .arg("-cf")
        .arg(&layer)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success(), "tar of the busybox rootfs failed");
    let mut layers = vec![add_blob(&layer)];
    for n in 1..=extra {
        let tree = dir.join(format!("layer-{n}"));
        fs::create_dir_all(tree.join("layers")).unwrap();
        fs::write(tree.join(format!("layers/{n}")), n.to_string()).unwrap();
        let tar = dir.join(format!("layer-{n}.tar"));
        let st = Command::new("tar")
            .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
            .arg(&tree)
            .arg("-cf")
            .arg(&tar)
            .arg("layers")
            .status()
            .expect("tar");
        assert!(st.success(), "tar of layer {n} failed");
        layers.push(add_blob(&tar));
    }
    let config = dir.join("config.json");
    let diff_ids: Vec<String> = layers.iter().map(|(d, _)| format!("sha256:{d}")).collect();
    let config_json = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": cmd},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    fs::write(&config, config_json.to_string()).unwrap();
    let (config_digest, config_size) = add_blob(&config);
    let manifest = dir.join("manifest.json");
    let manifest_json = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{config_digest}"), "size": config_size},
        "layers": layers.iter().map(|(d, size)| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{d}"), "size": size,
        })).collect::<Vec<_>>(),
    });
    fs::write(&manifest, manifest_json.to_string()).unwrap();
    let (manifest_digest, manifest_size) = add_blob(&manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": format!("sha256:{manifest_digest}"), "size": manifest_size,
                       "annotations": {"io.containerd.image.name": name,
                                       "org.opencontainers.image.ref.name": "latest"}}],
    });
    fs::write(layout.join("index.json"), index.to_string()).unwrap();
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let archive = dir.join("busybox-oci.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success(), "tar of the OCI layout failed");
    archive
}
