//! A tar stream reader for hostile input.
//!
//! Layer tars come from anywhere, so this reader decides every question on
//! which tar readers have disagreed (the ground for entry smuggling) the
//! strict way, and refuses rather than guesses:
//!
//! - PAX records are length-delimited, values may hold any byte (see
//!   [`crate::pax`]); a PAX `size` must match a non-zero header size. A zero
//!   header size with a PAX size is how Go writes files over 8 GiB, and the
//!   PAX size is used, as Go and GNU tar do.
//! - Types that carry no data (links, directories, devices, fifos) must say
//!   size 0: readers differ on whether such data is skipped.
//! - Numbers are octal or GNU base-256; anything else is an error, as is a
//!   bad header checksum.
//!
//! Extension headers (`x`, `g`, `L`, `K`) are folded into the entry they
//! describe, so callers see one [`Header`] per file.

use std::io::{self, Read};

use crate::error::{ArchiveError, Result};
use crate::pax::{self, MAX_EXTENSION, Pax};

const BLOCK: usize = 512;

/// One entry's metadata, extensions applied.
#[derive(Debug, Clone, Default)]
pub(crate) struct Header {
    /// The entry's name (PAX `path`, GNU long name, or ustar prefix/name).
    pub name: Vec<u8>,
    /// Link target (PAX `linkpath`, GNU long link, or the header's).
    pub link: Vec<u8>,
    /// The type flag; `b'0'` also for the old `\0` and a contiguous `7`.
    pub kind: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Bytes of data that follow.
    pub size: u64,
    pub mtime: u64,
    pub devmajor: u32,
    pub devminor: u32,
    /// `SCHILY.xattr.*` records, in stream order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Reads entries one by one from a tar stream.
pub(crate) struct TarReader<R> {
    r: R,
    /// Data bytes of the current entry not yet read.
    left: u64,
    /// Padding after the current entry's data.
    pad: u64,
    done: bool,
}

fn truncated(what: &str) -> ArchiveError {
    ArchiveError::Read(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the tar stream ends inside {what}"),
    ))
}

fn corrupt(why: String) -> ArchiveError {
    ArchiveError::Read(io::Error::new(io::ErrorKind::InvalidData, why))
}

/// Why a name no filesystem call could take is refused.
pub(crate) const NAME_TOO_LONG: &str = "name longer than PATH_MAX (4095 bytes)";

fn hostile(name: &[u8], reason: String) -> ArchiveError {
    ArchiveError::Hostile {
        name: crate::error::excerpt(name),
        reason,
    }
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` on a clean end before any.
fn read_block(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the tar stream ends inside a header",
                ));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// A numeric field: octal (NUL or space padded, empty meaning 0) or GNU
/// base-256 (high bit set).
fn number(field: &[u8], what: &str) -> Result<u64> {
    if let Some(&first) = field.first()
        && first & 0x80 != 0
    {
        if first == 0xff {
            return Err(corrupt(format!("negative {what} in a tar header")));
        }
        let mut v: u64 = u64::from(first & 0x7f);
        for &b in &field[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or_else(|| corrupt(format!("{what} in a tar header does not fit 64 bits")))?;
        }
        return Ok(v);
    }
    // Header fields are at most 12 bytes: trim on the stack, not in a Vec
    // (seven fields per header).
    let mut buf = [0u8; 12];
    let mut len = 0;
    for &b in field.iter().filter(|b| **b != 0 && **b != b' ') {
        let Some(slot) = buf.get_mut(len) else {
            return Err(corrupt(format!("{what} in a tar header is not a number")));
        };
        *slot = b;
        len += 1;
    }
    let trimmed = &buf[..len];
    if trimmed.is_empty() {
        return Ok(0);
    }
    let s = std::str::from_utf8(trimmed).map_err(|_| corrupt(format!("{what} in a tar header is not a number")))?;
    u64::from_str_radix(s, 8).map_err(|_| corrupt(format!("{what} {s:?} in a tar header is not octal")))
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    &field[..end]
}

/// Types that carry no data.
fn header_only(kind: u8) -> bool {
    matches!(kind, b'1' | b'2' | b'3' | b'4' | b'5' | b'6')
}

impl<R: Read> TarReader<R> {
    pub(crate) fn new(r: R) -> Self {
        Self {
            r,
            left: 0,
            pad: 0,
            done: false,
        }
    }

    /// The next entry, or `None` at the end of the archive. Unread data of
    /// the previous entry is skipped.
    pub(crate) fn next(&mut self) -> Result<Option<Header>> {
        self.skip_rest()?;
        let mut pax = Pax::default();
        let (mut long_name, mut long_link) = (None, None);
        loop {
            if self.done {
                return Ok(None);
            }
            let mut block = [0u8; BLOCK];
            if !read_block(&mut self.r, &mut block).map_err(ArchiveError::Read)? || block.iter().all(|b| *b == 0) {
                // One zero block (or a clean end) ends the archive; the
                // second zero block, and anything after, is not read.
                self.done = true;
                return Ok(None);
            }
            let h = parse_block(&block)?;
            let size = h.size;
            match h.kind {
                b'x' | b'g' | b'L' | b'K' => {
                    if size > MAX_EXTENSION {
                        return Err(hostile(
                            &h.name,
                            format!("extension header of {size} bytes (limit {MAX_EXTENSION})"),
                        ));
                    }
                    let mut data = vec![0u8; size as usize];
                    self.r
                        .read_exact(&mut data)
                        .map_err(|_| truncated("an extension header"))?;
                    self.skip(padding(size)).map_err(|_| truncated("an extension header"))?;
                    match h.kind {
                        // Global headers apply to later entries in theory; a
                        // layer has no use for them and they are ignored.
                        b'g' => {}
                        b'x' => pax::parse(&data, &mut pax).map_err(|r| hostile(b"PAX header", r))?,
                        b'L' => long_name = Some(pax::long_name(&data)),
                        _ => long_link = Some(pax::long_name(&data)),
                    }
                    continue;
                }
                _ => {}
            }
            let mut h = h;
            if let Some(n) = pax.path.take().or(long_name) {
                h.name = n;
            }
            if let Some(l) = pax.linkpath.take().or(long_link) {
                h.link = l;
            }
            // Refused here, before its type is judged by its name.
            if h.name.len() > overlay_fs::PATH_MAX {
                return Err(hostile(&h.name, NAME_TOO_LONG.into()));
            }
            // Pre-POSIX archives marked directories by a trailing slash
            // only. Judged on the entry's final name: the header's own name
            // field is cut at 100 bytes when a GNU long name or a PAX path
            // follows, and a cut can end in '/'.
            if h.kind == b'0' && h.name.last() == Some(&b'/') {
                h.kind = b'5';
            }
            if let Some(psize) = pax.size {
                if h.size != 0 && h.size != psize {
                    return Err(hostile(
                        &h.name,
                        format!("PAX size {psize} disagrees with the header's size {}", h.size),
                    ));
                }
                h.size = psize;
            }
            if header_only(h.kind) && h.size != 0 {
                return Err(hostile(
                    &h.name,
                    format!("a '{}' entry with {} bytes of data", h.kind as char, h.size),
                ));
            }
            h.uid = pax.uid.unwrap_or(h.uid);
            h.gid = pax.gid.unwrap_or(h.gid);
            h.mtime = pax.mtime.unwrap_or(h.mtime);
            h.xattrs = pax.xattrs;
            self.left = h.size;
            self.pad = padding(h.size);
            return Ok(Some(h));
        }
    }

    /// Reads the current entry's data.
    pub(crate) fn data(&mut self, buf: &mut [u8]) -> Result<usize> {
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = loop {
            match self.r.read(&mut buf[..want]) {
                Ok(0) => return Err(truncated("file data")),
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ArchiveError::Read(e)),
            }
        };
        self.left -= n as u64;
        Ok(n)
    }

    /// Data bytes of the current entry not yet read.
    pub(crate) fn left(&self) -> u64 {
        self.left
    }

    fn skip_rest(&mut self) -> Result<()> {
        let n = self.left + self.pad;
        (self.left, self.pad) = (0, 0);
        self.skip(n).map_err(|_| truncated("file data"))
    }

    fn skip(&mut self, n: u64) -> io::Result<()> {
        let copied = io::copy(&mut (&mut self.r).take(n), &mut io::sink())?;
        if copied < n {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short"));
        }
        Ok(())
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// Parses one header block, checking its checksum.
fn parse_block(b: &[u8; BLOCK]) -> Result<Header> {
    let stored = number(&b[148..156], "checksum")?;
    let unsigned: u64 = b
        .iter()
        .enumerate()
        .map(|(i, &v)| if (148..156).contains(&i) { 32 } else { u64::from(v) })
        .sum();
    let signed: i64 = b
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if (148..156).contains(&i) {
                32
            } else {
                i64::from(v as i8)
            }
        })
        .sum();
    if stored != unsigned && stored as i64 != signed {
        return Err(corrupt(
            "tar header checksum mismatch: not a tar stream, or a corrupt one".into(),
        ));
    }
    let magic = &b[257..263];
    let ustar = magic == b"ustar\0";
    let mut name = cstr(&b[0..100]).to_vec();
    if ustar {
        let prefix = cstr(&b[345..500]);
        if !prefix.is_empty() {
            let mut full = prefix.to_vec();
            full.push(b'/');
            full.extend_from_slice(&name);
            name = full;
        }
    }
    let mut kind = b[156];
    if kind == 0 || kind == b'7' {
        kind = b'0';
    }
    let dev = |f: &[u8], what| -> Result<u32> {
        let v = number(f, what)?;
        u32::try_from(v).map_err(|_| corrupt(format!("{what} {v} does not fit 32 bits")))
    };
    let (devmajor, devminor) = if matches!(kind, b'3' | b'4') {
        (dev(&b[329..337], "device major")?, dev(&b[337..345], "device minor")?)
    } else {
        (0, 0)
    };
    Ok(Header {
        link: cstr(&b[157..257]).to_vec(),
        kind,
        mode: (number(&b[100..108], "mode")? & 0o7777) as u32,
        uid: number(&b[108..116], "uid")?,
        gid: number(&b[116..124], "gid")?,
        size: number(&b[124..136], "size")?,
        mtime: number(&b[136..148], "mtime")?,
        devmajor,
        devminor,
        xattrs: Vec::new(),
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number(b"0000644\0", "m").unwrap(), 0o644);
        assert_eq!(number(b"  644 \0", "m").unwrap(), 0o644);
        assert_eq!(number(b"\0\0\0\0", "m").unwrap(), 0);
        assert_eq!(number(&[0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0], "s").unwrap(), 2 << 32);
        assert!(number(b"0009\0", "m").is_err());
        assert!(number(&[0xff, 0xff], "s").is_err());
        assert!(number(&[0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], "s").is_err());
    }

    #[test]
    fn padding_rounds_to_blocks() {
        assert_eq!((padding(0), padding(1), padding(512), padding(513)), (0, 511, 0, 511));
    }
}
