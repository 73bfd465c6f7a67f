//! The HTTP side: dockerd's `POST /Plugin.Activate`, `POST
//! /GraphDriver.*` on a unix socket, JSON bodies without a Content-Type,
//! tars streamed both ways. Each call is parsed, handed to the driver on
//! the blocking pool, and answered; errors are `{"Err": "..."}` with a
//! non-200 status, as dockerd reads them.

use std::future::Future;
use std::io::Write;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt as _;
use naive_diff::ChangeKind;
use overlay_driver::{CreateOpts, GraphDriver};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixListener;
use tracing::debug;

use crate::plugin::{Plugin, PluginError};
use crate::protocol::{
    ActivateResponse, ApplyQuery, Capabilities, CapabilitiesResponse, Change, ChangesResponse, CreateRequest,
    ErrResponse, ExistsResponse, GetRequest, GetResponse, IdRequest, InitRequest, MetadataResponse, PairRequest,
    SizeResponse, StatusResponse,
};

/// Bytes of tar a Diff response sends at a time.
const DIFF_CHUNK: usize = 64 * 1024;

type Shared = Arc<Plugin>;

fn json(status: StatusCode, value: &impl Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    (
        status,
        [("content-type", "application/vnd.docker.plugins.v1+json")],
        body,
    )
        .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json(status, &ErrResponse { err: message.into() })
}

impl IntoResponse for PluginError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error(status, self.to_string())
    }
}

/// A request body as JSON; an empty body reads as `{}`.
fn parse<T: DeserializeOwned>(call: &str, body: &[u8]) -> Result<T, PluginError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| PluginError::BadRequest(format!("{call}: malformed request body: {e}")))
}

/// Runs `f` with the driver on the blocking pool.
async fn blocking<T: Send + 'static>(
    plugin: &Shared,
    f: impl FnOnce(&dyn GraphDriver) -> Result<T, PluginError> + Send + 'static,
) -> Result<T, PluginError> {
    let driver = plugin.driver()?;
    tokio::task::spawn_blocking(move || f(&*driver))
        .await
        .map_err(|e| PluginError::BadRequest(format!("the call failed: {e}")))?
}

/// A JSON call: parse, run, answer.
async fn call<Req, Resp>(
    plugin: Shared,
    name: &'static str,
    body: Bytes,
    f: impl FnOnce(&dyn GraphDriver, Req) -> Result<Resp, PluginError> + Send + 'static,
) -> Response
where
    Req: DeserializeOwned + std::fmt::Debug + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    let req: Req = match parse(name, &body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    debug!(call = name, ?req);
    match blocking(&plugin, move |d| f(d, req)).await {
        Ok(resp) => json(StatusCode::OK, &resp),
        Err(e) => e.into_response(),
    }
}

fn ok() -> ErrResponse {
    ErrResponse::default()
}

fn parent(p: &str) -> Option<&str> {
    (!p.is_empty()).then_some(p)
}

fn create_opts(req: &CreateRequest) -> CreateOpts {
    CreateOpts {
        storage_opt: req.storage_opt.clone().unwrap_or_default().into_iter().collect(),
        mount_label: parent(&req.mount_label).map(str::to_owned),
        ..CreateOpts::default()
    }
}

async fn activate() -> Response {
    json(
        StatusCode::OK,
        &ActivateResponse {
            implements: vec!["GraphDriver"],
        },
    )
}

async fn init(State(p): State<Shared>, body: Bytes) -> Response {
    let req: InitRequest = match parse("GraphDriver.Init", &body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let p2 = Arc::clone(&p);
    match tokio::task::spawn_blocking(move || p2.init(&req)).await {
        Ok(Ok(())) => json(StatusCode::OK, &ok()),
        Ok(Err(e)) => e.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn create(State(p): State<Shared>, body: Bytes) -> Response {
    call(p, "GraphDriver.Create", body, |d, r: CreateRequest| {
        d.create(&r.id, parent(&r.parent), &create_opts(&r))?;
        Ok(ok())
    })
    .await
}

async fn create_rw(State(p): State<Shared>, body: Bytes) -> Response {
    call(p, "GraphDriver.CreateReadWrite", body, |d, r: CreateRequest| {
        d.create_read_write(&r.id, parent(&r.parent), &create_opts(&r))?;
        Ok(ok())
    })
    .await
}

async fn remove(State(p): State<Shared>, body: Bytes) -> Response {
    call(p, "GraphDriver.Remove", body, |d, r: IdRequest| {
        d.remove(&r.id)?;
        Ok(ok())
    })
    .await
}

async fn get(State(p): State<Shared>, body: Bytes) -> Response {
    call(p, "GraphDriver.Get", body, |d, r: GetRequest| {
        let dir = d.get(&r.id, parent(&r.mount_label))?;
        Ok(GetResponse {
            dir: dir.display().to_string(),
            err: String::new(),
        })
    })
    .await
}

async fn put(State(p): State<Shared>, body: Bytes) -> Response {
    call(p, "GraphDriver.Put", body, |d, r: IdRequest| {
        d.put(&r.id)?;
        Ok(ok())
    })
    .await
}

async fn exists(State(p): State<Shared>, body: Bytes) -> Response {
    call(p, "GraphDriver.Exists", body, |d, r: IdRequest| {
        Ok(ExistsResponse {
            exists: d.exists(&r.id),
        })
    })
    .await
}

async fn status(State(p): State<Shared>, body: Bytes) -> Response {
    call(p, "GraphDriver.Status", body, |d, _: serde_json::Value| {
        Ok(StatusResponse {
            status: d.status().into_iter().map(|(k, v)| [k, v]).collect(),
        })
    })
    .await
}

async fn metadata(State(p): State<Shared>, body: Bytes) -> Response {
    call(p, "GraphDriver.GetMetadata", body, |d, r: IdRequest| {
        Ok(MetadataResponse {
            metadata: d.metadata(&r.id)?,
            err: String::new(),
        })
    })
    .await
}

async fn cleanup(State(p): State<Shared>, body: Bytes) -> Response {
    call(p, "GraphDriver.Cleanup", body, |d, _: serde_json::Value| {
        d.cleanup()?;
        Ok(ok())
    })
    .await
}

async fn capabilities() -> Response {
    json(
        StatusCode::OK,
        &CapabilitiesResponse {
            capabilities: Capabilities {
                reproduces_exact_diffs: false,
            },
        },
    )
}

async fn changes(State(p): State<Shared>, body: Bytes) -> Response {
    call(p, "GraphDriver.Changes", body, |d, r: PairRequest| {
        let changes = d.changes(&r.id, parent(&r.parent))?;
        Ok(ChangesResponse {
            changes: changes
                .into_iter()
                .map(|c| Change {
                    path: format!("/{}", c.path.display()),
                    kind: match c.kind {
                        ChangeKind::Modify => 0,
                        ChangeKind::Add => 1,
                        ChangeKind::Delete => 2,
                    },
                })
                .collect(),
            err: String::new(),
        })
    })
    .await
}

async fn diff_size(State(p): State<Shared>, body: Bytes) -> Response {
    call(p, "GraphDriver.DiffSize", body, |d, r: PairRequest| {
        Ok(SizeResponse {
            size: d.diff_size(&r.id, parent(&r.parent))?,
            err: String::new(),
        })
    })
    .await
}

/// What the diff writer hands to the response: tar bytes, or the failure
/// that ends the stream.
enum Piece {
    Data(Bytes),
    Failed(String),
}

/// A `Write` that sends what the driver writes to the response in
/// chunks (blocking when dockerd reads slower than the disk).
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Piece>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(DIFF_CHUNK)));
        self.tx
            .blocking_send(Piece::Data(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "dockerd closed the connection"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= DIFF_CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Diff: the tar streamed as the body. A failure before the first byte is
/// an `Err` answer; after it, only cutting the connection can say so.
async fn diff(State(p): State<Shared>, body: Bytes) -> Response {
    let req: PairRequest = match parse("GraphDriver.Diff", &body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let driver = match p.driver() {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Piece>(4);
    tokio::task::spawn_blocking(move || {
        let mut w = ChunkWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(DIFF_CHUNK),
        };
        let done = driver
            .diff(&req.id, parent(&req.parent), &mut w)
            .map_err(|e| e.to_string())
            .and_then(|()| w.flush().map_err(|e| e.to_string()));
        if let Err(e) = done {
            let _ = tx.blocking_send(Piece::Failed(e));
        }
    });
    let first = match rx.recv().await {
        Some(Piece::Data(b)) => b,
        Some(Piece::Failed(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
        None => Bytes::new(),
    };
    let rest = tokio_stream::wrappers::ReceiverStream::new(rx).map(|piece| match piece {
        Piece::Data(b) => Ok(b),
        Piece::Failed(e) => Err(std::io::Error::other(e)),
    });
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(rest);
    (
        StatusCode::OK,
        [("content-type", "application/x-tar")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Bytes of request body the tar reader is handed at a time.
const APPLY_CHUNK: usize = 256 * 1024;

/// A request body as a blocking `Read`, fed by a task that gathers the
/// body's frames into large buffers. dockerd streams a layer through
/// tar-split and an unbuffered pipe: about three HTTP chunks per tar entry
/// (header, data, padding). Handing each frame to the blocking thread
/// cost a thread wake-up each (45 µs, 0.8 s of a 2 s `docker load`);
/// gathered, the reader wakes once per 256 KiB.
struct BodyReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl BodyReader {
    fn spawn(body: Body) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut frames = body.into_data_stream();
            let mut buf = bytes::BytesMut::with_capacity(APPLY_CHUNK);
            while let Some(frame) = frames.next().await {
                match frame {
                    Ok(b) => {
                        buf.extend_from_slice(&b);
                        if buf.len() >= APPLY_CHUNK && tx.send(Ok(buf.split().freeze())).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(std::io::Error::other(e))).await;
                        return;
                    }
                }
            }
            if !buf.is_empty() {
                let _ = tx.send(Ok(buf.freeze())).await;
            }
        });
        Self {
            rx,
            current: Bytes::new(),
        }
    }
}

impl std::io::Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// ApplyDiff: the tar read from the request body as it arrives.
async fn apply_diff(
    State(p): State<Shared>,
    query: Result<Query<ApplyQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Response {
    let q = match query {
        Ok(Query(q)) if !q.id.is_empty() => q,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "GraphDriver.ApplyDiff: the query must name the layer: ?id=ID&parent=PARENT",
            );
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("GraphDriver.ApplyDiff: the query must be ?id=ID&parent=PARENT: {e}"),
            );
        }
    };
    let mut reader = BodyReader::spawn(body);
    let applied = blocking(&p, move |d| {
        let size = d.apply_diff(&q.id, parent(&q.parent), &mut reader)?;
        // Read what the tar's end left, so the connection stays usable.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        Ok(size)
    })
    .await;
    match applied {
        Ok(size) => json(
            StatusCode::OK,
            &SizeResponse {
                size,
                err: String::new(),
            },
        ),
        Err(e) => e.into_response(),
    }
}

async fn unknown(uri: Uri) -> Response {
    error(StatusCode::NOT_FOUND, format!("unknown endpoint {}", uri.path()))
}

/// Every endpoint of the protocol on `plugin`.
pub fn router(plugin: Arc<Plugin>) -> Router {
    Router::new()
        .route("/Plugin.Activate", post(activate))
        .route("/GraphDriver.Init", post(init))
        .route("/GraphDriver.Capabilities", post(capabilities))
        .route("/GraphDriver.Create", post(create))
        .route("/GraphDriver.CreateReadWrite", post(create_rw))
        .route("/GraphDriver.Remove", post(remove))
        .route("/GraphDriver.Get", post(get))
        .route("/GraphDriver.Put", post(put))
        .route("/GraphDriver.Exists", post(exists))
        .route("/GraphDriver.Status", post(status))
        .route("/GraphDriver.GetMetadata", post(metadata))
        .route("/GraphDriver.Cleanup", post(cleanup))
        .route("/GraphDriver.Diff", post(diff))
        .route("/GraphDriver.Changes", post(changes))
        .route("/GraphDriver.ApplyDiff", post(apply_diff))
        .route("/GraphDriver.DiffSize", post(diff_size))
        .fallback(unknown)
        .with_state(plugin)
}

/// Serves `plugin` on `listener` until `shutdown` completes, then lets the
/// calls under way finish.
///
/// # Errors
///
/// The server fails.
pub async fn serve(
    plugin: Arc<Plugin>,
    listener: UnixListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(plugin))
        .with_graceful_shutdown(shutdown)
        .await
}
