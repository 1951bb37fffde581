#!/usr/bin/env bash
# The statically linked build (musl): target/x86_64-unknown-linux-musl/release/mover, a static-pie binary
# that runs on any x86-64 Linux. Installs what it needs when missing (the target's standard library through
# rustup; Debian's musl-tools, whose musl-gcc builds ring's C and assembly), builds, then checks the result:
# statically linked, `--version`, and a 64 MiB demo that verifies. `.ci/run` runs it, so a change that breaks
# the musl build (a libc type that differs between glibc and musl) fails CI.
#
#   dist/build-musl.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target"
fi
if ! command -v musl-gcc >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends musl-tools >/dev/null
  else
    echo "build-musl.sh: error: no musl-gcc: install musl-tools (Debian) or a musl C compiler" >&2
    exit 1
  fi
fi
cargo build --release --target "$target" -p mover
bin=target/$target/release/mover
# ldd answers "statically linked" (static-pie) or "not a dynamic executable" for a static binary.
if ldd "$bin" 2>&1 | grep -q "=>"; then
  echo "build-musl.sh: error: $bin links shared libraries:" >&2
  ldd "$bin" >&2
  exit 1
fi
"$bin" --version
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" demo --size 64M --workdir "$work"
echo "build-musl.sh: $bin is static and works"
