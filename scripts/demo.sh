#!/usr/bin/env bash
# `make demo`: run what Flotilla has, for real, on embedded defaults, then clean up.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
STATE=$(mktemp -d /tmp/flotilla-demo.XXXXXX)
trap 'flotilla testenv down --state-dir "$STATE/kube" >/dev/null 2>&1 || true; rm -rf "$STATE"' EXIT

echo "== a real Kubernetes control plane (built once from Go modules; first run takes minutes)"
flotilla testenv build
KUBECONFIG_PATH=$(flotilla testenv up --nodes 3 --state-dir "$STATE/kube")
KUBECTL="$(python -c 'from flotilla.testenv.build import BuildSpec; print(BuildSpec().binary("kubectl"))')"
"$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" version
"$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" get nodes -o wide
flotilla testenv status --state-dir "$STATE/kube"
