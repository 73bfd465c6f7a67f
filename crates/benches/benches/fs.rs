//! Benchmarks of `overlay-fs`, group `overlay-fs`: the same operations on
//! [`HostFs`] (every path resolved inside the root with `openat2`) and on
//! [`MemFs`], with plain `std::fs` on the same host files as the baseline,
//! so the cost of in-root resolution reads as a ratio.
//!
//! | function | what one iteration does |
//! |---|---|
//! | `create_write_4k` | creates a new file and writes 4 KiB into it (in a directory of at most 1,000 files, emptied outside the timer) |
//! | `lstat_depth4` | `metadata` (`lstat`) of `d1/d2/d3/d4/file` |
//! | `read_dir_1000` | `read_dir` of a directory of 1,000 files |
//! | `walk_2000` | `read_dir` and `lstat` through a tree of 2,000 files in 220 directories |
//!
//! The host tree lives in a temporary directory under `$TMPDIR` (default
//! `/tmp`, which on these machines is the root ext4 without a journal).
//! `BENCHMARKING.md` says absolute timings of file creation belong on a
//! freshly made, loop-mounted ext4 with a journal: these numbers are for
//! relative comparisons within one run (HostFs vs std vs MemFs). Point
//! `TMPDIR` at a loop-mounted ext4 or a tmpfs for a steadier host view.
//!
//! Run with `cargo bench -p benches --bench fs`.

use std::hint::black_box;
use std::os::unix::fs::DirEntryExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use benches::{build_deep_file, build_flat_dir, build_tree, std_walk, walk};
use criterion::{BenchmarkId, Criterion, criterion_main};
use overlay_fs::{Fs, HostFs, MemFs};

/// Size of the file `create_write_4k` writes.
const WRITE_SIZE: usize = 4096;

/// Files `create_write_4k` creates in one directory before emptying it
/// (outside the timer), so memory and disk use stay bounded.
const CREATE_CHUNK: u64 = 1_000;

/// Directory depth of the `lstat_depth4` file.
const DEPTH: usize = 4;

/// Entries of the `read_dir_1000` directory.
const FLAT_ENTRIES: usize = 1_000;

/// Files of the `walk_2000` tree.
const TREE_FILES: usize = 2_000;

/// Where the fixtures live inside each backend's root.
const FLAT_DIR: &str = "flat";
const TREE_DIR: &str = "tree";
const CREATE_DIR: &str = "create";

/// One backend with its fixtures built.
struct Backend {
    /// Name used as the benchmark parameter.
    name: &'static str,
    /// The tree.
    fs: Box<dyn Fs>,
    /// Path of the `lstat_depth4` file inside the root.
    deep_file: PathBuf,
}

impl Backend {
    /// Builds the fixtures of every benchmark in `fs`.
    fn new(name: &'static str, fs: Box<dyn Fs>) -> Self {
        let deep_file = build_deep_file(fs.as_ref(), DEPTH).expect("build the deep file");
        build_flat_dir(fs.as_ref(), Path::new(FLAT_DIR), FLAT_ENTRIES).expect("build the flat directory");
        build_tree(fs.as_ref(), Path::new(TREE_DIR), TREE_FILES).expect("build the tree");
        fs.mkdir(Path::new(CREATE_DIR), 0o755)
            .expect("make the create directory");
        Self { name, fs, deep_file }
    }
}

/// The host backend in a fresh temporary directory, or `None` with a
/// message when the kernel has no `openat2` (Linux < 5.6).
fn host_backend(root: &Path) -> Option<Backend> {
    match HostFs::new(root) {
        Ok(fs) => Some(Backend::new("HostFs", Box::new(fs))),
        Err(e) => {
            eprintln!("overlay-fs benches: skipping HostFs and the std baselines: {e}");
            None
        }
    }
}

/// Times `iters` creations of a 4 KiB file through `create`, in chunks of
/// at most [`CREATE_CHUNK`] files in one fresh directory; `reset` empties
/// the directory between chunks and is not timed.
fn time_creates(
    iters: u64,
    mut create: impl FnMut(u64) -> std::io::Result<()>,
    mut reset: impl FnMut() -> std::io::Result<()>,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let chunk = (iters - done).min(CREATE_CHUNK);
        let start = Instant::now();
        for index in 0..chunk {
            create(index).expect("create and write a file");
        }
        total += start.elapsed();
        reset().expect("empty the create directory");
        done += chunk;
    }
    total
}

/// Names of the files one chunk of `create_write_4k` creates, made before
/// timing so that formatting names is not measured.
fn create_names(base: &Path) -> Vec<PathBuf> {
    (0..CREATE_CHUNK).map(|i| base.join(format!("f{i}"))).collect()
}

/// `create_write_4k` through a backend: `write` is create + write + close.
fn bench_create(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, backend: &Backend) {
    let fs = backend.fs.as_ref();
    let round = Path::new(CREATE_DIR).join("round");
    let names = create_names(&round);
    let data = vec![0x5a_u8; WRITE_SIZE];
    group.bench_function(BenchmarkId::new("create_write_4k", backend.name), |b| {
        b.iter_custom(|iters| {
            fs.mkdir(&round, 0o755).expect("make the round directory");
            let elapsed = time_creates(
                iters,
                |i| to_io(fs.write(&names[i as usize], 0o644, black_box(&data))),
                || to_io(fs.remove_all(&round).and_then(|()| fs.mkdir(&round, 0o755))),
            );
            fs.remove_all(&round).expect("remove the round directory");
            elapsed
        });
    });
}

/// `create_write_4k` through `std::fs` in the host root.
fn bench_create_std(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, root: &Path) {
    let round = root.join(CREATE_DIR).join("round-std");
    let names = create_names(&round);
    let data = vec![0x5a_u8; WRITE_SIZE];
    group.bench_function(BenchmarkId::new("create_write_4k", "std"), |b| {
        b.iter_custom(|iters| {
            std::fs::create_dir(&round).expect("make the round directory");
            let elapsed = time_creates(
                iters,
                |i| std::fs::write(&names[i as usize], black_box(&data)),
                || std::fs::remove_dir_all(&round).and_then(|()| std::fs::create_dir(&round)),
            );
            std::fs::remove_dir_all(&round).expect("remove the round directory");
            elapsed
        });
    });
}

/// Converts an `overlay_fs` result for [`time_creates`].
fn to_io(result: overlay_fs::Result<()>) -> std::io::Result<()> {
    result.map_err(std::io::Error::other)
}

/// `std::fs::read_dir` collecting what `Fs::read_dir` returns: name, type
/// (from `d_type`, no `lstat`) and inode number.
fn std_read_dir(dir: &Path) -> std::io::Result<Vec<(std::ffi::OsString, std::fs::FileType, u64)>> {
    std::fs::read_dir(dir)?
        .map(|entry| {
            let entry = entry?;
            Ok((entry.file_name(), entry.file_type()?, entry.ino()))
        })
        .collect()
}

fn fs_benches(c: &mut Criterion) {
    let tmp = tempfile::Builder::new()
        .prefix("overlay2-rs-bench-")
        .tempdir()
        .expect("make a temporary directory");
    let host_root = tmp.path().to_path_buf();
    let host = host_backend(&host_root);
    let mem = Backend::new("MemFs", Box::new(MemFs::new()));
    let backends: Vec<&Backend> = host.iter().chain([&mem]).collect();
    // The std baselines run on the host backend's files.
    let std_root = host.as_ref().map(|_| host_root.as_path());

    let mut group = c.benchmark_group("overlay-fs");

    for backend in &backends {
        bench_create(&mut group, backend);
    }
    if let Some(root) = std_root {
        bench_create_std(&mut group, root);
    }

    for backend in &backends {
        group.bench_function(BenchmarkId::new("lstat_depth4", backend.name), |b| {
            b.iter(|| backend.fs.metadata(black_box(&backend.deep_file)));
        });
    }
    if let (Some(root), Some(host)) = (std_root, &host) {
        let path = root.join(&host.deep_file);
        group.bench_function(BenchmarkId::new("lstat_depth4", "std"), |b| {
            b.iter(|| std::fs::symlink_metadata(black_box(&path)));
        });
    }

    for backend in &backends {
        group.bench_function(BenchmarkId::new("read_dir_1000", backend.name), |b| {
            b.iter(|| backend.fs.read_dir(black_box(Path::new(FLAT_DIR))));
        });
    }
    if let Some(root) = std_root {
        let path = root.join(FLAT_DIR);
        group.bench_function(BenchmarkId::new("read_dir_1000", "std"), |b| {
            b.iter(|| std_read_dir(black_box(&path)));
        });
    }

    // A walk takes milliseconds on the host: fewer samples keep the run short.
    group.sample_size(30);
    for backend in &backends {
        group.bench_function(BenchmarkId::new("walk_2000", backend.name), |b| {
            b.iter(|| walk(backend.fs.as_ref(), black_box(Path::new(TREE_DIR))));
        });
    }
    if let Some(root) = std_root {
        let path = root.join(TREE_DIR);
        group.bench_function(BenchmarkId::new("walk_2000", "std"), |b| {
            b.iter(|| std_walk(black_box(&path)));
        });
    }

    group.finish();
    // Dropping `tmp` removes the host tree.
}

/// The harness: `criterion_group!` makes a public function without docs,
/// so it lives in a private module.
mod harness {
    criterion::criterion_group!(benches, super::fs_benches);
}

criterion_main!(harness::benches);
