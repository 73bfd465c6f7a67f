//! Comparing two trees: Docker's `ChangesDirs` rules, walking both trees
//! side by side with directory handles (each directory read once).

use std::cmp::Ordering;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use overlay_fs::{Dir, DirEntry, FileType, Fs, Metadata, Timestamp};

use crate::error::{DiffError, Result};

/// What happened to a path, with Docker's numbering and letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    /// Exists in both trees but differs (`C`).
    Modify,
    /// Exists only in the new tree (`A`).
    Add,
    /// Exists only in the old tree (`D`); what was below it is not listed.
    Delete,
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Change {
    /// The path, relative to the tree's root.
    pub path: PathBuf,
    /// What happened to it.
    pub kind: ChangeKind,
}

impl fmt::Display for Change {
    /// Docker's form: `A /path`, `C /path`, `D /path`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let letter = match self.kind {
            ChangeKind::Modify => 'C',
            ChangeKind::Add => 'A',
            ChangeKind::Delete => 'D',
        };
        write!(f, "{letter} /{}", self.path.display())
    }
}

/// Orders paths as a depth-first walk does: component by component, so a
/// directory comes right before what is inside it.
pub fn walk_order(a: &Path, b: &Path) -> Ordering {
    fn parts(p: &Path) -> impl Iterator<Item = &[u8]> {
        p.components().filter_map(|c| match c {
            Component::Normal(n) => Some(n.as_bytes()),
            _ => None,
        })
    }
    parts(a).cmp(parts(b))
}

/// Docker's time comparison: equal seconds, and equal nanoseconds unless
/// either side has none (times cut to whole seconds by a tar round trip).
fn same_time(a: Timestamp, b: Timestamp) -> bool {
    a.sec == b.sec && (a.nsec == b.nsec || a.nsec == 0 || b.nsec == 0)
}

/// Docker's `statDifferent`: type and permission bits, owner, device
/// number; and for non-directories modification time and size (a
/// directory's size and mtime change whenever an entry does, which the
/// walk reports on its own).
pub fn stat_different(old: &Metadata, new: &Metadata) -> bool {
    old.file_type != new.file_type
        || old.mode != new.mode
        || old.uid != new.uid
        || old.gid != new.gid
        || old.rdev != new.rdev
        || (!new.is_dir() && (!same_time(old.mtime, new.mtime) || old.size != new.size))
}

type Xattrs = Vec<(OsString, Vec<u8>)>;

fn sorted(mut x: Xattrs) -> Xattrs {
    x.sort_unstable();
    x
}

/// The changes that turn `old` into `new` (every entry of `new` an
/// addition when there is no `old`), in [`walk_order`].
///
/// Beyond Docker's rules (see [`stat_different`]), a symlink whose target
/// changed and any entry whose extended attributes changed are modified.
/// A directory holding changes is itself listed as modified, so its
/// metadata travels with them, as Docker does.
///
/// # Errors
///
/// Either tree cannot be read.
pub fn changes(new: &dyn Fs, old: Option<&dyn Fs>) -> Result<Vec<Change>> {
    let root = Path::new("");
    let new_root = new.open_dir(root).map_err(tree_err(root))?;
    let old_root = match old {
        Some(old) => Some(old.open_dir(root).map_err(tree_err(root))?),
        None => None,
    };
    let mut out = Vec::new();
    match old_root {
        Some(old_root) => compare_parallel(new_root, old_root, &mut out)?,
        None => add_all(new_root, root, &mut out)?,
    }
    out.sort_by(|a, b| walk_order(&a.path, &b.path));
    Ok(out)
}

/// Threads comparing subtrees.
const WORKERS: usize = 2;

/// Compares the two roots: their direct entries here, each pair of
/// subdirectories as a job for [`WORKERS`] threads (a tree's top level
/// spreads the work well: `/usr/share` has hundreds of directories).
fn compare_parallel(mut new: Box<dyn Dir>, mut old: Box<dyn Dir>, out: &mut Vec<Change>) -> Result<()> {
    let root = Path::new("");
    let new_entries = entries(&mut *new, root)?;
    let old_entries = entries(&mut *old, root)?;
    let (new, old): (&dyn Dir, &dyn Dir) = (&*new, &*old);
    let mut jobs = Vec::new();
    for step in merge(&new_entries, &old_entries) {
        match step {
            Step::New(name) => add_entry(new, name, Path::new(name), out)?,
            Step::Old(name) => out.push(Change {
                path: name.into(),
                kind: ChangeKind::Delete,
            }),
            Step::Both(name) => {
                let nm = new.metadata(name).map_err(tree_err(Path::new(name)))?;
                if nm.is_dir() {
                    jobs.push(name);
                } else {
                    compare_entry(new, old, name, Path::new(name), out)?;
                }
            }
        }
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<Vec<Change>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(name) = jobs.get(i) else { return Ok(mine) };
                        compare_entry(new, old, name, Path::new(name), &mut mine)?;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err(DiffError::Panicked)))
            .collect()
    });
    for r in results {
        out.extend(r?);
    }
    Ok(())
}

/// One step of merging two sorted listings.
enum Step<'a> {
    New(&'a OsStr),
    Old(&'a OsStr),
    Both(&'a OsStr),
}

fn merge<'a>(new: &'a [DirEntry], old: &'a [DirEntry]) -> impl Iterator<Item = Step<'a>> {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        let order = match (new.get(i), old.get(j)) {
            (Some(n), Some(o)) => n.name.as_bytes().cmp(o.name.as_bytes()),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => return None,
        };
        Some(match order {
            Ordering::Less => {
                i += 1;
                Step::New(&new[i - 1].name)
            }
            Ordering::Greater => {
                j += 1;
                Step::Old(&old[j - 1].name)
            }
            Ordering::Equal => {
                (i, j) = (i + 1, j + 1);
                Step::Both(&new[i - 1].name)
            }
        })
    })
}

fn tree_err(path: &Path) -> impl FnOnce(overlay_fs::Error) -> DiffError + '_ {
    move |source| DiffError::Tree {
        path: path.to_path_buf(),
        source,
    }
}

fn entries(dir: &mut dyn Dir, path: &Path) -> Result<Vec<DirEntry>> {
    let mut e = dir.entries().map_err(tree_err(path))?;
    e.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(e)
}

/// Compares the directory `new` with `old` (both at `path`).
fn compare(mut new: Box<dyn Dir>, old: Option<Box<dyn Dir>>, path: &Path, out: &mut Vec<Change>) -> Result<()> {
    let Some(mut old) = old else {
        return add_all(new, path, out);
    };
    let new_entries = entries(&mut *new, path)?;
    let old_entries = entries(&mut *old, path)?;
    for step in merge(&new_entries, &old_entries) {
        match step {
            Step::New(name) => add_entry(&*new, name, &path.join(name), out)?,
            Step::Old(name) => out.push(Change {
                path: path.join(name),
                kind: ChangeKind::Delete,
            }),
            Step::Both(name) => compare_entry(&*new, &*old, name, &path.join(name), out)?,
        }
    }
    Ok(())
}

/// Compares one name present in both directories.
fn compare_entry(new: &dyn Dir, old: &dyn Dir, name: &OsStr, path: &Path, out: &mut Vec<Change>) -> Result<()> {
    let nm = new.metadata(name).map_err(tree_err(path))?;
    let om = old.metadata(name).map_err(tree_err(path))?;
    let mut modified = stat_different(&om, &nm);
    if !modified && nm.is_symlink() {
        modified = new.readlink(name).map_err(tree_err(path))? != old.readlink(name).map_err(tree_err(path))?;
    }
    let at_entry = out.len();
    if nm.is_dir() {
        let new_child = new.open_dir(name).map_err(tree_err(path))?;
        let old_child = if om.is_dir() {
            Some(old.open_dir(name).map_err(tree_err(path))?)
        } else {
            None
        };
        if !modified {
            let old_x = match &old_child {
                Some(d) => d.own_xattrs(),
                None => old.xattrs(name),
            };
            modified =
                sorted(new_child.own_xattrs().map_err(tree_err(path))?) != sorted(old_x.map_err(tree_err(path))?);
        }
        if modified {
            out.push(Change {
                path: path.to_path_buf(),
                kind: ChangeKind::Modify,
            });
        }
        compare(new_child, old_child, path, out)?;
        // Changes inside: list the directory too, before them.
        if !modified && out.len() > at_entry {
            out.insert(
                at_entry,
                Change {
                    path: path.to_path_buf(),
                    kind: ChangeKind::Modify,
                },
            );
        }
        return Ok(());
    }
    if !modified && !nm.is_whiteout() {
        modified =
            sorted(new.xattrs(name).map_err(tree_err(path))?) != sorted(old.xattrs(name).map_err(tree_err(path))?);
    }
    if modified {
        out.push(Change {
            path: path.to_path_buf(),
            kind: ChangeKind::Modify,
        });
    }
    Ok(())
}

/// `name` exists only in the new tree: it and everything below is added.
fn add_entry(new: &dyn Dir, name: &OsStr, path: &Path, out: &mut Vec<Change>) -> Result<()> {
    out.push(Change {
        path: path.to_path_buf(),
        kind: ChangeKind::Add,
    });
    let e = new.metadata(name).map_err(tree_err(path))?;
    if e.file_type == FileType::Directory {
        let child = new.open_dir(name).map_err(tree_err(path))?;
        add_all(child, path, out)?;
    }
    Ok(())
}

fn add_all(mut dir: Box<dyn Dir>, path: &Path, out: &mut Vec<Change>) -> Result<()> {
    for e in entries(&mut *dir, path)? {
        let child = path.join(&e.name);
        out.push(Change {
            path: child.clone(),
            kind: ChangeKind::Add,
        });
        if e.file_type == FileType::Directory {
            let sub = dir.open_dir(&e.name).map_err(tree_err(&child))?;
            add_all(sub, &child, out)?;
        }
    }
    Ok(())
}

/// Bytes of the added and modified non-directories in `fs`, each hard-linked
/// inode counted once (Docker's `ChangesSize`).
///
/// # Errors
///
/// A changed path cannot be examined for a reason other than being gone.
pub fn changes_size(fs: &dyn Fs, changes: &[Change]) -> Result<u64> {
    let mut seen = HashSet::new();
    let mut size = 0;
    for c in changes.iter().filter(|c| c.kind != ChangeKind::Delete) {
        let md = match fs.metadata(&c.path) {
            Ok(md) => md,
            Err(e) if e.kind() == overlay_fs::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(DiffError::Tree {
                    path: c.path.clone(),
                    source,
                });
            }
        };
        if md.is_dir() || (md.nlink > 1 && !seen.insert((md.dev, md.ino))) {
            continue;
        }
        size += md.size;
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_order_puts_directories_first() {
        let mut v = vec![
            PathBuf::from("a.c"),
            PathBuf::from("a/b"),
            PathBuf::from("a"),
            PathBuf::from("b"),
        ];
        v.sort_by(|a, b| walk_order(a, b));
        assert_eq!(v, [Path::new("a"), Path::new("a/b"), Path::new("a.c"), Path::new("b")]);
    }

    #[test]
    fn whole_second_times_match_precise_ones() {
        let t = |sec, nsec| Timestamp { sec, nsec };
        assert!(same_time(t(5, 0), t(5, 123)));
        assert!(same_time(t(5, 7), t(5, 7)));
        assert!(!same_time(t(5, 7), t(5, 8)));
        assert!(!same_time(t(5, 0), t(6, 0)));
    }

    #[test]
    fn changes_print_as_docker_does() {
        let c = |kind| Change {
            path: "etc/passwd".into(),
            kind,
        };
        assert_eq!(c(ChangeKind::Add).to_string(), "A /etc/passwd");
        assert_eq!(c(ChangeKind::Modify).to_string(), "C /etc/passwd");
        assert_eq!(c(ChangeKind::Delete).to_string(), "D /etc/passwd");
    }
}
