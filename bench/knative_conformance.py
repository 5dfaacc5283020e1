"""Run Knative's KIngress conformance suite against Traefik's Knative provider in the test cluster.

Usage: .venv/bin/python bench/knative_conformance.py [--state-dir DIR] [--run REGEX] [--keep]

The suite is ``knative.dev/networking/test/conformance/ingress`` at the version Knative Serving
v0.42.2 pins. It is run as ``go test`` of a two-file wrapper module written here (the suite is a
library: ``ingress.RunConformance(t)``). Its test images (grpc-ping, httpproxy, retry, runtime,
timeout, wsserver) are built from the same module the way ``ko`` builds them and pushed to the
environment's registry as ``flotilla.local/knative-test/<name>:latest``. The suite's pods carry no
nodeSelector, so the kwok nodes are cordoned for the run (they only pretend to run pods). The
suite reaches Traefik's public entry point through its NodePort on the real node's address
(``--ingressendpoint``), as Knative's own CI does on kind.

Needs the machine to itself: it starts an environment with a real node (one at a time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from flotilla.core.kube import client_from_kubeconfig
from flotilla.testenv.images import ImageSpec, files_layer, images_cache_dir, write_image
from flotilla.testenv.knative import INGRESS_CLASS, NETWORKING
from flotilla.testenv.ko import go_build, go_env
from flotilla.testenv.ko_install import load_images

TEST_IMAGES = ("grpc-ping", "httpproxy", "retry", "runtime", "timeout", "wsserver")
REPO = "flotilla.local/knative-test"
GO_MOD = f"""module flotilla.dev/bench/knativeconformance

go 1.22

require {NETWORKING[0]} {NETWORKING[1]}
"""
TEST_GO = """package conformance

import (
\t"testing"

\t"knative.dev/networking/test/conformance/ingress"
)

// The suite is a library; this is the whole of the test binary.
func TestIngressConformance(t *testing.T) { ingress.RunConformance(t) }
"""


def _flotilla(*args: str, state_dir: Path) -> str:
    cmd = [sys.executable, "-m", "flotilla", "testenv", *args, "--state-dir", str(state_dir)]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def build_test_images(cache: Path) -> dict[str, Path]:
    bin_dir = cache / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    missing = [n for n in TEST_IMAGES if not (bin_dir / n).is_file()]
    if missing:
        go_build(NETWORKING[0], NETWORKING[1], [f"test/test_images/{n}" for n in missing], bin_dir)
    archives = {}
    for name in TEST_IMAGES:
        reference = f"{REPO}/{name}:latest"
        archive = cache / f"{name}.oci.tar"
        if not archive.is_file():
            spec = ImageSpec(
                reference, "binary", cmd=(), entrypoint=(f"/ko-app/{name}",),
                env=("PATH=/ko-app", "KO_DATA_PATH=/var/run/ko"),
            )  # fmt: skip
            write_image(archive, (files_layer({f"ko-app/{name}": bin_dir / name}),), spec)
        archives[reference] = archive
    return archives


def build_suite(cache: Path) -> Path:
    module = cache / "suite"
    module.mkdir(parents=True, exist_ok=True)
    (module / "go.mod").write_text(GO_MOD)
    (module / "conformance_test.go").write_text(TEST_GO)
    binary = cache / "conformance.test"
    if not binary.is_file():
        subprocess.run(["go", "mod", "tidy"], cwd=module, env=go_env(), check=True)
        subprocess.run(
            ["go", "test", "-c", "-o", str(binary), "."], cwd=module, env=go_env(), check=True
        )
    return binary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--run", default="", help="go test -run regex (default: all)")
    parser.add_argument("--skip", default="", help="the suite's own --skip-tests list")
    parser.add_argument("--keep", action="store_true", help="leave the environment running")
    args = parser.parse_args()
    cache = images_cache_dir().parent / f"knative-conformance-{NETWORKING[1]}"
    started = time.monotonic()
    archives = build_test_images(cache)
    binary = build_suite(cache)
    built = time.monotonic() - started
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="kn-conformance-"))
    out = _flotilla("up", "--real-node", "--knative", state_dir=state_dir)
    kubeconfig = Path(out.strip().splitlines()[-1])
    try:
        from flotilla.testenv.components import Layout

        load_images(Layout(state_dir), ["real-node"], archives)
        with client_from_kubeconfig(kubeconfig) as client:
            address = _prepare(client)
        cmd = [
            str(binary), "-test.v", "-test.timeout", "60m",
            f"-kubeconfig={kubeconfig}", f"-ingressClass={INGRESS_CLASS}",
            f"-dockerrepo={REPO}", "-tag=latest", f"-ingressendpoint={address}",
        ]  # fmt: skip
        if args.run:
            cmd += ["-test.run", args.run]
        if args.skip:
            cmd += [f"-skip-tests={args.skip}"]
        run_started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
        log = cache / "last-run.log"
        log.write_text(proc.stdout + proc.stderr)
        results = _results(proc.stdout)
        counts = Counter(results.values())
        print(json.dumps({"results": results}, indent=1))
        print(
            f"conformance: {counts['PASS']} passed, {counts['FAIL']} failed, "
            f"{counts['SKIP']} skipped in {time.monotonic() - run_started:.0f}s "
            f"(build {built:.0f}s; load {os.getloadavg()[0]:.1f}); log: {log}"
        )
        return 0 if proc.returncode == 0 else 1
    finally:
        if not args.keep:
            _flotilla("down", state_dir=state_dir)


def _prepare(client: object) -> str:
    """Cordon the kwok nodes, create the suite's namespace; the real node's address."""
    from lightkube import Client
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import Namespace, Node

    assert isinstance(client, Client)
    address = ""
    for node in client.list(Node):
        assert node.metadata is not None and node.metadata.name
        if (node.metadata.labels or {}).get("flotilla.dev/real-node") == "true":
            addresses = node.status.addresses if node.status else None
            address = next(a.address for a in addresses or [] if a.type == "InternalIP")
        else:
            client.patch(Node, node.metadata.name, {"spec": {"unschedulable": True}})
    client.apply(Namespace(metadata=ObjectMeta(name="serving-tests")), field_manager="bench")
    return address


def _results(stdout: str) -> dict[str, str]:
    """Leaf test -> PASS/FAIL/SKIP, from ``go test -v`` lines like ``--- PASS: TestX/a (1s)``."""
    results: dict[str, str] = {}
    for line in stdout.splitlines():
        stripped = line.strip()
        for word in ("PASS", "FAIL", "SKIP"):
            if stripped.startswith(f"--- {word}: "):
                name = stripped.split()[2]
                results[name] = word
    parents = {n.rsplit("/", 1)[0] for n in results if "/" in n}
    return {n: r for n, r in sorted(results.items()) if n not in parents}


if __name__ == "__main__":
    raise SystemExit(main())
