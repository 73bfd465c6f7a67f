//! The fake backend's pieces: an in-memory home and a model of overlayfs.

mod backend;
mod idmapped;
mod merged;
mod quota;

pub use backend::FakeBackend;
pub use merged::OverlayFs;
