//! The one place this crate needs `unsafe`: the mount helper process, the
//! process that holds a new user namespace while its maps are written, and
//! `mount_setattr` (which rustix does not wrap).
//!
//! Docker mounts a stack too long for one page of mount data with paths
//! relative to the home, from a process whose working directory is the
//! home. Changing the working directory of this (multi-threaded) process
//! would race with every other thread, so a child process does it.
//!
//! The child is made the way `posix_spawn` makes one: `clone(CLONE_VM |
//! CLONE_VFORK)` on a stack of its own, with every signal blocked. It shares
//! our memory, so no page tables are copied (a plain `fork` of a large
//! daemon costs more than the mount), and we sleep until it exits. It only
//! makes the async-signal-safe system calls `chdir`, `mount` and `_exit` on
//! C strings built before the clone, and reports `errno` as its exit code.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_int, c_void};

use rustix::io::Errno;

/// What the child needs, all prepared before it exists.
struct Job<'a> {
    dir: &'a CStr,
    source: &'a CStr,
    target: &'a CStr,
    fstype: &'a CStr,
    data: &'a CStr,
}

/// Bytes of stack for the child: it calls three system calls.
const CHILD_STACK: usize = 64 * 1024;

/// A stack for a `clone` child: the allocation, to keep until the child
/// is done with it, and its top (stacks grow down), 16-byte aligned.
fn child_stack() -> (Vec<u8>, *mut c_void) {
    let mut stack = vec![0u8; CHILD_STACK];
    // SAFETY: one past the end of our own allocation, which `add` allows.
    let top = unsafe { stack.as_mut_ptr().add(CHILD_STACK) };
    (stack, ((top as usize) & !15) as *mut c_void)
}

/// `clone(f, top, flags, arg)` with every signal blocked on this thread
/// while it runs: the child inherits the mask, so no signal handler runs
/// in it on the memory it shares with us. Returns clone's result and, if
/// it failed, its errno.
///
/// # Safety
///
/// `top` is the top of a stack that stays allocated as long as the child
/// runs on it, and `f` may do with `arg` only what stays valid for that
/// long (see each caller).
unsafe fn clone_with_signals_blocked(
    f: extern "C" fn(*mut c_void) -> c_int,
    top: *mut c_void,
    flags: c_int,
    arg: *mut c_void,
) -> (c_int, i32) {
    // SAFETY: plain libc signal-set calls on local, initialised sets.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: the caller's promises about `top`, `f` and `arg`.
    let pid = unsafe { libc::clone(f, top, flags, arg) };
    let clone_errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    // SAFETY: restores the mask saved above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
    (pid, clone_errno)
}

extern "C" fn child(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` points to the parent's `Job`, alive because the parent
    // is suspended (CLONE_VFORK) until this process exits. Only raw system
    // calls follow; `_exit` never returns and runs no destructors or atexit
    // handlers that could touch the shared memory.
    unsafe {
        let job = &*(arg as *const Job<'_>);
        if libc::chdir(job.dir.as_ptr()) != 0 {
            libc::_exit(exit_code(*libc::__errno_location()));
        }
        if libc::mount(
            job.source.as_ptr(),
            job.target.as_ptr(),
            job.fstype.as_ptr(),
            0,
            job.data.as_ptr().cast(),
        ) != 0
        {
            libc::_exit(exit_code(*libc::__errno_location()));
        }
        libc::_exit(0)
    }
}

/// In a child process, enters `dir` and mounts `fstype` from `source` on
/// `target` (relative to `dir`) with `data`. Returns the child's errno.
pub(crate) fn mount_from(dir: &CStr, source: &CStr, target: &CStr, fstype: &CStr, data: &CStr) -> Result<(), Errno> {
    let job = Job {
        dir,
        source,
        target,
        fstype,
        data,
    };
    let (stack, top) = child_stack();
    // SAFETY: `child` runs on `stack` with a pointer to `job`, which
    // outlives it (CLONE_VFORK suspends us until the child exits);
    // SIGCHLD makes it an ordinary child for waitpid.
    let (pid, clone_errno) = unsafe {
        clone_with_signals_blocked(
            child,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &job as *const Job<'_> as *mut c_void,
        )
    };
    drop(stack);
    if pid < 0 {
        return Err(Errno::from_raw_os_error(clone_errno));
    }
    let pid = rustix::process::Pid::from_raw(pid).ok_or(Errno::CHILD)?;
    loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
            Ok(None) => return Err(Errno::CHILD),
            Ok(Some((_, status))) => {
                return match status.exit_status() {
                    Some(0) => Ok(()),
                    Some(code) => Err(Errno::from_raw_os_error(code)),
                    None => Err(Errno::INTR),
                };
            }
        }
    }
}

/// An errno as an exit status (1..=255): errno values on Linux stay below 134.
fn exit_code(errno: i32) -> i32 {
    if (1..=255).contains(&errno) { errno } else { 255 }
}

/// The child of [`userns_child`]: it closes its copy of the pipe's write
/// end, then blocks reading the pipe until the parent closes its own
/// (end of file) or dies, and exits. `arg` carries the two descriptors in
/// its bits, so the child reads no memory the parent may change.
extern "C" fn userns_waiter(arg: *mut c_void) -> c_int {
    let fds = arg as usize;
    let (read_fd, write_fd) = ((fds & 0xffff_ffff) as c_int, (fds >> 32) as c_int);
    // SAFETY: raw system calls only, through `syscall` (not the libc
    // wrappers: `read` is a cancellation point that touches the thread
    // descriptor, which this child shares with the parent's thread). Both
    // descriptors are open in the child's own copy of the table; neither
    // call can fail on them, so `errno` (also shared) is never written.
    // `_exit` ends the child without running anything of the parent's.
    unsafe {
        libc::syscall(libc::SYS_close, write_fd);
        let mut byte = 0u8;
        libc::syscall(libc::SYS_read, read_fd, &mut byte as *mut u8, 1usize);
        libc::_exit(0)
    }
}

/// A child process in a user namespace of its own, alive until this is
/// dropped, which ends and reaps it.
pub(crate) struct UsernsChild {
    pid: rustix::process::Pid,
    /// Our end of the pipe the child waits on; closing it wakes the child.
    wake: Option<std::os::fd::OwnedFd>,
    /// The child's stack: freed only after the child has exited.
    _stack: Vec<u8>,
}

impl UsernsChild {
    /// The child's process id (for `/proc/PID/uid_map` and `ns/user`).
    pub(crate) fn pid(&self) -> rustix::process::Pid {
        self.pid
    }
}

impl Drop for UsernsChild {
    fn drop(&mut self) {
        drop(self.wake.take());
        // The child exits at end of file; reap it (retrying interrupted waits).
        while let Err(Errno::INTR) = rustix::process::waitpid(Some(self.pid), rustix::process::WaitOptions::empty()) {}
    }
}

/// Starts a child in a new user namespace (`clone(CLONE_NEWUSER |
/// CLONE_VM)`), which waits, doing nothing, until the returned handle is
/// dropped. Its maps are empty: the caller writes them.
///
/// Like [`mount_from`]'s helper it shares our memory (no page tables are
/// copied), but it runs alongside us, so it makes only raw system calls
/// on values it got in its argument, with every signal blocked.
pub(crate) fn userns_child() -> Result<UsernsChild, Errno> {
    let (read_end, write_end) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let (rfd, wfd) = (
        std::os::fd::AsRawFd::as_raw_fd(&read_end),
        std::os::fd::AsRawFd::as_raw_fd(&write_end),
    );
    // Descriptors are small non-negative ints; both fit in 32 bits.
    let arg = ((rfd as u32 as usize) | ((wfd as u32 as usize) << 32)) as *mut c_void;
    let (stack, top) = child_stack();
    // SAFETY: `userns_waiter` runs on `stack`, which lives in the returned
    // handle until the child has been reaped; it reads nothing through
    // `arg` (the descriptors are its bits). No CLONE_FILES: the child has
    // its own descriptor table, so the pipe reaches end of file when we
    // close our end or die, and the child never outlives us for long.
    let (pid, clone_errno) = unsafe {
        clone_with_signals_blocked(
            userns_waiter,
            top,
            libc::CLONE_NEWUSER | libc::CLONE_VM | libc::SIGCHLD,
            arg,
        )
    };
    drop(read_end);
    if pid < 0 {
        return Err(Errno::from_raw_os_error(clone_errno));
    }
    let pid = rustix::process::Pid::from_raw(pid).ok_or(Errno::CHILD)?;
    Ok(UsernsChild {
        pid,
        wake: Some(write_end),
        _stack: stack,
    })
}

/// `struct mount_attr` of `<linux/mount.h>` (`MOUNT_ATTR_SIZE_VER0`).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `MOUNT_ATTR_RDONLY` of `<linux/mount.h>`.
const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
/// `MOUNT_ATTR_IDMAP` of `<linux/mount.h>`.
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `mount_setattr(fd, "", AT_EMPTY_PATH, {MOUNT_ATTR_IDMAP |
/// MOUNT_ATTR_RDONLY, userns_fd})`: makes the detached mount `mnt` (from
/// `open_tree(OPEN_TREE_CLONE)`) show its files through the maps of the
/// user namespace `userns`, read-only.
///
/// # References
///  - [`mount_setattr(2)`](https://man7.org/linux/man-pages/man2/mount_setattr.2.html)
pub(crate) fn mount_setattr_idmap(
    mnt: std::os::fd::BorrowedFd<'_>,
    userns: std::os::fd::BorrowedFd<'_>,
) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: both descriptors are borrowed (open for the call); the path
    // is a NUL-terminated literal and `attr` a live struct of the size
    // passed. The kernel only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ));
    }
    Ok(())
}
