//! OCI hooks: prestart, createRuntime, createContainer, startContainer,
//! poststart, poststop. Each gets the container state JSON on stdin, runs
//! with its own args and env, and is killed after its timeout.
//!
//! prestart, createRuntime, poststart and poststop run in the runtime's
//! namespaces (the brig process); createContainer and startContainer run in
//! the container init, so they see the container's namespaces.

use std::io::{Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

/// Runs `hooks` of `kind` in order; the first failure stops and is returned.
pub fn run_all(kind: &str, hooks: &[Hook], state: &str) -> Result<()> {
    for (i, h) in hooks.iter().enumerate() {
        run(h, state).map_err(|e| {
            Error::msg(format!(
                "error running hook #{i} ({kind}, {}): {e}",
                h.path().display()
            ))
        })?;
    }
    Ok(())
}

fn capture_file() -> std::io::Result<std::fs::File> {
    let fd = nix::sys::memfd::memfd_create("brig-hook", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(std::io::Error::from)?;
    Ok(std::fs::File::from(fd))
}

fn run(h: &Hook, state: &str) -> std::result::Result<(), String> {
    let mut cmd = Command::new(h.path());
    if let Some(args) = h.args() {
        if let Some((argv0, rest)) = args.split_first() {
            cmd.arg0(argv0);
            cmd.args(rest);
        }
    }
    if let Some(env) = h.env() {
        cmd.env_clear();
        for kv in env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    let mut out = capture_file().map_err(|e| e.to_string())?;
    let mut err = capture_file().map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::piped())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(err.try_clone().map_err(|e| e.to_string())?);
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine (EPIPE).
        let _ = stdin.write_all(state.as_bytes());
    }
    let timeout = h.timeout().map(|t| Duration::from_secs(t.max(0) as u64));
    let start = Instant::now();
    let mut nap = Duration::from_micros(200);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        if let Some(t) = timeout {
            if start.elapsed() >= t {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "hook ran past specified timeout of {}s",
                    t.as_secs()
                ));
            }
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(10));
    };
    if status.success() {
        return Ok(());
    }
    let read = |f: &mut std::fs::File| {
        let mut s = String::new();
        let _ = f.rewind();
        let _ = f.read_to_string(&mut s);
        s.trim_end().to_string()
    };
    let (o, e) = (read(&mut out), read(&mut err));
    Err(format!("{}, stdout: {o}, stderr: {e}", describe(status)))
}

/// "exit status: N", or "signal: bad system call" for a hook killed by a
/// signal (the wording runc's callers match on).
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(sig) => {
            // SAFETY: strsignal returns a pointer to a static string.
            let name = unsafe { std::ffi::CStr::from_ptr(libc::strsignal(sig)) };
            format!("signal: {}", name.to_string_lossy().to_lowercase())
        }
        None => status.to_string(),
    }
}

/// The state JSON a hook receives.
pub fn state_json(
    id: &str,
    status: &str,
    pid: i32,
    bundle: &std::path::Path,
    annotations: &std::collections::BTreeMap<String, String>,
) -> String {
    serde_json::json!({
        "ociVersion": crate::OCI_VERSION,
        "id": id,
        "status": status,
        "pid": pid,
        "bundle": bundle,
        "annotations": annotations,
    })
    .to_string()
}
