//! The container process that an init or an exec child turns into: what it
//! runs and the identity and limits it runs with, applied in one order for
//! both (runc's): the AppArmor profile and SELinux label for execve, rlimits, seccomp when it needs privilege, the bounding set,
//! the stdio owner, cwd (before the user switch when only root can reach
//! it), user, capabilities, fd cleanup; then, as late as errors can still be
//! reported, no_new_privs and its seccomp filter; then execve.

use std::ffi::CString;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Process;

use crate::error::{Error, Result, SysContext};
use crate::linux::{capabilities, lsm, rlimits, seccomp, user};
use crate::process::Channel;

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
    /// The AppArmor profile and SELinux label execve gives the process.
    pub labels: lsm::Labels,
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
            env: dedupe_env(p.env().as_deref().unwrap_or(&[])),
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
            labels: lsm::Labels::from_spec(p),
        })
    }

    /// Resolves the program (PATH lookup in the container) and HOME, so a
    /// missing program fails while errors still reach the runtime.
    pub fn resolve(&self) -> Result<Exec> {
        let env = with_home(&self.env, self.user.uid);
        Ok(Exec {
            program: find_program(&self.args[0], &env)?,
            argv: cstrings(&self.args)?,
            envp: cstrings(&env)?,
        })
    }

    /// Becomes the process: limits, privileged seccomp, user, capabilities,
    /// cwd, and only stdio plus preserved fds left for execve.
    pub fn become_process(&self, sync: &Channel) -> Result<()> {
        // While we still own our /proc files (the user switch below ends that), and after
        // everything the profile could forbid: it takes effect at execve.
        self.labels.apply()?;
        rlimits::apply(&self.rlimits)?;
        if !self.no_new_privileges {
            // Without no_new_privs the filter needs CAP_SYS_ADMIN: load it now.
            if let Some(s) = &self.seccomp {
                load_seccomp_and_hand_over(s, sync)?;
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
        close_range_cloexec(3 + self.preserve_fds);
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
                load_seccomp_and_hand_over(s, sync)?;
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

pub(crate) fn close_range_cloexec(from: i32) {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            from as u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
}

pub(crate) fn cstrings(v: &[String]) -> Result<Vec<CString>> {
    v.iter()
        .map(|s| CString::new(s.as_str()).map_err(|_| Error::msg(format!("{s:?}: contains NUL"))))
        .collect()
}

/// Environment with duplicates removed: the last value of a name wins, at
/// the place of its first occurrence (what runc's os.Setenv loop yields).
pub(crate) fn dedupe_env(env: &[String]) -> Vec<String> {
    // One map lookup per entry: linear in the size of the environment (a scan of the output
    // for each entry took 158 s for 100k entries).
    let mut out: Vec<String> = Vec::with_capacity(env.len());
    let mut at: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(env.len());
    for e in env {
        let name = e.split_once('=').map_or(e.as_str(), |(n, _)| n);
        match at.get(name) {
            Some(&i) => out[i] = e.clone(),
            None => {
                at.insert(name, out.len());
                out.push(e.clone());
            }
        }
    }
    out
}

/// Adds HOME from the container's /etc/passwd (or "/") if env lacks it, as runc does.
pub(crate) fn with_home(env: &[String], uid: u32) -> Vec<String> {
    if env.iter().any(|e| e.starts_with("HOME=")) {
        return env.to_vec();
    }
    let home =
        crate::linux::user::passwd_field("/etc/passwd", uid, 5).unwrap_or_else(|| "/".to_string());
    let mut env = env.to_vec();
    env.push(format!("HOME={home}"));
    env
}

/// Resolves argv[0] in the container like execvp, so a missing program
/// fails `create` rather than `start`.
pub(crate) fn find_program(arg0: &str, env: &[String]) -> Result<CString> {
    let named = || crate::error::abbreviate(format!("{arg0:?}"), 256);
    let exists = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.is_file() && m.permissions().mode() & 0o111 != 0
        })
    };
    if arg0.contains('/') {
        if !Path::new(arg0).exists() {
            return Err(Error::msg(format!(
                "exec: {}: stat {}: no such file or directory",
                named(),
                crate::error::abbreviate(arg0.to_string(), 256)
            )));
        }
        return CString::new(arg0).map_err(|_| Error::msg("process.args[0] contains NUL"));
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let cand = Path::new(dir).join(arg0);
        if exists(&cand) {
            return CString::new(cand.into_os_string().into_encoded_bytes())
                .map_err(|_| Error::msg("path contains NUL"));
        }
    }
    Err(Error::msg(format!(
        "exec: {}: executable file not found in $PATH",
        named()
    )))
}

/// In the container process: loads the filter and, when it has a listener,
/// passes the listener to the parent over `sync`, which gives it to the
/// agent ([`seccomp::send_to_agent`]); our copy is closed once the parent confirms.
fn load_seccomp_and_hand_over(p: &seccomp::SeccompProgram, sync: &Channel) -> Result<()> {
    use crate::process::Msg;
    use std::os::fd::AsFd;
    if let Some(fd) = p.load()? {
        sync.send_with_fd(&Msg::SeccompFd, fd.as_fd())?;
        match sync.recv()? {
            Some(Msg::SeccompDone) => {}
            other => {
                return Err(Error::msg(format!(
                    "sync: expected seccomp-done, got {other:?}"
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_duplicates_last_value_at_first_place() {
        let env: Vec<String> = ["A=1", "B=2", "A=3", "C", "C=4", "B=", "=x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(dedupe_env(&env), ["A=3", "B=", "C=4", "=x"]);
        // 100k distinct names: kept in order (the bench times this; runc takes 21 s).
        let many: Vec<String> = (0..100_000).map(|i| format!("K{i}=v")).collect();
        assert_eq!(dedupe_env(&many), many);
    }
}
