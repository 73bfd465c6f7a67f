//! Tar to tree: applying a layer tar to an `overlay-fs` tree.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use overlay_fs::{ErrorKind, Fs, NodeKind, Timestamp, makedev};
use tar::EntryType;

use crate::error::{ArchiveError, Result};
use crate::filter::Patterns;
use crate::idmap::IdMaps;
use crate::pax::{self, Pax};
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

/// The longest entry name applied (`PATH_MAX` less the NUL).
const PATH_MAX: usize = 4095;

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
    let mut archive = tar::Archive::new(reader);
    let mut stats = ImportStats::default();
    let mut dirs: Vec<(PathBuf, Timestamp)> = Vec::new();
    let mut unpacked: HashSet<PathBuf> = HashSet::new();
    let plain = opts.whiteouts == ImportWhiteouts::Plain;
    let entries = archive.entries().map_err(ArchiveError::Read)?.raw(true);
    // Extension headers describe the entry that follows them.
    let (mut pax, mut long_name, mut long_link) = (Pax::default(), None, None);
    for entry in entries {
        let mut entry = entry.map_err(ArchiveError::Read)?;
        let kind = entry.header().entry_type();
        match kind {
            EntryType::XHeader => {
                let data = read_extension(&mut entry)?;
                pax::parse(&data, &mut pax).map_err(|reason| ArchiveError::Hostile {
                    name: "PAX header".into(),
                    reason,
                })?;
                continue;
            }
            EntryType::XGlobalHeader => {
                read_extension(&mut entry)?;
                continue;
            }
            EntryType::GNULongName => {
                long_name = Some(pax::long_name(&read_extension(&mut entry)?));
                continue;
            }
            EntryType::GNULongLink => {
                long_link = Some(pax::long_name(&read_extension(&mut entry)?));
                continue;
            }
            _ => {}
        }
        let ext = std::mem::take(&mut pax);
        let raw = ext
            .path
            .clone()
            .or(long_name.take())
            .unwrap_or_else(|| entry.path_bytes().into_owned());
        let link = ext
            .linkpath
            .clone()
            .or(long_link.take())
            .or_else(|| entry.link_name_bytes().map(|l| l.into_owned()));
        let name_str = String::from_utf8_lossy(&raw).into_owned();
        let hostile = |reason: &str| ArchiveError::Hostile {
            name: name_str.clone(),
            reason: reason.into(),
        };
        stats.entries += 1;
        // In raw mode the tar crate reads as many bytes as the header says;
        // a PAX size that says otherwise would desynchronise readers.
        if let Some(size) = ext.size
            && size != entry.size()
        {
            return Err(hostile(&format!(
                "PAX size {size} disagrees with the header's size {}",
                entry.size()
            )));
        }
        stats.bytes += entry.size();
        let Some(path) = sanitize(&raw).map_err(hostile)? else {
            continue;
        };
        if exclude.excludes(&path) {
            continue;
        }
        let meta = Meta::read(entry.header(), &ext, &opts.id_maps)?;
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
            EntryType::Directory => {
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
            EntryType::Regular | EntryType::Continuous => {
                let file = ctx.replace(&path, &parent, || fs.create_new(&path, meta.mode))?;
                let mut writer = FileWriter { file, errno: None };
                let copied = std::io::copy(&mut entry, &mut writer);
                match (copied, writer.errno) {
                    (_, Some(errno)) => return Err(ctx.err(overlay_fs::Error::from_errno("write", &path, errno))),
                    (Err(e), None) => return Err(ArchiveError::Read(e)),
                    // The entry's reader stops quietly where the stream ends.
                    (Ok(n), None) if n != entry.size() => {
                        return Err(ArchiveError::Read(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("the tar stream ends inside the data of {name_str:?}"),
                        )));
                    }
                    _ => {}
                }
                let file = writer.file;
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
            EntryType::Symlink => {
                let target = link.clone().unwrap_or_default();
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
            EntryType::Link => {
                let target = link.clone().unwrap_or_default();
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
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let h = entry.header();
                let number = |v: std::io::Result<Option<u32>>| v.map(|v| v.unwrap_or(0)).map_err(ArchiveError::Read);
                let node = match kind {
                    EntryType::Char => {
                        NodeKind::CharDevice(makedev(number(h.device_major())?, number(h.device_minor())?))
                    }
                    EntryType::Block => {
                        NodeKind::BlockDevice(makedev(number(h.device_major())?, number(h.device_minor())?))
                    }
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
                    kind: other.as_byte() as char,
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
        return Err("name longer than PATH_MAX (4095 bytes)");
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
    fn read(h: &tar::Header, pax: &Pax, ids: &IdMaps) -> Result<Self> {
        let old = h.as_old();
        let id = |pax: Option<u64>, v: std::io::Result<u64>, raw: &[u8]| -> Result<u32> {
            let v = match pax {
                Some(v) => v,
                None => numeric(v, raw).map_err(ArchiveError::Read)?,
            };
            u32::try_from(v).map_err(|_| ArchiveError::Unmapped {
                what: "tar id (over 32 bits)",
                id: v,
            })
        };
        let (uid, gid) = (id(pax.uid, h.uid(), &old.uid)?, id(pax.gid, h.gid(), &old.gid)?);
        let (uid, gid) = ids.to_host(uid, gid)?;
        let mode = numeric(h.mode().map(u64::from), &old.mode).map_err(ArchiveError::Read)? as u32 & 0o7777;
        let mtime = match pax.mtime {
            Some(t) => t,
            None => numeric(h.mtime(), &old.mtime).map_err(ArchiveError::Read)?,
        };
        let mtime = Timestamp::from_secs(mtime.min(i64::MAX as u64) as i64);
        let xattrs = pax
            .xattrs
            .iter()
            .filter(|(name, _)| !is_private_xattr(name))
            .cloned()
            .collect();
        Ok(Self {
            uid,
            gid,
            mode,
            mtime,
            xattrs,
        })
    }
}

/// Reads the data of an extension header, refusing absurd sizes.
fn read_extension<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Vec<u8>> {
    if entry.size() > pax::MAX_EXTENSION {
        return Err(ArchiveError::Hostile {
            name: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
            reason: format!(
                "extension header of {} bytes (limit {})",
                entry.size(),
                pax::MAX_EXTENSION
            ),
        });
    }
    let mut data = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut data).map_err(ArchiveError::Read)?;
    // The entry's reader stops quietly at the end of the stream: a cut
    // header is a read error, not a malformed record.
    if (data.len() as u64) < entry.size() {
        return Err(ArchiveError::Read(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the tar stream ends inside an extension header",
        )));
    }
    Ok(data)
}

/// A numeric header field; one left empty (all NUL or spaces, as some
/// writers leave uid, gid or mtime) reads as 0, like Go's and GNU's readers.
fn numeric(parsed: std::io::Result<u64>, raw: &[u8]) -> std::io::Result<u64> {
    match parsed {
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        other => other,
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

/// Writes into a tree's file, remembering the errno of a failed write so
/// it is told apart from a failed read of the stream in `io::copy`.
struct FileWriter {
    file: Box<dyn overlay_fs::File>,
    errno: Option<i32>,
}

impl std::io::Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file
            .write(buf)
            .inspect_err(|e| self.errno = Some(e.raw_os_error().unwrap_or(EIO)))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
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
