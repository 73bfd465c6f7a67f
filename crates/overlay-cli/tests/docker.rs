//! End to end through a real dockerd (20.10, the last line that loads
//! graphdriver plugins; Debian 12's `docker.io`): `overlay2 serve docker`
//! as dockerd's storage driver, driven with the `docker` CLI and read back
//! with `overlay2 ls` / `check`.
//!
//! What is tested (one `#[test]` each):
//! - `load_run_diff_cp_commit_save_export_rmi`: a docker-save image
//!   (`overlay2 sample-image`, busybox inside) loaded (image id = its
//!   config digest, its three diff ids); `docker run` sees layer 3's file,
//!   layer 2's whiteout (`/etc/issue` gone) and opaque dir (only
//!   `ONLY-THIS-ONE`); a container that adds, deletes and changes a file:
//!   `docker diff` lists exactly what dockerd's own overlay2 lists for it
//!   (see [`WRITER_DIFF`]); `docker cp` in and out of the stopped
//!   container; `docker commit` and a run of the new image; `docker save`
//!   gives back the loaded layer tars byte for byte; `docker export` holds
//!   the container's files; `docker info` shows the driver's status; after
//!   `docker rm` / `rmi` the home has no layer, no layer is mounted and
//!   `overlay2 check` is clean.
//! - `restarts_keep_images_containers_and_live_mounts`: dockerd stopped and
//!   restarted (plugin running): the image and a stopped container are
//!   still there and it starts again on its own layer; then with
//!   `--live-restore`, a running container survives a dockerd restart,
//!   same pid, its rootfs still mounted once (dockerd's restore calls
//!   Get+Put on it: that Put must not unmount).
//! - `plugin_killed_and_restarted_under_dockerd`: the plugin SIGKILLed and
//!   started again while dockerd runs (dockerd does not Init it again):
//!   the next commands work (a new container, `docker diff` of an old
//!   one), the rootfs a running container had mounted before the kill is
//!   adopted (still mounted once, unmounted when the container goes), and
//!   in the end nothing is mounted.
//! - `concurrent_runs_and_loads`: ten `docker run --rm` at once, then two
//!   `docker load`s at once of images sharing their lower layers.
//! - `adopt_a_builtin_overlay2_data_root_and_back`: a data root made by
//!   dockerd's built-in overlay2 (an image loaded, two stopped containers
//!   that wrote files, an image committed) is handed to the plugin with
//!   `overlay2 docker-adopt` (refused, changing nothing, while a container
//!   runs or dockerd does, and on a directory that is not a data root; a
//!   second run does nothing); dockerd on the plugin has the same image
//!   ids and containers without a load, starts a stopped container on its
//!   own layer, `docker diff`s and `cp`s it, runs both images; every layer's
//!   `diff` dir has the device and inode it had (renamed, not copied). A
//!   container run and committed on the plugin, then `docker-adopt --back`:
//!   the built-in overlay2 runs everything again, the plugin's layers
//!   included, still on the same inodes.
//!
//! How dockerd is run, isolated and torn down: [`docker_rig`].
#![allow(clippy::unwrap_used, missing_docs)]

mod common;
#[macro_use]
mod docker_rig;

use std::fs;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{BIN, Out, Running, alive, spawn, wait_for};
use docker_rig::adopt::{adopt_state, container_drivers, diff_inodes};
use docker_rig::image::{SavedImage, tar_files};
use docker_rig::{BUILTIN, DOCKER_TIMEOUT, IMG, sample_image};

/// `/srv/www/about.html`, from layer 2 of the sample image.
const ABOUT: &str = "<p>added by layer 2</p>\n";
/// What the writer container does to the image's files: adds one, deletes
/// one, appends to one.
const WRITER: &str = "echo written > /srv/www/new.txt && rm /srv/www/index.html && echo changed >> /etc/os-release";
/// `docker diff` of the writer container, sorted, as dockerd 20.10's own
/// overlay2 driver prints it (found by running the same container on
/// `--storage-driver overlay2`). Since moby#37313 (Docker 18.06) overlay2's
/// Changes is the naive diff of the container's mount against its
/// `-init` layer's, which lists every parent directory of a change as
/// changed (`/etc`, `/srv`) even when the directory itself is equal.
const WRITER_DIFF: &[&str] = &[
    "A /srv/www/new.txt",
    "C /etc",
    "C /etc/os-release",
    "C /srv",
    "C /srv/www",
    "D /srv/www/index.html",
];

// ------------------------------------------------------------------ tests

#[test]
fn load_run_diff_cp_commit_save_export_rmi() {
    const T: &str = "load_run_diff_cp_commit_save_export_rmi";
    let rig = rig_or_skip!("load_run_diff_cp_commit_save_export_rmi");
    // Checks whose failure does not stop the scenario: reported at the end.
    let mut problems: Vec<String> = Vec::new();

    let tar = sample_image(&rig, "img.tar", IMG, 0);
    let want = SavedImage::read(&tar);
    assert_eq!(want.diff_ids.len(), 3, "{want:?}");
    assert_eq!(
        want.layer_digests, want.diff_ids,
        "sample-image writes plain tars: {want:?}"
    );
    let out = rig.load(&tar, IMG);
    eprintln!("[{T}] docker load took {:?}", out.took);
    let id = rig.docker_ok(&["image", "inspect", "-f", "{{.Id}}", IMG]).stdout;
    assert_eq!(id.trim(), format!("sha256:{}", want.config_digest));
    let layers = rig
        .docker_ok(&["image", "inspect", "-f", "{{json .RootFS.Layers}}", IMG])
        .json();
    assert_eq!(layers, serde_json::json!(want.diff_ids));
    assert_eq!(rig.layers().len(), 3, "one layer per image layer in the home");

    // The image as a container sees it.
    let script = "cat /srv/www/about.html; /usr/local/bin/hello; \
                  if [ -e /etc/issue ]; then echo issue-present; else echo issue-absent; fi; \
                  ls -A /usr/share/common-licenses";
    let out = rig.docker_prints(
        &["run", "--rm", "--network", "none", IMG, "sh", "-c", script],
        &format!("{ABOUT}hello from layer 3\nissue-absent\nONLY-THIS-ONE\n"),
    );
    eprintln!("[{T}] docker run --rm took {:?}", out.took);

    // A container that adds, deletes and changes files.
    let out = rig.docker_ok(&["run", "--name", "writer", "--network", "none", IMG, "sh", "-c", WRITER]);
    eprintln!("[{T}] docker run (writer) took {:?}", out.took);
    assert_eq!(
        rig.layers().len(),
        5,
        "the image's layers, the container's and its -init"
    );
    let diff = rig.diff("writer");
    eprintln!("[{T}] docker diff writer: {diff:?}");
    if diff != WRITER_DIFF {
        problems.push(format!(
            "docker diff writer (sorted):\n  got  {diff:?}\n  want {WRITER_DIFF:?} (dockerd's own overlay2)"
        ));
    }

    // docker cp into the stopped container and back.
    let host_file = rig.dir().join("hostfile");
    fs::write(&host_file, "from the host\n").unwrap();
    rig.docker_ok(&["cp", host_file.to_str().unwrap(), "writer:/srv/www/copied.txt"]);
    let out = rig.docker_ok(&["cp", "writer:/srv/www/copied.txt", "-"]);
    let files = tar_files(&out.raw);
    assert_eq!(
        files.get("copied.txt").map(|c| String::from_utf8_lossy(c).into_owned()),
        Some("from the host\n".to_owned()),
        "docker cp out: {:?}",
        files.keys()
    );

    // docker commit, and a container of the new image.
    let out = rig.docker_ok(&["commit", "writer", "o2plug/new:latest"]);
    eprintln!("[{T}] docker commit took {:?}", out.took);
    rig.docker_prints(
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "o2plug/new:latest",
            "sh",
            "-c",
            "cat /srv/www/new.txt /srv/www/copied.txt; tail -n 1 /etc/os-release; ls /srv/www",
        ],
        "written\nfrom the host\nchanged\nabout.html\ncopied.txt\nnew.txt\n",
    );
    let new_layers = rig
        .docker_ok(&["image", "inspect", "-f", "{{json .RootFS.Layers}}", "o2plug/new:latest"])
        .json();
    let new_layers: Vec<String> = serde_json::from_value(new_layers).unwrap();
    assert_eq!(new_layers.len(), 4, "{new_layers:?}");
    assert_eq!(new_layers[..3], want.diff_ids[..]);

    // docker save gives back what was loaded, byte for byte.
    let saved_path = rig.dir().join("saved.tar");
    let out = rig.docker_ok(&["save", "-o", saved_path.to_str().unwrap(), IMG]);
    eprintln!("[{T}] docker save took {:?}", out.took);
    let saved = SavedImage::read(&saved_path);
    assert_eq!(saved.config_digest, want.config_digest);
    assert_eq!(saved.diff_ids, want.diff_ids);
    assert_eq!(
        saved.layer_digests, want.layer_digests,
        "the saved layer tars differ from the loaded ones"
    );
    assert_eq!(saved.repo_tags, [IMG]);

    // docker export: the container's filesystem.
    let export = rig.dir().join("export.tar");
    rig.docker_ok(&["export", "-o", export.to_str().unwrap(), "writer"]);
    let files = tar_files(&fs::read(&export).unwrap());
    let text = |p: &str| files.get(p).map(|c| String::from_utf8_lossy(c).into_owned());
    assert_eq!(text("srv/www/new.txt").as_deref(), Some("written\n"));
    assert_eq!(text("srv/www/copied.txt").as_deref(), Some("from the host\n"));
    assert_eq!(text("srv/www/about.html").as_deref(), Some(ABOUT));
    assert!(text("etc/os-release").is_some_and(|s| s.ends_with("changed\n")));
    assert!(text("usr/local/bin/hello").is_some());
    for gone in ["srv/www/index.html", "etc/issue", "usr/share/common-licenses/BSD"] {
        assert!(!files.contains_key(gone), "docker export has {gone}");
    }
    assert!(files.contains_key("usr/share/common-licenses/ONLY-THIS-ONE"));

    // docker info shows the driver and its status.
    let info = rig.docker_ok(&["info"]).stdout;
    for want in [
        format!("Storage Driver: {}", rig.name),
        "Backing Filesystem: ".to_owned(),
        "Native Overlay Diff: ".to_owned(),
    ] {
        assert!(info.contains(&want), "docker info lacks {want:?}:\n{info}");
    }

    // Everything removed: no layer left in the home.
    rig.docker_ok(&["rm", "writer"]);
    rig.docker_ok(&["rmi", "o2plug/new:latest", IMG]);
    let left = rig.docker_ok(&["ps", "-aq"]).stdout + &rig.docker_ok(&["images", "-aq"]).stdout;
    assert!(left.trim().is_empty(), "left: {left}");
    rig.remove_all_and_check_empty();
    assert!(problems.is_empty(), "{}\n{}", problems.join("\n"), rig.log_tails());
    rig.finish();
}

#[test]
fn restarts_keep_images_containers_and_live_mounts() {
    const T: &str = "restarts_keep_images_containers_and_live_mounts";
    let mut rig = rig_or_skip!("restarts_keep_images_containers_and_live_mounts");
    let tar = sample_image(&rig, "img.tar", IMG, 0);
    rig.load(&tar, IMG);
    let image_id = rig.docker_ok(&["image", "inspect", "-f", "{{.Id}}", IMG]).stdout;
    let keep = "cat /srv/www/about.html; echo run >> /srv/www/runs";
    rig.docker_prints(
        &["run", "--name", "keep", "--network", "none", IMG, "sh", "-c", keep],
        ABOUT,
    );

    // (a) dockerd restarted, the plugin still running: the image and the
    // stopped container are there, and it runs again on its own layer.
    rig.restart_dockerd(true);
    let again = rig.docker_ok(&["image", "inspect", "-f", "{{.Id}}", IMG]).stdout;
    assert_eq!(again, image_id);
    rig.docker_prints(&["ps", "-a", "--format", "{{.Names}} {{.State}}"], "keep exited\n");
    rig.docker_prints(&["start", "-a", "keep"], ABOUT);
    let out = rig.docker_ok(&["cp", "keep:/srv/www/runs", "-"]);
    assert_eq!(
        tar_files(&out.raw)
            .get("runs")
            .map(|c| String::from_utf8_lossy(c).into_owned()),
        Some("run\nrun\n".to_owned()),
        "the container's layer after the restart"
    );

    // (b) --live-restore: a running container survives a dockerd restart.
    rig.docker_ok(&[
        "run",
        "-d",
        "--name",
        "sleeper",
        "--network",
        "none",
        IMG,
        "sleep",
        "1000",
    ]);
    let pid = rig.docker_ok(&["inspect", "-f", "{{.State.Pid}}", "sleeper"]).stdout;
    let pid: i32 = pid.trim().parse().unwrap();
    let merged = rig.merged_dir("sleeper");
    assert_eq!(
        rig.times_mounted(&merged),
        1,
        "{}: {:?}",
        merged.display(),
        rig.layer_mounts()
    );
    rig.stop_dockerd();
    assert!(alive(pid), "the container died with dockerd (live restore)");
    assert_eq!(rig.times_mounted(&merged), 1, "rootfs mount with dockerd stopped");
    let mount_id = merged
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let puts = rig.plugin_calls("Put", &mount_id);
    let took = rig.start_dockerd(true);
    eprintln!("[{T}] dockerd restarted with a running container in {took:?}");
    assert!(
        rig.plugin_calls("Put", &mount_id) > puts,
        "dockerd's restore did not Get+Put the running container's layer {mount_id}: the test would prove nothing"
    );
    let state = rig
        .docker_ok(&["inspect", "-f", "{{.State.Running}} {{.State.Pid}}", "sleeper"])
        .stdout;
    assert_eq!(state.trim(), format!("true {pid}"), "the container after the restart");
    assert!(alive(pid));
    assert_eq!(
        rig.times_mounted(&merged),
        1,
        "the running container's rootfs after dockerd's restore (Get+Put): {:?}\n{}",
        rig.layer_mounts(),
        rig.log_tails()
    );
    rig.docker_prints(&["exec", "sleeper", "cat", "/srv/www/about.html"], ABOUT);
    rig.docker_ok(&["rm", "-f", "sleeper"]);
    assert_eq!(
        rig.times_mounted(&merged),
        0,
        "rootfs of the removed container still mounted"
    );
    assert!(!alive(pid));

    rig.remove_all_and_check_empty();
    rig.finish();
}

#[test]
fn plugin_killed_and_restarted_under_dockerd() {
    const T: &str = "plugin_killed_and_restarted_under_dockerd";
    let mut rig = rig_or_skip!("plugin_killed_and_restarted_under_dockerd");
    let tar = sample_image(&rig, "img.tar", IMG, 0);
    rig.load(&tar, IMG);
    rig.docker_ok(&["run", "--name", "writer", "--network", "none", IMG, "sh", "-c", WRITER]);
    rig.docker_ok(&[
        "run",
        "-d",
        "--name",
        "sleeper",
        "--network",
        "none",
        IMG,
        "sleep",
        "1000",
    ]);
    let merged = rig.merged_dir("sleeper");
    assert_eq!(rig.times_mounted(&merged), 1, "{:?}", rig.layer_mounts());

    rig.kill_plugin();
    rig.start_plugin();
    eprintln!("[{T}] plugin restarted; dockerd was not restarted (no new Init)");

    // The next commands work.
    let out = rig.docker_prints(
        &["run", "--rm", "--network", "none", IMG, "cat", "/srv/www/about.html"],
        ABOUT,
    );
    eprintln!("[{T}] first docker run after the restart took {:?}", out.took);
    assert_eq!(rig.diff("writer"), WRITER_DIFF, "docker diff after the plugin restart");
    rig.docker_prints(&["exec", "sleeper", "cat", "/srv/www/about.html"], ABOUT);

    // The mount made before the kill is adopted, not made again.
    let mounts = rig.layer_mounts();
    let mut unique = mounts.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), mounts.len(), "a layer mounted twice: {mounts:?}");
    assert_eq!(rig.times_mounted(&merged), 1, "{mounts:?}");
    rig.docker_ok(&["rm", "-f", "sleeper"]);
    assert_eq!(
        rig.times_mounted(&merged),
        0,
        "the adopted rootfs is still mounted after its container went\n{}",
        rig.log_tails()
    );

    rig.remove_all_and_check_empty();
    rig.finish();
}

#[test]
fn concurrent_runs_and_loads() {
    const T: &str = "concurrent_runs_and_loads";
    const N: usize = 10;
    let rig = rig_or_skip!("concurrent_runs_and_loads");
    let tar = sample_image(&rig, "img.tar", IMG, 0);
    rig.load(&tar, IMG);

    let start = Instant::now();
    let runs: Vec<Running> = (0..N)
        .map(|i| {
            let script = format!("cat /srv/www/about.html; /usr/local/bin/hello; echo {i}");
            spawn(&mut rig.docker_cmd(&["run", "--rm", "--network", "none", IMG, "sh", "-c", &script]))
        })
        .collect();
    let outs: Vec<Out> = runs.into_iter().map(|r| r.wait(DOCKER_TIMEOUT)).collect();
    let failed: Vec<String> = outs
        .iter()
        .enumerate()
        .filter(|(i, o)| !o.success() || o.stdout != format!("{ABOUT}hello from layer 3\n{i}\n"))
        .map(|(_, o)| {
            format!(
                "`{}`: {}: stdout {:?}, stderr: {}",
                o.what,
                o.status,
                o.stdout,
                o.stderr.trim()
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "concurrent runs failed:\n{}\n{}",
        failed.join("\n"),
        rig.log_tails()
    );
    eprintln!("[{T}] {N} concurrent docker run --rm took {:?}", start.elapsed());
    let (_, waited) = wait_for("the containers' layers to go", Duration::from_secs(30), || {
        (rig.layers().len() == 3).then_some(())
    });
    eprintln!("[{T}] home back to the image's 3 layers {waited:?} after");

    // Two loads at once of images sharing their lower layers (the three of
    // IMG and, for b, a's two extra ones).
    let a = sample_image(&rig, "a.tar", "o2plug/a:latest", 2);
    let b = sample_image(&rig, "b.tar", "o2plug/b:latest", 3);
    rig.docker_ok(&["rmi", IMG]);
    let start = Instant::now();
    let loads: Vec<Running> = [&a, &b]
        .iter()
        .map(|t| spawn(&mut rig.docker_cmd(&["load", "-i", t.to_str().unwrap()])))
        .collect();
    let outs: Vec<Out> = loads.into_iter().map(|r| r.wait(DOCKER_TIMEOUT)).collect();
    for o in outs {
        rig.ok(o);
    }
    eprintln!("[{T}] 2 concurrent docker loads took {:?}", start.elapsed());
    assert_eq!(rig.layers().len(), 6, "3 + 3 extra layers, shared ones once");
    rig.docker_prints(
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "o2plug/a:latest",
            "cat",
            "/layers/1",
        ],
        "layer 5\n",
    );
    rig.docker_prints(
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "o2plug/b:latest",
            "cat",
            "/layers/2",
        ],
        "layer 6\n",
    );

    rig.remove_all_and_check_empty();
    rig.finish();
}

#[test]
fn adopt_a_builtin_overlay2_data_root_and_back() {
    const T: &str = "adopt_a_builtin_overlay2_data_root_and_back";
    let mut rig = rig_or_skip!("adopt_a_builtin_overlay2_data_root_and_back", builtin);
    let data = rig.data_root();
    let name = rig.name.clone();

    // 1. Docker's own overlay2: an image, two stopped containers that
    // wrote files, an image committed from one of them.
    let tar = sample_image(&rig, "img.tar", IMG, 0);
    rig.load(&tar, IMG);
    rig.docker_ok(&["run", "--name", "writer", "--network", "none", IMG, "sh", "-c", WRITER]);
    let keep = "cat /srv/www/about.html; echo run >> /srv/www/runs";
    rig.docker_prints(
        &["run", "--name", "keep", "--network", "none", IMG, "sh", "-c", keep],
        ABOUT,
    );
    rig.docker_ok(&["commit", "writer", "o2plug/new:latest"]);
    assert_eq!(rig.diff("writer"), WRITER_DIFF, "docker diff on the built-in overlay2");
    let images = rig.images();
    let containers = rig.containers();
    assert_eq!(images.len(), 2, "{images:?}");
    assert_eq!(containers.len(), 2, "{containers:?}");
    let inodes = diff_inodes(&data.join(BUILTIN));
    assert_eq!(
        inodes.len(),
        3 + 2 * 2 + 1,
        "3 image layers, 2 containers with their -init, 1 committed: {inodes:?}"
    );
    eprintln!(
        "[{T}] on the built-in overlay2 after {:?}: {images:?} {containers:?}",
        rig.started.elapsed()
    );

    // 5. Refused while a layer is mounted (a running container): nothing changes.
    rig.docker_ok(&[
        "run",
        "-d",
        "--name",
        "sleeper",
        "--network",
        "none",
        IMG,
        "sleep",
        "1000",
    ]);
    let before = adopt_state(&data);
    let out = rig.adopt(&data, false);
    assert!(
        !out.success() && out.stderr.contains("is mounted") && out.stderr.contains("stop dockerd"),
        "docker-adopt with a running container: {}",
        out.failure()
    );
    // The data root named relative to the working directory, too: the
    // mount points it looks for are absolute.
    let mut relative = rig.nsh.nsenter("sh");
    relative
        .args([
            "-c",
            r#"cd "$0" && exec "$1" docker-adopt --data-root data --name "$2""#,
        ])
        .arg(rig.dir())
        .arg(BIN)
        .arg(&name);
    let out = common::run(&mut relative);
    assert!(
        !out.success() && out.stderr.contains("is mounted"),
        "docker-adopt with a running container, data root relative: {}",
        out.failure()
    );
    assert_eq!(
        adopt_state(&data),
        before,
        "a refused docker-adopt changed the data root"
    );
    rig.docker_ok(&["rm", "-f", "sleeper"]);
    // ... or while dockerd runs, even with nothing mounted.
    let before = adopt_state(&data);
    let out = rig.adopt(&data, false);
    assert!(
        !out.success() && out.stderr.contains("dockerd is running"),
        "docker-adopt under a running dockerd: {}",
        out.failure()
    );
    assert_eq!(
        adopt_state(&data),
        before,
        "a refused docker-adopt changed the data root"
    );
    // ... and on a directory that is not a data root.
    let not_root = rig.dir().join("not-a-data-root");
    fs::create_dir_all(not_root.join(BUILTIN)).unwrap();
    for dir in [not_root.clone(), rig.dir().join("missing")] {
        let out = rig.adopt(&dir, false);
        assert!(!out.success(), "docker-adopt of {}: {}", dir.display(), out.failure());
        assert!(
            out.stderr.contains("not a Docker data root"),
            "docker-adopt of {}: {}",
            dir.display(),
            out.stderr
        );
    }
    assert!(not_root.join(BUILTIN).is_dir() && !not_root.join(&name).exists());

    // 2. dockerd stopped; handed over to the plugin; a second run does nothing.
    rig.stop_dockerd();
    let state = adopt_state(&data);
    let out = rig.ok(rig.adopt(&data, false)).json();
    assert_eq!(out["from"], BUILTIN, "{out}");
    assert_eq!(out["to"], *name, "{out}");
    assert_eq!(out["containers"], 2, "{out}");
    assert!(!data.join(BUILTIN).exists() && !data.join("image").join(BUILTIN).exists());
    assert!(data.join(&name).is_dir() && data.join("image").join(&name).is_dir());
    assert_eq!(container_drivers(&data), [name.as_str(); 2]);
    // Each config.v2.json: the same document but for `Driver`, the same mode.
    for (c, (after, mode)) in adopt_state(&data).configs {
        let (before, was) = &state.configs[&c];
        let mut want: Value = serde_json::from_slice(before).unwrap();
        want["Driver"] = Value::from(name.as_str());
        assert_eq!(
            serde_json::from_slice::<Value>(&after).unwrap(),
            want,
            "{c}/config.v2.json"
        );
        assert_eq!(mode, *was, "{c}/config.v2.json: mode changed");
    }
    let after = adopt_state(&data);
    let out = rig.ok(rig.adopt(&data, false)).json();
    assert_eq!(out["containers"], 0, "{out}");
    assert!(out["done"][0].as_str().unwrap().contains("already"), "{out}");
    assert_eq!(adopt_state(&data), after, "a second docker-adopt changed something");

    // 3. On the plugin, nothing loaded or pulled: the same images and
    // containers, on the same inodes.
    rig.driver = name.clone();
    rig.start_plugin();
    let took = rig.start_dockerd(false);
    eprintln!("[{T}] dockerd on the plugin {name} up in {took:?}");
    assert_eq!(rig.images(), images, "images on the plugin");
    assert_eq!(rig.containers(), containers, "containers on the plugin");
    rig.docker_prints(&["start", "-a", "keep"], ABOUT);
    assert_eq!(rig.cat("keep", "/srv/www/runs"), "run\nrun\n");
    assert_eq!(rig.cat("writer", "/srv/www/new.txt"), "written\n");
    assert_eq!(rig.diff("writer"), WRITER_DIFF, "docker diff on the plugin");
    rig.docker_prints(
        &["run", "--rm", "--network", "none", IMG, "/usr/local/bin/hello"],
        "hello from layer 3\n",
    );
    rig.docker_prints(
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "o2plug/new:latest",
            "cat",
            "/srv/www/new.txt",
        ],
        "written\n",
    );
    assert_eq!(diff_inodes(&rig.home()), inodes, "the layers moved (copied?)");
    rig.check_clean();
    // Layers the plugin makes, for the way back.
    rig.docker_ok(&[
        "run",
        "--name",
        "onplug",
        "--network",
        "none",
        IMG,
        "sh",
        "-c",
        "echo from-plugin > /srv/www/plug.txt",
    ]);
    rig.docker_ok(&["commit", "onplug", "o2plug/plug:latest"]);
    let onplug_diff = rig.diff("onplug");
    let images = rig.images();
    let containers = rig.containers();
    let inodes_plug = diff_inodes(&rig.home());
    assert_eq!(inodes_plug.len(), inodes.len() + 3, "{inodes_plug:?}");
    assert!(inodes.iter().all(|(k, v)| inodes_plug.get(k) == Some(v)));

    // 4. The way back: dockerd and the plugin stopped, --back, the built-in
    // overlay2 again, the plugin's layers included.
    rig.stop_dockerd();
    rig.stop_plugin();
    let out = rig.ok(rig.adopt(&data, true)).json();
    assert_eq!(out["from"], *name, "{out}");
    assert_eq!(out["to"], BUILTIN, "{out}");
    assert_eq!(out["containers"], 3, "{out}");
    assert!(!data.join(&name).exists() && !data.join("image").join(&name).exists());
    assert_eq!(container_drivers(&data), [BUILTIN; 3]);
    rig.driver = BUILTIN.to_owned();
    let took = rig.start_dockerd(false);
    eprintln!("[{T}] dockerd on the built-in overlay2 again up in {took:?}");
    assert_eq!(rig.images(), images, "images back on the built-in overlay2");
    assert_eq!(rig.containers(), containers, "containers back on the built-in overlay2");
    rig.docker_prints(
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "o2plug/plug:latest",
            "cat",
            "/srv/www/plug.txt",
        ],
        "from-plugin\n",
    );
    rig.docker_prints(&["start", "-a", "keep"], ABOUT);
    assert_eq!(rig.cat("keep", "/srv/www/runs"), "run\nrun\nrun\n");
    assert_eq!(rig.cat("onplug", "/srv/www/plug.txt"), "from-plugin\n");
    assert_eq!(
        rig.diff("writer"),
        WRITER_DIFF,
        "docker diff back on the built-in overlay2"
    );
    assert_eq!(rig.diff("onplug"), onplug_diff, "docker diff of the plugin's container");
    assert_eq!(diff_inodes(&rig.home()), inodes_plug, "the layers moved (copied?)");

    rig.remove_all_and_check_empty();
    rig.finish();
}
