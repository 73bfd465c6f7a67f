//! `check` and `repair`: what a crash (or an older tool) can leave in a
//! home, and putting it right without throwing away what cannot be
//! rebuilt: a layer that cannot work (a corrupt `lower`, a parent that is
//! gone) still holds someone's files, so it goes to the quarantine
//! ([`crate::quarantine`]), not away.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use overlay_fs::{ErrorKind, FileType};
use overlay_layout::{
    LINK_DIR, LayerId, LinkId, Lower, MERGED_DIR, link_target, mode, parse_link_target, relative_diff_dir,
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
    /// A layer's `link` file is missing or not a link id. Repair takes the
    /// id back from an `l/` link that points at the layer, or gives the
    /// layer a new one.
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

impl Problem {
    /// What [`Overlay2::repair`] does about it, in a few words.
    #[must_use]
    pub fn remedy(&self) -> &'static str {
        match self {
            Self::StagingLeftover(_) | Self::DanglingLink(_) | Self::LinkOutsideHome { .. } => "removed",
            Self::MergedWithoutMount(_) => "removed the empty mount point",
            Self::MissingLink { .. } | Self::CorruptLinkFile(_) => "rebuilt",
            Self::CorruptLower(_) | Self::UnknownLowerLink { .. } => "moved to the quarantine",
        }
    }

    /// Can repair make it right in place (rather than remove or move)?
    fn rebuildable(&self) -> bool {
        matches!(self, Self::MissingLink { .. } | Self::CorruptLinkFile(_))
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
        for e in home.read_dir(Path::new(""))? {
            let name = e.name.to_string_lossy().into_owned();
            if name.starts_with(STAGING_PREFIX) {
                out.push(Problem::StagingLeftover(PathBuf::from(&name)));
            }
        }
        let shortcuts = self.shortcuts()?;
        let layers = self.layers()?;
        // Link id -> layer, from the layers' own `link` files, and from
        // `l/` for a layer whose file is lost (repair takes it back from
        // there, so its children are not orphans).
        let mut links = HashMap::new();
        let mut recoverable = HashMap::new();
        for id in &layers {
            for e in home.read_dir(Path::new(id.as_str()))? {
                if e.name.to_string_lossy().starts_with(STAGING_PREFIX) {
                    out.push(Problem::StagingLeftover(Path::new(id.as_str()).join(&e.name)));
                }
            }
            match self.link_file(id) {
                Some(link) => {
                    links.insert(link, id.clone());
                    if !home.exists(&relative_link_path(link))? {
                        out.push(Problem::MissingLink {
                            id: id.as_str().into(),
                            link: link.as_str().into(),
                        });
                    }
                }
                None => {
                    out.push(Problem::CorruptLinkFile(id.as_str().into()));
                    if let Some(link) = shortcut_to(&shortcuts, id) {
                        recoverable.insert(link, id.clone());
                    }
                }
            }
            let merged = relative_merged_dir(id);
            if home.exists(&merged)? && !self.backend().is_mounted(&merged) && !self.is_mounted(id.as_str()) {
                out.push(Problem::MergedWithoutMount(id.as_str().into()));
            }
        }
        for (link, id) in &recoverable {
            links.entry(*link).or_insert_with(|| id.clone());
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
        for (name, target) in shortcuts {
            match target {
                Shortcut::NotALink => out.push(Problem::LinkOutsideHome {
                    link: name,
                    target: PathBuf::new(),
                }),
                Shortcut::Outside(target) => out.push(Problem::LinkOutsideHome { link: name, target }),
                Shortcut::Layer(layer) => {
                    let owner = LinkId::parse(&name).ok().and_then(|l| links.get(&l));
                    if owner != Some(&layer) || !home.exists(&relative_diff_dir(&layer))? {
                        out.push(Problem::DanglingLink(name));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Fixes what [`check`](Self::check) finds and returns what it fixed
    /// (each problem's [`remedy`](Problem::remedy) says how): scratch
    /// removed, links rebuilt from each layer's `link` file (or the file
    /// from its `l/` link), stale `merged` dirs removed, and layers that
    /// cannot work (a corrupt `lower`, a parent that is gone) moved into
    /// the quarantine with what stacks on them, never deleted. A mounted
    /// layer is left where it is (and stays a problem).
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
        loop {
            let problems: Vec<Problem> = self.check()?.into_iter().filter(|p| wanted(p)).collect();
            // What can be rebuilt is, and the home judged again, before
            // anything is removed or moved: a layer's lost link file
            // decides whether its children are orphans.
            let rebuild = problems.iter().any(Problem::rebuildable);
            let mut progress = false;
            for p in problems.iter().filter(|p| !rebuild || p.rebuildable()) {
                let done = match p {
                    Problem::StagingLeftover(path) => home.remove_all(path).map(|()| true)?,
                    Problem::DanglingLink(link) | Problem::LinkOutsideHome { link, .. } => {
                        home.remove_all(&Path::new(LINK_DIR).join(link)).map(|()| true)?
                    }
                    Problem::MissingLink { id, link } => {
                        let id = LayerId::new(id.as_str()).map_err(crate::DriverError::InvalidId)?;
                        let link = LinkId::parse(link).map_err(crate::DriverError::InvalidId)?;
                        home.symlink(&link_target(&id), &relative_link_path(link))?;
                        true
                    }
                    Problem::CorruptLinkFile(id) => {
                        let id = LayerId::new(id.as_str()).map_err(crate::DriverError::InvalidId)?;
                        self.rebuild_link_file(&id)?;
                        true
                    }
                    Problem::MergedWithoutMount(id) => {
                        match home.remove_dir(&Path::new(id).join(MERGED_DIR)) {
                            Ok(()) => {}
                            Err(e) if e.kind() == ErrorKind::NotFound => {}
                            Err(e) => return Err(e.into()),
                        }
                        true
                    }
                    Problem::CorruptLower(id) | Problem::UnknownLowerLink { id, .. } => {
                        let id = LayerId::new(id.as_str()).map_err(crate::DriverError::InvalidId)?;
                        // Children are judged next round: their parent's
                        // link now dangles, so they follow it.
                        self.quarantine(&id, &p.to_string())?.is_some()
                    }
                };
                if done && !fixed.contains(p) {
                    fixed.push(p.clone());
                }
                progress |= done;
            }
            if !progress {
                return Ok(fixed);
            }
        }
    }

    /// The link id in a layer's `link` file, if it holds one.
    fn link_file(&self, id: &LayerId) -> Option<LinkId> {
        let bytes = self.backend().home().read(&relative_link_file(id)).ok()?;
        LinkId::from_bytes(&bytes).ok()
    }

    /// Writes a layer's `link` file again: the id of an `l/` link that
    /// points at the layer if there is one (its children name it), else
    /// a new id with its link.
    fn rebuild_link_file(&self, id: &LayerId) -> Result<()> {
        let home = self.backend().home();
        let link = match shortcut_to(&self.shortcuts()?, id) {
            Some(link) => link,
            None => {
                let link = LinkId::generate();
                home.symlink(&link_target(id), &relative_link_path(link))?;
                link
            }
        };
        let _ = home.remove_file(&relative_link_file(id));
        home.write(&relative_link_file(id), mode::LINK_FILE, link.as_bytes())?;
        Ok(())
    }

    /// Every entry of `l/`, by name, and where it leads.
    fn shortcuts(&self) -> Result<Vec<(String, Shortcut)>> {
        let home = self.backend().home();
        let mut out = Vec::new();
        for e in home.read_dir(Path::new(LINK_DIR))? {
            let name = e.name.to_string_lossy().into_owned();
            let target = if e.file_type == FileType::Symlink {
                let target = home.readlink(&Path::new(LINK_DIR).join(&e.name))?;
                match parse_link_target(&target) {
                    Ok(layer) => Shortcut::Layer(layer),
                    Err(_) => Shortcut::Outside(target),
                }
            } else {
                Shortcut::NotALink
            };
            out.push((name, target));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// Where an entry of `l/` leads.
enum Shortcut {
    /// `../ID/diff`.
    Layer(LayerId),
    /// A symlink anywhere else.
    Outside(PathBuf),
    /// Not a symlink at all.
    NotALink,
}

/// The first well-formed `l/` name that leads to `id`'s `diff`.
fn shortcut_to(shortcuts: &[(String, Shortcut)], id: &LayerId) -> Option<LinkId> {
    shortcuts.iter().find_map(|(name, target)| match target {
        Shortcut::Layer(layer) if layer == id => LinkId::parse(name).ok(),
        _ => None,
    })
}
