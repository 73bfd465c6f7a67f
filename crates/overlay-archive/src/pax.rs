//! Reading the metadata a tar stream spreads over several headers: PAX
//! extended headers (`x`) and GNU long names (`L`, `K`).
//!
//! The `tar` crate parses PAX records by splitting on newlines, but a
//! record is length-delimited and its value may hold any byte: binary
//! xattrs such as `security.capability` often contain `\n`. Worse, a value
//! with an embedded `\n5 size=…` would be read as a `size` record by a
//! line-splitting parser and not by a correct one: two readers would
//! disagree on where the next entry starts. So the stream is read in the
//! `tar` crate's raw mode and these headers are parsed here.

/// The largest PAX header or GNU long name accepted: far above any real
/// one, low enough that a hostile header cannot exhaust memory.
pub(crate) const MAX_EXTENSION: u64 = 1 << 20;

/// What PAX records say about the next entry.
#[derive(Debug, Default)]
pub(crate) struct Pax {
    pub path: Option<Vec<u8>>,
    pub linkpath: Option<Vec<u8>>,
    pub size: Option<u64>,
    pub uid: Option<u64>,
    pub gid: Option<u64>,
    pub mtime: Option<u64>,
    /// `SCHILY.xattr.NAME` records, in stream order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Parses the records of one PAX header into `pax` (later records win).
pub(crate) fn parse(data: &[u8], pax: &mut Pax) -> Result<(), String> {
    let mut rest = data;
    while !rest.is_empty() {
        // Some writers pad the header data with NULs.
        if rest.iter().all(|b| *b == 0) {
            break;
        }
        let space = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or("PAX record without a length")?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("PAX record length is not a number")?;
        if len <= space + 1 || len > rest.len() {
            return Err(format!("PAX record length {len} does not fit the header"));
        }
        let (record, next) = rest.split_at(len);
        rest = next;
        let body = record[space + 1..]
            .strip_suffix(b"\n")
            .ok_or("PAX record does not end in a newline")?;
        let eq = body.iter().position(|b| *b == b'=').ok_or("PAX record without '='")?;
        let (key, value) = (&body[..eq], &body[eq + 1..]);
        let number = |v: &[u8]| -> Result<u64, String> {
            // Times may carry a fraction: keep the whole seconds.
            let whole = v.split(|b| *b == b'.').next().unwrap_or(v);
            std::str::from_utf8(whole)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("PAX {} is not a number", String::from_utf8_lossy(key)))
        };
        match key {
            b"path" => pax.path = Some(value.to_vec()),
            b"linkpath" => pax.linkpath = Some(value.to_vec()),
            b"size" => pax.size = Some(number(value)?),
            b"uid" => pax.uid = Some(number(value)?),
            b"gid" => pax.gid = Some(number(value)?),
            b"mtime" => pax.mtime = Some(number(value)?),
            k if k.starts_with(b"GNU.sparse.") => return Err("GNU sparse files are not supported".into()),
            k => {
                if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                    pax.xattrs.push((name.to_vec(), value.to_vec()));
                }
            }
        }
    }
    Ok(())
}

/// A GNU long name: the data up to the first NUL.
pub(crate) fn long_name(data: &[u8]) -> Vec<u8> {
    let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    data[..end].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, value: &[u8]) -> Vec<u8> {
        let body_len = key.len() + value.len() + 3;
        let mut len = body_len + 1;
        while len.to_string().len() + body_len != len {
            len = len.to_string().len() + body_len;
        }
        let mut r = format!("{len} {key}=").into_bytes();
        r.extend_from_slice(value);
        r.push(b'\n');
        r
    }

    #[test]
    fn values_may_hold_newlines() {
        let mut data = record("SCHILY.xattr.security.capability", b"\x01\n5 size=9\n\x00");
        data.extend(record("path", b"a/b"));
        let mut pax = Pax::default();
        parse(&data, &mut pax).unwrap();
        assert_eq!(pax.size, None, "the embedded record is part of the value");
        assert_eq!(
            pax.xattrs,
            vec![(b"security.capability".to_vec(), b"\x01\n5 size=9\n\x00".to_vec())]
        );
        assert_eq!(pax.path.as_deref(), Some(&b"a/b"[..]));
    }

    #[test]
    fn numbers_and_errors() {
        let mut pax = Pax::default();
        parse(
            &[record("size", b"12"), record("mtime", b"1700000000.5")].concat(),
            &mut pax,
        )
        .unwrap();
        assert_eq!((pax.size, pax.mtime), (Some(12), Some(1_700_000_000)));
        for bad in [&b"5 a=b"[..], b"x a=b\n", b"99 a=b\n", b"6 ab\n\n", b"4 a=\n"] {
            assert!(
                parse(bad, &mut Pax::default()).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse(&record("size", b"ten"), &mut Pax::default()).is_err());
        assert!(parse(&record("GNU.sparse.map", b"0,1"), &mut Pax::default()).is_err());
        assert_eq!(long_name(b"abc\0\0\0"), b"abc");
    }
}
