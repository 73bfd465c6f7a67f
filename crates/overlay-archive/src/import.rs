//! Tar to tree: applying a layer tar to an `overlay-fs` tree.
//!
//! One thread reads the tar and decides, entry by entry, what may run
//! beside what; workers ([`crate::parallel`]) create regular files,
//! symlinks and nodes while it reads on. Directories, hard links,
//! whiteouts, large files and anything that replaces what this tar made
//! are made on the reading thread, after the entries they depend on.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use overlay_fs::{ErrorKind, Fs, NodeKind, PATH_MAX, Timestamp, makedev};

use crate::apply::{Applier, Job, Make, Meta, parent_of};
use crate::error::excerpt;
use crate::error::{ArchiveError, Result};
use crate::filter::Patterns;
use crate::idmap::{IdKind, IdMaps, OwnableIds};
use crate::parallel::{Pool, Seq, Shared};
use crate::reader::{Header, TarReader};
use crate::whiteout::{Marker, XattrNamespace, classify};

/// What whiteout entries do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportWhiteouts {
    /// Into a layer's `diff` dir: `.wh.NAME` becomes a 0:0 char device,
    /// `.wh..wh..opq` the opaque xattr in the given namespace.
    Overlay(XattrNamespace),
    /// Into a merged tree (the naive diff): `.wh.NAME` deletes `NAME`,
    /// `.wh..wh..opq` deletes what this tar did not put in the directory.
    Plain,
}

impl Default for ImportWhiteouts {
    fn default() -> Self {
        Self::Overlay(XattrNamespace::Trusted)
    }
}

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Whiteout handling.
    pub whiteouts: ImportWhiteouts,
    /// Container ids in the tar to host ids on disk.
    pub id_maps: IdMaps,
    /// Entries to skip (Docker's `ExcludePatterns`).
    pub exclude: Vec<String>,
    /// The ids files may be given, in a user namespace other than the
    /// initial one (rootless); `None`: any id. An entry whose id (after
    /// [`id_maps`](Self::id_maps)) is outside fails before anything is
    /// made for it, with [`ArchiveError::Unowned`] naming it and the id.
    pub ownable: Option<OwnableIds>,
    /// containers/storage's `ignore_chown_errors`: an id outside
    /// [`ownable`](Self::ownable) becomes 0 (the namespace's root) instead
    /// of failing, for images whose files belong to more ids than a
    /// rootless user has.
    pub ignore_chown_errors: bool,
    /// Threads creating files besides the one reading the tar: `0` (the
    /// default) picks the number of cores; `1` makes every entry on the
    /// reading thread, in tar order. Workers are used only when the tree
    /// is empty at the start (a layer being built): in a tree with content
    /// of its own, a symlink already there could make two names one file.
    pub workers: usize,
}

impl ImportOptions {
    /// Worker threads to use for a tree that starts empty (see
    /// [`workers`](Self::workers)).
    #[must_use]
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

/// What an import applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Tar entries read (whiteouts included).
    pub entries: u64,
    /// Sum of the entries' sizes (a sparse file's real size, as Go's
    /// `Header.Size` has it): what Docker's `ApplyDiff` returns.
    pub bytes: u64,
}

/// Files larger than this are written by the reading thread as they
/// stream in, not buffered whole for a worker.
const WORKER_FILE_MAX: u64 = 1 << 20;

/// Is `path` inside AUFS bookkeeping (`.wh..wh.plnk/...`)? Docker skips
/// it. (Such a name itself is classified as a [`Marker::Meta`].)
fn is_aufs_meta(path: &Path) -> bool {
    path.parent().is_some_and(|p| {
        p.components().any(|c| {
            c.as_os_str()
                .as_bytes()
                .starts_with(crate::whiteout::WHITEOUT_META_PREFIX.as_bytes())
        })
    })
}

/// Applies the tar read from `reader` to the tree of `fs`.
///
/// Entries go where their names say, relative to the root of `fs`; since
/// `fs` resolves every path inside its root, symlinks in the tree (or made
/// by earlier entries) cannot lead outside it. An existing entry is
/// replaced, except that a directory over a directory keeps its contents.
/// Directory times are set last. Overlayfs's private xattrs in the tar are
/// ignored. The result is the same with any number of
/// [`workers`](ImportOptions::workers).
///
/// Stops at the first bad entry with an error naming it; entries before it
/// stay applied, and with workers some after it may be too (the driver
/// applies into a staging directory, so a failed import leaves no layer).
///
/// # Errors
///
/// The stream is not a valid tar ([`ArchiveError::Read`]); an entry is
/// hostile ([`ArchiveError::Hostile`]: `..`, an absolute name, a malformed
/// whiteout, sizes that disagree...) or of an unsupported type; applying an
/// entry fails ([`ArchiveError::Apply`]); an id has no mapping.
pub fn import(fs: &dyn Fs, reader: impl Read, opts: &ImportOptions) -> Result<ImportStats> {
    let exclude = Patterns::new(&opts.exclude)?;
    let applier = Applier {
        fs,
        whiteouts: opts.whiteouts,
        parents_owner: opts.id_maps.root().ok().filter(|_| !opts.id_maps.is_identity()),
    };
    let workers = opts.worker_count();
    let empty = || {
        fs.read_dir(Path::new(""))
            .map(|e| e.is_empty())
            .map_err(|source| ArchiveError::Apply {
                name: String::new(),
                source,
            })
    };
    // A merged tree (plain whiteouts) has content of its own.
    if workers <= 1 || opts.whiteouts == ImportWhiteouts::Plain || !empty()? {
        return Importer::new(&applier, opts, &exclude, None).run(reader);
    }
    let shared = Shared::default();
    std::thread::scope(|scope| {
        let (pool, workers) = Pool::start(scope, &applier, &shared, workers);
        let result = Importer::new(&applier, opts, &exclude, Some(pool)).run(reader);
        for w in workers {
            // A panic in a worker is caught and reported as its failure.
            let _ = w.join();
        }
        result
    })
}

/// One import: the reading thread's state.
struct Importer<'a> {
    applier: &'a Applier<'a>,
    opts: &'a ImportOptions,
    exclude: &'a Patterns,
    /// Workers, if any; then the names below are tracked.
    pool: Option<Pool<'a>>,
    /// Set once the tar made something through a symlink it made: two
    /// names for one file, which names alone cannot keep apart. From then
    /// on every entry is made on this thread, in tar order.
    serial: bool,
    /// Real directories this tar made or found (since anything that could
    /// remove one last ran): their children may go to workers.
    dirs: HashSet<PathBuf>,
    /// Everything else this tar made, with the batch that makes it.
    made: HashMap<PathBuf, Seq>,
    /// Directories and their times, set last.
    dir_times: Vec<(PathBuf, Timestamp)>,
    /// Names this tar put in place (for a plain opaque directory).
    unpacked: HashSet<PathBuf>,
    /// A buffer for the reading thread's file data.
    buf: Vec<u8>,
}

/// Where an entry's name stands among what is in flight.
enum Ready {
    /// Its directory exists and nothing in flight touches the name: a
    /// worker may make it.
    Free,
    /// Everything it depends on is made: make it on this thread.
    Settled,
}

impl<'a> Importer<'a> {
    fn new(applier: &'a Applier<'a>, opts: &'a ImportOptions, exclude: &'a Patterns, pool: Option<Pool<'a>>) -> Self {
        Self {
            applier,
            opts,
            exclude,
            pool,
            serial: false,
            dirs: HashSet::new(),
            made: HashMap::new(),
            dir_times: Vec::new(),
            unpacked: HashSet::new(),
            buf: Vec::new(),
        }
    }

    fn run(mut self, reader: impl Read) -> Result<ImportStats> {
        let mut tar = TarReader::new(reader);
        let mut stats = ImportStats::default();
        let mut failed = None;
        let mut index = 0u64;
        loop {
            if self.pool.as_ref().is_some_and(Pool::failed) {
                break;
            }
            let h = match tar.next() {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    failed = Some((index, e));
                    break;
                }
            };
            stats.entries += 1;
            stats.bytes += h.file_size();
            if let Err(e) = self.entry(&mut tar, &h, index) {
                failed = Some((index, e));
                break;
            }
            index += 1;
        }
        let from_workers = self.pool.take().and_then(Pool::finish);
        let first = match (failed, from_workers) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        };
        if let Some((_, e)) = first {
            return Err(e);
        }
        // Directory times last: creating entries in them changed their
        // mtime. In tar order, so a directory named twice keeps the later
        // entry's time (as GNU tar and Docker do); one a later entry
        // replaced or removed keeps nothing of its own (GNU tar checks).
        for (dir, mtime) in &self.dir_times {
            let fs = self.applier.fs;
            let failed = |source| ArchiveError::Apply {
                name: dir.display().to_string(),
                source,
            };
            match fs.metadata(dir) {
                Ok(md) if md.is_dir() => fs.set_times(dir, Some(*mtime), Some(*mtime)).map_err(failed)?,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {}
                Err(e) => return Err(failed(e)),
            }
        }
        Ok(stats)
    }

    /// Applies one entry (or hands it to a worker).
    fn entry<R: Read>(&mut self, tar: &mut TarReader<R>, h: &Header, index: u64) -> Result<()> {
        let name = excerpt(&h.name);
        let hostile = |reason: &str| ArchiveError::Hostile {
            name: name.clone(),
            reason: reason.into(),
        };
        let Some(path) = sanitize(&h.name).map_err(hostile)? else {
            return Ok(());
        };
        if self.exclude.excludes(&path) || is_aufs_meta(&path) {
            return Ok(());
        }
        let mut meta = Meta::read(h, &self.opts.id_maps).map_err(|e| match e {
            ArchiveError::Unmapped { what, id } => hostile(&format!("{what} {id} has no mapping")),
            other => other,
        })?;
        self.own(&name, &mut meta)?;
        let parent = parent_of(&path).to_path_buf();
        let base = path.file_name().unwrap_or(OsStr::new(""));
        let a = self.applier;
        match classify(base).map_err(hostile)? {
            Some(Marker::Meta) => return Ok(()),
            Some(Marker::Opaque) => {
                // (Plain whiteouts, which remove what is in the directory,
                // never run with workers.)
                let real = self.settle_dir(&name, &parent)?;
                a.opaque(&name, &parent, &self.unpacked)?;
                if real {
                    self.dirs.insert(parent);
                }
                return Ok(());
            }
            Some(Marker::Whiteout(target)) => {
                let target = parent.join(target);
                self.settle_dir(&name, &parent)?;
                self.settle_name(&target);
                a.whiteout(&name, &target, &meta)?;
                self.made.insert(target, Pool::DONE);
                return Ok(());
            }
            None => {}
        }
        let made = match h.kind {
            b'5' => {
                let real = self.settle_dir(&name, &parent)?;
                if !self.dirs.contains(&path) {
                    self.settle_name(&path);
                }
                a.dir(&name, &path, &meta)?;
                self.made.remove(&path);
                if real {
                    self.dirs.insert(path.clone());
                }
                self.dir_times.push((path.clone(), meta.mtime));
                Pool::DONE
            }
            b'0' => {
                let ready = self.ready(&name, &path, &parent)?;
                match &self.pool {
                    Some(pool) if matches!(ready, Ready::Free) && h.size <= WORKER_FILE_MAX && h.sparse.is_none() => {
                        let mut buf = pool.buffer();
                        let len = tar.data_into(&mut buf)?;
                        self.hand_over(index, name, path.clone(), meta, Make::File { buf, len })
                    }
                    _ => {
                        let buf = &mut self.buf;
                        a.file(&name, &path, &meta, |file| {
                            crate::sparse::write_data(tar, h, file, buf, &path, &name)
                        })?;
                        Pool::DONE
                    }
                }
            }
            b'2' => {
                if h.link.is_empty() {
                    return Err(hostile("symlink with an empty target"));
                }
                let target = PathBuf::from(OsStr::from_bytes(&h.link));
                match self.ready(&name, &path, &parent)? {
                    Ready::Free => self.hand_over(index, name, path.clone(), meta, Make::Symlink(target)),
                    _ => {
                        a.symlink(&name, &path, &target, &meta)?;
                        Pool::DONE
                    }
                }
            }
            b'1' => {
                let Some(target) = sanitize(&h.link).map_err(|r| hostile(&format!("hard link target: {r}")))? else {
                    return Err(hostile("hard link to the root"));
                };
                // The target whole first: its data, owner and times.
                self.settle_path(&target);
                self.ready(&name, &path, &parent)?;
                a.hardlink(&name, &path, &target)?;
                Pool::DONE
            }
            kind @ (b'3' | b'4' | b'6') => {
                let node = match kind {
                    b'3' => NodeKind::CharDevice(makedev(h.devmajor, h.devminor)),
                    b'4' => NodeKind::BlockDevice(makedev(h.devmajor, h.devminor)),
                    _ => NodeKind::Fifo,
                };
                match self.ready(&name, &path, &parent)? {
                    Ready::Free => self.hand_over(index, name, path.clone(), meta, Make::Node(node)),
                    _ => {
                        a.node(&name, &path, node, &meta)?;
                        Pool::DONE
                    }
                }
            }
            other => {
                return Err(ArchiveError::Unsupported {
                    name,
                    kind: other as char,
                });
            }
        };
        if self.parallel() && h.kind != b'5' {
            self.made.insert(path.clone(), made);
        }
        if self.opts.whiteouts == ImportWhiteouts::Plain {
            self.unpacked.insert(path);
        }
        Ok(())
    }

    /// Checks the entry's ids against [`ImportOptions::ownable`]: an id
    /// outside fails the entry, or with `ignore_chown_errors` becomes 0.
    fn own(&self, name: &str, meta: &mut Meta) -> Result<()> {
        let Some(ownable) = &self.opts.ownable else {
            return Ok(());
        };
        if self.opts.ignore_chown_errors {
            if !ownable.holds(IdKind::Uid, meta.uid) {
                meta.uid = 0;
            }
            if !ownable.holds(IdKind::Gid, meta.gid) {
                meta.gid = 0;
            }
        }
        // (Still outside with the option: a namespace that maps no root.)
        match ownable.unowned(meta.uid, meta.gid) {
            None => Ok(()),
            Some((kind, id)) => Err(ArchiveError::Unowned {
                name: name.to_owned(),
                kind,
                id,
            }),
        }
    }

    fn hand_over(&mut self, index: u64, name: String, path: PathBuf, meta: Meta, make: Make) -> Seq {
        let pool = self.pool.as_mut().expect("only with workers");
        pool.push(Job {
            index,
            name,
            path,
            meta,
            make,
        })
    }

    /// Gets a non-directory entry's name ready: its directory made, and
    /// whatever this tar already put at the name made (to be replaced).
    /// [`Ready::Free`] only with workers.
    fn ready(&mut self, name: &str, path: &Path, parent: &Path) -> Result<Ready> {
        let real = self.settle_dir(name, parent)?;
        if !real || self.made.contains_key(path) || self.dirs.contains(path) {
            self.settle_name(path);
            return Ok(Ready::Settled);
        }
        Ok(Ready::Free)
    }

    /// Makes sure the entry at `path` (a hard link's target) is made,
    /// without making anything.
    fn settle_path(&mut self, path: &Path) {
        if !self.parallel() {
            return;
        }
        if path.ancestors().skip(1).any(|d| self.made.contains_key(d)) {
            self.barrier();
        } else {
            self.settle_name(path);
        }
    }

    /// Makes sure nothing in flight is at `path` or below it (before it is
    /// replaced or removed).
    fn settle_name(&mut self, path: &Path) {
        if self.serial {
            return;
        }
        let Some(pool) = &mut self.pool else { return };
        if self.dirs.remove(path) {
            // Its entries may be in flight; and once it is gone, no
            // directory below it is known to be real.
            pool.wait_all();
            self.dirs = HashSet::new();
        } else if let Some(&seq) = self.made.get(path) {
            pool.wait_for(seq);
        }
    }

    /// With workers: makes sure `dir` exists as a directory whose entries
    /// workers may make (one this tar made, or made now with its parents)
    /// and says so. A name below something else this tar made (a symlink:
    /// two names for one file) is not one: everything in flight is waited
    /// for, and the import goes on in tar order on this thread.
    fn settle_dir(&mut self, name: &str, dir: &Path) -> Result<bool> {
        if !self.parallel() {
            return Ok(false);
        }
        if dir.as_os_str().is_empty() || self.dirs.contains(dir) {
            return Ok(true);
        }
        let mut through_made = false;
        let mut missing = Vec::new();
        let mut d = dir;
        while !d.as_os_str().is_empty() && !self.dirs.contains(d) {
            through_made |= self.made.contains_key(d);
            missing.push(d.to_path_buf());
            d = parent_of(d);
        }
        if through_made {
            self.barrier();
            self.serial = true;
            return Ok(false);
        }
        self.applier.ensure_dir(name, dir)?;
        self.dirs.extend(missing);
        Ok(true)
    }

    /// Are workers making entries?
    fn parallel(&self) -> bool {
        self.pool.is_some() && !self.serial
    }

    /// Waits until everything handed over is made.
    fn barrier(&mut self) {
        if let Some(pool) = &mut self.pool {
            pool.wait_all();
        }
    }
}

/// Turns an entry name into a relative path, or refuses it. `None` is the
/// root itself (`./`), which is skipped.
fn sanitize(raw: &[u8]) -> std::result::Result<Option<PathBuf>, &'static str> {
    if raw.contains(&0) {
        return Err("name contains a NUL byte");
    }
    if raw.len() > PATH_MAX {
        return Err(crate::reader::NAME_TOO_LONG);
    }
    if raw.first() == Some(&b'/') {
        return Err("absolute name");
    }
    let mut out = PathBuf::new();
    for part in raw.split(|c| *c == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("name has a '..' component"),
            p => out.push(OsStr::from_bytes(p)),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized() {
        let ok = |s: &str| sanitize(s.as_bytes()).unwrap();
        assert_eq!(ok("a/b/"), Some(PathBuf::from("a/b")));
        assert_eq!(ok("./a//./b"), Some(PathBuf::from("a/b")));
        assert_eq!(ok("./"), None);
        assert_eq!(ok("a..b/..c"), Some(PathBuf::from("a..b/..c")));
        for bad in ["/etc/passwd", "../x", "a/../../x", "a/.."] {
            assert!(sanitize(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(sanitize(b"a\0b").is_err());
        assert!(sanitize(&vec![b'a'; 4096]).is_err());
    }
}
