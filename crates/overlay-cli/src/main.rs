//! `overlay2`: a Docker-compatible overlay2 layer store from the shell.
//!
//! ```text
//! overlay2 [--home DIR] [--json] COMMAND
//! ```
//!
//! Layers live in a home directory laid out as Docker's
//! `/var/lib/docker/overlay2` (the `overlay-driver` crate does the work);
//! this binary adds images (`import` of `docker save` tars, OCI layouts and
//! OCI archives, every digest verified), JSON output for scripts, progress
//! on a terminal, and errors that name the layer or file at fault. Exit
//! status: 0 success, 1 error, 2 bad usage. See the crate's README.
#![forbid(unsafe_code)]

mod adopt;
mod commands;
mod demo;
mod error;
mod image;
mod import;
mod progress;
mod serve;
mod snapshots;
mod stream;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "overlay2",
    version,
    about = "A Docker-compatible overlay2 layer store: import images, mount, diff, check",
    after_help = "Exit status: 0 on success, 1 on error, 2 on bad usage. Most commands need root, \
                  or run rootless in a user namespace (`unshare --user --map-root-user --mount`)."
)]
pub struct Cli {
    /// The layer store's home directory.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "OVERLAY2_HOME",
        default_value = "/var/lib/overlay2-rs"
    )]
    pub home: PathBuf,

    /// Print one JSON document on stdout (errors too) instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Rootless (in a user namespace): a file of an imported or applied
    /// layer whose uid or gid the namespace does not map belongs to root
    /// instead of failing the command (containers/storage's
    /// `ignore_chown_errors`; the driver option
    /// `overlay2.ignore_chown_errors=true`). Without it such a layer is
    /// refused, naming the file and the id, and nothing changes.
    #[arg(long, global = true)]
    pub ignore_chown_errors: bool,

    /// Whether `--home` (or `OVERLAY2_HOME`) was given rather than defaulted.
    #[arg(skip)]
    pub home_given: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an empty layer (read-only image layer, or --rw for a container layer).
    Create {
        /// The new layer's id.
        id: String,
        /// The layer to stack it on.
        #[arg(long, value_name = "P")]
        parent: Option<String>,
        /// A read-write (container) layer.
        #[arg(long)]
        rw: bool,
        /// Quota of a read-write layer (`10G`, `512m`; XFS with pquota only).
        #[arg(long, value_name = "SIZE", requires = "rw", value_parser = parse_size)]
        size: Option<String>,
        /// SELinux mount label.
        #[arg(long, value_name = "L")]
        label: Option<String>,
        /// A uid range of the layer's own id map, `CONTAINER:HOST:SIZE`
        /// (Docker's and OCI's form; repeat for more ranges): the layers
        /// below are shown shifted by it (id-mapped, not copied) and the
        /// layer's own files belong to the container's root on the host.
        #[arg(long = "uidmap", value_name = "C:H:S", value_parser = parse_id_range)]
        uidmap: Vec<overlay_archive::IdRange>,
        /// A gid range of the layer's id map (as --uidmap; without it the
        /// gid map is the uid map, as Podman does).
        #[arg(long = "gidmap", value_name = "C:H:S", value_parser = parse_id_range, requires = "uidmap")]
        gidmap: Vec<overlay_archive::IdRange>,
    },
    /// Remove a layer (refused while other layers stack on it).
    Rm {
        /// The layer.
        id: String,
    },
    /// Exit 0 if the layer exists, 1 if not.
    Exists {
        /// The layer.
        id: String,
    },
    /// Mount a layer with everything below it and print the mounted path.
    ///
    /// The mount stays after the command exits; `umount` (from any process)
    /// takes it down. A layer without parent is not mounted: its own
    /// directory is printed.
    Mount {
        /// The layer.
        id: String,
        /// SELinux mount label.
        #[arg(long, value_name = "L")]
        label: Option<String>,
    },
    /// Unmount a layer mounted by `mount`.
    Umount {
        /// The layer.
        id: String,
    },
    /// List layers: id, parent, size of its own files, mounted.
    Ls,
    /// Show a layer's LowerDir, UpperDir, WorkDir and MergedDir.
    Metadata {
        /// The layer.
        id: String,
    },
    /// Show the driver's status (backing filesystem, d_type, native diff).
    Status,
    /// Apply a layer tar (plain, gzip or zstd) from FILE or stdin; print the bytes applied.
    Apply {
        /// The layer (created empty beforehand).
        id: String,
        /// The layer the tar is a diff against (default: the layer's parent; "" for none).
        #[arg(long, value_name = "P")]
        parent: Option<String>,
        /// The tar (default: stdin).
        file: Option<PathBuf>,
    },
    /// Write a layer's changes as a tar to FILE or stdout.
    Diff {
        /// The layer.
        id: String,
        /// Diff against this layer (default: the layer's parent; "" for the whole tree).
        #[arg(long, value_name = "P")]
        parent: Option<String>,
        /// Write the tar here (replaced whole, only on success) instead of stdout.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// List a layer's changes, one per line: `A /path`, `C /path`, `D /path`.
    Changes {
        /// The layer.
        id: String,
        /// Compare with this layer (default: the layer's parent; "" for none).
        #[arg(long, value_name = "P")]
        parent: Option<String>,
    },
    /// Print the bytes of a layer's changed files.
    DiffSize {
        /// The layer.
        id: String,
        /// Compare with this layer (default: the layer's parent; "" for none).
        #[arg(long, value_name = "P")]
        parent: Option<String>,
    },
    /// Import an image (OCI layout directory, OCI archive, or `docker save` tar) and print its top layer id.
    ///
    /// Every blob is checked against its digest and every uncompressed layer
    /// against its diff id while it streams in; layers are named by chain id
    /// (as Docker's layer store computes it) and skipped when present. If
    /// anything fails, the layers this import created are removed again.
    Import {
        /// The image: a directory or a tar (which may be gzip or zstd compressed).
        image: PathBuf,
    },
    /// Look for what a crash or an interrupted import left behind; --repair fixes it.
    Check {
        /// Fix what is found.
        #[arg(long)]
        repair: bool,
    },
    /// Unmount every layer of this home that is mounted; --quarantine also deletes the layers `check --repair` quarantined.
    Cleanup {
        /// Delete the quarantined layers (HOME/quarantine/), after looking at them.
        #[arg(long)]
        quarantine: bool,
    },
    /// Build a small sample image from files on this machine, import it, mount it, show it, unmount.
    Demo,
    /// Write the demo's sample image (docker save form) to a file, for container engines and benchmarks.
    SampleImage {
        /// Where to write it.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
        /// Put this static busybox in the image (`/bin/sh` and friends), so it runs in a container.
        #[arg(long, value_name = "PATH")]
        busybox: Option<PathBuf>,
        /// Add this many layers on top (one small file each).
        #[arg(long, value_name = "N", default_value_t = 0)]
        extra_layers: usize,
        /// The image's tag.
        #[arg(long, value_name = "NAME", default_value = "overlay2-demo:latest")]
        tag: String,
    },
    /// Hand a Docker data root from Docker's built-in overlay2 to the overlay2-rs plugin (or back).
    ///
    /// Nothing is copied or pulled again: the layer and image directories are
    /// renamed in place and each container's `Driver` rewritten. Stop dockerd
    /// first: it refuses while dockerd runs on the data root or a layer is
    /// mounted. Running it again finishes an interrupted run.
    DockerAdopt {
        /// dockerd's `--data-root` (e.g. /var/lib/docker).
        #[arg(long, value_name = "DIR")]
        data_root: PathBuf,
        /// The plugin's driver name.
        #[arg(long, value_name = "NAME", default_value = "overlay2-rs")]
        name: String,
        /// Hand it back to the built-in overlay2.
        #[arg(long)]
        back: bool,
    },
    /// Serve a container engine on a unix socket (0600) until SIGTERM.
    #[command(subcommand)]
    Serve(Serve),
}

/// The engines `serve` speaks to.
#[derive(Debug, Subcommand)]
pub enum Serve {
    /// containerd's snapshot service (a `[proxy_plugins]` snapshotter).
    ///
    /// Every snapshot is a layer of the home (Docker's overlay2 layout),
    /// with keys, kinds, labels and times in `snapshots.redb` inside it.
    /// The home belongs to containerd: give it a directory of its own.
    Containerd {
        /// The socket containerd's `address` names.
        #[arg(long, value_name = "PATH", default_value = "/run/overlay2-rs/containerd.sock")]
        socket: PathBuf,
        /// How snapshots with containerd's remap labels
        /// (`containerd.io/snapshot/uidmapping`, `…/gidmapping`: `ctr run
        /// --uidmap … --gidmap … --remap-labels`) are mounted. `bind`: this
        /// server mounts the id-mapped overlay itself and containerd binds it
        /// (containerd 1.6 and 1.7, which know no `uidmap=` option; works with
        /// 2.x too). `options`: containerd 2's form, overlay mounts with
        /// `uidmap=`/`gidmap=` options that containerd 2 turns into id-mapped
        /// lowerdirs (bind where that form cannot show the layer). With
        /// containerd 2, add `capabilities = ["remap-ids"]` to the
        /// `[proxy_plugins.NAME]` section so its client leaves the mapping
        /// to this server instead of chowning a copy of the image first
        /// (containerd 1.7 always chowns: a chowned copy is recognised and
        /// not mapped twice).
        #[arg(long, value_name = "FORM", default_value = "bind", value_parser = ["bind", "options"])]
        idmap_mounts: String,
    },
    /// A Docker graphdriver plugin (dockerd up to 27, `--experimental --storage-driver NAME`).
    ///
    /// Layers live where dockerd's `GraphDriver.Init` says (`<data-root>/NAME`),
    /// unless `--home` is given: then there, whatever Init says.
    Docker {
        /// The driver name dockerd is started with (`--storage-driver NAME`).
        #[arg(long, value_name = "NAME", default_value = "overlay2-rs")]
        name: String,
        /// The socket (default: /run/docker/plugins/NAME.sock, where dockerd looks).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
}

/// One `CONTAINER:HOST:SIZE` range; the driver checks the map as a whole.
fn parse_id_range(s: &str) -> Result<overlay_archive::IdRange, String> {
    s.parse::<overlay_archive::IdRange>()
        .map_err(|e| format!("{e} (expected CONTAINER:HOST:SIZE, e.g. 0:100000:65536)"))
}

/// Accepts the quota sizes the driver accepts.
fn parse_size(s: &str) -> Result<String, String> {
    overlay_driver::CreateOpts::with_size(s)
        .size()
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// What a command prints on success.
#[derive(Debug)]
pub struct Output {
    /// The JSON document (`--json`).
    pub json: serde_json::Value,
    /// The text for a person (may be empty).
    pub text: String,
    /// Exit status (0, or 1 for `exists` of a missing layer and a `check`
    /// that found problems).
    pub code: u8,
}

impl Output {
    /// Success printing `text`, or `json` with `--json`.
    pub fn new(json: serde_json::Value, text: impl Into<String>) -> Self {
        Self {
            json,
            text: text.into(),
            code: 0,
        }
    }
}

fn print_stdout(s: &str) {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is the reader's choice, not an error.
    let _ = out.write_all(s.as_bytes()).and_then(|()| out.flush());
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let json_asked = args.iter().any(|a| a == "--json");
    let parsed = Cli::command().try_get_matches_from(&args).and_then(|m| {
        let mut cli = Cli::from_arg_matches(&m)?;
        cli.home_given = m.value_source("home") != Some(clap::parser::ValueSource::DefaultValue);
        Ok(cli)
    });
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let code = e.exit_code();
            let _ = e.print();
            if code != 0 && json_asked {
                let rendered = e.render().to_string();
                let first = rendered.lines().next().unwrap_or_default();
                let message = first.strip_prefix("error: ").unwrap_or(first);
                let doc = serde_json::json!({ "error": message, "exit_code": code });
                print_stdout(&format!("{doc}\n"));
            }
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
    };
    match commands::run(&cli) {
        Ok(out) => {
            if cli.json {
                print_stdout(&format!("{}\n", out.json));
            } else if !out.text.is_empty() {
                let text = if out.text.ends_with('\n') {
                    out.text
                } else {
                    format!("{}\n", out.text)
                };
                print_stdout(&text);
            }
            ExitCode::from(out.code)
        }
        Err(e) => {
            eprintln!("overlay2: {e}");
            if cli.json {
                let doc = serde_json::json!({ "error": e.message, "exit_code": e.code });
                print_stdout(&format!("{doc}\n"));
            }
            ExitCode::from(e.code)
        }
    }
}
