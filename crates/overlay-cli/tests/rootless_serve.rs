//! Both servers rootless: `overlay2 serve containerd` and `overlay2 serve
//! docker` started in a user namespace by an unprivileged user (with
//! `--map-root-user`, and with a sub-id range), spoken to as containerd
//! and dockerd speak. containerd's mounts are made in a user namespace
//! like the server's, as rootless containerd makes them; the plugin's in
//! the server's own mount namespace, looked into with `nsenter`. Needs
//! root (to become the user); otherwise each test says why and skips.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
mod home;
#[path = "../../overlay-snapshotter/tests/common/mod.rs"]
mod snapshots;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::server::{Server, post, post_bytes};
use home::rootless::Map;
use home::{Home, Run};
use overlay_snapshotter::proto::containerd::types::Mount;
use overlay_snapshotter::proto::snapshots::PrepareSnapshotRequest;
use snapshots::commit_req as commit;

/// `overlay2 --home HOME ARGS --socket SOCKET` as the rootless user, in a
/// user and mount namespace of its own: the server's home is `home`'s
/// directory's `server` (a fresh one), its socket beside it.
fn start(home: &Home, args: &[&str]) -> (Server, PathBuf) {
    let (map, user) = home.rootless.as_ref().unwrap();
    let socket = home.dir().join("s.sock");
    let mut c = map.command(user, &home.bin());
    c.arg("--home")
        .arg(home.dir().join("server"))
        .args(args)
        .arg("--socket")
        .arg(&socket)
        .env_remove("OVERLAY2_HOME");
    (Server::spawn(c, &socket), socket)
}

/// Runs `script` with `mounts` mounted at `$T`, in a user namespace like
/// the server's (where rootless containerd mounts them); unmounted after.
fn with_mounts(home: &Home, mounts: &[Mount], script: &str) -> Run {
    let mut mount = String::from("set -e; mkdir -p \"$T\"; ");
    for m in mounts {
        let kind = if m.r#type == "bind" { "none" } else { m.r#type.as_str() };
        mount += &format!("mount -t {kind} -o '{}' '{}' \"$T\"; ", m.options.join(","), m.source);
    }
    home.rootless_script(&format!(
        "export T='{}'; {mount}{script}; umount -R \"$T\"",
        home.dir().join("target").display()
    ))
}

fn prepare(key: &str, parent: &str) -> PrepareSnapshotRequest {
    snapshots::prepare_req(key, parent, HashMap::new())
}

/// The xattrs of overlayfs's markers anywhere under `dir`.
fn marker_xattrs(dir: &Path) -> Vec<String> {
    let tree = overlay_fs::HostFs::new(dir).unwrap();
    overlay_fs::observe_extraction(&tree, &overlay_fs::Observe::default())
        .unwrap()
        .into_iter()
        .filter(|(_, v)| v.contains("overlay.opaque"))
        .map(|(k, v)| format!("{}: {v}", k.display()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_prepare_mount_commit_rootless() {
    for map in Map::ALL {
        let Some(home) = Home::rootless("containerd_prepare_mount_commit_rootless", map) else {
            continue;
        };
        let (server, socket) = start(&home, &["serve", "containerd"]);
        let mut c = snapshots::client(&socket).await;
        // Unpack a base layer into the bind mount of its diff.
        let m = c
            .prepare(prepare("default/1/x", ""))
            .await
            .expect("prepare")
            .into_inner();
        with_mounts(
            &home,
            &m.mounts,
            "mkdir -p $T/etc $T/opq; echo base > $T/etc/hosts; echo old > $T/opq/old",
        )
        .ok();
        c.commit(commit("default/2/base", "default/1/x")).await.expect("commit");
        // A layer on it through overlay: a deletion and an opaque dir.
        let m = c
            .prepare(prepare("default/3/x", "default/2/base"))
            .await
            .expect("prepare")
            .into_inner();
        assert_eq!(m.mounts[0].r#type, "overlay", "{map:?}: {m:?}");
        assert!(m.mounts[0].options.iter().any(|o| o == "userxattr"), "{map:?}: {m:?}");
        with_mounts(
            &home,
            &m.mounts,
            "rm $T/etc/hosts; rm -r $T/opq; mkdir $T/opq; echo new > $T/opq/new",
        )
        .ok();
        c.commit(commit("default/4/top", "default/3/x")).await.expect("commit");
        // A container on top sees both.
        let m = c
            .prepare(prepare("ctr", "default/4/top"))
            .await
            .expect("prepare")
            .into_inner();
        let run = with_mounts(&home, &m.mounts, "ls $T/opq; test -e $T/etc/hosts || echo gone").ok();
        assert_eq!(run.stdout, "new\ngone\n", "{map:?}");
        let marked = marker_xattrs(&home.dir().join("server"));
        assert!(
            !marked.is_empty() && marked.iter().all(|m| m.contains("user.overlay.opaque")),
            "{map:?}: {marked:?}"
        );
        drop(c);
        let (status, log) = server.stop();
        assert!(status.success(), "{map:?}: {status}\n{log}");
    }
}

/// A layer tar: regular files `(path, data)`, parents implied.
fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn docker_create_get_apply_diff_rootless() {
    for map in Map::ALL {
        let Some(home) = Home::rootless("docker_create_get_apply_diff_rootless", map) else {
            continue;
        };
        let (server, socket) = start(&home, &["serve", "docker"]);
        let ok = |path: &str, body: &str| {
            let (code, answer) = post(&socket, path, body);
            assert_eq!(code, 200, "{map:?} {path}: {answer}");
            serde_json::from_str::<serde_json::Value>(&answer).unwrap()
        };
        let apply = |query: &str, tar: &[u8]| {
            let (code, answer) = post_bytes(&socket, &format!("/GraphDriver.ApplyDiff?{query}"), tar);
            assert_eq!(code, 200, "{map:?} {query}: {}", String::from_utf8_lossy(&answer));
        };
        ok("/Plugin.Activate", "");
        let init = serde_json::json!({"Home": home.dir().join("init"), "Opts": null, "UIDMaps": null, "GIDMaps": null});
        ok("/GraphDriver.Init", &init.to_string());
        let status = ok("/GraphDriver.Status", "{}");
        assert!(
            status["Status"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == &serde_json::json!(["userxattr", "true"])),
            "{map:?}: {status}"
        );
        ok("/GraphDriver.Create", r#"{"ID":"l1"}"#);
        apply(
            "id=l1&parent=",
            &layer_tar(&[("etc/hosts", b"base"), ("opq/old", b"old")]),
        );
        ok("/GraphDriver.Create", r#"{"ID":"l2","Parent":"l1"}"#);
        apply(
            "id=l2&parent=l1",
            &layer_tar(&[("etc/.wh.hosts", b""), ("opq/.wh..wh..opq", b""), ("opq/new", b"new")]),
        );
        ok("/GraphDriver.CreateReadWrite", r#"{"ID":"c","Parent":"l2"}"#);
        let dir = ok("/GraphDriver.Get", r#"{"ID":"c"}"#)["Dir"]
            .as_str()
            .unwrap()
            .to_owned();
        // The mount lives in the server's mount namespace.
        let look = Command::new("nsenter")
            .arg(format!("--target={}", server.pid()))
            .args(["--mount", "--", "sh", "-c"])
            .arg(format!("ls '{dir}/opq'; test -e '{dir}/etc/hosts' || echo gone"))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&look.stdout),
            "new\ngone\n",
            "{map:?}: {}",
            String::from_utf8_lossy(&look.stderr)
        );
        ok("/GraphDriver.Put", r#"{"ID":"c"}"#);
        let (code, diff) = post_bytes(&socket, "/GraphDriver.Diff", br#"{"ID":"l2","Parent":"l1"}"#);
        assert_eq!(code, 200, "{map:?}: {}", String::from_utf8_lossy(&diff));
        let mut names: Vec<String> = tar::Archive::new(&diff[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["etc", "etc/.wh.hosts", "opq", "opq/.wh..wh..opq", "opq/new"],
            "{map:?}"
        );
        let (status, log) = server.stop();
        assert!(status.success(), "{map:?}: {status}\n{log}");
    }
}
