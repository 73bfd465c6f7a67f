//! The in-memory layer index servers keep (`Overlay2::with_index`): the
//! same answers as reading the home, O(1) children, a parent's remove
//! refused, and no child left on a removed parent when creates and
//! removes race. On the fake backend and, as root, on the kernel.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use overlay_driver::{Backend, CreateOpts, DriverError, FakeBackend, GraphDriver, KernelBackend, Overlay2};

fn none() -> CreateOpts {
    CreateOpts::default()
}

fn behaves<B: Backend + 'static>(make: impl Fn() -> Overlay2<B>) {
    // Layers made before the index is loaded are found by it.
    let plain = make();
    plain.create("base", None, &none()).unwrap();
    plain.create("mid", Some("base"), &none()).unwrap();
    plain.create_read_write("top", Some("mid"), &none()).unwrap();
    plain.create_read_write("side", Some("base"), &none()).unwrap();
    let d = plain.with_index().unwrap();
    let names = |v: Vec<overlay_layout::LayerId>| v.into_iter().map(|l| l.into_string()).collect::<Vec<_>>();
    assert_eq!(names(d.children("base").unwrap()), ["mid", "side"]);
    assert_eq!(names(d.children("top").unwrap()), Vec::<String>::new());
    // A parent is not removed; its children are, then it is.
    match d.remove("mid") {
        Err(DriverError::HasChildren { id, children }) => assert_eq!((id.as_str(), children), ("mid", 1)),
        other => panic!("remove of a parent: {other:?}"),
    }
    assert!(d.exists("mid"));
    d.remove("top").unwrap();
    d.remove("mid").unwrap();
    assert_eq!(names(d.children("base").unwrap()), ["side"]);
    // A create on a missing parent is refused by the index as by the home.
    assert!(matches!(
        d.create("x", Some("mid"), &none()),
        Err(DriverError::NotFound(_))
    ));
    assert!(!d.exists("x"));
    // A failed create leaves nothing in the index.
    assert!(d.create("side", None, &none()).is_err());
    assert_eq!(names(d.children("base").unwrap()), ["side"]);

    // Creates on a parent racing its removal: afterwards, either the
    // parent is gone and no child was made on it, or it stays with them.
    let d = Arc::new(d);
    for round in 0..20 {
        let parent = format!("p{round}");
        d.create(&parent, Some("base"), &none()).unwrap();
        let (d1, d2, p1, p2) = (Arc::clone(&d), Arc::clone(&d), parent.clone(), parent.clone());
        let creator = std::thread::spawn(move || {
            (0..4)
                .filter(|i| d1.create(&format!("{p1}-c{i}"), Some(&p1), &none()).is_ok())
                .count()
        });
        let remover = std::thread::spawn(move || d2.remove(&p2).is_ok());
        let made = creator.join().unwrap();
        let removed = remover.join().unwrap();
        assert!(
            !(removed && made > 0),
            "round {round}: parent removed while {made} children were made on it"
        );
        assert_eq!(d.exists(&parent), !removed);
        assert!(d.check().unwrap().is_empty(), "round {round}: {:?}", d.check().unwrap());
        for i in 0..4 {
            let _ = d.remove(&format!("{parent}-c{i}"));
        }
        let _ = d.remove(&parent);
    }
    // reload_index sees what another process added.
    d.reload_index().unwrap();
    assert_eq!(names(d.children("base").unwrap()), ["side"]);
}

#[test]
fn index_on_the_fake() {
    behaves(|| Overlay2::new(FakeBackend::new(), &[] as &[&str]).unwrap());
}

#[test]
fn index_on_the_kernel() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped on the kernel backend: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("overlay2");
    behaves(|| Overlay2::new(KernelBackend::new(&home).unwrap(), &[] as &[&str]).unwrap());
}
