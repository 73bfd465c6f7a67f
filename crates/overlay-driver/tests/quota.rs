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
