//! One behaviour, two backends: every test here runs against `HostFs` (in a
//! fresh temporary directory) and `MemFs`, and both must agree with what
//! the Linux kernel does.
//!
//! Tests that need root on the host (chown, device nodes, `trusted.*`
//! xattrs) print why they skip when run unprivileged; `MemFs` always runs.

#![allow(clippy::unwrap_used, missing_docs)]

use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use overlay_fs::{ErrorKind, FileType, Fs, HostFs, MemFs, NodeKind, Timestamp, makedev};

fn p(s: &str) -> &Path {
    Path::new(s)
}

fn x(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn kind<T>(r: overlay_fs::Result<T>) -> ErrorKind {
    match r {
        Ok(_) => panic!("operation should fail"),
        Err(e) => e.kind(),
    }
}

/// A backend under test, and whether it can do what needs root.
struct Backend {
    fs: Box<dyn Fs>,
    privileged: bool,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    fn host() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = HostFs::new(dir.path()).expect("HostFs::new");
        // The tree's root gets the same mode as MemFs's root.
        fs.set_mode(p(""), 0o755).expect("chmod root");
        Self {
            fs: Box::new(fs),
            privileged: rustix::process::geteuid().is_root(),
            _dir: Some(dir),
        }
    }

    fn mem() -> Self {
        Self {
            fs: Box::new(MemFs::new()),
            privileged: true,
            _dir: None,
        }
    }

    /// False (after saying why) when the test needs root and the host
    /// backend runs unprivileged.
    fn can(&self, what: &str) -> bool {
        if !self.privileged {
            eprintln!("skipped on HostFs: {what} needs root");
        }
        self.privileged
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod host {
            $( #[test] fn $name() { super::$name(&super::Backend::host()) } )*
        }
        mod mem {
            $( #[test] fn $name() { super::$name(&super::Backend::mem()) } )*
        }
    };
}

conformance!(
    files_are_created_read_and_truncated,
    modes_are_exact_whatever_the_umask,
    open_handles_read_write_and_seek,
    mkdir_errors,
    symlinks_are_stored_not_followed,
    hard_links_share_one_inode,
    special_nodes,
    xattrs_follow_the_kernel_namespace_rules,
    mode_owner_and_times_do_not_follow_symlinks,
    chown_clears_setuid,
    removal_rules,
    remove_all_never_follows_symlinks,
    rename_rules,
    renamed_directories_move_their_dotdot,
    resolution_stays_inside_the_root,
    symlink_loops_are_refused,
    the_root_itself,
    read_dir_lists_names_and_types,
    unlinked_open_file_stays_readable,
    setgid_directories_pass_their_group_down,
    bad_paths_are_refused,
    mkdir_all_creates_parents,
    create_refuses_non_regular_targets,
    create_new_is_exclusive,
    open_files_take_metadata,
    directory_handles_walk_a_tree,
    subtrees_are_roots_of_their_own,
    seeking_past_the_end_leaves_a_hole,
);

fn files_are_created_read_and_truncated(b: &Backend) {
    let fs = &*b.fs;
    fs.write(p("f"), 0o644, b"hello world").unwrap();
    assert_eq!(fs.read(p("f")).unwrap(), b"hello world");
    let md = fs.metadata(p("f")).unwrap();
    assert_eq!((md.file_type, md.size, md.nlink), (FileType::Regular, 11, 1));
    // Truncating keeps the old mode, like O_TRUNC.
    fs.write(p("f"), 0o600, b"hi").unwrap();
    assert_eq!(fs.read(p("f")).unwrap(), b"hi");
    assert_eq!(fs.metadata(p("f")).unwrap().mode, 0o644);
    assert_eq!(kind(fs.read(p("missing"))), ErrorKind::NotFound);
    assert_eq!(kind(fs.read(p("f/x"))), ErrorKind::NotADirectory);
    assert!(fs.exists(p("f")).unwrap());
    assert!(!fs.exists(p("nope")).unwrap());
}

fn modes_are_exact_whatever_the_umask(b: &Backend) {
    let fs = &*b.fs;
    for (i, mode) in [0o777, 0o666, 0o4755, 0o2750, 0o1777, 0o000].into_iter().enumerate() {
        let f = format!("f{i}");
        fs.write(p(&f), mode, b"").unwrap();
        assert_eq!(fs.metadata(p(&f)).unwrap().mode, mode, "file {mode:o}");
        let d = format!("d{i}");
        fs.mkdir(p(&d), mode).unwrap();
        assert_eq!(fs.metadata(p(&d)).unwrap().mode, mode, "dir {mode:o}");
        let n = format!("n{i}");
        fs.mknod(p(&n), NodeKind::Fifo, mode & 0o777).unwrap();
        assert_eq!(fs.metadata(p(&n)).unwrap().mode, mode & 0o777, "fifo {mode:o}");
    }
}

fn open_handles_read_write_and_seek(b: &Backend) {
    let fs = &*b.fs;
    {
        let mut f = fs.create_file(p("f"), 0o644).unwrap();
        f.write_all(b"0123456789").unwrap();
        assert_eq!(f.metadata().unwrap().size, 10);
        f.set_len(4).unwrap();
        let mut buf = Vec::new();
        assert!(f.read_to_end(&mut buf).is_err(), "a write-only handle cannot read");
    }
    assert_eq!(fs.read(p("f")).unwrap(), b"0123");
    {
        let mut f = fs.open_file_rw(p("f")).unwrap();
        f.seek(SeekFrom::Start(2)).unwrap();
        f.write_all(b"XYZ").unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "01XYZ");
    }
    let mut f = fs.open_file(p("f")).unwrap();
    assert!(f.write_all(b"no").is_err(), "a read-only handle cannot write");
    f.seek(SeekFrom::End(-2)).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "YZ");
}

fn mkdir_errors(b: &Backend) {
    let fs = &*b.fs;
    fs.mkdir(p("d"), 0o755).unwrap();
    assert_eq!(kind(fs.mkdir(p("d"), 0o755)), ErrorKind::AlreadyExists);
    fs.write(p("f"), 0o644, b"").unwrap();
    assert_eq!(kind(fs.mkdir(p("f"), 0o755)), ErrorKind::AlreadyExists);
    assert_eq!(kind(fs.mkdir(p("f/d"), 0o755)), ErrorKind::NotADirectory);
    assert_eq!(kind(fs.mkdir(p("no/d"), 0o755)), ErrorKind::NotFound);
    fs.symlink(p("nowhere"), p("dangling")).unwrap();
    assert_eq!(kind(fs.mkdir(p("dangling"), 0o755)), ErrorKind::AlreadyExists);
    assert_eq!(fs.metadata(p("d")).unwrap().nlink, 2);
    fs.mkdir(p("d/sub"), 0o755).unwrap();
    assert_eq!(fs.metadata(p("d")).unwrap().nlink, 3);
}

fn symlinks_are_stored_not_followed(b: &Backend) {
    let fs = &*b.fs;
    fs.write(p("target"), 0o644, b"data").unwrap();
    fs.symlink(p("target"), p("link")).unwrap();
    fs.symlink(p("/abs/../x"), p("odd")).unwrap();
    let md = fs.metadata(p("link")).unwrap();
    assert_eq!((md.file_type, md.size, md.mode), (FileType::Symlink, 6, 0o777));
    assert_eq!(fs.readlink(p("link")).unwrap(), p("target"));
    assert_eq!(
        fs.readlink(p("odd")).unwrap(),
        p("/abs/../x"),
        "targets are stored verbatim"
    );
    assert_eq!(kind(fs.readlink(p("target"))), ErrorKind::InvalidInput);
    assert_eq!(kind(fs.symlink(p(""), p("empty"))), ErrorKind::NotFound);
    assert_eq!(kind(fs.symlink(p("x"), p("link"))), ErrorKind::AlreadyExists);
    assert_eq!(kind(fs.open_file(p("link"))), ErrorKind::SymlinkLoop);
}

fn hard_links_share_one_inode(b: &Backend) {
    let fs = &*b.fs;
    fs.write(p("a"), 0o600, b"one").unwrap();
    fs.hardlink(p("a"), p("b")).unwrap();
    let (ma, mb) = (fs.metadata(p("a")).unwrap(), fs.metadata(p("b")).unwrap());
    assert_eq!((ma.ino, ma.nlink), (mb.ino, 2));
    fs.write(p("b"), 0o644, b"two").unwrap();
    assert_eq!(fs.read(p("a")).unwrap(), b"two");
    fs.set_mode(p("b"), 0o640).unwrap();
    assert_eq!(fs.metadata(p("a")).unwrap().mode, 0o640);
    fs.remove_file(p("a")).unwrap();
    assert_eq!(fs.metadata(p("b")).unwrap().nlink, 1);
    assert_eq!(kind(fs.hardlink(p("b"), p("b"))), ErrorKind::AlreadyExists);
    assert_eq!(kind(fs.hardlink(p("missing"), p("c"))), ErrorKind::NotFound);
    fs.mkdir(p("d"), 0o755).unwrap();
    assert_eq!(kind(fs.hardlink(p("d"), p("e"))), ErrorKind::PermissionDenied);
    // A link to a symlink links the symlink itself.
    fs.symlink(p("b"), p("s")).unwrap();
    fs.hardlink(p("s"), p("s2")).unwrap();
    assert_eq!(fs.metadata(p("s2")).unwrap().file_type, FileType::Symlink);
    assert_eq!(fs.metadata(p("b")).unwrap().nlink, 1);
}

fn special_nodes(b: &Backend) {
    let fs = &*b.fs;
    fs.mknod(p("fifo"), NodeKind::Fifo, 0o644).unwrap();
    assert_eq!(fs.metadata(p("fifo")).unwrap().file_type, FileType::Fifo);
    assert_eq!(kind(fs.open_file(p("fifo"))), ErrorKind::NotARegularFile);
    assert_eq!(
        kind(fs.mknod(p("fifo"), NodeKind::Fifo, 0o644)),
        ErrorKind::AlreadyExists
    );
    if !b.can("mknod of devices") {
        return;
    }
    fs.mknod(p("wh"), NodeKind::WHITEOUT, 0o000).unwrap();
    let md = fs.metadata(p("wh")).unwrap();
    assert!(md.is_whiteout(), "{md:?}");
    assert_eq!(kind(fs.open_file(p("wh"))), ErrorKind::NotARegularFile);
    fs.mknod(p("loop"), NodeKind::BlockDevice(makedev(7, 0)), 0o660)
        .unwrap();
    let md = fs.metadata(p("loop")).unwrap();
    assert_eq!(
        (md.file_type, overlay_fs::major(md.rdev), overlay_fs::minor(md.rdev)),
        (FileType::BlockDevice, 7, 0)
    );
    fs.mknod(p("null"), NodeKind::CharDevice(makedev(1, 3)), 0o666).unwrap();
    assert_eq!(fs.metadata(p("null")).unwrap().rdev, makedev(1, 3));
    // Never opened: a device node in an image must not be touched.
    assert_eq!(kind(fs.open_file_rw(p("null"))), ErrorKind::NotARegularFile);
}

fn xattrs_follow_the_kernel_namespace_rules(b: &Backend) {
    let fs = &*b.fs;
    fs.mkdir(p("d"), 0o755).unwrap();
    fs.set_xattr(p("d"), x("user.a"), b"1").unwrap();
    fs.set_xattr(p("d"), x("user.b"), b"").unwrap();
    assert_eq!(fs.get_xattr(p("d"), x("user.a")).unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(fs.get_xattr(p("d"), x("user.b")).unwrap().as_deref(), Some(&b""[..]));
    assert_eq!(fs.get_xattr(p("d"), x("user.none")).unwrap(), None);
    fs.set_xattr(p("d"), x("user.a"), b"22").unwrap();
    assert_eq!(fs.get_xattr(p("d"), x("user.a")).unwrap().as_deref(), Some(&b"22"[..]));
    let mut names = fs.list_xattrs(p("d")).unwrap();
    names.sort();
    assert_eq!(names, vec![x("user.a").to_os_string(), x("user.b").to_os_string()]);
    fs.remove_xattr(p("d"), x("user.b")).unwrap();
    assert_eq!(kind(fs.remove_xattr(p("d"), x("user.b"))), ErrorKind::NoSuchAttribute);
    assert_eq!(kind(fs.set_xattr(p("d"), x("bogus.a"), b"")), ErrorKind::Unsupported);
    assert_eq!(kind(fs.set_xattr(p("d"), x(""), b"")), ErrorKind::InvalidInput);
    assert_eq!(
        kind(fs.set_xattr(p("d"), x("user.big"), &vec![0u8; 65537])),
        ErrorKind::InvalidInput
    );
    assert_eq!(kind(fs.get_xattr(p("missing"), x("user.a"))), ErrorKind::NotFound);
    // user.* only on files and directories; a symlink is never followed.
    fs.symlink(p("d"), p("s")).unwrap();
    assert_eq!(
        kind(fs.set_xattr(p("s"), x("user.a"), b"x")),
        ErrorKind::PermissionDenied
    );
    assert_eq!(fs.get_xattr(p("s"), x("user.a")).unwrap(), None);
    if !b.can("trusted.* xattrs") {
        return;
    }
    fs.set_xattr(p("d"), x("trusted.overlay.opaque"), b"y").unwrap();
    assert_eq!(
        fs.get_xattr(p("d"), x("trusted.overlay.opaque")).unwrap().as_deref(),
        Some(&b"y"[..])
    );
    fs.set_xattr(p("s"), x("trusted.t"), b"on-link").unwrap();
    assert_eq!(
        fs.get_xattr(p("s"), x("trusted.t")).unwrap().as_deref(),
        Some(&b"on-link"[..])
    );
    assert_eq!(
        fs.get_xattr(p("d"), x("trusted.t")).unwrap(),
        None,
        "the target is untouched"
    );
}

fn mode_owner_and_times_do_not_follow_symlinks(b: &Backend) {
    let fs = &*b.fs;
    fs.write(p("f"), 0o644, b"").unwrap();
    fs.symlink(p("f"), p("s")).unwrap();
    assert_eq!(kind(fs.set_mode(p("s"), 0o600)), ErrorKind::Unsupported);
    assert_eq!(fs.metadata(p("f")).unwrap().mode, 0o644);
    let t = Timestamp {
        sec: 1_000_000_000,
        nsec: 123_456_789,
    };
    fs.set_times(p("s"), Some(t), Some(t)).unwrap();
    assert_eq!(fs.metadata(p("s")).unwrap().mtime, t);
    assert_ne!(fs.metadata(p("f")).unwrap().mtime, t);
    let t2 = Timestamp::from_secs(42);
    fs.set_times(p("f"), None, Some(t2)).unwrap();
    let md = fs.metadata(p("f")).unwrap();
    assert_eq!(md.mtime, t2);
    assert_ne!(md.atime, t2, "None leaves atime alone");
    if !b.can("chown") {
        return;
    }
    fs.set_owner(p("s"), 1000, 1001).unwrap();
    let (ms, mf) = (fs.metadata(p("s")).unwrap(), fs.metadata(p("f")).unwrap());
    assert_eq!((ms.uid, ms.gid, mf.uid, mf.gid), (1000, 1001, 0, 0));
    assert_eq!(kind(fs.set_owner(p("f"), u32::MAX, 0)), ErrorKind::InvalidInput);
}

fn chown_clears_setuid(b: &Backend) {
    if !b.can("chown") {
        return;
    }
    let fs = &*b.fs;
    fs.write(p("suid"), 0o4755, b"").unwrap();
    fs.write(p("sgid_x"), 0o2755, b"").unwrap();
    fs.write(p("sgid_nox"), 0o2745, b"").unwrap();
    fs.mkdir(p("dir"), 0o2755).unwrap();
    for f in ["suid", "sgid_x", "sgid_nox", "dir"] {
        fs.set_owner(p(f), 5, 5).unwrap();
    }
    assert_eq!(fs.metadata(p("suid")).unwrap().mode, 0o755);
    assert_eq!(fs.metadata(p("sgid_x")).unwrap().mode, 0o755);
    assert_eq!(
        fs.metadata(p("sgid_nox")).unwrap().mode,
        0o2745,
        "setgid without group-exec is mandatory locking, kept"
    );
    assert_eq!(fs.metadata(p("dir")).unwrap().mode, 0o2755, "directories keep setgid");
    // chmod after chown is how an extractor keeps setuid.
    fs.set_mode(p("suid"), 0o4755).unwrap();
    assert_eq!(fs.metadata(p("suid")).unwrap().mode, 0o4755);
}

fn removal_rules(b: &Backend) {
    let fs = &*b.fs;
    fs.mkdir(p("d"), 0o755).unwrap();
    fs.write(p("d/f"), 0o644, b"").unwrap();
    assert_eq!(kind(fs.remove_file(p("d"))), ErrorKind::IsADirectory);
    assert_eq!(kind(fs.remove_dir(p("d/f"))), ErrorKind::NotADirectory);
    assert_eq!(kind(fs.remove_dir(p("d"))), ErrorKind::DirectoryNotEmpty);
    assert_eq!(kind(fs.remove_file(p("d/none"))), ErrorKind::NotFound);
    fs.symlink(p("d"), p("s")).unwrap();
    assert_eq!(kind(fs.remove_dir(p("s"))), ErrorKind::NotADirectory);
    fs.remove_file(p("s")).unwrap();
    assert!(fs.exists(p("d/f")).unwrap());
    fs.remove_file(p("d/f")).unwrap();
    fs.remove_dir(p("d")).unwrap();
    assert!(!fs.exists(p("d")).unwrap());
    assert_eq!(kind(fs.remove_dir(p(""))), ErrorKind::InvalidInput);
}

fn remove_all_never_follows_symlinks(b: &Backend) {
    let fs = &*b.fs;
    fs.mkdir_all(p("keep/inner"), 0o755).unwrap();
    fs.write(p("keep/inner/file"), 0o644, b"precious").unwrap();
    fs.mkdir_all(p("gone/a/b/c"), 0o700).unwrap();
    fs.write(p("gone/a/b/c/f"), 0o000, b"x").unwrap();
    fs.set_mode(p("gone/a/b"), 0o000).unwrap();
    fs.symlink(p("../keep"), p("gone/rel")).unwrap();
    fs.symlink(p("/keep/inner"), p("gone/a/abs")).unwrap();
    fs.remove_all(p("gone")).unwrap();
    assert!(!fs.exists(p("gone")).unwrap());
    assert_eq!(fs.read(p("keep/inner/file")).unwrap(), b"precious");
    fs.remove_all(p("gone")).unwrap();
    fs.remove_all(p("never/existed")).unwrap();
    fs.write(p("single"), 0o644, b"").unwrap();
    fs.remove_all(p("single")).unwrap();
    assert!(!fs.exists(p("single")).unwrap());
    assert_eq!(kind(fs.remove_all(p("/"))), ErrorKind::InvalidInput);
}

fn rename_rules(b: &Backend) {
    let fs = &*b.fs;
    fs.write(p("f"), 0o644, b"f").unwrap();
    fs.write(p("g"), 0o644, b"g").unwrap();
    fs.mkdir_all(p("d/sub"), 0o755).unwrap();
    fs.mkdir(p("e"), 0o755).unwrap();
    fs.rename(p("f"), p("g")).unwrap();
    assert_eq!(fs.read(p("g")).unwrap(), b"f");
    assert!(!fs.exists(p("f")).unwrap());
    assert_eq!(kind(fs.rename(p("g"), p("d"))), ErrorKind::IsADirectory);
    assert_eq!(kind(fs.rename(p("e"), p("g"))), ErrorKind::NotADirectory);
    assert_eq!(kind(fs.rename(p("e"), p("d"))), ErrorKind::DirectoryNotEmpty);
    assert_eq!(kind(fs.rename(p("d"), p("d/sub/x"))), ErrorKind::InvalidInput);
    assert_eq!(kind(fs.rename(p("d/sub"), p("d"))), ErrorKind::DirectoryNotEmpty);
    assert_eq!(kind(fs.rename(p("missing"), p("x"))), ErrorKind::NotFound);
    fs.rename(p("d"), p("e")).unwrap();
    assert!(fs.metadata(p("e/sub")).unwrap().is_dir());
    // Two names of one inode: rename(2) does nothing and both stay.
    fs.hardlink(p("g"), p("h")).unwrap();
    fs.rename(p("g"), p("h")).unwrap();
    assert!(fs.exists(p("g")).unwrap() && fs.exists(p("h")).unwrap());
    fs.rename(p("g"), p("g")).unwrap();
    // A symlink is renamed, not its target.
    fs.symlink(p("e"), p("s")).unwrap();
    fs.rename(p("s"), p("t")).unwrap();
    assert_eq!(fs.readlink(p("t")).unwrap(), p("e"));
    assert!(fs.exists(p("e/sub")).unwrap());
}

fn renamed_directories_move_their_dotdot(b: &Backend) {
    let fs = &*b.fs;
    fs.mkdir_all(p("a/b"), 0o755).unwrap();
    fs.mkdir(p("c"), 0o755).unwrap();
    fs.write(p("c/mark"), 0o644, b"c").unwrap();
    fs.rename(p("a/b"), p("c/b")).unwrap();
    assert_eq!(fs.read(p("c/b/../mark")).unwrap(), b"c");
    // `..` after a symlink is the physical parent of the target.
    fs.symlink(p("/c/b"), p("a/link")).unwrap();
    assert_eq!(fs.read(p("a/link/../mark")).unwrap(), b"c");
}

fn resolution_stays_inside_the_root(b: &Backend) {
    let fs = &*b.fs;
    fs.mkdir(p("etc"), 0o755).unwrap();
    fs.write(p("etc/passwd"), 0o644, b"inside").unwrap();
    fs.symlink(p("/"), p("slash")).unwrap();
    fs.symlink(p("../../../.."), p("up")).unwrap();
    fs.symlink(p("/etc"), p("abs_etc")).unwrap();
    fs.symlink(p("slash/up/abs_etc"), p("chain")).unwrap();
    for via in [
        "slash/etc/passwd",
        "up/etc/passwd",
        "abs_etc/passwd",
        "chain/passwd",
        "../../etc/passwd",
        "/../etc/passwd",
        "etc/../../etc/passwd",
    ] {
        assert_eq!(fs.read(p(via)).unwrap(), b"inside", "{via}");
    }
    fs.write(p("chain/new"), 0o600, b"n").unwrap();
    assert_eq!(fs.read(p("etc/new")).unwrap(), b"n");
    assert_eq!(fs.metadata(p("slash")).unwrap().file_type, FileType::Symlink);
    assert_eq!(kind(fs.read(p("slash"))), ErrorKind::SymlinkLoop);
}

fn symlink_loops_are_refused(b: &Backend) {
    let fs = &*b.fs;
    fs.symlink(p("b"), p("a")).unwrap();
    fs.symlink(p("a"), p("b")).unwrap();
    fs.symlink(p("self/x"), p("self")).unwrap();
    assert_eq!(kind(fs.read(p("a/x"))), ErrorKind::SymlinkLoop);
    assert_eq!(kind(fs.mkdir(p("self/y"), 0o755)), ErrorKind::SymlinkLoop);
    assert_eq!(fs.metadata(p("a")).unwrap().file_type, FileType::Symlink);
    // 40 links are followed, the 41st is refused.
    fs.mkdir(p("end"), 0o755).unwrap();
    fs.symlink(p("end"), p("l0")).unwrap();
    for i in 1..=40 {
        fs.symlink(p(&format!("l{}", i - 1)), p(&format!("l{i}"))).unwrap();
    }
    fs.write(p("l39/ok"), 0o644, b"").unwrap();
    assert_eq!(kind(fs.write(p("l40/no"), 0o644, b"")), ErrorKind::SymlinkLoop);
}

fn the_root_itself(b: &Backend) {
    let fs = &*b.fs;
    assert!(fs.metadata(p("")).unwrap().is_dir());
    assert!(fs.metadata(p("/")).unwrap().is_dir());
    fs.set_mode(p("/"), 0o710).unwrap();
    assert_eq!(fs.metadata(p(".")).unwrap().mode, 0o710);
    fs.set_xattr(p(""), x("user.root"), b"r").unwrap();
    assert_eq!(
        fs.get_xattr(p("/"), x("user.root")).unwrap().as_deref(),
        Some(&b"r"[..])
    );
    assert!(fs.list_xattrs(p("")).unwrap().contains(&x("user.root").to_os_string()));
    fs.remove_xattr(p(""), x("user.root")).unwrap();
    let t = Timestamp::from_secs(7);
    fs.set_times(p(""), None, Some(t)).unwrap();
    assert_eq!(fs.metadata(p("")).unwrap().mtime, t);
    assert!(fs.read_dir(p("")).unwrap().is_empty());
    for r in [
        fs.rename(p(""), p("x")),
        fs.remove_file(p("/")),
        fs.mkdir(p("."), 0o755),
    ] {
        assert_eq!(kind(r), ErrorKind::InvalidInput);
    }
    if b.can("chown") {
        fs.set_owner(p(""), 3, 4).unwrap();
        let md = fs.metadata(p("")).unwrap();
        assert_eq!((md.uid, md.gid), (3, 4));
    }
}

fn read_dir_lists_names_and_types(b: &Backend) {
    let fs = &*b.fs;
    fs.mkdir(p("d"), 0o755).unwrap();
    fs.mkdir(p("d/sub"), 0o755).unwrap();
    fs.write(p("d/file"), 0o644, b"").unwrap();
    fs.symlink(p("sub"), p("d/link")).unwrap();
    fs.mknod(p("d/pipe"), NodeKind::Fifo, 0o644).unwrap();
    let mut entries: Vec<_> = fs
        .read_dir(p("d"))
        .unwrap()
        .into_iter()
        .map(|e| (e.name.into_string().unwrap(), e.file_type))
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        vec![
            ("file".into(), FileType::Regular),
            ("link".into(), FileType::Symlink),
            ("pipe".into(), FileType::Fifo),
            ("sub".into(), FileType::Directory),
        ]
    );
    assert_eq!(kind(fs.read_dir(p("d/file"))), ErrorKind::NotADirectory);
    assert_eq!(
        kind(fs.read_dir(p("d/link"))),
        ErrorKind::NotADirectory,
        "a final symlink is not followed"
    );
    assert_eq!(
        fs.read_dir(p("d/link/..")).map(|_| ()).map_err(|e| e.kind()),
        Err(ErrorKind::InvalidInput)
    );
    assert_eq!(fs.read_dir(p("d/link/../sub")).unwrap().len(), 0);
}

fn unlinked_open_file_stays_readable(b: &Backend) {
    let fs = &*b.fs;
    fs.write(p("f"), 0o644, b"still here").unwrap();
    let mut h = fs.open_file(p("f")).unwrap();
    fs.remove_file(p("f")).unwrap();
    assert!(!fs.exists(p("f")).unwrap());
    let mut s = String::new();
    h.read_to_string(&mut s).unwrap();
    assert_eq!(s, "still here");
    assert_eq!(h.metadata().unwrap().nlink, 0);
}

fn setgid_directories_pass_their_group_down(b: &Backend) {
    if !b.can("chown") {
        return;
    }
    let fs = &*b.fs;
    fs.mkdir(p("shared"), 0o755).unwrap();
    fs.set_owner(p("shared"), 0, 77).unwrap();
    fs.set_mode(p("shared"), 0o2775).unwrap();
    fs.mkdir(p("shared/sub"), 0o755).unwrap();
    fs.write(p("shared/file"), 0o644, b"").unwrap();
    let (d, f) = (
        fs.metadata(p("shared/sub")).unwrap(),
        fs.metadata(p("shared/file")).unwrap(),
    );
    assert_eq!((d.mode, d.gid), (0o2755, 77));
    assert_eq!((f.mode, f.gid), (0o644, 77));
}

fn bad_paths_are_refused(b: &Backend) {
    let fs = &*b.fs;
    let long = "n".repeat(256);
    assert_eq!(kind(fs.mkdir(p(&long), 0o755)), ErrorKind::NameTooLong);
    assert_eq!(kind(fs.write(p("a\0b"), 0o644, b"")), ErrorKind::InvalidInput);
    let e = fs.mkdir(p("x/.."), 0o755).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("x/.."), "the error names the path: {e}");
    let e = fs.read(p("some/missing/file")).unwrap_err();
    assert!(e.to_string().contains("some/missing/file"), "{e}");
}

fn mkdir_all_creates_parents(b: &Backend) {
    let fs = &*b.fs;
    fs.mkdir_all(p("a/b/c"), 0o750).unwrap();
    assert_eq!(fs.metadata(p("a/b/c")).unwrap().mode, 0o750);
    fs.mkdir_all(p("a/b/c"), 0o700).unwrap();
    assert_eq!(fs.metadata(p("a/b/c")).unwrap().mode, 0o750, "existing dirs are kept");
    fs.symlink(p("a"), p("s")).unwrap();
    fs.mkdir_all(p("s/b/d"), 0o755).unwrap();
    assert!(fs.metadata(p("a/b/d")).unwrap().is_dir());
    fs.write(p("a/file"), 0o644, b"").unwrap();
    assert_eq!(kind(fs.mkdir_all(p("a/file/x"), 0o755)), ErrorKind::NotADirectory);
    assert_eq!(kind(fs.mkdir_all(p("a/file"), 0o755)), ErrorKind::NotADirectory);
}

fn create_refuses_non_regular_targets(b: &Backend) {
    let fs = &*b.fs;
    fs.mkdir(p("d"), 0o755).unwrap();
    fs.symlink(p("target"), p("s")).unwrap();
    fs.mknod(p("p"), NodeKind::Fifo, 0o644).unwrap();
    assert_eq!(kind(fs.create_file(p("d"), 0o644)), ErrorKind::IsADirectory);
    assert_eq!(kind(fs.create_file(p("s"), 0o644)), ErrorKind::SymlinkLoop);
    assert_eq!(kind(fs.create_file(p("p"), 0o644)), ErrorKind::NotARegularFile);
    assert!(
        !fs.exists(p("target")).unwrap(),
        "a dangling symlink is never created through"
    );
}

fn create_new_is_exclusive(b: &Backend) {
    let fs = &*b.fs;
    fs.write(p("a"), 0o644, b"one").unwrap();
    fs.hardlink(p("a"), p("b")).unwrap();
    assert_eq!(kind(fs.create_new(p("b"), 0o644)), ErrorKind::AlreadyExists);
    fs.symlink(p("nowhere"), p("s")).unwrap();
    assert_eq!(kind(fs.create_new(p("s"), 0o644)), ErrorKind::AlreadyExists);
    assert!(!fs.exists(p("nowhere")).unwrap());
    fs.remove_file(p("b")).unwrap();
    fs.create_new(p("b"), 0o4750).unwrap().write_all(b"two").unwrap();
    assert_eq!(fs.read(p("a")).unwrap(), b"one", "the old inode is untouched");
    assert_eq!(fs.metadata(p("b")).unwrap().mode, 0o4750);
}

fn open_files_take_metadata(b: &Backend) {
    let fs = &*b.fs;
    let f = fs.create_new(p("f"), 0o4755).unwrap();
    let t = Timestamp {
        sec: 1_234_567_890,
        nsec: 5,
    };
    f.set_times(None, Some(t)).unwrap();
    f.set_xattr(x("user.k"), b"v").unwrap();
    if b.can("fchown") {
        f.set_owner(7, 8).unwrap();
        assert_eq!(f.metadata().unwrap().mode, 0o755, "fchown clears setuid too");
    }
    f.set_mode(0o4711).unwrap();
    drop(f);
    let md = fs.metadata(p("f")).unwrap();
    assert_eq!((md.mode, md.mtime), (0o4711, t));
    if b.privileged {
        assert_eq!((md.uid, md.gid), (7, 8));
    }
    assert_eq!(fs.get_xattr(p("f"), x("user.k")).unwrap().as_deref(), Some(&b"v"[..]));
}

fn directory_handles_walk_a_tree(b: &Backend) {
    let fs = &*b.fs;
    fs.mkdir_all(p("top/sub"), 0o755).unwrap();
    fs.write(p("top/file"), 0o644, b"data").unwrap();
    fs.set_xattr(p("top/file"), x("user.f"), b"1").unwrap();
    fs.set_xattr(p("top"), x("user.d"), b"2").unwrap();
    fs.symlink(p("sub"), p("top/link")).unwrap();
    fs.mknod(p("top/pipe"), NodeKind::Fifo, 0o600).unwrap();
    let root = fs.open_dir(p("")).unwrap();
    let mut top = root.open_dir(x("top")).unwrap();
    let mut names: Vec<_> = top
        .entries()
        .unwrap()
        .into_iter()
        .map(|e| (e.name.into_string().unwrap(), e.file_type))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("file".to_string(), FileType::Regular),
            ("link".into(), FileType::Symlink),
            ("pipe".into(), FileType::Fifo),
            ("sub".into(), FileType::Directory)
        ]
    );
    assert_eq!(top.metadata(x("file")).unwrap().size, 4);
    let (mut f, md) = top.open_file(x("file")).unwrap();
    assert_eq!((md.size, md.file_type), (4, FileType::Regular));
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "data");
    assert_eq!(f.xattrs().unwrap(), vec![(x("user.f").to_os_string(), b"1".to_vec())]);
    assert_eq!(
        top.xattrs(x("file")).unwrap(),
        vec![(x("user.f").to_os_string(), b"1".to_vec())]
    );
    assert_eq!(
        top.own_xattrs().unwrap(),
        vec![(x("user.d").to_os_string(), b"2".to_vec())]
    );
    assert_eq!(top.readlink(x("link")).unwrap(), p("sub"));
    assert_eq!(top.metadata(x("link")).unwrap().file_type, FileType::Symlink);
    assert_eq!(
        kind(top.open_dir(x("link"))),
        ErrorKind::NotADirectory,
        "a symlink is not descended"
    );
    assert_eq!(kind(top.open_file(x("pipe"))), ErrorKind::NotARegularFile);
    assert_eq!(kind(top.open_file(x("sub"))), ErrorKind::IsADirectory);
    assert_eq!(kind(top.metadata(x("none"))), ErrorKind::NotFound);
    // The handle follows the directory, not its old name.
    fs.rename(p("top"), p("moved")).unwrap();
    assert_eq!(top.metadata(x("file")).unwrap().size, 4);
    assert_eq!(kind(fs.open_dir(p("moved/link"))), ErrorKind::NotADirectory);
    assert_eq!(kind(fs.open_dir(p("moved/file"))), ErrorKind::NotADirectory);
}

fn subtrees_are_roots_of_their_own(b: &Backend) {
    let fs = &*b.fs;
    fs.mkdir_all(p("layers/one/diff/etc"), 0o755).unwrap();
    fs.write(p("secret"), 0o600, b"outside").unwrap();
    let sub = fs.subtree(p("layers/one/diff")).unwrap();
    sub.symlink(p("/"), p("slash")).unwrap();
    sub.symlink(p("../../../.."), p("up")).unwrap();
    sub.write(p("slash/etc/hosts"), 0o644, b"inside").unwrap();
    sub.write(p("up/secret"), 0o644, b"contained").unwrap();
    assert_eq!(fs.read(p("layers/one/diff/etc/hosts")).unwrap(), b"inside");
    assert_eq!(fs.read(p("layers/one/diff/secret")).unwrap(), b"contained");
    assert_eq!(
        fs.read(p("secret")).unwrap(),
        b"outside",
        "the subtree never reaches its parent tree"
    );
    assert_eq!(
        sub.read(p("../../secret")).unwrap(),
        b"contained",
        "`..` stops at the subtree root"
    );
    assert!(sub.metadata(p("")).unwrap().is_dir());
    let mut names: Vec<_> = sub
        .read_dir(p(""))
        .unwrap()
        .into_iter()
        .map(|e| e.name.into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["etc", "secret", "slash", "up"]);
    assert_eq!(kind(fs.subtree(p("secret"))), ErrorKind::NotADirectory);
    fs.symlink(p("layers"), p("via")).unwrap();
    assert_eq!(
        kind(fs.subtree(p("via"))),
        ErrorKind::NotADirectory,
        "a final symlink is not followed"
    );
    // The subtree outlives the removal of its directory.
    fs.remove_all(p("layers")).unwrap();
    assert!(!fs.exists(p("layers")).unwrap());
    let _ = sub.metadata(p(""));
}

/// What a sparse file's extraction does: a write after a seek past the
/// end, then `set_len` beyond the data. The gap reads as zeros.
fn seeking_past_the_end_leaves_a_hole(b: &Backend) {
    let fs = &*b.fs;
    let mut f = fs.create_file(p("sparse"), 0o644).unwrap();
    f.seek(SeekFrom::Start(1 << 20)).unwrap();
    f.write_all(b"data").unwrap();
    f.set_len(3 << 20).unwrap();
    assert_eq!(f.metadata().unwrap().size, 3 << 20);
    drop(f);
    let data = fs.read(p("sparse")).unwrap();
    assert_eq!(data.len(), 3 << 20);
    assert_eq!(&data[(1 << 20)..(1 << 20) + 4], b"data");
    assert!(data[..1 << 20].iter().all(|b| *b == 0), "the hole reads as zeros");
}

/// `MemFs` keeps every byte in memory, so it refuses to grow a file past
/// its bound (as a filesystem does past its largest file) instead of
/// allocating what a tar's sparse size says.
#[test]
fn mem_files_stop_at_their_bound() {
    let fs = MemFs::new();
    let mut f = fs.create_file(p("big"), 0o644).unwrap();
    let err = f.set_len(1 << 40).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FileTooLarge, "{err}");
    assert!(err.to_string().contains("file too large"), "{err}");
    f.seek(SeekFrom::Start(MemFs::MAX_FILE_SIZE)).unwrap();
    let err = f.write_all(b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(ErrorKind::FileTooLarge.errno()));
    assert_eq!(f.metadata().unwrap().size, 0, "nothing was allocated");
    let err = f.set_len(MemFs::MAX_FILE_SIZE + 1).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FileTooLarge, "one byte past the bound");
}
