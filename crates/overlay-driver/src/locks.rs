//! Per-layer locks and mount reference counts, as Docker's `locker` and
//! `RefCounter`: operations on one layer are serialised, operations on
//! different layers never wait for each other beyond one shard's map
//! lookup.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use parking_lot::Mutex;

/// What is known about one layer while the driver runs.
#[derive(Debug, Default)]
pub(crate) struct LayerState {
    /// Outstanding `get`s that mounted (layers with a parent).
    pub mounts: usize,
    /// Whether a mount made before this driver started has been looked
    /// for (once per layer, as Docker's `RefCounter` checks).
    pub checked: bool,
}

const SHARDS: usize = 32;

/// Locks keyed by layer id, in shards.
#[derive(Debug)]
pub(crate) struct Locks {
    shards: Vec<Mutex<HashMap<String, Arc<Mutex<LayerState>>>>>,
}

impl Locks {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, id: &str) -> &Mutex<HashMap<String, Arc<Mutex<LayerState>>>> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    /// The state of `id`, locked for the caller.
    pub(crate) fn lock(&self, id: &str) -> LayerGuard {
        let entry = self.shard(id).lock().entry(id.to_string()).or_default().clone();
        LayerGuard {
            guard: entry.lock_arc(),
        }
    }

    /// Ids with outstanding mounts, for `cleanup`.
    pub(crate) fn mounted(&self) -> Vec<String> {
        let mut out = Vec::new();
        for shard in &self.shards {
            for (id, state) in shard.lock().iter() {
                if state.lock().mounts > 0 {
                    out.push(id.clone());
                }
            }
        }
        out
    }
}

/// A locked layer state.
pub(crate) struct LayerGuard {
    guard: parking_lot::ArcMutexGuard<parking_lot::RawMutex, LayerState>,
}

impl std::ops::Deref for LayerGuard {
    type Target = LayerState;
    fn deref(&self) -> &LayerState {
        &self.guard
    }
}

impl std::ops::DerefMut for LayerGuard {
    fn deref_mut(&mut self) -> &mut LayerState {
        &mut self.guard
    }
}
