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
    /// `GNU.sparse.KEY` records as `(KEY, value)`, in stream order: the
    /// 0.0 format repeats its keys, so order is meaning (see
    /// [`crate::sparse`]).
    pub sparse: Vec<(Vec<u8>, Vec<u8>)>,
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
        let not_a_number = || format!("PAX {} is not a number", String::from_utf8_lossy(key));
        match key {
            b"path" => pax.path = Some(value.to_vec()),
            b"linkpath" => pax.linkpath = Some(value.to_vec()),
            b"size" => pax.size = Some(decimal(value).ok_or_else(not_a_number)?),
            b"uid" => pax.uid = Some(decimal(value).ok_or_else(not_a_number)?),
            b"gid" => pax.gid = Some(decimal(value).ok_or_else(not_a_number)?),
            // Times may carry a fraction: keep the whole seconds.
            b"mtime" => pax.mtime = Some(time(value).ok_or_else(not_a_number)?),
            k => {
                if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                    // GNU tar turns "%3D" into '=' and "%25" into '%' in
                    // these names; other readers take them as they are.
                    if contains(name, b"%3D") || contains(name, b"%25") {
                        return Err(format!(
                            "xattr name {:?} holds a %-escape, which GNU tar decodes and other tar readers do not",
                            String::from_utf8_lossy(name)
                        ));
                    }
                    pax.xattrs.push((name.to_vec(), value.to_vec()));
                } else if let Some(sparse) = k.strip_prefix(b"GNU.sparse.") {
                    pax.sparse.push((sparse.to_vec(), value.to_vec()));
                }
            }
        }
    }
    Ok(())
}

/// A decimal number as GNU tar takes it in a PAX record: digits only (no
/// sign, no blanks), within 64 bits.
pub(crate) fn decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Whole seconds of a PAX time: digits, maybe a fraction of digits.
fn time(v: &[u8]) -> Option<u64> {
    match v.iter().position(|b| *b == b'.') {
        Some(dot) if v[dot + 1..].iter().all(u8::is_ascii_digit) => decimal(&v[..dot]),
        Some(_) => None,
        None => decimal(v),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Checks a global header (`g`). GNU tar applies its records to every
/// later entry; Go, Docker and this reader do not. Records that would
/// change where an entry goes, what it holds or who owns it are refused,
/// so no reader can see another archive; the rest (a `comment`, as
/// `git archive` writes) is ignored.
pub(crate) fn check_global(data: &[u8]) -> Result<(), String> {
    let mut pax = Pax::default();
    parse(data, &mut pax)?;
    let set = [
        ("path", pax.path.is_some()),
        ("linkpath", pax.linkpath.is_some()),
        ("size", pax.size.is_some()),
        ("uid", pax.uid.is_some()),
        ("gid", pax.gid.is_some()),
        ("mtime", pax.mtime.is_some()),
        ("SCHILY.xattr.*", !pax.xattrs.is_empty()),
        ("GNU.sparse.*", !pax.sparse.is_empty()),
    ];
    match set.iter().find(|(_, present)| *present) {
        Some((key, _)) => Err(format!(
            "a PAX global header sets {key} for every later entry, which GNU tar applies and other readers ignore"
        )),
        None => Ok(()),
    }
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
        assert_eq!(long_name(b"abc\0\0\0"), b"abc");
    }

    /// Numbers as GNU tar reads them: what it refuses is refused, so no
    /// reader takes "+5" or " 5" for a size another reader skips.
    #[test]
    fn numbers_are_plain_digits() {
        for bad in [&b"+5"[..], b" 5", b"5 ", b"-1", b"", b"0x10", b"99999999999999999999"] {
            assert!(
                parse(&record("size", bad), &mut Pax::default()).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        for bad in [&b"1.5.5"[..], b".5", b"1.x", b"-1.5"] {
            assert!(
                parse(&record("mtime", bad), &mut Pax::default()).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut pax = Pax::default();
        parse(&record("mtime", b"12."), &mut pax).unwrap();
        assert_eq!(pax.mtime, Some(12));
    }

    #[test]
    fn sparse_records_are_kept_in_order() {
        let mut pax = Pax::default();
        let data = [
            record("GNU.sparse.offset", b"0"),
            record("GNU.sparse.numbytes", b"5"),
            record("GNU.sparse.offset", b"512"),
        ]
        .concat();
        parse(&data, &mut pax).unwrap();
        let keys: Vec<_> = pax.sparse.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, [&b"offset"[..], b"numbytes", b"offset"]);
    }

    #[test]
    fn global_headers_may_only_comment() {
        check_global(&[record("comment", b"git commit"), record("atime", b"1")].concat()).unwrap();
        for key in ["path", "size", "uid", "mtime", "SCHILY.xattr.user.a", "GNU.sparse.size"] {
            let err = check_global(&record(key, b"1")).unwrap_err();
            assert!(err.contains("for every later entry"), "{key}: {err}");
        }
    }

    #[test]
    fn xattr_names_with_gnu_escapes_are_refused() {
        let err = parse(&record("SCHILY.xattr.user.a%3Db", b"v"), &mut Pax::default()).unwrap_err();
        assert!(err.contains("%-escape"), "{err}");
        let mut pax = Pax::default();
        parse(&record("SCHILY.xattr.user.100%", b"v"), &mut pax).unwrap();
        assert_eq!(pax.xattrs.len(), 1);
    }
}
