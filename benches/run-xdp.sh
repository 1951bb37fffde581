#!/usr/bin/env bash
# The XDP path against the UDP-socket path over the same veth pair, in one run: goodput, packets per second,
# retransmissions and CPU (user+sys) per GiB on each side, at MTU 1500 and 9000.
#
# Usage (root; NOT part of CI; ~3 min on 2 cores):
#   benches/run-xdp.sh                   # SIZE=1G REPEATS=3
#   PATHS="udp xdp auto" MTUS=1500 RATES_1500=4G benches/run-xdp.sh   # what --net auto picks, side by side
# Environment: SIZE, REPEATS, RATES_1500, RATES_9000 (push --rate list), PATHS (--net values, both ends;
# default "udp xdp"), MTUS (default "1500 9000"), MOVER (binary; default: build it).
#
# What it does, so the numbers can be judged:
# - Its own namespaces (mvx-<pid>-s/-r) and 10.77.201.1/.2 on its own veth; an EXIT trap deletes them.
# - Offloads off on both veth ends (tso gso gro tx-udp-segmentation), so UDP GSO cannot carry 64 KB across
#   the veth in one piece; TX checksum offload stays on.
# - Source and destination on /dev/shm, so the disk is not measured.
# - The paths alternate within each repeat (udp, xdp, udp, xdp, ...), medians of REPEATS.
# - At MTU 9000 native XDP cannot attach on a veth (peer MTU > 3506), so the XDP path runs with --net xdp in
#   generic mode, and its datagrams are capped at 3770 bytes (one 4 KiB UMEM frame); the UDP path sends 8972.
set -euo pipefail
SIZE=${SIZE:-1G}
REPEATS=${REPEATS:-3}
RATES_1500=${RATES_1500:-2G 4G}
RATES_9000=${RATES_9000:-4G 8G}
PATHS=${PATHS:-udp xdp}
MTUS=${MTUS:-1500 9000}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
NS_S="mvx-$$-s"; NS_R="mvx-$$-r"; IP_S=10.77.201.1; IP_R=10.77.201.2; PORT=7450
WORK=$(mktemp -d /dev/shm/mover-bench-xdp.XXXXXX)
DAY=$(date -u +%Y-%m-%d)
CSV=$HERE/results/xdp-$DAY.csv
cleanup() {
  for ns in "$NS_S" "$NS_R"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
if [ -z "${MOVER:-}" ]; then
  (cd "$REPO" && cargo build --release -q)
  MOVER=$REPO/target/release/mover
fi
head -c "$(numfmt --from=iec "$SIZE")" /dev/urandom > "$WORK/src.bin"
mkdir -p "$HERE/results"
# Plain TCP control channel on the test path: builds with daemon authentication need the flag on both sides.
INSECURE=()
"$MOVER" serve --help 2>/dev/null | grep -q -- '--insecure-no-auth' && INSECURE=(--insecure-no-auth)
echo "mtu,path,rate,repeat,goodput_gbps,mpps,datagram_bytes,retransmitted_pct,sender_cpu_s_per_gib,receiver_cpu_s_per_gib,mode,attach,net" > "$CSV"

setup() { # $1 = MTU
  cleanup 2>/dev/null || true; mkdir -p "$WORK"; [ -f "$WORK/src.bin" ] || head -c "$(numfmt --from=iec "$SIZE")" /dev/urandom > "$WORK/src.bin"
  ip netns add "$NS_S"; ip netns add "$NS_R"
  ip link add mv0 netns "$NS_S" type veth peer name mv0 netns "$NS_R"
  for ns in "$NS_S" "$NS_R"; do
    ip -n "$ns" link set lo up; ip -n "$ns" link set mv0 mtu "$1"
    ip netns exec "$ns" ethtool -K mv0 tso off gso off gro off tx-udp-segmentation off >/dev/null 2>&1 || true
  done
  ip -n "$NS_S" addr add $IP_S/24 dev mv0; ip -n "$NS_R" addr add $IP_R/24 dev mv0
  ip -n "$NS_S" link set mv0 up; ip -n "$NS_R" link set mv0 up
}

one() { # $1 mtu $2 path $3 rate $4 repeat
  rm -rf "$WORK/dst"; mkdir -p "$WORK/dst"
  local net=$2
  ip netns exec "$NS_R" /usr/bin/time -f '%U %S' -o "$WORK/serve.time" "$MOVER" serve "${INSECURE[@]}" --once --net "$net" \
    --listen $IP_R:$PORT --root "$WORK/dst" 2> "$WORK/serve.log" &
  local spid=$!
  for _ in $(seq 100); do grep -q "listening on" "$WORK/serve.log" 2>/dev/null && break; sleep 0.05; done
  ip netns exec "$NS_S" /usr/bin/time -f '%U %S' -o "$WORK/push.time" "$MOVER" push "${INSECURE[@]}" --json --net "$net" \
    --mtu "$1" --rate "$3" "$WORK/src.bin" mover://$IP_R:$PORT/in > "$WORK/push.json" 2> "$WORK/push.log" || {
      echo "push failed: $(cat "$WORK/push.log")" >&2; kill $spid 2>/dev/null; return; }
  wait $spid || true
  python3 - "$1" "$2" "$3" "$4" "$WORK" "$(numfmt --from=iec "$SIZE")" >> "$CSV" <<'PY'
import json, sys, re
mtu, path, rate, rep, work, size = sys.argv[1:7]
j = json.load(open(f"{work}/push.json"))
cpu = lambda f: sum(map(float, open(f).read().split()[-2:]))
gib = int(size) / 2**30
log = open(f"{work}/serve.log").read()
m = re.search(r"net xdp \([^,]+, ([^,]+), ([^,]+),", log)
mode, attach = (m.group(1), m.group(2)) if m else ("-", "-")
print(",".join(map(str, [mtu, path, rate, rep, round(j["goodput_bps"] / 1e9, 3),
    round(j["packets_sent"] / j["seconds"] / 1e6, 3), j["datagram_bytes"],
    round(100 * j["packets_retransmitted"] / max(1, j["packets_sent"]), 2),
    round(cpu(f"{work}/push.time") / gib, 3), round(cpu(f"{work}/serve.time") / gib, 3), mode, attach,
    j["net"]])))
PY
  tail -1 "$CSV"
}

for mtu in $MTUS; do
  setup "$mtu"
  rates=$RATES_1500; [ "$mtu" = 9000 ] && rates=$RATES_9000
  for rate in $rates; do
    for rep in $(seq "$REPEATS"); do
      for path in $PATHS; do one "$mtu" "$path" "$rate" "$rep"; done
    done
  done
done
echo "CSV: $CSV"
python3 - "$CSV" <<'PY'
import csv, sys, statistics as st
rows = list(csv.DictReader(open(sys.argv[1])))
keys = sorted({(r["mtu"], r["rate"], r["path"]) for r in rows}, key=lambda k: (int(k[0]), k[1], k[2]))
print("| MTU | --rate | --net | took | goodput Gbit/s | Mpps | datagram B | retrans % | sender CPU s/GiB | receiver CPU s/GiB | mode |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for k in keys:
    rs = [r for r in rows if (r["mtu"], r["rate"], r["path"]) == k]
    med = lambda c: st.median(float(r[c]) for r in rs)
    mode = rs[0]["mode"] + "/" + rs[0]["attach"] if rs[0]["mode"] != "-" else "-"
    took = "/".join(sorted({r.get("net") or k[2] for r in rs}))
    print(f"| {k[0]} | {k[1]} | {k[2]} | {took} | {med('goodput_gbps'):.2f} | {med('mpps'):.3f} | {rs[0]['datagram_bytes']} | {med('retransmitted_pct'):.2f} | {med('sender_cpu_s_per_gib'):.2f} | {med('receiver_cpu_s_per_gib'):.2f} | {mode} |")
PY
