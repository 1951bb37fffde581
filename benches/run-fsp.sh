#!/usr/bin/env bash
# The Fast Send Protocol benchmark: mover push striped over relays (--via) against the direct transfer, on the
# test bed of Rabl, Koch, Hölbling, Kosch, "Design and implementation of the fast send protocol" (JDIM 7(2),
# 2009), reproducing its Figure 5 (send goodput per configuration) and Figure 6 (total goodput).
#
# Usage (root; NOT part of CI; ~15 min for the defaults on 2 cores, most of it the client's 100 Mbit/s):
#   sudo benches/run-fsp.sh                                   # every row, SIZE=1G, one run each
#   sudo SIZE=512M ROWS="direct in123-direct-overlap in123-direct" benches/run-fsp.sh   # the overlap pair
#   sudo MOVER=/path/to/mover CHECK=0 ROWS=direct SIZE=256M benches/run-fsp.sh        # plumbing smoke run
#
# What it measures. Send goodput: file bytes x 8 / send_seconds of mover push --json (from the start until
# every block is held by a relay or by the receiver: when the sender could go away). Total goodput: bytes x 8
# / seconds (until the receiver verified everything), the JSON's goodput_bps. The paper's configurations,
# one row each (ROWS, ids in brackets): direct [direct]; IN1-3 [in123]; IN1-3 + direct [in123-direct];
# IN1-3 + direct + overlapping [in123-direct-overlap]; IN1-2 + direct [in12-direct]; IN1-4 [in1234];
# IN1-4 + direct [in1234-direct]; IN1,2,4 + direct [in124-direct]. "INn" is relay n (mover relay in
# fspr<n>), "direct" a leg straight to the receiver (--direct beside --via; the direct row has no --via).
# Rows without "overlapping" pass --no-overlap (relays forward to the receiver only after the striping
# ended); the overlapping row lets them forward while the sender still stripes.
#
# Test bed (benches/lib/fsp-topology.sh, whose header draws it): a star of network namespaces around a bridge;
# server (sender) 1 Gbit/s, client (receiver) and relays 100 Mbit/s each, tc htb on both directions of every
# link; the client and relay 3 behind one 100 Mbit/s uplink (their traffic in each direction shares it; relay
# 3 -> client goes up it and back down); relay 4 carries FSP_CROSS_RATE [50M] of iperf3 UDP cross traffic in
# each direction during every row (to and from fspx). No delay and no loss emulation (no netem here): the
# paper's LAN. Addresses 10.77.0.0/24 only, inside the namespaces.
#
# Theoretical maxima, per row: send = the sum of the bottleneck rates of the legs striped to (relays 1, 2:
# 100 Mbit/s each; relay 4: 100 minus its cross traffic; relay 3 and the direct leg together: the shared
# uplink's 100, counted once), at most the server's 1 Gbit/s; total = the client's 100 Mbit/s download.
# Both are link rates (Ethernet frames); at MTU 1500 a frame carries at most ~93% file data (mover's
# 1472-byte datagrams less its header and AEAD tag), so ~93% of a maximum is the practical ceiling.
#
# Processes per row: mover serve --listen 10.77.0.2:7700 --root R --insecure-no-auth --net udp in fspcli;
# mover relay --listen 10.77.0.1N:7710 --spool S --spool-max SPOOL_MAX --insecure-no-auth --net udp in each
# fspr<N> the row uses; then in fspsrv: mover push --insecure-no-auth --net udp --policy fair --json
# [--via mover://10.77.0.11:7710,...] [--direct] [--no-overlap] FILE mover://10.77.0.2:7700/dest. Daemons,
# spools and the receiver's root are fresh for every run; the received file's size (and with CMP=1 its
# bytes) is checked, then it is deleted. Every 0.2 s (SAMPLE_S) while a push runs: the allocated bytes in the
# relays' spools and under the receiver's root (which includes its staging), and those of the destination
# file itself (`dest/NAME` or its partial `.NAME.mover*.part`): allocated blocks, not sizes, because the
# receiver sizes its partial file to the full length at the start (sparse).
#
# Environment (defaults in brackets):
#   MOVER [target/release/mover]  copied into the work dir at the start (a rebuild during the run changes nothing)
#   SIZE [1G]            the file (IEC: 1G = 1 GiB) of random bytes, made once per run; REPEATS [1] runs per row
#   ROWS [all eight, in the paper's order]   ids as above
#   CHECK [1]            measure the test bed with iperf3 TCP first (fsp_check, ~40 s; in the table's notes)
#   CMP [1]              compare the received file with the source byte for byte (besides its size)
#   SAMPLE_S [0.2]       sampling interval; PUSH_TIMEOUT [SIZE at 20 Mbit/s + 60 s] a push still running then
#                        is stopped (status "timeout")
#   SPOOL_MAX [2G]       relay --spool-max; MOVER_PUSH_ARGS, MOVER_SERVE_ARGS, MOVER_RELAY_ARGS: extra arguments
#   FSP_CROSS_RATE [50M], FSP_QUEUE_MS [20], FSP_SW3_LOCAL [0] and the FSP_RATE_* rates: see fsp-topology.sh
#   WORKDIR_BASE [/dev/shm if it has 4 x SIZE free, else /tmp]; RESULTS_DIR [benches/results]
#
# Needs (Debian/Ubuntu packages; the script installs nothing): iproute2 ethtool iperf3 iputils-ping openssl
# python3 coreutils findutils util-linux. The plots are hand-written SVG (benches/plot-fsp.py, no matplotlib).
#
# Output: benches/results/fsp-<date>.md (the table, also printed), fsp-<date>.csv (one line per run),
# fsp-<date>-raw.jsonl (per run: the row, status, mover push's whole JSON, bytes per shaped link),
# fsp-<date>-ts.csv (the samples), fsp-<date>-<row>.svg (both phases over time, per row; benches/plot-fsp.py),
# fsp-<date>-check.txt (CHECK=1) and fsp-<date>-<row>-<repeat>.log (the daemons' and the push's stderr) for
# runs that did not end ok. An EXIT trap (also on Ctrl-C and errors) kills every process it started, deletes
# the namespaces and the work dir. benches/RESULTS.md is not touched.
set -Eeuo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# log die bytes_of now jget median wait_for wait_pid make_file delete_netns
# shellcheck source-path=SCRIPTDIR source=lib/netns.sh
. "$HERE/lib/netns.sh"
# fsp_up fsp_down fsp_cross_start fsp_cross_running fsp_cross_stop fsp_link_bytes fsp_check, FSP_*
# shellcheck source-path=SCRIPTDIR source=lib/fsp-topology.sh
. "$HERE/lib/fsp-topology.sh"

[[ $(id -u) == 0 ]] || die "needs root (network namespaces, veths, tc): run it with sudo"

ALL_ROWS="direct in123 in123-direct in123-direct-overlap in12-direct in1234 in1234-direct in124-direct"
MOVER=${MOVER:-target/release/mover}
SIZE=${SIZE:-1G}
REPEATS=${REPEATS:-1}
ROWS=${ROWS:-$ALL_ROWS}
CHECK=${CHECK:-1}
CMP=${CMP:-1}
SAMPLE_S=${SAMPLE_S:-0.2}
SPOOL_MAX=${SPOOL_MAX:-2G}
MOVER_PUSH_ARGS=${MOVER_PUSH_ARGS:-}
MOVER_SERVE_ARGS=${MOVER_SERVE_ARGS:-}
MOVER_RELAY_ARGS=${MOVER_RELAY_ARGS:-}
RESULTS_DIR=${RESULTS_DIR:-$HERE/results}

# The paper's rows: label, relays (numbers), direct leg, overlap.
declare -A LABEL=([direct]="direct" [in123]="IN1-3" [in123-direct]="IN1-3 + direct"
    [in123-direct-overlap]="IN1-3 + direct + overlapping" [in12-direct]="IN1-2 + direct" [in1234]="IN1-4"
    [in1234-direct]="IN1-4 + direct" [in124-direct]="IN1,2,4 + direct")
declare -A RELAYS=([direct]="" [in123]="1 2 3" [in123-direct]="1 2 3" [in123-direct-overlap]="1 2 3"
    [in12-direct]="1 2" [in1234]="1 2 3 4" [in1234-direct]="1 2 3 4" [in124-direct]="1 2 4")
declare -A DIRECT=([direct]=1 [in123]=0 [in123-direct]=1 [in123-direct-overlap]=1 [in12-direct]=1 [in1234]=0
    [in1234-direct]=1 [in124-direct]=1)
declare -A OVERLAP=([direct]=0 [in123]=0 [in123-direct]=0 [in123-direct-overlap]=1 [in12-direct]=0 [in1234]=0
    [in1234-direct]=0 [in124-direct]=0)
# The paper's Figure 5 (send) and Figure 6 (total goodput), Mbit/s; "n/a" where its per-row values were not
# at hand (the text gives the two below, and 91.6% of the theoretical striping maximum for send goodput).
declare -A PAPER_SEND=()
declare -A PAPER_TOTAL=([direct]=86.14 [in123-direct-overlap]=86.38)

for r in $ROWS; do [[ -n ${LABEL[$r]:-} ]] || die "unknown row \"$r\" in ROWS (known: $ALL_ROWS)"; done
for t in ip tc bridge ethtool iperf3 ping ss python3 openssl numfmt find timeout cmp; do
    command -v "$t" >/dev/null || die "missing $t (see the package list in the header)"
done
[[ $MOVER == /* || -x $MOVER || ! -x $REPO/$MOVER ]] || MOVER=$REPO/$MOVER
[[ -x $MOVER ]] || die "no mover binary at $MOVER (build it: cargo build --release -p mover; or set MOVER)"
NEED_RELAY=0
for r in $ROWS; do [[ -n ${RELAYS[$r]} ]] && NEED_RELAY=1; done
if ((NEED_RELAY)) && ! "$MOVER" relay --help >/dev/null 2>&1; then
    die "$MOVER has no \`relay\` subcommand: only ROWS=direct runs with it"
fi

FILE_BYTES=$(bytes_of "$SIZE")
PUSH_TIMEOUT=${PUSH_TIMEOUT:-$(awk -v b="$FILE_BYTES" 'BEGIN { printf "%d", b * 8 / 20e6 + 60 }')}
if [[ -z ${WORKDIR_BASE:-} ]]; then
    WORKDIR_BASE=/tmp
    shm_free=$(df --output=avail -B1 /dev/shm 2>/dev/null | tail -1 || echo 0)
    ((shm_free > 4 * FILE_BYTES)) && WORKDIR_BASE=/dev/shm
fi
DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
STAMP=$(date -u +%Y-%m-%d-%H%M)
mkdir -p "$RESULTS_DIR"
BASE=$RESULTS_DIR/fsp-$STAMP
RAW=$BASE-raw.jsonl
TS=$BASE-ts.csv
CMDLINE="SIZE=$SIZE REPEATS=$REPEATS ROWS=\"$ROWS\" FSP_CROSS_RATE=$FSP_CROSS_RATE FSP_QUEUE_MS=$FSP_QUEUE_MS FSP_SW3_LOCAL=$FSP_SW3_LOCAL${MOVER_PUSH_ARGS:+ MOVER_PUSH_ARGS=\"$MOVER_PUSH_ARGS\"} benches/run-fsp.sh"

BG_PIDS=()
WORK=
cleanup() {
    set +e
    trap - EXIT INT TERM ERR
    local pid
    [[ -n $WORK ]] && rm -f "$WORK/sampling"
    for pid in "${BG_PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
    fsp_down
    [[ -n $WORK ]] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'rc=$?; if [[ $BASHPID == "$$" ]]; then log "FATAL: line $LINENO: \"$BASH_COMMAND\" returned $rc"; fi' ERR

WORK=$(mktemp -d "$WORKDIR_BASE/fsp-bench.XXXXXX")
usec() { echo "${EPOCHREALTIME/./}"; }
load1() { cut -d' ' -f1 /proc/loadavg; }
# Allocated bytes of the regular files below the directories (what has arrived, also into a sparse file).
# find fails when a file is renamed under it (a commit): what it did list is still right.
dir_bytes() { { find "$@" -type f -printf '%b\n' 2>/dev/null || true; } | awk '{ s += $1 } END { printf "%.0f", s * 512 }'; }
# Ends a process: SIGTERM, SIGKILL after 5 s.
stop_pid() {
    kill "$1" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
wait_port() { # NS PORT: until a TCP or UDP socket listens there (10 s)
    for _ in $(seq 500); do
        [[ -n $(ip netns exec "$1" ss -tulnH "sport = :$2" 2>/dev/null) ]] && return 0
        sleep 0.02
    done
    return 1
}
bps() { numfmt --from=si "$1"; }

# Theoretical maximum of the send goodput of a row, bits/s (see the header).
send_max() { # ROW
    local r sum=0 shared=0 relay cross
    relay=$(bps "$FSP_RATE_RELAY")
    cross=$(bps "$FSP_CROSS_RATE")
    for r in ${RELAYS[$1]}; do
        case $r in
            3) shared=1 ;;
            4) sum=$((sum + relay - cross)) ;;
            *) sum=$((sum + relay)) ;;
        esac
    done
    [[ ${DIRECT[$1]} == 1 ]] && shared=1
    ((shared)) && sum=$((sum + $(bps "$FSP_RATE_SW3")))
    local srv
    srv=$(bps "$FSP_RATE_SRV")
    echo $((sum < srv ? sum : srv))
}
TOTAL_MAX=$(bps "$FSP_RATE_SW3") # the client's download: all of it comes down the shared uplink

# ---------------------------------------------------------------- plan
n_rows=$(wc -w <<<"$ROWS")
est=$(awk -v b="$FILE_BYTES" -v n="$n_rows" -v r="$REPEATS" -v c="$CHECK" 'BEGIN { printf "%d", n * r * (b * 8 / 85e6 + 4) + c * 45 + 15 }')
log "plan: rows [$ROWS] x $REPEATS, file $SIZE, cross traffic $FSP_CROSS_RATE each way on relay 4; mover $MOVER"
log "estimated run time: ~$(((est + 59) / 60)) min (the client's 100 Mbit/s bounds every row; ETA $(date -d "@$(($(date +%s) + est))" +%H:%M))"
LOAD=$(load1)
awk -v l="$LOAD" 'BEGIN { exit !(l > 0.5) }' && log "WARNING: load average $LOAD at the start: the numbers will be low"

cp "$MOVER" "$WORK/mover"
MOVER_BIN=$WORK/mover
SRC=$WORK/src.bin
make_file "$SRC" "$SIZE"
FNAME=$(basename "$SRC")

log "building the test bed (namespaces fsphub fspsw3 fspsrv fspcli fspr1-4 fspx)"
fsp_up || die "fsp_up failed"
fsp_cross_start "$FSP_CROSS_RATE" || die "the cross traffic on relay 4 did not start"
if [[ $CHECK == 1 ]]; then
    log "checking the test bed with iperf3 TCP (cross traffic on relay 4 running)"
    fsp_check 3 | tee "$BASE-check.txt" | sed 's/^/  /' >&2
fi

# ---------------------------------------------------------------- one run
SERVE_PID=
RELAY_PIDS=()
start_daemons() { # ROW
    local n
    : >"$WORK/daemons.log"
    # shellcheck disable=SC2086 # extra arguments are words
    ip netns exec "$FSP_CLI" "$MOVER_BIN" serve --listen "$FSP_IP_CLI:7700" --root "$WORK/recv" --insecure-no-auth \
        --net udp $MOVER_SERVE_ARGS 2>"$WORK/serve.log" &
    SERVE_PID=$!
    BG_PIDS+=("$SERVE_PID")
    RELAY_PIDS=()
    for n in ${RELAYS[$1]}; do
        mkdir -p "$WORK/spool$n"
        # shellcheck disable=SC2086 # extra arguments are words
        ip netns exec "fspr$n" "$MOVER_BIN" relay --listen "${FSP_IP_RELAYS[n - 1]}:7710" --spool "$WORK/spool$n" \
            --spool-max "$SPOOL_MAX" --insecure-no-auth --net udp $MOVER_RELAY_ARGS 2>"$WORK/relay$n.log" &
        RELAY_PIDS+=($!)
        BG_PIDS+=($!)
    done
    wait_port "$FSP_CLI" 7700 || { cat "$WORK/serve.log" >&2; die "mover serve did not start"; }
    for n in ${RELAYS[$1]}; do
        wait_port "fspr$n" 7710 || { cat "$WORK/relay$n.log" >&2; die "mover relay $n did not start"; }
    done
}
stop_daemons() {
    local pid
    for pid in "${RELAY_PIDS[@]}" "$SERVE_PID"; do stop_pid "$pid"; done
    RELAY_PIDS=()
    SERVE_PID=
}

# Every SAMPLE_S until $WORK/sampling goes: "row,repeat,t_s,spool_bytes,recv_root_bytes,dest_bytes".
sampler() { # ROW REPEAT T0_US
    set +e
    trap - ERR
    local t sp rr dd
    while [[ -e $WORK/sampling ]]; do
        t=$(($(usec) - $3))
        sp=0
        compgen -G "$WORK/spool*" >/dev/null && sp=$(dir_bytes "$WORK"/spool*)
        rr=$(dir_bytes "$WORK/recv")
        dd=$({ find "$WORK/recv/dest" -maxdepth 1 -type f \( -name "$FNAME" -o -name ".$FNAME.mover*.part" \) \
            -printf '%b\n' 2>/dev/null || true; } | awk '{ s += $1 } END { printf "%.0f", s * 512 }')
        printf '%s,%s,%d.%06d,%s,%s,%s\n' "$1" "$2" $((t / 1000000)) $((t % 1000000)) "$sp" "$rr" "$dd" >>"$TS"
        sleep "$SAMPLE_S"
    done
}

run_row() { # ROW REPEAT
    local row=$1 rep=$2 n urls=() args=() status=ok rc=0 t0 spid
    rm -rf "$WORK/recv" "$WORK"/spool*
    mkdir -p "$WORK/recv"
    start_daemons "$row"
    fsp_cross_running || { log "  the cross traffic had stopped: restarting it"; fsp_cross_start "$FSP_CROSS_RATE"; }
    for n in ${RELAYS[$row]}; do urls+=("mover://${FSP_IP_RELAYS[n - 1]}:7710"); done
    args=(push --insecure-no-auth --net udp --policy fair --json)
    if ((${#urls[@]})); then
        args+=(--via "$(IFS=,; echo "${urls[*]}")")
        [[ ${DIRECT[$row]} == 1 ]] && args+=(--direct)
        [[ ${OVERLAP[$row]} == 0 ]] && args+=(--no-overlap)
    fi
    # shellcheck disable=SC2206 # extra arguments are words
    args+=($MOVER_PUSH_ARGS "$SRC" "mover://$FSP_IP_CLI:7700/dest")
    fsp_link_bytes >"$WORK/links0"
    touch "$WORK/sampling"
    t0=$(usec)
    sampler "$row" "$rep" "$t0" &
    spid=$!
    BG_PIDS+=("$spid")
    ip netns exec "$FSP_SRV" timeout -k 5 "$PUSH_TIMEOUT" "$MOVER_BIN" "${args[@]}" >"$WORK/push.json" 2>"$WORK/push.err" || rc=$?
    local wall_us=$(($(usec) - t0))
    rm -f "$WORK/sampling"
    wait "$spid" 2>/dev/null || true
    fsp_link_bytes >"$WORK/links1"
    stop_daemons
    case $rc in
        0) ;;
        124 | 137) status=timeout ;;
        *) status=fail ;;
    esac
    local got
    got=$(stat -c %s "$WORK/recv/dest/$FNAME" 2>/dev/null || echo missing)
    if [[ $status == ok && $got != "$FILE_BYTES" ]]; then status=fail; log "  the received file's size is $got, not $FILE_BYTES"; fi
    if [[ $status == ok ]] && ! python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1])).get("verified") is not True)' \
        "$WORK/push.json" 2>/dev/null; then
        status=fail; log "  mover push did not report verified: true"
    fi
    if [[ $status == ok && $CMP == 1 ]] && ! cmp -s "$SRC" "$WORK/recv/dest/$FNAME"; then
        status=fail; log "  the received file differs from the source"
    fi
    if [[ $status != ok ]]; then
        local f=$BASE-$row-$rep.log
        { echo "# mover ${args[*]} (exit $rc)"; echo "## push stderr"; cat "$WORK/push.err"; echo "## push stdout"
          cat "$WORK/push.json"; echo "## serve"; cat "$WORK/serve.log"
          for n in ${RELAYS[$row]}; do echo "## relay $n"; cat "$WORK/relay$n.log"; done; } >"$f" 2>/dev/null
        log "  $status (exit $rc): $(tail -1 "$WORK/push.err" 2>/dev/null); logs in $f"
    fi
    log "  $(python3 - "$WORK/push.json" "$WORK/links0" "$WORK/links1" "$RAW" "$row" "${LABEL[$row]}" "$rep" "$status" "$rc" \
        "${RELAYS[$row]}" "${DIRECT[$row]}" "${OVERLAP[$row]}" "$(send_max "$row")" "$TOTAL_MAX" "$FILE_BYTES" \
        "$wall_us" "${args[*]}" <<'PY'
import json, sys
(pj, l0, l1, raw, row, label, rep, status, rc, relays, direct, overlap, smax, tmax, size, wall_us,
 cmd) = sys.argv[1:]
try:
    push = json.load(open(pj))
except Exception:
    push = None
def links(p):
    d = {}
    for line in open(p):
        f = line.split()
        if len(f) == 4:
            d[f[0]] = (int(f[1]), int(f[2]), int(f[3]))
    return d
a, b = links(l0), links(l1)
wall = int(wall_us) / 1e6
link = {k: {"bytes": b[k][0] - a[k][0], "packets": b[k][1] - a[k][1], "drops": b[k][2] - a[k][2],
            "mbit_s": round((b[k][0] - a[k][0]) * 8 / wall / 1e6, 2)} for k in b if k in a}
rec = {"row": row, "label": label, "repeat": int(rep), "status": status, "exit": int(rc),
       "relays": [int(x) for x in relays.split()], "direct": direct == "1", "overlap": overlap == "1",
       "send_max_bps": int(smax), "total_max_bps": int(tmax), "size": int(size), "wall_seconds": wall,
       "command": "mover " + cmd, "links": link, "push": push}
with open(raw, "a") as f:
    f.write(json.dumps(rec) + "\n")
def mb(k):
    v = (push or {}).get(k)
    return "-" if v is None else f"{v / 1e6:.1f}"
legs = ", ".join(f'{l.get("name")}: {l.get("bytes", 0) / 2**20:.0f} MiB' for l in (push or {}).get("legs") or [])
print(f"send {mb('send_goodput_bps')} Mbit/s (max {int(smax) / 1e6:.0f}), total {mb('goodput_bps')} Mbit/s; "
      f"verified {(push or {}).get('verified')}{'; legs ' + legs if legs else ''}")
PY
)"
    rm -rf "$WORK/recv" "$WORK"/spool*
}

# ---------------------------------------------------------------- the runs
echo "row,repeat,t_s,spool_bytes,recv_root_bytes,dest_bytes" >"$TS"
: >"$RAW"
START=$(date +%s)
i=0
for row in $ROWS; do
    i=$((i + 1))
    for rep in $(seq "$REPEATS"); do
        log "row $i/$n_rows: ${LABEL[$row]} (#$rep)"
        run_row "$row" "$rep"
    done
    awk -v l="$(load1)" -v n="$(nproc)" 'BEGIN { exit !(l > n + 1) }' &&
        log "WARNING: load average $(load1) on $(nproc) cores: something else is running"
done
log "runs done in $(($(date +%s) - START)) s"
fsp_cross_stop

# ---------------------------------------------------------------- table and plots
MACHINE="$(nproc) cores, $(lscpu | grep 'Model name' | sed 's/Model name: *//;s/  */ /g'), kernel $(uname -r)"
python3 - "$RAW" "$BASE.csv" "$CMDLINE" "$DATE" "$MACHINE" "$LOAD" "$SIZE" \
    "$(for r in $ROWS; do echo "$r=${PAPER_SEND[$r]:-n/a}=${PAPER_TOTAL[$r]:-n/a}"; done)" \
    "$FSP_CROSS_RATE" "$FSP_QUEUE_MS" "$FSP_SW3_LOCAL" "$([[ -f $BASE-check.txt ]] && cat "$BASE-check.txt")" >"$BASE.md" <<'PY'
import csv, json, statistics as st, sys
raw, out, cmdline, date, machine, load, size, paper, cross, queue_ms, local, check = sys.argv[1:]
paper = {l.split("=")[0]: l.split("=")[1:] for l in paper.splitlines() if l}
runs = [json.loads(l) for l in open(raw) if l.strip()]
def get(r, k):
    return (r.get("push") or {}).get(k)
with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["date", "row", "label", "repeat", "status", "relays", "direct", "overlap", "size", "seconds",
                "send_seconds", "goodput_bps", "send_goodput_bps", "send_max_bps", "total_max_bps", "verified",
                "legs"])
    for r in runs:
        legs = ";".join(f'{l.get("name")}={l.get("bytes")}B/{l.get("goodput_bps")}bps/{l.get("retransmitted")}retx'
                        for l in get(r, "legs") or [])
        w.writerow([date, r["row"], r["label"], r["repeat"], r["status"], " ".join(map(str, r["relays"])),
                    int(r["direct"]), int(r["overlap"]), r["size"], get(r, "seconds"), get(r, "send_seconds"),
                    get(r, "goodput_bps"), get(r, "send_goodput_bps"), r["send_max_bps"], r["total_max_bps"],
                    get(r, "verified"), legs])
order = []
for r in runs:
    if r["row"] not in order:
        order.append(r["row"])
def med(rs, k):
    v = [get(r, k) for r in rs if r["status"] == "ok" and isinstance(get(r, k), (int, float))]
    return st.median(v) if v else None
def mbit(v):
    return "–" if v is None else f"{v / 1e6:.2f}"
def pct(v, m):
    return "–" if v is None or not m else f"{100 * v / m:.1f}%"
n_rep = max((r["repeat"] for r in runs), default=1)
print(f"Generated by `{cmdline}` on {date}.\n")
print(f"Machine: {machine}; load average at the start {load}. Test bed: benches/lib/fsp-topology.sh (server 1 Gbit/s; "
      f"client and relays 100 Mbit/s; client and relay 3 behind one 100 Mbit/s uplink"
      f"{' (relay 3 -> client switched locally)' if local == '1' else ' (relay 3 -> client goes up it and back down)'}; "
      f"{cross} of iperf3 UDP each way on relay 4; htb both directions, {queue_ms} ms drop-tail queues; no delay, no loss). "
      f"File: {size} of random bytes. mover push --policy fair --net udp, aes256gcm (default). "
      f"{'Medians of ' + str(n_rep) + ' runs.' if n_rep > 1 else 'One run per row.'}\n")
print("| configuration | mover send Mbit/s | paper send | send max | mover send / max | mover total Mbit/s | paper total | total max | mover total / max | runs ok |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for row in order:
    rs = [r for r in runs if r["row"] == row]
    ok = sum(r["status"] == "ok" for r in rs)
    s, t = med(rs, "send_goodput_bps"), med(rs, "goodput_bps")
    smax, tmax = rs[0]["send_max_bps"], rs[0]["total_max_bps"]
    ps, pt = paper.get(row, ["n/a", "n/a"])
    print(f"| {rs[0]['label']} | {mbit(s)} | {ps} | {smax / 1e6:.0f} | {pct(s, smax)} | {mbit(t)} | {pt} | "
          f"{tmax / 1e6:.0f} | {pct(t, tmax)} | {ok}/{len(rs)} |")
print()
print("Send: file bytes x 8 / send_seconds (until every block is held by a relay or the receiver); total: / seconds "
      "(until the receiver verified the file). Maxima are link rates (Ethernet frames): relays 1, 2: 100 each; relay 4: "
      "100 less its cross traffic; relay 3 and the direct leg share the client's uplink (100, counted once); capped by "
      "the server's 1000; total: the client's 100. A 1500-byte frame carries at most ~93% file data. The paper "
      "(JDIM 7(2) 2009) reached 91.6% of its theoretical striping maximum for send goodput, and 86.38 Mbit/s total "
      "with overlapping against 86.14 for the direct transfer; its other per-row values were not at hand (n/a).\n")
print("Legs (first run of each row): bytes carried, goodput, retransmitted; wire rates on the shapers (Mbit/s over the push):\n")
for row in order:
    r = next(r for r in runs if r["row"] == row)
    legs = ", ".join(f'{l.get("name")} {(l.get("bytes") or 0) / 2**20:.0f} MiB at {mbit(l.get("goodput_bps"))} '
                     f'({l.get("retransmitted")} retx)' for l in get(r, "legs") or []) or "no legs in the JSON"
    lk = r.get("links", {})
    wire = ", ".join(f"{k} {lk[k]['mbit_s']:.0f}" + (f" ({lk[k]['drops']} drops)" if lk[k]["drops"] else "")
                     for k in ("fspsrv:eth0", "fsphub:r1", "fsphub:r2", "fsphub:r4", "fsphub:sw3", "fspsw3:uplink")
                     if k in lk)
    print(f"- {r['label']}: {r['status']}; {legs}; wire: {wire}")
if check.strip():
    print("\nTest bed check (iperf3 TCP, Mbit/s, cross traffic running; [expected]):\n")
    print("```")
    print(check.strip())
    print("```")
PY
python3 "$HERE/plot-fsp.py" "$TS" --runs "$RAW" --out "$BASE" >>"$BASE.md" || log "plot-fsp.py failed (the CSVs are complete)"
cat "$BASE.md"
log "table: $BASE.md; runs: $BASE.csv, $RAW; samples: $TS; plots: $BASE-*.svg"
