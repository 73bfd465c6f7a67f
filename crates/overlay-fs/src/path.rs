//! Turning a caller's path into what every backend resolves: components
//! below the root, and the final name an operation acts on.
//!
//! Both backends share this code so that the same path means the same thing
//! in memory and on disk: leading `/` and `.` components are dropped (paths
//! are always relative to the tree's root), `..` is kept for the resolver,
//! which clamps it at the root as `RESOLVE_IN_ROOT` does.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use crate::error::{Error, ErrorKind, Result};

/// The longest name of one directory entry (`NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// The longest path the kernel accepts (`PATH_MAX` less the NUL).
pub const PATH_MAX: usize = 4095;

/// One component of a normalised path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part<'a> {
    /// `..`: up one level, never above the root.
    Up,
    /// A plain name.
    Name(&'a OsStr),
}

/// A path split for resolution.
#[derive(Debug)]
pub struct Split<'a> {
    /// Components leading to the parent directory.
    pub parent: Vec<Part<'a>>,
    /// The final name, or `None` when the path names the root itself.
    pub name: Option<&'a OsStr>,
}

/// Splits `path` into parent components and final name.
///
/// A path whose last component is `..` is refused: it names a directory
/// only through resolution, and every operation here acts on a name in a
/// known parent.
///
/// # Errors
///
/// A NUL byte, a path or name too long, a final `..`; the error names `op`.
pub fn split<'a>(op: &'static str, path: &'a Path) -> Result<Split<'a>> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.contains(&0) {
        return Err(Error::new(op, path, ErrorKind::InvalidInput).with_detail("path contains a NUL byte"));
    }
    if bytes.len() > PATH_MAX {
        return Err(Error::new(op, path, ErrorKind::NameTooLong));
    }
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => parts.push(Part::Up),
            Component::Normal(n) => {
                if n.len() > NAME_MAX {
                    return Err(Error::new(op, path, ErrorKind::NameTooLong));
                }
                parts.push(Part::Name(n));
            }
        }
    }
    match parts.pop() {
        None => Ok(Split {
            parent: parts,
            name: None,
        }),
        Some(Part::Name(n)) => Ok(Split {
            parent: parts,
            name: Some(n),
        }),
        Some(Part::Up) => Err(Error::new(op, path, ErrorKind::InvalidInput).with_detail("path ends in '..'")),
    }
}

/// Like [`split`], but the path must name something below the root.
///
/// # Errors
///
/// As [`split`], and a path naming the root.
pub fn split_child<'a>(op: &'static str, path: &'a Path) -> Result<(Vec<Part<'a>>, &'a OsStr)> {
    let s = split(op, path)?;
    match s.name {
        Some(name) => Ok((s.parent, name)),
        None => Err(Error::new(op, path, ErrorKind::InvalidInput).with_detail("path names the root")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &str) -> (Vec<String>, Option<String>) {
        let s = split("t", Path::new(p)).expect("split");
        let parent = s
            .parent
            .iter()
            .map(|p| match p {
                Part::Up => "..".to_string(),
                Part::Name(n) => n.to_string_lossy().into_owned(),
            })
            .collect();
        (parent, s.name.map(|n| n.to_string_lossy().into_owned()))
    }

    #[test]
    fn root_forms_name_the_root() {
        for p in ["", "/", ".", "./", "//", "/./."] {
            assert_eq!(names(p), (vec![], None), "{p:?}");
        }
    }

    #[test]
    fn absolute_and_relative_are_the_same() {
        assert_eq!(names("/a/b/c"), names("a/b/c"));
        assert_eq!(names("a/./b/"), (vec!["a".into()], Some("b".into())));
    }

    #[test]
    fn dotdot_is_kept_for_the_resolver_but_not_last() {
        assert_eq!(names("a/../b"), (vec!["a".into(), "..".into()], Some("b".into())));
        let e = split("t", Path::new("a/..")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("ends in '..'"), "{e}");
    }

    #[test]
    fn long_names_and_paths_are_refused() {
        let long = "x".repeat(NAME_MAX + 1);
        assert_eq!(split("t", Path::new(&long)).unwrap_err().kind(), ErrorKind::NameTooLong);
        let ok = "x".repeat(NAME_MAX);
        assert!(split("t", Path::new(&ok)).is_ok());
        let deep = "a/".repeat(PATH_MAX / 2 + 1);
        assert_eq!(split("t", Path::new(&deep)).unwrap_err().kind(), ErrorKind::NameTooLong);
    }

    #[test]
    fn root_is_not_a_child() {
        assert_eq!(
            split_child("t", Path::new("/")).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }
}
