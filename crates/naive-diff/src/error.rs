//! Errors of this crate.

use std::path::PathBuf;

/// An error from the driver a [`NaiveDiff`](crate::NaiveDiff) is built on.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong while diffing or applying.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    /// The driver could not make a layer's tree available, or release it.
    #[error("{op} of layer {id:?}: {source}")]
    Driver {
        /// `"get"` or `"put"`.
        op: &'static str,
        /// The layer.
        id: String,
        /// The driver's error.
        #[source]
        source: BoxError,
    },

    /// A tree could not be read.
    #[error("comparing {path:?}: {source}")]
    Tree {
        /// The path in the tree.
        path: PathBuf,
        /// The filesystem error.
        #[source]
        source: overlay_fs::Error,
    },

    /// A comparing thread panicked (a bug: reported, not propagated).
    #[error("a thread comparing the trees panicked")]
    Panicked,

    /// Writing or applying the tar failed.
    #[error(transparent)]
    Archive(#[from] overlay_archive::ArchiveError),
}

/// Result of this crate's operations.
pub type Result<T, E = DiffError> = std::result::Result<T, E>;
