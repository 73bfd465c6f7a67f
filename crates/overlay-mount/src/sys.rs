//! The one place this crate needs `unsafe`: the forked mount helper.
//!
//! Docker mounts a stack too long for one page of mount data with paths
//! relative to the home, from a process whose working directory is the
//! home. Changing the working directory of this (multi-threaded) process
//! would race with every other thread, so a child is forked for it. After
//! `fork` in a multi-threaded process the child may only call
//! async-signal-safe functions; it runs `chdir`, `mount` and `_exit` on
//! C strings built before the fork, and reports `errno` as its exit code.
#![allow(unsafe_code)]

use std::ffi::CStr;

use rustix::io::Errno;

/// Forks, and in the child enters `dir` and mounts `fstype` from `source`
/// on `target` (relative to `dir`) with `data`. Returns the child's errno.
pub(crate) fn mount_from(dir: &CStr, source: &CStr, target: &CStr, fstype: &CStr, data: &CStr) -> Result<(), Errno> {
    // SAFETY: the child only calls the async-signal-safe system calls
    // chdir(2), mount(2) and _exit(2) on pointers to C strings that were
    // allocated before the fork and stay valid in the child's copy of the
    // address space; it never returns into Rust code, unwinds or allocates.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ));
    }
    if pid == 0 {
        // SAFETY: see above; `__errno_location` reads this thread's errno.
        unsafe {
            if libc::chdir(dir.as_ptr()) != 0 {
                libc::_exit(exit_code(*libc::__errno_location()));
            }
            if libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                data.as_ptr().cast(),
            ) != 0
            {
                libc::_exit(exit_code(*libc::__errno_location()));
            }
            libc::_exit(0);
        }
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
