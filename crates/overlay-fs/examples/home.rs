//! Builds a small overlay2 home on disk, laid out exactly as Docker's
//! overlay2 driver lays it out, through `HostFs` and `overlay-layout`, and
//! shows that a hostile symlink inside a layer cannot reach the host.
//!
//! ```text
//! cargo run -p overlay-fs --example home            # in a temporary dir
//! cargo run -p overlay-fs --example home -- /tmp/h  # keep it in /tmp/h
//! ```
//!
//! This is a demonstration of the two foundation crates, not the driver:
//! nothing is mounted (the driver and the `overlay2` command do that).

#![allow(clippy::unwrap_used)]

use std::error::Error;
use std::path::{Path, PathBuf};

use overlay_fs::{FileType, Fs, HostFs, NodeKind};
use overlay_layout::{DepthLimit, LayerId, LinkId, Lower, mode};

/// One layer: its id, the files of its diff, and what it deletes.
struct Spec {
    id: &'static str,
    files: &'static [(&'static str, &'static str)],
    whiteouts: &'static [&'static str],
    opaque: &'static [&'static str],
}

const LAYERS: &[Spec] = &[
    Spec {
        id: "base",
        files: &[
            ("etc/os-release", "NAME=demo\n"),
            ("etc/motd", "hello\n"),
            ("var/cache/a", "cached\n"),
        ],
        whiteouts: &[],
        opaque: &[],
    },
    Spec {
        id: "app",
        files: &[("app/run.sh", "#!/bin/sh\necho run\n")],
        whiteouts: &["etc/motd"],
        opaque: &[],
    },
    Spec {
        id: "config",
        files: &[("var/cache/b", "fresh\n")],
        whiteouts: &[],
        opaque: &["var/cache"],
    },
];

fn main() -> Result<(), Box<dyn Error>> {
    let (home_path, _tmp) = match std::env::args_os().nth(1) {
        Some(p) => (PathBuf::from(p), None),
        None => {
            let t = std::env::temp_dir().join(format!("overlay2-demo-{}", std::process::id()));
            (t.clone(), Some(TempHome(t)))
        }
    };
    std::fs::create_dir_all(&home_path)?;
    let home = HostFs::new(&home_path)?;
    home.set_mode(Path::new(""), mode::HOME)?;
    home.mkdir_all(Path::new("l"), mode::LINK_DIR)?;

    let mut parent: Option<(LayerId, LinkId, Option<Lower>)> = None;
    for spec in LAYERS {
        let id = LayerId::new(spec.id)?;
        let link = LinkId::generate();
        let dir = PathBuf::from(id.as_str());
        home.mkdir(&dir, mode::LAYER_DIR)?;
        home.mkdir(&dir.join("diff"), mode::DIFF_DIR)?;
        home.symlink(
            &overlay_layout::link_target(&id),
            &overlay_layout::relative_link_path(link),
        )?;
        home.write(&dir.join("link"), mode::LINK_FILE, link.as_bytes())?;
        let lower = match &parent {
            None => None,
            Some((pid, plink, plower)) => {
                let lower = Lower::child_of(*plink, plower.as_ref(), DepthLimit::DOCKER)?;
                home.write(&dir.join("lower"), mode::LOWER_FILE, lower.format().as_bytes())?;
                home.mkdir(&dir.join("work"), mode::WORK_DIR)?;
                home.write(
                    &PathBuf::from(pid.as_str()).join("committed"),
                    mode::COMMITTED_FILE,
                    b"",
                )?;
                Some(lower)
            }
        };
        // The layer's own files go through a HostFs rooted at its diff dir,
        // as an image extractor would write them.
        let diff = HostFs::new(home_path.join(id.as_str()).join("diff"))?;
        for (path, data) in spec.files {
            let path = Path::new(path);
            if let Some(parent) = path.parent() {
                diff.mkdir_all(parent, 0o755)?;
            }
            diff.write(path, 0o644, data.as_bytes())?;
        }
        for path in spec.whiteouts {
            diff.mkdir_all(Path::new(path).parent().unwrap_or(Path::new("")), 0o755)?;
            diff.mknod(Path::new(path), NodeKind::WHITEOUT, 0)?;
        }
        for path in spec.opaque {
            diff.mkdir_all(Path::new(path), 0o755)?;
            diff.set_xattr(Path::new(path), "trusted.overlay.opaque".as_ref(), b"y")?;
        }
        parent = Some((id, link, lower));
    }

    // A hostile layer: `etc -> /` and `up -> ../../../..`. Writes through
    // them land inside the diff dir, never on the host.
    let evil = HostFs::new(home_path.join("config/diff"))?;
    evil.symlink(Path::new("/"), Path::new("escape"))?;
    evil.symlink(Path::new("../../../../../.."), Path::new("up"))?;
    evil.mkdir_all(Path::new("escape/tmp"), 0o755)?;
    evil.write(Path::new("up/tmp/owned"), 0o644, b"contained\n")?;

    println!("overlay2 home at {}\n", home_path.display());
    print_tree(&home, Path::new(""), 0)?;
    println!();
    for spec in LAYERS {
        let lower = Path::new(spec.id).join("lower");
        match home.read(&lower) {
            Ok(bytes) => println!("{:>7}/lower = {}", spec.id, String::from_utf8_lossy(&bytes)),
            Err(_) => println!("{:>7}/lower   (none: a base layer)", spec.id),
        }
    }
    let host_tmp_owned = Path::new("/tmp/owned").exists();
    println!(
        "\nhostile write through `up -> ../../../../../..`: landed at config/diff/tmp/owned = {:?}; /tmp/owned on the host exists: {}",
        String::from_utf8_lossy(&evil.read(Path::new("tmp/owned"))?),
        host_tmp_owned
    );
    Ok(())
}

fn print_tree(fs: &dyn Fs, dir: &Path, depth: usize) -> Result<(), Box<dyn Error>> {
    let mut entries = fs.read_dir(dir)?;
    entries.sort();
    for e in entries {
        let path = dir.join(&e.name);
        let md = fs.metadata(&path)?;
        let what = match md.file_type {
            FileType::Directory => {
                let opaque = fs.get_xattr(&path, "trusted.overlay.opaque".as_ref()).ok().flatten();
                if opaque.as_deref() == Some(b"y") {
                    "/  (opaque)".to_string()
                } else {
                    "/".to_string()
                }
            }
            FileType::Symlink => format!(" -> {}", fs.readlink(&path)?.display()),
            FileType::CharDevice if md.is_whiteout() => "  (whiteout 0:0)".to_string(),
            FileType::Regular => format!("  ({} bytes)", md.size),
            other => format!("  ({other:?})"),
        };
        println!(
            "{:indent$}{}{what}  {:o}",
            "",
            e.name.to_string_lossy(),
            md.mode,
            indent = depth * 2
        );
        if md.is_dir() {
            print_tree(fs, &path, depth + 1)?;
        }
    }
    Ok(())
}

/// Removes the temporary home when the demo ends.
struct TempHome(PathBuf);

impl Drop for TempHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
