//! The service over a real unix socket, as containerd's proxy client
//! reaches it (fake backend: no root needed): answers, the gRPC codes of
//! bad requests, List in batches, concurrent calls, and garbage on the
//! socket, which must not take the server down.

use std::collections::HashMap;
use std::io::Write as _;

mod common;

use common::{Server, client, commit_req as commit};
use overlay_snapshotter::proto::snapshots::{
    Info, Kind, ListSnapshotsRequest, MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest,
    StatSnapshotRequest, UpdateSnapshotRequest, UsageRequest, ViewSnapshotRequest,
};
use tonic::Code;

fn prepare(key: &str, parent: &str) -> PrepareSnapshotRequest {
    PrepareSnapshotRequest {
        snapshotter: "overlay2-rs".into(),
        ..common::prepare_req(
            key,
            parent,
            HashMap::from([("containerd.io/snapshot/x".to_owned(), "1".to_owned())]),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_codes_over_the_socket() {
    let server = Server::start();
    let mut c = client(&server.socket).await;
    let m = c
        .prepare(prepare("default/1/extract a", ""))
        .await
        .expect("prepare")
        .into_inner();
    assert_eq!(m.mounts[0].r#type, "bind");
    c.commit(commit("default/2/sha256:c", "default/1/extract a"))
        .await
        .expect("commit");
    let m = c
        .prepare(prepare("ctr", "default/2/sha256:c"))
        .await
        .expect("prepare")
        .into_inner();
    assert_eq!(m.mounts[0].r#type, "overlay");
    let again = c
        .mounts(MountsRequest {
            snapshotter: String::new(),
            key: "ctr".into(),
        })
        .await
        .expect("mounts")
        .into_inner();
    assert_eq!(again.mounts, m.mounts);
    let info = c
        .stat(StatSnapshotRequest {
            snapshotter: String::new(),
            key: "ctr".into(),
        })
        .await
        .expect("stat")
        .into_inner()
        .info
        .expect("info");
    assert_eq!(info.kind, Kind::Active as i32);
    assert_eq!(info.parent, "default/2/sha256:c");
    assert_eq!(info.created_at, info.updated_at);
    assert_eq!(
        info.labels.get("containerd.io/snapshot/x").map(String::as_str),
        Some("1")
    );
    let usage = c
        .usage(UsageRequest {
            snapshotter: String::new(),
            key: "ctr".into(),
        })
        .await
        .expect("usage")
        .into_inner();
    assert_eq!(usage.inodes, 1);

    let code = |r: Result<tonic::Response<()>, tonic::Status>| r.expect_err("should fail").code();
    let status = c.prepare(prepare("ctr", "")).await.expect_err("duplicate");
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(status.message().contains("\"ctr\""), "{}", status.message());
    assert_eq!(
        c.prepare(prepare("", "")).await.expect_err("empty").code(),
        Code::InvalidArgument
    );
    assert_eq!(
        c.prepare(prepare("x", "ctr")).await.expect_err("active parent").code(),
        Code::InvalidArgument
    );
    assert_eq!(
        c.prepare(prepare("x", "nope")).await.expect_err("no parent").code(),
        Code::NotFound
    );
    let view = ViewSnapshotRequest {
        snapshotter: String::new(),
        key: "v".into(),
        parent: "default/2/sha256:c".into(),
        labels: HashMap::new(),
    };
    c.view(view).await.expect("view");
    assert_eq!(code(c.commit(commit("n", "v")).await), Code::FailedPrecondition);
    let rm = |key: &str| RemoveSnapshotRequest {
        snapshotter: String::new(),
        key: key.into(),
    };
    let status = c.remove(rm("default/2/sha256:c")).await.expect_err("parent");
    assert_eq!(status.code(), Code::FailedPrecondition);
    // containerd's suite wants "remove" in this message.
    assert!(status.message().contains("remove"), "{}", status.message());
    assert_eq!(code(c.remove(rm("missing")).await), Code::NotFound);
    let bad_update = UpdateSnapshotRequest {
        snapshotter: String::new(),
        info: Some(Info {
            name: "ctr".into(),
            ..Info::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["parent".into()],
        }),
    };
    assert_eq!(
        c.update(bad_update).await.expect_err("parent").code(),
        Code::InvalidArgument
    );
    let bad_list = ListSnapshotsRequest {
        snapshotter: String::new(),
        filters: vec!["kind=active".into()],
    };
    assert_eq!(
        c.list(bad_list).await.expect_err("bad filter").code(),
        Code::InvalidArgument
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_streams_in_batches_and_calls_run_concurrently() {
    let server = Server::start();
    let c = client(&server.socket).await;
    c.clone().prepare(prepare("base-a", "")).await.expect("prepare");
    c.clone().commit(commit("base", "base-a")).await.expect("commit");
    // 250 snapshots from 10 concurrent streams of calls.
    let mut tasks = Vec::new();
    for t in 0..10 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                c.prepare(prepare(&format!("k8s.io/{t}/{i} c"), "base"))
                    .await
                    .expect("prepare");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let mut stream = c
        .clone()
        .list(ListSnapshotsRequest {
            snapshotter: String::new(),
            filters: vec!["kind==active".into()],
        })
        .await
        .expect("list")
        .into_inner();
    let (mut batches, mut names) = (0, Vec::new());
    while let Some(batch) = stream.message().await.expect("batch") {
        batches += 1;
        names.extend(batch.info.into_iter().map(|i| i.name));
    }
    assert_eq!(names.len(), 250);
    assert_eq!(batches, 3, "100 a message");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_socket_does_not_stop_the_server() {
    let server = Server::start();
    let socket = server.socket.clone();
    tokio::task::spawn_blocking(move || {
        for garbage in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff",
            &[0u8; 4096],
            b"",
        ] {
            let mut s = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
            let _ = s.write_all(garbage);
            drop(s);
        }
    })
    .await
    .expect("garbage");
    let mut c = client(&server.socket).await;
    c.prepare(prepare("after", "")).await.expect("still serving");
    server.stop().await;
}
