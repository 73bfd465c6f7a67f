//! The one place this crate needs `unsafe`: the mount helper process.
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
    let mut stack = vec![0u8; CHILD_STACK];
    // SAFETY: the pointer stays inside `stack`; stacks grow down, so the
    // child starts at the (16-byte aligned) top.
    let top = unsafe { stack.as_mut_ptr().add(CHILD_STACK) };
    let top = ((top as usize) & !15) as *mut c_void;

    // SAFETY: plain libc signal-set calls on local, initialised sets.
    // Blocking every signal keeps handlers (which would run on our shared
    // memory) out of the child; it inherits the mask.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: `child` runs on its own stack with a pointer to `job`, which
    // outlives it (CLONE_VFORK suspends us until the child exits);
    // SIGCHLD makes it an ordinary child for waitpid.
    let pid = unsafe {
        libc::clone(
            child,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &job as *const Job<'_> as *mut c_void,
        )
    };
    let clone_errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    // SAFETY: restores the mask saved above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
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
