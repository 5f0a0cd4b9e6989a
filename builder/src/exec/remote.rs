//! ADD of remote sources: an HTTP(S) URL (downloaded as one file, never extracted) or a git
//! repository (`git://`, `ssh://`, `git@host:repo`, or an http(s)/file URL ending in `.git`,
//! with `#REF[:SUBDIR]`), cloned at depth 1.
//!
//! Owns the fetch into a private staging directory of the step; the copy from there is
//! [`super::copy`]'s. Git is driven through the `git` command, as BuildKit does: a git client is
//! not something to re-implement, and the command honours the user's git and SSH configuration.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A remote ADD source.
#[derive(Debug, Clone, PartialEq)]
pub enum Remote {
    Http(String),
    Git {
        url: String,
        reference: Option<String>,
        subdir: Option<String>,
    },
}

/// Classifies an ADD source; None for a local path.
pub fn classify(src: &str) -> Option<Remote> {
    let (base, frag) = match src.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (src, None),
    };
    let is_git = base.starts_with("git://")
        || base.starts_with("ssh://")
        || base.starts_with("git@")
        || ((base.starts_with("http://")
            || base.starts_with("https://")
            || base.starts_with("file://"))
            && base.trim_end_matches('/').ends_with(".git"));
    if is_git {
        let (reference, subdir) = match frag {
            None => (None, None),
            Some(f) => match f.split_once(':') {
                Some((r, d)) => (
                    Some(r.to_string()).filter(|r| !r.is_empty()),
                    Some(d.to_string()),
                ),
                None => (Some(f.to_string()).filter(|r| !r.is_empty()), None),
            },
        };
        return Some(Remote::Git {
            url: base.to_string(),
            reference,
            subdir,
        });
    }
    (src.starts_with("http://") || src.starts_with("https://")).then(|| Remote::Http(src.into()))
}

/// Fetches `r` into `dir` (which must not exist); returns the name of the fetched entry in
/// `dir` (a file for HTTP, a directory for git).
pub fn fetch(r: &Remote, dir: &Path, keep_git_dir: bool) -> Result<String, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    match r {
        Remote::Http(url) => {
            let name = url
                .split(['?', '#'])
                .next()
                .and_then(|u| u.rsplit('/').next())
                .filter(|n| !n.is_empty() && *n != "." && *n != "..")
                .unwrap_or("download")
                .to_string();
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_connect(Some(Duration::from_secs(30)))
                .user_agent(concat!("brig-build/", env!("CARGO_PKG_VERSION")))
                .build()
                .into();
            let resp = agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
            let mut body = resp.into_body().into_reader();
            let path = dir.join(&name);
            let mut f = std::fs::File::create(&path).map_err(|e| e.to_string())?;
            std::io::copy(&mut body, &mut f).map_err(|e| format!("{url}: {e}"))?;
            Ok(name)
        }
        Remote::Git {
            url,
            reference,
            subdir,
        } => {
            let checkout = dir.join("repo");
            let mut cmd = Command::new("git");
            cmd.args(["clone", "--quiet", "--depth", "1", "--recurse-submodules"]);
            if let Some(r) = reference {
                cmd.args(["--branch", r]);
            }
            let out = cmd
                .arg("--")
                .arg(url)
                .arg(&checkout)
                .env("GIT_TERMINAL_PROMPT", "0")
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("git: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "git clone {url}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            if !keep_git_dir {
                std::fs::remove_dir_all(checkout.join(".git")).map_err(|e| e.to_string())?;
            }
            match subdir {
                None => Ok("repo".into()),
                Some(d) => {
                    let p: PathBuf = Path::new("repo").join(crate::fsroot::inner(Path::new(d)));
                    if !dir.join(&p).is_dir() {
                        return Err(format!("{url}: no directory {d:?} in the repository"));
                    }
                    Ok(p.to_string_lossy().into_owned())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(
            classify("https://h/f.tgz"),
            Some(Remote::Http("https://h/f.tgz".into()))
        );
        assert_eq!(
            classify("git://127.0.0.1/r.git#v1:sub"),
            Some(Remote::Git {
                url: "git://127.0.0.1/r.git".into(),
                reference: Some("v1".into()),
                subdir: Some("sub".into())
            })
        );
        assert!(matches!(
            classify("https://h/r.git"),
            Some(Remote::Git { .. })
        ));
        assert_eq!(classify("local/file"), None);
        assert_eq!(classify("file:///x/y"), None);
    }
}
