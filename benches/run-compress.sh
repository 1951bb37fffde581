#!/usr/bin/env bash
# Per-block compression (issue 20): mover push goodput and the CPU each side spends per GiB, per --compress
# mode (none, zstd:1, zstd:3, auto), for FASTQ-like text and for random bytes, through a 200 Mbit/s and a
# 1 Gbit/s bottleneck and over a clean veth, and the issue's aims met or missed.
#
# Usage (root; NOT part of CI; ~15 min with the defaults on 2 cores, most of it the 200 Mbit/s rows):
#   sudo benches/run-compress.sh                                  # full run: SIZE=512M, REPEATS=2, every cell
#   sudo SMOKE=1 benches/run-compress.sh                          # plumbing smoke run: SIZE=64M, REPEATS=1
#   sudo PATHS=200M DATASETS=text MODES="none auto" benches/run-compress.sh   # one aim only
# Not root: prints why and exits 0 (skipped).
#
# Environment (defaults in brackets):
#   MOVER [target/release/mover]  built with `cargo build --release -p mover`; copied into the work dir at the
#                        start (a rebuild during the run changes nothing)
#   SIZE [512M; 64M with SMOKE=1]  bytes of each data set (IEC: 1G = 1 GiB), one file each, made once per run
#   REPEATS [2; 1 with SMOKE=1]    runs per (path, data set, mode)
#   PATHS ["200M 1G clean"]  a rate (SI: 200M = 200 Mbit/s) is a tbf bottleneck, "clean" is the bare veth
#   DATASETS ["text random"] text: benches/lib/fastq.py SIZE SEED (whole-file zstd -1 ~4.2x; see its
#                        docstring); random: head -c SIZE /dev/urandom
#   MODES ["none zstd:1 zstd:3 auto"]  values of push --compress
#   CHECK [1]            cmp the first received copy of each (data set, mode) with its source, byte for byte
#   SEED [1]             of the text; OFFLOADS [off] ("defaults" keeps the veth's own offloads)
#   PUSH_TIMEOUT [SIZE at 50 Mbit/s + 60 s]; MOVER_PUSH_ARGS, MOVER_SERVE_ARGS: extra arguments (words)
#   RESULTS_DIR [benches/results]
#
# What it does, so the numbers can be judged:
# - Two network namespaces, mvcz-<pid>-s (sender) and mvcz-<pid>-r (receiver), joined by one veth pair (mvcz0
#   at both ends), MTU 1500, 10.77.202.1 and .2/24 on that link only; offloads off (tso gso gro
#   tx-udp-segmentation), so datagrams cross at the MTU as on a wire (MACHINE-NOTES: benchmark UDP so).
# - Bottleneck: `tc qdisc replace dev mvcz0 root tbf rate RATE burst B latency 20ms` on the sender's end, B =
#   2 ms at the rate, at least 64 KiB (200 Mbit/s: 65536 B; 1 Gbit/s: 250000 B); "clean": no qdisc. tbf on
#   the sender's own interface acts like a slower NIC (the sender is held back: no queue in the middle, no
#   loss; MACHINE-NOTES), which is what a compressor competes with. Only sender -> receiver is shaped.
# - Per run: `mover serve --once --insecure-no-auth --listen 10.77.202.2:7420 --root R` in the receiver's
#   namespace and `mover push --insecure-no-auth --net udp --json --compress MODE SRC mover://10.77.202.2:7420/dest`
#   in the sender's, each under GNU time (`/usr/bin/time -f '%U %S'`: user + sys CPU seconds, reported per GiB
#   of file bytes). Sources and R are on /dev/shm (no disk measured); the received file is deleted after each
#   run. goodput_bps, seconds, wire_bytes and compression_ratio are read from push's JSON (a missing key gives
#   an empty field); a run is ok when push and serve exit 0, the JSON says verified: true, the received size is
#   right and (CHECK=1, the first run of each data set and mode) cmp finds the copy equal to the source.
# - Order: for each repeat, for each path, for each data set, for each mode: drift of the shared machine hits
#   all modes alike. Medians of the ok runs per cell; "/ none" is the ratio of the median goodputs of a mode and
#   of `none` on the same path and data set in this run.
# - Aims (issue 20): (a) text through 200M: auto / none >= 2.5; (b) random on every path: auto / none >= 0.95;
#   (c) clean veth, each data set: auto / none >= 0.95.
#
# Needs (Debian/Ubuntu packages; the script installs nothing): iproute2 ethtool python3 coreutils diffutils
# time (GNU time at /usr/bin/time).
#
# Output: benches/results/compress-<UTC date-time>.csv (one line per run; date is the run's start, UTC) and
# compress-<same>.md (the table and the aims, also printed). An EXIT trap (also on Ctrl-C and errors) kills
# what runs in the namespaces, deletes them and the work dir (the data sets, the receiver's root, the binary's
# copy). benches/RESULTS.md is not touched.
set -Eeuo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# log die bytes_of jget median wait_for wait_pid delete_netns
# shellcheck source-path=SCRIPTDIR source=lib/netns.sh
. "$HERE/lib/netns.sh"

if [[ $(id -u) != 0 ]]; then
    log "SKIP: benches/run-compress.sh needs root (network namespaces, veth, tc): run it with sudo"
    exit 0
fi

SMOKE=${SMOKE:-0}
if [[ $SMOKE == 1 ]]; then
    SIZE=${SIZE:-64M}
    REPEATS=${REPEATS:-1}
fi
MOVER=${MOVER:-target/release/mover}
SIZE=${SIZE:-512M}
REPEATS=${REPEATS:-2}
PATHS=${PATHS:-200M 1G clean}
DATASETS=${DATASETS:-text random}
MODES=${MODES:-none zstd:1 zstd:3 auto}
CHECK=${CHECK:-1}
SEED=${SEED:-1}
OFFLOADS=${OFFLOADS:-off}
MOVER_PUSH_ARGS=${MOVER_PUSH_ARGS:-}
MOVER_SERVE_ARGS=${MOVER_SERVE_ARGS:-}
RESULTS_DIR=${RESULTS_DIR:-$HERE/results}
NS_S="mvcz-$$-s"
NS_R="mvcz-$$-r"
VETH=mvcz0
IP_S=10.77.202.1
IP_R=10.77.202.2
PORT=7420

for t in ip tc ethtool python3 numfmt timeout cmp head awk; do
    command -v "$t" >/dev/null || die "missing $t (see the package list in the header)"
done
[[ -x /usr/bin/time ]] || die "missing GNU time at /usr/bin/time (package time)"
[[ $MOVER == /* || -x $MOVER || ! -x $REPO/$MOVER ]] || MOVER=$REPO/$MOVER
[[ -x $MOVER ]] || die "no mover binary at $MOVER (build it: cargo build --release -p mover; or set MOVER)"
PUSH_HELP=$("$MOVER" push --help 2>&1 || true)
[[ $PUSH_HELP == *--compress* ]] ||
    die "$MOVER push has no --compress (issue 20): rebuild it (cargo build --release -p mover) or set MOVER"
for p in $PATHS; do
    [[ $p == clean ]] || numfmt --from=si "$p" >/dev/null 2>&1 || die "path \"$p\" in PATHS: a rate (200M, 1G) or clean"
done
for d in $DATASETS; do
    [[ $d == text || $d == random ]] || die "data set \"$d\" in DATASETS: text or random"
done
[[ $REPEATS =~ ^[1-9][0-9]*$ ]] || die "REPEATS=$REPEATS: a positive integer"

FILE_BYTES=$(bytes_of "$SIZE")
GIB=$(awk -v n="$FILE_BYTES" 'BEGIN { print n / 1073741824 }')
PUSH_TIMEOUT=${PUSH_TIMEOUT:-$(awk -v b="$FILE_BYTES" 'BEGIN { printf "%d", b * 8 / 50e6 + 60 }')}
n_sets=$(wc -w <<<"$DATASETS")
shm_free=$(df --output=avail -B1 /dev/shm | tail -1)
((shm_free > (n_sets + 1) * FILE_BYTES + (256 << 20))) ||
    die "/dev/shm has $((shm_free >> 20)) MiB free: needs $(((n_sets + 1) * FILE_BYTES >> 20)) MiB + 256 (the data sets and one received copy)"

DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
STAMP=$(date -u +%Y-%m-%d-%H%M)
mkdir -p "$RESULTS_DIR"
CSV=$RESULTS_DIR/compress-$STAMP.csv
MD=$RESULTS_DIR/compress-$STAMP.md
CMDLINE="SIZE=$SIZE REPEATS=$REPEATS PATHS=\"$PATHS\" DATASETS=\"$DATASETS\" MODES=\"$MODES\""
[[ $SMOKE != 1 ]] || CMDLINE="SMOKE=1 $CMDLINE"
[[ $CHECK == 1 ]] || CMDLINE+=" CHECK=$CHECK"
[[ $SEED == 1 ]] || CMDLINE+=" SEED=$SEED"
[[ $OFFLOADS == off ]] || CMDLINE+=" OFFLOADS=$OFFLOADS"
[[ -z $MOVER_PUSH_ARGS ]] || CMDLINE+=" MOVER_PUSH_ARGS=\"$MOVER_PUSH_ARGS\""
[[ -z $MOVER_SERVE_ARGS ]] || CMDLINE+=" MOVER_SERVE_ARGS=\"$MOVER_SERVE_ARGS\""
CMDLINE+=" benches/run-compress.sh"

WORK=
SERVE_PID=
cleanup() {
    set +e
    trap - EXIT INT TERM ERR
    [[ -n $SERVE_PID ]] && kill -9 "$SERVE_PID" 2>/dev/null
    delete_netns "$NS_S" "$NS_R"
    [[ -n $WORK ]] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'rc=$?; if [[ $BASHPID == "$$" ]]; then log "FATAL: line $LINENO: \"$BASH_COMMAND\" returned $rc"; fi' ERR

WORK=$(mktemp -d /dev/shm/mover-compress.XXXXXX)
RECV=$WORK/recv
load1() { cut -d' ' -f1 /proc/loadavg; }
# The GNU time line "USER SYS" (the last line: a failed command adds "Command exited with non-zero status N"
# before it) as user + sys seconds; 0 when there is none.
cpu_s() { { tail -1 "$1" 2>/dev/null || true; } | awk '{ if (NF == 2) printf "%.2f", $1 + $2; else printf "0.00" }'; }
per_gib() { awk -v c="$1" -v g="$GIB" 'BEGIN { printf "%.3f", c / g }'; }
# kill -9 whatever still runs in the namespaces (after a timeout: GNU time is killed, mover is orphaned).
kill_ns_procs() {
    local ns pid
    for ns in "$NS_S" "$NS_R"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    done
}

# ---------------------------------------------------------------- plan
n_paths=$(wc -w <<<"$PATHS")
n_modes=$(wc -w <<<"$MODES")
N_RUNS=$((REPEATS * n_paths * n_sets * n_modes))
est=$(for p in $PATHS; do
    r=2e9; [[ $p == clean ]] || r=$(numfmt --from=si "$p")
    echo "$r"
done | awk -v b="$FILE_BYTES" -v k="$((REPEATS * n_sets * n_modes))" \
    '{ r = $1 > 2e9 ? 2e9 : $1; s += k * (b * 8 / r + 3) } END { printf "%d", s + 10 * NR + 30 }')
log "plan: $N_RUNS runs: paths [$PATHS] x data sets [$DATASETS] x modes [$MODES] x $REPEATS, $SIZE each; mover $MOVER"
log "estimated run time: ~$(((est + 59) / 60)) min (ETA $(date -d "@$(($(date +%s) + est))" +%H:%M))"
LOAD=$(load1)
if awk -v l="$LOAD" 'BEGIN { exit !(l > 0.5) }'; then
    log "WARNING: load average $LOAD at the start: the numbers will be low"
fi

cp "$MOVER" "$WORK/mover"
MOVER_BIN=$WORK/mover
MOVER_VERSION=$("$MOVER_BIN" --version 2>/dev/null | head -1 || echo "mover (version unknown)")

# ---------------------------------------------------------------- data sets
mkdir -p "$WORK/data"
declare -A SRC=()
for d in $DATASETS; do
    case $d in
        text)
            SRC[$d]=$WORK/data/text.fastq
            log "creating ${SRC[$d]} ($SIZE, benches/lib/fastq.py, seed $SEED)"
            python3 "$HERE/lib/fastq.py" "$FILE_BYTES" "$SEED" >"${SRC[$d]}"
            ;;
        random)
            SRC[$d]=$WORK/data/random.bin
            log "creating ${SRC[$d]} ($SIZE from /dev/urandom)"
            head -c "$FILE_BYTES" /dev/urandom >"${SRC[$d]}"
            ;;
    esac
    [[ $(stat -c %s "${SRC[$d]}") == "$FILE_BYTES" ]] || die "could not create ${SRC[$d]}"
done

# ---------------------------------------------------------------- namespaces
log "namespaces $NS_S and $NS_R, veth $VETH, MTU 1500, offloads $OFFLOADS"
ip netns add "$NS_S"
ip netns add "$NS_R"
ip link add "$VETH" netns "$NS_S" type veth peer name "$VETH" netns "$NS_R"
for ns in "$NS_S" "$NS_R"; do
    ip=$IP_S; [[ $ns == "$NS_R" ]] && ip=$IP_R
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip link set "$VETH" mtu 1500
    ip netns exec "$ns" ip addr add "$ip/24" dev "$VETH"
    ip netns exec "$ns" ip link set "$VETH" up
    if [[ $OFFLOADS == off ]]; then
        ip netns exec "$ns" ethtool -K "$VETH" tso off gso off gro off tx-udp-segmentation off >/dev/null 2>&1 ||
            die "ethtool -K on $VETH failed"
    fi
done

# set_path PATH: the sender's qdisc for it.
set_path() {
    ip netns exec "$NS_S" tc qdisc del dev "$VETH" root 2>/dev/null || true
    [[ $1 == clean ]] && return 0
    local rate burst
    rate=$(numfmt --from=si "$1")
    burst=$(awk -v r="$rate" 'BEGIN { b = r * 0.002 / 8; printf "%d", b < 65536 ? 65536 : b }')
    ip netns exec "$NS_S" tc qdisc add dev "$VETH" root tbf rate "${rate}bit" burst "$burst" latency 20ms ||
        die "tc qdisc add dev $VETH root tbf rate ${rate}bit burst $burst latency 20ms failed"
}

# ---------------------------------------------------------------- one run
declare -A CMP_DONE=()
RUN=0
echo "date,path,dataset,mode,repeat,seconds,goodput_bps,wire_bytes,compression_ratio,snd_cpu_s,rcv_cpu_s,snd_cpu_s_per_gib,rcv_cpu_s_per_gib,ok" >"$CSV"

push_once() { # PATH DATASET MODE REPEAT: one push, one CSV row
    local path=$1 ds=$2 mode=$3 rep=$4 rc=0 src=0 ok=1 started src_file=${SRC[$2]} got checked=""
    RUN=$((RUN + 1))
    rm -rf "$RECV"; mkdir -p "$RECV"
    : >"$WORK/serve.log"; rm -f "$WORK/serve.time" "$WORK/push.time"
    started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    # shellcheck disable=SC2086 # extra arguments are words
    ip netns exec "$NS_R" /usr/bin/time -f '%U %S' -o "$WORK/serve.time" \
        "$MOVER_BIN" serve --once --insecure-no-auth --listen "$IP_R:$PORT" --root "$RECV" $MOVER_SERVE_ARGS \
        2>"$WORK/serve.log" &
    SERVE_PID=$!
    wait_for "$WORK/serve.log" "listening on" || die "mover serve did not start: $(cat "$WORK/serve.log")"
    # shellcheck disable=SC2086 # extra arguments are words
    timeout -k 5 "$PUSH_TIMEOUT" ip netns exec "$NS_S" /usr/bin/time -f '%U %S' -o "$WORK/push.time" \
        "$MOVER_BIN" push --insecure-no-auth --net udp --json --compress "$mode" $MOVER_PUSH_ARGS \
        "$src_file" "mover://$IP_R:$PORT/dest" >"$WORK/push.json" 2>"$WORK/push.err" || rc=$?
    wait_pid "$SERVE_PID" 30 || src=$?
    SERVE_PID=
    kill_ns_procs
    got=$(stat -c %s "$RECV/dest/$(basename "$src_file")" 2>/dev/null || echo missing)
    [[ $rc == 0 && $src == 0 && $(jget "$WORK/push.json" verified) == true && $got == "$FILE_BYTES" ]] || ok=0
    if [[ $ok == 1 && $CHECK == 1 && -z ${CMP_DONE[$ds/$mode]:-} ]]; then
        CMP_DONE[$ds/$mode]=1
        if cmp -s "$src_file" "$RECV/dest/$(basename "$src_file")"; then checked=", cmp equal"; else
            ok=0; checked=", cmp DIFFERS"
        fi
    fi
    local scpu rcpu gp secs wire ratio
    scpu=$(cpu_s "$WORK/push.time")
    rcpu=$(cpu_s "$WORK/serve.time")
    gp=$(jget "$WORK/push.json" goodput_bps)
    secs=$(jget "$WORK/push.json" seconds)
    wire=$(jget "$WORK/push.json" wire_bytes)
    ratio=$(jget "$WORK/push.json" compression_ratio)
    echo "$started,$path,$ds,$mode,$rep,$secs,$gp,$wire,$ratio,$scpu,$rcpu,$(per_gib "$scpu"),$(per_gib "$rcpu"),$ok" >>"$CSV"
    log "  [$RUN/$N_RUNS] $path $ds $mode #$rep: $(awk -v g="${gp:-0}" 'BEGIN { printf "%.1f Mbit/s", g / 1e6 }'), ratio ${ratio:-?}, wire ${wire:-?} B, cpu snd $scpu s rcv $rcpu s, ok=$ok$checked"
    if [[ $ok != 1 ]]; then log "  failed (push exit $rc, serve exit $src, received size $got): $(tail -2 "$WORK/push.err" | tr '\n' ' ') / serve: $(tail -2 "$WORK/serve.log" | tr '\n' ' ')"; fi
    rm -rf "$RECV"
}

# ---------------------------------------------------------------- the runs
START=$(date +%s)
for rep in $(seq "$REPEATS"); do
    for path in $PATHS; do
        set_path "$path"
        for ds in $DATASETS; do
            # The modes' order turns by one each repeat, so no mode always runs first or after the same one
            # (the clean veth drifts by 10-20% between neighbouring runs).
            read -r -a order <<<"$MODES"
            k=$(( (rep - 1) % ${#order[@]} ))
            for mode in "${order[@]:k}" "${order[@]:0:k}"; do
                push_once "$path" "$ds" "$mode" "$rep"
            done
        done
        if awk -v l="$(load1)" -v n="$(nproc)" 'BEGIN { exit !(l > n + 1) }'; then
            log "WARNING: load average $(load1) on $(nproc) cores: something else is running"
        fi
    done
done
set_path clean
log "runs done in $(($(date +%s) - START)) s"

# ---------------------------------------------------------------- table and aims
MACHINE="$(nproc) cores, $(lscpu | grep 'Model name' | sed 's/Model name: *//;s/  */ /g'), kernel $(uname -r)"
python3 - "$CSV" "$CMDLINE" "$DATE" "$MACHINE" "$LOAD" "$(load1)" "$SIZE" "$PATHS" "$DATASETS" "$MODES" \
    "$MOVER_VERSION" "$OFFLOADS" "$REPEATS" "$MOVER_PUSH_ARGS" "$MOVER_SERVE_ARGS" "${CSV#"$REPO"/}" >"$MD" <<'PY'
import csv, statistics as st, sys
(path_csv, cmdline, date, machine, load0, load1, size, paths, datasets, modes, version, offloads, repeats,
 push_args, serve_args, csv_shown) = sys.argv[1:]
paths, datasets, modes = paths.split(), datasets.split(), modes.split()
rows = list(csv.DictReader(open(path_csv)))
ok = [r for r in rows if r["ok"] == "1"]


def med(path, ds, mode, key):
    v = []
    for r in ok:
        if (r["path"], r["dataset"], r["mode"]) == (path, ds, mode) and r[key] != "":
            try:
                v.append(float(r[key]))
            except ValueError:
                pass
    return st.median(v) if v else None


def fmt(v, d=2):
    return "–" if v is None else f"{v:.{d}f}"


def ratio(path, ds, mode="auto"):
    if mode not in modes or "none" not in modes:
        return None
    a, n = med(path, ds, mode, "goodput_bps"), med(path, ds, "none", "goodput_bps")
    return a / n if a is not None and n else None


def path_label(p):
    return "clean veth" if p == "clean" else f"tbf {p}bit/s"


print("## Per-block compression (issue 20): goodput and CPU per --compress mode\n")
print(f"Generated by `{cmdline}` on {date}.\n")
print(f"Machine: {machine}; load average {load0} at the start, {load1} at the end. {version}.")
print(f"Path: two network namespaces joined by one veth pair, MTU 1500, offloads {offloads}; the bottlenecks are "
      "`tc qdisc add dev mvcz0 root tbf rate RATE burst max(2 ms at RATE, 64 KiB) latency 20ms` on the sender's "
      "end (a slower NIC: no queue in the middle, no loss); clean: no qdisc. "
      f"Data sets: {size} each, on /dev/shm; text = benches/lib/fastq.py (FASTQ-like, whole-file zstd -1 ~4.2x), "
      "random = /dev/urandom. The receiver writes to /dev/shm. "
      f"`mover push --insecure-no-auth --net udp --json --compress MODE{(' ' + push_args) if push_args else ''}`, "
      f"`mover serve --once --insecure-no-auth{(' ' + serve_args) if serve_args else ''}`; CPU = user + sys of "
      f"each process (GNU time) per GiB of file bytes. Medians of the ok runs of {repeats} per cell; runs "
      "interleaved (repeat, path, data set, mode; the modes' order turned by one each repeat); \"/ none\": median goodput over that of `none` on the same "
      "path and data set, this run.\n")
print("| path | data set | mode | goodput Mbit/s | / none | compression ratio | sender CPU s/GiB | "
      "receiver CPU s/GiB | ok runs |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|")
for p in paths:
    for d in datasets:
        for m in modes:
            gp = med(p, d, m, "goodput_bps")
            n_all = sum(1 for r in rows if (r["path"], r["dataset"], r["mode"]) == (p, d, m))
            n_ok = sum(1 for r in ok if (r["path"], r["dataset"], r["mode"]) == (p, d, m))
            print(f"| {p} | {d} | {m} | {fmt(None if gp is None else gp / 1e6, 1)} | {fmt(ratio(p, d, m))} | "
                  f"{fmt(med(p, d, m, 'compression_ratio'))} | {fmt(med(p, d, m, 'snd_cpu_s_per_gib'))} | "
                  f"{fmt(med(p, d, m, 'rcv_cpu_s_per_gib'))} | {n_ok}/{n_all} |")


def verdict(cells, aim):
    """cells: [(label, ratio or None)]: met when every cell was measured and reaches the aim."""
    measured = [(l, v) for l, v in cells if v is not None]
    text = ", ".join(f"{fmt(v)} ({l})" if l else fmt(v) for l, v in measured) or "–"
    if not cells or len(measured) < len(cells):
        gone = [l or "the cell" for l, v in cells if v is None]
        return text, "not measured" + (f" ({', '.join(gone)})" if gone else "")
    low = [l or "the cell" for l, v in measured if v < aim]
    return text, "**met**" if not low else "**missed**" + (f" ({', '.join(low)})" if len(measured) > 1 else "")


print("\nAims of issue 20 (ratios of median goodputs, auto over none, same path and data set, this run):\n")
cells_a = [("", ratio("200M", "text"))] if "200M" in paths and "text" in datasets else []
cells_b = [(path_label(p), ratio(p, "random")) for p in paths] if "random" in datasets else []
cells_c = [(d, ratio("clean", d)) for d in datasets] if "clean" in paths else []
for tag, what, cells, aim in [
        ("a", "text through 200M", cells_a, 2.5),
        ("b", "random on every path", cells_b, 0.95),
        ("c", "clean veth, each data set", cells_c, 0.95)]:
    if not cells:
        print(f"- ({tag}) {what}: auto / none >= {aim}: not measured (not in PATHS/DATASETS of this run)")
        continue
    text, v = verdict(cells, aim)
    print(f"- ({tag}) {what}: auto / none = {text} (aim >= {aim}{' each' if len(cells) > 1 else ''}): {v}")
bad = len(rows) - len(ok)
print(f"\n{len(ok)} ok runs of {len(rows)}{'; failed: ' + str(bad) if bad else ''}. "
      f"Raw rows: `{csv_shown}`.")
PY
log "results: $CSV and $MD"
cat "$MD"
