//! Child reaping. The shim is a subreaper: the container's init and exec
//! processes (re-parented to it when the runtime command that forked them
//! exits) and the runtime commands themselves all report to it.
//!
//! One thread waits for every child on SIGCHLD and files each exit status
//! here. The caller that ran a runtime command takes its status with
//! [`Reaper::wait`]; a container process's exit goes to the callback given
//! to [`Reaper::watch`], even when the process exited before the shim knew
//! its pid (exits nobody claimed are kept for a while).
//!
//! Must never: wait for a specific pid anywhere else (`std`'s `Child::wait`
//! included), or the two waiters race for one status. Callbacks run on the
//! reaper thread: they must not block (hand the exit to another thread).

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use signal_hook::consts::SIGCHLD;
use signal_hook::iterator::Signals;

/// Called with the exit status (`128 + signal` for a killed process).
pub type OnExit = Box<dyn FnOnce(i32) + Send>;

/// How long an exit that nobody waits for is kept (orphans of the
/// container that were re-parented to the shim never get claimed).
const KEEP_UNCLAIMED: Duration = Duration::from_secs(300);

#[derive(Default)]
struct State {
    exits: HashMap<i32, (i32, Instant)>,
    watched: HashMap<i32, OnExit>,
}

pub struct Reaper {
    state: Mutex<State>,
    exited: Condvar,
}

static REAPER: OnceLock<Reaper> = OnceLock::new();

/// The process's reaper; its thread starts on first use.
pub fn reaper() -> &'static Reaper {
    REAPER.get_or_init(|| {
        let mut signals = Signals::new([SIGCHLD]).expect("SIGCHLD handler can be installed");
        std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || loop {
                reap_all();
                // A child may have exited before the handler was installed.
                for _ in signals.wait() {}
            })
            .expect("reaper thread can be spawned");
        Reaper {
            state: Mutex::new(State::default()),
            exited: Condvar::new(),
        }
    })
}

fn reap_all() {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => reaper().record(pid.as_raw(), code),
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                reaper().record(pid.as_raw(), 128 + sig as i32)
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => {
                log::warn!("waitpid: {e}");
                return;
            }
        }
    }
}

impl Reaper {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, pid: i32, code: i32) {
        let mut st = self.lock();
        if let Some(cb) = st.watched.remove(&pid) {
            drop(st);
            cb(code);
            return;
        }
        st.exits.retain(|_, (_, at)| at.elapsed() < KEEP_UNCLAIMED);
        st.exits.insert(pid, (code, Instant::now()));
        self.exited.notify_all();
    }

    /// Blocks until child `pid` has exited and returns its status.
    pub fn wait(&self, pid: i32) -> i32 {
        let mut st = self.lock();
        loop {
            if let Some((code, _)) = st.exits.remove(&pid) {
                return code;
            }
            st = self.exited.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Calls `cb` once `pid` exits (at once if it already has).
    pub fn watch(&self, pid: i32, cb: OnExit) {
        let mut st = self.lock();
        if let Some((code, _)) = st.exits.remove(&pid) {
            drop(st);
            cb(code);
        } else {
            st.watched.insert(pid, cb);
        }
    }
}

#[cfg(test)]
// The reaper, not Child::wait, collects these children.
#[allow(clippy::zombie_processes)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::sync::mpsc;

    #[test]
    fn wait_and_watch_get_the_status() {
        let r = reaper();
        let child = Command::new("sh").args(["-c", "exit 7"]).spawn().unwrap();
        assert_eq!(r.wait(child.id() as i32), 7);

        let child = Command::new("sh")
            .args(["-c", "kill -9 $$"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let (tx, rx) = mpsc::channel();
        r.watch(
            child.id() as i32,
            Box::new(move |code| tx.send(code).unwrap()),
        );
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 128 + 9);
    }
}
