//! `cargo xtask fuzz [--seconds N] [--target NAME]`: one cargo-fuzz
//! target of `crates/overlay-archive/fuzz` for a bounded time.
//!
//! - `import` (the default): arbitrary bytes into `overlay_archive::import`
//!   on `MemFs`: never a panic.
//! - `gnu_oracle`: GNU tar extracts each input as root, and the import must
//!   make the same tree or refuse for a safety rule. It runs in a private
//!   mount namespace (`unshare --mount --propagation private`) with a
//!   tmpfs on its work directory (`OVERLAY_FUZZ_WORK`, and `TMPDIR`), so
//!   what GNU tar extracts from hostile input never shows on the host and
//!   is gone when the run ends. Root only.
//!
//! cargo-fuzz passes nightly-only `-Z` flags (`-Zsanitizer=address`) to
//! rustc; the workspace's toolchain is stable, so the runs set
//! `RUSTC_BOOTSTRAP=1`, which makes stable rustc accept them. New inputs go
//! to `fuzz/corpus/TARGET` (ignored by git), the committed seeds are read
//! from `fuzz/seeds/import` (hand-made layer tars) and `fuzz/seeds/tools`
//! (tars of real tools), crashes land in `fuzz/artifacts/TARGET`.

use std::path::{Path, PathBuf};

use super::{Failure, Step, has_subcommand, run_steps};

/// The crate whose cargo-fuzz project (`fuzz/`) is run, relative to the
/// workspace root.
pub(crate) const CRATE: &str = "crates/overlay-archive";

/// The targets, the default first.
pub(crate) const TARGETS: [&str; 2] = ["import", "gnu_oracle"];

/// How long a run lasts without `--seconds`.
pub(crate) const DEFAULT_SECONDS: u64 = 60;

/// The seed directories every target reads, relative to [`CRATE`].
const SEEDS: [&str; 2] = ["fuzz/seeds/import", "fuzz/seeds/tools"];

/// Mounts a tmpfs on the work directory (`$1`) inside the new namespace,
/// points the target and its temporary files at it, and runs the rest.
const IN_NAMESPACE: &str = "mount -t tmpfs -o size=4g,mode=0700 overlay2-fuzz \"$1\" \
     && export OVERLAY_FUZZ_WORK=\"$1\" TMPDIR=\"$1\" && shift && exec \"$@\"";

/// Parses the options after `fuzz`: `--seconds N` (a whole number above
/// 0) and `--target NAME` (one of [`TARGETS`]), either as `--opt=value`
/// too; the last of each wins.
pub(crate) fn parse(rest: &[String]) -> Result<(u64, &'static str), String> {
    let (mut seconds, mut target) = (DEFAULT_SECONDS, TARGETS[0]);
    let mut rest = rest.iter();
    while let Some(arg) = rest.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (arg.as_str(), None),
        };
        if name != "--seconds" && name != "--target" {
            return Err(format!("unknown option `{arg}` for `fuzz`"));
        }
        let value = match inline {
            Some(value) => value,
            None => rest.next().ok_or(format!("`{name}` needs a value"))?.as_str(),
        };
        if name == "--seconds" {
            seconds = match value.parse() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("`--seconds` wants a whole number above 0, not `{value}`")),
            };
        } else {
            target = TARGETS
                .iter()
                .find(|t| **t == value)
                .ok_or_else(|| format!("unknown fuzz target `{value}` (targets: {})", TARGETS.join(", ")))?;
        }
    }
    Ok((seconds, target))
}

/// The steps: installing cargo-fuzz when `cargo fuzz` is missing, then
/// the run; `gnu_oracle` is built first and run inside its namespace with
/// `work` as the tmpfs mount point. Its leak checks are off: the import's
/// worker threads signal that they are done before their thread-local
/// destructors have run, and LeakSanitizer now and then catches glibc's
/// list of them in between (the `import` target keeps them).
pub(crate) fn steps(installed: bool, seconds: u64, target: &'static str, work: &Path) -> Vec<Step> {
    let mut steps = Vec::new();
    if !installed {
        steps.push(Step::cargo("install", &["install", "cargo-fuzz", "--locked"]));
    }
    let corpus = format!("fuzz/corpus/{target}");
    let max_time = format!("-max_total_time={seconds}");
    let mut run = vec!["fuzz", "run", target, &corpus, SEEDS[0], SEEDS[1], "--", &max_time];
    if target == "import" {
        steps.push(Step::cargo("fuzz", &run).with_env("RUSTC_BOOTSTRAP", "1").in_dir(CRATE));
        return steps;
    }
    run.push("-detect_leaks=0");
    steps.push(
        Step::cargo("build", &["fuzz", "build", target])
            .with_env("RUSTC_BOOTSTRAP", "1")
            .in_dir(CRATE),
    );
    let cargo = super::cargo();
    let (cargo, work) = (cargo.to_string_lossy(), work.to_string_lossy());
    let mut args = vec![
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        IN_NAMESPACE,
        "sh",
    ];
    args.extend([work.as_ref(), cargo.as_ref()]);
    args.extend(run);
    steps.push(
        Step::tool("fuzz", "unshare", &args)
            .with_env("RUSTC_BOOTSTRAP", "1")
            .in_dir(CRATE),
    );
    steps
}

/// Is this process root? (`gnu_oracle` needs it; std has no `geteuid`.)
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(str::to_owned))
        .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"))
}

/// The tmpfs mount point of a `gnu_oracle` run.
fn work_dir() -> PathBuf {
    std::env::temp_dir().join("overlay2-fuzz-work")
}

/// Runs a target for a bounded time. Not part of `ci`: its outcome
/// depends on the time it is given.
pub(crate) fn fuzz(root: &Path, seconds: u64, target: &'static str) -> Result<(), Failure> {
    let work = work_dir();
    if target == "gnu_oracle" {
        if !is_root() {
            return Err(Failure::Task {
                step: "fuzz",
                message: "the gnu_oracle target needs root: GNU tar and the import chown, make devices and \
                          set trusted.* xattrs, and the run mounts a tmpfs in its own mount namespace"
                    .into(),
            });
        }
        std::fs::create_dir_all(&work).map_err(|e| Failure::Task {
            step: "fuzz",
            message: format!("creating the work directory {}: {e}", work.display()),
        })?;
    }
    let installed = has_subcommand(root, "fuzz");
    if !installed {
        println!("note: `cargo fuzz` is not installed: installing it first (cargo install cargo-fuzz --locked)");
    }
    // libFuzzer writes new inputs to the first corpus directory and stops
    // if it does not exist.
    let corpus = root.join(CRATE).join("fuzz/corpus").join(target);
    if let Err(error) = std::fs::create_dir_all(&corpus) {
        println!("note: could not create {}: {error}", corpus.display());
    }
    run_steps(root, &steps(installed, seconds, target, &work))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options() {
        assert_eq!(parse(&[]), Ok((60, "import")));
        assert_eq!(parse(&args(&["--seconds", "5"])), Ok((5, "import")));
        assert_eq!(
            parse(&args(&["--seconds=300", "--target", "gnu_oracle"])),
            Ok((300, "gnu_oracle"))
        );
        assert_eq!(parse(&args(&["--target=import"])), Ok((60, "import")));
        for bad in [
            &["--seconds"][..],
            &["--seconds", "0"],
            &["--seconds", "-3"],
            &["--seconds=ten"],
            &["--minutes", "1"],
            &["--timeout", "5"],
            &["--target"],
            &["--target", "export"],
            &["gnu_oracle"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_import_target_runs_on_stable() {
        let steps = steps(true, 42, "import", Path::new("/w"));
        assert_eq!(steps.len(), 1);
        assert_eq!(
            steps[0].display(),
            "cd crates/overlay-archive && RUSTC_BOOTSTRAP=\"1\" cargo fuzz run import \
             fuzz/corpus/import fuzz/seeds/import fuzz/seeds/tools -- -max_total_time=42"
        );
        let steps = super::steps(false, 60, "import", Path::new("/w"));
        assert_eq!(steps[0].display(), "cargo install cargo-fuzz --locked");
        let fuzz = super::super::workspace_root().join(CRATE).join("fuzz");
        assert!(fuzz.join("Cargo.toml").is_file());
        for seeds in SEEDS {
            assert!(fuzz.parent().unwrap().join(seeds).is_dir(), "{seeds}");
        }
    }

    /// GNU tar runs as root on hostile input: only inside a private mount
    /// namespace, on a tmpfs its work directory gets there.
    #[test]
    fn the_oracle_runs_in_its_own_mount_namespace() {
        let steps = steps(true, 1800, "gnu_oracle", Path::new("/tmp/w"));
        let shown: Vec<String> = steps.iter().map(Step::display).collect();
        assert_eq!(
            shown[0],
            "cd crates/overlay-archive && RUSTC_BOOTSTRAP=\"1\" cargo fuzz build gnu_oracle"
        );
        let run = &shown[1];
        assert!(
            run.starts_with(
                "cd crates/overlay-archive && RUSTC_BOOTSTRAP=\"1\" unshare --mount --propagation private -- sh -c"
            ),
            "{run}"
        );
        assert!(run.contains("mount -t tmpfs"), "{run}");
        assert!(run.contains("OVERLAY_FUZZ_WORK=\"$1\""), "{run}");
        let cargo = super::super::cargo();
        assert!(
            run.ends_with(&format!(
                " sh /tmp/w {} fuzz run gnu_oracle fuzz/corpus/gnu_oracle fuzz/seeds/import \
                 fuzz/seeds/tools -- -max_total_time=1800 -detect_leaks=0",
                cargo.display()
            )),
            "{run}"
        );
    }
}
