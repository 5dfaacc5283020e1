#!/usr/bin/env bash
# Time a cold `make test` step by step, as a fresh machine would run it: every cache empty and
# outside the repository. Run from a fresh clone; prints one line per step and the total.
# Usage: scripts/cold-make-test.sh [CACHE_DIR]   (default: a new temporary directory)
set -uo pipefail
cd "$(dirname "$0")/.."
cache=${1:-$(mktemp -d)}
export XDG_CACHE_HOME=$cache/xdg GOCACHE=$cache/gocache GOMODCACHE=$cache/gomod
export PIP_NO_CACHE_DIR=1 npm_config_cache=$cache/npm
start=$(date +%s)
step() {
    local began rc
    began=$(date +%s)
    "$@" > "$cache/${1##*/}-${2:-}.log" 2>&1
    rc=$?
    echo "$* $(($(date +%s) - began))s rc=$rc load=$(cut -d' ' -f1-3 /proc/loadavg)"
    return $rc
}
for target in venv lint testenv-build tools assets; do
    step make "$target" || exit 1
done
step .venv/bin/pytest
echo "total $(($(date +%s) - start))s (logs in $cache)"
