#!/usr/bin/env bash
# Long-fat-network benchmark: mover push (--policy fair) against iperf3 TCP (cubic, bbr), scp and rsync over a
# real OpenSSH sshd, and the raw UDP ceiling (mover bench net), through a WAN emulator (mover-wanem) that adds
# delay, random loss and a 1 Gbit/s drop-tail bottleneck; plus fairness runs of mover next to one TCP flow.
#
# Usage (root; NOT part of CI):
#   sudo benches/run-wan.sh                                   # the default grid: ~35 min on 2 cores
#   WANEM=bridge RTTS="0 20" LOSSES="0 1" REPEATS=1 SIZE=128M RATE_HIGH= benches/run-wan.sh    # plumbing smoke run
#   WANEM=/path/to/mover-wanem RTTS=20 LOSSES=1 REPEATS=1 RATE_HIGH= FAIR=0 benches/run-wan.sh  # one real point
#   MOVER_RATE_TRACE=1   every push prints its rate controller's rounds; kept as <base>-trace-*.log
#   DRY_RUN=1 benches/run-wan.sh                              # only the plan and the run time estimate
# The estimate printed at the start (2084 s for the defaults) models each measurement: mover's SIZE at the
# bottleneck plus 1.2 s and 8 RTTs; iperf3 TIME_LIMIT plus 0.6 s and 4 RTTs; scp/rsync TIME_LIMIT (less on a
# clean short path, where the file ends first) plus 0.8 s and 12 RTTs of ssh handshake; 0.15 s to restart the
# emulator. It was within ~5% of smoke runs through mover-wanem; progress lines with an ETA follow each point.
#
# Environment (defaults in brackets):
#   RATE [1G]            bottleneck, bits/s of Ethernet frames per direction (mover-wanem --rate), SI suffixes
#   RTTS ["0 20 100 200"] round-trip times in ms (mover-wanem --delay is half of it, each way)
#   LOSSES ["0 0.1 1 3"] random loss in %, data direction only (mover-wanem --loss)
#   RATE_HIGH [1500M], RTTS_HIGH ["0 100"], LOSSES_HIGH ["0 1"]: a second, short grid at a higher rate;
#                        RATE_HIGH= (empty) skips it
#   REPEATS [3]          runs per point and tool; the CSV and table give medians (and min/max)
#   SIZE [512M]          file size for mover push (IEC: 512M = 512 MiB, ~4.3 s at 1 Gbit/s); scp and rsync copy
#                        the same file until TIME_LIMIT
#   TIME_LIMIT [5]       seconds of transfer per TCP measurement: iperf3 -t; scp/rsync are stopped this long
#                        after their first byte arrived (the ssh handshake is not counted). 5, not more, so the
#                        default run stays within ~35 min
#   MOVER_TIMEOUT [3 x SIZE at RATE + 5 s] a push still running then is stopped; its row counts the bytes that
#                        had arrived (status "timeout")
#   TOOLS ["mover iperf3-cubic iperf3-bbr scp rsync"]  subset for quick runs; BLAST [1]: mover bench net at
#                        RTT 0 / loss 0 of each grid (0 skips it); BLAST_RATE [RATE]: its offered rate in UDP
#                        payload bits/s ("max": unpaced); at RATE the 1514-byte frames overdrive the
#                        bottleneck by 2.9%, enough to fill it without starving the 2 cores
#   GRID [1]             the RTT x loss grids (0 skips both: only the fairness runs)
#   FAIR [1]             fairness runs (0 skips); FAIR_RATE [RATE], FAIR_RTT [40], FAIR_LOSS [0], FAIR_CCS
#                        ["cubic bbr"], FAIR_POLICIES ["fair low"], FAIR_REPEATS [1], FAIR_LEAD [4],
#                        FAIR_OVERLAP [10], FAIR_TAIL [4], FAIR_SETTLE [2] (seconds; see below)
#   WANEM                mover-wanem binary; unset: `cargo build --release -p mover-wanem` in this repo;
#                        "bridge": no emulator, a Linux bridge in the middle namespace (RTT ~0, no loss, no
#                        rate limit: RTT/loss/rate columns are then only labels; a plumbing smoke mode and a
#                        "no emulator" baseline); WANEM_ARGS: extra mover-wanem arguments (e.g. --queue 4MB)
#   MOVER                mover binary (default: cargo build --release -p mover); MOVER_NET [auto]: push/serve
#                        --net; MOVER_CEILING: push --rate with --policy fair/low (a ceiling; default: none);
#                        MOVER_PUSH_ARGS: extra push arguments, also the stand-in while the build has no
#                        --policy (then the default is --rate 95% of the bottleneck, and rows say "fixed")
#   TCP_BUF [64M]        tcp_rmem/tcp_wmem maximum in the end namespaces (1 Gbit/s x 200 ms = 25 MB)
#   MTU [1500]           MTU of all four veths (the path's MTU): 9000 is a research WAN's jumbo path, where
#                        mover's default flags discover 8972-byte datagrams and TCP's MSS grows alike
#   WORKDIR_BASE [/tmp]  where the work dir (files, receivers' destinations) goes; RESULTS_DIR [benches/results]
#   CARGO_TARGET_DIR     used for the builds (default: the repo's target/)
#   MOVER_RATE_TRACE=1   every push prints its rate controller's rounds; kept as <base>-trace-*.log
#   DRY_RUN=1            print the plan and the run time estimate, then exit (builds the binaries first)
#
# Needs (Debian/Ubuntu packages; the script installs nothing): iproute2 ethtool iperf3 openssh-server
#   openssh-client rsync iputils-ping util-linux coreutils findutils openssl python3; python3-matplotlib for the
#   plots (without it the CSV and the table are still written).
#
# What it does, so the numbers can be judged:
# - Three namespaces, mvw-<pid>-s (sender), -m (middle), -r (receiver); veth pairs wan0(s) <-> wan-a(m) and
#   wan-b(m) <-> wan0(r). Addresses only 10.81.0.1/24 (s) and 10.81.0.2/24 (r); none in the middle; IPv6 off
#   in all three (no ND/MLD chatter); every tool talks only between those two addresses. mover-wanem forwards
#   frames between wan-a (--a, sender side) and wan-b (--b). An EXIT trap (also on Ctrl-C and errors) kills
#   every process it started and deletes the namespaces (and with them the veths) and the work dir.
# - Offloads off on all four veths (`ethtool -K tso gso gro tx tx-udp-segmentation off`): the emulator sees
#   MTU-sized frames with finished checksums, and one lost "packet" is never a 64 KB burst (MACHINE-NOTES.md).
# - The emulator is restarted for every measurement (seed = repeat number), so each tool starts with an empty
#   queue, and its stats (frames in, random/burst losses, queue drops in the data direction) are per row.
#   The queue is mover-wanem's default (max(2 x delay, 10 ms) at the rate: one BDP) unless WANEM_ARGS says
#   otherwise. Frames the emulator itself could not handle (its pool, socket or send drops: an overloaded
#   machine) are counted per row (emu_overload) and flagged in the CSV's note column.
# - TCP: tcp_rmem/tcp_wmem max raised to TCP_BUF in both end namespaces so iperf3 is not window-limited;
#   tcp_no_metrics_save=1 so no connection inherits the ssthresh of a lossy predecessor. `-C cubic` and
#   `-C bbr` are named explicitly (the kernel default is bbr); no fq qdisc exists here, BBR paces itself.
#   scp and rsync go through OpenSSH, whose channel window (2 MiB) caps them at ~2 MiB per RTT whatever TCP
#   does: that is part of what they are, not a set-up fault. Cipher aes128-gcm for both.
# - Goodput: mover push: its --json goodput_bps (file bytes x 8 / seconds from connect to the verified commit,
#   so the handshake and the verification round trip count against mover); iperf3: receiver's
#   sum_received bits_per_second over -t (connection set-up not counted); scp/rsync: bytes that arrived in the
#   destination directory (allocated blocks, polled every 0.1 s) from the first byte until TIME_LIMIT or the
#   end. Retransmissions: mover's packets_retransmitted / packets_sent; for TCP tools the sender namespace's
#   RetransSegs / OutSegs (/proc/net/snmp deltas). path_drop_pct: the emulator's count of frames it dropped
#   (random + burst + queue) over frames it got, data direction. rtt_seen_ms: ping through the emulator.
# - Raw UDP (mover bench net): at RTT 0 / loss 0 of each grid, through the emulator: the bottleneck's
#   ceiling for 1472-byte datagrams (1G x 1472/1514 = 972 Mbit/s of payload, 933 Mbit/s of mover file data).
# - Fairness (FAIR=1): on FAIR_RATE x FAIR_RTT x FAIR_LOSS. "fair" runs: iperf3 -C CC alone for FAIR_LEAD s,
#   then mover push --policy fair next to it for FAIR_OVERLAP s (then stopped), then TCP alone for FAIR_TAIL s.
#   "low" runs: mover push --policy low alone, TCP joins for FAIR_OVERLAP s, then mover alone again. Rates per
#   phase come from counters sampled every 0.25 s (TCP: bytes_acked of the iperf3 sockets, `ss -ti`, sender
#   side; mover: allocated bytes in the receiver's destination) and skip the first FAIR_SETTLE s of each
#   phase. The pushed "file" is a set of copies of the SIZE file, enough for the whole run at FAIR_RATE.
# - Files: one SIZE file of random bytes in the work dir (ext4 /tmp by default). mover reads it with O_DIRECT
#   (its default; ~1.5 GB/s here, far above any bottleneck), scp and rsync through the page cache; receivers
#   write to the work dir without fsync. mover runs with --net auto (AF_XDP on these veths where it works;
#   the raw CSV's net column says which path ran).
# - Both ends and the emulator share the 2 cores: the load average is checked at the start (and logged per
#   row); a busy machine makes every tool slower, mover and the emulator most (they are CPU-bound). Compare
#   tools within one run only.
# Caveats: WANEM=bridge rows carry the configured RTT/loss/rate as labels but nothing was emulated. A build of
# mover without --policy runs a fixed rate (95% of the bottleneck) and its rows say policy "fixed": such a run
# says nothing about the fair/low policies. Fairness runs are single runs by default (FAIR_REPEATS).
#
# Output: benches/results/wan-<date>.csv (medians per tool x point, fairness rows), wan-<date>-raw.csv (every
# run), wan-<date>-fairness-ts.csv (the sampled counters), wan-<date>.md (the table for benches/RESULTS.md,
# also printed) and the plots of benches/plot-wan.py (wan-<date>-*.png). In bridge mode the names end in
# "-bridge". benches/RESULTS.md itself is not touched.
set -Eeuo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# log die bytes_of now jget median wait_for wait_pid make_file delete_netns start_sshd wait_sshd
# shellcheck source=lib/netns.sh
. "$HERE/lib/netns.sh"

[[ $(id -u) == 0 ]] || die "needs root (network namespaces, veths, ethtool, sshd): run it with sudo"

RATE=${RATE:-1G}
RTTS=${RTTS:-0 20 100 200}
LOSSES=${LOSSES:-0 0.1 1 3}
RATE_HIGH=${RATE_HIGH-1500M}
RTTS_HIGH=${RTTS_HIGH:-0 100}
LOSSES_HIGH=${LOSSES_HIGH:-0 1}
REPEATS=${REPEATS:-3}
SIZE=${SIZE:-512M}
TIME_LIMIT=${TIME_LIMIT:-5}
TOOLS=${TOOLS:-mover iperf3-cubic iperf3-bbr scp rsync}
BLAST=${BLAST:-1}
BLAST_RATE=${BLAST_RATE:-}
FAIR=${FAIR:-1}
FAIR_RATE=${FAIR_RATE:-$RATE}
FAIR_RTT=${FAIR_RTT:-40}
FAIR_LOSS=${FAIR_LOSS:-0}
FAIR_CCS=${FAIR_CCS:-cubic bbr}
FAIR_POLICIES=${FAIR_POLICIES:-fair low}
FAIR_REPEATS=${FAIR_REPEATS:-1}
FAIR_LEAD=${FAIR_LEAD:-4}
FAIR_OVERLAP=${FAIR_OVERLAP:-10}
FAIR_TAIL=${FAIR_TAIL:-4}
FAIR_SETTLE=${FAIR_SETTLE:-2}
MOVER_NET=${MOVER_NET:-auto}
MOVER_CEILING=${MOVER_CEILING:-}
MOVER_PUSH_ARGS=${MOVER_PUSH_ARGS:-}
WANEM=${WANEM:-}
WANEM_ARGS=${WANEM_ARGS:-}
TCP_BUF=${TCP_BUF:-64M}
MTU=${MTU:-1500}
WORKDIR_BASE=${WORKDIR_BASE:-/tmp}
RESULTS_DIR=${RESULTS_DIR:-$HERE/results}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
# A handshake that has not delivered a first byte by then (SYN loss at 3%, 200 ms RTT) ends the measurement.
FIRST_BYTE_LIMIT=20

NS_S="mvw-$$-s"
NS_M="mvw-$$-m"
NS_R="mvw-$$-r"
IP_S=10.81.0.1
IP_R=10.81.0.2
PORT=7400
BLAST_PORT=9000
IPERF_PORT=5201
SSH_PORT=2222
DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
DAY=$(date -u +%Y-%m-%d)

BG_PIDS=()
WORK=
cleanup() {
    set +e
    trap - EXIT INT TERM ERR
    for pid in "${BG_PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
    delete_netns "$NS_S" "$NS_M" "$NS_R"
    [[ -n $WORK ]] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# set -e ends the run on any unexpected failure; say where (only in the main shell: subshells are expected to fail).
trap 'rc=$?; if [[ $BASHPID == "$$" ]]; then log "FATAL: line $LINENO: \"$BASH_COMMAND\" returned $rc"; fi' ERR

for t in ip ethtool iperf3 /usr/sbin/sshd ssh scp ssh-keygen rsync unshare setsid ping ss python3 openssl numfmt \
    find timeout; do
    command -v "$t" >/dev/null || die "missing $t (see the package list in the header)"
done

# Foreground only: `in_r tool &` would fork a shell around ip netns exec, and $! would not be the tool's pid.
in_s() { ip netns exec "$NS_S" "$@"; }
in_m() { ip netns exec "$NS_M" "$@"; }
in_r() { ip netns exec "$NS_R" "$@"; }
# SI rate (1500M = 1.5e9) -> bits/s.
bps_of() { numfmt --from=si "$1"; }
# Microseconds since the epoch (bash's clock: no fork).
usec() { echo "${EPOCHREALTIME/./}"; }
fmt_mbit() { awk -v v="$1" 'BEGIN { if (v == "") print "-"; else printf "%.1f Mbit/s", v / 1e6 }'; }
# The value of a Python expression over a JSON file `j` (empty when the file or a key is missing).
pyj() {
    python3 -c 'import json, sys
try:
    j = json.load(open(sys.argv[1]))
    print(eval(sys.argv[2]))
except Exception:
    pass' "$1" "$2"
}
# Allocated bytes of the regular files below a directory: what has arrived, also for files written out of
# order into a sparse temporary (mover) or under a temporary name (rsync).
# find fails when a file is renamed under it (a commit): what it did list is still right.
dir_bytes() { { find "$1" -type f -printf '%b\n' 2>/dev/null || true; } | awk '{ s += $1 } END { printf "%.0f", s * 512 }'; }
load1() { cut -d' ' -f1 /proc/loadavg; }
sleep_until() { # usec deadline
    local d=$(($1 - $(usec)))
    ((d > 0)) && sleep "$(awk -v d="$d" 'BEGIN { printf "%.3f", d / 1e6 }')"
    return 0
}
# Kills a process group started with setsid (its leader's pid): SIGTERM, then SIGKILL after 3 s. Not SIGINT:
# the background jobs of a non-interactive shell ignore it.
stop_group() {
    local pid=$1 sig=${2:-TERM}
    kill -"$sig" -- -"$pid" 2>/dev/null || kill -"$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 -- -"$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
# Sender namespace TCP counters: "OutSegs RetransSegs".
tcp_counters() {
    in_s awk '/^Tcp:/ { if (!h) { h = 1; for (i = 1; i <= NF; i++) k[$i] = i } else print $k["OutSegs"], $k["RetransSegs"] }' /proc/net/snmp
}
wait_listen() { # NS PROTO(t|u) PORT: until a socket listens (5 s)
    for _ in $(seq 250); do
        [[ -n $(ip netns exec "$1" ss -"$2"lnH "sport = :$3" 2>/dev/null) ]] && return 0
        sleep 0.02
    done
    return 1
}

# ---------------------------------------------------------------- binaries
if [[ -z ${MOVER:-} ]]; then
    log "building mover (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$REPO" && cargo build --release -q -p mover) || die "cargo build -p mover failed"
    MOVER=$CARGO_TARGET_DIR/release/mover
fi
[[ -x $MOVER ]] || die "no mover binary at $MOVER"
case $WANEM in
    bridge) EMU=bridge ;;
    "")
        EMU=wanem
        log "building mover-wanem (release)"
        if ! (cd "$REPO" && cargo build --release -q -p mover-wanem 2>/dev/null); then
            [[ -f $REPO/benches/wanem/Cargo.toml ]] ||
                die "this checkout has no mover-wanem (benches/wanem): set WANEM=/path/to/mover-wanem, or WANEM=bridge for the no-emulator smoke mode"
            (cd "$REPO" && cargo build --release -q --manifest-path benches/wanem/Cargo.toml) ||
                die "building benches/wanem failed"
        fi
        WANEM=$CARGO_TARGET_DIR/release/mover-wanem
        ;;
    *) EMU=wanem ;;
esac
[[ $EMU == bridge || -x $WANEM ]] || die "no mover-wanem binary at $WANEM"

# mover push's rate policy: --policy fair|low where the build has it, else MOVER_PUSH_ARGS or a fixed rate.
# Plain TCP control channel on the test path: builds with daemon authentication need the flag on both sides.
INSECURE=()
"$MOVER" serve --help 2>/dev/null | grep -q -- '--insecure-no-auth' && INSECURE=(--insecure-no-auth)
HAVE_POLICY=0
"$MOVER" push --help 2>/dev/null | grep -q -- '--policy' && HAVE_POLICY=1
push_args() { # POLICY(fair|low) BOTTLENECK_BPS -> one argument a line
    if ((HAVE_POLICY)); then
        printf '%s\n' --policy "$1"
        [[ -n $MOVER_CEILING ]] && printf '%s\n' --rate "$MOVER_CEILING"
    elif [[ -z $MOVER_PUSH_ARGS ]]; then
        printf '%s\n' --rate "$(awk -v b="$2" 'BEGIN { printf "%.0f", b * 0.95 }')"
    fi
    local a
    for a in $MOVER_PUSH_ARGS; do printf '%s\n' "$a"; done
}
policy_label() { # POLICY
    if ((HAVE_POLICY)); then echo "$1"; else echo "fixed"; fi
}

# ---------------------------------------------------------------- plan and estimate
RATE_BPS=$(bps_of "$RATE")
FILE_BYTES=$(bytes_of "$SIZE")
MOVER_TIMEOUT=${MOVER_TIMEOUT:-$(awk -v b="$FILE_BYTES" -v r="$RATE_BPS" 'BEGIN { printf "%d", 3 * b * 8 / r + 5 }')}
POINTS=() # "section rate rtt loss"
[[ ${GRID:-1} == 1 ]] || { RTTS=; RATE_HIGH=; }
for rtt in $RTTS; do for loss in $LOSSES; do POINTS+=("grid $RATE $rtt $loss"); done; done
if [[ -n $RATE_HIGH ]]; then
    for rtt in $RTTS_HIGH; do for loss in $LOSSES_HIGH; do POINTS+=("grid-high $RATE_HIGH $rtt $loss"); done; done
fi
FAIR_RUNS=0
if [[ $FAIR == 1 ]]; then
    FAIR_RUNS=$(($(wc -w <<<"$FAIR_POLICIES") * $(wc -w <<<"$FAIR_CCS") * FAIR_REPEATS))
fi
has_tool() { [[ " $TOOLS " == *" $1 "* ]]; }
# Seconds one point takes (measured on the 2-core VM: set-up of each tool, handshakes of a few RTTs; the ssh
# handshake is ~10 RTTs and does not count towards TIME_LIMIT).
estimate_point() { # RATE RTT LOSS
    local n_tools=0 t
    for t in $TOOLS; do n_tools=$((n_tools + 1)); done
    awk -v rate="$(bps_of "$1")" -v rtt="$(awk -v r="$2" 'BEGIN { print r / 1000 }')" -v blast="$([[ $BLAST == 1 && $2 == 0 && $3 == 0 ]] && echo 1 || echo 0)" \
        -v size="$FILE_BYTES" -v T="$TIME_LIMIT" -v reps="$REPEATS" -v emu="$([[ $EMU == wanem ]] && echo 0.15 || echo 0)" \
        -v mover="$(has_tool mover && echo 1 || echo 0)" -v ip="$( (has_tool iperf3-cubic && echo x; has_tool iperf3-bbr && echo x) | wc -l)" \
        -v sshn="$( (has_tool scp && echo x; has_tool rsync && echo x) | wc -l)" -v n="$n_tools" \
        -v loss="$3" \
        'BEGIN { ssh = T  # scp/rsync run into the limit unless the path is clean and short (2 MiB ssh window)
                 if (loss == 0 && rtt < 0.05) { r = rate; if (rtt > 0 && 16.7e6 / rtt < r) r = 16.7e6 / rtt; ssh = size * 8 / (0.9 * r); if (ssh > T) ssh = T }
                 per = mover * (size * 8 / rate * 1.1 + 1.2 + 8 * rtt) + ip * (T + 0.6 + 4 * rtt) + sshn * (ssh + 0.8 + 12 * rtt) + blast * (T + 1.5) + (n + blast) * emu
                 printf "%.0f", reps * per + 1 + 2 * rtt }'
}
EST_TOTAL=20
declare -A EST
for p in "${POINTS[@]}"; do
    read -r _ r t l <<<"$p"
    EST[$p]=$(estimate_point "$r" "$t" "$l")
    EST_TOTAL=$((EST_TOTAL + ${EST[$p]}))
done
FAIR_EST=$((FAIR_RUNS * (FAIR_LEAD + FAIR_OVERLAP + FAIR_TAIL + 3)))
EST_TOTAL=$((EST_TOTAL + FAIR_EST))

SUFFIX=""
[[ $EMU == bridge ]] && SUFFIX="-bridge"
BASE=$RESULTS_DIR/wan-$DAY$SUFFIX
RAW=$BASE-raw.csv
CSV=$BASE.csv
TS=$BASE-fairness-ts.csv
CMDLINE="RATE=$RATE RTTS=\"$RTTS\" LOSSES=\"$LOSSES\" RATE_HIGH=$RATE_HIGH RTTS_HIGH=\"$RTTS_HIGH\" LOSSES_HIGH=\"$LOSSES_HIGH\" REPEATS=$REPEATS SIZE=$SIZE TIME_LIMIT=$TIME_LIMIT FAIR=$FAIR WANEM=${WANEM:-build} benches/run-wan.sh"

log "plan: ${#POINTS[@]} points x $REPEATS repeats x [$TOOLS]$([[ $BLAST == 1 ]] && echo " + raw UDP at 0 ms/0%"), $FAIR_RUNS fairness runs; emulator: $([[ $EMU == bridge ]] && echo "NONE (bridge: RTT/loss/rate are labels only)" || echo "$WANEM")"
log "mover push: $( ((HAVE_POLICY)) && echo "--policy fair / low${MOVER_CEILING:+ --rate $MOVER_CEILING}" || echo "NO --policy in this build: $(push_args fair "$RATE_BPS" | paste -sd' ') (rows say policy=fixed)")${MOVER_PUSH_ARGS:+ (+ $MOVER_PUSH_ARGS)}, --net $MOVER_NET, timeout ${MOVER_TIMEOUT}s"
log "estimated run time: ~$(((EST_TOTAL + 59) / 60)) min (${EST_TOTAL} s, of which fairness ${FAIR_EST} s; ETA $(date -d "@$(($(date +%s) + EST_TOTAL))" +%H:%M)); the header says how it is made"
LOAD=$(load1)
if awk -v l="$LOAD" 'BEGIN { exit !(l > 0.5) }'; then
    log "WARNING: the machine is busy (load average $LOAD on $(nproc) cores): every tool here shares the cores with it; results will be low and noisy"
fi
[[ ${DRY_RUN:-0} == 1 ]] && exit 0

# ---------------------------------------------------------------- work dir, files, namespaces, sshd
mkdir -p "$RESULTS_DIR"
WORK=$(mktemp -d "$WORKDIR_BASE/mover-bench-wan.XXXXXX")
mkdir -p "$WORK/src" "$WORK/fair" "$WORK/dst"
FILE=$WORK/src/data.bin
make_file "$FILE" "$SIZE"
# The fairness pushes send copies of FILE: enough for FAIR_RATE over a whole run, plus 30%. Copies, not hard
# links: push sends a file with several names once and makes the other names links at the end, so a push of
# links finished after one file (its "rate" then read as the links' sizes appearing at once).
FAIR_LINKS=$(awk -v r="$(bps_of "$FAIR_RATE")" -v s=$((FAIR_LEAD + FAIR_OVERLAP + FAIR_TAIL)) -v b="$FILE_BYTES" \
    'BEGIN { n = int(r * s * 1.3 / 8 / b) + 1; print n }')
FAIR_FILES=()
for i in $(seq "$FAIR_LINKS"); do
    cp --reflink=never "$FILE" "$WORK/fair/part-$i.bin"
    FAIR_FILES+=("$WORK/fair/part-$i.bin")
done

for ns in "$NS_S" "$NS_M" "$NS_R"; do
    ip netns add "$ns"
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip netns exec "$ns" ip link set lo up
done
ip link add wan0 netns "$NS_S" type veth peer name wan-a netns "$NS_M"
ip link add wan-b netns "$NS_M" type veth peer name wan0 netns "$NS_R"
OFFLOADS="tso off gso off gro off tx off tx-udp-segmentation off"
TCP_BUF_BYTES=$(bytes_of "$TCP_BUF")
for ns_if in "$NS_S:wan0" "$NS_M:wan-a" "$NS_M:wan-b" "$NS_R:wan0"; do
    ns=${ns_if%%:*} dev=${ns_if#*:}
    # shellcheck disable=SC2086
    ip netns exec "$ns" ethtool -K "$dev" $OFFLOADS >/dev/null 2>&1 || die "ethtool -K $dev $OFFLOADS failed"
    ip netns exec "$ns" ip link set "$dev" mtu "$MTU" || die "ip link set $dev mtu $MTU failed"
    ip netns exec "$ns" ip link set "$dev" up
done
for ns in "$NS_S" "$NS_R"; do
    ip=$IP_S; [[ $ns == "$NS_R" ]] && ip=$IP_R
    ip netns exec "$ns" ip addr add "$ip/24" dev wan0
    ip netns exec "$ns" sysctl -qw net.ipv4.tcp_no_metrics_save=1 \
        net.ipv4.tcp_rmem="4096 131072 $TCP_BUF_BYTES" net.ipv4.tcp_wmem="4096 16384 $TCP_BUF_BYTES"
    [[ $(ip netns exec "$ns" sysctl -n net.ipv4.tcp_wmem | awk '{ print $3 }') == "$TCP_BUF_BYTES" ]] ||
        die "could not set tcp_wmem in $ns"
done
if [[ $EMU == bridge ]]; then
    in_m ip link add br0 type bridge
    in_m ip link set wan-a master br0
    in_m ip link set wan-b master br0
    in_m ip link set br0 up
fi

# ---------------------------------------------------------------- the emulator
EMU_PID=
emu_start() { # RATE RTT_MS LOSS_PCT SEED
    [[ $EMU == bridge ]] && return 0
    local delay; delay=$(awk -v r="$2" 'BEGIN { printf "%gms", r / 2 }')
    : >"$WORK/wanem.out"
    rm -f "$WORK/wanem-stats.json"
    # shellcheck disable=SC2086
    ip netns exec "$NS_M" "$WANEM" --a wan-a --b wan-b --delay "$delay" --loss "$3%" --rate "$1" --seed "$4" \
        --stats-json "$WORK/wanem-stats.json" $WANEM_ARGS >"$WORK/wanem.out" 2>"$WORK/wanem.err" &
    EMU_PID=$!
    wait_for "$WORK/wanem.out" '^ready' ||
        die "mover-wanem did not print 'ready' within 10 s: $(tail -5 "$WORK/wanem.err")"
}
emu_stop() { # sets EMU_IN EMU_LOST EMU_QDROPS (data direction) and EMU_OVERLOAD; empty in bridge mode
    EMU_IN='' EMU_LOST='' EMU_QDROPS='' EMU_OVERLOAD=''
    [[ $EMU == bridge || -z $EMU_PID ]] && return 0
    local rc=0
    kill -TERM "$EMU_PID" 2>/dev/null || true
    wait_pid "$EMU_PID" 5 || rc=$?
    if ((rc == 124)); then
        log "  mover-wanem did not exit within 5 s of SIGTERM (killed): $(tail -3 "$WORK/wanem.err")"
    elif ((rc != 0)); then
        log "  mover-wanem exited with status $rc: $(tail -3 "$WORK/wanem.err")"
    fi
    EMU_PID=
    [[ -s $WORK/wanem-stats.json ]] || log "  mover-wanem wrote no --stats-json"
    read -r EMU_IN EMU_LOST EMU_QDROPS < <(pyj "$WORK/wanem-stats.json" \
        'j["forward"]["frames_in"], j["forward"]["lost_random"] + j["forward"]["lost_burst"], j["forward"]["queue_drops"]' | tr -d '(),') || true
    # Not in the fixed stats contract (mover-wanem's own drops, both directions): 0 where absent.
    local own='[(d, k, j[d].get(k, 0)) for d in ("forward", "reverse") for k in ("pool_drops", "socket_drops", "send_errors", "oversize", "truncated")]'
    EMU_OVERLOAD=$(pyj "$WORK/wanem-stats.json" "sum(n for _, _, n in $own)")
    if [[ -n $EMU_OVERLOAD && $EMU_OVERLOAD != 0 ]]; then
        log "  WARNING: mover-wanem dropped frames itself ($(pyj "$WORK/wanem-stats.json" "' '.join(f'{d}.{k}={n}' for d, k, n in $own if n)")): the machine did not keep up; this row's numbers include that loss"
    fi
}
ping_rtt() { # average ping RTT in ms through the current path (empty if every ping was lost)
    in_s ping -n -q -c 3 -i 0.2 -w 5 "$IP_R" 2>/dev/null | awk -F/ '/^rtt|^round-trip/ { print $5 }' || true
}

log "path: $NS_S/wan0 $IP_S <-> $NS_M (wan-a, wan-b: $([[ $EMU == bridge ]] && echo bridge || echo mover-wanem)) <-> $NS_R/wan0 $IP_R; offloads off; tcp_[rw]mem max $TCP_BUF"
start_sshd "$NS_R" "$IP_R" "$SSH_PORT" "$WORK"
disown "$SSHD_PID" # the EXIT trap kills it; no "Killed" job notice
emu_start "$RATE" 0 0 1
wait_sshd "$NS_S" "$IP_R" "$SSH_PORT" "$WORK"
log "path check: ping $(ping_rtt) ms, sshd reachable"
emu_stop

# ---------------------------------------------------------------- one measurement each
RAW_HEADER="date,section,scenario,rate_bps,rtt_ms,loss_pct,emulator,tool,policy,phase,repeat,status,goodput_bps,seconds,bytes,retransmitted,sent,retrans_unit,net,emu_frames_in,emu_lost,emu_queue_drops,emu_overload,rtt_seen_ms,load1,extra"
echo "$RAW_HEADER" >"$RAW"
TS_TMP=$WORK/fairness-ts.csv
: >"$TS_TMP"
# The point being measured: section rate rtt loss repeat, and the ping RTT of its path.
P_SECTION='' P_RATE='' P_RTT='' P_LOSS='' P_REP='' P_RTT_SEEN=''
raw() { # scenario tool policy phase status goodput seconds bytes retx sent unit net extra
    local extra=${13//,/;}
    echo "$DATE,$P_SECTION,$1,$(bps_of "$P_RATE"),$P_RTT,$P_LOSS,$EMU,$2,$3,$4,$P_REP,$5,$6,$7,$8,$9,${10},${11},${12},$EMU_IN,$EMU_LOST,$EMU_QDROPS,$EMU_OVERLOAD,$P_RTT_SEEN,$(load1),$extra" >>"$RAW"
}
# Starts the emulator for one measurement of the current point (and pings the path once per point).
measure_begin() {
    emu_start "$P_RATE" "$P_RTT" "$P_LOSS" "$P_REP"
    if [[ -z $P_RTT_SEEN ]]; then
        P_RTT_SEEN=$(ping_rtt)
        P_RTT_SEEN=${P_RTT_SEEN:-lost}
    fi
}
# Waits for a copy (a process group started with setsid) until it exits or its time limit passes.
# watch_copy PID DIR LIMIT_S CLOCK: CLOCK "launch" counts the limit from now; "first-byte" from the first byte
# in DIR (with FIRST_BYTE_LIMIT s to get there). Sets W_STATUS (ok|fail|limit), W_SECS and W_BYTES (bytes
# that arrived within W_SECS).
watch_copy() {
    local pid=$1 dir=$2 limit_us=$(($3 * 1000000)) clock=$4 rc
    local t0 t b t_ref b_ref=0 started=0
    t0=$(usec); t_ref=$t0
    [[ $clock == launch ]] && started=1
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rc=0; wait "$pid" || rc=$?
            t=$(usec); b=$(dir_bytes "$dir")
            W_STATUS=ok; ((rc == 0)) || W_STATUS=fail
            break
        fi
        t=$(usec); b=$(dir_bytes "$dir")
        if ((!started && b > 0)); then started=1; t_ref=$t; b_ref=$b; fi
        if ((started && t - t_ref >= limit_us)) || ((!started && t - t0 >= FIRST_BYTE_LIMIT * 1000000)); then
            W_STATUS=limit
            stop_group "$pid"
            break
        fi
        sleep 0.1
    done
    W_SECS=$(awk -v a="$t_ref" -v b="$t" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
    W_BYTES=$((b - b_ref))
}
rate_of() { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", n * 8 / s; else print 0 }'; }

run_mover() {
    local d=$WORK/dst args status gp secs bytes
    rm -rf "$d"; mkdir -p "$d"
    mapfile -t args < <(push_args fair "$(bps_of "$P_RATE")")
    measure_begin
    : >"$WORK/serve.log"
    ip netns exec "$NS_R" "$MOVER" serve "${INSECURE[@]}" --listen "$IP_R:$PORT" --root "$d" --once --net "$MOVER_NET" 2>"$WORK/serve.log" &
    local spid=$!
    wait_for "$WORK/serve.log" "listening on" || die "mover serve did not start: $(cat "$WORK/serve.log")"
    setsid ip netns exec "$NS_S" "$MOVER" push "${INSECURE[@]}" --json --net "$MOVER_NET" "${args[@]}" "$FILE" \
        "mover://$IP_R:$PORT/in" >"$WORK/push.json" 2>"$WORK/push.err" &
    watch_copy $! "$d" "$MOVER_TIMEOUT" launch
    [[ $W_STATUS == ok ]] || kill "$spid" 2>/dev/null || true
    wait_pid "$spid" 5 || true
    emu_stop
    local j=$WORK/push.json
    if [[ $W_STATUS == ok && $(jget "$j" verified) == true ]]; then
        status=ok gp=$(jget "$j" goodput_bps) secs=$(jget "$j" seconds) bytes=$(jget "$j" bytes)
    elif [[ $W_STATUS == limit ]]; then
        status=timeout gp=$(rate_of "$W_BYTES" "$W_SECS") secs=$W_SECS bytes=$W_BYTES
    else
        status=fail gp='' secs=$W_SECS bytes=$W_BYTES
        log "  mover push failed: $(tail -2 "$WORK/push.err") / serve: $(tail -2 "$WORK/serve.log")"
    fi
    # A push that timed out or failed keeps its stderr (with MOVER_RATE_TRACE=1, the controller's rounds) and
    # the server's, next to the results.
    if [[ $status != ok ]]; then
        cat "$WORK/push.err" - "$WORK/serve.log" <<<"--- serve.log ---" >"$BASE-$status-$P_RATE-${P_RTT}ms-${P_LOSS}pct-$P_REP.log"
    elif [[ ${MOVER_RATE_TRACE:-0} == 1 ]]; then
        cp "$WORK/push.err" "$BASE-trace-$P_RATE-${P_RTT}ms-${P_LOSS}pct-$P_REP.log"
    fi
    local extra
    extra=$(grep -oE '"(policy|max_rate_bps|final_rate_bps|[a-z_]*loss[a-z_]*)":[^,}]*' "$j" 2>/dev/null | tr -d '"' | tr ':' '=' | paste -sd';' || true)
    extra="received=$(jget "$j" packets_received)${extra:+;$extra}"
    raw "" mover "$(policy_label fair)" transfer "$status" "$gp" "$secs" "$bytes" "$(jget "$j" packets_retransmitted)" \
        "$(jget "$j" packets_sent)" packets "$(jget "$j" net)" "$extra"
    log "  mover push ($(policy_label fair)) #$P_REP: $(fmt_mbit "$gp"), retx $(jget "$j" packets_retransmitted)/$(jget "$j" packets_sent), $status${EMU_IN:+, emulator dropped $EMU_LOST+$EMU_QDROPS of $EMU_IN}"
    rm -rf "$d"
}

run_iperf() { # CC
    local cc=$1 status=ok gp before after
    measure_begin
    ip netns exec "$NS_R" iperf3 -s -1 -B "$IP_R" -p "$IPERF_PORT" >/dev/null 2>&1 &
    local ipid=$!
    wait_listen "$NS_R" t "$IPERF_PORT" || die "iperf3 server did not start"
    before=$(tcp_counters)
    timeout -k 5 $((TIME_LIMIT + 30)) ip netns exec "$NS_S" iperf3 -c "$IP_R" -p "$IPERF_PORT" -t "$TIME_LIMIT" \
        -C "$cc" -J >"$WORK/iperf.json" 2>/dev/null || status=fail
    after=$(tcp_counters)
    wait_pid "$ipid" 5 || true
    emu_stop
    gp=$(pyj "$WORK/iperf.json" 'round(j["end"]["sum_received"]["bits_per_second"])')
    [[ -n $gp ]] || { status=fail; log "  iperf3 gave no result: $(pyj "$WORK/iperf.json" 'j.get("error")')"; }
    read -r o0 r0 <<<"$before"; read -r o1 r1 <<<"$after"
    raw "" "iperf3-$cc" "" transfer "$status" "$gp" "$TIME_LIMIT" \
        "$(pyj "$WORK/iperf.json" 'j["end"]["sum_received"]["bytes"]')" $((r1 - r0)) $((o1 - o0)) segments tcp ""
    log "  iperf3 -C $cc #$P_REP: $(fmt_mbit "$gp"), retx $((r1 - r0))/$((o1 - o0)) segments${EMU_IN:+, emulator dropped $EMU_LOST+$EMU_QDROPS of $EMU_IN}"
}

# Ends what the last copy left running under sshd (its session processes), so nothing writes into the next one.
reap_ssh_sessions() {
    local p
    for p in $(pgrep -P "$SSHD_PID" 2>/dev/null || true); do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 30); do [[ -z $(pgrep -P "$SSHD_PID" 2>/dev/null) ]] && return 0; sleep 0.1; done
    for p in $(pgrep -P "$SSHD_PID" 2>/dev/null || true); do kill -9 "$p" 2>/dev/null || true; done
}

run_ssh_copy() { # scp|rsync
    local tool=$1 d=$WORK/dst before after status gp
    rm -rf "$d"; mkdir -p "$d"
    measure_begin
    before=$(tcp_counters)
    if [[ $tool == scp ]]; then
        setsid ip netns exec "$NS_S" scp -q -P "$SSH_PORT" "${SSH_OPTS[@]}" "$FILE" "root@$IP_R:$d/copy.bin" \
            >/dev/null 2>"$WORK/copy.err" &
    else
        setsid ip netns exec "$NS_S" rsync -e "ssh -p $SSH_PORT ${SSH_OPTS[*]}" "$FILE" "root@$IP_R:$d/copy.bin" \
            >/dev/null 2>"$WORK/copy.err" &
    fi
    watch_copy $! "$d" "$TIME_LIMIT" first-byte
    after=$(tcp_counters)
    reap_ssh_sessions
    emu_stop
    status=$W_STATUS
    if [[ $status == ok && $(stat -c %s "$d/copy.bin" 2>/dev/null) != "$FILE_BYTES" ]]; then status=fail; fi
    gp=$(rate_of "$W_BYTES" "$W_SECS")
    if [[ $status == fail ]]; then
        gp=
        log "  $tool failed: $(tail -2 "$WORK/copy.err")"
    fi
    read -r o0 r0 <<<"$before"; read -r o1 r1 <<<"$after"
    raw "" "$tool" "" transfer "$status" "$gp" "$W_SECS" "$W_BYTES" $((r1 - r0)) $((o1 - o0)) segments tcp ""
    log "  $tool #$P_REP: $(fmt_mbit "$gp") ($W_BYTES B in $W_SECS s, $status), retx $((r1 - r0))/$((o1 - o0)) segments${EMU_IN:+, emulator dropped $EMU_LOST+$EMU_QDROPS of $EMU_IN}"
    rm -rf "$d"
}

run_blast() {
    local rate_args=() gp status=ok
    case ${BLAST_RATE:-$P_RATE} in
        max) ;;
        *) rate_args=(--rate "${BLAST_RATE:-$P_RATE}") ;;
    esac
    measure_begin
    ip netns exec "$NS_R" "$MOVER" bench net --listen "$IP_R:$BLAST_PORT" --seconds $((TIME_LIMIT + 10)) --json \
        >"$WORK/blast-r.json" 2>"$WORK/blast-r.err" &
    local rpid=$!
    wait_listen "$NS_R" u "$BLAST_PORT" || die "mover bench net --listen did not start: $(cat "$WORK/blast-r.err")"
    in_s "$MOVER" bench net --to "$IP_R:$BLAST_PORT" --seconds "$TIME_LIMIT" "${rate_args[@]}" --json \
        >"$WORK/blast-s.json" 2>"$WORK/blast-s.err" || status=fail
    wait_pid "$rpid" $((TIME_LIMIT + 15)) || status=fail
    emu_stop
    gp=$(jget "$WORK/blast-r.json" goodput_bps)
    [[ -n $gp && $gp != null ]] || { gp=; status=fail; log "  bench net failed: $(tail -2 "$WORK/blast-r.err") $(tail -2 "$WORK/blast-s.err")"; }
    raw "" mover-bench-net "" transfer "$status" "$gp" "$(jget "$WORK/blast-r.json" seconds)" \
        "$(jget "$WORK/blast-r.json" bytes)" "" "$(jget "$WORK/blast-s.json" datagrams)" datagrams udp \
        "offered=${BLAST_RATE:-$P_RATE};received=$(jget "$WORK/blast-r.json" datagrams);loss=$(jget "$WORK/blast-r.json" loss)"
    log "  bench net (raw UDP, offered ${BLAST_RATE:-$P_RATE}) #$P_REP: $(fmt_mbit "$gp"), loss $(jget "$WORK/blast-r.json" loss)"
}

# ---------------------------------------------------------------- fairness
# Counters every 0.25 s: "usec tcp_bytes_acked mover_bytes" (see the header).
sampler() { # OUT DIR
    local t tcp mb
    set +e # a missing socket (before and after iperf3) is a 0, not an error
    trap - ERR
    while :; do
        t=$(usec)
        tcp=$(in_s ss -tinH dst "$IP_R:$IPERF_PORT" 2>/dev/null | grep -o 'bytes_acked:[0-9]*' |
            awk -F: '{ s += $2 } END { printf "%.0f", s }')
        mb=$(dir_bytes "$2")
        echo "$t $tcp $mb" >>"$1"
        sleep 0.25
    done
}
# phase_rate FILE COLUMN(2 tcp, 3 mover) T0_US FROM_S TO_S: bits/s between the first sample at or after FROM and
# the last at or before TO (seconds after T0).
phase_rate() {
    awk -v c="$2" -v t0="$3" -v a="$4" -v b="$5" '
        { t = ($1 - t0) / 1e6 }
        t >= a && t <= b { if (!n++) { ta = t; va = $c } tb = t; vb = $c }
        END { if (n < 2 || tb <= ta) print ""; else printf "%.0f", (vb - va) * 8 / (tb - ta) }' "$1"
}

run_fairness() { # POLICY(fair|low) CC REPEAT
    local policy=$1 cc=$2 scenario="mover-$1+iperf3-$2" d=$WORK/dst args
    local L=$FAIR_LEAD O=$FAIR_OVERLAP T=$FAIR_TAIL S=$FAIR_SETTLE
    rm -rf "$d"; mkdir -p "$d"
    mapfile -t args < <(push_args "$policy" "$(bps_of "$P_RATE")")
    measure_begin
    : >"$WORK/serve.log"
    ip netns exec "$NS_R" "$MOVER" serve "${INSECURE[@]}" --listen "$IP_R:$PORT" --root "$d" --once --net "$MOVER_NET" 2>"$WORK/serve.log" &
    local spid=$!
    wait_for "$WORK/serve.log" "listening on" || die "mover serve did not start: $(cat "$WORK/serve.log")"
    ip netns exec "$NS_R" iperf3 -s -1 -B "$IP_R" -p "$IPERF_PORT" >/dev/null 2>&1 &
    local ipid=$!
    wait_listen "$NS_R" t "$IPERF_PORT" || die "iperf3 server did not start"
    local ts=$WORK/ts.txt
    : >"$ts"
    sampler "$ts" "$d" &
    local sampler_pid=$!
    BG_PIDS+=("$sampler_pid")
    local t0 mpid cpid
    t0=$(usec)
    start_push() {
        setsid ip netns exec "$NS_S" "$MOVER" push "${INSECURE[@]}" --json --net "$MOVER_NET" "${args[@]}" "${FAIR_FILES[@]}" \
            "mover://$IP_R:$PORT/in" >"$WORK/push.json" 2>"$WORK/push.err" &
        mpid=$!
    }
    start_tcp() { # SECONDS
        ip netns exec "$NS_S" timeout -k 5 $(($1 + 30)) iperf3 -c "$IP_R" -p "$IPERF_PORT" -t "$1" -C "$cc" -J >"$WORK/iperf.json" 2>/dev/null &
        cpid=$!
    }
    if [[ $policy == fair ]]; then
        start_tcp $((L + O + T))
        sleep_until $((t0 + L * 1000000))
        start_push
        sleep_until $((t0 + (L + O) * 1000000))
        stop_group "$mpid"
        sleep_until $((t0 + (L + O + T) * 1000000))
        wait_pid "$cpid" 40 || true
    else
        start_push
        sleep_until $((t0 + L * 1000000))
        start_tcp "$O"
        sleep_until $((t0 + (L + O) * 1000000))
        wait_pid "$cpid" 40 || true
        sleep_until $((t0 + (L + O + T) * 1000000))
        stop_group "$mpid"
    fi
    kill "$sampler_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
    # With MOVER_RATE_TRACE=1 the push prints its rate controller's rounds: keep them next to the results.
    if [[ ${MOVER_RATE_TRACE:-0} == 1 ]]; then cp "$WORK/push.err" "$BASE-trace-$scenario-$3.log"; fi
    kill "$spid" "$ipid" 2>/dev/null || true
    wait_pid "$spid" 5 || true
    wait_pid "$ipid" 5 || true
    emu_stop
    awk -v s="$scenario" -v r="$3" -v t0="$t0" -v ph="$L,$O,$T,$S" \
        '{ printf "%s,%s,%.3f,%s,%s,%s\n", s, r, ($1 - t0) / 1e6, $2, $3, ph }' "$ts" >>"$TS_TMP"
    local tcp_before tcp_over mover_over tcp_after mover_before mover_after pl
    pl=$(policy_label "$policy")
    tcp_over=$(phase_rate "$ts" 2 "$t0" $((L + S)) $((L + O)))
    mover_over=$(phase_rate "$ts" 3 "$t0" $((L + S)) $((L + O)))
    P_REP=$3
    if [[ $policy == fair ]]; then
        tcp_before=$(phase_rate "$ts" 2 "$t0" "$S" "$L")
        tcp_after=$(phase_rate "$ts" 2 "$t0" $((L + O + S)) $((L + O + T)))
        raw "$scenario" "iperf3-$cc" "" before ok "$tcp_before" $((L - S)) "" "" "" "" tcp ""
        raw "$scenario" "iperf3-$cc" "" overlap ok "$tcp_over" $((O - S)) "" "" "" "" tcp ""
        raw "$scenario" mover "$pl" overlap ok "$mover_over" $((O - S)) "" "" "" "" "" ""
        raw "$scenario" "iperf3-$cc" "" after ok "$tcp_after" $((T - S)) "" "" "" "" tcp ""
        log "  $scenario: TCP alone $(fmt_mbit "$tcp_before"); together TCP $(fmt_mbit "$tcp_over"), mover $(fmt_mbit "$mover_over") (mover/TCP $(awk -v a="$mover_over" -v b="$tcp_over" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')); TCP after $(fmt_mbit "$tcp_after")"
    else
        mover_before=$(phase_rate "$ts" 3 "$t0" "$S" "$L")
        mover_after=$(phase_rate "$ts" 3 "$t0" $((L + O + S)) $((L + O + T)))
        raw "$scenario" mover "$pl" before ok "$mover_before" $((L - S)) "" "" "" "" "" ""
        raw "$scenario" "iperf3-$cc" "" overlap ok "$tcp_over" $((O - S)) "" "" "" "" tcp ""
        raw "$scenario" mover "$pl" overlap ok "$mover_over" $((O - S)) "" "" "" "" "" ""
        raw "$scenario" mover "$pl" after ok "$mover_after" $((T - S)) "" "" "" "" "" ""
        log "  $scenario: mover alone $(fmt_mbit "$mover_before"); together TCP $(fmt_mbit "$tcp_over") ($(awk -v a="$tcp_over" -v b="$(bps_of "$P_RATE")" 'BEGIN { printf "%.0f", 100 * a / b }')% of the link), mover $(fmt_mbit "$mover_over"); mover after $(fmt_mbit "$mover_after")"
    fi
    rm -rf "$d"
}

# ---------------------------------------------------------------- the runs
START=$(date +%s)
EST_DONE=0
i=0
for p in "${POINTS[@]}"; do
    i=$((i + 1))
    read -r P_SECTION P_RATE P_RTT P_LOSS <<<"$p"
    P_RTT_SEEN=
    log "point $i/${#POINTS[@]}: rate $P_RATE, RTT $P_RTT ms, loss $P_LOSS% ($P_SECTION)"
    for rep in $(seq "$REPEATS"); do
        P_REP=$rep
        for tool in $TOOLS; do
            case $tool in
                mover) run_mover ;;
                iperf3-cubic | iperf3-bbr) run_iperf "${tool#iperf3-}" ;;
                scp | rsync) run_ssh_copy "$tool" ;;
                *) die "unknown tool $tool in TOOLS" ;;
            esac
        done
        if [[ $BLAST == 1 && $P_RTT == 0 && $P_LOSS == 0 ]]; then run_blast; fi
    done
    EST_DONE=$((EST_DONE + ${EST[$p]}))
    elapsed=$(($(date +%s) - START))
    left=$(awk -v e="$elapsed" -v d="$EST_DONE" -v t="$EST_TOTAL" 'BEGIN { printf "%d", (t - d) * (d > 0 ? e / d : 1) }')
    log "point $i/${#POINTS[@]} done (ping ${P_RTT_SEEN} ms); ${elapsed}s elapsed, ~$(((left + 59) / 60)) min left (ETA $(date -d "@$(($(date +%s) + left))" +%H:%M))"
    if awk -v l="$(load1)" -v n="$(nproc)" 'BEGIN { exit !(l > n + 1) }'; then
        log "WARNING: load average $(load1) on $(nproc) cores: something else is running"
    fi
done

if [[ $FAIR == 1 ]]; then
    P_SECTION=fairness P_RATE=$FAIR_RATE P_RTT=$FAIR_RTT P_LOSS=$FAIR_LOSS P_RTT_SEEN=
    log "fairness runs: rate $P_RATE, RTT $P_RTT ms, loss $P_LOSS%: lead ${FAIR_LEAD}s, together ${FAIR_OVERLAP}s, tail ${FAIR_TAIL}s"
    for rep in $(seq "$FAIR_REPEATS"); do
        P_REP=$rep
        for policy in $FAIR_POLICIES; do
            for cc in $FAIR_CCS; do run_fairness "$policy" "$cc" "$rep"; done
        done
    done
fi
if [[ $FAIR == 1 ]]; then
    { echo "scenario,repeat,t_s,tcp_bytes_acked,mover_bytes,lead_s,overlap_s,tail_s,settle_s"; cat "$TS_TMP"; } >"$TS"
fi

# ---------------------------------------------------------------- medians, table, plots
python3 - "$RAW" "$CSV" <<'PY'
import csv, statistics as st, sys
raw, out = sys.argv[1:3]
rows = list(csv.DictReader(open(raw)))
key = ("section", "scenario", "rate_bps", "rtt_ms", "loss_pct", "emulator", "tool", "policy", "phase")
groups = {}
for r in rows:
    groups.setdefault(tuple(r[k] for k in key), []).append(r)
def num(v):
    try:
        return float(v)
    except ValueError:
        return None
def med(rs, col):
    v = [x for x in (num(r[col]) for r in rs) if x is not None]
    return st.median(v) if v else None
def fmt(x, d=0):
    return "" if x is None else f"{x:.{d}f}"
cols = ["date", *key, "repeats", "ok", "goodput_bps", "goodput_min_bps", "goodput_max_bps", "retransmitted", "sent",
        "retrans_unit", "path_drop_pct", "rtt_seen_ms", "note"]
with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(cols)
    for k, rs in groups.items():
        good = [r for r in rs if r["status"] != "fail"]
        gp = [num(r["goodput_bps"]) for r in good if num(r["goodput_bps"]) is not None]
        drops = []
        for r in rs:
            n, lost, q = num(r["emu_frames_in"]), num(r["emu_lost"]), num(r["emu_queue_drops"])
            if n:
                drops.append(100 * ((lost or 0) + (q or 0)) / n)
        statuses = {}
        for r in rs:
            if r["status"] != "ok":
                statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        note = "; ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
        overload = sum(num(r["emu_overload"]) or 0 for r in rs)
        if overload:
            note += ("; " if note else "") + f"emulator overloaded ({overload:.0f} frames dropped by mover-wanem itself)"
        w.writerow([rs[0]["date"], *k, len(rs), len(good),
                    fmt(st.median(gp)) if gp else "", fmt(min(gp)) if gp else "", fmt(max(gp)) if gp else "",
                    fmt(med(good, "retransmitted")), fmt(med(good, "sent")), rs[0]["retrans_unit"],
                    fmt(st.median(drops), 3) if drops else "", rs[0]["rtt_seen_ms"], note])
PY
log "results: $CSV (medians), $RAW (every run)$([[ $FAIR == 1 ]] && echo ", $TS (fairness counters)")"

MACHINE="$(nproc) cores, $(lscpu | grep 'Model name' | sed 's/Model name: *//;s/  */ /g'), kernel $(uname -r)"
PATH_NOTE="$([[ $EMU == bridge ]] && echo "NO EMULATOR (WANEM=bridge: a Linux bridge in the middle; RTT, loss and rate are labels only)" || echo "mover-wanem${WANEM_ARGS:+ $WANEM_ARGS} in a middle namespace (drop-tail queue before the bottleneck: $([[ $WANEM_ARGS == *--queue* ]] && echo "as WANEM_ARGS says" || echo "its default, max(RTT, 10 ms) at the rate"))"); veth offloads off, MTU $MTU; tcp_[rw]mem max $TCP_BUF; mover --net $MOVER_NET; file $SIZE of random bytes; TIME_LIMIT ${TIME_LIMIT}s; medians of $REPEATS; load average at start $LOAD"
python3 "$HERE/plot-wan.py" "$CSV" --cmdline "$CMDLINE" --date "$DATE" --machine "$MACHINE" --path "$PATH_NOTE" --repo "$REPO" --mtu "$MTU" \
    >"$BASE.md" || log "plot-wan.py failed (the CSV is complete)"
cat "$BASE.md"
log "table: $BASE.md; plots: $BASE-*.png"
