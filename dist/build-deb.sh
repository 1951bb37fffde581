#!/usr/bin/env bash
# Builds the .deb (target/debian/mover_VERSION-1_ARCH.deb) with cargo-deb: builds mover, generates its man
# pages and shell completions from the binary into target/PROFILE/dist/, then packages them with the unit, the
# example config and tuning/ (the assets are listed in mover/Cargo.toml, [package.metadata.deb]).
#
#   dist/build-deb.sh                  # release profile
#   PROFILE=ci dist/build-deb.sh       # the test suite's profile
#   SKIP_BUILD=1 PROFILE=ci ...        # package target/ci/mover as it is (mover/tests/deb.rs, inside cargo test)
#   dist/build-deb.sh --output DIR     # further arguments go to cargo deb
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:-release}
if ! cargo deb --version >/dev/null 2>&1; then
  echo "build-deb.sh: error: cargo-deb is not installed: cargo install cargo-deb --locked" >&2
  exit 1
fi
target_dir=${CARGO_TARGET_DIR:-target}
[ -n "${SKIP_BUILD:-}" ] || cargo build --profile "$profile" -p mover
bin=$target_dir/$profile/mover
[ -x "$bin" ] || { echo "build-deb.sh: error: no $bin: build it first (or leave SKIP_BUILD unset)" >&2; exit 1; }

# Beside the binary, where cargo-deb looks for `target/release/...` assets of the chosen profile.
gen=$target_dir/$profile/dist
rm -rf "$gen"
mkdir -p "$gen/man" "$gen/completions"
"$bin" man --dir "$gen/man" 2>/dev/null
gzip -9n "$gen"/man/*.1
"$bin" completions bash >"$gen/completions/mover.bash"
"$bin" completions zsh >"$gen/completions/_mover"
"$bin" completions fish >"$gen/completions/mover.fish"

# --no-build: the binary was built above in the chosen profile; cargo-deb strips it (the profile keeps
# line tables for backtraces in benchmarks, not wanted in a package).
cargo deb -p mover --no-build --profile "$profile" --strip "$@"
