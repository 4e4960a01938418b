#!/usr/bin/env bash
# Valet store vs nginx on this machine, in one run: prints raw numbers and ratios.
#
#   bash bench/store-vs-nginx.sh            # full run (about 4 minutes after the build)
#   BENCH_SECONDS=2 bash bench/store-vs-nginx.sh   # short run for CI
#
# What it does (see bench/README.md for the why):
#   1. installs nginx and wrk with apt-get if missing, builds `valet` in release;
#   2. starts the store on a free loopback port with a fresh data folder, issues a 1 h key
#      (read,write on blob:bench), uploads a 4 KiB and a 64 MiB random blob through the store;
#   3. starts nginx (own config and prefix, worker_processes auto, access_log off, sendfile,
#      keepalive) on another loopback port with root = the store's DATA/blobs, so both serve
#      the very same files;
#   4. measures with the same wrk settings for both, in BENCH_ROUNDS rounds that alternate
#      valet and nginx (which goes first alternates too), and takes the median of the rounds'
#      ratios, so that a burst of load elsewhere on the machine moves one round, not the verdict:
#        a. GET 4 KiB   requests/s       ratio valet/nginx   target >= 0.8
#        b. GET 64 MiB  bytes/s          ratio valet/nginx   target >= 0.9
#        c. PUT 64 MiB  curl -T to valet (best of 3) vs dd conv=fsync (best of 3): disk/valet
#        d. store peak RSS while 64 clients download a 1 GiB blob at once   target < 64 MiB
#   5. prints a summary table with PASS/MISS beside each target and exits 0 whatever the
#      numbers (non-zero only if the harness itself breaks: build, install, start-up, upload).
#
# Environment:
#   BENCH_SECONDS      seconds per wrk measurement and for the memory phase (default 10)
#   BENCH_ROUNDS       rounds of the GET measurements (default 5; the median ratio is kept)
#   BENCH_WARMUP       seconds of wrk warm-up before each measurement (default 2, max BENCH_SECONDS)
#   BENCH_THREADS      wrk threads (default 2)
#   BENCH_SMALL_CONNS  wrk connections for 4 KiB (default 64)
#   BENCH_BIG_CONNS    wrk connections for 64 MiB (default 8)
#   BENCH_MEM_CLIENTS  concurrent downloads in the memory phase (default 64)
#   BENCH_MEM_SIZE     size of the memory-phase blob, as `head -c` takes it (default 1G)
#   BENCH_PUT_RUNS     PUT / dd repetitions, best kept (default 3)
#   BENCH_TMPDIR       where the temporary folder goes (default $TMPDIR or /tmp); it must be
#                      a real disk for the PUT comparison to mean anything
#   BENCH_KEEP=1       keep the temporary folder (logs, data) instead of deleting it
#   BENCH_NO_BUILD=1   skip `cargo build` (use the existing target/release/valet)
#   BENCH_PIN=1        pin the servers to CPU 0 and wrk/curl clients to CPU 1 (taskset), so each
#                      side gets one core of its own instead of fighting over both (default off:
#                      everything shares all CPUs). Override with BENCH_SERVER_CPUS / BENCH_CLIENT_CPUS.
#
# On a 2-core machine wrk runs on the same cores as the server under test, so every number
# here is "server + load generator sharing 2 CPUs". The summary shows how much CPU each used.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C

SECS=${BENCH_SECONDS:-10}
WARM=${BENCH_WARMUP:-2}
((WARM > SECS)) && WARM=$SECS
THREADS=${BENCH_THREADS:-2}
ROUNDS=${BENCH_ROUNDS:-5}
SMALL_CONNS=${BENCH_SMALL_CONNS:-64}
BIG_CONNS=${BENCH_BIG_CONNS:-8}
MEM_CLIENTS=${BENCH_MEM_CLIENTS:-64}
MEM_SIZE=${BENCH_MEM_SIZE:-1G}
PUT_RUNS=${BENCH_PUT_RUNS:-3}
RSS_LIMIT_KIB=$((64 * 1024))

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
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/valet-bench.XXXXXX")
DATA="$WORK/data"
SRC="$WORK/src"
NGX="$WORK/nginx"
LOGS="$WORK/logs"
mkdir -p "$DATA" "$SRC" "$NGX" "$LOGS"

STORE_PID=
NGINX_PID=
CLIENT_PIDS=()
cleanup_on_exit "${BENCH_KEEP:-0}" CLIENT_PIDS NGINX_PID STORE_PID

FS_TYPE=$(stat -f -c %T "$WORK")
say_machine
echo "    BENCH_SECONDS=$SECS warm-up=${WARM}s wrk threads=$THREADS 4KiB conns=$SMALL_CONNS 64MiB conns=$BIG_CONNS"
say_pinning
case "$FS_TYPE" in tmpfs | ramfs) echo "    WARNING: $WORK is in memory: the PUT vs dd comparison does not measure a disk" ;; esac

# ---------------------------------------------------------------------------------------------
# 2. The store, a key, two blobs
# ---------------------------------------------------------------------------------------------
new_port STORE_PORT
new_port NGINX_PORT
VBASE="http://127.0.0.1:$STORE_PORT"
say "starting the store on $VBASE"
RUST_LOG=warn "${SRV[@]}" "$VALET" serve --role store --data "$DATA" --store-addr "127.0.0.1:$STORE_PORT" \
  --shutdown-grace 2s 2>"$LOGS/store.log" &
STORE_PID=$!
wait_http "$VBASE/" "$STORE_PID" store
wait_file "$DATA/keyring" || true
TOKEN=$("$VALET" key issue --keyring "$DATA/keyring" --resource blob:bench --ops read,write --ttl 1h)
[ -n "$TOKEN" ] || die "no token"
Q="?vk=$TOKEN"

put_blob() { # file name -> "http_code time_total"
  curl -sS -o "$LOGS/put-$2.json" -w '%{http_code} %{time_total}' \
    -T "$1" -H 'Content-Type: application/octet-stream' "$VBASE/blob/bench/$2$Q"
}
upload() { # file name
  local r
  r=$(put_blob "$1" "$2")
  [ "${r%% *}" = 201 ] || die "upload of $2 answered ${r%% *}: $(cat "$LOGS/put-$2.json")"
}

say "uploading small (4 KiB) and big (64 MiB) through the store"
head -c 4096 /dev/urandom >"$SRC/small"
head -c 64M /dev/urandom >"$SRC/big"
upload "$SRC/small" small
upload "$SRC/big" big
[ -f "$DATA/blobs/bench/small" ] && [ -f "$DATA/blobs/bench/big" ] ||
  die "blobs not found as files under $DATA/blobs/bench"

# ---------------------------------------------------------------------------------------------
# 3. nginx over the same files
# ---------------------------------------------------------------------------------------------
NBASE="http://127.0.0.1:$NGINX_PORT"
nginx_conf "$NGX" auto on "    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $DATA/blobs;
    }" >"$NGX/nginx.conf"
say "starting nginx on $NBASE (root $DATA/blobs)"
"${SRV[@]}" nginx -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/error.log" 2>"$LOGS/nginx.stderr" &
NGINX_PID=$!
wait_http "$NBASE/" "$NGINX_PID" nginx

# Both must serve the same bytes with 200. nginx ignores the query string; it is sent anyway
# so that both request lines are the same size.
for name in small big; do
  cmp -s <(curl -sSf "$VBASE/blob/bench/$name$Q") "$SRC/$name" || die "store GET $name differs"
  cmp -s <(curl -sSf "$NBASE/bench/$name$Q") "$SRC/$name" || die "nginx GET $name differs"
done
echo "    both serve identical bytes for small and big"

# ---------------------------------------------------------------------------------------------
# 4a/4b. GET with wrk
# ---------------------------------------------------------------------------------------------
# run_wrk LABEL CONNS URL SERVER_PID: warm-up, then a measured run. Sets R_<LABEL>_* globals.
run_wrk() {
  local label=$1 conns=$2 url=$3 pid=$4 t0 t1 b0 b1 dur_s
  "${CLI[@]}" wrk -t"$THREADS" -c"$conns" -d"${WARM}s" --timeout 30s "$url" >/dev/null
  t0=$(cpu_ticks "$pid")
  b0=$(sys_busy_ticks)
  wrk_timed "$label" -t"$THREADS" -c"$conns" -d"${SECS}s" --timeout 30s "$url"
  t1=$(cpu_ticks "$pid")
  b1=$(sys_busy_ticks)
  wrk_result "$label" # prints the report; sets R_<label>_requests, _bytes, _rps, _wrkcpu, _errs...
  dur_s=$(get "${label}_dur_s")
  printf -v "R_${label}_bps" '%s' "$(awk -v n="$(get "${label}_bytes")" -v d="$dur_s" 'BEGIN { printf "%.0f", n / d }')"
  # CPU used, in % of one core (200 % = both cores of a 2-core machine)
  printf -v "R_${label}_srvcpu" '%s' "$(cpu_pct $((t1 - t0)) "$dur_s")"
  # Everything else the machine ran meanwhile (other users' builds, tests...): busy - server - wrk
  printf -v "R_${label}_othcpu" '%s' "$(other_pct $((b1 - b0)) "$dur_s" "$(get "${label}_srvcpu")" "$(get "${label}_wrkcpu")")"
}

# One round: 4 KiB then 64 MiB, each valet and nginx back to back, the order flipped in even
# rounds so that neither side always runs on a machine warmed (or loaded) by the other.
get_round() { # round
  local r=$1 size blob conns what side sides
  for size in 4k 64; do
    if [ "$size" = 4k ]; then blob=small conns=$SMALL_CONNS what="4 KiB"; else blob=big conns=$BIG_CONNS what="64 MiB"; fi
    sides=(v n)
    ((r % 2 == 0)) && sides=(n v)
    for side in "${sides[@]}"; do
      if [ "$side" = v ]; then
        say "round $r/$ROUNDS: GET $what, valet (key verified on every request): wrk -t$THREADS -c$conns -d${SECS}s"
        run_wrk "v${size}_$r" "$conns" "$VBASE/blob/bench/$blob$Q" "$STORE_PID"
      else
        say "round $r/$ROUNDS: GET $what, nginx: wrk -t$THREADS -c$conns -d${SECS}s"
        run_wrk "n${size}_$r" "$conns" "$NBASE/bench/$blob$Q" "$NGINX_PID"
      fi
    done
  done
}
for ((round = 1; round <= ROUNDS; round++)); do get_round "$round"; done
RUN_LABELS=()
for ((round = 1; round <= ROUNDS; round++)); do
  RUN_LABELS+=("v4k_$round" "n4k_$round" "v64_$round" "n64_$round")
done

# ---------------------------------------------------------------------------------------------
# 4c. PUT 64 MiB: store vs dd conv=fsync on the same file system
# ---------------------------------------------------------------------------------------------
say "PUT 64 MiB to valet (curl -T, fresh name each run) vs dd bs=1M conv=fsync, best of $PUT_RUNS"
PUT_BEST=
DD_BEST=
for ((i = 1; i <= PUT_RUNS; i++)); do
  sync
  r=$(put_blob "$SRC/big" "put-$$-$i")
  [ "${r%% *}" = 201 ] || die "PUT run $i answered ${r%% *}: $(cat "$LOGS/put-put-$$-$i.json")"
  t=${r#* }
  echo "    valet PUT run $i: ${t} s"
  PUT_BEST=$(awk -v a="${PUT_BEST:-1e9}" -v b="$t" 'BEGIN { print (b < a) ? b : a }')
done
for ((i = 1; i <= PUT_RUNS; i++)); do
  rm -f "$DATA/dd-x"
  sync
  s=$EPOCHREALTIME
  dd if="$SRC/big" of="$DATA/dd-x" bs=1M conv=fsync status=none
  e=$EPOCHREALTIME
  t=$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.6f", e - s }')
  echo "    dd conv=fsync run $i: ${t} s"
  DD_BEST=$(awk -v a="${DD_BEST:-1e9}" -v b="$t" 'BEGIN { print (b < a) ? b : a }')
done
rm -f "$DATA/dd-x"
rm -f "$DATA"/blobs/bench/put-$$-* # plain files (metadata in their xattr): nothing else refers to them

# ---------------------------------------------------------------------------------------------
# 4d. Memory: peak RSS while MEM_CLIENTS clients download a MEM_SIZE blob at once
# ---------------------------------------------------------------------------------------------
say "memory: $MEM_CLIENTS concurrent downloads of a $MEM_SIZE blob for ${SECS}s"
HWM_BEFORE=$(awk '/VmHWM/ {print $2}' "/proc/$STORE_PID/status")
head -c "$MEM_SIZE" /dev/urandom >"$SRC/huge"
MEM_BYTES=$(stat -c %s "$SRC/huge")
upload "$SRC/huge" huge
rm -f "$SRC/huge"
RSS_IDLE=$(awk '/VmRSS/ {print $2}' "/proc/$STORE_PID/status")
# Reset the peak (VmHWM) so that it covers this phase only; the whole-run peak is kept above.
if echo 5 >"/proc/$STORE_PID/clear_refs" 2>/dev/null; then HWM_RESET=yes; else HWM_RESET=no; fi
RSS_MAX_SAMPLED=0
for ((i = 1; i <= MEM_CLIENTS; i++)); do
  "${CLI[@]}" curl -s -o /dev/null --max-time "$SECS" -w '%{http_code} %{size_download}\n' \
    "$VBASE/blob/bench/huge$Q" >"$LOGS/mem-$i.txt" 2>/dev/null &
  CLIENT_PIDS+=($!)
done
mem_start=$EPOCHREALTIME
while :; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$STORE_PID/status")
  ((rss > RSS_MAX_SAMPLED)) && RSS_MAX_SAMPLED=$rss
  alive=0
  for p in "${CLIENT_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
  ((alive == 0)) && break
  sleep 0.1
done
mem_end=$EPOCHREALTIME
for p in "${CLIENT_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
CLIENT_PIDS=()
HWM_PHASE=$(awk '/VmHWM/ {print $2}' "/proc/$STORE_PID/status")
RSS_AFTER=$(awk '/VmRSS/ {print $2}' "/proc/$STORE_PID/status")
MEM_DL_BYTES=$(cat "$LOGS"/mem-*.txt | awk '{ s += $2 } END { printf "%.0f", s }')
MEM_CODES=$(cat "$LOGS"/mem-*.txt | awk '{ c[$1]++ } END { for (k in c) printf "%s%s x%d", sep, k, c[k]; sep = ", " }')
MEM_FULL=$(cat "$LOGS"/mem-*.txt | awk -v n="$MEM_BYTES" '$2 == n { c++ } END { print c + 0 }')
MEM_SECS=$(awk -v s="$mem_start" -v e="$mem_end" 'BEGIN { printf "%.1f", e - s }')
echo "    clients' status codes: $MEM_CODES; $MEM_FULL of $MEM_CLIENTS finished the whole blob"
echo "    downloaded $(fmt "$MEM_DL_BYTES" '%.0f') bytes in ${MEM_SECS}s ($(awk -v b="$MEM_DL_BYTES" -v s="$MEM_SECS" 'BEGIN { printf "%.0f", b / s / 1048576 }') MiB/s)"
echo "    store RSS: idle ${RSS_IDLE} KiB, max sampled ${RSS_MAX_SAMPLED} KiB, VmHWM over the phase ${HWM_PHASE} KiB (reset: $HWM_RESET), after ${RSS_AFTER} KiB"
echo "    store VmHWM before this phase (start-up, uploads, wrk runs): ${HWM_BEFORE} KiB"
[ "$HWM_RESET" = yes ] || HWM_PHASE=$(((HWM_PHASE > HWM_BEFORE) ? HWM_PHASE : HWM_BEFORE))

# ---------------------------------------------------------------------------------------------
# 5. Summary
# ---------------------------------------------------------------------------------------------
# round_ratios SIZE FIELD: each round's valet/nginx ratio, space-separated
round_ratios() {
  local r out=()
  for ((r = 1; r <= ROUNDS; r++)); do out+=("$(div "$(get "v$1_${r}_$2")" "$(get "n$1_${r}_$2")")"); done
  echo "${out[*]}"
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : sprintf("%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
# median_of LABEL FIELD: the median over rounds of one side's figure (LABEL is v4k, n64...)
median_of() {
  local r out=()
  for ((r = 1; r <= ROUNDS; r++)); do out+=("$(get "$1_${r}_$2")"); done
  median "${out[@]}"
}
SMALL_RATIOS=$(round_ratios 4k rps)
BIG_RATIOS=$(round_ratios 64 bps)
# shellcheck disable=SC2086 # word splitting of the ratio lists is wanted
R_SMALL=$(median $SMALL_RATIOS)
# shellcheck disable=SC2086
R_BIG=$(median $BIG_RATIOS)
R_PUT=$(div "$DD_BEST" "$PUT_BEST")
MiBps() { awk -v b="$1" 'BEGIN { printf "%.0f MiB/s", b / 1048576 }'; }
errs() { echo "$(get "$1"_status)/$(get "$1"_errs)"; }
put_mibps=$(awk -v t="$PUT_BEST" 'BEGIN { printf "%.0f MiB/s", 64 / t }')
dd_mibps=$(awk -v t="$DD_BEST" 'BEGIN { printf "%.0f MiB/s", 64 / t }')

echo
echo "======================================================================================================"
if ((${#SRV[@]})); then cpu_note="servers pinned to CPU ${BENCH_SERVER_CPUS:-0}, clients to CPU ${BENCH_CLIENT_CPUS:-1}"; else cpu_note="wrk shares the CPUs with the server"; fi
echo " Valet store vs nginx — $(nproc) CPUs, BENCH_SECONDS=$SECS, wrk -t$THREADS ($cpu_note)"
echo "======================================================================================================"
printf '%-24s %-30s %-30s %-7s %-7s %-5s\n' "test" "valet" "nginx / disk" "ratio" "target" "result"
printf '%-24s %-30s %-30s %-7s %-7s %-5s\n' "------------------------" "------------------------------" "------------------------------" "-------" "-------" "-----"
printf '%-24s %-30s %-30s %-7s %-7s %-5s\n' "GET 4 KiB  c$SMALL_CONNS req/s" \
  "$(fmt "$(median_of v4k rps)" '%.0f')" "$(fmt "$(median_of n4k rps)" '%.0f')" "$R_SMALL" ">=0.80" "$(verdict "$R_SMALL" '>=' 0.8)"
printf '%-24s %-30s %-30s %-7s %-7s %-5s\n' "GET 64 MiB c$BIG_CONNS bytes/s" \
  "$(MiBps "$(median_of v64 bps)")" "$(MiBps "$(median_of n64 bps)")" \
  "$R_BIG" ">=0.90" "$(verdict "$R_BIG" '>=' 0.9)"
printf '%-24s %-30s %-30s %-7s %-7s %-5s\n' "PUT 64 MiB best of $PUT_RUNS" \
  "$(fmt "$PUT_BEST" '%.3f') s ($put_mibps)" "$(fmt "$DD_BEST" '%.3f') s ($dd_mibps)" "$R_PUT" "(info)" "-"
printf '%-24s %-30s %-30s %-7s %-7s %-5s\n' "peak RSS, $MEM_CLIENTS x $MEM_SIZE GET" \
  "$(awk -v k="$HWM_PHASE" 'BEGIN { printf "%.1f MiB", k / 1024 }')" "-" "-" "<64MiB" \
  "$(verdict "$HWM_PHASE" '<' "$RSS_LIMIT_KIB")"
echo "GET ratios: the median of $ROUNDS rounds (the valet and nginx columns: each side's median);"
echo "  each round's ratio: 4 KiB $SMALL_RATIOS | 64 MiB $BIG_RATIOS"
echo
echo "details (CPU in % of one core; 200% = both cores; errors = non-2xx/3xx / socket errors+timeouts):"
printf '  %-17s %10s %12s %10s %10s %9s %9s %9s %9s\n' "run" "requests" "bytes" "p50 ms" "p99 ms" "srv CPU" "wrk CPU" "other" "errors"
for l in "${RUN_LABELS[@]}"; do
  case ${l%_*} in
    v4k) n="valet 4 KiB" ;; n4k) n="nginx 4 KiB" ;; v64) n="valet 64 MiB" ;; n64) n="nginx 64 MiB" ;;
  esac
  n="$n #${l##*_}"
  printf '  %-17s %10s %12s %10s %10s %8s%% %8s%% %8s%% %9s\n' "$n" "$(get "${l}"_requests)" "$(get "${l}"_bytes)" \
    "$(fmt "$(get "${l}"_p50_us)" '%.0f' | awk '{ printf "%.2f", $1 / 1000 }')" \
    "$(fmt "$(get "${l}"_p99_us)" '%.0f' | awk '{ printf "%.2f", $1 / 1000 }')" \
    "$(get "${l}"_srvcpu)" "$(get "${l}"_wrkcpu)" "$(get "${l}"_othcpu)" "$(errs "$l")"
done
echo "  PUT ratio = dd_time / valet_time (1.0 = the store writes as fast as dd with fsync)."
echo "  memory: peak over the phase (VmHWM reset before it: $HWM_RESET); whole-run peak before it ${HWM_BEFORE} KiB;"
echo "          $MEM_DL_BYTES bytes sent to $MEM_CLIENTS clients in ${MEM_SECS}s, status codes: $MEM_CODES"
wrk_notes "${RUN_LABELS[@]}"
exit 0
