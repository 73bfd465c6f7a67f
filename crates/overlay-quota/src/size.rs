//! Size strings as Docker reads `--storage-opt size=...`: go-units'
//! `RAMInBytes`, binary units.

use crate::error::{QuotaError, Result};

/// Parses a size the way Docker's `units.RAMInBytes` does: a decimal number,
/// an optional single space, then an optional unit `k`, `m`, `g`, `t` or `p`
/// (powers of 1024, any case) followed by an optional `b`, or `ib` after a
/// unit. `"10G"` is 10 GiB, `"512m"` 512 MiB, `"1.5GB"` 1.5 GiB, `"4096"`
/// and `"4096b"` are bytes. A fraction of a byte is dropped, as Docker does.
///
/// Unlike Docker, the arithmetic is exact (no floating point), and a size
/// beyond `u64` is an error instead of a wrapped number.
///
/// ```
/// use overlay_quota::parse_size;
///
/// assert_eq!(parse_size("10G")?, 10 << 30);
/// assert_eq!(parse_size("512m")?, 512 << 20);
/// assert_eq!(parse_size("1.5GB")?, 3 << 29);
/// assert_eq!(parse_size("32 KiB")?, 32 << 10);
/// assert_eq!(parse_size("4096")?, 4096);
/// assert!(parse_size("ten gigs").is_err());
/// # Ok::<(), overlay_quota::QuotaError>(())
/// ```
///
/// # Errors
/// [`QuotaError::InvalidSize`], naming the string and what is wrong with it.
pub fn parse_size(input: &str) -> Result<u64> {
    let bad = |reason: &'static str| QuotaError::InvalidSize {
        input: input.to_owned(),
        reason,
    };
    let bytes = input.as_bytes();
    let int_len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if int_len == 0 {
        return Err(bad("it must start with a digit"));
    }
    let mut rest = &bytes[int_len..];
    let mut frac: &[u8] = &[];
    if let Some(after_dot) = rest.strip_prefix(b".") {
        let frac_len = after_dot.iter().take_while(|b| b.is_ascii_digit()).count();
        if frac_len == 0 {
            return Err(bad("a decimal point must be followed by digits"));
        }
        frac = &after_dot[..frac_len];
        rest = &after_dot[frac_len..];
    }
    let suffix = rest.strip_prefix(b" ").unwrap_or(rest);
    let shift = unit_shift(suffix).ok_or(bad(
        "unknown unit; use b, k, m, g, t or p (binary, optional trailing b or ib)",
    ))?;

    // value = (int + frac / 10^len(frac)) * 2^shift, rounded down, exactly.
    let int = parse_digits(&input.as_bytes()[..int_len]).ok_or(bad("too large"))?;
    let whole = int
        .checked_shl(shift)
        .filter(|v| v >> shift == int)
        .ok_or(bad("too large"))?;
    // Digits past the 18th cannot change the result by a whole byte.
    let frac = &frac[..frac.len().min(18)];
    let frac_part = match frac {
        [] => 0,
        digits => {
            let numerator = parse_digits(digits).ok_or(bad("too large"))? << shift;
            numerator / 10u128.pow(digits.len() as u32)
        }
    };
    u64::try_from(whole + frac_part).map_err(|_| bad("too large: more than 2^64 - 1 bytes"))
}

/// The power of two of a unit suffix (already without the optional space),
/// or `None` when it is not one.
fn unit_shift(suffix: &[u8]) -> Option<u32> {
    let lower: Vec<u8> = suffix.iter().map(u8::to_ascii_lowercase).collect();
    let (unit, tail) = match lower.split_first() {
        None => return Some(0),
        Some((b'b', [])) => return Some(0),
        Some((unit, tail)) => (*unit, tail),
    };
    let shift = match unit {
        b'k' => 10,
        b'm' => 20,
        b'g' => 30,
        b't' => 40,
        b'p' => 50,
        _ => return None,
    };
    matches!(tail, [] | b"b" | b"ib").then_some(shift)
}

/// Decimal digits as a number, `None` on overflow of `u128`.
fn parse_digits(digits: &[u8]) -> Option<u128> {
    digits
        .iter()
        .try_fold(0u128, |acc, d| acc.checked_mul(10)?.checked_add(u128::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    const TIB: u64 = 1 << 40;
    const PIB: u64 = 1 << 50;

    /// go-units' `TestRAMInBytes` table, plus the forms the issue names.
    #[test]
    fn accepts_dockers_forms() {
        let table = [
            ("32", 32),
            ("32b", 32),
            ("32B", 32),
            ("32k", 32 * KIB),
            ("32K", 32 * KIB),
            ("32kb", 32 * KIB),
            ("32Kb", 32 * KIB),
            ("32Kib", 32 * KIB),
            ("32KIB", 32 * KIB),
            ("32Mb", 32 * MIB),
            ("32Gb", 32 * GIB),
            ("32Tb", 32 * TIB),
            ("32Pb", 32 * PIB),
            ("32PB", 32 * PIB),
            ("32P", 32 * PIB),
            ("32.3", 32),
            // int64(32.3 * MiB) and int64(0.3 * MiB) in Go.
            ("32.3 mb", 33_869_004),
            ("0.3MB", 314_572),
            ("10G", 10 * GIB),
            ("512m", 512 * MIB),
            ("1.5GB", 3 * GIB / 2),
            ("1.5 GiB", 3 * GIB / 2),
            ("0", 0),
            ("32 ", 32),
            ("18446744073709551615", u64::MAX),
            ("15.999999999999999999999999p", 16 * PIB - 1),
        ];
        for (input, want) in table {
            assert_eq!(parse_size(input).unwrap(), want, "{input:?}");
        }
    }

    #[test]
    fn rejects_what_docker_rejects_and_names_the_string() {
        for input in [
            "", "hello", "-32", " 32 ", "32m b", "32bm", ".3kB", "32.", "1e3", "32ib", "32x", "32kbb", "32  k", "１２",
        ] {
            let err = parse_size(input).unwrap_err();
            assert!(matches!(err, QuotaError::InvalidSize { .. }), "{input:?}: {err:?}");
            assert!(err.to_string().contains(&format!("{input:?}")), "{err}");
        }
    }

    #[test]
    fn too_large_is_an_error_not_a_wrap() {
        for input in [
            "18446744073709551616",
            "16384P",
            "99999999999999999999999999999999999999999999k",
        ] {
            let err = parse_size(input).unwrap_err().to_string();
            assert!(err.contains("too large"), "{input}: {err}");
        }
    }
}
