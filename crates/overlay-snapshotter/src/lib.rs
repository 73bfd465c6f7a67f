//! A containerd proxy snapshotter over an overlay2 home.
//!
//! containerd loads out-of-process snapshotters through `[proxy_plugins]`:
//! a unix socket speaking `containerd.services.snapshots.v1.Snapshots`.
//! This crate is that service, keeping every snapshot as a layer of a
//! Docker-compatible overlay2 home (so `overlay2 ls`, `check` and `diff`
//! read containerd's snapshots) and its metadata in a transactional
//! database inside the home.
//!
//! - [`Snapshotter`]: containerd's snapshot semantics (keys, kinds
//!   Active / View / Committed, parents, labels, usage) over
//!   [`overlay_driver::Overlay2`], on any backend; blocking calls.
//! - [`Service`]: the gRPC service (tonic), translating requests into
//!   [`Snapshotter`] calls and [`SnapshotError`]s into the codes
//!   containerd's client maps back to its errdefs.
//! - [`Mount`]: what Prepare, View and Mounts return; containerd mounts.
//! - [`Filters`]: containerd's filter syntax, for List.
//! - [`IdMapMounts`], [`label_maps`]: containerd's remap labels
//!   (`containerd.io/snapshot/uidmapping`, `…/gidmapping`): snapshots in
//!   user namespaces, made as id-mapped layers and mounted in a form the
//!   serving containerd can perform (README: "User namespaces").
//! - [`Store`]: the metadata database (redb), one transaction per call.
//!
//! ```
//! use overlay_driver::{FakeBackend, Overlay2};
//! use overlay_snapshotter::{Snapshotter, Store};
//!
//! let driver = Overlay2::new(FakeBackend::new(), &[] as &[&str])?;
//! let s = Snapshotter::new(driver, Store::in_memory()?);
//! s.prepare("extract-1", "", Default::default())?;
//! s.commit("layer-1", "extract-1", Default::default())?;
//! let mounts = s.prepare("container", "layer-1", Default::default())?;
//! assert_eq!(mounts[0].kind, "overlay");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod error;
mod filter;
mod meta;
mod mounts;
pub mod proto;
mod remap;
mod service;
mod snapshotter;

pub use error::{Result, SnapshotError};
pub use filter::{Fields, Filter, FilterError, Filters};
pub use meta::{DB_FILE, Kind, Record, Store, Time, Usage};
pub use mounts::{Mount, MountOptions};
pub use remap::{IdMapMounts, LABEL_GID_MAPPING, LABEL_UID_MAPPING, label_maps, mount_options};
pub use service::Service;
pub use snapshotter::{Info, MAX_KEY_LEN, MAX_LABEL_LEN, Mismatch, Snapshotter, containerd_depth_limit};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
