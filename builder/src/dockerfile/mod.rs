//! The Dockerfile: parsing ([`parse`]), variable substitution ([`expand`]), `.dockerignore`
//! ([`ignore`]) and the split into stages ([`stages`]).
//!
//! Everything here is pure text processing: no file system access except reading the ignore
//! file, no knowledge of images. Every error names `FILE:LINE`.

pub mod expand;
pub mod ignore;
pub mod parse;

pub use parse::{Command, CopyArgs, Heredoc, Instr, Located, Parsed, RunArgs};

/// An error in the Dockerfile, rendered `Dockerfile:7: message` (line 0: no line).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{msg}", if *.line > 0 { format!("{file}:{line}: ") } else { format!("{file}: ") })]
pub struct DfError {
    pub file: String,
    pub line: usize,
    pub msg: String,
}

impl DfError {
    pub fn new(file: &str, line: usize, msg: impl Into<String>) -> DfError {
        DfError {
            file: file.to_string(),
            line,
            msg: msg.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, DfError>;

/// One stage: its FROM and the instructions after it.
#[derive(Debug, Clone)]
pub struct Stage {
    pub index: usize,
    /// Lower-cased `AS` name.
    pub name: Option<String>,
    /// FROM's image, unexpanded.
    pub base: String,
    /// FROM's `--platform`, unexpanded.
    pub platform: Option<String>,
    pub line: usize,
    pub instrs: Vec<Located>,
}

/// The Dockerfile split into the ARGs before the first FROM and the stages.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    pub file: String,
    pub escape: char,
    /// Accepted-but-ignored notices of the parser (printed by the build).
    pub notices: Vec<String>,
    /// `ARG` instructions before the first FROM (line, name, default).
    pub global_args: Vec<(usize, String, Option<String>)>,
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    pub fn parse(file: &str, text: &str) -> Result<Dockerfile> {
        let parsed = parse::parse(file, text)?;
        stages(file, parsed)
    }

    /// The stage named (case-insensitive) or numbered `r`.
    pub fn stage(&self, r: &str) -> Option<&Stage> {
        let lower = r.to_ascii_lowercase();
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(&lower))
            .or_else(|| r.parse::<usize>().ok().and_then(|i| self.stages.get(i)))
    }
}

/// Groups instructions into stages and checks what only needs the text: only ARG before the
/// first FROM, unique stage names.
pub fn stages(file: &str, parsed: Parsed) -> Result<Dockerfile> {
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for l in parsed.instrs {
        match l.instr {
            Instr::From {
                image,
                alias,
                platform,
            } => {
                if let Some(a) = &alias {
                    if stages.iter().any(|s| s.name.as_deref() == Some(a)) {
                        return Err(DfError::new(
                            file,
                            l.line,
                            format!("duplicate stage name {a:?}"),
                        ));
                    }
                    if a.parse::<usize>().is_ok() {
                        return Err(DfError::new(
                            file,
                            l.line,
                            format!("stage name {a:?} cannot be a number"),
                        ));
                    }
                }
                stages.push(Stage {
                    index: stages.len(),
                    name: alias,
                    base: image,
                    platform,
                    line: l.line,
                    instrs: Vec::new(),
                });
            }
            instr => match stages.last_mut() {
                Some(s) => s.instrs.push(Located {
                    line: l.line,
                    instr,
                }),
                None => match instr {
                    Instr::Arg(args) => {
                        for (k, v) in args {
                            global_args.push((l.line, k, v));
                        }
                    }
                    _ => {
                        return Err(DfError::new(
                            file,
                            l.line,
                            "only ARG may come before the first FROM",
                        ))
                    }
                },
            },
        }
    }
    Ok(Dockerfile {
        file: file.to_string(),
        escape: parsed.escape,
        notices: parsed.notices,
        global_args,
        stages,
    })
}
