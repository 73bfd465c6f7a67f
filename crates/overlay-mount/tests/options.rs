//! Property test: any option set this crate accepts prints to a string
//! that parses back to the same parts.

#![allow(clippy::unwrap_used, missing_docs)]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use overlay_mount::{OverlayOptions, Upper};
use proptest::prelude::*;

fn path() -> impl Strategy<Value = PathBuf> {
    // Any bytes but NUL and '"', with the separators well represented.
    prop::collection::vec(prop_oneof![4 => b'a'..=b'z', 1 => Just(b','), 1 => Just(b':'), 1 => Just(b'\\'), 1 => Just(b'/'), 1 => 1u8..=255], 1..40)
        .prop_filter("no quote or NUL", |b| !b.contains(&b'"') && !b.contains(&0))
        .prop_map(|b| PathBuf::from(OsString::from_vec(b)))
}

fn label() -> impl Strategy<Value = Option<String>> {
    prop::option::of("[a-z_]{1,8}:[a-z_]{1,8}:[a-z_]{1,12}:s0(:c[0-9]{1,3},c[0-9]{1,3})?")
}

proptest! {
    #[test]
    fn options_round_trip(
        lowers in prop::collection::vec(path(), 1..20),
        upper in prop::option::of((path(), path())),
        index_off in any::<bool>(),
        userxattr in any::<bool>(),
        label in label(),
    ) {
        let mut o = OverlayOptions::read_only(lowers).index_off(index_off).userxattr(userxattr).label(label.as_deref());
        o.upper = upper.map(|(upperdir, workdir)| Upper { upperdir, workdir });
        match o.to_data() {
            Ok(data) => {
                prop_assert!(!data.contains(&0));
                prop_assert_eq!(OverlayOptions::parse(&data).unwrap(), o);
            }
            Err(_) => prop_assert!(o.upper.is_none() && o.lowerdirs.len() == 1),
        }
    }

    #[test]
    fn parse_never_panics(data in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = OverlayOptions::parse(&data);
    }
}
