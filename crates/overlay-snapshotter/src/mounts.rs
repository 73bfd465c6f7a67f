//! The mounts a snapshot is shown by. containerd performs them (or, for
//! one overlay mount, reads `upperdir=` and unpacks straight into it), so
//! they use only what its mount code understands: no escaping, lower dirs
//! through the home's short `l/` links (uniform paths that containerd
//! compacts relative to their common parent when they pass a page).

use std::path::Path;

use overlay_driver::LayerDirs;

/// A mount for containerd to perform (`containerd.types.Mount`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    /// Filesystem type: `bind` or `overlay`.
    pub kind: String,
    /// What to mount.
    pub source: String,
    /// `mount -o` options.
    pub options: Vec<String>,
}

/// Mount options the home's kernel wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MountOptions {
    /// Pass `index=off`.
    pub index_off: bool,
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn bind(source: &Path, rw: &str) -> Mount {
    Mount {
        kind: "bind".into(),
        source: path(source),
        options: vec![rw.into(), "rbind".into()],
    }
}

impl MountOptions {
    /// The mounts of a layer: an active snapshot (`view == false`) writes
    /// to its `diff`; a view shows only the layers below it.
    ///
    /// - active, no parent: a read-write bind mount of its `diff`;
    /// - active: overlay with `upperdir`, `workdir` and `lowerdir`;
    /// - view of one layer: a read-only bind mount of that layer's `diff`;
    /// - view of several: overlay with `lowerdir` only (read-only);
    /// - view of nothing: a read-only bind mount of its own empty `diff`.
    pub fn mounts(&self, view: bool, dirs: &LayerDirs) -> Vec<Mount> {
        let (upper, lowers) = match (view, dirs.lower_links.len(), &dirs.work) {
            (false, 0, _) | (false, _, None) => return vec![bind(&dirs.diff, "rw")],
            (true, 0, _) => return vec![bind(&dirs.diff, "ro")],
            (true, 1, _) => return vec![bind(&dirs.lower_diffs[0], "ro")],
            (true, _, _) => (None, &dirs.lower_links),
            (false, _, Some(work)) => (Some((&dirs.diff, work)), &dirs.lower_links),
        };
        let mut options = Vec::with_capacity(4);
        if self.index_off {
            options.push("index=off".to_owned());
        }
        if let Some((diff, work)) = upper {
            options.push(format!("workdir={}", path(work)));
            options.push(format!("upperdir={}", path(diff)));
        }
        let lowers: Vec<String> = lowers.iter().map(|l| path(l)).collect();
        options.push(format!("lowerdir={}", lowers.join(":")));
        vec![Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options,
        }]
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn dirs(lowers: usize) -> LayerDirs {
        let home = Path::new("/h");
        LayerDirs {
            diff: home.join("a/diff"),
            work: (lowers > 0).then(|| home.join("a/work")),
            lower_links: (0..lowers).map(|i| home.join(format!("l/L{i}"))).collect(),
            lower_diffs: (0..lowers).map(|i| PathBuf::from(format!("/h/p{i}/diff"))).collect(),
        }
    }

    #[test]
    fn shapes_as_containerd_overlayfs() {
        let o = MountOptions { index_off: true };
        assert_eq!(o.mounts(false, &dirs(0)), [bind(Path::new("/h/a/diff"), "rw")]);
        assert_eq!(o.mounts(true, &dirs(0)), [bind(Path::new("/h/a/diff"), "ro")]);
        assert_eq!(o.mounts(true, &dirs(1)), [bind(Path::new("/h/p0/diff"), "ro")]);
        let active = o.mounts(false, &dirs(2));
        assert_eq!(active[0].kind, "overlay");
        assert_eq!(
            active[0].options,
            [
                "index=off",
                "workdir=/h/a/work",
                "upperdir=/h/a/diff",
                "lowerdir=/h/l/L0:/h/l/L1"
            ]
        );
        let view = MountOptions { index_off: false }.mounts(true, &dirs(3));
        assert_eq!(view[0].options, ["lowerdir=/h/l/L0:/h/l/L1:/h/l/L2"]);
    }
}
