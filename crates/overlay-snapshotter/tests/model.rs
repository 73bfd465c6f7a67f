//! Random operation sequences against a model of containerd's snapshot
//! semantics (on the fake backend): every call succeeds or fails with the
//! code the model predicts, and afterwards the listing equals the model's,
//! the home has exactly one layer per snapshot, each stacked on its
//! parent's, and the home checks clean.

use std::collections::BTreeMap;

use overlay_driver::{FakeBackend, Overlay2};
use overlay_snapshotter::{Filters, Info, Kind, Snapshotter, Store};
use proptest::prelude::*;
use tonic::Code;

/// Keys as containerd sends them: slashes, spaces, digests.
const KEYS: &[&str] = &[
    "a",
    "default/1/extract-1 sha256:aa",
    "default/2/sha256:c1",
    "k8s.io/7/b",
    "x y/z",
];

#[derive(Debug, Clone)]
enum Op {
    Prepare(usize, Option<usize>, u8),
    View(usize, Option<usize>),
    Commit(usize, usize, u8),
    Remove(usize),
    Update(usize, u8, bool),
    Stat(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0..KEYS.len();
    prop_oneof![
        3 => (k.clone(), proptest::option::of(k.clone()), 0..3u8).prop_map(|(a, b, l)| Op::Prepare(a, b, l)),
        1 => (k.clone(), proptest::option::of(k.clone())).prop_map(|(a, b)| Op::View(a, b)),
        3 => (k.clone(), k.clone(), 0..3u8).prop_map(|(a, b, l)| Op::Commit(a, b, l)),
        2 => k.clone().prop_map(Op::Remove),
        1 => (k.clone(), 0..3u8, any::<bool>()).prop_map(|(a, l, all)| Op::Update(a, l, all)),
        1 => k.prop_map(Op::Stat),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Snap {
    kind: Kind,
    parent: Option<String>,
    labels: BTreeMap<String, String>,
}

fn labels(n: u8) -> BTreeMap<String, String> {
    (0..n)
        .map(|i| (format!("containerd.io/snapshot/l{i}"), format!("v{n}")))
        .collect()
}

/// What containerd's own snapshotters answer, in the order they check.
fn expect(model: &mut BTreeMap<String, Snap>, op: &Op) -> Result<(), Code> {
    let has_children = |m: &BTreeMap<String, Snap>, k: &str| m.values().any(|s| s.parent.as_deref() == Some(k));
    match op {
        Op::Prepare(k, p, _) | Op::View(k, p) => {
            let (key, parent) = (KEYS[*k], p.map(|p| KEYS[p]));
            if model.contains_key(key) {
                return Err(Code::AlreadyExists);
            }
            if let Some(p) = parent {
                match model.get(p) {
                    None => return Err(Code::NotFound),
                    Some(s) if s.kind != Kind::Committed => return Err(Code::InvalidArgument),
                    Some(_) => {}
                }
            }
            let (kind, l) = match op {
                Op::Prepare(_, _, l) => (Kind::Active, labels(*l)),
                _ => (Kind::View, BTreeMap::new()),
            };
            model.insert(
                key.into(),
                Snap {
                    kind,
                    parent: parent.map(Into::into),
                    labels: l,
                },
            );
        }
        Op::Commit(n, k, l) => {
            let (name, key) = (KEYS[*n], KEYS[*k]);
            if model.contains_key(name) {
                return Err(Code::AlreadyExists);
            }
            let Some(s) = model.get(key) else {
                return Err(Code::NotFound);
            };
            if s.kind != Kind::Active {
                return Err(Code::FailedPrecondition);
            }
            let s = model.remove(key).expect("present");
            model.insert(
                name.into(),
                Snap {
                    kind: Kind::Committed,
                    parent: s.parent,
                    labels: labels(*l),
                },
            );
        }
        Op::Remove(k) => {
            let key = KEYS[*k];
            if !model.contains_key(key) {
                return Err(Code::NotFound);
            }
            if has_children(model, key) {
                return Err(Code::FailedPrecondition);
            }
            model.remove(key);
        }
        Op::Update(k, l, _) => {
            let Some(s) = model.get_mut(KEYS[*k]) else {
                return Err(Code::NotFound);
            };
            s.labels = labels(*l);
        }
        Op::Stat(k) => {
            if !model.contains_key(KEYS[*k]) {
                return Err(Code::NotFound);
            }
        }
    }
    Ok(())
}

fn apply(s: &Snapshotter<FakeBackend>, op: &Op) -> Result<(), Code> {
    let r = match op {
        Op::Prepare(k, p, l) => s.prepare(KEYS[*k], p.map_or("", |p| KEYS[p]), labels(*l)).map(drop),
        Op::View(k, p) => s.view(KEYS[*k], p.map_or("", |p| KEYS[p]), BTreeMap::new()).map(drop),
        Op::Commit(n, k, l) => s.commit(KEYS[*n], KEYS[*k], labels(*l)),
        Op::Remove(k) => s.remove(KEYS[*k]),
        Op::Update(k, l, all) => {
            let info = Info {
                name: KEYS[*k].into(),
                parent: Some("ignored".into()),
                kind: Kind::View,
                labels: labels(*l),
                created: overlay_snapshotter::Time { secs: 0, nanos: 0 },
                updated: overlay_snapshotter::Time { secs: 0, nanos: 0 },
            };
            // Replacing all labels, or naming each label path.
            let paths: Vec<String> = if *all {
                Vec::new()
            } else {
                (0..3).map(|i| format!("labels.containerd.io/snapshot/l{i}")).collect()
            };
            s.update(info, &paths).map(drop)
        }
        Op::Stat(k) => s.stat(KEYS[*k]).map(drop),
    };
    r.map_err(|e| e.code())
}

proptest! {
    // 64 cases in CI (each up to 40 calls); PROPTEST_CASES=N for more.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn service_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let driver = Overlay2::new(FakeBackend::new(), &[] as &[&str]).expect("driver");
        let s = Snapshotter::new(driver, Store::in_memory().expect("store"));
        let mut model = BTreeMap::new();
        for op in &ops {
            let want = expect(&mut model, op);
            let got = apply(&s, op);
            prop_assert_eq!(got, want, "{:?}", op);
            let listed: BTreeMap<String, Snap> = s
                .list(&Filters::default())
                .expect("list")
                .into_iter()
                .map(|i| (i.name, Snap { kind: i.kind, parent: i.parent, labels: i.labels }))
                .collect();
            prop_assert_eq!(&listed, &model, "after {:?}", op);
        }
        // One layer per snapshot, stacked as the snapshots are.
        let layers = s.driver().layers().expect("layers");
        prop_assert_eq!(layers.len(), model.len());
        prop_assert!(s.check().expect("check").is_empty());
        prop_assert!(s.driver().check().expect("check").is_empty());
        for (key, snap) in &model {
            if snap.kind == Kind::Committed {
                continue;
            }
            let depth = |mut k: Option<String>| {
                let mut n = 0;
                while let Some(p) = k {
                    n += 1;
                    k = model[&p].parent.clone();
                }
                n
            };
            let mounts = s.mounts(key).expect("mounts");
            let lowers = mounts[0]
                .options
                .iter()
                .find_map(|o| o.strip_prefix("lowerdir="))
                .map_or(usize::from(mounts[0].kind == "bind" && snap.kind == Kind::View && snap.parent.is_some()), |l| l.split(':').count());
            prop_assert_eq!(lowers, depth(snap.parent.clone()), "{}", key);
        }
    }
}
