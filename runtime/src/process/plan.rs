//! The container process that an init or an exec child turns into: what it
//! runs and the identity and limits it runs with, applied in one order for
//! both (runc's): rlimits, seccomp when it needs privilege, the bounding set,
//! the stdio owner, cwd (before the user switch when only root can reach
//! it), user, capabilities, fd cleanup; then, as late as errors can still be
//! reported, no_new_privs and its seccomp filter; then execve.

use std::ffi::CString;
use std::os::fd::AsFd;
use std::path::PathBuf;

use oci_spec::runtime::Process;

use crate::error::{Error, Result, SysContext};
use crate::linux::{capabilities, rlimits, seccomp, user};
use crate::process::{init, Channel};

/// Everything about the process, computed by the runtime before the clone.
pub struct ProcessPlan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub user: user::User,
    pub caps: capabilities::Sets,
    pub rlimits: Vec<rlimits::Rlimit>,
    pub no_new_privileges: bool,
    pub seccomp: Option<seccomp::SeccompProgram>,
    /// process.consoleSize as (rows, columns).
    pub console_size: Option<(u16, u16)>,
    /// Extra fds (3..3+N) the process keeps.
    pub preserve_fds: i32,
}

/// What execve needs, resolved inside the container before the switch.
pub struct Exec {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

impl ProcessPlan {
    pub fn from_spec(
        p: &Process,
        seccomp: Option<seccomp::SeccompProgram>,
        preserve_fds: i32,
    ) -> Result<Self> {
        Ok(ProcessPlan {
            args: p.args().clone().unwrap_or_default(),
            env: init::dedupe_env(p.env().as_deref().unwrap_or(&[])),
            cwd: p.cwd().clone(),
            user: user::User::from_spec(p.user()),
            caps: capabilities::Sets::from_spec(p.capabilities().as_ref()),
            rlimits: rlimits::from_spec(p.rlimits().as_ref())?,
            no_new_privileges: p.no_new_privileges() == Some(true),
            seccomp,
            console_size: p
                .console_size()
                .as_ref()
                .filter(|b| b.height() > 0 && b.width() > 0)
                .map(|b| {
                    (
                        b.height().min(u16::MAX as u64) as u16,
                        b.width().min(u16::MAX as u64) as u16,
                    )
                }),
            preserve_fds,
        })
    }

    /// Resolves the program (PATH lookup in the container) and HOME, so a
    /// missing program fails while errors still reach the runtime.
    pub fn resolve(&self) -> Result<Exec> {
        let env = init::with_home(&self.env, self.user.uid);
        Ok(Exec {
            program: init::find_program(&self.args[0], &env)?,
            argv: init::cstrings(&self.args)?,
            envp: init::cstrings(&env)?,
        })
    }

    /// Becomes the process: limits, privileged seccomp, user, capabilities,
    /// cwd, and only stdio plus preserved fds left for execve.
    pub fn become_process(&self, sync: &Channel) -> Result<()> {
        rlimits::apply(&self.rlimits)?;
        if !self.no_new_privileges {
            // Without no_new_privs the filter needs CAP_SYS_ADMIN: load it now.
            if let Some(s) = &self.seccomp {
                seccomp::load_and_hand_over(s, sync)?;
            }
        }
        self.caps.drop_bounding()?;
        user::fix_stdio_owner(self.user.uid)?;
        let chdir_later = user::chdir_before_switch(&self.cwd)?;
        self.user.switch()?;
        self.caps.apply()?;
        if chdir_later {
            user::chdir_after_switch(&self.cwd)?;
        }
        init::close_range_cloexec(3 + self.preserve_fds);
        rlimits::check_fd_left(&self.rlimits, sync.as_fd())?;
        Ok(())
    }

    /// no_new_privs and the filter that needs it: as late as errors can
    /// still be reported.
    pub fn seal(&self, sync: &Channel) -> Result<()> {
        if self.no_new_privileges {
            // SAFETY: prctl with integer arguments.
            let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            nix::errno::Errno::result(r).sys("prctl", "PR_SET_NO_NEW_PRIVS")?;
            if let Some(s) = &self.seccomp {
                seccomp::load_and_hand_over(s, sync)?;
            }
        }
        Ok(())
    }

    /// execve; returns only the error.
    pub fn exec(&self, e: &Exec) -> Error {
        let err = nix::unistd::execve(&e.program, &e.argv, &e.envp).unwrap_err();
        Error::sys("exec", self.args[0].as_str(), err)
    }
}
