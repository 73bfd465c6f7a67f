//! The harness the tests that drive the real `overlay2` binary on a
//! temporary home share (`cli.rs`, `idmap.rs`, `import_parallel`,
//! `rootless.rs`): a home cleaned up by a drop guard, and what one run of
//! the binary did. A rootless home ([`Home::rootless`]) runs every command
//! in a user namespace of its own, as an unprivileged user.
#![allow(dead_code, clippy::unwrap_used)]

#[path = "../../../overlay-driver/tests/common/rootless.rs"]
pub mod rootless;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

/// A temporary home; dropping it unmounts whatever it has mounted.
pub struct Home {
    pub path: PathBuf,
    /// Rootless: the user namespace commands run in, and as whom.
    pub rootless: Option<(rootless::Map, rootless::User)>,
    _dir: tempfile::TempDir,
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = self.cmd(&["cleanup"]).output();
    }
}

/// What one run of the binary did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "expected success; stderr: {}\nstdout: {}",
            self.stderr, self.stdout
        );
        self
    }

    /// Exit status `code` and a message on stderr containing `needle`.
    #[track_caller]
    pub fn fails(self, code: i32, needle: &str) -> Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}; stderr: {}\nstdout: {}",
            self.stderr, self.stdout
        );
        assert!(
            self.stderr.contains(needle),
            "stderr should contain {needle:?}: {}",
            self.stderr
        );
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", self.stdout))
    }

    pub fn line(&self) -> String {
        self.stdout.trim().to_owned()
    }
}

impl Home {
    /// A fresh home, or `None` (with the reason printed) where the binary
    /// cannot work: not root, or no overlayfs.
    pub fn new(test: &str) -> Option<Self> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped {test}: needs root (mounts overlayfs)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let home = Self {
            path: dir.path().join("home"),
            rootless: None,
            _dir: dir,
        };
        home.usable(test)
    }

    /// A fresh home that every command uses rootless, in a new user and
    /// mount namespace with `map` (a mount lasts as long as its command:
    /// see [`Home::rootless_script`]); `None`, with the reason printed,
    /// where that cannot run.
    pub fn rootless(test: &str, map: rootless::Map) -> Option<Self> {
        let user = rootless::User::find();
        let bin = rootless::runnable(std::path::Path::new(env!("CARGO_BIN_EXE_overlay2")));
        if let Some(why) = map.skip_reason(&user, &bin) {
            eprintln!("skipped {test} rootless ({map:?}): {why}");
            return None;
        }
        // Reachable by the user; the home's parent is the namespace root's.
        let dir = tempfile::tempdir().unwrap();
        let parent = dir.path().join("rootless");
        std::fs::create_dir(&parent).unwrap();
        let (uid, gid) = user.root_of(map);
        std::os::unix::fs::chown(&parent, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let home = Self {
            path: parent.join("home"),
            rootless: Some((map, user)),
            _dir: dir,
        };
        home.usable(test)
    }

    /// The home's directory, writable by whoever runs its commands.
    pub fn dir(&self) -> PathBuf {
        self.path.parent().unwrap().to_path_buf()
    }

    fn usable(self, test: &str) -> Option<Self> {
        let status = self.run(&["status"]);
        if status.code != 0 {
            eprintln!("skipped {test}: the driver cannot run here: {}", status.stderr.trim());
            return None;
        }
        Some(self)
    }

    /// A shell running `script` with `$OV` the binary and `$HOME_DIR`
    /// the home, in the home's user namespace if rootless: for what must
    /// happen in one mount namespace (`mount`, read, `umount`).
    pub fn rootless_script(&self, script: &str) -> Run {
        let mut c = match &self.rootless {
            Some((map, user)) => map.command(user, std::path::Path::new("/bin/sh")),
            None => Command::new("/bin/sh"),
        };
        let out = c
            .args(["-c", script])
            .env("OV", self.bin())
            .env("HOME_DIR", &self.path)
            .env_remove("OVERLAY2_HOME")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Run::from(out)
    }

    /// The binary, as whoever runs the home's commands can run it.
    pub fn bin(&self) -> PathBuf {
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_overlay2"));
        match &self.rootless {
            Some(_) => rootless::runnable(bin),
            None => bin.to_path_buf(),
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = match &self.rootless {
            Some((map, user)) => map.command(user, &self.bin()),
            None => Command::new(self.bin()),
        };
        c.arg("--home")
            .arg(&self.path)
            .args(args)
            .env_remove("OVERLAY2_HOME")
            .env_remove("OVERLAY2_IMPORT_JOBS");
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).stdin(Stdio::null()).output().unwrap())
    }

    pub fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(input);
        drop(stdin);
        Run::from(child.wait_with_output().unwrap())
    }

    /// A layer's diff dir.
    pub fn diff(&self, id: &str) -> PathBuf {
        self.path.join(id).join("diff")
    }

    pub fn layers(&self) -> Vec<String> {
        let v = self.run(&["--json", "ls"]).ok().json();
        v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Files in the home root other than `l/` and layers (markers, scratch).
    pub fn stray_entries(&self) -> Vec<String> {
        let layers = self.layers();
        std::fs::read_dir(&self.path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "l" && n != "backingFsBlockDev" && !layers.contains(n))
            .collect()
    }

    #[track_caller]
    pub fn assert_clean(&self) {
        let c = self.run(&["--json", "check"]);
        assert_eq!(c.code, 0, "check: {} {}", c.stdout, c.stderr);
        assert_eq!(c.json()["clean"], json!(true));
        assert_eq!(self.stray_entries(), Vec::<String>::new());
    }
}
