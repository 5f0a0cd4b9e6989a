//! What a build tells its user on stderr while it runs: `--progress plain|tty|auto` and
//! `--quiet`.
//!
//! Owns the formats. `plain` is one line per event, for CI logs, in BuildKit's shape: `#N
//! [i/total] INSTRUCTION` when a step starts, `#N 0.123 LINE` for each line a RUN prints,
//! `#N CACHED` or `#N DONE 0.4s` or `#N ERROR: ...` when it ends. `tty` shows each step as a
//! ` => [i/total] INSTRUCTION` line with its status and time, coloured, RUN output indented
//! below a running step, and a `[+] Building 2.1s (5/5) FINISHED` summary. `quiet` prints
//! nothing (the digest on stdout is the caller's). The build calls [`Progress::step_start`],
//! then [`Progress::step_cached`] (a cache hit), [`Progress::step_done`] or
//! [`Progress::step_error`]; RUN output goes through [`Progress::run_output`]. It never
//! decides anything about the build.

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `tty` when stderr is a terminal, else `plain`.
    #[default]
    Auto,
    Plain,
    Tty,
    Quiet,
}

struct Step {
    id: usize,
    start: Instant,
    /// tty: the step's line is printed without its status yet.
    open: bool,
    head: String,
    /// Partial RUN output line not yet ended by a newline.
    partial: Vec<u8>,
}

/// The progress printer of one build. Steps of stages built in parallel may be open at the
/// same time: each is named by the id [`Progress::step_start`] returns.
pub struct Progress {
    mode: Mode,
    start: Instant,
    next_id: usize,
    done: usize,
    total: usize,
    open: Vec<Step>,
    out: Box<dyn Write + Send>,
}

const BLUE: &str = "\x1b[34m";
const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

impl Progress {
    /// A printer to stderr; `Auto` is resolved here.
    pub fn new(mode: Mode) -> Progress {
        Self::to(
            mode,
            Box::new(std::io::stderr()),
            std::io::stderr().is_terminal(),
        )
    }

    /// A printer to `out` (`is_tty` resolves `Auto`).
    pub fn to(mode: Mode, out: Box<dyn Write + Send>, is_tty: bool) -> Progress {
        let mode = match mode {
            Mode::Auto if is_tty => Mode::Tty,
            Mode::Auto => Mode::Plain,
            m => m,
        };
        Progress {
            mode,
            start: Instant::now(),
            next_id: 1,
            done: 0,
            total: 0,
            open: Vec::new(),
            out,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Ends a tty status line left without its newline (another event is printed).
    fn break_line(&mut self) {
        for st in self.open.iter_mut().filter(|s| s.open) {
            let _ = writeln!(self.out);
            st.open = false;
        }
    }

    /// Step `i` of `total` starts; `text` is the instruction (first line shown). Returns the
    /// step's id for the calls that follow.
    pub fn step_start(&mut self, i: usize, total: usize, text: &str) -> usize {
        self.total = total;
        let short: String = text
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(120)
            .collect();
        let id = self.next_id;
        self.next_id += 1;
        let head = format!("[{i}/{total}] {short}");
        self.break_line();
        match self.mode {
            Mode::Plain => {
                let _ = writeln!(self.out, "#{id} {head}");
            }
            Mode::Tty => {
                let _ = write!(self.out, "{BLUE} => {head}{RESET}");
                let _ = self.out.flush();
            }
            _ => {}
        }
        self.open.push(Step {
            id,
            start: Instant::now(),
            open: self.mode == Mode::Tty,
            head,
            partial: Vec::new(),
        });
        id
    }

    fn take(&mut self, id: usize) -> Option<Step> {
        let pos = self.open.iter().position(|s| s.id == id)?;
        Some(self.open.remove(pos))
    }

    /// Bytes step `id` (a RUN) wrote (stdout and stderr together), split into lines.
    pub fn run_output(&mut self, id: usize, data: &[u8]) {
        let Some(mut st) = self.take(id) else {
            return;
        };
        st.partial.extend_from_slice(data);
        while let Some(pos) = st.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = st.partial.drain(..=pos).collect();
            self.output_line(&mut st, &line[..line.len() - 1]);
        }
        self.open.push(st);
    }

    fn output_line(&mut self, st: &mut Step, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        match self.mode {
            Mode::Plain => {
                let t = st.start.elapsed().as_secs_f64();
                let _ = writeln!(self.out, "#{} {t:.3} {text}", st.id);
            }
            Mode::Tty => {
                self.break_line();
                if st.open {
                    let _ = writeln!(self.out);
                    st.open = false;
                }
                let _ = writeln!(self.out, "{DIM}    | {text}{RESET}");
            }
            _ => {}
        }
    }

    /// Step `id` was satisfied from the build cache.
    pub fn step_cached(&mut self, id: usize) {
        self.end(id, "CACHED", GREEN, false);
    }

    /// Step `id` finished.
    pub fn step_done(&mut self, id: usize) {
        self.end(id, "DONE", GREEN, true);
    }

    /// Step `id` failed with `msg`.
    pub fn step_error(&mut self, id: usize, msg: &str) {
        self.end(id, &format!("ERROR: {msg}"), RED, true);
    }

    fn end(&mut self, id: usize, status: &str, colour: &str, timed: bool) {
        let Some(mut st) = self.take(id) else {
            return;
        };
        if !st.partial.is_empty() {
            let line = std::mem::take(&mut st.partial);
            self.output_line(&mut st, &line);
        }
        self.done += 1;
        let t = st.start.elapsed().as_secs_f64();
        let time = if timed {
            format!(" {t:.1}s")
        } else {
            String::new()
        };
        match self.mode {
            Mode::Plain => {
                let _ = writeln!(self.out, "#{} {status}{time}", st.id);
            }
            Mode::Tty => {
                if st.open {
                    let _ = write!(self.out, "\r\x1b[K");
                } else {
                    self.break_line();
                }
                let _ = writeln!(self.out, "{colour} => {} {status}{time}{RESET}", st.head);
            }
            _ => {}
        }
        let _ = self.out.flush();
    }

    /// A message for the user (warnings, notices); not shown when quiet.
    pub fn notice(&mut self, msg: &str) {
        if self.mode == Mode::Quiet {
            return;
        }
        self.break_line();
        let _ = writeln!(self.out, "{msg}");
    }

    /// The build ended (`ok`: successfully); steps still open end as DONE, or CANCELED when
    /// another step failed.
    pub fn finish(&mut self, ok: bool) {
        let ids: Vec<usize> = self.open.iter().map(|s| s.id).collect();
        for id in ids {
            if ok {
                self.step_done(id);
            } else {
                self.end(id, "CANCELED", RED, true);
            }
        }
        let t = self.start.elapsed().as_secs_f64();
        let word = if ok { "FINISHED" } else { "FAILED" };
        match self.mode {
            Mode::Tty => {
                let _ = writeln!(
                    self.out,
                    "[+] Building {t:.1}s ({}/{}) {word}",
                    self.done, self.total
                );
            }
            Mode::Plain => {
                let _ = writeln!(self.out, "#{} {word} {t:.1}s", self.next_id);
            }
            _ => {}
        }
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn plain_lines() {
        let b = Buf::default();
        let mut p = Progress::to(Mode::Auto, Box::new(b.clone()), false);
        let a = p.step_start(1, 2, "FROM x");
        p.step_cached(a);
        let b2 = p.step_start(2, 2, "RUN echo hi\nmore");
        p.run_output(b2, b"hel");
        p.run_output(b2, b"lo\nlast");
        p.step_done(b2);
        p.finish(true);
        let s = String::from_utf8(b.0.lock().unwrap().clone()).unwrap();
        let l: Vec<&str> = s.lines().collect();
        assert_eq!(l[0], "#1 [1/2] FROM x");
        assert_eq!(l[1], "#1 CACHED");
        assert_eq!(l[2], "#2 [2/2] RUN echo hi");
        assert!(l[3].starts_with("#2 0.") && l[3].ends_with(" hello"), "{s}");
        assert!(l[4].ends_with(" last"), "{s}");
        assert!(l[5].starts_with("#2 DONE "), "{s}");
        assert!(l[6].starts_with("#3 FINISHED"), "{s}");
    }
}
