#!/usr/bin/env bash
# Rate sweep of mover-wanem: for each --rate, a UDP flood from the sender namespace offered at 1.5 x the rate
# (iperf3 -u, 1472-byte datagrams = 1514-byte frames). Prints what crossed, measured at the receiver's interface
# (`wire`, frame bytes, against the rate) and by iperf3 (`payload`, against rate x 1472/1514, lower when the
# receiving process falls behind: `rcvdrops`), the forwarder's CPU share, its drop counters and how late frames
# left against their computed release, so the highest rate it forwards accurately on this machine can be read
# off. Root only; builds its own three namespaces (10.80.0.1 -> 10.80.0.2) and deletes them on exit.
#
#   benches/wanem/sweep.sh [RATE...]        (default: 500M 1G 1500M 2G 0; 0 = unlimited)
#   env: WANEM=path/to/mover-wanem (default: target/release), SECONDS_PER_RUN=4, DELAY=10ms, REPEAT=1,
#        WANEM_ARGS="--rt-priority 0" (more flags), WANEM_PREFIX="taskset -c 1" (a command to run it under)
set -euo pipefail
cd "$(dirname "$0")/../.."

WANEM=${WANEM:-${CARGO_TARGET_DIR:-target}/release/mover-wanem}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-4}
DELAY=${DELAY:-10ms}
REPEAT=${REPEAT:-1}
RATES=("$@")
[ ${#RATES[@]} -gt 0 ] || RATES=(500M 1G 1500M 2G 0)
[ "$(id -u)" = 0 ] || { echo "sweep.sh: needs root (network namespaces)" >&2; exit 1; }
[ -x "$WANEM" ] || { echo "sweep.sh: no $WANEM (cargo build --release -p mover-wanem)" >&2; exit 1; }

tag="wsw-$$"
SND=$tag-snd MID=$tag-mid RCV=$tag-rcv
work=$(mktemp -d)
cleanup() {
  for ns in $SND $MID $RCV; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  [ -n "${KEEP:-}" ] || rm -rf "$work"; [ -z "${KEEP:-}" ] || echo "kept $work"
}
trap cleanup EXIT

for ns in $SND $MID $RCV; do
  ip netns add "$ns"
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 || true
  ip -n "$ns" link set lo up
done
ip link add wan0 netns $SND type veth peer name wsnd netns $MID
ip link add wan0 netns $RCV type veth peer name wrcv netns $MID
ip -n $SND addr add 10.80.0.1/24 dev wan0
ip -n $RCV addr add 10.80.0.2/24 dev wan0
for ns in $SND $RCV; do
  ip netns exec "$ns" ethtool -K wan0 tso off gso off gro off tx off >/dev/null
  ip -n "$ns" link set wan0 up
done
ip -n $MID link set wsnd up
ip -n $MID link set wrcv up

rcvbuf_errors() {
  ip netns exec $RCV awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1 } else print $c }' /proc/net/snmp
}

# The receiver interface's rx_bytes and when it was read (the middle of the read).
rx_bytes_at() {
  local a b bytes
  a=$(date +%s.%N)
  bytes=$(ip netns exec $RCV cat /sys/class/net/wan0/statistics/rx_bytes)
  b=$(date +%s.%N)
  echo "$bytes $(python3 -c "print(($a + $b) / 2)")"
}

printf '%-8s %8s %9s %7s %9s %9s %6s %8s %9s %8s %8s %s\n' rate offered wire wire_err payload expected cpu \
  qdrops sockdrops rcvdrops kpps_out 'late us p50/p99/max'
for rate in "${RATES[@]}"; do
  for _ in $(seq "$REPEAT"); do
    # Offer 1.5x the rate (unlimited: as much as iperf3 can).
    offer=$(python3 -c "
import re,sys
r='$rate'; m={'k':1e3,'K':1e3,'M':1e6,'G':1e9}
v=float(re.match(r'[0-9.]+',r).group())*m.get(r[-1],1)
print(int(v*1.5) if v else 0)")
    ip netns exec $MID ${WANEM_PREFIX:-} "$WANEM" --a wsnd --b wrcv --delay "$DELAY" --rate "$rate" --queue 100ms \
      --stats-json "$work/stats.json" ${WANEM_ARGS:-} >"$work/out" 2>"$work/err" &
    wp=$!
    for _ in $(seq 100); do grep -q ready "$work/out" && break; sleep 0.05; done
    timeout 60 ip netns exec $RCV iperf3 -s -1 -B 10.80.0.2 --json >"$work/srv.json" 2>&1 &
    sp=$!
    for _ in $(seq 100); do [ -n "$(ip netns exec $RCV ss -Hltn 'sport = :5201')" ] && break; sleep 0.05; done
    e0=$(rcvbuf_errors)
    c0=$(awk '{print $14+$15}' /proc/$wp/stat)
    t0=$(date +%s.%N)
    timeout 60 ip netns exec $SND iperf3 -c 10.80.0.2 -u -b "$offer" -l 1472 -t "$SECONDS_PER_RUN" -w 4M \
      --json >"$work/cli.json" 2>"$work/cli.err" &
    cp=$!
    # The receiver interface's byte counter over the middle of the flood: what the forwarder delivered, whether
    # or not the receiving process kept up.
    sleep 1
    read -r w0 s0 < <(rx_bytes_at)
    sleep $((SECONDS_PER_RUN - 2))
    read -r w1 s1 < <(rx_bytes_at)
    wait $cp || true
    c1=$(awk '{print $14+$15}' /proc/$wp/stat)
    t1=$(date +%s.%N)
    e1=$(rcvbuf_errors)
    wait $sp || true
    kill -TERM $wp
    wait $wp || true
    python3 - "$rate" "$c0" "$c1" "$t0" "$t1" "$e0" "$e1" "$work" "$(getconf CLK_TCK)" "$w0" "$s0" "$w1" "$s1" <<'PY'
import json, re, sys
rate, c0, c1, t0, t1, e0, e1, work, hz, w0, s0, w1, s1 = sys.argv[1:]
wire = (int(w1) - int(w0)) * 8 / (float(s1) - float(s0))
srv = json.load(open(f"{work}/srv.json"))
cli = json.load(open(f"{work}/cli.json"))
st = json.load(open(f"{work}/stats.json"))["forward"]
iv = [i["sum"]["bits_per_second"] for i in srv["intervals"]]
steady = iv[1:-1] if len(iv) > 2 else iv
delivered = sum(steady) / len(steady)
m = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}
r = float(re.match(r"[0-9.]+", rate).group()) * m.get(rate[-1], 1)
expected = r * 1472 / 1514
offered = cli["end"]["sum"]["bits_per_second"]
secs = float(t1) - float(t0)
cpu = (int(c1) - int(c0)) / int(hz) / secs
err = f"{100 * (wire / r - 1):+.1f}%" if r else "-"
print(f"{rate:<8} {offered / 1e6:7.0f}M {wire / 1e6:8.1f}M {err:>7} {delivered / 1e6:8.1f}M {expected / 1e6 if r else 0:8.1f}M "
      f"{100 * cpu:5.0f}% {st['queue_drops']:8d} {st['socket_drops']:9d} {int(e1) - int(e0):8d} "
      f"{st['frames_out'] / secs / 1e3:8.1f} {st['late_us_p50']}/{st['late_us_p99']}/{st['late_us_max']}")
PY
  done
done
