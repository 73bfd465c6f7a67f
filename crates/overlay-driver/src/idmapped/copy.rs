//! The fallback where the kernel cannot id-map lowers: a copy of a layer's
//! tree whose owners are what an id-mapped mount would show (the host id
//! the map gives each, the overflow id 65534 outside it), so both ways of
//! seeing a layer give the same view. Everything else is kept: data, mode
//! (setuid included), times, xattrs (overlayfs markers included), hard
//! links, symlinks, device nodes and whiteouts.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use overlay_archive::IdMaps;
use overlay_fs::{Dir, FileType, Fs, Metadata, NodeKind};

use crate::error::Result;

/// `EIO`, for a copy error that carries no errno.
const EIO: i32 = 5;

/// Copies the tree `src` into the empty directory `dst`, its root's mode,
/// owner and times included, owners shown through `maps`
/// ([`host_view`](super::host_view)).
///
/// # Errors
///
/// A node of `src` cannot be read or its copy made.
pub(crate) fn copy_mapped(src: &dyn Fs, dst: &dyn Fs, maps: &IdMaps) -> Result<u64> {
    let mut c = Copier {
        dst,
        maps,
        links: HashMap::new(),
        files: 0,
    };
    let root = src.metadata(Path::new(""))?;
    let mut dir = src.open_dir(Path::new(""))?;
    c.copy_dir(&mut *dir, Path::new(""), &root)?;
    Ok(c.files)
}

struct Copier<'a> {
    dst: &'a dyn Fs,
    maps: &'a IdMaps,
    /// First copy of each multiply linked inode, by `(dev, ino)`.
    links: HashMap<(u64, u64), PathBuf>,
    /// Nodes copied.
    files: u64,
}

impl Copier<'_> {
    /// Copies the entries of `dir` (at `path`), then gives `path` the
    /// attributes of `md`: its times last, after its entries changed it.
    fn copy_dir(&mut self, dir: &mut dyn Dir, path: &Path, md: &Metadata) -> Result<()> {
        let (uid, gid) = super::host_view(self.maps, md.uid, md.gid);
        for (name, value) in dir.own_xattrs()? {
            self.dst.set_xattr(path, &name, &value)?;
        }
        let mut entries = dir.entries()?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        for e in entries {
            self.copy_entry(dir, &e.name, &path.join(&e.name))?;
        }
        // Owner before mode: a chown clears setgid on some filesystems.
        self.dst.set_owner(path, uid, gid)?;
        self.dst.set_mode(path, md.mode)?;
        self.dst.set_times(path, Some(md.atime), Some(md.mtime))?;
        Ok(())
    }

    fn copy_entry(&mut self, dir: &dyn Dir, name: &OsStr, path: &Path) -> Result<()> {
        let md = dir.metadata(name)?;
        self.files += 1;
        if md.file_type != FileType::Directory && md.nlink > 1 {
            if let Some(first) = self.links.get(&(md.dev, md.ino)) {
                self.dst.hardlink(first, path)?;
                return Ok(());
            }
            self.links.insert((md.dev, md.ino), path.to_path_buf());
        }
        let (uid, gid) = super::host_view(self.maps, md.uid, md.gid);
        match md.file_type {
            FileType::Directory => {
                self.dst.mkdir(path, 0o700)?;
                let mut sub = dir.open_dir(name)?;
                return self.copy_dir(&mut *sub, path, &md);
            }
            FileType::Regular => {
                let (mut from, md) = dir.open_file(name)?;
                let mut to = self.dst.create_new(path, 0o600)?;
                std::io::copy(&mut from, &mut to)
                    .map_err(|e| overlay_fs::Error::from_errno("copy", path, e.raw_os_error().unwrap_or(EIO)))?;
                for (n, v) in from.xattrs()? {
                    to.set_xattr(&n, &v)?;
                }
                to.set_owner(uid, gid)?;
                to.set_mode(md.mode)?;
                to.set_times(Some(md.atime), Some(md.mtime))?;
                return Ok(());
            }
            FileType::Symlink => self.dst.symlink(&dir.readlink(name)?, path)?,
            FileType::Fifo => self.dst.mknod(path, NodeKind::Fifo, md.mode)?,
            FileType::CharDevice => self.dst.mknod(path, NodeKind::CharDevice(md.rdev), md.mode)?,
            FileType::BlockDevice => self.dst.mknod(path, NodeKind::BlockDevice(md.rdev), md.mode)?,
            // No layer made from a tar holds one (tar cannot), and no
            // call here can make one: left out, as Docker's archive does.
            _ => {
                self.files -= 1;
                return Ok(());
            }
        }
        for (n, v) in dir.xattrs(name)? {
            self.dst.set_xattr(path, &n, &v)?;
        }
        self.dst.set_owner(path, uid, gid)?;
        if md.file_type != FileType::Symlink {
            self.dst.set_mode(path, md.mode)?;
        }
        self.dst.set_times(path, Some(md.atime), Some(md.mtime))?;
        Ok(())
    }
}
