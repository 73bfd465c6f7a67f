//! Diffs read from a layer's upper (`diff`) dir: cost proportional to what
//! the layer changed, not to the image (Changes with the naive diff's
//! answers, and Docker's `directory.Size`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use naive_diff::{Change, ChangeKind, DiffError, walk_order};
use std::ffi::{OsStr, OsString};

use overlay_fs::{Dir, ErrorKind, FileType, Fs, Metadata};

fn tree_err(path: &Path) -> impl FnOnce(overlay_fs::Error) -> DiffError + '_ {
    move |source| DiffError::Tree {
        path: path.to_path_buf(),
        source,
    }
}

/// Docker v20.10's answer to Changes (the naive diff of the mounted layer
/// against its parent) computed from the upper dir alone, consulting the
/// lower layers only at the paths the upper dir holds: every path the
/// upper dir does not hold looks the same in both trees, so only those can
/// differ. Each upper entry is compared with what the parent's merged tree
/// shows at its path, by the naive diff's rules ([`naive_diff::stat_different`],
/// symlink targets, extended attributes other than overlayfs' own); a
/// whiteout hiding something is a deletion; an opaque directory is compared
/// in full with the parent's directory; a directory holding changes is
/// listed as modified. `lowers` are the parent chain's diff dirs,
/// uppermost first.
///
/// # Errors
///
/// A tree cannot be read.
pub fn changes(upper: &dyn Fs, lowers: &[Arc<dyn Fs>]) -> Result<Vec<Change>, DiffError> {
    let root = Path::new("");
    let upper_root = upper.open_dir(root).map_err(tree_err(root))?;
    let old = lowers
        .iter()
        .map(|l| l.open_dir(root).map_err(tree_err(root)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    over_lowers(upper_root, &Merged(old), root, &mut out)?;
    out.sort_by(|a, b| walk_order(&a.path, &b.path));
    Ok(out)
}

/// A directory of the parent's merged tree: the lower dirs at one path
/// that overlayfs merges, uppermost first (it stops below an opaque dir,
/// and at a whiteout or a non-directory).
struct Merged(Vec<Box<dyn Dir>>);

/// What the merged tree shows under a name: its metadata, and the index
/// of the lower dir that holds it.
type Found = Option<(Metadata, usize)>;

impl Merged {
    fn find(&self, name: &OsStr, path: &Path) -> Result<Found, DiffError> {
        for (i, d) in self.0.iter().enumerate() {
            match d.metadata(name) {
                Ok(m) if m.is_whiteout() => return Ok(None),
                Ok(m) => return Ok(Some((m, i))),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
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

    /// The merged directory `name`, found (as a directory) in lower `from`.
    fn open(&self, name: &OsStr, from: usize, path: &Path) -> Result<Merged, DiffError> {
        let mut dirs = Vec::new();
        for d in &self.0[from..] {
            let m = match d.metadata(name) {
                Ok(m) => m,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(DiffError::Tree {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            };
            if !m.is_dir() {
                break;
            }
            let sub = d.open_dir(name).map_err(tree_err(path))?;
            let opaque = is_opaque(&*sub, path)?;
            dirs.push(sub);
            if opaque {
                break;
            }
        }
        Ok(Merged(dirs))
    }

    /// The names the merged directory shows, sorted.
    fn names(&mut self, path: &Path) -> Result<Vec<OsString>, DiffError> {
        let mut seen = std::collections::BTreeMap::new();
        for d in &mut self.0 {
            for e in d.entries().map_err(tree_err(path))? {
                // An upper layer's entry (or whiteout) hides the lower ones.
                seen.entry(e.name).or_insert(e.file_type == FileType::CharDevice);
            }
        }
        let mut names = Vec::with_capacity(seen.len());
        for (name, maybe_whiteout) in seen {
            if maybe_whiteout && self.find(&name, path)?.is_none() {
                continue;
            }
            names.push(name);
        }
        Ok(names)
    }
}

fn is_opaque(dir: &dyn Dir, path: &Path) -> Result<bool, DiffError> {
    Ok(overlay_archive::is_opaque(&dir.own_xattrs().map_err(tree_err(path))?))
}

/// Extended attributes as the merged tree shows them: without overlayfs'
/// own (`trusted.overlay.*`, `user.overlay.*`), sorted.
fn visible(mut x: Vec<(OsString, Vec<u8>)>) -> Vec<(OsString, Vec<u8>)> {
    x.retain(|(n, _)| {
        let n = n.as_encoded_bytes();
        !(n.starts_with(b"trusted.overlay.") || n.starts_with(b"user.overlay."))
    });
    x.sort_unstable();
    x
}

/// The naive diff lists a directory holding changes as modified, before
/// them, so its metadata travels with them.
fn mark_if_changed_inside(out: &mut Vec<Change>, at: usize, modified: bool, path: &Path) {
    if !modified && out.len() > at {
        out.insert(
            at,
            Change {
                path: path.to_path_buf(),
                kind: ChangeKind::Modify,
            },
        );
    }
}

fn push(out: &mut Vec<Change>, path: &Path, kind: ChangeKind) {
    out.push(Change {
        path: path.to_path_buf(),
        kind,
    });
}

/// The upper dir `upper` at `path` over the parent's merged dir `old`:
/// only the names the upper dir holds can differ.
fn over_lowers(mut upper: Box<dyn Dir>, old: &Merged, path: &Path, out: &mut Vec<Change>) -> Result<(), DiffError> {
    let mut entries = upper.entries().map_err(tree_err(path))?;
    entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    for e in entries {
        let child = path.join(&e.name);
        let nm = upper.metadata(&e.name).map_err(tree_err(&child))?;
        let found = old.find(&e.name, &child)?;
        if nm.is_whiteout() {
            if found.is_some() {
                push(out, &child, ChangeKind::Delete);
            }
            continue;
        }
        match found {
            None => {
                push(out, &child, ChangeKind::Add);
                if nm.is_dir() {
                    add_all(upper.open_dir(&e.name).map_err(tree_err(&child))?, &child, out)?;
                }
            }
            Some((om, i)) => compare(true, &*upper, &e.name, &nm, old, &om, i, &child, out)?,
        }
    }
    Ok(())
}

/// `name` in both trees: the new side `new` (a plain directory: the upper
/// dir, or an opaque subtree of it) with metadata `nm`, the old side in
/// lower `i` of `old` with metadata `om`. `merges`: the new side's
/// directories merge with the old ones (false below an opaque directory).
#[allow(clippy::too_many_arguments)]
fn compare(
    merges: bool,
    new: &dyn Dir,
    name: &OsStr,
    nm: &Metadata,
    old: &Merged,
    om: &Metadata,
    i: usize,
    path: &Path,
    out: &mut Vec<Change>,
) -> Result<(), DiffError> {
    let mut modified = naive_diff::stat_different(om, nm);
    if !modified && nm.is_symlink() {
        modified = new.readlink(name).map_err(tree_err(path))? != old.0[i].readlink(name).map_err(tree_err(path))?;
    }
    if !nm.is_dir() {
        if !modified {
            modified = visible(new.xattrs(name).map_err(tree_err(path))?)
                != visible(old.0[i].xattrs(name).map_err(tree_err(path))?);
        }
        if modified {
            push(out, path, ChangeKind::Modify);
        }
        return Ok(());
    }
    let new_dir = new.open_dir(name).map_err(tree_err(path))?;
    let old_dir = if om.is_dir() {
        Some(old.open(name, i, path)?)
    } else {
        None
    };
    if !modified {
        let old_x = match &old_dir {
            Some(d) => d.0[0].own_xattrs(),
            None => old.0[i].xattrs(name),
        };
        modified = visible(new_dir.own_xattrs().map_err(tree_err(path))?) != visible(old_x.map_err(tree_err(path))?);
    }
    let at = out.len();
    if modified {
        push(out, path, ChangeKind::Modify);
    }
    match old_dir {
        None => add_all(new_dir, path, out)?,
        // An opaque dir (or one below it) shows only itself: compare it
        // with all of the old.
        Some(mut old_dir) if !merges || is_opaque(&*new_dir, path)? => in_full(new_dir, &mut old_dir, path, out)?,
        Some(old_dir) => over_lowers(new_dir, &old_dir, path, out)?,
    }
    mark_if_changed_inside(out, at, modified, path);
    Ok(())
}

/// A plain new directory (inside an opaque one: nothing merges into it)
/// against the parent's merged directory, every name of both.
fn in_full(mut new: Box<dyn Dir>, old: &mut Merged, path: &Path, out: &mut Vec<Change>) -> Result<(), DiffError> {
    let mut new_names: Vec<OsString> = Vec::new();
    for e in new.entries().map_err(tree_err(path))? {
        // Whiteouts in an opaque dir hide nothing and show nothing.
        if !(e.file_type == FileType::CharDevice && new.metadata(&e.name).map_err(tree_err(path))?.is_whiteout()) {
            new_names.push(e.name);
        }
    }
    new_names.sort_unstable();
    let old_names = old.names(path)?;
    let (mut a, mut b) = (new_names.iter().peekable(), old_names.iter().peekable());
    loop {
        let step = match (a.peek(), b.peek()) {
            (None, None) => return Ok(()),
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
        };
        match step {
            std::cmp::Ordering::Less => {
                let name = a.next().map(OsString::as_os_str).unwrap_or_default();
                let child = path.join(name);
                push(out, &child, ChangeKind::Add);
                if new.metadata(name).map_err(tree_err(&child))?.is_dir() {
                    add_all(new.open_dir(name).map_err(tree_err(&child))?, &child, out)?;
                }
            }
            std::cmp::Ordering::Greater => {
                let name = b.next().map(OsString::as_os_str).unwrap_or_default();
                push(out, &path.join(name), ChangeKind::Delete);
            }
            std::cmp::Ordering::Equal => {
                let name = a.next().map(OsString::as_os_str).unwrap_or_default();
                b.next();
                let child = path.join(name);
                let nm = new.metadata(name).map_err(tree_err(&child))?;
                let Some((om, i)) = old.find(name, &child)? else {
                    continue;
                };
                compare(false, &*new, name, &nm, old, &om, i, &child, out)?;
            }
        }
    }
}

/// Everything below a new directory is added (whiteouts in it show nothing).
fn add_all(mut dir: Box<dyn Dir>, path: &Path, out: &mut Vec<Change>) -> Result<(), DiffError> {
    let mut entries = dir.entries().map_err(tree_err(path))?;
    entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    for e in entries {
        let child = path.join(&e.name);
        if e.file_type == FileType::CharDevice && dir.metadata(&e.name).map_err(tree_err(&child))?.is_whiteout() {
            continue;
        }
        push(out, &child, ChangeKind::Add);
        if e.file_type == FileType::Directory {
            add_all(dir.open_dir(&e.name).map_err(tree_err(&child))?, &child, out)?;
        }
    }
    Ok(())
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
