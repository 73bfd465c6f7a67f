//! `overlay2 docker-adopt`: hands a Docker data root made by Docker's
//! built-in overlay2 driver to the overlay2-rs plugin (or back), without
//! pulling or copying a layer.
//!
//! dockerd keys everything by the storage driver's name: the layers live
//! in `DATA/<driver>/`, the image and layer databases in
//! `DATA/image/<driver>/`, and each container's `config.v2.json` says
//! `"Driver": "<driver>"` (dockerd skips containers of another driver).
//! The homes are the same format (that is the point of overlay2-rs), so
//! adopting is three renames of names, not of data: the two directories
//! are renamed in place (same filesystem, the files do not move) and the
//! containers' `Driver` fields rewritten. Each step is idempotent, so an
//! interrupted run is finished by running it again; `--back` undoes it.
//!
//! It refuses while dockerd runs on the data root (dockerd holds a `flock`
//! on `volumes/metadata.db`, which adopt holds itself while it works) and
//! while a layer is mounted (containers left running by `live-restore`).

use std::fs::File;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use serde_json::{Value, json};

use crate::Output;
use crate::error::{Failure, Result, fail};

/// The built-in driver's name.
const BUILTIN: &str = "overlay2";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Failure + '_ {
    move |e| Failure::new(format!("{}: {e}", path.display()))
}

/// A mount point as `/proc/self/mountinfo` writes it, unescaped (space,
/// tab, newline and backslash are written as `\ooo`).
fn unescape_mount_point(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let Some(d) = octal {
            out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8).wrapping_add(c - b'0')));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Is anything mounted below `dir` (a running container's rootfs)?
fn mounted_below(dir: &Path) -> Result<Option<String>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(io(Path::new("/proc/self/mountinfo")))?;
    let prefix = format!("{}/", dir.display());
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_point)
        .find(|m| m.starts_with(&prefix)))
}

/// Takes the `flock` dockerd holds on `DATA/volumes/metadata.db` (its
/// volume store, a bolt database open as long as dockerd runs) for as
/// long as the returned file is open: none if dockerd runs, and a dockerd
/// started meanwhile waits for it. `None` without a volume store (a
/// data root no dockerd has started on yet).
fn lock_out_dockerd(data_root: &Path) -> Result<Option<File>> {
    let db = data_root.join("volumes").join("metadata.db");
    let f = match File::open(&db) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&db)(e)),
    };
    match flock(&f, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(f)),
        Err(rustix::io::Errno::WOULDBLOCK) => fail!(
            "dockerd is running on {} ({} is locked): stop it before handing the data root over",
            data_root.display(),
            db.display()
        ),
        Err(e) => Err(Failure::new(format!("{}: flock: {e}", db.display()))),
    }
}

/// Whether `from` still has to be renamed to `to` (false: done already).
fn to_rename(from: &Path, to: &Path) -> Result<bool> {
    match (from.exists(), to.exists()) {
        (true, false) => Ok(true),
        (false, true) => Ok(false),
        (false, false) => fail!("{} does not exist: is this a data root of that driver?", from.display()),
        (true, true) => fail!(
            "both {} and {} exist: the data root already has layers of both drivers; refusing to mix them \
             (did dockerd already run on the other driver?)",
            from.display(),
            to.display()
        ),
    }
}

/// Rewrites `"Driver": from` to `to` in every container's config.
fn rewrite_containers(data_root: &Path, from: &str, to: &str, done: &mut Vec<String>) -> Result<usize> {
    let dir = data_root.join("containers");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(0);
    };
    let mut n = 0;
    for e in entries {
        let e = e.map_err(io(&dir))?;
        let config = e.path().join("config.v2.json");
        let Ok(text) = std::fs::read(&config) else { continue };
        let mut doc: Value = serde_json::from_slice(&text)
            .map_err(|err| Failure::new(format!("{}: not JSON: {err}", config.display())))?;
        if doc.get("Driver").and_then(Value::as_str) != Some(from) {
            continue;
        }
        doc["Driver"] = json!(to);
        // As dockerd writes it: a temporary file, synced, renamed over;
        // with the original's mode (dockerd's is 0600: it holds the
        // container's environment).
        let mode = std::fs::metadata(&config).map_err(io(&config))?.permissions().mode();
        let tmp: PathBuf = config.with_extension("json.overlay2-adopt");
        let write = || -> std::io::Result<()> {
            std::fs::write(&tmp, doc.to_string())?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode & 0o7777))?;
            File::open(&tmp)?.sync_all()
        };
        write().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &config).map_err(io(&config))?;
        n += 1;
    }
    if n > 0 {
        done.push(format!("{n} container(s) now say \"Driver\": {to:?}"));
    }
    Ok(n)
}

/// Carries `data_root` from Docker's built-in overlay2 to the plugin
/// `name` (or back, with `back`). dockerd must be stopped.
pub fn run(data_root: &Path, name: &str, back: bool) -> Result<Output> {
    if name.is_empty() || name.contains('/') || name == BUILTIN {
        fail!("invalid plugin name {name:?}");
    }
    let (from, to) = if back { (name, BUILTIN) } else { (BUILTIN, name) };
    if !data_root.join("image").is_dir() {
        fail!(
            "{} has no image/ directory: not a Docker data root",
            data_root.display()
        );
    }
    // Mount points are absolute and symlink-free: so must the prefix be.
    let data_root = &std::fs::canonicalize(data_root).map_err(io(data_root))?;
    let from_home = data_root.join(from);
    if let Some(m) = mounted_below(&from_home)? {
        fail!("{m} is mounted: stop dockerd (and its containers) before handing the data root over");
    }
    let _lock = lock_out_dockerd(data_root)?;
    // Both checked before either is renamed: no half-done refusal.
    let renames = [
        (data_root.join("image").join(from), data_root.join("image").join(to)),
        (from_home, data_root.join(to)),
    ];
    let mut todo = Vec::new();
    for (a, b) in &renames {
        todo.push(to_rename(a, b)?);
    }
    let mut done = Vec::new();
    for ((a, b), todo) in renames.iter().zip(todo) {
        if todo {
            std::fs::rename(a, b).map_err(io(a))?;
            done.push(format!("renamed {} to {}", a.display(), b.display()));
        }
    }
    let containers = rewrite_containers(data_root, from, to, &mut done)?;
    let start = if back {
        "dockerd --storage-driver overlay2".to_owned()
    } else {
        format!("overlay2 serve docker --name {name}, then dockerd --experimental --storage-driver {name}")
    };
    if done.is_empty() {
        done.push(format!("{} was already handed over to {to}", data_root.display()));
    }
    done.push(format!("start: {start}"));
    Ok(Output::new(
        json!({ "data_root": data_root, "from": from, "to": to, "containers": containers, "done": done }),
        done.join("\n"),
    ))
}

#[cfg(test)]
mod tests {
    use super::unescape_mount_point;

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(
            unescape_mount_point("/var/lib/docker/overlay2/x/merged"),
            "/var/lib/docker/overlay2/x/merged"
        );
        assert_eq!(
            unescape_mount_point(r"/srv/my\040docker/overlay2"),
            "/srv/my docker/overlay2"
        );
        assert_eq!(unescape_mount_point(r"/a\134b\011c\012"), "/a\\b\tc\n");
        assert_eq!(unescape_mount_point(r"/a\04"), r"/a\04");
    }
}
