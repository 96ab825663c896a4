#!/usr/bin/env bash
# Release build of worker-agent (`--profile dist`), ready for the offline signing step:
#
#   scripts/build-worker.sh 1.4.0            # -> dist/worker-agent-1.4.0-<target> (+ .sha256)
#   OUT_DIR=out TARGET=aarch64-unknown-linux-gnu scripts/build-worker.sh 1.4.0
#
# The version and the commit are embedded (`worker-agent --version` prints them; see
# scripts/build_info.rs): WORKER_AGENT_VERSION=<version>, WORKER_BUILD_COMMIT=<git HEAD> and
# SOURCE_DATE_EPOCH=<commit time>, so two builds of one commit are the same. The binary is
# stripped and its SHA-256 written next to it. Nothing is signed here: the script prints the
# `worker-release sign-release` command to run on the offline signing machine.
set -euo pipefail
cd "$(dirname "$0")/.."

version="${1:-}"
if ! [[ "$version" =~ ^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$ ]]; then
  echo "usage: $0 VERSION   (a semantic version, e.g. 1.4.0)" >&2
  exit 2
fi
target="${TARGET:-$(rustc -vV | sed -n 's/^host: //p')}"
out_dir="${OUT_DIR:-dist}"

commit="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
if [ "$commit" != unknown ] && ! git diff --quiet HEAD -- 2>/dev/null; then
  echo "warning: the working tree has uncommitted changes; the binary embeds $commit anyway" >&2
fi
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"

echo "==> building worker-agent $version ($commit) for $target" >&2
WORKER_AGENT_VERSION="$version" WORKER_BUILD_COMMIT="$commit" SOURCE_DATE_EPOCH="$epoch" \
  cargo build --profile dist --locked -p worker-agent --bin worker-agent --target "$target"

# `[profile.dist]` in Cargo.toml: release + fat LTO, one codegen unit, symbols stripped.
built="${CARGO_TARGET_DIR:-target}/$target/dist/worker-agent"
mkdir -p "$out_dir"
artifact="$out_dir/worker-agent-$version-$target"
cp "$built" "$artifact.tmp"
strip_tool="${STRIP:-strip}"
if ! command -v "$strip_tool" >/dev/null; then
  echo "error: $strip_tool not found (Debian: apt-get install binutils; cross builds: STRIP=<target>-strip)" >&2
  exit 1
fi
"$strip_tool" --strip-all "$artifact.tmp"
chmod 0755 "$artifact.tmp"
mv "$artifact.tmp" "$artifact"

# The stripped binary must still be the version we meant (native builds only).
if [ "$target" = "$(rustc -vV | sed -n 's/^host: //p')" ]; then
  reported="$("$artifact" --version)"
  case "$reported" in
    "worker-agent $version (commit $commit,"*) ;;
    *) echo "error: $artifact reports '$reported', not $version ($commit)" >&2; exit 1 ;;
  esac
  echo "$reported" >&2
fi

(cd "$out_dir" && sha256sum "$(basename "$artifact")" > "$(basename "$artifact").sha256")
size="$(wc -c < "$artifact" | tr -d ' ')"
sha="$(cut -d' ' -f1 "$artifact.sha256")"

cat <<EOF
artifact: $artifact
size:     $size bytes
sha256:   $sha  ($artifact.sha256)

Next, offline on the signing machine (after checking the sha256 above):
  sha256sum -c $(basename "$artifact").sha256
  worker-release sign-release --version $version --minimum-version <oldest version that may update to it> \\
      --notes "..." --artifact $target=$(basename "$artifact") \\
      [--delta-from <the previous version's artifact, for a delta update>] \\
      --key keys/release-1.key --out release-$version.json
Then publish and promote to canary (DEPLOYMENT.md, "Release flow"):
  worker-release publish release-$version.json --artifact $(basename "$artifact")
  worker-release promote --channel canary --version $version
EOF
