//! Linux security modules: AppArmor profiles and SELinux labels of the
//! container's processes.
//!
//! brig applies neither yet; a process that asks for one is refused here,
//! for `create`, `exec` and `restore` alike, in one wording.

use oci_spec::runtime::Process;

/// Refuses a process that names an AppArmor profile or an SELinux label: `(field, message)`,
/// the field relative to the process object.
pub fn check(p: &Process) -> Result<(), (&'static str, &'static str)> {
    let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    if set(p.apparmor_profile()) {
        return Err(("apparmorProfile", "AppArmor is not enabled on this host"));
    }
    if set(p.selinux_label()) {
        return Err(("selinuxLabel", "SELinux is not enabled on this host"));
    }
    Ok(())
}
