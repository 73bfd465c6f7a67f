//! Property test: a tar applied by one thread in tar order and by workers
//! gives the same tree, byte for byte and metadata included (owners,
//! modes, times, xattrs, which names are hard links of which), or fails
//! both ways; on `MemFs` and on `HostFs` (the host run needs root for
//! devices, chown and `trusted.*`).
//!
//! The tars are raw entry sequences, not exports of a tree: the same name
//! several times (file over file, file over directory and back), hard
//! links to earlier entries, whiteouts and opaque markers of entries the
//! same tar made, symlinks that later entries are written through, and
//! deep paths from a small alphabet, so names collide often.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use overlay_archive::{ImportOptions, import};
use overlay_fs::{Fs, HostFs, MemFs, Observe, observe};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Entry {
    Dir(String, u32),
    File(String, u32, usize),
    Symlink(String, String),
    Hardlink(String, String),
    Whiteout(String),
    Opaque(String),
    Fifo(String),
}

fn path(depth: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "d"]), 1..=depth).prop_map(|v| v.join("/"))
}

fn entry() -> impl Strategy<Value = Entry> {
    let mode = prop::sample::select(vec![0o755, 0o644, 0o700, 0o4755, 0o2750, 0o1777]);
    prop_oneof![
        3 => (path(6), mode.clone()).prop_map(|(p, m)| Entry::Dir(p, m)),
        8 => (path(6), mode, 0usize..3000).prop_map(|(p, m, n)| Entry::File(p, m, n)),
        3 => (path(2), prop::sample::select(vec!["a", "b", "b/c", "../a", "/d", "d/..", "c/d/a"])).prop_map(|(p, t)| Entry::Symlink(p, t.into())),
        2 => (path(6), path(6)).prop_map(|(p, t)| Entry::Hardlink(p, t)),
        1 => path(6).prop_map(Entry::Whiteout),
        1 => path(5).prop_map(Entry::Opaque),
        1 => path(6).prop_map(Entry::Fifo),
    ]
}

/// The tar of `entries`, each with its own owner and time.
fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (i, e) in entries.iter().enumerate() {
        let mut h = tar::Header::new_gnu();
        h.set_uid(i as u64 % 7);
        h.set_gid(i as u64 % 5);
        h.set_mtime(1_600_000_000 + i as u64 * 1000);
        h.set_mode(0o644);
        h.set_size(0);
        let data: Vec<u8>;
        let (name, body): (String, &[u8]) = match e {
            Entry::Dir(p, m) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*m);
                (format!("{p}/"), &[])
            }
            Entry::File(p, m, n) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*m);
                data = (0..*n).map(|j| (i * 31 + j) as u8).collect();
                h.set_size(data.len() as u64);
                (p.clone(), &data)
            }
            Entry::Symlink(p, t) | Entry::Hardlink(p, t) => {
                let kind = if matches!(e, Entry::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                h.set_entry_type(kind);
                b.append_link(&mut h, p, t).unwrap();
                continue;
            }
            Entry::Whiteout(p) => {
                let (dir, base) = p.rsplit_once('/').map_or(("", p.as_str()), |(d, b)| (d, b));
                h.set_entry_type(tar::EntryType::Regular);
                (
                    if dir.is_empty() {
                        format!(".wh.{base}")
                    } else {
                        format!("{dir}/.wh.{base}")
                    },
                    &[],
                )
            }
            Entry::Opaque(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                (format!("{d}/.wh..wh..opq"), &[])
            }
            Entry::Fifo(p) => {
                h.set_entry_type(tar::EntryType::Fifo);
                (p.clone(), &[])
            }
        };
        b.append_data(&mut h, name, body).unwrap();
    }
    b.into_inner().unwrap()
}

/// Entry times in the tars are 2020 (see [`tar_of`]); anything from
/// 2023 on is the time of the run.
const NOW_ISH: i64 = 1_700_000_000;

/// Everything about the tree, or the error the import gave.
type Outcome = Result<BTreeMap<PathBuf, String>, String>;

fn apply(fs: &dyn Fs, tar: &[u8], workers: usize) -> Outcome {
    let opts = ImportOptions {
        workers,
        ..Default::default()
    };
    import(fs, tar, &opts).map_err(|e| e.to_string())?;
    let how = Observe {
        hardlinks: true,
        root: true,
        ..Observe::default()
    };
    let mut tree = observe(fs, &how).map_err(|e| e.to_string())?;
    // Times are part of the tree: put them in (observe leaves them out).
    // A directory no entry names gets the time it was made: "now" in both
    // runs, which may straddle a second.
    for (p, desc) in &mut tree {
        if let Ok(md) = fs.metadata(p) {
            if md.mtime.sec >= NOW_ISH {
                desc.push_str(" mtime=now");
            } else {
                desc.push_str(&format!(" mtime={}", md.mtime.sec));
            }
        }
    }
    Ok(tree)
}

fn same(one: &Outcome, many: &Outcome) -> Result<(), TestCaseError> {
    match (one, many) {
        (Ok(a), Ok(b)) => {
            let diff: Vec<_> = a
                .iter()
                .filter(|(k, v)| b.get(*k) != Some(v))
                .map(|(k, v)| format!("{}: {v} | {:?}", k.display(), b.get(k)))
                .chain(
                    b.keys()
                        .filter(|k| !a.contains_key(*k))
                        .map(|k| format!("{}: only with workers", k.display())),
                )
                .collect();
            prop_assert!(diff.is_empty(), "trees differ:\n{}", diff.join("\n"));
        }
        (Err(a), Err(b)) => prop_assert_eq!(a, b, "both fail, but differently"),
        _ => prop_assert!(false, "one worker: {one:?}\nfour workers: {many:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn workers_build_the_same_tree_in_memory(entries in prop::collection::vec(entry(), 1..120)) {
        let tar = tar_of(&entries);
        same(&apply(&MemFs::new(), &tar, 1), &apply(&MemFs::new(), &tar, 4))?;
    }

    #[test]
    fn workers_build_the_same_tree_on_disk(entries in prop::collection::vec(entry(), 1..120)) {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: the host run needs root (chown, mknod, trusted.* xattrs)");
            return Ok(());
        }
        let tar = tar_of(&entries);
        let (one, many) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        same(
            &apply(&HostFs::new(one.path()).unwrap(), &tar, 1),
            &apply(&HostFs::new(many.path()).unwrap(), &tar, 4),
        )?;
    }
}

/// A worker makes an entry by its name in a handle on its directory; its
/// failure still names the entry's whole path, as one thread's does.
#[test]
fn a_workers_failure_names_the_whole_path() {
    let long = "x".repeat(300);
    let mut b = tar::Builder::new(Vec::new());
    for name in ["a/", "a/b/"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, name, &[][..]).unwrap();
    }
    for name in ["a/b/ok".to_string(), format!("a/b/{long}")] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(2);
        b.append_data(&mut h, name, &b"hi"[..]).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let one = apply(&MemFs::new(), &tar, 1).unwrap_err();
    let many = apply(&MemFs::new(), &tar, 4).unwrap_err();
    assert_eq!(one, many);
    assert!(many.contains(&format!("\"a/b/{long}\"")), "{many}");
}
