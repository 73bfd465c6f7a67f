//! Each command: checks its arguments, calls the driver, and says what
//! happened as text and as one JSON document.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, IsTerminal as _, Read, Write};
use std::path::{Path, PathBuf};

use overlay_driver::{Backend as _, CreateOpts, DriverError, GraphDriver, KernelBackend, Overlay2};
use overlay_fs::{FileType, Fs};
use overlay_layout::{DIFF_DIR, LayerId, MERGED_DIR};
use serde_json::{Value, json};

use crate::error::{Failure, Result, fail};
use crate::import::{self, Driver, HomeLock};
use crate::stream::Decoder;
use crate::{Cli, Command, Output, Serve, adopt, demo, progress, serve, snapshots};

/// Runs the command `cli` asks for.
///
/// # Errors
///
/// Whatever the command fails with, naming the layer or file.
pub fn run(cli: &Cli) -> Result<Output> {
    match &cli.command {
        Command::Serve(Serve::Containerd { socket, idmap_mounts }) => {
            return serve::containerd(&cli.home, socket, idmap_mounts);
        }
        Command::Serve(Serve::Docker { name, socket }) => {
            return serve::docker(cli.home_given.then_some(cli.home.as_path()), name, socket.as_deref());
        }
        Command::SampleImage {
            output,
            busybox,
            extra_layers,
            tag,
        } => {
            let opts = demo::SampleOptions {
                busybox: busybox.clone(),
                extra_layers: *extra_layers,
                tag: tag.clone(),
            };
            return demo::sample_image(output, &opts);
        }
        Command::DockerAdopt { data_root, name, back } => return adopt::run(data_root, name, *back),
        _ => {}
    }
    if matches!(
        cli.command,
        Command::Create { .. } | Command::Rm { .. } | Command::Apply { .. } | Command::Import { .. } | Command::Demo
    ) && cli.home.join(overlay_snapshotter::DB_FILE).exists()
    {
        fail!(
            "{} is a containerd snapshotter's home ({} is there): its layers are made and removed \
             through containerd only (ls, changes, diff and check read it)",
            cli.home.display(),
            overlay_snapshotter::DB_FILE
        );
    }
    let driver = open_driver(cli)?;
    let d = &driver;
    match &cli.command {
        Command::Create {
            id,
            parent,
            rw,
            size,
            label,
            uidmap,
            gidmap,
        } => {
            let mut opts = size.as_deref().map(CreateOpts::with_size).unwrap_or_default();
            opts.mount_label = label.clone();
            // Without --gidmap the gid map is the uid map (Podman's rule).
            let gids = if gidmap.is_empty() { uidmap } else { gidmap };
            opts.id_maps = overlay_archive::IdMaps {
                uids: uidmap.clone(),
                gids: gids.clone(),
            };
            create(d, id, parent.as_deref(), *rw, &opts)
        }
        Command::Rm { id } => rm(d, id),
        Command::Exists { id } => {
            let exists = d.exists(id);
            Ok(Output {
                json: json!({ "id": id, "exists": exists }),
                text: String::new(),
                code: u8::from(!exists),
            })
        }
        Command::Mount { id, label } => {
            require_layer(d, id)?;
            let path = d.get(id, label.as_deref())?;
            Ok(Output::new(
                json!({ "id": id, "path": path }),
                path.display().to_string(),
            ))
        }
        Command::Umount { id } => umount(d, id),
        Command::Ls => ls(d),
        Command::Metadata { id } => {
            require_layer(d, id)?;
            let meta = d.metadata(id)?;
            let text: Vec<String> = meta.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            Ok(Output::new(json!(meta), text.join("\n")))
        }
        Command::Status => status(d),
        Command::Apply { id, parent, file } => apply(d, id, parent.as_deref(), file.as_deref()),
        Command::Diff { id, parent, output } => diff(d, id, parent.as_deref(), output.as_deref(), cli.json),
        Command::Changes { id, parent } => {
            require_layer(d, id)?;
            let parent = parent_arg(d, id, parent.as_deref())?;
            let changes = d.changes(id, parent.as_deref())?;
            let lines: Vec<String> = changes.iter().map(ToString::to_string).collect();
            let list: Vec<Value> = lines
                .iter()
                .map(|l| {
                    let (kind, path) = l.split_at(1);
                    json!({ "kind": kind, "path": path.trim_start() })
                })
                .collect();
            Ok(Output::new(
                json!({ "id": id, "parent": parent, "changes": list }),
                lines.join("\n"),
            ))
        }
        Command::DiffSize { id, parent } => {
            require_layer(d, id)?;
            let parent = parent_arg(d, id, parent.as_deref())?;
            let size = d.diff_size(id, parent.as_deref())?;
            Ok(Output::new(
                json!({ "id": id, "parent": parent, "size": size }),
                size.to_string(),
            ))
        }
        Command::Import { image } => {
            let report = import::import(d, image)?;
            let text: Vec<&str> = report.images.iter().map(|i| i.top.as_str()).collect();
            let text = text.join("\n");
            Ok(Output::new(serde_json::to_value(&report).unwrap_or(Value::Null), text))
        }
        Command::Check { repair } => check(d, *repair),
        Command::Cleanup { quarantine } => cleanup(d, *quarantine),
        Command::Demo => demo::run(d),
        Command::Serve(_) | Command::SampleImage { .. } | Command::DockerAdopt { .. } => {
            Err(Failure::new("handled before the home is opened"))
        }
    }
}

fn open_driver(cli: &Cli) -> Result<Driver> {
    let home = cli.home.as_path();
    let hint = if rustix::process::geteuid().is_root() {
        ""
    } else {
        " (overlay2 needs root, or a user namespace: unshare --user --map-root-user --mount)"
    };
    let backend =
        KernelBackend::new(home).map_err(|e| Failure::new(format!("cannot use home {}: {e}{hint}", home.display())))?;
    // As deep as this kernel mounts (500 with the new mount API), not
    // Docker's 128.
    let depth = backend.max_depth();
    let options: &[&str] = if cli.ignore_chown_errors {
        &["overlay2.ignore_chown_errors=true"]
    } else {
        &[]
    };
    Overlay2::new(backend, options)
        .map(|d| d.with_depth_limit(depth))
        .map_err(|e| Failure::new(format!("cannot use home {}: {e}{hint}", home.display())))
}

/// A valid layer id (which the driver may still refuse later).
fn valid_id(id: &str) -> Result<()> {
    if id.starts_with(import::MARKER_PREFIX) {
        fail!(
            "invalid layer id {id:?}: names starting with {:?} are import markers",
            import::MARKER_PREFIX
        );
    }
    LayerId::new(id).map_err(|e| Failure::new(e.to_string()))?;
    Ok(())
}

/// A valid id of a layer that exists.
fn require_layer(d: &Driver, id: &str) -> Result<()> {
    valid_id(id)?;
    if !d.exists(id) {
        return Err(DriverError::NotFound(id.into()).into());
    }
    Ok(())
}

/// The parent to diff against: as given (`""` for none), else the layer's
/// own parent.
fn parent_arg(d: &Driver, id: &str, parent: Option<&str>) -> Result<Option<String>> {
    match parent {
        Some("") => Ok(None),
        Some(p) => {
            require_layer(d, p)?;
            Ok(Some(p.to_owned()))
        }
        None => Ok(d.parent_of(id)?.map(LayerId::into_string)),
    }
}

fn merged(id: &str) -> PathBuf {
    Path::new(id).join(MERGED_DIR)
}

fn is_mounted(d: &Driver, id: &str) -> bool {
    d.backend().is_mounted(&merged(id))
}

fn create(d: &Driver, id: &str, parent: Option<&str>, rw: bool, opts: &CreateOpts) -> Result<Output> {
    valid_id(id)?;
    let parent = parent.filter(|p| !p.is_empty());
    if let Some(p) = parent {
        require_layer(d, p)?;
    }
    if rw {
        d.create_read_write(id, parent, opts)?;
    } else {
        d.create(id, parent, opts)?;
    }
    Ok(Output::new(json!({ "id": id, "parent": parent, "rw": rw }), id))
}

fn rm(d: &Driver, id: &str) -> Result<Output> {
    require_layer(d, id)?;
    let kids = import::children(d, id)?;
    if !kids.is_empty() {
        let names: Vec<String> = kids.iter().map(|k| format!("{k:?}")).collect();
        fail!(
            "layer {id:?} has layers stacked on it ({}); remove them first",
            names.join(", ")
        );
    }
    d.remove(id)?;
    // A layer of an interrupted import, removed by hand: its marker goes too.
    let marker = d.backend().home_path().join(format!("{}{id}", import::MARKER_PREFIX));
    let _ = std::fs::remove_file(marker);
    Ok(Output::new(json!({ "id": id, "removed": true }), id))
}

fn umount(d: &Driver, id: &str) -> Result<Output> {
    require_layer(d, id)?;
    if d.is_base(id)? {
        // `mount` of a base layer mounts nothing (its diff dir is the tree).
        return Ok(Output::new(json!({ "id": id, "unmounted": false }), id));
    }
    if !is_mounted(d, id) {
        fail!("layer {id:?} is not mounted");
    }
    d.put(id)?;
    Ok(Output::new(json!({ "id": id, "unmounted": true }), id))
}

/// Bytes of a layer's own files (its `diff` dir): every non-directory, hard
/// links once, symlinks not followed, as Docker's `directory.Size`.
fn own_size(d: &Driver, id: &str) -> Result<u64> {
    let home = d.backend().home();
    let mut total = 0u64;
    let mut seen = HashSet::new();
    let mut dirs = vec![Path::new(id).join(DIFF_DIR)];
    while let Some(dir) = dirs.pop() {
        for e in home
            .read_dir(&dir)
            .map_err(|e| Failure::new(format!("layer {id:?}: {e}")))?
        {
            let path = dir.join(&e.name);
            if e.file_type == FileType::Directory {
                dirs.push(path);
                continue;
            }
            let Ok(m) = home.metadata(&path) else { continue };
            if m.nlink > 1 && !seen.insert((m.dev, m.ino)) {
                continue;
            }
            total += m.size;
        }
    }
    Ok(total)
}

/// Docker's human sizes (decimal units, about 4 significant digits).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes}B");
    }
    let s = if v < 10.0 {
        format!("{v:.3}")
    } else if v < 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    };
    format!("{}{}", s.trim_end_matches('0').trim_end_matches('.'), UNITS[unit])
}

fn ls(d: &Driver) -> Result<Output> {
    let mut rows = Vec::new();
    let mut docs = Vec::new();
    for id in d.layers()? {
        let id = id.as_str();
        let (parent, problem) = match d.parent_of(id) {
            Ok(p) => (p.map(LayerId::into_string), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let size = own_size(d, id).ok();
        let mounted = is_mounted(d, id);
        rows.push([
            id.to_owned(),
            parent
                .clone()
                .unwrap_or_else(|| if problem.is_some() { "?".into() } else { "-".into() }),
            size.map_or("?".into(), human),
            if mounted { "yes".into() } else { "no".into() },
        ]);
        let mut doc = json!({ "id": id, "parent": parent, "size": size, "mounted": mounted });
        if let Some(p) = problem {
            doc["problem"] = json!(p);
        }
        docs.push(doc);
    }
    Ok(Output::new(
        json!({ "layers": docs }),
        table(["ID", "PARENT", "SIZE", "MOUNTED"], &rows),
    ))
}

/// Left-aligned columns, two spaces apart.
fn table<const N: usize>(head: [&str; N], rows: &[[String; N]]) -> String {
    let mut width = head.map(str::len);
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:w$}  "));
            }
        }
        s
    };
    let mut out = vec![line(head.to_vec())];
    out.extend(rows.iter().map(|r| line(r.iter().map(String::as_str).collect())));
    out.join("\n")
}

fn status(d: &Driver) -> Result<Output> {
    let home = d.backend().home_path().display().to_string();
    let layers = d.layers()?.len();
    let pairs = d.status();
    let mut text = vec![
        format!("Driver: {}", d.name()),
        format!("Home: {home}"),
        format!("Layers: {layers}"),
    ];
    text.extend(pairs.iter().map(|(k, v)| format!("{k}: {v}")));
    let map: BTreeMap<&str, &str> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Ok(Output::new(
        json!({ "driver": d.name(), "home": home, "layers": layers, "status": map }),
        text.join("\n"),
    ))
}

fn apply(d: &Driver, id: &str, parent: Option<&str>, file: Option<&Path>) -> Result<Output> {
    require_layer(d, id)?;
    let parent = parent_arg(d, id, parent)?;
    let (input, name, size): (Box<dyn Read>, String, Option<u64>) = match file {
        Some(f) if f != Path::new("-") => {
            let file = std::fs::File::open(f).map_err(|e| Failure::new(format!("cannot open {}: {e}", f.display())))?;
            let size = file.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
            (Box::new(file), f.display().to_string(), size)
        }
        _ => (Box::new(io::stdin().lock()), "stdin".to_owned(), None),
    };
    let bar = progress::bytes(size, &format!("applying {name}"));
    let counted = crate::stream::Hashing::counting(input).with_progress(bar.clone());
    let (mut decoder, compression) = Decoder::new(counted).map_err(|e| Failure::new(format!("{name}: {e}")))?;
    let bytes = d
        .apply_diff(id, parent.as_deref(), &mut decoder)
        .map_err(|e| Failure::from(e).context(&name))?;
    Ok(Output::new(
        json!({ "id": id, "parent": parent, "bytes": bytes, "compression": compression.name() }),
        bytes.to_string(),
    ))
}

/// Counts bytes written and moves a progress bar.
struct Counting<W> {
    inner: W,
    count: u64,
    bar: indicatif::ProgressBar,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        self.bar.inc(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Bytes gathered before a write of the tar: the headers and small files
/// of a layer go out in few system calls, as GNU tar's records do.
const TAR_BUFFER: usize = 256 * 1024;

/// Standard output as a plain file. `io::stdout()` is line-buffered: a
/// tar's data, full of newlines, went out in 4 KiB writes through it
/// (147,176 writes for a 576 MB layer, 2.5× the time of `tar -cf`).
fn raw_stdout() -> Result<std::fs::File> {
    use std::os::fd::AsFd;
    let fd = io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Failure::new(format!("cannot use stdout: {e}")))?;
    Ok(std::fs::File::from(fd))
}

fn diff(d: &Driver, id: &str, parent: Option<&str>, output: Option<&Path>, json_out: bool) -> Result<Output> {
    let output = output.filter(|o| *o != Path::new("-"));
    if json_out && output.is_none() {
        return Err(Failure::usage(
            "diff --json needs -o FILE: the tar and the JSON document would both go to stdout",
        ));
    }
    if output.is_none() && io::stdout().is_terminal() {
        return Err(Failure::usage(
            "refusing to write a tar to a terminal: use -o FILE or redirect stdout",
        ));
    }
    require_layer(d, id)?;
    let parent = parent_arg(d, id, parent)?;
    let bar = progress::bytes(None, &format!("diff of {id}"));
    let bytes = match output {
        Some(path) => {
            // Written beside the target and renamed over it on success: a
            // failed diff leaves no half tar behind.
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(dir)
                .map_err(|e| Failure::new(format!("cannot write in {}: {e}", dir.display())))?;
            let mut w = Counting {
                inner: io::BufWriter::with_capacity(TAR_BUFFER, tmp),
                count: 0,
                bar: bar.clone(),
            };
            d.diff(id, parent.as_deref(), &mut w)?;
            w.flush()
                .map_err(|e| Failure::new(format!("cannot write {}: {e}", path.display())))?;
            let count = w.count;
            let tmp = w
                .inner
                .into_inner()
                .map_err(|e| Failure::new(format!("cannot write {}: {e}", path.display())))?;
            tmp.as_file()
                .sync_all()
                .map_err(|e| Failure::new(format!("cannot write {}: {e}", path.display())))?;
            tmp.persist(path)
                .map_err(|e| Failure::new(format!("cannot write {}: {}", path.display(), e.error)))?;
            count
        }
        None => {
            let mut w = Counting {
                inner: io::BufWriter::with_capacity(TAR_BUFFER, raw_stdout()?),
                count: 0,
                bar: bar.clone(),
            };
            d.diff(id, parent.as_deref(), &mut w)?;
            w.flush()
                .map_err(|e| Failure::new(format!("cannot write the tar to stdout: {e}")))?;
            w.count
        }
    };
    Ok(Output::new(
        json!({ "id": id, "parent": parent, "file": output, "bytes": bytes }),
        String::new(),
    ))
}

/// The variant name of a problem (`StagingLeftover`...), for JSON.
fn kind_of(p: &overlay_driver::Problem) -> String {
    format!("{p:?}")
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect()
}

fn check(d: &Driver, repair: bool) -> Result<Output> {
    let home = d.backend().home_path().to_path_buf();
    // Markers are judged only while no import runs (it holds the lock).
    let lock = if repair {
        Some(HomeLock::acquire(&home)?)
    } else {
        HomeLock::try_acquire(&home)?
    };
    let mut problems: Vec<(String, String)> = Vec::new();
    let mut notes = Vec::new();
    let marked = if lock.is_some() {
        import::markers(&home)?
    } else {
        Vec::new()
    };
    if lock.is_none() {
        notes.push("an import is running in this home: its layers are not judged".to_owned());
    }
    for id in &marked {
        problems.push((
            "InterruptedImport".into(),
            format!(
                "layer {id:?} was left incomplete by an interrupted import (marker {}{id})",
                import::MARKER_PREFIX
            ),
        ));
    }
    // While an import runs, the scratch of its applies is not a leftover.
    let importing = if lock.is_none() {
        import::markers(&home)?
    } else {
        Vec::new()
    };
    for p in d.check()? {
        if let overlay_driver::Problem::StagingLeftover(path) = &p
            && importing.iter().any(|id| path.starts_with(id))
        {
            continue;
        }
        problems.push((kind_of(&p), p.to_string()));
    }
    let snapshots = snapshots::open(&home, &mut notes);
    if let Some(s) = &snapshots {
        problems.extend(snapshots::check(s)?);
    }
    let mut repaired: Vec<(String, String)> = Vec::new();
    if repair {
        for id in &marked {
            let removed = import::repair_marker(d, id)?;
            let what = if removed.is_empty() {
                format!("removed the marker of layer {id:?}")
            } else {
                let names: Vec<String> = removed.iter().map(|r| format!("{r:?}")).collect();
                format!(
                    "removed incomplete layer {id:?} and what stacked on it: {}",
                    names.join(", ")
                )
            };
            repaired.push(("InterruptedImport".into(), what));
        }
        for p in d.repair()? {
            repaired.push((kind_of(&p), format!("{}: {p}", p.remedy())));
        }
        if let Some(s) = &snapshots {
            repaired.extend(snapshots::repair(s)?);
        }
    }
    let remaining: Vec<(String, String)> = if repair {
        let mut left: Vec<(String, String)> = d.check()?.iter().map(|p| (kind_of(p), p.to_string())).collect();
        if let Some(s) = &snapshots {
            left.extend(snapshots::check(s)?);
        }
        left
    } else {
        problems.clone()
    };
    // Held apart, not problems of the home: its layout is whole again,
    // and only a person can decide these files are worthless.
    let quarantined = d.quarantined()?;
    drop(lock);
    let doc = |list: &[(String, String)]| -> Vec<Value> {
        list.iter().map(|(k, m)| json!({ "kind": k, "message": m })).collect()
    };
    let mut text: Vec<String> = notes.clone();
    if repair {
        text.extend(repaired.iter().map(|(_, m)| m.clone()));
        text.extend(remaining.iter().map(|(_, m)| format!("still wrong: {m}")));
        if repaired.is_empty() && remaining.is_empty() {
            text.push(format!("{}: no problems found", home.display()));
        }
    } else {
        text.extend(problems.iter().map(|(_, m)| m.clone()));
        if problems.is_empty() {
            text.push(format!("{}: no problems found", home.display()));
        } else {
            text.push(format!(
                "{} problem(s); `overlay2 check --repair` fixes them",
                problems.len()
            ));
        }
    }
    for q in &quarantined {
        text.push(format!(
            "quarantined: {} ({}); `overlay2 cleanup --quarantine` deletes it",
            home.join(q.path()).display(),
            q.reason
        ));
    }
    let json = json!({
        "home": home,
        "quarantined": quarantined
            .iter()
            .map(|q| json!({ "name": q.name, "path": home.join(q.path()), "reason": q.reason }))
            .collect::<Vec<_>>(),
        "problems": doc(&problems),
        "repaired": doc(&repaired),
        "remaining": doc(&remaining),
        "notes": notes,
        "clean": remaining.is_empty(),
    });
    Ok(Output {
        json,
        text: text.join("\n"),
        code: u8::from(!remaining.is_empty()),
    })
}

fn cleanup(d: &Driver, quarantine: bool) -> Result<Output> {
    let mounted: Vec<String> = d
        .layers()?
        .into_iter()
        .map(LayerId::into_string)
        .filter(|id| is_mounted(d, id))
        .collect();
    d.cleanup()?;
    let still: Vec<&String> = mounted.iter().filter(|id| is_mounted(d, id)).collect();
    if !still.is_empty() {
        fail!("could not unmount {:?}", still);
    }
    let mut text: Vec<String> = mounted.iter().map(|id| format!("unmounted {id}")).collect();
    let deleted: Vec<String> = if quarantine {
        d.clear_quarantine()?.into_iter().map(|q| q.name).collect()
    } else {
        Vec::new()
    };
    text.extend(deleted.iter().map(|name| format!("deleted quarantined layer {name}")));
    Ok(Output::new(
        json!({ "unmounted": mounted, "deleted_from_quarantine": deleted }),
        text.join("\n"),
    ))
}

/// The merged tree of a mounted layer, as `tree` draws it, with sizes and
/// link targets; also as a flat list for JSON.
pub fn render_tree(fs: &dyn Fs) -> Result<(String, Vec<Value>)> {
    fn walk(fs: &dyn Fs, dir: &Path, prefix: &str, text: &mut Vec<String>, list: &mut Vec<Value>) -> Result<()> {
        let mut entries = fs.read_dir(dir).map_err(|e| Failure::new(e.to_string()))?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let n = entries.len();
        for (i, e) in entries.into_iter().enumerate() {
            let path = dir.join(&e.name);
            let last = i + 1 == n;
            let branch = if last { "└── " } else { "├── " };
            let name = e.name.to_string_lossy();
            let m = fs.metadata(&path).map_err(|e| Failure::new(e.to_string()))?;
            let shown = format!("/{}", path.display());
            match m.file_type {
                FileType::Directory => {
                    text.push(format!("{prefix}{branch}{name}/"));
                    list.push(json!({ "path": shown, "type": "dir" }));
                    let deeper = format!("{prefix}{}", if last { "    " } else { "│   " });
                    walk(fs, &path, &deeper, text, list)?;
                }
                FileType::Symlink => {
                    let target = fs.readlink(&path).map(|t| t.display().to_string()).unwrap_or_default();
                    text.push(format!("{prefix}{branch}{name} -> {target}"));
                    list.push(json!({ "path": shown, "type": "symlink", "target": target }));
                }
                FileType::Regular => {
                    text.push(format!("{prefix}{branch}{name} ({})", human(m.size)));
                    list.push(json!({ "path": shown, "type": "file", "size": m.size }));
                }
                other => {
                    text.push(format!("{prefix}{branch}{name} ({other:?})"));
                    list.push(json!({ "path": shown, "type": format!("{other:?}").to_lowercase() }));
                }
            }
        }
        Ok(())
    }
    let mut text = vec!["/".to_owned()];
    let mut list = Vec::new();
    walk(fs, Path::new(""), "", &mut text, &mut list)?;
    Ok((text.join("\n"), list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes_read_like_dockers() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(999), "999B");
        assert_eq!(human(1000), "1kB");
        assert_eq!(human(1234), "1.234kB");
        assert_eq!(human(72_800_000), "72.8MB");
        assert_eq!(human(123_456_789), "123.5MB");
    }

    #[test]
    fn tables_align() {
        let t = table(["A", "BB"], &[["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    BB\nxyz  1");
    }
}
