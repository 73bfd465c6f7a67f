//! The overlay2 driver on the in-memory fake backend: no root, no mounts.
//! Builds a small image, runs a "container" on it, and prints its changes
//! and the layer tar's entries.
//!
//! ```text
//! cargo run -p overlay-driver --example fake
//! ```

use std::error::Error;
use std::path::Path;

use overlay_driver::{CreateOpts, FakeBackend, GraphDriver, Overlay2};

fn main() -> Result<(), Box<dyn Error>> {
    let driver = Overlay2::new(FakeBackend::new(), &[] as &[&str])?;
    driver.create("base", None, &CreateOpts::default())?;
    driver.get("base", None)?;
    let base = driver.tree("base")?;
    base.mkdir_all(Path::new("etc"), 0o755)?;
    base.write(Path::new("etc/os-release"), 0o644, b"NAME=fake\n")?;
    base.write(Path::new("etc/motd"), 0o644, b"hello\n")?;
    driver.put("base")?;

    driver.create_read_write("container", Some("base"), &CreateOpts::default())?;
    let path = driver.get("container", None)?;
    let root = driver.tree("container")?;
    root.write(Path::new("etc/motd"), 0o644, b"changed\n")?;
    root.remove_file(Path::new("etc/os-release"))?;
    root.write(Path::new("app"), 0o755, b"#!/bin/sh\n")?;
    println!("container mounted at {} (in memory)", path.display());
    driver.put("container")?;

    for change in driver.changes("container", Some("base"))? {
        println!("  {change}");
    }
    let mut tar = Vec::new();
    driver.diff("container", Some("base"), &mut tar)?;
    println!("layer tar: {} bytes", tar.len());
    for entry in tar::Archive::new(&tar[..]).entries()? {
        println!("  {}", entry?.path()?.display());
    }
    println!("home after: {:?}", driver.check()?);
    Ok(())
}
