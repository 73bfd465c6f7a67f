//! Loop-mounted scratch filesystems for the tests, each a guard that
//! unmounts and detaches its loop device on drop, also when a test panics.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};

/// Why a scratch filesystem could not be made.
#[derive(Debug)]
pub enum Setup {
    /// The machine cannot run the test at all (not root, no mkfs, no loop
    /// devices): print this and skip.
    Skip(String),
    /// `mount(2)` refused the options (e.g. `pquota` on a kernel without
    /// XFS quotas).
    MountRefused(Errno),
}

/// A filesystem image on a loop device, mounted in a temporary directory.
pub struct LoopFs {
    mnt: PathBuf,
    dev: String,
    mounted: bool,
    // Dropped after `Drop::drop` has unmounted: holds the image.
    _dir: tempfile::TempDir,
}

impl LoopFs {
    /// A fresh XFS of 300 MiB (mkfs.xfs's minimum; a sparse file), mounted
    /// with `options` (e.g. `"pquota"` or `""`).
    pub fn xfs(options: &str) -> Result<Self, Setup> {
        Self::xfs_with(MountFlags::empty(), options)
    }

    /// [`LoopFs::xfs`] mounted with `flags` too (e.g. `NODEV`).
    pub fn xfs_with(flags: MountFlags, options: &str) -> Result<Self, Setup> {
        Self::make("xfs", &["mkfs.xfs", "-q", "-f"], 300 << 20, flags, options)
    }

    /// A fresh ext4 of 64 MiB with the extra mkfs `features` (e.g.
    /// `"quota,project"`), mounted with `options`.
    pub fn ext4(features: &str, options: &str) -> Result<Self, Setup> {
        let mut mkfs = vec!["mkfs.ext4", "-q", "-F", "-I", "256"];
        if !features.is_empty() {
            mkfs.extend(["-O", features]);
        }
        Self::make("ext4", &mkfs, 64 << 20, MountFlags::empty(), options)
    }

    fn make(fstype: &str, mkfs: &[&str], size: u64, flags: MountFlags, options: &str) -> Result<Self, Setup> {
        if !rustix::process::geteuid().is_root() {
            return Err(Setup::Skip("loop-mounting a filesystem needs root".into()));
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join(format!("{fstype}.img"));
        std::fs::File::create(&image).unwrap().set_len(size).unwrap();
        match Command::new(mkfs[0]).args(&mkfs[1..]).arg(&image).output() {
            Err(e) => {
                return Err(Setup::Skip(format!(
                    "{} not available ({e}); apt-get install xfsprogs",
                    mkfs[0]
                )));
            }
            Ok(out) if !out.status.success() => {
                panic!("{mkfs:?} failed: {}", String::from_utf8_lossy(&out.stderr))
            }
            Ok(_) => {}
        }
        let dev = attach(&image)?;
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let mut fs = Self {
            mnt,
            dev,
            mounted: false,
            _dir: dir,
        };
        let data = std::ffi::CString::new(options).unwrap();
        match rustix::mount::mount(fs.dev.as_str(), &fs.mnt, fstype, flags, data.as_c_str()) {
            Ok(()) => fs.mounted = true,
            Err(e) => return Err(Setup::MountRefused(e)),
        }
        Ok(fs)
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mnt
    }

    /// A new directory (the "home") on it.
    pub fn home(&self, name: &str) -> PathBuf {
        let home = self.mnt.join(name);
        std::fs::create_dir(&home).unwrap();
        home
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if self.mounted {
            let mut left = 20;
            loop {
                match rustix::mount::unmount(&self.mnt, UnmountFlags::empty()) {
                    Err(Errno::BUSY) if left > 0 => {
                        left -= 1;
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    Err(Errno::BUSY) => {
                        let _ = rustix::mount::unmount(&self.mnt, UnmountFlags::DETACH);
                        break;
                    }
                    _ => break,
                }
            }
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// `losetup --find --show IMAGE`, retried: parallel test processes race
/// for the same free device.
fn attach(image: &Path) -> Result<String, Setup> {
    let mut last = String::new();
    for attempt in 0..10 {
        let out = match Command::new("losetup").args(["--find", "--show"]).arg(image).output() {
            Ok(out) => out,
            Err(e) => return Err(Setup::Skip(format!("losetup not available: {e}"))),
        };
        if out.status.success() {
            return Ok(String::from_utf8(out.stdout).unwrap().trim().to_owned());
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        std::thread::sleep(std::time::Duration::from_millis(20 * (attempt + 1)));
    }
    Err(Setup::Skip(format!("no loop device: {last}")))
}

/// A scratch filesystem for a test that needs it to mount, or `None` after
/// printing why the test skips.
pub fn need(fs: Result<LoopFs, Setup>) -> Option<LoopFs> {
    match fs {
        Ok(fs) => Some(fs),
        Err(Setup::Skip(reason)) => {
            eprintln!("skipped: {reason}");
            None
        }
        Err(Setup::MountRefused(e)) => {
            eprintln!("skipped: this kernel refuses the mount ({e})");
            None
        }
    }
}

/// Does this kernel mount XFS with project quotas? Asked by mounting a
/// scratch XFS with `pquota`; `None` when that cannot be tried here.
pub fn kernel_has_xfs_quota() -> Option<bool> {
    match LoopFs::xfs("pquota") {
        Ok(_) => Some(true),
        Err(Setup::MountRefused(_)) => Some(false),
        Err(Setup::Skip(_)) => None,
    }
}

/// A tmpfs mounted in a temporary directory, unmounted on drop.
pub struct Tmpfs {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts one; `Err` is the reason to skip.
    pub fn new() -> Result<Self, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("mounting a tmpfs needs root".into());
        }
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("tmpfs");
        std::fs::create_dir(&mnt).unwrap();
        rustix::mount::mount("tmpfs", &mnt, "tmpfs", MountFlags::empty(), c"size=1m")
            .map_err(|e| format!("cannot mount tmpfs: {e}"))?;
        Ok(Self { mnt, _dir: dir })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mnt
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.mnt, UnmountFlags::DETACH);
    }
}
