#!/usr/bin/env bash
# Before/after benchmark of two mover builds on the many-small-files path, in one run: a tree of FILES files
# pushed into a fresh destination (every file created, journaled, renamed, stamped), then pushed again (every
# file found current and skipped). Issue 16 moved every receiver operation below the root onto directory
# descriptors (a parent `openat2` per operation): this says what that costs per file.
#
# Usage (NOT part of CI; ~3 min on 2 cores with the defaults):
#   A=/var/tmp/mover-bench/mover-after B=target/release/mover benches/run-smallfiles-ab.sh
# Environment: A, B (binaries), FILES (10000), REPEATS (5), DEST_DIR (where the receiver writes; default
# /var/tmp, a real file system), RESULTS (benches/results/smallfiles-ab-DATE.csv).
#
# What it does: the tree (1-16 KiB files, seeded sizes, 100 directories) lives on tmpfs (/dev/shm); each push
# is `mover push --insecure-no-auth --json` over loopback to `mover serve --once --insecure-no-auth` of the
# same build; wall seconds of the push process. Runs alternate A, B, A, B... so drift of the shared machine
# hits both alike; medians of REPEATS.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
A=${A:?set A to the "before" binary}
B=${B:-$REPO/target/release/mover}
FILES=${FILES:-10000}
REPEATS=${REPEATS:-5}
DEST_DIR=${DEST_DIR:-/var/tmp}
RESULTS=${RESULTS:-$REPO/benches/results/smallfiles-ab-$(date -u +%Y-%m-%d).csv}
PORT=7431
WORK=$(mktemp -d /dev/shm/mover-small.XXXXXX)
DEST=$(mktemp -d "$DEST_DIR/mover-small-dest.XXXXXX")
trap 'rm -rf "$WORK" "$DEST"' EXIT

python3 "$HERE/lib/small-tree.py" "$WORK/tree" "$FILES" 16

push() { # BIN NAME -> seconds on stdout
    local bin=$1 name=$2
    "$bin" serve --once --insecure-no-auth --listen "127.0.0.1:$PORT" --root "$DEST" 2>"$WORK/serve.log" &
    local spid=$!
    for _ in $(seq 200); do grep -q "listening on" "$WORK/serve.log" 2>/dev/null && break; sleep 0.05; done
    local t0 t1
    t0=$(date +%s.%N)
    "$bin" push --insecure-no-auth --json "$WORK/tree" "mover://127.0.0.1:$PORT/$name" >"$WORK/push.json" 2>"$WORK/push.log" \
        || { cat "$WORK/push.log" >&2; exit 1; }
    t1=$(date +%s.%N)
    wait "$spid" || true
    python3 -c "print(f'{$t1-$t0:.3f}')"
}

echo "build,rep,first_s,second_s" >"$RESULTS"
for rep in $(seq "$REPEATS"); do
    for side in A B; do
        bin=${!side}
        rm -rf "${DEST:?}/$side"
        first=$(push "$bin" "$side")
        second=$(push "$bin" "$side")
        echo "$side,$rep,$first,$second" | tee -a "$RESULTS"
    done
done

python3 - "$RESULTS" "$A" "$B" "$FILES" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
med = lambda side, key: statistics.median(float(r[key]) for r in rows if r["build"] == side)
for key, what in (("first_s", "first push (all files new)"), ("second_s", "second push (all skipped)")):
    a, b = med("A", key), med("B", key)
    print(f"{what}, {sys.argv[4]} files: A {a:.3f} s, B {b:.3f} s, B/A {b / a:.2f}")
print(f"A = {sys.argv[2]}\nB = {sys.argv[3]}")
PY
