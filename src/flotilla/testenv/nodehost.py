"""Host-side adapters for the real node: links, containerd's ``ctr``, mounts, tool checks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from flotilla.testenv.errors import StartError
from flotilla.testenv.processes import ProcessRecord, is_running
from flotilla.testenv.realnode import NODE_IP, NODE_LINK, POD_BRIDGE, RealNodeLayout

# Debian package that provides each program the real node needs.
REQUIRED_TOOLS: dict[str, str] = {
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "docker-registry": "docker-registry",
    "ip": "iproute2",
    "debootstrap": "debootstrap",
}
CNI_PLUGINS = ("bridge", "host-local", "portmap", "loopback")
OWNER_FILE = Path("/run/flotilla-real-node.owner")


def _which(tool: str) -> str | None:
    return shutil.which(tool) or next(
        (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / tool).exists()), None
    )


def require_tools() -> dict[str, str]:
    """Paths of the programs we need, or one error naming every missing Debian package."""
    found: dict[str, str] = {}
    missing: set[str] = set()
    for tool, package in REQUIRED_TOOLS.items():
        path = _which(tool)
        if path is None:
            missing.add(package)
        else:
            found[tool] = path
    if any(not (Path("/usr/lib/cni") / p).exists() for p in CNI_PLUGINS):
        missing.add("containernetworking-plugins")
    if missing:
        raise StartError(
            "the real node needs Debian packages that are missing: "
            + " ".join(sorted(missing)) + " (scripts/bootstrap.sh installs them)"
        )
    if os.geteuid() != 0:
        raise StartError("the real node runs kubelet and containerd, which need root")
    return found


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _owner_alive(owner: Path) -> bool:
    """Whether the environment in ``owner`` still runs a process (a crashed one does not count)."""
    try:
        state = json.loads((owner / "state.json").read_text())
        records = [ProcessRecord(**p) for p in state.get("processes", [])]
    except (OSError, ValueError, TypeError):
        return False
    return any(is_running(r) for r in records)


def claim_host(state_dir: Path) -> None:
    """One real node per machine: its link names and addresses are fixed. Refuse a second one."""
    if OWNER_FILE.exists():
        owner = Path(OWNER_FILE.read_text().strip())
        if owner != state_dir and _owner_alive(owner):
            raise StartError(
                f"another environment ({owner}) runs the real node on this machine; "
                f"run `flotilla testenv down --state-dir {owner}` first"
            )
    OWNER_FILE.write_text(str(state_dir))


def release_host(state_dir: Path) -> None:
    if OWNER_FILE.exists() and Path(OWNER_FILE.read_text().strip()) == state_dir:
        OWNER_FILE.unlink()


def ensure_node_link() -> None:
    """A port-less bridge carrying the node's own address (this kernel has no dummy links)."""
    if _ip("link", "show", NODE_LINK, check=False).returncode != 0:
        _ip("link", "add", NODE_LINK, "type", "bridge")
    addresses = _ip("-o", "addr", "show", "dev", NODE_LINK).stdout
    if f" {NODE_IP}/" not in addresses:
        _ip("addr", "add", f"{NODE_IP}/32", "dev", NODE_LINK)
    _ip("link", "set", NODE_LINK, "up")


def remove_links() -> None:
    """Remove the node link and the pod bridge (veths of dead pods go with their netns)."""
    for link in (POD_BRIDGE, NODE_LINK):
        _ip("link", "del", link, check=False)


class Ctr:
    """containerd's own client against our private socket, in the kubelet's namespace."""

    def __init__(self, layout: RealNodeLayout, binary: str = "ctr") -> None:
        self.layout = layout
        self.binary = binary

    def run(self, *args: str, check: bool = True, timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
        cmd = [self.binary, "--address", str(self.layout.containerd_socket), "--namespace",
               "k8s.io", *args]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise StartError(f"`ctr {' '.join(args)}` failed: {result.stderr.strip()}")
        return result

    def image_names(self) -> set[str]:
        return set(self.run("images", "ls", "-q").stdout.split())

    def import_image(self, archive: Path) -> None:
        self.run("images", "import", str(archive))

    def push(self, reference: str) -> None:
        self.run("images", "push", "--hosts-dir", str(self.layout.hosts_dir), reference)

    def remove_all_containers(self) -> int:
        """Kill and delete every task and container left behind; returns how many."""
        tasks = self.run("tasks", "ls", "-q", check=False).stdout.split()
        for task in tasks:
            self.run("tasks", "kill", "-s", "SIGKILL", task, check=False)
            self.run("tasks", "delete", "-f", task, check=False)
        containers = self.run("containers", "ls", "-q", check=False).stdout.split()
        for container in containers:
            self.run("containers", "delete", container, check=False)
        return len(containers)


def unmount_under(root: Path) -> list[str]:
    """Unmount (deepest first) whatever the kubelet or containerd left mounted under ``root``."""
    prefix = str(root.resolve()) + "/"
    mounts = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if target.startswith(prefix):
            mounts.append(target)
    for target in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)
    return mounts
