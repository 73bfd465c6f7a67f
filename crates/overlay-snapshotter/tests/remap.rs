//! containerd's remap labels over the socket (fake backend: no root):
//! labels become the layer's id maps; bad labels, maps unlike the
//! parent's, and a backend that cannot id-map are refused with the
//! problem named and nothing made; the two mount forms, exactly.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{Server, client};
use overlay_driver::{Backend, FakeBackend, GraphDriver, IdMapSupport};
use overlay_snapshotter::proto::snapshots::snapshots_client::SnapshotsClient;
use overlay_snapshotter::proto::snapshots::{
    CommitSnapshotRequest, ListSnapshotsRequest, PrepareSnapshotRequest, ViewSnapshotRequest,
};
use overlay_snapshotter::proto::types::Mount;
use overlay_snapshotter::{IdMapMounts, LABEL_GID_MAPPING, LABEL_UID_MAPPING, label_maps, mount_options};
use proptest::prelude::*;
use tonic::Code;
use tonic::transport::Channel;

const MAP: &str = "0:100000:65536";

fn labels(uid: Option<&str>, gid: Option<&str>) -> HashMap<String, String> {
    let mut l = HashMap::new();
    if let Some(u) = uid {
        l.insert(LABEL_UID_MAPPING.to_owned(), u.to_owned());
    }
    if let Some(g) = gid {
        l.insert(LABEL_GID_MAPPING.to_owned(), g.to_owned());
    }
    l
}

async fn prepare(
    c: &mut SnapshotsClient<Channel>,
    key: &str,
    parent: &str,
    labels: HashMap<String, String>,
) -> Result<Vec<Mount>, tonic::Status> {
    let req = PrepareSnapshotRequest {
        snapshotter: String::new(),
        key: key.into(),
        parent: parent.into(),
        labels,
    };
    c.prepare(req).await.map(|r| r.into_inner().mounts)
}

async fn view(
    c: &mut SnapshotsClient<Channel>,
    key: &str,
    parent: &str,
    labels: HashMap<String, String>,
) -> Result<Vec<Mount>, tonic::Status> {
    let req = ViewSnapshotRequest {
        snapshotter: String::new(),
        key: key.into(),
        parent: parent.into(),
        labels,
    };
    c.view(req).await.map(|r| r.into_inner().mounts)
}

async fn commit(
    c: &mut SnapshotsClient<Channel>,
    name: &str,
    key: &str,
    labels: HashMap<String, String>,
) -> Result<(), tonic::Status> {
    let req = CommitSnapshotRequest {
        snapshotter: String::new(),
        name: name.into(),
        key: key.into(),
        labels,
    };
    c.commit(req).await.map(|_| ())
}

async fn count_snapshots(c: &mut SnapshotsClient<Channel>) -> usize {
    let mut stream = c
        .list(ListSnapshotsRequest::default())
        .await
        .expect("list")
        .into_inner();
    let mut n = 0;
    while let Some(batch) = stream.message().await.expect("list batch") {
        n += batch.info.len();
    }
    n
}

/// The layer a Prepare's mounts write to: `HOME/ID/diff` as the bind
/// source or the `upperdir=`.
fn upper_layer(mounts: &[Mount]) -> String {
    let m = &mounts[0];
    let upper = if m.r#type == "bind" {
        m.source.clone()
    } else {
        let o = m.options.iter().find_map(|o| o.strip_prefix("upperdir="));
        o.expect("upperdir").to_owned()
    };
    let dir = Path::new(&upper).parent().expect("a layer dir");
    dir.file_name().expect("an id").to_string_lossy().into_owned()
}

/// Two committed layers `l1` < `l2`, each with one file owned by 0.
async fn image(server: &Server, c: &mut SnapshotsClient<Channel>) {
    for (key, name, parent) in [("x1", "l1", ""), ("x2", "l2", "l1")] {
        let mounts = prepare(c, key, parent, HashMap::new()).await.expect("prepare layer");
        let layer = upper_layer(&mounts);
        let driver = server.snapshotter.driver();
        driver.get(&layer, None).expect("get");
        driver
            .tree(&layer)
            .expect("tree")
            .write(Path::new(name), 0o644, name.as_bytes())
            .expect("write");
        driver.put(&layer).expect("put");
        commit(c, name, key, HashMap::new()).await.expect("commit layer");
    }
}

fn layer_with_maps(server: &Server) -> Vec<String> {
    let driver = server.snapshotter.driver();
    driver
        .layers()
        .expect("layers")
        .iter()
        .map(|l| l.as_str().to_owned())
        .filter(|l| driver.layer_id_maps(l).expect("maps").is_some())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_make_an_id_mapped_layer_bound_by_default() {
    let server = Server::start();
    let mut c = client(&server.socket).await;
    image(&server, &mut c).await;
    let mounts = prepare(&mut c, "ctr", "l2", labels(Some(MAP), Some("0:200000:65536")))
        .await
        .expect("prepare with remap labels");
    let mapped = layer_with_maps(&server);
    assert_eq!(mapped.len(), 1, "{mapped:?}");
    let driver = server.snapshotter.driver();
    let maps = driver.layer_id_maps(&mapped[0]).unwrap().unwrap();
    assert_eq!(maps.maps.root().unwrap(), (100_000, 200_000));
    assert_eq!(maps.lowers_mapped, [true, true]);
    // The bind form: the driver's own id-mapped mount of the stack.
    let home = driver.backend().home_path();
    let merged = home.join(&mapped[0]).join("merged");
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].r#type, "bind");
    assert_eq!(Path::new(&mounts[0].source), merged);
    assert_eq!(mounts[0].options, ["rw", "rbind"]);
    assert!(driver.is_mounted(&mapped[0]));
    let tree = driver.tree(&mapped[0]).unwrap();
    for f in ["l1", "l2"] {
        let m = tree.metadata(Path::new(f)).unwrap();
        assert_eq!((m.uid, m.gid), (100_000, 200_000), "{f} seen through the maps");
    }
    // Its upper belongs to the container's root on the host.
    let diff = driver
        .backend()
        .home()
        .metadata(&Path::new(&mapped[0]).join("diff"))
        .unwrap();
    assert_eq!((diff.uid, diff.gid), (100_000, 200_000));

    // A view: the same, read-only.
    let v = view(&mut c, "v", "l2", labels(Some(MAP), Some("0:200000:65536")))
        .await
        .expect("view with remap labels");
    assert_eq!(v[0].r#type, "bind");
    assert!(v[0].source.ends_with("/merged"), "{v:?}");
    assert_eq!(v[0].options, ["ro", "rbind"]);

    // Commit unmounts; a snapshot on it without labels inherits the maps,
    // one with other maps is refused.
    commit(&mut c, "ctr-c", "ctr", HashMap::new()).await.expect("commit");
    assert!(!driver.is_mounted(&mapped[0]));
    let before = driver.layers().unwrap().len();
    let e = prepare(&mut c, "other", "ctr-c", labels(Some("0:300000:65536"), Some(MAP)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("stored with other id maps"), "{}", e.message());
    assert_eq!(driver.layers().unwrap().len(), before, "nothing made");
    prepare(&mut c, "same", "ctr-c", HashMap::new())
        .await
        .expect("inherits");
    assert_eq!(
        layer_with_maps(&server).len(),
        3,
        "the view's, the committed one's, and this"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_labels_are_refused_and_nothing_is_made() {
    let server = Server::start();
    let mut c = client(&server.socket).await;
    image(&server, &mut c).await;
    let driver = server.snapshotter.driver();
    let layers = driver.layers().unwrap().len();
    let snapshots = count_snapshots(&mut c).await;
    for (uid, gid, says) in [
        (Some(MAP), None, "label containerd.io/snapshot/gidmapping: missing"),
        (None, Some(MAP), "label containerd.io/snapshot/uidmapping: missing"),
        (
            Some("0:100000"),
            Some(MAP),
            "containerd.io/snapshot/uidmapping: uid map \"0:100000\"",
        ),
        (
            Some(MAP),
            Some("0:x:1"),
            "containerd.io/snapshot/gidmapping: gid map \"0:x:1\"",
        ),
        (
            Some("0:100000:65536,1000:300000:10"),
            Some(MAP),
            "containerd.io/snapshot/uidmapping: uid map ranges 0:100000:65536 and 1000:300000:10 overlap on the container side",
        ),
        (Some(MAP), Some("0:4294967200:65536"), "run past the last id"),
        (Some("0:100000:0"), Some(MAP), "size 0 maps nothing"),
        (
            Some("1:100000:65536"),
            Some(MAP),
            "container root (uid and gid 0) no host id",
        ),
    ] {
        for as_view in [false, true] {
            let l = labels(uid, gid);
            let got = if as_view {
                view(&mut c, "bad", "l2", l).await
            } else {
                prepare(&mut c, "bad", "l2", l).await
            };
            let e = got.unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{uid:?} {gid:?}: {e:?}");
            assert!(e.message().contains(says), "{uid:?} {gid:?}: {}", e.message());
            assert_eq!(
                driver.layers().unwrap().len(),
                layers,
                "a layer was made for {uid:?} {gid:?}"
            );
            assert_eq!(count_snapshots(&mut c).await, snapshots);
        }
    }
    server.stop().await;

    // A backend (kernel, filesystem) that cannot id-map: named, nothing made.
    let server = Server::start_with(
        FakeBackend::new().with_id_map_support(IdMapSupport::Unsupported("no idmapped mounts (test)".into())),
        IdMapMounts::Bind,
    );
    let mut c = client(&server.socket).await;
    image(&server, &mut c).await;
    let layers = server.snapshotter.driver().layers().unwrap().len();
    let e = prepare(&mut c, "ctr", "l2", labels(Some(MAP), Some(MAP)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message()
            .contains("cannot id-map layers here: no idmapped mounts (test)"),
        "{}",
        e.message()
    );
    assert_eq!(server.snapshotter.driver().layers().unwrap().len(), layers);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_form_is_containerd_2s() {
    let server = Server::start_with(FakeBackend::new(), IdMapMounts::Options);
    let mut c = client(&server.socket).await;
    image(&server, &mut c).await;
    let driver = server.snapshotter.driver();
    let ids = labels(Some(MAP), Some("0:200000:65536"));
    let [uidmap, gidmap] = mount_options(
        &label_maps(
            "x",
            &[
                (LABEL_UID_MAPPING.to_owned(), MAP.to_owned()),
                (LABEL_GID_MAPPING.to_owned(), "0:200000:65536".to_owned()),
            ]
            .into(),
        )
        .unwrap(),
    );
    assert_eq!(uidmap, "uidmap=0:100000:65536");

    let m = prepare(&mut c, "ctr", "l2", ids.clone()).await.expect("prepare");
    let layer = layer_with_maps(&server).pop().unwrap();
    let dirs = driver.dirs(&layer).unwrap();
    let s = |p: &Path| p.display().to_string();
    let lowers: Vec<String> = dirs.lower_links.iter().map(|p| s(p)).collect();
    assert_eq!(m.len(), 1);
    assert_eq!((m[0].r#type.as_str(), m[0].source.as_str()), ("overlay", "overlay"));
    assert_eq!(
        m[0].options,
        [
            uidmap.clone(),
            gidmap.clone(),
            "index=off".to_owned(),
            format!("workdir={}", s(dirs.work.as_deref().unwrap())),
            format!("upperdir={}", s(&dirs.diff)),
            format!("lowerdir={}", lowers.join(":")),
        ]
    );
    assert!(
        !driver.is_mounted(&layer),
        "containerd 2 mounts the options form itself"
    );

    // A view of one layer: containerd 2's id-mapped read-only bind.
    let m = view(&mut c, "v1", "l1", ids.clone()).await.expect("view");
    let l1 = driver.dirs(&layer).unwrap().lower_diffs[1].clone();
    assert_eq!(m[0].r#type, "bind");
    assert_eq!(Path::new(&m[0].source), l1);
    assert_eq!(
        m[0].options,
        [uidmap.clone(), gidmap.clone(), "ro".into(), "rbind".into()]
    );

    // No parent: a bind of its own upper, stored with host ids: no map.
    let m = prepare(&mut c, "alone", "", ids.clone()).await.expect("prepare alone");
    assert_eq!(m[0].r#type, "bind");
    assert_eq!(m[0].options, ["rw", "rbind"]);

    // On a committed id-mapped snapshot the lowers are mixed (its own
    // files have host ids): uidmap= cannot say so, the bind form is used.
    commit(&mut c, "ctr-c", "ctr", ids.clone())
        .await
        .expect("commit with the same labels");
    let m = prepare(&mut c, "on-mapped", "ctr-c", ids.clone())
        .await
        .expect("prepare");
    assert_eq!(m[0].r#type, "bind");
    assert!(m[0].source.ends_with("/merged"), "{m:?}");
    assert_eq!(m[0].options, ["rw", "rbind"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_keeps_the_maps_it_was_prepared_with() {
    let server = Server::start();
    let mut c = client(&server.socket).await;
    image(&server, &mut c).await;
    prepare(&mut c, "ctr", "l2", labels(Some(MAP), Some(MAP)))
        .await
        .expect("prepare");
    let e = commit(&mut c, "ctr-c", "ctr", labels(Some("0:300000:65536"), Some(MAP)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("differ from the maps"), "{}", e.message());
    let e = commit(&mut c, "x", "ctr", labels(Some(MAP), None)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("gidmapping: missing"), "{}", e.message());
    // Remap labels on a commit of an unmapped snapshot would be a lie.
    prepare(&mut c, "plain", "l2", HashMap::new())
        .await
        .expect("prepare plain");
    let e = commit(&mut c, "plain-c", "plain", labels(Some(MAP), Some(MAP)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    commit(&mut c, "ctr-c", "ctr", labels(Some(MAP), Some(MAP)))
        .await
        .expect("the same maps");
    server.stop().await;
}

/// containerd 1.7 (and 2.x without the `remap-ids` capability) chowns a
/// copy of the image itself, commits it, and Prepares on it with the
/// labels all the same: that copy must not be id-mapped again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_containerd_chowned_is_not_mapped_twice() {
    let server = Server::start_with(FakeBackend::new(), IdMapMounts::Options);
    let mut c = client(&server.socket).await;
    image(&server, &mut c).await;
    let driver = server.snapshotter.driver();
    // containerd's client: Prepare(usernsID-remap), chown all, Commit(usernsID).
    let m = prepare(&mut c, "sha256:userns-remap", "l2", HashMap::new())
        .await
        .unwrap();
    let copy = upper_layer(&m);
    driver.get(&copy, None).unwrap();
    let tree = driver.tree(&copy).unwrap();
    for f in ["l1", "l2"] {
        tree.set_owner(Path::new(f), 100_000, 100_000).unwrap();
    }
    driver.put(&copy).unwrap();
    driver.set_upper_owner(&copy, 100_000, 100_000).unwrap();
    commit(&mut c, "sha256:userns", "sha256:userns-remap", HashMap::new())
        .await
        .unwrap();

    let m = prepare(&mut c, "ctr", "sha256:userns", labels(Some(MAP), Some(MAP)))
        .await
        .expect("prepare on the chowned copy");
    let layer = upper_layer(&m);
    assert_eq!(driver.layer_id_maps(&layer).unwrap(), None, "no id-mapped lowers");
    assert_eq!(
        driver.diff_owner(&layer).unwrap(),
        (100_000, 100_000),
        "upper given to root"
    );
    assert_eq!(m[0].r#type, "overlay");
    assert!(m[0].options.iter().all(|o| !o.starts_with("uidmap=")), "{m:?}");
    driver.get(&layer, None).unwrap();
    let seen = driver.tree(&layer).unwrap().metadata(Path::new("l1")).unwrap();
    assert_eq!((seen.uid, seen.gid), (100_000, 100_000), "shifted once");
    driver.put(&layer).unwrap();

    // On an image layer (owned by 0) the same labels do id-map.
    prepare(&mut c, "ctr2", "l2", labels(Some(MAP), Some(MAP)))
        .await
        .unwrap();
    assert_eq!(layer_with_maps(&server).len(), 1);
    server.stop().await;
}

fn range() -> impl Strategy<Value = (u32, u32, u32)> {
    (
        prop_oneof![Just(0u32), 0..70_000u32, any::<u32>()],
        prop_oneof![100_000..200_000u32, any::<u32>()],
        prop_oneof![Just(0u32), 1..70_000u32, any::<u32>()],
    )
}

fn spell(ranges: &[(u32, u32, u32)]) -> String {
    ranges
        .iter()
        .map(|(c, h, s)| format!("{c}:{h}:{s}"))
        .collect::<Vec<_>>()
        .join(",")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any label text: maps that spell back to the labels (containerd
    /// 2's `uidmap=` options are the labels' values), or InvalidArgument
    /// naming one of the two labels; never a panic. A well-formed single
    /// range is accepted exactly when the kernel's rules allow it.
    #[test]
    fn label_parsing(
        uids in proptest::collection::vec(range(), 1..4),
        gids in proptest::collection::vec(range(), 1..4),
        junk in proptest::option::of("[0-9:,x ]{0,12}"),
    ) {
        let uid = junk.clone().unwrap_or_else(|| spell(&uids));
        let gid = spell(&gids);
        let l = [
            (LABEL_UID_MAPPING.to_owned(), uid.clone()),
            (LABEL_GID_MAPPING.to_owned(), gid.clone()),
        ].into();
        match label_maps("k", &l) {
            Ok(maps) => {
                prop_assert_eq!(mount_options(&maps), [format!("uidmap={uid}"), format!("gidmap={gid}")]);
            }
            Err(e) => {
                prop_assert_eq!(e.code(), Code::InvalidArgument);
                let msg = e.to_string();
                prop_assert!(msg.contains(LABEL_UID_MAPPING) || msg.contains(LABEL_GID_MAPPING), "{}", msg);
            }
        }
        if junk.is_none() && uids.len() == 1 && gids.len() == 1 {
            let fits = |(c, h, s): (u32, u32, u32)| s > 0 && c.checked_add(s).is_some() && h.checked_add(s).is_some();
            prop_assert_eq!(label_maps("k", &l).is_ok(), fits(uids[0]) && fits(gids[0]));
        }
    }
}
