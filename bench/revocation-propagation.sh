#!/usr/bin/env bash
# Revocation propagation on the PostgreSQL ledger: how long from the commit of a revocation
# through one node until another node's in-memory view refuses the key (LISTEN/NOTIFY and
# the catch-up read). Prints p50 and p99.
#
#   bash bench/revocation-propagation.sh          # 200 revocations
#   bash bench/revocation-propagation.sh 2000
#
# Uses the server named by VALET_TEST_POSTGRES, or starts a private one from Debian's
# PostgreSQL binaries (apt-get install postgresql), removed when the run ends.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release -p valet-ledger --example revocation_propagation -- "${1:-200}"
