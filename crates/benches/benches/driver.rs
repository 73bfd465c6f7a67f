//! Benchmarks of `overlay-driver`, group `overlay-driver`, named after
//! Docker's graphdriver benchmarks (`overlay_test.go`) so the two read side
//! by side (BENCHMARKING.md has Docker's numbers on this machine class):
//! `exists`, `get_empty_base` (get + put of a base layer: Docker's
//! `GetEmpty`, no mount), `get_container_layer` (get + put of an empty
//! container layer: a real mount and unmount), `diff_base`,
//! `diff_small_upper`, `diff_apply_100`, `diff_20_layers`,
//! `read_20_layers`, and `create_remove`. Each on the in-memory fake and,
//! as root with overlayfs, on the kernel backend (home in `/tmp`).
//!
//! Run with `cargo bench -p benches --bench driver`.

use std::path::Path;

use criterion::{BenchmarkId, Criterion, criterion_main};
use overlay_driver::{CreateOpts, FakeBackend, GraphDriver, KernelBackend, Overlay2};
use overlay_fs::MemFs;

fn none() -> CreateOpts {
    CreateOpts::default()
}

fn tar_of(files: usize) -> Vec<u8> {
    let fs = MemFs::new();
    for i in 0..files {
        overlay_fs::Fs::write(&fs, Path::new(&format!("f{i}")), 0o644, b"some file content").expect("write");
    }
    overlay_archive::export(&fs, &Default::default(), Vec::new())
        .expect("export")
        .0
}

fn prepare(d: &dyn GraphDriver) {
    d.create("base", None, &none()).expect("base");
    d.apply_diff("base", None, &mut &tar_of(10)[..]).expect("apply");
    d.create_read_write("empty", Some("base"), &none()).expect("empty");
    d.create_read_write("small", Some("base"), &none()).expect("small");
    d.get("small", None).expect("get");
    let t = d.tree("small").expect("tree");
    for i in 0..10 {
        t.write(Path::new(&format!("f{i}")), 0o644, b"changed").expect("write");
    }
    d.put("small").expect("put");
    let mut parent = "base".to_string();
    for i in 0..20 {
        let id = format!("stack{i}");
        d.create(&id, Some(&parent), &none()).expect("create");
        d.get(&id, None).expect("get");
        d.tree(&id)
            .expect("tree")
            .write(Path::new(&format!("layer{i}")), 0o644, b"x")
            .expect("write");
        d.put(&id).expect("put");
        parent = id;
    }
}

fn run(c: &mut Criterion, backend: &str, d: &dyn GraphDriver) {
    prepare(d);
    let mut g = c.benchmark_group("overlay-driver");
    g.sample_size(20);
    let tar100 = tar_of(100);
    let id = |name: &str| BenchmarkId::new(name, backend);
    g.bench_function(id("exists"), |b| b.iter(|| d.exists("base")));
    // Docker's GetEmpty gets a layer made with no parent: no mount.
    g.bench_function(id("get_empty_base"), |b| {
        b.iter(|| {
            d.get("base", None).expect("get");
            d.put("base").expect("put");
        })
    });
    g.bench_function(id("get_container_layer"), |b| {
        b.iter(|| {
            d.get("empty", None).expect("get");
            d.put("empty").expect("put");
        })
    });
    g.bench_function(id("diff_base"), |b| {
        b.iter(|| d.diff("base", None, &mut std::io::sink()).expect("diff"))
    });
    g.bench_function(id("diff_small_upper"), |b| {
        b.iter(|| d.diff("small", Some("base"), &mut std::io::sink()).expect("diff"))
    });
    let mut n = 0;
    g.bench_function(id("diff_apply_100"), |b| {
        b.iter(|| {
            n += 1;
            let layer = format!("apply{n}");
            d.create(&layer, Some("base"), &none()).expect("create");
            d.apply_diff(&layer, Some("base"), &mut &tar100[..]).expect("apply");
        })
    });
    g.bench_function(id("diff_20_layers"), |b| {
        b.iter(|| d.diff("stack19", Some("stack18"), &mut std::io::sink()).expect("diff"))
    });
    g.bench_function(id("read_20_layers"), |b| {
        b.iter(|| {
            d.get("stack19", None).expect("get");
            let t = d.tree("stack19").expect("tree");
            for i in 0..20 {
                t.read(Path::new(&format!("layer{i}"))).expect("read");
            }
            d.put("stack19").expect("put");
        })
    });
    let mut m = 0;
    g.bench_function(id("create_remove"), |b| {
        b.iter(|| {
            m += 1;
            let layer = format!("cr{m}");
            d.create(&layer, Some("base"), &none()).expect("create");
            d.remove(&layer).expect("remove");
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let fake = Overlay2::new(FakeBackend::new(), &[] as &[&str]).expect("fake");
    run(c, "fake", &fake);
    let root = rustix::process::geteuid().is_root() && overlay_mount::probe::require_overlay().is_ok();
    if !root {
        eprintln!("kernel backend benchmarks skipped: they need root and overlayfs");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = Overlay2::new(
        KernelBackend::new(dir.path().join("home")).expect("backend"),
        &[] as &[&str],
    )
    .expect("kernel");
    run(c, "kernel", &kernel);
    let _ = kernel.cleanup();
}

mod harness {
    //! criterion's generated entry point, kept out of the documented API.
    criterion::criterion_group!(group, super::benches);
}

criterion_main!(harness::group);
