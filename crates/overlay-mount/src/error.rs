//! Errors of this crate: each names the operation, the path and the errno.

use std::path::PathBuf;

use rustix::io::Errno;

/// What went wrong while planning, mounting, unmounting or probing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// The options cannot describe a valid overlay mount.
    #[error("invalid overlay options: {0}")]
    InvalidOptions(String),

    /// A path cannot be passed to overlayfs.
    #[error("cannot pass {path:?} to overlayfs: {reason}")]
    InvalidPath {
        /// The path at fault.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// Even the home-relative form of the mount data exceeds one page.
    #[error(
        "cannot mount layer: mount data is {size} bytes even with paths relative to the home; the limit is {limit} (one page less the NUL)"
    )]
    DataTooLarge {
        /// Bytes of the shortest data string.
        size: usize,
        /// The most the kernel accepts.
        limit: usize,
    },

    /// A system call failed.
    #[error("{op} {path:?}: {errno}")]
    Sys {
        /// The call, e.g. `mount` or `fsconfig lowerdir+`.
        op: &'static str,
        /// The path it acted on.
        path: PathBuf,
        /// What the kernel said.
        errno: Errno,
    },

    /// The kernel cannot do what was asked (no overlayfs, no new mount API).
    #[error("not supported: {0}")]
    NotSupported(String),
}

impl MountError {
    pub(crate) fn sys(op: &'static str, path: impl Into<PathBuf>, errno: Errno) -> Self {
        Self::Sys {
            op,
            path: path.into(),
            errno,
        }
    }

    /// The kernel's errno, when a system call failed.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Self::Sys { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// Result of this crate's operations.
pub type Result<T, E = MountError> = std::result::Result<T, E>;
