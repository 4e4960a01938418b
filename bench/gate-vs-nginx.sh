#!/usr/bin/env bash
# Valet gate vs nginx on this machine, in one run: prints raw numbers and ratios.
#
#   bash bench/gate-vs-nginx.sh                   # full run (about 2-3 minutes after the build)
#   BENCH_SECONDS=2 bash bench/gate-vs-nginx.sh   # short run for CI
#
# What it does (see bench/README.md for the why):
#   1. installs nginx and wrk with apt-get if missing, builds `valet` in release;
#   2. starts the store and the gate as two processes (`--role store`, `--role gate`) on one
#      fresh data folder (they share the keyring and the ledger), so that the gate's CPU time
#      can be read apart from the store's; the gate has the rate limit off, the default
#      delegate route /files/{*path} and two proxy routes, /api/{*rest} and /raw/{*rest}, to
#   3. an "origin" nginx (own config and prefix, worker_processes auto, access_log off,
#      sendfile, keep-alive) that serves a small JSON file (/api/small.json) and the store's
#      blob folder (/raw/... = DATA/blobs/...), and a second, "proxy" nginx that forwards
#      everything to the origin with proxy_pass over pooled keep-alive connections;
#   4. uploads a BENCH_OFFLOAD_SIZE blob through the gate's delegate route (curl -L -T) and
#      checks that the delegate route, the gate's proxy route and the origin return its bytes;
#   5. measures:
#        a. offload: the gate's CPU seconds (utime+stime from /proc/PID/stat) per GiB delivered
#           - through the delegate route: gate CPU per 307 (wrk on the route, redirects not
#             followed, for BENCH_SECONDS) divided by the GiB one 307 hands over (one object of
#             BENCH_OFFLOAD_SIZE); cross-checked by BENCH_OFFLOAD_RUNS real `curl -L` downloads;
#           - through the proxy route: BENCH_OFFLOAD_RUNS downloads of the same blob from the
#             origin through the gate;
#           ratio proxy/delegate                                        target >= 1000
#        b. proxy overhead for a small response (BENCH_PROXY_SIZE-byte JSON) with the same wrk
#           settings and the same `Authorization: Bearer` header for all three:
#           origin direct, gate proxy route, nginx proxy_pass
#           requests/s at BENCH_CONNS connections, ratio gate/nginx     target >= 0.8
#           p99 at BENCH_LAT_CONNS connections, gate p99 - direct p99   target <= 1 ms
#   6. prints a summary table with PASS/MISS beside each target and exits 0 whatever the
#      numbers (non-zero only if the harness itself breaks: build, install, start-up, upload,
#      wrong bytes).
#
# Environment:
#   BENCH_SECONDS       seconds per wrk measurement (default 10)
#   BENCH_WARMUP        seconds of wrk warm-up before each measurement (default 2, max BENCH_SECONDS)
#   BENCH_THREADS       wrk threads (default 2)
#   BENCH_CONNS         wrk connections for the throughput runs and the delegate run (default 64)
#   BENCH_LAT_CONNS     wrk connections for the latency runs (default 4)
#   BENCH_PROXY_SIZE    bytes of the small JSON response (default 100)
#   BENCH_OFFLOAD_SIZE  size of the offload blob, as `head -c` takes it (default 1G)
#   BENCH_OFFLOAD_RUNS  full downloads of it through each route (default 3)
#   BENCH_TMPDIR        where the temporary folder goes (default $TMPDIR or /tmp)
#   BENCH_KEEP=1        keep the temporary folder (logs, data) instead of deleting it
#   BENCH_NO_BUILD=1    skip `cargo build` (use the existing $CARGO_TARGET_DIR/release/valet)
#   CARGO_TARGET_DIR    where the build goes and the binary is taken from (default ./target)
#   BENCH_PIN=1         pin the servers to CPU 0 and wrk/curl clients to CPU 1 (taskset), so each
#                       side gets one core of its own instead of fighting over both (default off:
#                       everything shares all CPUs). Override with BENCH_SERVER_CPUS / BENCH_CLIENT_CPUS.
#
# On a 2-core machine wrk runs on the same cores as the servers under test, so every number
# here is "servers + load generator sharing 2 CPUs". The summary shows how much CPU each used.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C

SECS=${BENCH_SECONDS:-10}
WARM=${BENCH_WARMUP:-2}
((WARM > SECS)) && WARM=$SECS
THREADS=${BENCH_THREADS:-2}
CONNS=${BENCH_CONNS:-64}
LAT_CONNS=${BENCH_LAT_CONNS:-4}
PROXY_SIZE=${BENCH_PROXY_SIZE:-100}
OFFLOAD_SIZE=${BENCH_OFFLOAD_SIZE:-1G}
OFFLOAD_RUNS=${BENCH_OFFLOAD_RUNS:-3}
((PROXY_SIZE >= 32)) || { echo "error: BENCH_PROXY_SIZE must be at least 32" >&2; exit 1; }
((OFFLOAD_RUNS >= 1)) || { echo "error: BENCH_OFFLOAD_RUNS must be at least 1" >&2; exit 1; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$HERE/lib.sh" # say, die, need_tools, build_valet, stop_pid, new_port, wait_http, cpu_ticks...
LUA="$HERE/wrk-report.lua"
VALET="$TARGET_DIR/release/valet"
pin_cpus

# ---------------------------------------------------------------------------------------------
# 1. Tools
# ---------------------------------------------------------------------------------------------
need_tools nginx wrk curl
build_valet "${BENCH_NO_BUILD:-0}"

# ---------------------------------------------------------------------------------------------
# Temporary folder and clean-up
# ---------------------------------------------------------------------------------------------
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/valet-gate-bench.XXXXXX")
DATA="$WORK/data"
SRC="$WORK/src"
WWW="$WORK/www"
NGX_ORIGIN="$WORK/nginx-origin"
NGX_PROXY="$WORK/nginx-proxy"
LOGS="$WORK/logs"
mkdir -p "$DATA" "$SRC" "$WWW/api" "$NGX_ORIGIN" "$NGX_PROXY" "$LOGS"

STORE_PID=
GATE_PID=
ORIGIN_PID=
NPROXY_PID=
cleanup_on_exit "${BENCH_KEEP:-0}" NPROXY_PID ORIGIN_PID GATE_PID STORE_PID

gate_metric() { # name{labels} as printed by /metrics: its value (0 if absent)
  curl -sS "$GBASE/metrics" | awk -v m="$1" '$1 == m { v = $2 } END { printf "%.0f", v + 0 }'
}

say_machine
echo "    BENCH_SECONDS=$SECS warm-up=${WARM}s wrk threads=$THREADS conns=$CONNS latency conns=$LAT_CONNS"
echo "    small response ${PROXY_SIZE} B, offload blob $OFFLOAD_SIZE x $OFFLOAD_RUNS downloads per route, CLK_TCK=$CLK_TCK"
say_pinning

# ---------------------------------------------------------------------------------------------
# 2. Ports and configuration files
# ---------------------------------------------------------------------------------------------
new_port STORE_PORT
new_port GATE_PORT
new_port ORIGIN_PORT
new_port NPROXY_PORT
SBASE="http://127.0.0.1:$STORE_PORT"
GBASE="http://127.0.0.1:$GATE_PORT"
OBASE="http://127.0.0.1:$ORIGIN_PORT"
NBASE="http://127.0.0.1:$NPROXY_PORT"

cat >"$WORK/gate.toml" <<EOF
[rate_limit]
per_second = 0          # no per-principal rate limit while benchmarking

[[routes]]
path = "/files/{*path}"
delegate = "blob:files/{path}"
roles = ["admin"]

[[routes]]
path = "/api/{*rest}"
proxy = "$OBASE"

[[routes]]
path = "/raw/{*rest}"
proxy = "$OBASE"
EOF

# The small API answer: a JSON object of exactly PROXY_SIZE bytes (newline included).
pad=$((PROXY_SIZE - 30))
printf '{"ok":true,"id":12345,"p":"%s"}\n' "$(head -c "$pad" /dev/zero | tr '\0' x)" >"$WWW/api/small.json"
[ "$(stat -c %s "$WWW/api/small.json")" = "$PROXY_SIZE" ] || die "small.json is not $PROXY_SIZE bytes"
# /raw/... on the origin is the store's blob folder: the same files the store serves.
ln -s "$DATA/blobs" "$WWW/raw"

nginx_conf "$NGX_ORIGIN" auto on "    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        root $WWW;
    }" >"$NGX_ORIGIN/nginx.conf"
# The reference reverse proxy: pooled keep-alive connections to the origin, and about the
# header work the gate does (credential removed, X-Forwarded-*).
nginx_conf "$NGX_PROXY" auto on "    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NPROXY_PORT;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Authorization \"\";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
        }
    }" >"$NGX_PROXY/nginx.conf"

# ---------------------------------------------------------------------------------------------
# 3. Store, gate, origin nginx, proxy nginx
# ---------------------------------------------------------------------------------------------
say "starting the store on $SBASE (--role store)"
RUST_LOG=warn "${SRV[@]}" "$VALET" serve --role store --data "$DATA" --store-addr "127.0.0.1:$STORE_PORT" \
  --shutdown-grace 2s >"$LOGS/store.out" 2>"$LOGS/store.log" &
STORE_PID=$!
wait_http "$SBASE/" "$STORE_PID" store
wait_file "$DATA/keyring" || die "the store wrote no keyring"

say "starting the gate on $GBASE (--role gate, store URL $SBASE, config $WORK/gate.toml)"
RUST_LOG=warn "${SRV[@]}" "$VALET" serve --role gate --data "$DATA" --gate-addr "127.0.0.1:$GATE_PORT" \
  --store-url "$SBASE" --config "$WORK/gate.toml" --shutdown-grace 2s \
  >"$LOGS/gate.out" 2>"$LOGS/gate.log" &
GATE_PID=$!
wait_http "$GBASE/healthz" "$GATE_PID" gate
wait_file "$DATA/admin-api-key" || true
KEY=$(tr -d '[:space:]' <"$DATA/admin-api-key")
[ -n "$KEY" ] || die "no admin API key in $DATA/admin-api-key"
AUTH="Authorization: Bearer $KEY"

say "starting nginx: origin on $OBASE (root $WWW), proxy_pass on $NBASE"
"${SRV[@]}" nginx -p "$NGX_ORIGIN" -c "$NGX_ORIGIN/nginx.conf" -e "$NGX_ORIGIN/error.log" 2>"$LOGS/origin.stderr" &
ORIGIN_PID=$!
"${SRV[@]}" nginx -p "$NGX_PROXY" -c "$NGX_PROXY/nginx.conf" -e "$NGX_PROXY/error.log" 2>"$LOGS/nproxy.stderr" &
NPROXY_PID=$!
wait_http "$OBASE/" "$ORIGIN_PID" "origin nginx"
wait_http "$NBASE/" "$NPROXY_PID" "proxy nginx"

# The small answer must be the same bytes, with 200, by all three paths.
for u in "$OBASE" "$GBASE" "$NBASE"; do
  cmp -s <(curl -sSf -H "$AUTH" "$u/api/small.json") "$WWW/api/small.json" ||
    die "GET $u/api/small.json does not return small.json"
done
echo "    origin, gate and nginx proxy serve identical bytes for /api/small.json"

# ---------------------------------------------------------------------------------------------
# 4. The offload blob, uploaded through the gate's delegate route
# ---------------------------------------------------------------------------------------------
say "uploading a $OFFLOAD_SIZE blob through the gate's delegate route (curl -L -T)"
head -c "$OFFLOAD_SIZE" /dev/urandom >"$SRC/offload"
OFFLOAD_BYTES=$(stat -c %s "$SRC/offload")
r=$(curl -sS -L -o "$LOGS/put-offload.json" -w '%{http_code} %{num_redirects} %{time_total}' \
  -T "$SRC/offload" -H "$AUTH" -H 'Content-Type: application/octet-stream' "$GBASE/files/offload.bin")
read -r code redirects put_time <<<"$r"
[ "$code" = 201 ] || die "upload answered $code: $(cat "$LOGS/put-offload.json")"
[ "$redirects" = 1 ] || die "upload did not go through one redirect ($redirects)"
BLOB="$DATA/blobs/files/offload.bin"
[ -f "$BLOB" ] || die "blob not found as a file at $BLOB"
cmp -s "$BLOB" "$SRC/offload" || die "stored blob differs from the upload"
rm -f "$SRC/offload"
echo "    $OFFLOAD_BYTES bytes in ${put_time}s; stored as $BLOB"
# Every route gives the same bytes (this also puts the blob into the page cache).
cmp -s <(curl -sSfL -H "$AUTH" "$GBASE/files/offload.bin") "$BLOB" || die "delegate download differs"
cmp -s <(curl -sSf -H "$AUTH" "$GBASE/raw/files/offload.bin") "$BLOB" || die "gate proxy download differs"
cmp -s <(curl -sSf "$OBASE/raw/files/offload.bin") "$BLOB" || die "origin download differs"
echo "    delegate route (307 -> store), gate proxy route (-> origin) and origin serve identical bytes"

# ---------------------------------------------------------------------------------------------
# wrk runs
# ---------------------------------------------------------------------------------------------
# run_wrk LABEL THREADS CONNS URL SERVER_PID: warm-up, then a measured run with the Bearer
# header. Sets R_<LABEL>_* globals; the origin's CPU is recorded too (upstream column).
run_wrk() {
  local label=$1 threads=$2 conns=$3 url=$4 pid=$5 t0 t1 o0 o1 b0 b1 dur_s
  "${CLI[@]}" wrk -t"$threads" -c"$conns" -d"${WARM}s" --timeout 30s -H "$AUTH" "$url" >/dev/null
  t0=$(cpu_ticks "$pid")
  o0=$(cpu_ticks "$ORIGIN_PID")
  b0=$(sys_busy_ticks)
  wrk_timed "$label" -t"$threads" -c"$conns" -d"${SECS}s" --timeout 30s -H "$AUTH" "$url"
  t1=$(cpu_ticks "$pid")
  o1=$(cpu_ticks "$ORIGIN_PID")
  b1=$(sys_busy_ticks)
  wrk_result "$label" # prints the report; sets R_<label>_requests, _p99_us, _rps, _wrkcpu, _errs...
  printf -v "R_${label}_srvticks" '%s' $((t1 - t0))
  dur_s=$(get "${label}_dur_s")
  # CPU used, in % of one core (200 % = both cores of a 2-core machine)
  printf -v "R_${label}_srvcpu" '%s' "$(cpu_pct $((t1 - t0)) "$dur_s")"
  if [ "$pid" = "$ORIGIN_PID" ]; then
    printf -v "R_${label}_upcpu" '%s' 0
  else
    printf -v "R_${label}_upcpu" '%s' "$(cpu_pct $((o1 - o0)) "$dur_s")"
  fi
  # Everything else the machine ran meanwhile (other users' builds, tests...): busy - servers - wrk
  printf -v "R_${label}_othcpu" '%s' "$(other_pct $((b1 - b0)) "$dur_s" \
    "$(get "${label}_srvcpu")" "$(get "${label}_upcpu")" "$(get "${label}_wrkcpu")")"
}
WRK_LABELS=()

# ---------------------------------------------------------------------------------------------
# 5a. Offload: gate CPU per GiB, delegate vs proxy
# ---------------------------------------------------------------------------------------------
GiB=1073741824
DELEGATE_REQS=2 # the upload and the check above

# (i) real downloads through the delegate route: the gate answers one 307 each, the store moves
# the bytes. Measured for both processes; the gate's share is usually below one tick.
say "offload (i): $OFFLOAD_RUNS x curl -L $OFFLOAD_SIZE through the delegate route (307 -> store)"
g0=$(cpu_ticks "$GATE_PID")
s0=$(cpu_ticks "$STORE_PID")
st=$EPOCHREALTIME
DL_DEL_BYTES=0
for ((i = 1; i <= OFFLOAD_RUNS; i++)); do
  r=$("${CLI[@]}" curl -sS -L -o /dev/null -H "$AUTH" -w '%{http_code} %{size_download}' "$GBASE/files/offload.bin")
  [ "${r%% *}" = 200 ] || die "delegate download $i answered ${r%% *}"
  DL_DEL_BYTES=$((DL_DEL_BYTES + ${r#* }))
done
et=$EPOCHREALTIME
g1=$(cpu_ticks "$GATE_PID")
s1=$(cpu_ticks "$STORE_PID")
DELEGATE_REQS=$((DELEGATE_REQS + OFFLOAD_RUNS))
DL_DEL_GATE_TICKS=$((g1 - g0))
DL_DEL_STORE_TICKS=$((s1 - s0))
DL_DEL_SECS=$(awk -v s="$st" -v e="$et" 'BEGIN { printf "%.3f", e - s }')
DL_DEL_GIB=$(awk -v b="$DL_DEL_BYTES" -v g=$GiB 'BEGIN { printf "%.6f", b / g }')
echo "    $DL_DEL_BYTES bytes in ${DL_DEL_SECS}s; gate CPU $DL_DEL_GATE_TICKS ticks, store CPU $DL_DEL_STORE_TICKS ticks (1 tick = $(div 1000 "$CLK_TCK") ms)"

# (ii) the same downloads through the gate's proxy route: the gate moves every byte.
say "offload (ii): $OFFLOAD_RUNS x curl $OFFLOAD_SIZE through the gate's proxy route (/raw -> origin nginx)"
out0=$(gate_metric valet_gate_body_bytes_out_total)
g0=$(cpu_ticks "$GATE_PID")
st=$EPOCHREALTIME
DL_PRX_BYTES=0
for ((i = 1; i <= OFFLOAD_RUNS; i++)); do
  r=$("${CLI[@]}" curl -sS -o /dev/null -H "$AUTH" -w '%{http_code} %{size_download}' "$GBASE/raw/files/offload.bin")
  [ "${r%% *}" = 200 ] || die "proxy download $i answered ${r%% *}"
  DL_PRX_BYTES=$((DL_PRX_BYTES + ${r#* }))
done
et=$EPOCHREALTIME
g1=$(cpu_ticks "$GATE_PID")
out1=$(gate_metric valet_gate_body_bytes_out_total)
DL_PRX_GATE_TICKS=$((g1 - g0))
DL_PRX_SECS=$(awk -v s="$st" -v e="$et" 'BEGIN { printf "%.3f", e - s }')
DL_PRX_GIB=$(awk -v b="$DL_PRX_BYTES" -v g=$GiB 'BEGIN { printf "%.6f", b / g }')
PRX_CPU_PER_GIB=$(awk -v t="$DL_PRX_GATE_TICKS" -v hz="$CLK_TCK" -v g="$DL_PRX_GIB" 'BEGIN { printf "%.6f", t / hz / g }')
echo "    $DL_PRX_BYTES bytes in ${DL_PRX_SECS}s ($(awk -v b="$DL_PRX_BYTES" -v s="$DL_PRX_SECS" 'BEGIN { printf "%.0f", b / s / 1048576 }') MiB/s);" \
  "gate CPU $DL_PRX_GATE_TICKS ticks = $(fmt "$PRX_CPU_PER_GIB" '%.3f') s per GiB; gate metric body_bytes_out +$((out1 - out0))"

# (iii) the gate's cost per delegated download, measured over many: wrk on the delegate route,
# redirects not followed (every answer is the 307 a real client would follow).
say "offload (iii): gate CPU per 307: wrk -t$THREADS -c$CONNS -d${SECS}s on the delegate route (redirects not followed)"
iss0=$(gate_metric 'valet_gate_keys_issued_total{via="redirect"}')
run_wrk del "$THREADS" "$CONNS" "$GBASE/files/offload.bin" "$GATE_PID"
iss1=$(gate_metric 'valet_gate_keys_issued_total{via="redirect"}')
WRK_LABELS+=(del)
DEL_WRK_REQS=$(get del_requests)
DEL_ISSUED=$((iss1 - iss0)) # warm-up included
DELEGATE_REQS=$((DELEGATE_REQS + DEL_ISSUED))
DEL_TICKS=$(get del_srvticks)
DEL_CPU_PER_REQ=$(awk -v t="$DEL_TICKS" -v hz="$CLK_TCK" -v n="$DEL_WRK_REQS" 'BEGIN { if (n == 0) print "nan"; else printf "%.9f", t / hz / n }')
# One 307 hands over one object of OFFLOAD_BYTES: the gate's CPU per GiB delivered.
DEL_CPU_PER_GIB=$(awk -v c="$DEL_CPU_PER_REQ" -v b="$OFFLOAD_BYTES" -v g=$GiB 'BEGIN { if (c == "nan") print "nan"; else printf "%.9f", c / (b / g) }')
OFFLOAD_RATIO=$(awk -v p="$PRX_CPU_PER_GIB" -v d="$DEL_CPU_PER_GIB" 'BEGIN { if (d == "nan") print "nan"; else if (d == 0) print "inf"; else printf "%.0f", p / d }')
echo "    $DEL_WRK_REQS measured 307s ($DEL_ISSUED keys issued by the route including warm-up, per /metrics);" \
  "gate CPU $DEL_TICKS ticks = $(awk -v c="$DEL_CPU_PER_REQ" 'BEGIN { printf "%.1f", c * 1e6 }') us per 307"
# The direct measurement from (i), as a bound when it is under the tick resolution.
if ((DL_DEL_GATE_TICKS > 0)); then
  DIRECT_NOTE="gate CPU over the $OFFLOAD_RUNS real delegated downloads: $DL_DEL_GATE_TICKS ticks = $(awk -v t="$DL_DEL_GATE_TICKS" -v hz="$CLK_TCK" -v g="$DL_DEL_GIB" 'BEGIN { printf "%.6f", t / hz / g }') s/GiB (housekeeping ticks included)"
else
  DIRECT_NOTE="gate CPU over the $OFFLOAD_RUNS real delegated downloads: 0 ticks, i.e. < $(awk -v hz="$CLK_TCK" -v g="$DL_DEL_GIB" 'BEGIN { printf "%.6f", 1 / hz / g }') s/GiB: ratio > $(awk -v p="$PRX_CPU_PER_GIB" -v hz="$CLK_TCK" -v g="$DL_DEL_GIB" 'BEGIN { printf "%.0f", p / (1 / hz / g) }') from these alone"
fi
echo "    $DIRECT_NOTE"
STORE_CPU_PER_GIB=$(awk -v t="$DL_DEL_STORE_TICKS" -v hz="$CLK_TCK" -v g="$DL_DEL_GIB" 'BEGIN { printf "%.3f", t / hz / g }')

# ---------------------------------------------------------------------------------------------
# 5b. Proxy overhead: small response, origin direct vs gate vs nginx proxy_pass
# ---------------------------------------------------------------------------------------------
LAT_THREADS=$((THREADS < LAT_CONNS ? THREADS : LAT_CONNS))
small_run() { # label threads conns base pid name what
  say "GET ${PROXY_SIZE} B JSON, $6: wrk -t$2 -c$3 -d${SECS}s ($7)"
  run_wrk "$1" "$2" "$3" "$4/api/small.json" "$5"
  WRK_LABELS+=("$1")
}
small_run dir_t "$THREADS" "$CONNS" "$OBASE" "$ORIGIN_PID" "origin direct" throughput
small_run gate_t "$THREADS" "$CONNS" "$GBASE" "$GATE_PID" "gate proxy route" throughput
small_run ngx_t "$THREADS" "$CONNS" "$NBASE" "$NPROXY_PID" "nginx proxy_pass" throughput
small_run dir_l "$LAT_THREADS" "$LAT_CONNS" "$OBASE" "$ORIGIN_PID" "origin direct" latency
small_run gate_l "$LAT_THREADS" "$LAT_CONNS" "$GBASE" "$GATE_PID" "gate proxy route" latency
small_run ngx_l "$LAT_THREADS" "$LAT_CONNS" "$NBASE" "$NPROXY_PID" "nginx proxy_pass" latency

# ---------------------------------------------------------------------------------------------
# 6. Summary
# ---------------------------------------------------------------------------------------------
R_RPS=$(div "$(get gate_t_rps)" "$(get ngx_t_rps)")
ms() { awk -v u="$1" 'BEGIN { printf "%.3f", u / 1000 }'; }
ADDED_P99=$(awk -v g="$(get gate_l_p99_us)" -v d="$(get dir_l_p99_us)" 'BEGIN { printf "%.3f", (g - d) / 1000 }')
ADDED_P99_T=$(awk -v g="$(get gate_t_p99_us)" -v d="$(get dir_t_p99_us)" 'BEGIN { printf "%.3f", (g - d) / 1000 }')
NGX_ADDED_P99=$(awk -v g="$(get ngx_l_p99_us)" -v d="$(get dir_l_p99_us)" 'BEGIN { printf "%.3f", (g - d) / 1000 }')
NGX_ADDED_P99_T=$(awk -v g="$(get ngx_t_p99_us)" -v d="$(get dir_t_p99_us)" 'BEGIN { printf "%.3f", (g - d) / 1000 }')
row() { printf '%-34s %-28s %-28s %-9s %-8s %-5s\n' "$@"; }

echo
echo "=============================================================================================================="
if ((${#SRV[@]})); then cpu_note="servers pinned to CPU ${BENCH_SERVER_CPUS:-0}, clients to CPU ${BENCH_CLIENT_CPUS:-1}"; else cpu_note="wrk shares the CPUs with the servers"; fi
echo " Valet gate vs nginx — $(nproc) CPUs, BENCH_SECONDS=$SECS, wrk -t$THREADS ($cpu_note)"
echo "=============================================================================================================="
row "test" "gate" "reference" "ratio" "target" "result"
row "----------------------------------" "----------------------------" "----------------------------" "---------" "--------" "-----"
row "offload: gate CPU per GiB" "delegate $(awk -v c="$DEL_CPU_PER_GIB" 'BEGIN { printf "%.1f us", c * 1e6 }')" \
  "gate proxy $(fmt "$PRX_CPU_PER_GIB" '%.3f') s" "${OFFLOAD_RATIO}x" ">=1000x" "$(verdict "$OFFLOAD_RATIO" '>=' 1000)"
row "proxy ${PROXY_SIZE} B c$CONNS req/s" "$(fmt "$(get gate_t_rps)" '%.0f')" "nginx $(fmt "$(get ngx_t_rps)" '%.0f')" \
  "$R_RPS" ">=0.80" "$(verdict "$R_RPS" '>=' 0.8)"
row "proxy ${PROXY_SIZE} B c$LAT_CONNS added p99" "$ADDED_P99 ms (p99 $(ms "$(get gate_l_p99_us)"))" \
  "nginx $NGX_ADDED_P99 ms (p99 $(ms "$(get ngx_l_p99_us)"))" "-" "<=1ms" "$(verdict "$ADDED_P99" '<=' 1)"
row "proxy ${PROXY_SIZE} B c$CONNS added p99" "$ADDED_P99_T ms (p99 $(ms "$(get gate_t_p99_us)"))" \
  "nginx $NGX_ADDED_P99_T ms (p99 $(ms "$(get ngx_t_p99_us)"))" "-" "(info)" "-"
echo
echo "offload (gate CPU = utime+stime of the gate process only; the store is a separate process):"
echo "  delegate: $(get del_requests) 307s in ${SECS}s (wrk -c$CONNS, $(fmt "$(get del_rps)" '%.0f')/s) cost the gate $DEL_TICKS ticks" \
  "= $(awk -v c="$DEL_CPU_PER_REQ" 'BEGIN { printf "%.1f", c * 1e6 }') us each;"
echo "            one 307 hands over one $OFFLOAD_BYTES-byte object, so $(awk -v c="$DEL_CPU_PER_GIB" 'BEGIN { printf "%.1f", c * 1e6 }') us of gate CPU per GiB delivered"
echo "  proxy:    $DL_PRX_BYTES bytes through /raw in ${DL_PRX_SECS}s cost the gate $DL_PRX_GATE_TICKS ticks = $(fmt "$PRX_CPU_PER_GIB" '%.3f') s per GiB"
echo "  check:    $DIRECT_NOTE"
echo "  store:    served the $OFFLOAD_RUNS delegated downloads ($DL_DEL_BYTES bytes, ${DL_DEL_SECS}s) with $DL_DEL_STORE_TICKS ticks = $STORE_CPU_PER_GIB s per GiB"
echo "  delegate requests issued to the gate in all: $DELEGATE_REQS (upload, check, $OFFLOAD_RUNS downloads, wrk warm-up + measured run)"
echo
echo "details (CPU in % of one core; 200% = both cores; upstream = origin nginx; errors = non-2xx/3xx / socket errors+timeouts):"
printf '  %-22s %10s %11s %9s %9s %9s %9s %9s %9s %9s\n' "run" "requests" "req/s" "p50 ms" "p99 ms" "srv CPU" "upstream" "wrk CPU" "other" "errors"
for l in "${WRK_LABELS[@]}"; do
  case $l in
    del) n="gate delegate 307 c$CONNS" ;;
    dir_t) n="direct c$CONNS" ;; gate_t) n="gate proxy c$CONNS" ;; ngx_t) n="nginx proxy c$CONNS" ;;
    dir_l) n="direct c$LAT_CONNS" ;; gate_l) n="gate proxy c$LAT_CONNS" ;; ngx_l) n="nginx proxy c$LAT_CONNS" ;;
  esac
  printf '  %-22s %10s %11s %9s %9s %8s%% %8s%% %8s%% %8s%% %9s\n' "$n" "$(get "${l}"_requests)" "$(fmt "$(get "${l}"_rps)" '%.0f')" \
    "$(ms "$(get "${l}"_p50_us)")" "$(ms "$(get "${l}"_p99_us)")" \
    "$(get "${l}"_srvcpu)" "$(get "${l}"_upcpu)" "$(get "${l}"_wrkcpu)" "$(get "${l}"_othcpu)" \
    "$(get "${l}"_status)/$(get "${l}"_errs)"
done
for l in dir_t gate_t ngx_t; do
  printf -v "R_${l}_cpureq" '%s' "$(awk -v c="$(get "${l}"_srvcpu)" -v r="$(get "${l}"_rps)" 'BEGIN { if (r == 0) print "nan"; else printf "%.1f", c / 100 / r * 1e6 }')"
done
echo "  CPU per request at c$CONNS: origin direct $(get dir_t_cpureq) us, gate $(get gate_t_cpureq) us, nginx proxy $(get ngx_t_cpureq) us (upstream not included)"
wrk_notes "${WRK_LABELS[@]}"
exit 0
