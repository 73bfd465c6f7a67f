//! The plugin over a real unix socket, spoken to as dockerd speaks: HTTP/1.1
//! with kept-alive connections, no Content-Type, a chunked tar for
//! ApplyDiff. On the in-memory fake backend (no root): dockerd's call
//! sequences, reference-counted Get/Put, bad input answered with `Err` and
//! changing nothing, and a property test that random call sequences
//! through the socket give what the same calls give the driver directly.

use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use overlay_docker_plugin::Plugin;
use overlay_driver::{CreateOpts, FakeBackend, GraphDriver, Overlay2};
use serde_json::{Value, json};

struct Server {
    socket: std::path::PathBuf,
    driver: Arc<Overlay2<FakeBackend>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_plugin_keeps_the_last_init() {
    // dockerd sends Init once; a plugin restarted under it must not
    // answer "not initialised" from then on.
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("p.sock.init");
    let home = dir.path().to_str().expect("utf-8").to_owned();
    let server = Server::start_with(dir, Some(&state)).await;
    let mut c = Conn::open(&server.socket).await;
    c.ok(
        "GraphDriver.Init",
        json!({"Home": home, "Opts": ["overlay2.override_kernel_check=true"]}),
    )
    .await;
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&state).expect("state").permissions());
    assert_eq!(mode & 0o777, 0o600);
    let dir = server.stop().await;
    let server = Server::start_with(dir, Some(&state)).await;
    let mut c = Conn::open(&server.socket).await;
    c.ok("GraphDriver.Create", json!({"ID": "after-restart"})).await;
    server.stop().await;
}

impl Server {
    async fn start() -> Self {
        Self::start_with(tempfile::tempdir().expect("tempdir"), None).await
    }

    /// A server in `dir` keeping its Init in `state`, on a fresh driver.
    async fn start_with(dir: tempfile::TempDir, state: Option<&Path>) -> Self {
        let socket = dir.path().join("p.sock");
        // As `overlay2 serve docker` makes it: with the layer index.
        let driver = Arc::new(
            Overlay2::new(FakeBackend::new(), &[] as &[&str])
                .expect("driver")
                .with_index()
                .expect("index"),
        );
        let d = Arc::clone(&driver);
        let mut plugin = Plugin::new(move |_init| Ok(Arc::clone(&d) as Arc<dyn GraphDriver>));
        if let Some(state) = state {
            plugin = plugin.with_state_file(state).expect("state");
        }
        let plugin = Arc::new(plugin);
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            overlay_docker_plugin::serve(plugin, listener, async {
                let _ = rx.await;
            })
            .await
            .expect("serve");
        });
        Self {
            socket,
            driver,
            stop: Some(tx),
            task,
            _dir: dir,
        }
    }

    async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.expect("server");
        let _ = std::fs::remove_file(&self.socket);
        self._dir
    }
}

/// One kept-alive connection, as dockerd's plugin client keeps them.
struct Conn(SendRequest<Full<Bytes>>);

impl Conn {
    async fn open(socket: &Path) -> Self {
        let stream = tokio::net::UnixStream::connect(socket).await.expect("connect");
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Self(send)
    }

    async fn raw(&mut self, path: &str, body: Vec<u8>) -> (u16, Bytes) {
        let req = Request::post(path)
            .header("host", "plugin")
            .header("accept", "application/vnd.docker.plugins.v1.2+json")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        self.0.ready().await.expect("connection ready");
        let resp = self.0.send_request(req).await.expect("send");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, body)
    }

    /// A JSON call; the answer and whether it was an error.
    async fn call(&mut self, method: &str, body: Value) -> (u16, Value) {
        let (status, bytes) = self.raw(&format!("/{method}"), body.to_string().into_bytes()).await;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    async fn ok(&mut self, method: &str, body: Value) -> Value {
        let (status, v) = self.call(method, body).await;
        assert_eq!(status, 200, "{method}: {v}");
        assert!(v.get("Err").is_none_or(|e| e == ""), "{method}: {v}");
        v
    }

    async fn err(&mut self, method: &str, body: Value) -> String {
        let (status, v) = self.call(method, body).await;
        assert_ne!(status, 200, "{method} should fail: {v}");
        v["Err"].as_str().expect("Err").to_owned()
    }
}

fn layer_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, *data).expect("append");
    }
    b.into_inner().expect("tar")
}

async fn init(c: &mut Conn) {
    let (s, v) = c.raw("/Plugin.Activate", Vec::new()).await;
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&v).expect("json"),
        json!({"Implements": ["GraphDriver"]})
    );
    c.ok(
        "GraphDriver.Init",
        json!({"Home": "/var/lib/docker/overlay2-rs", "Opts": null, "UIDMaps": null, "GIDMaps": null}),
    )
    .await;
    let caps = c.ok("GraphDriver.Capabilities", json!({})).await;
    assert_eq!(caps, json!({"Capabilities": {"ReproducesExactDiffs": false}}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerd_sequences() {
    let server = Server::start().await;
    let mut c = Conn::open(&server.socket).await;
    assert!(c.err("GraphDriver.Create", json!({"ID": "l1"})).await.contains("Init"));
    init(&mut c).await;

    // docker load: Create + ApplyDiff per layer.
    c.ok("GraphDriver.Create", json!({"ID": "l1"})).await;
    let tar = layer_tar(&[("etc/hosts", b"127.0.0.1 localhost\n"), ("gone", b"x")]);
    let (s, v) = c.raw("/GraphDriver.ApplyDiff?id=l1&parent=", tar).await;
    assert_eq!(s, 200, "{v:?}");
    let v: Value = serde_json::from_slice(&v).expect("json");
    assert_eq!(v["Size"], 21);
    c.ok("GraphDriver.Create", json!({"ID": "l2", "Parent": "l1"})).await;
    let tar = layer_tar(&[(".wh.gone", b""), ("new", b"added")]);
    let (s, _) = c.raw("/GraphDriver.ApplyDiff?id=l2&parent=l1", tar).await;
    assert_eq!(s, 200);

    // docker run: init layer, container layer, Get/Put.
    c.ok("GraphDriver.CreateReadWrite", json!({"ID": "c-init", "Parent": "l2"}))
        .await;
    c.ok("GraphDriver.CreateReadWrite", json!({"ID": "c", "Parent": "c-init"}))
        .await;
    let dir = c.ok("GraphDriver.Get", json!({"ID": "c"})).await["Dir"].clone();
    assert_eq!(dir, "/fake/overlay2/c/merged");
    server
        .driver
        .tree("c")
        .expect("tree")
        .write(Path::new("written"), 0o644, b"by the container")
        .expect("write");
    // A second Get (docker cp) and its Put leave the mount.
    c.ok("GraphDriver.Get", json!({"ID": "c"})).await;
    c.ok("GraphDriver.Put", json!({"ID": "c"})).await;
    assert!(server.driver.is_mounted("c"), "Put after two Gets must not unmount");
    let changes = c
        .ok("GraphDriver.Changes", json!({"ID": "c", "Parent": "c-init"}))
        .await;
    assert_eq!(changes["Changes"], json!([{"Path": "/written", "Kind": 1}]));
    let meta = c.ok("GraphDriver.GetMetadata", json!({"ID": "c"})).await;
    assert!(
        meta["Metadata"]["UpperDir"]
            .as_str()
            .is_some_and(|u| u.ends_with("/c/diff")),
        "{meta}"
    );

    // docker commit: Diff streamed out, applied to a new image layer.
    let (s, diff) = c
        .raw(
            "/GraphDriver.Diff",
            json!({"ID": "c", "Parent": "c-init"}).to_string().into_bytes(),
        )
        .await;
    assert_eq!(s, 200);
    let names: Vec<String> = tar::Archive::new(&diff[..])
        .entries()
        .expect("entries")
        .map(|e| e.expect("entry").path().expect("path").display().to_string())
        .collect();
    assert_eq!(names, ["written"]);
    c.ok("GraphDriver.Create", json!({"ID": "n", "Parent": "l2"})).await;
    let (s, _) = c.raw("/GraphDriver.ApplyDiff?id=n&parent=l2", diff.to_vec()).await;
    assert_eq!(s, 200);
    c.ok("GraphDriver.Put", json!({"ID": "c"})).await;
    assert!(!server.driver.is_mounted("c"));
    let size = c.ok("GraphDriver.DiffSize", json!({"ID": "n", "Parent": "l2"})).await;
    assert_eq!(size["Size"], 16);

    // docker rm, rmi: top down.
    for id in ["c", "c-init", "n", "l2", "l1"] {
        c.ok("GraphDriver.Remove", json!({"ID": id})).await;
        assert_eq!(c.ok("GraphDriver.Exists", json!({"ID": id})).await["Exists"], false);
    }
    assert!(server.driver.layers().expect("layers").is_empty());
    let status = c.ok("GraphDriver.Status", json!({})).await;
    assert_eq!(status["Status"][0][0], "Backing Filesystem");
    c.ok("GraphDriver.Cleanup", json!({})).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_err_and_changes_nothing() {
    let server = Server::start().await;
    let mut c = Conn::open(&server.socket).await;
    init(&mut c).await;
    c.ok("GraphDriver.Create", json!({"ID": "base"})).await;
    let layers = || server.driver.layers().expect("layers");
    let before = layers();
    let e = c.err("GraphDriver.Create", json!({"ID": "../escape"})).await;
    assert!(e.contains("../escape"), "{e}");
    let e = c
        .err("GraphDriver.Create", json!({"ID": "x", "Parent": "missing"}))
        .await;
    assert!(e.contains("missing"), "{e}");
    let e = c.err("GraphDriver.Create", json!({"ID": "base"})).await;
    assert!(e.contains("already exists"), "{e}");
    let (s, v) = c.raw("/GraphDriver.Create", b"{\"ID\": ".to_vec()).await;
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&v).contains("malformed"), "{v:?}");
    let (s, v) = c.raw("/GraphDriver.Create", b"[1,2]".to_vec()).await;
    assert_eq!(s, 400, "{v:?}");
    let (s, v) = c.raw("/GraphDriver.Frobnicate", b"{}".to_vec()).await;
    assert_eq!(s, 404);
    assert!(String::from_utf8_lossy(&v).contains("/GraphDriver.Frobnicate"));
    let e = c.err("GraphDriver.Get", json!({"ID": "nope"})).await;
    assert!(e.contains("nope"), "{e}");
    let (s, _) = c
        .raw("/GraphDriver.Diff", json!({"ID": "nope"}).to_string().into_bytes())
        .await;
    assert_eq!(s, 500, "a Diff that fails before its first byte is an Err answer");
    // A hostile tar: the layer stays empty, nothing outside it is written.
    c.ok("GraphDriver.Create", json!({"ID": "victim", "Parent": "base"}))
        .await;
    let mut hostile = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    h.as_gnu_mut().expect("gnu").name[..11].copy_from_slice(b"../../evil\0");
    h.set_cksum();
    hostile.append(&h, &b"evil"[..]).expect("append");
    let (s, v) = c
        .raw(
            "/GraphDriver.ApplyDiff?id=victim&parent=base",
            hostile.into_inner().expect("tar"),
        )
        .await;
    assert_eq!(s, 500, "{v:?}");
    assert!(String::from_utf8_lossy(&v).contains("evil"), "{v:?}");
    assert!(
        server
            .driver
            .changes("victim", Some("base"))
            .expect("changes")
            .is_empty()
    );
    let (s, _) = c.raw("/GraphDriver.ApplyDiff", layer_tar(&[("f", b"x")])).await;
    assert_eq!(s, 400, "ApplyDiff without its query");
    let mut after = layers();
    after.retain(|l| l.as_str() != "victim");
    assert_eq!(after, before);
    // The connection is still good after all that.
    c.ok("GraphDriver.Status", json!({})).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connections() {
    let server = Server::start().await;
    let mut c = Conn::open(&server.socket).await;
    init(&mut c).await;
    c.ok("GraphDriver.Create", json!({"ID": "img"})).await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let socket = server.socket.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(&socket).await;
            let id = format!("ctr{i}");
            c.ok(
                "GraphDriver.CreateReadWrite",
                json!({"ID": format!("{id}-init"), "Parent": "img"}),
            )
            .await;
            c.ok(
                "GraphDriver.CreateReadWrite",
                json!({"ID": id, "Parent": format!("{id}-init")}),
            )
            .await;
            for _ in 0..3 {
                c.ok("GraphDriver.Get", json!({"ID": id})).await;
            }
            for _ in 0..3 {
                c.ok("GraphDriver.Put", json!({"ID": id})).await;
            }
            c.ok("GraphDriver.Remove", json!({"ID": id})).await;
            c.ok("GraphDriver.Remove", json!({"ID": format!("{id}-init")})).await;
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(server.driver.layers().expect("layers").len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_being_removed_is_not_half_served() {
    // Get, Put and Exists racing a Remove of the same layer: each answers
    // as before or after the removal, with the layer named in any error,
    // and the layer ends gone and unmounted.
    let server = Server::start().await;
    let mut c = Conn::open(&server.socket).await;
    init(&mut c).await;
    c.ok("GraphDriver.Create", json!({"ID": "img"})).await;
    for round in 0..20 {
        let id = format!("c{round}");
        c.ok("GraphDriver.CreateReadWrite", json!({"ID": id, "Parent": "img"}))
            .await;
        let mut getters = Vec::new();
        for _ in 0..3 {
            let (socket, id) = (server.socket.clone(), id.clone());
            getters.push(tokio::spawn(async move {
                let mut c = Conn::open(&socket).await;
                let (status, v) = c.call("GraphDriver.Get", json!({"ID": id})).await;
                if status != 200 {
                    let e = v["Err"].as_str().unwrap_or_default().to_owned();
                    assert!(e.contains(&id), "{e}");
                    return;
                }
                c.call("GraphDriver.Put", json!({"ID": id})).await;
            }));
        }
        let (status, v) = c.call("GraphDriver.Remove", json!({"ID": id})).await;
        assert_eq!(status, 200, "{v}");
        for g in getters {
            g.await.expect("getter");
        }
        assert_eq!(c.ok("GraphDriver.Exists", json!({"ID": id})).await["Exists"], false);
        assert!(!server.driver.is_mounted(&id), "round {round}: {id} left mounted");
    }
    // A parent is not removed from under its child.
    c.ok("GraphDriver.CreateReadWrite", json!({"ID": "child", "Parent": "img"}))
        .await;
    let e = c.err("GraphDriver.Remove", json!({"ID": "img"})).await;
    assert!(e.contains("img") && e.contains("stacked on it"), "{e}");
    server.stop().await;
}

mod model {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Create(usize, Option<usize>, bool),
        Remove(usize),
        Get(usize),
        Put(usize),
        Exists(usize),
        Changes(usize, Option<usize>),
    }

    const IDS: &[&str] = &["a", "b", "c-init", "c", "../bad"];

    fn op() -> impl Strategy<Value = Op> {
        let i = 0..IDS.len();
        prop_oneof![
            3 => (i.clone(), proptest::option::of(i.clone()), any::<bool>()).prop_map(|(a, p, rw)| Op::Create(a, p, rw)),
            1 => i.clone().prop_map(Op::Remove),
            2 => i.clone().prop_map(Op::Get),
            2 => i.clone().prop_map(Op::Put),
            1 => i.clone().prop_map(Op::Exists),
            1 => (i.clone(), proptest::option::of(i)).prop_map(|(a, p)| Op::Changes(a, p)),
        ]
    }

    /// The driver's own answer, as the protocol would carry it.
    fn direct(d: &dyn GraphDriver, op: &Op) -> Result<Value, String> {
        let e = |e: overlay_driver::DriverError| e.to_string();
        Ok(match op {
            Op::Create(a, p, rw) => {
                let parent = p.map(|p| IDS[p]);
                if *rw {
                    d.create_read_write(IDS[*a], parent, &CreateOpts::default())
                        .map_err(e)?;
                } else {
                    d.create(IDS[*a], parent, &CreateOpts::default()).map_err(e)?;
                }
                Value::Null
            }
            Op::Remove(a) => d.remove(IDS[*a]).map(|()| Value::Null).map_err(e)?,
            Op::Get(a) => json!(d.get(IDS[*a], None).map_err(e)?.display().to_string()),
            Op::Put(a) => d.put(IDS[*a]).map(|()| Value::Null).map_err(e)?,
            Op::Exists(a) => json!(d.exists(IDS[*a])),
            Op::Changes(a, p) => {
                let changes = d.changes(IDS[*a], p.map(|p| IDS[p])).map_err(e)?;
                json!(changes.iter().map(ToString::to_string).collect::<Vec<_>>())
            }
        })
    }

    async fn remote(c: &mut Conn, op: &Op) -> Result<Value, String> {
        let (method, body) = match op {
            Op::Create(a, p, rw) => (
                if *rw {
                    "GraphDriver.CreateReadWrite"
                } else {
                    "GraphDriver.Create"
                },
                json!({"ID": IDS[*a], "Parent": p.map_or("", |p| IDS[p])}),
            ),
            Op::Remove(a) => ("GraphDriver.Remove", json!({"ID": IDS[*a]})),
            Op::Get(a) => ("GraphDriver.Get", json!({"ID": IDS[*a]})),
            Op::Put(a) => ("GraphDriver.Put", json!({"ID": IDS[*a]})),
            Op::Exists(a) => ("GraphDriver.Exists", json!({"ID": IDS[*a]})),
            Op::Changes(a, p) => (
                "GraphDriver.Changes",
                json!({"ID": IDS[*a], "Parent": p.map_or("", |p| IDS[p])}),
            ),
        };
        let (status, v) = c.call(method, body).await;
        if status != 200 {
            return Err(v["Err"].as_str().unwrap_or_default().to_owned());
        }
        Ok(match op {
            Op::Get(_) => v["Dir"].clone(),
            Op::Exists(_) => v["Exists"].clone(),
            Op::Changes(..) => json!(
                v["Changes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| format!(
                        "{} {}",
                        ["C", "A", "D"][usize::try_from(c["Kind"].as_u64().unwrap_or(0)).unwrap_or(0)],
                        c["Path"].as_str().unwrap_or_default()
                    ))
                    .collect::<Vec<_>>()
            ),
            _ => Value::Null,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48),
            ..ProptestConfig::default()
        })]

        #[test]
        fn the_socket_answers_as_the_driver(ops in proptest::collection::vec(op(), 1..25)) {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
            rt.block_on(async {
                let server = Server::start().await;
                let mut c = Conn::open(&server.socket).await;
                init(&mut c).await;
                let twin = Overlay2::new(FakeBackend::new(), &[] as &[&str])
                    .expect("driver")
                    .with_index()
                    .expect("index");
                // Link ids are random: the same error names different ones.
                let links = |r: Result<Value, String>| r.map_err(|e| {
                    let mut out = String::new();
                    let mut rest = e.as_str();
                    while let Some(i) = rest.find("l/") {
                        out.push_str(&rest[..i + 2]);
                        rest = &rest[i + 2..];
                        let n = rest.bytes().take_while(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(b)).count();
                        out.push_str(if n == 26 { "LINK" } else { "" });
                        rest = &rest[if n == 26 { n } else { 0 }..];
                    }
                    out + rest
                });
                for op in &ops {
                    let want = links(direct(&twin, op));
                    let got = links(remote(&mut c, op).await);
                    assert_eq!(got, want, "{op:?}");
                }
                let names = |d: &Overlay2<FakeBackend>| d.layers().expect("layers");
                assert_eq!(names(&server.driver), names(&twin));
                server.stop().await;
            });
        }
    }
}
