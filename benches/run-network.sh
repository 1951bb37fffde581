#!/usr/bin/env bash
# Side-by-side network benchmark: mover push vs. the raw UDP ceiling (mover bench net), iperf3 TCP (cubic, bbr),
# scp and rsync over a real OpenSSH sshd, between two network namespaces joined by a veth pair.
#
# Usage (root; NOT part of CI; a full run takes ~10 min on 2 cores):
#   sudo benches/run-network.sh                    # SIZE=4G REPEATS=3 MTUS="1500 9000"
#   SIZE=1G REPEATS=1 benches/run-network.sh       # smoke run
# Environment: SIZE (file size, G/M suffix), REPEATS (median of N), MTUS, RATES_1500 / RATES_9000 (push --rate
# sweep), SWEEP_SIZE (file size for the sweep), MOVER (binary; default: build it), KEEP_FILE=1 (keep /tmp file).
#
# Needs (Debian/Ubuntu packages; the script installs nothing):
#   iproute2 nftables iperf3 openssh-server openssh-client rsync ethtool time (/usr/bin/time), util-linux, coreutils
#
# What it does, so the numbers can be judged:
# - Only its own namespaces (mvb-<pid>-s sender, mvb-<pid>-r receiver) and 10.77.200.1/.2 on its own veth;
#   an EXIT trap kills what runs in them, deletes them (and the veth) and the work dir.
# - Veth offloads OFF on both ends for every tool: tso gso gro tx-udp-segmentation (`ethtool -K`), so every
#   protocol crosses the veth in MTU-sized packets as on a wire (with tx-udp-segmentation on, a UDP GSO
#   "packet" of 64 KB crosses unsplit: a memcpy benchmark). TX checksum offload stays on (every real NIC has it).
# - Socket buffers: the script tries `sysctl net.core.{r,w}mem_max=128M` inside the namespaces; on kernels
#   where these are read-only in a child netns it says so. mover asks for 64 MiB with SO_{RCV,SND}BUFFORCE
#   (root), which ignores the ceiling; iperf3/ssh use TCP autotuning (net.ipv4.tcp_{r,w}mem, unchanged).
# - push: first a --rate sweep with one SWEEP_SIZE (default: SIZE) push per rate; a short file hides an
#   overload, because the receiver's 64 MiB socket buffer absorbs it (the RTT grows instead of loss). Two
#   rates are then measured REPEATS times with the SIZE file: "clean", the best goodput among sweep points
#   that retransmitted <= 1% of the packets sent, and "peak", the best goodput of any verified sweep point
#   (often with heavy retransmission: the rate is fixed, mover has no congestion control yet).
# - Peak RSS and CPU (user+sys) come from GNU /usr/bin/time -f '%M %U %S' wrapped around each mover process
#   (sender: push; receiver: serve --once) and around the scp/rsync client (the ssh child included; the
#   sshd side is not measured).
# - Medians of REPEATS runs, each column separately.
set -euo pipefail

SIZE=${SIZE:-4G}
REPEATS=${REPEATS:-3}
MTUS=${MTUS:-1500 9000}
RATES_1500=${RATES_1500:-1G 1500M 2G 3G 4G}
RATES_9000=${RATES_9000:-1500M 2G 3G 5G 10G}
SWEEP_SIZE=${SWEEP_SIZE:-$SIZE}
IPERF_SECONDS=${IPERF_SECONDS:-8}
BLAST_SECONDS=${BLAST_SECONDS:-5}
PUSH_TIMEOUT=${PUSH_TIMEOUT:-300}

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
NS_S="mvb-$$-s"
NS_R="mvb-$$-r"
VETH=mv0
IP_S=10.77.200.1
IP_R=10.77.200.2
PORT=7400
SSH_PORT=2222
WORK=$(mktemp -d /tmp/mover-bench-net.XXXXXX)
FILE=/tmp/mover-bench-$SIZE.bin
SWEEP_FILE=/tmp/mover-bench-$SWEEP_SIZE.bin
DEST=$WORK/dest
DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
DAY=$(date -u +%Y-%m-%d)
CSV=$HERE/results/network-$DAY.csv
CMDLINE="SIZE=$SIZE REPEATS=$REPEATS MTUS=\"$MTUS\" benches/run-network.sh"

# log die bytes_of now jget median wait_for wait_pid make_file delete_netns start_sshd wait_sshd
# shellcheck source=lib/netns.sh
. "$HERE/lib/netns.sh"

cleanup() {
    set +e
    delete_netns "$NS_S" "$NS_R"
    rm -rf "$WORK"
    [[ ${KEEP_FILE:-0} == 1 ]] || rm -f "$FILE" "$SWEEP_FILE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ $(id -u) == 0 ]] || die "needs root (network namespaces)"
for t in ip nft ethtool iperf3 /usr/sbin/sshd ssh scp ssh-keygen rsync /usr/bin/time unshare; do
    command -v "$t" >/dev/null || die "missing $t (see the package list in the header)"
done

in_s() { ip netns exec "$NS_S" "$@"; }
in_r() { ip netns exec "$NS_R" "$@"; }
add() { [[ -n $1 && -n $2 ]] && awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a + b}' || true; }

# ---------------------------------------------------------------- build, files, path
if [[ -z ${MOVER:-} ]]; then
    log "building mover (release)"
    (cd "$REPO" && CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target} cargo build --release -q)
    MOVER=${CARGO_TARGET_DIR:-$REPO/target}/release/mover
fi
[[ -x $MOVER ]] || die "no mover binary at $MOVER"
# Plain TCP control channel on the test path: builds with daemon authentication need the flag on both sides.
INSECURE=()
"$MOVER" serve --help 2>/dev/null | grep -q -- '--insecure-no-auth' && INSECURE=(--insecure-no-auth)
mkdir -p "$HERE/results" "$DEST"

make_file "$FILE" "$SIZE"
make_file "$SWEEP_FILE" "$SWEEP_SIZE"
FILE_BYTES=$(stat -c %s "$FILE")

ip netns add "$NS_S"
ip netns add "$NS_R"
ip link add "$VETH" netns "$NS_S" type veth peer name "$VETH" netns "$NS_R"
OFFLOADS="tso off gso off gro off tx-udp-segmentation off"
SYSCTL_NOTE="raised to 128 MiB in both namespaces"
for ns in "$NS_S" "$NS_R"; do
    ip=$IP_S; [[ $ns == "$NS_R" ]] && ip=$IP_R
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip addr add "$ip/24" dev "$VETH"
    ip netns exec "$ns" ip link set "$VETH" up
    # shellcheck disable=SC2086
    ip netns exec "$ns" ethtool -K "$VETH" $OFFLOADS >/dev/null 2>&1 || die "ethtool -K $OFFLOADS failed"
    # sysctl exits 0 even when a write is refused: read the values back.
    ip netns exec "$ns" sysctl -qw net.core.rmem_max=134217728 net.core.wmem_max=134217728 2>/dev/null || true
    if [[ $(ip netns exec "$ns" sysctl -n net.core.rmem_max) != 134217728 ||
        $(ip netns exec "$ns" sysctl -n net.core.wmem_max) != 134217728 ]]; then
        SYSCTL_NOTE="read-only inside a child netns on this kernel (left at $(sysctl -n net.core.rmem_max) B); mover uses SO_RCVBUFFORCE/SO_SNDBUFFORCE (64 MiB) as root"
    fi
done
log "socket buffer ceilings: $SYSCTL_NOTE"

# sshd in the receiver namespace: own host key, throwaway client key, non-default port (lib/netns.sh).
start_sshd "$NS_R" "$IP_R" "$SSH_PORT" "$WORK"
wait_sshd "$NS_S" "$IP_R" "$SSH_PORT" "$WORK"

echo "date,mtu,tool,phase,rate,repeat,goodput_bps,seconds,packets_sent,packets_retransmitted,rtt_ms,snd_rss_kib,rcv_rss_kib,snd_cpu_s,rcv_cpu_s,bytes,ok" >"$CSV.tmp"
row() { echo "$DATE,$*" >>"$CSV.tmp"; }

# ---------------------------------------------------------------- one measurement each
# push FILE MTU RATE PHASE REPEAT -> a CSV row; returns 1 if the push failed
run_push() {
    local file=$1 mtu=$2 rate=$3 phase=$4 rep=$5 tool=${6:-mover-push} bytes rc=0
    bytes=$(stat -c %s "$file")
    rm -rf "$DEST/in"; : >"$WORK/serve.log"
    in_r /usr/bin/time -f '%M %U %S' -o "$WORK/serve.time" \
        "$MOVER" serve "${INSECURE[@]}" --listen "$IP_R:$PORT" --root "$DEST" --once 2>"$WORK/serve.log" &
    local spid=$!
    wait_for "$WORK/serve.log" "listening on" || die "mover serve did not start: $(cat "$WORK/serve.log")"
    timeout -k 5 "$PUSH_TIMEOUT" ip netns exec "$NS_S" /usr/bin/time -f '%M %U %S' -o "$WORK/push.time" \
        "$MOVER" push "${INSECURE[@]}" --json --rate "$rate" --mtu "$mtu" "$file" "mover://$IP_R:$PORT/in" \
        >"$WORK/push.json" 2>"$WORK/push.err" || rc=$?
    local src=0
    wait_pid "$spid" 30 || src=$?
    local ok=1
    [[ $rc == 0 && $src == 0 && $(jget "$WORK/push.json" verified) == true ]] || ok=0
    [[ $ok == 1 && $(stat -c %s "$DEST/in/$(basename "$file")") == "$bytes" ]] || ok=0
    read -r s_rss s_u s_s <"$WORK/push.time" || true
    read -r r_rss r_u r_s <"$WORK/serve.time" || true
    row "$mtu,$tool,$phase,$rate,$rep,$(jget "$WORK/push.json" goodput_bps),$(jget "$WORK/push.json" seconds),$(jget "$WORK/push.json" packets_sent),$(jget "$WORK/push.json" packets_retransmitted),$(jget "$WORK/push.json" rtt_ms),${s_rss:-},${r_rss:-},$(add "${s_u:-}" "${s_s:-}"),$(add "${r_u:-}" "${r_s:-}"),$bytes,$ok"
    log "  push ($phase) mtu=$mtu rate=$rate #$rep: $(jget "$WORK/push.json" goodput_bps | awk '{printf "%.2f Gbit/s", $1/1e9}'), retx $(jget "$WORK/push.json" packets_retransmitted)/$(jget "$WORK/push.json" packets_sent), ok=$ok"
    if [[ $ok != 1 ]]; then
        log "  push failed (rc=$rc): $(cat "$WORK/push.err") $(cat "$WORK/push.json") / serve: $(tail -3 "$WORK/serve.log")"
        return 1
    fi
    rm -rf "$DEST/in"
}

run_blast() { # MTU REPEAT: mover bench net at push's datagram size
    local mtu=$1 rep=$2 size=$(($1 - 28))
    in_r "$MOVER" bench net --listen "$IP_R:$PORT" --seconds $((BLAST_SECONDS + 10)) --json >"$WORK/blast-r.json" 2>"$WORK/blast-r.err" &
    local rpid=$!
    sleep 0.3
    in_s "$MOVER" bench net --to "$IP_R:$PORT" --size "$size" --seconds "$BLAST_SECONDS" --json >"$WORK/blast-s.json" 2>"$WORK/blast-s.err" || true
    wait_pid "$rpid" $((BLAST_SECONDS + 15)) || log "  blast receiver: $(cat "$WORK/blast-r.err")"
    local gp; gp=$(jget "$WORK/blast-r.json" goodput_bps)
    local ok=1; [[ -n $gp ]] || ok=0
    row "$mtu,mover-bench-net,main,max,$rep,$gp,$(jget "$WORK/blast-r.json" seconds),$(jget "$WORK/blast-s.json" datagrams),,,,,,,$(jget "$WORK/blast-r.json" bytes),$ok"
    log "  bench net mtu=$mtu size=$size #$rep: $(awk -v g="$gp" 'BEGIN{printf "%.2f Gbit/s", g/1e9}') loss $(jget "$WORK/blast-r.json" loss)"
}

run_iperf() { # MTU CC REPEAT
    local mtu=$1 cc=$2 rep=$3
    in_r iperf3 -s -1 -B "$IP_R" -p 5201 >/dev/null 2>&1 &
    local ipid=$!
    sleep 0.3
    local ok=1
    in_s iperf3 -c "$IP_R" -p 5201 -t "$IPERF_SECONDS" -C "$cc" -J >"$WORK/iperf.json" || ok=0
    wait_pid "$ipid" 10 || true
    local gp; gp=$(awk '/"sum_received"/ {f=1} f && /"bits_per_second"/ {gsub(/[ \t,]/, ""); split($0, a, ":"); print a[2]; exit}' "$WORK/iperf.json")
    [[ -n $gp ]] || { ok=0; log "  iperf3 gave no result: $(grep -m1 '"error"' "$WORK/iperf.json")"; }
    row "$mtu,iperf3-$cc,main,,$rep,$gp,$IPERF_SECONDS,,,,,,,,,$ok"
    log "  iperf3 -C $cc mtu=$mtu #$rep: $(awk -v g="$gp" 'BEGIN{printf "%.2f Gbit/s", g/1e9}')"
}

run_ssh_copy() { # MTU TOOL REPEAT
    local mtu=$1 tool=$2 rep=$3 t0 t1 rc=0
    rm -f "$DEST/copy.bin"
    t0=$(now)
    if [[ $tool == scp ]]; then
        in_s /usr/bin/time -f '%M %U %S' -o "$WORK/copy.time" \
            scp -q -P "$SSH_PORT" "${SSH_OPTS[@]}" "$FILE" "root@$IP_R:$DEST/copy.bin" || rc=$?
    else
        in_s /usr/bin/time -f '%M %U %S' -o "$WORK/copy.time" \
            rsync -e "ssh -p $SSH_PORT ${SSH_OPTS[*]}" "$FILE" "root@$IP_R:$DEST/copy.bin" || rc=$?
    fi
    t1=$(now)
    local ok=1 secs gp
    [[ $rc == 0 && $(stat -c %s "$DEST/copy.bin") == "$FILE_BYTES" ]] || ok=0
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b - a}')
    gp=$(awk -v n="$FILE_BYTES" -v s="$secs" 'BEGIN{printf "%.0f", n * 8 / s}')
    read -r c_rss c_u c_s <"$WORK/copy.time" || true
    row "$mtu,$tool,main,,$rep,$gp,$secs,,,,${c_rss:-},,$(add "${c_u:-}" "${c_s:-}"),,$FILE_BYTES,$ok"
    log "  $tool mtu=$mtu #$rep: $(awk -v g="$gp" 'BEGIN{printf "%.2f Gbit/s", g/1e9}') ok=$ok"
    rm -f "$DEST/copy.bin"
}

# ---------------------------------------------------------------- the runs
declare -A CLEAN_RATE PEAK_RATE
for mtu in $MTUS; do
    for ns in "$NS_S" "$NS_R"; do ip netns exec "$ns" ip link set "$VETH" mtu "$mtu"; done
    log "MTU $mtu"
    rates_var=RATES_$mtu
    rates=${!rates_var:-${RATES_1500}}
    peak=; peak_gp=0; clean=; clean_gp=0
    for rate in $rates; do
        if run_push "$SWEEP_FILE" "$mtu" "$rate" sweep 1; then
            IFS=, read -r _ _ _ _ _ _ gp _ sent retx _ < <(tail -1 "$CSV.tmp")
            if awk -v a="$gp" -v b="$peak_gp" 'BEGIN{exit !(a > b)}'; then peak=$rate; peak_gp=$gp; fi
            if awk -v a="$gp" -v b="$clean_gp" -v s="$sent" -v r="$retx" 'BEGIN{exit !(a > b && r * 100 <= s)}'; then
                clean=$rate; clean_gp=$gp
            fi
        fi
    done
    [[ -n $peak ]] || die "no push succeeded at MTU $mtu"
    CLEAN_RATE[$mtu]=${clean:-none}
    PEAK_RATE[$mtu]=$peak
    log "  sweep at MTU $mtu: clean rate ${clean:-none}, peak rate $peak"
    for rep in $(seq "$REPEATS"); do
        [[ -n $clean ]] && { run_push "$FILE" "$mtu" "$clean" main "$rep" mover-push-clean || true; }
        [[ $peak != "$clean" ]] && { run_push "$FILE" "$mtu" "$peak" main "$rep" mover-push-peak || true; }
        run_blast "$mtu" "$rep"
        run_iperf "$mtu" cubic "$rep"
        run_iperf "$mtu" bbr "$rep"
        run_ssh_copy "$mtu" scp "$rep"
        run_ssh_copy "$mtu" rsync "$rep"
    done
done
mv "$CSV.tmp" "$CSV"
log "raw results: $CSV"

# ---------------------------------------------------------------- medians, ratios, RESULTS.md
# med MTU TOOL COLUMN: the median of a column over the main-phase rows that succeeded
med() {
    awk -F, -v m="$1" -v t="$2" -v c="$3" '$2==m && $3==t && $4=="main" && $17==1 && $c!="" {print $c}' "$CSV" | median
}
gbit() { awk -v v="$1" 'BEGIN{ if (v=="nan") print "n/a"; else printf "%.2f", v/1e9 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a=="nan" || b=="nan" || b==0) print "n/a"; else printf "%.2f", a/b }'; }
mib() { awk -v v="$1" 'BEGIN{ if (v=="nan") print "–"; else printf "%.0f", v/1024 }'; }
per_gib() { awk -v v="$1" -v b="$FILE_BYTES" 'BEGIN{ if (v=="nan") print "–"; else printf "%.2f", v/(b/1073741824) }'; }

TABLE=$WORK/table.md
{
    echo "Generated by \`$CMDLINE\` on $DATE."
    echo
    echo "Machine: $(nproc) cores, $(lscpu | grep 'Model name' | sed 's/Model name: *//;s/  */ /g'), kernel $(uname -r)," \
        "$(free -g | awk '/Mem:/ {print $2}') GiB RAM. Path: two network namespaces joined by one veth pair" \
        "(no other host); veth offloads off on both ends: \`ethtool -K $VETH $OFFLOADS\`; socket buffer" \
        "ceilings: $SYSCTL_NOTE. File: $SIZE of random bytes in the page cache; the receivers write to" \
        "\`/tmp\` (ext4, no fsync). Medians of $REPEATS runs, each column separately."
    echo
    echo "| MTU | tool | goodput Gbit/s | seconds | retransmitted / sent | sender peak RSS MiB | receiver peak RSS MiB | sender CPU s/GiB | receiver CPU s/GiB |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    for mtu in $MTUS; do
        for tool in mover-push-clean mover-push-peak mover-bench-net iperf3-cubic iperf3-bbr scp rsync; do
            label=$tool
            case $tool in
                mover-push-clean) label="mover push --rate ${CLEAN_RATE[$mtu]} (clean: <= 1% retx in the sweep)" ;;
                mover-push-peak)
                    label="mover push --rate ${PEAK_RATE[$mtu]} (peak goodput in the sweep)"
                    [[ ${PEAK_RATE[$mtu]} == "${CLEAN_RATE[$mtu]}" ]] && continue
                    ;;
                mover-bench-net) label="mover bench net (raw UDP, $((mtu - 28)) B)" ;;
                iperf3-*) label="iperf3 TCP -C ${tool#iperf3-}" ;;
                scp) label="scp (SFTP, aes128-gcm)" ;;
                rsync) label="rsync over ssh (aes128-gcm)" ;;
            esac
            retx=""
            [[ $tool == mover-push-* ]] && retx="$(med "$mtu" "$tool" 10) / $(med "$mtu" "$tool" 9)"
            secs=$(med "$mtu" "$tool" 8 | awk '{ if ($1 == "nan") print "–"; else printf "%.2f", $1 }')
            echo "| $mtu | $label | $(gbit "$(med "$mtu" "$tool" 7)") | $secs | $retx |" \
                "$(mib "$(med "$mtu" "$tool" 12)") | $(mib "$(med "$mtu" "$tool" 13)") |" \
                "$(per_gib "$(med "$mtu" "$tool" 14)") | $(per_gib "$(med "$mtu" "$tool" 15)") |"
        done
    done
    echo
    echo "Ratios of mover push goodput (aims: >= 0.80 of the raw blast at the same MTU, >= 1.5x scp; peak RSS < 512 MiB):"
    echo
    echo "| MTU | push | push / raw blast | push / scp | push / rsync | push / iperf3 cubic | push / iperf3 bbr | push peak RSS MiB (sender / receiver) |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|"
    for mtu in $MTUS; do for variant in clean peak; do
        [[ $variant == peak && ${PEAK_RATE[$mtu]} == "${CLEAN_RATE[$mtu]}" ]] && continue
        rate=${CLEAN_RATE[$mtu]}; [[ $variant == peak ]] && rate=${PEAK_RATE[$mtu]}
        p=$(med "$mtu" "mover-push-$variant" 7)
        echo "| $mtu | $variant, --rate $rate | $(ratio "$p" "$(med "$mtu" mover-bench-net 7)") | $(ratio "$p" "$(med "$mtu" scp 7)") |" \
            "$(ratio "$p" "$(med "$mtu" rsync 7)") | $(ratio "$p" "$(med "$mtu" iperf3-cubic 7)") |" \
            "$(ratio "$p" "$(med "$mtu" iperf3-bbr 7)") | $(mib "$(med "$mtu" "mover-push-$variant" 12)") / $(mib "$(med "$mtu" "mover-push-$variant" 13)") |"
    done; done
    echo
    echo "Push --rate sweep (one $SWEEP_SIZE push per rate; the clean and the peak rate were then measured $REPEATS times each):"
    echo
    echo "| MTU | --rate | goodput Gbit/s | retransmitted / sent | RTT ms at the end | ok |"
    echo "|---:|---:|---:|---:|---:|---:|"
    awk -F, '$3=="mover-push" && $4=="sweep" {printf "| %s | %s | %.2f | %s / %s | %.1f | %s |\n", $2, $5, $7/1e9, $10, $9, $11, $17}' "$CSV"
    echo
    echo "Raw rows: \`benches/results/$(basename "$CSV")\`."
} >"$TABLE"

RESULTS=$HERE/RESULTS.md
BEGIN_MARK='<!-- BEGIN network table (generated by benches/run-network.sh; edits inside are overwritten) -->'
END_MARK='<!-- END network table -->'
if [[ ! -f $RESULTS ]] || ! grep -qF "$BEGIN_MARK" "$RESULTS"; then
    { [[ -f $RESULTS ]] && cat "$RESULTS" || echo "# Benchmark results"; echo; echo "## Network"; echo; echo "$BEGIN_MARK"; echo "$END_MARK"; } >"$RESULTS.new"
    mv "$RESULTS.new" "$RESULTS"
fi
awk -v b="$BEGIN_MARK" -v e="$END_MARK" -v t="$TABLE" '
    $0 == b { print; while ((getline l < t) > 0) print l; skip = 1; next }
    $0 == e { skip = 0 }
    !skip' "$RESULTS" >"$RESULTS.new"
mv "$RESULTS.new" "$RESULTS"
cat "$TABLE"
log "updated $RESULTS"
