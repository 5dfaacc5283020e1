#!/usr/bin/env bash
# Build the real Tilt CLI once into ~/.cache/flotilla/tools/tilt-<version>/tilt, the judge of
# bench/dev_tilt_compare.py. Flotilla never runs tilt; this is a reference client only.
#
# `go install tilt@vX` refuses tilt's module because its go.mod has `replace` directives, so we
# download the exact module version from the Go proxy, build inside a copy of it (its own go.mod,
# go.sum and replaces apply unchanged) and keep only the binary. The web UI assets are not needed
# for `tilt alpha tiltfile-result`. Second run is a no-op. Usage: bench/build_tilt.sh [vX.Y.Z]
set -euo pipefail
version="${1:-${TILT_VERSION:-v0.34.0}}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/flotilla/tools/tilt-${version}"
target="$cache/tilt"
want="${version#v}"
if [[ -x "$target" ]] && "$target" version 2>/dev/null | grep -q "v${want}"; then
  echo "$target"; exit 0
fi
command -v go >/dev/null || { echo "cannot build tilt: no go on PATH" >&2; exit 1; }
# cgo as in tilt's goreleaser (tree-sitter for `tilt lsp`); its vendor/ is incomplete in the module zip.
export GOTOOLCHAIN=local CGO_ENABLED=1 GOFLAGS=-mod=mod
mkdir -p "$cache"
work="$(mktemp -d "$cache/build-XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"; rmdir "$cache" 2>/dev/null || true' EXIT
dir="$(cd "$work" && go mod download -json "github.com/tilt-dev/tilt@${version}" \
  | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["Error"]) if "Error" in d else print(d["Dir"])')"
cp -r "$dir" "$work/src" && chmod -R u+w "$work/src"
# tilt stamps its version from ldflags (cmd/tilt/main.go: version, date, set by goreleaser).
ldflags="-s -w -X main.version=${want} -X main.date=$(date -u +%Y-%m-%d)"
(cd "$work/src" && nice go build -p "${GO_BUILD_P:-1}" -trimpath -ldflags "$ldflags" -o "$work/tilt" ./cmd/tilt)
mv "$work/tilt" "$target"
echo "$target"
