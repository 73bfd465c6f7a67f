//! A minimal tar tool over overlay-archive, for comparing with GNU tar:
//!
//! ```text
//! cargo run --release -p overlay-archive --example tar -- x LAYER.tar DIR   # import (overlay whiteouts)
//! cargo run --release -p overlay-archive --example tar -- xp LAYER.tar DIR  # import (plain whiteouts)
//! cargo run --release -p overlay-archive --example tar -- c DIR LAYER.tar   # export
//! ```
//!
//! `DIR` is opened as a `HostFs`: nothing in the tar can write outside it.
//! `IMPORT_WORKERS=N` sets the threads creating files (default: cores).

use std::error::Error;
use std::io::{BufReader, BufWriter};

use overlay_archive::{ExportOptions, ImportOptions, ImportWhiteouts, export, import};
use overlay_fs::HostFs;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [mode @ ("x" | "xp"), tar, dir] => {
            std::fs::create_dir_all(dir)?;
            let fs = HostFs::new(dir)?;
            let whiteouts = if mode == "xp" {
                ImportWhiteouts::Plain
            } else {
                ImportWhiteouts::default()
            };
            let input = BufReader::with_capacity(1 << 20, std::fs::File::open(tar)?);
            let stats = import(
                &fs,
                input,
                &ImportOptions {
                    whiteouts,
                    workers: std::env::var("IMPORT_WORKERS")
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    ..Default::default()
                },
            )?;
            eprintln!("applied {} entries, {} bytes", stats.entries, stats.bytes);
        }
        ["c", dir, tar] => {
            let fs = HostFs::new(dir)?;
            let out = BufWriter::with_capacity(1 << 20, std::fs::File::create(tar)?);
            let (out, stats) = export(&fs, &ExportOptions::default(), out)?;
            out.into_inner().map_err(|e| e.into_error())?;
            eprintln!("wrote {} entries, {} bytes of data", stats.entries, stats.bytes);
        }
        _ => return Err("usage: tar x|xp LAYER.tar DIR | tar c DIR LAYER.tar".into()),
    }
    Ok(())
}
