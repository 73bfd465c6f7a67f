//! The `--idmap-mounts options` form performed as containerd 2 would
//! (containerd 1.6 on this machine cannot: it knows no `uidmap=`): the
//! mount a remapped Prepare returns is parsed, its `uidmap=`/`gidmap=`
//! options become a user namespace, every `lowerdir` is id-mapped through
//! it (this workspace's overlay-mount code) and overlayfs mounted over
//! them. The image's files must show shifted (0 -> 100000, 1000 ->
//! 101000); the upper belongs to the container's root. Needs root and a
//! kernel that id-maps overlay lowers: else prints why and passes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use overlay_archive::IdMaps;
use overlay_archive::IdRange;
use overlay_archive::idmap::IdKind;
use overlay_driver::{Backend, IdMapSupport};
use overlay_mount::{Attach, IdmapLowers, Method, OverlayOptions, Settings, Stack, UserNs};
use overlay_snapshotter::{IdMapMounts, LABEL_GID_MAPPING, LABEL_UID_MAPPING, Mount, Snapshotter};

/// Performs `m` as containerd 2's mount package does with `uidmap=` and
/// `gidmap=`: the maps as a user namespace, every lowerdir id-mapped.
fn mount_as_containerd_2(m: &Mount, target: &Path) -> overlay_mount::Mount {
    assert_eq!(m.kind, "overlay", "{m:?}");
    let (mut uid, mut gid, mut rest) = (None, None, Vec::new());
    for o in &m.options {
        if let Some(v) = o.strip_prefix("uidmap=") {
            uid = Some(IdRange::parse_list(IdKind::Uid, v).unwrap());
        } else if let Some(v) = o.strip_prefix("gidmap=") {
            gid = Some(IdRange::parse_list(IdKind::Gid, v).unwrap());
        } else {
            rest.push(o.as_str());
        }
    }
    let maps = IdMaps::new(uid.expect("uidmap="), gid.expect("gidmap=")).unwrap();
    let userns = UserNs::new(&maps.proc_uid_map(), &maps.proc_gid_map()).unwrap();
    let opts = OverlayOptions::parse(rest.join(",").as_bytes()).unwrap();
    let stack = Stack {
        base: PathBuf::from("/"),
        lowers: opts.lowerdirs.clone(),
        upper: opts.upper.clone(),
        target: target.to_path_buf(),
    };
    let settings = Settings {
        index_off: opts.index_off,
        ..Settings::default()
    };
    let mapped = vec![true; stack.lowers.len()];
    let by = |attach| IdmapLowers {
        userns: &userns,
        mapped: &mapped,
        attach,
    };
    stack
        .mount_idmapped(&settings, Method::NewApi, &by(Attach::Descriptors))
        .or_else(|e| {
            eprintln!("lowers as descriptors: {e}; attached to scratch dirs instead");
            stack.mount_idmapped(&settings, Method::Auto, &by(Attach::Scratch))
        })
        .expect("id-mapped overlay mount")
}

fn upperdir(m: &Mount) -> PathBuf {
    let up = m.options.iter().find_map(|o| o.strip_prefix("upperdir="));
    PathBuf::from(up.expect("upperdir="))
}

#[test]
fn options_form_mounts_as_containerd_2_would() {
    if fs::metadata("/proc/self").unwrap().uid() != 0 {
        eprintln!("skipped: needs root (mounts, chown)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let s = Snapshotter::open(&home)
        .unwrap()
        .with_id_map_mounts(IdMapMounts::Options);
    if let IdMapSupport::Copy(why) | IdMapSupport::Unsupported(why) = &s.driver().backend().capabilities().id_map {
        eprintln!("skipped: this kernel cannot id-map overlay lowers here: {why}");
        return;
    }
    let none = BTreeMap::new;
    let m = s.prepare("x1", "", none()).unwrap();
    let diff = PathBuf::from(&m[0].source);
    fs::write(diff.join("root-file"), "r").unwrap();
    fs::write(diff.join("user-file"), "u").unwrap();
    std::os::unix::fs::lchown(diff.join("user-file"), Some(1000), Some(1000)).unwrap();
    s.commit("l1", "x1", none()).unwrap();
    let m = s.prepare("x2", "l1", none()).unwrap();
    fs::write(upperdir(&m[0]).join("l2-file"), "2").unwrap();
    s.commit("l2", "x2", none()).unwrap();

    let map = "0:100000:65536".to_owned();
    let labels = BTreeMap::from([
        (LABEL_UID_MAPPING.to_owned(), map.clone()),
        (LABEL_GID_MAPPING.to_owned(), map),
    ]);
    let m = s.prepare("ctr", "l2", labels).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].options[..2], ["uidmap=0:100000:65536", "gidmap=0:100000:65536"]);
    let up = upperdir(&m[0]);
    assert_eq!(
        fs::metadata(&up).map(|m| (m.uid(), m.gid())).unwrap(),
        (100_000, 100_000)
    );

    let target = dir.path().join("rootfs");
    fs::create_dir(&target).unwrap();
    let mounted = mount_as_containerd_2(&m[0], &target);
    let owner = |name: &str| {
        let m = fs::symlink_metadata(target.join(name)).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(owner("root-file"), (100_000, 100_000));
    assert_eq!(owner("user-file"), (101_000, 101_000));
    assert_eq!(owner("l2-file"), (100_000, 100_000));
    assert_eq!(fs::read(target.join("l2-file")).unwrap(), b"2");
    mounted.unmount().unwrap();
    // The layers themselves were not touched.
    assert_eq!(fs::metadata(diff.join("user-file")).unwrap().uid(), 1000);
    assert_eq!(fs::metadata(diff.join("root-file")).unwrap().uid(), 0);
    for key in ["ctr", "l2", "l1"] {
        s.remove(key).unwrap();
    }
    assert!(s.driver().layers().unwrap().is_empty());
}
