//! A tree's observable state as one map, so two filesystems that should
//! agree (a model and the kernel, `HostFs` and `MemFs`, a tree before and
//! after) compare with one `assert_eq!`, and a failure shows every
//! difference. Made for tests, here and in crates built on this one.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::{FileType, Fs, Result};

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
            match md.file_type {
                FileType::Directory => stack.push(path.clone()),
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
}
