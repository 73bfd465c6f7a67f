//! Benchmarks of `overlay-snapshotter`, group `overlay-snapshotter`: the
//! per-call latency of Prepare, Commit and Mounts on top of a chain of 1,
//! 100 and 500 committed snapshots, as containerd's calls reach the
//! service (without the gRPC hop). On the in-memory fake and, as root, on
//! the kernel backend (home and database in `/tmp`; every call commits a
//! redb transaction, fsync included). containerd itself mounts at most
//! about 141 layers from a home (`containerd_depth_limit`); the 500-deep
//! chain is reachable by embedders that mount with the new mount API, and
//! is measured with the depth limit raised to 500.
//!
//! Run with `cargo bench -p benches --bench snapshotter`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_main};
use overlay_driver::{Backend, FakeBackend, KernelBackend, Overlay2};
use overlay_layout::DepthLimit;
use overlay_snapshotter::{DB_FILE, Snapshotter, Store};

const DEPTHS: [usize; 3] = [1, 100, 500];

/// A chain of `depth` committed snapshots `c0..`; returns the top's name.
fn chain<B: Backend>(s: &Snapshotter<B>, depth: usize) -> String {
    let mut parent = String::new();
    for i in 0..depth {
        let key = format!("bench/{depth}/extract-{i}");
        s.prepare(&key, &parent, BTreeMap::new()).expect("prepare");
        let name = format!("bench/{depth}/sha256:{i:064}");
        s.commit(&name, &key, BTreeMap::new()).expect("commit");
        parent = name;
    }
    parent
}

fn run<B: Backend>(c: &mut Criterion, backend: &str, s: &Snapshotter<B>) {
    let mut g = c.benchmark_group("overlay-snapshotter");
    g.sample_size(20);
    for depth in DEPTHS {
        let top = chain(s, depth);
        let mut n = 0u64;
        g.bench_function(BenchmarkId::new(format!("prepare/{backend}"), depth), |b| {
            b.iter_custom(|iters| {
                let keys: Vec<String> = (0..iters)
                    .map(|_| {
                        n += 1;
                        format!("bench/{depth}/ctr-{n}")
                    })
                    .collect();
                let start = Instant::now();
                for k in &keys {
                    s.prepare(k, &top, BTreeMap::new()).expect("prepare");
                }
                let took = start.elapsed();
                for k in &keys {
                    s.remove(k).expect("remove");
                }
                took
            });
        });
        let active = format!("bench/{depth}/ctr");
        s.prepare(&active, &top, BTreeMap::new()).expect("prepare");
        g.bench_function(BenchmarkId::new(format!("mounts/{backend}"), depth), |b| {
            b.iter(|| s.mounts(&active).expect("mounts"));
        });
        s.remove(&active).expect("remove");
        g.bench_function(BenchmarkId::new(format!("commit/{backend}"), depth), |b| {
            b.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                let keys: Vec<(String, String)> = (0..iters)
                    .map(|_| {
                        n += 1;
                        (format!("bench/{depth}/a-{n}"), format!("bench/{depth}/c-{n}"))
                    })
                    .collect();
                for (k, _) in &keys {
                    s.prepare(k, &top, BTreeMap::new()).expect("prepare");
                }
                for (k, name) in &keys {
                    let start = Instant::now();
                    s.commit(name, k, BTreeMap::new()).expect("commit");
                    took += start.elapsed();
                }
                for (_, name) in &keys {
                    s.remove(name).expect("remove");
                }
                took
            });
        });
    }
    g.finish();
}

fn fake(c: &mut Criterion) {
    let driver = Overlay2::new(FakeBackend::new(), &[] as &[&str])
        .expect("driver")
        .with_depth_limit(DepthLimit::NEW_MOUNT_API);
    run(c, "fake", &Snapshotter::new(driver, Store::in_memory().expect("store")));
}

fn kernel(c: &mut Criterion) {
    if !rustix::process::geteuid().is_root() {
        eprintln!("overlay-snapshotter kernel benches skipped: not root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = KernelBackend::new(dir.path()).expect("backend");
    let driver = Overlay2::new(backend, &[] as &[&str])
        .expect("driver")
        .with_depth_limit(DepthLimit::NEW_MOUNT_API);
    let store = Store::open(&dir.path().join(DB_FILE)).expect("store");
    run(c, "kernel", &Snapshotter::new(driver, store));
}

fn benches() {
    let mut c = Criterion::default().configure_from_args();
    fake(&mut c);
    kernel(&mut c);
}

criterion_main!(benches);
