//! `import`: an image's layers into the home, one layer per diff id, named
//! by its chain id, each verified while it streams in.
//!
//! All or nothing: if any layer fails (a digest that does not match, a
//! hostile or corrupt tar), every layer this import created is removed
//! again, and layers that were there before are never touched.
//!
//! Layers are applied side by side. A layer's diff dir is a tree of its
//! own (whiteouts are entries in it), and `create` needs only the parent
//! to exist, not to be filled; so the missing layers are created first,
//! bottom up, and then filled by a few threads at once ([`JOBS_ENV`]),
//! each streaming its own blob. The first failure stops the others at
//! their next read; the import waits for them, then rolls back.
//!
//! A layer is created and then filled (`create` + `apply_diff`); a crash in
//! between would leave an empty layer that the next import takes as done.
//! So before creating a layer, the import writes a marker file
//! `HOME/.overlay2-import-ID`, and removes it when the layer is verified
//! *and every layer below it is*: layers are committed bottom up, as the
//! image stacks them, whatever order their applies end in. After a crash,
//! every layer from the lowest unfinished one up still has its marker.
//! Imports into one home take turns (a `flock` on the home directory); a
//! marker found while holding the lock was left by a crash: the next import
//! rebuilds that layer (and the marked ones above it), and `check` reports
//! it (`check --repair` removes it with what stacks on it).

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use indicatif::{HumanBytes, ProgressBar};
use overlay_driver::{Backend as _, CreateOpts, GraphDriver, KernelBackend, Overlay2};
use overlay_layout::{COMMITTED_FILE, LayerId};
use rustix::fs::{FlockOperation, flock};
use serde::Serialize;

use crate::error::{Failure, Result, fail};
use crate::image::{self, ImageLayer, Source};
use crate::progress::{self, Bar};
use crate::stream::{Compression, Decoder, Hashing, Stoppable, chain_ids, excerpt, read_ahead};

/// The driver as the command uses it.
pub type Driver = Overlay2<KernelBackend>;

/// Names of import markers in the home: this, then the layer id.
pub const MARKER_PREFIX: &str = ".overlay2-import-";

/// The environment variable that says how many layers an import applies
/// at once: `1` applies them one after another (to compare, or to spare a
/// busy machine); unset, as many as there are cores.
pub const JOBS_ENV: &str = "OVERLAY2_IMPORT_JOBS";

/// An exclusive lock on a home for imports and repairs (`flock` on the
/// home directory: no file of its own, so the home stays Docker's).
#[derive(Debug)]
pub struct HomeLock(#[allow(dead_code)] File);

impl HomeLock {
    fn open(home: &Path) -> Result<File> {
        File::open(home).map_err(|e| Failure::new(format!("cannot open home {}: {e}", home.display())))
    }

    /// Takes the lock, waiting (and saying so) while another process has it.
    ///
    /// # Errors
    ///
    /// The home cannot be opened or locked.
    pub fn acquire(home: &Path) -> Result<Self> {
        if let Some(lock) = Self::try_acquire(home)? {
            return Ok(lock);
        }
        eprintln!(
            "overlay2: waiting for another import or repair in {} to finish",
            home.display()
        );
        let f = Self::open(home)?;
        flock(&f, FlockOperation::LockExclusive)
            .map_err(|e| Failure::new(format!("cannot lock home {}: {e}", home.display())))?;
        Ok(Self(f))
    }

    /// Takes the lock if nobody has it.
    ///
    /// # Errors
    ///
    /// The home cannot be opened or locked.
    pub fn try_acquire(home: &Path) -> Result<Option<Self>> {
        let f = Self::open(home)?;
        match flock(&f, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Self(f))),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => fail!("cannot lock home {}: {e}", home.display()),
        }
    }
}

fn marker_path(home: &Path, id: &str) -> PathBuf {
    home.join(format!("{MARKER_PREFIX}{id}"))
}

/// Writes (and syncs) the marker of layer `id`, naming the image.
fn write_marker(home: &Path, id: &str, image: &Path) -> Result<()> {
    let path = marker_path(home, id);
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&path)?;
        writeln!(f, "{}", image.display())?;
        f.sync_all()?;
        File::open(home)?.sync_all()
    };
    write().map_err(|e| Failure::new(format!("cannot write {}: {e}", path.display())))
}

fn remove_marker(home: &Path, id: &str) -> Result<()> {
    let path = marker_path(home, id);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => fail!("cannot remove {}: {e}", path.display()),
    }
}

/// Layer ids whose import was interrupted (their markers), sorted.
///
/// # Errors
///
/// The home cannot be read.
pub fn markers(home: &Path) -> Result<Vec<String>> {
    let dir = std::fs::read_dir(home).map_err(|e| Failure::new(format!("cannot read home {}: {e}", home.display())))?;
    let mut out = Vec::new();
    for e in dir.flatten() {
        if let Some(id) = e.file_name().to_str().and_then(|n| n.strip_prefix(MARKER_PREFIX)) {
            out.push(id.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Layers stacked directly on `id`.
///
/// # Errors
///
/// The home cannot be read.
pub fn children(driver: &Driver, id: &str) -> Result<Vec<String>> {
    Ok(driver.children(id)?.into_iter().map(LayerId::into_string).collect())
}

/// Removes `id` and everything stacked on it, top first; returns the ids
/// removed.
///
/// # Errors
///
/// A removal fails.
pub fn remove_with_descendants(driver: &Driver, id: &str) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for child in children(driver, id)? {
        removed.extend(remove_with_descendants(driver, &child)?);
    }
    driver.remove(id)?;
    removed.push(id.to_owned());
    Ok(removed)
}

/// Removes the layer of an interrupted import (and what stacks on it)
/// and its marker; the caller holds the [`HomeLock`].
///
/// # Errors
///
/// A removal fails.
pub fn repair_marker(driver: &Driver, id: &str) -> Result<Vec<String>> {
    let home = driver.backend().home_path().to_path_buf();
    let removed = if driver.exists(id) {
        remove_with_descendants(driver, id)?
    } else {
        Vec::new()
    };
    // The layers above were that import's too (it commits bottom up):
    // their markers name nothing once they are gone.
    for r in &removed {
        remove_marker(&home, r)?;
    }
    remove_marker(&home, id)?;
    Ok(removed)
}

/// Everything stacked on `id`, at any height.
fn descendants(driver: &Driver, id: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for child in children(driver, id)? {
        out.extend(descendants(driver, &child)?);
        out.push(child);
    }
    Ok(out)
}

/// One layer of an import, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// The layer's id in the home (the chain id's hex).
    pub id: String,
    /// The layer below, if any.
    pub parent: Option<String>,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// Chain id, as Docker's layer store computes it.
    pub chain_id: String,
    /// The blob's name in the image.
    pub blob: String,
    /// Made by this import (false: it was already there).
    pub created: bool,
    /// Compression of the blob (`none`, `gzip`, `zstd`); null when skipped.
    pub compression: Option<&'static str>,
    /// Bytes applied (0 when skipped).
    pub bytes: u64,
}

/// One image of an import.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    /// Its tag, ref name or manifest digest.
    pub name: String,
    /// The id of its top layer.
    pub top: String,
    /// Its layers, bottom first.
    pub layers: Vec<LayerReport>,
}

/// What `import` did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// The image file or directory.
    pub image: PathBuf,
    /// `docker-save`, `oci-layout` or `oci-archive`.
    pub format: &'static str,
    /// The top layer of the last image (of the only one, usually).
    pub top: String,
    /// Each image imported.
    pub images: Vec<ImageReport>,
}

/// Imports the image at `path` into the driver's home.
///
/// # Errors
///
/// The image cannot be read or is broken (a digest does not match, a
/// layer tar is hostile...): the message names the file and the digests,
/// and every layer this import created has been removed again.
pub fn import(driver: &Driver, path: &Path) -> Result<ImportReport> {
    let jobs = jobs_wanted()?;
    let opened = image::open(path)?;
    let home = driver.backend().home_path().to_path_buf();
    let _lock = HomeLock::acquire(&home)?;
    let mut job = Job {
        driver,
        home: &home,
        image: path,
        source: &*opened.source,
        jobs,
        created: Vec::new(),
        committed: Vec::new(),
    };
    let result = job.run(&opened.images);
    match result {
        Ok(images) => {
            let top = images.last().map(|i| i.top.clone()).unwrap_or_default();
            Ok(ImportReport {
                image: path.to_path_buf(),
                format: opened.format.name(),
                top,
                images,
            })
        }
        Err(e) => Err(job.rollback(e.context(path.display()))),
    }
}

/// How many layers to apply at once: [`JOBS_ENV`] if set, else the cores
/// this process may use (its cgroup's share included).
///
/// Each layer in flight keeps at least two threads busy: the one applying
/// it (mostly in the kernel, creating files) and its reader, which
/// decompresses and hashes the blob ahead of it (`read_ahead`); so on a
/// 2-core machine two layers are four threads on two cores. That is still
/// worth it (measured on 2 cores: a 5-layer image of /usr trees, 440 MB,
/// imports in 0.7 to 0.8 of the time, plain or gzip):
/// the two halves of one layer rarely keep their cores full (the applier
/// waits for data while the reader inflates, the reader waits on a full
/// queue while the applier creates a directory of small files), and a
/// second layer fills those gaps. A third layer on two cores measured no
/// better, only more switching and memory (about 5 MiB of buffers each).
/// The file-making workers each apply may start are shared out too (see
/// [`Job::apply_all`]).
///
/// # Errors
///
/// [`JOBS_ENV`] is set but not a number of 1 or more (bad usage).
fn jobs_wanted() -> Result<usize> {
    match std::env::var(JOBS_ENV) {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(Failure::usage(format!(
                "{JOBS_ENV}={:?}: want how many layers to apply at once (1 or more)",
                excerpt(&v)
            ))),
        },
        Err(std::env::VarError::NotPresent) => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
        Err(std::env::VarError::NotUnicode(_)) => Err(Failure::usage(format!(
            "{JOBS_ENV} is not a number (want how many layers to apply at once)"
        ))),
    }
}

/// A layer this import makes.
struct Task<'i> {
    layer: &'i ImageLayer,
    id: String,
    parent: Option<String>,
    /// Where it is, for messages: `layer 2 of 5` (after `image NAME: `
    /// when the file holds several images).
    place: String,
    /// Its report: the image's index, the layer's index in it.
    report: (usize, usize),
}

impl Task<'_> {
    fn ctx(&self, e: Failure) -> Failure {
        e.context(&self.place)
    }
}

/// A layer filled and verified: the bytes applied, the compression found.
type Applied = (u64, Compression);

/// How one layer's apply ended, as its thread tells the committer.
enum Outcome {
    Applied(Applied),
    /// The import's first failure (the one that stopped the others).
    Failed(Failure),
    /// Stopped by that first failure, or failed after it: not reported.
    Stopped,
}

/// Sets the stop flag if the thread holding it panics, so the other
/// layers stop too (the panicked one never reports its layer).
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Release);
        }
    }
}

struct Job<'a> {
    driver: &'a Driver,
    home: &'a Path,
    image: &'a Path,
    source: &'a dyn Source,
    /// Layers applied at once, at most.
    jobs: usize,
    /// Layers made by this import, in order.
    created: Vec<String>,
    /// Layers that were here before and got `committed` by this import.
    committed: Vec<String>,
}

impl Job<'_> {
    fn run(&mut self, images: &[image::Image]) -> Result<Vec<ImageReport>> {
        let (mut reports, tasks, total) = self.plan(images)?;
        for t in &tasks {
            self.create(t).map_err(|e| t.ctx(e))?;
        }
        let applied = self.apply_all(&tasks, total)?;
        for (t, (bytes, compression)) in tasks.iter().zip(applied) {
            let (i, l) = t.report;
            if let Some(r) = reports.get_mut(i).and_then(|r| r.layers.get_mut(l)) {
                r.created = true;
                r.bytes = bytes;
                r.compression = Some(compression.name());
            }
        }
        Ok(reports)
    }

    /// The reports of every layer (as if all were present), the layers to
    /// make, bottom first, and the total size of their blobs. Layers an
    /// interrupted import left are removed here, to be made again. Each
    /// blob is opened (and its size checked) so that a missing one fails
    /// before anything is created.
    fn plan<'i>(&mut self, images: &'i [image::Image]) -> Result<(Vec<ImageReport>, Vec<Task<'i>>, u64)> {
        let mut reports = Vec::new();
        let mut tasks = Vec::new();
        let mut planned = HashSet::new();
        let mut total = 0u64;
        for (i, img) in images.iter().enumerate() {
            let diff_ids: Vec<_> = img.layers.iter().map(|l| l.diff_id.clone()).collect();
            let chains = chain_ids(&diff_ids);
            let mut parent: Option<String> = None;
            let mut layers = Vec::new();
            for (l, (layer, chain)) in img.layers.iter().zip(&chains).enumerate() {
                let id = chain.hex().to_owned();
                let mut place = format!("layer {} of {}", l + 1, img.layers.len());
                if images.len() > 1 {
                    place = format!("image {}: {place}", excerpt(&img.name));
                }
                layers.push(LayerReport {
                    id: id.clone(),
                    parent: parent.clone(),
                    diff_id: layer.diff_id.to_string(),
                    chain_id: chain.to_string(),
                    blob: layer.blob.clone(),
                    created: false,
                    compression: None,
                    bytes: 0,
                });
                // A layer two images share is made once, by the first.
                let ctx = |e: Failure| e.context(&place);
                if !planned.contains(&id) && !self.present(&id, parent.as_deref()).map_err(ctx)? {
                    let (_, size) = open_blob(self.source, layer).map_err(ctx)?;
                    total = total.saturating_add(size);
                    planned.insert(id.clone());
                    tasks.push(Task {
                        layer,
                        id: id.clone(),
                        parent: parent.clone(),
                        place,
                        report: (i, l),
                    });
                }
                parent = Some(id);
            }
            reports.push(ImageReport {
                name: img.name.clone(),
                top: parent.unwrap_or_default(),
                layers,
            });
        }
        Ok((reports, tasks, total))
    }

    /// Is the layer already there, whole, on the right parent?
    fn present(&mut self, id: &str, parent: Option<&str>) -> Result<bool> {
        if !self.driver.exists(id) {
            return Ok(false);
        }
        if marker_path(self.home, id).exists() {
            // We hold the lock: this marker is a crashed import's, and so
            // are the marked layers above it (imports commit bottom up).
            // A layer above without a marker is someone else's.
            let above = descendants(self.driver, id)?;
            let others: Vec<&str> = above
                .iter()
                .filter(|a| !marker_path(self.home, a).exists())
                .map(String::as_str)
                .collect();
            if !others.is_empty() {
                fail!(
                    "layer {id:?} was left incomplete by an interrupted import and layers stack on it ({}); \
                     run `overlay2 check --repair`",
                    others.join(", ")
                );
            }
            match above.len() {
                0 => eprintln!("overlay2: rebuilding layer {id:?}, left incomplete by an interrupted import"),
                n => eprintln!(
                    "overlay2: rebuilding layer {id:?} and the {n} above it, left incomplete by an interrupted import"
                ),
            }
            repair_marker(self.driver, id)?;
            return Ok(false);
        }
        let actual = self.driver.parent_of(id)?;
        if actual.as_ref().map(|p| p.as_str()) != parent {
            fail!(
                "layer {id:?} is already in the home but stacked on {}, not on {} as the image says",
                actual.map_or("nothing".into(), |p| format!("{:?}", p.as_str())),
                parent.map_or("nothing".into(), |p| format!("{p:?}"))
            );
        }
        Ok(true)
    }

    /// Creates the (empty) layer, its marker first.
    fn create(&mut self, t: &Task<'_>) -> Result<()> {
        let parent = t.parent.as_deref();
        // Creating a child marks a parent `committed`; a parent that was
        // here before and had no child gets that undone on rollback.
        if let Some(p) = parent
            && !self.created.iter().any(|c| c == p)
            && !self.home.join(p).join(COMMITTED_FILE).exists()
        {
            self.committed.push(p.to_owned());
        }
        write_marker(self.home, &t.id, self.image)?;
        if let Err(e) = self.driver.create(&t.id, parent, &CreateOpts::default()) {
            let _ = remove_marker(self.home, &t.id);
            return Err(e.into());
        }
        self.created.push(t.id.clone());
        Ok(())
    }

    /// Fills the created layers, up to `jobs` at once, each on a thread
    /// of its own, and commits them bottom up on this one. On the first
    /// failure the others stop at their next read; once every thread has
    /// ended, that failure is returned (the caller rolls back).
    fn apply_all(&self, tasks: &[Task<'_>], total: u64) -> Result<Vec<Applied>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let bars = progress::Multi::new();
        let overall = bars.bytes(Some(total), &format!("importing {}", self.image.display()));
        overall.set_message(format!("0/{} layers", tasks.len()));
        let threads = self.jobs.min(tasks.len());
        // An apply may make its files with workers of its own, as many as
        // there are cores by default: with layers side by side that would
        // be layers × cores threads. Share the cores out instead (one
        // worker per layer: its files made on its applying thread).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.driver.set_apply_workers((cores / threads).max(1));
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let tx = tx.clone();
                    let (next, stop, bars, overall) = (&next, &stop, &bars, &*overall);
                    scope.spawn(move || self.worker(tasks, next, stop, bars, overall, &tx))
                })
                .collect();
            drop(tx);
            let committed = self.commit(tasks, &rx, &stop, &bars, &overall);
            let panicked = workers.into_iter().filter_map(|w| w.join().err()).count();
            match committed {
                Err(e) => Err(e),
                Ok(_) if panicked > 0 => fail!("internal error: a thread applying a layer panicked"),
                Ok(applied) => Ok(applied),
            }
        })
    }

    /// One applying thread: takes the next layer not taken yet (bottom
    /// first), until there is none or the import stops.
    fn worker(
        &self,
        tasks: &[Task<'_>],
        next: &AtomicUsize,
        stop: &AtomicBool,
        bars: &progress::Multi,
        overall: &ProgressBar,
        tx: &mpsc::Sender<(usize, Outcome)>,
    ) {
        let _guard = StopOnPanic(stop);
        while !stop.load(Ordering::Acquire) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(t) = tasks.get(i) else { break };
            let outcome = match self.apply(t, stop, bars, overall) {
                Ok(applied) => Outcome::Applied(applied),
                // Only the first failure sets the flag; the others are its
                // consequence ("cancelled") or came after it.
                Err(e) if !stop.swap(true, Ordering::AcqRel) => Outcome::Failed(t.ctx(e)),
                Err(_) => Outcome::Stopped,
            };
            if tx.send((i, outcome)).is_err() {
                break;
            }
        }
    }

    /// Streams one layer's blob into it, with a bar of its own.
    fn apply(&self, t: &Task<'_>, stop: &AtomicBool, bars: &progress::Multi, overall: &ProgressBar) -> Result<Applied> {
        let (reader, size) = open_blob(self.source, t.layer)?;
        let bar: Bar = bars.bytes(Some(size), &t.place);
        bar.set_message(t.id.chars().take(12).collect::<String>());
        let progress = [bar.clone(), overall.clone()];
        apply_verified(
            self.driver,
            t.layer,
            Stoppable::new(reader, stop),
            size,
            &t.id,
            t.parent.as_deref(),
            &progress,
        )
    }

    /// Takes each layer's outcome as it comes and commits the layers
    /// (removes their markers) bottom up, each once every layer below it
    /// is; returns what each applied, or the import's first failure.
    fn commit(
        &self,
        tasks: &[Task<'_>],
        rx: &mpsc::Receiver<(usize, Outcome)>,
        stop: &AtomicBool,
        bars: &progress::Multi,
        overall: &ProgressBar,
    ) -> Result<Vec<Applied>> {
        let mut applied: Vec<Option<Applied>> = vec![None; tasks.len()];
        let mut first = None;
        let mut done = 0;
        for (i, outcome) in rx {
            match outcome {
                Outcome::Applied(a) => applied[i] = Some(a),
                Outcome::Failed(e) => first = Some(e),
                Outcome::Stopped => {}
            }
            while !stop.load(Ordering::Acquire)
                && let (Some(t), Some(Some((bytes, compression)))) = (tasks.get(done), applied.get(done))
            {
                if let Err(e) = remove_marker(self.home, &t.id) {
                    if !stop.swap(true, Ordering::AcqRel) {
                        first = Some(t.ctx(e));
                    }
                    break;
                }
                done += 1;
                bars.println(&format!(
                    "committed {}: {} ({}, {})",
                    t.place,
                    t.id,
                    HumanBytes(*bytes),
                    compression.name()
                ));
                overall.set_message(format!("{done}/{} layers", tasks.len()));
            }
        }
        if let Some(e) = first {
            return Err(e);
        }
        if let Some(t) = tasks.get(done) {
            fail!("internal error: {} was not applied (its thread ended early)", t.place);
        }
        Ok(applied.into_iter().flatten().collect())
    }

    /// Removes what this import created (top first) and returns `e`, plus
    /// anything that could not be undone.
    fn rollback(&mut self, e: Failure) -> Failure {
        let mut e = e;
        let mut left = Vec::new();
        while let Some(id) = self.created.pop() {
            if let Err(re) = self.driver.remove(&id) {
                left.push(format!("{id:?} ({re})"));
                continue;
            }
            let _ = remove_marker(self.home, &id);
        }
        if left.is_empty() {
            for p in self.committed.drain(..) {
                if children(self.driver, &p).is_ok_and(|c| c.is_empty()) {
                    let _ = std::fs::remove_file(self.home.join(&p).join(COMMITTED_FILE));
                }
            }
        }
        if !left.is_empty() {
            e = Failure::new(format!(
                "{}; and these layers it created could not be removed: {} (run `overlay2 check --repair`)",
                e.message,
                left.join(", ")
            ));
        }
        e
    }
}

/// Opens `layer`'s blob and checks its size against the manifest's.
fn open_blob<'s>(source: &'s dyn Source, layer: &ImageLayer) -> Result<(Box<dyn Read + Send + 's>, u64)> {
    let name = &layer.blob;
    let (reader, size) = source.open(name)?;
    if let Some(want) = layer.size
        && want != size
    {
        fail!("{name} is {size} bytes but the manifest says {want}");
    }
    Ok((reader, size))
}

/// Streams `reader` (`layer`'s blob, `size` bytes) into layer `id`,
/// checking the blob's digest against the manifest and the uncompressed
/// digest against the diff id, and moving `progress`; returns the bytes
/// applied and the compression found.
fn apply_verified(
    driver: &Driver,
    layer: &ImageLayer,
    reader: impl Read + Send,
    size: u64,
    id: &str,
    parent: Option<&str>,
    progress: &[ProgressBar],
) -> Result<Applied> {
    let name = &layer.blob;
    // The blob is hashed only when the image states its digest.
    let mut blob = match layer.blob_digest {
        Some(_) => Hashing::new(reader),
        None => Hashing::counting(reader),
    };
    for bar in progress {
        blob = blob.with_progress(bar.clone());
    }
    let (decoder, compression) = Decoder::new(blob).map_err(|e| Failure::new(format!("{name}: {e}")))?;
    // Read, decompress and hash on another thread while this one applies.
    let ((applied, rest), diff) = read_ahead(Hashing::new(decoder), |diff| {
        let applied = driver.apply_diff(id, parent, diff);
        let rest = match &applied {
            Ok(_) => std::io::copy(diff, &mut std::io::sink()).map(|_| ()),
            Err(_) => Ok(()),
        };
        (applied, rest)
    })
    .map_err(|e| Failure::new(format!("cannot read {name}: {e}")))?;
    // Read to the end either way (below), so that the digests cover every
    // byte: a blob that fails to unpack is more usefully reported as not
    // matching its digest, when it does not.
    let (diff_digest, _, decoder) = diff.into_parts();
    let blob = decoder.drain().and_then(Hashing::finish);
    if let (Some(want), Ok((Some(got), _, _))) = (&layer.blob_digest, &blob)
        && want != got
    {
        fail!("{name} does not match its digest: the manifest says {want}, the file is {got}");
    }
    let applied = applied.map_err(|e| Failure::from(e).context(format!("cannot apply {name}")))?;
    rest.map_err(|e| Failure::new(format!("cannot read {name}: {e}")))?;
    let (_, count, _) = blob.map_err(|e| Failure::new(format!("cannot read {name}: {e}")))?;
    if count != size {
        fail!("{name} ended after {count} of its {size} bytes");
    }
    let diff_digest = diff_digest.ok_or_else(|| Failure::new("internal error: the layer was not hashed"))?;
    if diff_digest != layer.diff_id {
        fail!(
            "{name} does not match its diff id: the config says {}, the uncompressed tar is {diff_digest}",
            layer.diff_id
        );
    }
    Ok((applied, compression))
}
