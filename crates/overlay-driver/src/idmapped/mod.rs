//! Layers made with their own uid/gid maps ([`CreateOpts::id_maps`]): one
//! image shared by containers that each see its files under their own
//! ids, as containerd 2 and containers/storage do with id-mapped mounts.
//!
//! - **Create** checks the maps before anything is made (the kernel's
//!   rules, container root mapped, host ids this process can give, the
//!   parent's maps, the backend's support), then, in the layer's staging
//!   directory, writes them to `ID/idmap` (a file Docker never reads),
//!   and gives `diff` and `work` to the container's root on the host.
//!   Nothing of the layers below is copied or chowned, except in the
//!   fallback (below).
//! - **Get** mounts every lower layer stored with container ids (the
//!   image's) id-mapped, and the layers stored with host ids (a parent
//!   made with the same maps, e.g. Docker's `-init` layer) as they are:
//!   the backend does it ([`MountRequest::id_map`]).
//! - **Fallback** ([`IdMapSupport::Copy`]: a kernel that cannot id-map
//!   overlay lowers): create copies each lower stored with container ids
//!   to `ID/mapped/N` (N its place in `lower`), owners as an id-mapped
//!   mount would show them, and get mounts those copies instead. Same
//!   view, paid in time and space per container.
//!
//! The file records the maps and which of the two the layer was made
//! with, so `get` does the same on every call:
//!
//! ```text
//! uid 0:100000:65536
//! gid 0:100000:65536
//! lowers mounts
//! ```

mod copy;
mod info;

pub use info::LayerIdMaps;

use std::path::{Path, PathBuf};

use overlay_archive::{IdMaps, IdRange};
use overlay_fs::ErrorKind;
use overlay_layout::{DIFF_DIR, LayerId, Lower, WORK_DIR};

use crate::backend::{Backend, IdMapSupport, LowerIdMap, MountRequest};
use crate::driver::Overlay2;
use crate::error::{DriverError, Result};
use crate::options::CreateOpts;

/// A layer's maps, in its directory: `ID/idmap`.
pub(crate) const IDMAP_FILE: &str = "idmap";
/// The fallback's copies of the lowers: `ID/mapped/N`.
pub(crate) const COPIES_DIR: &str = "mapped";
/// Mode of the idmap file (as `lower`: Docker's 0644 for layer files).
const IDMAP_MODE: u32 = 0o644;

/// How a layer with maps sees the layers below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lowers {
    /// Id-mapped mounts of the layers themselves.
    Mounts,
    /// Its own chowned copies in `ID/mapped/`.
    Copies,
}

/// What `ID/idmap` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LayerIdMap {
    pub(crate) maps: IdMaps,
    pub(crate) lowers: Lowers,
}

impl LayerIdMap {
    fn to_text(&self) -> String {
        let mut out = String::new();
        for r in &self.maps.uids {
            out += &format!("uid {r}\n");
        }
        for r in &self.maps.gids {
            out += &format!("gid {r}\n");
        }
        out += match self.lowers {
            Lowers::Mounts => "lowers mounts\n",
            Lowers::Copies => "lowers copies\n",
        };
        out
    }

    /// Parses what [`to_text`](Self::to_text) wrote; the error says which
    /// line is wrong and why.
    fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string())?;
        let (mut uids, mut gids, mut lowers) = (Vec::new(), Vec::new(), None);
        for (n, line) in text.lines().enumerate() {
            let bad = |why: String| format!("line {}: {why}: {line:?}", n + 1);
            let (key, value) = line.split_once(' ').ok_or_else(|| bad("not KEY VALUE".into()))?;
            match key {
                "uid" | "gid" => {
                    let r: IdRange = value.parse().map_err(bad)?;
                    if key == "uid" { &mut uids } else { &mut gids }.push(r);
                }
                "lowers" => {
                    lowers = Some(match value {
                        "mounts" => Lowers::Mounts,
                        "copies" => Lowers::Copies,
                        _ => return Err(bad("lowers must be mounts or copies".into())),
                    });
                }
                _ => return Err(bad(format!("unknown key {key:?}"))),
            }
        }
        let lowers = lowers.ok_or("it has no lowers line")?;
        let maps = IdMaps::new(uids, gids).map_err(|e| e.to_string())?;
        if maps.is_identity() {
            return Err("it holds no map".into());
        }
        Ok(Self { maps, lowers })
    }
}

/// Gives the layer directory `dir`'s `diff` and `work` (a base layer has
/// none), not their contents, to `uid`:`gid`: the root of the container
/// that writes there.
pub(crate) fn give_upper(home: &dyn overlay_fs::Fs, dir: &Path, uid: u32, gid: u32) -> Result<()> {
    home.set_owner(&dir.join(DIFF_DIR), uid, gid)?;
    if home.exists(&dir.join(WORK_DIR))? {
        home.set_owner(&dir.join(WORK_DIR), uid, gid)?;
    }
    Ok(())
}

/// The ids an id-mapped mount shows for a file stored with `uid`:`gid`:
/// the host ids the maps give them, or the kernel's overflow id (65534)
/// for an id outside every range. The fallback's copies get these owners,
/// and the fake backend shows them, so every way of seeing a layer agrees.
pub(crate) fn host_view(maps: &IdMaps, uid: u32, gid: u32) -> (u32, u32) {
    const OVERFLOW_ID: u32 = 65534;
    let one = |ranges: &[IdRange], id: u32| {
        ranges
            .iter()
            .find(|r| id >= r.container_id && id - r.container_id < r.size)
            .map_or(OVERFLOW_ID, |r| r.host_id + (id - r.container_id))
    };
    (one(&maps.uids, uid), one(&maps.gids, gid))
}

/// Are all host ids of `maps` ids of this process's user namespace? The
/// kernel refuses a child namespace's map (and a chown) otherwise.
pub(crate) fn check_own_namespace(maps: &IdMaps) -> std::result::Result<(), String> {
    use overlay_mount::userns::{IdKind, own_ranges};
    for (kind, file, ranges) in [
        (IdKind::Uid, "uid_map", &maps.uids),
        (IdKind::Gid, "gid_map", &maps.gids),
    ] {
        let Some(own) = own_ranges(kind) else { continue };
        let kind = if kind == IdKind::Uid { "uid" } else { "gid" };
        let mut own: Vec<(u64, u64)> = own.into_iter().map(|(f, n)| (u64::from(f), u64::from(n))).collect();
        own.sort_unstable();
        for r in ranges {
            let (mut at, end) = (u64::from(r.host_id), u64::from(r.host_id) + u64::from(r.size));
            for &(first, size) in &own {
                if first <= at && at < first + size {
                    at = first + size;
                }
            }
            if at < end {
                return Err(format!(
                    "{kind} map range {r}: host {kind} {at} is not mapped in this process's user namespace \
                     (see /proc/self/{file}), so no file can be given it"
                ));
            }
        }
    }
    Ok(())
}

impl<B: Backend> Overlay2<B> {
    /// The maps layer `id` was made with, if any.
    ///
    /// # Errors
    ///
    /// `ID/idmap` cannot be read, or does not parse (named as corrupt).
    pub(crate) fn layer_id_map(&self, id: &LayerId) -> Result<Option<LayerIdMap>> {
        match self.backend().home().read(&idmap_file(id)) {
            Ok(bytes) => LayerIdMap::parse(&bytes).map(Some).map_err(|why| DriverError::Corrupt {
                id: id.as_str().into(),
                what: format!("its {IDMAP_FILE} file: {why}"),
            }),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The maps the ids of layer `id`'s tar streams go through: its own,
    /// else the driver's (Docker's userns-remap).
    pub(crate) fn archive_id_maps(&self, id: &LayerId) -> Result<IdMaps> {
        Ok(match self.layer_id_map(id)? {
            Some(m) => m.maps,
            None => self.id_maps.clone(),
        })
    }

    /// What a new layer `id` on `parent` will be made with, checked before
    /// anything is made: the maps asked for, or its parent's when none
    /// are (a layer on a layer stored with host ids must see it so).
    ///
    /// # Errors
    ///
    /// [`DriverError::IdMap`] naming the problem: maps the kernel would
    /// refuse, container root without a host id, host ids this process
    /// cannot give, maps unlike the parent's, the driver remapping every
    /// layer already, or a backend that cannot id-map.
    pub(crate) fn plan_id_map(
        &self,
        id: &LayerId,
        parent: Option<&LayerId>,
        opts: &CreateOpts,
    ) -> Result<Option<LayerIdMap>> {
        let err = |reason: String| DriverError::IdMap {
            id: id.as_str().into(),
            reason,
        };
        let inherited = match parent {
            Some(p) => self.layer_id_map(p)?.map(|m| (p, m.maps)),
            None => None,
        };
        let maps = match (opts.id_maps.is_identity(), inherited) {
            (true, None) => return Ok(None),
            (true, Some((_, maps))) => maps,
            (false, inherited) => {
                opts.id_maps.validate().map_err(|e| err(e.to_string()))?;
                if let Some((p, maps)) = inherited.filter(|(_, m)| *m != opts.id_maps) {
                    return Err(err(format!(
                        "its parent {:?} is stored with other id maps ({}); a layer sees its parent's \
                         files with the ids they are stored with, so it must have the same maps",
                        p.as_str(),
                        maps
                    )));
                }
                opts.id_maps.clone()
            }
        };
        if !self.id_maps.is_identity() {
            return Err(err(
                "the driver already remaps every layer (userns-remap maps): a layer cannot add maps of its own".into(),
            ));
        }
        maps.root().map_err(|_| {
            err(format!(
                "the maps ({}) give container root (uid and gid 0) no host id: the layer's own files would have no owner",
                maps
            ))
        })?;
        self.backend().check_host_ids(&maps).map_err(err)?;
        let lowers = match &self.backend().capabilities().id_map {
            IdMapSupport::Mounts => Lowers::Mounts,
            IdMapSupport::Copy(_) => Lowers::Copies,
            IdMapSupport::Unsupported(why) => return Err(err(format!("cannot id-map layers here: {why}"))),
        };
        Ok(Some(LayerIdMap { maps, lowers }))
    }

    /// Makes the id-map part of a layer in its staging directory: the
    /// `idmap` file, `diff` and `work` owned by the container's root, and
    /// in the fallback the copies of the lowers stored with container ids.
    pub(crate) fn build_id_map(
        &self,
        id: &LayerId,
        staging: &Path,
        plan: &LayerIdMap,
        lower: Option<&Lower>,
    ) -> Result<()> {
        let home = self.backend().home();
        let (uid, gid) = plan.maps.root().map_err(|e| DriverError::IdMap {
            id: id.as_str().into(),
            reason: e.to_string(),
        })?;
        home.write(&staging.join(IDMAP_FILE), IDMAP_MODE, plan.to_text().as_bytes())?;
        give_upper(&**home, staging, uid, gid)?;
        let (Lowers::Copies, Some(lower)) = (plan.lowers, lower) else {
            return Ok(());
        };
        let layers = self.resolve_lower(id, lower, true)?;
        home.mkdir(&staging.join(COPIES_DIR), 0o700)?;
        for (i, layer) in layers.iter().enumerate() {
            if self.layer_id_map(layer)?.is_some() {
                continue;
            }
            let dir = staging.join(COPIES_DIR).join(i.to_string());
            home.mkdir(&dir, 0o700)?;
            let dst = self.backend().subtree(&dir)?;
            copy::copy_mapped(&*self.diff_tree(layer)?, &*dst, &plan.maps)?;
        }
        Ok(())
    }

    /// Sets up `req` (a mount of layer `id` over `layers`, uppermost
    /// first) for the layer's maps, if it has any: id-mapped lowers, or
    /// its copies in their place.
    ///
    /// # Errors
    ///
    /// A corrupt `idmap` file, or a copy the fallback made is missing.
    pub(crate) fn id_map_mount(&self, id: &LayerId, req: &mut MountRequest, layers: &[LayerId]) -> Result<()> {
        let Some(own) = self.layer_id_map(id)? else {
            return Ok(());
        };
        // A committed layer's own diff comes first: stored with host ids.
        let skip = req.lowers.len() - layers.len();
        let mut mapped = vec![false; req.lowers.len()];
        for (i, layer) in layers.iter().enumerate() {
            mapped[skip + i] = !self.backend().home().exists(&idmap_file(layer))?;
        }
        match own.lowers {
            Lowers::Mounts => {
                req.id_map = Some(LowerIdMap { maps: own.maps, mapped });
            }
            Lowers::Copies => {
                for (i, flag) in mapped.iter().enumerate().skip(skip) {
                    if !flag {
                        continue;
                    }
                    let copy = Path::new(id.as_str()).join(COPIES_DIR).join((i - skip).to_string());
                    if !self.backend().home().metadata(&copy).is_ok_and(|m| m.is_dir()) {
                        return Err(DriverError::Corrupt {
                            id: id.as_str().into(),
                            what: format!(
                                "its copy {} of lower layer {:?} is missing",
                                copy.display(),
                                layers[i - skip].as_str()
                            ),
                        });
                    }
                    req.lowers[i] = copy;
                }
            }
        }
        Ok(())
    }
}

fn idmap_file(id: &LayerId) -> PathBuf {
    Path::new(id.as_str()).join(IDMAP_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idmap_file_round_trips_and_names_what_is_wrong() {
        let r = IdRange {
            container_id: 0,
            host_id: 100_000,
            size: 65536,
        };
        let m = LayerIdMap {
            maps: IdMaps::new(vec![r], vec![r]).unwrap(),
            lowers: Lowers::Copies,
        };
        let text = m.to_text();
        assert_eq!(text, "uid 0:100000:65536\ngid 0:100000:65536\nlowers copies\n");
        assert_eq!(LayerIdMap::parse(text.as_bytes()).unwrap(), m);
        for (bad, says) in [
            (&b"uid 0:1:1\ngid 0:1:1\n"[..], "no lowers line"),
            (b"uid 0:1\n", "line 1: 2 field(s)"),
            (b"uid 0:1:1\nlowers copies\n", "a gid map is needed"),
            (b"lowers sometimes\n", "line 1: lowers must be mounts or copies"),
            (b"colour blue\n", "unknown key \"colour\""),
            (b"lowers mounts\n", "holds no map"),
            (b"uid 0:1:1\ngid 0:1:1\nuid 0:5:1\nlowers mounts\n", "overlap"),
            (b"\xff", "not UTF-8"),
        ] {
            let e = LayerIdMap::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn host_view_shifts_and_overflows() {
        let maps = IdMaps::new(
            vec![
                IdRange {
                    container_id: 0,
                    host_id: 100_000,
                    size: 1000,
                },
                IdRange {
                    container_id: 1000,
                    host_id: 5000,
                    size: 1,
                },
            ],
            vec![IdRange {
                container_id: 0,
                host_id: 200_000,
                size: 10,
            }],
        )
        .unwrap();
        assert_eq!(host_view(&maps, 0, 0), (100_000, 200_000));
        assert_eq!(host_view(&maps, 1000, 9), (5000, 200_009));
        assert_eq!(host_view(&maps, 1001, 10), (65534, 65534));
    }
}
