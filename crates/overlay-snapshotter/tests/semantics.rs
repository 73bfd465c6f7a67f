//! containerd's snapshot semantics, on the in-memory fake backend: what
//! each call answers, which error (and so which gRPC code) bad requests
//! get, and that a refused request changes nothing.

use std::collections::BTreeMap;

use overlay_driver::{FakeBackend, GraphDriver, Overlay2};
use overlay_snapshotter::{Filters, Kind, MAX_KEY_LEN, Snapshotter, Store};
use tonic::Code;

type S = Snapshotter<FakeBackend>;

fn new() -> S {
    let driver = Overlay2::new(FakeBackend::new(), &[] as &[&str]).expect("driver");
    Snapshotter::new(driver, Store::in_memory().expect("store"))
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn code<T: std::fmt::Debug>(r: overlay_snapshotter::Result<T>) -> Code {
    r.expect_err("should fail").code()
}

/// Everything observable: the listing and the home's layers.
fn state(s: &S) -> (Vec<overlay_snapshotter::Info>, Vec<String>) {
    let list = s.list(&Filters::default()).expect("list");
    let layers = s
        .driver()
        .layers()
        .expect("layers")
        .into_iter()
        .map(|l| l.as_str().to_owned())
        .collect();
    (list, layers)
}

/// containerd's unpack of a two-layer image, then a container on it.
fn image(s: &S) {
    s.prepare(
        "default/1/extract-1 sha256:aa",
        "",
        labels(&[("containerd.io/snapshot.ref", "x")]),
    )
    .expect("prepare base");
    s.commit("default/2/sha256:c1", "default/1/extract-1 sha256:aa", BTreeMap::new())
        .expect("commit base");
    s.prepare("default/3/extract-2 sha256:bb", "default/2/sha256:c1", BTreeMap::new())
        .expect("prepare 2");
    s.commit("default/4/sha256:c2", "default/3/extract-2 sha256:bb", BTreeMap::new())
        .expect("commit 2");
}

#[test]
fn unpack_then_container() {
    let s = new();
    image(&s);
    let m = s
        .prepare("default/5/ctr", "default/4/sha256:c2", labels(&[("a", "1")]))
        .expect("prepare container");
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].kind, "overlay");
    let opts = &m[0].options;
    assert!(
        opts.iter().any(|o| o.starts_with("upperdir=/fake/overlay2/")),
        "{opts:?}"
    );
    let lower = opts.iter().find_map(|o| o.strip_prefix("lowerdir=")).expect("lowerdir");
    assert_eq!(lower.split(':').count(), 2, "two layers below: {lower}");
    assert!(lower.split(':').all(|l| l.starts_with("/fake/overlay2/l/")), "{lower}");
    assert_eq!(s.mounts("default/5/ctr").expect("mounts"), m);

    let info = s.stat("default/5/ctr").expect("stat");
    assert_eq!(info.kind, Kind::Active);
    assert_eq!(info.parent.as_deref(), Some("default/4/sha256:c2"));
    assert_eq!(info.labels, labels(&[("a", "1")]));
    assert_eq!(info.created, info.updated, "a new snapshot was never updated");
    let base = s.stat("default/2/sha256:c1").expect("stat base");
    assert_eq!(base.kind, Kind::Committed);
    assert_eq!(base.parent, None);
    assert!(
        s.stat("default/1/extract-1 sha256:aa").is_err(),
        "the active key is gone after commit"
    );
    // One layer per snapshot, readable as a Docker home.
    assert_eq!(s.driver().layers().expect("layers").len(), 3);
}

#[test]
fn mounts_of_each_shape() {
    let s = new();
    let m = s.prepare("a", "", BTreeMap::new()).expect("prepare");
    assert_eq!(
        (m[0].kind.as_str(), m[0].options.as_slice()),
        ("bind", &["rw".to_owned(), "rbind".to_owned()][..])
    );
    s.commit("c1", "a", BTreeMap::new()).expect("commit");
    let v = s.view("v1", "c1", BTreeMap::new()).expect("view of one");
    assert_eq!(v[0].kind, "bind");
    assert_eq!(v[0].options, ["ro", "rbind"]);
    assert!(v[0].source.ends_with("/diff"));
    s.prepare("b", "c1", BTreeMap::new()).expect("prepare b");
    s.commit("c2", "b", BTreeMap::new()).expect("commit b");
    let v = s.view("v2", "c2", BTreeMap::new()).expect("view of two");
    assert_eq!(v[0].kind, "overlay");
    assert!(
        v[0].options.iter().all(|o| !o.starts_with("upperdir=")),
        "{:?}",
        v[0].options
    );
    let v = s.view("v0", "", BTreeMap::new()).expect("view of nothing");
    assert_eq!(v[0].options, ["ro", "rbind"]);
    assert_eq!(s.stat("v2").expect("stat").kind, Kind::View);
}

#[test]
fn bad_requests_get_the_right_code_and_change_nothing() {
    let s = new();
    image(&s);
    s.prepare("active", "default/4/sha256:c2", BTreeMap::new())
        .expect("prepare");
    s.view("view", "default/4/sha256:c2", BTreeMap::new()).expect("view");
    let before = state(&s);
    let long = "k".repeat(MAX_KEY_LEN + 1);
    let cases: Vec<(&str, Code, overlay_snapshotter::Result<()>)> = vec![
        (
            "empty key",
            Code::InvalidArgument,
            s.prepare("", "", BTreeMap::new()).map(drop),
        ),
        (
            "overlong key",
            Code::InvalidArgument,
            s.prepare(&long, "", BTreeMap::new()).map(drop),
        ),
        (
            "duplicate key",
            Code::AlreadyExists,
            s.prepare("active", "", BTreeMap::new()).map(drop),
        ),
        (
            "duplicate of a committed name",
            Code::AlreadyExists,
            s.view("default/2/sha256:c1", "", BTreeMap::new()).map(drop),
        ),
        (
            "missing parent",
            Code::NotFound,
            s.prepare("x", "nope", BTreeMap::new()).map(drop),
        ),
        (
            "active parent",
            Code::InvalidArgument,
            s.prepare("x", "active", BTreeMap::new()).map(drop),
        ),
        (
            "view parent",
            Code::InvalidArgument,
            s.view("x", "view", BTreeMap::new()).map(drop),
        ),
        (
            "commit of a view",
            Code::FailedPrecondition,
            s.commit("n", "view", BTreeMap::new()),
        ),
        (
            "commit of a committed",
            Code::FailedPrecondition,
            s.commit("n", "default/4/sha256:c2", BTreeMap::new()),
        ),
        (
            "commit onto a taken name",
            Code::AlreadyExists,
            s.commit("default/2/sha256:c1", "active", BTreeMap::new()),
        ),
        (
            "commit of a missing key",
            Code::NotFound,
            s.commit("n", "missing", BTreeMap::new()),
        ),
        (
            "remove of a parent",
            Code::FailedPrecondition,
            s.remove("default/2/sha256:c1"),
        ),
        ("remove of a missing key", Code::NotFound, s.remove("missing")),
        (
            "mounts of a committed",
            Code::FailedPrecondition,
            s.mounts("default/2/sha256:c1").map(drop),
        ),
        ("mounts of a missing key", Code::NotFound, s.mounts("missing").map(drop)),
        ("stat of a missing key", Code::NotFound, s.stat("missing").map(drop)),
        ("usage of a missing key", Code::NotFound, s.usage("missing").map(drop)),
        (
            "empty label key",
            Code::InvalidArgument,
            s.prepare("y", "", labels(&[("", "v")])).map(drop),
        ),
        (
            "overlong label",
            Code::InvalidArgument,
            s.prepare("y", "", labels(&[("k", &"v".repeat(4096))])).map(drop),
        ),
    ];
    for (what, want, got) in cases {
        let err = got.expect_err(what);
        assert_eq!(err.code(), want, "{what}: {err}");
        assert!(!err.to_string().is_empty());
    }
    assert_eq!(state(&s), before, "refused requests changed something");
    // The message names the key.
    let e = s.remove("default/2/sha256:c1").expect_err("parent");
    assert!(e.to_string().contains("default/2/sha256:c1"), "{e}");
    let e = s.prepare("active", "", BTreeMap::new()).expect_err("dup");
    assert!(e.to_string().contains("\"active\""), "{e}");
}

#[test]
fn remove_leaves_first_then_parents() {
    let s = new();
    image(&s);
    s.prepare("ctr", "default/4/sha256:c2", BTreeMap::new())
        .expect("prepare");
    assert_eq!(code(s.remove("default/4/sha256:c2")), Code::FailedPrecondition);
    for k in ["ctr", "default/4/sha256:c2", "default/2/sha256:c1"] {
        s.remove(k).unwrap_or_else(|e| panic!("remove {k}: {e}"));
    }
    assert_eq!(state(&s), (Vec::new(), Vec::new()), "everything gone, layers included");
    assert!(s.driver().check().expect("check").is_empty());
}

#[test]
fn update_follows_field_paths() {
    let s = new();
    s.prepare("a", "", labels(&[("keep", "1"), ("drop", "2")]))
        .expect("prepare");
    let mut info = s.stat("a").expect("stat");
    let created = info.created;
    info.labels = labels(&[("new", "3")]);
    // One label added, one removed (absent from info), one untouched.
    let got = s
        .update(info.clone(), &["labels.new".into(), "labels.drop".into()])
        .expect("update");
    assert_eq!(got.labels, labels(&[("keep", "1"), ("new", "3")]));
    assert_eq!(got.created, created);
    assert!(got.updated >= got.created);
    // No mask: all labels replaced.
    let got = s.update(info.clone(), &[]).expect("update all");
    assert_eq!(got.labels, labels(&[("new", "3")]));
    let got = s.update(info.clone(), &["labels".into()]).expect("update labels");
    assert_eq!(got.labels, labels(&[("new", "3")]));
    for path in ["kind", "parent", "name", "created_at"] {
        assert_eq!(
            code(s.update(info.clone(), &[path.into()])),
            Code::InvalidArgument,
            "{path}"
        );
    }
    assert_eq!(s.stat("a").expect("stat").labels, labels(&[("new", "3")]));
    info.name = "missing".into();
    assert_eq!(code(s.update(info, &[])), Code::NotFound);
}

#[test]
fn list_filters() {
    let s = new();
    image(&s);
    s.prepare("ctr", "default/4/sha256:c2", labels(&[("containerd.io/gc.root", "x")]))
        .expect("prepare");
    let names = |f: &[&str]| -> Vec<String> {
        s.list(&Filters::parse(f).expect("filter"))
            .expect("list")
            .into_iter()
            .map(|i| i.name)
            .collect()
    };
    assert_eq!(names(&[]).len(), 3);
    assert_eq!(names(&["kind==active"]), ["ctr"]);
    assert_eq!(
        names(&["kind==committed"]),
        ["default/2/sha256:c1", "default/4/sha256:c2"]
    );
    assert_eq!(names(&["parent==\"\""]), ["default/2/sha256:c1"]);
    assert_eq!(names(&["parent!=\"\""]), ["ctr", "default/4/sha256:c2"]);
    assert_eq!(names(&["labels.\"containerd.io/gc.root\""]), ["ctr"]);
    assert_eq!(names(&["kind==view", "name==ctr"]), ["ctr"]);
    assert_eq!(
        names(&["kind==committed,parent==default/2/sha256:c1"]),
        ["default/4/sha256:c2"]
    );
    assert_eq!(names(&["name~=c[12]$"]), ["default/2/sha256:c1", "default/4/sha256:c2"]);
}

#[test]
fn usage_counts_own_files() {
    let s = new();
    let m = s.prepare("a", "", BTreeMap::new()).expect("prepare");
    let empty = s.usage("a").expect("usage");
    assert_eq!(empty.inodes, 1, "the upper dir itself");
    // Write through the layer's tree, as containerd's unpack does.
    let layer = m[0]
        .source
        .trim_end_matches("/diff")
        .rsplit('/')
        .next()
        .expect("id")
        .to_owned();
    let tree = s.driver().tree(&layer).expect("tree");
    tree.write(std::path::Path::new("f"), 0o644, &[7u8; 10_000])
        .expect("write");
    let full = s.usage("a").expect("usage");
    assert_eq!(full.inodes, 2);
    assert_eq!(full.size - empty.size, 12_288, "10,000 bytes take three 4 KiB blocks");
    s.commit("c", "a", BTreeMap::new()).expect("commit");
    assert_eq!(s.usage("c").expect("usage"), full, "measured at commit");
    s.view("v", "c", BTreeMap::new()).expect("view");
    assert_eq!(s.usage("v").expect("usage").size, 0);
}

#[test]
fn cleanup_and_repair_reconcile_layers_and_records() {
    let s = new();
    image(&s);
    s.prepare("ctr", "default/4/sha256:c2", BTreeMap::new())
        .expect("prepare");
    // A layer no record names: what a crash between the two leaves.
    s.driver()
        .create("orphan", None, &overlay_driver::CreateOpts::default())
        .expect("orphan layer");
    // And the scratch of a create that a SIGKILL interrupted.
    use overlay_driver::Backend as _;
    let home = s.driver().backend().home();
    let scratch = format!("{}create-killed", overlay_driver::STAGING_PREFIX);
    home.mkdir(std::path::Path::new(&scratch), 0o700).expect("scratch");
    home.symlink(
        std::path::Path::new("../gone/diff"),
        std::path::Path::new("l/AAAAAAAAAAAAAAAAAAAAAAAAAA"),
    )
    .expect("dangling link");
    let found = s.check().expect("check");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(s.driver().check().expect("driver check").len(), 2);
    let removed = s.cleanup().expect("cleanup");
    assert_eq!(removed.len(), 3, "{removed:?}");
    assert_eq!(removed[2], "orphan");
    assert!(s.driver().check().expect("driver check").is_empty());
    assert!(s.check().expect("check").is_empty());
    // A record whose layer is gone: it and what stacks on it are forgotten.
    let c2 = s
        .driver()
        .layers()
        .expect("layers")
        .into_iter()
        .find(|l| {
            s.driver().children(l.as_str()).is_ok_and(|c| !c.is_empty())
                && s.driver().parent_of(l.as_str()).is_ok_and(|p| p.is_some())
        })
        .expect("the middle layer");
    let ctr_layer = s.driver().children(c2.as_str()).expect("children")[0].clone();
    s.driver().remove(c2.as_str()).expect("lose it");
    assert_eq!(s.check().expect("check").len(), 1);
    s.repair().expect("repair");
    assert!(s.check().expect("check").is_empty());
    let names: Vec<String> = s
        .list(&Filters::default())
        .expect("list")
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["default/2/sha256:c1"]);
    assert!(!s.driver().exists(ctr_layer.as_str()), "the child's layer went too");
}
