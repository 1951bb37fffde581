#!/usr/bin/env bash
# The resume soak at bench scale: killed-and-resumed simulated transfers over impaired paths
# (mover/tests/sim_resume_soak.rs), 1000 seeds by default instead of CI's 200. Virtual time only: no root, no
# network. Prints one summary line (seeds, sessions, kills, lying disks, bytes resumed) and every failing seed.
#
# Usage: benches/sim-resume-soak.sh            # seeds 1..1000
#        MOVER_SOAK_SEEDS=5000 MOVER_SOAK_FIRST_SEED=1001 benches/sim-resume-soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export MOVER_SOAK_SEEDS=${MOVER_SOAK_SEEDS:-1000}
export MOVER_SOAK_FIRST_SEED=${MOVER_SOAK_FIRST_SEED:-1}
exec cargo test --profile ci -p mover --test sim_resume_soak -- --nocapture
