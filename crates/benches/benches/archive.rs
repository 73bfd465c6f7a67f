//! Benchmarks of `overlay-archive`, group `overlay-archive`: export and
//! import of two tree shapes, on `MemFs` (the CPU cost of the crate) and on
//! `HostFs` in a tmpfs (`/dev/shm`, so the kernel's per-file cost shows
//! without disk noise).
//!
//! | shape | tree |
//! |---|---|
//! | `small` | 2,000 files of 60 bytes in 220 directories |
//! | `large` | 8 files of 4 MiB |
//!
//! The whole-command comparison with GNU tar on a real tree is
//! `crates/benches/scripts/archive.sh` (BENCHMARKS.md).
//!
//! Run with `cargo bench -p benches --bench archive`.

use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use overlay_archive::{ExportOptions, ImportOptions, export, import};
use overlay_fs::{Fs, HostFs, MemFs};

fn build(fs: &dyn Fs, shape: &str) {
    match shape {
        "small" => benches::build_tree(fs, Path::new("tree"), 2000).expect("tree"),
        _ => {
            let data = vec![0x5au8; 4 << 20];
            for i in 0..8 {
                fs.write(Path::new(&format!("big{i}")), 0o644, &data).expect("write");
            }
        }
    }
}

fn tmpfs_dir() -> Option<tempfile::TempDir> {
    tempfile::tempdir_in("/dev/shm").ok()
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("overlay-archive");
    g.sample_size(10);
    for shape in ["small", "large"] {
        // The tar of the tree, made once from memory.
        let src = MemFs::new();
        build(&src, shape);
        let (tar, stats) = export(&src, &ExportOptions::default(), Vec::new()).expect("export");
        g.throughput(Throughput::Elements(stats.entries));

        g.bench_with_input(BenchmarkId::new("export/mem", shape), &shape, |b, _| {
            b.iter(|| export(&src, &ExportOptions::default(), Vec::with_capacity(tar.len())).expect("export"))
        });
        g.bench_with_input(BenchmarkId::new("import/mem", shape), &shape, |b, _| {
            b.iter_with_large_drop(|| {
                let fs = MemFs::new();
                import(&fs, &tar[..], &ImportOptions::default()).expect("import");
                fs
            })
        });

        let Some(host_src) = tmpfs_dir() else {
            eprintln!("no /dev/shm: HostFs benchmarks skipped");
            continue;
        };
        let host = HostFs::new(host_src.path()).expect("HostFs");
        build(&host, shape);
        g.bench_with_input(BenchmarkId::new("export/host-tmpfs", shape), &shape, |b, _| {
            b.iter(|| export(&host, &ExportOptions::default(), Vec::with_capacity(tar.len())).expect("export"))
        });
        g.bench_with_input(BenchmarkId::new("import/host-tmpfs", shape), &shape, |b, _| {
            b.iter_with_large_drop(|| {
                let dir = tmpfs_dir().expect("tmpfs");
                let fs = HostFs::new(dir.path()).expect("HostFs");
                import(&fs, &tar[..], &ImportOptions::default()).expect("import");
                dir
            })
        });
    }
    g.finish();
}

mod harness {
    //! criterion's generated entry point, kept out of the documented API.
    criterion::criterion_group!(group, super::benches);
}

criterion_main!(harness::group);
