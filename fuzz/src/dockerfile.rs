//! Target `dockerfile`: Dockerfile bytes through the builder's front end:
//! `decode`, `Dockerfile::parse` (lexer, parser, stages), stage lookup,
//! and the ARG/ENV expansion the build does with them: global ARGs, each
//! stage's FROM, then its ARG, ENV, LABEL, WORKDIR, USER, EXPOSE, VOLUME,
//! STOPSIGNAL and COPY/ADD words in order, each with the variables set by
//! the lines before it (ENV over ARG, as `exec` looks them up).
//!
//! Invariants: no panic; an error names a line of the file; no expansion
//! is longer than `MAX_EXPANDED_WORD`. Like the build, a stage stops
//! recording values past `MAX_STAGE_TEXT`.

use std::collections::BTreeMap;

use brig_build::dockerfile::expand::{self, MAX_EXPANDED_WORD};
use brig_build::dockerfile::{self, DfError, Dockerfile, Instr};
use brig_build::exec::MAX_STAGE_TEXT;

const FILE: &str = "Dockerfile";

pub fn run(data: &[u8]) {
    let text = match dockerfile::decode(FILE, data.to_vec()) {
        Ok(t) => t,
        Err(e) => return check_err(data, &e),
    };
    let df = match Dockerfile::parse(FILE, &text) {
        Ok(df) => df,
        Err(e) => return check_err(data, &e),
    };
    for (i, s) in df.stages.iter().enumerate() {
        assert_eq!(s.index, i, "stage index");
        if let Some(name) = &s.name {
            assert_eq!(df.stage(name).map(|s| s.index), Some(i), "stage {name:?}");
        }
    }

    let esc = df.escape;
    let mut globals: BTreeMap<String, String> = BTreeMap::new();
    for (_, k, v) in &df.global_args {
        if let Some(v) = v {
            if let Some(w) = word(v, &|n| globals.get(n).cloned(), esc) {
                globals.insert(k.clone(), w);
            }
        }
    }
    for st in &df.stages {
        let look_g = |n: &str| globals.get(n).cloned();
        if let Some(base) = word(&st.base, &look_g, esc) {
            let _ = df.stage(&base);
        }
        if let Some(p) = &st.platform {
            word(p, &look_g, esc);
        }
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        let mut args: BTreeMap<String, String> = BTreeMap::new();
        let mut text = 0usize;
        for l in &st.instrs {
            if text > MAX_STAGE_TEXT {
                break;
            }
            let look = |n: &str| env.get(n).or_else(|| args.get(n)).cloned();
            let mut set = Vec::new();
            match &l.instr {
                Instr::Arg(a) => {
                    for (k, d) in a {
                        let v = match d {
                            Some(d) => word(d, &look, esc),
                            None => globals.get(k).cloned(),
                        };
                        if let Some(v) = v {
                            set.push((false, k.clone(), v));
                        }
                    }
                }
                Instr::Env(pairs) => {
                    for (k, v) in pairs {
                        if let Some(v) = word(v, &look, esc) {
                            set.push((true, k.clone(), v));
                        }
                    }
                }
                Instr::Label(pairs) => {
                    for (k, v) in pairs {
                        text += word(k, &look, esc).map_or(0, |w| w.len());
                        text += word(v, &look, esc).map_or(0, |w| w.len());
                    }
                }
                Instr::Workdir(s) | Instr::User(s) | Instr::StopSignal(s) => {
                    word(s, &look, esc);
                }
                Instr::Expose(s) => {
                    if let Ok(ws) = expand::words(s, &look, esc) {
                        let total: usize = ws.iter().map(String::len).sum();
                        assert!(total <= MAX_EXPANDED_WORD, "EXPOSE: {total} bytes");
                    }
                }
                Instr::Volume(v) => {
                    for s in v {
                        text += word(s, &look, esc).map_or(0, |w| w.len());
                    }
                }
                Instr::Copy(c) | Instr::Add(c) => {
                    for s in c
                        .paths
                        .iter()
                        .chain(&c.from)
                        .chain(&c.chown)
                        .chain(&c.chmod)
                    {
                        word(s, &look, esc);
                    }
                }
                _ => {}
            }
            for (is_env, k, v) in set {
                text = text.saturating_add(k.len() + v.len());
                if is_env {
                    env.insert(k, v);
                } else {
                    args.insert(k, v);
                }
            }
        }
    }
}

/// One word expanded; None on an expansion error (bad input, not a finding).
fn word(s: &str, look: &dyn Fn(&str) -> Option<String>, esc: char) -> Option<String> {
    let w = expand::word(s, look, esc).ok()?;
    assert!(
        w.len() <= MAX_EXPANDED_WORD,
        "expansion of {} bytes",
        w.len()
    );
    Some(w)
}

/// An error names a line that exists (or none), and renders.
fn check_err(data: &[u8], e: &DfError) {
    let lines = data.split(|&b| b == b'\n').count();
    assert!(
        e.line <= lines,
        "error on line {} of a {lines}-line file: {e}",
        e.line
    );
    assert!(
        e.to_string().starts_with(FILE),
        "error without the file: {e}"
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_and_findings() {
        crate::replay("seeds/dockerfile", super::run);
    }
}
