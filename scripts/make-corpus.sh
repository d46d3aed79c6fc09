#!/usr/bin/env bash
# Makes the test corpus (real WAL and data files of PostgreSQL 14 to 18; see
# pgmoneta-testkit/src/corpus.rs) in the cache the tests read, /var/cache/pgmoneta-rs/corpus
# (or $PGMONETA_CORPUS), with the servers scripts/setup.sh installed. It is made again only when
# its sources or a server's version changed. Usage: scripts/make-corpus.sh [bins-file]
# where bins-file holds setup.sh's "<major> <bin directory>" lines (default: run setup.sh's
# lookup again); Debian's PostgreSQL 15, which has pg_waldump, stands for 15.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -ge 1 ]; then
    bins=$(cat "$1")
else
    bins=$(PGMONETA_SKIP_CORPUS=1 scripts/setup.sh)
fi
args=()
while read -r major bin; do
    [ -n "$major" ] && args+=("$major=$bin")
done <<< "$bins"
args+=("15=/usr/lib/postgresql/15/bin")
# The dev profile: the tests build the same crates with it.
cargo run --quiet --locked -p pgmoneta-testkit --bin pgmoneta-corpus -- "${args[@]}"
