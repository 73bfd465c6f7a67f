//! `overlay2 serve` as a process: the socket is 0600 from the start, a
//! live server's socket is not stolen, SIGTERM stops it cleanly and removes
//! the socket, dockerd's id maps in Init (bad ones refused, naming them,
//! before a home is made; good ones give the layer dirs to the remapped
//! root), a Docker home is not taken over by the snapshotter, and
//! `check --repair` reconciles a snapshotter's database with its layers.
//! Needs root (homes are kernel homes); otherwise each test says so.
#![allow(clippy::unwrap_used, missing_docs)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::server::{Server, post};

use overlay_driver::{CreateOpts, GraphDriver, KernelBackend, Overlay2};

fn root() -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        eprintln!("skipped: needs root (kernel homes)");
    }
    root
}

fn overlay2(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_overlay2"));
    c.arg("--home").arg(home);
    c
}

/// How the tests start servers (the process guard is `common::server`).
impl Server {
    fn start(home: &Path, args: &[&str], socket: &Path) -> Self {
        let mut c = overlay2(home);
        c.args(args).arg("--socket").arg(socket);
        Self::spawn(c, socket)
    }

    /// `overlay2 [--home HOME] serve docker --socket SOCKET`.
    fn start_plugin(home: Option<&Path>, socket: &Path) -> Self {
        let mut c = Command::new(env!("CARGO_BIN_EXE_overlay2"));
        if let Some(home) = home {
            c.arg("--home").arg(home);
        }
        c.args(["serve", "docker", "--socket"])
            .arg(socket)
            .env_remove("OVERLAY2_HOME");
        Self::spawn(c, socket)
    }
}

fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let socket = dir.path().join("run/s.sock");
    (dir, home, socket)
}

#[test]
fn sockets_are_private_and_sigterm_stops_cleanly() {
    if !root() {
        return;
    }
    for args in [&["serve", "containerd"][..], &["serve", "docker"][..]] {
        let (_dir, home, socket) = dirs();
        let server = Server::start(&home, args, &socket);
        let mode = std::fs::symlink_metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{args:?}: socket mode {mode:o}");
        // A second server does not steal a live socket.
        let second = overlay2(&home)
            .args(args)
            .arg("--socket")
            .arg(&socket)
            .output()
            .unwrap();
        assert_eq!(second.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&second.stderr);
        // The snapshotter finds its database taken before it gets to the socket.
        assert!(
            err.contains("another server is listening") || err.contains("a snapshotter already serves this home"),
            "{err}"
        );
        let (status, log) = server.stop();
        assert!(status.success(), "{args:?}: {status:?}\n{log}");
        assert!(log.contains("SIGTERM"), "{log}");
        assert!(!socket.exists(), "{args:?}: the socket outlived the server");
        // A stale socket (its server gone) is replaced.
        let stale = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        drop(stale);
        let server = Server::start(&home, args, &socket);
        assert!(server.stop().0.success());
    }
}

#[test]
fn the_snapshotter_does_not_take_over_a_docker_home() {
    if !root() {
        return;
    }
    let (_dir, home, socket) = dirs();
    assert!(
        overlay2(&home)
            .args(["create", "base"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let out = overlay2(&home)
        .args(["serve", "containerd", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no snapshot database") && err.contains("refusing"),
        "{err}"
    );
    assert!(!socket.exists());
    assert!(home.join("base").is_dir(), "the layer is untouched");
}

#[test]
fn check_repair_reconciles_records_and_layers() {
    if !root() {
        return;
    }
    let (_dir, home, socket) = dirs();
    // A snapshotter home with a committed snapshot and a container on it.
    {
        let s = overlay_snapshotter::Snapshotter::open(&home).unwrap();
        s.prepare("default/1/extract", "", Default::default()).unwrap();
        s.commit("default/2/sha256:c", "default/1/extract", Default::default())
            .unwrap();
        s.prepare("default/3/ctr", "default/2/sha256:c", Default::default())
            .unwrap();
    }
    let check = |repair: bool| {
        let mut c = overlay2(&home);
        c.args(["--json", "check"]);
        if repair {
            c.arg("--repair");
        }
        let out = c.output().unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), doc)
    };
    assert_eq!(check(false).0, Some(0), "{}", check(false).1);
    // The CLI refuses to add layers to containerd's home...
    let out = overlay2(&home).args(["create", "mine"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("containerd snapshotter's home"));
    // ...so make an orphan the way a crash would: a layer without a record.
    let driver = Overlay2::new(KernelBackend::new(&home).unwrap(), &[] as &[&str]).unwrap();
    driver
        .create("0".repeat(64).as_str(), None, &CreateOpts::default())
        .unwrap();
    let (code, doc) = check(false);
    assert_eq!(code, Some(1));
    assert_eq!(doc["problems"][0]["kind"], "SnapshotOrphanLayer", "{doc}");
    let (code, doc) = check(true);
    assert_eq!(code, Some(0), "{doc}");
    assert_eq!(doc["repaired"][0]["kind"], "SnapshotOrphanLayer");
    assert!(!driver.exists(&"0".repeat(64)));
    // A record whose layer is gone: it and the container on it are forgotten.
    let s = overlay_snapshotter::Snapshotter::open(&home).unwrap();
    let committed = s.list(&Default::default()).unwrap();
    drop(s);
    assert_eq!(committed.len(), 2);
    let layers = driver.layers().unwrap();
    let base = layers
        .iter()
        .find(|l| driver.parent_of(l.as_str()).unwrap().is_none())
        .unwrap();
    let top = layers.iter().find(|l| *l != base).unwrap().clone();
    // Lose the base layer behind everyone's back.
    std::fs::remove_dir_all(home.join(base.as_str())).unwrap();
    let (code, doc) = check(false);
    assert_eq!(code, Some(1), "{doc}");
    let kinds: Vec<&str> = doc["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"SnapshotMissingLayer"), "{kinds:?}");
    let (code, doc) = check(true);
    assert_eq!(code, Some(0), "{doc}");
    assert!(
        !home.join(top.as_str()).exists(),
        "the layer stacked on the lost one is gone too"
    );
    let s = overlay_snapshotter::Snapshotter::open(&home).unwrap();
    assert!(s.list(&Default::default()).unwrap().is_empty());
    drop(s);
    // With the server holding the database, check says what it skipped.
    let server = Server::start(&home, &["serve", "containerd"], &socket);
    let (code, doc) = check(false);
    assert_eq!(code, Some(0));
    assert!(
        doc["notes"][0]
            .as_str()
            .unwrap()
            .contains("snapshot records not checked"),
        "{doc}"
    );
    server.stop();
}

#[test]
fn docker_layers_live_in_init_home_unless_home_is_given() {
    if !root() {
        return;
    }
    let (dir, home, socket) = dirs();
    let init_home = dir.path().join("data-root/overlay2-rs");
    let init = format!(
        r#"{{"Home":"{}","Opts":null,"UIDMaps":null,"GIDMaps":null}}"#,
        init_home.display()
    );
    // Without --home: where Init says.
    let server = Server::start_plugin(None, &socket);
    assert_eq!(post(&socket, "/GraphDriver.Init", &init).0, 200);
    assert_eq!(post(&socket, "/GraphDriver.Create", r#"{"ID":"l1"}"#).0, 200);
    assert!(init_home.join("l1/diff").is_dir());
    assert!(server.stop().0.success());
    // With --home: there, whatever Init says; Init's home is not touched.
    std::fs::remove_dir_all(&init_home).unwrap();
    let _ = std::fs::remove_file(socket.with_extension("sock.init"));
    let server = Server::start_plugin(Some(&home), &socket);
    assert_eq!(post(&socket, "/GraphDriver.Init", &init).0, 200);
    let (code, body) = post(&socket, "/GraphDriver.Create", r#"{"ID":"l2"}"#);
    assert_eq!(code, 200, "{body}");
    assert!(home.join("l2/diff").is_dir());
    assert!(!init_home.exists(), "Init's home was made although --home was given");
    let (status, log) = server.stop();
    assert!(status.success());
    assert!(log.contains("layers live in --home"), "{log}");
}

/// Init as dockerd sends it with `--userns-remap`: `home`, and the same
/// ranges (JSON `{"container_id","host_id","size"}`) for uids and gids.
fn init_with_maps(home: &Path, maps: &str) -> String {
    format!(
        r#"{{"Home":"{}","Opts":null,"UIDMaps":{maps},"GIDMaps":{maps}}}"#,
        home.display()
    )
}

#[test]
fn docker_init_with_bad_id_maps_names_them_and_makes_no_home() {
    // No root needed: the maps are refused before the home is made.
    let (dir, _, socket) = dirs();
    let home = dir.path().join("data-root/100000.100000/overlay2-rs");
    let server = Server::start_plugin(None, &socket);
    let range = |c: i64, h: i64, n: i64| format!(r#"{{"container_id":{c},"host_id":{h},"size":{n}}}"#);
    let cases = [
        (
            format!("[{},{}]", range(0, 100_000, 65536), range(1000, 300_000, 10)),
            "uid map ranges 0:100000:65536 and 1000:300000:10 overlap on the container side",
        ),
        (
            format!("[{}]", range(0, 100_000, 0)),
            "uid map range 0:100000:0: size 0 maps nothing",
        ),
        (
            format!("[{}]", range(0, 4_294_967_290, 65536)),
            "uid map range 0:4294967290:65536: host ids 4294967290..4294967290+65536 run past the last id 4294967294",
        ),
        (
            format!("[{}]", range(0, 4_294_967_296, 1)),
            "uid map range 0:4294967296:1: host id 4294967296 does not fit in 32 bits",
        ),
        (
            format!("[{}]", range(-1, 100_000, 1)),
            "uid map range -1:100000:1: container id -1 does not fit in 32 bits",
        ),
        (
            format!("[{}]", range(1, 100_000, 65535)),
            "container root (uid and gid 0) has no host id in uid map [1:100000:65535]",
        ),
    ];
    for (maps, want) in cases {
        let (code, body) = post(&socket, "/GraphDriver.Init", &init_with_maps(&home, &maps));
        assert_eq!(code, 500, "{maps}: {body}");
        let err: serde_json::Value = serde_json::from_str(&body).unwrap();
        let err = err["Err"].as_str().unwrap();
        assert!(
            err.starts_with("userns-remap id maps: ") && err.contains(want),
            "{maps}:\n  got  {err}\n  want {want}"
        );
        assert!(
            !dir.path().join("data-root").exists(),
            "{maps}: Init made {}",
            home.display()
        );
        assert!(
            !socket.with_extension("sock.init").exists(),
            "{maps}: the refused Init was kept"
        );
        // Not initialised: the next call says so.
        let (code, body) = post(&socket, "/GraphDriver.Create", r#"{"ID":"l1"}"#);
        assert_ne!(code, 200, "{body}");
    }
    // Only the uid map: a user namespace needs both.
    let uids_only = format!(
        r#"{{"Home":"{}","UIDMaps":[{}],"GIDMaps":null}}"#,
        home.display(),
        range(0, 100_000, 65536)
    );
    let (code, body) = post(&socket, "/GraphDriver.Init", &uids_only);
    assert!(
        code == 500 && body.contains("a gid map is needed as well"),
        "{code} {body}"
    );
    assert!(!dir.path().join("data-root").exists());
    assert!(server.stop().0.success());
}

#[test]
fn docker_init_with_id_maps_gives_layer_dirs_to_the_remapped_root() {
    use std::os::unix::fs::MetadataExt as _;
    if !root() {
        return;
    }
    let (dir, _, socket) = dirs();
    let home = dir.path().join("data-root/100000.100000/overlay2-rs");
    let server = Server::start_plugin(None, &socket);
    let maps = r#"[{"container_id":0,"host_id":100000,"size":65536}]"#;
    let (code, body) = post(&socket, "/GraphDriver.Init", &init_with_maps(&home, maps));
    assert_eq!(code, 200, "{body}");
    assert_eq!(post(&socket, "/GraphDriver.Create", r#"{"ID":"base"}"#).0, 200);
    let (code, body) = post(
        &socket,
        "/GraphDriver.CreateReadWrite",
        r#"{"ID":"rw","Parent":"base"}"#,
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = post(&socket, "/GraphDriver.Get", r#"{"ID":"rw"}"#);
    assert_eq!(code, 200, "{body}");
    let owner = |p: &str| {
        let md = std::fs::symlink_metadata(home.join(p)).unwrap();
        format!("{:o} {}:{}", md.mode() & 0o7777, md.uid(), md.gid())
    };
    for (path, want) in [
        ("", "710 0:100000"),
        ("l", "700 0:0"),
        ("base", "710 0:100000"),
        ("base/diff", "755 100000:100000"),
        ("rw", "710 0:100000"),
        ("rw/diff", "755 100000:100000"),
        ("rw/work", "700 100000:100000"),
        ("rw/work/work", "0 100000:100000"),
        ("rw/merged", "755 100000:100000"),
    ] {
        assert_eq!(owner(path), want, "{}", home.join(path).display());
    }
    assert_eq!(post(&socket, "/GraphDriver.Put", r#"{"ID":"rw"}"#).0, 200);
    assert!(server.stop().0.success());
}
