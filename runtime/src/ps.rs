//! `ps`: the processes of a container, as runc lists them.
//!
//! Owns finding the container's pids (every process in its cgroups, also
//! after the init has exited while the cgroup remains) and turning host
//! `ps` output into the rows of those pids. The `table` format runs the
//! host's `ps` (default arguments `-ef`) and keeps its header plus the rows
//! whose PID column is one of the container's, like runc; `json` prints the
//! pids (`null` when there are none, as runc's encoder does).
//!
//! Must never: signal or otherwise touch the processes it lists.

use std::process::Command;

use crate::cgroups;
use crate::error::{Error, Result};
use crate::state::Root;

/// The output formats `ps --format` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

impl std::str::FromStr for Format {
    type Err = Error;

    fn from_str(s: &str) -> Result<Format> {
        match s {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            _ => Err(Error::msg("invalid format option")),
        }
    }
}

/// Every pid in the container's cgroups, sorted.
pub fn pids(root: &Root, id: &str) -> Result<Vec<i32>> {
    let saved = root.load(id)?;
    cgroups::load(saved.cgroup_paths)
        .pids()
        .map_err(|e| Error::msg(format!("unable to get all container pids: {e}")))
}

/// The `ps` command's output for `format`, with a trailing newline.
pub fn render(root: &Root, id: &str, format: &str, ps_args: &[String]) -> Result<String> {
    // runc lists the processes first, so a missing container wins over a
    // bad format.
    let pids = pids(root, id)?;
    match format.parse::<Format>()? {
        Format::Json => Ok(json(&pids)),
        Format::Table => table(&pids, ps_args),
    }
}

fn json(pids: &[i32]) -> String {
    if pids.is_empty() {
        "null\n".to_string()
    } else {
        serde_json::to_string(pids).expect("a list of numbers encodes") + "\n"
    }
}

/// Run the host's `ps` with `args` (`-ef` when empty) and keep the rows
/// of `pids`.
pub fn table(pids: &[i32], args: &[String]) -> Result<String> {
    let default = ["-ef".to_string()];
    let args = if args.is_empty() { &default[..] } else { args };
    let out = Command::new("ps")
        .args(args)
        .output()
        .map_err(|e| Error::io(format!("run ps {}", args.join(" ")), e))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        let why = match out.status.code() {
            Some(c) => format!("exit status {c}"),
            None => out.status.to_string(),
        };
        return Err(Error::msg(format!("{why}: {text}")));
    }
    filter(&text, pids)
}

/// The header line of `ps` output plus the lines whose PID column holds one
/// of `pids`.
pub fn filter(ps_output: &str, pids: &[i32]) -> Result<String> {
    let mut lines = ps_output.split('\n');
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|t| t == "PID")
        .ok_or_else(|| Error::msg("couldn't find PID field in ps output"))?;
    let mut out = format!("{header}\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let field = line.split_whitespace().nth(col).unwrap_or_default();
        let pid: i32 = field
            .parse()
            .map_err(|_| Error::msg(format!("unable to parse pid: {field:?} in {line:?}")))?;
        if pids.contains(&pid) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: &str = "UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 10:00 ?        00:00:01 /sbin/init
root         420       1  0 10:01 ?        00:00:00 sleep 100
root         421     420  0 10:01 ?        00:00:00 sh -c x y
";

    #[test]
    fn keeps_header_and_container_rows() {
        let out = filter(PS, &[420, 421]).expect("filter");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("UID "));
        assert!(lines[1].contains("sleep 100"));
        assert!(lines[2].ends_with("sh -c x y"));
        assert_eq!(filter(PS, &[]).expect("filter").lines().count(), 1);
    }

    #[test]
    fn pid_column_anywhere() {
        let text =
            "  PID TTY      STAT   TIME COMMAND\n  7 ?        S      0:00 top\n  8 ?  S 0:00 sh\n";
        let out = filter(text, &[8]).expect("filter");
        assert_eq!(out.lines().count(), 2);
        assert!(out.ends_with("sh\n"));
    }

    #[test]
    fn errors() {
        let e = filter("USER COMMAND\nroot x\n", &[1])
            .err()
            .map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("couldn't find PID field in ps output"));
        let e = filter("PID CMD\nabc x\n", &[1])
            .err()
            .map(|e| e.to_string());
        assert!(e.unwrap_or_default().starts_with("unable to parse pid"));
        assert!("xml".parse::<Format>().is_err());
    }

    #[test]
    fn json_is_runcs() {
        assert_eq!(json(&[]), "null\n");
        assert_eq!(json(&[3, 10]), "[3,10]\n");
    }
}
