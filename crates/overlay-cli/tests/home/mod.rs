//! The harness the tests that drive the real `overlay2` binary on a
//! temporary home share (`cli.rs`, `idmap.rs`, `import_parallel`): a home cleaned up
//! by a drop guard, and what one run of the binary did.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

/// A temporary home; dropping it unmounts whatever it has mounted.
pub struct Home {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_overlay2"))
            .arg("--home")
            .arg(&self.path)
            .arg("cleanup")
            .output();
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
            _dir: dir,
        };
        let status = home.run(&["status"]);
        if status.code != 0 {
            eprintln!("skipped {test}: the driver cannot run here: {}", status.stderr.trim());
            return None;
        }
        Some(home)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_overlay2"));
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
