//! Property test: for random parent trees and random edits (create,
//! modify, chmod, chown, delete, rename, file → dir and dir → file),
//! `changes` equals the edit set a model keeps, and applying
//! `diff(layer, parent)` onto a copy of the parent reproduces the layer.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use naive_diff::{BoxError, ChangeKind, LayerTrees, NaiveDiff, walk_order};
use overlay_archive::{ExportOptions, ImportOptions, export, import};
use overlay_fs::{FileType, Fs, MemFs, Timestamp};
use proptest::prelude::*;

/// Layers kept as whole trees in memory.
#[derive(Default)]
struct Trees {
    layers: Mutex<HashMap<String, MemFs>>,
    held: Mutex<i64>,
}

impl LayerTrees for Trees {
    fn get(&self, id: &str) -> Result<Arc<dyn Fs>, BoxError> {
        let fs = self
            .layers
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| format!("no layer {id}"))?;
        *self.held.lock().unwrap() += 1;
        Ok(Arc::new(fs))
    }
    fn put(&self, _id: &str) -> Result<(), BoxError> {
        *self.held.lock().unwrap() -= 1;
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Create { at: usize, dir: bool },
    Modify { at: usize },
    Chmod { at: usize },
    Chown { at: usize },
    Delete { at: usize },
    Rename { at: usize, to: usize },
    FileToDir { at: usize },
    DirToFile { at: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    let i = 0usize..1000;
    prop_oneof![
        3 => (i.clone(), any::<bool>()).prop_map(|(at, dir)| Edit::Create { at, dir }),
        2 => i.clone().prop_map(|at| Edit::Modify { at }),
        1 => i.clone().prop_map(|at| Edit::Chmod { at }),
        1 => i.clone().prop_map(|at| Edit::Chown { at }),
        2 => i.clone().prop_map(|at| Edit::Delete { at }),
        1 => (i.clone(), i.clone()).prop_map(|(at, to)| Edit::Rename { at, to }),
        1 => i.clone().prop_map(|at| Edit::FileToDir { at }),
        1 => i.prop_map(|at| Edit::DirToFile { at }),
    ]
}

/// A parent tree: `(depth-limited) directories and files` as a shape seed.
fn parent_shape() -> impl Strategy<Value = Vec<(u8, bool)>> {
    prop::collection::vec((0u8..4, any::<bool>()), 1..40)
}

struct World {
    layer: MemFs,
    /// Every path in the layer, directories flagged.
    paths: BTreeMap<PathBuf, bool>,
    /// Paths that exist in the parent, directories flagged.
    parent: BTreeMap<PathBuf, bool>,
    /// The model: what happened to each path.
    model: BTreeMap<PathBuf, ChangeKind>,
    next: u32,
    clock: i64,
}

impl World {
    fn fresh(&mut self) -> String {
        self.next += 1;
        format!("n{}", self.next)
    }
    fn tick(&mut self) -> Timestamp {
        self.clock += 7;
        Timestamp::from_secs(self.clock)
    }
    fn pick(&self, at: usize, want: Option<bool>) -> Option<PathBuf> {
        let c: Vec<_> = self
            .paths
            .iter()
            .filter(|(_, d)| want.is_none_or(|w| **d == w))
            .map(|(p, _)| p.clone())
            .collect();
        (!c.is_empty()).then(|| c[at % c.len()].clone())
    }
    fn under(p: &Path, root: &Path) -> bool {
        p != root && p.starts_with(root)
    }
    /// Records that `p` now exists with new content or metadata.
    fn touched(&mut self, p: &Path) {
        if self.model.get(p) == Some(&ChangeKind::Add) {
            return;
        }
        let kind = if self.parent.contains_key(p) {
            ChangeKind::Modify
        } else {
            ChangeKind::Add
        };
        self.model.insert(p.to_path_buf(), kind);
    }
    fn added(&mut self, p: &Path) {
        let kind = if self.parent.contains_key(p) {
            ChangeKind::Modify
        } else {
            ChangeKind::Add
        };
        self.model.insert(p.to_path_buf(), kind);
    }
    /// Records that `p` (and all below it) is gone.
    fn removed(&mut self, p: &Path) {
        self.model.retain(|q, _| !Self::under(q, p));
        self.paths.retain(|q, _| !(q == p || Self::under(q, p)));
        if self.parent.contains_key(p) {
            self.model.insert(p.to_path_buf(), ChangeKind::Delete);
        } else {
            self.model.remove(p);
        }
    }

    fn apply(&mut self, e: &Edit) {
        let fs = self.layer.clone();
        match *e {
            Edit::Create { at, dir } => {
                let Some(parent) = self.pick(at, Some(true)).or(Some(PathBuf::new())) else {
                    return;
                };
                let p = parent.join(self.fresh());
                if dir {
                    fs.mkdir(&p, 0o755).unwrap();
                } else {
                    fs.write(&p, 0o644, b"new").unwrap();
                    let t = self.tick();
                    fs.set_times(&p, None, Some(t)).unwrap();
                }
                self.paths.insert(p.clone(), dir);
                self.added(&p);
            }
            Edit::Modify { at } => {
                let Some(p) = self.pick(at, Some(false)) else { return };
                let mut data = fs.read(&p).unwrap();
                data.push(b'+');
                fs.write(&p, 0o644, &data).unwrap();
                let t = self.tick();
                fs.set_times(&p, None, Some(t)).unwrap();
                self.touched(&p);
            }
            Edit::Chmod { at } => {
                let Some(p) = self.pick(at, None) else { return };
                // Always a mode neither current nor the parent's (0o755 and
                // 0o644), so the change never undoes itself.
                let m = fs.metadata(&p).unwrap().mode;
                let mut new = m;
                while new == m || new == 0o755 {
                    self.next += 1;
                    new = 0o700 | (self.next % 0o100);
                }
                fs.set_mode(&p, new).unwrap();
                self.touched(&p);
            }
            Edit::Chown { at } => {
                let Some(p) = self.pick(at, None) else { return };
                let m = fs.metadata(&p).unwrap();
                fs.set_owner(&p, m.uid + 1, m.gid).unwrap();
                self.touched(&p);
            }
            Edit::Delete { at } => {
                let Some(p) = self.pick(at, None) else { return };
                fs.remove_all(&p).unwrap();
                self.removed(&p);
            }
            Edit::Rename { at, to } => {
                let Some(from) = self.pick(at, None) else { return };
                let Some(dir) = self.pick(to, Some(true)).or(Some(PathBuf::new())) else {
                    return;
                };
                if dir == from || Self::under(&dir, &from) {
                    return;
                }
                let to = dir.join(self.fresh());
                let moved: Vec<(PathBuf, bool)> = self
                    .paths
                    .iter()
                    .filter(|(q, _)| **q == from || Self::under(q, &from))
                    .map(|(q, d)| (to.join(q.strip_prefix(&from).unwrap()), *d))
                    .collect();
                fs.rename(&from, &to).unwrap();
                self.removed(&from);
                for (q, d) in moved {
                    self.paths.insert(q.clone(), d);
                    self.added(&q);
                }
            }
            Edit::FileToDir { at } => {
                let Some(p) = self.pick(at, Some(false)) else { return };
                fs.remove_file(&p).unwrap();
                fs.mkdir(&p, 0o755).unwrap();
                self.paths.insert(p.clone(), true);
                self.model.remove(&p);
                if self.parent.get(&p) == Some(&true) {
                    // A directory again, as in the parent, but empty: no
                    // change of its own; what the parent had in it is gone.
                    let gone: Vec<PathBuf> = self
                        .parent
                        .keys()
                        .filter(|c| c.parent() == Some(p.as_path()))
                        .cloned()
                        .collect();
                    for c in gone {
                        self.model.insert(c, ChangeKind::Delete);
                    }
                } else {
                    self.touched(&p);
                }
            }
            Edit::DirToFile { at } => {
                let Some(p) = self.pick(at, Some(true)) else { return };
                fs.remove_all(&p).unwrap();
                fs.write(&p, 0o644, b"was a dir").unwrap();
                let t = self.tick();
                fs.set_times(&p, None, Some(t)).unwrap();
                self.removed(&p);
                self.paths.insert(p.clone(), false);
                self.model.remove(&p);
                self.touched(&p);
            }
        }
    }

    /// The model's changes plus Docker's rule: a directory present in both
    /// trees with changes below it is modified too.
    fn expected(&self) -> BTreeMap<PathBuf, ChangeKind> {
        let mut out = self.model.clone();
        for p in self.model.keys() {
            for a in p.ancestors().skip(1) {
                if a.as_os_str().is_empty() {
                    break;
                }
                let both_dirs = self.parent.get(a) == Some(&true) && self.paths.get(a) == Some(&true);
                if both_dirs {
                    out.entry(a.to_path_buf()).or_insert(ChangeKind::Modify);
                }
            }
        }
        out
    }
}

fn build_parent(shape: &[(u8, bool)]) -> (MemFs, BTreeMap<PathBuf, bool>) {
    let fs = MemFs::new();
    let mut paths: BTreeMap<PathBuf, bool> = BTreeMap::new();
    for (i, (depth, dir)) in shape.iter().enumerate() {
        let dirs: Vec<_> = paths.iter().filter(|(_, d)| **d).map(|(p, _)| p.clone()).collect();
        let base = if dirs.is_empty() || *depth == 0 {
            PathBuf::new()
        } else {
            dirs[i * 7 % dirs.len()].clone()
        };
        let p = base.join(format!("p{i}"));
        if *dir {
            fs.mkdir(&p, 0o755).unwrap();
        } else {
            fs.write(&p, 0o644, format!("file {i}").as_bytes()).unwrap();
        }
        fs.set_times(&p, None, Some(Timestamp::from_secs(1_000 + i as i64)))
            .unwrap();
        paths.insert(p, *dir);
    }
    (fs, paths)
}

fn copy(fs: &MemFs) -> MemFs {
    let (tar, _) = export(fs, &ExportOptions::default(), Vec::new()).unwrap();
    let out = MemFs::new();
    import(&out, &tar[..], &ImportOptions::default()).unwrap();
    out
}

/// Everything observable but the root's own times.
fn observe(fs: &dyn Fs) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(dir) = stack.pop() {
        for e in fs.read_dir(&dir).unwrap() {
            let p = dir.join(&e.name);
            let m = fs.metadata(&p).unwrap();
            // A directory's mtime is no change in Docker's rules (an entry
            // made and removed again moves it), so it is not compared.
            let mtime = if m.is_dir() { 0 } else { m.mtime.sec };
            let mut d = format!("{:?} {:o} {}:{} mtime={mtime}", m.file_type, m.mode, m.uid, m.gid);
            match m.file_type {
                FileType::Directory => stack.push(p.clone()),
                FileType::Regular => d += &format!(" {:?}", fs.read(&p).unwrap()),
                _ => {}
            }
            out.insert(p, d);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn changes_match_the_model_and_the_diff_rebuilds_the_layer(
        shape in parent_shape(),
        edits in prop::collection::vec(edit(), 1..25),
    ) {
        let (parent, parent_paths) = build_parent(&shape);
        let layer = copy(&parent);
        let mut w = World { layer: layer.clone(), paths: parent_paths.clone(), parent: parent_paths, model: BTreeMap::new(), next: 0, clock: 5_000 };
        for e in &edits {
            w.apply(e);
        }
        let trees = Trees::default();
        trees.layers.lock().unwrap().insert("parent".into(), parent.clone());
        trees.layers.lock().unwrap().insert("layer".into(), layer.clone());
        let naive = NaiveDiff::new(trees);

        let got = naive.changes("layer", Some("parent")).unwrap();
        prop_assert!(got.windows(2).all(|p| walk_order(&p[0].path, &p[1].path).is_lt()), "walk order: {:?}", got);
        let got: BTreeMap<PathBuf, ChangeKind> = got.into_iter().map(|c| (c.path, c.kind)).collect();
        prop_assert_eq!(got, w.expected());

        let tar = naive.diff("layer", Some("parent"), Vec::new()).unwrap();
        let rebuilt = copy(&parent);
        naive.trees().layers.lock().unwrap().insert("rebuilt".into(), rebuilt.clone());
        naive.apply_diff("rebuilt", Some("parent"), &tar[..]).unwrap();
        prop_assert_eq!(observe(&rebuilt), observe(&layer));
        prop_assert_eq!(*naive.trees().held.lock().unwrap(), 0, "every get was put");
    }
}
