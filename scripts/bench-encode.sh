#!/usr/bin/env bash
# Benchmark (not a test): how long `worker-agent task run --type encoding` takes on a generated
# clip, next to the very same ffprobe/ffmpeg commands run directly from this shell. The ratio
# agent/direct is the agent's own overhead (start-up, copying the source into the workspace,
# process groups, reading -progress, logs, info_video.json, overview.vtt, manifest.json); the
# encoding work itself is identical. Both wall time and CPU time (user + system of every process,
# from /usr/bin/time) are reported: on a shared machine the wall time swings with the other
# jobs, the CPU time much less.
#
#   scripts/bench-encode.sh            # ~3 minutes on 2 cores after the release build
#   KEEP=1 scripts/bench-encode.sh     # keep the work directory (outputs, logs)
#
# Environment (defaults): SECONDS_OF_VIDEO=30, SIZE=1280x720, RUNS=3 (agent and direct runs
# alternate, medians are reported), SEPARATE=1 (also time the encode step split into one
# ffmpeg per output, each decoding the source again: what the single split-decode command saves),
# KEEP=0.
#
# How the replay works: ProcessRunner writes every command it starts to the workspace's
# info_script.log as `[label] $ program args...` (arguments joined by single spaces). The agent's
# arguments never contain spaces when the paths do not (this script makes sure of that), so each
# line splits back into the exact argument vector; the agent's workspace path is swapped for a
# fresh directory and the commands run one after the other, as the agent ran them.
set -euo pipefail
root_dir="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root_dir"

SECONDS_OF_VIDEO="${SECONDS_OF_VIDEO:-30}"
SIZE="${SIZE:-1280x720}"
RUNS="${RUNS:-3}"
SEPARATE="${SEPARATE:-1}"
KEEP="${KEEP:-0}"

log() { printf '[bench-encode] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

work=""
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n "$work" && -d "$work" ]]; then
    if [[ "$KEEP" == 1 ]]; then log "kept $work"; else rm -rf "$work"; fi
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v ffmpeg >/dev/null || die "ffmpeg is missing (Debian: apt-get install ffmpeg)"
command -v ffprobe >/dev/null || die "ffprobe is missing (Debian: apt-get install ffmpeg)"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (Debian: apt-get install time)"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"

log "building the release agent"
cargo build --release -p worker-agent --quiet
target_dir="${CARGO_TARGET_DIR:-$root_dir/target}"
agent="$target_dir/release/worker-agent"
[[ -x "$agent" ]] || die "no agent binary at $agent"

work="$(mktemp -d /tmp/bench-encode.XXXXXX)"
[[ "$work" != *" "* ]] || die "the work directory must not contain spaces: $work"
clip="$work/bench_clip.mp4"
log "generating a ${SECONDS_OF_VIDEO} s ${SIZE} clip (testsrc2 + sine, x264 veryfast crf 20)"
ffmpeg -hide_banner -loglevel error -nostdin -y \
  -f lavfi -i "testsrc2=size=${SIZE}:rate=25:duration=${SECONDS_OF_VIDEO}" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=${SECONDS_OF_VIDEO}" \
  -c:v libx264 -preset veryfast -crf 20 -pix_fmt yuv420p -c:a aac -b:a 128k -shortest "$clip"

median() { # numbers... -> median (lower middle for an even count)
  printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

# The agent's [encode] command as one ffmpeg per output: every output group (its words up to and
# including its file, the only word that names the workspace) becomes its own command with the
# same input; a group that maps a filter label ([v0], [ov]) gets just that label's chain from the
# agent's filter graph. Prints one command per line.
split_encode() { # encode-line workspace
  local -a words head=() group=() segments
  read -r -a words <<<"$1"
  local workspace="$2" i=0 n graph="" input_label segment label body
  n=${#words[@]}
  declare -A chains=()
  while ((i < n)); do # the prelude, -i and -filter_complex, up to the first -map
    [[ "${words[i]}" == -map ]] && break
    if [[ "${words[i]}" == -filter_complex ]]; then
      graph="${words[i + 1]}"
      i=$((i + 2))
      continue
    fi
    head+=("${words[i]}")
    i=$((i + 1))
  done
  IFS=';' read -r -a segments <<<"$graph"
  input_label="${segments[0]%%split*}" # [0:0]
  for segment in "${segments[@]:1}"; do # [s0]scale=-2:360[v0]
    label="${segment##*[}"
    label="${label%]}"
    body="${segment#*]}"
    body="${body%[*}"
    chains[$label]="$body"
  done
  for (( ; i < n; i++)); do
    group+=("${words[i]}")
    if [[ "${words[i]}" == *"$workspace"* ]]; then
      local filter="" word
      for word in "${group[@]}"; do
        if [[ "$word" =~ ^\[([a-z_0-9]+)\]$ ]]; then
          filter="-filter_complex ${input_label}${chains[${BASH_REMATCH[1]}]}${word}"
        fi
      done
      echo "${head[*]} ${filter} ${group[*]}"
      group=()
    fi
  done
}

# Runs a command under /usr/bin/time and appends its wall time and its CPU time (user + system of
# the command and of every descendant it waited for: the agent reaps its ffmpeg processes) in ms
# to the arrays named <prefix>_wall and <prefix>_cpu.
timed() { # prefix command...
  local -n wall_ref="$1_wall" cpu_ref="$1_cpu"
  shift
  local report="$work/time.out" e u s
  /usr/bin/time -f '%e %U %S' -o "$report" "$@" || return 1
  read -r e u s <"$report"
  wall_ref+=("$(awk -v x="$e" 'BEGIN { printf "%d", x * 1000 }')")
  cpu_ref+=("$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%d", (u + s) * 1000 }')")
}

# A shell that runs the commands of a file (one per line, words separated by single spaces) in
# order: bash -c "$replay" replay <commands-file> <stderr-log>.
# shellcheck disable=SC2016 # expanded by that shell
replay='while read -r -a w; do "${w[@]}" >/dev/null 2>>"$2" || { echo "failed: ${w[*]}" >&2; exit 1; }; done <"$1"'

# A fresh workspace-like directory with the source, for a replay.
replay_dir() { # dir
  mkdir -p "$1/output" "$1/overview_frames"
  cp "$clip" "$1/bench_clip.mp4" # the agent's copy is part of its time; this one is not
}

agent_wall=() agent_cpu=() direct_wall=() direct_cpu=() separate_wall=() separate_cpu=()
for ((run = 1; run <= RUNS; run++)); do
  # --- the agent ---
  out="$work/agent-$run"
  timed agent "$agent" task run --type encoding --source "$clip" --out "$out" --task-id bench \
    >"$work/agent-$run.stdout" 2>"$work/agent-$run.stderr" \
    || { cat "$work/agent-$run.stderr" >&2; die "the agent run failed"; }
  workspace="$out/bench"
  mapfile -t commands < <(sed -n 's/^\[[^]]*\] \$ //p' "$workspace/info_script.log")
  ((${#commands[@]} > 0)) || die "no command lines in $workspace/info_script.log"

  # --- the same commands, directly ---
  direct="$work/direct-$run"
  replay_dir "$direct"
  for line in "${commands[@]}"; do echo "${line//"$workspace"/"$direct"}"; done >"$direct/commands.txt"
  timed direct bash -c "$replay" replay "$direct/commands.txt" "$direct/stderr.log" || die "the replay failed"
  log "run $run: agent ${agent_wall[-1]} ms wall / ${agent_cpu[-1]} ms CPU, direct ${direct_wall[-1]} / ${direct_cpu[-1]} (${#commands[@]} commands)"

  # The replay must have produced every media file the agent published (the agent writes the
  # JSON, VTT, master playlist and log itself).
  while read -r file; do
    case "$file" in
      *.json | *.vtt | livestream.m3u8 | encoding.log) continue ;;
    esac
    [[ -s "$direct/output/$file" ]] || die "the replay did not produce $file"
  done < <(cd "$workspace/output" && ls)

  # --- the encode step as one ffmpeg per output ---
  if [[ "$SEPARATE" == 1 ]]; then
    separate="$work/separate-$run"
    replay_dir "$separate"
    for line in "${commands[@]}"; do
      if [[ "$line" == *" -filter_complex "*split=* ]]; then
        split_encode "$line" "$workspace"
      else
        echo "$line"
      fi
    done | while IFS= read -r line; do echo "${line//"$workspace"/"$separate"}"; done >"$separate/commands.txt"
    timed separate bash -c "$replay" replay "$separate/commands.txt" "$separate/stderr.log" || die "the separate run failed"
    log "run $run: one ffmpeg per output ${separate_wall[-1]} ms wall / ${separate_cpu[-1]} ms CPU ($(wc -l <"$separate/commands.txt") commands)"
  fi
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
aw=$(median "${agent_wall[@]}") ac=$(median "${agent_cpu[@]}")
dw=$(median "${direct_wall[@]}") dc=$(median "${direct_cpu[@]}")
labels=$(sed -n 's/^\[\([^]]*\)\] \$ .*/\1/p' "$work/agent-1/bench/info_script.log" | paste -sd, -)
outputs=$(cd "$work/agent-1/bench/output" && ls | wc -l)

cat <<EOF

worker-agent task run --type encoding vs the same commands from the shell, $(date -u +%Y-%m-%dT%H:%MZ)
machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $(ffmpeg -hide_banner -version | head -1 | cut -d' ' -f1-3)
clip: ${SECONDS_OF_VIDEO} s ${SIZE} 25 fps testsrc2 + 440 Hz sine, $(du -k "$clip" | cut -f1) KiB
agent commands: ${labels}; outputs: ${outputs} files; runs: ${RUNS} (alternating), medians below
agent wall ms: ${agent_wall[*]}; CPU ms: ${agent_cpu[*]}
direct wall ms: ${direct_wall[*]}; CPU ms: ${direct_cpu[*]}

|                                | wall (ms) | CPU user+sys (ms) |
|--------------------------------|-----------|-------------------|
| agent                          | ${aw} | ${ac} |
| same commands from the shell   | ${dw} | ${dc} |
| ratio agent/direct             | $(ratio "$aw" "$dw") | $(ratio "$ac" "$dc") |
EOF
if [[ "$SEPARATE" == 1 ]]; then
  sw=$(median "${separate_wall[@]}") sc=$(median "${separate_cpu[@]}")
  cat <<EOF
| one ffmpeg per output (shell)  | ${sw} | ${sc} |
| ratio separate/direct          | $(ratio "$sw" "$dw") | $(ratio "$sc" "$dc") |

separate wall ms: ${separate_wall[*]}; CPU ms: ${separate_cpu[*]}
EOF
fi
echo "agent realtime factor (wall): $(awk -v a="$aw" -v s="$SECONDS_OF_VIDEO" 'BEGIN { printf "%.2fx", s * 1000 / a }')"
