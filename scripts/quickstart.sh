#!/usr/bin/env bash
# The README's first command. Builds the tools, then walks the signed-release trust chain on
# real files: keys -> root -> signed release -> channel statement -> verification, and shows
# that a tampered release is refused. Everything lands under one directory (default
# ./demo-<timestamp>, or $1).
#
# The update server and agents join this walk-through as they land (see the open issues); the
# demo already uses the same commands a release engineer runs.
set -euo pipefail
root_dir="$(cd "$(dirname "$0")/.." && pwd)"
demo="${1:-$root_dir/demo-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$demo"
demo="$(cd "$demo" && pwd)"

step=0
say() { step=$((step + 1)); printf '\n[%d] %s\n' "$step" "$*"; }

say "building worker-release, update-server and worker-agent (release profile)"
cargo build --release --quiet --manifest-path "$root_dir/Cargo.toml" --workspace --bins
bin="$root_dir/target/release"
wr="$bin/worker-release"
cd "$demo"

say "generating keys (offline root and release keys, online channel key) in $demo/keys"
for name in root-1 release-1 channel; do "$wr" keygen --out keys --name "$name" | sed 's/^/    /'; done

say "creating root.json (version 1) that trusts them"
"$wr" init-root --root-key keys/root-1.pub --release-key keys/release-1.pub \
  --channel-key keys/channel.pub --key keys/root-1.key --out root.json | sed 's/^/    /'

say "building the agent at version 1.1.0 and signing it as a release"
WORKER_AGENT_VERSION=1.1.0 cargo build --release --quiet --manifest-path "$root_dir/Cargo.toml" \
  -p worker-agent --target-dir "$demo/build-1.1.0"
cp "$demo/build-1.1.0/release/worker-agent" worker-agent-1.1.0
"$wr" sign-release --version 1.1.0 --minimum-version 0.1.0 --notes "quickstart demo release" \
  --artifact "$("$bin/worker-agent" --version | sed 's/.*, \(.*\))$/\1/')=worker-agent-1.1.0" \
  --key keys/release-1.key --out release.json | sed 's/^/    /'

say "signing a stable channel statement that rolls it out to 10% of the fleet"
"$wr" sign-channel --channel stable --serial 1 --release release.json --percent 10 \
  --expires 24h --key keys/channel.key --out channel.json | sed 's/^/    /'

say "verifying everything against root.json, the way an agent does"
"$wr" verify --root root.json release.json --artifact worker-agent-1.1.0 | sed 's/^/    /'
"$wr" verify --root root.json channel.json | sed 's/^/    /'
"$wr" inspect channel.json | sed 's/^/    /'

say "tampering with the release (changing its notes) and verifying again: it must be refused"
sed 's/quickstart demo release/now with a backdoor/' release.json > tampered-release.json
if "$wr" verify --root root.json tampered-release.json 2>&1 | sed 's/^/    /'; then
  echo "    UNEXPECTED: the tampered release verified" >&2
  exit 1
fi

printf '\nDone. Everything is under %s\n' "$demo"
