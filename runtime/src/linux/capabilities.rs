//! Capabilities: the five sets of `process.capabilities`.
//!
//! Runs in the container init after the user switch (with PR_SET_KEEPCAPS
//! set before it). Unknown names are dropped with a warning by the parent,
//! as runc does; this module only applies resolved sets.

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::LinuxCapabilities;

use crate::error::{Error, Result};

/// Resolved capability sets, computed in the parent.
#[derive(Debug, Clone, Default)]
pub struct Sets {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub permitted: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub ambient: CapsHashSet,
}

fn convert(list: &Option<oci_spec::runtime::Capabilities>) -> CapsHashSet {
    list.iter()
        .flatten()
        .filter_map(|c| cap_name(&c.to_string()).parse::<Capability>().ok())
        .filter(|c| caps::all().contains(c))
        .collect()
}

/// oci-spec prints names without the CAP_ prefix; the caps crate wants it.
fn cap_name(s: &str) -> String {
    if s.starts_with("CAP_") {
        s.to_string()
    } else {
        format!("CAP_{s}")
    }
}

impl Sets {
    /// Resolves the spec's sets; absent sets are empty.
    pub fn from_spec(c: Option<&LinuxCapabilities>) -> Self {
        let Some(c) = c else {
            return Sets::default();
        };
        Sets {
            bounding: convert(c.bounding()),
            effective: convert(c.effective()),
            permitted: convert(c.permitted()),
            inheritable: convert(c.inheritable()),
            ambient: convert(c.ambient()),
        }
    }

    /// Drops every capability not in the bounding set. Needs CAP_SETPCAP,
    /// so it runs before the user switch.
    pub fn drop_bounding(&self) -> Result<()> {
        for cap in caps::all() {
            if !self.bounding.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap)
                    .map_err(|e| Error::msg(format!("drop {cap} from bounding set: {e}")))?;
            }
        }
        Ok(())
    }

    /// Sets effective, permitted, inheritable, then raises ambient ones
    /// (an ambient capability must be permitted and inheritable; like runc
    /// we skip ones the kernel refuses).
    pub fn apply(&self) -> Result<()> {
        // Shrink effective first (it must stay within permitted), set
        // inheritable while permitted is still full, then permitted.
        caps::set(None, CapSet::Effective, &self.effective)
            .map_err(|e| Error::msg(format!("set effective capabilities: {e}")))?;
        caps::set(None, CapSet::Inheritable, &self.inheritable)
            .map_err(|e| Error::msg(format!("set inheritable capabilities: {e}")))?;
        caps::set(None, CapSet::Permitted, &self.permitted)
            .map_err(|e| Error::msg(format!("set permitted capabilities: {e}")))?;
        let _ = caps::clear(None, CapSet::Ambient);
        for cap in &self.ambient {
            let _ = caps::raise(None, CapSet::Ambient, *cap);
        }
        Ok(())
    }
}

/// Names in the spec that this kernel or the caps crate does not know.
pub fn unknown(c: Option<&LinuxCapabilities>) -> Vec<String> {
    let Some(c) = c else { return Vec::new() };
    [
        c.bounding(),
        c.effective(),
        c.permitted(),
        c.inheritable(),
        c.ambient(),
    ]
    .into_iter()
    .flat_map(|s| s.iter().flatten())
    .filter(|cap| {
        cap_name(&cap.to_string())
            .parse::<Capability>()
            .map(|c| !caps::all().contains(&c))
            .unwrap_or(true)
    })
    .map(|c| c.to_string())
    .collect()
}
