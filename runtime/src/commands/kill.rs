//! `brig kill`: send a signal to a container's init, or to all its processes.

use brig::container;
use brig::state::Root;
use brig::{Error, Result};

#[derive(clap::Args)]
pub struct KillArgs {
    /// Send to all processes in the container.
    #[arg(short, long)]
    all: bool,
    id: String,
    #[arg(default_value = "SIGTERM")]
    signal: String,
}

#[inline(never)]
pub fn run(root: &Root, a: &KillArgs) -> Result<()> {
    let sig = parse_signal(&a.signal)?;
    container::kill_container(root, &a.id, sig, a.all)
}

/// A signal by number, name, or name without the SIG prefix (any case).
fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return Ok(n);
    }
    let up = s.to_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| Error::msg(format!("unknown signal {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::parse_signal;

    #[test]
    fn signals_by_number_and_name() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("SIGKILL").unwrap(), 9);
        assert_eq!(parse_signal("kill").unwrap(), 9);
        assert_eq!(parse_signal("sigTerm").unwrap(), 15);
        assert_eq!(
            parse_signal("FOO").unwrap_err().to_string(),
            "unknown signal \"FOO\""
        );
    }
}
