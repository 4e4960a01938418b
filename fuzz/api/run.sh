#!/usr/bin/env bash
# Fuzzes the gate's and the store's HTTP APIs from their own OpenAPI documents with schemathesis
# (a third-party, property-based API fuzzer), bounded in time, every check on except the few
# that gate.toml and store.toml turn off by name, each with the reason.
#
#   bash fuzz/api/run.sh            # 60 s per server
#   bash fuzz/api/run.sh 20         # 20 s per server
#
# It starts `valet serve` (the debug build at $CARGO_TARGET_DIR/debug/valet, or $VALET_BIN) on
# free loopback ports with a fresh data folder, gives schemathesis the admin API key for the gate
# and a key for the container `files` (every blob operation) for the store, and fails if
# schemathesis finds anything: a 5xx, an undocumented status, header or content type, a body
# that does not match its schema, a valid request refused or an invalid one accepted. Installs
# schemathesis (fuzz/api/requirements.txt) with pip when it is missing. Reports (JUnit XML, and
# the curl commands that reproduce each failure in the output) go to $API_FUZZ_OUT (default: a
# temporary folder, kept when something failed).
set -euo pipefail
export LC_ALL=C.UTF-8

seconds="${1:-60}"
case "$seconds" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
VALET=${VALET_BIN:-$TARGET_DIR/debug/valet}
[ -x "$VALET" ] || { echo "error: no valet binary at $VALET (cargo build -p valet)" >&2; exit 2; }

wanted=$(sed -n 's/^schemathesis==//p' "$HERE/requirements.txt")
if [ "$(schemathesis --version 2>/dev/null | awk '{print $NF}')" != "$wanted" ]; then
  echo "== installing schemathesis $wanted"
  python3 -m pip install -q --disable-pip-version-check -r "$HERE/requirements.txt" \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages -r "$HERE/requirements.txt"
fi

OUT=${API_FUZZ_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/valet-api-fuzz.XXXXXX")}
mkdir -p "$OUT/data"
VALET_PID=
cleanup() {
  local status=$?
  if [ -n "$VALET_PID" ] && kill -0 "$VALET_PID" 2>/dev/null; then
    kill -TERM "$VALET_PID" 2>/dev/null || true
    wait "$VALET_PID" 2>/dev/null || true
  fi
  if [ "$status" = 0 ] && [ -z "${API_FUZZ_OUT:-}" ]; then rm -rf "$OUT"; else echo "(reports and logs kept in $OUT)"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GATE="http://127.0.0.1:$(free_port)"
STORE="http://127.0.0.1:$(free_port)"
ADMIN="vak_$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"

# No rate limit: the fuzzer is one principal sending as fast as it can, and a 429 tells it nothing.
cat >"$OUT/valet.toml" <<TOML
[rate_limit]
per_second = 0
TOML

VALET_ADMIN_API_KEY=$ADMIN RUST_LOG=info "$VALET" serve --config "$OUT/valet.toml" --data "$OUT/data" \
  --gate-addr "${GATE#http://}" --store-addr "${STORE#http://}" >"$OUT/valet.out" 2>"$OUT/valet.log" &
VALET_PID=$!
for _ in $(seq 100); do
  curl -fsS "$GATE/healthz" >/dev/null 2>&1 && curl -fsS "$STORE/healthz" >/dev/null 2>&1 && break
  kill -0 "$VALET_PID" 2>/dev/null || { cat "$OUT/valet.log" >&2; echo "error: valet serve exited" >&2; exit 2; }
  sleep 0.1
done

# A key for every blob operation on the container `files` (the document's example container).
store_key() {
  curl -fsS -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
    -d '{"resource":"blob:files","ops":["read","write","create","delete","list"],"ttl":"1h"}' \
    "$GATE/v1/keys" | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}

export VALET_FUZZ_ADMIN_KEY=$ADMIN VALET_FUZZ_STORE_KEY=
status=0
for server in gate store; do
  base=$GATE
  if [ "$server" = store ]; then
    base=$STORE
    # Issued only now: the gate's run revokes every key issued before it (`before: now`).
    VALET_FUZZ_STORE_KEY=$(store_key)
  fi
  echo "== schemathesis: the $server ($base/openapi.json), ${seconds} s"
  # One worker: CPython 3.11's ast module is not thread-safe in hypothesis' lambda descriptions
  # (SystemError "AST constructor recursion depth mismatch"), and 2 cores are busy enough.
  schemathesis --no-color --config-file "$HERE/$server.toml" run "$base/openapi.json" \
    --workers 1 --max-time "$seconds" --seed "${API_FUZZ_SEED:-$RANDOM}" \
    --report junit --report-junit-path "$OUT/$server.xml" >"$OUT/$server.txt" 2>&1 || status=1
  tail -n 30 "$OUT/$server.txt"
  [ "$status" = 0 ] || sed -n '/FAILURES/,/SUMMARY/p' "$OUT/$server.txt" | head -n 300
done

if grep -E 'panicked|ERROR' "$OUT/valet.log" >/dev/null; then
  echo "error: valet logged a panic or an ERROR line during the fuzz run:" >&2
  grep -E 'panicked|ERROR' "$OUT/valet.log" | head -n 20 >&2
  status=1
fi
kill -0 "$VALET_PID" 2>/dev/null || { echo "error: valet serve died during the fuzz run" >&2; status=1; }
exit "$status"
