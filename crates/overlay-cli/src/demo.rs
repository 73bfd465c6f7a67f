//! `overlay2 demo`: the main job end to end, on a fresh machine, without
//! network. It builds a small three-layer image in `docker save` form from
//! files already on the machine (`/etc`, `/usr/share/common-licenses`),
//! with a deleted file (`.wh.` whiteout) and an opaque directory
//! (`.wh..wh..opq`) in the second layer, imports it through the same code
//! as `import`, mounts the top layer, shows the merged tree and unmounts.

use std::path::{Path, PathBuf};

use overlay_driver::{Backend as _, GraphDriver};
use serde_json::{Value, json};

use crate::Output;
use crate::commands::render_tree;
use crate::error::{Failure, Result};
use crate::import::{self, Driver};
use crate::stream::Digest;

/// A fixed time for every entry, so the same host files give the same
/// diff ids (and a second run finds its layers already there).
const MTIME: u64 = 1_700_000_000;

/// Largest host file copied into the sample.
const MAX_FILE: u64 = 256 * 1024;

/// One entry of a layer tar.
enum Entry {
    Dir(String),
    File(String, Vec<u8>, u32),
    Symlink(String, String),
}

fn layer_tar(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let io = |e: std::io::Error| Failure::new(format!("cannot build the sample image: {e}"));
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            Entry::Dir(name) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, name, &[][..]).map_err(io)?;
            }
            Entry::File(name, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, &data[..]).map_err(io)?;
            }
            Entry::Symlink(name, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, name, target).map_err(io)?;
            }
        }
    }
    b.into_inner().map_err(io)
}

/// A host file's contents, if it is there, readable and small.
fn host_file(path: &Path) -> Option<Vec<u8>> {
    let m = std::fs::metadata(path).ok()?;
    if !m.is_file() || m.len() > MAX_FILE {
        return None;
    }
    std::fs::read(path).ok()
}

/// Up to `n` licence texts of `/usr/share/common-licenses`, by name.
fn licenses(n: usize) -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<PathBuf> = std::fs::read_dir("/usr/share/common-licenses")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .filter_map(|p| Some((p.file_name()?.to_str()?.to_owned(), host_file(p)?)))
        .take(n)
        .collect()
}

/// What goes into the sample image beyond the demo's three layers.
#[derive(Debug, Clone, Default)]
pub struct SampleOptions {
    /// A static busybox to put in layer 1 as `/bin/busybox` with `/bin/sh`
    /// and the usual applets linked to it, so a container engine can run
    /// the image.
    pub busybox: Option<PathBuf>,
    /// Layers to add on top, each with one file `/layers/N` (deep stacks).
    pub extra_layers: usize,
    /// The image's tag.
    pub tag: String,
}

/// Applets linked to `/bin/busybox` when the image carries it.
const APPLETS: &[&str] = &[
    "sh", "cat", "echo", "ls", "sleep", "true", "false", "test", "mkdir", "rm", "touch", "wc", "head", "sync", "id",
    "printf", "stat", "dd",
];

/// The three layers, bottom first, and where their files came from.
fn sample_layers(opts: &SampleOptions) -> Result<(Vec<Vec<u8>>, Vec<String>)> {
    let mut sources = Vec::new();
    let mut etc = |name: &str, fallback: &str| -> Vec<u8> {
        let path = Path::new("/etc").join(name);
        match host_file(&path) {
            Some(d) => {
                sources.push(path.display().to_string());
                d
            }
            None => fallback.as_bytes().to_vec(),
        }
    };
    let os_release = etc("os-release", "NAME=\"sample\"\n");
    let hosts = etc("hosts", "127.0.0.1\tlocalhost\n");
    let issue = etc("issue", "Welcome\n");
    let mut licenses = licenses(3);
    if licenses.is_empty() {
        licenses = vec![
            ("Sample-1".into(), b"sample licence 1\n".to_vec()),
            ("Sample-2".into(), b"sample licence 2\n".to_vec()),
        ];
    } else {
        sources.push("/usr/share/common-licenses".into());
    }
    let lic = "usr/share/common-licenses";

    // Layer 1: a small base system.
    let mut base = vec![
        Entry::Dir("etc".into()),
        Entry::File("etc/os-release".into(), os_release, 0o644),
        Entry::File("etc/hosts".into(), hosts.clone(), 0o644),
        Entry::File("etc/issue".into(), issue, 0o644),
        Entry::Dir("usr".into()),
        Entry::Dir("usr/share".into()),
        Entry::Dir(lic.into()),
    ];
    for (name, data) in &licenses {
        base.push(Entry::File(format!("{lic}/{name}"), data.clone(), 0o644));
    }
    if let Some(bb) = &opts.busybox {
        let data = std::fs::read(bb).map_err(|e| Failure::new(format!("cannot read busybox {}: {e}", bb.display())))?;
        sources.push(bb.display().to_string());
        base.push(Entry::Dir("bin".into()));
        base.push(Entry::File("bin/busybox".into(), data, 0o755));
        base.extend(
            APPLETS
                .iter()
                .map(|a| Entry::Symlink(format!("bin/{a}"), "busybox".into())),
        );
        base.extend([
            Entry::Dir("tmp".into()),
            Entry::Dir("proc".into()),
            Entry::Dir("dev".into()),
            Entry::Dir("sys".into()),
        ]);
    }
    base.extend([
        Entry::Dir("srv".into()),
        Entry::Dir("srv/www".into()),
        Entry::File("srv/www/index.html".into(), b"<h1>layer 1</h1>\n".to_vec(), 0o644),
    ]);

    // Layer 2: deletes /etc/issue, makes the licence dir opaque (its
    // layer-1 files vanish) with one new file, adds a page.
    let changes = vec![
        Entry::Dir("etc".into()),
        Entry::File("etc/.wh.issue".into(), Vec::new(), 0o644),
        Entry::Dir("usr".into()),
        Entry::Dir("usr/share".into()),
        Entry::Dir(lic.into()),
        Entry::File(format!("{lic}/.wh..wh..opq"), Vec::new(), 0o644),
        Entry::File(
            format!("{lic}/ONLY-THIS-ONE"),
            b"Layer 2 made this directory opaque: the licences of layer 1 are hidden.\n".to_vec(),
            0o644,
        ),
        Entry::Dir("srv".into()),
        Entry::Dir("srv/www".into()),
        Entry::File(
            "srv/www/about.html".into(),
            b"<p>added by layer 2</p>\n".to_vec(),
            0o644,
        ),
    ];

    // Layer 3: changes a file of layer 1, adds a program and a link to it.
    let mut hosts3 = hosts;
    hosts3.extend_from_slice(b"10.0.0.2\tdemo-db\n");
    let app = vec![
        Entry::Dir("etc".into()),
        Entry::File("etc/hosts".into(), hosts3, 0o644),
        Entry::Dir("usr/local".into()),
        Entry::Dir("usr/local/bin".into()),
        Entry::File(
            "usr/local/bin/hello".into(),
            b"#!/bin/sh\necho hello from layer 3\n".to_vec(),
            0o755,
        ),
        Entry::Symlink("usr/local/bin/hi".into(), "hello".into()),
    ];
    let mut layers = vec![layer_tar(&base)?, layer_tar(&changes)?, layer_tar(&app)?];
    for n in 0..opts.extra_layers {
        layers.push(layer_tar(&[
            Entry::Dir("layers".into()),
            Entry::File(format!("layers/{n}"), format!("layer {}\n", n + 4).into_bytes(), 0o644),
        ])?);
    }
    Ok((layers, sources))
}

/// Writes the sample as a `docker save` tar at `path`.
pub fn write_image(path: &Path, opts: &SampleOptions) -> Result<Vec<String>> {
    let (layers, sources) = sample_layers(opts)?;
    let mut history = vec![
        json!({ "created_by": "overlay2 demo: base files" }),
        json!({ "created_by": "overlay2 demo: delete /etc/issue, opaque licences dir" }),
        json!({ "created_by": "overlay2 demo: edit /etc/hosts, add hello" }),
    ];
    history
        .extend((0..opts.extra_layers).map(|n| json!({ "created_by": format!("overlay2 sample-image: /layers/{n}") })));
    let tag = if opts.tag.is_empty() {
        "overlay2-demo:latest"
    } else {
        opts.tag.as_str()
    };
    let diff_ids: Vec<Digest> = layers.iter().map(|l| Digest::of(l)).collect();
    let config = json!({
        "architecture": crate::image::host_arch(),
        "os": "linux",
        "config": { "Cmd": ["/usr/local/bin/hello"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids.iter().map(Digest::as_str).collect::<Vec<_>>() },
        "history": history,
    })
    .to_string();
    let config_name = format!("{}.json", Digest::of(config.as_bytes()).hex());
    let layer_names: Vec<String> = diff_ids.iter().map(|d| format!("{}/layer.tar", d.hex())).collect();
    let manifest = json!([{ "Config": config_name, "RepoTags": [tag], "Layers": layer_names }]).to_string();
    let io = |e: std::io::Error| Failure::new(format!("cannot write the sample image {}: {e}", path.display()));
    let file = std::fs::File::create(path).map_err(io)?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(file));
    let mut add = |name: &str, data: &[u8]| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(MTIME);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data)
    };
    for (name, data) in layer_names.iter().zip(&layers) {
        add(name, data).map_err(io)?;
    }
    add(&config_name, config.as_bytes()).map_err(io)?;
    add("manifest.json", manifest.as_bytes()).map_err(io)?;
    b.into_inner()
        .and_then(|mut w| std::io::Write::flush(&mut w))
        .map_err(io)?;
    Ok(sources)
}

/// Runs the demo on the driver's home.
///
/// # Errors
///
/// Building, importing, mounting or reading fails.
pub fn run(d: &Driver) -> Result<Output> {
    let home = d.backend().home_path().to_path_buf();
    let tmp = tempfile::tempdir().map_err(|e| Failure::new(format!("cannot make a temporary directory: {e}")))?;
    let image = tmp.path().join("overlay2-demo.tar");
    let sources = write_image(&image, &SampleOptions::default())?;
    let mut text = vec![
        format!(
            "1. Built a sample image in docker-save form ({}) from files of this machine:",
            image.display()
        ),
        format!(
            "   {}",
            if sources.is_empty() {
                "(none found: made-up files)".to_owned()
            } else {
                sources.join(", ")
            }
        ),
        "   layer 1: base files; layer 2: deletes /etc/issue (.wh.issue), makes".to_owned(),
        "   /usr/share/common-licenses opaque (.wh..wh..opq); layer 3: edits /etc/hosts, adds a program".to_owned(),
    ];

    let report = import::import(d, &image)?;
    text.push(format!(
        "2. Imported it into {} (overlay2 import), digests verified:",
        home.display()
    ));
    let img = report
        .images
        .first()
        .ok_or_else(|| Failure::new("the sample image held no image"))?;
    for (i, l) in img.layers.iter().enumerate() {
        let how = if l.created {
            format!("created, {} bytes", l.bytes)
        } else {
            "already there".to_owned()
        };
        text.push(format!("   layer {} {} ({how})", i + 1, l.id));
    }

    let mut changes_doc = Vec::new();
    for l in img.layers.iter().skip(1) {
        let changes = d.changes(&l.id, l.parent.as_deref())?;
        let lines: Vec<String> = changes.iter().map(ToString::to_string).collect();
        changes_doc.push(json!({ "id": l.id, "changes": lines }));
    }
    text.push("3. What layers 2 and 3 change (overlay2 changes ID):".to_owned());
    for (i, c) in changes_doc.iter().enumerate() {
        text.push(format!("   layer {}:", i + 2));
        for line in c["changes"].as_array().into_iter().flatten() {
            text.push(format!("     {}", line.as_str().unwrap_or_default()));
        }
    }

    let top = img.top.clone();
    let path = d.get(&top, None)?;
    let shown = d.tree(&top).map_err(Failure::from).and_then(|fs| render_tree(&*fs));
    let put = d.put(&top);
    let (tree, list) = shown?;
    put?;
    text.push(format!(
        "4. Mounted the top layer at {} (overlay2 mount); the merged tree:",
        path.display()
    ));
    text.extend(tree.lines().map(|l| format!("   {l}")));
    text.push("   (no /etc/issue: deleted by layer 2; one licence file: the directory is opaque)".to_owned());
    text.push("5. Unmounted it (overlay2 umount). The layers stay; try:".to_owned());
    let h = home.display();
    text.push(format!("   overlay2 --home {h} ls"));
    text.push(format!("   overlay2 --home {h} mount {top}"));
    text.push(format!(
        "   overlay2 --home {h} diff {} | tar -tv",
        img.layers.get(1).map_or(top.as_str(), |l| l.id.as_str())
    ));

    let json = json!({
        "home": home,
        "image": image,
        "sources": sources,
        "top": top,
        "layers": serde_json::to_value(&img.layers).unwrap_or(Value::Null),
        "changes": changes_doc,
        "mounted_at": path,
        "tree": list,
    });
    Ok(Output::new(json, text.join("\n")))
}

/// `overlay2 sample-image`: the demo's image written to `out`, for
/// container engines (with busybox) and benchmarks (with extra layers).
///
/// # Errors
///
/// Busybox cannot be read, or the file cannot be written.
pub fn sample_image(out: &Path, opts: &SampleOptions) -> Result<Output> {
    let sources = write_image(out, opts)?;
    let layers = 3 + opts.extra_layers;
    Ok(Output::new(
        json!({ "image": out, "layers": layers, "sources": sources }),
        format!("wrote {} ({layers} layers, docker save form)", out.display()),
    ))
}
