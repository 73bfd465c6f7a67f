//! Tars written by GNU tar itself, in each of its formats, apply as GNU tar
//! extracts them. (Regression: a regular file whose long name's first 100
//! bytes end in '/' was taken for a directory with data and refused, in
//! the `gnu` and `posix` formats, whose header name field holds exactly
//! that cut.) Sparse files in all five of GNU tar's forms apply as GNU
//! tar extracts them: same data, same holes. Skips, saying so, where GNU
//! tar is not installed (and, for the extraction comparisons, without
//! root).

#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use overlay_archive::{ArchiveError, ImportOptions, ImportWhiteouts, import};
use overlay_fs::{FileType, Fs, HostFs, MemFs, Observe, observe_extraction};

fn gnu_tar() -> bool {
    let ok = Command::new("tar")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("GNU tar"));
    if !ok {
        eprintln!("skipped: GNU tar is not installed");
    }
    ok
}

#[test]
fn long_names_cut_at_a_slash_stay_files_in_every_format() {
    if !gnu_tar() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    // GNU tar names them "./...": with 97 bytes of directory name the
    // first 100 bytes end in '/'. The second cut lands on an inner '/'.
    let d1 = "d".repeat(97);
    let d2 = format!("{}/{}", "e".repeat(60), "f".repeat(36));
    let files = [format!("{d1}/service.proto"), format!("{d2}/x/y.txt")];
    for (i, f) in files.iter().enumerate() {
        let path = tree.join(f);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("contents {i}: {}\n", "z".repeat(200))).unwrap();
    }
    for format in ["gnu", "oldgnu", "posix", "ustar"] {
        let tar = dir.path().join(format!("{format}.tar"));
        let out = Command::new("tar")
            .arg("-C")
            .arg(&tree)
            .arg(format!("--format={format}"))
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .output()
            .unwrap();
        if !out.status.success() {
            // ustar cannot hold every name: GNU tar refuses it too.
            assert_eq!(format, "ustar", "{}", String::from_utf8_lossy(&out.stderr));
            continue;
        }
        let fs = MemFs::new();
        let opts = ImportOptions {
            whiteouts: ImportWhiteouts::Plain,
            ..ImportOptions::default()
        };
        import(&fs, std::fs::File::open(&tar).unwrap(), &opts).unwrap_or_else(|e| panic!("--format={format}: {e}"));
        for (i, f) in files.iter().enumerate() {
            let md = fs
                .metadata(Path::new(f))
                .unwrap_or_else(|e| panic!("--format={format}: {f}: {e}"));
            assert_eq!(md.file_type, FileType::Regular, "--format={format}: {f}");
            assert_eq!(
                fs.read(Path::new(f)).unwrap(),
                format!("contents {i}: {}\n", "z".repeat(200)).into_bytes(),
                "--format={format}"
            );
        }
    }
}

fn root(test: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        eprintln!("skipped {test}: needs root (GNU tar and the import chown)");
    }
    root
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A file of `len` bytes with `data` at each offset and holes between.
fn sparse_file(path: &Path, len: u64, data: &[(u64, &[u8])]) {
    let mut f = std::fs::File::create(path).unwrap();
    for (offset, bytes) in data {
        f.seek(SeekFrom::Start(*offset)).unwrap();
        f.write_all(bytes).unwrap();
    }
    f.set_len(len).unwrap();
}

#[test]
fn sparse_files_in_every_gnu_form_apply_as_gnu_tar_extracts_them() {
    if !gnu_tar() || !root("sparse_files_in_every_gnu_form_apply_as_gnu_tar_extracts_them") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    sparse_file(&tree.join("ends-in-a-hole"), 3 << 20, &[(1 << 20, &[7; 4096])]);
    sparse_file(
        &tree.join("ends-in-data"),
        2 << 20,
        &[(0, b"head"), ((2 << 20) - 4, b"tail")],
    );
    sparse_file(&tree.join("all-hole"), 5 << 20, &[]);
    // 40 data runs: the old GNU header holds 4, extension blocks 21 each.
    let runs: Vec<(u64, &[u8])> = (0..40u64).map(|i| (i * 65536, &b"run"[..])).collect();
    sparse_file(&tree.join("many-runs"), 40 * 65536, &runs);
    std::fs::write(tree.join("dense"), b"not sparse at all").unwrap();
    let forms: [(&str, &[&str]); 5] = [
        ("gnu", &["--format=gnu"]),
        ("oldgnu", &["--format=oldgnu"]),
        ("posix 0.0", &["--format=posix", "--sparse-version=0.0"]),
        ("posix 0.1", &["--format=posix", "--sparse-version=0.1"]),
        ("posix 1.0", &["--format=posix", "--sparse-version=1.0"]),
    ];
    let how = Observe::default();
    for (i, (form, args)) in forms.iter().enumerate() {
        let tar = dir.path().join(format!("{i}.tar"));
        run(Command::new("tar")
            .args(*args)
            .arg("-S")
            .arg("-C")
            .arg(&tree)
            .arg("-cf")
            .arg(&tar)
            .arg("."));
        let gnu = dir.path().join(format!("gnu-{i}"));
        let ours = dir.path().join(format!("ours-{i}"));
        std::fs::create_dir(&gnu).unwrap();
        std::fs::create_dir(&ours).unwrap();
        run(Command::new("tar")
            .args(["--same-owner", "--numeric-owner", "-x", "-C"])
            .arg(&gnu)
            .arg("-f")
            .arg(&tar));
        let fs = HostFs::new(&ours).unwrap();
        let stats = import(&fs, std::fs::File::open(&tar).unwrap(), &ImportOptions::default())
            .unwrap_or_else(|e| panic!("{form}: {e}"));
        let want = observe_extraction(&HostFs::new(&gnu).unwrap(), &how).unwrap();
        assert_eq!(observe_extraction(&fs, &how).unwrap(), want, "{form}");
        let hole = &want[Path::new("ends-in-a-hole")];
        assert!(
            hole.contains("size=3145728 extents=[(1048576, 4096)]"),
            "{form}: GNU tar kept the hole, so must we: {hole}"
        );
        // Docker's ApplyDiff size: real sizes, as Go's Header.Size has them.
        let real: u64 = (3 << 20) + (2 << 20) + (5 << 20) + 40 * 65536 + 17;
        assert_eq!(stats.bytes, real, "{form}");
    }
}

/// A sparse file longer than the tree can take is the tar's doing: refused
/// as hostile, without `MemFs` allocating it.
#[test]
fn a_sparse_file_longer_than_the_tree_takes_is_refused() {
    if !gnu_tar() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    sparse_file(&tree.join("huge"), 1 << 40, &[((1 << 40) - 4, b"tail")]);
    let tar = dir.path().join("huge.tar");
    run(Command::new("tar")
        .args(["-S", "--format=posix", "-C"])
        .arg(&tree)
        .arg("-cf")
        .arg(&tar)
        .arg("huge"));
    assert!(
        std::fs::metadata(&tar).unwrap().len() < 1 << 20,
        "GNU tar wrote it sparse"
    );
    match import(
        &MemFs::new(),
        std::fs::File::open(&tar).unwrap(),
        &ImportOptions::default(),
    ) {
        Err(ArchiveError::Hostile { name, reason }) => {
            assert_eq!(name, "huge");
            assert!(
                reason.contains("sparse real size 1099511627776 is more than the filesystem takes"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// An entry for each of `(type, name, mode, mtime)`, files with `name` as
/// their data.
fn tar_of(entries: &[(u8, &str, u32, u64)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for &(kind, name, mode, mtime) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_mode(mode);
        h.set_mtime(mtime);
        let data = if kind == b'0' { name.as_bytes() } else { b"" };
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Entries that name a directory again: the later entry's mode and time
/// win (GNU tar; Docker sets directory times in tar order), and a
/// directory replaced by a file, or removed, since keeps nothing of its
/// entry (GNU tar checks the inode before it sets a delayed time).
#[test]
fn directories_named_again_take_the_later_entry() {
    if !gnu_tar() || !root("directories_named_again_take_the_later_entry") {
        return;
    }
    let tar = tar_of(&[
        (b'5', "twice/", 0o755, 1_000),
        (b'0', "twice/file", 0o644, 1_500),
        (b'5', "twice/", 0o700, 2_000),
        (b'5', "then-a-file/", 0o755, 3_000),
        (b'0', "then-a-file", 0o600, 4_000),
        (b'5', "back-and-forth/", 0o755, 5_000),
        (b'0', "back-and-forth", 0o644, 6_000),
        (b'5', "back-and-forth/", 0o711, 7_000),
        (b'5', "gone/", 0o755, 8_000),
        (b'5', "gone/inner/", 0o755, 8_500),
        (b'0', "gone", 0o644, 9_000),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let (gnu, ours) = (dir.path().join("gnu"), dir.path().join("ours"));
    std::fs::create_dir(&gnu).unwrap();
    std::fs::create_dir(&ours).unwrap();
    std::fs::write(dir.path().join("t.tar"), &tar).unwrap();
    // A file over a non-empty directory is an error to GNU tar (not to
    // Docker or import): everything but `gone` is compared.
    let _ = Command::new("tar")
        .args([
            "--same-owner",
            "--numeric-owner",
            "--delay-directory-restore",
            "-x",
            "-C",
        ])
        .arg(&gnu)
        .arg("-f")
        .arg(dir.path().join("t.tar"))
        .output()
        .unwrap();
    let fs = HostFs::new(&ours).unwrap();
    import(&fs, &tar[..], &ImportOptions::default()).unwrap();
    let how = Observe::default();
    let mut want = observe_extraction(&HostFs::new(&gnu).unwrap(), &how).unwrap();
    let mut got = observe_extraction(&fs, &how).unwrap();
    let gone = got.remove(Path::new("gone")).unwrap();
    assert!(gone.starts_with("Regular") && gone.contains("mtime=9000"), "{gone}");
    want.retain(|p, _| !p.starts_with("gone"));
    assert_eq!(got, want);
    assert!(want[Path::new("twice")].contains("mode=700"), "{want:?}");
    assert!(want[Path::new("twice")].contains("mtime=2000"), "{want:?}");
}

/// An xattr the filesystem will not take (a namespace Linux does not know:
/// `EOPNOTSUPP`; `user.*` on a symlink: `EPERM`) is skipped, as GNU tar
/// (with a warning) and Docker (`lsetxattr` errors ENOTSUP and EPERM) skip
/// it; the rest of the entry and of the tar is applied.
#[test]
fn xattrs_the_filesystem_refuses_are_skipped() {
    if !gnu_tar() || !root("xattrs_the_filesystem_refuses_are_skipped") {
        return;
    }
    let mut b = tar::Builder::new(Vec::new());
    let entry = |b: &mut tar::Builder<Vec<u8>>, kind, name: &str, link: &str, xattrs: &[(&str, &[u8])]| {
        let records: Vec<(String, &[u8])> = xattrs.iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v)).collect();
        b.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_mtime(1_000);
        h.set_size(0);
        if !link.is_empty() {
            h.set_link_name(link).unwrap();
        }
        b.append_data(&mut h, name, &b""[..]).unwrap();
    };
    entry(
        &mut b,
        tar::EntryType::Regular,
        "file",
        "",
        &[("usev.u", b"1"), ("user.kept", b"2")],
    );
    entry(
        &mut b,
        tar::EntryType::Symlink,
        "link",
        "file",
        &[("user.on-a-link", b"3"), ("trusted.kept", b"4")],
    );
    entry(&mut b, tar::EntryType::Directory, "dir", "", &[("nonsense", b"5")]);
    entry(&mut b, tar::EntryType::Regular, "after", "", &[]);
    let tar = b.into_inner().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (gnu, ours) = (dir.path().join("gnu"), dir.path().join("ours"));
    std::fs::create_dir(&gnu).unwrap();
    std::fs::create_dir(&ours).unwrap();
    std::fs::write(dir.path().join("t.tar"), &tar).unwrap();
    run(Command::new("tar")
        .args([
            "--same-owner",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "-x",
            "-C",
        ])
        .arg(&gnu)
        .arg("-f")
        .arg(dir.path().join("t.tar")));
    let fs = HostFs::new(&ours).unwrap();
    import(&fs, &tar[..], &ImportOptions::default()).unwrap();
    let how = Observe {
        xattrs: &|n| !n.to_string_lossy().starts_with("security."),
        ..Observe::default()
    };
    let want = observe_extraction(&HostFs::new(&gnu).unwrap(), &how).unwrap();
    assert_eq!(observe_extraction(&fs, &how).unwrap(), want);
    assert!(want[Path::new("file")].contains("user.kept"), "{want:?}");
    assert!(want[Path::new("link")].contains("trusted.kept"), "{want:?}");
    assert!(want.contains_key(Path::new("after")));
}
