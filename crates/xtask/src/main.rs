//! Development tasks for the overlay2-rs workspace, run as `cargo xtask TASK`
//! (the alias lives in `.cargo/config.toml`).
//!
//! | task | what it runs |
//! |---|---|
//! | `ci` | fmt check, clippy `-D warnings`, rustdoc `-D warnings`, then `test` |
//! | `test` | `cargo nextest run --workspace --no-fail-fast` and the doctests |
//! | `bench [--quick] [--compare-only]` | criterion, then the `overlay2` command beside GNU tools, into BENCHMARKS.md |
//! | `package` | `cargo package --workspace --allow-dirty`, excluding xtask and benches |
//! | `fuzz [--seconds N]` | `cargo fuzz run import` in `crates/overlay-archive` for N seconds (default 60), installing cargo-fuzz first if missing |
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
  ci               cargo fmt --check, clippy -D warnings, rustdoc -D warnings, then `test`
  test             cargo nextest run --workspace --no-fail-fast (or cargo test), then doctests
  bench [--quick] [--compare-only]
                   criterion (cargo bench -p benches), then overlay2 beside tar, du,
                   rsync and mount(8) on real trees, written into BENCHMARKS.md
  package          cargo package --workspace (all but xtask and benches), verified
  fuzz [--seconds N]
                   cargo fuzz run import (crates/overlay-archive) for N seconds (default 60),
                   on the stable toolchain with RUSTC_BOOTSTRAP=1; installs cargo-fuzz if missing
  vm-test [--timeout SECONDS]
                   the overlay-quota tests with OVERLAY_QUOTA_VM=1 inside a VM (qemu, TCG) that
                   boots Debian's linux-image-amd64 (XFS and ext4 project quotas); downloads the
                   kernel and busybox-static with apt-get download (never installed on the host),
                   installs qemu-system-x86 if missing; fails on any test failure or after
                   SECONDS (default 300)
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
        Task::Bench { quick, compare_only } => bench(&root, quick, compare_only),
        Task::Package => package(&root),
        Task::Fuzz { seconds } => fuzz(&root, seconds),
        Task::VmTest { timeout } => vm::vm_test(&root, Duration::from_secs(timeout)),
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
    /// `cargo xtask fuzz [--seconds N]`.
    Fuzz {
        /// libFuzzer's `-max_total_time`.
        seconds: u64,
    },
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
            let seconds = seconds_option(rest, "fuzz", "--seconds")?.unwrap_or(FUZZ_DEFAULT_SECONDS);
            return Ok(Task::Fuzz { seconds });
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
    run_steps(root, &steps)
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

/// `cargo xtask vm-test`: the quota tests in a VM whose kernel has XFS
/// (and ext4) project quotas, which this machine's kernel lacks.
///
/// 1. Installs `qemu-system-x86` with apt-get when `qemu-system-x86_64` is
///    missing (the only change to the host).
/// 2. Builds the test binaries of `VM_TEST_PACKAGES`
///    (`cargo test --no-run`).
/// 3. `apt-get download`s the kernel `linux-image-amd64` depends on and
///    `busybox-static` into `target/vm-test/`, unpacks them there with
///    `dpkg-deb -x` (nothing is installed) and runs `depmod -b` on the
///    kernel's modules. Kept for the next run.
/// 4. Writes an initramfs (newc cpio) with busybox, an `/init` script and
///    the modules the tests need, in dependency order from `modules.dep`:
///    virtio PCI, 9p over virtio, XFS, ext4 with the quota format, overlay,
///    loop.
/// 5. Boots it with `qemu-system-x86_64 -accel tcg`, sharing the host's
///    root read-only over 9p. `/init` mounts it, puts a fresh `/proc`,
///    `/sys`, `/dev` and a tmpfs on `/mnt` (the tests' `TMPDIR`; not
///    `/tmp`, where a clone being tested may live) in it, and runs each
///    test binary
///    chrooted there (the host's loader, libraries, `mkfs.xfs`, `losetup`)
///    with `OVERLAY_QUOTA_VM=1`. Results come back on the serial console
///    as `@@VMTEST` lines; any failure, a missing result or the timeout
///    fails the task.
mod vm {
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Read};
    use std::sync::mpsc;

    use super::*;

    /// The packages whose tests run inside the VM. `overlay-driver` joins
    /// when its `create_read_write` with `size` test exists.
    pub(super) const VM_TEST_PACKAGES: [&str; 2] = ["overlay-quota", "overlay-driver"];

    /// Of the driver's test targets, only the quota one needs the VM's
    /// kernel; the rest run on the host in `cargo xtask ci`.
    pub(super) const VM_DRIVER_TESTS: [&str; 1] = ["quota"];

    /// How long the VM may run without `--timeout`.
    pub(crate) const DEFAULT_TIMEOUT_SECS: u64 = 300;

    /// The metapackage whose dependency names the kernel to boot.
    const KERNEL_METAPACKAGE: &str = "linux-image-amd64";

    /// Where the static busybox comes from.
    const BUSYBOX_PACKAGE: &str = "busybox-static";

    /// The modules `/init` loads (with their dependencies, first).
    const MODULES: [&str; 9] = [
        "virtio_pci",
        "9pnet_virtio",
        "9p",
        "crc32c_generic",
        "xfs",
        "ext4",
        "quota_v2",
        "overlay",
        "loop",
    ];

    /// Kernel options the tests need, with the values that will do.
    const KERNEL_CONFIG: [(&str, &[&str]); 8] = [
        ("CONFIG_XFS_FS", &["y", "m"]),
        ("CONFIG_XFS_QUOTA", &["y"]),
        ("CONFIG_QUOTA", &["y"]),
        ("CONFIG_QFMT_V2", &["y", "m"]),
        ("CONFIG_EXT4_FS", &["y", "m"]),
        ("CONFIG_OVERLAY_FS", &["y", "m"]),
        ("CONFIG_9P_FS", &["y", "m"]),
        ("CONFIG_NET_9P_VIRTIO", &["y", "m"]),
    ];

    /// The prefix of every line `/init` writes for the host to read.
    const MARK: &str = "@@VMTEST";

    /// One test binary to run in the VM.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) struct TestBinary {
        /// Its name without cargo's hash (`enforcement`, `overlay_quota`).
        pub(super) name: String,
        /// The absolute path on the host (and so under the 9p share).
        pub(super) path: PathBuf,
    }

    /// Records steps for the summary, as `run_steps` does.
    struct Progress {
        start: Instant,
        done: Vec<(&'static str, Duration)>,
    }

    impl Progress {
        fn new() -> Self {
            Self {
                start: Instant::now(),
                done: Vec::new(),
            }
        }

        fn fail<T>(&self, step: &'static str, failure: Failure) -> Result<T, Failure> {
            print_summary(&self.done, Some(step), self.start.elapsed());
            Err(failure)
        }

        /// Runs a command step with inherited stdio.
        fn run(&mut self, root: &Path, step: &Step) -> Result<(), Failure> {
            match run_step(root, step) {
                Ok(elapsed) => {
                    self.done.push((step.name, elapsed));
                    Ok(())
                }
                Err(failure) => self.fail(step.name, failure),
            }
        }

        /// Runs a command step and returns its stdout (stderr inherited).
        fn capture(&mut self, root: &Path, step: &Step) -> Result<String, Failure> {
            println!("==> [{}] {}", step.name, step.display());
            let start = Instant::now();
            let output = match step.command(root).stderr(Stdio::inherit()).output() {
                Ok(output) => output,
                Err(error) => return self.fail(step.name, Failure::Spawn { step: step.name, error }),
            };
            let elapsed = start.elapsed();
            if !output.status.success() {
                println!("==> [{}] FAILED after {}", step.name, secs(elapsed));
                let failure = Failure::StepFailed {
                    step: step.name,
                    command: step.display(),
                    status: output.status,
                };
                return self.fail(step.name, failure);
            }
            println!("==> [{}] ok in {}", step.name, secs(elapsed));
            self.done.push((step.name, elapsed));
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        }

        /// Runs work done by xtask itself as a step.
        fn task<T>(
            &mut self,
            name: &'static str,
            what: &str,
            work: impl FnOnce() -> Result<T, String>,
        ) -> Result<T, Failure> {
            println!("==> [{name}] {what}");
            let start = Instant::now();
            match work() {
                Ok(value) => {
                    println!("==> [{name}] ok in {}", secs(start.elapsed()));
                    self.done.push((name, start.elapsed()));
                    Ok(value)
                }
                Err(message) => {
                    println!("==> [{name}] FAILED after {}", secs(start.elapsed()));
                    self.fail(name, Failure::Task { step: name, message })
                }
            }
        }
    }

    /// Is `program` an executable file in a `PATH` directory?
    fn on_path(program: &str) -> bool {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path).any(|dir| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(dir.join(program)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    }

    /// Has apt ever fetched its package lists on this machine?
    fn apt_has_lists() -> bool {
        std::fs::read_dir("/var/lib/apt/lists").is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
        })
    }

    /// The cargo target directory (`$CARGO_TARGET_DIR` or `ROOT/target`).
    fn target_dir(root: &Path) -> PathBuf {
        match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => root.join(dir),
            None => root.join("target"),
        }
    }

    pub(crate) fn vm_test(root: &Path, timeout: Duration) -> Result<(), Failure> {
        if !cfg!(target_arch = "x86_64") {
            return Err(Failure::Task {
                step: "vm-test",
                message: "vm-test boots an amd64 kernel and only runs on x86-64 hosts".into(),
            });
        }
        let mut progress = Progress::new();
        let work = target_dir(root).join("vm-test");
        progress.task("workdir", &format!("mkdir -p {}", work.display()), || {
            std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))
        })?;

        // 1. The host's tools.
        let needs_qemu = !on_path("qemu-system-x86_64");
        for step in host_steps(apt_has_lists(), needs_qemu) {
            let install = step.args.first().is_some_and(|arg| arg == "install");
            if !install {
                progress.run(root, &step)?;
                continue;
            }
            match run_step(root, &step) {
                Ok(elapsed) => progress.done.push((step.name, elapsed)),
                Err(_) => {
                    // Stale lists (a package moved on the mirror): refresh
                    // once and retry, as .ci/run does.
                    println!("note: apt-get install failed; refreshing the package lists and retrying once");
                    progress.run(root, &Step::tool("apt", "apt-get", &["update"]))?;
                    progress.run(root, &step)?;
                }
            }
        }
        if !on_path("qemu-system-x86_64") {
            return progress.fail(
                "apt",
                Failure::Task {
                    step: "apt",
                    message: "qemu-system-x86_64 still not on PATH after installing qemu-system-x86".into(),
                },
            );
        }

        // 2. The test binaries.
        let json = progress.capture(root, &build_step())?;
        let tests = test_executables(&json);
        let tests = progress.task("tests", "find the test binaries", || check_test_paths(tests))?;

        // 3. Kernel and busybox, downloaded and unpacked once.
        let depends = progress.capture(
            root,
            &Step::tool("apt-cache", "apt-cache", &["depends", KERNEL_METAPACKAGE]),
        )?;
        let kernel_pkg = progress.task("kernel", "pick the kernel package", || {
            kernel_package(&depends).ok_or_else(|| {
                format!("`apt-cache depends {KERNEL_METAPACKAGE}` names no linux-image package:\n{depends}")
            })
        })?;
        let debs = work.join("debs");
        std::fs::create_dir_all(&debs).map_err(|e| Failure::Task {
            step: "download",
            message: format!("{}: {e}", debs.display()),
        })?;
        for package in [kernel_pkg.as_str(), BUSYBOX_PACKAGE] {
            if find_deb(&debs, package).is_none() {
                let step = Step {
                    name: "download",
                    program: "apt-get",
                    args: vec!["download".into(), package.into()],
                    env: Vec::new(),
                    dir: Some(debs.clone()),
                };
                progress.run(root, &step)?;
            }
        }
        let kernel_dir = unpack(root, &mut progress, &debs, &work, &kernel_pkg)?;
        let busybox_dir = unpack(root, &mut progress, &debs, &work, BUSYBOX_PACKAGE)?;
        let kernel = progress.task("config", "check the kernel's configuration", || {
            Kernel::find(&kernel_dir)
        })?;
        if !kernel.modules.join("modules.dep").is_file() {
            // depmod -b BASE wants BASE/lib/modules/VERSION.
            let base = kernel.modules.ancestors().nth(3).unwrap_or(&kernel_dir).to_path_buf();
            let step = Step::tool("depmod", "depmod", &["-b", &base.to_string_lossy(), &kernel.version]);
            progress.run(root, &step)?;
        }

        // 4. The initramfs.
        let initrd = work.join("initramfs.cpio");
        progress.task("initramfs", &format!("write {}", initrd.display()), || {
            let image = initramfs(&kernel, &busybox_dir.join("bin/busybox"), &tests)?;
            std::fs::write(&initrd, &image).map_err(|e| format!("{}: {e}", initrd.display()))?;
            println!("    {} KiB, {} test binaries", image.len() / 1024, tests.len());
            Ok(())
        })?;

        // 5. Boot and collect.
        let args = qemu_args(&kernel.image, &initrd);
        println!("==> [boot] qemu-system-x86_64 {}", args.join(" "));
        let start = Instant::now();
        let run = match boot(&args, timeout) {
            Ok(run) => run,
            Err(message) => {
                println!("==> [boot] FAILED after {}", secs(start.elapsed()));
                return progress.fail("boot", Failure::Task { step: "boot", message });
            }
        };
        let elapsed = start.elapsed();
        let report = report(&tests, &run);
        println!("\n==> vm-test results");
        if let Some(booted) = run.ready_after {
            println!(
                "    VM ready (booted, modules loaded, host root mounted) {} after qemu started, at guest uptime {}s",
                secs(booted),
                run.guest_uptime.as_deref().unwrap_or("?")
            );
        }
        for line in &report.lines {
            println!("    {line}");
        }
        println!("    VM ran for {}", secs(elapsed));
        if report.ok {
            progress.done.push(("vm", elapsed));
            print_summary(&progress.done, None, progress.start.elapsed());
            Ok(())
        } else {
            progress.fail(
                "vm",
                Failure::Task {
                    step: "vm",
                    message: report.problem,
                },
            )
        }
    }

    /// `apt-get update` when apt has no lists (`apt-cache` and `apt-get
    /// download` need them), `apt-get install qemu-system-x86` when qemu is
    /// missing; nothing when both are there.
    pub(super) fn host_steps(has_lists: bool, needs_qemu: bool) -> Vec<Step> {
        let mut steps = Vec::new();
        if !has_lists {
            steps.push(Step::tool("apt", "apt-get", &["update"]));
        }
        if !needs_qemu {
            return steps;
        }
        steps.push(
            Step::tool(
                "apt",
                "apt-get",
                &["install", "-y", "--no-install-recommends", "qemu-system-x86"],
            )
            .with_env("DEBIAN_FRONTEND", "noninteractive"),
        );
        steps
    }

    /// `cargo test --no-run` for the VM packages, with JSON messages on
    /// stdout (for the executables) and the usual diagnostics on stderr.
    pub(super) fn build_step() -> Step {
        let mut args = vec!["test", "--no-run", "--message-format=json-render-diagnostics"];
        for package in VM_TEST_PACKAGES {
            args.extend(["-p", package]);
        }
        Step::cargo("build", &args)
    }

    /// The test executables in cargo's JSON messages, in order.
    pub(super) fn test_executables(json: &str) -> Vec<TestBinary> {
        let mut found = Vec::new();
        for line in json.lines() {
            // `cargo test` also builds the examples, with the normal profile.
            let test_profile = line
                .find("\"profile\":{")
                .and_then(|at| line[at..].split('}').next())
                .is_some_and(|profile| profile.contains("\"test\":true"));
            if !test_profile {
                continue;
            }
            let Some(at) = line.find("\"executable\":\"") else {
                continue;
            };
            let Some(path) = json_string(&line[at + "\"executable\":".len()..]) else {
                continue;
            };
            let path = PathBuf::from(path);
            let stem = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = match stem.rsplit_once('-') {
                Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_owned(),
                _ => stem,
            };
            let driver = line.contains("overlay-driver");
            if driver && !VM_DRIVER_TESTS.contains(&name.as_str()) {
                continue;
            }
            if !found.iter().any(|t: &TestBinary| t.path == path) {
                found.push(TestBinary { name, path });
            }
        }
        found
    }

    /// The JSON string at the start of `s` (which begins with its `"`),
    /// unescaped.
    fn json_string(s: &str) -> Option<String> {
        let mut chars = s.strip_prefix('"')?.chars();
        let mut out = String::new();
        loop {
            match chars.next()? {
                '"' => return Some(out),
                '\\' => match chars.next()? {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'u' => {
                        let hex: String = chars.by_ref().take(4).collect();
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    other => out.push(other),
                },
                c => out.push(c),
            }
        }
    }

    /// The test binaries must be visible in the VM: under the host's root,
    /// and not where the VM mounts something of its own.
    fn check_test_paths(tests: Vec<TestBinary>) -> Result<Vec<TestBinary>, String> {
        if tests.is_empty() {
            return Err("cargo built no test binaries".into());
        }
        for test in &tests {
            for hidden in ["/mnt", "/run", "/proc", "/sys", "/dev"] {
                if test.path.starts_with(hidden) {
                    return Err(format!(
                        "{} is under {hidden}, which the VM mounts afresh; use a target directory elsewhere",
                        test.path.display()
                    ));
                }
            }
        }
        Ok(tests)
    }

    /// The `linux-image-*` package in `apt-cache depends` output.
    pub(super) fn kernel_package(depends: &str) -> Option<String> {
        depends.lines().find_map(|line| {
            let name = line.trim().strip_prefix("Depends:")?.trim();
            (name.starts_with("linux-image-") && !name.contains('<')).then(|| name.to_owned())
        })
    }

    /// A downloaded `.deb` of `package` in `dir`.
    fn find_deb(dir: &Path, package: &str) -> Option<PathBuf> {
        let prefix = format!("{package}_");
        std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
    }

    /// `dpkg-deb -x` of `package`'s `.deb` into `WORK/PACKAGE`, once
    /// (into a temporary directory, renamed when complete).
    fn unpack(
        root: &Path,
        progress: &mut Progress,
        debs: &Path,
        work: &Path,
        package: &str,
    ) -> Result<PathBuf, Failure> {
        let dir = work.join(package);
        if dir.is_dir() {
            return Ok(dir);
        }
        let deb = find_deb(debs, package).ok_or_else(|| Failure::Task {
            step: "unpack",
            message: format!("no .deb of {package} in {}", debs.display()),
        })?;
        let partial = work.join(format!("{package}.partial"));
        let _ = std::fs::remove_dir_all(&partial);
        let step = Step::tool(
            "unpack",
            "dpkg-deb",
            &["-x", &deb.to_string_lossy(), &partial.to_string_lossy()],
        );
        progress.run(root, &step)?;
        std::fs::rename(&partial, &dir).map_err(|e| Failure::Task {
            step: "unpack",
            message: format!("rename {} to {}: {e}", partial.display(), dir.display()),
        })?;
        Ok(dir)
    }

    /// An unpacked kernel package.
    #[derive(Debug)]
    struct Kernel {
        /// `boot/vmlinuz-VERSION`.
        image: PathBuf,
        /// `lib/modules/VERSION` (or `usr/lib/modules/VERSION`).
        modules: PathBuf,
        /// `VERSION`.
        version: String,
    }

    impl Kernel {
        /// Finds the kernel in an unpacked package and checks its
        /// configuration has what the tests need.
        fn find(dir: &Path) -> Result<Self, String> {
            let boot = dir.join("boot");
            let image = std::fs::read_dir(&boot)
                .map_err(|e| format!("{}: {e}", boot.display()))?
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("vmlinuz-"))
                })
                .ok_or_else(|| format!("no vmlinuz-* in {}", boot.display()))?;
            let version = image
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .unwrap_or_default()
                .to_owned();
            let config_path = boot.join(format!("config-{version}"));
            let config =
                std::fs::read_to_string(&config_path).map_err(|e| format!("{}: {e}", config_path.display()))?;
            let missing = missing_config(&config);
            if !missing.is_empty() {
                return Err(format!(
                    "kernel {version} lacks what the quota tests need: {}",
                    missing.join(", ")
                ));
            }
            let modules = ["lib/modules", "usr/lib/modules"]
                .iter()
                .map(|m| dir.join(m).join(&version))
                .find(|m| m.is_dir())
                .ok_or_else(|| format!("no lib/modules/{version} in {}", dir.display()))?;
            println!("    kernel {version}: XFS quota, ext4 quota, overlay, 9p all there");
            Ok(Self {
                image,
                modules,
                version,
            })
        }
    }

    /// The options of [`KERNEL_CONFIG`] that `config` does not set to a
    /// usable value, as `NAME=value` wanted.
    pub(super) fn missing_config(config: &str) -> Vec<String> {
        let set: HashMap<&str, &str> = config.lines().filter_map(|l| l.split_once('=')).collect();
        KERNEL_CONFIG
            .iter()
            .filter(|(name, ok)| !set.get(name).is_some_and(|v| ok.contains(v)))
            .map(|(name, ok)| format!("{name}={}", ok.join("|")))
            .collect()
    }

    /// The module files to load for `wanted`, each after its dependencies,
    /// from a `modules.dep`; modules built into the kernel (listed in
    /// `modules.builtin`) need nothing.
    pub(super) fn module_order(modules_dep: &str, builtin: &str, wanted: &[&str]) -> Result<Vec<String>, String> {
        let name_of = |path: &str| -> String {
            let file = path.rsplit('/').next().unwrap_or(path);
            let stem = file.split(".ko").next().unwrap_or(file);
            stem.replace('-', "_")
        };
        let mut deps: HashMap<String, (String, Vec<String>)> = HashMap::new();
        for line in modules_dep.lines() {
            let Some((path, rest)) = line.split_once(':') else {
                continue;
            };
            let list = rest.split_whitespace().map(str::to_owned).collect();
            deps.insert(name_of(path), (path.to_owned(), list));
        }
        let builtin: Vec<String> = builtin.lines().map(name_of).collect();
        let mut order = Vec::new();
        fn visit(
            path: &str,
            deps: &HashMap<String, (String, Vec<String>)>,
            name_of: &dyn Fn(&str) -> String,
            order: &mut Vec<String>,
        ) {
            if order.iter().any(|p| p == path) {
                return;
            }
            if let Some((_, list)) = deps.get(&name_of(path)) {
                for dep in list {
                    visit(dep, deps, name_of, order);
                }
            }
            order.push(path.to_owned());
        }
        for name in wanted {
            match deps.get(*name) {
                Some((path, _)) => visit(path, &deps, &name_of, &mut order),
                None if builtin.iter().any(|b| b == name) => {}
                None => return Err(format!("module {name} is neither in modules.dep nor built in")),
            }
        }
        Ok(order)
    }

    /// A module file's contents, decompressed if it is `.ko.xz`, `.ko.zst`
    /// or `.ko.gz`.
    fn module_bytes(path: &Path) -> Result<Vec<u8>, String> {
        let name = path.to_string_lossy();
        let tool = if name.ends_with(".ko.xz") {
            "xz"
        } else if name.ends_with(".ko.zst") {
            "zstd"
        } else if name.ends_with(".ko.gz") {
            "gzip"
        } else {
            return std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
        };
        let out = Command::new(tool)
            .args(["-d", "-c"])
            .arg(path)
            .output()
            .map_err(|e| format!("{tool} -d -c {}: {e}", path.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{tool} -d -c {} failed: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(out.stdout)
    }

    /// The initramfs: busybox, `/init`, the modules.
    fn initramfs(kernel: &Kernel, busybox: &Path, tests: &[TestBinary]) -> Result<Vec<u8>, String> {
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
        let dep = read(&kernel.modules.join("modules.dep"))?;
        let builtin = read(&kernel.modules.join("modules.builtin")).unwrap_or_default();
        let order = module_order(&dep, &builtin, &MODULES)?;
        let mut cpio = Cpio::default();
        for dir in ["bin", "dev", "proc", "sys", "host", "modules"] {
            cpio.dir(dir);
        }
        cpio.char_device("dev/console", 5, 1);
        let busybox = std::fs::read(busybox).map_err(|e| format!("{}: {e}", busybox.display()))?;
        cpio.file("bin/busybox", 0o755, &busybox);
        let mut names = Vec::new();
        for (i, path) in order.iter().enumerate() {
            let bytes = module_bytes(&kernel.modules.join(path))?;
            let file = path.rsplit('/').next().unwrap_or(path);
            let stem = file.split(".ko").next().unwrap_or(file);
            // Numbered, so that `/init` loads them in this order.
            let name = format!("{i:02}-{stem}.ko");
            cpio.file(&format!("modules/{name}"), 0o644, &bytes);
            names.push(name);
        }
        cpio.file("init", 0o755, init_script(&names, tests).as_bytes());
        Ok(cpio.finish())
    }

    /// The VM's `/init`.
    pub(super) fn init_script(modules: &[String], tests: &[TestBinary]) -> String {
        let mut script = format!(
            r#"#!/bin/busybox sh
# Written by `cargo xtask vm-test`: loads the modules, mounts the host's
# root (9p, read-only), runs each test binary chrooted into it, reports on
# the serial console with {MARK} lines and powers off.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in {modules}; do
    insmod /modules/$m || echo "{MARK} fatal insmod $m"
done
if ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 hostroot /host; then
    echo "{MARK} fatal cannot mount the host root over 9p"
    poweroff -f
fi
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t devtmpfs devtmpfs /host/dev
mount -t tmpfs tmpfs /host/mnt
mount -t tmpfs tmpfs /host/run
echo "{MARK} ready $(cut -d' ' -f1 /proc/uptime) $(uname -r)"
"#,
            modules = modules.join(" "),
        );
        for test in tests {
            let path = test.path.to_string_lossy().replace('\'', r"'\''");
            script.push_str(&format!(
                "chroot /host /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
                 HOME=/root TMPDIR=/mnt OVERLAY_QUOTA_VM=1 RUST_BACKTRACE=1 '{path}' --test-threads=2\n\
                 echo \"{MARK} exit {} $?\"\n",
                test.name
            ));
        }
        script.push_str(&format!(
            "echo \"{MARK} done $(cut -d' ' -f1 /proc/uptime)\"\nsync\npoweroff -f\n"
        ));
        script
    }

    /// A newc (`070701`) cpio archive, the format the kernel unpacks as an
    /// initramfs.
    #[derive(Default)]
    pub(super) struct Cpio {
        out: Vec<u8>,
        next_ino: u32,
    }

    impl Cpio {
        fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
            self.next_ino += 1;
            let fields = [
                self.next_ino,
                mode,
                0,                                               // uid
                0,                                               // gid
                if mode & 0o170000 == 0o040000 { 2 } else { 1 }, // nlink
                0,                                               // mtime
                data.len() as u32,                               // filesize
                0,                                               // devmajor
                0,                                               // devminor
                rdev.0,                                          // rdevmajor
                rdev.1,                                          // rdevminor
                name.len() as u32 + 1,                           // namesize, with the NUL
                0,                                               // check
            ];
            self.out.extend_from_slice(b"070701");
            for field in fields {
                self.out.extend_from_slice(format!("{field:08x}").as_bytes());
            }
            self.out.extend_from_slice(name.as_bytes());
            self.out.push(0);
            self.pad();
            self.out.extend_from_slice(data);
            self.pad();
        }

        fn pad(&mut self) {
            while !self.out.len().is_multiple_of(4) {
                self.out.push(0);
            }
        }

        pub(super) fn dir(&mut self, name: &str) {
            self.entry(name, 0o040755, (0, 0), &[]);
        }

        pub(super) fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
            self.entry(name, 0o100000 | perm, (0, 0), data);
        }

        pub(super) fn char_device(&mut self, name: &str, major: u32, minor: u32) {
            self.entry(name, 0o020600, (major, minor), &[]);
        }

        pub(super) fn finish(mut self) -> Vec<u8> {
            self.next_ino = 0;
            self.entry("TRAILER!!!", 0, (0, 0), &[]);
            self.out
        }
    }

    /// qemu's command line: TCG (this machine's KVM cannot boot it), no
    /// default devices, the serial console on stdio, the host's root over
    /// 9p, read-only.
    pub(super) fn qemu_args(kernel: &Path, initrd: &Path) -> Vec<String> {
        [
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-smp",
            "2",
            "-m",
            "1024",
            "-nodefaults",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
            "-kernel",
            &kernel.to_string_lossy(),
            "-initrd",
            &initrd.to_string_lossy(),
            "-append",
            "console=ttyS0 quiet panic=-1",
            "-virtfs",
            "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }

    /// A line `/init` wrote for us.
    #[derive(Debug, PartialEq, Eq)]
    pub(super) enum Marker {
        /// Modules loaded, host root mounted; the guest's uptime then.
        Ready(String),
        /// A test binary exited with this code.
        Exit(String, i32),
        /// All tests ran.
        Done,
        /// Something `/init` could not do.
        Fatal(String),
    }

    /// The marker in a line of console output, if any.
    pub(super) fn marker(line: &str) -> Option<Marker> {
        let rest = &line[line.find(MARK)? + MARK.len()..];
        let mut words = rest.split_whitespace();
        match words.next()? {
            "ready" => Some(Marker::Ready(words.next().unwrap_or("?").to_owned())),
            "done" => Some(Marker::Done),
            "exit" => {
                let name = words.next()?.to_owned();
                Some(Marker::Exit(name, words.next()?.parse().ok()?))
            }
            "fatal" => Some(Marker::Fatal(words.collect::<Vec<_>>().join(" "))),
            _ => None,
        }
    }

    /// How one test binary ended in the VM.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) struct Exit {
        /// The test binary.
        pub(super) name: String,
        /// Its exit code.
        pub(super) code: i32,
        /// libtest's `test result: ...` line, if it got that far.
        pub(super) result: Option<String>,
        /// The tests it reported as `FAILED`.
        pub(super) failed: Vec<String>,
    }

    /// What came back from the VM.
    #[derive(Debug, Default)]
    pub(super) struct VmRun {
        /// Host time from starting qemu to the `ready` marker.
        pub(super) ready_after: Option<Duration>,
        /// The guest's uptime at the `ready` marker, in seconds.
        pub(super) guest_uptime: Option<String>,
        /// Each test binary that finished, in order.
        pub(super) exits: Vec<Exit>,
        /// `fatal` markers.
        pub(super) fatal: Vec<String>,
        /// Whether `done` was seen.
        pub(super) done: bool,
        /// Result and failures seen since the last `exit`.
        result: Option<String>,
        failed: Vec<String>,
    }

    impl VmRun {
        /// Takes in one line of console output.
        pub(super) fn line(&mut self, line: &str, since_start: Duration) {
            match marker(line) {
                Some(Marker::Ready(uptime)) => {
                    self.ready_after = Some(since_start);
                    self.guest_uptime = Some(uptime);
                }
                Some(Marker::Exit(name, code)) => self.exits.push(Exit {
                    name,
                    code,
                    result: self.result.take(),
                    failed: std::mem::take(&mut self.failed),
                }),
                Some(Marker::Done) => self.done = true,
                Some(Marker::Fatal(what)) => self.fatal.push(what),
                None => {
                    if let Some(at) = line.find("test result: ") {
                        self.result = Some(line[at..].trim().to_owned());
                    } else if let Some(name) = line.strip_prefix("test ").and_then(|l| l.strip_suffix(" ... FAILED")) {
                        self.failed.push(name.to_owned());
                    }
                }
            }
        }
    }

    /// Boots the VM, echoing its console, until it powers off or `timeout`.
    fn boot(args: &[String], timeout: Duration) -> Result<VmRun, String> {
        let start = Instant::now();
        let mut child = Command::new("qemu-system-x86_64")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
        let stdout = child.stdout.take().ok_or("qemu has no stdout")?;
        let mut stderr = child.stderr.take().ok_or("qemu has no stderr")?;
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n') {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let err_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let mut run = VmRun::default();
        let deadline = start + timeout;
        let timed_out = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(bytes) => {
                    // Console output: drop escape sequences and carriage
                    // returns before echoing.
                    let text: String = String::from_utf8_lossy(&bytes)
                        .chars()
                        .filter(|c| !c.is_control() || *c == '\t')
                        .collect();
                    if !text.trim().is_empty() {
                        println!("    vm| {text}");
                    }
                    run.line(&text, start.elapsed());
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break false,
                Err(mpsc::RecvTimeoutError::Timeout) => break true,
            }
        };
        if timed_out {
            let _ = child.kill();
        }
        let status = child.wait().map_err(|e| format!("waiting for qemu: {e}"))?;
        let _ = reader.join();
        let qemu_err = err_reader.join().unwrap_or_default();
        if timed_out {
            return Err(format!(
                "the VM did not finish within {}s (raise it with --timeout); {} of the test binaries reported",
                timeout.as_secs(),
                run.exits.len()
            ));
        }
        if !status.success() && !run.done {
            return Err(format!("qemu exited with {status}: {}", qemu_err.trim()));
        }
        Ok(run)
    }

    /// The verdict on a run.
    pub(super) struct Report {
        /// Everything passed.
        pub(super) ok: bool,
        /// Lines to print.
        pub(super) lines: Vec<String>,
        /// Why it failed (empty when `ok`).
        pub(super) problem: String,
    }

    /// Every test binary must have exited 0, and the VM must have finished.
    pub(super) fn report(tests: &[TestBinary], run: &VmRun) -> Report {
        let mut lines = Vec::new();
        let mut problems = Vec::new();
        for what in &run.fatal {
            problems.push(format!("in the VM: {what}"));
        }
        for test in tests {
            match run.exits.iter().find(|exit| exit.name == test.name) {
                Some(exit) => {
                    let result = exit.result.as_deref().unwrap_or("(no test result line)");
                    if exit.code == 0 {
                        lines.push(format!("{:<16} ok      {result}", test.name));
                    } else {
                        lines.push(format!("{:<16} FAILED  exit {}: {result}", test.name, exit.code));
                        for name in &exit.failed {
                            lines.push(format!("{:<16}         failed: {name}", ""));
                        }
                        problems.push(format!("{} exited with {}", test.name, exit.code));
                    }
                }
                None => {
                    lines.push(format!("{:<16} MISSING no result", test.name));
                    problems.push(format!("{} reported nothing", test.name));
                }
            }
        }
        if !run.done {
            problems.push("the VM stopped before its last test".into());
        }
        Report {
            ok: problems.is_empty(),
            lines,
            problem: problems.join("; "),
        }
    }
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
        assert_eq!(parse_args(&args(&["fuzz"])), Ok(Task::Fuzz { seconds: 60 }));
        assert_eq!(
            parse_args(&args(&["fuzz", "--seconds", "5"])),
            Ok(Task::Fuzz { seconds: 5 })
        );
        assert_eq!(
            parse_args(&args(&["fuzz", "--seconds=300"])),
            Ok(Task::Fuzz { seconds: 300 })
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
            assert!(host_steps(true, false).is_empty());
            let update: Vec<String> = host_steps(false, false).iter().map(|s| s.display()).collect();
            assert_eq!(
                update,
                ["apt-get update"],
                "apt-cache and apt-get download need the lists"
            );
            let steps: Vec<String> = host_steps(false, true).iter().map(|s| s.display()).collect();
            assert_eq!(
                steps,
                [
                    "apt-get update",
                    "DEBIAN_FRONTEND=\"noninteractive\" apt-get install -y --no-install-recommends qemu-system-x86",
                ]
            );
            assert_eq!(host_steps(true, true).len(), 1);
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
