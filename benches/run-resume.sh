#!/usr/bin/env bash
# Resume and sync benchmarks (issue 15), between two network namespaces joined by a veth pair:
#  1. kill: a SIZE push killed (kill -9 of the client) at 25%, 50% and 75% of its run, then the same command
#     again: the bytes the rerun put on the wire against the bytes the receiver was missing (aim: at most the
#     missing bytes plus one window), and the time from the rerun's start to its first new data datagram
#     (aim: under 2 s plus one RTT).
#  2. sync: a tree of FILES small files pushed twice; the second push's time against rsync's second run of the
#     same tree to an rsync daemon in the same namespace (aim: no slower), same run, alternating.
#
# Usage (root; NOT part of CI; ~5 min on 2 cores with the defaults):
#   benches/run-resume.sh
# Environment: MOVER (binary; default: a fresh release build), SIZE (4G), RATE (push --rate, 2G), WINDOW
# (push --window, 64M: the "one window" of the aim), FRACS ("25 50 75"), FILES (10000), REPEATS (3),
# PARTS ("kill sync"), RESULTS (benches/results/resume-DATE.csv).
#
# What it does, so the numbers can be judged:
# - The source file is random bytes in /dev/shm (page cache); the receiver writes to DEST_DIR (default
#   /var/tmp, a real file system, so the journal's fdatasync costs what it costs).
# - kill: `--net udp` on both ends, `--insecure-no-auth`, fixed policy at RATE, so the run's length is known:
#   a first full push measures it, then each fraction kills the client at that fraction of the full time.
#   The receiver (`serve`) stays up; its session sees the control channel drop and keeps the partial and its
#   journal. The rerun's `--json` gives `resumed_bytes` (what the receiver held and verified), `sent_bytes`
#   (payload bytes put on the wire, retransmissions included) and `first_data_seconds`.
#   missing = SIZE - resumed_bytes; the aim is sent_bytes <= missing + WINDOW.
# - sync: FILES files of 1-16 KiB (seeded sizes) in 100 directories, in /dev/shm; `mover push` to `mover serve`
#   and `rsync -a` to an `rsync --daemon` (no ssh: rsync's fastest mode), both in the receiver namespace.
#   Both first runs copy the tree; the second runs (timed, wall clock of the client) find nothing to do.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=lib/netns.sh
. "$HERE/lib/netns.sh"

SIZE=${SIZE:-4G}
RATE=${RATE:-2G}
WINDOW=${WINDOW:-64M}
FRACS=${FRACS:-25 50 75}
FILES=${FILES:-10000}
REPEATS=${REPEATS:-3}
PARTS=${PARTS:-kill sync}
DEST_DIR=${DEST_DIR:-/var/tmp}
NS_S="mvrs-$$-s"
NS_R="mvrs-$$-r"
VETH=mvrs0
IP_S=10.77.202.1
IP_R=10.77.202.2
PORT=7420
RSYNC_PORT=8730
WORK=$(mktemp -d /dev/shm/mover-resume.XXXXXX)
DEST=$(mktemp -d "$DEST_DIR/mover-resume-dest.XXXXXX")
FILE=$WORK/src-$SIZE.bin
DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
RESULTS=${RESULTS:-$HERE/results/resume-$(date -u +%Y-%m-%d-%H%M).csv}

cleanup() {
    set +e
    delete_netns "$NS_S" "$NS_R"
    rm -rf "$WORK" "$DEST"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ $(id -u) == 0 ]] || die "needs root (network namespaces)"
for t in ip ethtool openssl rsync python3; do command -v "$t" >/dev/null || die "missing $t"; done
if [[ -z ${MOVER:-} ]]; then
    log "building mover (release)"
    (cd "$REPO" && cargo build --release -q -p mover)
    MOVER=$REPO/target/release/mover
fi
mkdir -p "$(dirname "$RESULTS")"
echo "date,part,case,repeat,size_bytes,resumed_bytes,missing_bytes,sent_bytes,window_bytes,sent_over_missing_plus_window,first_data_seconds,seconds,ok" >"$RESULTS"

ip netns add "$NS_S"
ip netns add "$NS_R"
ip link add "$VETH" netns "$NS_S" type veth peer name "$VETH" netns "$NS_R"
for ns in "$NS_S" "$NS_R"; do
    ip=$IP_S; [[ $ns == "$NS_R" ]] && ip=$IP_R
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip addr add "$ip/24" dev "$VETH"
    ip netns exec "$ns" ip link set "$VETH" up
    ip netns exec "$ns" ethtool -K "$VETH" tso off gso off gro off tx-udp-segmentation off >/dev/null 2>&1 ||
        die "ethtool -K on $VETH failed"
done
IN_S=(ip netns exec "$NS_S")
IN_R=(ip netns exec "$NS_R")

start_serve() {
    : >"$WORK/serve.log"
    "${IN_R[@]}" "$MOVER" serve --insecure-no-auth --listen "$IP_R:$PORT" --root "$DEST" 2>"$WORK/serve.log" &
    SERVE_PID=$!
    wait_for "$WORK/serve.log" "listening on" || die "serve did not start: $(cat "$WORK/serve.log")"
}
stop_serve() { kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; }

row() { echo "$DATE,$*" >>"$RESULTS"; }

if [[ " $PARTS " == *" kill "* ]]; then
    make_file "$FILE" "$SIZE"
    SIZE_BYTES=$(stat -c %s "$FILE")
    WINDOW_BYTES=$(bytes_of "$WINDOW")
    PUSH=(push --insecure-no-auth --json --net udp --policy fixed --rate "$RATE" --window "$WINDOW" --retries 0)
    start_serve
    # shellcheck disable=SC2317
    full() {
        rm -rf "${DEST:?}/in"
        local t0 t1
        t0=$(now)
        "${IN_S[@]}" "$MOVER" "${PUSH[@]}" "$FILE" "mover://$IP_R:$PORT/in" >"$WORK/full.json" 2>"$WORK/full.err" ||
            die "full push failed: $(tail -3 "$WORK/full.err")"
        t1=$(now)
        awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}'
    }
    FULL_S=$(full)
    log "full push of $SIZE at $RATE: $FULL_S s ($(jget "$WORK/full.json" goodput_bps) bit/s)"
    row "kill,full,1,$SIZE_BYTES,0,$SIZE_BYTES,$(jget "$WORK/full.json" sent_bytes),$WINDOW_BYTES,,$(jget "$WORK/full.json" first_data_seconds),$(jget "$WORK/full.json" seconds),1"
    for rep in $(seq "$REPEATS"); do
        for frac in $FRACS; do
            rm -rf "${DEST:?}/in"
            "${IN_S[@]}" "$MOVER" "${PUSH[@]}" "$FILE" "mover://$IP_R:$PORT/in" >/dev/null 2>"$WORK/killed.err" &
            pid=$!
            sleep "$(awk -v f="$FULL_S" -v p="$frac" 'BEGIN{print f * p / 100}')"
            kill -9 "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            # The server's session notices the dropped control channel and keeps the partial; give it a moment.
            sleep 1
            rc=0
            "${IN_S[@]}" "$MOVER" "${PUSH[@]}" "$FILE" "mover://$IP_R:$PORT/in" >"$WORK/rerun.json" 2>"$WORK/rerun.err" || rc=$?
            ok=1
            [[ $rc == 0 ]] && cmp -s "$FILE" "$DEST/in/$(basename "$FILE")" || ok=0
            resumed=$(jget "$WORK/rerun.json" resumed_bytes)
            sent=$(jget "$WORK/rerun.json" sent_bytes)
            missing=$((SIZE_BYTES - ${resumed:-0}))
            ratio=$(awk -v s="${sent:-0}" -v m="$missing" -v w="$WINDOW_BYTES" 'BEGIN{printf "%.4f", s / (m + w)}')
            row "kill,kill-at-$frac%,$rep,$SIZE_BYTES,$resumed,$missing,$sent,$WINDOW_BYTES,$ratio,$(jget "$WORK/rerun.json" first_data_seconds),$(jget "$WORK/rerun.json" seconds),$ok"
            log "  killed at $frac% (#$rep): held $resumed, missing $missing, rerun sent $sent (sent/(missing+window) $ratio), first data after $(jget "$WORK/rerun.json" first_data_seconds) s, ok=$ok"
            [[ $ok == 1 ]] || log "  rerun failed (rc=$rc): $(tail -3 "$WORK/rerun.err")"
        done
    done
    stop_serve
    rm -rf "${DEST:?}/in" "$FILE"
fi

if [[ " $PARTS " == *" sync "* ]]; then
    TREE=$WORK/tree
    log "making a tree of $FILES files"
    python3 "$HERE/lib/small-tree.py" "$TREE" "$FILES" 15
    cat >"$WORK/rsyncd.conf" <<EOF
pid file = $WORK/rsyncd.pid
port = $RSYNC_PORT
address = $IP_R
use chroot = no
[bench]
    path = $DEST/rsync
    read only = no
    uid = root
    gid = root
EOF
    mkdir -p "$DEST/rsync"
    "${IN_R[@]}" rsync --daemon --no-detach --config="$WORK/rsyncd.conf" 2>"$WORK/rsyncd.log" &
    RSYNCD_PID=$!
    start_serve
    for _ in $(seq 50); do "${IN_S[@]}" rsync "rsync://$IP_R:$RSYNC_PORT/" >/dev/null 2>&1 && break; sleep 0.1; done
    # timed OUT CMD...: runs CMD with its stdout in OUT; prints the wall-clock seconds it took.
    timed() { local out=$1 t0 t1; shift; t0=$(now); "$@" >"$out" || return 1; t1=$(now); awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}'; }
    for rep in $(seq "$REPEATS"); do
        rm -rf "${DEST:?}/mover" "${DEST:?}/rsync"/*
        "${IN_S[@]}" "$MOVER" push --insecure-no-auth --json --net udp "$TREE" "mover://$IP_R:$PORT/mover" \
            >"$WORK/first.json" 2>"$WORK/first.err" || die "first push failed: $(tail -3 "$WORK/first.err")"
        "${IN_S[@]}" rsync -a "$TREE" "rsync://$IP_R:$RSYNC_PORT/bench/" || die "first rsync failed"
        m=$(timed "$WORK/second.json" "${IN_S[@]}" "$MOVER" push --insecure-no-auth --json --net udp "$TREE" \
            "mover://$IP_R:$PORT/mover" 2>"$WORK/second.err") || die "second push failed: $(tail -3 "$WORK/second.err")"
        r=$(timed /dev/null "${IN_S[@]}" rsync -a "$TREE" "rsync://$IP_R:$RSYNC_PORT/bench/") || die "second rsync failed"
        ok=1
        diff -r "$TREE" "$DEST/mover/tree" >/dev/null || ok=0
        [[ $(jget "$WORK/second.json" skipped_files) == "$FILES" && $(jget "$WORK/second.json" sent_bytes) == 0 ]] || ok=0
        row "sync,mover-second-push,$rep,,,,$(jget "$WORK/second.json" sent_bytes),,,,$m,$ok"
        row "sync,rsync-second-run,$rep,,,,,,,,$r,1"
        log "  second run #$rep: mover $m s (skipped $(jget "$WORK/second.json" skipped_files), sent $(jget "$WORK/second.json" sent_bytes) B), rsync $r s, ok=$ok"
    done
    stop_serve
    kill "$RSYNCD_PID" 2>/dev/null || true
fi

log "results: $RESULTS"
python3 - "$RESULTS" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
kill = [r for r in rows if r["part"] == "kill" and r["case"].startswith("kill-at")]
if kill:
    print("| killed at | held (resumed) GiB | missing GiB | rerun sent GiB | sent / (missing + window) | first new data after s | ok |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in kill:
        g = lambda k: float(r[k] or 0) / 2**30
        print(f"| {r['case'][8:]} #{r['repeat']} | {g('resumed_bytes'):.2f} | {g('missing_bytes'):.2f} | {g('sent_bytes'):.2f} | {r['sent_over_missing_plus_window']} | {r['first_data_seconds']} | {r['ok']} |")
sync = [r for r in rows if r["part"] == "sync"]
if sync:
    m = [float(r["seconds"]) for r in sync if r["case"] == "mover-second-push"]
    s = [float(r["seconds"]) for r in sync if r["case"] == "rsync-second-run"]
    print(f"\nsecond run of the tree: mover median {statistics.median(m):.3f} s, rsync median {statistics.median(s):.3f} s, mover/rsync {statistics.median(m)/statistics.median(s):.2f} (all ok: {all(r['ok']=='1' for r in sync)})")
PY
