//! Differential property test: the same random driver operations and file
//! edits through mounted views, on the in-memory fake and on the kernel,
//! give the same results, merged trees, changes, diff sizes and diff tar
//! contents. This is what makes the fake trustworthy. Needs root and
//! overlayfs for the kernel side; otherwise it says so and skips.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use overlay_driver::{CreateOpts, FakeBackend, GraphDriver, KernelBackend, Overlay2};
use overlay_fs::Fs;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Create { parent: Option<usize>, rw: bool },
    Edit { layer: usize, edit: Edit },
    Remove { layer: usize },
}

#[derive(Debug, Clone)]
enum Edit {
    Write(&'static str, Vec<u8>),
    Mkdir(&'static str),
    Remove(&'static str),
    Rename(&'static str, &'static str),
    Chmod(&'static str, u32),
    Symlink(&'static str, &'static str),
}

fn name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", "d", "d/x", "d/y", "e/z"])
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (name(), prop::collection::vec(any::<u8>(), 0..16)).prop_map(|(n, d)| Edit::Write(n, d)),
        2 => name().prop_map(Edit::Mkdir),
        2 => name().prop_map(Edit::Remove),
        1 => (name(), name()).prop_map(|(a, b)| Edit::Rename(a, b)),
        1 => (name(), prop::sample::select(vec![0o600, 0o755, 0o711])).prop_map(|(n, m)| Edit::Chmod(n, m)),
        1 => (name(), name()).prop_map(|(t, n)| Edit::Symlink(t, n)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (prop::option::weighted(0.8, 0usize..8), any::<bool>()).prop_map(|(parent, rw)| Op::Create { parent, rw }),
        8 => (0usize..8, edit()).prop_map(|(layer, edit)| Op::Edit { layer, edit }),
        1 => (0usize..8).prop_map(|layer| Op::Remove { layer }),
    ]
}

/// Runs one step; the outcome, comparable across backends.
fn step(d: &dyn GraphDriver, ids: &mut Vec<(String, Option<String>)>, n: usize, op: &Op) -> String {
    let pick = |i: usize| (!ids.is_empty()).then(|| ids[i % ids.len()].clone());
    match op {
        Op::Create { parent, rw } => {
            let id = format!("layer{n}");
            let parent = parent.and_then(pick).map(|(p, _)| p);
            let r = if *rw {
                d.create_read_write(&id, parent.as_deref(), &CreateOpts::default())
            } else {
                d.create(&id, parent.as_deref(), &CreateOpts::default())
            };
            if r.is_ok() {
                ids.push((id, parent));
            }
            format!("create {:?}", r.map_err(|e| e.to_string()))
        }
        Op::Edit { layer, edit } => {
            let Some((id, _)) = pick(*layer) else {
                return "no layer".into();
            };
            // Only leaves: a layer with children is someone's lower, and
            // overlayfs leaves offline changes to a lower undefined once
            // copy-up has used redirects or the index (Docker's layer
            // store never writes a parent either).
            if ids.iter().any(|(_, p)| p.as_deref() == Some(&id)) {
                return "skip".into();
            }
            d.get(&id, None).unwrap();
            let t = d.tree(&id).unwrap();
            let p = |s: &str| PathBuf::from(s);
            let r = match edit {
                Edit::Write(f, data) => t.write(&p(f), 0o644, data),
                Edit::Mkdir(f) => t.mkdir(&p(f), 0o755),
                Edit::Remove(f) => t.remove_all(&p(f)),
                Edit::Rename(a, b) => t.rename(&p(a), &p(b)),
                Edit::Chmod(f, m) => t.set_mode(&p(f), *m),
                Edit::Symlink(target, f) => t.symlink(Path::new(target), &p(f)),
            };
            d.put(&id).unwrap();
            format!("edit {id}: {:?}", r.map_err(|e| e.kind()))
        }
        Op::Remove { layer } => {
            let Some((id, _)) = pick(*layer) else {
                return "no layer".into();
            };
            // Only leaves: removing a parent breaks its children (Docker's
            // layer store never does it).
            if ids.iter().any(|(_, p)| p.as_deref() == Some(&id)) {
                return "skip".into();
            }
            ids.retain(|(i, _)| *i != id);
            format!("remove {:?}", d.remove(&id).map_err(|e| e.to_string()))
        }
    }
}

fn observe(t: &dyn Fs) -> BTreeMap<PathBuf, String> {
    let how = overlay_fs::Observe {
        xattrs: &|_| false,
        ..overlay_fs::Observe::default()
    };
    overlay_fs::observe(t, &how).unwrap()
}

/// A tar's entries without their times (the two clocks differ).
fn tar_entries(tar: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(tar);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push(format!(
            "{} {:?} {:o} {:?} {:?}",
            e.path().unwrap().display(),
            h.entry_type(),
            h.mode().unwrap(),
            e.link_name().unwrap(),
            data
        ));
    }
    out
}

fn summary(d: &dyn GraphDriver, ids: &[(String, Option<String>)]) -> Vec<String> {
    let mut out = Vec::new();
    for (id, parent) in ids {
        d.get(id, None).unwrap();
        out.push(format!("{id}: {:?}", observe(&*d.tree(id).unwrap())));
        d.put(id).unwrap();
        let changes: Vec<String> = d
            .changes(id, parent.as_deref())
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        out.push(format!("{id} changes {changes:?}"));
        out.push(format!("{id} size {}", d.diff_size(id, parent.as_deref()).unwrap()));
        let mut tar = Vec::new();
        d.diff(id, parent.as_deref(), &mut tar).unwrap();
        out.push(format!("{id} diff {:?}", tar_entries(&tar)));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn fake_and_kernel_agree(rest in prop::collection::vec(op(), 1..30)) {
        // Always a base layer to stack on and edit.
        let ops: Vec<Op> = std::iter::once(Op::Create { parent: None, rw: true }).chain(rest).collect();
        if !rustix::process::geteuid().is_root() || overlay_mount::probe::require_overlay().is_err() {
            eprintln!("skipped: the differential test needs root and overlayfs");
            return Ok(());
        }
        let tmp = tempfile::tempdir().unwrap();
        let kernel = Overlay2::new(KernelBackend::new(tmp.path().join("home")).unwrap(), &[] as &[&str]).unwrap();
        let fake = Overlay2::new(FakeBackend::new(), &[] as &[&str]).unwrap();
        let (mut kids, mut fids) = (Vec::new(), Vec::new());
        for (n, op) in ops.iter().enumerate() {
            let k = step(&kernel, &mut kids, n, op);
            let f = step(&fake, &mut fids, n, op);
            prop_assert_eq!(k, f, "step {} {:?}", n, op);
        }
        let (k, f) = (summary(&kernel, &kids), summary(&fake, &fids));
        kernel.cleanup().unwrap();
        prop_assert_eq!(k, f);
    }
}
