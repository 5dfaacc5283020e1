"""A private dockerd for image builds: its own socket and data under the state directory.

The dev loop and the function builder build images through dockerd (the docker SDK), then push
them to the environment's loopback registry so the real node can pull them. The base images are
loaded from the same cached archives the real node imports, over the Engine API on the socket.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import httpx

from flotilla.core.kube import wait_until
from flotilla.testenv.components import Component, Layout
from flotilla.testenv.errors import StartError
from flotilla.testenv.images import build_images, cached_optional_images
from flotilla.testenv.processes import ProcessRecord, ensure_alive, start_process

API_VERSION = "v1.41"  # dockerd 20.10, Debian 12's docker.io
LOAD_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class DockerLayout:
    state_dir: Path

    @property
    def root(self) -> Path:
        return self.state_dir / "docker"

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def host(self) -> str:
        """What DOCKER_HOST and ``docker.DockerClient(base_url=...)`` take."""
        return f"unix://{self.socket}"


def dockerd_component(layout: DockerLayout, binary: str) -> Component:
    return Component(
        "dockerd",
        (
            binary,
            f"--host={layout.host}",
            f"--data-root={layout.root / 'data'}",
            f"--exec-root={layout.root / 'exec'}",
            f"--pidfile={layout.root / 'dockerd.pid'}",
            "--log-level=warn",
        ),
    )


def _client(layout: DockerLayout, timeout: float = 10.0) -> httpx.Client:
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=str(layout.socket)),
        base_url=f"http://docker/{API_VERSION}",
        timeout=timeout,
    )


def start_dockerd(layout: Layout) -> tuple[ProcessRecord, str]:
    """Start dockerd, wait for /_ping, load the base images; returns its record and host URL."""
    binary = shutil.which("dockerd") or (
        "/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None
    )
    if binary is None:
        raise StartError(
            "dockerd is not installed (Debian package docker.io; scripts/bootstrap.sh installs it)"
        )
    docker = DockerLayout(layout.state_dir)
    docker.root.mkdir(parents=True, exist_ok=True)
    component = dockerd_component(docker, binary)
    record = start_process(component, layout.log(component.name), layout.state_dir)

    def pinged() -> bool | None:
        ensure_alive(record)
        if not docker.socket.exists():
            return None
        try:
            with _client(docker, timeout=2) as client:
                return True if client.get("/_ping").is_success else None
        except httpx.TransportError:
            return None

    wait_until(pinged, timeout=60, interval=0.1, what=f"dockerd (log: {record.log})")
    load_images(docker)
    return record, docker.host


def load_images(docker: DockerLayout) -> list[str]:
    """Load each cached base image the daemon does not have yet; returns what was loaded."""
    loaded: list[str] = []
    with _client(docker, timeout=LOAD_TIMEOUT_SECONDS) as client:
        for reference, archive in {**build_images(), **cached_optional_images()}.items():
            if client.get(f"/images/{reference}/json").is_success:
                continue
            with archive.open("rb") as body:
                reply = client.post(
                    "/images/load",
                    params={"quiet": "1"},
                    content=body,
                    headers={"Content-Type": "application/x-tar"},
                )
            if not reply.is_success or "error" in reply.text.lower():
                raise StartError(f"dockerd could not load {archive.name}: {reply.text[:500]}")
            loaded.append(reference)
    return loaded


def kill_containers(docker: DockerLayout) -> int:
    """Kill every container before dockerd stops: it waits only so long for them, and a
    container outliving its daemon keeps running with no one to stop it."""
    killed = 0
    try:
        with _client(docker, timeout=30) as client:
            for container in client.get("/containers/json").json():
                if client.post(f"/containers/{container['Id']}/kill").is_success:
                    killed += 1
    except (httpx.HTTPError, ValueError):
        return killed
    return killed
