//! Parents and children: `parent_of` and `children` agree with how a forest
//! of layers was built, on the fake (proptest) and the kernel backend, and
//! `children` still answers when a parent's `link` file is gone.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeSet;
use std::path::Path;

use overlay_driver::{Backend, CreateOpts, FakeBackend, GraphDriver, KernelBackend, Overlay2};
use proptest::prelude::*;

/// Creates layer `i` on `parents[i]` (an earlier layer) for each `i`, then
/// checks every layer's parent and children against that.
fn check_forest<B: Backend>(d: &Overlay2<B>, parents: &[Option<usize>]) {
    let name = |i: usize| format!("layer{i}");
    for (i, parent) in parents.iter().enumerate() {
        let parent = parent.map(name);
        d.create(&name(i), parent.as_deref(), &CreateOpts::default()).unwrap();
    }
    for (i, parent) in parents.iter().enumerate() {
        let got = d.parent_of(&name(i)).unwrap().map(|p| p.into_string());
        assert_eq!(got, parent.map(name), "parent of {}", name(i));
        let kids: BTreeSet<String> = d
            .children(&name(i))
            .unwrap()
            .into_iter()
            .map(|c| c.into_string())
            .collect();
        let want: BTreeSet<String> = (0..parents.len())
            .filter(|&j| parents[j] == Some(i))
            .map(name)
            .collect();
        assert_eq!(kids, want, "children of {}", name(i));
    }
}

/// Each layer's parent: none, or one of the layers made before it.
fn forest() -> impl Strategy<Value = Vec<Option<usize>>> {
    proptest::collection::vec(any::<Option<prop::sample::Index>>(), 1..24).prop_map(|picks| {
        picks
            .into_iter()
            .enumerate()
            .map(|(i, pick)| pick.filter(|_| i > 0).map(|ix| ix.index(i)))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn fake_forest_parents_and_children(parents in forest()) {
        let d = Overlay2::new(FakeBackend::new(), &[] as &[&str]).unwrap();
        check_forest(&d, &parents);
    }
}

#[test]
fn kernel_forest_parents_and_children() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Overlay2::new(KernelBackend::new(dir.path().join("overlay2")).unwrap(), &[] as &[&str]).unwrap();
    check_forest(&d, &[None, Some(0), Some(0), Some(1), None, Some(4), Some(3), Some(0)]);
}

#[test]
fn children_without_the_parents_link_file() {
    let backend = FakeBackend::new();
    let home = backend.home().clone();
    let d = Overlay2::new(backend, &[] as &[&str]).unwrap();
    for (id, parent) in [
        ("base", None),
        ("a", Some("base")),
        ("b", Some("base")),
        ("c", Some("a")),
    ] {
        d.create(id, parent, &CreateOpts::default()).unwrap();
    }
    home.remove_file(Path::new("base/link")).unwrap();
    let kids: Vec<String> = d
        .children("base")
        .unwrap()
        .into_iter()
        .map(|c| c.into_string())
        .collect();
    assert_eq!(kids, ["a", "b"]);
    assert!(d.children("nothere").is_err());
}
