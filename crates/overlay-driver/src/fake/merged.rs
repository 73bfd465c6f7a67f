//! [`OverlayFs`]: a model of Linux overlayfs, the merged view of an optional
//! writable upper tree over read-only lower trees, for the fake backend.
//!
//! It writes into the upper tree exactly what the kernel writes, so that a
//! layer made through the fake backend has the same `diff/` as one made
//! through a real mount. The kernel is the specification; the model follows
//! a mount with `redirect_dir=off`, `metacopy=off`, `index=off` and
//! `xino=off` (what Docker's overlay2 uses), checked rule by rule against
//! Linux 6.18 by this crate's `merged` test. In that configuration:
//!
//! - **Lookup**, one component at a time, topmost layer first: a whiteout
//!   (character device 0:0) hides the name in every layer below; a
//!   directory merges with same-named directories below it until one is
//!   opaque (`trusted.overlay.opaque` = `y`), a whiteout or a non-directory
//!   stops the merge; a non-directory hides everything below it. The root
//!   always merges every layer (opaque markers on layer roots are ignored).
//!   Symlinks in intermediate components resolve inside the merged root;
//!   the final component is never followed.
//! - **Reading** comes from the topmost entry. A directory present in two
//!   or more layers (or carrying a copy-up origin) lists the union of its
//!   layers minus whiteouts; a directory from a single layer lists that
//!   layer's entries as they are, whiteouts included (as the kernel does:
//!   such a name is listed but `lstat` says it does not exist). Names like
//!   `.wh.x` are ordinary names to overlayfs.
//! - **Private xattrs**: names under `trusted.overlay.` (`user.overlay.` on
//!   a `userxattr` mount) are *escaped* since Linux 6.7: `trusted.overlay.X`
//!   seen through the mount is stored as `trusted.overlay.overlay.X` in the
//!   layers, so the real markers (`opaque`, `origin`...) can be neither
//!   seen, listed nor changed through the merged view, and a user's own
//!   `trusted.overlay.X` survives. An escaped name longer than 255 bytes is
//!   `Unsupported`; the bare prefix is `InvalidInput`.
//! - **Copy-up** before any change to an entry that only a lower layer has
//!   (writing open, truncating create, chmod, chown, utimes, setting or
//!   removing an xattr, hard link source, rename source): missing parents
//!   first, as directories with their lower mode, owner, times and xattrs
//!   (never opaque), then the entry with its data, mode, owner, times and
//!   non-private xattrs. A directory copies up alone. Lower hard links are
//!   broken (`index=off`). Removing an xattr that the lower entry lacks
//!   fails without a copy-up; setting one in an unknown namespace copies up
//!   and then fails, as in the kernel.
//! - **Removal** of an entry that some lower layer of its parent still has
//!   (a "lower positive" name) removes any upper copy and leaves a whiteout
//!   (mode 0, owner 0:0 like the kernel's shared whiteout); an entry only in
//!   the upper is simply removed. `rmdir` of a merged directory requires it
//!   to be empty in the merged view (whiteouts do not count).
//! - **Creation** over an upper whiteout replaces it; a directory created
//!   there is made opaque. A directory created anywhere else is not opaque
//!   (with `index`, `metacopy`, `redirect_dir` and `xino` off the kernel
//!   "allows offline changes" and skips its opaque optimisation).
//!   `mknod` of a whiteout is `PermissionDenied`.
//! - **Rename** of a directory that any lower layer has is `CrossDevice`
//!   (`EXDEV`); other renames copy the source up, leave a whiteout at the
//!   old name when the old name is lower positive (made as a new node of
//!   its directory, so a setgid directory's group, as `RENAME_WHITEOUT`
//!   does; or the target's own whiteout moved there when the target was
//!   one), and make a directory moved into a merged parent opaque.
//! - Without an upper tree the mount is **read-only**: changes fail with
//!   `ReadOnly`, after the checks the kernel makes first (a missing parent
//!   is still `NotFound`, an existing name is still `AlreadyExists`).
//!
//! Not modelled: the kernel's bookkeeping xattrs in the upper (`origin`,
//! `impure`: the model does not write them, though it honours an `origin`
//! it finds); what lower layers written by other tools may hold and the
//! kernel would follow (`redirect` xattrs, followed since the module's
//! `redirect_always_follow` is on; xattr whiteouts in `opaque=x`
//! directories; metacopy); inode numbers (`ino`, `dev` and `nlink` come
//! from the layer that holds the entry). Directory handles, subtrees and
//! file handles name their file by its path in the merged view, so they
//! do not follow it through a rename as the kernel's would.

use std::collections::{HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use overlay_fs::{
    Dir, DirEntry, Error, ErrorKind, File, FileType, Fs, Metadata, NodeKind, PATH_MAX, Result, Timestamp,
};
use parking_lot::Mutex;

/// The kernel's limit on symlinks followed in one resolution.
const MAX_SYMLINKS: usize = 40;
/// The longest xattr name (`XATTR_NAME_MAX`).
const XATTR_NAME_MAX: usize = 255;
/// The largest xattr value (`XATTR_SIZE_MAX`).
const XATTR_SIZE_MAX: usize = 65536;
/// `EIO`, for an I/O error without an `errno`.
const EIO: i32 = 5;
/// What overlayfs inserts after its prefix to escape a user's name.
const ESCAPE: &[u8] = b"overlay.";
/// The private namespace of a normal mount.
const TRUSTED_PREFIX: &[u8] = b"trusted.overlay.";
/// The private namespace of a `userxattr` mount.
const USER_PREFIX: &[u8] = b"user.overlay.";

/// Results inside the model carry only the kind; the public methods add
/// the operation and the caller's path.
type Kr<T> = std::result::Result<T, ErrorKind>;

trait KindOf<T> {
    fn k(self) -> Kr<T>;
}

impl<T> KindOf<T> for Result<T> {
    fn k(self) -> Kr<T> {
        self.map_err(|e| e.kind())
    }
}

fn io_kind(e: &io::Error) -> ErrorKind {
    match e.raw_os_error() {
        Some(errno) => ErrorKind::from_errno(errno),
        None => ErrorKind::Other(EIO),
    }
}

/// The merged view of overlayfs over [`Fs`] layers (see the module docs).
///
/// Clones share the same mount. Every operation runs under one lock, so a
/// copy-up is never seen half done.
///
/// ```
/// use std::path::Path;
/// use std::sync::Arc;
/// use overlay_driver::fake::OverlayFs;
/// use overlay_fs::{Fs, MemFs};
///
/// let lower = MemFs::new();
/// lower.write(Path::new("f"), 0o644, b"lower")?;
/// let upper = MemFs::new();
/// let merged = OverlayFs::new(vec![Arc::new(lower.clone())], Some(Arc::new(upper.clone())));
/// merged.remove_file(Path::new("f"))?;
/// assert!(upper.metadata(Path::new("f"))?.is_whiteout());
/// assert!(lower.exists(Path::new("f"))?);
/// # Ok::<(), overlay_fs::Error>(())
/// ```
#[derive(Clone)]
pub struct OverlayFs {
    inner: Arc<Inner>,
    /// Where this tree's root is in the mount (empty: the mount's root;
    /// else a [`subtree`](Fs::subtree)).
    base: PathBuf,
}

struct Inner {
    lowers: Vec<Arc<dyn Fs>>,
    upper: Option<Arc<dyn Fs>>,
    userxattr: bool,
    lock: Mutex<()>,
}

impl fmt::Debug for OverlayFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverlayFs")
            .field("lowers", &self.inner.lowers)
            .field("upper", &self.inner.upper)
            .field("userxattr", &self.inner.userxattr)
            .finish()
    }
}

impl OverlayFs {
    /// The merged view of `lowers` (uppermost first) under `upper`; with no
    /// upper the mount is read-only.
    ///
    /// The layers' roots must be directories. The model keeps no state of
    /// its own: everything is in the layers, which it reads on every call,
    /// so an upper written by one `OverlayFs` is read back by the next.
    pub fn new(lowers: Vec<Arc<dyn Fs>>, upper: Option<Arc<dyn Fs>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                lowers,
                upper,
                userxattr: false,
                lock: Mutex::new(()),
            }),
            base: PathBuf::new(),
        }
    }

    /// The same mount with its private xattrs in `user.overlay.*` (`user`
    /// true: the `userxattr` mount option, for unprivileged mounts) or in
    /// `trusted.overlay.*` (the default).
    pub fn with_xattr_namespace(self, user: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                lowers: self.inner.lowers.clone(),
                upper: self.inner.upper.clone(),
                userxattr: user,
                lock: Mutex::new(()),
            }),
            base: self.base,
        }
    }

    /// Runs `f` on the model under the mount's lock and labels its error.
    fn run<T>(&self, op: &'static str, path: &Path, f: impl FnOnce(&Model<'_>) -> Kr<T>) -> Result<T> {
        let _guard = self.inner.lock.lock();
        let model = Model {
            inner: &self.inner,
            base: &self.base,
        };
        f(&model).map_err(|k| Error::new(op, path, k))
    }
}

/// One layer of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Upper,
    Lower(usize),
}

/// A directory of the merged view: its path (free of symlinks and `..`)
/// and the layers it merges, topmost first. Every layer holds a real
/// directory at `path`.
#[derive(Debug, Clone)]
struct MDir {
    path: PathBuf,
    upper: bool,
    lowers: Vec<usize>,
    /// The upper directory is opaque (it hides everything below).
    opaque: bool,
}

impl MDir {
    fn top(&self) -> Layer {
        match (self.upper, self.lowers.first()) {
            (false, Some(&i)) => Layer::Lower(i),
            _ => Layer::Upper,
        }
    }

    fn layers(&self) -> impl Iterator<Item = Layer> + '_ {
        self.upper
            .then_some(Layer::Upper)
            .into_iter()
            .chain(self.lowers.iter().map(|&i| Layer::Lower(i)))
    }

    /// `OVL_TYPE_MERGE`: an upper with a lower below, or two lowers.
    fn is_merge(&self) -> bool {
        if self.upper {
            !self.lowers.is_empty()
        } else {
            self.lowers.len() > 1
        }
    }
}

/// An entry that exists in the merged view.
#[derive(Debug, Clone)]
struct Node {
    path: PathBuf,
    md: Metadata,
    top: Layer,
    dir: Option<MDir>,
}

impl Node {
    fn is_dir(&self) -> bool {
        self.dir.is_some()
    }
}

/// What a name in a merged directory is.
enum Lookup {
    Found(Node),
    /// Nothing visible; `whiteout` when the upper has a whiteout there
    /// (the kernel's "negative opaque dentry": creating replaces it).
    Missing {
        whiteout: bool,
    },
}

/// One component of a caller's path.
#[derive(Debug, Clone)]
enum Part {
    Up,
    Name(OsString),
}

/// A caller's path split as both `overlay-fs` backends split it.
struct Split {
    parent: Vec<Part>,
    name: Option<OsString>,
}

fn split(path: &Path) -> Kr<Split> {
    // The same normalisation as every `overlay_fs` tree, owned.
    let s = overlay_fs::path::split("overlay", path).map_err(|e| e.kind())?;
    let parent = s
        .parent
        .into_iter()
        .map(|p| match p {
            overlay_fs::path::Part::Up => Part::Up,
            overlay_fs::path::Part::Name(n) => Part::Name(n.to_os_string()),
        })
        .collect();
    Ok(Split {
        parent,
        name: s.name.map(OsStr::to_os_string),
    })
}

/// Like [`split`], but the path must name something below the root.
fn split_child(path: &Path) -> Kr<(Vec<Part>, OsString)> {
    let s = split(path)?;
    match s.name {
        Some(name) => Ok((s.parent, name)),
        None => Err(ErrorKind::InvalidInput),
    }
}

fn require_regular(ty: FileType) -> Kr<()> {
    match ty {
        FileType::Regular => Ok(()),
        FileType::Directory => Err(ErrorKind::IsADirectory),
        FileType::Symlink => Err(ErrorKind::SymlinkLoop),
        _ => Err(ErrorKind::NotARegularFile),
    }
}

/// The argument checks `setxattr(2)` and friends make before looking at
/// the file.
fn check_xattr_args(name: &OsStr, value: Option<&[u8]>) -> Kr<()> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > XATTR_NAME_MAX || b.contains(&0) {
        return Err(ErrorKind::InvalidInput);
    }
    if value.is_some_and(|v| v.len() > XATTR_SIZE_MAX) {
        return Err(ErrorKind::InvalidInput);
    }
    Ok(())
}

/// `user.*` xattrs live only on regular files and directories: the VFS
/// refuses to write them elsewhere before overlayfs sees the call.
fn user_xattr_allowed(name: &OsStr, ty: FileType) -> bool {
    !name.as_bytes().starts_with(b"user.") || matches!(ty, FileType::Regular | FileType::Directory)
}

impl Inner {
    fn fs(&self, layer: Layer) -> Kr<&dyn Fs> {
        match layer {
            Layer::Upper => self.upper(),
            Layer::Lower(i) => self.lowers.get(i).map(|f| &**f).ok_or(ErrorKind::NotFound),
        }
    }

    /// The upper tree; without one the mount is read-only.
    fn upper(&self) -> Kr<&dyn Fs> {
        self.upper.as_deref().ok_or(ErrorKind::ReadOnly)
    }

    fn writable(&self) -> Kr<()> {
        self.upper().map(|_| ())
    }

    // --- private xattrs -------------------------------------------------

    fn prefix(&self) -> &'static [u8] {
        if self.userxattr { USER_PREFIX } else { TRUSTED_PREFIX }
    }

    fn marker(&self, what: &str) -> OsString {
        let mut v = self.prefix().to_vec();
        v.extend_from_slice(what.as_bytes());
        OsString::from_vec(v)
    }

    /// `ovl_is_escaped_xattr`; note the kernel compares the trusted form
    /// without its final dot.
    fn is_escaped(&self, real: &[u8]) -> bool {
        if self.userxattr {
            real.starts_with(b"user.overlay.overlay.")
        } else {
            real.starts_with(b"trusted.overlay.overlay")
        }
    }

    /// `ovl_is_private_xattr`: overlayfs's own records, never shown.
    fn is_private(&self, real: &[u8]) -> bool {
        real.starts_with(self.prefix()) && !self.is_escaped(real)
    }

    /// The name stored in the layers for `name` as seen through the mount.
    fn real_xattr_name(&self, name: &OsStr) -> Kr<OsString> {
        let b = name.as_bytes();
        let prefix = self.prefix();
        let Some(rest) = b.strip_prefix(prefix) else {
            return Ok(name.to_os_string());
        };
        if rest.is_empty() {
            return Err(ErrorKind::InvalidInput);
        }
        let mut out = Vec::with_capacity(b.len() + ESCAPE.len());
        out.extend_from_slice(prefix);
        out.extend_from_slice(ESCAPE);
        out.extend_from_slice(rest);
        if out.len() > XATTR_NAME_MAX {
            return Err(ErrorKind::Unsupported);
        }
        Ok(OsString::from_vec(out))
    }

    /// The name shown through the mount for a name stored in a layer, or
    /// `None` for a private one.
    fn visible_xattr_name(&self, real: &OsStr) -> Option<OsString> {
        let b = real.as_bytes();
        if self.is_private(b) {
            return None;
        }
        if self.is_escaped(b) {
            let prefix = self.prefix();
            let mut out = prefix.to_vec();
            out.extend_from_slice(b.get(prefix.len() + ESCAPE.len()..).unwrap_or_default());
            return Some(OsString::from_vec(out));
        }
        Some(real.to_os_string())
    }

    fn visible_xattrs(&self, names: Vec<OsString>) -> Vec<OsString> {
        names.iter().filter_map(|n| self.visible_xattr_name(n)).collect()
    }

    /// Is the directory at `path` in `layer` opaque? Like the kernel, an
    /// unreadable marker counts as absent, and only the value `y` counts.
    fn is_opaque(&self, layer: Layer, path: &Path) -> bool {
        let Ok(fs) = self.fs(layer) else { return false };
        matches!(fs.get_xattr(path, &self.marker("opaque")), Ok(Some(v)) if v == b"y")
    }
}

/// The model seen from one root: the mount's root or a subtree's.
struct Model<'a> {
    inner: &'a Inner,
    /// The resolved path of this view's root directory.
    base: &'a Path,
}

impl std::ops::Deref for Model<'_> {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        self.inner
    }
}

impl Model<'_> {
    // --- lookup ---------------------------------------------------------

    /// The mount's root directory, where every layer merges.
    fn mount_root(&self) -> MDir {
        MDir {
            path: PathBuf::new(),
            upper: self.upper.is_some(),
            lowers: (0..self.lowers.len()).collect(),
            opaque: false,
        }
    }

    /// This view's root directory.
    fn root(&self) -> Kr<MDir> {
        if self.base.as_os_str().is_empty() {
            Ok(self.mount_root())
        } else {
            self.dir_at(self.base)
        }
    }

    fn root_node(&self, dir: MDir) -> Kr<Node> {
        let top = dir.top();
        let md = self.fs(top)?.metadata(&dir.path).k()?;
        Ok(Node {
            path: dir.path.clone(),
            md,
            top,
            dir: Some(dir),
        })
    }

    /// `ovl_lookup` of one name in a merged directory.
    fn lookup_child(&self, dir: &MDir, name: &OsStr) -> Kr<Lookup> {
        let path = dir.path.join(name);
        let mut top: Option<(Layer, Metadata)> = None;
        let mut sub = MDir {
            path: path.clone(),
            upper: false,
            lowers: Vec::new(),
            opaque: false,
        };
        let mut stop = false;
        if dir.upper {
            match self.upper()?.metadata(&path) {
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e.kind()),
                Ok(md) if md.is_whiteout() => return Ok(Lookup::Missing { whiteout: true }),
                Ok(md) if md.is_dir() => {
                    sub.upper = true;
                    sub.opaque = self.is_opaque(Layer::Upper, &path);
                    stop = sub.opaque;
                    top = Some((Layer::Upper, md));
                }
                Ok(md) => {
                    return Ok(Lookup::Found(Node {
                        path,
                        md,
                        top: Layer::Upper,
                        dir: None,
                    }));
                }
            }
        }
        if !stop {
            for &i in &dir.lowers {
                let layer = Layer::Lower(i);
                let md = match self.fs(layer)?.metadata(&path) {
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.kind()),
                    Ok(md) => md,
                };
                if md.is_whiteout() {
                    break;
                }
                if !md.is_dir() {
                    if top.is_none() {
                        return Ok(Lookup::Found(Node {
                            path,
                            md,
                            top: layer,
                            dir: None,
                        }));
                    }
                    // A non-directory below a directory ends the merge.
                    break;
                }
                sub.lowers.push(i);
                let opaque = self.is_opaque(layer, &path);
                if top.is_none() {
                    top = Some((layer, md));
                }
                if opaque {
                    break;
                }
            }
        }
        Ok(match top {
            None => Lookup::Missing { whiteout: false },
            Some((layer, md)) => Lookup::Found(Node {
                path,
                md,
                top: layer,
                dir: Some(sub),
            }),
        })
    }

    /// The merged directory at a resolved path (no symlinks, no `..`).
    fn dir_at(&self, path: &Path) -> Kr<MDir> {
        let mut cur = self.mount_root();
        for c in path.components() {
            if let Component::Normal(n) = c {
                cur = match self.lookup_child(&cur, n)? {
                    Lookup::Found(Node { dir: Some(d), .. }) => d,
                    Lookup::Found(_) => return Err(ErrorKind::NotADirectory),
                    Lookup::Missing { .. } => return Err(ErrorKind::NotFound),
                };
            }
        }
        Ok(cur)
    }

    /// The node at a resolved path, if it exists.
    fn node_at(&self, path: &Path) -> Kr<Node> {
        match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => {
                let dir = self.dir_at(parent)?;
                match self.lookup_child(&dir, name)? {
                    Lookup::Found(node) => Ok(node),
                    Lookup::Missing { .. } => Err(ErrorKind::NotFound),
                }
            }
            _ => self.root_node(self.mount_root()),
        }
    }

    /// Resolves a caller's directory components, following symlinks inside
    /// the merged root (as `openat2(RESOLVE_IN_ROOT)` on a real mount).
    fn resolve_dir(&self, parts: Vec<Part>) -> Kr<MDir> {
        let mut steps: VecDeque<Part> = parts.into();
        let mut cur = self.root()?;
        let mut links = 0;
        while let Some(step) = steps.pop_front() {
            match step {
                Part::Up => {
                    // `..` never climbs above this view's root.
                    if cur.path.as_path() == self.base {
                        continue;
                    }
                    if let Some(parent) = cur.path.parent() {
                        let parent = parent.to_path_buf();
                        cur = self.dir_at(&parent)?;
                    }
                }
                Part::Name(name) => {
                    let node = match self.lookup_child(&cur, &name)? {
                        Lookup::Found(node) => node,
                        Lookup::Missing { .. } => return Err(ErrorKind::NotFound),
                    };
                    if let Some(d) = node.dir {
                        cur = d;
                        continue;
                    }
                    if !node.md.is_symlink() {
                        return Err(ErrorKind::NotADirectory);
                    }
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(ErrorKind::SymlinkLoop);
                    }
                    let target = self.fs(node.top)?.readlink(&node.path).k()?;
                    if target.as_os_str().is_empty() {
                        return Err(ErrorKind::NotFound);
                    }
                    if target.is_absolute() {
                        cur = self.root()?;
                    }
                    for c in target.components().rev() {
                        match c {
                            Component::Normal(n) => steps.push_front(Part::Name(n.to_os_string())),
                            Component::ParentDir => steps.push_front(Part::Up),
                            _ => {}
                        }
                    }
                }
            }
        }
        Ok(cur)
    }

    /// The parent directory of a caller's path and the final name.
    fn parent(&self, path: &Path) -> Kr<(MDir, OsString)> {
        let (parts, name) = split_child(path)?;
        Ok((self.resolve_dir(parts)?, name))
    }

    /// The existing node a caller's path names (the root included).
    fn existing(&self, path: &Path) -> Kr<Node> {
        let s = split(path)?;
        let dir = self.resolve_dir(s.parent)?;
        match s.name {
            None => self.root_node(dir),
            Some(name) => match self.lookup_child(&dir, &name)? {
                Lookup::Found(node) => Ok(node),
                Lookup::Missing { .. } => Err(ErrorKind::NotFound),
            },
        }
    }

    /// The existing node below the root a caller's path names, with its
    /// parent.
    fn existing_child(&self, path: &Path) -> Kr<(MDir, Node)> {
        let (dir, name) = self.parent(path)?;
        match self.lookup_child(&dir, &name)? {
            Lookup::Found(node) => Ok((dir, node)),
            Lookup::Missing { .. } => Err(ErrorKind::NotFound),
        }
    }

    // --- directories ----------------------------------------------------

    /// Does the kernel hide whiteouts when listing `dir` (its inode flag
    /// `OVL_WHITEOUTS`)? Yes for a directory in two layers or more, or one
    /// that records a copy-up origin.
    fn hides_whiteouts(&self, dir: &MDir) -> bool {
        dir.layers().nth(1).is_some() || self.has_origin(dir)
    }

    fn has_origin(&self, dir: &MDir) -> bool {
        let Ok(fs) = self.fs(dir.top()) else { return false };
        matches!(fs.get_xattr(&dir.path, &self.marker("origin")), Ok(Some(_)))
    }

    /// `ovl_pure_upper` for a directory: no lower below it and nothing
    /// that makes the kernel look for whiteouts in it.
    fn pure_upper(&self, dir: &MDir) -> bool {
        dir.upper && dir.lowers.is_empty() && !self.has_origin(dir)
    }

    /// The entries of `dir`; with `merge` the union of its layers minus
    /// whiteouts (`ovl_dir_read_merged`), else its top layer as it is.
    fn entries(&self, dir: &MDir, merge: bool) -> Kr<Vec<DirEntry>> {
        if !merge {
            return self.fs(dir.top())?.read_dir(&dir.path).k();
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for layer in dir.layers() {
            let fs = self.fs(layer)?;
            for e in fs.read_dir(&dir.path).k()? {
                if !seen.insert(e.name.clone()) {
                    continue;
                }
                if e.file_type == FileType::CharDevice
                    && fs.metadata(&dir.path.join(&e.name)).is_ok_and(|m| m.is_whiteout())
                {
                    continue;
                }
                out.push(e);
            }
        }
        Ok(out)
    }

    fn list(&self, dir: &MDir) -> Kr<Vec<DirEntry>> {
        self.entries(dir, self.hides_whiteouts(dir))
    }

    fn is_empty(&self, dir: &MDir) -> Kr<bool> {
        Ok(self.entries(dir, true)?.is_empty())
    }

    // --- copy-up --------------------------------------------------------

    /// Copies `dir` and its missing parents up; returns it as merged after.
    fn copy_up_dir(&self, dir: &MDir) -> Kr<MDir> {
        if dir.upper {
            return Ok(dir.clone());
        }
        self.writable()?;
        let parent = dir.path.parent().ok_or(ErrorKind::ReadOnly)?;
        let parent = self.dir_at(parent)?;
        self.copy_up_dir(&parent)?;
        let src = dir.top();
        let md = self.fs(src)?.metadata(&dir.path).k()?;
        self.copy_node(src, &dir.path, &md, true)?;
        Ok(MDir {
            upper: true,
            opaque: false,
            ..dir.clone()
        })
    }

    /// Copies `node` (and its missing parents) up. `data` false copies a
    /// regular file empty, for a caller about to truncate it.
    fn copy_up(&self, node: &Node, data: bool) -> Kr<Node> {
        if node.top == Layer::Upper {
            return Ok(node.clone());
        }
        let dir = match &node.dir {
            Some(d) => Some(self.copy_up_dir(d)?),
            None => {
                self.writable()?;
                let parent = node.path.parent().ok_or(ErrorKind::InvalidInput)?;
                self.copy_up_dir(&self.dir_at(parent)?)?;
                self.copy_node(node.top, &node.path, &node.md, data)?;
                None
            }
        };
        Ok(Node {
            path: node.path.clone(),
            md: self.upper()?.metadata(&node.path).k()?,
            top: Layer::Upper,
            dir,
        })
    }

    /// Creates the upper copy of the entry at `path` in `src`, whose upper
    /// parent exists; a failure leaves no partial copy behind.
    fn copy_node(&self, src: Layer, path: &Path, md: &Metadata, data: bool) -> Kr<()> {
        let from = self.fs(src)?;
        let up = self.upper()?;
        // The kernel puts the upper parent's times back after linking the
        // copy in (`ovl_set_timestamps(upperdir, &pstat)`): a copy-up does
        // not count as a change of the directory.
        let parent = path.parent().unwrap_or(Path::new(""));
        let pstat = up.metadata(parent).ok();
        match md.file_type {
            FileType::Regular => {
                let mut out = up.create_new(path, md.mode & 0o777).k()?;
                if data {
                    let copied = from
                        .open_file(path)
                        .k()
                        .and_then(|mut input| io::copy(&mut input, &mut out).map(|_| ()).map_err(|e| io_kind(&e)));
                    if let Err(k) = copied {
                        drop(out);
                        let _ = up.remove_file(path);
                        return Err(k);
                    }
                }
            }
            FileType::Directory => up.mkdir(path, 0o700).k()?,
            FileType::Symlink => up.symlink(&from.readlink(path).k()?, path).k()?,
            FileType::Fifo => up.mknod(path, NodeKind::Fifo, 0).k()?,
            FileType::CharDevice => up.mknod(path, NodeKind::CharDevice(md.rdev), 0).k()?,
            FileType::BlockDevice => up.mknod(path, NodeKind::BlockDevice(md.rdev), 0).k()?,
            // No layer tree can create a socket.
            FileType::Socket => return Err(ErrorKind::Unsupported),
        }
        let meta = self.copy_meta(from, up, path, md);
        if meta.is_err() {
            let _ = if md.is_dir() {
                up.remove_dir(path)
            } else {
                up.remove_file(path)
            };
        }
        if let Some(p) = pstat {
            let _ = up.set_times(parent, Some(p.atime), Some(p.mtime));
        }
        meta
    }

    /// `ovl_copy_xattr` then `ovl_set_attr`: non-private xattrs (those the
    /// upper does not support are skipped), owner, mode, times.
    fn copy_meta(&self, from: &dyn Fs, up: &dyn Fs, path: &Path, md: &Metadata) -> Kr<()> {
        for name in from.list_xattrs(path).k()? {
            if self.is_private(name.as_bytes()) {
                continue;
            }
            let Some(value) = from.get_xattr(path, &name).k()? else {
                continue;
            };
            match up.set_xattr(path, &name, &value) {
                Err(e) if e.kind() != ErrorKind::Unsupported => return Err(e.kind()),
                _ => {}
            }
        }
        // chown before chmod: the model's chown clears setuid as chown(2)
        // does, the kernel's copy-up keeps the mode exactly.
        up.set_owner(path, md.uid, md.gid).k()?;
        if !md.is_symlink() {
            up.set_mode(path, md.mode).k()?;
        }
        up.set_times(path, Some(md.atime), Some(md.mtime)).k()
    }

    // --- whiteouts and removal -------------------------------------------

    /// Makes a whiteout at `path` in the upper. `by_mounter`: owned 0:0,
    /// as the kernel's shared whiteout made in the work directory; else
    /// owned as a new node in its directory (a whiteout left by rename).
    fn make_whiteout(&self, path: &Path, by_mounter: bool) -> Kr<()> {
        let up = self.upper()?;
        up.mknod(path, NodeKind::WHITEOUT, 0).k()?;
        if by_mounter {
            let md = up.metadata(path).k()?;
            if md.uid != 0 || md.gid != 0 {
                up.set_owner(path, 0, 0).k()?;
            }
        }
        Ok(())
    }

    /// `ovl_lower_positive`: would removing `node` from `parent` uncover
    /// something in a lower layer (so a whiteout is needed)?
    fn lower_positive(&self, parent: &MDir, node: &Node) -> bool {
        if node.top != Layer::Upper {
            return true;
        }
        for &i in &parent.lowers {
            let Some(fs) = self.lowers.get(i) else { continue };
            match fs.metadata(&node.path) {
                Ok(md) => return !md.is_whiteout(),
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NameTooLong) => continue,
                Err(_) => return true,
            }
        }
        false
    }

    /// `ovl_do_remove` of an existing node (unlink or rmdir).
    fn remove_node(&self, parent: &MDir, node: &Node, is_dir: bool) -> Kr<()> {
        let lower_positive = self.lower_positive(parent, node);
        let pure_upper = node.dir.as_ref().is_some_and(|d| self.pure_upper(d));
        if is_dir
            && (lower_positive || !pure_upper)
            && let Some(d) = &node.dir
            && !self.is_empty(d)?
        {
            return Err(ErrorKind::DirectoryNotEmpty);
        }
        self.copy_up_dir(parent)?;
        let up = self.upper()?;
        let path = &node.path;
        if node.top == Layer::Upper {
            match (is_dir, pure_upper) {
                (false, _) => up.remove_file(path).k()?,
                (true, true) => up.remove_dir(path).k()?,
                // Only whiteouts are left in it: the kernel swaps in a
                // clean directory and drops the old one.
                (true, false) => up.remove_all(path).k()?,
            }
        }
        if lower_positive {
            self.make_whiteout(path, true)?;
        }
        Ok(())
    }

    /// Removes `name` in `parent` and everything below it, the way
    /// `HostFs::remove_all` does on a mount: unlink, else list the
    /// directory, remove its entries, rmdir; vanished names are fine.
    fn remove_tree(&self, parent: &MDir, name: &OsStr) -> Kr<()> {
        let node = match self.lookup_child(parent, name)? {
            Lookup::Found(node) => node,
            Lookup::Missing { .. } => return Ok(()),
        };
        let Some(dir) = node.dir.clone() else {
            return self.remove_node(parent, &node, false);
        };
        for e in self.list(&dir)? {
            let dir = self.dir_at(&node.path)?;
            if e.file_type == FileType::Directory {
                self.remove_tree(&dir, &e.name)?;
                continue;
            }
            match self.lookup_child(&dir, &e.name)? {
                Lookup::Missing { .. } => {}
                Lookup::Found(child) if child.is_dir() => return Err(ErrorKind::IsADirectory),
                Lookup::Found(child) => self.remove_node(&dir, &child, false)?,
            }
        }
        let parent = self.dir_at(&parent.path)?;
        match self.lookup_child(&parent, name)? {
            Lookup::Found(node) if node.is_dir() => self.remove_node(&parent, &node, true),
            Lookup::Found(_) => Err(ErrorKind::NotADirectory),
            Lookup::Missing { .. } => Ok(()),
        }
    }

    // --- creation ---------------------------------------------------------

    /// Creates `name` in `parent` with `make` on the upper (the parent is
    /// copied up first), replacing an upper whiteout; `opaque_if_whiteout`
    /// marks a directory made over a whiteout opaque.
    fn create_in<T>(
        &self,
        parent: &MDir,
        name: &OsStr,
        whiteout: bool,
        make: impl FnOnce(&dyn Fs, &Path) -> Result<T>,
    ) -> Kr<(PathBuf, T)> {
        let parent = self.copy_up_dir(parent)?;
        let up = self.upper()?;
        let path = parent.path.join(name);
        if whiteout {
            up.remove_file(&path).k()?;
        }
        match make(up, &path) {
            Ok(v) => Ok((path, v)),
            Err(e) => {
                if whiteout {
                    let _ = self.make_whiteout(&path, true);
                }
                Err(e.kind())
            }
        }
    }

    /// Checks for a new name in `parent`: the name must be free (else
    /// `AlreadyExists`, even on a read-only mount), then writable.
    fn new_name(&self, parent: &MDir, name: &OsStr) -> Kr<bool> {
        match self.lookup_child(parent, name)? {
            Lookup::Found(_) => Err(ErrorKind::AlreadyExists),
            Lookup::Missing { whiteout } => {
                self.writable()?;
                Ok(whiteout)
            }
        }
    }

    fn mkdir(&self, path: &Path, mode: u32) -> Kr<()> {
        let (parent, name) = self.parent(path)?;
        let whiteout = self.new_name(&parent, &name)?;
        let (path, ()) = self.create_in(&parent, &name, whiteout, |up, p| up.mkdir(p, mode))?;
        if whiteout {
            self.upper()?.set_xattr(&path, &self.marker("opaque"), b"y").k()?;
        }
        Ok(())
    }

    fn symlink(&self, target: &Path, path: &Path) -> Kr<()> {
        let (parent, name) = self.parent(path)?;
        let t = target.as_os_str().as_bytes();
        if t.is_empty() {
            return Err(ErrorKind::NotFound);
        }
        if t.contains(&0) {
            return Err(ErrorKind::InvalidInput);
        }
        if t.len() > PATH_MAX {
            return Err(ErrorKind::NameTooLong);
        }
        let whiteout = self.new_name(&parent, &name)?;
        self.create_in(&parent, &name, whiteout, |up, p| up.symlink(target, p))
            .map(|_| ())
    }

    fn mknod(&self, path: &Path, kind: NodeKind, mode: u32) -> Kr<()> {
        let (parent, name) = self.parent(path)?;
        let whiteout = self.new_name(&parent, &name)?;
        if kind == NodeKind::WHITEOUT {
            // ovl_mknod: "Don't allow creation of whiteout on overlay".
            return Err(ErrorKind::PermissionDenied);
        }
        self.create_in(&parent, &name, whiteout, |up, p| up.mknod(p, kind, mode))
            .map(|_| ())
    }

    fn hardlink(&self, existing: &Path, path: &Path) -> Kr<()> {
        let (oparent, oname) = self.parent(existing)?;
        let (nparent, nname) = self.parent(path)?;
        let old = match self.lookup_child(&oparent, &oname)? {
            Lookup::Found(node) => node,
            Lookup::Missing { .. } => return Err(ErrorKind::NotFound),
        };
        self.new_name(&nparent, &nname)?;
        if old.is_dir() {
            return Err(ErrorKind::PermissionDenied);
        }
        let old = self.copy_up(&old, true)?;
        let nparent = self.dir_at(&nparent.path)?;
        let whiteout = self.new_name(&nparent, &nname)?;
        self.create_in(&nparent, &nname, whiteout, |up, p| up.hardlink(&old.path, p))
            .map(|_| ())
    }

    /// `open(O_CREAT)` without and with `O_EXCL`.
    fn create(&self, path: &Path, mode: u32, exclusive: bool) -> Kr<(PathBuf, Box<dyn File>)> {
        let (parent, name) = self.parent(path)?;
        match self.lookup_child(&parent, &name)? {
            Lookup::Found(_) if exclusive => Err(ErrorKind::AlreadyExists),
            Lookup::Found(node) => {
                require_regular(node.md.file_type)?;
                self.writable()?;
                let node = self.copy_up(&node, false)?;
                let file = self.upper()?.create_file(&node.path, mode).k()?;
                Ok((node.path, file))
            }
            Lookup::Missing { whiteout } => {
                self.writable()?;
                self.create_in(&parent, &name, whiteout, |up, p| up.create_new(p, mode))
            }
        }
    }

    // --- attributes -------------------------------------------------------

    /// Copies `node` up for a change of its attributes and returns its
    /// upper path.
    fn for_change(&self, path: &Path, check: impl FnOnce(&Node) -> Kr<()>) -> Kr<PathBuf> {
        let node = self.existing(path)?;
        check(&node)?;
        self.writable()?;
        Ok(self.copy_up(&node, true)?.path)
    }

    /// The node an xattr call on `path` acts on, with the checks in the
    /// order the tests pin: the parent resolves, then the name and value
    /// are checked, then the last component is looked up.
    fn xattr_node(&self, path: &Path, name: &OsStr, value: Option<&[u8]>) -> Kr<Node> {
        let s = split(path)?;
        let dir = self.resolve_dir(s.parent)?;
        check_xattr_args(name, value)?;
        match s.name {
            None => self.root_node(dir),
            Some(n) => match self.lookup_child(&dir, &n)? {
                Lookup::Found(node) => Ok(node),
                Lookup::Missing { .. } => Err(ErrorKind::NotFound),
            },
        }
    }

    fn set_xattr(&self, path: &Path, name: &OsStr, value: &[u8]) -> Kr<()> {
        let node = self.xattr_node(path, name, Some(value))?;
        self.writable()?;
        if !user_xattr_allowed(name, node.md.file_type) {
            return Err(ErrorKind::PermissionDenied);
        }
        let real = self.real_xattr_name(name)?;
        let node = self.copy_up(&node, true)?;
        self.upper()?.set_xattr(&node.path, &real, value).k()
    }

    fn remove_xattr(&self, path: &Path, name: &OsStr) -> Kr<()> {
        let node = self.xattr_node(path, name, None)?;
        self.writable()?;
        if !user_xattr_allowed(name, node.md.file_type) {
            return Err(ErrorKind::PermissionDenied);
        }
        let real = self.real_xattr_name(name)?;
        if node.top != Layer::Upper && self.fs(node.top)?.get_xattr(&node.path, &real).k()?.is_none() {
            return Err(ErrorKind::NoSuchAttribute);
        }
        let node = self.copy_up(&node, true)?;
        self.upper()?.remove_xattr(&node.path, &real).k()
    }

    fn get_xattr(&self, path: &Path, name: &OsStr) -> Kr<Option<Vec<u8>>> {
        let node = self.xattr_node(path, name, None)?;
        self.node_xattr(&node, name)
    }

    fn node_xattr(&self, node: &Node, name: &OsStr) -> Kr<Option<Vec<u8>>> {
        if !user_xattr_allowed(name, node.md.file_type) {
            return Ok(None);
        }
        let real = self.real_xattr_name(name)?;
        self.fs(node.top)?.get_xattr(&node.path, &real).k()
    }

    fn node_xattrs(&self, node: &Node) -> Kr<Vec<(OsString, Vec<u8>)>> {
        let fs = self.fs(node.top)?;
        let mut out = Vec::new();
        for real in fs.list_xattrs(&node.path).k()? {
            let Some(name) = self.visible_xattr_name(&real) else {
                continue;
            };
            if let Some(value) = fs.get_xattr(&node.path, &real).k()? {
                out.push((name, value));
            }
        }
        Ok(out)
    }

    // --- rename -----------------------------------------------------------

    fn rename(&self, from: &Path, to: &Path) -> Kr<()> {
        let (fparent, fname) = self.parent(from)?;
        let (tparent, tname) = self.parent(to)?;
        self.writable()?;
        let old = match self.lookup_child(&fparent, &fname)? {
            Lookup::Found(node) => node,
            Lookup::Missing { .. } => return Err(ErrorKind::NotFound),
        };
        let new = self.lookup_child(&tparent, &tname)?;
        let tpath = tparent.path.join(&tname);
        // The VFS's checks (do_renameat2, vfs_rename), in its order.
        if tparent.path.starts_with(&old.path) {
            return Err(ErrorKind::InvalidInput);
        }
        if let Lookup::Found(n) = &new {
            if fparent.path.starts_with(&n.path) {
                return Err(ErrorKind::DirectoryNotEmpty);
            }
            let same_upper_inode =
                old.top == Layer::Upper && n.top == Layer::Upper && old.md.ino == n.md.ino && old.md.dev == n.md.dev;
            if old.path == n.path || same_upper_inode {
                return Ok(());
            }
            match (old.is_dir(), n.is_dir()) {
                (true, false) => return Err(ErrorKind::NotADirectory),
                (false, true) => return Err(ErrorKind::IsADirectory),
                _ => {}
            }
        }
        // ovl_rename: without redirect_dir only a pure upper directory moves.
        if let Some(d) = &old.dir
            && !(d.upper && d.lowers.is_empty())
        {
            return Err(ErrorKind::CrossDevice);
        }
        let mut clear_target = false;
        if let Lookup::Found(n) = &new
            && let Some(d) = &n.dir
            && !self.pure_upper(d)
        {
            if !self.is_empty(d)? {
                return Err(ErrorKind::DirectoryNotEmpty);
            }
            clear_target = d.upper;
        }
        let lower_positive = self.lower_positive(&fparent, &old);
        let target_whiteout = matches!(new, Lookup::Missing { whiteout: true });
        let old = self.copy_up(&old, true)?;
        let tparent = self.copy_up_dir(&self.dir_at(&tparent.path)?)?;
        let up = self.upper()?;
        if let Some(d) = &old.dir
            && !d.opaque
            && tparent.is_merge()
        {
            up.set_xattr(&old.path, &self.marker("opaque"), b"y").k()?;
        }
        if clear_target {
            // The kernel first swaps in a clean opaque copy of the target
            // (ovl_clear_empty); the rename then replaces it.
            up.remove_all(&tpath).k()?;
        }
        if lower_positive && target_whiteout {
            // RENAME_EXCHANGE: the target's whiteout moves to the old name.
            let wmd = up.metadata(&tpath).k()?;
            up.remove_file(&tpath).k()?;
            up.rename(&old.path, &tpath).k()?;
            up.mknod(&old.path, NodeKind::WHITEOUT, 0).k()?;
            let md = up.metadata(&old.path).k()?;
            if (md.uid, md.gid) != (wmd.uid, wmd.gid) {
                up.set_owner(&old.path, wmd.uid, wmd.gid).k()?;
            }
        } else if lower_positive {
            // RENAME_WHITEOUT.
            up.rename(&old.path, &tpath).k()?;
            self.make_whiteout(&old.path, false)?;
        } else {
            if target_whiteout && old.is_dir() {
                up.remove_file(&tpath).k()?;
            }
            up.rename(&old.path, &tpath).k()?;
        }
        Ok(())
    }
}

impl Fs for OverlayFs {
    fn metadata(&self, path: &Path) -> Result<Metadata> {
        self.run("lstat", path, |m| Ok(m.existing(path)?.md))
    }

    fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>> {
        self.run("readdir", path, |m| match m.existing(path)?.dir {
            Some(d) => m.list(&d),
            None => Err(ErrorKind::NotADirectory),
        })
    }

    fn open_dir(&self, path: &Path) -> Result<Box<dyn Dir>> {
        let dir = self.run("opendir", path, |m| {
            m.existing(path)?.dir.ok_or(ErrorKind::NotADirectory)
        })?;
        Ok(Box::new(MergedDir {
            fs: self.clone(),
            path: dir.path,
            shown: path.to_path_buf(),
        }))
    }

    fn subtree(&self, path: &Path) -> Result<Arc<dyn Fs>> {
        let dir = self.run("subtree", path, |m| {
            m.existing(path)?.dir.ok_or(ErrorKind::NotADirectory)
        })?;
        Ok(Arc::new(OverlayFs {
            inner: self.inner.clone(),
            base: dir.path,
        }))
    }

    fn open_file(&self, path: &Path) -> Result<Box<dyn File>> {
        let (node, file) = self.run("open", path, |m| {
            let (_, node) = m.existing_child(path)?;
            require_regular(node.md.file_type)?;
            let file = m.fs(node.top)?.open_file(&node.path).k()?;
            Ok((node, file))
        })?;
        Ok(self.wrap(file, node.path, node.top == Layer::Upper))
    }

    fn open_file_rw(&self, path: &Path) -> Result<Box<dyn File>> {
        let (node, file) = self.run("open", path, |m| {
            let (_, node) = m.existing_child(path)?;
            require_regular(node.md.file_type)?;
            m.writable()?;
            let node = m.copy_up(&node, true)?;
            let file = m.upper()?.open_file_rw(&node.path).k()?;
            Ok((node, file))
        })?;
        Ok(self.wrap(file, node.path, true))
    }

    fn create_file(&self, path: &Path, mode: u32) -> Result<Box<dyn File>> {
        let (p, file) = self.run("create", path, |m| m.create(path, mode, false))?;
        Ok(self.wrap(file, p, true))
    }

    fn create_new(&self, path: &Path, mode: u32) -> Result<Box<dyn File>> {
        let (p, file) = self.run("create", path, |m| m.create(path, mode, true))?;
        Ok(self.wrap(file, p, true))
    }

    fn mkdir(&self, path: &Path, mode: u32) -> Result<()> {
        self.run("mkdir", path, |m| m.mkdir(path, mode))
    }

    fn symlink(&self, target: &Path, path: &Path) -> Result<()> {
        self.run("symlink", path, |m| m.symlink(target, path))
    }

    fn readlink(&self, path: &Path) -> Result<PathBuf> {
        self.run("readlink", path, |m| {
            let (_, node) = m.existing_child(path)?;
            if !node.md.is_symlink() {
                return Err(ErrorKind::InvalidInput);
            }
            m.fs(node.top)?.readlink(&node.path).k()
        })
    }

    fn hardlink(&self, existing: &Path, path: &Path) -> Result<()> {
        self.run("link", path, |m| m.hardlink(existing, path))
    }

    fn mknod(&self, path: &Path, kind: NodeKind, mode: u32) -> Result<()> {
        self.run("mknod", path, |m| m.mknod(path, kind, mode))
    }

    fn get_xattr(&self, path: &Path, name: &OsStr) -> Result<Option<Vec<u8>>> {
        self.run("getxattr", path, |m| m.get_xattr(path, name))
    }

    fn set_xattr(&self, path: &Path, name: &OsStr, value: &[u8]) -> Result<()> {
        self.run("setxattr", path, |m| m.set_xattr(path, name, value))
    }

    fn list_xattrs(&self, path: &Path) -> Result<Vec<OsString>> {
        self.run("listxattr", path, |m| {
            let node = m.existing(path)?;
            Ok(m.visible_xattrs(m.fs(node.top)?.list_xattrs(&node.path).k()?))
        })
    }

    fn remove_xattr(&self, path: &Path, name: &OsStr) -> Result<()> {
        self.run("removexattr", path, |m| m.remove_xattr(path, name))
    }

    fn set_mode(&self, path: &Path, mode: u32) -> Result<()> {
        self.run("chmod", path, |m| {
            let p = m.for_change(path, |n| {
                if n.md.is_symlink() {
                    Err(ErrorKind::Unsupported)
                } else {
                    Ok(())
                }
            })?;
            m.upper()?.set_mode(&p, mode).k()
        })
    }

    fn set_owner(&self, path: &Path, uid: u32, gid: u32) -> Result<()> {
        self.run("lchown", path, |m| {
            if uid == u32::MAX || gid == u32::MAX {
                return Err(ErrorKind::InvalidInput);
            }
            let p = m.for_change(path, |_| Ok(()))?;
            m.upper()?.set_owner(&p, uid, gid).k()
        })
    }

    fn set_times(&self, path: &Path, atime: Option<Timestamp>, mtime: Option<Timestamp>) -> Result<()> {
        self.run("utimensat", path, |m| {
            let p = m.for_change(path, |_| Ok(()))?;
            m.upper()?.set_times(&p, atime, mtime).k()
        })
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        self.run("unlink", path, |m| {
            let (parent, name) = m.parent(path)?;
            m.writable()?;
            match m.lookup_child(&parent, &name)? {
                Lookup::Missing { .. } => Err(ErrorKind::NotFound),
                Lookup::Found(node) if node.is_dir() => Err(ErrorKind::IsADirectory),
                Lookup::Found(node) => m.remove_node(&parent, &node, false),
            }
        })
    }

    fn remove_dir(&self, path: &Path) -> Result<()> {
        self.run("rmdir", path, |m| {
            let (parent, name) = m.parent(path)?;
            m.writable()?;
            match m.lookup_child(&parent, &name)? {
                Lookup::Missing { .. } => Err(ErrorKind::NotFound),
                Lookup::Found(node) if !node.is_dir() => Err(ErrorKind::NotADirectory),
                Lookup::Found(node) => m.remove_node(&parent, &node, true),
            }
        })
    }

    fn remove_all(&self, path: &Path) -> Result<()> {
        self.run("remove_all", path, |m| {
            let (parent, name) = match m.parent(path) {
                Ok(p) => p,
                Err(ErrorKind::NotFound) => return Ok(()),
                Err(k) => return Err(k),
            };
            m.writable()?;
            m.remove_tree(&parent, &name)
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.run("rename", from, |m| m.rename(from, to))
    }
}

impl OverlayFs {
    fn wrap(&self, file: Box<dyn File>, path: PathBuf, upper: bool) -> Box<dyn File> {
        Box::new(MergedFile {
            fs: self.clone(),
            file,
            path,
            upper,
            copied_up: AtomicBool::new(false),
        })
    }
}

/// An open regular file of the merged view: the real file of its layer.
///
/// A file opened for reading from a lower layer is copied up when its
/// metadata is changed through the handle (`fchmod` and friends), as the
/// kernel does; reads keep coming from the lower file, whose data is the
/// same.
struct MergedFile {
    fs: OverlayFs,
    file: Box<dyn File>,
    /// The file's path in the merged view when it was opened.
    path: PathBuf,
    /// The handle is on the upper file.
    upper: bool,
    /// A lower handle whose file has been copied up since.
    copied_up: AtomicBool,
}

impl MergedFile {
    /// Runs `f` on the upper copy of the file, copying it up first.
    fn on_upper(&self, op: &'static str, f: impl FnOnce(&dyn Fs, &Path) -> Result<()>) -> Result<()> {
        self.fs.run(op, &self.path, |m| {
            let node = m.node_at(&self.path)?;
            m.writable()?;
            let node = m.copy_up(&node, true)?;
            self.copied_up.store(true, Ordering::Relaxed);
            f(m.upper()?, &node.path).k()
        })
    }

    fn current_upper(&self) -> bool {
        self.upper || self.copied_up.load(Ordering::Relaxed)
    }
}

impl Read for MergedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Write for MergedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for MergedFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

impl File for MergedFile {
    fn metadata(&self) -> Result<Metadata> {
        if !self.upper && self.copied_up.load(Ordering::Relaxed) {
            return self
                .fs
                .run("fstat", &self.path, |m| m.upper()?.metadata(&self.path).k());
        }
        self.file.metadata()
    }

    fn set_len(&mut self, len: u64) -> Result<()> {
        self.file.set_len(len)
    }

    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.file.as_fd()
    }

    fn set_owner(&self, uid: u32, gid: u32) -> Result<()> {
        if uid == u32::MAX || gid == u32::MAX {
            return Err(Error::new("fchown", &self.path, ErrorKind::InvalidInput));
        }
        if self.upper {
            return self.file.set_owner(uid, gid);
        }
        self.on_upper("fchown", |up, p| up.set_owner(p, uid, gid))
    }

    fn set_mode(&self, mode: u32) -> Result<()> {
        if self.upper {
            return self.file.set_mode(mode);
        }
        self.on_upper("fchmod", |up, p| up.set_mode(p, mode))
    }

    fn set_times(&self, atime: Option<Timestamp>, mtime: Option<Timestamp>) -> Result<()> {
        if self.upper {
            return self.file.set_times(atime, mtime);
        }
        self.on_upper("futimens", |up, p| up.set_times(p, atime, mtime))
    }

    fn set_xattr(&self, name: &OsStr, value: &[u8]) -> Result<()> {
        const OP: &str = "fsetxattr";
        let real = check_xattr_args(name, Some(value))
            .and_then(|()| self.fs.inner.real_xattr_name(name))
            .map_err(|k| Error::new(OP, &self.path, k))?;
        if self.upper {
            return self.file.set_xattr(&real, value);
        }
        self.on_upper(OP, |up, p| up.set_xattr(p, &real, value))
    }

    fn xattrs(&self) -> Result<Vec<(OsString, Vec<u8>)>> {
        if self.current_upper() && !self.upper {
            return self.fs.run("flistxattr", &self.path, |m| {
                let node = m.node_at(&self.path)?;
                m.node_xattrs(&node)
            });
        }
        let inner = &self.fs.inner;
        Ok(self
            .file
            .xattrs()?
            .into_iter()
            .filter_map(|(n, v)| inner.visible_xattr_name(&n).map(|n| (n, v)))
            .collect())
    }
}

/// An open directory of the merged view, naming it by its path.
struct MergedDir {
    fs: OverlayFs,
    /// The resolved path (no symlinks, no `..`).
    path: PathBuf,
    /// The path as the caller gave it, for errors.
    shown: PathBuf,
}

impl MergedDir {
    fn child<T>(&self, op: &'static str, name: &OsStr, f: impl FnOnce(&Model<'_>, Node) -> Kr<T>) -> Result<T> {
        let shown = self.shown.join(name);
        self.fs.run(op, &shown, |m| {
            let b = name.as_bytes();
            if b.is_empty() || b.contains(&b'/') || b == b"." || b == b".." {
                return Err(ErrorKind::NotFound);
            }
            let dir = m.dir_at(&self.path)?;
            match m.lookup_child(&dir, name)? {
                Lookup::Found(node) => f(m, node),
                Lookup::Missing { .. } => Err(ErrorKind::NotFound),
            }
        })
    }
}

impl Dir for MergedDir {
    fn entries(&mut self) -> Result<Vec<DirEntry>> {
        self.fs.run("readdir", &self.shown, |m| m.list(&m.dir_at(&self.path)?))
    }

    fn metadata(&self, name: &OsStr) -> Result<Metadata> {
        self.child("lstat", name, |_, node| Ok(node.md))
    }

    fn open_dir(&self, name: &OsStr) -> Result<Box<dyn Dir>> {
        let dir = self.child("opendir", name, |_, node| node.dir.ok_or(ErrorKind::NotADirectory))?;
        Ok(Box::new(MergedDir {
            fs: self.fs.clone(),
            path: dir.path,
            shown: self.shown.join(name),
        }))
    }

    fn open_file(&self, name: &OsStr) -> Result<(Box<dyn File>, Metadata)> {
        let (node, file) = self.child("open", name, |m, node| {
            require_regular(node.md.file_type)?;
            let file = m.fs(node.top)?.open_file(&node.path).k()?;
            Ok((node, file))
        })?;
        let md = node.md.clone();
        Ok((self.fs.wrap(file, node.path, node.top == Layer::Upper), md))
    }

    fn readlink(&self, name: &OsStr) -> Result<PathBuf> {
        self.child("readlink", name, |m, node| {
            if !node.md.is_symlink() {
                return Err(ErrorKind::InvalidInput);
            }
            m.fs(node.top)?.readlink(&node.path).k()
        })
    }

    fn xattrs(&self, name: &OsStr) -> Result<Vec<(OsString, Vec<u8>)>> {
        self.child("listxattr", name, |m, node| m.node_xattrs(&node))
    }

    fn own_xattrs(&self) -> Result<Vec<(OsString, Vec<u8>)>> {
        self.fs.run("listxattr", &self.shown, |m| {
            let node = m.node_at(&self.path)?;
            m.node_xattrs(&node)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips() {
        let fs = OverlayFs::new(Vec::new(), None);
        let m = &fs.inner;
        let real = m
            .real_xattr_name(OsStr::new("trusted.overlay.opaque"))
            .unwrap_or_default();
        assert_eq!(real, "trusted.overlay.overlay.opaque");
        assert_eq!(
            m.visible_xattr_name(&real).unwrap_or_default(),
            "trusted.overlay.opaque"
        );
        assert_eq!(m.visible_xattr_name(OsStr::new("trusted.overlay.origin")), None);
        assert_eq!(m.real_xattr_name(OsStr::new("user.x")).unwrap_or_default(), "user.x");
        assert_eq!(
            m.real_xattr_name(OsStr::new("trusted.overlay.")),
            Err(ErrorKind::InvalidInput)
        );
    }
}
