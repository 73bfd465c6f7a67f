//! Mounts a three-layer stack the way Docker lays it out, shows the merged
//! view and what the kernel offers, and unmounts. Needs root.
//!
//! ```text
//! sudo cargo run -p overlay-mount --example stack            # Method::Auto
//! sudo cargo run -p overlay-mount --example stack -- legacy  # or new-api
//! ```

use std::error::Error;
use std::path::Path;

use overlay_mount::{Method, Settings, Stack, Upper};

fn main() -> Result<(), Box<dyn Error>> {
    let method = match std::env::args().nth(1).as_deref() {
        None | Some("auto") => Method::Auto,
        Some("legacy") => Method::Legacy,
        Some("new-api") => Method::NewApi,
        Some(other) => return Err(format!("unknown method {other:?}: auto, legacy or new-api").into()),
    };
    let home = tempfile::tempdir()?;
    let h = |p: &str| home.path().join(p);
    for (i, files) in [&["etc/os-release", "bin/sh"][..], &["app/main"], &["etc/app.conf"]]
        .iter()
        .enumerate()
    {
        for f in *files {
            let path = h(&format!("layer{i}/diff/{f}"));
            std::fs::create_dir_all(path.parent().unwrap_or(Path::new("/")))?;
            std::fs::write(&path, format!("from layer {i}\n"))?;
        }
        std::fs::create_dir_all(h("l"))?;
        std::os::unix::fs::symlink(format!("../layer{i}/diff"), h(&format!("l/LAYER{i}")))?;
    }
    for d in ["top/diff", "top/work", "top/merged"] {
        std::fs::create_dir_all(h(d))?;
    }
    let features = overlay_mount::probe::probe(home.path())?;
    println!("kernel: {features:#?}");
    let stack = Stack {
        base: home.path().to_path_buf(),
        lowers: vec!["l/LAYER2".into(), "l/LAYER1".into(), "l/LAYER0".into()],
        upper: Some(Upper {
            upperdir: "top/diff".into(),
            workdir: "top/work".into(),
        }),
        target: "top/merged".into(),
    };
    let settings = Settings {
        index_off: features.index_param,
        ..Settings::default()
    };
    let mount = stack.mount(&settings, method)?;
    println!("\nmounted with {:?} at {}", mount.used(), mount.target().display());
    let mut stack_dirs = vec![mount.target().to_path_buf()];
    while let Some(dir) = stack_dirs.pop() {
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            if p.is_dir() {
                stack_dirs.push(p);
            } else {
                let rel = p.strip_prefix(mount.target())?;
                println!("  /{:<16} {}", rel.display(), std::fs::read_to_string(&p)?.trim_end());
            }
        }
    }
    mount.unmount()?;
    println!("unmounted");
    Ok(())
}
