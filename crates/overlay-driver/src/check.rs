//! `check` and `repair`: what a crash (or an older tool) can leave in a
//! home, and putting it right.

use std::fmt;
use std::path::{Path, PathBuf};

use overlay_fs::{ErrorKind, FileType};
use overlay_layout::{
    LINK_DIR, LayerId, LinkId, Lower, MERGED_DIR, link_target, parse_link_target, relative_diff_dir,
    relative_link_file, relative_link_path, relative_lower_file, relative_merged_dir,
};

use crate::backend::Backend;
use crate::driver::{Overlay2, STAGING_PREFIX};
use crate::error::Result;

/// One thing wrong with a home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Scratch of a create, apply or remove that never finished.
    StagingLeftover(PathBuf),
    /// `l/LINK` points at a layer that is gone.
    DanglingLink(String),
    /// `l/LINK` points somewhere that is not a layer's `diff` in the home.
    LinkOutsideHome {
        /// The link.
        link: String,
        /// Where it points.
        target: PathBuf,
    },
    /// A layer's `l/` link is missing (its `link` file names it).
    MissingLink {
        /// The layer.
        id: String,
        /// The link it should have.
        link: String,
    },
    /// A layer's `link` file is missing or not a link id.
    CorruptLinkFile(String),
    /// A layer's `lower` file does not parse.
    CorruptLower(String),
    /// A layer's `lower` names a link no layer has: its parent is gone.
    UnknownLowerLink {
        /// The layer.
        id: String,
        /// The link nobody has.
        link: String,
    },
    /// `ID/merged` exists with nothing mounted on it.
    MergedWithoutMount(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StagingLeftover(p) => write!(f, "unfinished work left at {}", p.display()),
            Self::DanglingLink(l) => write!(f, "link l/{l} points at a layer that does not exist"),
            Self::LinkOutsideHome { link, target } => {
                write!(
                    f,
                    "link l/{link} points outside the home's layers: {}",
                    target.display()
                )
            }
            Self::MissingLink { id, link } => write!(f, "layer {id:?} has no link l/{link}"),
            Self::CorruptLinkFile(id) => write!(f, "layer {id:?} has a missing or corrupt link file"),
            Self::CorruptLower(id) => write!(f, "layer {id:?} has a corrupt lower file"),
            Self::UnknownLowerLink { id, link } => write!(f, "layer {id:?} stacks on l/{link}, which no layer has"),
            Self::MergedWithoutMount(id) => write!(f, "layer {id:?} has a merged dir but nothing mounted"),
        }
    }
}

impl<B: Backend> Overlay2<B> {
    /// Everything wrong with the home, without changing it.
    ///
    /// # Errors
    ///
    /// The home cannot be read.
    pub fn check(&self) -> Result<Vec<Problem>> {
        let home = self.backend().home();
        let mut out = Vec::new();
        let mut links = std::collections::HashMap::new();
        for e in home.read_dir(Path::new(""))? {
            let name = e.name.to_string_lossy().into_owned();
            if name.starts_with(STAGING_PREFIX) {
                out.push(Problem::StagingLeftover(PathBuf::from(&name)));
            }
        }
        let layers = self.layers()?;
        for id in &layers {
            for e in home.read_dir(Path::new(id.as_str()))? {
                if e.name.to_string_lossy().starts_with(STAGING_PREFIX) {
                    out.push(Problem::StagingLeftover(Path::new(id.as_str()).join(&e.name)));
                }
            }
            match home
                .read(&relative_link_file(id))
                .ok()
                .and_then(|b| LinkId::from_bytes(&b).ok())
            {
                Some(link) => {
                    links.insert(link, id.clone());
                    if !home.exists(&relative_link_path(link))? {
                        out.push(Problem::MissingLink {
                            id: id.as_str().into(),
                            link: link.as_str().into(),
                        });
                    }
                }
                None => out.push(Problem::CorruptLinkFile(id.as_str().into())),
            }
            let merged = relative_merged_dir(id);
            if home.exists(&merged)? && !self.backend().is_mounted(&merged) && !self.is_mounted(id.as_str()) {
                out.push(Problem::MergedWithoutMount(id.as_str().into()));
            }
        }
        for id in &layers {
            match home.read(&relative_lower_file(id)) {
                Ok(bytes) => match Lower::parse(&bytes) {
                    Ok(lower) => {
                        for link in lower.iter() {
                            if !links.contains_key(link) {
                                out.push(Problem::UnknownLowerLink {
                                    id: id.as_str().into(),
                                    link: link.as_str().into(),
                                });
                            }
                        }
                    }
                    Err(_) => out.push(Problem::CorruptLower(id.as_str().into())),
                },
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        for e in home.read_dir(Path::new(LINK_DIR))? {
            let name = e.name.to_string_lossy().into_owned();
            let path = Path::new(LINK_DIR).join(&e.name);
            if e.file_type != FileType::Symlink {
                out.push(Problem::LinkOutsideHome {
                    link: name,
                    target: PathBuf::new(),
                });
                continue;
            }
            let target = home.readlink(&path)?;
            match parse_link_target(&target) {
                Err(_) => out.push(Problem::LinkOutsideHome { link: name, target }),
                Ok(layer) => {
                    let owner = LinkId::parse(&name).ok().and_then(|l| links.get(&l));
                    if owner != Some(&layer) || !home.exists(&relative_diff_dir(&layer))? {
                        out.push(Problem::DanglingLink(name));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Fixes what [`check`](Self::check) finds and returns what it fixed:
    /// scratch removed, links rebuilt from each layer's `link` file or
    /// removed, stale `merged` dirs removed, and layers that cannot work
    /// (corrupt files, a parent that is gone) removed with what stacks on
    /// them.
    ///
    /// # Errors
    ///
    /// The home cannot be read or changed.
    pub fn repair(&self) -> Result<Vec<Problem>> {
        self.repair_where(|_| true)
    }

    /// Removes what interrupted creates, applies and removes left (scratch
    /// directories, `l/` links to layers that never arrived or are gone),
    /// and nothing else: what a server does at start and when its client
    /// asks for cleanup. Returns what it removed.
    ///
    /// Only while no create, apply or remove of this home is under way:
    /// their scratch looks the same.
    ///
    /// # Errors
    ///
    /// The home cannot be read or changed.
    pub fn remove_scratch(&self) -> Result<Vec<Problem>> {
        self.repair_where(|p| matches!(p, Problem::StagingLeftover(_) | Problem::DanglingLink(_)))
    }

    fn repair_where(&self, wanted: impl Fn(&Problem) -> bool) -> Result<Vec<Problem>> {
        let home = self.backend().home();
        let mut fixed = Vec::new();
        // Links first: a missing link is rebuilt before any layer that
        // stacks on it is judged.
        loop {
            let problems = self.check()?;
            let mut progress = false;
            for p in problems.iter().filter(|p| wanted(p)) {
                match p {
                    Problem::StagingLeftover(path) => home.remove_all(path)?,
                    Problem::DanglingLink(link) | Problem::LinkOutsideHome { link, .. } => {
                        home.remove_all(&Path::new(LINK_DIR).join(link))?
                    }
                    Problem::MissingLink { id, link } => {
                        let id = LayerId::new(id.as_str()).map_err(crate::DriverError::InvalidId)?;
                        let link = LinkId::parse(link).map_err(crate::DriverError::InvalidId)?;
                        home.symlink(&link_target(&id), &relative_link_path(link))?;
                    }
                    Problem::MergedWithoutMount(id) => match home.remove_dir(&Path::new(id).join(MERGED_DIR)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => return Err(e.into()),
                    },
                    Problem::CorruptLinkFile(id) | Problem::CorruptLower(id) | Problem::UnknownLowerLink { id, .. } => {
                        // Unusable: go, with its link if it still has one.
                        let grave = PathBuf::from(format!("{STAGING_PREFIX}repair-{id}"));
                        home.rename(Path::new(id.as_str()), &grave)?;
                        home.remove_all(&grave)?;
                    }
                }
                fixed.push(p.clone());
                progress = true;
            }
            if !progress {
                return Ok(fixed);
            }
        }
    }
}
