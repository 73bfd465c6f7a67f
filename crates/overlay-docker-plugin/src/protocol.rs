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

/// One range of an id map, as Docker's `idtools.IDMap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct IdMap {
    /// First id inside the container.
    #[serde(rename = "ContainerID")]
    pub container_id: u32,
    /// First id on the host.
    #[serde(rename = "HostID")]
    pub host_id: u32,
    /// How many ids.
    #[serde(rename = "Size")]
    pub size: u32,
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
