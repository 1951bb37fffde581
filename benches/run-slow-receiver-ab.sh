#!/usr/bin/env bash
# Before/after benchmark of two mover builds against a receiver that cannot keep up (decision 0030): one
# file pushed through a veth (default offloads) to a `mover serve` whose CPU is capped by a cgroup, and to a
# free one, alternating builds, in one run. It measures what a slow receiving host does to the rate policy:
# goodput, datagrams retransmitted, the receiver's socket overflows (`RcvbufErrors`), the highest rate.
#
# Usage (root; NOT part of CI; ~2 min with the defaults):
#   A=/var/tmp/mover-before B=target/release/mover benches/run-slow-receiver-ab.sh
# Environment: A, B (binaries), A_NAME, B_NAME (labels), SIZE (1G), REPEATS (4), QUOTA_US (8000) per
# PERIOD_US (10000): the receiver's CPU share (0.8 of a core), RESULTS (benches/results/ab-slow-receiver-DATE.csv).
#
# What it does: namespaces mvsr-<pid>-s / -r, 10.77.209.1/.2 on one veth with the kernel's default offloads;
# the file is random bytes on tmpfs and the receiver writes to tmpfs (no disk). Each push is
# `mover push --insecure-no-auth --json` to `mover serve --insecure-no-auth --once`; the throttled server
# runs in a cgroup-v1 `cpu` group with cfs_quota_us/cfs_period_us (cgroup v2: cpu.max). RcvbufErrors is
# the receiving namespace's UDP counter (/proc/net/snmp) before and after.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/netns.sh
. "$HERE/lib/netns.sh"

[[ $(id -u) == 0 ]] || die "needs root (network namespaces, cgroups)"
A=${A:?A= the first binary} B=${B:?B= the second binary}
A_NAME=${A_NAME:-$(basename "$A")} B_NAME=${B_NAME:-$(basename "$B")}
SIZE=${SIZE:-1G} REPEATS=${REPEATS:-4} QUOTA_US=${QUOTA_US:-8000} PERIOD_US=${PERIOD_US:-10000}
RESULTS=${RESULTS:-$HERE/results/ab-slow-receiver-$(date -u +%Y-%m-%d-%H%M).csv}
NS_S="mvsr-$$-s" NS_R="mvsr-$$-r" VETH=mvsr0 IP_R=10.77.209.2 PORT=7421
WORK=$(mktemp -d /dev/shm/mover-slowrx.XXXXXX)
CG=''

cleanup() {
    set +e
    delete_netns "$NS_S" "$NS_R"
    [[ -n $CG ]] && rmdir "$CG" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The cgroup the throttled server runs in.
if [[ -d /sys/fs/cgroup/cpu && -w /sys/fs/cgroup/cpu ]]; then
    CG=/sys/fs/cgroup/cpu/mover-slowrx-$$
    mkdir "$CG"
    echo "$PERIOD_US" >"$CG/cpu.cfs_period_us"
    echo "$QUOTA_US" >"$CG/cpu.cfs_quota_us"
elif [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    CG=/sys/fs/cgroup/mover-slowrx-$$
    mkdir "$CG"
    echo "$QUOTA_US $PERIOD_US" >"$CG/cpu.max"
else
    die "no cgroup cpu controller to throttle the receiver with"
fi

ip netns add "$NS_S"
ip netns add "$NS_R"
ip link add "$VETH" netns "$NS_S" type veth peer name "$VETH" netns "$NS_R"
for ns in "$NS_S" "$NS_R"; do
    ip=10.77.209.1
    [[ $ns == "$NS_R" ]] && ip=$IP_R
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip addr add "$ip/24" dev "$VETH"
    ip netns exec "$ns" ip link set "$VETH" up
done
make_file "$WORK/src.bin" "$SIZE"

rcvbuf_errors() { ip netns exec "$NS_R" awk '/^Udp:/ { n++; if (n == 2) print $6 }' /proc/net/snmp; }

# push_once NAME BINARY THROTTLED(0|1) REPEAT: one push, one CSV row.
push_once() {
    local name=$1 bin=$2 slow=$3 rep=$4 before after
    rm -rf "$WORK/dst"
    mkdir -p "$WORK/dst"
    : >"$WORK/serve.log"
    if [[ $slow == 1 ]]; then
        sh -c 'echo $$ >"$1/cgroup.procs"; shift; exec "$@"' sh "$CG" \
            ip netns exec "$NS_R" "$bin" serve --insecure-no-auth --listen "$IP_R:$PORT" --root "$WORK/dst" --once \
            2>"$WORK/serve.log" &
    else
        ip netns exec "$NS_R" "$bin" serve --insecure-no-auth --listen "$IP_R:$PORT" --root "$WORK/dst" --once \
            2>"$WORK/serve.log" &
    fi
    local serve=$!
    wait_for "$WORK/serve.log" "listening on" || die "serve did not start: $(cat "$WORK/serve.log")"
    before=$(rcvbuf_errors)
    ip netns exec "$NS_S" "$bin" push --insecure-no-auth --json "$WORK/src.bin" "mover://$IP_R:$PORT/in" \
        >"$WORK/push.json" 2>"$WORK/push.err" || log "push failed: $(tail -2 "$WORK/push.err")"
    wait "$serve" || true
    after=$(rcvbuf_errors)
    local receiver="free"
    [[ $slow == 1 ]] && receiver="$QUOTA_US/$PERIOD_US us of CPU"
    local gp retx sent maxr
    gp=$(jget "$WORK/push.json" goodput_bps) retx=$(jget "$WORK/push.json" packets_retransmitted)
    sent=$(jget "$WORK/push.json" packets_sent) maxr=$(jget "$WORK/push.json" max_rate_bps)
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ),$name,$receiver,$rep,$(awk -v g="${gp:-0}" 'BEGIN { printf "%.2f", g / 1e9 }'),$retx,$sent,$((after - before)),$(awk -v m="${maxr:-0}" 'BEGIN { printf "%.1f", m / 1e9 }'),$(jget "$WORK/push.json" receiver_stalls)" >>"$RESULTS"
    log "  $name, receiver $receiver, #$rep: $(awk -v g="${gp:-0}" 'BEGIN { printf "%.2f Gbit/s", g / 1e9 }'), retx $retx/$sent, RcvbufErrors $((after - before))"
}

echo "date,build,receiver,run,goodput_gbps,retransmitted,sent,rcvbuf_errors,max_rate_gbps,receiver_stalls" >"$RESULTS"
for rep in $(seq "$REPEATS"); do
    for slow in 1 0; do
        push_once "$A_NAME" "$A" "$slow" "$rep"
        push_once "$B_NAME" "$B" "$slow" "$rep"
    done
done
log "results: $RESULTS"
