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
#![allow(clippy::unwrap_used, missing_docs)]

use std::fs::{self, File, OpenOptions};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_overlay2");
const SNAPSHOTTER: &str = "overlay2-rs";
const BUSYBOX: &str = "/bin/busybox";
/// The longest any one command may take before the test calls it hung.
const CMD_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a daemon gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How many rigs (containerd + server) may run at once.
const MAX_RIGS: usize = 2;

// ------------------------------------------------------------------ tools

/// PATH with the sbin directories root's tools live in.
fn path_env() -> String {
    let mut dirs: Vec<String> = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
        .collect();
    for d in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        if !dirs.iter().any(|x| x == d) {
            dirs.push(d.to_owned());
        }
    }
    dirs.join(":")
}

fn have_tool(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path_env().split(':').any(|d| {
        fs::metadata(Path::new(d).join(name)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Why these tests cannot run here, if they cannot.
fn skip_reason() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root (containerd, mounts, cgroups)".into());
    }
    let missing: Vec<&str> = [
        "containerd",
        "ctr",
        "containerd-shim-runc-v2",
        "runc",
        "unshare",
        "nsenter",
    ]
    .into_iter()
    .filter(|t| !have_tool(t))
    .collect();
    if !missing.is_empty() {
        return Some(format!("missing {} (in {})", missing.join(", "), path_env()));
    }
    if !Path::new(BUSYBOX).is_file() {
        return Some(format!("no static busybox at {BUSYBOX} (Debian: busybox-static)"));
    }
    None
}

/// Returns from the test, saying why, where it cannot run.
macro_rules! rig_or_skip {
    ($test:literal) => {{
        if let Some(reason) = skip_reason() {
            eprintln!("skipped: {}: {reason}", $test);
            return;
        }
        Rig::start($test)
    }};
}

// --------------------------------------------------------------- commands

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What one command did.
#[derive(Debug)]
struct Out {
    what: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Out {
    fn success(&self) -> bool {
        self.status.success()
    }

    #[track_caller]
    fn ok(self) -> Self {
        assert!(
            self.success(),
            "`{}` failed ({}):\n--- stderr\n{}\n--- stdout\n{}",
            self.what,
            self.status,
            self.stderr.trim_end(),
            self.stdout.trim_end()
        );
        self
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("`{}`: not JSON ({e}): {}", self.what, self.stdout))
    }
}

/// A command running in the background, its output collected.
struct Running {
    what: String,
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    started: Instant,
}

fn drain(r: Option<impl std::io::Read + Send + 'static>) -> Option<JoinHandle<Vec<u8>>> {
    r.map(|mut r| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    })
}

fn spawn(cmd: &mut Command) -> Running {
    let what = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
    Running {
        stdout: drain(child.stdout.take()),
        stderr: drain(child.stderr.take()),
        what,
        child,
        started: Instant::now(),
    }
}

impl Running {
    /// Waits for the command; kills it and panics after `timeout`.
    #[track_caller]
    fn wait(mut self, timeout: Duration) -> Out {
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if self.started.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = self.stderr.take().map(|h| h.join().unwrap()).unwrap_or_default();
                panic!(
                    "`{}` still running after {timeout:?}, killed; stderr:\n{}",
                    self.what,
                    String::from_utf8_lossy(&err)
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        let text = |h: Option<JoinHandle<Vec<u8>>>| {
            String::from_utf8_lossy(&h.map(|h| h.join().unwrap()).unwrap_or_default()).into_owned()
        };
        Out {
            took: self.started.elapsed(),
            stdout: text(self.stdout.take()),
            stderr: text(self.stderr.take()),
            status,
            what: self.what,
        }
    }
}

#[track_caller]
fn run(cmd: &mut Command) -> Out {
    spawn(cmd).wait(CMD_TIMEOUT)
}

/// Polls `f` every 50 ms until it answers `Some`, for at most `timeout`.
#[track_caller]
fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return (v, start.elapsed());
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Stops our child `child`: SIGTERM, up to `grace`, then SIGKILL. Returns
/// how it ended.
fn stop_child(child: &mut Child, grace: Duration) -> String {
    if let Ok(Some(st)) = child.try_wait() {
        return format!("had already exited ({st})");
    }
    signal(child.id(), rustix::process::Signal::TERM);
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(st)) = child.try_wait() {
            return format!("stopped by SIGTERM in {:?} ({st})", start.elapsed());
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let st = child.wait();
    format!("did not stop in {grace:?}: SIGKILLed ({st:?})")
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().chars().next()))
        .is_some_and(|state| state != Some('Z'))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

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

// -------------------------------------------------------------- the rig

/// At most [`MAX_RIGS`] rigs at once.
struct Slot;

static SLOTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

impl Slot {
    fn take() -> Self {
        let (lock, cv) = &SLOTS;
        let mut used = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while *used >= MAX_RIGS {
            used = cv.wait(used).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *used += 1;
        Self
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (lock, cv) = &SLOTS;
        *lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner) -= 1;
        cv.notify_one();
    }
}

static NEXT_NS: AtomicUsize = AtomicUsize::new(0);

/// A private mount namespace with containerd and our server in it, all
/// in one temporary directory. Teardown on `finish` or drop.
struct Rig {
    test: &'static str,
    /// containerd namespace (and cgroup dir name).
    ns: String,
    holder: Child,
    /// `/proc/PID/ns/mnt` of the holder: how the namespace's processes are found.
    mnt_ns: String,
    server: Option<Child>,
    containerd: Option<Child>,
    torn_down: bool,
    started: Instant,
    // Dropped last: the directory goes after everything in it stopped.
    dir: tempfile::TempDir,
    _slot: Slot,
}

impl Rig {
    fn start(test: &'static str) -> Self {
        let slot = Slot::take();
        let dir = tempfile::Builder::new().prefix("o2rs-").tempdir().unwrap();
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
        let holder = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("mount -t tmpfs o2rs-run /run && exec sleep infinity")
            .env("PATH", path_env())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(t.join("holder.log")).unwrap())
            .spawn()
            .expect("cannot start unshare");
        let mut rig = Self {
            test,
            ns,
            holder,
            mnt_ns: String::new(),
            server: None,
            containerd: None,
            torn_down: false,
            started: Instant::now(),
            dir,
            _slot: slot,
        };
        rig.wait_holder();
        rig.start_server();
        rig.start_containerd();
        eprintln!(
            "[{test}] containerd up in {:?}: dir {}, namespace {}, mount ns {}",
            rig.started.elapsed(),
            rig.dir().display(),
            rig.ns,
            rig.mnt_ns
        );
        rig
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn home(&self) -> PathBuf {
        self.dir().join("home")
    }

    fn socket(&self) -> PathBuf {
        self.dir().join("s.sock")
    }

    /// Waits until the holder has mounted its `/run` and execed `sleep`.
    fn wait_holder(&mut self) {
        let pid = self.holder.id();
        let ours = fs::read_link("/proc/self/ns/mnt").unwrap();
        let start = Instant::now();
        loop {
            if let Some(st) = self.holder.try_wait().unwrap() {
                panic!(
                    "the namespace holder exited ({st}): {}",
                    tail(&self.dir().join("holder.log"), 20)
                );
            }
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let ns = fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
            if cmdline.starts_with(b"sleep\0") && ns.as_ref().is_some_and(|n| *n != ours) {
                self.mnt_ns = ns.unwrap().to_string_lossy().into_owned();
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the namespace holder did not start"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// `program` in the namespace.
    fn nsenter(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.holder.id().to_string())
            .args(["-m", "--", program])
            .env("PATH", path_env())
            .env_remove("OVERLAY2_HOME");
        c
    }

    fn log_file(&self, name: &str) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir().join(name))
            .unwrap()
    }

    /// Starts `overlay2 serve containerd` (logging to `server.log`) and
    /// waits until its socket answers.
    fn start_server(&mut self) {
        assert!(self.server.is_none(), "server already running");
        let log = self.log_file("server.log");
        let mut cmd = self.nsenter(BIN);
        cmd.arg("--home")
            .arg(self.home())
            .args(["serve", "containerd", "--socket"])
            .arg(self.socket())
            .env("RUST_LOG", "info,overlay_snapshotter=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.server = Some(cmd.spawn().expect("cannot start the server"));
        let socket = self.socket();
        let start = Instant::now();
        loop {
            if let Some(st) = self.server.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "the server exited ({st}):\n{}",
                    tail(&self.dir().join("server.log"), 40)
                );
            }
            if UnixStream::connect(&socket).is_ok() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the server did not listen in 10 s"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn start_containerd(&mut self) {
        let log = self.log_file("containerd.log");
        let mut cmd = self.nsenter("containerd");
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

    fn stop_containerd(&mut self) {
        if let Some(mut c) = self.containerd.take() {
            let how = stop_child(&mut c, STOP_GRACE);
            eprintln!("[{}] containerd {how}", self.test);
        }
    }

    fn stop_server(&mut self) {
        if let Some(mut s) = self.server.take() {
            let how = stop_child(&mut s, STOP_GRACE);
            eprintln!("[{}] server {how}", self.test);
        }
    }

    /// SIGKILL, as a crash would.
    fn kill_server(&mut self) {
        let mut s = self.server.take().expect("no server to kill");
        s.kill().unwrap();
        let st = s.wait().unwrap();
        eprintln!("[{}] server SIGKILLed ({st})", self.test);
    }

    fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.nsenter("ctr");
        c.arg("--address")
            .arg(self.dir().join("c.sock"))
            .args(["--namespace", &self.ns])
            .args(args);
        c
    }

    fn ctr(&self, args: &[&str]) -> Out {
        run(&mut self.ctr_cmd(args))
    }

    /// `overlay2 --home HOME ARGS` (in the namespace).
    fn overlay2(&self, args: &[&str]) -> Out {
        let mut c = self.nsenter(BIN);
        c.arg("--home").arg(self.home()).args(args);
        run(&mut c)
    }

    /// The home's layers, from `overlay2 ls --json`.
    fn layers(&self) -> Vec<Value> {
        let v = self.overlay2(&["--json", "ls"]).ok().json();
        v["layers"].as_array().expect("ls --json: no layers array").clone()
    }

    /// Layer directories in the home right now (cheap, for polling).
    fn layer_dirs(&self) -> usize {
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
    fn snapshots(&self) -> Vec<(String, String, String)> {
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
    fn sample_image(&self, file: &str, tag: &str, extra_layers: usize) -> PathBuf {
        let path = self.dir().join(file);
        run(Command::new(BIN)
            .args(["sample-image", "-o"])
            .arg(&path)
            .args(["--busybox", BUSYBOX, "--tag", tag, "--extra-layers"])
            .arg(extra_layers.to_string()))
        .ok();
        path
    }

    fn import_cmd(&self, tar: &Path, base_name: &str) -> Command {
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

    fn run_rm(&self, image: &str, id: &str, cmd: &[&str]) -> Out {
        let mut args = vec!["run", "--rm", "--snapshotter", SNAPSHOTTER, image, id];
        args.extend_from_slice(cmd);
        self.ctr(&args)
    }

    /// Removes the images synchronously (containerd's GC runs before
    /// `ctr` returns), then waits until the home has no layer left.
    fn remove_images_and_wait_empty(&self, images: &[&str]) {
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
    fn mounts_in_ns(&self) -> Vec<String> {
        let dir = self.dir().to_string_lossy().into_owned();
        fs::read_to_string(format!("/proc/{}/mountinfo", self.holder.id()))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&dir))
            .map(str::to_owned)
            .collect()
    }

    #[track_caller]
    fn assert_no_mounts_in_ns(&self) {
        let m = self.mounts_in_ns();
        assert!(m.is_empty(), "mounts left in containerd's namespace:\n{}", m.join("\n"));
    }

    /// Stops containerd and the server, then `overlay2 check` must find
    /// the home clean, snapshot records included.
    fn check_clean(&mut self) {
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

    /// Processes in the namespace that are not zombies.
    fn ns_processes(&self) -> Vec<i32> {
        if self.mnt_ns.is_empty() {
            return Vec::new();
        }
        let Ok(rd) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        rd.filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|l| l.to_string_lossy() == self.mnt_ns)
                    && alive(*pid)
            })
            .collect()
    }

    /// The cgroup dirs named after our containerd namespace.
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let root = Path::new("/sys/fs/cgroup");
        let mut found = Vec::new();
        if root.join(&self.ns).is_dir() {
            found.push(root.join(&self.ns));
        }
        if let Ok(rd) = fs::read_dir(root) {
            for e in rd.filter_map(Result::ok) {
                let d = e.path().join(&self.ns);
                if d.is_dir() {
                    found.push(d);
                }
            }
        }
        found
    }

    fn cgroup_pids(dir: &Path, pids: &mut Vec<i32>) {
        if let Ok(s) = fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.filter_map(Result::ok) {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    Self::cgroup_pids(&e.path(), pids);
                }
            }
        }
    }

    /// rmdir `dir` and the cgroups below it, deepest first.
    fn rm_cgroup(dir: &Path) -> std::io::Result<()> {
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.filter_map(Result::ok) {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    Self::rm_cgroup(&e.path())?;
                }
            }
        }
        fs::remove_dir(dir)
    }

    fn teardown(&mut self) {
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
        if let Some(keep) = std::env::var_os("O2RS_KEEP_LOGS") {
            for log in ["server.log", "containerd.log"] {
                let to = Path::new(&keep).join(format!("{}-{log}", self.test));
                let _ = fs::create_dir_all(&keep);
                let _ = fs::copy(self.dir().join(log), &to);
            }
        }
        // What containerd leaves running (shims, containers): not our
        // children, SIGKILLed by pid.
        let holder = i32::try_from(self.holder.id()).unwrap_or(-1);
        let server = self.server.as_ref().map(|s| i32::try_from(s.id()).unwrap_or(-1));
        let mut strays: Vec<i32> = self
            .ns_processes()
            .into_iter()
            .filter(|p| *p != holder && Some(*p) != server)
            .collect();
        for d in self.cgroup_dirs() {
            Self::cgroup_pids(&d, &mut strays);
        }
        strays.sort_unstable();
        strays.dedup();
        for &pid in &strays {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            eprintln!(
                "[{}] left running by containerd, SIGKILL: {pid} {}",
                self.test,
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            );
            signal(u32::try_from(pid).unwrap_or(0), rustix::process::Signal::KILL);
        }
        self.stop_server();
        let _ = self.holder.kill();
        let _ = self.holder.wait();

        // Wait for what we killed to be gone, then the cgroups can go.
        let start = Instant::now();
        while start.elapsed() < STOP_GRACE && (!self.ns_processes().is_empty() || strays.iter().any(|p| alive(*p))) {
            thread::sleep(Duration::from_millis(20));
        }
        let mut cgroup_errors = Vec::new();
        for d in self.cgroup_dirs() {
            let mut result = Self::rm_cgroup(&d);
            let start = Instant::now();
            while result.is_err() && start.elapsed() < Duration::from_secs(5) {
                thread::sleep(Duration::from_millis(50));
                result = Self::rm_cgroup(&d);
            }
            if let Err(e) = result {
                cgroup_errors.push(format!("{}: {e}", d.display()));
            }
        }
        eprintln!("[{}] torn down after {:?}", self.test, self.started.elapsed());
        if failing {
            return;
        }

        let dir = self.dir().to_string_lossy().into_owned();
        let host_mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&dir))
            .map(str::to_owned)
            .collect();
        assert!(
            host_mounts.is_empty(),
            "mounts naming {dir} in the host's mountinfo:\n{}",
            host_mounts.join("\n")
        );
        let left = self.ns_processes();
        assert!(left.is_empty(), "processes left in the namespace: {left:?}");
        let alive_strays: Vec<i32> = strays.into_iter().filter(|p| alive(*p)).collect();
        assert!(alive_strays.is_empty(), "processes survived SIGKILL: {alive_strays:?}");
        assert!(cgroup_errors.is_empty(), "cgroup dirs not removed: {cgroup_errors:?}");
        let cg = self.cgroup_dirs();
        assert!(cg.is_empty(), "cgroup dirs left: {cg:?}");
    }

    /// Tears down, asserting nothing is left behind.
    fn finish(mut self) {
        self.teardown();
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.teardown();
    }
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
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {T}: {reason}");
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
        *seen.lock().unwrap() = Some((rig.mnt_ns.clone(), rig.ns.clone(), rig.dir().to_owned(), pid));
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
    let cgroups: Vec<PathBuf> = fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().join(&ns))
        .chain(std::iter::once(Path::new("/sys/fs/cgroup").join(&ns)))
        .filter(|d| d.exists())
        .collect();
    assert!(cgroups.is_empty(), "cgroup dirs left: {cgroups:?}");
    let d = dir.to_string_lossy().into_owned();
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&d), "host mounts name {d}");
    assert!(!dir.exists(), "{d} was not removed");
}
