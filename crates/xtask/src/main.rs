//! Development tasks for the overlay2-rs workspace, run as `cargo xtask TASK`
//! (the alias lives in `.cargo/config.toml`).
//!
//! | task | what it runs |
//! |---|---|
//! | `ci` | fmt check, clippy `-D warnings`, rustdoc `-D warnings`, then `test` |
//! | `test` | `cargo nextest run --workspace --no-fail-fast` and the doctests |
//! | `bench [--quick]` | the criterion benchmarks of `crates/benches` |
//! | `package` | `cargo package --workspace --allow-dirty`, excluding xtask and benches |
//! | `fuzz [--seconds N]` | `cargo fuzz run import` in `crates/overlay-archive` for N seconds (default 60), installing cargo-fuzz first if missing |
//!
//! Every task runs `cargo` (the one that started `xtask`, from `$CARGO`) in
//! the workspace root (`fuzz`: in the fuzzed crate), prints each step's name
//! and elapsed time, and stops at the first failing step, naming it. Exit
//! codes: 0 success, 1 a step failed, 2 bad command line.
//!
//! std only, so that `cargo xtask` costs one small compile on a fresh clone.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The command-line help, printed by `cargo xtask help` and on bad usage.
const USAGE: &str = "\
Usage: cargo xtask <TASK> [OPTIONS]

Tasks:
  ci               cargo fmt --check, clippy -D warnings, rustdoc -D warnings, then `test`
  test             cargo nextest run --workspace --no-fail-fast (or cargo test), then doctests
  bench [--quick]  cargo bench -p benches [-- --quick]
  package          cargo package --workspace (all but xtask and benches), verified
  fuzz [--seconds N]
                   cargo fuzz run import (crates/overlay-archive) for N seconds (default 60),
                   on the stable toolchain with RUSTC_BOOTSTRAP=1; installs cargo-fuzz if missing
  help             this text
";

/// The crates `cargo xtask package` never packages, whatever their manifest
/// says: development tooling that is not part of the product.
const NEVER_PACKAGED: [&str; 2] = ["xtask", "benches"];

/// The crate whose cargo-fuzz project (`fuzz/`) `cargo xtask fuzz` runs,
/// relative to the workspace root.
const FUZZ_CRATE: &str = "crates/overlay-archive";

/// How long `cargo xtask fuzz` fuzzes without `--seconds`.
const FUZZ_DEFAULT_SECONDS: u64 = 60;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = match parse_args(&args) {
        Ok(task) => task,
        Err(message) => {
            eprintln!("xtask: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let root = workspace_root();
    let result = match task {
        Task::Help => {
            print!("{USAGE}");
            Ok(())
        }
        Task::Ci => ci(&root),
        Task::Test => run_steps(&root, &test_steps(&root)),
        Task::Bench { quick } => bench(&root, quick),
        Task::Package => package(&root),
        Task::Fuzz { seconds } => fuzz(&root, seconds),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("\nxtask: {failure}");
            ExitCode::FAILURE
        }
    }
}

/// A task asked for on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    /// `cargo xtask help`, `-h`, `--help`.
    Help,
    /// `cargo xtask ci`.
    Ci,
    /// `cargo xtask test`.
    Test,
    /// `cargo xtask bench [--quick]`.
    Bench {
        /// Pass `--quick` to criterion.
        quick: bool,
    },
    /// `cargo xtask package`.
    Package,
    /// `cargo xtask fuzz [--seconds N]`.
    Fuzz {
        /// libFuzzer's `-max_total_time`.
        seconds: u64,
    },
}

/// Parses the arguments after `xtask`; the error is the message to print
/// before the usage (exit code 2).
fn parse_args(args: &[String]) -> Result<Task, String> {
    let Some((task, rest)) = args.split_first() else {
        return Err("no task given".to_owned());
    };
    let task = match task.as_str() {
        "help" | "-h" | "--help" => Task::Help,
        "ci" => Task::Ci,
        "test" => Task::Test,
        "package" => Task::Package,
        "bench" => {
            let mut quick = false;
            for arg in rest {
                match arg.as_str() {
                    "--quick" => quick = true,
                    other => return Err(format!("unknown option `{other}` for `bench`")),
                }
            }
            return Ok(Task::Bench { quick });
        }
        "fuzz" => {
            let mut seconds = FUZZ_DEFAULT_SECONDS;
            let mut rest = rest.iter();
            while let Some(arg) = rest.next() {
                let value = match arg.as_str() {
                    "--seconds" => rest.next().ok_or("`--seconds` needs a value")?.as_str(),
                    other => match other.strip_prefix("--seconds=") {
                        Some(value) => value,
                        None => return Err(format!("unknown option `{other}` for `fuzz`")),
                    },
                };
                seconds = match value.parse() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("`--seconds` wants a whole number above 0, not `{value}`")),
                };
            }
            return Ok(Task::Fuzz { seconds });
        }
        other => return Err(format!("unknown task `{other}`")),
    };
    match rest.first() {
        Some(extra) => Err(format!("unexpected argument `{extra}` for `{}`", args[0])),
        None => Ok(task),
    }
}

/// The workspace root: two levels above this crate's manifest directory.
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.ancestors().nth(2).unwrap_or(manifest_dir).to_path_buf()
}

/// The cargo to run: the one that started us (`$CARGO`), else `cargo` from
/// `PATH`.
fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// One command of a task.
#[derive(Debug, Clone)]
struct Step {
    /// Short name printed in the progress lines and in a failure.
    name: &'static str,
    /// Arguments to cargo.
    args: Vec<String>,
    /// Extra environment variables.
    env: Vec<(&'static str, &'static str)>,
    /// Where to run, relative to the workspace root (the root itself when
    /// `None`).
    dir: Option<&'static str>,
}

impl Step {
    /// A `cargo` step with `args` and no extra environment.
    fn cargo(name: &'static str, args: &[&str]) -> Self {
        Self {
            name,
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            env: Vec::new(),
            dir: None,
        }
    }

    /// Adds an environment variable to the step.
    fn with_env(mut self, key: &'static str, value: &'static str) -> Self {
        self.env.push((key, value));
        self
    }

    /// Runs the step in `dir`, relative to the workspace root.
    fn in_dir(mut self, dir: &'static str) -> Self {
        self.dir = Some(dir);
        self
    }

    /// The command line as a user would type it (from the workspace root).
    fn display(&self) -> String {
        let cd = self.dir.map(|dir| format!("cd {dir} && ")).unwrap_or_default();
        let env: String = self.env.iter().map(|(k, v)| format!("{k}=\"{v}\" ")).collect();
        format!("{cd}{env}cargo {}", self.args.join(" "))
    }

    /// The command to spawn in `root` (or in its `dir`).
    fn command(&self, root: &Path) -> Command {
        let mut command = Command::new(cargo());
        let dir = match self.dir {
            Some(dir) => root.join(dir),
            None => root.to_path_buf(),
        };
        command.args(&self.args).current_dir(dir);
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }
}

/// Why a task failed.
#[derive(Debug)]
enum Failure {
    /// A step ran and exited unsuccessfully.
    StepFailed {
        /// The step's name.
        step: &'static str,
        /// Its command line.
        command: String,
        /// How it exited.
        status: std::process::ExitStatus,
    },
    /// A step could not be started at all.
    Spawn {
        /// The step's name.
        step: &'static str,
        /// The error from `spawn`.
        error: std::io::Error,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StepFailed { step, command, status } => write!(f, "step `{step}` failed ({status}): {command}"),
            Self::Spawn { step, error } => {
                write!(f, "step `{step}` could not start cargo: {error}")
            }
        }
    }
}

/// Formats a duration as seconds with one decimal.
fn secs(elapsed: Duration) -> String {
    format!("{:.1}s", elapsed.as_secs_f64())
}

/// Runs one step with inherited stdio, printing its name and elapsed time.
fn run_step(root: &Path, step: &Step) -> Result<Duration, Failure> {
    println!("==> [{}] {}", step.name, step.display());
    let start = Instant::now();
    let status = step
        .command(root)
        .status()
        .map_err(|error| Failure::Spawn { step: step.name, error })?;
    let elapsed = start.elapsed();
    if status.success() {
        println!("==> [{}] ok in {}", step.name, secs(elapsed));
        Ok(elapsed)
    } else {
        println!("==> [{}] FAILED after {}", step.name, secs(elapsed));
        Err(Failure::StepFailed {
            step: step.name,
            command: step.display(),
            status,
        })
    }
}

/// Runs `steps` in order, stopping at the first failure, then prints a
/// summary of the steps that ran.
fn run_steps(root: &Path, steps: &[Step]) -> Result<(), Failure> {
    let start = Instant::now();
    let mut done = Vec::new();
    for step in steps {
        match run_step(root, step) {
            Ok(elapsed) => done.push((step.name, elapsed)),
            Err(failure) => {
                print_summary(&done, Some(step.name), start.elapsed());
                return Err(failure);
            }
        }
    }
    print_summary(&done, None, start.elapsed());
    Ok(())
}

/// Prints the elapsed time of each step that ran, and the failed one.
fn print_summary(done: &[(&str, Duration)], failed: Option<&str>, total: Duration) {
    println!("\n==> summary");
    for (name, elapsed) in done {
        println!("    {name:<10} ok      {:>8}", secs(*elapsed));
    }
    if let Some(name) = failed {
        println!("    {name:<10} FAILED");
    }
    println!("    {:<10}         {:>8}", "total", secs(total));
}

/// Is `cargo nextest` installed?
fn has_nextest(root: &Path) -> bool {
    has_subcommand(root, "nextest")
}

/// Does `cargo SUBCOMMAND --version` succeed?
fn has_subcommand(root: &Path, subcommand: &str) -> bool {
    Command::new(cargo())
        .args([subcommand, "--version"])
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The steps of `cargo xtask test`: nextest then the doctests (nextest does
/// not run doctests), or `cargo test` (which runs both) without nextest.
fn test_steps(root: &Path) -> Vec<Step> {
    if has_nextest(root) {
        vec![
            Step::cargo("nextest", &["nextest", "run", "--workspace", "--no-fail-fast"]),
            Step::cargo("doctests", &["test", "--workspace", "--doc"]),
        ]
    } else {
        println!(
            "note: `cargo nextest` is not installed (cargo install cargo-nextest --locked); \
             falling back to `cargo test --workspace`, which also runs the doctests"
        );
        vec![Step::cargo("test", &["test", "--workspace", "--no-fail-fast"])]
    }
}

/// `cargo xtask ci`: what CI runs, in order, stopping at the first failure.
fn ci(root: &Path) -> Result<(), Failure> {
    let mut steps = vec![
        Step::cargo("fmt", &["fmt", "--all", "--", "--check"]),
        Step::cargo(
            "clippy",
            &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"],
        ),
        Step::cargo("doc", &["doc", "--workspace", "--no-deps"]).with_env("RUSTDOCFLAGS", "-D warnings"),
    ];
    steps.extend(test_steps(root));
    run_steps(root, &steps)
}

/// `cargo xtask bench [--quick]`: the criterion benchmarks only, for now.
fn bench(root: &Path, quick: bool) -> Result<(), Failure> {
    println!(
        "note: this runs the criterion micro-benchmarks of crates/benches only. The \
         whole-command comparison against GNU tar/du/cp on a loop-mounted ext4 \
         (BENCHMARKING.md) arrives with the CLI (issue #9)."
    );
    let step = if quick {
        Step::cargo("bench", &["bench", "-p", "benches", "--", "--quick"])
    } else {
        Step::cargo("bench", &["bench", "-p", "benches"])
    };
    run_steps(root, &[step])
}

/// `cargo xtask package`: packages and verifies every publishable crate
/// in one `cargo package --workspace` run, which resolves the crates'
/// dependencies on each other (not yet on crates.io) from the workspace.
fn package(root: &Path) -> Result<(), Failure> {
    let mut args = vec!["package", "--workspace", "--allow-dirty"];
    for name in NEVER_PACKAGED {
        args.extend(["--exclude", name]);
    }
    run_steps(root, &[Step::cargo("package", &args)])
}

/// The steps of `cargo xtask fuzz`: installing cargo-fuzz when `cargo fuzz`
/// is missing, then its `import` target for `seconds`.
///
/// cargo-fuzz passes nightly-only `-Z` flags (`-Zsanitizer=address`) to
/// rustc; the workspace's toolchain is stable, so the run sets
/// `RUSTC_BOOTSTRAP=1`, which makes stable rustc accept them. New inputs go
/// to `fuzz/corpus/import` (ignored by git), the committed seeds are read
/// from `fuzz/seeds/import`, crashes land in `fuzz/artifacts/import`.
fn fuzz_steps(installed: bool, seconds: u64) -> Vec<Step> {
    let mut steps = Vec::new();
    if !installed {
        steps.push(Step::cargo("install", &["install", "cargo-fuzz", "--locked"]));
    }
    let max_time = format!("-max_total_time={seconds}");
    steps.push(
        Step::cargo(
            "fuzz",
            &[
                "fuzz",
                "run",
                "import",
                "fuzz/corpus/import",
                "fuzz/seeds/import",
                "--",
                &max_time,
            ],
        )
        .with_env("RUSTC_BOOTSTRAP", "1")
        .in_dir(FUZZ_CRATE),
    );
    steps
}

/// `cargo xtask fuzz [--seconds N]`: fuzzes the tar import for a bounded
/// time. Not part of `ci`: its outcome depends on the time it is given.
fn fuzz(root: &Path, seconds: u64) -> Result<(), Failure> {
    let installed = has_subcommand(root, "fuzz");
    if !installed {
        println!("note: `cargo fuzz` is not installed: installing it first (cargo install cargo-fuzz --locked)");
    }
    // libFuzzer writes new inputs to the first corpus directory and stops
    // if it does not exist.
    let corpus = root.join(FUZZ_CRATE).join("fuzz/corpus/import");
    if let Err(error) = std::fs::create_dir_all(&corpus) {
        println!("note: could not create {}: {error}", corpus.display());
    }
    run_steps(root, &fuzz_steps(installed, seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_tasks() {
        assert_eq!(parse_args(&args(&["ci"])), Ok(Task::Ci));
        assert_eq!(parse_args(&args(&["test"])), Ok(Task::Test));
        assert_eq!(parse_args(&args(&["package"])), Ok(Task::Package));
        assert_eq!(parse_args(&args(&["--help"])), Ok(Task::Help));
        assert_eq!(parse_args(&args(&["bench"])), Ok(Task::Bench { quick: false }));
        assert_eq!(
            parse_args(&args(&["bench", "--quick"])),
            Ok(Task::Bench { quick: true })
        );
        assert_eq!(parse_args(&args(&["fuzz"])), Ok(Task::Fuzz { seconds: 60 }));
        assert_eq!(
            parse_args(&args(&["fuzz", "--seconds", "5"])),
            Ok(Task::Fuzz { seconds: 5 })
        );
        assert_eq!(
            parse_args(&args(&["fuzz", "--seconds=300"])),
            Ok(Task::Fuzz { seconds: 300 })
        );
    }

    #[test]
    fn rejects_bad_usage() {
        assert!(parse_args(&[]).is_err());
        assert!(parse_args(&args(&["deploy"])).is_err());
        assert!(parse_args(&args(&["ci", "--fast"])).is_err());
        assert!(parse_args(&args(&["bench", "--slow"])).is_err());
        assert!(parse_args(&args(&["fuzz", "--seconds"])).is_err());
        assert!(parse_args(&args(&["fuzz", "--seconds", "0"])).is_err());
        assert!(parse_args(&args(&["fuzz", "--seconds", "-3"])).is_err());
        assert!(parse_args(&args(&["fuzz", "--seconds=ten"])).is_err());
        assert!(parse_args(&args(&["fuzz", "--minutes", "1"])).is_err());
    }

    #[test]
    fn fuzz_runs_the_import_target_on_stable() {
        let steps = fuzz_steps(true, 42);
        assert_eq!(steps.len(), 1);
        assert_eq!(
            steps[0].display(),
            "cd crates/overlay-archive && RUSTC_BOOTSTRAP=\"1\" cargo fuzz run import \
             fuzz/corpus/import fuzz/seeds/import -- -max_total_time=42"
        );
        let steps = fuzz_steps(false, 60);
        assert_eq!(steps[0].display(), "cargo install cargo-fuzz --locked");
        assert!(workspace_root().join(FUZZ_CRATE).join("fuzz/Cargo.toml").is_file());
        assert!(workspace_root().join(FUZZ_CRATE).join("fuzz/seeds/import").is_dir());
    }

    #[test]
    fn finds_the_workspace_root() {
        assert!(workspace_root().join("crates/xtask/Cargo.toml").is_file());
    }
}
