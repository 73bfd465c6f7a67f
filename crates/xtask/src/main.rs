//! Development tasks for the overlay2-rs workspace, run as `cargo xtask TASK`
//! (the alias lives in `.cargo/config.toml`).
//!
//! | task | what it runs |
//! |---|---|
//! | `ci` | fmt check, clippy `-D warnings`, rustdoc `-D warnings`, then `test` |
//! | `test` | `cargo nextest run --workspace --no-fail-fast` and the doctests |
//! | `bench [--quick] [--compare-only]` | criterion, then the `overlay2` command beside GNU tools, into BENCHMARKS.md |
//! | `package` | `cargo package --workspace --allow-dirty`, excluding xtask and benches |
//! | `fuzz [--seconds N] [--target T]` | `cargo fuzz run T` (`import`, or `gnu_oracle` as root in its own mount namespace) in `crates/overlay-archive` for N seconds (default 60), installing cargo-fuzz first if missing (module `fuzz`) |
//! | `vm-test [--timeout S]` | the quota tests in a VM booting Debian's kernel, which has XFS quotas (module `vm`) |
//!
//! Every task runs `cargo` (the one that started `xtask`, from `$CARGO`) in
//! the workspace root (`fuzz`: in the fuzzed crate), prints each step's name
//! and elapsed time, and stops at the first failing step, naming it.
//! `vm-test` also runs apt-get, dpkg-deb, depmod and qemu. Exit codes: 0
//! success, 1 a step failed, 2 bad command line.
//!
//! std only, so that `cargo xtask` costs one small compile on a fresh clone.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

mod compare;

/// The command-line help, printed by `cargo xtask help` and on bad usage.
const USAGE: &str = "\
Usage: cargo xtask <TASK> [OPTIONS]

Tasks:
  ci               cargo fmt --check, clippy -D warnings, rustdoc -D warnings, then `test`,
                   then `containerd-suite`
  test             cargo nextest run --workspace --no-fail-fast (or cargo test), then doctests
  bench [--quick] [--compare-only]
                   criterion (cargo bench -p benches), then overlay2 beside tar, du,
                   rsync and mount(8) on real trees, written into BENCHMARKS.md
  package          cargo package --workspace (all but xtask and benches), verified
  fuzz [--seconds N] [--target import|gnu_oracle]
                   cargo fuzz run TARGET (default import; crates/overlay-archive) for N seconds
                   (default 60), on the stable toolchain with RUSTC_BOOTSTRAP=1; installs cargo-fuzz
                   if missing. gnu_oracle (GNU tar as the oracle) needs root and runs in a private
                   mount namespace with a tmpfs for what it extracts
  vm-test [--timeout SECONDS]
                   the overlay-quota tests with OVERLAY_QUOTA_VM=1 inside a VM (qemu, TCG) that
                   boots Debian's linux-image-amd64 (XFS and ext4 project quotas); downloads the
                   kernel and busybox-static with apt-get download (never installed on the host),
                   installs qemu-system-x86 if missing; fails on any test failure or after
                   SECONDS (default 300)
  containerd-suite containerd's own snapshotter testsuite (Go, containerd 1.6 from Debian, built
                   offline) against `overlay2 serve containerd`; installs golang-go and
                   golang-github-containerd-containerd-dev if missing; root only (also run by `ci`)
  help             this text
";

/// The crates `cargo xtask package` never packages, whatever their manifest
/// says: development tooling that is not part of the product.
const NEVER_PACKAGED: [&str; 2] = ["xtask", "benches"];

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
        Task::Bench { quick, compare_only } => bench(&root, quick, compare_only),
        Task::Package => package(&root),
        Task::Fuzz { seconds, target } => fuzz::fuzz(&root, seconds, target),
        Task::VmTest { timeout } => vm::vm_test(&root, Duration::from_secs(timeout)),
        Task::ContainerdSuite => containerd_suite(&root),
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
    /// `cargo xtask bench [--quick] [--compare-only]`.
    Bench {
        /// Pass `--quick` to criterion, and compare on one small dataset.
        quick: bool,
        /// Skip criterion: only the whole-command comparison.
        compare_only: bool,
    },
    /// `cargo xtask package`.
    Package,
    /// `cargo xtask fuzz [--seconds N] [--target T]`.
    Fuzz {
        /// libFuzzer's `-max_total_time`.
        seconds: u64,
        /// The cargo-fuzz target.
        target: &'static str,
    },
    /// `cargo xtask containerd-suite`.
    ContainerdSuite,
    /// `cargo xtask vm-test [--timeout SECONDS]`.
    VmTest {
        /// How long the VM may run before it is killed and the task fails.
        timeout: u64,
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
        "containerd-suite" => Task::ContainerdSuite,
        "bench" => {
            let (mut quick, mut compare_only) = (false, false);
            for arg in rest {
                match arg.as_str() {
                    "--quick" => quick = true,
                    "--compare-only" => compare_only = true,
                    other => return Err(format!("unknown option `{other}` for `bench`")),
                }
            }
            return Ok(Task::Bench { quick, compare_only });
        }
        "fuzz" => {
            let (seconds, target) = fuzz::parse(rest)?;
            return Ok(Task::Fuzz { seconds, target });
        }
        "vm-test" => {
            let timeout = seconds_option(rest, "vm-test", "--timeout")?.unwrap_or(vm::DEFAULT_TIMEOUT_SECS);
            return Ok(Task::VmTest { timeout });
        }
        other => return Err(format!("unknown task `{other}`")),
    };
    match rest.first() {
        Some(extra) => Err(format!("unexpected argument `{extra}` for `{}`", args[0])),
        None => Ok(task),
    }
}

/// Parses the only option of `task`, `--name N` or `--name=N`, a whole
/// number of seconds above 0 (the last one given wins).
fn seconds_option(rest: &[String], task: &str, name: &str) -> Result<Option<u64>, String> {
    let mut seconds = None;
    let mut rest = rest.iter();
    while let Some(arg) = rest.next() {
        let value = if arg == name {
            rest.next().ok_or(format!("`{name}` needs a value"))?.as_str()
        } else {
            match arg.strip_prefix(name).and_then(|v| v.strip_prefix('=')) {
                Some(value) => value,
                None => return Err(format!("unknown option `{arg}` for `{task}`")),
            }
        };
        seconds = match value.parse() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(format!("`{name}` wants a whole number above 0, not `{value}`")),
        };
    }
    Ok(seconds)
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
    /// The program: `cargo` means the cargo that started us.
    program: &'static str,
    /// Its arguments.
    args: Vec<String>,
    /// Extra environment variables.
    env: Vec<(&'static str, &'static str)>,
    /// Where to run, relative to the workspace root (the root itself when
    /// `None`; an absolute path stays as it is).
    dir: Option<PathBuf>,
}

impl Step {
    /// A `cargo` step with `args` and no extra environment.
    fn cargo(name: &'static str, args: &[&str]) -> Self {
        Self::tool(name, "cargo", args)
    }

    /// A step running `program` (found on `PATH`) with `args`.
    fn tool(name: &'static str, program: &'static str, args: &[&str]) -> Self {
        Self {
            name,
            program,
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
    fn in_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// The command line as a user would type it (from the workspace root).
    fn display(&self) -> String {
        let cd = self
            .dir
            .as_ref()
            .map(|dir| format!("cd {} && ", dir.display()))
            .unwrap_or_default();
        let env: String = self.env.iter().map(|(k, v)| format!("{k}=\"{v}\" ")).collect();
        format!("{cd}{env}{} {}", self.program, self.args.join(" "))
    }

    /// The command to spawn in `root` (or in its `dir`).
    fn command(&self, root: &Path) -> Command {
        let program = if self.program == "cargo" {
            cargo()
        } else {
            self.program.into()
        };
        let mut command = Command::new(program);
        let dir = match &self.dir {
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
    /// A step done by xtask itself (not a command) failed.
    Task {
        /// The step's name.
        step: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StepFailed { step, command, status } => write!(f, "step `{step}` failed ({status}): {command}"),
            Self::Spawn { step, error } => {
                write!(f, "step `{step}` could not start its command: {error}")
            }
            Self::Task { step, message } => write!(f, "step `{step}` failed: {message}"),
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
    run_steps(root, &steps)?;
    containerd_suite(root)
}

/// Is this process root (effective uid 0)? From `/proc/self/status`,
/// so xtask needs no dependency for it.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Where containerd's snapshotter testsuite harness lives.
const CONTAINERD_SUITE: &str = "crates/overlay-snapshotter/testsuite/run.sh";

/// `cargo xtask containerd-suite`: containerd's own snapshotter testsuite
/// (Go, containerd 1.6 as Debian ships it) against `overlay2 serve
/// containerd`, one fresh server per test. It mounts what the snapshotter
/// returns, so it needs root: without, it says so and skips.
fn containerd_suite(root: &Path) -> Result<(), Failure> {
    if !is_root() {
        println!("containerd-suite: skipped: containerd's snapshotter testsuite mounts, and needs root");
        return Ok(());
    }
    run_steps(
        root,
        &[
            Step::cargo("build overlay2", &["build", "-p", "overlay-cli"]),
            Step::tool("containerd testsuite", "bash", &[CONTAINERD_SUITE]),
        ],
    )
}

/// `cargo xtask bench [--quick] [--compare-only]`: the criterion benchmarks (one group per
/// crate), then the whole `overlay2` command beside GNU tar, du, rsync and
/// mount(8) on real trees ([`compare`]), written into BENCHMARKS.md
/// between its `xtask bench` markers. `--quick` runs criterion's quick
/// mode and one small dataset.
fn bench(root: &Path, quick: bool, compare_only: bool) -> Result<(), Failure> {
    let step = if quick {
        Step::cargo("bench", &["bench", "-p", "benches", "--benches", "--", "--quick"])
    } else {
        Step::cargo("bench", &["bench", "-p", "benches", "--benches"])
    };
    if !compare_only {
        run_steps(root, &[step])?;
    }
    let started = Instant::now();
    let table = compare::run(root, quick).map_err(|message| Failure::Task {
        step: "compare",
        message,
    })?;
    println!("{table}");
    let path = root.join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let updated = replace_section(&text, &table);
    std::fs::write(&path, updated).map_err(|e| Failure::Task {
        step: "compare",
        message: format!("{}: {e}", path.display()),
    })?;
    println!("==> [compare] written to BENCHMARKS.md in {}", secs(started.elapsed()));
    Ok(())
}

const BENCH_BEGIN: &str = "<!-- cargo xtask bench: begin -->";
const BENCH_END: &str = "<!-- cargo xtask bench: end -->";

/// `text` with the part between the bench markers replaced by `table`
/// (markers and a heading appended when absent).
fn replace_section(text: &str, table: &str) -> String {
    let section = format!("{BENCH_BEGIN}\n{table}\n{BENCH_END}");
    match (text.find(BENCH_BEGIN), text.find(BENCH_END)) {
        (Some(a), Some(b)) if a < b => format!("{}{section}{}", &text[..a], &text[b + BENCH_END.len()..]),
        _ => format!(
            "{}\n## The whole command against GNU tools (`cargo xtask bench`)\n\n{section}\n",
            text.trim_end()
        ),
    }
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

mod fuzz;
mod vm;

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
        assert_eq!(
            parse_args(&args(&["bench"])),
            Ok(Task::Bench {
                quick: false,
                compare_only: false
            })
        );
        assert_eq!(
            parse_args(&args(&["bench", "--compare-only"])),
            Ok(Task::Bench {
                quick: false,
                compare_only: true
            })
        );
        assert_eq!(
            parse_args(&args(&["bench", "--quick"])),
            Ok(Task::Bench {
                quick: true,
                compare_only: false
            })
        );
        assert_eq!(
            parse_args(&args(&["fuzz"])),
            Ok(Task::Fuzz {
                seconds: 60,
                target: "import"
            })
        );
        assert_eq!(
            parse_args(&args(&["fuzz", "--seconds", "5", "--target", "gnu_oracle"])),
            Ok(Task::Fuzz {
                seconds: 5,
                target: "gnu_oracle"
            })
        );
        assert_eq!(parse_args(&args(&["vm-test"])), Ok(Task::VmTest { timeout: 300 }));
        assert_eq!(
            parse_args(&args(&["vm-test", "--timeout", "90"])),
            Ok(Task::VmTest { timeout: 90 })
        );
        assert_eq!(
            parse_args(&args(&["vm-test", "--timeout=600"])),
            Ok(Task::VmTest { timeout: 600 })
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
        assert!(parse_args(&args(&["vm-test", "--timeout"])).is_err());
        assert!(parse_args(&args(&["vm-test", "--timeout", "0"])).is_err());
        assert!(parse_args(&args(&["vm-test", "--seconds", "5"])).is_err());
        assert!(parse_args(&args(&["vm-test", "--timeoutx=5"])).is_err());
        assert!(parse_args(&args(&["fuzz", "--timeout", "5"])).is_err());
    }

    #[test]
    fn finds_the_workspace_root() {
        assert!(workspace_root().join("crates/xtask/Cargo.toml").is_file());
    }

    mod vm_test {
        use std::path::{Path, PathBuf};
        use std::time::Duration;

        use super::super::vm::*;

        fn binary(name: &str) -> TestBinary {
            TestBinary {
                name: name.into(),
                path: PathBuf::from(format!("/work/target/debug/deps/{name}-0123abcd")),
            }
        }

        #[test]
        fn installs_qemu_only_when_missing() {
            assert!(host_steps(true, &[]).is_empty());
            let update: Vec<String> = host_steps(false, &[]).iter().map(|s| s.display()).collect();
            assert_eq!(
                update,
                ["apt-get update"],
                "apt-cache and apt-get download need the lists"
            );
            let steps: Vec<String> = host_steps(false, &["qemu-system-x86"])
                .iter()
                .map(|s| s.display())
                .collect();
            assert_eq!(
                steps,
                [
                    "apt-get update",
                    "DEBIAN_FRONTEND=\"noninteractive\" apt-get install -y --no-install-recommends qemu-system-x86",
                ]
            );
            assert_eq!(host_steps(true, &["qemu-system-x86"]).len(), 1);
            // A machine without kmod (depmod) gets it with qemu.
            let both: Vec<String> = host_steps(true, &["qemu-system-x86", "kmod"])
                .iter()
                .map(|s| s.display())
                .collect();
            assert_eq!(
                both,
                ["DEBIAN_FRONTEND=\"noninteractive\" apt-get install -y --no-install-recommends qemu-system-x86 kmod"]
            );
        }

        #[test]
        fn builds_the_vm_packages_tests() {
            assert_eq!(
                build_step().display(),
                "cargo test --no-run --message-format=json-render-diagnostics -p overlay-quota -p overlay-driver"
            );
            for package in VM_TEST_PACKAGES {
                assert!(
                    super::workspace_root()
                        .join("crates")
                        .join(package)
                        .join("tests")
                        .is_dir()
                );
            }
        }

        #[test]
        fn finds_test_executables_in_cargos_json() {
            let json = r#"{"reason":"compiler-artifact","target":{"name":"overlay_quota","test":true},"profile":{"test":false},"executable":null}
{"reason":"compiler-artifact","target":{"name":"overlay_quota"},"profile":{"opt_level":"0","test":true},"executable":"/w/target/debug/deps/overlay_quota-551064521b8a4ad8","fresh":true}
{"reason":"compiler-artifact","target":{"name":"limit","test":true},"profile":{"opt_level":"0","test":false},"executable":"/w/target/debug/examples/limit-0a1b2c3d4e5f6789"}
{"reason":"compiler-artifact","profile":{"test":true},"executable":"/w/odd \"dir\"/deps/enforcement-e0456b4b454f31b3","fresh":false}
{"reason":"compiler-artifact","profile":{"test":true},"executable":"/w/target/debug/deps/overlay_quota-551064521b8a4ad8"}
{"reason":"build-finished","success":true}"#;
            let found = test_executables(json);
            assert_eq!(
                found,
                [
                    TestBinary {
                        name: "overlay_quota".into(),
                        path: "/w/target/debug/deps/overlay_quota-551064521b8a4ad8".into(),
                    },
                    TestBinary {
                        name: "enforcement".into(),
                        path: "/w/odd \"dir\"/deps/enforcement-e0456b4b454f31b3".into(),
                    },
                ]
            );
        }

        #[test]
        fn picks_the_kernel_the_metapackage_depends_on() {
            let out = "linux-image-amd64\n  Depends: linux-image-6.1.0-48-amd64\n";
            assert_eq!(kernel_package(out).as_deref(), Some("linux-image-6.1.0-48-amd64"));
            assert_eq!(
                kernel_package("linux-image-amd64\n  Depends: <linux-image-virtual>\n"),
                None
            );
            assert_eq!(kernel_package(""), None);
        }

        #[test]
        fn requires_xfs_and_ext4_quota_in_the_kernel_config() {
            let good = "CONFIG_XFS_FS=m\nCONFIG_XFS_QUOTA=y\nCONFIG_QUOTA=y\nCONFIG_QFMT_V2=m\nCONFIG_EXT4_FS=m\n\
                        CONFIG_OVERLAY_FS=m\nCONFIG_9P_FS=m\nCONFIG_NET_9P_VIRTIO=m\n";
            assert!(missing_config(good).is_empty());
            // This machine's kernel: no XFS quota.
            let host = good.replace("CONFIG_XFS_QUOTA=y", "# CONFIG_XFS_QUOTA is not set");
            assert_eq!(missing_config(&host), ["CONFIG_XFS_QUOTA=y"]);
        }

        #[test]
        fn loads_modules_after_their_dependencies() {
            let dep = "kernel/fs/xfs/xfs.ko: kernel/lib/libcrc32c.ko\n\
                       kernel/lib/libcrc32c.ko:\n\
                       kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko\n\
                       kernel/net/9p/9pnet.ko:\n\
                       kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko\n\
                       kernel/fs/netfs/netfs.ko:\n";
            let order = module_order(dep, "kernel/fs/ext4/ext4.ko\n", &["9pnet_virtio", "9p", "xfs", "ext4"]).unwrap();
            assert_eq!(
                order,
                [
                    "kernel/net/9p/9pnet.ko",
                    "kernel/net/9p/9pnet_virtio.ko.xz",
                    "kernel/fs/netfs/netfs.ko",
                    "kernel/fs/9p/9p.ko",
                    "kernel/lib/libcrc32c.ko",
                    "kernel/fs/xfs/xfs.ko",
                ]
            );
            let err = module_order(dep, "", &["zfs"]).unwrap_err();
            assert!(err.contains("zfs"), "{err}");
        }

        #[test]
        fn writes_newc_cpio() {
            let mut cpio = Cpio::default();
            cpio.dir("bin");
            cpio.file("bin/x", 0o755, b"hello");
            cpio.char_device("dev/console", 5, 1);
            let out = cpio.finish();
            assert_eq!(out.len() % 4, 0);
            let text = String::from_utf8_lossy(&out);
            assert_eq!(text.matches("070701").count(), 4, "three entries and the trailer");
            // The file's header: ino 2, mode 0100755, size 5, namesize 6.
            let file = &out[text.find("bin/x").unwrap() - 110..];
            assert_eq!(&file[..6], b"070701");
            let field = |i: usize| std::str::from_utf8(&file[6 + 8 * i..14 + 8 * i]).unwrap().to_owned();
            assert_eq!(field(0), "00000002");
            assert_eq!(field(1), format!("{:08x}", 0o100755));
            assert_eq!(field(6), "00000005");
            assert_eq!(field(11), "00000006");
            // Name and data each padded to four bytes.
            assert_eq!(&file[110..116], b"bin/x\0");
            assert_eq!(&file[116..121], b"hello");
            let console = &out[text.find("dev/console").unwrap() - 110..];
            assert_eq!(&console[6 + 8 * 9..6 + 8 * 11], b"0000000500000001");
            assert!(text.ends_with("TRAILER!!!\0\0\0\0"), "trailer, its NUL and padding");
        }

        #[test]
        fn init_runs_every_binary_and_reports() {
            let script = init_script(
                &["00-virtio.ko".into(), "01-xfs.ko".into()],
                &[binary("enforcement"), binary("it's")],
            );
            assert!(script.starts_with("#!/bin/busybox sh\n"));
            assert!(script.contains("for m in 00-virtio.ko 01-xfs.ko; do"));
            assert!(script.contains("OVERLAY_QUOTA_VM=1"));
            assert!(script.contains("'/work/target/debug/deps/enforcement-0123abcd' --test-threads=2"));
            assert!(script.contains(r"'/work/target/debug/deps/it'\''s-0123abcd'"), "quoted");
            assert!(script.contains("echo \"@@VMTEST exit enforcement $?\""));
            assert!(script.trim_end().ends_with("poweroff -f"));
        }

        #[test]
        fn boots_with_tcg_and_the_host_root_read_only() {
            let args = qemu_args(Path::new("/k/vmlinuz"), Path::new("/k/initrd"));
            let line = args.join(" ");
            assert!(line.contains("-accel tcg"), "{line}");
            assert!(line.contains("-kernel /k/vmlinuz -initrd /k/initrd"), "{line}");
            assert!(
                line.contains("path=/,mount_tag=hostroot,security_model=none,readonly=on"),
                "{line}"
            );
            assert!(args.contains(&"console=ttyS0 quiet panic=-1".to_owned()));
        }

        #[test]
        fn reads_markers_from_the_console() {
            assert_eq!(marker("@@VMTEST ready 2.98 6.1.0"), Some(Marker::Ready("2.98".into())));
            assert_eq!(
                marker("[  3.1] x @@VMTEST exit enforcement 101"),
                Some(Marker::Exit("enforcement".into(), 101))
            );
            assert_eq!(marker("@@VMTEST done 17.6"), Some(Marker::Done));
            assert_eq!(
                marker("@@VMTEST fatal insmod 9p.ko"),
                Some(Marker::Fatal("insmod 9p.ko".into()))
            );
            assert_eq!(marker("@@VMTEST exit enforcement"), None);
            assert_eq!(marker("test result: ok."), None);
        }

        fn run(lines: &[&str]) -> VmRun {
            let mut run = VmRun::default();
            for line in lines {
                run.line(line, Duration::from_secs(1));
            }
            run
        }

        #[test]
        fn passes_only_when_every_binary_exits_zero_and_the_vm_finishes() {
            let tests = [binary("a"), binary("b")];
            let good = run(&[
                "@@VMTEST ready 3.0",
                "test x ... ok",
                "test result: ok. 1 passed; 0 failed",
                "@@VMTEST exit a 0",
                "test result: ok. 2 passed; 0 failed",
                "@@VMTEST exit b 0",
                "@@VMTEST done 9.0",
            ]);
            assert_eq!(good.guest_uptime.as_deref(), Some("3.0"));
            let verdict = report(&tests, &good);
            assert!(verdict.ok, "{}", verdict.problem);
            assert!(verdict.lines[1].contains("2 passed"), "{:?}", verdict.lines);

            let failed = run(&[
                "test y ... FAILED",
                "test result: FAILED. 0 passed; 1 failed",
                "@@VMTEST exit a 101",
                "@@VMTEST exit b 0",
                "@@VMTEST done 9.0",
            ]);
            assert_eq!(failed.exits[0].failed, ["y"]);
            let verdict = report(&tests, &failed);
            assert!(!verdict.ok);
            assert_eq!(verdict.problem, "a exited with 101");
            assert!(verdict.lines.iter().any(|l| l.contains("failed: y")));

            let cut_short = run(&["@@VMTEST exit a 0", "@@VMTEST fatal cannot mount"]);
            let verdict = report(&tests, &cut_short);
            assert!(!verdict.ok);
            assert_eq!(
                verdict.problem,
                "in the VM: cannot mount; b reported nothing; the VM stopped before its last test"
            );
        }
    }
}
