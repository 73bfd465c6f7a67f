#!/usr/bin/env bash
# Whole-command comparison of overlay-archive against GNU tar, the way
# ../shared/BENCHMARKING.md says to measure on these machines:
#   - inputs on a tmpfs (/dev/shm);
#   - every extraction into a freshly made, loop-mounted ext4 with a journal
#     (ext4 allocates slowly for minutes after a large rm -rf);
#   - ours and GNU tar interleaved, same input, median and min of N runs.
# Needs root (loop mounts). Usage: archive.sh [RUNS] [SOURCE_DIR]
# Prints a table and leaves nothing mounted (trap).
set -euo pipefail
runs=${1:-5}
src=${2:-/usr/share}
here=$(cd "$(dirname "$0")/../../.." && pwd)
work=$(mktemp -d /dev/shm/archive-bench.XXXXXX)
img=$(mktemp /var/tmp/archive-bench.XXXXXX.img)
mnt=$(mktemp -d /tmp/archive-bench-mnt.XXXXXX)
cleanup() { umount "$mnt" 2>/dev/null || true; rm -rf "$work" "$img" "$mnt"; }
trap cleanup EXIT

cargo build --release -q --manifest-path "$here/Cargo.toml" -p overlay-archive --example tar
cp "$here/target/release/examples/tar" "$work/otar"
tar -cf "$work/input.tar" -C "$(dirname "$src")" "$(basename "$src")" 2>/dev/null || true
entries=$(tar -tf "$work/input.tar" | wc -l)
bytes=$(stat -c %s "$work/input.tar")

fresh_fs() {
    umount "$mnt" 2>/dev/null || true
    truncate -s 0 "$img"; truncate -s 4G "$img"
    mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 "$img"
    # noinit_itable: no background inode-table zeroing during the timings.
    mount -o loop,noinit_itable "$img" "$mnt"
}
secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
stats() { sort -n | awk '{a[NR]=$1} END {printf "%.3f %.3f\n", a[int((NR+1)/2)], a[1]}'; }

declare -a ours_x tar_x ours_c tar_c
for ((i = 0; i < runs; i++)); do
    fresh_fs; sync; tar_x+=("$(secs tar -xf "$work/input.tar" -C "$mnt")")
    fresh_fs; sync; ours_x+=("$(secs "$work/otar" x "$work/input.tar" "$mnt")")
    # Export the tree just extracted (page cache warm, as after an apply).
    sync; tar_c+=("$(secs tar -cf "$work/out1.tar" -C "$mnt" .)")
    ours_c+=("$(secs "$work/otar" c "$mnt" "$work/out2.tar")")
    rm -f "$work/out1.tar" "$work/out2.tar"
done
echo "samples: ours_x ${ours_x[*]} | tar_x ${tar_x[*]} | ours_c ${ours_c[*]} | tar_c ${tar_c[*]}" >&2
read -r ox_med ox_min < <(printf '%s\n' "${ours_x[@]}" | stats)
read -r tx_med tx_min < <(printf '%s\n' "${tar_x[@]}" | stats)
read -r oc_med oc_min < <(printf '%s\n' "${ours_c[@]}" | stats)
read -r tc_med tc_min < <(printf '%s\n' "${tar_c[@]}" | stats)
echo "dataset: $src as tar: $entries entries, $bytes bytes; $runs runs each, interleaved"
printf '%-8s %12s %12s %12s %12s %8s\n' op ours_median ours_min tar_median tar_min ratio
printf '%-8s %12s %12s %12s %12s %8.2f\n' import "$ox_med" "$ox_min" "$tx_med" "$tx_min" "$(echo "$ox_med / $tx_med" | bc -l)"
printf '%-8s %12s %12s %12s %12s %8.2f\n' export "$oc_med" "$oc_min" "$tc_med" "$tc_min" "$(echo "$oc_med / $tc_med" | bc -l)"
