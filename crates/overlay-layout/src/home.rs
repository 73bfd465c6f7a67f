//! [`Home`]: where everything lives in an overlay2 home directory, the names
//! of its entries, the modes Docker gives them, and the `l/LINKID` symlink
//! target.
//!
//! ```text
//! HOME/
//!   l/LINKID -> ../ID/diff
//!   ID/diff/        ID/link        ID/lower
//!   ID/work/        ID/merged/     ID/committed
//! ```
//!
//! Paths are built by joining validated [`LayerId`]s and [`LinkId`]s, each
//! one plain directory entry, so no path produced here leaves the home.

use std::path::{Path, PathBuf};

use crate::error::{LayoutError, LinkTargetProblem, excerpt};
use crate::id::{self, LayerId};
use crate::link::LinkId;
use crate::lower::Lower;

/// The directory of short links, `HOME/l` (Docker's `linkDir`).
pub const LINK_DIR: &str = "l";
/// A layer's own files and the overlay upper dir, `HOME/ID/diff`.
pub const DIFF_DIR: &str = "diff";
/// The overlay work dir, `HOME/ID/work`; only layers with a parent have one.
pub const WORK_DIR: &str = "work";
/// The mount point, `HOME/ID/merged`; since Docker 20.10 it exists only
/// while the layer is mounted.
pub const MERGED_DIR: &str = "merged";
/// The file holding the layer's [`LinkId`], `HOME/ID/link`.
pub const LINK_FILE: &str = "link";
/// The file holding the layer's [`Lower`] chain, `HOME/ID/lower`; absent for
/// a layer without parent.
pub const LOWER_FILE: &str = "lower";
/// The empty marker Docker writes into a layer when a child is created on
/// it, `HOME/ID/committed`: the layer then mounts read-only.
pub const COMMITTED_FILE: &str = "committed";
/// The block device node Docker's quota code creates in the home,
/// `HOME/backingFsBlockDev`, to name the filesystem in `quotactl` calls.
pub const BACKING_FS_BLOCK_DEV: &str = "backingFsBlockDev";
/// Where repair moves layers it cannot make work but must not throw away
/// (a corrupt `lower`, a parent that is gone), `HOME/quarantine/ID`: out of
/// Docker's layout, kept until a person removes them. Not Docker's: Docker
/// never lists the home, so an extra directory there is invisible to it.
pub const QUARANTINE_DIR: &str = "quarantine";

/// The permission bits a home's entries get, as Docker writes them, so a
/// home we write looks like one Docker wrote.
///
/// Docker 17 used 0700 for the home, `l/` and layer directories; 20.10.5
/// (the reference) opened them to 0701 so a remapped root could traverse
/// to its `diff`; that let any local user traverse into layer contents and
/// run setuid binaries there (CVE-2021-41091), and 20.10.9 closed them to
/// 0710 with the remapped root's group (`l/`: 0700). These constants are
/// that form.
/// Files are as Docker leaves them on disk under its usual umask of 022.
///
/// Ownership differs too: the home, `l/` and layer directories belong to
/// the daemon's own identity, while `diff`, `work` and `merged` belong to
/// the (possibly user-namespace remapped) root.
pub mod mode {
    /// The home directory: made with `l/` in `Init` (0701 in 20.10.5, 0710
    /// since the CVE-2021-41091 fix).
    pub const HOME: u32 = 0o710;
    /// `HOME/l`: made in `Init` (0701 in 20.10.5; since the fix, 20.10.9
    /// to 20.10.24, `MkdirAllAndChown(path.Join(home, linkDir), 0700,
    /// cur)`: the daemon's alone, no group, as dockerd 20.10.24's built-in
    /// overlay2 leaves it under `--userns-remap`, tested in overlay-cli's
    /// `docker_userns.rs`). Overlay reads lowers through the links as the
    /// mounter, root: no one else needs them.
    pub const LINK_DIR: u32 = 0o700;
    /// `HOME/ID`: made in `create` (0701 in 20.10.5, 0710 since the fix).
    pub const LAYER_DIR: u32 = 0o710;
    /// `HOME/ID/diff`: `MkdirAndChown(path.Join(dir, diffDirName), 0755)` in
    /// `create`.
    pub const DIFF_DIR: u32 = 0o755;
    /// `HOME/ID/work`: `MkdirAndChown(path.Join(dir, workDirName), 0700)` in
    /// `create`, only when there is a parent.
    pub const WORK_DIR: u32 = 0o700;
    /// `HOME/ID/merged`: `MkdirAndChown(mergedDir, 0700)` in `Get`, just
    /// before mounting.
    pub const MERGED_DIR: u32 = 0o700;
    /// `HOME/ID/link`: `WriteFile(path.Join(dir, "link"), lid, 0644)` in
    /// `create`.
    pub const LINK_FILE: u32 = 0o644;
    /// `HOME/ID/lower`: `WriteFile(path.Join(dir, lowerFile), lower, 0666)`
    /// in `create`, which is 0644 on disk after the usual umask of 022.
    pub const LOWER_FILE: u32 = 0o644;
    /// `HOME/PARENT/committed`: `WriteFile(path.Join(d.dir(parent),
    /// "committed"), []byte{}, 0600)` in `create`.
    pub const COMMITTED_FILE: u32 = 0o600;
}

/// An overlay2 home directory: computes where each part of each layer lives.
///
/// It holds only the root path and touches nothing on disk. Give it an
/// absolute root when the paths will go into mount options.
///
/// ```
/// use std::path::Path;
/// use overlay_layout::{Home, LayerId};
///
/// let home = Home::new("/var/lib/docker/overlay2");
/// let id = LayerId::new("base")?;
/// assert_eq!(home.diff_dir(&id), Path::new("/var/lib/docker/overlay2/base/diff"));
/// # Ok::<(), overlay_layout::LayoutError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// A home rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The home directory itself.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `HOME/l`, the directory of short links.
    #[must_use]
    pub fn link_dir(&self) -> PathBuf {
        self.root.join(LINK_DIR)
    }

    /// `HOME/l/LINKID`, the symlink to a layer's `diff`; also the path of
    /// that layer as a lower dir in absolute mount options.
    #[must_use]
    pub fn link_path(&self, link: LinkId) -> PathBuf {
        self.root.join(relative_link_path(link))
    }

    /// `HOME/ID`, the layer's directory.
    #[must_use]
    pub fn layer_dir(&self, id: &LayerId) -> PathBuf {
        self.root.join(id.as_str())
    }

    /// `HOME/ID/diff`, the layer's files and its overlay upper dir.
    #[must_use]
    pub fn diff_dir(&self, id: &LayerId) -> PathBuf {
        self.root.join(relative_diff_dir(id))
    }

    /// `HOME/ID/work`, the overlay work dir.
    #[must_use]
    pub fn work_dir(&self, id: &LayerId) -> PathBuf {
        self.root.join(relative_work_dir(id))
    }

    /// `HOME/ID/merged`, the mount point.
    #[must_use]
    pub fn merged_dir(&self, id: &LayerId) -> PathBuf {
        self.root.join(relative_merged_dir(id))
    }

    /// `HOME/ID/link`, the file holding the layer's [`LinkId`].
    #[must_use]
    pub fn link_file(&self, id: &LayerId) -> PathBuf {
        self.layer_dir(id).join(LINK_FILE)
    }

    /// `HOME/ID/lower`, the file holding the layer's [`Lower`] chain.
    #[must_use]
    pub fn lower_file(&self, id: &LayerId) -> PathBuf {
        self.layer_dir(id).join(LOWER_FILE)
    }

    /// `HOME/ID/committed`, the marker that makes the layer mount read-only.
    #[must_use]
    pub fn committed_file(&self, id: &LayerId) -> PathBuf {
        self.layer_dir(id).join(COMMITTED_FILE)
    }

    /// `HOME/backingFsBlockDev`, the quota device node.
    #[must_use]
    pub fn backing_fs_block_dev(&self) -> PathBuf {
        self.root.join(BACKING_FS_BLOCK_DEV)
    }

    /// The absolute lower dirs of a chain, uppermost first: `HOME/l/LINKID`
    /// for each link, as Docker passes them to `mount` (through the
    /// symlinks, unresolved).
    #[must_use]
    pub fn lower_dirs(&self, lower: &Lower) -> Vec<PathBuf> {
        lower.iter().map(|&link| self.link_path(link)).collect()
    }
}

/// `l/LINKID`: a lower dir relative to the home, as in `lower` files and in
/// the mount options of the page-size fallback (mounting from inside the
/// home).
#[must_use]
pub fn relative_link_path(link: LinkId) -> PathBuf {
    Path::new(LINK_DIR).join(link.as_str())
}

/// `ID`: the layer directory relative to the home.
#[must_use]
pub fn relative_layer_dir(id: &LayerId) -> PathBuf {
    PathBuf::from(id.as_str())
}

/// `ID/diff`: the upper dir (or top lower dir of a committed layer) in the
/// page-size fallback's relative mount options.
#[must_use]
pub fn relative_diff_dir(id: &LayerId) -> PathBuf {
    Path::new(id.as_str()).join(DIFF_DIR)
}

/// `ID/work`: the work dir in the page-size fallback's relative mount
/// options.
#[must_use]
pub fn relative_work_dir(id: &LayerId) -> PathBuf {
    Path::new(id.as_str()).join(WORK_DIR)
}

/// `ID/merged`: the mount target of the page-size fallback, relative to the
/// home it runs in.
#[must_use]
pub fn relative_merged_dir(id: &LayerId) -> PathBuf {
    Path::new(id.as_str()).join(MERGED_DIR)
}

/// `ID/link`: the file holding the layer's [`LinkId`], relative to the home.
#[must_use]
pub fn relative_link_file(id: &LayerId) -> PathBuf {
    Path::new(id.as_str()).join(LINK_FILE)
}

/// `ID/lower`: the file holding the layer's [`Lower`] chain, relative to
/// the home.
#[must_use]
pub fn relative_lower_file(id: &LayerId) -> PathBuf {
    Path::new(id.as_str()).join(LOWER_FILE)
}

/// `ID/committed`: the read-only marker, relative to the home.
#[must_use]
pub fn relative_committed_file(id: &LayerId) -> PathBuf {
    Path::new(id.as_str()).join(COMMITTED_FILE)
}

/// `../ID/diff`: the target Docker writes for the layer's `l/LINKID`
/// symlink. Relative, so the home can be moved or bind-mounted elsewhere.
#[must_use]
pub fn link_target(id: &LayerId) -> PathBuf {
    Path::new("..").join(relative_diff_dir(id))
}

/// The layer an `l/LINKID` symlink target names, accepting only exactly
/// what [`link_target`] writes: `../ID/diff` with a valid [`LayerId`].
///
/// Anything else (an absolute path, extra or missing components, `..`
/// inside the id, a trailing `/`) may point outside the home, and the
/// driver must not follow it.
///
/// ```
/// use std::path::Path;
/// use overlay_layout::{LayerId, parse_link_target};
///
/// assert_eq!(parse_link_target(Path::new("../base/diff"))?, LayerId::new("base")?);
/// assert!(parse_link_target(Path::new("../../etc/diff")).is_err());
/// assert!(parse_link_target(Path::new("/etc")).is_err());
/// # Ok::<(), overlay_layout::LayoutError>(())
/// ```
///
/// # Errors
///
/// [`LayoutError::InvalidLinkTarget`] with the target and what is wrong.
pub fn parse_link_target(target: &Path) -> Result<LayerId, LayoutError> {
    let invalid = |problem| LayoutError::InvalidLinkTarget {
        target: target.to_path_buf(),
        problem,
    };
    let text = target.to_str().ok_or_else(|| invalid(LinkTargetProblem::NotUtf8))?;
    if text.starts_with('/') {
        return Err(invalid(LinkTargetProblem::Absolute));
    }
    let rest = text
        .strip_prefix("../")
        .ok_or_else(|| invalid(LinkTargetProblem::NotInHome))?;
    let layer = rest
        .strip_suffix(DIFF_DIR)
        .and_then(|rest| rest.strip_suffix('/'))
        .ok_or_else(|| invalid(LinkTargetProblem::NotDiff))?;
    match id::problem(layer) {
        None => Ok(LayerId::from_checked(layer.to_owned())),
        Some(problem) => Err(invalid(LinkTargetProblem::LayerId {
            id: excerpt(layer.as_bytes()),
            problem,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::LayerIdProblem;

    const LINK: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

    fn id(text: &str) -> LayerId {
        LayerId::new(text).unwrap()
    }

    #[test]
    fn absolute_paths() {
        let home = Home::new("/var/lib/docker/overlay2");
        let base = id("base");
        let link = LinkId::parse(LINK).unwrap();
        assert_eq!(home.root(), Path::new("/var/lib/docker/overlay2"));
        assert_eq!(home.link_dir(), Path::new("/var/lib/docker/overlay2/l"));
        assert_eq!(
            home.link_path(link),
            Path::new("/var/lib/docker/overlay2/l/ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        );
        assert_eq!(home.layer_dir(&base), Path::new("/var/lib/docker/overlay2/base"));
        assert_eq!(home.diff_dir(&base), Path::new("/var/lib/docker/overlay2/base/diff"));
        assert_eq!(home.work_dir(&base), Path::new("/var/lib/docker/overlay2/base/work"));
        assert_eq!(
            home.merged_dir(&base),
            Path::new("/var/lib/docker/overlay2/base/merged")
        );
        assert_eq!(home.link_file(&base), Path::new("/var/lib/docker/overlay2/base/link"));
        assert_eq!(home.lower_file(&base), Path::new("/var/lib/docker/overlay2/base/lower"));
        assert_eq!(
            home.committed_file(&base),
            Path::new("/var/lib/docker/overlay2/base/committed")
        );
        assert_eq!(
            home.backing_fs_block_dev(),
            Path::new("/var/lib/docker/overlay2/backingFsBlockDev")
        );
    }

    #[test]
    fn relative_paths() {
        let base = id("base");
        let link = LinkId::parse(LINK).unwrap();
        assert_eq!(relative_link_path(link), Path::new("l/ABCDEFGHIJKLMNOPQRSTUVWXYZ"));
        assert_eq!(relative_layer_dir(&base), Path::new("base"));
        assert_eq!(relative_diff_dir(&base), Path::new("base/diff"));
        assert_eq!(relative_work_dir(&base), Path::new("base/work"));
        assert_eq!(relative_merged_dir(&base), Path::new("base/merged"));
        assert_eq!(link_target(&base), Path::new("../base/diff"));
        assert_eq!(link_target(&base).as_os_str(), "../base/diff");
    }

    #[test]
    fn lower_dirs_follow_the_chain() {
        let home = Home::new("/h");
        let a = LinkId::parse(LINK).unwrap();
        let b = LinkId::parse("BBBBBBBBBBBBBBBBBBBBBBBBBB").unwrap();
        let lower = Lower::new(vec![a, b]).unwrap();
        assert_eq!(
            home.lower_dirs(&lower),
            vec![
                PathBuf::from("/h/l/ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
                PathBuf::from("/h/l/BBBBBBBBBBBBBBBBBBBBBBBBBB"),
            ]
        );
    }

    #[test]
    fn relative_home_stays_relative() {
        let home = Home::new("overlay2");
        assert_eq!(home.diff_dir(&id("x")), Path::new("overlay2/x/diff"));
    }

    #[test]
    fn link_target_round_trips() {
        for text in ["base", "abc-init", "...", "a:b", &"f".repeat(255)] {
            let layer = id(text);
            assert_eq!(parse_link_target(&link_target(&layer)), Ok(layer));
        }
    }

    fn bad_target(target: &str) -> (LinkTargetProblem, String) {
        match parse_link_target(Path::new(target)) {
            Err(err @ LayoutError::InvalidLinkTarget { .. }) => {
                let message = err.to_string();
                let LayoutError::InvalidLinkTarget { problem, target: t } = err else {
                    unreachable!()
                };
                assert_eq!(t, Path::new(target));
                (problem, message)
            }
            other => panic!("{target:?} should be rejected, got {other:?}"),
        }
    }

    #[test]
    fn rejects_absolute_targets() {
        let (problem, message) = bad_target("/var/lib/docker/overlay2/base/diff");
        assert_eq!(problem, LinkTargetProblem::Absolute);
        assert_eq!(
            message,
            r#"invalid link target "/var/lib/docker/overlay2/base/diff": is absolute, expected "../ID/diff""#
        );
    }

    #[test]
    fn rejects_targets_leaving_the_home() {
        let (problem, message) = bad_target("../../etc/diff");
        assert_eq!(
            problem,
            LinkTargetProblem::LayerId {
                id: "../etc".into(),
                problem: LayerIdProblem::ContainsSlash
            }
        );
        assert_eq!(
            message,
            r#"invalid link target "../../etc/diff": layer id "../etc" contains '/'"#
        );
        assert_eq!(
            bad_target("../../diff").0,
            LinkTargetProblem::LayerId {
                id: "..".into(),
                problem: LayerIdProblem::DotDot
            }
        );
        assert_eq!(
            bad_target(".././diff").0,
            LinkTargetProblem::LayerId {
                id: ".".into(),
                problem: LayerIdProblem::Dot
            }
        );
        assert_eq!(
            bad_target("../l/diff").0,
            LinkTargetProblem::LayerId {
                id: "l".into(),
                problem: LayerIdProblem::Reserved
            }
        );
        assert_eq!(
            bad_target("..//diff").0,
            LinkTargetProblem::LayerId {
                id: String::new(),
                problem: LayerIdProblem::Empty
            }
        );
    }

    #[test]
    fn rejects_other_shapes() {
        let (problem, message) = bad_target("base/diff");
        assert_eq!(problem, LinkTargetProblem::NotInHome);
        assert_eq!(
            message,
            r#"invalid link target "base/diff": does not start with "../", expected "../ID/diff""#
        );
        assert_eq!(bad_target("./../base/diff").0, LinkTargetProblem::NotInHome);
        assert_eq!(bad_target("").0, LinkTargetProblem::NotInHome);
        let (problem, message) = bad_target("../base/work");
        assert_eq!(problem, LinkTargetProblem::NotDiff);
        assert_eq!(
            message,
            r#"invalid link target "../base/work": does not end with "/diff", expected "../ID/diff""#
        );
        assert_eq!(bad_target("../base/diff/").0, LinkTargetProblem::NotDiff);
        assert_eq!(bad_target("../diff").0, LinkTargetProblem::NotDiff);
        assert_eq!(bad_target("../basediff").0, LinkTargetProblem::NotDiff);
    }

    #[cfg(unix)]
    #[test]
    fn rejects_non_utf8_targets() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let target = Path::new(OsStr::from_bytes(b"../\xff/diff"));
        assert!(matches!(
            parse_link_target(target),
            Err(LayoutError::InvalidLinkTarget {
                problem: LinkTargetProblem::NotUtf8,
                ..
            })
        ));
    }

    #[test]
    fn layer_contents_are_not_reachable_by_others() {
        // CVE-2021-41091: no "other" bits on the directories above `diff`,
        // while the (remapped root's) group and the owner can traverse.
        assert_eq!(mode::LINK_DIR, 0o700, "l/ is the daemon's alone");
        for m in [mode::HOME, mode::LAYER_DIR] {
            assert_eq!(m & 0o007, 0, "{m:o} lets anyone in");
            assert_eq!(m & 0o110, 0o110, "{m:o} must stay traversable by owner and group");
            assert_eq!(m & 0o044, 0, "{m:o} must not let the group list layers");
        }
        // Docker's umask-022 results for the files.
        assert_eq!(mode::LOWER_FILE & 0o022, 0);
        assert_eq!(mode::COMMITTED_FILE & 0o077, 0);
    }
}
