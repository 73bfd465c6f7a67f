//! [`Plugin`]: the graph driver dockerd talks to, made at Init. The calls
//! are blocking (they touch the disk); the HTTP layer runs them on tokio's
//! blocking pool.

use std::sync::Arc;

use overlay_driver::GraphDriver;
use parking_lot::RwLock;
use tracing::info;

use crate::protocol::InitRequest;

/// Why a call failed; the message goes back to dockerd as `Err`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// A call before `GraphDriver.Init`.
    #[error("the plugin is not initialised: dockerd calls GraphDriver.Init first")]
    NotInitialised,
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The driver refused or failed; its own message.
    #[error("{0}")]
    Driver(#[from] overlay_driver::DriverError),
    /// Init could not open the layer store.
    #[error("{0}")]
    Init(String),
}

/// Makes the driver for an Init request (home, options, id maps).
pub type Opener = dyn Fn(&InitRequest) -> Result<Arc<dyn GraphDriver>, String> + Send + Sync;

/// The plugin's state: the driver, once Init has made it.
pub struct Plugin {
    open: Box<Opener>,
    driver: RwLock<Option<(InitRequest, Arc<dyn GraphDriver>)>>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").finish_non_exhaustive()
    }
}

impl Plugin {
    /// A plugin whose driver `open` makes when dockerd calls Init.
    pub fn new(open: impl Fn(&InitRequest) -> Result<Arc<dyn GraphDriver>, String> + Send + Sync + 'static) -> Self {
        Self {
            open: Box::new(open),
            driver: RwLock::new(None),
        }
    }

    /// Init: makes the driver. A second Init with the same request (a
    /// restarted dockerd) keeps the driver it made, and with it the mount
    /// counts of running containers (live-restore).
    ///
    /// # Errors
    ///
    /// The driver cannot be opened.
    pub fn init(&self, req: &InitRequest) -> Result<(), PluginError> {
        let mut slot = self.driver.write();
        if slot.as_ref().is_some_and(|(done, _)| done == req) {
            info!(
                home = req.home,
                "GraphDriver.Init again: keeping the driver and its mount counts"
            );
            return Ok(());
        }
        let driver = (self.open)(req).map_err(PluginError::Init)?;
        info!(home = req.home, "GraphDriver.Init");
        *slot = Some((req.clone(), driver));
        Ok(())
    }

    /// The driver Init made.
    ///
    /// # Errors
    ///
    /// No Init yet.
    pub fn driver(&self) -> Result<Arc<dyn GraphDriver>, PluginError> {
        self.driver
            .read()
            .as_ref()
            .map(|(_, d)| Arc::clone(d))
            .ok_or(PluginError::NotInitialised)
    }
}
