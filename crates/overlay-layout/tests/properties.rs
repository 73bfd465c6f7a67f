//! Property tests: every value this crate writes parses back to itself, and
//! nothing it reads can make it panic.

use std::path::Path;

use overlay_layout::{DepthLimit, LayerId, LayoutError, LinkId, Lower, link_target, parse_link_target};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// The layer id rules, written independently of the crate.
fn valid_layer_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && !id.contains(['/', '\0'])
        && !matches!(id, "." | ".." | "l" | "backingFsBlockDev")
        && !id.starts_with(".tmp-")
}

fn layer_id_text() -> impl Strategy<Value = String> {
    prop_oneof!["[0-9a-f]{64}(-init)?", "[^/\u{0}]{1,80}", "[a-z.-]{1,255}", ".{1,255}",]
        .prop_filter("valid layer id", |id| valid_layer_id(id))
}

fn link_id() -> impl Strategy<Value = LinkId> {
    "[A-Z2-7]{26}".prop_map(|text| LinkId::parse(&text).expect("regex yields valid ids"))
}

fn lower(max: usize) -> impl Strategy<Value = Lower> {
    prop::collection::vec(link_id(), 1..=max).prop_map(|links| Lower::new(links).expect("the vec is not empty"))
}

/// Bytes near a valid lower file: a valid one with one byte replaced,
/// inserted or removed, so that parsing sees every kind of near miss.
fn mutated_lower() -> impl Strategy<Value = Vec<u8>> {
    (
        lower(8),
        any::<prop::sample::Index>(),
        prop_oneof![
            Just(b':'),
            Just(b'/'),
            Just(b'.'),
            Just(b'\n'),
            Just(b'a'),
            Just(b'A'),
            Just(0xff),
            any::<u8>()
        ],
        0..3_u8,
    )
        .prop_map(|(lower, at, byte, how)| {
            let mut bytes = lower.format().into_bytes();
            let i = at.index(bytes.len());
            match how {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => {
                    bytes.remove(i);
                }
            }
            bytes
        })
}

proptest! {
    #[test]
    fn layer_id_round_trips(text in layer_id_text()) {
        let id = LayerId::new(text.as_str()).expect("the strategy yields valid ids");
        prop_assert_eq!(id.as_str(), text.as_str());
        prop_assert_eq!(id.to_string(), text.clone());
        prop_assert_eq!(text.parse::<LayerId>(), Ok(id.clone()));
        prop_assert_eq!(id.into_string(), text);
    }

    #[test]
    fn layer_id_validation_matches_the_rules(
        text in prop_oneof![
            any::<String>(),
            "[./l\u{0}a]{0,4}",
            "[a/]{250,260}",
            Just("backingFsBlockDev".to_owned()),
        ]
    ) {
        match LayerId::new(text.as_str()) {
            Ok(id) => {
                prop_assert!(valid_layer_id(&text), "{:?} accepted", text);
                prop_assert_eq!(id.as_str(), text.as_str());
            }
            Err(LayoutError::InvalidLayerId { id, .. }) => {
                prop_assert!(!valid_layer_id(&text), "{:?} rejected", text);
                prop_assert_eq!(id, text);
            }
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }

    #[test]
    fn generated_link_ids_parse_back(seed in any::<u64>()) {
        let link = LinkId::generate_with(&mut StdRng::seed_from_u64(seed));
        prop_assert!(link.as_bytes().iter().all(|b| LinkId::ALPHABET.contains(b)));
        prop_assert_eq!(LinkId::parse(link.as_str()), Ok(link));
        prop_assert_eq!(LinkId::from_bytes(link.as_bytes()), Ok(link));
        prop_assert_eq!(link.to_string().parse::<LinkId>(), Ok(link));
    }

    #[test]
    fn link_id_parsing_matches_the_rules(bytes in prop_oneof![
        prop::collection::vec(
            prop_oneof![4 => prop::sample::select(LinkId::ALPHABET.to_vec()), 1 => any::<u8>()],
            0..30,
        ),
        prop::collection::vec(
            prop_oneof![60 => prop::sample::select(LinkId::ALPHABET.to_vec()), 1 => any::<u8>()],
            25..=27,
        ),
    ]) {
        let valid = bytes.len() == 26 && bytes.iter().all(|b| LinkId::ALPHABET.contains(b));
        match LinkId::from_bytes(&bytes) {
            Ok(link) => {
                prop_assert!(valid);
                prop_assert_eq!(&link.as_bytes()[..], &bytes[..]);
            }
            Err(LayoutError::InvalidLinkId { .. }) => prop_assert!(!valid),
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }

    #[test]
    fn lower_format_then_parse_round_trips(lower in lower(500)) {
        let text = lower.format();
        prop_assert_eq!(text.len(), lower.len() * 29 - 1);
        let parsed = Lower::parse(text.as_bytes());
        prop_assert_eq!(parsed.as_ref(), Ok(&lower));
        prop_assert_eq!(parsed.map(|p| p.format()), Ok(text));
    }

    #[test]
    fn lower_parse_of_any_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        if let Ok(lower) = Lower::parse(&bytes) {
            prop_assert_eq!(lower.format().into_bytes(), bytes);
        }
    }

    #[test]
    fn lower_parse_of_near_misses_is_exact(bytes in mutated_lower()) {
        match Lower::parse(&bytes) {
            Ok(lower) => prop_assert_eq!(lower.format().into_bytes(), bytes),
            Err(LayoutError::CorruptLower { .. } | LayoutError::EmptyLower) => {}
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }

    #[test]
    fn child_of_follows_the_depth_rule(
        parent in link_id(),
        below in 0..=600_usize,
        limit in 1..=600_usize,
    ) {
        let parent_lower = (below > 0).then(|| {
            Lower::new(vec![parent; below]).expect("below > 0")
        });
        let limit = DepthLimit::new(limit).expect("limit > 0");
        match Lower::child_of(parent, parent_lower.as_ref(), limit) {
            Ok(child) => {
                prop_assert!(below < limit.get());
                prop_assert_eq!(child.len(), below + 1);
                prop_assert_eq!(child.parent(), parent);
                prop_assert_eq!(
                    &child.links()[1..],
                    parent_lower.as_ref().map_or(&[][..], Lower::links)
                );
                prop_assert!(child.check_depth(limit).is_ok());
            }
            Err(err) => {
                prop_assert!(below >= limit.get());
                prop_assert_eq!(
                    err,
                    LayoutError::MaxDepthExceeded { depth: below + 1, limit: limit.get() }
                );
            }
        }
    }

    #[test]
    fn child_of_keeps_the_parent_chain(parent in link_id(), parent_lower in lower(50)) {
        let child = Lower::child_of(parent, Some(&parent_lower), DepthLimit::DOCKER)
            .expect("51 is within 128");
        prop_assert_eq!(
            child.format(),
            format!("l/{}:{}", parent, parent_lower.format())
        );
    }

    #[test]
    fn link_target_round_trips(text in layer_id_text()) {
        let id = LayerId::new(text).expect("the strategy yields valid ids");
        prop_assert_eq!(parse_link_target(&link_target(&id)), Ok(id));
    }

    #[test]
    fn parse_link_target_accepts_only_what_link_target_writes(
        target in prop_oneof![
            any::<String>(),
            "(\\.\\./|/|\\./)?[a-z./]{0,12}(/diff)?/?",
        ]
    ) {
        if let Ok(id) = parse_link_target(Path::new(&target)) {
            prop_assert_eq!(link_target(&id).into_os_string(), target.as_str());
        }
    }
}
