#!/usr/bin/env bash
# bench e2e beside bench net and bench disk, on one host in one run (issue 17; benches/RESULTS.md,
# "bench e2e (issue 17)"). Short: about a minute on the 2-core VM.
#
#   benches/run-e2e.sh [OUT_DIR]      (default benches/results/e2e-<UTC date>)
#
# Writes each command's JSON, the SVG of the e2e run and a machine line into OUT_DIR. SIZE (default 1G) is
# the data set; WORK (default /var/tmp/mover-bench-e2e) holds it and the receiving root, and is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-1G}
WORK=${WORK:-/var/tmp/mover-bench-e2e}
OUT=${1:-benches/results/e2e-$(date -u +%F)}
MOVER=${MOVER:-target/release/mover}
[ -x "$MOVER" ] || cargo build --release -p mover
mkdir -p "$OUT" "$WORK"
trap 'rm -rf "$WORK"' EXIT

{
    echo "date: $(date -u +%FT%TZ)"
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r), $(free -g | awk '/Mem:/{print $2}') GiB RAM"
    echo "disk: $(df -T "$WORK" | awk 'NR==2{print $2" on "$1}') ($WORK)"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/machine.txt"

# The one large file: bench disk reads it, bench e2e --file pushes it.
head -c "$SIZE" /dev/urandom > "$WORK/big.bin" 2>/dev/null || dd if=/dev/urandom of="$WORK/big.bin" bs=1M count=1024 status=none
sync
echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
"$MOVER" bench disk --file "$WORK/big.bin" --direct --json > "$OUT/disk-direct.json"
"$MOVER" bench net --seconds 5 --json --plot "$OUT/net.svg" > "$OUT/net-gso.json"
"$MOVER" bench net --seconds 5 --no-gso --json > "$OUT/net-no-gso.json"
"$MOVER" bench e2e --file "$WORK/big.bin" --dir "$WORK" --json > "$OUT/e2e-file.json"
"$MOVER" bench e2e --size "$SIZE" --dir "$WORK" --json --plot "$OUT/e2e.svg" > "$OUT/e2e-dataset.json"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
cat "$OUT/machine.txt"
for f in "$OUT"/*.json; do echo "$f: $(head -c 400 "$f")"; done
