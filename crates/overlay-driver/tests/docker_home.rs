//! Compatibility with Docker's on-disk home, both ways: a home laid out by
//! hand exactly as Docker's overlay2 writes it is mounted and diffed, and a
//! home this driver writes follows the same rules.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::sync::Arc;

use overlay_driver::{CreateOpts, FakeBackend, GraphDriver, KernelBackend, Overlay2};
use overlay_fs::{Fs, MemFs, NodeKind};

fn p(s: &str) -> &Path {
    Path::new(s)
}

const BASE: &str = "7f3c1a2b9d8e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a";
const MID: &str = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b";
const TOP: &str = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d";
const LB: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAA";
const LM: &str = "BBBBBBBBBBBBBBBBBBBBBBBBBB";
const LT: &str = "CCCCCCCCCCCCCCCCCCCCCCCCCC";

/// Docker 20.10's home, written by hand: 0701 dirs, `link` without a
/// newline, `lower` parent first, `committed` in parents, whiteouts and an
/// opaque dir in the middle layer's diff.
fn docker_home(home: &dyn Fs, root: bool) {
    home.set_mode(p(""), 0o701).unwrap();
    home.mkdir(p("l"), 0o701).unwrap();
    for (id, link, lower, committed) in [
        (BASE, LB, None, true),
        (MID, LM, Some(format!("l/{LB}")), true),
        (TOP, LT, Some(format!("l/{LM}:l/{LB}")), false),
    ] {
        home.mkdir(p(id), 0o701).unwrap();
        home.mkdir(&p(id).join("diff"), 0o755).unwrap();
        home.write(&p(id).join("link"), 0o644, link.as_bytes()).unwrap();
        home.symlink(&Path::new("..").join(id).join("diff"), &p("l").join(link))
            .unwrap();
        if let Some(lower) = lower {
            home.mkdir(&p(id).join("work"), 0o700).unwrap();
            home.write(&p(id).join("lower"), 0o644, lower.as_bytes()).unwrap();
        }
        if committed {
            home.write(&p(id).join("committed"), 0o600, b"").unwrap();
        }
    }
    let base = home.subtree(&p(BASE).join("diff")).unwrap();
    base.mkdir_all(p("etc/opt"), 0o755).unwrap();
    base.write(p("etc/motd"), 0o644, b"welcome").unwrap();
    base.write(p("etc/opt/old"), 0o644, b"old").unwrap();
    base.write(p("keep"), 0o644, b"keep").unwrap();
    let mid = home.subtree(&p(MID).join("diff")).unwrap();
    mid.mkdir_all(p("etc/opt"), 0o755).unwrap();
    mid.write(p("etc/opt/new"), 0o644, b"new").unwrap();
    mid.write(p("added"), 0o600, b"added").unwrap();
    if root {
        mid.set_xattr(p("etc/opt"), "trusted.overlay.opaque".as_ref(), b"y")
            .unwrap();
        mid.mknod(p("etc/motd"), NodeKind::WHITEOUT, 0).unwrap();
    }
}

fn check_docker_home(d: &dyn GraphDriver, root: bool) {
    d.get(TOP, None).unwrap();
    let t = d.tree(TOP).unwrap();
    assert_eq!(t.read(p("keep")).unwrap(), b"keep");
    assert_eq!(t.read(p("etc/opt/new")).unwrap(), b"new");
    if root {
        assert!(!t.exists(p("etc/motd")).unwrap(), "the whiteout hides the base's file");
        assert!(
            !t.exists(p("etc/opt/old")).unwrap(),
            "the opaque dir hides the base's entries"
        );
    }
    t.write(p("top-file"), 0o644, b"t").unwrap();
    d.put(TOP).unwrap();
    let changes: Vec<String> = d
        .changes(MID, Some(BASE))
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert!(changes.contains(&"A /added".to_string()), "{changes:?}");
    if root {
        assert!(changes.contains(&"D /etc/motd".to_string()), "{changes:?}");
    }
    let mut tar = Vec::new();
    d.diff(MID, Some(BASE), &mut tar).unwrap();
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.contains(&"added".to_string()), "{names:?}");
    if root {
        assert!(
            names.contains(&"etc/.wh.motd".to_string()) && names.contains(&"etc/opt/.wh..wh..opq".to_string()),
            "{names:?}"
        );
    }
    assert_eq!(
        d.changes(TOP, Some(MID))
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>(),
        ["A /top-file"]
    );
    // Our own layer on top of Docker's follows Docker's rules.
    d.create("ours", Some(TOP), &CreateOpts::default()).unwrap();
}

/// What a home our driver wrote must look like, for Docker to read it.
fn check_rules(home: &dyn Fs) {
    let lower = String::from_utf8(home.read(p("ours/lower")).unwrap()).unwrap();
    assert_eq!(lower, format!("l/{LT}:l/{LM}:l/{LB}"), "parent first, no newline");
    let link = String::from_utf8(home.read(p("ours/link")).unwrap()).unwrap();
    assert_eq!(link.len(), 26);
    assert!(
        link.bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
    );
    assert_eq!(home.readlink(&p("l").join(&link)).unwrap(), p("../ours/diff"));
    assert!(
        home.exists(&p(TOP).join("committed")).unwrap(),
        "the parent is committed"
    );
    assert_eq!(home.metadata(p("ours")).unwrap().mode, 0o710);
    assert_eq!(home.metadata(p("ours/diff")).unwrap().mode, 0o755);
    assert_eq!(home.metadata(p("ours/work")).unwrap().mode, 0o700);
    assert_eq!(home.metadata(p("ours/lower")).unwrap().mode, 0o644);
    assert_eq!(
        home.metadata(p("l")).unwrap().mode & 0o007,
        0,
        "not world-traversable (CVE-2021-41091)"
    );
    assert!(
        !home.exists(p("ours/merged")).unwrap(),
        "merged exists only while mounted"
    );
}

#[test]
fn fake_reads_and_writes_dockers_home() {
    let mem = MemFs::new();
    docker_home(&mem, true);
    let d = Overlay2::new(FakeBackend::with_home(mem.clone()), &[] as &[&str]).unwrap();
    check_docker_home(&d, true);
    check_rules(&mem);
    assert_eq!(d.check().unwrap(), vec![]);
}

#[test]
fn kernel_reads_and_writes_dockers_home() {
    if !rustix::process::geteuid().is_root() || overlay_mount::probe::require_overlay().is_err() {
        eprintln!("skipped: needs root and overlayfs");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("overlay2");
    std::fs::create_dir(&path).unwrap();
    let home: Arc<dyn Fs> = Arc::new(overlay_fs::HostFs::new(&path).unwrap());
    docker_home(&*home, true);
    let d = Overlay2::new(KernelBackend::new(&path).unwrap(), &[] as &[&str]).unwrap();
    check_docker_home(&d, true);
    check_rules(&*home);
    assert_eq!(d.check().unwrap(), vec![]);
    d.cleanup().unwrap();
}
