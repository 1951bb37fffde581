# shellcheck shell=bash
# shellcheck disable=SC2034 # RSYNCD_PID, MOVER_AUTH and the M_* results are for the sourcing script
# Peers of benches/run-peers.sh: how each tool is started, timed and charged for CPU, so that every row of its
# table is measured the same way (docs/decisions/0026). Sourced after lib/netns.sh; needs NS_S, NS_R, IP_R,
# WORK, SSH_PORT, SSH_OPTS (start_sshd), RSYNC_PORT, MOVER_PORT, MOVER and the MOVER_AUTH array of the caller.

in_s() { ip netns exec "$NS_S" "$@"; }
in_r() { ip netns exec "$NS_R" "$@"; }
load1() { cut -d' ' -f1 /proc/loadavg; }
CLK_TCK=$(getconf CLK_TCK)

# CPU seconds of a process and of every child it has reaped (utime stime cutime cstime of /proc/PID/stat):
# a daemon's cost for the connections it served, read before and after. The comm field may hold spaces: cut
# after its closing parenthesis.
proc_cpu_s() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo ""; return; }
    stat=${stat##*) }
    awk -v t="$CLK_TCK" '{ printf "%.2f", ($12 + $13 + $14 + $15) / t }' <<<"$stat"
}
sub() { [[ -n $1 && -n $2 ]] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }' || true; }
add() { [[ -n $1 && -n $2 ]] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a + b }' || true; }
# GNU time's "%M %U %S" file -> "rss_kib cpu_s" (empty fields when the file is missing).
time_of() {
    local rss u s
    read -r rss u s <"$1" 2>/dev/null || true
    echo "${rss:-} $(add "${u:-}" "${s:-}")"
}
# Sender namespace TCP counters: "OutSegs RetransSegs".
tcp_counters() {
    in_s awk '/^Tcp:/ { if (!h) { h = 1; for (i = 1; i <= NF; i++) k[$i] = i } else print $k["OutSegs"], $k["RetransSegs"] }' /proc/net/snmp
}
# The stage marked busiest in a --stats table on stderr, per side: "sender: pacer 93%; receiver: writer 40%".
busiest_of() {
    awk '/stages/ && /:$/ { side = $1 } /<- busiest/ { printf "%s%s: %s busy %s%%", n++ ? "; " : "", side, $1, $5 }' "$@" 2>/dev/null || true
}

# rsync daemon in the receiver namespace: one module "dst" on $1, no chroot (the work dir is not a jail),
# root's uid so that files land as they do with the other tools. Sets RSYNCD_PID (rsync itself).
start_rsyncd() {
    cat >"$WORK/rsyncd.conf" <<CONF
pid file = $WORK/rsyncd.pid
use chroot = no
uid = root
gid = root
[dst]
    path = $1
    read only = false
CONF
    # Not through in_r: a function in the background is a subshell, and $! must be rsync itself.
    ip netns exec "$NS_R" rsync --daemon --no-detach --config="$WORK/rsyncd.conf" --address="$IP_R" --port="$RSYNC_PORT" \
        --log-file="$WORK/rsyncd.log" &
    RSYNCD_PID=$!
    for _ in $(seq 100); do
        in_s rsync "rsync://$IP_R:$RSYNC_PORT/" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "rsync daemon did not start: $(tail -3 "$WORK/rsyncd.log")"
}

# TLS for mover's control channel as the README sets a daemon up: a self-signed certificate for $IP_R that
# the client pins (--ca) and a per-user token. MOVER_AUTH: push's flags; MOVER_SERVE_AUTH: serve's.
make_mover_auth() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -keyout "$WORK/server.key" \
        -out "$WORK/server.pem" -subj "/CN=$IP_R" -addext "subjectAltName=IP:$IP_R" 2>/dev/null ||
        die "openssl could not make the daemon's certificate"
    "$MOVER" token --user bench >"$WORK/bench.token" 2>"$WORK/tokens" || die "mover token failed"
    MOVER_AUTH=(--ca "$WORK/server.pem" --token-file "$WORK/bench.token" --user bench)
    MOVER_SERVE_AUTH=(--tls-cert "$WORK/server.pem" --tls-key "$WORK/server.key" --tokens "$WORK/tokens")
}

# One measurement, the same for every tool: the client's wall time (process start to exit: handshakes
# count), its CPU and peak RSS (GNU time, children included), the server side's CPU (the daemon's own
# counters, its reaped children included, or GNU time around a one-shot server) and the sender
# namespace's TCP counters. Sets M_SECS M_OK M_SND_RSS M_SND_CPU M_RCV_RSS M_RCV_CPU M_RETX M_SENT.
# measure DAEMON_PID|"" -- CLIENT ARGV...  (the client runs in the sender namespace)
measure() {
    local dpid=$1 c0 c1 t0 t1 rc=0 tcp0 tcp1
    shift 2
    c0='' c1=''
    if [[ -n $dpid ]]; then c0=$(proc_cpu_s "$dpid"); fi
    read -r -a tcp0 < <(tcp_counters)
    t0=$(now)
    timeout -k 5 "${TOOL_TIMEOUT:-600}" ip netns exec "$NS_S" /usr/bin/time -f '%M %U %S' -o "$WORK/client.time" \
        "$@" >"$WORK/client.out" 2>"$WORK/client.err" || rc=$?
    t1=$(now)
    read -r -a tcp1 < <(tcp_counters)
    # The daemon reaps the connection's processes just after the client sees the end.
    if [[ -n $dpid ]]; then sleep 0.3; c1=$(proc_cpu_s "$dpid"); fi
    M_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    M_OK=$((rc == 0 ? 1 : 0))
    read -r M_SND_RSS M_SND_CPU < <(time_of "$WORK/client.time")
    M_RCV_RSS='' M_RCV_CPU=$(sub "$c1" "$c0")
    M_SENT=$((tcp1[0] - tcp0[0])) M_RETX=$((tcp1[1] - tcp0[1]))
    ((rc == 0)) || log "  failed (rc=$rc): $(tail -3 "$WORK/client.err")"
}

# mover serve --once (default flags: TLS, token, --net auto) under GNU time in the receiver namespace.
start_mover_serve() { # ROOT
    : >"$WORK/serve.log"
    in_r /usr/bin/time -f '%M %U %S' -o "$WORK/serve.time" "$MOVER" serve "${MOVER_SERVE_AUTH[@]}" --stats \
        --listen "$IP_R:$MOVER_PORT" --root "$1" --once 2>"$WORK/serve.log" &
    SERVE_PID=$!
    wait_for "$WORK/serve.log" "listening on" || die "mover serve did not start: $(cat "$WORK/serve.log")"
}
# After a push: the server's exit, its time file, the busiest stages (both sides), mover's own counters.
finish_mover_serve() {
    wait_pid "$SERVE_PID" 30 || M_OK=0
    read -r M_RCV_RSS M_RCV_CPU < <(time_of "$WORK/serve.time")
    M_BUSIEST=$(busiest_of "$WORK/client.err" "$WORK/serve.log")
    M_RETX=$(jget "$WORK/client.out" packets_retransmitted) M_SENT=$(jget "$WORK/client.out" packets_sent)
    M_NET=$(jget "$WORK/client.out" net)
    [[ $(jget "$WORK/client.out" verified) == true ]] || M_OK=0
}
