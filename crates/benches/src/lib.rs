//! Criterion benchmarks for the overlay2-rs crates, and the fixtures they
//! share.
//!
//! # Layout
//!
//! One bench target and one criterion group per crate, named after the
//! crate, so results read as `GROUP/FUNCTION/PARAMETER`:
//!
//! | bench target | group | what it measures |
//! |---|---|---|
//! | `benches/layout.rs` | `overlay-layout` | id validation, link id generation, `lower` file parse/format, `Lower::child_of` at chain lengths 1, 16, 128 and 500 |
//! | `benches/fs.rs` | `overlay-fs` | create+write, `lstat`, `read_dir` and a tree walk on [`HostFs`](overlay_fs::HostFs) and [`MemFs`](overlay_fs::MemFs), with `std::fs` baselines for the host |
//!
//! Crates without benchmarks yet get their own target and group when they
//! have code worth measuring; the names of Docker's graphdriver benchmarks
//! (`Exists`, `GetEmpty`, `DiffBase`, ...) are to be mirrored in the driver's
//! group so the two can be read side by side (see `BENCHMARKING.md`).
//!
//! # Running
//!
//! ```text
//! cargo bench -p benches                      # everything
//! cargo bench -p benches --bench fs           # one crate's group
//! cargo bench -p benches -- 'overlay-fs/walk' # a filter
//! cargo bench -p benches -- --quick           # shorter runs
//! cargo bench -p benches -- --test            # run each benchmark once (CI smoke test)
//! cargo xtask bench [--quick]                 # the same, from the workspace root
//! ```
//!
//! These are micro-benchmarks: read them as ratios within one run (ours
//! against a `std::fs` baseline, host against in-memory), not as absolute
//! times. Whole-command timings against GNU tools belong on a freshly made,
//! loop-mounted ext4, as `BENCHMARKING.md` describes.
//!
//! # Fixtures
//!
//! The helpers here build the synthetic trees the benchmarks run on. They
//! work on any [`Fs`], so the host and in-memory trees are identical:
//!
//! ```
//! use std::path::Path;
//! use overlay_fs::{Fs, MemFs};
//!
//! let fs = MemFs::new();
//! benches::build_tree(&fs, Path::new("tree"), 2_000)?;
//! let stats = benches::walk(&fs, Path::new("tree"))?;
//! assert_eq!(stats.files, 2_000);
//! # Ok::<(), overlay_fs::Error>(())
//! ```

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use overlay_fs::Fs;
use overlay_layout::LinkId;

/// Files per leaf directory in [`build_tree`].
pub const FILES_PER_DIR: usize = 10;

/// Leaf directories per top-level directory in [`build_tree`].
pub const DIRS_PER_DIR: usize = 10;

/// Bytes of content of each file [`build_tree`] and [`build_flat_dir`]
/// create: small, like most files of a `/usr` tree are.
pub const FILE_CONTENT: &[u8] = b"#!/bin/sh\n# a small file of a synthetic layer\nexit 0\n";

/// A 64-character lowercase hex id, the form of Docker's layer ids.
pub const HEX_LAYER_ID: &str = "4f2a9c1e6b7d3a5f8e0c2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f1a3c5e7b9d2f4a";

/// Counts of what [`walk`] and [`std_walk`] visited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkStats {
    /// Directories below the starting one (not counting it).
    pub dirs: usize,
    /// Everything that is not a directory.
    pub files: usize,
    /// Sum of the sizes of the non-directories.
    pub bytes: u64,
}

/// Creates a tree of `files` regular files under `base` (which must not
/// exist; its parent must), as `base/tNN/lN/fN`: [`FILES_PER_DIR`] files per
/// leaf directory and [`DIRS_PER_DIR`] leaf directories per top-level
/// directory. 2,000 files make 20 top-level and 200 leaf directories.
///
/// # Errors
///
/// The first error of the underlying [`Fs`] call.
pub fn build_tree(fs: &dyn Fs, base: &Path, files: usize) -> overlay_fs::Result<()> {
    fs.mkdir(base, 0o755)?;
    let leaves = files.div_ceil(FILES_PER_DIR);
    for top_index in 0..leaves.div_ceil(DIRS_PER_DIR) {
        let top = base.join(format!("t{top_index:02}"));
        fs.mkdir(&top, 0o755)?;
        for leaf_index in 0..DIRS_PER_DIR {
            let first = (top_index * DIRS_PER_DIR + leaf_index) * FILES_PER_DIR;
            if first >= files {
                break;
            }
            let leaf = top.join(format!("l{leaf_index}"));
            fs.mkdir(&leaf, 0o755)?;
            for file_index in 0..FILES_PER_DIR.min(files - first) {
                fs.write(&leaf.join(format!("f{file_index}")), 0o644, FILE_CONTENT)?;
            }
        }
    }
    Ok(())
}

/// Creates directory `dir` (its parent must exist) holding `entries`
/// regular files named `e0`, `e1`, ...
///
/// # Errors
///
/// The first error of the underlying [`Fs`] call.
pub fn build_flat_dir(fs: &dyn Fs, dir: &Path, entries: usize) -> overlay_fs::Result<()> {
    fs.mkdir(dir, 0o755)?;
    for index in 0..entries {
        fs.write(&dir.join(format!("e{index}")), 0o644, FILE_CONTENT)?;
    }
    Ok(())
}

/// Creates `depth` nested directories `d1/d2/...` under the root with a
/// regular file `file` at the bottom, and returns the file's path
/// (`d1/d2/d3/d4/file` for a depth of 4: five components).
///
/// # Errors
///
/// The first error of the underlying [`Fs`] call.
pub fn build_deep_file(fs: &dyn Fs, depth: usize) -> overlay_fs::Result<PathBuf> {
    let mut path = PathBuf::new();
    for level in 1..=depth {
        path.push(format!("d{level}"));
    }
    fs.mkdir_all(&path, 0o755)?;
    path.push("file");
    fs.write(&path, 0o644, FILE_CONTENT)?;
    Ok(path)
}

/// Walks the tree below `dir` the way a naive diff does: `read_dir` of each
/// directory and `metadata` (`lstat`) of each entry, recursing into
/// directories (never through symlinks).
///
/// # Errors
///
/// The first error of the underlying [`Fs`] call.
pub fn walk(fs: &dyn Fs, dir: &Path) -> overlay_fs::Result<WalkStats> {
    let mut stats = WalkStats::default();
    walk_into(fs, dir, &mut stats)?;
    Ok(stats)
}

fn walk_into(fs: &dyn Fs, dir: &Path, stats: &mut WalkStats) -> overlay_fs::Result<()> {
    for entry in fs.read_dir(dir)? {
        let path = dir.join(&entry.name);
        let meta = fs.metadata(&path)?;
        if meta.is_dir() {
            stats.dirs += 1;
            walk_into(fs, &path, stats)?;
        } else {
            stats.files += 1;
            stats.bytes += meta.size;
        }
    }
    Ok(())
}

/// The same walk as [`walk`] through `std::fs` on a host path
/// (`read_dir` and `symlink_metadata`): the baseline without in-root
/// resolution.
///
/// # Errors
///
/// The first I/O error.
pub fn std_walk(dir: &Path) -> std::io::Result<WalkStats> {
    let mut stats = WalkStats::default();
    std_walk_into(dir, &mut stats)?;
    Ok(stats)
}

fn std_walk_into(dir: &Path, stats: &mut WalkStats) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            stats.dirs += 1;
            std_walk_into(&path, stats)?;
        } else {
            stats.files += 1;
            stats.bytes += meta.len();
        }
    }
    Ok(())
}

/// A link id that depends only on `n` (its base-32 digits, least
/// significant first, padded with `A`), for reproducible `lower` chains
/// without a random number generator. Distinct `n` give distinct ids.
///
/// # Panics
///
/// Never: every id it builds is valid.
pub fn link_id(n: u64) -> LinkId {
    let mut bytes = [LinkId::ALPHABET[0]; LinkId::LEN];
    let mut rest = n;
    for byte in &mut bytes {
        // `rest % 32` is below 32, the alphabet's length.
        *byte = LinkId::ALPHABET[(rest % 32) as usize];
        rest /= 32;
    }
    LinkId::from_bytes(&bytes).expect("every byte is from LinkId::ALPHABET and there are LinkId::LEN")
}

/// The links `link_id(0) .. link_id(len)`, a chain of `len` entries.
pub fn link_chain(len: usize) -> Vec<LinkId> {
    (0..len as u64).map(link_id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_fs::{HostFs, MemFs};

    fn check_fixtures(fs: &dyn Fs) {
        build_tree(fs, Path::new("tree"), 2_000).unwrap();
        let stats = walk(fs, Path::new("tree")).unwrap();
        assert_eq!(
            stats,
            WalkStats {
                dirs: 20 + 200,
                files: 2_000,
                bytes: 2_000 * FILE_CONTENT.len() as u64,
            }
        );

        build_flat_dir(fs, Path::new("flat"), 1_000).unwrap();
        assert_eq!(fs.read_dir(Path::new("flat")).unwrap().len(), 1_000);

        let deep = build_deep_file(fs, 4).unwrap();
        assert_eq!(deep, Path::new("d1/d2/d3/d4/file"));
        assert!(fs.metadata(&deep).unwrap().is_file());
    }

    #[test]
    fn fixtures_on_memfs() {
        check_fixtures(&MemFs::new());
    }

    #[test]
    fn fixtures_on_hostfs_match_std_walk() {
        let dir = tempfile::tempdir().unwrap();
        let fs = HostFs::new(dir.path()).unwrap();
        check_fixtures(&fs);
        assert_eq!(
            std_walk(&dir.path().join("tree")).unwrap(),
            walk(&fs, Path::new("tree")).unwrap()
        );
    }

    #[test]
    fn partial_last_directory() {
        let fs = MemFs::new();
        build_tree(&fs, Path::new("t"), 25).unwrap();
        let stats = walk(&fs, Path::new("t")).unwrap();
        assert_eq!((stats.dirs, stats.files), (1 + 3, 25));
    }

    #[test]
    fn link_ids_are_distinct_and_valid() {
        let chain = link_chain(1_000);
        let unique: std::collections::HashSet<_> = chain.iter().collect();
        assert_eq!(unique.len(), 1_000);
        assert_eq!(link_id(0).as_str(), "AAAAAAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(link_id(33).as_str(), "BBAAAAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(HEX_LAYER_ID.len(), 64);
        assert!(overlay_layout::LayerId::new(HEX_LAYER_ID).is_ok());
    }
}
