//! Include and exclude patterns with the semantics of Docker's
//! `TarOptions.ExcludePatterns` (its `fileutils.PatternMatcher`).
//!
//! A pattern is a path with Go `filepath.Match` wildcards per component
//! (`*`, `?`, `[a-z]`, `[^a]`, `\x`), plus `**` for any number of
//! components. It matches a path, or a leading part of it (so `docs`
//! excludes everything below `docs/`). A pattern starting with `!` is an
//! exception that re-includes what it matches; the last matching pattern
//! decides.

use std::path::Path;

use crate::error::{ArchiveError, Result};

#[derive(Debug, Clone)]
struct Pattern {
    parts: Vec<Vec<u8>>,
    exception: bool,
}

/// A compiled list of exclude patterns.
#[derive(Debug, Clone, Default)]
pub struct Patterns {
    patterns: Vec<Pattern>,
}

impl Patterns {
    /// Compiles `patterns`; blank ones are ignored.
    ///
    /// # Errors
    ///
    /// A lone `!`, or an unterminated `[` class.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self> {
        let mut out = Vec::new();
        for raw in patterns {
            let raw = raw.as_ref().trim();
            if raw.is_empty() {
                continue;
            }
            let (exception, body) = match raw.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, raw),
            };
            if body.is_empty() {
                return Err(ArchiveError::Pattern {
                    pattern: raw.into(),
                    reason: "'!' alone excludes nothing",
                });
            }
            let parts: Vec<Vec<u8>> = body
                .split('/')
                .filter(|p| !p.is_empty() && *p != ".")
                .map(|p| p.as_bytes().to_vec())
                .collect();
            for p in &parts {
                if !class_balanced(p) {
                    return Err(ArchiveError::Pattern {
                        pattern: raw.into(),
                        reason: "unterminated '[' class",
                    });
                }
            }
            out.push(Pattern { parts, exception });
        }
        Ok(Self { patterns: out })
    }

    /// Are there no patterns at all?
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Does some pattern start with `!`? Then an excluded directory must
    /// still be walked, since an exception may re-include something in it.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Is `path` (relative to the tree's root) excluded?
    pub fn excludes(&self, path: &Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        // The usual case, asked for every entry: nothing to match.
        if self.patterns.is_empty() {
            return false;
        }
        let parts: Vec<&[u8]> = path
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(n) => Some(n.as_bytes()),
                _ => None,
            })
            .collect();
        let mut excluded = false;
        for p in &self.patterns {
            if p.exception != excluded {
                // Cannot change the outcome.
                continue;
            }
            let hit = match_parts(&p.parts, &parts)
                || (!p.parts.iter().any(|c| c == b"**")
                    && p.parts.len() < parts.len()
                    && match_parts(&p.parts, &parts[..p.parts.len()]));
            if hit {
                excluded = !p.exception;
            }
        }
        excluded
    }
}

fn class_balanced(p: &[u8]) -> bool {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'\\' => i += 1,
            b'[' => match p[i + 1..].iter().position(|c| *c == b']') {
                Some(n) => i += n + 1,
                None => return false,
            },
            _ => {}
        }
        i += 1;
    }
    true
}

/// Matches pattern components against path components; `**` spans any
/// number of components, including none.
fn match_parts(pat: &[Vec<u8>], path: &[&[u8]]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == b"**" => (0..=path.len()).any(|skip| match_parts(rest, &path[skip..])),
        Some((first, rest)) => match path.split_first() {
            Some((name, more)) => match_component(first, name) && match_parts(rest, more),
            None => false,
        },
    }
}

/// Go's `filepath.Match` for one component.
fn match_component(pat: &[u8], name: &[u8]) -> bool {
    match pat.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| match_component(rest, &name[i..])),
        Some((b'?', rest)) => !name.is_empty() && match_component(rest, &name[1..]),
        Some((b'[', rest)) => {
            let Some((&c, more)) = name.split_first() else {
                return false;
            };
            let end = rest.iter().position(|x| *x == b']').unwrap_or(rest.len());
            let (class, after) = (&rest[..end], rest.get(end + 1..).unwrap_or(&[]));
            let (negate, class) = match class.split_first() {
                Some((b'^', c)) => (true, c),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != negate && match_component(after, more)
        }
        Some((b'\\', rest)) if !rest.is_empty() => {
            name.first() == Some(&rest[0]) && match_component(&rest[1..], &name[1..])
        }
        Some((&p, rest)) => name.first() == Some(&p) && match_component(rest, &name[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(patterns: &[&str], path: &str) -> bool {
        Patterns::new(patterns).unwrap().excludes(Path::new(path))
    }

    #[test]
    fn dockers_rules() {
        assert!(ex(&["docs"], "docs"));
        assert!(ex(&["docs"], "docs/a/b.md"), "a matching parent excludes the subtree");
        assert!(!ex(&["docs"], "docsx"));
        assert!(ex(&["*.md"], "README.md"));
        assert!(!ex(&["*.md"], "dir/README.md"), "* does not cross '/'");
        assert!(ex(&["**/*.md"], "dir/sub/README.md"));
        assert!(ex(&["**/*.md"], "README.md"), "** may span nothing");
        assert!(ex(&["a/?/c"], "a/b/c"));
        assert!(ex(&["[a-c]x"], "bx"));
        assert!(!ex(&["[^a-c]x"], "bx"));
        assert!(ex(&["*.md", "!keep.md"], "drop.md"));
        assert!(!ex(&["*.md", "!keep.md"], "keep.md"));
        assert!(ex(&["*.md", "!keep.md", "keep*"], "keep.md"), "the last match decides");
        assert!(ex(&[r"a\*"], "a*"));
        assert!(!ex(&[r"a\*"], "ab"));
    }

    #[test]
    fn bad_patterns_are_named() {
        let e = Patterns::new(&["!"]).unwrap_err().to_string();
        assert!(e.contains("'!'"), "{e}");
        let e = Patterns::new(&["a[b"]).unwrap_err().to_string();
        assert!(e.contains("a[b"), "{e}");
        assert!(Patterns::new(&["", "  "]).unwrap().is_empty());
    }
}
