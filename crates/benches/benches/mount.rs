//! Benchmarks of `overlay-mount`, group `overlay-mount`: mount + unmount of
//! a stack of 1, 16, 128 and 500 lower layers through each of our paths,
//! beside the bare kernel interfaces with everything prepared in advance.
//!
//! | function | one iteration |
//! |---|---|
//! | `ours/legacy/N` | `Stack::mount(Method::Legacy)` (builds and checks the data string, `mount(2)` direct or through the forked helper) + unmount |
//! | `ours/new_api/N` | `Stack::mount(Method::NewApi)` (opens each layer, `fsconfig` by descriptor) + unmount |
//! | `bare/mount2/N` | one `mount(2)` with a prebuilt data string (relative, from a `chdir`ed process, when absolute does not fit) + `umount2` |
//! | `bare/fsopen/N` | `fsopen`, one `fsconfig(lowerdir+, path)` per layer, `fsmount`, `move_mount` + `umount2` |
//! | `bare/mount8/N` | `mount -t overlay` (util-linux) as a process + `umount2` |
//!
//! The ratio `ours / bare` is the overhead the issue bounds at 10%. The stack
//! lives in a temporary directory; the upper dir stays empty, so unmount
//! flushes nothing. Needs root; otherwise it says so and measures nothing.
//!
//! Run with `cargo bench -p benches --bench mount`.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;

use criterion::{BenchmarkId, Criterion, criterion_main};
use overlay_mount::{Method, Settings, Stack, Upper, Used};
use rustix::mount::{self as rmount, FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, UnmountFlags};

/// Stack depths measured: a single layer, a typical image, Docker's limit,
/// the kernel's limit.
const DEPTHS: [usize; 4] = [1, 16, 128, 500];

/// Builds a Docker-shaped home with `n` lower layers (`l/LINK ->
/// ../layerI/diff`) and a writable top layer.
fn build(home: &Path, n: usize) -> Stack {
    std::fs::create_dir_all(home.join("l")).expect("mkdir l");
    let mut lowers = Vec::new();
    for (i, link) in benches::link_chain(n).into_iter().enumerate() {
        let diff = home.join(format!("layer{i}/diff"));
        std::fs::create_dir_all(&diff).expect("mkdir diff");
        std::fs::write(diff.join(format!("f{i}")), b"x").expect("write");
        let rel = overlay_layout::relative_link_path(link);
        std::os::unix::fs::symlink(format!("../layer{i}/diff"), home.join(&rel)).expect("symlink");
        lowers.push(rel);
    }
    for d in ["top/diff", "top/work", "top/merged"] {
        std::fs::create_dir_all(home.join(d)).expect("mkdir top");
    }
    Stack {
        base: home.to_path_buf(),
        lowers,
        upper: Some(Upper {
            upperdir: "top/diff".into(),
            workdir: "top/work".into(),
        }),
        target: "top/merged".into(),
    }
}

fn umount(target: &Path) {
    rmount::unmount(target, UnmountFlags::DETACH).expect("umount2");
}

fn bench_depth(c: &mut Criterion, n: usize) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let stack = build(tmp.path(), n);
    let target = stack.base.join(&stack.target);
    let settings = Settings {
        index_off: std::path::Path::new("/sys/module/overlay/parameters/index").exists(),
        ..Settings::default()
    };
    let mut g = c.benchmark_group("overlay-mount");
    let legacy = stack.legacy_data(&settings).ok();

    if let Some((data, used)) = &legacy {
        g.bench_with_input(BenchmarkId::new("ours/legacy", n), &n, |b, _| {
            b.iter(|| {
                stack
                    .mount(&settings, Method::Legacy)
                    .expect("mount")
                    .unmount()
                    .expect("unmount")
            })
        });
        let cdata = CString::new(data.clone()).expect("data");
        // The bare call: in the home when the data is relative, as the
        // helper would be, but without a fork.
        let (cwd, mount_at): (Option<&Path>, PathBuf) = match used {
            Used::Helper => (Some(&stack.base), stack.target.clone()),
            _ => (None, target.clone()),
        };
        let before = std::env::current_dir().expect("cwd");
        if let Some(dir) = cwd {
            std::env::set_current_dir(dir).expect("chdir");
        }
        g.bench_with_input(BenchmarkId::new("bare/mount2", n), &n, |b, _| {
            b.iter(|| {
                rmount::mount(
                    "overlay",
                    &mount_at,
                    "overlay",
                    rmount::MountFlags::empty(),
                    Some(&*cdata),
                )
                .expect("mount");
                umount(&mount_at);
            })
        });
        std::env::set_current_dir(before).expect("chdir back");
        let data = String::from_utf8(data.clone()).expect("utf-8 paths");
        g.bench_with_input(BenchmarkId::new("bare/mount8", n), &n, |b, _| {
            b.iter(|| {
                let status = Command::new("mount")
                    .args(["-t", "overlay", "overlay", "-o", &data])
                    .arg(&mount_at)
                    .current_dir(cwd.unwrap_or(Path::new("/")))
                    .status()
                    .expect("mount(8)");
                assert!(status.success());
                umount(&target);
            })
        });
    }

    if overlay_mount::probe::new_mount_api() {
        g.bench_with_input(BenchmarkId::new("ours/new_api", n), &n, |b, _| {
            b.iter(|| {
                stack
                    .mount(&settings, Method::NewApi)
                    .expect("mount")
                    .unmount()
                    .expect("unmount")
            })
        });
        let lowers: Vec<PathBuf> = stack.lowers.iter().map(|l| stack.base.join(l)).collect();
        let upper = stack.base.join("top/diff");
        let work = stack.base.join("top/work");
        g.bench_with_input(BenchmarkId::new("bare/fsopen", n), &n, |b, _| {
            b.iter(|| {
                let fs = rmount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).expect("fsopen");
                if settings.index_off {
                    rmount::fsconfig_set_string(&fs, "index", "off").expect("index");
                }
                for l in &lowers {
                    rmount::fsconfig_set_string(&fs, "lowerdir+", l.as_path()).expect("lowerdir+");
                }
                rmount::fsconfig_set_string(&fs, "upperdir", upper.as_path()).expect("upperdir");
                rmount::fsconfig_set_string(&fs, "workdir", work.as_path()).expect("workdir");
                rmount::fsconfig_create(&fs).expect("create");
                let m = rmount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty()).expect("fsmount");
                rmount::move_mount(
                    &m,
                    "",
                    rustix::fs::CWD,
                    &target,
                    MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
                )
                .expect("move_mount");
                umount(&target);
            })
        });
    }
    g.finish();
}

/// Building the mount data string (pure): what the driver does per mount.
fn options(c: &mut Criterion) {
    let mut g = c.benchmark_group("overlay-mount");
    for n in DEPTHS {
        let lowers: Vec<PathBuf> = benches::link_chain(n)
            .into_iter()
            .map(overlay_layout::relative_link_path)
            .collect();
        let opts =
            overlay_mount::OverlayOptions::read_write(lowers, "id/diff".into(), "id/work".into()).index_off(true);
        g.bench_with_input(BenchmarkId::new("options/to_data", n), &n, |b, _| {
            b.iter(|| opts.to_data().expect("data"))
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    options(c);
    if !rustix::process::geteuid().is_root() || overlay_mount::probe::require_overlay().is_err() {
        eprintln!("overlay-mount benchmarks skipped: they need root and overlayfs");
        return;
    }
    for n in DEPTHS {
        bench_depth(c, n);
    }
}

mod harness {
    //! criterion's generated entry point, kept out of the documented API.
    criterion::criterion_group!(group, super::benches);
}

criterion_main!(harness::group);
