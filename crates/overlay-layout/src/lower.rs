//! [`Lower`]: the chain of layers below a layer, as kept in its `lower` file,
//! and [`DepthLimit`], how long that chain may grow.

use std::fmt;
use std::str::FromStr;

use crate::error::{LayoutError, LowerProblem, excerpt};
use crate::home::LINK_DIR;
use crate::link::{self, LinkId};

/// The most lower layers a layer may have, counted as Docker does: the
/// number of entries in the child's `lower` file.
///
/// Docker fixes it at 128 (`maxDepth`) because the legacy `mount(2)` call
/// takes its options in one page: 128 entries of `l/LINKID:` (28 bytes) fill
/// 3584 bytes, leaving 512 of a 4 KiB page for the rest. The new mount API
/// passes each lower directory in its own `fsconfig` call, so only the
/// kernel's own stack limit (500 layers, `OVL_MAX_STACK`) applies there.
///
/// ```
/// use overlay_layout::DepthLimit;
///
/// assert_eq!(DepthLimit::default(), DepthLimit::DOCKER);
/// assert_eq!(DepthLimit::new(500)?, DepthLimit::NEW_MOUNT_API);
/// assert!(DepthLimit::new(0).is_err());
/// # Ok::<(), overlay_layout::LayoutError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DepthLimit(usize);

impl DepthLimit {
    /// Docker's `maxDepth` (128): keeps a home usable by Docker and by the
    /// legacy page-sized mount options. The default.
    pub const DOCKER: Self = Self(128);

    /// 500, overlayfs' `OVL_MAX_STACK`: the deepest stack the kernel mounts,
    /// reachable with the new mount API (`fsconfig` `lowerdir+`). Chains
    /// deeper than 128 cannot be mounted by Docker.
    pub const NEW_MOUNT_API: Self = Self(500);

    /// A custom limit.
    ///
    /// # Errors
    ///
    /// [`LayoutError::ZeroDepthLimit`] for 0, which would forbid every
    /// parent.
    pub const fn new(limit: usize) -> Result<Self, LayoutError> {
        if limit == 0 {
            Err(LayoutError::ZeroDepthLimit)
        } else {
            Ok(Self(limit))
        }
    }

    /// The limit as a number of lower layers.
    #[must_use]
    pub const fn get(self) -> usize {
        self.0
    }

    /// Checks that a chain of `depth` lower layers is within the limit.
    ///
    /// # Errors
    ///
    /// [`LayoutError::MaxDepthExceeded`] when `depth` is over the limit.
    pub const fn check(self, depth: usize) -> Result<(), LayoutError> {
        if depth > self.0 {
            Err(LayoutError::MaxDepthExceeded { depth, limit: self.0 })
        } else {
            Ok(())
        }
    }
}

impl Default for DepthLimit {
    fn default() -> Self {
        Self::DOCKER
    }
}

impl TryFrom<usize> for DepthLimit {
    type Error = LayoutError;

    fn try_from(limit: usize) -> Result<Self, Self::Error> {
        Self::new(limit)
    }
}

impl fmt::Display for DepthLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The layers below a layer, uppermost (the direct parent) first: the
/// contents of its `lower` file.
///
/// On disk it is `l/LINK1:l/LINK2:...`, entries joined by `:`, with no
/// trailing newline. A layer without a parent has no `lower` file, so a
/// `Lower` is never empty.
///
/// ```
/// use overlay_layout::{DepthLimit, LinkId, Lower};
///
/// let base = LinkId::parse("AAAAAAAAAAAAAAAAAAAAAAAAAA")?;
/// let mid = LinkId::parse("BBBBBBBBBBBBBBBBBBBBBBBBBB")?;
/// let mid_lower = Lower::child_of(base, None, DepthLimit::DOCKER)?;
/// let top_lower = Lower::child_of(mid, Some(&mid_lower), DepthLimit::DOCKER)?;
/// assert_eq!(
///     top_lower.format(),
///     "l/BBBBBBBBBBBBBBBBBBBBBBBBBB:l/AAAAAAAAAAAAAAAAAAAAAAAAAA"
/// );
/// assert_eq!(Lower::parse(top_lower.format().as_bytes())?, top_lower);
/// # Ok::<(), overlay_layout::LayoutError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lower(Vec<LinkId>);

/// Bytes one entry takes on disk: `l/` and the link id.
const ENTRY_LEN: usize = LINK_DIR.len() + 1 + LinkId::LEN;

impl Lower {
    /// What separates entries in a `lower` file (and lower dirs in overlay
    /// mount options).
    pub const SEPARATOR: char = ':';

    /// A chain of the given links, uppermost first.
    ///
    /// # Errors
    ///
    /// [`LayoutError::EmptyLower`] when `links` is empty: a layer without
    /// parent has no chain.
    pub fn new(links: Vec<LinkId>) -> Result<Self, LayoutError> {
        if links.is_empty() {
            Err(LayoutError::EmptyLower)
        } else {
            Ok(Self(links))
        }
    }

    /// The chain of a new child of the layer whose link is `parent_link` and
    /// whose own chain is `parent_lower` (`None` when the parent has no
    /// `lower` file): the parent first, then the parent's lowers, as
    /// Docker's `getLower` builds it.
    ///
    /// # Errors
    ///
    /// [`LayoutError::MaxDepthExceeded`] when the result would have more
    /// than `limit` entries.
    pub fn child_of(parent_link: LinkId, parent_lower: Option<&Lower>, limit: DepthLimit) -> Result<Self, LayoutError> {
        let below = parent_lower.map_or(&[][..], Lower::links);
        limit.check(below.len() + 1)?;
        let mut links = Vec::with_capacity(below.len() + 1);
        links.push(parent_link);
        links.extend_from_slice(below);
        Ok(Self(links))
    }

    /// Parses the contents of a `lower` file.
    ///
    /// Only what Docker writes is accepted: one or more `l/LINKID` entries
    /// joined by `:`, nothing else. So any `Lower` this returns formats back
    /// to exactly `bytes`. The chain's length is not checked against a
    /// [`DepthLimit`]; use [`Lower::check_depth`] for that.
    ///
    /// A trailing newline is rejected: Docker never writes one and does not
    /// trim when reading, so it would end up inside mount options and in
    /// every child's `lower` file.
    ///
    /// # Errors
    ///
    /// - [`LayoutError::EmptyLower`] for an empty file;
    /// - [`LayoutError::CorruptLower`] naming the first bad entry's index
    ///   and content and what is wrong with it (empty, `..`, not under `l/`,
    ///   bad link id, trailing newline).
    pub fn parse(bytes: &[u8]) -> Result<Self, LayoutError> {
        if bytes.is_empty() {
            return Err(LayoutError::EmptyLower);
        }
        bytes
            .split(|&b| b == b':')
            .enumerate()
            .map(|(index, entry)| {
                parse_entry(entry).map_err(|problem| LayoutError::CorruptLower {
                    index,
                    entry: excerpt(entry),
                    problem,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// The file contents Docker writes: `l/LINK1:l/LINK2:...`, no newline.
    #[must_use]
    pub fn format(&self) -> String {
        let mut text = String::with_capacity(self.0.len() * (ENTRY_LEN + 1));
        for (index, link) in self.0.iter().enumerate() {
            if index > 0 {
                text.push(Self::SEPARATOR);
            }
            text.push_str(LINK_DIR);
            text.push('/');
            text.push_str(link.as_str());
        }
        text
    }

    /// Checks the chain against a depth limit, for example before mounting
    /// a chain written under a larger limit.
    ///
    /// # Errors
    ///
    /// [`LayoutError::MaxDepthExceeded`] when the chain is longer than
    /// `limit`.
    pub fn check_depth(&self, limit: DepthLimit) -> Result<(), LayoutError> {
        limit.check(self.0.len())
    }

    /// The direct parent's link (the first entry).
    #[must_use]
    pub fn parent(&self) -> LinkId {
        // Never empty: every constructor rejects an empty chain.
        self.0[0]
    }

    /// The bottom layer's link (the last entry).
    #[must_use]
    pub fn base(&self) -> LinkId {
        self.0[self.0.len() - 1]
    }

    /// The links, uppermost first.
    #[must_use]
    pub fn links(&self) -> &[LinkId] {
        &self.0
    }

    /// Iterates over the links, uppermost first.
    pub fn iter(&self) -> std::slice::Iter<'_, LinkId> {
        self.0.iter()
    }

    /// Number of lower layers (at least 1).
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always `false`: a chain has at least one layer. Present because a
    /// `len` without `is_empty` surprises.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Gives back the links, uppermost first.
    #[must_use]
    pub fn into_links(self) -> Vec<LinkId> {
        self.0
    }
}

/// Parses one `l/LINKID` entry of a `lower` file.
fn parse_entry(entry: &[u8]) -> Result<LinkId, LowerProblem> {
    if entry.is_empty() {
        return Err(LowerProblem::Empty);
    }
    if entry.split(|&b| b == b'/').any(|part| part == b"..") {
        return Err(LowerProblem::DotDot);
    }
    if let Some(without_newline) = entry.strip_suffix(b"\n")
        && parse_exact_entry(without_newline).is_ok()
    {
        return Err(LowerProblem::TrailingNewline);
    }
    parse_exact_entry(entry)
}

fn parse_exact_entry(entry: &[u8]) -> Result<LinkId, LowerProblem> {
    let link = entry
        .strip_prefix(LINK_DIR.as_bytes())
        .and_then(|rest| rest.strip_prefix(b"/"))
        .ok_or(LowerProblem::NotUnderLinkDir)?;
    link::check(link).map_err(LowerProblem::LinkId)
}

impl fmt::Display for Lower {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.format())
    }
}

impl FromStr for Lower {
    type Err = LayoutError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s.as_bytes())
    }
}

impl<'a> IntoIterator for &'a Lower {
    type Item = &'a LinkId;
    type IntoIter = std::slice::Iter<'a, LinkId>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for Lower {
    type Item = LinkId;
    type IntoIter = std::vec::IntoIter<LinkId>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::LinkIdProblem;

    const A: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAA";
    const B: &str = "BBBBBBBBBBBBBBBBBBBBBBBBBB";
    const C: &str = "CCCCCCCCCCCCCCCCCCCCCCCCCC";

    fn link(text: &str) -> LinkId {
        LinkId::parse(text).unwrap()
    }

    fn corrupt(bytes: &[u8]) -> (usize, String, LowerProblem, String) {
        match Lower::parse(bytes) {
            Err(err @ LayoutError::CorruptLower { index, problem, .. }) => {
                let message = err.to_string();
                let LayoutError::CorruptLower { entry, .. } = err else {
                    unreachable!()
                };
                (index, entry, problem, message)
            }
            other => panic!("{bytes:?} should be corrupt, got {other:?}"),
        }
    }

    #[test]
    fn parses_what_docker_writes() {
        let text = format!("l/{A}:l/{B}:l/{C}");
        let lower = Lower::parse(text.as_bytes()).unwrap();
        assert_eq!(lower.links(), &[link(A), link(B), link(C)]);
        assert_eq!(lower.len(), 3);
        assert!(!lower.is_empty());
        assert_eq!(lower.parent(), link(A));
        assert_eq!(lower.base(), link(C));
        assert_eq!(lower.format(), text);
        assert_eq!(lower.to_string(), text);
        assert_eq!(text.parse::<Lower>().unwrap(), lower);
    }

    #[test]
    fn single_entry() {
        let text = format!("l/{A}");
        let lower = Lower::parse(text.as_bytes()).unwrap();
        assert_eq!(lower.parent(), lower.base());
        assert_eq!(lower.format(), text);
    }

    #[test]
    fn empty_file_is_an_error() {
        assert_eq!(Lower::parse(b""), Err(LayoutError::EmptyLower));
        assert_eq!(
            LayoutError::EmptyLower.to_string(),
            "corrupt lower file: it is empty, but a layer without parent has no lower file"
        );
        assert_eq!(Lower::new(Vec::new()), Err(LayoutError::EmptyLower));
    }

    #[test]
    fn rejects_empty_entries() {
        let (index, entry, problem, message) = corrupt(format!("l/{A}::l/{B}").as_bytes());
        assert_eq!((index, entry.as_str(), problem), (1, "", LowerProblem::Empty));
        assert_eq!(
            message,
            r#"corrupt lower file: entry 1 "": is empty (a leading, trailing or doubled ':')"#
        );
        assert_eq!(corrupt(format!(":l/{A}").as_bytes()).0, 0);
        assert_eq!(corrupt(format!("l/{A}:").as_bytes()).0, 1);
        assert_eq!(corrupt(b":").2, LowerProblem::Empty);
    }

    #[test]
    fn rejects_entries_outside_link_dir() {
        let text = format!("l/{A}:/var/lib/docker/overlay2/x/diff");
        let (index, entry, problem, message) = corrupt(text.as_bytes());
        assert_eq!(index, 1);
        assert_eq!(entry, "/var/lib/docker/overlay2/x/diff");
        assert_eq!(problem, LowerProblem::NotUnderLinkDir);
        assert_eq!(
            message,
            r#"corrupt lower file: entry 1 "/var/lib/docker/overlay2/x/diff": is not of the form "l/LINKID""#
        );
        for bad in [A.to_owned(), format!("L/{A}"), format!("./l/{A}"), format!("l//{A}")] {
            let problem = corrupt(bad.as_bytes()).2;
            assert!(
                matches!(problem, LowerProblem::NotUnderLinkDir | LowerProblem::LinkId(_)),
                "{bad}: {problem:?}"
            );
        }
        assert_eq!(
            corrupt(format!("l//{A}").as_bytes()).2,
            LowerProblem::LinkId(LinkIdProblem::InvalidByte {
                byte: b'/',
                position: 0
            })
        );
    }

    #[test]
    fn rejects_dot_dot() {
        let (index, entry, problem, message) = corrupt(format!("l/{A}:l/../../etc").as_bytes());
        assert_eq!(
            (index, entry.as_str(), problem),
            (1, "l/../../etc", LowerProblem::DotDot)
        );
        assert_eq!(
            message,
            r#"corrupt lower file: entry 1 "l/../../etc": has a ".." component"#
        );
        assert_eq!(corrupt(b"../l/X").2, LowerProblem::DotDot);
        assert_eq!(corrupt(b"l/..").2, LowerProblem::DotDot);
    }

    #[test]
    fn rejects_bad_link_ids() {
        let (index, entry, problem, message) = corrupt(format!("l/{A}:l/ABC").as_bytes());
        assert_eq!(
            (index, entry.as_str(), problem),
            (1, "l/ABC", LowerProblem::LinkId(LinkIdProblem::WrongLength { len: 3 }))
        );
        assert_eq!(
            message,
            r#"corrupt lower file: entry 1 "l/ABC": link id is 3 bytes long, expected 26"#
        );
        let lowercase = format!("l/{}", A.to_lowercase());
        let (_, _, problem, message) = corrupt(lowercase.as_bytes());
        assert_eq!(
            problem,
            LowerProblem::LinkId(LinkIdProblem::InvalidByte {
                byte: b'a',
                position: 0
            })
        );
        assert_eq!(
            message,
            format!(
                "corrupt lower file: entry 0 {lowercase:?}: link id byte 'a' (0x61) at position 0 is not in [A-Z2-7]"
            )
        );
    }

    #[test]
    fn rejects_non_utf8() {
        let mut bytes = format!("l/{A}:l/").into_bytes();
        bytes.extend_from_slice(&[0xc3; 26]);
        let (index, _, problem, _) = corrupt(&bytes);
        assert_eq!(index, 1);
        assert_eq!(
            problem,
            LowerProblem::LinkId(LinkIdProblem::InvalidByte {
                byte: 0xc3,
                position: 0
            })
        );
    }

    #[test]
    fn rejects_trailing_newline() {
        let text = format!("l/{A}:l/{B}\n");
        let (index, entry, problem, message) = corrupt(text.as_bytes());
        assert_eq!(
            (index, entry.as_str(), problem),
            (1, &*format!("l/{B}\n"), LowerProblem::TrailingNewline)
        );
        assert_eq!(
            message,
            format!("corrupt lower file: entry 1 \"l/{B}\\n\": ends with a newline, which Docker never writes")
        );
        // A newline inside the chain (copied from a parent by Docker).
        let text = format!("l/{A}\n:l/{B}");
        assert_eq!(corrupt(text.as_bytes()).2, LowerProblem::TrailingNewline);
        // Many newlines: no deep recursion, just a bad byte.
        let mut text = format!("l/{A}").into_bytes();
        text.extend(std::iter::repeat_n(b'\n', 100_000));
        assert!(matches!(corrupt(&text).2, LowerProblem::LinkId(_)));
    }

    #[test]
    fn long_entries_are_excerpted() {
        let mut text = b"l/".to_vec();
        text.extend(std::iter::repeat_n(b'A', 1_000_000));
        let (_, entry, _, message) = corrupt(&text);
        assert!(entry.len() < 100);
        assert!(message.len() < 200);
    }

    #[test]
    fn child_of_a_base_layer() {
        let lower = Lower::child_of(link(A), None, DepthLimit::DOCKER).unwrap();
        assert_eq!(lower.links(), &[link(A)]);
        assert_eq!(lower.format(), format!("l/{A}"));
    }

    #[test]
    fn child_of_puts_parent_first() {
        let parent_lower = Lower::new(vec![link(B), link(C)]).unwrap();
        let lower = Lower::child_of(link(A), Some(&parent_lower), DepthLimit::DOCKER).unwrap();
        assert_eq!(lower.format(), format!("l/{A}:l/{B}:l/{C}"));
    }

    #[test]
    fn child_of_enforces_depth_like_docker() {
        let full = Lower::new(vec![link(B); 127]).unwrap();
        let ok = Lower::child_of(link(A), Some(&full), DepthLimit::DOCKER).unwrap();
        assert_eq!(ok.len(), 128);
        let err = Lower::child_of(link(A), Some(&ok), DepthLimit::DOCKER).unwrap_err();
        assert_eq!(err, LayoutError::MaxDepthExceeded { depth: 129, limit: 128 });
        assert_eq!(
            err.to_string(),
            "max depth exceeded: the chain would have 129 lower layers, the limit is 128"
        );
        assert!(Lower::child_of(link(A), Some(&ok), DepthLimit::NEW_MOUNT_API).is_ok());
        let one = DepthLimit::new(1).unwrap();
        assert!(Lower::child_of(link(A), None, one).is_ok());
        assert!(Lower::child_of(link(A), Some(&full), one).is_err());
    }

    #[test]
    fn check_depth() {
        let lower = Lower::new(vec![link(A); 200]).unwrap();
        assert!(lower.check_depth(DepthLimit::NEW_MOUNT_API).is_ok());
        assert_eq!(
            lower.check_depth(DepthLimit::DOCKER),
            Err(LayoutError::MaxDepthExceeded { depth: 200, limit: 128 })
        );
    }

    #[test]
    fn depth_limit_values() {
        assert_eq!(DepthLimit::DOCKER.get(), 128);
        assert_eq!(DepthLimit::NEW_MOUNT_API.get(), 500);
        assert_eq!(DepthLimit::default(), DepthLimit::DOCKER);
        assert_eq!(DepthLimit::new(7).map(DepthLimit::get), Ok(7));
        assert_eq!(DepthLimit::try_from(0), Err(LayoutError::ZeroDepthLimit));
        assert_eq!(
            LayoutError::ZeroDepthLimit.to_string(),
            "invalid depth limit 0: a child layer needs at least its parent below it"
        );
        assert_eq!(DepthLimit::DOCKER.to_string(), "128");
    }

    #[test]
    fn docker_depth_fits_a_page() {
        // Docker's rule: ((idLength + len(linkDir) + 1) * maxDepth) <= pageSize - 512.
        assert!((LinkId::LEN + LINK_DIR.len() + 1) * DepthLimit::DOCKER.get() <= 4096 - 512);
        assert_eq!(ENTRY_LEN, 28);
    }

    #[test]
    fn iteration() {
        let lower = Lower::new(vec![link(A), link(B)]).unwrap();
        let via_ref: Vec<LinkId> = (&lower).into_iter().copied().collect();
        let via_iter: Vec<LinkId> = lower.iter().copied().collect();
        assert_eq!(via_ref, via_iter);
        assert_eq!(lower.clone().into_iter().collect::<Vec<_>>(), via_ref);
        assert_eq!(lower.into_links(), via_ref);
    }
}
