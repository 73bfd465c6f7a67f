//! `cargo xtask bench`'s whole-command comparison: the `overlay2` command
//! beside GNU tar, du, rsync and mount(8) on real trees, the way
//! `../shared/BENCHMARKING.md` says to measure on these machines: inputs on
//! a tmpfs, every extraction into a freshly made loop-mounted ext4 with a
//! journal, ours and the baseline interleaved, median and min of several
//! runs, cleanup outside the timer. Writes the table into BENCHMARKS.md.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One dataset: a tar of real files from this machine.
struct Dataset {
    name: &'static str,
    /// (source dir, name inside the tar) pairs.
    sources: Vec<(String, &'static str)>,
}

/// Files of [`LARGE_FILE_MB`] in the "large" dataset.
const LARGE_FILES: usize = 12;
/// Size of each, MiB.
const LARGE_FILE_MB: usize = 48;

fn datasets(quick: bool, large: &Path) -> Vec<Dataset> {
    let small = Dataset {
        name: "10k",
        sources: vec![
            ("/usr/include".into(), "include"),
            ("/usr/share/zoneinfo".into(), "zoneinfo"),
        ],
    };
    if quick {
        return vec![small];
    }
    vec![
        small,
        Dataset {
            name: "usr-share",
            sources: vec![("/usr/share".into(), "share")],
        },
        Dataset {
            name: "100k",
            sources: vec![("/usr/share".into(), "a"), ("/usr/share".into(), "b")],
        },
        Dataset {
            name: "large",
            sources: vec![(large.display().to_string(), "large")],
        },
    ]
}

/// Makes the "large" dataset's tree: a few files of random bytes (data
/// that neither compresses nor dedups, as in a layer of binaries).
fn make_large(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    for i in 0..LARGE_FILES {
        sh(&format!(
            "head -c {}M /dev/urandom > {}/blob{i}",
            LARGE_FILE_MB,
            dir.display()
        ))?;
    }
    Ok(())
}

/// Mounts and scratch made for the run; all undone on drop.
struct Scratch {
    dir: PathBuf,
    mounts: Vec<PathBuf>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg("-d").arg(m).stderr(Stdio::null()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sh(cmd: &str) -> Result<String, String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{cmd}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Seconds one run of `cmd` takes (its output discarded).
fn time(cmd: &str) -> Result<f64, String> {
    let start = Instant::now();
    sh(&format!("{cmd} >/dev/null"))?;
    Ok(start.elapsed().as_secs_f64())
}

fn median_min(mut v: Vec<f64>) -> Stat {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0])
}

impl Scratch {
    /// A fresh ext4 with a journal, loop-mounted at `dir/name`.
    fn fresh_ext4(&mut self, name: &str, size: &str) -> Result<PathBuf, String> {
        let mnt = self.dir.join(name);
        if self.mounts.contains(&mnt) {
            sh(&format!("umount -d {}", mnt.display()))?;
            self.mounts.retain(|m| m != &mnt);
        }
        let img = self.dir.join(format!("{name}.img"));
        let _ = std::fs::remove_file(&img);
        sh(&format!(
            "truncate -s {size} {0} && mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 {0}",
            img.display()
        ))?;
        std::fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
        // noinit_itable: no background zeroing of inode tables competing with
        // the timed commands.
        sh(&format!(
            "mount -o loop,noinit_itable {} {}",
            img.display(),
            mnt.display()
        ))?;
        self.mounts.push(mnt.clone());
        // The run before this one left up to a gigabyte dirty in another
        // filesystem: flush it now, or its writeback takes a core from the
        // timed command (on 2 cores it took the parallel import from 0.89x
        // tar to 1.24x, while tar, one thread, hardly noticed).
        sh("sync")?;
        Ok(mnt)
    }
}

/// A row of the table: ours against a baseline.
struct Row {
    what: String,
    ours: Stat,
    base: Option<(String, Stat)>,
}

/// Runs the baseline and ours alternately (`run(false)`, `run(true)`).
/// Median and minimum seconds.
type Stat = (f64, f64);

fn interleave(runs: usize, mut run: impl FnMut(bool) -> Result<f64, String>) -> Result<(Stat, Stat), String> {
    let (mut o, mut b) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        b.push(run(false)?);
        o.push(run(true)?);
    }
    Ok((median_min(o), median_min(b)))
}

/// Runs the comparison and returns the Markdown section for BENCHMARKS.md.
pub(crate) fn run(root: &Path, quick: bool) -> Result<String, String> {
    if sh("id -u")? != "0" {
        return Err("the whole-command comparison mounts filesystems: run it as root".into());
    }
    if sh("command -v rsync").is_err() {
        sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -q rsync >/dev/null")?;
    }
    let runs = if quick { 1 } else { 5 };
    println!("==> building overlay2 and the naive-diff example (release)");
    sh(&format!(
        "cd {} && cargo build -q --release -p overlay-cli && cargo build -q --release -p naive-diff --example changes",
        root.display()
    ))?;
    let ov = root.join("target/release/overlay2");
    let naive = root.join("target/release/examples/changes");
    let shm = PathBuf::from(format!("/dev/shm/overlay2-xbench-{}", std::process::id()));
    let mut s = Scratch {
        dir: PathBuf::from(format!("/var/tmp/overlay2-xbench-{}", std::process::id())),
        mounts: Vec::new(),
    };
    std::fs::create_dir_all(&s.dir).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&shm).map_err(|e| e.to_string())?;
    let _shm = Scratch {
        dir: shm.clone(),
        mounts: Vec::new(),
    };

    let mut md = String::new();
    let machine = sh("nproc")?
        + " CPUs, "
        + sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")?.trim()
        + ", "
        + &sh("uname -r")?;
    let _ = writeln!(
        md,
        "Machine: {machine}. Date: {}. Runs: {runs} per command, interleaved; median (min).\n",
        sh("date -u +%Y-%m-%d")?
    );
    let _ = writeln!(
        md,
        "| dataset | command | ours | baseline | ratio |\n|---|---|---:|---:|---:|"
    );
    let fmt = |(m, n): Stat| format!("{m:.3} s ({n:.3})");

    let large = s.dir.join("large-src");
    if !quick {
        make_large(&large)?;
    }
    for d in datasets(quick, &large) {
        let input = shm.join(format!("{}.tar", d.name));
        // A tree archived twice would make the second copy's files hard
        // links to the first's (and GNU tar's --transform then writes links
        // to themselves): store every copy whole.
        let repeated = d
            .sources
            .iter()
            .any(|(src, _)| d.sources.iter().filter(|(s2, _)| s2 == src).count() > 1);
        let mut tar_cmd = String::from(if repeated {
            "tar --hard-dereference -cf"
        } else {
            "tar -cf"
        });
        let _ = write!(tar_cmd, " {}", input.display());
        for (src, name) in &d.sources {
            let _ = write!(
                tar_cmd,
                " --transform 's,^{},{},' -C / {}",
                src.trim_start_matches('/'),
                name,
                src.trim_start_matches('/')
            );
        }
        sh(&format!("{tar_cmd} 2>/dev/null || true"))?;
        let entries: usize = sh(&format!("tar -tf {} | wc -l", input.display()))?
            .parse()
            .unwrap_or(0);
        let bytes = std::fs::metadata(&input).map(|m| m.len()).unwrap_or(0);
        println!("==> dataset {}: {entries} entries, {} MB", d.name, bytes >> 20);
        let size = if bytes > 900 << 20 { "6G" } else { "3G" };
        let mut rows = Vec::new();

        // apply vs tar -xf, each into a fresh ext4.
        let (o, b) = interleave(runs, |ours| {
            if ours {
                let mnt = s.fresh_ext4("ours", size)?;
                sh(&format!("{} --home {}/h create base", ov.display(), mnt.display()))?;
                time(&format!(
                    "{} --home {}/h apply base {}",
                    ov.display(),
                    mnt.display(),
                    input.display()
                ))
            } else {
                let mnt = s.fresh_ext4("tar", size)?;
                time(&format!("tar -xf {} -C {}", input.display(), mnt.display()))
            }
        })?;
        rows.push(Row {
            what: "apply".into(),
            ours: o,
            base: Some(("tar -xf".into(), b)),
        });
        let home = s.dir.join("ours/h");
        let tree = s.dir.join("tar");
        let base_diff = home.join("base/diff");
        sh("sync")?;
        // diff vs tar -cf, diff-size vs du -sb: page cache warm, after the apply.
        let out = shm.join("out.tar");
        let (o, b) = interleave(runs, |ours| {
            if ours {
                time(&format!(
                    "{{ {} --home {} diff base > {}; }}",
                    ov.display(),
                    home.display(),
                    out.display()
                ))
            } else {
                time(&format!("tar -cf {} -C {} .", out.display(), tree.display()))
            }
        })?;
        rows.push(Row {
            what: "diff".into(),
            ours: o,
            base: Some(("tar -cf".into(), b)),
        });
        let (o, b) = interleave(runs, |ours| {
            if ours {
                time(&format!("{} --home {} diff-size base", ov.display(), home.display()))
            } else {
                time(&format!("du -sb {}", tree.display()))
            }
        })?;
        rows.push(Row {
            what: "diff-size".into(),
            ours: o,
            base: Some(("du -sb".into(), b)),
        });
        // changes: a layer with 1% of the files appended to, against rsync
        // and the naive diff of two full trees.
        sh(&format!(
            "{} --home {} create mod --parent base --rw",
            ov.display(),
            home.display()
        ))?;
        let merged = sh(&format!("{} --home {} mount mod", ov.display(), home.display()))?;
        let copy = s.dir.join("tar-copy");
        sh(&format!("cp -a {} {}", tree.display(), copy.display()))?;
        sh(&format!(
            "cd {m} && find . -type f | awk 'NR % 100 == 0' | while read -r f; do printf x >> \"$f\"; printf x >> \"{c}/$f\"; done",
            m = merged,
            c = copy.display()
        ))?;
        sh(&format!("{} --home {} umount mod", ov.display(), home.display()))?;
        sh("sync")?;
        // rsync's quick check (size and mtime) of the copy against the tree.
        let rsync = format!(
            "rsync -rn --itemize-changes -lptgoD --delete {}/ {}/",
            copy.display(),
            tree.display()
        );
        let (o, b) = interleave(runs, |ours| {
            if ours {
                time(&format!("{} --home {} changes mod", ov.display(), home.display()))
            } else {
                time(&rsync)
            }
        })?;
        rows.push(Row {
            what: "changes of a layer over its parent (Docker v20.10: naive, both trees mounted), 1% changed".into(),
            ours: o,
            base: Some(("rsync -rn --itemize-changes".into(), b)),
        });
        let (o, b) = interleave(runs, |ours| {
            if ours {
                time(&format!("{} {} {}", naive.display(), copy.display(), tree.display()))
            } else {
                time(&rsync)
            }
        })?;
        rows.push(Row {
            what: "changes (naive, two trees)".into(),
            ours: o,
            base: Some(("rsync -rn --itemize-changes".into(), b)),
        });
        let _ = std::fs::remove_dir_all(&copy);
        let _ = base_diff;
        for r in rows {
            match r.base {
                Some((name, b)) => {
                    let _ = writeln!(
                        md,
                        "| {} ({entries} entries, {} MB) | `overlay2 {}` vs `{name}` | {} | {} | {:.2} |",
                        d.name,
                        bytes >> 20,
                        r.what,
                        fmt(r.ours),
                        fmt(b),
                        r.ours.0 / b.0
                    );
                }
                None => {
                    let _ = writeln!(md, "| {} | `overlay2 {}` | {} | — | — |", d.name, r.what, fmt(r.ours));
                }
            }
        }
        // Import of a two-layer `docker save` image (digests checked)
        // against extracting the same two layer tars with GNU tar.
        let img = shm.join("image");
        std::fs::create_dir_all(&img).map_err(|e| e.to_string())?;
        sh(&format!("cp {} {}/layer1.tar", input.display(), img.display()))?;
        sh(&format!(
            "mkdir -p {0}/l2/etc && echo top > {0}/l2/etc/top && tar -cf {0}/layer2.tar -C {0}/l2 etc",
            img.display()
        ))?;
        let image = shm.join("image.tar");
        docker_save(
            &img,
            &["layer1.tar".into(), "layer2.tar".into()],
            "bench:latest",
            &image,
        )?;
        let _ = std::fs::remove_dir_all(&img);
        let (o, b) = import_vs_tar(&ov, &mut s, &image, size, runs, |mnt| {
            format!(
                "mkdir {m}/x && tar -xOf {i} layer1.tar | tar -x -C {m}/x && tar -xOf {i} layer2.tar | tar -x -C {m}/x",
                m = mnt.display(),
                i = image.display()
            )
        })?;
        let _ = std::fs::remove_file(&image);
        let _ = writeln!(
            md,
            "| {} | `overlay2 import` of a 2-layer `docker save` tar vs `tar -x` of its layers | {} | {} | {:.2} |",
            d.name,
            fmt(o),
            fmt(b),
            o.0 / b.0
        );
        // The apply and diff rows above used this home: make it again.
        let mnt = s.fresh_ext4("ours", size)?;
        sh(&format!(
            "{} --home {}/h create base && {} --home {}/h apply base {}",
            ov.display(),
            mnt.display(),
            ov.display(),
            mnt.display(),
            input.display()
        ))?;

        // Changes of a 10-file diff over the whole base (Docker v20.10's
        // naive diff: both trees walked; #18 asks for this at native speed).
        sh(&format!(
            "{} --home {} create ten --parent base --rw",
            ov.display(),
            home.display()
        ))?;
        let merged = sh(&format!("{} --home {} mount ten", ov.display(), home.display()))?;
        sh(&format!(
            "cd {merged} && find . -type f | head -10 | while read -r f; do printf x >> \"$f\"; done"
        ))?;
        sh(&format!("{} --home {} umount ten", ov.display(), home.display()))?;
        let mut t = Vec::new();
        for _ in 0..runs.max(3) {
            t.push(time(&format!(
                "{} --home {} changes ten",
                ov.display(),
                home.display()
            ))?);
        }
        let ten = median_min(t);
        let _ = writeln!(
            md,
            "| {} | `overlay2 changes` of a 10-file layer over the base (whole command; naive since v20.10) | {} | — | target < 10 ms |",
            d.name,
            fmt(ten)
        );
    }

    let _ = std::fs::remove_dir_all(&large);
    if !quick {
        md.push_str(&five_layers(&ov, &mut s, &shm, runs)?);
    }

    // Mount + umount by depth, against mount(8) of the same stack.
    let depths: &[usize] = if quick { &[1, 16] } else { &[1, 16, 128, 500] };
    let mnt = s.fresh_ext4("layers", "2G")?;
    let home = mnt.join("h");
    let mut parent: Option<String> = None;
    let mut made = 0;
    for &depth in depths {
        while made < depth {
            let id = format!("l{made}");
            match &parent {
                Some(p) => sh(&format!(
                    "{} --home {} create {id} --parent {p}",
                    ov.display(),
                    home.display()
                ))?,
                None => sh(&format!("{} --home {} create {id}", ov.display(), home.display()))?,
            };
            parent = Some(id);
            made += 1;
        }
        let top = format!("top{depth}");
        sh(&format!(
            "{} --home {} create {top} --parent l{} --rw",
            ov.display(),
            home.display(),
            depth - 1
        ))?;
        let lowers = sh(&format!("cat {}/{top}/lower", home.display()))?;
        let opts = format!("lowerdir={lowers},upperdir={top}/diff,workdir={top}/work");
        let ours = || -> Result<f64, String> {
            let start = Instant::now();
            sh(&format!(
                "{} --home {} mount {top} && {} --home {} umount {top}",
                ov.display(),
                home.display(),
                ov.display(),
                home.display()
            ))?;
            Ok(start.elapsed().as_secs_f64())
        };
        let bare = || -> Result<f64, String> {
            if opts.len() > 4000 {
                return Ok(f64::NAN);
            }
            let merged = home.join(&top).join("merged");
            std::fs::create_dir_all(&merged).map_err(|e| e.to_string())?;
            let start = Instant::now();
            sh(&format!(
                "cd {} && mount -t overlay overlay -o {opts} {top}/merged && umount {top}/merged",
                home.display()
            ))?;
            Ok(start.elapsed().as_secs_f64())
        };
        // Milliseconds each: many samples, or the median is noise.
        let (o, b) = interleave(runs.max(3) * 6, |o| if o { ours() } else { bare() })?;
        let ms = |(m, n): Stat| format!("{:.2} ms ({:.2})", m * 1e3, n * 1e3);
        let base = if b.0.is_nan() {
            "— (over one page)".to_string()
        } else {
            ms(b)
        };
        let ratio = if b.0.is_nan() {
            "—".to_string()
        } else {
            format!("{:.2}", o.0 / b.0)
        };
        let _ = writeln!(
            md,
            "| {depth} layers | `overlay2 mount` + `umount` vs `mount -t overlay` + `umount` (processes) | {} | {base} | {ratio} |",
            ms(o)
        );
    }

    // Create and remove of many layers, whole commands.
    let n = if quick { 50 } else { 1000 };
    let start = Instant::now();
    for i in 0..n {
        sh(&format!("{} --home {} create c{i}", ov.display(), home.display()))?;
    }
    let create = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for i in 0..n {
        sh(&format!("{} --home {} rm c{i}", ov.display(), home.display()))?;
    }
    let remove = start.elapsed().as_secs_f64();
    let _ = writeln!(
        md,
        "| {n} layers | `overlay2 create` each, then `overlay2 rm` each (one process per command) | {create:.3} s, {remove:.3} s | — | — |"
    );
    sh(&format!("{} --home {} cleanup", ov.display(), home.display()))?;
    md.push_str(&through_the_plugin(&ov, &home.join("plugin"), n)?);
    Ok(md)
}

/// Create, then remove, `n` layers through `overlay2 serve docker`: one
/// curl process sends every call over one kept-alive connection, as
/// dockerd's client does, so the server's own cost is what is timed.
fn through_the_plugin(ov: &Path, home: &Path, n: usize) -> Result<String, String> {
    let dir = home.with_extension("sock.d");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let socket = dir.join("p.sock");
    let mut server = std::process::Command::new(ov)
        .arg("--home")
        .arg(home)
        .args(["serve", "docker", "--socket"])
        .arg(&socket)
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("overlay2 serve docker: {e}"))?;
    let result = (|| {
        for _ in 0..200 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let calls = |method: &str, bodies: &mut dyn Iterator<Item = String>| -> Result<f64, String> {
            let cfg = dir.join(format!("{method}.curl"));
            let entries: Vec<String> = bodies
                .map(|body| {
                    format!(
                        "unix-socket = \"{}\"\nurl = \"http://plugin/GraphDriver.{method}\"\ndata = \"{}\"\nsilent\nfail\noutput = \"/dev/null\"\n",
                        socket.display(),
                        body.replace('"', "\\\"")
                    )
                })
                .collect();
            // `next` between requests, not after the last (curl wants a URL after it).
            let text = entries.join("next\n");
            std::fs::write(&cfg, text).map_err(|e| e.to_string())?;
            time(&format!("curl -K {}", cfg.display()))
        };
        calls(
            "Init",
            &mut std::iter::once(format!("{{\"Home\":\"{}\"}}", home.display())),
        )?;
        let create = calls("Create", &mut (0..n).map(|i| format!("{{\"ID\":\"c{i}\"}}")))?;
        let remove = calls("Remove", &mut (0..n).map(|i| format!("{{\"ID\":\"c{i}\"}}")))?;
        Ok(format!(
            "| {n} layers | through `overlay2 serve docker` (one connection): Create each, then Remove each | {create:.3} s, {remove:.3} s | — | remove/create {:.2} |\n",
            remove / create
        ))
    })();
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// `overlay2 import` of a five-layer `docker save` image (layers of about
/// equal size, /usr/share's top directories dealt out by size) against
/// GNU tar extracting its five layer tars one after another, each into
/// its own directory as the layers' diff dirs are. Both into a fresh
/// ext4; the row the parallel import is judged by.
fn five_layers(ov: &Path, s: &mut Scratch, shm: &Path, runs: usize) -> Result<String, String> {
    let img = shm.join("five");
    std::fs::create_dir_all(&img).map_err(|e| e.to_string())?;
    // Largest first into the lightest bin.
    let listing = sh("du -sk /usr/share/* 2>/dev/null | sort -rn")?;
    let mut bins: Vec<(u64, Vec<String>)> = vec![(0, Vec::new()); 5];
    for line in listing.lines() {
        let Some((kb, path)) = line.split_once('\t') else {
            continue;
        };
        let kb: u64 = kb.trim().parse().unwrap_or(0);
        let lightest = bins.iter_mut().min_by_key(|b| b.0).expect("five bins");
        lightest.0 += kb;
        lightest.1.push(path.trim_start_matches('/').to_owned());
    }
    let mut layers = Vec::new();
    for (i, (_, paths)) in bins.iter().enumerate() {
        let name = format!("layer{i}.tar");
        sh(&format!(
            "tar -cf {}/{name} -C / {} 2>/dev/null || true",
            img.display(),
            paths.join(" ")
        ))?;
        layers.push(name);
    }
    let image = shm.join("five.tar");
    docker_save(&img, &layers, "five:latest", &image)?;
    let mb = std::fs::metadata(&image).map(|m| m.len() >> 20).unwrap_or(0);
    let entries = sh(&format!(
        "for l in {}/layer*.tar; do tar -tf $l; done | wc -l",
        img.display()
    ))?;
    println!("==> five-layer image: {entries} entries, {mb} MB");
    let mut extract = String::new();
    for (i, l) in layers.iter().enumerate() {
        let _ = write!(
            extract,
            "mkdir {{m}}/{i} && tar -xf {}/{l} -C {{m}}/{i} && ",
            img.display()
        );
    }
    extract.push_str("true");
    let (o, b) = import_vs_tar(ov, s, &image, "6G", runs, |mnt| {
        extract.replace("{m}", &mnt.display().to_string())
    })?;
    let _ = std::fs::remove_file(&image);
    let _ = std::fs::remove_dir_all(&img);
    Ok(format!(
        "| five layers ({entries} entries, {mb} MB) | `overlay2 import` of a 5-layer `docker save` tar vs `tar -xf` of its 5 layers one after another | {:.3} s ({:.3}) | {:.3} s ({:.3}) | {:.2} |\n",
        o.0,
        o.1,
        b.0,
        b.1,
        o.0 / b.0
    ))
}

/// `overlay2 import IMAGE` against `tar_cmd(MNT)` (GNU tar extracting
/// the same layers), each into a fresh ext4 of `size`, interleaved.
fn import_vs_tar(
    ov: &Path,
    s: &mut Scratch,
    image: &Path,
    size: &str,
    runs: usize,
    tar_cmd: impl Fn(&Path) -> String,
) -> Result<(Stat, Stat), String> {
    interleave(runs, |ours| {
        if ours {
            let mnt = s.fresh_ext4("ours", size)?;
            time(&format!(
                "{} --home {}/h import {}",
                ov.display(),
                mnt.display(),
                image.display()
            ))
        } else {
            let mnt = s.fresh_ext4("tar", size)?;
            time(&tar_cmd(&mnt))
        }
    })
}

/// Writes `out`, a `docker save` tar of the layer tars in `dir` (names
/// relative to it, bottom first), tagged `tag`: their digests as the
/// config's diff ids, and a manifest.
fn docker_save(dir: &Path, layers: &[String], tag: &str, out: &Path) -> Result<(), String> {
    let mut diff_ids = Vec::new();
    for l in layers {
        diff_ids.push(format!(
            "\"sha256:{}\"",
            sh(&format!("sha256sum {}/{l} | cut -d' ' -f1", dir.display()))?
        ));
    }
    std::fs::write(
        dir.join("config.json"),
        format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
            diff_ids.join(",")
        ),
    )
    .map_err(|e| e.to_string())?;
    let quoted: Vec<String> = layers.iter().map(|l| format!("\"{l}\"")).collect();
    std::fs::write(
        dir.join("manifest.json"),
        format!(
            r#"[{{"Config":"config.json","RepoTags":["{tag}"],"Layers":[{}]}}]"#,
            quoted.join(",")
        ),
    )
    .map_err(|e| e.to_string())?;
    sh(&format!(
        "tar -cf {} -C {} manifest.json config.json {}",
        out.display(),
        dir.display(),
        layers.join(" ")
    ))?;
    Ok(())
}
