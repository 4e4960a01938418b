#!/usr/bin/env bash
# Every test, engines included: installs PostgreSQL and Garage when they are missing
# (scripts/install-engines.sh), then runs the workspace's tests. Extra arguments go to
# `cargo test` (for example `bash scripts/test.sh -- --nocapture`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-engines.sh
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
exec cargo test --workspace --locked "$@"
