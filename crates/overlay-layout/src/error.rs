//! The crate's one error type, [`LayoutError`], and the "problem" enums that
//! say precisely which rule an input broke.
//!
//! Every variant carries the offending value (an id, a `lower` entry, a
//! symlink target) so that a message read in a log is enough to find the bad
//! file. Values read from disk are shortened to [`EXCERPT_LEN`] bytes so that
//! a corrupt multi-megabyte file cannot produce a multi-megabyte message.

use std::fmt;
use std::path::PathBuf;

use crate::home::{BACKING_FS_BLOCK_DEV, LINK_DIR, QUARANTINE_DIR};

/// How many bytes of an untrusted value (link file, `lower` entry) an error
/// keeps; longer values are cut and end with `…`.
pub const EXCERPT_LEN: usize = 80;

/// Everything that can go wrong in this crate: an input broke a rule of the
/// overlay2 home layout.
///
/// There is no I/O in this crate, so every variant describes bad input, never
/// a failing system call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// A layer id breaks one of the naming rules of [`LayerId`](crate::LayerId).
    #[error("invalid layer id {id:?}: {problem}")]
    InvalidLayerId {
        /// The rejected id, whole (it came from the caller, who may want it back).
        id: String,
        /// Which rule it broke.
        problem: LayerIdProblem,
    },

    /// A link id is not exactly 26 characters of `[A-Z2-7]`.
    #[error("invalid link id {id:?}: {problem}")]
    InvalidLinkId {
        /// The rejected id (lossy UTF-8, at most [`EXCERPT_LEN`] bytes).
        id: String,
        /// Which rule it broke.
        problem: LinkIdProblem,
    },

    /// One entry of a `lower` file is not `l/LINKID`.
    #[error("corrupt lower file: entry {index} {entry:?}: {problem}")]
    CorruptLower {
        /// Zero-based position of the entry in the `:`-separated list
        /// (0 is the direct parent).
        index: usize,
        /// The entry's bytes (lossy UTF-8, at most [`EXCERPT_LEN`] bytes).
        entry: String,
        /// What is wrong with it.
        problem: LowerProblem,
    },

    /// A `lower` file, or a chain being built, has no entries.
    ///
    /// Docker never writes an empty `lower` file: a layer without a parent
    /// has no `lower` file at all.
    #[error("corrupt lower file: it is empty, but a layer without parent has no lower file")]
    EmptyLower,

    /// A new layer would sit on more lower layers than the depth limit allows.
    #[error("max depth exceeded: the chain would have {depth} lower layers, the limit is {limit}")]
    MaxDepthExceeded {
        /// Number of lower layers the chain would have.
        depth: usize,
        /// The limit in force.
        limit: usize,
    },

    /// A depth limit of 0 was asked for: no layer could then have a parent.
    #[error("invalid depth limit 0: a child layer needs at least its parent below it")]
    ZeroDepthLimit,

    /// The target of an `l/LINKID` symlink is not `../ID/diff`.
    ///
    /// The driver treats this as a link that may point outside the home and
    /// must not follow it.
    #[error("invalid link target {target:?}: {problem}")]
    InvalidLinkTarget {
        /// The target as read with `readlink`.
        target: PathBuf,
        /// What is wrong with it.
        problem: LinkTargetProblem,
    },
}

/// The rule a [`LayerId`](crate::LayerId) broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LayerIdProblem {
    /// The id is the empty string, which would name the home itself.
    Empty,
    /// The id is longer than [`LayerId::MAX_LEN`](crate::LayerId::MAX_LEN)
    /// bytes, the longest file name Linux allows (`NAME_MAX`).
    TooLong {
        /// The id's length in bytes.
        len: usize,
    },
    /// The id contains a NUL byte, which no path can hold.
    ContainsNul,
    /// The id contains `/`, so it would name a path below or outside the home.
    ContainsSlash,
    /// The id is `.`, the home itself.
    Dot,
    /// The id is `..`, the home's parent.
    DotDot,
    /// The id is a name the home uses for its own entries (`l`,
    /// `backingFsBlockDev`, `quarantine`).
    Reserved,
    /// The id starts with `.tmp-`, the prefix of the home's scratch entries.
    ScratchPrefix,
}

impl fmt::Display for LayerIdProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("is empty"),
            Self::TooLong { len } => write!(f, "is {len} bytes long, the limit is {}", crate::LayerId::MAX_LEN),
            Self::ContainsNul => f.write_str("contains a NUL byte"),
            Self::ContainsSlash => f.write_str("contains '/'"),
            Self::Dot => f.write_str("is \".\", the home directory itself"),
            Self::DotDot => f.write_str("is \"..\", the parent of the home directory"),
            Self::Reserved => write!(
                f,
                "is reserved for the home's own entries ({LINK_DIR:?}, {BACKING_FS_BLOCK_DEV:?}, {QUARANTINE_DIR:?})"
            ),
            Self::ScratchPrefix => write!(
                f,
                "starts with {:?}, which marks the home's scratch entries (layers being built or removed)",
                crate::id::SCRATCH_PREFIX
            ),
        }
    }
}

/// The rule a [`LinkId`](crate::LinkId) broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LinkIdProblem {
    /// A byte outside the base32 alphabet `[A-Z2-7]`.
    InvalidByte {
        /// The byte.
        byte: u8,
        /// Its zero-based position in the id.
        position: usize,
    },
    /// Every byte is in the alphabet but there are not exactly 26 of them.
    WrongLength {
        /// The length found, in bytes.
        len: usize,
    },
    /// A valid id followed by `\n`. Docker writes link files without a
    /// newline and reads them without trimming, so such a file makes Docker
    /// build `lower` entries with a newline inside.
    TrailingNewline,
}

impl fmt::Display for LinkIdProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidByte { byte, position } => write!(
                f,
                "byte '{}' (0x{byte:02x}) at position {position} is not in [A-Z2-7]",
                byte.escape_ascii()
            ),
            Self::WrongLength { len } => {
                write!(f, "is {len} bytes long, expected {}", crate::LinkId::LEN)
            }
            Self::TrailingNewline => f.write_str("ends with a newline, which Docker never writes"),
        }
    }
}

/// What is wrong with one entry of a `lower` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LowerProblem {
    /// The entry is empty: the file has a leading, trailing or doubled `:`.
    Empty,
    /// The entry has a `..` component, so it could point outside the home.
    DotDot,
    /// A valid entry followed by `\n`. Docker never writes one, and because
    /// a child's `lower` copies its parent's verbatim, accepting it would
    /// spread the newline into the middle of every descendant's chain.
    TrailingNewline,
    /// The entry does not start with `l/`, so it is not one of the home's
    /// short links.
    NotUnderLinkDir,
    /// The entry is `l/` followed by something that is not a link id.
    LinkId(LinkIdProblem),
}

impl fmt::Display for LowerProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("is empty (a leading, trailing or doubled ':')"),
            Self::DotDot => f.write_str("has a \"..\" component"),
            Self::TrailingNewline => f.write_str("ends with a newline, which Docker never writes"),
            Self::NotUnderLinkDir => f.write_str("is not of the form \"l/LINKID\""),
            Self::LinkId(problem) => write!(f, "link id {problem}"),
        }
    }
}

/// What is wrong with the target of an `l/LINKID` symlink.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LinkTargetProblem {
    /// The target is not valid UTF-8, so it cannot name a layer id.
    NotUtf8,
    /// The target is an absolute path; Docker always writes a relative one.
    Absolute,
    /// The target does not start with `../`, so it does not leave `l/` for a
    /// layer directory of the same home.
    NotInHome,
    /// The target does not end with `/diff`.
    NotDiff,
    /// The part between `../` and `/diff` is not a valid layer id (for
    /// example it has a `/` and so climbs out of the home).
    LayerId {
        /// The text found where the layer id should be (at most
        /// [`EXCERPT_LEN`] bytes).
        id: String,
        /// Which rule it broke.
        problem: LayerIdProblem,
    },
}

impl fmt::Display for LinkTargetProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotUtf8 => f.write_str("is not UTF-8"),
            Self::Absolute => f.write_str("is absolute, expected \"../ID/diff\""),
            Self::NotInHome => f.write_str("does not start with \"../\", expected \"../ID/diff\""),
            Self::NotDiff => f.write_str("does not end with \"/diff\", expected \"../ID/diff\""),
            Self::LayerId { id, problem } => write!(f, "layer id {id:?} {problem}"),
        }
    }
}

/// Lossy UTF-8 of at most [`EXCERPT_LEN`] bytes of `bytes`, ending with `…`
/// when cut, for error messages about untrusted data.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    match bytes.get(..EXCERPT_LEN) {
        Some(head) if bytes.len() > EXCERPT_LEN => {
            let mut text = String::from_utf8_lossy(head).into_owned();
            text.push('…');
            text
        }
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_keeps_short_values_whole() {
        assert_eq!(excerpt(b"l/ABC"), "l/ABC");
        assert_eq!(excerpt(&[b'x'; EXCERPT_LEN]), "x".repeat(EXCERPT_LEN));
    }

    #[test]
    fn excerpt_cuts_long_values() {
        let long = vec![b'y'; EXCERPT_LEN + 1];
        assert_eq!(excerpt(&long), format!("{}…", "y".repeat(EXCERPT_LEN)));
    }

    #[test]
    fn excerpt_is_lossy_for_non_utf8() {
        assert_eq!(excerpt(&[0xff, b'a']), "\u{fffd}a");
    }
}
