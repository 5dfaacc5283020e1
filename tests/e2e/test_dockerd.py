"""dockerd builds, the registry stores, the real node runs: the path every image of ours takes."""

from __future__ import annotations

import base64
import io
import json
import tarfile
import uuid
from pathlib import Path

import httpx
import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Pod

from flotilla.core.kube import wait_until
from tests.conftest import TestCluster
from tests.e2e.test_real_node import ON_REAL_NODE, apply, kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def engine(docker_host: str) -> httpx.Client:
    socket_path = docker_host.removeprefix("unix://")
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=socket_path), base_url="http://docker/v1.41", timeout=120
    )


def context_tar(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_base_images_are_loaded(dockerd: str) -> None:
    with engine(dockerd) as client:
        for reference in (
            "flotilla.local/python:3.11",
            "flotilla.local/busybox:latest",
            "flotilla.local/node:20",
        ):
            reply = client.get(f"/images/{reference}/json")
            assert reply.status_code == 200, reference


def test_an_image_built_in_dockerd_runs_on_the_real_node(
    dockerd: str,
    real_node: str,
    test_cluster: TestCluster,
    kube: Client,
    kubeconfig: Path,
    namespace: str,
) -> None:
    registry = json.loads(test_cluster.flotilla("status", "-o", "json").stdout)["registry"]
    marker = uuid.uuid4().hex
    reference = f"{registry}/built:{marker[:12]}"
    dockerfile = 'FROM flotilla.local/busybox:latest\nCOPY msg /msg\nCMD ["cat", "/msg"]\n'
    with engine(dockerd) as client:
        build = client.post(
            "/build",
            params={"t": reference, "q": "1"},
            content=context_tar({"Dockerfile": dockerfile, "msg": marker}),
            headers={"Content-Type": "application/x-tar"},
        )
        assert build.status_code == 200, build.text
        assert "errorDetail" not in build.text, build.text
        auth = base64.urlsafe_b64encode(b"{}").decode()
        name, tag = reference.rsplit(":", 1)
        push = client.post(
            f"/images/{name}/push", params={"tag": tag}, headers={"X-Registry-Auth": auth}
        )
        assert push.status_code == 200, push.text
        assert "errorDetail" not in push.text, push.text

    apply(
        kubeconfig,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "built"},
            "spec": {
                "nodeSelector": ON_REAL_NODE,
                "restartPolicy": "Never",
                "containers": [{"name": "built", "image": reference}],
            },
        },
    )

    def finished() -> str | None:
        pod = kube.get(Pod, "built", namespace=namespace)
        phase = pod.status.phase if pod.status else None
        return phase if phase in {"Succeeded", "Failed"} else None

    assert wait_until(finished, timeout=90, what="the built image's pod") == "Succeeded"
    assert kubectl(kubeconfig, "-n", namespace, "logs", "built").stdout.strip() == marker
