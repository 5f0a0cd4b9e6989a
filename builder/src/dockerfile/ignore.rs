//! `.dockerignore` patterns: which context paths COPY and ADD may not see.
//!
//! Rules of the Dockerfile reference: one pattern a line, `#` comments, paths cleaned and made
//! relative to the context root, Go `filepath.Match` syntax (`*`, `?`, `[...]`) plus `**` for any
//! number of directories, `!` re-includes; the last matching pattern wins and a pattern that
//! matches a directory excludes everything below it. Hand-written: the `ignore` crate implements
//! gitignore, whose rules differ (unanchored patterns match at any depth there).

/// A parsed ignore file.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<(bool, Vec<String>)>,
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for l in text.lines() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (neg, p) = match l.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, l),
            };
            let segs = clean(p);
            if segs.is_empty() {
                continue;
            }
            patterns.push((neg, segs));
        }
        Ignore { patterns }
    }

    /// True if the context-relative path `rel` is excluded.
    pub fn excluded(&self, rel: &str) -> bool {
        let path = clean(rel);
        if path.is_empty() {
            return false;
        }
        let mut excluded = false;
        for (neg, pat) in &self.patterns {
            // A pattern matching the path or one of its parents applies.
            let hit = (1..=path.len()).any(|n| match_segs(pat, &path[..n]));
            if hit {
                excluded = !neg;
            }
        }
        excluded
    }

    /// True if a walk must go into the excluded directory `rel` because an exception (`!`)
    /// may re-include something below it (BuildKit's fsutil filter): always when an
    /// exception has wildcards before its end, else when one starts with `rel/`.
    pub fn may_include_below(&self, rel: &str) -> bool {
        let dir = clean(rel).join("/") + "/";
        self.patterns
            .iter()
            .filter(|(neg, _)| *neg)
            .any(|(_, pat)| {
                let mut p = pat.join("/");
                for tail in ["/**", "/*"] {
                    if let Some(t) = p.strip_suffix(tail) {
                        p = t.to_string();
                        break;
                    }
                }
                p.contains(['*', '?', '[', '\\']) || (p + "/").starts_with(&dir)
            })
    }

    /// True if a walk leaves out `rel` and everything below it.
    pub fn prunes(&self, rel: &str, is_dir: bool) -> bool {
        self.excluded(rel) && !(is_dir && self.may_include_below(rel))
    }
}

/// Splits into segments with `.`, empty and leading `..` segments resolved lexically.
fn clean(p: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in p.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_string()),
        }
    }
    out
}

fn match_segs(pat: &[String], path: &[String]) -> bool {
    match pat.first() {
        None => path.is_empty(),
        Some(p) if p == "**" => (0..=path.len()).any(|k| match_segs(&pat[1..], &path[k..])),
        Some(p) => match path.first() {
            Some(s) if glob(p.as_bytes(), s.as_bytes()) => match_segs(&pat[1..], &path[1..]),
            _ => false,
        },
    }
}

/// `filepath.Match` for one segment.
pub(crate) fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|k| glob(&p[1..], &s[k..])),
        Some(b'?') => !s.is_empty() && glob(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(c) = s.first() else { return false };
            let Some(end) = p.iter().skip(1).position(|&b| b == b']').map(|e| e + 1) else {
                return p[0] == *c && glob(&p[1..], &s[1..]);
            };
            let mut class = &p[1..end];
            let negate = matches!(class.first(), Some(b'^') | Some(b'!'));
            if negate {
                class = &class[1..];
            }
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= *c && *c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == *c;
                    i += 1;
                }
            }
            hit != negate && glob(&p[end + 1..], &s[1..])
        }
        Some(b'\\') if p.len() > 1 => s.first() == Some(&p[1]) && glob(&p[2..], &s[1..]),
        Some(&b) => s.first() == Some(&b) && glob(&p[1..], &s[1..]),
    }
}

/// True if `ignore` (if any) leaves out `rel` (a directory: with all below it) from a walk.
pub fn pruned_path(ignore: Option<&Ignore>, rel: &std::path::Path, is_dir: bool) -> bool {
    ignore
        .map(|i| i.prunes(&rel.to_string_lossy(), is_dir))
        .unwrap_or(false)
}

/// True if `ignore` (if any) excludes the relative path `rel`.
pub fn excluded_path(ignore: Option<&Ignore>, rel: &std::path::Path) -> bool {
    ignore
        .map(|i| i.excluded(&rel.to_string_lossy()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let i = Ignore::parse("# c\n*.log\n!keep.log\nbuild/\n**/secret\n/tmp?\n[ab].txt\n");
        assert!(i.excluded("x.log"));
        assert!(!i.excluded("keep.log"));
        assert!(!i.excluded("sub/x.log"));
        assert!(i.excluded("build/a/b"));
        assert!(i.excluded("a/b/secret"));
        assert!(i.excluded("secret"));
        assert!(i.excluded("tmp1/x"));
        assert!(i.excluded("a.txt"));
        assert!(!i.excluded("c.txt"));
        assert!(!i.excluded("src/main.rs"));
    }

    #[test]
    fn exceptions_below_excluded_directories() {
        let i = Ignore::parse("folder1\n!folder1/keep\n");
        assert!(i.excluded("folder1") && i.excluded("folder1/other"));
        assert!(!i.excluded("folder1/keep"));
        assert!(i.may_include_below("folder1"));
        assert!(!i.may_include_below("folder2"));
        assert!(i.prunes("folder2", true) == i.excluded("folder2"));
        let i = Ignore::parse("a\n!a/b\na/b/c\n!a/b/c/d\n");
        assert!(!i.excluded("a/b/x") && i.excluded("a/b/c/y") && !i.excluded("a/b/c/d"));
        assert!(i.may_include_below("a/b/c"));
        let i = Ignore::parse("**\n!**/*.keep\n");
        assert!(i.may_include_below("any/dir"));
        assert!(!i.excluded("x/y/z.keep") && i.excluded("x/y/z.other"));
    }
}
