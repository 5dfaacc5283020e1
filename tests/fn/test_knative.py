"""Against a running Knative Serving v0.42.2 with Traefik's KIngress (``testenv up --knative``),
both built from their Go modules: the webhook admits every field ``fn deploy`` renders, and a
function deploys, answers through the ingress, scales to zero, comes back through the activator,
and a second deploy makes a new Revision that takes the traffic."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource

from flotilla.core.kube import apply_raw, list_raw, wait_until
from flotilla.fn.deploy import invoke_service
from flotilla.fn.knative import get_ksvc
from flotilla.fn.manifests import knative_service
from flotilla.fn.model import load_spec

from .test_cluster import _project, fn

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
KnativeService = create_namespaced_resource("serving.knative.dev", "v1", "Service", "services")
REAL = {"flotilla.dev/real-node": "true"}


@pytest.fixture(scope="module")
def knative(test_cluster: Any, real_node: str, kube: Client) -> None:
    up = test_cluster.flotilla(
        "up", "--real-node", "--real-node-name", real_node, "--knative", check=False
    )
    assert up.returncode == 0, up.stderr
    # Knative's shortest windows, so a test sees scale-to-zero in seconds rather than minutes.
    apply_raw(
        kube,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "config-autoscaler", "namespace": "knative-serving"},
            "data": {"stable-window": "6s", "scale-to-zero-grace-period": "6s"},
        },
        field_manager="flotilla-tests",
    )


def _every_field(project: Path) -> None:
    spec_file = project / "function.yaml"
    doc = yaml.safe_load(spec_file.read_text())
    doc.update(timeout=30, concurrency=4, envFrom=[{"configMap": "settings"}, {"secret": "db"}])
    doc["env"] = {"MODE": {"configMap": "settings", "key": "mode"}, "PLAIN": "yes"}
    doc["env"]["DB_PASSWORD"] = {"secret": "db", "key": "password"}
    doc["volumes"] = [
        {"path": "/etc/creds", "secret": "db"},
        {"path": "/etc/conf", "configMap": "settings"},
        {"path": "/data", "pvc": "data-claim"},
        {"path": "/scratch", "emptyDir": {}},
    ]
    doc["scale"] = {"min": 1, "max": 3, "target": 50, "metric": "rps", "utilization": 80}
    doc["deploy"].update(
        nodeSelector=REAL,
        resources={"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
        labels={"team": "fleet"},
        annotations={"owner": "fleet"},
    )
    spec_file.write_text(yaml.safe_dump(doc))


def test_the_webhook_admits_every_field_fn_deploy_renders(
    kube: Client, namespace: str, knative: None, tmp_path: Path
) -> None:
    project = _project(tmp_path, "python", "kn-fields")
    _every_field(project)
    rendered = knative_service(
        load_spec((project / "function.yaml").read_text()), "flotilla.local/kn:v1", namespace
    )
    # Defaulting and validation by Knative's own webhook (not only the CRD schema).
    stored = kube.create(KnativeService.from_dict(rendered), dry_run=True)
    template = stored["spec"]["template"]
    assert template["spec"]["containerConcurrency"] == 4
    assert template["spec"]["nodeSelector"] == REAL
    assert template["metadata"]["annotations"]["autoscaling.knative.dev/metric"] == "rps"
    # ... and it does refuse what Knative does not allow: a second port.
    rendered["spec"]["template"]["spec"]["containers"][0]["ports"].append({"containerPort": 9})
    with pytest.raises(ApiError) as info:
        kube.create(KnativeService.from_dict(rendered), dry_run=True)
    assert "more than one container port" in str(info.value)


def _build(project: Path, name: str, registry: str, dockerd: str) -> str:
    built = json.loads(
        fn("build", "-C", str(project), "--tag", f"flotilla.local/{name}:{uuid.uuid4().hex[:8]}",
           "--push", registry, "--docker-host", dockerd, "-o", "json")
    )  # fmt: skip
    return str(built["pushed"])


def _pods(kube: Client, namespace: str, name: str) -> list[dict[str, Any]]:
    labels = {"serving.knative.dev/service": name}
    pods = list_raw(kube, "v1", "Pod", namespace=namespace, labels=labels)
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def test_deploy_invoke_scale_to_zero_and_back_and_a_new_revision(
    tmp_path: Path,
    kube: Client,
    namespace: str,
    kubeconfig: Path,
    knative: None,
    dockerd: str,
    test_cluster: Any,
) -> None:
    registry = json.loads(test_cluster.flotilla("status", "-o", "json").stdout)["registry"]
    name = "kn-e2e"
    project = _project(tmp_path, "python", name, target="knative", nodeSelector=REAL)
    image = _build(project, name, registry, dockerd)
    cli = ["-C", str(project), "-n", namespace, "--kubeconfig", str(kubeconfig)]
    out = fn("deploy", *cli, "--image", image, "--timeout", "180")
    assert "ready in" in out and f"at http://{name}.{namespace}.example.com" in out, out
    assert f"(revision {name}-00001)" in out

    # Through the ingress (Traefik's KIngress), with the Knative Service's host.
    answer = fn("invoke", "/?name=knative", "--cluster", *cli)
    assert json.loads(answer) == {"message": "Hello, knative!"}
    listed = fn("list", "-n", namespace, "--kubeconfig", str(kubeconfig))
    assert [name, "knative", "yes"] == listed.splitlines()[1].split()[1:4], listed

    # No traffic: the autoscaler takes the Revision to zero pods.
    started = time.monotonic()
    wait_until(
        lambda: True if not _pods(kube, namespace, name) else None,
        timeout=180,
        interval=1.0,
        what=f"{name} to scale to zero",
    )
    to_zero = time.monotonic() - started

    # A request now waits in the activator while a pod starts, then is answered.
    started = time.monotonic()
    status, _, body = invoke_service(kube, namespace, name, "/?name=cold", timeout=120)
    from_zero = time.monotonic() - started
    assert (status, json.loads(body)) == (200, {"message": "Hello, cold!"})
    assert len(_pods(kube, namespace, name)) == 1

    # A second deploy: a new Revision takes all the traffic.
    source = project / "func.py"
    source.write_text(source.read_text().replace("Hello,", "Hi,"))
    out = fn(
        "deploy", *cli, "--image", _build(project, name, registry, dockerd), "--timeout", "180"
    )
    assert f"(revision {name}-00002)" in out, out
    status, _, body = invoke_service(kube, namespace, name, "/?name=again", timeout=60)
    assert (status, json.loads(body)) == (200, {"message": "Hi, again!"})
    traffic = get_ksvc(kube, namespace, name)["status"]["traffic"]  # type: ignore[index]
    assert [(t["revisionName"], t["percent"]) for t in traffic] == [(f"{name}-00002", 100)]
    print(f"knative: to zero {to_zero:.1f}s after the last request, from zero {from_zero:.2f}s")
