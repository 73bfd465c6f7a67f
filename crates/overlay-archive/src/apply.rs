//! One tar entry onto a tree: the file-system calls each kind of entry
//! makes, the same whether the importing thread makes them or a worker
//! does (see [`crate::parallel`]).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use overlay_fs::{ErrorKind, Fs, NodeKind, Timestamp};

use crate::error::{ArchiveError, Result};
use crate::idmap::IdMaps;
use crate::import::ImportWhiteouts;
use crate::reader::Header;
use crate::whiteout::is_private_xattr;

/// An entry's ownership, mode, time and xattrs, ids already mapped.
#[derive(Debug)]
pub(crate) struct Meta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub mtime: Timestamp,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    pub fn read(h: &Header, ids: &IdMaps) -> Result<Self> {
        let id = |v: u64, what: &'static str| -> Result<u32> {
            u32::try_from(v).map_err(|_| ArchiveError::Unmapped { what, id: v })
        };
        let (uid, gid) = ids.to_host(id(h.uid, "tar uid over 32 bits:")?, id(h.gid, "tar gid over 32 bits:")?)?;
        let mtime = Timestamp::from_secs(h.mtime.min(i64::MAX as u64) as i64);
        let xattrs = h
            .xattrs
            .iter()
            .filter(|(name, _)| !is_private_xattr(name))
            .cloned()
            .collect();
        Ok(Self {
            uid,
            gid,
            mode: h.mode,
            mtime,
            xattrs,
        })
    }
}

/// What a worker makes: an entry whose data (if any) is already read.
#[derive(Debug)]
pub(crate) enum Make {
    /// A regular file: its contents are `buf[..len]`. The buffer goes
    /// back to the importer whole, for the next file (see
    /// `TarReader::data_into`).
    File {
        buf: Vec<u8>,
        len: usize,
    },
    Symlink(PathBuf),
    Node(NodeKind),
}

/// One entry handed to a worker.
#[derive(Debug)]
pub(crate) struct Job {
    /// Its place in the tar, so the first failure can be reported.
    pub index: u64,
    /// Its name, for errors.
    pub name: String,
    pub path: PathBuf,
    pub meta: Meta,
    pub make: Make,
}

/// A worker's handle on the directory it last made an entry in.
#[derive(Default)]
pub(crate) struct Near {
    dir: Option<(PathBuf, std::sync::Arc<dyn Fs>)>,
}

/// Applies entries to `fs`.
pub(crate) struct Applier<'a> {
    pub fs: &'a dyn Fs,
    pub whiteouts: ImportWhiteouts,
    /// Who gets the directories made for entries whose parents the tar
    /// omits: the remapped root with id maps (Docker's untar,
    /// `MkdirAllAndChownNew(parent, 0755, rootIDs)`); `None` leaves them
    /// to this process.
    pub parents_owner: Option<(u32, u32)>,
}

impl Applier<'_> {
    fn ctx<'n>(&self, name: &'n str) -> Ctx<'n, '_> {
        Ctx {
            fs: self.fs,
            name,
            parents_owner: self.parents_owner,
        }
    }

    /// Makes a worker's entry; gives back the file's buffer for reuse.
    ///
    /// The entry is made by its name in a handle on its directory, kept in
    /// `near` for the next entry of the batch (usually its sibling): the
    /// walk from the root for each of a file's calls was a third of the
    /// system calls of an apply. A batch's directories stay what they are
    /// while it runs: the importer replaces a directory only after every
    /// batch handed over is made.
    pub fn run(&self, job: Job, near: &mut Near) -> (Result<()>, Option<Vec<u8>>) {
        let parent = parent_of(&job.path);
        let Some(name) = job.path.file_name().filter(|_| !parent.as_os_str().is_empty()) else {
            return self.run_here(job);
        };
        if near.dir.as_ref().is_none_or(|(p, _)| p != parent) {
            // A parent that cannot be opened (missing: the entry's own
            // calls create it) is left to the walk from the root.
            near.dir = self.fs.subtree(parent).ok().map(|fs| (parent.to_path_buf(), fs));
        }
        let Some((_, fs)) = &near.dir else {
            return self.run_here(job);
        };
        let here = Applier {
            fs: &**fs,
            whiteouts: self.whiteouts,
            parents_owner: self.parents_owner,
        };
        let job = Job {
            path: PathBuf::from(name),
            ..job
        };
        let (result, buffer) = here.run_here(job);
        let result = result.map_err(|e| match e {
            ArchiveError::Apply { name, source } => ArchiveError::Apply {
                name,
                source: source.under(parent),
            },
            other => other,
        });
        (result, buffer)
    }

    fn run_here(&self, job: Job) -> (Result<()>, Option<Vec<u8>>) {
        match job.make {
            Make::File { buf, len } => {
                let r = self.file(&job.name, &job.path, &job.meta, |file| {
                    file.write_all(&buf[..len])
                        .map_err(|e| write_error(&job.name, &job.path, &e))
                });
                (r, Some(buf))
            }
            Make::Symlink(target) => (self.symlink(&job.name, &job.path, &target, &job.meta), None),
            Make::Node(node) => (self.node(&job.name, &job.path, node, &job.meta), None),
        }
    }

    /// A directory; one over a directory keeps its contents.
    pub fn dir(&self, name: &str, path: &Path, meta: &Meta) -> Result<()> {
        let ctx = self.ctx(name);
        let fs = self.fs;
        match fs.mkdir(path, meta.mode) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                ctx.ensure_dir(parent_of(path))?;
                ctx.apply(fs.mkdir(path, meta.mode))?;
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                if !ctx.apply(fs.metadata(path))?.is_dir() {
                    ctx.apply(fs.remove_all(path))?;
                    ctx.apply(fs.mkdir(path, meta.mode))?;
                }
            }
            Err(e) => return Err(ctx.err(e)),
        }
        ctx.apply(fs.set_owner(path, meta.uid, meta.gid))?;
        ctx.apply(fs.set_mode(path, meta.mode))?;
        for (k, v) in &meta.xattrs {
            ctx.apply(refused_is_skipped(fs.set_xattr(path, OsStr::from_bytes(k), v)))?;
        }
        Ok(())
    }

    /// A regular file, its contents written by `write`.
    pub fn file(
        &self,
        name: &str,
        path: &Path,
        meta: &Meta,
        write: impl FnOnce(&mut dyn overlay_fs::File) -> Result<()>,
    ) -> Result<()> {
        let ctx = self.ctx(name);
        let mut file = ctx.replace(path, || self.fs.create_new(path, meta.mode))?;
        write(&mut *file)?;
        // Always chown: even for 0:0, a setgid parent gave the file its
        // own group. chown clears setuid/setgid: put them back.
        ctx.apply(file.set_owner(meta.uid, meta.gid))?;
        if meta.mode & 0o6000 != 0 {
            ctx.apply(file.set_mode(meta.mode))?;
        }
        for (k, v) in &meta.xattrs {
            ctx.apply(refused_is_skipped(file.set_xattr(OsStr::from_bytes(k), v)))?;
        }
        ctx.apply(file.set_times(Some(meta.mtime), Some(meta.mtime)))
    }

    pub fn symlink(&self, name: &str, path: &Path, target: &Path, meta: &Meta) -> Result<()> {
        let ctx = self.ctx(name);
        let fs = self.fs;
        ctx.replace(path, || fs.symlink(target, path))?;
        ctx.apply(fs.set_owner(path, meta.uid, meta.gid))?;
        for (k, v) in &meta.xattrs {
            ctx.apply(refused_is_skipped(fs.set_xattr(path, OsStr::from_bytes(k), v)))?;
        }
        ctx.apply(fs.set_times(path, Some(meta.mtime), Some(meta.mtime)))
    }

    /// A device node or a fifo.
    pub fn node(&self, name: &str, path: &Path, node: NodeKind, meta: &Meta) -> Result<()> {
        let ctx = self.ctx(name);
        let fs = self.fs;
        ctx.replace(path, || fs.mknod(path, node, meta.mode & 0o777))?;
        ctx.apply(fs.set_owner(path, meta.uid, meta.gid))?;
        ctx.apply(fs.set_mode(path, meta.mode))?;
        for (k, v) in &meta.xattrs {
            ctx.apply(refused_is_skipped(fs.set_xattr(path, OsStr::from_bytes(k), v)))?;
        }
        ctx.apply(fs.set_times(path, Some(meta.mtime), Some(meta.mtime)))
    }

    /// A hard link to `target`, an entry already made.
    pub fn hardlink(&self, name: &str, path: &Path, target: &Path) -> Result<()> {
        let hostile = |reason: String| ArchiveError::Hostile {
            name: name.to_owned(),
            reason,
        };
        match self.ctx(name).replace(path, || self.fs.hardlink(target, path)) {
            Err(ArchiveError::Apply { source, .. }) if source.kind() == ErrorKind::NotFound => {
                Err(hostile(format!("hard link target {target:?} does not exist")))
            }
            Err(ArchiveError::Apply { source, .. }) if source.kind() == ErrorKind::PermissionDenied => {
                Err(hostile(format!("hard link target {target:?} is a directory")))
            }
            other => other,
        }
    }

    /// `.wh.NAME`: removes `target`; into a layer, leaves the kernel's
    /// whiteout there.
    pub fn whiteout(&self, name: &str, target: &Path, meta: &Meta) -> Result<()> {
        let ctx = self.ctx(name);
        let fs = self.fs;
        ctx.apply(fs.remove_all(target))?;
        if let ImportWhiteouts::Overlay(_) = self.whiteouts {
            ctx.ensure_dir(parent_of(target))?;
            ctx.apply(fs.mknod(target, NodeKind::WHITEOUT, 0))?;
            ctx.apply(fs.set_owner(target, meta.uid, meta.gid))?;
            ctx.apply(fs.set_times(target, Some(meta.mtime), Some(meta.mtime)))?;
        }
        Ok(())
    }

    /// `DIR/.wh..wh..opq`: into a layer, marks `dir` opaque; into a merged
    /// tree, removes what this tar did not put there (`unpacked`).
    pub fn opaque(&self, name: &str, dir: &Path, unpacked: &HashSet<PathBuf>) -> Result<()> {
        let ctx = self.ctx(name);
        let fs = self.fs;
        ctx.ensure_dir(dir)?;
        match self.whiteouts {
            ImportWhiteouts::Overlay(ns) => ctx.apply(fs.set_xattr(dir, OsStr::new(ns.opaque_xattr()), b"y")),
            ImportWhiteouts::Plain => {
                for e in ctx.apply(fs.read_dir(dir))? {
                    let child = dir.join(&e.name);
                    if !unpacked.contains(&child) {
                        ctx.apply(fs.remove_all(&child))?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Makes sure `dir` exists as a directory (see [`Ctx::ensure_dir`]).
    pub fn ensure_dir(&self, name: &str, dir: &Path) -> Result<()> {
        self.ctx(name).ensure_dir(dir)
    }
}

/// The directory `path` is in (`""` for the root's entries).
/// An entry's xattr the filesystem will not take, `EOPNOTSUPP` (a
/// namespace Linux does not know) or `EPERM` (`user.*` on a symlink or a
/// device), is skipped: Docker skips those two errors of `lsetxattr`, GNU
/// tar warns and goes on.
fn refused_is_skipped(r: overlay_fs::Result<()>) -> overlay_fs::Result<()> {
    match r {
        Err(e) if matches!(e.kind(), ErrorKind::Unsupported | ErrorKind::PermissionDenied) => Ok(()),
        other => other,
    }
}

pub(crate) fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

/// A failed write of an entry's data.
pub(crate) fn write_error(name: &str, path: &Path, e: &std::io::Error) -> ArchiveError {
    ArchiveError::Apply {
        name: name.to_owned(),
        source: overlay_fs::Error::from_errno("write", path, e.raw_os_error().unwrap_or(EIO)),
    }
}

/// Reported for a failed write that carries no errno of its own.
const EIO: i32 = 5;

/// The tree and the entry being applied, for error reporting.
struct Ctx<'n, 'f> {
    fs: &'f dyn Fs,
    name: &'n str,
    parents_owner: Option<(u32, u32)>,
}

impl Ctx<'_, '_> {
    fn err(&self, source: overlay_fs::Error) -> ArchiveError {
        ArchiveError::Apply {
            name: self.name.to_string(),
            source,
        }
    }

    fn apply<T>(&self, r: overlay_fs::Result<T>) -> Result<T> {
        r.map_err(|e| self.err(e))
    }

    /// Makes sure `dir` exists as a directory, creating missing parents
    /// with 0755 (as Docker does for entries whose parents the tar omits),
    /// given to [`Applier::parents_owner`] if set (only those made now).
    fn ensure_dir(&self, dir: &Path) -> Result<()> {
        let Some((uid, gid)) = self.parents_owner else {
            return self.apply(self.fs.mkdir_all(dir, 0o755));
        };
        let mut missing = Vec::new();
        let mut d = dir;
        while !d.as_os_str().is_empty() && !self.apply(self.fs.exists(d))? {
            missing.push(d);
            d = parent_of(d);
        }
        for d in missing.into_iter().rev() {
            match self.fs.mkdir(d, 0o755) {
                Ok(()) => self.apply(self.fs.set_owner(d, uid, gid))?,
                // Made meanwhile by another worker: not ours to chown.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(self.err(e)),
            }
        }
        Ok(())
    }

    /// Runs `create`; if the name is taken, removes what is there and runs
    /// it again; if the parent is missing, creates it first.
    fn replace<T>(&self, path: &Path, create: impl Fn() -> overlay_fs::Result<T>) -> Result<T> {
        match create() {
            Ok(v) => Ok(v),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                self.apply(self.fs.remove_all(path))?;
                self.apply(create())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.ensure_dir(parent_of(path))?;
                self.apply(create())
            }
            Err(e) => Err(self.err(e)),
        }
    }
}
