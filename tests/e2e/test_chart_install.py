"""Flotilla installs itself: its chart, published by `flotilla charts publish`, installed by helm.

One module-scoped release on two real nodes; the tests run in the order the issue lists them and
share it: a user volume, the controller killed mid-provision, 50 machines checking in through the
Service's DNS name, a reboot cycle, an upgrade to a new chart version, an uninstall.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import (
    Namespace,
    Node,
    PersistentVolume,
    PersistentVolumeClaim,
    Pod,
)

from flotilla import __version__
from flotilla.core.kube import to_dict, wait_until
from flotilla.localpv.model import SELECTED_NODE
from flotilla.localpv.resources import LocalVolume
from flotilla.testenv.realnode import RealNodeLayout
from tests.conftest import FLOTILLA, TestCluster
from tests.e2e.test_chart import CHART
from tests.e2e.test_real_node import KUBECTL, ON_REAL_NODE, apply, kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

IMAGE = f"flotilla.local/flotilla:{__version__}"
APP = "e96281a6-d1af-4bde-9a0a-97b76e56dc57"
ADMIN, READER = "admin-e2e-0123456789abcdef", "reader-e2e-0123456789abcdef"
CLASS = "flotilla-e2e"
FLEET = f"""
applications:
  - id: {APP}
    name: Flatcar
    packages:
      - version: 2.0.0
        url: http://payloads.invalid/2.0.0/
        filename: update.gz
        size: 1000
        sha256: 6c3b0e4f0a1d7d2ad3b2f6a5a2b7c1b1e0f1c2d3e4f5a6b7c8d9e0f1a2b3c4e9
    channels: [{{name: stable, package: 2.0.0}}]
    groups:
      - name: stable
        track: stable
        channel: stable
        policy: {{max_updates_per_period: 1, period_interval: 1h, update_timeout: 1h}}
"""


@dataclass
class Release:
    """The installed release and what the tests need to reach it."""

    namespace: str
    users: str
    roots: Path
    values: Path
    repo: Path
    served: Path
    url: str
    env: dict[str, str]

    def helm(self, *args: str) -> str:
        result = subprocess.run(
            [shutil.which("helm") or "helm", *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=self.env,
        )
        assert result.returncode == 0, f"helm {' '.join(args)}: {result.stderr}"
        return result.stdout


def publish(chart: Path, repo: Path, served: Path, url: str) -> None:
    """`flotilla charts publish` into the bare repo's pages branch; refresh the served checkout."""
    done = subprocess.run(
        [*FLOTILLA, "charts", "publish", str(chart), "--repo", str(repo), "--url", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    if served.exists():
        shutil.rmtree(served)
    subprocess.run(
        ["git", "clone", "-q", "--branch", "gh-pages", str(repo), str(served)],
        check=True,
        capture_output=True,
    )


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_: Any) -> None:
        pass


def serve(directory: Path) -> tuple[str, http.server.ThreadingHTTPServer]:
    """A static server on loopback, as GitHub Pages serves the branch."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/", server


def values(roots: Path) -> dict[str, Any]:
    return {
        "nodeSelector": ON_REAL_NODE,
        "localpv": {
            "controller": {"nodeGoneGrace": 30, "agentTimeout": 15},
            "agent": {
                "hostpathRoots": [str(roots)],
                "perNodeSubdirectory": True,  # the two real nodes share this machine's disk
                "heartbeat": 1,
                "usageInterval": 2,
            },
            "storageClass": {"name": CLASS},
        },
        "updates": {
            "enabled": True,
            "tokens": {"adminTokens": ADMIN, "readTokens": READER},
            "database": {"sqlite": {"storageClassName": CLASS}},
        },
        "reboots": {
            "enabled": True,
            "coordinator": {"interval": "1s"},
            "agent": {
                # A reboot here: a new boot id, which is all the agent looks at afterwards.
                "hostReboot": False,
                "rebootCommand": "sh -c 'cat /proc/sys/kernel/random/uuid > /tmp/boot_id'",
                "bootIdFile": "/tmp/boot_id",
                "interval": "1s",
            },
        },
    }


def wait_rollout(kube: Client, namespace: str, timeout: float = 180) -> None:
    def available() -> bool | None:
        for d in kube.list(Deployment, namespace=namespace):
            st = d.status
            want = d.spec.replicas if d.spec else 1
            if st is None or (st.availableReplicas or 0) < (want or 0):
                return None
            if (st.updatedReplicas or 0) < (want or 0):
                return None
        return True

    wait_until(available, timeout=timeout, interval=1, what=f"deployments in {namespace}")


@pytest.fixture(scope="module")
def release(
    kube: Client, kubeconfig: Path, real_nodes: tuple[str, str], test_cluster: TestCluster
) -> Iterator[Release]:
    note = json.loads(test_cluster.flotilla("status", "-o", "json").stdout)["services_note"]
    if note:
        pytest.fail(f"the test environment has no Services: {note}", pytrace=False)
    work = Path(tempfile.mkdtemp(prefix="flotilla-chart-"))
    roots = work / "roots"
    for node in real_nodes:
        (roots / node).mkdir(parents=True)
    repo = work / "pages.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    served = work / "served"
    served.mkdir()
    url, server = serve(served)
    publish(CHART, repo, served, url)
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "HELM_CONFIG_HOME": str(work / "helm" / "config"),
        "HELM_CACHE_HOME": str(work / "helm" / "cache"),
        "HELM_DATA_HOME": str(work / "helm" / "data"),
    }
    tag = uuid.uuid4().hex[:6]
    rel = Release(
        f"flotilla-{tag}", f"users-{tag}", roots, work / "values.yaml", repo, served, url, env
    )
    rel.values.write_text(yaml.safe_dump(values(roots)))
    for ns in (rel.namespace, rel.users):
        kube.create(Namespace(metadata=ObjectMeta(name=ns, labels={"flotilla.dev/test": "true"})))
    rel.helm("repo", "add", "flotilla", url)
    try:
        rel.helm(
            "install",
            "fl",
            "flotilla/flotilla",
            "--version",
            "0.1.0",
            "-n",
            rel.namespace,
            "-f",
            str(rel.values),
            "--wait",
            "--timeout",
            "4m",
        )
        yield rel
    finally:
        subprocess.run(
            [shutil.which("helm") or "helm", "uninstall", "fl", "-n", rel.namespace, "--wait"],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        _clean(kube, kubeconfig, rel, real_nodes)
        server.shutdown()
        server.server_close()
        shutil.rmtree(work, ignore_errors=True)


def _clean(kube: Client, kubeconfig: Path, rel: Release, nodes: tuple[str, str]) -> None:
    """Leave the session's cluster as the other tests expect it: no volumes of ours, and
    ``real-node-2`` cordoned so ``real_node`` tests keep their pods on ``real-node``."""
    for ns in (rel.users, rel.namespace):
        kubectl(kubeconfig, "delete", "namespace", ns, "--wait=false", check=False)
    for pv in kube.list(PersistentVolume):
        if pv.spec and pv.spec.storageClassName == CLASS and pv.metadata and pv.metadata.name:
            kubectl(kubeconfig, "delete", "pv", pv.metadata.name, "--wait=false", check=False)
    for lv in kube.list(LocalVolume):
        name = to_dict(lv)["metadata"]["name"]
        if to_dict(lv).get("spec", {}).get("storageClass") == CLASS:  # ours only
            kubectl(
                kubeconfig,
                "patch",
                "localvolume",
                name,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
                check=False,
            )
            kubectl(kubeconfig, "delete", "localvolume", name, "--wait=false", check=False)
    for node in nodes:  # their agents are gone with the release
        kubectl(kubeconfig, "delete", "localnode", node, "--wait=false", check=False)
    kubectl(kubeconfig, "cordon", nodes[1], check=False)
    for node in nodes:
        kubectl(kubeconfig, "annotate", "node", node, "flotilla.dev/reboot-needed-", check=False)


def pvc(name: str, node: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if node:  # what kube-scheduler writes for a consumer: the test measures the provisioner
        meta["annotations"] = {SELECTED_NODE: node}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta,
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": CLASS,
            "resources": {"requests": {"storage": "10Mi"}},
        },
    }


def pod(name: str, claim: str, script: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": ON_REAL_NODE,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "app",
                    "image": "flotilla.local/busybox:latest",
                    "command": ["busybox", "sh", "-c", script],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }


def phase(kube: Client, name: str, namespace: str) -> str:
    p = kube.get(Pod, name, namespace=namespace)
    return p.status.phase if p.status and p.status.phase else ""


def claim_dirs(roots: Path) -> set[str]:
    return {str(d) for n in roots.iterdir() for d in n.iterdir() if not d.name.startswith(".")}


def test_a_user_claim_gets_a_volume_from_the_in_cluster_controller(
    kube: Client, kubeconfig: Path, release: Release
) -> None:
    apply(kubeconfig, release.users, pvc("data"))
    apply(kubeconfig, release.users, pod("writer", "data", "echo kept > /data/note && sleep 3600"))
    wait_until(
        lambda: True if phase(kube, "writer", release.users) == "Running" else None,
        timeout=120,
        interval=1,
        what="the writer pod to run on its volume",
    )
    claim = kube.get(PersistentVolumeClaim, "data", namespace=release.users)
    assert claim.status is not None and claim.status.phase == "Bound"
    notes = wait_until(
        lambda: sorted(release.roots.glob("*/*_data_*/note")) or None,
        timeout=30,
        what="the note on the node's disk",
    )
    assert len(notes) == 1 and notes[0].read_text() == "kept\n"
    kubectl(kubeconfig, "-n", release.users, "delete", "pod", "writer", "--wait=true")


def test_killing_the_leading_controller_mid_provision_loses_nothing(
    kube: Client,
    kubeconfig: Path,
    release: Release,
    real_nodes: tuple[str, str],
    test_cluster: TestCluster,
) -> None:
    names = [f"burst-{i:02d}" for i in range(20)]
    body = "\n---\n".join(yaml.safe_dump(pvc(n, real_nodes[i % 2])) for i, n in enumerate(names))
    subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), "-n", release.users, "apply", "-f", "-"],
        input=body,
        text=True,
        check=True,
        capture_output=True,
    )
    lease = kube.get(Lease, "flotilla-localpv-controller", namespace=release.namespace)
    holder = (lease.spec.holderIdentity if lease.spec else None) or ""
    leader = holder.rsplit("-", 1)[0]
    assert leader.startswith("fl-localpv-controller-"), holder
    # SIGKILL through the node's containerd: no chance to release the Lease or finish a write.
    victim = kube.get(Pod, leader, namespace=release.namespace)
    assert victim.spec is not None and victim.status is not None
    container = (victim.status.containerStatuses or [])[0].containerID or ""
    node = victim.spec.nodeName or ""
    socket_path = RealNodeLayout(test_cluster.state_dir, node).containerd_socket
    subprocess.run(
        [
            "ctr",
            "--address",
            str(socket_path),
            "-n",
            "k8s.io",
            "tasks",
            "kill",
            "-s",
            "SIGKILL",
            container.removeprefix("containerd://"),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )

    def all_bound() -> bool | None:
        claims = [
            c
            for c in kube.list(PersistentVolumeClaim, namespace=release.users)
            if c.metadata and c.metadata.name in names
        ]
        return (
            True if sum(1 for c in claims if c.status and c.status.phase == "Bound") == 20 else None
        )

    wait_until(all_bound, timeout=150, interval=1, what="all 20 claims Bound after the kill")
    pvs = [
        pv
        for pv in kube.list(PersistentVolume)
        if pv.spec
        and pv.spec.claimRef
        and pv.spec.claimRef.namespace == release.users
        and pv.spec.claimRef.name in names
    ]
    assert len(pvs) == 20, "duplicate or missing PVs"
    assert len({pv.spec.claimRef.name for pv in pvs if pv.spec and pv.spec.claimRef}) == 20
    paths = {str(to_dict(lv).get("status", {}).get("path")) for lv in kube.list(LocalVolume)}
    assert claim_dirs(release.roots) - paths == set(), "orphaned directories"

    # The kill was real: kubelet restarted the container (whichever replica leads now; the
    # restarted one may win again, its identity being its pod's name and PID 1).
    def restarted() -> bool | None:
        status = kube.get(Pod, leader, namespace=release.namespace).status
        counts = [c.restartCount for c in (status.containerStatuses or [])] if status else []
        return True if counts and counts[0] >= 1 else None

    wait_until(restarted, timeout=60, interval=1, what=f"{leader} restarted after SIGKILL")


def test_fifty_machines_check_in_through_the_service_name_and_one_is_updated(
    kube: Client, kubeconfig: Path, release: Release
) -> None:
    fleet_pod(kube, kubeconfig, release)
    base = f"http://fl-updates.{release.namespace}.svc:8000"
    applied = fleet_exec(
        kubeconfig,
        release,
        f"""
import httpx, sys
r = httpx.post('{base}/api/v1/apply', content=sys.stdin.read(),
               headers={{'Authorization': 'Bearer {ADMIN}'}})
print(r.status_code)""",
        stdin=FLEET,
    )
    assert applied.strip() == "200"
    kubectl(
        kubeconfig,
        "-n",
        release.users,
        "exec",
        "fleet",
        "--",
        "flotilla",
        "updates",
        "simulate",
        "--server",
        f"{base}/v1/update/",
        "--instances",
        "50",
        "--version",
        "1.0.0",
        "--time-scale",
        "600",
        "--download",
        "1m",
        "--reboot-delay",
        "1m",
        "--timeout",
        "10",
        timeout=60,
    )
    versions = json.loads(fleet_exec(kubeconfig, release, INSTANCES.format(base=base)))
    assert sum(versions.values()) == 50
    assert versions.get("2.0.0") == 1, versions


INSTANCES = (
    """
import collections, httpx, json
r = httpx.get('{base}/api/v1/apps/"""
    + APP
    + """/instances?limit=500',
              headers={{'Authorization': 'Bearer """
    + READER
    + """'}})
r.raise_for_status()
print(json.dumps(collections.Counter(i['version'] for i in r.json())))"""
)


def fleet_pod(kube: Client, kubeconfig: Path, release: Release) -> None:
    """A pod of Flotilla's image to run the simulator and API calls from (a drain evicts it)."""
    pods = {p.metadata.name for p in kube.list(Pod, namespace=release.users) if p.metadata}
    if "fleet" not in pods:
        apply(
            kubeconfig,
            release.users,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "fleet"},
                "spec": {
                    "nodeSelector": ON_REAL_NODE,
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "fleet", "image": IMAGE, "command": ["sleep", "3600"]}],
                },
            },
        )
    wait_until(
        lambda: True if phase(kube, "fleet", release.users) == "Running" else None,
        timeout=120,
        interval=1,
        what="the fleet pod",
    )


def fleet_exec(kubeconfig: Path, release: Release, script: str, stdin: str = "") -> str:
    done = subprocess.run(
        [
            KUBECTL,
            "--kubeconfig",
            str(kubeconfig),
            "-n",
            release.users,
            "exec",
            "-i",
            "fleet",
            "--",
            "python3",
            "-c",
            script,
        ],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_coordinator_reboots_needing_nodes_one_at_a_time(
    kube: Client, kubeconfig: Path, release: Release, real_nodes: tuple[str, str]
) -> None:
    for node in real_nodes:
        kubectl(kubeconfig, "uncordon", node)
        kubectl(
            kubeconfig, "annotate", "--overwrite", "node", node, "flotilla.dev/reboot-needed=true"
        )
    overlap: list[str] = []
    seen: set[str] = set()

    def cycled() -> bool | None:
        cordoned = []
        for node in real_nodes:
            n = kube.get(Node, node)
            if n.spec and n.spec.unschedulable:
                cordoned.append(node)
                seen.add(node)
        if len(cordoned) > 1:
            overlap.append(",".join(cordoned))
        done = all(
            (kube.get(Node, node).metadata.annotations or {}).get("flotilla.dev/last-reboot")
            and not kube.get(Node, node).spec.unschedulable  # type: ignore[union-attr]
            for node in real_nodes
        )
        return True if done else None

    wait_until(cycled, timeout=120, interval=0.2, what="both nodes rebooted and uncordoned")
    assert overlap == [], f"two nodes cordoned at once: {overlap}"
    assert seen == set(real_nodes)
    reasons = json.loads(
        kubectl(
            kubeconfig,
            "get",
            "events",
            "-A",
            "-o",
            "json",
            "--field-selector",
            "involvedObject.kind=Node",
        ).stdout
    )["items"]
    for node in real_nodes:
        mine = {e["reason"] for e in reasons if e["involvedObject"]["name"] == node}
        assert {"Rebooting", "Rebooted", "Uncordoned"} <= mine, (node, mine)
    wait_rollout(kube, release.namespace)


def test_an_upgrade_keeps_the_servers_data_and_the_volumes(
    kube: Client, kubeconfig: Path, release: Release, tmp_path: Path
) -> None:
    before = {
        pv.metadata.name
        for pv in kube.list(PersistentVolume)
        if pv.metadata and pv.spec and pv.spec.storageClassName == CLASS
    }
    newer = tmp_path / "flotilla"
    shutil.copytree(CHART, newer)
    chart = yaml.safe_load((newer / "Chart.yaml").read_text())
    chart["version"] = "0.1.1"
    (newer / "Chart.yaml").write_text(yaml.safe_dump(chart, sort_keys=False))
    publish(newer, release.repo, release.served, release.url)
    release.helm("repo", "update", "flotilla")
    release.helm(
        "upgrade",
        "fl",
        "flotilla/flotilla",
        "--version",
        "0.1.1",
        "-n",
        release.namespace,
        "-f",
        str(release.values),
        "--wait",
        "--timeout",
        "4m",
    )
    history = release.helm("history", "fl", "-n", release.namespace, "-o", "json")
    assert json.loads(history)[-1]["chart"] == "flotilla-0.1.1"
    wait_rollout(kube, release.namespace)
    fleet_pod(kube, kubeconfig, release)
    base = f"http://fl-updates.{release.namespace}.svc:8000"
    versions = wait_until(
        lambda: json.loads(fleet_exec(kubeconfig, release, INSTANCES.format(base=base))) or None,
        timeout=60,
        interval=1,
        what="the server's instances after the upgrade",
    )
    assert sum(versions.values()) == 50 and versions.get("2.0.0") == 1
    after = {
        pv.metadata.name
        for pv in kube.list(PersistentVolume)
        if pv.metadata and pv.spec and pv.spec.storageClassName == CLASS
    }
    assert before <= after
    apply(kubeconfig, release.users, pod("reader", "data", "cat /data/note; sleep 3600"))
    wait_until(
        lambda: True if phase(kube, "reader", release.users) == "Running" else None,
        timeout=120,
        interval=1,
        what="the reader pod",
    )
    logs = wait_until(
        lambda: kubectl(kubeconfig, "-n", release.users, "logs", "reader").stdout or None,
        timeout=30,
        what="the reader's output",
    )
    assert logs.strip() == "kept"


def test_uninstall_leaves_user_volumes_alone(
    kube: Client, kubeconfig: Path, release: Release
) -> None:
    user_pvs = {
        pv.metadata.name
        for pv in kube.list(PersistentVolume)
        if pv.metadata
        and pv.spec
        and pv.spec.claimRef
        and pv.spec.claimRef.namespace == release.users
    }
    assert len(user_pvs) == 21
    release.helm("uninstall", "fl", "-n", release.namespace, "--wait")
    wait_until(
        lambda: True if not list(kube.list(Pod, namespace=release.namespace)) else None,
        timeout=90,
        interval=1,
        what="the release's pods to go",
    )
    left = {pv.metadata.name for pv in kube.list(PersistentVolume) if pv.metadata}
    assert user_pvs <= left
    assert sorted(release.roots.glob("*/*_data_*/note"))  # the data too
    # The chart's CRDs stay (helm never deletes crds/), and with them the volumes' records.
    assert list(kube.list(LocalVolume))
