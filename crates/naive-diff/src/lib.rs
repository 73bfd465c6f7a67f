//! Diff, Changes, ApplyDiff and DiffSize for any layer driver that can
//! mount, by comparing trees: Docker's naive diff.
//!
//! A driver that keeps whole trees (or can mount them) implements
//! [`LayerTrees`] (get a layer's tree, put it back); [`NaiveDiff`] then
//! provides the rest with Docker's semantics. The overlay driver falls back
//! to it when a layer is not a direct child or the kernel makes native diff
//! unsafe; other drivers can use it alone. The pieces also stand on their
//! own for any two [`overlay_fs::Fs`] trees: [`changes`], [`changes_size`],
//! [`export_changes`].
//!
//! ```
//! use naive_diff::{ChangeKind, changes};
//! use overlay_fs::{Fs, MemFs};
//! use std::path::Path;
//!
//! let parent = MemFs::new();
//! parent.mkdir(Path::new("etc"), 0o755)?;
//! parent.write(Path::new("etc/motd"), 0o644, b"hi")?;
//! let layer = MemFs::new();
//! layer.mkdir(Path::new("etc"), 0o755)?;
//! layer.write(Path::new("etc/hostname"), 0o644, b"box")?;
//!
//! let list: Vec<String> = changes(&layer, Some(&parent))?.iter().map(|c| c.to_string()).collect();
//! assert_eq!(list, ["C /etc", "A /etc/hostname", "D /etc/motd"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod changes;
mod error;
mod naive;

pub use changes::{Change, ChangeKind, changes, changes_size, stat_different, walk_order};
pub use error::{BoxError, DiffError, Result};
pub use naive::{LayerTrees, NaiveDiff, export_changes};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
