//! Running a test rootless: inside a user namespace, as an unprivileged
//! user, the way `unshare --user --map-root-user` or rootlesskit (with a
//! sub-id range `newuidmap` writes) start a rootless engine.
//!
//! A process with threads cannot `unshare(CLONE_NEWUSER)`, and the test
//! harness has threads; so the test (run as root) starts a child: the
//! test binary itself, filtered to one test with `--exact`, under
//! `setpriv --reuid U ... unshare --user ... --mount`, with [`CHILD_ENV`]
//! set. The child runs the test's body on the kernel backend and the
//! parent fails with the child's output unless it reports the test passed.
//!
//! Shared with the CLI's tests (`#[path]`), which start the `overlay2`
//! binary the same way ([`Map::command`]).
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Set in a child started by [`run_test`]: the test's body is to run here.
pub const CHILD_ENV: &str = "OVERLAY2_TEST_ROOTLESS_CHILD";

/// The user namespace a rootless test runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Map {
    /// `--map-root-user`: the user's own uid is root; no other id exists.
    Root,
    /// `0:SUBUID:65536`, the sub-id range `/etc/subuid` gives the user
    /// (written by `newuidmap`), and the process becomes its root.
    SubIds,
}

/// The unprivileged user a rootless test runs as: its uid and gid, and
/// the first host id of its sub-id range with 65536 ids (if it has one).
#[derive(Debug, Clone, Copy)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub sub_uid: Option<u32>,
    pub sub_gid: Option<u32>,
}

/// The first range of at least 65536 ids that `file` (`/etc/subuid`)
/// gives `name` or `uid`.
fn sub_range(file: &str, name: &str, uid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.trim().split(':').collect();
        let [who, first, count] = f[..] else { return None };
        let ours = who == name || who.parse() == Ok(uid);
        (ours && count.parse::<u32>().ok()? >= 65536).then(|| first.parse().ok())?
    })
}

impl User {
    /// The first user of `/etc/passwd` that `/etc/subuid` gives ids to
    /// (so both maps can be tested), else uid and gid 1500, which needs no
    /// passwd entry for `--map-root-user`.
    pub fn find() -> Self {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        for l in passwd.lines() {
            let f: Vec<&str> = l.split(':').collect();
            let (Some(name), Some(Ok(uid)), Some(Ok(gid))) =
                (f.first(), f.get(2).map(|u| u.parse()), f.get(3).map(|g| g.parse()))
            else {
                continue;
            };
            if uid == 0 {
                continue;
            }
            if let Some(sub_uid) = sub_range("/etc/subuid", name, uid) {
                return Self {
                    uid,
                    gid,
                    sub_uid: Some(sub_uid),
                    sub_gid: sub_range("/etc/subgid", name, uid),
                };
            }
        }
        Self {
            uid: 1500,
            gid: 1500,
            sub_uid: None,
            sub_gid: None,
        }
    }

    /// The host uid and gid the namespace's root is under `map`: who must
    /// own a directory the rootless process is to write in.
    pub fn root_of(&self, map: Map) -> (u32, u32) {
        match map {
            Map::Root => (self.uid, self.gid),
            Map::SubIds => (self.sub_uid.unwrap(), self.sub_gid.unwrap()),
        }
    }
}

impl Map {
    /// Both maps, for tests that cover each.
    pub const ALL: [Map; 2] = [Map::Root, Map::SubIds];

    /// `setpriv ... unshare ...` running `program` as `user` in a new
    /// user and mount namespace with this map, mounts private.
    pub fn command(self, user: &User, program: &Path) -> Command {
        let mut c = Command::new("setpriv");
        c.args([
            format!("--reuid={}", user.uid),
            format!("--regid={}", user.gid),
            "--clear-groups".into(),
            "unshare".into(),
            "--user".into(),
            "--mount".into(),
            "--propagation=private".into(),
        ]);
        match self {
            Map::Root => {
                c.arg("--map-root-user");
            }
            Map::SubIds => {
                let (u, g) = user.root_of(self);
                c.args([
                    format!("--map-users={u},0,65536"),
                    format!("--map-groups={g},0,65536"),
                    "--setuid=0".into(),
                    "--setgid=0".into(),
                ]);
            }
        }
        c.arg(program);
        c
    }

    /// Why a rootless child with this map cannot run `program` here, if
    /// it cannot: not root (needed to become the unprivileged user), no
    /// `setpriv`/`unshare`/`newuidmap`, no sub-ids, unprivileged user
    /// namespaces disabled, `program` out of the user's reach (a checkout
    /// under a private directory). Tried once for real.
    pub fn skip_reason(self, user: &User, program: &Path) -> Option<String> {
        if !rustix::process::geteuid().is_root() {
            return Some("needs root (to start the test as an unprivileged user)".into());
        }
        if self == Map::SubIds && (user.sub_uid.is_none() || user.sub_gid.is_none()) {
            return Some("no user with 65536 sub-ids in /etc/subuid and /etc/subgid".into());
        }
        let mut probe = self.command(user, Path::new("/bin/sh"));
        probe.args(["-c", "test -x \"$0\" || exit 3"]).arg(program);
        match probe.output() {
            Ok(o) if o.status.success() => None,
            Ok(o) if o.status.code() == Some(3) => Some(format!(
                "uid {} cannot run {} (is it under a private directory?)",
                user.uid,
                program.display()
            )),
            Ok(o) => Some(format!(
                "cannot start a user namespace as uid {} ({}): {}",
                user.uid,
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Some(format!("cannot run setpriv/unshare: {e}")),
        }
    }
}

/// `program` as the unprivileged user can run it, wherever it is: the
/// path of a descriptor on it (`/proc/self/fd/N`) that this process keeps
/// open and its children inherit. Exec through it checks only the file's
/// own mode, not the directories above it, so a checkout in a private
/// directory (`/root/...`, as CI clones) runs rootless too.
pub fn runnable(program: &Path) -> PathBuf {
    use std::os::fd::{AsRawFd as _, OwnedFd};
    static OPEN: std::sync::Mutex<Vec<(PathBuf, OwnedFd)>> = std::sync::Mutex::new(Vec::new());
    let mut open = OPEN.lock().unwrap();
    if let Some((_, fd)) = open.iter().find(|(p, _)| p == program) {
        return PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    }
    // No O_CLOEXEC: the children are to inherit it.
    let fd = rustix::fs::open(program, rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty()).unwrap();
    let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    open.push((program.to_path_buf(), fd));
    path
}

/// Is this process the rootless child of [`run_test`]?
pub fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// The map this rootless child was started with.
pub fn child_map() -> Map {
    match std::env::var(CHILD_ENV).as_deref() {
        Ok("Root") => Map::Root,
        Ok("SubIds") => Map::SubIds,
        other => panic!("{CHILD_ENV} is {other:?}, not a map"),
    }
}

/// Runs the test `name` (its full path in the test binary, e.g.
/// `kernel::create_empty`) in a rootless child with `map`, and fails with
/// the child's output unless it reports exactly one test passed. Skips,
/// saying why, where rootless children cannot start.
pub fn run_test(map: Map, name: &str) {
    let user = User::find();
    let exe = runnable(&std::env::current_exe().unwrap());
    if let Some(why) = map.skip_reason(&user, &exe) {
        eprintln!("skipped rootless ({map:?}): {why}");
        return;
    }
    let out = map
        .command(&user, &exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{map:?}"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "rootless ({map:?}, uid {}) {name}: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        user.uid,
        out.status
    );
    eprintln!("rootless ({map:?}, uid {}): {name} passed", user.uid);
    // A skip inside the namespace is a skip here too, not a pass.
    for line in stderr.lines().filter(|l| l.contains("skipped")) {
        eprintln!("rootless ({map:?}): {line}");
    }
}

/// Does this process's user namespace map `uid` and `gid` (always, in
/// the initial one)? Only then can a file be given them.
pub fn namespace_maps(uid: u32, gid: u32) -> bool {
    use overlay_mount::userns::{IdKind, own_ranges};
    let maps =
        |kind, id: u32| own_ranges(kind).is_none_or(|r| r.iter().any(|&(first, n)| id >= first && id - first < n));
    maps(IdKind::Uid, uid) && maps(IdKind::Gid, gid)
}

/// In the rootless child: checks that it really is in a user namespace,
/// so a test that should run rootless cannot pass as root.
pub fn assert_in_user_namespace() {
    assert!(
        !overlay_mount::userns::in_initial(),
        "{CHILD_ENV} is set but this process is in the initial user namespace"
    );
}

/// Everything under `dir` (a home): owners, modes, xattrs, contents and
/// times, but directories' mtimes (an apply's staging comes and goes in
/// the layer's directory, failed or not): what "changes nothing" compares.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let tree = overlay_fs::HostFs::new(dir).unwrap();
    let how = overlay_fs::Observe {
        root: true,
        ..overlay_fs::Observe::default()
    };
    let mut out = overlay_fs::observe_extraction(&tree, &how).unwrap();
    for v in out.values_mut().filter(|v| v.starts_with("Directory")) {
        *v = v
            .split(' ')
            .filter(|w| !w.starts_with("mtime="))
            .collect::<Vec<_>>()
            .join(" ");
    }
    out
}
