//! The naive diff over real overlay mounts: a layer's tree is its mounted
//! overlay (diff dir over the parent's), the parent's a plain directory.
//! Needs root and overlayfs; otherwise says why and skips. Mounts are
//! `Mount` guards, dropped (unmounted) on `put` and on any failure.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use naive_diff::{BoxError, LayerTrees, NaiveDiff};
use overlay_fs::{Fs, HostFs};
use overlay_mount::{Method, Mount, Settings, Stack, Upper};

struct Overlays {
    home: PathBuf,
    mounts: Mutex<HashMap<String, Mount>>,
}

impl LayerTrees for Overlays {
    fn get(&self, id: &str) -> Result<Arc<dyn Fs>, BoxError> {
        if id != "top" {
            return Ok(Arc::new(HostFs::new(self.home.join(id))?));
        }
        let stack = Stack {
            base: self.home.clone(),
            lowers: vec!["base".into()],
            upper: Some(Upper {
                upperdir: "top/diff".into(),
                workdir: "top/work".into(),
            }),
            target: "top/merged".into(),
        };
        let m = stack.mount(&Settings::default(), Method::Auto)?;
        let fs = HostFs::new(m.target())?;
        self.mounts.lock().unwrap().insert(id.into(), m);
        Ok(Arc::new(fs))
    }

    fn put(&self, id: &str) -> Result<(), BoxError> {
        if let Some(m) = self.mounts.lock().unwrap().remove(id) {
            m.unmount()?;
        }
        Ok(())
    }
}

fn ready() -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: overlay mounts need root");
        return false;
    }
    if let Err(e) = overlay_mount::probe::require_overlay() {
        eprintln!("skipped: {e}");
        return false;
    }
    true
}

fn p(s: &str) -> &Path {
    Path::new(s)
}

#[test]
fn changes_diff_and_apply_through_a_real_overlay() {
    if !ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().to_path_buf();
    for d in ["base", "top/diff", "top/work", "top/merged", "copy"] {
        std::fs::create_dir_all(home.join(d)).unwrap();
    }
    let base = HostFs::new(home.join("base")).unwrap();
    base.mkdir_all(p("etc/conf.d"), 0o755).unwrap();
    base.write(p("etc/motd"), 0o644, b"hello").unwrap();
    base.write(p("etc/conf.d/a"), 0o644, b"a").unwrap();
    base.mkdir_all(p("var/cache/old"), 0o755).unwrap();
    base.write(p("var/cache/old/x"), 0o644, b"x").unwrap();
    base.write(p("bin"), 0o755, b"file that becomes a dir").unwrap();
    base.write(p("keep"), 0o644, b"untouched").unwrap();
    // The copy a diff will be applied to, taken before any edit.
    let (snapshot, _) = overlay_archive::export(&base, &Default::default(), Vec::new()).unwrap();
    let copy = HostFs::new(home.join("copy")).unwrap();
    overlay_archive::import(&copy, &snapshot[..], &Default::default()).unwrap();

    let naive = NaiveDiff::new(Overlays {
        home: home.clone(),
        mounts: Mutex::new(HashMap::new()),
    });
    {
        // Edits through the mounted overlay: copy-up, whiteouts, opaque.
        let merged = naive.trees().get("top").unwrap();
        merged.write(p("etc/motd"), 0o644, b"changed!").unwrap();
        merged.write(p("etc/new"), 0o600, b"new").unwrap();
        merged.remove_all(p("var/cache/old")).unwrap();
        merged.set_mode(p("etc/conf.d"), 0o700).unwrap();
        merged.remove_file(p("bin")).unwrap();
        merged.mkdir(p("bin"), 0o755).unwrap();
        merged.write(p("bin/sh"), 0o755, b"#!").unwrap();
        naive.trees().put("top").unwrap();
    }
    let changes: Vec<String> = naive
        .changes("top", Some("base"))
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(
        changes,
        [
            "C /bin",
            "A /bin/sh",
            "C /etc",
            "C /etc/conf.d",
            "C /etc/motd",
            "A /etc/new",
            "C /var",
            "C /var/cache",
            "D /var/cache/old"
        ]
    );
    assert_eq!(naive.diff_size("top", Some("base")).unwrap(), 2 + 8 + 3);

    let tar = naive.diff("top", Some("base"), Vec::new()).unwrap();
    let applied = naive.apply_diff("copy", None, &tar[..]).unwrap();
    assert_eq!(applied, 2 + 8 + 3);
    let merged = naive.trees().get("top").unwrap();
    for f in ["etc/motd", "etc/new", "bin/sh", "keep", "etc/conf.d/a"] {
        assert_eq!(copy.read(p(f)).unwrap(), merged.read(p(f)).unwrap(), "{f}");
        assert_eq!(
            copy.metadata(p(f)).unwrap().mode,
            merged.metadata(p(f)).unwrap().mode,
            "{f}"
        );
    }
    assert_eq!(copy.metadata(p("etc/conf.d")).unwrap().mode, 0o700);
    assert!(!copy.exists(p("var/cache/old")).unwrap());
    assert!(copy.metadata(p("bin")).unwrap().is_dir());
    naive.trees().put("top").unwrap();
    assert!(naive.trees().mounts.lock().unwrap().is_empty());
    assert!(!overlay_mount::is_mount_point(&home.join("top/merged")).unwrap());
}
