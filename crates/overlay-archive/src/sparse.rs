//! GNU sparse files: entries that store only a file's data segments, with
//! a map of where each goes and the file's real length, so a 9 GiB disk
//! image with a few megabytes in it takes a few megabytes in the tar.
//!
//! GNU tar writes three forms, and bsdtar the last:
//!
//! - **old GNU** (`--format=gnu` or `oldgnu` with `-S`): type `S`, up to
//!   four `(offset, size)` pairs in the header, more in 512-byte extension
//!   blocks after it (21 each), the real size in the header's `realsize`.
//! - **PAX 0.0 / 0.1** (`--format=posix --sparse-version=0.x`): records
//!   `GNU.sparse.size`, `GNU.sparse.numblocks` and either repeated
//!   `GNU.sparse.offset` / `GNU.sparse.numbytes` pairs (0.0) or one
//!   `GNU.sparse.map=off,size,...` (0.1).
//! - **PAX 1.0** (GNU tar 1.34's `-S --format=posix`, bsdtar's default):
//!   `GNU.sparse.major=1`, `minor=0`, `name` (the header's own name is
//!   `DIR/GNUSparseFile.PID/NAME`) and `realsize`; the map is decimal
//!   numbers, one per line (count, then offset and size pairs), at the
//!   start of the data, padded to a block.
//!
//! Readers disagree on maps a writer never makes, and a disagreement on
//! how much data an entry holds is a disagreement on where the next entry
//! starts. So a map is accepted only where every reader reads it alike
//! ([`SparseMap::check`]): segments in order without overlap, inside the
//! real size, the last one ending exactly at it (GNU tar sets the length
//! by where its last write or truncation ends, Go by the real size), the
//! segments' sizes adding up to the data the entry stores (GNU tar reads
//! each segment from a fresh 512-byte block, Go reads them back to back:
//! so every segment but the last with data is a multiple of 512 bytes),
//! at most [`MAX_SEGMENTS`] of them. Anything else is refused with the
//! rule it breaks.
//!
//! Applying one ([`write_data`]) writes each segment at its offset and
//! then sets the length: holes stay holes.

use std::io::{Read, SeekFrom};
use std::path::Path;

use overlay_fs::{ErrorKind, File};

use crate::error::{ArchiveError, Result};
use crate::pax::decimal;
use crate::reader::{Header, TarReader, number};

/// The most segments one sparse map may have: a real disk image has a few
/// thousand extents; a hostile map must not make the reader allocate
/// gigabytes (16 bytes a segment: 4 MiB at most).
pub(crate) const MAX_SEGMENTS: usize = 1 << 18;

const BLOCK: u64 = 512;

/// Where a data segment of a sparse file goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Offset in the extracted file.
    pub offset: u64,
    /// Bytes of the entry's data that go there.
    pub len: u64,
}

/// A sparse file's layout: its segments take the entry's data in turn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SparseMap {
    /// The extracted file's length.
    pub real_size: u64,
    pub segments: Vec<Segment>,
}

impl SparseMap {
    /// Checks the map against the rules in the module docs; `stored` is
    /// the segment data the entry carries. The error names the rule.
    pub(crate) fn check(&self, stored: u64) -> std::result::Result<(), String> {
        if self.real_size > i64::MAX as u64 {
            return Err(format!(
                "sparse real size {} is beyond the largest file offset",
                self.real_size
            ));
        }
        let mut end = 0u64;
        let mut data = 0u64;
        let last_data = self.segments.iter().rposition(|s| s.len > 0);
        for s in &self.segments {
            if s.offset < end {
                return Err(format!(
                    "sparse segment at {} overlaps or precedes the one before it (ending at {end})",
                    s.offset
                ));
            }
            end = s
                .offset
                .checked_add(s.len)
                .filter(|e| *e <= self.real_size)
                .ok_or_else(|| {
                    format!(
                        "sparse segment of {} bytes at {} runs past the real size {}",
                        s.len, s.offset, self.real_size
                    )
                })?;
            data += s.len;
        }
        let unaligned = self
            .segments
            .iter()
            .enumerate()
            .find(|(i, s)| Some(*i) != last_data && !s.len.is_multiple_of(BLOCK));
        if let Some((_, s)) = unaligned {
            return Err(format!(
                "sparse segment of {} bytes at {} is not a multiple of 512 and another follows: \
                 tar readers disagree on where the next one's data starts",
                s.len, s.offset
            ));
        }
        if end != self.real_size {
            return Err(format!(
                "sparse map ends at {end}, not at the real size {}: tar readers disagree on the file's length",
                self.real_size
            ));
        }
        if data != stored {
            return Err(format!(
                "sparse segments hold {data} bytes but the entry stores {stored}"
            ));
        }
        Ok(())
    }

    /// Where the data ends: the file needs `set_len` when it ends in a hole.
    fn data_end(&self) -> u64 {
        self.segments
            .iter()
            .rev()
            .find(|s| s.len > 0)
            .map_or(0, |s| s.offset + s.len)
    }
}

// ---------------------------------------------------------------- old GNU

/// The four map entries of an old GNU header, 24 bytes each.
pub(crate) const OLD_GNU_MAP: std::ops::Range<usize> = 386..482;
/// Nonzero when an extension block follows the header.
pub(crate) const OLD_GNU_EXTENDED: usize = 482;
/// The real size in an old GNU header.
pub(crate) const OLD_GNU_REAL_SIZE: std::ops::Range<usize> = 483..495;
/// The 21 map entries of an extension block, and its own flag after them.
const EXT_MAP: std::ops::Range<usize> = 0..504;
const EXT_EXTENDED: usize = 504;

/// Reads the map of a GNU `S` header: its entries, then those of the
/// extension blocks `next_block` returns (they follow the header and are
/// not part of the entry's size). `name` is the entry's, for errors.
pub(crate) fn old_gnu_map(
    header: &[u8; 512],
    name: &[u8],
    mut next_block: impl FnMut() -> Result<[u8; 512]>,
) -> Result<SparseMap> {
    let hostile = |reason: String| crate::reader::hostile(name, reason);
    let real_size = number(&header[OLD_GNU_REAL_SIZE], "sparse real size").map_err(|e| e.into_error(name))?;
    let mut segments = Vec::new();
    let mut ended = old_gnu_entries(&header[OLD_GNU_MAP], &mut segments).map_err(hostile)?;
    let mut extended = header[OLD_GNU_EXTENDED] != 0;
    while extended {
        if ended {
            // GNU tar stops at the end mark and takes the extension block
            // for data; Go reads it as map.
            return Err(hostile(
                "sparse map ends before the extension block that follows it".into(),
            ));
        }
        if segments.len() > MAX_SEGMENTS {
            return Err(hostile(format!("sparse map of more than {MAX_SEGMENTS} segments")));
        }
        let block = next_block()?;
        ended = old_gnu_entries(&block[EXT_MAP], &mut segments).map_err(hostile)?;
        extended = block[EXT_EXTENDED] != 0;
    }
    Ok(SparseMap { real_size, segments })
}

/// Appends the 24-byte entries of `area`; `Ok(true)` once an empty entry
/// ended the map.
fn old_gnu_entries(area: &[u8], out: &mut Vec<Segment>) -> std::result::Result<bool, String> {
    for entry in area.chunks_exact(24) {
        let (offset, len) = entry.split_at(12);
        // GNU tar ends the map at an empty size field, Go at an empty
        // offset field: both empty or neither.
        match (offset[0] == 0, len[0] == 0) {
            (true, true) => return Ok(true),
            (false, false) => {}
            _ => {
                return Err(
                    "sparse map entry with one of offset and size empty: tar readers disagree on where the map ends"
                        .into(),
                );
            }
        }
        let field = |f: &[u8], what| number(f, what).map_err(|e| e.reason());
        out.push(Segment {
            offset: field(offset, "sparse offset")?,
            len: field(len, "sparse size")?,
        });
    }
    Ok(false)
}

// -------------------------------------------------------------------- PAX

/// What an entry's `GNU.sparse.*` PAX records say.
#[derive(Debug, Default)]
pub(crate) struct PaxSparse {
    /// `GNU.sparse.name`: the entry's real name (GNU tar lets it win over
    /// `path`, whatever the order).
    pub name: Option<Vec<u8>>,
    /// `GNU.sparse.realsize` or `GNU.sparse.size`.
    pub real_size: Option<u64>,
    /// 0.0 and 0.1: the map from the records. `None` for 1.0, whose map
    /// opens the entry's data ([`MapReader`]).
    pub segments: Option<Vec<Segment>>,
}

/// Interprets `GNU.sparse.*` records (keys without the prefix, in stream
/// order). An error names the rule broken.
pub(crate) fn pax_records(records: &[(Vec<u8>, Vec<u8>)]) -> std::result::Result<PaxSparse, String> {
    let mut out = PaxSparse::default();
    let (mut major, mut minor) = (None, None);
    let mut numblocks: Option<u64> = None;
    let mut map: Option<Vec<Segment>> = None;
    // 0.0: offset and numbytes alternate, counted against numblocks.
    let mut pending_offset: Option<u64> = None;
    let mut pairs: Vec<Segment> = Vec::new();
    let mut real_sizes: Vec<u64> = Vec::new();
    for (key, value) in records {
        let key_str = String::from_utf8_lossy(key);
        let num = || decimal(value).ok_or_else(|| format!("GNU.sparse.{key_str} is not a number"));
        match key.as_slice() {
            b"major" => major = Some(num()?),
            b"minor" => minor = Some(num()?),
            b"name" => out.name = Some(value.clone()),
            b"realsize" | b"size" => real_sizes.push(num()?),
            b"numblocks" => {
                if numblocks.is_some() {
                    // GNU tar starts the map over at each one.
                    return Err("GNU.sparse.numblocks given twice".into());
                }
                if map.is_some() || !pairs.is_empty() || pending_offset.is_some() {
                    return Err("GNU.sparse.numblocks after the map it counts".into());
                }
                let n = num()?;
                if n > MAX_SEGMENTS as u64 {
                    return Err(format!("sparse map of {n} segments (limit {MAX_SEGMENTS})"));
                }
                numblocks = Some(n);
            }
            b"offset" if pending_offset.is_some() => {
                return Err("GNU.sparse.offset twice without a GNU.sparse.numbytes".into());
            }
            b"offset" => pending_offset = Some(num()?),
            b"numbytes" => {
                let offset = pending_offset
                    .take()
                    .ok_or("GNU.sparse.numbytes without a GNU.sparse.offset before it")?;
                pairs.push(Segment { offset, len: num()? });
            }
            b"map" => {
                if map.is_some() {
                    return Err("GNU.sparse.map given twice".into());
                }
                map = Some(parse_map_record(value)?);
            }
            // Unknown GNU.sparse keys are ignored, as GNU tar and Go do.
            _ => {}
        }
    }
    if pending_offset.is_some() {
        return Err("GNU.sparse.offset without a GNU.sparse.numbytes after it".into());
    }
    if let [first, rest @ ..] = real_sizes.as_slice() {
        // GNU tar takes the last of the two names, Go prefers `size`.
        if rest.iter().any(|r| r != first) {
            return Err("GNU.sparse.size and GNU.sparse.realsize disagree".into());
        }
        out.real_size = Some(*first);
    }
    let version = match (major, minor) {
        (None, None) | (Some(0), None) | (Some(0), Some(0 | 1)) => 0,
        (Some(1), Some(0)) => 1,
        (None, Some(_)) => return Err("GNU.sparse.minor without GNU.sparse.major".into()),
        (Some(a), b) => {
            return Err(format!(
                "unknown GNU sparse version {a}.{}",
                b.map_or("?".into(), |b| b.to_string())
            ));
        }
    };
    if version == 1 {
        if map.is_some() || !pairs.is_empty() || numblocks.is_some() {
            return Err("GNU sparse 1.0 with a map in its records too".into());
        }
        return Ok(out);
    }
    let segments = match (map, pairs.is_empty()) {
        (Some(_), false) => return Err("both GNU.sparse.map and GNU.sparse.offset records".into()),
        (Some(map), true) => map,
        (None, false) => pairs,
        (None, true) => {
            return Err(
                if out.real_size.is_some() || out.name.is_some() || numblocks.is_some() {
                    "GNU sparse records without a sparse map".into()
                } else {
                    "GNU sparse records without a version or a map".into()
                },
            );
        }
    };
    // Go requires the count; GNU tar refuses entries beyond it.
    match numblocks {
        Some(n) if n == segments.len() as u64 => {}
        Some(n) => {
            return Err(format!(
                "GNU.sparse.numblocks says {n} but the map has {} segments",
                segments.len()
            ));
        }
        None => return Err("GNU sparse map without GNU.sparse.numblocks".into()),
    }
    if segments.is_empty() {
        // GNU tar then takes the entry for a plain file of the real size.
        return Err("GNU sparse map without segments".into());
    }
    out.segments = Some(segments);
    Ok(out)
}

/// `GNU.sparse.map=off,size,off,size...`
fn parse_map_record(value: &[u8]) -> std::result::Result<Vec<Segment>, String> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    let numbers: Vec<&[u8]> = value.split(|b| *b == b',').collect();
    if !numbers.len().is_multiple_of(2) {
        return Err("GNU.sparse.map has an odd count of numbers".into());
    }
    if numbers.len() / 2 > MAX_SEGMENTS {
        return Err(format!("sparse map of more than {MAX_SEGMENTS} segments"));
    }
    numbers
        .chunks_exact(2)
        .map(|p| match (decimal(p[0]), decimal(p[1])) {
            (Some(offset), Some(len)) => Ok(Segment { offset, len }),
            _ => Err("GNU.sparse.map holds something other than numbers".into()),
        })
        .collect()
}

/// Reads the 1.0 map that opens a sparse entry's data: lines of decimal
/// digits (count, then offset and size pairs), then NUL padding to the
/// end of the block. Fed one block at a time.
#[derive(Debug, Default)]
pub(crate) struct MapReader {
    count: Option<u64>,
    pending: Option<u64>,
    segments: Vec<Segment>,
    /// The number being read, if a digit of it was seen.
    current: Option<u64>,
}

impl MapReader {
    /// Feeds the next block; `Ok(true)` once the map is complete (the
    /// rest of that block is padding).
    pub(crate) fn feed(&mut self, block: &[u8; 512]) -> std::result::Result<bool, String> {
        for &b in block {
            match b {
                b'0'..=b'9' => {
                    let v = self.current.unwrap_or(0);
                    let v = v
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u64::from(b - b'0')))
                        .ok_or("number in the sparse map does not fit 64 bits")?;
                    self.current = Some(v);
                }
                b'\n' => {
                    let v = self.current.take().ok_or("empty line in the sparse map")?;
                    if self.take(v)? {
                        return Ok(true);
                    }
                }
                _ => {
                    return Err(format!(
                        "byte {b:#04x} in the sparse map, where digits or a newline belong"
                    ));
                }
            }
        }
        Ok(false)
    }

    /// Takes one number; `Ok(true)` when it was the last.
    fn take(&mut self, v: u64) -> std::result::Result<bool, String> {
        let Some(count) = self.count else {
            if v > MAX_SEGMENTS as u64 {
                return Err(format!("sparse map of {v} segments (limit {MAX_SEGMENTS})"));
            }
            self.count = Some(v);
            return Ok(v == 0);
        };
        match self.pending.take() {
            None => self.pending = Some(v),
            Some(offset) => self.segments.push(Segment { offset, len: v }),
        }
        Ok(self.segments.len() as u64 == count && self.pending.is_none())
    }

    /// The segments read.
    pub(crate) fn into_segments(self) -> Vec<Segment> {
        self.segments
    }
}

// ---------------------------------------------------------------- writing

/// Writes the current entry's data into `file`, created empty for it: a
/// plain file's data as it comes; a sparse file's segments each at its
/// offset, then its length, so holes stay holes (nothing is written for
/// them). `path` and `name` are for errors.
///
/// # Errors
///
/// The stream fails ([`ArchiveError::Read`]); a write or seek fails
/// ([`ArchiveError::Apply`]); the sparse length is more than the
/// filesystem takes (`EFBIG`: [`ArchiveError::Hostile`], since the tar
/// asks for it).
pub(crate) fn write_data<R: Read>(
    tar: &mut TarReader<R>,
    h: &Header,
    file: &mut dyn File,
    buf: &mut Vec<u8>,
    path: &Path,
    name: &str,
) -> Result<()> {
    // A sparse file's length is the tar's to choose, not its data's: past
    // what the filesystem takes, the tar is refused.
    let refuse = |source: overlay_fs::Error| match &h.sparse {
        Some(map) if source.kind() == ErrorKind::FileTooLarge => ArchiveError::Hostile {
            name: name.to_string(),
            reason: format!("sparse real size {} is more than the filesystem takes", map.real_size),
        },
        _ => ArchiveError::Apply {
            name: name.to_string(),
            source,
        },
    };
    let apply = |op: &'static str, e: std::io::Error| {
        refuse(overlay_fs::Error::from_errno(op, path, e.raw_os_error().unwrap_or(EIO)))
    };
    // One read and one write per chunk: most files take one. The buffer
    // only grows (reads stop at the entry's end), so a small file does not
    // cost a zero-fill of the next chunk.
    let want = CHUNK.min(usize::try_from(tar.left()).unwrap_or(CHUNK)).max(1);
    if buf.len() < want {
        buf.resize(want, 0);
    }
    let Some(map) = &h.sparse else {
        return copy(tar, file, buf, u64::MAX, &apply);
    };
    for s in map.segments.iter().filter(|s| s.len > 0) {
        file.seek(SeekFrom::Start(s.offset)).map_err(|e| apply("lseek", e))?;
        copy(tar, file, buf, s.len, &apply)?;
    }
    if map.data_end() < map.real_size {
        file.set_len(map.real_size).map_err(refuse)?;
    }
    Ok(())
}

/// Copies up to `limit` bytes of the entry's data (all that is left when
/// `limit` is larger).
fn copy<R: Read>(
    tar: &mut TarReader<R>,
    file: &mut dyn File,
    buf: &mut [u8],
    limit: u64,
    apply: &dyn Fn(&'static str, std::io::Error) -> ArchiveError,
) -> Result<()> {
    let mut left = limit.min(tar.left());
    while left > 0 {
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = tar.data(&mut buf[..n])?;
        file.write_all(&buf[..n]).map_err(|e| apply("write", e))?;
        left -= n as u64;
    }
    Ok(())
}

/// Bytes of file data moved per read and write.
const CHUNK: usize = 1 << 20;

/// Reported for a failed write that carries no errno of its own.
const EIO: i32 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    fn map(real_size: u64, segs: &[(u64, u64)]) -> SparseMap {
        SparseMap {
            real_size,
            segments: segs.iter().map(|&(offset, len)| Segment { offset, len }).collect(),
        }
    }

    #[test]
    fn maps_real_writers_make_pass() {
        // GNU tar: a trailing empty segment at the real size.
        map(1 << 20, &[(4096, 4096), (1044480, 4096), (1 << 20, 0)])
            .check(8192)
            .unwrap();
        // bsdtar: an empty file of holes, and data up to the end.
        map(2 << 20, &[(0, 0), (2 << 20, 0)]).check(0).unwrap();
        map(1 << 20, &[(4096, 4096), (1044480, 4096)]).check(8192).unwrap();
        // The last data segment may be any length.
        map(1000, &[(0, 512), (900, 100)]).check(612).unwrap();
        map(0, &[]).check(0).unwrap();
    }

    #[test]
    fn hostile_maps_name_their_rule() {
        let cases: [(SparseMap, u64, &str); 8] = [
            (map(100, &[(50, 10), (40, 5)]), 15, "overlaps or precedes"),
            (map(100, &[(0, 60), (50, 10)]), 70, "overlaps or precedes"),
            (map(100, &[(90, 20)]), 20, "runs past the real size"),
            (map(100, &[(u64::MAX, 2)]), 2, "runs past the real size"),
            (map(100, &[(0, 10)]), 10, "not at the real size"),
            (map(100, &[(0, 100)]), 99, "hold 100 bytes but the entry stores 99"),
            (map(2000, &[(0, 100), (1000, 1000)]), 1100, "not a multiple of 512"),
            (
                map(u64::MAX, &[(0, 0), (u64::MAX, 0)]),
                0,
                "beyond the largest file offset",
            ),
        ];
        for (m, stored, want) in cases {
            let err = m.check(stored).unwrap_err();
            assert!(err.contains(want), "{m:?}: {err}");
        }
    }

    fn records(list: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        list.iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn pax_versions() {
        let v00 = pax_records(&records(&[
            ("size", "2048"),
            ("numblocks", "2"),
            ("offset", "0"),
            ("numbytes", "512"),
            ("offset", "2048"),
            ("numbytes", "0"),
        ]))
        .unwrap();
        assert_eq!(v00.real_size, Some(2048));
        assert_eq!(v00.segments.unwrap().len(), 2);
        let v01 = pax_records(&records(&[
            ("size", "2048"),
            ("numblocks", "2"),
            ("name", "real"),
            ("map", "0,512,2048,0"),
        ]))
        .unwrap();
        assert_eq!(v01.name.as_deref(), Some(&b"real"[..]));
        assert_eq!(v01.segments.unwrap()[1], Segment { offset: 2048, len: 0 });
        let v10 = pax_records(&records(&[
            ("major", "1"),
            ("minor", "0"),
            ("name", "n"),
            ("realsize", "9"),
        ]))
        .unwrap();
        assert_eq!((v10.real_size, v10.segments), (Some(9), None));
    }

    #[test]
    fn pax_records_readers_disagree_on_are_refused() {
        let cases: [(&[(&str, &str)], &str); 12] = [
            (&[("major", "2"), ("minor", "0")], "unknown GNU sparse version 2.0"),
            (&[("major", "1"), ("minor", "1")], "unknown GNU sparse version 1.1"),
            (&[("minor", "0")], "minor without"),
            (&[("name", "x")], "without a sparse map"),
            (&[("realsize", "10")], "without a sparse map"),
            (
                &[("numblocks", "1"), ("map", "0,1"), ("numblocks", "1")],
                "numblocks given twice",
            ),
            (&[("map", "0,1"), ("numblocks", "1")], "numblocks after the map"),
            (&[("numblocks", "2"), ("map", "0,1")], "says 2 but the map has 1"),
            (&[("numblocks", "1"), ("offset", "0"), ("offset", "1")], "offset twice"),
            (&[("numblocks", "1"), ("numbytes", "1")], "without a GNU.sparse.offset"),
            (
                &[("size", "1"), ("realsize", "2"), ("numblocks", "1"), ("map", "0,1")],
                "disagree",
            ),
            (&[("numblocks", "99999999")], "limit"),
        ];
        for (list, want) in cases {
            let err = pax_records(&records(list)).unwrap_err();
            assert!(err.contains(want), "{list:?}: {err}");
        }
        let err = pax_records(&records(&[("numblocks", "0"), ("map", "")])).unwrap_err();
        assert!(err.contains("without segments"), "{err}");
    }

    fn feed(text: &[u8]) -> std::result::Result<(bool, Vec<Segment>), String> {
        let mut r = MapReader::default();
        let mut done = false;
        for chunk in text.chunks(512) {
            let mut block = [0u8; 512];
            block[..chunk.len()].copy_from_slice(chunk);
            done = r.feed(&block)?;
            if done {
                break;
            }
        }
        Ok((done, r.into_segments()))
    }

    #[test]
    fn map_1_0_spans_blocks() {
        let (done, segs) = feed(b"3\n4096\n4096\n1044480\n4096\n1048576\n0\n").unwrap();
        assert!(done);
        assert_eq!(segs.len(), 3);
        let mut long = b"100\n".to_vec();
        for i in 0..100u64 {
            long.extend_from_slice(format!("{}\n512\n", i * 1024).as_bytes());
        }
        assert!(long.len() > 512);
        let (done, segs) = feed(&long).unwrap();
        assert!(done && segs.len() == 100);
        assert_eq!(feed(b"0\n").unwrap(), (true, Vec::new()));
        assert!(feed(b"2\n0\n1\n").is_err(), "padding before the map is complete");
        for bad in [
            &b"+1\n"[..],
            b"1\n\n",
            b"1\n 0\n1\n",
            b"99999999999\n",
            b"1\n0\n99999999999999999999999\n",
        ] {
            assert!(feed(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
