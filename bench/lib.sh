# shellcheck shell=bash
# Shell machinery shared by the bench scripts (store-vs-nginx.sh, gate-vs-nginx.sh, load.sh).
# Sourced, not run: `. "$HERE/lib.sh"` right after the script has set HERE (its own folder) and
# `set -euo pipefail`. Sourcing only defines the functions and sets the globals below; the
# functions also read, when called, globals the script sets: WORK (the temporary folder), LOGS
# (its log folder), VALET (the binary) and LUA (the wrk script).
# shellcheck disable=SC2154 # WORK, LOGS, VALET, LUA are set by the calling script
# shellcheck disable=SC2034 # TARGET_DIR, SRV are used by the calling scripts

ROOT=$(cd "$HERE/.." && pwd)                 # the repository
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target} # where cargo builds
CLK_TCK=$(getconf CLK_TCK)                   # ticks per second in /proc/PID/stat and /proc/stat
DIE_CODE=1                                   # die's exit status (load.sh sets 2)
USED_PORTS=()                                # ports handed out by new_port
SRV=()                                       # command prefix for the servers (taskset, see pin_cpus)
CLI=()                                       # command prefix for wrk/curl (taskset, see pin_cpus)

# say TEXT...: prints a step header "==> TEXT" after a blank line.
say() { printf '\n==> %s\n' "$*"; }

# die TEXT...: prints "error: TEXT" on stderr and exits with $DIE_CODE.
die() {
  printf 'error: %s\n' "$*" >&2
  exit "$DIE_CODE"
}

# ---------------------------------------------------------------------------------------------
# Tools, build, CPUs
# ---------------------------------------------------------------------------------------------

# need_tools TOOL...: installs the missing TOOLs with apt-get (through sudo when not root), then dies if one is still missing.
need_tools() {
  local need=() tool SUDO=
  for tool in "$@"; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
  if ((${#need[@]})); then
    say "installing ${need[*]}"
    if [ "$(id -u)" -ne 0 ]; then
      command -v sudo >/dev/null 2>&1 || die "need root or sudo to install ${need[*]}"
      SUDO=sudo
    fi
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${need[@]}"
  fi
  for tool in "$@"; do command -v "$tool" >/dev/null 2>&1 || die "$tool still missing"; done
}

# build_valet SKIP: unless SKIP is 1, `cargo build --release -p valet` in $ROOT (returns cargo's status if it fails); then dies unless $VALET is executable.
build_valet() {
  if [ "$1" != 1 ]; then
    say "building valet (release)"
    (cd "$ROOT" && cargo build --release -p valet) || return
  fi
  [ -x "$VALET" ] || die "no binary at $VALET"
}

# pin_cpus: with BENCH_PIN=1, sets SRV and CLI to taskset on BENCH_SERVER_CPUS (0) and BENCH_CLIENT_CPUS (1).
pin_cpus() {
  if [ "${BENCH_PIN:-0}" = 1 ]; then
    SRV=(taskset -c "${BENCH_SERVER_CPUS:-0}")
    CLI=(taskset -c "${BENCH_CLIENT_CPUS:-1}")
  fi
}

# say_machine [VERSION...]: prints the machine (CPUs, memory, $WORK and its file system), the load average, and nginx, wrk, VERSION... and valet versions.
# shellcheck disable=SC2120 # the VERSIONs are optional
say_machine() {
  local extra='' v
  for v in "$@"; do extra+=", $v"; done
  say "machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), work folder $WORK ($(stat -f -c %T "$WORK"))"
  echo "    load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "    $(nginx -v 2>&1), $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)$extra, $("$VALET" --version 2>/dev/null || echo valet)"
}

# say_pinning: prints where the servers and the clients run (after pin_cpus).
say_pinning() {
  if ((${#SRV[@]})); then
    echo "    pinned: servers on CPU ${BENCH_SERVER_CPUS:-0}, wrk/curl on CPU ${BENCH_CLIENT_CPUS:-1}"
  else
    echo "    not pinned: servers and wrk share all $(nproc) CPUs (BENCH_PIN=1 to separate them)"
  fi
}

# ---------------------------------------------------------------------------------------------
# Processes, ports, clean-up
# ---------------------------------------------------------------------------------------------

# stop_pid PID...: TERM each running PID (empty ones skipped), wait up to 5 s for all, then KILL those left and their direct children; reaps them.
stop_pid() {
  local pids=() pid i alive kids
  for pid in "$@"; do [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && pids+=("$pid"); done
  ((${#pids[@]})) || return 0
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 50; i++)); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kids=$(pgrep -P "$pid" || true)
      # shellcheck disable=SC2086 # one word per child pid
      kill -KILL "$pid" $kids 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
}

# cleanup_on_exit KEEP PIDVAR...: from now on, on exit (Ctrl-C/TERM: exit 130) stop_pid the processes in the variables or arrays named PIDVAR (read then, in this order), then delete $WORK unless KEEP is 1.
cleanup_on_exit() {
  CLEANUP_KEEP=$1
  shift
  CLEANUP_PIDVARS=("$@")
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}

# cleanup: the EXIT trap set by cleanup_on_exit; with KEEP=1 it says on stderr where $WORK is.
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  set +e
  local var
  for var in "${CLEANUP_PIDVARS[@]}"; do eval "stop_pid \"\${${var}[@]}\""; done
  if [ "$CLEANUP_KEEP" = 1 ]; then
    echo "kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}

# free_port: prints a loopback port nobody answers on and not in USED_PORTS (returns 1 after 200 tries).
free_port() {
  local p i u taken
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 40000))
    taken=0
    for u in "${USED_PORTS[@]}"; do [ "$u" = "$p" ] && taken=1; done
    ((taken)) && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# new_port VAR: a free port into $VAR, remembered in USED_PORTS so that the next one differs.
new_port() {
  local p
  p=$(free_port) || die "no free port"
  USED_PORTS+=("$p")
  printf -v "$1" '%s' "$p"
}

# wait_http URL PID NAME: waits up to 15 s until something answers HTTP on URL; dies if PID exits or nothing answers.
wait_http() {
  local url=$1 pid=$2 name=$3 i code
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || die "$name exited at start-up (see $LOGS)"
    code=$(curl -s -o /dev/null -w '%{http_code}' "$url" || true)
    [ "$code" != 000 ] && [ -n "$code" ] && return 0
    sleep 0.1
  done
  die "$name did not answer on $url"
}

# wait_file FILE: waits up to 5 s until FILE is not empty; returns 1 if it still is.
wait_file() {
  local i
  for ((i = 0; i < 50; i++)); do [ -s "$1" ] && return 0; sleep 0.1; done
  [ -s "$1" ]
}

# nginx_conf PREFIX WORKERS SENDFILE SERVER-BLOCKS: prints an nginx config (no daemon, pid, error log and temp paths under PREFIX, access log off, keep-alive, sendfile and tcp_nopush SENDFILE=on|off) whose http block ends with SERVER-BLOCKS.
nginx_conf() {
  local user_line=
  # The work folder is owner-only (mktemp); as root, let the workers run as root to read it.
  [ "$(id -u)" -eq 0 ] && user_line="user root;"
  cat <<EOF
$user_line
worker_processes $2;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile $3;
    tcp_nopush $3;
    tcp_nodelay on;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    types { application/json json; }
    default_type application/octet-stream;
    client_body_temp_path $1/client_body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
$4
}
EOF
}

# ---------------------------------------------------------------------------------------------
# CPU time
# ---------------------------------------------------------------------------------------------

# cpu_ticks PID: utime+stime of the process (all its threads) and of its direct children (nginx workers), in CLK_TCK ticks.
cpu_ticks() {
  local total=0 p t
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
    total=$((total + t))
  done
  echo "$total"
}

# sys_busy_ticks: all CPUs' user+nice+system+irq+softirq+steal so far, in CLK_TCK ticks.
sys_busy_ticks() {
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

# cpu_pct TICKS SECONDS: TICKS of CPU over SECONDS as a whole % of one core (200 % = two cores).
cpu_pct() {
  awk -v t="$1" -v hz="$CLK_TCK" -v d="$2" 'BEGIN { printf "%.0f", 100 * t / hz / d }'
}

# other_pct BUSY_TICKS SECONDS PCT...: the machine's busy % over SECONDS minus the PCTs already accounted for, at least 0.
other_pct() {
  local b=$1 d=$2
  shift 2
  awk -v b="$b" -v hz="$CLK_TCK" -v d="$d" -v used="$*" \
    'BEGIN { o = 100 * b / hz / d; n = split(used, u, " "); for (i = 1; i <= n; i++) o -= u[i]; printf "%.0f", (o < 0) ? 0 : o }'
}

# ---------------------------------------------------------------------------------------------
# wrk measurements (with wrk-report.lua) and numbers
# ---------------------------------------------------------------------------------------------

# wrk_timed LABEL WRK-ARGS...: runs `wrk --latency -s $LUA WRK-ARGS` (after $CLI) into $LOGS/wrk-LABEL.txt, its user and system CPU seconds into $LOGS/time-LABEL.
wrk_timed() {
  local label=$1
  shift
  {
    TIMEFORMAT='%U %S'
    time "${CLI[@]}" wrk --latency -s "$LUA" "$@" >"$LOGS/wrk-$label.txt"
  } 2>"$LOGS/time-$label"
}

# wrk_result LABEL: prints wrk_timed LABEL's report (indented, keys masked) and sets R_LABEL_<field> per WRK_RESULT field, R_LABEL_dur_s, _rps, _wrkcpu (% of one core) and _errs (socket errors + timeouts).
wrk_result() {
  local label=$1 out="$LOGS/wrk-$1.txt" line kv dur_s
  sed -e 's/^/    /' -e "s/vk=[A-Za-z0-9._-]*/vk=…/" -e "s/X-Amz-Signature=[0-9a-f]*/X-Amz-Signature=…/" "$out" | grep -v '^    WRK_RESULT'
  line=$(grep '^WRK_RESULT' "$out") || die "wrk gave no result for $label"
  for kv in ${line#WRK_RESULT }; do
    printf -v "R_${label}_${kv%%=*}" '%s' "${kv#*=}"
  done
  dur_s=$(awk -v d="$(get "${label}_duration_us")" 'BEGIN { printf "%.6f", d / 1e6 }')
  printf -v "R_${label}_dur_s" '%s' "$dur_s"
  printf -v "R_${label}_rps" '%s' "$(awk -v n="$(get "${label}_requests")" -v d="$dur_s" 'BEGIN { printf "%.1f", n / d }')"
  printf -v "R_${label}_wrkcpu" '%s' "$(awk -v d="$dur_s" '{ printf "%.0f", 100 * ($1 + $2) / d }' "$LOGS/time-$label")"
  printf -v "R_${label}_errs" '%s' "$(($(get "${label}_connect") + $(get "${label}_read") + $(get "${label}_write") + $(get "${label}_timeout")))"
}

# wrk_notes LABEL...: the summary's closing NOTEs: another process used over 20 % of a core during a run, or wrk saw errors.
wrk_notes() {
  local l total_errs=0 busy_other=0
  for l in "$@"; do
    total_errs=$((total_errs + $(get "${l}_status") + $(get "${l}_errs")))
    (($(get "${l}_othcpu") > 20)) && busy_other=1
  done
  if ((busy_other)); then
    echo "  NOTE: other processes used over 20% of a core during some runs (column 'other'): the machine was not quiet."
  fi
  if ((total_errs > 0)); then
    echo "  NOTE: wrk reported errors above (see the raw wrk output); numbers with errors are suspect."
  fi
}

# get NAME: the value of $R_NAME (the results wrk_result and the scripts set).
get() { eval echo "\$R_$1"; }

# fmt NUMBER FORMAT: NUMBER through awk's printf FORMAT.
fmt() { awk -v x="$1" -v f="$2" 'BEGIN { printf f, x }'; }

# div A B: A/B with 3 decimals, "nan" if B is 0.
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "nan"; else printf "%.3f", a / b }'; }

# verdict VALUE OP THRESHOLD: PASS or MISS for VALUE OP THRESHOLD, OP one of >= <= <; "nan" misses, "inf" passes >=.
verdict() {
  awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
    if (v == "nan" || v == "inf") { print (v == "inf" && op == ">=") ? "PASS" : "MISS"; exit }
    ok = (op == ">=") ? (v >= t) : (op == "<=") ? (v <= t) : (v < t); print ok ? "PASS" : "MISS" }'
}
