#!/usr/bin/env bash
# A Valet store with its blobs in Garage vs the same objects fetched straight from Garage with
# presigned URLs (the S3 way: the client talks to the bucket), in one run: prints raw numbers
# and ratios.
#
#   bash bench/store-on-garage.sh                     # full run
#   BENCH_SECONDS=3 BENCH_ROUNDS=1 bash bench/store-on-garage.sh   # a quick look
#
# What it does:
#   1. installs wrk, curl and boto3 (pip) if missing, builds `valet` in release;
#   2. starts a single-node Garage (GARAGE, else `garage` on PATH or ~/.cargo/bin; a release
#      build of Garage is what the targets mean: a debug build is slower on both sides but
#      slows the direct side more) and a Valet store on one bucket of it;
#   3. uploads a 4 KiB and a 64 MiB blob through the store, presigns GETs of the same objects;
#   4. measures, in BENCH_ROUNDS rounds alternating which side goes first, the median ratio:
#        a. GET 4 KiB   requests/s   valet / presigned     target >= 0.9
#        b. GET 64 MiB  bytes/s      valet / presigned     target >= 0.9
#        c. PUT 64 MiB  best of BENCH_PUT_RUNS: presigned PUT time / valet PUT time
#           (valet with x-valet-sha256, so it streams through)      target >= 0.8
#        d. store peak RSS while BENCH_MEM_CLIENTS clients download a BENCH_MEM_SIZE blob
#           through it                                              target < 64 MiB
#   5. prints a summary with PASS/MISS; exits 0 whatever the numbers (non-zero only if the
#      harness breaks).
#
# Environment: BENCH_SECONDS (10), BENCH_ROUNDS (3), BENCH_WARMUP (2), BENCH_THREADS (2),
# BENCH_SMALL_CONNS (64), BENCH_BIG_CONNS (8), BENCH_PUT_RUNS (3), BENCH_MEM_CLIENTS (64),
# BENCH_MEM_SIZE (1G), BENCH_NO_BUILD=1, BENCH_KEEP=1, BENCH_PIN=1 (as in store-vs-nginx.sh).
# Both sides share the machine's CPUs with wrk and with Garage itself.
set -euo pipefail
export LC_ALL=C

SECS=${BENCH_SECONDS:-10}
WARM=${BENCH_WARMUP:-2}
((WARM > SECS)) && WARM=$SECS
THREADS=${BENCH_THREADS:-2}
ROUNDS=${BENCH_ROUNDS:-3}
SMALL_CONNS=${BENCH_SMALL_CONNS:-64}
BIG_CONNS=${BENCH_BIG_CONNS:-8}
PUT_RUNS=${BENCH_PUT_RUNS:-3}
MEM_CLIENTS=${BENCH_MEM_CLIENTS:-64}
MEM_SIZE=${BENCH_MEM_SIZE:-1G}
RSS_LIMIT_KIB=$((64 * 1024))

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$HERE/lib.sh"
LUA="$HERE/wrk-report.lua"
VALET="$TARGET_DIR/release/valet"
pin_cpus

need_tools wrk curl python3
python3 -c 'import boto3' 2>/dev/null || { say "installing boto3"; python3 -m pip install --quiet boto3; }
GARAGE=${GARAGE:-$(command -v garage || echo "$HOME/.cargo/bin/garage")}
[ -x "$GARAGE" ] || die "no garage: run scripts/install-engines.sh (a release build for benchmarks: see bench/README.md)"
build_valet "${BENCH_NO_BUILD:-0}"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/valet-bench-garage.XXXXXX")
LOGS="$WORK/logs"
SRC="$WORK/src"
mkdir -p "$LOGS" "$SRC" "$WORK/garage/meta" "$WORK/garage/data"
GARAGE_PID=
STORE_PID=
CLIENT_PIDS=()
cleanup_on_exit "${BENCH_KEEP:-0}" CLIENT_PIDS STORE_PID GARAGE_PID

# ---------------------------------------------------------------------------------------------
# Garage, one bucket, and the store on it
# ---------------------------------------------------------------------------------------------
new_port S3_PORT
new_port RPC_PORT
new_port ADMIN_PORT
new_port STORE_PORT
cat >"$WORK/garage/garage.toml" <<EOF
metadata_dir = "$WORK/garage/meta"
data_dir = "$WORK/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$RPC_PORT"
rpc_public_addr = "127.0.0.1:$RPC_PORT"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$S3_PORT"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$ADMIN_PORT"
admin_token = "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
EOF
g() { "$GARAGE" -c "$WORK/garage/garage.toml" "$@"; }
say "starting Garage ($("$GARAGE" --version 2>&1 | head -n1)) on 127.0.0.1:$S3_PORT"
"${SRV[@]}" "$GARAGE" -c "$WORK/garage/garage.toml" server >"$LOGS/garage.log" 2>&1 &
GARAGE_PID=$!
for _ in $(seq 100); do g status >/dev/null 2>&1 && break; sleep 0.2; done
node=$(g node id -q | cut -d@ -f1)
g layout assign -z dc1 -c 1G "$node" >/dev/null
g layout apply --version 1 >/dev/null
export AWS_ACCESS_KEY_ID=GK0123456789abcdef01234567
export AWS_SECRET_ACCESS_KEY=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
export AWS_ENDPOINT_URL="http://127.0.0.1:$S3_PORT" AWS_REGION=garage
g key import --yes -n bench "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >/dev/null
g bucket create bench >/dev/null
g bucket allow --read --write --owner bench --key bench >/dev/null

VBASE="http://127.0.0.1:$STORE_PORT"
"$VALET" key new-keyring --out "$WORK/keyring" >/dev/null
say "starting the store on $VBASE, blobs in s3://bench/valet"
RUST_LOG=warn "${SRV[@]}" "$VALET" serve --role store --data "$WORK/data" --keyring "$WORK/keyring" \
  --store-addr "127.0.0.1:$STORE_PORT" --blobs s3://bench/valet --shutdown-grace 2s 2>"$LOGS/store.log" &
STORE_PID=$!
wait_http "$VBASE/healthz" "$STORE_PID" store
TOKEN=$("$VALET" key issue --keyring "$WORK/keyring" --resource blob:bench --ops read,write --ttl 2h)
Q="?vk=$TOKEN"
say_machine "$("$GARAGE" --version 2>&1 | head -n1)"
say_pinning

put_valet() { # file name -> "http_code time_total"
  curl -sS -o "$LOGS/put-$2.json" -w '%{http_code} %{time_total}' -T "$1" \
    -H "x-valet-sha256: $(sha256sum "$1" | cut -d' ' -f1)" "$VBASE/blob/bench/$2$Q"
}
presign() { # method object-key -> URL
  python3 - "$1" "$2" <<'EOF'
import os, sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="garage",
                  config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
op = {"GET": "get_object", "PUT": "put_object"}[sys.argv[1]]
print(s3.generate_presigned_url(op, Params={"Bucket": "bench", "Key": sys.argv[2]}, ExpiresIn=7200))
EOF
}

say "uploading small (4 KiB) and big (64 MiB) through the store"
head -c 4096 /dev/urandom >"$SRC/small"
head -c 64M /dev/urandom >"$SRC/big"
for name in small big; do
  r=$(put_valet "$SRC/$name" "$name")
  [ "${r%% *}" = 201 ] || die "upload of $name answered ${r%% *}: $(cat "$LOGS/put-$name.json")"
done
SMALL_DIRECT=$(presign GET valet/bench/small)
BIG_DIRECT=$(presign GET valet/bench/big)
for name in small big; do
  url=$SMALL_DIRECT
  [ "$name" = big ] && url=$BIG_DIRECT
  cmp -s <(curl -sSf "$VBASE/blob/bench/$name$Q") "$SRC/$name" || die "store GET $name differs"
  cmp -s <(curl -sSf "$url") "$SRC/$name" || die "presigned GET $name differs"
done
echo "    both serve identical bytes for small and big"

# ---------------------------------------------------------------------------------------------
# GET rounds
# ---------------------------------------------------------------------------------------------
servers_ticks() { echo $(($(cpu_ticks "$STORE_PID") + $(cpu_ticks "$GARAGE_PID"))); }
run_wrk() { # label conns url
  local label=$1 conns=$2 url=$3 dur_s t0 t1 b0 b1
  "${CLI[@]}" wrk -t"$THREADS" -c"$conns" -d"${WARM}s" --timeout 30s "$url" >/dev/null
  t0=$(servers_ticks)
  b0=$(sys_busy_ticks)
  wrk_timed "$label" -t"$THREADS" -c"$conns" -d"${SECS}s" --timeout 30s "$url"
  t1=$(servers_ticks)
  b1=$(sys_busy_ticks)
  wrk_result "$label"
  dur_s=$(get "${label}_dur_s")
  # CPU of the store and Garage together (% of one core), and of everything else meanwhile.
  printf -v "R_${label}_srvcpu" '%s' "$(cpu_pct $((t1 - t0)) "$dur_s")"
  printf -v "R_${label}_othcpu" '%s' "$(other_pct $((b1 - b0)) "$dur_s" "$(get "${label}_srvcpu")" "$(get "${label}_wrkcpu")")"
  printf -v "R_${label}_bps" '%s' "$(awk -v n="$(get "${label}_bytes")" -v d="$dur_s" 'BEGIN { printf "%.0f", n / d }')"
}
for ((r = 1; r <= ROUNDS; r++)); do
  sides=(v d)
  ((r % 2 == 0)) && sides=(d v)
  for size in 4k 64; do
    for side in "${sides[@]}"; do
      if [ "$size" = 4k ]; then conns=$SMALL_CONNS vurl="$VBASE/blob/bench/small$Q" durl=$SMALL_DIRECT
      else conns=$BIG_CONNS vurl="$VBASE/blob/bench/big$Q" durl=$BIG_DIRECT; fi
      if [ "$side" = v ]; then
        say "round $r/$ROUNDS: GET $size through the store"
        run_wrk "v${size}_$r" "$conns" "$vurl"
      else
        say "round $r/$ROUNDS: GET $size presigned, straight from Garage"
        run_wrk "d${size}_$r" "$conns" "$durl"
      fi
    done
  done
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : sprintf("%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
ratios() { # size field
  local r out=()
  for ((r = 1; r <= ROUNDS; r++)); do out+=("$(div "$(get "v$1_${r}_$2")" "$(get "d$1_${r}_$2")")"); done
  echo "${out[*]}"
}
median_of() { # label field
  local r out=()
  for ((r = 1; r <= ROUNDS; r++)); do out+=("$(get "$1_${r}_$2")"); done
  median "${out[@]}"
}

# ---------------------------------------------------------------------------------------------
# PUT 64 MiB
# ---------------------------------------------------------------------------------------------
say "PUT 64 MiB: through the store (streamed, x-valet-sha256) vs presigned straight to Garage, best of $PUT_RUNS"
VPUT=
DPUT=
for ((i = 1; i <= PUT_RUNS; i++)); do
  r=$(put_valet "$SRC/big" "put-$i")
  [ "${r%% *}" = 201 ] || die "store PUT run $i answered ${r%% *}: $(cat "$LOGS/put-put-$i.json")"
  echo "    store PUT run $i: ${r#* } s"
  VPUT=$(awk -v a="${VPUT:-1e9}" -v b="${r#* }" 'BEGIN { print (b < a) ? b : a }')
  url=$(presign PUT "direct/put-$i")
  r=$(curl -sS -o "$LOGS/dput-$i.txt" -w '%{http_code} %{time_total}' -T "$SRC/big" "$url")
  [ "${r%% *}" = 200 ] || die "presigned PUT run $i answered ${r%% *}: $(cat "$LOGS/dput-$i.txt")"
  echo "    presigned PUT run $i: ${r#* } s"
  DPUT=$(awk -v a="${DPUT:-1e9}" -v b="${r#* }" 'BEGIN { print (b < a) ? b : a }')
done

# ---------------------------------------------------------------------------------------------
# Memory: MEM_CLIENTS concurrent downloads of a MEM_SIZE blob through the store
# ---------------------------------------------------------------------------------------------
say "memory: uploading a $MEM_SIZE blob, then $MEM_CLIENTS concurrent downloads for ${SECS}s"
head -c "$MEM_SIZE" /dev/urandom >"$SRC/huge"
r=$(put_valet "$SRC/huge" huge)
[ "${r%% *}" = 201 ] || die "upload of huge answered ${r%% *}"
rm -f "$SRC/huge"
echo 5 >"/proc/$STORE_PID/clear_refs" 2>/dev/null || true
RSS_MAX=0
for ((i = 1; i <= MEM_CLIENTS; i++)); do
  "${CLI[@]}" curl -s -o /dev/null --max-time "$SECS" -w '%{http_code} %{size_download}\n' \
    "$VBASE/blob/bench/huge$Q" >"$LOGS/mem-$i.txt" 2>/dev/null &
  CLIENT_PIDS+=($!)
done
while :; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$STORE_PID/status")
  ((rss > RSS_MAX)) && RSS_MAX=$rss
  alive=0
  for p in "${CLIENT_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  ((alive)) || break
  sleep 0.1
done
for p in "${CLIENT_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
CLIENT_PIDS=()
HWM=$(awk '/VmHWM/ {print $2}' "/proc/$STORE_PID/status")
PEAK=$((HWM > RSS_MAX ? HWM : RSS_MAX))
MEM_BYTES=$(cat "$LOGS"/mem-*.txt | awk '{ s += $2 } END { printf "%.0f", s }')

# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------
SMALL_RATIOS=$(ratios 4k rps)
BIG_RATIOS=$(ratios 64 bps)
# shellcheck disable=SC2086
R_SMALL=$(median $SMALL_RATIOS)
# shellcheck disable=SC2086
R_BIG=$(median $BIG_RATIOS)
R_PUT=$(div "$DPUT" "$VPUT")
MiBps() { awk -v b="$1" 'BEGIN { printf "%.0f MiB/s", b / 1048576 }'; }
echo
echo "=========================================================================================="
echo " Valet store on Garage vs presigned URLs straight to Garage — $(nproc) CPUs, BENCH_SECONDS=$SECS"
echo " $("$GARAGE" --version 2>&1 | head -n1)"
echo "=========================================================================================="
printf '%-26s %-22s %-22s %-7s %-7s %-5s\n' test "through valet" "presigned, direct" ratio target result
printf '%-26s %-22s %-22s %-7s %-7s %-5s\n' "GET 4 KiB c$SMALL_CONNS req/s" \
  "$(fmt "$(median_of v4k rps)" '%.0f')" "$(fmt "$(median_of d4k rps)" '%.0f')" "$R_SMALL" ">=0.90" "$(verdict "$R_SMALL" '>=' 0.9)"
printf '%-26s %-22s %-22s %-7s %-7s %-5s\n' "GET 64 MiB c$BIG_CONNS bytes/s" \
  "$(MiBps "$(median_of v64 bps)")" "$(MiBps "$(median_of d64 bps)")" "$R_BIG" ">=0.90" "$(verdict "$R_BIG" '>=' 0.9)"
printf '%-26s %-22s %-22s %-7s %-7s %-5s\n' "PUT 64 MiB best of $PUT_RUNS" \
  "$(fmt "$VPUT" '%.3f') s" "$(fmt "$DPUT" '%.3f') s" "$R_PUT" ">=0.80" "$(verdict "$R_PUT" '>=' 0.8)"
printf '%-26s %-22s %-22s %-7s %-7s %-5s\n' "peak RSS $MEM_CLIENTS x $MEM_SIZE GET" \
  "$(awk -v k="$PEAK" 'BEGIN { printf "%.1f MiB", k / 1024 }')" "-" "-" "<64MiB" "$(verdict "$PEAK" '<' "$RSS_LIMIT_KIB")"
echo "GET ratios per round: 4 KiB $SMALL_RATIOS | 64 MiB $BIG_RATIOS"
echo "CPU (% of one core) of store + Garage per run:"
for ((r = 1; r <= ROUNDS; r++)); do
  echo "  round $r: valet 4 KiB $(get "v4k_${r}_srvcpu")%, direct 4 KiB $(get "d4k_${r}_srvcpu")%, valet 64 MiB $(get "v64_${r}_srvcpu")%, direct 64 MiB $(get "d64_${r}_srvcpu")%"
done
echo "memory phase: $MEM_BYTES bytes sent to $MEM_CLIENTS clients in ${SECS}s"
labels=()
for ((r = 1; r <= ROUNDS; r++)); do labels+=("v4k_$r" "d4k_$r" "v64_$r" "d64_$r"); done
wrk_notes "${labels[@]}"
exit 0
