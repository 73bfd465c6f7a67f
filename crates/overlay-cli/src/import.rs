//! `import`: an image's layers into the home, one layer per diff id, named
//! by its chain id, each verified while it streams in.
//!
//! All or nothing: if any layer fails (a digest that does not match, a
//! hostile or corrupt tar), every layer this import created is removed
//! again, and layers that were there before are never touched.
//!
//! A layer is created and then filled (`create` + `apply_diff`); a crash in
//! between would leave an empty layer that the next import takes as done.
//! So before creating a layer, the import writes a marker file
//! `HOME/.overlay2-import-ID` and removes it once the layer is verified.
//! Imports into one home take turns (a `flock` on the home directory); a
//! marker found while holding the lock was left by a crash: the next import
//! rebuilds that layer, and `check` reports it (`check --repair` removes it
//! with what stacks on it).

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use overlay_driver::{Backend as _, CreateOpts, GraphDriver, KernelBackend, Overlay2};
use overlay_layout::{COMMITTED_FILE, LayerId};
use rustix::fs::{FlockOperation, flock};
use serde::Serialize;

use crate::error::{Failure, Result, fail};
use crate::image::{self, ImageLayer, Source};
use crate::progress;
use crate::stream::{Compression, Decoder, Hashing, chain_ids, excerpt, read_ahead};

/// The driver as the command uses it.
pub type Driver = Overlay2<KernelBackend>;

/// Names of import markers in the home: this, then the layer id.
pub const MARKER_PREFIX: &str = ".overlay2-import-";

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
    remove_marker(&home, id)?;
    Ok(removed)
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
    let opened = image::open(path)?;
    let home = driver.backend().home_path().to_path_buf();
    let _lock = HomeLock::acquire(&home)?;
    let mut job = Job {
        driver,
        home: &home,
        image: path,
        source: &*opened.source,
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

struct Job<'a> {
    driver: &'a Driver,
    home: &'a Path,
    image: &'a Path,
    source: &'a dyn Source,
    /// Layers made by this import, in order.
    created: Vec<String>,
    /// Layers that were here before and got `committed` by this import.
    committed: Vec<String>,
}

impl Job<'_> {
    fn run(&mut self, images: &[image::Image]) -> Result<Vec<ImageReport>> {
        // The bar counts bytes of the blobs still to import.
        let mut total = 0u64;
        let mut todo = std::collections::HashSet::new();
        for img in images {
            let chains = chain_ids(&img.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>());
            for (l, c) in img.layers.iter().zip(&chains) {
                if !self.driver.exists(c.hex()) && todo.insert(c.hex().to_owned()) {
                    total += l
                        .size
                        .or_else(|| self.source.open(&l.blob).ok().map(|(_, s)| s))
                        .unwrap_or(0);
                }
            }
        }
        let bar = progress::bytes(Some(total), &format!("importing {}", self.image.display()));
        let n = todo.len();
        let mut done = 0usize;
        let mut reports = Vec::new();
        for img in images {
            let ctx = |e: Failure| {
                if images.len() > 1 {
                    e.context(format!("image {}", excerpt(&img.name)))
                } else {
                    e
                }
            };
            let diff_ids: Vec<_> = img.layers.iter().map(|l| l.diff_id.clone()).collect();
            let chains = chain_ids(&diff_ids);
            let mut parent: Option<String> = None;
            let mut layers = Vec::new();
            for (i, (layer, chain)) in img.layers.iter().zip(&chains).enumerate() {
                let id = chain.hex().to_owned();
                let ctx = |e: Failure| ctx(e.context(format!("layer {} of {}", i + 1, img.layers.len())));
                let mut report = LayerReport {
                    id: id.clone(),
                    parent: parent.clone(),
                    diff_id: layer.diff_id.to_string(),
                    chain_id: chain.to_string(),
                    blob: layer.blob.clone(),
                    created: false,
                    compression: None,
                    bytes: 0,
                };
                if self.present(&id, parent.as_deref()).map_err(ctx)? {
                    layers.push(report);
                } else {
                    done += 1;
                    bar.set_message(format!("layer {done}/{n}"));
                    let (bytes, compression) = self.create(layer, &id, parent.as_deref(), &bar).map_err(ctx)?;
                    report.created = true;
                    report.bytes = bytes;
                    report.compression = Some(compression.name());
                    layers.push(report);
                }
                parent = Some(id);
            }
            reports.push(ImageReport {
                name: img.name.clone(),
                top: parent.unwrap_or_default(),
                layers,
            });
        }
        Ok(reports)
    }

    /// Is the layer already there, whole, on the right parent?
    fn present(&mut self, id: &str, parent: Option<&str>) -> Result<bool> {
        if !self.driver.exists(id) {
            return Ok(false);
        }
        if marker_path(self.home, id).exists() {
            // We hold the lock: this marker is a crashed import's.
            let kids = children(self.driver, id)?;
            if !kids.is_empty() {
                fail!(
                    "layer {id:?} was left incomplete by an interrupted import and layers stack on it ({}); \
                     run `overlay2 check --repair`",
                    kids.join(", ")
                );
            }
            eprintln!("overlay2: rebuilding layer {id:?}, left incomplete by an interrupted import");
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

    fn create(
        &mut self,
        layer: &ImageLayer,
        id: &str,
        parent: Option<&str>,
        bar: &ProgressBar,
    ) -> Result<(u64, Compression)> {
        // Creating a child marks a parent `committed`; a parent that was
        // here before and had no child gets that undone on rollback.
        if let Some(p) = parent
            && !self.created.iter().any(|c| c == p)
            && !self.home.join(p).join(COMMITTED_FILE).exists()
        {
            self.committed.push(p.to_owned());
        }
        write_marker(self.home, id, self.image)?;
        if let Err(e) = self.driver.create(id, parent, &CreateOpts::default()) {
            let _ = remove_marker(self.home, id);
            return Err(e.into());
        }
        self.created.push(id.to_owned());
        let out = apply_verified(self.driver, self.source, layer, id, parent, bar)?;
        remove_marker(self.home, id)?;
        Ok(out)
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

/// Streams `layer`'s blob into layer `id`, checking the blob's digest and
/// size against the manifest and the uncompressed digest against the diff
/// id; returns the bytes applied and the compression found.
fn apply_verified(
    driver: &Driver,
    source: &dyn Source,
    layer: &ImageLayer,
    id: &str,
    parent: Option<&str>,
    bar: &ProgressBar,
) -> Result<(u64, Compression)> {
    let name = &layer.blob;
    let (reader, size) = source.open(name)?;
    if let Some(want) = layer.size
        && want != size
    {
        fail!("{name} is {size} bytes but the manifest says {want}");
    }
    // The blob is hashed only when the image states its digest.
    let blob = match layer.blob_digest {
        Some(_) => Hashing::new(reader),
        None => Hashing::counting(reader),
    }
    .with_progress(bar.clone());
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
