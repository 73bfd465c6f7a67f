//! An in-memory index of which layer stacks on which, for long-running
//! servers: loaded once (one small read per layer), then kept by create
//! and remove, so `children` and the "has children" check of `remove`
//! cost the same for ten layers or ten thousand.

use std::collections::{BTreeSet, HashMap};

use overlay_layout::LayerId;

use crate::backend::Backend;
use crate::driver::Overlay2;
use crate::error::Result;

/// Parent and children of every layer of a home.
#[derive(Debug, Default)]
pub(crate) struct Index {
    parent: HashMap<LayerId, Option<LayerId>>,
    children: HashMap<LayerId, BTreeSet<LayerId>>,
}

impl Index {
    /// Records `id` on `parent`.
    pub(crate) fn insert(&mut self, id: LayerId, parent: Option<LayerId>) {
        if let Some(p) = &parent {
            self.children.entry(p.clone()).or_default().insert(id.clone());
        }
        self.parent.insert(id, parent);
    }

    /// Forgets `id`; returns its parent, for putting it back.
    pub(crate) fn remove(&mut self, id: &LayerId) -> Option<Option<LayerId>> {
        let parent = self.parent.remove(id)?;
        if let Some(p) = &parent
            && let Some(set) = self.children.get_mut(p)
        {
            set.remove(id);
            if set.is_empty() {
                self.children.remove(p);
            }
        }
        Some(parent)
    }

    /// Is `id` known?
    pub(crate) fn contains(&self, id: &LayerId) -> bool {
        self.parent.contains_key(id)
    }

    /// Layers stacked directly on `id`, sorted.
    pub(crate) fn children(&self, id: &LayerId) -> Vec<LayerId> {
        self.children
            .get(id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl<B: Backend> Overlay2<B> {
    /// Keeps the parent/child links of every layer in memory, loaded now
    /// (one read of each layer's `lower` and of the `l/` link it names
    /// first) and kept by create and remove: [`children`](Self::children)
    /// becomes a lookup, and `remove` refuses a layer others stack on
    /// ([`DriverError::HasChildren`](crate::DriverError::HasChildren)). For a server that owns the home;
    /// a second process adding layers behind its back is not seen until
    /// [`reload_index`](Self::reload_index).
    ///
    /// # Errors
    ///
    /// The home cannot be listed.
    pub fn with_index(mut self) -> Result<Self> {
        self.index = Some(parking_lot::Mutex::new(self.load_index()?));
        Ok(self)
    }

    /// Reads the parent/child links again (after `repair`, say).
    ///
    /// # Errors
    ///
    /// The home cannot be listed.
    pub fn reload_index(&self) -> Result<()> {
        if let Some(index) = &self.index {
            let fresh = self.load_index()?;
            *index.lock() = fresh;
        }
        Ok(())
    }

    fn load_index(&self) -> Result<Index> {
        let mut index = Index::default();
        for id in self.layers()? {
            // A layer whose parent cannot be resolved counts as a base
            // layer here; `check` names the damage.
            let parent = self.parent_of(id.as_str()).ok().flatten();
            index.insert(id, parent);
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> LayerId {
        LayerId::new(s).expect("id")
    }

    #[test]
    fn keeps_both_directions() {
        let mut i = Index::default();
        i.insert(id("a"), None);
        i.insert(id("b"), Some(id("a")));
        i.insert(id("c"), Some(id("a")));
        assert_eq!(i.children(&id("a")), [id("b"), id("c")]);
        assert_eq!(i.remove(&id("b")), Some(Some(id("a"))));
        assert_eq!(i.children(&id("a")), [id("c")]);
        assert_eq!(i.remove(&id("b")), None);
        i.remove(&id("c"));
        assert!(i.children(&id("a")).is_empty());
        assert!(i.contains(&id("a")));
    }
}
