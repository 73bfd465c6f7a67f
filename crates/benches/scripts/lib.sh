# Shared by containerd.sh and docker.sh (sourced): process handling, the
# big test image, timing and statistics. Expects $work (a tmpfs) and a
# fail function.

# Processes whose command line names PATTERN (shims of our daemons).
pids_naming() {
    local f p
    for f in /proc/[0-9]*/cmdline; do
        p=${f#/proc/}; p=${p%/cmdline}
        [[ $p == "$$" ]] && continue
        if { tr '\0' ' ' <"$f"; } 2>/dev/null | grep -qF -- "$1"; then echo "$p"; fi
    done
}
stop_pid() { # PID [SECONDS]: TERM, up to SECONDS (default 10), then KILL
    local p=$1 n
    [[ -n $p ]] && kill -0 "$p" 2>/dev/null || return 0
    kill -TERM "$p" 2>/dev/null || true
    for ((n = 0; n < ${2:-10} * 10; n++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}

# SMALL.tar OUT.tar TAG: the `docker save` image SMALL plus two layers of
# this machine's files (perl+i18n, zoneinfo+python3), tagged TAG.
big_image() {
    local small=$1 out=$2 tag=$3 d t
    local layer_tars=() cur=()
    mkdir "$work/big"
    tar -xf "$small" -C "$work/big"
    for d in usr/share/perl usr/share/i18n -- usr/share/zoneinfo usr/lib/python3 --; do
        if [[ $d != -- ]]; then
            if [[ -d /$d ]]; then cur+=("$d"); fi
            continue
        fi
        ((${#cur[@]})) || continue
        t=$work/layer-${#layer_tars[@]}.tar
        tar -cf "$t" --numeric-owner -C / "${cur[@]}"
        layer_tars+=("$t")
        cur=()
    done
    python3 - "$work/big" "$tag" "${layer_tars[@]}" <<'EOF'
# Appends layer tars to an extracted `docker save` image: diff_ids,
# manifest, a new config named by its digest, the tag.
import hashlib, json, os, shutil, sys
d, tag, *layers = sys.argv[1:]
with open(f"{d}/manifest.json") as f:
    man = json.load(f)
m = man[0]
with open(f"{d}/{m['Config']}") as f:
    cfg = json.load(f)
for layer in layers:
    h = hashlib.sha256()
    with open(layer, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    dig = h.hexdigest()
    os.makedirs(f"{d}/{dig}", exist_ok=True)
    shutil.move(layer, f"{d}/{dig}/layer.tar")
    m["Layers"].append(f"{dig}/layer.tar")
    cfg["rootfs"]["diff_ids"].append("sha256:" + dig)
    cfg.setdefault("history", []).append({"created_by": "benches: files from this machine"})
os.remove(f"{d}/{m['Config']}")
data = json.dumps(cfg).encode()
cid = hashlib.sha256(data).hexdigest()
with open(f"{d}/{cid}.json", "wb") as f:
    f.write(data)
m["Config"] = f"{cid}.json"
m["RepoTags"] = [tag]
with open(f"{d}/manifest.json", "w") as f:
    json.dump(man, f)
EOF
    (cd "$work/big" && tar -cf "$out" -- *)
    rm -rf "$work/big"
}
describe() { # IMAGE.tar -> "N layers, E entries, S MB"
    local t=$1 layers entries=0 l
    layers=$(tar -xOf "$t" manifest.json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)[0]["Layers"]))')
    for l in $(tar -tf "$t" | grep '/layer.tar$'); do
        entries=$((entries + $(tar -xOf "$t" "$l" | tar -t | wc -l)))
    done
    echo "$layers layers, $entries entries, $(($(stat -c %s "$t") / 1000000)) MB"
}

timed() { # ARRAY CMD...: appends the wall time of CMD in microseconds
    local -n into=$1
    shift
    sync
    local s=$EPOCHREALTIME
    "$@" >/dev/null 2>>"$work/errors.log" || fail "failed: $*"
    local e=$EPOCHREALTIME
    into+=($((${e/./} - ${s/./})))
}
stats() { # microseconds on stdin -> "median min" in ms (lower median if even)
    sort -n | awk '{a[NR]=$1} END {printf "%.1f %.1f\n", a[int((NR+1)/2)]/1000, a[1]/1000}'
}
