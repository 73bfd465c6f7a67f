//! Real mounts on this kernel: Docker's stack shapes through both the
//! legacy path (direct and the forked relative-path helper) and the new
//! mount API, up to the kernel's 500 lower layers.
//!
//! Needs root and overlayfs; otherwise each test says why and skips.
//! Every mount is a `Mount` guard and every directory a `TempDir`, declared
//! so the mount is dropped (unmounted) first, also when an assert fails.

#![allow(clippy::unwrap_used, missing_docs)]

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use overlay_layout::{LinkId, relative_link_path};
use overlay_mount::{Method, MountError, Settings, Stack, Upper, Used};

fn kernel_ready() -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: mounting overlayfs needs root");
        return false;
    }
    if let Err(e) = overlay_mount::probe::require_overlay() {
        eprintln!("skipped: {e}");
        return false;
    }
    true
}

/// Builds a Docker-shaped home with `n` lower layers and a top layer, and
/// returns the stack to mount (uppermost lower first).
///
/// Layer `i` (0 = bottom) holds `f{i}` and `common` = `i`; layer 1 whites
/// out the bottom's `gone`; layer 2 makes `opq` opaque over the bottom's.
fn build(home: &Path, n: usize, writable: bool) -> Stack {
    std::fs::create_dir_all(home.join("l")).unwrap();
    let mut lowers = Vec::new();
    for i in 0..n {
        let diff = home.join(format!("layer{i}/diff"));
        std::fs::create_dir_all(&diff).unwrap();
        std::fs::write(diff.join(format!("f{i}")), format!("{i}")).unwrap();
        std::fs::write(diff.join("common"), format!("{i}")).unwrap();
        match i {
            0 => {
                std::fs::write(diff.join("gone"), b"bottom").unwrap();
                std::fs::create_dir(diff.join("opq")).unwrap();
                std::fs::write(diff.join("opq/a"), b"hidden").unwrap();
            }
            1 => rustix::fs::mknodat(
                rustix::fs::CWD,
                diff.join("gone"),
                rustix::fs::FileType::CharacterDevice,
                rustix::fs::Mode::empty(),
                0,
            )
            .unwrap(),
            2 => {
                std::fs::create_dir(diff.join("opq")).unwrap();
                std::fs::write(diff.join("opq/b"), b"visible").unwrap();
                rustix::fs::setxattr(
                    diff.join("opq"),
                    "trusted.overlay.opaque",
                    b"y",
                    rustix::fs::XattrFlags::empty(),
                )
                .unwrap();
            }
            _ => {}
        }
        let link = relative_link_path(LinkId::generate());
        std::os::unix::fs::symlink(format!("../layer{i}/diff"), home.join(&link)).unwrap();
        lowers.insert(0, link);
    }
    for d in ["top/diff", "top/work", "top/merged"] {
        std::fs::create_dir_all(home.join(d)).unwrap();
    }
    Stack {
        base: home.to_path_buf(),
        lowers,
        upper: writable.then(|| Upper {
            upperdir: "top/diff".into(),
            workdir: "top/work".into(),
        }),
        target: "top/merged".into(),
    }
}

/// The merged view must be the kernel's merge of what `build` wrote.
fn check_merged(merged: &Path, n: usize) {
    assert_eq!(
        std::fs::read_to_string(merged.join("common")).unwrap(),
        format!("{}", n - 1)
    );
    for i in (0..n).step_by(n.div_ceil(8).max(1)) {
        assert_eq!(
            std::fs::read_to_string(merged.join(format!("f{i}"))).unwrap(),
            format!("{i}")
        );
    }
    if n > 2 {
        assert!(
            !merged.join("gone").exists(),
            "whiteout in layer 1 hides the bottom's file"
        );
        assert!(
            !merged.join("opq/a").exists(),
            "opaque dir in layer 2 hides the bottom's entries"
        );
        assert_eq!(std::fs::read(merged.join("opq/b")).unwrap(), b"visible");
    }
}

fn long_home(tmp: &Path) -> PathBuf {
    // Long enough that 128 absolute lowerdirs overflow one page.
    let mut p = tmp.to_path_buf();
    for _ in 0..4 {
        p.push("a-deliberately-long-directory-name-to-push-mount-data-past-one-page");
    }
    p
}

#[test]
fn small_stack_mounts_directly() {
    if !kernel_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let stack = build(tmp.path(), 3, true);
    let m = stack.mount(&Settings::default(), Method::Legacy).unwrap();
    assert_eq!(m.used(), Used::Direct);
    check_merged(m.target(), 3);
    // Writes land in the upper dir; deleting a lower file makes a whiteout.
    std::fs::write(m.target().join("new"), b"n").unwrap();
    std::fs::remove_file(m.target().join("f0")).unwrap();
    assert_eq!(std::fs::read(tmp.path().join("top/diff/new")).unwrap(), b"n");
    let wh = std::fs::symlink_metadata(tmp.path().join("top/diff/f0")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert!(overlay_mount::is_mount_point(m.target()).unwrap());
    m.unmount().unwrap();
    assert!(!overlay_mount::is_mount_point(&tmp.path().join("top/merged")).unwrap());
}

#[test]
fn deep_stack_under_a_long_home_mounts_through_the_helper() {
    if !kernel_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let home = long_home(tmp.path());
    let stack = build(&home, 128, true);
    let settings = Settings {
        index_off: true,
        ..Settings::default()
    };
    let (data, used) = stack.legacy_data(&settings).unwrap();
    assert_eq!(used, Used::Helper, "absolute form must not fit: {} bytes", data.len());
    assert!(data.len() <= overlay_mount::max_data_len());
    assert!(
        data.starts_with(b"index=off,lowerdir=l/"),
        "relative form: {}",
        String::from_utf8_lossy(&data[..40])
    );
    let m = stack.mount(&settings, Method::Legacy).unwrap();
    assert_eq!(m.used(), Used::Helper);
    check_merged(m.target(), 128);
    drop(m);
    assert!(
        !overlay_mount::is_mount_point(&home.join("top/merged")).unwrap(),
        "Drop unmounts"
    );
}

#[test]
fn too_deep_for_one_page_is_a_clear_error() {
    if !kernel_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let stack = build(tmp.path(), 200, true);
    match stack.mount(&Settings::default(), Method::Legacy) {
        Err(MountError::DataTooLarge { size, limit }) => {
            assert!(size > limit);
            let msg = MountError::DataTooLarge { size, limit }.to_string();
            assert!(msg.contains(&size.to_string()), "{msg}");
        }
        other => panic!("expected DataTooLarge, got {other:?}"),
    }
    assert!(!overlay_mount::is_mount_point(&tmp.path().join("top/merged")).unwrap());
}

#[test]
fn new_api_mounts_the_kernels_maximum_of_500_lowers() {
    if !kernel_ready() {
        return;
    }
    if !overlay_mount::probe::new_mount_api() {
        eprintln!("skipped: this kernel has no fsopen overlay with lowerdir+ (Linux 6.8)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let home = long_home(tmp.path());
    let stack = build(&home, 500, true);
    let m = stack
        .mount(
            &Settings {
                index_off: true,
                ..Settings::default()
            },
            Method::NewApi,
        )
        .unwrap();
    assert_eq!(m.used(), Used::NewApi);
    check_merged(m.target(), 500);
    std::fs::write(m.target().join("up"), b"u").unwrap();
    assert!(home.join("top/diff/up").exists());
    drop(m);

    let mut deeper = stack.clone();
    deeper.lowers.push(deeper.lowers[0].clone());
    let err = deeper.mount(&Settings::default(), Method::NewApi).unwrap_err();
    assert!(err.to_string().contains("at most 500"), "{err}");
}

#[test]
fn auto_mounts_a_home_whose_path_mount2_cannot_carry() {
    if !kernel_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("we\"ird");
    let stack = build(&home, 2, true);
    let legacy = stack.mount(&Settings::default(), Method::Legacy);
    assert!(matches!(legacy, Err(MountError::InvalidPath { .. })), "{legacy:?}");
    match stack.mount(&Settings::default(), Method::Auto) {
        Ok(m) => {
            assert_eq!(m.used(), Used::NewApi);
            check_merged(m.target(), 2);
        }
        Err(e) => {
            assert!(!overlay_mount::probe::new_mount_api(), "{e}");
            assert!(matches!(e, MountError::InvalidPath { .. }), "{e}");
        }
    }
}

#[test]
fn auto_uses_mount2_within_a_page_and_the_new_api_beyond() {
    if !kernel_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let stack = build(tmp.path(), 3, true);
    let m = stack.mount(&Settings::default(), Method::Auto).unwrap();
    assert_eq!(m.used(), Used::Direct);
    check_merged(m.target(), 3);
    drop(m);
    // Over a page even as relative paths: only the new API can mount it.
    let tmp = tempfile::tempdir().unwrap();
    let stack = build(tmp.path(), 200, true);
    assert!(matches!(
        stack.legacy_data(&Settings::default()),
        Err(MountError::DataTooLarge { .. })
    ));
    match stack.mount(&Settings::default(), Method::Auto) {
        Ok(m) => {
            assert_eq!(m.used(), Used::NewApi);
            check_merged(m.target(), 200);
        }
        Err(e) => {
            assert!(!overlay_mount::probe::new_mount_api(), "{e}");
            assert!(matches!(e, MountError::DataTooLarge { .. }), "{e}");
        }
    }
}

#[test]
fn committed_layers_mount_read_only_both_ways() {
    if !kernel_ready() {
        return;
    }
    for method in [Method::Legacy, Method::NewApi] {
        if method == Method::NewApi && !overlay_mount::probe::new_mount_api() {
            eprintln!("skipped NewApi: not on this kernel");
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let mut stack = build(tmp.path(), 3, false);
        // Docker's committed form: the layer's own diff dir is the top lower.
        std::fs::write(tmp.path().join("top/diff/own"), b"mine").unwrap();
        stack.lowers.insert(0, "top/diff".into());
        let m = stack.mount(&Settings::default(), method).unwrap();
        check_merged(m.target(), 3);
        assert_eq!(std::fs::read(m.target().join("own")).unwrap(), b"mine");
        let err = std::fs::write(m.target().join("x"), b"x").unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::ROFS.raw_os_error()),
            "{method:?}"
        );
    }
}

#[test]
fn separators_in_paths_survive_both_interfaces() {
    if !kernel_ready() {
        return;
    }
    for method in [Method::Legacy, Method::NewApi] {
        if method == Method::NewApi && !overlay_mount::probe::new_mount_api() {
            eprintln!("new API half skipped: this kernel's overlayfs has no lowerdir+ (Linux 6.8)");
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join(r"odd,home:with\separators");
        for d in ["lo,w:er/x", "up,per/", "wo:rk", "mer,ged"] {
            std::fs::create_dir_all(home.join(d)).unwrap();
        }
        std::fs::create_dir_all(home.join("second")).unwrap();
        let stack = Stack {
            base: home.clone(),
            lowers: vec!["lo,w:er".into(), "second".into()],
            upper: Some(Upper {
                upperdir: "up,per".into(),
                workdir: "wo:rk".into(),
            }),
            target: "mer,ged".into(),
        };
        let m = stack.mount(&Settings::default(), method).unwrap();
        assert!(m.target().join("x").is_dir(), "{method:?}");
        std::fs::write(m.target().join("w"), b"").unwrap();
        assert!(home.join("up,per/w").exists());
    }
}

#[test]
fn unmount_and_remove_is_dockers_put() {
    if !kernel_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let stack = build(tmp.path(), 2, true);
    let target = stack.mount(&Settings::default(), Method::Auto).unwrap().keep();
    assert!(overlay_mount::is_mount_point(&target).unwrap());
    overlay_mount::unmount_and_remove(&target).unwrap();
    assert!(!target.exists());
    overlay_mount::unmount_and_remove(&target).unwrap(); // idempotent
}

#[test]
fn probes_describe_this_kernel_and_leave_nothing_behind() {
    if !kernel_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let f = overlay_mount::probe::probe(tmp.path()).unwrap();
    let again = overlay_mount::probe::probe(tmp.path()).unwrap();
    assert!(std::sync::Arc::ptr_eq(&f, &again), "cached per home");
    assert_eq!(
        f.index_param,
        Path::new("/sys/module/overlay/parameters/index").exists()
    );
    let magic = rustix::fs::statfs(tmp.path()).unwrap().f_type as u64;
    assert_eq!(f.backing_magic, magic);
    if f.backing_fs == "extfs" || f.backing_fs == "xfs" || f.backing_fs == "tmpfs" {
        assert!(f.d_type);
    }
    let redirect = std::fs::read_to_string("/sys/module/overlay/parameters/redirect_dir").unwrap_or_default();
    let metacopy = std::fs::read_to_string("/sys/module/overlay/parameters/metacopy").unwrap_or_default();
    if redirect.trim() == "N" && metacopy.trim() == "N" {
        assert_eq!(f.native_diff, overlay_mount::probe::NativeDiff::Safe);
    }
    assert_eq!(f.new_mount_api, overlay_mount::probe::new_mount_api());
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "probe scratch dirs left behind: {left:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(tmp.path().to_str().unwrap()),
        "probe mounts left behind"
    );
}
