# shellcheck shell=bash
# Shell helpers shared by the benches/run-*.sh scripts that run tools between network namespaces.
# Sourced (`. "$HERE/lib/netns.sh"`), never run; needs bash. Nothing here creates a namespace or starts a
# process on its own: each script owns its namespaces, addresses and clean-up trap.

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "FATAL: $*"; exit 1; }

# IEC size (4G = 4 GiB) -> bytes.
bytes_of() { numfmt --from=iec "$1"; }
now() { date +%s.%N; }
# The value of "key": in a one-line JSON object (first occurrence; no nesting awareness); empty, and success,
# when the key or the file is missing.
jget() { { grep -o "\"$2\":[^,}]*" "$1" 2>/dev/null || true; } | head -1 | cut -d: -f2 | tr -d '" '; }
# Median of the numbers on stdin, one a line ("nan" when there are none).
median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
# Waits (up to 10 s) for a string in a file.
wait_for() { for _ in $(seq 500); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.02; done; return 1; }
# Waits for a background pid, at most $2 seconds; kills it on timeout.
wait_pid() {
    local pid=$1 limit=$2 t=0
    while kill -0 "$pid" 2>/dev/null; do
        sleep 0.1; t=$((t + 1))
        if ((t > limit * 10)); then kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; return 124; fi
    done
    wait "$pid"
}

# make_file PATH SIZE: random (incompressible) bytes, written once at disk speed, then read into the page cache.
make_file() {
    local want; want=$(bytes_of "$2")
    if [[ ! -f $1 || $(stat -c %s "$1") != "$want" ]]; then
        log "creating $1 ($2, openssl AES-CTR stream: fast and incompressible)"
        openssl enc -aes-128-ctr -nosalt -pass pass:mover-bench -pbkdf2 -in /dev/zero 2>/dev/null |
            head -c "$want" >"$1" || true # openssl dies of SIGPIPE when head has enough
        [[ $(stat -c %s "$1") == "$want" ]] || die "could not create $1"
    fi
    cat "$1" >/dev/null
}

# delete_netns NS...: kill -9 whatever runs in each namespace, then delete it (its veths go with it).
delete_netns() {
    local ns pid
    for ns in "$@"; do
        if ip netns list | grep -qw "$ns"; then
            for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null; done
            ip netns delete "$ns"
        fi
    done
}

# start_sshd NS IP PORT DIR: OpenSSH sshd in namespace NS listening on IP:PORT, with its own host key and a
# throwaway client key, all under DIR. It runs in a private mount namespace with a tmpfs on /run, because
# OpenSSH needs /run/sshd (privilege separation) and the host's /run is left untouched. Sets SSHD_PID (sshd
# itself: unshare and sh exec into it) and SSH_OPTS (the client options for ssh/scp/rsync -e).
start_sshd() {
    local ns=$1 ip=$2 port=$3 dir=$4
    ssh-keygen -q -t ed25519 -N '' -f "$dir/hostkey"
    ssh-keygen -q -t ed25519 -N '' -f "$dir/clientkey"
    cp "$dir/clientkey.pub" "$dir/authorized_keys"
    cat >"$dir/sshd_config" <<EOF
Port $port
ListenAddress $ip
HostKey $dir/hostkey
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $dir/sshd.pid
Subsystem sftp internal-sftp
EOF
    ip netns exec "$ns" unshare -m --propagation private sh -c \
        'mount -t tmpfs -o mode=755 tmpfs /run && mkdir -m 755 /run/sshd && exec /usr/sbin/sshd -D -e -f "$1"' \
        sh "$dir/sshd_config" 2>"$dir/sshd.log" &
    # shellcheck disable=SC2034 # for the sourcing script
    SSHD_PID=$!
    SSH_OPTS=(-F /dev/null -i "$dir/clientkey" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
        -o BatchMode=yes -o LogLevel=ERROR -o Ciphers=aes128-gcm@openssh.com)
}

# wait_sshd FROM_NS IP PORT DIR: until a login from FROM_NS works (about 10 s), else die with sshd's log.
wait_sshd() {
    local ns=$1 ip=$2 port=$3 dir=$4
    for _ in $(seq 50); do
        ip netns exec "$ns" ssh -p "$port" "${SSH_OPTS[@]}" "root@$ip" true 2>/dev/null && return 0
        sleep 0.2
    done
    ip netns exec "$ns" ssh -p "$port" "${SSH_OPTS[@]}" "root@$ip" true ||
        die "sshd at $ip:$port not reachable: $(cat "$dir/sshd.log")"
}
