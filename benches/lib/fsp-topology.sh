# shellcheck shell=bash
# The Fast Send Protocol test bed (Rabl, Koch, Hölbling, Kosch, JDIM 2009, Figures 5 and 6) in network
# namespaces: sourced by benches/run-fsp.sh (`. "$HERE/lib/fsp-topology.sh"`), or by hand as root:
#   . benches/lib/fsp-topology.sh; fsp_up; fsp_check; fsp_cross_start; ...; fsp_cross_stop; fsp_down
# Needs bash, root, iproute2 (ip, tc, bridge, ss), ethtool, iperf3 (fsp_cross_*, fsp_check), ping.
#
# Star topology (no other address is ever used; everything stays inside these namespaces):
#
#               fspsrv 10.77.0.1 (server, sender)  1 Gbit/s
#   fspr1 10.77.0.11 --100M--+                |
#   fspr2 10.77.0.12 --100M--+-- fsphub (bridge br0) --1G-- fspx 10.77.0.20 (cross-traffic peer of relay 4)
#   fspr4 10.77.0.14 --100M--+                |
#                                        100M uplink (one bucket per direction)
#                                             |
#                                  fspsw3 (bridge br3, an access switch)
#                                   /                      \
#               fspcli 10.77.0.2 (client, receiver)    fspr3 10.77.0.13 (relay 3)
#
# Rates: tc htb on BOTH directions of every shaped link: the egress of the host-side veth (the host's upload)
# and the egress of the switch-side veth (its download); one class per device, a drop-tail bfifo of
# FSP_QUEUE_MS of the link's rate behind it. htb counts Ethernet frames without preamble/FCS (skb->len), so a
# 100 Mbit/s link carries ~93 Mbit/s of mover file data at MTU 1500 (ceiling ~95 for TCP payload).
# Offloads (TSO, GSO, GRO, UDP segmentation) are off on every veth, so htb sees MTU-sized frames.
#
# "The client and relay 3 share one 100 Mbit/s uplink": the client and relay 3 sit behind fspsw3, whose one
# link to the hub is shaped to FSP_RATE_SW3 in each direction; their own links to fspsw3 are not shaped. By
# default (FSP_SW3_LOCAL=0) whatever the client or relay 3 sends is redirected onto the uplink (tc ingress
# mirred on their ports of br3) and the hub's port towards fspsw3 is in hairpin mode, so relay 3 <-> client
# traffic also goes up the uplink and back down: every byte the client or relay 3 sends or receives crosses
# the shared uplink, and the client's download from all senders together (the direct leg, every relay's
# forwarding) is capped at 100 Mbit/s. br3 only delivers downward, by static MAC entries (learning off).
# FSP_SW3_LOCAL=1 instead lets br3 switch relay 3 <-> client locally (a real access switch) and shapes the
# client's and relay 3's own links to 100 Mbit/s each, so only traffic to and from the hub shares the uplink.
#
# Relay 4 carries cross traffic (fsp_cross_start): iperf3 UDP between fspr4 and fspx at FSP_CROSS_RATE of
# Ethernet frames in each direction at once (--bidir), i.e. half of relay 4's 100 Mbit/s link both ways.

FSP_HUB=fsphub
FSP_SW3=fspsw3
FSP_SRV=fspsrv
FSP_CLI=fspcli
FSP_X=fspx
FSP_RELAYS=(fspr1 fspr2 fspr3 fspr4)
FSP_NAMESPACES=("$FSP_HUB" "$FSP_SW3" "$FSP_SRV" "$FSP_CLI" "${FSP_RELAYS[@]}" "$FSP_X")

FSP_IP_SRV=10.77.0.1
FSP_IP_CLI=10.77.0.2
FSP_IP_RELAYS=(10.77.0.11 10.77.0.12 10.77.0.13 10.77.0.14)
FSP_IP_X=10.77.0.20

# Rates in bits/s (SI suffixes: 100M, 1G).
FSP_RATE_SRV=${FSP_RATE_SRV:-1G}
FSP_RATE_CLI=${FSP_RATE_CLI:-100M}      # the client's own link: shaped only with FSP_SW3_LOCAL=1
FSP_RATE_RELAY=${FSP_RATE_RELAY:-100M}  # each relay's link (relay 3's own link: only with FSP_SW3_LOCAL=1)
FSP_RATE_SW3=${FSP_RATE_SW3:-100M}      # the uplink the client and relay 3 share, per direction
FSP_RATE_X=${FSP_RATE_X:-1G}            # the cross-traffic peer's link
FSP_CROSS_RATE=${FSP_CROSS_RATE:-50M}   # relay 4's cross traffic per direction, Ethernet frame bits/s
FSP_QUEUE_MS=${FSP_QUEUE_MS:-20}        # drop-tail queue behind each shaper, in ms at the link's rate
FSP_SW3_LOCAL=${FSP_SW3_LOCAL:-0}
FSP_CROSS_PORT=${FSP_CROSS_PORT:-5299}
FSP_CROSS_LEN=1400 # iperf3 UDP payload: 1442-byte frames (1400 + 8 UDP + 20 IP + 14 Ethernet)
FSP_CROSS_PIDS=()

_fsp_log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
_fsp_bps() { numfmt --from=si "$1"; }

# _fsp_delete_ns NS...: kill -9 whatever runs in each namespace, then delete it (its veths go with it).
_fsp_delete_ns() {
    local ns pid
    for ns in "$@"; do
        ip netns list 2>/dev/null | grep -qw "^$ns" || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns delete "$ns" 2>/dev/null || true
    done
}

# _fsp_veth NS_A DEV_A NS_B DEV_B: a veth pair between two namespaces, offloads off, both ends up.
_fsp_veth() {
    ip -n "$1" link add "$2" type veth peer name "$4" netns "$3"
    _fsp_if_up "$1" "$2"
    _fsp_if_up "$3" "$4"
}

_fsp_if_up() { # NS DEV
    ip netns exec "$1" ethtool -K "$2" tso off gso off gro off tx-udp-segmentation off >/dev/null 2>&1 || true
    ip -n "$1" link set dev "$2" up
}

# _fsp_shape NS DEV RATE: htb at RATE on DEV's egress, a bfifo of FSP_QUEUE_MS behind it.
_fsp_shape() {
    local ns=$1 dev=$2 bps limit
    bps=$(_fsp_bps "$3")
    limit=$(awk -v r="$bps" -v ms="$FSP_QUEUE_MS" 'BEGIN { l = r * ms / 1000 / 8; if (l < 15140) l = 15140; printf "%d", l }')
    tc -n "$ns" qdisc replace dev "$dev" root handle 1: htb default 1
    tc -n "$ns" class replace dev "$dev" parent 1: classid 1:1 htb rate "${bps}bit" ceil "${bps}bit" quantum 1514
    tc -n "$ns" qdisc replace dev "$dev" parent 1:1 handle 10: bfifo limit "$limit"
}

# _fsp_host NS IP SWITCH_NS PORT: a host namespace with eth0 at IP, joined to SWITCH_NS's bridge by PORT.
_fsp_host() {
    local ns=$1 ip=$2 sw=$3 port=$4 br
    [[ $sw == "$FSP_HUB" ]] && br=br0 || br=br3
    _fsp_veth "$ns" eth0 "$sw" "$port"
    ip -n "$sw" link set dev "$port" master "$br"
    ip -n "$ns" addr add "$ip/24" dev eth0
}

# fsp_up: (re)builds the whole test bed; leftovers of an earlier run are removed first.
fsp_up() {
    fsp_down
    local ns i
    for ns in "${FSP_NAMESPACES[@]}"; do
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        # No IPv6 (no ND/MLD chatter through the shapers); no ICMP redirects.
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    done
    for ns in "$FSP_HUB:br0" "$FSP_SW3:br3"; do
        ip -n "${ns%:*}" link add "${ns#*:}" type bridge stp_state 0 forward_delay 0 mcast_snooping 0
        ip -n "${ns%:*}" link set dev "${ns#*:}" up
    done
    # The shared uplink: "sw3" on the hub, "uplink" in fspsw3.
    _fsp_veth "$FSP_HUB" sw3 "$FSP_SW3" uplink
    ip -n "$FSP_HUB" link set dev sw3 master br0
    ip -n "$FSP_SW3" link set dev uplink master br3

    _fsp_host "$FSP_SRV" "$FSP_IP_SRV" "$FSP_HUB" srv
    _fsp_host "$FSP_X" "$FSP_IP_X" "$FSP_HUB" x
    for i in 1 2 4; do _fsp_host "fspr$i" "${FSP_IP_RELAYS[i - 1]}" "$FSP_HUB" "r$i"; done
    _fsp_host "$FSP_CLI" "$FSP_IP_CLI" "$FSP_SW3" cli
    _fsp_host fspr3 "${FSP_IP_RELAYS[2]}" "$FSP_SW3" r3

    if [[ $FSP_SW3_LOCAL == 1 ]]; then
        _fsp_shape "$FSP_CLI" eth0 "$FSP_RATE_CLI"; _fsp_shape "$FSP_SW3" cli "$FSP_RATE_CLI"
        _fsp_shape fspr3 eth0 "$FSP_RATE_RELAY"; _fsp_shape "$FSP_SW3" r3 "$FSP_RATE_RELAY"
    else
        # Upward: everything the client and relay 3 send goes straight to the uplink (tc ingress redirect,
        # before br3 sees it), whatever its destination. Downward: br3 delivers what comes down the uplink
        # by static addresses (it learns nothing: the hairpinned frames would move the client's and relay
        # 3's addresses onto the uplink). The hub sends frames back out the port they came in (hairpin).
        local port mac
        for port in cli:"$FSP_CLI" r3:fspr3; do
            tc -n "$FSP_SW3" qdisc add dev "${port%%:*}" ingress
            tc -n "$FSP_SW3" filter add dev "${port%%:*}" parent ffff: protocol all u32 match u32 0 0 \
                action mirred egress redirect dev uplink
            bridge -n "$FSP_SW3" link set dev "${port%%:*}" learning off
            mac=$(ip netns exec "${port#*:}" cat /sys/class/net/eth0/address)
            bridge -n "$FSP_SW3" fdb add "$mac" dev "${port%%:*}" master static
        done
        bridge -n "$FSP_SW3" link set dev uplink learning off
        bridge -n "$FSP_HUB" link set dev sw3 hairpin on
    fi
    _fsp_shape "$FSP_SW3" uplink "$FSP_RATE_SW3"; _fsp_shape "$FSP_HUB" sw3 "$FSP_RATE_SW3"
    _fsp_shape "$FSP_SRV" eth0 "$FSP_RATE_SRV"; _fsp_shape "$FSP_HUB" srv "$FSP_RATE_SRV"
    _fsp_shape "$FSP_X" eth0 "$FSP_RATE_X"; _fsp_shape "$FSP_HUB" x "$FSP_RATE_X"
    for i in 1 2 4; do
        _fsp_shape "fspr$i" eth0 "$FSP_RATE_RELAY"; _fsp_shape "$FSP_HUB" "r$i" "$FSP_RATE_RELAY"
    done

    # Every host reaches every other (this also fills the ARP caches and the bridges' address tables).
    local ip
    for ip in "$FSP_IP_CLI" "${FSP_IP_RELAYS[@]}" "$FSP_IP_X"; do
        ip netns exec "$FSP_SRV" ping -q -c 1 -W 2 "$ip" >/dev/null ||
            { _fsp_log "fsp_up: $FSP_IP_SRV cannot reach $ip"; return 1; }
    done
    for ip in "${FSP_IP_RELAYS[@]}"; do
        ip netns exec "$FSP_CLI" ping -q -c 1 -W 2 "$ip" >/dev/null ||
            { _fsp_log "fsp_up: $FSP_IP_CLI cannot reach $ip"; return 1; }
    done
}

# fsp_down: stops the cross traffic, kills everything in the namespaces and deletes them. Safe to repeat.
fsp_down() {
    fsp_cross_stop
    _fsp_delete_ns "${FSP_NAMESPACES[@]}"
}

# _fsp_wait_listen NS PROTO(t|u) PORT: until a socket listens there (5 s).
_fsp_wait_listen() {
    for _ in $(seq 250); do
        [[ -n $(ip netns exec "$1" ss -"$2"lnH "sport = :$3" 2>/dev/null) ]] && return 0
        sleep 0.02
    done
    return 1
}

# fsp_cross_start [RATE]: iperf3 UDP between relay 4 and fspx, RATE (default FSP_CROSS_RATE) of Ethernet
# frames in each direction at once, until fsp_cross_stop. iperf3 -b counts UDP payload: scaled to frames.
fsp_cross_start() {
    local rate=${1:-$FSP_CROSS_RATE} payload
    fsp_cross_stop
    payload=$(awk -v r="$(_fsp_bps "$rate")" -v l="$FSP_CROSS_LEN" 'BEGIN { printf "%d", r * l / (l + 42) }')
    ip netns exec "$FSP_X" iperf3 -s -B "$FSP_IP_X" -p "$FSP_CROSS_PORT" >/dev/null 2>&1 &
    FSP_CROSS_PIDS+=($!)
    _fsp_wait_listen "$FSP_X" t "$FSP_CROSS_PORT" || { _fsp_log "fsp_cross_start: iperf3 -s did not start"; return 1; }
    ip netns exec fspr4 iperf3 -c "$FSP_IP_X" -p "$FSP_CROSS_PORT" -u -b "$payload" -l "$FSP_CROSS_LEN" --bidir \
        -t 86400 >/dev/null 2>&1 &
    FSP_CROSS_PIDS+=($!)
    sleep 0.5
    fsp_cross_running || { _fsp_log "fsp_cross_start: iperf3 -c exited at once"; return 1; }
}

# fsp_cross_running: true while both cross-traffic processes live.
fsp_cross_running() {
    ((${#FSP_CROSS_PIDS[@]} == 2)) || return 1
    kill -0 "${FSP_CROSS_PIDS[0]}" 2>/dev/null && kill -0 "${FSP_CROSS_PIDS[1]}" 2>/dev/null
}

fsp_cross_stop() {
    local pid
    for pid in "${FSP_CROSS_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${FSP_CROSS_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    FSP_CROSS_PIDS=()
}

# fsp_link_bytes: one line per shaped device, "ns:dev bytes packets drops" (its htb root's counters, sent
# and dropped); the difference of two calls is what crossed each shaper in between.
fsp_link_bytes() {
    local pair
    for pair in "$FSP_HUB:srv" "$FSP_SRV:eth0" "$FSP_HUB:sw3" "$FSP_SW3:uplink" "$FSP_HUB:r1" "fspr1:eth0" \
        "$FSP_HUB:r2" "fspr2:eth0" "$FSP_HUB:r4" "fspr4:eth0" "$FSP_HUB:x" "$FSP_X:eth0" \
        "$FSP_SW3:cli" "$FSP_CLI:eth0" "$FSP_SW3:r3" "fspr3:eth0"; do
        tc -n "${pair%%:*}" -s qdisc show dev "${pair#*:}" 2>/dev/null | awk -v p="$pair" '
            $1 == "qdisc" && $2 == "htb" { h = 1; next }
            h && $1 == "Sent" { gsub(/,/, "", $0); print p, $2, $4, $7; exit }'
    done
}

# fsp_iperf FROM_NS TO_NS TO_IP PORT SECONDS [iperf3 client args...]: one TCP (or -u) iperf3 measurement;
# prints the receiver's bits/s. Runs the server once (-1) in TO_NS.
fsp_iperf() {
    local from=$1 to=$2 ip=$3 port=$4 secs=$5 spid out
    shift 5
    ip netns exec "$to" iperf3 -s -1 -B "$ip" -p "$port" >/dev/null 2>&1 &
    spid=$!
    _fsp_wait_listen "$to" t "$port" || { kill "$spid" 2>/dev/null; echo ""; return 1; }
    out=$(ip netns exec "$from" timeout $((secs + 20)) iperf3 -c "$ip" -p "$port" -t "$secs" -J "$@" 2>/dev/null || true)
    wait "$spid" 2>/dev/null || true
    python3 -c 'import json, sys
try:
    j = json.loads(sys.stdin.read())
    e = j["end"]
    s = e.get("sum_received") or e.get("sum")
    print(round(s["bits_per_second"]))
except Exception:
    print("")' <<<"$out"
}

# fsp_check [SECONDS]: iperf3 TCP over each kind of path, alone and together, and prints one line each
# ("name Mbit/s [expected]"); ~10 x SECONDS (default 4). The cross traffic runs during the relay-4 lines
# only if it was started before.
fsp_check() {
    local s=${1:-4} a b c d
    _fsp_mbit() { awk -v v="$1" 'BEGIN { if (v == "") print "fail"; else printf "%.1f", v / 1e6 }'; }
    echo "srv->r1 $(_fsp_mbit "$(fsp_iperf "$FSP_SRV" fspr1 10.77.0.11 5301 "$s")") [~95: relay 1 download]"
    echo "srv->cli $(_fsp_mbit "$(fsp_iperf "$FSP_SRV" "$FSP_CLI" "$FSP_IP_CLI" 5302 "$s")") [~95: the shared uplink]"
    echo "r1->cli $(_fsp_mbit "$(fsp_iperf fspr1 "$FSP_CLI" "$FSP_IP_CLI" 5303 "$s")") [~95]"
    echo "r3->cli $(_fsp_mbit "$(fsp_iperf fspr3 "$FSP_CLI" "$FSP_IP_CLI" 5304 "$s")") [~95$([[ $FSP_SW3_LOCAL == 1 ]] && echo ": switched locally" || echo ": up and back down the uplink")]"
    echo "cli->srv $(_fsp_mbit "$(fsp_iperf "$FSP_CLI" "$FSP_SRV" "$FSP_IP_SRV" 5305 "$s")") [~95: the uplink's upward bucket]"
    # Two at once: results in files, the functions run in the background.
    local tmp
    tmp=$(mktemp -d)
    fsp_iperf "$FSP_SRV" fspr3 10.77.0.13 5306 "$s" >"$tmp/a" &
    a=$!
    fsp_iperf fspr3 "$FSP_CLI" "$FSP_IP_CLI" 5307 "$s" >"$tmp/b" &
    b=$!
    wait "$a" "$b" || true
    echo "srv->r3+r3->cli $(_fsp_mbit "$(cat "$tmp/a")")+$(_fsp_mbit "$(cat "$tmp/b")") [sum ~95$([[ $FSP_SW3_LOCAL == 1 ]] && echo ": NOT shared with FSP_SW3_LOCAL=1, ~95 each")]"
    fsp_iperf "$FSP_SRV" fspr3 10.77.0.13 5308 "$s" >"$tmp/a" &
    a=$!
    fsp_iperf "$FSP_SRV" "$FSP_CLI" "$FSP_IP_CLI" 5309 "$s" >"$tmp/b" &
    b=$!
    wait "$a" "$b" || true
    echo "srv->r3+srv->cli $(_fsp_mbit "$(cat "$tmp/a")")+$(_fsp_mbit "$(cat "$tmp/b")") [sum ~95: the shared uplink]"
    echo "srv->r4 $(_fsp_mbit "$(fsp_iperf "$FSP_SRV" fspr4 10.77.0.14 5310 "$s")") [~95 alone, ~45 next to the cross traffic]"
    fsp_iperf "$FSP_SRV" fspr1 10.77.0.11 5311 "$s" >"$tmp/a" &
    a=$!
    fsp_iperf "$FSP_SRV" fspr2 10.77.0.12 5312 "$s" >"$tmp/b" &
    b=$!
    fsp_iperf "$FSP_SRV" fspr4 10.77.0.14 5313 "$s" >"$tmp/c" &
    c=$!
    fsp_iperf "$FSP_SRV" "$FSP_CLI" "$FSP_IP_CLI" 5314 "$s" >"$tmp/d" &
    d=$!
    wait "$a" "$b" "$c" "$d" || true
    echo "srv->r1+r2+r4+cli $(_fsp_mbit "$(cat "$tmp/a")")+$(_fsp_mbit "$(cat "$tmp/b")")+$(_fsp_mbit "$(cat "$tmp/c")")+$(_fsp_mbit "$(cat "$tmp/d")") [~95+95+(95 or 45)+95]"
    rm -rf "$tmp"
}
