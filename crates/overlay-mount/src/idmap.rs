//! Id-mapped lower layers: one image's layers shown to each container
//! under its own uid/gid map, without copying or chowning a file.
//!
//! An id-mapped mount (`mount_setattr(MOUNT_ATTR_IDMAP)`, Linux 5.12)
//! shows every file of a filesystem through the maps of a user namespace:
//! a file stored with uid 0 appears as the host id the namespace maps
//! container id 0 to. Overlayfs accepts such mounts as lower layers since
//! Linux 5.19, so a container's stack is mounted as
//!
//! 1. a user namespace carrying the maps ([`UserNs`]): a child process in
//!    a new user namespace, whose `uid_map` and `gid_map` we write, whose
//!    `/proc/PID/ns/user` we open, and which we then end and reap;
//! 2. per lower, `open_tree(OPEN_TREE_CLONE)` of its directory (a detached
//!    bind mount) and `mount_setattr(MOUNT_ATTR_IDMAP)` with that namespace;
//! 3. overlayfs over those mounts ([`Stack::mount_idmapped`]). Overlayfs
//!    takes private clones of its layers when it mounts, so the detached
//!    mounts can go as soon as it stands. How it finds them ([`Attach`]):
//!    on Linux 6.15 and later `fsconfig(FSCONFIG_SET_FD, "lowerdir+")`
//!    takes the detached mounts' descriptors themselves (nothing is ever
//!    attached); before that, each is attached (`move_mount`) to a scratch
//!    directory beside the mount point, overlayfs is mounted over the
//!    scratch paths, and the scratch mounts are detached and their
//!    directories removed again (what containerd 2 and containers/storage
//!    do), also when the mount fails.
//!
//! The upper directory is not id-mapped: what the container writes is
//! stored with the ids it has on the host.
//!
//! | feature | Linux |
//! |---|---|
//! | id-mapped mounts on ext4, xfs, btrfs | 5.12 (xfs 5.12, btrfs 5.15) |
//! | id-mapped mounts on tmpfs | 6.3 |
//! | overlayfs over id-mapped lowers | 5.19 |
//! | detached mounts as `lowerdir+` descriptors | 6.15 (`clone_private_mount` of a detached mount; the probe tries it rather than trust the number) |

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::mount::{self as rmount, MoveMountFlags, OpenTreeFlags, UnmountFlags};

use crate::error::{MountError, Result};
use crate::mount::{Method, Mount, Settings, Stack, open_dir};

/// A user namespace that exists to carry uid and gid maps for id-mapped
/// mounts: a descriptor of `/proc/PID/ns/user` whose process is gone.
/// No process runs in it; it lives as long as this value (and the mounts
/// made with it, which hold their own reference).
#[derive(Debug)]
pub struct UserNs {
    fd: OwnedFd,
}

impl UserNs {
    /// A new user namespace with these maps, each in the form
    /// `/proc/PID/uid_map` takes: `CONTAINER HOST SIZE` lines.
    ///
    /// # Errors
    ///
    /// A map longer than one page (the kernel reads at most that),
    /// `clone` failing (user namespaces disabled: `EPERM`, `ENOSPC` at
    /// `max_user_namespaces`), or the kernel refusing a map (`EPERM`
    /// without `CAP_SETUID`/`CAP_SETGID` over its host ids, `EINVAL` for
    /// one it cannot parse).
    pub fn new(uid_map: &str, gid_map: &str) -> Result<Self> {
        let page = rustix::param::page_size();
        for (what, map) in [("uid", uid_map), ("gid", gid_map)] {
            if map.len() >= page {
                return Err(MountError::InvalidOptions(format!(
                    "the {what} map is {} bytes as /proc/PID/{what}_map text; the kernel reads less than one page ({page})",
                    map.len()
                )));
            }
        }
        let child =
            crate::sys::userns_child().map_err(|e| MountError::sys("clone(CLONE_NEWUSER)", "/proc/self/ns/user", e))?;
        let proc = PathBuf::from(format!("/proc/{}", child.pid().as_raw_nonzero()));
        for (file, map) in [("uid_map", uid_map), ("gid_map", gid_map)] {
            let path = proc.join(file);
            std::fs::write(&path, map).map_err(|e| MountError::sys("write", &path, errno_of(&e)))?;
        }
        let path = proc.join("ns/user");
        let fd = rustix::fs::open(
            &path,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| MountError::sys("open", &path, e))?;
        // Ends and reaps the child: the descriptor keeps the namespace.
        drop(child);
        Ok(Self { fd })
    }
}

impl AsFd for UserNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw_os_error(e.raw_os_error().unwrap_or(0))
}

/// A detached copy of the mount of `path` (relative to `dir`; a symlink
/// such as `l/LINK` is followed), showing its files through `userns`'s
/// maps: `open_tree(OPEN_TREE_CLONE)` then `mount_setattr(MOUNT_ATTR_IDMAP)`.
/// Closing the descriptor unmounts it, unless it was attached.
///
/// The copy is read-only (overlayfs only reads lowers): should a scratch
/// mount of it ever be left attached (a crash between attaching and
/// detaching), a recursive removal of the directory it sits in fails on
/// it instead of deleting the image's files through it.
///
/// # Errors
///
/// `open_tree` fails (no such directory, `EPERM` without `CAP_SYS_ADMIN`,
/// `ENOSYS` before Linux 5.2), or `mount_setattr` does: `EINVAL` when the
/// directory's filesystem cannot be id-mapped (tmpfs before Linux 6.3),
/// `ENOSYS` before Linux 5.12.
pub fn idmapped_tree(dir: BorrowedFd<'_>, path: &Path, userns: &UserNs) -> Result<OwnedFd> {
    let tree = rmount::open_tree(
        dir,
        path,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(|e| MountError::sys("open_tree(OPEN_TREE_CLONE)", path, e))?;
    crate::sys::mount_setattr_idmap(tree.as_fd(), userns.as_fd()).map_err(|e| {
        if e == Errno::INVAL {
            MountError::NotSupported(format!(
                "cannot id-map {}: its filesystem does not support id-mapped mounts \
                 (mount_setattr MOUNT_ATTR_IDMAP: EINVAL; tmpfs needs Linux 6.3)",
                path.display()
            ))
        } else {
            MountError::sys("mount_setattr(MOUNT_ATTR_IDMAP)", path, e)
        }
    })?;
    Ok(tree)
}

/// How id-mapped lowers reach overlayfs (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// As descriptors of detached mounts, to `fsconfig("lowerdir+")`
    /// (Linux 6.15): nothing is attached, nothing can be left behind.
    Descriptors,
    /// Attached to scratch directories beside the mount point while
    /// overlayfs is mounted over them (Linux 5.19), then detached.
    Scratch,
}

/// Which lowers of a [`Stack`] to id-map, and with what.
#[derive(Debug, Clone, Copy)]
pub struct IdmapLowers<'a> {
    /// The namespace whose maps the lowers are seen through.
    pub userns: &'a UserNs,
    /// One flag per lower of the stack, in its order: id-map it, or use
    /// it as it is (a layer already stored with host ids).
    pub mapped: &'a [bool],
    /// How the id-mapped lowers reach overlayfs.
    pub attach: Attach,
}

/// Scratch mount points of [`Attach::Scratch`]: dropping it detaches
/// every mount attached there and removes the directories, so neither a
/// mount nor a directory outlives the overlay mount, on error too.
/// Directories are removed one by one with `rmdir`, never recursively: a
/// mount that failed to detach keeps its directory (and the layer's files
/// seen through it) rather than have them deleted.
struct Scratch {
    dir: PathBuf,
    /// Mount points made, attached or not yet.
    points: Vec<PathBuf>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for m in self.points.drain(..) {
            match rmount::unmount(&m, UnmountFlags::DETACH) {
                Ok(()) | Err(Errno::INVAL) => {
                    let _ = std::fs::remove_dir(&m);
                }
                Err(_) => {}
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Detaches and removes scratch mounts a crash left in `dir` (the
/// directory holding a mount point: `ID/` of a layer) while
/// [`Attach::Scratch`] was mounting: containers/storage's leak check at
/// `Put`. Only `rmdir`, never a recursive removal. Nothing there (the
/// usual case: one `readdir`) is not an error.
pub fn detach_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(SCRATCH_PREFIX) {
            continue;
        }
        let points: Vec<PathBuf> = std::fs::read_dir(e.path())
            .map(|d| d.flatten().map(|p| p.path()).collect())
            .unwrap_or_default();
        drop(Scratch { dir: e.path(), points });
    }
}

/// The name prefix of scratch directories ([`Attach::Scratch`]).
const SCRATCH_PREFIX: &str = ".idmapped-";

impl Stack {
    /// Mounts the stack with the lowers flagged in `idmap` seen through
    /// its namespace's maps (see the [module docs](self)); the others,
    /// the upper and the work dir as they are.
    ///
    /// With [`Attach::Descriptors`] the new mount API mounts (whatever
    /// `method` says, unless it is [`Method::Legacy`]); with
    /// [`Attach::Scratch`], `method` mounts the stack whose id-mapped
    /// lowers are the scratch paths `TARGET/../.idmapped-XXXXXX/N`.
    ///
    /// # Errors
    ///
    /// `mapped` does not have one flag per lower, [`Attach::Descriptors`]
    /// with [`Method::Legacy`], a lower cannot be id-mapped
    /// ([`idmapped_tree`]), a scratch directory cannot be made or the
    /// kernel refuses the mount (`EINVAL` before Linux 5.19 for overlayfs
    /// over id-mapped lowers; before 6.15 for detached descriptors).
    pub fn mount_idmapped(&self, settings: &Settings, method: Method, idmap: &IdmapLowers<'_>) -> Result<Mount> {
        if idmap.mapped.len() != self.lowers.len() {
            return Err(MountError::InvalidOptions(format!(
                "{} id-map flags for {} lower directories",
                idmap.mapped.len(),
                self.lowers.len()
            )));
        }
        if idmap.attach == Attach::Descriptors && method == Method::Legacy {
            return Err(MountError::InvalidOptions(
                "id-mapped lowers as descriptors need the new mount API, not mount(2)".into(),
            ));
        }
        // Validate first: nothing is cloned for a stack that cannot mount.
        self.validate(settings)?;
        let base = open_dir(None, &self.base)?;
        let mut trees = Vec::with_capacity(self.lowers.len());
        for (lower, &mapped) in self.lowers.iter().zip(idmap.mapped) {
            trees.push(if mapped {
                Some(idmapped_tree(base.as_fd(), lower, idmap.userns)?)
            } else {
                None
            });
        }
        match idmap.attach {
            Attach::Descriptors => self.mount_with_trees(settings, &trees),
            Attach::Scratch => self.mount_through_scratch(settings, method, &base, trees),
        }
    }

    fn mount_through_scratch(
        &self,
        settings: &Settings,
        method: Method,
        base: &OwnedFd,
        trees: Vec<Option<OwnedFd>>,
    ) -> Result<Mount> {
        let parent = self.target.parent().unwrap_or(Path::new("")).to_path_buf();
        let made = tempfile::Builder::new()
            .prefix(SCRATCH_PREFIX)
            .tempdir_in(self.base.join(&parent))
            .map_err(|e| MountError::sys("mkdtemp", self.base.join(&parent), errno_of(&e)))?;
        let name = made.path().file_name().map(PathBuf::from).unwrap_or_default();
        let mut scratch = Scratch {
            dir: made.keep(),
            points: Vec::new(),
        };
        let mut stack = self.clone();
        for (i, tree) in trees.into_iter().enumerate() {
            let Some(tree) = tree else { continue };
            let rel = parent.join(&name).join(i.to_string());
            let abs = self.base.join(&rel);
            std::fs::create_dir(&abs).map_err(|e| MountError::sys("mkdir", &abs, errno_of(&e)))?;
            scratch.points.push(abs.clone());
            rmount::move_mount(
                tree.as_fd(),
                "",
                base.as_fd(),
                &rel,
                MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
            )
            .map_err(|e| MountError::sys("move_mount", &abs, e))?;
            stack.lowers[i] = rel;
        }
        let mount = stack.mount(settings, method)?;
        // Overlayfs holds its own clones of the lowers: the scratch mounts
        // go now (dropping `scratch`), the overlay stays.
        drop(scratch);
        Ok(mount)
    }
}
