//! Long-running servers for container engines: one tokio runtime, one way
//! to listen on a unix socket, one way to shut down (SIGTERM or SIGINT:
//! stop accepting, finish the calls under way, remove the socket).

use std::os::unix::fs::FileTypeExt as _;
use std::path::Path;
use std::sync::Arc;

use std::path::PathBuf;

use overlay_docker_plugin::Plugin;
use overlay_docker_plugin::protocol::InitRequest;
use overlay_driver::{GraphDriver, KernelBackend, Overlay2};
use overlay_snapshotter::{IdMapMounts, Service, Snapshotter};
use serde_json::json;
use tracing::info;

use crate::Output;
use crate::error::{Failure, Result, fail};

/// Logs to stderr, at `info` unless `RUST_LOG` says otherwise.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Binds `path` as a unix socket only its owner may use (0600), made so
/// from the start (no moment when others could connect). A socket left by
/// a server that is gone is replaced; one a live server answers on is not.
fn listen(path: &Path) -> Result<std::os::unix::net::UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                fail!("{}: another server is listening on this socket", path.display());
            }
            std::fs::remove_file(path).map_err(|e| Failure::new(format!("{}: {e}", path.display())))?;
        }
        Ok(_) => fail!("{}: exists and is not a socket", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => fail!("{}: {e}", path.display()),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Failure::new(format!("{}: {e}", dir.display())))?;
    }
    // The umask is the process's: nothing else of ours creates files
    // while the server starts (the runtime's threads are idle).
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = bound.map_err(|e| Failure::new(format!("cannot listen on {}: {e}", path.display())))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Failure::new(format!("{}: {e}", path.display())))?;
    Ok(listener)
}

/// SIGTERM and SIGINT, caught from the moment this is made: before the
/// socket exists, so a client that sees the socket can stop the server
/// cleanly.
struct Shutdown {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Shutdown {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let err = |e: std::io::Error| Failure::new(format!("cannot catch SIGTERM and SIGINT: {e}"));
        Ok(Self {
            term: signal(SignalKind::terminate()).map_err(err)?,
            int: signal(SignalKind::interrupt()).map_err(err)?,
        })
    }

    /// Completes on the first of them.
    async fn wait(mut self) {
        let name = tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        };
        info!(signal = name, "shutting down");
    }
}

/// Runs `serve` on a fresh multi-threaded runtime with the socket
/// `path` and the shutdown signal, then removes the socket.
fn run_server<F, Fut>(path: &Path, serve: F) -> Result<()>
where
    F: FnOnce(tokio::net::UnixListener, Shutdown) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("overlay2-serve")
        .build()
        .map_err(|e| Failure::new(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        let shutdown = Shutdown::install()?;
        let listener = tokio::net::UnixListener::from_std(listen(path)?)
            .map_err(|e| Failure::new(format!("{}: {e}", path.display())))?;
        let served = serve(listener, shutdown).await;
        let _ = std::fs::remove_file(path);
        served
    })
}

/// `overlay2 serve containerd`: containerd's snapshot service on `socket`.
pub fn containerd(home: &Path, socket: &Path, idmap_mounts: &str) -> Result<Output> {
    init_logging();
    let form: IdMapMounts = idmap_mounts
        .parse()
        .map_err(|e| Failure::new(format!("--idmap-mounts {e}")))?;
    let snapshotter = Snapshotter::open(home)
        .map_err(|e| Failure::new(format!("home {}: {e}", home.display())))?
        .with_id_map_mounts(form);
    let removed = snapshotter
        .cleanup()
        .map_err(|e| Failure::new(format!("home {}: {e}", home.display())))?;
    if !removed.is_empty() {
        info!(layers = removed.len(), "removed layers an interrupted operation left");
    }
    let service = Service::new(Arc::new(snapshotter));
    run_server(socket, |listener, shutdown| async move {
        info!(home = %home.display(), socket = %socket.display(), "serving containerd snapshots");
        service
            .serve(listener, shutdown.wait())
            .await
            .map_err(|e| Failure::new(format!("server on {}: {e}", socket.display())))
    })?;
    info!("stopped");
    Ok(Output::new(json!({ "stopped": true }), ""))
}

/// The layer store of a Docker plugin: the kernel backend at `home`,
/// Docker's option strings, the daemon's id maps.
fn docker_driver(home: &Path, init: &InitRequest) -> std::result::Result<Arc<dyn GraphDriver>, String> {
    // Bad maps are refused before the home is made: nothing changes.
    let maps = init.id_maps()?;
    Overlay2::<KernelBackend>::check_id_maps(&maps).map_err(|e| e.to_string())?;
    let backend = KernelBackend::new(home).map_err(|e| format!("home {}: {e}", home.display()))?;
    let opts = init.opts.clone().unwrap_or_default();
    let driver = Overlay2::new(backend, &opts)
        .map_err(|e| format!("home {}: {e}", home.display()))?
        .with_id_maps(maps)
        .map_err(|e| format!("home {}: {e}", home.display()))?
        // dockerd's questions about parents and children, and the refusal
        // to remove a layer others stack on, without reading the home.
        .with_index()
        .map_err(|e| format!("home {}: {e}", home.display()))?;
    Ok(Arc::new(driver))
}

/// `overlay2 serve docker`: the graphdriver plugin protocol on `socket`
/// (default `/run/docker/plugins/NAME.sock`). Layers live in `home` if
/// given, else where Init says.
pub fn docker(home: Option<&Path>, name: &str, socket: Option<&Path>) -> Result<Output> {
    init_logging();
    if name.is_empty() || name.contains('/') {
        fail!("invalid plugin name {name:?}: it names the socket, so it cannot be empty or hold '/'");
    }
    let socket = socket.map_or_else(
        || Path::new("/run/docker/plugins").join(format!("{name}.sock")),
        Path::to_path_buf,
    );
    let fixed = home.map(Path::to_path_buf);
    let plugin = Plugin::new(move |init: &InitRequest| {
        let home = match &fixed {
            Some(h) => {
                if Path::new(&init.home) != h {
                    info!(init = init.home, home = %h.display(), "layers live in --home, not in dockerd's Init home");
                }
                h.clone()
            }
            None if init.home.is_empty() => return Err("GraphDriver.Init without a Home".to_owned()),
            None => PathBuf::from(&init.home),
        };
        docker_driver(&home, init)
    });
    // Beside the socket, where dockerd looks for sockets only: a plugin
    // restarted under a running dockerd picks up the Init it was given.
    let plugin = Arc::new(
        plugin
            .with_state_file(socket.with_extension("sock.init"))
            .map_err(|e| Failure::new(format!("restoring the last Init: {e}")))?,
    );
    let shown = socket.display().to_string();
    run_server(&socket, |listener, shutdown| async move {
        info!(name, socket = shown, "serving dockerd's graphdriver plugin protocol");
        overlay_docker_plugin::serve(plugin, listener, shutdown.wait())
            .await
            .map_err(|e| Failure::new(format!("server on {shown}: {e}")))
    })?;
    info!("stopped");
    Ok(Output::new(json!({ "stopped": true }), ""))
}
