#!/usr/bin/env bash
# Encrypted against unencrypted mover, and against scp and rsync over ssh, on one path: loopback, through a
# real OpenSSH sshd (its own host key and client key, port SSH_PORT on 127.0.0.1), in one run, alternating
# the tools so that they share the machine's moods. mover runs the way users start it: `mover push SRC
# root@127.0.0.1:DIR` over ssh (the remote side is `mover serve --stdio`), once per --cipher.
#
# Usage (root: sshd needs it; NOT part of CI):
#   sudo benches/run-secure.sh                 # defaults below, about 4 minutes on 2 cores
#   REPEATS=1 SIZE=256M benches/run-secure.sh  # a quick look
#
# Environment (defaults in brackets):
#   SIZE [1G]        one file of random bytes (IEC suffix), plus SMALL files of 1 MiB in a subdirectory
#   SMALL [64]       small files next to it
#   REPEATS [3]      runs per tool; the table gives medians (and min/max)
#   TOOLS ["mover-aes256gcm mover-chacha20poly1305 mover-none scp rsync"]
#   MOVER_ARGS ["--mtu 9000"]  extra push arguments (loopback allows 64 KiB datagrams; 9000 is a jumbo frame)
#   SSH_CIPHER [aes128-gcm@openssh.com]  the cipher scp and rsync's ssh use (OpenSSH's fastest on AES-NI)
#   SSH_PORT [2299], OUT [benches/results/secure-<date>]
#
# Goodput is the bytes of the tree over the wall-clock time of the whole command (ssh set-up included, for
# every tool alike). Every copy is compared with the source (cmp) before it counts.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=lib/netns.sh
. "$HERE/lib/netns.sh"

SIZE=${SIZE:-1G}
SMALL=${SMALL:-64}
REPEATS=${REPEATS:-3}
TOOLS=${TOOLS:-"mover-aes256gcm mover-chacha20poly1305 mover-none scp rsync"}
MOVER_ARGS=${MOVER_ARGS:-"--mtu 9000"}
SSH_CIPHER=${SSH_CIPHER:-aes128-gcm@openssh.com}
SSH_PORT=${SSH_PORT:-2299}
STAMP=$(date -u +%Y-%m-%dT%H%M)
OUT=${OUT:-$ROOT/benches/results/secure-$STAMP}

[[ $(id -u) == 0 ]] || die "needs root (sshd): run it with sudo"
for t in /usr/sbin/sshd ssh scp rsync ssh-keygen unshare openssl numfmt cmp; do
    command -v "$t" >/dev/null || die "missing $t (apt-get install openssh-server openssh-client rsync openssl)"
done
cargo build --release -q --manifest-path "$ROOT/Cargo.toml" -p mover
MOVER=$ROOT/target/release/mover
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/mover-secure.XXXXXX)
SSHD_PID=
cleanup() {
    [[ -n $SSHD_PID ]] && kill "$SSHD_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

# sshd on loopback, in a private mount namespace with a tmpfs on /run (OpenSSH needs /run/sshd; the host's
# /run is left alone).
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
Subsystem sftp internal-sftp
EOF
unshare -m --propagation private sh -c \
    'mount -t tmpfs -o mode=755 tmpfs /run && mkdir -m 755 /run/sshd && exec /usr/sbin/sshd -D -e -f "$1"' \
    sh "$WORK/sshd_config" 2>"$WORK/sshd.log" &
SSHD_PID=$!
SSH_OPTS=(-p "$SSH_PORT" -F /dev/null -i "$WORK/clientkey" -o StrictHostKeyChecking=no
    -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR -o "Ciphers=$SSH_CIPHER")
for _ in $(seq 50); do ssh "${SSH_OPTS[@]}" root@127.0.0.1 true 2>/dev/null && break; sleep 0.2; done
ssh "${SSH_OPTS[@]}" root@127.0.0.1 true || die "sshd not reachable: $(cat "$WORK/sshd.log")"

# The tree: one big file and SMALL files of 1 MiB, in the page cache.
SRC=$WORK/src/tree
mkdir -p "$SRC/small"
make_file "$SRC/big.bin" "$SIZE"
for i in $(seq "$SMALL"); do head -c 1048576 "$SRC/big.bin" | tail -c $((1048576 - i)) >"$SRC/small/f$i"; done
cat "$SRC"/small/* >/dev/null
BYTES=$(du -sb "$SRC" | cut -f1)
DST=$WORK/dst

# run TOOL REP: one copy of the tree into $DST/TOOL-REP, timed; appends a CSV row.
run() {
    local tool=$1 rep=$2 dest=$DST/$1-$2 t0 t1 status=ok extra=
    mkdir -p "$dest"
    local log=$OUT/$tool-$rep.log
    t0=$(now)
    case $tool in
    mover-*)
        # shellcheck disable=SC2086 # MOVER_ARGS is a list of words
        "$MOVER" push --cipher "${tool#mover-}" $MOVER_ARGS --json --ssh "ssh ${SSH_OPTS[*]}" \
            --remote-mover "$MOVER" --remote-root / "$SRC" "root@127.0.0.1:$dest" >"$log.json" 2>"$log" ||
            status=failed
        extra="goodput_reported_bps=$(jget "$log.json" goodput_bps) retransmitted=$(jget "$log.json" packets_retransmitted)"
        ;;
    scp) scp -r -q "${SSH_OPTS[@]/#-p/-P}" "$SRC" "root@127.0.0.1:$dest/" >"$log" 2>&1 || status=failed ;;
    rsync) rsync -a -e "ssh ${SSH_OPTS[*]}" "$SRC" "root@127.0.0.1:$dest/" >"$log" 2>&1 || status=failed ;;
    esac
    t1=$(now)
    if [[ $status == ok ]] && ! cmp -s "$SRC/big.bin" "$dest/tree/big.bin"; then status=corrupt; fi
    if [[ $status == ok ]] && ! diff -rq "$SRC" "$dest/tree" >/dev/null; then status=corrupt; fi
    local secs gbps
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
    gbps=$(awk -v n="$BYTES" -v s="$secs" 'BEGIN {printf "%.3f", n * 8 / s / 1e9}')
    echo "$tool,$rep,$BYTES,$secs,$gbps,$status,$extra" >>"$OUT/runs.csv"
    log "$tool #$rep: $BYTES bytes in $secs s = $gbps Gbit/s ($status) $extra"
    rm -rf "$dest"
}

echo "tool,rep,bytes,seconds,gbit_per_s,status,extra" >"$OUT/runs.csv"
log "tree: $BYTES bytes; tools: $TOOLS; $REPEATS repeats; out: $OUT"
for rep in $(seq "$REPEATS"); do
    for tool in $TOOLS; do run "$tool" "$rep"; done
done

{
    echo "# run-secure.sh, $(date -u +%Y-%m-%dT%H:%M)Z, $(nproc) cores, $(uname -r); tree $BYTES bytes (SIZE=$SIZE + $SMALL x 1 MiB);"
    echo "# mover args: $MOVER_ARGS; ssh cipher for scp/rsync: $SSH_CIPHER; $REPEATS repeats, wall clock incl. ssh set-up"
    echo "| tool | median Gbit/s | min | max | vs mover-none | vs scp | vs rsync |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    med() { awk -F, -v t="$1" '$1 == t && $6 == "ok" {print $5}' "$OUT/runs.csv" | median; }
    none=$(med mover-none); scp_m=$(med scp); rsync_m=$(med rsync)
    for tool in $TOOLS; do
        m=$(med "$tool")
        mn=$(awk -F, -v t="$tool" '$1 == t && $6 == "ok" {print $5}' "$OUT/runs.csv" | sort -g | head -1)
        mx=$(awk -F, -v t="$tool" '$1 == t && $6 == "ok" {print $5}' "$OUT/runs.csv" | sort -g | tail -1)
        r() { awk -v a="$m" -v b="$1" 'BEGIN {if (b + 0 > 0 && a + 0 > 0) printf "%.2f", a / b; else print "-"}'; }
        echo "| $tool | $m | ${mn:--} | ${mx:--} | $(r "$none") | $(r "$scp_m") | $(r "$rsync_m") |"
    done
} | tee "$OUT/table.md"
