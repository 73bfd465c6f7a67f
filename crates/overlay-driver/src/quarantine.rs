//! The quarantine: `HOME/quarantine/`, where [`Overlay2::repair`] moves a
//! layer it cannot make work (a corrupt `lower`, a parent that is gone)
//! instead of deleting it. A container's layer holds files nobody else
//! has; only a person can say they are worthless.
//!
//! A quarantined layer is its directory as it was (`diff`, `link`,
//! `lower`...), renamed whole under [`QUARANTINE_DIR`] (one rename in the
//! home's filesystem, nothing copied), plus a [`REASON_FILE`] saying why.
//! Outside the layer directories, Docker's layout is untouched: Docker
//! never lists the home, and `quarantine` is a reserved layer id.

use std::path::{Path, PathBuf};

use overlay_fs::ErrorKind;
use overlay_layout::{LayerId, QUARANTINE_DIR, mode, relative_merged_dir};

use crate::backend::Backend;
use crate::driver::Overlay2;
use crate::error::Result;

/// The file in a quarantined layer's directory that says why it is there.
pub const REASON_FILE: &str = "quarantined";

/// A layer in the quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Its name under `HOME/quarantine/`: the layer id, with `.N` added
    /// when a layer of that id was quarantined before.
    pub name: String,
    /// Why repair moved it there (empty if the reason file is lost).
    pub reason: String,
}

impl Quarantined {
    /// Its directory, relative to the home.
    #[must_use]
    pub fn path(&self) -> PathBuf {
        Path::new(QUARANTINE_DIR).join(&self.name)
    }
}

impl<B: Backend> Overlay2<B> {
    /// Moves layer `id` into the quarantine, saying `reason`; `None` (and
    /// nothing changed) while it is mounted.
    pub(crate) fn quarantine(&self, id: &LayerId, reason: &str) -> Result<Option<Quarantined>> {
        let home = self.backend().home();
        if self.is_mounted(id.as_str()) || self.backend().is_mounted(&relative_merged_dir(id)) {
            return Ok(None);
        }
        match home.mkdir(Path::new(QUARANTINE_DIR), mode::LINK_DIR) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        let mut name = id.as_str().to_owned();
        let mut n = 0;
        while home.exists(&Path::new(QUARANTINE_DIR).join(&name))? {
            n += 1;
            name = format!("{}.{n}", id.as_str());
        }
        let q = Quarantined {
            name,
            reason: reason.to_owned(),
        };
        home.rename(Path::new(id.as_str()), &q.path())?;
        home.write(&q.path().join(REASON_FILE), mode::COMMITTED_FILE, reason.as_bytes())?;
        tracing::warn!(layer = id.as_str(), to = %q.path().display(), reason, "layer quarantined");
        Ok(Some(q))
    }

    /// The layers in the quarantine, by name.
    ///
    /// # Errors
    ///
    /// The home cannot be read.
    pub fn quarantined(&self) -> Result<Vec<Quarantined>> {
        let home = self.backend().home();
        let entries = match home.read_dir(Path::new(QUARANTINE_DIR)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out: Vec<Quarantined> = entries
            .into_iter()
            .map(|e| {
                let name = e.name.to_string_lossy().into_owned();
                let reason = home
                    .read(&Path::new(QUARANTINE_DIR).join(&e.name).join(REASON_FILE))
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                Quarantined { name, reason }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Deletes every layer in the quarantine (and the quarantine) and
    /// returns them: what a person asks for once they have looked.
    ///
    /// # Errors
    ///
    /// The home cannot be read or changed.
    pub fn clear_quarantine(&self) -> Result<Vec<Quarantined>> {
        let gone = self.quarantined()?;
        let home = self.backend().home();
        for q in &gone {
            home.remove_all(&q.path())?;
        }
        match home.remove_dir(Path::new(QUARANTINE_DIR)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        Ok(gone)
    }
}
