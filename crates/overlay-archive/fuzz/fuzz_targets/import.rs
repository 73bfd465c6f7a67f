//! Fuzzes `overlay_archive::import` with arbitrary bytes as the tar stream.
//!
//! Every input is imported into a fresh `MemFs` once per whiteout mode:
//! whatever the bytes, import returns (an error or stats) and never panics.
//!
//! With `OVERLAY_FUZZ_HOST=1` each input is also imported into a `HostFs`
//! rooted at `TMP/root` with a sentinel file at `TMP/sentinel` beside it
//! (slower: a temporary directory per input). Nothing may appear beside
//! the root and the sentinel must stay as it was: either is a crash.
//!
//! Run it with `cargo xtask fuzz [--seconds N]`.

#![no_main]

use std::os::unix::fs::MetadataExt;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use overlay_archive::{ImportOptions, ImportWhiteouts, XattrNamespace, import};
use overlay_fs::{HostFs, MemFs};

const MODES: [ImportWhiteouts; 3] = [
    ImportWhiteouts::Overlay(XattrNamespace::Trusted),
    ImportWhiteouts::Overlay(XattrNamespace::User),
    ImportWhiteouts::Plain,
];

const SENTINEL: &[u8] = b"the fuzzer must not change this\n";

static HOST: LazyLock<bool> = LazyLock::new(|| std::env::var_os("OVERLAY_FUZZ_HOST").is_some_and(|v| v == "1"));

fuzz_target!(|data: &[u8]| {
    for whiteouts in MODES {
        let opts = ImportOptions {
            whiteouts,
            ..Default::default()
        };
        let _ = import(&MemFs::new(), data, &opts);
    }
    if *HOST {
        for whiteouts in MODES {
            host(data, whiteouts);
        }
    }
});

/// Imports into a `HostFs` and checks that nothing outside its root changed.
fn host(data: &[u8], whiteouts: ImportWhiteouts) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    let root = base.join("root");
    let sentinel = base.join("sentinel");
    std::fs::create_dir(&root).expect("mkdir root");
    std::fs::write(&sentinel, SENTINEL).expect("write sentinel");
    let before = std::fs::symlink_metadata(&sentinel).expect("lstat sentinel");

    let fs = HostFs::new(&root).expect("HostFs");
    let opts = ImportOptions {
        whiteouts,
        ..Default::default()
    };
    let _ = import(&fs, data, &opts);

    let mut beside: Vec<_> = std::fs::read_dir(base)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    beside.sort();
    assert_eq!(beside, ["root", "sentinel"], "something appeared beside the root");
    let after = std::fs::symlink_metadata(&sentinel).expect("lstat sentinel");
    assert!(after.file_type().is_file(), "the sentinel was replaced");
    assert_eq!(
        std::fs::read(&sentinel).expect("read sentinel"),
        SENTINEL,
        "the sentinel changed"
    );
    assert_eq!(
        (
            before.ino(),
            before.mode(),
            before.nlink(),
            before.ctime(),
            before.ctime_nsec()
        ),
        (
            after.ino(),
            after.mode(),
            after.nlink(),
            after.ctime(),
            after.ctime_nsec()
        ),
        "the sentinel's inode changed"
    );
}
