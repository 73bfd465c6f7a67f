//! Quotas on read-write layers: enforced by the fake backend's accounting
//! here; on the kernel, by XFS project quotas (proven in the VM test,
//! `cargo xtask vm-test`, since this machine's kernel has no XFS quotas).

#![allow(clippy::unwrap_used, missing_docs)]

use std::io::Write;
use std::path::Path;

use overlay_driver::{CreateOpts, FakeBackend, GraphDriver, Overlay2};
use overlay_fs::ErrorKind;

#[test]
fn a_limited_layer_accepts_its_size_and_refuses_more() {
    let d = Overlay2::new(FakeBackend::new().with_quotas(), &[] as &[&str]).unwrap();
    d.create("base", None, &CreateOpts::default()).unwrap();
    d.create_read_write("box", Some("base"), &CreateOpts::with_size("4k"))
        .unwrap();
    d.get("box", None).unwrap();
    let t = d.tree("box").unwrap();
    let mut f = t.create_file(Path::new("fill"), 0o644).unwrap();
    f.write_all(&[0u8; 4096]).unwrap();
    let err = f.write_all(b"one byte too many").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(ErrorKind::NoSpace.errno()), "XFS says ENOSPC");
    drop(f);
    let err = t.write(Path::new("second"), 0o644, b"x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSpace);
    t.remove_file(Path::new("fill")).unwrap();
    t.write(Path::new("second"), 0o644, b"fits again").unwrap();
    d.put("box").unwrap();
    // Without a size, no limit; and the driver-wide default applies.
    d.create_read_write("free", Some("base"), &CreateOpts::default())
        .unwrap();
    d.get("free", None).unwrap();
    d.tree("free")
        .unwrap()
        .write(Path::new("big"), 0o644, &[0u8; 65536])
        .unwrap();
    d.put("free").unwrap();
    let d2 = Overlay2::new(FakeBackend::new().with_quotas(), &["overlay2.size=1k"]).unwrap();
    d2.create_read_write("c", None, &CreateOpts::default()).unwrap();
    d2.get("c", None).unwrap();
    assert_eq!(
        d2.tree("c")
            .unwrap()
            .write(Path::new("big"), 0o644, &[0u8; 2048])
            .unwrap_err()
            .kind(),
        ErrorKind::NoSpace
    );
}

#[test]
fn a_default_size_needs_quota_support() {
    let e = Overlay2::new(FakeBackend::new(), &["overlay2.size=10G"])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "Storage Option overlay2.size only supported for backingFS XFS. Found memfs"
    );
}

/// A loop-mounted XFS with project quotas, for the VM (`OVERLAY_QUOTA_VM=1`).
struct Xfs {
    dir: tempfile::TempDir,
}

impl Xfs {
    fn new() -> Xfs {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("xfs.img");
        std::fs::File::create(&img).unwrap().set_len(400 << 20).unwrap();
        let run = |cmd: &mut std::process::Command| assert!(cmd.status().unwrap().success(), "{cmd:?}");
        run(std::process::Command::new("mkfs.xfs").arg("-q").arg(&img));
        std::fs::create_dir(dir.path().join("mnt")).unwrap();
        run(std::process::Command::new("mount")
            .args(["-o", "loop,pquota"])
            .arg(&img)
            .arg(dir.path().join("mnt")));
        Xfs { dir }
    }
    fn mnt(&self) -> std::path::PathBuf {
        self.dir.path().join("mnt")
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-d").arg(self.mnt()).status();
    }
}

/// The driver end to end on a kernel with XFS project quotas: a
/// read-write layer with `size` holds that much and refuses more, written
/// through its overlay mount (copy-up included).
#[test]
fn kernel_create_read_write_with_size_is_enforced() {
    if std::env::var("OVERLAY_QUOTA_VM").as_deref() != Ok("1") {
        eprintln!(
            "skipped: needs XFS project quotas in the kernel; `cargo xtask vm-test` runs it (OVERLAY_QUOTA_VM=1)"
        );
        return;
    }
    let xfs = Xfs::new();
    let backend = overlay_driver::KernelBackend::new(xfs.mnt().join("overlay2")).unwrap();
    let d = Overlay2::new(backend, &[] as &[&str]).unwrap();
    d.create("base", None, &CreateOpts::default()).unwrap();
    d.get("base", None).unwrap();
    d.tree("base")
        .unwrap()
        .write(Path::new("lower"), 0o644, &vec![1u8; 3 << 20])
        .unwrap();
    d.put("base").unwrap();
    d.create_read_write("box", Some("base"), &CreateOpts::with_size("5M"))
        .unwrap();
    d.get("box", None).unwrap();
    let t = d.tree("box").unwrap();
    // Copying the 3 MiB file up counts against the layer.
    t.set_mode(Path::new("lower"), 0o600).unwrap();
    t.write(Path::new("fits"), 0o644, &vec![2u8; 1 << 20]).unwrap();
    let err = t.write(Path::new("too-much"), 0o644, &vec![3u8; 2 << 20]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSpace, "{err}");
    d.put("box").unwrap();
    d.remove("box").unwrap();
    d.cleanup().unwrap();
}
