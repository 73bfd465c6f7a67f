//! What the docker-adopt test reads of a data root and asks dockerd.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::Value;

use super::Rig;
use super::image::tar_files;
use crate::common::{self, BIN, Out};

impl Rig {
    /// `overlay2 --json docker-adopt --data-root DIR --name NAME [--back]`,
    /// in the namespace (where the layer mounts it looks for are).
    pub fn adopt(&self, data_root: &Path, back: bool) -> Out {
        let mut c = self.nsh.nsenter(BIN);
        c.args(["--json", "docker-adopt", "--data-root"])
            .arg(data_root)
            .args(["--name", &self.name]);
        if back {
            c.arg("--back");
        }
        let out = common::run(&mut c);
        eprintln!(
            "[{}] `{}`: {} in {:?}: {}{}",
            self.test,
            out.what,
            out.status,
            out.took,
            out.stdout.trim(),
            out.stderr.trim()
        );
        out
    }

    /// `docker images`: `REPO:TAG ID` lines, sorted.
    pub fn images(&self) -> Vec<String> {
        let out = self.docker_ok(&["images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
        let mut v: Vec<String> = out.stdout.lines().map(str::to_owned).collect();
        v.sort();
        v
    }

    /// `docker ps -a`: `NAME ID STATE` lines, sorted.
    pub fn containers(&self) -> Vec<String> {
        let out = self.docker_ok(&["ps", "-a", "--no-trunc", "--format", "{{.Names}} {{.ID}} {{.State}}"]);
        let mut v: Vec<String> = out.stdout.lines().map(str::to_owned).collect();
        v.sort();
        v
    }

    /// The content of `path` in container `c` (`docker cp C:PATH -`).
    #[track_caller]
    pub fn cat(&self, c: &str, path: &str) -> String {
        let out = self.docker_ok(&["cp", &format!("{c}:{path}"), "-"]);
        let name = Path::new(path).file_name().unwrap().to_string_lossy().into_owned();
        let files = tar_files(&out.raw);
        String::from_utf8_lossy(
            files
                .get(&name)
                .unwrap_or_else(|| panic!("docker cp {c}:{path}: {:?}", files.keys())),
        )
        .into_owned()
    }
}

/// `(device, inode)` of each layer's `diff` dir in `home`, by layer id:
/// equal after a rename of `home`, not after a copy.
#[track_caller]
pub fn diff_inodes(home: &Path) -> BTreeMap<String, (u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    fs::read_dir(home)
        .unwrap_or_else(|e| panic!("{}: {e}", home.display()))
        .map(Result::unwrap)
        .filter(|e| e.path().join("diff").is_dir())
        .map(|e| {
            let md = fs::metadata(e.path().join("diff")).unwrap();
            (e.file_name().to_string_lossy().into_owned(), (md.dev(), md.ino()))
        })
        .collect()
}

/// What docker-adopt may change in a data root.
#[derive(Debug, PartialEq, Eq)]
pub struct AdoptState {
    /// The names in it.
    pub top: Vec<String>,
    /// The names in its `image/`.
    pub image: Vec<String>,
    /// Each container's `config.v2.json`: content and mode.
    pub configs: BTreeMap<String, (Vec<u8>, u32)>,
}

pub fn adopt_state(data_root: &Path) -> AdoptState {
    use std::os::unix::fs::PermissionsExt as _;
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(d)
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let mut configs = BTreeMap::new();
    for c in names(&data_root.join("containers")) {
        let p = data_root.join("containers").join(&c).join("config.v2.json");
        if let Ok(bytes) = fs::read(&p) {
            configs.insert(c, (bytes, fs::metadata(&p).unwrap().permissions().mode()));
        }
    }
    AdoptState {
        top: names(data_root),
        image: names(&data_root.join("image")),
        configs,
    }
}

/// The `Driver` of each container's `config.v2.json`.
pub fn container_drivers(data_root: &Path) -> Vec<String> {
    adopt_state(data_root)
        .configs
        .values()
        .map(|(bytes, _)| {
            let v: Value = serde_json::from_slice(bytes).unwrap();
            v["Driver"].as_str().unwrap_or("?").to_owned()
        })
        .collect()
}
