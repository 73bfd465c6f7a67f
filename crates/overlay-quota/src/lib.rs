//! Project quotas for container layer directories: a read-write layer
//! created with `size=10G` cannot fill the disk.
//!
//! This is Docker's quota package (`daemon/graphdriver/quota`) in Rust,
//! for XFS and, beyond Docker, ext4:
//!
//! - [`QuotaControl`]: one per home directory. [`QuotaControl::new`] makes
//!   the `backingFsBlockDev` node, checks that project quota is enforced
//!   (`Q_XGETQSTAT`) and finds the ids in use;
//!   [`set_quota`](QuotaControl::set_quota) gives a directory its own
//!   project id with `FS_XFLAG_PROJINHERIT` and a hard block limit
//!   (`Q_XSETQLIM`); [`get_quota`](QuotaControl::get_quota) and
//!   [`usage`](QuotaControl::usage) read it back (`Q_XGETQUOTA`).
//! - [`ProjectIds`]: the id allocator on its own (the home's id is the
//!   base, ids in use below the home are skipped, safe from any number of
//!   threads); [`project_id`] and [`set_project_id`] for single directories.
//! - [`parse_size`]: Docker's size strings (`10G`, `512m`, `1.5GB`, bytes).
//! - Clear errors: [`QuotaError::NotSupported`] says why in words
//!   ([`Unsupported`]): not XFS or ext4, not mounted with project quota, a
//!   kernel without quota support, inside a user namespace.
//!
//! ```no_run
//! use overlay_quota::{Quota, QuotaControl};
//!
//! let control = QuotaControl::new("/var/lib/docker/overlay2")?;
//! let layer = "/var/lib/docker/overlay2/0123abcd";
//! std::fs::create_dir(layer).ok();
//! let id = control.set_quota(layer, overlay_quota::parse_size("10G").map(Quota::new)?)?;
//! println!("{layer}: project {id}, limit {} bytes", control.get_quota(layer)?.size);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Over a limit, XFS fails writes with `ENOSPC` (not `EDQUOT`) for project
//! quotas, for every process. ext4 fails them with `EDQUOT`, except for a
//! process with `CAP_SYS_RESOURCE`; overlayfs drops that capability for its
//! writes to the upper dir, so writes through an overlay are limited on
//! both. The README lists where this crate differs from Docker, and why.
//!
//! # Kernel requirements
//!
//! | feature | needs | without it |
//! |---|---|---|
//! | XFS project quota | `CONFIG_XFS_QUOTA`, mount `-o pquota` | [`Unsupported::KernelWithoutQuota`], [`Unsupported::NotMountedWithProjectQuota`] |
//! | ext4 project quota | Linux 4.5, `CONFIG_QUOTA` + `CONFIG_QFMT_V2`, `mkfs.ext4 -O quota,project`, mount `-o prjquota` | the same errors |
//! | `mknod` of the device node | `CAP_MKNOD`, not in a user namespace | [`Unsupported::DeviceNode`], [`Unsupported::UserNamespace`] |
#![deny(unsafe_code)]

mod control;
mod error;
mod project;
mod size;
mod sys;

pub use control::{BACKING_FS_BLOCK_DEV, Filesystem, Quota, QuotaControl, Usage, in_user_namespace};
pub use error::{QuotaError, Result, Unsupported};
pub use project::{Assigned, ProjectIds, inherits_project_id, project_id, set_project_id};
pub use size::parse_size;

/// The README's example, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
