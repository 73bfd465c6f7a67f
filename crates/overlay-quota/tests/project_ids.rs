//! Project ids on a real (loop-mounted) XFS, on any kernel: XFS keeps
//! project ids whether or not the kernel can enforce quotas, so Docker's
//! id rules are checked here, and the limits in `enforcement.rs`.
//!
//! Needs root, loop devices and mkfs.xfs; otherwise each test says why and
//! skips. Each filesystem is a `LoopFs` guard: unmounted and detached on
//! drop, also when an assert fails.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use common::LoopFs;
use overlay_quota::{Assigned, ProjectIds, inherits_project_id, project_id, set_project_id};
use rustix::io::Errno;

fn mkdir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
}

#[test]
fn ids_start_above_the_homes_own_id() {
    let Some(fs) = common::need(LoopFs::xfs("")) else {
        return;
    };
    let home = fs.home("home");
    let ids = ProjectIds::scan(&home).unwrap();
    assert_eq!(ids.base_id(), 0, "a fresh XFS has project id 0 everywhere");
    assert_eq!(ids.next_id(), 1);
    for (name, want) in [("a", 1), ("b", 2)] {
        mkdir(&home.join(name));
        assert_eq!(
            ids.assign(home.join(name)).unwrap(),
            Assigned {
                id: want,
                reused: false
            }
        );
        assert_eq!(project_id(home.join(name)).unwrap(), want);
        assert!(inherits_project_id(home.join(name)).unwrap());
    }
    assert_eq!(ids.next_id(), 3);
}

#[test]
fn a_home_with_a_reserved_id_allocates_above_it() {
    let Some(fs) = common::need(LoopFs::xfs("")) else {
        return;
    };
    // What `xfs_quota -x -c 'project -s docker'` leaves: the home has
    // id 999 and passes it on.
    let home = fs.home("docker");
    set_project_id(&home, 999).unwrap();
    mkdir(&home.join("before"));
    assert_eq!(project_id(home.join("before")).unwrap(), 999, "inherited from the home");

    let ids = ProjectIds::scan(&home).unwrap();
    assert_eq!(ids.base_id(), 999);
    assert_eq!(ids.next_id(), 1000, "the home's id is never a layer's");
    mkdir(&home.join("layer"));
    assert_eq!(ids.assign(home.join("layer")).unwrap().id, 1000);
    // A directory that only inherited the home's id gets its own.
    assert_eq!(
        ids.assign(home.join("before")).unwrap(),
        Assigned {
            id: 1001,
            reused: false
        }
    );
}

#[test]
fn new_entries_inherit_the_directorys_id() {
    let Some(fs) = common::need(LoopFs::xfs("")) else {
        return;
    };
    let home = fs.home("home");
    let layer = home.join("layer");
    mkdir(&layer.join("old"));
    std::fs::write(layer.join("before"), b"made before the id").unwrap();
    let ids = ProjectIds::scan(&home).unwrap();
    let id = ids.assign(&layer).unwrap().id;

    mkdir(&layer.join("diff/a/b"));
    std::fs::write(layer.join("diff/a/b/file"), b"x").unwrap();
    mkdir(&layer.join("work"));
    for made_after in ["diff", "diff/a", "diff/a/b", "diff/a/b/file", "work"] {
        assert_eq!(project_id(layer.join(made_after)).unwrap(), id, "{made_after}");
    }
    assert!(
        inherits_project_id(layer.join("diff/a/b")).unwrap(),
        "and so do their subdirectories"
    );
    // Entries that existed keep theirs: Docker sets the id on a new, empty
    // directory.
    assert_eq!(project_id(layer.join("old")).unwrap(), 0);
    assert_eq!(project_id(layer.join("before")).unwrap(), 0);
    mkdir(&layer.join("old/new"));
    assert_eq!(
        project_id(layer.join("old/new")).unwrap(),
        0,
        "below an old directory, its id"
    );

    // XFS refuses to move an entry into a tree of another project (the
    // reason an overlay's work dir must share its upper dir's project).
    std::fs::write(home.join("outside"), b"o").unwrap();
    let err = std::fs::rename(home.join("outside"), layer.join("work/outside")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(Errno::XDEV.raw_os_error()));
}

#[test]
fn scan_finds_the_ids_in_use_the_way_docker_does() {
    let Some(fs) = common::need(LoopFs::xfs("")) else {
        return;
    };
    let home = fs.home("home");
    for (dir, id) in [
        ("a", 5),
        ("b", 9),
        ("c/d", 12),
        ("e", 20),
        ("e/f", 40),
        ("g/h/deep", 60),
    ] {
        mkdir(&home.join(dir));
        set_project_id(home.join(dir), id).unwrap();
    }
    mkdir(&home.join("l"));
    std::os::unix::fs::symlink("../e/f", home.join("l/LINK")).unwrap();
    std::fs::write(home.join("file"), b"").unwrap();

    let ids = ProjectIds::scan(&home).unwrap();
    // a, b, e and c/d (c has no id, so Docker looks one level in) count;
    // e/f does not (e has its own id), nor g/h/deep (two levels down).
    assert_eq!(ids.next_id(), 21);
}

#[test]
fn the_id_already_on_a_directory_is_reused() {
    let Some(fs) = common::need(LoopFs::xfs("")) else {
        return;
    };
    let home = fs.home("home");
    mkdir(&home.join("a"));
    set_project_id(home.join("a"), 5).unwrap();
    mkdir(&home.join("a/diff/sub"));
    let ids = ProjectIds::scan(&home).unwrap();
    assert_eq!(ids.next_id(), 6);

    assert_eq!(ids.assign(home.join("a")).unwrap(), Assigned { id: 5, reused: true });
    // Inside a limited directory, a directory shares its limit.
    assert_eq!(
        ids.assign(home.join("a/diff/sub")).unwrap(),
        Assigned { id: 5, reused: true }
    );
    assert_eq!(ids.next_id(), 6, "reuse takes no new id");

    mkdir(&home.join("b"));
    assert_eq!(ids.assign(home.join("b")).unwrap(), Assigned { id: 6, reused: false });
    assert_eq!(ids.assign(home.join("b")).unwrap(), Assigned { id: 6, reused: true });
    // Removed and made again under the same name: a new directory, a new
    // id (Docker's path map would skip setting it and leave it unlimited).
    std::fs::remove_dir(home.join("b")).unwrap();
    mkdir(&home.join("b"));
    assert_eq!(ids.assign(home.join("b")).unwrap(), Assigned { id: 7, reused: false });
}

#[test]
fn allocation_is_safe_from_many_threads() {
    let Some(fs) = common::need(LoopFs::xfs("")) else {
        return;
    };
    // Two homes on one filesystem share one counter, as in Docker.
    let homes = [fs.home("home1"), fs.home("home2")];
    let allocators: Vec<Arc<ProjectIds>> = homes.iter().map(|h| Arc::new(ProjectIds::scan(h).unwrap())).collect();
    const THREADS: usize = 8;
    const PER_THREAD: usize = 16;
    for home in &homes {
        mkdir(&home.join("shared"));
        for t in 0..THREADS {
            for i in 0..PER_THREAD {
                mkdir(&home.join(format!("t{t}-{i}")));
            }
        }
    }
    let results: Vec<Vec<(std::path::PathBuf, Assigned)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let ids = Arc::clone(&allocators[t % 2]);
                let home = homes[t % 2].clone();
                let other = homes[(t + 1) % 2].clone();
                s.spawn(move || {
                    let mut got = Vec::new();
                    for i in 0..PER_THREAD {
                        for dir in [
                            home.join(format!("t{t}-{i}")),
                            other.join(format!("t{t}-{i}")),
                            home.join("shared"),
                        ] {
                            let assigned = ids.assign(&dir).unwrap();
                            got.push((dir, assigned));
                        }
                    }
                    got
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut fresh = BTreeSet::new();
    for (dir, assigned) in results.iter().flatten() {
        assert_eq!(project_id(dir).unwrap(), assigned.id, "{dir:?}");
        if !assigned.reused {
            assert!(fresh.insert(assigned.id), "id {} handed out twice", assigned.id);
        }
    }
    let dirs = 2 * (THREADS * PER_THREAD + 1);
    assert_eq!(fresh.len(), dirs, "one new id per directory");
    assert_eq!(
        fresh.iter().copied().collect::<Vec<_>>(),
        (1..=dirs as u32).collect::<Vec<_>>()
    );
    for home in &homes {
        let shared: BTreeSet<u32> = results
            .iter()
            .flatten()
            .filter(|(d, _)| *d == home.join("shared"))
            .map(|(_, a)| a.id)
            .collect();
        assert_eq!(shared.len(), 1, "many threads, one directory, one id");
    }
}

#[test]
fn only_directories_get_ids_and_symlinks_are_not_followed() {
    let Some(fs) = common::need(LoopFs::xfs("")) else {
        return;
    };
    let home = fs.home("home");
    std::fs::write(home.join("file"), b"").unwrap();
    let err = set_project_id(home.join("file"), 3).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::NOTDIR), "{err}");
    assert!(err.to_string().contains("file"), "{err}");
    std::os::unix::fs::symlink(".", home.join("link")).unwrap();
    let err = set_project_id(home.join("link"), 3).unwrap_err();
    assert!(err.to_string().contains("link"), "{err}");
    assert_eq!(project_id(&home).unwrap(), 0, "nothing changed");
}

#[test]
fn ext4_with_the_project_feature_takes_ids_too() {
    let Some(fs) = common::need(LoopFs::ext4("project", "")) else {
        return;
    };
    let home = fs.home("home");
    let ids = ProjectIds::scan(&home).unwrap();
    mkdir(&home.join("layer"));
    let id = ids.assign(home.join("layer")).unwrap().id;
    assert_eq!(id, 1);
    mkdir(&home.join("layer/diff"));
    assert_eq!(project_id(home.join("layer/diff")).unwrap(), id);
    assert!(inherits_project_id(home.join("layer/diff")).unwrap());
}

#[test]
fn ext4_without_the_project_feature_says_so() {
    let Some(fs) = common::need(LoopFs::ext4("", "")) else {
        return;
    };
    let home = fs.home("home");
    let ids = ProjectIds::scan(&home).unwrap();
    mkdir(&home.join("layer"));
    let err = ids.assign(home.join("layer")).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::OPNOTSUPP), "{err}");
    assert!(err.to_string().contains("FS_IOC_FSSETXATTR"), "{err}");
}
