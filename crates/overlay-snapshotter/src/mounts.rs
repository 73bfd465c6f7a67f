//! The mounts a snapshot is shown by. containerd performs them (or, for
//! one overlay mount, reads `upperdir=` and unpacks straight into it), so
//! they use only what its mount code understands: no escaping, lower dirs
//! through the home's short `l/` links (uniform paths that containerd
//! compacts relative to their common parent when they pass a page).

use std::path::Path;

use overlay_driver::{LayerDirs, LayerIdMaps};

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
    /// Pass `userxattr`: the server runs rootless (in a user namespace),
    /// its layers' markers are `user.overlay.*`, and containerd mounts in
    /// that namespace too.
    pub userxattr: bool,
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// A bind mount of `source`, `rw` or `ro`, recursive (`rbind`).
pub(crate) fn bind(source: &Path, rw: &str) -> Mount {
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
        if self.userxattr {
            options.push("userxattr".to_owned());
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

    /// The mounts of a layer with id maps in containerd 2's form: those of
    /// [`mounts`](Self::mounts), with `uidmap=` and `gidmap=` first where
    /// they show lower layers (containerd 2 id-maps every lowerdir, or the
    /// bind mount of a view's one layer). A bind of the layer's own `diff`
    /// gets none: its files are stored with host ids already.
    ///
    /// `None` where the form cannot say what the layer needs: a lower
    /// stored with host ids (a parent made with the same maps) must not be
    /// mapped again, and a layer made with chowned copies of its lowers
    /// (a kernel that cannot id-map) shows those instead.
    pub fn id_mapped_mounts(&self, view: bool, dirs: &LayerDirs, maps: &LayerIdMaps) -> Option<Vec<Mount>> {
        if maps.copies || !maps.lowers_mapped.iter().all(|m| *m) {
            return None;
        }
        let mut mounts = self.mounts(view, dirs);
        let own_diff = mounts
            .iter()
            .any(|m| m.kind == "bind" && Path::new(&m.source) == dirs.diff);
        if !own_diff {
            for m in &mut mounts {
                m.options.splice(0..0, crate::remap::mount_options(&maps.maps));
            }
        }
        Some(mounts)
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
        let o = MountOptions {
            index_off: true,
            ..MountOptions::default()
        };
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
        let view = MountOptions::default().mounts(true, &dirs(3));
        assert_eq!(view[0].options, ["lowerdir=/h/l/L0:/h/l/L1:/h/l/L2"]);
        // Rootless: containerd mounts in the user namespace with `userxattr`.
        let rootless = MountOptions {
            index_off: true,
            userxattr: true,
        };
        assert_eq!(
            rootless.mounts(false, &dirs(2))[0].options[..2],
            ["index=off", "userxattr"]
        );
        assert_eq!(rootless.mounts(true, &dirs(1)), [bind(Path::new("/h/p0/diff"), "ro")]);
    }
}
