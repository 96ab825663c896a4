#!/usr/bin/env bash
# The README's first command: a local fleet on this machine.
#
# Builds everything (the agent with `--profile dist`, as a site publishes it), creates keys and
# a root of trust, starts update-server on its embedded SQLite, starts 3 agents at 1.0.0 (one on
# canary, two on stable), signs 2.0.0 with a delta from 1.0.0, publishes both, promotes it to
# canary, waits for the canary agent to pass probation (it downloads only the patch), promotes
# it to stable, shows the whole fleet on 2.0.0, then runs one encoding task on an agent and
# shows its outputs. Everything lands under one directory (default ./demo-<timestamp>, or $1); every
# process it starts is stopped on exit or Ctrl-C.
#
#   scripts/quickstart.sh [DIR]
#   KEEP_RUNNING=1 scripts/quickstart.sh   # leave the fleet up until Ctrl-C
set -euo pipefail
root_dir="$(cd "$(dirname "$0")/.." && pwd)"
demo="${1:-$root_dir/demo-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$demo"
demo="$(cd "$demo" && pwd)"
V1=1.0.0
V2=2.0.0

step=0
say() { step=$((step + 1)); printf '\n[%d] %s\n' "$step" "$*"; }
info() { printf '    %s\n' "$*"; }
indent() { sed 's/^/    /'; }
fail() { printf '\nquickstart: error: %s\n' "$*" >&2; exit 1; }

# Every process started here is stopped on exit, error or Ctrl-C.
pids=()
cleanup() {
  local code=$?
  trap - EXIT INT TERM
  if [ ${#pids[@]} -gt 0 ]; then
    printf '\nstopping %d processes...\n' "${#pids[@]}"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 1 50); do
      alive=0
      for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
      [ "$alive" = 0 ] && break
      sleep 0.2
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for WHAT SECONDS COMMAND...: runs COMMAND every second until it succeeds, with a spinner.
wait_for() {
  local what=$1 limit=$2 start=$SECONDS spin='|/-\' i=0
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $((SECONDS - start)) -ge "$limit" ]; then
      printf '\r' ; fail "timed out after ${limit}s waiting for: $what (logs in $demo/logs)"
    fi
    printf '\r    %s %s (%ds)' "${spin:i++%4:1}" "$what" $((SECONDS - start))
    sleep 1
  done
  printf '\r    done: %s (%ds)%*s\n' "$what" $((SECONDS - start)) 10 ''
}

# ffmpeg runs the media tasks: install it when missing (as scripts/test.sh does).
if ! command -v ffmpeg >/dev/null; then
  say "installing ffmpeg (the media tasks run it)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg | indent
  else
    fail "ffmpeg is missing: sudo apt-get install ffmpeg"
  fi
fi

say "building update-server, worker-release and the ESUP Manager stand-in, then the agent at $V1 and $V2 (--profile dist)"
cargo build --quiet --manifest-path "$root_dir/Cargo.toml" -p update-server -p worker-release -p e2e --bins
bin="$root_dir/target/debug"
wr="$bin/worker-release"
# The agent is built as a site publishes it (`[profile.dist]`, as scripts/build-worker.sh does):
# the artifact the fleet downloads. Both versions share one target directory, so the second
# build only recompiles the agent crate (and redoes the whole-program LTO).
for version in $V1 $V2; do
  started=$SECONDS
  WORKER_AGENT_VERSION=$version cargo build --quiet --profile dist --manifest-path "$root_dir/Cargo.toml" \
    -p worker-agent --bin worker-agent --target-dir "$root_dir/target/quickstart"
  mkdir -p "$demo/builds/$version"
  cp "$root_dir/target/quickstart/dist/worker-agent" "$demo/builds/$version/worker-agent"
  info "agent $version: $(wc -c < "$demo/builds/$version/worker-agent" | tr -d ' ') bytes, built in $((SECONDS - started)) s"
done
platform="$("$demo/builds/$V1/worker-agent" --version | sed 's/.*, \(.*\))$/\1/')"
info "agent $V1 and $V2 for $platform in $demo/builds"
cd "$demo"
mkdir -p logs

say "generating keys (offline root and release keys, online channel key) and root.json"
for name in root-1 release-1 channel; do "$wr" keygen --out keys --name "$name" | indent; done
"$wr" init-root --root-key keys/root-1.pub --release-key keys/release-1.pub \
  --channel-key keys/channel.pub --key keys/root-1.key --out root.json | indent

say "starting update-server on 127.0.0.1 with its embedded SQLite (soak: 10 s)"
rand_token() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
admin_token=$(rand_token); worker_token=$(rand_token); runner_token=$(rand_token)
echo "ops=$admin_token" > admin.tokens
echo "fleet=$worker_token" > worker.tokens
echo "$admin_token" > admin.token
echo "$runner_token" > runner.token
chmod 600 admin.tokens worker.tokens admin.token runner.token
"$bin/update-server" serve --listen 127.0.0.1:0 --data-dir server-data --root root.json \
  --channel-key keys/channel.key --admin-token-file admin.tokens --worker-token-file worker.tokens \
  --soak 10s --poll-interval 5s --long-poll-max 10s > logs/update-server.log 2>&1 &
pids+=($!)
server_url() { grep -o 'listening on http://[0-9.:]*' logs/update-server.log | head -1 | sed 's/listening on //'; }
wait_for "update-server listening" 30 server_url
server=$(server_url)
export UPDATE_SERVER_URL=$server WORKER_RELEASE_TOKEN_FILE=$demo/admin.token
info "update-server at $server (logs/update-server.log)"

say "starting the ESUP Manager stand-in (accepts the agents' registrations and serves media)"
mkdir -p media
"$bin/esup-manager-fake" serve --token-file runner.token --media-dir media --url-file manager.url \
  > logs/esup-manager-fake.log 2>&1 &
pids+=($!)
wait_for "the Manager stand-in listening" 30 test -s manager.url
manager=$(cat manager.url)
info "Manager stand-in at $manager"

# A free port on loopback (bash's /dev/tcp: connecting fails when nobody listens).
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
next_port=$((20000 + RANDOM % 20000))
# Sets $port to the next free port (no subshell: the counter must advance).
take_port() {
  while ! port_free "$next_port"; do next_port=$((next_port + 1)); done
  port=$next_port; next_port=$((next_port + 1))
}

say "starting 3 agents at $V1: agent-1 on canary, agent-2 and agent-3 on stable"
runner_ports=()
for n in 1 2 3; do
  channel=stable; [ "$n" = 1 ] && channel=canary
  dir="agent-$n"
  mkdir -p "$dir/install" "$dir/storage"
  cp "$demo/builds/$V1/worker-agent" "$dir/install/worker-agent"
  take_port; metrics_port=$port
  take_port; runner_port=$port
  runner_ports+=("$runner_port")
  MANAGER_URL=$manager RUNNER_TOKEN=$runner_token RUNNER_HOST=127.0.0.1 RUNNER_LISTEN_HOST=127.0.0.1 \
  SOURCE_ALLOW_PRIVATE_NETWORKS=1 \
  RUNNER_BASE_PORT=$runner_port RUNNER_BASE_NAME="agent-$n" STORAGE_DIR="$demo/$dir/storage" \
  RUNNER_TASK_TYPES=encoding,studio \
    "$dir/install/worker-agent" run --update-server "$server" --channel "$channel" \
    --token "$worker_token" --root root.json --state-dir "$dir/state" \
    --metrics-listen "127.0.0.1:$metrics_port" --probation-secs 5 2> "logs/$dir.log" &
  pids+=($!)
  info "$dir: channel $channel, metrics http://127.0.0.1:$metrics_port/metrics, ESUP runner http://127.0.0.1:$runner_port (logs/$dir.log)"
done
for n in 1 2 3; do wait_for "agent-$n ready" 60 grep -Eq "\"version\": *\"$V1\"" "agent-$n/state/ready.json"; done

say "signing release $V2 offline (release key) with a delta from $V1, and publishing both"
"$wr" sign-release --version $V2 --minimum-version $V1 --notes "quickstart: the local fleet's first update" \
  --artifact "$platform=$demo/builds/$V2/worker-agent" --delta-from "$demo/builds/$V1/worker-agent" \
  --key keys/release-1.key --out release-$V2.json | indent
# sign-release writes the signed patch next to --out.
"$wr" publish release-$V2.json --artifact "$demo/builds/$V2/worker-agent" \
  --artifact "delta-$V1-to-$V2-$platform.zst" | indent

installed() { "$demo/$1/install/worker-agent" --version | grep -q " $2 "; }

say "promoting $V2 to canary; agent-1 downloads, verifies, runs it in probation, then swaps"
"$wr" promote --channel canary --version $V2 --reason "quickstart" | indent
wait_for "agent-1 on $V2 (probation passed, binary swapped)" 180 installed agent-1 $V2
delta_line=$(grep -m1 'delta update applied' logs/agent-1.log || true)
if [ -n "$delta_line" ]; then
  info "agent-1 downloaded the $(grep -o '"patch_bytes":[0-9]*' <<<"$delta_line" | cut -d: -f2)-byte patch, not the $(grep -o '"full_bytes":[0-9]*' <<<"$delta_line" | cut -d: -f2)-byte binary"
fi

say "promoting $V2 to stable (the server refuses until the canary soaked 10 s with a success)"
promote_stable() { "$wr" promote --channel stable --version $V2 --percent 100 --reason "canary clean" > logs/promote-stable.out 2>&1; }
wait_for "the soak gate to open" 120 promote_stable
indent < logs/promote-stable.out
wait_for "agent-2 on $V2" 180 installed agent-2 $V2
wait_for "agent-3 on $V2" 180 installed agent-3 $V2

say "the fleet, as the update server sees it"
wait_for "every agent reported $V2" 60 sh -c "'$wr' status --json | grep -c '\"$V2\"' >/dev/null && '$wr' status | grep -q '$V2.*3'"
"$wr" status | indent

say "running one encoding task on agent-2 through the ESUP protocol"
ffmpeg -nostdin -loglevel error -y -f lavfi -i "testsrc2=size=1280x720:rate=25:duration=10" \
  -f lavfi -i "sine=frequency=440:duration=10" -c:v libx264 -preset ultrafast -pix_fmt yuv420p \
  -c:a aac -shortest media/demo-lecture.mp4
"$bin/esup-manager-fake" dispatch --runner "http://127.0.0.1:${runner_ports[1]}" --token-file runner.token \
  --task-type encoding --source-url "$manager/media/demo-lecture.mp4" --task-id quickstart-encoding \
  --callback "$manager/task/completion" | indent
info "outputs: $demo/agent-2/storage/quickstart-encoding/output/"

printf '\nDone. Everything is under %s (logs in %s/logs).\n' "$demo" "$demo"
if [ "${KEEP_RUNNING:-0}" = 1 ]; then
  printf 'The fleet keeps running; Ctrl-C stops it.\n'
  wait
fi
