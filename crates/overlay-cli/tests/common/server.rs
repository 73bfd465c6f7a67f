//! An `overlay2 serve ...` process for a test (`serve.rs`, `rootless.rs`),
//! and the HTTP calls dockerd makes to a graphdriver plugin.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A server process, stopped (SIGKILL) if the test ends without stopping it.
pub struct Server(Option<Child>);

impl Server {
    /// Spawns `cmd` (a server given `--socket socket`) with its stderr
    /// kept, and waits until it accepts on `socket`: accepting, not just
    /// present (a stale socket file may be there).
    pub fn spawn(mut cmd: Command, socket: &Path) -> Self {
        let child = cmd.stderr(Stdio::piped()).spawn().unwrap();
        let mut server = Self(Some(child));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            if let Some(status) = server.0.as_mut().unwrap().try_wait().unwrap() {
                let (_, log) = server.stop_with(None);
                panic!(
                    "the server exited ({status}) before accepting on {}: {log}",
                    socket.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no server on {} after 10 s",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    /// SIGTERM; the exit status and what it logged.
    pub fn stop(self) -> (ExitStatus, String) {
        self.stop_with(Some(rustix::process::Signal::TERM))
    }

    fn stop_with(mut self, signal: Option<rustix::process::Signal>) -> (ExitStatus, String) {
        let child = self.0.take().unwrap();
        if let Some(signal) = signal {
            let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
            rustix::process::kill_process(pid, signal).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One HTTP/1.1 POST on the plugin's socket, as dockerd sends it (no
/// Content-Type); the status code and body.
pub fn post(socket: &Path, path: &str, body: &str) -> (u16, String) {
    let (code, body) = post_bytes(socket, path, body.as_bytes());
    (code, String::from_utf8_lossy(&body).into_owned())
}

/// [`post`] with any bytes both ways (a tar to `ApplyDiff`, from `Diff`).
pub fn post_bytes(socket: &Path, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: plugin\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(answer.len());
    let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let rest = answer.get(split + 4..).unwrap_or_default();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    (code, body)
}

/// The body of a chunked response: `SIZE\r\nDATA\r\n` until size 0.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let line = String::from_utf8_lossy(&rest[..eol]);
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
        rest = &rest[eol + 2 + size + 2..];
    }
    out
}
