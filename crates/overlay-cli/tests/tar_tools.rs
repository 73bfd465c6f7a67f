//! The differential corpus: tars that real tools write, applied with the
//! real `overlay2 apply`, must make exactly the tree GNU tar's own `-x`
//! makes of the same tar.
//!
//! One generated tree holds a case per top-level directory, each on a
//! boundary of the tar formats (see [`build_tree`]): names and symlink
//! targets of 99, 100, 101, 155, 156, 255, 256 and 4,000 bytes, directories
//! whose first 100 bytes end in '/', non-UTF-8 names, sparse files, hard
//! links to long names, a 9 GiB sparse file, ids over 2^21, devices, fifos,
//! xattrs, setuid and friends. Each writer ([`writers`]) archives every
//! case it can hold, and says which it leaves out and why. For each tar:
//!
//! 1. GNU tar extracts it (as root: owners, modes, devices, `user.*` and
//!    `trusted.*` xattrs); that extraction must match the source tree for
//!    the cases written (so a writer that silently drops a long name, or a
//!    tar that holds nothing, fails here), less what the writer cannot
//!    keep (xattrs, holes);
//! 2. `overlay2 apply` applies it to a fresh layer, whose `diff` dir must
//!    match GNU tar's extraction entry by entry: names, types, modes,
//!    owners, sizes, data, where a sparse file's data lies, link targets,
//!    hard link groups, device numbers, xattrs (`security.*` left out: the
//!    host's), mtimes to the second (`overlay_fs::observe_extraction`).
//!
//! Writers: GNU tar (`gnu`, `oldgnu`, `posix`, `ustar`), bsdtar (pax and
//! gnutar), Python's tarfile (GNU and PAX), busybox tar, Go's archive/tar
//! (`testdata/gotar`, run with `go run`, offline). A tool that is not
//! installed is skipped with the reason printed; CI installs them all.
//! Needs root (the tree has devices and foreign owners; GNU tar and the
//! import chown) and an overlay2 home the binary accepts.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use overlay_fs::{HostFs, Observe, observe_extraction};

// ---------------------------------------------------------------- the tree

/// Every case: one top-level directory of the source tree.
const CASES: &[&str] = &[
    "plain",
    "names",
    "names-4000",
    "links",
    "links-long",
    "slash-dirs",
    "non-utf8",
    "sparse",
    "hardlinks",
    "hardlinks-long",
    "big-sparse",
    "big-ids",
    "devices",
    "xattrs",
    "modes",
    "times",
];

/// The name lengths the formats break at: ustar's 100-byte name field and
/// 155-byte prefix (256 with the slash between), NAME_MAX (255), and far
/// beyond any header field.
const BOUNDARIES: [usize; 7] = [99, 100, 101, 155, 156, 255, 256];

/// 9 GiB: over 8 GiB, the largest size 11 octal digits hold.
const NINE_GIB: u64 = 9 << 30;

/// A relative path of exactly `len` bytes under `case` whose last
/// component is at most 100 bytes and its directories' at most 99 (so
/// every directory entry, slash included, fits a ustar name field); up to
/// 256 bytes it splits into a ustar prefix and name.
fn path_of_len(case: &str, len: usize) -> String {
    let mut dir = format!("{case}/{len}-");
    let last = 100.min(len - dir.len() - 2);
    let mut fill = len - dir.len() - 1 - last;
    let mut component = dir.len() - case.len() - 1;
    while fill > 0 {
        if component == 99 && fill >= 2 {
            dir.push('/');
            fill -= 1;
            component = 0;
        }
        dir.push('d');
        fill -= 1;
        component += 1;
    }
    let path = format!("{dir}/{}", "f".repeat(last));
    assert_eq!(path.len(), len, "test bug: {path}");
    path
}

/// A symlink target of exactly `len` bytes, components under NAME_MAX.
fn target_of_len(len: usize) -> String {
    let mut t = String::new();
    while len - t.len() > 201 {
        t.push_str(&"t".repeat(200));
        t.push('/');
    }
    t.push_str(&"x".repeat(len - t.len()));
    t
}

fn os(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes.to_vec()))
}

fn write_file(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

fn symlink(target: impl AsRef<Path>, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, path).unwrap();
}

/// A file of `len` bytes with `data` at each offset, holes between.
fn sparse_file(path: &Path, len: u64, data: &[(u64, &[u8])]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::File::create(path).unwrap();
    for (offset, bytes) in data {
        f.seek(SeekFrom::Start(*offset)).unwrap();
        f.write_all(bytes).unwrap();
    }
    f.set_len(len).unwrap();
}

fn mknod(path: &Path, kind: rustix::fs::FileType, major: u32, minor: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mode = rustix::fs::Mode::from_raw_mode(0o640);
    rustix::fs::mknodat(rustix::fs::CWD, path, kind, mode, rustix::fs::makedev(major, minor)).unwrap();
}

fn xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("lsetxattr {} {name}: {e}", path.display()));
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Builds every case under `src`, then gives every entry its own whole-
/// second mtime (children before their directories).
fn build_tree(src: &Path) {
    let p = |rel: &str| src.join(rel);
    // plain: the everyday entries and the 512-byte block edge.
    write_file(&p("plain/empty"), b"");
    write_file(&p("plain/one"), b"1");
    write_file(&p("plain/block"), &[b'b'; 512]);
    write_file(&p("plain/block-and-one"), &[b'c'; 513]);
    write_file(&p("plain/nested/a/b/c/file"), b"deep\n");
    std::fs::create_dir_all(p("plain/empty-dir")).unwrap();
    symlink("one", &p("plain/rel-link"));
    symlink("/etc/passwd", &p("plain/abs-link"));
    symlink("nowhere/x", &p("plain/dangling"));
    symlink("../plain/one", &p("plain/dotdot-link"));
    for odd in [
        "new\nline",
        "tab\there",
        "back\\slash",
        " spaces ",
        "-dash",
        "=equals=",
        "%25%3D",
    ] {
        write_file(&p(&format!("plain/{odd}")), odd.as_bytes());
    }
    // names: files whose whole tar name is each boundary long.
    for len in BOUNDARIES {
        let rel = path_of_len("names", len);
        write_file(&p(&rel), format!("{len}\n").as_bytes());
    }
    let rel = path_of_len("names-4000", 4000);
    write_file(&p(&rel), b"4000\n");
    // links: symlink targets of each boundary length; ustar holds 100.
    for len in [99, 100] {
        symlink(target_of_len(len), &p(&format!("links/t{len}")));
    }
    for len in [101, 155, 156, 255, 256, 4000] {
        symlink(target_of_len(len), &p(&format!("links-long/t{len}")));
    }
    // slash-dirs: a directory named in exactly 100 bytes with its slash,
    // and one whose long name's first 100 bytes end at an inner '/'
    // (issue #18: the header's name field holds that cut).
    let d1 = format!("slash-dirs/{}", "d".repeat(88));
    assert_eq!(d1.len() + 1, 100);
    write_file(&p(&format!("{d1}/service.proto")), b"syntax = \"proto3\";\n");
    let d2 = format!("slash-dirs/{}/{}", "e".repeat(60), "f".repeat(27));
    assert_eq!(d2.len() + 1, 100);
    write_file(&p(&format!("{d2}/x/y.txt")), b"y\n");
    // non-utf8: names and a target that are not UTF-8.
    write_file(&src.join(os(b"non-utf8/caf\xe9")), b"latin-1\n");
    write_file(&src.join(os(b"non-utf8/\xff\xfe dir/inside")), b"x");
    symlink(os(b"caf\xe9"), &src.join("non-utf8/link"));
    let long: Vec<u8> = [&b"non-utf8/"[..], &[0xff; 60], b"/", &[0xfe; 80]].concat();
    write_file(&src.join(os(&long)), b"long and not UTF-8\n");
    // sparse: holes at the end, data at the end, nothing but a hole.
    sparse_file(&p("sparse/ends-in-a-hole"), 3 << 20, &[(1 << 20, &[7; 4096])]);
    sparse_file(
        &p("sparse/ends-in-data"),
        2 << 20,
        &[(0, b"head"), ((2 << 20) - 4, b"tail")],
    );
    sparse_file(&p("sparse/all-hole"), 1 << 20, &[]);
    // hardlinks: one inode, three names; then long names both ways.
    write_file(&p("hardlinks/orig"), b"shared\n");
    std::fs::create_dir_all(p("hardlinks/sub")).unwrap();
    std::fs::hard_link(p("hardlinks/orig"), p("hardlinks/link")).unwrap();
    std::fs::hard_link(p("hardlinks/orig"), p("hardlinks/sub/link")).unwrap();
    let target = path_of_len("hardlinks-long", 200);
    write_file(&p(&target), b"linked by long names\n");
    for len in [150, 4000] {
        let link = path_of_len("hardlinks-long", len);
        std::fs::create_dir_all(p(&link).parent().unwrap()).unwrap();
        std::fs::hard_link(p(&target), p(&link)).unwrap();
    }
    // big-sparse: 9 GiB, a few bytes of data.
    sparse_file(
        &p("big-sparse/nine-gib"),
        NINE_GIB,
        &[(4 << 30, b"middle"), (NINE_GIB - 3, b"end")],
    );
    // big-ids: over 2^21 - 1, the largest 7 octal digits hold.
    write_file(&p("big-ids/file"), b"ids\n");
    std::os::unix::fs::lchown(p("big-ids/file"), Some(3_000_000), Some(3_000_001)).unwrap();
    std::fs::create_dir_all(p("big-ids/dir")).unwrap();
    std::os::unix::fs::lchown(p("big-ids/dir"), Some(4_000_000), Some(4_000_001)).unwrap();
    symlink("file", &p("big-ids/link"));
    std::os::unix::fs::lchown(p("big-ids/link"), Some(1 << 21), Some(1 << 21)).unwrap();
    // devices and a fifo.
    use rustix::fs::FileType as T;
    mknod(&p("devices/null"), T::CharacterDevice, 1, 3);
    mknod(&p("devices/sda1"), T::BlockDevice, 8, 1);
    mknod(&p("devices/big-numbers"), T::CharacterDevice, 259, 65536);
    mknod(&p("devices/fifo"), T::Fifo, 0, 0);
    // xattrs: user.* and trusted.* (binary values too); user.* is not
    // allowed on symlinks.
    write_file(&p("xattrs/file"), b"x\n");
    xattr(&p("xattrs/file"), "user.a", b"1");
    xattr(&p("xattrs/file"), "trusted.b", b"\0\n\xff binary");
    std::fs::create_dir_all(p("xattrs/dir")).unwrap();
    xattr(&p("xattrs/dir"), "user.dir", b"on a directory");
    symlink("file", &p("xattrs/link"));
    xattr(&p("xattrs/link"), "trusted.link", b"on a symlink");
    // modes: the bits chown clears, and none at all.
    for (name, mode, owner) in [
        ("setuid", 0o4755, None),
        ("setgid", 0o2755, None),
        ("none", 0o000, None),
        ("owned", 0o640, Some((1000, 1000))),
        ("setuid-owned", 0o4750, Some((1000, 2000))),
    ] {
        let path = p(&format!("modes/{name}"));
        write_file(&path, name.as_bytes());
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).unwrap();
        }
        chmod(&path, mode);
    }
    std::fs::create_dir_all(p("modes/sticky-dir")).unwrap();
    chmod(&p("modes/sticky-dir"), 0o1777);
    for name in ["epoch", "last-octal", "past-octal", "dir/inside"] {
        write_file(&p(&format!("times/{name}")), name.as_bytes());
    }
    set_times(src, &mut 1_600_000_000);
    // 11 octal digits end at 2^33 - 1 seconds (year 2242).
    for (name, t) in [
        ("epoch", 0),
        ("last-octal", (1 << 33) - 1),
        ("past-octal", (1 << 33) + 5),
        ("dir", (1 << 33) + 99),
    ] {
        set_time(&p(&format!("times/{name}")), t);
    }
}

fn set_time(path: &Path, secs: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(rustix::fs::CWD, path, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

/// Distinct whole-second times, depth first, a directory after its
/// entries (setting a child's time does not change its parent's).
fn set_times(dir: &Path, next: &mut i64) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            set_times(&path, next);
        }
        *next += 7;
        set_time(&path, *next);
    }
}

// ----------------------------------------------------------------- writers

/// A tool that writes tars.
struct Writer {
    name: &'static str,
    /// The executable it needs, and the Debian package that has it.
    tool: &'static str,
    package: &'static str,
    /// Cases this writer's format cannot hold, and why.
    leaves_out: &'static [(&'static str, &'static str)],
    /// Does the tar keep xattrs (else GNU tar's extraction has none)?
    xattrs: bool,
    /// Does the tar keep holes (else they are written, and read back, as
    /// zeros)?
    holes: bool,
    /// The command writing `out` from `cases` under `src`.
    command: fn(src: &Path, cases: &[&str], out: &Path) -> Command,
}

const NO_SPARSE: (&str, &str) = (
    "big-sparse",
    "writes no sparse files: the 9 GiB would be written out as zeros",
);
const USTAR_LIMITS: &[(&str, &str)] = &[
    (
        "names-4000",
        "ustar names end at 256 bytes (155-byte prefix, '/', 100-byte name)",
    ),
    ("links-long", "ustar link targets end at 100 bytes"),
    ("hardlinks-long", "ustar hard link targets end at 100 bytes"),
    ("big-ids", "ustar ids end at 2^21 - 1 (7 octal digits)"),
    (
        "big-sparse",
        "ustar has no sparse files, and sizes end below 8 GiB (11 octal digits)",
    ),
    (
        "times",
        "ustar times end at 2^33 - 1 seconds, in 2242 (11 octal digits)",
    ),
];

fn gnu_tar(format: &'static str) -> fn(&Path, &[&str], &Path) -> Command {
    fn with(format: &str, src: &Path, cases: &[&str], out: &Path) -> Command {
        let mut c = Command::new("tar");
        c.arg(format!("--format={format}"));
        match format {
            "posix" => c.args(["-S", "--xattrs", "--xattrs-include=*"]),
            "ustar" => &mut c,
            _ => c.arg("-S"),
        };
        c.arg("-C").arg(src).arg("-cf").arg(out).args(cases);
        c
    }
    match format {
        "gnu" => |s, c, o| with("gnu", s, c, o),
        "oldgnu" => |s, c, o| with("oldgnu", s, c, o),
        "posix" => |s, c, o| with("posix", s, c, o),
        _ => |s, c, o| with("ustar", s, c, o),
    }
}

fn bsdtar(format: &str, src: &Path, cases: &[&str], out: &Path) -> Command {
    let mut c = Command::new("bsdtar");
    c.arg(format!("--format={format}"))
        .arg("-C")
        .arg(src)
        .arg("-cf")
        .arg(out)
        .args(cases);
    c
}

/// Python's tarfile, adding each case as `tar -C SRC` would name it.
fn python(format: &str, src: &Path, cases: &[&str], out: &Path) -> Command {
    const SCRIPT: &str = "import os, sys, tarfile\n\
        fmt, out, src = getattr(tarfile, sys.argv[1]), sys.argv[2], sys.argv[3]\n\
        os.chdir(src)\n\
        with tarfile.open(out, 'w', format=fmt) as t:\n\
        \x20   for case in sys.argv[4:]:\n\
        \x20       t.add(case)\n";
    let mut c = Command::new("python3");
    c.arg("-c").arg(SCRIPT).arg(format).arg(out).arg(src).args(cases);
    c
}

fn writers() -> Vec<Writer> {
    let gnu = |name, format: &'static str, leaves_out, xattrs, holes| Writer {
        name,
        tool: "tar",
        package: "tar",
        leaves_out,
        xattrs,
        holes,
        command: gnu_tar(format),
    };
    vec![
        gnu("GNU tar --format=gnu -S", "gnu", &[], false, true),
        gnu("GNU tar --format=oldgnu -S", "oldgnu", &[], false, true),
        gnu("GNU tar --format=posix -S --xattrs", "posix", &[], true, true),
        gnu("GNU tar --format=ustar", "ustar", USTAR_LIMITS, false, false),
        Writer {
            name: "bsdtar (restricted pax)",
            tool: "bsdtar",
            package: "libarchive-tools",
            leaves_out: &[],
            xattrs: true,
            holes: true,
            command: |s, c, o| bsdtar("pax", s, c, o),
        },
        Writer {
            name: "bsdtar --format=gnutar",
            tool: "bsdtar",
            package: "libarchive-tools",
            leaves_out: &[
                NO_SPARSE,
                (
                    "times",
                    "libarchive's gnutar writer clamps times past 2^33 - 1 to it, silently",
                ),
            ],
            xattrs: false,
            holes: false,
            command: |s, c, o| bsdtar("gnutar", s, c, o),
        },
        Writer {
            name: "Python tarfile GNU_FORMAT",
            tool: "python3",
            package: "python3",
            leaves_out: &[NO_SPARSE],
            xattrs: false,
            holes: false,
            command: |s, c, o| python("GNU_FORMAT", s, c, o),
        },
        Writer {
            name: "Python tarfile PAX_FORMAT",
            tool: "python3",
            package: "python3",
            leaves_out: &[NO_SPARSE],
            xattrs: false,
            holes: false,
            command: |s, c, o| python("PAX_FORMAT", s, c, o),
        },
        Writer {
            name: "busybox tar",
            tool: common::BUSYBOX,
            package: "busybox-static",
            leaves_out: &[NO_SPARSE],
            xattrs: false,
            holes: false,
            command: |s, c, o| {
                let mut cmd = Command::new(common::BUSYBOX);
                cmd.arg("tar").arg("-C").arg(s).arg("-cf").arg(o).args(c);
                cmd
            },
        },
        Writer {
            name: "Go archive/tar (testdata/gotar)",
            tool: "go",
            package: "golang-go",
            leaves_out: &[NO_SPARSE],
            xattrs: true,
            holes: false,
            command: |s, c, o| {
                let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/gotar");
                let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-cache");
                let mut cmd = Command::new("go");
                cmd.current_dir(dir)
                    .env("GOCACHE", cache)
                    .env("GOTOOLCHAIN", "local")
                    .env("GOFLAGS", "-mod=mod")
                    .env("GOPROXY", "off")
                    .env("CGO_ENABLED", "0")
                    .args(["run", "."])
                    .arg(o)
                    .arg(s)
                    .args(c);
                cmd
            },
        },
    ]
}

// ------------------------------------------------------------- comparing

/// The tree at `root`, as two extractions of one tar must agree on it:
/// `xattrs` says whether `user.*` and `trusted.*` count (`security.*` is
/// the host's), `holes` whether where data lies does.
fn observed(root: &Path, xattrs: bool, holes: bool) -> BTreeMap<PathBuf, String> {
    let user_trusted = |n: &OsStr| {
        let n = n.as_bytes();
        (n.starts_with(b"user.") || n.starts_with(b"trusted.")) && !overlay_archive::whiteout::is_private_xattr(n)
    };
    let none = |_: &OsStr| false;
    let how = Observe {
        xattrs: if xattrs { &user_trusted } else { &none },
        hardlinks: true,
        root: false,
    };
    let mut tree = observe_extraction(&HostFs::new(root).unwrap(), &how).unwrap();
    if !holes {
        for desc in tree.values_mut() {
            if let Some(start) = desc.find(" extents=[") {
                let end = start + desc[start..].find(']').unwrap() + 1;
                desc.replace_range(start..end, "");
            }
        }
    }
    tree
}

/// The entries of `tree` in the given top-level cases.
fn only(tree: &BTreeMap<PathBuf, String>, cases: &[&str]) -> BTreeMap<PathBuf, String> {
    tree.iter()
        .filter(|(p, _)| {
            p.components()
                .next()
                .is_some_and(|c| cases.iter().any(|k| c.as_os_str() == *k))
        })
        .map(|(p, d)| (p.clone(), d.clone()))
        .collect()
}

/// Every difference between two trees, one line each.
fn differences(want: &BTreeMap<PathBuf, String>, got: &BTreeMap<PathBuf, String>) -> String {
    let mut out = String::new();
    for path in want.keys().chain(got.keys().filter(|p| !want.contains_key(*p))) {
        match (want.get(path), got.get(path)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => out += &format!("\n  {}:\n    want {a:?}\n    got  {b:?}", path.display()),
        }
    }
    out
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{}: {e}", common::describe(cmd)))?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!("{} exited {}: {stderr}", common::describe(cmd), out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// GNU tar's extraction, with everything it can restore as root.
/// Directory times last (`--delay-directory-restore`), as Docker and
/// overlay2 set them: by default GNU tar sets a directory's time when the
/// archive moves past it, and bsdtar comes back to directories (its hard
/// links go last), which would leave them with the time of extraction.
fn gnu_extract(tar: &Path, into: &Path) -> Result<String, String> {
    std::fs::create_dir(into).unwrap();
    run(Command::new("tar")
        .args(["-x", "--same-owner", "--numeric-owner", "--same-permissions"])
        .arg("--delay-directory-restore")
        .args(["--xattrs", "--xattrs-include=*", "-C"])
        .arg(into)
        .arg("-f")
        .arg(tar))
}

/// A home for `overlay2`, with one empty layer per writer.
struct Home(PathBuf);

impl Home {
    fn overlay2(&self, args: &[&OsStr]) -> Result<String, String> {
        run(Command::new(common::BIN)
            .arg("--home")
            .arg(&self.0)
            .args(args)
            .env_remove("OVERLAY2_HOME"))
    }

    /// Applies `tar` to a new layer `id`; its `diff` dir.
    fn apply(&self, id: &str, tar: &Path) -> Result<PathBuf, String> {
        self.overlay2(&["create".as_ref(), id.as_ref()])?;
        self.overlay2(&["apply".as_ref(), id.as_ref(), tar.as_os_str()])?;
        Ok(self.0.join(id).join("diff"))
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = self.overlay2(&["cleanup".as_ref()]);
    }
}

/// One writer's round: what went wrong, if anything.
fn round(
    w: &Writer,
    src: &Path,
    source: &BTreeMap<PathBuf, String>,
    work: &Path,
    home: &Home,
    id: &str,
) -> Result<(), String> {
    let cases: Vec<&str> = CASES
        .iter()
        .copied()
        .filter(|c| !w.leaves_out.iter().any(|(l, _)| l == c))
        .collect();
    let tar = work.join(format!("{id}.tar"));
    run(&mut (w.command)(src, &cases, &tar)).map_err(|e| format!("writing the tar: {e}"))?;
    let gnu = work.join(format!("{id}.gnu"));
    gnu_extract(&tar, &gnu).map_err(|e| format!("GNU tar's extraction: {e}"))?;
    // The tar holds what the writer says it can: GNU tar's extraction is
    // the source, less what the format does not keep.
    let want = only(source, &cases);
    let want = if w.xattrs && w.holes {
        want
    } else {
        only(&observed(src, w.xattrs, w.holes), &cases)
    };
    let extracted = observed(&gnu, w.xattrs, w.holes);
    if extracted != want {
        return Err(format!(
            "GNU tar's extraction differs from the source (the tar lost something):{}",
            differences(&want, &extracted)
        ));
    }
    // Ours against GNU tar's, in everything both can observe.
    let diff = home.apply(id, &tar).map_err(|e| format!("overlay2 apply: {e}"))?;
    let gnu_tree = observed(&gnu, true, true);
    let ours = observed(&diff, true, true);
    if ours != gnu_tree {
        return Err(format!(
            "overlay2 apply differs from GNU tar's extraction:{}",
            differences(&gnu_tree, &ours)
        ));
    }
    std::fs::remove_dir_all(&gnu).unwrap();
    std::fs::remove_file(&tar).unwrap();
    Ok(())
}

#[test]
fn tars_from_real_tools_apply_as_gnu_tar_extracts_them() {
    const TEST: &str = "tars_from_real_tools_apply_as_gnu_tar_extracts_them";
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped {TEST}: needs root (devices, foreign owners and trusted.* xattrs in the tree)");
        return;
    }
    let gnu_version = Command::new("tar").arg("--version").output();
    if !gnu_version.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("GNU tar")) {
        eprintln!("skipped {TEST}: GNU tar (the oracle) is not installed (Debian: tar)");
        return;
    }
    let dir = common::temp_dir("tar-tools");
    let home = Home(dir.path().join("home"));
    if let Err(e) = home.overlay2(&["status".as_ref()]) {
        eprintln!("skipped {TEST}: the driver cannot run here: {e}");
        return;
    }
    let started = Instant::now();
    let src = dir.path().join("src");
    build_tree(&src);
    let source = observed(&src, true, true);
    assert!(
        source.len() > 60 && CASES.iter().all(|c| source.contains_key(Path::new(c))),
        "the tree has every case: {source:?}"
    );
    // What the cases are about is in the tree, as observed.
    for (path, needle) in [
        (
            "big-sparse/nine-gib",
            "size=9663676416 extents=[(4294967296, 4096), (9663672320, 4096)]",
        ),
        ("sparse/ends-in-a-hole", "size=3145728 extents=[(1048576, 4096)]"),
        ("xattrs/file", r#"("trusted.b", Some([0, 10, 255"#),
        ("xattrs/link", "trusted.link"),
        ("devices/big-numbers", "CharDevice mode=640 owner=0:0 rdev=268501760"), // makedev(259, 65536)
        ("big-ids/file", "owner=3000000:3000001"),
        ("modes/setuid-owned", "mode=4750 owner=1000:2000"),
        ("hardlinks/sub/link", "nlink=3 inode-of="),
        ("times/past-octal", "mtime=8589934597"),
        ("times/dir", "mtime=8589934691"),
    ] {
        let desc = source.get(Path::new(path)).map_or("", String::as_str);
        assert!(desc.contains(needle), "{path}: {needle:?} not in {desc:?}");
    }
    let mut failures = Vec::new();
    for (i, w) in writers().iter().enumerate() {
        if !common::have_tool(w.tool) {
            eprintln!(
                "skipped {}: {} is not installed (Debian: {})",
                w.name, w.tool, w.package
            );
            continue;
        }
        let took = Instant::now();
        let result = round(w, &src, &source, dir.path(), &home, &format!("w{i}"));
        let left_out: Vec<String> = w.leaves_out.iter().map(|(c, why)| format!("{c} ({why})")).collect();
        let verdict = if result.is_ok() { "ok  " } else { "FAIL" };
        println!("{verdict} {:<36} {:>6.2}s", w.name, took.elapsed().as_secs_f64());
        if !left_out.is_empty() {
            println!("       leaves out: {}", left_out.join("; "));
        }
        if let Err(e) = result {
            failures.push(format!("{}: {e}", w.name));
        }
    }
    println!("all writers in {:.1}s", started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
