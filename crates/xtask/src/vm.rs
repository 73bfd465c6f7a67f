//! `cargo xtask vm-test`: the quota tests in a VM whose kernel has XFS
//! (and ext4) project quotas, which this machine's kernel lacks.
//!
//! 1. Installs `qemu-system-x86` (and `kmod`, for depmod) with apt-get when `qemu-system-x86_64` is
//!    missing (the only change to the host).
//! 2. Builds the test binaries of `VM_TEST_PACKAGES`
//!    (`cargo test --no-run`).
//! 3. `apt-get download`s the kernel `linux-image-amd64` depends on and
//!    `busybox-static` into `target/vm-test/`, unpacks them there with
//!    `dpkg-deb -x` (nothing is installed) and runs `depmod -b` on the
//!    kernel's modules. Kept for the next run.
//! 4. Writes an initramfs (newc cpio) with busybox, an `/init` script and
//!    the modules the tests need, in dependency order from `modules.dep`:
//!    virtio PCI, 9p over virtio, XFS, ext4 with the quota format, overlay,
//!    loop.
//! 5. Boots it with `qemu-system-x86_64 -accel tcg`, sharing the host's
//!    root read-only over 9p. `/init` mounts it, puts a fresh `/proc`,
//!    `/sys`, `/dev` and a tmpfs on `/mnt` (the tests' `TMPDIR`; not
//!    `/tmp`, where a clone being tested may live) in it, and runs each
//!    test binary
//!    chrooted there (the host's loader, libraries, `mkfs.xfs`, `losetup`)
//!    with `OVERLAY_QUOTA_VM=1`. Results come back on the serial console
//!    as `@@VMTEST` lines; any failure, a missing result or the timeout
//!    fails the task.

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
    // qemu to boot; kmod for depmod, which indexes the kernel's modules.
    let missing: Vec<&str> = [("qemu-system-x86_64", "qemu-system-x86"), ("depmod", "kmod")]
        .into_iter()
        .filter(|(tool, _)| !on_path(tool))
        .map(|(_, package)| package)
        .collect();
    for step in host_steps(apt_has_lists(), &missing) {
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
        kernel_package(&depends)
            .ok_or_else(|| format!("`apt-cache depends {KERNEL_METAPACKAGE}` names no linux-image package:\n{depends}"))
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
/// download` need them), `apt-get install` of the `missing` packages
/// (qemu-system-x86, kmod); nothing when all is there.
pub(super) fn host_steps(has_lists: bool, missing: &[&str]) -> Vec<Step> {
    let mut steps = Vec::new();
    if !has_lists {
        steps.push(Step::tool("apt", "apt-get", &["update"]));
    }
    if missing.is_empty() {
        return steps;
    }
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend_from_slice(missing);
    steps.push(Step::tool("apt", "apt-get", &args).with_env("DEBIAN_FRONTEND", "noninteractive"));
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
fn unpack(root: &Path, progress: &mut Progress, debs: &Path, work: &Path, package: &str) -> Result<PathBuf, Failure> {
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
        let config = std::fs::read_to_string(&config_path).map_err(|e| format!("{}: {e}", config_path.display()))?;
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
