//! Gives a directory of a home its own project quota and shows what the
//! filesystem accounts to it.
//!
//! ```text
//! sudo cargo run -p overlay-quota --example limit -- /mnt/xfs/home 10G [NAME]
//! ```
//!
//! The home must be on XFS mounted with `-o pquota` (or on ext4 with the
//! `quota,project` features, mounted with `-o prjquota`). Anywhere else it
//! prints why project quotas are not available (on a kernel without XFS
//! quota support, that this kernel lacks it) and exits 1.

use std::process::ExitCode;

use overlay_quota::{Quota, QuotaControl};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (home, size, name) = match args.as_slice() {
        [home] => (home.as_str(), "10G", "layer"),
        [home, size] => (home.as_str(), size.as_str(), "layer"),
        [home, size, name] => (home.as_str(), size.as_str(), name.as_str()),
        _ => {
            eprintln!("usage: limit HOME [SIZE (default 10G)] [NAME (default layer)]");
            return ExitCode::from(2);
        }
    };
    match run(home, size, name) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(home: &str, size: &str, name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let quota: Quota = size.parse()?;
    let control = QuotaControl::new(home)?;
    println!(
        "{home}: {} with project quota, home project id {}, next id {}, device node {}",
        control.filesystem(),
        control.project_ids().base_id(),
        control.project_ids().next_id(),
        control.backing_device().display()
    );
    let dir = control.home().join(name);
    std::fs::create_dir_all(&dir)?;
    let id = control.set_quota(&dir, quota)?;
    let usage = control.usage(&dir)?;
    println!(
        "{}: project {id}, limit {} bytes, {} bytes and {} inodes in use",
        dir.display(),
        usage.limit,
        usage.used,
        usage.inodes
    );
    Ok(())
}
