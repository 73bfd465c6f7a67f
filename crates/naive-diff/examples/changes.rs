//! Prints the changes between two directory trees, Docker style:
//!
//! ```text
//! cargo run --release -p naive-diff --example changes -- NEW OLD
//! A /etc/hostname
//! C /etc
//! D /etc/motd
//! ```
//!
//! Both trees are opened as `HostFs`, so symlinks in them resolve inside.

use std::error::Error;
use std::io::Write;

use overlay_fs::HostFs;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [new, old] = &args[..] else {
        return Err("usage: changes NEW OLD".into());
    };
    let (new, old) = (HostFs::new(new)?, HostFs::new(old)?);
    let list = naive_diff::changes(&new, Some(&old))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for c in &list {
        writeln!(out, "{c}")?;
    }
    Ok(())
}
