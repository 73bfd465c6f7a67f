//! `listxattrat` and `getxattrat` (Linux 6.13): xattrs of a name in a
//! directory we hold, without following it, in one lookup.
//!
//! Before them, the only race-free way to read the xattrs of a symlink or
//! device node below a root was `llistxattr` on `/proc/self/fd/DIR/NAME`,
//! a walk through procfs on every call; a tree comparison spent half its
//! time there. rustix does not wrap these calls yet, so this is the one
//! module of the crate with `unsafe`: two raw system calls. On older
//! kernels (`ENOSYS`) callers take the procfs path; the answer is
//! remembered.
#![allow(unsafe_code)]

use std::ffi::{OsStr, c_long};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::io::Errno;

// New system calls share one number on every architecture (asm-generic's
// unified table, since Linux 5.1).
const SYS_GETXATTRAT: c_long = 464;
const SYS_LISTXATTRAT: c_long = 465;

/// Cleared once the kernel answers `ENOSYS`.
static SUPPORTED: AtomicBool = AtomicBool::new(true);

/// `struct xattr_args` of `linux/xattr.h` (its first version).
#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

/// A file name as a C string on the stack (names are at most 255 bytes).
struct CName([u8; 256]);

impl CName {
    fn new(name: &OsStr) -> Result<Self, Errno> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() > 255 || bytes.contains(&0) {
            return Err(Errno::INVAL);
        }
        let mut buf = [0u8; 256];
        buf[..bytes.len()].copy_from_slice(bytes);
        Ok(Self(buf))
    }
}

/// Whether to try the `*at` calls at all.
pub(crate) fn supported() -> bool {
    SUPPORTED.load(Ordering::Relaxed)
}

fn result(r: c_long) -> Result<usize, Errno> {
    if r < 0 {
        let e = Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        if e == Errno::NOSYS {
            SUPPORTED.store(false, Ordering::Relaxed);
        }
        Err(e)
    } else {
        Ok(r as usize)
    }
}

/// The xattr names of `name` in `dir` (not followed), into `buf`; with an
/// empty `buf`, the size needed.
pub(crate) fn list(dir: BorrowedFd<'_>, name: &OsStr, buf: &mut [u8]) -> Result<usize, Errno> {
    let cname = CName::new(name)?;
    // SAFETY: `cname` is NUL-terminated and lives across the call; `buf` is
    // writable for `buf.len()` bytes, which is all the kernel writes; the
    // descriptor is borrowed, so open for the call.
    let r = unsafe {
        libc::syscall(
            SYS_LISTXATTRAT,
            dir.as_raw_fd(),
            cname.0.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    result(r)
}

/// The value of xattr `attr` of `name` in `dir` (not followed), into
/// `buf`; with an empty `buf`, the size needed.
pub(crate) fn get(dir: BorrowedFd<'_>, name: &OsStr, attr: &OsStr, buf: &mut [u8]) -> Result<usize, Errno> {
    let cname = CName::new(name)?;
    let cattr = CName::new(attr)?;
    let mut args = XattrArgs {
        value: buf.as_mut_ptr() as u64,
        size: u32::try_from(buf.len()).unwrap_or(u32::MAX),
        flags: 0,
    };
    // SAFETY: both names are NUL-terminated and live across the call;
    // `args` is a valid `struct xattr_args` of the size passed, whose
    // `value` points at `buf`, writable for `size` (≤ `buf.len()`) bytes.
    let r = unsafe {
        libc::syscall(
            SYS_GETXATTRAT,
            dir.as_raw_fd(),
            cname.0.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            cattr.0.as_ptr(),
            &mut args as *mut XattrArgs,
            std::mem::size_of::<XattrArgs>(),
        )
    };
    result(r)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    fn names(buf: &[u8]) -> Vec<&[u8]> {
        buf.split(|b| *b == 0).filter(|n| !n.is_empty()).collect()
    }

    #[test]
    fn reads_xattrs_of_a_name_without_following_it() {
        if !supported() {
            eprintln!("skipped: no listxattrat on this kernel");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"").unwrap();
        std::os::unix::fs::symlink("f", dir.path().join("l")).unwrap();
        rustix::fs::setxattr(dir.path().join("f"), "user.k", b"file", rustix::fs::XattrFlags::empty()).unwrap();
        let d = std::fs::File::open(dir.path()).unwrap();
        let fd = d.as_fd();
        let mut buf = [0u8; 64];
        let n = match list(fd, OsStr::new("f"), &mut buf) {
            Err(Errno::NOSYS) => {
                eprintln!("skipped: no listxattrat on this kernel");
                return;
            }
            r => r.unwrap(),
        };
        assert_eq!(names(&buf[..n]), [b"user.k".as_slice()]);
        assert_eq!(list(fd, OsStr::new("f"), &mut []).unwrap(), n, "size query");
        let v = get(fd, OsStr::new("f"), OsStr::new("user.k"), &mut buf).unwrap();
        assert_eq!(&buf[..v], b"file");
        assert_eq!(
            get(fd, OsStr::new("f"), OsStr::new("user.k"), &mut buf[..2]),
            Err(Errno::RANGE)
        );
        // The symlink's own (empty) list, not its target's.
        assert_eq!(list(fd, OsStr::new("l"), &mut buf).unwrap(), 0);
        assert_eq!(
            get(fd, OsStr::new("l"), OsStr::new("user.k"), &mut buf),
            Err(Errno::NODATA)
        );
        assert_eq!(list(fd, OsStr::new("missing"), &mut buf), Err(Errno::NOENT));
        assert_eq!(list(fd, OsStr::new("a\0b"), &mut buf), Err(Errno::INVAL));
    }
}
