//! Byte streams of layers: digests computed while reading, compression
//! detected from the first bytes (plain tar, gzip or zstd), and progress.

use std::fmt;
use std::io::{self, BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};

use flate2::bufread::MultiGzDecoder;
use indicatif::ProgressBar;
use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
use sha2::{Digest as _, Sha256};

/// A `sha256:<64 hex>` digest, the only algorithm Docker uses for layers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parses `sha256:` followed by 64 lowercase hex digits; anything else
    /// (other algorithms, uppercase, a path in disguise) is refused.
    pub fn parse(s: &str) -> Result<Self, String> {
        let Some((algo, hex)) = s.split_once(':') else {
            return Err(format!(
                "{:?} is not a digest (want sha256:<64 hex digits>)",
                excerpt(s)
            ));
        };
        if algo != "sha256" {
            return Err(format!(
                "digest {:?} uses {:?}; only sha256 is supported",
                excerpt(s),
                excerpt(algo)
            ));
        }
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(format!(
                "{:?} is not a digest (want sha256:<64 lowercase hex digits>)",
                excerpt(s)
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The digest of a finished hash.
    pub fn from_hasher(h: Sha256) -> Self {
        let bytes = h.finalize();
        let mut out = String::with_capacity(71);
        out.push_str("sha256:");
        for b in bytes {
            out.push_str(&format!("{b:02x}"));
        }
        Self(out)
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(data);
        Self::from_hasher(h)
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The whole `sha256:...` string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// At most 80 characters of an untrusted string, for messages.
pub fn excerpt(s: &str) -> String {
    if s.chars().count() <= 80 {
        s.to_owned()
    } else {
        s.chars().take(79).chain(['…']).collect()
    }
}

/// Chain ids as Docker's layer store computes them: the first layer's is its
/// diff id, each next one `sha256(parent_chain + " " + diff_id)`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => Digest::of(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// A reader that counts what passes through it, hashes it (unless made
/// with [`counting`](Self::counting)), and moves progress bars.
pub struct Hashing<R> {
    inner: R,
    hasher: Option<Sha256>,
    count: u64,
    progress: Vec<ProgressBar>,
}

impl<R: Read> Hashing<R> {
    /// Wraps `inner`, hashing.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Some(Sha256::new()),
            count: 0,
            progress: Vec::new(),
        }
    }

    /// Wraps `inner`, only counting (no digest: saves the hashing).
    pub fn counting(inner: R) -> Self {
        Self {
            inner,
            hasher: None,
            count: 0,
            progress: Vec::new(),
        }
    }

    /// Also advances `bar` by the bytes read (as well as any bar given
    /// before: a layer's own and the whole import's).
    pub fn with_progress(mut self, bar: ProgressBar) -> Self {
        self.progress.push(bar);
        self
    }

    /// Reads what is left (so the digest covers the whole stream), then
    /// returns the digest, the byte count and the reader underneath.
    pub fn finish(mut self) -> io::Result<(Option<Digest>, u64, R)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(self.into_parts())
    }

    /// The digest and count of what was read so far, and the reader
    /// underneath.
    pub fn into_parts(self) -> (Option<Digest>, u64, R) {
        (self.hasher.map(Digest::from_hasher), self.count, self.inner)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.count += n as u64;
        for p in &self.progress {
            p.inc(n as u64);
        }
        Ok(n)
    }
}

/// What a [`Stoppable`] reader fails with once stopped.
pub const STOPPED: &str = "cancelled: another layer of this import failed";

/// A reader that fails with [`STOPPED`] once `stop` is set, so that work
/// reading from it (decompressing, hashing, applying a layer) ends at its
/// next read instead of running to the end of its blob for nothing.
pub struct Stoppable<'a, R> {
    inner: R,
    stop: &'a AtomicBool,
}

impl<'a, R: Read> Stoppable<'a, R> {
    /// Wraps `inner`, stopping once `stop` is true.
    pub fn new(inner: R, stop: &'a AtomicBool) -> Self {
        Self { inner, stop }
    }
}

impl<R: Read> Read for Stoppable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Not `Interrupted`: readers retry that.
        if self.stop.load(Ordering::Relaxed) {
            return Err(io::Error::other(STOPPED));
        }
        self.inner.read(buf)
    }
}

/// Bytes handed from the reading thread to the consumer at a time.
const AHEAD_CHUNK: usize = 1 << 20;
/// Chunks in flight (bounded memory: about 4 MiB).
const AHEAD_QUEUE: usize = 4;

/// Runs `inner` on a thread of its own while `consume` reads its bytes on
/// this one, so that reading, decompressing and hashing a layer overlap
/// with applying it (two cores: the apply no longer waits for SHA-256).
/// Returns what `consume` returned and `inner`, positioned after the
/// last byte the reading thread took from it (all of them, unless
/// `consume` stopped early).
///
/// # Errors
///
/// The reading thread panicked (the inner reader is then lost).
pub fn read_ahead<R: Read + Send, T>(inner: R, consume: impl FnOnce(&mut dyn Read) -> T) -> io::Result<(T, R)> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(AHEAD_QUEUE);
    let (spare_tx, spare_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(AHEAD_QUEUE + 1);
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || {
            let mut inner = inner;
            loop {
                let mut buf = spare_rx.try_recv().unwrap_or_default();
                buf.resize(AHEAD_CHUNK, 0);
                let mut filled = 0;
                let result = loop {
                    match inner.read(&mut buf[filled..]) {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            filled += n;
                            if filled == buf.len() {
                                break Ok(());
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                buf.truncate(filled);
                let last = filled == 0 || result.is_err();
                // A hung-up consumer wants no more.
                if filled > 0 && tx.send(Ok(buf)).is_err() {
                    break;
                }
                if let Err(e) = result {
                    let _ = tx.send(Err(e));
                }
                if last {
                    break;
                }
            }
            inner
        });
        let mut ahead = Ahead {
            rx,
            spare: spare_tx,
            chunk: Vec::new(),
            pos: 0,
            done: false,
        };
        let out = consume(&mut ahead);
        drop(ahead);
        let inner = producer
            .join()
            .map_err(|_| io::Error::other("the layer's reading thread panicked"))?;
        Ok((out, inner))
    })
}

/// The consuming end of [`read_ahead`].
struct Ahead {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    spare: std::sync::mpsc::SyncSender<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for Ahead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(next)) => {
                    let used = std::mem::replace(&mut self.chunk, next);
                    let _ = self.spare.try_send(used);
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => self.done = true,
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// What the first bytes of a layer say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar (or anything else: the tar reader judges it).
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// Zstandard (`28 b5 2f fd`).
    Zstd,
}

impl Compression {
    /// The name used in messages and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }
}

/// Detects the compression from the first bytes; formats Docker knows but
/// this tool cannot read (bzip2, xz) are an error naming them.
fn detect(head: &[u8]) -> Result<Compression, &'static str> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Compression::Gzip)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Compression::Zstd)
    } else if head.starts_with(b"BZh") {
        Err("bzip2")
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Err("xz")
    } else {
        Ok(Compression::None)
    }
}

/// `head` (bytes already read to look at them) and then the rest of `inner`.
pub struct Prefixed<R> {
    head: Vec<u8>,
    pos: usize,
    inner: R,
}

impl<R: Read> Prefixed<R> {
    /// Reads up to `n` bytes of `inner` (fewer only at its end) to peek at.
    fn peek(mut inner: R, n: usize) -> io::Result<Self> {
        let mut head = vec![0u8; n];
        let mut got = 0;
        while got < n {
            match inner.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        head.truncate(got);
        Ok(Self { head, pos: 0, inner })
    }

    /// The reader underneath.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for Prefixed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.head.len() {
            let n = buf.len().min(self.head.len() - self.pos);
            buf[..n].copy_from_slice(&self.head[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

/// A decompressing reader over `R` whose underlying reader can be taken
/// back (to read, and so hash, what follows the compressed data).
pub enum Decoder<R: Read> {
    /// Not compressed.
    Plain(BufReader<Prefixed<R>>),
    /// gzip, every member.
    Gzip(Box<MultiGzDecoder<BufReader<Prefixed<R>>>>),
    /// Zstandard, every frame.
    Zstd(Box<ZstdReader<BufReader<Prefixed<R>>>>),
}

impl<R: Read> Decoder<R> {
    /// Looks at the first bytes of `inner` and decodes accordingly.
    ///
    /// # Errors
    ///
    /// Reading fails, or the stream is bzip2 or xz (the message names the
    /// format; the caller adds the file).
    pub fn new(inner: R) -> io::Result<(Self, Compression)> {
        let prefixed = Prefixed::peek(inner, 6)?;
        let kind = detect(&prefixed.head).map_err(|name| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("it is {name}-compressed, which is not supported (only gzip and zstd are)"),
            )
        })?;
        let buf = BufReader::with_capacity(256 * 1024, prefixed);
        Ok((
            match kind {
                Compression::None => Self::Plain(buf),
                Compression::Gzip => Self::Gzip(Box::new(MultiGzDecoder::new(buf))),
                Compression::Zstd => Self::Zstd(Box::new(ZstdReader::new(buf))),
            },
            kind,
        ))
    }

    /// Reads the rest of the underlying stream (bytes after the compressed
    /// data included) and returns the underlying reader.
    pub fn drain(self) -> io::Result<R> {
        let mut buf = match self {
            Self::Plain(b) => b,
            Self::Gzip(g) => g.into_inner(),
            Self::Zstd(z) => z.source,
        };
        io::copy(&mut buf, &mut io::sink())?;
        Ok(buf.into_inner().into_inner())
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(r) => r.read(buf),
            Self::Gzip(r) => r.read(buf),
            Self::Zstd(r) => r.read(buf),
        }
    }
}

/// Zstandard frames one after another (skippable frames skipped), each
/// checked against its content checksum when it has one.
pub struct ZstdReader<R: Read> {
    source: R,
    decoder: FrameDecoder,
    in_frame: bool,
}

impl<R: Read> ZstdReader<R> {
    fn new(source: R) -> Self {
        Self {
            source,
            decoder: FrameDecoder::new(),
            in_frame: false,
        }
    }

    fn zstd_err(e: FrameDecoderError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}"))
    }

    /// Starts the next frame; false at the end of the stream.
    fn next_frame(&mut self) -> io::Result<bool> {
        loop {
            let mut first = [0u8; 1];
            let n = loop {
                match self.source.read(&mut first) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                return Ok(false);
            }
            match self.decoder.init((&first[..]).chain(&mut self.source)) {
                Ok(()) => return Ok(true),
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame { length, .. })) => {
                    let skipped = io::copy(&mut (&mut self.source).take(u64::from(length)), &mut io::sink())?;
                    if skipped != u64::from(length) {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "zstd: truncated skippable frame",
                        ));
                    }
                }
                Err(e) => return Err(Self::zstd_err(e)),
            }
        }
    }
}

impl<R: Read> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if !self.next_frame()? {
                    return Ok(0);
                }
                self.in_frame = true;
            }
            if !self.decoder.is_finished() && self.decoder.can_collect() < buf.len() {
                let want = buf.len().max(128 * 1024);
                self.decoder
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBytes(want))
                    .map_err(Self::zstd_err)?;
            }
            let n = self.decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.decoder.is_finished() && self.decoder.can_collect() == 0 {
                if let (Some(want), Some(got)) = (
                    self.decoder.get_checksum_from_data(),
                    self.decoder.get_calculated_checksum(),
                ) && want != got
                {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "zstd: content checksum mismatch",
                    ));
                }
                self.in_frame = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write as _;

    /// Reads in uneven pieces (up to 7,000 bytes), then fails if told to.
    struct Uneven<'a> {
        data: &'a [u8],
        pos: usize,
        fail_at_end: bool,
    }

    impl Read for Uneven<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.data.len() && self.fail_at_end {
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.data.len() - self.pos).min(1 + self.pos % 7000);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    #[test]
    fn read_ahead_passes_every_byte_in_order() {
        for len in [
            0,
            1,
            AHEAD_CHUNK - 1,
            AHEAD_CHUNK,
            AHEAD_CHUNK + 1,
            3 * AHEAD_CHUNK + 12_345,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let inner = Uneven {
                data: &data,
                pos: 0,
                fail_at_end: false,
            };
            let (got, inner) = read_ahead(inner, |r| {
                let mut got = Vec::new();
                r.read_to_end(&mut got).unwrap();
                got
            })
            .unwrap();
            assert!(got == data, "{len} bytes came through changed");
            assert_eq!(inner.pos, len, "the reader is handed back at its end");
        }
    }

    #[test]
    fn read_ahead_reports_the_readers_error_and_stops_when_the_consumer_does() {
        let data = vec![7u8; 2 * AHEAD_CHUNK];
        let inner = Uneven {
            data: &data,
            pos: 0,
            fail_at_end: true,
        };
        let (res, _) = read_ahead(inner, |r| io::copy(r, &mut io::sink())).unwrap();
        assert_eq!(res.unwrap_err().to_string(), "disk on fire");
        // A consumer that takes 10 bytes: the thread stops within the
        // queue's reach instead of reading everything.
        let big = vec![1u8; 64 * AHEAD_CHUNK];
        let inner = Uneven {
            data: &big,
            pos: 0,
            fail_at_end: false,
        };
        let (_, inner) = read_ahead(inner, |r| r.read_exact(&mut [0u8; 10]).unwrap()).unwrap();
        assert!(inner.pos <= (AHEAD_QUEUE + 2) * AHEAD_CHUNK, "read {} bytes", inner.pos);
    }

    #[test]
    fn a_stopped_reader_fails_at_its_next_read_even_behind_read_ahead() {
        let stop = AtomicBool::new(false);
        let data = vec![5u8; 16 * AHEAD_CHUNK];
        let mut r = Stoppable::new(&data[..], &stop);
        let mut buf = [0u8; 10];
        r.read_exact(&mut buf).unwrap();
        stop.store(true, Ordering::Relaxed);
        assert_eq!(r.read(&mut buf).unwrap_err().to_string(), STOPPED);
        // Behind the reading thread: the consumer gets the error within
        // the queue's reach, not the rest of the stream.
        let stop = AtomicBool::new(false);
        let (res, _) = read_ahead(Stoppable::new(&data[..], &stop), |r| {
            let mut got = vec![0u8; AHEAD_CHUNK];
            r.read_exact(&mut got).unwrap();
            stop.store(true, Ordering::Relaxed);
            io::copy(r, &mut io::sink())
        })
        .unwrap();
        assert_eq!(res.unwrap_err().to_string(), STOPPED);
    }

    /// Hands out one byte per read, as a slow pipe may.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    fn decode(data: &[u8]) -> io::Result<(Vec<u8>, Compression)> {
        let (mut d, kind) = Decoder::new(Trickle(data))?;
        let mut out = Vec::new();
        d.read_to_end(&mut out)?;
        Ok((out, kind))
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    #[test]
    fn digests_are_parsed_strictly() {
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(Digest::parse(&format!("sha256:{hex}")).unwrap().hex(), hex);
        for bad in [
            hex.clone(),
            format!("sha512:{hex}"),
            format!("sha256:{}", hex.to_uppercase()),
            format!("sha256:{}", &hex[1..]),
            "sha256:../../etc/passwd".to_owned(),
        ] {
            assert!(Digest::parse(&bad).is_err(), "{bad}");
        }
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn chain_ids_follow_dockers_rule() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let c = Digest::of(b"c");
        let chain = chain_ids(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1], Digest::of(format!("{a} {b}").as_bytes()));
        assert_eq!(chain[2], Digest::of(format!("{} {c}", chain[1]).as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn compression_is_told_from_the_bytes_even_one_byte_at_a_time() {
        let data = b"tar bytes, really".repeat(1000);
        assert_eq!(decode(&data).unwrap(), (data.clone(), Compression::None));
        assert_eq!(decode(&gzip(&data)).unwrap(), (data.clone(), Compression::Gzip));
        assert_eq!(decode(&zstd(&data)).unwrap(), (data.clone(), Compression::Zstd));
        assert_eq!(decode(b"ab").unwrap(), (b"ab".to_vec(), Compression::None));
        assert_eq!(decode(b"").unwrap(), (Vec::new(), Compression::None));
        let xz = decode(&[0xfd, b'7', b'z', b'X', b'Z', 0, 1]).unwrap_err().to_string();
        assert!(xz.contains("xz-compressed"), "{xz}");
        assert!(decode(b"BZh91AY").unwrap_err().to_string().contains("bzip2"));
    }

    #[test]
    fn every_member_and_frame_is_read() {
        let mut two = gzip(b"one ");
        two.extend(gzip(b"two"));
        assert_eq!(decode(&two).unwrap().0, b"one two");
        // zstd: two frames with a skippable frame between them.
        let mut z = zstd(b"one ");
        z.extend([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 9, 9, 9]);
        z.extend(zstd(b"two"));
        assert_eq!(decode(&z).unwrap().0, b"one two");
        // Truncated streams are errors, not short reads.
        let full = zstd(&b"x".repeat(100_000));
        assert!(decode(&full[..full.len() / 2]).is_err());
        let g = gzip(&b"y".repeat(100_000));
        assert!(decode(&g[..g.len() / 2]).is_err());
    }

    #[test]
    fn digests_cover_bytes_after_the_compressed_data() {
        let mut blob = gzip(b"payload");
        blob.extend_from_slice(b"trailing");
        let (mut d, _) = Decoder::new(Hashing::new(&blob[..])).unwrap();
        // The tar reader stops at the end of its data; drain reads the
        // rest of the blob, undecoded, through the hash.
        let mut payload = [0u8; 7];
        d.read_exact(&mut payload).unwrap();
        assert_eq!(&payload, b"payload");
        let (digest, count, _) = d.drain().unwrap().into_parts();
        assert_eq!(count, blob.len() as u64);
        assert_eq!(digest.unwrap(), Digest::of(&blob));
    }
}
