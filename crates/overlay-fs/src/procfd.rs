//! Reopening a pinned node through procfs, with the fd directory held open.
//!
//! An `O_PATH` descriptor is turned into a readable one by opening its
//! magic link `/proc/self/fd/N`, which names exactly the pinned inode. Walking
//! that path from `/` costs four lookups (one of them following the `self`
//! symlink) on every call, and a layer export makes one call per file; with
//! the thread's `/proc/thread-self/fd` held open, each reopen is a single
//! lookup of `N` in it.
//!
//! The handle is per thread and remembers which thread opened it, so a
//! forked child (a new thread id, same memory) opens its own instead of
//! reaching into its parent's descriptor table; and it is checked to be
//! procfs when opened, so a mount over `/proc` cannot redirect reopens.

use std::cell::RefCell;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, Mode, OFlags};
use rustix::io::Errno;
use rustix::thread::Pid;

/// `PROC_SUPER_MAGIC` from `linux/magic.h`.
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

thread_local! {
    static FD_DIR: RefCell<Option<(Pid, OwnedFd)>> = const { RefCell::new(None) };
}

/// Opens `fd`'s inode again with `flags`, through the calling thread's
/// procfs fd directory.
pub(crate) fn reopen(fd: BorrowedFd<'_>, flags: OFlags) -> Result<OwnedFd, Errno> {
    let mut num = [0u8; 12];
    let name = format_fd(fd.as_raw_fd(), &mut num);
    let flags = flags | OFlags::CLOEXEC | OFlags::NOCTTY;
    let held = FD_DIR.try_with(|cell| {
        let tid = rustix::thread::gettid();
        let mut slot = cell.borrow_mut();
        if !matches!(&*slot, Some((owner, _)) if *owner == tid) {
            *slot = Some((tid, open_fd_dir()?));
        }
        match &*slot {
            Some((_, dir)) => rfs::openat(dir.as_fd(), name, flags, Mode::empty()),
            None => Err(Errno::BADF),
        }
    });
    match held {
        Ok(result) => result,
        // Called from a thread-local destructor, after ours is gone: the
        // long way, through a fresh handle.
        Err(_) => rfs::openat(open_fd_dir()?, name, flags, Mode::empty()),
    }
}

/// `/proc/thread-self/fd` (or, on kernels before 3.17, `/proc/self/fd`),
/// refused unless it is on procfs.
fn open_fd_dir() -> Result<OwnedFd, Errno> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let dir = match rfs::open("/proc/thread-self/fd", flags, Mode::empty()) {
        Err(Errno::NOENT) => rfs::open("/proc/self/fd", flags, Mode::empty())?,
        other => other?,
    };
    if rfs::fstatfs(&dir)?.f_type as i64 != PROC_SUPER_MAGIC {
        return Err(Errno::XDEV);
    }
    Ok(dir)
}

/// The decimal digits of a descriptor number, formatted without allocating.
fn format_fd(fd: i32, buf: &mut [u8; 12]) -> &std::ffi::OsStr {
    use std::os::unix::ffi::OsStrExt;
    let mut n = fd.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::ffi::OsStr::from_bytes(&buf[i..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_descriptor_numbers() {
        for n in [0, 7, 10, 99, 1024, i32::MAX] {
            let mut buf = [0u8; 12];
            assert_eq!(format_fd(n, &mut buf).to_str(), Some(n.to_string().as_str()));
        }
    }

    #[test]
    fn reopens_the_pinned_inode_on_every_thread() {
        let dir = std::env::temp_dir().join(format!("procfd-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, b"pinned").unwrap();
        let pinned = rfs::open(&path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).unwrap();
        let read = |fd: BorrowedFd<'_>| {
            let f = std::fs::File::from(reopen(fd, OFlags::RDONLY).unwrap());
            std::io::read_to_string(f).unwrap()
        };
        assert_eq!(read(pinned.as_fd()), "pinned");
        // Renamed away: the reopen still reaches the same inode.
        std::fs::rename(&path, dir.join("g")).unwrap();
        std::fs::write(&path, b"impostor").unwrap();
        assert_eq!(read(pinned.as_fd()), "pinned");
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(read(pinned.as_fd()), "pinned"));
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
