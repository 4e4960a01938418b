#!/usr/bin/env bash
# A bounded load test of `valet serve` (gate and store in one process, release build): mixed
# traffic for a fixed time, every answer checked, memory watched.
#
#   bash bench/load.sh                       # 60 s of load (about 1.5 minutes after the build)
#   LOAD_SECONDS=10 bash bench/load.sh       # short run for CI
#   LOAD_SECONDS=600 bash bench/load.sh      # 10-minute soak
#
# What it does (see bench/README.md):
#   1. installs nginx, wrk, curl and python3 with apt-get if missing, builds `valet` in release;
#   2. starts `valet serve` on free loopback ports with a fresh data folder, a generated admin
#      API key, the rate limit off, the default delegate route /files/{*path} and a proxy route
#      /api/{*rest} to an nginx on loopback that serves a small JSON file;
#   3. uploads a small (4 KiB) and a medium (1 MiB) random blob and checks that the store,
#      the delegate route and the proxy route give the expected bytes;
#   4. runs, all at once for LOAD_SECONDS, one load generator per kind of traffic:
#        issue            wrk: POST /v1/keys at the gate                    good: 201 with a token
#        download-small   wrk: GET the 4 KiB blob at the store with a key   good: 200, exact bytes
#        download-medium  wrk: GET the 1 MiB blob at the store with a key   good: 200, exact bytes
#        proxy            wrk: GET /api/small.json at the gate              good: 200, exact bytes
#        upload           load.py: issue a one-time write key, PUT 1-64 KiB with x-valet-sha256
#                                                                good: 201, then 200/201 + digest
#        delegate         load.py: GET /files/load/NAME at the gate, follow the 307 to the store
#                                                                good: 307, then 200 + SHA-256
#        verify           load.py, every 0.2 s: a one-time read key for a blob being overwritten,
#                         used twice                             good: 201, 200 + whole bytes, 403
#      (wrk scripts: bench/load.lua; the chains, which wrk cannot do: bench/load.py);
#   5. samples the valet process's VmRSS and open descriptors every second;
#   6. prints per kind and overall: requests/s, p50/p99 latency, statuses, 5xx, wrong answers,
#      socket errors; RSS at start, after the warm-up and at the end, with PASS/MISS on
#          end RSS <= warm-up RSS x 1.25 + 8 MiB        (memory flat under steady load)
#      and checks afterwards that valet is still up, DATA/tmp is empty, the descriptors are back
#      near the start and the log has no panic.
#
# Exit status: 0 if every answer was right; 1 on any 5xx, wrong answer (unexpected status or
# bytes), socket error or timeout, or a failed after-check; 2 if the harness broke (install,
# build, start-up, fixtures, a load generator that failed). The RSS verdict is printed, not
# enforced: memory is judged over a long run (LOAD_SECONDS=600), not a 10 s one.
#
# Environment:
#   LOAD_SECONDS          length of the load (default 60)
#   LOAD_WARMUP           seconds after which the warm-up RSS is taken (default LOAD_SECONDS/6,
#                         between 2 and 60)
#   LOAD_ISSUE_CONNS      wrk connections for issue (default 4)
#   LOAD_SMALL_CONNS      wrk connections for download-small (default 8)
#   LOAD_MEDIUM_CONNS     wrk connections for download-medium (default 2)
#   LOAD_PROXY_CONNS      wrk connections for proxy (default 4)
#   LOAD_UPLOAD_CONNS     load.py workers for upload (default 4)
#   LOAD_DELEGATE_CONNS   load.py workers for delegate (default 4)
#   LOAD_TMPDIR           where the temporary folder goes (default $TMPDIR or /tmp)
#   LOAD_KEEP=1           keep the temporary folder (logs, data, samples) instead of deleting it
#   LOAD_NO_BUILD=1       skip `cargo build` (use the existing $CARGO_TARGET_DIR/release/valet)
#   LOAD_VALET_BIN=PATH   use this binary, no build (CI runs the debug build `cargo test` made:
#                         slower, but the short run checks answers, not speed)
#   CARGO_TARGET_DIR      where the build goes and the binary is taken from (default ./target)
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C

SECS=${LOAD_SECONDS:-60}
WARM=${LOAD_WARMUP:-$((SECS / 6))}
((WARM < 2)) && WARM=2
((WARM > 60)) && [ -z "${LOAD_WARMUP:-}" ] && WARM=60
((WARM < SECS)) || WARM=$((SECS / 2))
ISSUE_CONNS=${LOAD_ISSUE_CONNS:-4}
SMALL_CONNS=${LOAD_SMALL_CONNS:-8}
MEDIUM_CONNS=${LOAD_MEDIUM_CONNS:-2}
PROXY_CONNS=${LOAD_PROXY_CONNS:-4}
UPLOAD_CONNS=${LOAD_UPLOAD_CONNS:-4}
DELEGATE_CONNS=${LOAD_DELEGATE_CONNS:-4}
((SECS >= 4)) || { echo "error: LOAD_SECONDS must be at least 4" >&2; exit 2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$HERE/lib.sh" # say, die, need_tools, build_valet, stop_pid, new_port, wait_http, cpu_ticks...
DIE_CODE=2       # die = the harness broke (1 is for wrong answers)
LUA="$HERE/load.lua"
PY="$HERE/load.py"
VALET="${LOAD_VALET_BIN:-$TARGET_DIR/release/valet}"

# ---------------------------------------------------------------------------------------------
# 1. Tools
# ---------------------------------------------------------------------------------------------
need_tools nginx wrk curl python3
python3 -c 'import sys; sys.exit(sys.version_info < (3, 7))' || die "python3 is older than 3.7"

NO_BUILD=${LOAD_NO_BUILD:-0}
[ -n "${LOAD_VALET_BIN:-}" ] && NO_BUILD=1
build_valet "$NO_BUILD" || die "cargo build failed"

# ---------------------------------------------------------------------------------------------
# Temporary folder and clean-up
# ---------------------------------------------------------------------------------------------
WORK=$(mktemp -d "${LOAD_TMPDIR:-${TMPDIR:-/tmp}}/valet-load.XXXXXX")
DATA="$WORK/data"
SRC="$WORK/src"
WWW="$WORK/www"
NGX="$WORK/nginx"
LOGS="$WORK/logs"
mkdir -p "$DATA" "$SRC" "$WWW/api" "$NGX" "$LOGS"

VALET_PID=
NGINX_PID=
CLIENT_PIDS=()
SAMPLER_PID=
cleanup_on_exit "${LOAD_KEEP:-0}" CLIENT_PIDS SAMPLER_PID NGINX_PID VALET_PID

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$VALET_PID/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$VALET_PID/status"; }
fds() { find "/proc/$VALET_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
threads() { awk '/^Threads/ {print $2}' "/proc/$VALET_PID/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

say_machine "$(python3 --version)"
echo "    LOAD_SECONDS=$SECS warm-up=${WARM}s connections: issue $ISSUE_CONNS, download-small $SMALL_CONNS," \
  "download-medium $MEDIUM_CONNS, proxy $PROXY_CONNS, upload $UPLOAD_CONNS, delegate $DELEGATE_CONNS"

# ---------------------------------------------------------------------------------------------
# 2. Configuration, nginx, valet serve
# ---------------------------------------------------------------------------------------------
new_port GATE_PORT
new_port STORE_PORT
new_port NGINX_PORT
GBASE="http://127.0.0.1:$GATE_PORT"
SBASE="http://127.0.0.1:$STORE_PORT"
NBASE="http://127.0.0.1:$NGINX_PORT"
ADMIN="vak_$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
AUTH="Bearer $ADMIN"

cat >"$WORK/valet.toml" <<EOF
[rate_limit]
per_second = 0          # no per-principal rate limit: the admin key is every client here

[[routes]]
path = "/files/{*path}"
delegate = "blob:files/{path}"
roles = ["admin"]

[[routes]]
path = "/api/{*rest}"
proxy = "$NBASE"
EOF

printf '{"ok":true,"service":"load-test upstream","items":[1,2,3,4,5,6,7,8,9,10],"pad":"%s"}\n' \
  "$(head -c 160 /dev/zero | tr '\0' x)" >"$WWW/api/small.json"

nginx_conf "$NGX" 1 off "    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WWW;
    }" >"$NGX/nginx.conf"
say "starting nginx (the proxy route's upstream) on $NBASE"
nginx -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/error.log" 2>"$LOGS/nginx.stderr" &
NGINX_PID=$!
wait_http "$NBASE/api/small.json" "$NGINX_PID" nginx

say "starting valet serve: gate $GBASE, store $SBASE"
VALET_ADMIN_API_KEY=$ADMIN RUST_LOG=warn "$VALET" serve --config "$WORK/valet.toml" --data "$DATA" \
  --gate-addr "127.0.0.1:$GATE_PORT" --store-addr "127.0.0.1:$STORE_PORT" \
  >"$LOGS/valet.out" 2>"$LOGS/valet.log" &
VALET_PID=$!
wait_http "$GBASE/healthz" "$VALET_PID" "valet serve (gate)"
wait_http "$SBASE/healthz" "$VALET_PID" "valet serve (store)"

# ---------------------------------------------------------------------------------------------
# 3. Fixtures, checked through every path before the load
# ---------------------------------------------------------------------------------------------
issue() { # resource ops-json [extra-json]: prints the token
  local body="{\"resource\":\"$1\",\"ops\":$2${3:+,$3}}" out
  out=$(curl -sS -f -H "Authorization: $AUTH" -H 'Content-Type: application/json' \
    -d "$body" "$GBASE/v1/keys") || die "POST /v1/keys $body failed"
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])' <<<"$out"
}
sha() { sha256sum "$1" | cut -d' ' -f1; }

say "fixtures: load/small.bin (4 KiB) and load/medium.bin (1 MiB), uploaded with one-time keys"
head -c 4096 /dev/urandom >"$SRC/small.bin"
head -c 1048576 /dev/urandom >"$SRC/medium.bin"
TTL=$((SECS + 600))s
for name in small medium; do
  token=$(issue "blob:files/load/$name.bin" '["write"]' '"max_uses":1')
  code=$(curl -sS -o "$LOGS/put-$name.json" -w '%{http_code}' -T "$SRC/$name.bin" \
    -H 'Content-Type: application/octet-stream' "$SBASE/blob/files/load/$name.bin?vk=$token")
  [ "$code" = 201 ] || die "upload of $name answered $code: $(cat "$LOGS/put-$name.json")"
done
# Long-lived read keys for the wrk downloads (no use cap: admitted from the ledger's memory).
SMALL_URL="$SBASE/blob/files/load/small.bin?vk=$(issue blob:files/load/small.bin '["read"]' "\"ttl\":\"$TTL\"")"
MEDIUM_URL="$SBASE/blob/files/load/medium.bin?vk=$(issue blob:files/load/medium.bin '["read"]' "\"ttl\":\"$TTL\"")"
cmp -s <(curl -sSf "$SMALL_URL") "$SRC/small.bin" || die "store GET small.bin differs"
cmp -s <(curl -sSf "$MEDIUM_URL") "$SRC/medium.bin" || die "store GET medium.bin differs"
cmp -s <(curl -sSfL -H "Authorization: $AUTH" "$GBASE/files/load/medium.bin") "$SRC/medium.bin" ||
  die "delegate route GET medium.bin differs"
cmp -s <(curl -sSf -H "Authorization: $AUTH" "$GBASE/api/small.json") "$WWW/api/small.json" ||
  die "proxy route GET /api/small.json differs"
echo "    store, delegate route and proxy route give the expected bytes"

# ---------------------------------------------------------------------------------------------
# 4. The load
# ---------------------------------------------------------------------------------------------
sleep 1
RSS_START=$(rss_kib)
FDS_START=$(fds)
THREADS_START=$(threads)
CPU0=$(cpu_ticks "$VALET_PID")
BUSY0=$(sys_busy_ticks)
say "load: ${SECS}s of mixed traffic (valet RSS at start $(mib "$RSS_START"), $FDS_START descriptors, $THREADS_START threads)"

run_wrk() { # label conns url kind auth [file]
  local label=$1 conns=$2 url=$3
  shift 3
  wrk -t1 -c"$conns" -d"${SECS}s" --timeout 10s --latency -s "$LUA" "$url" -- "$label" "$@" \
    >"$LOGS/$label.txt" 2>"$LOGS/$label.stderr" &
  CLIENT_PIDS+=($!)
}
run_wrk issue "$ISSUE_CONNS" "$GBASE/v1/keys" issue "$AUTH"
run_wrk download-small "$SMALL_CONNS" "$SMALL_URL" get - "$SRC/small.bin"
run_wrk download-medium "$MEDIUM_CONNS" "$MEDIUM_URL" get - "$SRC/medium.bin"
run_wrk proxy "$PROXY_CONNS" "$GBASE/api/small.json" get "$AUTH" "$WWW/api/small.json"
python3 "$PY" --gate "$GBASE" --store "$SBASE" --admin-key "$ADMIN" --seconds "$SECS" \
  --upload-conns "$UPLOAD_CONNS" --delegate-conns "$DELEGATE_CONNS" \
  --blob "load/small.bin=$(sha "$SRC/small.bin")" --blob "load/medium.bin=$(sha "$SRC/medium.bin")" \
  >"$LOGS/chains.txt" 2>"$LOGS/chains.stderr" &
CLIENT_PIDS+=($!)

# The sampler: one line a second, "seconds rss_kib fds threads", while the clients run.
LOAD_T0=$EPOCHREALTIME
(
  while :; do
    alive=0
    for p in "${CLIENT_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    printf '%s %s %s %s\n' "$(awk -v a="$LOAD_T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')" \
      "$(rss_kib)" "$(fds)" "$(threads)"
    sleep 1
  done
) >"$LOGS/samples.txt" &
SAMPLER_PID=$!

harness_ok=1
for p in "${CLIENT_PIDS[@]}"; do wait "$p" || harness_ok=0; done
CLIENT_PIDS=()
wait "$SAMPLER_PID" || true
SAMPLER_PID=
LOAD_T1=$EPOCHREALTIME
CPU1=$(cpu_ticks "$VALET_PID")
BUSY1=$(sys_busy_ticks)
kill -0 "$VALET_PID" 2>/dev/null || die "valet serve died during the load (see $LOGS/valet.log)"
RSS_IDLE=$(rss_kib)
HWM=$(hwm_kib)

# Warm-up RSS: the first sample at or after WARM seconds; end RSS: the last sample under load.
RSS_WARM=$(awk -v w="$WARM" '$1 >= w { print $2; exit }' "$LOGS/samples.txt")
RSS_END=$(awk 'END { print $2 }' "$LOGS/samples.txt")
RSS_MAX=$(awk 'BEGIN { m = 0 } $2 > m { m = $2 } END { print m }' "$LOGS/samples.txt")
[ -n "$RSS_WARM" ] && [ -n "$RSS_END" ] || die "no RSS samples (see $LOGS/samples.txt)"

for f in issue download-small download-medium proxy chains; do
  grep -q '^LOAD_RESULT' "$LOGS/$f.txt" 2>/dev/null || {
    harness_ok=0
    echo "no result from $f: $(tail -n 5 "$LOGS/$f.txt" "$LOGS/$f.stderr" 2>/dev/null)" >&2
  }
done
((harness_ok)) || die "a load generator failed (see $LOGS)"

# ---------------------------------------------------------------------------------------------
# 5. After-checks: still serving, nothing left behind
# ---------------------------------------------------------------------------------------------
sleep 2 # let closed connections go
after_ok=1
after_notes=()
code=$(curl -s -o /dev/null -w '%{http_code}' "$SBASE/healthz")
[ "$code" = 200 ] || { after_ok=0; after_notes+=("store /healthz answered $code after the load"); }
cmp -s <(curl -sSfL -H "Authorization: $AUTH" "$GBASE/files/load/small.bin") "$SRC/small.bin" ||
  { after_ok=0; after_notes+=("delegate GET small.bin differs after the load"); }
TMP_LEFT=$(find "$DATA/tmp" -mindepth 1 | wc -l)
((TMP_LEFT == 0)) || { after_ok=0; after_notes+=("$TMP_LEFT files left in DATA/tmp"); }
FDS_END=$(fds)
((FDS_END <= FDS_START + 8)) || { after_ok=0; after_notes+=("descriptors: $FDS_START at start, $FDS_END after"); }
PANICS=$(grep -c -i 'panic' "$LOGS/valet.log" || true)
((PANICS == 0)) || { after_ok=0; after_notes+=("$PANICS panic lines in the valet log"); }
LOG_LINES=$(wc -l <"$LOGS/valet.log")
LEDGER_KIB=$(du -k -c "$DATA"/ledger.sqlite* | awk 'END { print $1 }')

# ---------------------------------------------------------------------------------------------
# 6. Report
# ---------------------------------------------------------------------------------------------
cat "$LOGS"/{issue,download-small,download-medium,proxy,chains}.txt | grep '^LOAD_RESULT' >"$LOGS/results.txt"
cat "$LOGS"/{issue,download-small,download-medium,proxy,chains}.txt | grep '^LOAD_HIST' >"$LOGS/hists.txt"

ms() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }
field() { # line key
  local kv
  for kv in $1; do
    [ "${kv%%=*}" = "$2" ] && { echo "${kv#*=}"; return; }
  done
  echo 0
}
fivexx() { # statuses "200:5,503:1" -> count of 5xx
  echo "$1" | tr ',' '\n' | awk -F: '$1 >= 500 { s += $2 } END { print s + 0 }'
}

echo
echo "=========================================================================================================="
echo " valet serve under mixed load — $(nproc) CPUs, LOAD_SECONDS=$SECS (load generators share the CPUs)"
echo "=========================================================================================================="
printf '%-16s %9s %9s %8s %8s %8s %5s %5s %5s  %s\n' kind requests "req/s" "p50 ms" "p99 ms" "max ms" 5xx wrong sock statuses
printf '%-16s %9s %9s %8s %8s %8s %5s %5s %5s  %s\n' ---------------- --------- --------- -------- -------- -------- ----- ----- ----- --------
TOTAL_HTTP=0
TOTAL_5XX=0
TOTAL_WRONG=0
TOTAL_SOCK=0
ALL_STATUSES=
while read -r line; do
  k=$(field "$line" kind)
  n=$(field "$line" requests)
  d=$(field "$line" duration_us)
  st=$(field "$line" statuses)
  five=$(fivexx "$st")
  w=$(field "$line" wrong)
  e=$(field "$line" errors)
  rps=$(awk -v n="$n" -v d="$d" 'BEGIN { printf "%.1f", (d > 0) ? n / (d / 1e6) : 0 }')
  printf '%-16s %9s %9s %8s %8s %8s %5s %5s %5s  %s\n' "$k" "$n" "$rps" "$(ms "$(field "$line" p50_us)")" \
    "$(ms "$(field "$line" p99_us)")" "$(ms "$(field "$line" max_us)")" "$five" "$w" "$e" "$st"
  TOTAL_HTTP=$((TOTAL_HTTP + $(echo "$st" | tr ',' '\n' | awk -F: '{ s += $2 } END { print s + 0 }')))
  TOTAL_5XX=$((TOTAL_5XX + five))
  TOTAL_WRONG=$((TOTAL_WRONG + w))
  TOTAL_SOCK=$((TOTAL_SOCK + e))
  ALL_STATUSES="$ALL_STATUSES${ALL_STATUSES:+,}$st"
done <"$LOGS/results.txt"
# The load's length: the longest any generator ran (the sampler also covers start and exit).
DUR_S=$(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^duration_us=/) { d = substr($i, 13) + 0; if (d > m) m = d } }
  END { printf "%.2f", m / 1e6 }' "$LOGS/results.txt")
# Overall latency: every kind's distribution merged (a chain counts once, as one latency; wrk's
# kinds come as 1000 quantiles each, load.py's as exact counts).
read -r ALL_N ALL_P50 ALL_P99 < <(
  sed 's/^LOAD_HIST kind=[^ ]* *//' "$LOGS/hists.txt" | tr ',' '\n' |
    awk -F: 'NF == 2 { c[$1 + 0] += $2 } END { for (k in c) print k, c[k] }' | sort -n |
    awk '{ v[NR] = $1; c[NR] = $2; n += $2 }
      END { s = 0; p50 = -1; p99 = -1
        for (i = 1; i <= NR; i++) { s += c[i]; if (p50 < 0 && s >= n * 0.5) p50 = v[i]; if (p99 < 0 && s >= n * 0.99) p99 = v[i] }
        printf "%d %d %d\n", n + 0.5, (p50 < 0) ? 0 : p50, (p99 < 0) ? 0 : p99 }'
)
ALL_STATS=$(echo "$ALL_STATUSES" | tr ',' '\n' | awk -F: 'NF == 2 { c[$1] += $2 } END { for (k in c) printf "%s:%d\n", k, c[k] }' | sort | paste -sd, -)
printf '%-16s %9s %9s %8s %8s %8s %5s %5s %5s  %s\n' "overall" "$ALL_N" \
  "$(awk -v n="$TOTAL_HTTP" -v d="$DUR_S" 'BEGIN { printf "%.1f", n / d }')" "$(ms "$ALL_P50")" "$(ms "$ALL_P99")" "-" \
  "$TOTAL_5XX" "$TOTAL_WRONG" "$TOTAL_SOCK" "$ALL_STATS"
echo "  requests = answers checked; for upload, delegate and verify one request is a chain of 2-3 HTTP"
echo "  exchanges (their statuses list every exchange). overall req/s = $TOTAL_HTTP HTTP exchanges / ${DUR_S}s;"
echo "  overall p50/p99 over all $ALL_N requests and chains (distributions merged, 3 significant digits)."
echo "  wrong = unexpected status or bytes; sock = socket errors and timeouts (10 s)."
echo "  verify's 403s are expected: the second use of a one-time key must be refused (key_exhausted)."

WALL_S=$(awk -v a="$LOAD_T0" -v b="$LOAD_T1" 'BEGIN { printf "%.2f", b - a }')
CPU_PCT=$(cpu_pct $((CPU1 - CPU0)) "$WALL_S")
BUSY_PCT=$(cpu_pct $((BUSY1 - BUSY0)) "$WALL_S")
RSS_LIMIT=$(awk -v w="$RSS_WARM" 'BEGIN { printf "%.0f", w * 1.25 + 8192 }')
RSS_VERDICT=$( ((RSS_END <= RSS_LIMIT)) && echo PASS || echo MISS)
echo
echo "valet process: CPU $CPU_PCT% of one core over the load (the whole machine: $BUSY_PCT% of $(($(nproc) * 100))%," \
  "load generators and nginx included); threads $THREADS_START at start, $(threads) after"
echo "  RSS start $(mib "$RSS_START") | after ${WARM}s warm-up $(mib "$RSS_WARM") | end (last sample under load) $(mib "$RSS_END")" \
  "| max sampled $(mib "$RSS_MAX") | VmHWM $(mib "$HWM") | idle after $(mib "$RSS_IDLE")"
echo "  memory flat: end RSS <= warm-up RSS x 1.25 + 8 MiB = $(mib "$RSS_LIMIT"): $RSS_VERDICT"
# A leak grows with the requests served; settling (allocator arenas, caches) does not. So also
# show the growth over the second half of the run per request served in it.
HALF_S=$(awk -v d="$DUR_S" 'BEGIN { printf "%.0f", d / 2 }')
RSS_MID=$(awk -v h="$HALF_S" '$1 >= h { print $2; exit }' "$LOGS/samples.txt")
RSS_MID=${RSS_MID:-$RSS_WARM}
echo "  second half: RSS $(mib "$RSS_MID") at ${HALF_S}s, $(mib "$RSS_END") at the end:" \
  "$(awk -v g=$((RSS_END - RSS_MID)) -v n="$TOTAL_HTTP" 'BEGIN { printf "%+.1f bytes per HTTP exchange served in it", g * 1024 / (n / 2) }')" \
  "(a leak of N bytes per request shows as about +N)"
# The RSS curve: about ten points across the run, five to a line.
echo "  RSS over time (seconds into the load: RSS, open descriptors, threads):"
awk -v n="$(wc -l <"$LOGS/samples.txt")" 'BEGIN { step = (n > 10) ? n / 10 : 1; next_at = 1 }
  NR >= next_at || NR == n { printf "%s%5.0fs %5.1f MiB %3d fd %2d thr", (k % 5 == 0) ? "    " : " |", $1, $2 / 1024, $3, $4
    if (++k % 5 == 0) print ""; next_at += step }
  END { if (k % 5) print "" }' "$LOGS/samples.txt"
echo "  descriptors: $FDS_START at start, $FDS_END after the load; DATA/tmp: $TMP_LEFT files; ledger files $(mib "$LEDGER_KIB");" \
  "valet log: $LOG_LINES lines (RUST_LOG=warn), $PANICS panics"
for n in "${after_notes[@]}"; do echo "  AFTER-CHECK FAILED: $n"; done
if [ -s "$LOGS/chains.stderr" ]; then
  echo "  notes from load.py:"
  sed 's/^/    /' "$LOGS/chains.stderr" | head -n 20
fi
if ((LOG_LINES > 0)); then
  echo "  valet log (first lines):"
  sed -e 's/^/    /' -e "s/vk=[A-Za-z0-9._-]*/vk=…/g" "$LOGS/valet.log" | head -n 10
fi

echo
if ((TOTAL_5XX > 0 || TOTAL_WRONG > 0 || TOTAL_SOCK > 0 || after_ok == 0)); then
  echo "RESULT: FAIL ($TOTAL_5XX 5xx, $TOTAL_WRONG wrong answers, $TOTAL_SOCK socket errors/timeouts, after-checks $( ((after_ok)) && echo ok || echo failed))"
  exit 1
fi
echo "RESULT: OK — $TOTAL_HTTP HTTP exchanges, zero 5xx, zero wrong answers, zero socket errors; memory $RSS_VERDICT"
