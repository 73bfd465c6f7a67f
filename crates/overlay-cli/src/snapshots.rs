//! `check` of a containerd snapshotter's home: its database against its
//! layers (the layout itself is checked as any home's).

use std::path::Path;

use overlay_driver::KernelBackend;
use overlay_snapshotter::{DB_FILE, Mismatch, Snapshotter};

use crate::error::{Failure, Result};

/// The home's snapshotter, if the home is one and its database can be
/// opened; else a note says why its records are not checked (a running
/// server holds the database).
pub fn open(home: &Path, notes: &mut Vec<String>) -> Option<Snapshotter<KernelBackend>> {
    if !home.join(DB_FILE).exists() {
        return None;
    }
    match Snapshotter::open(home) {
        Ok(s) => Some(s),
        Err(e) => {
            notes.push(format!(
                "snapshot records not checked ({e}); stop the snapshotter to check them"
            ));
            None
        }
    }
}

fn kind(m: &Mismatch) -> String {
    match m {
        Mismatch::OrphanLayer(_) => "SnapshotOrphanLayer",
        Mismatch::MissingLayer { .. } => "SnapshotMissingLayer",
    }
    .into()
}

fn failure(e: overlay_snapshotter::SnapshotError) -> Failure {
    Failure::new(e.to_string())
}

/// Where the database and the layers disagree.
pub fn check(s: &Snapshotter<KernelBackend>) -> Result<Vec<(String, String)>> {
    Ok(s.check()
        .map_err(failure)?
        .iter()
        .map(|m| (kind(m), m.to_string()))
        .collect())
}

/// Puts the disagreements right (orphan layers removed, records of lost
/// layers forgotten with what stacks on them).
pub fn repair(s: &Snapshotter<KernelBackend>) -> Result<Vec<(String, String)>> {
    Ok(s.repair()
        .map_err(failure)?
        .iter()
        .map(|m| (kind(m), format!("fixed: {m}")))
        .collect())
}
