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

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::Output;
use crate::error::{Failure, Result, fail};

/// The built-in driver's name.
const BUILTIN: &str = "overlay2";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Failure + '_ {
    move |e| Failure::new(format!("{}: {e}", path.display()))
}

/// Is anything mounted below `dir` (a running container's rootfs)?
fn mounted_below(dir: &Path) -> Result<Option<String>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(io(Path::new("/proc/self/mountinfo")))?;
    let prefix = format!("{}/", dir.display());
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .find(|m| m.starts_with(&prefix))
        .map(str::to_owned))
}

/// Renames `from` to `to` unless that was done already.
fn rename_once(from: &Path, to: &Path, done: &mut Vec<String>) -> Result<()> {
    match (from.exists(), to.exists()) {
        (true, false) => {
            std::fs::rename(from, to).map_err(io(from))?;
            done.push(format!("renamed {} to {}", from.display(), to.display()));
            Ok(())
        }
        (false, true) => Ok(()),
        (false, false) => fail!("{} does not exist: is this a data root of that driver?", from.display()),
        (true, true) => fail!(
            "both {} and {} exist: the data root already has layers of both drivers; refusing to mix them",
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
        let tmp: PathBuf = config.with_extension("json.overlay2-adopt");
        std::fs::write(&tmp, doc.to_string()).map_err(io(&tmp))?;
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
    let from_home = data_root.join(from);
    if let Some(m) = mounted_below(&from_home)? {
        fail!("{m} is mounted: stop dockerd (and its containers) before handing the data root over");
    }
    let mut done = Vec::new();
    rename_once(
        &data_root.join("image").join(from),
        &data_root.join("image").join(to),
        &mut done,
    )?;
    rename_once(&from_home, &data_root.join(to), &mut done)?;
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
