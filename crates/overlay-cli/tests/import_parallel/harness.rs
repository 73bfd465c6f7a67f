//! The harness of `import_parallel`: temporary homes driving the real
//! binary, image builders (layer tars, `docker save` tars, OCI layouts)
//! and a snapshot of a tree to compare layers entry for entry.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::process::Child;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// What the binary reads to apply that many layers at once.
pub const JOBS: &str = "OVERLAY2_IMPORT_JOBS";

// ---------------------------------------------------------------- harness

pub use crate::home::{Home, Run};

impl Home {
    /// `import IMAGE` applying `jobs` layers at once.
    pub fn import(&self, image: &Path, jobs: usize) -> Run {
        let mut c = self.cmd(&["--json", "import", image.to_str().unwrap()]);
        Run::from(c.env(JOBS, jobs.to_string()).output().unwrap())
    }

    /// Layer ids with an import marker, sorted.
    pub fn markers(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(&self.path)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_prefix(".overlay2-import-").map(str::to_owned)
            })
            .collect();
        out.sort();
        out
    }

    /// Layers that have an apply in flight (its staging dir), sorted.
    pub fn applying(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.path).unwrap().flatten() {
            let Ok(inner) = std::fs::read_dir(e.path()) else {
                continue;
            };
            if inner
                .flatten()
                .any(|i| i.file_name().to_string_lossy().starts_with(".tmp-apply-"))
            {
                out.push(e.file_name().into_string().unwrap());
            }
        }
        out.sort();
        out
    }
}

/// Kills (SIGKILL) and reaps the child on drop, if it still runs.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ------------------------------------------------------- building images

pub fn sha256(data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(data);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256(data))
}

/// Docker's chain ids of these layers (hex only: the layer ids).
pub fn chain_ids(layers: &[Vec<u8>]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in layers {
        let next = match out.last() {
            None => digest(l),
            Some(p) => digest(format!("{p} {}", digest(l)).as_bytes()),
        };
        out.push(next);
    }
    out.into_iter()
        .map(|c| c.trim_start_matches("sha256:").to_owned())
        .collect()
}

/// A layer tar, entries added in order (whiteouts are files named `.wh.*`).
pub struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    pub fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, mode: u32, size: usize) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size as u64);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    pub fn dir(mut self, name: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.0.append_data(&mut h, name, &[][..]).unwrap();
        self
    }

    pub fn file(mut self, name: &str, data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, data.len());
        self.0.append_data(&mut h, name, data).unwrap();
        self
    }

    pub fn exec(mut self, name: &str, data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, 0o755, data.len());
        self.0.append_data(&mut h, name, data).unwrap();
        self
    }

    pub fn symlink(mut self, name: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.0.append_link(&mut h, name, target).unwrap();
        self
    }

    pub fn hardlink(mut self, name: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Link, 0o644, 0);
        self.0.append_link(&mut h, name, target).unwrap();
        self
    }

    /// `dir/` with `n` files of `size` bytes each, their bytes made from `seed`.
    pub fn filler(self, dir: &str, n: usize, size: usize, seed: u64) -> Self {
        let mut t = self.dir(dir);
        for i in 0..n {
            t = t.file(&format!("{dir}/f{i:05}"), &noise(size, seed ^ (i as u64) << 20));
        }
        t
    }

    pub fn done(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// `len` bytes that compress badly (xorshift).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn config_json(layers: &[Vec<u8>]) -> Vec<u8> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
    json!({ "architecture": arch, "os": "linux", "config": {},
            "rootfs": { "type": "layers", "diff_ids": diff_ids } })
    .to_string()
    .into_bytes()
}

/// Writes files (name, bytes) as a tar at `path`.
pub fn write_tar(path: &Path, files: &[(String, Vec<u8>)]) -> PathBuf {
    let mut b = tar::Builder::new(std::io::BufWriter::new(std::fs::File::create(path).unwrap()));
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.into_inner().unwrap().flush().unwrap();
    path.to_path_buf()
}

/// A `docker save` tar of these images (tag, layers), at `path`.
pub fn docker_save(path: &Path, images: &[(&str, &[Vec<u8>])]) -> PathBuf {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut manifest = Vec::new();
    for (tag, layers) in images {
        let mut names = Vec::new();
        for l in *layers {
            let name = format!("{}/layer.tar", sha256(digest(l).as_bytes()));
            if !files.iter().any(|f| f.0 == name) {
                files.push((name.clone(), l.clone()));
            }
            names.push(name);
        }
        let config = config_json(layers);
        let config_name = format!("{}.json", sha256(&config));
        files.push((config_name.clone(), config));
        manifest.push(json!({ "Config": config_name, "RepoTags": [tag], "Layers": names }));
    }
    files.push(("manifest.json".into(), Value::Array(manifest).to_string().into_bytes()));
    write_tar(path, &files)
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// An OCI image layout directory at `dir` whose manifest lists `blobs`
/// (gzip) by digest and size; `layers` (the uncompressed tars) give the
/// diff ids.
pub fn oci_dir(dir: &Path, blobs: &[Vec<u8>], layers: &[Vec<u8>]) -> PathBuf {
    let put = |data: &[u8]| {
        let p = dir.join("blobs/sha256").join(sha256(data));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    let config = config_json(layers);
    put(&config);
    let descs: Vec<Value> = blobs
        .iter()
        .map(|b| {
            put(b);
            json!({ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest(b), "size": b.len() })
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": digest(&config), "size": config.len() },
        "layers": descs,
    })
    .to_string()
    .into_bytes();
    put(&manifest);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = json!({ "schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest(&manifest), "size": manifest.len() }] });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    dir.to_path_buf()
}

// ------------------------------------------------------------ comparing

/// Every entry under `root` (not `root` itself): path → type, mode,
/// owner, mtime, link count, contents' digest or link target or device,
/// and overlay xattrs (opaque markers).
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let t = m.file_type();
            let what = if t.is_dir() {
                stack.push(p.clone());
                "dir".to_owned()
            } else if t.is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else if t.is_char_device() {
                format!("char {}", m.rdev())
            } else if t.is_file() {
                format!("file {}", sha256(&std::fs::read(&p).unwrap()))
            } else {
                "other".to_owned()
            };
            let mtime = if t.is_dir() { 0 } else { m.mtime() };
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            out.insert(
                rel,
                format!(
                    "{what} mode {:o} {}:{} mtime {mtime} links {} {}",
                    m.mode() & 0o7777,
                    m.uid(),
                    m.gid(),
                    if t.is_dir() { 0 } else { m.nlink() },
                    overlay_xattrs(&p)
                ),
            );
        }
    }
    out
}

/// `name=value` of the `trusted.overlay.*` xattrs of `path`.
pub fn overlay_xattrs(path: &Path) -> String {
    let mut names = vec![0u8; 4096];
    let Ok(n) = rustix::fs::llistxattr(path, &mut names[..]) else {
        return String::new();
    };
    let mut out = Vec::new();
    for name in names[..n]
        .split(|b| *b == 0)
        .filter(|n| n.starts_with(b"trusted.overlay."))
    {
        let name = std::str::from_utf8(name).unwrap();
        let mut value = vec![0u8; 256];
        let len = rustix::fs::lgetxattr(path, name, &mut value[..]).unwrap();
        out.push(format!("{name}={}", String::from_utf8_lossy(&value[..len])));
    }
    out.sort();
    out.join(",")
}

/// The diff dir of every layer of the home, by id.
pub fn home_trees(home: &Home) -> BTreeMap<String, BTreeMap<String, String>> {
    home.layers()
        .into_iter()
        .map(|id| {
            let tree = snapshot(&home.diff(&id));
            (id, tree)
        })
        .collect()
}

pub fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with("fill"))
        .collect();
    v.sort();
    v
}

pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
