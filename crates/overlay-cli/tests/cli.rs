//! The real `overlay2` binary on a real home: imports of the three image
//! formats (built here), mount, read, diff, changes, rm, check after a
//! simulated crash, and the error paths, with their exit statuses and
//! messages.
//!
//! Needs root and overlayfs (mounts); otherwise each test says why and
//! skips. Every home is cleaned up (`overlay2 cleanup`) by a drop guard, so
//! a failing test leaves nothing mounted.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

mod home;

use home::Home;

// ------------------------------------------------------- building images

fn sha256(data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(data);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256(data))
}

/// Docker's chain ids of `diff_ids` (hex only: the layer ids).
fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(p) => digest(format!("{p} {d}").as_bytes()),
        };
        out.push(next);
    }
    out.into_iter()
        .map(|c| c.trim_start_matches("sha256:").to_owned())
        .collect()
}

enum E {
    Dir(&'static str),
    File(&'static str, &'static [u8]),
    Exec(&'static str, &'static [u8]),
    Link(&'static str, &'static str),
    Hard(&'static str, &'static str),
    /// A name the tar crate would refuse to write (`../x`), set raw.
    Raw(&'static str, &'static [u8]),
}

fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            E::Dir(n) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, n, &[][..]).unwrap();
            }
            E::File(n, d) | E::Exec(n, d) => {
                h.set_mode(if matches!(e, E::Exec(..)) { 0o755 } else { 0o644 });
                h.set_size(d.len() as u64);
                b.append_data(&mut h, n, *d).unwrap();
            }
            E::Link(n, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, n, t).unwrap();
            }
            E::Hard(n, t) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_link(&mut h, n, t).unwrap();
            }
            E::Raw(n, d) => {
                h.set_mode(0o644);
                h.set_size(d.len() as u64);
                let name = &mut h.as_old_mut().name;
                name[..n.len()].copy_from_slice(n.as_bytes());
                h.set_cksum();
                b.append(&h, *d).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// The sample: a base, then a layer deleting a file (`.wh.`) and making a
/// directory opaque (`.wh..wh..opq`), then one with a hard link.
fn sample_layers() -> Vec<Vec<u8>> {
    vec![
        tar_of(&[
            E::Dir("etc"),
            E::File("etc/a.conf", b"one\n"),
            E::File("etc/gone", b"to be deleted\n"),
            E::Dir("data"),
            E::File("data/old1", b"old 1\n"),
            E::File("data/old2", b"old 2\n"),
            E::Dir("bin"),
            E::Exec("bin/tool", b"#!/bin/sh\necho tool\n"),
            E::Link("conf", "etc/a.conf"),
        ]),
        tar_of(&[
            E::Dir("etc"),
            E::File("etc/a.conf", b"two\n"),
            E::File("etc/.wh.gone", b""),
            E::Dir("data"),
            E::File("data/.wh..wh..opq", b""),
            E::File("data/new", b"new\n"),
        ]),
        tar_of(&[
            E::Dir("srv"),
            E::File("srv/page", b"page\n"),
            E::Hard("srv/same", "srv/page"),
        ]),
    ]
}

fn diff_ids(layers: &[Vec<u8>]) -> Vec<String> {
    layers.iter().map(|l| digest(l)).collect()
}

fn config_json(diff_ids: &[String]) -> Vec<u8> {
    json!({
        "architecture": host_arch(),
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    })
    .to_string()
    .into_bytes()
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

/// Files of an image, by name, written as a tar or a directory.
#[derive(Default, Clone)]
struct Files(Vec<(String, Vec<u8>)>);

impl Files {
    fn add(&mut self, name: impl Into<String>, data: impl Into<Vec<u8>>) {
        self.0.push((name.into(), data.into()));
    }

    fn set(&mut self, name: &str, data: impl Into<Vec<u8>>) {
        let data = data.into();
        for f in &mut self.0 {
            if f.0 == name {
                f.1 = data.clone();
            }
        }
    }

    fn get(&self, name: &str) -> Vec<u8> {
        self.0.iter().find(|f| f.0 == name).unwrap().1.clone()
    }

    fn write_tar(&self, path: &Path) -> PathBuf {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in &self.0 {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        std::fs::write(path, b.into_inner().unwrap()).unwrap();
        path.to_path_buf()
    }

    fn write_dir(&self, path: &Path) -> PathBuf {
        for (name, data) in &self.0 {
            let p = path.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        path.to_path_buf()
    }
}

/// A `docker save` image of `layers` (uncompressed, as Docker writes them).
fn docker_save(layers: &[Vec<u8>]) -> Files {
    let ids = diff_ids(layers);
    let config = config_json(&ids);
    let config_name = format!("{}.json", sha256(&config));
    let mut files = Files::default();
    let mut names = Vec::new();
    for (l, id) in layers.iter().zip(&ids) {
        let name = format!("{}/layer.tar", sha256(id.as_bytes()));
        files.add(name.clone(), l.clone());
        names.push(name);
    }
    files.add(config_name.clone(), config);
    files.add(
        "manifest.json",
        json!([{ "Config": config_name, "RepoTags": ["t:1"], "Layers": names }]).to_string(),
    );
    files
}

#[derive(Clone, Copy)]
enum Comp {
    None,
    Gzip,
    Zstd,
}

/// A layer blob as compressed for an OCI image, with its media type.
fn oci_blob(layer: &[u8], comp: Comp) -> (Vec<u8>, &'static str) {
    match comp {
        Comp::None => (layer.to_vec(), "application/vnd.oci.image.layer.v1.tar"),
        Comp::Gzip => (gzip(layer), "application/vnd.oci.image.layer.v1.tar+gzip"),
        Comp::Zstd => (zstd(layer), "application/vnd.oci.image.layer.v1.tar+zstd"),
    }
}

/// An OCI image layout of `layers`, each compressed as `comp` says.
fn oci(layers: &[Vec<u8>], comp: Comp) -> Files {
    let blobs: Vec<_> = layers.iter().map(|l| oci_blob(l, comp)).collect();
    oci_from(&blobs, &diff_ids(layers), None)
}

/// An OCI image layout of these blobs and diff ids, the manifest listing
/// each blob by its own digest and size; `platform` in the index if given.
fn oci_from(blobs: &[(Vec<u8>, &'static str)], diff_ids: &[String], platform: Option<Value>) -> Files {
    let config = config_json(diff_ids);
    let mut files = Files::default();
    files.add("oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#);
    let mut descs = Vec::new();
    for (blob, media) in blobs {
        descs.push(json!({ "mediaType": media, "digest": digest(blob), "size": blob.len() }));
        files.add(format!("blobs/sha256/{}", sha256(blob)), blob.clone());
    }
    files.add(format!("blobs/sha256/{}", sha256(&config)), config.clone());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config), "size": config.len() },
        "layers": descs,
    })
    .to_string()
    .into_bytes();
    files.add(format!("blobs/sha256/{}", sha256(&manifest)), manifest.clone());
    let mut entry = json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest(&manifest),
        "size": manifest.len(),
        "annotations": { "org.opencontainers.image.ref.name": "latest" },
    });
    if let Some(p) = platform {
        entry["platform"] = p;
    }
    files.add(
        "index.json",
        json!({ "schemaVersion": 2, "manifests": [entry] }).to_string(),
    );
    files
}

fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    (dir, p)
}

/// Checks the merged tree of the sample's top layer, mounted at `root`.
#[track_caller]
fn assert_sample_tree(root: &Path) {
    assert_eq!(std::fs::read_to_string(root.join("etc/a.conf")).unwrap(), "two\n");
    assert!(!root.join("etc/gone").exists(), "the whiteout hides etc/gone");
    let mut data: Vec<String> = std::fs::read_dir(root.join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    data.sort();
    assert_eq!(data, ["new"], "the opaque dir hides layer 1's files");
    assert_eq!(std::fs::read_link(root.join("conf")).unwrap(), Path::new("etc/a.conf"));
    assert_eq!(
        std::fs::read_to_string(root.join("bin/tool")).unwrap(),
        "#!/bin/sh\necho tool\n"
    );
    assert_eq!(std::fs::read_to_string(root.join("srv/same")).unwrap(), "page\n");
}

/// Import, mount, read, umount, and a second import that skips.
fn import_and_read(home: &Home, image: &Path) {
    let layers = sample_layers();
    let ids = chain_ids(&diff_ids(&layers));
    let top = ids.last().unwrap().clone();

    let r = home.run(&["import", image.to_str().unwrap()]).ok();
    assert_eq!(r.line(), top);
    assert_eq!(r.stderr, "", "no progress bar when stderr is not a terminal");
    let mut got = home.layers();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want);

    let ls = home.run(&["--json", "ls"]).ok().json();
    let top_row = ls["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == json!(top))
        .unwrap()
        .clone();
    assert_eq!(top_row["parent"], json!(ids[1]));
    assert_eq!(top_row["mounted"], json!(false));
    assert_eq!(top_row["size"], json!(5), "srv/page and its hard link count once");

    let path = home.run(&["mount", &top]).ok().line();
    assert_sample_tree(Path::new(&path));
    let ls = home.run(&["--json", "ls"]).ok().json();
    assert!(
        ls["layers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["id"] == json!(top) && l["mounted"] == json!(true))
    );
    home.run(&["umount", &top]).ok();
    assert!(!Path::new(&path).join("etc").exists());
    home.run(&["umount", &top])
        .fails(1, &format!("layer \"{top}\" is not mounted"));

    let again = home.run(&["--json", "import", image.to_str().unwrap()]).ok().json();
    assert_eq!(again["top"], json!(top));
    for l in again["images"][0]["layers"].as_array().unwrap() {
        assert_eq!(l["created"], json!(false), "a second import skips present layers");
    }
    home.assert_clean();
}

// ------------------------------------------------------------------ tests

#[test]
fn import_docker_save_tar_then_diff_changes_rm() {
    let Some(home) = Home::new("import_docker_save_tar_then_diff_changes_rm") else {
        return;
    };
    let (_d, tar) = scratch("image.tar");
    docker_save(&sample_layers()).write_tar(&tar);
    import_and_read(&home, &tar);

    let ids = chain_ids(&diff_ids(&sample_layers()));
    let (base, mid, top) = (&ids[0], &ids[1], &ids[2]);

    // changes: Docker v20.10's answer (the naive diff), one per line:
    // parents of changes are changed too, and /etc/a.conf ("one" became
    // "two": same size, same mtime in both tars) is not listed, because
    // Docker compares metadata, not contents.
    let changes = home.run(&["changes", mid]).ok().stdout;
    let lines: Vec<&str> = changes.lines().collect();
    assert_eq!(
        lines,
        [
            "C /data",
            "A /data/new",
            "D /data/old1",
            "D /data/old2",
            "C /etc",
            "D /etc/gone"
        ]
    );
    let cj = home.run(&["--json", "changes", mid]).ok().json();
    assert!(
        cj["changes"]
            .as_array()
            .unwrap()
            .contains(&json!({ "kind": "D", "path": "/etc/gone" }))
    );
    assert_eq!(cj["parent"], json!(base));

    // diff: the layer as a tar, whiteouts in OCI form.
    let (_o, out) = scratch("mid.tar");
    let dj = home
        .run(&["--json", "diff", mid, "-o", out.to_str().unwrap()])
        .ok()
        .json();
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(dj["bytes"], json!(bytes.len()));
    let mut names: Vec<String> = tar::Archive::new(&bytes[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    for want in ["data/.wh..wh..opq", "data/new", "etc/.wh.gone", "etc/a.conf"] {
        assert!(
            names.iter().any(|n| n.trim_end_matches('/') == want),
            "{want} in {names:?}"
        );
    }
    // To stdout, the same bytes.
    let out2 = home.cmd(&["diff", mid]).output().unwrap();
    assert!(out2.status.success());
    assert_eq!(out2.stdout, bytes);

    // diff-size: the bytes of the changed files.
    let size = home.run(&["diff-size", top]).ok().line();
    assert_eq!(size, "5");
    assert_eq!(home.run(&["--json", "diff-size", top]).ok().json()["size"], json!(5));

    // The diff applied to a fresh layer gives the same changes.
    home.run(&["create", "copy", "--parent", base]).ok();
    let applied = home.run(&["apply", "copy", out.to_str().unwrap()]).ok().line();
    assert!(applied.parse::<u64>().unwrap() > 0);
    let copy_changes = home.run(&["changes", "copy"]).ok().stdout;
    assert_eq!(copy_changes, changes);

    // rm: refused while layers stack on it; top first works.
    home.run(&["rm", base]).fails(1, "remove them first");
    home.run(&["rm", "copy"]).ok();
    home.run(&["rm", top]).ok();
    assert_eq!(home.run(&["exists", top]).code, 1);
    assert_eq!(home.run(&["exists", mid]).code, 0);
    assert_eq!(
        home.run(&["--json", "exists", top]).json(),
        json!({ "id": top, "exists": false })
    );
    home.run(&["rm", mid]).ok();
    home.run(&["rm", base]).ok();
    assert_eq!(home.layers(), Vec::<String>::new());
    home.assert_clean();
}

#[test]
fn import_oci_layout_directory_gzip() {
    let Some(home) = Home::new("import_oci_layout_directory_gzip") else {
        return;
    };
    let (_d, dir) = scratch("layout");
    oci(&sample_layers(), Comp::Gzip).write_dir(&dir);
    import_and_read(&home, &dir);
    let j = home.run(&["--json", "import", dir.to_str().unwrap()]).ok().json();
    assert_eq!(j["format"], json!("oci-layout"));
    // An unpacked `docker save` directory of the same layers: all present.
    let (_s, saved) = scratch("saved");
    let j = home
        .run(&[
            "--json",
            "import",
            docker_save(&sample_layers()).write_dir(&saved).to_str().unwrap(),
        ])
        .ok()
        .json();
    assert_eq!(j["format"], json!("docker-save"));
    assert!(
        j["images"][0]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["created"] == json!(false))
    );
}

#[test]
fn import_oci_archive_mixed_compression_and_compressed_image_tar() {
    let Some(home) = Home::new("import_oci_archive_mixed_compression_and_compressed_image_tar") else {
        return;
    };
    // One layer of each compression, told apart by their bytes.
    let layers = sample_layers();
    let blobs: Vec<_> = layers
        .iter()
        .zip([Comp::Zstd, Comp::None, Comp::Gzip])
        .map(|(l, c)| oci_blob(l, c))
        .collect();
    let (_d, tar) = scratch("oci.tar");
    oci_from(&blobs, &diff_ids(&layers), None).write_tar(&tar);
    let j = home.run(&["--json", "import", tar.to_str().unwrap()]).ok().json();
    assert_eq!(j["format"], json!("oci-archive"));
    let got: Vec<(&str, bool)> = j["images"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["compression"].as_str().unwrap(), l["created"].as_bool().unwrap()))
        .collect();
    assert_eq!(got, [("zstd", true), ("none", true), ("gzip", true)]);
    home.run(&["rm", j["top"].as_str().unwrap()]).ok();
    // `docker save | gzip` is accepted too; the removed layer comes back.
    let (_g, gz) = scratch("image.tar.gz");
    let (_t, plain) = scratch("image.tar");
    docker_save(&sample_layers()).write_tar(&plain);
    std::fs::write(&gz, gzip(&std::fs::read(&plain).unwrap())).unwrap();
    let j = home.run(&["--json", "import", gz.to_str().unwrap()]).ok().json();
    assert_eq!(j["format"], json!("docker-save"));
    let created: Vec<bool> = j["images"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["created"].as_bool().unwrap())
        .collect();
    assert_eq!(created, [false, false, true]);
    let path = home.run(&["mount", j["top"].as_str().unwrap()]).ok().line();
    assert_sample_tree(Path::new(&path));
    home.run(&["--json", "cleanup"]).ok();
    assert!(!Path::new(&path).join("etc").exists());
    home.assert_clean();
}

#[test]
fn docker_save_old_and_new_layouts() {
    // Old `docker save` writes a repeated layer once and links the others.
    let Some(home) = Home::new("docker_save_old_and_new_layouts") else {
        return;
    };
    let empty = tar_of(&[]);
    let layers = vec![sample_layers()[0].clone(), empty.clone(), empty];
    let ids = diff_ids(&layers);
    let config = config_json(&ids);
    let config_name = format!("{}.json", sha256(&config));
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("l0/layer.tar", &layers[0]);
    add("l1/layer.tar", &layers[1]);
    add(&config_name, &config);
    let manifest = json!([{ "Config": config_name, "Layers": ["l0/layer.tar", "l1/layer.tar", "l2/layer.tar"] }]);
    add("manifest.json", manifest.to_string().as_bytes());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "l2/layer.tar", "../l1/layer.tar").unwrap();
    let (_d, path) = scratch("image.tar");
    std::fs::write(&path, b.into_inner().unwrap()).unwrap();
    let top = home.run(&["import", path.to_str().unwrap()]).ok().line();
    assert_eq!(top, *chain_ids(&ids).last().unwrap());
    assert_eq!(home.layers().len(), 3);
    home.assert_clean();

    // Docker 25+: blobs named by digest (checked), beside an OCI index;
    // manifest.json is what `docker load` reads, so it is what counts.
    let layers = sample_layers();
    let ids = diff_ids(&layers);
    let mut files = oci(&layers, Comp::None);
    let config = format!("blobs/sha256/{}", sha256(&config_json(&ids)));
    let names: Vec<String> = ids
        .iter()
        .map(|d| format!("blobs/sha256/{}", d.trim_start_matches("sha256:")))
        .collect();
    files.add(
        "manifest.json",
        json!([{ "Config": config, "RepoTags": ["new:1"], "Layers": names }]).to_string(),
    );
    let (_n, new) = scratch("new.tar");
    let j = home
        .run(&["--json", "import", files.write_tar(&new).to_str().unwrap()])
        .ok()
        .json();
    assert_eq!(j["format"], json!("docker-save"));
    assert_eq!(j["images"][0]["name"], json!("new:1"));
    assert_eq!(j["top"], json!(chain_ids(&ids)[2]));
    // A tampered blob of that layout is caught by its name's digest.
    let mut bad = files.clone();
    let tampered = tar_of(&[E::File("x", b"x")]);
    bad.set(&names[0], tampered.clone());
    let (_b, bad_path) = scratch("bad.tar");
    let other = Home::new("docker_save_old_and_new_layouts (second home)").unwrap();
    let r = other.run(&["import", bad.write_tar(&bad_path).to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!(
            "the manifest says {}, the file is {}",
            ids[0],
            digest(&tampered)
        )),
        "{}",
        r.stderr
    );
    other.assert_clean();
    assert_eq!(other.layers(), Vec::<String>::new());
}

/// A broken image: exit 1, a message naming the file, and a home exactly as
/// before (`before` layers still there, nothing else).
#[track_caller]
fn assert_refused(home: &Home, image: &Path, needles: &[&str], before: &[String]) {
    let r = home.run(&["import", image.to_str().unwrap()]);
    eprintln!("refused as it should be: {}", r.stderr.trim());
    assert_eq!(r.code, 1, "stderr: {}", r.stderr);
    for n in needles {
        assert!(r.stderr.contains(n), "stderr should contain {n:?}: {}", r.stderr);
    }
    let mut got = home.layers();
    got.sort();
    let mut want = before.to_vec();
    want.sort();
    assert_eq!(got, want, "the home is as before");
    home.assert_clean();
}

#[test]
fn broken_and_hostile_images_change_nothing() {
    let Some(home) = Home::new("broken_and_hostile_images_change_nothing") else {
        return;
    };
    let layers = sample_layers();
    let ids = diff_ids(&layers);
    let chains = chain_ids(&ids);
    let (_d, work) = scratch("w");
    std::fs::create_dir_all(&work).unwrap();

    // Layer 1 already present (from a good one-layer image): it must stay.
    let base_img = docker_save(&layers[..1]).write_tar(&work.join("base.tar"));
    home.run(&["import", base_img.to_str().unwrap()]).ok();
    let before = vec![chains[0].clone()];
    let committed = home.path.join(&chains[0]).join("committed");
    assert!(!committed.exists());

    // 1. A blob that does not match its manifest digest (OCI).
    let mut f = oci(&layers, Comp::Gzip);
    let blob2 = format!("blobs/sha256/{}", sha256(&gzip(&layers[1])));
    let mut bad = gzip(&layers[1]);
    let n = bad.len();
    bad[n - 9] ^= 1; // the CRC: still decodes up to it
    f.set(&blob2, bad.clone());
    let dir = f.write_dir(&work.join("bad-digest"));
    assert_refused(
        &home,
        &dir,
        &[&blob2, &digest(&gzip(&layers[1])), &digest(&bad)],
        &before,
    );

    // 2. An uncompressed tar that does not match its diff id (docker save):
    // layer 2 is applied, then found wrong and removed again.
    let mut f = docker_save(&layers);
    let l2 = format!("{}/layer.tar", sha256(ids[1].as_bytes()));
    let other = tar_of(&[E::File("etc/a.conf", b"evil\n")]);
    f.set(&l2, other.clone());
    let tar = f.write_tar(&work.join("bad-diffid.tar"));
    assert_refused(&home, &tar, &[&l2, "diff id", &ids[1], &digest(&other)], &before);
    assert!(
        !committed.exists(),
        "the layer that was there is as it was: not committed by a child that went"
    );

    // 3. A hostile layer (`../escape`), with a matching diff id.
    let hostile = tar_of(&[E::Dir("etc"), E::Raw("../escape", b"boom\n")]);
    let tar = docker_save(&[layers[0].clone(), hostile]).write_tar(&work.join("hostile.tar"));
    assert_refused(&home, &tar, &["layer.tar"], &before);
    assert!(!home.path.join("escape").exists() && !home.path.parent().unwrap().join("escape").exists());

    // 4. A truncated gzip blob whose digest and size match what is there.
    let mut blobs: Vec<_> = layers.iter().map(|l| oci_blob(l, Comp::Gzip)).collect();
    blobs[2].0.truncate(20);
    let cut = format!("blobs/sha256/{}", sha256(&blobs[2].0));
    let dir = oci_from(&blobs, &ids, None).write_dir(&work.join("truncated"));
    assert_refused(&home, &dir, &[&cut], &before);

    // 5. Metadata problems, refused before anything is created.
    let mut f = docker_save(&layers);
    f.set(
        "manifest.json",
        json!([{ "Config": "x.json", "Layers": ["../../etc/passwd"] }]).to_string(),
    );
    f.add("x.json", config_json(&ids[1..2])); // not in the home: it must be read
    let tar = f.write_tar(&work.join("escape-name.tar"));
    assert_refused(
        &home,
        &tar,
        &["escape-name.tar: layer 1 of 1: the image has no file \"../../etc/passwd\""],
        &before,
    );

    // A config whose name states its digest must match it.
    let mut f = docker_save(&layers);
    let cfg =
        f.0.iter()
            .find(|(n, _)| n.ends_with(".json") && n != "manifest.json")
            .unwrap()
            .0
            .clone();
    f.set(&cfg, config_json(&ids[..2]));
    let tar = f.write_tar(&work.join("config-digest.tar"));
    assert_refused(&home, &tar, &[&cfg, "does not match its digest"], &before);

    // As many diff ids as layers.
    let mut f = docker_save(&layers);
    let names: Vec<String> =
        f.0.iter()
            .filter(|(n, _)| n.ends_with("layer.tar"))
            .map(|(n, _)| n.clone())
            .collect();
    f.set(
        "manifest.json",
        json!([{ "Config": "config.json", "Layers": names }]).to_string(),
    );
    f.add("config.json", config_json(&ids[..2]));
    let tar = f.write_tar(&work.join("count.tar"));
    assert_refused(
        &home,
        &tar,
        &["the manifest lists 3 layers but config.json lists 2 diff ids"],
        &before,
    );

    let mut f = oci(&layers, Comp::Gzip);
    let mut idx2: Value = serde_json::from_slice(&f.get("index.json")).unwrap();
    idx2["manifests"][0]["digest"] = json!("sha256:../../../etc/passwd");
    f.set("index.json", idx2.to_string());
    let dir = f.write_dir(&work.join("bad-ref"));
    assert_refused(&home, &dir, &["is not a digest"], &before);

    let blobs: Vec<_> = layers.iter().map(|l| oci_blob(l, Comp::Gzip)).collect();
    let f = oci_from(&blobs, &ids, Some(json!({ "os": "linux", "architecture": "mips64" })));
    let dir = f.write_dir(&work.join("platform"));
    assert_refused(&home, &dir, &["no image for linux/", "linux/mips64"], &before);

    let junk = work.join("junk.bin");
    std::fs::write(&junk, vec![7u8; 5000]).unwrap();
    assert_refused(&home, &junk, &["junk.bin"], &before);
    assert_refused(
        &home,
        &work.join("missing.tar"),
        &["cannot open image", "missing.tar"],
        &before,
    );
    assert_refused(&home, &work, &["is not an image"], &before);

    let j = home.run(&["--json", "import", junk.to_str().unwrap()]);
    assert_eq!(j.code, 1);
    assert!(j.json()["error"].as_str().unwrap().contains("junk.bin"));
    assert_eq!(j.json()["exit_code"], json!(1));
}

#[test]
fn check_after_a_crash_during_apply() {
    let Some(home) = Home::new("check_after_a_crash_during_apply") else {
        return;
    };
    home.run(&["create", "base"]).ok();
    home.run(&["create", "child", "--parent", "base"]).ok();
    // `apply` reads a tar from a pipe; it gets half a big file and is
    // killed while waiting for the rest.
    let mut child = home
        .cmd(&["apply", "child"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_path("big").unwrap();
    h.set_size(64 << 20);
    h.set_mode(0o644);
    h.set_cksum();
    stdin.write_all(h.as_bytes()).unwrap();
    stdin.write_all(&vec![1u8; 1 << 20]).unwrap();
    let layer_dir = home.path.join("child");
    let started = std::time::Instant::now();
    while !std::fs::read_dir(&layer_dir)
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().starts_with(".tmp-"))
    {
        assert!(started.elapsed().as_secs() < 30, "apply never started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);

    let c = home.run(&["--json", "check"]);
    assert_eq!(c.code, 1, "check finds the leftover: {}", c.stdout);
    let j = c.json();
    assert_eq!(j["clean"], json!(false));
    assert!(
        j["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == json!("StagingLeftover")),
        "{j}"
    );
    let text = home.run(&["check"]);
    assert_eq!(text.code, 1);
    assert!(text.stdout.contains("check --repair"));

    let r = home.run(&["--json", "check", "--repair"]).ok().json();
    assert!(!r["repaired"].as_array().unwrap().is_empty());
    assert_eq!(r["clean"], json!(true));
    home.assert_clean();
    // The layer is as it was before the apply: empty, and usable.
    assert_eq!(home.run(&["diff-size", "child"]).ok().line(), "0");
    let applied = home
        .run_with_stdin(&["apply", "child", "-"], &gzip(&sample_layers()[0]))
        .ok();
    assert!(applied.line().parse::<u64>().unwrap() > 0);
    let path = home.run(&["mount", "child"]).ok().line();
    assert_eq!(
        std::fs::read_to_string(Path::new(&path).join("etc/a.conf")).unwrap(),
        "one\n"
    );
    home.run(&["umount", "child"]).ok();

    // Other crash remains: a merged dir with nothing on it, a dangling link.
    std::fs::create_dir(home.path.join("child/merged")).unwrap();
    std::os::unix::fs::symlink("../gone/diff", home.path.join("l/AAAAAAAAAAAAAAAAAAAAAAAAAA")).unwrap();
    let c = home.run(&["--json", "check"]);
    assert_eq!(c.code, 1);
    let kinds: Vec<String> = c.json()["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        kinds.contains(&"MergedWithoutMount".to_owned()) && kinds.contains(&"DanglingLink".to_owned()),
        "{kinds:?}"
    );
    home.run(&["check", "--repair"]).ok();
    home.assert_clean();
}

#[test]
fn check_and_import_after_an_interrupted_import() {
    let Some(home) = Home::new("check_and_import_after_an_interrupted_import") else {
        return;
    };
    let layers = sample_layers();
    let chains = chain_ids(&diff_ids(&layers));
    let (_d, tar) = scratch("image.tar");
    docker_save(&layers).write_tar(&tar);
    let (_d1, base) = scratch("base.tar");
    docker_save(&layers[..1]).write_tar(&base);

    // What an import killed between `create` and the end of `apply_diff`
    // leaves: the next layer created (empty) and its marker.
    home.run(&["import", base.to_str().unwrap()]).ok();
    home.run(&["create", &chains[1], "--parent", &chains[0]]).ok();
    std::fs::write(home.path.join(format!(".overlay2-import-{}", chains[1])), "image.tar\n").unwrap();

    let c = home.run(&["--json", "check"]);
    assert_eq!(c.code, 1);
    assert!(
        c.json()["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == json!("InterruptedImport"))
    );

    // A new import does not take the empty layer as done: it rebuilds it.
    let r = home.run(&["import", tar.to_str().unwrap()]).ok();
    assert!(r.stderr.contains("rebuilding layer"), "{}", r.stderr);
    let path = home.run(&["mount", &chains[2]]).ok().line();
    assert_sample_tree(Path::new(&path));
    home.run(&["umount", &chains[2]]).ok();
    home.assert_clean();

    // `check --repair` removes such a layer with what stacks on it.
    std::fs::write(home.path.join(format!(".overlay2-import-{}", chains[1])), "image.tar\n").unwrap();
    let r = home.run(&["--json", "check", "--repair"]).ok().json();
    assert_eq!(r["repaired"][0]["kind"], json!("InterruptedImport"));
    assert_eq!(home.layers(), vec![chains[0].clone()]);
    home.assert_clean();
    // And with layers stacked on an incomplete one, import refuses and says how.
    home.run(&["import", tar.to_str().unwrap()]).ok();
    std::fs::write(home.path.join(format!(".overlay2-import-{}", chains[1])), "x\n").unwrap();
    home.run(&["import", tar.to_str().unwrap()]).fails(1, "check --repair");
    home.run(&["check", "--repair"]).ok();
    home.assert_clean();
}

#[test]
fn layer_commands_and_their_errors() {
    let Some(home) = Home::new("layer_commands_and_their_errors") else {
        return;
    };
    // create / exists / metadata / mount / umount, text and JSON.
    assert_eq!(home.run(&["create", "base"]).ok().line(), "base");
    assert_eq!(
        home.run(&["--json", "create", "rw", "--parent", "base", "--rw"])
            .ok()
            .json(),
        json!({ "id": "rw", "parent": "base", "rw": true })
    );
    home.run(&["exists", "rw"]).ok();
    let m = home.run(&["--json", "metadata", "rw"]).ok().json();
    assert!(m["LowerDir"].as_str().unwrap().ends_with("/base/diff"));
    assert!(m["MergedDir"].as_str().unwrap().ends_with("/rw/merged"));
    let mt = home.run(&["metadata", "rw"]).ok().stdout;
    assert!(mt.contains("UpperDir: "));
    let mounted = home.run(&["--json", "mount", "rw"]).ok().json();
    let path = PathBuf::from(mounted["path"].as_str().unwrap());
    std::fs::write(path.join("hello"), "hi").unwrap();
    assert_eq!(home.run(&["changes", "rw"]).ok().stdout, "A /hello\n");
    assert_eq!(
        home.run(&["--json", "umount", "rw"]).ok().json(),
        json!({ "id": "rw", "unmounted": true })
    );
    // A base layer is not mounted: its own dir is the tree.
    let base_path = home.run(&["mount", "base"]).ok().line();
    assert!(base_path.ends_with("/base/diff"));
    home.run(&["umount", "base"]).ok();

    let s = home.run(&["--json", "status"]).ok().json();
    assert_eq!(s["driver"], json!("overlay2"));
    assert_eq!(s["layers"], json!(2));
    assert!(s["status"]["Backing Filesystem"].is_string());

    // Errors a person understands, exit 1.
    home.run(&["create", "base"]).fails(1, "layer \"base\" already exists");
    home.run(&["create", "x", "--parent", "nope"])
        .fails(1, "layer \"nope\" does not exist");
    home.run(&["create", "a/b"]).fails(1, "invalid layer id \"a/b\"");
    home.run(&["create", ".tmp-x"]).fails(1, "invalid layer id \".tmp-x\"");
    home.run(&["create", "x", "--rw", "--size", "1G"]).fails(1, "");
    assert_eq!(home.run(&["exists", "x"]).code, 1, "the refused create made nothing");
    home.run(&["rm", "nope"]).fails(1, "layer \"nope\" does not exist");
    home.run(&["rm", "base"])
        .fails(1, "layer \"base\" has layers stacked on it (\"rw\")");
    home.run(&["mount", "nope"]).fails(1, "layer \"nope\" does not exist");
    home.run(&["umount", "nope"]).fails(1, "layer \"nope\" does not exist");
    home.run(&["umount", "rw"]).fails(1, "layer \"rw\" is not mounted");
    home.run(&["metadata", "nope"])
        .fails(1, "layer \"nope\" does not exist");
    home.run(&["changes", "nope"]).fails(1, "layer \"nope\" does not exist");
    home.run(&["changes", "rw", "--parent", "nope"])
        .fails(1, "layer \"nope\" does not exist");
    home.run(&["diff-size", "nope"])
        .fails(1, "layer \"nope\" does not exist");
    home.run(&["diff", "nope", "-o", "/dev/null"])
        .fails(1, "layer \"nope\" does not exist");
    home.run(&["apply", "nope", "/dev/null"])
        .fails(1, "layer \"nope\" does not exist");
    let exists = home.run(&["exists", "nope"]);
    assert_eq!(
        (exists.code, exists.stdout.as_str(), exists.stderr.as_str()),
        (1, "", "")
    );

    // apply: missing file, unsupported compression, hostile tar.
    home.run(&["create", "target", "--parent", "base"]).ok();
    let (_d, dir) = scratch("f");
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.tar");
    home.run(&["apply", "target", missing.to_str().unwrap()])
        .fails(1, "cannot open");
    let xz = dir.join("layer.tar.xz");
    std::fs::write(&xz, [0xfd, b'7', b'z', b'X', b'Z', 0, 0, 0]).unwrap();
    home.run(&["apply", "target", xz.to_str().unwrap()])
        .fails(1, "xz-compressed");
    let hostile = dir.join("hostile.tar");
    std::fs::write(&hostile, tar_of(&[E::Raw("../../escape", b"x")])).unwrap();
    home.run(&["apply", "target", hostile.to_str().unwrap()])
        .fails(1, "hostile.tar");
    assert_eq!(
        home.run(&["diff-size", "target"]).ok().line(),
        "0",
        "a refused apply changes nothing"
    );
    let aj = home
        .run_with_stdin(&["--json", "apply", "target"], &zstd(&sample_layers()[2]))
        .ok()
        .json();
    assert_eq!(aj["compression"], json!("zstd"));
    assert_eq!(aj["parent"], json!("base"));
    assert_eq!(aj["bytes"], json!(5));

    // Bad usage: exit 2.
    home.run(&["bogus"]).fails(2, "unrecognized subcommand");
    home.run(&["create"]).fails(2, "required");
    home.run(&["create", "x", "--size", "1G"]).fails(2, "--rw");
    home.run(&["create", "x", "--rw", "--size", "lots"]).fails(2, "lots");
    home.run(&["--json", "diff", "rw"]).fails(2, "-o FILE");
    let j = home.run(&["--json", "frobnicate"]);
    assert_eq!(j.code, 2);
    assert_eq!(j.json()["exit_code"], json!(2));
    assert!(home.run(&["--help"]).ok().stdout.contains("import"));

    // The home from the environment.
    let env = Command::new(env!("CARGO_BIN_EXE_overlay2"))
        .arg("exists")
        .arg("base")
        .env("OVERLAY2_HOME", &home.path)
        .status()
        .unwrap();
    assert!(env.success());

    home.run(&["mount", "rw"]).ok();
    let cj = home.run(&["--json", "cleanup"]).ok().json();
    assert_eq!(cj, json!({ "unmounted": ["rw"], "deleted_from_quarantine": [] }));
    assert_eq!(home.run(&["cleanup"]).ok().stdout, "");
    home.assert_clean();
}

#[test]
fn demo_runs() {
    let Some(home) = Home::new("demo_runs") else { return };
    let r = home.run(&["demo"]).ok();
    assert!(r.stdout.contains("ONLY-THIS-ONE"), "{}", r.stdout);
    assert!(r.stdout.contains("D /etc/issue"), "{}", r.stdout);
    let j = home.run(&["--json", "demo"]).ok().json();
    let tree: Vec<&str> = j["tree"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        tree.contains(&"/usr/local/bin/hi") && !tree.contains(&"/etc/issue"),
        "{tree:?}"
    );
    assert_eq!(home.layers().len(), 3);
    home.assert_clean();
}
