//! `overlay2 create --uidmap/--gidmap` through the real binary: a
//! container layer that sees its image under its own ids, `status` saying
//! how, and the refusals of bad maps (exit 1 naming the range, exit 2 for
//! bad usage), each leaving no layer behind.
//!
//! Needs root and overlayfs; otherwise each test says why and skips. The
//! home is cleaned up (`overlay2 cleanup`) by a drop guard.
#![allow(clippy::unwrap_used, missing_docs)]

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

mod home;

use home::Home;

#[test]
fn create_with_maps_shows_the_image_shifted_and_refuses_bad_maps() {
    let Some(h) = Home::new("create_with_maps_shows_the_image_shifted_and_refuses_bad_maps") else {
        return;
    };
    let ok = |args: &[&str]| h.run(args).ok().line();
    ok(&["create", "base"]);
    let base = ok(&["mount", "base"]);
    std::fs::write(PathBuf::from(&base).join("f"), b"x").unwrap();
    std::os::unix::fs::lchown(PathBuf::from(&base).join("f"), Some(1000), Some(2000)).unwrap();
    let status = ok(&["status"]);
    let line = status.lines().find(|l| l.starts_with("Id-mapped layers: ")).unwrap();
    if !line.contains("id-mapped lowers") {
        eprintln!("skipped: {line}");
        return;
    }
    // Two ranges per map, gid map given apart.
    ok(&[
        "create",
        "c",
        "--parent",
        "base",
        "--rw",
        "--uidmap",
        "0:100000:1000",
        "--uidmap",
        "1000:300000:1000",
        "--gidmap",
        "0:200000:65536",
    ]);
    // Without --gidmap, the uid map serves for gids.
    ok(&["create", "d", "--parent", "base", "--rw", "--uidmap", "0:400000:65536"]);
    for (id, uid, gid) in [("c", 300_000, 202_000), ("d", 401_000, 402_000)] {
        let merged = PathBuf::from(ok(&["mount", id]));
        let md = std::fs::symlink_metadata(merged.join("f")).unwrap();
        assert_eq!((md.uid(), md.gid()), (uid, gid), "{id}");
        ok(&["umount", id]);
    }
    assert_eq!(std::fs::metadata(PathBuf::from(&base).join("f")).unwrap().uid(), 1000);

    let layers = || std::fs::read_dir(&h.path).unwrap().count();
    let before = layers();
    for (args, code, says) in [
        (
            &["--uidmap", "0:100000:10", "--uidmap", "5:200000:10"][..],
            1,
            "layer \"bad\": uid map ranges 0:100000:10 and 5:200000:10 overlap on the container side",
        ),
        (&["--uidmap", "0:100000:0"], 1, "size 0 maps nothing"),
        (
            &["--uidmap", "0:4294967000:65536"],
            1,
            "host ids 4294967000..4294967000+65536 run past the last id",
        ),
        (
            &["--uidmap", "0:100000"],
            2,
            "2 field(s), not 3 (expected CONTAINER:HOST:SIZE",
        ),
        (&["--uidmap", "0:x:1"], 2, "host id \"x\" is not a decimal number"),
        (&["--gidmap", "0:100000:65536"], 2, "--uidmap"),
    ] {
        let mut all = vec!["create", "bad", "--parent", "base", "--rw"];
        all.extend_from_slice(args);
        h.run(&all).fails(code, says);
        assert_eq!(layers(), before, "{args:?} changed the home");
    }
    ok(&["rm", "c"]);
    ok(&["rm", "d"]);
}
