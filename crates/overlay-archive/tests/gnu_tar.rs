//! Tars written by GNU tar itself, in each of its formats, apply as GNU tar
//! extracts them. (Regression: a regular file whose long name's first 100
//! bytes end in '/' was taken for a directory with data and refused, in
//! the `gnu` and `posix` formats, whose header name field holds exactly
//! that cut.) Skips, saying so, where GNU tar is not installed.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::process::Command;

use overlay_archive::{ImportOptions, ImportWhiteouts, import};
use overlay_fs::{FileType, Fs, MemFs};

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
