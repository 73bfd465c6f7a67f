//! One error type for every backend, so callers (and the conformance suite)
//! can match on the same kinds whether the tree is on disk or in memory.

use std::io;
use std::path::{Path, PathBuf};

/// What went wrong, independent of the backend.
///
/// The host backend maps each `errno` to one kind; the in-memory backend
/// produces the same kind where the kernel would. A new kind may be added,
/// hence `non_exhaustive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A component of the path does not exist (`ENOENT`).
    NotFound,
    /// The name is already taken (`EEXIST`).
    AlreadyExists,
    /// A component used as a directory is not one (`ENOTDIR`).
    NotADirectory,
    /// The operation needs a non-directory but found a directory (`EISDIR`).
    IsADirectory,
    /// The directory still has entries (`ENOTEMPTY`).
    DirectoryNotEmpty,
    /// Too many symlinks, or a symlink where the operation refuses one
    /// (`ELOOP`, e.g. opening a symlink with `O_NOFOLLOW`).
    SymlinkLoop,
    /// The object exists but is of a type the operation cannot use, e.g.
    /// opening a device node as a regular file.
    NotARegularFile,
    /// The extended attribute does not exist (`ENODATA`).
    NoSuchAttribute,
    /// A name is longer than 255 bytes or a path longer than 4095 (`ENAMETOOLONG`).
    NameTooLong,
    /// The request itself is malformed: a path naming the root or ending in
    /// `..`, renaming a directory into itself (`EINVAL`), an empty or
    /// oversized xattr name (`ERANGE`, `E2BIG`).
    InvalidInput,
    /// Not allowed (`EPERM`, `EACCES`), e.g. a hard link to a directory.
    PermissionDenied,
    /// The filesystem does not support the operation (`EOPNOTSUPP`), e.g.
    /// changing the mode of a symlink or an unknown xattr namespace.
    Unsupported,
    /// Too many hard links (`EMLINK`).
    TooManyLinks,
    /// The file would grow past the largest size the filesystem keeps
    /// (`EFBIG`), e.g. a sparse file's length.
    FileTooLarge,
    /// The tree is read-only (`EROFS`), e.g. a committed layer's mount.
    ReadOnly,
    /// No space left (`ENOSPC`; XFS reports an exhausted project quota so)
    /// or a quota exceeded (`EDQUOT`).
    NoSpace,
    /// Moving across filesystems or, in an overlay, renaming a directory
    /// that lives in a lower layer without `redirect_dir` (`EXDEV` from
    /// `rename`).
    CrossDevice,
    /// The kernel refused to resolve a path that would leave the root
    /// (`EXDEV` from `openat2`, or a magic link): a safety violation.
    EscapeAttempt,
    /// Any other `errno`.
    Other(i32),
}

impl ErrorKind {
    /// The kind the kernel's `errno` value stands for.
    pub fn from_errno(errno: i32) -> Self {
        match errno {
            libc_errno::ENOENT => Self::NotFound,
            libc_errno::EEXIST => Self::AlreadyExists,
            libc_errno::ENOTDIR => Self::NotADirectory,
            libc_errno::EISDIR => Self::IsADirectory,
            libc_errno::ENOTEMPTY => Self::DirectoryNotEmpty,
            libc_errno::ELOOP => Self::SymlinkLoop,
            libc_errno::ENODATA => Self::NoSuchAttribute,
            libc_errno::ENAMETOOLONG => Self::NameTooLong,
            libc_errno::EINVAL | libc_errno::ERANGE | libc_errno::E2BIG => Self::InvalidInput,
            libc_errno::EPERM | libc_errno::EACCES => Self::PermissionDenied,
            libc_errno::EOPNOTSUPP => Self::Unsupported,
            libc_errno::EMLINK => Self::TooManyLinks,
            libc_errno::EFBIG => Self::FileTooLarge,
            libc_errno::EROFS => Self::ReadOnly,
            libc_errno::ENOSPC | libc_errno::EDQUOT => Self::NoSpace,
            libc_errno::EXDEV => Self::EscapeAttempt,
            other => Self::Other(other),
        }
    }

    /// The `errno` this kind is reported as when converted to `io::Error`.
    pub fn errno(self) -> i32 {
        match self {
            Self::NotFound => libc_errno::ENOENT,
            Self::AlreadyExists => libc_errno::EEXIST,
            Self::NotADirectory => libc_errno::ENOTDIR,
            Self::IsADirectory => libc_errno::EISDIR,
            Self::DirectoryNotEmpty => libc_errno::ENOTEMPTY,
            Self::SymlinkLoop => libc_errno::ELOOP,
            Self::NotARegularFile => libc_errno::EINVAL,
            Self::NoSuchAttribute => libc_errno::ENODATA,
            Self::NameTooLong => libc_errno::ENAMETOOLONG,
            Self::InvalidInput => libc_errno::EINVAL,
            Self::PermissionDenied => libc_errno::EPERM,
            Self::Unsupported => libc_errno::EOPNOTSUPP,
            Self::TooManyLinks => libc_errno::EMLINK,
            Self::FileTooLarge => libc_errno::EFBIG,
            Self::ReadOnly => libc_errno::EROFS,
            Self::NoSpace => libc_errno::ENOSPC,
            Self::CrossDevice => libc_errno::EXDEV,
            Self::EscapeAttempt => libc_errno::EXDEV,
            Self::Other(e) => e,
        }
    }

    /// A short human description, as `strerror` would give.
    pub fn describe(self) -> String {
        match self {
            Self::NotFound => "no such file or directory".into(),
            Self::AlreadyExists => "already exists".into(),
            Self::NotADirectory => "not a directory".into(),
            Self::IsADirectory => "is a directory".into(),
            Self::DirectoryNotEmpty => "directory not empty".into(),
            Self::SymlinkLoop => "is a symlink or too many levels of symlinks".into(),
            Self::NotARegularFile => "not a regular file".into(),
            Self::NoSuchAttribute => "no such extended attribute".into(),
            Self::NameTooLong => "name too long".into(),
            Self::InvalidInput => "invalid argument".into(),
            Self::PermissionDenied => "permission denied".into(),
            Self::Unsupported => "operation not supported".into(),
            Self::TooManyLinks => "too many links".into(),
            Self::FileTooLarge => "file too large".into(),
            Self::ReadOnly => "read-only file system".into(),
            Self::NoSpace => "no space left on device or quota exceeded".into(),
            Self::CrossDevice => "cross-device rename".into(),
            Self::EscapeAttempt => "path resolution would escape the root".into(),
            Self::Other(e) => io::Error::from_raw_os_error(e).to_string(),
        }
    }
}

/// An operation on a path failed.
///
/// It reads like an `strace` line: the operation, the root-relative path it
/// was given, and what the kernel (or the in-memory model) said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op} {path:?}: {}{}", kind.describe(), detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
pub struct Error {
    op: &'static str,
    path: PathBuf,
    kind: ErrorKind,
    detail: Option<String>,
}

impl Error {
    /// An error of `kind` from operation `op` on `path`.
    pub fn new(op: &'static str, path: impl Into<PathBuf>, kind: ErrorKind) -> Self {
        Self {
            op,
            path: path.into(),
            kind,
            detail: None,
        }
    }

    /// Adds a sentence that says more than the kind does.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// From a raw `errno`, as the host backend reports it.
    pub fn from_errno(op: &'static str, path: impl Into<PathBuf>, errno: i32) -> Self {
        Self::new(op, path, ErrorKind::from_errno(errno))
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The operation that failed, e.g. `"mkdir"`.
    pub fn op(&self) -> &'static str {
        self.op
    }

    /// The same error for an operation made in the [`subtree`] at `dir`:
    /// its path made relative to the whole tree's root again.
    ///
    /// [`subtree`]: crate::Fs::subtree
    #[must_use]
    pub fn under(mut self, dir: &Path) -> Self {
        self.path = dir.join(&self.path);
        self
    }

    /// The path the operation was given, relative to the tree's root.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        io::Error::new(io::Error::from_raw_os_error(e.kind.errno()).kind(), e)
    }
}

/// Result of a filesystem operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The errno values this crate names, so no bare integers appear in matches.
pub(crate) mod libc_errno {
    use rustix::io::Errno;
    pub const ENOENT: i32 = Errno::NOENT.raw_os_error();
    pub const EEXIST: i32 = Errno::EXIST.raw_os_error();
    pub const ENOTDIR: i32 = Errno::NOTDIR.raw_os_error();
    pub const EISDIR: i32 = Errno::ISDIR.raw_os_error();
    pub const ENOTEMPTY: i32 = Errno::NOTEMPTY.raw_os_error();
    pub const ELOOP: i32 = Errno::LOOP.raw_os_error();
    pub const ENODATA: i32 = Errno::NODATA.raw_os_error();
    pub const ENAMETOOLONG: i32 = Errno::NAMETOOLONG.raw_os_error();
    pub const EINVAL: i32 = Errno::INVAL.raw_os_error();
    pub const ERANGE: i32 = Errno::RANGE.raw_os_error();
    pub const E2BIG: i32 = Errno::TOOBIG.raw_os_error();
    pub const EPERM: i32 = Errno::PERM.raw_os_error();
    pub const EACCES: i32 = Errno::ACCESS.raw_os_error();
    pub const EOPNOTSUPP: i32 = Errno::OPNOTSUPP.raw_os_error();
    pub const EMLINK: i32 = Errno::MLINK.raw_os_error();
    pub const EFBIG: i32 = Errno::FBIG.raw_os_error();
    pub const EXDEV: i32 = Errno::XDEV.raw_os_error();
    pub const EROFS: i32 = Errno::ROFS.raw_os_error();
    pub const ENOSPC: i32 = Errno::NOSPC.raw_os_error();
    pub const EDQUOT: i32 = Errno::DQUOT.raw_os_error();
}
