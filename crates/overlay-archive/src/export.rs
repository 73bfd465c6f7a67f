//! Tree to tar: a layer's files as an uncompressed, deterministic tar.
//!
//! The work is spread over threads, since an export is a long run of small
//! system calls: a walker lists and stats the tree with directory handles
//! and cuts it into batches of entries in tar order; two loaders take whole
//! batches and open and read their regular files; the caller's thread
//! writes the batches in order. Handing over batches, not files, keeps the
//! threads' wake-ups and allocations to one per batch. The loaders' calls
//! (an `O_PATH` open, `fstat`, the reopen, xattrs, `read`, two closes: the
//! price of never opening a device node) overlap with the walk and the
//! writes, which is how the export stays ahead of `tar -cf`.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};

use overlay_fs::{Dir, DirEntry, File, FileType, Fs, Metadata};
use tar::{EntryType, Header};

use crate::error::{ArchiveError, Result};
use crate::filter::Patterns;
use crate::idmap::IdMaps;
use crate::whiteout::{OPAQUE_MARKER, is_opaque, is_private_xattr, whiteout_name};

/// How overlayfs markers in the tree are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportWhiteouts {
    /// Convert: a 0:0 char device becomes `.wh.NAME`, an opaque directory
    /// (either xattr namespace) gets `DIR/.wh..wh..opq`. For `diff` dirs.
    #[default]
    Overlay,
    /// Write the tree as it is (devices stay devices). For merged trees.
    Keep,
}

/// How to export.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Whiteout conversion.
    pub whiteouts: ExportWhiteouts,
    /// Host ids to container ids for the headers.
    pub id_maps: IdMaps,
    /// Paths to export, each with everything below it, in this order
    /// (Docker's `IncludeFiles`); empty means the whole tree.
    pub include: Vec<PathBuf>,
    /// Exclude patterns (Docker's `ExcludePatterns`), applied to every entry.
    pub exclude: Vec<String>,
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Tar entries written (whiteouts and opaque markers included).
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Exports the tree of `fs` (its root excluded; or the
/// [`include`](ExportOptions::include)d paths) as a tar into `out`, in a
/// deterministic order: each directory's entries sorted by name, a
/// directory before its contents.
///
/// # Errors
///
/// The tree cannot be read, or `out` cannot be written.
pub fn export<W: Write>(fs: &dyn Fs, opts: &ExportOptions, out: W) -> Result<(W, ExportStats)> {
    let mut e = Exporter::new(fs, opts, out)?;
    if opts.include.is_empty() {
        e.append_tree(Path::new(""))?;
    }
    for path in &opts.include {
        e.append_tree(path)?;
    }
    e.finish()
}

/// Files up to this size are read whole by a loader; larger ones are
/// streamed by the writer in [`CHUNK`]s.
const INLINE_MAX: u64 = 64 * 1024;
/// Threads opening and reading regular files.
const LOADERS: usize = 2;
/// Bytes read from a large file at a time.
const CHUNK: usize = 1 << 20;
/// Entries per batch: the unit the threads hand over, so that a hand-over
/// (a wake-up, an allocation for the data) is paid per batch, not per file.
const BATCH_ITEMS: usize = 64;
/// Batches between the walker and the writer. Bounds memory (at most
/// `BATCH_ITEMS * INLINE_MAX` of data per batch, usually far less) and open
/// descriptors (one per large file waiting to be streamed).
const QUEUE: usize = 4;

/// A run of entries in tar order: made by the walker, its regular files
/// read by a loader, then written by the writer.
#[derive(Default)]
struct Batch {
    items: Vec<Item>,
    /// The small files' contents, back to back.
    data: Vec<u8>,
}

/// One entry.
enum Item {
    Dir {
        path: PathBuf,
        md: Metadata,
        xattrs: Xattrs,
    },
    /// A regular file (says readdir) for a loader to open and read.
    Unloaded {
        dir: Arc<dyn Dir>,
        name: OsString,
        path: PathBuf,
    },
    Regular {
        path: PathBuf,
        md: Metadata,
        xattrs: Xattrs,
        data: Data,
    },
    Symlink {
        path: PathBuf,
        md: Metadata,
        xattrs: Xattrs,
        target: PathBuf,
    },
    Special {
        path: PathBuf,
        md: Metadata,
        xattrs: Xattrs,
    },
}

type Xattrs = Vec<(OsString, Vec<u8>)>;

enum Data {
    /// A range of the batch's `data`.
    Inline(Range<usize>),
    Stream(Box<dyn File>),
}

/// A batch on its way: filled by a loader (or the walker), waited for by
/// the writer, which receives the tickets in tar order.
#[derive(Default)]
struct Ticket {
    batch: Mutex<Option<Result<Batch>>>,
    ready: Condvar,
}

impl Ticket {
    fn filled(v: Result<Batch>) -> Arc<Self> {
        let t = Arc::new(Self::default());
        t.fill(v);
        t
    }

    fn fill(&self, v: Result<Batch>) {
        let mut g = self.batch.lock().unwrap_or_else(|p| p.into_inner());
        *g = Some(v);
        self.ready.notify_one();
    }

    fn wait(&self) -> Result<Batch> {
        let mut g = self.batch.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(v) = g.take() {
                return v;
            }
            g = self.ready.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Opens and reads the batch's regular files (a loader's job).
fn load_batch(batch: &mut Batch) -> Result<()> {
    let Batch { items, data } = batch;
    for item in items.iter_mut() {
        if let Item::Unloaded { dir, name, path } = item {
            let path = std::mem::take(path);
            *item = match dir.open_file(name) {
                Ok((file, md)) => read_open(file, md, path, data)?,
                // Replaced since readdir by a symlink, device or fifo:
                // write it as what it is now. (A directory is refused by
                // `other_item`: its contents could not join this batch.)
                Err(err) if replaced(&err) => {
                    let md = dir.metadata(name).map_err(tree_err(&path))?;
                    match other_item(&**dir, name, path, md)? {
                        Some(item) => item,
                        None => continue,
                    }
                }
                Err(source) => return Err(ArchiveError::Tree { path, source }),
            };
        }
    }
    // Sockets replaced files: drop what stayed unloaded.
    items.retain(|i| !matches!(i, Item::Unloaded { .. }));
    Ok(())
}

/// Whether opening a file failed because it is no longer a regular file.
fn replaced(err: &overlay_fs::Error) -> bool {
    matches!(
        err.kind(),
        overlay_fs::ErrorKind::NotARegularFile
            | overlay_fs::ErrorKind::IsADirectory
            | overlay_fs::ErrorKind::SymlinkLoop
    )
}

/// An open regular file as an item: small files read whole into `data`,
/// the rest streamed by the writer.
fn read_open(mut file: Box<dyn File>, md: Metadata, path: PathBuf, data: &mut Vec<u8>) -> Result<Item> {
    let xattrs = file.xattrs().map_err(tree_err(&path))?;
    let data = if md.size <= INLINE_MAX {
        let start = data.len();
        data.resize(start + md.size as usize, 0);
        if file.read_exact(&mut data[start..]).is_err() {
            return Err(shrank(&path));
        }
        Data::Inline(start..data.len())
    } else {
        Data::Stream(file)
    };
    Ok(Item::Regular { path, md, xattrs, data })
}

/// The entry for a symlink, device, fifo or (`None`) socket.
fn other_item(parent: &dyn Dir, name: &OsStr, path: PathBuf, md: Metadata) -> Result<Option<Item>> {
    Ok(Some(match md.file_type {
        FileType::Symlink => {
            let target = parent.readlink(name).map_err(tree_err(&path))?;
            let xattrs = parent.xattrs(name).map_err(tree_err(&path))?;
            Item::Symlink {
                path,
                md,
                xattrs,
                target,
            }
        }
        FileType::CharDevice | FileType::BlockDevice | FileType::Fifo => {
            // A whiteout's xattrs are overlayfs's own; skip the read.
            let xattrs = if md.is_whiteout() {
                Vec::new()
            } else {
                parent.xattrs(name).map_err(tree_err(&path))?
            };
            Item::Special { path, md, xattrs }
        }
        // Tar has no sockets; Docker skips them too.
        FileType::Socket => return Ok(None),
        // Changed under the export since the caller looked.
        kind @ (FileType::Regular | FileType::Directory) => {
            let kind = if kind == FileType::Directory {
                overlay_fs::ErrorKind::IsADirectory
            } else {
                overlay_fs::ErrorKind::NotARegularFile
            };
            let source = overlay_fs::Error::new("export", &path, kind)
                .with_detail("changed type while the tree was being exported");
            return Err(ArchiveError::Tree { path, source });
        }
    }))
}

/// Writes entries of a tree into a tar stream, for callers that choose what
/// goes in (the naive diff exports only changes).
pub struct Exporter<'a, W: Write> {
    fs: &'a dyn Fs,
    opts: &'a ExportOptions,
    exclude: Patterns,
    tar: tar::Builder<W>,
    /// First path written for each multiply-linked inode.
    links: HashMap<(u64, u64), PathBuf>,
    stats: ExportStats,
    /// Read buffer for streamed files, reused.
    buf: Vec<u8>,
    /// Where written batches' data buffers go back to the loaders.
    spare: Option<crossbeam::channel::Sender<Vec<u8>>>,
}

impl<'a, W: Write> Exporter<'a, W> {
    /// Starts a tar stream on `out`.
    ///
    /// # Errors
    ///
    /// A malformed exclude pattern.
    pub fn new(fs: &'a dyn Fs, opts: &'a ExportOptions, out: W) -> Result<Self> {
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Complete);
        Ok(Self {
            fs,
            opts,
            exclude: Patterns::new(&opts.exclude)?,
            tar,
            links: HashMap::new(),
            stats: ExportStats::default(),
            buf: Vec::new(),
            spare: None,
        })
    }

    /// Writes `path` and, for a directory, everything below it (for the
    /// root, `""`, only what is below it).
    ///
    /// # Errors
    ///
    /// The tree cannot be read, or the stream cannot be written.
    pub fn append_tree(&mut self, path: &Path) -> Result<()> {
        self.run(path, true)
    }

    /// Writes the single entry at `path` (a directory without its contents).
    ///
    /// # Errors
    ///
    /// The tree cannot be read, or the stream cannot be written.
    pub fn append(&mut self, path: &Path) -> Result<()> {
        self.run(path, false)
    }

    /// Writes a `.wh.NAME` entry recording that `path` was deleted.
    ///
    /// # Errors
    ///
    /// `path` names the root, or the stream cannot be written.
    pub fn append_whiteout(&mut self, path: &Path) -> Result<()> {
        let name = path.file_name().ok_or_else(|| ArchiveError::Write {
            path: path.to_path_buf(),
            source: std::io::Error::other("the root cannot be whited out"),
        })?;
        let wh = path.with_file_name(whiteout_name(name));
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o600);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mtime(0);
        self.write(&wh, &mut h, std::io::empty())
    }

    /// Ends the stream (two zero blocks) and returns the writer.
    ///
    /// # Errors
    ///
    /// The final write fails.
    pub fn finish(self) -> Result<(W, ExportStats)> {
        let stats = self.stats;
        let out = self.tar.into_inner().map_err(|source| ArchiveError::Write {
            path: PathBuf::new(),
            source,
        })?;
        Ok((out, stats))
    }

    /// Walks on one thread, loads files on [`LOADERS`] more, and writes
    /// on this one.
    fn run(&mut self, path: &Path, recurse: bool) -> Result<()> {
        let (tx, rx) = sync_channel::<Arc<Ticket>>(QUEUE);
        let exclude = self.exclude.clone();
        let reader = Reader {
            fs: self.fs,
            exclude: &exclude,
        };
        if !recurse {
            // One entry at most: no threads for it.
            let mut out = Collector::new(tx, None);
            match reader.start(path, recurse, &mut out) {
                Ok(()) => out.finish(),
                Err(e) => out.fail(e),
            }
            return self.consume(rx);
        }
        std::thread::scope(|scope| {
            let (jobs_tx, jobs_rx) = crossbeam::channel::bounded::<(Batch, Arc<Ticket>)>(QUEUE);
            // Data buffers go back from the writer to the loaders, so a
            // long export allocates (and faults in) a handful, not one per
            // batch.
            let (spare_tx, spare_rx) = crossbeam::channel::bounded::<Vec<u8>>(QUEUE + LOADERS + 1);
            self.spare = Some(spare_tx);
            for _ in 0..LOADERS {
                let jobs_rx = jobs_rx.clone();
                let spare_rx = spare_rx.clone();
                scope.spawn(move || {
                    for (mut batch, ticket) in jobs_rx {
                        // The writer gave up: skip the reads.
                        if Arc::strong_count(&ticket) == 1 {
                            continue;
                        }
                        if let Ok(buf) = spare_rx.try_recv() {
                            batch.data = buf;
                        }
                        // A panic here must still wake the writer, which
                        // would otherwise wait for this batch for ever.
                        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load_batch(&mut batch)))
                            .unwrap_or_else(|_| {
                                Err(ArchiveError::Write {
                                    path: PathBuf::new(),
                                    source: std::io::Error::other("a thread reading the tree panicked"),
                                })
                            });
                        ticket.fill(loaded.map(|()| batch));
                    }
                });
            }
            scope.spawn(move || {
                let mut out = Collector::new(tx, Some(jobs_tx));
                match reader.start(path, recurse, &mut out) {
                    Ok(()) => out.finish(),
                    Err(e) => out.fail(e),
                }
            });
            let done = self.consume(rx);
            self.spare = None;
            done
        })
    }

    fn consume(&mut self, rx: Receiver<Arc<Ticket>>) -> Result<()> {
        // Leaving early drops `rx`, which makes the walker's next send fail
        // and end its walk.
        for ticket in rx {
            let Batch { items, mut data } = ticket.wait()?;
            for item in items {
                match item {
                    Item::Dir { path, md, xattrs } => self.write_dir(&path, &md, xattrs)?,
                    Item::Regular {
                        path,
                        md,
                        xattrs,
                        data: d,
                    } => {
                        self.write_regular(&path, &md, xattrs, d, &data)?;
                    }
                    Item::Symlink {
                        path,
                        md,
                        xattrs,
                        target,
                    } => {
                        let mut h = self.header(&md, EntryType::Symlink)?;
                        self.pax_xattrs(&path, xattrs)?;
                        self.write_link(&path, &mut h, &target)?;
                    }
                    Item::Special { path, md, xattrs } => self.write_special(&path, &md, xattrs)?,
                    // Loaded before the batch is handed over.
                    Item::Unloaded { .. } => {}
                }
            }
            if let Some(spare) = &self.spare {
                data.clear();
                let _ = spare.try_send(data);
            }
        }
        Ok(())
    }

    fn header(&self, md: &Metadata, kind: EntryType) -> Result<Header> {
        let (uid, gid) = self.opts.id_maps.to_container(md.uid, md.gid)?;
        Ok(Self::header_with_ids(md, kind, uid, gid))
    }

    fn header_with_ids(md: &Metadata, kind: EntryType, uid: u32, gid: u32) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(md.mode);
        h.set_uid(uid.into());
        h.set_gid(gid.into());
        h.set_mtime(md.mtime.sec.max(0) as u64);
        h.set_size(0);
        h
    }

    fn write_dir(&mut self, path: &Path, md: &Metadata, xattrs: Xattrs) -> Result<()> {
        let opaque = self.opts.whiteouts == ExportWhiteouts::Overlay && is_opaque(&xattrs);
        let mut h = self.header(md, EntryType::Directory)?;
        self.pax_xattrs(path, xattrs)?;
        self.write(path, &mut h, std::io::empty())?;
        if opaque {
            let mut h = self.header(md, EntryType::Regular)?;
            h.set_mode(md.mode & 0o777);
            h.set_mtime(0);
            self.write(&path.join(OPAQUE_MARKER), &mut h, std::io::empty())?;
        }
        Ok(())
    }

    fn write_regular(&mut self, path: &Path, md: &Metadata, xattrs: Xattrs, data: Data, inline: &[u8]) -> Result<()> {
        if md.nlink > 1 {
            if let Some(first) = self.links.get(&(md.dev, md.ino)).cloned() {
                let mut h = self.header(md, EntryType::Link)?;
                return self.write_link(path, &mut h, &first);
            }
            self.links.insert((md.dev, md.ino), path.to_path_buf());
        }
        let mut h = self.header(md, EntryType::Regular)?;
        h.set_size(md.size);
        self.pax_xattrs(path, xattrs)?;
        match data {
            Data::Inline(range) => self.write(path, &mut h, &inline[range])?,
            Data::Stream(file) => {
                let mut buf = std::mem::take(&mut self.buf);
                let mut reader = Chunks {
                    file,
                    buf: &mut buf,
                    pos: 0,
                    filled: 0,
                    left: md.size,
                };
                let written = self.write(path, &mut h, &mut reader);
                let left = reader.left;
                self.buf = buf;
                written?;
                if left != 0 {
                    return Err(shrank(path));
                }
            }
        }
        self.stats.bytes += md.size;
        Ok(())
    }

    fn write_special(&mut self, path: &Path, md: &Metadata, xattrs: Xattrs) -> Result<()> {
        if self.opts.whiteouts == ExportWhiteouts::Overlay && md.is_whiteout() {
            // With the ids it has on the host, not mapped: the kernel made
            // it as the mounter (root, outside any map), and Docker's
            // archive skips whiteouts when it maps ids back (`addTarFile`).
            let mut h = Self::header_with_ids(md, EntryType::Regular, md.uid, md.gid);
            h.set_mode(0o600);
            let name = path.file_name().unwrap_or(OsStr::new(""));
            return self.write(&path.with_file_name(whiteout_name(name)), &mut h, std::io::empty());
        }
        let kind = match md.file_type {
            FileType::CharDevice => EntryType::Char,
            FileType::BlockDevice => EntryType::Block,
            _ => EntryType::Fifo,
        };
        let mut h = self.header(md, kind)?;
        h.set_device_major(overlay_fs::major(md.rdev))
            .map_err(write_err(path))?;
        h.set_device_minor(overlay_fs::minor(md.rdev))
            .map_err(write_err(path))?;
        self.pax_xattrs(path, xattrs)?;
        self.write(path, &mut h, std::io::empty())
    }

    /// Writes the entry's xattrs (all but overlayfs's private ones) as a
    /// PAX header, sorted by name, before the entry itself.
    fn pax_xattrs(&mut self, path: &Path, mut xattrs: Xattrs) -> Result<()> {
        xattrs.retain(|(n, _)| !is_private_xattr(n.as_bytes()));
        if xattrs.is_empty() {
            return Ok(());
        }
        xattrs.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut records = Vec::with_capacity(xattrs.len());
        for (name, value) in xattrs {
            let key = match name.to_str() {
                Some(n) => format!("SCHILY.xattr.{n}"),
                None => {
                    return Err(ArchiveError::Write {
                        path: path.to_path_buf(),
                        source: std::io::Error::other(format!("xattr name {name:?} is not UTF-8")),
                    });
                }
            };
            records.push((key, value));
        }
        self.tar
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(write_err(path))
    }

    fn write(&mut self, path: &Path, h: &mut Header, data: impl Read) -> Result<()> {
        self.tar.append_data(h, path, data).map_err(write_err(path))?;
        self.stats.entries += 1;
        Ok(())
    }

    fn write_link(&mut self, path: &Path, h: &mut Header, target: &Path) -> Result<()> {
        self.tar.append_link(h, path, target).map_err(write_err(path))?;
        self.stats.entries += 1;
        Ok(())
    }
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Write {
        path: path.to_path_buf(),
        source,
    }
}

fn shrank(path: &Path) -> ArchiveError {
    ArchiveError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other("file shrank while it was being read"),
    }
}

fn tree_err(path: &Path) -> impl FnOnce(overlay_fs::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Tree {
        path: path.to_path_buf(),
        source,
    }
}

/// The reading side: walks with directory handles, in the order the tar
/// must have, and sends each entry with what it needs to be written.
struct Reader<'a> {
    fs: &'a dyn Fs,
    exclude: &'a Patterns,
}

/// The writer hung up: stop walking quietly.
struct HungUp;

/// The walker's side of the hand-over: collects entries into batches and
/// sends each to a loader (if it has files to read) and, in order, to the
/// writer.
struct Collector {
    to_writer: SyncSender<Arc<Ticket>>,
    /// The loaders' queue; without it files are read on the walker.
    to_loaders: Option<crossbeam::channel::Sender<(Batch, Arc<Ticket>)>>,
    batch: Batch,
    unloaded: bool,
}

impl Collector {
    fn new(
        to_writer: SyncSender<Arc<Ticket>>,
        to_loaders: Option<crossbeam::channel::Sender<(Batch, Arc<Ticket>)>>,
    ) -> Self {
        Self {
            to_writer,
            to_loaders,
            batch: Batch::default(),
            unloaded: false,
        }
    }

    fn push(&mut self, item: Item) -> std::result::Result<(), HungUp> {
        self.unloaded |= matches!(item, Item::Unloaded { .. });
        // Whole batches only on the threaded walk; a single `append` (the
        // naive diff calls it per change) holds one entry.
        if self.batch.items.capacity() == 0 && self.to_loaders.is_some() {
            self.batch.items.reserve_exact(BATCH_ITEMS);
        }
        self.batch.items.push(item);
        if self.batch.items.len() >= BATCH_ITEMS {
            self.ship()?;
        }
        Ok(())
    }

    fn ship(&mut self) -> std::result::Result<(), HungUp> {
        if self.batch.items.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let ticket = match (&self.to_loaders, std::mem::take(&mut self.unloaded)) {
            (Some(loaders), true) => {
                let ticket = Arc::new(Ticket::default());
                // The writer's copy first, so a loader that finds itself
                // holding the only one knows the writer is gone.
                self.to_writer.send(ticket.clone()).map_err(|_| HungUp)?;
                return loaders.send((batch, ticket)).map_err(|_| HungUp);
            }
            _ => Ticket::filled(Ok(batch)),
        };
        self.to_writer.send(ticket).map_err(|_| HungUp)
    }

    fn finish(mut self) {
        // The writer may have stopped listening: nothing to do.
        let _ = self.ship();
    }

    fn fail(mut self, e: ArchiveError) {
        if self.ship().is_ok() {
            let _ = self.to_writer.send(Ticket::filled(Err(e)));
        }
    }
}

impl Reader<'_> {
    fn start(&self, path: &Path, recurse: bool, tx: &mut Collector) -> Result<()> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            // The root has no entry of its own.
            if recurse {
                let root = self.fs.open_dir(path).map_err(tree_err(path))?;
                let _ = self.walk(root, path, tx)?;
            }
            return Ok(());
        };
        let parent_dir: Arc<dyn Dir> = Arc::from(self.fs.open_dir(parent).map_err(tree_err(parent))?);
        let md = parent_dir.metadata(name).map_err(tree_err(path))?;
        let entry = DirEntry {
            name: name.to_os_string(),
            file_type: md.file_type,
            ino: md.ino,
        };
        if let Ok(Some(child)) = self.entry(&parent_dir, &entry, path, tx)?
            && recurse
        {
            let _ = self.walk(child, path, tx)?;
        }
        Ok(())
    }

    /// Sends everything below the directory `dir` (at `path`), in order.
    fn walk(&self, mut dir: Box<dyn Dir>, path: &Path, tx: &mut Collector) -> Result<std::result::Result<(), HungUp>> {
        let mut entries = dir.entries().map_err(tree_err(path))?;
        entries.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        // Loaders read this directory's files through a shared handle.
        let shared: Arc<dyn Dir> = Arc::from(dir);
        for e in entries {
            let child_path = path.join(&e.name);
            match self.entry(&shared, &e, &child_path, tx)? {
                Ok(Some(child)) => {
                    if self.walk(child, &child_path, tx)?.is_err() {
                        return Ok(Err(HungUp));
                    }
                }
                Ok(None) => {}
                Err(HungUp) => return Ok(Err(HungUp)),
            }
        }
        Ok(Ok(()))
    }

    /// Sends one entry unless excluded; for a directory that must be walked,
    /// returns its open handle.
    fn entry(
        &self,
        parent: &Arc<dyn Dir>,
        e: &DirEntry,
        path: &Path,
        tx: &mut Collector,
    ) -> Result<std::result::Result<Option<Box<dyn Dir>>, HungUp>> {
        let excluded = self.exclude.excludes(path);
        let name = e.name.as_os_str();
        // A regular file (says readdir): open it first and take the metadata
        // of the opened inode, saving a stat and any race between the two.
        if e.file_type == FileType::Regular && !excluded {
            if tx.to_loaders.is_some() {
                let item = Item::Unloaded {
                    dir: parent.clone(),
                    name: e.name.clone(),
                    path: path.to_path_buf(),
                };
                return Ok(tx.push(item).map(|()| None));
            }
            match parent.open_file(name) {
                Ok((file, md)) => {
                    let item = read_open(file, md, path.to_path_buf(), &mut tx.batch.data)?;
                    return Ok(tx.push(item).map(|()| None));
                }
                Err(err) if replaced(&err) => {}
                Err(source) => {
                    return Err(ArchiveError::Tree {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            }
        }
        let md = parent.metadata(name).map_err(tree_err(path))?;
        let item = match md.file_type {
            FileType::Directory => {
                if excluded && !self.exclude.has_exceptions() {
                    return Ok(Ok(None));
                }
                let dir = parent.open_dir(name).map_err(tree_err(path))?;
                if !excluded {
                    let xattrs = dir.own_xattrs().map_err(tree_err(path))?;
                    let item = Item::Dir {
                        path: path.to_path_buf(),
                        md,
                        xattrs,
                    };
                    if tx.push(item).is_err() {
                        return Ok(Err(HungUp));
                    }
                }
                return Ok(Ok(Some(dir)));
            }
            _ if excluded => return Ok(Ok(None)),
            // Turned into a file since readdir said otherwise.
            FileType::Regular => {
                let (file, md) = parent.open_file(name).map_err(tree_err(path))?;
                let xattrs = file.xattrs().map_err(tree_err(path))?;
                Item::Regular {
                    path: path.to_path_buf(),
                    md,
                    xattrs,
                    data: Data::Stream(file),
                }
            }
            _ => match other_item(&**parent, name, path.to_path_buf(), md)? {
                Some(item) => item,
                None => return Ok(Ok(None)),
            },
        };
        Ok(tx.push(item).map(|()| None))
    }
}

fn shrank_io() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file shrank while it was being read")
}

/// Reads exactly the announced size of a large file in [`CHUNK`]s through
/// a buffer reused across files. A file that shrinks between `fstat` and
/// `read` is caught instead of corrupting the stream; one that grows is cut
/// at the announced size.
struct Chunks<'b> {
    file: Box<dyn File>,
    buf: &'b mut Vec<u8>,
    pos: usize,
    filled: usize,
    /// Bytes of the file not yet read from it.
    left: u64,
}

impl Read for Chunks<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.filled {
            if self.left == 0 {
                return Ok(0);
            }
            let want = (self.left.min(CHUNK as u64)) as usize;
            if self.buf.len() < want {
                self.buf.resize(want, 0);
            }
            let n = self.file.read(&mut self.buf[..want])?;
            if n == 0 {
                return Err(shrank_io());
            }
            self.left -= n as u64;
            (self.pos, self.filled) = (0, n);
        }
        let n = out.len().min(self.filled - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
