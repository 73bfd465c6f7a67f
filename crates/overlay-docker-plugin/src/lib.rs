//! A Docker graphdriver plugin: dockerd's legacy (v1) plugin protocol,
//! JSON over HTTP on a unix socket, served over any
//! [`overlay_driver::GraphDriver`].
//!
//! dockerd up to 27 loads out-of-process graph drivers with
//! `--experimental --storage-driver NAME`, finding the socket at
//! `/run/docker/plugins/NAME.sock` (or through a spec file in
//! `/etc/docker/plugins`). Every `docker load`, `run`, `commit`, `cp`,
//! `diff` and `save` then goes through the driver.
//!
//! - [`Plugin`]: the driver made at `GraphDriver.Init` (a second Init with
//!   the same request keeps it, and the mount counts of running
//!   containers with it).
//! - [`router`] / [`serve`]: the endpoints (axum on tokio): `Plugin.Activate`
//!   and every `GraphDriver.*` call. Request bodies are parsed without a
//!   Content-Type (dockerd sends none); Diff streams the tar out as the
//!   driver writes it and ApplyDiff streams it in from the request body;
//!   driver calls run on the blocking pool; errors answer `{"Err": msg}`
//!   with the driver's own message.
//! - [`protocol`]: the request and response JSON.
#![forbid(unsafe_code)]

mod http;
mod plugin;
pub mod protocol;

pub use http::{router, serve};
pub use plugin::{Opener, Plugin, PluginError};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
