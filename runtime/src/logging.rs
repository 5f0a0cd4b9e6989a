//! runc-compatible logging: `--log FILE`, `--log-format text|json`, `--debug`.
//!
//! containerd's runc shim passes `--log log.json --log-format json` and reads
//! the last `"level":"error"` line to show why a command failed, so the JSON
//! lines use runc's keys: `level`, `msg`, `time`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug)]
struct Logger {
    file: Option<PathBuf>,
    format: Format,
    debug: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets up logging once, from the global flags.
pub fn init(file: Option<PathBuf>, format: Format, debug: bool) {
    let _ = LOGGER.set(Logger {
        file,
        format,
        debug,
    });
}

/// Whether a `--log` file was given (errors then go both there and to stderr).
pub fn has_file() -> bool {
    LOGGER.get().is_some_and(|l| l.file.is_some())
}

pub fn error(msg: &str) {
    write("error", msg);
}

pub fn warn(msg: &str) {
    write("warning", msg);
}

pub fn debug(msg: &str) {
    if debug_enabled() {
        write("debug", msg);
    }
}

/// Whether `--debug` was given.
pub fn debug_enabled() -> bool {
    LOGGER.get().is_some_and(|l| l.debug)
}

/// Writes one line at `level` to the log (a file with `--log`, else stderr).
pub fn write(level: &str, msg: &str) {
    let Some(l) = LOGGER.get() else {
        eprintln!("{level}: {msg}");
        return;
    };
    let time = now_rfc3339();
    let line = match l.format {
        Format::Json => {
            let mut s = serde_json::json!({"level": level, "msg": msg, "time": time}).to_string();
            s.push('\n');
            s
        }
        Format::Text => format!("time=\"{time}\" level={level} msg={msg:?}\n"),
    };
    match &l.file {
        Some(path) => {
            let r = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(line.as_bytes()));
            if let Err(e) = r {
                eprintln!("brig: cannot write log {}: {e}", path.display());
            }
        }
        None => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

/// Current UTC time in RFC 3339 with nanoseconds, as runc prints it.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}
