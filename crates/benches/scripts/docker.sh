#!/usr/bin/env bash
# Whole-command comparison of our Docker graphdriver plugin (`overlay2 serve
# docker`, dockerd `--experimental --storage-driver NAME`) with dockerd's
# built-in `overlay2` driver, the way ../shared/BENCHMARKING.md says to
# measure on these machines:
#   - two dockerd 20.10 at once, "bi" on `--storage-driver overlay2` and
#     "rs" on our plugin (started before it), with the same flags otherwise
#     (both `--experimental`, `--bridge none`, no iptables), each with a
#     containerd of its own (CRI off), its own data root, exec root, API
#     socket and cgroup parent; all in a private mount namespace with
#     tmpfs on /run (dockerd's plugin directory, shim sockets) and on
#     /etc/docker (key.json);
#   - both data roots and both containerd roots on one freshly made,
#     loop-mounted ext4 with a journal; image, sockets, configs, logs, exec
#     roots on a tmpfs;
#   - timed, wall clock, `sync` before each: `docker load -i IMG` (image
#     removed outside the timer), `docker run --rm --network none IMG true`,
#     and on a stopped container that wrote 1,000 files (made outside the
#     timer) `docker commit` and then `docker diff` (container and committed
#     image removed outside the timer);
#   - the two dockerds interleaved (which goes first alternates), one
#     untimed warm-up round per operation; median and min of RUNS, in ms.
# The image: `overlay2 sample-image --busybox --extra-layers 10` (13 small
# layers) plus 2 layers of real files (/usr/share/perl + /usr/share/i18n,
# /usr/share/zoneinfo + /usr/lib/python3), as containerd.sh's "big".
#
# Needs root, /usr/sbin/dockerd (20.10), /usr/bin/docker, containerd, runc,
# containerd-shim-runc-v2, /bin/busybox (static). Usage:
#   docker.sh [RUNS]                (default 5; the table on stdout)
# Environment:
#   OVERLAY2=PATH      the overlay2 binary (default target/release/overlay2,
#                      built with `cargo build --release -p overlay-cli` if
#                      missing; copied to the tmpfs before use)
#   BENCH_LOGS=DIR     keep both dockerds' debug logs, both containerds'
#                      logs and our plugin's log (RUST_LOG, default debug)
#                      in DIR; logging costs time, so such a run's table is
#                      for reading, not quoting
#   BENCH_STRACE=DIR   strace our plugin for the whole run (options
#                      BENCH_STRACE_OPTS, default `-f -c`) into
#                      DIR/overlay2-rs.strace; slows ours, likewise
# Leaves nothing behind (trap): dockerds, containerds and the plugin
# stopped by pid, shims of these containerds killed by pid, everything
# unmounted, the loop device detached, both cgroup parents removed; then
# checked (loop devices, mounts, processes, cgroup dirs).
set -euo pipefail

DOCKERD=/usr/sbin/dockerd
DOCKER=/usr/bin/docker # not /usr/local/bin/docker, a newer client

if [[ ${DOCKER_BENCH_INSIDE:-} != 1 ]]; then
    if [[ $(id -u) != 0 ]]; then
        echo "docker.sh: needs root (mounts, dockerd, cgroups)" >&2
        exit 2
    fi
    for t in "$DOCKERD" "$DOCKER" containerd containerd-shim-runc-v2 runc unshare mkfs.ext4 python3; do
        command -v "$t" >/dev/null || { echo "docker.sh: $t not found" >&2; exit 2; }
    done
    [[ -x /bin/busybox ]] || { echo "docker.sh: /bin/busybox (static) not found" >&2; exit 2; }
    export DOCKER_BENCH_INSIDE=1
    # Everything below runs in a mount namespace of its own: no mount made
    # here is seen outside, and all of them go when the script ends.
    exec unshare -m --propagation private -- "$BASH" "$0" "$@"
fi

runs=${1:-5}
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "usage: docker.sh [RUNS]" >&2; exit 2; }
here=$(cd "$(dirname "$0")/../../.." && pwd)
bin_src=${OVERLAY2:-$here/target/release/overlay2}
# shellcheck source=lib.sh
source "$here/crates/benches/scripts/lib.sh"
if [[ ! -x $bin_src ]]; then
    cargo build --release -q --manifest-path "$here/Cargo.toml" -p overlay-cli
fi

name=o2rs-bench-$$                    # our driver's name; cgroup parents $name-bi, $name-rs
sides=(bi rs)                         # bi: built-in overlay2, rs: our plugin
work=$(mktemp -d /tmp/docker-bench.XXXXXX)
img=$(mktemp /var/tmp/docker-bench.XXXXXX.img)
fs=$work/fs
image=o2rs-bench/img:latest
declare -A dockerd_pid=() ctrd_pid=()
srv_pid='' strace_pid='' run_mounted='' etc_mounted=''

cgroup_dirs() { # the cgroup parents' dirs that exist (v1 controllers, unified)
    local s d
    for s in "${sides[@]}"; do
        for d in /sys/fs/cgroup/"$name-$s" /sys/fs/cgroup/*/"$name-$s"; do
            [[ -d $d ]] && echo "$d"
        done
    done
    return 0
}
exec 3>&1 4>&2                         # the script's own stdout, stderr
cleanup() {
    local rc=$? p d l s left
    set +e
    # A signal's trap runs inside the redirections of the command it
    # interrupted (`2>>$work/errors.log`): back to our own, or the tmpfs
    # stays busy.
    exec 1>&3 2>&4
    # dockerd first (it calls our plugin's Cleanup on the way out), with
    # its containerd still up; then the shims, containerds, the plugin.
    for s in "${sides[@]}"; do stop_pid "${dockerd_pid[$s]:-}" 20; done
    for p in $(pids_naming "$work/"); do
        [[ " ${ctrd_pid[*]} $srv_pid $strace_pid " == *" $p "* ]] || kill -KILL "$p" 2>/dev/null
    done
    for s in "${sides[@]}"; do stop_pid "${ctrd_pid[$s]:-}"; done
    stop_pid "$srv_pid"
    [[ -n $strace_pid ]] && wait "$strace_pid" 2>/dev/null
    if [[ -n ${BENCH_LOGS:-} ]]; then
        mkdir -p "$BENCH_LOGS" && cp "$work"/*.log "$BENCH_LOGS"/ 2>/dev/null
    fi
    umount -R "$work" 2>/dev/null || umount -R -l "$work"
    [[ -n $etc_mounted ]] && umount /etc/docker 2>/dev/null
    [[ -n $run_mounted ]] && umount -R /run 2>/dev/null
    for l in $(losetup --list -n -O NAME -j "$img" 2>/dev/null); do losetup -d "$l"; done
    # dockerd's --cgroup-parent dirs (and any container's left in them).
    for d in $(cgroup_dirs); do find "$d" -depth -type d -exec rmdir {} + 2>/dev/null; done
    # Check that nothing is left.
    left=''
    [[ -n $(losetup --list -n -j "$img" 2>/dev/null) ]] && left+=" loop device of $img;"
    grep -qF " $work" /proc/self/mountinfo && left+=" mounts under $work;"
    [[ -n $(pids_naming "$work/") ]] && left+=" processes: $(pids_naming "$work/" | tr '\n' ' ');"
    [[ -n $(cgroup_dirs) ]] && left+=" cgroup dirs: $(cgroup_dirs | tr '\n' ' ');"
    rm -rf "$work" "$img"
    if [[ -n $left ]]; then
        echo "docker.sh: left behind:$left" >&2
        ((rc)) || rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- filesystems ---------------------------------------------------------
mount -t tmpfs -o size=3G docker-bench "$work"
mount -t tmpfs -o mode=755 docker-bench-run /run && run_mounted=1
mount -t tmpfs -o mode=755 docker-bench-etc /etc/docker && etc_mounted=1
truncate -s 6G "$img"
mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1,nodiscard "$img"
mkdir "$fs"
# noinit_itable: no background inode-table zeroing during the timings.
mount -o loop,noinit_itable "$img" "$fs"
for s in "${sides[@]}"; do
    mkdir -p "$fs/$s"/{data,ctd/root,ctd/state,ctd/opt} "$work/$s/exec"
done
mkdir -p "$work/images" "$work/client"
bin=$work/overlay2
cp "$bin_src" "$bin"

# --- the image (on the tmpfs) --------------------------------------------
"$bin" --home "$work/unused-home" sample-image -o "$work/images/small.tar" \
    --busybox /bin/busybox --extra-layers 10 --tag "$image" >/dev/null
rm -rf "$work/unused-home"
big_image "$work/images/small.tar" "$work/images/img.tar" "$image"
rm "$work/images/small.tar"
img_desc=$(describe "$work/images/img.tar")

# --- our plugin, two containerds, two dockerds -----------------------------
if [[ -n ${BENCH_LOGS:-} ]]; then
    export RUST_LOG=${RUST_LOG:-debug}
    level=debug
else
    export RUST_LOG=${RUST_LOG:-warn}
    level=warn
fi
psock=/run/docker/plugins/$name.sock   # where dockerd looks for NAME
"$bin" serve docker --name "$name" </dev/null 2>"$work/overlay2-rs.log" >&2 &
srv_pid=$!
for ((n = 0; n < 100; n++)); do [[ -S $psock ]] && break; sleep 0.1; done
[[ -S $psock ]] || { echo "our plugin did not start:" >&2; cat "$work/overlay2-rs.log" >&2; exit 1; }
if [[ -n ${BENCH_STRACE:-} ]]; then
    mkdir -p "$BENCH_STRACE"
    # shellcheck disable=SC2086 # options, split on purpose
    strace ${BENCH_STRACE_OPTS:--f -c} -o "$BENCH_STRACE/overlay2-rs.strace" -p "$srv_pid" 2>/dev/null &
    strace_pid=$!
    sleep 0.5
fi

export DOCKER_CONFIG=$work/client
unset DOCKER_HOST DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH
d() { # SIDE ARGS...: the docker client against SIDE's dockerd
    local s=$1
    shift
    "$DOCKER" -H "unix://$work/$s/docker.sock" "$@"
}
for s in "${sides[@]}"; do
    cat >"$work/$s/containerd.toml" <<EOF
version = 2
root = "$fs/$s/ctd/root"
state = "$fs/$s/ctd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$work/$s/c.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "$fs/$s/ctd/opt"
EOF
    containerd --config "$work/$s/containerd.toml" --log-level "$level" </dev/null >"$work/containerd-$s.log" 2>&1 &
    ctrd_pid[$s]=$!
done
for s in "${sides[@]}"; do
    for ((n = 0; n < 300; n++)); do [[ -S $work/$s/c.sock ]] && break; sleep 0.1; done
    [[ -S $work/$s/c.sock ]] || { echo "containerd $s did not start:" >&2; tail -20 "$work/containerd-$s.log" >&2; exit 1; }
done
# One after the other: both write /etc/docker/key.json on first start.
for s in "${sides[@]}"; do
    if [[ $s == bi ]]; then driver=overlay2; else driver=$name; fi
    "$DOCKERD" --experimental --storage-driver "$driver" \
        --data-root "$fs/$s/data" --exec-root "$work/$s/exec" --pidfile "$work/$s/docker.pid" \
        -H "unix://$work/$s/docker.sock" --containerd "$work/$s/c.sock" \
        --bridge none --iptables=false --ip-masq=false --ip-forward=false \
        --cgroup-parent "/$name-$s" --log-level "$level" </dev/null >"$work/dockerd-$s.log" 2>&1 &
    dockerd_pid[$s]=$!
    for ((n = 0; n < 600; n++)); do
        d "$s" version >/dev/null 2>&1 && break
        kill -0 "${dockerd_pid[$s]}" 2>/dev/null || break
        sleep 0.1
    done
    d "$s" version >/dev/null 2>&1 || { echo "dockerd $s did not start:" >&2; tail -20 "$work/dockerd-$s.log" >&2; exit 1; }
    got=$(d "$s" info --format '{{.Driver}}')
    [[ $got == "$driver" ]] || { echo "dockerd $s runs on $got, not $driver" >&2; exit 1; }
done

# --- timing helpers --------------------------------------------------------
fail() { echo "docker.sh: $*" >&2; tail -5 "$work/errors.log" >&2 2>/dev/null; exit 1; }
quiet() { "$@" >/dev/null 2>>"$work/errors.log" || fail "failed: $*"; }
no_images() { # SIDE: fails unless SIDE has no image left
    [[ -z $(d "$1" images -aq) ]] || fail "images left on $1: $(d "$1" images -a)"
}
scratch=()
load_once() { # SIDE ARRAY: time a load, then remove the image
    timed "$2" d "$1" load -i "$work/images/img.tar"
    quiet d "$1" rmi "$image"
    no_images "$1"
}
run_once() { # SIDE ARRAY
    timed "$2" d "$1" run --rm --network none "$image" true
}
writer='mkdir /d; i=0; while [ $i -lt 1000 ]; do echo $i > /d/f$i; i=$((i+1)); done'
commit_once() { # SIDE N COMMIT-ARRAY DIFF-ARRAY: commit and diff a writer container
    local s=$1 c=writer-$1-$2
    quiet d "$s" run --name "$c" --network none "$image" sh -c "$writer"
    timed "$3" d "$s" commit "$c" o2rs-bench/committed:latest
    timed "$4" d "$s" diff "$c"
    d "$s" diff "$c" 2>>"$work/errors.log" | sort >"$work/diff-$s.txt" || fail "docker diff $c on $s"
    quiet d "$s" rm "$c"
    quiet d "$s" rmi o2rs-bench/committed:latest
}
in_order() { # I FUNCTION ARGS...: FUNCTION SIDE ARGS... for both sides, bi first on even I
    local i=$1 f=$2
    shift 2
    if ((i % 2 == 0)); then "$f" bi "$@"; "$f" rs "$@"; else "$f" rs "$@"; "$f" bi "$@"; fi
}

declare -a load_bi load_rs run_bi run_rs commit_bi commit_rs diff_bi diff_rs
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# docker load; a warm-up round first (untimed).
for s in "${sides[@]}"; do load_once "$s" scratch; done
for ((i = 0; i < runs; i++)); do
    load_one() { load_once "$1" "load_$1"; }
    in_order "$i" load_one
done

# The image on both for the rest.
for s in "${sides[@]}"; do quiet d "$s" load -i "$work/images/img.tar"; done

# docker run --rm IMG true
for s in "${sides[@]}"; do run_once "$s" scratch; done
for ((i = 0; i < runs; i++)); do
    run_one() { run_once "$1" "run_$1"; }
    in_order "$i" run_one
done

# docker commit and docker diff of a container that wrote 1,000 files.
for s in "${sides[@]}"; do commit_once "$s" warm scratch scratch; done
cmp -s "$work/diff-bi.txt" "$work/diff-rs.txt" ||
    fail "docker diff differs between the built-in and the plugin: $(diff "$work/diff-bi.txt" "$work/diff-rs.txt" | head -5)"
diff_lines=$(wc -l <"$work/diff-rs.txt")
for ((i = 0; i < runs; i++)); do
    commit_one() { commit_once "$1" "$i" "commit_$1" "diff_$1"; }
    in_order "$i" commit_one
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report -------------------------------------------------------------------
row() { # LABEL BI-ARRAY RS-ARRAY
    local -n o=$2 r=$3
    local om on rm rn
    read -r om on < <(printf '%s\n' "${o[@]}" | stats)
    read -r rm rn < <(printf '%s\n' "${r[@]}" | stats)
    printf '| %s | %s (%s) | %s (%s) | %.2f× |\n' "$1" "$om" "$on" "$rm" "$rn" "$(awk -v a="$rm" -v b="$om" 'BEGIN {print a / b}')"
    echo "samples $1: built-in ${o[*]} | overlay2-rs ${r[*]} (µs)" >&2
}
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
mem=$(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo)
echo "| operation (wall ms, $runs runs, interleaved) | built-in overlay2 median (min) | overlay2-rs plugin median (min) | ratio of medians |"
echo "|---|---:|---:|---:|"
row "docker load -i IMG" load_bi load_rs
row "docker run --rm IMG true" run_bi run_rs
row "docker commit (1,000 new files)" commit_bi commit_rs
row "docker diff ($diff_lines changes)" diff_bi diff_rs
echo
echo "$(nproc) × $cpu, $mem; $(date -u '+%Y-%m-%d %H:%M UTC'); kernel $(uname -r);" \
    "dockerd $(d bi version --format '{{.Server.Version}}'), containerd $(containerd --version | awk '{print $3}'), $(runc --version | head -1);" \
    "image: $img_desc (docker-save tar on tmpfs); data roots on a fresh loop ext4 (journal);" \
    "load $load_before before, $load_after after"
