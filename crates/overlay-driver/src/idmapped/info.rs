//! A layer's maps as callers that describe mounts for someone else to
//! perform need them (containerd's snapshotter).

use overlay_archive::IdMaps;
use overlay_layout::{relative_diff_dir, relative_layer_dir};

use super::Lowers;
use crate::backend::Backend;
use crate::driver::Overlay2;
use crate::error::Result;

/// How a layer made with id maps shows the layers below it, for callers
/// that describe its mounts for someone else to perform (containerd 2
/// takes `uidmap=`/`gidmap=` mount options and id-maps every lowerdir).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerIdMaps {
    /// The layer's uid and gid maps.
    pub maps: IdMaps,
    /// One flag per lower layer, uppermost first (as
    /// [`LayerDirs::lower_links`](crate::LayerDirs::lower_links)): stored
    /// with container ids (shown id-mapped), or with host ids already (a
    /// parent made with the same maps, shown as it is).
    pub lowers_mapped: Vec<bool>,
    /// The layer sees its lowers through chowned copies of its own
    /// ([`IdMapSupport::Copy`](crate::IdMapSupport::Copy)), not through id-mapped mounts.
    pub copies: bool,
}

impl<B: Backend> Overlay2<B> {
    /// The maps layer `id` was made with ([`CreateOpts::id_maps`](crate::CreateOpts::id_maps), or
    /// inherited from its parent), and how it shows its lowers; `None`
    /// for a layer without maps.
    ///
    /// # Errors
    ///
    /// An invalid or missing layer, a corrupt `idmap` or `lower` file.
    pub fn layer_id_maps(&self, id: &str) -> Result<Option<LayerIdMaps>> {
        let id = Self::layer_id(id)?;
        self.require(&id)?;
        let Some(own) = self.layer_id_map(&id)? else {
            return Ok(None);
        };
        let lowers = match self.read_lower(&id)? {
            Some(lower) => self.resolve_lower(&id, &lower, true)?,
            None => Vec::new(),
        };
        let lowers_mapped = lowers
            .iter()
            .map(|l| self.layer_id_map(l).map(|m| m.is_none()))
            .collect::<Result<_>>()?;
        Ok(Some(LayerIdMaps {
            maps: own.maps,
            lowers_mapped,
            copies: own.lowers == Lowers::Copies,
        }))
    }

    /// The owner of layer `id`'s `diff` directory (its files' root as a
    /// mount shows it): how a caller tells a layer someone chowned for a
    /// user namespace (containerd's client does, for snapshotters it
    /// believes cannot id-map) from one stored with container ids.
    ///
    /// # Errors
    ///
    /// An invalid or missing layer.
    pub fn diff_owner(&self, id: &str) -> Result<(u32, u32)> {
        let id = Self::layer_id(id)?;
        self.require(&id)?;
        let m = self.backend().home().metadata(&relative_diff_dir(&id))?;
        Ok((m.uid, m.gid))
    }

    /// Gives layer `id`'s `diff` and `work` (not their contents) to
    /// `uid`:`gid`: a container layer on lowers already stored with its
    /// host ids, whose root must own what it writes at `/` (containerd's
    /// overlayfs does the same for such a snapshot).
    ///
    /// # Errors
    ///
    /// An invalid or missing layer, or the change is refused.
    pub fn set_upper_owner(&self, id: &str, uid: u32, gid: u32) -> Result<()> {
        let id = Self::layer_id(id)?;
        self.require(&id)?;
        super::give_upper(&**self.backend().home(), &relative_layer_dir(&id), uid, gid)
    }
}
