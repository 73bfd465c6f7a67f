//! Layer tars in and out of an overlay-fs tree, with overlay whiteout conversion.
//!
//! **Not implemented yet.** This crate is a placeholder in the overlay2-rs
//! workspace; it exports nothing until its issue (#3) lands. It exists so
//! that the workspace layout and the dependency direction are fixed from the
//! start (see the workspace README).
#![forbid(unsafe_code)]
