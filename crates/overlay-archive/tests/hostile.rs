//! Hostile layer tars never reach outside the root, and each gets a clear
//! outcome: refused with an error naming the entry, applied but only inside
//! the root, or a read error. Never a panic.
//!
//! The tars are written byte by byte (the `tar` crate's builder refuses
//! `..`, absolute names and the like): ustar, GNU and PAX headers, with
//! sizes and checksums that may lie. Every case of the table in [`cases`]
//! is imported into a `HostFs` rooted at `TMP/root` while a sentinel
//! directory `TMP/sentinel` sits beside it, with files, a subdirectory,
//! symlinks and xattrs. Symlinks in the tars point at the sentinel every
//! way an image could: its real absolute host path, `/`, `../..`,
//! `../../sentinel`, chains of links, links in subdirectories. The
//! sentinel is snapshot (lstat of every node: type, mode, owner, size,
//! mtime, ctime, link count, content, symlink target, xattrs with values)
//! before and after, and must be byte-for-byte unchanged; nothing new may
//! appear beside the root or at `/`. Then the outcome is checked, and the
//! same case runs on a `MemFs`, which must reach the same outcome.
//!
//! Whiteout and opaque markers through symlinks run in every whiteout mode
//! (overlay with `trusted.` and `user.` xattrs, and plain deletion).
//!
//! Import chowns every entry, makes whiteouts with mknod and may set
//! `trusted.*` xattrs: without root, the outcomes on `HostFs` are not
//! checked (containment still is) and the test says so.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use overlay_archive::{ArchiveError, ImportOptions, ImportStats, ImportWhiteouts, XattrNamespace, import};
use overlay_fs::{Fs, HostFs, MemFs};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// A raw tar writer: every byte of every header under the test's control.
// ---------------------------------------------------------------------------

const BLOCK: usize = 512;
const MTIME: u64 = 1_600_000_000;
/// The name every escape attempt tries to plant; it must never appear
/// outside the root.
const PWNED: &str = "overlay-archive-hostile-pwned";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Magic {
    /// POSIX ustar: `ustar\0` `00`, with the prefix field.
    Ustar,
    /// GNU: `ustar ` ` \0`, no prefix field.
    Gnu,
    /// Pre-POSIX: no magic at all.
    V7,
}

/// One 512-byte header, field by field.
#[derive(Debug, Clone)]
struct Header {
    name: Vec<u8>,
    prefix: Vec<u8>,
    kind: u8,
    mode: u64,
    uid: u64,
    gid: u64,
    size: u64,
    link: Vec<u8>,
    major: u64,
    minor: u64,
    magic: Magic,
}

impl Header {
    fn new(kind: u8, name: impl AsRef<[u8]>, size: u64) -> Self {
        Self {
            name: name.as_ref().to_vec(),
            prefix: Vec::new(),
            kind,
            mode: if kind == b'5' { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            size,
            link: Vec::new(),
            major: 0,
            minor: 0,
            magic: Magic::Ustar,
        }
    }

    fn block(&self) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        put(&mut b[0..100], &self.name);
        octal(&mut b[100..108], self.mode);
        octal(&mut b[108..116], self.uid);
        octal(&mut b[116..124], self.gid);
        number(&mut b[124..136], self.size);
        octal(&mut b[136..148], MTIME);
        b[156] = self.kind;
        put(&mut b[157..257], &self.link);
        match self.magic {
            Magic::Ustar => {
                b[257..263].copy_from_slice(b"ustar\0");
                b[263..265].copy_from_slice(b"00");
            }
            Magic::Gnu => {
                b[257..263].copy_from_slice(b"ustar ");
                b[263..265].copy_from_slice(b" \0");
            }
            Magic::V7 => {}
        }
        if self.magic != Magic::V7 {
            put(&mut b[265..297], b"root");
            put(&mut b[297..329], b"root");
            octal(&mut b[329..337], self.major);
            octal(&mut b[337..345], self.minor);
        }
        if self.magic == Magic::Ustar {
            put(&mut b[345..500], &self.prefix);
        }
        seal(&mut b);
        b
    }
}

/// Copies `value` into a NUL-padded field.
fn put(field: &mut [u8], value: &[u8]) {
    assert!(
        value.len() <= field.len(),
        "test bug: {} bytes for a {}-byte field",
        value.len(),
        field.len()
    );
    field[..value.len()].copy_from_slice(value);
}

/// Zero-padded octal digits and a NUL.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    assert_eq!(s.len(), digits, "test bug: {value} does not fit in octal");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

/// Octal when it fits, else GNU base-256.
fn number(field: &mut [u8], value: u64) {
    if value < 1 << (3 * (field.len() as u64 - 1)) {
        octal(field, value);
    } else {
        field.fill(0);
        field[0] = 0x80;
        let n = field.len();
        field[n - 8..].copy_from_slice(&value.to_be_bytes());
    }
}

/// Writes the checksum of a header (computed with the field as spaces).
fn seal(b: &mut [u8; BLOCK]) {
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|x| u32::from(*x)).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// One PAX record, `LEN key=value\n`, where LEN counts itself.
fn record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len.to_string().len() + body != len {
        len = len.to_string().len() + body;
    }
    let mut r = format!("{len} ").into_bytes();
    r.extend_from_slice(key);
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// A tar stream under construction.
#[derive(Default)]
struct Tar(Vec<u8>);

impl Tar {
    fn new() -> Self {
        Self::default()
    }

    /// Appends bytes as they are.
    fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// Appends a header (whatever its size field says) and `data` padded
    /// to a whole block.
    fn entry(mut self, h: &Header, data: &[u8]) -> Self {
        self.0.extend_from_slice(&h.block());
        self.0.extend_from_slice(data);
        let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
        self.0.resize(self.0.len() + pad, 0);
        self
    }

    fn file(self, name: impl AsRef<[u8]>, data: &[u8]) -> Self {
        self.entry(&Header::new(b'0', name, data.len() as u64), data)
    }

    fn dir(self, name: impl AsRef<[u8]>) -> Self {
        self.entry(&Header::new(b'5', name, 0), b"")
    }

    fn symlink(self, name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        let mut h = Header::new(b'2', name, 0);
        h.link = target.as_ref().to_vec();
        self.entry(&h, b"")
    }

    fn hardlink(self, name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        let mut h = Header::new(b'1', name, 0);
        h.link = target.as_ref().to_vec();
        self.entry(&h, b"")
    }

    fn node(self, kind: u8, name: impl AsRef<[u8]>, major: u64, minor: u64) -> Self {
        let mut h = Header::new(kind, name, 0);
        (h.major, h.minor) = (major, minor);
        self.entry(&h, b"")
    }

    /// A PAX extended header (`x`) for the next entry.
    fn pax(self, records: &[(&[u8], &[u8])]) -> Self {
        let data: Vec<u8> = records.iter().flat_map(|(k, v)| record(k, v)).collect();
        self.pax_raw(&data)
    }

    /// A PAX header for the next entry with `data` as its body, well
    /// formed or not.
    fn pax_raw(self, data: &[u8]) -> Self {
        self.entry(&Header::new(b'x', "PaxHeaders.0/next", data.len() as u64), data)
    }

    /// A GNU long name (`L`) or long link (`K`) for the next entry.
    fn gnu_long(self, kind: u8, value: &[u8]) -> Self {
        let mut data = value.to_vec();
        data.push(0);
        let mut h = Header::new(kind, "././@LongLink", data.len() as u64);
        h.magic = Magic::Gnu;
        self.entry(&h, &data)
    }

    /// Directory entries for every component of `rel`: a decoy of a host
    /// path, made inside the root.
    fn dirs_of(mut self, rel: &str) -> Self {
        let mut p = String::new();
        for c in rel.split('/') {
            p.push_str(c);
            p.push('/');
            self = self.dir(&p);
        }
        self
    }

    /// The stream with its end-of-archive marker (two zero blocks).
    fn end(mut self) -> Vec<u8> {
        self.0.resize(self.0.len() + 2 * BLOCK, 0);
        self.0
    }

    /// The stream as it is, without an end-of-archive marker.
    fn cut(self) -> Vec<u8> {
        self.0
    }
}

/// Sparse entries: the old GNU form and GNU's PAX 1.0 form.
impl Tar {
    /// A GNU `S` entry: `map` as `(offset, size)` pairs, four in the
    /// header and 21 per extension block, then `data` (the segments').
    fn gnu_sparse(self, name: &str, real_size: u64, map: &[(u64, u64)], data: &[u8]) -> Self {
        let mut h = Header::new(b'S', name, data.len() as u64);
        h.magic = Magic::Gnu;
        let mut b = h.block();
        let put_entries = |area: &mut [u8], entries: &[(u64, u64)]| {
            for (slot, &(offset, len)) in area.chunks_exact_mut(24).zip(entries) {
                number(&mut slot[..12], offset);
                number(&mut slot[12..], len);
            }
        };
        put_entries(&mut b[386..482], &map[..map.len().min(4)]);
        number(&mut b[483..495], real_size);
        let rest: Vec<_> = map.iter().skip(4).copied().collect();
        let exts: Vec<_> = rest.chunks(21).collect();
        b[482] = u8::from(!exts.is_empty());
        seal(&mut b);
        let mut t = self.raw(&b);
        for (i, chunk) in exts.iter().enumerate() {
            let mut ext = [0u8; BLOCK];
            put_entries(&mut ext[..504], chunk);
            ext[504] = u8::from(i + 1 < exts.len());
            t = t.raw(&ext);
        }
        let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
        t.raw(data).raw(&vec![0; pad])
    }

    /// A GNU PAX 1.0 sparse entry: `map_text` (the lines that open the
    /// data) padded to a block, then `data`; the header's size counts both.
    fn pax_sparse(self, name: &str, real_size: u64, map_text: &[u8], data: &[u8]) -> Self {
        let mut body = map_text.to_vec();
        body.resize(map_text.len().div_ceil(BLOCK) * BLOCK, 0);
        body.extend_from_slice(data);
        self.pax(&[
            (b"GNU.sparse.major", b"1"),
            (b"GNU.sparse.minor", b"0"),
            (b"GNU.sparse.name", name.as_bytes()),
            (b"GNU.sparse.realsize", real_size.to_string().as_bytes()),
        ])
        .entry(&Header::new(b'0', "GNUSparseFile.0/x", body.len() as u64), &body)
    }
}

/// Deterministic garbage.
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as u8
        })
        .collect()
}

/// A name of exactly `len` bytes whose components all fit `NAME_MAX`.
fn long_name(len: usize) -> String {
    let mut s = String::new();
    while len - s.len() > 201 {
        s.push_str(&"d".repeat(200));
        s.push('/');
    }
    s.push_str(&"f".repeat(len - s.len()));
    assert_eq!(s.len(), len);
    s
}

// ---------------------------------------------------------------------------
// The table.
// ---------------------------------------------------------------------------

/// Where the sentinel is: tars use its real absolute host path.
struct Env {
    /// `/tmp/.tmpXXXX/sentinel`
    s: String,
    /// `tmp/.tmpXXXX/sentinel`: the same path as a tar entry inside the root.
    s_rel: String,
}

/// What a case must come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Refused with an error (never [`ArchiveError::Read`]) whose message
    /// holds this text.
    Refused(&'static str),
    /// Applied without error, only inside the root.
    Contained,
    /// The stream is unreadable: [`ArchiveError::Read`].
    ReadError,
}

const TRUSTED: ImportWhiteouts = ImportWhiteouts::Overlay(XattrNamespace::Trusted);
const USER: ImportWhiteouts = ImportWhiteouts::Overlay(XattrNamespace::User);
const PLAIN: ImportWhiteouts = ImportWhiteouts::Plain;
const OVERLAY: &[ImportWhiteouts] = &[TRUSTED, USER];
const EVERY_MODE: &[ImportWhiteouts] = &[TRUSTED, USER, PLAIN];

struct Case {
    name: &'static str,
    tar: fn(&Env) -> Vec<u8>,
    outcome: Outcome,
    modes: &'static [ImportWhiteouts],
    /// Paths that must exist in the tree afterwards (`{S}` is `Env::s_rel`,
    /// `{P}` is [`PWNED`], `{L4095}` the 4095-byte name): proof that the
    /// entry was applied, inside.
    inside: &'static [&'static str],
    /// Paths that must not exist in the tree afterwards.
    absent: &'static [&'static str],
}

impl Case {
    fn new(name: &'static str, outcome: Outcome, tar: fn(&Env) -> Vec<u8>) -> Self {
        Self {
            name,
            tar,
            outcome,
            modes: &[TRUSTED, PLAIN],
            inside: &[],
            absent: &[],
        }
    }
    fn modes(mut self, modes: &'static [ImportWhiteouts]) -> Self {
        self.modes = modes;
        self
    }
    fn inside(mut self, paths: &'static [&'static str]) -> Self {
        self.inside = paths;
        self
    }
    fn absent(mut self, paths: &'static [&'static str]) -> Self {
        self.absent = paths;
        self
    }
}

/// Every class of hostile input, with its expected outcome.
fn cases() -> Vec<Case> {
    use Outcome::{Contained, ReadError, Refused};
    const DOTDOT: Outcome = Refused("name has a '..' component");
    const ABSOLUTE: Outcome = Refused("absolute name");
    const NOT_A_DIR: Outcome = Refused("not a directory");
    vec![
        // ---- `..` and absolute names, in every place a name can hide ----
        Case::new("dotdot: ../PWNED", DOTDOT, |_| {
            Tar::new().file(format!("../{PWNED}"), b"x").end()
        }),
        Case::new("dotdot: a/../../PWNED", DOTDOT, |_| {
            Tar::new().dir("a/").file(format!("a/../../{PWNED}"), b"x").end()
        }),
        Case::new("dotdot: ../sentinel/keep", DOTDOT, |_| {
            Tar::new().file("../sentinel/keep", b"x").end()
        }),
        Case::new("dotdot: directory a/..", DOTDOT, |_| Tar::new().dir("a/..").end()),
        Case::new("dotdot: symlink named ../PWNED", DOTDOT, |_| {
            Tar::new().symlink(format!("../{PWNED}"), "/").end()
        }),
        Case::new("dotdot: in the ustar prefix field", DOTDOT, |_| {
            let mut h = Header::new(b'0', "sentinel/keep", 1);
            h.prefix = b"..".to_vec();
            Tar::new().entry(&h, b"x").end()
        }),
        Case::new("dotdot: in a GNU long name", DOTDOT, |_| {
            let name = format!("{}/../../../sentinel/keep", "a".repeat(120));
            Tar::new().gnu_long(b'L', name.as_bytes()).file("short", b"x").end()
        }),
        Case::new("dotdot: in a PAX path", DOTDOT, |_| {
            Tar::new()
                .pax(&[(b"path", b"../../sentinel/keep")])
                .file("harmless", b"x")
                .end()
        }),
        Case::new("absolute: /PWNED", ABSOLUTE, |_| {
            Tar::new().file(format!("/{PWNED}"), b"x").end()
        }),
        Case::new("absolute: the sentinel's host path", ABSOLUTE, |e| {
            Tar::new().file(format!("{}/keep", e.s), b"x").end()
        }),
        Case::new("absolute: directory at the sentinel's host path", ABSOLUTE, |e| {
            Tar::new().dir(format!("{}/", e.s)).end()
        }),
        Case::new("absolute: in the ustar prefix field", ABSOLUTE, |e| {
            let mut h = Header::new(b'0', "keep", 1);
            h.prefix = e.s.as_bytes().to_vec();
            Tar::new().entry(&h, b"x").end()
        }),
        Case::new("absolute: in a GNU long name", ABSOLUTE, |e| {
            let name = format!("{}/{}", e.s, "k".repeat(120));
            Tar::new().gnu_long(b'L', name.as_bytes()).file("short", b"x").end()
        }),
        Case::new("absolute: in a PAX path", ABSOLUTE, |e| {
            let name = format!("{}/keep", e.s);
            Tar::new()
                .pax(&[(b"path", name.as_bytes())])
                .file("harmless", b"x")
                .end()
        }),
        Case::new("dot components are dropped: ./a/./b", Contained, |_| {
            Tar::new().file("./a/./b", b"x").end()
        })
        .inside(&["a/b"]),
        Case::new("the root entry ./ is skipped", Contained, |_| {
            Tar::new().dir("./").dir(".//./").end()
        })
        .modes(&[TRUSTED]),
        // ---- NUL ----
        Case::new("NUL: in a PAX path", Refused("NUL byte"), |_| {
            Tar::new()
                .pax(&[(b"path", b"keep\0/../../x")])
                .file("harmless", b"x")
                .end()
        }),
        Case::new("NUL: in a PAX linkpath of a hard link", Refused("NUL byte"), |_| {
            Tar::new()
                .file("a", b"x")
                .pax(&[(b"linkpath", b"a\0b")])
                .hardlink("h", "a")
                .end()
        }),
        Case::new("NUL: a GNU long name ends at its first NUL", Contained, |_| {
            Tar::new().gnu_long(b'L', b"cut\0/../../x").file("short", b"x").end()
        })
        .inside(&["cut"])
        .absent(&["short", "x"]),
        // ---- names longer than PATH_MAX ----
        Case::new(
            "PATH_MAX: PAX path of 4096 bytes",
            Refused("longer than PATH_MAX"),
            |_| {
                Tar::new()
                    .pax(&[(b"path", long_name(4096).as_bytes())])
                    .file("short", b"x")
                    .end()
            },
        ),
        Case::new(
            "PATH_MAX: GNU long name of 100000 bytes",
            Refused("longer than PATH_MAX"),
            |_| {
                Tar::new()
                    .gnu_long(b'L', "a/".repeat(50_000).as_bytes())
                    .file("short", b"x")
                    .end()
            },
        ),
        Case::new("PATH_MAX: PAX path of exactly 4095 bytes is applied", Contained, |_| {
            Tar::new()
                .pax(&[(b"path", long_name(4095).as_bytes())])
                .file("short", b"x")
                .end()
        })
        .inside(&["{L4095}"])
        .modes(&[TRUSTED]),
        Case::new("NAME_MAX: a component of 256 bytes", Refused("name too long"), |_| {
            Tar::new()
                .pax(&[(b"path", "n".repeat(256).as_bytes())])
                .file("short", b"x")
                .end()
        }),
        // ---- symlinks followed by a write ----
        Case::new("write through evil -> <sentinel host path>", NOT_A_DIR, |e| {
            Tar::new()
                .symlink("evil", &e.s)
                .file(format!("evil/{PWNED}"), b"x")
                .end()
        }),
        Case::new(
            "write through evil -> <sentinel host path>, decoy inside",
            Contained,
            |e| {
                Tar::new()
                    .dirs_of(&e.s_rel)
                    .symlink("evil", &e.s)
                    .file(format!("evil/{PWNED}"), b"x")
                    .end()
            },
        )
        .inside(&["{S}/{P}"]),
        Case::new(
            "write through evil -> <sentinel host path>/, trailing slashes",
            Contained,
            |e| {
                Tar::new()
                    .dirs_of(&e.s_rel)
                    .symlink("evil", format!("{}//./", e.s))
                    .file(format!("evil/{PWNED}"), b"x")
                    .end()
            },
        )
        .inside(&["{S}/{P}"]),
        Case::new("write through evil -> /", Contained, |_| {
            Tar::new()
                .symlink("evil", "/")
                .file(format!("evil/{PWNED}"), b"x")
                .end()
        })
        .inside(&["{P}", "evil"]),
        Case::new("write through evil -> / then the sentinel's path", Contained, |e| {
            Tar::new()
                .symlink("evil", "/")
                .file(format!("evil/{}/{PWNED}", e.s_rel), b"x")
                .end()
        })
        .inside(&["{S}/{P}"]),
        Case::new("write through evil -> ../..", Contained, |_| {
            Tar::new()
                .symlink("evil", "../..")
                .file(format!("evil/sentinel/{PWNED}"), b"x")
                .end()
        })
        .inside(&["sentinel/{P}"]),
        Case::new("write through evil -> ../../sentinel", NOT_A_DIR, |_| {
            Tar::new()
                .symlink("evil", "../../sentinel")
                .file(format!("evil/{PWNED}"), b"x")
                .end()
        }),
        Case::new("write through evil -> ../sentinel, decoy inside", Contained, |_| {
            Tar::new()
                .dir("sentinel/")
                .symlink("evil", "../sentinel")
                .file(format!("evil/{PWNED}"), b"x")
                .end()
        })
        .inside(&["sentinel/{P}"]),
        Case::new("write through evil -> /../../../.., then sentinel", Contained, |_| {
            Tar::new()
                .symlink("evil", "/../../../..")
                .file(format!("evil/sentinel/{PWNED}"), b"x")
                .end()
        })
        .inside(&["sentinel/{P}"]),
        Case::new(
            "write through a/b/up -> ../../../sentinel, decoy inside",
            Contained,
            |_| {
                Tar::new()
                    .dir("sentinel/")
                    .dir("a/")
                    .dir("a/b/")
                    .symlink("a/b/up", "../../../sentinel")
                    .file(format!("a/b/up/{PWNED}"), b"x")
                    .end()
            },
        )
        .inside(&["sentinel/{P}"]),
        Case::new(
            "write through a chain c1 -> c2 -> c3 -> <sentinel host path>",
            NOT_A_DIR,
            |e| {
                Tar::new()
                    .symlink("c1", "c2")
                    .symlink("c2", "c3")
                    .symlink("c3", &e.s)
                    .file(format!("c1/{PWNED}"), b"x")
                    .end()
            },
        ),
        Case::new(
            "write through a chain c1 -> c2 -> c3 -> <sentinel host path>, decoy",
            Contained,
            |e| {
                Tar::new()
                    .dirs_of(&e.s_rel)
                    .symlink("c1", "c2")
                    .symlink("c2", "c3")
                    .symlink("c3", &e.s)
                    .file(format!("c1/{PWNED}"), b"x")
                    .end()
            },
        )
        .inside(&["{S}/{P}"]),
        Case::new(
            "write through a relative chain a/r1 -> ../r2 -> ../../sentinel",
            Contained,
            |_| {
                Tar::new()
                    .dir("sentinel/")
                    .dir("a/")
                    .symlink("a/r1", "../r2")
                    .symlink("r2", "../../sentinel")
                    .file(format!("a/r1/{PWNED}"), b"x")
                    .end()
            },
        )
        .inside(&["sentinel/{P}"]),
        Case::new(
            "write through a chain mixing / and ..: l1 -> /l2/.., l2 -> ../..",
            Contained,
            |_| {
                Tar::new()
                    .symlink("l2", "../..")
                    .symlink("l1", "/l2/../l2")
                    .file(format!("l1/sentinel/{PWNED}"), b"x")
                    .end()
            },
        )
        .inside(&["sentinel/{P}"]),
        Case::new(
            "write through a symlink loop l1 -> l2 -> l1",
            Refused("too many levels of symlinks"),
            |_| {
                Tar::new()
                    .symlink("l1", "l2")
                    .symlink("l2", "l1")
                    .file(format!("l1/{PWNED}"), b"x")
                    .end()
            },
        ),
        Case::new(
            "write through a directory replaced by a symlink to the sentinel",
            NOT_A_DIR,
            |e| {
                Tar::new()
                    .dir("d/")
                    .file("d/f", b"x")
                    .symlink("d", &e.s)
                    .file(format!("d/{PWNED}"), b"x")
                    .end()
            },
        ),
        Case::new(
            "overwrite a symlink to a sentinel file (final component)",
            Contained,
            |e| {
                Tar::new()
                    .symlink("evil", format!("{}/keep", e.s))
                    .file("evil", b"overwritten")
                    .end()
            },
        )
        .inside(&["evil"]),
        Case::new(
            "overwrite a symlink evil -> ../sentinel/keep (final component)",
            Contained,
            |_| {
                Tar::new()
                    .symlink("evil", "../sentinel/keep")
                    .file("evil", b"overwritten")
                    .end()
            },
        )
        .inside(&["evil"]),
        Case::new("fifo through evil -> <sentinel host path>", NOT_A_DIR, |e| {
            Tar::new()
                .symlink("evil", &e.s)
                .node(b'6', format!("evil/{PWNED}"), 0, 0)
                .end()
        }),
        Case::new("char device through evil -> /", Contained, |_| {
            Tar::new()
                .symlink("evil", "/")
                .node(b'3', format!("evil/{PWNED}"), 1, 3)
                .end()
        })
        .inside(&["{P}"]),
        // ---- symlinks followed by mkdir, chmod, chown, xattrs ----
        Case::new("mkdir through evil -> <sentinel host path>", NOT_A_DIR, |e| {
            Tar::new().symlink("evil", &e.s).dir(format!("evil/{PWNED}/")).end()
        }),
        Case::new("mkdir through evil -> ../..", Contained, |_| {
            Tar::new()
                .symlink("evil", "../..")
                .dir(format!("evil/sentinel/{PWNED}/"))
                .end()
        })
        .inside(&["sentinel/{P}"]),
        Case::new("mkdir -p through evil -> /, deep", Contained, |e| {
            Tar::new()
                .symlink("evil", "/")
                .dir(format!("evil/{}/dir/new/", e.s_rel))
                .end()
        })
        .inside(&["{S}/dir/new"]),
        Case::new(
            "chmod 7777 + chown of evil/dir, evil -> <sentinel host path>",
            NOT_A_DIR,
            |e| {
                let mut h = Header::new(b'5', "evil/dir/", 0);
                (h.mode, h.uid, h.gid) = (0o7777, 4242, 4242);
                Tar::new().symlink("evil", &e.s).entry(&h, b"").end()
            },
        ),
        Case::new("chmod 7777 + chown of evil/dir, decoy inside", Contained, |e| {
            let mut h = Header::new(b'5', "evil/dir/", 0);
            (h.mode, h.uid, h.gid) = (0o7777, 4242, 4242);
            Tar::new()
                .dirs_of(&e.s_rel)
                .dir(format!("{}/dir/", e.s_rel))
                .symlink("evil", &e.s)
                .entry(&h, b"")
                .end()
        })
        .inside(&["{S}/dir"]),
        Case::new(
            "chmod of a directory entry named like a symlink to the sentinel",
            Contained,
            |e| {
                let mut h = Header::new(b'5', "evil/", 0);
                h.mode = 0o777;
                Tar::new().symlink("evil", format!("{}/dir", e.s)).entry(&h, b"").end()
            },
        )
        .inside(&["evil"]),
        Case::new(
            "chmod of a file entry over ../../sentinel/keep symlink",
            Contained,
            |_| {
                let mut h = Header::new(b'0', "evil", 1);
                (h.mode, h.uid) = (0o6777, 4242);
                Tar::new().symlink("evil", "../../sentinel/keep").entry(&h, b"x").end()
            },
        )
        .inside(&["evil"]),
        Case::new("user xattr through evil -> <sentinel host path>", NOT_A_DIR, |e| {
            Tar::new()
                .symlink("evil", &e.s)
                .pax(&[(b"SCHILY.xattr.user.pwned", b"1")])
                .file("evil/keep", b"x")
                .end()
        }),
        Case::new("user xattr through evil -> ../.. onto sentinel/dir", Contained, |_| {
            Tar::new()
                .symlink("evil", "../..")
                .pax(&[(b"SCHILY.xattr.user.pwned", b"1")])
                .dir("evil/sentinel/dir/")
                .end()
        })
        .inside(&["sentinel/dir"]),
        Case::new(
            "trusted xattr through evil -> / onto the sentinel's path",
            Contained,
            |e| {
                Tar::new()
                    .symlink("evil", "/")
                    .pax(&[(b"SCHILY.xattr.trusted.pwned", b"1")])
                    .dir(format!("evil/{}/dir/", e.s_rel))
                    .end()
            },
        )
        .inside(&["{S}/dir"]),
        Case::new("xattr on a symlink entry pointing at the sentinel", Contained, |e| {
            // user.* xattrs are not allowed on symlinks: skipped (as
            // Docker and GNU tar skip them), and never set on the
            // symlink's target (the sentinel's snapshot says so).
            Tar::new()
                .pax(&[(b"SCHILY.xattr.user.pwned", b"1")])
                .symlink("evil", format!("{}/keep", e.s))
                .end()
        })
        .inside(&["evil"]),
        Case::new(
            "trusted xattr on a symlink entry pointing at the sentinel",
            Contained,
            |e| {
                Tar::new()
                    .pax(&[(b"SCHILY.xattr.trusted.pwned", b"1")])
                    .symlink("evil", format!("{}/dir", e.s))
                    .end()
            },
        )
        .inside(&["evil"]),
        // ---- hard links ----
        Case::new(
            "hardlink: target ../sentinel/keep",
            Refused("hard link target: name has a '..' component"),
            |_| Tar::new().hardlink("stolen", "../sentinel/keep").end(),
        ),
        Case::new(
            "hardlink: target <sentinel host path>/keep",
            Refused("hard link target: absolute name"),
            |e| Tar::new().hardlink("stolen", format!("{}/keep", e.s)).end(),
        ),
        Case::new(
            "hardlink: absolute target in a GNU long link",
            Refused("hard link target: absolute name"),
            |e| {
                let target = format!("{}/{}", e.s, "k".repeat(120));
                Tar::new()
                    .gnu_long(b'K', target.as_bytes())
                    .hardlink("stolen", "a")
                    .end()
            },
        ),
        Case::new(
            "hardlink: dotdot target in a PAX linkpath",
            Refused("hard link target: name has a '..' component"),
            |_| {
                Tar::new()
                    .pax(&[(b"linkpath", b"a/../../sentinel/keep")])
                    .hardlink("stolen", "a")
                    .end()
            },
        ),
        Case::new(
            "hardlink: through evil -> <sentinel host path>",
            Refused("does not exist"),
            |e| Tar::new().symlink("evil", &e.s).hardlink("stolen", "evil/keep").end(),
        ),
        Case::new(
            "hardlink: through evil -> ../.. to sentinel/keep",
            Refused("does not exist"),
            |_| {
                Tar::new()
                    .symlink("evil", "../..")
                    .hardlink("stolen", "evil/sentinel/keep")
                    .end()
            },
        ),
        Case::new(
            "hardlink: through a chain c1 -> c2 -> /",
            Refused("does not exist"),
            |e| {
                Tar::new()
                    .symlink("c1", "c2")
                    .symlink("c2", "/")
                    .hardlink("stolen", format!("c1/{}/keep", e.s_rel))
                    .end()
            },
        ),
        Case::new("hardlink: missing target", Refused("does not exist"), |_| {
            Tar::new().hardlink("stolen", "nowhere").end()
        }),
        Case::new("hardlink: to a directory", Refused("is a directory"), |_| {
            Tar::new().dir("d/").hardlink("h", "d").end()
        }),
        Case::new("hardlink: to the root ./", Refused("hard link to the root"), |_| {
            Tar::new().hardlink("h", "./").end()
        }),
        Case::new(
            "hardlink: to a symlink pointing at the sentinel links the symlink",
            Contained,
            |e| {
                Tar::new()
                    .symlink("l", format!("{}/keep", e.s))
                    .hardlink("h", "l")
                    .end()
            },
        )
        .inside(&["h", "l"]),
        Case::new(
            "hardlink: a later file of the same name replaces, not writes through",
            Contained,
            |_| Tar::new().file("a", b"a").hardlink("b", "a").file("b", b"b").end(),
        )
        .inside(&["a", "b"]),
        Case::new(
            "symlink with an empty target",
            Refused("symlink with an empty target"),
            |_| Tar::new().symlink("empty", "").end(),
        ),
        // ---- whiteouts and opaque markers through symlinks ----
        Case::new("whiteout evil/.wh.keep, evil -> <sentinel host path>", NOT_A_DIR, |e| {
            Tar::new().symlink("evil", &e.s).file("evil/.wh.keep", b"").end()
        })
        .modes(OVERLAY),
        Case::new("whiteout evil/.wh.keep, evil -> <sentinel host path>", Contained, |e| {
            Tar::new().symlink("evil", &e.s).file("evil/.wh.keep", b"").end()
        })
        .modes(&[PLAIN]),
        Case::new(
            "whiteout evil/.wh.dir through a chain c1 -> c2 -> <sentinel host path>",
            NOT_A_DIR,
            |e| {
                Tar::new()
                    .symlink("c1", "c2")
                    .symlink("c2", &e.s)
                    .file("c1/.wh.dir", b"")
                    .end()
            },
        )
        .modes(OVERLAY),
        Case::new(
            "whiteout evil/.wh.dir through a chain c1 -> c2 -> <sentinel host path>",
            Contained,
            |e| {
                Tar::new()
                    .symlink("c1", "c2")
                    .symlink("c2", &e.s)
                    .file("c1/.wh.dir", b"")
                    .end()
            },
        )
        .modes(&[PLAIN]),
        Case::new(
            "whiteout evil/.wh.inner, evil -> <sentinel host path>/dir",
            NOT_A_DIR,
            |e| {
                Tar::new()
                    .symlink("evil", format!("{}/dir", e.s))
                    .file("evil/.wh.inner", b"")
                    .end()
            },
        )
        .modes(OVERLAY),
        Case::new("whiteout evil/.wh.inner, evil -> ../../sentinel/dir", Contained, |_| {
            Tar::new()
                .symlink("evil", "../../sentinel/dir")
                .file("evil/.wh.inner", b"")
                .end()
        })
        .modes(&[PLAIN]),
        Case::new("whiteout of a sentinel path through evil -> ../..", Contained, |_| {
            Tar::new()
                .symlink("evil", "../..")
                .file("evil/sentinel/.wh.keep", b"")
                .end()
        })
        .modes(OVERLAY)
        .inside(&["sentinel/keep"]),
        Case::new("whiteout of a sentinel path through evil -> ../..", Contained, |_| {
            Tar::new()
                .symlink("evil", "../..")
                .file("evil/sentinel/.wh.keep", b"")
                .end()
        })
        .modes(&[PLAIN])
        .absent(&["sentinel"]),
        Case::new("whiteout through evil -> / deletes inside the root", Contained, |e| {
            Tar::new()
                .dirs_of(&e.s_rel)
                .file(format!("{}/keep", e.s_rel), b"decoy")
                .symlink("evil", "/")
                .file(format!("evil/{}/.wh.keep", e.s_rel), b"")
                .end()
        })
        .modes(&[PLAIN])
        .inside(&["{S}"])
        .absent(&["{S}/keep"]),
        Case::new(
            "whiteout .wh.evil removes the symlink, not its target",
            Contained,
            |e| {
                Tar::new()
                    .symlink("evil", format!("{}/dir", e.s))
                    .file(".wh.evil", b"")
                    .end()
            },
        )
        .modes(&[PLAIN])
        .absent(&["evil"]),
        Case::new(
            "whiteout .wh.evil replaces the symlink, not its target",
            Contained,
            |e| {
                Tar::new()
                    .symlink("evil", format!("{}/dir", e.s))
                    .file(".wh.evil", b"")
                    .end()
            },
        )
        .modes(OVERLAY)
        .inside(&["evil"]),
        Case::new(
            "opaque evil/.wh..wh..opq, evil -> <sentinel host path>",
            NOT_A_DIR,
            |e| Tar::new().symlink("evil", &e.s).file("evil/.wh..wh..opq", b"").end(),
        )
        .modes(EVERY_MODE),
        Case::new("opaque evil/.wh..wh..opq, evil -> /", NOT_A_DIR, |_| {
            Tar::new()
                .file("a", b"x")
                .symlink("evil", "/")
                .file("evil/.wh..wh..opq", b"")
                .end()
        })
        .modes(EVERY_MODE),
        Case::new("opaque through evil -> ../.. onto sentinel/", Contained, |_| {
            Tar::new()
                .symlink("evil", "../..")
                .file("evil/sentinel/.wh..wh..opq", b"")
                .end()
        })
        .modes(EVERY_MODE)
        .inside(&["sentinel"]),
        Case::new(
            "opaque through a chain c1 -> c2 -> <sentinel host path>",
            NOT_A_DIR,
            |e| {
                Tar::new()
                    .symlink("c1", "c2")
                    .symlink("c2", &e.s)
                    .file("c1/.wh..wh..opq", b"")
                    .end()
            },
        )
        .modes(EVERY_MODE),
        Case::new("opaque of the root itself", Contained, |_| {
            Tar::new().file("a", b"x").file(".wh..wh..opq", b"").end()
        })
        .modes(EVERY_MODE)
        .inside(&["a"]),
        // ---- malformed whiteouts ----
        Case::new(
            "malformed whiteout .wh.",
            Refused("whiteout '.wh.' names no file"),
            |_| Tar::new().file(".wh.", b"").end(),
        )
        .modes(EVERY_MODE),
        Case::new(
            "malformed whiteout .wh..",
            Refused("whiteout names '.' or '..'"),
            |_| Tar::new().file(".wh..", b"").end(),
        )
        .modes(EVERY_MODE),
        Case::new(
            "malformed whiteout .wh...",
            Refused("whiteout names '.' or '..'"),
            |_| Tar::new().file(".wh...", b"").end(),
        )
        .modes(EVERY_MODE),
        Case::new(
            "malformed whiteout dir/.wh... under a symlink",
            Refused("whiteout names '.' or '..'"),
            |e| Tar::new().symlink("evil", &e.s).file("evil/.wh...", b"").end(),
        )
        .modes(EVERY_MODE),
        Case::new(
            "malformed whiteout as a directory: .wh../",
            Refused("whiteout names '.' or '..'"),
            |_| Tar::new().dir(".wh../").end(),
        )
        .modes(EVERY_MODE),
        Case::new("AUFS metadata .wh..wh.plnk is skipped", Contained, |_| {
            Tar::new().dir(".wh..wh.plnk/").end()
        })
        .modes(EVERY_MODE)
        .absent(&[".wh..wh.plnk"]),
        // ---- PAX sizes and records: no entry smuggling ----
        Case::new(
            "PAX size larger than the ustar size",
            Refused("PAX size 1024 disagrees with the header's size 512"),
            |_| {
                let hidden = Tar::new().file(PWNED, b"smuggled").cut();
                Tar::new()
                    .pax(&[(b"size", b"1024")])
                    .entry(&Header::new(b'0', "a", 512), &hidden[..512])
                    .raw(&hidden[512..])
                    .end()
            },
        ),
        Case::new(
            "PAX size 0 hiding an entry in the data",
            Refused("PAX size 0 disagrees with the header's size"),
            |_| {
                let hidden = Tar::new().file(PWNED, b"smuggled").cut();
                Tar::new()
                    .pax(&[(b"size", b"0")])
                    .entry(&Header::new(b'0', "a", hidden.len() as u64), &hidden)
                    .end()
            },
        ),
        Case::new(
            "PAX size with a zero ustar size (Go's form for files over 8 GiB) is the size",
            Contained,
            |_| {
                Tar::new()
                    .pax(&[(b"size", b"5")])
                    .entry(&Header::new(b'0', "big", 0), b"12345")
                    .file("after", b"x")
                    .end()
            },
        )
        .inside(&["big", "after"]),
        Case::new(
            "a directory entry carrying data",
            Refused("with 3 bytes of data"),
            |_| {
                Tar::new()
                    .entry(&Header::new(b'5', "d", 3), b"abc")
                    .file("after", b"x")
                    .end()
            },
        ),
        Case::new("PAX size is not a number", Refused("PAX size is not a number"), |_| {
            Tar::new().pax(&[(b"size", b"1e3")]).file("a", b"x").end()
        }),
        Case::new(
            "PAX size smuggled inside an xattr value is part of the value",
            Contained,
            |_| {
                Tar::new()
                    .pax(&[(b"SCHILY.xattr.user.v", b"\n7 size=0\n"), (b"path", b"real")])
                    .file("a", b"x")
                    .end()
            },
        )
        .inside(&["real"])
        .absent(&["a"]),
        Case::new(
            "PAX record length beyond the header",
            Refused("does not fit the header"),
            |_| {
                let data = b"99 path=a\n";
                Tar::new().pax_raw(data).file("a", b"x").end()
            },
        ),
        Case::new(
            "PAX record without a newline",
            Refused("does not end in a newline"),
            |_| {
                let data = b"10 path=ab";
                Tar::new().pax_raw(data).file("a", b"x").end()
            },
        ),
        Case::new(
            "PAX record length not a number",
            Refused("length is not a number"),
            |_| {
                let data = b"ten path=a\n";
                Tar::new().pax_raw(data).file("a", b"x").end()
            },
        ),
        Case::new(
            "PAX GNU sparse map without a count",
            Refused("without GNU.sparse.numblocks"),
            |_| Tar::new().pax(&[(b"GNU.sparse.map", b"0,1")]).file("a", b"x").end(),
        ),
        // ---- sparse files: maps every reader reads alike, or refused ----
        Case::new("sparse: a GNU 'S' file with a hole is applied", Contained, |_| {
            Tar::new()
                .gnu_sparse("a", 4099, &[(0, 512), (4096, 3)], &[b'd'; 515])
                .file("after", b"x")
                .end()
        })
        .inside(&["a", "after"]),
        Case::new("sparse: a PAX 1.0 file with a hole is applied", Contained, |_| {
            Tar::new()
                .pax_sparse("real", 9000, b"2\n0\n512\n9000\n0\n", &[b'd'; 512])
                .file("after", b"x")
                .end()
        })
        .inside(&["real", "after"])
        .absent(&["GNUSparseFile.0"]),
        Case::new("sparse: segments out of order", Refused("overlaps or precedes"), |_| {
            Tar::new()
                .gnu_sparse("a", 8192, &[(4096, 512), (0, 512), (8192, 0)], &[0; 1024])
                .end()
        }),
        Case::new("sparse: overlapping segments", Refused("overlaps or precedes"), |_| {
            Tar::new()
                .gnu_sparse("a", 8192, &[(0, 1024), (512, 512), (8192, 0)], &[0; 1536])
                .end()
        }),
        Case::new(
            "sparse: a segment past the real size",
            Refused("runs past the real size"),
            |_| Tar::new().gnu_sparse("a", 100, &[(0, 512)], &[0; 512]).end(),
        ),
        Case::new(
            "sparse: a map that stops short of the real size",
            Refused("not at the real size"),
            |_| Tar::new().gnu_sparse("a", 1 << 20, &[(0, 512)], &[0; 512]).end(),
        ),
        Case::new(
            "sparse: segments hold less than the entry stores (an entry hidden after them)",
            Refused("sparse segments hold 512 bytes but the entry stores"),
            |_| {
                let mut data = vec![0u8; 512];
                data.extend(Tar::new().file(PWNED, b"smuggled").cut());
                Tar::new().gnu_sparse("a", 512, &[(0, 512)], &data).end()
            },
        ),
        Case::new(
            "sparse: segments hold more than the entry stores (the next header read as data)",
            Refused("sparse segments hold 1024 bytes but the entry stores 512"),
            |_| {
                Tar::new()
                    .gnu_sparse("a", 1024, &[(0, 1024)], &[0; 512])
                    .file(PWNED, b"x")
                    .end()
            },
        ),
        Case::new(
            "sparse: an unaligned segment before another",
            Refused("not a multiple of 512"),
            |_| {
                Tar::new()
                    .gnu_sparse("a", 2048, &[(0, 100), (1024, 1024)], &[0; 1124])
                    .end()
            },
        ),
        Case::new(
            "sparse: a real size past the largest file offset",
            Refused("beyond the largest file offset"),
            |_| Tar::new().gnu_sparse("a", 1 << 63, &[(1 << 63, 0)], b"").end(),
        ),
        Case::new(
            "sparse: an extension block after the map ended",
            Refused("ends before the extension block"),
            |_| {
                let mut t = Tar::new().gnu_sparse("a", 512, &[(0, 512)], &[0; 512]).cut();
                t[482] = 1;
                let mut b: [u8; BLOCK] = t[..BLOCK].try_into().unwrap();
                seal(&mut b);
                t[..BLOCK].copy_from_slice(&b);
                Tar::new().raw(&t).end()
            },
        ),
        Case::new(
            "sparse: 30 segments over two extension blocks are applied",
            Contained,
            |_| {
                let map: Vec<(u64, u64)> = (0..30).map(|i| (i * 1024, 512)).collect();
                Tar::new().gnu_sparse("a", 29 * 1024 + 512, &map, &[1; 30 * 512]).end()
            },
        )
        .inside(&["a"]),
        Case::new(
            "sparse: a GNU 'S' entry with ustar magic",
            Refused("without the GNU header magic"),
            |_| {
                let mut h = Header::new(b'S', "a", 0);
                h.magic = Magic::Ustar;
                Tar::new().entry(&h, b"").end()
            },
        ),
        Case::new(
            "sparse: PAX records on a directory",
            Refused("GNU sparse records on a '5' entry"),
            |_| {
                Tar::new()
                    .pax(&[(b"GNU.sparse.major", b"1"), (b"GNU.sparse.minor", b"0")])
                    .dir("d/")
                    .end()
            },
        ),
        Case::new(
            "sparse: a 1.0 map of a billion segments",
            Refused("sparse map of 1000000000 segments"),
            |_| Tar::new().pax_sparse("a", 0, b"1000000000\n", b"").end(),
        ),
        Case::new(
            "sparse: PAX 0.1 numblocks of a billion",
            Refused("sparse map of 1000000000 segments"),
            |_| {
                Tar::new()
                    .pax(&[(b"GNU.sparse.numblocks", b"1000000000"), (b"GNU.sparse.map", b"0,1")])
                    .file("a", b"x")
                    .end()
            },
        ),
        Case::new(
            "sparse: a 1.0 map that runs past the data",
            Refused("runs past the entry's data"),
            |_| Tar::new().pax_sparse("a", 10, b"", b"").end(),
        ),
        Case::new("sparse: GNU.sparse.name with '..'", DOTDOT, |_| {
            Tar::new().pax_sparse("../x", 0, b"0\n", b"").end()
        }),
        Case::new(
            "sparse: GNU.sparse.name on a file that is not sparse",
            Refused("GNU sparse records without a sparse map"),
            |_| Tar::new().pax(&[(b"GNU.sparse.name", b"b")]).file("a", b"x").end(),
        ),
        // ---- names and numbers tar readers read differently ----
        Case::new("a PAX linkpath with a NUL byte", Refused("NUL byte"), |_| {
            // GNU tar's symlink points at "../.."; Go refuses the record.
            Tar::new()
                .pax(&[(b"linkpath", b"../..\0/etc")])
                .symlink("sym", "x")
                .end()
        }),
        Case::new(
            "a GNU long name and a PAX path for one entry",
            Refused("disagree on which wins"),
            |_| {
                Tar::new()
                    .gnu_long(b'L', b"gnu-name")
                    .pax(&[(b"path", b"pax-name")])
                    .file("a", b"x")
                    .end()
            },
        ),
        Case::new(
            "a global PAX header that renames every later entry",
            Refused("for every later entry"),
            |_| {
                let data = record(b"path", b"renamed");
                Tar::new()
                    .entry(&Header::new(b'g', "pax_global_header", data.len() as u64), &data)
                    .file("a", b"x")
                    .end()
            },
        ),
        Case::new(
            "a size field GNU tar reads as 1 and Go refuses",
            Refused("tar readers read it differently"),
            |_| {
                let mut b = Header::new(b'0', "a", 1).block();
                b[124..136].copy_from_slice(b"1 000000002\0");
                seal(&mut b);
                Tar::new().raw(&b).raw(&[b'x'; 1024]).end()
            },
        ),
        Case::new(
            "PAX header of 2 MiB",
            Refused("extension header of 2097152 bytes"),
            |_| {
                let data = vec![b'\n'; 2 << 20];
                Tar::new().pax_raw(&data).file("a", b"x").end()
            },
        ),
        Case::new("PAX uid over 32 bits", Refused("over 32 bits"), |_| {
            Tar::new().pax(&[(b"uid", b"4294967296")]).file("a", b"x").end()
        }),
        Case::new("PAX xattr with an empty name", Refused("xattr"), |_| {
            Tar::new().pax(&[(b"SCHILY.xattr.", b"v")]).file("a", b"x").end()
        }),
        Case::new("PAX header with no entry after it", Contained, |_| {
            Tar::new().pax(&[(b"path", b"../x")]).end()
        }),
        Case::new(
            "two PAX headers for one entry (GNU tar takes the second, others merge)",
            Refused("two PAX headers for one entry"),
            |_| {
                Tar::new()
                    .pax(&[(b"path", b"ok")])
                    .pax(&[(b"path", b"../x")])
                    .file("a", b"x")
                    .end()
            },
        ),
        Case::new("global PAX header with an absolute name is skipped", Contained, |_| {
            let data = record(b"comment", b"hi");
            Tar::new()
                .entry(&Header::new(b'g', "/tmp/GlobalHead.1.1", data.len() as u64), &data)
                .file("a", b"x")
                .end()
        })
        .inside(&["a"]),
        // ---- truncated streams ----
        Case::new("truncated: empty stream", Contained, |_| Vec::new()),
        Case::new("truncated: no end-of-archive blocks", Contained, |_| {
            Tar::new().file("a", b"x").cut()
        })
        .inside(&["a"]),
        Case::new("truncated: header cut at 100 bytes", ReadError, |_| {
            let mut t = Tar::new().file("a", b"x").cut();
            t.truncate(100);
            t
        }),
        Case::new("truncated: second header cut at 300 bytes", ReadError, |_| {
            let mut t = Tar::new().file("a", b"x").file("b", b"y").cut();
            t.truncate(2 * BLOCK + 300);
            t
        }),
        Case::new("truncated: data cut short", ReadError, |_| {
            let t = Tar::new().file("a", &[7u8; 3000]).cut();
            t[..BLOCK + 1000].to_vec()
        }),
        Case::new("truncated: inside a GNU long name", ReadError, |_| {
            let t = Tar::new().gnu_long(b'L', "n".repeat(2000).as_bytes()).cut();
            t[..BLOCK + 700].to_vec()
        }),
        Case::new("truncated: inside a PAX header", ReadError, |_| {
            let t = Tar::new().pax(&[(b"path", "p".repeat(2000).as_bytes())]).cut();
            t[..BLOCK + 700].to_vec()
        }),
        Case::new("truncated: size says 2^62 bytes", ReadError, |_| {
            Tar::new().entry(&Header::new(b'0', "a", 1 << 62), b"some").cut()
        }),
        Case::new("truncated: size u64::MAX", ReadError, |_| {
            Tar::new().entry(&Header::new(b'0', "a", u64::MAX), b"some").cut()
        }),
        // ---- garbage ----
        Case::new("garbage: 512 random bytes", ReadError, |_| garbage(512, 1)),
        Case::new("garbage: 64 KiB of random bytes", ReadError, |_| garbage(65536, 2)),
        Case::new("garbage: text, not a tar", ReadError, |_| b"hello, world\n".repeat(100)),
        Case::new("garbage: all 0xff", ReadError, |_| vec![0xff; 4096]),
        Case::new("garbage: a valid header with a wrong checksum", ReadError, |_| {
            let mut t = Tar::new().file("a", b"x").end();
            t[148] ^= 1;
            t
        }),
        Case::new("garbage: non-octal size with a valid checksum", ReadError, |_| {
            let mut b = Header::new(b'0', "a", 1).block();
            b[124..136].copy_from_slice(b"zzzzzzzzzzz\0");
            seal(&mut b);
            Tar::new().raw(&b).end()
        }),
        Case::new("garbage: non-octal mode with a valid checksum", ReadError, |_| {
            let mut b = Header::new(b'0', "a", 0).block();
            b[100..108].copy_from_slice(b"9999999\0");
            seal(&mut b);
            Tar::new().raw(&b).end()
        }),
        Case::new("garbage: random bytes after a valid entry", ReadError, |_| {
            Tar::new().file("a", b"x").raw(&garbage(1024, 3)).cut()
        }),
        Case::new("garbage: unknown type flag", Refused("unsupported entry type"), |_| {
            Tar::new().entry(&Header::new(b'Z', "a", 0), b"").end()
        }),
        Case::new("an empty GNU sparse entry is an empty file", Contained, |_| {
            let mut h = Header::new(b'S', "a", 0);
            h.magic = Magic::Gnu;
            Tar::new().entry(&h, b"").end()
        })
        .inside(&["a"]),
        Case::new("garbage: V7 header (no magic) with a dotdot name", DOTDOT, |_| {
            let mut h = Header::new(b'0', "../x", 1);
            h.magic = Magic::V7;
            Tar::new().entry(&h, b"x").end()
        }),
    ]
}

// ---------------------------------------------------------------------------
// The world around the root: the sentinel and its snapshot.
// ---------------------------------------------------------------------------

struct World {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    sentinel: PathBuf,
}

impl World {
    fn new(is_root: bool) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let root = base.join("root");
        let sentinel = base.join("sentinel");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&sentinel).unwrap();
        let s = |p: &str| sentinel.join(p);
        std::fs::write(s("keep"), b"sentinel: keep me\n").unwrap();
        std::fs::set_permissions(s("keep"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::create_dir(s("dir")).unwrap();
        std::fs::write(s("dir/inner"), b"sentinel: inner\n").unwrap();
        std::fs::create_dir(s("dir/sub")).unwrap();
        std::fs::create_dir(s("empty")).unwrap();
        std::os::unix::fs::symlink("keep", s("link")).unwrap();
        std::os::unix::fs::symlink(s("dir"), s("abs-link")).unwrap();
        std::fs::hard_link(s("keep"), s("keep-hardlink")).unwrap();
        let set = |p: &Path, name: &str, value: &[u8]| {
            rustix::fs::lsetxattr(p, name, value, rustix::fs::XattrFlags::empty()).unwrap();
        };
        set(&s("keep"), "user.sentinel", b"keep");
        set(&s("dir"), "user.sentinel", b"dir");
        set(&sentinel, "user.sentinel", b"top");
        if is_root {
            set(&s("dir"), "trusted.sentinel", b"dir");
            set(&s("dir"), "trusted.overlay.opaque", b"n");
            rustix::fs::chown(
                s("dir/inner"),
                Some(rustix::fs::Uid::from_raw(1234)),
                Some(rustix::fs::Gid::from_raw(5678)),
            )
            .unwrap();
        }
        Self {
            _tmp: tmp,
            base,
            root,
            sentinel,
        }
    }

    fn env(&self) -> Env {
        let s = self.sentinel.to_str().unwrap().to_owned();
        let s_rel = s.trim_start_matches('/').to_owned();
        Env { s, s_rel }
    }

    /// What must never appear outside the root.
    fn outside_paths(&self) -> Vec<PathBuf> {
        let mut v = vec![Path::new("/").join(PWNED), self.base.join(PWNED)];
        if let Some(parent) = self.base.parent() {
            v.push(parent.join(PWNED));
        }
        v
    }
}

/// Everything observable about a host tree, read without following links.
fn snapshot(top: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![top.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let mut desc = format!(
            "type={:?} mode={:o} uid={} gid={} size={} mtime={}.{} ctime={}.{} nlink={} ino={} rdev={} xattrs={:?}",
            md.file_type(),
            md.mode(),
            md.uid(),
            md.gid(),
            md.size(),
            md.mtime(),
            md.mtime_nsec(),
            md.ctime(),
            md.ctime_nsec(),
            md.nlink(),
            md.ino(),
            md.rdev(),
            xattrs(&p),
        );
        if md.file_type().is_symlink() {
            desc += &format!(" -> {:?}", std::fs::read_link(&p).unwrap());
        } else if md.is_file() {
            desc += &format!(" data={:?}", std::fs::read(&p).unwrap());
        } else if md.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
        out.insert(p, desc);
    }
    out
}

/// Names and values of the xattrs of `p` (not following a symlink).
fn xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut names = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(p, &mut names[..]).unwrap_or(0);
    names[..n]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|name| {
            let mut value = vec![0u8; 65536];
            let len = rustix::fs::lgetxattr(p, name, &mut value[..]).unwrap();
            (String::from_utf8_lossy(name).into_owned(), value[..len].to_vec())
        })
        .collect()
}

/// The differences between two snapshots, for the failure message.
fn diff(before: &BTreeMap<PathBuf, String>, after: &BTreeMap<PathBuf, String>) -> String {
    let keys: BTreeSet<_> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| format!("\n    {}: {:?} => {:?}", k.display(), before.get(k), after.get(k)))
        .collect()
}

// ---------------------------------------------------------------------------
// Running a case.
// ---------------------------------------------------------------------------

fn mode_name(mode: ImportWhiteouts) -> &'static str {
    match mode {
        ImportWhiteouts::Overlay(XattrNamespace::Trusted) => "overlay/trusted",
        ImportWhiteouts::Overlay(XattrNamespace::User) => "overlay/user",
        ImportWhiteouts::Plain => "plain",
    }
}

/// Imports with `workers` threads (1: in tar order on the calling
/// thread), turning a panic into an error message.
fn run_import(
    fs: &dyn Fs,
    tar: &[u8],
    mode: ImportWhiteouts,
    workers: usize,
) -> Result<Result<ImportStats, ArchiveError>, String> {
    let opts = ImportOptions {
        whiteouts: mode,
        workers,
        ..Default::default()
    };
    catch_unwind(AssertUnwindSafe(|| import(fs, tar, &opts))).map_err(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        format!("import panicked: {msg}")
    })
}

/// Does `got` match `want`? The error says how not.
fn check_outcome(got: &Result<ImportStats, ArchiveError>, want: Outcome) -> Result<(), String> {
    match (got, want) {
        (Ok(_), Outcome::Contained) => Ok(()),
        (Err(ArchiveError::Read(_)), Outcome::ReadError) => Ok(()),
        (Err(ArchiveError::Read(_)), _) => Err(format!("want {want:?}, got a read error: {}", got_str(got))),
        (Err(e), Outcome::Refused(text)) if e.to_string().contains(text) => Ok(()),
        _ => Err(format!("want {want:?}, got {}", got_str(got))),
    }
}

fn got_str(got: &Result<ImportStats, ArchiveError>) -> String {
    match got {
        Ok(stats) => format!("Ok({stats:?})"),
        Err(e) => format!("Err({e})"),
    }
}

fn expand(template: &str, env: &Env) -> PathBuf {
    PathBuf::from(
        template
            .replace("{S}", &env.s_rel)
            .replace("{P}", PWNED)
            .replace("{L4095}", &long_name(4095)),
    )
}

/// The paths a contained case must have (and must not have) applied.
fn check_tree(fs: &dyn Fs, case: &Case, env: &Env) -> Result<(), String> {
    for t in case.inside {
        let p = expand(t, env);
        if !fs.exists(&p).map_err(|e| e.to_string())? {
            return Err(format!("{} should exist inside the root", p.display()));
        }
    }
    for t in case.absent {
        let p = expand(t, env);
        if fs.exists(&p).map_err(|e| e.to_string())? {
            return Err(format!("{} should not exist inside the root", p.display()));
        }
    }
    Ok(())
}

/// One case in one whiteout mode with `workers` threads, on `HostFs` then
/// `MemFs`. Returns a line for the report, or what went wrong.
fn run_case(case: &Case, mode: ImportWhiteouts, is_root: bool, workers: usize) -> Result<String, String> {
    let world = World::new(is_root);
    let env = world.env();
    let tar = (case.tar)(&env);
    let before = snapshot(&world.sentinel);

    let fs = HostFs::new(&world.root).unwrap();
    let host = run_import(&fs, &tar, mode, workers)?;

    // Containment, whatever the outcome.
    let after = snapshot(&world.sentinel);
    if before != after {
        return Err(format!("the sentinel changed:{}", diff(&before, &after)));
    }
    let beside: BTreeSet<_> = std::fs::read_dir(&world.base)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    if beside != BTreeSet::from(["root".to_owned(), "sentinel".to_owned()]) {
        return Err(format!("something appeared beside the root: {beside:?}"));
    }
    for p in world.outside_paths() {
        if std::fs::symlink_metadata(&p).is_ok() {
            return Err(format!("{} was created outside the root", p.display()));
        }
    }

    // The outcome, on the host (needs root: import chowns every entry).
    if is_root {
        check_outcome(&host, case.outcome).map_err(|e| format!("HostFs: {e}"))?;
        if host.is_ok() {
            check_tree(&fs, case, &env).map_err(|e| format!("HostFs: {e}"))?;
        }
    }

    // The same outcome in memory.
    let mem = MemFs::new();
    let in_mem = run_import(&mem, &tar, mode, workers).map_err(|e| format!("MemFs: {e}"))?;
    check_outcome(&in_mem, case.outcome).map_err(|e| format!("MemFs: {e}"))?;
    if in_mem.is_ok() {
        check_tree(&mem, case, &env).map_err(|e| format!("MemFs: {e}"))?;
    }
    Ok(format!("{:<11} {}", outcome_word(case.outcome), got_str(&host)))
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Refused(_) => "refused",
        Outcome::Contained => "contained",
        Outcome::ReadError => "read error",
    }
}

#[test]
fn hostile_tars_stay_inside_the_root() {
    let is_root = rustix::process::geteuid().is_root();
    if !is_root {
        eprintln!(
            "not root: outcomes on HostFs are not checked (import chowns every entry, makes \
             whiteouts with mknod and sets trusted.* xattrs); containment and MemFs outcomes still are"
        );
    }
    let mut failures = Vec::new();
    let mut runs = 0;
    // One worker: every entry in tar order on the importing thread; four:
    // files made by workers while the tar is read on, as a layer import
    // runs (the containment must be exactly as strong).
    for case in cases() {
        for &mode in case.modes {
            for workers in [1, 4] {
                runs += 1;
                let label = format!("{} [{}, {workers} worker(s)]", case.name, mode_name(mode));
                match run_case(&case, mode, is_root, workers) {
                    Ok(line) => println!("ok    {label:<90} {line}"),
                    Err(why) => {
                        println!("FAIL  {label}: {why}");
                        failures.push(format!("{label}: {why}"));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A change to the sentinel, by name.
type Change = (&'static str, fn(&Path));

/// The snapshot sees every kind of change the cases guard against, or the
/// test above would prove nothing.
#[test]
fn the_sentinel_snapshot_sees_changes() {
    let is_root = rustix::process::geteuid().is_root();
    let changes: [Change; 7] = [
        ("content", |s| std::fs::write(s.join("keep"), b"changed").unwrap()),
        ("mode", |s| {
            std::fs::set_permissions(s.join("dir"), std::fs::Permissions::from_mode(0o700)).unwrap()
        }),
        ("xattr value", |s| {
            rustix::fs::lsetxattr(
                s.join("keep"),
                "user.sentinel",
                b"other",
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap()
        }),
        ("new file", |s| std::fs::write(s.join("dir/sub/new"), b"").unwrap()),
        ("removed file", |s| std::fs::remove_file(s.join("dir/inner")).unwrap()),
        ("hard link", |s| {
            std::fs::hard_link(s.join("keep"), s.join("../root/stolen")).unwrap()
        }),
        ("symlink target", |s| {
            std::fs::remove_file(s.join("link")).unwrap();
            std::os::unix::fs::symlink("dir", s.join("link")).unwrap();
        }),
    ];
    for (what, change) in changes {
        let world = World::new(is_root);
        let before = snapshot(&world.sentinel);
        change(&world.sentinel);
        assert_ne!(
            before,
            snapshot(&world.sentinel),
            "the snapshot missed a change of {what}"
        );
    }
    // And through import: rooted one level too high, an ordinary tar does
    // reach the sentinel, and the same check sees it.
    for tar in [
        Tar::new().file("sentinel/keep", b"changed").end(),
        Tar::new().file("sentinel/.wh.keep", b"").end(),
        Tar::new().file("sentinel/.wh..wh..opq", b"").end(),
    ] {
        let world = World::new(is_root);
        let before = snapshot(&world.sentinel);
        let fs = HostFs::new(&world.base).unwrap();
        let _ = import(&fs, &tar[..], &ImportOptions::default());
        assert_ne!(
            before,
            snapshot(&world.sentinel),
            "an import into the sentinel went unseen"
        );
    }
}

/// A tar's own records for overlayfs's private xattrs are never applied:
/// they would steer the kernel (redirects into other layers, opaque
/// directories) from inside an image. Other xattrs are.
#[test]
fn private_overlay_xattrs_in_the_tar_are_ignored() {
    let is_root = rustix::process::geteuid().is_root();
    let private: &[(&[u8], &[u8])] = &[
        (b"SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
        (b"SCHILY.xattr.trusted.overlay.opaque", b"y"),
        (b"SCHILY.xattr.trusted.overlay.origin", b"\x00\xfb\x21"),
        (b"SCHILY.xattr.trusted.overlay.metacopy", b""),
        (b"SCHILY.xattr.user.overlay.opaque", b"y"),
        (b"SCHILY.xattr.user.overlay.redirect", b"/etc"),
    ];
    let with_kept: Vec<(&[u8], &[u8])> = private
        .iter()
        .copied()
        .chain([(&b"SCHILY.xattr.user.kept"[..], &b"1"[..])])
        .collect();
    let tar = Tar::new()
        .pax(&with_kept)
        .dir("d/")
        .pax(&with_kept)
        .file("d/f", b"data")
        .pax(private)
        .symlink("d/l", "f")
        .pax(private)
        .node(b'6', "d/fifo", 0, 0)
        .end();
    let mut checked = Vec::new();
    for mode in EVERY_MODE.iter().copied() {
        let host_dir = tempfile::tempdir().unwrap();
        let host = HostFs::new(host_dir.path()).unwrap();
        let mem = MemFs::new();
        let mut backends: Vec<(&str, &dyn Fs)> = vec![("MemFs", &mem)];
        if is_root {
            backends.push(("HostFs", &host));
        } else {
            eprintln!("not root: HostFs part skipped (import chowns every entry)");
        }
        for (backend, fs) in backends {
            import(
                fs,
                &tar[..],
                &ImportOptions {
                    whiteouts: mode,
                    ..Default::default()
                },
            )
            .unwrap();
            for (path, want) in [
                ("d", &["user.kept"][..]),
                ("d/f", &["user.kept"][..]),
                ("d/l", &[][..]),
                ("d/fifo", &[][..]),
            ] {
                let mut got: Vec<_> = fs
                    .list_xattrs(Path::new(path))
                    .unwrap()
                    .into_iter()
                    .map(|n| n.into_string().unwrap())
                    .collect();
                // SELinux or similar labels are not the tar's doing.
                got.retain(|n| !n.starts_with("security."));
                got.sort();
                assert_eq!(got, want, "{backend} [{}]: xattrs of {path}", mode_name(mode));
            }
            checked.push(format!("{backend} [{}]", mode_name(mode)));
        }
    }
    // The checker itself sees overlay xattrs: a real opaque marker does set one.
    for (mode, ns) in [(TRUSTED, "trusted.overlay.opaque"), (USER, "user.overlay.opaque")] {
        let mem = MemFs::new();
        let tar = Tar::new().dir("d/").file("d/.wh..wh..opq", b"").end();
        import(
            &mem,
            &tar[..],
            &ImportOptions {
                whiteouts: mode,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            mem.get_xattr(Path::new("d"), OsStr::new(ns)).unwrap().as_deref(),
            Some(&b"y"[..])
        );
    }
    println!("checked: {}", checked.join(", "));
}

// ---------------------------------------------------------------------------
// Mutated hostile tars: never a panic, never a change to the sentinel.
// ---------------------------------------------------------------------------

/// Seeds for mutation: hostile tars that get past the first header.
fn seeds(env: &Env) -> Vec<Vec<u8>> {
    vec![
        Tar::new()
            .dirs_of(&env.s_rel)
            .symlink("evil", &env.s)
            .file("evil/keep", b"x")
            .file("evil/.wh.dir", b"")
            .end(),
        Tar::new()
            .symlink("evil", "../..")
            .pax(&[(b"SCHILY.xattr.user.pwned", b"1"), (b"path", b"evil/sentinel/dir")])
            .dir("placeholder/")
            .file("evil/sentinel/.wh..wh..opq", b"")
            .hardlink("h", "evil/sentinel/keep")
            .end(),
        Tar::new()
            .symlink("c1", "c2")
            .symlink("c2", "/")
            .gnu_long(b'L', format!("c1/{}/{}", env.s_rel, "k".repeat(100)).as_bytes())
            .file("short", b"x")
            .end(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mutated_hostile_tars_stay_inside(
        seed in 0usize..3,
        mode in prop::sample::select(EVERY_MODE.to_vec()),
        mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12),
        cut in prop::option::of(any::<prop::sample::Index>()),
        workers in prop::sample::select(vec![1usize, 4]),
    ) {
        let is_root = rustix::process::geteuid().is_root();
        let world = World::new(is_root);
        let env = world.env();
        let mut tar = seeds(&env).swap_remove(seed);
        for (at, byte) in &mutations {
            let i = at.index(tar.len());
            tar[i] = *byte;
        }
        if let Some(cut) = cut {
            tar.truncate(cut.index(tar.len()));
        }
        let before = snapshot(&world.sentinel);
        let fs = HostFs::new(&world.root).unwrap();
        let host = run_import(&fs, &tar, mode, workers);
        prop_assert!(host.is_ok(), "HostFs: {:?}", host.err());
        let after = snapshot(&world.sentinel);
        prop_assert!(before == after, "the sentinel changed:{}", diff(&before, &after));
        for p in world.outside_paths() {
            prop_assert!(std::fs::symlink_metadata(&p).is_err(), "{} created", p.display());
        }
        let mem = run_import(&MemFs::new(), &tar, mode, workers);
        prop_assert!(mem.is_ok(), "MemFs: {:?}", mem.err());
    }
}
