//! The on-disk layout of an overlay2 home, as Docker's overlay2 driver
//! writes it: pure logic, no system calls.
//!
//! ```text
//! HOME/
//!   l/LINKID -> ../ID/diff       short names, 26 chars of [A-Z2-7], random
//!   ID/diff/                     the layer's own files (overlay upper dir)
//!   ID/link                      LINKID of this layer, no newline
//!   ID/lower                     "l/LINK1:l/LINK2:..." parent first, no newline
//!   ID/work/                     overlay work dir (only layers with a parent)
//!   ID/merged/                   mount point, exists only while mounted
//!   ID/committed                 marks a layer that has children: mount read-only
//! ```
//!
//! This crate turns the names and files of that tree into checked values and
//! back, so that everything that reads a home (the driver, `check`, the CLI)
//! rejects a bad id or a corrupt file the same way, with an error naming the
//! offending value, and never panics on what it reads.
//!
//! | Concept | Module | Items |
//! |---|---|---|
//! | Layer names | [`id`] | [`LayerId`], [`RESERVED_LAYER_IDS`] |
//! | Short link names | [`link`] | [`LinkId`] (`generate`, `parse`, `from_bytes`) |
//! | Lower chains | [`lower`] | [`Lower`] (`parse`, `format`, `child_of`), [`DepthLimit`] |
//! | Paths and modes | [`home`] | [`Home`], `relative_*` paths, [`link_target`], [`parse_link_target`], [`mode`], entry names such as [`LINK_DIR`] |
//! | Errors | [`error`] | [`LayoutError`] and the `*Problem` enums it carries |
//!
//! # Example
//!
//! Creating a layer on top of another, as the driver does, then reading its
//! files back:
//!
//! ```
//! use std::path::Path;
//! use overlay_layout::{DepthLimit, Home, LayerId, LinkId, Lower, link_target, parse_link_target};
//!
//! let home = Home::new("/var/lib/docker/overlay2");
//!
//! // A base layer: a diff dir, a link file and an l/ symlink, no lower file.
//! let base = LayerId::new("base")?;
//! let base_link = LinkId::parse("AAAAAAAAAAAAAAAAAAAAAAAAAA")?;
//! assert_eq!(home.link_path(base_link), Path::new("/var/lib/docker/overlay2/l/AAAAAAAAAAAAAAAAAAAAAAAAAA"));
//! assert_eq!(link_target(&base), Path::new("../base/diff"));
//!
//! // A child: its lower chain starts with the parent's link.
//! let app = LayerId::new("app")?;
//! let app_link = LinkId::generate();
//! let app_lower = Lower::child_of(base_link, None, DepthLimit::DOCKER)?;
//! assert_eq!(app_lower.format(), "l/AAAAAAAAAAAAAAAAAAAAAAAAAA");
//! assert_eq!(home.lower_file(&app), Path::new("/var/lib/docker/overlay2/app/lower"));
//!
//! // A grandchild: parent first, then the parent's chain.
//! let top_lower = Lower::child_of(app_link, Some(&app_lower), DepthLimit::DOCKER)?;
//! assert_eq!(top_lower.len(), 2);
//! assert_eq!(top_lower.parent(), app_link);
//!
//! // Reading back: file contents and symlink targets are checked.
//! assert_eq!(Lower::parse(top_lower.format().as_bytes())?, top_lower);
//! assert_eq!(LinkId::from_bytes(app_link.as_bytes())?, app_link);
//! assert_eq!(parse_link_target(Path::new("../base/diff"))?, base);
//!
//! // Bad input is an error naming the value and the rule.
//! let err = LayerId::new("a/b").unwrap_err();
//! assert_eq!(err.to_string(), r#"invalid layer id "a/b": contains '/'"#);
//! let err = Lower::parse(b"l/AAAAAAAAAAAAAAAAAAAAAAAAAA:../etc").unwrap_err();
//! assert_eq!(err.to_string(), r#"corrupt lower file: entry 1 "../etc": has a ".." component"#);
//! # Ok::<(), overlay_layout::LayoutError>(())
//! ```
//!
//! Part of [overlay2-rs](https://github.com/overlay2-rs/overlay2-rs).

#![forbid(unsafe_code)]

pub mod error;
pub mod home;
pub mod id;
pub mod link;
pub mod lower;

pub use error::{EXCERPT_LEN, LayerIdProblem, LayoutError, LinkIdProblem, LinkTargetProblem, LowerProblem};
pub use home::{
    BACKING_FS_BLOCK_DEV, COMMITTED_FILE, DIFF_DIR, Home, LINK_DIR, LINK_FILE, LOWER_FILE, MERGED_DIR, QUARANTINE_DIR,
    WORK_DIR, link_target, mode, parse_link_target, relative_committed_file, relative_diff_dir, relative_layer_dir,
    relative_link_file, relative_link_path, relative_lower_file, relative_merged_dir, relative_work_dir,
};
pub use id::{LayerId, RESERVED_LAYER_IDS, SCRATCH_PREFIX};
pub use link::LinkId;
pub use lower::{DepthLimit, Lower};

/// Compiles and runs the README's example as a doctest, so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
