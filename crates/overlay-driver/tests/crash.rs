//! Crash safety: a layer either fully exists or does not, whatever step a
//! crash interrupts, and `repair` leaves a home `check` finds clean.
//!
//! On the fake backend, every mutating filesystem call of create,
//! apply_diff and remove is made to fail in turn (the process "dies"
//! there: every later call fails too); the home is then reopened by a new
//! driver. On the kernel backend, a child process building layers is
//! killed with SIGKILL at random moments.

#![allow(clippy::unwrap_used, missing_docs)]

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use overlay_driver::{CreateOpts, FakeBackend, GraphDriver, Overlay2};
use overlay_fs::{Dir, DirEntry, ErrorKind, File, Fs, MemFs, Metadata, NodeKind, Result, Timestamp};

/// A tree whose `n`-th mutating call, and every call after it, fails.
#[derive(Debug)]
struct Crashing {
    inner: Arc<dyn Fs>,
    calls: Arc<AtomicUsize>,
    crash_at: Arc<AtomicUsize>,
}

impl Crashing {
    fn step(&self, op: &'static str, path: &Path) -> Result<()> {
        if self.calls.fetch_add(1, Ordering::SeqCst) >= self.crash_at.load(Ordering::SeqCst) {
            return Err(overlay_fs::Error::new(op, path, ErrorKind::Other(5)).with_detail("simulated crash"));
        }
        Ok(())
    }
    fn dead(&self, op: &'static str, path: &Path) -> Result<()> {
        if self.calls.load(Ordering::SeqCst) > self.crash_at.load(Ordering::SeqCst) {
            return Err(overlay_fs::Error::new(op, path, ErrorKind::Other(5)).with_detail("after the crash"));
        }
        Ok(())
    }
}

impl Fs for Crashing {
    fn metadata(&self, p: &Path) -> Result<Metadata> {
        self.dead("lstat", p)?;
        self.inner.metadata(p)
    }
    fn read_dir(&self, p: &Path) -> Result<Vec<DirEntry>> {
        self.dead("readdir", p)?;
        self.inner.read_dir(p)
    }
    fn open_dir(&self, p: &Path) -> Result<Box<dyn Dir>> {
        self.dead("opendir", p)?;
        self.inner.open_dir(p)
    }
    fn subtree(&self, p: &Path) -> Result<Arc<dyn Fs>> {
        self.dead("subtree", p)?;
        Ok(Arc::new(Crashing {
            inner: self.inner.subtree(p)?,
            calls: self.calls.clone(),
            crash_at: self.crash_at.clone(),
        }))
    }
    fn open_file(&self, p: &Path) -> Result<Box<dyn File>> {
        self.dead("open", p)?;
        self.inner.open_file(p)
    }
    fn open_file_rw(&self, p: &Path) -> Result<Box<dyn File>> {
        self.step("open", p)?;
        self.inner.open_file_rw(p)
    }
    fn create_file(&self, p: &Path, m: u32) -> Result<Box<dyn File>> {
        self.step("create", p)?;
        self.inner.create_file(p, m)
    }
    fn create_new(&self, p: &Path, m: u32) -> Result<Box<dyn File>> {
        self.step("create", p)?;
        self.inner.create_new(p, m)
    }
    fn mkdir(&self, p: &Path, m: u32) -> Result<()> {
        self.step("mkdir", p)?;
        self.inner.mkdir(p, m)
    }
    fn symlink(&self, t: &Path, p: &Path) -> Result<()> {
        self.step("symlink", p)?;
        self.inner.symlink(t, p)
    }
    fn readlink(&self, p: &Path) -> Result<PathBuf> {
        self.dead("readlink", p)?;
        self.inner.readlink(p)
    }
    fn hardlink(&self, e: &Path, p: &Path) -> Result<()> {
        self.step("link", p)?;
        self.inner.hardlink(e, p)
    }
    fn mknod(&self, p: &Path, k: NodeKind, m: u32) -> Result<()> {
        self.step("mknod", p)?;
        self.inner.mknod(p, k, m)
    }
    fn get_xattr(&self, p: &Path, n: &OsStr) -> Result<Option<Vec<u8>>> {
        self.dead("getxattr", p)?;
        self.inner.get_xattr(p, n)
    }
    fn set_xattr(&self, p: &Path, n: &OsStr, v: &[u8]) -> Result<()> {
        self.step("setxattr", p)?;
        self.inner.set_xattr(p, n, v)
    }
    fn list_xattrs(&self, p: &Path) -> Result<Vec<OsString>> {
        self.dead("listxattr", p)?;
        self.inner.list_xattrs(p)
    }
    fn remove_xattr(&self, p: &Path, n: &OsStr) -> Result<()> {
        self.step("removexattr", p)?;
        self.inner.remove_xattr(p, n)
    }
    fn set_mode(&self, p: &Path, m: u32) -> Result<()> {
        self.step("chmod", p)?;
        self.inner.set_mode(p, m)
    }
    fn set_owner(&self, p: &Path, u: u32, g: u32) -> Result<()> {
        self.step("chown", p)?;
        self.inner.set_owner(p, u, g)
    }
    fn set_times(&self, p: &Path, a: Option<Timestamp>, m: Option<Timestamp>) -> Result<()> {
        self.step("utimes", p)?;
        self.inner.set_times(p, a, m)
    }
    fn remove_file(&self, p: &Path) -> Result<()> {
        self.step("unlink", p)?;
        self.inner.remove_file(p)
    }
    fn remove_dir(&self, p: &Path) -> Result<()> {
        self.step("rmdir", p)?;
        self.inner.remove_dir(p)
    }
    fn remove_all(&self, p: &Path) -> Result<()> {
        self.step("remove_all", p)?;
        self.inner.remove_all(p)
    }
    fn rename(&self, f: &Path, t: &Path) -> Result<()> {
        self.step("rename", f)?;
        self.inner.rename(f, t)
    }
}

/// A layer tar with a few files, made once.
fn layer_tar() -> Vec<u8> {
    let fs = MemFs::new();
    fs.mkdir(Path::new("etc"), 0o755).unwrap();
    for i in 0..5 {
        fs.write(Path::new(&format!("etc/f{i}")), 0o644, b"data").unwrap();
    }
    overlay_archive::export(&fs, &Default::default(), Vec::new()).unwrap().0
}

/// Every layer that exists is whole: diff, link, its l/ link, and a lower
/// chain whose links all resolve; mounting it works.
fn assert_whole(d: &Overlay2<FakeBackend>, home: &MemFs) {
    for id in d.layers().unwrap() {
        let id = id.as_str();
        assert!(
            home.metadata(&Path::new(id).join("diff")).unwrap().is_dir(),
            "{id}: no diff"
        );
        let link = String::from_utf8(home.read(&Path::new(id).join("link")).unwrap()).unwrap();
        assert!(
            home.metadata(&Path::new("l").join(&link)).unwrap().is_symlink(),
            "{id}: no l/{link}"
        );
        d.get(id, None)
            .unwrap_or_else(|e| panic!("{id} exists but does not mount: {e}"));
        d.put(id).unwrap();
    }
}

#[test]
fn a_crash_at_any_step_leaves_whole_layers_and_a_repairable_home() {
    let tar = layer_tar();
    // Count the steps of one full run, then crash at each of them.
    let start = |home: &MemFs| {
        let calls = Arc::new(AtomicUsize::new(0));
        let crash_at = Arc::new(AtomicUsize::new(usize::MAX));
        let fs = Arc::new(Crashing {
            inner: Arc::new(home.clone()),
            calls: calls.clone(),
            crash_at: crash_at.clone(),
        });
        let d = Overlay2::new(FakeBackend::with_home_tree(fs), &[] as &[&str]).unwrap();
        let begun = calls.load(Ordering::SeqCst);
        (d, calls, crash_at, begun)
    };
    let steps = {
        let (d, calls, _, begun) = start(&MemFs::new());
        scenario(&d, &tar).unwrap();
        calls.load(Ordering::SeqCst) - begun
    };
    assert!(steps > 20, "the scenario makes {steps} changes");
    for crash_at in 0..steps {
        let home = MemFs::new();
        let (d, _, at, begun) = start(&home);
        at.store(begun + crash_at, Ordering::SeqCst);
        assert!(scenario(&d, &tar).is_err(), "crash at step {crash_at} went unnoticed");
        drop(d);
        // The machine comes back: a new driver on the same home.
        let d = Overlay2::new(FakeBackend::with_home(home.clone()), &[] as &[&str]).unwrap();
        assert_whole(&d, &home);
        d.repair().unwrap();
        assert_eq!(d.check().unwrap(), vec![], "after repair at step {crash_at}");
        assert_whole(&d, &home);
    }
}

fn scenario(d: &Overlay2<FakeBackend>, tar: &[u8]) -> overlay_driver::Result<()> {
    d.create("base", None, &CreateOpts::default())?;
    d.apply_diff("base", None, &mut &tar[..])?;
    d.create("mid", Some("base"), &CreateOpts::default())?;
    d.create_read_write("top", Some("mid"), &CreateOpts::default())?;
    d.get("top", None)?;
    d.put("top")?;
    d.remove("top")?;
    d.create("other", Some("base"), &CreateOpts::default())?;
    Ok(())
}

/// The child side of the kernel test: builds, mounts and removes layers
/// until it is killed. Runs only when the parent test starts it.
#[test]
fn kernel_child_works_until_killed() {
    let Ok(home) = std::env::var("OVERLAY_CRASH_CHILD") else {
        return;
    };
    let d = Overlay2::new(overlay_driver::KernelBackend::new(&home).unwrap(), &[] as &[&str]).unwrap();
    let tar = layer_tar();
    for i in 0.. {
        let (base, top) = (format!("b{i}"), format!("t{i}"));
        let _ = d.create(&base, None, &CreateOpts::default());
        let _ = d.apply_diff(&base, None, &mut &tar[..]);
        let _ = d.create_read_write(&top, Some(&base), &CreateOpts::default());
        let _ = d.get(&top, None);
        if i % 3 == 0 {
            let _ = d.remove(&top);
        } else {
            let _ = d.put(&top);
        }
        if i % 4 == 0 {
            let _ = d.remove(&format!("t{}", i.max(1) - 1));
        }
    }
}

#[test]
fn a_killed_process_leaves_whole_layers_on_disk() {
    if !rustix::process::geteuid().is_root() || overlay_mount::probe::require_overlay().is_err() {
        eprintln!("skipped: the kernel crash test needs root and overlayfs");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("overlay2");
    for round in 0..4u64 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "kernel_child_works_until_killed", "--nocapture"])
            .env("OVERLAY_CRASH_CHILD", &home)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(150 + 97 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        let d = Overlay2::new(overlay_driver::KernelBackend::new(&home).unwrap(), &[] as &[&str]).unwrap();
        d.cleanup().unwrap();
        d.repair().unwrap();
        assert_eq!(d.check().unwrap(), vec![], "round {round}");
        let layers = d.layers().unwrap();
        for id in &layers {
            let id = id.as_str();
            d.get(id, None)
                .unwrap_or_else(|e| panic!("round {round}: {id} exists but does not mount: {e}"));
            d.put(id).unwrap();
        }
        eprintln!("round {round}: {} whole layers", layers.len());
    }
    let d = Overlay2::new(overlay_driver::KernelBackend::new(&home).unwrap(), &[] as &[&str]).unwrap();
    d.cleanup().unwrap();
}
