//! Real enforcement: limits on XFS (`pquota`) and ext4 (`prjquota`), also
//! through an overlay whose upper dir is the limited layer, copy-up
//! included.
//!
//! These need a kernel with XFS and ext4 project quotas, which this
//! project's development machine lacks; they run when `OVERLAY_QUOTA_VM=1`
//! says the kernel has them, which `cargo xtask vm-test` sets inside a VM
//! that boots Debian's kernel. Otherwise each test says why and skips.
//! Filesystems and mounts are guards, released also when an assert fails.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use common::{LoopFs, Setup};
use overlay_mount::{Method, Settings, Stack, Upper};
use overlay_quota::{Filesystem, Quota, QuotaControl, Unsupported, project_id, set_project_id};
use rustix::io::Errno;

const MIB: u64 = 1 << 20;

/// Does the environment say this kernel enforces project quotas?
fn quota_kernel() -> bool {
    if std::env::var("OVERLAY_QUOTA_VM").as_deref() == Ok("1") {
        return true;
    }
    let release = rustix::system::uname().release().to_string_lossy().into_owned();
    eprintln!(
        "skipped: needs a kernel with XFS and ext4 project quotas (this is {release}); \
         `cargo xtask vm-test` runs it in a VM that has them (OVERLAY_QUOTA_VM=1)"
    );
    false
}

/// A scratch filesystem that must work on a quota kernel.
fn scratch(fs: Filesystem) -> LoopFs {
    let made = match fs {
        Filesystem::Xfs => LoopFs::xfs("pquota"),
        Filesystem::Ext4 => LoopFs::ext4("quota,project", "prjquota"),
    };
    match made {
        Ok(made) => made,
        Err(Setup::Skip(why)) => panic!("OVERLAY_QUOTA_VM=1 but {why}"),
        Err(Setup::MountRefused(e)) => panic!("OVERLAY_QUOTA_VM=1 but mounting {fs} with project quota: {e}"),
    }
}

/// What a write over a project limit fails with: XFS reports project
/// quota as a full disk, ext4 as a quota.
fn over_limit(fs: Filesystem) -> Errno {
    match fs {
        Filesystem::Xfs => Errno::NOSPC,
        Filesystem::Ext4 => Errno::DQUOT,
    }
}

fn mkdir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
}

/// Appends `len` bytes to `path` in 64 KiB writes and fsyncs. Returns the
/// bytes written and the error that stopped it, if any.
fn append(path: &Path, len: u64) -> (u64, Option<std::io::Error>) {
    let mut file = match std::fs::OpenOptions::new().create(true).append(true).open(path) {
        Ok(f) => f,
        Err(e) => return (0, Some(e)),
    };
    let chunk = vec![0xa5u8; 64 << 10];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(chunk.len() as u64) as usize;
        match file.write(&chunk[..n]) {
            Ok(w) => done += w as u64,
            Err(e) => return (done, Some(e)),
        }
    }
    (done, file.sync_all().err())
}

/// Runs `f` on a thread without `CAP_SYS_RESOURCE`, as a container's
/// processes run: ext4 (like every filesystem using the kernel's generic
/// quota code) lets that capability exceed a hard limit. Overlayfs drops it
/// for its own writes to the upper dir, so copy-up and writes through the
/// merged dir are limited for root too. XFS limits everyone.
fn without_sys_resource<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut caps = rustix::thread::capabilities(None).unwrap();
            caps.effective.remove(rustix::thread::CapabilitySet::SYS_RESOURCE);
            rustix::thread::set_capabilities(None, caps).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

fn assert_refused(result: (u64, Option<std::io::Error>), fs: Filesystem, what: &str) -> u64 {
    let (written, err) = result;
    let err = err.unwrap_or_else(|| panic!("{what}: {written} bytes written, expected {:?}", over_limit(fs)));
    assert_eq!(
        err.raw_os_error(),
        Some(over_limit(fs).raw_os_error()),
        "{what}: {err} after {written} bytes"
    );
    written
}

fn limit_accepts_its_size_and_refuses_more(fs_kind: Filesystem) {
    let fs = scratch(fs_kind);
    let home = fs.home("home");
    let control = QuotaControl::new(&home).unwrap();
    assert_eq!(control.filesystem(), fs_kind);
    let layer = home.join("layer");
    mkdir(&layer);
    let id = control.set_quota(&layer, "5m".parse().unwrap()).unwrap();
    assert_eq!(control.get_quota(&layer).unwrap(), Quota::new(5 * MIB));
    mkdir(&layer.join("diff"));
    assert_eq!(project_id(layer.join("diff")).unwrap(), id);

    let diff = layer.join("diff");
    // The project holds exactly the limit: its directories count too (ext4
    // gives each a block, XFS keeps small ones in the inode).
    let dirs = control.usage(&layer).unwrap().used;
    assert!(dirs <= 8 << 10, "{dirs} bytes for two empty directories");
    let room = 5 * MIB - dirs;
    let ((written, err), more) = without_sys_resource(|| {
        let five = append(&diff.join("five"), room);
        (five, append(&diff.join("more"), MIB))
    });
    assert!(
        err.is_none(),
        "{room} bytes into the {room} left: {err:?} after {written} bytes"
    );
    assert_eq!(written, room);
    let more = assert_refused(more, fs_kind, "one more MiB");
    assert!(more < MIB);
    let usage = control.usage(&layer).unwrap();
    assert_eq!(usage.project_id, id);
    assert_eq!(usage.limit, 5 * MIB);
    assert_eq!(usage.used, 5 * MIB, "{usage:?}");
    // layer, diff, five (XFS refuses even to create `more`).
    assert!(usage.inodes >= 3, "{usage:?}");

    // With CAP_SYS_RESOURCE: XFS still refuses, ext4 lets it through.
    let root = append(&diff.join("root"), 64 << 10);
    match fs_kind {
        Filesystem::Xfs => {
            assert_refused(root, fs_kind, "root over the limit");
        }
        Filesystem::Ext4 => assert!(root.1.is_none(), "ext4 lets CAP_SYS_RESOURCE exceed: {:?}", root.1),
    }

    // The rest of the filesystem is not limited by it.
    let (_, err) = append(&home.join("outside"), 8 * MIB);
    assert!(err.is_none(), "{err:?}");
    // A higher limit on the same directory: same project, more room.
    assert_eq!(control.set_quota(&layer, Quota::new(8 * MIB)).unwrap(), id);
    let (_, err) = without_sys_resource(|| append(&diff.join("later"), 2 * MIB));
    assert!(err.is_none(), "{err:?}");
}

fn limit_holds_through_an_overlay_with_copy_up(fs_kind: Filesystem) {
    let fs = scratch(fs_kind);
    let home = fs.home("home");
    let control = QuotaControl::new(&home).unwrap();
    // An image layer, not limited.
    mkdir(&home.join("lower/diff"));
    assert!(append(&home.join("lower/diff/big"), 3 * MIB).1.is_none());
    assert!(append(&home.join("lower/diff/huge"), 6 * MIB).1.is_none());
    // The container layer, as Docker lays it out: the limit is on the
    // layer directory, so diff and work share its project (XFS refuses
    // the copy-up rename between projects with EXDEV).
    let layer = home.join("layer");
    mkdir(&layer);
    let id = control.set_quota(&layer, Quota::new(5 * MIB)).unwrap();
    for d in ["diff", "work", "merged"] {
        mkdir(&layer.join(d));
    }
    let stack = Stack {
        base: home.clone(),
        lowers: vec!["lower/diff".into()],
        upper: Some(Upper {
            upperdir: "layer/diff".into(),
            workdir: "layer/work".into(),
        }),
        target: "layer/merged".into(),
    };
    let mount = stack.mount(&Settings::default(), Method::Legacy).unwrap();
    let merged = mount.target().to_path_buf();

    // Written as root: overlayfs drops CAP_SYS_RESOURCE for its writes to
    // the upper dir, so ext4 limits them too.
    // Copying up 6 MiB cannot fit in 5 MiB.
    assert_refused(append(&merged.join("huge"), 1), fs_kind, "copy-up of 6 MiB");
    assert!(
        !layer.join("diff/huge").exists(),
        "a failed copy-up leaves nothing in the upper dir"
    );
    // 3 MiB copied up and 1 MiB appended fit.
    let (_, err) = append(&merged.join("big"), MIB);
    assert!(err.is_none(), "copy-up of 3 MiB + 1 MiB: {err:?}");
    assert_eq!(std::fs::metadata(layer.join("diff/big")).unwrap().len(), 4 * MIB);
    assert_eq!(project_id(layer.join("diff/big")).unwrap(), id);
    // Only 1 MiB is left.
    let more = assert_refused(append(&merged.join("more"), 2 * MIB), fs_kind, "2 MiB more");
    assert!(more <= MIB, "{more} bytes of 2 MiB written");
    let usage = control.usage(&layer).unwrap();
    assert!(usage.used <= 5 * MIB, "{usage:?}");
    drop(mount);
    assert_eq!(
        std::fs::metadata(home.join("lower/diff/big")).unwrap().len(),
        3 * MIB,
        "lower untouched"
    );
}

#[test]
fn xfs_limit_accepts_its_size_and_refuses_more() {
    if quota_kernel() {
        limit_accepts_its_size_and_refuses_more(Filesystem::Xfs);
    }
}

#[test]
fn xfs_limit_holds_through_an_overlay_with_copy_up() {
    if quota_kernel() {
        limit_holds_through_an_overlay_with_copy_up(Filesystem::Xfs);
    }
}

/// Beyond Docker, which refuses ext4 (its maintainers left it as a TODO).
#[test]
fn ext4_limit_accepts_its_size_and_refuses_more() {
    if quota_kernel() {
        limit_accepts_its_size_and_refuses_more(Filesystem::Ext4);
    }
}

#[test]
fn ext4_limit_holds_through_an_overlay_with_copy_up() {
    if quota_kernel() {
        limit_holds_through_an_overlay_with_copy_up(Filesystem::Ext4);
    }
}

#[test]
fn a_new_control_keeps_the_limits_and_ids_it_finds() {
    if !quota_kernel() {
        return;
    }
    for kind in [Filesystem::Xfs, Filesystem::Ext4] {
        let fs = scratch(kind);
        let home = fs.home("home");
        let first = QuotaControl::new(&home).unwrap();
        for (name, mib) in [("a", 5), ("b", 6)] {
            mkdir(&home.join(name));
            first.set_quota(home.join(name), Quota::new(mib * MIB)).unwrap();
        }
        let (a, b) = (project_id(home.join("a")).unwrap(), project_id(home.join("b")).unwrap());
        assert_eq!((a, b), (1, 2), "{kind}");
        drop(first);

        // A restart: Docker's probe would set a zero limit on the home's
        // id + 1, which is `a`'s.
        let second = QuotaControl::new(&home).unwrap();
        assert_eq!(second.project_ids().next_id(), 3, "{kind}");
        assert_eq!(second.get_quota(home.join("a")).unwrap(), Quota::new(5 * MIB), "{kind}");
        assert_eq!(second.get_quota(home.join("b")).unwrap(), Quota::new(6 * MIB), "{kind}");
        assert_eq!(
            second.set_quota(home.join("a"), Quota::new(7 * MIB)).unwrap(),
            a,
            "{kind}"
        );
        assert_eq!(second.get_quota(home.join("a")).unwrap(), Quota::new(7 * MIB), "{kind}");
        let err = second.get_quota(&home).unwrap_err();
        assert!(err.to_string().contains("no project quota"), "{err}");
    }
}

#[test]
fn ids_in_use_elsewhere_on_the_filesystem_are_skipped() {
    if !quota_kernel() {
        return;
    }
    let fs = scratch(Filesystem::Xfs);
    // Another home on the same filesystem, in another process: its
    // directories are not below ours, so the scan cannot see them, but the
    // filesystem accounts their inodes to their ids.
    let other = fs.home("other");
    for (name, id) in [("x", 1), ("y", 2)] {
        mkdir(&other.join(name));
        set_project_id(other.join(name), id).unwrap();
        std::fs::write(other.join(name).join("file"), b"owned").unwrap();
    }
    let home = fs.home("home");
    let control = QuotaControl::new(&home).unwrap();
    mkdir(&home.join("layer"));
    assert_eq!(control.set_quota(home.join("layer"), Quota::new(MIB)).unwrap(), 3);
}

#[test]
fn quotas_from_many_threads() {
    if !quota_kernel() {
        return;
    }
    let fs = scratch(Filesystem::Xfs);
    let home = fs.home("home");
    let control = QuotaControl::new(&home).unwrap();
    let dirs: Vec<PathBuf> = (0..32).map(|i| home.join(format!("layer{i}"))).collect();
    for d in &dirs {
        mkdir(d);
    }
    std::thread::scope(|s| {
        for chunk in dirs.chunks(8) {
            let control = &control;
            s.spawn(move || {
                for d in chunk {
                    let i: u64 = d.file_name().unwrap().to_str().unwrap()[5..].parse().unwrap();
                    control.set_quota(d, Quota::new((i + 1) * MIB)).unwrap();
                }
            });
        }
    });
    let mut ids = BTreeSet::new();
    for (i, d) in dirs.iter().enumerate() {
        assert_eq!(control.get_quota(d).unwrap(), Quota::new((i as u64 + 1) * MIB));
        ids.insert(project_id(d).unwrap());
    }
    assert_eq!(ids.len(), dirs.len(), "one project per directory");
}

#[test]
fn xfs_accounted_but_not_enforced_says_so() {
    if !quota_kernel() {
        return;
    }
    let fs = match LoopFs::xfs("pqnoenforce") {
        Ok(fs) => fs,
        Err(e) => panic!("OVERLAY_QUOTA_VM=1 but mounting XFS with pqnoenforce: {e:?}"),
    };
    let err = QuotaControl::new(fs.path()).unwrap_err();
    assert_eq!(
        err.unsupported(),
        Some(&Unsupported::NotEnforced { fs: Filesystem::Xfs })
    );
    assert!(err.to_string().contains("not enforced"), "{err}");
}
