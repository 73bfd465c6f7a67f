//! The rig of the end-to-end tests against a real dockerd (`docker.rs`,
//! `docker_userns.rs`): our plugin, a containerd and a dockerd in a
//! private mount namespace, driven with the `docker` CLI.
//!
//! How dockerd is isolated (the same on `--storage-driver overlay2`,
//! the built-in driver, without the plugin): a private mount namespace
//! ([`Namespace`]) with a tmpfs on `/run` (dockerd's and containerd's
//! sockets and state, the plugin's socket
//! `/run/docker/plugins/NAME.sock`) and on `/etc/docker` (dockerd
//! writes `key.json` there). In it run, in this order: the plugin
//! (`overlay2 serve docker --name NAME`, layers in Init's home
//! `<data-root>/NAME`), a containerd of our own (its root, state, `opt`
//! and socket in the test's directory, CRI off) and dockerd
//! (`--experimental --storage-driver NAME --containerd OUR_SOCKET`, its
//! own `--data-root`, `--exec-root`, `--pidfile` and API socket in the
//! test's directory, no bridge, no iptables, no forwarding,
//! `--cgroup-parent /o2plug-e2e-PID-N`). Each test has its own plugin
//! name `o2plug-PID-N`. The `docker` CLI (`/usr/bin/docker`, with its
//! own `DOCKER_CONFIG`) runs on the host against dockerd's socket.
//!
//! [`Rig`]'s teardown (by `finish`, or by `Drop` when a test panics)
//! SIGKILLs the containers still running (in the cgroup parent), stops
//! dockerd, containerd and the plugin by pid (SIGTERM, then SIGKILL),
//! SIGKILLs what is left in the namespace (shims), unmounts the data
//! root's self bind mount, kills the holder and removes the cgroup dirs;
//! after a passing test it asserts that no container was left running, no
//! layer was left mounted, no mount in the host's `/proc/self/mountinfo`
//! names the test's directory, no process of the namespace is left and
//! the cgroup dirs are gone. A failing test prints the tails of
//! `plugin.log`, `dockerd.log` and `containerd.log`; every failed docker
//! command's message carries its stderr and the tails of the plugin's and
//! dockerd's logs. `O2RS_KEEP_LOGS=DIR` keeps the logs.
//!
//! Needs root, `/usr/sbin/dockerd`, `/usr/bin/docker` (the newer
//! `/usr/local/bin/docker`, if any, is not used), `containerd`,
//! `containerd-shim-runc-v2`, `runc`, `unshare`, `nsenter` and
//! `/bin/busybox` (static); without them each test prints `skipped: …`
//! and returns. At most two rigs run at once.
//!
//! With `--userns-remap` ([`Rig::start_remapped`]) the namespace also has
//! its own `/etc/passwd`, `/etc/group`, `/etc/subuid` and `/etc/subgid`
//! (bind mounts of files in the test's directory, the host's are not
//! touched) naming the user [`REMAP_USER`].
#![allow(dead_code, clippy::unwrap_used)]

pub mod adopt;
pub mod image;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    self, BIN, Cgroups, Namespace, Out, STOP_GRACE, Slot, kill_child, spawn, stop_child, tail, wait_listening,
};

pub const DOCKERD: &str = "/usr/sbin/dockerd";
pub const DOCKER: &str = "/usr/bin/docker";
/// What these tests need besides root and busybox.
pub const TOOLS: &[&str] = &[
    DOCKERD,
    DOCKER,
    "containerd",
    "containerd-shim-runc-v2",
    "runc",
    "unshare",
    "nsenter",
];
/// How many rigs (plugin + containerd + dockerd) may run at once.
pub const MAX_RIGS: usize = 2;
/// The longest one docker command may take (a hung plugin hangs dockerd:
/// it has no timeout for v1 plugins).
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(60);
/// dockerd waits up to 10 s for a container to stop on SIGTERM.
pub const DOCKERD_GRACE: Duration = Duration::from_secs(30);

pub const IMG: &str = "o2plug/img:latest";
/// Docker's built-in overlay2 driver's name.
pub const BUILTIN: &str = "overlay2";

/// Returns from the test, saying why, where it cannot run; else the rig
/// (`builtin`: on Docker's own overlay2, `remapped`: with `--userns-remap`).
macro_rules! rig_or_skip {
    ($test:literal) => {
        rig_or_skip!($test, false, false)
    };
    ($test:literal, builtin) => {
        rig_or_skip!($test, true, false)
    };
    ($test:literal, $builtin:expr, $remapped:expr) => {{
        if $crate::common::skip($test, "dockerd, mounts, cgroups", $crate::docker_rig::TOOLS) {
            return;
        }
        $crate::docker_rig::Rig::launch($test, $builtin, $remapped)
    }};
}

// -------------------------------------------------------------- the rig

static SLOTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A private mount namespace with our plugin, containerd and dockerd in
/// it, all in one temporary directory. Teardown on `finish` or drop.
pub struct Rig {
    pub test: &'static str,
    /// The plugin's (and storage driver's) name.
    pub name: String,
    /// dockerd's `--storage-driver`: `name`, or Docker's built-in
    /// [`BUILTIN`] (then without `--experimental`).
    pub driver: String,
    /// dockerd's `--cgroup-parent`, without the leading `/`.
    pub cgroups: Cgroups,
    pub nsh: Namespace,
    pub plugin: Option<Child>,
    pub containerd: Option<Child>,
    pub dockerd: Option<Child>,
    pub torn_down: bool,
    pub started: Instant,
    // Dropped last: the directory goes after everything in it stopped.
    pub dir: tempfile::TempDir,
    /// dockerd runs with `--userns-remap` [`REMAP_USER`].
    pub remapped: bool,
    _slot: Slot,
}

/// The user dockerd's `--userns-remap` names, made in the namespace's own
/// `/etc/passwd` and `/etc/group`, with this uid and gid.
pub const REMAP_USER: &str = "o2remap";
const REMAP_USER_ID: u32 = 4242;
/// Its `/etc/subuid` and `/etc/subgid` range: container root is this
/// host id, container id N is `REMAP_BASE + N`.
pub const REMAP_BASE: u32 = 100_000;
/// How many ids the range has.
pub const REMAP_SIZE: u32 = 65_536;
/// What the namespace sees instead of the host's files.
const REMAP_FILES: [&str; 4] = ["passwd", "group", "subuid", "subgid"];

/// Writes the namespace's copies of [`REMAP_FILES`] into `dir` (the host's
/// passwd and group plus [`REMAP_USER`]); the shell that bind-mounts them.
fn remap_files(dir: &Path) -> String {
    fs::create_dir_all(dir).unwrap();
    let id = REMAP_USER_ID;
    let user = REMAP_USER;
    let range = format!("{user}:{REMAP_BASE}:{REMAP_SIZE}\n");
    let with = |host: &str, line: String| {
        let mut text = fs::read_to_string(host).unwrap_or_default();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text + &line
    };
    for (name, text) in [
        (
            "passwd",
            with("/etc/passwd", format!("{user}:x:{id}:{id}::/nonexistent:/bin/false\n")),
        ),
        ("group", with("/etc/group", format!("{user}:x:{id}:\n"))),
        ("subuid", range.clone()),
        ("subgid", range),
    ] {
        fs::write(dir.join(name), text).unwrap();
    }
    REMAP_FILES
        .iter()
        .map(|f| format!(" && mount --bind {}/{f} /etc/{f}", dir.display()))
        .collect()
}

impl Rig {
    /// Why a remapped rig cannot run here: the namespace bind-mounts over
    /// the host's files, which must exist.
    pub fn remap_skip_reason() -> Option<String> {
        let missing: Vec<String> = REMAP_FILES
            .iter()
            .map(|f| format!("/etc/{f}"))
            .filter(|f| !Path::new(f).is_file())
            .collect();
        (!missing.is_empty()).then(|| format!("missing {} (bind-mounted over in the namespace)", missing.join(", ")))
    }

    /// The rig with dockerd on our plugin or, with `builtin`, on Docker's
    /// own overlay2 (and no plugin running); with `remapped`, dockerd has
    /// `--userns-remap` [`REMAP_USER`].
    pub fn launch(test: &'static str, builtin: bool, remapped: bool) -> Self {
        let slot = Slot::take(&SLOTS, MAX_RIGS);
        let dir = common::temp_dir("o2plug-");
        if remapped {
            // dockerd refuses a data root whose parents the remapped root
            // cannot traverse (tempfile makes 0700).
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
        }
        let n = format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let t = dir.path();
        for d in ["data", "exec", "client", "ctd/root", "ctd/state", "ctd/opt"] {
            fs::create_dir_all(t.join(d)).unwrap();
        }
        let config = format!(
            r#"version = 2
root = "{t}/ctd/root"
state = "{t}/ctd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{t}/c.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "{t}/ctd/opt"
"#,
            t = t.display()
        );
        fs::write(t.join("containerd.toml"), config).unwrap();
        let mut setup =
            "mount -t tmpfs o2plug-run /run && mkdir -p /etc/docker && mount -t tmpfs o2plug-etc /etc/docker"
                .to_owned();
        if remapped {
            setup += &remap_files(&t.join("etc"));
        }
        let nsh = Namespace::start(&setup, &t.join("holder.log"));
        let name = format!("o2plug-{n}");
        let mut rig = Self {
            test,
            driver: if builtin { BUILTIN.to_owned() } else { name.clone() },
            name,
            cgroups: Cgroups::new(format!("o2plug-e2e-{n}")),
            nsh,
            plugin: None,
            containerd: None,
            dockerd: None,
            torn_down: false,
            started: Instant::now(),
            dir,
            remapped,
            _slot: slot,
        };
        if !builtin {
            rig.start_plugin();
        }
        rig.start_containerd();
        let took = rig.start_dockerd(false);
        eprintln!(
            "[{test}] dockerd up in {took:?} ({:?} in all): dir {}, driver {}, mount ns {}",
            rig.started.elapsed(),
            rig.dir().display(),
            rig.driver,
            rig.nsh.mnt_ns
        );
        rig
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// dockerd's `--data-root`.
    pub fn data_root(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// Where dockerd keeps its state: the data root or, remapped,
    /// `<data-root>/<uid>.<gid>` of the remapped root (its
    /// `setupDaemonRoot`).
    pub fn daemon_root(&self) -> PathBuf {
        if self.remapped {
            self.data_root().join(format!("{REMAP_BASE}.{REMAP_BASE}"))
        } else {
            self.data_root()
        }
    }

    /// The current driver's home: `<data-root>/<driver name>` (for the
    /// plugin, Init's Home).
    pub fn home(&self) -> PathBuf {
        self.daemon_root().join(&self.driver)
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// The tails of the plugin's and dockerd's logs, for failure messages.
    pub fn log_tails(&self) -> String {
        format!(
            "--- plugin.log (last 25 lines):\n{}\n--- dockerd.log (last 15 lines):\n{}\n---",
            tail(&self.log("plugin.log"), 25),
            tail(&self.log("dockerd.log"), 15)
        )
    }

    /// `overlay2 serve docker --name NAME` in the namespace, listening on
    /// `/run/docker/plugins/NAME.sock` there.
    pub fn start_plugin(&mut self) {
        assert!(self.plugin.is_none(), "plugin already running");
        let log = common::log_file(&self.log("plugin.log"));
        let mut cmd = self.nsh.nsenter(BIN);
        cmd.args(["serve", "docker", "--name", &self.name])
            .env("RUST_LOG", "info,overlay_docker_plugin=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let socket = self
            .nsh
            .path(&Path::new("/run/docker/plugins").join(format!("{}.sock", self.name)));
        let plugin = self.plugin.insert(cmd.spawn().expect("cannot start the plugin"));
        wait_listening(
            plugin,
            &socket,
            "the plugin",
            &self.dir.path().join("plugin.log"),
            Duration::from_secs(10),
        );
    }

    pub fn stop_plugin(&mut self) {
        if let Some(mut p) = self.plugin.take() {
            let how = stop_child(&mut p, STOP_GRACE);
            eprintln!("[{}] plugin {how}", self.test);
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill_plugin(&mut self) {
        let mut p = self.plugin.take().expect("no plugin to kill");
        let st = kill_child(&mut p);
        eprintln!("[{}] plugin SIGKILLed ({st})", self.test);
    }

    pub fn start_containerd(&mut self) {
        let log = common::log_file(&self.log("containerd.log"));
        let mut cmd = self.nsh.nsenter("containerd");
        cmd.arg("--config")
            .arg(self.dir().join("containerd.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let c = self.containerd.insert(cmd.spawn().expect("cannot start containerd"));
        wait_listening(
            c,
            &self.dir.path().join("c.sock"),
            "containerd",
            &self.dir.path().join("containerd.log"),
            Duration::from_secs(30),
        );
    }

    pub fn stop_containerd(&mut self) {
        if let Some(mut c) = self.containerd.take() {
            let how = stop_child(&mut c, STOP_GRACE);
            eprintln!("[{}] containerd {how}", self.test);
        }
    }

    /// Starts dockerd on our driver, our containerd and the test's
    /// directories; waits until its API answers. How long that took.
    pub fn start_dockerd(&mut self, live_restore: bool) -> Duration {
        assert!(self.dockerd.is_none(), "dockerd already running");
        let t = self.dir().to_owned();
        let log = common::log_file(&self.log("dockerd.log"));
        let mut cmd = self.nsh.nsenter(DOCKERD);
        if self.driver != BUILTIN {
            cmd.arg("--experimental");
        }
        cmd.args(["--storage-driver", &self.driver])
            .arg("--data-root")
            .arg(t.join("data"))
            .arg("--exec-root")
            .arg(t.join("exec"))
            .arg("--pidfile")
            .arg(t.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", t.join("docker.sock").display()))
            .arg("--containerd")
            .arg(t.join("c.sock"))
            .args([
                "--bridge",
                "none",
                "--iptables=false",
                "--ip-masq=false",
                "--ip-forward=false",
                "--cgroup-parent",
            ])
            .arg(format!("/{}", self.cgroups.name))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if live_restore {
            cmd.arg("--live-restore");
        }
        if self.remapped {
            cmd.args(["--userns-remap", REMAP_USER]);
        }
        let start = Instant::now();
        let d = self.dockerd.insert(cmd.spawn().expect("cannot start dockerd"));
        // dockerd listens once it has initialised (driver, containers).
        wait_listening(
            d,
            &t.join("docker.sock"),
            "dockerd",
            &t.join("dockerd.log"),
            Duration::from_secs(60),
        );
        let out = self.docker(&["version", "--format", "{{.Server.Version}}"]);
        self.ok(out);
        start.elapsed()
    }

    pub fn stop_dockerd(&mut self) {
        if let Some(mut d) = self.dockerd.take() {
            let how = stop_child(&mut d, DOCKERD_GRACE);
            eprintln!("[{}] dockerd {how}", self.test);
            // A stale API socket would look like a listening dockerd.
            let _ = fs::remove_file(self.dir().join("docker.sock"));
        }
    }

    pub fn restart_dockerd(&mut self, live_restore: bool) {
        self.stop_dockerd();
        let took = self.start_dockerd(live_restore);
        eprintln!(
            "[{}] dockerd restarted{} in {took:?}",
            self.test,
            if live_restore { " with --live-restore" } else { "" }
        );
    }

    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DOCKER);
        c.arg("-H")
            .arg(format!("unix://{}", self.dir().join("docker.sock").display()))
            .env("DOCKER_CONFIG", self.dir().join("client"))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .args(args);
        c
    }

    pub fn docker(&self, args: &[&str]) -> Out {
        spawn(&mut self.docker_cmd(args)).wait(DOCKER_TIMEOUT)
    }

    /// `out`, which must have succeeded.
    #[track_caller]
    pub fn ok(&self, out: Out) -> Out {
        assert!(out.success(), "{}\n{}", out.failure(), self.log_tails());
        out
    }

    /// `docker ARGS`, which must succeed.
    #[track_caller]
    pub fn docker_ok(&self, args: &[&str]) -> Out {
        let out = self.docker(args);
        self.ok(out)
    }

    /// `docker ARGS` printing `want` on stdout.
    #[track_caller]
    pub fn docker_prints(&self, args: &[&str], want: &str) -> Out {
        let out = self.docker_ok(args);
        assert_eq!(
            out.stdout,
            want,
            "stdout of `{}`; stderr: {}\n{}",
            out.what,
            out.stderr,
            self.log_tails()
        );
        out
    }

    /// `docker load -i TAR`, which must load `tag`.
    #[track_caller]
    pub fn load(&self, tar: &Path, tag: &str) -> Out {
        let out = self.docker_ok(&["load", "-i", tar.to_str().unwrap()]);
        assert!(
            out.stdout.contains(&format!("Loaded image: {tag}")),
            "`{}`: {}",
            out.what,
            out.stdout
        );
        out
    }

    /// `docker diff C`, sorted.
    #[track_caller]
    pub fn diff(&self, container: &str) -> Vec<String> {
        let out = self.docker_ok(&["diff", container]);
        let mut lines: Vec<String> = out.stdout.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    }

    /// `overlay2 --home HOME ARGS` (in the namespace).
    pub fn overlay2(&self, args: &[&str]) -> Out {
        let mut c = self.nsh.nsenter(BIN);
        c.arg("--home").arg(self.home()).args(args);
        common::run(&mut c)
    }

    /// The home's layers, from `overlay2 --json ls`.
    #[track_caller]
    pub fn layers(&self) -> Vec<Value> {
        let out = self.overlay2(&["--json", "ls"]);
        let v = self.ok(out).json();
        v["layers"].as_array().expect("ls --json: no layers array").clone()
    }

    /// `overlay2 check` of the home while the plugin serves it (the
    /// docker plugin holds no lock): exit 0, clean.
    #[track_caller]
    pub fn check_clean(&self) {
        let out = self.overlay2(&["--json", "check"]);
        eprintln!(
            "[{}] overlay2 check: exit {}: {}",
            self.test,
            out.status,
            out.stdout.trim()
        );
        let v = self.ok(out).json();
        assert_eq!(v["clean"], Value::Bool(true), "check: {v}");
        assert_eq!(v["problems"], serde_json::json!([]), "check: {v}");
    }

    /// Mount points of the namespace under the homes of our plugin and of
    /// the built-in driver (layer mounts), one entry per mount (a path
    /// twice: mounted twice).
    pub fn layer_mounts(&self) -> Vec<String> {
        let homes = [self.name.as_str(), BUILTIN].map(|d| format!("{}/", self.daemon_root().join(d).display()));
        self.nsh
            .mountinfo()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|mp| homes.iter().any(|h| mp.starts_with(h)))
            .map(str::to_owned)
            .collect()
    }

    #[track_caller]
    pub fn assert_no_layer_mounts(&self) {
        let m = self.layer_mounts();
        assert!(
            m.is_empty(),
            "layers left mounted:\n{}\n{}",
            m.join("\n"),
            self.log_tails()
        );
    }

    /// The merged dir of container `name`'s layer, from dockerd's own
    /// record of its mount id.
    #[track_caller]
    pub fn merged_dir(&self, container: &str) -> PathBuf {
        let id = self
            .docker_ok(&["inspect", "-f", "{{.Id}}", container])
            .stdout
            .trim()
            .to_owned();
        let record = self
            .daemon_root()
            .join("image")
            .join(&self.driver)
            .join("layerdb/mounts")
            .join(&id)
            .join("mount-id");
        let mount_id = fs::read_to_string(&record).unwrap_or_else(|e| panic!("{}: {e}", record.display()));
        self.home().join(mount_id.trim()).join("merged")
    }

    /// How many `GraphDriver.CALL` requests for layer `id` the plugin logged.
    pub fn plugin_calls(&self, call: &str, id: &str) -> usize {
        let call = format!("call=\"GraphDriver.{call}\"");
        let id = format!("id: \"{id}\"");
        fs::read_to_string(self.log("plugin.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&call) && l.contains(&id))
            .count()
    }

    /// How many times `dir` is a mount point in the namespace.
    pub fn times_mounted(&self, dir: &Path) -> usize {
        let d = dir.to_string_lossy();
        self.layer_mounts().iter().filter(|m| **m == *d).count()
    }

    /// Removes every container and image; then the home must have no
    /// layer, nothing may be mounted and `check` must be clean.
    #[track_caller]
    pub fn remove_all_and_check_empty(&self) {
        let ids = self.docker_ok(&["ps", "-aq"]).stdout;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            self.docker_ok(&args);
        }
        let images = self
            .docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .stdout;
        let images: Vec<&str> = images.split_whitespace().collect();
        if !images.is_empty() {
            let mut args = vec!["rmi"];
            args.extend(images);
            self.docker_ok(&args);
        }
        let left = self.docker_ok(&["images", "-aq"]).stdout;
        assert!(left.trim().is_empty(), "images left: {left}");
        let layers = self.layers();
        assert!(
            layers.is_empty(),
            "overlay2 ls after docker rm/rmi: {layers:?}\n{}",
            self.log_tails()
        );
        self.assert_no_layer_mounts();
        self.check_clean();
    }

    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        let failing = thread::panicking();
        if failing {
            eprintln!(
                "[{}] panicked; plugin.log (last 120 lines):\n{}\n--- dockerd.log (last 60 lines):\n{}\n--- containerd.log (last 20 lines):\n{}\n---",
                self.test,
                tail(&self.log("plugin.log"), 120),
                tail(&self.log("dockerd.log"), 60),
                tail(&self.log("containerd.log"), 20)
            );
        }
        // Containers still running: a passing test removes its own. Killed
        // first, or dockerd waits 10 s for each to stop.
        let running = self.cgroups.pids();
        common::kill_strays(self.test, "the test (containers)", &running);
        let layer_mounts_before = self.layer_mounts();
        self.stop_dockerd();
        self.stop_containerd();
        let log = fs::read_to_string(self.log("plugin.log")).unwrap_or_default();
        let mut calls: BTreeMap<&str, usize> = BTreeMap::new();
        for l in log.lines() {
            if let Some(rest) = l.split("call=\"GraphDriver.").nth(1) {
                *calls.entry(rest.split('"').next().unwrap_or("?")).or_default() += 1;
            }
        }
        let calls: Vec<String> = calls.iter().map(|(k, v)| format!("{k} {v}")).collect();
        eprintln!(
            "[{}] plugin log: {}; {} warnings, {} errors",
            self.test,
            calls.join(", "),
            log.matches(" WARN ").count(),
            log.matches(" ERROR ").count()
        );

        common::keep_logs(self.test, self.dir(), &["plugin.log", "dockerd.log", "containerd.log"]);
        // What containerd leaves (shims), or dockerd: not our children.
        let holder = i32::try_from(self.nsh.pid()).unwrap_or(-1);
        let plugin = self.plugin.as_ref().map(|p| i32::try_from(p.id()).unwrap_or(-1));
        let mut strays: Vec<i32> = self
            .nsh
            .processes()
            .into_iter()
            .filter(|p| *p != holder && Some(*p) != plugin)
            .chain(self.cgroups.pids())
            .collect();
        strays.sort_unstable();
        strays.dedup();
        common::kill_strays(self.test, "dockerd/containerd", &strays);
        common::wait_dead(&strays);
        // Layers dockerd's shutdown (Cleanup) left mounted, then dockerd's
        // rshared bind mount of its data root onto itself.
        let layer_mounts_after = self.layer_mounts();
        let data_root = self.daemon_root().to_string_lossy().into_owned();
        if self
            .nsh
            .mountinfo()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(&*data_root))
        {
            eprintln!("[{}] unmounting dockerd's bind mount of {data_root}", self.test);
            let out = common::run(self.nsh.nsenter("umount").args(["-R", &data_root]));
            if !out.success() {
                eprintln!("[{}] {}", self.test, out.failure());
            }
        }
        self.stop_plugin();
        self.nsh.kill();
        common::wait_gone(&self.nsh, &strays);
        let cgroup_errors = self.cgroups.remove();
        eprintln!("[{}] torn down after {:?}", self.test, self.started.elapsed());
        if failing {
            return;
        }
        assert!(running.is_empty(), "containers left running: {running:?}");
        assert!(
            layer_mounts_after.is_empty(),
            "layers still mounted after dockerd stopped (mounted before: {layer_mounts_before:?}):\n{}",
            layer_mounts_after.join("\n")
        );
        common::assert_nothing_left(&self.nsh, &strays, &self.cgroups, &cgroup_errors, self.dir());
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

/// Writes the sample image (tag `tag`, `extra` layers more) to `DIR/file`.
pub fn sample_image(rig: &Rig, file: &str, tag: &str, extra: usize) -> PathBuf {
    let path = rig.dir().join(file);
    common::sample_image(&path, tag, extra);
    path
}
