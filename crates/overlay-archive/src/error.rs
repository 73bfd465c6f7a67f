//! Errors of this crate: each names the tar entry (or tree path) at fault.

use std::path::PathBuf;

/// What went wrong while reading, applying or writing a layer tar.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The tar stream is unreadable: truncated, corrupt, not a tar.
    #[error("reading the tar stream: {0}")]
    Read(#[source] std::io::Error),

    /// An entry that no layer tar may contain; nothing was written for it.
    #[error("refusing tar entry {name:?}: {reason}")]
    Hostile {
        /// The entry's name, as the tar spells it.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },

    /// An entry of a type this crate does not apply.
    #[error("tar entry {name:?}: unsupported entry type {kind}")]
    Unsupported {
        /// The entry's name.
        name: String,
        /// The tar type flag, as a character.
        kind: char,
    },

    /// Applying an entry to the tree failed.
    #[error("tar entry {name:?}: {source}")]
    Apply {
        /// The entry's name.
        name: String,
        /// The filesystem error.
        #[source]
        source: overlay_fs::Error,
    },

    /// Reading the tree to export it failed.
    #[error("exporting {path:?}: {source}")]
    Tree {
        /// The path in the tree.
        path: PathBuf,
        /// The filesystem error.
        #[source]
        source: overlay_fs::Error,
    },

    /// Writing the tar stream failed, or a file changed while it was read.
    #[error("writing the tar stream at {path:?}: {source}")]
    Write {
        /// The path being written.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A uid or gid has no mapping.
    #[error("{what} {id} has no mapping")]
    Unmapped {
        /// `"uid"` or `"gid"`, and the direction.
        what: &'static str,
        /// The id.
        id: u64,
    },

    /// An entry's (mapped) id is not one this process's user namespace
    /// maps: no file here can be given it. Nothing was made for it.
    #[error(
        "tar entry {name:?}: {kind} {id} is not mapped in this user namespace (see /proc/self/{kind}_map), \
         so no file can belong to it (the ignore_chown_errors option gives such files to root instead)"
    )]
    Unowned {
        /// The entry's name.
        name: String,
        /// uid or gid.
        kind: crate::idmap::IdKind,
        /// The id, after the import's id maps.
        id: u32,
    },

    /// An include or exclude pattern is malformed.
    #[error("bad pattern {pattern:?}: {reason}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: &'static str,
    },
}

/// Result of this crate's operations.
pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

/// The longest part of a name quoted in an error; a hostile tar can carry
/// names of megabytes.
const EXCERPT: usize = 256;

/// A name for an error message: lossily decoded, cut after [`EXCERPT`]
/// bytes with the full length noted.
pub(crate) fn excerpt(name: &[u8]) -> String {
    if name.len() <= EXCERPT {
        return String::from_utf8_lossy(name).into_owned();
    }
    format!("{}… ({} bytes)", String::from_utf8_lossy(&name[..EXCERPT]), name.len())
}
