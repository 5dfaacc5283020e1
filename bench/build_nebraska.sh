#!/usr/bin/env bash
# Build Nebraska 3.0.0 (github.com/flatcar/nebraska) from source, for bench/updates_checkin.py.
#
# The Go module proxy refuses github.com/flatcar/*, so both Nebraska and the go-omaha version its
# go.mod pins are taken from git checkouts; go-omaha is wired in with a `replace`, and every other
# dependency comes from the Go module proxy. Nebraska 3.0.0 listens on all interfaces: a one-line
# patch of backend/cmd/nebraska/main.go binds it to 127.0.0.1 instead.
#
# Never run by the tests. Usage:
#   bench/build_nebraska.sh NEBRASKA_GIT_DIR GO_OMAHA_GIT_DIR OUT_DIR
# where the two git dirs are clones (bare is fine) of flatcar/nebraska and flatcar/go-omaha.
# Prints the path of the built binary; pass it to the benchmark as FLOTILLA_BENCH_NEBRASKA.
set -euo pipefail

NEBRASKA_GIT=${1:?usage: build_nebraska.sh NEBRASKA_GIT_DIR GO_OMAHA_GIT_DIR OUT_DIR}
OMAHA_GIT=${2:?go-omaha git dir}
OUT=${3:?output dir}
TAG=${NEBRASKA_TAG:-3.0.0}

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -rf "$OUT/nebraska" "$OUT/go-omaha"
mkdir -p "$OUT/nebraska" "$OUT/go-omaha"

git --git-dir="$NEBRASKA_GIT" archive "$TAG" | tar -x -C "$OUT/nebraska"
# The pinned go-omaha is a pseudo-version: v0.0.2-<date>-<12 hex of the commit>.
pin=$(awk '$1 == "github.com/flatcar/go-omaha" {print $2}' "$OUT/nebraska/backend/go.mod")
commit=${pin##*-}
[ -n "$commit" ] || { echo "no go-omaha pin in go.mod" >&2; exit 1; }
git --git-dir="$OMAHA_GIT" archive "$commit" | tar -x -C "$OUT/go-omaha"
echo "nebraska $TAG, go-omaha $pin (commit $commit)" >&2

cd "$OUT/nebraska/backend"
# Loopback only (3.0.0 binds ":PORT", i.e. every interface).
sed -i 's|server.Start(fmt.Sprintf(":%d", conf.ServerPort))|server.Start(fmt.Sprintf("127.0.0.1:%d", conf.ServerPort))|' \
  cmd/nebraska/main.go
grep -q '"127.0.0.1:%d"' cmd/nebraska/main.go || { echo "loopback patch did not apply" >&2; exit 1; }
go mod edit -replace "github.com/flatcar/go-omaha=$OUT/go-omaha"
# go.sum already holds every other module's hash; GOFLAGS=-mod=mod lets go record nothing new for
# the replaced (local) module.
GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$OUT/nebraska-server" ./cmd/nebraska
echo "$OUT/nebraska-server"
