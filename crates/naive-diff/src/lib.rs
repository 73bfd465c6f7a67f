//! Diff, Changes, ApplyDiff and DiffSize for any layer driver, by comparing trees.
//!
//! **Not implemented yet.** This crate is a placeholder in the overlay2-rs
//! workspace; it exports nothing until its issue (#6) lands. It exists so
//! that the workspace layout and the dependency direction are fixed from the
//! start (see the workspace README).
#![forbid(unsafe_code)]
