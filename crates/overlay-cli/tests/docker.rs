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
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::Digest as _;

use common::{
    BIN, Cgroups, Namespace, Out, Running, STOP_GRACE, Slot, alive, kill_child, spawn, stop_child, tail, wait_for,
    wait_listening,
};

const DOCKERD: &str = "/usr/sbin/dockerd";
const DOCKER: &str = "/usr/bin/docker";
/// What these tests need besides root and busybox.
const TOOLS: &[&str] = &[
    DOCKERD,
    DOCKER,
    "containerd",
    "containerd-shim-runc-v2",
    "runc",
    "unshare",
    "nsenter",
];
/// How many rigs (plugin + containerd + dockerd) may run at once.
const MAX_RIGS: usize = 2;
/// The longest one docker command may take (a hung plugin hangs dockerd:
/// it has no timeout for v1 plugins).
const DOCKER_TIMEOUT: Duration = Duration::from_secs(60);
/// dockerd waits up to 10 s for a container to stop on SIGTERM.
const DOCKERD_GRACE: Duration = Duration::from_secs(30);

const IMG: &str = "o2plug/img:latest";
/// Docker's built-in overlay2 driver's name.
const BUILTIN: &str = "overlay2";
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

/// Returns from the test, saying why, where it cannot run.
macro_rules! rig_or_skip {
    ($test:literal) => {{
        if common::skip($test, "dockerd, mounts, cgroups", TOOLS) {
            return;
        }
        Rig::start($test, false)
    }};
    ($test:literal, builtin) => {{
        if common::skip($test, "dockerd, mounts, cgroups", TOOLS) {
            return;
        }
        Rig::start($test, true)
    }};
}

// ------------------------------------------------------------ image tars

/// What a docker-save tar holds: the image's config digest, its diff ids,
/// the sha256 of each layer tar (in manifest order) and its tags.
#[derive(Debug, PartialEq, Eq)]
struct SavedImage {
    config_digest: String,
    diff_ids: Vec<String>,
    layer_digests: Vec<String>,
    repo_tags: Vec<String>,
}

fn sha256_hex(mut r: impl std::io::Read) -> String {
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    format!("{:x}", h.finalize())
}

impl SavedImage {
    #[track_caller]
    fn read(path: &Path) -> Self {
        let mut digests = BTreeMap::new();
        let mut jsons = BTreeMap::new();
        let mut ar = tar::Archive::new(fs::File::open(path).unwrap());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".json") {
                let mut s = Vec::new();
                e.read_to_end(&mut s).unwrap();
                jsons.insert(name, s);
            } else if name.ends_with("layer.tar") {
                digests.insert(name, sha256_hex(&mut e));
            }
        }
        let manifest: Value = serde_json::from_slice(&jsons["manifest.json"]).unwrap();
        let m = &manifest[0];
        let config_name = m["Config"].as_str().unwrap();
        let config_bytes = &jsons[config_name];
        let config: Value = serde_json::from_slice(config_bytes).unwrap();
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap_or_else(|| panic!("{}: not an array: {v}", path.display()))
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect()
        };
        Self {
            config_digest: sha256_hex(&config_bytes[..]),
            diff_ids: strings(&config["rootfs"]["diff_ids"]),
            layer_digests: strings(&m["Layers"])
                .iter()
                .map(|l| format!("sha256:{}", digests[l]))
                .collect(),
            repo_tags: m["RepoTags"]
                .as_array()
                .map(|_| strings(&m["RepoTags"]))
                .unwrap_or_default(),
        }
    }
}

/// The regular files of a tar stream: path -> content.
fn tar_files(raw: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut ar = tar::Archive::new(raw);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut content = Vec::new();
        if e.header().entry_type().is_file() {
            e.read_to_end(&mut content).unwrap();
        }
        files.insert(name, content);
    }
    files
}

// -------------------------------------------------------------- the rig

static SLOTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A private mount namespace with our plugin, containerd and dockerd in
/// it, all in one temporary directory. Teardown on `finish` or drop.
struct Rig {
    test: &'static str,
    /// The plugin's (and storage driver's) name.
    name: String,
    /// dockerd's `--storage-driver`: `name`, or Docker's built-in
    /// [`BUILTIN`] (then without `--experimental`).
    driver: String,
    /// dockerd's `--cgroup-parent`, without the leading `/`.
    cgroups: Cgroups,
    nsh: Namespace,
    plugin: Option<Child>,
    containerd: Option<Child>,
    dockerd: Option<Child>,
    torn_down: bool,
    started: Instant,
    // Dropped last: the directory goes after everything in it stopped.
    dir: tempfile::TempDir,
    _slot: Slot,
}

impl Rig {
    /// The rig with dockerd on our plugin or, with `builtin`, on Docker's
    /// own overlay2 (and no plugin running).
    fn start(test: &'static str, builtin: bool) -> Self {
        let slot = Slot::take(&SLOTS, MAX_RIGS);
        let dir = common::temp_dir("o2plug-");
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
        let nsh = Namespace::start(
            "mount -t tmpfs o2plug-run /run && mkdir -p /etc/docker && mount -t tmpfs o2plug-etc /etc/docker",
            &t.join("holder.log"),
        );
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

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn data_root(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// The current driver's home: `<data-root>/<driver name>` (for the
    /// plugin, Init's Home).
    fn home(&self) -> PathBuf {
        self.data_root().join(&self.driver)
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// The tails of the plugin's and dockerd's logs, for failure messages.
    fn log_tails(&self) -> String {
        format!(
            "--- plugin.log (last 25 lines):\n{}\n--- dockerd.log (last 15 lines):\n{}\n---",
            tail(&self.log("plugin.log"), 25),
            tail(&self.log("dockerd.log"), 15)
        )
    }

    /// `overlay2 serve docker --name NAME` in the namespace, listening on
    /// `/run/docker/plugins/NAME.sock` there.
    fn start_plugin(&mut self) {
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

    fn stop_plugin(&mut self) {
        if let Some(mut p) = self.plugin.take() {
            let how = stop_child(&mut p, STOP_GRACE);
            eprintln!("[{}] plugin {how}", self.test);
        }
    }

    /// SIGKILL, as a crash would.
    fn kill_plugin(&mut self) {
        let mut p = self.plugin.take().expect("no plugin to kill");
        let st = kill_child(&mut p);
        eprintln!("[{}] plugin SIGKILLed ({st})", self.test);
    }

    fn start_containerd(&mut self) {
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

    fn stop_containerd(&mut self) {
        if let Some(mut c) = self.containerd.take() {
            let how = stop_child(&mut c, STOP_GRACE);
            eprintln!("[{}] containerd {how}", self.test);
        }
    }

    /// Starts dockerd on our driver, our containerd and the test's
    /// directories; waits until its API answers. How long that took.
    fn start_dockerd(&mut self, live_restore: bool) -> Duration {
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

    fn stop_dockerd(&mut self) {
        if let Some(mut d) = self.dockerd.take() {
            let how = stop_child(&mut d, DOCKERD_GRACE);
            eprintln!("[{}] dockerd {how}", self.test);
            // A stale API socket would look like a listening dockerd.
            let _ = fs::remove_file(self.dir().join("docker.sock"));
        }
    }

    fn restart_dockerd(&mut self, live_restore: bool) {
        self.stop_dockerd();
        let took = self.start_dockerd(live_restore);
        eprintln!(
            "[{}] dockerd restarted{} in {took:?}",
            self.test,
            if live_restore { " with --live-restore" } else { "" }
        );
    }

    fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DOCKER);
        c.arg("-H")
            .arg(format!("unix://{}", self.dir().join("docker.sock").display()))
            .env("DOCKER_CONFIG", self.dir().join("client"))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .args(args);
        c
    }

    fn docker(&self, args: &[&str]) -> Out {
        spawn(&mut self.docker_cmd(args)).wait(DOCKER_TIMEOUT)
    }

    /// `out`, which must have succeeded.
    #[track_caller]
    fn ok(&self, out: Out) -> Out {
        assert!(out.success(), "{}\n{}", out.failure(), self.log_tails());
        out
    }

    /// `docker ARGS`, which must succeed.
    #[track_caller]
    fn docker_ok(&self, args: &[&str]) -> Out {
        let out = self.docker(args);
        self.ok(out)
    }

    /// `docker ARGS` printing `want` on stdout.
    #[track_caller]
    fn docker_prints(&self, args: &[&str], want: &str) -> Out {
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
    fn load(&self, tar: &Path, tag: &str) -> Out {
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
    fn diff(&self, container: &str) -> Vec<String> {
        let out = self.docker_ok(&["diff", container]);
        let mut lines: Vec<String> = out.stdout.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    }

    /// `overlay2 --home HOME ARGS` (in the namespace).
    fn overlay2(&self, args: &[&str]) -> Out {
        let mut c = self.nsh.nsenter(BIN);
        c.arg("--home").arg(self.home()).args(args);
        common::run(&mut c)
    }

    /// The home's layers, from `overlay2 --json ls`.
    #[track_caller]
    fn layers(&self) -> Vec<Value> {
        let out = self.overlay2(&["--json", "ls"]);
        let v = self.ok(out).json();
        v["layers"].as_array().expect("ls --json: no layers array").clone()
    }

    /// `overlay2 check` of the home while the plugin serves it (the
    /// docker plugin holds no lock): exit 0, clean.
    #[track_caller]
    fn check_clean(&self) {
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
    fn layer_mounts(&self) -> Vec<String> {
        let homes = [self.name.as_str(), BUILTIN].map(|d| format!("{}/", self.data_root().join(d).display()));
        self.nsh
            .mountinfo()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|mp| homes.iter().any(|h| mp.starts_with(h)))
            .map(str::to_owned)
            .collect()
    }

    #[track_caller]
    fn assert_no_layer_mounts(&self) {
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
    fn merged_dir(&self, container: &str) -> PathBuf {
        let id = self
            .docker_ok(&["inspect", "-f", "{{.Id}}", container])
            .stdout
            .trim()
            .to_owned();
        let record = self
            .data_root()
            .join("image")
            .join(&self.driver)
            .join("layerdb/mounts")
            .join(&id)
            .join("mount-id");
        let mount_id = fs::read_to_string(&record).unwrap_or_else(|e| panic!("{}: {e}", record.display()));
        self.home().join(mount_id.trim()).join("merged")
    }

    /// How many `GraphDriver.CALL` requests for layer `id` the plugin logged.
    fn plugin_calls(&self, call: &str, id: &str) -> usize {
        let call = format!("call=\"GraphDriver.{call}\"");
        let id = format!("id: \"{id}\"");
        fs::read_to_string(self.log("plugin.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&call) && l.contains(&id))
            .count()
    }

    /// How many times `dir` is a mount point in the namespace.
    fn times_mounted(&self, dir: &Path) -> usize {
        let d = dir.to_string_lossy();
        self.layer_mounts().iter().filter(|m| **m == *d).count()
    }

    /// Removes every container and image; then the home must have no
    /// layer, nothing may be mounted and `check` must be clean.
    #[track_caller]
    fn remove_all_and_check_empty(&self) {
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

    fn teardown(&mut self) {
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
        let data_root = self.data_root().to_string_lossy().into_owned();
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
    fn finish(mut self) {
        self.teardown();
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Writes the sample image (tag `tag`, `extra` layers more) to `DIR/file`.
fn sample_image(rig: &Rig, file: &str, tag: &str, extra: usize) -> PathBuf {
    let path = rig.dir().join(file);
    common::sample_image(&path, tag, extra);
    path
}

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

// ------------------------------------------------------- docker-adopt

impl Rig {
    /// `overlay2 --json docker-adopt --data-root DIR --name NAME [--back]`,
    /// in the namespace (where the layer mounts it looks for are).
    fn adopt(&self, data_root: &Path, back: bool) -> Out {
        let mut c = self.nsh.nsenter(BIN);
        c.args(["--json", "docker-adopt", "--data-root"])
            .arg(data_root)
            .args(["--name", &self.name]);
        if back {
            c.arg("--back");
        }
        let out = common::run(&mut c);
        eprintln!(
            "[{}] `{}`: {} in {:?}: {}{}",
            self.test,
            out.what,
            out.status,
            out.took,
            out.stdout.trim(),
            out.stderr.trim()
        );
        out
    }

    /// `docker images`: `REPO:TAG ID` lines, sorted.
    fn images(&self) -> Vec<String> {
        let out = self.docker_ok(&["images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
        let mut v: Vec<String> = out.stdout.lines().map(str::to_owned).collect();
        v.sort();
        v
    }

    /// `docker ps -a`: `NAME ID STATE` lines, sorted.
    fn containers(&self) -> Vec<String> {
        let out = self.docker_ok(&["ps", "-a", "--no-trunc", "--format", "{{.Names}} {{.ID}} {{.State}}"]);
        let mut v: Vec<String> = out.stdout.lines().map(str::to_owned).collect();
        v.sort();
        v
    }

    /// The content of `path` in container `c` (`docker cp C:PATH -`).
    #[track_caller]
    fn cat(&self, c: &str, path: &str) -> String {
        let out = self.docker_ok(&["cp", &format!("{c}:{path}"), "-"]);
        let name = Path::new(path).file_name().unwrap().to_string_lossy().into_owned();
        let files = tar_files(&out.raw);
        String::from_utf8_lossy(
            files
                .get(&name)
                .unwrap_or_else(|| panic!("docker cp {c}:{path}: {:?}", files.keys())),
        )
        .into_owned()
    }
}

/// `(device, inode)` of each layer's `diff` dir in `home`, by layer id:
/// equal after a rename of `home`, not after a copy.
#[track_caller]
fn diff_inodes(home: &Path) -> BTreeMap<String, (u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    fs::read_dir(home)
        .unwrap_or_else(|e| panic!("{}: {e}", home.display()))
        .map(Result::unwrap)
        .filter(|e| e.path().join("diff").is_dir())
        .map(|e| {
            let md = fs::metadata(e.path().join("diff")).unwrap();
            (e.file_name().to_string_lossy().into_owned(), (md.dev(), md.ino()))
        })
        .collect()
}

/// What docker-adopt may change in a data root.
#[derive(Debug, PartialEq, Eq)]
struct AdoptState {
    /// The names in it.
    top: Vec<String>,
    /// The names in its `image/`.
    image: Vec<String>,
    /// Each container's `config.v2.json`: content and mode.
    configs: BTreeMap<String, (Vec<u8>, u32)>,
}

fn adopt_state(data_root: &Path) -> AdoptState {
    use std::os::unix::fs::PermissionsExt as _;
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(d)
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let mut configs = BTreeMap::new();
    for c in names(&data_root.join("containers")) {
        let p = data_root.join("containers").join(&c).join("config.v2.json");
        if let Ok(bytes) = fs::read(&p) {
            configs.insert(c, (bytes, fs::metadata(&p).unwrap().permissions().mode()));
        }
    }
    AdoptState {
        top: names(data_root),
        image: names(&data_root.join("image")),
        configs,
    }
}

/// The `Driver` of each container's `config.v2.json`.
fn container_drivers(data_root: &Path) -> Vec<String> {
    adopt_state(data_root)
        .configs
        .values()
        .map(|(bytes, _)| {
            let v: Value = serde_json::from_slice(bytes).unwrap();
            v["Driver"].as_str().unwrap_or("?").to_owned()
        })
        .collect()
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
