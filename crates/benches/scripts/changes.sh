#!/usr/bin/env bash
# Whole-command comparison of naive-diff's `changes` against rsync's quick
# check, `diff -rq`, and a bare lstat walk of both trees, per
# ../shared/BENCHMARKING.md: two real trees of SOURCE_DIR (default
# /usr/share) on a freshly made loop-mounted ext4, the second differing in
# 1% of its files (appended bytes); commands interleaved; median and min of
# RUNS (default 5), page cache warm (a first untimed pass).
# Needs root (loop mount) and rsync (installed from apt if missing).
set -euo pipefail
runs=${1:-5}
src=${2:-/usr/share}
here=$(cd "$(dirname "$0")/../../.." && pwd)
img=$(mktemp /var/tmp/changes-bench.XXXXXX.img)
mnt=$(mktemp -d /tmp/changes-bench-mnt.XXXXXX)
cleanup() { umount "$mnt" 2>/dev/null || true; rm -rf "$img" "$mnt"; }
trap cleanup EXIT
command -v rsync >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q rsync >/dev/null

cargo build --release -q --manifest-path "$here/Cargo.toml" -p naive-diff --example changes
ours="$here/target/release/examples/changes"
truncate -s 6G "$img"
mkfs.ext4 -q -F "$img"
mount -o loop "$img" "$mnt"
cp -a "$src" "$mnt/old"
cp -a "$mnt/old" "$mnt/new"
files=$(find "$mnt/new" -type f | wc -l)
entries=$(find "$mnt/new" | wc -l)
# 1% of the files, spread over the tree.
find "$mnt/new" -type f | awk 'NR % 100 == 0' | while read -r f; do printf x >> "$f"; done
sync

secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; e=$(date +%s.%N); echo "$e - $s" | bc; }
stats() { sort -n | awk '{a[NR]=$1} END {printf "%.3f %.3f\n", a[int((NR+1)/2)], a[1]}'; }
walk() { find "$mnt/old" "$mnt/new" -printf '%s %m %U %G %T@\n'; }
rsync_check() { rsync -rn --itemize-changes --delete -l -p -t -g -o -D "$mnt/new/" "$mnt/old/"; }
diff_check() { diff -rq "$mnt/new" "$mnt/old"; }
count=$("$ours" "$mnt/new" "$mnt/old" | wc -l)
walk >/dev/null; rsync_check >/dev/null || true; diff_check >/dev/null || true

declare -a t_ours t_walk t_rsync t_diff
for ((i = 0; i < runs; i++)); do
    t_ours+=("$(secs "$ours" "$mnt/new" "$mnt/old")")
    t_walk+=("$(secs walk)")
    t_rsync+=("$(secs rsync_check)")
    t_diff+=("$(secs diff_check)")
done
read -r o_med o_min < <(printf '%s\n' "${t_ours[@]}" | stats)
read -r w_med w_min < <(printf '%s\n' "${t_walk[@]}" | stats)
read -r r_med r_min < <(printf '%s\n' "${t_rsync[@]}" | stats)
read -r d_med d_min < <(printf '%s\n' "${t_diff[@]}" | stats)
echo "trees: $entries entries ($files files) each, $((files / 100)) files changed; ours reports $count changes; $runs runs, warm cache"
printf '%-34s %10s %10s %12s\n' command median min "ours/this"
printf '%-34s %10s %10s %12s\n' "naive-diff changes (ours)" "$o_med" "$o_min" 1.00
printf '%-34s %10s %10s %12.2f\n' "find -printf (lstat walk, both)" "$w_med" "$w_min" "$(echo "$o_med / $w_med" | bc -l)"
printf '%-34s %10s %10s %12.2f\n' "rsync -rn --itemize-changes" "$r_med" "$r_min" "$(echo "$o_med / $r_med" | bc -l)"
printf '%-34s %10s %10s %12.2f\n' "diff -rq" "$d_med" "$d_min" "$(echo "$o_med / $d_med" | bc -l)"
