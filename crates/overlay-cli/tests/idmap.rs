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
use std::process::Command;

struct Home {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = self.run(&["cleanup"]);
    }
}

impl Home {
    fn new() -> Option<Self> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: mounting needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        Some(Self {
            path: dir.path().join("home"),
            _dir: dir,
        })
    }

    /// Exit status, stdout, stderr.
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let o = Command::new(env!("CARGO_BIN_EXE_overlay2"))
            .arg("--home")
            .arg(&self.path)
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).trim().to_owned(),
            String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        )
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    }
}

#[test]
fn create_with_maps_shows_the_image_shifted_and_refuses_bad_maps() {
    let Some(h) = Home::new() else { return };
    h.ok(&["create", "base"]);
    let base = h.ok(&["mount", "base"]);
    std::fs::write(PathBuf::from(&base).join("f"), b"x").unwrap();
    std::os::unix::fs::lchown(PathBuf::from(&base).join("f"), Some(1000), Some(2000)).unwrap();
    let status = h.ok(&["status"]);
    let line = status.lines().find(|l| l.starts_with("Id-mapped layers: ")).unwrap();
    if !line.contains("id-mapped lowers") {
        eprintln!("skipped: {line}");
        return;
    }
    // Two ranges per map, gid map given apart.
    h.ok(&[
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
    h.ok(&["create", "d", "--parent", "base", "--rw", "--uidmap", "0:400000:65536"]);
    for (id, uid, gid) in [("c", 300_000, 202_000), ("d", 401_000, 402_000)] {
        let merged = PathBuf::from(h.ok(&["mount", id]));
        let md = std::fs::symlink_metadata(merged.join("f")).unwrap();
        assert_eq!((md.uid(), md.gid()), (uid, gid), "{id}");
        h.ok(&["umount", id]);
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
        let (got, _, err) = h.run(&all);
        assert_eq!(got, code, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(layers(), before, "{args:?} changed the home");
    }
    h.ok(&["rm", "c"]);
    h.ok(&["rm", "d"]);
}
