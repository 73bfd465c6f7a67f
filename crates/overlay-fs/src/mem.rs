//! [`MemFs`]: an in-memory tree that behaves as [`HostFs`](crate::HostFs)
//! does on a Linux filesystem, for tests and for the driver's fake backend.
//!
//! It models what a layer store can observe: inodes shared by hard links,
//! directory parents (so `..` after a symlink goes where the kernel goes),
//! symlink resolution inside the root with the kernel's limit of 40 links,
//! the kernel's order of checks (so the same call fails with the same
//! [`ErrorKind`]), xattr namespace rules, setgid inheritance and the
//! setuid clearing of `chown`. It keeps no atime updates on read and reports
//! a fixed size for directories.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, ErrorKind, Result};
use crate::metadata::{DirEntry, FileType, Metadata, NodeKind, Timestamp};
use crate::path::{Part, split, split_child};
use crate::{File, Fs};

/// The kernel's limit on symlinks followed in one resolution (`MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;
/// The largest xattr value (`XATTR_SIZE_MAX`).
const XATTR_SIZE_MAX: usize = 65536;
/// The size `lstat` reports for every directory.
const DIR_SIZE: u64 = 4096;
const ROOT: u64 = 1;

/// An in-memory directory tree; clones share the same tree.
#[derive(Clone)]
pub struct MemFs {
    state: Arc<Mutex<State>>,
    /// The directory this handle's paths start from: the tree's root, or
    /// a subtree's.
    root: u64,
    /// Keeps a subtree's root directory alive while any handle uses it.
    _pin: Option<Arc<Pin>>,
}

/// One open reference to a directory used as a subtree root.
struct Pin {
    state: Arc<Mutex<State>>,
    ino: u64,
}

impl Drop for Pin {
    fn drop(&mut self) {
        self.state.lock().release(self.ino);
    }
}

impl Default for MemFs {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemFs")
            .field("inodes", &self.state.lock().nodes.len())
            .finish()
    }
}

enum Content {
    File(Vec<u8>),
    Dir {
        entries: BTreeMap<OsString, u64>,
        parent: u64,
    },
    Symlink(PathBuf),
    Special(NodeKind),
}

struct Node {
    content: Content,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Links from directory entries (directories compute theirs).
    nlink: u64,
    /// Open file handles; a node is freed when both counts reach zero.
    open: u64,
    mtime: Timestamp,
    atime: Timestamp,
    xattrs: BTreeMap<OsString, Vec<u8>>,
}

impl Node {
    fn file_type(&self) -> FileType {
        match &self.content {
            Content::File(_) => FileType::Regular,
            Content::Dir { .. } => FileType::Directory,
            Content::Symlink(_) => FileType::Symlink,
            Content::Special(k) => k.file_type(),
        }
    }

    /// chown(2): drops setuid, and setgid when group-executable, from
    /// everything but directories (symlinks have no such bits).
    fn chown(&mut self, uid: u32, gid: u32) {
        self.uid = uid;
        self.gid = gid;
        if !matches!(self.content, Content::Dir { .. } | Content::Symlink(_)) {
            self.mode &= !0o4000;
            if self.mode & 0o010 != 0 {
                self.mode &= !0o2000;
            }
        }
    }

    /// All xattrs as name and value.
    fn xattr_list(&self) -> Vec<(OsString, Vec<u8>)> {
        self.xattrs.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn set_times(&mut self, atime: Option<Timestamp>, mtime: Option<Timestamp>) {
        if let Some(t) = atime {
            self.atime = t;
        }
        if let Some(t) = mtime {
            self.mtime = t;
        }
    }

    fn entries(&self) -> Option<&BTreeMap<OsString, u64>> {
        match &self.content {
            Content::Dir { entries, .. } => Some(entries),
            _ => None,
        }
    }
}

struct State {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
}

/// A path component while resolving: owned, since symlink targets splice
/// their own components into the walk.
enum Step {
    Up,
    Name(OsString),
}

fn steps_of(parts: &[Part<'_>]) -> VecDeque<Step> {
    parts
        .iter()
        .map(|p| match p {
            Part::Up => Step::Up,
            Part::Name(n) => Step::Name(n.to_os_string()),
        })
        .collect()
}

impl State {
    fn new() -> Self {
        let now = Timestamp::now();
        let root = Node {
            content: Content::Dir {
                entries: BTreeMap::new(),
                parent: ROOT,
            },
            mode: 0o755,
            uid: 0,
            gid: 0,
            // Never unlinked: the root must outlive every handle.
            nlink: 1,
            open: 0,
            mtime: now,
            atime: now,
            xattrs: BTreeMap::new(),
        };
        Self {
            nodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
        }
    }

    fn node(&self, ino: u64) -> &Node {
        // Every inode number held in a directory or handle is in the map:
        // nodes are only freed when no entry or handle refers to them.
        &self.nodes[&ino]
    }

    fn node_mut(&mut self, ino: u64) -> &mut Node {
        self.nodes.get_mut(&ino).expect("inode referenced by the tree exists")
    }

    /// Resolves `steps` from the root, following every symlink inside the
    /// root, and requires a directory at the end (as `openat2(O_DIRECTORY)`).
    fn resolve_dir(&self, root: u64, op: &'static str, path: &Path, mut steps: VecDeque<Step>) -> Result<u64> {
        let mut cur = root;
        let mut links = 0;
        while let Some(step) = steps.pop_front() {
            let Some(entries) = self.node(cur).entries() else {
                return Err(Error::new(op, path, ErrorKind::NotADirectory));
            };
            match step {
                Step::Up => {
                    // `..` never climbs above the root, as RESOLVE_IN_ROOT.
                    if let Content::Dir { parent, .. } = self.node(cur).content
                        && cur != root
                    {
                        cur = parent;
                    }
                }
                Step::Name(name) => {
                    let Some(&child) = entries.get(&name) else {
                        return Err(Error::new(op, path, ErrorKind::NotFound));
                    };
                    match &self.node(child).content {
                        Content::Symlink(target) => {
                            links += 1;
                            if links > MAX_SYMLINKS {
                                return Err(Error::new(op, path, ErrorKind::SymlinkLoop));
                            }
                            if target.as_os_str().is_empty() {
                                return Err(Error::new(op, path, ErrorKind::NotFound));
                            }
                            if target.is_absolute() {
                                cur = root;
                            }
                            for c in target.components().rev() {
                                match c {
                                    Component::Normal(n) => steps.push_front(Step::Name(n.to_os_string())),
                                    Component::ParentDir => steps.push_front(Step::Up),
                                    _ => {}
                                }
                            }
                        }
                        _ => cur = child,
                    }
                }
            }
        }
        if self.node(cur).entries().is_none() {
            return Err(Error::new(op, path, ErrorKind::NotADirectory));
        }
        Ok(cur)
    }

    /// The parent directory of `path` and its final name.
    fn parent<'p>(&self, root: u64, op: &'static str, path: &'p Path) -> Result<(u64, &'p OsStr)> {
        let (parts, name) = split_child(op, path)?;
        Ok((self.resolve_dir(root, op, path, steps_of(&parts))?, name))
    }

    /// The node `path` names, without following a final symlink.
    fn lookup(&self, root: u64, op: &'static str, path: &Path) -> Result<u64> {
        let s = split(op, path)?;
        let dir = self.resolve_dir(root, op, path, steps_of(&s.parent))?;
        match s.name {
            None => Ok(dir),
            Some(name) => self.child(op, path, dir, name),
        }
    }

    fn child(&self, op: &'static str, path: &Path, dir: u64, name: &OsStr) -> Result<u64> {
        self.node(dir)
            .entries()
            .and_then(|e| e.get(name).copied())
            .ok_or_else(|| Error::new(op, path, ErrorKind::NotFound))
    }

    fn entry(&self, dir: u64, name: &OsStr) -> Option<u64> {
        self.node(dir).entries().and_then(|e| e.get(name).copied())
    }

    fn metadata(&self, ino: u64) -> Metadata {
        let n = self.node(ino);
        let (size, nlink, rdev) = match &n.content {
            Content::File(data) => (data.len() as u64, n.nlink, 0),
            Content::Dir { entries, .. } => {
                let subdirs = entries.values().filter(|c| self.node(**c).entries().is_some()).count();
                (DIR_SIZE, 2 + subdirs as u64, 0)
            }
            Content::Symlink(t) => (t.as_os_str().len() as u64, n.nlink, 0),
            Content::Special(k) => (0, n.nlink, k.rdev()),
        };
        Metadata {
            file_type: n.file_type(),
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            size,
            nlink,
            // As a filesystem of 4 KiB blocks without holes allocates.
            blocks: size.div_ceil(4096) * 8,
            ino,
            dev: 0,
            rdev,
            mtime: n.mtime,
            atime: n.atime,
        }
    }

    /// Adds a new node named `name` in `dir`, owned as the kernel would
    /// own it: by root, with the directory's group when it is setgid.
    fn insert(&mut self, dir: u64, name: &OsStr, content: Content, mut mode: u32) -> u64 {
        let now = Timestamp::now();
        let (dir_mode, dir_gid) = {
            let d = self.node(dir);
            (d.mode, d.gid)
        };
        let setgid_parent = dir_mode & 0o2000 != 0;
        let is_dir = matches!(content, Content::Dir { .. });
        if setgid_parent && is_dir {
            mode |= 0o2000;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(
            ino,
            Node {
                content,
                mode,
                uid: 0,
                gid: if setgid_parent { dir_gid } else { 0 },
                nlink: 1,
                open: 0,
                mtime: now,
                atime: now,
                xattrs: BTreeMap::new(),
            },
        );
        self.link(dir, name, ino);
        ino
    }

    fn link(&mut self, dir: u64, name: &OsStr, ino: u64) {
        let d = self.node_mut(dir);
        if let Content::Dir { entries, .. } = &mut d.content {
            entries.insert(name.to_os_string(), ino);
        }
        d.mtime = Timestamp::now();
    }

    /// Removes the entry `name` from `dir`, freeing its node when nothing
    /// else refers to it.
    fn unlink(&mut self, dir: u64, name: &OsStr) {
        let d = self.node_mut(dir);
        let removed = match &mut d.content {
            Content::Dir { entries, .. } => entries.remove(name),
            _ => None,
        };
        d.mtime = Timestamp::now();
        if let Some(ino) = removed {
            self.drop_link(ino);
        }
    }

    fn drop_link(&mut self, ino: u64) {
        let n = self.node_mut(ino);
        n.nlink = n.nlink.saturating_sub(1);
        self.free_if_unreferenced(ino);
    }

    /// Drops one open handle of `ino`, freeing the node (and, for a
    /// directory, what it still holds) when nothing refers to it any more.
    fn release(&mut self, ino: u64) {
        self.node_mut(ino).open -= 1;
        self.free_if_unreferenced(ino);
    }

    /// Frees `ino` once no name and no handle refers to it; a directory's
    /// entries lose their link from it.
    fn free_if_unreferenced(&mut self, ino: u64) {
        let n = self.node_mut(ino);
        if n.nlink == 0
            && n.open == 0
            && let Some(Node {
                content: Content::Dir { entries, .. },
                ..
            }) = self.nodes.remove(&ino)
        {
            for child in entries.into_values() {
                self.drop_link(child);
            }
        }
    }

    /// Is `ancestor` the directory `ino` or one above it?
    fn is_ancestor_or_self(&self, ancestor: u64, mut ino: u64) -> bool {
        loop {
            if ino == ancestor {
                return true;
            }
            match self.node(ino).content {
                Content::Dir { parent, .. } if ino != ROOT => ino = parent,
                _ => return false,
            }
        }
    }

    fn open_regular(&mut self, root: u64, op: &'static str, path: &Path) -> Result<u64> {
        let ino = self.lookup(root, op, path)?;
        require_regular(op, path, self.node(ino).file_type())?;
        Ok(ino)
    }
}

fn require_regular(op: &'static str, path: &Path, ty: FileType) -> Result<()> {
    match ty {
        FileType::Regular => Ok(()),
        FileType::Directory => Err(Error::new(op, path, ErrorKind::IsADirectory)),
        FileType::Symlink => Err(Error::new(op, path, ErrorKind::SymlinkLoop)),
        _ => Err(Error::new(op, path, ErrorKind::NotARegularFile)),
    }
}

/// The xattr namespaces Linux filesystems accept, with whether a value on
/// a node other than a regular file or directory is allowed.
fn check_xattr_name(op: &'static str, path: &Path, name: &OsStr, value: Option<&[u8]>) -> Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 255 {
        return Err(Error::new(op, path, ErrorKind::InvalidInput).with_detail("xattr name must be 1 to 255 bytes"));
    }
    if b.contains(&0) {
        return Err(Error::new(op, path, ErrorKind::InvalidInput).with_detail("xattr name contains a NUL byte"));
    }
    if value.is_some_and(|v| v.len() > XATTR_SIZE_MAX) {
        return Err(Error::new(op, path, ErrorKind::InvalidInput).with_detail("xattr value larger than 64 KiB"));
    }
    Ok(())
}

/// Namespace rules applied once the node is known, in the kernel's order:
/// `user.*` only on regular files and directories (`EPERM` to write,
/// `ENODATA` to read), unknown namespaces unsupported.
fn xattr_namespace(op: &'static str, path: &Path, name: &OsStr, ty: FileType, write: bool) -> Result<bool> {
    let b = name.as_bytes();
    for ns in [&b"user."[..], b"trusted.", b"security."] {
        if let Some(rest) = b.strip_prefix(ns) {
            if ns == b"user." && !matches!(ty, FileType::Regular | FileType::Directory) {
                return if write {
                    Err(Error::new(op, path, ErrorKind::PermissionDenied))
                } else {
                    Ok(false)
                };
            }
            if rest.is_empty() {
                return Err(Error::new(op, path, ErrorKind::InvalidInput));
            }
            return Ok(true);
        }
    }
    Err(Error::new(op, path, ErrorKind::Unsupported).with_detail("unsupported xattr namespace"))
}

impl MemFs {
    /// The longest file a `MemFs` keeps: 256 MiB. Every byte of a file,
    /// holes included, lives in memory, so a tar that names a sparse file
    /// of a terabyte (a few hundred bytes of input) must not make the
    /// process allocate it. Longer writes and `set_len` fail with
    /// [`ErrorKind::FileTooLarge`] (`EFBIG`), as on a filesystem whose
    /// largest file is this size; far above what tests and the fake
    /// driver keep in memory.
    pub const MAX_FILE_SIZE: u64 = 256 << 20;

    /// An empty tree: a root directory with mode 0755 owned by 0:0.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State::new())),
            root: ROOT,
            _pin: None,
        }
    }

    fn handle(&self, ino: u64, path: &Path, read: bool, write: bool) -> Box<dyn File> {
        self.state.lock().node_mut(ino).open += 1;
        Box::new(MemFile {
            fs: self.clone(),
            ino,
            pos: 0,
            read,
            write,
            path: path.to_path_buf(),
        })
    }
}

impl Fs for MemFs {
    fn metadata(&self, path: &Path) -> Result<Metadata> {
        let st = self.state.lock();
        let ino = st.lookup(self.root, "lstat", path)?;
        Ok(st.metadata(ino))
    }

    fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>> {
        const OP: &str = "readdir";
        let st = self.state.lock();
        let ino = st.lookup(self.root, OP, path)?;
        let node = st.node(ino);
        // Like open(O_DIRECTORY | O_NOFOLLOW): a symlink is not a directory.
        let Some(entries) = node.entries() else {
            return Err(Error::new(OP, path, ErrorKind::NotADirectory));
        };
        Ok(entries
            .iter()
            .map(|(name, &ino)| DirEntry {
                name: name.clone(),
                file_type: st.node(ino).file_type(),
                ino,
            })
            .collect())
    }

    fn open_dir(&self, path: &Path) -> Result<Box<dyn crate::Dir>> {
        const OP: &str = "opendir";
        let mut st = self.state.lock();
        let ino = st.lookup(self.root, OP, path)?;
        if st.node(ino).entries().is_none() {
            return Err(Error::new(OP, path, ErrorKind::NotADirectory));
        }
        st.node_mut(ino).open += 1;
        Ok(Box::new(MemDir {
            fs: self.clone(),
            ino,
            path: path.to_path_buf(),
        }))
    }

    fn subtree(&self, path: &Path) -> Result<Arc<dyn Fs>> {
        const OP: &str = "subtree";
        let mut st = self.state.lock();
        let ino = st.lookup(self.root, OP, path)?;
        if st.node(ino).entries().is_none() {
            return Err(Error::new(OP, path, ErrorKind::NotADirectory));
        }
        st.node_mut(ino).open += 1;
        let pin = Arc::new(Pin {
            state: self.state.clone(),
            ino,
        });
        Ok(Arc::new(MemFs {
            state: self.state.clone(),
            root: ino,
            _pin: Some(pin),
        }))
    }

    fn open_file(&self, path: &Path) -> Result<Box<dyn File>> {
        let ino = self.state.lock().open_regular(self.root, "open", path)?;
        Ok(self.handle(ino, path, true, false))
    }

    fn open_file_rw(&self, path: &Path) -> Result<Box<dyn File>> {
        let ino = self.state.lock().open_regular(self.root, "open", path)?;
        Ok(self.handle(ino, path, true, true))
    }

    fn create_file(&self, path: &Path, mode: u32) -> Result<Box<dyn File>> {
        const OP: &str = "create";
        let ino = {
            let mut st = self.state.lock();
            let (dir, name) = st.parent(self.root, OP, path)?;
            match st.entry(dir, name) {
                Some(ino) => {
                    require_regular(OP, path, st.node(ino).file_type())?;
                    let n = st.node_mut(ino);
                    n.content = Content::File(Vec::new());
                    n.mtime = Timestamp::now();
                    ino
                }
                None => st.insert(dir, name, Content::File(Vec::new()), mode & 0o7777),
            }
        };
        Ok(self.handle(ino, path, false, true))
    }

    fn create_new(&self, path: &Path, mode: u32) -> Result<Box<dyn File>> {
        const OP: &str = "create";
        let ino = {
            let mut st = self.state.lock();
            let (dir, name) = st.parent(self.root, OP, path)?;
            if st.entry(dir, name).is_some() {
                return Err(Error::new(OP, path, ErrorKind::AlreadyExists));
            }
            st.insert(dir, name, Content::File(Vec::new()), mode & 0o7777)
        };
        Ok(self.handle(ino, path, false, true))
    }

    fn mkdir(&self, path: &Path, mode: u32) -> Result<()> {
        const OP: &str = "mkdir";
        let mut st = self.state.lock();
        let (dir, name) = st.parent(self.root, OP, path)?;
        if st.entry(dir, name).is_some() {
            return Err(Error::new(OP, path, ErrorKind::AlreadyExists));
        }
        st.insert(
            dir,
            name,
            Content::Dir {
                entries: BTreeMap::new(),
                parent: dir,
            },
            mode & 0o7777,
        );
        Ok(())
    }

    fn symlink(&self, target: &Path, path: &Path) -> Result<()> {
        const OP: &str = "symlink";
        let mut st = self.state.lock();
        let (dir, name) = st.parent(self.root, OP, path)?;
        if target.as_os_str().is_empty() {
            return Err(Error::new(OP, path, ErrorKind::NotFound).with_detail("empty symlink target"));
        }
        if target.as_os_str().as_bytes().contains(&0) {
            return Err(Error::new(OP, path, ErrorKind::InvalidInput).with_detail("symlink target contains a NUL byte"));
        }
        if target.as_os_str().len() > crate::PATH_MAX {
            return Err(Error::new(OP, path, ErrorKind::NameTooLong));
        }
        if st.entry(dir, name).is_some() {
            return Err(Error::new(OP, path, ErrorKind::AlreadyExists));
        }
        st.insert(dir, name, Content::Symlink(target.to_path_buf()), 0o777);
        Ok(())
    }

    fn readlink(&self, path: &Path) -> Result<PathBuf> {
        const OP: &str = "readlink";
        let st = self.state.lock();
        let (dir, name) = st.parent(self.root, OP, path)?;
        let ino = st.child(OP, path, dir, name)?;
        match &st.node(ino).content {
            Content::Symlink(t) => Ok(t.clone()),
            _ => Err(Error::new(OP, path, ErrorKind::InvalidInput)),
        }
    }

    fn hardlink(&self, existing: &Path, path: &Path) -> Result<()> {
        const OP: &str = "link";
        let mut st = self.state.lock();
        let (odir, oname) = st.parent(self.root, OP, existing)?;
        let (ndir, nname) = st.parent(self.root, OP, path)?;
        let ino = st.child(OP, path, odir, oname)?;
        if st.entry(ndir, nname).is_some() {
            return Err(Error::new(OP, path, ErrorKind::AlreadyExists));
        }
        if st.node(ino).entries().is_some() {
            return Err(Error::new(OP, path, ErrorKind::PermissionDenied).with_detail("hard link to a directory"));
        }
        st.node_mut(ino).nlink += 1;
        st.link(ndir, nname, ino);
        Ok(())
    }

    fn mknod(&self, path: &Path, kind: NodeKind, mode: u32) -> Result<()> {
        const OP: &str = "mknod";
        let mut st = self.state.lock();
        let (dir, name) = st.parent(self.root, OP, path)?;
        if st.entry(dir, name).is_some() {
            return Err(Error::new(OP, path, ErrorKind::AlreadyExists));
        }
        st.insert(dir, name, Content::Special(kind), mode & 0o7777);
        Ok(())
    }

    fn get_xattr(&self, path: &Path, name: &OsStr) -> Result<Option<Vec<u8>>> {
        const OP: &str = "getxattr";
        let st = self.state.lock();
        let s = split(OP, path)?;
        let dir = st.resolve_dir(self.root, OP, path, steps_of(&s.parent))?;
        check_xattr_name(OP, path, name, None)?;
        let ino = match s.name {
            None => dir,
            Some(n) => st.child(OP, path, dir, n)?,
        };
        let node = st.node(ino);
        if !xattr_namespace(OP, path, name, node.file_type(), false)? {
            return Ok(None);
        }
        Ok(node.xattrs.get(name).cloned())
    }

    fn set_xattr(&self, path: &Path, name: &OsStr, value: &[u8]) -> Result<()> {
        const OP: &str = "setxattr";
        let mut st = self.state.lock();
        let s = split(OP, path)?;
        let dir = st.resolve_dir(self.root, OP, path, steps_of(&s.parent))?;
        check_xattr_name(OP, path, name, Some(value))?;
        let ino = match s.name {
            None => dir,
            Some(n) => st.child(OP, path, dir, n)?,
        };
        xattr_namespace(OP, path, name, st.node(ino).file_type(), true)?;
        st.node_mut(ino).xattrs.insert(name.to_os_string(), value.to_vec());
        Ok(())
    }

    fn list_xattrs(&self, path: &Path) -> Result<Vec<OsString>> {
        let st = self.state.lock();
        let ino = st.lookup(self.root, "listxattr", path)?;
        Ok(st.node(ino).xattrs.keys().cloned().collect())
    }

    fn remove_xattr(&self, path: &Path, name: &OsStr) -> Result<()> {
        const OP: &str = "removexattr";
        let mut st = self.state.lock();
        let s = split(OP, path)?;
        let dir = st.resolve_dir(self.root, OP, path, steps_of(&s.parent))?;
        check_xattr_name(OP, path, name, None)?;
        let ino = match s.name {
            None => dir,
            Some(n) => st.child(OP, path, dir, n)?,
        };
        xattr_namespace(OP, path, name, st.node(ino).file_type(), true)?;
        match st.node_mut(ino).xattrs.remove(name) {
            Some(_) => Ok(()),
            None => Err(Error::new(OP, path, ErrorKind::NoSuchAttribute)),
        }
    }

    fn set_mode(&self, path: &Path, mode: u32) -> Result<()> {
        const OP: &str = "chmod";
        let mut st = self.state.lock();
        let ino = st.lookup(self.root, OP, path)?;
        let n = st.node_mut(ino);
        if n.file_type() == FileType::Symlink {
            return Err(Error::new(OP, path, ErrorKind::Unsupported).with_detail("symlinks have no mode of their own"));
        }
        n.mode = mode & 0o7777;
        Ok(())
    }

    fn set_owner(&self, path: &Path, uid: u32, gid: u32) -> Result<()> {
        const OP: &str = "lchown";
        if uid == u32::MAX || gid == u32::MAX {
            return Err(
                Error::new(OP, path, ErrorKind::InvalidInput).with_detail("uid or gid -1 means 'unchanged', not an id")
            );
        }
        let mut st = self.state.lock();
        let ino = st.lookup(self.root, OP, path)?;
        st.node_mut(ino).chown(uid, gid);
        Ok(())
    }

    fn set_times(&self, path: &Path, atime: Option<Timestamp>, mtime: Option<Timestamp>) -> Result<()> {
        let mut st = self.state.lock();
        let ino = st.lookup(self.root, "utimensat", path)?;
        st.node_mut(ino).set_times(atime, mtime);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        const OP: &str = "unlink";
        let mut st = self.state.lock();
        let (dir, name) = st.parent(self.root, OP, path)?;
        let ino = st.child(OP, path, dir, name)?;
        if st.node(ino).entries().is_some() {
            return Err(Error::new(OP, path, ErrorKind::IsADirectory));
        }
        st.unlink(dir, name);
        Ok(())
    }

    fn remove_dir(&self, path: &Path) -> Result<()> {
        const OP: &str = "rmdir";
        let mut st = self.state.lock();
        let (dir, name) = st.parent(self.root, OP, path)?;
        let ino = st.child(OP, path, dir, name)?;
        match st.node(ino).entries() {
            None => return Err(Error::new(OP, path, ErrorKind::NotADirectory)),
            Some(e) if !e.is_empty() => return Err(Error::new(OP, path, ErrorKind::DirectoryNotEmpty)),
            Some(_) => {}
        }
        st.unlink(dir, name);
        Ok(())
    }

    fn remove_all(&self, path: &Path) -> Result<()> {
        const OP: &str = "remove_all";
        let mut st = self.state.lock();
        let (dir, name) = match st.parent(self.root, OP, path) {
            Ok(p) => p,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        st.unlink(dir, name);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        const OP: &str = "rename";
        let mut st = self.state.lock();
        let (fdir, fname) = st.parent(self.root, OP, from)?;
        let (tdir, tname) = st.parent(self.root, OP, to)?;
        let src = st.child(OP, from, fdir, fname)?;
        let dst = st.entry(tdir, tname);
        let src_is_dir = st.node(src).entries().is_some();
        // The kernel's checks, in its order (do_renameat2, vfs_rename).
        if src_is_dir && st.is_ancestor_or_self(src, tdir) {
            return Err(
                Error::new(OP, from, ErrorKind::InvalidInput).with_detail("cannot move a directory into itself")
            );
        }
        if let Some(dst) = dst {
            if st.is_ancestor_or_self(dst, fdir) {
                return Err(Error::new(OP, from, ErrorKind::DirectoryNotEmpty));
            }
            if dst == src {
                return Ok(());
            }
            match (src_is_dir, st.node(dst).entries()) {
                (true, None) => return Err(Error::new(OP, from, ErrorKind::NotADirectory)),
                (false, Some(_)) => return Err(Error::new(OP, from, ErrorKind::IsADirectory)),
                (true, Some(e)) if !e.is_empty() => return Err(Error::new(OP, from, ErrorKind::DirectoryNotEmpty)),
                _ => {}
            }
            st.unlink(tdir, tname);
        }
        // Move the entry without touching the link count.
        if let Content::Dir { entries, .. } = &mut st.node_mut(fdir).content {
            entries.remove(fname);
        }
        st.node_mut(fdir).mtime = Timestamp::now();
        st.link(tdir, tname, src);
        if let Content::Dir { parent, .. } = &mut st.node_mut(src).content {
            *parent = tdir;
        }
        Ok(())
    }
}

/// An open regular file of a [`MemFs`]; the inode stays alive while it is
/// open, even after its last name is removed.
struct MemFile {
    fs: MemFs,
    ino: u64,
    pos: u64,
    read: bool,
    write: bool,
    path: PathBuf,
}

fn bad_fd() -> io::Error {
    io::Error::from_raw_os_error(rustix::io::Errno::BADF.raw_os_error())
}

/// A write past [`MemFs::MAX_FILE_SIZE`], as the kernel reports a write
/// past a filesystem's largest file.
fn too_large() -> io::Error {
    io::Error::from_raw_os_error(rustix::io::Errno::FBIG.raw_os_error())
}

impl MemFile {
    fn with_data<T>(&self, f: impl FnOnce(&mut Vec<u8>, &mut Node) -> T) -> T {
        let mut st = self.fs.state.lock();
        let node = st.node_mut(self.ino);
        let mut data = match std::mem::replace(&mut node.content, Content::File(Vec::new())) {
            Content::File(d) => d,
            other => {
                node.content = other;
                Vec::new()
            }
        };
        let out = f(&mut data, node);
        node.content = Content::File(data);
        out
    }
}

impl Read for MemFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.read {
            return Err(bad_fd());
        }
        let pos = self.pos;
        let n = self.with_data(|data, _| {
            let start = (pos as usize).min(data.len());
            let n = buf.len().min(data.len() - start);
            buf[..n].copy_from_slice(&data[start..start + n]);
            n
        });
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for MemFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.write {
            return Err(bad_fd());
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let end = self
            .pos
            .checked_add(buf.len() as u64)
            .filter(|end| *end <= MemFs::MAX_FILE_SIZE);
        let Some(end) = end else {
            return Err(too_large());
        };
        let (pos, end) = (self.pos as usize, end as usize);
        self.with_data(|data, node| {
            if data.len() < end {
                data.resize(end, 0);
            }
            data[pos..end].copy_from_slice(buf);
            node.mtime = Timestamp::now();
        });
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for MemFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let len = self.with_data(|d, _| d.len() as u64);
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::from_raw_os_error(rustix::io::Errno::INVAL.raw_os_error())),
        }
    }
}

impl File for MemFile {
    fn metadata(&self) -> Result<Metadata> {
        Ok(self.fs.state.lock().metadata(self.ino))
    }

    fn set_len(&mut self, len: u64) -> Result<()> {
        if !self.write {
            return Err(Error::new("ftruncate", &self.path, ErrorKind::InvalidInput));
        }
        if len > MemFs::MAX_FILE_SIZE {
            return Err(Error::new("ftruncate", &self.path, ErrorKind::FileTooLarge)
                .with_detail(format!("MemFs keeps files up to {} bytes", MemFs::MAX_FILE_SIZE)));
        }
        self.with_data(|d, node| {
            d.resize(len as usize, 0);
            node.mtime = Timestamp::now();
        });
        Ok(())
    }

    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    fn set_owner(&self, uid: u32, gid: u32) -> Result<()> {
        if uid == u32::MAX || gid == u32::MAX {
            return Err(Error::new("fchown", &self.path, ErrorKind::InvalidInput));
        }
        self.fs.state.lock().node_mut(self.ino).chown(uid, gid);
        Ok(())
    }

    fn set_mode(&self, mode: u32) -> Result<()> {
        self.fs.state.lock().node_mut(self.ino).mode = mode & 0o7777;
        Ok(())
    }

    fn set_times(&self, atime: Option<Timestamp>, mtime: Option<Timestamp>) -> Result<()> {
        self.fs.state.lock().node_mut(self.ino).set_times(atime, mtime);
        Ok(())
    }

    fn set_xattr(&self, name: &OsStr, value: &[u8]) -> Result<()> {
        const OP: &str = "fsetxattr";
        check_xattr_name(OP, &self.path, name, Some(value))?;
        let mut st = self.fs.state.lock();
        xattr_namespace(OP, &self.path, name, FileType::Regular, true)?;
        st.node_mut(self.ino).xattrs.insert(name.to_os_string(), value.to_vec());
        Ok(())
    }

    fn xattrs(&self) -> Result<Vec<(OsString, Vec<u8>)>> {
        let st = self.fs.state.lock();
        Ok(st.node(self.ino).xattr_list())
    }
}

impl Drop for MemFile {
    fn drop(&mut self) {
        self.fs.state.lock().release(self.ino);
    }
}

/// An open directory of a [`MemFs`]; like a file handle, it keeps its
/// inode alive.
struct MemDir {
    fs: MemFs,
    ino: u64,
    path: PathBuf,
}

impl MemDir {
    fn child(&self, st: &State, op: &'static str, name: &OsStr) -> Result<(u64, PathBuf)> {
        let path = self.path.join(name);
        let ino = st.child(op, &path, self.ino, name)?;
        Ok((ino, path))
    }
}

impl crate::Dir for MemDir {
    fn entries(&mut self) -> Result<Vec<DirEntry>> {
        let st = self.fs.state.lock();
        Ok(st
            .node(self.ino)
            .entries()
            .map(|e| {
                e.iter()
                    .map(|(name, &ino)| DirEntry {
                        name: name.clone(),
                        file_type: st.node(ino).file_type(),
                        ino,
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    fn metadata(&self, name: &OsStr) -> Result<Metadata> {
        let st = self.fs.state.lock();
        let (ino, _) = self.child(&st, "lstat", name)?;
        Ok(st.metadata(ino))
    }

    fn open_dir(&self, name: &OsStr) -> Result<Box<dyn crate::Dir>> {
        let mut st = self.fs.state.lock();
        let (ino, path) = self.child(&st, "opendir", name)?;
        if st.node(ino).entries().is_none() {
            return Err(Error::new("opendir", path, ErrorKind::NotADirectory));
        }
        st.node_mut(ino).open += 1;
        Ok(Box::new(MemDir {
            fs: self.fs.clone(),
            ino,
            path,
        }))
    }

    fn open_file(&self, name: &OsStr) -> Result<(Box<dyn File>, Metadata)> {
        let (ino, path, md) = {
            let st = self.fs.state.lock();
            let (ino, path) = self.child(&st, "open", name)?;
            require_regular("open", &path, st.node(ino).file_type())?;
            (ino, path, st.metadata(ino))
        };
        Ok((self.fs.handle(ino, &path, true, false), md))
    }

    fn readlink(&self, name: &OsStr) -> Result<PathBuf> {
        let st = self.fs.state.lock();
        let (ino, path) = self.child(&st, "readlink", name)?;
        match &st.node(ino).content {
            Content::Symlink(t) => Ok(t.clone()),
            _ => Err(Error::new("readlink", path, ErrorKind::InvalidInput)),
        }
    }

    fn xattrs(&self, name: &OsStr) -> Result<Vec<(OsString, Vec<u8>)>> {
        let st = self.fs.state.lock();
        let (ino, _) = self.child(&st, "listxattr", name)?;
        Ok(st.node(ino).xattr_list())
    }

    fn own_xattrs(&self) -> Result<Vec<(OsString, Vec<u8>)>> {
        let st = self.fs.state.lock();
        Ok(st.node(self.ino).xattr_list())
    }
}

impl Drop for MemDir {
    fn drop(&mut self) {
        self.fs.state.lock().release(self.ino);
    }
}
