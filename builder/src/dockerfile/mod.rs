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

/// The largest Dockerfile read. Real ones are a few KiB, heredocs included; the bound keeps a
/// runaway file from costing memory in proportion (the parser keeps per-line indexes and
/// several copies of each instruction).
pub const MAX_DOCKERFILE_BYTES: usize = 4 << 20;

/// The Dockerfile's bytes as text: at most [`MAX_DOCKERFILE_BYTES`] (a caller reading a file
/// may stop after one byte more) and UTF-8, else an error naming the line, column and file
/// offset of the first invalid byte.
pub fn decode(file: &str, bytes: Vec<u8>) -> Result<String> {
    if bytes.len() > MAX_DOCKERFILE_BYTES {
        return Err(parse::too_big(file));
    }
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let off = e.utf8_error().valid_up_to();
        let line_start = bytes[..off]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let line = 1 + bytes[..off].iter().filter(|&&b| b == b'\n').count();
        DfError::new(
            file,
            line,
            format!(
                "invalid UTF-8: byte 0x{:02x} at column {} (byte offset {off} in the file)",
                bytes[off],
                off - line_start + 1
            ),
        )
    })
}

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

    /// True when some stage has a RUN instruction (a build without one runs no program of
    /// the image, so it needs no emulator for a foreign platform).
    pub fn has_run(&self) -> bool {
        self.stages
            .iter()
            .any(|s| s.instrs.iter().any(|l| matches!(l.instr, Instr::Run(_))))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_names_line_and_column() {
        let text = b"FROM scratch\nRUN echo ok\nRUN echo \xff\xfe\n".to_vec();
        let e = decode("Dockerfile", text).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Dockerfile:3: invalid UTF-8: byte 0xff at column 10 (byte offset 34 in the file)"
        );
        // A truncated multi-byte sequence on the first line.
        let e = decode("df", b"FROM a\xc3".to_vec()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "df:1: invalid UTF-8: byte 0xc3 at column 7 (byte offset 6 in the file)"
        );
        assert_eq!(decode("df", "FROM é\n".into()).unwrap(), "FROM é\n");
        let big = vec![b'#'; MAX_DOCKERFILE_BYTES + 1];
        assert!(decode("df", big)
            .unwrap_err()
            .to_string()
            .contains("MAX_DOCKERFILE_BYTES"));
    }
}
