//! Errors of the driver: each names the layer or file at fault.

use std::path::PathBuf;

/// What went wrong in a driver operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The id is not a valid layer id (or is reserved).
    #[error(transparent)]
    InvalidId(overlay_layout::LayoutError),

    /// No such layer.
    #[error("layer {0:?} does not exist")]
    NotFound(String),

    /// A layer with this id exists already.
    #[error("layer {0:?} already exists")]
    AlreadyExists(String),

    /// Docker refuses to remove with an empty id.
    #[error("refusing to remove the directories: id is empty")]
    EmptyId,

    /// The parent chain would exceed the depth limit.
    #[error("layer {id:?}: {source}")]
    Layout {
        /// The layer.
        id: String,
        /// The layout rule broken (depth, corrupt `lower` or `link`).
        #[source]
        source: overlay_layout::LayoutError,
    },

    /// A file of the home does not say what the layout requires.
    #[error("layer {id:?} is corrupt: {what}")]
    Corrupt {
        /// The layer.
        id: String,
        /// What is wrong, naming the file.
        what: String,
    },

    /// An option Docker would not accept.
    #[error("{0}")]
    BadOption(String),

    /// Id maps a layer cannot be made or mounted with: maps the kernel
    /// would refuse, host ids this process cannot give, maps unlike its
    /// parent's, or a kernel that cannot id-map.
    #[error("layer {id:?}: {reason}")]
    IdMap {
        /// The layer.
        id: String,
        /// What is wrong, naming the range, the parent or the kernel.
        reason: String,
    },

    /// The home's filesystem or kernel cannot do what was asked.
    #[error("{0}")]
    Unsupported(String),

    /// Remove of a layer others stack on (refused where the driver keeps
    /// an index of its layers: removing it would break them).
    #[error("layer {id:?} has {children} layer(s) stacked on it: remove those first")]
    HasChildren {
        /// The layer.
        id: String,
        /// How many stack on it.
        children: usize,
    },

    /// A filesystem operation on the home failed.
    #[error("{0}")]
    Fs(#[from] overlay_fs::Error),

    /// Mounting or unmounting failed.
    #[error("layer {id:?}: {source}")]
    Mount {
        /// The layer.
        id: String,
        /// The mount error.
        #[source]
        source: Box<overlay_mount::MountError>,
    },

    /// Setting a quota failed.
    #[error("layer {id:?}: {source}")]
    Quota {
        /// The layer.
        id: String,
        /// The quota error.
        #[source]
        source: Box<overlay_quota::QuotaError>,
    },

    /// Reading or writing a layer tar failed.
    #[error("layer {id:?}: {source}")]
    Archive {
        /// The layer.
        id: String,
        /// The archive error.
        #[source]
        source: Box<overlay_archive::ArchiveError>,
    },

    /// The naive diff failed.
    #[error("layer {id:?}: {source}")]
    Diff {
        /// The layer.
        id: String,
        /// The diff error.
        #[source]
        source: Box<naive_diff::DiffError>,
    },

    /// A path of the home could not be used.
    #[error("{path:?}: {reason}")]
    Path {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Result of driver operations.
pub type Result<T, E = DriverError> = std::result::Result<T, E>;
