//! Mounting a stack: the page-size rule, the forked helper, the new mount
//! API, and unmounting.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{self as rmount, FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, UnmountFlags};

use crate::error::{MountError, Result};
use crate::options::{OverlayOptions, Upper};

/// A layer stack, every path relative to one base directory (the home).
///
/// Keeping paths relative lets one description be mounted three ways:
/// with absolute paths, with relative paths from inside the base (Docker's
/// page-size fallback), or one `fsconfig` call per layer (the new API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    /// The directory the other paths are relative to.
    pub base: PathBuf,
    /// Lower directories, uppermost first (e.g. `l/LINKID`).
    pub lowers: Vec<PathBuf>,
    /// Upper and work directory (e.g. `ID/diff`, `ID/work`), or `None` for
    /// a read-only mount.
    pub upper: Option<Upper>,
    /// The mount point (e.g. `ID/merged`).
    pub target: PathBuf,
}

/// The longest string `fsconfig` accepts, NUL included (`strndup_user(.., 256)`).
const FSCONFIG_STRING_MAX: usize = 256;

/// Settings that go with every mount of a home.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Prefix `index=off` (see [`crate::probe::Features::index_param`]).
    pub index_off: bool,
    /// Mount with `userxattr`.
    pub userxattr: bool,
    /// SELinux mount label.
    pub label: Option<String>,
}

/// Which kernel interface mounts the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// `mount(2)` as [`Method::Legacy`] while the data fits one page (as
    /// Docker), the new API for stacks beyond that. `mount(2)` is the
    /// faster of the two wherever it can mount (one call, and relative
    /// paths resolve from the home: 1.12 ms against 1.36 ms at 128 layers,
    /// 0.32 against 0.43 ms at one, in BENCHMARKS.md).
    #[default]
    Auto,
    /// `mount(2)` with one page of data, falling back to relative paths
    /// through the forked helper as Docker does. Limited by the page size.
    Legacy,
    /// `fsopen` / `fsconfig("lowerdir+")` per layer / `fsmount` /
    /// `move_mount`: no size limit, up to the kernel's 500 lower layers.
    /// Needs Linux 6.8.
    NewApi,
}

/// The interface that actually mounted a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Used {
    /// `mount(2)` with absolute paths.
    Direct,
    /// `mount(2)` with home-relative paths in a forked helper.
    Helper,
    /// The new mount API.
    NewApi,
}

/// The page size the kernel copies mount data into, less the final NUL:
/// longer data fails (Docker checks `len(data) > pageSize-1`).
pub fn max_data_len() -> usize {
    rustix::param::page_size() - 1
}

impl Stack {
    fn options(&self, settings: &Settings, absolute: bool) -> OverlayOptions {
        let path = |p: &PathBuf| if absolute { self.base.join(p) } else { p.clone() };
        let opts = match &self.upper {
            Some(u) => OverlayOptions::read_write(
                self.lowers.iter().map(path).collect(),
                path(&u.upperdir),
                path(&u.workdir),
            ),
            None => OverlayOptions::read_only(self.lowers.iter().map(path).collect()),
        };
        opts.index_off(settings.index_off)
            .userxattr(settings.userxattr)
            .label(settings.label.as_deref())
    }

    /// The mount data `mount(2)` would get: absolute if it fits in a page,
    /// else relative to [`base`](Self::base), with which form it is.
    ///
    /// # Errors
    ///
    /// Invalid options, or even the relative form is too large
    /// ([`MountError::DataTooLarge`]).
    pub fn legacy_data(&self, settings: &Settings) -> Result<(Vec<u8>, Used)> {
        let limit = max_data_len();
        let data = self.options(settings, true).to_data()?;
        if data.len() <= limit {
            return Ok((data, Used::Direct));
        }
        let data = self.options(settings, false).to_data()?;
        if data.len() <= limit {
            return Ok((data, Used::Helper));
        }
        Err(MountError::DataTooLarge {
            size: data.len(),
            limit,
        })
    }

    /// Mounts the stack on `base/target`.
    ///
    /// # Errors
    ///
    /// Invalid options, data too large for [`Method::Legacy`], the new API
    /// missing for [`Method::NewApi`], or the kernel refusing the mount.
    pub fn mount(&self, settings: &Settings, method: Method) -> Result<Mount> {
        let used = match method {
            Method::NewApi => self.mount_new_api(settings, &[])?,
            Method::Legacy => self.mount_legacy(self.legacy_data(settings)?)?,
            Method::Auto => match self.legacy_data(settings) {
                // Too long for a page, or a path mount(2)'s option string
                // cannot carry: the new API takes each path on its own.
                Err(MountError::DataTooLarge { .. } | MountError::InvalidPath { .. })
                    if crate::probe::new_mount_api() =>
                {
                    self.mount_new_api(settings, &[])?
                }
                data => self.mount_legacy(data?)?,
            },
        };
        Ok(Mount {
            target: self.base.join(&self.target),
            used,
            armed: true,
        })
    }

    fn mount_legacy(&self, (data, used): (Vec<u8>, Used)) -> Result<Used> {
        let target = self.base.join(&self.target);
        let cdata = cstring(&data, &target)?;
        match used {
            Used::Direct => rmount::mount(
                "overlay",
                &target,
                "overlay",
                rmount::MountFlags::empty(),
                Some(&*cdata),
            )
            .map_err(|e| MountError::sys("mount", &target, e))?,
            _ => crate::sys::mount_from(
                &cstring(self.base.as_os_str().as_bytes(), &self.base)?,
                c"overlay",
                &cstring(self.target.as_os_str().as_bytes(), &self.target)?,
                c"overlay",
                &cdata,
            )
            .map_err(|e| MountError::sys("mount (relative, in a helper)", &target, e))?,
        }
        Ok(used)
    }

    /// Checks the stack as `mount(2)` would, before any system call.
    pub(crate) fn validate(&self, settings: &Settings) -> Result<()> {
        self.options(settings, false).validate()
    }

    /// Mounts with the new API, each lower that has a tree in `trees` (a
    /// detached mount, e.g. id-mapped) passed as that descriptor.
    pub(crate) fn mount_with_trees(&self, settings: &Settings, trees: &[Option<OwnedFd>]) -> Result<Mount> {
        let used = self.mount_new_api(settings, trees)?;
        Ok(Mount {
            target: self.base.join(&self.target),
            used,
            armed: true,
        })
    }

    fn mount_new_api(&self, settings: &Settings, trees: &[Option<OwnedFd>]) -> Result<Used> {
        // Validate as for mount(2), so both paths refuse the same stacks.
        self.validate(settings)?;
        let base = open_dir(None, &self.base)?;
        let fs = rmount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
            .map_err(|e| MountError::sys("fsopen overlay", &self.base, e))?;
        let cfg =
            |op: &'static str, path: &Path, r: rustix::io::Result<()>| r.map_err(|e| MountError::sys(op, path, e));
        if settings.index_off {
            cfg(
                "fsconfig index=off",
                &self.base,
                rmount::fsconfig_set_string(&fs, "index", "off"),
            )?;
        }
        // lowerdir+ takes a string literally (no unescaping) and a string
        // costs the kernel one lookup where a descriptor costs us an open
        // and a close; but fsconfig copies at most 255 bytes of a string
        // (strndup_user), so longer paths go by descriptor. Upper and work
        // dirs always go by descriptor: the kernel unescapes those strings.
        for (i, lower) in self.lowers.iter().enumerate() {
            let path = self.base.join(lower);
            let set = if let Some(Some(tree)) = trees.get(i) {
                rmount::fsconfig_set_fd(&fs, "lowerdir+", tree)
            } else if path.as_os_str().len() < FSCONFIG_STRING_MAX {
                rmount::fsconfig_set_string(&fs, "lowerdir+", path.as_path())
            } else {
                let fd = open_dir(Some(&base), lower)?;
                rmount::fsconfig_set_fd(&fs, "lowerdir+", &fd)
            };
            set.map_err(|e| {
                if e == Errno::INVAL && !crate::probe::new_mount_api() {
                    MountError::NotSupported("the kernel's overlayfs has no lowerdir+ (needs Linux 6.8)".into())
                } else {
                    MountError::sys("fsconfig lowerdir+", &path, e)
                }
            })?;
        }
        if let Some(u) = &self.upper {
            let fd = open_dir(Some(&base), &u.upperdir)?;
            cfg(
                "fsconfig upperdir",
                &u.upperdir,
                rmount::fsconfig_set_fd(&fs, "upperdir", &fd),
            )?;
            let fd = open_dir(Some(&base), &u.workdir)?;
            cfg(
                "fsconfig workdir",
                &u.workdir,
                rmount::fsconfig_set_fd(&fs, "workdir", &fd),
            )?;
        }
        if settings.userxattr {
            cfg(
                "fsconfig userxattr",
                &self.base,
                rmount::fsconfig_set_flag(&fs, "userxattr"),
            )?;
        }
        if let Some(label) = &settings.label {
            cfg(
                "fsconfig context",
                &self.base,
                rmount::fsconfig_set_string(&fs, "context", label.as_str()),
            )?;
        }
        cfg("fsconfig create", &self.base, rmount::fsconfig_create(&fs))?;
        let mnt = rmount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
            .map_err(|e| MountError::sys("fsmount", &self.base, e))?;
        rmount::move_mount(
            mnt.as_fd(),
            "",
            base.as_fd(),
            &self.target,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| MountError::sys("move_mount", self.base.join(&self.target), e))?;
        Ok(Used::NewApi)
    }
}

pub(crate) fn open_dir(base: Option<&OwnedFd>, path: &Path) -> Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    match base {
        Some(b) => rustix::fs::openat(b, path, flags, Mode::empty()),
        None => rustix::fs::open(path, flags, Mode::empty()),
    }
    .map_err(|e| MountError::sys("open", path, e))
}

fn cstring(bytes: &[u8], path: &Path) -> Result<CString> {
    CString::new(bytes).map_err(|_| MountError::InvalidPath {
        path: path.to_path_buf(),
        reason: "contains a NUL byte".into(),
    })
}

/// A mounted overlay. Dropping it unmounts (detached), so a test or a
/// failed operation never leaks a mount; [`keep`](Mount::keep) hands the
/// mount over to the caller instead.
#[derive(Debug)]
#[must_use = "dropping a Mount unmounts it"]
pub struct Mount {
    target: PathBuf,
    used: Used,
    armed: bool,
}

impl Mount {
    /// The mount point.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Which interface mounted it.
    pub fn used(&self) -> Used {
        self.used
    }

    /// Leaves the mount in place and returns its mount point.
    pub fn keep(mut self) -> PathBuf {
        self.armed = false;
        std::mem::take(&mut self.target)
    }

    /// Unmounts now (detached) and reports failure, instead of ignoring it
    /// as `Drop` must.
    ///
    /// # Errors
    ///
    /// The kernel refuses the unmount.
    pub fn unmount(mut self) -> Result<()> {
        self.armed = false;
        rmount::unmount(&self.target, UnmountFlags::DETACH).map_err(|e| MountError::sys("umount2", &self.target, e))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.armed {
            let _ = rmount::unmount(&self.target, UnmountFlags::DETACH);
        }
    }
}

/// Unmounts `target` with `MNT_DETACH` and removes the mount point, as
/// Docker's `Put` does: removing the directory also ends copies of the mount
/// in other mount namespaces. A target that is not mounted, or already
/// gone, is not an error.
///
/// # Errors
///
/// The unmount or the removal fails for another reason.
pub fn unmount_and_remove(target: &Path) -> Result<()> {
    match rmount::unmount(target, UnmountFlags::DETACH) {
        Ok(()) | Err(Errno::INVAL) | Err(Errno::NOENT) => {}
        Err(e) => return Err(MountError::sys("umount2", target, e)),
    }
    match rustix::fs::unlinkat(rustix::fs::CWD, target, rustix::fs::AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(MountError::sys("rmdir", target, e)),
    }
}

/// Is `path` the root of a mount (`STATX_ATTR_MOUNT_ROOT`, Linux 5.8)?
///
/// # Errors
///
/// `path` cannot be examined, or the kernel does not report the attribute.
pub fn is_mount_point(path: &Path) -> Result<bool> {
    use rustix::fs::{AtFlags, StatxAttributes, StatxFlags};
    let st = rustix::fs::statx(
        rustix::fs::CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    )
    .map_err(|e| MountError::sys("statx", path, e))?;
    if !st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT) {
        return Err(MountError::NotSupported(
            "statx does not report STATX_ATTR_MOUNT_ROOT (needs Linux 5.8)".into(),
        ));
    }
    Ok(st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT))
}
