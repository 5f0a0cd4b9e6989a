//! Instruction semantics: what each instruction does to a stage's image config and history
//! (ARG scoping, ENV over ARG, WORKDIR relative to the last, ENTRYPOINT resetting an inherited
//! CMD, EXPOSE and STOPSIGNAL validation, HEALTHCHECK durations), and the text history shows.
//! RUN, COPY and ADD are handed to [`super::run`] and [`super::copy`].

use super::{Builder, Result, State, MAX_STAGE_TEXT};
use crate::dockerfile::{Command, Instr};
use crate::fsroot::Root;
use crate::image::config::History;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

impl Builder<'_> {
    pub(super) fn history(&self, st: &mut State, text: &str, empty: bool) {
        st.text = st.text.saturating_add(text.len());
        st.config.history.push(History {
            created: Some(self.now()),
            created_by: Some(text.to_string()),
            comment: Some("brig-build".into()),
            empty_layer: empty,
            ..Default::default()
        });
    }

    /// WORKDIR's directory `dir` (clean, absolute) made if missing, as a layer: missing
    /// components are owned by the stage's USER as BuildKit resolves it for a file operation
    /// ([`super::run::file_op_owner`]; root without USER), one that exists is left as it is.
    pub(super) fn workdir_mkdir(
        &self,
        st: &mut State,
        line: usize,
        dir: &str,
        by: &str,
    ) -> Result<()> {
        let (area, m) = self.mount_rw(st, line)?;
        let root = Root::open(&area.join("merged")).map_err(|e| self.err(line, e))?;
        let owner = match cfg(st).user.clone().filter(|u| !u.is_empty()) {
            Some(u) => super::run::file_op_owner(&root, &u)
                .map_err(|e| self.err(line, format!("WORKDIR {dir}: USER {u}: {e}")))?,
            None => (0, 0),
        };
        let (_, created) = root
            .mkdir_all(Path::new(dir), 0o755)
            .map_err(|e| self.err(line, format!("WORKDIR {dir}: {e}")))?;
        for d in created {
            let fd = root.dir(&d).map_err(|e| self.err(line, e))?;
            rustix::fs::fchown(
                &fd,
                Some(rustix::fs::Uid::from_raw(owner.0)),
                Some(rustix::fs::Gid::from_raw(owner.1)),
            )
            .map_err(|e| self.err(line, format!("WORKDIR: chown {}: {e}", d.display())))?;
        }
        drop(root);
        m.unmount().map_err(|e| self.err(line, e))?;
        self.commit_layer(st, line, &area.join("upper"), by)
    }

    pub(super) fn shell(st: &State) -> Vec<String> {
        st.config
            .config
            .shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    pub(super) fn argv(st: &State, c: &Command) -> Vec<String> {
        match c {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) => {
                let mut v = Self::shell(st);
                v.push(s.clone());
                v
            }
        }
    }

    pub(super) fn apply(
        &self,
        st: &mut State,
        line: usize,
        instr: &Instr,
        text: &str,
        globals: &BTreeMap<String, String>,
        done: &HashMap<usize, State>,
    ) -> Result<()> {
        match instr {
            Instr::From { .. } => unreachable!("FROM starts a stage"),
            Instr::Arg(args) => {
                let mut parts = Vec::new();
                for (k, v) in args {
                    let val = match (self.opts.build_args.get(k), v) {
                        (Some(b), _) => Some(b.clone()),
                        (None, Some(d)) => Some(self.word(st, line, d)?),
                        (None, None) => globals.get(k).cloned(),
                    };
                    self.grow(st, line, k.len() + val.as_ref().map_or(0, String::len))?;
                    match &val {
                        Some(v) => {
                            parts.push(format!("{k}={v}"));
                            st.args.insert(k.clone(), v.clone());
                        }
                        None => parts.push(k.clone()),
                    }
                }
                self.history(st, &format!("ARG {}", parts.join(" ")), true);
            }
            Instr::Env(pairs) => {
                let mut shown = Vec::new();
                for (k, v) in pairs {
                    // One at a time: a later value may name an earlier key.
                    let (k, v) = self.pair(st, line, k, v)?;
                    st.config.set_env(&k, &v);
                    shown.push(format!("{k}={v}"));
                }
                self.history(st, &format!("ENV {}", shown.join(" ")), true);
            }
            Instr::Label(pairs) => {
                let mut shown = Vec::new();
                for (k, v) in pairs {
                    let (k, v) = self.pair(st, line, k, v)?;
                    shown.push(format!("{k}={v}"));
                    cfg(st)
                        .labels
                        .get_or_insert_with(BTreeMap::new)
                        .insert(k, v);
                }
                self.history(st, &format!("LABEL {}", shown.join(" ")), true);
            }
            Instr::Maintainer(m) => {
                st.config.author = Some(m.clone());
                self.history(st, text, true);
            }
            Instr::Workdir(w) => {
                // As BuildKit records it: an absolute path as written (`/app/` stays), a
                // relative one joined to the current directory and cleaned. The directory
                // itself is made by [`Builder::workdir_mkdir`].
                let w = self.word(st, line, w)?;
                let wd = if w.starts_with('/') {
                    w
                } else {
                    clean_abs(&Path::new(&st.workdir()).join(&w))
                };
                self.history(st, &format!("WORKDIR {wd}"), true);
                cfg(st).working_dir = Some(wd);
            }
            Instr::User(u) => {
                let u = self.word(st, line, u)?;
                cfg(st).user = Some(u.clone());
                self.history(st, &format!("USER {u}"), true);
            }
            Instr::Expose(e) => {
                let ports = self.words(st, line, e)?;
                for p in ports {
                    let p = if p.contains('/') {
                        p.to_ascii_lowercase()
                    } else {
                        format!("{p}/tcp")
                    };
                    let (num, proto) = p.split_once('/').expect("has a /");
                    let ok_num = num.split('-').all(|n| n.parse::<u16>().is_ok());
                    if !ok_num || !matches!(proto, "tcp" | "udp" | "sctp") {
                        return Err(self.err(line, format!("EXPOSE: invalid port {p:?}")));
                    }
                    add_key(&mut cfg(st).exposed_ports, p);
                }
                self.history(st, text, true);
            }
            Instr::Volume(v) => {
                for v in v {
                    let v = self.word(st, line, v)?;
                    if v.is_empty() {
                        return Err(self.err(line, "VOLUME: empty path"));
                    }
                    self.grow(st, line, v.len())?;
                    add_key(&mut cfg(st).volumes, v);
                }
                self.history(st, text, true);
            }
            Instr::StopSignal(s) => {
                let s = self.word(st, line, s)?;
                let ok = s.parse::<u32>().is_ok()
                    || (s.starts_with("SIG")
                        && s.len() > 3
                        && s[3..]
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-'));
                if !ok {
                    return Err(self.err(line, format!("STOPSIGNAL: invalid signal {s:?}")));
                }
                cfg(st).stop_signal = Some(s);
                self.history(st, text, true);
            }
            Instr::Shell(v) => {
                cfg(st).shell = Some(v.clone());
                self.history(st, text, true);
            }
            Instr::Cmd(c) => {
                cfg(st).cmd = Some(Self::argv(st, c));
                // Deprecated in the OCI spec, still set by BuildKit at every CMD (docker's
                // image spec reads it on Windows).
                cfg(st).extra.insert("ArgsEscaped".into(), json!(true));
                st.cmd_inherited = false;
                self.history(st, text, true);
            }
            Instr::Entrypoint(c) => {
                cfg(st).entrypoint = Some(Self::argv(st, c));
                if st.cmd_inherited {
                    cfg(st).cmd = None;
                    st.cmd_inherited = false;
                }
                self.history(st, text, true);
            }
            Instr::Onbuild(t) => {
                cfg(st)
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(t.clone());
                // No history entry: BuildKit records ONBUILD only in the config (the legacy
                // builder added a `#(nop) ONBUILD` entry).
            }
            Instr::Healthcheck(h) => {
                let v = match h {
                    None => json!({"Test": ["NONE"]}),
                    Some(h) => {
                        let test = match &h.cmd {
                            Command::Exec(v) => {
                                let mut t = vec!["CMD".to_string()];
                                t.extend(v.iter().cloned());
                                t
                            }
                            Command::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                        };
                        let mut o = json!({"Test": test});
                        for (k, v) in &h.flags {
                            let v = v.clone().unwrap_or_default();
                            let (flag, key) = match k.as_str() {
                                "retries" => ("retries", "Retries"),
                                "interval" => ("interval", "Interval"),
                                "timeout" => ("timeout", "Timeout"),
                                "start-period" => ("start-period", "StartPeriod"),
                                _ => ("start-interval", "StartInterval"),
                            };
                            let val = if flag == "retries" {
                                v.parse::<u64>().ok()
                            } else {
                                duration_ns(&v)
                            };
                            let val = val.ok_or_else(|| {
                                self.err(line, format!("HEALTHCHECK: bad --{flag}={v}"))
                            })?;
                            o[key] = json!(val);
                        }
                        o
                    }
                };
                cfg(st).healthcheck = Some(v);
                self.history(st, text, true);
            }
            Instr::Run(r) => self.run_step(st, line, r, text, done)?,
            Instr::Copy(a) => self.copy_step(st, line, a, false, text, done)?,
            Instr::Add(a) => self.copy_step(st, line, a, true, text, done)?,
        }
        self.grow(st, line, 0)
    }

    /// Counts `n` more bytes of expanded text kept in the stage's config (see
    /// [`MAX_STAGE_TEXT`]); history lines are counted when recorded.
    /// An ENV or LABEL `key=value` with both expanded: the key is a word too (BuildKit: `ENV
    /// "K"=v` sets K), and both count toward the expansion limit.
    fn pair(&self, st: &mut State, line: usize, k: &str, v: &str) -> Result<(String, String)> {
        let k = self.word(st, line, k)?;
        let v = self.word(st, line, v)?;
        self.grow(st, line, k.len() + v.len())?;
        Ok((k, v))
    }

    pub(super) fn grow(&self, st: &mut State, line: usize, n: usize) -> Result<()> {
        st.text = st.text.saturating_add(n);
        if st.text > MAX_STAGE_TEXT {
            return Err(self.err(
                line,
                format!(
                    "the stage's ARG, ENV, LABEL and VOLUME values and history lines exceed \
                     {MAX_STAGE_TEXT} bytes (MAX_STAGE_TEXT)"
                ),
            ));
        }
        Ok(())
    }
}

pub(super) fn cfg(st: &mut State) -> &mut crate::image::config::RunConfig {
    &mut st.config.config
}

/// `/a/./b/../c` → `/a/c`.
pub(super) fn clean_abs(p: &Path) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    format!("/{}", out.join("/"))
}

/// `30s`, `1m30s`, `500ms`, `2h` → nanoseconds.
pub(super) fn duration_ns(s: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let v: f64 = num.parse().ok()?;
        num.clear();
        let mult = match unit.as_str() {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += v * mult;
        any = true;
    }
    (any && num.is_empty()).then_some(total as u64)
}

/// The instruction as history shows it.
pub(super) fn instr_text(i: &Instr) -> String {
    let cmd = |c: &Command| match c {
        Command::Shell(s) => s.clone(),
        Command::Exec(v) => serde_json::to_string(v).unwrap_or_default(),
    };
    match i {
        Instr::From { image, .. } => format!("FROM {image}"),
        Instr::Run(r) => format!("RUN {}", cmd(&r.cmd)),
        Instr::Cmd(c) => format!("CMD {}", cmd(c)),
        Instr::Entrypoint(c) => format!("ENTRYPOINT {}", cmd(c)),
        Instr::Shell(v) => format!("SHELL {}", serde_json::to_string(v).unwrap_or_default()),
        Instr::Env(p) => format!("ENV {}", pairs(p)),
        Instr::Label(p) => format!("LABEL {}", pairs(p)),
        Instr::Arg(a) => format!(
            "ARG {}",
            a.iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={v}"),
                    None => k.clone(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Instr::Workdir(w) => format!("WORKDIR {w}"),
        Instr::User(u) => format!("USER {u}"),
        Instr::Expose(e) => format!("EXPOSE {e}"),
        Instr::Volume(v) => format!("VOLUME {}", serde_json::to_string(v).unwrap_or_default()),
        Instr::StopSignal(s) => format!("STOPSIGNAL {s}"),
        Instr::Maintainer(m) => format!("MAINTAINER {m}"),
        Instr::Copy(a) | Instr::Add(a) => {
            let kw = if matches!(i, Instr::Copy(_)) {
                "COPY"
            } else {
                "ADD"
            };
            let mut s = kw.to_string();
            for (k, v) in [("from", &a.from), ("chown", &a.chown), ("chmod", &a.chmod)] {
                if let Some(v) = v {
                    s.push_str(&format!(" --{k}={v}"));
                }
            }
            format!("{s} {}", a.paths.join(" "))
        }
        Instr::Onbuild(t) => format!("ONBUILD {t}"),
        Instr::Healthcheck(None) => "HEALTHCHECK NONE".into(),
        Instr::Healthcheck(Some(h)) => format!("HEALTHCHECK CMD {}", cmd(&h.cmd)),
    }
}

/// Adds `k` to a set the config keeps as a map to `{}` (ExposedPorts, Volumes).
fn add_key(set: &mut Option<BTreeMap<String, serde_json::Value>>, k: String) {
    set.get_or_insert_with(BTreeMap::new).insert(k, json!({}));
}

/// `k=v k=v` (ENV and LABEL as history shows them).
fn pairs(p: &[(String, String)]) -> String {
    p.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::Dockerfile;

    #[test]
    fn durations() {
        assert_eq!(duration_ns("30s"), Some(30_000_000_000));
        assert_eq!(duration_ns("1m30s"), Some(90_000_000_000));
        assert_eq!(duration_ns("500ms"), Some(500_000_000));
        assert_eq!(duration_ns("2h"), Some(7_200_000_000_000));
        assert_eq!(duration_ns("1.5s"), Some(1_500_000_000));
        for bad in ["", "30", "5x", "s"] {
            assert_eq!(duration_ns(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean_abs(Path::new("/a/./b/../c")), "/a/c");
        assert_eq!(clean_abs(Path::new("/../..")), "/");
        assert_eq!(clean_abs(Path::new("/w/")), "/w");
    }

    #[test]
    fn history_text_of_instructions() {
        let text = "FROM scratch\nENV A=1 B=2\nLABEL l=v\nARG X Y=1\nRUN [\"a\", \"b\"]\n\
                    COPY --from=s --chmod=644 a b /d/\nHEALTHCHECK NONE\nVOLUME /v\n";
        let df = Dockerfile::parse("Dockerfile", text).unwrap();
        let got: Vec<String> = df.stages[0]
            .instrs
            .iter()
            .map(|l| instr_text(&l.instr))
            .collect();
        assert_eq!(
            got,
            [
                "ENV A=1 B=2",
                "LABEL l=v",
                "ARG X Y=1",
                "RUN [\"a\",\"b\"]",
                "COPY --from=s --chmod=644 a b /d/",
                "HEALTHCHECK NONE",
                "VOLUME [\"/v\"]",
            ]
        );
    }
}
