//! [`IdMappedFs`]: the fake backend's id-mapped mount, a lower layer's
//! tree seen through a uid/gid map as `mount_setattr(MOUNT_ATTR_IDMAP)`
//! shows it: a stored id is shown as the host id the map gives it, an id
//! outside the map as the kernel's overflow id (65534). The model of
//! overlayfs reads lower layers only, so the view is read-only; a copy-up
//! copies the shown (host) ids into the upper, as the kernel's does.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use overlay_archive::IdMaps;
use overlay_fs::{Dir, DirEntry, Error, ErrorKind, File, Fs, Metadata, NodeKind, Result, Timestamp};

fn map_md(maps: &IdMaps, mut md: Metadata) -> Metadata {
    (md.uid, md.gid) = crate::idmapped::host_view(maps, md.uid, md.gid);
    md
}

fn read_only(op: &'static str, path: &Path) -> Error {
    Error::new(op, path, ErrorKind::ReadOnly)
}

/// A tree seen through an id map; changes fail with `ReadOnly`.
#[derive(Debug, Clone)]
pub(crate) struct IdMappedFs {
    inner: Arc<dyn Fs>,
    maps: Arc<IdMaps>,
}

impl IdMappedFs {
    pub(crate) fn new(inner: Arc<dyn Fs>, maps: Arc<IdMaps>) -> Self {
        Self { inner, maps }
    }
}

struct MappedDir {
    inner: Box<dyn Dir>,
    maps: Arc<IdMaps>,
}

impl Dir for MappedDir {
    fn entries(&mut self) -> Result<Vec<DirEntry>> {
        self.inner.entries()
    }
    fn metadata(&self, name: &OsStr) -> Result<Metadata> {
        Ok(map_md(&self.maps, self.inner.metadata(name)?))
    }
    fn open_dir(&self, name: &OsStr) -> Result<Box<dyn Dir>> {
        Ok(Box::new(MappedDir {
            inner: self.inner.open_dir(name)?,
            maps: self.maps.clone(),
        }))
    }
    fn open_file(&self, name: &OsStr) -> Result<(Box<dyn File>, Metadata)> {
        let (f, md) = self.inner.open_file(name)?;
        Ok((mapped_file(f, &self.maps), map_md(&self.maps, md)))
    }
    fn readlink(&self, name: &OsStr) -> Result<PathBuf> {
        self.inner.readlink(name)
    }
    fn xattrs(&self, name: &OsStr) -> Result<Vec<(OsString, Vec<u8>)>> {
        self.inner.xattrs(name)
    }
    fn own_xattrs(&self) -> Result<Vec<(OsString, Vec<u8>)>> {
        self.inner.own_xattrs()
    }
}

/// An open file of the view: read-only, its metadata mapped.
struct MappedFile {
    inner: Box<dyn File>,
    maps: Arc<IdMaps>,
}

fn mapped_file(inner: Box<dyn File>, maps: &Arc<IdMaps>) -> Box<dyn File> {
    Box::new(MappedFile {
        inner,
        maps: maps.clone(),
    })
}

impl Read for MappedFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Write for MappedFile {
    fn write(&mut self, _buf: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::from_raw_os_error(ErrorKind::ReadOnly.errno()))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for MappedFile {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

impl File for MappedFile {
    fn metadata(&self) -> Result<Metadata> {
        Ok(map_md(&self.maps, self.inner.metadata()?))
    }
    fn set_len(&mut self, _len: u64) -> Result<()> {
        Err(read_only("ftruncate", Path::new("")))
    }
    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    fn set_owner(&self, _uid: u32, _gid: u32) -> Result<()> {
        Err(read_only("fchown", Path::new("")))
    }
    fn set_mode(&self, _mode: u32) -> Result<()> {
        Err(read_only("fchmod", Path::new("")))
    }
    fn set_times(&self, _atime: Option<Timestamp>, _mtime: Option<Timestamp>) -> Result<()> {
        Err(read_only("futimens", Path::new("")))
    }
    fn set_xattr(&self, _name: &OsStr, _value: &[u8]) -> Result<()> {
        Err(read_only("fsetxattr", Path::new("")))
    }
    fn xattrs(&self) -> Result<Vec<(OsString, Vec<u8>)>> {
        self.inner.xattrs()
    }
}

impl Fs for IdMappedFs {
    fn metadata(&self, p: &Path) -> Result<Metadata> {
        Ok(map_md(&self.maps, self.inner.metadata(p)?))
    }
    fn read_dir(&self, p: &Path) -> Result<Vec<DirEntry>> {
        self.inner.read_dir(p)
    }
    fn open_dir(&self, p: &Path) -> Result<Box<dyn Dir>> {
        Ok(Box::new(MappedDir {
            inner: self.inner.open_dir(p)?,
            maps: self.maps.clone(),
        }))
    }
    fn subtree(&self, p: &Path) -> Result<Arc<dyn Fs>> {
        Ok(Arc::new(Self::new(self.inner.subtree(p)?, self.maps.clone())))
    }
    fn open_file(&self, p: &Path) -> Result<Box<dyn File>> {
        Ok(mapped_file(self.inner.open_file(p)?, &self.maps))
    }
    fn open_file_rw(&self, p: &Path) -> Result<Box<dyn File>> {
        Err(read_only("open", p))
    }
    fn create_file(&self, p: &Path, _m: u32) -> Result<Box<dyn File>> {
        Err(read_only("create", p))
    }
    fn create_new(&self, p: &Path, _m: u32) -> Result<Box<dyn File>> {
        Err(read_only("create", p))
    }
    fn mkdir(&self, p: &Path, _m: u32) -> Result<()> {
        Err(read_only("mkdir", p))
    }
    fn symlink(&self, _t: &Path, p: &Path) -> Result<()> {
        Err(read_only("symlink", p))
    }
    fn readlink(&self, p: &Path) -> Result<PathBuf> {
        self.inner.readlink(p)
    }
    fn hardlink(&self, _e: &Path, p: &Path) -> Result<()> {
        Err(read_only("link", p))
    }
    fn mknod(&self, p: &Path, _k: NodeKind, _m: u32) -> Result<()> {
        Err(read_only("mknod", p))
    }
    fn get_xattr(&self, p: &Path, n: &OsStr) -> Result<Option<Vec<u8>>> {
        self.inner.get_xattr(p, n)
    }
    fn set_xattr(&self, p: &Path, _n: &OsStr, _v: &[u8]) -> Result<()> {
        Err(read_only("setxattr", p))
    }
    fn list_xattrs(&self, p: &Path) -> Result<Vec<OsString>> {
        self.inner.list_xattrs(p)
    }
    fn remove_xattr(&self, p: &Path, _n: &OsStr) -> Result<()> {
        Err(read_only("removexattr", p))
    }
    fn set_mode(&self, p: &Path, _m: u32) -> Result<()> {
        Err(read_only("chmod", p))
    }
    fn set_owner(&self, p: &Path, _u: u32, _g: u32) -> Result<()> {
        Err(read_only("lchown", p))
    }
    fn set_times(&self, p: &Path, _a: Option<Timestamp>, _m: Option<Timestamp>) -> Result<()> {
        Err(read_only("utimensat", p))
    }
    fn remove_file(&self, p: &Path) -> Result<()> {
        Err(read_only("unlink", p))
    }
    fn remove_dir(&self, p: &Path) -> Result<()> {
        Err(read_only("rmdir", p))
    }
    fn remove_all(&self, p: &Path) -> Result<()> {
        Err(read_only("remove", p))
    }
    fn rename(&self, _f: &Path, t: &Path) -> Result<()> {
        Err(read_only("rename", t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_archive::IdRange;

    #[test]
    fn stored_ids_show_shifted_and_unmapped_ones_as_overflow() {
        let mem = Arc::new(overlay_fs::MemFs::new());
        mem.write(Path::new("f"), 0o644, b"x").unwrap();
        mem.set_owner(Path::new("f"), 1000, 70000).unwrap();
        let r = IdRange {
            container_id: 0,
            host_id: 100_000,
            size: 65536,
        };
        let view = IdMappedFs::new(
            mem.clone(),
            Arc::new(IdMaps {
                uids: vec![r],
                gids: vec![r],
            }),
        );
        let md = view.metadata(Path::new("f")).unwrap();
        assert_eq!((md.uid, md.gid), (101_000, 65534));
        let (_, md) = view
            .open_dir(Path::new(""))
            .unwrap()
            .open_file(OsStr::new("f"))
            .unwrap();
        assert_eq!(md.uid, 101_000);
        assert_eq!(view.open_file(Path::new("f")).unwrap().metadata().unwrap().uid, 101_000);
        assert_eq!(
            view.set_owner(Path::new("f"), 0, 0).unwrap_err().kind(),
            ErrorKind::ReadOnly
        );
        assert_eq!(mem.metadata(Path::new("f")).unwrap().uid, 1000, "stored ids unchanged");
    }
}
