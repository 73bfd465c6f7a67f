//! uid/gid mappings between a container's ids and the host's, as in user
//! namespace remapping (Docker's `idtools.IDMap`).

use crate::error::{ArchiveError, Result};

/// One contiguous range: container ids `container_id..container_id+size`
/// are host ids `host_id..host_id+size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First id inside the container.
    pub container_id: u32,
    /// The host id it maps to.
    pub host_id: u32,
    /// How many ids the range covers.
    pub size: u32,
}

/// uid and gid mappings; empty means identity (no remapping).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMaps {
    /// uid ranges.
    pub uids: Vec<IdRange>,
    /// gid ranges.
    pub gids: Vec<IdRange>,
}

fn map(ranges: &[IdRange], id: u32, to_host: bool, what: &'static str) -> Result<u32> {
    if ranges.is_empty() {
        return Ok(id);
    }
    for r in ranges {
        let (from, to) = if to_host {
            (r.container_id, r.host_id)
        } else {
            (r.host_id, r.container_id)
        };
        if id >= from && (id - from) < r.size {
            return Ok(to + (id - from));
        }
    }
    Err(ArchiveError::Unmapped { what, id: id.into() })
}

impl IdMaps {
    /// No remapping.
    pub fn identity() -> Self {
        Self::default()
    }

    /// Is this the identity mapping?
    pub fn is_identity(&self) -> bool {
        self.uids.is_empty() && self.gids.is_empty()
    }

    /// Container ids (from a tar) to host ids (on disk).
    ///
    /// # Errors
    ///
    /// An id outside every range.
    pub fn to_host(&self, uid: u32, gid: u32) -> Result<(u32, u32)> {
        Ok((
            map(&self.uids, uid, true, "container uid")?,
            map(&self.gids, gid, true, "container gid")?,
        ))
    }

    /// Host ids (on disk) to container ids (in a tar).
    ///
    /// # Errors
    ///
    /// An id outside every range.
    pub fn to_container(&self, uid: u32, gid: u32) -> Result<(u32, u32)> {
        Ok((
            map(&self.uids, uid, false, "host uid")?,
            map(&self.gids, gid, false, "host gid")?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_map_both_ways() {
        let r = IdRange {
            container_id: 0,
            host_id: 100_000,
            size: 65536,
        };
        let m = IdMaps {
            uids: vec![r],
            gids: vec![r],
        };
        assert_eq!(m.to_host(0, 5).unwrap(), (100_000, 100_005));
        assert_eq!(m.to_container(100_000, 165_535).unwrap(), (0, 65535));
        assert!(m.to_host(65536, 0).unwrap_err().to_string().contains("65536"));
        assert!(m.to_container(5, 100_000).is_err());
        assert_eq!(IdMaps::identity().to_host(7, 8).unwrap(), (7, 8));
    }
}
