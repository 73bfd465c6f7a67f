//! [`LayerId`]: the name of a layer, which is also the name of its directory
//! in the home.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use crate::error::{LayerIdProblem, LayoutError};
use crate::home::{BACKING_FS_BLOCK_DEV, LINK_DIR, QUARANTINE_DIR};

/// Names in the home that belong to the driver, not to a layer: the link
/// directory `l`, Docker's quota device node `backingFsBlockDev` and the
/// repair's `quarantine`.
///
/// Docker itself only fails late on these (the `mkdir` of the layer
/// directory collides); rejecting them up front keeps a layer from ever
/// shadowing the driver's own entries.
pub const RESERVED_LAYER_IDS: [&str; 3] = [LINK_DIR, BACKING_FS_BLOCK_DEV, QUARANTINE_DIR];

/// Names starting with this are scratch space in the home: layers being
/// built or removed, files being replaced. No layer id may start with it,
/// so a leftover is never mistaken for a layer.
pub const SCRATCH_PREFIX: &str = ".tmp-";

/// A validated layer id: a name that is safe to use as one directory entry
/// directly under the home.
///
/// Docker's ids are usually 64 hex characters (`sha256` of the layer, or
/// random for containers, with an `-init` suffix for init layers), but the
/// driver accepts any name, and so does this type, as long as it:
///
/// - is not empty;
/// - is at most [`LayerId::MAX_LEN`] (255) bytes, Linux's `NAME_MAX`;
/// - has no NUL byte and no `/`;
/// - is not `.` or `..`;
/// - is not one of [`RESERVED_LAYER_IDS`] (`l`, `backingFsBlockDev`,
///   `quarantine`);
/// - does not start with [`SCRATCH_PREFIX`] (`.tmp-`).
///
/// The rules are checked in that order; the error names the first one broken.
///
/// An id may contain `,`, `:`, `=` or `\`, which are special in overlay mount
/// options: code that puts a layer path into a mount option string must
/// escape or reject them (Docker, whose ids are hex, does neither).
///
/// ```
/// use overlay_layout::LayerId;
///
/// let id = LayerId::new("abc-init")?;
/// assert_eq!(id.as_str(), "abc-init");
/// let err = LayerId::new("a/b").unwrap_err();
/// assert_eq!(err.to_string(), r#"invalid layer id "a/b": contains '/'"#);
/// # Ok::<(), overlay_layout::LayoutError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LayerId(String);

impl LayerId {
    /// The longest id, in bytes: Linux's `NAME_MAX`, the longest single
    /// directory entry a filesystem accepts.
    pub const MAX_LEN: usize = 255;

    /// Validates `id` and wraps it.
    ///
    /// # Errors
    ///
    /// [`LayoutError::InvalidLayerId`] carrying the id and the first rule it
    /// breaks (see the type's documentation).
    pub fn new(id: impl Into<String>) -> Result<Self, LayoutError> {
        let id = id.into();
        match problem(&id) {
            None => Ok(Self(id)),
            Some(problem) => Err(LayoutError::InvalidLayerId { id, problem }),
        }
    }

    /// The id as text, exactly as given to [`LayerId::new`].
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Gives back the owned string without copying it.
    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }

    /// Wraps an id already known to be valid (checked by [`problem`]).
    pub(crate) fn from_checked(id: String) -> Self {
        Self(id)
    }
}

/// The first naming rule `id` breaks, or `None` when it is a valid layer id.
pub(crate) fn problem(id: &str) -> Option<LayerIdProblem> {
    if id.is_empty() {
        Some(LayerIdProblem::Empty)
    } else if id.len() > LayerId::MAX_LEN {
        Some(LayerIdProblem::TooLong { len: id.len() })
    } else if id.contains('\0') {
        Some(LayerIdProblem::ContainsNul)
    } else if id.contains('/') {
        Some(LayerIdProblem::ContainsSlash)
    } else if id == "." {
        Some(LayerIdProblem::Dot)
    } else if id == ".." {
        Some(LayerIdProblem::DotDot)
    } else if RESERVED_LAYER_IDS.contains(&id) {
        Some(LayerIdProblem::Reserved)
    } else if id.starts_with(SCRATCH_PREFIX) {
        Some(LayerIdProblem::ScratchPrefix)
    } else {
        None
    }
}

impl fmt::Display for LayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for LayerId {
    type Err = LayoutError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for LayerId {
    type Error = LayoutError;

    fn try_from(id: String) -> Result<Self, Self::Error> {
        Self::new(id)
    }
}

impl TryFrom<&str> for LayerId {
    type Error = LayoutError;

    fn try_from(id: &str) -> Result<Self, Self::Error> {
        Self::new(id)
    }
}

impl From<LayerId> for String {
    fn from(id: LayerId) -> Self {
        id.0
    }
}

impl AsRef<str> for LayerId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Lets maps keyed by `LayerId` be looked up with a plain `&str`.
impl Borrow<str> for LayerId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for LayerId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for LayerId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(id: &str) -> (LayerIdProblem, String) {
        match LayerId::new(id) {
            Err(err @ LayoutError::InvalidLayerId { .. }) => {
                let message = err.to_string();
                let LayoutError::InvalidLayerId { id: back, problem } = err else {
                    unreachable!()
                };
                assert_eq!(back, id, "the error gives the id back");
                (problem, message)
            }
            other => panic!("{id:?} should be rejected, got {other:?}"),
        }
    }

    #[test]
    fn rejects_empty() {
        let (problem, message) = rejected("");
        assert_eq!(problem, LayerIdProblem::Empty);
        assert_eq!(message, r#"invalid layer id "": is empty"#);
    }

    #[test]
    fn rejects_slash() {
        let (problem, message) = rejected("a/b");
        assert_eq!(problem, LayerIdProblem::ContainsSlash);
        assert_eq!(message, r#"invalid layer id "a/b": contains '/'"#);
        assert_eq!(rejected("/").0, LayerIdProblem::ContainsSlash);
        assert_eq!(rejected("../etc").0, LayerIdProblem::ContainsSlash);
        assert_eq!(rejected("abc/").0, LayerIdProblem::ContainsSlash);
    }

    #[test]
    fn rejects_dot() {
        let (problem, message) = rejected(".");
        assert_eq!(problem, LayerIdProblem::Dot);
        assert_eq!(message, r#"invalid layer id ".": is ".", the home directory itself"#);
    }

    #[test]
    fn rejects_dot_dot() {
        let (problem, message) = rejected("..");
        assert_eq!(problem, LayerIdProblem::DotDot);
        assert_eq!(
            message,
            r#"invalid layer id "..": is "..", the parent of the home directory"#
        );
    }

    #[test]
    fn rejects_nul() {
        let (problem, message) = rejected("a\0b");
        assert_eq!(problem, LayerIdProblem::ContainsNul);
        assert_eq!(message, r#"invalid layer id "a\0b": contains a NUL byte"#);
    }

    #[test]
    fn rejects_link_dir_name() {
        let (problem, message) = rejected("l");
        assert_eq!(problem, LayerIdProblem::Reserved);
        assert_eq!(
            message,
            r#"invalid layer id "l": is reserved for the home's own entries ("l", "backingFsBlockDev", "quarantine")"#
        );
    }

    #[test]
    fn rejects_quota_device_name() {
        assert_eq!(rejected("backingFsBlockDev").0, LayerIdProblem::Reserved);
        assert_eq!(rejected("quarantine").0, LayerIdProblem::Reserved);
        let (problem, msg) = rejected(".tmp-create-abc");
        assert_eq!(problem, LayerIdProblem::ScratchPrefix);
        assert!(msg.contains("scratch"), "{msg}");
        assert!(LayerId::new(".tmpx").is_ok() && LayerId::new("a.tmp-").is_ok());
    }

    #[test]
    fn rejects_over_255_bytes() {
        let id = "a".repeat(256);
        let (problem, message) = rejected(&id);
        assert_eq!(problem, LayerIdProblem::TooLong { len: 256 });
        assert_eq!(
            message,
            format!("invalid layer id {id:?}: is 256 bytes long, the limit is 255")
        );
        // Bytes, not characters: 128 two-byte characters are 256 bytes.
        assert_eq!(rejected(&"é".repeat(128)).0, LayerIdProblem::TooLong { len: 256 });
    }

    #[test]
    fn accepts_255_bytes() {
        let id = "a".repeat(255);
        assert_eq!(LayerId::new(id.clone()).map(LayerId::into_string), Ok(id));
    }

    #[test]
    fn accepts_docker_style_and_arbitrary_names() {
        let hex = "0123456789abcdef".repeat(4);
        for id in [
            hex.as_str(),
            &format!("{hex}-init"),
            "base",
            "abc-init",
            "L",
            "ll",
            ".hidden",
            "...",
            "a b",
            "dé",
            "a:b,c=d",
            "diff",
        ] {
            let layer = LayerId::new(id);
            assert_eq!(layer.as_ref().map(LayerId::as_str), Ok(id));
        }
    }

    #[test]
    fn first_broken_rule_wins() {
        assert_eq!(
            rejected(&format!("{}/", "a".repeat(300))).0,
            LayerIdProblem::TooLong { len: 301 }
        );
        assert_eq!(rejected("a/\0").0, LayerIdProblem::ContainsNul);
    }

    #[test]
    fn conversions_agree() {
        let id: LayerId = "base".parse().unwrap();
        assert_eq!(id, "base");
        assert_eq!(id.to_string(), "base");
        assert_eq!(LayerId::try_from("base").unwrap(), id);
        assert_eq!(LayerId::try_from(String::from("base")).unwrap(), id);
        assert_eq!(String::from(id.clone()), "base");
        assert!("a/b".parse::<LayerId>().is_err());
        let mut set = std::collections::HashSet::new();
        set.insert(id);
        assert!(set.contains("base"));
    }
}
