#!/usr/bin/env bash
# The store's ledger on PostgreSQL vs SQLite, in one run, with PostgreSQL's own limit beside it:
#   a. GET 4 KiB with an uncounted key: store on the PostgreSQL ledger / store on SQLite
#      (revocations are checked in memory on both)                       target >= 0.95
#   b. GET 4 KiB with a counted key (max_uses): every request is one counting statement on the
#      key's row; the rate on PostgreSQL, on SQLite, and pgbench's UPDATE rate on the same
#      server with the pool's connections, of one row (the limit for one key) and of any of
#      100 000 rows (many keys)                                            (reported)
#
#   bash bench/ledger-postgres.sh              # BENCH_SECONDS=10, BENCH_ROUNDS=3
#
# Starts a private PostgreSQL from Debian's binaries (as the postgres user when run as root),
# removed at the end. Environment as in store-vs-nginx.sh: BENCH_SECONDS, BENCH_ROUNDS,
# BENCH_WARMUP, BENCH_THREADS, BENCH_CONNS (64), BENCH_NO_BUILD, BENCH_KEEP, BENCH_PIN.
set -euo pipefail
export LC_ALL=C

SECS=${BENCH_SECONDS:-10}
WARM=${BENCH_WARMUP:-2}
((WARM > SECS)) && WARM=$SECS
THREADS=${BENCH_THREADS:-2}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNS:-64}
PG_POOL=16 # the ledger's pool per node: pgbench gets as many connections

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$HERE/lib.sh"
LUA="$HERE/wrk-report.lua"
VALET="$TARGET_DIR/release/valet"
pin_cpus

need_tools wrk curl
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -x "$PG_BIN/initdb" ] || die "PostgreSQL's server binaries are missing: apt-get install postgresql"
build_valet "${BENCH_NO_BUILD:-0}"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/valet-bench-pg.XXXXXX")
chmod 755 "$WORK"
LOGS="$WORK/logs"
mkdir -p "$LOGS"
PG_PID=
SQLITE_PID=
PGSTORE_PID=
cleanup_on_exit "${BENCH_KEEP:-0}" PGSTORE_PID SQLITE_PID PG_PID

# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------
as_pg=()
[ "$(id -u)" = 0 ] && as_pg=(runuser -u postgres --)
new_port PG_PORT
mkdir -p "$WORK/pg"
[ "$(id -u)" = 0 ] && chown postgres "$WORK/pg"
say "starting PostgreSQL ($("$PG_BIN/postgres" --version)) on 127.0.0.1:$PG_PORT"
"${as_pg[@]}" "$PG_BIN/initdb" -D "$WORK/pg/data" -U postgres --auth=trust -E UTF8 >"$LOGS/initdb.log"
"${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/server.log" -w \
  -o "-p $PG_PORT -k $WORK/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
PG_PID=$(head -n1 "$WORK/pg/data/postmaster.pid")
trap '"${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m fast stop >/dev/null 2>&1 || true; cleanup' EXIT
PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"

# ---------------------------------------------------------------------------------------------
# Two stores, one blob each, keys
# ---------------------------------------------------------------------------------------------
"$VALET" key new-keyring --out "$WORK/keyring" >/dev/null
start_store() { # name ledger-args... -> sets PORT_<name>, PID via global LAST_PID
  local name=$1 port
  shift
  new_port port
  RUST_LOG=warn "${SRV[@]}" "$VALET" serve --role store --data "$WORK/$name" --keyring "$WORK/keyring" \
    --store-addr "127.0.0.1:$port" --shutdown-grace 2s "$@" 2>"$LOGS/$name.log" &
  LAST_PID=$!
  wait_http "http://127.0.0.1:$port/healthz" "$LAST_PID" "$name"
  printf -v "PORT_$name" '%s' "$port"
}
start_store sqlite
SQLITE_PID=$LAST_PID
start_store pg --ledger "$PG_URL"
PGSTORE_PID=$LAST_PID
key() { "$VALET" key issue --keyring "$WORK/keyring" --resource blob:bench --ops read,write --ttl 2h "$@"; }
UNCOUNTED=$(key)
COUNTED=$(key --max-uses 1000000000)
head -c 4096 /dev/urandom >"$WORK/small"
for name in sqlite pg; do
  port=$(eval echo "\$PORT_$name")
  code=$(curl -sS -o /dev/null -w '%{http_code}' -T "$WORK/small" "http://127.0.0.1:$port/blob/bench/small?vk=$UNCOUNTED")
  [ "$code" = 201 ] || die "upload to the $name store answered $code"
done
say_machine "$("$PG_BIN/postgres" --version)"
say_pinning

run_wrk() { # label url server-pid
  local label=$1 url=$2 pid=$3 t0 t1 b0 b1 dur_s
  "${CLI[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${WARM}s" --timeout 30s "$url" >/dev/null
  t0=$(($(cpu_ticks "$pid") + $(cpu_ticks "$PG_PID")))
  b0=$(sys_busy_ticks)
  wrk_timed "$label" -t"$THREADS" -c"$CONNS" -d"${SECS}s" --timeout 30s "$url"
  t1=$(($(cpu_ticks "$pid") + $(cpu_ticks "$PG_PID")))
  b1=$(sys_busy_ticks)
  wrk_result "$label"
  dur_s=$(get "${label}_dur_s")
  printf -v "R_${label}_srvcpu" '%s' "$(cpu_pct $((t1 - t0)) "$dur_s")"
  printf -v "R_${label}_othcpu" '%s' "$(other_pct $((b1 - b0)) "$dur_s" "$(get "${label}_srvcpu")" "$(get "${label}_wrkcpu")")"
}
url() { echo "http://127.0.0.1:$(eval echo "\$PORT_$1")/blob/bench/small?vk=$2"; }
for ((r = 1; r <= ROUNDS; r++)); do
  order=(sqlite pg)
  ((r % 2 == 0)) && order=(pg sqlite)
  for kind in uncounted counted; do
    key=$UNCOUNTED
    [ "$kind" = counted ] && key=$COUNTED
    for name in "${order[@]}"; do
      pid=$SQLITE_PID
      [ "$name" = pg ] && pid=$PGSTORE_PID
      say "round $r/$ROUNDS: GET 4 KiB, $kind key, ledger on $name"
      run_wrk "${name}_${kind}_$r" "$(url "$name" "$key")" "$pid"
    done
  done
done

# ---------------------------------------------------------------------------------------------
# pgbench: single-row UPDATEs with the ledger pool's connections: all on one row (what
# counting the uses of one key is: every use updates that key's row) and on a random row of
# 100 000 (many keys at once)
# ---------------------------------------------------------------------------------------------
"$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -s 1 -q postgres >"$LOGS/pgbench-init.log" 2>&1
printf '%s\n' 'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1;' >"$WORK/one-row.sql"
printf '%s\n' '\set aid random(1, 100000)' \
  'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;' >"$WORK/any-row.sql"
pgbench_tps() { # script
  say "pgbench -f $1, $PG_POOL connections, ${SECS}s" >&2
  "${CLI[@]}" "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -n -c "$PG_POOL" -j "$THREADS" \
    -T "$SECS" -f "$WORK/$1" postgres >"$LOGS/pgbench-$1.log" 2>&1
  sed 's/^/    /' "$LOGS/pgbench-$1.log" | tail -n 3 >&2
  awk '/^tps = / { printf "%.0f", $3 }' "$LOGS/pgbench-$1.log"
}
PGBENCH_ONE=$(pgbench_tps one-row.sql)
PGBENCH_ANY=$(pgbench_tps any-row.sql)

# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : sprintf("%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
median_of() { # name kind
  local r out=()
  for ((r = 1; r <= ROUNDS; r++)); do out+=("$(get "$1_$2_${r}_rps")"); done
  median "${out[@]}"
}
ratios=()
for ((r = 1; r <= ROUNDS; r++)); do ratios+=("$(div "$(get "pg_uncounted_${r}_rps")" "$(get "sqlite_uncounted_${r}_rps")")"); done
R_UNCOUNTED=$(median "${ratios[@]}")
PG_COUNTED=$(median_of pg counted)
echo
echo "=========================================================================================="
echo " Store ledger: PostgreSQL vs SQLite — $(nproc) CPUs, BENCH_SECONDS=$SECS, wrk -t$THREADS -c$CONNS"
echo "=========================================================================================="
printf '%-34s %-12s %-12s %-7s %-7s %-5s\n' test "PostgreSQL" "SQLite" ratio target result
printf '%-34s %-12s %-12s %-7s %-7s %-5s\n' "GET 4 KiB uncounted key, req/s" \
  "$(fmt "$(median_of pg uncounted)" '%.0f')" "$(fmt "$(median_of sqlite uncounted)" '%.0f')" \
  "$R_UNCOUNTED" ">=0.95" "$(verdict "$R_UNCOUNTED" '>=' 0.95)"
printf '%-34s %-12s %-12s %-7s %-7s %-5s\n' "GET 4 KiB counted key, req/s" \
  "$(fmt "$PG_COUNTED" '%.0f')" "$(fmt "$(median_of sqlite counted)" '%.0f')" "-" "(info)" "-"
printf '%-34s %-12s %-12s %-7s %-7s %-5s\n' "pgbench UPDATE of one row, tps" "$PGBENCH_ONE" "-" \
  "$(div "$PG_COUNTED" "$PGBENCH_ONE")" "(info)" "-"
printf '%-34s %-12s %-12s %-7s %-7s %-5s\n' "pgbench UPDATE of any row, tps" "$PGBENCH_ANY" "-" "-" "(info)" "-"
echo "uncounted ratios per round: ${ratios[*]}"
echo "counted: one key, so every use updates one row; its ratio is counted admissions / pgbench's one-row"
echo "UPDATE rate with the pool's $PG_POOL connections (the limit for one key; many keys scale like 'any row')"
labels=()
for ((r = 1; r <= ROUNDS; r++)); do
  for n in sqlite pg; do labels+=("${n}_uncounted_$r" "${n}_counted_$r"); done
done
wrk_notes "${labels[@]}"
exit 0
