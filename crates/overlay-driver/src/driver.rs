//! [`Overlay2`]: Docker's overlay2 driver (v20.10 behaviour) over any
//! [`Backend`].

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use naive_diff::{BoxError, Change, LayerTrees, NaiveDiff};
use overlay_archive::{ExportOptions, IdMaps, ImportOptions, ImportWhiteouts};
use overlay_fs::{Dir, ErrorKind, Fs};
use overlay_layout::{
    DIFF_DIR, DepthLimit, LINK_DIR, LINK_FILE, LOWER_FILE, LayerId, LinkId, Lower, MERGED_DIR, WORK_DIR, link_target,
    mode, parse_link_target, relative_committed_file, relative_diff_dir, relative_layer_dir, relative_link_file,
    relative_link_path, relative_lower_file, relative_merged_dir, relative_work_dir,
};

use crate::backend::{Backend, MountRequest, unsupported_layer_quota, unsupported_quota};
use crate::error::{DriverError, Result};
use crate::graph::GraphDriver;
use crate::locks::Locks;
use crate::native;
use crate::options::{CreateOpts, DriverOptions};

/// Names in the home that start with this are the driver's own scratch
/// (layers being built or removed); no layer id may start with it.
pub const STAGING_PREFIX: &str = overlay_layout::SCRATCH_PREFIX;

/// The overlay2 driver over a backend.
pub struct Overlay2<B> {
    backend: B,
    options: DriverOptions,
    locks: Locks,
    depth: DepthLimit,
    pub(crate) id_maps: IdMaps,
    /// Parent/child links of every layer, kept in memory by servers
    /// ([`Overlay2::with_index`]).
    pub(crate) index: Option<parking_lot::Mutex<crate::index::Index>>,
    /// Threads making each applied layer's files (see
    /// [`ImportOptions::workers`]); 0 picks the number of cores.
    apply_workers: std::sync::atomic::AtomicUsize,
}

impl<B: Backend> std::fmt::Debug for Overlay2<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay2")
            .field("home", &self.backend.home_path())
            .finish()
    }
}

/// `Path` of `a/b/...` relative to the home.
fn random_suffix() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..12).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect()
}

impl<B: Backend> Overlay2<B> {
    /// Starts the driver on `backend` with Docker's option strings
    /// (`overlay2.size=10G`...), making the home's `l/` directory.
    ///
    /// # Errors
    ///
    /// A bad option, a default size the home cannot enforce, or the home
    /// cannot be prepared.
    pub fn new<S: AsRef<str>>(backend: B, options: &[S]) -> Result<Self> {
        let options = DriverOptions::parse(options)?;
        if options.default_size.is_some_and(|s| s > 0) && backend.capabilities().quota.is_err() {
            return Err(DriverError::Unsupported(unsupported_quota(backend.capabilities())));
        }
        let home = backend.home();
        home.set_mode(Path::new(""), mode::HOME)?;
        match home.mkdir(Path::new(LINK_DIR), mode::LINK_DIR) {
            Ok(()) => {}
            // A home an older Docker made (0701, CVE-2021-41091): close it.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => home.set_mode(Path::new(LINK_DIR), mode::LINK_DIR)?,
            Err(e) => return Err(e.into()),
        }
        Ok(Self {
            backend,
            options,
            locks: Locks::new(),
            depth: DepthLimit::DOCKER,
            id_maps: IdMaps::identity(),
            index: None,
            apply_workers: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// How many threads make the files of each layer an
    /// [`apply_diff`](GraphDriver::apply_diff) unpacks (besides the one
    /// reading the tar): 0, the default, picks the number of cores; 1
    /// makes them in tar order on the calling thread. A caller applying
    /// several layers at once shares the cores out with this.
    pub fn set_apply_workers(&self, workers: usize) {
        self.apply_workers.store(workers, std::sync::atomic::Ordering::Relaxed);
    }

    /// Allows deeper stacks than Docker's 128 (the new mount API mounts
    /// up to 500).
    pub fn with_depth_limit(mut self, depth: DepthLimit) -> Self {
        self.depth = depth;
        self
    }

    /// The backend underneath.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    fn home(&self) -> &dyn Fs {
        &**self.backend.home()
    }

    pub(crate) fn layer_id(id: &str) -> Result<LayerId> {
        LayerId::new(id).map_err(DriverError::InvalidId)
    }

    fn corrupt(id: &LayerId, what: String) -> DriverError {
        DriverError::Corrupt {
            id: id.as_str().into(),
            what,
        }
    }

    pub(crate) fn require(&self, id: &LayerId) -> Result<()> {
        match self.home().metadata(Path::new(id.as_str())) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(Self::corrupt(
                id,
                format!("{:?} in the home is not a directory", id.as_str()),
            )),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(DriverError::NotFound(id.as_str().into())),
            Err(e) => Err(e.into()),
        }
    }

    /// The layer's own link id, from its `link` file.
    fn read_link(&self, id: &LayerId) -> Result<LinkId> {
        let bytes = self.home().read(&relative_link_file(id))?;
        LinkId::from_bytes(&bytes).map_err(|source| DriverError::Layout {
            id: id.as_str().into(),
            source,
        })
    }

    /// The layer's `lower` chain, `None` for a base layer.
    pub(crate) fn read_lower(&self, id: &LayerId) -> Result<Option<Lower>> {
        match self.home().read(&relative_lower_file(id)) {
            Ok(bytes) => Lower::parse(&bytes).map(Some).map_err(|source| DriverError::Layout {
                id: id.as_str().into(),
                source,
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The layer each link of `lower` names, checking that every `l/`
    /// link exists and points at a layer's `diff` inside the home.
    fn lower_layers(&self, id: &LayerId, lower: &Lower) -> Result<Vec<LayerId>> {
        self.resolve_lower(id, lower, true)
    }

    /// The layers `lower` names, through one handle on `l/` and one on the
    /// home (two calls per layer instead of six). Every link must exist
    /// and name a layer directory (not a symlink) of this home; with
    /// `with_diff`, also one with a `diff` directory. `get` leaves that to
    /// the mount and, if it fails, looks again with it to name the damage.
    pub(crate) fn resolve_lower(&self, id: &LayerId, lower: &Lower, with_diff: bool) -> Result<Vec<LayerId>> {
        let links = self.home().open_dir(Path::new(LINK_DIR))?;
        let root = self.home().open_dir(Path::new(""))?;
        lower
            .iter()
            .map(|link| self.resolve_link_in(id, *link, &*links, &*root, with_diff))
            .collect()
    }

    /// The layer the `l/` link `link` (in `id`'s `lower`) names, checked
    /// to exist and to point at a layer's `diff` inside the home.
    fn resolve_link(&self, id: &LayerId, link: LinkId) -> Result<LayerId> {
        let links = self.home().open_dir(Path::new(LINK_DIR))?;
        let root = self.home().open_dir(Path::new(""))?;
        self.resolve_link_in(id, link, &*links, &*root, true)
    }

    fn resolve_link_in(
        &self,
        id: &LayerId,
        link: LinkId,
        links: &dyn Dir,
        root: &dyn Dir,
        with_diff: bool,
    ) -> Result<LayerId> {
        let path = relative_link_path(link);
        let target = match links.readlink(OsStr::new(link.as_str())) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Self::corrupt(
                    id,
                    format!("its lower layer link {} is missing", path.display()),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let layer = parse_link_target(&target).map_err(|_| {
            Self::corrupt(
                id,
                format!(
                    "link {} points outside the home's layers: {}",
                    path.display(),
                    target.display()
                ),
            )
        })?;
        let name = OsStr::new(layer.as_str());
        let found = if with_diff {
            root.open_dir(name)
                .and_then(|dir| dir.metadata(OsStr::new(DIFF_DIR)))
                .map(|m| m.is_dir())
        } else {
            root.metadata(name).map(|m| m.is_dir())
        };
        // Missing, a symlink, or not a directory: all "no diff".
        let found = match found {
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::NotFound | ErrorKind::SymlinkLoop | ErrorKind::NotADirectory
                ) =>
            {
                false
            }
            other => other?,
        };
        if !found {
            return Err(Self::corrupt(
                id,
                format!(
                    "link {} names layer {:?}, which has no diff",
                    path.display(),
                    layer.as_str()
                ),
            ));
        }
        Ok(layer)
    }

    /// Writes a file of the home whole or not at all (temporary + rename).
    fn write_atomic(&self, path: &Path, file_mode: u32, data: &[u8]) -> Result<()> {
        let name = path
            .file_name()
            .unwrap_or(OsStr::new("file"))
            .to_string_lossy()
            .into_owned();
        let tmp = path.with_file_name(format!("{STAGING_PREFIX}{name}-{}", random_suffix()));
        self.home().write(&tmp, file_mode, data)?;
        if let Err(e) = self.home().rename(&tmp, path) {
            let _ = self.home().remove_file(&tmp);
            return Err(e.into());
        }
        Ok(())
    }

    fn create_layer(&self, id: &str, parent: Option<&str>, opts: &CreateOpts, rw: bool) -> Result<()> {
        let id = Self::layer_id(id)?;
        let size = opts.size()?;
        if !rw && size.is_some() {
            return Err(DriverError::BadOption(
                "--storage-opt size is only supported for ReadWrite Layers".into(),
            ));
        }
        if rw && size.is_some() && self.backend.capabilities().quota.is_err() {
            return Err(DriverError::Unsupported(unsupported_layer_quota(
                self.backend.capabilities(),
            )));
        }
        let quota = if rw {
            size.or(self.options.default_size).filter(|s| *s > 0)
        } else {
            None
        };
        let parent = parent.filter(|p| !p.is_empty()).map(Self::layer_id).transpose()?;
        let _lock = self.locks.lock(id.as_str());
        if self.home().exists(Path::new(id.as_str()))? {
            return Err(DriverError::AlreadyExists(id.as_str().into()));
        }
        let idmap = self.plan_id_map(&id, parent.as_ref(), opts)?;
        // With an index, the new layer is entered before it is built, so
        // a concurrent remove of its parent sees it and refuses.
        if let Some(index) = &self.index {
            let mut index = index.lock();
            if let Some(p) = parent.as_ref().filter(|p| !index.contains(p)) {
                return Err(DriverError::NotFound(p.as_str().into()));
            }
            index.insert(id.clone(), parent.clone());
        }
        let created = self.build_layer(&id, parent.as_ref(), quota, idmap.as_ref());
        if let (Err(_), Some(index)) = (&created, &self.index) {
            index.lock().remove(&id);
        }
        created
    }

    fn build_layer(
        &self,
        id: &LayerId,
        parent: Option<&LayerId>,
        quota: Option<u64>,
        idmap: Option<&crate::idmapped::LayerIdMap>,
    ) -> Result<()> {
        let lower = match parent {
            Some(p) => {
                self.require(p)?;
                let link = self.read_link(p)?;
                let parent_lower = self.read_lower(p)?;
                Some(
                    Lower::child_of(link, parent_lower.as_ref(), self.depth).map_err(|source| DriverError::Layout {
                        id: id.as_str().into(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        // Build the layer under a scratch name, then rename it into place:
        // it exists whole or not at all.
        let staging = PathBuf::from(format!("{STAGING_PREFIX}create-{}", random_suffix()));
        let link = LinkId::generate();
        let link_path = relative_link_path(link);
        let built = (|| -> Result<()> {
            let home = self.home();
            home.mkdir(&staging, mode::LAYER_DIR)?;
            // On the layer dir, before diff and work exist, so both inherit
            // the project: overlayfs copies up through work, and XFS
            // refuses (EXDEV) renames between projects.
            if let Some(bytes) = quota {
                self.backend.set_quota(id.as_str(), &staging, bytes)?;
            }
            home.mkdir(&staging.join(DIFF_DIR), mode::DIFF_DIR)?;
            home.write(&staging.join(LINK_FILE), mode::LINK_FILE, link.as_bytes())?;
            if let Some(lower) = &lower {
                home.mkdir(&staging.join(WORK_DIR), mode::WORK_DIR)?;
                home.write(&staging.join(LOWER_FILE), mode::LOWER_FILE, lower.format().as_bytes())?;
            }
            self.remap_new_layer(&staging)?;
            if let Some(plan) = idmap {
                self.build_id_map(id, &staging, plan, lower.as_ref())?;
            }
            // Docker rewrites it for every child; once is enough (a stat
            // instead of a create, a write and a rename).
            if let Some(p) = parent
                && !home.exists(&relative_committed_file(p))?
            {
                self.write_atomic(&relative_committed_file(p), mode::COMMITTED_FILE, b"")?;
            }
            home.symlink(&link_target(id), &link_path)?;
            home.rename(&staging, Path::new(id.as_str()))?;
            Ok(())
        })();
        if let Err(e) = built {
            let _ = self.home().remove_all(&staging);
            if !self.home().exists(Path::new(id.as_str())).unwrap_or(true) {
                let _ = self.home().remove_file(&link_path);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Counts a mount an earlier process left (the `overlay2 mount`
    /// command exits with its layer mounted), once per layer, as Docker's
    /// `RefCounter` does with its mount checker.
    fn adopt(&self, state: &mut crate::locks::LayerState, merged: &Path) {
        if !state.checked {
            state.checked = true;
            if state.mounts == 0 && self.backend.is_mounted(merged) {
                state.mounts = 1;
            }
        }
    }

    /// Is `parent` the layer directly below `id` (Docker's `isParent`)?
    fn is_parent(&self, id: &LayerId, parent: Option<&LayerId>) -> bool {
        let Ok(lower) = self.read_lower(id) else { return false };
        match (lower, parent) {
            (None, None) => true,
            (Some(lower), Some(p)) => self.read_link(p).is_ok_and(|l| l == lower.parent()),
            _ => false,
        }
    }

    fn native(&self, id: &LayerId, parent: Option<&LayerId>) -> bool {
        self.backend.capabilities().native_diff && self.is_parent(id, parent)
    }

    pub(crate) fn diff_tree(&self, id: &LayerId) -> Result<Arc<dyn Fs>> {
        self.backend.subtree(&relative_diff_dir(id))
    }

    fn naive(&self) -> NaiveDiff<Trees<'_, B>> {
        NaiveDiff::new(Trees(self))
            .with_id_maps(self.id_maps.clone())
            .with_ownable(self.backend.ownable_ids(), self.options.ignore_chown_errors)
    }

    fn parse_pair(id: &str, parent: Option<&str>) -> Result<(LayerId, Option<LayerId>)> {
        Ok((
            Self::layer_id(id)?,
            parent.filter(|p| !p.is_empty()).map(Self::layer_id).transpose()?,
        ))
    }

    fn diff_err(id: &LayerId) -> impl FnOnce(naive_diff::DiffError) -> DriverError + '_ {
        move |source| DriverError::Diff {
            id: id.as_str().into(),
            source: Box::new(source),
        }
    }

    /// Layers in the home (directories that are not the driver's own).
    pub fn layers(&self) -> Result<Vec<LayerId>> {
        let mut out = Vec::new();
        for e in self.home().read_dir(Path::new(""))? {
            let Some(name) = e.name.to_str() else { continue };
            if e.file_type != overlay_fs::FileType::Directory || name == LINK_DIR || name.starts_with(STAGING_PREFIX) {
                continue;
            }
            if let Ok(id) = LayerId::new(name) {
                out.push(id);
            }
        }
        out.sort();
        Ok(out)
    }

    /// The layer directly below `id`, if any: the first link of its
    /// `lower`, resolved (the rest of the chain is not read).
    ///
    /// # Errors
    ///
    /// A missing or corrupt layer.
    pub fn parent_of(&self, id: &str) -> Result<Option<LayerId>> {
        let id = Self::layer_id(id)?;
        self.require(&id)?;
        match self.read_lower(&id)? {
            None => Ok(None),
            Some(lower) => self.resolve_link(&id, lower.parent()).map(Some),
        }
    }

    /// Layers stacked directly on `id`, sorted.
    ///
    /// A child's `lower` starts with its parent's link id, so this reads
    /// `id`'s `link` and each layer's `lower` once and resolves no `l/`
    /// links: one small read per layer. Layers whose `lower` cannot be read
    /// or parsed are not counted (`check` reports them).
    ///
    /// # Errors
    ///
    /// An invalid or missing `id`, or the home cannot be listed.
    pub fn children(&self, id: &str) -> Result<Vec<LayerId>> {
        let id = Self::layer_id(id)?;
        self.require(&id)?;
        if let Some(index) = &self.index {
            return Ok(index.lock().children(&id));
        }
        // Without a `link` file (a damaged layer), the children are found
        // by resolving every layer's parent instead.
        let link = self.read_link(&id).ok();
        let mut out = Vec::new();
        for layer in self.layers()? {
            if layer == id {
                continue;
            }
            let child = match link {
                Some(link) => matches!(self.read_lower(&layer), Ok(Some(lower)) if lower.parent() == link),
                None => self.parent_of(layer.as_str()).ok().flatten().as_ref() == Some(&id),
            };
            if child {
                out.push(layer);
            }
        }
        Ok(out)
    }

    /// Is `id` a base layer (no `lower` file: `get` hands out its `diff`
    /// and mounts nothing)? Reads no file, unlike [`parent_of`](Self::parent_of).
    ///
    /// # Errors
    ///
    /// An invalid or missing layer.
    pub fn is_base(&self, id: &str) -> Result<bool> {
        let id = Self::layer_id(id)?;
        self.require(&id)?;
        Ok(!self.home().exists(&relative_lower_file(&id))?)
    }

    /// Changes by the naive diff of the two mounted trees, whatever the
    /// layers: what [`GraphDriver::changes`] must answer (it computes the
    /// same list from the upper dir where it can), for tests and tools.
    ///
    /// # Errors
    ///
    /// A missing layer, or a tree cannot be mounted or read.
    pub fn naive_changes(&self, id: &str, parent: Option<&str>) -> Result<Vec<Change>> {
        let (id, parent) = Self::parse_pair(id, parent)?;
        self.require(&id)?;
        self.naive()
            .changes(id.as_str(), parent.as_ref().map(LayerId::as_str))
            .map_err(Self::diff_err(&id))
    }

    /// Is the layer mounted by this driver right now? A mount an earlier
    /// process left is counted first, as [`get`](GraphDriver::get) and
    /// [`put`](GraphDriver::put) count it: one `put` then unmounts it.
    pub fn is_mounted(&self, id: &str) -> bool {
        Self::layer_id(id).is_ok_and(|id| {
            let mut state = self.locks.lock(id.as_str());
            self.adopt(&mut state, &relative_merged_dir(&id));
            state.mounts > 0
        })
    }

    fn remove_layer(&self, id: &LayerId, state: &mut crate::locks::LayerState) -> Result<()> {
        let merged = relative_merged_dir(id);
        if state.mounts > 0 || self.backend.is_mounted(&merged) {
            self.backend.unmount(&merged)?;
            state.mounts = 0;
        }
        state.checked = false;
        let link = self.read_link(id).ok();
        // Metadata first: the layer vanishes in one rename, then its files go.
        let grave = PathBuf::from(format!("{STAGING_PREFIX}remove-{}", random_suffix()));
        self.home().rename(Path::new(id.as_str()), &grave)?;
        if let Some(link) = link {
            let path = relative_link_path(link);
            // Only our own link: another layer's is not ours to remove.
            if self.home().readlink(&path).is_ok_and(|t| t == link_target(id)) {
                match self.home().remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        self.home().remove_all(&grave)?;
        Ok(())
    }
}

/// The driver as the naive diff sees it: `get` mounts, `put` unmounts.
struct Trees<'a, B>(&'a Overlay2<B>);

impl<B: Backend> LayerTrees for Trees<'_, B> {
    fn get(&self, id: &str) -> std::result::Result<Arc<dyn Fs>, BoxError> {
        self.0.get(id, None)?;
        match self.0.tree(id) {
            Ok(t) => Ok(t),
            Err(e) => {
                let _ = self.0.put(id);
                Err(e.into())
            }
        }
    }

    fn put(&self, id: &str) -> std::result::Result<(), BoxError> {
        Ok(self.0.put(id)?)
    }
}

impl<B: Backend> GraphDriver for Overlay2<B> {
    fn name(&self) -> &'static str {
        "overlay2"
    }

    fn create(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        self.create_layer(id, parent, opts, false)
    }

    fn create_read_write(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        self.create_layer(id, parent, opts, true)
    }

    fn remove(&self, id: &str) -> Result<()> {
        if id.is_empty() {
            return Err(DriverError::EmptyId);
        }
        let id = Self::layer_id(id)?;
        let mut state = self.locks.lock(id.as_str());
        if !self.home().exists(Path::new(id.as_str()))? {
            return Ok(());
        }
        // With an index: refuse a parent, and forget the layer first, so
        // no create can stack on it meanwhile; put it back if removal fails.
        let forgotten = match &self.index {
            Some(index) => {
                let mut index = index.lock();
                let children = index.children(&id).len();
                if children > 0 {
                    return Err(DriverError::HasChildren {
                        id: id.as_str().into(),
                        children,
                    });
                }
                index.remove(&id)
            }
            None => None,
        };
        let removed = self.remove_layer(&id, &mut state);
        if let (Err(_), Some(index), Some(parent)) = (&removed, &self.index, forgotten)
            && self.home().exists(Path::new(id.as_str())).unwrap_or(true)
        {
            index.lock().insert(id.clone(), parent);
        }
        removed
    }

    fn get(&self, id: &str, mount_label: Option<&str>) -> Result<PathBuf> {
        let id = Self::layer_id(id)?;
        let mut state = self.locks.lock(id.as_str());
        self.require(&id)?;
        let home_path = self.backend.home_path().to_path_buf();
        let Some(lower) = self.read_lower(&id)? else {
            return Ok(home_path.join(id.as_str()).join(DIFF_DIR));
        };
        let merged = relative_merged_dir(&id);
        self.adopt(&mut state, &merged);
        if state.mounts > 0 {
            state.mounts += 1;
            return Ok(home_path.join(&merged));
        }
        let layers = self.resolve_lower(&id, &lower, false)?;
        let links: Vec<PathBuf> = lower.iter().map(|l| relative_link_path(*l)).collect();
        let committed = self.home().exists(&relative_committed_file(&id))?;
        let diff = relative_diff_dir(&id);
        let mut req = if committed {
            MountRequest {
                lowers: std::iter::once(diff).chain(links).collect(),
                upper: None,
                target: merged.clone(),
                label: mount_label.map(str::to_owned),
                id_map: None,
            }
        } else {
            MountRequest {
                lowers: links,
                upper: Some((diff, relative_work_dir(&id))),
                target: merged.clone(),
                label: mount_label.map(str::to_owned),
                id_map: None,
            }
        };
        self.id_map_mount(&id, &mut req, &layers)?;
        match self.home().mkdir(&merged, mode::MERGED_DIR) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        self.remap_dir(&merged)?;
        if let Err(e) = self.backend.mount(&req) {
            let _ = self.home().remove_dir(&merged);
            // A damaged home is named as such; else the mount's own error.
            return match self.resolve_lower(&id, &lower, true) {
                Err(corrupt @ DriverError::Corrupt { .. }) => Err(corrupt),
                _ => Err(e),
            };
        }
        if !committed && let Err(e) = self.remap_after_mount(&relative_layer_dir(&id)) {
            let _ = self.backend.unmount(&merged);
            return Err(e);
        }
        state.mounts = 1;
        Ok(home_path.join(&merged))
    }

    fn put(&self, id: &str) -> Result<()> {
        let id = Self::layer_id(id)?;
        let mut state = self.locks.lock(id.as_str());
        // A base layer was never mounted. (Only the file's presence: a
        // layer whose `lower` went bad while mounted still unmounts.)
        if !self.home().exists(&relative_lower_file(&id))? {
            return Ok(());
        }
        let merged = relative_merged_dir(&id);
        self.adopt(&mut state, &merged);
        if state.mounts > 1 {
            state.mounts -= 1;
            return Ok(());
        }
        state.mounts = 0;
        self.backend.unmount(&merged)
    }

    fn exists(&self, id: &str) -> bool {
        Self::layer_id(id).is_ok_and(|id| self.home().metadata(Path::new(id.as_str())).is_ok_and(|m| m.is_dir()))
    }

    fn status(&self) -> Vec<(String, String)> {
        let caps = self.backend.capabilities();
        vec![
            ("Backing Filesystem".into(), caps.backing_fs.clone()),
            ("Supports d_type".into(), caps.d_type.to_string()),
            ("Native Overlay Diff".into(), caps.native_diff.to_string()),
            ("userxattr".into(), caps.userxattr().to_string()),
            ("Id-mapped layers".into(), caps.id_map.to_string()),
        ]
    }

    fn metadata(&self, id: &str) -> Result<BTreeMap<String, String>> {
        let id = Self::layer_id(id)?;
        self.require(&id)?;
        let dir = self.backend.home_path().join(id.as_str());
        let s = |p: PathBuf| p.display().to_string();
        let mut out = BTreeMap::from([
            ("WorkDir".to_string(), s(dir.join(WORK_DIR))),
            ("MergedDir".to_string(), s(dir.join(MERGED_DIR))),
            ("UpperDir".to_string(), s(dir.join(DIFF_DIR))),
        ]);
        if let Some(lower) = self.read_lower(&id)? {
            let dirs: Vec<String> = self
                .lower_layers(&id, &lower)?
                .iter()
                .map(|l| s(self.backend.home_path().join(l.as_str()).join(DIFF_DIR)))
                .collect();
            out.insert("LowerDir".into(), dirs.join(":"));
        }
        Ok(out)
    }

    fn cleanup(&self) -> Result<()> {
        for id in self.locks.mounted() {
            let mut state = self.locks.lock(&id);
            if state.mounts > 0 {
                if let Ok(id) = LayerId::new(id) {
                    self.backend.unmount(&relative_merged_dir(&id))?;
                }
                state.mounts = 0;
            }
        }
        // Mounts an earlier process left behind.
        for id in self.layers()? {
            let merged = relative_merged_dir(&id);
            if self.backend.is_mounted(&merged) {
                self.backend.unmount(&merged)?;
            }
        }
        Ok(())
    }

    fn diff(&self, id: &str, parent: Option<&str>, out: &mut dyn Write) -> Result<()> {
        let (id, parent) = Self::parse_pair(id, parent)?;
        self.require(&id)?;
        if !self.native(&id, parent.as_ref()) {
            self.naive()
                .diff(id.as_str(), parent.as_ref().map(LayerId::as_str), out)
                .map_err(Self::diff_err(&id))?;
            return Ok(());
        }
        let tree = self.diff_tree(&id)?;
        let opts = ExportOptions {
            id_maps: self.archive_id_maps(&id)?,
            ..Default::default()
        };
        overlay_archive::export(&*tree, &opts, out).map_err(|source| DriverError::Archive {
            id: id.as_str().into(),
            source: Box::new(source),
        })?;
        Ok(())
    }

    /// Docker v20.10's answer (its overlay2 asks the naive diff, always):
    /// here computed from the upper dir where the layer sits directly on
    /// `parent` and native diff is safe, with the same list the naive
    /// diff of the two mounted trees gives (tested entry for entry), and
    /// by that naive diff otherwise.
    fn changes(&self, id: &str, parent: Option<&str>) -> Result<Vec<Change>> {
        let (id, parent) = Self::parse_pair(id, parent)?;
        self.require(&id)?;
        if !self.native(&id, parent.as_ref()) {
            return self
                .naive()
                .changes(id.as_str(), parent.as_ref().map(LayerId::as_str))
                .map_err(Self::diff_err(&id));
        }
        let lowers = match self.read_lower(&id)? {
            Some(lower) => self
                .lower_layers(&id, &lower)?
                .iter()
                .map(|l| self.diff_tree(l))
                .collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        native::changes(&*self.diff_tree(&id)?, &lowers).map_err(Self::diff_err(&id))
    }

    fn apply_diff(&self, id: &str, parent: Option<&str>, diff: &mut dyn Read) -> Result<u64> {
        let (id, parent) = Self::parse_pair(id, parent)?;
        self.require(&id)?;
        if !self.is_parent(&id, parent.as_ref()) {
            return self
                .naive()
                .apply_diff(id.as_str(), parent.as_ref().map(LayerId::as_str), diff)
                .map_err(Self::diff_err(&id));
        }
        let _lock = self.locks.lock(id.as_str());
        // Unpack beside the empty diff dir, then swap it in: a crash leaves
        // the layer as it was, plus scratch for `repair`.
        let staging = relative_layer_dir(&id).join(format!("{STAGING_PREFIX}apply-{}", random_suffix()));
        self.home().mkdir(&staging, mode::DIFF_DIR)?;
        let applied = (|| -> Result<u64> {
            let tree = self.home().subtree(&staging)?;
            let opts = ImportOptions {
                whiteouts: ImportWhiteouts::Overlay(self.backend.capabilities().xattrs),
                id_maps: self.archive_id_maps(&id)?,
                exclude: Vec::new(),
                ownable: self.backend.ownable_ids(),
                ignore_chown_errors: self.options.ignore_chown_errors,
                workers: self.apply_workers.load(std::sync::atomic::Ordering::Relaxed),
            };
            let stats = overlay_archive::import(&*tree, diff, &opts).map_err(|source| DriverError::Archive {
                id: id.as_str().into(),
                source: Box::new(source),
            })?;
            let diff_dir = relative_diff_dir(&id);
            let mode_of_diff = self.home().metadata(&diff_dir)?.mode;
            self.home().set_mode(&staging, mode_of_diff)?;
            self.remap_dir(&staging)?;
            self.home().rename(&staging, &diff_dir).map_err(|e| match e.kind() {
                ErrorKind::DirectoryNotEmpty | ErrorKind::AlreadyExists => Self::corrupt(
                    &id,
                    "apply_diff needs an empty layer: its diff already has content".into(),
                ),
                _ => e.into(),
            })?;
            Ok(stats.bytes)
        })();
        if applied.is_err() {
            let _ = self.home().remove_all(&staging);
        }
        applied
    }

    fn diff_size(&self, id: &str, parent: Option<&str>) -> Result<u64> {
        let (id, parent) = Self::parse_pair(id, parent)?;
        self.require(&id)?;
        if !self.native(&id, parent.as_ref()) {
            return self
                .naive()
                .diff_size(id.as_str(), parent.as_ref().map(LayerId::as_str))
                .map_err(Self::diff_err(&id));
        }
        native::tree_size(&*self.diff_tree(&id)?).map_err(Self::diff_err(&id))
    }

    fn tree(&self, id: &str) -> Result<Arc<dyn Fs>> {
        let id = Self::layer_id(id)?;
        let state = self.locks.lock(id.as_str());
        self.require(&id)?;
        if self.read_lower(&id)?.is_none() {
            return self.diff_tree(&id);
        }
        if state.mounts == 0 {
            return Err(DriverError::Path {
                path: self.backend.home_path().join(relative_merged_dir(&id)),
                reason: format!("layer {:?} is not mounted (get it first)", id.as_str()),
            });
        }
        self.backend.mounted(&relative_merged_dir(&id))
    }
}
