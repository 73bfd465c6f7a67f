//! Errors of the snapshotter, each naming the key at fault, and the gRPC
//! codes containerd's client turns back into its errdefs.

use tonic::{Code, Status};

/// What went wrong in a snapshot operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// No snapshot has this key.
    #[error("snapshot {0:?} does not exist")]
    NotFound(String),

    /// A snapshot with this key exists already.
    #[error("snapshot {0:?} already exists")]
    AlreadyExists(String),

    /// The request is malformed: an empty or overlong key, a parent that is
    /// not committed, a field that cannot be updated, a bad filter.
    #[error("{0}")]
    InvalidArgument(String),

    /// The snapshot is not in a state that allows the operation: Commit of
    /// a view, Remove of a parent, Mounts of a committed snapshot.
    #[error("{0}")]
    FailedPrecondition(String),

    /// The layer store refused or failed.
    #[error("snapshot {key:?}: {source}")]
    Driver {
        /// The snapshot.
        key: String,
        /// What the driver said.
        #[source]
        source: overlay_driver::DriverError,
    },

    /// The metadata database failed.
    #[error("snapshot metadata: {0}")]
    Db(Box<redb::Error>),

    /// A metadata record does not decode.
    #[error("snapshot {key:?}: corrupt metadata record: {reason}")]
    Corrupt {
        /// The snapshot.
        key: String,
        /// Why it does not decode.
        reason: String,
    },
}

/// The snapshotter's results.
pub type Result<T, E = SnapshotError> = std::result::Result<T, E>;

impl SnapshotError {
    /// The gRPC code containerd's `errdefs.FromGRPC` maps back to the
    /// matching errdefs error.
    pub fn code(&self) -> Code {
        match self {
            Self::NotFound(_) => Code::NotFound,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::Driver { source, .. } => match source {
                overlay_driver::DriverError::InvalidId(_)
                | overlay_driver::DriverError::BadOption(_)
                | overlay_driver::DriverError::IdMap { .. }
                | overlay_driver::DriverError::Layout {
                    source: overlay_layout::LayoutError::MaxDepthExceeded { .. },
                    ..
                } => Code::InvalidArgument,
                overlay_driver::DriverError::Unsupported(_) => Code::Unimplemented,
                _ => Code::Internal,
            },
            Self::Db(_) | Self::Corrupt { .. } => Code::Internal,
        }
    }
}

impl From<SnapshotError> for Status {
    fn from(e: SnapshotError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

/// Any of redb's error types, as [`SnapshotError::Db`].
pub(crate) fn db(e: impl Into<redb::Error>) -> SnapshotError {
    SnapshotError::Db(Box::new(e.into()))
}
