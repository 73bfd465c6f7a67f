//! The user namespace this process runs in, as `/proc/self/uid_map` and
//! `gid_map` describe it.
//!
//! Outside the initial namespace (rootless: `unshare --user`, rootlesskit,
//! a process given sub-ids by `newuidmap`) overlayfs works differently:
//! `trusted.*` xattrs need `CAP_SYS_ADMIN` in the initial namespace, so
//! mounts take `userxattr` and keep their markers in `user.overlay.*`;
//! a file can only be given an id the namespace maps (else `EINVAL`).
//! The probes and the driver decide from here, once.

/// Which of the two maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// `/proc/self/uid_map`.
    Uid,
    /// `/proc/self/gid_map`.
    Gid,
}

impl IdKind {
    fn file(self) -> &'static str {
        match self {
            Self::Uid => "/proc/self/uid_map",
            Self::Gid => "/proc/self/gid_map",
        }
    }
}

/// The ids of this process's user namespace, as `(first, count)` ranges
/// of ids *inside* it: the ids a file here may be given. `None` where the
/// kernel has no user namespaces (no map file).
pub fn own_ranges(kind: IdKind) -> Option<Vec<(u32, u32)>> {
    let text = std::fs::read_to_string(kind.file()).ok()?;
    Some(parse_map(&text))
}

/// `INSIDE OUTSIDE COUNT` lines to `(INSIDE, COUNT)`; a line that does not
/// parse maps nothing.
fn parse_map(text: &str) -> Vec<(u32, u32)> {
    text.lines()
        .filter_map(|l| {
            let v: Vec<u64> = l.split_whitespace().filter_map(|w| w.parse().ok()).collect();
            match v[..] {
                [inside, _, count] => Some((u32::try_from(inside).ok()?, u32::try_from(count).ok()?)),
                _ => None,
            }
        })
        .collect()
}

/// Is `ranges` the initial namespace's map, every id (`0 0 4294967295`)?
fn is_initial(ranges: &[(u32, u32)]) -> bool {
    ranges == [(0, u32::MAX)]
}

/// Is this process in the initial user namespace (where root may set
/// `trusted.*` xattrs and give files any id)? Docker's
/// `!userns.RunningInUserNS()`. A kernel without user namespaces counts
/// as the initial one.
pub fn in_initial() -> bool {
    own_ranges(IdKind::Uid).is_none_or(|r| is_initial(&r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_read_as_the_ids_inside() {
        let init = parse_map("         0          0 4294967295\n");
        assert!(is_initial(&init));
        let one = parse_map("         0       1500          1\n");
        assert_eq!(one, [(0, 1)]);
        assert!(!is_initial(&one));
        let sub = parse_map("0 1500 1\n1 100000 65536\n");
        assert_eq!(sub, [(0, 1), (1, 65536)]);
        // A namespace whose map is not written yet maps nothing.
        assert!(parse_map("").is_empty());
        assert!(!is_initial(&[]));
    }
}
