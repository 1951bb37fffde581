#!/usr/bin/env bash
# Sharding across nodes (issue 21): four `mover push --shard i/4` runs on four sender namespaces, each behind
# its own RATE link, into one receiver namespace whose link is 4 x RATE, against one sender pushing the whole
# tree through its RATE link: aggregate goodput, and the issue's aim (b / a >= 3.5) met or missed.
#
# Usage (root; NOT part of CI; ~12 min with the defaults on 2 cores, most of it the single-sender runs):
#   sudo benches/run-shards.sh                        # full run: SIZE=1536M, REPEATS=3, RATE=100M
#   sudo SMOKE=1 benches/run-shards.sh                # plumbing smoke run: SIZE=256M, REPEATS=1
#   sudo POLICY=fixed benches/run-shards.sh           # push --policy fixed --rate PUSH_RATE instead of fair
#   sudo RATE=150M benches/run-shards.sh              # 150 Mbit/s senders, 600 Mbit/s into the receiver
# Not root: prints why and exits 0 (skipped).
#
# Environment (defaults in brackets):
#   MOVER [target/release/mover]  built with `cargo build --release -p mover`; copied into the work dir at the
#                        start (a rebuild during the run changes nothing)
#   SIZE [1536M; 256M with SMOKE=1]  bytes of the tree (IEC), made once per run on /dev/shm: SMALL_FILES
#                        small files (benches/lib/small-tree.py, 1-256 KiB each, log-uniform) and the rest in
#                        LARGE_FILES large ones of unequal sizes (26, 22, 20, 18 and 14% of the rest with 5: 200-400
#                        MiB each at the default SIZE), so push --shard cuts them into 16 MiB ranges
#   SMALL_FILES [300]; LARGE_FILES [5]; SEED [1]
#   REPEATS [3; 1 with SMOKE=1]   rounds; each round runs every kind in KINDS, the order turned by one per round
#   KINDS ["a b c"]      a: sender 0 alone pushes the whole tree (no --shard) through its RATE link;
#                        b: the four senders push --shard i/4 of the same tree at the same time;
#                        c: calibration: sender 0 alone with its link NOT shaped, into the 4 x RATE link (what
#                        one push reaches on the receiver's link on this machine: b's ceiling)
#   RATE [100M]          each sender's link, SI bits/s (tbf); RX_RATE [4 x RATE]: the receiver's link. Why 100M:
#                        all five namespaces share the VM's 2 cores, and a push paced at 100-200 Mbit/s costs
#                        ~0.3 core whatever its rate (15-19 s of CPU per GiB at 150-200M, run-compress.sh), so
#                        four senders take ~1.1 cores and the receiver of 400 Mbit/s ~0.75 more. With RATE=150M
#                        one unshaped push into the 600M link (run c) reached 306 Mbit/s (CPU-bound, at a load
#                        of 7-11 from other users' compilers); at 100M it reached 323 of 400 Mbit/s with drops
#                        at the link's queue: 4 x 100M is (nearly) reachable here, 4 x 150M is not.
#   POLICY [fair]        push --policy; PUSH_RATE [1.1 x RATE; "none": no --rate]: push --rate (a ceiling under
#                        fair, the rate under fixed); run c uses PUSH_RATE x 4. Tried at RATE=150M, 512 MiB,
#                        one run each: fair 406 Mbit/s in b (a 130), fixed 261 (a 131): fixed senders hold
#                        their rate through the CPU contention of four pushes on two cores and lose more
#                        datagrams; --rate 140M, 165M and none gave a 121, 132 and 130 Mbit/s (noise)
#   QUEUE_MS [20]        the tbf's latency (queue) on each link
#   CHECK [1]            compare the receiver's tree with the source after every run (sha256 of every file)
#   PUSH_TIMEOUT [4 x (SIZE at RATE) + 120 s]; MOVER_PUSH_ARGS, MOVER_SERVE_ARGS: extra arguments (words)
#   RESULTS_DIR [benches/results]
#
# Topology (no other address is ever used; everything stays inside these namespaces), MTU 1500, IPv6 off:
#
#   mvsh-<pid>-s0  eth0 10.77.21.10 --RATE--+
#   mvsh-<pid>-s1  eth0 10.77.21.11 --RATE--+-- br0 --up0 ==4 x RATE==> rx0 10.77.21.1   (all in mvsh-<pid>-r)
#   mvsh-<pid>-s2  eth0 10.77.21.12 --RATE--+   (bridge ports p0-p3)
#   mvsh-<pid>-s3  eth0 10.77.21.13 --RATE--+
#
# - Each sender has its own veth pair (eth0 in the sender, pI in the receiver's namespace, a port of br0); the
#   receiver's address is on rx0, whose peer up0 is a port of the same bridge: one switch, four sender ports
#   and the receiver's port. Offloads off on every veth (tso gso gro tx-udp-segmentation), so datagrams cross
#   at the MTU as on a wire (MACHINE-NOTES: benchmark UDP so).
# - Sender links: `tbf rate RATE burst max(2 ms at RATE, 64 KiB) latency QUEUE_MS` on the sender's eth0, as
#   run-compress.sh: a slower NIC (the sender is held back: no queue in the middle, no loss).
# - The receiver's link: the same tbf at RX_RATE on up0, the switch's port towards the receiver, in the
#   direction switch -> receiver. Every datagram of every sender crosses it, so it models "a 4x faster link
#   into the receiver" with the queue where a switch has it (the port's egress buffer): a bottleneck in the
#   middle of each path when the senders together exceed it, where drops are real losses that push
#   retransmits. The direction receiver -> senders (NAKs, acks, control) is not shaped: small, and a
#   receiver's NIC is full duplex.
#
# Per run: a fresh `mover serve --insecure-no-auth --net udp --listen 10.77.21.1:7421 --root R` (R on /dev/shm,
# new each run) in the receiver's namespace; `mover push --insecure-no-auth --net udp --json --policy POLICY
# [--rate PUSH_RATE] [--shard i/4] TREE mover://10.77.21.1:7421/dest` in each sender's namespace under GNU time.
# All senders read the same TREE on /dev/shm (namespaces share the file system). Measured:
# - Aggregate goodput = tree bytes / the wall clock from just before the first push starts to just after the
#   last one ends (not the sum of each push's own goodput); each push's own start and end (relative to the
#   run's start), its JSON bytes, seconds and goodput_bps, and its user + sys CPU.
# - CPU: /proc/stat busy (all processes of the machine: other users' compilers too) over the run, the pushes'
#   CPU (GNU time) and the server's (/proc/PID/stat over the run); load average before and after each run.
# - Links: bytes, drops and overlimits of every tbf over the run (tc -s), as a share of what the link could
#   have carried in the run's wall time.
# - A run is ok when every push exits 0 and the server runs to the end (then SIGTERM stops it: exit 143),
#   every JSON says verified: true and its shard ("I/4", "0/1" for a and c), the pushes' bytes add up to the
#   tree's bytes exactly (no byte twice, none missing), and (CHECK=1) the sorted list of sha256 and path of
#   every file under R/dest equals the source's (no leftover range, no missing or extra file).
#
# Needs (Debian/Ubuntu packages; the script installs nothing): iproute2 ethtool python3 coreutils time (GNU
# time at /usr/bin/time) iputils-ping openssl.
#
# Output: benches/results/shards-<UTC date-time>.csv (one line per run: date is the run's start, UTC),
# shards-<same>-pushes.csv (one line per push) and shards-<same>.md (the table, the aim, what limited each
# run; also printed). An EXIT trap (also on Ctrl-C and errors) kills what runs in the namespaces, deletes them
# and the work dir (the tree, the receivers' roots, the binary's copy). benches/RESULTS.md is not touched.
set -Eeuo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# log die bytes_of now jget wait_for delete_netns
# shellcheck source-path=SCRIPTDIR source=lib/netns.sh
. "$HERE/lib/netns.sh"

if [[ $(id -u) != 0 ]]; then
    log "SKIP: benches/run-shards.sh needs root (network namespaces, veth, bridge, tc): run it with sudo"
    exit 0
fi

SMOKE=${SMOKE:-0}
if [[ $SMOKE == 1 ]]; then
    SIZE=${SIZE:-256M}
    REPEATS=${REPEATS:-1}
fi
MOVER=${MOVER:-target/release/mover}
SIZE=${SIZE:-1536M}
REPEATS=${REPEATS:-3}
KINDS=${KINDS:-a b c}
SMALL_FILES=${SMALL_FILES:-300}
LARGE_FILES=${LARGE_FILES:-5}
SEED=${SEED:-1}
RATE=${RATE:-100M}
POLICY=${POLICY:-fair}
QUEUE_MS=${QUEUE_MS:-20}
CHECK=${CHECK:-1}
MOVER_PUSH_ARGS=${MOVER_PUSH_ARGS:-}
MOVER_SERVE_ARGS=${MOVER_SERVE_ARGS:-}
RESULTS_DIR=${RESULTS_DIR:-$HERE/results}
N=4 # senders: the issue's four nodes
NS_R="mvsh-$$-r"
NS_S=()
IP_S=()
for i in $(seq 0 $((N - 1))); do NS_S+=("mvsh-$$-s$i"); IP_S+=("10.77.21.1$i"); done
IP_R=10.77.21.1
PORT=7421

for t in ip tc ethtool python3 numfmt timeout ping openssl sha256sum awk; do
    command -v "$t" >/dev/null || die "missing $t (see the package list in the header)"
done
[[ -x /usr/bin/time ]] || die "missing GNU time at /usr/bin/time (package time)"
[[ $MOVER == /* || -x $MOVER || ! -x $REPO/$MOVER ]] || MOVER=$REPO/$MOVER
[[ -x $MOVER ]] || die "no mover binary at $MOVER (build it: cargo build --release -p mover; or set MOVER)"
[[ $("$MOVER" push --help 2>&1 || true) == *--shard* ]] ||
    die "$MOVER push has no --shard (issue 21): rebuild it (cargo build --release -p mover) or set MOVER"
[[ $REPEATS =~ ^[1-9][0-9]*$ ]] || die "REPEATS=$REPEATS: a positive integer"
[[ $SMALL_FILES =~ ^[0-9]+$ && $LARGE_FILES =~ ^[0-9]+$ ]] || die "SMALL_FILES, LARGE_FILES: integers"
for k in $KINDS; do [[ $k == a || $k == b || $k == c ]] || die "kind \"$k\" in KINDS: a, b or c"; done
[[ $POLICY == fair || $POLICY == fixed || $POLICY == low ]] || die "POLICY=$POLICY: fair, fixed or low"
RATE_BPS=$(numfmt --from=si "$RATE") || die "RATE=$RATE: a rate (150M, 1G)"
RX_RATE=${RX_RATE:-$(numfmt --to=si $((RATE_BPS * N)))}
RX_BPS=$(numfmt --from=si "$RX_RATE") || die "RX_RATE=$RX_RATE: a rate (600M, 1G)"
PUSH_RATE=${PUSH_RATE:-$(numfmt --to=si $((RATE_BPS * 11 / 10)))}
if [[ $PUSH_RATE == none ]]; then
    PUSH_RATE_C=none
else
    PUSH_RATE_C=$(numfmt --to=si $(($(numfmt --from=si "$PUSH_RATE") * N)))
fi

TREE_WANT=$(bytes_of "$SIZE")
PUSH_TIMEOUT=${PUSH_TIMEOUT:-$(awk -v b="$TREE_WANT" -v r="$RATE_BPS" 'BEGIN { printf "%d", b * 8 / r * 4 + 120 }')}
shm_free=$(df --output=avail -B1 /dev/shm | tail -1)
((shm_free > 2 * TREE_WANT + (256 << 20))) ||
    die "/dev/shm has $((shm_free >> 20)) MiB free: needs $((2 * TREE_WANT >> 20)) MiB + 256 (the tree and one received copy)"

DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
STAMP=$(date -u +%Y-%m-%d-%H%M)
mkdir -p "$RESULTS_DIR"
CSV=$RESULTS_DIR/shards-$STAMP.csv
PCSV=$RESULTS_DIR/shards-$STAMP-pushes.csv
MD=$RESULTS_DIR/shards-$STAMP.md
CMDLINE="SIZE=$SIZE REPEATS=$REPEATS RATE=$RATE"
[[ $SMOKE != 1 ]] || CMDLINE="SMOKE=1 $CMDLINE"
[[ $RX_BPS == $((RATE_BPS * N)) ]] || CMDLINE+=" RX_RATE=$RX_RATE"
[[ $KINDS == "a b c" ]] || CMDLINE+=" KINDS=\"$KINDS\""
[[ $POLICY == fair ]] || CMDLINE+=" POLICY=$POLICY"
[[ $PUSH_RATE == $(numfmt --to=si $((RATE_BPS * 11 / 10))) ]] || CMDLINE+=" PUSH_RATE=$PUSH_RATE"
[[ $SMALL_FILES == 300 && $LARGE_FILES == 5 ]] || CMDLINE+=" SMALL_FILES=$SMALL_FILES LARGE_FILES=$LARGE_FILES"
[[ $SEED == 1 ]] || CMDLINE+=" SEED=$SEED"
[[ $QUEUE_MS == 20 ]] || CMDLINE+=" QUEUE_MS=$QUEUE_MS"
[[ $CHECK == 1 ]] || CMDLINE+=" CHECK=$CHECK"
[[ -z $MOVER_PUSH_ARGS ]] || CMDLINE+=" MOVER_PUSH_ARGS=\"$MOVER_PUSH_ARGS\""
[[ -z $MOVER_SERVE_ARGS ]] || CMDLINE+=" MOVER_SERVE_ARGS=\"$MOVER_SERVE_ARGS\""
CMDLINE+=" benches/run-shards.sh"

WORK=
SERVE_PID=
cleanup() {
    set +e
    trap - EXIT INT TERM ERR
    [[ -n $SERVE_PID ]] && kill -9 "$SERVE_PID" 2>/dev/null
    delete_netns "${NS_S[@]}" "$NS_R"
    [[ -n $WORK ]] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'rc=$?; if [[ $BASHPID == "$$" ]]; then log "FATAL: line $LINENO: \"$BASH_COMMAND\" returned $rc"; fi' ERR

WORK=$(mktemp -d /dev/shm/mover-shards.XXXXXX)
load1() { cut -d' ' -f1 /proc/loadavg; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# "busy total" jiffies of all cores from /proc/stat (busy: all but idle and iowait).
cpu_jiffies() { awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t; exit }' /proc/stat; }
# user + sys jiffies of a process (all its threads, and its waited-for children).
proc_jiffies() { awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# The GNU time line "WALL USER SYS" (the last line) as user + sys seconds; empty when there is none.
cpu_s() { { tail -1 "$1" 2>/dev/null || true; } | awk '{ if (NF == 3) printf "%.2f", $2 + $3 }'; }
# tc counters of the tbf on NS DEV: "bytes drops overlimits".
tbf_counters() {
    tc -n "$1" -s qdisc show dev "$2" 2>/dev/null | awk '
        $1 == "qdisc" && $2 == "tbf" { h = 1; next }
        h && $1 == "Sent" { gsub(/[,()]/, " "); print $2, $7, $9; exit }'
}

# ---------------------------------------------------------------- plan
read -r -a KIND_LIST <<<"$KINDS"
N_RUNS=$((REPEATS * ${#KIND_LIST[@]}))
est=$(for k in "${KIND_LIST[@]}"; do echo "$k"; done | awk -v b="$TREE_WANT" -v r="$RATE_BPS" -v n="$N" -v k="$REPEATS" \
    '{ rr = ($1 == "a") ? r : r * n; s += k * (b * 8 / rr + 15) } END { printf "%d", s + 30 }')
log "plan: $N_RUNS runs: kinds [$KINDS] x $REPEATS, tree $SIZE, senders' links $RATE, receiver's link $RX_RATE, --policy $POLICY --rate $PUSH_RATE; mover $MOVER"
log "estimated run time: ~$(((est + 59) / 60)) min (ETA $(date -d "@$(($(date +%s) + est))" +%H:%M))"
LOAD_START=$(loadavg)
if awk -v l="$(load1)" 'BEGIN { exit !(l > 0.5) }'; then
    log "WARNING: load average $LOAD_START at the start: something else runs on this machine"
fi

cp "$MOVER" "$WORK/mover"
MOVER_BIN=$WORK/mover
MOVER_VERSION=$("$MOVER_BIN" --version 2>/dev/null | head -1 || echo "mover (version unknown)")
MOVER_COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)

# ---------------------------------------------------------------- the tree
TREE=$WORK/tree
log "creating $TREE: $SMALL_FILES small files and $LARGE_FILES large ones, $SIZE in all (seed $SEED)"
mkdir -p "$TREE/small" "$TREE/large"
python3 "$HERE/lib/small-tree.py" "$TREE/small" "$SMALL_FILES" "$SEED" 1024 262144 log
small_bytes=$(find "$TREE/small" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s }')
rest=$((TREE_WANT - small_bytes))
((rest > 0)) || die "SIZE=$SIZE is smaller than the small files ($small_bytes B)"
# Shares of the rest: unequal, none a multiple of 16 MiB at the defaults (the last range of each is short).
mapfile -t LARGE_SIZES < <(python3 - "$rest" "$LARGE_FILES" <<'PY'
import sys
rest, n = int(sys.argv[1]), int(sys.argv[2])
w = [26, 22, 20, 18, 14] if n == 5 else [n + i for i in range(n)]
sizes = [rest * x // sum(w) for x in w[:n]]
if sizes:
    sizes[0] += rest - sum(sizes)
print("\n".join(map(str, sizes)))
PY
)
for i in "${!LARGE_SIZES[@]}"; do
    f=$TREE/large/big-$i.bin
    openssl enc -aes-128-ctr -nosalt -pass "pass:mover-shards-$SEED-$i" -pbkdf2 -in /dev/zero 2>/dev/null |
        head -c "${LARGE_SIZES[i]}" >"$f" || true # openssl dies of SIGPIPE when head has enough
    [[ $(stat -c %s "$f") == "${LARGE_SIZES[i]}" ]] || die "could not create $f"
done
TREE_BYTES=$(find "$TREE" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s }')
TREE_FILES=$(find "$TREE" -type f | wc -l)
LARGE_MIB=$(for s in "${LARGE_SIZES[@]}"; do echo $((s >> 20)); done | paste -sd/)
log "tree: $TREE_FILES files, $TREE_BYTES bytes (large: $LARGE_MIB MiB; small: $small_bytes B)"
# The reference: "sha256  ./path" of every file, sorted by path.
tree_sums() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0r sha256sum); }
[[ $CHECK != 1 ]] || tree_sums "$TREE" >"$WORK/tree.sums"

# ---------------------------------------------------------------- namespaces
log "namespaces $NS_R (bridge br0, rx0 $IP_R) and ${NS_S[*]}; links $RATE each, $RX_RATE into the receiver"
if_up() { # NS DEV: offloads off, up
    ip netns exec "$1" ethtool -K "$2" tso off gso off gro off tx-udp-segmentation off >/dev/null 2>&1 ||
        die "ethtool -K $2 (in $1) failed"
    ip -n "$1" link set dev "$2" mtu 1500 up
}
# shape NS DEV BPS: tbf on DEV's egress, as run-compress.sh.
shape() {
    local burst
    burst=$(awk -v r="$3" 'BEGIN { b = r * 0.002 / 8; printf "%d", b < 65536 ? 65536 : b }')
    tc -n "$1" qdisc replace dev "$2" root tbf rate "${3}bit" burst "$burst" latency "${QUEUE_MS}ms" ||
        die "tc qdisc replace dev $2 (in $1) root tbf rate ${3}bit burst $burst latency ${QUEUE_MS}ms failed"
}
for ns in "$NS_R" "${NS_S[@]}"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # No IPv6 (no ND/MLD chatter through the shapers).
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip -n "$NS_R" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
ip -n "$NS_R" link set dev br0 up
ip -n "$NS_R" link add up0 type veth peer name rx0
ip -n "$NS_R" link set dev up0 master br0
if_up "$NS_R" up0
if_up "$NS_R" rx0
ip -n "$NS_R" addr add "$IP_R/24" dev rx0
shape "$NS_R" up0 "$RX_BPS"
for i in $(seq 0 $((N - 1))); do
    ip -n "${NS_S[i]}" link add eth0 type veth peer name "p$i" netns "$NS_R"
    ip -n "$NS_R" link set dev "p$i" master br0
    if_up "$NS_R" "p$i"
    if_up "${NS_S[i]}" eth0
    ip -n "${NS_S[i]}" addr add "${IP_S[i]}/24" dev eth0
    shape "${NS_S[i]}" eth0 "$RATE_BPS"
done
# set_sender0 shaped|clean: run c takes sender 0's shaper off.
set_sender0() {
    if [[ $1 == clean ]]; then tc -n "${NS_S[0]}" qdisc del dev eth0 root 2>/dev/null || true; else
        shape "${NS_S[0]}" eth0 "$RATE_BPS"
    fi
}
# Every datagram must cross up0's shaper: the senders must know the receiver's address by rx0's MAC. Linux
# answers ARP for any local address on any interface (the weak host model), so br0 itself would answer too,
# and frames to br0's MAC are delivered straight to the receiver's stack past up0: arp_ignore=1 answers only
# on the interface that holds the address.
ip netns exec "$NS_R" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.br0.arp_ignore=1
RX_MAC=$(ip netns exec "$NS_R" cat /sys/class/net/rx0/address)
for i in $(seq 0 $((N - 1))); do
    ip netns exec "${NS_S[i]}" ping -q -c 2 -i 0.2 -W 2 "$IP_R" >/dev/null || die "${NS_S[i]} cannot reach $IP_R"
    mac=$(ip -n "${NS_S[i]}" neigh show "$IP_R" | awk '{ for (j = 1; j < NF; j++) if ($j == "lladdr") print $(j + 1) }')
    [[ $mac == "$RX_MAC" ]] || die "${NS_S[i]} reaches $IP_R at $mac, not at rx0's $RX_MAC: its datagrams would bypass the receiver's link"
done

# ---------------------------------------------------------------- one run
RUN=0
echo "date,repeat,kind,senders,policy,push_rate,seconds,bytes,goodput_bps,shard_bytes,shard_seconds,shard_end_s,cpu_busy_pct,push_cpu_s,serve_cpu_s,rx_link_bytes,rx_link_drops,rx_link_util_pct,send_link_util_pct,load_before,load_after,ok,note" >"$CSV"
echo "date,repeat,kind,shard,rc,verified,bytes,seconds,goodput_bps,start_s,end_s,cpu_s,link_bytes,link_util_pct" >"$PCSV"

run_once() { # KIND REPEAT: one run (1 or 4 pushes at once), one line in CSV, one per push in PCSV
    local kind=$1 rep=$2 started root i ok=1 note="" src=0 load_before load_after
    local -a senders=() shards=()
    RUN=$((RUN + 1))
    case $kind in
        a) senders=(0); shards=(""); set_sender0 shaped ;;
        b) mapfile -t senders < <(seq 0 $((N - 1))); for i in "${senders[@]}"; do shards+=("$i/$N"); done; set_sender0 shaped ;;
        c) senders=(0); shards=(""); set_sender0 clean ;;
    esac
    local rate=$PUSH_RATE
    [[ $kind != c ]] || rate=$PUSH_RATE_C
    local -a rate_args=()
    [[ $rate == none ]] || rate_args=(--rate "$rate")
    root=$WORK/recv-$RUN
    mkdir -p "$root"
    rm -f "$WORK"/push-*
    : >"$WORK/serve.log"
    # shellcheck disable=SC2086 # extra arguments are words
    ip netns exec "$NS_R" "$MOVER_BIN" serve --insecure-no-auth --net udp --listen "$IP_R:$PORT" --root "$root" \
        $MOVER_SERVE_ARGS 2>"$WORK/serve.log" &
    SERVE_PID=$!
    wait_for "$WORK/serve.log" "listening on" || die "mover serve did not start: $(cat "$WORK/serve.log")"
    started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    load_before=$(load1)
    local -A link0=()
    link0[rx]=$(tbf_counters "$NS_R" up0)
    for i in "${senders[@]}"; do link0[$i]=$(tbf_counters "${NS_S[i]}" eth0); done
    local serve_j0 cpu0 t0 t1 cpu1 serve_j1
    serve_j0=$(proc_jiffies "$SERVE_PID")
    cpu0=$(cpu_jiffies)
    t0=$(now)
    local -a pids=()
    for k in "${!senders[@]}"; do
        i=${senders[k]}
        local -a shard_args=()
        [[ -z ${shards[k]} ]] || shard_args=(--shard "${shards[k]}")
        (
            s=$(now); rc=0
            # shellcheck disable=SC2086 # extra arguments are words
            timeout -k 5 "$PUSH_TIMEOUT" ip netns exec "${NS_S[i]}" /usr/bin/time -f '%e %U %S' -o "$WORK/push-$i.time" \
                "$MOVER_BIN" push --insecure-no-auth --net udp --json --policy "$POLICY" "${rate_args[@]}" \
                "${shard_args[@]}" $MOVER_PUSH_ARGS "$TREE" "mover://$IP_R:$PORT/dest" \
                >"$WORK/push-$i.json" 2>"$WORK/push-$i.err" || rc=$?
            echo "$s $(now) $rc" >"$WORK/push-$i.when"
        ) &
        pids+=($!)
    done
    wait "${pids[@]}" || true
    t1=$(now)
    cpu1=$(cpu_jiffies)
    serve_j1=$(proc_jiffies "$SERVE_PID")
    load_after=$(load1)
    local -A link1=()
    link1[rx]=$(tbf_counters "$NS_R" up0)
    for i in "${senders[@]}"; do link1[$i]=$(tbf_counters "${NS_S[i]}" eth0); done
    # The server runs until told: it must still run now, and end on SIGTERM (143: it has no handler for it;
    # 0 if it gets one).
    if kill -0 "$SERVE_PID" 2>/dev/null; then
        kill -TERM "$SERVE_PID" 2>/dev/null || true
        wait_pid "$SERVE_PID" 30 || src=$?
        [[ $src == 0 || $src == 143 ]] || { ok=0; note+="serve exit $src after SIGTERM; "; }
    else
        wait "$SERVE_PID" 2>/dev/null || src=$?
        ok=0; note+="serve ended during the run (exit $src): $(tail -1 "$WORK/serve.log"); "
    fi
    SERVE_PID=
    for pid in $(ip netns pids "$NS_R" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done

    local wall hz bytes_sum=0 push_cpu=0 shard_bytes="" shard_secs="" shard_end="" send_util=""
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    hz=$(getconf CLK_TCK)
    for k in "${!senders[@]}"; do
        i=${senders[k]}
        local js=$WORK/push-$i.json rc s e b secs gp ver sh cpu want_shard lb lu
        read -r s e rc <"$WORK/push-$i.when"
        b=$(jget "$js" bytes); secs=$(jget "$js" seconds); gp=$(jget "$js" goodput_bps)
        ver=$(jget "$js" verified); sh=$(jget "$js" shard); cpu=$(cpu_s "$WORK/push-$i.time")
        want_shard=${shards[k]:-0/1}
        lb=$(awk -v a="${link0[$i]}" -v b="${link1[$i]}" 'BEGIN { split(a, x, " "); split(b, y, " "); print y[1] - x[1] }')
        lu=$(awk -v lb="$lb" -v r="$RATE_BPS" -v s="$s" -v e="$e" -v k="$kind" \
            'BEGIN { if (k == "c") print ""; else printf "%.1f", lb * 8 / r / (e - s) * 100 }')
        echo "$started,$rep,$kind,${want_shard},$rc,$ver,$b,$secs,$gp,$(awk -v a="$t0" -v b="$s" 'BEGIN { printf "%.3f", b - a }'),$(awk -v a="$t0" -v b="$e" 'BEGIN { printf "%.3f", b - a }'),$cpu,$lb,$lu" >>"$PCSV"
        if [[ $rc != 0 || $ver != true || $sh != "$want_shard" ]]; then
            ok=0
            note+="push $i ($want_shard): exit $rc, verified ${ver:-?}, shard ${sh:-?}: $(tail -1 "$WORK/push-$i.err" | tr ',\n' '; '); "
        fi
        bytes_sum=$((bytes_sum + ${b:-0}))
        push_cpu=$(awk -v a="$push_cpu" -v c="${cpu:-0}" 'BEGIN { printf "%.2f", a + c }')
        shard_bytes+="${shard_bytes:+ }${b:-?}"
        shard_secs+="${shard_secs:+ }${secs:-?}"
        shard_end+="${shard_end:+ }$(awk -v a="$t0" -v b="$e" 'BEGIN { printf "%.2f", b - a }')"
        send_util+="${send_util:+ }$lu"
    done
    [[ $bytes_sum == "$TREE_BYTES" ]] || { ok=0; note+="bytes add up to $bytes_sum, not $TREE_BYTES; "; }
    if [[ $CHECK == 1 ]]; then
        if [[ ! -d $root/dest/tree ]]; then
            ok=0; note+="no $root/dest/tree; "
        elif ! cmp -s "$WORK/tree.sums" <(tree_sums "$root/dest/tree"); then
            ok=0
            note+="the received tree differs: $(diff <(cut -c67- "$WORK/tree.sums") <(tree_sums "$root/dest/tree" | cut -c67-) | grep -c '^[<>]') paths differ, $(diff "$WORK/tree.sums" <(tree_sums "$root/dest/tree") | grep -c '^[<>]') lines; "
        fi
        local extra
        extra=$(find "$root" -mindepth 1 -not -path "$root/dest" -not -path "$root/dest/tree" -not -path "$root/dest/tree/*" | head -3 | tr '\n' ' ')
        [[ -z $extra ]] || note+="also in the root: $extra; "
    fi
    local gp_all cpu_busy serve_cpu rxb rxd rxu
    gp_all=$(awk -v b="$TREE_BYTES" -v w="$wall" 'BEGIN { printf "%.0f", b * 8 / w }')
    cpu_busy=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.1f", (y[1] - x[1]) / (y[2] - x[2]) * 100 }')
    serve_cpu=$(awk -v a="$serve_j0" -v b="$serve_j1" -v hz="$hz" 'BEGIN { printf "%.2f", (b - a) / hz }')
    read -r rxb rxd _ < <(awk -v a="${link0[rx]}" -v b="${link1[rx]}" 'BEGIN { split(a, x, " "); split(b, y, " "); print y[1] - x[1], y[2] - x[2], y[3] - x[3] }')
    rxu=$(awk -v b="$rxb" -v r="$RX_BPS" -v w="$wall" 'BEGIN { printf "%.1f", b * 8 / r / w * 100 }')
    echo "$started,$rep,$kind,${#senders[@]},$POLICY,$rate,$wall,$TREE_BYTES,$gp_all,$shard_bytes,$shard_secs,$shard_end,$cpu_busy,$push_cpu,$serve_cpu,$rxb,$rxd,$rxu,$send_util,$load_before,$load_after,$ok,\"${note%; }\"" >>"$CSV"
    log "  [$RUN/$N_RUNS] $kind #$rep: $(awk -v g="$gp_all" 'BEGIN { printf "%.1f Mbit/s", g / 1e6 }') in $wall s; shards' bytes [$shard_bytes] ended at [$shard_end] s; CPU busy $cpu_busy% (pushes $push_cpu s, serve $serve_cpu s); receiver's link $rxu% ($rxd drops); load $load_before -> $load_after; ok=$ok"
    [[ $ok == 1 && -z $note ]] || log "  note: ${note%; }"
    rm -rf "$root"
}

# ---------------------------------------------------------------- the runs
START=$(date +%s)
for rep in $(seq "$REPEATS"); do
    # The kinds' order turns by one each round, so no kind always runs first or after the same one.
    k=$(((rep - 1) % ${#KIND_LIST[@]}))
    for kind in "${KIND_LIST[@]:k}" "${KIND_LIST[@]:0:k}"; do
        run_once "$kind" "$rep"
    done
done
set_sender0 shaped
log "runs done in $(($(date +%s) - START)) s"
LOAD_END=$(loadavg)

# ---------------------------------------------------------------- table and aim
MACHINE="$(nproc) cores, $(lscpu | grep 'Model name' | sed 's/Model name: *//;s/  */ /g'), kernel $(uname -r), $(awk '/MemTotal/ { printf "%d GiB RAM", $2 / 1048576 + 0.5 }' /proc/meminfo)"
python3 - "$CSV" "$PCSV" "$CMDLINE" "$DATE" "$MACHINE" "$LOAD_START" "$LOAD_END" "$MOVER_VERSION" "$MOVER_COMMIT" \
    "$RATE" "$RX_RATE" "$POLICY" "$PUSH_RATE" "$PUSH_RATE_C" "$TREE_BYTES" "$TREE_FILES" "$LARGE_MIB" "$N" \
    "$QUEUE_MS" "${CSV#"$REPO"/}" "$(nproc)" >"$MD" <<'PY'
import csv, statistics as st, sys
(path_csv, path_pcsv, cmdline, date, machine, load0, load1, version, commit, rate, rx_rate, policy, push_rate,
 push_rate_c, tree_bytes, tree_files, large_mib, n, queue_ms, csv_shown, ncpu) = sys.argv[1:]
tree_bytes, n, ncpu = int(tree_bytes), int(n), int(ncpu)
rows = list(csv.DictReader(open(path_csv)))
pushes = list(csv.DictReader(open(path_pcsv)))
AIM = 3.5


def f(v, d=1):
    return "–" if v is None else f"{v:.{d}f}"


def mbit(r):
    return float(r["goodput_bps"]) / 1e6


print("## Sharding across nodes (issue 21): four shards against one sender\n")
print(f"Generated by `{cmdline}` on {date}.\n")
print(f"Machine: {machine}; load average {load0} at the start, {load1} at the end. {version}, commit {commit}.")
print(f"Topology: four sender namespaces, each with its own veth into a bridge in the receiver's namespace; "
      f"each sender's link `tbf {rate}bit/s` on its own end (a slower NIC), the receiver's link `tbf {rx_rate}bit/s` "
      f"on the bridge's port towards it (switch -> receiver: a queue of {queue_ms} ms in the middle of every path); "
      "MTU 1500, offloads off. "
      f"Tree: {tree_files} files, {tree_bytes} bytes on /dev/shm (large files {large_mib} MiB, cut by --shard into "
      f"16 MiB ranges; the rest small files of 1-256 KiB); the receiver writes to /dev/shm. "
      f"`mover push --insecure-no-auth --net udp --json --policy {policy}"
      f"{'' if push_rate == 'none' else ' --rate ' + push_rate} [--shard I/4]` (run c: --rate {push_rate_c}), "
      "`mover serve --insecure-no-auth --net udp`, fresh root per run. "
      "a: sender 0 alone, whole tree; b: four senders, --shard i/4 each, at once; c: sender 0 alone with its link "
      "unshaped, into the 4x link (b's ceiling on this machine). Goodput = tree bytes / wall clock from the first "
      "push's start to the last one's end. CPU busy: /proc/stat over the run, all processes of the machine "
      f"({ncpu} cores = 100%); pushes and serve: user + sys seconds of mover's own processes.\n")
print("| repeat | run | goodput Mbit/s | wall s | per-shard bytes MiB | shard ends s | sender links busy % | "
      "receiver link busy % (drops) | CPU busy % (mover's share) | load before -> after | ok |")
print("|---|---|---:|---:|---|---|---|---|---|---|---|")
for r in rows:
    mib = " / ".join(f"{int(b) / 1048576:.0f}" if b.isdigit() else b for b in r["shard_bytes"].split())
    wall = float(r["seconds"])
    mover_cpu = float(r["push_cpu_s"]) + float(r["serve_cpu_s"])
    mover_pct = mover_cpu / wall / ncpu * 100
    print(f"| {r['repeat']} | {r['kind']} | {mbit(r):.1f} | {wall:.2f} | {mib} | {r['shard_end_s']} | "
          f"{r['send_link_util_pct'] or '–'} | {r['rx_link_util_pct']} ({r['rx_link_drops']}) | "
          f"{r['cpu_busy_pct']} ({mover_pct:.0f}) | {r['load_before']} -> {r['load_after']} | "
          f"{'yes' if r['ok'] == '1' else 'NO: ' + r['note']} |")

ok = [r for r in rows if r["ok"] == "1"]


def med(kind):
    v = [mbit(r) for r in ok if r["kind"] == kind]
    return st.median(v) if v else None


def ratios():
    """b / a per repeat (both ok in that repeat)."""
    out = []
    for rep in sorted({r["repeat"] for r in rows}, key=int):
        a = [mbit(r) for r in ok if r["repeat"] == rep and r["kind"] == "a"]
        b = [mbit(r) for r in ok if r["repeat"] == rep and r["kind"] == "b"]
        if a and b:
            out.append(b[0] / a[0])
    return out


ga, gb, gc = med("a"), med("b"), med("c")
rs = ratios()
print()
print(f"Medians of the ok runs: a {f(ga)} Mbit/s, b {f(gb)} Mbit/s, c {f(gc)} Mbit/s.")
if rs:
    r = st.median(rs)
    print(f"\n**b / a = {r:.2f}** (median of the per-repeat ratios {', '.join(f'{x:.2f}' for x in rs)}; "
          f"aim >= {AIM}): **{'met' if r >= AIM else 'missed'}**.")
else:
    print(f"\nb / a: not measured (no repeat with both a and b ok); aim >= {AIM}: not measured.")

# What limited it: per run kind, the numbers that say so.
print("\nWhat limited each kind (medians over the ok runs):\n")
for kind in ["a", "b", "c"]:
    rk = [r for r in ok if r["kind"] == kind]
    if not rk:
        continue
    busy = st.median(float(r["cpu_busy_pct"]) for r in rk)
    rx = st.median(float(r["rx_link_util_pct"]) for r in rk)
    drops = st.median(int(r["rx_link_drops"]) for r in rk)
    mover_pct = st.median((float(r["push_cpu_s"]) + float(r["serve_cpu_s"])) / float(r["seconds"]) / ncpu * 100
                          for r in rk)
    serve_pct = st.median(float(r["serve_cpu_s"]) / float(r["seconds"]) * 100 for r in rk)
    cpu = f"CPU busy {busy:.0f}% of {ncpu} cores (mover {mover_pct:.0f}%; the receiver alone {serve_pct:.0f}% of one core)"
    if kind == "b":
        imb, tail, ideal, slow = [], [], [], []
        for r in rk:
            b = [int(x) for x in r["shard_bytes"].split()]
            e = [float(x) for x in r["shard_end_s"].split()]
            imb.append(max(b) / (sum(b) / len(b)))
            ideal.append(sum(b) / max(b))
            tail.append(max(e) - min(e))
            slow.append(b.index(max(b)) == e.index(max(e)))
        # Each shard's own goodput (its JSON) against the single sender's in the same repeat: below 1 when
        # the shards ran slower side by side than one push alone (CPU, the receiver, the shared link).
        speed = []
        for r in rk:
            a = [p for p in pushes if p["repeat"] == r["repeat"] and p["kind"] == "a" and p["verified"] == "true"]
            bs = [float(p["goodput_bps"]) for p in pushes if p["repeat"] == r["repeat"] and p["kind"] == "b"
                  and p["goodput_bps"]]
            if a and bs and a[0]["goodput_bps"]:
                speed.append(st.median(bs) / float(a[0]["goodput_bps"]))
        sp = (f"each shard's own goodput {st.median(speed):.2f}x the single sender's (median shard, same repeat); "
              if speed else "")
        sl = [float(x) for r in rk for x in r["send_link_util_pct"].split()]
        print(f"- **b** (four shards): receiver's link busy {rx:.0f}% of the wall ({drops:.0f} drops at its queue); "
              f"the senders' links {min(sl):.0f}-{max(sl):.0f}% busy over each push's own time; largest shard "
              f"{(st.median(imb) - 1) * 100:.1f}% above the mean, so with equal rates b / a could reach at most "
              f"{st.median(ideal):.2f} (tree / largest shard); the first and last shard ended {st.median(tail):.2f} s "
              f"apart (the largest shard ended last in {sum(slow)} of {len(rk)}); {sp}{cpu}.")
    elif kind == "a":
        sl = st.median(float(r["send_link_util_pct"]) for r in rk)
        print(f"- **a** (one sender): its link busy {sl:.0f}% over the push's time (receiver's link {rx:.0f}%); {cpu}.")
    else:
        print(f"- **c** (one sender, unshaped, into the 4x link): receiver's link busy {rx:.0f}% "
              f"({drops:.0f} drops); {cpu}.")
bad = len(rows) - len(ok)
print(f"\n{len(ok)} ok runs of {len(rows)}{'; failed: ' + str(bad) if bad else ''}. "
      f"Raw rows: `{csv_shown}` (one per run) and `{csv_shown[:-4]}-pushes.csv` (one per push).")
PY
log "results: $CSV, $PCSV and $MD"
cat "$MD"
