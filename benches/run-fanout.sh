#!/usr/bin/env bash
# Fan-out (issue 21, item 2): one `mover push --to A --to B --to C TREE` against three separate
# `mover push TREE X` to the same three daemons at the same time: bytes read from the disk and total time.
#
# Usage (root; NOT part of CI; ~8 min with the defaults on 2 cores):
#   sudo benches/run-fanout.sh                 # full run: REPEATS=3, both disks
#   sudo SMOKE=1 benches/run-fanout.sh         # plumbing: 128M trees, one repeat
# Not root: prints why and exits 0 (skipped).
#
# Environment (defaults in brackets):
#   MOVER [target/release/mover]  copied into the work dir at the start (a rebuild during the run changes nothing)
#   SIZE [1024M; 128M with SMOKE]  the tree for the "fast disk" runs: SMALL_FILES small files (1-256 KiB,
#                        benches/lib/small-tree.py) and the rest in four large files
#   SLOW_SIZE [256M; 64M with SMOKE]  the tree for the "slow disk" runs
#   SMALL_FILES [500]; REPEATS [3; 1 with SMOKE]; RATE [300M]: each push's --rate (--policy fair)
#   SLOW_DISK [20971520]  the slow disk: reads of the pushes capped at this many bytes/s on the VM's disk with
#                        the blkio cgroup's throttle (cgroup v1 blkio.throttle.read_bps_device), as an archive
#                        disk or a busy shared file system would be
#   WORK [/var/tmp/mover-fanout]  where the trees are made: on the VM's disk (ext4 on virtio-blk), so the
#                        pushes' O_DIRECT reads reach it. The daemons write to /dev/shm, so the disk only reads.
#
# Per run: three fresh `mover serve --insecure-no-auth --net udp --listen 127.0.0.1:PORT --root /dev/shm/...`
# (loopback; no other address is used), the page cache dropped, then either
#   F: `mover push --insecure-no-auth --net udp --json --policy fair --rate RATE --to A --to B --to C TREE`
#   S: the three `mover push ... TREE A`, `... TREE B`, `... TREE C` started together,
# every push under GNU time inside the cgroup benches/fanout (blkio; throttled for the slow disk). Measured:
# wall time from the first start to the last end; disk bytes read = the cgroup's blkio Read bytes on the disk
# over the run (every read the pushes made, io_uring's included), cross-checked by GNU time's %I (read_bytes
# / 512, per process); for F also mover's own read_disk_bytes and read_shared_bytes per destination. A run is
# ok when every push exits 0 and says verified, and each destination's tree (sha256 of every file) equals
# the source's.
#
# Needs: iproute2 python3 coreutils time (GNU time at /usr/bin/time), cgroup v1 blkio mounted at
# /sys/fs/cgroup/blkio (else the slow-disk runs are skipped, said so).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "run-fanout.sh: skipped: needs root (drop_caches, the blkio cgroup)" >&2
    exit 0
fi
SMOKE=${SMOKE:-0}
if [ "$SMOKE" = 1 ]; then SIZE=${SIZE:-128M}; SLOW_SIZE=${SLOW_SIZE:-64M}; REPEATS=${REPEATS:-1}; fi
SIZE=${SIZE:-1024M}; SLOW_SIZE=${SLOW_SIZE:-256M}; REPEATS=${REPEATS:-3}
SMALL_FILES=${SMALL_FILES:-500}; RATE=${RATE:-300M}; SLOW_DISK=${SLOW_DISK:-20971520}
WORK=${WORK:-/var/tmp/mover-fanout}; RESULTS_DIR=${RESULTS_DIR:-benches/results}
MOVER_SRC=${MOVER:-target/release/mover}
STAMP=$(date -u +%Y-%m-%d-%H%M)
RAW="$RESULTS_DIR/fanout-$STAMP.tsv"
mkdir -p "$WORK" "$RESULTS_DIR"
MOVER="$WORK/mover"
cp "$MOVER_SRC" "$MOVER"
DEV=$(stat -c '%d' "$WORK")
DISK="$(( DEV >> 8 )):$(( DEV & 255 ))"
CG=/sys/fs/cgroup/blkio/fanout-bench
HAVE_CG=0
if [ -d /sys/fs/cgroup/blkio ]; then mkdir -p "$CG" && HAVE_CG=1; fi
SERVERS=()
cleanup() {
    for p in "${SERVERS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf /dev/shm/mover-fanout-*
    [ "$HAVE_CG" = 1 ] && rmdir "$CG" 2>/dev/null || true
}
trap cleanup EXIT

bytes_of() { python3 -c "import sys;u={'K':1<<10,'M':1<<20,'G':1<<30};s=sys.argv[1];print(int(s[:-1])*u[s[-1]] if s[-1] in u else int(s))" "$1"; }

make_tree() { # DIR SIZE SEED
    local dir=$1 size; size=$(bytes_of "$2")
    [ -f "$dir/.done-$size" ] && return
    rm -rf "$dir"; mkdir -p "$dir"
    python3 benches/lib/small-tree.py "$dir/small" "$SMALL_FILES" "$3" 1024 262144 log
    local small; small=$(du -sb "$dir/small" | cut -f1)
    local each=$(( (size - small) / 4 / 1048576 ))
    for i in 0 1 2 3; do head -c "$(( each + i * 3 ))M" /dev/urandom > "$dir/large$i.bin"; done
    sync
    touch "$dir/.done-$size"
}

tree_sum() { (cd "$1" && find . -type f ! -name '.done-*' -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16; }

cg_read() { # the cgroup's Read bytes on DISK
    [ "$HAVE_CG" = 1 ] || { echo 0; return; }
    awk -v d="$DISK" '$1==d && $2=="Read" {print $3; f=1} END {if (!f) print 0}' "$CG/blkio.throttle.io_service_bytes"
}

start_servers() {
    SERVERS=(); PORTS=()
    for i in 0 1 2; do
        local port=$(( 7461 + i )) root=/dev/shm/mover-fanout-$i
        rm -rf "$root"; mkdir -p "$root"
        "$MOVER" serve --insecure-no-auth --net udp --listen 127.0.0.1:$port --root "$root" 2>"$WORK/serve$i.log" &
        SERVERS+=($!); PORTS+=($port)
    done
    for port in "${PORTS[@]}"; do
        for _ in $(seq 100); do ss -ltn | grep -q "127.0.0.1:$port " && break; sleep 0.05; done
    done
}

stop_servers() { for p in "${SERVERS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; SERVERS=(); }

# in_cg OUT ERR CMD...: CMD in the cgroup under GNU time (%e %U %S %I), JSON to OUT.
in_cg() {
    local out=$1 err=$2; shift 2
    sh -c 'if [ -n "$0" ]; then echo $$ > "$0/cgroup.procs"; fi; exec "$@"' "$( [ "$HAVE_CG" = 1 ] && echo "$CG")" \
        /usr/bin/time -f 'time %e %U %S %I' -o "$err.time" "$@" >"$out" 2>"$err"
}

printf 'disk\tkind\trepeat\twall_s\tcg_read_bytes\ttime_read_bytes\tmover_read_disk\tmover_read_shared\tdest_seconds\tgoodput_mbit\tok\tload\n' >"$RAW"

run_one() { # DISKNAME TREE KIND REPEAT
    local diskname=$1 tree=$2 kind=$3 rep=$4
    local tbytes; tbytes=$(find "$tree" -type f ! -name '.done-*' -printf '%s\n' | awk '{s+=$1} END {print s}')
    start_servers
    sync; echo 3 > /proc/sys/vm/drop_caches
    local before; before=$(cg_read)
    local load; load=$(cut -d' ' -f1 /proc/loadavg)
    local t0; t0=$(date +%s.%N)
    local common=(push --insecure-no-auth --net udp --json -q --policy fair --rate "$RATE")
    local pids=()
    if [ "$kind" = F ]; then
        in_cg "$WORK/out-F.json" "$WORK/err-F" "$MOVER" "${common[@]}" \
            --to "mover://127.0.0.1:${PORTS[0]}/in" --to "mover://127.0.0.1:${PORTS[1]}/in" \
            --to "mover://127.0.0.1:${PORTS[2]}/in" "$tree" &
        pids+=($!)
    else
        for i in 0 1 2; do
            in_cg "$WORK/out-S$i.json" "$WORK/err-S$i" "$MOVER" "${common[@]}" "$tree" "mover://127.0.0.1:${PORTS[$i]}/in" &
            pids+=($!)
        done
    fi
    local ok=1
    for p in "${pids[@]}"; do wait "$p" || ok=0; done
    local t1; t1=$(date +%s.%N)
    local after; after=$(cg_read)
    stop_servers
    local want; want=$(tree_sum "$tree")
    for i in 0 1 2; do
        [ "$(tree_sum "/dev/shm/mover-fanout-$i/in/$(basename "$tree")")" = "$want" ] || { ok=0; echo "run-fanout.sh: destination $i differs" >&2; }
    done
    local stats
    stats=$(python3 - "$WORK" "$kind" <<'EOF'
import json, sys, glob
work, kind = sys.argv[1], sys.argv[2]
outs = [f"{work}/out-F.json"] if kind == "F" else [f"{work}/out-S{i}.json" for i in range(3)]
inblock = 0
for f in glob.glob(f"{work}/err-{kind}*.time"):
    for line in open(f):
        if line.startswith("time "):
            inblock += int(line.split()[4])
reports, ok = [], True
for o in outs:
    j = json.load(open(o))
    reports += j["transfers"] if "transfers" in j else [j]
disk = sum(r.get("read_disk_bytes", 0) for r in reports)
shared = sum(r.get("read_shared_bytes", 0) for r in reports)
ok = all(r.get("verified") for r in reports) and len(reports) == 3
secs = "/".join(f"{r['seconds']:.1f}" for r in reports)
good = "/".join(f"{r['goodput_bps']/1e6:.0f}" for r in reports)
print(inblock * 512, disk if kind == "F" else "-", shared if kind == "F" else "-", secs, good, int(ok))
EOF
)
    read -r tread mdisk mshared secs good vok <<<"$stats"
    [ "$vok" = 1 ] || ok=0
    local wall; wall=$(python3 -c "print(f'{$t1-$t0:.2f}')")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$diskname" "$kind" "$rep" "$wall" "$(( after - before ))" \
        "$tread" "$mdisk" "$mshared" "$secs" "$good" "$ok" "$load" | tee -a "$RAW"
    rm -f "$WORK"/out-* "$WORK"/err-*
}

make_tree "$WORK/tree-fast" "$SIZE" 1
make_tree "$WORK/tree-slow" "$SLOW_SIZE" 2
echo "run-fanout.sh: trees made; tree-fast $(du -sh "$WORK/tree-fast" | cut -f1), tree-slow $(du -sh "$WORK/tree-slow" | cut -f1); disk $DISK; raw rows in $RAW" >&2
for rep in $(seq "$REPEATS"); do
    order="F S"; [ $(( rep % 2 )) = 0 ] && order="S F"
    [ "$HAVE_CG" = 1 ] && echo "$DISK 0" > "$CG/blkio.throttle.read_bps_device" 2>/dev/null || true
    for kind in $order; do run_one fast "$WORK/tree-fast" "$kind" "$rep"; done
    if [ "$HAVE_CG" = 1 ]; then
        echo "$DISK $SLOW_DISK" > "$CG/blkio.throttle.read_bps_device"
        for kind in $order; do run_one slow "$WORK/tree-slow" "$kind" "$rep"; done
        echo "$DISK 0" > "$CG/blkio.throttle.read_bps_device" 2>/dev/null || true
    else
        echo "run-fanout.sh: no blkio cgroup: the slow-disk runs are skipped" >&2
    fi
done
echo "run-fanout.sh: done; raw rows in $RAW" >&2
