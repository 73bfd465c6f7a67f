//! Layers with their own id maps (`CreateOpts::id_maps`): one image, many
//! containers, each seeing the image's files under its own ids, the image
//! never changed. Every test runs four ways: the kernel with id-mapped
//! lowers, the kernel forced to the chowned-copy fallback, and the fake
//! backend both ways; all four must show the same views.
//!
//! The kernel runs need root and overlayfs (and, for id-mapped lowers, a
//! kernel and filesystem the probe finds able); otherwise they say why
//! and skip. A `Rig` cleans up its mounts when dropped, on failure too.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::tar_entry as entry;

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use overlay_archive::{IdMaps, IdRange};
use overlay_driver::{CreateOpts, DriverError, FakeBackend, GraphDriver, IdMapSupport, KernelBackend, Overlay2};
use overlay_fs::{Fs, Observe};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Mounts,
    Copies,
}

/// A driver under test and what the checks need to look at its home.
struct Rig {
    driver: Box<dyn GraphDriver>,
    home: Arc<dyn Fs>,
    /// The home on disk (kernel backend only).
    path: Option<PathBuf>,
    mode: Mode,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.driver.cleanup();
    }
}

fn forced(mode: Mode) -> Option<IdMapSupport> {
    (mode == Mode::Copies).then(|| IdMapSupport::Copy("forced by the test".into()))
}

fn kernel(mode: Mode) -> Option<Rig> {
    if !common::kernel_backend_runs() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("overlay2");
    let mut backend = KernelBackend::new(&path).unwrap();
    if let IdMapSupport::Copy(why) | IdMapSupport::Unsupported(why) =
        &overlay_driver::Backend::capabilities(&backend).id_map
        && mode == Mode::Mounts
    {
        eprintln!("skipped: this kernel cannot id-map overlay lowers here: {why}");
        return None;
    }
    if let Some(s) = forced(mode) {
        backend = backend.with_id_map_support(s);
    }
    let home = overlay_driver::Backend::home(&backend).clone();
    Some(Rig {
        driver: Box::new(Overlay2::new(backend, &[] as &[&str]).unwrap()),
        home,
        path: Some(path),
        mode,
        _dir: Some(dir),
    })
}

fn fake(mode: Mode) -> Option<Rig> {
    let mut backend = FakeBackend::new();
    if let Some(s) = forced(mode) {
        backend = backend.with_id_map_support(s);
    }
    let home = overlay_driver::Backend::home(&backend).clone();
    Some(Rig {
        driver: Box::new(Overlay2::new(backend, &[] as &[&str]).unwrap()),
        home,
        path: None,
        mode,
        _dir: None,
    })
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod kernel_mounts { $( #[test] fn $name() { if let Some(r) = super::kernel(super::Mode::Mounts) { super::$name(&r) } } )* }
        mod kernel_copies { $( #[test] fn $name() { if let Some(r) = super::kernel(super::Mode::Copies) { super::$name(&r) } } )* }
        mod fake_mounts { $( #[test] fn $name() { if let Some(r) = super::fake(super::Mode::Mounts) { super::$name(&r) } } )* }
        mod fake_copies { $( #[test] fn $name() { if let Some(r) = super::fake(super::Mode::Copies) { super::$name(&r) } } )* }
    };
}

suite!(
    containers_with_different_maps_see_their_own_ids_and_the_image_stays_as_it_was,
    a_layer_on_a_mapped_parent_sees_it_as_stored,
    bad_maps_are_refused_naming_the_problem_and_change_nothing,
    a_corrupt_idmap_file_is_named,
    a_layer_mounts_as_it_was_made_or_says_why_it_cannot,
    diff_and_apply_translate_the_layers_own_ids,
);

fn p(s: &str) -> &Path {
    Path::new(s)
}

fn r(c: u32, h: u32, n: u32) -> IdRange {
    IdRange {
        container_id: c,
        host_id: h,
        size: n,
    }
}

fn maps(ranges: &[IdRange]) -> IdMaps {
    IdMaps::new(ranges.to_vec(), ranges.to_vec()).unwrap()
}

fn with_maps(m: &IdMaps) -> CreateOpts {
    CreateOpts {
        id_maps: m.clone(),
        ..CreateOpts::default()
    }
}

/// The image: `img0` (files of root, a user, an id outside every map
/// below, a setuid binary, a hard link, a symlink, an xattr) and `img1`
/// (a whiteout and an opaque directory over `img0`).
fn make_image(d: &dyn GraphDriver) {
    use tar::EntryType::{Directory as D, Link as L, Regular as F, Symlink as S};
    let mut b = tar::Builder::new(Vec::new());
    for (dir, id) in [
        ("etc", 0),
        ("home", 0),
        ("home/user", 1000),
        ("srv", 0),
        ("opq", 0),
        ("bin", 0),
    ] {
        entry(&mut b, dir, D, 0o755, id, b"", "");
    }
    // A PAX record goes before the entry it describes.
    b.append_pax_extensions([("SCHILY.xattr.user.note", &b"kept"[..])])
        .unwrap();
    entry(&mut b, "etc/passwd", F, 0o644, 0, b"root:x:0:0\n", "");
    entry(&mut b, "home/user/notes", F, 0o600, 1000, b"mine", "");
    entry(&mut b, "srv/stranger", F, 0o644, 70_000, b"far", "");
    entry(&mut b, "srv/gone", F, 0o644, 0, b"deleted above", "");
    entry(&mut b, "opq/hidden", F, 0o644, 0, b"hidden above", "");
    entry(&mut b, "bin/su", F, 0o4755, 0, b"#!su", "");
    entry(&mut b, "bin/su-link", L, 0, 0, b"", "bin/su");
    entry(&mut b, "motd", S, 0o777, 1000, b"", "etc/passwd");
    d.create("img0", None, &CreateOpts::default()).unwrap();
    d.apply_diff("img0", None, &mut &b.into_inner().unwrap()[..]).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    entry(&mut b, "srv", D, 0o755, 0, b"", "");
    entry(&mut b, "srv/.wh.gone", F, 0o644, 0, b"", "");
    entry(&mut b, "opq", D, 0o755, 0, b"", "");
    entry(&mut b, "opq/.wh..wh..opq", F, 0o644, 0, b"", "");
    entry(&mut b, "opq/new", F, 0o644, 0, b"above", "");
    d.create("img1", Some("img0"), &CreateOpts::default()).unwrap();
    d.apply_diff("img1", Some("img0"), &mut &b.into_inner().unwrap()[..])
        .unwrap();
}

/// Everything of the image's layers, times, xattrs and link structure
/// included, and the home's entries beside the layers.
fn snapshot(rig: &Rig) -> BTreeMap<PathBuf, String> {
    let how = Observe {
        hardlinks: true,
        root: true,
        ..Observe::default()
    };
    let mut out = BTreeMap::new();
    for id in ["img0", "img1"] {
        let tree = rig.home.subtree(&Path::new(id).join("diff")).unwrap();
        for (k, v) in overlay_fs::observe_extraction(&*tree, &how).unwrap() {
            out.insert(Path::new(id).join(k), v);
        }
        for f in ["link", "lower", "committed"] {
            let file = Path::new(id).join(f);
            if let Ok(bytes) = rig.home.read(&file) {
                out.insert(file, String::from_utf8_lossy(&bytes).into_owned());
            }
        }
    }
    out
}

/// The names in the home and in `l/`: a refused create must not add one.
fn home_names(rig: &Rig) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for dir in ["", "l"] {
        for e in rig.home.read_dir(p(dir)).unwrap() {
            out.insert(Path::new(dir).join(e.name));
        }
    }
    out
}

fn owner(t: &dyn Fs, path: &str) -> (u32, u32) {
    let md = t.metadata(p(path)).unwrap();
    (md.uid, md.gid)
}

/// Mount points under the home in our mount namespace (kernel only).
fn mounts_in(rig: &Rig) -> Vec<String> {
    let Some(home) = &rig.path else { return Vec::new() };
    let home = home.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| m.starts_with(&home))
        .collect()
}

/// Writes `data` to `path` in layer `id`'s merged view as the container's
/// root: on the kernel, a process in a user namespace with `m` as its
/// maps, running as its uid 0 (what a container's root is); on the fake,
/// which models no processes, a write and the chown the kernel would do.
fn write_as_container_root(rig: &Rig, id: &str, m: &IdMaps, path: &str, data: &str) {
    let Some(home) = &rig.path else {
        let t = rig.driver.tree(id).unwrap();
        t.write(p(path), 0o644, data.as_bytes()).unwrap();
        let (uid, gid) = m.root().unwrap();
        t.set_owner(p(path), uid, gid).unwrap();
        return;
    };
    let ns = overlay_mount::UserNs::new(&m.proc_uid_map(), &m.proc_gid_map()).unwrap();
    let fd = std::os::fd::AsFd::as_fd(&ns).as_raw_fd();
    let out = std::process::Command::new("nsenter")
        .arg(format!("--user=/proc/{}/fd/{fd}", std::process::id()))
        .args([
            "-S",
            "0",
            "-G",
            "0",
            "sh",
            "-c",
            &format!("printf %s '{data}' > '{path}'"),
        ])
        // From inside the mount: the home above it is root's, 0710.
        .current_dir(home.join(id).join("merged"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nsenter: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn check_view(d: &dyn GraphDriver, id: &str, m: &IdMaps) {
    let t = d.tree(id).unwrap();
    let t = &*t;
    let host = |c: u32| {
        let (u, _) = m.to_host(c, 0).unwrap();
        (u, u)
    };
    assert_eq!(owner(t, ""), host(0), "{id}: the upper's root is the container's root");
    assert_eq!(owner(t, "etc/passwd"), host(0), "{id}");
    assert_eq!(owner(t, "home/user"), host(1000), "{id}");
    assert_eq!(owner(t, "home/user/notes"), host(1000), "{id}");
    assert_eq!(owner(t, "motd"), host(1000), "{id}: a symlink's own owner");
    assert_eq!(owner(t, "srv/stranger"), (65534, 65534), "{id}: outside the map");
    let su = t.metadata(p("bin/su")).unwrap();
    assert_eq!((su.uid, su.mode), (host(0).0, 0o4755), "{id}: setuid kept");
    assert_eq!(
        su.ino,
        t.metadata(p("bin/su-link")).unwrap().ino,
        "{id}: hard link kept"
    );
    assert_eq!(t.read(p("etc/passwd")).unwrap(), b"root:x:0:0\n");
    assert_eq!(
        t.get_xattr(p("etc/passwd"), "user.note".as_ref()).unwrap().as_deref(),
        Some(&b"kept"[..])
    );
    assert_eq!(t.readlink(p("motd")).unwrap(), p("etc/passwd"));
    assert!(!t.exists(p("srv/gone")).unwrap(), "{id}: whiteout");
    assert!(!t.exists(p("opq/hidden")).unwrap(), "{id}: opaque dir");
    assert_eq!(t.read(p("opq/new")).unwrap(), b"above");
}

fn containers_with_different_maps_see_their_own_ids_and_the_image_stays_as_it_was(rig: &Rig) {
    let d = &*rig.driver;
    make_image(d);
    // A plain container first: its create marks img1 `committed`, which
    // any child's does (Docker's rule), so the snapshot starts after it.
    d.create_read_write("plain", Some("img1"), &CreateOpts::default())
        .unwrap();
    let before = snapshot(rig);
    let all = [
        ("c1", maps(&[r(0, 100_000, 65536)])),
        ("c2", maps(&[r(0, 200_000, 65536)])),
        ("c3", maps(&[r(0, 300_000, 1000), r(1000, 400_000, 64536)])),
    ];
    for (id, m) in &all {
        d.create_read_write(id, Some("img1"), &with_maps(m)).unwrap();
        d.get(id, None).unwrap();
    }
    let mode = if rig.mode == Mode::Mounts {
        "id-mapped lowers"
    } else {
        "chowned copies"
    };
    let status: BTreeMap<String, String> = d.status().into_iter().collect();
    assert!(status["Id-mapped layers"].starts_with(mode), "{status:?}");
    // All three mounted at once, each with its own view.
    for (id, m) in &all {
        check_view(d, id, m);
    }
    for (id, m) in &all {
        write_as_container_root(rig, id, m, "written", id);
        // A copy-up of a lower file keeps the owner the container sees.
        let t = d.tree(id).unwrap();
        let mut f = t.open_file_rw(p("home/user/notes")).unwrap();
        std::io::Write::write_all(&mut f, b"MINE").unwrap();
    }
    for (id, m) in &all {
        let upper = rig.home.subtree(&Path::new(id).join("diff")).unwrap();
        assert_eq!(upper.read(p("written")).unwrap(), id.as_bytes());
        assert_eq!(
            owner(&*upper, "written"),
            m.root().unwrap(),
            "{id}: written as its root"
        );
        let (u, g) = m.to_host(1000, 1000).unwrap();
        assert_eq!(owner(&*upper, "home/user/notes"), (u, g), "{id}: copied up");
        assert_eq!(upper.read(p("home/user/notes")).unwrap(), b"MINE");
        assert!(!rig.home.exists(&Path::new(id).join("mapped")).unwrap() || rig.mode == Mode::Copies);
    }
    assert_eq!(snapshot(rig), before, "the image's layers are as they were");
    // Put and get again: the same views, the containers' own files kept.
    for (id, _) in &all {
        d.put(id).unwrap();
    }
    assert!(mounts_in(rig).is_empty(), "{:?}", mounts_in(rig));
    for (id, m) in &all {
        d.get(id, None).unwrap();
        check_view(d, id, m);
        assert_eq!(d.tree(id).unwrap().read(p("written")).unwrap(), id.as_bytes());
    }
    for (id, _) in &all {
        d.remove(id).unwrap();
        assert!(!d.exists(id));
    }
    assert!(
        mounts_in(rig).is_empty(),
        "no overlay or scratch mount left: {:?}",
        mounts_in(rig)
    );
    assert_eq!(snapshot(rig), before, "the image's layers are as they were");
    // The image itself still mounts with its own ids.
    d.get("plain", None).unwrap();
    assert_eq!(owner(&*d.tree("plain").unwrap(), "home/user/notes"), (1000, 1000));
    d.put("plain").unwrap();
}

fn a_layer_on_a_mapped_parent_sees_it_as_stored(rig: &Rig) {
    let d = &*rig.driver;
    make_image(d);
    let m = maps(&[r(0, 100_000, 65536)]);
    // Docker's shape: IMAGE <- ID-init (read-only, written once) <- ID.
    d.create("c-init", Some("img1"), &with_maps(&m)).unwrap();
    d.get("c-init", None).unwrap();
    write_as_container_root(rig, "c-init", &m, "hostname", "box");
    d.put("c-init").unwrap();
    // No maps given: the parent's are taken.
    d.create_read_write("c", Some("c-init"), &CreateOpts::default())
        .unwrap();
    assert_eq!(
        rig.home.read(p("c/idmap")).unwrap(),
        rig.home.read(p("c-init/idmap")).unwrap()
    );
    d.get("c", None).unwrap();
    check_view(d, "c", &m);
    let t = d.tree("c").unwrap();
    assert_eq!(t.read(p("hostname")).unwrap(), b"box");
    assert_eq!(
        owner(&*t, "hostname"),
        (100_000, 100_000),
        "stored with host ids, not shifted twice"
    );
    d.put("c").unwrap();
    // The committed parent mounts read-only, its own files as stored.
    d.get("c-init", None).unwrap();
    let t = d.tree("c-init").unwrap();
    assert_eq!(owner(&*t, "hostname"), (100_000, 100_000));
    assert_eq!(owner(&*t, "etc/passwd"), (100_000, 100_000));
    d.put("c-init").unwrap();
    // Other maps on that parent: refused, naming it.
    let before = home_names(rig);
    let e = d
        .create_read_write("other", Some("c-init"), &with_maps(&maps(&[r(0, 200_000, 65536)])))
        .unwrap_err();
    assert!(matches!(e, DriverError::IdMap { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("parent \"c-init\" is stored with other id maps (uid 0:100000:65536"),
        "{e}"
    );
    assert_eq!(home_names(rig), before);
}

fn bad_maps_are_refused_naming_the_problem_and_change_nothing(rig: &Rig) {
    let d = &*rig.driver;
    make_image(d);
    let before = (home_names(rig), snapshot(rig));
    let raw = |uids: Vec<IdRange>, gids: Vec<IdRange>| CreateOpts {
        id_maps: IdMaps { uids, gids },
        ..CreateOpts::default()
    };
    let ok = vec![r(0, 100_000, 65536)];
    let many: Vec<IdRange> = (0..341).map(|i| r(i, 100_000 + i, 1)).collect();
    for (opts, says) in [
        (
            raw(vec![r(0, 100_000, 10), r(5, 300_000, 10)], ok.clone()),
            "uid map ranges 0:100000:10 and 5:300000:10 overlap on the container side",
        ),
        (
            raw(ok.clone(), vec![r(0, 100_000, 10), r(10, 100_005, 10)]),
            "overlap on the host side",
        ),
        (raw(vec![r(0, 100_000, 0)], ok.clone()), "size 0 maps nothing"),
        (
            raw(vec![r(0, 4_294_967_000, 65536)], ok.clone()),
            "host ids 4294967000..4294967000+65536 run past the last id",
        ),
        (raw(many, ok.clone()), "341 ranges; the kernel takes at most 340"),
        (raw(ok.clone(), Vec::new()), "a gid map is needed as well"),
        (
            raw(vec![r(1, 100_000, 10)], ok.clone()),
            "give container root (uid and gid 0) no host id",
        ),
    ] {
        let e = d.create_read_write("bad", Some("img1"), &opts).unwrap_err();
        assert!(matches!(e, DriverError::IdMap { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.starts_with("layer \"bad\": ") && text.contains(says),
            "{says}: {text}"
        );
        assert!(!d.exists("bad"));
        assert_eq!((home_names(rig), snapshot(rig)), before, "{says}: changed the home");
    }
    // A backend that cannot id-map at all: the map is refused, not ignored.
    let cannot = IdMapSupport::Unsupported("simulated: no id-mapped mounts, no chown".into());
    let (driver, home): (Box<dyn GraphDriver>, Arc<dyn Fs>) = match &rig.path {
        Some(path) => {
            let b = KernelBackend::new(path).unwrap().with_id_map_support(cannot);
            let home = overlay_driver::Backend::home(&b).clone();
            (Box::new(Overlay2::new(b, &[] as &[&str]).unwrap()), home)
        }
        None => {
            let mem = overlay_fs::MemFs::new();
            let b = FakeBackend::with_home(mem).with_id_map_support(cannot);
            let home = overlay_driver::Backend::home(&b).clone();
            let d = Overlay2::new(b, &[] as &[&str]).unwrap();
            make_image(&d);
            (Box::new(d), home)
        }
    };
    let names = |h: &Arc<dyn Fs>| h.read_dir(p("")).unwrap().len() + h.read_dir(p("l")).unwrap().len();
    let count = names(&home);
    let e = driver
        .create_read_write("bad", Some("img1"), &with_maps(&maps(&ok)))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "layer \"bad\": cannot id-map layers here: simulated: no id-mapped mounts, no chown"
    );
    assert_eq!(names(&home), count);
    let status: BTreeMap<String, String> = driver.status().into_iter().collect();
    assert_eq!(
        status["Id-mapped layers"],
        "not supported (simulated: no id-mapped mounts, no chown)"
    );
    // A driver remapping every layer already (userns-remap) takes none.
    let remapped = Overlay2::new(FakeBackend::new(), &[] as &[&str])
        .unwrap()
        .with_id_maps(maps(&ok))
        .unwrap();
    remapped.create("base", None, &CreateOpts::default()).unwrap();
    let e = remapped
        .create_read_write("bad", Some("base"), &with_maps(&maps(&[r(0, 200_000, 10)])))
        .unwrap_err();
    assert!(e.to_string().contains("already remaps every layer"), "{e}");
    assert!(!remapped.exists("bad"));
}

fn a_corrupt_idmap_file_is_named(rig: &Rig) {
    let d = &*rig.driver;
    make_image(d);
    let m = maps(&[r(0, 100_000, 65536)]);
    d.create_read_write("c", Some("img1"), &with_maps(&m)).unwrap();
    rig.home.write(p("c/idmap"), 0o644, b"uid 0:100000\n").unwrap();
    let e = d.get("c", None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "layer \"c\" is corrupt: its idmap file: line 1: 2 field(s), not 3: \"uid 0:100000\""
    );
    assert!(
        !rig.home.exists(p("c/merged")).unwrap(),
        "nothing mounted, no mount point left"
    );
    assert!(mounts_in(rig).is_empty());
    // A child of it is refused too, naming the parent's file.
    let e = d
        .create_read_write("c2", Some("c"), &CreateOpts::default())
        .unwrap_err();
    assert!(e.to_string().contains("layer \"c\" is corrupt: its idmap file"), "{e}");
    assert!(!d.exists("c2"));
    if rig.mode == Mode::Copies {
        d.create_read_write("d", Some("img1"), &with_maps(&m)).unwrap();
        rig.home.remove_all(p("d/mapped/1")).unwrap();
        let e = d.get("d", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "layer \"d\" is corrupt: its copy d/mapped/1 of lower layer \"img0\" is missing"
        );
    }
    d.remove("c").unwrap();
}

fn diff_and_apply_translate_the_layers_own_ids(rig: &Rig) {
    let d = &*rig.driver;
    make_image(d);
    let m = maps(&[r(0, 100_000, 65536)]);
    d.create_read_write("c", Some("img1"), &with_maps(&m)).unwrap();
    d.get("c", None).unwrap();
    write_as_container_root(rig, "c", &m, "etc/new", "x");
    d.put("c").unwrap();
    // The diff (docker commit) carries the ids the container sees.
    let mut tar = Vec::new();
    d.diff("c", Some("img1"), &mut tar).unwrap();
    let mut a = tar::Archive::new(&tar[..]);
    let owners: BTreeMap<String, (u64, u64)> = a
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().display().to_string(),
                (h.uid().unwrap(), h.gid().unwrap()),
            )
        })
        .collect();
    assert_eq!(owners.get("etc/new"), Some(&(0, 0)), "{owners:?}");
    // Applying a tar into a mapped layer stores the host ids.
    d.create("applied", Some("img1"), &with_maps(&m)).unwrap();
    d.apply_diff("applied", Some("img1"), &mut &tar[..]).unwrap();
    let upper = rig.home.subtree(p("applied/diff")).unwrap();
    assert_eq!(owner(&*upper, "etc/new"), (100_000, 100_000));
}

/// The same home through another driver whose backend says `support`.
fn reopened(rig: &Rig, support: IdMapSupport) -> Box<dyn GraphDriver> {
    match &rig.path {
        Some(path) => {
            let b = KernelBackend::new(path).unwrap().with_id_map_support(support);
            Box::new(Overlay2::new(b, &[] as &[&str]).unwrap())
        }
        None => {
            let b = FakeBackend::with_home_tree(rig.home.clone()).with_id_map_support(support);
            Box::new(Overlay2::new(b, &[] as &[&str]).unwrap())
        }
    }
}

fn a_layer_mounts_as_it_was_made_or_says_why_it_cannot(rig: &Rig) {
    let d = &*rig.driver;
    make_image(d);
    let m = maps(&[r(0, 100_000, 65536)]);
    d.create_read_write("c", Some("img1"), &with_maps(&m)).unwrap();
    match rig.mode {
        // Made with id-mapped lowers, then a kernel that cannot mount them.
        Mode::Mounts => {
            let other = reopened(
                rig,
                IdMapSupport::Copy("simulated: overlayfs refuses id-mapped lowers".into()),
            );
            let e = other.get("c", None).unwrap_err();
            assert!(matches!(e, DriverError::IdMap { .. }), "{e}");
            assert_eq!(
                e.to_string(),
                "layer \"c\": it was made to see its lowers through id-mapped mounts, which cannot be made \
                 here: chowned copies of the lowers (simulated: overlayfs refuses id-mapped lowers)"
            );
            assert!(!rig.home.exists(p("c/merged")).unwrap(), "no mount point left");
            assert!(mounts_in(rig).is_empty());
        }
        // Made with copies: they serve wherever the layer is mounted.
        Mode::Copies => {
            let other = reopened(rig, IdMapSupport::Mounts);
            other.get("c", None).unwrap();
            check_view(&*other, "c", &m);
            other.put("c").unwrap();
        }
    }
    d.get("c", None).unwrap();
    check_view(d, "c", &m);
    d.put("c").unwrap();
}
