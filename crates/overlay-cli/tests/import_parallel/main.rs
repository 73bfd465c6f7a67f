//! `overlay2 import` applying an image's layers side by side (the real
//! binary on a real home, as `cli.rs`): contents and whiteouts across
//! layers, the report in chain order (JSON, and the lines printed on a
//! terminal as layers commit), identical trees one layer at a time and
//! several at once, a corrupt middle layer rolling the whole image back,
//! and a `kill -9` in the middle of a parallel import.
//!
//! Needs root and overlayfs; otherwise each test says why and skips.
//! Homes are cleaned up (`overlay2 cleanup`) and children killed by drop
//! guards, so a failing test leaves nothing mounted or running.
#![allow(clippy::unwrap_used, missing_docs)]

mod harness;
#[path = "../home/mod.rs"]
mod home;

use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use harness::*;

/// Five layers with whiteouts across them: a file deleted then put back,
/// a directory made opaque twice, a directory of layer 3 deleted whole in
/// layer 4, a hard link; each with some filler so that applies overlap.
fn five_layers() -> Vec<Vec<u8>> {
    vec![
        Tar::new()
            .dir("etc")
            .file("etc/a.conf", b"one\n")
            .file("etc/gone", b"to be deleted\n")
            .dir("data")
            .file("data/old1", b"old 1\n")
            .file("data/old2", b"old 2\n")
            .dir("bin")
            .exec("bin/tool", b"#!/bin/sh\necho tool\n")
            .symlink("conf", "etc/a.conf")
            .dir("usr")
            .dir("usr/lib")
            .file("usr/lib/libx.so", &noise(100_000, 1))
            .filler("fill1", 300, 3000, 1)
            .done(),
        Tar::new()
            .dir("etc")
            .file("etc/a.conf", b"two\n")
            .file("etc/.wh.gone", b"")
            .dir("data")
            .file("data/.wh..wh..opq", b"")
            .file("data/new", b"new\n")
            .filler("fill2", 300, 3000, 2)
            .done(),
        Tar::new()
            .dir("srv")
            .file("srv/page", b"page\n")
            .hardlink("srv/same", "srv/page")
            .dir("etc")
            .file("etc/gone", b"back\n")
            .filler("fill3", 300, 3000, 3)
            .done(),
        Tar::new()
            .file(".wh.srv", b"")
            .dir("bin")
            .file("bin/.wh.tool", b"")
            .filler("fill4", 300, 3000, 4)
            .done(),
        Tar::new()
            .dir("data")
            .file("data/new2", b"new 2\n")
            .dir("usr")
            .file("usr/.wh..wh..opq", b"")
            .file("usr/only", b"only\n")
            .filler("fill5", 300, 3000, 5)
            .done(),
    ]
}

// ------------------------------------------------------------------ tests

#[test]
fn parallel_import_is_right_and_reports_in_chain_order() {
    let Some(home) = Home::new("parallel_import_is_right_and_reports_in_chain_order") else {
        return;
    };
    let layers = five_layers();
    let ids = chain_ids(&layers);
    // A second image shares the first two layers and adds its own.
    let own = Tar::new().file("other", b"other\n").done();
    let second = vec![layers[0].clone(), layers[1].clone(), own];
    let ids2 = chain_ids(&second);
    let work = scratch();
    let image = docker_save(
        &work.path().join("image.tar"),
        &[("five:1", &layers), ("two:1", &second)],
    );

    let r = home.import(&image, 5).ok();
    assert_eq!(r.stderr, "", "nothing on stderr when it is not a terminal");
    let j = r.json();
    assert_eq!(j["top"], json!(ids2[2]));
    let report = |img: usize| -> Vec<(String, Value, bool)> {
        j["images"][img]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["id"].as_str().unwrap().to_owned(),
                    l["parent"].clone(),
                    l["created"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    let want: Vec<(String, Value, bool)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), if i == 0 { Value::Null } else { json!(ids[i - 1]) }, true))
        .collect();
    assert_eq!(report(0), want, "layers in chain order, each on the one below");
    assert!(
        j["images"][0]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["bytes"].as_u64().unwrap() > 0)
    );
    let created2: Vec<bool> = report(1).into_iter().map(|l| l.2).collect();
    assert_eq!(created2, [false, false, true], "a layer two images share is made once");

    // Whiteouts stay in their own layer, in the kernel's forms.
    let gone = std::fs::symlink_metadata(home.diff(&ids[1]).join("etc/gone")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    assert!(overlay_xattrs(&home.diff(&ids[1]).join("data")).contains("trusted.overlay.opaque=y"));
    assert!(
        std::fs::symlink_metadata(home.diff(&ids[3]).join("srv"))
            .unwrap()
            .file_type()
            .is_char_device()
    );
    assert_eq!(
        std::fs::read_to_string(home.diff(&ids[2]).join("etc/gone")).unwrap(),
        "back\n"
    );

    // And the stack reads as the image says.
    let top = home.run(&["mount", &ids[4]]).ok().stdout.trim().to_owned();
    let root = Path::new(&top);
    assert_eq!(std::fs::read_to_string(root.join("etc/a.conf")).unwrap(), "two\n");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/gone")).unwrap(),
        "back\n",
        "deleted, then put back"
    );
    assert_eq!(names_in(&root.join("data")), ["new", "new2"], "opaque in layer 2");
    assert!(!root.join("srv").exists(), "layer 3's srv deleted whole in layer 4");
    assert_eq!(names_in(&root.join("bin")), Vec::<String>::new());
    assert_eq!(names_in(&root.join("usr")), ["only"], "opaque in layer 5");
    assert_eq!(std::fs::read_link(root.join("conf")).unwrap(), Path::new("etc/a.conf"));
    for i in 1..=5 {
        assert!(root.join(format!("fill{i}/f00299")).is_file());
    }
    home.run(&["umount", &ids[4]]).ok();
    let mid = home.run(&["mount", &ids[2]]).ok().stdout.trim().to_owned();
    let page = std::fs::metadata(Path::new(&mid).join("srv/page")).unwrap();
    let same = std::fs::metadata(Path::new(&mid).join("srv/same")).unwrap();
    assert_eq!((page.ino(), page.nlink()), (same.ino(), 2), "the hard link is one file");
    home.run(&["umount", &ids[2]]).ok();
    home.assert_clean();

    // The text output: one top per image, in the file's order.
    home.run(&["rm", &ids2[2]]).ok();
    let text = home.cmd(&["import", image.to_str().unwrap()]).output().unwrap();
    assert!(text.status.success());
    assert_eq!(
        String::from_utf8(text.stdout).unwrap(),
        format!("{}\n{}\n", ids[4], ids2[2])
    );
}

#[test]
fn on_a_terminal_layers_are_reported_as_committed_bottom_up() {
    let Some(home) = Home::new("on_a_terminal_layers_are_reported_as_committed_bottom_up") else {
        return;
    };
    if !Path::new("/usr/bin/script").is_file() {
        eprintln!("skipped on_a_terminal_layers_are_reported_as_committed_bottom_up: needs script(1) for a terminal");
        return;
    }
    // The bottom layer is the biggest: the others finish first and wait.
    let mut layers = five_layers();
    layers[0] = Tar::new().filler("big", 1500, 2000, 9).done();
    let ids = chain_ids(&layers);
    let work = scratch();
    let image = docker_save(&work.path().join("image.tar"), &[("five:1", &layers)]);
    let line = format!(
        "{} --home {} import {}",
        env!("CARGO_BIN_EXE_overlay2"),
        home.path.display(),
        image.display()
    );
    let out = Command::new("script")
        .args(["-qefc", &line, "/dev/null"])
        .env(JOBS, "5")
        .env_remove("OVERLAY2_HOME")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let mut at = 0;
    for (i, id) in ids.iter().enumerate() {
        let want = format!("committed layer {} of 5: {id}", i + 1);
        let found = text[at..]
            .find(&want)
            .unwrap_or_else(|| panic!("{want:?} after byte {at} of {text:?}"));
        at += found + want.len();
    }
    assert!(text.trim_end().ends_with(&ids[4]), "then the top, on stdout: {text:?}");
    home.assert_clean();
}

#[test]
fn sequential_and_parallel_imports_give_identical_layers() {
    let Some(one) = Home::new("sequential_and_parallel_imports_give_identical_layers") else {
        return;
    };
    let many = Home::new("sequential_and_parallel_imports_give_identical_layers (second home)").unwrap();
    let layers = five_layers();
    let work = scratch();
    let image = docker_save(&work.path().join("image.tar"), &[("five:1", &layers)]);
    let a = one.import(&image, 1).ok().json();
    let b = many.import(&image, 5).ok().json();
    assert_eq!(a["images"], b["images"], "the same report");
    let (ta, tb) = (home_trees(&one), home_trees(&many));
    assert_eq!(ta.len(), 5);
    assert_eq!(ta, tb, "the same layers, entry for entry");
    // The knob is checked.
    let bad = Run::from(
        one.cmd(&["import", image.to_str().unwrap()])
            .env(JOBS, "lots")
            .output()
            .unwrap(),
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("OVERLAY2_IMPORT_JOBS=\"lots\""), "{}", bad.stderr);
    one.assert_clean();
    many.assert_clean();
}

#[test]
fn a_corrupt_middle_layer_rolls_the_whole_image_back() {
    let Some(home) = Home::new("a_corrupt_middle_layer_rolls_the_whole_image_back") else {
        return;
    };
    let work = scratch();
    let mut layers = five_layers();
    // Layer 4 is big: it is still being applied when layer 3 fails, and
    // is stopped ("cancelled"), which must not be what is reported.
    layers[3] = Tar::new().filler("big", 1000, 4000, 7).done();
    let ids = chain_ids(&layers);
    let blobs: Vec<Vec<u8>> = layers.iter().map(|l| gzip(l)).collect();
    // Layer 3's blob, changed where it still decodes (the gzip CRC).
    let mut bad = blobs[2].clone();
    let n = bad.len();
    bad[n - 6] ^= 1;
    let bad_name = format!("blobs/sha256/{}", sha256(&blobs[2]));
    let (good_digest, bad_digest) = (digest(&blobs[2]), digest(&bad));

    // Into an empty home, and into one that has layer 1 already (which
    // must stay, and not be left `committed`).
    for before in [Vec::new(), vec![ids[0].clone()]] {
        if !before.is_empty() {
            let dir = oci_dir(&work.path().join("base"), &blobs[..1], &layers[..1]);
            home.import(&dir, 1).ok();
            assert_eq!(home.layers(), before);
        }
        let dir = oci_dir(&work.path().join(format!("bad{}", before.len())), &blobs, &layers);
        std::fs::write(dir.join(&bad_name), &bad).unwrap();
        let started = Instant::now();
        let r = home.import(&dir, 5);
        eprintln!("refused in {:?}: {}", started.elapsed(), r.stderr.trim());
        assert_eq!(r.code, 1, "{}", r.stderr);
        for needle in [
            "layer 3 of 5",
            bad_name.as_str(),
            "does not match its digest",
            &good_digest,
            &bad_digest,
        ] {
            assert!(r.stderr.contains(needle), "stderr should name {needle:?}: {}", r.stderr);
        }
        assert!(!r.stderr.contains("cancelled"), "{}", r.stderr);
        assert_eq!(r.json()["exit_code"], json!(1));
        assert_eq!(home.layers(), before, "only what was there before");
        assert_eq!(home.markers(), Vec::<String>::new());
        if let Some(base) = before.first() {
            assert!(
                !home.path.join(base).join("committed").exists(),
                "the base is not left committed"
            );
        }
        home.assert_clean();
    }
    // Layers 1 and 2 are small and commit before layer 3 fails: they go
    // too. The good image then imports whole.
    let good = oci_dir(&work.path().join("good"), &blobs, &layers);
    let j = home.import(&good, 5).ok().json();
    assert_eq!(j["top"], json!(ids[4]));
    home.assert_clean();
}

#[test]
fn kill_9_during_a_parallel_import_leaves_a_repairable_home() {
    let Some(home) = Home::new("kill_9_during_a_parallel_import_leaves_a_repairable_home") else {
        return;
    };
    let reference = Home::new("kill_9_during_a_parallel_import_leaves_a_repairable_home (reference)").unwrap();
    // A small base (it commits early), then big layers applied together.
    let mut layers = vec![Tar::new().dir("etc").file("etc/base", b"base\n").done()];
    for i in 1..4u64 {
        layers.push(Tar::new().filler(&format!("big{i}"), 1000, 4000, i).done());
    }
    let ids = chain_ids(&layers);
    let work = scratch();
    let image = docker_save(&work.path().join("image.tar"), &[("big:1", &layers)]);
    reference.import(&image, 1).ok();
    let want = home_trees(&reference);

    for attempt in ["repair", "reimport"] {
        let mut child = home.cmd(&["import", image.to_str().unwrap()]);
        let child = KillOnDrop(
            child
                .env(JOBS, "3")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        // Wait until several layers are being applied at once, the base
        // committed below them.
        let started = Instant::now();
        let seen = loop {
            let applying = home.applying();
            if applying.len() >= 2 && home.path.join(&ids[0]).exists() && !home.markers().contains(&ids[0]) {
                break applying.len();
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "never saw two layers applied at once above a committed base"
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        drop(child); // SIGKILL
        // The applies cut short left their scratch.
        let in_flight = home.applying();
        let marked = home.markers();
        eprintln!(
            "{attempt}: saw {seen} layers applying at once; killed with {} in flight, markers on {}",
            in_flight.len(),
            marked.len()
        );
        // Layers commit bottom up: the marked ones are the top of the chain,
        // the layers in flight among them.
        assert!(!marked.is_empty());
        let first = ids.iter().position(|id| marked.contains(id)).unwrap();
        assert!(first >= 1, "the base was committed");
        let mut top: Vec<String> = ids[first..].to_vec();
        top.sort();
        assert_eq!(marked, top, "every layer from the lowest unfinished one up is marked");
        assert!(in_flight.iter().all(|id| marked.contains(id)));
        // No partly applied layer is visible: a marked layer is empty (the
        // apply swaps its tree in at the end), the others are whole.
        for id in home.layers() {
            let tree = snapshot(&home.diff(&id));
            if marked.contains(&id) {
                assert!(tree.is_empty() || tree == want[&id], "layer {id} partly applied");
            } else {
                assert_eq!(tree, want[&id], "committed layer {id}");
            }
        }

        let c = home.run(&["--json", "check"]);
        assert_eq!(c.code, 1, "{}", c.stdout);
        let problems = c.json()["problems"].as_array().unwrap().clone();
        for id in &marked {
            assert!(
                problems
                    .iter()
                    .any(|p| p["kind"] == json!("InterruptedImport")
                        && p["message"].as_str().unwrap().contains(id.as_str())),
                "{id} reported: {problems:?}"
            );
        }
        if attempt == "repair" {
            let r = home.run(&["--json", "check", "--repair"]).ok().json();
            assert_eq!(r["clean"], json!(true), "{r}");
            let mut left: Vec<String> = ids[..first].to_vec();
            left.sort();
            assert_eq!(
                home.layers(),
                left,
                "repair removes the marked layers, keeps the committed ones"
            );
            home.assert_clean();
            let j = home.import(&image, 3).ok().json();
            let created: Vec<bool> = j["images"][0]["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["created"].as_bool().unwrap())
                .collect();
            assert_eq!(created, (0..ids.len()).map(|i| i >= first).collect::<Vec<_>>());
        } else {
            // Without a repair: the import rebuilds the marked layers itself
            // (the killed applies' scratch is inside them and goes too).
            let r = home.import(&image, 3).ok();
            assert!(r.stderr.contains("rebuilding layer"), "{}", r.stderr);
        }
        assert_eq!(home_trees(&home), want, "{attempt}: the re-import is whole");
        home.assert_clean();
        // Again from a home with only the base, for the next attempt.
        for id in ids[1..].iter().rev() {
            home.run(&["rm", id]).ok();
        }
    }
}
