#!/usr/bin/env bash
# Many small files against the peers, in one run (issue 18, item 4): a tree of FILES files (SHAPE, see
# lib/small-tree.py; default 100,000 x 4 KiB) on tmpfs copied into a fresh directory on DEST_DIR (a real file
# system) by: mover push -> mover serve --once (AES-256-GCM, verified), rsync -a over ssh, tar | ssh tar, and
# the rsync daemon (no encryption). Loopback (127.0.0.1), a real OpenSSH sshd in a private mount namespace as
# in run-secure.sh. Prints files/s, wall seconds and CPU seconds (user + system of every process of the tool,
# from the cgroup-free measure `/usr/bin/time` of the client plus the server's own) with each peer's ratio.
#
# Usage (root; NOT part of CI; ~5 min with the defaults on 2 cores):
#   benches/run-smallfiles-peers.sh
# Environment: MOVER (target/release/mover), FILES (100000), SHAPE (4k), REPEATS (1), DEST_DIR (/var/tmp),
# SETTLE (6: seconds between removing a tree and the next copy: ext4 without a journal scans past inodes
# freed in the last 5 s), SSH_PORT (2242), RSYNC_PORT (8873), MOVER_PORT (7433), SSH_CIPHER (aes128-gcm@openssh.com),
# RESULTS (benches/results/smallfiles-peers-DATE.csv).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
MOVER=${MOVER:-$ROOT/target/release/mover}
FILES=${FILES:-100000}
SHAPE=${SHAPE:-4k}
REPEATS=${REPEATS:-1}
DEST_DIR=${DEST_DIR:-/var/tmp}
SETTLE=${SETTLE:-6}
SSH_PORT=${SSH_PORT:-2242}
RSYNC_PORT=${RSYNC_PORT:-8873}
MOVER_PORT=${MOVER_PORT:-7433}
SSH_CIPHER=${SSH_CIPHER:-aes128-gcm@openssh.com}
RESULTS=${RESULTS:-$ROOT/benches/results/smallfiles-peers-$(date -u +%Y-%m-%d).csv}
die() { echo "run-smallfiles-peers.sh: error: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "needs root (sshd): run it with sudo"
for t in /usr/sbin/sshd ssh rsync tar ssh-keygen unshare /usr/bin/time; do
    command -v "$t" >/dev/null || die "missing $t (apt-get install openssh-server openssh-client rsync time)"
done
[[ -x $MOVER ]] || die "no mover at $MOVER: cargo build --release -p mover"
# The receiver holds a descriptor per file in flight (files/open_files.rs); so do the peers' servers.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
WORK=$(mktemp -d /dev/shm/mover-small-peers.XXXXXX)
DST=$(mktemp -d "$DEST_DIR/mover-small-peers.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK" "$DST"
}
trap cleanup EXIT

python3 "$HERE/lib/small-tree.py" "$WORK/tree" "$FILES" 16 "$SHAPE"

ssh-keygen -q -t ed25519 -N '' -f "$WORK/hostkey"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/clientkey"
cp "$WORK/clientkey.pub" "$WORK/authorized_keys"
cat >"$WORK/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $WORK/hostkey
AuthorizedKeysFile $WORK/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $WORK/sshd.pid
EOF
unshare -m --propagation private sh -c \
    'mount -t tmpfs -o mode=755 tmpfs /run && mkdir -m 755 /run/sshd && exec /usr/sbin/sshd -D -e -f "$1"' \
    sh "$WORK/sshd_config" 2>"$WORK/sshd.log" &
PIDS+=($!)
SSH="ssh -p $SSH_PORT -F /dev/null -i $WORK/clientkey -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
SSH="$SSH -o BatchMode=yes -o LogLevel=ERROR -o Ciphers=$SSH_CIPHER"
for _ in $(seq 50); do $SSH root@127.0.0.1 true 2>/dev/null && break; sleep 0.2; done
$SSH root@127.0.0.1 true || die "sshd not reachable: $(cat "$WORK/sshd.log")"

cat >"$WORK/rsyncd.conf" <<EOF
use chroot = no
[dst]
path = $DST
read only = no
uid = root
gid = root
EOF
rsync --daemon --no-detach --port "$RSYNC_PORT" --address 127.0.0.1 --config "$WORK/rsyncd.conf" &
PIDS+=($!)
sleep 0.5

cpu() { awk '{ s += $1 + $2 } END { printf "%.2f", s }' "$@"; }

# copy TOOL NAME: copies the tree into $DST/NAME; prints "wall_s,cpu_s" (client CPU; mover adds its server's).
copy() {
    local tool=$1 name=$2 t0 t1
    rm -f "$WORK"/*.cpu
    case $tool in
    mover)
        /usr/bin/time -f "%U %S" -o "$WORK/serve.cpu" "$MOVER" serve --once --insecure-no-auth \
            --listen "127.0.0.1:$MOVER_PORT" --root "$DST" 2>"$WORK/serve.log" &
        local spid=$!
        for _ in $(seq 200); do grep -q "listening on" "$WORK/serve.log" 2>/dev/null && break; sleep 0.05; done
        t0=$(date +%s.%N)
        /usr/bin/time -f "%U %S" -o "$WORK/client.cpu" "$MOVER" push --insecure-no-auth "$WORK/tree" \
            "mover://127.0.0.1:$MOVER_PORT/$name" 2>"$WORK/client.log" || { cat "$WORK/client.log" >&2; exit 1; }
        t1=$(date +%s.%N)
        wait "$spid" || true ;;
    rsync-ssh)
        t0=$(date +%s.%N)
        /usr/bin/time -f "%U %S" -o "$WORK/client.cpu" rsync -a -e "$SSH" "$WORK/tree/" "root@127.0.0.1:$DST/$name/"
        t1=$(date +%s.%N) ;;
    tar-ssh)
        t0=$(date +%s.%N)
        /usr/bin/time -f "%U %S" -o "$WORK/client.cpu" sh -c \
            "tar -C '$WORK/tree' -cf - . | $SSH root@127.0.0.1 'mkdir -p $DST/$name && tar -C $DST/$name -xf -'"
        t1=$(date +%s.%N) ;;
    rsync-daemon)
        t0=$(date +%s.%N)
        /usr/bin/time -f "%U %S" -o "$WORK/client.cpu" rsync -a "$WORK/tree/" "rsync://127.0.0.1:$RSYNC_PORT/dst/$name/"
        t1=$(date +%s.%N) ;;
    esac
    echo "$(python3 -c "print(f'{$t1-$t0:.3f}')"),$(cpu "$WORK"/*.cpu)"
}

mkdir -p "$(dirname "$RESULTS")"
echo "tool,rep,files,wall_s,cpu_s" >"$RESULTS"
for rep in $(seq "$REPEATS"); do
    for tool in mover rsync-ssh tar-ssh rsync-daemon; do
        sleep "$SETTLE"
        r=$(copy "$tool" "$tool-$rep")
        cmp -s <(cd "$WORK/tree" && find . -type f | wc -l) <(cd "$DST/$tool-$rep" && find . -type f | wc -l) \
            || die "$tool: not every file arrived"
        echo "$tool,$rep,$FILES,$r" | tee -a "$RESULTS"
        rm -rf "${DST:?}/$tool-$rep"
    done
done
echo "date $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg), $FILES files ($SHAPE), loopback, dest on $DEST_DIR"
python3 - "$RESULTS" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
tools = ["mover", "rsync-ssh", "tar-ssh", "rsync-daemon"]
med = {t: statistics.median(float(r["wall_s"]) for r in rows if r["tool"] == t) for t in tools}
cpu = {t: statistics.median(float(r["cpu_s"]) for r in rows if r["tool"] == t) for t in tools}
n = int(rows[0]["files"])
print("| tool | files/s | wall s | CPU s (client; mover: both ends) | mover's files/s over it |")
print("|---|---:|---:|---:|---:|")
for t in tools:
    print(f"| {t} | {n / med[t]:,.0f} | {med[t]:.2f} | {cpu[t]:.2f} | {med[t] / med['mover'] if t != 'mover' else 1:.2f}x |")
PY
