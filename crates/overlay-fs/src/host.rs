//! [`HostFs`]: a directory on disk that nothing escapes.
//!
//! Every operation resolves the *parent* of its path with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` and then acts on one
//! name inside that parent with an `*at` system call that does not follow a
//! final symlink. Where the kernel offers no such call (changing a mode,
//! extended attributes), the node is first pinned with an `O_PATH |
//! O_NOFOLLOW` descriptor and reached through `/proc/self/fd`, which names
//! exactly that inode.

use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{Error, ErrorKind, Result};
use crate::hostdir::fill;
use crate::metadata::{DirEntry, FileType, Metadata, NodeKind, Timestamp};
use crate::path::{Part, split, split_child};
use crate::{File, Fs};

/// How often a resolution racing with a rename is retried (`EAGAIN` from
/// `openat2`). The kernel's check is against every rename on the system,
/// so a walk through `..` or a long symlink chain can lose many times in a
/// row while other processes rename; after the first few tries each retry
/// waits a little longer (at most about 0.5 s in all).
const EAGAIN_RETRIES: u64 = 1024;

/// The largest xattr value the kernel stores (`XATTR_SIZE_MAX`).
const XATTR_SIZE_MAX: usize = 65536;

/// A directory tree on the host, rooted at a directory that every path
/// resolves inside (see the crate docs).
pub struct HostFs {
    root: OwnedFd,
    root_path: PathBuf,
    umask: u32,
}

impl fmt::Debug for HostFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostFs").field("root", &self.root_path).finish()
    }
}

/// The directory an operation acts in: the root itself or a resolved parent.
enum Parent<'a> {
    Root(BorrowedFd<'a>),
    Owned(OwnedFd),
}

impl Parent<'_> {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Parent::Root(fd) => *fd,
            Parent::Owned(fd) => fd.as_fd(),
        }
    }
}

pub(crate) fn errno_err(op: &'static str, path: &Path, e: Errno) -> Error {
    Error::from_errno(op, path, e.raw_os_error())
}

/// `/proc/self/fd/N`, optionally followed by one name inside that directory.
pub(crate) fn proc_path(fd: BorrowedFd<'_>, name: Option<&OsStr>) -> PathBuf {
    use std::os::fd::AsRawFd;
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    if let Some(name) = name {
        p.push(name);
    }
    p
}

fn current_umask() -> u32 {
    // The umask is process-wide and can only be read race-free from
    // /proc; when that fails, assume the strictest so modes are always
    // fixed up with an explicit chmod.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o777)
}

pub(crate) fn metadata_from_stat(st: &rfs::Stat) -> Metadata {
    let mode = st.st_mode;
    Metadata {
        // The kernel reports no S_IFMT value outside the seven types.
        file_type: FileType::from_mode_bits(mode).unwrap_or(FileType::Regular),
        mode: mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        size: st.st_size.max(0) as u64,
        nlink: st.st_nlink,
        blocks: st.st_blocks.max(0) as u64,
        ino: st.st_ino,
        dev: st.st_dev,
        rdev: st.st_rdev,
        mtime: Timestamp {
            sec: st.st_mtime,
            nsec: st.st_mtime_nsec as u32,
        },
        atime: Timestamp {
            sec: st.st_atime,
            nsec: st.st_atime_nsec as u32,
        },
    }
}

fn check_id(op: &'static str, path: &Path, uid: u32, gid: u32) -> Result<()> {
    if uid == u32::MAX || gid == u32::MAX {
        return Err(
            Error::new(op, path, ErrorKind::InvalidInput).with_detail("uid or gid -1 means 'unchanged', not an id")
        );
    }
    Ok(())
}

impl HostFs {
    /// Opens `root` as the root of a tree.
    ///
    /// # Errors
    ///
    /// `root` cannot be opened as a directory, or the kernel lacks
    /// `openat2` (Linux < 5.6): [`ErrorKind::Unsupported`]. There is no
    /// user-space fallback resolver: a layer store must not run with a
    /// weaker one without saying so.
    pub fn new(root: impl AsRef<Path>) -> Result<Self> {
        let root_path = root.as_ref().to_path_buf();
        let root = rfs::open(
            &root_path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| errno_err("open root", &root_path, e))?;
        match rfs::openat2(
            &root,
            ".",
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT,
        ) {
            Ok(_) => {}
            Err(Errno::NOSYS) => {
                return Err(Error::new("openat2", &root_path, ErrorKind::Unsupported)
                    .with_detail("openat2 with RESOLVE_IN_ROOT needs Linux 5.6 or newer"));
            }
            Err(e) => return Err(errno_err("openat2", &root_path, e)),
        }
        Ok(Self {
            root,
            root_path,
            umask: current_umask(),
        })
    }

    /// The host path of the root, as given to [`HostFs::new`].
    pub fn root(&self) -> &Path {
        &self.root_path
    }

    /// `openat2` of `rel` (which may be empty) inside the root.
    fn open_in_root(&self, op: &'static str, path: &Path, rel: &Path, flags: OFlags) -> Result<OwnedFd> {
        let rel: &Path = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        for attempt in 0..EAGAIN_RETRIES {
            match rfs::openat2(&self.root, rel, flags | OFlags::CLOEXEC, Mode::empty(), resolve) {
                Err(Errno::AGAIN) => {
                    if attempt >= 16 {
                        std::thread::sleep(std::time::Duration::from_micros(attempt.min(1000)));
                    }
                }
                Err(e) => return Err(errno_err(op, path, e)),
                Ok(fd) => return Ok(fd),
            }
        }
        Err(Error::new(op, path, ErrorKind::Other(Errno::AGAIN.raw_os_error()))
            .with_detail("path kept changing during resolution"))
    }

    /// The directory named by `parts`, resolved inside the root.
    fn resolve_dir(&self, op: &'static str, path: &Path, parts: &[Part<'_>]) -> Result<Parent<'_>> {
        if parts.is_empty() {
            return Ok(Parent::Root(self.root.as_fd()));
        }
        let mut rel = PathBuf::new();
        for p in parts {
            match p {
                Part::Up => rel.push(".."),
                Part::Name(n) => rel.push(n),
            }
        }
        self.open_in_root(op, path, &rel, OFlags::PATH | OFlags::DIRECTORY)
            .map(Parent::Owned)
    }

    /// The parent directory of `path` and the final name in it.
    fn parent<'p>(&self, op: &'static str, path: &'p Path) -> Result<(Parent<'_>, &'p OsStr)> {
        let (parts, name) = split_child(op, path)?;
        Ok((self.resolve_dir(op, path, &parts)?, name))
    }

    /// Pins the node at `name` in `dir` without following a symlink.
    fn pin(&self, op: &'static str, path: &Path, dir: &Parent<'_>, name: &OsStr) -> Result<(OwnedFd, Metadata)> {
        pin_at(op, path, dir.fd(), name)
    }

    fn open_regular(&self, op: &'static str, path: &Path, flags: OFlags) -> Result<Box<dyn File>> {
        let (dir, name) = self.parent(op, path)?;
        Ok(Box::new(open_regular_at(op, path, dir.fd(), name, flags)?))
    }

    /// Sets `mode` exactly on a pinned node when creation could not.
    fn chmod_pinned(&self, op: &'static str, path: &Path, fd: &OwnedFd, mode: u32) -> Result<()> {
        rfs::chmodat(
            rfs::CWD,
            proc_path(fd.as_fd(), None),
            Mode::from_raw_mode(mode),
            AtFlags::empty(),
        )
        .map_err(|e| errno_err(op, path, e))
    }

    /// Whether creating with `mode` needs an explicit chmod afterwards:
    /// the umask would clear some bits, or special bits are asked for.
    fn needs_chmod(&self, mode: u32) -> bool {
        mode & 0o7000 != 0 || mode & self.umask & 0o777 != 0
    }

    /// The path through which xattr calls reach `path`, and whether the
    /// call must follow it (only for the root, reached via its magic link).
    fn xattr_target(&self, op: &'static str, path: &Path) -> Result<(PathBuf, bool, Option<Parent<'_>>)> {
        let s = split(op, path)?;
        match s.name {
            None => Ok((proc_path(self.root.as_fd(), None), true, None)),
            Some(name) => {
                let dir = self.resolve_dir(op, path, &s.parent)?;
                Ok((proc_path(dir.fd(), Some(name)), false, Some(dir)))
            }
        }
    }
}

/// Pins the node `name` in `dir` with an `O_PATH | O_NOFOLLOW` descriptor.
pub(crate) fn pin_at(op: &'static str, path: &Path, dir: BorrowedFd<'_>, name: &OsStr) -> Result<(OwnedFd, Metadata)> {
    let fd = rfs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| errno_err(op, path, e))?;
    let st = rfs::fstat(&fd).map_err(|e| errno_err(op, path, e))?;
    Ok((fd, metadata_from_stat(&st)))
}

/// Reopens a pinned node through its `/proc/self/fd` entry, which names
/// exactly that inode.
pub(crate) fn reopen(op: &'static str, path: &Path, fd: &OwnedFd, flags: OFlags) -> Result<OwnedFd> {
    crate::procfd::reopen(fd.as_fd(), flags).map_err(|e| errno_err(op, path, e))
}

/// Opens the regular file `name` in `dir`; any other type fails before it
/// is opened (pinned with `O_PATH`, checked, then reopened), so a device
/// node in a layer is never opened.
pub(crate) fn open_regular_at(
    op: &'static str,
    path: &Path,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    flags: OFlags,
) -> Result<HostFile> {
    Ok(open_regular_with_metadata(op, path.to_path_buf(), dir, name, flags)?.0)
}

/// [`open_regular_at`], also returning the metadata of the opened inode;
/// takes the path (for messages) by value, as the file keeps it.
pub(crate) fn open_regular_with_metadata(
    op: &'static str,
    path: PathBuf,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    flags: OFlags,
) -> Result<(HostFile, Metadata)> {
    let (fd, md) = pin_at(op, &path, dir, name)?;
    require_regular(op, &path, &md)?;
    let fd = reopen(op, &path, &fd, flags)?;
    Ok((
        HostFile {
            file: std::fs::File::from(fd),
            path,
        },
        md,
    ))
}

pub(crate) fn require_regular(op: &'static str, path: &Path, md: &Metadata) -> Result<()> {
    match md.file_type {
        FileType::Regular => Ok(()),
        FileType::Directory => Err(Error::new(op, path, ErrorKind::IsADirectory)),
        FileType::Symlink => Err(Error::new(op, path, ErrorKind::SymlinkLoop)),
        _ => Err(Error::new(op, path, ErrorKind::NotARegularFile)),
    }
}

pub(crate) fn check_xattr_args(op: &'static str, path: &Path, name: &OsStr, value: Option<&[u8]>) -> Result<CString> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > 255 {
        return Err(Error::new(op, path, ErrorKind::InvalidInput).with_detail("xattr name must be 1 to 255 bytes"));
    }
    if value.is_some_and(|v| v.len() > XATTR_SIZE_MAX) {
        return Err(Error::new(op, path, ErrorKind::InvalidInput).with_detail("xattr value larger than 64 KiB"));
    }
    CString::new(bytes)
        .map_err(|_| Error::new(op, path, ErrorKind::InvalidInput).with_detail("xattr name contains a NUL byte"))
}

impl Fs for HostFs {
    fn metadata(&self, path: &Path) -> Result<Metadata> {
        const OP: &str = "lstat";
        let s = split(OP, path)?;
        let st = match s.name {
            None => rfs::fstat(&self.root),
            Some(name) => {
                let dir = self.resolve_dir(OP, path, &s.parent)?;
                rfs::statat(dir.fd(), name, AtFlags::SYMLINK_NOFOLLOW)
            }
        };
        st.map(|st| metadata_from_stat(&st)).map_err(|e| errno_err(OP, path, e))
    }

    fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>> {
        self.open_dir(path)?.entries()
    }

    fn open_dir(&self, path: &Path) -> Result<Box<dyn crate::Dir>> {
        const OP: &str = "opendir";
        let s = split(OP, path)?;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match s.name {
            None => rfs::openat(&self.root, ".", flags, Mode::empty()),
            Some(name) => rfs::openat(self.resolve_dir(OP, path, &s.parent)?.fd(), name, flags, Mode::empty()),
        }
        .map_err(|e| errno_err(OP, path, e))?;
        Ok(Box::new(crate::hostdir::HostDir::new(fd, path.to_path_buf())))
    }

    fn subtree(&self, path: &Path) -> Result<std::sync::Arc<dyn Fs>> {
        const OP: &str = "subtree";
        let s = split(OP, path)?;
        let root = match s.name {
            None => rfs::openat(
                &self.root,
                ".",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            ),
            Some(name) => rfs::openat(
                self.resolve_dir(OP, path, &s.parent)?.fd(),
                name,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ),
        }
        .map_err(|e| errno_err(OP, path, e))?;
        let root_path = self.root_path.join(path.strip_prefix("/").unwrap_or(path));
        Ok(std::sync::Arc::new(HostFs {
            root,
            root_path,
            umask: self.umask,
        }))
    }

    fn open_file(&self, path: &Path) -> Result<Box<dyn File>> {
        self.open_regular("open", path, OFlags::RDONLY)
    }

    fn open_file_rw(&self, path: &Path) -> Result<Box<dyn File>> {
        self.open_regular("open", path, OFlags::RDWR)
    }

    fn create_file(&self, path: &Path, mode: u32) -> Result<Box<dyn File>> {
        const OP: &str = "create";
        let (dir, name) = self.parent(OP, path)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rfs::openat(dir.fd(), name, flags, Mode::from_raw_mode(mode & 0o777)) {
            Ok(fd) => {
                if self.needs_chmod(mode) {
                    rfs::fchmod(&fd, Mode::from_raw_mode(mode & 0o7777)).map_err(|e| errno_err(OP, path, e))?;
                }
                fd
            }
            Err(Errno::EXIST) => {
                let (pinned, md) = self.pin(OP, path, &dir, name)?;
                require_regular(OP, path, &md)?;
                reopen(OP, path, &pinned, OFlags::WRONLY | OFlags::TRUNC)?
            }
            Err(e) => return Err(errno_err(OP, path, e)),
        };
        Ok(Box::new(HostFile {
            file: std::fs::File::from(fd),
            path: path.to_path_buf(),
        }))
    }

    fn create_new(&self, path: &Path, mode: u32) -> Result<Box<dyn File>> {
        const OP: &str = "create";
        let (dir, name) = self.parent(OP, path)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(dir.fd(), name, flags, Mode::from_raw_mode(mode & 0o777))
            .map_err(|e| errno_err(OP, path, e))?;
        if self.needs_chmod(mode) {
            rfs::fchmod(&fd, Mode::from_raw_mode(mode & 0o7777)).map_err(|e| errno_err(OP, path, e))?;
        }
        Ok(Box::new(HostFile {
            file: std::fs::File::from(fd),
            path: path.to_path_buf(),
        }))
    }

    fn mkdir(&self, path: &Path, mode: u32) -> Result<()> {
        const OP: &str = "mkdir";
        let (dir, name) = self.parent(OP, path)?;
        rfs::mkdirat(dir.fd(), name, Mode::from_raw_mode(mode & 0o1777)).map_err(|e| errno_err(OP, path, e))?;
        if self.needs_chmod(mode) {
            let (fd, md) = self.pin(OP, path, &dir, name)?;
            // Keep the setgid bit a setgid parent passed down, as mkdir did.
            self.chmod_pinned(OP, path, &fd, (mode & 0o7777) | (md.mode & 0o2000))?;
        }
        Ok(())
    }

    fn symlink(&self, target: &Path, path: &Path) -> Result<()> {
        const OP: &str = "symlink";
        let (dir, name) = self.parent(OP, path)?;
        rfs::symlinkat(target, dir.fd(), name).map_err(|e| errno_err(OP, path, e))
    }

    fn readlink(&self, path: &Path) -> Result<PathBuf> {
        const OP: &str = "readlink";
        let (dir, name) = self.parent(OP, path)?;
        let target = rfs::readlinkat(dir.fd(), name, Vec::new()).map_err(|e| errno_err(OP, path, e))?;
        Ok(PathBuf::from(OsString::from_vec(target.into_bytes())))
    }

    fn hardlink(&self, existing: &Path, path: &Path) -> Result<()> {
        const OP: &str = "link";
        let (odir, oname) = self.parent(OP, existing)?;
        let (ndir, nname) = self.parent(OP, path)?;
        rfs::linkat(odir.fd(), oname, ndir.fd(), nname, AtFlags::empty()).map_err(|e| errno_err(OP, path, e))
    }

    fn mknod(&self, path: &Path, kind: NodeKind, mode: u32) -> Result<()> {
        const OP: &str = "mknod";
        let (dir, name) = self.parent(OP, path)?;
        let ty = match kind {
            NodeKind::Fifo => rfs::FileType::Fifo,
            NodeKind::CharDevice(_) => rfs::FileType::CharacterDevice,
            NodeKind::BlockDevice(_) => rfs::FileType::BlockDevice,
        };
        rfs::mknodat(dir.fd(), name, ty, Mode::from_raw_mode(mode & 0o777), kind.rdev())
            .map_err(|e| errno_err(OP, path, e))?;
        if self.needs_chmod(mode) {
            let (fd, _) = self.pin(OP, path, &dir, name)?;
            self.chmod_pinned(OP, path, &fd, mode & 0o7777)?;
        }
        Ok(())
    }

    fn get_xattr(&self, path: &Path, name: &OsStr) -> Result<Option<Vec<u8>>> {
        const OP: &str = "getxattr";
        let (target, follow, _dir) = self.xattr_target(OP, path)?;
        let cname = check_xattr_args(OP, path, name, None)?;
        let got = fill(&|buf: &mut [u8]| {
            if follow {
                rfs::getxattr(&target, &*cname, buf)
            } else {
                rfs::lgetxattr(&target, &*cname, buf)
            }
        });
        match got {
            Ok(value) => Ok(Some(value)),
            Err(Errno::NODATA) => Ok(None),
            Err(e) => Err(errno_err(OP, path, e)),
        }
    }

    fn set_xattr(&self, path: &Path, name: &OsStr, value: &[u8]) -> Result<()> {
        const OP: &str = "setxattr";
        let (target, follow, _dir) = self.xattr_target(OP, path)?;
        let cname = check_xattr_args(OP, path, name, Some(value))?;
        let flags = rfs::XattrFlags::empty();
        if follow {
            rfs::setxattr(&target, &*cname, value, flags)
        } else {
            rfs::lsetxattr(&target, &*cname, value, flags)
        }
        .map_err(|e| errno_err(OP, path, e))
    }

    fn list_xattrs(&self, path: &Path) -> Result<Vec<OsString>> {
        const OP: &str = "listxattr";
        let (target, follow, _dir) = self.xattr_target(OP, path)?;
        let names = fill(&|buf: &mut [u8]| {
            if follow {
                rfs::listxattr(&target, buf)
            } else {
                rfs::llistxattr(&target, buf)
            }
        })
        .map_err(|e| errno_err(OP, path, e))?;
        Ok(names
            .split(|b| *b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| OsString::from_vec(n.to_vec()))
            .collect())
    }

    fn remove_xattr(&self, path: &Path, name: &OsStr) -> Result<()> {
        const OP: &str = "removexattr";
        let (target, follow, _dir) = self.xattr_target(OP, path)?;
        let cname = check_xattr_args(OP, path, name, None)?;
        if follow {
            rfs::removexattr(&target, &*cname)
        } else {
            rfs::lremovexattr(&target, &*cname)
        }
        .map_err(|e| errno_err(OP, path, e))
    }

    fn set_mode(&self, path: &Path, mode: u32) -> Result<()> {
        const OP: &str = "chmod";
        let s = split(OP, path)?;
        let mode = mode & 0o7777;
        match s.name {
            None => rfs::fchmod(
                &self.open_in_root(OP, path, Path::new(""), OFlags::RDONLY | OFlags::DIRECTORY)?,
                Mode::from_raw_mode(mode),
            )
            .map_err(|e| errno_err(OP, path, e)),
            Some(name) => {
                let dir = self.resolve_dir(OP, path, &s.parent)?;
                let (fd, md) = self.pin(OP, path, &dir, name)?;
                if md.is_symlink() {
                    return Err(
                        Error::new(OP, path, ErrorKind::Unsupported).with_detail("symlinks have no mode of their own")
                    );
                }
                self.chmod_pinned(OP, path, &fd, mode)
            }
        }
    }

    fn set_owner(&self, path: &Path, uid: u32, gid: u32) -> Result<()> {
        const OP: &str = "lchown";
        check_id(OP, path, uid, gid)?;
        let s = split(OP, path)?;
        let (uid, gid) = (Some(rfs::Uid::from_raw(uid)), Some(rfs::Gid::from_raw(gid)));
        match s.name {
            None => rfs::chownat(&self.root, "", uid, gid, AtFlags::EMPTY_PATH),
            Some(name) => {
                let dir = self.resolve_dir(OP, path, &s.parent)?;
                rfs::chownat(dir.fd(), name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
            }
        }
        .map_err(|e| errno_err(OP, path, e))
    }

    fn set_times(&self, path: &Path, atime: Option<Timestamp>, mtime: Option<Timestamp>) -> Result<()> {
        const OP: &str = "utimensat";
        let times = timestamps(atime, mtime);
        let s = split(OP, path)?;
        match s.name {
            None => rfs::utimensat(rfs::CWD, proc_path(self.root.as_fd(), None), &times, AtFlags::empty()),
            Some(name) => {
                let dir = self.resolve_dir(OP, path, &s.parent)?;
                rfs::utimensat(dir.fd(), name, &times, AtFlags::SYMLINK_NOFOLLOW)
            }
        }
        .map_err(|e| errno_err(OP, path, e))
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        const OP: &str = "unlink";
        let (dir, name) = self.parent(OP, path)?;
        rfs::unlinkat(dir.fd(), name, AtFlags::empty()).map_err(|e| errno_err(OP, path, e))
    }

    fn remove_dir(&self, path: &Path) -> Result<()> {
        const OP: &str = "rmdir";
        let (dir, name) = self.parent(OP, path)?;
        rfs::unlinkat(dir.fd(), name, AtFlags::REMOVEDIR).map_err(|e| errno_err(OP, path, e))
    }

    fn remove_all(&self, path: &Path) -> Result<()> {
        const OP: &str = "remove_all";
        let (dir, name) = match self.parent(OP, path) {
            Ok(p) => p,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        remove_all_at(OP, path, dir.fd(), name)
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        const OP: &str = "rename";
        let (fdir, fname) = self.parent(OP, from)?;
        let (tdir, tname) = self.parent(OP, to)?;
        rfs::renameat(fdir.fd(), fname, tdir.fd(), tname).map_err(|e| match e {
            // From rename itself EXDEV means "another filesystem" (or an
            // overlay's lower directory), not a resolution escape.
            Errno::XDEV => Error::new(OP, from, ErrorKind::CrossDevice),
            e => errno_err(OP, from, e),
        })
    }
}

/// Removes `name` in `dir` and everything below it, never following a
/// symlink: each directory is opened `O_NOFOLLOW` relative to its parent.
fn remove_all_at(op: &'static str, path: &Path, dir: BorrowedFd<'_>, name: &OsStr) -> Result<()> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => return Ok(()),
        Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(errno_err(op, path, e)),
    }
    let fd = match rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(errno_err(op, path, e)),
    };
    let mut sub = crate::hostdir::HostDir::new(fd, path.to_path_buf());
    for entry in crate::Dir::entries(&mut sub)? {
        if entry.file_type == FileType::Directory {
            remove_all_at(op, &path.join(&entry.name), sub.fd(), &entry.name)?;
        } else {
            match rfs::unlinkat(sub.fd(), &*entry.name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(errno_err(op, &path.join(&entry.name), e)),
            }
        }
    }
    match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(errno_err(op, path, e)),
    }
}

/// An open regular file of a [`HostFs`].
pub(crate) struct HostFile {
    pub(crate) file: std::fs::File,
    pub(crate) path: PathBuf,
}

impl Read for HostFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }

    // std's own, which sizes the buffer from `fstat` (one `read` for a
    // small file instead of doubling from 32 bytes).
    fn read_to_end(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        self.file.read_to_end(buf)
    }
}

impl Write for HostFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for HostFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

impl File for HostFile {
    fn metadata(&self) -> Result<Metadata> {
        rfs::fstat(&self.file)
            .map(|st| metadata_from_stat(&st))
            .map_err(|e| errno_err("fstat", &self.path, e))
    }

    fn set_len(&mut self, len: u64) -> Result<()> {
        self.file
            .set_len(len)
            .map_err(|e| crate::io_error("ftruncate", &self.path, &e))
    }

    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.file.as_fd())
    }

    fn set_owner(&self, uid: u32, gid: u32) -> Result<()> {
        check_id("fchown", &self.path, uid, gid)?;
        rfs::fchown(&self.file, Some(rfs::Uid::from_raw(uid)), Some(rfs::Gid::from_raw(gid)))
            .map_err(|e| errno_err("fchown", &self.path, e))
    }

    fn set_mode(&self, mode: u32) -> Result<()> {
        rfs::fchmod(&self.file, Mode::from_raw_mode(mode & 0o7777)).map_err(|e| errno_err("fchmod", &self.path, e))
    }

    fn set_times(&self, atime: Option<Timestamp>, mtime: Option<Timestamp>) -> Result<()> {
        rfs::futimens(&self.file, &timestamps(atime, mtime)).map_err(|e| errno_err("futimens", &self.path, e))
    }

    fn set_xattr(&self, name: &OsStr, value: &[u8]) -> Result<()> {
        let cname = check_xattr_args("fsetxattr", &self.path, name, Some(value))?;
        rfs::fsetxattr(&self.file, &*cname, value, rfs::XattrFlags::empty())
            .map_err(|e| errno_err("fsetxattr", &self.path, e))
    }

    fn xattrs(&self) -> Result<Vec<(OsString, Vec<u8>)>> {
        crate::hostdir::collect_xattrs(
            "flistxattr",
            &self.path,
            |buf| rfs::flistxattr(&self.file, buf),
            |name, buf| rfs::fgetxattr(&self.file, name, buf),
        )
    }
}

/// `utimensat` times, `UTIME_OMIT` for `None`.
fn timestamps(atime: Option<Timestamp>, mtime: Option<Timestamp>) -> rfs::Timestamps {
    let ts = |t: Option<Timestamp>| match t {
        Some(t) => rfs::Timespec {
            tv_sec: t.sec,
            tv_nsec: t.nsec as _,
        },
        None => rfs::Timespec {
            tv_sec: 0,
            tv_nsec: rfs::UTIME_OMIT,
        },
    };
    rfs::Timestamps {
        last_access: ts(atime),
        last_modification: ts(mtime),
    }
}
