//! The gRPC service: requests in, [`Snapshotter`] calls (on tokio's
//! blocking pool: they touch the disk), answers or gRPC codes out. No
//! storage logic lives here.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use overlay_driver::Backend;
use tokio::net::UnixListener;
use tokio_stream::Stream;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use crate::filter::Filters;
use crate::meta::{Kind, Time};
use crate::mounts::Mount;
use crate::proto::snapshots::snapshots_server::{Snapshots, SnapshotsServer};
use crate::proto::snapshots::{
    self as pb, CleanupRequest, CommitSnapshotRequest, ListSnapshotsRequest, ListSnapshotsResponse, MountsRequest,
    MountsResponse, PrepareSnapshotRequest, PrepareSnapshotResponse, RemoveSnapshotRequest, StatSnapshotRequest,
    StatSnapshotResponse, UpdateSnapshotRequest, UpdateSnapshotResponse, UsageRequest, UsageResponse,
    ViewSnapshotRequest, ViewSnapshotResponse,
};
use crate::proto::types;
use crate::snapshotter::{Info, Snapshotter};

/// How many snapshots one List message carries (containerd batches too).
const LIST_BATCH: usize = 100;

/// containerd's `Snapshots` gRPC service over a [`Snapshotter`].
pub struct Service<B> {
    inner: Arc<Snapshotter<B>>,
}

impl<B> Clone for Service<B> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<B: Backend + 'static> Service<B> {
    /// The service over `snapshotter`.
    pub fn new(snapshotter: Arc<Snapshotter<B>>) -> Self {
        Self { inner: snapshotter }
    }

    /// The service as tonic serves it.
    pub fn into_server(self) -> SnapshotsServer<Self> {
        SnapshotsServer::new(self)
    }

    /// Serves on `listener` until `shutdown` completes, then finishes the
    /// calls under way.
    ///
    /// # Errors
    ///
    /// The server fails to run.
    pub async fn serve(
        self,
        listener: UnixListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        tonic::transport::Server::builder()
            .add_service(self.into_server())
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
            .await
    }

    /// Runs `f` where the call arrived: for the calls that only read the
    /// database (a read transaction, microseconds), which would pay more
    /// for two thread hand-overs than for the work.
    fn run_here<T>(&self, f: impl FnOnce(&Snapshotter<B>) -> crate::Result<T>) -> Result<T, Status> {
        f(&self.inner).map_err(Status::from)
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Snapshotter<B>) -> crate::Result<T> + Send + 'static,
    ) -> Result<T, Status> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Status::internal(format!("snapshot operation failed: {e}")))?
            .map_err(Status::from)
    }
}

fn labels(m: std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

fn mounts(m: Vec<Mount>) -> Vec<types::Mount> {
    m.into_iter()
        .map(|m| types::Mount {
            r#type: m.kind,
            source: m.source,
            target: String::new(),
            options: m.options,
        })
        .collect()
}

fn timestamp(t: Time) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.secs,
        nanos: i32::try_from(t.nanos).unwrap_or(0),
    }
}

fn time(t: Option<prost_types::Timestamp>) -> Time {
    t.map_or(Time { secs: 0, nanos: 0 }, |t| Time {
        secs: t.seconds,
        nanos: u32::try_from(t.nanos).unwrap_or(0),
    })
}

fn kind_to_pb(k: Kind) -> pb::Kind {
    match k {
        Kind::View => pb::Kind::View,
        Kind::Active => pb::Kind::Active,
        Kind::Committed => pb::Kind::Committed,
    }
}

fn info_to_pb(i: Info) -> pb::Info {
    pb::Info {
        name: i.name,
        parent: i.parent.unwrap_or_default(),
        kind: kind_to_pb(i.kind).into(),
        created_at: Some(timestamp(i.created)),
        updated_at: Some(timestamp(i.updated)),
        labels: i.labels.into_iter().collect(),
    }
}

/// The fields Update may read: name and labels (the rest are immutable).
fn info_from_pb(i: pb::Info) -> Info {
    Info {
        name: i.name,
        parent: (!i.parent.is_empty()).then_some(i.parent),
        kind: Kind::Active,
        labels: labels(i.labels),
        created: time(i.created_at),
        updated: time(i.updated_at),
    }
}

type ListStream = Pin<Box<dyn Stream<Item = Result<ListSnapshotsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<B: Backend + 'static> Snapshots for Service<B> {
    async fn prepare(&self, req: Request<PrepareSnapshotRequest>) -> Result<Response<PrepareSnapshotResponse>, Status> {
        let r = req.into_inner();
        let m = self
            .run(move |s| s.prepare(&r.key, &r.parent, labels(r.labels)))
            .await?;
        Ok(Response::new(PrepareSnapshotResponse { mounts: mounts(m) }))
    }

    async fn view(&self, req: Request<ViewSnapshotRequest>) -> Result<Response<ViewSnapshotResponse>, Status> {
        let r = req.into_inner();
        let m = self.run(move |s| s.view(&r.key, &r.parent, labels(r.labels))).await?;
        Ok(Response::new(ViewSnapshotResponse { mounts: mounts(m) }))
    }

    async fn mounts(&self, req: Request<MountsRequest>) -> Result<Response<MountsResponse>, Status> {
        let r = req.into_inner();
        let m = self.run_here(|s| s.mounts(&r.key))?;
        Ok(Response::new(MountsResponse { mounts: mounts(m) }))
    }

    async fn commit(&self, req: Request<CommitSnapshotRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        self.run(move |s| s.commit(&r.name, &r.key, labels(r.labels))).await?;
        Ok(Response::new(()))
    }

    async fn remove(&self, req: Request<RemoveSnapshotRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        self.run(move |s| s.remove(&r.key)).await?;
        Ok(Response::new(()))
    }

    async fn stat(&self, req: Request<StatSnapshotRequest>) -> Result<Response<StatSnapshotResponse>, Status> {
        let r = req.into_inner();
        let info = self.run_here(|s| s.stat(&r.key))?;
        Ok(Response::new(StatSnapshotResponse {
            info: Some(info_to_pb(info)),
        }))
    }

    async fn update(&self, req: Request<UpdateSnapshotRequest>) -> Result<Response<UpdateSnapshotResponse>, Status> {
        let r = req.into_inner();
        let info = r
            .info
            .ok_or_else(|| Status::invalid_argument("update without snapshot info"))?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let info = info_from_pb(info);
        let updated = self.run(move |s| s.update(info, &paths)).await?;
        Ok(Response::new(UpdateSnapshotResponse {
            info: Some(info_to_pb(updated)),
        }))
    }

    type ListStream = ListStream;

    async fn list(&self, req: Request<ListSnapshotsRequest>) -> Result<Response<Self::ListStream>, Status> {
        let r = req.into_inner();
        let filters = Filters::parse(&r.filters).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let infos = self.run(move |s| s.list(&filters)).await?;
        let mut batches = Vec::with_capacity(infos.len().div_ceil(LIST_BATCH));
        let mut infos = infos.into_iter().map(info_to_pb).peekable();
        while infos.peek().is_some() {
            batches.push(Ok(ListSnapshotsResponse {
                info: infos.by_ref().take(LIST_BATCH).collect(),
            }));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(batches))))
    }

    async fn usage(&self, req: Request<UsageRequest>) -> Result<Response<UsageResponse>, Status> {
        let r = req.into_inner();
        let u = self.run(move |s| s.usage(&r.key)).await?;
        Ok(Response::new(UsageResponse {
            size: i64::try_from(u.size).unwrap_or(i64::MAX),
            inodes: i64::try_from(u.inodes).unwrap_or(i64::MAX),
        }))
    }

    async fn cleanup(&self, _req: Request<CleanupRequest>) -> Result<Response<()>, Status> {
        self.run(|s| s.cleanup().map(drop)).await?;
        Ok(Response::new(()))
    }
}
