//! Tree to tar: a layer's files as an uncompressed, deterministic tar.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use overlay_fs::{FileType, Fs, Metadata};
use tar::{EntryType, Header};

use crate::error::{ArchiveError, Result};
use crate::filter::Patterns;
use crate::idmap::IdMaps;
use crate::whiteout::{OPAQUE_MARKER, XattrNamespace, is_private_xattr, whiteout_name};

/// How overlayfs markers in the tree are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportWhiteouts {
    /// Convert: a 0:0 char device becomes `.wh.NAME`, an opaque directory
    /// (either xattr namespace) gets `DIR/.wh..wh..opq`. For `diff` dirs.
    #[default]
    Overlay,
    /// Write the tree as it is (devices stay devices). For merged trees.
    Keep,
}

/// How to export.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Whiteout conversion.
    pub whiteouts: ExportWhiteouts,
    /// Host ids to container ids for the headers.
    pub id_maps: IdMaps,
    /// Exclude patterns (Docker's `ExcludePatterns`).
    pub exclude: Vec<String>,
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Tar entries written (whiteouts and opaque markers included).
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Exports the whole tree of `fs` (its root excluded) as a tar into `out`,
/// in a deterministic order: each directory's entries sorted by name, a
/// directory before its contents.
///
/// # Errors
///
/// The tree cannot be read, or `out` cannot be written.
pub fn export<W: Write>(fs: &dyn Fs, opts: &ExportOptions, out: W) -> Result<(W, ExportStats)> {
    let mut e = Exporter::new(fs, opts, out)?;
    for name in sorted_names(fs, Path::new(""))? {
        e.append_tree(Path::new(&name))?;
    }
    e.finish()
}

fn sorted_names(fs: &dyn Fs, dir: &Path) -> Result<Vec<std::ffi::OsString>> {
    let mut names: Vec<_> = fs
        .read_dir(dir)
        .map_err(|source| ArchiveError::Tree {
            path: dir.to_path_buf(),
            source,
        })?
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Writes entries of a tree into a tar stream one path at a time, for
/// callers that choose what goes in (the naive diff exports only changes).
pub struct Exporter<'a, W: Write> {
    fs: &'a dyn Fs,
    opts: &'a ExportOptions,
    exclude: Patterns,
    tar: tar::Builder<W>,
    /// First path written for each multiply-linked inode.
    links: HashMap<(u64, u64), PathBuf>,
    stats: ExportStats,
}

impl<'a, W: Write> Exporter<'a, W> {
    /// Starts a tar stream on `out`.
    ///
    /// # Errors
    ///
    /// A malformed exclude pattern.
    pub fn new(fs: &'a dyn Fs, opts: &'a ExportOptions, out: W) -> Result<Self> {
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Complete);
        Ok(Self {
            fs,
            opts,
            exclude: Patterns::new(&opts.exclude)?,
            tar,
            links: HashMap::new(),
            stats: ExportStats::default(),
        })
    }

    /// Writes `path` and, for a directory, everything below it.
    ///
    /// # Errors
    ///
    /// The tree cannot be read, or the stream cannot be written.
    pub fn append_tree(&mut self, path: &Path) -> Result<()> {
        let excluded = self.exclude.excludes(path);
        let md = self.metadata(path)?;
        if !excluded {
            self.append_with(path, &md)?;
        }
        if md.is_dir() && (!excluded || self.exclude.has_exceptions()) {
            for name in sorted_names(self.fs, path)? {
                self.append_tree(&path.join(name))?;
            }
        }
        Ok(())
    }

    /// Writes the single entry at `path` (a directory without its contents).
    ///
    /// # Errors
    ///
    /// The tree cannot be read, or the stream cannot be written.
    pub fn append(&mut self, path: &Path) -> Result<()> {
        let md = self.metadata(path)?;
        self.append_with(path, &md)
    }

    /// Writes a `.wh.NAME` entry recording that `path` was deleted.
    ///
    /// # Errors
    ///
    /// `path` names the root, or the stream cannot be written.
    pub fn append_whiteout(&mut self, path: &Path) -> Result<()> {
        let name = path.file_name().ok_or_else(|| ArchiveError::Write {
            path: path.to_path_buf(),
            source: std::io::Error::other("the root cannot be whited out"),
        })?;
        let wh = path.with_file_name(whiteout_name(name));
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o600);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mtime(0);
        self.write(&wh, &mut h, std::io::empty())
    }

    /// Ends the stream (two zero blocks) and returns the writer.
    ///
    /// # Errors
    ///
    /// The final write fails.
    pub fn finish(self) -> Result<(W, ExportStats)> {
        let stats = self.stats;
        let out = self.tar.into_inner().map_err(|source| ArchiveError::Write {
            path: PathBuf::new(),
            source,
        })?;
        Ok((out, stats))
    }

    fn metadata(&self, path: &Path) -> Result<Metadata> {
        self.fs.metadata(path).map_err(|source| ArchiveError::Tree {
            path: path.to_path_buf(),
            source,
        })
    }

    fn tree_err(&self, path: &Path) -> impl FnOnce(overlay_fs::Error) -> ArchiveError + use<'_, W> {
        let path = path.to_path_buf();
        move |source| ArchiveError::Tree { path, source }
    }

    fn header(&self, md: &Metadata, kind: EntryType) -> Result<Header> {
        let (uid, gid) = self.opts.id_maps.to_container(md.uid, md.gid)?;
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(md.mode);
        h.set_uid(uid.into());
        h.set_gid(gid.into());
        h.set_mtime(md.mtime.sec.max(0) as u64);
        h.set_size(0);
        Ok(h)
    }

    fn append_with(&mut self, path: &Path, md: &Metadata) -> Result<()> {
        let overlay = self.opts.whiteouts == ExportWhiteouts::Overlay;
        match md.file_type {
            FileType::Directory => {
                let mut h = self.header(md, EntryType::Directory)?;
                self.xattrs(path)?;
                self.write(path, &mut h, std::io::empty())?;
                if overlay && self.is_opaque(path)? {
                    let mut h = self.header(md, EntryType::Regular)?;
                    h.set_mode(md.mode & 0o777);
                    h.set_mtime(0);
                    self.write(&path.join(OPAQUE_MARKER), &mut h, std::io::empty())?;
                }
            }
            FileType::CharDevice if overlay && md.rdev == 0 => {
                let mut h = self.header(md, EntryType::Regular)?;
                h.set_mode(0o600);
                let name = path.file_name().unwrap_or(OsStr::new(""));
                self.write(&path.with_file_name(whiteout_name(name)), &mut h, std::io::empty())?;
            }
            FileType::Regular => {
                if md.nlink > 1 {
                    if let Some(first) = self.links.get(&(md.dev, md.ino)).cloned() {
                        let mut h = self.header(md, EntryType::Link)?;
                        return self.write_link(path, &mut h, &first);
                    }
                    self.links.insert((md.dev, md.ino), path.to_path_buf());
                }
                let mut h = self.header(md, EntryType::Regular)?;
                h.set_size(md.size);
                self.xattrs(path)?;
                let file = self.fs.open_file(path).map_err(self.tree_err(path))?;
                let mut reader = Exact {
                    inner: file.take(md.size),
                    left: md.size,
                };
                self.write(path, &mut h, &mut reader)?;
                if reader.left != 0 {
                    return Err(ArchiveError::Write {
                        path: path.to_path_buf(),
                        source: std::io::Error::other("file shrank while it was being read"),
                    });
                }
                self.stats.bytes += md.size;
            }
            FileType::Symlink => {
                let target = self.fs.readlink(path).map_err(self.tree_err(path))?;
                let mut h = self.header(md, EntryType::Symlink)?;
                self.xattrs(path)?;
                self.write_link(path, &mut h, &target)?;
            }
            FileType::CharDevice | FileType::BlockDevice | FileType::Fifo => {
                let kind = match md.file_type {
                    FileType::CharDevice => EntryType::Char,
                    FileType::BlockDevice => EntryType::Block,
                    _ => EntryType::Fifo,
                };
                let mut h = self.header(md, kind)?;
                let dev_err = |source| ArchiveError::Write {
                    path: path.to_path_buf(),
                    source,
                };
                h.set_device_major(overlay_fs::major(md.rdev)).map_err(dev_err)?;
                let dev_err = |source| ArchiveError::Write {
                    path: path.to_path_buf(),
                    source,
                };
                h.set_device_minor(overlay_fs::minor(md.rdev)).map_err(dev_err)?;
                self.xattrs(path)?;
                self.write(path, &mut h, std::io::empty())?;
            }
            // Tar has no sockets; Docker skips them too.
            FileType::Socket => {}
        }
        Ok(())
    }

    fn is_opaque(&self, path: &Path) -> Result<bool> {
        for ns in [XattrNamespace::Trusted, XattrNamespace::User] {
            match self.fs.get_xattr(path, OsStr::new(ns.opaque_xattr())) {
                Ok(Some(v)) if v == b"y" => return Ok(true),
                Ok(_) => {}
                // Unprivileged readers cannot see trusted.*; that is "no".
                Err(e) if e.kind() == overlay_fs::ErrorKind::PermissionDenied => {}
                Err(e) => {
                    return Err(ArchiveError::Tree {
                        path: path.to_path_buf(),
                        source: e,
                    });
                }
            }
        }
        Ok(false)
    }

    /// Writes the entry's xattrs (all but overlayfs's private ones) as a
    /// PAX header, sorted by name, before the entry itself.
    fn xattrs(&mut self, path: &Path) -> Result<()> {
        let mut names = self.fs.list_xattrs(path).map_err(self.tree_err(path))?;
        names.retain(|n| !is_private_xattr(n.as_bytes()));
        if names.is_empty() {
            return Ok(());
        }
        names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let mut records = Vec::with_capacity(names.len());
        for name in names {
            let Some(value) = self.fs.get_xattr(path, &name).map_err(self.tree_err(path))? else {
                continue;
            };
            let key = match name.to_str() {
                Some(n) => format!("SCHILY.xattr.{n}"),
                None => {
                    return Err(ArchiveError::Write {
                        path: path.to_path_buf(),
                        source: std::io::Error::other(format!("xattr name {name:?} is not UTF-8")),
                    });
                }
            };
            records.push((key, value));
        }
        self.tar
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(|source| ArchiveError::Write {
                path: path.to_path_buf(),
                source,
            })
    }

    fn write(&mut self, path: &Path, h: &mut Header, data: impl Read) -> Result<()> {
        self.tar
            .append_data(h, path, data)
            .map_err(|source| ArchiveError::Write {
                path: path.to_path_buf(),
                source,
            })?;
        self.stats.entries += 1;
        Ok(())
    }

    fn write_link(&mut self, path: &Path, h: &mut Header, target: &Path) -> Result<()> {
        self.tar
            .append_link(h, path, target)
            .map_err(|source| ArchiveError::Write {
                path: path.to_path_buf(),
                source,
            })?;
        self.stats.entries += 1;
        Ok(())
    }
}

/// Reads exactly the announced size, counting what is left, so a file that
/// shrinks between `lstat` and `read` is caught instead of corrupting the
/// stream. (One that grows is cut at the announced size.)
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "file shrank while it was being read",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}
