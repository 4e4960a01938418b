#!/usr/bin/env bash
# A 3-node Garage cluster with replication 3 on this machine, a Valet store on it, and one
# Garage node taken down mid-run: uploads and downloads through Valet go on (Garage writes and
# reads with a quorum of 2 of 3). Not part of CI (it takes a minute and three Garage servers);
# run it by hand after changes to the S3 backend:
#
#   bash scripts/garage-3-nodes.sh            # needs garage (scripts/install-engines.sh) and a built valet
#
# VALET_BIN names the valet binary (default target/debug/valet; built if missing). Prints one
# line per step and "OK" at the end; exits non-zero at the first thing that does not hold.
set -euo pipefail
cd "$(dirname "$0")/.."

GARAGE="${VALET_GARAGE:-$(command -v garage || echo "$HOME/.cargo/bin/garage")}"
VALET="${VALET_BIN:-target/debug/valet}"
[ -x "$GARAGE" ] || { echo "garage not found: run scripts/install-engines.sh" >&2; exit 1; }
[ -x "$VALET" ] || cargo build -q -p valet

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
secret="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
token="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"

declare -a s3_ports rpc_ports garage_pids
for n in 1 2 3; do
  dir="$work/garage$n"
  mkdir -p "$dir/meta" "$dir/data"
  s3_ports[$n]="$(free_port)"; rpc_ports[$n]="$(free_port)"; admin="$(free_port)"
  cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 3
rpc_bind_addr = "127.0.0.1:${rpc_ports[$n]}"
rpc_public_addr = "127.0.0.1:${rpc_ports[$n]}"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:${s3_ports[$n]}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
admin_token = "$token"
EOF
  "$GARAGE" -c "$dir/garage.toml" server >"$dir/server.log" 2>&1 &
  garage_pids[$n]=$!
  pids+=("$!")
done
g() { "$GARAGE" -c "$work/garage1/garage.toml" "$@"; }

echo "== three Garage nodes, replication 3"
for _ in $(seq 100); do g status >/dev/null 2>&1 && break; sleep 0.2; done
for n in 2 3; do
  id="$("$GARAGE" -c "$work/garage$n/garage.toml" node id -q)"
  for _ in $(seq 50); do g node connect "$id" >/dev/null 2>&1 && break; sleep 0.2; done
done
for n in 1 2 3; do
  id="$("$GARAGE" -c "$work/garage$n/garage.toml" node id -q | cut -d@ -f1)"
  g layout assign -z "dc$n" -c 1G "$id" >/dev/null
done
g layout apply --version 1 >/dev/null
key_id=GK0123456789abcdef01234567
key_secret=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
g key import --yes -n valet "$key_id" "$key_secret" >/dev/null
g bucket create valet >/dev/null
g bucket allow --read --write --owner valet --key valet >/dev/null

echo "== a Valet store on node 1's S3 endpoint"
store_port="$(free_port)"; gate_port="$(free_port)"
AWS_ENDPOINT_URL="http://127.0.0.1:${s3_ports[1]}" AWS_REGION=garage \
  AWS_ACCESS_KEY_ID="$key_id" AWS_SECRET_ACCESS_KEY="$key_secret" \
  VALET_ADMIN_API_KEY=vak_garage-3-nodes-admin-0123456789 \
  "$VALET" serve --data "$work/valet" --blobs s3://valet/blobs \
  --store-addr "127.0.0.1:$store_port" --gate-addr "127.0.0.1:$gate_port" \
  >"$work/valet.log" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$store_port/healthz" >/dev/null && break; sleep 0.2; done
auth="Authorization: Bearer vak_garage-3-nodes-admin-0123456789"
gate="http://127.0.0.1:$gate_port"

head -c $((20 * 1024 * 1024)) /dev/urandom >"$work/big.bin"
round_trip() {
  local name="$1"
  curl -sSf -L -T "$work/big.bin" -H "$auth" "$gate/files/$name" -o /dev/null
  curl -sSf -L -H "$auth" "$gate/files/$name" -o "$work/back.bin"
  cmp -s "$work/big.bin" "$work/back.bin" || { echo "FAIL: $name came back different" >&2; exit 1; }
  echo "   20 MiB up and down through Valet: $name ok"
}
round_trip before.bin

echo "== node 3 down"
kill "${garage_pids[3]}"; wait "${garage_pids[3]}" 2>/dev/null || true
round_trip during.bin
curl -sSf -L -H "$auth" "$gate/files/before.bin" -o "$work/back.bin"
cmp -s "$work/big.bin" "$work/back.bin" || { echo "FAIL: before.bin unreadable with a node down" >&2; exit 1; }
echo "   what was written before is still served"
echo OK
