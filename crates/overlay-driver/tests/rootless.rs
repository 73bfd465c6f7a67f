//! The driver rootless: in a user namespace, as an unprivileged user
//! (each test runs in a child of its own, once with `--map-root-user` and
//! once with a sub-id range; see `common::rootless`). What only rootless
//! has: markers in `user.overlay.*`, ids the namespace does not map,
//! requests only root may make. The conformance suite covers the rest.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::rootless::{Map, is_child, run_test};
use common::tar_entry as entry;
use overlay_driver::{CreateOpts, GraphDriver, KernelBackend, Overlay2};
use overlay_fs::Fs;
use tar::EntryType::{Char, Directory as D, Regular as F};

/// Runs `body` rootless with each map: here if this is the child for
/// `name`, else by starting those children.
fn rootless(name: &str, body: fn(Map)) {
    if is_child() {
        common::rootless::assert_in_user_namespace();
        body(common::rootless::child_map());
    } else {
        for map in Map::ALL {
            run_test(map, name);
        }
    }
}

/// A driver on a fresh home in the child; the directory goes with it.
struct Rig {
    driver: Overlay2<KernelBackend>,
    dir: tempfile::TempDir,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.driver.cleanup();
    }
}

impl Rig {
    fn new(options: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backend = KernelBackend::new(dir.path().join("overlay2")).unwrap();
        let driver = Overlay2::new(backend, options).unwrap();
        Self { driver, dir }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("overlay2")
    }

    fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        common::rootless::snapshot(&self.home())
    }
}

fn tar(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    b.into_inner().unwrap()
}

/// An id each map lacks: the root map has only 0; the sub-id range 65536.
fn unmapped(map: Map) -> u64 {
    match map {
        Map::Root => 1000,
        Map::SubIds => 70_000,
    }
}

#[test]
fn markers_are_user_xattrs_and_native_diff_works() {
    rootless("markers_are_user_xattrs_and_native_diff_works", |_| {
        let rig = Rig::new(&[]);
        let d = &rig.driver;
        let status: BTreeMap<String, String> = d.status().into_iter().collect();
        assert_eq!(status["userxattr"], "true", "{status:?}");
        // This kernel allows native diff in a user namespace (5.11+); the
        // probe says so, or why not.
        let native = status["Native Overlay Diff"] == "true";
        if !native {
            eprintln!("skipped in part: native diff is off here: {status:?}");
        }
        d.create("base", None, &CreateOpts::default()).unwrap();
        let base = tar(|b| {
            entry(b, "etc", D, 0o755, 0, b"", "");
            entry(b, "etc/motd", F, 0o644, 0, b"hi", "");
            entry(b, "opq", D, 0o755, 0, b"", "");
            entry(b, "opq/hidden", F, 0o644, 0, b"below", "");
        });
        d.apply_diff("base", None, &mut &base[..]).unwrap();
        d.create("top", Some("base"), &CreateOpts::default()).unwrap();
        let top = tar(|b| {
            entry(b, "etc", D, 0o755, 0, b"", "");
            entry(b, "etc/.wh.motd", F, 0o644, 0, b"", "");
            entry(b, "opq", D, 0o755, 0, b"", "");
            entry(b, "opq/.wh..wh..opq", F, 0o644, 0, b"", "");
            entry(b, "opq/new", F, 0o644, 0, b"above", "");
        });
        d.apply_diff("top", Some("base"), &mut &top[..]).unwrap();
        // In the diff dir: the kernel's whiteout, the user.* opaque xattr.
        let diff = overlay_fs::HostFs::new(rig.home().join("top/diff")).unwrap();
        assert!(diff.metadata(Path::new("etc/motd")).unwrap().is_whiteout());
        let xattrs = diff.list_xattrs(Path::new("opq")).unwrap();
        assert!(xattrs.iter().any(|n| n == "user.overlay.opaque"), "{xattrs:?}");
        assert!(!xattrs.iter().any(|n| n == "trusted.overlay.opaque"), "{xattrs:?}");
        // The kernel reads them so: the merged tree hides both.
        d.get("top", None).unwrap();
        let merged = d.tree("top").unwrap();
        assert!(!merged.exists(Path::new("etc/motd")).unwrap());
        assert_eq!(merged.read_dir(Path::new("opq")).unwrap().len(), 1);
        d.put("top").unwrap();
        // And the diff gives back the OCI forms.
        let mut out = Vec::new();
        d.diff("top", Some("base"), &mut out).unwrap();
        let names: Vec<String> = tar::Archive::new(&out[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        for want in ["etc/.wh.motd", "opq/.wh..wh..opq", "opq/new"] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        let changes = d.changes("top", Some("base")).unwrap();
        assert!(changes.iter().any(|c| c.path == Path::new("etc/motd")), "{changes:?}");
    });
}

#[test]
fn ids_outside_the_map_fail_naming_the_entry_and_change_nothing() {
    rootless("ids_outside_the_map_fail_naming_the_entry_and_change_nothing", |map| {
        let rig = Rig::new(&[]);
        let d = &rig.driver;
        d.create("layer", None, &CreateOpts::default()).unwrap();
        let before = rig.snapshot();
        let id = unmapped(map);
        let layer = tar(|b| {
            entry(b, "etc", D, 0o755, 0, b"", "");
            entry(b, "etc/passwd", F, 0o644, 0, b"root", "");
            entry(b, "home/user/notes", F, 0o600, id, b"mine", "");
        });
        let e = d.apply_diff("layer", None, &mut &layer[..]).unwrap_err().to_string();
        assert!(e.contains("home/user/notes") && e.contains(&format!("uid {id}")), "{e}");
        assert!(e.contains("ignore_chown_errors"), "the error names the way out: {e}");
        assert_eq!(rig.snapshot(), before, "a failed apply changes nothing");
        // A gid alone is named as such.
        let layer = tar(|b| {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(id);
            h.set_size(0);
            b.append_data(&mut h, "g", &b""[..]).unwrap();
        });
        let e = d.apply_diff("layer", None, &mut &layer[..]).unwrap_err().to_string();
        assert!(e.contains("\"g\"") && e.contains(&format!("gid {id}")), "{e}");
        assert_eq!(rig.snapshot(), before);
    });
}

#[test]
fn ignore_chown_errors_gives_such_files_to_root() {
    rootless("ignore_chown_errors_gives_such_files_to_root", |map| {
        let rig = Rig::new(&["overlay2.ignore_chown_errors=true"]);
        let d = &rig.driver;
        d.create("layer", None, &CreateOpts::default()).unwrap();
        let id = unmapped(map);
        let layer = tar(|b| {
            entry(b, "far", F, 0o644, id, b"far", "");
            entry(b, "near", F, 0o644, 1, b"near", "");
        });
        let outcome = d.apply_diff("layer", None, &mut &layer[..]);
        let diff = overlay_fs::HostFs::new(rig.home().join("layer/diff")).unwrap();
        match map {
            // Uid 1 is not mapped either: it goes to root too.
            Map::Root => {
                outcome.unwrap();
                assert_eq!(diff.metadata(Path::new("near")).unwrap().uid, 0);
            }
            // A mapped id stays.
            Map::SubIds => {
                outcome.unwrap();
                let m = diff.metadata(Path::new("near")).unwrap();
                assert_eq!((m.uid, m.gid), (1, 1));
            }
        }
        let m = diff.metadata(Path::new("far")).unwrap();
        assert_eq!((m.uid, m.gid), (0, 0));
        assert_eq!(diff.read(Path::new("far")).unwrap(), b"far");
    });
}

#[test]
fn requests_only_root_may_make_are_refused_naming_them() {
    rootless("requests_only_root_may_make_are_refused_naming_them", |_| {
        // A quota: named as a user namespace's limit; nothing made.
        let rig = Rig::new(&[]);
        let d = &rig.driver;
        d.create("base", None, &CreateOpts::default()).unwrap();
        let before = rig.snapshot();
        let e = d
            .create_read_write("c", Some("base"), &CreateOpts::with_size("10M"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("user namespace"), "{e}");
        assert!(!d.exists("c"));
        assert_eq!(rig.snapshot(), before);
        let dir = tempfile::tempdir().unwrap();
        let backend = KernelBackend::new(dir.path().join("h")).unwrap();
        let e = Overlay2::new(backend, &["overlay2.size=10M"]).unwrap_err().to_string();
        assert!(e.contains("user namespace"), "{e}");
        // Id-mapped layers: id-mapping a mount, or chowning a copy to
        // other host ids, needs the initial namespace.
        let maps = overlay_archive::IdMaps::new(
            overlay_archive::IdRange::parse_list(overlay_archive::idmap::IdKind::Uid, "0:0:1").unwrap(),
            overlay_archive::IdRange::parse_list(overlay_archive::idmap::IdKind::Gid, "0:0:1").unwrap(),
        )
        .unwrap();
        let opts = CreateOpts {
            id_maps: maps,
            ..CreateOpts::default()
        };
        let e = d.create_read_write("m", Some("base"), &opts).unwrap_err().to_string();
        assert!(e.contains("user namespace"), "{e}");
        assert!(!d.exists("m"));
        assert_eq!(rig.snapshot(), before);
        // A device node: only root in the initial namespace makes one.
        let layer = tar(|b| {
            entry(b, "dev", D, 0o755, 0, b"", "");
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(Char);
            h.set_mode(0o666);
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
            h.set_size(0);
            b.append_data(&mut h, "dev/null", &b""[..]).unwrap();
        });
        let e = d.apply_diff("base", None, &mut &layer[..]).unwrap_err().to_string();
        assert!(e.contains("dev/null"), "{e}");
        assert_eq!(rig.snapshot(), before);
    });
}
