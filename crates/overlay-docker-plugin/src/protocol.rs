//! The JSON of dockerd's graphdriver plugin protocol (v1), as dockerd
//! 20.10 sends and reads it: field names in Go's casing, `omitempty`
//! fields optional, `null` accepted where dockerd sends it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// `/GraphDriver.Init`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct InitRequest {
    /// `<data-root>/<driver name>`.
    pub home: String,
    /// `--storage-opt` values for the driver (`overlay2.size=...`).
    pub opts: Option<Vec<String>>,
    /// The daemon's uid maps (`--userns-remap`).
    #[serde(rename = "UIDMaps")]
    pub uid_maps: Option<Vec<IdMap>>,
    /// The daemon's gid maps.
    #[serde(rename = "GIDMaps")]
    pub gid_maps: Option<Vec<IdMap>>,
}

/// One range of an id map, as Docker's `idtools.IDMap`: its JSON tags are
/// snake case (`container_id`, not Go's field names), and its fields are
/// Go `int`s, so any 64-bit number may come: kept as sent, checked by
/// [`InitRequest::id_maps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct IdMap {
    /// First id inside the container.
    pub container_id: i64,
    /// First id on the host.
    pub host_id: i64,
    /// How many ids.
    pub size: i64,
}

impl InitRequest {
    /// The daemon's maps as the driver takes them (no maps: identity).
    /// Only the numbers are checked here: a value that is no 32-bit id;
    /// the driver checks the ranges.
    ///
    /// # Errors
    ///
    /// The map, the range as sent and the value that does not fit.
    pub fn id_maps(&self) -> Result<overlay_archive::IdMaps, String> {
        fn ranges(kind: &str, maps: Option<&Vec<IdMap>>) -> Result<Vec<overlay_archive::IdRange>, String> {
            maps.into_iter()
                .flatten()
                .map(|m| {
                    let id = |what: &str, v: i64| {
                        u32::try_from(v).map_err(|_| {
                            format!(
                                "userns-remap id maps: {kind} map range {}:{}:{}: {what} {v} does not fit \
                                 in 32 bits (ids run from 0 to 4294967294)",
                                m.container_id, m.host_id, m.size
                            )
                        })
                    };
                    Ok(overlay_archive::IdRange {
                        container_id: id("container id", m.container_id)?,
                        host_id: id("host id", m.host_id)?,
                        size: id("size", m.size)?,
                    })
                })
                .collect()
        }
        Ok(overlay_archive::IdMaps {
            uids: ranges("uid", self.uid_maps.as_ref())?,
            gids: ranges("gid", self.gid_maps.as_ref())?,
        })
    }
}

/// `/GraphDriver.Create` and `CreateReadWrite`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateRequest {
    /// The new layer.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its parent ("" or absent for none).
    pub parent: String,
    /// SELinux label.
    pub mount_label: String,
    /// `--storage-opt` of the container (`size`).
    pub storage_opt: Option<HashMap<String, String>>,
}

/// Calls naming one layer: Remove, Put, Exists, GetMetadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct IdRequest {
    /// The layer.
    #[serde(rename = "ID")]
    pub id: String,
}

/// `/GraphDriver.Get`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct GetRequest {
    /// The layer.
    #[serde(rename = "ID")]
    pub id: String,
    /// SELinux label.
    pub mount_label: String,
}

/// Diff, Changes, DiffSize: a layer and the layer to compare with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PairRequest {
    /// The layer.
    #[serde(rename = "ID")]
    pub id: String,
    /// The other layer ("" for none).
    pub parent: String,
}

/// ApplyDiff's query string (`?id=ID&parent=P`); the tar is the body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ApplyQuery {
    /// The layer.
    pub id: String,
    /// Its parent ("" for none).
    pub parent: String,
}

/// `{"Err": ""}` and the answers that carry nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ErrResponse {
    /// Empty on success.
    #[serde(rename = "Err")]
    pub err: String,
}

/// `/Plugin.Activate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivateResponse {
    /// `["GraphDriver"]`.
    #[serde(rename = "Implements")]
    pub implements: Vec<&'static str>,
}

/// `/GraphDriver.Get`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetResponse {
    /// The layer's root on the host.
    pub dir: String,
    /// Empty on success.
    pub err: String,
}

/// `/GraphDriver.Exists`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExistsResponse {
    /// Whether the layer exists.
    pub exists: bool,
}

/// `/GraphDriver.Status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatusResponse {
    /// Key and value pairs for `docker info`.
    pub status: Vec<[String; 2]>,
}

/// `/GraphDriver.GetMetadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetadataResponse {
    /// `LowerDir`, `UpperDir`, `WorkDir`, `MergedDir`.
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Empty on success.
    pub err: String,
}

/// One change of `/GraphDriver.Changes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Change {
    /// `/path`.
    pub path: String,
    /// 0 modify, 1 add, 2 delete (Docker's `archive.ChangeType`).
    pub kind: u8,
}

/// `/GraphDriver.Changes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChangesResponse {
    /// The changes.
    pub changes: Vec<Change>,
    /// Empty on success.
    pub err: String,
}

/// `/GraphDriver.ApplyDiff` and `DiffSize`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SizeResponse {
    /// Bytes.
    pub size: u64,
    /// Empty on success.
    pub err: String,
}

/// What the driver can promise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Capabilities {
    /// Whether Diff gives back the very tar ApplyDiff took. Ours does not
    /// promise it (tar headers are rebuilt), so dockerd's `save` uses its
    /// tar-split metadata instead and stays byte-identical.
    pub reproduces_exact_diffs: bool,
}

/// `/GraphDriver.Capabilities`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CapabilitiesResponse {
    /// The capabilities.
    pub capabilities: Capabilities,
}
