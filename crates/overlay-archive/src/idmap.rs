//! uid/gid mappings between a container's ids and the host's, as in user
//! namespace remapping (Docker's `idtools.IDMap`), in the form Docker,
//! OCI tools, Podman (`--uidmap`) and containerd (`uidmap=` mount option)
//! write them: `CONTAINER:HOST:SIZE`, several ranges per map.
//!
//! [`IdMaps::new`] accepts only maps the kernel would accept in a user
//! namespace's `uid_map`/`gid_map` (the same rules `map_write` applies),
//! so a map that parses here never fails later at mount time for its
//! shape: no empty range, no range past `u32::MAX - 1` (the last id, -1,
//! means "no id"), no two ranges overlapping on either side, at most
//! [`MAX_RANGES`] ranges.

use std::fmt;
use std::str::FromStr;

use crate::error::{ArchiveError, Result};

/// The most ranges the kernel takes in one `uid_map` or `gid_map`
/// (`UID_GID_MAP_MAX_EXTENTS`, Linux 4.15 and later; 5 before).
pub const MAX_RANGES: usize = 340;

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

/// Which map a range or a problem belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// The uid map.
    Uid,
    /// The gid map.
    Gid,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Uid => "uid",
            Self::Gid => "gid",
        })
    }
}

/// A map the kernel would refuse, named with the range at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdMapError {
    /// Not `CONTAINER:HOST:SIZE` with three decimal numbers.
    #[error("{kind} map {spec:?}: {reason} (expected CONTAINER:HOST:SIZE, e.g. 0:100000:65536)")]
    Syntax {
        /// uid or gid.
        kind: IdKind,
        /// The text as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A range of size 0.
    #[error("{kind} map range {range}: size 0 maps nothing")]
    ZeroSize {
        /// uid or gid.
        kind: IdKind,
        /// The range.
        range: IdRange,
    },
    /// A range that runs past the last id (4294967294).
    #[error("{kind} map range {range}: {side} ids {first}..{first}+{size} run past the last id 4294967294")]
    OutOfRange {
        /// uid or gid.
        kind: IdKind,
        /// The range.
        range: IdRange,
        /// `"container"` or `"host"`.
        side: &'static str,
        /// The first id on that side.
        first: u32,
        /// The range's size.
        size: u32,
    },
    /// Two ranges share ids on one side: the map would not be one-to-one.
    #[error("{kind} map ranges {a} and {b} overlap on the {side} side")]
    Overlap {
        /// uid or gid.
        kind: IdKind,
        /// One range.
        a: IdRange,
        /// The other.
        b: IdRange,
        /// `"container"` or `"host"`.
        side: &'static str,
    },
    /// More ranges than a user namespace takes.
    #[error("{kind} map has {count} ranges; the kernel takes at most {MAX_RANGES}")]
    TooMany {
        /// uid or gid.
        kind: IdKind,
        /// How many were given.
        count: usize,
    },
    /// One of the two maps is empty while the other is not: a user
    /// namespace needs both (with no gid map every group is "nobody").
    #[error("a {missing} map is needed as well: id-mapping needs both a uid and a gid map")]
    OneSided {
        /// The empty one.
        missing: IdKind,
    },
}

impl fmt::Display for IdRange {
    /// `CONTAINER:HOST:SIZE`, the form [`FromStr`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.container_id, self.host_id, self.size)
    }
}

impl fmt::Display for IdMaps {
    /// `uid 0:100000:65536, gid 0:100000:65536`, for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "uid {}, gid {}",
            IdRange::list(&self.uids),
            IdRange::list(&self.gids)
        )
    }
}

impl FromStr for IdRange {
    type Err = String;

    /// Parses `CONTAINER:HOST:SIZE` (three decimal u32s); the error says
    /// what is wrong, for [`IdMapError::Syntax`]. Only the syntax is
    /// checked here: [`IdMaps::new`] checks the ranges.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.is_empty() {
            return Err("an empty range".into());
        }
        let parts: Vec<&str> = s.split(':').collect();
        let [c, h, n] = parts[..] else {
            return Err(format!("{} field(s), not 3", parts.len()));
        };
        let num = |what: &str, v: &str| {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("{what} {v:?} is not a decimal number"));
            }
            v.parse::<u32>()
                .map_err(|_| format!("{what} {v} does not fit in 32 bits"))
        };
        Ok(Self {
            container_id: num("container id", c)?,
            host_id: num("host id", h)?,
            size: num("size", n)?,
        })
    }
}

impl IdRange {
    /// Parses one or more ranges separated by commas (`0:100000:1,1:200001:65535`,
    /// as containerd's `uidmap=` option may hold).
    ///
    /// # Errors
    ///
    /// [`IdMapError::Syntax`] naming the piece that is not `CONTAINER:HOST:SIZE`.
    pub fn parse_list(kind: IdKind, spec: &str) -> std::result::Result<Vec<Self>, IdMapError> {
        spec.split(',')
            .map(|piece| {
                piece.trim().parse().map_err(|reason| IdMapError::Syntax {
                    kind,
                    spec: piece.to_owned(),
                    reason,
                })
            })
            .collect()
    }

    /// Writes `ranges` as [`parse_list`](Self::parse_list) reads them:
    /// `0:100000:1,1:200001:65535`.
    pub fn list(ranges: &[Self]) -> String {
        ranges.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
    }

    /// Ids `first..first+size` stop at the last id, 4294967294 (-1 is "no
    /// id"): the kernel's `first + count > first`, without wrapping.
    fn fits(first: u32, size: u32) -> bool {
        first.checked_add(size).is_some()
    }
}

/// Checks one map as the kernel's `map_write` would.
fn validate(kind: IdKind, ranges: &[IdRange]) -> std::result::Result<(), IdMapError> {
    if ranges.len() > MAX_RANGES {
        return Err(IdMapError::TooMany {
            kind,
            count: ranges.len(),
        });
    }
    for &r in ranges {
        if r.size == 0 {
            return Err(IdMapError::ZeroSize { kind, range: r });
        }
        for (side, first) in [("container", r.container_id), ("host", r.host_id)] {
            if !IdRange::fits(first, r.size) {
                return Err(IdMapError::OutOfRange {
                    kind,
                    range: r,
                    side,
                    first,
                    size: r.size,
                });
            }
        }
    }
    // Sorted by each side, neighbours must not overlap (n log n: 340 ranges).
    for (side, first) in [
        ("container", (|r: &IdRange| r.container_id) as fn(&IdRange) -> u32),
        ("host", |r: &IdRange| r.host_id),
    ] {
        let mut sorted = ranges.to_vec();
        sorted.sort_by_key(first);
        for w in sorted.windows(2) {
            if u64::from(first(&w[0])) + u64::from(w[0].size) > u64::from(first(&w[1])) {
                return Err(IdMapError::Overlap {
                    kind,
                    a: w[0],
                    b: w[1],
                    side,
                });
            }
        }
    }
    Ok(())
}

/// The map as `/proc/PID/uid_map` takes it: `CONTAINER HOST SIZE` lines.
fn proc_text(ranges: &[IdRange]) -> String {
    ranges
        .iter()
        .map(|r| format!("{} {} {}\n", r.container_id, r.host_id, r.size))
        .collect()
}

/// The ids files may be given in a user namespace other than the
/// initial one: the ranges of its `/proc/self/uid_map` and `gid_map`, as
/// `(first, count)` of ids inside it. Any other id makes `chown` fail
/// (`EINVAL`), so an import checks each entry's ids before it makes the
/// entry (see [`ImportOptions::ownable`](crate::ImportOptions::ownable)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnableIds {
    /// uid ranges, `(first, count)`.
    pub uids: Vec<(u32, u32)>,
    /// gid ranges, `(first, count)`.
    pub gids: Vec<(u32, u32)>,
}

impl OwnableIds {
    /// Does a range of `kind` hold `id`?
    pub fn holds(&self, kind: IdKind, id: u32) -> bool {
        let ranges = match kind {
            IdKind::Uid => &self.uids,
            IdKind::Gid => &self.gids,
        };
        ranges.iter().any(|&(first, n)| id >= first && id - first < n)
    }

    /// The first of `uid`, `gid` that no range holds, with its kind.
    pub fn unowned(&self, uid: u32, gid: u32) -> Option<(IdKind, u32)> {
        if !self.holds(IdKind::Uid, uid) {
            Some((IdKind::Uid, uid))
        } else if !self.holds(IdKind::Gid, gid) {
            Some((IdKind::Gid, gid))
        } else {
            None
        }
    }
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

    /// Maps the kernel would accept for a user namespace (see the module
    /// docs), both given or neither.
    ///
    /// # Errors
    ///
    /// The first rule broken, naming the range: [`IdMapError`].
    pub fn new(uids: Vec<IdRange>, gids: Vec<IdRange>) -> std::result::Result<Self, IdMapError> {
        let maps = Self { uids, gids };
        maps.validate()?;
        Ok(maps)
    }

    /// Checks maps built from the fields as [`new`](Self::new) does.
    ///
    /// # Errors
    ///
    /// See [`new`](Self::new).
    pub fn validate(&self) -> std::result::Result<(), IdMapError> {
        match (self.uids.is_empty(), self.gids.is_empty()) {
            (true, false) => return Err(IdMapError::OneSided { missing: IdKind::Uid }),
            (false, true) => return Err(IdMapError::OneSided { missing: IdKind::Gid }),
            _ => {}
        }
        validate(IdKind::Uid, &self.uids)?;
        validate(IdKind::Gid, &self.gids)
    }

    /// The uid map as `/proc/PID/uid_map` takes it (`CONTAINER HOST SIZE`
    /// lines), for the user namespace of an id-mapped mount.
    pub fn proc_uid_map(&self) -> String {
        proc_text(&self.uids)
    }

    /// The gid map as `/proc/PID/gid_map` takes it.
    pub fn proc_gid_map(&self) -> String {
        proc_text(&self.gids)
    }

    /// The host uid and gid of the container's root (Docker's
    /// `GetRootUIDGID`): the owner of what the container writes as root.
    ///
    /// # Errors
    ///
    /// Container id 0 is outside the uid or gid map.
    pub fn root(&self) -> Result<(u32, u32)> {
        self.to_host(0, 0)
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

    fn r(c: u32, h: u32, n: u32) -> IdRange {
        IdRange {
            container_id: c,
            host_id: h,
            size: n,
        }
    }

    fn list(spec: &str) -> std::result::Result<Vec<IdRange>, IdMapError> {
        IdRange::parse_list(IdKind::Uid, spec)
    }

    #[test]
    fn ownable_ids_name_the_first_id_outside() {
        // `--map-root-user`: only root; a sub-id range as newuidmap gives.
        let one = OwnableIds {
            uids: vec![(0, 1)],
            gids: vec![(0, 1)],
        };
        assert_eq!(one.unowned(0, 0), None);
        assert_eq!(one.unowned(1000, 0), Some((IdKind::Uid, 1000)));
        assert_eq!(one.unowned(0, 5), Some((IdKind::Gid, 5)));
        let range = OwnableIds {
            uids: vec![(0, 65536)],
            gids: vec![(0, 65536)],
        };
        assert_eq!(range.unowned(65535, 100), None);
        assert_eq!(range.unowned(65536, 0), Some((IdKind::Uid, 65536)));
        assert_eq!(range.unowned(u32::MAX, 0), Some((IdKind::Uid, u32::MAX)));
    }

    #[test]
    fn docker_form_parses_and_prints_back() {
        assert_eq!(list("0:100000:65536").unwrap(), [r(0, 100_000, 65536)]);
        let two = list("0:1000:1, 1:100000:65535").unwrap();
        assert_eq!(two, [r(0, 1000, 1), r(1, 100_000, 65535)]);
        assert_eq!(two[1].to_string(), "1:100000:65535");
        let m = IdMaps::new(two.clone(), two).unwrap();
        assert_eq!(m.proc_uid_map(), "0 1000 1\n1 100000 65535\n");
        assert_eq!(m.root().unwrap(), (1000, 1000));
        // The initial namespace's own map is the largest the kernel takes.
        let all = list("0:0:4294967295").unwrap();
        IdMaps::new(all.clone(), all).unwrap();
    }

    #[test]
    fn bad_syntax_names_the_piece() {
        for (spec, says) in [
            ("0:100000", "2 field(s)"),
            ("0:100000:65536:1", "4 field(s)"),
            ("a:1:1", "container id \"a\""),
            ("0:-1:1", "host id \"-1\""),
            ("0:1: 5", "size \" 5\""),
            ("0:1:4294967296", "size 4294967296 does not fit"),
            ("0:1:1,", "an empty range"),
        ] {
            let e = list(spec).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("CONTAINER:HOST:SIZE"), "{spec}: {e}");
        }
    }

    #[test]
    fn maps_the_kernel_refuses_are_refused_with_the_range() {
        let bad = |uids: Vec<IdRange>| IdMaps::new(uids.clone(), vec![r(0, 100_000, 65536)]).unwrap_err();
        let e = bad(vec![r(0, 100_000, 0)]);
        assert!(matches!(e, IdMapError::ZeroSize { .. }), "{e}");
        assert_eq!(e.to_string(), "uid map range 0:100000:0: size 0 maps nothing");
        // The host side runs past the last id.
        let e = bad(vec![r(0, 4_294_967_295, 1)]);
        assert!(
            e.to_string().contains("host ids 4294967295..4294967295+1 run past"),
            "{e}"
        );
        let e = bad(vec![r(4_294_967_000, 0, 1000)]);
        assert!(e.to_string().contains("container ids"), "{e}");
        // Overlap on the container side, then on the host side.
        let e = bad(vec![r(0, 100_000, 10), r(5, 200_000, 10)]);
        assert_eq!(
            e.to_string(),
            "uid map ranges 0:100000:10 and 5:200000:10 overlap on the container side"
        );
        let e = bad(vec![r(10, 100_000, 10), r(0, 100_009, 10)]);
        assert!(e.to_string().contains("overlap on the host side"), "{e}");
        // Touching ranges are fine.
        IdMaps::new(vec![r(0, 100_000, 10), r(10, 100_010, 10)], vec![r(0, 1, 1)]).unwrap();
        let many: Vec<IdRange> = (0..=MAX_RANGES as u32).map(|i| r(i, 1000 + i, 1)).collect();
        assert_eq!(
            bad(many).to_string(),
            "uid map has 341 ranges; the kernel takes at most 340"
        );
        let e = IdMaps::new(vec![r(0, 1, 1)], Vec::new()).unwrap_err();
        assert!(matches!(e, IdMapError::OneSided { missing: IdKind::Gid }), "{e}");
        let e = IdMaps::new(vec![r(1, 100_000, 10)], vec![r(0, 1, 1)]).unwrap();
        assert!(e.root().unwrap_err().to_string().contains("container uid 0"));
    }
}
