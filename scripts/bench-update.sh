#!/usr/bin/env bash
# Benchmark (not a test): how long a real `worker-agent run` takes to download, verify and stage
# an update of 64 MiB and of 512 MiB from a real update-server on 127.0.0.1, next to
# `curl ... && sha256sum` of the same artifact from the same server, and whether the agent's
# peak RSS stays flat as the artifact grows (downloads must stream).
#
# For each size, with a fresh update-server and a fresh agent (so the release can be 2.0.0 each
# time): the artifact is the 2.0.0 agent binary padded with zeros to exactly that size (an ELF
# still runs with trailing zeros; checked with --version), signed, published, promoted to
# stable 100 % (--override); an agent installed at 1.0.0 (--probation-secs 1, --long-poll true)
# picks it up. The agent logs "update staged; ..." with download_verify_stage_ms and
# peak_rss_kib (the worker process's VmHWM); the script then waits for the swap (the install
# path says 2.0.0 after probation). Then, against the same server, it times CURL_RUNS runs of
# `curl -o FILE (worker token) .../artifacts/<sha256> && sha256sum FILE` (FILE in the same
# temp dir, i.e. the same filesystem the agent stages into) and reports their median.
#
#   scripts/bench-update.sh              # ~2-4 minutes after the builds
#   KEEP=1 scripts/bench-update.sh       # keep the work directory (logs, keys, artifacts)
#
# Environment (defaults): SIZES_MIB="64 512", CURL_RUNS=3, STAGE_TIMEOUT=300 (seconds to wait for
# "update staged", per size), SWAP_TIMEOUT=120 (seconds to wait for the install path to say
# 2.0.0), KEEP=0. Installs curl (Debian package) when missing; builds the release binaries.
# The server, the agent and curl share the machine's cores: read the figures as relative.
set -euo pipefail
root_dir="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root_dir"

SIZES_MIB="${SIZES_MIB:-64 512}"
CURL_RUNS="${CURL_RUNS:-3}"
STAGE_TIMEOUT="${STAGE_TIMEOUT:-300}"
SWAP_TIMEOUT="${SWAP_TIMEOUT:-120}"
KEEP="${KEEP:-0}"

log() { printf '[bench-update] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- processes and cleanup -----------------------------------------------------------------
pids=()
work=""

descendants() { # pid -> its descendants, deepest first
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    descendants "$child"
    echo "$child"
  done
}

stop_tree() { # TERM a process and its descendants, wait up to 5 s, then KILL what is left
  local pid="$1" all p i
  kill -0 "$pid" 2>/dev/null || return 0
  all="$(descendants "$pid") $pid"
  for p in $all; do kill -TERM "$p" 2>/dev/null || true; done
  for ((i = 0; i < 50; i++)); do
    local alive=0
    for p in $all; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for p in $all; do kill -KILL "$p" 2>/dev/null || true; done
  wait "$pid" 2>/dev/null || true
}

stop_all() {
  local pid
  for pid in "${pids[@]+"${pids[@]}"}"; do stop_tree "$pid"; done
  pids=()
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stop_all
  if [[ -n "$work" && -d "$work" ]]; then
    if [[ "$KEEP" == 1 ]]; then log "kept $work"; else rm -rf "$work"; fi
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now_ms() { echo $(($(date +%s%N) / 1000000)); }

free_port() { # a loopback port nothing listens on (the agent binds it right after)
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 40000))
    if ! (: </dev/tcp/127.0.0.1/"$port") 2>/dev/null; then echo "$port"; return; fi
  done
  die "no free port found"
}

# --- tools and builds ----------------------------------------------------------------------
if ! command -v curl >/dev/null; then
  log "installing curl"
  [[ "$(id -u)" == 0 ]] || die "curl is missing and this is not root: install curl"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
fi
command -v openssl >/dev/null || die "openssl is needed for the tokens"

log "building update-server and worker-release (release profile)"
cargo build --release --quiet -p update-server -p worker-release
server_bin="$root_dir/target/release/update-server"
wr="$root_dir/target/release/worker-release"

agents_dir="$root_dir/target/bench-agents"
mkdir -p "$agents_dir/bin"
for version in 1.0.0 2.0.0; do
  log "building worker-agent $version (release profile, --target-dir $agents_dir)"
  WORKER_AGENT_VERSION="$version" cargo build --release --quiet -p worker-agent \
    --target-dir "$agents_dir"
  cp "$agents_dir/release/worker-agent" "$agents_dir/bin/worker-agent-$version.tmp"
  mv "$agents_dir/bin/worker-agent-$version.tmp" "$agents_dir/bin/worker-agent-$version"
done
agent1="$agents_dir/bin/worker-agent-1.0.0"
agent2="$agents_dir/bin/worker-agent-2.0.0"
"$agent1" --version | grep -q ' 1\.0\.0' || die "the 1.0.0 build says: $("$agent1" --version)"
"$agent2" --version | grep -q ' 2\.0\.0' || die "the 2.0.0 build says: $("$agent2" --version)"
# "worker-agent 2.0.0 (<commit>, <platform>)": the platform agents of this build ask for.
platform="$("$agent2" --version | sed -n 's/.*, \(.*\))$/\1/p')"
[[ -n "$platform" ]] || die "no platform in: $("$agent2" --version)"

# --- trust and tokens ----------------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/bench-update.XXXXXX")"
log "work directory $work"
cd "$work"
for name in root release channel; do "$wr" keygen --out keys --name "$name" >/dev/null; done
"$wr" init-root --root-key keys/root.pub --release-key keys/release.pub \
  --channel-key keys/channel.pub --key keys/root.key --out root.json >/dev/null
admin_token="$(openssl rand -hex 24)"
worker_token="$(openssl rand -hex 24)"
echo "bench=$admin_token" >admin.tokens
echo "bench=$worker_token" >worker.tokens
echo "$admin_token" >admin.token # worker-release reads the bare token
chmod 600 admin.tokens worker.tokens admin.token
export WORKER_RELEASE_TOKEN_FILE="$work/admin.token"

# --- one size ------------------------------------------------------------------------------
declare -A agent_ms curl_ms rss_kib
median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

bench_size() {
  local mib="$1"
  local dir="$work/size-$mib"
  mkdir -p "$dir/install" "$dir/state"

  log "[$mib MiB] artifact: the 2.0.0 agent padded with zeros"
  cp "$agent2" "$dir/artifact"
  truncate -s "${mib}M" "$dir/artifact"
  [[ "$(stat -c %s "$dir/artifact")" == $((mib * 1024 * 1024)) ]] || die "artifact size"
  "$dir/artifact" --version | grep -q ' 2\.0\.0' || die "the padded binary does not run"
  local sha
  sha="$(sha256sum "$dir/artifact" | cut -d' ' -f1)"
  "$wr" sign-release --version 2.0.0 --minimum-version 0.1.0 --notes "bench $mib MiB" \
    --artifact "$platform=$dir/artifact" --key keys/release.key --out "$dir/release.json" >/dev/null

  log "[$mib MiB] starting update-server"
  "$server_bin" serve --listen 127.0.0.1:0 --data-dir "$dir/server-data" --root root.json \
    --channel-key keys/channel.key --admin-token-file admin.tokens \
    --worker-token-file worker.tokens >"$dir/server.out" 2>"$dir/server.log" &
  pids+=("$!")
  local url="" i
  for ((i = 0; i < 300; i++)); do
    url="$(sed -n 's/^update-server listening on //p' "$dir/server.out")"
    [[ -n "$url" ]] && break
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$dir/server.log" >&2; die "update-server exited"; }
    sleep 0.1
  done
  [[ -n "$url" ]] || die "update-server did not start (see $dir/server.log)"

  log "[$mib MiB] publishing 2.0.0 to $url"
  "$wr" publish --server "$url" "$dir/release.json" --artifact "$dir/artifact" >/dev/null

  log "[$mib MiB] starting worker-agent 1.0.0"
  cp "$agent1" "$dir/install/worker-agent"
  local metrics_port
  metrics_port="$(free_port)"
  WORKER_TOKEN="$worker_token" "$dir/install/worker-agent" run --update-server "$url" \
    --channel stable --root "$work/root.json" --state-dir "$dir/state" \
    --metrics-listen "127.0.0.1:$metrics_port" --probation-secs 1 --long-poll true \
    >/dev/null 2>"$dir/agent.log" &
  pids+=("$!")
  sleep 1 # let it make its first poll on 1.0.0 (it long-polls from then on)

  log "[$mib MiB] promoting 2.0.0 to stable 100 %"
  "$wr" promote --server "$url" --channel stable --version 2.0.0 --percent 100 \
    --override --reason bench >/dev/null

  local line="" deadline=$(($(date +%s) + STAGE_TIMEOUT))
  while [[ -z "$line" ]]; do
    line="$(grep -m1 'update staged; handing over to the supervisor for probation' \
      "$dir/agent.log" || true)"
    [[ -n "$line" ]] && break
    if (($(date +%s) >= deadline)); then
      tail -n 30 "$dir/agent.log" >&2
      die "[$mib MiB] no \"update staged\" within ${STAGE_TIMEOUT}s"
    fi
    sleep 0.2
  done
  agent_ms[$mib]="$(grep -o '"download_verify_stage_ms":[0-9]*' <<<"$line" | cut -d: -f2 || true)"
  rss_kib[$mib]="$(grep -o '"peak_rss_kib":[0-9]*' <<<"$line" | cut -d: -f2 || true)"
  [[ -n "${agent_ms[$mib]}" ]] || die "no download_verify_stage_ms in: $line"
  [[ -n "${rss_kib[$mib]}" ]] || rss_kib[$mib]="?"
  log "[$mib MiB] staged in ${agent_ms[$mib]} ms, peak RSS ${rss_kib[$mib]} KiB; waiting for the swap"

  deadline=$(($(date +%s) + SWAP_TIMEOUT))
  until "$dir/install/worker-agent" --version 2>/dev/null | grep -q ' 2\.0\.0'; do
    if (($(date +%s) >= deadline)); then
      tail -n 30 "$dir/agent.log" >&2
      die "[$mib MiB] the install path does not say 2.0.0 after ${SWAP_TIMEOUT}s"
    fi
    sleep 0.2
  done
  log "[$mib MiB] swapped: $("$dir/install/worker-agent" --version)"

  # curl + sha256sum against the same server; the agent idles on a long poll meanwhile.
  local runs=() start end got
  for ((i = 1; i <= CURL_RUNS; i++)); do
    rm -f "$dir/curl.out"
    start="$(now_ms)"
    curl -sf -o "$dir/curl.out" -H "Authorization: Bearer $worker_token" \
      "$url/api/worker-updates/artifacts/$sha"
    got="$(sha256sum "$dir/curl.out" | cut -d' ' -f1)"
    end="$(now_ms)"
    [[ "$got" == "$sha" ]] || die "curl fetched a different file ($got)"
    runs+=($((end - start)))
  done
  curl_ms[$mib]="$(echo "${runs[*]}" | median)"
  log "[$mib MiB] curl+sha256sum runs (ms): ${runs[*]} -> median ${curl_ms[$mib]}"

  stop_all
  # The big files are not needed any more (~4x the size on disk).
  [[ "$KEEP" == 1 ]] || rm -rf "$dir/server-data" "$dir/artifact" "$dir/curl.out" "$dir/install"
}

for mib in $SIZES_MIB; do bench_size "$mib"; done

# --- report --------------------------------------------------------------------------------
echo
echo "worker-agent update vs curl+sha256sum, 127.0.0.1, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "machine: $(nproc) cores shared by update-server, worker-agent and curl; curl: median of $CURL_RUNS"
echo
printf '| %-8s | %-33s | %-19s | %-16s | %-20s |\n' size "agent download+verify+stage (ms)" \
  "curl+sha256sum (ms)" "ratio agent/curl" "agent peak RSS (MiB)"
printf '|%s|%s|%s|%s|%s|\n' "----------" "-----------------------------------" \
  "---------------------" "------------------" "----------------------"
min_rss="" max_rss=""
for mib in $SIZES_MIB; do
  ratio="$(awk -v a="${agent_ms[$mib]}" -v c="${curl_ms[$mib]}" 'BEGIN {printf "%.2f", (c > 0 ? a / c : 0)}')"
  if [[ "${rss_kib[$mib]}" == "?" ]]; then
    rss="?"
  else
    rss="$(awk -v k="${rss_kib[$mib]}" 'BEGIN {printf "%.1f", k / 1024}')"
    [[ -z "$min_rss" || "${rss_kib[$mib]}" -lt "$min_rss" ]] && min_rss="${rss_kib[$mib]}"
    [[ -z "$max_rss" || "${rss_kib[$mib]}" -gt "$max_rss" ]] && max_rss="${rss_kib[$mib]}"
  fi
  printf '| %-8s | %-33s | %-19s | %-16s | %-20s |\n' "$mib MiB" "${agent_ms[$mib]}" \
    "${curl_ms[$mib]}" "$ratio" "$rss"
done
echo
if [[ -n "$min_rss" && "$min_rss" -gt 0 ]]; then
  growth="$(awk -v a="$max_rss" -v b="$min_rss" 'BEGIN {printf "%.2f", a / b}')"
  if awk -v g="$growth" 'BEGIN {exit !(g <= 1.5)}'; then
    echo "peak RSS flat: yes (largest/smallest = ${growth}x, within 1.5x)"
  else
    echo "peak RSS flat: NO (largest/smallest = ${growth}x, more than 1.5x)"
  fi
else
  echo "peak RSS flat: unknown (peak_rss_kib missing from the agent log)"
fi
