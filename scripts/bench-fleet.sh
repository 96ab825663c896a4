#!/usr/bin/env bash
# Benchmark (not a test): how fast a fleet converges on a release, and what that costs the
# update server. AGENTS simulated agents (`worker-agent simulate`: the real update code path,
# real HTTP, real verification, only the process swap replaced) against a real update-server
# on 127.0.0.1. Each scenario runs once per store in STORES, on a fresh server:
#
#   sqlite           one update-server with its embedded SQLite store (the default deployment)
#   postgres         REPLICAS update-servers (default 2) on one PostgreSQL database (a throwaway
#                    cluster on 127.0.0.1 started here, fsync on as deployed) and one shared
#                    --data-dir; the agents are spread over them (agent i starts on replica
#                    i mod REPLICAS and fails over along the list)
#
# Scenarios:
#
#   long-poll        AGENTS on stable at 1.0.0, long polls (the agent's default); promote 2.0.0
#                    to stable at 100 %; until every agent runs 2.0.0
#   poll-30s         the same with plain polls every POLL_INTERVAL s + the agent's full jitter
#   canary           CANARIES agents on canary, the rest on stable, all at 1.0.0, long polls;
#                    promote 3.0.0, whose probation fails, to canary at 100 %; until the server
#                    auto-halts canary and every attempt has ended
#   canary-poll-30s  the same with plain polls
#   plan             AGENTS on stable at 1.0.0, long polls; `worker-release rollout plan` of 2.0.0
#                    with PLAN_WAVES (short soaks); until every agent runs 2.0.0
#
# Every promote starts with a first wave of 5 named workers (`--first-wave`, the default), and
# the rest follows within `--max-in-flight` (20 %) once they passed probation: the failing
# canary release must reach at most FIRST_WAVE canaries (the script fails otherwise).
#
# and prints, per scenario: (a) time from the promote to 50/90/99/100 % of the agents on 2.0.0,
# (b) the server's CPU seconds and requests per agent from the promote to the end, the database's
# CPU and its work per poll (store operations, and for PostgreSQL SQL statements from
# pg_stat_statements), with ratios postgres / sqlite, (c) for the
# failing release: canaries that got it before the auto-halt, those spared, and stable agents
# that received it (must be 0: the script fails otherwise), with ratios polling / long poll.
#
#   scripts/bench-fleet.sh                     # ~10 minutes once built
#   AGENTS=200 scripts/bench-fleet.sh          # smaller fleet
#   SCENARIOS="long-poll canary" scripts/bench-fleet.sh
#   STORES=sqlite scripts/bench-fleet.sh       # only the embedded store
#   AGENTS=10000 SCENARIOS="long-poll poll-30s" RUN_TIMEOUT=1200 scripts/bench-fleet.sh
#                                              # 10,000 agents: one SQLite replica vs two on PostgreSQL
#   KEEP=1 scripts/bench-fleet.sh              # keep the work directory (JSON lines, logs)
#
# Environment (defaults): AGENTS=1000, CANARIES=50, POLL_INTERVAL=30, PROBATION_MS=1000 (the
# simulated probation of 2.0.0), FAIL_PROBATION_MS=30000 (3.0.0 dies at a random moment within
# it; 30 s is the agent's default --probation-secs), ARTIFACT_KIB=64, RUN_TIMEOUT=300 (seconds,
# per scenario; the simulator stops by itself), STORES="sqlite postgres", REPLICAS=2, KEEP=0. The agents' state directories go to
# /dev/shm when it exists (AGENTS_DIR), the server's data directory to TMPDIR (on disk, as
# deployed: its SQLite writes are fsync'd). Every simulated agent shares one worker token, so
# the per-credential rate limit (`--worker-rate-limit`, 600/min) is lifted: it would otherwise
# pace the whole fleet's registrations and reports to 10 a second.
set -euo pipefail
root_dir="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root_dir"

AGENTS="${AGENTS:-1000}"
CANARIES="${CANARIES:-50}"
POLL_INTERVAL="${POLL_INTERVAL:-30}"
PROBATION_MS="${PROBATION_MS:-1000}"
FAIL_PROBATION_MS="${FAIL_PROBATION_MS:-30000}"
ARTIFACT_KIB="${ARTIFACT_KIB:-64}"
RUN_TIMEOUT="${RUN_TIMEOUT:-300}"
SCENARIOS="${SCENARIOS:-long-poll poll-30s canary canary-poll-30s plan}"
STORES="${STORES:-sqlite postgres}"
REPLICAS="${REPLICAS:-2}"
PLAN_WAVES="${PLAN_WAVES:-5,10%@10s,50%@10s,100%}"
FIRST_WAVE=5
KEEP="${KEEP:-0}"
if [ -z "${AGENTS_DIR:-}" ]; then
  if [ -d /dev/shm ] && [ -w /dev/shm ]; then AGENTS_DIR=/dev/shm; else AGENTS_DIR="${TMPDIR:-/tmp}"; fi
fi

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'bench-fleet: %s\n' "$*" >&2; exit 1; }
for n in AGENTS CANARIES POLL_INTERVAL PROBATION_MS FAIL_PROBATION_MS ARTIFACT_KIB RUN_TIMEOUT REPLICAS; do
  [[ "${!n}" =~ ^[0-9]+$ ]] || die "$n=${!n}: expected a whole number"
done
[ "$AGENTS" -ge 1 ] || die "AGENTS must be at least 1"
[ "$CANARIES" -lt "$AGENTS" ] || die "CANARIES must be below AGENTS"
for s in $SCENARIOS; do
  case "$s" in long-poll | poll-30s | canary | canary-poll-30s | plan) ;; *) die "unknown scenario $s" ;; esac
done
[ "$REPLICAS" -ge 1 ] || die "REPLICAS must be at least 1"
for store in $STORES; do
  case "$store" in sqlite | postgres) ;; *) die "unknown store $store (sqlite, postgres)" ;; esac
done
with_postgres=0
[[ " $STORES " == *" postgres "* ]] && with_postgres=1

need_pkgs=()
command -v curl >/dev/null || need_pkgs+=(curl)
command -v jq >/dev/null || need_pkgs+=(jq)
command -v openssl >/dev/null || need_pkgs+=(openssl)
if [ "$with_postgres" = 1 ]; then
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pkgs+=(postgresql)
  command -v runuser >/dev/null || need_pkgs+=(util-linux)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  step "installing ${need_pkgs[*]}"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    die "missing packages: ${need_pkgs[*]} (run: sudo apt-get install ${need_pkgs[*]})"
  fi
fi

step "building update-server, worker-release and worker-agent (release profile)"
cargo build --release --quiet --workspace --bins
bin="$root_dir/target/release"
wr="$bin/worker-release"
server_bin="$bin/update-server"
agent_bin="$bin/worker-agent"
platform="$("$agent_bin" --version | sed 's/.*, \(.*\))$/\1/')"

# Each agent holds a connection or two; the server as many. Raise the soft limit for both (and
# the hard one when we may: 10,000 agents need more than a common 20,000).
wanted_files=$((AGENTS * 4 + 4096))
if [ "$(id -u)" = 0 ] && [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$wanted_files" ]; then
  ulimit -Hn "$wanted_files" 2>/dev/null || true
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((AGENTS * 3 + 256)) ] ||
  printf 'bench-fleet: warning: ulimit -n is %s, low for %s agents\n' "$(ulimit -n)" "$AGENTS" >&2

# ---------------------------------------------------------------------------------------------
# Work directories and cleanup: every process started here is stopped on exit.
work="$(mktemp -d "${TMPDIR:-/tmp}/bench-fleet.XXXXXX")"
agents_base="$(mktemp -d "$AGENTS_DIR/bench-fleet-agents.XXXXXX")"
pids=()
pg_bin="" pg_dir="" pg_data="" pg_port=""
stop_postgres() {
  [ -n "$pg_dir" ] || return 0
  [ ! -f "$pg_data/postmaster.pid" ] ||
    as_postgres "$pg_bin/pg_ctl" -D "$pg_data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
}
as_postgres() { # initdb and postgres refuse to run as root; from /, which the user may enter
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}
cleanup() {
  local rc=$? pid tries
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    tries=0
    while kill -0 "$pid" 2>/dev/null && [ "$tries" -lt 50 ]; do sleep 0.1; tries=$((tries + 1)); done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$agents_base"
  stop_postgres
  if [ "$KEEP" = 1 ]; then
    printf '\nwork directory kept: %s\n' "$work" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "keys, root, releases 1.0.0, 2.0.0 and 3.0.0 (${ARTIFACT_KIB} KiB artifacts for $platform) in $work"
cd "$work"
for name in root release channel; do "$wr" keygen --out keys --name "$name" >/dev/null; done
"$wr" init-root --root-key keys/root.pub --release-key keys/release.pub \
  --channel-key keys/channel.pub --key keys/root.key --out root.json >/dev/null
# The simulator never executes an artifact: random bytes, signed for this platform.
for v in 1.0.0 2.0.0 3.0.0; do
  head -c "$((ARTIFACT_KIB * 1024))" /dev/urandom >"artifact-$v.bin"
  "$wr" sign-release --version "$v" --notes "bench-fleet $v" --artifact "$platform=artifact-$v.bin" \
    --key keys/release.key --out "release-$v.json" >/dev/null
done
admin_token="$(openssl rand -hex 24)"
worker_token="$(openssl rand -hex 24)"
printf 'bench-admin=%s\n' "$admin_token" >admin.tokens
printf 'bench-fleet=%s\n' "$worker_token" >worker.tokens
printf '%s\n' "$admin_token" >admin.token
printf '%s\n' "$worker_token" >worker.token
chmod 600 admin.tokens worker.tokens admin.token worker.token
export WORKER_RELEASE_TOKEN_FILE="$work/admin.token"

clk_tck="$(getconf CLK_TCK)"
cpu_ticks() { # PID... -> their user + system ticks, summed
  local stat fields pid total=0
  for pid in "$@"; do
    stat="$(cat "/proc/$pid/stat")"
    read -r -a fields <<<"${stat##*) }"
    total=$((total + fields[11] + fields[12]))
  done
  echo "$total"
}
# The PostgreSQL cluster's CPU: the postmaster's own and its reaped children's (backends that
# ended), plus every live child's (the servers' pooled connections).
postgres_ticks() {
  [ -n "$pg_data" ] || { echo 0; return; }
  local pm stat fields total child
  pm="$(head -n1 "$pg_data/postmaster.pid")"
  stat="$(cat "/proc/$pm/stat")"
  read -r -a fields <<<"${stat##*) }"
  total=$((fields[11] + fields[12] + fields[13] + fields[14]))
  for child in $(pgrep -P "$pm"); do
    stat="$(cat "/proc/$child/stat" 2>/dev/null)" || continue
    read -r -a fields <<<"${stat##*) }"
    total=$((total + fields[11] + fields[12]))
  done
  echo "$total"
}
# CPU ticks of this shell's waited-for children (the simulator runs), from `times`, into
# CHILD_TICKS (`times` must run in this shell, not in $(...)).
children_ticks() {
  times >"$work/times.txt"
  CHILD_TICKS="$(tail -n1 "$work/times.txt" | awk -v tck="$clk_tck" '{
    t = 0
    for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2] }
    printf "%.0f\n", t * tck
  }')"
}
# Worker-API requests the servers counted, by route and status, from /metrics scrapes (one
# file: every replica's scrape, one after the other).
worker_requests() { # METRICS-FILE -> "route status count" lines
  awk '/^update_server_http_requests_total\{/ && /route="\/api\/(worker-updates|workers)\// {
    match($0, /route="[^"]*"/); r = substr($0, RSTART + 7, RLENGTH - 8)
    match($0, /status="[^"]*"/); s = substr($0, RSTART + 8, RLENGTH - 9)
    n[r " " s] += $NF }
    END { for (k in n) print k, n[k] }' "$1"
}
# A metric's value summed over the replicas' scrapes.
metric_sum() { # METRICS-FILE NAME
  awk -v m="$2" '$1 == m { s += $NF } END { printf "%.0f\n", s }' "$1"
}
# SQL statements PostgreSQL executed in database $1 (pg_stat_statements).
sql_statements() {
  psql_bench postgres -c "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '$1'"
}
psql_bench() { # DB ARGS...
  local db="$1"
  shift
  "$pg_bin/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres -d "$db" "$@"
}

# A throwaway PostgreSQL cluster on 127.0.0.1, once for every postgres run; each run gets a
# fresh database. pg_stat_statements counts the statements the servers send.
start_postgres() {
  pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
  # Its own directory: the work directory is private to us (mktemp), the postgres user needs one.
  pg_dir="$(mktemp -d "${TMPDIR:-/tmp}/bench-fleet-postgres.XXXXXX")"
  local dir="$pg_dir"
  [ "$(id -u)" != 0 ] || chown postgres: "$dir"
  pg_data="$dir/data"
  as_postgres "$pg_bin/initdb" -A trust -U postgres -E UTF8 -D "$pg_data" >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  pg_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((20000 + RANDOM % 20000)))"
  as_postgres "$pg_bin/pg_ctl" -w -t 60 -D "$pg_data" -l "$dir/log" -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $dir -c max_connections=200 -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all" start >/dev/null ||
    { cat "$dir/log" >&2; die "PostgreSQL did not start"; }
  psql_bench postgres -c "CREATE EXTENSION pg_stat_statements" >/dev/null
}

# Every long-polling agent holds a connection: the default --max-connections (1024) would
# leave the rest of a large fleet waiting in the listen backlog.
max_connections=$((AGENTS + 1024))
server_pids=()
server_urls=()
server_url=""
database=""
start_server() { # DIR STORE
  local dir="$1" store="$2" count=1 i pid url
  local -a db_args=()
  mkdir -p "$dir"
  database=""
  if [ "$store" = postgres ]; then
    count="$REPLICAS"
    database="bench_$(basename "$dir" | tr -c 'a-z0-9\n' '_')"
    psql_bench postgres -c "CREATE DATABASE $database" >/dev/null
    db_args=(--database-url "postgres://postgres@127.0.0.1:$pg_port/$database")
  fi
  server_pids=()
  server_urls=()
  for i in $(seq "$count"); do
    # Replicas share the data directory: artifacts published through one are served by all.
    "$server_bin" serve --listen 127.0.0.1:0 --data-dir "$dir/server-data" --root "$work/root.json" \
      --channel-key "$work/keys/channel.key" --admin-token-file "$work/admin.tokens" \
      --worker-token-file "$work/worker.tokens" --drain-timeout 2s \
      --worker-rate-limit 1000000 --worker-rate-burst 100000 "${db_args[@]}" \
      --max-connections "$max_connections" \
      >"$dir/server-$i.stdout" 2>"$dir/server-$i.log" &
    pid=$!
    pids+=("$pid")
    server_pids+=("$pid")
    url=""
    for _ in $(seq 100); do
      url="$(sed -n 's/^update-server listening on //p' "$dir/server-$i.stdout")"
      [ -n "$url" ] && break
      kill -0 "$pid" 2>/dev/null || { cat "$dir/server-$i.log" >&2; die "update-server exited"; }
      sleep 0.1
    done
    [ -n "$url" ] || die "update-server did not print its address within 10 s"
    server_urls+=("$url")
  done
  server_url="$(IFS=,; echo "${server_urls[*]}")"
  # worker-release talks to the first replica; the others see its changes through the database.
  export UPDATE_SERVER_URL="${server_urls[0]}"
  for v in 1.0.0 2.0.0 3.0.0; do
    "$wr" publish "$work/release-$v.json" --artifact "$work/artifact-$v.bin" >/dev/null
  done
  "$wr" promote --channel stable --version 1.0.0 --percent 100 --override --reason "bench-fleet start" >/dev/null
  "$wr" promote --channel canary --version 1.0.0 >/dev/null
}
stop_servers() { # DIR
  local keep=() p q stopped
  for p in "${server_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${server_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    stopped=0
    for q in "${server_pids[@]}"; do [ "$p" != "$q" ] || stopped=1; done
    [ "$stopped" = 1 ] || keep+=("$p")
  done
  pids=("${keep[@]}")
  if [ -n "$database" ]; then
    # What the fleet's rows weigh (workers, reports, the rest), for the capacity note.
    psql_bench "$database" -c "SELECT pg_database_size(current_database()), pg_total_relation_size('workers'), (SELECT count(*) FROM workers), pg_total_relation_size('reports'), (SELECT count(*) FROM reports)" >"$1/db-size.txt" || true
    psql_bench postgres -c "DROP DATABASE $database" >/dev/null || true
  fi
}
scrape_all() { # OUT-FILE: every replica's /metrics, one after the other
  local url
  : >"$1"
  for url in "${server_urls[@]}"; do curl -sS "$url/metrics" >>"$1"; done
}

declare -A latency summary_file cpu_s db_cpu_s sim_cpu_s req_total req_latest req_artifact req_register req_report req_other
declare -A store_ops sql_ops polls run_store
runs=()
run_scenario() { # NAME STORE
  local name="$1" store="$2"
  local key="$name@$store"
  local dir="$work/$name-$store" mode promote version probation canary
  local -a sim_args until
  case "$name" in
    long-poll) mode=long canary=0 version=2.0.0 probation="$PROBATION_MS" ;;
    poll-30s) mode=poll canary=0 version=2.0.0 probation="$PROBATION_MS" ;;
    canary) mode=long canary="$CANARIES" version=3.0.0 probation="$FAIL_PROBATION_MS" ;;
    canary-poll-30s) mode=poll canary="$CANARIES" version=3.0.0 probation="$FAIL_PROBATION_MS" ;;
    plan) mode=long canary=0 version=2.0.0 probation="$PROBATION_MS" ;;
  esac
  local how="long polls" where="one update-server on SQLite"
  [ "$mode" = long ] || how="plain polls every ${POLL_INTERVAL} s + full jitter"
  [ "$store" = sqlite ] || where="$REPLICAS update-servers on one PostgreSQL"
  step "$key: $where, $AGENTS agents ($canary on canary), $how"
  start_server "$dir" "$store"
  if [ "$version" = 2.0.0 ]; then
    until=(--until-version 2.0.0)
    promote="$wr promote --channel stable --version 2.0.0 --percent 100 --override --reason bench-fleet"
    if [ "$name" = plan ]; then
      promote="$wr rollout plan --channel stable --version 2.0.0 --waves $PLAN_WAVES --override --reason bench-fleet"
    fi
  else
    until=(--until-halted canary --fail-version 3.0.0)
    promote="$wr promote --channel canary --version 3.0.0"
  fi
  # The stimulus: snapshot the servers' request counters and CPU time (and the database's),
  # then promote.
  local sql_before=""
  {
    echo '#!/bin/bash'
    echo 'set -e'
    declare -f scrape_all cpu_ticks postgres_ticks sql_statements psql_bench
    declare -p server_urls pg_data pg_bin pg_port
    echo "scrape_all '$dir/metrics.before'"
    echo "cpu_ticks ${server_pids[*]} >'$dir/ticks.before'"
    echo "postgres_ticks >'$dir/db-ticks.before'"
    if [ -n "$database" ]; then echo "sql_statements '$database' >'$dir/sql.before'"; fi
    echo "exec $promote >'$dir/promote.out'"
  } >"$dir/stimulus.sh"
  chmod +x "$dir/stimulus.sh"
  sim_args=(simulate --agents "$AGENTS" --canary "$canary" --update-server "$server_url"
    --token-file "$work/worker.token" --root "$work/root.json" --base-dir "$agents_base/$name-$store"
    --version 1.0.0 --seed "$name" --probation-ms "$probation" --on-ready "$dir/stimulus.sh"
    --timeout-secs "$RUN_TIMEOUT" "${until[@]}")
  if [ "$mode" = poll ]; then sim_args+=(--long-poll false --poll-interval-secs "$POLL_INTERVAL"); fi
  children_ticks
  local before_children="$CHILD_TICKS" sim_pid rc=0
  LOG_LEVEL=warn "$agent_bin" "${sim_args[@]}" >"$dir/simulate.jsonl" 2>"$dir/simulate.log" &
  sim_pid=$!
  pids+=("$sim_pid")
  wait "$sim_pid" || rc=$?
  local keep=() p
  for p in "${pids[@]}"; do [ "$p" = "$sim_pid" ] || keep+=("$p"); done
  pids=("${keep[@]}")
  local after_ticks after_db_ticks
  after_ticks="$(cpu_ticks "${server_pids[@]}")"
  after_db_ticks="$(postgres_ticks)"
  scrape_all "$dir/metrics.after"
  if [ -n "$database" ]; then sql_statements "$database" >"$dir/sql.after"; fi
  children_ticks
  local url i=0
  for url in "${server_urls[@]}"; do
    i=$((i + 1))
    UPDATE_SERVER_URL="$url" "$wr" status --json >"$dir/status-$i.json"
  done
  stop_servers "$dir"
  grep '"event":"summary"' "$dir/simulate.jsonl" >"$dir/summary.json" ||
    { tail -n 20 "$dir/simulate.log" >&2; die "$key: the simulator printed no summary (exit $rc)"; }
  [ "$rc" = 0 ] || printf 'bench-fleet: warning: %s: simulator exit %s (stop: %s)\n' "$key" "$rc" \
    "$(jq -r .stop "$dir/summary.json")" >&2
  [ -f "$dir/ticks.before" ] || die "$key: the stimulus did not run"
  runs+=("$key")
  run_store[$key]="$store"
  summary_file[$key]="$dir/summary.json"
  cpu_s[$key]="$(awk -v t="$((after_ticks - $(cat "$dir/ticks.before")))" -v k="$clk_tck" 'BEGIN { printf "%.2f", t / k }')"
  db_cpu_s[$key]="$(awk -v t="$((after_db_ticks - $(cat "$dir/db-ticks.before")))" -v k="$clk_tck" 'BEGIN { printf "%.2f", t / k }')"
  sim_cpu_s[$key]="$(awk -v t="$((CHILD_TICKS - before_children))" -v k="$clk_tck" 'BEGIN { printf "%.1f", t / k }')"
  # Requests during the window: per route, after - before.
  local delta
  delta="$(join -a1 -e0 -o 0,1.2,2.2 <(worker_requests "$dir/metrics.after" | awk '{ print $1 "|" $2, $3 }' | sort) \
    <(worker_requests "$dir/metrics.before" | awk '{ print $1 "|" $2, $3 }' | sort) |
    awk '{ print $1, $2 - $3 }')"
  printf '%s\n' "$delta" >"$dir/requests.txt"
  per() { awk -v re="$1" -v n="$AGENTS" '$1 ~ re { s += $2 } END { printf "%.2f", s / n }' "$dir/requests.txt"; }
  req_total[$key]="$(per .)"
  req_latest[$key]="$(per '^/api/worker-updates/latest')"
  req_artifact[$key]="$(per '^/api/worker-updates/artifacts')"
  req_register[$key]="$(per '^/api/workers/register')"
  req_report[$key]="$(per '^/api/worker-updates/report')"
  req_other[$key]="$(per '^/api/worker-updates/root')"
  polls[$key]="$(awk '$1 ~ /^\/api\/worker-updates\/latest/ { s += $2 } END { printf "%.0f", s }' "$dir/requests.txt")"
  local ops_name=update_server_store_operation_duration_seconds_count
  store_ops[$key]="$(($(metric_sum "$dir/metrics.after" "$ops_name") - $(metric_sum "$dir/metrics.before" "$ops_name")))"
  sql_ops[$key]="-"
  if [ -n "$database" ]; then sql_ops[$key]="$(($(cat "$dir/sql.after") - $(cat "$dir/sql.before")))"; fi
  # The servers' mean latency per route in the window (long polls excepted: they wait).
  local route
  for route in /api/workers/register /api/worker-updates/report '/api/worker-updates/artifacts/{sha256}'; do
    latency[$key|$route]="$(awk -v r="route=\"$route\"" '
      index($0, "update_server_http_request_duration_seconds_sum{" r "}") == 1 { s[FILENAME] += $NF }
      index($0, "update_server_http_request_duration_seconds_count{" r "}") == 1 { c[FILENAME] += $NF }
      END { n = c[ARGV[2]] - c[ARGV[1]]; if (n > 0) printf "%.0f", (s[ARGV[2]] - s[ARGV[1]]) / n * 1000; else print "-" }' \
      "$dir/metrics.before" "$dir/metrics.after")"
  done
  # The server's own view of the failing release (canary scenarios): any replica's.
  if [ "$version" = 3.0.0 ]; then
    jq -r '.channels[] | select(.channel == "canary") | .halt_reason' "$dir/status-1.json" >"$dir/halt_reason.txt"
    jq -s '[.[] | [.fleet[] | select(.channel != "canary" and .version == "3.0.0") | .workers] | add // 0] | max' \
      "$dir"/status-*.json >"$dir/stable_on_bad.txt"
  fi
}

[ "$with_postgres" = 0 ] || { step "a throwaway PostgreSQL cluster on 127.0.0.1"; start_postgres; }
for s in $SCENARIOS; do
  for store in $STORES; do run_scenario "$s" "$store"; done
done

# ---------------------------------------------------------------------------------------------
secs() { awk -v m="$1" 'BEGIN { if (m == "" || m == "null") print "-"; else printf "%.2f s", m / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "null" || b == "null" || a == "-" || b == "-" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
q() { jq -r "$2" "${summary_file[$1]}"; }
dirof() { echo "$work/${1%@*}-${1#*@}"; }
pg_version=""
[ "$with_postgres" = 0 ] || pg_version="; $("$pg_bin/postgres" --version) ($REPLICAS replicas, fsync on)"

cat <<EOF

fleet convergence, $AGENTS simulated agents (worker-agent simulate) against update-server on 127.0.0.1
$(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)), kernel $(uname -r), load average before: $(cut -d' ' -f1-3 /proc/loadavg)
$("$server_bin" --version)$pg_version; the simulator, the servers and the database share the $(nproc) cores.
agents' state in $AGENTS_DIR, server data in ${TMPDIR:-/tmp}; artifacts ${ARTIFACT_KIB} KiB; probation of 2.0.0: ${PROBATION_MS} ms, of 3.0.0: dies within ${FAIL_PROBATION_MS} ms.
EOF

conv=()
for k in "${runs[@]}"; do case "${k%@*}" in long-poll | poll-30s | plan) conv+=("$k") ;; esac; done
if [ ${#conv[@]} -gt 0 ]; then
  printf '\n(a) time from "promote 2.0.0 to stable at 100%%" (plan: "rollout plan --waves %s") to N %% of the agents committed on 2.0.0\n' "$PLAN_WAVES"
  printf '    (every promote: a first wave of %s named workers, then the rest within --max-in-flight 20%%)\n' "$FIRST_WAVE"
  printf '    (b) server CPU and worker-API requests per agent from the promote to the end of the run\n\n'
  printf '%-21s %9s %9s %9s %9s %11s %9s %8s  %s\n' run 50% 90% 99% 100% "staged 99%" srv-CPU req/agt \
    "latest/artifact/register/report, sim-CPU"
  for k in "${conv[@]}"; do
    printf '%-21s %9s %9s %9s %9s %11s %8ss %8s  %s/%s/%s/%s, %ss\n' "$k" \
      "$(secs "$(q "$k" .committed.p50_ms)")" "$(secs "$(q "$k" .committed.p90_ms)")" \
      "$(secs "$(q "$k" .committed.p99_ms)")" "$(secs "$(q "$k" .committed.p100_ms)")" \
      "$(secs "$(q "$k" .staged.p99_ms)")" "${cpu_s[$k]}" "${req_total[$k]}" \
      "${req_latest[$k]}" "${req_artifact[$k]}" "${req_register[$k]}" "${req_report[$k]}" "${sim_cpu_s[$k]}"
  done
  for store in $STORES; do
    if [[ " ${conv[*]} " == *" poll-30s@$store "* && " ${conv[*]} " == *" long-poll@$store "* ]]; then
      printf '\n%s: poll-30s / long-poll: time to 99 %% %s, server CPU %s, requests per agent %s' "$store" \
        "$(ratio "$(q "poll-30s@$store" .committed.p99_ms)" "$(q "long-poll@$store" .committed.p99_ms)")" \
        "$(ratio "${cpu_s[poll-30s@$store]}" "${cpu_s[long-poll@$store]}")" \
        "$(ratio "${req_total[poll-30s@$store]}" "${req_total[long-poll@$store]}")"
    fi
  done
  printf '\n'
  for k in "${conv[@]}"; do
    printf '%s: stop %s, %s of %s agents on 2.0.0, check failures %s, startup (register + first poll of all agents) %s\n' "$k" \
      "$(q "$k" .stop)" "$(q "$k" '.versions["2.0.0"] // 0')" "$AGENTS" "$(q "$k" .totals.check_failures)" \
      "$(secs "$(jq -r .startup_ms <(grep '"event":"ready"' "$(dirof "$k")/simulate.jsonl"))")"
    printf '%s: server mean latency in the window: register %s ms, report %s ms, artifact %s ms\n' "$k" \
      "${latency[$k|/api/workers/register]}" "${latency[$k|/api/worker-updates/report]}" \
      "${latency[$k|/api/worker-updates/artifacts/{sha256}]}"
  done
fi

# The store's share: CPU and database work per agent and per poll, every run.
printf '\n(d) what each run cost the servers and the database, from the promote to the end\n\n'
printf '%-21s %9s %9s %12s %12s %9s %11s %11s %9s\n' run servers srv-CPU "srv ms/agt" "db ms/agt" db-CPU "polls" "db ops/poll" "SQL/poll"
for k in "${runs[@]}"; do
  n=1
  [ "${run_store[$k]}" = sqlite ] || n="$REPLICAS"
  printf '%-21s %9s %8ss %12s %12s %8ss %11s %11s %9s\n' "$k" "$n" "${cpu_s[$k]}" \
    "$(awk -v c="${cpu_s[$k]}" -v a="$AGENTS" 'BEGIN { printf "%.2f", c * 1000 / a }')" \
    "$(awk -v c="${db_cpu_s[$k]}" -v a="$AGENTS" -v s="${run_store[$k]}" 'BEGIN { if (s == "sqlite") print "(in srv)"; else printf "%.2f", c * 1000 / a }')" \
    "$([ "${run_store[$k]}" = sqlite ] && echo "-" || echo "${db_cpu_s[$k]}")" "${polls[$k]}" \
    "$(awk -v o="${store_ops[$k]}" -v p="${polls[$k]}" 'BEGIN { if (p > 0) printf "%.3f", o / p; else print "-" }')" \
    "$(awk -v o="${sql_ops[$k]}" -v p="${polls[$k]}" 'BEGIN { if (o == "-" || p == 0) print "-"; else printf "%.3f", o / p }')"
done
for k in "${runs[@]}"; do
  f="$(dirof "$k")/db-size.txt"
  [ -s "$f" ] || continue
  IFS='|' read -r db_bytes w_bytes w_rows r_bytes r_rows <"$f"
  printf '%s: database %s MiB; workers %s rows, %s bytes/row with indexes; reports %s rows, %s bytes/row\n' "$k" \
    "$(awk -v b="$db_bytes" 'BEGIN { printf "%.1f", b / 1048576 }')" "$w_rows" \
    "$(awk -v b="$w_bytes" -v n="$w_rows" 'BEGIN { if (n > 0) printf "%.0f", b / n; else print "-" }')" "$r_rows" \
    "$(awk -v b="$r_bytes" -v n="$r_rows" 'BEGIN { if (n > 0) printf "%.0f", b / n; else print "-" }')"
done
if [[ " $STORES " == *" sqlite "* && " $STORES " == *" postgres "* ]]; then
  printf '\npostgres (%s replicas) / sqlite, per scenario: time to 99 %%, servers + database CPU, requests per agent\n' "$REPLICAS"
  for s in $SCENARIOS; do
    [ -n "${summary_file[$s@sqlite]:-}" ] && [ -n "${summary_file[$s@postgres]:-}" ] || continue
    printf '  %-16s %6s %6s %6s\n' "$s" \
      "$(ratio "$(q "$s@postgres" .committed.p99_ms)" "$(q "$s@sqlite" .committed.p99_ms)")" \
      "$(ratio "$(awk -v a="${cpu_s[$s@postgres]}" -v b="${db_cpu_s[$s@postgres]}" 'BEGIN { print a + b }')" "${cpu_s[$s@sqlite]}")" \
      "$(ratio "${req_total[$s@postgres]}" "${req_total[$s@sqlite]}")"
  done
fi

canaries=()
for k in "${runs[@]}"; do case "${k%@*}" in canary | canary-poll-30s) canaries+=("$k") ;; esac; done
violations=0
if [ ${#canaries[@]} -gt 0 ]; then
  printf '\n(c) "promote 3.0.0 to canary at 100%%", 3.0.0 fails probation; %s canaries, %s stable agents\n\n' \
    "$CANARIES" "$((AGENTS - CANARIES))"
  printf '%-25s %10s %9s %10s %8s %9s %10s %9s %8s  %s\n' run "halt seen" "got it" "before" after \
    "rolled bk" spared "stable" srv-CPU "server's halt reason"
  for k in "${canaries[@]}"; do
    stable_sim="$(q "$k" '[.by_channel | to_entries[] | select(.key != "canary") | .value.attempted["3.0.0"] // 0] | add // 0')"
    stable_srv="$(cat "$(dirof "$k")/stable_on_bad.txt")"
    stable=$((stable_sim + stable_srv))
    [ "$stable" = 0 ] || violations=$((violations + 1))
    got="$(q "$k" '.by_channel.canary.attempted["3.0.0"] // 0')"
    [ "$got" -le "$FIRST_WAVE" ] || { printf 'bench-fleet: %s: %s canaries got the failing release (first wave: %s)\n' "$k" "$got" "$FIRST_WAVE" >&2; violations=$((violations + 1)); }
    printf '%-25s %10s %9s %10s %8s %9s %10s %9s %8ss  %s\n' "$k" "$(secs "$(q "$k" .halt.first_seen_ms)")" \
      "$got" "$(q "$k" .halt.attempts_started_before_halt)" "$(q "$k" .halt.attempts_started_after_halt)" \
      "$(q "$k" '.by_channel.canary.rolled_back["3.0.0"] // 0')" "$(q "$k" .halt.spared)" \
      "$stable" "${cpu_s[$k]}" "$(sed 's/ (thresholds.*//' "$(dirof "$k")/halt_reason.txt")"
  done
  cat <<EOF

halt seen: when the first canary accepted the halted statement, after the promote. got it: canaries
that started downloading 3.0.0; before/after: of those, started before/after the halt was seen.
rolled bk: canaries whose probation of 3.0.0 failed and that reported rolled_back. spared: canaries
that never tried 3.0.0. stable: stable agents that tried 3.0.0 (simulator) plus stable workers the
server counts on 3.0.0 (status): must be 0.
EOF
fi
cat <<EOF

staged: the agent verified and staged the download (before probation). srv-CPU: the servers'
user + system CPU (every replica) from just before the promote to the end of the run
(/proc/<pid>/stat). db-CPU: PostgreSQL's (postmaster, its backends and those that ended);
SQLite runs inside the server. req/agt: worker-API requests the servers counted
(update_server_http_requests_total) in that window, per agent. polls: /latest requests in the
window; db ops/poll: store operations (update_server_store_operation_duration_seconds_count,
one database transaction each, every route) per poll; SQL/poll: statements PostgreSQL ran in
the database (pg_stat_statements) per poll. sim-CPU: the simulator's own CPU for the whole
run (start-up included).
EOF
[ "$violations" = 0 ] || die "the failing canary release went past the first wave or reached a stable agent"
