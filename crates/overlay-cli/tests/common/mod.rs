//! What the end-to-end tests against real daemons (`containerd.rs`,
//! `docker.rs`) share: finding the tools and skipping with a reason,
//! running commands with their output captured and a timeout, stopping
//! processes by pid, a private mount namespace to run the daemons in
//! ([`Namespace`]), the cgroup dirs the containers leave ([`Cgroups`]),
//! log files and their tails, and the leak checks (mounts naming the
//! test's directory, processes left in the namespace); and a server
//! process with the calls dockerd makes to a plugin ([`server`]).
//!
//! Each test binary uses part of it.
#![allow(dead_code, clippy::unwrap_used)]

pub mod server;

use std::fs::{self, File, OpenOptions};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `overlay2` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_overlay2");
/// The static busybox `overlay2 sample-image` puts in its images.
pub const BUSYBOX: &str = "/bin/busybox";
/// The longest any one command may take before the test calls it hung.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a daemon gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------ tools

/// PATH with the sbin directories root's tools live in.
pub fn path_env() -> String {
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

fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether `tool` (a name looked up in [`path_env`], or an absolute path)
/// is an executable file.
pub fn have_tool(tool: &str) -> bool {
    if tool.starts_with('/') {
        return executable(Path::new(tool));
    }
    path_env().split(':').any(|d| executable(&Path::new(d).join(tool)))
}

/// Why a test needing root, `tools` and the static busybox cannot run
/// here, if it cannot. `why_root` says what root is needed for.
pub fn skip_reason(why_root: &str, tools: &[&str]) -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some(format!("needs root ({why_root})"));
    }
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have_tool(t)).collect();
    if !missing.is_empty() {
        return Some(format!("missing {} (in {})", missing.join(", "), path_env()));
    }
    if !Path::new(BUSYBOX).is_file() {
        return Some(format!("no static busybox at {BUSYBOX} (Debian: busybox-static)"));
    }
    None
}

/// Prints `skipped: TEST: REASON` and answers true when the test cannot
/// run (see [`skip_reason`]).
pub fn skip(test: &str, why_root: &str, tools: &[&str]) -> bool {
    match skip_reason(why_root, tools) {
        Some(reason) => {
            eprintln!("skipped: {test}: {reason}");
            true
        }
        None => false,
    }
}

// --------------------------------------------------------------- commands

/// The command line of `cmd`, for messages.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What one command did.
#[derive(Debug)]
pub struct Out {
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    /// stdout as it came (tar streams).
    pub raw: Vec<u8>,
    pub stderr: String,
    pub took: Duration,
}

impl Out {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// What failed, for a panic message.
    pub fn failure(&self) -> String {
        format!(
            "`{}` failed ({}):\n--- stderr\n{}\n--- stdout\n{}",
            self.what,
            self.status,
            self.stderr.trim_end(),
            self.stdout.trim_end()
        )
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(self.success(), "{}", self.failure());
        self
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("`{}`: not JSON ({e}): {}", self.what, self.stdout))
    }
}

/// A command running in the background, its output collected.
pub struct Running {
    pub what: String,
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

/// Starts `cmd` with its stdout and stderr collected.
pub fn spawn(cmd: &mut Command) -> Running {
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
    pub fn wait(mut self, timeout: Duration) -> Out {
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
        let bytes = |h: Option<JoinHandle<Vec<u8>>>| h.map(|h| h.join().unwrap()).unwrap_or_default();
        let raw = bytes(self.stdout.take());
        Out {
            took: self.started.elapsed(),
            stdout: String::from_utf8_lossy(&raw).into_owned(),
            raw,
            stderr: String::from_utf8_lossy(&bytes(self.stderr.take())).into_owned(),
            status,
            what: self.what,
        }
    }
}

/// Runs `cmd` to its end (at most [`CMD_TIMEOUT`]).
#[track_caller]
pub fn run(cmd: &mut Command) -> Out {
    spawn(cmd).wait(CMD_TIMEOUT)
}

/// Polls `f` every 50 ms until it answers `Some`, for at most `timeout`.
#[track_caller]
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> (T, Duration) {
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

/// Writes `overlay2 sample-image` (busybox inside, `extra_layers` more
/// layers, tagged `tag`) to `path`.
pub fn sample_image(path: &Path, tag: &str, extra_layers: usize) {
    run(Command::new(BIN)
        .args(["sample-image", "-o"])
        .arg(path)
        .args(["--busybox", BUSYBOX, "--tag", tag, "--extra-layers"])
        .arg(extra_layers.to_string()))
    .ok();
}

// -------------------------------------------------------------- processes

/// Sends `sig` to `pid` (errors ignored: it may be gone).
pub fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Stops our child `child`: SIGTERM, up to `grace`, then SIGKILL. Returns
/// how it ended.
pub fn stop_child(child: &mut Child, grace: Duration) -> String {
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

/// SIGKILLs our child `child` (a crash) and reaps it.
pub fn kill_child(child: &mut Child) -> ExitStatus {
    let _ = child.kill();
    child.wait().unwrap()
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().chars().next()))
        .is_some_and(|state| state != Some('Z'))
}

/// `/proc/PID/cmdline`, spaces for NULs.
pub fn cmdline(pid: i32) -> String {
    let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmd).replace('\0', " ").trim_end().to_owned()
}

/// SIGKILLs each of `pids` (not our children: left by a daemon), saying
/// so, as `who` left them.
pub fn kill_strays(test: &str, who: &str, pids: &[i32]) {
    for &pid in pids {
        eprintln!("[{test}] left running by {who}, SIGKILL: {pid} {}", cmdline(pid));
        signal(u32::try_from(pid).unwrap_or(0), rustix::process::Signal::KILL);
    }
}

/// Waits until the daemon `child` listens on `socket` (a unix socket
/// path, possibly through `/proc/PID/root`); panics with the tail of
/// `log` if it exits first or takes longer than `timeout`.
#[track_caller]
pub fn wait_listening(child: &mut Child, socket: &Path, what: &str, log: &Path, timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("{what} exited ({st}):\n{}", tail(log, 40));
        }
        if UnixStream::connect(socket).is_ok() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "{what} did not listen on {} in {timeout:?}:\n{}",
            socket.display(),
            tail(log, 40)
        );
        thread::sleep(Duration::from_millis(10));
    }
}

// ------------------------------------------------------------------- logs

/// The last `lines` lines of the file at `path`.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `path` opened for appending (a daemon's log, kept across restarts).
pub fn log_file(path: &Path) -> File {
    OpenOptions::new().create(true).append(true).open(path).unwrap()
}

/// With `O2RS_KEEP_LOGS=DIR`, copies `dir/LOG` to `DIR/TEST-LOG` for each
/// of `logs` (before the test's directory goes).
pub fn keep_logs(test: &str, dir: &Path, logs: &[&str]) {
    if let Some(keep) = std::env::var_os("O2RS_KEEP_LOGS") {
        let _ = fs::create_dir_all(&keep);
        for log in logs {
            let _ = fs::copy(dir.join(log), Path::new(&keep).join(format!("{test}-{log}")));
        }
    }
}

// ---------------------------------------------------------------- tempdir

/// A fresh temporary directory `PREFIX*` (in `TMPDIR`), removed on drop.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().unwrap()
}

// ------------------------------------------------------------------ slots

/// At most `max` holders of a slot at once (daemons are heavy on 2-core
/// machines); the tests of a binary run in parallel otherwise.
pub struct Slot(&'static (Mutex<usize>, Condvar));

impl Slot {
    /// Waits for a slot of `slots` (a `static` pair starting at 0).
    pub fn take(slots: &'static (Mutex<usize>, Condvar), max: usize) -> Self {
        let (lock, cv) = slots;
        let mut used = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while *used >= max {
            used = cv.wait(used).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *used += 1;
        Self(slots)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (lock, cv) = self.0;
        *lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner) -= 1;
        cv.notify_one();
    }
}

// -------------------------------------------------------------- namespace

/// A private mount namespace owned by a holder process,
/// `unshare -m --propagation private sh -c 'SETUP && exec sleep infinity'`
/// (SETUP mounts what the daemons must not write on the host: a tmpfs on
/// `/run`, say). Programs run in it through `nsenter -t HOLDER -m --`
/// (nsenter execs: a child's pid is the program's). Killed on drop.
pub struct Namespace {
    holder: Child,
    /// `/proc/PID/ns/mnt` of the holder: how the namespace's processes are found.
    pub mnt_ns: String,
    killed: bool,
}

impl Namespace {
    /// Starts the holder (its stderr to `log`) and waits until SETUP is
    /// done and it sleeps.
    #[track_caller]
    pub fn start(setup: &str, log: &Path) -> Self {
        let holder = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(format!("{setup} && exec sleep infinity"))
            .env("PATH", path_env())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(log).unwrap())
            .spawn()
            .expect("cannot start unshare");
        let mut ns = Self {
            holder,
            mnt_ns: String::new(),
            killed: false,
        };
        let pid = ns.holder.id();
        let ours = fs::read_link("/proc/self/ns/mnt").unwrap();
        let start = Instant::now();
        loop {
            if let Some(st) = ns.holder.try_wait().unwrap() {
                panic!("the namespace holder exited ({st}): {}", tail(log, 20));
            }
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let mnt = fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
            if cmd.starts_with(b"sleep\0") && mnt.as_ref().is_some_and(|n| *n != ours) {
                ns.mnt_ns = mnt.unwrap().to_string_lossy().into_owned();
                return ns;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the namespace holder did not start"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The holder's pid.
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// `path` (absolute) as seen in the namespace, reachable from the
    /// host: `/proc/HOLDER/root/PATH`.
    pub fn path(&self, path: &Path) -> PathBuf {
        Path::new(&format!("/proc/{}/root", self.pid())).join(path.strip_prefix("/").unwrap_or(path))
    }

    /// `program` in the namespace (PATH set, `OVERLAY2_HOME` unset).
    pub fn nsenter(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.pid().to_string())
            .args(["-m", "--"])
            .arg(program)
            .env("PATH", path_env())
            .env_remove("OVERLAY2_HOME");
        c
    }

    /// The namespace's `/proc/PID/mountinfo` (empty once it is gone).
    pub fn mountinfo(&self) -> String {
        if self.killed {
            return String::new();
        }
        fs::read_to_string(format!("/proc/{}/mountinfo", self.pid())).unwrap_or_default()
    }

    /// The namespace's mount lines that contain `needle`.
    pub fn mounts_naming(&self, needle: &str) -> Vec<String> {
        self.mountinfo()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// Processes in the namespace that are not zombies (the holder included).
    pub fn processes(&self) -> Vec<i32> {
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

    /// Kills the holder; the namespace goes with its last process.
    pub fn kill(&mut self) {
        if !self.killed {
            self.killed = true;
            let _ = self.holder.kill();
            let _ = self.holder.wait();
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------- cgroups

/// The cgroup dirs named `name` at the top of every hierarchy
/// (`/sys/fs/cgroup/<controller>/<name>` on cgroup v1,
/// `/sys/fs/cgroup/<name>` on v2): a containerd namespace's, or a
/// dockerd `--cgroup-parent`'s, exactly the test's own to remove.
pub struct Cgroups {
    pub name: String,
}

impl Cgroups {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    /// Those that exist.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let root = Path::new("/sys/fs/cgroup");
        let mut found = Vec::new();
        if root.join(&self.name).is_dir() {
            found.push(root.join(&self.name));
        }
        if let Ok(rd) = fs::read_dir(root) {
            for e in rd.filter_map(Result::ok) {
                let d = e.path().join(&self.name);
                if d.is_dir() {
                    found.push(d);
                }
            }
        }
        found
    }

    fn collect_pids(dir: &Path, pids: &mut Vec<i32>) {
        if let Ok(s) = fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.filter_map(Result::ok) {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    Self::collect_pids(&e.path(), pids);
                }
            }
        }
    }

    /// The processes in them and below, deduplicated.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for d in self.dirs() {
            Self::collect_pids(&d, &mut pids);
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// rmdir `dir` and the cgroups below it, deepest first.
    fn rm(dir: &Path) -> std::io::Result<()> {
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.filter_map(Result::ok) {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    Self::rm(&e.path())?;
                }
            }
        }
        fs::remove_dir(dir)
    }

    /// Removes them (retrying for 5 s while the last processes exit);
    /// what could not be removed, and why.
    pub fn remove(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for d in self.dirs() {
            let mut result = Self::rm(&d);
            let start = Instant::now();
            while result.is_err() && start.elapsed() < Duration::from_secs(5) {
                thread::sleep(Duration::from_millis(50));
                result = Self::rm(&d);
            }
            if let Err(e) = result {
                errors.push(format!("{}: {e}", d.display()));
            }
        }
        errors
    }
}

// ------------------------------------------------------------------ leaks

/// Mount lines of the host (this process's `/proc/self/mountinfo`) that
/// contain `needle`.
pub fn host_mounts_naming(needle: &str) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// No host mount names `dir`.
#[track_caller]
pub fn assert_no_host_mounts(dir: &Path) {
    let d = dir.to_string_lossy().into_owned();
    let m = host_mounts_naming(&d);
    assert!(
        m.is_empty(),
        "mounts naming {d} in the host's mountinfo:\n{}",
        m.join("\n")
    );
}

/// After a teardown: no process of the namespace, none of `killed`
/// survived, the cgroup dirs are gone and no host mount names `dir`.
#[track_caller]
pub fn assert_nothing_left(ns: &Namespace, killed: &[i32], cgroups: &Cgroups, cgroup_errors: &[String], dir: &Path) {
    assert_no_host_mounts(dir);
    let left = ns.processes();
    assert!(left.is_empty(), "processes left in the namespace: {left:?}");
    let alive_strays: Vec<i32> = killed.iter().copied().filter(|p| alive(*p)).collect();
    assert!(alive_strays.is_empty(), "processes survived SIGKILL: {alive_strays:?}");
    assert!(cgroup_errors.is_empty(), "cgroup dirs not removed: {cgroup_errors:?}");
    let cg = cgroups.dirs();
    assert!(cg.is_empty(), "cgroup dirs left: {cg:?}");
}

/// Waits (up to [`STOP_GRACE`]) until none of `pids` is alive.
pub fn wait_dead(pids: &[i32]) {
    let start = Instant::now();
    while start.elapsed() < STOP_GRACE && pids.iter().any(|p| alive(*p)) {
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (up to [`STOP_GRACE`]) until the namespace has no process and
/// none of `pids` is alive.
pub fn wait_gone(ns: &Namespace, pids: &[i32]) {
    let start = Instant::now();
    while start.elapsed() < STOP_GRACE && (!ns.processes().is_empty() || pids.iter().any(|p| alive(*p))) {
        thread::sleep(Duration::from_millis(20));
    }
}
