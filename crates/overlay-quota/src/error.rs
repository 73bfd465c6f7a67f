//! Errors of this crate: each names the operation, the path and the errno,
//! and "not supported" says why in words a user can act on.

use std::fmt;
use std::path::PathBuf;

use rustix::io::Errno;

use crate::Filesystem;

/// What went wrong while setting up or applying project quotas.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaError {
    /// Project quotas cannot work for this home; [`Unsupported`] says why.
    /// A driver treats this as "no quota", as Docker does, and refuses only
    /// a layer that asks for a size.
    #[error("project quota is not supported for {home:?}: {reason}")]
    NotSupported {
        /// The home directory that was checked.
        home: PathBuf,
        /// Why.
        reason: Unsupported,
    },

    /// A size string did not parse.
    #[error("invalid size {input:?}: {reason}")]
    InvalidSize {
        /// The string as given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The directory has no project id of its own, so it has no quota.
    #[error("no project quota on {path:?}: its project id is {id} (the home's own id is {base})")]
    NoQuota {
        /// The directory.
        path: PathBuf,
        /// Its project id.
        id: u32,
        /// The home's project id, which is never a layer's.
        base: u32,
    },

    /// Every project id above the home's has been handed out.
    #[error("no project id left above {last} on the filesystem of {home:?}")]
    IdsExhausted {
        /// The home directory.
        home: PathBuf,
        /// The last id tried.
        last: u32,
    },

    /// A system call failed.
    #[error("{op} {path:?}: {errno}")]
    Sys {
        /// The call, e.g. `quotactl(Q_XSETQLIM)` or `ioctl(FS_IOC_FSSETXATTR)`.
        op: &'static str,
        /// The path it acted on.
        path: PathBuf,
        /// What the kernel said.
        errno: Errno,
    },
}

impl QuotaError {
    pub(crate) fn sys(op: &'static str, path: impl Into<PathBuf>, errno: Errno) -> Self {
        Self::Sys {
            op,
            path: path.into(),
            errno,
        }
    }

    /// Is this "project quotas cannot work here" (as opposed to a failure
    /// while using them)?
    pub fn is_not_supported(&self) -> bool {
        matches!(self, Self::NotSupported { .. })
    }

    /// Why quotas are not supported, for [`QuotaError::NotSupported`].
    pub fn unsupported(&self) -> Option<&Unsupported> {
        match self {
            Self::NotSupported { reason, .. } => Some(reason),
            _ => None,
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

/// Why project quotas cannot be used for a home.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unsupported {
    /// We run inside a user namespace: the backing device node cannot be
    /// made and quotas cannot be set (Docker refuses the same way).
    UserNamespace,
    /// The home is on a filesystem without project quotas.
    Filesystem {
        /// Its name (`tmpfs`, `btrfs`, ...) or `magic 0x...` when unknown.
        name: String,
    },
    /// The kernel was built without quota support for this filesystem
    /// (`quotactl` says `ENOSYS`).
    KernelWithoutQuota {
        /// The filesystem.
        fs: Filesystem,
    },
    /// The filesystem is mounted without project quota accounting.
    NotMountedWithProjectQuota {
        /// The filesystem.
        fs: Filesystem,
    },
    /// Project quota is accounted but its limits are not enforced
    /// (`pqnoenforce`).
    NotEnforced {
        /// The filesystem.
        fs: Filesystem,
    },
    /// `mknod` of the backing device node was refused (`EPERM`, `ENOSYS`):
    /// no `CAP_MKNOD`.
    DeviceNode {
        /// What `mknod` said.
        errno: Errno,
    },
    /// `quotactl(Q_XGETQSTAT)` failed in a way Docker also reads as "no
    /// project quota here".
    Quotactl {
        /// What `quotactl` said.
        errno: Errno,
    },
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UserNamespace => f.write_str(
                "running inside a user namespace, where the backing block device node cannot be made \
                 and quota limits cannot be set",
            ),
            Self::Filesystem { name } => {
                write!(f, "the home is on {name}; project quotas need XFS (or ext4)")
            }
            Self::KernelWithoutQuota { fs: Filesystem::Xfs } => f.write_str(
                "this kernel has no XFS quota support (quotactl returned ENOSYS: it was built without \
                 CONFIG_XFS_QUOTA); use a kernel with XFS quotas",
            ),
            Self::KernelWithoutQuota { fs: Filesystem::Ext4 } => f.write_str(
                "this kernel has no quota support for ext4 (quotactl returned ENOSYS: it was built \
                 without CONFIG_QUOTA); use a kernel with quotas",
            ),
            Self::NotMountedWithProjectQuota { fs: Filesystem::Xfs } => f.write_str(
                "the XFS filesystem is mounted without project quotas; mount it with -o pquota \
                 (prjquota)",
            ),
            Self::NotMountedWithProjectQuota { fs: Filesystem::Ext4 } => f.write_str(
                "the ext4 filesystem is mounted without project quotas; it needs the quota and project \
                 features (mkfs.ext4 -O quota,project, or tune2fs -O quota,project) and -o prjquota",
            ),
            Self::NotEnforced { fs } => write!(
                f,
                "project quota on this {fs} filesystem is accounted but not enforced (pqnoenforce); \
                 mount it with -o pquota (prjquota)"
            ),
            Self::DeviceNode { errno } => write!(
                f,
                "cannot make the backing block device node ({errno}); it needs CAP_MKNOD"
            ),
            Self::Quotactl { errno: Errno::ACCESS } => f.write_str(
                "quotactl(Q_XGETQSTAT) may not use the backing device node (EACCES); is the home's filesystem \
                 mounted nodev?",
            ),
            Self::Quotactl { errno } => write!(f, "quotactl(Q_XGETQSTAT) for project quota failed: {errno}"),
        }
    }
}

/// Result of this crate's operations.
pub type Result<T, E = QuotaError> = std::result::Result<T, E>;
