//! What an `lstat` says about a node, in a form both backends can produce.

use std::ffi::OsString;

/// The type of a filesystem node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileType {
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// A symbolic link (never followed by `metadata`).
    Symlink,
    /// A character device; `0:0` is an overlay whiteout.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// A unix socket (only the host backend can report one).
    Socket,
}

impl FileType {
    /// The `S_IFMT` bits of this type.
    pub fn to_mode_bits(self) -> u32 {
        match self {
            Self::Regular => 0o100000,
            Self::Directory => 0o040000,
            Self::Symlink => 0o120000,
            Self::CharDevice => 0o020000,
            Self::BlockDevice => 0o060000,
            Self::Fifo => 0o010000,
            Self::Socket => 0o140000,
        }
    }

    /// The type named by the `S_IFMT` bits of `st_mode`, if any.
    pub fn from_mode_bits(mode: u32) -> Option<Self> {
        Some(match mode & 0o170000 {
            0o100000 => Self::Regular,
            0o040000 => Self::Directory,
            0o120000 => Self::Symlink,
            0o020000 => Self::CharDevice,
            0o060000 => Self::BlockDevice,
            0o010000 => Self::Fifo,
            0o140000 => Self::Socket,
            _ => return None,
        })
    }
}

/// The kind of special node [`Fs::mknod`](crate::Fs::mknod) makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// A named pipe.
    Fifo,
    /// A character device with the given device number (see [`makedev`]).
    CharDevice(u64),
    /// A block device with the given device number (see [`makedev`]).
    BlockDevice(u64),
}

impl NodeKind {
    /// The overlayfs whiteout: a character device with device number 0:0.
    pub const WHITEOUT: NodeKind = NodeKind::CharDevice(0);

    /// The file type this node will have.
    pub fn file_type(self) -> FileType {
        match self {
            Self::Fifo => FileType::Fifo,
            Self::CharDevice(_) => FileType::CharDevice,
            Self::BlockDevice(_) => FileType::BlockDevice,
        }
    }

    /// The device number (0 for a fifo).
    pub fn rdev(self) -> u64 {
        match self {
            Self::Fifo => 0,
            Self::CharDevice(d) | Self::BlockDevice(d) => d,
        }
    }
}

/// Linux's encoding of a device number from its major and minor parts.
pub fn makedev(major: u32, minor: u32) -> u64 {
    rustix::fs::makedev(major, minor)
}

/// The major part of a device number.
pub fn major(dev: u64) -> u32 {
    rustix::fs::major(dev)
}

/// The minor part of a device number.
pub fn minor(dev: u64) -> u32 {
    rustix::fs::minor(dev)
}

/// A point in time with nanoseconds, as the kernel stores file times.
///
/// Kept as whole seconds plus nanoseconds (not `SystemTime`) because tar
/// headers carry seconds and Docker's change detection compares the two
/// parts separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp {
    /// Seconds since the Unix epoch (negative before it).
    pub sec: i64,
    /// Nanoseconds, below 1,000,000,000.
    pub nsec: u32,
}

impl Timestamp {
    /// A timestamp of whole seconds.
    pub fn from_secs(sec: i64) -> Self {
        Self { sec, nsec: 0 }
    }

    /// The current time of the system clock.
    pub fn now() -> Self {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Self {
                sec: d.as_secs() as i64,
                nsec: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                Self {
                    sec: -(d.as_secs() as i64),
                    nsec: 0,
                }
            }
        }
    }
}

/// What `lstat(2)` reports about a node; symlinks are never followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The node's type.
    pub file_type: FileType,
    /// Permission bits with setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Bytes of content for regular files, target length for symlinks; for
    /// directories whatever the filesystem reports.
    pub size: u64,
    /// Number of hard links.
    pub nlink: u64,
    /// Space allocated, in 512-byte units (`st_blocks`): what `du`
    /// counts, holes excluded.
    pub blocks: u64,
    /// Inode number: two names with equal `(dev, ino)` are hard links.
    pub ino: u64,
    /// Device of the filesystem holding the node.
    pub dev: u64,
    /// Device number of a char or block device node, else 0.
    pub rdev: u64,
    /// Last modification.
    pub mtime: Timestamp,
    /// Last access.
    pub atime: Timestamp,
}

impl Metadata {
    /// Is this a directory?
    pub fn is_dir(&self) -> bool {
        self.file_type == FileType::Directory
    }

    /// Is this a regular file?
    pub fn is_file(&self) -> bool {
        self.file_type == FileType::Regular
    }

    /// Is this a symlink?
    pub fn is_symlink(&self) -> bool {
        self.file_type == FileType::Symlink
    }

    /// Is this an overlayfs whiteout (a 0:0 character device)?
    pub fn is_whiteout(&self) -> bool {
        self.file_type == FileType::CharDevice && self.rdev == 0
    }
}

/// One entry of a directory listing (never `.` or `..`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirEntry {
    /// The entry's name within its directory.
    pub name: OsString,
    /// The entry's type, as `lstat` would report it.
    pub file_type: FileType,
    /// The entry's inode number.
    pub ino: u64,
}
