#!/usr/bin/env bash
# Peak RSS of both ends of `mover push` into `mover serve --once` over loopback (issue 18, item 5): one
# large file at two sizes, and trees of empty files at three counts. Each end is its own process; its peak
# RSS is GNU time's %M (the kernel's maxrss, KiB).
#
#   benches/run-memory.sh [MOVER_BINARY] [WORKDIR]
#
# WORKDIR (default /dev/shm/mover-memory) holds the sources, built once and reused: sparse files of 1 and
# 8 GiB, and trees of 10k, 100k and 1M empty files in directories of 1000. COUNTS="10000 100000" skips
# the 1M tree; SIZES="1 8" names the file sizes in GiB. `--timeout 900`: committing a million files kept
# the receiver silent for over 120 s on a loaded two-core machine (RESULTS.md).
set -euo pipefail
BIN=${1:-target/release/mover}
WORK=${2:-/dev/shm/mover-memory}
COUNTS=${COUNTS-"10000 100000 1000000"}
SIZES=${SIZES-"1 8"}
PORT=${PORT:-7491}
mkdir -p "$WORK"

make_tree() { # DIR COUNT
    [ -e "$1/.done" ] && return
    rm -rf "$1"
    python3 - "$1" "$2" <<'PY'
import os, sys
root, n, per = sys.argv[1], int(sys.argv[2]), 1000
os.makedirs(root, exist_ok=True)
for d in range((n + per - 1) // per):
    dp = os.path.join(root, "d%04d" % d)
    os.mkdir(dp)
    for i in range(min(per, n - d * per)):
        fd = os.open(os.path.join(dp, "f%06d" % i), os.O_CREAT | os.O_WRONLY, 0o644)
        os.close(fd)
PY
    touch "$1/.done"
}

run() { # LABEL SOURCE ENTRIES
    local root="$WORK/root" tag="$1" src="$2" entries="$3"
    rm -rf "$root"; mkdir -p "$root"
    /usr/bin/time -f %M -o "$WORK/serve.rss" "$BIN" serve --once --insecure-no-auth --listen "127.0.0.1:$PORT" \
        --root "$root" 2>"$WORK/serve.err" &
    local spid=$!
    for _ in $(seq 100); do grep -q "listening on" "$WORK/serve.err" 2>/dev/null && break; sleep 0.1; done
    local t0=$SECONDS
    /usr/bin/time -f %M -o "$WORK/push.rss" "$BIN" push --insecure-no-auth --progress none --quiet --cipher none --timeout 900 \
        "$src" "mover://127.0.0.1:$PORT/in" || { cat "$WORK/serve.err"; exit 1; }
    wait "$spid"
    local s p; s=$(tail -1 "$WORK/serve.rss"); p=$(tail -1 "$WORK/push.rss")
    if [ "$entries" -gt 1 ]; then
        printf '| %s | %d | %d | %d | %d | %d s |\n' "$tag" "$p" "$s" $((p * 1024 / entries)) $((s * 1024 / entries)) $((SECONDS - t0))
    else
        printf '| %s | %d | %d | - | - | %d s |\n' "$tag" "$p" "$s" $((SECONDS - t0))
    fi
    rm -rf "$root"
}

echo "| source | push peak RSS (KiB) | serve peak RSS (KiB) | push B/entry | serve B/entry | wall |"
echo "|---|---:|---:|---:|---:|---:|"
for g in $SIZES; do
    f="$WORK/sparse-${g}g.bin"
    [ -e "$f" ] || truncate -s "${g}G" "$f"
    run "one file, ${g} GiB (sparse)" "$f" 1
done
for n in $COUNTS; do
    make_tree "$WORK/tree-$n" "$n"
    run "$n empty files" "$WORK/tree-$n" "$n"
done
