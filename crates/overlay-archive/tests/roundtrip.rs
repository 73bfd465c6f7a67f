//! Property test: for random trees with whiteouts and opaque directories,
//! export → import → export gives identical bytes, on `MemFs` and on
//! `HostFs` (the host run needs root for devices, chown and `trusted.*`).

#![allow(clippy::unwrap_used, missing_docs)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use overlay_archive::{ExportOptions, ImportOptions, export, import};
use overlay_fs::{Fs, HostFs, MemFs, NodeKind, Timestamp};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Make {
    Dir(String, u32),
    File(String, u32, Vec<u8>),
    Symlink(String, String),
    Hardlink(String, String),
    Whiteout(String),
    Fifo(String),
    Opaque(String),
    Xattr(String, Vec<u8>),
    Owner(String, u32, u32),
    Mtime(String, i64),
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!["a", "b", "c", "long-name-with.dots", "ü"]),
        1..4,
    )
    .prop_map(|v| v.join("/"))
}

fn make() -> impl Strategy<Value = Make> {
    let mode = prop::sample::select(vec![0o755, 0o644, 0o700, 0o4755, 0o2750, 0o1777, 0o600]);
    prop_oneof![
        3 => (path(), mode.clone()).prop_map(|(p, m)| Make::Dir(p, m)),
        4 => (path(), mode, prop::collection::vec(any::<u8>(), 0..600)).prop_map(|(p, m, d)| Make::File(p, m, d)),
        1 => (path(), path()).prop_map(|(t, p)| Make::Symlink(t, p)),
        1 => (path(), path()).prop_map(|(a, b)| Make::Hardlink(a, b)),
        1 => path().prop_map(Make::Whiteout),
        1 => path().prop_map(Make::Fifo),
        1 => path().prop_map(Make::Opaque),
        1 => (path(), prop::collection::vec(any::<u8>(), 0..20)).prop_map(|(p, v)| Make::Xattr(p, v)),
        1 => (path(), 0u32..3000, 0u32..3000).prop_map(|(p, u, g)| Make::Owner(p, u, g)),
        1 => (path(), 0i64..4_000_000_000).prop_map(|(p, t)| Make::Mtime(p, t)),
    ]
}

/// Builds the tree; steps that do not apply (missing parent, name taken)
/// are skipped, which keeps every generated tree valid.
fn build(fs: &dyn Fs, steps: &[Make]) {
    let p = |s: &String| PathBuf::from(s);
    for s in steps {
        let _ = match s {
            Make::Dir(d, m) => fs.mkdir(&p(d), *m),
            Make::File(f, m, data) => fs.create_new(&p(f), *m).and_then(|mut h| {
                std::io::Write::write_all(&mut h, data)
                    .map_err(|_| overlay_fs::Error::new("w", f, overlay_fs::ErrorKind::InvalidInput))
            }),
            Make::Symlink(t, l) => fs.symlink(Path::new(t), &p(l)),
            Make::Hardlink(a, b) => match fs.metadata(&p(a)) {
                Ok(m) if m.is_file() => fs.hardlink(&p(a), &p(b)),
                _ => Ok(()),
            },
            Make::Whiteout(w) => fs.mknod(&p(w), NodeKind::WHITEOUT, 0),
            Make::Fifo(f) => fs.mknod(&p(f), NodeKind::Fifo, 0o640),
            Make::Opaque(d) => fs.set_xattr(&p(d), OsStr::new("trusted.overlay.opaque"), b"y"),
            Make::Xattr(f, v) => fs.set_xattr(&p(f), OsStr::new("user.test"), v),
            Make::Owner(f, u, g) => fs.set_owner(&p(f), *u, *g),
            Make::Mtime(f, t) => fs.set_times(&p(f), None, Some(Timestamp::from_secs(*t))),
        };
    }
}

fn round_trip(
    make: impl Fn() -> (Box<dyn Fs>, Option<tempfile::TempDir>),
    steps: &[Make],
) -> Result<(), TestCaseError> {
    let (a, _da) = make();
    build(&*a, steps);
    let (first, _) = export(&*a, &ExportOptions::default(), Vec::new()).unwrap();
    let (b, _db) = make();
    import(&*b, &first[..], &ImportOptions::default()).unwrap();
    let (second, _) = export(&*b, &ExportOptions::default(), Vec::new()).unwrap();
    prop_assert!(
        first == second,
        "export → import → export changed the bytes ({} vs {})",
        first.len(),
        second.len()
    );
    Ok(())
}

fn host() -> (Box<dyn Fs>, Option<tempfile::TempDir>) {
    let dir = tempfile::tempdir().unwrap();
    (Box::new(HostFs::new(dir.path()).unwrap()), Some(dir))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn memory_round_trip_is_exact(steps in prop::collection::vec(make(), 1..60)) {
        round_trip(|| (Box::new(MemFs::new()), None), &steps)?;
    }

    #[test]
    fn host_round_trip_is_exact(steps in prop::collection::vec(make(), 1..60)) {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: the host round trip needs root (devices, chown, trusted.* xattrs)");
            return Ok(());
        }
        round_trip(host, &steps)?;
    }
}
