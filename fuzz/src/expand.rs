//! Target `expand`: the builder's variable substitution and word splitting
//! (`brig_build::dockerfile::expand`) on their own.
//!
//! Input: the first byte picks the escape character (`\` or `` ` ``); then
//! `NAME=VALUE` lines, up to an empty line, are the variables; the rest is
//! the word. Invariants: no panic; what comes out is at most
//! `MAX_EXPANDED_WORD` bytes; a word with nothing to substitute, quote or
//! escape comes out as it went in.

use std::collections::BTreeMap;

use brig_build::dockerfile::expand::{self, MAX_EXPANDED_WORD};

pub fn run(data: &[u8]) {
    let Some((&e, rest)) = data.split_first() else {
        return;
    };
    let escape = if e & 1 == 0 { '\\' } else { '`' };
    let text = String::from_utf8_lossy(rest);
    let (vars, word) = text.split_once("\n\n").unwrap_or(("", &text));
    let env: BTreeMap<&str, &str> = vars.lines().filter_map(|l| l.split_once('=')).collect();
    let look = |n: &str| env.get(n).map(|v| v.to_string());

    if let Ok(w) = expand::word(word, &look, escape) {
        assert!(w.len() <= MAX_EXPANDED_WORD, "word: {} bytes", w.len());
        let plain = !word.contains(['$', '\'', '"', escape]);
        if plain {
            assert_eq!(w, word, "a word with nothing to process changed");
        }
    }
    if let Ok(ws) = expand::words(word, &look, escape) {
        let total: usize = ws.iter().map(String::len).sum();
        assert!(total <= MAX_EXPANDED_WORD, "words: {total} bytes");
        let plain = !word.contains(['$', '\'', '"', escape]);
        if plain {
            let want: Vec<&str> = word.split_whitespace().collect();
            assert_eq!(ws, want, "plain words split differently from whitespace");
        }
    }
    if let Ok(raw) = expand::split_raw(word, escape) {
        // Nothing is processed: the pieces are the word's own text.
        for piece in &raw {
            assert!(word.contains(piece.as_str()), "split_raw made up {piece:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_and_findings() {
        crate::replay("seeds/expand", super::run);
    }
}
