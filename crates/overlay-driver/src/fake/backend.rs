//! [`FakeBackend`]: a home in memory and overlay mounts modelled by
//! [`OverlayFs`]. No root, no mounts, no disk: the driver's own code runs
//! unchanged on top, so its tests (and an embedder's) run anywhere.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use overlay_fs::{ErrorKind, Fs, MemFs};
use parking_lot::Mutex;

use super::OverlayFs;
use super::idmapped::IdMappedFs;
use super::quota::QuotaFs;
use crate::backend::{Backend, Capabilities, IdMapSupport, MountRequest};
use crate::error::{DriverError, Result};

/// The home and the mounts of the fake backend.
pub struct FakeBackend {
    home: Arc<dyn Fs>,
    path: PathBuf,
    mounts: Mutex<HashMap<PathBuf, Arc<OverlayFs>>>,
    caps: Capabilities,
    /// Limits set on `diff` dirs, bytes, by inode (a limit set while a
    /// layer is built keeps applying after it is renamed into place, as a
    /// project id stays with its directory).
    quotas: Mutex<HashMap<u64, u64>>,
}

impl std::fmt::Debug for FakeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeBackend")
            .field("mounts", &self.mounts.lock().len())
            .finish()
    }
}

impl Default for FakeBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeBackend {
    /// An empty home in memory.
    pub fn new() -> Self {
        Self::with_home(MemFs::new())
    }

    /// A fake backend on an existing in-memory home (to reopen a home
    /// after a simulated crash, or to share one between drivers).
    pub fn with_home(home: MemFs) -> Self {
        Self::with_home_tree(Arc::new(home))
    }

    /// A fake backend on any tree as its home: a `MemFs`, or a wrapper
    /// that injects faults to simulate a crash at a chosen step.
    pub fn with_home_tree(home: Arc<dyn Fs>) -> Self {
        Self {
            home,
            path: PathBuf::from("/fake/overlay2"),
            mounts: Mutex::new(HashMap::new()),
            quotas: Mutex::new(HashMap::new()),
            caps: Capabilities {
                backing_fs: "memfs".into(),
                d_type: true,
                native_diff: true,
                naive_reason: None,
                quota: Err("the in-memory fake keeps no quotas".into()),
                index_off: true,
                id_map: IdMapSupport::Mounts,
                xattrs: overlay_archive::XattrNamespace::Trusted,
            },
        }
    }

    /// Keeps project quotas: `create_read_write` with a size works, and
    /// writes through the layer's mount fail with `NoSpace` (XFS's ENOSPC)
    /// past the limit.
    pub fn with_quotas(mut self) -> Self {
        self.caps.quota = Ok(());
        self
    }

    /// Runs the driver as if native diff were unsafe (the naive diff for
    /// everything), as on a kernel with `redirect_dir` or metacopy.
    pub fn with_naive_diff(mut self) -> Self {
        self.caps.native_diff = false;
        self.caps.naive_reason = Some("forced by the test".into());
        self
    }

    /// Runs the driver as the kernel backend runs rootless: markers in
    /// `user.overlay.*`, mounts with `userxattr`
    /// ([`Capabilities::xattrs`]).
    pub fn with_user_xattrs(mut self) -> Self {
        self.caps.xattrs = overlay_archive::XattrNamespace::User;
        self
    }

    /// Runs the driver as if the kernel could not id-map overlay lowers
    /// ([`IdMapSupport::Copy`]: layers with maps get chowned copies) or
    /// could not id-map at all ([`IdMapSupport::Unsupported`]).
    pub fn with_id_map_support(mut self, support: IdMapSupport) -> Self {
        self.caps.id_map = support;
        self
    }

    /// The home's directory of a lower given as `l/LINK` (a symlink the
    /// kernel would follow) or as a plain directory.
    fn resolve(&self, lower: &Path) -> Result<PathBuf> {
        let md = self.home.metadata(lower)?;
        if !md.is_symlink() {
            return Ok(lower.to_path_buf());
        }
        let target = self.home.readlink(lower)?;
        let mut out = PathBuf::new();
        for c in lower.parent().unwrap_or(Path::new("")).join(target).components() {
            match c {
                Component::Normal(n) => out.push(n),
                Component::ParentDir => {
                    out.pop();
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

impl Backend for FakeBackend {
    fn home(&self) -> &Arc<dyn Fs> {
        &self.home
    }

    fn home_path(&self) -> &Path {
        &self.path
    }

    fn mount(&self, req: &MountRequest) -> Result<Arc<dyn Fs>> {
        let mut mounts = self.mounts.lock();
        if mounts.contains_key(&req.target) {
            return Err(DriverError::Path {
                path: req.target.clone(),
                reason: "already mounted".into(),
            });
        }
        if !self.home.metadata(&req.target)?.is_dir() {
            return Err(overlay_fs::Error::new("mount", &req.target, ErrorKind::NotADirectory).into());
        }
        if req.label.is_some() {
            return Err(DriverError::Unsupported(
                "the in-memory fake has no SELinux labels".into(),
            ));
        }
        if req.id_map.is_some() && self.caps.id_map != IdMapSupport::Mounts {
            let id = req.target.parent().map(|p| p.display().to_string()).unwrap_or_default();
            return Err(crate::backend::cannot_mount_idmapped(&id, &self.caps));
        }
        let maps = req.id_map.as_ref().map(|m| Arc::new(m.maps.clone()));
        let mut lowers = Vec::with_capacity(req.lowers.len());
        for (i, l) in req.lowers.iter().enumerate() {
            let tree = self.home.subtree(&self.resolve(l)?)?;
            lowers.push(match (&maps, &req.id_map) {
                (Some(maps), Some(m)) if m.mapped.get(i) == Some(&true) => {
                    Arc::new(IdMappedFs::new(tree, maps.clone())) as Arc<dyn Fs>
                }
                _ => tree,
            });
        }
        let upper = match &req.upper {
            Some((upper, work)) => {
                self.home.metadata(work)?;
                Some(self.subtree(upper)?)
            }
            None => None,
        };
        let merged = Arc::new(OverlayFs::new(lowers, upper).with_xattr_namespace(self.caps.userxattr()));
        mounts.insert(req.target.clone(), merged.clone());
        Ok(merged)
    }

    fn mounted(&self, target: &Path) -> Result<Arc<dyn Fs>> {
        match self.mounts.lock().get(target) {
            Some(m) => Ok(m.clone()),
            None => Err(DriverError::Path {
                path: target.to_path_buf(),
                reason: "nothing is mounted here".into(),
            }),
        }
    }

    fn unmount(&self, target: &Path) -> Result<()> {
        self.mounts.lock().remove(target);
        match self.home.remove_dir(target) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn is_mounted(&self, target: &Path) -> bool {
        self.mounts.lock().contains_key(target)
    }

    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn set_quota(&self, _id: &str, dir: &Path, bytes: u64) -> Result<()> {
        if self.caps.quota.is_err() {
            return Err(DriverError::Unsupported(crate::backend::unsupported_quota(&self.caps)));
        }
        let ino = self.home.metadata(dir)?.ino;
        self.quotas.lock().insert(ino, bytes);
        Ok(())
    }

    fn subtree(&self, dir: &Path) -> Result<Arc<dyn Fs>> {
        let tree = self.home.subtree(dir)?;
        // The limit is set on the layer dir, which holds `diff`.
        let layer = dir.parent().unwrap_or(Path::new(""));
        let ino = self.home.metadata(layer)?.ino;
        Ok(match self.quotas.lock().get(&ino) {
            Some(limit) => Arc::new(QuotaFs::new(tree, *limit)),
            None => tree,
        })
    }
}
