//! `check` names each kind of damage a crash or an older tool leaves, and
//! `repair` fixes it: the home is clean afterwards and every layer left
//! works.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;

use overlay_driver::{CreateOpts, FakeBackend, GraphDriver, Overlay2, Problem};
use overlay_fs::{Fs, MemFs};

fn p(s: &str) -> &Path {
    Path::new(s)
}

fn link_of(home: &MemFs, id: &str) -> String {
    String::from_utf8(home.read(&p(id).join("link")).unwrap()).unwrap()
}

#[test]
fn every_kind_of_damage_is_named_and_repaired() {
    let home = MemFs::new();
    let d = Overlay2::new(FakeBackend::with_home(home.clone()), &[] as &[&str]).unwrap();
    for (id, parent) in [
        ("base", None),
        ("mid", Some("base")),
        ("top", Some("mid")),
        ("lost", None),
        ("orphan", Some("lost")),
    ] {
        d.create(id, parent, &CreateOpts::default()).unwrap();
    }
    assert_eq!(d.check().unwrap(), vec![]);
    // A half-built layer, a half-applied diff, a link to nowhere, one that
    // leaves the home, a missing link, a stale merged dir, a layer whose
    // parent is gone.
    home.mkdir(p(".tmp-create-abc"), 0o710).unwrap();
    home.mkdir(p("base/.tmp-apply-abc"), 0o755).unwrap();
    home.symlink(p("../gone/diff"), p("l/ZZZZZZZZZZZZZZZZZZZZZZZZZZ"))
        .unwrap();
    home.symlink(p("/etc"), p("l/YYYYYYYYYYYYYYYYYYYYYYYYYY")).unwrap();
    let mid_link = link_of(&home, "mid");
    home.remove_file(&p("l").join(&mid_link)).unwrap();
    home.mkdir(p("top/merged"), 0o700).unwrap();
    let lost_link = link_of(&home, "lost");
    home.remove_all(p("lost")).unwrap();
    home.remove_file(&p("l").join(&lost_link)).unwrap();

    let problems = d.check().unwrap();
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    for want in [
        Problem::StagingLeftover(".tmp-create-abc".into()),
        Problem::StagingLeftover("base/.tmp-apply-abc".into()),
        Problem::DanglingLink("ZZZZZZZZZZZZZZZZZZZZZZZZZZ".into()),
        Problem::LinkOutsideHome {
            link: "YYYYYYYYYYYYYYYYYYYYYYYYYY".into(),
            target: "/etc".into(),
        },
        Problem::MissingLink {
            id: "mid".into(),
            link: mid_link.clone(),
        },
        Problem::MergedWithoutMount("top".into()),
        Problem::UnknownLowerLink {
            id: "orphan".into(),
            link: lost_link.clone(),
        },
    ] {
        assert!(problems.contains(&want), "{want} not found in {text:#?}");
    }
    assert!(
        text.iter().any(|t| t.contains("orphan") && t.contains(&lost_link)),
        "{text:?}"
    );

    d.repair().unwrap();
    assert_eq!(d.check().unwrap(), vec![]);
    // What could be saved works: mid's link is rebuilt, top mounts on it.
    assert_eq!(home.readlink(&p("l").join(&mid_link)).unwrap(), p("../mid/diff"));
    d.get("top", None).unwrap();
    d.put("top").unwrap();
    assert!(!d.exists("orphan"), "a layer whose parent is gone cannot work");
    assert!(d.exists("base") && d.exists("mid") && d.exists("top"));
}
