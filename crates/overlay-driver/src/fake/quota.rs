//! Quota accounting for the fake backend: a layer's `diff` tree that
//! refuses to grow past its limit, with the error XFS gives (`ENOSPC`).

use std::ffi::{OsStr, OsString};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use overlay_fs::{Dir, DirEntry, ErrorKind, File, FileType, Fs, Metadata, NodeKind, Result, Timestamp};

/// A tree limited to `limit` bytes of file data.
#[derive(Debug, Clone)]
pub(crate) struct QuotaFs {
    inner: Arc<dyn Fs>,
    limit: u64,
}

impl QuotaFs {
    pub(crate) fn new(inner: Arc<dyn Fs>, limit: u64) -> Self {
        Self { inner, limit }
    }
}

/// Bytes of regular files in `fs`, each inode once.
fn used(fs: &dyn Fs) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(dir) = stack.pop() {
        for e in fs.read_dir(&dir).unwrap_or_default() {
            let p = dir.join(&e.name);
            match e.file_type {
                FileType::Directory => stack.push(p),
                FileType::Regular => {
                    if let Ok(m) = fs.metadata(&p)
                        && seen.insert(m.ino)
                    {
                        total += m.size;
                    }
                }
                _ => {}
            }
        }
    }
    total
}

fn no_space() -> std::io::Error {
    std::io::Error::from_raw_os_error(ErrorKind::NoSpace.errno())
}

/// An open file of a [`QuotaFs`]: writes that would push the tree past its
/// limit fail, as a project quota makes them.
struct QuotaFile {
    inner: Box<dyn File>,
    tree: Arc<dyn Fs>,
    limit: u64,
    pos: u64,
}

impl QuotaFile {
    fn grow_by(&self, end: u64) -> std::io::Result<()> {
        let size = self.inner.metadata().map(|m| m.size).unwrap_or(0);
        if end > size && used(&*self.tree) + (end - size) > self.limit {
            return Err(no_space());
        }
        Ok(())
    }
}

impl Read for QuotaFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for QuotaFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.grow_by(self.pos + buf.len() as u64)?;
        let n = self.inner.write(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Seek for QuotaFile {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.pos = self.inner.seek(pos)?;
        Ok(self.pos)
    }
}

impl File for QuotaFile {
    fn metadata(&self) -> Result<Metadata> {
        self.inner.metadata()
    }
    fn set_len(&mut self, len: u64) -> Result<()> {
        if self.grow_by(len).is_err() {
            return Err(overlay_fs::Error::new("ftruncate", "", ErrorKind::NoSpace));
        }
        self.inner.set_len(len)
    }
    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    fn set_owner(&self, uid: u32, gid: u32) -> Result<()> {
        self.inner.set_owner(uid, gid)
    }
    fn set_mode(&self, mode: u32) -> Result<()> {
        self.inner.set_mode(mode)
    }
    fn set_times(&self, atime: Option<Timestamp>, mtime: Option<Timestamp>) -> Result<()> {
        self.inner.set_times(atime, mtime)
    }
    fn set_xattr(&self, name: &OsStr, value: &[u8]) -> Result<()> {
        self.inner.set_xattr(name, value)
    }
    fn xattrs(&self) -> Result<Vec<(OsString, Vec<u8>)>> {
        self.inner.xattrs()
    }
}

impl QuotaFs {
    fn wrap(&self, f: Box<dyn File>) -> Box<dyn File> {
        Box::new(QuotaFile {
            inner: f,
            tree: self.inner.clone(),
            limit: self.limit,
            pos: 0,
        })
    }
}

impl Fs for QuotaFs {
    fn metadata(&self, p: &Path) -> Result<Metadata> {
        self.inner.metadata(p)
    }
    fn read_dir(&self, p: &Path) -> Result<Vec<DirEntry>> {
        self.inner.read_dir(p)
    }
    fn open_dir(&self, p: &Path) -> Result<Box<dyn Dir>> {
        self.inner.open_dir(p)
    }
    fn subtree(&self, p: &Path) -> Result<Arc<dyn Fs>> {
        self.inner.subtree(p)
    }
    fn open_file(&self, p: &Path) -> Result<Box<dyn File>> {
        self.inner.open_file(p)
    }
    fn open_file_rw(&self, p: &Path) -> Result<Box<dyn File>> {
        Ok(self.wrap(self.inner.open_file_rw(p)?))
    }
    fn create_file(&self, p: &Path, m: u32) -> Result<Box<dyn File>> {
        Ok(self.wrap(self.inner.create_file(p, m)?))
    }
    fn create_new(&self, p: &Path, m: u32) -> Result<Box<dyn File>> {
        Ok(self.wrap(self.inner.create_new(p, m)?))
    }
    fn mkdir(&self, p: &Path, m: u32) -> Result<()> {
        self.inner.mkdir(p, m)
    }
    fn symlink(&self, t: &Path, p: &Path) -> Result<()> {
        self.inner.symlink(t, p)
    }
    fn readlink(&self, p: &Path) -> Result<PathBuf> {
        self.inner.readlink(p)
    }
    fn hardlink(&self, e: &Path, p: &Path) -> Result<()> {
        self.inner.hardlink(e, p)
    }
    fn mknod(&self, p: &Path, k: NodeKind, m: u32) -> Result<()> {
        self.inner.mknod(p, k, m)
    }
    fn get_xattr(&self, p: &Path, n: &OsStr) -> Result<Option<Vec<u8>>> {
        self.inner.get_xattr(p, n)
    }
    fn set_xattr(&self, p: &Path, n: &OsStr, v: &[u8]) -> Result<()> {
        self.inner.set_xattr(p, n, v)
    }
    fn list_xattrs(&self, p: &Path) -> Result<Vec<OsString>> {
        self.inner.list_xattrs(p)
    }
    fn remove_xattr(&self, p: &Path, n: &OsStr) -> Result<()> {
        self.inner.remove_xattr(p, n)
    }
    fn set_mode(&self, p: &Path, m: u32) -> Result<()> {
        self.inner.set_mode(p, m)
    }
    fn set_owner(&self, p: &Path, u: u32, g: u32) -> Result<()> {
        self.inner.set_owner(p, u, g)
    }
    fn set_times(&self, p: &Path, a: Option<Timestamp>, m: Option<Timestamp>) -> Result<()> {
        self.inner.set_times(p, a, m)
    }
    fn remove_file(&self, p: &Path) -> Result<()> {
        self.inner.remove_file(p)
    }
    fn remove_dir(&self, p: &Path) -> Result<()> {
        self.inner.remove_dir(p)
    }
    fn remove_all(&self, p: &Path) -> Result<()> {
        self.inner.remove_all(p)
    }
    fn rename(&self, f: &Path, t: &Path) -> Result<()> {
        self.inner.rename(f, t)
    }
}
