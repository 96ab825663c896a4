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
# Delta section (DELTA=1): the two agent builds are consecutive real `--profile dist` builds that
# differ only by their version string. 2.0.0 is installed by a fresh 1.0.0 agent twice, each
# time from a fresh server: once as the full artifact, once as the signed zstd delta that
# `worker-release sign-release --delta-from` makes (published with `publish`). It reports the
# bytes on the wire (the agent's `worker_update_bytes_downloaded_total{kind}`, checked against
# the patch and artifact sizes), the patch/full ratio (target <= 20 %), the agent's delta_ms
# (patch download + apply + verify) next to its full download+verify+stage time, and, through
# manifests' `delta_compare` example, zstd next to bsdiff (qbsdiff): patch size, make and apply
# times, peak RSS.
#
#   scripts/bench-update.sh              # ~2-4 minutes after the builds
#   KEEP=1 scripts/bench-update.sh       # keep the work directory (logs, keys, artifacts)
#   SIZES_MIB= scripts/bench-update.sh   # the delta section only
#
# Environment (defaults): SIZES_MIB="64 512", CURL_RUNS=3, STAGE_TIMEOUT=300 (seconds to wait for
# "update staged", per size), SWAP_TIMEOUT=120 (seconds to wait for the install path to say
# 2.0.0), DELTA=1, KEEP=0. Installs curl (Debian package) when missing; builds the release
# binaries. Everything runs on 127.0.0.1, and every wait is bounded.
# The server, the agent and curl share the machine's cores: read the figures as relative.
set -euo pipefail
root_dir="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root_dir"

SIZES_MIB="${SIZES_MIB:-64 512}"
CURL_RUNS="${CURL_RUNS:-3}"
STAGE_TIMEOUT="${STAGE_TIMEOUT:-300}"
SWAP_TIMEOUT="${SWAP_TIMEOUT:-120}"
KEEP="${KEEP:-0}"
DELTA="${DELTA:-1}"

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

# Two consecutive real builds of the agent as a site publishes it (`--profile dist`, like
# scripts/build-worker.sh): the same commit and build date, only the version differs (the one
# line a release bump changes). The second build recompiles the agent crate and redoes the LTO.
agents_dir="$root_dir/target/bench-agents"
mkdir -p "$agents_dir/bin"
build_commit="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
build_epoch="$(git log -1 --format=%ct 2>/dev/null || echo 1700000000)"
declare -A build_s
for version in 1.0.0 2.0.0; do
  log "building worker-agent $version (--profile dist, --target-dir $agents_dir)"
  started="$SECONDS"
  WORKER_AGENT_VERSION="$version" WORKER_BUILD_COMMIT="$build_commit" SOURCE_DATE_EPOCH="$build_epoch" \
    cargo build --profile dist --locked --quiet -p worker-agent --bin worker-agent \
    --target-dir "$agents_dir"
  build_s[$version]=$((SECONDS - started))
  cp "$agents_dir/dist/worker-agent" "$agents_dir/bin/worker-agent-$version.tmp"
  mv "$agents_dir/bin/worker-agent-$version.tmp" "$agents_dir/bin/worker-agent-$version"
done
if [[ "$DELTA" == 1 ]]; then
  log "building the delta_compare example (zstd vs bsdiff, release profile)"
  cargo build --release --locked --quiet -p manifests --example delta_compare
  delta_compare="$root_dir/target/release/examples/delta_compare"
fi
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

# --- delta vs full -------------------------------------------------------------------------
# The two real builds, unpadded: 2.0.0 installed by a 1.0.0 agent once as the full artifact and
# once as the signed delta `worker-release sign-release --delta-from` makes, each with a fresh
# server and agent. Then the same two builds through the delta_compare example: zstd (what the
# CLI and the agent run) next to bsdiff (qbsdiff), one process per method.

start_server() { # DIR -> $url
  local dir="$1" i
  "$server_bin" serve --listen 127.0.0.1:0 --data-dir "$dir/server-data" --root root.json \
    --channel-key keys/channel.key --admin-token-file admin.tokens \
    --worker-token-file worker.tokens >"$dir/server.out" 2>"$dir/server.log" &
  pids+=("$!")
  url=""
  for ((i = 0; i < 300; i++)); do
    url="$(sed -n 's/^update-server listening on //p' "$dir/server.out")"
    [[ -n "$url" ]] && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$dir/server.log" >&2; die "update-server exited"; }
    sleep 0.1
  done
  die "update-server did not start (see $dir/server.log)"
}

# update_once DIR RELEASE FILE...: publishes RELEASE (uploading the FILEs) to a fresh server,
# starts a fresh 1.0.0 agent, promotes 2.0.0, waits for "update staged" and the swap. Sets
# $staged_line, $delta_line (empty without a delta) and $agent_metrics (after the swap).
update_once() {
  local dir="$1" release="$2" f i metrics_port deadline
  shift 2
  mkdir -p "$dir/install" "$dir/state"
  start_server "$dir"
  local uploads=()
  for f in "$@"; do uploads+=(--artifact "$f"); done
  "$wr" publish --server "$url" "$release" "${uploads[@]}" >"$dir/publish.out"
  cp "$agent1" "$dir/install/worker-agent"
  metrics_port="$(free_port)"
  WORKER_TOKEN="$worker_token" "$dir/install/worker-agent" run --update-server "$url" \
    --channel stable --root "$work/root.json" --state-dir "$dir/state" \
    --metrics-listen "127.0.0.1:$metrics_port" --probation-secs 1 --long-poll true \
    >/dev/null 2>"$dir/agent.log" &
  pids+=("$!")
  sleep 1 # its first poll on 1.0.0, as above
  "$wr" promote --server "$url" --channel stable --version 2.0.0 --percent 100 \
    --override --reason bench >/dev/null
  staged_line=""
  deadline=$(($(date +%s) + STAGE_TIMEOUT))
  until staged_line="$(grep -m1 'update staged; handing over to the supervisor for probation' \
    "$dir/agent.log")"; do
    if (($(date +%s) >= deadline)); then
      tail -n 30 "$dir/agent.log" >&2
      die "[$dir] no \"update staged\" within ${STAGE_TIMEOUT}s"
    fi
    sleep 0.2
  done
  deadline=$(($(date +%s) + SWAP_TIMEOUT))
  until "$dir/install/worker-agent" --version 2>/dev/null | grep -q ' 2\.0\.0'; do
    if (($(date +%s) >= deadline)); then
      tail -n 30 "$dir/agent.log" >&2
      die "[$dir] the install path does not say 2.0.0 after ${SWAP_TIMEOUT}s"
    fi
    sleep 0.2
  done
  cmp -s "$dir/install/worker-agent" "$agent2" || die "[$dir] the installed binary is not the 2.0.0 build"
  agent_metrics=""
  for ((i = 0; i < 100; i++)); do
    agent_metrics="$(curl -sf "http://127.0.0.1:$metrics_port/metrics" || true)"
    grep -q '^worker_update_bytes_downloaded_total{' <<<"$agent_metrics" && break
    sleep 0.2
  done
  delta_line="$(grep -m1 'delta update applied' "$dir/agent.log" || true)"
  stop_all
}

field() { grep -o "\"$1\":[0-9]*" <<<"$2" | cut -d: -f2; } # FIELD JSON_LINE -> number
counter() { # KIND -> worker_update_bytes_downloaded_total{kind="KIND"} from $agent_metrics (0 if absent)
  awk -v k="worker_update_bytes_downloaded_total{kind=\"$1\"}" '$1 == k {v = $2} END {printf "%d", v + 0}' <<<"$agent_metrics"
}

bench_delta() {
  local dir="$work/delta"
  mkdir -p "$dir"
  full_bytes="$(stat -c %s "$agent2")"

  log "[delta] full update: 2.0.0 without a delta ($full_bytes bytes)"
  "$wr" sign-release --version 2.0.0 --minimum-version 0.1.0 --notes "bench full" \
    --artifact "$platform=$agent2" --key keys/release.key --out "$dir/release-full.json" >/dev/null
  update_once "$dir/full" "$dir/release-full.json" "$agent2"
  full_ms="$(field download_verify_stage_ms "$staged_line")"
  full_counted="$(counter full)"
  [[ "$full_counted" == "$full_bytes" && "$(counter delta)" == 0 ]] ||
    die "[delta] the full update counted full=$full_counted delta=$(counter delta), not $full_bytes full bytes"
  log "[delta] full: staged in $full_ms ms"

  log "[delta] delta update: sign-release --delta-from the 1.0.0 build"
  local started out
  started="$(now_ms)"
  out="$("$wr" sign-release --version 2.0.0 --minimum-version 0.1.0 --notes "bench delta" \
    --artifact "$platform=$agent2" --delta-from "$agent1" --key keys/release.key \
    --out "$dir/release-delta.json")"
  sign_ms=$(($(now_ms) - started))
  local patch="$dir/delta-1.0.0-to-2.0.0-$platform.zst"
  [[ -f "$patch" ]] || die "[delta] sign-release wrote no $patch: $out"
  patch_bytes="$(stat -c %s "$patch")"
  log "[delta] $(grep '^delta ' <<<"$out")"
  update_once "$dir/patched" "$dir/release-delta.json" "$agent2" "$patch"
  [[ -n "$delta_line" ]] || die "[delta] the agent did not apply the delta (see $dir/patched/agent.log)"
  delta_ms="$(field delta_ms "$delta_line")"
  delta_stage_ms="$(field download_verify_stage_ms "$staged_line")"
  delta_counted="$(counter delta)"
  [[ "$delta_counted" == "$patch_bytes" && "$(counter full)" == 0 ]] ||
    die "[delta] the delta update counted delta=$delta_counted full=$(counter full), not $patch_bytes delta bytes"
  log "[delta] delta: patch downloaded and applied in $delta_ms ms, staged in $delta_stage_ms ms"

  local method line
  for method in zstd bsdiff; do
    log "[delta] delta_compare $method"
    line="$("$delta_compare" "$method" "$agent1" "$agent2")"
    compare_line[$method]="$line"
  done
}
declare -A compare_line
[[ "$DELTA" == 1 ]] && bench_delta

# --- report --------------------------------------------------------------------------------
if [[ -n "${SIZES_MIB// /}" ]]; then
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
fi

if [[ "$DELTA" == 1 ]]; then
  kv() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$2"; } # KEY LINE -> value of KEY=N
  pct() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", (b > 0 ? a * 100 / b : 0)}'; }
  echo
  echo "delta vs full: two consecutive --profile dist builds (1.0.0 -> 2.0.0, the version string"
  echo "only; built in ${build_s[1.0.0]} s and ${build_s[2.0.0]} s), 127.0.0.1, real update-server and agent"
  echo
  printf '| %-34s | %-14s | %-10s | %-34s |\n' update "bytes on wire" "of full" "agent ms (download+apply+verify)"
  printf '|%s|%s|%s|%s|\n' "------------------------------------" "----------------" "------------" \
    "------------------------------------"
  printf '| %-34s | %-14s | %-10s | %-34s |\n' "full artifact" "$full_bytes" "100 %" \
    "$full_ms (staged)"
  printf '| %-34s | %-14s | %-10s | %-34s |\n' "signed zstd delta (sign-release)" "$patch_bytes" \
    "$(pct "$patch_bytes" "$full_bytes") %" "$delta_ms (delta), $delta_stage_ms (staged)"
  echo
  ratio="$(awk -v a="$patch_bytes" -v b="$full_bytes" 'BEGIN {printf "%.4f", a / b}')"
  if awk -v r="$ratio" 'BEGIN {exit !(r <= 0.20)}'; then
    echo "delta bytes <= 20 % of full: yes (ratio $ratio)"
  else
    echo "delta bytes <= 20 % of full: NO (ratio $ratio)"
  fi
  echo "sign-release --delta-from (level 19, patch proved by applying it): $sign_ms ms"
  echo
  printf '| %-8s | %-13s | %-10s | %-9s | %-10s | %-13s |\n' method "patch bytes" "of full" "make ms" \
    "apply ms" "peak RSS MiB"
  printf '|%s|%s|%s|%s|%s|%s|\n' "----------" "---------------" "------------" "-----------" \
    "------------" "---------------"
  for method in zstd bsdiff; do
    line="${compare_line[$method]}"
    printf '| %-8s | %-13s | %-10s | %-9s | %-10s | %-13s |\n' "$method" "$(kv patch_bytes "$line")" \
      "$(pct "$(kv patch_bytes "$line")" "$full_bytes") %" "$(kv make_ms "$line")" \
      "$(kv apply_ms "$line")" "$(awk -v k="$(kv peak_rss_kib "$line")" 'BEGIN {printf "%.1f", k / 1024}')"
  done
fi
