//! Fuzzes `overlay_archive::import` against GNU tar as the oracle.
//!
//! Each input is a tar stream (its header checksums made right first, see
//! [`fix_checksums`], so mutations reach past the checksum). GNU tar
//! extracts it as root into a fresh directory (`-C`, with the options of
//! the corpus test `crates/overlay-cli/tests/tar_tools.rs`: owners, modes,
//! `user.*`/`trusted.*` xattrs, directory times last). Where GNU tar
//! exits 0, our import into
//! a `HostFs` over another fresh directory must
//!
//! - make the same tree, as `overlay_fs::observe_extraction` sees both
//!   (names, types, modes, owners, sizes, data and holes, link targets,
//!   hard link groups, devices, xattrs but `security.*` and overlayfs's
//!   own, mtimes to the second; the root directory is left out: GNU tar
//!   gives it a `./` entry's mode, import never touches it); or
//! - refuse with `ArchiveError::Hostile` whose reason names one of the
//!   safety rules in [`SAFETY_RULES`]; or refuse an entry type Docker
//!   refuses too (`ArchiveError::Unsupported`: GNU tar extracts an unknown
//!   type as a regular file, with a warning); or refuse a stream that ends
//!   inside a header (GNU tar drops a last block shorter than 512 bytes
//!   without a word; import takes it for what it is, a cut stream, so an
//!   interrupted download never applies as a complete layer).
//!
//! Anything else is a crash. Where GNU tar fails, the import still runs
//! (no panic allowed) and nothing is compared.
//!
//! **Whiteouts differ by design**: import turns `.wh.NAME` into a 0:0
//! char device (or a deletion) and `.wh..wh..opq` into an xattr, GNU tar
//! makes plain files. An input holding the bytes `.wh.` anywhere is only
//! imported, never compared (over-cautious: the name may hide in a PAX
//! record, a long name or a link target).
//!
//! **The host**: GNU tar runs as root on hostile input. It always gets a
//! fresh directory with `-C`; it strips leading `/`, refuses `..`, and
//! makes symlinks that point outside (absolute or with `..`) only after
//! everything else, so no later entry goes through them. `cargo xtask fuzz
//! --target gnu_oracle` adds a private mount namespace with a tmpfs on the
//! work directory (`OVERLAY_FUZZ_WORK`), so what is extracted never shows
//! on the host and is gone when the run ends. Needs root and GNU tar.

#![no_main]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use overlay_archive::{ArchiveError, ImportOptions, import};
use overlay_fs::{HostFs, Observe, observe_extraction};

/// What a refusal must name, with the rule it stands for. A new reason
/// for refusing belongs here only if it is a safety rule.
const SAFETY_RULES: &[(&str, &str)] = &[
    ("absolute name", "no absolute names (escape)"),
    ("'..' component", "no '..' (escape)"),
    ("NUL byte", "no NUL in names (C readers cut there)"),
    ("PATH_MAX", "no names the kernel cannot take"),
    ("whiteout", "no hostile whiteouts"),
    (
        "hard link",
        "hard links only to entries of this tar, never to the root or a directory",
    ),
    ("symlink with an empty target", "no empty symlink targets"),
    (
        "bytes of data",
        "no data on types that carry none (readers skip it or not)",
    ),
    ("disagrees with the header's size", "no PAX size lies (entry smuggling)"),
    ("tar readers", "nothing tar readers read differently (entry smuggling)"),
    (
        "GNU tar and Go",
        "nothing tar readers read differently (entry smuggling)",
    ),
    ("PAX", "no malformed PAX headers"),
    ("sparse", "sparse maps every reader reads alike, within the filesystem"),
    ("has no mapping", "ids within 32 bits"),
    ("extension header of", "bounded extension headers"),
    ("negative", "no negative numbers"),
];

/// How long GNU tar may take on one input before it counts as failed.
const GNU_TAR_TIMEOUT: Duration = Duration::from_secs(20);

static WORK: LazyLock<PathBuf> = LazyLock::new(setup);

/// Checks root and GNU tar once; the directory inputs are extracted in.
fn setup() -> PathBuf {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(str::to_owned))
        .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"));
    if !root {
        eprintln!("gnu_oracle: needs root (GNU tar and the import make devices, chown, set trusted.* xattrs)");
        std::process::exit(2);
    }
    let version = Command::new("tar").arg("--version").output();
    if !version.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("GNU tar")) {
        eprintln!("gnu_oracle: GNU tar (the oracle) is not installed");
        std::process::exit(2);
    }
    match std::env::var_os("OVERLAY_FUZZ_WORK") {
        Some(dir) => PathBuf::from(dir),
        None => {
            eprintln!(
                "gnu_oracle: OVERLAY_FUZZ_WORK unset: extracting under {} without a private tmpfs \
                 (`cargo xtask fuzz --target gnu_oracle` sets one up)",
                std::env::temp_dir().display()
            );
            std::env::temp_dir()
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut tar = data.to_vec();
    fix_checksums(&mut tar);
    let dir = tempfile::tempdir_in(&*WORK).expect("a temporary directory in the work dir");
    let (input, gnu, ours) = (
        dir.path().join("in.tar"),
        dir.path().join("gnu"),
        dir.path().join("ours"),
    );
    std::fs::write(&input, &tar).expect("write the input");
    std::fs::create_dir(&gnu).expect("mkdir gnu");
    std::fs::create_dir(&ours).expect("mkdir ours");
    let started = now();
    let gnu_ok = gnu_tar(&input, &gnu, &dir.path().join("stderr"));
    let fs = HostFs::new(&ours).expect("HostFs");
    let got = import(&fs, &tar[..], &ImportOptions::default());
    let run = started - 1..=now() + 1;
    if !gnu_ok || tar.windows(4).any(|w| w == b".wh.") {
        return;
    }
    let stderr = || std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
    match got {
        Ok(_) => {
            let want = observed(&gnu, &run);
            let ours = observed(&ours, &run);
            if want != ours {
                panic!(
                    "import made another tree than GNU tar's -x:{}\nGNU tar said: {}",
                    differences(&want, &ours),
                    stderr()
                );
            }
        }
        Err(ArchiveError::Hostile { name, reason }) => {
            if !SAFETY_RULES.iter().any(|(needle, _)| reason.contains(needle)) {
                panic!("GNU tar extracts it, import refuses {name:?} for a reason that names no safety rule: {reason}");
            }
        }
        Err(ArchiveError::Unsupported { .. }) => {}
        Err(e @ ArchiveError::Read(_))
            if !tar.len().is_multiple_of(512) && e.to_string().contains("ends inside a header") => {}
        Err(e) => panic!("GNU tar extracts it, import fails: {e}\nGNU tar said: {}", stderr()),
    }
});

/// Runs GNU tar's extraction; did it exit 0 in time?
fn gnu_tar(input: &Path, into: &Path, stderr: &Path) -> bool {
    let mut child = Command::new("tar")
        .args(["-x", "--same-owner", "--numeric-owner", "--same-permissions"])
        // Directory times last, as Docker and import set them. (Not
        // --recursive-unlink: it empties a directory an entry names again,
        // which Docker and import keep.)
        .arg("--delay-directory-restore")
        .args(["--xattrs", "--xattrs-include=*", "-C"])
        .arg(into)
        .arg("-f")
        .arg(input)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).expect("stderr file"))
        .spawn()
        .expect("spawn GNU tar");
    let started = Instant::now();
    loop {
        match child.try_wait().expect("wait for GNU tar") {
            Some(status) => return status.success(),
            None if started.elapsed() > GNU_TAR_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            None => std::thread::sleep(Duration::from_micros(200)),
        }
    }
}

fn now() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| d.as_secs() as i64)
}

/// A tree as two extractions of one tar must agree on it (the corpus
/// test's view): `user.*` and `trusted.*` xattrs but overlayfs's own. A
/// time inside `run` is read as "now": a directory no entry names (a
/// parent the tar leaves out) is made with the time of its making, which
/// differs between the two runs.
fn observed(root: &Path, run: &std::ops::RangeInclusive<i64>) -> BTreeMap<PathBuf, String> {
    let xattrs = |n: &OsStr| {
        let n = n.as_bytes();
        (n.starts_with(b"user.") || n.starts_with(b"trusted.")) && !overlay_archive::whiteout::is_private_xattr(n)
    };
    let how = Observe {
        xattrs: &xattrs,
        hardlinks: true,
        root: false,
    };
    let mut tree = observe_extraction(&HostFs::new(root).expect("HostFs"), &how).expect("observe");
    for desc in tree.values_mut() {
        let Some(at) = desc.find(" mtime=") else { continue };
        let digits = &desc[at + 7..];
        let end = digits.find(' ').unwrap_or(digits.len());
        if digits[..end].parse().is_ok_and(|t: i64| run.contains(&t)) {
            desc.replace_range(at + 7..at + 7 + end, "now");
        }
    }
    tree
}

fn differences(want: &BTreeMap<PathBuf, String>, got: &BTreeMap<PathBuf, String>) -> String {
    let mut out = String::new();
    for path in want.keys().chain(got.keys().filter(|p| !want.contains_key(*p))) {
        match (want.get(path), got.get(path)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => out += &format!("\n  {}:\n    GNU tar: {a:?}\n    import:  {b:?}", path.display()),
        }
    }
    out
}

/// Makes every header's checksum right, walking the stream as a reader
/// does (header, the data its size field says, GNU sparse extension
/// blocks), up to the first zero block. Without this nearly every
/// mutation of a header is a checksum error, which both sides refuse.
fn fix_checksums(tar: &mut [u8]) {
    let mut pos = 0usize;
    while let Some(block) = tar.get_mut(pos..pos + 512) {
        if block.iter().all(|b| *b == 0) {
            return;
        }
        block[148..156].fill(b' ');
        let sum: u32 = block.iter().map(|b| u32::from(*b)).sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let size = size_field(&block[124..136]);
        let sparse = block[156] == b'S' && block[257..265] == *b"ustar  \0";
        let mut extended = sparse && block[482] != 0;
        pos += 512;
        while extended {
            match tar.get(pos + 504) {
                Some(flag) => extended = *flag != 0,
                None => return,
            }
            pos += 512;
        }
        match size.checked_add(511).map(|s| s / 512 * 512) {
            Some(skip) if skip <= (tar.len() - pos.min(tar.len())) as u64 => pos += skip as usize,
            _ => return,
        }
    }
}

/// A size field read leniently (octal digits, or base-256): only to find
/// the next header.
fn size_field(field: &[u8]) -> u64 {
    if field[0] & 0x80 != 0 {
        return field[4..].iter().fold(0u64, |v, b| v.wrapping_shl(8) | u64::from(*b));
    }
    field
        .iter()
        .skip_while(|b| **b == b' ' || **b == 0)
        .take_while(|b| (b'0'..=b'7').contains(*b))
        .fold(0u64, |v, d| v.wrapping_mul(8).wrapping_add(u64::from(d - b'0')))
}
