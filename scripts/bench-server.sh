#!/usr/bin/env bash
# Benchmark (not a test): how fast update-server answers the fleet's poll, GET
# /api/worker-updates/latest, next to nginx serving a static file of the same size. Four wrk runs
# on 127.0.0.1, one after the other, in one invocation:
#   update-server 304  /latest with If-None-Match: <its ETag> (what a polling agent sends)
#   update-server 200  /latest without If-None-Match (full signed JSON body)
#   nginx 304          the same bytes as a static file, If-None-Match: <nginx's ETag>
#   nginx 200          the static file
# and prints req/s, latency percentiles, the servers' CPU time, and the update-server/nginx ratios.
# wrk and both servers share the machine's cores: read the figures as relative, not as capacity.
#
#   scripts/bench-server.sh                    # ~1 minute
#   DURATION=30s scripts/bench-server.sh       # longer runs
#   KEEP=1 scripts/bench-server.sh             # keep the work directory (logs, configs, wrk output)
#
# Environment (defaults): DURATION=10s per case, WARMUP=1s per case before measuring (0: none),
# THREADS=2 and CONNECTIONS=64 (wrk -t/-c), PROBE=2s per case for a last single-connection round
# (wrk -t1 -c1: latency without queueing; 0: skip it), NGINX_WORKERS=auto (one per core, like
# update-server's tokio runtime, which starts one worker thread per core), KEEP=0.
#
# Installs wrk and nginx (Debian packages) when missing; builds the release binaries.
set -euo pipefail
root_dir="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root_dir"

DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-1s}"
PROBE="${PROBE:-2s}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
NGINX_WORKERS="${NGINX_WORKERS:-auto}"
KEEP="${KEEP:-0}"
PLATFORM="x86_64-unknown-linux-gnu"
QUERY="channel=stable&platform=$PLATFORM&current_version=1.0.0&worker_id=bench"
LATEST_PATH="/api/worker-updates/latest"

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'bench-server: %s\n' "$*" >&2; exit 1; }

# "10s", "2m", "10" -> seconds.
seconds() {
  case "$1" in
    *ms) echo 0 ;;
    *s) echo "${1%s}" ;;
    *m) echo $((${1%m} * 60)) ;;
    *h) echo $((${1%h} * 3600)) ;;
    *) echo "$1" ;;
  esac
}
[[ "$(seconds "$DURATION")" =~ ^[1-9][0-9]*$ ]] || die "DURATION=$DURATION: expected e.g. 10s, 1m"
[[ "$(seconds "$WARMUP")" =~ ^[0-9]+$ ]] || die "WARMUP=$WARMUP: expected e.g. 1s or 0"
[[ "$(seconds "$PROBE")" =~ ^[0-9]+$ ]] || die "PROBE=$PROBE: expected e.g. 2s or 0"

# ---------------------------------------------------------------------------------------------
# Tools.
need_pkgs=()
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_pkgs+=(nginx)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v jq >/dev/null || need_pkgs+=(jq)
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v pgrep >/dev/null || need_pkgs+=(procps)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  step "installing ${need_pkgs[*]}"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    # Note: on a machine with a service manager (and no policy-rc.d), Debian's nginx package
    # starts the system nginx on port 80; this script never uses or touches that one.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    die "missing packages: ${need_pkgs[*]} (run: sudo apt-get install ${need_pkgs[*]})"
  fi
fi
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"

step "building update-server and worker-release (release profile)"
cargo build --release --quiet -p update-server -p worker-release
bin="$root_dir/target/release"
wr="$bin/worker-release"
server_bin="$bin/update-server"

# ---------------------------------------------------------------------------------------------
# Work directory and cleanup: every process started here is recorded and stopped on exit.
work="$(mktemp -d "${TMPDIR:-/tmp}/bench-server.XXXXXX")"
pids=()
forget() { # PID: it was waited for, never signal it (its number may be reused)
  local p
  local -a keep=()
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
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

# ---------------------------------------------------------------------------------------------
step "keys, root, a signed release of a 4 KiB artifact (in $work)"
cd "$work"
for name in root release channel; do "$wr" keygen --out keys --name "$name" >/dev/null; done
"$wr" init-root --root-key keys/root.pub --release-key keys/release.pub \
  --channel-key keys/channel.pub --key keys/root.key --out root.json >/dev/null
head -c 4096 /dev/urandom >artifact.bin
"$wr" sign-release --version 1.1.0 --notes "bench release" --artifact "$PLATFORM=artifact.bin" \
  --key keys/release.key --out release.json >/dev/null
admin_token="$(openssl rand -hex 24)"
worker_token="$(openssl rand -hex 24)"
printf 'bench-admin=%s\n' "$admin_token" >admin.tokens
printf 'bench-fleet=%s\n' "$worker_token" >worker.tokens
chmod 600 admin.tokens worker.tokens

step "starting update-server"
# Logs (JSON, level info: no line per request) go to a file, as under a service manager.
"$server_bin" serve --listen 127.0.0.1:0 --data-dir "$work/server-data" --root root.json \
  --channel-key keys/channel.key --admin-token-file admin.tokens \
  --worker-token-file worker.tokens --drain-timeout 2s \
  >server.stdout 2>server.log &
server_pid=$!
pids+=("$server_pid")
server_url=""
for _ in $(seq 100); do
  server_url="$(sed -n 's/^update-server listening on //p' server.stdout)"
  [ -n "$server_url" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat server.log >&2; die "update-server exited"; }
  sleep 0.1
done
[ -n "$server_url" ] || die "update-server did not print its address within 10 s"

admin() { # METHOD PATH [curl args...]
  local method="$1" path="$2"
  shift 2
  curl -sS --fail-with-body -X "$method" -H "Authorization: Bearer $admin_token" "$@" \
    "$server_url$path"
  echo
}
step "publishing release 1.1.0, uploading its artifact, promoting it to stable"
admin POST /api/admin/releases -H 'Content-Type: application/json' --data-binary @release.json >/dev/null
sha="$(sha256sum artifact.bin | cut -d' ' -f1)"
admin PUT "/api/admin/artifacts/$sha" --data-binary @artifact.bin >/dev/null
admin POST /api/admin/channels/stable/promote -H 'Content-Type: application/json' \
  -d '{"version":"1.1.0","percent":100,"override":true,"reason":"bench"}' >/dev/null

# header FILE NAME -> the header's value.
header() { sed -n "s/^$2: *//Ip" "$1" | tr -d '\r' | head -n1; }
status_of() { head -n1 "$1" | cut -d' ' -f2; }

latest_url="$server_url$LATEST_PATH?$QUERY"
auth_header="Authorization: Bearer $worker_token"
curl -sS -D latest.headers -o latest.json -H "$auth_header" "$latest_url"
[ "$(status_of latest.headers)" = 200 ] || die "/latest answered $(status_of latest.headers)"
jq -e '.channel != null and .release != null' latest.json >/dev/null ||
  die "/latest does not carry the channel and release: $(cat latest.json)"
server_etag="$(header latest.headers etag)"
body_size="$(stat -c %s latest.json)"
[ -n "$server_etag" ] || die "/latest has no ETag"
curl -sS -D latest304.headers -o /dev/null -H "$auth_header" -H "If-None-Match: $server_etag" "$latest_url"
[ "$(status_of latest304.headers)" = 304 ] || die "/latest with If-None-Match answered $(status_of latest304.headers)"

# ---------------------------------------------------------------------------------------------
step "starting nginx (worker_processes $NGINX_WORKERS) serving the same $body_size bytes"
mkdir -p nginx/html/api/worker-updates nginx/tmp
# The very body update-server sends, at the same path, so request and response sizes match.
cp latest.json nginx/html/api/worker-updates/latest
nginx_conf="$work/nginx/nginx.conf"
nginx_user=""
# Workers would drop to "nobody", who cannot read the private (0700) work directory.
[ "$(id -u)" = 0 ] && nginx_user="user root;"
nginx_port=""
nginx_pid=""
for _ in 1 2 3 4 5; do
  port=$((20000 + RANDOM % 40000))
  cat >"$nginx_conf" <<EOF
$nginx_user
daemon off;
master_process on;
worker_processes $NGINX_WORKERS;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/tmp/body;
  proxy_temp_path $work/nginx/tmp/proxy;
  fastcgi_temp_path $work/nginx/tmp/fastcgi;
  uwsgi_temp_path $work/nginx/tmp/uwsgi;
  scgi_temp_path $work/nginx/tmp/scgi;
  default_type application/json;
  sendfile on;
  tcp_nopush on;
  # update-server (hyper) keeps a connection for any number of requests; nginx's default of
  # 1000 would make wrk reconnect and charge nginx for it.
  keepalive_requests 100000000;
  keepalive_timeout 75s;
  # update-server answers from memory; spare nginx the open()/fstat() per request likewise.
  open_file_cache max=16 inactive=60s;
  open_file_cache_valid 60s;
  server {
    listen 127.0.0.1:$port;
    root $work/nginx/html;
    etag on;
    location / { }
  }
}
EOF
  "$nginx_bin" -p "$work/nginx" -c "$nginx_conf" -e "$work/nginx/error.log" &
  nginx_pid=$!
  pids+=("$nginx_pid")
  for _ in $(seq 50); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/api/worker-updates/latest"; then
      nginx_port="$port"
      break 2
    fi
    kill -0 "$nginx_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -TERM "$nginx_pid" 2>/dev/null || true
  wait "$nginx_pid" 2>/dev/null || true
  forget "$nginx_pid"
done
[ -n "$nginx_port" ] || { cat nginx/error.log >&2 || true; die "nginx did not start"; }
nginx_url="http://127.0.0.1:$nginx_port$LATEST_PATH?$QUERY"
curl -sS -D static.headers -o static.body "$nginx_url"
[ "$(status_of static.headers)" = 200 ] || die "nginx answered $(status_of static.headers)"
[ "$(stat -c %s static.body)" = "$body_size" ] || die "nginx body size differs"
nginx_etag="$(header static.headers etag)"
curl -sS -D static304.headers -o /dev/null -H "If-None-Match: $nginx_etag" "$nginx_url"
[ "$(status_of static304.headers)" = 304 ] || die "nginx with If-None-Match answered $(status_of static304.headers)"

# ---------------------------------------------------------------------------------------------
# wrk reports through this script: one machine-readable line, after the run (no per-request Lua,
# which would slow wrk down).
cat >report.lua <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%.0f duration_us=%.0f bytes=%.0f p50_us=%.0f p90_us=%.0f p99_us=%.0f " ..
    "p999_us=%.0f max_us=%.0f err_connect=%.0f err_read=%.0f err_write=%.0f err_status=%.0f " ..
    "err_timeout=%.0f\n",
    summary.requests, summary.duration, summary.bytes, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
EOF

clk_tck="$(getconf CLK_TCK)"
# CPU ticks (user + system) of a process and its direct children (nginx's workers).
cpu_ticks() {
  local total=0 pid stat
  local -a fields procs
  mapfile -t procs < <(pgrep -P "$1" || true)
  for pid in "$1" "${procs[@]}"; do
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || continue
    read -r -a fields <<<"${stat##*) }"
    total=$((total + fields[11] + fields[12]))
  done
  echo "$total"
}
# CPU ticks the shell's waited-for children used so far (here: wrk runs), from `times`, into
# CHILD_TICKS (`times` must run in this shell: in $(...) it would see the subshell's children).
children_ticks() {
  times >"$work/times.txt"
  CHILD_TICKS="$(tail -n1 "$work/times.txt" | awk -v tck="$clk_tck" '{
    t = 0
    for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2] }
    printf "%.0f\n", t * tck
  }')"
}
# Busy CPU ticks of the whole machine (all cores), from /proc/stat.
machine_busy_ticks() {
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}
# Requests the server counted on /latest with STATUS (any status without one), from /metrics.
server_count() {
  curl -sS "$server_url/metrics" |
    awk -v st="${1:+status=\"$1\"}" -v rt="route=\"$LATEST_PATH\"" \
      '/^update_server_http_requests_total\{/ && (st == "" || index($0, st)) && index($0, rt) { n += $NF }
       END { printf "%d\n", n }'
}

# OUT DURATION URL [wrk args...]; runs wrk in the background so a signal stops it at once.
# threads=N connections=N before the call override THREADS and CONNECTIONS.
wrk_run() {
  local out="$1" duration="$2" url="$3" pid
  shift 3
  wrk -t"${threads:-$THREADS}" -c"${connections:-$CONNECTIONS}" -d"$duration" --timeout 5s -s report.lua "$@" "$url" >"$out" 2>&1 &
  pid=$!
  pids+=("$pid")
  wait "$pid" || { forget "$pid"; cat "$out" >&2; die "wrk failed"; }
  forget "$pid"
}

# A number from the BENCH line in $line (set by the caller).
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$line"; }
declare -A other reqs rps p50 p99 p999 maxlat errs cpu wrkcpu size checks
run_case() { # NAME PID URL EXPECTED-STATUS [wrk args...]
  local name="$1" pid="$2" url="$3" expect="$4" out line before after wbefore wafter mbefore mafter s304 s200 sother
  shift 4
  out="wrk-${name// /-}.txt"
  if [ "$(seconds "$WARMUP")" -gt 0 ]; then wrk_run "$out.warmup" "$WARMUP" "$url" "$@"; fi
  if [ "$pid" = "$server_pid" ]; then s304="$(server_count 304)"; s200="$(server_count 200)"; sother="$(server_count)"; fi
  before="$(cpu_ticks "$pid")"
  mbefore="$(machine_busy_ticks)"
  children_ticks
  wbefore="$CHILD_TICKS"
  wrk_run "$out" "$DURATION" "$url" "$@"
  children_ticks
  wafter="$CHILD_TICKS"
  after="$(cpu_ticks "$pid")"
  mafter="$(machine_busy_ticks)"
  line="$(grep '^BENCH ' "$out")" || { cat "$out" >&2; die "no report from wrk for $name"; }
  local requests duration_us bytes ec er ew es et
  requests="$(field requests)" duration_us="$(field duration_us)" bytes="$(field bytes)"
  ec="$(field err_connect)" er="$(field err_read)" ew="$(field err_write)"
  es="$(field err_status)" et="$(field err_timeout)"
  reqs[$name]="$requests"
  rps[$name]="$(awk -v r="$requests" -v d="$duration_us" 'BEGIN { printf "%.0f", r / (d / 1e6) }')"
  p50[$name]="$(field p50_us)"
  p99[$name]="$(field p99_us)"
  p999[$name]="$(field p999_us)"
  maxlat[$name]="$(field max_us)"
  errs[$name]="$((ec + er + ew + es + et))"
  [ "${errs[$name]}" = 0 ] ||
    checks[$name]+="wrk errors: connect $ec, read $er, write $ew, timeout $et, HTTP >= 400: $es. "
  cpu[$name]="$(awk -v t="$((after - before))" -v k="$clk_tck" 'BEGIN { printf "%.2f", t / k }')"
  wrkcpu[$name]="$(awk -v t="$((wafter - wbefore))" -v k="$clk_tck" 'BEGIN { printf "%.2f", t / k }')"
  # Everything else the machine ran meanwhile (other programs, the idle server, the kernel's
  # softirq work not charged to a process): noise the figures carry.
  other[$name]="$(awk -v t="$((mafter - mbefore - (after - before) - (wafter - wbefore)))" \
    -v k="$clk_tck" 'BEGIN { if (t < 0) t = 0; printf "%.2f", t / k }')"
  size[$name]="$((bytes / (requests > 0 ? requests : 1)))"
  if [ "$pid" = "$server_pid" ]; then
    # The server's own count of what it answered during the measured run.
    local n304 n200 nall
    n304="$(($(server_count 304) - s304))"
    n200="$(($(server_count 200) - s200))"
    nall="$(($(server_count) - sother))"
    checks[$name]+="server counted $n304 x 304, $n200 x 200, $((nall - n304 - n200)) other (wrk: $requests). "
    if [ "$expect" = 304 ] && [ "$n200" != 0 ]; then checks[$name]+="UNEXPECTED 200s. "; fi
    if [ "$expect" = 200 ] && [ "$n304" != 0 ]; then checks[$name]+="UNEXPECTED 304s. "; fi
    if [ "$((nall - n304 - n200))" != 0 ]; then checks[$name]+="UNEXPECTED statuses. "; fi
  fi
}

# Latency with one connection and no queueing: what a single poll costs.
declare -A probe_rps probe_p50 probe_p99
probe_case() { # NAME URL [wrk args...]
  local name="$1" url="$2" out line
  shift 2
  out="probe-${name// /-}.txt"
  threads=1 connections=1 wrk_run "$out" "$PROBE" "$url" "$@"
  line="$(grep '^BENCH ' "$out")" || { cat "$out" >&2; die "no report from wrk for $name"; }
  probe_rps[$name]="$(awk -v r="$(field requests)" -v d="$(field duration_us)" \
    'BEGIN { printf "%.0f", r / (d / 1e6) }')"
  probe_p50[$name]="$(field p50_us)"
  probe_p99[$name]="$(field p99_us)"
}

us_304="update-server 304"
us_200="update-server 200"
ng_304="nginx 304"
ng_200="nginx 200"
log_before="$(wc -l <server.log)"
rss_before="$(awk '/^VmRSS/ { print $2 }' "/proc/$server_pid/status")"
load="$(cut -d' ' -f1 /proc/loadavg)"
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
  printf 'bench-server: warning: load average %s before measuring: other work competes for the cores\n' "$load" >&2
fi
step "measuring: 4 cases x (${WARMUP} warm-up + ${DURATION}), wrk -t$THREADS -c$CONNECTIONS, 127.0.0.1"
# 304s of both servers, then 200s of both, so slow drift of the machine hits both alike.
run_case "$us_304" "$server_pid" "$latest_url" 304 -H "$auth_header" -H "If-None-Match: $server_etag"
run_case "$ng_304" "$nginx_pid" "$nginx_url" 304 -H "$auth_header" -H "If-None-Match: $nginx_etag"
run_case "$us_200" "$server_pid" "$latest_url" 200 -H "$auth_header"
run_case "$ng_200" "$nginx_pid" "$nginx_url" 200 -H "$auth_header"
if [ "$(seconds "$PROBE")" -gt 0 ]; then
  step "one connection: 4 cases x $PROBE, wrk -t1 -c1"
  probe_case "$us_304" "$latest_url" -H "$auth_header" -H "If-None-Match: $server_etag"
  probe_case "$ng_304" "$nginx_url" -H "$auth_header" -H "If-None-Match: $nginx_etag"
  probe_case "$us_200" "$latest_url" -H "$auth_header"
  probe_case "$ng_200" "$nginx_url" -H "$auth_header"
fi
rss_after="$(awk '/^VmRSS/ { print $2 }' "/proc/$server_pid/status")"

# ---------------------------------------------------------------------------------------------
ms() { awk -v u="$1" 'BEGIN { printf "%.2f ms", u / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }
dur_s="$(seconds "$DURATION")"
per_cpu() { awk -v r="$1" -v c="$2" 'BEGIN { if (c == 0) print "n/a"; else printf "%.0f", r / c }'; }

cat <<EOF

update-server vs nginx, GET $LATEST_PATH (body $body_size bytes)
$(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)), kernel $(uname -r)
$("$server_bin" --version), $("$nginx_bin" -v 2>&1 | sed 's/^nginx version: //') (worker_processes $NGINX_WORKERS), $( (wrk -v 2>&1 || true) | head -n1 | cut -d' ' -f1-2)
wrk -t$THREADS -c$CONNECTIONS -d$DURATION (after ${WARMUP} warm-up) on 127.0.0.1; wrk and both servers share the $(nproc) cores.

EOF
printf '%-18s %9s %9s %10s %10s %10s %7s %7s %8s %10s %8s %8s\n' \
  case req/s p50 p99 p99.9 max errors resp-B srv-CPU req/CPU-s wrk-CPU other
for name in "$us_304" "$us_200" "$ng_304" "$ng_200"; do
  printf '%-18s %9s %9s %10s %10s %10s %7s %7s %7ss %10s %7ss %7ss\n' "$name" "${rps[$name]}" \
    "$(ms "${p50[$name]}")" "$(ms "${p99[$name]}")" "$(ms "${p999[$name]}")" \
    "$(ms "${maxlat[$name]}")" "${errs[$name]}" "${size[$name]}" "${cpu[$name]}" \
    "$(per_cpu "${reqs[$name]}" "${cpu[$name]}")" "${wrkcpu[$name]}" "${other[$name]}"
done
cat <<EOF

update-server / nginx     req/s   p99 latency   req per server CPU-second
  304 (If-None-Match)     $(ratio "${rps[$us_304]}" "${rps[$ng_304]}")    $(ratio "${p99[$us_304]}" "${p99[$ng_304]}")          $(ratio "$(per_cpu "${reqs[$us_304]}" "${cpu[$us_304]}")" "$(per_cpu "${reqs[$ng_304]}" "${cpu[$ng_304]}")")
  200 (full body)         $(ratio "${rps[$us_200]}" "${rps[$ng_200]}")    $(ratio "${p99[$us_200]}" "${p99[$ng_200]}")          $(ratio "$(per_cpu "${reqs[$us_200]}" "${cpu[$us_200]}")" "$(per_cpu "${reqs[$ng_200]}" "${cpu[$ng_200]}")")

resp-B: bytes wrk read per response (headers + body). srv-CPU: the server's user+system CPU
time during the measured run (nginx: master + workers), out of $((dur_s * $(nproc))) core-seconds; wrk-CPU: wrk's;
other: CPU the rest of the machine used meanwhile (other programs, interrupts): noise in the figures.
EOF
if [ "$(seconds "$PROBE")" -gt 0 ]; then
  printf '\none connection (wrk -t1 -c1 -d%s): the cost of one request, without queueing\n' "$PROBE"
  printf '%-18s %9s %9s %10s\n' case req/s p50 p99
  for name in "$us_304" "$us_200" "$ng_304" "$ng_200"; do
    printf '%-18s %9s %9s %10s\n' "$name" "${probe_rps[$name]}" "$(ms "${probe_p50[$name]}")" \
      "$(ms "${probe_p99[$name]}")"
  done
fi
printf '\nchecks:\n'
for name in "$us_304" "$us_200" "$ng_304" "$ng_200"; do
  printf '  %-18s %s\n' "$name" "${checks[$name]:-no wrk errors.}"
done
# Log lines written while measuring (the setup's own lines, e.g. the overridden promotion gate,
# are not counted).
log_lines="$(tail -n +"$((log_before + 1))" server.log | head -n "$(($(wc -l <server.log) - log_before))")"
warns="$(grep -c -E '"level":"(WARN|ERROR)"' <<<"$log_lines" || true)"
printf '  update-server log while measuring: %s lines, %s warnings/errors; RSS %s -> %s KiB\n' \
  "$(grep -c . <<<"$log_lines" || true)" "$warns" "$rss_before" "$rss_after"
printf '  nginx error log: %s lines\n' "$(wc -l <nginx/error.log 2>/dev/null || echo 0)"
