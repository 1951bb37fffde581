#!/usr/bin/env bash
# Before/after benchmark of two mover builds in one run: `push` goodput and the CPU each side spends per GiB,
# over loopback and over a veth pair between two network namespaces, at MTU 1500 and 9000 (issue 14: a
# refactor must not make any of them worse by more than run-to-run noise).
#
# Usage (root; NOT part of CI; ~10 min on 2 cores with the defaults):
#   A=/var/tmp/mover-bench/mover-9b19516 B=target/release/mover benches/run-ab.sh
# Environment: A, B (the two binaries; B defaults to a fresh release build of the work tree), A_NAME, B_NAME
# (labels; default: the binaries' file names), DEST_DIR (where the receiver writes; default tmpfs), SIZE (1G), REPEATS (5), PATHS ("lo veth"), MTUS ("1500 9000"),
# EXTRA (flags added to every push, e.g. "--net udp"), RESULTS (benches/results/ab-DATE.csv), OFFLOADS ("off";
# "defaults" keeps the veth's own offloads, as run-peers.sh's default clean rows and the issue's table do).
#
# What it does, so the numbers can be judged:
# - The file is random bytes on tmpfs (/dev/shm) and the receiver writes to tmpfs: the disk is not measured.
# - Each push runs with default flags (encrypted with the default cipher, `fair` policy, `--net auto`), plus
#   `--insecure-no-auth` (plain TCP control channel, on both sides) and `--mtu MTU`; push --json gives the
#   goodput, GNU time wraps each side (push; serve --once) for user+sys CPU seconds, reported per GiB moved.
# - Runs alternate A, B, A, B... in each (path, MTU) cell, so drift of the shared machine hits both alike;
#   medians of REPEATS per cell and build.
# - veth: namespaces mvab-<pid>-s / -r, 10.77.201.1/.2, offloads off (tso gso gro tx-udp-segmentation), so
#   datagrams cross at the MTU as on a wire. An EXIT trap deletes them.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=lib/netns.sh
. "$HERE/lib/netns.sh"

SIZE=${SIZE:-1G}
REPEATS=${REPEATS:-5}
PATHS=${PATHS:-lo veth}
MTUS=${MTUS:-1500 9000}
EXTRA=${EXTRA:-}
OFFLOADS=${OFFLOADS:-off}
PUSH_TIMEOUT=${PUSH_TIMEOUT:-300}
NS_S="mvab-$$-s"
NS_R="mvab-$$-r"
VETH=mvab0
IP_S=10.77.201.1
IP_R=10.77.201.2
PORT=7410
WORK=$(mktemp -d /dev/shm/mover-ab.XXXXXX)
FILE=$WORK/src-$SIZE.bin
# DEST_DIR puts the receiver's files on a real file system (default: the tmpfs work dir: no disk measured).
DEST=$(mktemp -d "${DEST_DIR:-$WORK}/mover-ab-dest.XXXXXX")
DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
RESULTS=${RESULTS:-$HERE/results/ab-$(date -u +%Y-%m-%d-%H%M).csv}

cleanup() {
    set +e
    delete_netns "$NS_S" "$NS_R"
    rm -rf "$WORK" "$DEST"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ $(id -u) == 0 ]] || die "needs root (network namespaces)"
for t in ip ethtool /usr/bin/time openssl; do command -v "$t" >/dev/null || die "missing $t"; done
if [[ -z ${B:-} ]]; then
    log "building mover (release) for B"
    (cd "$REPO" && cargo build --release -q -p mover)
    B=$REPO/target/release/mover
fi
[[ -n ${A:-} && -x $A ]] || die "A (the 'before' binary) is not set or not executable"
[[ -x $B ]] || die "no binary at B=$B"
A_NAME=${A_NAME:-$(basename "$A")}
B_NAME=${B_NAME:-$(basename "$B")}

mkdir -p "$DEST" "$(dirname "$RESULTS")"
make_file "$FILE" "$SIZE"
FILE_BYTES=$(stat -c %s "$FILE")
echo "date,path,mtu,build,repeat,goodput_bps,seconds,packets_sent,packets_retransmitted,net,snd_cpu_s,rcv_cpu_s,snd_cpu_s_per_gib,rcv_cpu_s_per_gib,ok" >"$RESULTS"

ip netns add "$NS_S"
ip netns add "$NS_R"
ip link add "$VETH" netns "$NS_S" type veth peer name "$VETH" netns "$NS_R"
for ns in "$NS_S" "$NS_R"; do
    ip=$IP_S; [[ $ns == "$NS_R" ]] && ip=$IP_R
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip addr add "$ip/24" dev "$VETH"
    ip netns exec "$ns" ip link set "$VETH" up
    if [[ $OFFLOADS == off ]]; then
        ip netns exec "$ns" ethtool -K "$VETH" tso off gso off gro off tx-udp-segmentation off >/dev/null 2>&1 ||
            die "ethtool -K on $VETH failed"
    fi
done

# push_once PATH MTU BUILD_NAME BINARY REPEAT: one push, one CSV row.
push_once() {
    local path=$1 mtu=$2 name=$3 bin=$4 rep=$5 rc=0 src=0 in_s=() in_r=() ip=127.0.0.1
    if [[ $path == veth ]]; then
        in_s=(ip netns exec "$NS_S"); in_r=(ip netns exec "$NS_R"); ip=$IP_R
        for ns in "$NS_S" "$NS_R"; do ip netns exec "$ns" ip link set "$VETH" mtu "$mtu"; done
    fi
    rm -rf "$DEST/in"; : >"$WORK/serve.log"
    "${in_r[@]}" /usr/bin/time -f '%U %S' -o "$WORK/serve.time" \
        "$bin" serve --insecure-no-auth --listen "$ip:$PORT" --root "$DEST" --once 2>"$WORK/serve.log" &
    local spid=$!
    wait_for "$WORK/serve.log" "listening on" || die "$name serve did not start: $(cat "$WORK/serve.log")"
    # shellcheck disable=SC2086
    timeout -k 5 "$PUSH_TIMEOUT" "${in_s[@]}" /usr/bin/time -f '%U %S' -o "$WORK/push.time" \
        "$bin" push --insecure-no-auth --json --mtu "$mtu" $EXTRA "$FILE" "mover://$ip:$PORT/in" \
        >"$WORK/push.json" 2>"$WORK/push.err" || rc=$?
    wait_pid "$spid" 30 || src=$?
    local ok=1
    [[ $rc == 0 && $src == 0 && $(jget "$WORK/push.json" verified) == true ]] || ok=0
    [[ $ok == 1 && $(stat -c %s "$DEST/in/$(basename "$FILE")") == "$FILE_BYTES" ]] || ok=0
    local su ss ru rs
    read -r su ss <"$WORK/push.time" || true
    read -r ru rs <"$WORK/serve.time" || true
    local scpu rcpu gib
    scpu=$(awk -v a="${su:-0}" -v b="${ss:-0}" 'BEGIN{printf "%.2f", a + b}')
    rcpu=$(awk -v a="${ru:-0}" -v b="${rs:-0}" 'BEGIN{printf "%.2f", a + b}')
    gib=$(awk -v n="$FILE_BYTES" 'BEGIN{print n / 1073741824}')
    local gp; gp=$(jget "$WORK/push.json" goodput_bps)
    echo "$DATE,$path,$mtu,$name,$rep,$gp,$(jget "$WORK/push.json" seconds),$(jget "$WORK/push.json" packets_sent),$(jget "$WORK/push.json" packets_retransmitted),$(jget "$WORK/push.json" net),$scpu,$rcpu,$(awk -v c="$scpu" -v g="$gib" 'BEGIN{printf "%.3f", c / g}'),$(awk -v c="$rcpu" -v g="$gib" 'BEGIN{printf "%.3f", c / g}'),$ok" >>"$RESULTS"
    log "  $path mtu=$mtu $name #$rep: $(awk -v g="${gp:-0}" 'BEGIN{printf "%.2f Gbit/s", g/1e9}'), retx $(jget "$WORK/push.json" packets_retransmitted)/$(jget "$WORK/push.json" packets_sent), cpu snd $scpu s rcv $rcpu s, ok=$ok"
    [[ $ok == 1 ]] || log "  failed (rc=$rc/$src): $(tail -2 "$WORK/push.err") / serve: $(tail -2 "$WORK/serve.log")"
    rm -rf "$DEST/in"
}

log "A=$A ($A_NAME)  B=$B ($B_NAME)  SIZE=$SIZE REPEATS=$REPEATS PATHS=$PATHS MTUS=$MTUS EXTRA=$EXTRA OFFLOADS=$OFFLOADS"
for path in $PATHS; do
    for mtu in $MTUS; do
        for rep in $(seq "$REPEATS"); do
            push_once "$path" "$mtu" "$A_NAME" "$A" "$rep"
            push_once "$path" "$mtu" "$B_NAME" "$B" "$rep"
        done
    done
done

# Medians per cell and build, and B/A ratios.
log "results: $RESULTS"
python3 - "$RESULTS" "$A_NAME" "$B_NAME" <<'PY'
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["ok"] == "1"]
a, b = sys.argv[2], sys.argv[3]
cells = sorted({(r["path"], int(r["mtu"])) for r in rows})
med = lambda rs, k: statistics.median(float(r[k]) for r in rs) if rs else float("nan")
print(f"| path | MTU | {a} Gbit/s | {b} Gbit/s | B/A | {a} snd CPU s/GiB | {b} snd | {a} rcv CPU s/GiB | {b} rcv | {a} retx % | {b} retx % |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for path, mtu in cells:
    ra = [r for r in rows if (r["path"], int(r["mtu"]), r["build"]) == (path, mtu, a)]
    rb = [r for r in rows if (r["path"], int(r["mtu"]), r["build"]) == (path, mtu, b)]
    ga, gb = med(ra, "goodput_bps") / 1e9, med(rb, "goodput_bps") / 1e9
    retx = lambda rs: statistics.median(100 * float(r["packets_retransmitted"]) / max(1, float(r["packets_sent"])) for r in rs) if rs else float("nan")
    print(f"| {path} | {mtu} | {ga:.2f} | {gb:.2f} | {gb / ga if ga else float('nan'):.2f} | "
          f"{med(ra, 'snd_cpu_s_per_gib'):.2f} | {med(rb, 'snd_cpu_s_per_gib'):.2f} | "
          f"{med(ra, 'rcv_cpu_s_per_gib'):.2f} | {med(rb, 'rcv_cpu_s_per_gib'):.2f} | {retx(ra):.2f} | {retx(rb):.2f} |")
print(f"\n{len(rows)} verified runs; failed: {sum(1 for r in csv.DictReader(open(sys.argv[1])) if r['ok'] != '1')}")
PY
