//! [`Plugin`]: the graph driver dockerd talks to, made at Init. The calls
//! are blocking (they touch the disk); the HTTP layer runs them on tokio's
//! blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use overlay_driver::GraphDriver;
use parking_lot::RwLock;
use tracing::{info, warn};

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
    /// Where the last Init is kept, for a restarted plugin.
    state: Option<PathBuf>,
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
            state: None,
        }
    }

    /// Keeps each Init request in the file `path` (0600), and makes the
    /// driver from the one found there now. dockerd sends Init once, when
    /// it starts: a plugin restarted under a running dockerd (killed,
    /// upgraded) would otherwise answer nothing but "not initialised"
    /// until dockerd itself restarts. An Init whose home is gone is not
    /// restored.
    ///
    /// # Errors
    ///
    /// The file holds an Init that no longer opens.
    pub fn with_state_file(mut self, path: impl Into<PathBuf>) -> Result<Self, PluginError> {
        let path = path.into();
        if let Ok(bytes) = std::fs::read(&path) {
            match serde_json::from_slice::<InitRequest>(&bytes) {
                Ok(req) if Path::new(&req.home).is_dir() => {
                    info!(state = %path.display(), home = req.home, "restoring the last GraphDriver.Init");
                    let driver = (self.open)(&req).map_err(PluginError::Init)?;
                    *self.driver.write() = Some((req, driver));
                }
                Ok(req) => info!(
                    home = req.home,
                    "the last Init's home is gone: waiting for dockerd's Init"
                ),
                Err(e) => warn!(state = %path.display(), error = %e, "ignoring an unreadable Init state file"),
            }
        }
        self.state = Some(path);
        Ok(self)
    }

    fn save(&self, req: &InitRequest) {
        let Some(path) = &self.state else { return };
        let tmp = path.with_extension("tmp");
        let written = (|| {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&serde_json::to_vec(req).unwrap_or_default())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = written {
            warn!(state = %path.display(), error = %e, "could not keep the Init request; a restarted plugin will wait for dockerd's");
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
        self.save(req);
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
