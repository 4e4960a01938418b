#!/usr/bin/env bash
# Installs the engines the tests run against, when they are missing (idempotent, quick when
# everything is there):
#   - PostgreSQL's server binaries (Debian's `postgresql` package), for the ledger on PostgreSQL;
#     the tests start a private cluster of their own with initdb/pg_ctl (crates/testkit).
#   - Garage, an S3-compatible object store (from crates.io), for blobs on S3; the tests start
#     their own single-node cluster (crates/testkit).
# Nothing is started here: each test binary starts what it needs and stops it at exit.
set -euo pipefail

GARAGE_VERSION="${GARAGE_VERSION:-2.5.0}"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  echo "== installing PostgreSQL (apt-get install postgresql)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql
fi

if ! garage --version 2>/dev/null | grep -q "v$GARAGE_VERSION\|cargo:$GARAGE_VERSION"; then
  # An unoptimised build without debug info: about 4 minutes on 2 cores, fast enough for tests
  # (a release build takes 20; benchmarks against Garage want that one, see bench/README.md).
  echo "== installing Garage $GARAGE_VERSION (cargo install, about 4 minutes)"
  CARGO_PROFILE_DEV_DEBUG=0 cargo install garage --version "$GARAGE_VERSION" --locked --debug \
    --no-default-features --features bundled-libs,sqlite
fi
