//! The one place this crate needs `unsafe`: `quotactl(2)` and the
//! `FS_IOC_FSGETXATTR` / `FS_IOC_FSSETXATTR` ioctls, with the kernel's
//! structures laid out exactly as the UAPI headers declare them.
//!
//! Layouts and numbers come from `<linux/dqblk_xfs.h>`, `<linux/quota.h>`
//! and `<linux/fs.h>`; the unit tests below pin every size, offset and
//! command number to the values those headers give on x86-64 (printed by a
//! C program compiled against them), and the `const` assertions make a
//! wrong size a compile error.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::io::Errno;
use rustix::ioctl::{Getter, Setter, opcode};

/// `PRJQUOTA` (`<linux/quota.h>`): the project quota type.
pub(crate) const PRJQUOTA: u32 = 2;

/// `XQM_CMD(x)` (`<linux/dqblk_xfs.h>`): `('X' << 8) + x`.
const fn xqm_cmd(x: u32) -> u32 {
    ((b'X' as u32) << 8) + x
}

/// `QCMD(cmd, type)` (`<linux/quota.h>`): `(cmd << SUBCMDSHIFT) | (type &
/// SUBCMDMASK)`, with `SUBCMDSHIFT` 8 and `SUBCMDMASK` 0xff.
pub(crate) const fn qcmd(cmd: u32, kind: u32) -> u32 {
    (cmd << 8) | (kind & 0xff)
}

/// `Q_GETFMT` (`<linux/quota.h>`): the quota format of a filesystem.
pub(crate) const Q_GETFMT: u32 = 0x80_0004;
/// `Q_XGETQUOTA`: limits and usage of one id.
pub(crate) const Q_XGETQUOTA: u32 = xqm_cmd(3);
/// `Q_XSETQLIM`: set the limits of one id.
pub(crate) const Q_XSETQLIM: u32 = xqm_cmd(4);
/// `Q_XGETQSTAT`: state of the quota subsystem of a filesystem.
pub(crate) const Q_XGETQSTAT: u32 = xqm_cmd(5);

/// `FS_DQUOT_VERSION`: `fs_disk_quota.d_version`.
const FS_DQUOT_VERSION: i8 = 1;
/// `FS_PROJ_QUOTA` (`XFS_PROJ_QUOTA`): `fs_disk_quota.d_flags` for a project.
const FS_PROJ_QUOTA: i8 = 1 << 1;
/// `FS_DQ_BSOFT`: `d_fieldmask` bit for the block soft limit.
pub(crate) const FS_DQ_BSOFT: u16 = 1 << 2;
/// `FS_DQ_BHARD`: `d_fieldmask` bit for the block hard limit.
pub(crate) const FS_DQ_BHARD: u16 = 1 << 3;
/// `FS_QUOTA_PDQ_ACCT`: project quota accounting is on.
pub(crate) const FS_QUOTA_PDQ_ACCT: u16 = 1 << 4;
/// `FS_QUOTA_PDQ_ENFD`: project quota limits are enforced.
pub(crate) const FS_QUOTA_PDQ_ENFD: u16 = 1 << 5;
/// `FS_XFLAG_PROJINHERIT` (`<linux/fs.h>`): new entries take the
/// directory's project id.
pub(crate) const FS_XFLAG_PROJINHERIT: u32 = 0x200;

/// `struct fs_disk_quota` (`fs_disk_quota_t`), 112 bytes. Limits and counts
/// are in 512-byte basic blocks.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FsDiskQuota {
    pub d_version: i8,
    pub d_flags: i8,
    pub d_fieldmask: u16,
    pub d_id: u32,
    pub d_blk_hardlimit: u64,
    pub d_blk_softlimit: u64,
    pub d_ino_hardlimit: u64,
    pub d_ino_softlimit: u64,
    pub d_bcount: u64,
    pub d_icount: u64,
    pub d_itimer: i32,
    pub d_btimer: i32,
    pub d_iwarns: u16,
    pub d_bwarns: u16,
    pub d_itimer_hi: i8,
    pub d_btimer_hi: i8,
    pub d_rtbtimer_hi: i8,
    pub d_padding2: i8,
    pub d_rtb_hardlimit: u64,
    pub d_rtb_softlimit: u64,
    pub d_rtbcount: u64,
    pub d_rtbtimer: i32,
    pub d_rtbwarns: u16,
    pub d_padding3: i16,
    pub d_padding4: [u8; 8],
}

/// `struct fs_qfilestat`, 24 bytes (8-byte aligned, 4 bytes of tail padding).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FsQfilestat {
    pub qfs_ino: u64,
    pub qfs_nblks: u64,
    pub qfs_nextents: u32,
}

/// `struct fs_quota_stat` (`fs_quota_stat_t`), 80 bytes: what
/// `Q_XGETQSTAT` fills in.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FsQuotaStat {
    pub qs_version: i8,
    pub qs_flags: u16,
    pub qs_pad: i8,
    pub qs_uquota: FsQfilestat,
    pub qs_gquota: FsQfilestat,
    pub qs_incoredqs: u32,
    pub qs_btimelimit: i32,
    pub qs_itimelimit: i32,
    pub qs_rtbtimelimit: i32,
    pub qs_bwarnlimit: u16,
    pub qs_iwarnlimit: u16,
}

/// `struct fsxattr` (`<linux/fs.h>`), 28 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FsXattr {
    pub fsx_xflags: u32,
    pub fsx_extsize: u32,
    pub fsx_nextents: u32,
    pub fsx_projid: u32,
    pub fsx_cowextsize: u32,
    pub fsx_pad: [u8; 8],
}

const _: () = assert!(std::mem::size_of::<FsDiskQuota>() == 112);
const _: () = assert!(std::mem::size_of::<FsQuotaStat>() == 80);
const _: () = assert!(std::mem::size_of::<FsXattr>() == 28);

/// `FS_IOC_FSGETXATTR`: `_IOR('X', 31, struct fsxattr)`.
pub(crate) const FS_IOC_FSGETXATTR: rustix::ioctl::Opcode = opcode::read::<FsXattr>(b'X', 31);
/// `FS_IOC_FSSETXATTR`: `_IOW('X', 32, struct fsxattr)`.
pub(crate) const FS_IOC_FSSETXATTR: rustix::ioctl::Opcode = opcode::write::<FsXattr>(b'X', 32);

/// `ioctl(fd, FS_IOC_FSGETXATTR, &fsx)`: the inode's extended attributes
/// (flags and project id).
///
/// # References
/// - [`ioctl_xfs_fsgetxattr(2)`](https://man7.org/linux/man-pages/man2/ioctl_xfs_fsgetxattr.2.html)
pub(crate) fn fs_get_xattr(fd: impl AsFd) -> Result<FsXattr, Errno> {
    // SAFETY: FS_IOC_FSGETXATTR is _IOR('X', 31, struct fsxattr) and the
    // kernel writes exactly one `struct fsxattr`, which `FsXattr` mirrors
    // (size pinned above, offsets in the tests).
    unsafe {
        let getter = Getter::<FS_IOC_FSGETXATTR, FsXattr>::new();
        rustix::ioctl::ioctl(fd, getter)
    }
}

/// `ioctl(fd, FS_IOC_FSSETXATTR, &fsx)`: sets flags and project id.
///
/// # References
/// - [`ioctl_xfs_fsgetxattr(2)`](https://man7.org/linux/man-pages/man2/ioctl_xfs_fsgetxattr.2.html)
pub(crate) fn fs_set_xattr(fd: impl AsFd, fsx: FsXattr) -> Result<(), Errno> {
    // SAFETY: FS_IOC_FSSETXATTR is _IOW('X', 32, struct fsxattr); the kernel
    // only reads one `struct fsxattr` from the pointer, which `Setter` keeps
    // alive for the call.
    unsafe {
        let setter = Setter::<FS_IOC_FSSETXATTR, FsXattr>::new(fsx);
        rustix::ioctl::ioctl(fd, setter)
    }
}

/// A path as the C string `quotactl` wants.
fn c_path(path: &Path) -> Result<CString, Errno> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::INVAL)
}

/// The raw call: `quotactl(cmd, special, id, addr)`.
///
/// # Safety
/// `addr` must point to memory of the type the command reads or writes.
unsafe fn quotactl(cmd: u32, special: &CStr, id: u32, addr: *mut libc::c_char) -> Result<(), Errno> {
    // SAFETY: `special` is a NUL-terminated string alive for the call; the
    // caller vouches for `addr`. The kernel takes `cmd` and `id` as int and
    // qid_t, so the casts keep the bit patterns.
    let ret = unsafe { libc::quotactl(cmd as libc::c_int, special.as_ptr(), id as libc::c_int, addr) };
    if ret == 0 {
        Ok(())
    } else {
        Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO))
    }
}

/// `quotactl(QCMD(Q_XGETQSTAT, PRJQUOTA), dev, 0, &stat)`: is project quota
/// accounted and enforced on the filesystem of block device `dev`?
///
/// # References
/// - [`quotactl(2)`](https://man7.org/linux/man-pages/man2/quotactl.2.html)
pub(crate) fn get_quota_stat(dev: &Path) -> Result<FsQuotaStat, Errno> {
    let special = c_path(dev)?;
    let mut stat = FsQuotaStat::default();
    // SAFETY: Q_XGETQSTAT writes one `struct fs_quota_stat`, which
    // `FsQuotaStat` mirrors and which lives on our stack for the call.
    unsafe {
        quotactl(qcmd(Q_XGETQSTAT, PRJQUOTA), &special, 0, (&raw mut stat).cast())?;
    }
    Ok(stat)
}

/// `quotactl(QCMD(Q_GETFMT, PRJQUOTA), dev, 0, &fmt)`: the quota format.
///
/// Only its error matters here: `ENOSYS` when the kernel has no quota
/// operations for this filesystem at all, `ESRCH` when it has them but
/// project quota is off. (`Q_XGETQSTAT` says `ENOSYS` in both cases when no
/// quota type is on.)
///
/// # References
/// - [`quotactl(2)`](https://man7.org/linux/man-pages/man2/quotactl.2.html)
pub(crate) fn get_quota_format(dev: &Path) -> Result<u32, Errno> {
    let special = c_path(dev)?;
    let mut fmt: u32 = 0;
    // SAFETY: Q_GETFMT writes one __u32, which lives on our stack.
    unsafe {
        quotactl(qcmd(Q_GETFMT, PRJQUOTA), &special, 0, (&raw mut fmt).cast())?;
    }
    Ok(fmt)
}

/// `quotactl(QCMD(Q_XSETQLIM, PRJQUOTA), dev, id, &d)` with the block hard
/// and soft limits set to `blocks` 512-byte basic blocks (0: no limit).
///
/// # References
/// - [`quotactl(2)`](https://man7.org/linux/man-pages/man2/quotactl.2.html)
pub(crate) fn set_project_block_limit(dev: &Path, id: u32, blocks: u64) -> Result<(), Errno> {
    let special = c_path(dev)?;
    let mut d = FsDiskQuota {
        d_version: FS_DQUOT_VERSION,
        d_flags: FS_PROJ_QUOTA,
        d_fieldmask: FS_DQ_BHARD | FS_DQ_BSOFT,
        d_id: id,
        d_blk_hardlimit: blocks,
        d_blk_softlimit: blocks,
        ..FsDiskQuota::default()
    };
    // SAFETY: Q_XSETQLIM reads one `struct fs_disk_quota`, which
    // `FsDiskQuota` mirrors and which lives on our stack for the call.
    unsafe { quotactl(qcmd(Q_XSETQLIM, PRJQUOTA), &special, id, (&raw mut d).cast()) }
}

/// `quotactl(QCMD(Q_XGETQUOTA, PRJQUOTA), dev, id, &d)`: limits and usage
/// of project `id`.
///
/// # References
/// - [`quotactl(2)`](https://man7.org/linux/man-pages/man2/quotactl.2.html)
pub(crate) fn get_project_quota(dev: &Path, id: u32) -> Result<FsDiskQuota, Errno> {
    let special = c_path(dev)?;
    let mut d = FsDiskQuota::default();
    // SAFETY: Q_XGETQUOTA writes one `struct fs_disk_quota`, which
    // `FsDiskQuota` mirrors and which lives on our stack for the call.
    unsafe {
        quotactl(qcmd(Q_XGETQUOTA, PRJQUOTA), &special, id, (&raw mut d).cast())?;
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    /// The values a C program compiled against the Debian 12 UAPI headers
    /// prints for `sizeof`, `offsetof`, `QCMD(...)` and the ioctl numbers.
    #[test]
    fn layouts_and_numbers_match_the_uapi_headers() {
        assert_eq!(size_of::<FsDiskQuota>(), 112);
        assert_eq!(offset_of!(FsDiskQuota, d_id), 4);
        assert_eq!(offset_of!(FsDiskQuota, d_blk_hardlimit), 8);
        assert_eq!(offset_of!(FsDiskQuota, d_blk_softlimit), 16);
        assert_eq!(offset_of!(FsDiskQuota, d_bcount), 40);
        assert_eq!(offset_of!(FsDiskQuota, d_icount), 48);
        assert_eq!(offset_of!(FsDiskQuota, d_itimer), 56);
        assert_eq!(offset_of!(FsDiskQuota, d_rtb_hardlimit), 72);
        assert_eq!(offset_of!(FsDiskQuota, d_rtbtimer), 96);
        assert_eq!(offset_of!(FsDiskQuota, d_padding4), 104);

        assert_eq!(size_of::<FsQuotaStat>(), 80);
        assert_eq!(offset_of!(FsQuotaStat, qs_flags), 2);
        assert_eq!(offset_of!(FsQuotaStat, qs_uquota), 8);
        assert_eq!(offset_of!(FsQuotaStat, qs_gquota), 32);
        assert_eq!(offset_of!(FsQuotaStat, qs_incoredqs), 56);
        assert_eq!(offset_of!(FsQuotaStat, qs_iwarnlimit), 74);

        assert_eq!(size_of::<FsXattr>(), 28);
        assert_eq!(offset_of!(FsXattr, fsx_projid), 12);
        assert_eq!(FS_IOC_FSGETXATTR as u64, 0x801c_581f);
        assert_eq!(FS_IOC_FSSETXATTR as u64, 0x401c_5820);

        assert_eq!(qcmd(Q_XGETQSTAT, PRJQUOTA), 0x58_0502);
        assert_eq!(qcmd(Q_XSETQLIM, PRJQUOTA), 0x58_0402);
        assert_eq!(qcmd(Q_XGETQUOTA, PRJQUOTA), 0x58_0302);
        assert_eq!(qcmd(Q_GETFMT, PRJQUOTA), 0x8000_0402);
    }
}
