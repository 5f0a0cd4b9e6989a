//! `containerd-shim-brig-v2`: the containerd shim v2 that supervises the
//! containers of one group and drives brig (or runc, or crun: any binary
//! with runc's command line, chosen by the `BinaryName` runtime option).
//!
//! * [`shim`] — the shim protocol: `start`/`delete` subcommands, the daemon.
//! * [`service`] — the Task service (Create, Start, Exec, Kill, ...) and its
//!   events; [`process`] — one supervised process; [`publisher`] — the
//!   events' way to containerd, across containerd restarts.
//! * [`runtime`] — the runtime binary's command line and its errors.
//! * [`io`] — stdio FIFOs, log files and terminals; [`logger`] — the
//!   `binary://` logging programs.
//! * [`reaper`] — exit statuses of every child (the shim is a subreaper).
//! * [`stats`] — runtime stats JSON to containerd's cgroup metrics.
//! * [`options`] — runc's shim options.
//! * [`mount`] — the rootfs mounts containerd passes.
//! * [`oom`] — OOM notifications of the containers' memory cgroups.

pub mod cgroup;
pub mod error;
pub mod io;
pub mod logger;
pub mod mount;
pub mod oom;
pub mod options;
pub mod process;
pub mod publisher;
pub mod reaper;
pub mod runtime;
pub mod service;
pub mod shim;
pub mod stats;
pub mod stats_v2;

/// Locks `m`, also after a holder panicked: every shim lock guards data
/// that stays consistent between statements, and one failed request must
/// not stop the shim serving the others.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the shim (all of `main`): exits 1 with the error on stderr.
pub fn run() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = shim::main(&args) {
        eprintln!("{}: {e}", shim::RUNTIME_ID);
        std::process::exit(1);
    }
}

/// Writes an executable script for a unit test from a child process (`sh -c 'cat > F'`), so
/// that no thread of the test process ever has it open for writing: a fork by another test
/// thread at that moment would hold the write descriptor until its exec, and executing the
/// script then fails with ETXTBSY.
#[cfg(test)]
#[allow(clippy::zombie_processes)]
pub(crate) fn write_test_script(path: &std::path::Path, text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", "cat > \"$0\" && chmod 755 \"$0\""])
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sh");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the script");
    // The shim's reaper owns every child of this process once any test has started it (it
    // waits for any pid), so the script's writer is waited for through it, never Child::wait.
    let code = crate::reaper::reaper().wait(child.id() as i32);
    assert_eq!(code, 0, "writing {}", path.display());
    drop(child);
}
