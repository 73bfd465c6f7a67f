//! The two spellings of a deletion: overlayfs's in a layer's `diff` dir, the
//! OCI image format's in a tar stream.
//!
//! | meaning | overlayfs (`diff/`) | tar stream |
//! |---|---|---|
//! | `NAME` deleted | char device 0:0 at `NAME` | empty file `.wh.NAME` |
//! | `DIR` hides lower entries | xattr `trusted.overlay.opaque=y` (or `user.`) on `DIR` | empty file `DIR/.wh..wh..opq` |

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Prefix of a whiteout entry in a tar stream.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Prefix of AUFS metadata entries (`.wh..wh.plnk`, ...), never files.
pub const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
/// The entry that makes its directory opaque.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// The xattr namespace overlayfs keeps its markers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XattrNamespace {
    /// `trusted.overlay.*`: the default, needs `CAP_SYS_ADMIN`.
    #[default]
    Trusted,
    /// `user.overlay.*`: mounts with `userxattr` (user namespaces).
    User,
}

impl XattrNamespace {
    /// The opaque-directory xattr in this namespace.
    pub fn opaque_xattr(self) -> &'static str {
        match self {
            Self::Trusted => "trusted.overlay.opaque",
            Self::User => "user.overlay.opaque",
        }
    }
}

/// Is `name` one of overlayfs's private xattrs (`opaque`, `redirect`,
/// `origin`, `metacopy`...)? They describe one host's overlay state and
/// would let a tar steer the kernel into other layers: never exported,
/// never applied.
pub fn is_private_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// Do a directory's xattrs make it opaque (`overlay.opaque=y` in either
/// namespace, as a layer's `diff` may carry it)?
pub fn is_opaque(xattrs: &[(std::ffi::OsString, Vec<u8>)]) -> bool {
    xattrs.iter().any(|(n, v)| {
        v == b"y"
            && [XattrNamespace::Trusted, XattrNamespace::User]
                .iter()
                .any(|ns| n.as_bytes() == ns.opaque_xattr().as_bytes())
    })
}

/// What a base name means in a tar stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker<'a> {
    /// `.wh..wh..opq`: the parent directory is opaque.
    Opaque,
    /// `.wh.NAME`: `NAME` in the parent directory is deleted.
    Whiteout(&'a OsStr),
    /// Other `.wh..wh.*`: AUFS bookkeeping, skipped as Docker does.
    Meta,
}

/// Classifies the base name of a tar entry: `None` for an ordinary name.
///
/// # Errors
///
/// A whiteout that names nothing: `.wh.`, `.wh..`, `.wh...`.
pub fn classify(base: &OsStr) -> Result<Option<Marker<'_>>, &'static str> {
    let b = base.as_bytes();
    if b == OPAQUE_MARKER.as_bytes() {
        return Ok(Some(Marker::Opaque));
    }
    if b.starts_with(WHITEOUT_META_PREFIX.as_bytes()) {
        return Ok(Some(Marker::Meta));
    }
    let Some(target) = b.strip_prefix(WHITEOUT_PREFIX.as_bytes()) else {
        return Ok(None);
    };
    match target {
        b"" => Err("whiteout '.wh.' names no file"),
        b"." | b".." => Err("whiteout names '.' or '..'"),
        t => Ok(Some(Marker::Whiteout(OsStr::from_bytes(t)))),
    }
}

/// The tar base name that whites out `name`.
pub fn whiteout_name(name: &OsStr) -> std::ffi::OsString {
    let mut s = std::ffi::OsString::from(WHITEOUT_PREFIX);
    s.push(name);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_classified() {
        fn c(s: &str) -> Result<Option<Marker<'_>>, &'static str> {
            classify(OsStr::new(s))
        }
        assert_eq!(c("file"), Ok(None));
        assert_eq!(c(".whx"), Ok(None));
        assert_eq!(c(".wh.file"), Ok(Some(Marker::Whiteout(OsStr::new("file")))));
        assert_eq!(c(".wh...x"), Ok(Some(Marker::Whiteout(OsStr::new("..x")))));
        assert_eq!(c(".wh..wh..opq"), Ok(Some(Marker::Opaque)));
        assert_eq!(c(".wh..wh.plnk"), Ok(Some(Marker::Meta)));
        for bad in [".wh.", ".wh..", ".wh..."] {
            assert!(c(bad).is_err(), "{bad}");
        }
        assert_eq!(whiteout_name(OsStr::new("a")), ".wh.a");
    }

    #[test]
    fn private_xattrs_are_recognised() {
        assert!(is_private_xattr(b"trusted.overlay.opaque"));
        assert!(is_private_xattr(b"user.overlay.redirect"));
        assert!(!is_private_xattr(b"user.mime_type"));
        assert!(!is_private_xattr(b"security.capability"));
    }
}
