//! Where the driver's home lives and how stacks get mounted: the kernel
//! (a directory on disk, overlayfs, XFS quotas) or the in-memory fake.
//!
//! The driver plans (which layers, which paths, which options); a backend
//! only carries plans out, so both backends run the same driver code.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use overlay_archive::{IdMaps, OwnableIds, XattrNamespace};
use overlay_fs::{Fs, HostFs};
use overlay_mount::{Attach, IdmapLowers, Method, Settings, Stack, Upper, UserNs};

use crate::error::{DriverError, Result};

/// An overlay mount to make, every path relative to the home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRequest {
    /// Lower directories, uppermost first (`l/LINK`, or a layer's `diff`
    /// for the read-only form).
    pub lowers: Vec<PathBuf>,
    /// Upper and work directory of a writable mount.
    pub upper: Option<(PathBuf, PathBuf)>,
    /// The mount point (`ID/merged`).
    pub target: PathBuf,
    /// SELinux mount label.
    pub label: Option<String>,
    /// Lowers to show through an id map (a layer made with
    /// [`CreateOpts::id_maps`](crate::CreateOpts::id_maps) where the
    /// backend id-maps mounts, [`IdMapSupport::Mounts`]).
    pub id_map: Option<LowerIdMap>,
}

/// The lowers of a [`MountRequest`] to see through an id map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowerIdMap {
    /// The container's uid and gid maps.
    pub maps: IdMaps,
    /// One flag per lower of the request: id-map it, or use it as it is
    /// (a layer already stored with host ids).
    pub mapped: Vec<bool>,
}

/// How layers made with id maps see the layers below them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdMapSupport {
    /// Each lower is an id-mapped mount: nothing is copied or chowned,
    /// and preparing a container costs the same for any image size.
    Mounts,
    /// The kernel cannot id-map lowers here (the reason): a layer made
    /// with id maps gets its own copy of the layers below, chowned
    /// through the map (Docker's userns-remap at unpack, containers/storage
    /// without id-mapped mounts). Costs time and space with the image.
    Copy(String),
    /// Neither works here (the reason): id maps are refused.
    Unsupported(String),
}

impl std::fmt::Display for IdMapSupport {
    /// The value of the "Id-mapped layers" status pair.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Mounts => f.write_str("id-mapped lowers"),
            Self::Copy(why) => write!(f, "chowned copies of the lowers ({why})"),
            Self::Unsupported(why) => write!(f, "not supported ({why})"),
        }
    }
}

/// What the home's filesystem and kernel can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Backing filesystem name, as Docker reports it.
    pub backing_fs: String,
    /// `readdir` reports file types.
    pub d_type: bool,
    /// Diffs may be read from the upper dir alone (else: naive diff).
    pub native_diff: bool,
    /// Why native diff is off, when it is.
    pub naive_reason: Option<String>,
    /// Project quotas work; else why not.
    pub quota: std::result::Result<(), String>,
    /// Mounts pass `index=off` (the kernel has the `index` feature, and
    /// Docker turns it off: layers are mounted on ever new stacks).
    pub index_off: bool,
    /// How layers with id maps see their lowers.
    pub id_map: IdMapSupport,
    /// Where overlayfs keeps its markers in the home: `trusted.overlay.*`,
    /// or, rootless (outside the initial user namespace, where `trusted.*`
    /// is out of reach), `user.overlay.*` with every mount taking
    /// `userxattr`. Opaque directories an apply makes are marked here.
    pub xattrs: XattrNamespace,
}

impl Capabilities {
    /// Do mounts of this home take `userxattr`?
    pub fn userxattr(&self) -> bool {
        self.xattrs == XattrNamespace::User
    }
}

/// The storage and mounting a driver runs on.
pub trait Backend: Send + Sync {
    /// The home tree.
    fn home(&self) -> &Arc<dyn Fs>;

    /// The home's path as callers see it: a host path for the kernel, a
    /// virtual one for the fake.
    fn home_path(&self) -> &Path;

    /// Mounts `req` and returns the merged tree.
    ///
    /// # Errors
    ///
    /// The mount is refused.
    fn mount(&self, req: &MountRequest) -> Result<Arc<dyn Fs>>;

    /// The merged tree of a mount made earlier by [`mount`](Self::mount).
    ///
    /// # Errors
    ///
    /// Nothing is mounted at `target`.
    fn mounted(&self, target: &Path) -> Result<Arc<dyn Fs>>;

    /// Unmounts `target` (detached) and removes the mount point, as
    /// Docker's `Put`; nothing mounted is not an error.
    ///
    /// # Errors
    ///
    /// The unmount or the removal fails.
    fn unmount(&self, target: &Path) -> Result<()>;

    /// Is something mounted at `target`?
    fn is_mounted(&self, target: &Path) -> bool;

    /// What the home supports.
    fn capabilities(&self) -> &Capabilities;

    /// The tree of the home's directory `dir` (a layer's `diff`), as its
    /// files are written: with its quota applied where the backend models
    /// quotas itself.
    ///
    /// # Errors
    ///
    /// `dir` is not a directory of the home.
    fn subtree(&self, dir: &Path) -> Result<Arc<dyn Fs>> {
        Ok(self.home().subtree(dir)?)
    }

    /// Limits the directory `dir` (and what is created below it: a layer's
    /// `diff` and `work`) to `bytes`.
    ///
    /// # Errors
    ///
    /// Quotas are not supported here, or the kernel refuses.
    fn set_quota(&self, id: &str, dir: &Path, bytes: u64) -> Result<()>;

    /// Can this process give files the host ids of `maps`? Each host id
    /// must be mapped in its own user namespace (always true in the
    /// initial one); the error names the first range that is not.
    ///
    /// # Errors
    ///
    /// A host range outside this process's user namespace.
    fn check_host_ids(&self, maps: &IdMaps) -> std::result::Result<(), String> {
        let _ = maps;
        Ok(())
    }

    /// The ids files may be given here: `None` for any (root in the
    /// initial user namespace); rootless, the ids of this process's user
    /// namespace, which applies check each tar entry against.
    fn ownable_ids(&self) -> Option<OwnableIds> {
        None
    }
}

/// The real thing: a home directory on disk, overlayfs mounts, XFS project
/// quotas.
pub struct KernelBackend {
    home: Arc<dyn Fs>,
    path: PathBuf,
    settings: Settings,
    caps: Capabilities,
    quota: Option<overlay_quota::QuotaControl>,
    method: Method,
    /// From the (cached) probe: `lowerdir+` works here.
    new_mount_api: bool,
    /// How id-mapped lowers reach overlayfs, when they can.
    idmap_attach: Option<Attach>,
    /// Rootless: the ids of this process's user namespace, read once.
    ownable: Option<OwnableIds>,
}

impl std::fmt::Debug for KernelBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelBackend").field("home", &self.path).finish()
    }
}

impl KernelBackend {
    /// Opens (creating it, 0710) the home directory `path`, probes the
    /// kernel once for it, and sets up quotas where the filesystem has them.
    ///
    /// # Errors
    ///
    /// Overlayfs is missing, the home cannot be made, or the probes fail.
    pub fn new(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        std::fs::create_dir_all(&path).map_err(|e| DriverError::Path {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let features = overlay_mount::probe::probe(&path).map_err(|e| DriverError::Unsupported(e.to_string()))?;
        let (native_diff, naive_reason) = match &features.native_diff {
            overlay_mount::probe::NativeDiff::Safe => (true, None),
            overlay_mount::probe::NativeDiff::Unsafe(why) => (false, Some(why.clone())),
        };
        let quota = overlay_quota::QuotaControl::new(&path);
        let caps = Capabilities {
            backing_fs: features.backing_fs.to_string(),
            d_type: features.d_type,
            native_diff,
            naive_reason,
            quota: quota.as_ref().map(|_| ()).map_err(|e| e.to_string()),
            index_off: features.index_param,
            id_map: match &features.idmap {
                Ok(_) => IdMapSupport::Mounts,
                // Chowning to any host id needs the initial namespace.
                Err(why) if !features.rootless => IdMapSupport::Copy(why.clone()),
                Err(why) => IdMapSupport::Unsupported(format!(
                    "{why}; and a chowned copy needs root in the initial user namespace"
                )),
            },
            xattrs: if features.rootless {
                XattrNamespace::User
            } else {
                XattrNamespace::Trusted
            },
        };
        let home: Arc<dyn Fs> = Arc::new(HostFs::new(&path)?);
        Ok(Self {
            home,
            path,
            settings: Settings {
                index_off: features.index_param,
                userxattr: features.rootless,
                ..Settings::default()
            },
            caps,
            quota: quota.ok(),
            method: Method::Auto,
            new_mount_api: features.new_mount_api,
            idmap_attach: features.idmap.clone().ok(),
            ownable: features.rootless.then(own_ids),
        })
    }

    /// The deepest stack this kernel mounts: 500 lower layers with the new
    /// mount API, else Docker's 128 (one page of mount data). The driver
    /// keeps Docker's limit unless told otherwise
    /// ([`Overlay2::with_depth_limit`](crate::Overlay2::with_depth_limit)).
    pub fn max_depth(&self) -> overlay_layout::DepthLimit {
        if self.new_mount_api && self.method != Method::Legacy {
            overlay_layout::DepthLimit::NEW_MOUNT_API
        } else {
            overlay_layout::DepthLimit::DOCKER
        }
    }

    /// Forces the mount interface (tests of both paths).
    pub fn with_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// Overrides the probe's verdict on id-mapped layers, to test on a
    /// kernel that can id-map what happens on one that cannot: the
    /// chowned-copy fallback ([`IdMapSupport::Copy`]), refusals
    /// ([`IdMapSupport::Unsupported`]), and layers made with id-mapped
    /// lowers that then cannot be mounted (both). Claiming
    /// [`IdMapSupport::Mounts`] where the probe found none makes mounts of
    /// such layers fail in the kernel instead.
    pub fn with_id_map_support(mut self, support: IdMapSupport) -> Self {
        self.idmap_attach = match support {
            IdMapSupport::Mounts => self.idmap_attach.or(Some(Attach::Scratch)),
            _ => None,
        };
        self.caps.id_map = support;
        self
    }
}

impl Backend for KernelBackend {
    fn home(&self) -> &Arc<dyn Fs> {
        &self.home
    }

    fn home_path(&self) -> &Path {
        &self.path
    }

    fn mount(&self, req: &MountRequest) -> Result<Arc<dyn Fs>> {
        let stack = Stack {
            base: self.path.clone(),
            lowers: req.lowers.clone(),
            upper: req.upper.clone().map(|(upperdir, workdir)| Upper { upperdir, workdir }),
            target: req.target.clone(),
        };
        let settings = Settings {
            label: req.label.clone(),
            ..self.settings.clone()
        };
        let id = req.target.parent().map(|p| p.display().to_string()).unwrap_or_default();
        let err = |source| DriverError::Mount {
            id: id.clone(),
            source: Box::new(source),
        };
        let mount = match &req.id_map {
            None => stack.mount(&settings, self.method).map_err(err)?,
            Some(map) => {
                let Some(attach) = self.idmap_attach else {
                    return Err(cannot_mount_idmapped(&id, &self.caps));
                };
                let userns = UserNs::new(&map.maps.proc_uid_map(), &map.maps.proc_gid_map()).map_err(err)?;
                let idmap = IdmapLowers {
                    userns: &userns,
                    mapped: &map.mapped,
                    attach,
                };
                stack.mount_idmapped(&settings, self.method, &idmap).map_err(err)?
            }
        };
        let target = mount.keep();
        Ok(Arc::new(HostFs::new(&target)?))
    }

    fn mounted(&self, target: &Path) -> Result<Arc<dyn Fs>> {
        Ok(Arc::new(HostFs::new(self.path.join(target))?))
    }

    fn unmount(&self, target: &Path) -> Result<()> {
        let id = target.parent().map(|p| p.display().to_string()).unwrap_or_default();
        if self.idmap_attach == Some(Attach::Scratch)
            && let Some(layer) = target.parent()
        {
            overlay_mount::idmap::detach_leftovers(&self.path.join(layer));
        }
        overlay_mount::unmount_and_remove(&self.path.join(target)).map_err(|source| DriverError::Mount {
            id,
            source: Box::new(source),
        })
    }

    fn is_mounted(&self, target: &Path) -> bool {
        overlay_mount::is_mount_point(&self.path.join(target)).unwrap_or(false)
    }

    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn check_host_ids(&self, maps: &IdMaps) -> std::result::Result<(), String> {
        crate::idmapped::check_own_namespace(maps)
    }

    fn ownable_ids(&self) -> Option<OwnableIds> {
        self.ownable.clone()
    }

    fn set_quota(&self, id: &str, dir: &Path, bytes: u64) -> Result<()> {
        let Some(q) = &self.quota else {
            return Err(DriverError::Unsupported(unsupported_quota(&self.caps)));
        };
        q.set_quota(self.path.join(dir), overlay_quota::Quota::new(bytes))
            .map(|_| ())
            .map_err(|source| DriverError::Quota {
                id: id.into(),
                source: Box::new(source),
            })
    }
}

/// The ids of this process's user namespace (none where a map cannot be
/// read: then every chown fails, and says so).
fn own_ids() -> OwnableIds {
    use overlay_mount::userns::{IdKind, own_ranges};
    OwnableIds {
        uids: own_ranges(IdKind::Uid).unwrap_or_default(),
        gids: own_ranges(IdKind::Gid).unwrap_or_default(),
    }
}

/// A layer made with id-mapped lowers, mounted where they cannot be.
pub(crate) fn cannot_mount_idmapped(id: &str, caps: &Capabilities) -> DriverError {
    DriverError::IdMap {
        id: id.into(),
        reason: format!(
            "it was made to see its lowers through id-mapped mounts, which cannot be made here: {}",
            caps.id_map
        ),
    }
}

/// Docker's words for a layer size asked of a home without project
/// quotas; rootless, the reason too (a user namespace can never have
/// them, whatever the filesystem).
pub(crate) fn unsupported_layer_quota(caps: &Capabilities) -> String {
    const DOCKER: &str = "--storage-opt is supported only for overlay over xfs with 'pquota' mount option";
    match &caps.quota {
        Err(why) if caps.userxattr() => format!("{DOCKER}; and {why}"),
        _ => DOCKER.into(),
    }
}

/// Docker's words for a default size asked of a home without project
/// quotas (rootless: why not, as [`unsupported_layer_quota`]).
pub(crate) fn unsupported_quota(caps: &Capabilities) -> String {
    match &caps.quota {
        Ok(()) => "quota supported".into(),
        Err(why) if caps.userxattr() => format!("Storage option overlay2.size not supported: {why}"),
        Err(why) if caps.backing_fs == "xfs" => {
            format!("Storage option overlay2.size not supported. Filesystem does not support Project Quota: {why}")
        }
        Err(_) => format!(
            "Storage Option overlay2.size only supported for backingFS XFS. Found {}",
            caps.backing_fs
        ),
    }
}
