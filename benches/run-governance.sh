#!/usr/bin/env bash
# Site-wide rate caps (issue 21, item 4): the sum of governed sessions against the daemon's cap, measured by
# mover/tests/rate_governance.rs (three fair pushes into `serve --max-rate 600M`; two fair and one low; and
# the same three pushes asking a third each of a daemon without caps, the machine's own baseline) but with
# the release binary: the tests run the ci profile's, whose debug assertions cost CPU that this 2-core
# machine's six pipelines do not have to spare (the sums came out 510-525 Mbit/s with it, 547-579 with the
# release build, same machine, same hour).
#
# Usage: benches/run-governance.sh [REPEATS, default 3]   (loopback only; not part of CI; ~35 s a repeat)
# Needs: a release build (`cargo build --release -p mover`); builds the test binary in the ci profile.
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS=${1:-3}
BIN=${MOVER:-$PWD/target/release/mover}
[ -x "$BIN" ] || { echo "run-governance.sh: no $BIN: cargo build --release -p mover" >&2; exit 1; }
echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), mover $(git rev-parse --short HEAD), binary $BIN"
for r in $(seq "$REPEATS"); do
    echo "## repeat $r"
    MOVER_TEST_BIN="$BIN" cargo test --profile ci --test rate_governance -- --include-ignored --nocapture \
        --test-threads 1 2>&1 | grep -E '^test [a-z_]+ \.\.\.|steady|aim' | sed -E 's/ \.\.\. .*//'
done
