//! containerd's remap labels through a real containerd 1.6: `ctr run
//! --uidmap 0:H:65536 --gidmap 0:H:65536 --remap-labels` with our server
//! as the snapshotter (its default `--idmap-mounts bind` form: containerd
//! 1.6 cannot mount `uidmap=` options).
//!
//! - `ctr_run_with_remap_labels`: a map past the last id is refused
//!   (InvalidArgument naming the label and the problem, reaching `ctr`)
//!   with nothing made; then, inside the container, in a user
//!   namespace, the image's files show as root (`stat -c %u:%g
//!   /bin/busybox` is `0:0`) and what it writes as root is its own; on
//!   the host the image's layers are unchanged (owners and bytes) and the
//!   write lands in the container's upper, owned by 100000. The server is
//!   restarted while the container's layer is mounted; removing the
//!   container and the image (containerd's GC) then unmounts and removes
//!   everything: no mount left in containerd's namespace, `check` clean.
//! - `two_containers_two_maps_at_once`: two running containers on one
//!   image, maps 0:100000 and 0:200000: each sees the image as root, each
//!   one's writes land owned by its own host root.
//!
//! The rig is `containerd/harness.rs` (see there for the isolation).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;
#[path = "containerd/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{run, wait_for};
use harness::{Rig, SNAPSHOTTER, rig_or_skip};

const ONE: &str = "docker.io/o2rs/one:latest";

/// One entry of a layer: path, owner, mode, and its bytes (a file's
/// content or a link's target).
type Entry = (PathBuf, u32, u32, u32, Vec<u8>);

fn walk(root: &Path, dir: &Path, out: &mut Vec<Entry>) {
    let mut names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    for p in names {
        let m = fs::symlink_metadata(&p).unwrap();
        let bytes = if m.is_file() {
            fs::read(&p).unwrap()
        } else if m.is_symlink() {
            fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes()
        } else {
            Vec::new()
        };
        out.push((
            p.strip_prefix(root).unwrap().to_path_buf(),
            m.uid(),
            m.gid(),
            m.mode(),
            bytes,
        ));
        if m.is_dir() {
            walk(root, &p, out);
        }
    }
}

/// Every layer's `diff`, entry by entry, keyed by layer id.
fn fingerprint(home: &Path) -> BTreeMap<String, Vec<Entry>> {
    layer_ids(home)
        .into_iter()
        .map(|id| {
            let diff = home.join(&id).join("diff");
            let mut entries = Vec::new();
            walk(&diff, &diff, &mut entries);
            (id, entries)
        })
        .collect()
}

fn layer_ids(home: &Path) -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(home)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            (n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit())).then_some(n)
        })
        .collect();
    ids.sort();
    ids
}

/// The layers made with id maps (an `idmap` file), with their uid map
/// line (`uid 0:100000:65536`).
fn mapped_layers(home: &Path) -> Vec<(String, String)> {
    layer_ids(home)
        .into_iter()
        .filter_map(|id| {
            let text = fs::read_to_string(home.join(&id).join("idmap")).ok()?;
            Some((id, text.lines().next().unwrap_or_default().to_owned()))
        })
        .collect()
}

fn owner(p: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid())
}

fn import_one(rig: &Rig) -> BTreeMap<String, Vec<Entry>> {
    let tar = rig.sample_image("one.tar", "o2rs/one:latest", 0);
    run(&mut rig.import_cmd(&tar, "docker.io/o2rs/one")).ok();
    let image = fingerprint(&rig.home());
    assert_eq!(image.len(), 3, "three image layers");
    for (id, entries) in &image {
        assert!(
            entries.iter().all(|e| (e.1, e.2) == (0, 0)),
            "layer {id}: an image entry not owned by root"
        );
    }
    image
}

fn remap_args(host: u32) -> [String; 5] {
    let map = format!("0:{host}:65536");
    [
        "--uidmap".into(),
        map.clone(),
        "--gidmap".into(),
        map,
        "--remap-labels".into(),
    ]
}

/// The image's layers as they were: same entries, owners, bytes.
#[track_caller]
fn assert_image_unchanged(rig: &Rig, image: &BTreeMap<String, Vec<Entry>>) {
    let now = fingerprint(&rig.home());
    for (id, entries) in image {
        assert!(now.get(id) == Some(entries), "image layer {id} changed");
    }
}

#[test]
fn ctr_run_with_remap_labels() {
    const T: &str = "ctr_run_with_remap_labels";
    let mut rig = rig_or_skip!("ctr_run_with_remap_labels");
    let image = import_one(&rig);

    // A map past the last id: refused, named, nothing made.
    let bad = "0:4294967290:65536";
    let args = [
        "run",
        "--snapshotter",
        SNAPSHOTTER,
        "--uidmap",
        bad,
        "--gidmap",
        bad,
        "--remap-labels",
        ONE,
        "bad",
        "true",
    ];
    let out = rig.ctr(&args);
    assert!(!out.success(), "a bad map ran: {}", out.stdout);
    assert!(
        out.stderr.contains("containerd.io/snapshot/uidmapping") && out.stderr.contains("run past the last id"),
        "ctr run with a bad map: {}",
        out.stderr
    );
    eprintln!("[{T}] ctr run with a bad map: {}", out.stderr.trim());
    assert_eq!(layer_ids(&rig.home()).len(), 3, "a layer was made for a bad map");
    assert_image_unchanged(&rig, &image);

    let script = "stat -c %u:%g /bin/busybox /etc; cat /proc/self/uid_map; \
                  echo written > /written; stat -c %u:%g /written";
    let mut args = vec!["run", "--snapshotter", SNAPSHOTTER];
    let remap = remap_args(100_000);
    args.extend(remap.iter().map(String::as_str));
    args.extend([ONE, "remapped", "sh", "-c", script]);
    let out = rig.ctr(&args).ok();
    eprintln!("[{T}] ctr run took {:?}", out.took);
    let lines: Vec<Vec<&str>> = out.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        lines,
        [vec!["0:0"], vec!["0:0"], vec!["0", "100000", "65536"], vec!["0:0"]],
        "stderr: {}",
        out.stderr
    );

    let home = rig.home();
    let mapped = mapped_layers(&home);
    assert_eq!(mapped.len(), 1, "one id-mapped layer: {mapped:?}");
    assert_eq!(mapped[0].1, "uid 0:100000:65536");
    let diff = home.join(&mapped[0].0).join("diff");
    assert_eq!(
        owner(&diff),
        (100_000, 100_000),
        "the upper belongs to the container's root"
    );
    assert_eq!(owner(&diff.join("written")), (100_000, 100_000));
    assert_eq!(fs::read(diff.join("written")).unwrap(), b"written\n");
    assert_image_unchanged(&rig, &image);
    let mounts = rig.mounts_in_ns();
    let merged = format!("{}/merged", mapped[0].0);
    assert_eq!(
        mounts.iter().filter(|m| m.contains(&merged)).count(),
        1,
        "the server's id-mapped mount: {mounts:?}"
    );

    // A restarted server adopts the mount; Remove (containerd's GC) unmounts.
    rig.stop_server();
    rig.start_server();
    // containerd's client reconnects with a backoff: a GC meanwhile fails.
    let (_, waited) = wait_for("containerd to reach the new server", Duration::from_secs(30), || {
        let out = rig.ctr(&["snapshots", "--snapshotter", SNAPSHOTTER, "ls"]);
        out.success().then_some(())
    });
    eprintln!("[{T}] containerd reached the restarted server after {waited:?}");
    // Mounts after the restart: the same bind of the adopted mount, not a second mount.
    let key = "remapped";
    let out = rig
        .ctr(&["snapshots", "--snapshotter", SNAPSHOTTER, "mounts", "/mnt", key])
        .ok();
    assert!(
        out.stdout.contains(&merged) && out.stdout.contains("rbind"),
        "{}",
        out.stdout
    );
    let count = rig.mounts_in_ns().iter().filter(|m| m.contains(&merged)).count();
    assert_eq!(count, 1, "{:?}", rig.mounts_in_ns());
    rig.ctr(&["containers", "rm", "remapped"]).ok();
    rig.remove_images_and_wait_empty(&[ONE]);
    rig.assert_no_mounts_in_ns();
    rig.check_clean();
    rig.finish();
}

#[test]
fn two_containers_two_maps_at_once() {
    const T: &str = "two_containers_two_maps_at_once";
    let rig = rig_or_skip!("two_containers_two_maps_at_once");
    let image = import_one(&rig);
    let hosts = [("a", 100_000u32), ("b", 200_000u32)];
    for (name, host) in hosts {
        let mut args = vec!["run", "-d", "--snapshotter", SNAPSHOTTER];
        let remap = remap_args(host);
        args.extend(remap.iter().map(String::as_str));
        let script = format!("echo {name} > /mine; exec sleep 300");
        args.extend([ONE, name, "sh", "-c", &script]);
        rig.ctr(&args).ok();
    }
    let home = rig.home();
    let (mapped, waited) = wait_for("both containers' writes", Duration::from_secs(30), || {
        let mapped = mapped_layers(&home);
        let done = mapped.len() == 2 && mapped.iter().all(|(id, _)| home.join(id).join("diff/mine").exists());
        done.then_some(mapped)
    });
    eprintln!("[{T}] both running and written {waited:?} after start");
    let tasks = rig.ctr(&["tasks", "ls"]).ok().stdout;
    for (name, host) in hosts {
        let running = tasks.lines().any(|l| l.starts_with(name) && l.contains("RUNNING"));
        assert!(running, "{name} not running:\n{tasks}");
        let exec = format!("{name}-stat");
        let out = rig
            .ctr(&[
                "tasks",
                "exec",
                "--exec-id",
                &exec,
                name,
                "stat",
                "-c",
                "%u:%g",
                "/bin/busybox",
                "/mine",
            ])
            .ok();
        assert_eq!(
            out.stdout.lines().collect::<Vec<_>>(),
            ["0:0", "0:0"],
            "{name}: {}",
            out.stderr
        );
        let (id, _) = mapped
            .iter()
            .find(|(_, uid)| *uid == format!("uid 0:{host}:65536"))
            .unwrap_or_else(|| panic!("no layer mapped to {host}: {mapped:?}"));
        let mine = home.join(id).join("diff/mine");
        assert_eq!(owner(&mine), (host, host), "{name}'s write");
        assert_eq!(fs::read_to_string(&mine).unwrap(), format!("{name}\n"));
    }
    assert_image_unchanged(&rig, &image);

    for (name, _) in hosts {
        rig.ctr(&["tasks", "kill", "--signal", "SIGKILL", name]).ok();
    }
    for (name, _) in hosts {
        wait_for("the task to stop", Duration::from_secs(30), || {
            let t = rig.ctr(&["tasks", "ls"]).ok().stdout;
            (!t.lines().any(|l| l.starts_with(name) && l.contains("RUNNING"))).then_some(())
        });
        rig.ctr(&["tasks", "rm", name]).ok();
        rig.ctr(&["containers", "rm", name]).ok();
    }
    rig.remove_images_and_wait_empty(&[ONE]);
    rig.assert_no_mounts_in_ns();
    let mut rig = rig;
    rig.check_clean();
    rig.finish();
}
