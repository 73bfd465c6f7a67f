//! [`Snapshotter`]: containerd's snapshot semantics over an overlay2 home.
//!
//! Every snapshot is a layer of the home (a random 64-hex layer id, parent
//! layer = parent snapshot's layer), so Docker's layout tools read it; the
//! database maps keys to layers and keeps what the layout cannot (kind,
//! labels, times). A layer is made before its record and removed after
//! it: a crash leaves at most a layer no record names, which
//! [`cleanup`](Snapshotter::cleanup) (and the next start) removes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use overlay_driver::{Backend, CreateOpts, GraphDriver, KernelBackend, Overlay2};
use overlay_layout::DepthLimit;
use parking_lot::RwLock;
use tracing::{debug, info, warn};

use crate::error::{Result, SnapshotError};
use crate::filter::{Fields, Filters};
use crate::meta::{DB_FILE, Kind, Record, Store, Time, Usage};
use crate::mounts::{Mount, MountOptions};
use crate::remap::{IdMapMounts, chowned_by_client, label_maps};

/// The longest key accepted, in bytes (containerd's own keys are a
/// namespace, a sequence number and a digest: well under this).
pub const MAX_KEY_LEN: usize = 4096;

/// The longest label, key and value together, as containerd limits them.
pub const MAX_LABEL_LEN: usize = 4096;

/// What Stat, Update and List answer about a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Its key.
    pub name: String,
    /// Its parent's key.
    pub parent: Option<String>,
    /// Its kind.
    pub kind: Kind,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Created.
    pub created: Time,
    /// Last changed.
    pub updated: Time,
}

impl Info {
    fn new(name: String, rec: Record) -> Self {
        Self {
            name,
            parent: rec.parent,
            kind: rec.kind,
            labels: rec.labels,
            created: rec.created,
            updated: rec.updated,
        }
    }
}

impl Fields for Info {
    fn field(&self, path: &[String]) -> Option<&str> {
        match path.first().map(String::as_str)? {
            "kind" => Some(self.kind.as_str()),
            "name" => Some(&self.name),
            "parent" => Some(self.parent.as_deref().unwrap_or("")),
            "labels" => self.labels.get(&path[1..].join(".")).map(String::as_str),
            _ => None,
        }
    }
}

/// A disagreement between the database and the home's layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// A layer no snapshot names (a crash between making a layer and
    /// recording it, or between forgetting and removing it).
    OrphanLayer(String),
    /// A snapshot whose layer is gone.
    MissingLayer {
        /// The snapshot.
        key: String,
        /// Its layer.
        layer: String,
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OrphanLayer(id) => write!(f, "layer {id:?} belongs to no snapshot"),
            Self::MissingLayer { key, layer } => write!(f, "snapshot {key:?} has lost its layer {layer:?}"),
        }
    }
}

/// containerd's snapshotter over an overlay2 home.
pub struct Snapshotter<B> {
    driver: Overlay2<B>,
    store: Store,
    options: MountOptions,
    /// How id-mapped snapshots are mounted (containerd's remap labels).
    id_map_mounts: IdMapMounts,
    /// Held shared while a layer exists without its record (Prepare,
    /// View) or the reverse (Remove); exclusively by Cleanup, so it never
    /// takes such a layer for an orphan.
    gc: RwLock<()>,
}

impl<B> std::fmt::Debug for Snapshotter<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshotter").finish_non_exhaustive()
    }
}

fn check_key<'k>(what: &str, key: &'k str) -> Result<&'k str> {
    if key.is_empty() {
        return Err(SnapshotError::InvalidArgument(format!("{what} is empty")));
    }
    if key.len() > MAX_KEY_LEN {
        let cut = key
            .char_indices()
            .take_while(|(i, _)| *i < 64)
            .map(|(_, c)| c)
            .collect::<String>();
        return Err(SnapshotError::InvalidArgument(format!(
            "{what} {cut:?}... is {} bytes long, more than {MAX_KEY_LEN}",
            key.len()
        )));
    }
    Ok(key)
}

/// Labels as containerd stores them: an empty value is no label.
fn check_labels(key: &str, labels: &mut BTreeMap<String, String>) -> Result<()> {
    labels.retain(|_, v| !v.is_empty());
    for (k, v) in labels.iter() {
        if k.is_empty() {
            return Err(SnapshotError::InvalidArgument(format!(
                "snapshot {key:?}: a label has an empty key"
            )));
        }
        if k.len() + v.len() > MAX_LABEL_LEN {
            return Err(SnapshotError::InvalidArgument(format!(
                "snapshot {key:?}: label {k:?} is longer than {MAX_LABEL_LEN} bytes"
            )));
        }
    }
    Ok(())
}

/// The deepest parent chain containerd's mount code can mount from
/// `home`: it passes the options in one page (4,095 bytes the kernel
/// reads), and past 3,584 bytes rewrites `lowerdir` relative to the
/// lowers' common directory (`home/l`, so 27 bytes a layer: 26 of link id
/// and a colon) while `workdir` and `upperdir` stay absolute. For a home
/// path of 52 bytes that is 141 layers below an active snapshot (a view
/// would fit 151); `None` for a home whose path leaves no room.
pub fn containerd_depth_limit(home: &Path, index_off: bool) -> Option<DepthLimit> {
    const PAGE_DATA: usize = 4095;
    const LINK_ENTRY: usize = 27;
    let home = home.as_os_str().len();
    // `ID/work` and `ID/diff` below the home, ID 64 bytes.
    let dir = home + 1 + 64 + 5;
    let fixed = if index_off { "index=off,".len() } else { 0 }
        + "workdir=".len()
        + dir
        + ",upperdir=".len()
        + dir
        + ",lowerdir=".len()
        - 1;
    let layers = PAGE_DATA.checked_sub(fixed)? / LINK_ENTRY;
    DepthLimit::new(layers.min(DepthLimit::NEW_MOUNT_API.get())).ok()
}

fn new_layer_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..64)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16usize)]))
        .collect()
}

impl Snapshotter<KernelBackend> {
    /// The snapshotter of the home `home` (made if missing), its database
    /// opened. A server then calls [`cleanup`](Self::cleanup) once, to
    /// remove what a crash left.
    ///
    /// # Errors
    ///
    /// The home cannot be used as a layer store, it holds layers but no
    /// snapshot database (a Docker home, say: refused rather than taken
    /// over), or the database is locked by another process (a running
    /// snapshotter).
    pub fn open(home: &Path) -> Result<Self> {
        let driver_err = |source| SnapshotError::Driver {
            key: String::new(),
            source,
        };
        let backend = KernelBackend::new(home).map_err(driver_err)?;
        let depth = containerd_depth_limit(home, backend.capabilities().index_off).ok_or_else(|| {
            SnapshotError::InvalidArgument(format!(
                "home {}: the path is too long for containerd to mount any layer from it",
                home.display()
            ))
        })?;
        let driver = Overlay2::new(backend, &[] as &[&str])
            .map_err(driver_err)?
            .with_depth_limit(depth);
        let db_path = home.join(DB_FILE);
        if !db_path.exists() {
            let layers = driver.layers().map_err(driver_err)?;
            if !layers.is_empty() {
                return Err(SnapshotError::FailedPrecondition(format!(
                    "{} holds {} layers but no snapshot database ({DB_FILE}): not a snapshotter home; \
                     refusing to take it over (give an empty directory)",
                    home.display(),
                    layers.len()
                )));
            }
        }
        Ok(Self::new(driver, Store::open(&db_path)?))
    }
}

impl<B: Backend> Snapshotter<B> {
    /// A snapshotter keeping its layers in `driver`'s home and its
    /// metadata in `store`.
    pub fn new(driver: Overlay2<B>, store: Store) -> Self {
        let caps = driver.backend().capabilities();
        let options = MountOptions {
            index_off: caps.index_off,
            userxattr: caps.userxattr(),
        };
        Self {
            driver,
            store,
            options,
            id_map_mounts: IdMapMounts::default(),
            gc: RwLock::new(()),
        }
    }

    /// Describes id-mapped snapshots' mounts in `form` (default:
    /// [`IdMapMounts::Bind`], which any containerd can mount).
    #[must_use]
    pub fn with_id_map_mounts(mut self, form: IdMapMounts) -> Self {
        self.id_map_mounts = form;
        self
    }

    /// The layer store underneath.
    pub fn driver(&self) -> &Overlay2<B> {
        &self.driver
    }

    fn driver_err(key: &str) -> impl FnOnce(overlay_driver::DriverError) -> SnapshotError + '_ {
        move |source| SnapshotError::Driver {
            key: key.to_owned(),
            source,
        }
    }

    /// Makes an active (writable) snapshot `key` on the committed snapshot
    /// `parent` ("" for none) and returns the mounts that show it.
    ///
    /// # Errors
    ///
    /// InvalidArgument (bad key or labels, parent not committed),
    /// AlreadyExists, NotFound (parent), or the store fails.
    pub fn prepare(&self, key: &str, parent: &str, labels: BTreeMap<String, String>) -> Result<Vec<Mount>> {
        self.create(Kind::Active, key, parent, labels)
    }

    /// Makes a read-only snapshot `key` of the committed snapshot `parent`.
    ///
    /// # Errors
    ///
    /// As [`prepare`](Self::prepare).
    pub fn view(&self, key: &str, parent: &str, labels: BTreeMap<String, String>) -> Result<Vec<Mount>> {
        self.create(Kind::View, key, parent, labels)
    }

    fn parent_layer(rec: Option<Record>, key: &str, parent: &str) -> Result<Record> {
        let rec = rec.ok_or_else(|| SnapshotError::NotFound(parent.to_owned()))?;
        if rec.kind != Kind::Committed {
            return Err(SnapshotError::InvalidArgument(format!(
                "snapshot {key:?}: parent {parent:?} is not a committed snapshot"
            )));
        }
        Ok(rec)
    }

    fn create(&self, kind: Kind, key: &str, parent: &str, labels: BTreeMap<String, String>) -> Result<Vec<Mount>> {
        let mut labels = labels;
        check_key("snapshot key", key)?;
        check_labels(key, &mut labels)?;
        let mut opts = CreateOpts {
            id_maps: label_maps(key, &labels)?,
            ..CreateOpts::default()
        };
        let parent = (!parent.is_empty()).then_some(parent);
        let _gc = self.gc.read();
        // Refuse what will be refused before making a layer for it.
        if self.store.lookup(key)?.is_some() {
            return Err(SnapshotError::AlreadyExists(key.to_owned()));
        }
        let parent_layer = parent
            .map(|p| Self::parent_layer(self.store.lookup(p)?, key, p).map(|r| r.layer))
            .transpose()?;
        let chowned =
            chowned_by_client(&self.driver, parent_layer.as_deref(), &opts.id_maps).map_err(Self::driver_err(key))?;
        if chowned.is_some() {
            info!(
                key,
                parent, "parent already chowned by containerd's client: no id-mapped lowers"
            );
            opts.id_maps = overlay_archive::IdMaps::identity();
        }
        let layer = new_layer_id();
        let made = match kind {
            Kind::Active => self.driver.create_read_write(&layer, parent_layer.as_deref(), &opts),
            _ => self.driver.create(&layer, parent_layer.as_deref(), &opts),
        };
        made.map_err(Self::driver_err(key))?;
        let now = Time::now();
        let mut rec = Record {
            layer: layer.clone(),
            kind,
            parent: parent.map(str::to_owned),
            labels,
            created: now,
            updated: now,
            usage: None,
            mounts: Vec::new(),
        };
        let recorded = (|| {
            if let Some((uid, gid)) = chowned {
                self.driver
                    .set_upper_owner(&layer, uid, gid)
                    .map_err(Self::driver_err(key))?;
            }
            rec.mounts = self.mounts_of(key, &rec)?;
            let mut txn = self.store.write()?;
            if txn.get(key)?.is_some() {
                return Err(SnapshotError::AlreadyExists(key.to_owned()));
            }
            if let Some(p) = parent {
                Self::parent_layer(txn.get(p)?, key, p)?;
            }
            txn.put(key, &rec)?;
            txn.commit()
        })();
        if let Err(e) = recorded {
            if let Err(rm) = self.driver.remove(&layer) {
                warn!(layer, error = %rm, "could not remove the layer of a refused snapshot; cleanup will");
            }
            return Err(e);
        }
        debug!(key, layer, ?kind, parent, "snapshot created");
        Ok(rec.mounts)
    }

    /// The mounts that show the active snapshot or view `key`.
    ///
    /// # Errors
    ///
    /// NotFound, FailedPrecondition (a committed snapshot has no mounts),
    /// or its layer is damaged.
    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        check_key("snapshot key", key)?;
        let rec = self.store.get(key)?;
        // A bind of the layer's merged dir (an id-mapped snapshot) is
        // worked out again: that mounts it if it is not (after a reboot).
        let merged = rec
            .mounts
            .first()
            .is_some_and(|m| m.kind == "bind" && m.source.ends_with("/merged"));
        if rec.kind == Kind::Committed || rec.mounts.is_empty() || merged {
            return self.mounts_of(key, &rec);
        }
        Ok(rec.mounts)
    }

    fn mounts_of(&self, key: &str, rec: &Record) -> Result<Vec<Mount>> {
        if rec.kind == Kind::Committed {
            return Err(SnapshotError::FailedPrecondition(format!(
                "snapshot {key:?} is committed: only active snapshots and views have mounts"
            )));
        }
        let dirs = self.driver.dirs(&rec.layer).map_err(Self::driver_err(key))?;
        let view = rec.kind == Kind::View;
        let Some(maps) = self.driver.layer_id_maps(&rec.layer).map_err(Self::driver_err(key))? else {
            return Ok(self.options.mounts(view, &dirs));
        };
        if self.id_map_mounts == IdMapMounts::Options {
            if let Some(mounts) = self.options.id_mapped_mounts(view, &dirs, &maps) {
                return Ok(mounts);
            }
            debug!(
                key,
                layer = rec.layer,
                "uidmap= options cannot show this layer: bind form"
            );
        }
        // The driver mounts the id-mapped stack (once: a restarted server
        // adopts the mount its predecessor made); containerd binds it.
        let shown = if self.driver.is_mounted(&rec.layer) {
            dirs.diff.with_file_name(overlay_layout::MERGED_DIR)
        } else {
            self.driver.get(&rec.layer, None).map_err(Self::driver_err(key))?
        };
        Ok(vec![crate::mounts::bind(&shown, if view { "ro" } else { "rw" })])
    }

    /// Unmounts what [`mounts_of`](Self::mounts_of) mounted for an
    /// id-mapped snapshot: one reference (an adopted mount included), or
    /// one each when Mounts calls raced to mount it. Bounded: `put` leaves
    /// a layer whose `lower` file is gone as it is.
    fn unmount_id_mapped(&self, key: &str, layer: &str) -> Result<()> {
        for _ in 0..8 {
            if !self.driver.is_mounted(layer) {
                return Ok(());
            }
            self.driver.put(layer).map_err(Self::driver_err(key))?;
        }
        Ok(())
    }

    /// Turns the active snapshot `key` into the committed snapshot `name`
    /// (the same layer; the key is gone afterwards).
    ///
    /// # Errors
    ///
    /// NotFound (key), AlreadyExists (name), FailedPrecondition (`key` is
    /// not active), InvalidArgument (bad names or labels).
    pub fn commit(&self, name: &str, key: &str, mut labels: BTreeMap<String, String>) -> Result<()> {
        check_key("committed snapshot name", name)?;
        check_key("snapshot key", key)?;
        check_labels(name, &mut labels)?;
        // containerd's order: the name taken, the key missing, not active.
        if self.store.lookup(name)?.is_some() {
            return Err(SnapshotError::AlreadyExists(name.to_owned()));
        }
        let rec = self.store.get(key)?;
        if rec.kind != Kind::Active {
            return Err(SnapshotError::FailedPrecondition(format!(
                "snapshot {key:?} is not active (it is {}): only active snapshots can be committed",
                rec.kind.as_str()
            )));
        }
        self.check_commit_maps(name, key, &rec.layer, &labels)?;
        // Measured outside the transaction: the walk may take a while.
        let measured = self.driver.usage(&rec.layer).map_err(Self::driver_err(key))?;
        let mut txn = self.store.write()?;
        if txn.get(name)?.is_some() {
            return Err(SnapshotError::AlreadyExists(name.to_owned()));
        }
        let current = txn.require(key)?;
        if current != rec {
            return Err(SnapshotError::FailedPrecondition(format!(
                "snapshot {key:?} changed while it was being committed"
            )));
        }
        txn.delete(key, &rec)?;
        let now = Time::now();
        let committed = Record {
            kind: Kind::Committed,
            labels,
            created: now,
            updated: now,
            usage: Some(Usage {
                size: measured.bytes,
                inodes: measured.inodes,
            }),
            mounts: Vec::new(),
            ..rec
        };
        txn.put(name, &committed)?;
        txn.commit()?;
        // Committed: nothing mounts it as a container's root any more.
        if let Err(e) = self.unmount_id_mapped(name, &committed.layer) {
            warn!(name, layer = committed.layer, error = %e, "committed, but its id-mapped mount stays until Remove");
        }
        debug!(key, name, layer = committed.layer, "snapshot committed");
        Ok(())
    }

    /// A committed snapshot keeps the maps its active snapshot was made
    /// with: its own files are stored with host ids, which relabeling
    /// cannot change. Remap labels on Commit must name those maps (or be
    /// absent); snapshots on it get them (the driver's inheritance).
    fn check_commit_maps(&self, name: &str, key: &str, layer: &str, labels: &BTreeMap<String, String>) -> Result<()> {
        let asked = label_maps(name, labels)?;
        if asked.is_identity() {
            return Ok(());
        }
        let stored = self.driver.layer_id_maps(layer).map_err(Self::driver_err(key))?;
        if stored.as_ref().map(|m| &m.maps) == Some(&asked) {
            return Ok(());
        }
        Err(SnapshotError::InvalidArgument(format!(
            "snapshot {name:?}: its remap labels differ from the maps {key:?} was prepared with ({}): \
             the files are stored with those ids",
            stored.map_or_else(|| "none".to_owned(), |m| m.maps.to_string())
        )))
    }

    /// Removes snapshot `key` and its layer.
    ///
    /// # Errors
    ///
    /// NotFound, FailedPrecondition (it has children).
    pub fn remove(&self, key: &str) -> Result<()> {
        check_key("snapshot key", key)?;
        let _gc = self.gc.read();
        let mut txn = self.store.write()?;
        let rec = txn.require(key)?;
        if txn.has_children(key)? {
            return Err(SnapshotError::FailedPrecondition(format!(
                "cannot remove snapshot {key:?}: other snapshots are based on it"
            )));
        }
        txn.delete(key, &rec)?;
        txn.commit()?;
        // Forgotten first, removed second: a crash in between leaves an
        // orphan layer for cleanup, never a record without its layer.
        if let Err(e) = self.driver.remove(&rec.layer) {
            warn!(key, layer = rec.layer, error = %e, "snapshot removed, its layer not yet; cleanup will");
        }
        debug!(key, layer = rec.layer, "snapshot removed");
        Ok(())
    }

    /// What is known of snapshot `key`.
    ///
    /// # Errors
    ///
    /// NotFound.
    pub fn stat(&self, key: &str) -> Result<Info> {
        check_key("snapshot key", key)?;
        Ok(Info::new(key.to_owned(), self.store.get(key)?))
    }

    /// Changes the labels of snapshot `info.name`, as containerd's field
    /// paths say: none (all mutable fields), `labels` (all labels), or
    /// `labels.KEY` (one label, removed when `info` lacks it).
    ///
    /// # Errors
    ///
    /// NotFound, InvalidArgument (a path naming an immutable field).
    pub fn update(&self, mut info: Info, paths: &[String]) -> Result<Info> {
        let key = check_key("snapshot key", &info.name)?.to_owned();
        let key = key.as_str();
        check_labels(key, &mut info.labels)?;
        let mut txn = self.store.write()?;
        let mut rec = txn.require(key)?;
        if paths.is_empty() {
            rec.labels = info.labels.clone();
        }
        for path in paths {
            if let Some(label) = path.strip_prefix("labels.") {
                match info.labels.get(label) {
                    Some(v) => rec.labels.insert(label.to_owned(), v.clone()),
                    None => rec.labels.remove(label),
                };
            } else if path == "labels" {
                rec.labels = info.labels.clone();
            } else {
                return Err(SnapshotError::InvalidArgument(format!(
                    "cannot update {path:?} field on snapshot {key:?}"
                )));
            }
        }
        rec.updated = Time::now();
        txn.put(key, &rec)?;
        txn.commit()?;
        Ok(Info::new(key.to_owned(), rec))
    }

    /// Every snapshot some filter matches, sorted by key.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub fn list(&self, filters: &Filters) -> Result<Vec<Info>> {
        Ok(self
            .store
            .all()?
            .into_iter()
            .map(|(k, r)| Info::new(k, r))
            .filter(|i| filters.matches(i))
            .collect())
    }

    /// Space snapshot `key`'s own files take: measured now for an active
    /// snapshot, at commit for a committed one, nothing for a view.
    ///
    /// # Errors
    ///
    /// NotFound, or the layer cannot be read.
    pub fn usage(&self, key: &str) -> Result<Usage> {
        check_key("snapshot key", key)?;
        let rec = self.store.get(key)?;
        match rec.kind {
            Kind::Active => {
                let u = self.driver.usage(&rec.layer).map_err(Self::driver_err(key))?;
                Ok(Usage {
                    size: u.bytes,
                    inodes: u.inodes,
                })
            }
            Kind::Committed => Ok(rec.usage.unwrap_or_default()),
            Kind::View => Ok(Usage::default()),
        }
    }

    /// Removes layers no snapshot names, and the scratch of layers whose
    /// making or removal was interrupted; returns what it removed.
    ///
    /// # Errors
    ///
    /// The home or the database cannot be read, or a removal fails.
    pub fn cleanup(&self) -> Result<Vec<String>> {
        let _gc = self.gc.write();
        // No Prepare, View or Remove runs now: scratch is abandoned.
        let mut removed: Vec<String> = self
            .driver
            .remove_scratch()
            .map_err(Self::driver_err(""))?
            .iter()
            .map(|p| {
                info!(what = %p, "removed what an interrupted operation left");
                p.to_string()
            })
            .collect();
        for m in self.mismatches()? {
            if let Mismatch::OrphanLayer(id) = m {
                self.driver.remove(&id).map_err(Self::driver_err(""))?;
                info!(layer = id, "removed a layer no snapshot names");
                removed.push(id);
            }
        }
        Ok(removed)
    }

    fn mismatches(&self) -> Result<Vec<Mismatch>> {
        let known = self.store.layers()?;
        let present: BTreeSet<String> = self
            .driver
            .layers()
            .map_err(Self::driver_err(""))?
            .into_iter()
            .map(|l| l.as_str().to_owned())
            .collect();
        let mut out: Vec<Mismatch> = present
            .iter()
            .filter(|l| !known.contains_key(*l))
            .map(|l| Mismatch::OrphanLayer(l.clone()))
            .collect();
        out.extend(
            known
                .into_iter()
                .filter(|(l, _)| !present.contains(l))
                .map(|(layer, key)| Mismatch::MissingLayer { key, layer }),
        );
        Ok(out)
    }

    /// Where the database and the layers disagree, without changing either.
    ///
    /// # Errors
    ///
    /// The home or the database cannot be read.
    pub fn check(&self) -> Result<Vec<Mismatch>> {
        let _gc = self.gc.write();
        self.mismatches()
    }

    /// Puts disagreements right: orphan layers are removed; a snapshot
    /// that lost its layer is forgotten, with every snapshot based on it
    /// (their layers stack on the lost one and cannot mount). Returns what
    /// was found.
    ///
    /// # Errors
    ///
    /// The home or the database cannot be changed.
    pub fn repair(&self) -> Result<Vec<Mismatch>> {
        let found = self.check()?;
        let _gc = self.gc.write();
        let lost: BTreeSet<&str> = found
            .iter()
            .filter_map(|m| match m {
                Mismatch::MissingLayer { key, .. } => Some(key.as_str()),
                Mismatch::OrphanLayer(_) => None,
            })
            .collect();
        if !lost.is_empty() {
            // Everything stacked on a lost snapshot, children first.
            let all = self.store.all()?;
            let mut doomed: Vec<(String, Record)> = Vec::new();
            let mut names: BTreeSet<String> = lost.iter().map(|k| (*k).to_owned()).collect();
            let mut grew = true;
            while grew {
                grew = false;
                for (k, r) in &all {
                    if !names.contains(k) && r.parent.as_ref().is_some_and(|p| names.contains(p)) {
                        names.insert(k.clone());
                        grew = true;
                    }
                }
            }
            for (k, r) in all {
                if names.contains(&k) {
                    doomed.push((k, r));
                }
            }
            let mut txn = self.store.write()?;
            for (k, r) in &doomed {
                txn.delete(k, r)?;
            }
            txn.commit()?;
            for (k, r) in &doomed {
                if !lost.contains(k.as_str()) {
                    self.driver.remove(&r.layer).map_err(Self::driver_err(k))?;
                }
                warn!(
                    key = k,
                    layer = r.layer,
                    "forgot a snapshot whose layer (or a parent's) is gone"
                );
            }
        }
        for m in &found {
            if let Mismatch::OrphanLayer(id) = m {
                self.driver.remove(id).map_err(Self::driver_err(""))?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// The limit matches what was measured with containerd 1.6.20's own
    /// mount code on this kernel (crates/overlay-snapshotter/testsuite:
    /// 141 lowers below an active snapshot mount from a home of 52 bytes,
    /// 142 fail with "mount options is too long").
    #[test]
    fn containerd_depth_limit_of_a_home() {
        let home = Path::new("/tmp/snapshot-suite-overlay2-rs-1234567890/home/abcd");
        assert_eq!(home.as_os_str().len(), 52);
        assert_eq!(containerd_depth_limit(home, true).map(DepthLimit::get), Some(141));
        // Without index=off there are 10 bytes more: not a whole layer.
        assert_eq!(containerd_depth_limit(home, false).map(DepthLimit::get), Some(141));
        let deep = Path::new("/var/lib/overlay2-rs/containerd");
        assert_eq!(containerd_depth_limit(deep, true).map(DepthLimit::get), Some(142));
        assert!(containerd_depth_limit(Path::new("/"), true).is_some_and(|d| d.get() >= 128));
        let long = PathBuf::from(format!("/{}", "d".repeat(2100)));
        assert_eq!(containerd_depth_limit(&long, true), None);
    }
}
