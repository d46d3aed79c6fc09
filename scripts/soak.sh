#!/usr/bin/env bash
# The soak run: the daemon under pgbench load for PGMONETA_SOAK_MINUTES (default 30) with
# faults injected at random, then every valid backup restored and started and point-in-time
# restores checked (pgmoneta-daemon/tests/soak/main.rs). Needs root (it mounts a tmpfs for the
# repository) and the set-up of scripts/setup.sh. Not part of CI.
#
#   scripts/soak.sh                      # 30 minutes, PostgreSQL 15
#   PGMONETA_SOAK_MINUTES=5 PGMONETA_SOAK_SEED=42 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PGMONETA_TEST_PG_BIN="${PGMONETA_TEST_PG_BIN:-/usr/lib/postgresql/15/bin}"
export PGMONETA_SOAK_MINUTES="${PGMONETA_SOAK_MINUTES:-30}"
exec cargo test --release --locked -p pgmoneta-daemon --test soak -- --ignored --nocapture
