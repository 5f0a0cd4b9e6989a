//! Variable substitution and word splitting with the Dockerfile's shell-like rules.
//!
//! Owns: `$v`, `${v}`, `${v:-default}`, `${v-default}`, `${v:+alt}`, `${v+alt}`, `${v:?msg}`,
//! `${v?msg}`, quote removal (single quotes are literal, double quotes allow substitution) and
//! the escape character of the `# escape=` directive. Never touches RUN/CMD/ENTRYPOINT: their
//! text goes to the image's shell untouched, as the Dockerfile reference says.
//!
//! Hand-written because the `dockerfile-parser` crate only splices plain `$v`/`${v}` references
//! in FROM lines; it has no default/alternate forms and no notion of the escape directive.

/// The most one expansion (a word, or a list of words processed together) may produce. Without
/// a bound, `ARG L1=${L0}${L0}`, `ARG L2=${L1}${L1}`, ... doubles at each line and a dozen lines
/// exhaust memory. One MiB is far above what a process can receive anyway (Linux refuses a
/// single environment string over 128 KiB at exec).
pub const MAX_EXPANDED_WORD: usize = 1 << 20;

/// The error for an expansion over [`MAX_EXPANDED_WORD`].
fn too_long() -> String {
    format!("variable expansion is longer than {MAX_EXPANDED_WORD} bytes (MAX_EXPANDED_WORD)")
}

fn bounded(out: &str) -> Result<(), String> {
    if out.len() > MAX_EXPANDED_WORD {
        return Err(too_long());
    }
    Ok(())
}

/// Looks a variable up; None when it is not set.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Processes one word: substitution and quote removal. Whitespace is kept as is.
pub fn word(s: &str, env: Lookup<'_>, escape: char) -> Result<String, String> {
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    process(&chars, &mut i, env, escape, &mut out, None, &mut None)?;
    Ok(out)
}

/// Processes a list of words: like [`word`] but splits at unquoted whitespace (empty words
/// coming from unquoted empty expansions are dropped, as a shell does).
pub fn words(s: &str, env: Lookup<'_>, escape: char) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut cur = String::new();
    let mut split = Some(Vec::new());
    process(&chars, &mut i, env, escape, &mut cur, None, &mut split)?;
    let marks = split.unwrap_or_default();
    // `marks` holds the byte offsets in `cur` where unquoted whitespace separated words, plus
    // whether the word had quotes (so `""` is a word).
    let mut start = 0;
    for (end, quoted) in marks {
        let w = &cur[start..end];
        if !w.is_empty() || quoted {
            words.push(w.to_string());
        }
        start = end;
    }
    Ok(words)
}

/// Splits at unquoted, unescaped whitespace without processing anything (quotes and escapes are
/// kept, for `NAME=VALUE` lists whose values are processed afterwards).
pub fn split_raw(s: &str, escape: char) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == q {
                    quote = None;
                } else if c == escape && q == '"' {
                    if let Some(n) = it.next() {
                        cur.push(n);
                    }
                }
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            None => {
                cur.push(c);
                if c == '"' || c == '\'' {
                    quote = Some(c);
                } else if c == escape {
                    if let Some(n) = it.next() {
                        cur.push(n);
                    }
                }
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("unterminated quote {q} in {s:?}"));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// The shared worker. Reads from `i` until the end (or until `stop` at depth 0 when inside a
/// `${v:-...}` word); pushes the result to `out`. When `split` is Some, records word ends.
fn process(
    s: &[char],
    i: &mut usize,
    env: Lookup<'_>,
    escape: char,
    out: &mut String,
    stop: Option<char>,
    split: &mut Option<Vec<(usize, bool)>>,
) -> Result<(), String> {
    let mut quoted_word = false;
    while *i < s.len() {
        let c = s[*i];
        if Some(c) == stop {
            return Ok(());
        }
        *i += 1;
        if c == escape {
            if *i < s.len() {
                out.push(s[*i]);
                *i += 1;
            } else {
                out.push(c);
            }
        } else if c == '\'' {
            quoted_word = true;
            loop {
                if *i >= s.len() {
                    return Err("unterminated single quote".into());
                }
                let c = s[*i];
                *i += 1;
                if c == '\'' {
                    break;
                }
                out.push(c);
            }
        } else if c == '"' {
            quoted_word = true;
            loop {
                if *i >= s.len() {
                    return Err("unterminated double quote".into());
                }
                let c = s[*i];
                *i += 1;
                if c == '"' {
                    break;
                } else if c == escape && *i < s.len() && matches!(s[*i], '"' | '$') {
                    out.push(s[*i]);
                    *i += 1;
                } else if c == escape && *i < s.len() && s[*i] == escape {
                    out.push(escape);
                    *i += 1;
                } else if c == '$' {
                    dollar(s, i, env, escape, out)?;
                } else {
                    out.push(c);
                }
            }
        } else if c == '$' {
            let mut v = String::new();
            dollar(s, i, env, escape, &mut v)?;
            match split.as_mut() {
                // An unquoted expansion is split into words too (`EXPOSE $PORTS`).
                Some(marks) => {
                    for ch in v.chars() {
                        if ch.is_whitespace() {
                            marks.push((out.len(), quoted_word));
                            quoted_word = false;
                        } else {
                            out.push(ch);
                        }
                    }
                }
                None => out.push_str(&v),
            }
            bounded(out)?;
        } else if c.is_whitespace() && split.is_some() {
            if let Some(marks) = split.as_mut() {
                marks.push((out.len(), quoted_word));
            }
            quoted_word = false;
        } else {
            out.push(c);
        }
    }
    if let Some(marks) = split.as_mut() {
        marks.push((out.len(), quoted_word));
    }
    if stop.is_some() {
        return Err("missing '}' in variable reference".into());
    }
    Ok(())
}

/// After a `$`: a name, `{name}`, `{name<op>word}`, or a lone `$`.
fn dollar(
    s: &[char],
    i: &mut usize,
    env: Lookup<'_>,
    escape: char,
    out: &mut String,
) -> Result<(), String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if *i < s.len() && s[*i] == '{' {
        *i += 1;
        let start = *i;
        while *i < s.len() && is_name(s[*i]) {
            *i += 1;
        }
        let name: String = s[start..*i].iter().collect();
        if name.is_empty() {
            return Err("bad substitution: empty variable name".into());
        }
        if *i >= s.len() {
            return Err(format!("missing '}}' after ${{{name}"));
        }
        if s[*i] == '}' {
            *i += 1;
            out.push_str(&env(&name).unwrap_or_default());
            return bounded(out);
        }
        let colon = s[*i] == ':';
        if colon {
            *i += 1;
        }
        let op = s.get(*i).copied().ok_or("missing '}'")?;
        if !matches!(op, '-' | '+' | '?') {
            return Err(format!("unsupported modifier {op:?} in ${{{name}...}}"));
        }
        *i += 1;
        let mut arg = String::new();
        process(s, i, env, escape, &mut arg, Some('}'), &mut None)?;
        *i += 1; // the '}'
        let val = env(&name);
        let set = match &val {
            Some(v) => !(colon && v.is_empty()),
            None => false,
        };
        match op {
            '-' => out.push_str(&if set { val.unwrap_or_default() } else { arg }),
            '+' => {
                if set {
                    out.push_str(&arg)
                }
            }
            _ => {
                if !set {
                    let msg = if arg.is_empty() {
                        "is not set".to_string()
                    } else {
                        arg
                    };
                    return Err(format!("{name}: {msg}"));
                }
                out.push_str(&val.unwrap_or_default());
            }
        }
        return bounded(out);
    }
    let start = *i;
    while *i < s.len() && is_name(s[*i]) {
        *i += 1;
    }
    if start == *i {
        out.push('$');
    } else {
        let name: String = s[start..*i].iter().collect();
        out.push_str(&env(&name).unwrap_or_default());
    }
    bounded(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(n: &str) -> Option<String> {
        match n {
            "A" => Some("a".into()),
            "E" => Some(String::new()),
            "SP" => Some("x y".into()),
            _ => None,
        }
    }

    #[test]
    fn substitution_forms() {
        let w = |s: &str| word(s, &env, '\\').unwrap();
        assert_eq!(w("$A-${A}"), "a-a");
        assert_eq!(w("${U:-d}/${A:-d}/${E:-d}/${E-d}"), "d/a/d/");
        assert_eq!(w("${A:+x}/${U:+x}/${E:+x}/${E+x}"), "x///x");
        assert_eq!(w("${U:-${A}b}"), "ab");
        assert_eq!(w("'$A' \"$A\" \\$A"), "$A a $A");
        assert_eq!(w("a$"), "a$");
        assert!(word("${A", &env, '\\').is_err());
        assert!(word("${U:?needed}", &env, '\\')
            .unwrap_err()
            .contains("needed"));
        assert_eq!(word("`$A", &env, '`').unwrap(), "$A");
    }

    #[test]
    fn expansion_is_bounded() {
        // ARG L1=${L0}${L0}... chained: each level doubles; the first one over the bound fails.
        let mut vars = std::collections::HashMap::new();
        vars.insert("L0".to_string(), "x".repeat(1000));
        let mut failed_at = None;
        for n in 1..=12 {
            let look = |k: &str| vars.get(k).cloned();
            let w = format!("${{L{p}}}${{L{p}}}", p = n - 1);
            match word(&w, &look, '\\') {
                Ok(v) => {
                    vars.insert(format!("L{n}"), v);
                }
                Err(e) => {
                    assert!(e.contains("MAX_EXPANDED_WORD"), "{e}");
                    failed_at = Some(n);
                    break;
                }
            }
        }
        // 1000 * 2^10 bytes is 1,024,000 (allowed); 2^11 times is over 1 MiB.
        assert_eq!(failed_at, Some(11));
        // Every form is bounded: defaults, alternates, quotes, word lists.
        let big = |n: &str| (n == "B").then(|| "y".repeat(MAX_EXPANDED_WORD / 2 + 1));
        for w in [
            "$B$B",
            "${B}${B}",
            "${U:-$B}$B",
            "${B:+$B}$B",
            "\"$B\"$B",
            "${B}x${B}",
        ] {
            let e = word(w, &big, '\\').unwrap_err();
            assert!(e.contains("MAX_EXPANDED_WORD"), "{w}: {e}");
        }
        assert!(words("$B $B", &big, '\\').is_err());
        assert!(word("$B", &big, '\\').is_ok());
    }

    #[test]
    fn word_splitting() {
        let ws = |s: &str| words(s, &env, '\\').unwrap();
        assert_eq!(ws("a  \"b c\" $SP ''"), vec!["a", "b c", "x", "y", ""]);
        assert_eq!(ws("$U x"), vec!["x"]);
        assert_eq!(
            split_raw("a=\"b c\" d=e\\ f", '\\').unwrap(),
            vec!["a=\"b c\"", "d=e\\ f"]
        );
        assert!(split_raw("a=\"b", '\\').is_err());
    }

    #[test]
    fn default_and_alternate_with_and_without_colon() {
        let w = |s: &str| word(s, &env, '\\').unwrap();
        // `-`: unset takes the default; with `:`, empty does too.
        assert_eq!(w("[${U-d}][${E-d}][${A-d}]"), "[d][][a]");
        assert_eq!(w("[${U:-d}][${E:-d}][${A:-d}]"), "[d][d][a]");
        // `+`: set takes the alternate; with `:`, only when not empty.
        assert_eq!(w("[${U+x}][${E+x}][${A+x}]"), "[][x][x]");
        assert_eq!(w("[${U:+x}][${E:+x}][${A:+x}]"), "[][][x]");
        // The word after the operator is itself expanded, quoted and escaped.
        assert_eq!(w("${A:+$A$A}"), "aa");
        assert_eq!(w("${U:-'$A'}"), "$A");
        assert_eq!(w("${U:-\"a}b\"}"), "a}b");
        assert_eq!(w("${U:-\\}}"), "}");
        assert_eq!(w("${U:-${V:-${A}}}"), "a");
        // An empty default or alternate word is allowed.
        assert_eq!(w("[${U:-}][${A:+}]"), "[][]");
    }

    #[test]
    fn required_variables() {
        let w = |s: &str| word(s, &env, '\\');
        assert_eq!(w("${A:?m}").unwrap(), "a");
        assert_eq!(w("${A?m}").unwrap(), "a");
        // Without `:`, set but empty is fine.
        assert_eq!(w("[${E?m}]").unwrap(), "[]");
        assert_eq!(
            w("${E:?must not be empty}").unwrap_err(),
            "E: must not be empty"
        );
        assert_eq!(w("${U?}").unwrap_err(), "U: is not set");
        assert_eq!(w("${U:?}").unwrap_err(), "U: is not set");
        // The message is expanded too.
        assert_eq!(w("${U:?no $A}").unwrap_err(), "U: no a");
    }

    #[test]
    fn undefined_variables_and_names() {
        let w = |s: &str| word(s, &env, '\\').unwrap();
        assert_eq!(w("[$U][${U}]"), "[][]");
        // A name is letters, digits and `_`: `$Ab` is the variable Ab, `${A}b` is A then b.
        assert_eq!(w("$Ab|${A}b|$A.b|$A-b|$A_B"), "|ab|a.b|a-b|");
        // A `$` not followed by a name stays.
        assert_eq!(w("$ $. $$ a$"), "$ $. $$ a$");
        // An undefined variable alone makes no word; quoted, an empty one.
        assert_eq!(words("$U", &env, '\\').unwrap(), Vec::<String>::new());
        assert_eq!(words("\"$U\"", &env, '\\').unwrap(), vec![""]);
        assert_eq!(words("'' $U \"\"", &env, '\\').unwrap(), vec!["", ""]);
    }

    #[test]
    fn escapes_and_quotes() {
        let w = |s: &str| word(s, &env, '\\').unwrap();
        assert_eq!(w(r"\$A \\ \' \x"), r"$A \ ' x");
        // In double quotes only `"`, `$` and the escape itself are escaped.
        assert_eq!(w(r#""\" \$A \\ \n $A""#), r#"" $A \ \n a"#);
        // Single quotes keep everything.
        assert_eq!(w(r#"'\$A "$A"'"#), r#"\$A "$A""#);
        // A trailing escape is kept.
        assert_eq!(w(r"a\"), r"a\");
        // With `# escape=`` (Windows), a backslash is an ordinary character.
        assert_eq!(word(r"C:\dir\$A `$A", &env, '`').unwrap(), r"C:\dir\a $A");
        // An escaped space does not split words; a quoted one neither.
        assert_eq!(
            words(r#"a\ b "c d" e"#, &env, '\\').unwrap(),
            vec!["a b", "c d", "e"]
        );
        // An unquoted default that holds spaces is split; a quoted one is one word.
        assert_eq!(words("${U:-x y}", &env, '\\').unwrap(), vec!["x", "y"]);
        assert_eq!(words("\"${U:-x y}\"", &env, '\\').unwrap(), vec!["x y"]);
    }

    #[test]
    fn malformed_references_and_quotes_are_refused() {
        let e = |s: &str| word(s, &env, '\\').unwrap_err();
        assert_eq!(e("${}"), "bad substitution: empty variable name");
        assert_eq!(e("${-x}"), "bad substitution: empty variable name");
        assert_eq!(e("${A"), "missing '}' after ${A");
        assert_eq!(e("${A:"), "missing '}'");
        assert_eq!(e("${U:-x"), "missing '}' in variable reference");
        assert_eq!(e("${A:x}"), "unsupported modifier 'x' in ${A...}");
        assert_eq!(e("${A/a/b}"), "unsupported modifier '/' in ${A...}");
        assert_eq!(e("'abc"), "unterminated single quote");
        assert_eq!(e("\"abc"), "unterminated double quote");
        assert_eq!(e("${U:-'x}"), "unterminated single quote");
        assert_eq!(
            words("a \"b", &env, '\\').unwrap_err(),
            "unterminated double quote"
        );
    }

    #[test]
    fn expansion_bound_is_exact() {
        let sized = |n: usize| move |k: &str| (k == "B").then(|| "y".repeat(n));
        // Exactly MAX_EXPANDED_WORD bytes is allowed, one more is not.
        let at = sized(MAX_EXPANDED_WORD);
        assert_eq!(word("$B", &at, '\\').unwrap().len(), MAX_EXPANDED_WORD);
        assert_eq!(
            word("\"${B}\"", &at, '\\').unwrap().len(),
            MAX_EXPANDED_WORD
        );
        // Text before an expansion counts towards the bound.
        assert_eq!(word("x$B", &at, '\\').unwrap_err(), too_long());
        let over = sized(MAX_EXPANDED_WORD + 1);
        for w in ["$B", "${B}", "${B:?m}", "${U:-$B}", "${A:+$B}", "'q'\"$B\""] {
            assert_eq!(word(w, &over, '\\').unwrap_err(), too_long(), "{w}");
        }
        assert_eq!(words("a $B", &over, '\\').unwrap_err(), too_long());
        // The message names the limit.
        assert!(too_long().contains(&MAX_EXPANDED_WORD.to_string()));
    }

    #[test]
    fn split_raw_keeps_quotes_and_escapes() {
        assert_eq!(
            split_raw("  a='b c'   d=\"e \\\" f\" g\\ h  ", '\\').unwrap(),
            vec!["a='b c'", "d=\"e \\\" f\"", "g\\ h"]
        );
        assert_eq!(split_raw("", '\\').unwrap(), Vec::<String>::new());
        // With another escape character, a backslash does not join words.
        assert_eq!(
            split_raw("a\\ b c` d", '`').unwrap(),
            vec!["a\\", "b", "c` d"]
        );
        assert_eq!(
            split_raw("a='b", '\\').unwrap_err(),
            "unterminated quote ' in \"a='b\""
        );
    }
}
