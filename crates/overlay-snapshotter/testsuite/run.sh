#!/usr/bin/env bash
# Runs containerd 1.6's snapshotter conformance suite (snapshots/testsuite)
# against a proxy snapshotter server, offline, as root, on Debian 12.
#
#   run.sh [--baseline] [--build-dir DIR] [--build-only] [TEST FLAGS...]
#
#   --baseline     serve containerd's own overlayfs snapshotter (baseline/main.go)
#                  instead of $OVERLAY2_BIN; also BASELINE=1
#   --build-dir    where the GOPATH, Go build cache, binaries and logs go
#                  (default: $SUITE_BUILD_DIR or <repo>/target/go-testsuite)
#   --build-only   build the test and baseline binaries, run nothing
#   TEST FLAGS     passed to the test binary; `-run X` is accepted for `-test.run X`
#                  (e.g. -run 'TestSnapshotterSuite/^(Basic|Walk)$', -count 1)
#
# Environment: OVERLAY2_BIN (default <repo>/target/debug/overlay2), TMPDIR
# (where the suite makes its temporary roots: must not be overlayfs itself),
# SUITE_CALL_TIMEOUT (per-call gRPC deadline, default 2m), GO (go binary,
# default /usr/bin/go from Debian's golang-go).
#
# Builds in GOPATH mode against Debian's golang-github-containerd-containerd-dev
# (containerd 1.6.20 sources and dependencies in /usr/share/gocode): no module
# proxy or network beyond apt is needed. Exits non-zero if a test fails or if
# mounts or server processes are left behind.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo_root=$(cd "$script_dir/../../.." && pwd -P)

baseline=${BASELINE:-0}
build_dir=${SUITE_BUILD_DIR:-$repo_root/target/go-testsuite}
build_only=0
test_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --baseline) baseline=1 ;;
        --build-dir) build_dir=$2; shift ;;
        --build-dir=*) build_dir=${1#*=} ;;
        --build-only) build_only=1 ;;
        -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; test_args+=("$@"); break ;;
        -test.*) test_args+=("$1") ;;
        -*) test_args+=("-test.${1#-}") ;;   # -run X -> -test.run X
        *) test_args+=("$1") ;;
    esac
    shift
done

log() { printf 'run.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

[ "$(id -u)" -eq 0 ] || die "must run as root (the suite mounts overlayfs; apt-get installs packages)"

# --- packages -------------------------------------------------------------
packages=(golang-go golang-github-containerd-containerd-dev containerd runc)
missing=()
for p in "${packages[@]}"; do
    if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_install() { apt-get install -y --no-install-recommends "${missing[@]}"; }
    if ! compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null; then
        apt-get update
        apt_install
    elif ! apt_install; then
        apt-get update   # package lists may be stale
        apt_install
    fi
fi

GO=${GO:-/usr/bin/go}
[ -x "$GO" ] || GO=$(command -v go) || die "no go binary"
gocode=/usr/share/gocode
[ -d "$gocode/src/github.com/containerd/containerd/snapshots/testsuite" ] ||
    die "$gocode has no containerd sources (golang-github-containerd-containerd-dev)"

# --- build ----------------------------------------------------------------
mkdir -p "$build_dir"
build_dir=$(cd "$build_dir" && pwd -P)
gopath=$build_dir/gopath
bin_dir=$build_dir/bin
mkdir -p "$gopath/src/overlay2-rs" "$bin_dir"
# Our package lives in the repo; GOPATH sees it through a symlink.
ln -sfn "$script_dir" "$gopath/src/overlay2-rs/testsuite"

export GO111MODULE=off GOPATH="$gopath:$gocode" GOCACHE="$build_dir/gocache"
export GOFLAGS= GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0
log "building with $("$GO" version) in $build_dir"
t0=$(date +%s)
"$GO" test -c -o "$bin_dir/snapshotter-suite.test" overlay2-rs/testsuite
"$GO" build -o "$bin_dir/baseline" overlay2-rs/testsuite/baseline
log "built in $(( $(date +%s) - t0 ))s: $bin_dir/snapshotter-suite.test $bin_dir/baseline"
[ "$build_only" -eq 1 ] && exit 0

# --- run ------------------------------------------------------------------
if [ "$baseline" = 1 ]; then
    server=$bin_dir/baseline
else
    server=${OVERLAY2_BIN:-$repo_root/target/debug/overlay2}
    [ -x "$server" ] || die "server binary $server not found: build it (cargo build) or set OVERLAY2_BIN"
fi
server=$(readlink -f "$server")

suite_mounts() { grep -c 'snapshot-suite-' /proc/self/mountinfo || true; }
server_pids() {
    local p exe
    for p in /proc/[0-9]*; do
        exe=$(readlink "$p/exe" 2>/dev/null) || continue
        [ "$exe" = "$server" ] && printf '%s ' "${p#/proc/}"
    done
    return 0
}
mounts_before=$(suite_mounts)
pids_before=$(server_pids)

log_dir=$build_dir/logs
rm -rf "$log_dir"
mkdir -p "$log_dir"
out=$build_dir/last-run.log
log "server: $server"
log "tests:  $bin_dir/snapshotter-suite.test -test.v ${test_args[*]:-}"
log "server logs: $log_dir/, test output: $out"

# SnapshotterSuite sets umask 0 but restores it when it returns, which is
# before its parallel tests run: tests and servers run with this umask.
umask 022
start_ns=$(date +%s%N)
set +e
OVERLAY2_BIN=$server SUITE_LOG_DIR=$log_dir \
    "$bin_dir/snapshotter-suite.test" -test.v -test.timeout=20m "${test_args[@]}" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
set -e
wall=$(awk -v a="$start_ns" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')

count() { grep -cE "^ *--- $1: TestSnapshotterSuite/" "$out" || true; }
passed=$(count PASS) skipped=$(count SKIP) failed=$(count FAIL)

mounts_after=$(suite_mounts)
pids_after=$(server_pids)
leak=0
if [ "$mounts_after" -gt "$mounts_before" ]; then
    log "LEAK: $((mounts_after - mounts_before)) suite mount(s) left:"
    grep 'snapshot-suite-' /proc/self/mountinfo | awk '{print "  " $5}' >&2
    leak=1
fi
if [ "$pids_after" != "$pids_before" ]; then
    log "LEAK: server processes left: $pids_after (before: ${pids_before:-none})"
    leak=1
fi

printf '\nrun.sh: %s: %s passed, %s skipped, %s failed, wall %ss, test exit %s\n' \
    "$( [ "$baseline" = 1 ] && echo baseline || echo overlay2-rs )" "$passed" "$skipped" "$failed" "$wall" "$rc"
if [ "$failed" -gt 0 ]; then
    grep -E "^ *--- FAIL: " "$out" | sed 's/^ */run.sh:   /'
fi
if [ "$rc" -ne 0 ]; then exit "$rc"; fi
if [ "$leak" -ne 0 ]; then exit 1; fi
exit 0
