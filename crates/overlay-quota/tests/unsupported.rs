//! The "no project quota here" paths, each with its reason, on this
//! machine's kernel: not XFS, XFS on a kernel without XFS quota support
//! (or, on a kernel with it, XFS without `pquota`), ext4 without
//! `prjquota`, a user namespace.
//!
//! Needs root, loop devices and mkfs.xfs; otherwise each test says why and
//! skips.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::process::Command;

use common::LoopFs;
use overlay_quota::{BACKING_FS_BLOCK_DEV, Filesystem, QuotaControl, QuotaError, Unsupported};

fn reason(err: &QuotaError) -> &Unsupported {
    err.unsupported()
        .unwrap_or_else(|| panic!("expected NotSupported, got {err:?}"))
}

#[test]
fn not_xfs_is_refused_before_anything_is_made() {
    let tmpfs = match common::Tmpfs::new() {
        Ok(t) => t,
        Err(why) => return eprintln!("skipped: {why}"),
    };
    let err = QuotaControl::new(tmpfs.path()).unwrap_err();
    assert_eq!(reason(&err), &Unsupported::Filesystem { name: "tmpfs".into() });
    let msg = err.to_string();
    assert!(msg.contains("tmpfs") && msg.contains("XFS"), "{msg}");
    assert!(msg.contains(tmpfs.path().to_str().unwrap()), "names the home: {msg}");
    assert_eq!(
        std::fs::read_dir(tmpfs.path()).unwrap().count(),
        0,
        "no device node left behind"
    );
}

/// This machine's kernel has no XFS quota support: the error must say so
/// plainly. On a kernel with it (the VM), the same filesystem mounted
/// without `pquota` must say to mount it with `pquota`.
#[test]
fn xfs_without_quota_says_why() {
    let Some(has_quota) = common::kernel_has_xfs_quota() else {
        return eprintln!("skipped: cannot loop-mount XFS here (root, losetup and mkfs.xfs needed)");
    };
    let Some(fs) = common::need(LoopFs::xfs("")) else {
        return;
    };
    let home = fs.home("home");
    let err = QuotaControl::new(&home).unwrap_err();
    let msg = err.to_string();
    if has_quota {
        assert_eq!(
            reason(&err),
            &Unsupported::NotMountedWithProjectQuota { fs: Filesystem::Xfs }
        );
        assert!(msg.contains("-o pquota"), "{msg}");
    } else {
        eprintln!("this kernel refuses `mount -o pquota` for XFS; QuotaControl::new says: {msg}");
        assert_eq!(reason(&err), &Unsupported::KernelWithoutQuota { fs: Filesystem::Xfs });
        assert!(msg.contains("this kernel has no XFS quota support"), "{msg}");
        assert!(msg.contains("CONFIG_XFS_QUOTA"), "{msg}");
    }
    assert!(msg.contains(home.to_str().unwrap()), "names the home: {msg}");

    // As Docker, the device node is made first: a block device for the
    // home's filesystem, readable by root only.
    let node = std::fs::symlink_metadata(home.join(BACKING_FS_BLOCK_DEV)).unwrap();
    assert!(node.file_type().is_block_device());
    assert_eq!(node.rdev(), std::fs::metadata(&home).unwrap().dev());
    assert_eq!(node.permissions().mode() & 0o7777, 0o600);
}

/// Docker's old stumbling block: the kernel will not open a device node on
/// a `nodev` mount, so `quotactl` through `backingFsBlockDev` fails.
#[test]
fn a_nodev_home_says_so() {
    let Some(fs) = common::need(LoopFs::xfs_with(rustix::mount::MountFlags::NODEV, "")) else {
        return;
    };
    let err = QuotaControl::new(fs.path()).unwrap_err();
    assert_eq!(
        reason(&err),
        &Unsupported::Quotactl {
            errno: rustix::io::Errno::ACCESS
        }
    );
    assert!(err.to_string().contains("nodev"), "{err}");
}

#[test]
fn ext4_without_prjquota_says_how_to_enable_it() {
    let Some(fs) = common::need(LoopFs::ext4("", "")) else {
        return;
    };
    let home = fs.home("home");
    let err = QuotaControl::new(&home).unwrap_err();
    match reason(&err) {
        Unsupported::NotMountedWithProjectQuota { fs: Filesystem::Ext4 } => {
            let msg = err.to_string();
            assert!(msg.contains("-O quota,project") && msg.contains("prjquota"), "{msg}");
        }
        // A kernel built without CONFIG_QUOTA (not the VM's).
        Unsupported::KernelWithoutQuota { fs: Filesystem::Ext4 }
            if std::env::var("OVERLAY_QUOTA_VM").as_deref() != Ok("1") => {}
        other => panic!("unexpected reason: {other:?}"),
    }
}

/// The child half of `a_user_namespace_is_refused`, run by it inside
/// `unshare --user --map-root-user` (ignored otherwise: alone it tests
/// nothing).
#[test]
#[ignore = "run by a_user_namespace_is_refused inside a user namespace"]
fn user_namespace_child() {
    if std::env::var_os("OVERLAY_QUOTA_USERNS_CHILD").is_none() {
        return;
    }
    assert!(overlay_quota::in_user_namespace());
    let home = tempfile::tempdir().unwrap();
    let err = QuotaControl::new(home.path()).unwrap_err();
    assert_eq!(reason(&err), &Unsupported::UserNamespace);
    assert!(err.to_string().contains("user namespace"), "{err}");
    println!("USERNS-CHILD-OK");
}

#[test]
fn a_user_namespace_is_refused() {
    if std::env::var_os("OVERLAY_QUOTA_USERNS_CHILD").is_some() {
        return;
    }
    if overlay_quota::in_user_namespace() {
        return eprintln!("skipped: already inside a user namespace");
    }
    let exe = std::env::current_exe().unwrap();
    let out = match Command::new("unshare")
        .args(["--user", "--map-root-user"])
        .arg(&exe)
        .args([
            "--exact",
            "user_namespace_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("OVERLAY_QUOTA_USERNS_CHILD", "1")
        .output()
    {
        Ok(out) => out,
        Err(e) => return eprintln!("skipped: cannot run unshare(1): {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("unshare failed") {
        return eprintln!("skipped: no user namespaces here: {stderr}");
    }
    assert!(
        out.status.success() && stdout.contains("USERNS-CHILD-OK"),
        "child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}
