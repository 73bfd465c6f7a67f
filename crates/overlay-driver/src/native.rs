//! Diffs read from a layer's upper (`diff`) dir alone: cost proportional to
//! what the layer changed, not to the image (Docker's `OverlayChanges` and
//! `directory.Size`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use naive_diff::{Change, ChangeKind, DiffError, walk_order};
use overlay_fs::{Dir, ErrorKind, FileType, Fs, Metadata};

fn tree_err(path: &Path) -> impl FnOnce(overlay_fs::Error) -> DiffError + '_ {
    move |source| DiffError::Tree {
        path: path.to_path_buf(),
        source,
    }
}

/// The changes recorded in `upper` over `lowers` (uppermost first), as
/// Docker's `OverlayChanges` reports them: a whiteout is a deletion, an
/// opaque directory a deletion of the directory followed by additions of
/// what it holds, anything else an addition, or a modification when a
/// lower layer has the path (a directory equal in size, mode and time to
/// the lower one is left out); the parent of an addition or deletion is
/// modified.
///
/// # Errors
///
/// A tree cannot be read.
pub fn changes(upper: &dyn Fs, lowers: &[Arc<dyn Fs>]) -> Result<Vec<Change>, DiffError> {
    let mut out = Vec::new();
    let mut changed_dirs = HashSet::new();
    let root = upper.open_dir(Path::new("")).map_err(tree_err(Path::new("")))?;
    walk(root, Path::new(""), lowers, false, &mut out, &mut changed_dirs)?;
    out.sort_by(|a, b| walk_order(&a.path, &b.path));
    out.dedup();
    Ok(out)
}

/// `new`: `dir` is in no lower layer, so nothing below it can be either.
fn walk(
    mut dir: Box<dyn Dir>,
    path: &Path,
    lowers: &[Arc<dyn Fs>],
    new: bool,
    out: &mut Vec<Change>,
    changed_dirs: &mut HashSet<PathBuf>,
) -> Result<(), DiffError> {
    let mut entries = dir.entries().map_err(tree_err(path))?;
    entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    for e in entries {
        let child = path.join(&e.name);
        let md = dir.metadata(&e.name).map_err(tree_err(&child))?;
        let sub = if md.is_dir() {
            Some(dir.open_dir(&e.name).map_err(tree_err(&child))?)
        } else {
            None
        };
        let deleted = md.is_whiteout()
            || match &sub {
                Some(d) => overlay_archive::is_opaque(&d.own_xattrs().map_err(tree_err(&child))?),
                None => false,
            };
        let kind = if deleted {
            Some(ChangeKind::Delete)
        } else if new {
            Some(ChangeKind::Add)
        } else {
            match in_lowers(lowers, &child)? {
                None => Some(ChangeKind::Add),
                Some(lower) if lower.is_dir() && md.is_dir() && same_dir(&lower, &md) => None,
                Some(_) => Some(ChangeKind::Modify),
            }
        };
        if let Some(kind) = kind {
            // A directory recorded itself needs no parent-of entry later.
            if md.is_dir() {
                changed_dirs.insert(child.clone());
            }
            if kind != ChangeKind::Modify
                && let Some(parent) = child.parent()
                && !parent.as_os_str().is_empty()
                && changed_dirs.insert(parent.to_path_buf())
            {
                out.push(Change {
                    path: parent.to_path_buf(),
                    kind: ChangeKind::Modify,
                });
            }
            out.push(Change {
                path: child.clone(),
                kind,
            });
        }
        if let Some(sub) = sub {
            let sub_new = kind == Some(ChangeKind::Add);
            walk(sub, &child, lowers, sub_new, out, changed_dirs)?;
        }
    }
    Ok(())
}

fn same_dir(a: &Metadata, b: &Metadata) -> bool {
    a.size == b.size && a.mode == b.mode && a.mtime.sec == b.mtime.sec
}

/// The path in the uppermost lower layer that has it. An ancestor that is
/// a file or a symlink in some lower means the path is not there.
fn in_lowers(lowers: &[Arc<dyn Fs>], path: &Path) -> Result<Option<Metadata>, DiffError> {
    for l in lowers {
        match l.metadata(path) {
            Ok(m) => return Ok(Some(m)),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::SymlinkLoop
                ) => {}
            Err(source) => {
                return Err(DiffError::Tree {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
    Ok(None)
}

/// Calls `f` with the metadata of every entry below the tree's root,
/// directories included when `dirs` (an lstat each; without, only their
/// entries are listed).
///
/// # Errors
///
/// The tree cannot be read.
pub(crate) fn for_each_entry(
    fs: &dyn Fs,
    dirs: bool,
    mut f: impl FnMut(&overlay_fs::Metadata),
) -> Result<(), DiffError> {
    let mut stack = vec![(
        fs.open_dir(Path::new("")).map_err(tree_err(Path::new("")))?,
        PathBuf::new(),
    )];
    while let Some((mut dir, path)) = stack.pop() {
        for e in dir.entries().map_err(tree_err(&path))? {
            let child = path.join(&e.name);
            let is_dir = e.file_type == FileType::Directory;
            if !is_dir || dirs {
                f(&dir.metadata(&e.name).map_err(tree_err(&child))?);
            }
            if is_dir {
                stack.push((dir.open_dir(&e.name).map_err(tree_err(&child))?, child));
            }
        }
    }
    Ok(())
}

/// Bytes of every non-directory in the tree, hard links once (Docker's
/// `directory.Size` of the diff dir).
///
/// # Errors
///
/// The tree cannot be read.
pub fn tree_size(fs: &dyn Fs) -> Result<u64, DiffError> {
    let mut seen = HashSet::new();
    let mut total = 0;
    for_each_entry(fs, false, |md| {
        if md.nlink <= 1 || seen.insert((md.dev, md.ino)) {
            total += md.size;
        }
    })?;
    Ok(total)
}
