//! The mount data string overlayfs parses, built and parsed back as plain
//! values (no system calls).
//!
//! The order and spelling are Docker's (`daemon/graphdriver/overlay2`):
//! `index=off,` first when the kernel knows the parameter, `lowerdir=`
//! uppermost first, then `upperdir=` and `workdir=` for a writable mount, then
//! `userxattr` when asked, and the SELinux label last as
//! `context="LABEL"` (Docker's `label.FormatMountLabel`).
//!
//! Docker passes paths through unchanged; a path with `,` `:` or `\` then
//! breaks the mount. Here those three are escaped with a backslash, which
//! overlayfs undoes (`ovl_next_opt`, `ovl_unescape`). A `"` is refused: the
//! LSMs pre-parse the same string and treat quotes as grouping.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{MountError, Result};

/// The most lower directories overlayfs stacks (`OVL_MAX_STACK`).
pub const MAX_LOWERS: usize = 500;

/// What to mount, as overlayfs options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayOptions {
    /// Lower directories, uppermost first. A read-only mount needs two.
    pub lowerdirs: Vec<PathBuf>,
    /// Upper and work directory of a writable mount.
    pub upper: Option<Upper>,
    /// Prefix `index=off,` (Docker does when
    /// `/sys/module/overlay/parameters/index` exists).
    pub index_off: bool,
    /// Append `userxattr`: whiteouts and opaque markers in `user.overlay.*`
    /// (needed inside a user namespace).
    pub userxattr: bool,
    /// SELinux mount label, appended as `context="LABEL"`.
    pub label: Option<String>,
}

/// The writable part of an overlay mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upper {
    /// Where changes go (a layer's `diff`).
    pub upperdir: PathBuf,
    /// Overlayfs's scratch directory on the same filesystem (`work`).
    pub workdir: PathBuf,
}

impl OverlayOptions {
    /// A writable mount of `upperdir` over `lowerdirs` (uppermost first).
    pub fn read_write(lowerdirs: Vec<PathBuf>, upperdir: PathBuf, workdir: PathBuf) -> Self {
        Self {
            lowerdirs,
            upper: Some(Upper { upperdir, workdir }),
            index_off: false,
            userxattr: false,
            label: None,
        }
    }

    /// A read-only mount of `lowerdirs` (uppermost first): how Docker mounts
    /// a committed layer, its own diff dir first.
    pub fn read_only(lowerdirs: Vec<PathBuf>) -> Self {
        Self {
            lowerdirs,
            upper: None,
            index_off: false,
            userxattr: false,
            label: None,
        }
    }

    /// Sets whether `index=off,` is prefixed.
    pub fn index_off(mut self, on: bool) -> Self {
        self.index_off = on;
        self
    }

    /// Sets whether `userxattr` is appended.
    pub fn userxattr(mut self, on: bool) -> Self {
        self.userxattr = on;
        self
    }

    /// Sets the SELinux mount label (`None` or empty for none).
    pub fn label(mut self, label: Option<&str>) -> Self {
        self.label = label.filter(|l| !l.is_empty()).map(str::to_owned);
        self
    }

    /// Checks what the kernel would refuse, before any system call.
    ///
    /// # Errors
    ///
    /// No lower directory, a read-only mount with only one, an empty path,
    /// a path or label with a NUL or `"`.
    pub fn validate(&self) -> Result<()> {
        match (self.lowerdirs.len(), &self.upper) {
            (0, _) => return Err(MountError::InvalidOptions("no lower directory".into())),
            (1, None) => {
                return Err(MountError::InvalidOptions(
                    "a read-only overlay needs at least two lower directories".into(),
                ));
            }
            _ => {}
        }
        if self.lowerdirs.len() > MAX_LOWERS {
            return Err(MountError::InvalidOptions(format!(
                "{} lower directories; overlayfs stacks at most {MAX_LOWERS}",
                self.lowerdirs.len()
            )));
        }
        let mut paths: Vec<(&str, &Path)> = self.lowerdirs.iter().map(|p| ("lowerdir", p.as_path())).collect();
        if let Some(u) = &self.upper {
            paths.push(("upperdir", &u.upperdir));
            paths.push(("workdir", &u.workdir));
        }
        for (what, p) in paths {
            let b = p.as_os_str().as_bytes();
            if b.is_empty() {
                return Err(MountError::InvalidOptions(format!("empty {what} path")));
            }
            if let Some(c) = b.iter().find(|c| **c == 0 || **c == b'"') {
                return Err(MountError::InvalidPath {
                    path: p.to_path_buf(),
                    reason: format!("{what} contains {}", if *c == 0 { "a NUL byte" } else { "a '\"'" }),
                });
            }
        }
        if let Some(l) = &self.label
            && let Some(c) = l.chars().find(|c| *c == '"' || *c == '\\' || c.is_control())
        {
            return Err(MountError::InvalidOptions(format!("mount label {l:?} contains {c:?}")));
        }
        Ok(())
    }

    /// The mount data string, as bytes (paths need not be UTF-8).
    ///
    /// # Errors
    ///
    /// See [`validate`](Self::validate).
    pub fn to_data(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let mut out = Vec::with_capacity(64 + self.lowerdirs.len() * 40);
        if self.index_off {
            out.extend_from_slice(b"index=off,");
        }
        out.extend_from_slice(b"lowerdir=");
        for (i, l) in self.lowerdirs.iter().enumerate() {
            if i > 0 {
                out.push(b':');
            }
            escape_into(&mut out, l.as_os_str());
        }
        if let Some(u) = &self.upper {
            out.extend_from_slice(b",upperdir=");
            escape_into(&mut out, u.upperdir.as_os_str());
            out.extend_from_slice(b",workdir=");
            escape_into(&mut out, u.workdir.as_os_str());
        }
        if self.userxattr {
            out.extend_from_slice(b",userxattr");
        }
        if let Some(label) = &self.label {
            out.extend_from_slice(b",context=\"");
            out.extend_from_slice(label.as_bytes());
            out.push(b'"');
        }
        Ok(out)
    }

    /// Parses a mount data string this module (or Docker) wrote.
    ///
    /// # Errors
    ///
    /// An option this crate never writes, a missing `lowerdir`, `upperdir`
    /// without `workdir`, an unterminated quote or escape.
    pub fn parse(data: &[u8]) -> Result<Self> {
        let bad = |why: &str| MountError::InvalidOptions(format!("{why} in {:?}", String::from_utf8_lossy(data)));
        let mut opts = OverlayOptions::read_only(Vec::new());
        let (mut upperdir, mut workdir) = (None, None);
        let mut seen_lower = false;
        for opt in split_unescaped(data, b',', true).map_err(&bad)? {
            let (key, value) = match opt.iter().position(|c| *c == b'=') {
                Some(i) => (&opt[..i], Some(&opt[i + 1..])),
                None => (opt, None),
            };
            match (key, value) {
                (b"index", Some(b"off")) => opts.index_off = true,
                (b"userxattr", None) => opts.userxattr = true,
                (b"lowerdir", Some(v)) => {
                    seen_lower = true;
                    opts.lowerdirs = split_unescaped(v, b':', false)
                        .map_err(&bad)?
                        .into_iter()
                        .map(|p| PathBuf::from(OsStr::from_bytes(&unescape(p))))
                        .collect();
                }
                (b"upperdir", Some(v)) => upperdir = Some(PathBuf::from(OsStr::from_bytes(&unescape(v)))),
                (b"workdir", Some(v)) => workdir = Some(PathBuf::from(OsStr::from_bytes(&unescape(v)))),
                (b"context", Some(v)) => {
                    let inner = v
                        .strip_prefix(b"\"")
                        .and_then(|v| v.strip_suffix(b"\""))
                        .ok_or_else(|| bad("unquoted context"))?;
                    opts.label = Some(String::from_utf8_lossy(inner).into_owned());
                }
                _ => return Err(bad(&format!("unknown option {:?}", String::from_utf8_lossy(opt)))),
            }
        }
        if !seen_lower {
            return Err(bad("no lowerdir"));
        }
        opts.upper = match (upperdir, workdir) {
            (Some(upperdir), Some(workdir)) => Some(Upper { upperdir, workdir }),
            (None, None) => None,
            _ => return Err(bad("upperdir and workdir must come together")),
        };
        Ok(opts)
    }
}

fn escape_into(out: &mut Vec<u8>, s: &OsStr) {
    for &c in s.as_bytes() {
        if matches!(c, b',' | b':' | b'\\') {
            out.push(b'\\');
        }
        out.push(c);
    }
}

fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut it = s.iter();
    while let Some(&c) = it.next() {
        if c == b'\\' {
            if let Some(&n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Splits on `sep` where it is neither escaped nor (when `quotes`) inside
/// double quotes; the pieces keep their escapes.
fn split_unescaped(s: &[u8], sep: u8, quotes: bool) -> std::result::Result<Vec<&[u8]>, &'static str> {
    let mut parts = Vec::new();
    let (mut start, mut i, mut in_quote) = (0, 0, false);
    while i < s.len() {
        match s[i] {
            b'\\' => {
                if i + 1 >= s.len() {
                    return Err("trailing backslash");
                }
                i += 1;
            }
            b'"' if quotes => in_quote = !in_quote,
            c if c == sep && !in_quote => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if in_quote {
        return Err("unterminated quote");
    }
    parts.push(&s[start..]);
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pb(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn docker_read_write_form() {
        let o = OverlayOptions::read_write(vec![pb("/h/l/A"), pb("/h/l/B")], pb("/h/id/diff"), pb("/h/id/work"))
            .index_off(true);
        assert_eq!(
            o.to_data().unwrap(),
            b"index=off,lowerdir=/h/l/A:/h/l/B,upperdir=/h/id/diff,workdir=/h/id/work".to_vec()
        );
    }

    #[test]
    fn docker_read_only_form_with_label() {
        let o = OverlayOptions::read_only(vec![pb("id/diff"), pb("l/A")])
            .label(Some("system_u:object_r:container_file_t:s0:c1,c2"));
        assert_eq!(
            String::from_utf8(o.to_data().unwrap()).unwrap(),
            r#"lowerdir=id/diff:l/A,context="system_u:object_r:container_file_t:s0:c1,c2""#
        );
        assert_eq!(OverlayOptions::parse(&o.to_data().unwrap()).unwrap(), o);
    }

    #[test]
    fn userxattr_comes_before_the_label() {
        let o = OverlayOptions::read_write(vec![pb("a")], pb("u"), pb("w"))
            .userxattr(true)
            .label(Some("x"));
        assert_eq!(
            o.to_data().unwrap(),
            br#"lowerdir=a,upperdir=u,workdir=w,userxattr,context="x""#.to_vec()
        );
    }

    #[test]
    fn separators_in_paths_are_escaped() {
        let o = OverlayOptions::read_write(vec![pb("/a,b"), pb("/c:d")], pb(r"/e\f"), pb("/w"));
        assert_eq!(
            o.to_data().unwrap(),
            br"lowerdir=/a\,b:/c\:d,upperdir=/e\\f,workdir=/w".to_vec()
        );
        assert_eq!(OverlayOptions::parse(&o.to_data().unwrap()).unwrap(), o);
    }

    #[test]
    fn bad_options_are_refused_with_reasons() {
        let e = OverlayOptions::read_only(vec![pb("/only")]).to_data().unwrap_err();
        assert!(e.to_string().contains("at least two"), "{e}");
        let e = OverlayOptions::read_only(vec![]).to_data().unwrap_err();
        assert!(e.to_string().contains("no lower"), "{e}");
        let e = OverlayOptions::read_write(vec![pb("/a\"b")], pb("/u"), pb("/w"))
            .to_data()
            .unwrap_err();
        assert!(e.to_string().contains("/a\\\"b"), "{e}");
        let e = OverlayOptions::read_write(vec![pb("/a")], pb("/u"), pb("/w"))
            .label(Some("a\"b"))
            .to_data();
        assert!(e.is_err());
        for bad in [
            &b"upperdir=/u"[..],
            b"lowerdir=/a,bogus=1",
            b"lowerdir=/a,upperdir=/u",
            b"lowerdir=/a\\",
        ] {
            assert!(OverlayOptions::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
