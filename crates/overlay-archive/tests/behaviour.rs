//! What export and import do, on both `MemFs` and `HostFs`.
//!
//! Each test runs once per backend. Device nodes, chown and `trusted.*`
//! need root on the host: without it those tests say so and skip there.

#![allow(clippy::unwrap_used, missing_docs)]

use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;

use overlay_archive::{
    ArchiveError, ExportOptions, ExportWhiteouts, IdMaps, IdRange, ImportOptions, ImportWhiteouts, OwnableIds,
    XattrNamespace, export, import,
};
use overlay_fs::{FileType, Fs, HostFs, MemFs, NodeKind, Timestamp, makedev};

fn p(s: &str) -> &Path {
    Path::new(s)
}

struct Backend {
    fs: Box<dyn Fs>,
    root: bool,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    fn host() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let fs = HostFs::new(dir.path()).unwrap();
        Self {
            fs: Box::new(fs),
            root: rustix::process::geteuid().is_root(),
            _dir: Some(dir),
        }
    }
    fn mem() -> Self {
        Self {
            fs: Box::new(MemFs::new()),
            root: true,
            _dir: None,
        }
    }
    fn fresh(&self) -> Backend {
        if self._dir.is_some() { Self::host() } else { Self::mem() }
    }
    fn needs_root(&self, what: &str) -> bool {
        if !self.root {
            eprintln!("skipped on HostFs: {what} needs root");
        }
        !self.root
    }
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod host { $( #[test] fn $name() { super::$name(&super::Backend::host()) } )* }
        mod mem { $( #[test] fn $name() { super::$name(&super::Backend::mem()) } )* }
    };
}

both!(
    export_is_deterministic_and_sorted,
    hard_links_carry_data_once,
    xattrs_go_to_pax_but_not_overlays_own,
    whiteouts_and_opaque_dirs_become_oci_markers,
    devices_and_fifos_round_trip,
    ids_are_mapped_both_ways,
    exclude_patterns_follow_docker,
    overlay_import_writes_kernel_whiteouts,
    plain_import_deletes,
    entries_replace_other_types,
    directory_times_are_set_last,
    bytes_applied_is_the_sum_of_sizes,
    missing_parents_are_created,
    setuid_survives_a_non_root_owner,
    unownable_ids_fail_before_the_entry_or_go_to_root,
);

/// One tar entry, as a test looks at it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    path: String,
    kind: char,
    size: u64,
    mode: u32,
    uid: u64,
    gid: u64,
    link: Option<String>,
    xattrs: Vec<(String, Vec<u8>)>,
    dev: (u32, u32),
}

fn entries(tar: &[u8]) -> Vec<Seen> {
    let mut a = tar::Archive::new(tar);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let mut xattrs = Vec::new();
        if let Some(pax) = e.pax_extensions().unwrap() {
            for x in pax {
                let x = x.unwrap();
                if let Some(n) = x.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.push((n.to_string(), x.value_bytes().to_vec()));
                }
            }
        }
        let h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push(Seen {
            path: e.path().unwrap().display().to_string(),
            kind: h.entry_type().as_byte() as char,
            size: h.size().unwrap(),
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            link: e.link_name().unwrap().map(|l| l.display().to_string()),
            xattrs,
            dev: (
                h.device_major().ok().flatten().unwrap_or(0),
                h.device_minor().ok().flatten().unwrap_or(0),
            ),
        });
    }
    out
}

fn exp(fs: &dyn Fs, opts: &ExportOptions) -> Vec<u8> {
    export(fs, opts, Vec::new()).unwrap().0
}

fn names(tar: &[u8]) -> Vec<String> {
    entries(tar).into_iter().map(|e| e.path).collect()
}

fn export_is_deterministic_and_sorted(b: &Backend) {
    let fs = &*b.fs;
    for d in ["b", "a", "a/z", "a/c"] {
        fs.mkdir(p(d), 0o755).unwrap();
    }
    for f in ["b/2", "b/1", "a/c/x", "top"] {
        fs.write(p(f), 0o644, f.as_bytes()).unwrap();
    }
    fs.symlink(p("../top"), p("a/link")).unwrap();
    let one = exp(fs, &ExportOptions::default());
    let two = exp(fs, &ExportOptions::default());
    assert_eq!(one, two, "same tree, same bytes");
    assert_eq!(
        names(&one),
        ["a", "a/c", "a/c/x", "a/link", "a/z", "b", "b/1", "b/2", "top"]
    );
    let seen = entries(&one);
    assert_eq!(seen[3].link.as_deref(), Some("../top"));
    assert_eq!(seen[2].size, 5);
}

fn hard_links_carry_data_once(b: &Backend) {
    let fs = &*b.fs;
    fs.write(p("first"), 0o644, b"shared data").unwrap();
    fs.hardlink(p("first"), p("second")).unwrap();
    fs.hardlink(p("first"), p("third")).unwrap();
    let tar = exp(fs, &ExportOptions::default());
    let seen = entries(&tar);
    assert_eq!((seen[0].kind, seen[0].size), ('0', 11));
    for s in &seen[1..] {
        assert_eq!((s.kind, s.size, s.link.as_deref()), ('1', 0, Some("first")), "{s:?}");
    }
    let out = b.fresh();
    import(&*out.fs, &tar[..], &ImportOptions::default()).unwrap();
    let m = out.fs.metadata(p("third")).unwrap();
    assert_eq!((m.nlink, m.ino), (3, out.fs.metadata(p("first")).unwrap().ino));
    assert_eq!(out.fs.read(p("second")).unwrap(), b"shared data");
}

fn xattrs_go_to_pax_but_not_overlays_own(b: &Backend) {
    let fs = &*b.fs;
    fs.mkdir(p("d"), 0o755).unwrap();
    fs.write(p("d/f"), 0o644, b"").unwrap();
    fs.set_xattr(p("d/f"), OsStr::new("user.b"), b"2").unwrap();
    fs.set_xattr(p("d/f"), OsStr::new("user.a"), b"1").unwrap();
    fs.set_xattr(p("d/f"), OsStr::new("user.overlay.origin"), b"private")
        .unwrap();
    let tar = exp(fs, &ExportOptions::default());
    let f = &entries(&tar)[1];
    assert_eq!(
        f.xattrs,
        vec![("user.a".into(), b"1".to_vec()), ("user.b".into(), b"2".to_vec())]
    );
    let out = b.fresh();
    import(&*out.fs, &tar[..], &ImportOptions::default()).unwrap();
    assert_eq!(
        out.fs.get_xattr(p("d/f"), OsStr::new("user.b")).unwrap().as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(
        out.fs.get_xattr(p("d/f"), OsStr::new("user.overlay.origin")).unwrap(),
        None
    );
}

fn whiteouts_and_opaque_dirs_become_oci_markers(b: &Backend) {
    if b.needs_root("whiteouts and trusted.* xattrs") {
        return;
    }
    let fs = &*b.fs;
    fs.mkdir(p("etc"), 0o750).unwrap();
    fs.mknod(p("etc/motd"), NodeKind::WHITEOUT, 0).unwrap();
    fs.set_owner(p("etc/motd"), 5, 6).unwrap();
    fs.mkdir(p("opq"), 0o711).unwrap();
    fs.set_xattr(p("opq"), OsStr::new("trusted.overlay.opaque"), b"y")
        .unwrap();
    fs.write(p("opq/kept"), 0o644, b"k").unwrap();
    fs.mkdir(p("uopq"), 0o755).unwrap();
    fs.set_xattr(p("uopq"), OsStr::new("user.overlay.opaque"), b"y")
        .unwrap();
    let tar = exp(fs, &ExportOptions::default());
    let seen = entries(&tar);
    let names: Vec<_> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        names,
        [
            "etc",
            "etc/.wh.motd",
            "opq",
            "opq/.wh..wh..opq",
            "opq/kept",
            "uopq",
            "uopq/.wh..wh..opq"
        ]
    );
    assert_eq!(
        (seen[1].kind, seen[1].size, seen[1].mode, seen[1].uid, seen[1].gid),
        ('0', 0, 0o600, 5, 6)
    );
    assert_eq!((seen[3].kind, seen[3].mode), ('0', 0o711));
    assert!(seen[2].xattrs.is_empty(), "the opaque xattr itself is not exported");

    // Back into a diff dir: the kernel's forms again, in either namespace.
    for (ns, xattr) in [
        (XattrNamespace::Trusted, "trusted.overlay.opaque"),
        (XattrNamespace::User, "user.overlay.opaque"),
    ] {
        let out = b.fresh();
        let opts = ImportOptions {
            whiteouts: ImportWhiteouts::Overlay(ns),
            ..Default::default()
        };
        import(&*out.fs, &tar[..], &opts).unwrap();
        let wh = out.fs.metadata(p("etc/motd")).unwrap();
        assert!(wh.is_whiteout());
        assert_eq!((wh.uid, wh.gid), (5, 6));
        assert_eq!(
            out.fs.get_xattr(p("opq"), OsStr::new(xattr)).unwrap().as_deref(),
            Some(&b"y"[..])
        );
        assert!(!out.fs.exists(p("opq/.wh..wh..opq")).unwrap());
    }
    // Keep mode writes the device as it is.
    let keep = exp(
        fs,
        &ExportOptions {
            whiteouts: ExportWhiteouts::Keep,
            ..Default::default()
        },
    );
    assert!(entries(&keep).iter().any(|s| s.path == "etc/motd" && s.kind == '3'));
}

fn devices_and_fifos_round_trip(b: &Backend) {
    if b.needs_root("device nodes") {
        return;
    }
    let fs = &*b.fs;
    fs.mknod(p("null"), NodeKind::CharDevice(makedev(1, 3)), 0o666).unwrap();
    fs.mknod(p("loop0"), NodeKind::BlockDevice(makedev(7, 0)), 0o660)
        .unwrap();
    fs.mknod(p("pipe"), NodeKind::Fifo, 0o644).unwrap();
    let tar = exp(fs, &ExportOptions::default());
    let seen = entries(&tar);
    assert_eq!(
        (seen[0].path.as_str(), seen[0].kind, seen[0].dev),
        ("loop0", '4', (7, 0))
    );
    assert_eq!(
        (seen[1].path.as_str(), seen[1].kind, seen[1].dev),
        ("null", '3', (1, 3))
    );
    assert_eq!((seen[2].path.as_str(), seen[2].kind), ("pipe", '6'));
    let out = b.fresh();
    import(&*out.fs, &tar[..], &ImportOptions::default()).unwrap();
    assert_eq!(out.fs.metadata(p("null")).unwrap().rdev, makedev(1, 3));
    assert_eq!(out.fs.metadata(p("loop0")).unwrap().file_type, FileType::BlockDevice);
    assert_eq!(out.fs.metadata(p("pipe")).unwrap().mode, 0o644);
}

fn ids_are_mapped_both_ways(b: &Backend) {
    if b.needs_root("chown") {
        return;
    }
    let fs = &*b.fs;
    let r = IdRange {
        container_id: 0,
        host_id: 100_000,
        size: 65536,
    };
    let maps = IdMaps {
        uids: vec![r],
        gids: vec![r],
    };
    fs.write(p("f"), 0o644, b"").unwrap();
    fs.set_owner(p("f"), 100_033, 100_044).unwrap();
    let tar = exp(
        fs,
        &ExportOptions {
            id_maps: maps.clone(),
            ..Default::default()
        },
    );
    assert_eq!((entries(&tar)[0].uid, entries(&tar)[0].gid), (33, 44));
    let out = b.fresh();
    import(
        &*out.fs,
        &tar[..],
        &ImportOptions {
            id_maps: maps.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    let m = out.fs.metadata(p("f")).unwrap();
    assert_eq!((m.uid, m.gid), (100_033, 100_044));
    fs.set_owner(p("f"), 5, 5).unwrap();
    let err = export(
        fs,
        &ExportOptions {
            id_maps: maps,
            ..Default::default()
        },
        Vec::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("host uid 5"), "{err}");
}

fn exclude_patterns_follow_docker(b: &Backend) {
    let fs = &*b.fs;
    fs.mkdir(p("logs"), 0o755).unwrap();
    for f in ["a.log", "keep.log", "logs/x", "data"] {
        fs.write(p(f), 0o644, b"").unwrap();
    }
    let opts = ExportOptions {
        exclude: vec!["*.log".into(), "!keep.log".into(), "logs".into()],
        ..Default::default()
    };
    assert_eq!(names(&exp(fs, &opts)), ["data", "keep.log"]);
    let only = ExportOptions {
        include: vec!["logs".into(), "data".into()],
        ..Default::default()
    };
    assert_eq!(
        names(&exp(fs, &only)),
        ["logs", "logs/x", "data"],
        "includes in the order given"
    );
    let bad = ExportOptions {
        exclude: vec!["[".into()],
        ..Default::default()
    };
    assert!(export(fs, &bad, Vec::new()).is_err());
}

fn overlay_import_writes_kernel_whiteouts(b: &Backend) {
    if b.needs_root("whiteouts") {
        return;
    }
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(0);
    h.set_mode(0o600);
    h.set_uid(7);
    h.set_gid(8);
    t.append_data(&mut h.clone(), "deep/dir/.wh.gone", std::io::empty())
        .unwrap();
    t.append_data(&mut h, "deep/.wh..wh..opq", std::io::empty()).unwrap();
    let tar = t.into_inner().unwrap();
    let fs = &*b.fs;
    let stats = import(fs, &tar[..], &ImportOptions::default()).unwrap();
    assert_eq!(stats.entries, 2);
    let m = fs.metadata(p("deep/dir/gone")).unwrap();
    assert!(m.is_whiteout());
    assert_eq!((m.uid, m.gid), (7, 8));
    assert_eq!(
        fs.metadata(p("deep/dir")).unwrap().mode,
        0o755,
        "missing parents are made 0755"
    );
    assert_eq!(
        fs.get_xattr(p("deep"), OsStr::new("trusted.overlay.opaque"))
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
}

fn plain_import_deletes(b: &Backend) {
    let fs = &*b.fs;
    // What lower layers put in the merged tree.
    fs.mkdir_all(p("d/old_dir"), 0o755).unwrap();
    fs.write(p("d/old_dir/f"), 0o644, b"").unwrap();
    fs.write(p("d/old"), 0o644, b"").unwrap();
    fs.write(p("gone"), 0o644, b"").unwrap();
    fs.mkdir_all(p("tree/sub"), 0o755).unwrap();
    let mut t = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    let mut file = tar::Header::new_gnu();
    file.set_entry_type(tar::EntryType::Regular);
    file.set_mode(0o644);
    file.set_size(3);
    let mut empty = file.clone();
    empty.set_size(0);
    t.append_data(&mut dir.clone(), "d", std::io::empty()).unwrap();
    t.append_data(&mut file.clone(), "d/new", &b"new"[..]).unwrap();
    t.append_data(&mut empty.clone(), "d/.wh..wh..opq", std::io::empty())
        .unwrap();
    t.append_data(&mut file, "d/after", &b"aft"[..]).unwrap();
    t.append_data(&mut empty.clone(), ".wh.gone", std::io::empty()).unwrap();
    t.append_data(&mut empty, ".wh.tree", std::io::empty()).unwrap();
    let tar = t.into_inner().unwrap();
    import(
        fs,
        &tar[..],
        &ImportOptions {
            whiteouts: ImportWhiteouts::Plain,
            ..Default::default()
        },
    )
    .unwrap();
    let mut left: Vec<_> = fs
        .read_dir(p("d"))
        .unwrap()
        .into_iter()
        .map(|e| e.name.into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["after", "new"], "opaque removes what the tar did not put there");
    assert!(!fs.exists(p("gone")).unwrap());
    assert!(!fs.exists(p("tree")).unwrap(), "a whiteout removes a whole tree");
    assert!(!fs.exists(p("d/.wh..wh..opq")).unwrap());
}

fn entries_replace_other_types(b: &Backend) {
    let fs = &*b.fs;
    fs.mkdir_all(p("was_dir/inner"), 0o755).unwrap();
    fs.write(p("was_file"), 0o644, b"x").unwrap();
    fs.mkdir(p("stays"), 0o700).unwrap();
    fs.write(p("stays/old"), 0o644, b"o").unwrap();
    fs.write(p("was_link_target"), 0o644, b"t").unwrap();
    fs.symlink(p("was_link_target"), p("was_link")).unwrap();
    let mut t = tar::Builder::new(Vec::new());
    let mut file = tar::Header::new_gnu();
    file.set_entry_type(tar::EntryType::Regular);
    file.set_mode(0o640);
    file.set_size(4);
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o751);
    dir.set_size(0);
    t.append_data(&mut file.clone(), "was_dir", &b"file"[..]).unwrap();
    t.append_data(&mut dir.clone(), "was_file", std::io::empty()).unwrap();
    t.append_data(&mut dir, "stays", std::io::empty()).unwrap();
    t.append_data(&mut file, "was_link", &b"real"[..]).unwrap();
    let tar = t.into_inner().unwrap();
    import(fs, &tar[..], &ImportOptions::default()).unwrap();
    assert_eq!(fs.read(p("was_dir")).unwrap(), b"file");
    assert!(fs.metadata(p("was_file")).unwrap().is_dir());
    assert_eq!(fs.metadata(p("stays")).unwrap().mode, 0o751);
    assert_eq!(
        fs.read(p("stays/old")).unwrap(),
        b"o",
        "a dir over a dir keeps its contents"
    );
    assert_eq!(fs.read(p("was_link")).unwrap(), b"real");
    assert_eq!(
        fs.read(p("was_link_target")).unwrap(),
        b"t",
        "the symlink was replaced, not written through"
    );
}

fn directory_times_are_set_last(b: &Backend) {
    let fs = &*b.fs;
    let src = b.fresh();
    src.fs.mkdir_all(p("a/b"), 0o755).unwrap();
    src.fs.write(p("a/b/f"), 0o644, b"").unwrap();
    src.fs
        .set_times(p("a/b/f"), None, Some(Timestamp::from_secs(300)))
        .unwrap();
    src.fs
        .set_times(p("a/b"), None, Some(Timestamp::from_secs(200)))
        .unwrap();
    src.fs.set_times(p("a"), None, Some(Timestamp::from_secs(100))).unwrap();
    let tar = exp(&*src.fs, &ExportOptions::default());
    import(fs, &tar[..], &ImportOptions::default()).unwrap();
    assert_eq!(fs.metadata(p("a")).unwrap().mtime, Timestamp::from_secs(100));
    assert_eq!(fs.metadata(p("a/b")).unwrap().mtime, Timestamp::from_secs(200));
    assert_eq!(fs.metadata(p("a/b/f")).unwrap().mtime, Timestamp::from_secs(300));
}

fn bytes_applied_is_the_sum_of_sizes(b: &Backend) {
    let src = b.fresh();
    src.fs.write(p("a"), 0o644, &[1u8; 1000]).unwrap();
    src.fs.write(p("b"), 0o644, &[2u8; 24]).unwrap();
    src.fs.mkdir(p("d"), 0o755).unwrap();
    let tar = exp(&*src.fs, &ExportOptions::default());
    let stats = import(&*b.fs, &tar[..], &ImportOptions::default()).unwrap();
    assert_eq!((stats.bytes, stats.entries), (1024, 3));
}

fn missing_parents_are_created(b: &Backend) {
    let mut t = tar::Builder::new(Vec::new());
    let mut file = tar::Header::new_gnu();
    file.set_entry_type(tar::EntryType::Regular);
    file.set_mode(0o644);
    file.set_size(1);
    t.append_data(&mut file, "x/y/z", &b"z"[..]).unwrap();
    let tar = t.into_inner().unwrap();
    import(&*b.fs, &tar[..], &ImportOptions::default()).unwrap();
    assert_eq!(b.fs.read(p("x/y/z")).unwrap(), b"z");
    assert_eq!(b.fs.metadata(p("x/y")).unwrap().mode, 0o755);
}

fn setuid_survives_a_non_root_owner(b: &Backend) {
    if b.needs_root("chown") {
        return;
    }
    let src = b.fresh();
    src.fs.write(p("su"), 0o4755, b"").unwrap();
    src.fs.set_owner(p("su"), 1000, 1000).unwrap();
    src.fs.set_mode(p("su"), 0o4755).unwrap();
    let tar = exp(&*src.fs, &ExportOptions::default());
    import(&*b.fs, &tar[..], &ImportOptions::default()).unwrap();
    let m = b.fs.metadata(p("su")).unwrap();
    assert_eq!((m.mode, m.uid, m.gid), (0o4755, 1000, 1000));
}

/// Rootless (`ownable`: the ids of a user namespace, as a sub-id range
/// gives them): an entry whose id, after the maps, is outside fails before
/// it is made, naming it and the id; with `ignore_chown_errors` it belongs
/// to root. With and without workers.
fn unownable_ids_fail_before_the_entry_or_go_to_root(b: &Backend) {
    if b.needs_root("chown") {
        return;
    }
    let mut tar = tar::Builder::new(Vec::new());
    for (name, uid, gid) in [("a", 0, 0), ("far", 70_000, 0), ("group", 0, 80_000)] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_size(1);
        tar.append_data(&mut h, name, &b"x"[..]).unwrap();
    }
    let tar = tar.into_inner().unwrap();
    let ownable = OwnableIds {
        uids: vec![(0, 65536)],
        gids: vec![(0, 65536)],
    };
    for workers in [1, 4] {
        let out = b.fresh();
        let opts = ImportOptions {
            ownable: Some(ownable.clone()),
            workers,
            ..Default::default()
        };
        let e = import(&*out.fs, &tar[..], &opts).unwrap_err();
        assert!(matches!(e, ArchiveError::Unowned { id: 70_000, .. }), "{e}");
        assert!(e.to_string().contains("\"far\": uid 70000 is not mapped"), "{e}");
        assert!(!out.fs.exists(p("far")).unwrap(), "nothing is made for the entry");
        // The maps apply first: container uid 70000 is host uid 8 here,
        // and the gid 80000 is still outside.
        let range = |container_id, host_id, size| IdRange {
            container_id,
            host_id,
            size,
        };
        let shifted = ImportOptions {
            id_maps: IdMaps::new(vec![range(0, 0, 1), range(69_993, 1, 10)], vec![range(0, 0, 80_001)]).unwrap(),
            ..opts.clone()
        };
        let e = import(&*b.fresh().fs, &tar[..], &shifted).unwrap_err().to_string();
        assert!(e.contains("\"group\": gid 80000"), "{e}");
        let out = b.fresh();
        let ignore = ImportOptions {
            ignore_chown_errors: true,
            ..opts
        };
        import(&*out.fs, &tar[..], &ignore).unwrap();
        for f in ["a", "far", "group"] {
            let m = out.fs.metadata(p(f)).unwrap();
            assert_eq!((m.uid, m.gid), (0, 0), "{f}");
        }
    }
}
