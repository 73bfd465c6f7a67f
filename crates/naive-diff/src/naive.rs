//! [`NaiveDiff`]: Diff, Changes, ApplyDiff and DiffSize for a driver that
//! can only mount (Docker's `NaiveDiffDriver`).

use std::io::{Read, Write};
use std::sync::Arc;

use overlay_archive::{
    ExportOptions, ExportWhiteouts, Exporter, IdMaps, ImportOptions, ImportWhiteouts, OwnableIds, import,
};
use overlay_fs::Fs;

use crate::changes::{Change, ChangeKind, changes, changes_size};
use crate::error::{BoxError, DiffError, Result};

/// The mount-only part of a layer driver: all the naive diff needs.
pub trait LayerTrees: Send + Sync {
    /// Makes the whole tree of layer `id` available (mounting it if need
    /// be) and returns it. Each `get` is matched by one [`put`](Self::put).
    fn get(&self, id: &str) -> std::result::Result<Arc<dyn Fs>, BoxError>;

    /// Releases what [`get`](Self::get) made available.
    fn put(&self, id: &str) -> std::result::Result<(), BoxError>;
}

/// A layer's tree for as long as it is held: `put` on drop, so an error on
/// the way never leaves a layer mounted.
struct Held<'a> {
    trees: &'a dyn LayerTrees,
    id: &'a str,
    fs: Arc<dyn Fs>,
    released: bool,
}

impl<'a> Held<'a> {
    fn get(trees: &'a dyn LayerTrees, id: &'a str) -> Result<Self> {
        let fs = trees.get(id).map_err(|source| DiffError::Driver {
            op: "get",
            id: id.into(),
            source,
        })?;
        Ok(Self {
            trees,
            id,
            fs,
            released: false,
        })
    }

    /// Puts the layer now, reporting failure.
    fn release(mut self) -> Result<()> {
        self.released = true;
        self.trees.put(self.id).map_err(|source| DiffError::Driver {
            op: "put",
            id: self.id.into(),
            source,
        })
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.trees.put(self.id);
        }
    }
}

/// Diffs computed by comparing a layer's tree with its parent's.
pub struct NaiveDiff<T> {
    trees: T,
    id_maps: IdMaps,
    ownable: Option<OwnableIds>,
    ignore_chown_errors: bool,
}

impl<T: LayerTrees> NaiveDiff<T> {
    /// A naive diff over `trees`, with no id remapping.
    pub fn new(trees: T) -> Self {
        Self {
            trees,
            id_maps: IdMaps::identity(),
            ownable: None,
            ignore_chown_errors: false,
        }
    }

    /// The ids applied files may be given, and whether others become root
    /// (see [`ImportOptions::ownable`] and
    /// [`ImportOptions::ignore_chown_errors`]).
    pub fn with_ownable(mut self, ownable: Option<OwnableIds>, ignore_chown_errors: bool) -> Self {
        self.ownable = ownable;
        self.ignore_chown_errors = ignore_chown_errors;
        self
    }

    /// Maps ids between the trees (host) and the tars (container).
    pub fn with_id_maps(mut self, id_maps: IdMaps) -> Self {
        self.id_maps = id_maps;
        self
    }

    /// The driver underneath.
    pub fn trees(&self) -> &T {
        &self.trees
    }

    /// The changes from `parent`'s tree to `id`'s (everything added when
    /// there is no parent), in walk order.
    ///
    /// # Errors
    ///
    /// A layer cannot be got or put, or a tree cannot be read.
    pub fn changes(&self, id: &str, parent: Option<&str>) -> Result<Vec<Change>> {
        let layer = Held::get(&self.trees, id)?;
        let parent = parent.map(|p| Held::get(&self.trees, p)).transpose()?;
        let out = changes(&*layer.fs, parent.as_ref().map(|p| &*p.fs))?;
        if let Some(p) = parent {
            p.release()?;
        }
        layer.release()?;
        Ok(out)
    }

    /// Writes a tar of exactly the changes into `out`: added and modified
    /// entries (a directory without its contents, which are changes of
    /// their own), deletions as `.wh.NAME`.
    ///
    /// # Errors
    ///
    /// As [`changes`](Self::changes), or the tar cannot be written.
    pub fn diff<W: Write>(&self, id: &str, parent: Option<&str>, out: W) -> Result<W> {
        let layer = Held::get(&self.trees, id)?;
        let list = {
            let parent = parent.map(|p| Held::get(&self.trees, p)).transpose()?;
            let list = changes(&*layer.fs, parent.as_ref().map(|p| &*p.fs))?;
            if let Some(p) = parent {
                p.release()?;
            }
            list
        };
        let out = export_changes(&*layer.fs, &list, &self.id_maps, out)?;
        layer.release()?;
        Ok(out)
    }

    /// Applies a layer tar to `id`'s tree, deleting what its whiteouts
    /// name, and returns the bytes applied (Docker's `ApplyDiff`).
    ///
    /// # Errors
    ///
    /// The layer cannot be got or put, or the tar is bad (see
    /// [`overlay_archive::import`]).
    pub fn apply_diff(&self, id: &str, _parent: Option<&str>, tar: impl Read) -> Result<u64> {
        let layer = Held::get(&self.trees, id)?;
        let opts = ImportOptions {
            whiteouts: ImportWhiteouts::Plain,
            id_maps: self.id_maps.clone(),
            ownable: self.ownable.clone(),
            ignore_chown_errors: self.ignore_chown_errors,
            ..ImportOptions::default()
        };
        let stats = import(&*layer.fs, tar, &opts)?;
        layer.release()?;
        Ok(stats.bytes)
    }

    /// Bytes of the changed files of `id` (hard links once).
    ///
    /// # Errors
    ///
    /// As [`changes`](Self::changes).
    pub fn diff_size(&self, id: &str, parent: Option<&str>) -> Result<u64> {
        let list = self.changes(id, parent)?;
        let layer = Held::get(&self.trees, id)?;
        let size = changes_size(&*layer.fs, &list)?;
        layer.release()?;
        Ok(size)
    }
}

/// Writes the tar of `changes` read from `fs` (Docker's `ExportChanges`).
///
/// # Errors
///
/// A changed path cannot be read, or the tar cannot be written.
pub fn export_changes<W: Write>(fs: &dyn Fs, changes: &[Change], id_maps: &IdMaps, out: W) -> Result<W> {
    let opts = ExportOptions {
        whiteouts: ExportWhiteouts::Keep,
        id_maps: id_maps.clone(),
        ..Default::default()
    };
    let mut e = Exporter::new(fs, &opts, out)?;
    for c in changes {
        match c.kind {
            ChangeKind::Delete => e.append_whiteout(&c.path)?,
            ChangeKind::Add | ChangeKind::Modify => e.append(&c.path)?,
        }
    }
    Ok(e.finish()?.0)
}
