//! End to end through a real containerd: `overlay2 serve containerd` as
//! containerd's proxy snapshotter `overlay2-rs`, driven with `ctr` and
//! read back with `overlay2 ls` / `check`.
//!
//! What is tested (one `#[test]` each):
//! - `ctr_run_prints_file`: a docker-save image (`overlay2 sample-image`,
//!   busybox inside) imported and unpacked into our snapshotter; `ctr run`
//!   prints the file of its third layer, sees the whiteout of layer 2
//!   (`/etc/issue` gone) and its opaque dir (only `ONLY-THIS-ONE`); after
//!   containerd's GC the home holds one layer per snapshot, in one chain,
//!   and `overlay2 check` (server stopped) is clean.
//! - `container_usage_then_gc_empties_home`: a container that writes 1 MiB
//!   (`ctr containers create` + `ctr tasks start`): `ctr snapshots usage`
//!   and `info` see its active snapshot grow; removing the container and
//!   the image (`ctr images rm --sync`, containerd's GC) leaves a home with
//!   no layer, `ctr snapshots ls` empty, `check` clean.
//! - `deepest_mountable_stack`: an image exactly as deep as containerd's
//!   mount code can mount from this home
//!   (`overlay_snapshotter::containerd_depth_limit`, at least 128 layers),
//!   unpacked and run; its first and last layers' files are read. One
//!   layer more still unpacks, but the container's Prepare is refused
//!   ("max depth exceeded") instead of failing in containerd's mount.
//! - `server_killed_mid_unpack`: the server SIGKILLed in the middle of a
//!   40-layer unpack and restarted on the same home and socket; the import
//!   retried succeeds, the image runs, and after its removal the home is
//!   empty and `check` clean.
//! - `concurrent_imports_and_runs`: ten different images (sharing their
//!   lower layers) imported at once, then ten `ctr run --rm` at once.
//!   (Most of its ~20 s is containerd's content store: the ten imports
//!   write the same busybox blob under one ingest ref, one at a time.)
//! - `guard_cleans_up_after_a_panic`: the harness itself: a test that
//!   panics with a detached container running leaves no process, cgroup
//!   dir, mount or directory behind.
//!
//! The rig (containerd and our server in a private mount namespace, torn
//! down by pid) is `containerd/harness.rs`, shared with `containerd_remap.rs`.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;
#[path = "containerd/harness.rs"]
mod harness;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{CMD_TIMEOUT, Cgroups, Out, Running, alive, run, spawn, wait_for};
use harness::{Rig, SNAPSHOTTER, TOOLS, rig_or_skip};

/// `ctr`'s sizes ("0 B", "36.0 KiB", "1.0 MiB") in bytes, and the
/// rounding of the printed form.
fn parse_size(s: &str) -> (f64, f64) {
    let (num, unit) = s.trim().split_once(' ').unwrap_or_else(|| panic!("size {s:?}"));
    let scale = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => panic!("size unit {unit:?} in {s:?}"),
    };
    let n: f64 = num.parse().unwrap_or_else(|e| panic!("size {s:?}: {e}"));
    let rounding = if unit == "B" { 0.0 } else { 0.05 * scale };
    (n * scale, rounding)
}

/// The layers of `ls --json` form one chain (one root, no forks).
#[track_caller]
fn assert_one_chain(layers: &[Value]) {
    let ids: Vec<&str> = layers.iter().map(|l| l["id"].as_str().unwrap()).collect();
    let parents: Vec<Option<&str>> = layers.iter().map(|l| l["parent"].as_str()).collect();
    assert_eq!(
        parents.iter().filter(|p| p.is_none()).count(),
        1,
        "one root: {layers:?}"
    );
    for p in parents.iter().flatten() {
        assert!(ids.contains(p), "parent {p} is not a layer: {layers:?}");
    }
    let mut named: Vec<&str> = parents.iter().flatten().copied().collect();
    named.sort_unstable();
    named.dedup();
    assert_eq!(named.len(), layers.len() - 1, "a fork in the chain: {layers:?}");
}

// ------------------------------------------------------------------ tests

const ONE: &str = "docker.io/o2rs/one:latest";

#[test]
fn ctr_run_prints_file() {
    let mut rig = rig_or_skip!("ctr_run_prints_file");
    let tar = rig.sample_image("one.tar", "o2rs/one:latest", 0);
    let out = run(&mut rig.import_cmd(&tar, "docker.io/o2rs/one")).ok();
    eprintln!(
        "[ctr_run_prints_file] import took {:?}: {}",
        out.took,
        out.stdout.trim()
    );

    let out = rig.run_rm(ONE, "hello", &["/usr/local/bin/hello"]).ok();
    assert_eq!(out.stdout.trim(), "hello from layer 3", "stderr: {}", out.stderr);

    let script = "if [ -e /etc/issue ]; then echo issue-present; else echo issue-absent; fi; \
                  ls -A /usr/share/common-licenses";
    let out = rig.run_rm(ONE, "look", &["sh", "-c", script]).ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, ["issue-absent", "ONLY-THIS-ONE"], "stderr: {}", out.stderr);

    // Committed snapshots of the image; the containers' active snapshots
    // go when containerd's GC (scheduled, not synchronous) removes them.
    let snaps = rig.snapshots();
    assert_eq!(snaps.len(), 3, "ctr snapshots ls: {snaps:?}");
    for (key, _, kind) in &snaps {
        assert!(key.starts_with("sha256:"), "{snaps:?}");
        assert_eq!(kind, "Committed", "{snaps:?}");
    }
    let (layers, waited) = wait_for("GC of the containers' snapshots", Duration::from_secs(15), || {
        let layers = rig.layers();
        (layers.len() == snaps.len()).then_some(layers)
    });
    eprintln!("[ctr_run_prints_file] one layer per snapshot {waited:?} after the runs");
    assert_one_chain(&layers);
    rig.assert_no_mounts_in_ns();

    // While the server holds the database, check cannot read it.
    let out = rig.overlay2(&["--json", "check"]);
    eprintln!(
        "[ctr_run_prints_file] check while serving: exit {}: {}",
        out.status,
        out.stdout.trim()
    );
    rig.check_clean();
    rig.finish();
}

#[test]
fn container_usage_then_gc_empties_home() {
    const T: &str = "container_usage_then_gc_empties_home";
    let mut rig = rig_or_skip!("container_usage_then_gc_empties_home");
    let tar = rig.sample_image("one.tar", "o2rs/one:latest", 0);
    run(&mut rig.import_cmd(&tar, "docker.io/o2rs/one")).ok();
    let snaps = rig.snapshots();
    let parents: Vec<&str> = snaps.iter().map(|s| s.1.as_str()).collect();
    let top = snaps
        .iter()
        .find(|s| !parents.contains(&s.0.as_str()))
        .map(|s| s.0.clone())
        .unwrap();

    rig.ctr(&[
        "containers",
        "create",
        "--snapshotter",
        SNAPSHOTTER,
        ONE,
        "writer",
        "dd",
        "if=/dev/zero",
        "of=/big",
        "bs=1024",
        "count=1024",
    ])
    .ok();
    let usage = |rig: &Rig| {
        let out = rig
            .ctr(&["snapshots", "--snapshotter", SNAPSHOTTER, "usage", "writer"])
            .ok();
        let line = out
            .stdout
            .lines()
            .nth(1)
            .unwrap_or_else(|| panic!("usage: {}", out.stdout));
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f[0], "writer", "usage: {}", out.stdout);
        (parse_size(&format!("{} {}", f[1], f[2])), f[3].parse::<u64>().unwrap())
    };
    let ((before, _), inodes_before) = usage(&rig);
    let info = rig
        .ctr(&["snapshots", "--snapshotter", SNAPSHOTTER, "info", "writer"])
        .ok()
        .json();
    assert_eq!(info["Kind"], "Active", "{info}");
    assert_eq!(info["Name"], "writer", "{info}");
    assert_eq!(info["Parent"].as_str(), Some(top.as_str()), "{info}");

    let out = rig.ctr(&["tasks", "start", "writer"]).ok();
    assert!(out.stderr.contains("1024+0 records out"), "dd: {}", out.stderr);
    let ((after, rounding), inodes_after) = usage(&rig);
    eprintln!(
        "[{T}] usage of the container's snapshot: {before} B / {inodes_before} inodes -> ~{after} B / {inodes_after} inodes"
    );
    assert!(
        after - before + rounding >= 1024.0 * 1024.0,
        "usage grew by {} bytes only",
        after - before
    );
    assert!(inodes_after > inodes_before, "inodes {inodes_before} -> {inodes_after}");

    // Our view: the image's three layers plus the container's, which
    // holds the file, on top of the image's top layer.
    let layers = rig.layers();
    assert_eq!(layers.len(), 4, "{layers:?}");
    assert_one_chain(&layers);
    let top_layer = layers
        .iter()
        .find(|l| layers.iter().all(|o| o["parent"] != l["id"]))
        .unwrap();
    assert!(
        top_layer["size"].as_u64().unwrap_or(0) >= 1024 * 1024,
        "the container's layer (the top) should hold the 1 MiB file: {layers:?}"
    );

    // `ctr tasks start` (attached) deletes the task when it exits; if a
    // task is left, remove it (it is containerd's, not the snapshotter's).
    if rig.ctr(&["tasks", "ls", "-q"]).ok().stdout.contains("writer") {
        eprintln!("[{T}] the exited task was left: removing it");
        rig.ctr(&["tasks", "rm", "writer"]).ok();
    }
    rig.ctr(&["containers", "rm", "writer"]).ok();
    rig.remove_images_and_wait_empty(&[ONE]);
    rig.assert_no_mounts_in_ns();
    rig.check_clean();
    rig.finish();
}

#[test]
fn deepest_mountable_stack() {
    const T: &str = "deepest_mountable_stack";
    let mut rig = rig_or_skip!("deepest_mountable_stack");
    let home = rig.home();
    // What the snapshotter enforces: `index=off` goes into the options
    // when the kernel has the parameter (as the server's probe decides).
    let index_off = Path::new("/sys/module/overlay/parameters/index").exists();
    let limit = overlay_snapshotter::containerd_depth_limit(&home, index_off)
        .expect("home path too long for any layer")
        .get();
    assert!(
        limit >= 128,
        "home {} allows only {limit} layers: use a shorter TMPDIR",
        home.display()
    );
    let extra = limit - 3;
    eprintln!(
        "[{T}] home {} ({} bytes), index=off {index_off}: {limit} layers in the image ({extra} extra), \
         {limit} lowers below the container's snapshot",
        home.display(),
        home.as_os_str().len()
    );
    let tar = rig.sample_image("deep.tar", "o2rs/deep:latest", extra);
    let out = run(&mut rig.import_cmd(&tar, "docker.io/o2rs/deep")).ok();
    eprintln!("[{T}] import of {limit} layers took {:?}", out.took);
    assert_eq!(rig.layer_dirs(), limit);

    let last = format!("/layers/{}", extra - 1);
    let out = rig
        .run_rm("docker.io/o2rs/deep:latest", "deep", &["cat", "/layers/0", &last])
        .ok();
    eprintln!("[{T}] ctr run --rm on {limit} layers took {:?}", out.took);
    assert_eq!(
        out.stdout,
        format!("layer 4\nlayer {limit}\n"),
        "stderr: {}",
        out.stderr
    );
    let out = rig
        .run_rm("docker.io/o2rs/deep:latest", "deep2", &["/usr/local/bin/hello"])
        .ok();
    assert_eq!(out.stdout.trim(), "hello from layer 3");

    // One layer more: it unpacks (its extraction snapshot has `limit`
    // lowers) but a container on it would have `limit + 1`, which
    // containerd could not mount: the snapshotter refuses the Prepare.
    let tar = rig.sample_image("deeper.tar", "o2rs/deeper:latest", extra + 1);
    let out = run(&mut rig.import_cmd(&tar, "docker.io/o2rs/deeper")).ok();
    eprintln!(
        "[{T}] import of {} layers (sharing {limit}) took {:?}",
        limit + 1,
        out.took
    );
    let out = rig.run_rm("docker.io/o2rs/deeper:latest", "deeper", &["true"]);
    eprintln!(
        "[{T}] ctr run on {} layers: {}: {}",
        limit + 1,
        out.status,
        out.stderr.trim()
    );
    assert!(!out.success(), "a container {} layers deep ran", limit + 1);
    assert!(
        out.stderr.contains("max depth exceeded"),
        "not the snapshotter's refusal: {}",
        out.stderr
    );

    rig.remove_images_and_wait_empty(&["docker.io/o2rs/deep:latest", "docker.io/o2rs/deeper:latest"]);
    rig.assert_no_mounts_in_ns();
    rig.check_clean();
    rig.finish();
}

#[test]
fn server_killed_mid_unpack() {
    const T: &str = "server_killed_mid_unpack";
    const IMAGE: &str = "docker.io/o2rs/forty:latest";
    let mut rig = rig_or_skip!("server_killed_mid_unpack");
    let tar = rig.sample_image("forty.tar", "o2rs/forty:latest", 37);

    let import = spawn(&mut rig.import_cmd(&tar, "docker.io/o2rs/forty"));
    // Kill inside a call if we can: once a few layers are committed, as
    // soon as the driver's staging dir of a layer being created shows;
    // failing that, between calls a few layers later.
    let start = Instant::now();
    let (at, during) = loop {
        let n = rig.layer_dirs();
        let staging = fs::read_dir(rig.home()).ok().and_then(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| n.starts_with(overlay_driver::STAGING_PREFIX))
        });
        if n >= 5 && staging.is_some() {
            break (n, staging);
        }
        if n >= 12 {
            break (n, None);
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the unpack did not progress");
        thread::sleep(Duration::from_millis(1));
    };
    rig.kill_server();
    let first = import.wait(CMD_TIMEOUT);
    eprintln!(
        "[{T}] server killed with {at} layer dirs in the home, {}; import: {} after {:?}: {}",
        during.map_or_else(|| "between calls".to_owned(), |d| format!("while {d} existed")),
        first.status,
        first.took,
        first.stderr.trim()
    );
    assert!(
        !first.success(),
        "the import succeeded although the server was killed at layer {at}: kill came too late"
    );

    rig.start_server();
    // containerd reconnects to the proxy with a backoff (up to 3 s).
    let start = Instant::now();
    let mut attempts = 0;
    let retried = loop {
        attempts += 1;
        let out = run(&mut rig.import_cmd(&tar, "docker.io/o2rs/forty"));
        if out.success() || start.elapsed() > Duration::from_secs(30) {
            break out;
        }
        eprintln!("[{T}] retry {attempts} failed: {}", out.stderr.trim());
        thread::sleep(Duration::from_millis(500));
    };
    retried.ok();
    eprintln!(
        "[{T}] import succeeded on attempt {attempts}, {:?} after the restart",
        start.elapsed()
    );

    let out = rig.run_rm(IMAGE, "after-crash", &["cat", "/layers/36"]).ok();
    assert_eq!(out.stdout, "layer 40\n");
    let snaps = rig.snapshots();
    assert_eq!(snaps.len(), 40, "{snaps:?}");

    rig.remove_images_and_wait_empty(&[IMAGE]);
    rig.assert_no_mounts_in_ns();
    rig.check_clean();
    rig.finish();
}

#[test]
fn concurrent_imports_and_runs() {
    const T: &str = "concurrent_imports_and_runs";
    const N: usize = 10;
    let mut rig = rig_or_skip!("concurrent_imports_and_runs");
    let tars: Vec<PathBuf> = (0..N)
        .map(|i| rig.sample_image(&format!("t{i}.tar"), &format!("o2rs/t{i}:latest"), i))
        .collect();
    let images: Vec<String> = (0..N).map(|i| format!("docker.io/o2rs/t{i}:latest")).collect();

    // containerd serialises the ten writes of the shared busybox blob
    // (ingest ref `tar-<diff id>/layer.tar` "locked"); the unpacks into
    // our snapshotter then race on the shared lower layers.
    let start = Instant::now();
    let imports: Vec<Running> = (0..N)
        .map(|i| spawn(&mut rig.import_cmd(&tars[i], &format!("docker.io/o2rs/t{i}"))))
        .collect();
    let outs: Vec<Out> = imports.into_iter().map(|r| r.wait(CMD_TIMEOUT)).collect();
    let failed: Vec<String> = outs
        .iter()
        .filter(|o| !o.success())
        .map(|o| format!("`{}`: {}: {}", o.what, o.status, o.stderr.trim()))
        .collect();
    assert!(failed.is_empty(), "concurrent imports failed:\n{}", failed.join("\n"));
    eprintln!("[{T}] {N} concurrent imports took {:?}", start.elapsed());
    // Shared lower layers are one snapshot each: 3 base + the extra ones.
    let snaps = rig.snapshots();
    assert_eq!(snaps.len(), 3 + (N - 1), "{snaps:?}");

    let start = Instant::now();
    let runs: Vec<Running> = (0..N)
        .map(|i| {
            let id = format!("run{i}");
            let script = if i == 0 {
                "/usr/local/bin/hello".to_owned()
            } else {
                format!("cat /layers/{}", i - 1)
            };
            spawn(&mut rig.ctr_cmd(&[
                "run",
                "--rm",
                "--snapshotter",
                SNAPSHOTTER,
                &images[i],
                &id,
                "sh",
                "-c",
                &script,
            ]))
        })
        .collect();
    let outs: Vec<Out> = runs.into_iter().map(|r| r.wait(CMD_TIMEOUT)).collect();
    let mut failed = Vec::new();
    for (i, o) in outs.iter().enumerate() {
        let want = if i == 0 {
            "hello from layer 3\n".to_owned()
        } else {
            format!("layer {}\n", i + 3)
        };
        if !o.success() || o.stdout != want {
            failed.push(format!(
                "`{}`: {}: stdout {:?} (want {want:?}), stderr: {}",
                o.what,
                o.status,
                o.stdout,
                o.stderr.trim()
            ));
        }
    }
    assert!(failed.is_empty(), "concurrent runs failed:\n{}", failed.join("\n"));
    eprintln!("[{T}] {N} concurrent runs took {:?}", start.elapsed());

    let refs: Vec<&str> = images.iter().map(String::as_str).collect();
    rig.remove_images_and_wait_empty(&refs);
    rig.assert_no_mounts_in_ns();
    rig.check_clean();
    rig.finish();
}

/// The harness: a test panicking with a detached container running (a
/// shim and a container process that are not our children) leaves nothing.
#[test]
fn guard_cleans_up_after_a_panic() {
    const T: &str = "guard_cleans_up_after_a_panic";
    if common::skip(T, "containerd, mounts, cgroups", TOOLS) {
        return;
    }
    // (mount ns, containerd namespace, directory, container pid)
    let seen: Mutex<Option<(String, String, PathBuf, i32)>> = Mutex::new(None);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let rig = Rig::start(T);
        let tar = rig.sample_image("one.tar", "o2rs/one:latest", 0);
        run(&mut rig.import_cmd(&tar, "docker.io/o2rs/one")).ok();
        rig.ctr(&[
            "run",
            "-d",
            "--snapshotter",
            SNAPSHOTTER,
            ONE,
            "sleeper",
            "sleep",
            "1000",
        ])
        .ok();
        let tasks = rig.ctr(&["tasks", "ls"]).ok().stdout;
        let pid: i32 = tasks
            .lines()
            .find(|l| l.starts_with("sleeper"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("no running task: {tasks}"));
        assert!(alive(pid));
        assert!(!rig.mounts_in_ns().is_empty(), "the container's rootfs is not mounted");
        *seen.lock().unwrap() = Some((rig.nsh.mnt_ns.clone(), rig.ns.clone(), rig.dir().to_owned(), pid));
        panic!("deliberate panic with a container running");
    }));
    let err = result.expect_err("the closure should have panicked");
    let msg = err
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| err.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(msg.starts_with("deliberate"), "panicked for another reason: {msg}");
    let (mnt_ns, ns, dir, pid) = seen.lock().unwrap().take().unwrap();

    assert!(!alive(pid), "the container process {pid} survived");
    let in_ns: Vec<String> = fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            fs::read_link(e.path().join("ns/mnt")).is_ok_and(|l| l.to_string_lossy() == mnt_ns)
                && e.file_name().to_str().and_then(|p| p.parse().ok()).is_some_and(alive)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(in_ns.is_empty(), "processes left in the namespace: {in_ns:?}");
    let cgroups = Cgroups::new(&ns).dirs();
    assert!(cgroups.is_empty(), "cgroup dirs left: {cgroups:?}");
    common::assert_no_host_mounts(&dir);
    let d = dir.display();
    assert!(!dir.exists(), "{d} was not removed");
}
