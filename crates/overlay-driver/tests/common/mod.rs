//! What the driver's test files share.
#![allow(dead_code)]

/// Can the kernel backend be tested here? If not, says why on stderr
/// ("skipped on the kernel backend: ...") and returns false.
pub fn kernel_backend_runs() -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped on the kernel backend: needs root");
        return false;
    }
    if let Err(e) = overlay_mount::probe::require_overlay() {
        eprintln!("skipped on the kernel backend: {e}");
        return false;
    }
    true
}
