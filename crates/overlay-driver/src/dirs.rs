//! A layer's directories and disk usage, for callers that mount layers
//! themselves: containerd performs the mounts a snapshotter describes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use overlay_layout::{DIFF_DIR, WORK_DIR, relative_link_path};

use crate::backend::Backend;
use crate::driver::Overlay2;
use crate::error::{DriverError, Result};

/// Where a layer's directories are, as absolute paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDirs {
    /// The layer's own files (`HOME/ID/diff`): the upper dir of a mount.
    pub diff: PathBuf,
    /// Overlayfs's work dir (`HOME/ID/work`); only layers with a parent
    /// have one.
    pub work: Option<PathBuf>,
    /// The layers below, uppermost first, through their short links
    /// (`HOME/l/LINK`): uniform in length, so a deep stack still fits a
    /// page of mount options once made relative to `HOME/l`.
    pub lower_links: Vec<PathBuf>,
    /// The same layers' `diff` dirs (`HOME/ID/diff`), uppermost first.
    pub lower_diffs: Vec<PathBuf>,
}

/// Space a tree takes, counted as containerd counts a snapshot's usage:
/// allocated 512-byte blocks and inodes, every inode once (hard links),
/// the tree's root and directories included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Bytes allocated (`st_blocks` × 512).
    pub bytes: u64,
    /// Distinct inodes.
    pub inodes: u64,
}

impl<B: Backend> Overlay2<B> {
    /// The directories of layer `id` and of the layers below it. Every
    /// `l/` link of its `lower` is checked to name a layer of this home,
    /// so nothing described here leads outside it.
    ///
    /// # Errors
    ///
    /// An invalid or missing layer, or a corrupt `lower` chain.
    pub fn dirs(&self, id: &str) -> Result<LayerDirs> {
        let id = Self::layer_id(id)?;
        self.require(&id)?;
        let home = self.backend().home_path();
        let layer = home.join(id.as_str());
        let (lower_links, lower_diffs) = match self.read_lower(&id)? {
            None => (Vec::new(), Vec::new()),
            Some(lower) => {
                let layers = self.resolve_lower(&id, &lower, true)?;
                (
                    lower.iter().map(|l| home.join(relative_link_path(*l))).collect(),
                    layers.iter().map(|l| home.join(l.as_str()).join(DIFF_DIR)).collect(),
                )
            }
        };
        let work = (!lower_links.is_empty()).then(|| layer.join(WORK_DIR));
        Ok(LayerDirs {
            diff: layer.join(DIFF_DIR),
            work,
            lower_links,
            lower_diffs,
        })
    }

    /// Space layer `id`'s own files take (its `diff`, parents excluded).
    ///
    /// # Errors
    ///
    /// An invalid or missing layer, or its files cannot be read.
    pub fn usage(&self, id: &str) -> Result<Usage> {
        let id = Self::layer_id(id)?;
        self.require(&id)?;
        let tree = self.diff_tree(&id)?;
        let diff_err = |source| DriverError::Diff {
            id: id.as_str().into(),
            source: Box::new(source),
        };
        let root = tree.metadata(Path::new("")).map_err(|source| {
            diff_err(naive_diff::DiffError::Tree {
                path: PathBuf::new(),
                source,
            })
        })?;
        let mut seen = HashSet::from([(root.dev, root.ino)]);
        let mut usage = Usage {
            bytes: root.blocks * 512,
            inodes: 1,
        };
        crate::native::for_each_entry(&*tree, true, |md| {
            if seen.insert((md.dev, md.ino)) {
                usage.bytes += md.blocks * 512;
                usage.inodes += 1;
            }
        })
        .map_err(diff_err)?;
        Ok(usage)
    }
}
