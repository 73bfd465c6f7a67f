//! Docker's `--userns-remap` ([`Overlay2::with_id_maps`]): one uid map
//! and one gid map for every layer of the home, given by dockerd at Init.
//!
//! Layer tars carry container ids and the home host ids: apply shifts
//! them in, diff shifts them back (the archive's [`IdMaps`]). What the
//! maps change in the home itself is whom the directories belong to, as
//! Docker 20.10.24's overlay2 makes them (`idtools.MkdirAndChown` with
//! the remapped root, `GetRootUIDGID`):
//!
//! | path | owner | why |
//! |---|---|---|
//! | home, `ID/` | the daemon, group of the remapped root | the container's root must traverse them to its rootfs (0710) |
//! | `ID/diff`, `ID/work`, `ID/merged` | the remapped root | a container's `/` is its upper dir: root in the container owns it |
//! | `ID/work/work` | the remapped root, after each read-write mount | overlay makes it as the mounter (Docker chowns it) |
//!
//! `l/` stays the daemon's. Unlike the per-layer maps of
//! [`CreateOpts::id_maps`](crate::CreateOpts::id_maps), nothing is
//! id-mapped at mount time: the files are stored with host ids.

use std::path::Path;

use overlay_archive::{IdMaps, IdRange};
use overlay_fs::ErrorKind;
use overlay_layout::WORK_DIR;

use crate::backend::Backend;
use crate::driver::Overlay2;
use crate::error::{DriverError, Result};

impl<B: Backend> Overlay2<B> {
    /// Checks daemon-wide id maps before anything is made with them: the
    /// kernel's rules for a user namespace's maps (no empty range, none
    /// past the last id, no overlap, both maps or neither) and container
    /// root mapped (Docker's `GetRootUIDGID`, which its Init calls before
    /// it makes the home). The remapped root's host uid and gid; `None`
    /// for no maps.
    ///
    /// # Errors
    ///
    /// [`DriverError::BadOption`] naming the map and the range at fault.
    pub fn check_id_maps(maps: &IdMaps) -> Result<Option<(u32, u32)>> {
        if maps.is_identity() {
            return Ok(None);
        }
        let bad = |why: String| DriverError::BadOption(format!("userns-remap id maps: {why}"));
        maps.validate().map_err(|e| bad(e.to_string()))?;
        maps.root().map(Some).map_err(|_| {
            bad(format!(
                "container root (uid and gid 0) has no host id in uid map [{}] / gid map [{}]: \
                 the layers' directories would have no owner",
                IdRange::list(&maps.uids),
                IdRange::list(&maps.gids)
            ))
        })
    }

    /// Maps ids between the home (host) and layer tars (container) for
    /// every layer: dockerd's `--userns-remap`. Gives the home to the
    /// remapped root's group (see the module docs); layers made from now
    /// on get the rest.
    ///
    /// # Errors
    ///
    /// Maps [`check_id_maps`](Self::check_id_maps) refuses (the home is
    /// then left as it was), or the home cannot be chowned.
    pub fn with_id_maps(mut self, id_maps: IdMaps) -> Result<Self> {
        if let Some((_, gid)) = Self::check_id_maps(&id_maps)? {
            self.give_group(Path::new(""), gid)?;
        }
        self.id_maps = id_maps;
        Ok(self)
    }

    /// The remapped root's host uid and gid, if the driver remaps.
    fn remapped_root(&self) -> Option<(u32, u32)> {
        self.id_maps.root().ok().filter(|_| !self.id_maps.is_identity())
    }

    /// `path` keeps its owner and gets group `gid`: Docker's `dirID`
    /// (the daemon's uid, the remapped root's gid).
    fn give_group(&self, path: &Path, gid: u32) -> Result<()> {
        let home = self.backend().home();
        let uid = home.metadata(path)?.uid;
        home.set_owner(path, uid, gid)?;
        Ok(())
    }

    /// A new layer's directories (in `staging`, its scratch name) for the
    /// remapped root: the layer dir to its group, `diff` and `work` to it.
    pub(crate) fn remap_new_layer(&self, staging: &Path) -> Result<()> {
        let Some((uid, gid)) = self.remapped_root() else {
            return Ok(());
        };
        self.give_group(staging, gid)?;
        crate::idmapped::give_upper(&**self.backend().home(), staging, uid, gid)
    }

    /// `dir` (a layer's `merged` before its mount, or an applied diff
    /// before it replaces the empty one) to the remapped root.
    pub(crate) fn remap_dir(&self, dir: &Path) -> Result<()> {
        match self.remapped_root() {
            Some((uid, gid)) => Ok(self.backend().home().set_owner(dir, uid, gid)?),
            None => Ok(()),
        }
    }

    /// After a read-write mount of layer dir `layer`: the `work/work`
    /// overlay made (as root) to the remapped root, as Docker does.
    pub(crate) fn remap_after_mount(&self, layer: &Path) -> Result<()> {
        let Some((uid, gid)) = self.remapped_root() else {
            return Ok(());
        };
        match self
            .backend()
            .home()
            .set_owner(&layer.join(WORK_DIR).join(WORK_DIR), uid, gid)
        {
            // A backend whose overlay keeps no work dir of its own.
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            other => Ok(other?),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use overlay_archive::IdRange;

    use super::*;
    use crate::{CreateOpts, FakeBackend, GraphDriver};

    fn maps(ranges: &[(u32, u32, u32)]) -> IdMaps {
        let r: Vec<IdRange> = ranges
            .iter()
            .map(|&(container_id, host_id, size)| IdRange {
                container_id,
                host_id,
                size,
            })
            .collect();
        IdMaps {
            uids: r.clone(),
            gids: r,
        }
    }

    /// `(uid, gid)` of `path` in the driver's home.
    fn owner(d: &Overlay2<FakeBackend>, path: &str) -> (u32, u32) {
        let md = d.backend().home().metadata(Path::new(path)).unwrap();
        (md.uid, md.gid)
    }

    fn tar(entries: &[(&str, u64, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for &(path, id, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(id);
            h.set_gid(id);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, path, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn bad_maps_are_named() {
        for (m, want) in [
            (maps(&[(0, 100_000, 0)]), "size 0 maps nothing"),
            (
                maps(&[(0, 100_000, 10), (5, 200_000, 10)]),
                "overlap on the container side",
            ),
            (maps(&[(0, u32::MAX - 5, 10)]), "run past the last id"),
            (
                maps(&[(1, 100_000, 10)]),
                "container root (uid and gid 0) has no host id",
            ),
        ] {
            let e = Overlay2::<FakeBackend>::check_id_maps(&m).unwrap_err().to_string();
            assert!(e.starts_with("userns-remap id maps: ") && e.contains(want), "{e}");
            let d = Overlay2::new(FakeBackend::new(), &[] as &[&str]).unwrap();
            assert_eq!(d.with_id_maps(m).unwrap_err().to_string(), e);
        }
        assert_eq!(
            Overlay2::<FakeBackend>::check_id_maps(&IdMaps::identity()).unwrap(),
            None
        );
    }

    #[test]
    fn layers_belong_to_the_remapped_root_and_ids_shift_both_ways() {
        let d = Overlay2::new(FakeBackend::new(), &[] as &[&str])
            .unwrap()
            .with_id_maps(maps(&[(0, 100_000, 65536)]))
            .unwrap();
        let (root, group) = ((100_000, 100_000), 100_000);
        assert_eq!(owner(&d, "").1, group, "the home's group");
        let none = CreateOpts::default();
        d.create("base", None, &none).unwrap();
        let layer = tar(&[("f", 0, b"root"), ("home/u/f", 1000, b"user")]);
        d.apply_diff("base", None, &mut &layer[..]).unwrap();
        d.create_read_write("rw", Some("base"), &none).unwrap();
        assert_eq!(owner(&d, "base").1, group);
        for dir in ["base/diff", "rw/diff", "rw/work", "base/diff/home", "base/diff/home/u"] {
            assert_eq!(owner(&d, dir), root, "{dir}");
        }
        assert_eq!(owner(&d, "base/diff/f"), root);
        assert_eq!(owner(&d, "base/diff/home/u/f"), (101_000, 101_000));
        d.get("rw", None).unwrap();
        assert_eq!(owner(&d, "rw/merged"), root);
        d.put("rw").unwrap();
        let mut out = Vec::new();
        d.diff("base", None, &mut out).unwrap();
        let mut ids: Vec<(String, u64)> = tar::Archive::new(&out[..])
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.header().uid().unwrap())
            })
            .collect();
        ids.sort();
        assert_eq!(
            ids,
            [("f", 0), ("home", 0), ("home/u", 0), ("home/u/f", 1000)].map(|(p, u)| (p.to_owned(), u))
        );
    }
}
