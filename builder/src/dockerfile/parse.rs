//! Dockerfile text → instructions with their line numbers.
//!
//! Owns the lexical layer of the Dockerfile reference: parser directives (`# escape=`,
//! `# syntax=` is accepted and ignored), comments, line continuations with the escape
//! character, heredocs (`<<EOF`, `<<-EOF`, quoted delimiters) and flags (`--from=`,
//! `--chown=`, ...). It never expands variables: that needs the build's ARG/ENV state and
//! happens in `exec`, through [`super::expand`].
//!
//! Hand-written rather than built on the `dockerfile-parser` crate: that crate (deprecated
//! upstream) fails on the `# escape=` directive and on heredocs (both tried: "expected
//! any_breakable"), has no `--chmod` semantics of its own and only splices plain `$v`
//! references; working around it would have meant a pre-pass as large as this module.

use super::{DfError, Result, MAX_DOCKERFILE_BYTES};

/// The longest instruction (its lines joined at continuations, heredoc bodies not counted).
/// Parsing and expansion hold several copies of an instruction, some as `char`s (four bytes
/// each): unbounded, one 10 MB line cost 400 MB of memory. Real instructions are a few KiB.
pub const MAX_INSTRUCTION_BYTES: usize = 1 << 20;

/// One instruction as written: keyword (upper case), flags, the rest of the line, heredocs.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw {
    /// 1-based line of the keyword.
    pub line: usize,
    pub keyword: String,
    pub flags: Vec<(String, Option<String>)>,
    pub args: String,
    pub heredocs: Vec<Heredoc>,
}

/// A heredoc body attached to an instruction (`RUN <<EOF`, `COPY <<EOF /dest`).
#[derive(Debug, Clone, PartialEq)]
pub struct Heredoc {
    pub name: String,
    /// Body with a trailing newline; leading tabs removed for `<<-`.
    pub content: String,
    /// `<<'EOF'` or `<<"EOF"`: no expansion in the body.
    pub quoted: bool,
}

/// A command in shell form (text for the image's SHELL) or exec form (argv).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

/// RUN and its BuildKit flags.
#[derive(Debug, Clone, PartialEq)]
pub struct RunArgs {
    pub cmd: Command,
    /// `--mount=...` specs as written (expanded and checked at build time, see
    /// `exec::mounts`).
    pub mounts: Vec<String>,
    /// `--network=default|none|host`.
    pub network: Option<String>,
    /// `RUN <<EOF` alone on the line: the body (run as a script file when it starts with
    /// `#!`, else given to the shell).
    pub heredoc: Option<Heredoc>,
}

/// COPY and ADD.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyArgs {
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    /// `--link`: accepted; every COPY already makes an independent layer of its own.
    pub link: bool,
    /// `--parents`: keep the source's path below the context under the destination.
    pub parents: bool,
    /// `--exclude=PATTERN` (repeatable): sources matching are not copied.
    pub excludes: Vec<String>,
    /// ADD `--checksum=sha256:HEX`: the source must have this digest.
    pub checksum: Option<String>,
    /// ADD `--keep-git-dir`: keep `.git` of a git source.
    pub keep_git_dir: bool,
    /// Sources and destination as written (the last is the destination); expanded at build
    /// time. Heredoc sources are named `<<NAME`.
    pub paths: Vec<String>,
    pub heredocs: Vec<Heredoc>,
}

/// `HEALTHCHECK [--interval=..] CMD ...`.
#[derive(Debug, Clone, PartialEq)]
pub struct Healthcheck {
    pub flags: Vec<(String, Option<String>)>,
    pub cmd: Command,
}

/// A parsed instruction. Strings are unexpanded.
#[derive(Debug, Clone, PartialEq)]
pub enum Instr {
    From {
        image: String,
        alias: Option<String>,
        platform: Option<String>,
    },
    Run(RunArgs),
    Cmd(Command),
    Entrypoint(Command),
    Shell(Vec<String>),
    /// `NAME=VALUE` pairs; values unexpanded, quotes kept.
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    Arg(Vec<(String, Option<String>)>),
    Workdir(String),
    User(String),
    Expose(String),
    Volume(Vec<String>),
    StopSignal(String),
    Maintainer(String),
    Copy(CopyArgs),
    Add(CopyArgs),
    Onbuild(String),
    /// None for `HEALTHCHECK NONE`.
    Healthcheck(Option<Healthcheck>),
}

/// An instruction and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub line: usize,
    pub instr: Instr,
}

/// The parsed file: escape character and instructions in order.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub escape: char,
    /// Things accepted but ignored, for the user (`Dockerfile:1: # check=...: ignored`).
    pub notices: Vec<String>,
    pub instrs: Vec<Located>,
}

/// Parses `text`; `file` names it in errors (`Dockerfile:7: ...`).
pub fn parse(file: &str, text: &str) -> Result<Parsed> {
    if text.len() > MAX_DOCKERFILE_BYTES {
        return Err(too_big(file));
    }
    let (escape, raws) = lex(file, text)?;
    let notices = directives(text)
        .filter(|(_, k, _)| k == "check")
        .map(|(line, _, v)| {
            format!("{file}:{line}: # check={v}: build checks are not run by brig-build")
        })
        .collect();
    let mut instrs = Vec::new();
    for r in raws {
        let instr = typed(file, escape, &r)?;
        instrs.push(Located {
            line: r.line,
            instr,
        });
    }
    if !instrs.iter().any(|l| matches!(l.instr, Instr::From { .. })) {
        return Err(DfError::new(file, 0, "no FROM instruction"));
    }
    Ok(Parsed {
        escape,
        notices,
        instrs,
    })
}

/// The error for a Dockerfile over [`MAX_DOCKERFILE_BYTES`].
pub fn too_big(file: &str) -> DfError {
    DfError::new(
        file,
        0,
        format!("larger than {MAX_DOCKERFILE_BYTES} bytes (MAX_DOCKERFILE_BYTES)"),
    )
}

/// The parser directives at the top of `text`: (line, lower-cased key, value).
fn directives(text: &str) -> impl Iterator<Item = (usize, String, String)> + '_ {
    text.lines().enumerate().map_while(|(i, l)| {
        let (k, v) = l.trim().strip_prefix('#')?.split_once('=')?;
        let k = k.trim().to_ascii_lowercase();
        let ok = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        ok.then(|| (i + 1, k, v.trim().to_string()))
    })
}

/// Splits the text into raw instructions.
pub fn lex(file: &str, text: &str) -> Result<(char, Vec<Raw>)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut escape = '\\';
    let mut i = 0;
    // Parser directives: `# key=value` lines at the very top.
    while i < lines.len() {
        let l = lines[i].trim();
        let Some(rest) = l.strip_prefix('#') else {
            break;
        };
        let Some((k, v)) = rest.split_once('=') else {
            break;
        };
        let k = k.trim().to_ascii_lowercase();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            break;
        }
        let v = v.trim();
        match k.as_str() {
            "escape" => {
                escape = match v {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(DfError::new(
                            file,
                            i + 1,
                            format!("invalid escape token {v:?}: must be ` or \\"),
                        ))
                    }
                }
            }
            "syntax" | "check" => {}
            _ => break,
        }
        i += 1;
    }
    let mut raws = Vec::new();
    while i < lines.len() {
        let l = lines[i];
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i + 1;
        // Join continuation lines; comment lines inside a continuation are dropped.
        let mut logical = String::new();
        let mut cur = l.trim_end().to_string();
        loop {
            if logical.len() + cur.len() > MAX_INSTRUCTION_BYTES {
                return Err(DfError::new(
                    file,
                    start,
                    format!(
                        "instruction longer than {MAX_INSTRUCTION_BYTES} bytes \
                         (MAX_INSTRUCTION_BYTES)"
                    ),
                ));
            }
            if cur.ends_with(escape) {
                cur.pop();
                logical.push_str(&cur);
                i += 1;
                loop {
                    if i >= lines.len() {
                        cur = String::new();
                        break;
                    }
                    let n = lines[i].trim();
                    if n.starts_with('#') {
                        i += 1;
                        continue;
                    }
                    cur = lines[i].trim_end().to_string();
                    break;
                }
                if i >= lines.len() {
                    break;
                }
            } else {
                logical.push_str(&cur);
                i += 1;
                break;
            }
        }
        let logical = logical.trim().to_string();
        let (kw, rest) = match logical.split_once(char::is_whitespace) {
            Some((k, r)) => (k.to_string(), r.trim().to_string()),
            None => (logical.clone(), String::new()),
        };
        let keyword = kw.to_ascii_uppercase();
        let (flags, args) = split_flags(&rest);
        let mut heredocs = Vec::new();
        if matches!(keyword.as_str(), "RUN" | "COPY" | "ADD") {
            for (name, strip, quoted) in heredoc_markers(&args) {
                let mut content = String::new();
                let mut found = false;
                while i < lines.len() {
                    let mut body = lines[i];
                    i += 1;
                    if strip {
                        body = body.trim_start_matches('\t');
                    }
                    if body == name {
                        found = true;
                        break;
                    }
                    content.push_str(body);
                    content.push('\n');
                }
                if !found {
                    return Err(DfError::new(
                        file,
                        start,
                        format!("unterminated heredoc <<{name}: no line {name:?} before the end"),
                    ));
                }
                heredocs.push(Heredoc {
                    name,
                    content,
                    quoted,
                });
            }
        }
        raws.push(Raw {
            line: start,
            keyword,
            flags,
            args,
            heredocs,
        });
    }
    Ok((escape, raws))
}

/// Leading `--name[=value]` words.
fn split_flags(rest: &str) -> (Vec<(String, Option<String>)>, String) {
    let mut flags = Vec::new();
    let mut s = rest.trim_start();
    while let Some(f) = s.strip_prefix("--") {
        let end = f.find(char::is_whitespace).unwrap_or(f.len());
        let word = &f[..end];
        if word.is_empty() {
            break;
        }
        match word.split_once('=') {
            Some((k, v)) => flags.push((k.to_string(), Some(v.to_string()))),
            None => flags.push((word.to_string(), None)),
        }
        s = f[end..].trim_start();
    }
    (flags, s.to_string())
}

/// Heredoc markers in the arguments: (name, strip tabs, quoted).
fn heredoc_markers(args: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    if args.trim_start().starts_with('[') {
        return out;
    }
    let mut rest = args;
    while let Some(pos) = rest.find("<<") {
        let mut m = &rest[pos + 2..];
        rest = m;
        if let Some(after) = m.strip_prefix('<') {
            rest = after;
            continue;
        }
        let strip = m.starts_with('-');
        if strip {
            m = &m[1..];
        }
        let (quoted, m) = match m.chars().next() {
            Some(q @ ('"' | '\'')) => (Some(q), &m[1..]),
            _ => (None, m),
        };
        let end = m
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
            .unwrap_or(m.len());
        let name = &m[..end];
        if name.is_empty() {
            continue;
        }
        if let Some(q) = quoted {
            if !m[end..].starts_with(q) {
                continue;
            }
        }
        out.push((name.to_string(), strip, quoted.is_some()));
    }
    out
}

fn check_flags(file: &str, r: &Raw, allowed: &[&str]) -> Result<()> {
    for (k, _) in &r.flags {
        if !allowed.contains(&k.as_str()) {
            return Err(DfError::new(
                file,
                r.line,
                format!("{}: unknown flag --{k}", r.keyword),
            ));
        }
    }
    Ok(())
}

fn flag(r: &Raw, name: &str) -> Option<String> {
    r.flags
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone().unwrap_or_default())
}

/// JSON array of strings → exec form; anything else is shell form (as docker does).
fn command(args: &str) -> Command {
    let t = args.trim();
    if t.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(t) {
            return Command::Exec(v);
        }
    }
    Command::Shell(args.to_string())
}

/// `NAME=VALUE ...` or the legacy `NAME VALUE` form (ENV, LABEL).
fn pairs(file: &str, r: &Raw, escape: char) -> Result<Vec<(String, String)>> {
    let words = super::expand::split_raw(&r.args, escape)
        .map_err(|e| DfError::new(file, r.line, format!("{}: {e}", r.keyword)))?;
    if words.is_empty() {
        return Err(DfError::new(
            file,
            r.line,
            format!("{} needs at least one NAME=VALUE argument", r.keyword),
        ));
    }
    if !words[0].contains('=') {
        // Legacy form: the first word is the name, the rest of the line the value.
        let name = words[0].clone();
        let value = r.args.trim_start()[name.len()..].trim().to_string();
        if value.is_empty() && r.keyword == "ENV" {
            return Err(DfError::new(
                file,
                r.line,
                format!("ENV {name} needs a value (ENV NAME=VALUE)"),
            ));
        }
        return Ok(vec![(name, value)]);
    }
    let mut out = Vec::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(DfError::new(
                file,
                r.line,
                format!("{}: {w:?} is not of the form NAME=VALUE", r.keyword),
            ));
        };
        if k.is_empty() {
            return Err(DfError::new(
                file,
                r.line,
                format!("{}: empty name in {w:?}", r.keyword),
            ));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

fn typed(file: &str, escape: char, r: &Raw) -> Result<Instr> {
    let err = |msg: String| DfError::new(file, r.line, msg);
    let need_args = || -> Result<()> {
        if r.args.trim().is_empty() && r.heredocs.is_empty() {
            Err(err(format!("{} needs an argument", r.keyword)))
        } else {
            Ok(())
        }
    };
    let no_flags = |allowed: &[&str]| check_flags(file, r, allowed);
    Ok(match r.keyword.as_str() {
        "FROM" => {
            no_flags(&["platform"])?;
            need_args()?;
            let w: Vec<&str> = r.args.split_whitespace().collect();
            let alias = match w.as_slice() {
                [_] => None,
                [_, kw, name] if kw.eq_ignore_ascii_case("as") => Some(name.to_ascii_lowercase()),
                _ => return Err(err(format!("FROM takes IMAGE [AS NAME], got {:?}", r.args))),
            };
            Instr::From {
                image: w[0].to_string(),
                alias,
                platform: flag(r, "platform"),
            }
        }
        "RUN" => {
            no_flags(&["mount", "network", "security"])?;
            need_args()?;
            if let Some(s) = flag(r, "security") {
                return Err(err(format!(
                    "RUN --security={s}: not supported (RUN steps never get extra privileges)"
                )));
            }
            let network = flag(r, "network");
            if let Some(n) = &network {
                if !matches!(n.as_str(), "default" | "none" | "host") {
                    return Err(err(format!(
                        "RUN --network={n}: expected default, none or host"
                    )));
                }
            }
            let mounts = r
                .flags
                .iter()
                .filter(|(k, _)| k == "mount")
                .map(|(_, v)| v.clone().unwrap_or_default())
                .collect();
            let (cmd, heredoc) = match (&r.heredocs[..], r.args.trim()) {
                ([h], a) if a.starts_with("<<") && !a.contains(char::is_whitespace) => {
                    (Command::Shell(h.content.clone()), Some(h.clone()))
                }
                ([], _) => (command(&r.args), None),
                (hs, _) => {
                    // The shell reads its own heredocs: give it the line and the bodies.
                    let mut script = r.args.clone();
                    for h in hs {
                        script.push('\n');
                        script.push_str(&h.content);
                        script.push_str(&h.name);
                    }
                    (Command::Shell(script), None)
                }
            };
            Instr::Run(RunArgs {
                cmd,
                mounts,
                network,
                heredoc,
            })
        }
        "CMD" => {
            no_flags(&[])?;
            need_args()?;
            Instr::Cmd(command(&r.args))
        }
        "ENTRYPOINT" => {
            no_flags(&[])?;
            need_args()?;
            Instr::Entrypoint(command(&r.args))
        }
        "SHELL" => {
            no_flags(&[])?;
            match command(&r.args) {
                Command::Exec(v) if !v.is_empty() => Instr::Shell(v),
                _ => {
                    return Err(err(
                        "SHELL needs a JSON array, e.g. SHELL [\"/bin/sh\", \"-c\"]".into(),
                    ))
                }
            }
        }
        "ENV" => {
            no_flags(&[])?;
            Instr::Env(pairs(file, r, escape)?)
        }
        "LABEL" => {
            no_flags(&[])?;
            Instr::Label(pairs(file, r, escape)?)
        }
        "ARG" => {
            no_flags(&[])?;
            need_args()?;
            let words =
                super::expand::split_raw(&r.args, escape).map_err(|e| err(format!("ARG: {e}")))?;
            let mut out = Vec::new();
            for w in words {
                match w.split_once('=') {
                    Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
                    None => out.push((w, None)),
                }
            }
            Instr::Arg(out)
        }
        "WORKDIR" => {
            no_flags(&[])?;
            need_args()?;
            Instr::Workdir(r.args.trim().to_string())
        }
        "USER" => {
            no_flags(&[])?;
            need_args()?;
            Instr::User(r.args.trim().to_string())
        }
        "EXPOSE" => {
            no_flags(&[])?;
            need_args()?;
            Instr::Expose(r.args.clone())
        }
        "VOLUME" => {
            no_flags(&[])?;
            need_args()?;
            match command(&r.args) {
                Command::Exec(v) => Instr::Volume(v),
                Command::Shell(s) => {
                    Instr::Volume(s.split_whitespace().map(str::to_string).collect())
                }
            }
        }
        "STOPSIGNAL" => {
            no_flags(&[])?;
            need_args()?;
            Instr::StopSignal(r.args.trim().to_string())
        }
        "MAINTAINER" => {
            no_flags(&[])?;
            need_args()?;
            Instr::Maintainer(r.args.trim().to_string())
        }
        "ONBUILD" => {
            no_flags(&[])?;
            need_args()?;
            let first = r.args.split_whitespace().next().unwrap_or("");
            if matches!(
                first.to_ascii_uppercase().as_str(),
                "ONBUILD" | "FROM" | "MAINTAINER"
            ) {
                return Err(err(format!("ONBUILD {first} is not allowed")));
            }
            Instr::Onbuild(r.args.trim().to_string())
        }
        "HEALTHCHECK" => {
            no_flags(&[
                "interval",
                "timeout",
                "start-period",
                "start-interval",
                "retries",
            ])?;
            need_args()?;
            let t = r.args.trim();
            if t.eq_ignore_ascii_case("none") {
                Instr::Healthcheck(None)
            } else {
                let Some(rest) = t
                    .strip_prefix("CMD")
                    .or_else(|| t.strip_prefix("cmd"))
                    .filter(|s| s.starts_with(char::is_whitespace))
                else {
                    return Err(err("HEALTHCHECK takes NONE or CMD COMMAND".into()));
                };
                Instr::Healthcheck(Some(Healthcheck {
                    flags: r.flags.clone(),
                    cmd: command(rest.trim()),
                }))
            }
        }
        "COPY" | "ADD" => {
            if r.keyword == "COPY" {
                no_flags(&["from", "chown", "chmod", "link", "parents", "exclude"])?;
            } else {
                no_flags(&[
                    "chown",
                    "chmod",
                    "link",
                    "exclude",
                    "checksum",
                    "keep-git-dir",
                ])?;
            }
            let checksum = flag(r, "checksum");
            if let Some(c) = &checksum {
                let hex = c.strip_prefix("sha256:").unwrap_or("");
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(err(format!(
                        "ADD --checksum={c}: expected sha256:<64 hex digits>"
                    )));
                }
            }
            let bool_flag = |name: &str| -> Result<bool> {
                match flag(r, name).as_deref() {
                    None => Ok(false),
                    Some("" | "true") => Ok(true),
                    Some("false") => Ok(false),
                    Some(v) => Err(err(format!(
                        "{} --{name}={v}: expected true or false",
                        r.keyword
                    ))),
                }
            };
            let paths = match command(&r.args) {
                Command::Exec(v) => v,
                Command::Shell(s) => s.split_whitespace().map(str::to_string).collect(),
            };
            if paths.len() < 2 {
                return Err(err(format!(
                    "{} needs at least two arguments: SOURCE... DEST",
                    r.keyword
                )));
            }
            let a = CopyArgs {
                from: flag(r, "from"),
                chown: flag(r, "chown"),
                chmod: flag(r, "chmod"),
                link: bool_flag("link")?,
                parents: bool_flag("parents")?,
                excludes: r
                    .flags
                    .iter()
                    .filter(|(k, _)| k == "exclude")
                    .map(|(_, v)| v.clone().unwrap_or_default())
                    .collect(),
                checksum,
                keep_git_dir: bool_flag("keep-git-dir")?,
                paths,
                heredocs: r.heredocs.clone(),
            };
            if r.keyword == "COPY" {
                Instr::Copy(a)
            } else {
                Instr::Add(a)
            }
        }
        "" => return Err(err("empty instruction".into())),
        other => return Err(err(format!("unknown instruction: {other}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_comments_and_escape_directive() {
        let p = parse(
            "Dockerfile",
            "# escape=`\nFROM scratch\nRUN echo a `\n# comment inside\n  b\nENV A=1 B=\"x y\"\n",
        )
        .unwrap();
        assert_eq!(p.escape, '`');
        assert_eq!(p.instrs[1].line, 3);
        assert_eq!(
            p.instrs[1].instr,
            Instr::Run(run(Command::Shell("echo a   b".into())))
        );
        assert_eq!(
            p.instrs[2].instr,
            Instr::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "\"x y\"".into())
            ])
        );
    }

    #[test]
    fn heredocs() {
        let p = parse(
            "Dockerfile",
            "FROM scratch\nRUN <<EOF\necho hi\nEOF\nCOPY <<-'END' /f\n\tbody $x\n\tEND\nRUN cat <<A > /x\nline\nA\n",
        )
        .unwrap();
        let Instr::Run(r) = &p.instrs[1].instr else {
            panic!()
        };
        assert_eq!(r.cmd, Command::Shell("echo hi\n".into()));
        assert_eq!(r.heredoc.as_ref().map(|h| h.name.as_str()), Some("EOF"));
        let Instr::Copy(c) = &p.instrs[2].instr else {
            panic!()
        };
        assert_eq!(c.heredocs[0].content, "body $x\n");
        assert!(c.heredocs[0].quoted);
        assert_eq!(p.instrs[3].line, 8);
        assert_eq!(
            p.instrs[3].instr,
            Instr::Run(run(Command::Shell("cat <<A > /x\nline\nA".into())))
        );
        let e = parse("Dockerfile", "FROM scratch\nRUN <<EOF\nx\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Dockerfile:2: unterminated heredoc"),
            "{e}"
        );
    }

    fn run(cmd: Command) -> RunArgs {
        RunArgs {
            cmd,
            mounts: Vec::new(),
            network: None,
            heredoc: None,
        }
    }

    #[test]
    fn buildkit_flags_and_check_directive() {
        let p = parse(
            "Dockerfile",
            "# check=skip=all\nFROM scratch\nRUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t --network=none true\nCOPY --link --parents --exclude=*.md --exclude=x a /d/\nADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 f /f\n",
        )
        .unwrap();
        assert_eq!(
            p.notices,
            vec!["Dockerfile:1: # check=skip=all: build checks are not run by brig-build"]
        );
        let Instr::Run(r) = &p.instrs[1].instr else {
            panic!()
        };
        assert_eq!(
            r.mounts,
            vec!["type=cache,target=/c", "type=tmpfs,target=/t"]
        );
        assert_eq!(r.network.as_deref(), Some("none"));
        let Instr::Copy(c) = &p.instrs[2].instr else {
            panic!()
        };
        assert!(c.link && c.parents);
        assert_eq!(c.excludes, vec!["*.md", "x"]);
        let Instr::Add(a) = &p.instrs[3].instr else {
            panic!()
        };
        assert!(a.checksum.is_some());
        for (bad, want) in [
            (
                "FROM scratch\nRUN --network=bridge true\n",
                "Dockerfile:2: RUN --network=bridge",
            ),
            (
                "FROM scratch\nRUN --security=insecure true\n",
                "Dockerfile:2: RUN --security",
            ),
            (
                "FROM scratch\nADD --checksum=md5:x f /f\n",
                "Dockerfile:2: ADD --checksum",
            ),
            (
                "FROM scratch\nCOPY --checksum=sha256:x f /f\n",
                "unknown flag --checksum",
            ),
            (
                "FROM scratch\nCOPY --parents=maybe f /f\n",
                "--parents=maybe",
            ),
        ] {
            let e = parse("Dockerfile", bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("Dockerfile", "FROM scratch\n\nFOO bar\n").unwrap_err();
        assert_eq!(e.to_string(), "Dockerfile:3: unknown instruction: FOO");
        let e = parse("Dockerfile", "FROM scratch\nCOPY a\n").unwrap_err();
        assert!(e.to_string().starts_with("Dockerfile:2: COPY needs"), "{e}");
        let e = parse("Dockerfile", "FROM scratch\nCOPY --bogus=1 a b\n").unwrap_err();
        assert!(e.to_string().contains("unknown flag --bogus"), "{e}");
        let e = parse("Dockerfile", "FROM\n").unwrap_err();
        assert_eq!(e.to_string(), "Dockerfile:1: FROM needs an argument");
    }

    #[test]
    fn size_limits_name_the_limit_and_line() {
        let long = "x".repeat(MAX_INSTRUCTION_BYTES);
        let e = parse("Dockerfile", &format!("FROM scratch\nRUN {long}\n")).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.to_string().contains("MAX_INSTRUCTION_BYTES"), "{e}");
        // Joined continuation lines count together, from the instruction's first line.
        let half = "y".repeat(MAX_INSTRUCTION_BYTES / 2 + 1);
        let e = parse(
            "Dockerfile",
            &format!("FROM scratch\n\nRUN {half} \\\n {half}\n"),
        )
        .unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.to_string().contains("MAX_INSTRUCTION_BYTES"), "{e}");
        // Just under the limit is fine.
        let ok = "z".repeat(MAX_INSTRUCTION_BYTES - 10);
        parse("Dockerfile", &format!("FROM scratch\nRUN {ok}\n")).unwrap();
        // The whole file.
        let many = "RUN true\n".repeat(MAX_DOCKERFILE_BYTES / 9 + 1);
        let e = parse("Dockerfile", &format!("FROM scratch\n{many}")).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("Dockerfile: larger than {MAX_DOCKERFILE_BYTES} bytes (MAX_DOCKERFILE_BYTES)")
        );
    }

    #[test]
    fn forms() {
        let p = parse(
            "Dockerfile",
            "FROM a AS Build\nCMD [\"a\", \"b\"]\nCMD [bad json\nCOPY --from=build --chown=1:2 --chmod=640 x y /z/\nLABEL k v w\n",
        )
        .unwrap();
        assert_eq!(
            p.instrs[0].instr,
            Instr::From {
                image: "a".into(),
                alias: Some("build".into()),
                platform: None
            }
        );
        assert_eq!(
            p.instrs[1].instr,
            Instr::Cmd(Command::Exec(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            p.instrs[2].instr,
            Instr::Cmd(Command::Shell("[bad json".into()))
        );
        let Instr::Copy(c) = &p.instrs[3].instr else {
            panic!()
        };
        assert_eq!(c.from.as_deref(), Some("build"));
        assert_eq!(c.chmod.as_deref(), Some("640"));
        assert_eq!(c.paths, vec!["x", "y", "/z/"]);
        assert_eq!(
            p.instrs[4].instr,
            Instr::Label(vec![("k".into(), "v w".into())])
        );
    }
}
