#!/usr/bin/env bash
# Provisions a Whisper model for the `transcription` task: copies a CTranslate2 Whisper model
# directory into WHISPER_MODELS_DIR/NAME after checking its files by sha256 against
# agent/runner/whisper/models.json, and leaves a manifest (worker-agent-model.json) of what was
# checked. The task checks the files again before each load.
#
#   scripts/provision-whisper-model.sh NAME SOURCE_DIR [MODELS_DIR] [--sha256 HEX] [--origin TEXT]
#
# NAME        a model of the registry (tiny, small, medium, large, turbo; aliases large-v3,
#             large-v3-turbo), or another name with --sha256 (the sha256 of its model.bin, from
#             where it was published) for a model the registry does not know.
# SOURCE_DIR  the model's files (model.bin, config.json, tokenizer.json, vocabulary.*), e.g. a
#             copy of Systran/faster-whisper-medium brought from a machine that can download it.
# MODELS_DIR  default $WHISPER_MODELS_DIR.
#
# Runs the venv's python ($WHISPER_PYTHON, default /opt/worker-agent/whisper-venv/bin/python).
# Nothing is half-written: the copy is made beside the target and renamed into place. Prints one
# JSON line on stdout ({"ok": true, "model": ..., "path": ...}); errors on stderr, exit code 1
# (broken) or 2 (refused: a file is missing or its hash differs).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
script="$repo/agent/runner/whisper/transcribe.py"
python="${WHISPER_PYTHON:-/opt/worker-agent/whisper-venv/bin/python}"

usage() {
  sed -n '7,8p' "${BASH_SOURCE[0]}" | sed 's/^# *//' >&2
  exit 2
}

[ $# -ge 2 ] || usage
name="$1" source="$2"
shift 2
models_dir="${WHISPER_MODELS_DIR:-}"
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then
  models_dir="$1"
  shift
fi
[ -n "$models_dir" ] || { echo "provision-whisper-model: no MODELS_DIR given and WHISPER_MODELS_DIR is not set" >&2; exit 2; }
[ -x "$python" ] || { echo "provision-whisper-model: WHISPER_PYTHON=$python is not a python: run scripts/setup-whisper.sh first" >&2; exit 1; }

exec "$python" -I "$script" --provision "$name" --from "$source" --models-dir "$models_dir" "$@"
