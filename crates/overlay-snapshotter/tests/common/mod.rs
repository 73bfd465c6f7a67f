//! What the gRPC tests share: a server over the fake backend on a real
//! unix socket, and a client of it.
#![allow(dead_code, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use overlay_driver::{FakeBackend, Overlay2};
use overlay_snapshotter::proto::snapshots::snapshots_client::SnapshotsClient;
use overlay_snapshotter::proto::snapshots::{CommitSnapshotRequest, PrepareSnapshotRequest};
use overlay_snapshotter::{IdMapMounts, Service, Snapshotter, Store};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

/// A served snapshotter, stopped by [`stop`](Self::stop).
pub struct Server {
    pub socket: PathBuf,
    /// The snapshotter served, to look at its layers.
    pub snapshotter: Arc<Snapshotter<FakeBackend>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// A server over the fake backend, id-mapped snapshots bound.
    pub fn start() -> Self {
        Self::start_with(FakeBackend::new(), IdMapMounts::Bind)
    }

    /// A server over `backend`, id-mapped snapshots mounted in `form`.
    pub fn start_with(backend: FakeBackend, form: IdMapMounts) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("s.sock");
        let driver = Overlay2::new(backend, &[] as &[&str]).expect("driver");
        let s = Arc::new(Snapshotter::new(driver, Store::in_memory().expect("store")).with_id_map_mounts(form));
        let snapshotter = Arc::clone(&s);
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            Service::new(s)
                .serve(listener, async {
                    let _ = rx.await;
                })
                .await
                .expect("serve");
        });
        Self {
            socket,
            snapshotter,
            stop: Some(tx),
            task,
            _dir: dir,
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.expect("server task");
    }
}

/// A client of the server on `socket`, as containerd's proxy connects.
pub async fn client(socket: &Path) -> SnapshotsClient<Channel> {
    let socket = socket.to_path_buf();
    let channel = Endpoint::try_from("http://[::]:0")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await
        .expect("connect");
    SnapshotsClient::new(channel)
}

/// A Prepare of `key` on `parent` (`""` for none) with `labels`.
pub fn prepare_req(key: &str, parent: &str, labels: HashMap<String, String>) -> PrepareSnapshotRequest {
    PrepareSnapshotRequest {
        snapshotter: String::new(),
        key: key.into(),
        parent: parent.into(),
        labels,
    }
}

/// A Commit of the active snapshot `key` as `name`, without labels.
pub fn commit_req(name: &str, key: &str) -> CommitSnapshotRequest {
    CommitSnapshotRequest {
        snapshotter: String::new(),
        name: name.into(),
        key: key.into(),
        labels: HashMap::new(),
    }
}
