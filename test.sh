#!/usr/bin/env bash
# The test suite, with its set-up: installs the system tools the tests use (when root and missing), then runs
# every test in the `ci` profile: optimised (the simulator moves gigabytes of virtual data per test) and with
# debug assertions on (the invariants asserted in hot loops are checked by every test).
# Tests that need root (network namespaces, nftables loss, tmpfs) skip loudly when not root; CI runs as root.
set -euo pipefail
cd "$(dirname "$0")"

need_pkgs=()
command -v ip >/dev/null 2>&1 || need_pkgs+=(iproute2)
command -v nft >/dev/null 2>&1 || need_pkgs+=(nftables)
command -v ethtool >/dev/null 2>&1 || need_pkgs+=(ethtool)
command -v ping >/dev/null 2>&1 || need_pkgs+=(iputils-ping)
command -v iperf3 >/dev/null 2>&1 || need_pkgs+=(iperf3)
command -v setpriv >/dev/null 2>&1 || need_pkgs+=(util-linux)
command -v prlimit >/dev/null 2>&1 || need_pkgs+=(util-linux)
[ -x /usr/sbin/sshd ] || need_pkgs+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need_pkgs+=(openssh-client)
command -v rsync >/dev/null 2>&1 || need_pkgs+=(rsync)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v man >/dev/null 2>&1 || need_pkgs+=(man-db)
command -v strace >/dev/null 2>&1 || need_pkgs+=(strace)
command -v tcpdump >/dev/null 2>&1 || need_pkgs+=(tcpdump)
command -v systemd-analyze >/dev/null 2>&1 || need_pkgs+=(systemd)
# A private Slurm cluster (one slurmctld, one slurmd and its own munged) runs the sharded pushes of
# mover/tests/slurm_shards.rs; the test starts and stops it, the packages' own services are not used.
{ [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] && command -v sbatch; } >/dev/null 2>&1 || need_pkgs+=(slurm-wlm)
[ -x /usr/sbin/munged ] || need_pkgs+=(munge)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    echo "test.sh: missing ${need_pkgs[*]}; the tests that need them will fail or skip" >&2
  fi
fi

exec cargo test --profile ci --workspace "$@"
