//! Prints where Docker's overlay2 driver would put everything for a stack of
//! three layers, and the `lower` chains that tie them together.
//!
//! ```text
//! cargo run -p overlay-layout --example layout -- [HOME]
//! ```
//!
//! `HOME` defaults to `/var/lib/docker/overlay2`. Nothing is written: this
//! crate only computes paths and file contents.

use std::path::PathBuf;

use overlay_layout::{
    DepthLimit, Home, LayerId, LayoutError, LinkId, Lower, link_target, mode, relative_diff_dir, relative_work_dir,
};

fn main() -> Result<(), LayoutError> {
    let root = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("/var/lib/docker/overlay2"), PathBuf::from);
    let home = Home::new(root);

    println!("home        {}  (mode {:o})", home.root().display(), mode::HOME);
    println!("links       {}  (mode {:o})", home.link_dir().display(), mode::LINK_DIR);

    // base <- app <- container, each created on top of the one before.
    let names = ["base", "app", "container"];
    let mut parent: Option<(LinkId, Option<Lower>)> = None;
    for name in names {
        let id = LayerId::new(name)?;
        let link = LinkId::generate();
        let lower = match &parent {
            None => None,
            Some((parent_link, parent_lower)) => Some(Lower::child_of(
                *parent_link,
                parent_lower.as_ref(),
                DepthLimit::DOCKER,
            )?),
        };

        println!();
        println!("layer {id}");
        println!("  dir       {}", home.layer_dir(&id).display());
        println!("  diff      {}", home.diff_dir(&id).display());
        println!("  link file {}  contains {link}", home.link_file(&id).display());
        println!(
            "  symlink   {} -> {}",
            home.link_path(link).display(),
            link_target(&id).display()
        );
        match &lower {
            None => println!("  no parent: no lower file, no work dir"),
            Some(lower) => {
                println!("  work      {}", home.work_dir(&id).display());
                println!("  merged    {} (while mounted)", home.merged_dir(&id).display());
                println!("  lower     {}  contains {lower}", home.lower_file(&id).display());
                let lowerdirs: Vec<String> = home
                    .lower_dirs(lower)
                    .iter()
                    .map(|dir| dir.display().to_string())
                    .collect();
                println!(
                    "  mount     lowerdir={},upperdir={},workdir={}",
                    lowerdirs.join(":"),
                    home.diff_dir(&id).display(),
                    home.work_dir(&id).display()
                );
                println!(
                    "  fallback  lowerdir={lower},upperdir={},workdir={}  (from inside the home)",
                    relative_diff_dir(&id).display(),
                    relative_work_dir(&id).display()
                );
            }
        }
        if name != "container" {
            println!(
                "  committed {} (written when a child is created)",
                home.committed_file(&id).display()
            );
        }
        parent = Some((link, lower));
    }
    Ok(())
}
