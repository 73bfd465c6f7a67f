//! HostFs never lets an operation land outside its root.
//!
//! A sentinel directory sits beside the root. Inside the root, symlinks
//! point at it every way an image could: an absolute host path, `..`
//! chains, `/` followed by the host path, a chain of links, links in
//! subdirectories. Every mutating operation is then tried through each of
//! them, as an intermediate component and as the final one, and the
//! sentinel must be byte-for-byte unchanged. Inside the root a decoy
//! `sentinel/` exists, so operations that resolve `..` at the root (which
//! `RESOLVE_IN_ROOT` clamps) really succeed — inside.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use overlay_fs::{Fs, HostFs, NodeKind, Timestamp};

/// Everything observable about a host tree, read without following links.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).expect("lstat");
        let mut xattrs: Vec<_> = xattr_names(&p);
        xattrs.sort();
        let mut desc = format!(
            "mode={:o} uid={} gid={} size={} mtime={}.{} nlink={} xattrs={:?}",
            md.mode(),
            md.uid(),
            md.gid(),
            md.size(),
            md.mtime(),
            md.mtime_nsec(),
            md.nlink(),
            xattrs
        );
        if md.file_type().is_symlink() {
            desc += &format!(" -> {:?}", std::fs::read_link(&p).expect("readlink"));
        } else if md.is_file() {
            desc += &format!(" data={:?}", std::fs::read(&p).expect("read"));
        } else if md.is_dir() {
            for e in std::fs::read_dir(&p).expect("readdir") {
                stack.push(e.expect("entry").path());
            }
        }
        out.insert(p, desc);
    }
    out
}

fn xattr_names(p: &Path) -> Vec<String> {
    let mut buf = vec![0u8; 4096];
    match rustix::fs::llistxattr(p, &mut buf[..]) {
        Ok(n) => buf[..n]
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
        Err(_) => vec![],
    }
}

struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    sentinel: PathBuf,
    fs: HostFs,
}

fn world() -> World {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    let sentinel = tmp.path().join("sentinel");
    for dir in [&root, &sentinel] {
        std::fs::create_dir(dir).unwrap();
        std::fs::create_dir(dir.join("dir")).unwrap();
        std::fs::write(dir.join("keep"), b"original").unwrap();
        std::fs::write(dir.join("dir/inner"), b"inner").unwrap();
    }
    let fs = HostFs::new(&root).unwrap();
    // The decoy inside the root that clamped `..` resolutions reach.
    fs.mkdir(Path::new("sentinel"), 0o755).unwrap();
    fs.mkdir(Path::new("sentinel/dir"), 0o755).unwrap();
    fs.write(Path::new("sentinel/keep"), 0o644, b"decoy").unwrap();
    let host = sentinel.to_str().unwrap();
    let links: &[(&str, String)] = &[
        ("abs", host.to_string()),
        ("rel", "../sentinel".into()),
        ("deep", format!("../../../../../../../../..{host}")),
        ("slash", "/".into()),
        ("c1", "c2".into()),
        ("c2", "sub/c3".into()),
        ("sub/c3", "../../sentinel".into()),
        ("abs_keep", format!("{host}/keep")),
        ("rel_keep", "../sentinel/keep".into()),
        ("abs_dir", format!("{host}/dir")),
    ];
    fs.mkdir(Path::new("sub"), 0o755).unwrap();
    for (name, target) in links {
        fs.symlink(Path::new(target), Path::new(name)).unwrap();
    }
    fs.write(Path::new("inside_file"), 0o644, b"inside").unwrap();
    World {
        _tmp: tmp,
        root,
        sentinel,
        fs,
    }
}

/// Every way to name the sentinel directory through a symlink.
fn via(w: &World) -> Vec<String> {
    let host = w.sentinel.to_str().unwrap().trim_start_matches('/');
    vec![
        "abs".into(),
        "rel".into(),
        "deep".into(),
        format!("slash/{host}"),
        "c1".into(),
        "sub/c3".into(),
        "abs_dir/..".into(),
    ]
}

/// Runs every mutating operation against `dir/…` and the final-component
/// links; results are ignored, only the sentinel matters.
fn attack(fs: &HostFs, dir: &str) {
    let j = |n: &str| PathBuf::from(format!("{dir}/{n}"));
    let x = |s: &str| OsStr::new(s).to_os_string();
    let _ = fs.write(&j("new"), 0o644, b"pwned");
    let _ = fs.write(&j("keep"), 0o644, b"pwned");
    if let Ok(mut f) = fs.open_file_rw(&j("keep")) {
        let _ = f.write_all(b"pwned");
    }
    let _ = fs.create_file(&j("created"), 0o4777);
    let _ = fs.create_new(&j("created_new"), 0o4777).map(|f| f.set_owner(9, 9));
    let _ = fs.mkdir(&j("newdir"), 0o777);
    let _ = fs.mkdir_all(&j("a/b/c"), 0o777);
    let _ = fs.mknod(&j("fifo"), NodeKind::Fifo, 0o666);
    let _ = fs.mknod(&j("wh"), NodeKind::WHITEOUT, 0o666);
    let _ = fs.symlink(Path::new("/etc/passwd"), &j("sl"));
    let _ = fs.set_mode(&j("keep"), 0o4777);
    let _ = fs.set_mode(&j("dir"), 0o777);
    let _ = fs.set_owner(&j("keep"), 1234, 1234);
    let _ = fs.set_owner(&j("dir"), 1234, 1234);
    let _ = fs.set_times(&j("keep"), Some(Timestamp::from_secs(1)), Some(Timestamp::from_secs(1)));
    for name in ["user.pwned", "trusted.overlay.opaque"] {
        let _ = fs.set_xattr(&j("keep"), &x(name), b"y");
        let _ = fs.set_xattr(&j("dir"), &x(name), b"y");
        let _ = fs.remove_xattr(&j("keep"), &x(name));
    }
    let _ = fs.hardlink(&j("keep"), Path::new("stolen_link"));
    let _ = fs.hardlink(Path::new("inside_file"), &j("planted_link"));
    let _ = fs.rename(&j("keep"), Path::new("stolen"));
    let _ = fs.rename(Path::new("inside_file"), &j("planted"));
    let _ = fs.rename(&j("dir"), Path::new("stolen_dir"));
    let _ = fs.remove_file(&j("keep"));
    let _ = fs.remove_file(&j("dir/inner"));
    let _ = fs.remove_dir(&j("dir"));
    let _ = fs.remove_all(&j("dir"));
    let _ = fs.remove_all(&j("keep"));
}

#[test]
fn no_operation_through_a_symlink_reaches_outside() {
    let w = world();
    let before = snapshot(&w.sentinel);
    for dir in via(&w) {
        attack(&w.fs, &dir);
        assert_eq!(snapshot(&w.sentinel), before, "sentinel changed through {dir:?}");
    }
    // The decoy inside the root took the hits instead.
    assert!(w.root.join("sentinel/new").exists() || w.root.join("stolen").exists());
}

#[test]
fn final_component_symlinks_are_never_followed() {
    let w = world();
    let before = snapshot(&w.sentinel);
    let fs = &w.fs;
    let x = |s: &str| OsStr::new(s).to_os_string();
    for link in ["abs_keep", "rel_keep", "abs_dir", "abs", "slash"] {
        let l = Path::new(link);
        let _ = fs.write(l, 0o644, b"pwned");
        let _ = fs.open_file_rw(l).map(|mut f| f.write_all(b"pwned"));
        let _ = fs.set_mode(l, 0o777);
        let _ = fs.set_owner(l, 4321, 4321);
        let _ = fs.set_times(l, None, Some(Timestamp::from_secs(2)));
        let _ = fs.set_xattr(l, &x("trusted.pwned"), b"1");
        let _ = fs.set_xattr(l, &x("user.pwned"), b"1");
        let _ = fs.mkdir(l, 0o777);
        let _ = fs.hardlink(l, Path::new("hl"));
        let _ = fs.remove_all(l);
        let _ = fs.remove_file(Path::new("hl"));
    }
    assert_eq!(snapshot(&w.sentinel), before);
    // The links themselves were what changed (and were finally removed).
    assert!(!w.root.join("abs_keep").exists());
}

#[test]
fn reads_through_symlinks_see_only_the_root() {
    let w = world();
    for dir in via(&w) {
        let p = PathBuf::from(format!("{dir}/keep"));
        match w.fs.read(&p) {
            Ok(data) => assert_eq!(data, b"decoy", "{dir}"),
            Err(e) => assert_eq!(e.kind(), overlay_fs::ErrorKind::NotFound, "{dir}: {e}"),
        }
    }
    assert_ne!(w.fs.read(Path::new("rel/keep")).unwrap(), b"original");
}

#[test]
fn racing_a_directory_swap_never_escapes() {
    // One thread keeps replacing `race/d` by a symlink to the sentinel and
    // back; the other writes through `race/d/…`. Whatever interleaving the
    // scheduler picks, nothing may appear in the sentinel.
    let w = world();
    let before = snapshot(&w.sentinel);
    let root = w.root.clone();
    let sentinel = w.sentinel.clone();
    std::fs::create_dir(root.join("race")).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (d, tmp_dir, tmp_link) = (root.join("race/d"), root.join("race/d.dir"), root.join("race/d.link"));
            std::fs::create_dir(&tmp_dir).unwrap();
            std::os::unix::fs::symlink(&sentinel, &tmp_link).unwrap();
            let mut flip = false;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let src = if flip { &tmp_link } else { &tmp_dir };
                let _ = rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    src,
                    rustix::fs::CWD,
                    &d,
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .or_else(|_| rustix::fs::rename(src, &d));
                flip = !flip;
            }
        })
    };
    for i in 0..3000 {
        let _ = w.fs.write(Path::new(&format!("race/d/f{}", i % 7)), 0o644, b"x");
        let _ = w.fs.set_mode(Path::new("race/d/keep"), 0o777);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
    assert_eq!(snapshot(&w.sentinel), before);
}
