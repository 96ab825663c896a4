#!/usr/bin/env bash
# Benchmark (not a test): how fast a fleet converges on a release, and what that costs the
# update server. AGENTS simulated agents (`worker-agent simulate`: the real update code path,
# real HTTP, real verification, only the process swap replaced) against a real update-server
# on 127.0.0.1 with its embedded SQLite store. Four scenarios, each on a fresh server:
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
# (b) the server's CPU seconds and requests per agent from the promote to the end, (c) for the
# failing release: canaries that got it before the auto-halt, those spared, and stable agents
# that received it (must be 0: the script fails otherwise), with ratios polling / long poll.
#
#   scripts/bench-fleet.sh                     # ~4 minutes once built
#   AGENTS=200 scripts/bench-fleet.sh          # smaller fleet
#   SCENARIOS="long-poll canary" scripts/bench-fleet.sh
#   KEEP=1 scripts/bench-fleet.sh              # keep the work directory (JSON lines, logs)
#
# Environment (defaults): AGENTS=1000, CANARIES=50, POLL_INTERVAL=30, PROBATION_MS=1000 (the
# simulated probation of 2.0.0), FAIL_PROBATION_MS=30000 (3.0.0 dies at a random moment within
# it; 30 s is the agent's default --probation-secs), ARTIFACT_KIB=64, RUN_TIMEOUT=300 (seconds,
# per scenario; the simulator stops by itself), KEEP=0. The agents' state directories go to
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
PLAN_WAVES="${PLAN_WAVES:-5,10%@10s,50%@10s,100%}"
FIRST_WAVE=5
KEEP="${KEEP:-0}"
if [ -z "${AGENTS_DIR:-}" ]; then
  if [ -d /dev/shm ] && [ -w /dev/shm ]; then AGENTS_DIR=/dev/shm; else AGENTS_DIR="${TMPDIR:-/tmp}"; fi
fi

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'bench-fleet: %s\n' "$*" >&2; exit 1; }
for n in AGENTS CANARIES POLL_INTERVAL PROBATION_MS FAIL_PROBATION_MS ARTIFACT_KIB RUN_TIMEOUT; do
  [[ "${!n}" =~ ^[0-9]+$ ]] || die "$n=${!n}: expected a whole number"
done
[ "$AGENTS" -ge 1 ] || die "AGENTS must be at least 1"
[ "$CANARIES" -lt "$AGENTS" ] || die "CANARIES must be below AGENTS"
for s in $SCENARIOS; do
  case "$s" in long-poll | poll-30s | canary | canary-poll-30s | plan) ;; *) die "unknown scenario $s" ;; esac
done

need_pkgs=()
command -v curl >/dev/null || need_pkgs+=(curl)
command -v jq >/dev/null || need_pkgs+=(jq)
command -v openssl >/dev/null || need_pkgs+=(openssl)
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

# Each agent holds a connection or two; the server as many. Raise the soft limit for both.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((AGENTS * 3 + 256)) ] ||
  printf 'bench-fleet: warning: ulimit -n is %s, low for %s agents\n' "$(ulimit -n)" "$AGENTS" >&2

# ---------------------------------------------------------------------------------------------
# Work directories and cleanup: every process started here is stopped on exit.
work="$(mktemp -d "${TMPDIR:-/tmp}/bench-fleet.XXXXXX")"
agents_base="$(mktemp -d "$AGENTS_DIR/bench-fleet-agents.XXXXXX")"
pids=()
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
cpu_ticks() { # PID -> user + system ticks
  local stat fields
  stat="$(cat "/proc/$1/stat")"
  read -r -a fields <<<"${stat##*) }"
  echo $((fields[11] + fields[12]))
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
# Worker-API requests the server counted, by route and status, from a /metrics scrape.
worker_requests() { # METRICS-FILE -> "route status count" lines
  awk '/^update_server_http_requests_total\{/ && /route="\/api\/(worker-updates|workers)\// {
    match($0, /route="[^"]*"/); r = substr($0, RSTART + 7, RLENGTH - 8)
    match($0, /status="[^"]*"/); s = substr($0, RSTART + 8, RLENGTH - 9)
    print r, s, $NF }' "$1"
}

server_pid=""
server_url=""
start_server() { # DIR
  local dir="$1"
  mkdir -p "$dir"
  "$server_bin" serve --listen 127.0.0.1:0 --data-dir "$dir/server-data" --root "$work/root.json" \
    --channel-key "$work/keys/channel.key" --admin-token-file "$work/admin.tokens" \
    --worker-token-file "$work/worker.tokens" --drain-timeout 2s \
    --worker-rate-limit 1000000 --worker-rate-burst 100000 \
    >"$dir/server.stdout" 2>"$dir/server.log" &
  server_pid=$!
  pids+=("$server_pid")
  server_url=""
  for _ in $(seq 100); do
    server_url="$(sed -n 's/^update-server listening on //p' "$dir/server.stdout")"
    [ -n "$server_url" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$dir/server.log" >&2; die "update-server exited"; }
    sleep 0.1
  done
  [ -n "$server_url" ] || die "update-server did not print its address within 10 s"
  export UPDATE_SERVER_URL="$server_url"
  for v in 1.0.0 2.0.0 3.0.0; do
    "$wr" publish "$work/release-$v.json" --artifact "$work/artifact-$v.bin" >/dev/null
  done
  "$wr" promote --channel stable --version 1.0.0 --percent 100 --override --reason "bench-fleet start" >/dev/null
  "$wr" promote --channel canary --version 1.0.0 >/dev/null
}
stop_server() {
  local pid="$server_pid" keep=() p
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${pids[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}

declare -A latency summary_file cpu_s sim_cpu_s req_total req_latest req_artifact req_register req_report req_other
run_scenario() { # NAME
  local name="$1"
  local dir="$work/$name" mode promote version probation canary
  local -a sim_args until
  case "$name" in
    long-poll) mode=long canary=0 version=2.0.0 probation="$PROBATION_MS" ;;
    poll-30s) mode=poll canary=0 version=2.0.0 probation="$PROBATION_MS" ;;
    canary) mode=long canary="$CANARIES" version=3.0.0 probation="$FAIL_PROBATION_MS" ;;
    canary-poll-30s) mode=poll canary="$CANARIES" version=3.0.0 probation="$FAIL_PROBATION_MS" ;;
    plan) mode=long canary=0 version=2.0.0 probation="$PROBATION_MS" ;;
  esac
  local how="long polls"
  [ "$mode" = long ] || how="plain polls every ${POLL_INTERVAL} s + full jitter"
  step "$name: fresh update-server, $AGENTS agents ($canary on canary), $how"
  start_server "$dir"
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
  # The stimulus: snapshot the server's request counters and CPU time, then promote.
  cat >"$dir/stimulus.sh" <<EOF
#!/bin/sh
set -e
curl -sS "$server_url/metrics" >"$dir/metrics.before"
cat /proc/$server_pid/stat >"$dir/stat.before"
exec $promote >"$dir/promote.out"
EOF
  chmod +x "$dir/stimulus.sh"
  sim_args=(simulate --agents "$AGENTS" --canary "$canary" --update-server "$server_url"
    --token-file "$work/worker.token" --root "$work/root.json" --base-dir "$agents_base/$name"
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
  local after_ticks
  after_ticks="$(cpu_ticks "$server_pid")"
  curl -sS "$server_url/metrics" >"$dir/metrics.after"
  children_ticks
  "$wr" status --json >"$dir/status.json"
  stop_server
  grep '"event":"summary"' "$dir/simulate.jsonl" >"$dir/summary.json" ||
    { tail -n 20 "$dir/simulate.log" >&2; die "$name: the simulator printed no summary (exit $rc)"; }
  [ "$rc" = 0 ] || printf 'bench-fleet: warning: %s: simulator exit %s (stop: %s)\n' "$name" "$rc" \
    "$(jq -r .stop "$dir/summary.json")" >&2
  [ -f "$dir/stat.before" ] || die "$name: the stimulus did not run"
  summary_file[$name]="$dir/summary.json"
  local before_ticks stat fields
  stat="$(cat "$dir/stat.before")"
  read -r -a fields <<<"${stat##*) }"
  before_ticks=$((fields[11] + fields[12]))
  cpu_s[$name]="$(awk -v t="$((after_ticks - before_ticks))" -v k="$clk_tck" 'BEGIN { printf "%.2f", t / k }')"
  sim_cpu_s[$name]="$(awk -v t="$((CHILD_TICKS - before_children))" -v k="$clk_tck" 'BEGIN { printf "%.1f", t / k }')"
  # Requests during the window: per route, after - before.
  local delta
  delta="$(join -a1 -e0 -o 0,1.2,2.2 <(worker_requests "$dir/metrics.after" | awk '{ print $1 "|" $2, $3 }' | sort) \
    <(worker_requests "$dir/metrics.before" | awk '{ print $1 "|" $2, $3 }' | sort) |
    awk '{ print $1, $2 - $3 }')"
  printf '%s\n' "$delta" >"$dir/requests.txt"
  per() { awk -v re="$1" -v n="$AGENTS" '$1 ~ re { s += $2 } END { printf "%.2f", s / n }' "$dir/requests.txt"; }
  req_total[$name]="$(per .)"
  req_latest[$name]="$(per '^/api/worker-updates/latest')"
  req_artifact[$name]="$(per '^/api/worker-updates/artifacts')"
  req_register[$name]="$(per '^/api/workers/register')"
  req_report[$name]="$(per '^/api/worker-updates/report')"
  req_other[$name]="$(per '^/api/worker-updates/root')"
  # The server's mean latency per route in the window (long polls excepted: they wait).
  local route
  for route in /api/workers/register /api/worker-updates/report '/api/worker-updates/artifacts/{sha256}'; do
    latency[$name|$route]="$(awk -v r="route=\"$route\"" '
      index($0, "update_server_http_request_duration_seconds_sum{" r "}") == 1 { s[FILENAME] = $NF }
      index($0, "update_server_http_request_duration_seconds_count{" r "}") == 1 { c[FILENAME] = $NF }
      END { n = c[ARGV[2]] - c[ARGV[1]]; if (n > 0) printf "%.0f", (s[ARGV[2]] - s[ARGV[1]]) / n * 1000; else print "-" }' \
      "$dir/metrics.before" "$dir/metrics.after")"
  done
  # The server's own view of the failing release (canary scenarios).
  if [ "$version" = 3.0.0 ]; then
    jq -r '.channels[] | select(.channel == "canary") | .halt_reason' "$dir/status.json" >"$dir/halt_reason.txt"
    jq '[.fleet[] | select(.channel != "canary" and .version == "3.0.0") | .workers] | add // 0' \
      "$dir/status.json" >"$dir/stable_on_bad.txt"
  fi
}

for s in $SCENARIOS; do run_scenario "$s"; done

# ---------------------------------------------------------------------------------------------
secs() { awk -v m="$1" 'BEGIN { if (m == "" || m == "null") print "-"; else printf "%.2f s", m / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "null" || b == "null" || b + 0 == 0) print "n/a"; else printf "%.1f", a / b }'; }
q() { jq -r "$2" "${summary_file[$1]}"; }

cat <<EOF

fleet convergence, $AGENTS simulated agents (worker-agent simulate) against update-server on 127.0.0.1
$(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)), kernel $(uname -r), load average before: $(cut -d' ' -f1-3 /proc/loadavg)
$("$server_bin" --version); the simulator and the server share the $(nproc) cores.
agents' state in $AGENTS_DIR, server data in ${TMPDIR:-/tmp}; artifacts ${ARTIFACT_KIB} KiB; probation of 2.0.0: ${PROBATION_MS} ms, of 3.0.0: dies within ${FAIL_PROBATION_MS} ms.
EOF

conv=()
for s in long-poll poll-30s plan; do [[ " $SCENARIOS " == *" $s "* ]] && conv+=("$s"); done
if [ ${#conv[@]} -gt 0 ]; then
  printf '\n(a) time from "promote 2.0.0 to stable at 100%%" (plan: "rollout plan --waves %s") to N %% of the agents committed on 2.0.0\n' "$PLAN_WAVES"
  printf '    (every promote: a first wave of %s named workers, then the rest within --max-in-flight 20%%)\n' "$FIRST_WAVE"
  printf '    (b) server CPU and worker-API requests per agent from the promote to the end of the run\n\n'
  printf '%-12s %9s %9s %9s %9s %11s %9s %8s  %s\n' scenario 50% 90% 99% 100% "staged 99%" srv-CPU req/agt \
    "latest/artifact/register/report, sim-CPU"
  for s in "${conv[@]}"; do
    printf '%-12s %9s %9s %9s %9s %11s %8ss %8s  %s/%s/%s/%s, %ss\n' "$s" \
      "$(secs "$(q "$s" .committed.p50_ms)")" "$(secs "$(q "$s" .committed.p90_ms)")" \
      "$(secs "$(q "$s" .committed.p99_ms)")" "$(secs "$(q "$s" .committed.p100_ms)")" \
      "$(secs "$(q "$s" .staged.p99_ms)")" "${cpu_s[$s]}" "${req_total[$s]}" \
      "${req_latest[$s]}" "${req_artifact[$s]}" "${req_register[$s]}" "${req_report[$s]}" "${sim_cpu_s[$s]}"
  done
  if [[ " ${conv[*]} " == *" poll-30s "* && " ${conv[*]} " == *" long-poll "* ]]; then
    printf '\npoll-30s / long-poll: time to 99 %% %s, server CPU %s, requests per agent %s\n' \
      "$(ratio "$(q poll-30s .committed.p99_ms)" "$(q long-poll .committed.p99_ms)")" \
      "$(ratio "${cpu_s[poll-30s]}" "${cpu_s[long-poll]}")" \
      "$(ratio "${req_total[poll-30s]}" "${req_total[long-poll]}")"
  fi
  for s in "${conv[@]}"; do
    printf '%s: stop %s, %s of %s agents on 2.0.0, check failures %s, startup (register + first poll of all agents) %s\n' "$s" \
      "$(q "$s" .stop)" "$(q "$s" '.versions["2.0.0"] // 0')" "$AGENTS" "$(q "$s" .totals.check_failures)" \
      "$(secs "$(jq -r .startup_ms <(grep '"event":"ready"' "$work/$s/simulate.jsonl"))")"
    printf '%s: server mean latency in the window: register %s ms, report %s ms, artifact %s ms\n' "$s" \
      "${latency[$s|/api/workers/register]}" "${latency[$s|/api/worker-updates/report]}" \
      "${latency[$s|/api/worker-updates/artifacts/{sha256}]}"
  done
fi

canaries=()
for s in canary canary-poll-30s; do [[ " $SCENARIOS " == *" $s "* ]] && canaries+=("$s"); done
violations=0
if [ ${#canaries[@]} -gt 0 ]; then
  printf '\n(c) "promote 3.0.0 to canary at 100%%", 3.0.0 fails probation; %s canaries, %s stable agents\n\n' \
    "$CANARIES" "$((AGENTS - CANARIES))"
  printf '%-16s %10s %9s %10s %8s %9s %10s %9s %8s  %s\n' scenario "halt seen" "got it" "before" after \
    "rolled bk" spared "stable" srv-CPU "server's halt reason"
  for s in "${canaries[@]}"; do
    stable_sim="$(q "$s" '[.by_channel | to_entries[] | select(.key != "canary") | .value.attempted["3.0.0"] // 0] | add // 0')"
    stable_srv="$(cat "$work/$s/stable_on_bad.txt")"
    stable=$((stable_sim + stable_srv))
    [ "$stable" = 0 ] || violations=$((violations + 1))
    got="$(q "$s" '.by_channel.canary.attempted["3.0.0"] // 0')"
    [ "$got" -le "$FIRST_WAVE" ] || { printf 'bench-fleet: %s: %s canaries got the failing release (first wave: %s)\n' "$s" "$got" "$FIRST_WAVE" >&2; violations=$((violations + 1)); }
    printf '%-16s %10s %9s %10s %8s %9s %10s %9s %8ss  %s\n' "$s" "$(secs "$(q "$s" .halt.first_seen_ms)")" \
      "$(q "$s" '.by_channel.canary.attempted["3.0.0"] // 0')" \
      "$(q "$s" .halt.attempts_started_before_halt)" "$(q "$s" .halt.attempts_started_after_halt)" \
      "$(q "$s" '.by_channel.canary.rolled_back["3.0.0"] // 0')" "$(q "$s" .halt.spared)" \
      "$stable" "${cpu_s[$s]}" "$(sed 's/ (thresholds.*//' "$work/$s/halt_reason.txt")"
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

staged: the agent verified and staged the download (before probation). srv-CPU: the server's
user + system CPU from just before the promote to the end of the run (/proc/<pid>/stat). req/agt:
worker-API requests the server counted (update_server_http_requests_total) in that window, per agent. sim-CPU:
the simulator's own CPU for the whole run (start-up included).
EOF
[ "$violations" = 0 ] || die "the failing canary release went past the first wave or reached a stable agent"
