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
//!   bad header checksum. An octal field is digits between blanks (one
//!   leading NUL, spaces, then trailing spaces and NULs): GNU tar stops at
//!   the first blank and ignores what follows, Go trims and then stops at
//!   a NUL, so `"1 2"`, `"\0\0 7"` or `"12\0x"` would be two numbers, and
//!   are refused as hostile.
//! - One PAX header per entry (GNU tar and Go take the last, others merge
//!   them), not both a GNU long name and a PAX `path` (GNU tar lets the
//!   PAX one win, Go the GNU one), no global header that sets a name, size,
//!   owner, time or xattr for every later entry (GNU tar applies those,
//!   Go and Docker do not).
//! - Sparse files (GNU `S` headers, PAX `GNU.sparse.*` 0.0, 0.1 and 1.0)
//!   are read into a [`SparseMap`] where every reader reads them alike; see
//!   [`crate::sparse`].
//!
//! Extension headers (`x`, `g`, `L`, `K`) are folded into the entry they
//! describe, so callers see one [`Header`] per file.

use std::io::{self, Read};

use crate::error::{ArchiveError, Result};
use crate::pax::{self, MAX_EXTENSION, Pax};
use crate::sparse::{self, MapReader, SparseMap};

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
    /// A sparse file's layout (the entry is then a regular file whose
    /// `size` bytes of data are its segments), checked against the data.
    pub sparse: Option<SparseMap>,
}

impl Header {
    /// The size of the file the entry makes: a sparse file's real size,
    /// else the data's. (Go's `Header.Size`, which Docker adds up.)
    pub(crate) fn file_size(&self) -> u64 {
        self.sparse.as_ref().map_or(self.size, |m| m.real_size)
    }
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

pub(crate) fn hostile(name: &[u8], reason: String) -> ArchiveError {
    ArchiveError::Hostile {
        name: crate::error::excerpt(name),
        reason,
    }
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` on a clean end before any,
/// or after nothing but zeros: end-of-archive padding cut short, which
/// GNU tar also takes for the end (no entry can hide in zeros).
fn read_block(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if buf[..got].iter().all(|b| *b == 0) => return Ok(false),
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

/// Why a numeric header field is refused.
#[derive(Debug)]
pub(crate) enum NumberError {
    /// Not a number to any reader: a corrupt header.
    Corrupt(String),
    /// A number to some readers, another or none to others: hostile.
    Ambiguous(String),
}

impl NumberError {
    pub(crate) fn reason(self) -> String {
        match self {
            Self::Corrupt(r) | Self::Ambiguous(r) => r,
        }
    }

    /// The error for the entry `name`.
    pub(crate) fn into_error(self, name: &[u8]) -> ArchiveError {
        match self {
            Self::Corrupt(r) => corrupt(r),
            Self::Ambiguous(r) => hostile(name, r),
        }
    }
}

/// A numeric field: octal (see the module docs for the blanks allowed,
/// all blanks meaning 0) or GNU base-256 (high bit set).
pub(crate) fn number(field: &[u8], what: &str) -> std::result::Result<u64, NumberError> {
    if let Some(&first) = field.first()
        && first & 0x80 != 0
    {
        if first == 0xff {
            return Err(NumberError::Ambiguous(format!("negative {what} in a tar header")));
        }
        let mut v: u64 = u64::from(first & 0x7f);
        for &b in &field[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or_else(|| NumberError::Corrupt(format!("{what} in a tar header does not fit 64 bits")))?;
        }
        return Ok(v);
    }
    let blank = |b: &u8| *b == 0 || *b == b' ';
    let mut i = usize::from(field.first() == Some(&0));
    while field.get(i) == Some(&b' ') {
        i += 1;
    }
    let digits = field[i..].iter().take_while(|b| (b'0'..=b'7').contains(*b)).count();
    let (digits, rest) = field[i..].split_at(digits);
    if rest.iter().all(blank) && (!digits.is_empty() || field.iter().all(blank)) {
        // At most 12 digits: 36 bits, no overflow.
        return Ok(digits.iter().fold(0, |v, d| v * 8 + u64::from(d - b'0')));
    }
    let shown = String::from_utf8_lossy(field);
    if gnu_reads_a_number(field) {
        Err(NumberError::Ambiguous(format!(
            "{what} field {shown:?} is not plain octal: tar readers read it differently"
        )))
    } else {
        Err(NumberError::Corrupt(format!(
            "{what} {shown:?} in a tar header is not octal"
        )))
    }
}

/// Does GNU tar take `field` for a number (it skips one NUL and any
/// whitespace, reads digits up to a NUL or whitespace and ignores the
/// rest; a NUL right after the blanks is 0; `+`, `-` and a high byte there
/// start its other encodings)?
fn gnu_reads_a_number(field: &[u8]) -> bool {
    let mut w = usize::from(field.first() == Some(&0));
    while field.get(w).is_some_and(u8::is_ascii_whitespace) || field.get(w) == Some(&0x0b) {
        w += 1;
    }
    match field.get(w) {
        None => false,
        Some(b'0'..=b'7') => {
            let end = w + field[w..].iter().take_while(|b| (b'0'..=b'7').contains(*b)).count();
            field
                .get(end)
                .is_none_or(|b| *b == 0 || b.is_ascii_whitespace() || *b == 0x0b)
        }
        Some(b'+' | b'-' | 0 | 0x80 | 0xff) => true,
        Some(_) => false,
    }
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
        let mut pax: Option<Pax> = None;
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
                    let mut pad = [0u8; BLOCK];
                    let pad = &mut pad[..padding(size) as usize];
                    self.r.read_exact(pad).map_err(|_| truncated("an extension header"))?;
                    // GNU tar copies a long name's whole blocks and reads
                    // it up to a NUL; Go and this reader stop at its size.
                    if matches!(h.kind, b'L' | b'K') && !data.contains(&0) && pad.first().is_some_and(|b| *b != 0) {
                        return Err(hostile(
                            &data,
                            "a GNU long name that runs on into its padding: tar readers disagree on where it ends"
                                .into(),
                        ));
                    }
                    match h.kind {
                        // Global headers apply to later entries in theory;
                        // GNU tar applies them, Go and Docker do not, so
                        // only those that change nothing pass.
                        b'g' => pax::check_global(&data).map_err(|r| hostile(b"PAX global header", r))?,
                        b'x' => {
                            if pax.is_some() {
                                return Err(hostile(
                                    b"PAX header",
                                    "two PAX headers for one entry: GNU tar and Go take the second, others merge them"
                                        .into(),
                                ));
                            }
                            let mut records = Pax::default();
                            pax::parse(&data, &mut records).map_err(|r| hostile(b"PAX header", r))?;
                            pax = Some(records);
                        }
                        b'L' => long_name = Some(pax::long_name(&data)),
                        _ => long_link = Some(pax::long_name(&data)),
                    }
                    continue;
                }
                _ => {}
            }
            return self
                .entry(h, &block, pax.unwrap_or_default(), long_name, long_link)
                .map(Some);
        }
    }

    /// Folds the extension headers into the entry header `h` (parsed from
    /// `block`), reads a sparse map, and readies its data.
    fn entry(
        &mut self,
        mut h: Header,
        block: &[u8; BLOCK],
        mut pax: Pax,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
    ) -> Result<Header> {
        if pax.path.is_some() && long_name.is_some() {
            return Err(hostile(
                &h.name,
                "a GNU long name and a PAX path for one entry: tar readers disagree on which wins".into(),
            ));
        }
        if pax.linkpath.is_some() && long_link.is_some() {
            return Err(hostile(
                &h.name,
                "a GNU long link and a PAX linkpath for one entry: tar readers disagree on which wins".into(),
            ));
        }
        if let Some(n) = pax.path.take().or(long_name) {
            h.name = n;
        }
        if let Some(l) = pax.linkpath.take().or(long_link) {
            h.link = l;
        }
        let records = std::mem::take(&mut pax.sparse);
        let pax_sparse = match records.is_empty() {
            true => None,
            false => Some(sparse::pax_records(&records).map_err(|r| hostile(&h.name, r))?),
        };
        // GNU tar lets GNU.sparse.name win over `path`, whatever the order.
        if let Some(n) = pax_sparse.as_ref().and_then(|p| p.name.clone()) {
            h.name = n;
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
        // GNU tar cuts a PAX linkpath at a NUL, Go refuses it.
        if matches!(h.kind, b'1' | b'2') && h.link.contains(&0) {
            return Err(hostile(
                &h.name,
                "link target contains a NUL byte: tar readers disagree on where it ends".into(),
            ));
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
        // A sparse entry's map: from an old GNU header (and the extension
        // blocks after it), from PAX records, or (1.0) from its data.
        let mut map_1_0 = None;
        if h.kind == b'S' {
            if pax_sparse.is_some() {
                return Err(hostile(
                    &h.name,
                    "GNU sparse PAX records on a GNU 'S' entry: two maps".into(),
                ));
            }
            if block[257..265] != *b"ustar  \0" {
                return Err(hostile(
                    &h.name,
                    "a sparse 'S' entry without the GNU header magic: tar readers disagree on its layout".into(),
                ));
            }
            let r = &mut self.r;
            let map = sparse::old_gnu_map(block, &h.name, || {
                let mut ext = [0u8; BLOCK];
                match read_block(r, &mut ext) {
                    Ok(true) => Ok(ext),
                    _ => Err(truncated("a sparse map")),
                }
            })?;
            h.kind = b'0';
            h.sparse = Some(map);
        } else if let Some(ps) = pax_sparse {
            if h.kind != b'0' {
                return Err(hostile(
                    &h.name,
                    format!("GNU sparse records on a '{}' entry", h.kind as char),
                ));
            }
            if block[257..263] != *b"ustar\0" || star_like(block) {
                return Err(hostile(
                    &h.name,
                    "GNU sparse PAX records on a header GNU tar reads as another format".into(),
                ));
            }
            let real_size = ps.real_size.unwrap_or(h.size);
            match ps.segments {
                Some(segments) => h.sparse = Some(SparseMap { real_size, segments }),
                None => map_1_0 = Some(real_size),
            }
        }
        if (h.sparse.is_some() || map_1_0.is_some()) && h.name.last() == Some(&b'/') {
            return Err(hostile(
                &h.name,
                "a sparse file whose name ends in '/': tar readers disagree on its type".into(),
            ));
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
        if let Some(real_size) = map_1_0 {
            let segments = self.map_1_0(&h.name)?;
            h.sparse = Some(SparseMap { real_size, segments });
            h.size = self.left;
        }
        if let Some(map) = &h.sparse {
            map.check(h.size).map_err(|r| hostile(&h.name, r))?;
        }
        Ok(h)
    }

    /// Reads the sparse map that opens a 1.0 sparse entry's data, whole
    /// blocks of it; what is left of the data is the segments'.
    fn map_1_0(&mut self, name: &[u8]) -> Result<Vec<sparse::Segment>> {
        let mut reader = MapReader::default();
        loop {
            if self.left < BLOCK as u64 {
                return Err(hostile(name, "the sparse map runs past the entry's data".into()));
            }
            let mut block = [0u8; BLOCK];
            let mut got = 0;
            while got < BLOCK {
                got += self.data(&mut block[got..])?;
            }
            if reader.feed(&block).map_err(|r| hostile(name, r))? {
                return Ok(reader.into_segments());
            }
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

    /// Reads the rest of the current entry's data into the start of
    /// `out`, growing it if it is shorter, and returns how many bytes that
    /// was. `out` is never shrunk: a reused buffer's old bytes are
    /// overwritten in place, where reading into spare capacity through a
    /// `Read` chain without `read_buf` zero-filled it first (the 2.4%
    /// memset, and the page faults after it, in an apply's profile).
    pub(crate) fn data_into(&mut self, out: &mut Vec<u8>) -> Result<usize> {
        let n = usize::try_from(self.left).map_err(|_| truncated("file data"))?;
        if out.len() < n {
            out.resize(n, 0);
        }
        let mut filled = 0;
        while filled < n {
            filled += self.data(&mut out[filled..n])?;
        }
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

/// Does GNU tar take this ustar-magic header for a star header (whose
/// prefix field is shorter and holds times after it)? It reads a sparse
/// entry's map differently then.
fn star_like(b: &[u8; BLOCK]) -> bool {
    let octal = |c: u8| (b'0'..=b'7').contains(&c);
    b[475] == 0 && octal(b[476]) && b[487] == b' ' && octal(b[488]) && b[499] == b' '
}

/// Parses one header block, checking its checksum.
fn parse_block(b: &[u8; BLOCK]) -> Result<Header> {
    let magic = &b[257..263];
    let ustar = magic == b"ustar\0";
    let v7 = !ustar && b[257..265] != *b"ustar  \0";
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
    // The sum first, as GNU tar reads the field: a block that is no header
    // at all is a corrupt stream, not an ambiguous number.
    let matches = |stored: u64| stored == unsigned || stored as i64 == signed;
    if !gnu_octal(&b[148..156]).is_some_and(matches) {
        return Err(corrupt(
            "tar header checksum mismatch: not a tar stream, or a corrupt one".into(),
        ));
    }
    let num = |range: std::ops::Range<usize>, what| number(&b[range], what).map_err(|e| e.into_error(&name));
    num(148..156, "checksum")?;
    let mut kind = b[156];
    if kind == 0 || kind == b'7' {
        kind = b'0';
    }
    let dev = |range: std::ops::Range<usize>, what| -> Result<u32> {
        let v = num(range, what)?;
        u32::try_from(v).map_err(|_| corrupt(format!("{what} {v} does not fit 32 bits")))
    };
    // Pre-POSIX headers have no device fields: GNU tar and Go read 0.
    let (devmajor, devminor) = if matches!(kind, b'3' | b'4') && !v7 {
        (dev(329..337, "device major")?, dev(337..345, "device minor")?)
    } else {
        (0, 0)
    };
    // An extension header's mode, owner and time describe nothing: GNU
    // tar reads only its size, and so does this reader.
    let extension = matches!(kind, b'x' | b'g' | b'L' | b'K');
    let meta = |range, what| if extension { Ok(0) } else { num(range, what) };
    Ok(Header {
        link: cstr(&b[157..257]).to_vec(),
        kind,
        mode: (meta(100..108, "mode")? & 0o7777) as u32,
        uid: meta(108..116, "uid")?,
        gid: meta(116..124, "gid")?,
        size: num(124..136, "size")?,
        mtime: meta(136..148, "mtime")?,
        devmajor,
        devminor,
        xattrs: Vec::new(),
        sparse: None,
        name,
    })
}

/// An octal field as GNU tar reads the checksum: one NUL and whitespace
/// skipped, digits up to anything else.
fn gnu_octal(field: &[u8]) -> Option<u64> {
    let mut w = usize::from(field.first() == Some(&0));
    while field.get(w).is_some_and(u8::is_ascii_whitespace) {
        w += 1;
    }
    let digits: Vec<u8> = field[w..]
        .iter()
        .copied()
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    if digits.is_empty() {
        return None;
    }
    Some(digits.iter().fold(0, |v, d| v * 8 + u64::from(d - b'0')))
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

    /// Fields GNU tar and Go read as different numbers are hostile; what
    /// no reader takes for a number is corrupt.
    #[test]
    fn numbers_readers_disagree_on() {
        assert_eq!(
            number(b"\0 12 \0", "m").unwrap(),
            0o12,
            "one leading NUL, as old tars wrote"
        );
        assert_eq!(number(b" \0  \0", "m").unwrap(), 0);
        for ambiguous in [
            &b"1 2\0"[..],      // GNU: 1; Go: an error
            b"12\0x",           // GNU and Go: 12; junk after the end
            b"\0\0\x31\x323",   // "\0\0" then "123": GNU: 0; Go: 0o123
            b" \0 12",          // GNU: 0; Go: 0o12
            b"\t12",            // GNU: 0o12; Go: an error
            b"+12",             // GNU's old base-64
            b" \x80\0\0\0\x05", // GNU: base-256 after a blank
        ] {
            match number(ambiguous, "size") {
                Err(NumberError::Ambiguous(r)) => assert!(r.contains("tar readers read it differently"), "{r}"),
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(ambiguous)),
            }
        }
        assert!(matches!(number(&[0xff, 0xff], "s"), Err(NumberError::Ambiguous(_))));
        for corrupt in [&b"zzzz"[..], b"9999999\0", b"12x", b"0009"] {
            assert!(
                matches!(number(corrupt, "m"), Err(NumberError::Corrupt(_))),
                "{}",
                String::from_utf8_lossy(corrupt)
            );
        }
    }

    #[test]
    fn zeros_cut_short_end_the_archive() {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(2);
        tar.append_data(&mut h, "a", &b"hi"[..]).unwrap();
        let mut data = tar.into_inner().unwrap();
        data.truncate(1024 + 271);
        let mut r = TarReader::new(&data[..]);
        assert_eq!(r.next().unwrap().unwrap().name, b"a");
        assert!(
            r.next().unwrap().is_none(),
            "271 zero bytes after the last entry end the archive"
        );
        // A header cut short is still a truncated stream.
        let mut cut = data[..1024].to_vec();
        cut.extend_from_slice(&data[..100]);
        let mut r = TarReader::new(&cut[..]);
        r.next().unwrap();
        assert!(matches!(r.next(), Err(ArchiveError::Read(_))));
    }

    /// Only the size of an extension header counts, as in GNU tar.
    #[test]
    fn extension_headers_are_read_for_their_size() {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(2);
        tar.append_pax_extensions([("path", &b"real"[..])]).unwrap();
        tar.append_data(&mut h, "a", &b"hi"[..]).unwrap();
        let mut data = tar.into_inner().unwrap();
        assert_eq!(data[156], b'x');
        data[100..108].copy_from_slice(b"0000000\x80");
        data[136..148].copy_from_slice(b"zzzzzzzzzzz\0");
        data[148..156].fill(b' ');
        let sum: u32 = data[..512].iter().map(|b| u32::from(*b)).sum();
        data[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let h = TarReader::new(&data[..]).next().unwrap().unwrap();
        assert_eq!((h.name.as_slice(), h.size), (&b"real"[..], 2));
    }

    /// GNU tar reads a long name on into its padding when its data has no
    /// NUL; Go does not. Refused where that matters.
    #[test]
    fn long_names_running_into_their_padding_are_refused() {
        let long = |data: &[u8], pad: u8| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::GNULongName);
            h.set_size(data.len() as u64);
            h.set_cksum();
            let mut t = h.as_bytes().to_vec();
            t.extend_from_slice(data);
            t.resize(1024, pad);
            let mut f = tar::Header::new_gnu();
            f.set_size(0);
            f.set_path("short").unwrap();
            f.set_cksum();
            t.extend_from_slice(f.as_bytes());
            t.resize(t.len() + 1024, 0);
            t
        };
        let name = |t: Vec<u8>| TarReader::new(&t[..]).next().map(|h| h.unwrap().name);
        assert_eq!(name(long(b"abc", 0)).unwrap(), b"abc");
        assert_eq!(
            name(long(b"abc\0", b'x')).unwrap(),
            b"abc",
            "NUL-terminated within its size"
        );
        let err = name(long(b"abc", b'x')).unwrap_err().to_string();
        assert!(err.contains("runs on into its padding"), "{err}");
        assert_eq!(
            name(long(&[b'n'; 512], 0)).unwrap(),
            vec![b'n'; 512],
            "no padding to run into"
        );
    }

    #[test]
    fn padding_rounds_to_blocks() {
        assert_eq!((padding(0), padding(1), padding(512), padding(513)), (0, 511, 0, 511));
    }
}
