//! What the kernel and the home's filesystem can do, found out once per
//! home and cached.
//!
//! The probes follow Docker's `overlayutils` and `graphdriver` checks; each
//! one that needs scratch directories or a mount makes them inside the home
//! and removes them again, on error too (guards with `Drop`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, OnceLock};

use parking_lot::Mutex;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{self as rmount, FsOpenFlags};

use crate::error::{MountError, Result};
use crate::idmap::{Attach, IdmapLowers, UserNs};
use crate::mount::{Method, Settings, Stack};
use crate::options::Upper;

/// Whether the overlay driver may compute diffs from the upper dir alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NativeDiff {
    /// The upper dir is an exact record of the changes.
    Safe,
    /// It is not; use the naive diff. The reason is Docker's wording.
    Unsafe(String),
}

/// Kernel and filesystem features relevant to an overlay2 home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    /// Name of the filesystem holding the home, as Docker names it
    /// (`extfs`, `xfs`, `tmpfs`, ...), or `<unknown>`.
    pub backing_fs: &'static str,
    /// Its `statfs` magic number.
    pub backing_magic: u64,
    /// `readdir` reports file types (overlayfs needs it for whiteouts).
    pub d_type: bool,
    /// `/sys/module/overlay/parameters/index` exists: mount with `index=off`.
    pub index_param: bool,
    /// Whether native diff is safe on this kernel.
    pub native_diff: NativeDiff,
    /// Overlayfs mounts accept `userxattr` here.
    pub userxattr: bool,
    /// This process is outside the initial user namespace (rootless):
    /// `trusted.*` is out of its reach, so every mount of the home takes
    /// `userxattr` and overlayfs's markers (opaque dirs, redirects) are
    /// `user.overlay.*`. Decided here, once, for the driver to follow.
    pub rootless: bool,
    /// The new mount API with `lowerdir+` is available.
    pub new_mount_api: bool,
    /// Overlayfs mounts over id-mapped lowers on the home's filesystem,
    /// and how they reach it; else why not (the kernel's version, the
    /// filesystem, privilege), in words for `status`.
    pub idmap: std::result::Result<Attach, String>,
}

static CACHE: LazyLock<Mutex<HashMap<PathBuf, Arc<Features>>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Probes (once per home, then from the cache) what `home` supports.
///
/// `home` must exist and be writable: the mount probes work in scratch
/// directories inside it, so that they test the home's own filesystem.
///
/// # Errors
///
/// Overlayfs is missing ([`MountError::NotSupported`]), or a probe fails
/// for a reason other than the feature being absent.
pub fn probe(home: &Path) -> Result<Arc<Features>> {
    let key = std::fs::canonicalize(home).map_err(|e| MountError::sys("realpath", home, errno_of(&e)))?;
    if let Some(f) = CACHE.lock().get(&key) {
        return Ok(f.clone());
    }
    require_overlay()?;
    let magic = fs_magic(&key)?;
    let rootless = !crate::userns::in_initial();
    let features = match load_cached(&key, magic) {
        Some(f) => f,
        None => {
            let userxattr = supports_userxattr(&key);
            if rootless && !userxattr {
                return Err(MountError::NotSupported(format!(
                    "running in a user namespace, where overlayfs needs the `userxattr` mount option \
                     (Linux 5.11), and an overlay mount with it failed on {}",
                    key.display()
                )));
            }
            let f = Features {
                backing_fs: fs_name(magic),
                backing_magic: magic,
                d_type: supports_d_type(&key)?,
                index_param: Path::new("/sys/module/overlay/parameters/index").exists(),
                native_diff: native_diff(&key, rootless)?,
                userxattr,
                rootless,
                new_mount_api: new_mount_api(),
                idmap: idmapped_lowers(&key, rootless),
            };
            store_cached(&key, &f);
            f
        }
    };
    let features = Arc::new(features);
    CACHE.lock().insert(key, features.clone());
    Ok(features)
}

/// Where probe results outlive the process: a tmpfs, so a reboot (a new
/// kernel, new module parameters) forgets them. Short-lived commands such
/// as the `overlay2` CLI would otherwise pay two test mounts each time.
const RUN_DIR: &str = "/run/overlay2-rs";

fn cache_file(home: &Path) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    home.hash(&mut h);
    PathBuf::from(RUN_DIR).join(format!("probe-{:016x}", h.finish()))
}

/// The kernel and module state the results depend on, and whether this
/// process is in the initial user namespace (a rootless process reading
/// root's results would mount with the wrong xattrs).
fn fingerprint(home: &Path, magic: u64) -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let param =
        |name: &str| std::fs::read_to_string(format!("/sys/module/overlay/parameters/{name}")).unwrap_or_default();
    let userns = if crate::userns::in_initial() { "init" } else { "userns" };
    format!(
        "{} {magic:x} {} {} {} {} {userns}",
        home.display(),
        release.trim(),
        param("metacopy").trim(),
        param("redirect_dir").trim(),
        param("index").trim()
    )
}

fn store_cached(home: &Path, f: &Features) {
    let (native, reason) = match &f.native_diff {
        NativeDiff::Safe => (true, String::new()),
        NativeDiff::Unsafe(r) => (false, r.replace('\n', " ")),
    };
    let idmap = match &f.idmap {
        Ok(Attach::Descriptors) => "descriptors".to_string(),
        Ok(Attach::Scratch) => "scratch".to_string(),
        Err(why) => format!("no {}", why.replace('\n', " ")),
    };
    let text = format!(
        "{}\n{} {} {} {} {} {}\n{reason}\n{idmap}\n",
        fingerprint(home, f.backing_magic),
        f.d_type,
        f.index_param,
        native,
        f.userxattr,
        f.new_mount_api,
        f.rootless
    );
    // Best effort: without /run the probes simply run again next time.
    let _ = std::fs::create_dir_all(RUN_DIR);
    prune_cache();
    let file = cache_file(home);
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, &file);
    }
}

/// Removes the cached results of homes that no longer exist (test homes,
/// a daemon's old home), so the cache does not grow with every home ever
/// probed. Runs only when a new result is stored: once per home per boot.
fn prune_cache() {
    let Ok(entries) = std::fs::read_dir(RUN_DIR) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if !e.file_name().to_string_lossy().starts_with("probe-") || path.extension().is_some() {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        // The fingerprint is the home, then six fields without spaces.
        let first = text.lines().next().unwrap_or("");
        let home = first.rsplitn(7, ' ').nth(6).unwrap_or("");
        // Only a home known to be gone: not one whose name did not survive
        // `display()`, nor one we may not look at.
        if !home.is_empty() && !home.contains('\u{FFFD}') && matches!(Path::new(home).try_exists(), Ok(false)) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

fn load_cached(home: &Path, magic: u64) -> Option<Features> {
    let text = std::fs::read_to_string(cache_file(home)).ok()?;
    let mut lines = text.lines();
    if lines.next()? != fingerprint(home, magic) {
        return None;
    }
    let flags: Vec<bool> = lines.next()?.split(' ').map(|w| w == "true").collect();
    let reason = lines.next()?.to_string();
    // A result stored before this line existed: probe again.
    let idmap = match lines.next()? {
        "descriptors" => Ok(Attach::Descriptors),
        "scratch" => Ok(Attach::Scratch),
        other => Err(other.strip_prefix("no ")?.to_string()),
    };
    let [d_type, index_param, native, userxattr, new_api, rootless] = flags[..] else {
        return None;
    };
    Some(Features {
        backing_fs: fs_name(magic),
        backing_magic: magic,
        d_type,
        index_param,
        native_diff: if native {
            NativeDiff::Safe
        } else {
            NativeDiff::Unsafe(reason)
        },
        userxattr,
        rootless,
        new_mount_api: new_api,
        idmap,
    })
}

fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw_os_error(e.raw_os_error().unwrap_or(0))
}

/// Fails unless `/proc/filesystems` lists overlay, after trying
/// `modprobe overlay` once as Docker does.
///
/// # Errors
///
/// [`MountError::NotSupported`] naming the check.
pub fn require_overlay() -> Result<()> {
    let listed = || {
        std::fs::read_to_string("/proc/filesystems")
            .map(|s| s.lines().any(|l| l.split_whitespace().last() == Some("overlay")))
            .unwrap_or(false)
    };
    if listed() {
        return Ok(());
    }
    let _ = std::process::Command::new("modprobe")
        .arg("overlay")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if listed() {
        return Ok(());
    }
    Err(MountError::NotSupported(
        "overlay is not listed in /proc/filesystems, even after `modprobe overlay`".into(),
    ))
}

/// Is the new mount API usable for overlay with `lowerdir+` (and upper
/// and work dirs by descriptor)?
/// Checked once per process: it is a property of the kernel.
pub fn new_mount_api() -> bool {
    static ONCE: OnceLock<bool> = OnceLock::new();
    *ONCE.get_or_init(|| {
        let Ok(fs) = rmount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) else {
            return false;
        };
        let Ok(root) = rustix::fs::open("/", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) else {
            return false;
        };
        rmount::fsconfig_set_string(&fs, "lowerdir+", "/").is_ok()
            && rmount::fsconfig_set_fd(&fs, "upperdir", &root).is_ok()
    })
}

fn fs_magic(path: &Path) -> Result<u64> {
    let st = rustix::fs::statfs(path).map_err(|e| MountError::sys("statfs", path, e))?;
    Ok(st.f_type as u64)
}

/// Docker's names for filesystem magics (`graphdriver.FsNames`).
pub fn fs_name(magic: u64) -> &'static str {
    match magic {
        0xEF53 => "extfs",
        0x58465342 => "xfs",
        0x01021994 => "tmpfs",
        0x9123683E => "btrfs",
        0x794C7630 => "overlayfs",
        0x2FC12FC1 => "zfs",
        0x6969 => "nfs",
        0x858458F6 => "ramfs",
        0x73717368 => "squashfs",
        0x61756673 => "aufs",
        0xF15F => "ecryptfs",
        0xF2F52010 => "f2fs",
        0x47504653 => "gpfs",
        0x72B6 => "jffs2",
        0x52654973 => "reiserfs",
        0xFE534D42 => "smb2",
        _ => "<unknown>",
    }
}

fn scratch(home: &Path, prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(home)
        .map_err(|e| MountError::sys("mkdtemp", home, errno_of(&e)))
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> MountError + 'a {
    move |e| MountError::sys(op, path, errno_of(&e))
}

/// Does `readdir` on the home's filesystem report file types? (Docker's
/// `fsutils.SupportsDType`.)
fn supports_d_type(home: &Path) -> Result<bool> {
    let dir = scratch(home, ".d_type-check-")?;
    let file = dir.path().join("f");
    std::fs::write(&file, b"").map_err(io("create", &file))?;
    let fd = rustix::fs::open(
        dir.path(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| MountError::sys("open", dir.path(), e))?;
    let entries = rustix::fs::Dir::new(fd).map_err(|e| MountError::sys("readdir", dir.path(), e))?;
    for e in entries {
        let e = e.map_err(|e| MountError::sys("readdir", dir.path(), e))?;
        if e.file_name().to_bytes() == b"f" {
            return Ok(e.file_type() != rustix::fs::FileType::Unknown);
        }
    }
    Ok(false)
}

/// Docker's `doesSupportNativeDiff`, plus its metacopy check. Rootless,
/// the same test in `user.overlay.*` on a `userxattr` mount (Docker
/// allows native diff in a user namespace from Linux 5.11, where
/// `userxattr` exists; this probe asks the kernel rather than its version).
fn native_diff(home: &Path, rootless: bool) -> Result<NativeDiff> {
    let ns = if rootless { "user" } else { "trusted" };
    let opaque_xattr = format!("{ns}.overlay.opaque");
    if std::fs::read_to_string("/sys/module/overlay/parameters/metacopy").is_ok_and(|v| v.trim() == "Y") {
        return Ok(NativeDiff::Unsafe("overlay metacopy is enabled".into()));
    }
    let td = scratch(home, ".opaque-bug-check-")?;
    let p = |s: &str| td.path().join(s);
    for d in ["l1/d", "l2/d", "l3", "work", "merged"] {
        std::fs::create_dir_all(p(d)).map_err(io("mkdir", &p(d)))?;
    }
    std::fs::write(p("l1/d/f"), b"").map_err(io("create", &p("l1/d/f")))?;
    rustix::fs::setxattr(p("l2/d"), opaque_xattr.as_str(), b"y", rustix::fs::XattrFlags::empty())
        .map_err(|e| MountError::sys("setxattr overlay.opaque", p("l2/d"), e))?;
    let stack = Stack {
        base: td.path().to_path_buf(),
        lowers: vec!["l2".into(), "l1".into()],
        upper: Some(Upper {
            upperdir: "l3".into(),
            workdir: "work".into(),
        }),
        target: "merged".into(),
    };
    let settings = Settings {
        userxattr: rootless,
        ..Settings::default()
    };
    let mount = stack.mount(&settings, Method::Legacy)?;
    // Writing a file in the opaque "d" copies "d" up from l2 to l3.
    std::fs::write(p("merged/d/f"), b"").map_err(io("write", &p("merged/d/f")))?;
    // The copy must not be opaque: that would hide l1's "d" from diffs.
    let mut buf = [0u8; 8];
    let opaque = rustix::fs::lgetxattr(p("l3/d"), opaque_xattr.as_str(), &mut buf[..]);
    if opaque.is_ok_and(|n| &buf[..n] == b"y") {
        return Ok(NativeDiff::Unsafe(
            "opaque flag erroneously copied up, consider update to kernel 4.8 or later to fix".into(),
        ));
    }
    match std::fs::rename(p("merged/d"), p("merged/d2")) {
        // Without redirect_dir the kernel refuses to rename a lower dir.
        Err(e) if e.raw_os_error() == Some(Errno::XDEV.raw_os_error()) => return Ok(NativeDiff::Safe),
        Err(e) => return Err(MountError::sys("rename in merged dir", p("merged/d"), errno_of(&e))),
        Ok(()) => {}
    }
    let redirect = rustix::fs::getxattr(p("l3/d2"), format!("{ns}.overlay.redirect"), &mut [0u8; 4096][..]);
    drop(mount);
    if matches!(redirect, Ok(n) if n > 0) {
        return Ok(NativeDiff::Unsafe(
            "kernel has CONFIG_OVERLAY_FS_REDIRECT_DIR enabled".into(),
        ));
    }
    Ok(NativeDiff::Safe)
}

/// Does an overlay mount with `userxattr` work on the home's filesystem?
fn supports_userxattr(home: &Path) -> bool {
    let Ok((_td, stack)) = one_lower_stack(home, ".userxattr-check-") else {
        return false;
    };
    let settings = Settings {
        userxattr: true,
        ..Settings::default()
    };
    stack.mount(&settings, Method::Legacy).is_ok()
}

/// A scratch directory in `home` holding empty `lower`, `upper`, `work`
/// and `merged`, and the stack of them: what a probe mounts to see
/// whether an option works.
fn one_lower_stack(home: &Path, prefix: &str) -> std::result::Result<(tempfile::TempDir, Stack), String> {
    let td = scratch(home, prefix).map_err(|e| e.to_string())?;
    for d in ["lower", "upper", "work", "merged"] {
        let p = td.path().join(d);
        std::fs::create_dir(&p).map_err(|e| format!("mkdir {}: {e}", p.display()))?;
    }
    let stack = Stack {
        base: td.path().to_path_buf(),
        lowers: vec!["lower".into()],
        upper: Some(Upper {
            upperdir: "upper".into(),
            workdir: "work".into(),
        }),
        target: "merged".into(),
    };
    Ok((td, stack))
}

/// The host uid and gid the probe's map gives container root: any id
/// other than 0 shows that the mapping took effect.
const PROBE_HOST_ID: u32 = 4_000_000_000;

/// Can overlayfs on the home's filesystem mount over id-mapped lowers,
/// and how do they reach it? (containers/storage's
/// `supportsIdmappedLowerLayers`: a real mount over a lower mapped
/// `0 -> PROBE_HOST_ID`, and a file of it must show the host id.) Tried
/// by descriptor first (nothing attached), then through scratch dirs.
fn idmapped_lowers(home: &Path, rootless: bool) -> std::result::Result<Attach, String> {
    if rootless {
        // `mount_setattr(MOUNT_ATTR_IDMAP)` needs `CAP_SYS_ADMIN` in the
        // namespace that owns the home's filesystem: the initial one.
        return Err("running in a user namespace: id-mapping a mount needs CAP_SYS_ADMIN in the initial one".into());
    }
    let (td, stack) = one_lower_stack(home, ".idmap-check-")?;
    let p = |s: &str| td.path().join(s);
    std::fs::write(p("lower/f"), b"").map_err(|e| format!("create {}: {e}", p("lower/f").display()))?;
    let map = format!("0 {PROBE_HOST_ID} 1\n");
    let userns = UserNs::new(&map, &map).map_err(|e| format!("cannot make a user namespace for the maps: {e}"))?;
    let try_attach = |attach: Attach, method: Method| -> std::result::Result<Attach, String> {
        let idmap = IdmapLowers {
            userns: &userns,
            mapped: &[true],
            attach,
        };
        let mount = stack
            .mount_idmapped(&Settings::default(), method, &idmap)
            .map_err(|e| e.to_string())?;
        let md = std::fs::symlink_metadata(p("merged/f")).map_err(|e| e.to_string())?;
        drop(mount);
        use std::os::unix::fs::MetadataExt;
        if md.uid() == PROBE_HOST_ID && md.gid() == PROBE_HOST_ID {
            Ok(attach)
        } else {
            Err(format!(
                "a file of an id-mapped lower shows {}:{} through overlayfs, not {PROBE_HOST_ID}",
                md.uid(),
                md.gid()
            ))
        }
    };
    if new_mount_api()
        && let Ok(a) = try_attach(Attach::Descriptors, Method::NewApi)
    {
        return Ok(a);
    }
    try_attach(Attach::Scratch, Method::Legacy).map_err(|e| {
        format!("overlayfs cannot mount over id-mapped lowers here (needs Linux 5.19, and a filesystem that can id-map: tmpfs from 6.3): {e}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_results_survive_the_process_and_a_changed_kernel_forgets_them() {
        // A home that exists: the cache forgets homes that do not.
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_path_buf();
        let f = Features {
            backing_fs: fs_name(0xEF53),
            backing_magic: 0xEF53,
            d_type: true,
            index_param: true,
            native_diff: NativeDiff::Unsafe("kernel has CONFIG_OVERLAY_FS_REDIRECT_DIR enabled".into()),
            userxattr: false,
            rootless: false,
            new_mount_api: true,
            idmap: Err("overlayfs cannot mount over id-mapped lowers here".into()),
        };
        store_cached(&home, &f);
        if !cache_file(&home).exists() {
            eprintln!("skipped: {RUN_DIR} is not writable here");
            return;
        }
        assert_eq!(load_cached(&home, 0xEF53).as_ref(), Some(&f));
        for idmap in [Ok(Attach::Descriptors), Ok(Attach::Scratch)] {
            let g = Features { idmap, ..f.clone() };
            store_cached(&home, &g);
            assert_eq!(load_cached(&home, 0xEF53).as_ref(), Some(&g));
        }
        store_cached(&home, &f);
        // Another filesystem under the same path: probe again.
        assert_eq!(load_cached(&home, 0x58465342), None);
        // The home goes away: the next stored result prunes its entry.
        drop(dir);
        let other = tempfile::tempdir().unwrap();
        store_cached(other.path(), &f);
        assert!(!cache_file(&home).exists(), "the entry of a removed home is pruned");
        assert!(cache_file(other.path()).exists());
        let _ = std::fs::remove_file(cache_file(other.path()));
    }
}
