//! Tar to tree: applying a layer tar to an `overlay-fs` tree.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use overlay_fs::{ErrorKind, Fs, NodeKind, PATH_MAX, Timestamp, makedev};

use crate::error::excerpt;
use crate::error::{ArchiveError, Result};
use crate::filter::Patterns;
use crate::idmap::IdMaps;
use crate::reader::{Header, TarReader};
use crate::whiteout::{Marker, XattrNamespace, classify, is_private_xattr};

/// What whiteout entries do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportWhiteouts {
    /// Into a layer's `diff` dir: `.wh.NAME` becomes a 0:0 char device,
    /// `.wh..wh..opq` the opaque xattr in the given namespace.
    Overlay(XattrNamespace),
    /// Into a merged tree (the naive diff): `.wh.NAME` deletes `NAME`,
    /// `.wh..wh..opq` deletes what this tar did not put in the directory.
    Plain,
}

impl Default for ImportWhiteouts {
    fn default() -> Self {
        Self::Overlay(XattrNamespace::Trusted)
    }
}

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Whiteout handling.
    pub whiteouts: ImportWhiteouts,
    /// Container ids in the tar to host ids on disk.
    pub id_maps: IdMaps,
    /// Entries to skip (Docker's `ExcludePatterns`).
    pub exclude: Vec<String>,
}

/// What an import applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Tar entries read (whiteouts included).
    pub entries: u64,
    /// Sum of the entries' sizes: what Docker's `ApplyDiff` returns.
    pub bytes: u64,
}

/// Bytes of file data moved per read and write.
const CHUNK: usize = 1 << 20;

/// Is `path` inside AUFS bookkeeping (`.wh..wh.plnk/...`)? Docker skips
/// it. (Such a name itself is classified as a [`Marker::Meta`].)
fn is_aufs_meta(path: &Path) -> bool {
    path.parent().is_some_and(|p| {
        p.components().any(|c| {
            c.as_os_str()
                .as_bytes()
                .starts_with(crate::whiteout::WHITEOUT_META_PREFIX.as_bytes())
        })
    })
}

/// Applies the tar read from `reader` to the tree of `fs`.
///
/// Entries go where their names say, relative to the root of `fs`; since
/// `fs` resolves every path inside its root, symlinks in the tree (or made
/// by earlier entries) cannot lead outside it. An existing entry is
/// replaced, except that a directory over a directory keeps its contents.
/// Directory times are set last. Overlayfs's private xattrs in the tar are
/// ignored.
///
/// Stops at the first bad entry with an error naming it; entries before it
/// stay applied (the driver applies into a staging directory, so a failed
/// import leaves no layer).
///
/// # Errors
///
/// The stream is not a valid tar ([`ArchiveError::Read`]); an entry is
/// hostile ([`ArchiveError::Hostile`]: `..`, an absolute name, a malformed
/// whiteout, sizes that disagree...) or of an unsupported type; applying an
/// entry fails ([`ArchiveError::Apply`]); an id has no mapping.
pub fn import(fs: &dyn Fs, reader: impl Read, opts: &ImportOptions) -> Result<ImportStats> {
    let exclude = Patterns::new(&opts.exclude)?;
    let mut tar = TarReader::new(reader);
    let mut stats = ImportStats::default();
    let mut dirs: Vec<(PathBuf, Timestamp)> = Vec::new();
    let mut unpacked: HashSet<PathBuf> = HashSet::new();
    let mut buf = Vec::new();
    let plain = opts.whiteouts == ImportWhiteouts::Plain;
    while let Some(h) = tar.next()? {
        let name_str = excerpt(&h.name);
        let hostile = |reason: &str| ArchiveError::Hostile {
            name: name_str.clone(),
            reason: reason.into(),
        };
        stats.entries += 1;
        stats.bytes += h.size;
        let Some(path) = sanitize(&h.name).map_err(hostile)? else {
            continue;
        };
        if exclude.excludes(&path) || is_aufs_meta(&path) {
            continue;
        }
        let kind = h.kind;
        let meta = Meta::read(&h, &opts.id_maps).map_err(|e| match e {
            ArchiveError::Unmapped { what, id } => hostile(&format!("{what} {id} has no mapping")),
            other => other,
        })?;
        let ctx = Ctx { fs, name: &name_str };
        let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let base = path.file_name().unwrap_or(OsStr::new(""));
        match classify(base).map_err(hostile)? {
            Some(Marker::Meta) => continue,
            Some(Marker::Opaque) => {
                ctx.ensure_dir(&parent)?;
                match opts.whiteouts {
                    ImportWhiteouts::Overlay(ns) => {
                        ctx.apply(fs.set_xattr(&parent, OsStr::new(ns.opaque_xattr()), b"y"))?;
                    }
                    ImportWhiteouts::Plain => {
                        for e in ctx.apply(fs.read_dir(&parent))? {
                            let child = parent.join(&e.name);
                            if !unpacked.contains(&child) {
                                ctx.apply(fs.remove_all(&child))?;
                            }
                        }
                    }
                }
                continue;
            }
            Some(Marker::Whiteout(target)) => {
                let target = parent.join(target);
                ctx.apply(fs.remove_all(&target))?;
                if let ImportWhiteouts::Overlay(_) = opts.whiteouts {
                    ctx.ensure_dir(&parent)?;
                    ctx.apply(fs.mknod(&target, NodeKind::WHITEOUT, 0))?;
                    ctx.apply(fs.set_owner(&target, meta.uid, meta.gid))?;
                    ctx.apply(fs.set_times(&target, Some(meta.mtime), Some(meta.mtime)))?;
                }
                continue;
            }
            None => {}
        }
        match kind {
            b'5' => {
                match fs.mkdir(&path, meta.mode) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        ctx.ensure_dir(&parent)?;
                        ctx.apply(fs.mkdir(&path, meta.mode))?;
                    }
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                        // A directory over a directory keeps its contents.
                        if !ctx.apply(fs.metadata(&path))?.is_dir() {
                            ctx.apply(fs.remove_all(&path))?;
                            ctx.apply(fs.mkdir(&path, meta.mode))?;
                        }
                    }
                    Err(e) => return Err(ctx.err(e)),
                }
                ctx.apply(fs.set_owner(&path, meta.uid, meta.gid))?;
                ctx.apply(fs.set_mode(&path, meta.mode))?;
                for (k, v) in &meta.xattrs {
                    ctx.apply(fs.set_xattr(&path, OsStr::from_bytes(k), v))?;
                }
                dirs.push((path.clone(), meta.mtime));
            }
            b'0' => {
                let mut file = ctx.replace(&path, &parent, || fs.create_new(&path, meta.mode))?;
                // One read and one write per chunk: most files take one.
                // The buffer only grows (reads stop at the entry's end), so
                // a small file does not cost a zero-fill of the next chunk.
                let want = CHUNK.min(usize::try_from(h.size).unwrap_or(CHUNK)).max(1);
                if buf.len() < want {
                    buf.resize(want, 0);
                }
                while tar.left() > 0 {
                    let n = tar.data(&mut buf)?;
                    let wrote = std::io::Write::write_all(&mut file, &buf[..n]);
                    wrote.map_err(|e| {
                        ctx.err(overlay_fs::Error::from_errno(
                            "write",
                            &path,
                            e.raw_os_error().unwrap_or(EIO),
                        ))
                    })?;
                }
                // Always chown: even for 0:0, a setgid parent gave the file
                // its own group. chown clears setuid/setgid: put them back.
                ctx.apply(file.set_owner(meta.uid, meta.gid))?;
                if meta.mode & 0o6000 != 0 {
                    ctx.apply(file.set_mode(meta.mode))?;
                }
                for (k, v) in &meta.xattrs {
                    ctx.apply(file.set_xattr(OsStr::from_bytes(k), v))?;
                }
                ctx.apply(file.set_times(Some(meta.mtime), Some(meta.mtime)))?;
            }
            b'2' => {
                let target = h.link.clone();
                if target.is_empty() {
                    return Err(hostile("symlink with an empty target"));
                }
                let target = PathBuf::from(OsStr::from_bytes(&target));
                ctx.replace(&path, &parent, || fs.symlink(&target, &path))?;
                ctx.apply(fs.set_owner(&path, meta.uid, meta.gid))?;
                for (k, v) in &meta.xattrs {
                    ctx.apply(fs.set_xattr(&path, OsStr::from_bytes(k), v))?;
                }
                ctx.apply(fs.set_times(&path, Some(meta.mtime), Some(meta.mtime)))?;
            }
            b'1' => {
                let target = h.link.clone();
                let Some(target) = sanitize(&target).map_err(|r| hostile(&format!("hard link target: {r}")))? else {
                    return Err(hostile("hard link to the root"));
                };
                match ctx.replace(&path, &parent, || fs.hardlink(&target, &path)) {
                    Err(ArchiveError::Apply { source, .. }) if source.kind() == ErrorKind::NotFound => {
                        return Err(hostile(&format!("hard link target {:?} does not exist", target)));
                    }
                    Err(ArchiveError::Apply { source, .. }) if source.kind() == ErrorKind::PermissionDenied => {
                        return Err(hostile(&format!("hard link target {:?} is a directory", target)));
                    }
                    other => other?,
                }
            }
            b'3' | b'4' | b'6' => {
                let node = match kind {
                    b'3' => NodeKind::CharDevice(makedev(h.devmajor, h.devminor)),
                    b'4' => NodeKind::BlockDevice(makedev(h.devmajor, h.devminor)),
                    _ => NodeKind::Fifo,
                };
                ctx.replace(&path, &parent, || fs.mknod(&path, node, meta.mode & 0o777))?;
                ctx.apply(fs.set_owner(&path, meta.uid, meta.gid))?;
                ctx.apply(fs.set_mode(&path, meta.mode))?;
                for (k, v) in &meta.xattrs {
                    ctx.apply(fs.set_xattr(&path, OsStr::from_bytes(k), v))?;
                }
                ctx.apply(fs.set_times(&path, Some(meta.mtime), Some(meta.mtime)))?;
            }
            other => {
                return Err(ArchiveError::Unsupported {
                    name: name_str,
                    kind: other as char,
                });
            }
        }
        if plain {
            unpacked.insert(path);
        }
    }
    // Directory times last: creating entries in them changed their mtime.
    for (dir, mtime) in dirs.iter().rev() {
        fs.set_times(dir, Some(*mtime), Some(*mtime))
            .map_err(|source| ArchiveError::Apply {
                name: dir.display().to_string(),
                source,
            })?;
    }
    Ok(stats)
}

/// Turns an entry name into a relative path, or refuses it. `None` is the
/// root itself (`./`), which is skipped.
fn sanitize(raw: &[u8]) -> std::result::Result<Option<PathBuf>, &'static str> {
    if raw.contains(&0) {
        return Err("name contains a NUL byte");
    }
    if raw.len() > PATH_MAX {
        return Err(crate::reader::NAME_TOO_LONG);
    }
    if raw.first() == Some(&b'/') {
        return Err("absolute name");
    }
    let mut out = PathBuf::new();
    for part in raw.split(|c| *c == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("name has a '..' component"),
            p => out.push(OsStr::from_bytes(p)),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// An entry's ownership, mode, time and xattrs, ids already mapped.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: Timestamp,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    fn read(h: &Header, ids: &IdMaps) -> Result<Self> {
        let id = |v: u64, what: &'static str| -> Result<u32> {
            u32::try_from(v).map_err(|_| ArchiveError::Unmapped { what, id: v })
        };
        let (uid, gid) = ids.to_host(id(h.uid, "tar uid over 32 bits:")?, id(h.gid, "tar gid over 32 bits:")?)?;
        let mtime = Timestamp::from_secs(h.mtime.min(i64::MAX as u64) as i64);
        let xattrs = h
            .xattrs
            .iter()
            .filter(|(name, _)| !is_private_xattr(name))
            .cloned()
            .collect();
        Ok(Self {
            uid,
            gid,
            mode: h.mode,
            mtime,
            xattrs,
        })
    }
}

/// The tree and the entry being applied, for error reporting.
struct Ctx<'a> {
    fs: &'a dyn Fs,
    name: &'a str,
}

impl Ctx<'_> {
    fn err(&self, source: overlay_fs::Error) -> ArchiveError {
        ArchiveError::Apply {
            name: self.name.to_string(),
            source,
        }
    }

    fn apply<T>(&self, r: overlay_fs::Result<T>) -> Result<T> {
        r.map_err(|e| self.err(e))
    }

    /// Makes sure `dir` exists as a directory, creating missing parents
    /// with 0755 (as Docker does for entries whose parents the tar omits).
    fn ensure_dir(&self, dir: &Path) -> Result<()> {
        self.apply(self.fs.mkdir_all(dir, 0o755))
    }

    /// Runs `create`; if the name is taken, removes what is there and runs
    /// it again; if the parent is missing, creates it first.
    fn replace<T>(&self, path: &Path, parent: &Path, create: impl Fn() -> overlay_fs::Result<T>) -> Result<T> {
        match create() {
            Ok(v) => Ok(v),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                self.apply(self.fs.remove_all(path))?;
                self.apply(create())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.ensure_dir(parent)?;
                self.apply(create())
            }
            Err(e) => Err(self.err(e)),
        }
    }
}

/// Reported for a failed write that carries no errno of its own.
const EIO: i32 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized() {
        let ok = |s: &str| sanitize(s.as_bytes()).unwrap();
        assert_eq!(ok("a/b/"), Some(PathBuf::from("a/b")));
        assert_eq!(ok("./a//./b"), Some(PathBuf::from("a/b")));
        assert_eq!(ok("./"), None);
        assert_eq!(ok("a..b/..c"), Some(PathBuf::from("a..b/..c")));
        for bad in ["/etc/passwd", "../x", "a/../../x", "a/.."] {
            assert!(sanitize(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(sanitize(b"a\0b").is_err());
        assert!(sanitize(&vec![b'a'; 4096]).is_err());
    }
}
