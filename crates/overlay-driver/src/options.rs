//! Driver options in Docker's spellings.

use std::collections::BTreeMap;

use overlay_archive::IdMaps;

use crate::error::{DriverError, Result};

/// Options given when the driver starts (`--storage-opt overlay2.*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverOptions {
    /// Default quota of read-write layers, bytes (`overlay2.size`).
    pub default_size: Option<u64>,
    /// `overlay2.override_kernel_check` (accepted and ignored, as Docker 20.10).
    pub override_kernel_check: bool,
    /// `overlay2.ignore_chown_errors` (containers/storage's option of the
    /// same name): rootless, a file of an applied layer whose id this
    /// user namespace does not map belongs to root instead of failing
    /// the apply. No effect in the initial namespace, where every id is.
    pub ignore_chown_errors: bool,
}

impl DriverOptions {
    /// Parses `key=value` options as Docker's `parseOptions` does.
    ///
    /// # Errors
    ///
    /// An unknown key (`overlay2: unknown option KEY`), a malformed pair,
    /// an unparsable value.
    pub fn parse<S: AsRef<str>>(options: &[S]) -> Result<Self> {
        let mut out = Self::default();
        for option in options {
            let option = option.as_ref();
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| DriverError::BadOption(format!("overlay2: invalid option {option:?}: not KEY=VALUE")))?;
            match key.trim().to_ascii_lowercase().as_str() {
                "overlay2.override_kernel_check" => out.override_kernel_check = boolean(key, value)?,
                "overlay2.ignore_chown_errors" => out.ignore_chown_errors = boolean(key, value)?,
                "overlay2.size" => out.default_size = Some(size(value)?),
                _ => return Err(DriverError::BadOption(format!("overlay2: unknown option {key}"))),
            }
        }
        Ok(out)
    }
}

fn boolean(key: &str, value: &str) -> Result<bool> {
    parse_bool(value.trim())
        .ok_or_else(|| DriverError::BadOption(format!("overlay2: {key}: {value:?} is not a boolean")))
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Some(true),
        "0" | "f" | "false" => Some(false),
        _ => None,
    }
}

fn size(value: &str) -> Result<u64> {
    overlay_quota::parse_size(value.trim()).map_err(|e| DriverError::BadOption(e.to_string()))
}

/// Per-layer options (`docker run --storage-opt size=10G`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOpts {
    /// The layer's own options, `size` the only one overlay2 knows.
    pub storage_opt: BTreeMap<String, String>,
    /// SELinux mount label the layer will be mounted with.
    pub mount_label: Option<String>,
    /// The layer's own uid and gid maps (Docker's and OCI's
    /// `CONTAINER:HOST:SIZE` ranges), empty for none: the layers below
    /// are shown shifted by them (id-mapped, never copied where the
    /// kernel can), and the layer's own files belong to the container's
    /// root on the host. A layer on a parent made with maps gets the
    /// parent's when this is empty.
    pub id_maps: IdMaps,
}

impl CreateOpts {
    /// Options with a quota of `size` (Docker's forms: `10G`, `512m`...).
    pub fn with_size(size: &str) -> Self {
        Self {
            storage_opt: BTreeMap::from([("size".into(), size.into())]),
            ..Self::default()
        }
    }

    /// The quota asked for, as Docker's `parseStorageOpt` reads it.
    ///
    /// # Errors
    ///
    /// A key other than `size` (`Unknown option KEY`), a bad size.
    pub fn size(&self) -> Result<Option<u64>> {
        let mut out = None;
        for (key, value) in &self.storage_opt {
            match key.to_ascii_lowercase().as_str() {
                "size" => out = Some(size(value)?),
                _ => return Err(DriverError::BadOption(format!("Unknown option {key}"))),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_option_forms() {
        let o = DriverOptions::parse(&["overlay2.size=10G", "overlay2.override_kernel_check=true"]).unwrap();
        assert_eq!(o.default_size, Some(10 << 30));
        assert!(o.override_kernel_check);
        assert!(!o.ignore_chown_errors);
        let o = DriverOptions::parse(&["overlay2.ignore_chown_errors=true"]).unwrap();
        assert!(o.ignore_chown_errors);
        let e = DriverOptions::parse(&["overlay2.ignore_chown_errors=maybe"]).unwrap_err();
        assert!(e.to_string().contains("not a boolean"), "{e}");
        let e = DriverOptions::parse(&["overlay2.bogus=1"]).unwrap_err().to_string();
        assert_eq!(e, "overlay2: unknown option overlay2.bogus");
        assert!(DriverOptions::parse(&["overlay2.size"]).is_err());
        assert!(
            DriverOptions::parse(&["overlay2.size=lots"])
                .unwrap_err()
                .to_string()
                .contains("lots")
        );
        assert_eq!(CreateOpts::with_size("512m").size().unwrap(), Some(512 << 20));
        let mut bad = CreateOpts::default();
        bad.storage_opt.insert("iops".into(), "5".into());
        assert_eq!(bad.size().unwrap_err().to_string(), "Unknown option iops");
    }
}
