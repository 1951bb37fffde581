#!/usr/bin/env bash
# Path MTU discovery (issue 18, item 1): `mover push` with default flags on a veth at MTU 9000 against
# `--mtu 9000` and `--mtu 1500` by hand, alternating in one run: goodput, datagram size and CPU seconds per GiB
# of the sender (push) and the receiver (serve --once).
#
# Usage (root; NOT part of CI; ~2 min with the defaults on 2 cores):
#   sudo benches/run-pmtu.sh                  # SIZE=1G REPEATS=3
#   SIZE=256M REPEATS=1 benches/run-pmtu.sh   # smoke run
# Environment: SIZE (file size, G/M suffix), REPEATS (runs per variant, alternating), MTU (veth MTU, 9000),
# MOVER (binary; default target/release/mover, built if missing).
#
# Only its own namespaces (mvpm-<pid>-s, mvpm-<pid>-r) and 10.77.201.1/.2 on its own veth; an EXIT trap deletes
# them and the work dir. Veth offloads off (tso gso gro tx-udp-segmentation), as in run-network.sh, so every
# datagram crosses as one packet as on a wire. The push uses default flags apart from the variant's --mtu
# (--net auto, --policy fair, encrypted); the receiver runs `serve --net udp`.
set -euo pipefail

SIZE=${SIZE:-1G}
REPEATS=${REPEATS:-3}
MTU=${MTU:-9000}
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
MOVER=${MOVER:-$ROOT_DIR/target/release/mover}
[ -x "$MOVER" ] || (cd "$ROOT_DIR" && cargo build --release -p mover)
S=mvpm-$$-s R=mvpm-$$-r
WORK=$(mktemp -d /dev/shm/mover-pmtu.XXXXXX)
cleanup() {
  for ns in $S $R; do
    for p in $(ip netns pids $ns 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del $ns 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
ip netns add $S; ip netns add $R
ip link add mv0 netns $S type veth peer name mv0 netns $R
for ns in $S $R; do
  ip -n $ns link set lo up
  ip -n $ns link set mv0 mtu "$MTU"
  ip netns exec $ns ethtool -K mv0 tso off gso off gro off tx-udp-segmentation off >/dev/null 2>&1 || true
done
ip -n $S addr add 10.77.201.1/24 dev mv0; ip -n $R addr add 10.77.201.2/24 dev mv0
ip -n $S link set mv0 up; ip -n $R link set mv0 up
head -c "$SIZE" /dev/urandom > "$WORK/src" 2>/dev/null || dd if=/dev/urandom of="$WORK/src" bs=1M \
  count=$(numfmt --from=iec "$SIZE" | awk '{print int($1/1048576)}') status=none
BYTES=$(stat -c %s "$WORK/src")
json() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" "$2" | head -1 | tr -d '"'; }

declare -A GOOD SCPU RCPU DGRAM
run_one() { # $1 variant name, $2.. extra push flags
  local name=$1; shift
  rm -rf "$WORK/root"; mkdir -p "$WORK/root"
  ip netns exec $R /usr/bin/time -f '%U %S' -o "$WORK/rtime" "$MOVER" serve --insecure-no-auth --once --net udp \
    --listen 10.77.201.2:7470 --root "$WORK/root" 2>"$WORK/serve.log" &
  local srv=$!
  for _ in $(seq 100); do grep -q "listening on" "$WORK/serve.log" 2>/dev/null && break; sleep 0.05; done
  ip netns exec $S /usr/bin/time -f '%U %S' -o "$WORK/stime" "$MOVER" push --insecure-no-auth --json "$@" \
    "$WORK/src" mover://10.77.201.2:7470/in >"$WORK/push.json" 2>"$WORK/push.err" || { cat "$WORK/push.err"; exit 1; }
  wait $srv || true
  [ "$(json verified "$WORK/push.json")" = true ] || { echo "not verified: $(cat "$WORK/push.json")"; exit 1; }
  local gib; gib=$(echo "$BYTES / 1073741824" | bc -l)
  GOOD[$name]+="$(echo "$(json goodput_bps "$WORK/push.json") / 1000000000" | bc -l) "
  SCPU[$name]+="$(awk -v g="$gib" '{print ($1+$2)/g}' "$WORK/stime") "
  RCPU[$name]+="$(awk -v g="$gib" '{print ($1+$2)/g}' "$WORK/rtime") "
  DGRAM[$name]="$(json datagram_bytes "$WORK/push.json") ($(json pmtu_source "$WORK/push.json"), net $(json net "$WORK/push.json"))"
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

VARIANTS=("default" "mtu9000" "mtu1500")
for _ in $(seq "$REPEATS"); do
  run_one default
  run_one mtu9000 --mtu 9000
  run_one mtu1500 --mtu 1500
done
echo "mover push over a veth at MTU $MTU, $SIZE from /dev/shm, $REPEATS runs each alternating (medians); $(date -u +%F), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| push flags | datagram bytes | Gbit/s | vs --mtu 1500 | sender CPU-s/GiB | receiver CPU-s/GiB |"
echo "|---|---|---:|---:|---:|---:|"
base=$(echo "${GOOD[mtu1500]}" | median)
for v in "${VARIANTS[@]}"; do
  g=$(echo "${GOOD[$v]}" | median)
  flags=$([ "$v" = default ] && echo "(defaults)" || echo "--mtu ${v#mtu}")
  printf "| %s | %s | %.2f | %.2fx | %.2f | %.2f |\n" "$flags" "${DGRAM[$v]}" "$g" "$(echo "$g / $base" | bc -l)" \
    "$(echo "${SCPU[$v]}" | median)" "$(echo "${RCPU[$v]}" | median)"
done
