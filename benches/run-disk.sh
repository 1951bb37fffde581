#!/usr/bin/env bash
# Disk reader vs fio, in one run, on one file: `mover bench disk` (the reader engine alone) against
# `fio --ioengine=io_uring` with the same block size and queue depth, each point repeated and the median kept.
#
#   (a) cold cache, O_DIRECT       mover --direct        vs  fio --direct=1
#   (b) page cache (file pre-read) mover                 vs  fio --direct=0 --invalidate=0
#   (c) cold cache, buffered       mover                 vs  fio --direct=0   (for reference: readahead path)
#
# fio's default --invalidate=1 drops the file's pages before a job, which turns a "page cache" run into a
# cold one; (b) passes --invalidate=0.
#
# Needs: root (drop_caches), fio (`apt-get install -y fio`), python3, a release build
# (`cargo build --release`; built here if missing). Writes the table into benches/RESULTS.md under
# "## Disk reader vs fio" (replacing an earlier version of that section, always at the end of the file).
#
# Environment: FILE (default /var/tmp/mover-bench/disk-8g.bin), SIZE_GIB (8; 4 if the file system lacks
# room), REPEATS (3), BLOCK (1M), QD (16), QUIET_WAIT_S (600), RESULTS (benches/RESULTS.md), MOVER (binary).
set -euo pipefail
cd "$(dirname "$0")/.."

FILE=${FILE:-/var/tmp/mover-bench/disk-8g.bin}
REPEATS=${REPEATS:-3}
BLOCK=${BLOCK:-1M}
QD=${QD:-16}
QUIET_WAIT_S=${QUIET_WAIT_S:-600}
RESULTS=${RESULTS:-benches/RESULTS.md}
MOVER=${MOVER:-${CARGO_TARGET_DIR:-target}/release/mover}

[ "$(id -u)" = 0 ] || { echo "run-disk.sh: needs root (drop_caches)" >&2; exit 1; }
command -v fio >/dev/null || { echo "run-disk.sh: fio missing: apt-get install -y fio" >&2; exit 1; }
[ -x "$MOVER" ] || cargo build --release

# The test file: 8 GiB if there is room (plus 4 GiB to spare), else 4 GiB. Written, not fallocated: reads of
# unwritten extents never reach the disk.
mkdir -p "$(dirname "$FILE")"
if [ -z "${SIZE_GIB:-}" ]; then
    avail_gib=$(( $(df --output=avail -k "$(dirname "$FILE")" | tail -1) / 1048576 ))
    if [ -f "$FILE" ] || [ "$avail_gib" -ge 12 ]; then SIZE_GIB=8; else SIZE_GIB=4; fi
fi
if [ "$(stat -c %s "$FILE" 2>/dev/null || echo 0)" != $((SIZE_GIB << 30)) ]; then
    echo "writing ${SIZE_GIB} GiB to $FILE"
    dd if=/dev/zero of="$FILE" bs=1M count=$((SIZE_GIB << 10)) oflag=direct status=none
fi

# Wait for a quiet machine (another engineer's network benchmarks, scp/rsync comparisons and builds share the
# two cores and the disk). Process names are matched exactly for cargo/rustc/iperf3/scp/rsync: `pgrep -f cargo`
# would also match any process whose command line merely contains a path like ~/.cargo/bin.
busy() {
    local name
    for name in cargo rustc iperf3 scp rsync; do pgrep -x "$name" >/dev/null && return 0; done
    pgrep -f '(^|/)mover push' >/dev/null
}
waited=0
while busy && [ "$waited" -lt "$QUIET_WAIT_S" ]; do sleep 5; waited=$((waited + 5)); done
under_load=no
if busy; then under_load="yes (gave up waiting after ${QUIET_WAIT_S} s: $(pgrep -a '^(cargo|rustc|iperf3|scp|rsync)$' | head -3 | cut -c1-80 | tr '\n' ';') $(pgrep -fa '(^|/)mover push' | head -1 | cut -c1-80))"; fi
echo "waited ${waited} s for a quiet machine; under load: $under_load"

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
mover_bps() { "$MOVER" bench disk --file "$FILE" --block "$BLOCK" --qd "$QD" --json "$@" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_per_s"])'; }
fio_bps() {
    fio --name=mover-cmp --filename="$FILE" --ioengine=io_uring --rw=read --bs="$BLOCK" --iodepth="$QD" \
        --numjobs=1 --output-format=json "$@" | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["read"]["bw_bytes"])'
}
MOVER_CMD=("$MOVER" bench disk --file "$FILE" --block "$BLOCK" --qd "$QD" --json)
FIO_CMD="fio --name=mover-cmp --filename=$FILE --ioengine=io_uring --rw=read --bs=$BLOCK --iodepth=$QD --numjobs=1 --output-format=json"

declare -A samples
for rep in $(seq 1 "$REPEATS"); do
    # Alternate who goes first, so a drift over time does not favour one side.
    for who in $( [ $((rep % 2)) = 1 ] && echo "mover fio" || echo "fio mover"); do
        drop
        if [ "$who" = mover ]; then v=$(mover_bps --direct); else v=$(fio_bps --direct=1); fi
        samples[a_$who]+="$v "
        echo "rep $rep (a) cold O_DIRECT  $who: $(python3 -c "print(f'{$v/1e6:.0f} MB/s')")"
    done
    for who in $( [ $((rep % 2)) = 1 ] && echo "mover fio" || echo "fio mover"); do
        cat "$FILE" > /dev/null # pre-read: the whole file in the page cache
        if [ "$who" = mover ]; then v=$(mover_bps); else v=$(fio_bps --direct=0 --invalidate=0); fi
        samples[b_$who]+="$v "
        echo "rep $rep (b) page cache     $who: $(python3 -c "print(f'{$v/1e6:.0f} MB/s')")"
    done
    for who in $( [ $((rep % 2)) = 1 ] && echo "mover fio" || echo "fio mover"); do
        drop
        if [ "$who" = mover ]; then v=$(mover_bps); else v=$(fio_bps --direct=0); fi
        samples[c_$who]+="$v "
        echo "rep $rep (c) cold buffered  $who: $(python3 -c "print(f'{$v/1e6:.0f} MB/s')")"
    done
done

if [ "$under_load" = no ] && busy; then under_load="partly (other work started during the run)"; fi

backend=$("$MOVER" bench disk --file "$FILE" --block "$BLOCK" --qd "$QD" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["disk"])')

export RESULTS FILE SIZE_GIB REPEATS BLOCK QD under_load waited backend FIO_CMD
export MOVER_CMD_STR="${MOVER_CMD[*]}"
export A_MOVER="${samples[a_mover]}" A_FIO="${samples[a_fio]}" B_MOVER="${samples[b_mover]}" B_FIO="${samples[b_fio]}"
export C_MOVER="${samples[c_mover]}" C_FIO="${samples[c_fio]}"
export NPROC=$(nproc) KERNEL=$(uname -r) CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1) DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
export FIO_VERSION=$(fio --version) LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - <<'EOF'
import os, re, statistics
e = os.environ
def med(s): return statistics.median(float(x) for x in s.split())
def fmt(v): return f"{v/1e6:,.0f} MB/s ({v/2**30:.2f} GiB/s)"
def all_(s): return " / ".join(f"{float(x)/1e6:,.0f}" for x in s.split())
rows = [
    ("(a) cold cache, O_DIRECT", "A", "`--direct`", "`--direct=1`"),
    ("(b) page cache, buffered (pre-read)", "B", "(none)", "`--direct=0 --invalidate=0`"),
    ("(c) cold cache, buffered (reference)", "C", "(none)", "`--direct=0`"),
]
out = ["## Disk reader vs fio", ""]
out.append(f"Measured {e['DATE']} by `benches/run-disk.sh`: `mover bench disk` (the reader engine alone, backend "
           f"`{e['backend']}`) against fio with `ioengine=io_uring`, the same {e['SIZE_GIB']} GiB file on ext4 "
           f"(virtio-blk), block {e['BLOCK']}, queue depth {e['QD']}; median of {e['REPEATS']} runs, mover and fio "
           "alternating, caches dropped (`echo 3 > /proc/sys/vm/drop_caches`) before each cold run and the file "
           "pre-read (`cat > /dev/null`) before each page-cache run.")
out.append("")
out.append(f"Machine: {e['NPROC']} cores ({e['CPU']}), Linux {e['KERNEL']}, {e['FIO_VERSION']}. "
           f"Waited {e['waited']} s for a quiet machine; measured under load: {e['under_load']} "
           f"(load average at the end: {e['LOADAVG']}).")
out.append("")
out.append("| case | mover (median) | fio (median) | mover / fio | mover runs, MB/s | fio runs, MB/s |")
out.append("|---|---|---|---|---|---|")
for name, k, _, _ in rows:
    m, f = med(e[f"{k}_MOVER"]), med(e[f"{k}_FIO"])
    out.append(f"| {name} | {fmt(m)} | {fmt(f)} | {m/f:.2f} | {all_(e[k+'_MOVER'])} | {all_(e[k+'_FIO'])} |")
out.append("")
out.append("Commands (extra flags per case in the table below):")
out.append("")
out.append("```")
out.append(e["MOVER_CMD_STR"])
out.append(e["FIO_CMD"])
out.append("```")
out.append("")
out.append("| case | mover adds | fio adds |")
out.append("|---|---|---|")
for name, _, m, f in rows:
    out.append(f"| {name} | {m} | {f} |")
out.append("")
section = "\n".join(out)

path = e["RESULTS"]
text = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
# Drop an earlier version of this section (up to the next `## ` heading or the end), then append at the end.
text = re.sub(r"(?ms)^## Disk reader vs fio\n.*?(?=^## |\Z)", "", text).rstrip("\n") + "\n\n" + section
open(path, "w").write(text)
print(section)
EOF
