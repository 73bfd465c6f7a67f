//! What the driver's test files share.
#![allow(dead_code, clippy::unwrap_used)]

pub mod rootless;

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

/// Appends one tar entry: path, type, mode, owner (uid and gid), data,
/// link target (empty for none).
pub fn tar_entry(
    b: &mut tar::Builder<Vec<u8>>,
    path: &str,
    ty: tar::EntryType,
    mode: u32,
    id: u64,
    data: &[u8],
    link: &str,
) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(ty);
    h.set_mode(mode);
    h.set_uid(id);
    h.set_gid(id);
    h.set_mtime(1_600_000_000);
    h.set_size(data.len() as u64);
    if !link.is_empty() {
        h.set_link_name(link).unwrap();
    }
    b.append_data(&mut h, path, data).unwrap();
}
