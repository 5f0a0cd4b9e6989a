//! One process the shim supervises: a container's init or an exec. Owns its
//! status, pid and exit status, and its stdio; waiters block on it until
//! the reaper reports the exit.
//!
//! `lifecycle` is held by whatever changes the process's life (Start, the
//! exit handler) so that TaskStart / TaskExecStarted always reach
//! containerd before the TaskExit of the same process.

use std::sync::{Condvar, Mutex, MutexGuard};

use containerd_shim_protos::api::Status;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;

use crate::io::{ProcessIo, StdioPaths};
use crate::lock;

#[derive(Debug, Clone)]
pub struct ProcState {
    pub status: Status,
    pub pid: u32,
    pub exit_status: u32,
    pub exited_at: Option<Timestamp>,
}

pub struct Process {
    /// Empty for the init process.
    pub exec_id: String,
    pub stdio: StdioPaths,
    /// The exec's process JSON (OCI `process`), as containerd sent it.
    pub spec: Vec<u8>,
    state: Mutex<ProcState>,
    exited: Condvar,
    pub lifecycle: Mutex<()>,
    pub io: Mutex<Option<ProcessIo>>,
}

impl Process {
    pub fn new(exec_id: &str, stdio: StdioPaths, spec: Vec<u8>) -> Process {
        Process {
            exec_id: exec_id.to_string(),
            stdio,
            spec,
            state: Mutex::new(ProcState {
                status: Status::CREATED,
                pid: 0,
                exit_status: 0,
                exited_at: None,
            }),
            exited: Condvar::new(),
            lifecycle: Mutex::new(()),
            io: Mutex::new(None),
        }
    }

    pub fn state(&self) -> ProcState {
        lock(&self.state).clone()
    }

    pub fn pid(&self) -> u32 {
        lock(&self.state).pid
    }

    pub fn set_pid(&self, pid: u32) {
        lock(&self.state).pid = pid;
    }

    /// Sets the status unless the process already stopped.
    pub fn set_status(&self, status: Status) {
        let mut st = lock(&self.state);
        if st.status != Status::STOPPED {
            st.status = status;
        }
    }

    pub fn set_exited(&self, code: u32) -> Timestamp {
        let mut st = lock(&self.state);
        let at = Timestamp::now();
        st.status = Status::STOPPED;
        st.exit_status = code;
        st.exited_at = Some(at.clone());
        self.exited.notify_all();
        at
    }

    /// Blocks until the process has exited.
    pub fn wait(&self) -> ProcState {
        let mut st = lock(&self.state);
        while st.status != Status::STOPPED {
            st = self.exited.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.clone()
    }

    pub fn set_io(&self, io: ProcessIo) {
        *lock(&self.io) = Some(io);
    }

    pub fn with_io<T>(&self, f: impl FnOnce(&ProcessIo) -> T) -> Option<T> {
        lock(&self.io).as_ref().map(f)
    }

    pub fn lifecycle(&self) -> MutexGuard<'_, ()> {
        lock(&self.lifecycle)
    }
}
