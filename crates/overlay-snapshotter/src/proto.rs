//! The generated protobuf types and gRPC service of containerd's snapshot
//! API (`proto/`), nested by protobuf package so that cross-package
//! references (`containerd.types.Mount`) resolve.
#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic, rust_2018_idioms)]

/// `containerd.*`.
pub mod containerd {
    /// `containerd.types`.
    pub mod types {
        include!(concat!(env!("OUT_DIR"), "/containerd.types.rs"));
    }
    /// `containerd.services`.
    pub mod services {
        /// `containerd.services.snapshots`.
        pub mod snapshots {
            /// `containerd.services.snapshots.v1`.
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/containerd.services.snapshots.v1.rs"));
            }
        }
    }
}

pub use containerd::services::snapshots::v1 as snapshots;
pub use containerd::types;
