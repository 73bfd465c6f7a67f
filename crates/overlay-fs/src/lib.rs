//! The filesystem surface a container layer store needs, as one trait with
//! two implementations.
//!
//! Every layer operation — unpacking a tar, diffing two trees, building a
//! home — reads and writes trees whose contents are **untrusted**: an image
//! may hold a symlink `etc -> /` or `x -> ../../..`. [`Fs`] is the only door
//! to such a tree, and both implementations keep every path inside their
//! root:
//!
//! - [`HostFs`] is a directory on disk. Each path is resolved by the kernel
//!   with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` down to the
//!   parent directory, and the operation then acts on one name in that
//!   parent with an `*at` call that never follows a final symlink. A symlink
//!   to `/` or `../..` resolves to the root, exactly as it would inside a
//!   container whose root this directory is.
//! - [`MemFs`] is an in-memory tree with the same observable behaviour
//!   (types, modes, owners, hard links sharing one inode, xattrs, errors of
//!   the same [`ErrorKind`]), for tests and for the driver's fake backend.
//!   One conformance suite and a differential property test hold the two
//!   together.
//!
//! ```
//! use overlay_fs::{Fs, MemFs, FileType};
//! use std::path::Path;
//!
//! let fs = MemFs::new();
//! fs.mkdir(Path::new("etc"), 0o755)?;
//! fs.write(Path::new("etc/hostname"), 0o644, b"layer\n")?;
//! // A hostile symlink resolves inside the root, never outside it.
//! fs.symlink(Path::new("/"), Path::new("escape"))?;
//! fs.write(Path::new("escape/etc/passwd"), 0o600, b"root:x:0:0\n")?;
//! assert_eq!(fs.read(Path::new("etc/passwd"))?, b"root:x:0:0\n");
//! assert_eq!(fs.metadata(Path::new("escape"))?.file_type, FileType::Symlink);
//! # Ok::<(), overlay_fs::Error>(())
//! ```
//!
//! # Semantics shared by both backends
//!
//! - Paths are relative to the root; a leading `/` is ignored. `..` never
//!   climbs above the root. A path may not end in `..`.
//! - Symlinks in *intermediate* components are followed (inside the root);
//!   the *final* component is never followed: `metadata` is `lstat`,
//!   `set_owner` is `lchown`, opening a symlink fails with
//!   [`ErrorKind::SymlinkLoop`].
//! - Modes given to `create_file`, `mkdir` and `mknod` are applied exactly
//!   (the process umask does not apply), as a tar extractor needs.
//! - `read_dir` and `list_xattrs` return entries in no particular order.
//!
//! # Kernel requirements of [`HostFs`]
//!
//! | feature | Linux | without it |
//! |---|---|---|
//! | `openat2` with `RESOLVE_IN_ROOT` | 5.6 | [`HostFs::new`] fails with `Unsupported` |
//! | `/proc` mounted | any | mode and xattr changes fail |
//! | `listxattrat` / `getxattrat` | 6.13 | a name's xattrs are read through `/proc/self/fd` (slower) |
#![deny(unsafe_code)]

mod error;
mod host;
mod hostdir;
mod mem;
mod metadata;
mod observe;
pub mod path;
mod procfd;
mod xattrat;

use std::ffi::{OsStr, OsString};
use std::io::{Read, Seek, Write};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

pub use error::{Error, ErrorKind, Result};
pub use host::HostFs;
pub use mem::MemFs;
pub use metadata::{DirEntry, FileType, Metadata, NodeKind, Timestamp, major, makedev, minor};
pub use observe::{Observe, observe, observe_extraction};
pub use path::{NAME_MAX, PATH_MAX};

/// An open regular file.
pub trait File: Read + Write + Seek + Send {
    /// The file's metadata (`fstat`).
    fn metadata(&self) -> Result<Metadata>;

    /// Truncates or extends the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> Result<()>;

    /// The kernel file descriptor, when the file is on disk, so callers can
    /// use `copy_file_range` or `sendfile` on a fast path.
    fn as_fd(&self) -> Option<BorrowedFd<'_>>;

    /// Sets owner and group of the open file (`fchown`), with the same
    /// setuid clearing as [`Fs::set_owner`]. Saves resolving the path again
    /// right after creating a file.
    fn set_owner(&self, uid: u32, gid: u32) -> Result<()>;

    /// Sets the permission bits of the open file (`fchmod`).
    fn set_mode(&self, mode: u32) -> Result<()>;

    /// Sets access and modification times of the open file (`futimens`).
    fn set_times(&self, atime: Option<Timestamp>, mtime: Option<Timestamp>) -> Result<()>;

    /// Sets an extended attribute on the open file (`fsetxattr`).
    fn set_xattr(&self, name: &OsStr, value: &[u8]) -> Result<()>;

    /// All extended attributes of the open file, name and value, in no
    /// particular order (`flistxattr`, `fgetxattr`).
    fn xattrs(&self) -> Result<Vec<(OsString, Vec<u8>)>>;
}

/// An open directory, for walking a tree without resolving every path from
/// the root again: each name is looked up in this directory only, and a
/// final symlink is never followed.
///
/// A walker opens the root with [`Fs::open_dir`] and descends with
/// [`Dir::open_dir`]; the handle keeps naming the same directory even if it
/// is renamed meanwhile, and it can only reach what lies below it.
pub trait Dir: Send + Sync {
    /// The entries, without `.` and `..`, in no particular order. Meant to
    /// be called once per handle.
    fn entries(&mut self) -> Result<Vec<DirEntry>>;

    /// Metadata of `name` in this directory (`fstatat` without following).
    fn metadata(&self, name: &OsStr) -> Result<Metadata>;

    /// Opens the subdirectory `name` (not through a symlink).
    fn open_dir(&self, name: &OsStr) -> Result<Box<dyn Dir>>;

    /// Opens the regular file `name` for reading, with the metadata of the
    /// very inode opened (no window between a `stat` and the `open`); other
    /// types fail without being opened, as with [`Fs::open_file`].
    fn open_file(&self, name: &OsStr) -> Result<(Box<dyn File>, Metadata)>;

    /// The target of the symlink `name`.
    fn readlink(&self, name: &OsStr) -> Result<PathBuf>;

    /// All extended attributes of `name` (not following a symlink), as
    /// name and value, in no particular order.
    fn xattrs(&self, name: &OsStr) -> Result<Vec<(OsString, Vec<u8>)>>;

    /// All extended attributes of this directory itself.
    fn own_xattrs(&self) -> Result<Vec<(OsString, Vec<u8>)>>;
}

/// The operations a layer store performs on a tree.
///
/// All paths are relative to the tree's root, which nothing escapes (see the
/// crate docs). The trait is object safe: drivers hold a `Box<dyn Fs>` or
/// `Arc<dyn Fs>`.
pub trait Fs: Send + Sync + std::fmt::Debug {
    /// Metadata of the node at `path`, not following a final symlink
    /// (`lstat`).
    fn metadata(&self, path: &Path) -> Result<Metadata>;

    /// The entries of the directory at `path`, without `.` and `..`, in no
    /// particular order.
    fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>>;

    /// Opens the directory at `path` (not through a final symlink) as a
    /// handle for walking below it.
    fn open_dir(&self, path: &Path) -> Result<Box<dyn Dir>>;

    /// The tree rooted at the directory `path` (not through a final
    /// symlink), sharing the same files: paths in it resolve inside that
    /// directory exactly as they resolve inside this tree's root. A layer's
    /// `diff` dir in a home is such a tree.
    fn subtree(&self, path: &Path) -> Result<std::sync::Arc<dyn Fs>>;

    /// Opens an existing regular file for reading. Other types fail without
    /// being opened (a device node is never opened).
    fn open_file(&self, path: &Path) -> Result<Box<dyn File>>;

    /// Opens an existing regular file for reading and writing, without
    /// truncating it.
    fn open_file_rw(&self, path: &Path) -> Result<Box<dyn File>>;

    /// Creates a regular file with exactly `mode`, or truncates an existing
    /// one (keeping its mode), and opens it for writing.
    fn create_file(&self, path: &Path, mode: u32) -> Result<Box<dyn File>>;

    /// Creates a new regular file with exactly `mode` and opens it for
    /// writing; fails with [`ErrorKind::AlreadyExists`] if anything exists
    /// at `path` (`O_CREAT | O_EXCL`), so an existing hard link is never
    /// written through.
    fn create_new(&self, path: &Path, mode: u32) -> Result<Box<dyn File>>;

    /// Creates a directory with exactly `mode`.
    fn mkdir(&self, path: &Path, mode: u32) -> Result<()>;

    /// Creates a symlink at `path` whose content is `target` (stored as
    /// given: it is resolved inside the root only when followed).
    fn symlink(&self, target: &Path, path: &Path) -> Result<()>;

    /// The content of the symlink at `path`.
    fn readlink(&self, path: &Path) -> Result<PathBuf>;

    /// Makes `path` a new name of the node at `existing` (not following a
    /// final symlink in `existing`).
    fn hardlink(&self, existing: &Path, path: &Path) -> Result<()>;

    /// Creates a fifo or device node with exactly `mode` (permission bits).
    fn mknod(&self, path: &Path, kind: NodeKind, mode: u32) -> Result<()>;

    /// The value of extended attribute `name`, `None` if unset.
    fn get_xattr(&self, path: &Path, name: &OsStr) -> Result<Option<Vec<u8>>>;

    /// Sets extended attribute `name`, creating or replacing it.
    fn set_xattr(&self, path: &Path, name: &OsStr, value: &[u8]) -> Result<()>;

    /// The names of all extended attributes, in no particular order.
    fn list_xattrs(&self, path: &Path) -> Result<Vec<OsString>>;

    /// Removes extended attribute `name`.
    fn remove_xattr(&self, path: &Path, name: &OsStr) -> Result<()>;

    /// Sets the permission bits (`mode & 0o7777`). Symlinks have no mode of
    /// their own: they fail with [`ErrorKind::Unsupported`].
    fn set_mode(&self, path: &Path, mode: u32) -> Result<()>;

    /// Sets owner and group, not following a final symlink (`lchown`).
    /// As in the kernel, this clears setuid (and setgid when group-executable)
    /// on non-directories.
    fn set_owner(&self, path: &Path, uid: u32, gid: u32) -> Result<()>;

    /// Sets access and modification times, not following a final symlink;
    /// `None` leaves that time unchanged.
    fn set_times(&self, path: &Path, atime: Option<Timestamp>, mtime: Option<Timestamp>) -> Result<()>;

    /// Removes a non-directory (`unlink`).
    fn remove_file(&self, path: &Path) -> Result<()>;

    /// Removes an empty directory (`rmdir`).
    fn remove_dir(&self, path: &Path) -> Result<()>;

    /// Removes `path` and, if it is a directory, everything below it.
    /// A missing `path` is not an error (like Go's `os.RemoveAll`, which
    /// Docker's driver relies on).
    fn remove_all(&self, path: &Path) -> Result<()>;

    /// Renames `from` to `to`, replacing `to` as `rename(2)` does.
    fn rename(&self, from: &Path, to: &Path) -> Result<()>;

    /// Does anything (of any type, a dangling symlink included) exist at `path`?
    fn exists(&self, path: &Path) -> Result<bool> {
        match self.metadata(path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads a whole regular file.
    fn read(&self, path: &Path) -> Result<Vec<u8>> {
        let mut f = self.open_file(path)?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(|e| io_error("read", path, &e))?;
        Ok(buf)
    }

    /// Creates or truncates a regular file and writes `data` into it.
    fn write(&self, path: &Path, mode: u32, data: &[u8]) -> Result<()> {
        let mut f = self.create_file(path, mode)?;
        f.write_all(data).map_err(|e| io_error("write", path, &e))
    }

    /// Creates `path` and any missing parents with `mode`; existing
    /// directories (and symlinks to directories, as intermediate
    /// components) are left as they are.
    fn mkdir_all(&self, path: &Path, mode: u32) -> Result<()> {
        let mut cur = PathBuf::new();
        let mut last_created = true;
        for c in path.components() {
            cur.push(c);
            if !matches!(c, std::path::Component::Normal(_)) {
                continue;
            }
            last_created = match self.mkdir(&cur, mode) {
                Ok(()) => true,
                // The next mkdir resolves `cur` as a directory and fails
                // with NotADirectory if it is not one.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
                Err(e) => return Err(e),
            };
        }
        if !last_created && !self.metadata(&cur)?.is_dir() {
            return Err(Error::new("mkdir_all", path, ErrorKind::NotADirectory));
        }
        Ok(())
    }
}

/// Converts an `io::Error` from reading or writing an open file.
pub(crate) fn io_error(op: &'static str, path: &Path, e: &std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(errno) => Error::from_errno(op, path, errno),
        None => Error::new(op, path, ErrorKind::Other(error::libc_errno::EINVAL)).with_detail(e.to_string()),
    }
}

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
