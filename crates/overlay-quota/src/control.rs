//! [`QuotaControl`]: Docker's quota `Control` for one home directory.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rustix::fs::{FileType, Mode};
use rustix::io::Errno;

use crate::error::{QuotaError, Result, Unsupported};
use crate::project::{self, ProjectIds};
use crate::sys;

/// The name of the block device node made in the home, as Docker names it.
pub const BACKING_FS_BLOCK_DEV: &str = "backingFsBlockDev";

/// `XFS_SUPER_MAGIC`.
const XFS_MAGIC: u64 = 0x5846_5342;
/// `EXT4_SUPER_MAGIC` (also ext2 and ext3, which the ext4 driver mounts).
const EXT4_MAGIC: u64 = 0xEF53;

/// A filesystem with project quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filesystem {
    /// XFS: project quotas with `-o pquota` (Docker's only choice).
    Xfs,
    /// ext4 with the `quota` and `project` features and `-o prjquota`.
    /// Docker refuses ext4; the same calls work on it.
    Ext4,
}

impl fmt::Display for Filesystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Xfs => "XFS",
            Self::Ext4 => "ext4",
        })
    }
}

/// A size limit for a directory tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    /// Bytes; 0 means no limit. The kernel counts 512-byte blocks: a size
    /// that is not a multiple of 512 is rounded up (Docker rounds down,
    /// which makes any size below 512 bytes unlimited).
    pub size: u64,
}

impl Quota {
    /// A quota of `size` bytes.
    pub fn new(size: u64) -> Self {
        Self { size }
    }
}

impl FromStr for Quota {
    type Err = QuotaError;

    /// Parses Docker's size forms (`10G`, `512m`, `1.5GB`, bytes) with
    /// [`parse_size`](crate::parse_size).
    fn from_str(s: &str) -> Result<Self> {
        crate::parse_size(s).map(Self::new)
    }
}

/// What the filesystem accounts to a directory's project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// The project id.
    pub project_id: u32,
    /// The hard limit in bytes (0: none).
    pub limit: u64,
    /// Bytes in use.
    pub used: u64,
    /// Inodes in use.
    pub inodes: u64,
}

/// Project quotas for the directories of one home, with Docker's
/// behaviour (its `quota.Control`).
///
/// [`new`](Self::new) makes the `backingFsBlockDev` node in the home,
/// checks that project quota is accounted and enforced, and finds the ids
/// in use; [`set_quota`](Self::set_quota) gives a directory its own project
/// id (inherited by everything created inside) and a hard block limit.
/// Share it between threads freely (`&self` methods, `Send + Sync`).
///
/// ```no_run
/// use overlay_quota::{Quota, QuotaControl};
///
/// let control = QuotaControl::new("/var/lib/docker/overlay2")?;
/// let id = control.set_quota("/var/lib/docker/overlay2/abc", "10G".parse()?)?;
/// assert_eq!(control.get_quota("/var/lib/docker/overlay2/abc")?, Quota::new(10 << 30));
/// # let _ = id;
/// # Ok::<(), overlay_quota::QuotaError>(())
/// ```
#[derive(Debug)]
pub struct QuotaControl {
    ids: ProjectIds,
    backing_dev: PathBuf,
    fs: Filesystem,
}

impl QuotaControl {
    /// Sets up project quotas for `home`, as Docker's `NewControl`:
    ///
    /// 1. refuses inside a user namespace;
    /// 2. refuses a filesystem other than XFS and ext4 (before touching
    ///    anything; Docker finds out from `quotactl` after the `mknod`);
    /// 3. makes `HOME/backingFsBlockDev`, a block device node (0600) for
    ///    the device `home` lives on, replacing any old one (the home may
    ///    have been copied from another device);
    /// 4. `quotactl(Q_XGETQSTAT, PRJQUOTA)` on it: project quota must be
    ///    accounted and enforced;
    /// 5. reads the home's project id and the ids used below it
    ///    ([`ProjectIds::scan`]);
    /// 6. sets a zero (unlimited) limit on the next free id, to prove that
    ///    limits can be set. Docker does this on the home's id + 1, which
    ///    clears the limit of whichever layer has that id; the next free id
    ///    belongs to nobody.
    ///
    /// # Errors
    /// [`QuotaError::NotSupported`] with the reason (user namespace, not
    /// XFS or ext4, a kernel without quota support, not mounted with
    /// project quota, not enforced, no `CAP_MKNOD`); [`QuotaError::Sys`]
    /// for other failures.
    pub fn new(home: impl AsRef<Path>) -> Result<Self> {
        let home = home.as_ref();
        let unsupported = |reason| QuotaError::NotSupported {
            home: home.to_path_buf(),
            reason,
        };
        if in_user_namespace() {
            return Err(unsupported(Unsupported::UserNamespace));
        }
        let fs = filesystem_of(home)?.map_err(|name| unsupported(Unsupported::Filesystem { name }))?;
        let backing_dev = make_backing_dev(home).map_err(|e| match e {
            MknodError::Refused(errno) => unsupported(Unsupported::DeviceNode { errno }),
            MknodError::Other(e) => e,
        })?;
        let stat = match sys::get_quota_stat(&backing_dev) {
            Ok(stat) => stat,
            // Either no quota operations for this filesystem in the kernel,
            // or no quota type on (the kernel's quota_getstate says ENOSYS
            // when no flag is set). Q_GETFMT tells them apart.
            Err(Errno::NOSYS) => {
                return Err(unsupported(match sys::get_quota_format(&backing_dev) {
                    Err(Errno::NOSYS) => Unsupported::KernelWithoutQuota { fs },
                    _ => Unsupported::NotMountedWithProjectQuota { fs },
                }));
            }
            // What Docker also treats as real failures, not "unsupported".
            Err(errno @ (Errno::FAULT | Errno::NOENT | Errno::NOTBLK | Errno::PERM)) => {
                return Err(QuotaError::sys("quotactl(Q_XGETQSTAT)", &backing_dev, errno));
            }
            Err(errno) => return Err(unsupported(Unsupported::Quotactl { errno })),
        };
        let flags = stat.qs_flags;
        if flags & sys::FS_QUOTA_PDQ_ACCT == 0 {
            return Err(unsupported(Unsupported::NotMountedWithProjectQuota { fs }));
        }
        if flags & sys::FS_QUOTA_PDQ_ENFD == 0 {
            return Err(unsupported(Unsupported::NotEnforced { fs }));
        }
        let ids = ProjectIds::scan(home)?;
        let control = Self { ids, backing_dev, fs };
        let probe = control.ids.next_id();
        if !control.id_in_use(probe)? {
            control.set_limit(probe, 0)?;
        }
        Ok(control)
    }

    /// Gives `dir` (a directory) its own project id, inherited by everything
    /// created inside it later, and limits that project to `quota.size`
    /// bytes (Docker's `SetQuota`). A directory that already has an id of
    /// its own keeps it, and its limit is changed. Returns the id.
    ///
    /// New ids skip any the filesystem reports as owning blocks or inodes,
    /// so a second process (or home) on the same filesystem is not given
    /// the same project.
    ///
    /// # Errors
    /// [`QuotaError::Sys`] from the ioctls or `quotactl`.
    #[doc(alias = "Q_XSETQLIM")]
    pub fn set_quota(&self, dir: impl AsRef<Path>, quota: Quota) -> Result<u32> {
        let dir = dir.as_ref();
        let assigned = self.ids.assign_checked(dir, |id| self.id_in_use(id))?;
        self.set_limit(assigned.id, quota.size.div_ceil(512))?;
        Ok(assigned.id)
    }

    /// The limit on `dir`'s project (Docker's `GetQuota`).
    ///
    /// # Errors
    /// [`QuotaError::NoQuota`] when the directory has no id of its own;
    /// [`QuotaError::Sys`].
    #[doc(alias = "Q_XGETQUOTA")]
    pub fn get_quota(&self, dir: impl AsRef<Path>) -> Result<Quota> {
        Ok(Quota::new(self.usage(dir)?.limit))
    }

    /// Limit and use of `dir`'s project.
    ///
    /// # Errors
    /// As [`get_quota`](Self::get_quota).
    pub fn usage(&self, dir: impl AsRef<Path>) -> Result<Usage> {
        let dir = dir.as_ref();
        let id = project::project_id(dir)?;
        if id == 0 || id == self.ids.base_id() {
            return Err(QuotaError::NoQuota {
                path: dir.to_path_buf(),
                id,
                base: self.ids.base_id(),
            });
        }
        let d = sys::get_project_quota(&self.backing_dev, id)
            .map_err(|e| QuotaError::sys("quotactl(Q_XGETQUOTA)", &self.backing_dev, e))?;
        Ok(Usage {
            project_id: id,
            limit: d.d_blk_hardlimit.saturating_mul(512),
            used: d.d_bcount.saturating_mul(512),
            inodes: d.d_icount,
        })
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        self.ids.home()
    }

    /// The block device node quotas are set through (`HOME/backingFsBlockDev`).
    pub fn backing_device(&self) -> &Path {
        &self.backing_dev
    }

    /// The home's filesystem.
    pub fn filesystem(&self) -> Filesystem {
        self.fs
    }

    /// The project id allocator.
    pub fn project_ids(&self) -> &ProjectIds {
        &self.ids
    }

    fn set_limit(&self, id: u32, blocks: u64) -> Result<()> {
        sys::set_project_block_limit(&self.backing_dev, id, blocks)
            .map_err(|e| QuotaError::sys("quotactl(Q_XSETQLIM)", &self.backing_dev, e))
    }

    /// Does the filesystem account blocks or inodes to project `id`?
    fn id_in_use(&self, id: u32) -> Result<bool> {
        match sys::get_project_quota(&self.backing_dev, id) {
            Ok(d) => Ok(d.d_bcount > 0 || d.d_icount > 0),
            // XFS: no dquot for this id yet.
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(QuotaError::sys("quotactl(Q_XGETQUOTA)", &self.backing_dev, e)),
        }
    }
}

/// The filesystem `home` is on: `Ok(Err(name))` when it has no project
/// quotas.
fn filesystem_of(home: &Path) -> Result<Result<Filesystem, String>> {
    let st = rustix::fs::statfs(home).map_err(|e| QuotaError::sys("statfs", home, e))?;
    let magic = (st.f_type as u64) & 0xffff_ffff;
    Ok(match magic {
        XFS_MAGIC => Ok(Filesystem::Xfs),
        EXT4_MAGIC => Ok(Filesystem::Ext4),
        other => Err(fs_name(other)),
    })
}

/// A readable name for a filesystem magic number.
fn fs_name(magic: u64) -> String {
    let name = match magic {
        0x0102_1994 => "tmpfs",
        0x9123_683E => "btrfs",
        0x794C_7630 => "overlayfs",
        0x2FC1_2FC1 => "zfs",
        0xF2F5_2010 => "f2fs",
        0x6969 => "nfs",
        0x6573_5546 => "fuse",
        0x0102_1997 => "9p",
        0x7371_7368 => "squashfs",
        0x8584_58F6 => "ramfs",
        0x9FA0 => "proc",
        0xE0F5_E1E2 => "erofs",
        _ => return format!("a filesystem with magic {magic:#x}"),
    };
    name.to_owned()
}

enum MknodError {
    /// `EPERM` / `ENOSYS`: Docker's "not supported".
    Refused(Errno),
    Other(QuotaError),
}

/// Docker's `makeBackingFsDev`: `HOME/backingFsBlockDev`, a block device
/// node (0600) for the device of `home`'s filesystem, made afresh.
fn make_backing_dev(home: &Path) -> Result<PathBuf, MknodError> {
    let st = rustix::fs::stat(home).map_err(|e| MknodError::Other(QuotaError::sys("stat", home, e)))?;
    let path = home.join(BACKING_FS_BLOCK_DEV);
    match rustix::fs::unlink(&path) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(MknodError::Other(QuotaError::sys("unlink", &path, e))),
    }
    match rustix::fs::mknodat(
        rustix::fs::CWD,
        &path,
        FileType::BlockDevice,
        Mode::from_raw_mode(0o600),
        st.st_dev,
    ) {
        Ok(()) => Ok(path),
        Err(errno @ (Errno::PERM | Errno::NOSYS)) => Err(MknodError::Refused(errno)),
        Err(e) => Err(MknodError::Other(QuotaError::sys("mknod", &path, e))),
    }
}

/// Are we inside a user namespace (other than the initial one)? Docker's
/// `userns.RunningInUserNS`: `/proc/self/uid_map` is not `0 0 4294967295`.
pub fn in_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => uid_map_in_user_ns(map.lines().next().unwrap_or("")),
        // No file: a kernel without user namespaces.
        Err(_) => false,
    }
}

/// The first line of `uid_map` says we are in a user namespace.
fn uid_map_in_user_ns(line: &str) -> bool {
    if line.is_empty() {
        // A new user namespace before its map is written.
        return true;
    }
    let fields: Vec<&str> = line.split_whitespace().collect();
    match fields.as_slice() {
        [a, b, c] => match (a.parse::<u64>(), b.parse::<u64>(), c.parse::<u64>()) {
            (Ok(a), Ok(b), Ok(c)) => !(a == 0 && b == 0 && c == 4_294_967_295),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_map_of_the_initial_namespace_is_not_a_user_namespace() {
        assert!(!uid_map_in_user_ns("         0          0 4294967295"));
        assert!(uid_map_in_user_ns("         0       1000          1"));
        assert!(uid_map_in_user_ns("0 100000 65536"));
        assert!(uid_map_in_user_ns(""));
        assert!(!uid_map_in_user_ns("garbage"));
    }

    #[test]
    fn quotas_parse_dockers_sizes() {
        assert_eq!("10G".parse::<Quota>().unwrap(), Quota::new(10 << 30));
        let err = "10 gigabytes".parse::<Quota>().unwrap_err();
        assert!(err.to_string().contains("\"10 gigabytes\""), "{err}");
    }

    #[test]
    fn shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<QuotaControl>();
        send_sync::<ProjectIds>();
    }

    #[test]
    fn names_common_filesystems() {
        assert_eq!(fs_name(0x0102_1994), "tmpfs");
        assert_eq!(fs_name(0x1234), "a filesystem with magic 0x1234");
    }

    /// Every reason reads as a plain statement a user can act on.
    #[test]
    fn reasons_say_what_to_do() {
        let kernel = Unsupported::KernelWithoutQuota { fs: Filesystem::Xfs }.to_string();
        assert!(kernel.contains("this kernel has no XFS quota support"), "{kernel}");
        assert!(kernel.contains("CONFIG_XFS_QUOTA"), "{kernel}");
        let mount = Unsupported::NotMountedWithProjectQuota { fs: Filesystem::Xfs }.to_string();
        assert!(mount.contains("-o pquota"), "{mount}");
        let ext4 = Unsupported::NotMountedWithProjectQuota { fs: Filesystem::Ext4 }.to_string();
        assert!(ext4.contains("-O quota,project") && ext4.contains("prjquota"), "{ext4}");
        let userns = Unsupported::UserNamespace.to_string();
        assert!(userns.contains("user namespace"), "{userns}");
        let err = QuotaError::NotSupported {
            home: "/h".into(),
            reason: Unsupported::Filesystem { name: "tmpfs".into() },
        };
        assert_eq!(
            err.to_string(),
            "project quota is not supported for \"/h\": the home is on tmpfs; project quotas need XFS (or ext4)"
        );
        assert!(err.is_not_supported());
    }
}
