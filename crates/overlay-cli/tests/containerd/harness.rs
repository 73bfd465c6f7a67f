//! The containerd rig of `containerd.rs` and `containerd_remap.rs`
//! (included by both with `#[path]`; each uses part of it).
//!
//! How containerd is isolated: a holder process
//! `unshare -m --propagation private sh -c 'mount -t tmpfs … /run && exec sleep infinity'`
//! owns a private mount namespace with its own `/run` (containerd 1.6 and
//! its shims write `/run/containerd` whatever their config says). The
//! server, containerd and every `ctr` run inside it through
//! `nsenter -t HOLDER -m --` (nsenter execs, so a child's pid is the
//! program's). Each test has its own temporary directory with containerd's
//! root, state and `opt` dirs, its gRPC socket, its config (CRI disabled,
//! `[proxy_plugins.overlay2-rs]`), our home, our socket and the logs
//! (`server.log`, `containerd.log`, printed when a test fails). Each uses
//! its own containerd namespace `o2rs-<pid>-<n>`, so the cgroup dirs `ctr`
//! leaves (`/sys/fs/cgroup/<controller>/<namespace>` on cgroup v1,
//! `/sys/fs/cgroup/<namespace>` on v2) are exactly its own to remove.
//!
//! [`Rig`] holds all of that; its teardown (run by `finish`, or by `Drop`
//! when a test panics) stops containerd and the server by pid (SIGTERM, up
//! to 10 s, then SIGKILL), SIGKILLs what containerd left in the namespace
//! (shims) or in its cgroups, kills the holder and removes the cgroup
//! dirs; after a passing test it asserts that no mount in the host's
//! `/proc/self/mountinfo` names the temporary directory, that no process
//! of the namespace is left, and that the cgroup dirs are gone.
//!
//! `O2RS_KEEP_LOGS=DIR` copies each test's `server.log` and
//! `containerd.log` to `DIR/<test>-*.log` before its directory goes.
//!
//! Needs root, `containerd`, `ctr`, `containerd-shim-runc-v2`, `runc`,
//! `unshare`, `nsenter` and `/bin/busybox` (static); without them each test
//! prints `skipped: …` and returns. At most two rigs run at once (2-core
//! machines); the tests run in parallel otherwise.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    self, BIN, Cgroups, Namespace, Out, STOP_GRACE, Slot, kill_child, run, stop_child, tail, wait_for,
};

pub const SNAPSHOTTER: &str = "overlay2-rs";
/// How many rigs (containerd + server) may run at once.
pub const MAX_RIGS: usize = 2;
/// What these tests need besides root and busybox.
pub const TOOLS: &[&str] = &[
    "containerd",
    "ctr",
    "containerd-shim-runc-v2",
    "runc",
    "unshare",
    "nsenter",
];

/// Returns from the test, saying why, where it cannot run.
/// With server arguments: `rig_or_skip!("test", &["--idmap-mounts", "options"])`.
macro_rules! rig_or_skip {
    ($test:literal) => {
        rig_or_skip!($test, &[])
    };
    ($test:literal, $server_args:expr) => {{
        if crate::common::skip($test, "containerd, mounts, cgroups", crate::harness::TOOLS) {
            return;
        }
        crate::harness::Rig::start_with($test, $server_args)
    }};
}
pub(crate) use rig_or_skip;

// -------------------------------------------------------------- the rig

static SLOTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());
static NEXT_NS: AtomicUsize = AtomicUsize::new(0);

/// A private mount namespace with containerd and our server in it, all
/// in one temporary directory. Teardown on `finish` or drop.
pub struct Rig {
    pub test: &'static str,
    /// containerd namespace (and cgroup dir name).
    pub ns: String,
    pub nsh: Namespace,
    /// Extra arguments of `overlay2 serve containerd`.
    server_args: Vec<String>,
    server: Option<Child>,
    containerd: Option<Child>,
    torn_down: bool,
    started: Instant,
    // Dropped last: the directory goes after everything in it stopped.
    dir: tempfile::TempDir,
    _slot: Slot,
}

impl Rig {
    pub fn start(test: &'static str) -> Self {
        Self::start_with(test, &[])
    }

    /// A rig whose server gets `server_args` after `serve containerd`.
    pub fn start_with(test: &'static str, server_args: &[&str]) -> Self {
        let slot = Slot::take(&SLOTS, MAX_RIGS);
        let dir = common::temp_dir("o2rs-");
        let ns = format!(
            "o2rs-{}-{}",
            std::process::id(),
            NEXT_NS.fetch_add(1, Ordering::Relaxed)
        );
        let t = dir.path();
        for d in ["root", "state", "opt"] {
            fs::create_dir(t.join(d)).unwrap();
        }
        let config = format!(
            r#"version = 2
root = "{t}/root"
state = "{t}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{t}/c.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "{t}/opt"

[proxy_plugins.{SNAPSHOTTER}]
  type = "snapshot"
  address = "{t}/s.sock"
"#,
            t = t.display()
        );
        fs::write(t.join("config.toml"), config).unwrap();
        let nsh = Namespace::start("mount -t tmpfs o2rs-run /run", &t.join("holder.log"));
        let mut rig = Self {
            test,
            ns,
            nsh,
            server_args: server_args.iter().map(|a| (*a).to_owned()).collect(),
            server: None,
            containerd: None,
            torn_down: false,
            started: Instant::now(),
            dir,
            _slot: slot,
        };
        rig.start_server();
        rig.start_containerd();
        eprintln!(
            "[{test}] containerd up in {:?}: dir {}, namespace {}, mount ns {}",
            rig.started.elapsed(),
            rig.dir().display(),
            rig.ns,
            rig.nsh.mnt_ns
        );
        rig
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn home(&self) -> PathBuf {
        self.dir().join("home")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir().join("s.sock")
    }

    pub fn log_file(&self, name: &str) -> fs::File {
        common::log_file(&self.dir().join(name))
    }

    /// Starts `overlay2 serve containerd` (logging to `server.log`) and
    /// waits until its socket answers.
    pub fn start_server(&mut self) {
        assert!(self.server.is_none(), "server already running");
        let log = self.log_file("server.log");
        let mut cmd = self.nsh.nsenter(BIN);
        cmd.arg("--home")
            .arg(self.home())
            .args(["serve", "containerd", "--socket"])
            .arg(self.socket())
            .args(&self.server_args)
            .env("RUST_LOG", "info,overlay_snapshotter=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let server = self.server.insert(cmd.spawn().expect("cannot start the server"));
        common::wait_listening(
            server,
            &self.dir.path().join("s.sock"),
            "the server",
            &self.dir.path().join("server.log"),
            Duration::from_secs(10),
        );
    }

    pub fn start_containerd(&mut self) {
        let log = self.log_file("containerd.log");
        let mut cmd = self.nsh.nsenter("containerd");
        cmd.arg("--config")
            .arg(self.dir().join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.containerd = Some(cmd.spawn().expect("cannot start containerd"));
        let start = Instant::now();
        loop {
            if let Some(st) = self.containerd.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "containerd exited ({st}):\n{}",
                    tail(&self.dir().join("containerd.log"), 40)
                );
            }
            if self.ctr(&["version"]).success() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "containerd did not answer in 30 s"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop_containerd(&mut self) {
        if let Some(mut c) = self.containerd.take() {
            let how = stop_child(&mut c, STOP_GRACE);
            eprintln!("[{}] containerd {how}", self.test);
        }
    }

    pub fn stop_server(&mut self) {
        if let Some(mut s) = self.server.take() {
            let how = stop_child(&mut s, STOP_GRACE);
            eprintln!("[{}] server {how}", self.test);
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill_server(&mut self) {
        let mut s = self.server.take().expect("no server to kill");
        let st = kill_child(&mut s);
        eprintln!("[{}] server SIGKILLed ({st})", self.test);
    }

    pub fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.nsh.nsenter("ctr");
        c.arg("--address")
            .arg(self.dir().join("c.sock"))
            .args(["--namespace", &self.ns])
            .args(args);
        c
    }

    pub fn ctr(&self, args: &[&str]) -> Out {
        run(&mut self.ctr_cmd(args))
    }

    /// `overlay2 --home HOME ARGS` (in the namespace).
    pub fn overlay2(&self, args: &[&str]) -> Out {
        let mut c = self.nsh.nsenter(BIN);
        c.arg("--home").arg(self.home()).args(args);
        run(&mut c)
    }

    /// The home's layers, from `overlay2 ls --json`.
    pub fn layers(&self) -> Vec<Value> {
        let v = self.overlay2(&["--json", "ls"]).ok().json();
        v["layers"].as_array().expect("ls --json: no layers array").clone()
    }

    /// Layer directories in the home right now (cheap, for polling).
    pub fn layer_dirs(&self) -> usize {
        fs::read_dir(self.home()).map_or(0, |rd| {
            rd.filter_map(Result::ok)
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()) && e.path().is_dir()
                })
                .count()
        })
    }

    /// `ctr snapshots ls`: (key, parent, kind) per snapshot.
    pub fn snapshots(&self) -> Vec<(String, String, String)> {
        let out = self.ctr(&["snapshots", "--snapshotter", SNAPSHOTTER, "ls"]).ok();
        out.stdout
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                match f[..] {
                    [k, p, kind] => (k.to_owned(), p.to_owned(), kind.to_owned()),
                    [k, kind] => (k.to_owned(), String::new(), kind.to_owned()),
                    _ => panic!("ctr snapshots ls: unexpected line {l:?}"),
                }
            })
            .collect()
    }

    /// Writes `overlay2 sample-image` (busybox inside) to `DIR/file`.
    pub fn sample_image(&self, file: &str, tag: &str, extra_layers: usize) -> PathBuf {
        let path = self.dir().join(file);
        common::sample_image(&path, tag, extra_layers);
        path
    }

    pub fn import_cmd(&self, tar: &Path, base_name: &str) -> Command {
        let tar = tar.to_str().unwrap();
        self.ctr_cmd(&[
            "images",
            "import",
            "--base-name",
            base_name,
            "--snapshotter",
            SNAPSHOTTER,
            tar,
        ])
    }

    pub fn run_rm(&self, image: &str, id: &str, cmd: &[&str]) -> Out {
        let mut args = vec!["run", "--rm", "--snapshotter", SNAPSHOTTER, image, id];
        args.extend_from_slice(cmd);
        self.ctr(&args)
    }

    /// Removes the images synchronously (containerd's GC runs before
    /// `ctr` returns), then waits until the home has no layer left.
    pub fn remove_images_and_wait_empty(&self, images: &[&str]) {
        let mut args = vec!["images", "rm", "--sync"];
        args.extend_from_slice(images);
        let out = self.ctr(&args).ok();
        let (_, waited) = wait_for("the home to have no layer", Duration::from_secs(15), || {
            (self.layer_dirs() == 0).then_some(())
        });
        eprintln!(
            "[{}] images rm --sync took {:?}; home empty {waited:?} after",
            self.test, out.took
        );
        let layers = self.layers();
        assert!(layers.is_empty(), "overlay2 ls after GC: {layers:?}");
        let snaps = self.snapshots();
        assert!(snaps.is_empty(), "ctr snapshots ls after GC: {snaps:?}");
    }

    /// Mounts in the namespace naming our directory (container rootfs
    /// mounts left behind, say).
    pub fn mounts_in_ns(&self) -> Vec<String> {
        self.nsh.mounts_naming(&self.dir().to_string_lossy())
    }

    #[track_caller]
    pub fn assert_no_mounts_in_ns(&self) {
        let m = self.mounts_in_ns();
        assert!(m.is_empty(), "mounts left in containerd's namespace:\n{}", m.join("\n"));
    }

    /// Stops containerd and the server, then `overlay2 check` must find
    /// the home clean, snapshot records included.
    pub fn check_clean(&mut self) {
        self.stop_containerd();
        self.stop_server();
        let out = self.overlay2(&["--json", "check"]);
        eprintln!("[{}] overlay2 check: {}", self.test, out.stdout.trim());
        let out = out.ok();
        let v = out.json();
        assert_eq!(v["clean"], Value::Bool(true), "check: {v}");
        assert_eq!(v["problems"], serde_json::json!([]), "check: {v}");
        assert_eq!(v["notes"], serde_json::json!([]), "check (notes): {v}");
    }

    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        let failing = thread::panicking();
        if failing {
            eprintln!(
                "[{}] panicked; server.log (last 150 lines):\n{}\n--- containerd.log (last 40 lines):\n{}\n---",
                self.test,
                tail(&self.dir().join("server.log"), 150),
                tail(&self.dir().join("containerd.log"), 40)
            );
        }
        let log = fs::read_to_string(self.dir().join("server.log")).unwrap_or_default();
        let count = |s: &str| log.matches(s).count();
        eprintln!(
            "[{}] server log: {} created, {} committed, {} removed, {} warnings, {} errors",
            self.test,
            count("snapshot created"),
            count("snapshot committed"),
            count("snapshot removed"),
            count(" WARN "),
            count(" ERROR ")
        );

        self.stop_containerd();
        common::keep_logs(self.test, self.dir(), &["server.log", "containerd.log"]);
        // What containerd leaves running (shims, containers): not our
        // children, SIGKILLed by pid.
        let holder = i32::try_from(self.nsh.pid()).unwrap_or(-1);
        let server = self.server.as_ref().map(|s| i32::try_from(s.id()).unwrap_or(-1));
        let cgroups = Cgroups::new(&self.ns);
        let mut strays: Vec<i32> = self
            .nsh
            .processes()
            .into_iter()
            .filter(|p| *p != holder && Some(*p) != server)
            .chain(cgroups.pids())
            .collect();
        strays.sort_unstable();
        strays.dedup();
        common::kill_strays(self.test, "containerd", &strays);
        self.stop_server();
        self.nsh.kill();

        // Wait for what we killed to be gone, then the cgroups can go.
        common::wait_gone(&self.nsh, &strays);
        let cgroup_errors = cgroups.remove();
        eprintln!("[{}] torn down after {:?}", self.test, self.started.elapsed());
        if failing {
            return;
        }
        common::assert_nothing_left(&self.nsh, &strays, &cgroups, &cgroup_errors, self.dir());
    }

    /// Tears down, asserting nothing is left behind.
    pub fn finish(mut self) {
        self.teardown();
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.teardown();
    }
}
