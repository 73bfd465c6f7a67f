//! Id-mapped lowers on this kernel: a user namespace carrying the maps,
//! each lower cloned and id-mapped, overlayfs over them, both ways the
//! lowers reach it (descriptors, scratch mounts), and that nothing is left
//! behind: no scratch mount or directory, no child process, on failure too.
//!
//! Needs root, overlayfs and a kernel that id-maps overlay lowers (the
//! probe says); otherwise each test says why and skips. Mounts are `Mount`
//! guards declared after their `TempDir`, so they go first.

#![allow(clippy::unwrap_used, missing_docs)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use overlay_mount::idmap::idmapped_tree;
use overlay_mount::{Attach, IdmapLowers, Method, MountError, Settings, Stack, Upper, UserNs};

const MAP: &str = "0 100000 65536\n";

/// The probe's verdict for a home in `dir`, or why the test skips.
fn ready(dir: &Path) -> Option<Attach> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: id-mapped mounts need root");
        return None;
    }
    if let Err(e) = overlay_mount::probe::require_overlay() {
        eprintln!("skipped: {e}");
        return None;
    }
    match overlay_mount::probe::probe(dir).unwrap().idmap.clone() {
        Ok(a) => Some(a),
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// Two lowers (`lo1` over `lo0`) and an upper: files owned by 0, 1000 and
/// 70000 (outside the map); `lo1` is "already mapped" (host ids).
fn build(home: &Path) -> Stack {
    for d in ["lo0", "lo1", "up", "work", "merged"] {
        std::fs::create_dir(home.join(d)).unwrap();
    }
    for (name, id) in [("root", 0), ("user", 1000), ("stranger", 70000)] {
        let f = home.join("lo0").join(name);
        std::fs::write(&f, name).unwrap();
        std::os::unix::fs::lchown(&f, Some(id), Some(id)).unwrap();
    }
    let f = home.join("lo1/host");
    std::fs::write(&f, b"host").unwrap();
    std::os::unix::fs::lchown(&f, Some(100_005), Some(100_005)).unwrap();
    Stack {
        base: home.to_path_buf(),
        lowers: vec!["lo1".into(), "lo0".into()],
        upper: Some(Upper {
            upperdir: "up".into(),
            workdir: "work".into(),
        }),
        target: "merged".into(),
    }
}

fn owner(p: &Path) -> (u32, u32) {
    let md = std::fs::symlink_metadata(p).unwrap();
    (md.uid(), md.gid())
}

/// Mount points under `dir` in our mount namespace.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| m.starts_with(&dir))
        .collect()
}

/// Child processes of this process (every thread's `children`).
fn children() -> Vec<String> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        out.extend(kids.split_whitespace().map(str::to_owned));
    }
    out
}

fn check_view(stack: &Stack, idmap: &IdmapLowers<'_>, method: Method) {
    let home = &stack.base;
    let m = stack.mount_idmapped(&Settings::default(), method, idmap).unwrap();
    let merged = m.target().to_path_buf();
    assert_eq!(owner(&merged.join("root")), (100_000, 100_000));
    assert_eq!(owner(&merged.join("user")), (101_000, 101_000));
    // Outside the map: the kernel's overflow id.
    assert_eq!(owner(&merged.join("stranger")), (65534, 65534));
    // The unmapped lower as it is.
    assert_eq!(owner(&merged.join("host")), (100_005, 100_005));
    assert_eq!(std::fs::read(merged.join("user")).unwrap(), b"user");
    // While mounted: the overlay only, no scratch mount, no directory.
    assert_eq!(mounts_under(home), [merged.to_string_lossy()]);
    let left: Vec<_> = std::fs::read_dir(home)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".idmapped-"))
        .collect();
    assert!(left.is_empty(), "scratch dirs left: {left:?}");
    // A copy-up keeps the shifted owner: the upper holds host ids.
    std::fs::OpenOptions::new()
        .append(true)
        .open(merged.join("user"))
        .unwrap();
    std::fs::write(merged.join("user"), b"changed").unwrap();
    assert_eq!(owner(&home.join("up/user")), (101_000, 101_000));
    std::fs::remove_file(home.join("up/user")).unwrap();
    m.unmount().unwrap();
    assert!(mounts_under(home).is_empty());
    // The lowers are untouched.
    assert_eq!(owner(&home.join("lo0/user")), (1000, 1000));
    assert_eq!(std::fs::read(home.join("lo0/user")).unwrap(), b"user");
}

#[test]
fn lowers_show_ids_shifted_by_the_map_both_ways_of_attaching() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(best) = ready(tmp.path()) else { return };
    let stack = build(tmp.path());
    let userns = UserNs::new(MAP, MAP).unwrap();
    assert!(children().is_empty(), "the namespace's process is reaped");
    let mut ways = vec![(Attach::Scratch, Method::Legacy), (Attach::Scratch, Method::Auto)];
    if best == Attach::Descriptors {
        ways.push((Attach::Descriptors, Method::NewApi));
    } else {
        eprintln!("descriptors not tried: the probe says this kernel needs scratch mounts");
    }
    for (attach, method) in ways {
        let idmap = IdmapLowers {
            userns: &userns,
            mapped: &[false, true],
            attach,
        };
        check_view(&stack, &idmap, method);
    }
}

#[test]
fn a_failed_mount_leaves_no_scratch_mount_or_directory() {
    let tmp = tempfile::tempdir().unwrap();
    if ready(tmp.path()).is_none() {
        return;
    }
    let mut stack = build(tmp.path());
    // Overlayfs refuses a missing upper dir, after the lowers are attached.
    stack.upper = Some(Upper {
        upperdir: "no-such-upper".into(),
        workdir: "work".into(),
    });
    let userns = UserNs::new(MAP, MAP).unwrap();
    for attach in [Attach::Scratch, Attach::Descriptors] {
        let idmap = IdmapLowers {
            userns: &userns,
            mapped: &[true, true],
            attach,
        };
        let e = stack
            .mount_idmapped(&Settings::default(), Method::Auto, &idmap)
            .unwrap_err();
        assert!(e.to_string().contains("no-such-upper") || e.errno().is_some(), "{e}");
        assert!(mounts_under(tmp.path()).is_empty(), "{attach:?}");
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 5, "only the stack's own dirs: {names:?}");
    }
}

#[test]
fn bad_requests_are_refused_before_anything_is_mounted() {
    let tmp = tempfile::tempdir().unwrap();
    if ready(tmp.path()).is_none() {
        return;
    }
    let stack = build(tmp.path());
    let userns = UserNs::new(MAP, MAP).unwrap();
    let refused = |mapped: &[bool], attach, method| {
        let idmap = IdmapLowers {
            userns: &userns,
            mapped,
            attach,
        };
        stack.mount_idmapped(&Settings::default(), method, &idmap).unwrap_err()
    };
    let e = refused(&[true], Attach::Scratch, Method::Auto);
    assert_eq!(
        e.to_string(),
        "invalid overlay options: 1 id-map flags for 2 lower directories"
    );
    let e = refused(&[true, true], Attach::Descriptors, Method::Legacy);
    assert!(e.to_string().contains("need the new mount API"), "{e}");
    assert!(mounts_under(tmp.path()).is_empty());

    // Maps the kernel refuses: overlapping ranges, one over a page.
    let e = UserNs::new("0 1000 10\n5 2000 10\n", MAP).unwrap_err();
    assert!(
        matches!(&e, MountError::Sys { errno, .. } if *errno == rustix::io::Errno::INVAL),
        "{e}"
    );
    assert!(e.to_string().contains("uid_map"), "{e}");
    let long = "0 1000 1\n".repeat(1000);
    let e = UserNs::new(MAP, &long).unwrap_err();
    assert!(e.to_string().contains("gid map is 9000 bytes"), "{e}");
    assert!(children().is_empty(), "no process left by a refused map");

    // A directory that does not exist cannot be cloned.
    let dir = rustix::fs::open(
        tmp.path(),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    let e = idmapped_tree(std::os::fd::AsFd::as_fd(&dir), Path::new("nope"), &userns).unwrap_err();
    assert!(
        e.to_string().contains("open_tree") && e.to_string().contains("nope"),
        "{e}"
    );
}

#[test]
fn a_scratch_mount_a_crash_left_is_read_only_and_detached_by_the_next_put() {
    let tmp = tempfile::tempdir().unwrap();
    if ready(tmp.path()).is_none() {
        return;
    }
    build(tmp.path());
    let userns = UserNs::new(MAP, MAP).unwrap();
    let dir = rustix::fs::open(
        tmp.path(),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    let dir = std::os::fd::AsFd::as_fd(&dir);
    // What a crash between attaching and detaching leaves.
    std::fs::create_dir_all(tmp.path().join(".idmapped-crash/0")).unwrap();
    let tree = idmapped_tree(dir, Path::new("lo0"), &userns).unwrap();
    rustix::mount::move_mount(
        std::os::fd::AsFd::as_fd(&tree),
        "",
        dir,
        ".idmapped-crash/0",
        rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .unwrap();
    drop(tree);
    assert_eq!(mounts_under(tmp.path()).len(), 1);
    // A recursive removal of the layer dir fails on it, deleting nothing
    // of the layer it shows.
    let e = std::fs::remove_dir_all(tmp.path().join(".idmapped-crash")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(rustix::io::Errno::ROFS.raw_os_error()), "{e}");
    assert_eq!(std::fs::read(tmp.path().join("lo0/user")).unwrap(), b"user");
    overlay_mount::idmap::detach_leftovers(tmp.path());
    assert!(mounts_under(tmp.path()).is_empty());
    assert!(!tmp.path().join(".idmapped-crash").exists());
    assert_eq!(std::fs::read_dir(tmp.path().join("lo0")).unwrap().count(), 3);
}
