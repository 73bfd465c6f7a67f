//! Docker's overlay2 graph driver in Rust, over a kernel backend or an
//! in-memory fake that behaves like the kernel.
//!
//! - [`GraphDriver`]: Docker's graph driver operations (create, get, put,
//!   diff, apply_diff...), object safe.
//! - [`Overlay2`]: the overlay2 driver with Docker v20.10's behaviour and
//!   home layout (`l/` links, `lower` chains, `committed`, 0710 dirs), built
//!   from the workspace's crates: `overlay-layout` plans paths,
//!   `overlay-mount` mounts, `overlay-archive` and `naive-diff` diff,
//!   `overlay-quota` limits. Layers are built and removed under scratch
//!   names and renamed into (or out of) place, so a layer either exists
//!   whole or not at all; [`check`](Overlay2::check) and
//!   [`repair`](Overlay2::repair) clean what a crash leaves, and move
//!   layers they cannot make work into a quarantine
//!   ([`quarantined`](Overlay2::quarantined)) instead of deleting them.
//! - Docker's `--userns-remap`: [`Overlay2::with_id_maps`] shifts every
//!   layer's ids and gives its directories to the remapped root.
//! - Id-mapped layers: [`CreateOpts::id_maps`] gives a layer a uid/gid map
//!   of its own; the layers below are shown shifted by it (id-mapped
//!   lowers, or chowned copies where the kernel cannot: [`IdMapSupport`]).
//! - Rootless: [`KernelBackend`] in a user namespace (an unprivileged
//!   user's `unshare --user`, rootlesskit) mounts with `userxattr` and
//!   marks opaque dirs `user.overlay.opaque` ([`Capabilities::xattrs`],
//!   `status` says `userxattr`); an applied file whose id the namespace
//!   does not map fails the apply, naming it, unless
//!   `overlay2.ignore_chown_errors=true` gives it to root; a quota is
//!   refused.
//! - [`Backend`]: where it runs. [`KernelBackend`] is a home directory,
//!   overlayfs and XFS quotas; [`FakeBackend`] is all in memory (a `MemFs`
//!   home and a model of overlayfs that writes whiteouts and opaque markers
//!   as the kernel does), needing no root.
//!
//! ```
//! use overlay_driver::{CreateOpts, FakeBackend, GraphDriver, Overlay2};
//! use std::path::Path;
//!
//! let driver = Overlay2::new(FakeBackend::new(), &[] as &[&str])?;
//! driver.create("base", None, &CreateOpts::default())?;
//! driver.create_read_write("container", Some("base"), &CreateOpts::default())?;
//! driver.get("container", None)?;
//! driver.tree("container")?.write(Path::new("hello"), 0o644, b"hi")?;
//! let changes: Vec<String> = driver.changes("container", Some("base"))?.iter().map(|c| c.to_string()).collect();
//! assert_eq!(changes, ["A /hello"]);
//! driver.put("container")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod backend;
mod check;
mod dirs;
mod driver;
mod error;
pub mod fake;
mod graph;
mod idmapped;
mod index;
mod locks;
mod native;
mod options;
mod quarantine;
mod remap;

pub use backend::{Backend, Capabilities, IdMapSupport, KernelBackend, LowerIdMap, MountRequest};
pub use check::Problem;
pub use dirs::{LayerDirs, Usage};
pub use driver::{Overlay2, STAGING_PREFIX};
pub use error::{DriverError, Result};
pub use fake::FakeBackend;
pub use graph::GraphDriver;
pub use idmapped::LayerIdMaps;
pub use options::{CreateOpts, DriverOptions};
pub use quarantine::{Quarantined, REASON_FILE};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
