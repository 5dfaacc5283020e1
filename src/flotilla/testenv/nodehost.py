"""Host-side adapters for the real node: links, containerd's ``ctr``, mounts, tool checks."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from flotilla.testenv.errors import StartError
from flotilla.testenv.processes import ProcessRecord, is_running
from flotilla.testenv.realnode import MAX_SLOTS, NodeNetwork, RealNodeLayout

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
SLOTS_DIR = Path("/run/flotilla")


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
            + " ".join(sorted(missing))
            + " (scripts/bootstrap.sh installs them)"
        )
    if os.geteuid() != 0:
        raise StartError("the real node runs kubelet and containerd, which need root")
    return found


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _running_records(owner: Path) -> list[ProcessRecord]:
    try:
        state = json.loads((owner / "state.json").read_text())
        records = [ProcessRecord(**p) for p in state.get("processes", [])]
    except (OSError, ValueError, TypeError):
        return []
    return [r for r in records if is_running(r)]


def _owner_alive(owner: Path) -> bool:
    """Whether the environment in ``owner`` still runs a process (a crashed one does not count)."""
    return bool(_running_records(owner))


def service_proxy_owner(state_dir: Path) -> Path | None:
    """The other environment whose kube-proxy runs on this machine, if any.

    kube-proxy's chains (KUBE-SERVICES, ...) are machine-wide in the host's network namespace: a
    second kube-proxy would rewrite the first one's Services, so there is one per machine.
    """
    owners = {
        owner[0]
        for slot in range(MAX_SLOTS)
        if (owner := _slot_owner(slot)) is not None and owner[0] != state_dir
    }
    return next(
        (o for o in sorted(owners) if any(r.name == "kube-proxy" for r in _running_records(o))),
        None,
    )


def _slot_file(slot: int) -> Path:
    return SLOTS_DIR / f"real-node-{slot}.owner"


def _slot_owner(slot: int) -> tuple[Path, str] | None:
    """(state dir, node name) written by ``claim_slot``; an older file holds the dir alone."""
    try:
        lines = _slot_file(slot).read_text().splitlines()
    except OSError:
        return None
    if not lines or not lines[0].strip():
        return None
    return Path(lines[0].strip()), (lines[1].strip() if len(lines) > 1 else "")


def claim_slot(state_dir: Path, node: str) -> NodeNetwork:
    """Take the first slot no live environment's node holds; a slot fixes links, subnets and
    the cgroup root of one real node."""
    SLOTS_DIR.mkdir(parents=True, exist_ok=True)
    held = {slot: _slot_owner(slot) for slot in range(MAX_SLOTS)}
    for slot, owner in held.items():  # this node's own slot first: `up` again keeps it
        if owner == (state_dir, node):
            return NodeNetwork(slot)
    for slot, owner in held.items():
        if owner is None or (owner[0] != state_dir and not _owner_alive(owner[0])):
            _slot_file(slot).write_text(f"{state_dir}\n{node}\n")
            return NodeNetwork(slot)
    raise StartError(
        f"all {MAX_SLOTS} real-node slots are held by running environments "
        f"(see {SLOTS_DIR}); stop one with `flotilla testenv down`"
    )


def release_slot(state_dir: Path, network: NodeNetwork) -> None:
    owner = _slot_owner(network.slot)
    if owner is not None and owner[0] == state_dir:
        _slot_file(network.slot).unlink(missing_ok=True)


def other_live_slots(state_dir: Path) -> list[int]:
    """Slots held by real nodes of other running environments on this machine."""
    return [
        slot
        for slot in range(MAX_SLOTS)
        if (owner := _slot_owner(slot)) is not None
        and owner[0] != state_dir
        and _owner_alive(owner[0])
    ]


def _cgroup_mounts() -> list[Path]:
    """Every cgroup hierarchy (v1 controllers, named ones, the v2 unified tree) mounted here."""
    mounts = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] in ("cgroup", "cgroup2"):
            mounts.append(Path(fields[1]))
    return mounts


def ensure_cgroup_root(network: NodeNetwork) -> None:
    """The kubelet refuses a ``cgroupRoot`` that does not exist in every hierarchy."""
    name = network.cgroup_root.strip("/")
    for mount in _cgroup_mounts():
        directory = mount / name
        try:
            directory.mkdir(exist_ok=True)
            for knob in ("cpuset.cpus", "cpuset.mems"):  # an empty cpuset admits no task
                if (directory / knob).exists() and not (directory / knob).read_text().strip():
                    (directory / knob).write_text((mount / knob).read_text())
        except OSError as exc:
            if mount.name != "unified":  # the hybrid v2 tree is optional on cgroup v1
                raise StartError(f"cannot create cgroup {directory}: {exc}") from exc


def remove_cgroup_root(network: NodeNetwork) -> None:
    """rmdir the node's cgroup tree, deepest first (only empty cgroups can go)."""
    name = network.cgroup_root.strip("/")
    for mount in _cgroup_mounts():
        root = mount / name
        if not root.is_dir():
            continue
        for directory, _dirs, _files in sorted(os.walk(root), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(directory)


def ensure_node_link(network: NodeNetwork) -> None:
    """A port-less bridge carrying the node's own address (this kernel has no dummy links)."""
    link = network.node_link
    if _ip("link", "show", link, check=False).returncode != 0:
        _ip("link", "add", link, "type", "bridge")
    addresses = _ip("-o", "addr", "show", "dev", link).stdout
    if f" {network.node_ip}/" not in addresses:
        _ip("addr", "add", f"{network.node_ip}/32", "dev", link)
    _ip("link", "set", link, "up")


def remove_links(network: NodeNetwork) -> None:
    """Remove the node link and the pod bridge (veths of dead pods go with their netns)."""
    for link in (network.pod_bridge, network.node_link):
        _ip("link", "del", link, check=False)


class Ctr:
    """containerd's own client against our private socket, in the kubelet's namespace."""

    def __init__(self, layout: RealNodeLayout, binary: str = "ctr") -> None:
        self.layout = layout
        self.binary = binary

    def run(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        cmd = [
            self.binary,
            "--address",
            str(self.layout.containerd_socket),
            "--namespace",
            "k8s.io",
            *args,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise StartError(f"`ctr {' '.join(args)}` failed: {result.stderr.strip()}")
        return result

    def image_names(self) -> set[str]:
        return set(self.run("images", "ls", "-q").stdout.split())

    def import_image(self, archive: Path) -> None:
        self.run("images", "import", str(archive))

    def push(self, reference: str, attempts: int = 3) -> None:
        """Push to the environment's registry; retried, since a push under heavy load has
        failed once with containerd's "unexpected EOF" and then succeeded."""
        for attempt in range(1, attempts + 1):
            try:
                self.run("images", "push", "--hosts-dir", str(self.layout.hosts_dir), reference)
                return
            except StartError:
                if attempt == attempts:
                    raise
                time.sleep(attempt)

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
