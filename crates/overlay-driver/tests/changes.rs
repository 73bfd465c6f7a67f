//! Changes computed from the upper dir give exactly the naive diff's list
//! (Docker v20.10's answer), entry for entry: random layers with random
//! edits through mounted views (writes, deletes that leave whiteouts,
//! directories deleted and made again (opaque), renames, file and
//! directory swaps, symlinks, chmod and chown, extended attributes,
//! copy-ups that change nothing), on the fake and, as root, on the kernel.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;

use overlay_driver::{Backend, CreateOpts, FakeBackend, GraphDriver, KernelBackend, Overlay2};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Edit {
    Write(&'static str, Vec<u8>),
    Mkdir(&'static str),
    Remove(&'static str),
    Rename(&'static str, &'static str),
    Chmod(&'static str, u32),
    Chown(&'static str, u32),
    Symlink(&'static str, &'static str),
    /// Rewrites a file with its own bytes and times: copied up, unchanged.
    Touch(&'static str),
    Xattr(&'static str, u8),
}

fn name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", "d", "d/x", "d/y", "d/e", "d/e/z", "f", "f/w"])
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (name(), prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(n, d)| Edit::Write(n, d)),
        3 => name().prop_map(Edit::Mkdir),
        3 => name().prop_map(Edit::Remove),
        1 => (name(), name()).prop_map(|(a, b)| Edit::Rename(a, b)),
        1 => (name(), prop::sample::select(vec![0o600u32, 0o644, 0o755])).prop_map(|(n, m)| Edit::Chmod(n, m)),
        1 => (name(), 0..3u32).prop_map(|(n, u)| Edit::Chown(n, u)),
        1 => (name(), name()).prop_map(|(a, b)| Edit::Symlink(a, b)),
        1 => name().prop_map(Edit::Touch),
        1 => (name(), 0..2u8).prop_map(|(n, v)| Edit::Xattr(n, v)),
    ]
}

/// Applies `e` to the mounted tree; failures (a missing parent, a
/// directory not empty) are part of the game and change nothing.
fn apply(t: &dyn overlay_fs::Fs, e: &Edit) {
    let p = Path::new;
    let _ = match e {
        Edit::Write(n, d) => t.write(p(n), 0o644, d),
        Edit::Mkdir(n) => t.mkdir(p(n), 0o755),
        Edit::Remove(n) => t.remove_all(p(n)),
        Edit::Rename(a, b) => t.rename(p(a), p(b)),
        Edit::Chmod(n, m) => t.set_mode(p(n), *m),
        Edit::Chown(n, u) => t.set_owner(p(n), *u, *u),
        Edit::Symlink(n, target) => t.symlink(p(target), p(n)),
        Edit::Xattr(n, v) => t.set_xattr(p(n), std::ffi::OsStr::new("user.test"), &[*v]),
        Edit::Touch(n) => match t.metadata(p(n)) {
            Ok(m) if m.file_type == overlay_fs::FileType::Regular => t.set_mode(p(n), m.mode),
            _ => Ok(()),
        },
    };
}

fn layer(d: &dyn GraphDriver, id: &str, parent: Option<&str>, edits: &[Edit]) {
    d.create_read_write(id, parent, &CreateOpts::default()).unwrap();
    d.get(id, None).unwrap();
    let t = d.tree(id).unwrap();
    for e in edits {
        apply(&*t, e);
    }
    d.put(id).unwrap();
}

fn same_answers<B: Backend>(d: &Overlay2<B>, layers: &[Vec<Edit>]) -> Result<(), TestCaseError> {
    let mut parent: Option<String> = None;
    for (i, edits) in layers.iter().enumerate() {
        let id = format!("l{i}");
        layer(d, &id, parent.as_deref(), edits);
        let fast = d.changes(&id, parent.as_deref()).unwrap();
        let naive = d.naive_changes(&id, parent.as_deref()).unwrap();
        let show = |v: &[naive_diff::Change]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        prop_assert_eq!(show(&fast), show(&naive), "layer {} over {:?}", i, parent);
        parent = Some(id);
    }
    Ok(())
}

fn layers() -> impl Strategy<Value = Vec<Vec<Edit>>> {
    prop::collection::vec(prop::collection::vec(edit(), 0..14), 1..5)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(128),
        ..ProptestConfig::default()
    })]

    #[test]
    fn fast_changes_are_the_naive_diff_on_the_fake(layers in layers()) {
        let d = Overlay2::new(FakeBackend::new(), &[] as &[&str]).unwrap();
        same_answers(&d, &layers)?;
    }

    #[test]
    fn fast_changes_are_the_naive_diff_on_the_kernel(layers in layers()) {
        if !rustix::process::geteuid().is_root() {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| eprintln!("fast_changes_are_the_naive_diff_on_the_kernel: skipped (needs root)"));
            return Ok(());
        }
        let dir = tempfile::tempdir().unwrap();
        let d = Overlay2::new(KernelBackend::new(dir.path().join("h")).unwrap(), &[] as &[&str]).unwrap();
        let r = same_answers(&d, &layers);
        let _ = d.cleanup();
        r?;
    }
}
