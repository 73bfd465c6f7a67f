//! `overlay2 serve` as a process: the socket is 0600 from the start, a
//! live server's socket is not stolen, SIGTERM stops it cleanly and removes
//! the socket, a Docker home is not taken over by the snapshotter, and
//! `check --repair` reconciles a snapshotter's database with its layers.
//! Needs root (homes are kernel homes); otherwise each test says so.
#![allow(clippy::unwrap_used, missing_docs)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A server process, stopped (SIGKILL) if the test ends without stopping it.
struct Server(Option<Child>);

impl Server {
    fn start(home: &Path, args: &[&str], socket: &Path) -> Self {
        let child = overlay2(home)
            .args(args)
            .arg("--socket")
            .arg(socket)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        // Accepting, not just present: a stale socket file may be there.
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            assert!(Instant::now() < deadline, "no server on the socket after 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        Self(Some(child))
    }

    /// `overlay2 [--home HOME] serve docker --socket SOCKET`.
    fn start_plugin(home: Option<&Path>, socket: &Path) -> Self {
        let mut c = Command::new(env!("CARGO_BIN_EXE_overlay2"));
        if let Some(home) = home {
            c.arg("--home").arg(home);
        }
        let child = c
            .args(["serve", "docker", "--socket"])
            .arg(socket)
            .env_remove("OVERLAY2_HOME")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            assert!(Instant::now() < deadline, "no plugin on the socket after 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        Self(Some(child))
    }

    /// SIGTERM; the exit status and what it logged.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        let child = self.0.take().unwrap();
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap(),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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

/// One HTTP/1.1 POST on the plugin's socket, as dockerd sends it (no
/// Content-Type); the status code and body.
fn post(socket: &Path, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: plugin\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let code = answer.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (code, body)
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
