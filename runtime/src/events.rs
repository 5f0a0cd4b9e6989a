//! `events`: a container's statistics and OOM notices as runc's JSON event
//! stream, one object per line.
//!
//! Owns the event loop: with `--stats`, one `{"type":"stats"}` event and
//! exit; otherwise a stats event every interval (the first after one
//! interval, as runc's ticker) and a `{"type":"oom"}` event on each OOM of
//! the memory cgroup, until the cgroup is removed (`delete`). A stats read
//! that fails inside the loop is logged and the loop goes on, as in runc.
//! Also owns the reading of Go duration strings (`--interval 100ms`).
//!
//! Must never: change the container or its cgroups.

use std::io::Write;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cgroups::{self, OomEvent, Stats};
use crate::error::{Error, Result};
use crate::logging;
use crate::state::{Root, Status};

/// One line of the stream.
#[derive(Debug, Serialize)]
pub struct Event<'a> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a Stats>,
}

impl Event<'_> {
    fn line(&self) -> String {
        serde_json::to_string(self).expect("events encode") + "\n"
    }
}

/// Options of `events`.
#[derive(Debug, Clone, Copy)]
pub struct Opts {
    /// Print one stats event and exit.
    pub stats_only: bool,
    pub interval: Duration,
}

/// A duration as Go's `time.ParseDuration` reads it: "5s", "100ms",
/// "1m30s", "1.5h", "300us", "0". Negative durations are returned as zero.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || {
        Error::msg(format!(
            "invalid value {s:?} for flag -interval: parse error"
        ))
    };
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let num = &rest[..end];
        if num.is_empty() || num == "." {
            return Err(bad());
        }
        let value: f64 = num.parse().map_err(|_| bad())?;
        rest = &rest[end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += value * nanos;
        rest = &rest[unit_end..];
    }
    if neg || total < 1.0 {
        return Ok(Duration::ZERO);
    }
    Ok(Duration::from_nanos(total as u64))
}

/// `events`: writes the stream to `out`.
pub fn run(root: &Root, id: &str, opts: Opts, out: &mut dyn Write) -> Result<()> {
    let saved = root.load(id)?;
    if opts.interval.is_zero() {
        return Err(Error::msg("duration interval must be greater than 0"));
    }
    if saved.status(root) == Status::Stopped {
        return Err(Error::msg(format!("container with id {id} is not running")));
    }
    let cg = cgroups::load(saved.cgroup_paths.clone());
    let emit = |out: &mut dyn Write, ev: &Event| -> Result<()> {
        out.write_all(ev.line().as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| Error::io("write event", e))
    };
    let stats_event = |out: &mut dyn Write, s: &Stats| {
        let ev = Event {
            kind: "stats",
            id,
            data: Some(s),
        };
        emit(out, &ev)
    };
    if opts.stats_only {
        let s = cg
            .stats()
            .map_err(|e| Error::msg(format!("unable to get container cgroup stats: {e}")))?;
        return stats_event(out, &s);
    }
    let oom = cg.watch_oom()?;
    let mut next = Instant::now() + opts.interval;
    loop {
        let now = Instant::now();
        if now >= next {
            match cg.stats() {
                Ok(s) => stats_event(out, &s)?,
                Err(e) => logging::error(&format!("unable to get container cgroup stats: {e}")),
            }
            // A slow reader skips ticks rather than bursting, as a Go ticker.
            while next <= Instant::now() {
                next += opts.interval;
            }
            continue;
        }
        match oom.wait(next - now)? {
            OomEvent::Timeout => {}
            OomEvent::Oom => emit(
                out,
                &Event {
                    kind: "oom",
                    id,
                    data: None,
                },
            )?,
            OomEvent::Gone => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        for (s, want) in [
            ("5s", ms(5000)),
            ("100ms", ms(100)),
            ("1m30s", ms(90_000)),
            ("1.5h", ms(5_400_000)),
            ("300us", Duration::from_micros(300)),
            ("2µs", Duration::from_micros(2)),
            ("7ns", Duration::from_nanos(7)),
            ("0", Duration::ZERO),
            ("-1s", Duration::ZERO),
            ("+2s", ms(2000)),
        ] {
            assert_eq!(parse_duration(s).ok(), Some(want), "{s}");
        }
        for s in ["", "5", "s", "1x", "1.s5", "..1s", "-"] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
    }

    #[test]
    fn event_lines_are_runcs() {
        let oom = Event {
            kind: "oom",
            id: "c1",
            data: None,
        };
        assert_eq!(oom.line(), "{\"type\":\"oom\",\"id\":\"c1\"}\n");
        let s = Stats::default();
        let line = Event {
            kind: "stats",
            id: "c1",
            data: Some(&s),
        }
        .line();
        assert!(
            line.starts_with("{\"type\":\"stats\",\"id\":\"c1\",\"data\":{\"cpu\":"),
            "{line}"
        );
    }
}
