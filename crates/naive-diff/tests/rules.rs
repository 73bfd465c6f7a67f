//! Docker's change rules, one at a time, on `MemFs`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use naive_diff::{BoxError, ChangeKind, LayerTrees, NaiveDiff, changes};
use overlay_fs::{Fs, MemFs, NodeKind, Timestamp, makedev};

fn p(s: &str) -> &Path {
    Path::new(s)
}

/// Two trees with the same entry `x`, built by `make`, then `edit` applied
/// to the new one; returns what `changes` says about `x`.
fn kind_of(make: impl Fn(&MemFs), edit: impl Fn(&MemFs)) -> Option<ChangeKind> {
    let (old, new) = (MemFs::new(), MemFs::new());
    make(&old);
    make(&new);
    edit(&new);
    changes(&new, Some(&old))
        .unwrap()
        .into_iter()
        .find(|c| c.path == Path::new("x"))
        .map(|c| c.kind)
}

fn file(fs: &MemFs) {
    fs.write(p("x"), 0o644, b"abc").unwrap();
    fs.set_times(p("x"), None, Some(Timestamp { sec: 100, nsec: 5 }))
        .unwrap();
}

#[test]
fn what_counts_as_a_change() {
    let t = |sec, nsec| Timestamp { sec, nsec };
    assert_eq!(kind_of(file, |_| {}), None);
    // Whole seconds (a tar round trip) match precise times.
    assert_eq!(
        kind_of(file, |fs| fs.set_times(p("x"), None, Some(t(100, 0))).unwrap()),
        None
    );
    assert_eq!(
        kind_of(file, |fs| fs.set_times(p("x"), None, Some(t(100, 6))).unwrap()),
        Some(ChangeKind::Modify)
    );
    assert_eq!(
        kind_of(file, |fs| fs.set_times(p("x"), None, Some(t(101, 5))).unwrap()),
        Some(ChangeKind::Modify)
    );
    assert_eq!(
        kind_of(file, |fs| fs.set_mode(p("x"), 0o600).unwrap()),
        Some(ChangeKind::Modify)
    );
    assert_eq!(
        kind_of(file, |fs| fs.set_owner(p("x"), 0, 1).unwrap()),
        Some(ChangeKind::Modify)
    );
    let xattr = |fs: &MemFs| fs.set_xattr(p("x"), OsStr::new("user.k"), b"v").unwrap();
    assert_eq!(kind_of(file, xattr), Some(ChangeKind::Modify));
    // Same length, same time: only the content differs, which Docker (and
    // rsync's quick check) do not read.
    let same_len = |fs: &MemFs| {
        fs.write(p("x"), 0o644, b"xyz").unwrap();
        fs.set_times(p("x"), None, Some(t(100, 5))).unwrap();
    };
    assert_eq!(kind_of(file, same_len), None);
    // A symlink's target is compared even when length and time agree.
    let link = |target: &'static str| {
        move |fs: &MemFs| {
            let _ = fs.remove_file(p("x"));
            fs.symlink(Path::new(target), p("x")).unwrap();
            fs.set_times(p("x"), None, Some(t(100, 0))).unwrap();
        }
    };
    assert_eq!(kind_of(link("aaa"), link("bbb")), Some(ChangeKind::Modify));
    assert_eq!(kind_of(link("aaa"), link("aaa")), None);
    // Device numbers.
    let dev = |minor| {
        move |fs: &MemFs| {
            let _ = fs.remove_file(p("x"));
            fs.mknod(p("x"), NodeKind::CharDevice(makedev(1, minor)), 0o666)
                .unwrap();
            fs.set_times(p("x"), None, Some(t(100, 0))).unwrap();
        }
    };
    assert_eq!(kind_of(dev(3), dev(5)), Some(ChangeKind::Modify));
    // A directory's mtime and size are not changes.
    let dir = |fs: &MemFs| fs.mkdir(p("x"), 0o755).unwrap();
    assert_eq!(
        kind_of(dir, |fs| fs.set_times(p("x"), None, Some(t(1, 0))).unwrap()),
        None
    );
    assert_eq!(
        kind_of(dir, |fs| fs.set_mode(p("x"), 0o700).unwrap()),
        Some(ChangeKind::Modify)
    );
    // A type change is a modification, not a delete and an add.
    assert_eq!(
        kind_of(file, |fs| {
            fs.remove_file(p("x")).unwrap();
            fs.mkdir(p("x"), 0o644).unwrap();
        }),
        Some(ChangeKind::Modify)
    );
}

#[test]
fn without_a_parent_everything_is_added_and_sizes_count_links_once() {
    let fs = MemFs::new();
    fs.mkdir(p("d"), 0o755).unwrap();
    fs.write(p("d/f"), 0o644, &[0u8; 100]).unwrap();
    fs.hardlink(p("d/f"), p("g")).unwrap();
    fs.symlink(p("d/f"), p("s")).unwrap();
    let list = changes(&fs, None).unwrap();
    assert!(list.iter().all(|c| c.kind == ChangeKind::Add));
    assert_eq!(
        list.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        ["A /d", "A /d/f", "A /g", "A /s"]
    );
    assert_eq!(
        naive_diff::changes_size(&fs, &list).unwrap(),
        100 + 3,
        "the link once, the symlink's 3 bytes"
    );
}

/// A driver whose parent layer cannot be got: the layer already got must
/// still be put.
struct Flaky {
    fs: MemFs,
    held: Mutex<i32>,
}

impl LayerTrees for Flaky {
    fn get(&self, id: &str) -> Result<Arc<dyn Fs>, BoxError> {
        if id == "broken" {
            return Err("disk on fire".into());
        }
        *self.held.lock().unwrap() += 1;
        Ok(Arc::new(self.fs.clone()))
    }
    fn put(&self, _: &str) -> Result<(), BoxError> {
        *self.held.lock().unwrap() -= 1;
        Ok(())
    }
}

#[test]
fn a_failing_get_leaves_nothing_held_and_names_the_layer() {
    let naive = NaiveDiff::new(Flaky {
        fs: MemFs::new(),
        held: Mutex::new(0),
    });
    let e = naive.changes("layer", Some("broken")).unwrap_err().to_string();
    assert!(e.contains("\"broken\"") && e.contains("disk on fire"), "{e}");
    assert!(naive.diff("layer", Some("broken"), Vec::new()).is_err());
    assert!(naive.diff_size("layer", Some("broken")).is_err());
    assert_eq!(*naive.trees().held.lock().unwrap(), 0);
    assert!(naive.apply_diff("layer", None, &b"not a tar"[..]).is_err());
    assert_eq!(*naive.trees().held.lock().unwrap(), 0);
}
