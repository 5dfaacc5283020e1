"""Helpers for the localpv cluster tests: run the controller and agents, build manifests, wait."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightkube import Client
from lightkube.resources.core_v1 import Event, PersistentVolumeClaim, Pod

from flotilla.core.kube import KubeNotFoundError, kube_errors, to_dict, wait_until
from flotilla.localpv.resources import create_object

FLOTILLA = [sys.executable, "-m", "flotilla", "localpv"]
NODES = ("node-1", "node-2", "node-3")


@dataclass
class Proc:
    """One controller or agent subprocess and its log file."""

    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Stack:
    """The provisioner under test: one controller and one agent per node, each with its roots."""

    kubeconfig: Path
    workdir: Path
    roots: dict[str, Path]
    btrfs_root: Path | None
    controller: Proc = field(init=False)
    agents: dict[str, Proc] = field(default_factory=dict)
    controller_args: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.controller = Proc(
            [
                *FLOTILLA,
                "controller",
                "--kubeconfig",
                str(self.kubeconfig),
                "--node-gone-grace",
                "4",
                "--agent-timeout",
                "6",
                *self.controller_args,
            ],
            self.workdir / "controller.log",
        )

    def start_agent(self, node: str, *extra: str) -> Proc:
        proc = Proc(
            [
                *FLOTILLA,
                "agent",
                "--kubeconfig",
                str(self.kubeconfig),
                "--node",
                node,
                "--heartbeat",
                "1",
                "--usage-interval",
                "2",
                *extra,
            ],
            self.workdir / f"agent-{node}.log",
        )
        proc.start()
        self.agents[node] = proc
        return proc

    def restart_controller(self, sig: int = signal.SIGTERM) -> None:
        self.controller.kill(sig)
        self.controller.start()

    def stop(self) -> None:
        self.controller.kill()
        for agent in self.agents.values():
            agent.kill()

    def logs(self) -> str:
        parts = [f"--- controller\n{self.controller.tail()}"]
        parts += [f"--- agent {n}\n{p.tail(15)}" for n, p in self.agents.items()]
        return "\n".join(parts)


def storage_class(
    name: str,
    *,
    backend: str = "hostpath",
    expansion: bool = False,
    binding: str = "WaitForFirstConsumer",
    reclaim: str = "Delete",
    **params: str,
) -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": "localpv.flotilla.dev",
        "parameters": {"backend": backend, **params},
        "reclaimPolicy": reclaim,
        "volumeBindingMode": binding,
        "allowVolumeExpansion": expansion,
    }


def pvc(
    name: str,
    namespace: str,
    sc: str,
    size: str = "100Mi",
    *,
    annotations: dict[str, str] | None = None,
    source: str | None = None,
    mode: str = "Filesystem",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": sc,
            "volumeMode": mode,
            "resources": {"requests": {"storage": size}},
        },
    }
    if source:
        body["spec"]["dataSource"] = {"kind": "PersistentVolumeClaim", "name": source}
    return body


def pod(name: str, namespace: str, claim: str, *, node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "app",
                "image": "busybox",
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }
        ],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        "tolerations": [{"operator": "Exists"}],
    }
    if node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def create(kube: Client, resource: type[Any], body: dict[str, Any]) -> dict[str, Any]:
    return create_object(kube, resource, body)


def get(
    kube: Client, resource: type[Any], name: str, namespace: str | None = None
) -> dict[str, Any] | None:
    try:
        with kube_errors(f"get {name}"):
            if namespace:
                return to_dict(kube.get(resource, name, namespace=namespace))
            return to_dict(kube.get(resource, name))
    except KubeNotFoundError:
        return None


def delete(kube: Client, resource: type[Any], name: str, namespace: str | None = None) -> None:
    with contextlib.suppress(KubeNotFoundError), kube_errors(f"delete {name}"):
        if namespace:
            kube.delete(resource, name, namespace=namespace, grace_period=0)
        else:
            kube.delete(resource, name)


def wait_for(
    check: Callable[[], Any], what: str, timeout: float = 30, stack: Stack | None = None
) -> Any:
    try:
        return wait_until(lambda: check() or None, timeout=timeout, interval=0.2, what=what)
    except TimeoutError as exc:
        if stack is not None:
            raise TimeoutError(f"{exc}\n{stack.logs()}") from exc
        raise


def bound_pvc(
    kube: Client, name: str, namespace: str, stack: Stack, timeout: float = 30
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get(kube, PersistentVolumeClaim, name, namespace)
        return obj if obj and obj.get("status", {}).get("phase") == "Bound" else None

    try:
        result: dict[str, Any] = wait_for(check, f"PVC {namespace}/{name} Bound", timeout, stack)
    except TimeoutError as exc:
        events = [
            f"{e.get('involvedObject', {}).get('name')}: {e.get('reason')}: {e.get('message')}"
            for e in (to_dict(x) for x in kube.list(Event, namespace=namespace))
        ]
        raise TimeoutError(f"{exc}\nevents:\n" + "\n".join(events)) from exc
    return result


def events_for(kube: Client, namespace: str, name: str) -> list[dict[str, Any]]:
    return [
        to_dict(e)
        for e in kube.list(Event, namespace=namespace, fields={"involvedObject.name": name})
    ]


def event_reasons(kube: Client, namespace: str, name: str) -> dict[str, str]:
    """reason -> message of the latest event per reason."""
    return {e.get("reason", ""): e.get("message", "") for e in events_for(kube, namespace, name)}


def delete_pod_and_claim(kube: Client, namespace: str, pod_name: str, claim: str) -> None:
    delete(kube, Pod, pod_name, namespace)
    wait_for(lambda: get(kube, Pod, pod_name, namespace) is None, f"pod {pod_name} gone")
    delete(kube, PersistentVolumeClaim, claim, namespace)


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@contextlib.contextmanager
def loop_device(image: Path, size_mb: int) -> Iterator[str]:
    """A loop device over a sparse file; detached afterwards."""
    with image.open("wb") as f:
        f.truncate(size_mb * 2**20)
    dev = subprocess.run(
        ["losetup", "--find", "--show", str(image)], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
        with contextlib.suppress(OSError):
            os.unlink(image)


@contextlib.contextmanager
def btrfs_mount(image: Path, mountpoint: Path, size_mb: int = 512) -> Iterator[Path]:
    with loop_device(image, size_mb) as dev:
        subprocess.run(["mkfs.btrfs", "-q", "-f", dev], check=True, capture_output=True)
        mountpoint.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", dev, str(mountpoint)], check=True)
        try:
            yield mountpoint
        finally:
            for _ in range(10):
                if (
                    subprocess.run(
                        ["umount", str(mountpoint)], check=False, capture_output=True
                    ).returncode
                    == 0
                ):
                    break
                time.sleep(0.3)
