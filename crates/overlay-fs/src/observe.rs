//! A tree's observable state as one map, so two filesystems that should
//! agree (a model and the kernel, `HostFs` and `MemFs`, a tree before and
//! after) compare with one `assert_eq!`, and a failure shows every
//! difference. Made for tests, here and in crates built on this one.
//! [`observe_extraction`] adds what two extractions of one tar must also
//! agree on: times, sizes and where a sparse file's data lies.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::hash::Hasher as _;
use std::path::{Path, PathBuf};

use crate::{File, FileType, Fs, Result};

/// What [`observe`] records beyond each entry's type, mode, owner, device
/// number and contents (file data, link target).
pub struct Observe<'a> {
    /// The xattrs to record, by name; the rest (a kernel's own
    /// bookkeeping, security labels of the host) are left out.
    pub xattrs: &'a dyn Fn(&OsStr) -> bool,
    /// Record link counts and, for each non-directory, the first path
    /// (in walk order) with the same inode: which entries are hard links.
    pub hardlinks: bool,
    /// Record the root's own mode and owner, under the empty path.
    pub root: bool,
}

impl Default for Observe<'_> {
    /// Every xattr, no link structure, no root.
    fn default() -> Self {
        Self {
            xattrs: &|_| true,
            hardlinks: false,
            root: false,
        }
    }
}

/// Every entry of `fs`, by path, described in one line. Times and
/// directory sizes are left out (they differ between filesystems and
/// clocks). An entry that lists as one type and stats as another, or
/// lists but cannot be stat'ed, is described as such rather than failing.
///
/// # Errors
///
/// A directory cannot be listed, or a file, link or xattr cannot be read.
pub fn observe(fs: &dyn Fs, how: &Observe<'_>) -> Result<BTreeMap<PathBuf, String>> {
    walk(fs, how, false)
}

/// [`observe`] for two extractions of one tar (an import against GNU
/// tar's `-x`, say), which must agree on more: each entry's modification
/// time to the second, and each regular file's size and data as its data
/// extents (where the filesystem says data lies: `SEEK_DATA` and
/// `SEEK_HOLE` on a host tree; a tree without file descriptors has one
/// extent) and its bytes, spelled out up to 256 and above that as a digest
/// of the blocks that are not all zeros (so equal data has an equal digest
/// whatever its holes). A sparse file of 9 GiB costs the reads of its
/// data, not of its zeros, and holes written as zeros show in the
/// extents. Compare trees of the same kind on the same filesystem: extents
/// are the filesystem's.
///
/// # Errors
///
/// As [`observe`]; also a file's data cannot be read or sought.
pub fn observe_extraction(fs: &dyn Fs, how: &Observe<'_>) -> Result<BTreeMap<PathBuf, String>> {
    walk(fs, how, true)
}

fn walk(fs: &dyn Fs, how: &Observe<'_>, extraction: bool) -> Result<BTreeMap<PathBuf, String>> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(dir) = stack.pop() {
        let mut entries = fs.read_dir(&dir)?;
        entries.sort();
        for e in entries {
            let path = dir.join(&e.name);
            let md = match fs.metadata(&path) {
                Ok(md) => md,
                Err(err) => {
                    out.insert(path, format!("listed as {:?}, lstat: {:?}", e.file_type, err.kind()));
                    continue;
                }
            };
            let mut names = fs.list_xattrs(&path)?;
            names.retain(|n| (how.xattrs)(n));
            names.sort();
            let mut xattrs = Vec::with_capacity(names.len());
            for n in names {
                let value = fs.get_xattr(&path, &n)?;
                xattrs.push((n, value));
            }
            let mut desc = format!(
                "{:?} mode={:o} owner={}:{} rdev={} xattrs={xattrs:?}",
                md.file_type, md.mode, md.uid, md.gid, md.rdev
            );
            if md.file_type != e.file_type {
                desc = format!("listed as {:?}, is {desc}", e.file_type);
            }
            if extraction {
                desc += &format!(" mtime={}", md.mtime.sec);
            }
            match md.file_type {
                FileType::Directory => stack.push(path.clone()),
                FileType::Regular if extraction => desc += &data_extents(fs, &path)?,
                FileType::Regular => desc += &format!(" data={:?}", fs.read(&path)?),
                FileType::Symlink => desc += &format!(" -> {:?}", fs.readlink(&path)?),
                _ => {}
            }
            if how.hardlinks && md.file_type != FileType::Directory {
                let first = inodes.entry(md.ino).or_insert_with(|| path.clone());
                desc += &format!(" nlink={} inode-of={first:?}", md.nlink);
            }
            out.insert(path, desc);
        }
    }
    if how.root {
        let root = fs.metadata(Path::new(""))?;
        out.insert(
            PathBuf::new(),
            format!("root mode={:o} owner={}:{}", root.mode, root.uid, root.gid),
        );
    }
    Ok(out)
}

/// Data spelled out up to this many bytes; a digest above.
const SPELLED_OUT: u64 = 256;

/// The digest's unit: aligned blocks of this size that hold a nonzero byte
/// are hashed with their offset, all-zero ones (holes or written zeros)
/// are not, so the digest says what the file holds, the extents where.
const DIGEST_BLOCK: u64 = 4096;

/// ` size=N extents=[(offset, len)..] data=..` of a regular file.
fn data_extents(fs: &dyn Fs, path: &Path) -> Result<String> {
    let mut file = fs.open_file(path)?;
    let size = file.metadata()?.size;
    let extents = match file.as_fd() {
        Some(fd) => host_extents(fd, size).map_err(|e| crate::Error::from_errno("lseek", path, e.raw_os_error()))?,
        None if size == 0 => Vec::new(),
        None => vec![(0, size)],
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut spelled = vec![0u8; usize::try_from(size.min(SPELLED_OUT)).unwrap_or(0)];
    let mut buf = vec![0u8; DIGEST_BLOCK as usize];
    for &(start, len) in &extents {
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start))
            .map_err(|e| crate::io_error("lseek", path, &e))?;
        let (mut pos, end) = (start, start + len);
        while pos < end {
            // Up to the next block boundary, so blocks are the same
            // whichever extents they were read through.
            let want = (DIGEST_BLOCK - pos % DIGEST_BLOCK).min(end - pos) as usize;
            let n = read_some(&mut *file, &mut buf[..want]).map_err(|e| crate::io_error("read", path, &e))?;
            if n == 0 {
                break;
            }
            let chunk = &buf[..n];
            if chunk.iter().any(|b| *b != 0) {
                hasher.write_u64(pos);
                hasher.write(chunk);
            }
            if let Some(dst) = spelled.get_mut(pos as usize..pos as usize + n) {
                dst.copy_from_slice(chunk);
            }
            pos += n as u64;
        }
    }
    let data = if size <= SPELLED_OUT {
        format!("{spelled:?}")
    } else {
        format!("#{:016x}", hasher.finish())
    };
    Ok(format!(" size={size} extents={extents:?} data={data}"))
}

fn read_some(file: &mut dyn File, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// The data extents of an open host file (`lseek` with `SEEK_DATA` and
/// `SEEK_HOLE`), up to `size`.
fn host_extents(fd: std::os::fd::BorrowedFd<'_>, size: u64) -> rustix::io::Result<Vec<(u64, u64)>> {
    use rustix::fs::{SeekFrom, seek};
    let mut extents = Vec::new();
    let mut pos = 0;
    while pos < size {
        let start = match seek(fd, SeekFrom::Data(pos)) {
            Ok(start) => start,
            // No data at or after `pos`: the file ends in a hole.
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(e),
        };
        let end = seek(fd, SeekFrom::Hole(start))?.min(size);
        if end > start {
            extents.push((start, end - start));
        }
        pos = end.max(start + 1);
    }
    Ok(extents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemFs;

    #[test]
    fn describes_what_differs() {
        let a = MemFs::new();
        a.write(Path::new("f"), 0o644, b"one").unwrap();
        a.mkdir(Path::new("d"), 0o755).unwrap();
        a.symlink(Path::new("f"), Path::new("d/l")).unwrap();
        a.hardlink(Path::new("f"), Path::new("d/h")).unwrap();
        let b = MemFs::new();
        b.write(Path::new("f"), 0o644, b"one").unwrap();
        b.mkdir(Path::new("d"), 0o755).unwrap();
        b.symlink(Path::new("f"), Path::new("d/l")).unwrap();
        b.write(Path::new("d/h"), 0o644, b"one").unwrap();
        let plain = Observe::default();
        assert_eq!(observe(&a, &plain).unwrap(), observe(&b, &plain).unwrap());
        let links = Observe {
            hardlinks: true,
            ..Observe::default()
        };
        let (oa, ob) = (observe(&a, &links).unwrap(), observe(&b, &links).unwrap());
        assert_ne!(oa[Path::new("d/h")], ob[Path::new("d/h")], "a hard link is not a copy");
        b.set_xattr(Path::new("f"), OsStr::new("user.x"), b"1").unwrap();
        assert_ne!(observe(&a, &plain).unwrap(), observe(&b, &plain).unwrap());
        let no_user = Observe {
            xattrs: &|n| !n.to_string_lossy().starts_with("user."),
            ..Observe::default()
        };
        assert_eq!(observe(&a, &no_user).unwrap(), observe(&b, &no_user).unwrap());
    }

    #[test]
    fn extractions_show_times_sizes_and_holes() {
        use std::io::{Seek, SeekFrom, Write};
        let dir = tempfile::tempdir().unwrap();
        let host = crate::HostFs::new(dir.path()).unwrap();
        let write_sparse = |fs: &dyn Fs, hole_first: bool| {
            let mut f = fs.create_file(Path::new("s"), 0o644).unwrap();
            if hole_first {
                f.seek(SeekFrom::Start(1 << 20)).unwrap();
                f.write_all(&[7u8; 4096]).unwrap();
            } else {
                f.write_all(&vec![0u8; 1 << 20]).unwrap();
                f.write_all(&[7u8; 4096]).unwrap();
            }
            f.set_len(3 << 20).unwrap();
            fs.set_times(Path::new("s"), None, Some(crate::Timestamp::from_secs(1_000)))
                .unwrap();
        };
        write_sparse(&host, true);
        let how = Observe::default();
        let sparse = observe_extraction(&host, &how).unwrap();
        let desc = &sparse[Path::new("s")];
        assert!(desc.contains("mtime=1000"), "{desc}");
        assert!(desc.contains("size=3145728 extents=[(1048576, 4096)]"), "{desc}");
        assert!(!desc.contains("data=[7"), "a large file's data is a digest: {desc}");
        // The same bytes with the hole written as zeros: observe sees no
        // difference, observe_extraction does.
        let dense_dir = tempfile::tempdir().unwrap();
        let dense = crate::HostFs::new(dense_dir.path()).unwrap();
        write_sparse(&dense, false);
        assert_eq!(observe(&host, &how).unwrap(), observe(&dense, &how).unwrap());
        let dense_desc = observe_extraction(&dense, &how).unwrap()[Path::new("s")].clone();
        assert!(dense_desc.contains("extents=[(0, 1052672)]"), "{dense_desc}");
        let data = |d: &str| d[d.find(" data=").unwrap()..].to_owned();
        assert_eq!(data(desc), data(&dense_desc), "the same bytes, the same digest");
        // A tree without descriptors has one extent; small data is spelled out.
        let mem = MemFs::new();
        mem.write(Path::new("f"), 0o600, b"abc").unwrap();
        mem.set_times(Path::new("f"), None, Some(crate::Timestamp::from_secs(5)))
            .unwrap();
        let m = observe_extraction(&mem, &how).unwrap();
        assert!(
            m[Path::new("f")].ends_with(" mtime=5 size=3 extents=[(0, 3)] data=[97, 98, 99]"),
            "{m:?}"
        );
    }
}
