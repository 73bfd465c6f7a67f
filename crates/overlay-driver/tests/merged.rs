//! `OverlayFs`, the fake backend's model of overlayfs: one test per rule on
//! in-memory layers, then a differential property test that runs random
//! operation sequences through a real overlay mount and through the model
//! (over in-memory and on-disk copies of the same layers) and requires the
//! same results, the same merged tree and the same upper directory.
//!
//! The differential test needs root and overlayfs; without them it says
//! why it skips. The kernel it was written against: Linux 6.18,
//! `redirect_dir=N`, `metacopy=N`, mounted with `index=off`, xino off.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use overlay_driver::fake::OverlayFs;
use overlay_fs::{ErrorKind, FileType, Fs, HostFs, MemFs, NodeKind, Timestamp};

fn p(s: &str) -> &Path {
    Path::new(s)
}

fn x(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn kind<T>(r: overlay_fs::Result<T>) -> ErrorKind {
    match r {
        Ok(_) => panic!("operation should fail"),
        Err(e) => e.kind(),
    }
}

/// One entry of a lower layer, built in order.
enum E {
    /// A regular file with its path as content, mode 0644.
    F(&'static str),
    /// A directory, mode 0755.
    D(&'static str),
    /// An opaque directory.
    Opq(&'static str),
    /// A whiteout.
    Wh(&'static str),
    /// A symlink: path, target.
    L(&'static str, &'static str),
    /// A fifo.
    Fifo(&'static str),
    /// An xattr on an existing entry: path, name, value.
    X(&'static str, &'static str, &'static str),
    /// Mode of an existing entry.
    M(&'static str, u32),
    /// Owner of an existing entry.
    O(&'static str, u32, u32),
}

fn layer(spec: &[E]) -> MemFs {
    let fs = MemFs::new();
    for e in spec {
        match *e {
            E::F(path) => fs.write(p(path), 0o644, path.as_bytes()).unwrap(),
            E::D(path) => fs.mkdir(p(path), 0o755).unwrap(),
            E::Opq(path) => {
                fs.mkdir(p(path), 0o755).unwrap();
                fs.set_xattr(p(path), x("trusted.overlay.opaque"), b"y").unwrap();
            }
            E::Wh(path) => fs.mknod(p(path), NodeKind::WHITEOUT, 0).unwrap(),
            E::L(path, target) => fs.symlink(p(target), p(path)).unwrap(),
            E::Fifo(path) => fs.mknod(p(path), NodeKind::Fifo, 0o644).unwrap(),
            E::X(path, name, value) => fs.set_xattr(p(path), x(name), value.as_bytes()).unwrap(),
            E::M(path, mode) => fs.set_mode(p(path), mode).unwrap(),
            E::O(path, uid, gid) => fs.set_owner(p(path), uid, gid).unwrap(),
        }
    }
    fs
}

/// A writable mount of `lowers` (uppermost first) over a fresh upper.
struct Mount {
    fs: OverlayFs,
    upper: MemFs,
}

fn mount(lowers: &[&MemFs]) -> Mount {
    let upper = MemFs::new();
    let fs = OverlayFs::new(
        lowers.iter().map(|l| Arc::new((*l).clone()) as Arc<dyn Fs>).collect(),
        Some(Arc::new(upper.clone())),
    );
    Mount { fs, upper }
}

fn mount1(spec: &[E]) -> Mount {
    mount(&[&layer(spec)])
}

fn names(fs: &dyn Fs, dir: &str) -> Vec<String> {
    let mut v: Vec<String> = fs
        .read_dir(p(dir))
        .unwrap()
        .into_iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn read(fs: &dyn Fs, path: &str) -> String {
    String::from_utf8(fs.read(p(path)).unwrap()).unwrap()
}

fn is_whiteout(fs: &dyn Fs, path: &str) -> bool {
    fs.metadata(p(path)).is_ok_and(|m| m.is_whiteout())
}

fn opaque(fs: &dyn Fs, path: &str) -> bool {
    fs.get_xattr(p(path), x("trusted.overlay.opaque")).unwrap().as_deref() == Some(b"y")
}

fn in_upper(m: &Mount, path: &str) -> bool {
    m.upper.exists(p(path)).unwrap()
}

/// Everything in a tree, path by path (the unit tests' "nothing else
/// changed" check).
fn paths(fs: &dyn Fs) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(dir) = stack.pop() {
        for e in fs.read_dir(&dir).unwrap() {
            let path = dir.join(&e.name);
            if e.file_type == FileType::Directory {
                stack.push(path.clone());
            }
            out.push(path.to_string_lossy().into_owned());
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------
// Lookup and listing.

#[test]
fn the_topmost_layer_wins() {
    let top = layer(&[E::F("f"), E::F("x")]);
    let bottom = layer(&[E::F("f"), E::D("x"), E::F("x/inner"), E::F("b")]);
    bottom.write(p("f"), 0o600, b"bottom").unwrap();
    let m = mount(&[&top, &bottom]);
    assert_eq!(read(&m.fs, "f"), "f");
    assert_eq!(m.fs.metadata(p("f")).unwrap().mode, 0o644);
    // A non-directory hides a directory below it, contents and all.
    assert_eq!(m.fs.metadata(p("x")).unwrap().file_type, FileType::Regular);
    assert_eq!(kind(m.fs.metadata(p("x/inner"))), ErrorKind::NotADirectory);
    assert_eq!(read(&m.fs, "b"), "b");
    assert_eq!(names(&m.fs, ""), ["b", "f", "x"]);
}

#[test]
fn a_whiteout_hides_the_name_in_every_layer_below() {
    let l0 = layer(&[E::Wh("a"), E::D("d"), E::Wh("d/gone")]);
    let l1 = layer(&[E::F("a"), E::D("d"), E::F("d/gone"), E::F("d/kept")]);
    let l2 = layer(&[E::D("a"), E::F("a/deep")]);
    let m = mount(&[&l0, &l1, &l2]);
    assert_eq!(kind(m.fs.metadata(p("a"))), ErrorKind::NotFound);
    assert_eq!(kind(m.fs.metadata(p("a/deep"))), ErrorKind::NotFound);
    assert_eq!(names(&m.fs, ""), ["d"]);
    assert_eq!(names(&m.fs, "d"), ["kept"]);
}

#[test]
fn directories_merge_down_to_the_first_opaque_one() {
    let l0 = layer(&[E::D("d"), E::F("d/one")]);
    let l1 = layer(&[E::Opq("d"), E::F("d/two")]);
    let l2 = layer(&[E::D("d"), E::F("d/three")]);
    let m = mount(&[&l0, &l1, &l2]);
    assert_eq!(names(&m.fs, "d"), ["one", "two"]);
    assert_eq!(kind(m.fs.metadata(p("d/three"))), ErrorKind::NotFound);
    // The opaque marker itself is the kernel's and stays invisible.
    assert_eq!(m.fs.get_xattr(p("d"), x("trusted.overlay.opaque")).unwrap(), None);
    assert!(m.fs.list_xattrs(p("d")).unwrap().is_empty());
}

#[test]
fn a_non_directory_below_a_directory_ends_the_merge() {
    let l0 = layer(&[E::D("d"), E::F("d/a")]);
    let l1 = layer(&[E::F("d")]);
    let l2 = layer(&[E::D("d"), E::F("d/b")]);
    let m = mount(&[&l0, &l1, &l2]);
    assert_eq!(names(&m.fs, "d"), ["a"]);
    assert_eq!(kind(m.fs.metadata(p("d/b"))), ErrorKind::NotFound);
}

#[test]
fn the_root_merges_every_layer_even_when_marked_opaque() {
    let l0 = layer(&[E::F("a"), E::X("", "trusted.overlay.opaque", "y")]);
    let l1 = layer(&[E::F("b")]);
    let m = mount(&[&l0, &l1]);
    m.upper.set_xattr(p(""), x("trusted.overlay.opaque"), b"y").unwrap();
    assert_eq!(names(&m.fs, ""), ["a", "b"]);
}

#[test]
fn intermediate_symlinks_resolve_inside_the_merged_root() {
    let l0 = layer(&[E::L("abs", "/d"), E::L("rel", "../../../d"), E::L("loop", "loop")]);
    let l1 = layer(&[E::D("d"), E::F("d/f")]);
    let m = mount(&[&l0, &l1]);
    assert_eq!(read(&m.fs, "abs/f"), "d/f");
    assert_eq!(read(&m.fs, "rel/f"), "d/f");
    assert_eq!(read(&m.fs, "d/../abs/f"), "d/f");
    assert_eq!(kind(m.fs.metadata(p("loop/x"))), ErrorKind::SymlinkLoop);
    // The final component is never followed.
    assert!(m.fs.metadata(p("abs")).unwrap().is_symlink());
    assert_eq!(kind(m.fs.open_file(p("abs"))), ErrorKind::SymlinkLoop);
    assert_eq!(m.fs.readlink(p("abs")).unwrap(), p("/d"));
    // A write through the link copies up the real directory, not the link.
    m.fs.write(p("abs/new"), 0o644, b"n").unwrap();
    assert_eq!(paths(&m.upper), ["d", "d/new"]);
}

#[test]
fn only_merged_directories_hide_their_whiteouts_when_listed() {
    // A directory from a single layer is listed as it is, whiteouts too
    // (as the kernel does), but the whiteout's name does not resolve.
    let l0 = layer(&[E::D("g"), E::Wh("g/ghost"), E::F("g/real"), E::F(".wh.x")]);
    let l1 = layer(&[E::F("other")]);
    let m = mount(&[&l0, &l1]);
    let listed: Vec<_> =
        m.fs.read_dir(p("g"))
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.file_type))
            .collect();
    assert!(listed.contains(&("ghost".into(), FileType::CharDevice)), "{listed:?}");
    assert_eq!(kind(m.fs.metadata(p("g/ghost"))), ErrorKind::NotFound);
    // Once copied up the directory is merged and hides it.
    m.fs.set_mode(p("g"), 0o700).unwrap();
    assert_eq!(names(&m.fs, "g"), ["real"]);
    // `.wh.` names mean nothing to overlayfs.
    assert!(names(&m.fs, "").contains(&".wh.x".to_string()));
    // Still empty to rmdir: whiteouts never count.
    let l = layer(&[E::D("g"), E::Wh("g/ghost")]);
    let m = mount(&[&l]);
    m.fs.remove_dir(p("g")).unwrap();
    assert!(is_whiteout(&m.upper, "g"));
}

// ---------------------------------------------------------------------------
// Private xattrs.

#[test]
fn private_xattrs_are_escaped_never_shown() {
    let m = mount1(&[
        E::Opq("d"),
        E::X("d", "trusted.overlay.origin", "o"),
        E::X("d", "user.k", "v"),
    ]);
    assert_eq!(m.fs.list_xattrs(p("d")).unwrap(), [OsString::from("user.k")]);
    assert_eq!(m.fs.get_xattr(p("d"), x("trusted.overlay.origin")).unwrap(), None);
    // Setting one through the mount stores an escaped name.
    m.fs.set_xattr(p("d"), x("trusted.overlay.opaque"), b"mine").unwrap();
    assert_eq!(
        m.fs.get_xattr(p("d"), x("trusted.overlay.opaque")).unwrap().unwrap(),
        b"mine"
    );
    assert!(!opaque(&m.upper, "d"), "copy-up never copies the private marker");
    assert_eq!(
        m.upper
            .get_xattr(p("d"), x("trusted.overlay.overlay.opaque"))
            .unwrap()
            .unwrap(),
        b"mine"
    );
    let mut listed = m.fs.list_xattrs(p("d")).unwrap();
    listed.sort();
    assert_eq!(
        listed,
        [OsString::from("trusted.overlay.opaque"), OsString::from("user.k")]
    );
    m.fs.remove_xattr(p("d"), x("trusted.overlay.opaque")).unwrap();
    assert!(
        m.upper
            .get_xattr(p("d"), x("trusted.overlay.overlay.opaque"))
            .unwrap()
            .is_none()
    );
    // The bare prefix names nothing; an escaped name must fit in 255 bytes.
    assert_eq!(
        kind(m.fs.set_xattr(p("d"), x("trusted.overlay."), b"1")),
        ErrorKind::InvalidInput
    );
    let long = format!("trusted.overlay.{}", "a".repeat(235));
    assert_eq!(kind(m.fs.set_xattr(p("d"), x(&long), b"1")), ErrorKind::Unsupported);
    let fits = format!("trusted.overlay.{}", "a".repeat(230));
    m.fs.set_xattr(p("d"), x(&fits), b"1").unwrap();
}

#[test]
fn userxattr_mounts_keep_their_markers_in_user_overlay() {
    let l0 = layer(&[
        E::D("d"),
        E::X("d", "user.overlay.opaque", "y"),
        E::X("d", "trusted.overlay.opaque", "y"),
        E::F("d/top"),
        E::D("e"),
        E::X("e", "trusted.overlay.opaque", "y"),
    ]);
    let l1 = layer(&[E::D("d"), E::F("d/hidden"), E::D("e"), E::F("e/shown")]);
    let upper = MemFs::new();
    let fs = OverlayFs::new(vec![Arc::new(l0), Arc::new(l1)], Some(Arc::new(upper.clone()))).with_xattr_namespace(true);
    assert_eq!(names(&fs, "d"), ["top"]);
    assert_eq!(names(&fs, "e"), ["shown"], "trusted.overlay.* means nothing here");
    assert_eq!(
        fs.list_xattrs(p("e")).unwrap(),
        [OsString::from("trusted.overlay.opaque")]
    );
    // Whiteouts are the same; new opaque dirs are marked in user.overlay.
    fs.remove_dir(p("e")).unwrap_err();
    fs.remove_file(p("e/shown")).unwrap();
    fs.remove_dir(p("e")).unwrap();
    fs.mkdir(p("e"), 0o755).unwrap();
    assert_eq!(
        upper.get_xattr(p("e"), x("user.overlay.opaque")).unwrap().unwrap(),
        b"y"
    );
    assert_eq!(upper.get_xattr(p("e"), x("trusted.overlay.opaque")).unwrap(), None);
    assert_eq!(fs.get_xattr(p("e"), x("user.overlay.opaque")).unwrap(), None);
}

// ---------------------------------------------------------------------------
// Copy-up.

#[test]
fn copy_up_takes_data_mode_owner_xattrs_and_parents_first() {
    let l = layer(&[
        E::D("a"),
        E::M("a", 0o750),
        E::O("a", 3, 4),
        E::X("a", "user.dir", "1"),
        E::X("a", "trusted.overlay.origin", "kernel's"),
        E::D("a/b"),
        E::M("a/b", 0o711),
        E::F("a/b/f"),
        E::O("a/b/f", 5, 6),
        E::M("a/b/f", 0o4640),
        E::X("a/b/f", "user.x", "v"),
        E::F("a/other"),
    ]);
    l.set_times(p("a/b/f"), None, Some(Timestamp::from_secs(1))).unwrap();
    let m = mount(&[&l]);
    let mut f = m.fs.open_file_rw(p("a/b/f")).unwrap();
    let mut data = String::new();
    f.read_to_string(&mut data).unwrap();
    assert_eq!(data, "a/b/f");
    drop(f);
    assert_eq!(paths(&m.upper), ["a", "a/b", "a/b/f"]);
    let a = m.upper.metadata(p("a")).unwrap();
    assert_eq!((a.mode, a.uid, a.gid), (0o750, 3, 4));
    assert_eq!(m.upper.list_xattrs(p("a")).unwrap(), [OsString::from("user.dir")]);
    assert!(!opaque(&m.upper, "a"));
    assert_eq!(m.upper.metadata(p("a/b")).unwrap().mode, 0o711);
    let f = m.upper.metadata(p("a/b/f")).unwrap();
    assert_eq!((f.mode, f.uid, f.gid), (0o4640, 5, 6), "copy-up keeps setuid");
    assert_eq!(f.mtime, Timestamp::from_secs(1));
    assert_eq!(read(&m.upper, "a/b/f"), "a/b/f");
    assert_eq!(m.upper.get_xattr(p("a/b/f"), x("user.x")).unwrap().unwrap(), b"v");
    // The merged view did not change; the siblings are still the lower's.
    assert_eq!(names(&m.fs, "a"), ["b", "other"]);
}

#[test]
fn a_directory_copies_up_alone() {
    let m = mount1(&[E::D("d"), E::F("d/f"), E::D("d/sub"), E::F("d/sub/g")]);
    m.fs.set_mode(p("d"), 0o700).unwrap();
    assert_eq!(paths(&m.upper), ["d"]);
    assert_eq!(m.upper.metadata(p("d")).unwrap().mode, 0o700);
    assert_eq!(names(&m.fs, "d"), ["f", "sub"]);
    assert_eq!(read(&m.fs, "d/sub/g"), "d/sub/g");
}

#[test]
fn every_change_copies_up() {
    type Change = fn(&dyn Fs);
    let changes: [(&str, Change); 11] = [
        ("open rw", |fs| drop(fs.open_file_rw(p("d/f")).unwrap())),
        ("truncate", |fs| drop(fs.create_file(p("d/f"), 0o600).unwrap())),
        ("chmod", |fs| fs.set_mode(p("d/f"), 0o600).unwrap()),
        ("chown", |fs| fs.set_owner(p("d/f"), 1, 1).unwrap()),
        ("utimes", |fs| {
            fs.set_times(p("d/f"), Some(Timestamp::from_secs(5)), None).unwrap()
        }),
        ("setxattr", |fs| fs.set_xattr(p("d/f"), x("user.n"), b"1").unwrap()),
        ("removexattr", |fs| fs.remove_xattr(p("d/f"), x("user.x")).unwrap()),
        ("link", |fs| fs.hardlink(p("d/f"), p("d/g")).unwrap()),
        ("rename", |fs| fs.rename(p("d/f"), p("d/g")).unwrap()),
        ("fchmod on a read handle", |fs| {
            fs.open_file(p("d/f")).unwrap().set_mode(0o600).unwrap()
        }),
        // An unknown namespace is refused by the upper, after the copy-up.
        ("bogus xattr", |fs| {
            assert_eq!(kind(fs.set_xattr(p("d/f"), x("bogus.n"), b"1")), ErrorKind::Unsupported)
        }),
    ];
    for (what, change) in changes {
        let m = mount1(&[E::D("d"), E::F("d/f"), E::X("d/f", "user.x", "1")]);
        change(&m.fs);
        assert!(in_upper(&m, "d"), "{what}");
        let copied = m.upper.metadata(p("d/f")).map(|md| md.is_whiteout());
        assert!(
            matches!(copied, Ok(false)) || in_upper(&m, "d/g"),
            "{what}: {:?}",
            paths(&m.upper)
        );
    }
}

#[test]
fn failed_changes_copy_nothing_up() {
    let m = mount1(&[E::D("d"), E::F("d/f"), E::L("d/l", "f"), E::Fifo("d/p")]);
    assert_eq!(
        kind(m.fs.remove_xattr(p("d/f"), x("user.none"))),
        ErrorKind::NoSuchAttribute
    );
    assert_eq!(
        kind(m.fs.set_xattr(p("d/l"), x("user.x"), b"1")),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        kind(m.fs.set_xattr(p("d/p"), x("user.x"), b"1")),
        ErrorKind::PermissionDenied
    );
    assert_eq!(kind(m.fs.set_mode(p("d/l"), 0o600)), ErrorKind::Unsupported);
    assert_eq!(kind(m.fs.create_new(p("d/f"), 0o600)), ErrorKind::AlreadyExists);
    assert_eq!(kind(m.fs.create_file(p("d/p"), 0o600)), ErrorKind::NotARegularFile);
    assert_eq!(kind(m.fs.open_file_rw(p("d/l"))), ErrorKind::SymlinkLoop);
    assert_eq!(kind(m.fs.mkdir(p("d"), 0o755)), ErrorKind::AlreadyExists);
    assert_eq!(kind(m.fs.remove_dir(p("d"))), ErrorKind::DirectoryNotEmpty);
    assert_eq!(kind(m.fs.rename(p("d"), p("e"))), ErrorKind::CrossDevice);
    assert_eq!(kind(m.fs.hardlink(p("d"), p("e"))), ErrorKind::PermissionDenied);
    assert_eq!(m.fs.get_xattr(p("d/l"), x("user.x")).unwrap(), None);
    assert!(paths(&m.upper).is_empty(), "{:?}", paths(&m.upper));
    // Symlinks copy up as symlinks (lchown, utimes).
    m.fs.set_owner(p("d/l"), 2, 2).unwrap();
    assert_eq!(m.upper.readlink(p("d/l")).unwrap(), p("f"));
    assert_eq!(m.upper.metadata(p("d/l")).unwrap().uid, 2);
}

#[test]
fn chown_after_copy_up_clears_setuid_as_the_kernel_does() {
    let m = mount1(&[E::F("su"), E::M("su", 0o4755)]);
    m.fs.set_owner(p("su"), 1, 1).unwrap();
    assert_eq!(m.fs.metadata(p("su")).unwrap().mode, 0o755);
}

// ---------------------------------------------------------------------------
// Removal.

#[test]
fn removing_a_lower_entry_leaves_a_root_owned_whiteout() {
    let m = mount1(&[E::D("s"), E::M("s", 0o2775), E::O("s", 0, 7), E::F("s/f"), E::F("g")]);
    m.fs.remove_file(p("s/f")).unwrap();
    let wh = m.upper.metadata(p("s/f")).unwrap();
    assert!(wh.is_whiteout());
    assert_eq!((wh.mode, wh.uid, wh.gid), (0, 0, 0), "even in a setgid directory");
    assert_eq!(names(&m.fs, "s"), Vec::<String>::new());
    // A copied-up entry gives way to a whiteout too.
    m.fs.set_mode(p("g"), 0o600).unwrap();
    m.fs.remove_file(p("g")).unwrap();
    assert!(is_whiteout(&m.upper, "g"));
    // An entry only in the upper just goes.
    m.fs.write(p("new"), 0o644, b"").unwrap();
    m.fs.remove_file(p("new")).unwrap();
    assert!(!in_upper(&m, "new"));
    // So does one whose lower name a lower whiteout hides.
    let l0 = layer(&[E::Wh("h")]);
    let l1 = layer(&[E::F("h")]);
    let m = mount(&[&l0, &l1]);
    m.fs.write(p("h"), 0o644, b"").unwrap();
    m.fs.remove_file(p("h")).unwrap();
    assert!(!in_upper(&m, "h"));
}

#[test]
fn rmdir_needs_the_merged_directory_empty() {
    let m = mount1(&[E::D("d"), E::F("d/f"), E::D("d/e")]);
    assert_eq!(kind(m.fs.remove_dir(p("d"))), ErrorKind::DirectoryNotEmpty);
    m.fs.remove_file(p("d/f")).unwrap();
    m.fs.remove_dir(p("d/e")).unwrap();
    assert_eq!(paths(&m.upper), ["d", "d/e", "d/f"]);
    m.fs.remove_dir(p("d")).unwrap();
    assert!(is_whiteout(&m.upper, "d"), "the upper copy and its whiteouts go");
    assert_eq!(paths(&m.upper), ["d"]);
    assert_eq!(kind(m.fs.remove_dir(p("d"))), ErrorKind::NotFound);
    assert_eq!(kind(m.fs.remove_file(p("e"))), ErrorKind::NotFound);
}

#[test]
fn remove_all_of_a_merged_tree_leaves_one_whiteout() {
    let l0 = layer(&[E::D("t"), E::F("t/a"), E::D("t/sub"), E::F("t/sub/b")]);
    let l1 = layer(&[E::D("t"), E::D("t/sub"), E::F("t/sub/c"), E::L("t/l", "/")]);
    let m = mount(&[&l0, &l1]);
    m.fs.write(p("t/sub/new"), 0o644, b"").unwrap();
    m.fs.remove_all(p("t")).unwrap();
    assert_eq!(paths(&m.upper), ["t"]);
    assert!(is_whiteout(&m.upper, "t"));
    m.fs.remove_all(p("t")).unwrap();
    m.fs.remove_all(p("missing/deeper")).unwrap();
    assert_eq!(names(&m.fs, ""), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// Creation.

#[test]
fn a_directory_made_over_a_whiteout_is_opaque() {
    let m = mount1(&[E::D("d"), E::D("d/sub"), E::F("d/sub/old"), E::F("f")]);
    m.fs.remove_all(p("d/sub")).unwrap();
    m.fs.mkdir(p("d/sub"), 0o700).unwrap();
    assert!(opaque(&m.upper, "d/sub"));
    assert_eq!(names(&m.fs, "d/sub"), Vec::<String>::new());
    // Over a file's whiteout too.
    m.fs.remove_file(p("f")).unwrap();
    m.fs.mkdir(p("f"), 0o755).unwrap();
    assert!(opaque(&m.upper, "f"));
    // Elsewhere a new directory is not opaque, even in a merged parent.
    m.fs.mkdir(p("d/plain"), 0o755).unwrap();
    assert!(!opaque(&m.upper, "d/plain"));
    // Nor where a lower layer's own whiteout hides the name.
    let l0 = layer(&[E::Wh("w")]);
    let l1 = layer(&[E::D("w"), E::F("w/below")]);
    let m = mount(&[&l0, &l1]);
    m.fs.mkdir(p("w"), 0o755).unwrap();
    assert!(!opaque(&m.upper, "w"));
    assert_eq!(names(&m.fs, "w"), Vec::<String>::new());
}

#[test]
fn anything_made_over_a_whiteout_replaces_it() {
    let m = mount1(&[E::F("a"), E::F("b"), E::F("c"), E::F("d")]);
    for name in ["a", "b", "c", "d"] {
        m.fs.remove_file(p(name)).unwrap();
    }
    m.fs.write(p("a"), 0o600, b"new").unwrap();
    m.fs.symlink(p("t"), p("b")).unwrap();
    m.fs.mknod(p("c"), NodeKind::Fifo, 0o600).unwrap();
    m.fs.write(p("x"), 0o644, b"").unwrap();
    m.fs.hardlink(p("x"), p("d")).unwrap();
    assert_eq!(read(&m.upper, "a"), "new");
    assert_eq!(m.upper.metadata(p("a")).unwrap().mode, 0o600);
    assert!(m.upper.metadata(p("b")).unwrap().is_symlink());
    assert_eq!(m.upper.metadata(p("c")).unwrap().file_type, FileType::Fifo);
    assert_eq!(
        m.upper.metadata(p("d")).unwrap().ino,
        m.upper.metadata(p("x")).unwrap().ino
    );
}

#[test]
fn a_whiteout_cannot_be_made_through_the_mount() {
    let m = mount1(&[E::F("f")]);
    assert_eq!(
        kind(m.fs.mknod(p("new"), NodeKind::WHITEOUT, 0)),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        kind(m.fs.mknod(p("f"), NodeKind::WHITEOUT, 0)),
        ErrorKind::AlreadyExists
    );
    assert!(paths(&m.upper).is_empty());
}

#[test]
fn a_hard_link_copies_its_source_up_once() {
    let m = mount1(&[E::D("d"), E::F("d/f")]);
    m.fs.hardlink(p("d/f"), p("g")).unwrap();
    let (f, g) = (m.upper.metadata(p("d/f")).unwrap(), m.upper.metadata(p("g")).unwrap());
    assert_eq!(f.ino, g.ino);
    // Renaming one name of an inode onto another does nothing.
    m.fs.rename(p("d/f"), p("g")).unwrap();
    assert!(in_upper(&m, "d/f") && in_upper(&m, "g"));
}

// ---------------------------------------------------------------------------
// Rename.

#[test]
fn a_lower_directory_cannot_be_renamed() {
    let l0 = layer(&[E::D("d"), E::F("d/f"), E::D("e")]);
    let l1 = layer(&[E::D("m")]);
    let m = mount(&[&l0, &l1]);
    assert_eq!(kind(m.fs.rename(p("d"), p("x"))), ErrorKind::CrossDevice);
    // The VFS's checks come first.
    assert_eq!(kind(m.fs.rename(p("d"), p("d/in"))), ErrorKind::InvalidInput);
    assert_eq!(kind(m.fs.rename(p("d/f"), p("e"))), ErrorKind::IsADirectory);
    assert_eq!(kind(m.fs.rename(p("d"), p("d/f"))), ErrorKind::InvalidInput);
    assert_eq!(kind(m.fs.rename(p("e"), p("d/f"))), ErrorKind::NotADirectory);
    // Even when the directory has an upper part.
    m.fs.set_mode(p("m"), 0o700).unwrap();
    assert_eq!(kind(m.fs.rename(p("m"), p("x"))), ErrorKind::CrossDevice);
    assert_eq!(paths(&m.upper), ["m"]);
}

#[test]
fn renaming_a_lower_file_leaves_a_whiteout() {
    let m = mount1(&[
        E::D("s"),
        E::M("s", 0o2775),
        E::O("s", 0, 7),
        E::F("s/f"),
        E::F("a"),
        E::F("b"),
    ]);
    m.fs.rename(p("s/f"), p("s/g")).unwrap();
    assert_eq!(read(&m.upper, "s/g"), "s/f");
    let wh = m.upper.metadata(p("s/f")).unwrap();
    assert!(wh.is_whiteout());
    // rename(RENAME_WHITEOUT) makes it as a new node of its directory.
    assert_eq!((wh.uid, wh.gid), (0, 7));
    // Onto a whited-out name the two swap: the old whiteout moves.
    m.fs.remove_file(p("a")).unwrap();
    m.fs.rename(p("b"), p("a")).unwrap();
    assert!(is_whiteout(&m.upper, "b"));
    assert_eq!(read(&m.fs, "a"), "b");
    // An upper-only file leaves nothing behind.
    m.fs.write(p("u"), 0o644, b"").unwrap();
    m.fs.rename(p("u"), p("v")).unwrap();
    assert!(!in_upper(&m, "u"));
    assert_eq!(names(&m.fs, ""), ["a", "s", "v"]);
}

#[test]
fn an_upper_directory_moves_and_turns_opaque_in_a_merged_parent() {
    let m = mount1(&[E::D("d"), E::F("d/f"), E::D("empty"), E::D("gone")]);
    m.fs.mkdir(p("n"), 0o755).unwrap();
    m.fs.write(p("n/inside"), 0o644, b"").unwrap();
    m.fs.rename(p("n"), p("d/n")).unwrap();
    assert!(opaque(&m.upper, "d/n"), "moved into a merged directory");
    assert_eq!(names(&m.fs, "d/n"), ["inside"]);
    // Over an empty lower directory.
    m.fs.mkdir(p("n2"), 0o755).unwrap();
    m.fs.rename(p("n2"), p("empty")).unwrap();
    assert!(opaque(&m.upper, "empty"));
    // Opaque, it merges nothing: it moves like any upper directory.
    assert_eq!(kind(m.fs.rename(p("empty"), p("d"))), ErrorKind::DirectoryNotEmpty);
    m.fs.mkdir(p("n3"), 0o755).unwrap();
    assert_eq!(kind(m.fs.rename(p("n3"), p("d"))), ErrorKind::DirectoryNotEmpty);
    // Onto a whiteout.
    m.fs.remove_dir(p("gone")).unwrap();
    m.fs.rename(p("n3"), p("gone")).unwrap();
    assert!(opaque(&m.upper, "gone"));
    assert!(!in_upper(&m, "n3"));
    // Inside a directory of the upper alone it stays as it is.
    m.fs.mkdir(p("u"), 0o755).unwrap();
    m.fs.mkdir(p("u/a"), 0o755).unwrap();
    m.fs.rename(p("u/a"), p("u/b")).unwrap();
    assert!(!opaque(&m.upper, "u/b"));
    // An opaque directory over a lower name leaves a whiteout when moved.
    m.fs.rename(p("empty"), p("u/c")).unwrap();
    assert!(is_whiteout(&m.upper, "empty"));
}

// ---------------------------------------------------------------------------
// Read-only mounts, handles, subtrees.

#[test]
fn a_read_only_mount_refuses_changes_after_the_kernels_own_checks() {
    let l = layer(&[E::F("f"), E::D("d"), E::F("d/g"), E::L("l", "f")]);
    let fs = OverlayFs::new(vec![Arc::new(l)], None);
    assert_eq!(read(&fs, "d/g"), "d/g");
    assert_eq!(names(&fs, ""), ["d", "f", "l"]);
    let ro = ErrorKind::ReadOnly;
    assert_eq!(kind(fs.mkdir(p("d"), 0o755)), ErrorKind::AlreadyExists);
    assert_eq!(kind(fs.mkdir(p("new"), 0o755)), ro);
    assert_eq!(kind(fs.mkdir(p("nope/x"), 0o755)), ErrorKind::NotFound);
    assert_eq!(kind(fs.remove_file(p("missing"))), ro);
    assert_eq!(kind(fs.remove_file(p("nope/x"))), ErrorKind::NotFound);
    assert_eq!(kind(fs.remove_dir(p("f"))), ro);
    assert_eq!(kind(fs.remove_all(p("missing"))), ro);
    fs.remove_all(p("nope/x")).unwrap();
    assert_eq!(kind(fs.rename(p("missing"), p("x"))), ro);
    assert_eq!(kind(fs.create_new(p("f"), 0o644)), ErrorKind::AlreadyExists);
    assert_eq!(kind(fs.create_file(p("f"), 0o644)), ro);
    assert_eq!(kind(fs.create_file(p("d"), 0o644)), ErrorKind::IsADirectory);
    assert_eq!(kind(fs.create_new(p("new"), 0o644)), ro);
    assert_eq!(kind(fs.open_file_rw(p("f"))), ro);
    assert_eq!(kind(fs.set_owner(p("missing"), 1, 1)), ErrorKind::NotFound);
    assert_eq!(kind(fs.set_owner(p("f"), 1, 1)), ro);
    assert_eq!(kind(fs.set_mode(p("l"), 0o600)), ErrorKind::Unsupported);
    assert_eq!(kind(fs.set_mode(p(""), 0o700)), ro);
    assert_eq!(kind(fs.set_times(p("f"), None, None)), ro);
    assert_eq!(kind(fs.set_xattr(p("missing"), x("user.x"), b"1")), ErrorKind::NotFound);
    assert_eq!(kind(fs.set_xattr(p("l"), x("user.x"), b"1")), ro);
    assert_eq!(kind(fs.remove_xattr(p("f"), x("user.x"))), ro);
    assert_eq!(kind(fs.hardlink(p("f"), p("x"))), ro);
    assert_eq!(kind(fs.hardlink(p("d"), p("x"))), ro);
    assert_eq!(kind(fs.hardlink(p("missing"), p("x"))), ErrorKind::NotFound);
    assert_eq!(kind(fs.hardlink(p("f"), p("d"))), ErrorKind::AlreadyExists);
    assert_eq!(kind(fs.symlink(p("t"), p("f"))), ErrorKind::AlreadyExists);
    assert_eq!(kind(fs.symlink(p("t"), p("x"))), ro);
    assert_eq!(kind(fs.mknod(p("x"), NodeKind::WHITEOUT, 0)), ro);
    assert_eq!(kind(fs.open_file(p("f")).unwrap().set_mode(0o600)), ro);
}

#[test]
fn the_upper_is_all_the_state() {
    let l = layer(&[E::D("d"), E::F("d/f"), E::F("g")]);
    let upper = MemFs::new();
    let mk = || OverlayFs::new(vec![Arc::new(l.clone())], Some(Arc::new(upper.clone())));
    let first = mk();
    first.remove_file(p("d/f")).unwrap();
    first.write(p("g"), 0o644, b"changed").unwrap();
    drop(first);
    let second = mk();
    assert_eq!(names(&second, "d"), Vec::<String>::new());
    assert_eq!(read(&second, "g"), "changed");
}

#[test]
fn handles_read_from_their_layer_and_walk_the_merged_tree() {
    let l0 = layer(&[E::D("d"), E::F("d/a"), E::X("d/a", "user.x", "1"), E::Wh("d/b")]);
    let l1 = layer(&[E::D("d"), E::F("d/b"), E::F("d/c"), E::L("d/l", "a")]);
    let m = mount(&[&l0, &l1]);
    let root = m.fs.open_dir(p("")).unwrap();
    let mut d = root.open_dir(x("d")).unwrap();
    let mut listed: Vec<_> = d.entries().unwrap().into_iter().map(|e| e.name).collect();
    listed.sort();
    assert_eq!(listed, ["a", "c", "l"]);
    assert_eq!(kind(d.metadata(x("b"))), ErrorKind::NotFound);
    assert_eq!(d.readlink(x("l")).unwrap(), p("a"));
    assert_eq!(kind(d.open_file(x("l"))), ErrorKind::SymlinkLoop);
    assert_eq!(d.xattrs(x("a")).unwrap(), [(OsString::from("user.x"), b"1".to_vec())]);
    let (mut f, md) = d.open_file(x("a")).unwrap();
    assert_eq!(md.size, 3);
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "d/a");
    assert!(paths(&m.upper).is_empty());
    // Changing metadata through a read handle copies the file up.
    f.set_xattr(x("user.y"), b"2").unwrap();
    f.set_mode(0o600).unwrap();
    assert_eq!(f.metadata().unwrap().mode, 0o600);
    assert_eq!(f.xattrs().unwrap().len(), 2);
    assert_eq!(m.upper.get_xattr(p("d/a"), x("user.y")).unwrap().unwrap(), b"2");
    // Writes through a read-write handle land in the upper.
    let mut w = m.fs.open_file_rw(p("d/c")).unwrap();
    w.seek(SeekFrom::End(0)).unwrap();
    w.write_all(b"+").unwrap();
    drop(w);
    assert_eq!(read(&m.upper, "d/c"), "d/c+");
    assert_eq!(read(&l1, "d/c"), "d/c");
}

#[test]
fn a_subtree_is_rooted_in_its_merged_directory() {
    let l0 = layer(&[E::D("d"), E::L("d/abs", "/x"), E::F("x")]);
    let l1 = layer(&[E::D("d"), E::D("d/x"), E::F("d/x/f")]);
    let m = mount(&[&l0, &l1]);
    let sub = m.fs.subtree(p("d")).unwrap();
    assert_eq!(read(&*sub, "abs/f"), "d/x/f");
    assert_eq!(read(&*sub, "../../x/f"), "d/x/f");
    sub.write(p("new"), 0o644, b"n").unwrap();
    sub.remove_file(p("x/f")).unwrap();
    assert!(is_whiteout(&m.upper, "d/x/f"));
    assert_eq!(read(&m.fs, "d/new"), "n");
    assert_eq!(kind(m.fs.subtree(p("x"))), ErrorKind::NotADirectory);
}

#[test]
fn errors_name_the_operation_and_the_callers_path() {
    let m = mount1(&[E::D("d")]);
    let e = m.fs.rename(p("d"), p("e")).unwrap_err();
    assert_eq!((e.op(), e.path(), e.kind()), ("rename", p("d"), ErrorKind::CrossDevice));
    let e = m.fs.metadata(p("/d/../missing")).unwrap_err();
    assert_eq!((e.op(), e.path()), ("lstat", p("/d/../missing")));
}

// ---------------------------------------------------------------------------
// The differential test against the kernel.

mod differential {
    use super::*;
    use overlay_mount::{Method, Settings, Stack, Upper};
    use proptest::prelude::*;

    /// One entry of a generated lower layer; entries that cannot be made
    /// (a parent is a file...) are skipped.
    #[derive(Debug, Clone)]
    enum Lower {
        File(Vec<u8>, u32),
        Dir(u32),
        /// An opaque directory, marked in `user.overlay.` when true.
        Opaque(bool),
        Symlink(String),
        /// A hard link to another path of the layer.
        Hardlink(String),
        Whiteout,
        Fifo,
        Device,
        Xattr(&'static str),
        Owner(u32, u32),
        SetgidDir,
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write(String, u32, Vec<u8>),
        Append(String, Vec<u8>),
        CreateNew(String, u32),
        Mkdir(String, u32),
        MkdirAll(String),
        Symlink(String, String),
        Hardlink(String, String),
        Mknod(String, bool),
        SetXattr(String, &'static str, Vec<u8>),
        RemoveXattr(String, &'static str),
        GetXattr(String, &'static str),
        ListXattrs(String),
        SetMode(String, u32),
        SetOwner(String, u32, u32),
        SetTimes(String, i64),
        HandleChmod(String, u32),
        RemoveFile(String),
        RemoveDir(String),
        RemoveAll(String),
        Rename(String, String),
        Metadata(String),
        Read(String),
        ReadDir(String),
        Readlink(String),
        /// Walks a directory with handles, as the archive and diff code do.
        Walk(String),
        /// An operation in the subtree rooted at a directory.
        Sub(String, Box<Op>),
    }

    /// Few names, so that layers and operations keep meeting: `a` and `b`
    /// tend to be directories, `f` and `g` files.
    fn dir_name() -> impl Strategy<Value = &'static str> {
        prop_oneof![4 => Just("a"), 4 => Just("b"), 1 => Just("c")]
    }

    fn leaf_name() -> impl Strategy<Value = &'static str> {
        prop_oneof![2 => Just("a"), 2 => Just("b"), 3 => Just("f"), 3 => Just("g"), 1 => Just("c")]
    }

    /// Mostly shallow paths: one or two components, sometimes three.
    fn depth() -> impl Strategy<Value = usize> {
        prop_oneof![4 => Just(0usize), 4 => Just(1usize), 1 => Just(2usize)]
    }

    fn lower_path() -> impl Strategy<Value = String> {
        (
            depth().prop_flat_map(|n| prop::collection::vec(dir_name(), n)),
            leaf_name(),
        )
            .prop_map(|(mut v, leaf)| {
                v.push(leaf);
                v.join("/")
            })
    }

    fn path() -> impl Strategy<Value = String> {
        let dir = prop_oneof![12 => dir_name(), 1 => Just("..")];
        (
            depth().prop_flat_map(move |n| prop::collection::vec(dir.clone(), n)),
            leaf_name(),
        )
            .prop_map(|(mut v, leaf)| {
                v.push(leaf);
                v.join("/")
            })
    }

    fn target() -> impl Strategy<Value = String> {
        prop_oneof![
            path(),
            prop::sample::select(vec!["/", "/a", "..", "../b", "a/b", "missing"]).prop_map(String::from),
        ]
    }

    fn mode() -> impl Strategy<Value = u32> {
        prop::sample::select(vec![0o755, 0o644, 0o4755, 0o2775, 0o1777, 0o700, 0o000])
    }

    fn data() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..16)
    }

    fn lower_entry() -> impl Strategy<Value = Lower> {
        prop_oneof![
            7 => (data(), mode()).prop_map(|(d, m)| Lower::File(d, m)),
            4 => mode().prop_map(Lower::Dir),
            2 => any::<bool>().prop_map(Lower::Opaque),
            2 => target().prop_map(Lower::Symlink),
            1 => lower_path().prop_map(Lower::Hardlink),
            3 => Just(Lower::Whiteout),
            1 => Just(Lower::Fifo),
            1 => Just(Lower::Device),
            2 => prop::sample::select(vec![
                "user.x",
                "trusted.t",
                "trusted.overlay.origin",
                "trusted.overlay.overlay.esc",
                "user.overlay.origin",
                "user.overlay.overlay.esc",
            ])
            .prop_map(Lower::Xattr),
            1 => (0u32..3, 0u32..9).prop_map(|(u, g)| Lower::Owner(u, g)),
            1 => Just(Lower::SetgidDir),
        ]
    }

    fn layers() -> impl Strategy<Value = Vec<Vec<(String, Lower)>>> {
        prop::collection::vec(prop::collection::vec((lower_path(), lower_entry()), 0..16), 1..4)
    }

    fn xattr() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "user.x",
            "user.y",
            "trusted.overlay.opaque",
            "trusted.overlay.",
            "user.overlay.opaque",
            "user.overlay.",
            "trusted.t",
            "bogus.z",
        ])
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            12 => plain_op(),
            1 => (path(), plain_op()).prop_map(|(d, o)| Op::Sub(d, Box::new(o))),
        ]
    }

    fn plain_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (path(), mode(), data()).prop_map(|(p, m, d)| Op::Write(p, m, d)),
            2 => (path(), data()).prop_map(|(p, d)| Op::Append(p, d)),
            1 => (path(), mode()).prop_map(|(p, m)| Op::CreateNew(p, m)),
            4 => (path(), mode()).prop_map(|(p, m)| Op::Mkdir(p, m)),
            1 => path().prop_map(Op::MkdirAll),
            2 => (target(), path()).prop_map(|(t, p)| Op::Symlink(t, p)),
            3 => (path(), path()).prop_map(|(a, b)| Op::Hardlink(a, b)),
            1 => (path(), any::<bool>()).prop_map(|(p, w)| Op::Mknod(p, w)),
            3 => (path(), xattr(), data()).prop_map(|(p, n, v)| Op::SetXattr(p, n, v)),
            1 => (path(), xattr()).prop_map(|(p, n)| Op::RemoveXattr(p, n)),
            1 => (path(), xattr()).prop_map(|(p, n)| Op::GetXattr(p, n)),
            1 => path().prop_map(Op::ListXattrs),
            2 => (path(), mode()).prop_map(|(p, m)| Op::SetMode(p, m)),
            1 => (path(), 0u32..3, 0u32..3).prop_map(|(p, u, g)| Op::SetOwner(p, u, g)),
            1 => (path(), 0i64..2_000_000_000).prop_map(|(p, t)| Op::SetTimes(p, t)),
            1 => (path(), mode()).prop_map(|(p, m)| Op::HandleChmod(p, m)),
            3 => path().prop_map(Op::RemoveFile),
            3 => path().prop_map(Op::RemoveDir),
            1 => path().prop_map(Op::RemoveAll),
            4 => (path(), path()).prop_map(|(a, b)| Op::Rename(a, b)),
            1 => path().prop_map(Op::Metadata),
            2 => path().prop_map(Op::Read),
            1 => path().prop_map(Op::ReadDir),
            1 => path().prop_map(Op::Readlink),
            1 => path().prop_map(Op::Walk),
        ]
    }

    /// Builds a generated layer on disk; what cannot be made is skipped.
    fn build(fs: &dyn Fs, entries: &[(String, Lower)]) {
        for (path, entry) in entries {
            let path = Path::new(path);
            if let Some(parent) = path.parent() {
                let _ = fs.mkdir_all(parent, 0o755);
            }
            let _ = match entry {
                Lower::File(d, m) => fs.write(path, *m, d),
                Lower::Dir(m) => fs.mkdir(path, *m),
                Lower::Opaque(user) => {
                    let _ = fs.mkdir(path, 0o755);
                    let marker = if *user {
                        "user.overlay.opaque"
                    } else {
                        "trusted.overlay.opaque"
                    };
                    fs.set_xattr(path, x(marker), b"y")
                }
                Lower::Symlink(t) => fs.symlink(Path::new(t), path),
                Lower::Hardlink(existing) => fs.hardlink(Path::new(existing), path),
                Lower::Whiteout => fs.mknod(path, NodeKind::WHITEOUT, 0),
                Lower::Fifo => fs.mknod(path, NodeKind::Fifo, 0o640),
                Lower::Device => fs.mknod(path, NodeKind::CharDevice(overlay_fs::makedev(1, 3)), 0o666),
                Lower::Xattr(n) => fs.set_xattr(path, x(n), b"L"),
                Lower::Owner(u, g) => fs.set_owner(path, *u, *g),
                Lower::SetgidDir => fs.mkdir(path, 0o2775).and_then(|()| fs.set_owner(path, 0, 7)),
            };
        }
    }

    /// Copies a tree exactly (types, data, modes, owners, times, every
    /// xattr), the root's attributes included.
    fn copy_tree(src: &dyn Fs, dst: &dyn Fs, dir: &Path) {
        for e in src.read_dir(dir).unwrap() {
            let path = dir.join(&e.name);
            let md = src.metadata(&path).unwrap();
            match md.file_type {
                FileType::Directory => {
                    dst.mkdir(&path, 0o700).unwrap();
                    copy_tree(src, dst, &path);
                }
                FileType::Regular => dst.write(&path, 0o600, &src.read(&path).unwrap()).unwrap(),
                FileType::Symlink => dst.symlink(&src.readlink(&path).unwrap(), &path).unwrap(),
                FileType::Fifo => dst.mknod(&path, NodeKind::Fifo, 0).unwrap(),
                FileType::CharDevice => dst.mknod(&path, NodeKind::CharDevice(md.rdev), 0).unwrap(),
                FileType::BlockDevice => dst.mknod(&path, NodeKind::BlockDevice(md.rdev), 0).unwrap(),
                FileType::Socket => unreachable!("no sockets are generated"),
            }
            copy_attrs(src, dst, &path);
        }
    }

    fn copy_attrs(src: &dyn Fs, dst: &dyn Fs, path: &Path) {
        let md = src.metadata(path).unwrap();
        for n in src.list_xattrs(path).unwrap() {
            dst.set_xattr(path, &n, &src.get_xattr(path, &n).unwrap().unwrap())
                .unwrap();
        }
        dst.set_owner(path, md.uid, md.gid).unwrap();
        if !md.is_symlink() {
            dst.set_mode(path, md.mode).unwrap();
        }
        dst.set_times(path, Some(md.atime), Some(md.mtime)).unwrap();
    }

    /// The outcome of one operation, comparable across implementations.
    #[derive(Debug, PartialEq)]
    enum Outcome {
        Done,
        Value(String),
        Failed(ErrorKind),
    }

    fn outcome<T>(r: overlay_fs::Result<T>, show: impl FnOnce(T) -> String) -> Outcome {
        match r {
            Ok(v) => match show(v) {
                s if s.is_empty() => Outcome::Done,
                s => Outcome::Value(s),
            },
            Err(e) => Outcome::Failed(e.kind()),
        }
    }

    fn io_err(path: &str, e: std::io::Error) -> overlay_fs::Error {
        overlay_fs::Error::new("io", path, ErrorKind::Other(e.raw_os_error().unwrap_or(0)))
    }

    fn apply(fs: &dyn Fs, op: &Op) -> Outcome {
        let pb = |s: &String| PathBuf::from(s);
        let done = |_| String::new();
        match op {
            Op::Write(path, m, d) => outcome(fs.write(&pb(path), *m, d), done),
            Op::Append(path, d) => outcome(
                fs.open_file_rw(&pb(path)).and_then(|mut f| {
                    f.seek(SeekFrom::End(0))
                        .and_then(|_| f.write_all(d))
                        .map_err(|e| io_err(path, e))
                }),
                done,
            ),
            Op::CreateNew(path, m) => outcome(fs.create_new(&pb(path), *m).and_then(|f| f.set_owner(1, 2)), done),
            Op::Mkdir(path, m) => outcome(fs.mkdir(&pb(path), *m), done),
            Op::MkdirAll(path) => outcome(fs.mkdir_all(&pb(path), 0o755), done),
            Op::Symlink(t, path) => outcome(fs.symlink(Path::new(t), &pb(path)), done),
            Op::Hardlink(a, b) => outcome(fs.hardlink(&pb(a), &pb(b)), done),
            Op::Mknod(path, whiteout) => {
                let kind = if *whiteout { NodeKind::WHITEOUT } else { NodeKind::Fifo };
                outcome(fs.mknod(&pb(path), kind, 0o644), done)
            }
            Op::SetXattr(path, n, v) => outcome(fs.set_xattr(&pb(path), x(n), v), done),
            Op::RemoveXattr(path, n) => outcome(fs.remove_xattr(&pb(path), x(n)), done),
            Op::GetXattr(path, n) => outcome(fs.get_xattr(&pb(path), x(n)), |v| format!("{v:?}")),
            Op::ListXattrs(path) => outcome(fs.list_xattrs(&pb(path)), |mut v| {
                v.sort();
                format!("{v:?}")
            }),
            Op::SetMode(path, m) => outcome(fs.set_mode(&pb(path), *m), done),
            Op::SetOwner(path, u, g) => outcome(fs.set_owner(&pb(path), *u, *g), done),
            Op::SetTimes(path, t) => outcome(fs.set_times(&pb(path), None, Some(Timestamp::from_secs(*t))), done),
            Op::HandleChmod(path, m) => outcome(fs.open_file(&pb(path)).and_then(|f| f.set_mode(*m)), done),
            Op::RemoveFile(path) => outcome(fs.remove_file(&pb(path)), done),
            Op::RemoveDir(path) => outcome(fs.remove_dir(&pb(path)), done),
            Op::RemoveAll(path) => outcome(fs.remove_all(&pb(path)), done),
            Op::Rename(a, b) => outcome(fs.rename(&pb(a), &pb(b)), done),
            Op::Metadata(path) => outcome(fs.metadata(&pb(path)), |m| {
                let size = if m.is_dir() { 0 } else { m.size };
                format!(
                    "{:?} {:o} {}:{} size={size} rdev={}",
                    m.file_type, m.mode, m.uid, m.gid, m.rdev
                )
            }),
            Op::Read(path) => outcome(fs.read(&pb(path)), |d| format!("{d:?}")),
            Op::ReadDir(path) => outcome(fs.read_dir(&pb(path)), |es| {
                let mut v: Vec<_> = es.into_iter().map(|e| (e.name, e.file_type)).collect();
                v.sort();
                format!("{v:?}")
            }),
            Op::Readlink(path) => outcome(fs.readlink(&pb(path)), |t| format!("{t:?}")),
            Op::Walk(path) => outcome(walk(fs, &pb(path)), |v| v),
            Op::Sub(dir, op) => match fs.subtree(&pb(dir)) {
                Ok(sub) => apply(&*sub, op),
                Err(e) => Outcome::Failed(e.kind()),
            },
        }
    }

    /// What a walk with directory handles sees below `path`.
    fn walk(fs: &dyn Fs, path: &Path) -> overlay_fs::Result<String> {
        fn visit(dir: &mut dyn overlay_fs::Dir, out: &mut String) -> overlay_fs::Result<()> {
            let mut entries = dir.entries()?;
            entries.sort();
            for e in entries {
                out.push_str(&format!("{:?}: ", e.name));
                let md = match dir.metadata(&e.name) {
                    Ok(md) => md,
                    Err(err) => {
                        out.push_str(&format!("{:?} {:?}\n", e.file_type, err.kind()));
                        continue;
                    }
                };
                let mut xattrs = dir.xattrs(&e.name)?;
                xattrs.retain(|(n, _)| !kernel_bookkeeping(n));
                xattrs.sort();
                out.push_str(&format!("{:?} {:o} {xattrs:?}", md.file_type, md.mode));
                match md.file_type {
                    FileType::Directory => {
                        out.push_str(" {\n");
                        visit(&mut *dir.open_dir(&e.name)?, out)?;
                        out.push('}');
                    }
                    FileType::Regular => {
                        let (mut f, fmd) = dir.open_file(&e.name)?;
                        let mut data = Vec::new();
                        f.read_to_end(&mut data).unwrap();
                        out.push_str(&format!(" {} {data:?}", fmd.size));
                    }
                    FileType::Symlink => out.push_str(&format!(" -> {:?}", dir.readlink(&e.name)?)),
                    _ => {}
                }
                out.push('\n');
            }
            Ok(())
        }
        let mut dir = fs.open_dir(path)?;
        let mut own = dir.own_xattrs()?;
        own.retain(|(n, _)| !kernel_bookkeeping(n));
        own.sort();
        let mut out = format!("{own:?}\n");
        visit(&mut *dir, &mut out)?;
        Ok(out)
    }

    /// The kernel's own bookkeeping in an upper, which the model does not
    /// write: copy-up origins and "impure" directory marks.
    fn kernel_bookkeeping(name: &OsStr) -> bool {
        matches!(
            name.to_str(),
            Some("trusted.overlay.origin" | "trusted.overlay.impure" | "user.overlay.origin" | "user.overlay.impure")
        )
    }

    /// Everything observable in a tree but inode numbers, link counts,
    /// devices, times and directory sizes, and overlayfs's bookkeeping.
    fn observe(fs: &dyn Fs) -> BTreeMap<PathBuf, String> {
        let how = overlay_fs::Observe {
            xattrs: &|n| !kernel_bookkeeping(n),
            hardlinks: false,
            root: true,
        };
        overlay_fs::observe(fs, &how).unwrap()
    }

    /// Why the kernel half cannot run here, if it cannot.
    fn skip_reason() -> Option<String> {
        if !rustix::process::geteuid().is_root() {
            return Some("needs root (mount, whiteouts, trusted.* xattrs)".into());
        }
        match std::fs::read_to_string("/proc/filesystems") {
            Ok(s) if s.lines().any(|l| l.trim_end().ends_with("\toverlay")) => None,
            _ => Some("the kernel has no overlayfs".into()),
        }
    }

    /// One case: the layers built on disk, a real mount over them, and the
    /// model over in-memory and on-disk copies.
    /// How a case mounts: `userxattr`, and read-only (no upper).
    #[derive(Debug, Clone, Copy)]
    struct Options {
        userxattr: bool,
        read_only: bool,
    }

    fn options() -> impl Strategy<Value = Options> {
        (any::<bool>(), prop::bool::weighted(0.2)).prop_map(|(userxattr, read_only)| Options { userxattr, read_only })
    }

    fn run_case(layers: &[Vec<(String, Lower)>], ops: &[Op], opts: Options) -> Result<(), TestCaseError> {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let mut lower_names = Vec::new();
        let mut mem_lowers: Vec<Arc<dyn Fs>> = Vec::new();
        let mut disk_lowers: Vec<Arc<dyn Fs>> = Vec::new();
        // A mount without an upper needs two lower layers.
        let mut layers = layers.to_vec();
        if opts.read_only && layers.len() < 2 {
            layers.push(Vec::new());
        }
        for (i, entries) in layers.iter().enumerate() {
            std::fs::create_dir(base.join(format!("l{i}"))).unwrap();
            std::fs::create_dir(base.join(format!("copy{i}"))).unwrap();
            lower_names.push(PathBuf::from(format!("l{i}")));
            let host = HostFs::new(base.join(format!("l{i}"))).unwrap();
            host.set_mode(Path::new(""), 0o755).unwrap();
            build(&host, entries);
            let mem = MemFs::new();
            copy_tree(&host, &mem, Path::new(""));
            copy_attrs(&host, &mem, Path::new(""));
            mem_lowers.push(Arc::new(mem));
            let copy = HostFs::new(base.join(format!("copy{i}"))).unwrap();
            copy_tree(&host, &copy, Path::new(""));
            copy_attrs(&host, &copy, Path::new(""));
            disk_lowers.push(Arc::new(copy));
        }
        for dir in ["u", "w", "m", "model-upper"] {
            std::fs::create_dir(base.join(dir)).unwrap();
        }
        let kernel_upper = HostFs::new(base.join("u")).unwrap();
        kernel_upper.set_mode(Path::new(""), 0o755).unwrap();
        let disk_upper = HostFs::new(base.join("model-upper")).unwrap();
        disk_upper.set_mode(Path::new(""), 0o755).unwrap();
        let mem_upper = MemFs::new();

        let stack = Stack {
            base: base.to_path_buf(),
            lowers: lower_names,
            upper: (!opts.read_only).then(|| Upper {
                upperdir: "u".into(),
                workdir: "w".into(),
            }),
            target: "m".into(),
        };
        let settings = Settings {
            index_off: true,
            userxattr: opts.userxattr,
            ..Default::default()
        };
        // Dropped (unmounted) before `tmp` is removed.
        let _mounted = stack.mount(&settings, Method::Legacy).unwrap();
        let kernel = HostFs::new(base.join("m")).unwrap();
        let model = |lowers, upper: Arc<dyn Fs>| {
            OverlayFs::new(lowers, (!opts.read_only).then_some(upper)).with_xattr_namespace(opts.userxattr)
        };
        let in_memory = model(mem_lowers, Arc::new(mem_upper.clone()));
        let on_disk = model(disk_lowers, Arc::new(HostFs::new(base.join("model-upper")).unwrap()));

        for (i, op) in ops.iter().enumerate() {
            let want = apply(&kernel, op);
            prop_assert_eq!(&apply(&in_memory, op), &want, "step {} {:?} (model over MemFs)", i, op);
            prop_assert_eq!(&apply(&on_disk, op), &want, "step {} {:?} (model over HostFs)", i, op);
        }
        let merged = observe(&kernel);
        prop_assert_eq!(&observe(&in_memory), &merged, "merged view (model over MemFs)");
        prop_assert_eq!(&observe(&on_disk), &merged, "merged view (model over HostFs)");
        let upper = observe(&kernel_upper);
        prop_assert_eq!(&observe(&mem_upper), &upper, "upper dir (model over MemFs)");
        prop_assert_eq!(&observe(&disk_upper), &upper, "upper dir (model over HostFs)");
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn the_model_matches_a_real_overlay_mount(
            layers in layers(),
            ops in prop::collection::vec(op(), 1..30),
            opts in options(),
        ) {
            if let Some(why) = skip_reason() {
                eprintln!("skipped: the differential test {why}");
                return Ok(());
            }
            run_case(&layers, &ops, opts)?;
        }
    }
}
