//! [`HostDir`]: a directory handle of a [`HostFs`](crate::HostFs) for
//! walking trees, and the xattr reading both handles share.

use std::ffi::{OsStr, OsString};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::error::Result;
use crate::host::{errno_err, metadata_from_stat, open_regular_with_metadata, proc_path};
use crate::metadata::{DirEntry, FileType, Metadata};
use crate::xattrat;
use crate::{Dir, File};

/// Bytes of `getdents64` buffer: a few hundred entries per call.
const DIRENT_BUF: usize = 32 * 1024;

/// An open directory (`O_RDONLY | O_DIRECTORY`) below a `HostFs` root.
pub(crate) struct HostDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl HostDir {
    pub(crate) fn new(fd: OwnedFd, path: PathBuf) -> Self {
        Self { fd, path }
    }

    /// The directory's descriptor, for `*at` calls in it.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn child(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }
}

impl Dir for HostDir {
    fn entries(&mut self) -> Result<Vec<DirEntry>> {
        let mut buf: Vec<MaybeUninit<u8>> = Vec::with_capacity(DIRENT_BUF);
        buf.resize(DIRENT_BUF, MaybeUninit::uninit());
        let mut out = Vec::new();
        let mut raw = rfs::RawDir::new(&self.fd, &mut buf[..]);
        while let Some(entry) = raw.next() {
            let entry = entry.map_err(|e| errno_err("readdir", &self.path, e))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsStr::from_bytes(name);
            let file_type = match entry.file_type() {
                rfs::FileType::RegularFile => FileType::Regular,
                rfs::FileType::Directory => FileType::Directory,
                rfs::FileType::Symlink => FileType::Symlink,
                rfs::FileType::CharacterDevice => FileType::CharDevice,
                rfs::FileType::BlockDevice => FileType::BlockDevice,
                rfs::FileType::Fifo => FileType::Fifo,
                rfs::FileType::Socket => FileType::Socket,
                // A filesystem without d_type: ask the inode.
                rfs::FileType::Unknown => self.metadata(name)?.file_type,
            };
            out.push(DirEntry {
                name: name.to_os_string(),
                file_type,
                ino: entry.ino(),
            });
        }
        Ok(out)
    }

    fn metadata(&self, name: &OsStr) -> Result<Metadata> {
        rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .map(|st| metadata_from_stat(&st))
            .map_err(|e| errno_err("lstat", &self.child(name), e))
    }

    fn open_dir(&self, name: &OsStr) -> Result<Box<dyn Dir>> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(&self.fd, name, flags, Mode::empty())
            .map_err(|e| errno_err("opendir", &self.child(name), e))?;
        Ok(Box::new(HostDir::new(fd, self.child(name))))
    }

    fn open_file(&self, name: &OsStr) -> Result<(Box<dyn File>, Metadata)> {
        let (file, md) = open_regular_with_metadata("open", self.child(name), self.fd.as_fd(), name, OFlags::RDONLY)?;
        Ok((Box::new(file), md))
    }

    fn readlink(&self, name: &OsStr) -> Result<PathBuf> {
        let target =
            rfs::readlinkat(&self.fd, name, Vec::new()).map_err(|e| errno_err("readlink", &self.child(name), e))?;
        Ok(PathBuf::from(OsString::from_vec(target.into_bytes())))
    }

    fn xattrs(&self, name: &OsStr) -> Result<Vec<(OsString, Vec<u8>)>> {
        const OP: &str = "listxattr";
        let fd = self.fd.as_fd();
        if xattrat::supported() {
            match fill(&|buf: &mut [u8]| xattrat::list(fd, name, buf)) {
                Ok(names) => {
                    // A value `getxattrat` may not read (a seccomp filter
                    // that knows one call and not the other) is read the
                    // procfs way; a real EPERM comes back from that too.
                    let get = |attr: &OsStr, buf: &mut [u8]| match xattrat::get(fd, name, attr, buf) {
                        Err(Errno::NOSYS | Errno::PERM) => rfs::lgetxattr(proc_path(fd, Some(name)), attr, buf),
                        other => other,
                    };
                    return xattr_values(&names, get).map_err(|e| errno_err(OP, &self.child(name), e));
                }
                // An older kernel, or a seccomp filter that does not know
                // the call: the procfs way below.
                Err(Errno::NOSYS | Errno::PERM) => {}
                Err(e) => return Err(errno_err(OP, &self.child(name), e)),
            }
        }
        // The l* calls through our own descriptor's /proc entry: the
        // directory is the one we hold, and `name` is not followed.
        let target = proc_path(fd, Some(name));
        collect_xattrs(
            OP,
            &self.child(name),
            |buf| rfs::llistxattr(&target, buf),
            |attr, buf| rfs::lgetxattr(&target, attr, buf),
        )
    }

    fn own_xattrs(&self) -> Result<Vec<(OsString, Vec<u8>)>> {
        collect_xattrs(
            "flistxattr",
            &self.path,
            |buf| rfs::flistxattr(&self.fd, buf),
            |attr, buf| rfs::fgetxattr(&self.fd, attr, buf),
        )
    }
}

/// Lists and reads all xattrs with `list` and `get` (which fill a buffer,
/// or report the size needed when given an empty one). Usually one call:
/// most files have no xattrs.
pub(crate) fn collect_xattrs(
    op: &'static str,
    path: &Path,
    list: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
    get: impl Fn(&OsStr, &mut [u8]) -> rustix::io::Result<usize>,
) -> Result<Vec<(OsString, Vec<u8>)>> {
    let names = fill(&list).map_err(|e| errno_err(op, path, e))?;
    xattr_values(&names, get).map_err(|e| errno_err(op, path, e))
}

/// The values of the NUL-separated xattr `names`, read with `get`.
fn xattr_values(
    names: &[u8],
    get: impl Fn(&OsStr, &mut [u8]) -> rustix::io::Result<usize>,
) -> rustix::io::Result<Vec<(OsString, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = OsStr::from_bytes(name);
        match fill(&|buf: &mut [u8]| get(name, buf)) {
            Ok(value) => out.push((name.to_os_string(), value)),
            // Removed since the listing, or unreadable to us (trusted.*
            // for an unprivileged reader): not there.
            Err(Errno::NODATA) | Err(Errno::PERM) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Calls `f` with a small buffer, then with one of the size it reports.
pub(crate) fn fill(f: &dyn Fn(&mut [u8]) -> rustix::io::Result<usize>) -> rustix::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        match f(&mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => {
                let n = f(&mut [])?;
                buf.resize(n.max(buf.len() * 2), 0);
            }
            Err(e) => return Err(e),
        }
    }
}
