//! Layer tars in and out of an [`overlay_fs::Fs`] tree, with overlayfs's
//! whiteouts converted to and from the OCI image format.
//!
//! - [`export`] / [`Exporter`]: a tree to an uncompressed tar, in a
//!   deterministic order (same tree, same bytes). Regular files, dirs,
//!   symlinks, hard links (data once), devices, fifos; xattrs as PAX
//!   `SCHILY.xattr.*` records (never overlayfs's private ones); ids through
//!   [`IdMaps`]; exclude patterns. With [`ExportWhiteouts::Overlay`] a 0:0
//!   char device becomes `.wh.NAME` and an opaque directory gets
//!   `DIR/.wh..wh..opq`.
//! - [`import`]: a tar into a tree. [`ImportWhiteouts::Overlay`] writes
//!   whiteouts the way the kernel does (into a layer's `diff` dir);
//!   [`ImportWhiteouts::Plain`] deletes (into a merged tree, for the naive
//!   diff). Hostile entries (`..`, absolute names, malformed whiteouts,
//!   lying PAX sizes, hard links to nowhere) are refused with an error
//!   naming the entry, and since `overlay-fs` resolves every path inside its
//!   root, no symlink in the tree or the tar leads outside it.
//!
//! ```
//! use overlay_archive::{ExportOptions, ImportOptions, export, import};
//! use overlay_fs::{Fs, MemFs, NodeKind};
//! use std::path::Path;
//!
//! // A layer's diff dir: a file and a whiteout (a deleted /etc/motd).
//! let diff = MemFs::new();
//! diff.mkdir(Path::new("etc"), 0o755)?;
//! diff.write(Path::new("etc/hostname"), 0o644, b"box\n")?;
//! diff.mknod(Path::new("etc/motd"), NodeKind::WHITEOUT, 0)?;
//!
//! let (tar, stats) = export(&diff, &ExportOptions::default(), Vec::new())?;
//! assert_eq!(stats.entries, 3); // etc/, etc/hostname, etc/.wh.motd
//!
//! let copy = MemFs::new();
//! import(&copy, &tar[..], &ImportOptions::default())?;
//! assert!(copy.metadata(Path::new("etc/motd"))?.is_whiteout());
//! assert_eq!(copy.read(Path::new("etc/hostname"))?, b"box\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod apply;
mod error;
mod export;
pub mod filter;
pub mod idmap;
mod import;
mod parallel;
mod pax;
mod reader;
mod sparse;
pub mod whiteout;

pub use error::{ArchiveError, Result};
pub use export::{ExportOptions, ExportStats, ExportWhiteouts, Exporter, export};
pub use idmap::{IdMaps, IdRange, OwnableIds};
pub use import::{ImportOptions, ImportStats, ImportWhiteouts, import};
pub use whiteout::{XattrNamespace, is_opaque};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
