//! `check` names each kind of damage a crash or an older tool leaves, and
//! `repair` fixes it: the home is clean afterwards, every layer left
//! works, and a layer that cannot work is moved to the quarantine with its
//! files, never deleted. On both backends (the kernel one needs root and
//! overlayfs; otherwise it says so and skips).

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::Path;
use std::sync::Arc;

use overlay_driver::{Backend, CreateOpts, FakeBackend, GraphDriver, KernelBackend, Overlay2, Problem};
use overlay_fs::Fs;

fn p(s: &str) -> &Path {
    Path::new(s)
}

fn link_of(home: &dyn Fs, id: &str) -> String {
    String::from_utf8(home.read(&p(id).join("link")).unwrap()).unwrap()
}

/// Runs `test` on the fake, then on the kernel backend where it can.
fn on_both(test: impl Fn(&dyn Home)) {
    let fake = Overlay2::new(FakeBackend::new(), &[] as &[&str]).unwrap();
    test(&fake);
    if !common::kernel_backend_runs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kernel = Overlay2::new(KernelBackend::new(dir.path().join("overlay2")).unwrap(), &[] as &[&str]).unwrap();
    test(&kernel);
    kernel.cleanup().unwrap();
}

/// What the tests need of a driver, on either backend.
trait Home {
    fn d(&self) -> &dyn GraphDriver;
    fn fs(&self) -> Arc<dyn Fs>;
    fn check(&self) -> Vec<Problem>;
    fn repair(&self) -> Vec<Problem>;
    fn quarantined(&self) -> Vec<overlay_driver::Quarantined>;
    fn clear_quarantine(&self) -> Vec<overlay_driver::Quarantined>;
}

impl<B: Backend> Home for Overlay2<B> {
    fn d(&self) -> &dyn GraphDriver {
        self
    }
    fn fs(&self) -> Arc<dyn Fs> {
        self.backend().home().clone()
    }
    fn check(&self) -> Vec<Problem> {
        Overlay2::check(self).unwrap()
    }
    fn repair(&self) -> Vec<Problem> {
        Overlay2::repair(self).unwrap()
    }
    fn quarantined(&self) -> Vec<overlay_driver::Quarantined> {
        Overlay2::quarantined(self).unwrap()
    }
    fn clear_quarantine(&self) -> Vec<overlay_driver::Quarantined> {
        Overlay2::clear_quarantine(self).unwrap()
    }
}

fn create(h: &dyn Home, layers: &[(&str, Option<&str>)]) {
    for (id, parent) in layers {
        h.d().create(id, *parent, &CreateOpts::default()).unwrap();
    }
}

fn write(h: &dyn Home, id: &str, name: &str, data: &[u8]) {
    h.fs().write(&p(id).join("diff").join(name), 0o644, data).unwrap();
}

#[test]
fn every_kind_of_damage_is_named_and_repaired() {
    on_both(|h| {
        let home = h.fs();
        create(
            h,
            &[
                ("base", None),
                ("mid", Some("base")),
                ("top", Some("mid")),
                ("lost", None),
                ("orphan", Some("lost")),
            ],
        );
        write(h, "orphan", "work.txt", b"a container's only copy\n");
        assert_eq!(h.check(), vec![]);
        // A half-built layer, a half-applied diff, a link to nowhere, one
        // that leaves the home, a missing link, a stale merged dir, a layer
        // whose parent is gone.
        home.mkdir(p(".tmp-create-abc"), 0o710).unwrap();
        home.mkdir(p("base/.tmp-apply-abc"), 0o755).unwrap();
        home.symlink(p("../gone/diff"), p("l/ZZZZZZZZZZZZZZZZZZZZZZZZZZ"))
            .unwrap();
        home.symlink(p("/etc"), p("l/YYYYYYYYYYYYYYYYYYYYYYYYYY")).unwrap();
        let mid_link = link_of(&*home, "mid");
        home.remove_file(&p("l").join(&mid_link)).unwrap();
        home.mkdir(p("top/merged"), 0o700).unwrap();
        let lost_link = link_of(&*home, "lost");
        home.remove_all(p("lost")).unwrap();
        home.remove_file(&p("l").join(&lost_link)).unwrap();

        let problems = h.check();
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

        h.repair();
        assert_eq!(h.check(), vec![]);
        // What could be saved works: mid's link is rebuilt, top mounts on it.
        assert_eq!(home.readlink(&p("l").join(&mid_link)).unwrap(), p("../mid/diff"));
        h.d().get("top", None).unwrap();
        h.d().put("top").unwrap();
        assert!(h.d().exists("base") && h.d().exists("mid") && h.d().exists("top"));
        // The orphan cannot work, but its files are kept.
        assert!(!h.d().exists("orphan"));
        let q = h.quarantined();
        assert_eq!(q.len(), 1, "{q:?}");
        assert_eq!(q[0].name, "orphan");
        assert!(q[0].reason.contains(&lost_link), "{q:?}");
        assert_eq!(
            home.read(p("quarantine/orphan/diff/work.txt")).unwrap(),
            b"a container's only copy\n"
        );
        h.d().cleanup().unwrap();
    });
}

/// A corrupt `lower` moves the layer and what stacks on it into the
/// quarantine, whole and byte for byte; the rest of the home keeps
/// working; `clear_quarantine` deletes them only when asked.
#[test]
fn a_corrupt_lower_is_quarantined_with_its_children_never_deleted() {
    on_both(|h| {
        let home = h.fs();
        create(
            h,
            &[
                ("image", None),
                ("container", Some("image")),
                ("snapshot", Some("container")),
                ("other", Some("image")),
            ],
        );
        write(h, "container", "notes.txt", b"unsaved work\n");
        write(h, "snapshot", "more.txt", b"more\n");
        let listing = |dir: &str| {
            let mut names: Vec<String> = home
                .read_dir(p(dir))
                .unwrap()
                .into_iter()
                .map(|e| e.name.to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let before = (listing("container"), link_of(&*home, "container"), listing("snapshot"));
        home.remove_file(p("container/lower")).unwrap();
        home.write(p("container/lower"), 0o644, b"not:a:lower\0").unwrap();

        let problems = h.check();
        assert_eq!(problems, vec![Problem::CorruptLower("container".into())]);
        assert_eq!(problems[0].remedy(), "moved to the quarantine");
        // check changes nothing.
        assert!(h.d().exists("container") && h.quarantined().is_empty());

        let fixed = h.repair();
        assert!(fixed.contains(&Problem::CorruptLower("container".into())), "{fixed:?}");
        assert!(
            fixed
                .iter()
                .any(|p| matches!(p, Problem::UnknownLowerLink { id, .. } if id == "snapshot")),
            "{fixed:?}"
        );
        assert_eq!(h.check(), vec![]);
        let names: Vec<String> = h.quarantined().into_iter().map(|q| q.name).collect();
        assert_eq!(names, ["container", "snapshot"]);
        // The layers moved whole (plus the reason); those that work still do.
        let plus_reason = |mut v: Vec<String>| {
            v.push("quarantined".into());
            v.sort();
            v
        };
        assert_eq!(listing("quarantine/container"), plus_reason(before.0.clone()));
        assert_eq!(listing("quarantine/snapshot"), plus_reason(before.2.clone()));
        assert_eq!(link_of(&*home, "quarantine/container"), before.1);
        assert_eq!(
            home.read(p("quarantine/container/diff/notes.txt")).unwrap(),
            b"unsaved work\n"
        );
        assert_eq!(home.read(p("quarantine/snapshot/diff/more.txt")).unwrap(), b"more\n");
        assert!(!h.d().exists("container") && !h.d().exists("snapshot"));
        h.d().get("other", None).unwrap();
        h.d().put("other").unwrap();
        // The id is free again, and a second quarantine of it does not
        // overwrite the first.
        create(h, &[("container", Some("image"))]);
        home.remove_file(p("container/lower")).unwrap();
        home.write(p("container/lower"), 0o644, b"bad").unwrap();
        h.repair();
        let names: Vec<String> = h.quarantined().into_iter().map(|q| q.name).collect();
        assert_eq!(names, ["container", "container.1", "snapshot"]);

        let cleared = h.clear_quarantine();
        assert_eq!(cleared.len(), 3);
        assert!(h.quarantined().is_empty());
        assert!(!home.exists(p("quarantine")).unwrap());
        assert_eq!(h.check(), vec![]);
    });
}

/// A lost `link` file is rebuilt from the layer's `l/` link, so its
/// children keep their parent; with no `l/` link either, the layer gets a
/// new id and still works.
#[test]
fn a_lost_link_file_is_rebuilt_not_thrown_away() {
    on_both(|h| {
        let home = h.fs();
        create(h, &[("base", None), ("child", Some("base")), ("alone", None)]);
        write(h, "base", "f", b"base file\n");
        let base_link = link_of(&*home, "base");
        home.remove_file(p("base/link")).unwrap();
        home.remove_file(p("alone/link")).unwrap();
        let alone_link = home
            .read_dir(p("l"))
            .unwrap()
            .into_iter()
            .find(|e| home.readlink(&p("l").join(&e.name)).unwrap() == p("../alone/diff"));
        home.remove_file(&p("l").join(alone_link.unwrap().name)).unwrap();

        let problems = h.check();
        assert!(
            problems.contains(&Problem::CorruptLinkFile("base".into())),
            "{problems:?}"
        );
        assert!(
            problems.contains(&Problem::CorruptLinkFile("alone".into())),
            "{problems:?}"
        );
        assert!(
            !problems
                .iter()
                .any(|p| matches!(p, Problem::UnknownLowerLink { .. } | Problem::DanglingLink(_))),
            "the child is not an orphan and base's link is not dangling: {problems:?}"
        );
        h.repair();
        assert_eq!(h.check(), vec![]);
        assert!(h.quarantined().is_empty());
        assert_eq!(link_of(&*home, "base"), base_link);
        let fresh = link_of(&*home, "alone");
        assert_eq!(home.readlink(&p("l").join(&fresh)).unwrap(), p("../alone/diff"));
        h.d().get("child", None).unwrap();
        assert_eq!(h.d().tree("child").unwrap().read(p("f")).unwrap(), b"base file\n");
        h.d().put("child").unwrap();
        h.d().get("alone", None).unwrap();
        h.d().put("alone").unwrap();
    });
}

/// A mounted layer is never moved: it stays a problem until unmounted.
#[test]
fn a_mounted_layer_is_not_quarantined() {
    on_both(|h| {
        let home = h.fs();
        create(h, &[("image", None), ("box", Some("image"))]);
        h.d().get("box", None).unwrap();
        home.remove_file(p("box/lower")).unwrap();
        home.write(p("box/lower"), 0o644, b"bad").unwrap();
        h.repair();
        assert_eq!(h.check(), vec![Problem::CorruptLower("box".into())]);
        assert!(h.quarantined().is_empty());
        h.d().put("box").unwrap();
        h.repair();
        assert_eq!(h.quarantined().len(), 1);
    });
}
