//! `overlay2 check --repair` never throws away what it cannot rebuild: a
//! layer whose `lower` is corrupt (a container's only copy of its files)
//! goes to `HOME/quarantine/` with what stacks on it, `check` lists it, and
//! only `overlay2 cleanup --quarantine` deletes it. Through the real
//! binary on a real home; needs root (the driver's kernel backend).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{BIN, Out, run};
use serde_json::json;

fn overlay2(home: &Path, args: &[&str]) -> Out {
    run(Command::new(BIN)
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("OVERLAY2_HOME"))
}

#[test]
fn a_corrupt_layer_is_quarantined_listed_and_deleted_only_on_request() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root (the kernel backend's home)");
        return;
    }
    let dir = common::temp_dir("overlay2-repair-");
    let home = dir.path().join("home");
    let status = overlay2(&home, &["status"]);
    if !status.success() {
        eprintln!("skipped: the driver cannot run here: {}", status.stderr.trim());
        return;
    }
    overlay2(&home, &["create", "image"]).ok();
    overlay2(&home, &["create", "box", "--parent", "image"]).ok();
    overlay2(&home, &["create", "top", "--parent", "box"]).ok();
    std::fs::write(home.join("box/diff/work.txt"), b"unsaved\n").unwrap();
    std::fs::write(home.join("box/lower"), b"garbage").unwrap();

    let c = overlay2(&home, &["--json", "check"]);
    assert_eq!(c.status.code(), Some(1), "{}", c.failure());
    let j = c.json();
    assert_eq!(j["problems"][0]["kind"], json!("CorruptLower"), "{j}");
    assert_eq!(j["quarantined"], json!([]), "check alone changes nothing");

    let r = overlay2(&home, &["check", "--repair"]).ok();
    assert!(
        r.stdout
            .contains("moved to the quarantine: layer \"box\" has a corrupt lower file"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("cleanup --quarantine"), "{}", r.stdout);
    assert_eq!(
        std::fs::read(home.join("quarantine/box/diff/work.txt")).unwrap(),
        b"unsaved\n"
    );
    let j = overlay2(&home, &["--json", "check"]).ok().json();
    assert_eq!(j["clean"], json!(true), "{j}");
    let names: Vec<&str> = j["quarantined"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["box", "top"], "{j}");
    let ls = overlay2(&home, &["--json", "ls"]).ok().json();
    let ids: Vec<&str> = ls["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["image"], "quarantined layers are not layers: {ls}");
    // `cleanup` alone keeps them.
    overlay2(&home, &["cleanup"]).ok();
    assert!(home.join("quarantine/box").exists());
    let out = overlay2(&home, &["--json", "cleanup", "--quarantine"]).ok().json();
    assert_eq!(out["deleted_from_quarantine"], json!(["box", "top"]), "{out}");
    assert!(!home.join("quarantine").exists());
    let j = overlay2(&home, &["--json", "check"]).ok().json();
    assert_eq!((j["clean"].clone(), j["quarantined"].clone()), (json!(true), json!([])));
}
