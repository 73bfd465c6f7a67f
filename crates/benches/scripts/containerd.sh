#!/usr/bin/env bash
# Whole-command comparison of our containerd snapshotter (`overlay2 serve
# containerd`, a proxy plugin) with containerd's built-in `overlayfs`
# snapshotter, in the SAME containerd, the way ../shared/BENCHMARKING.md says
# to measure on these machines:
#   - one containerd (CRI off) in a private mount namespace with a tmpfs on
#     /run; its root, state and opt dirs and our home on one freshly made,
#     loop-mounted ext4 with a journal; images, sockets, config, logs on a
#     tmpfs;
#   - `ctr images import --snapshotter X IMG` (content ingest + unpack),
#     image removed and garbage collected synchronously outside the timer;
#   - `ctr run --rm --snapshotter X IMG ID true` on images unpacked on both,
#     a synchronous GC (removing the container's snapshot) outside the timer;
#   - both snapshotters interleaved (which goes first alternates), one
#     untimed warm-up round, `sync` before every timed command; median and
#     min of RUNS, wall clock in ms.
# Images: "small" = `overlay2 sample-image --busybox --extra-layers 10` (13
# layers); "big" = the same plus 2 layers of real files (/usr/share/perl +
# /usr/share/i18n, /usr/share/zoneinfo + /usr/lib/python3: ~6.5k entries).
#
# Needs root, containerd, ctr, runc, /bin/busybox (static). Usage:
#   containerd.sh [RUNS]            (default 5; the table on stdout)
# Environment:
#   OVERLAY2=PATH      the overlay2 binary (default target/release/overlay2,
#                      built with `cargo build --release -p overlay-cli` if
#                      missing; copied to the tmpfs before use)
#   BENCH_LOGS=DIR     keep containerd's debug log and our server's log
#                      (RUST_LOG, default debug) in DIR; logging costs time,
#                      so such a run's table is for reading, not quoting
#   BENCH_STRACE=DIR   strace our server for the whole run (options
#                      BENCH_STRACE_OPTS, default `-f -c`) into
#                      DIR/overlay2-rs.strace; slows ours, likewise
# Leaves nothing behind (trap): containerd and our server stopped by pid,
# shims of this containerd killed by pid, everything unmounted, the loop
# device detached, the cgroup dirs of its containerd namespace removed.
set -euo pipefail

if [[ ${CONTAINERD_BENCH_INSIDE:-} != 1 ]]; then
    if [[ $(id -u) != 0 ]]; then
        echo "containerd.sh: needs root (mounts, containerd, cgroups)" >&2
        exit 2
    fi
    for t in containerd ctr runc unshare mkfs.ext4 python3; do
        command -v "$t" >/dev/null || { echo "containerd.sh: $t not found" >&2; exit 2; }
    done
    [[ -x /bin/busybox ]] || { echo "containerd.sh: /bin/busybox (static) not found" >&2; exit 2; }
    export CONTAINERD_BENCH_INSIDE=1
    # Everything below runs in a mount namespace of its own: no mount made
    # here is seen outside, and all of them go when the script ends.
    exec unshare -m --propagation private -- "$BASH" "$0" "$@"
fi

runs=${1:-5}
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "usage: containerd.sh [RUNS]" >&2; exit 2; }
here=$(cd "$(dirname "$0")/../../.." && pwd)
bin_src=${OVERLAY2:-$here/target/release/overlay2}
# shellcheck source=lib.sh
source "$here/crates/benches/scripts/lib.sh"
if [[ ! -x $bin_src ]]; then
    cargo build --release -q --manifest-path "$here/Cargo.toml" -p overlay-cli
fi

ns=o2rs-bench-$$                      # containerd namespace = cgroup dir name
work=$(mktemp -d /tmp/containerd-bench.XXXXXX)
img=$(mktemp /var/tmp/containerd-bench.XXXXXX.img)
fs=$work/fs
addr=$work/containerd.sock
ssock=$work/overlay2-rs.sock
ctrd_pid='' srv_pid='' strace_pid='' run_mounted=''

exec 3>&1 4>&2                         # the script's own stdout, stderr
cleanup() {
    local rc=$? p d l
    set +e
    # A signal's trap runs inside the redirections of the command it
    # interrupted (`2>>$work/errors.log`): back to our own, or the tmpfs
    # stays busy.
    exec 1>&3 2>&4
    stop_pid "$ctrd_pid"
    for p in $(pids_naming "$addr"); do kill -KILL "$p" 2>/dev/null; done
    stop_pid "$srv_pid"
    [[ -n $strace_pid ]] && wait "$strace_pid" 2>/dev/null
    if [[ -n ${BENCH_LOGS:-} ]]; then
        mkdir -p "$BENCH_LOGS" && cp "$work"/*.log "$BENCH_LOGS"/ 2>/dev/null
    fi
    umount -R "$work" 2>/dev/null || umount -R -l "$work"
    [[ -n $run_mounted ]] && umount -R /run 2>/dev/null
    for l in $(losetup --list -n -O NAME -j "$img" 2>/dev/null); do losetup -d "$l"; done
    rm -rf "$work" "$img"
    # ctr run leaves /sys/fs/cgroup/<controller>/<namespace> (v1) and
    # /sys/fs/cgroup[/unified]/<namespace> (v2): ours alone, by name.
    for d in /sys/fs/cgroup/"$ns" /sys/fs/cgroup/*/"$ns"; do
        [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- filesystems ---------------------------------------------------------
mount -t tmpfs -o size=3G containerd-bench "$work"
mount -t tmpfs -o mode=755 containerd-bench-run /run && run_mounted=1
truncate -s 4G "$img"
mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1,nodiscard "$img"
mkdir "$fs"
# noinit_itable: no background inode-table zeroing during the timings.
mount -o loop,noinit_itable "$img" "$fs"
mkdir -p "$fs"/containerd/{root,state,opt} "$fs/overlay2-rs" "$work/images"
bin=$work/overlay2
cp "$bin_src" "$bin"

# --- images (on the tmpfs) -----------------------------------------------
"$bin" --home "$work/unused-home" sample-image -o "$work/images/small.tar" \
    --busybox /bin/busybox --extra-layers 10 --tag o2rs-bench/small:latest >/dev/null
big_image "$work/images/small.tar" "$work/images/big.tar" o2rs-bench/big:latest
small_desc=$(describe "$work/images/small.tar")
big_desc=$(describe "$work/images/big.tar")

# --- our server and containerd -------------------------------------------
cat >"$work/config.toml" <<EOF
version = 2
root = "$fs/containerd/root"
state = "$fs/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$addr"

[plugins."io.containerd.internal.v1.opt"]
  path = "$fs/containerd/opt"

[proxy_plugins.overlay2-rs]
  type = "snapshot"
  address = "$ssock"
EOF
if [[ -n ${BENCH_LOGS:-} ]]; then
    export RUST_LOG=${RUST_LOG:-debug}
    ctrd_level=debug
else
    export RUST_LOG=${RUST_LOG:-warn}
    ctrd_level=warn
fi
"$bin" --home "$fs/overlay2-rs" serve containerd --socket "$ssock" 2>"$work/overlay2-rs.log" &
srv_pid=$!
for ((n = 0; n < 100; n++)); do [[ -S $ssock ]] && break; sleep 0.1; done
[[ -S $ssock ]] || { echo "our server did not start:" >&2; cat "$work/overlay2-rs.log" >&2; exit 1; }
if [[ -n ${BENCH_STRACE:-} ]]; then
    mkdir -p "$BENCH_STRACE"
    # shellcheck disable=SC2086 # options, split on purpose
    strace ${BENCH_STRACE_OPTS:--f -c} -o "$BENCH_STRACE/overlay2-rs.strace" -p "$srv_pid" 2>/dev/null &
    strace_pid=$!
    sleep 0.5
fi
containerd --config "$work/config.toml" --log-level "$ctrd_level" >"$work/containerd.log" 2>&1 &
ctrd_pid=$!
c() { ctr --address "$addr" -n "$ns" "$@"; }
for ((n = 0; n < 200; n++)); do c version >/dev/null 2>&1 && break; sleep 0.1; done
c version >/dev/null 2>&1 || { echo "containerd did not start:" >&2; tail -20 "$work/containerd.log" >&2; exit 1; }
plugins=$(c plugins ls)
grep -q 'overlay2-rs .*ok' <<<"$plugins" || { echo "proxy plugin overlay2-rs not ok:" >&2; echo "$plugins" >&2; exit 1; }

# --- timing helpers --------------------------------------------------------
fail() { echo "containerd.sh: $*" >&2; tail -5 "$work/errors.log" >&2 2>/dev/null; exit 1; }
gc_sync() { # a synchronous GC: removes what was deleted from the snapshotters
    local id=gc-$RANDOM$RANDOM
    c leases create --id "$id" >/dev/null
    c leases delete --sync "$id" >/dev/null
}
scratch=()
import_once() { # SNAPSHOTTER IMAGE ARRAY: time an import, then remove it all
    timed "$3" c images import --snapshotter "$1" "$work/images/$2.tar"
    c images rm --sync $(c images ls -q) >/dev/null
    gc_sync
    [[ -z $(c snapshots --snapshotter "$1" ls | tail -n +2) ]] || fail "snapshots of $1 left after GC"
}
run_once() { # SNAPSHOTTER IMAGE N ARRAY
    timed "$4" c run --rm --snapshotter "$1" "docker.io/o2rs-bench/$2-$1:latest" "b-$2-$1-$3" true
    gc_sync
}

declare -a imp_small_ovl imp_small_rs imp_big_ovl imp_big_rs run_small_ovl run_small_rs run_big_ovl run_big_rs
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# Warm-up (untimed): both snapshotters, both images.
for s in overlayfs overlay2-rs; do
    import_once "$s" small scratch
    import_once "$s" big scratch
done
for ((i = 0; i < runs; i++)); do
    for im in small big; do
        if ((i % 2 == 0)); then
            import_once overlayfs "$im" "imp_${im}_ovl"
            import_once overlay2-rs "$im" "imp_${im}_rs"
        else
            import_once overlay2-rs "$im" "imp_${im}_rs"
            import_once overlayfs "$im" "imp_${im}_ovl"
        fi
    done
done

# Both images unpacked on both snapshotters, under names of their own.
for im in small big; do
    for s in overlayfs overlay2-rs; do
        c images import --snapshotter "$s" "$work/images/$im.tar" >/dev/null
        c images tag "docker.io/o2rs-bench/$im:latest" "docker.io/o2rs-bench/$im-$s:latest" >/dev/null
        c images rm "docker.io/o2rs-bench/$im:latest" >/dev/null
    done
done
for s in overlayfs overlay2-rs; do run_once "$s" small warm scratch; done
for ((i = 0; i < runs; i++)); do
    for im in small big; do
        if ((i % 2 == 0)); then
            run_once overlayfs "$im" "$i" "run_${im}_ovl"
            run_once overlay2-rs "$im" "$i" "run_${im}_rs"
        else
            run_once overlay2-rs "$im" "$i" "run_${im}_rs"
            run_once overlayfs "$im" "$i" "run_${im}_ovl"
        fi
    done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report -------------------------------------------------------------------
row() { # LABEL OVL-ARRAY RS-ARRAY
    local -n o=$2 r=$3
    local om on rm rn
    read -r om on < <(printf '%s\n' "${o[@]}" | stats)
    read -r rm rn < <(printf '%s\n' "${r[@]}" | stats)
    printf '| %s | %s (%s) | %s (%s) | %.2f× |\n' "$1" "$om" "$on" "$rm" "$rn" "$(awk -v a="$rm" -v b="$om" 'BEGIN {print a / b}')"
    echo "samples $1: overlayfs ${o[*]} | overlay2-rs ${r[*]} (µs)" >&2
}
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
mem=$(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo)
echo "| operation (wall ms, $runs runs, interleaved) | built-in overlayfs median (min) | overlay2-rs median (min) | ratio of medians |"
echo "|---|---:|---:|---:|"
row "ctr images import small (unpack included)" imp_small_ovl imp_small_rs
row "ctr images import big (unpack included)" imp_big_ovl imp_big_rs
row "ctr run --rm small true" run_small_ovl run_small_rs
row "ctr run --rm big true" run_big_ovl run_big_rs
echo
echo "$(nproc) × $cpu, $mem; $(date -u '+%Y-%m-%d %H:%M UTC'); kernel $(uname -r);" \
    "containerd $(containerd --version | awk '{print $3}'), $(runc --version | head -1);" \
    "small: $small_desc; big: $big_desc; images on tmpfs, stores on a fresh loop ext4 (journal);" \
    "load $load_before before, $load_after after"
