//! docker-save tars: reading what one holds, and the sample image.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;
use std::path::Path;

use serde_json::Value;
use sha2::Digest as _;

/// What a docker-save tar holds: the image's config digest, its diff ids,
/// the sha256 of each layer tar (in manifest order) and its tags.
#[derive(Debug, PartialEq, Eq)]
pub struct SavedImage {
    pub config_digest: String,
    pub diff_ids: Vec<String>,
    pub layer_digests: Vec<String>,
    pub repo_tags: Vec<String>,
}

pub fn sha256_hex(mut r: impl std::io::Read) -> String {
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    format!("{:x}", h.finalize())
}

impl SavedImage {
    #[track_caller]
    pub fn read(path: &Path) -> Self {
        let mut digests = BTreeMap::new();
        let mut jsons = BTreeMap::new();
        let mut ar = tar::Archive::new(fs::File::open(path).unwrap());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".json") {
                let mut s = Vec::new();
                e.read_to_end(&mut s).unwrap();
                jsons.insert(name, s);
            } else if name.ends_with("layer.tar") {
                digests.insert(name, sha256_hex(&mut e));
            }
        }
        let manifest: Value = serde_json::from_slice(&jsons["manifest.json"]).unwrap();
        let m = &manifest[0];
        let config_name = m["Config"].as_str().unwrap();
        let config_bytes = &jsons[config_name];
        let config: Value = serde_json::from_slice(config_bytes).unwrap();
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap_or_else(|| panic!("{}: not an array: {v}", path.display()))
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect()
        };
        Self {
            config_digest: sha256_hex(&config_bytes[..]),
            diff_ids: strings(&config["rootfs"]["diff_ids"]),
            layer_digests: strings(&m["Layers"])
                .iter()
                .map(|l| format!("sha256:{}", digests[l]))
                .collect(),
            repo_tags: m["RepoTags"]
                .as_array()
                .map(|_| strings(&m["RepoTags"]))
                .unwrap_or_default(),
        }
    }
}

/// The regular files of a tar stream: path -> content.
pub fn tar_files(raw: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut ar = tar::Archive::new(raw);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut content = Vec::new();
        if e.header().entry_type().is_file() {
            e.read_to_end(&mut content).unwrap();
        }
        files.insert(name, content);
    }
    files
}

/// One entry of a layer tar: `(path, uid, gid, mode, content)`; a path
/// ending in `/` is a directory.
pub type LayerEntry<'a> = (&'a str, u64, u64, u32, &'a [u8]);

/// A layer tar of `entries`, with the owners given (not the builder's).
pub fn layer_tar(entries: &[LayerEntry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for &(path, uid, gid, mode, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(if path.ends_with('/') {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Writes to `out` the docker-save image `base` with `layer` (a plain
/// tar) on top, tagged `tag` only.
pub fn image_with_layer(base: &Path, out: &Path, tag: &str, layer: &[u8]) {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut ar = tar::Archive::new(fs::File::open(base).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        files.insert(e.path().unwrap().to_string_lossy().into_owned(), data);
    }
    let mut manifest: Value = serde_json::from_slice(&files.remove("manifest.json").unwrap()).unwrap();
    files.remove("repositories");
    let old_config = manifest[0]["Config"].as_str().unwrap().to_owned();
    let mut config: Value = serde_json::from_slice(&files.remove(&old_config).unwrap()).unwrap();
    let digest = sha256_hex(layer);
    let layer_name = format!("{digest}/layer.tar");
    files.insert(layer_name.clone(), layer.to_vec());
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(Value::from(format!("sha256:{digest}")));
    config["history"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({ "created_by": "image_with_layer" }));
    let config = serde_json::to_vec(&config).unwrap();
    let config_name = format!("{}.json", sha256_hex(&config[..]));
    files.insert(config_name.clone(), config);
    let m = &mut manifest[0];
    m["Config"] = Value::from(config_name);
    m["Layers"].as_array_mut().unwrap().push(Value::from(layer_name));
    m["RepoTags"] = serde_json::json!([tag]);
    files.insert("manifest.json".into(), serde_json::to_vec(&manifest).unwrap());
    let mut b = tar::Builder::new(fs::File::create(out).unwrap());
    for (name, data) in &files {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.finish().unwrap();
}

/// Each entry of a tar stream: path -> (uid, gid).
pub fn tar_owners(raw: &[u8]) -> BTreeMap<String, (u64, u64)> {
    let mut ar = tar::Archive::new(raw);
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                (h.uid().unwrap(), h.gid().unwrap()),
            )
        })
        .collect()
}

/// The layer tars of a docker-save tar, in manifest order (bottom first).
pub fn saved_layers(path: &Path) -> Vec<Vec<u8>> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut ar = tar::Archive::new(fs::File::open(path).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        if name == "manifest.json" || name.ends_with("layer.tar") {
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            files.insert(name, data);
        }
    }
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| files[l.as_str().unwrap()].clone())
        .collect()
}
