//! Benchmarks of `naive-diff`, group `naive-diff`: `changes` between two
//! trees of 10,000 files where 1% differ, on `MemFs` and on `HostFs` in a
//! tmpfs. The whole-command comparison with rsync, `diff -rq` and a bare
//! lstat walk on real trees is `crates/benches/scripts/changes.sh`.
//!
//! Run with `cargo bench -p benches --bench diff`.

use std::path::Path;

use criterion::{Criterion, criterion_main};
use overlay_fs::{Fs, HostFs, MemFs};

const FILES: usize = 10_000;

/// Builds the same tree in both, then changes every 100th file in `new`.
fn pair(old: &dyn Fs, new: &dyn Fs) {
    for fs in [old, new] {
        benches::build_tree(fs, Path::new("t"), FILES).expect("tree");
    }
    let mut n = 0;
    let mut stack = vec![Path::new("t").to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in new.read_dir(&dir).expect("read_dir") {
            let p = dir.join(&e.name);
            if e.file_type == overlay_fs::FileType::Directory {
                stack.push(p);
            } else {
                n += 1;
                if n % 100 == 0 {
                    new.write(&p, 0o644, b"changed content").expect("write");
                }
            }
        }
    }
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("naive-diff");
    g.sample_size(20);
    let (old, new) = (MemFs::new(), MemFs::new());
    pair(&old, &new);
    g.bench_function("changes/mem/10k-1pct", |b| {
        b.iter(|| naive_diff::changes(&new, Some(&old)).expect("changes"))
    });
    if let (Ok(a), Ok(b)) = (tempfile::tempdir_in("/dev/shm"), tempfile::tempdir_in("/dev/shm")) {
        let (old, new) = (
            HostFs::new(a.path()).expect("HostFs"),
            HostFs::new(b.path()).expect("HostFs"),
        );
        pair(&old, &new);
        g.bench_function("changes/host-tmpfs/10k-1pct", |bench| {
            bench.iter(|| naive_diff::changes(&new, Some(&old)).expect("changes"))
        });
    }
    g.finish();
}

mod harness {
    //! criterion's generated entry point, kept out of the documented API.
    criterion::criterion_group!(group, super::benches);
}

criterion_main!(harness::group);
