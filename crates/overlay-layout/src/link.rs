//! [`LinkId`]: the short random name under `l/` that stands for a layer in
//! `lower` files and mount options.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

use crate::error::{LayoutError, LinkIdProblem, excerpt};

/// The short name of a layer: exactly 26 characters of the base32 alphabet
/// `[A-Z2-7]`.
///
/// Docker gives every layer one, stores it in the layer's `link` file and
/// makes `l/LINKID` a symlink to the layer's `diff`. Lower chains and mount
/// options then name layers by these 28-byte `l/LINKID` paths instead of by
/// full paths, so that 128 of them fit in one page of mount data.
///
/// The value is 26 plain bytes, so it is `Copy`.
///
/// ```
/// use overlay_layout::LinkId;
///
/// let link = LinkId::generate();
/// assert_eq!(LinkId::parse(link.as_str())?, link);
/// let err = LinkId::parse("ABC").unwrap_err();
/// assert_eq!(err.to_string(), r#"invalid link id "ABC": is 3 bytes long, expected 26"#);
/// # Ok::<(), overlay_layout::LayoutError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId([u8; LinkId::LEN]);

impl LinkId {
    /// Length of every link id, Docker's `idLength`. It was chosen so that
    /// `(26 + len("l/")) * 128` bytes of lower dirs fit in a 4 KiB page less
    /// 512 bytes for labels.
    pub const LEN: usize = 26;

    /// The characters a link id is made of: the RFC 4648 base32 alphabet,
    /// which is what Docker's `GenerateID` produces (it base32-encodes random
    /// bytes and keeps the first 26 characters).
    pub const ALPHABET: &'static [u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

    /// A new random link id from the thread-local CSPRNG ([`rand::rng`]).
    ///
    /// Each character is uniform over the alphabet, as in Docker, which
    /// draws from `crypto/rand`: 130 random bits, so collisions are
    /// negligible. Like Docker, this does not look at the home; creating the
    /// `l/LINKID` symlink fails with `EEXIST` on the one-in-2^130 clash.
    #[must_use]
    pub fn generate() -> Self {
        Self::generate_with(&mut rand::rng())
    }

    /// A new link id drawn from `rng`, for reproducible ids in tests and
    /// simulations (pass a seeded `StdRng`).
    #[must_use]
    pub fn generate_with<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0_u8; Self::LEN];
        rng.fill(&mut bytes);
        // 256 is a multiple of 32, so the low five bits are uniform.
        Self(bytes.map(|b| Self::ALPHABET[usize::from(b & 0x1f)]))
    }

    /// Parses a link id from text.
    ///
    /// # Errors
    ///
    /// [`LayoutError::InvalidLinkId`] naming the first byte outside
    /// `[A-Z2-7]` and its position, or the wrong length.
    pub fn parse(text: &str) -> Result<Self, LayoutError> {
        Self::from_bytes(text.as_bytes())
    }

    /// Parses the contents of a layer's `link` file.
    ///
    /// Exactly 26 bytes are accepted, with no surrounding whitespace. Docker
    /// writes the file without a newline and reads it without trimming, so
    /// a `link` file ending in `\n` (say, written by hand with `echo`) makes
    /// Docker write a broken `lower` file for every child. It is rejected
    /// here with its own [`LinkIdProblem::TrailingNewline`] so that a
    /// repair tool can recognise and fix it.
    ///
    /// # Errors
    ///
    /// [`LayoutError::InvalidLinkId`], as for [`LinkId::parse`], or with
    /// [`LinkIdProblem::TrailingNewline`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LayoutError> {
        check(bytes).map_err(|problem| LayoutError::InvalidLinkId {
            id: excerpt(bytes),
            problem,
        })
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Every byte is from ALPHABET, which is ASCII.
        std::str::from_utf8(&self.0).expect("a LinkId holds only ASCII bytes")
    }

    /// The id as bytes: exactly what belongs in a `link` file.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }
}

/// Checks that `bytes` is a link id, naming the rule it breaks if not.
pub(crate) fn check(bytes: &[u8]) -> Result<LinkId, LinkIdProblem> {
    if let Some(without_newline) = bytes.strip_suffix(b"\n")
        && check_exact(without_newline).is_ok()
    {
        return Err(LinkIdProblem::TrailingNewline);
    }
    check_exact(bytes)
}

fn check_exact(bytes: &[u8]) -> Result<LinkId, LinkIdProblem> {
    if let Some(position) = bytes.iter().position(|b| !LinkId::ALPHABET.contains(b)) {
        return Err(LinkIdProblem::InvalidByte {
            byte: bytes[position],
            position,
        });
    }
    <[u8; LinkId::LEN]>::try_from(bytes)
        .map(LinkId)
        .map_err(|_| LinkIdProblem::WrongLength { len: bytes.len() })
}

impl fmt::Debug for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LinkId").field(&self.as_str()).finish()
    }
}

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LinkId {
    type Err = LayoutError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for LinkId {
    type Error = LayoutError;

    fn try_from(text: &str) -> Result<Self, Self::Error> {
        Self::parse(text)
    }
}

impl TryFrom<&[u8]> for LinkId {
    type Error = LayoutError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        Self::from_bytes(bytes)
    }
}

impl AsRef<str> for LinkId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for LinkId {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const VALID: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

    fn rejected(bytes: &[u8]) -> (LinkIdProblem, String) {
        match LinkId::from_bytes(bytes) {
            Err(err @ LayoutError::InvalidLinkId { problem, .. }) => (problem, err.to_string()),
            other => panic!("{bytes:?} should be rejected, got {other:?}"),
        }
    }

    #[test]
    fn accepts_26_base32_chars() {
        let link = LinkId::parse(VALID).unwrap();
        assert_eq!(link.as_str(), VALID);
        assert_eq!(link.as_bytes(), VALID.as_bytes());
        let digits = LinkId::parse("234567234567234567234567AZ").unwrap();
        assert_eq!(digits.to_string(), "234567234567234567234567AZ");
    }

    #[test]
    fn rejects_wrong_length() {
        let (problem, message) = rejected(b"ABC");
        assert_eq!(problem, LinkIdProblem::WrongLength { len: 3 });
        assert_eq!(message, r#"invalid link id "ABC": is 3 bytes long, expected 26"#);
        assert_eq!(rejected(b"").0, LinkIdProblem::WrongLength { len: 0 });
        let long = format!("{VALID}A");
        assert_eq!(rejected(long.as_bytes()).0, LinkIdProblem::WrongLength { len: 27 });
    }

    #[test]
    fn rejects_bytes_outside_alphabet() {
        let (problem, message) = rejected(b"ABCDEFGHIJKLMNOPQRSTUVWXYz");
        assert_eq!(
            problem,
            LinkIdProblem::InvalidByte {
                byte: b'z',
                position: 25
            }
        );
        assert_eq!(
            message,
            r#"invalid link id "ABCDEFGHIJKLMNOPQRSTUVWXYz": byte 'z' (0x7a) at position 25 is not in [A-Z2-7]"#
        );
        for (bad, position) in [(b'0', 0), (b'1', 3), (b'8', 7), (b'=', 10), (b'/', 12)] {
            let mut bytes = VALID.as_bytes().to_vec();
            bytes[position] = bad;
            assert_eq!(rejected(&bytes).0, LinkIdProblem::InvalidByte { byte: bad, position });
        }
    }

    #[test]
    fn rejects_non_utf8_with_escaped_byte() {
        let (problem, message) = rejected(b"\xffBC");
        assert_eq!(
            problem,
            LinkIdProblem::InvalidByte {
                byte: 0xff,
                position: 0
            }
        );
        assert_eq!(
            message,
            "invalid link id \"\u{fffd}BC\": byte '\\xff' (0xff) at position 0 is not in [A-Z2-7]"
        );
    }

    #[test]
    fn rejects_trailing_newline() {
        let with_newline = format!("{VALID}\n");
        let (problem, message) = rejected(with_newline.as_bytes());
        assert_eq!(problem, LinkIdProblem::TrailingNewline);
        assert_eq!(
            message,
            format!("invalid link id {with_newline:?}: ends with a newline, which Docker never writes")
        );
        // A newline after something that is not an id is just a bad byte.
        assert_eq!(
            rejected(b"ABC\n").0,
            LinkIdProblem::InvalidByte {
                byte: b'\n',
                position: 3
            }
        );
        // Two newlines are not "a valid id plus a newline".
        let two = format!("{VALID}\n\n");
        assert_eq!(
            rejected(two.as_bytes()).0,
            LinkIdProblem::InvalidByte {
                byte: b'\n',
                position: 26
            }
        );
    }

    #[test]
    fn rejects_surrounding_whitespace() {
        let spaced = format!(" {VALID}");
        assert_eq!(
            rejected(spaced.as_bytes()).0,
            LinkIdProblem::InvalidByte {
                byte: b' ',
                position: 0
            }
        );
    }

    #[test]
    fn long_garbage_is_excerpted_in_the_error() {
        let garbage = vec![b'a'; 10_000];
        let err = LinkId::from_bytes(&garbage).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn generated_ids_use_the_whole_alphabet_and_parse_back() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = [false; 32];
        for _ in 0..200 {
            let link = LinkId::generate_with(&mut rng);
            assert_eq!(LinkId::parse(link.as_str()).unwrap(), link);
            for b in link.as_bytes() {
                let index = LinkId::ALPHABET.iter().position(|a| a == b).unwrap();
                seen[index] = true;
            }
        }
        assert!(seen.iter().all(|&s| s), "every alphabet char appears");
    }

    #[test]
    fn seeded_generation_is_reproducible() {
        let a = LinkId::generate_with(&mut StdRng::seed_from_u64(42));
        let b = LinkId::generate_with(&mut StdRng::seed_from_u64(42));
        assert_eq!(a, b);
        assert_ne!(LinkId::generate(), LinkId::generate());
    }

    #[test]
    fn conversions_agree() {
        let link: LinkId = VALID.parse().unwrap();
        assert_eq!(LinkId::try_from(VALID).unwrap(), link);
        assert_eq!(LinkId::try_from(VALID.as_bytes()).unwrap(), link);
        assert_eq!(AsRef::<str>::as_ref(&link), VALID);
        assert_eq!(AsRef::<[u8]>::as_ref(&link), VALID.as_bytes());
        assert_eq!(format!("{link:?}"), format!("LinkId({VALID:?})"));
    }
}
