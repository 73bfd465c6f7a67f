//! Mounting a stack of container layers with overlayfs, at any depth the
//! kernel allows, and finding out what the kernel can do.
//!
//! - [`options`]: the mount data string, exactly as Docker's overlay2
//!   driver writes it (pure: build, validate, parse back).
//! - [`Stack`]: a layer stack with paths relative to the home. It mounts
//!   through [`Method::Legacy`] — `mount(2)` with absolute paths, or, when
//!   those exceed one page, relative paths in a forked helper that first
//!   enters the home (Docker's fallback) — or [`Method::NewApi`]:
//!   `fsopen`/`fsconfig("lowerdir+")`/`fsmount`/`move_mount`, which has
//!   no size limit and stacks up to the kernel's 500 lower layers.
//!   [`Method::Auto`] uses `mount(2)` while it can (it is faster) and the
//!   new API for stacks beyond one page.
//! - [`Mount`]: the mounted overlay; dropping it unmounts, so a failure
//!   never leaks a mount. [`unmount_and_remove`] is Docker's `Put`.
//! - [`idmap`]: id-mapped lower layers ([`Stack::mount_idmapped`]): a
//!   [`UserNs`] carrying uid/gid maps, each lower cloned and id-mapped,
//!   overlayfs over them; the image's files are shown shifted, never
//!   copied or chowned.
//! - [`probe`](probe::probe): overlay present, backing filesystem, d_type,
//!   `index`, native-diff safety, `userxattr`, the new API, id-mapped
//!   lowers; cached per home.
//! - [`userns`]: the user namespace this process runs in; outside the
//!   initial one (rootless) mounts take `userxattr` and overlayfs's
//!   markers live in `user.overlay.*` ([`probe::Features::rootless`]).
//!
//! ```no_run
//! use overlay_mount::{Method, Settings, Stack, Upper};
//!
//! let stack = Stack {
//!     base: "/var/lib/docker/overlay2".into(),
//!     lowers: vec!["l/AAAAAAAAAAAAAAAAAAAAAAAAAA".into()],
//!     upper: Some(Upper { upperdir: "id/diff".into(), workdir: "id/work".into() }),
//!     target: "id/merged".into(),
//! };
//! let mount = stack.mount(&Settings::default(), Method::Auto)?;
//! println!("mounted at {}", mount.target().display());
//! let _path = mount.keep(); // leave it mounted
//! # Ok::<(), overlay_mount::MountError>(())
//! ```
//!
//! # Kernel requirements
//!
//! | feature | Linux | without it |
//! |---|---|---|
//! | overlayfs | 3.18 (4.0 for several lowers) | [`probe::require_overlay`] fails |
//! | `fsopen` + `lowerdir+` | 6.8 | [`Method::Auto`] uses `mount(2)` (≤ one page of data) |
//! | `STATX_ATTR_MOUNT_ROOT` | 5.8 | [`is_mount_point`] reports `NotSupported` |
//! | overlayfs over id-mapped lowers | 5.19 (tmpfs homes 6.3) | [`probe::Features::idmap`] says why not |
//! | id-mapped lowers by descriptor | 6.15 | [`Attach::Scratch`]: attached to scratch dirs meanwhile |
//! | overlayfs in a user namespace (`userxattr`) | 5.11 | [`probe::probe`] fails, naming it |
#![deny(unsafe_code)]

mod error;
pub mod idmap;
mod mount;
pub mod options;
pub mod probe;
mod sys;
pub mod userns;

pub use error::{MountError, Result};
pub use idmap::{Attach, IdmapLowers, UserNs};
pub use mount::{Method, Mount, Settings, Stack, Used, is_mount_point, max_data_len, unmount_and_remove};
pub use options::{OverlayOptions, Upper};

/// The README's example, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
