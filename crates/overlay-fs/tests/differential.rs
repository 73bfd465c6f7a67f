//! Differential property test: random operation sequences run on `HostFs`
//! (in a temporary directory) and on `MemFs` must return the same results
//! (values or error kinds) and leave the same observable tree.
//!
//! This is what lets the driver's fake backend stand in for the kernel.
//! Needs root (device nodes, chown, `trusted.*`); otherwise it says so and
//! skips.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use overlay_fs::{ErrorKind, Fs, HostFs, MemFs, NodeKind, Timestamp};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Write(String, u32, Vec<u8>),
    CreateNew(String, u32),
    Append(String, Vec<u8>),
    Mkdir(String, u32),
    MkdirAll(String),
    Symlink(String, String),
    Hardlink(String, String),
    Mknod(String, bool),
    SetXattr(String, &'static str, Vec<u8>),
    RemoveXattr(String, &'static str),
    GetXattr(String, &'static str),
    SetMode(String, u32),
    SetOwner(String, u32, u32),
    SetTimes(String, i64),
    RemoveFile(String),
    RemoveDir(String),
    RemoveAll(String),
    Rename(String, String),
    Metadata(String),
    Read(String),
    ReadDir(String),
    Readlink(String),
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![8 => prop::sample::select(vec!["a", "b"]), 1 => Just("c"), 1 => Just("..")],
        1..4,
    )
    .prop_map(|parts| parts.join("/"))
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        path(),
        prop::sample::select(vec![
            "/",
            "/a",
            "..",
            "../../b",
            "a/b",
            "/c/../a",
            "missing",
            "a/../../c"
        ])
        .prop_map(String::from),
    ]
}

fn mode() -> impl Strategy<Value = u32> {
    prop::sample::select(vec![0o755, 0o644, 0o4755, 0o2755, 0o2745, 0o1777, 0o700, 0o000])
}

fn xattr() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["user.x", "user.y", "trusted.overlay.opaque", "bogus.z"])
}

fn op() -> impl Strategy<Value = Op> {
    let data = prop::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        4 => (path(), mode(), data.clone()).prop_map(|(p, m, d)| Op::Write(p, m, d)),
        1 => (path(), data.clone()).prop_map(|(p, d)| Op::Append(p, d)),
        2 => (path(), mode()).prop_map(|(p, m)| Op::CreateNew(p, m)),
        4 => (path(), mode()).prop_map(|(p, m)| Op::Mkdir(p, m)),
        1 => path().prop_map(Op::MkdirAll),
        2 => (target(), path()).prop_map(|(t, p)| Op::Symlink(t, p)),
        2 => (path(), path()).prop_map(|(a, b)| Op::Hardlink(a, b)),
        1 => (path(), any::<bool>()).prop_map(|(p, w)| Op::Mknod(p, w)),
        2 => (path(), xattr(), data.clone()).prop_map(|(p, n, v)| Op::SetXattr(p, n, v)),
        1 => (path(), xattr()).prop_map(|(p, n)| Op::RemoveXattr(p, n)),
        1 => (path(), xattr()).prop_map(|(p, n)| Op::GetXattr(p, n)),
        2 => (path(), mode()).prop_map(|(p, m)| Op::SetMode(p, m)),
        1 => (path(), 0u32..3, 0u32..3).prop_map(|(p, u, g)| Op::SetOwner(p, u, g)),
        1 => (path(), 0i64..2_000_000_000).prop_map(|(p, t)| Op::SetTimes(p, t)),
        2 => path().prop_map(Op::RemoveFile),
        2 => path().prop_map(Op::RemoveDir),
        1 => path().prop_map(Op::RemoveAll),
        3 => (path(), path()).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => path().prop_map(Op::Metadata),
        1 => path().prop_map(Op::Read),
        1 => path().prop_map(Op::ReadDir),
        1 => path().prop_map(Op::Readlink),
    ]
}

/// The outcome of one operation, comparable across backends.
#[derive(Debug, PartialEq)]
enum Outcome {
    Done,
    Value(String),
    Failed(ErrorKind),
}

fn outcome<T>(r: overlay_fs::Result<T>, show: impl FnOnce(T) -> String) -> Outcome {
    match r {
        Ok(v) => Outcome::Value(show(v)),
        Err(e) => Outcome::Failed(e.kind()),
    }
}

fn apply(fs: &dyn Fs, op: &Op) -> Outcome {
    let p = |s: &String| PathBuf::from(s);
    let done = |_| String::new();
    match op {
        Op::Write(path, m, d) => outcome(fs.write(&p(path), *m, d), done),
        Op::Append(path, d) => outcome(
            fs.open_file_rw(&p(path)).and_then(|mut f| {
                f.seek(SeekFrom::End(0)).and_then(|_| f.write_all(d)).map_err(|e| {
                    overlay_fs::Error::new("append", path, ErrorKind::Other(e.raw_os_error().unwrap_or(0)))
                })
            }),
            done,
        ),
        Op::CreateNew(path, m) => outcome(fs.create_new(&p(path), *m).and_then(|f| f.set_owner(1, 2)), done),
        Op::Mkdir(path, m) => outcome(fs.mkdir(&p(path), *m), done),
        Op::MkdirAll(path) => outcome(fs.mkdir_all(&p(path), 0o755), done),
        Op::Symlink(t, path) => outcome(fs.symlink(Path::new(t), &p(path)), done),
        Op::Hardlink(a, b) => outcome(fs.hardlink(&p(a), &p(b)), done),
        Op::Mknod(path, whiteout) => {
            let kind = if *whiteout { NodeKind::WHITEOUT } else { NodeKind::Fifo };
            outcome(fs.mknod(&p(path), kind, 0o644), done)
        }
        Op::SetXattr(path, n, v) => outcome(fs.set_xattr(&p(path), n.as_ref(), v), done),
        Op::RemoveXattr(path, n) => outcome(fs.remove_xattr(&p(path), n.as_ref()), done),
        Op::GetXattr(path, n) => outcome(fs.get_xattr(&p(path), n.as_ref()), |v| format!("{v:?}")),
        Op::SetMode(path, m) => outcome(fs.set_mode(&p(path), *m), done),
        Op::SetOwner(path, u, g) => outcome(fs.set_owner(&p(path), *u, *g), done),
        Op::SetTimes(path, t) => outcome(fs.set_times(&p(path), None, Some(Timestamp::from_secs(*t))), done),
        Op::RemoveFile(path) => outcome(fs.remove_file(&p(path)), done),
        Op::RemoveDir(path) => outcome(fs.remove_dir(&p(path)), done),
        Op::RemoveAll(path) => outcome(fs.remove_all(&p(path)), done),
        Op::Rename(a, b) => outcome(fs.rename(&p(a), &p(b)), done),
        Op::Metadata(path) => outcome(fs.metadata(&p(path)), |m| {
            format!("{:?} {:o} {}:{}", m.file_type, m.mode, m.uid, m.gid)
        }),
        Op::Read(path) => outcome(fs.read(&p(path)), |d| format!("{d:?}")),
        Op::ReadDir(path) => outcome(fs.read_dir(&p(path)), |es| {
            let mut v: Vec<_> = es.into_iter().map(|e| (e.name, e.file_type)).collect();
            v.sort();
            format!("{v:?}")
        }),
        Op::Readlink(path) => outcome(fs.readlink(&p(path)), |t| format!("{t:?}")),
    }
    .normalise()
}

impl Outcome {
    fn normalise(self) -> Self {
        match self {
            Outcome::Value(v) if v.is_empty() => Outcome::Done,
            o => o,
        }
    }
}

/// Everything observable about a tree except times (which the host sets
/// from its own clock) and directory sizes (which differ per filesystem);
/// of the xattrs, the namespaces the operations write.
fn observe(fs: &dyn Fs) -> BTreeMap<PathBuf, String> {
    let how = overlay_fs::Observe {
        xattrs: &|n| n.to_string_lossy().starts_with("user.") || n.to_string_lossy().starts_with("trusted."),
        hardlinks: true,
        root: false,
    };
    let tree = overlay_fs::observe(fs, &how).expect("observe");
    for (path, desc) in &tree {
        assert!(
            !desc.starts_with("listed as"),
            "{path:?}: read_dir and lstat disagree: {desc}"
        );
    }
    tree
}

#[test]
fn host_and_memory_agree() {
    // Checked once, before any case is generated.
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: the differential test needs root (device nodes, chown, trusted.* xattrs)");
        return;
    }
    let config = ProptestConfig {
        cases: 256,
        source_file: Some(file!()),
        ..ProptestConfig::default()
    };
    let result = proptest::test_runner::TestRunner::new(config).run(&prop::collection::vec(op(), 1..60), |ops| {
        let dir = tempfile::tempdir().unwrap();
        let host = HostFs::new(dir.path()).unwrap();
        host.set_mode(Path::new(""), 0o755).unwrap();
        let mem = MemFs::new();
        for (i, op) in ops.iter().enumerate() {
            let (h, m) = (apply(&host, op), apply(&mem, op));
            prop_assert_eq!(h, m, "step {} {:?}", i, op);
        }
        prop_assert_eq!(observe(&host), observe(&mem));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
