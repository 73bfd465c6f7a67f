//! dockerd 20.10 with `--userns-remap` on `overlay2 serve docker`, next
//! to the same daemon on Docker's built-in overlay2 (the reference).
//!
//! dockerd sends its id maps in Init (`UIDMaps`/`GIDMaps`, here
//! `0:100000:65536`) and keeps its state in `<data-root>/100000.100000`,
//! so Init's Home is under it. The scenario, run once per driver in one
//! rig ([`scenario`]):
//! - `docker load` of the sample image plus a layer with files of uid
//!   1000 and gid 2000, one under directories the tar has no entry for;
//! - `docker run`: inside, `/` and the image's files show the tar's ids
//!   (root is root, 1000 is 1000) and root can write in `/`;
//! - a container that writes a file as root and one as 1000; `docker diff`;
//!   `docker cp` of a host file into it; `docker commit` (Diff shifts the
//!   ids back) and a run of the new image;
//!   `docker save`: the committed and the uid layers' tars hold 0 and 1000,
//!   not 100000 and 101000.
//!
//! On the host, the owners and modes of everything in the home that the
//! scenario made ([`Owners`]: the home, every layer dir, `diff`, `work`,
//! `work/work`, `merged` if present, and every file in every `diff`, by
//! role and path rather than layer id) must be what the built-in overlay2
//! made, entry for entry, and a few are checked outright: files shifted
//! by 100000 (1000 -> 101000), `diff` and `work` the remapped root's,
//! layer dirs `0710 root:100000`. Last, the plugin is killed and started
//! again under the running dockerd: the maps come back with the Init it
//! kept, and a layer loaded then is shifted too.
//!
//! Needs what `docker.rs` needs, plus `/etc/passwd`, `/etc/group`,
//! `/etc/subuid` and `/etc/subgid` to bind-mount over in the namespace.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;
#[macro_use]
mod docker_rig;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use docker_rig::image::{image_with_layer, layer_tar, saved_layers, tar_owners};
use docker_rig::{BUILTIN, REMAP_BASE, Rig};

const IMG: &str = "o2userns/img:latest";
const COMMITTED: &str = "o2userns/committed:latest";
/// Writes in `/` as root and in 1000's home as 1000 (busybox has no
/// `su`: the file is made by root and given away).
const WRITER: &str =
    "echo root > /rootfile && echo new > /home/u/new && busybox chown 1000:1000 /home/u/new && rm /home/u/file";

/// The layer on top of the sample image: container ids 0, 1000 and 2000;
/// `opt/nodir/` has no entry of its own (the applier makes it).
fn uid_layer() -> Vec<u8> {
    layer_tar(&[
        ("home/", 0, 0, 0o755, b""),
        ("home/u/", 1000, 1000, 0o750, b""),
        ("home/u/file", 1000, 1000, 0o640, b"owned by 1000\n"),
        ("home/u/keep", 1000, 2000, 0o600, b"group 2000\n"),
        ("srv/shared", 0, 2000, 0o664, b"group 2000\n"),
        ("opt/nodir/file", 1000, 1000, 0o644, b"parent without entry\n"),
    ])
}

/// `KIND MODE UID:GID` of `path` (not followed).
fn owner(path: &Path) -> String {
    let md = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let kind = match md.mode() & 0o170_000 {
        0o040_000 => 'd',
        0o120_000 => 'l',
        0o020_000 => 'c',
        _ => 'f',
    };
    format!("{kind} {:04o} {}:{}", md.mode() & 0o7777, md.uid(), md.gid())
}

/// What a scenario left on disk: `ROLE/PATH` -> `KIND MODE UID:GID`.
type Owners = BTreeMap<String, String>;

/// Every entry under `dir`, relative paths prefixed with `label/`.
fn walk(dir: &Path, label: &str, out: &mut Owners) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(Result::unwrap).collect();
    entries.sort_by_key(fs::DirEntry::file_name);
    for e in entries {
        let label = format!("{label}/{}", e.file_name().to_string_lossy());
        out.insert(label.clone(), owner(&e.path()));
        if e.file_type().unwrap().is_dir() {
            walk(&e.path(), &label, out);
        }
    }
}

/// The layer whose `diff` is `diff`: its dir, `diff` (and every file in
/// it), `work`, `work/work`, `merged`, those that exist.
fn layer_owners(diff: &Path, label: &str, out: &mut Owners) {
    let layer = diff.parent().unwrap();
    out.insert(format!("{label}/"), owner(layer));
    for part in ["diff", "work", "work/work", "merged"] {
        if fs::symlink_metadata(layer.join(part)).is_ok() {
            out.insert(format!("{label}/{part}"), owner(&layer.join(part)));
        }
    }
    walk(diff, &format!("{label}/diff"), out);
}

/// The `diff` dirs of a container's or an image's layers, top first, from
/// `docker inspect`'s `GraphDriver.Data` (UpperDir, then LowerDir).
fn diff_dirs(rig: &Rig, what: &str) -> Vec<PathBuf> {
    let data = rig
        .docker_ok(&["inspect", "-f", "{{json .GraphDriver.Data}}", what])
        .json();
    let mut dirs = vec![PathBuf::from(data["UpperDir"].as_str().unwrap())];
    dirs.extend(
        data["LowerDir"]
            .as_str()
            .unwrap_or_default()
            .split(':')
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
    );
    for d in &dirs {
        assert!(
            d.starts_with(rig.home()),
            "{what}: {} is not in {}",
            d.display(),
            rig.home().display()
        );
    }
    dirs
}

/// Runs the scenario on the rig's current driver; what it left on disk
/// and `docker diff` of the writer. Removes everything afterwards.
fn scenario(rig: &Rig, image: &Path) -> (Owners, Vec<String>) {
    let t = rig.driver.clone();
    rig.load(image, IMG);
    // Inside: the tar's ids, and root may write in `/` (its upper dir).
    rig.docker_prints(
        &[
            "run",
            "--rm",
            "--network",
            "none",
            IMG,
            "sh",
            "-c",
            "id -u; stat -c '%u:%g %a %n' / /home/u /home/u/file /home/u/keep /srv/shared /opt/nodir/file /bin/busybox; \
             touch /in-root && echo wrote",
        ],
        "0\n0:0 755 /\n1000:1000 750 /home/u\n1000:1000 640 /home/u/file\n1000:2000 600 /home/u/keep\n\
         0:2000 664 /srv/shared\n1000:1000 644 /opt/nodir/file\n0:0 755 /bin/busybox\nwrote\n",
    );
    rig.docker_ok(&["run", "--name", "writer", "--network", "none", IMG, "sh", "-c", WRITER]);
    // dockerd's own chown of what it copies in (into Get's dir).
    let host_file = rig.dir().join("hostfile");
    fs::write(&host_file, "from the host\n").unwrap();
    rig.docker_ok(&["cp", host_file.to_str().unwrap(), "writer:/copied"]);
    let diff = rig.diff("writer");
    eprintln!("[{t}] docker diff writer: {diff:?}");
    rig.docker_ok(&["commit", "writer", COMMITTED]);
    rig.docker_prints(
        &[
            "run",
            "--rm",
            "--network",
            "none",
            COMMITTED,
            "sh",
            "-c",
            "stat -c '%u:%g %n' /rootfile /home/u/new; test -e /home/u/file || echo gone",
        ],
        "0:0 /rootfile\n1000:1000 /home/u/new\ngone\n",
    );
    // docker save: the committed layer came from our Diff, the uid layer
    // from dockerd's tar-split and the files under Get's dir.
    let saved = rig.dir().join(format!("saved-{t}.tar"));
    rig.docker_ok(&["save", "-o", saved.to_str().unwrap(), COMMITTED]);
    let layers = saved_layers(&saved);
    assert_eq!(
        layers.len(),
        5,
        "{t}: 3 sample layers, the uid layer, the committed one"
    );
    let top = tar_owners(&layers[4]);
    eprintln!("[{t}] committed layer tar: {top:?}");
    assert_eq!(top.get("rootfile"), Some(&(0, 0)), "{t}: committed layer: {top:?}");
    assert_eq!(
        top.get("home/u/new"),
        Some(&(1000, 1000)),
        "{t}: committed layer: {top:?}"
    );
    assert!(top.contains_key("home/u/.wh.file"), "{t}: committed layer: {top:?}");
    let uids = tar_owners(&layers[3]);
    assert_eq!(uids, tar_owners(&uid_layer()), "{t}: the uid layer as saved");

    let mut owners = Owners::new();
    owners.insert("home".into(), owner(&rig.home()));
    owners.insert("home/l".into(), owner(&rig.home().join("l")));
    for (i, d) in diff_dirs(rig, "writer").iter().enumerate() {
        layer_owners(d, &format!("writer{i}"), &mut owners);
    }
    layer_owners(&diff_dirs(rig, COMMITTED)[0], "committed", &mut owners);
    rig.remove_all_and_check_empty();
    (owners, diff)
}

#[test]
fn userns_remap_plugin_owns_and_shifts_like_builtin_overlay2() {
    const T: &str = "userns_remap_plugin_owns_and_shifts_like_builtin_overlay2";
    if let Some(why) = Rig::remap_skip_reason() {
        eprintln!("[{T}] skipped: {why}");
        return;
    }
    let mut rig = rig_or_skip!("userns_remap_plugin_owns_and_shifts_like_builtin_overlay2", true, true);
    let image = rig.dir().join("img.tar");
    let sample = docker_rig::sample_image(&rig, "sample.tar", "o2userns/sample:latest", 0);
    image_with_layer(&sample, &image, IMG, &uid_layer());
    assert!(
        rig.home()
            .starts_with(rig.data_root().join(format!("{REMAP_BASE}.{REMAP_BASE}"))),
        "{}",
        rig.home().display()
    );

    let (builtin, builtin_diff) = scenario(&rig, &image);
    rig.stop_dockerd();
    let name = rig.name.clone();
    rig.driver = name;
    rig.start_plugin();
    let took = rig.start_dockerd(false);
    eprintln!("[{T}] dockerd on the plugin, remapped, up in {took:?}");
    let init = fs::read_to_string(rig.log("plugin.log")).unwrap();
    assert!(
        init.contains("GraphDriver.Init") && init.contains(&rig.home().display().to_string()),
        "Init's home is not under the remapped root\n{}",
        rig.log_tails()
    );
    let (plugin, plugin_diff) = scenario(&rig, &image);
    assert_eq!(plugin_diff, builtin_diff, "docker diff writer: plugin vs {BUILTIN}");

    // Outright: shifted by 100000, and the remapped root's directories.
    let root = format!("{REMAP_BASE}:{REMAP_BASE}");
    let want = [
        ("home", format!("d 0710 0:{REMAP_BASE}")),
        ("writer0/", format!("d 0710 0:{REMAP_BASE}")),
        ("writer0/diff", format!("d 0755 {root}")),
        ("writer0/work", format!("d 0700 {root}")),
        ("writer0/diff/rootfile", format!("f 0644 {root}")),
        ("writer0/diff/home/u/new", "f 0644 101000:101000".to_owned()),
        ("writer0/diff/copied", format!("f 0644 {root}")),
        ("writer2/diff", format!("d 0755 {root}")),
        ("writer2/diff/home/u/file", "f 0640 101000:101000".to_owned()),
        ("writer2/diff/home/u/keep", "f 0600 101000:102000".to_owned()),
        ("writer2/diff/srv/shared", format!("f 0664 {REMAP_BASE}:102000")),
        ("writer2/diff/opt/nodir/file", "f 0644 101000:101000".to_owned()),
        ("writer5/diff/bin/busybox", format!("f 0755 {root}")),
        ("committed/diff/home/u/new", "f 0644 101000:101000".to_owned()),
    ];
    for (what, want) in &want {
        assert_eq!(plugin.get(*what), Some(want), "plugin: {what}");
    }
    let differ: Vec<String> = builtin
        .keys()
        .chain(plugin.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| builtin.get(*k) != plugin.get(*k))
        .map(|k| format!("{k}: {BUILTIN} {:?}, plugin {:?}", builtin.get(k), plugin.get(k)))
        .collect();
    eprintln!("[{T}] {} entries compared", builtin.len());
    assert!(
        differ.is_empty(),
        "on disk, the plugin differs from {BUILTIN} under the same remap:\n{}",
        differ.join("\n")
    );

    // The plugin killed and restarted under dockerd (no new Init): the
    // maps come back from its state file, ids are still shifted.
    rig.kill_plugin();
    rig.start_plugin();
    rig.load(&image, IMG);
    rig.docker_prints(
        &[
            "run",
            "--rm",
            "--network",
            "none",
            IMG,
            "stat",
            "-c",
            "%u:%g",
            "/home/u/file",
        ],
        "1000:1000\n",
    );
    let top = diff_dirs(&rig, IMG)[0].join("home/u/file");
    assert_eq!(owner(&top), "f 0640 101000:101000", "after the plugin's restart");
    rig.remove_all_and_check_empty();
    rig.finish();
}
