//! Overlayfs mount option strings, the page-size fallback, the new mount API and kernel feature probes.
//!
//! **Not implemented yet.** This crate is a placeholder in the overlay2-rs
//! workspace; it exports nothing until its issue (#4) lands. It exists so
//! that the workspace layout and the dependency direction are fixed from the
//! start (see the workspace README).
#![forbid(unsafe_code)]
