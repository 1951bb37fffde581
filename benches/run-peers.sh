#!/usr/bin/env bash
# Every peer, one run (issue 18): mover and the tools it is measured against, in the same run, on the same
# path, with a ratio per aim of the issue and "met"/"missed" for each.
#
# The lead's full run (root, a quiet machine; ~60 min on 2 cores):
#   sudo MOVER=target/release/mover WANEM=target/release/mover-wanem benches/run-peers.sh
# Smoke run (small sizes, every mode's plumbing, ~10 min at load 12; numbers under load say nothing about aims):
#   sudo SMOKE=1 MOVER=target/release/mover WANEM=target/release/mover-wanem benches/run-peers.sh
# One mode:  MODES=clean | wan | share | small   (default: all four: "clean wan share small")
#
# Modes and what each runs (peers are the distribution's packages: rsync, openssh-server/-client, iperf3, tar):
#   clean  two namespaces, one veth, no emulator, MTUS ["1500 9000"] x OFFLOADS ["defaults off"]: mover push
#          (default flags: TLS + token, --net auto, aes256gcm), mover bench net (raw UDP at MTU - 28 bytes),
#          the rsync daemon (rsync://, no encryption), scp (-c aes128-gcm@openssh.com), rsync over ssh, tar over
#          ssh (aes128-gcm), iperf3 -C cubic and -C bbr (memory to memory, for reference). CLEAN_SIZE [2G]
#          from tmpfs to tmpfs, REPEATS [3], medians.
#          "defaults": the veth's own offloads (what the issue's table measured: TCP gets TSO; UDP GSO crosses
#          unsplit); "off": tso gso gro tx-udp-segmentation off, every packet MTU-sized as on a wire without
#          offload. The aims are judged on "defaults" (the issue's); both are shown.
#   wan    benches/run-wan.sh through mover-wanem at WAN_RATE [500M] x 100 ms / 1% and 200 ms / 3%, WAN_SIZE [1G]
#          for mover (default flags apart from --insecure-no-auth, run-wan.sh's), TCP tools for TIME_LIMIT;
#          mover / bottleneck against 0.95 and 0.90, cubic and bbr in the same run. WAN_MTUS ["1500"]: the
#          path MTUs to run ("1500 9000" adds a jumbo path: mover discovers it with default flags).
#   share  benches/run-wan.sh's fairness runs: 1G x 40 ms, mover --policy fair next to one cubic and one bbr
#          flow (0.5x-2x of TCP), --policy low (TCP keeps >= 85% of what it had alone).
#   small  SMALL_FILES [100000] files of 4 KiB and a mixed tree of MIXED_FILES [10000] files, log-uniform
#          1 KiB-10 MiB (~11 GB), from tmpfs to SMALL_DEST_BASE [/var/tmp] (a disk file system, no fsync; two
#          copies of the mixed tree do not fit in 24 GiB of tmpfs) through the veth (MTU 1500, defaults): mover push, rsync
#          over ssh (-a), tar | ssh tar, the rsync daemon (-a); files per second, ratios 5x / 2x / 1.0x.
# Environment: MOVER (binary; default: cargo build --release), WANEM (mover-wanem; default: built by
#   run-wan.sh), REPEATS, CLEAN_SIZE, MTUS, OFFLOADS, WAN_RATE, WAN_SIZE, WAN_REPEATS [3], WAN_MTUS, SMALL_FILES,
#   MIXED_FILES, MIXED_MAX, IPERF_SECONDS [8], TMP_BASE [/dev/shm] (sources; the clean mode's destination),
#   SMALL_DEST_BASE [/var/tmp] (the small mode's destination), TOOL_TIMEOUT [600], RESULTS_DIR, NS_PREFIX [mvp]
#   (the namespaces are NS_PREFIX-PID-s and -r).
#
# CPU and memory (docs/decisions/0026): every client runs under GNU time (user + sys, children included: ssh
# under scp, tar and ssh under tar|ssh); the server side is charged too: mover serve --once and iperf3 -s -1
# under GNU time, sshd and the rsync daemon by the CPU counters of the daemon process with the children it
# reaped (/proc/PID/stat utime+stime+cutime+cstime before and after each run: sshd-session, scp, rsync and tar
# on the receiving side). Goodput of file tools is bytes / wall time of the client process (handshakes and
# start-up count, for mover too). TCP retransmissions: the sender namespace's RetransSegs / OutSegs.
# Output: benches/results/peers-<date>.csv (every run), peers-<date>.md (the tables, also printed).
set -Eeuo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# log die bytes_of now jget median wait_for wait_pid make_file delete_netns start_sshd wait_sshd
# shellcheck source-path=SCRIPTDIR source=lib/netns.sh
. "$HERE/lib/netns.sh"

SMOKE=${SMOKE:-0}
if [[ $SMOKE == 1 ]]; then
    : "${REPEATS:=1}" "${CLEAN_SIZE:=256M}" "${WAN_SIZE:=64M}" "${WAN_RATE:=200M}" "${WAN_REPEATS:=1}"
    : "${SMALL_FILES:=2000}" "${MIXED_FILES:=200}" "${IPERF_SECONDS:=2}" "${FAIR_LEAD:=4}" "${FAIR_OVERLAP:=5}"
    : "${FAIR_TAIL:=4}" "${FAIR_SETTLE:=1}" "${TIME_LIMIT:=3}" "${MIXED_MAX:=1048576}"
fi
MODES=${MODES:-clean wan share small}
REPEATS=${REPEATS:-3}
CLEAN_SIZE=${CLEAN_SIZE:-2G}
MTUS=${MTUS:-1500 9000}
OFFLOADS=${OFFLOADS:-defaults off}
WAN_RATE=${WAN_RATE:-500M}
WAN_SIZE=${WAN_SIZE:-1G}
WAN_REPEATS=${WAN_REPEATS:-3}
WAN_MTUS=${WAN_MTUS:-1500}
SMALL_FILES=${SMALL_FILES:-100000}
MIXED_FILES=${MIXED_FILES:-10000}
MIXED_MAX=${MIXED_MAX:-10485760}
IPERF_SECONDS=${IPERF_SECONDS:-8}
TMP_BASE=${TMP_BASE:-/dev/shm}
SMALL_DEST_BASE=${SMALL_DEST_BASE:-/var/tmp}
export TOOL_TIMEOUT=${TOOL_TIMEOUT:-600}

# NS_PREFIX: so that several people benchmarking on one machine can tell their namespaces apart.
NS_PREFIX=${NS_PREFIX:-mvp}
NS_S="$NS_PREFIX-$$-s"
NS_R="$NS_PREFIX-$$-r"
VETH=mvp0
IP_S=10.77.210.1
IP_R=10.77.210.2
MOVER_PORT=7400
RSYNC_PORT=8873
SSH_PORT=2222
DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
STAMP=$(date -u +%Y-%m-%d-%H%M)
RESULTS_DIR=${RESULTS_DIR:-$HERE/results}
CSV=$RESULTS_DIR/peers-$STAMP$([[ $SMOKE == 1 ]] && echo -smoke || true).csv
MD=${CSV%.csv}.md
CMDLINE="$([[ $SMOKE == 1 ]] && echo "SMOKE=1 " || true)MODES=\"$MODES\" REPEATS=$REPEATS benches/run-peers.sh"

WORK='' SMALL_DST=''
cleanup() {
    set +e
    trap - EXIT INT TERM ERR
    delete_netns "$NS_S" "$NS_R"
    [[ -n $WORK ]] && rm -rf "$WORK"
    [[ -n $SMALL_DST ]] && rm -rf "$SMALL_DST"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# shellcheck disable=SC2154 # rc is assigned inside the trap's own string
trap 'rc=$?; if [[ $BASHPID == "$$" ]]; then log "FATAL: line $LINENO: \"$BASH_COMMAND\" returned $rc"; fi' ERR

[[ $(id -u) == 0 ]] || die "needs root (network namespaces, veths, sshd): run it with sudo"
for t in ip ethtool iperf3 /usr/sbin/sshd ssh scp ssh-keygen rsync tar /usr/bin/time unshare openssl numfmt \
    python3 timeout getconf; do
    command -v "$t" >/dev/null || die "missing $t (apt-get install iproute2 ethtool iperf3 openssh-server openssh-client rsync tar time openssl python3)"
done
if [[ -z ${MOVER:-} ]]; then
    log "building mover (release)"
    (cd "$REPO" && cargo build --release -q -p mover) || die "cargo build failed"
    MOVER=${CARGO_TARGET_DIR:-$REPO/target}/release/mover
fi
[[ -x $MOVER ]] || die "no mover binary at $MOVER"
MOVER=$(readlink -f "$MOVER")

# lib/peers.sh: in_s in_r load1 proc_cpu_s measure start_rsyncd make_mover_auth start/finish_mover_serve ...
# shellcheck source-path=SCRIPTDIR source=lib/peers.sh
. "$HERE/lib/peers.sh"

mkdir -p "$RESULTS_DIR"
WORK=$(mktemp -d "$TMP_BASE/mover-peers.XXXXXX")
LOAD_START=$(load1)
log "mover: $MOVER ($("$MOVER" --version 2>/dev/null || echo "no --version")); modes: $MODES; load average $LOAD_START on $(nproc) cores"
PY="python3 $HERE/lib/peers-table.py"
python3 -c "import csv, sys; csv.writer(sys.stdout).writerow(sys.argv[1:])" \
    date mode scenario offloads mtu tool repeat ok bytes files seconds goodput_bps files_per_s retx sent \
    snd_cpu_s rcv_cpu_s snd_rss_kib rcv_rss_kib ceiling_bps busiest load1 note >"$CSV"
# row MODE SCENARIO OFFLOADS MTU TOOL REPEAT BYTES FILES CEILING NOTE: one measurement from the M_* globals.
row() {
    local gp fps note=${10//,/;}
    gp=$(awk -v b="$7" -v s="$M_SECS" 'BEGIN { if (s > 0) printf "%.0f", b * 8 / s }')
    fps=$(awk -v f="$8" -v s="$M_SECS" 'BEGIN { if (s > 0 && f > 1) printf "%.1f", f / s }')
    echo "$DATE,$1,$2,$3,$4,$5,$6,$M_OK,$7,$8,$M_SECS,${M_GOODPUT:-$gp},$fps,$M_RETX,$M_SENT,$M_SND_CPU,$M_RCV_CPU,$M_SND_RSS,$M_RCV_RSS,$9,${M_BUSIEST//,/;},$(load1),$note" >>"$CSV"
    log "  $5 #$6: $(awk -v g="${M_GOODPUT:-$gp}" 'BEGIN { printf "%.2f Gbit/s", g / 1e9 }')${fps:+, $fps files/s}, ${M_SECS}s, CPU s snd ${M_SND_CPU:-?} rcv ${M_RCV_CPU:-?}, retx ${M_RETX:-?}/${M_SENT:-?}, ok=$M_OK${M_BUSIEST:+; $M_BUSIEST}"
    M_BUSIEST='' M_GOODPUT='' M_NET=''
}

# ---------------------------------------------------------------- the path: two namespaces, one veth, sshd
path_up() {
    ip netns add "$NS_S"
    ip netns add "$NS_R"
    ip link add "$VETH" netns "$NS_S" type veth peer name "$VETH" netns "$NS_R"
    local ns ip
    for ns in "$NS_S" "$NS_R"; do
        ip=$IP_S; [[ $ns == "$NS_R" ]] && ip=$IP_R
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
        ip netns exec "$ns" ip link set lo up
        ip netns exec "$ns" ip addr add "$ip/24" dev "$VETH"
        ip netns exec "$ns" ip link set "$VETH" up
    done
    # What "defaults" means on this kernel, to put back after "off" and to print with the table.
    VETH_DEFAULTS=$(in_s ethtool -k "$VETH" | awk -F': ' '
        /^tcp-segmentation-offload|^generic-segmentation-offload|^generic-receive-offload|^tx-udp-segmentation/ {
            split($2, v, " "); n = $1; sub(/tcp-segmentation-offload/, "tso", n); sub(/generic-segmentation-offload/, "gso", n)
            sub(/generic-receive-offload/, "gro", n); printf "%s %s ", n, v[1] }')
    mkdir -p "$WORK/ssh"
    start_sshd "$NS_R" "$IP_R" "$SSH_PORT" "$WORK/ssh"
    disown "$SSHD_PID"
    wait_sshd "$NS_S" "$IP_R" "$SSH_PORT" "$WORK/ssh"
    make_mover_auth
}
set_path() { # OFFLOADS(defaults|off) MTU
    local ns feats=$VETH_DEFAULTS
    [[ $1 == off ]] && feats="tso off gso off gro off tx-udp-segmentation off"
    for ns in "$NS_S" "$NS_R"; do
        # shellcheck disable=SC2086
        ip netns exec "$ns" ethtool -K "$VETH" $feats >/dev/null 2>&1 || die "ethtool -K $VETH $feats failed"
        ip netns exec "$ns" ip link set "$VETH" mtu "$2"
    done
}

# ---------------------------------------------------------------- clean: one file, every tool
clean_mode() {
    local src=$WORK/clean-src dst=$WORK/clean-dst file bytes offl mtu rep
    mkdir -p "$src" "$dst"
    file=$src/data.bin
    make_file "$file" "$CLEAN_SIZE"
    bytes=$(stat -c %s "$file")
    start_rsyncd "$dst"
    for offl in $OFFLOADS; do for mtu in $MTUS; do
        set_path "$offl" "$mtu"
        log "clean: offloads $offl, MTU $mtu, $CLEAN_SIZE"
        for rep in $(seq "$REPEATS"); do
            rm -rf "${dst:?}"/*
            start_mover_serve "$dst"
            measure "" -- "$MOVER" push "${MOVER_AUTH[@]}" --json --stats "$file" "mover://$IP_R:$MOVER_PORT/in"
            finish_mover_serve
            [[ $M_OK == 1 && $(stat -c %s "$dst/in/data.bin" 2>/dev/null) == "$bytes" ]] || M_OK=0
            row clean one-file "$offl" "$mtu" mover-push "$rep" "$bytes" 1 "" "net $M_NET; mover's own goodput $(jget "$WORK/client.out" goodput_bps | awk '{ printf "%.2f Gbit/s", $1 / 1e9 }')"
            rm -rf "${dst:?}"/*

            clean_blast "$offl" "$mtu" "$rep"

            measure "$RSYNCD_PID" -- rsync "$file" "rsync://$IP_R:$RSYNC_PORT/dst/copy.bin"
            check_copy "$dst/copy.bin" "$bytes"
            row clean one-file "$offl" "$mtu" rsync-daemon "$rep" "$bytes" 1 "" "no encryption"
            measure "$SSHD_PID" -- scp -q -P "$SSH_PORT" "${SSH_OPTS[@]}" -c aes128-gcm@openssh.com "$file" "root@$IP_R:$dst/copy.bin"
            check_copy "$dst/copy.bin" "$bytes"
            row clean one-file "$offl" "$mtu" scp "$rep" "$bytes" 1 "" "aes128-gcm@openssh.com"
            measure "$SSHD_PID" -- rsync -e "ssh -p $SSH_PORT ${SSH_OPTS[*]}" "$file" "root@$IP_R:$dst/copy.bin"
            check_copy "$dst/copy.bin" "$bytes"
            row clean one-file "$offl" "$mtu" rsync-ssh "$rep" "$bytes" 1 "" "aes128-gcm"
            measure "$SSHD_PID" -- sh -c 'd=$1; shift; tar -C "$d" -cf - data.bin | ssh "$@"' sh "$src" -p "$SSH_PORT" "${SSH_OPTS[@]}" \
                "root@$IP_R" "tar -C '$dst' -xf -"
            check_copy "$dst/data.bin" "$bytes"
            row clean one-file "$offl" "$mtu" tar-ssh "$rep" "$bytes" 1 "" "aes128-gcm"
            for cc in cubic bbr; do clean_iperf "$offl" "$mtu" "$rep" "$cc"; done
        done
    done; done
    kill "$RSYNCD_PID" 2>/dev/null || true
    wait "$RSYNCD_PID" 2>/dev/null || true
    rm -rf "$src" "$dst"
}
check_copy() { # FILE BYTES: the copy arrived whole (then removed)
    [[ $M_OK == 1 && $(stat -c %s "$1" 2>/dev/null) == "$2" ]] || M_OK=0
    rm -f "$1"
}
clean_blast() { # OFFLOADS MTU REPEAT: mover bench net at push's datagram size, both ends under GNU time
    local size=$(($2 - 28)) secs=$IPERF_SECONDS
    in_r /usr/bin/time -f '%M %U %S' -o "$WORK/blast-r.time" "$MOVER" bench net --listen "$IP_R:$MOVER_PORT" \
        --seconds $((secs + 10)) --json >"$WORK/blast-r.json" 2>"$WORK/blast-r.err" &
    local rpid=$!
    sleep 0.3
    measure "" -- "$MOVER" bench net --to "$IP_R:$MOVER_PORT" --size "$size" --seconds "$secs" --json
    wait_pid "$rpid" $((secs + 15)) || M_OK=0
    read -r M_RCV_RSS M_RCV_CPU < <(time_of "$WORK/blast-r.time")
    M_GOODPUT=$(jget "$WORK/blast-r.json" goodput_bps)
    [[ -n $M_GOODPUT ]] || M_OK=0
    M_SECS=$(jget "$WORK/blast-r.json" seconds) M_RETX='' M_SENT=''
    row clean one-file "$1" "$2" mover-bench-net "$3" "$(jget "$WORK/blast-r.json" bytes)" "" "" \
        "raw UDP $size B; loss $(jget "$WORK/blast-r.json" loss)"
}
clean_iperf() { # OFFLOADS MTU REPEAT CC: memory to memory, for reference
    in_r /usr/bin/time -f '%M %U %S' -o "$WORK/iperf-r.time" iperf3 -s -1 -B "$IP_R" -p 5201 >/dev/null 2>&1 &
    local ipid=$!
    sleep 0.3
    measure "" -- iperf3 -c "$IP_R" -p 5201 -t "$IPERF_SECONDS" -C "$4" -J
    wait_pid "$ipid" 10 || true
    read -r M_RCV_RSS M_RCV_CPU < <(time_of "$WORK/iperf-r.time")
    M_GOODPUT=$(python3 -c 'import json, sys; print("%.0f" % json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"])' \
        "$WORK/client.out" 2>/dev/null || true)
    [[ -n $M_GOODPUT ]] || M_OK=0
    local bytes; bytes=$(awk -v g="${M_GOODPUT:-0}" -v s="$IPERF_SECONDS" 'BEGIN { printf "%.0f", g * s / 8 }')
    M_SECS=$IPERF_SECONDS
    row clean one-file "$1" "$2" "iperf3-$4" "$3" "$bytes" "" "" "memory to memory"
}

# ---------------------------------------------------------------- small: trees of many files
small_mode() {
    set_path defaults 1500
    local dst name n lo hi dist
    # Not beside the source in tmpfs: the mixed tree (~11 GB) twice would not fit in this machine's memory.
    SMALL_DST=$(mktemp -d "$SMALL_DEST_BASE/mover-peers-dst.XXXXXX")
    dst=$SMALL_DST
    start_rsyncd "$dst"
    for spec in "4k-x-$SMALL_FILES $SMALL_FILES 4096 4096 uniform" "mixed-x-$MIXED_FILES $MIXED_FILES 1024 $MIXED_MAX log"; do
        read -r name n lo hi dist <<<"$spec"
        local src=$WORK/small-src/$name
        log "small: $name: making $n files of $lo-$hi bytes ($dist)"
        python3 "$HERE/lib/small-tree.py" "$src" "$n" 18 "$lo" "$hi" "$dist"
        local bytes; bytes=$(du -sb "$src" | cut -f1)
        for rep in $(seq "$REPEATS"); do
            rm -rf "${dst:?}"/*
            start_mover_serve "$dst"
            measure "" -- "$MOVER" push "${MOVER_AUTH[@]}" --json --stats "$src" "mover://$IP_R:$MOVER_PORT/in"
            finish_mover_serve
            check_tree "$dst/in/$name" "$n"
            row small "$name" defaults 1500 mover-push "$rep" "$bytes" "$n" "" "net $M_NET"
            measure "$SSHD_PID" -- rsync -a -e "ssh -p $SSH_PORT ${SSH_OPTS[*]}" "$src" "root@$IP_R:$dst/"
            check_tree "$dst/$name" "$n"
            row small "$name" defaults 1500 rsync-ssh "$rep" "$bytes" "$n" "" "rsync -a; aes128-gcm"
            measure "$SSHD_PID" -- sh -c 'd=$1 n=$2; shift 2; tar -C "$d" -cf - "$n" | ssh "$@"' sh "$WORK/small-src" "$name" \
                -p "$SSH_PORT" "${SSH_OPTS[@]}" "root@$IP_R" "tar -C '$dst' -xf -"
            check_tree "$dst/$name" "$n"
            row small "$name" defaults 1500 tar-ssh "$rep" "$bytes" "$n" "" "aes128-gcm"
            measure "$RSYNCD_PID" -- rsync -a "$src" "rsync://$IP_R:$RSYNC_PORT/dst/"
            check_tree "$dst/$name" "$n"
            row small "$name" defaults 1500 rsync-daemon "$rep" "$bytes" "$n" "" "rsync -a; no encryption"
        done
        rm -rf "$src"
    done
    kill "$RSYNCD_PID" 2>/dev/null || true
    wait "$RSYNCD_PID" 2>/dev/null || true
    rm -rf "$dst"
}
check_tree() { # DIR FILES: every file arrived (then removed)
    [[ $M_OK == 1 && $(find "$1" -type f 2>/dev/null | wc -l) == "$2" ]] || M_OK=0
    rm -rf "$1"
}

# ---------------------------------------------------------------- wan, share: run-wan.sh, imported
wan_run() { # MODE RESULTS_SUBDIR ENV...: run-wan.sh with its own namespaces, then its medians into our CSV
    local mode=$1 sub=$2 dir=$WORK/$2
    shift 2
    mkdir -p "$dir"
    env RESULTS_DIR="$dir" MOVER="$MOVER" WORKDIR_BASE="$TMP_BASE" "$@" "$HERE/run-wan.sh" >"$dir/out.md" 2>"$dir/log" ||
        { FAILED+=("$mode ($sub): run-wan.sh failed: $(tail -1 "$dir/log")"); log "${FAILED[-1]}"; return 0; }
    local median; median=$(find "$dir" -name 'wan-*.csv' ! -name '*-raw.csv' ! -name '*-ts.csv' | head -1)
    [[ -n $median ]] || { FAILED+=("$mode ($sub): run-wan.sh wrote no CSV: $(tail -1 "$dir/log")"); log "${FAILED[-1]}"; return 0; }
    $PY import-wan "$median" "$mode" "${WAN_MTU:-1500}" >>"$CSV"
    cp "$median" "${CSV%.csv}-$sub.csv"
}
wan_mode() {
    local common=(RATE="$WAN_RATE" SIZE="$WAN_SIZE" REPEATS="$WAN_REPEATS" RATE_HIGH= BLAST=0 FAIR=0
        TIME_LIMIT="${TIME_LIMIT:-10}" TOOLS="mover iperf3-cubic iperf3-bbr scp rsync")
    [[ -n ${WANEM:-} ]] && common+=(WANEM="$WANEM")
    local mtu sfx
    for mtu in $WAN_MTUS; do
        sfx=; [[ $mtu == 1500 ]] || sfx=-mtu$mtu
        log "wan: $WAN_RATE bottleneck, 100 ms / 1%, MTU $mtu (run-wan.sh)"
        WAN_MTU=$mtu wan_run wan wan-100$sfx "${common[@]}" RTTS=100 LOSSES=1 MTU="$mtu"
        log "wan: $WAN_RATE bottleneck, 200 ms / 3%, MTU $mtu (run-wan.sh)"
        WAN_MTU=$mtu wan_run wan wan-200$sfx "${common[@]}" RTTS=200 LOSSES=3 MTU="$mtu"
    done
}
share_mode() {
    local env=(GRID=0 FAIR=1 RATE=1G FAIR_RTT=40 SIZE="${SHARE_SIZE:-256M}" RATE_HIGH=)
    [[ -n ${WANEM:-} ]] && env+=(WANEM="$WANEM")
    local v
    for v in FAIR_LEAD FAIR_OVERLAP FAIR_TAIL FAIR_SETTLE FAIR_REPEATS; do [[ -n ${!v:-} ]] && env+=("$v=${!v}"); done
    log "share: 1G x 40 ms, fair and low next to cubic and bbr (run-wan.sh)"
    wan_run share share "${env[@]}"
}

# ---------------------------------------------------------------- the run
FAILED=()
for mode in $MODES; do
    case $mode in
        clean | small)
            [[ -n ${VETH_DEFAULTS:-} ]] || path_up
            "${mode}_mode"
            ;;
        wan | share) "${mode}_mode" ;;
        *) die "unknown mode $mode (clean, wan, share, small)" ;;
    esac
done

{
    echo "Generated by \`$CMDLINE\` (MOVER=$MOVER) on $DATE$([[ $SMOKE == 1 ]] && echo ": a SMOKE run (small sizes)")."
    echo
    echo "Machine: $(nproc) cores, $(lscpu | grep 'Model name' | sed 's/Model name: *//;s/  */ /g'), kernel $(uname -r)," \
        "$(free -g | awk '/Mem:/ {print $2}') GiB RAM; load average $LOAD_START at the start, $(load1) at the end" \
        "(per row in the CSV). Clean and small: two namespaces, one veth; veth defaults here: ${VETH_DEFAULTS:-n/a};" \
        "\"off\": tso gso gro tx-udp-segmentation off. Sources on $TMP_BASE; destinations there too for the clean" \
        "mode, on $SMALL_DEST_BASE (no fsync) for the small mode." \
        "mover: default flags (TLS control channel with a pinned self-signed certificate and a token, --net auto," \
        "aes256gcm); wan/share: run-wan.sh (--insecure-no-auth, --policy fair/low). Goodput: bytes / the client's" \
        "wall time; CPU: GNU time around clients, daemons' own counters (see the script's header)."
    echo
    for f in "${FAILED[@]}"; do echo "**Not measured:** $f"; echo; done
    $PY table "$CSV"
    echo "Raw rows: \`benches/results/$(basename "$CSV")\`."
} >"$MD"
cat "$MD"
log "results: $CSV, $MD"
