//! containerd's remap labels: a snapshot whose container runs in a user
//! namespace asks, with `containerd.io/snapshot/uidmapping` and
//! `containerd.io/snapshot/gidmapping` (`ctr run --uidmap … --gidmap …
//! --remap-labels`; containerd 2's CRI with `remap-ids`), to see its
//! image's files under the namespace's ids. The labels become the layer's
//! [`CreateOpts::id_maps`](overlay_driver::CreateOpts::id_maps): the driver
//! checks and stores them; this module only reads them.
//!
//! Values are containerd's `userns.IDMap.Marshal` form:
//! `CONTAINER:HOST:SIZE` ranges separated by commas.

use std::collections::BTreeMap;

use overlay_archive::idmap::{IdKind, IdMapError};
use overlay_archive::{IdMaps, IdRange};
use overlay_driver::{Backend, Overlay2};

use crate::error::{Result, SnapshotError};

/// The label holding a snapshot's uid map.
pub const LABEL_UID_MAPPING: &str = "containerd.io/snapshot/uidmapping";
/// The label holding a snapshot's gid map.
pub const LABEL_GID_MAPPING: &str = "containerd.io/snapshot/gidmapping";

/// How an id-mapped snapshot's mounts are described to containerd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdMapMounts {
    /// The snapshotter mounts the id-mapped overlay itself (under the
    /// layer's `merged`) and returns a bind mount of it: plain mounts any
    /// containerd can perform (1.6 and 1.7 know no `uidmap=` option; the
    /// kernel would refuse it as an overlay option). Unmounted on Remove
    /// and Commit; a restarted server adopts what is still mounted.
    #[default]
    Bind,
    /// containerd 2's form, as its own overlayfs snapshotter returns it:
    /// the usual mounts plus `uidmap=`/`gidmap=` options, which
    /// containerd 2's mount code turns into id-mapped lowerdirs. Where
    /// that form cannot say what the layer needs (some lowers stored
    /// with host ids, or the kernel cannot id-map and the layer uses
    /// chowned copies) the bind form is used instead.
    Options,
}

impl std::str::FromStr for IdMapMounts {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "bind" => Ok(Self::Bind),
            "options" => Ok(Self::Options),
            _ => Err(format!("{s:?}: expected bind or options")),
        }
    }
}

/// The maps snapshot `key`'s labels ask for; identity when it has
/// neither label.
///
/// # Errors
///
/// InvalidArgument naming the label and the problem: only one of the two
/// labels, a range that is not `CONTAINER:HOST:SIZE`, or maps the kernel
/// would refuse (overlapping, out of range, empty, too many ranges).
pub fn label_maps(key: &str, labels: &BTreeMap<String, String>) -> Result<IdMaps> {
    let uid = labels.get(LABEL_UID_MAPPING);
    let gid = labels.get(LABEL_GID_MAPPING);
    let bad =
        |label: &str, why: String| SnapshotError::InvalidArgument(format!("snapshot {key:?}: label {label}: {why}"));
    let (uid, gid) = match (uid, gid) {
        (None, None) => return Ok(IdMaps::identity()),
        (Some(u), Some(g)) => (u, g),
        (Some(_), None) => return Err(bad(LABEL_GID_MAPPING, missing(LABEL_UID_MAPPING))),
        (None, Some(_)) => return Err(bad(LABEL_UID_MAPPING, missing(LABEL_GID_MAPPING))),
    };
    let uids = IdRange::parse_list(IdKind::Uid, uid).map_err(|e| bad(LABEL_UID_MAPPING, e.to_string()))?;
    let gids = IdRange::parse_list(IdKind::Gid, gid).map_err(|e| bad(LABEL_GID_MAPPING, e.to_string()))?;
    IdMaps::new(uids, gids).map_err(|e| {
        let label = match e {
            IdMapError::ZeroSize { kind, .. }
            | IdMapError::OutOfRange { kind, .. }
            | IdMapError::Overlap { kind, .. }
            | IdMapError::TooMany { kind, .. }
            | IdMapError::Syntax { kind, .. } => kind,
            IdMapError::OneSided { missing } => missing,
            _ => IdKind::Uid,
        };
        bad(
            if label == IdKind::Gid {
                LABEL_GID_MAPPING
            } else {
                LABEL_UID_MAPPING
            },
            e.to_string(),
        )
    })
}

/// The host root of `maps` when the snapshot's `parent` layer is already
/// stored with it: containerd's client chowned a copy of the image itself
/// (`<parent>-remap` committed as a digest of parent and maps) and sends
/// the labels all the same. It does so where it believes the snapshotter
/// cannot id-map: always in containerd 1.7 (its proxy plugins have no
/// capabilities), and in 2.x when `[proxy_plugins.NAME]` lacks
/// `capabilities = ["remap-ids"]` (containerd `client/container_opts.go`
/// `resolveSnapshotOptions`, then Prepare with the same labels;
/// containerd#10732). Id-mapping that copy again would shift its ids
/// twice; as containerd's overlayfs then does, the new layer only gives
/// its upper to the container's root. Told apart by the parent's `diff`
/// owner: an image layer's root belongs to container root (0), a copy
/// chowned for these maps to their host root. `None` otherwise (no
/// parent, no maps, a parent made with maps, container root unmapped:
/// the driver names that).
pub(crate) fn chowned_by_client<B: Backend>(
    driver: &Overlay2<B>,
    parent: Option<&str>,
    maps: &IdMaps,
) -> overlay_driver::Result<Option<(u32, u32)>> {
    let Some(parent) = parent.filter(|_| !maps.is_identity()) else {
        return Ok(None);
    };
    let Ok(root) = maps.root() else { return Ok(None) };
    if root == (0, 0) || driver.layer_id_maps(parent)?.is_some() {
        return Ok(None);
    }
    Ok((driver.diff_owner(parent)? == root).then_some(root))
}

fn missing(other: &str) -> String {
    format!("missing, while {other} is set: a user namespace needs both maps")
}

/// The labels' values as containerd 2's overlayfs passes them on:
/// `uidmap=…`, `gidmap=…` (the maps in the labels' own syntax).
pub fn mount_options(maps: &IdMaps) -> [String; 2] {
    [
        format!("uidmap={}", IdRange::list(&maps.uids)),
        format!("gidmap={}", IdRange::list(&maps.gids)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn labels_become_maps_and_bad_ones_are_named() {
        assert!(label_maps("k", &labels(&[("other", "x")])).unwrap().is_identity());
        let m = label_maps(
            "k",
            &labels(&[
                (LABEL_UID_MAPPING, "0:100000:1000,1000:5000:1"),
                (LABEL_GID_MAPPING, "0:200000:65536"),
            ]),
        )
        .unwrap();
        assert_eq!(m.root().unwrap(), (100_000, 200_000));
        assert_eq!(
            mount_options(&m),
            ["uidmap=0:100000:1000,1000:5000:1", "gidmap=0:200000:65536"]
        );
        for (pairs, says) in [
            (
                &[(LABEL_UID_MAPPING, "0:1:1")][..],
                "label containerd.io/snapshot/gidmapping: missing",
            ),
            (
                &[(LABEL_GID_MAPPING, "0:1:1")],
                "label containerd.io/snapshot/uidmapping: missing",
            ),
            (
                &[(LABEL_UID_MAPPING, "0:1"), (LABEL_GID_MAPPING, "0:1:1")],
                "label containerd.io/snapshot/uidmapping: uid map \"0:1\"",
            ),
            (
                &[(LABEL_UID_MAPPING, "0:1:1"), (LABEL_GID_MAPPING, "0:10:10,5:100:10")],
                "label containerd.io/snapshot/gidmapping: gid map range",
            ),
            (
                &[(LABEL_UID_MAPPING, "0:4294967290:100"), (LABEL_GID_MAPPING, "0:1:1")],
                "run past the last id",
            ),
        ] {
            let e = label_maps("k", &labels(pairs)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.to_string().contains(says), "{pairs:?}: {e}");
        }
    }
}
