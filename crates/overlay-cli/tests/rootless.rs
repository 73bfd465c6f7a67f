//! The `overlay2` binary rootless: every command started in a user
//! namespace of its own by an unprivileged user, once with
//! `--map-root-user` and once with a sub-id range as `newuidmap` gives
//! (`home::rootless`). The demo, import, apply, mount, diff; ids the
//! namespace does not map (refused, or with `--ignore-chown-errors` given
//! to root); a quota (refused, naming the user namespace). Needs root to
//! become the user; otherwise, or without user namespaces, each test says
//! so and skips.
#![allow(clippy::unwrap_used, missing_docs)]

mod home;

use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;

use home::Home;
use home::rootless::{Map, snapshot};

/// A layer tar: `(path, uid, data)` regular files, parents implied.
fn layer_tar(files: &[(&str, u64, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, id, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_uid(*id);
        h.set_gid(*id);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Writes `bytes` where the rootless user can read them.
fn put_file(home: &Home, name: &str, bytes: &[u8]) -> PathBuf {
    let path = home.dir().parent().unwrap().join(name);
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    path
}

#[test]
fn demo_import_apply_mount_and_diff_work_rootless() {
    for map in Map::ALL {
        let Some(home) = Home::rootless("demo_import_apply_mount_and_diff_work_rootless", map) else {
            continue;
        };
        let status = home.run(&["--json", "status"]).ok().json();
        assert_eq!(status["status"]["userxattr"], "true", "{map:?}: {status}");
        let demo = home.run(&["demo"]).ok();
        assert!(
            demo.stdout.contains("the directory is opaque"),
            "{map:?}: {}",
            demo.stdout
        );
        // The demo's opaque directory is marked in user.overlay.*.
        let marked: Vec<String> = snapshot(&home.path)
            .into_iter()
            .filter(|(_, v)| v.contains("overlay.opaque"))
            .map(|(k, v)| format!("{} {v}", k.display()))
            .collect();
        assert!(!marked.is_empty(), "{map:?}: no opaque directory in the demo's layers");
        assert!(
            marked
                .iter()
                .all(|m| m.contains("user.overlay.opaque") && !m.contains("trusted.")),
            "{map:?}: {marked:?}"
        );

        // An image, then a layer applied on it, its diff and its mount.
        let image = home.dir().join("image.tar");
        home.run(&["sample-image", "-o", image.to_str().unwrap()]).ok();
        let top = home.run(&["import", image.to_str().unwrap()]).ok().line();
        home.run(&["create", "mine", "--parent", &top]).ok();
        let tar = put_file(&home, "mine.tar", &layer_tar(&[("etc/motd", 0, b"rootless\n")]));
        home.run(&["apply", "mine", tar.to_str().unwrap()]).ok();
        let diff = home.cmd(&["diff", "mine"]).output().unwrap();
        assert!(diff.status.success(), "{}", String::from_utf8_lossy(&diff.stderr));
        let names: Vec<String> = tar::Archive::new(&diff.stdout[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["etc", "etc/motd"], "{map:?}");
        let run = home.rootless_script(
            "set -e; m=$($OV --home \"$HOME_DIR\" mount mine); cat \"$m/etc/motd\"; \
             touch \"$m/new\"; $OV --home \"$HOME_DIR\" umount mine >/dev/null",
        );
        let run = run.ok();
        assert_eq!(run.stdout, "rootless\n", "{map:?}");
        home.run(&["create", "--rw", "ctr", "--parent", "mine"]).ok();
        let changes = home.rootless_script(
            "set -e; m=$($OV --home \"$HOME_DIR\" mount ctr); rm \"$m/etc/motd\"; \
             $OV --home \"$HOME_DIR\" changes ctr; $OV --home \"$HOME_DIR\" umount ctr >/dev/null",
        );
        assert_eq!(changes.ok().stdout, "C /etc\nD /etc/motd\n", "{map:?}");
        home.assert_clean();
    }
}

#[test]
fn ids_outside_the_map_are_refused_unless_given_to_root() {
    for map in Map::ALL {
        let Some(home) = Home::rootless("ids_outside_the_map_are_refused_unless_given_to_root", map) else {
            continue;
        };
        // 70000: outside both the single-id map and the 65536 sub-ids.
        let tar = put_file(
            &home,
            "far.tar",
            &layer_tar(&[("etc/passwd", 0, b"root"), ("srv/far", 70_000, b"far")]),
        );
        home.run(&["create", "layer"]).ok();
        let before = snapshot(&home.path);
        home.run(&["apply", "layer", tar.to_str().unwrap()])
            .fails(1, "\"srv/far\": uid 70000 is not mapped in this user namespace");
        assert_eq!(snapshot(&home.path), before, "{map:?}: a refused layer changes nothing");
        let img = home.run(&["--ignore-chown-errors", "apply", "layer", tar.to_str().unwrap()]);
        img.ok();
        // Root of the namespace, as the host sees it.
        let (uid, gid) = home.rootless.as_ref().unwrap().1.root_of(map);
        let m = std::fs::metadata(home.diff("layer").join("srv/far")).unwrap();
        assert_eq!((m.uid(), m.gid()), (uid, gid), "{map:?}");
        home.assert_clean();
    }
}

#[test]
fn a_quota_is_refused_naming_the_user_namespace() {
    for map in Map::ALL {
        let Some(home) = Home::rootless("a_quota_is_refused_naming_the_user_namespace", map) else {
            continue;
        };
        home.run(&["create", "base"]).ok();
        home.run(&["create", "--rw", "--size", "10M", "ctr", "--parent", "base"])
            .fails(1, "user namespace");
        assert_eq!(home.layers(), ["base"], "{map:?}");
        home.assert_clean();
    }
}
