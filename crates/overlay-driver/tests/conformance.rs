//! One conformance suite for any `GraphDriver`, run on the kernel backend
//! (needs root and overlayfs: otherwise it says so and skips), on the
//! kernel backend rootless (each case in a child in a user namespace of
//! its own, as an unprivileged user: `rootless_root` with
//! `--map-root-user`, `rootless_subids` with a sub-id range; see
//! `common::rootless`), and on the in-memory fake (also as it runs
//! rootless: `fake_userxattr`, markers in `user.overlay.*`). It covers Docker's
//! graphtest, containerd's snapshotter regressions, and what a layer
//! store must refuse or survive.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::Path;
use std::sync::Arc;

use overlay_driver::{CreateOpts, DriverError, GraphDriver, KernelBackend, Overlay2};
use overlay_fs::{ErrorKind, Fs};

/// A driver under test; cleans up its mounts when dropped.
pub struct Fixture {
    pub driver: Box<dyn GraphDriver>,
    /// The home as a tree, for tests that damage it on purpose.
    pub home: Arc<dyn Fs>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.driver.cleanup();
    }
}

fn kernel() -> Option<Fixture> {
    if !common::kernel_backend_runs() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let backend = KernelBackend::new(dir.path().join("overlay2")).unwrap();
    let home = overlay_driver::Backend::home(&backend).clone();
    let driver = Overlay2::new(backend, &[] as &[&str]).unwrap();
    if common::rootless::is_child() {
        common::rootless::assert_in_user_namespace();
        assert!(driver.status().contains(&("userxattr".into(), "true".into())));
    }
    Some(Fixture {
        driver: Box::new(driver),
        home,
        _dir: Some(dir),
    })
}

fn fake() -> Option<Fixture> {
    fake_with(overlay_driver::FakeBackend::new())
}

/// The fake as the kernel backend runs rootless (`user.overlay.*`).
fn fake_userxattr() -> Option<Fixture> {
    fake_with(overlay_driver::FakeBackend::new().with_user_xattrs())
}

fn fake_with(backend: overlay_driver::FakeBackend) -> Option<Fixture> {
    let home = overlay_driver::Backend::home(&backend).clone();
    let driver = Overlay2::new(backend, &[] as &[&str]).unwrap();
    Some(Fixture {
        driver: Box::new(driver),
        home,
        _dir: None,
    })
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod kernel { $( #[test] fn $name() { if let Some(f) = super::kernel() { super::$name(&f) } } )* }
        mod fake { $( #[test] fn $name() { if let Some(f) = super::fake() { super::$name(&f) } } )* }
        mod fake_userxattr { $( #[test] fn $name() { if let Some(f) = super::fake_userxattr() { super::$name(&f) } } )* }
        mod rootless_root { $( #[test] fn $name() { super::rootless(super::common::rootless::Map::Root, stringify!($name)) } )* }
        mod rootless_subids { $( #[test] fn $name() { super::rootless(super::common::rootless::Map::SubIds, stringify!($name)) } )* }
    };
}

suite!(
    create_empty,
    create_base_and_snapshot,
    deep_stack_of_128,
    diff_apply_changes_and_sizes,
    file_update_in_a_layer,
    removing_a_lower_directory,
    chown_of_a_lower_file,
    directory_permission_survives_commit,
    rename_and_move_from_a_lower_layer,
    deleted_files_stay_deleted_above,
    get_put_are_counted,
    remove_while_mounted,
    committed_parents_mount_read_only,
    invalid_ids_change_nothing,
    corrupt_lower_file_is_named,
    link_outside_the_home_is_refused,
    missing_link_is_named,
    lower_without_its_diff_is_named,
    put_unmounts_a_layer_whose_lower_went_bad,
    metadata_and_status,
    concurrent_layers,
    quota_without_support_is_dockers_error,
);

/// The kernel case `name`, run by a rootless child (in a child, which
/// runs only the kernel case, nothing).
fn rootless(map: common::rootless::Map, name: &str) {
    if !common::rootless::is_child() {
        common::rootless::run_test(map, &format!("kernel::{name}"));
    }
}

fn p(s: &str) -> &Path {
    Path::new(s)
}

fn none() -> CreateOpts {
    CreateOpts::default()
}

/// Writes through a got layer's tree, then puts it.
fn edit(d: &dyn GraphDriver, id: &str, f: impl FnOnce(&dyn Fs)) {
    d.get(id, None).unwrap();
    f(&*d.tree(id).unwrap());
    d.put(id).unwrap();
}

fn read(d: &dyn GraphDriver, id: &str, path: &str) -> Option<Vec<u8>> {
    d.get(id, None).unwrap();
    let out = d.tree(id).unwrap().read(p(path)).ok();
    d.put(id).unwrap();
    out
}

fn create_empty(f: &Fixture) {
    let d = &*f.driver;
    d.create("empty", None, &none()).unwrap();
    assert!(d.exists("empty"));
    let path = d.get("empty", None).unwrap();
    assert!(
        path.ends_with("empty/diff"),
        "a base layer's get is its diff dir: {}",
        path.display()
    );
    assert!(d.tree("empty").unwrap().read_dir(p("")).unwrap().is_empty());
    d.put("empty").unwrap();
    assert!(matches!(
        d.create("empty", None, &none()),
        Err(DriverError::AlreadyExists(_))
    ));
    d.remove("empty").unwrap();
    assert!(!d.exists("empty"));
    d.remove("empty").unwrap();
}

fn base(d: &dyn GraphDriver) {
    d.create("base", None, &none()).unwrap();
    edit(d, "base", |t| {
        t.mkdir_all(p("etc"), 0o755).unwrap();
        t.write(p("etc/motd"), 0o644, b"base").unwrap();
        t.mkdir_all(p("var/lib/dir"), 0o755).unwrap();
        t.write(p("var/lib/dir/file"), 0o600, b"deep").unwrap();
        t.write(p("a"), 0o644, b"1").unwrap();
    });
}

fn create_base_and_snapshot(f: &Fixture) {
    let d = &*f.driver;
    base(d);
    d.create("snap", Some("base"), &none()).unwrap();
    assert_eq!(read(d, "snap", "etc/motd").unwrap(), b"base");
    assert_eq!(read(d, "snap", "var/lib/dir/file").unwrap(), b"deep");
    assert!(matches!(d.create("orphan", Some("nope"), &none()), Err(DriverError::NotFound(id)) if id == "nope"));
    assert!(!d.exists("orphan"));
}

fn deep_stack_of_128(f: &Fixture) {
    let d = &*f.driver;
    d.create("l0", None, &none()).unwrap();
    edit(d, "l0", |t| t.write(p("f0"), 0o644, b"0").unwrap());
    for i in 1..128 {
        d.create_read_write(&format!("l{i}"), Some(&format!("l{}", i - 1)), &none())
            .unwrap();
        if i % 16 == 0 || i == 127 {
            edit(d, &format!("l{i}"), |t| {
                t.write(format!("f{i}").as_ref(), 0o644, i.to_string().as_bytes())
                    .unwrap()
            });
        }
    }
    d.get("l127", None).unwrap();
    let t = d.tree("l127").unwrap();
    for i in (16..128).step_by(16).chain([0, 127]) {
        assert!(t.exists(Path::new(&format!("f{i}"))).unwrap(), "f{i}");
    }
    d.put("l127").unwrap();
    // 128 lower layers is Docker's limit: one more layer fits, two do not.
    d.create("l128", Some("l127"), &none()).unwrap();
    let e = d.create("l129", Some("l128"), &none()).unwrap_err();
    assert!(e.to_string().contains("128"), "{e}");
    assert!(!d.exists("l129"));
}

fn diff_apply_changes_and_sizes(f: &Fixture) {
    let d = &*f.driver;
    base(d);
    d.create_read_write("upper", Some("base"), &none()).unwrap();
    edit(d, "upper", |t| {
        t.write(p("etc/motd"), 0o644, b"changed!").unwrap();
        t.write(p("etc/new"), 0o644, b"added").unwrap();
        t.remove_all(p("var/lib/dir")).unwrap();
        t.remove_file(p("a")).unwrap();
    });
    let changes: Vec<String> = d
        .changes("upper", Some("base"))
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    for want in ["C /etc/motd", "A /etc/new", "D /var/lib/dir", "D /a"] {
        assert!(changes.contains(&want.to_string()), "{want} missing from {changes:?}");
    }
    let mut tar = Vec::new();
    d.diff("upper", Some("base"), &mut tar).unwrap();
    let size = d.diff_size("upper", Some("base")).unwrap();
    d.create("applied", Some("base"), &none()).unwrap();
    let applied = d.apply_diff("applied", Some("base"), &mut &tar[..]).unwrap();
    assert_eq!(size, applied, "diff size equals apply size");
    let again: Vec<String> = d
        .changes("applied", Some("base"))
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(again, changes, "an applied diff has the same changes");
    assert_eq!(read(d, "applied", "etc/motd").unwrap(), b"changed!");
    assert!(read(d, "applied", "a").is_none());
    assert!(read(d, "applied", "var/lib/dir/file").is_none());
    // Against no parent, everything is an addition.
    assert!(
        d.changes("base", None)
            .unwrap()
            .iter()
            .all(|c| c.kind == naive_diff::ChangeKind::Add)
    );
}

fn file_update_in_a_layer(f: &Fixture) {
    let d = &*f.driver;
    base(d);
    d.create_read_write("c", Some("base"), &none()).unwrap();
    edit(d, "c", |t| t.write(p("a"), 0o644, b"2").unwrap());
    assert_eq!(read(d, "c", "a").unwrap(), b"2");
    d.create("view", Some("base"), &none()).unwrap();
    assert_eq!(read(d, "view", "a").unwrap(), b"1", "the lower layer is untouched");
}

fn removing_a_lower_directory(f: &Fixture) {
    let d = &*f.driver;
    base(d);
    d.create_read_write("c", Some("base"), &none()).unwrap();
    edit(d, "c", |t| t.remove_all(p("var/lib")).unwrap());
    d.get("c", None).unwrap();
    assert!(!d.tree("c").unwrap().exists(p("var/lib")).unwrap());
    assert!(d.tree("c").unwrap().exists(p("var")).unwrap());
    d.put("c").unwrap();
}

fn chown_of_a_lower_file(f: &Fixture) {
    let d = &*f.driver;
    base(d);
    d.create_read_write("c", Some("base"), &none()).unwrap();
    if !common::rootless::namespace_maps(1000, 1001) {
        // `--map-root-user`: no other id exists; the kernel refuses, and
        // the lower file keeps its owner.
        edit(d, "c", |t| {
            let e = t.set_owner(p("etc/motd"), 1000, 1001).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        });
        eprintln!("skipped in part: this user namespace maps no uid 1000, so nothing can be chowned to it");
        assert_eq!(read_owner(d, "c", "etc/motd"), (0, 0));
        return;
    }
    edit(d, "c", |t| t.set_owner(p("etc/motd"), 1000, 1001).unwrap());
    d.get("c", None).unwrap();
    let m = d.tree("c").unwrap().metadata(p("etc/motd")).unwrap();
    assert_eq!((m.uid, m.gid), (1000, 1001));
    d.put("c").unwrap();
    d.get("base", None).unwrap();
    assert_eq!(d.tree("base").unwrap().metadata(p("etc/motd")).unwrap().uid, 0);
    d.put("base").unwrap();
}

fn read_owner(d: &dyn GraphDriver, id: &str, path: &str) -> (u32, u32) {
    d.get(id, None).unwrap();
    let m = d.tree(id).unwrap().metadata(p(path)).unwrap();
    d.put(id).unwrap();
    (m.uid, m.gid)
}

fn directory_permission_survives_commit(f: &Fixture) {
    let d = &*f.driver;
    base(d);
    d.create_read_write("c", Some("base"), &none()).unwrap();
    edit(d, "c", |t| {
        t.mkdir(p("private"), 0o711).unwrap();
        t.set_mode(p("etc"), 0o700).unwrap();
    });
    d.create("next", Some("c"), &none()).unwrap();
    d.get("next", None).unwrap();
    let t = d.tree("next").unwrap();
    assert_eq!(t.metadata(p("private")).unwrap().mode, 0o711);
    assert_eq!(t.metadata(p("etc")).unwrap().mode, 0o700);
    d.put("next").unwrap();
}

fn rename_and_move_from_a_lower_layer(f: &Fixture) {
    let d = &*f.driver;
    base(d);
    d.create_read_write("c", Some("base"), &none()).unwrap();
    edit(d, "c", |t| {
        t.rename(p("a"), p("b")).unwrap();
        t.mkdir(p("moved"), 0o755).unwrap();
        t.rename(p("etc/motd"), p("moved/motd")).unwrap();
    });
    d.get("c", None).unwrap();
    let t = d.tree("c").unwrap();
    assert!(!t.exists(p("a")).unwrap());
    assert_eq!(t.read(p("b")).unwrap(), b"1");
    assert_eq!(t.read(p("moved/motd")).unwrap(), b"base");
    assert!(!t.exists(p("etc/motd")).unwrap());
    d.put("c").unwrap();
}

fn deleted_files_stay_deleted_above(f: &Fixture) {
    let d = &*f.driver;
    base(d);
    d.create_read_write("c", Some("base"), &none()).unwrap();
    edit(d, "c", |t| t.remove_file(p("etc/motd")).unwrap());
    d.create("g", Some("c"), &none()).unwrap();
    assert!(read(d, "g", "etc/motd").is_none());
    assert_eq!(read(d, "g", "a").unwrap(), b"1");
}

fn get_put_are_counted(f: &Fixture) {
    let d = &*f.driver;
    base(d);
    d.create_read_write("c", Some("base"), &none()).unwrap();
    let path = d.get("c", None).unwrap();
    assert_eq!(d.get("c", None).unwrap(), path);
    d.put("c").unwrap();
    assert!(
        d.tree("c").unwrap().exists(p("a")).unwrap(),
        "still mounted after one of two puts"
    );
    d.put("c").unwrap();
    assert!(d.tree("c").is_err(), "unmounted after the last put");
    assert!(!f.home.exists(p("c/merged")).unwrap(), "put removes merged/");
    d.put("c").unwrap();
}

fn remove_while_mounted(f: &Fixture) {
    let d = &*f.driver;
    base(d);
    d.create_read_write("c", Some("base"), &none()).unwrap();
    d.get("c", None).unwrap();
    d.remove("c").unwrap();
    assert!(!d.exists("c"));
    assert!(matches!(d.remove(""), Err(DriverError::EmptyId)));
    assert!(f.home.read_dir(p("l")).unwrap().len() == 1, "only base's link is left");
}

fn committed_parents_mount_read_only(f: &Fixture) {
    let d = &*f.driver;
    base(d);
    d.create("mid", Some("base"), &none()).unwrap();
    assert!(f.home.exists(p("base/committed")).unwrap());
    assert!(!f.home.exists(p("mid/committed")).unwrap());
    d.create("top", Some("mid"), &none()).unwrap();
    assert!(f.home.exists(p("mid/committed")).unwrap());
    d.get("mid", None).unwrap();
    let t = d.tree("mid").unwrap();
    assert_eq!(t.read(p("a")).unwrap(), b"1");
    assert_eq!(t.write(p("x"), 0o644, b"x").unwrap_err().kind(), ErrorKind::ReadOnly);
    d.put("mid").unwrap();
}

fn invalid_ids_change_nothing(f: &Fixture) {
    let d = &*f.driver;
    let before = f.home.read_dir(p("")).unwrap().len();
    for bad in ["", "../x", "a/b", "l", ".", "..", ".tmp-create-x", &"x".repeat(300)] {
        assert!(
            matches!(d.create(bad, None, &none()), Err(DriverError::InvalidId(_))),
            "{bad:?}"
        );
        assert!(!d.exists(bad));
        assert!(d.get(bad, None).is_err());
    }
    assert!(matches!(
        d.create("x", Some("../etc"), &none()),
        Err(DriverError::InvalidId(_))
    ));
    assert_eq!(f.home.read_dir(p("")).unwrap().len(), before);
}

fn corrupt_lower_file_is_named(f: &Fixture) {
    let d = &*f.driver;
    base(d);
    d.create("c", Some("base"), &none()).unwrap();
    f.home.write(p("c/lower"), 0o644, b"l/NOTALINK:../../etc").unwrap();
    let e = d.get("c", None).unwrap_err().to_string();
    assert!(e.contains("\"c\""), "{e}");
    assert!(!f.home.exists(p("c/merged")).unwrap());
}

fn lower_without_its_diff_is_named(f: &Fixture) {
    let d = &*f.driver;
    base(d);
    d.create("c", Some("base"), &none()).unwrap();
    // The diff gone: the mount fails, and the error says why.
    f.home.rename(p("base/diff"), p("base/diff.gone")).unwrap();
    let e = d.get("c", None).unwrap_err().to_string();
    assert!(e.contains("no diff") && e.contains("base"), "{e}");
    assert!(!f.home.exists(p("c/merged")).unwrap(), "nothing stays mounted");
    // The layer directory swapped for a symlink to a real one: refused
    // before anything is mounted through it.
    f.home.rename(p("base/diff.gone"), p("base/diff")).unwrap();
    f.home.rename(p("base"), p("base.real")).unwrap();
    f.home.symlink(p("base.real"), p("base")).unwrap();
    let e = d.get("c", None).unwrap_err().to_string();
    assert!(e.contains("no diff") && e.contains("base"), "{e}");
}
fn put_unmounts_a_layer_whose_lower_went_bad(f: &Fixture) {
    let d = &*f.driver;
    base(d);
    d.create_read_write("c", Some("base"), &none()).unwrap();
    d.get("c", None).unwrap();
    f.home.write(p("c/lower"), 0o644, b"not a lower file").unwrap();
    d.put("c").unwrap();
    assert!(!f.home.exists(p("c/merged")).unwrap(), "the mount is gone");
    d.remove("c").unwrap();
}
fn link_outside_the_home_is_refused(f: &Fixture) {
    let d = &*f.driver;
    base(d);
    d.create("c", Some("base"), &none()).unwrap();
    let link = String::from_utf8(f.home.read(p("base/link")).unwrap()).unwrap();
    let l = format!("l/{link}");
    f.home.remove_file(p(&l)).unwrap();
    f.home.symlink(p("/etc"), p(&l)).unwrap();
    let e = d.get("c", None).unwrap_err().to_string();
    assert!(e.contains("outside") && e.contains(&link), "{e}");
}

fn missing_link_is_named(f: &Fixture) {
    let d = &*f.driver;
    base(d);
    d.create("c", Some("base"), &none()).unwrap();
    let link = String::from_utf8(f.home.read(p("base/link")).unwrap()).unwrap();
    f.home.remove_file(p(&format!("l/{link}"))).unwrap();
    let e = d.get("c", None).unwrap_err().to_string();
    assert!(e.contains("missing") && e.contains(&link), "{e}");
}

fn metadata_and_status(f: &Fixture) {
    let d = &*f.driver;
    base(d);
    d.create("c", Some("base"), &none()).unwrap();
    let m = d.metadata("c").unwrap();
    assert!(
        m["UpperDir"].ends_with("c/diff") && m["WorkDir"].ends_with("c/work") && m["MergedDir"].ends_with("c/merged")
    );
    assert!(m["LowerDir"].ends_with("base/diff"), "{m:?}");
    assert!(!d.metadata("base").unwrap().contains_key("LowerDir"));
    assert!(d.metadata("nope").is_err());
    let status = d.status();
    assert!(status.iter().any(|(k, _)| k == "Backing Filesystem"));
    assert_eq!(d.name(), "overlay2");
}

fn concurrent_layers(f: &Fixture) {
    let d = &*f.driver;
    base(d);
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                for i in 0..8 {
                    let id = format!("t{t}-{i}");
                    d.create_read_write(&id, Some("base"), &none()).unwrap();
                    d.get(&id, None).unwrap();
                    d.get("base", None).unwrap();
                    d.tree(&id).unwrap().write(p("mine"), 0o644, id.as_bytes()).unwrap();
                    d.put("base").unwrap();
                    d.put(&id).unwrap();
                    if i % 2 == 0 {
                        d.remove(&id).unwrap();
                    }
                }
            });
        }
    });
    for t in 0..4 {
        for i in 0..8 {
            assert_eq!(d.exists(&format!("t{t}-{i}")), i % 2 == 1);
        }
        assert_eq!(
            read(d, &format!("t{t}-1"), "mine").unwrap(),
            format!("t{t}-1").as_bytes()
        );
    }
}

fn quota_without_support_is_dockers_error(f: &Fixture) {
    let d = &*f.driver;
    base(d);
    let e = d
        .create("ro", Some("base"), &CreateOpts::with_size("10G"))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "--storage-opt size is only supported for ReadWrite Layers");
    match d.create_read_write("rw", Some("base"), &CreateOpts::with_size("10G")) {
        Ok(()) => {} // a home with project quotas
        Err(e) => assert!(
            e.to_string()
                .contains("--storage-opt is supported only for overlay over xfs"),
            "{e}"
        ),
    }
    let mut bad = CreateOpts::default();
    bad.storage_opt.insert("bogus".into(), "1".into());
    assert_eq!(
        d.create_read_write("rw2", None, &bad).unwrap_err().to_string(),
        "Unknown option bogus"
    );
}
