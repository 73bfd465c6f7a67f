//! Preparing a container with a uid/gid map of its own (issue 17, point 4),
//! group `overlay-driver`: `create_read_write` + `get` of a new container
//! layer, each with a map no container had before, on images of 1k, 10k
//! and 50k files (and a second layer of 10), two ways, beside the same
//! without a map:
//!
//! - `prepare_plain/N`: no map at all (the reference: Docker's create + get);
//! - `prepare_idmapped/N`: the lowers are id-mapped mounts (nothing of the
//!   image is read): should cost the same at any image size;
//! - `prepare_chowned_copy/N`: the fallback where the kernel cannot
//!   id-map lowers, a chowned copy of the image's layers per container
//!   (what Docker's userns-remap pays at unpack and containers/storage
//!   without id-mapped mounts per new map): grows with the image.
//!
//! `userns_for_a_map` is the user namespace alone (part of each get).
//!
//! Timed: create + get. Not timed: put + remove of the container.
//! Kernel backend only (root, overlayfs, and a kernel the probe finds able
//! to id-map lowers), home in a temporary directory (this machine's /tmp).
//!
//! Run with `cargo bench -p benches --bench idmap`.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_main};
use overlay_archive::{IdMaps, IdRange};
use overlay_driver::{Backend, CreateOpts, GraphDriver, IdMapSupport, KernelBackend, Overlay2};
use overlay_fs::{Fs, MemFs};

/// An image layer of `files` small files, 100 per directory.
fn tar_of(files: usize) -> Vec<u8> {
    let fs = MemFs::new();
    for d in 0..files.div_ceil(100) {
        fs.mkdir(Path::new(&format!("d{d}")), 0o755).expect("mkdir");
    }
    for i in 0..files {
        let path = format!("d{}/f{i}", i / 100);
        fs.write(Path::new(&path), 0o644, b"a file of an image layer, a few bytes")
            .expect("write");
        fs.set_owner(Path::new(&path), (i % 3) as u32 * 1000, 0).expect("chown");
    }
    overlay_archive::export(&fs, &Default::default(), Vec::new())
        .expect("export")
        .0
}

/// A map no earlier container had: container ids 0..65536 at host `n`
/// blocks of 65536 up.
fn new_map(n: u32) -> CreateOpts {
    let r = IdRange {
        container_id: 0,
        host_id: 100_000 + (n % 60_000) * 65_536,
        size: 65_536,
    };
    CreateOpts {
        id_maps: IdMaps::new(vec![r], vec![r]).expect("maps"),
        ..CreateOpts::default()
    }
}

fn benches(c: &mut Criterion) {
    let root = rustix::process::geteuid().is_root() && overlay_mount::probe::require_overlay().is_ok();
    if !root {
        eprintln!("id-map benchmarks skipped: they need root and overlayfs");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let backend = KernelBackend::new(&home).expect("backend");
    if let IdMapSupport::Copy(why) | IdMapSupport::Unsupported(why) = &backend.capabilities().id_map {
        eprintln!("id-map benchmarks skipped: this kernel cannot id-map overlay lowers here: {why}");
        return;
    }
    let mapped = Overlay2::new(backend, &[] as &[&str]).expect("driver");
    // The same home, as a kernel that cannot id-map lowers sees it.
    let copying = Overlay2::new(
        KernelBackend::new(&home)
            .expect("backend")
            .with_id_map_support(IdMapSupport::Copy("forced by the benchmark".into())),
        &[] as &[&str],
    )
    .expect("driver");
    let mut g = c.benchmark_group("overlay-driver");
    // The part of `prepare_idmapped` that makes the user namespace
    // carrying the map (a child process, two map writes, its reaping).
    let map = "0 100000 65536\n";
    g.bench_function("userns_for_a_map", |b| {
        b.iter(|| overlay_mount::UserNs::new(map, map).expect("userns"))
    });
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    let sizes = [(1_000, "1k"), (10_000, "10k"), (50_000, "50k")];
    // Every image first, then their writeback, so that no measurement
    // pays for flushing an image made just before it.
    for (files, label) in sizes {
        let (base, top) = (format!("img{label}"), format!("img{label}-top"));
        mapped.create(&base, None, &CreateOpts::default()).expect("create");
        mapped.apply_diff(&base, None, &mut &tar_of(files)[..]).expect("apply");
        mapped
            .create(&top, Some(&base), &CreateOpts::default())
            .expect("create");
        mapped
            .apply_diff(&top, Some(&base), &mut &tar_of(10)[..])
            .expect("apply");
    }
    rustix::fs::sync();
    let mut n = 0u32;
    let ways = [
        ("prepare_plain", &mapped, false),
        ("prepare_idmapped", &mapped, true),
        ("prepare_chowned_copy", &copying, true),
    ];
    for (name, d, with_map) in ways {
        for (_, label) in sizes {
            let top = format!("img{label}-top");
            g.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        n += 1;
                        let id = format!("c{n}");
                        let opts = if with_map { new_map(n) } else { CreateOpts::default() };
                        let start = Instant::now();
                        d.create_read_write(&id, Some(&top), &opts).expect("create");
                        d.get(&id, None).expect("get");
                        total += start.elapsed();
                        d.put(&id).expect("put");
                        d.remove(&id).expect("remove");
                    }
                    total
                })
            });
        }
    }
    g.finish();
    let _ = mapped.cleanup();
}

mod harness {
    //! criterion's generated entry point, kept out of the documented API.
    criterion::criterion_group!(group, super::benches);
}

criterion_main!(harness::group);
