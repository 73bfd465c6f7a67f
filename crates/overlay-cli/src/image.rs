//! Reading images: a `docker save` tar (or its unpacked directory), an OCI
//! image layout directory, or an OCI archive (a tar of a layout).
//!
//! Everything here only reads and checks the image's metadata (manifests,
//! configs, digests of the small JSON blobs); layer blobs are streamed and
//! verified by `import`. Nothing in an image is trusted: names are looked up
//! inside the image only (a directory through `openat2(RESOLVE_IN_ROOT)`, a
//! tar through its own index), JSON documents are size-limited, digests are
//! parsed strictly, and sizes given by manifests are checked.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use overlay_fs::{Fs, HostFs};
use serde::Deserialize;

use crate::error::{Failure, Result, fail};
use crate::stream::{Decoder, Digest, excerpt};

/// The largest manifest, index or config this tool reads.
const MAX_JSON: u64 = 16 << 20;

/// Entries an image tar may have (a bound on the index in memory).
const MAX_TAR_ENTRIES: usize = 1_000_000;

/// How an image is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `docker save` output: `manifest.json`, configs, layer tars.
    DockerSave,
    /// An OCI image layout directory: `oci-layout`, `index.json`, `blobs/`.
    OciLayout,
    /// A tar of an OCI image layout.
    OciArchive,
}

impl Format {
    /// The name used in messages and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::DockerSave => "docker-save",
            Self::OciLayout => "oci-layout",
            Self::OciArchive => "oci-archive",
        }
    }
}

/// Files of an image, by their names inside it; shared by the threads of
/// an import, each opening the blob of the layer it applies.
pub trait Source: Sync {
    /// Opens `name` and returns it with its size.
    ///
    /// # Errors
    ///
    /// The image has no such regular file.
    fn open(&self, name: &str) -> Result<(Box<dyn Read + Send + '_>, u64)>;

    /// Does the image have a file `name`?
    fn exists(&self, name: &str) -> bool;
}

/// An image directory; every name resolved inside it.
struct DirSource {
    fs: HostFs,
}

impl Source for DirSource {
    fn open(&self, name: &str) -> Result<(Box<dyn Read + Send + '_>, u64)> {
        let f = self.fs.open_file(Path::new(name)).map_err(|e| {
            Failure::new(format!(
                "cannot open {:?} in the image: {}",
                excerpt(name),
                e.kind().describe()
            ))
        })?;
        let size = f
            .metadata()
            .map_err(|e| {
                Failure::new(format!(
                    "cannot stat {:?} in the image: {}",
                    excerpt(name),
                    e.kind().describe()
                ))
            })?
            .size;
        Ok((Box::new(f), size))
    }

    fn exists(&self, name: &str) -> bool {
        self.fs.metadata(Path::new(name)).is_ok_and(|m| m.is_file())
    }
}

/// A member of an image tar.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Member {
    /// File data at `offset`, `size` bytes.
    File { offset: u64, size: u64 },
    /// A symlink (old `docker save` links repeated layers so).
    Symlink(String),
    /// A hard link to another member.
    Hardlink(String),
}

/// An image tar: an index of its members, read in place.
struct TarSource {
    file: File,
    members: HashMap<String, Member>,
    // Keeps a decompressed copy alive while the source is used.
    _temp: Option<tempfile::TempPath>,
}

/// `name` as a clean relative path (`./a//b` is `a/b`); `None` if `..`
/// would leave the top.
fn normalize(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

impl TarSource {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Failure::new(format!("cannot open {}: {e}", path.display())))?;
        // `docker save | gzip` is common: unpack a compressed image to a
        // temporary file first (members are read at random).
        let mut head = [0u8; 6];
        let n = file
            .read_at(&mut head, 0)
            .map_err(|e| Failure::new(format!("cannot read {}: {e}", path.display())))?;
        let compressed = head[..n].starts_with(&[0x1f, 0x8b]) || head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
        let (file, temp) = if compressed {
            let (mut dec, _) = Decoder::new(&file).map_err(|e| Failure::new(format!("{}: {e}", path.display())))?;
            let mut tmp = tempfile::NamedTempFile::new().map_err(|e| {
                Failure::new(format!(
                    "cannot make a temporary file to unpack {}: {e}",
                    path.display()
                ))
            })?;
            io::copy(&mut dec, tmp.as_file_mut())
                .map_err(|e| Failure::new(format!("cannot decompress {}: {e}", path.display())))?;
            let (mut file, temp) = tmp.into_parts();
            io::Seek::rewind(&mut file)
                .map_err(|e| Failure::new(format!("cannot decompress {}: {e}", path.display())))?;
            (file, Some(temp))
        } else {
            (file, None)
        };
        let members = Self::index(&file).map_err(|e| {
            Failure::new(format!(
                "{} is not an image: not a directory, nor a tar archive ({e})",
                path.display()
            ))
        })?;
        Ok(Self {
            file,
            members,
            _temp: temp,
        })
    }

    fn index(file: &File) -> io::Result<HashMap<String, Member>> {
        let mut archive = tar::Archive::new(file);
        let mut members = HashMap::new();
        for entry in archive.entries_with_seek()? {
            let entry = entry?;
            if members.len() >= MAX_TAR_ENTRIES {
                return Err(io::Error::other(format!("more than {MAX_TAR_ENTRIES} entries")));
            }
            let Ok(name) = std::str::from_utf8(&entry.path_bytes()).map(str::to_owned) else {
                continue;
            };
            let Some(name) = normalize(&name) else { continue };
            let link = || -> Option<String> {
                let l = entry.link_name_bytes()?;
                std::str::from_utf8(&l).ok().map(str::to_owned)
            };
            let member = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => Member::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                },
                tar::EntryType::Symlink => match link() {
                    Some(l) => Member::Symlink(l),
                    None => continue,
                },
                tar::EntryType::Link => match link() {
                    Some(l) => Member::Hardlink(l),
                    None => continue,
                },
                _ => continue,
            };
            members.insert(name, member);
        }
        Ok(members)
    }

    /// The data of member `name`, following links inside the tar only.
    fn resolve(&self, name: &str) -> Option<(u64, u64)> {
        let mut name = normalize(name)?;
        for _ in 0..40 {
            match self.members.get(&name)? {
                Member::File { offset, size } => return Some((*offset, *size)),
                Member::Symlink(target) => {
                    let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    name = if target.starts_with('/') {
                        normalize(target)?
                    } else {
                        normalize(&format!("{dir}/{target}"))?
                    };
                }
                Member::Hardlink(target) => name = normalize(target)?,
            }
        }
        None
    }
}

/// Reads `size` bytes at `offset` of a file, without moving a shared cursor.
struct At<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the image tar is truncated",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Source for TarSource {
    fn open(&self, name: &str) -> Result<(Box<dyn Read + Send + '_>, u64)> {
        let Some((offset, size)) = self.resolve(name) else {
            fail!("the image has no file {:?}", excerpt(name));
        };
        Ok((
            Box::new(At {
                file: &self.file,
                pos: offset,
                end: offset.saturating_add(size),
            }),
            size,
        ))
    }

    fn exists(&self, name: &str) -> bool {
        self.resolve(name).is_some()
    }
}

/// One layer of an image, as its manifest and config describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLayer {
    /// The blob's name inside the image.
    pub blob: String,
    /// Digest of the blob as stored (compressed), when the image states it.
    pub blob_digest: Option<Digest>,
    /// Size of the blob as stored, when the image states it.
    pub size: Option<u64>,
    /// Digest of the uncompressed tar, from the config's `rootfs.diff_ids`.
    pub diff_id: Digest,
}

/// One image of the file: its layers, bottom first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// A name for messages: a tag, a ref name or the manifest's digest.
    pub name: String,
    /// Layers, bottom first.
    pub layers: Vec<ImageLayer>,
}

/// An opened image: where its files are, how it is packed, what it holds.
pub struct Opened {
    /// How the image is packed.
    pub format: Format,
    /// Its files.
    pub source: Box<dyn Source>,
    /// Its images (several for a multi-image `docker save`).
    pub images: Vec<Image>,
}

/// Opens the image at `path`, detects its format and reads (and checks)
/// every manifest and config.
///
/// # Errors
///
/// The path is not an image this tool reads, or its metadata is broken;
/// the message names the file.
pub fn open(path: &Path) -> Result<Opened> {
    let meta =
        std::fs::metadata(path).map_err(|e| Failure::new(format!("cannot open image {}: {e}", path.display())))?;
    let (source, is_dir): (Box<dyn Source>, bool) = if meta.is_dir() {
        let fs = HostFs::new(path).map_err(|e| Failure::new(format!("cannot open image {}: {e}", path.display())))?;
        (Box::new(DirSource { fs }), true)
    } else if meta.is_file() {
        (Box::new(TarSource::open(path)?), false)
    } else {
        fail!(
            "{} is not an image: neither a directory nor a regular file",
            path.display()
        );
    };
    let format = if source.exists("manifest.json") {
        Format::DockerSave
    } else if source.exists("index.json") && source.exists("oci-layout") {
        if is_dir { Format::OciLayout } else { Format::OciArchive }
    } else {
        fail!(
            "{} is not an image: it has neither manifest.json (docker save) nor oci-layout and index.json (OCI layout)",
            path.display()
        );
    };
    let ctx = |e: Failure| e.context(path.display());
    let images = match format {
        Format::DockerSave => docker_save(&*source).map_err(ctx)?,
        Format::OciLayout | Format::OciArchive => oci(&*source).map_err(ctx)?,
    };
    if images.is_empty() {
        fail!("{} holds no image", path.display());
    }
    Ok(Opened { format, source, images })
}

/// Reads a small file of the image whole, refusing oversized ones.
fn read_small(src: &dyn Source, name: &str) -> Result<Vec<u8>> {
    let (r, size) = src.open(name)?;
    if size > MAX_JSON {
        fail!("{name} is {size} bytes, more than the {MAX_JSON} a manifest or config may have");
    }
    let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    r.take(MAX_JSON + 1)
        .read_to_end(&mut out)
        .map_err(|e| Failure::new(format!("cannot read {name}: {e}")))?;
    Ok(out)
}

fn parse_json<'a, T: Deserialize<'a>>(name: &str, bytes: &'a [u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Failure::new(format!("{name} is not a valid document: {e}")))
}

fn check_digest(name: &str, bytes: &[u8], want: &Digest) -> Result<()> {
    let got = Digest::of(bytes);
    if &got != want {
        fail!("{name} does not match its digest: expected {want}, the file is {got}");
    }
    Ok(())
}

/// The digest a content-addressed name states: `blobs/sha256/HEX` or
/// `HEX.json` (the config of an older `docker save`).
fn digest_in_name(name: &str) -> Option<Digest> {
    let name = normalize(name)?;
    let hex = name
        .strip_prefix("blobs/sha256/")
        .or_else(|| name.strip_suffix(".json"))?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Deserialize)]
struct Config {
    rootfs: Option<RootFs>,
}

/// The diff ids of a config document.
fn diff_ids(name: &str, bytes: &[u8]) -> Result<Vec<Digest>> {
    let config: Config = parse_json(name, bytes)?;
    let Some(rootfs) = config.rootfs else {
        fail!("{name} has no rootfs section: it is not an image config")
    };
    rootfs
        .diff_ids
        .iter()
        .enumerate()
        .map(|(i, d)| Digest::parse(d).map_err(|e| Failure::new(format!("{name}: rootfs.diff_ids[{i}]: {e}"))))
        .collect()
}

/// A layer blob as a manifest lists it, before its diff id is known.
struct Blob {
    name: String,
    digest: Option<Digest>,
    size: Option<u64>,
}

fn pair_layers(config: &str, diff_ids: Vec<Digest>, layers: Vec<Blob>) -> Result<Vec<ImageLayer>> {
    if diff_ids.len() != layers.len() {
        fail!(
            "the manifest lists {} layers but {config} lists {} diff ids",
            layers.len(),
            diff_ids.len()
        );
    }
    if layers.is_empty() {
        fail!("the image has no layers");
    }
    Ok(layers
        .into_iter()
        .zip(diff_ids)
        .map(|(b, diff_id)| ImageLayer {
            blob: b.name,
            blob_digest: b.digest,
            size: b.size,
            diff_id,
        })
        .collect())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

fn docker_save(src: &dyn Source) -> Result<Vec<Image>> {
    let bytes = read_small(src, "manifest.json")?;
    let manifests: Vec<DockerManifest> = parse_json("manifest.json", &bytes)?;
    let mut images = Vec::new();
    for (i, m) in manifests.into_iter().enumerate() {
        let name = m
            .repo_tags
            .as_ref()
            .and_then(|t| t.first())
            .cloned()
            .unwrap_or_else(|| format!("image {}", i + 1));
        let ctx = |e: Failure| e.context(format!("{} (manifest.json entry {})", excerpt(&name), i + 1));
        let config = read_small(src, &m.config).map_err(ctx)?;
        if let Some(want) = digest_in_name(&m.config) {
            check_digest(&m.config, &config, &want).map_err(ctx)?;
        }
        let ids = diff_ids(&m.config, &config).map_err(ctx)?;
        let layers = m
            .layers
            .iter()
            .map(|blob| Blob {
                name: blob.clone(),
                digest: digest_in_name(blob).filter(|_| !blob.ends_with(".json")),
                size: None,
            })
            .collect();
        let layers = pair_layers(&m.config, ids, layers).map_err(ctx)?;
        images.push(Image { name, layers });
    }
    Ok(images)
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: Option<String>,
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<Platform>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// Generic shape to tell an index from a manifest when no media type says.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sniff {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The blob a descriptor names, read whole and checked (size, digest).
fn read_blob(src: &dyn Source, desc: &Descriptor) -> Result<(String, Vec<u8>)> {
    let digest = Digest::parse(&desc.digest).map_err(Failure::new)?;
    let name = format!("blobs/sha256/{}", digest.hex());
    let bytes = read_small(src, &name)?;
    if bytes.len() as u64 != desc.size {
        fail!("{name} is {} bytes but its descriptor says {}", bytes.len(), desc.size);
    }
    check_digest(&name, &bytes, &digest)?;
    Ok((name, bytes))
}

/// The Go name of this machine's architecture (`amd64`, `arm64`...).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Image manifests reachable from `descs`, nested indexes followed.
fn collect_manifests(src: &dyn Source, descs: &[Descriptor], depth: u32, out: &mut Vec<Descriptor>) -> Result<()> {
    if depth > 4 {
        fail!("image indexes nest more than 4 deep");
    }
    for desc in descs {
        let annotations = desc.annotations.clone().unwrap_or_default();
        if annotations
            .get("vnd.docker.reference.type")
            .is_some_and(|t| t == "attestation-manifest")
        {
            continue;
        }
        let kind = desc.media_type.clone();
        let is_index = match kind.as_deref() {
            Some(t) if INDEX_TYPES.contains(&t) => true,
            Some(t) if MANIFEST_TYPES.contains(&t) => false,
            Some(t) => fail!(
                "index.json lists {} of media type {:?}, which is not an image",
                desc.digest,
                excerpt(t)
            ),
            None => {
                let (name, bytes) = read_blob(src, desc)?;
                let sniff: Sniff = parse_json(&name, &bytes)?;
                sniff.manifests.is_some() || sniff.media_type.as_deref().is_some_and(|t| INDEX_TYPES.contains(&t))
            }
        };
        if is_index {
            let (name, bytes) = read_blob(src, desc)?;
            let index: Index = parse_json(&name, &bytes)?;
            collect_manifests(src, &index.manifests, depth + 1, out)?;
        } else if !out.iter().any(|d| d.digest == desc.digest) {
            out.push(desc.clone());
        }
    }
    Ok(())
}

fn oci(src: &dyn Source) -> Result<Vec<Image>> {
    let bytes = read_small(src, "index.json")?;
    let index: Index = parse_json("index.json", &bytes)?;
    let mut found = Vec::new();
    collect_manifests(src, &index.manifests, 0, &mut found)?;
    // Keep what runs here: linux on this architecture, or no platform given.
    let arch = host_arch();
    let runnable = |d: &Descriptor| match &d.platform {
        None => true,
        Some(p) => p.os == "linux" && p.architecture == arch,
    };
    let wanted: Vec<Descriptor> = found.iter().filter(|d| runnable(d)).cloned().collect();
    if wanted.is_empty() {
        let platforms: Vec<String> = found
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .map(|p| match &p.variant {
                Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                None => format!("{}/{}", p.os, p.architecture),
            })
            .collect();
        if platforms.is_empty() {
            fail!("index.json lists no image");
        }
        fail!(
            "no image for linux/{arch}: index.json has only {}",
            platforms.join(", ")
        );
    }
    let mut images = Vec::new();
    for desc in wanted {
        let annotations = desc.annotations.clone().unwrap_or_default();
        let name = annotations
            .get("io.containerd.image.name")
            .or_else(|| annotations.get("org.opencontainers.image.ref.name"))
            .cloned()
            .unwrap_or_else(|| desc.digest.clone());
        let ctx = |e: Failure| e.context(format!("image {}", excerpt(&name)));
        let (mname, mbytes) = read_blob(src, &desc).map_err(ctx)?;
        let manifest: Manifest = parse_json(&mname, &mbytes).map_err(ctx)?;
        let (cname, cbytes) = read_blob(src, &manifest.config).map_err(ctx)?;
        let ids = diff_ids(&cname, &cbytes).map_err(ctx)?;
        let mut layers = Vec::new();
        for (i, l) in manifest.layers.iter().enumerate() {
            let digest = Digest::parse(&l.digest)
                .map_err(|e| Failure::new(format!("{mname}: layers[{i}]: {e}")))
                .map_err(ctx)?;
            let media = l.media_type.as_deref().unwrap_or("");
            if !(media.contains(".layer.") || media.contains("rootfs.diff")) {
                return Err(ctx(Failure::new(format!(
                    "{mname}: layers[{i}] has media type {:?}, which is not a layer",
                    excerpt(media)
                ))));
            }
            let blob = format!("blobs/sha256/{}", digest.hex());
            if !src.exists(&blob) && (media.contains("nondistributable") || media.contains("foreign")) {
                return Err(ctx(Failure::new(format!(
                    "layer {} is a foreign layer whose blob is not in the image; fetch it first",
                    digest
                ))));
            }
            layers.push(Blob {
                name: blob,
                digest: Some(digest),
                size: Some(l.size),
            });
        }
        let layers = pair_layers(&cname, ids, layers).map_err(ctx)?;
        images.push(Image { name, layers });
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_are_normalized_and_cannot_climb() {
        assert_eq!(normalize("./a//b/./c").as_deref(), Some("a/b/c"));
        assert_eq!(normalize("a/../b").as_deref(), Some("b"));
        assert_eq!(normalize("../etc/passwd"), None);
        assert_eq!(normalize("/abs/x").as_deref(), Some("abs/x"));
    }

    #[test]
    fn digests_in_names() {
        let hex = "a".repeat(64);
        assert_eq!(digest_in_name(&format!("blobs/sha256/{hex}")).unwrap().hex(), hex);
        assert_eq!(digest_in_name(&format!("{hex}.json")).unwrap().hex(), hex);
        assert!(digest_in_name("config.json").is_none());
        assert!(digest_in_name(&format!("blobs/sha512/{hex}")).is_none());
    }

    #[test]
    fn tar_links_resolve_inside_the_tar_only() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, "one/layer.tar", &b"abc"[..]).unwrap();
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_size(0);
        b.append_link(&mut l, "two/layer.tar", "../one/layer.tar").unwrap();
        b.append_link(&mut l, "three/layer.tar", "../../outside").unwrap();
        b.append_link(&mut l, "loop", "loop").unwrap();
        let data = b.into_inner().unwrap();
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut tmp, &data).unwrap();
        let src = TarSource::open(tmp.path()).unwrap();
        let mut s = String::new();
        src.open("two/layer.tar").unwrap().0.read_to_string(&mut s).unwrap();
        assert_eq!(s, "abc");
        assert!(!src.exists("three/layer.tar"));
        assert!(!src.exists("loop"));
        assert!(src.open("nope").err().unwrap().message.contains("has no file \"nope\""));
    }
}
