//! Records the git commit brig is built from, for `brig --version`'s
//! `commit:` line (runc prints one; `docker info` shows it). Outside a git
//! checkout the line is left out.
use std::process::Command;

fn main() {
    // A commit or checkout moves HEAD or the branch it points at; the index
    // is left out so that staging files does not rebuild brig.
    // A path that does not exist would make cargo rerun this every build.
    for f in ["../.git/HEAD", "../.git/refs/heads", "../.git/packed-refs"] {
        if std::path::Path::new(f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
    let commit = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    println!("cargo:rustc-env=BRIG_COMMIT={commit}");
}
