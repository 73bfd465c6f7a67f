//! XFS project quotas for container layer directories.
//!
//! **Not implemented yet.** This crate is a placeholder in the overlay2-rs
//! workspace; it exports nothing until its issue (#5) lands. It exists so
//! that the workspace layout and the dependency direction are fixed from the
//! start (see the workspace README).
#![forbid(unsafe_code)]
