//! The graph driver interface: Docker's `graphdriver.Driver`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use naive_diff::Change;
use overlay_fs::Fs;

use crate::error::Result;
use crate::options::CreateOpts;

/// A layer store: Docker's graph driver operations, object safe so a
/// `Box<dyn GraphDriver>` can stand for any implementation.
pub trait GraphDriver: Send + Sync {
    /// The driver's name (`"overlay2"`).
    fn name(&self) -> &'static str;

    /// Creates a read-only (image) layer `id` on top of `parent`.
    ///
    /// # Errors
    ///
    /// An invalid or taken id, a missing parent, the depth limit, options
    /// Docker refuses for image layers.
    fn create(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()>;

    /// Creates a read-write (container) layer, with a quota when asked.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create), and quotas the home cannot enforce.
    fn create_read_write(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()>;

    /// Removes a layer, unmounting it first if it is mounted.
    ///
    /// # Errors
    ///
    /// An empty or invalid id, or the removal fails.
    fn remove(&self, id: &str) -> Result<()>;

    /// Mounts the layer (reference counted) and returns its root path.
    ///
    /// # Errors
    ///
    /// A missing or corrupt layer, or the mount fails.
    fn get(&self, id: &str, mount_label: Option<&str>) -> Result<PathBuf>;

    /// Releases one [`get`](Self::get); the last one unmounts.
    ///
    /// # Errors
    ///
    /// The unmount fails.
    fn put(&self, id: &str) -> Result<()>;

    /// Does layer `id` exist?
    fn exists(&self, id: &str) -> bool;

    /// Key and value pairs describing the driver, for `docker info`.
    fn status(&self) -> Vec<(String, String)>;

    /// `LowerDir`, `UpperDir`, `WorkDir`, `MergedDir` of a layer.
    ///
    /// # Errors
    ///
    /// A missing or corrupt layer.
    fn metadata(&self, id: &str) -> Result<BTreeMap<String, String>>;

    /// Unmounts everything this driver mounted.
    ///
    /// # Errors
    ///
    /// An unmount fails.
    fn cleanup(&self) -> Result<()>;

    /// Writes the layer's changes against `parent` as a tar.
    ///
    /// # Errors
    ///
    /// A missing layer, or the tree cannot be read.
    fn diff(&self, id: &str, parent: Option<&str>, out: &mut dyn Write) -> Result<()>;

    /// The layer's changes against `parent`.
    ///
    /// # Errors
    ///
    /// A missing layer, or the tree cannot be read.
    fn changes(&self, id: &str, parent: Option<&str>) -> Result<Vec<Change>>;

    /// Applies a layer tar to `id` and returns the bytes applied.
    ///
    /// # Errors
    ///
    /// A missing layer, or a bad tar.
    fn apply_diff(&self, id: &str, parent: Option<&str>, diff: &mut dyn Read) -> Result<u64>;

    /// Bytes of the layer's changed files.
    ///
    /// # Errors
    ///
    /// A missing layer, or the tree cannot be read.
    fn diff_size(&self, id: &str, parent: Option<&str>) -> Result<u64>;

    /// The tree of a layer that is currently got (or has no parent): the
    /// way to reach its files on any backend, the in-memory fake included.
    ///
    /// # Errors
    ///
    /// The layer is not available.
    fn tree(&self, id: &str) -> Result<Arc<dyn Fs>>;
}
