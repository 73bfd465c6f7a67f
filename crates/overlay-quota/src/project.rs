//! Project ids on directories, and handing out new ones the way Docker's
//! quota package does.
//!
//! These work on any filesystem with project ids (`FS_IOC_FSSETXATTR`),
//! whether or not quotas are accounted: XFS always, ext4 with the
//! `project` feature. Limits are [`QuotaControl`](crate::QuotaControl)'s.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::error::{QuotaError, Result};
use crate::sys;

/// Opens `path` (a directory or a regular file, not followed if it is a
/// symlink) for the `FS_IOC_FS*XATTR` ioctls.
fn open_inode(path: &Path) -> Result<OwnedFd> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| QuotaError::sys("lstat", path, Errno::from_io_error(&e).unwrap_or(Errno::IO)))?;
    if !(meta.is_dir() || meta.is_file()) {
        return Err(QuotaError::sys(
            "open (not a directory or regular file)",
            path,
            Errno::OPNOTSUPP,
        ));
    }
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| QuotaError::sys("open", path, e))
}

fn get_xattr(fd: &OwnedFd, path: &Path) -> Result<sys::FsXattr> {
    sys::fs_get_xattr(fd).map_err(|e| QuotaError::sys("ioctl(FS_IOC_FSGETXATTR)", path, e))
}

/// The project id of a directory or regular file.
///
/// `ioctl(fd, FS_IOC_FSGETXATTR, &fsx)`, then `fsx.fsx_projid`.
///
/// # Errors
/// [`QuotaError::Sys`] when the path cannot be opened or the filesystem has
/// no such ioctl (`ENOTTY`).
#[doc(alias = "FS_IOC_FSGETXATTR")]
pub fn project_id(path: impl AsRef<Path>) -> Result<u32> {
    let path = path.as_ref();
    Ok(get_xattr(&open_inode(path)?, path)?.fsx_projid)
}

/// Does this directory hand its project id to new entries
/// (`FS_XFLAG_PROJINHERIT`)?
///
/// # Errors
/// As [`project_id`].
pub fn inherits_project_id(path: impl AsRef<Path>) -> Result<bool> {
    let path = path.as_ref();
    Ok(get_xattr(&open_inode(path)?, path)?.fsx_xflags & sys::FS_XFLAG_PROJINHERIT != 0)
}

/// Gives a directory project id `id` and `FS_XFLAG_PROJINHERIT`, so that
/// everything created below it later takes the same id (Docker's
/// `setProjectID`). Entries already inside keep theirs.
///
/// `FS_IOC_FSGETXATTR`, set `fsx_projid` and the flag, `FS_IOC_FSSETXATTR`.
///
/// # Errors
/// [`QuotaError::Sys`]: not a directory (`ENOTDIR`), no project ids on this
/// filesystem (`EOPNOTSUPP` on ext4 without the `project` feature), not
/// allowed (`EPERM`).
#[doc(alias = "FS_IOC_FSSETXATTR")]
pub fn set_project_id(dir: impl AsRef<Path>, id: u32) -> Result<()> {
    let dir = dir.as_ref();
    let fd = open_inode(dir)?;
    set_on(&fd, dir, id)
}

fn set_on(fd: &OwnedFd, dir: &Path, id: u32) -> Result<()> {
    let mut fsx = get_xattr(fd, dir)?;
    let meta = rustix::fs::fstat(fd).map_err(|e| QuotaError::sys("fstat", dir, e))?;
    if rustix::fs::FileType::from_raw_mode(meta.st_mode) != rustix::fs::FileType::Directory {
        return Err(QuotaError::sys("set project id", dir, Errno::NOTDIR));
    }
    fsx.fsx_projid = id;
    fsx.fsx_xflags |= sys::FS_XFLAG_PROJINHERIT;
    sys::fs_set_xattr(fd, fsx).map_err(|e| QuotaError::sys("ioctl(FS_IOC_FSSETXATTR)", dir, e))
}

/// The next free project id of one filesystem, shared by every
/// [`ProjectIds`] of this process on that filesystem (Docker keeps one
/// process-wide counter; keying it by filesystem keeps unrelated
/// filesystems apart). It lives as long as one of them does.
#[derive(Debug)]
struct FsCounter {
    dev: u64,
    next: Mutex<u64>,
}

/// Live counters, one per filesystem (device number).
static COUNTERS: Mutex<Vec<Weak<FsCounter>>> = Mutex::new(Vec::new());

/// The counter for filesystem `dev`, raised to at least `at_least`.
fn counter_for(dev: u64, at_least: u64) -> Arc<FsCounter> {
    let mut counters = COUNTERS.lock();
    counters.retain(|c| c.strong_count() > 0);
    if let Some(counter) = counters.iter().filter_map(Weak::upgrade).find(|c| c.dev == dev) {
        let mut next = counter.next.lock();
        *next = (*next).max(at_least);
        drop(next);
        return counter;
    }
    let counter = Arc::new(FsCounter {
        dev,
        next: Mutex::new(at_least),
    });
    counters.push(Arc::downgrade(&counter));
    counter
}

/// Hands out project ids to directories of one home, as Docker does.
///
/// - The home's own project id is the *base*: every id handed out is above
///   it, so an administrator can reserve ids by giving the home a high one
///   (`xfs_quota -x -c 'project -s docker'`).
/// - [`scan`](Self::scan) reads the ids on the home's subdirectories (and
///   one level further below those that have no id of their own) and
///   starts above the highest.
/// - [`assign`](Self::assign) keeps an id a directory already has, else
///   takes the next one; allocation is serialised per filesystem, so any
///   number of threads (and of homes on the same filesystem) never get the
///   same id.
///
/// Unlike Docker, a directory's id is read from the directory every time
/// rather than from a map filled at start-up, so a directory removed and
/// made again under the same name gets a fresh id and its limit, and ids
/// equal to the base (inherited from the home) are never "reused".
#[derive(Debug)]
pub struct ProjectIds {
    home: PathBuf,
    base: u32,
    counter: Arc<FsCounter>,
}

/// What [`ProjectIds::assign`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assigned {
    /// The directory's project id.
    pub id: u32,
    /// `true` when the directory already had it, `false` when it is new.
    pub reused: bool,
}

impl ProjectIds {
    /// Reads the home's project id and the ids already used below it
    /// (Docker's `getProjectID` on the home and `findNextProjectID`).
    ///
    /// # Errors
    /// [`QuotaError::Sys`] when the home or a subdirectory cannot be read or
    /// the filesystem has no project ids (`ENOTTY`).
    pub fn scan(home: impl AsRef<Path>) -> Result<Self> {
        let home = home.as_ref().to_path_buf();
        let dev = rustix::fs::stat(&home)
            .map_err(|e| QuotaError::sys("stat", &home, e))?
            .st_dev;
        let base = project_id(&home)?;
        let mut highest = base;
        for (_, id) in scan_ids(&home, base)? {
            highest = highest.max(id);
        }
        Ok(Self {
            counter: counter_for(dev, u64::from(highest) + 1),
            home,
            base,
        })
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The home's own project id; every id handed out is above it.
    pub fn base_id(&self) -> u32 {
        self.base
    }

    /// The id the next new directory will get (unless another thread is
    /// faster).
    pub fn next_id(&self) -> u32 {
        u32::try_from(*self.counter.next.lock()).unwrap_or(u32::MAX)
    }

    /// Gives `dir` a project id of its own with `FS_XFLAG_PROJINHERIT`: the
    /// one it has if that is neither 0 nor the base, else the next free one.
    ///
    /// # Errors
    /// [`QuotaError::Sys`] from the ioctls, [`QuotaError::IdsExhausted`].
    pub fn assign(&self, dir: impl AsRef<Path>) -> Result<Assigned> {
        self.assign_checked(dir.as_ref(), |_| Ok(false))
    }

    /// [`assign`](Self::assign), skipping ids for which `in_use` says true
    /// (the quota control asks the filesystem whether an id owns anything).
    pub(crate) fn assign_checked(&self, dir: &Path, in_use: impl Fn(u32) -> Result<bool>) -> Result<Assigned> {
        let fd = open_inode(dir)?;
        // Without the lock first: a directory that has its id needs none.
        if let Some(reused) = self.reuse(&fd, dir)? {
            return Ok(reused);
        }
        let mut next = self.counter.next.lock();
        // Again under the lock: another thread may have just given it one.
        if let Some(reused) = self.reuse(&fd, dir)? {
            return Ok(reused);
        }
        let mut candidate = *next;
        let id = loop {
            // (qid_t)-1 is no id; stop below it.
            let id = u32::try_from(candidate)
                .ok()
                .filter(|id| *id != u32::MAX)
                .ok_or_else(|| QuotaError::IdsExhausted {
                    home: self.home.clone(),
                    last: u32::MAX - 1,
                })?;
            if !in_use(id)? {
                break id;
            }
            candidate += 1;
        };
        set_on(&fd, dir, id)?;
        *next = u64::from(id) + 1;
        Ok(Assigned { id, reused: false })
    }

    /// The directory's own id, if it has one (neither 0 nor the base),
    /// making sure it is passed on to new entries.
    fn reuse(&self, fd: &OwnedFd, dir: &Path) -> Result<Option<Assigned>> {
        let fsx = get_xattr(fd, dir)?;
        if fsx.fsx_projid == 0 || fsx.fsx_projid == self.base {
            return Ok(None);
        }
        if fsx.fsx_xflags & sys::FS_XFLAG_PROJINHERIT == 0 {
            set_on(fd, dir, fsx.fsx_projid)?;
        }
        Ok(Some(Assigned {
            id: fsx.fsx_projid,
            reused: true,
        }))
    }
}

/// Docker's `findNextProjectID` walk: every subdirectory of `home`, and the
/// subdirectories of those whose id is 0 or `base`. Returns each directory
/// with a nonzero id.
fn scan_ids(home: &Path, base: u32) -> Result<Vec<(PathBuf, u32)>> {
    let mut found = Vec::new();
    for dir in subdirectories(home)? {
        let id = project_id(&dir)?;
        if id != 0 && id != base {
            found.push((dir, id));
            continue;
        }
        for sub in subdirectories(&dir)? {
            let id = project_id(&sub)?;
            if id != 0 {
                found.push((sub, id));
            }
        }
    }
    Ok(found)
}

/// The directories directly inside `dir` (symlinks to directories are not).
fn subdirectories(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |e: std::io::Error| QuotaError::sys("readdir", dir, Errno::from_io_error(&e).unwrap_or(Errno::IO));
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.file_type().map_err(io)?.is_dir() {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}
