#!/usr/bin/env bash
# Before/after benchmark of two mover builds on the many-small-files path, in one run: a tree of FILES files
# pushed into a fresh destination (every file created, journaled, renamed, stamped), then pushed again (every
# file found current and skipped). Issue 16 moved every receiver operation below the root onto directory
# descriptors (a parent `openat2` per operation): this says what that costs per file.
#
# Usage (NOT part of CI; ~3 min on 2 cores with the defaults):
#   A=/var/tmp/mover-bench/mover-after B=target/release/mover benches/run-smallfiles-ab.sh
# Issue 18, item 4 (100,000 files of 4 KiB; the mixed tree of 1 KiB-10 MiB files, ~1 GiB per 1,000 files):
#   A=... FILES=100000 SHAPE=4k REPEATS=3 benches/run-smallfiles-ab.sh
#   A=... FILES=10000 SHAPE=mixed REPEATS=3 benches/run-smallfiles-ab.sh
# Environment: A, B (binaries), FILES (10000), SHAPE (small: 1-16 KiB; 4k; mixed: see lib/small-tree.py),
# REPEATS (5), SETTLE (6: seconds between removing a tree and the next push), DEST_DIR (where the receiver writes; default /var/tmp, a real file system), RESULTS
# (benches/results/smallfiles-ab-DATE.csv). Besides wall seconds it records the CPU seconds (user + system,
# from /usr/bin/time) of the push and of the server, per push.
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
SHAPE=${SHAPE:-small}
REPEATS=${REPEATS:-5}
DEST_DIR=${DEST_DIR:-/var/tmp}
RESULTS=${RESULTS:-$REPO/benches/results/smallfiles-ab-$(date -u +%Y-%m-%d).csv}
PORT=7431
# The receiver holds a descriptor per file in flight (mover/src/files/open_files.rs): 100,000 files of 4 KiB
# reach ~20,000 at once, this VM's hard limit; root may raise it.
ulimit -n 1048576 2>/dev/null || true
WORK=$(mktemp -d /dev/shm/mover-small.XXXXXX)
DEST=$(mktemp -d "$DEST_DIR/mover-small-dest.XXXXXX")
trap 'rm -rf "$WORK" "$DEST"' EXIT

python3 "$HERE/lib/small-tree.py" "$WORK/tree" "$FILES" 16 "$SHAPE"

cpu() { # a /usr/bin/time -f "%U %S" output file -> user + system seconds
    awk 'END { printf "%.2f", $1 + $2 }' "$1"
}

push() { # BIN NAME -> "seconds,push_cpu_s,serve_cpu_s" on stdout
    local bin=$1 name=$2
    /usr/bin/time -f "%U %S" -o "$WORK/serve.cpu" \
        "$bin" serve --once --insecure-no-auth --listen "127.0.0.1:$PORT" --root "$DEST" 2>"$WORK/serve.log" &
    local spid=$!
    for _ in $(seq 200); do grep -q "listening on" "$WORK/serve.log" 2>/dev/null && break; sleep 0.05; done
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -f "%U %S" -o "$WORK/push.cpu" \
        "$bin" push --insecure-no-auth --json "$WORK/tree" "mover://127.0.0.1:$PORT/$name" >"$WORK/push.json" 2>"$WORK/push.log" \
        || { cat "$WORK/push.log" >&2; exit 1; }
    t1=$(date +%s.%N)
    wait "$spid" || true
    python3 -c "print(f'{$t1-$t0:.3f}')" | tr -d '\n'
    echo ",$(cpu "$WORK/push.cpu"),$(cpu "$WORK/serve.cpu")"
}

echo "build,rep,first_s,first_push_cpu_s,first_serve_cpu_s,second_s,second_push_cpu_s,second_serve_cpu_s" >"$RESULTS"
for rep in $(seq "$REPEATS"); do
    for side in A B; do
        bin=${!side}
        rm -rf "${DEST:?}/$side"
        # ext4 without a journal (this VM's /) avoids reusing inodes freed in the last 5 s, and scans past
        # them on every create: let the removal age so neither build pays for the other's tree.
        sleep "${SETTLE:-6}"
        first=$(push "$bin" "$side")
        second=$(push "$bin" "$side")
        echo "$side,$rep,$first,$second" | tee -a "$RESULTS"
    done
done

python3 - "$RESULTS" "$A" "$B" "$FILES" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
med = lambda side, key: statistics.median(float(r[key]) for r in rows if r["build"] == side)
n = int(sys.argv[4])
for run, what in (("first", "first push (all files new)"), ("second", "second push (all skipped)")):
    a, b = med("A", f"{run}_s"), med("B", f"{run}_s")
    print(f"{what}, {n} files: A {a:.3f} s ({n / a:,.0f} files/s), B {b:.3f} s ({n / b:,.0f} files/s), B/A {b / a:.2f}")
    for side in ("push", "serve"):
        ca, cb = med("A", f"{run}_{side}_cpu_s"), med("B", f"{run}_{side}_cpu_s")
        print(f"  {side} CPU s per 10k files: A {ca * 1e4 / n:.2f}, B {cb * 1e4 / n:.2f}")
print(f"A = {sys.argv[2]}\nB = {sys.argv[3]}")
PY
