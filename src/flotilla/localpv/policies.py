"""The provisioner's decisions as plain functions: which node, which pool, which path, does it fit.

No I/O here. The controller feeds these from its caches and acts on the answer; the agent re-checks
the path rules before it touches a disk, because a LocalVolume object is input too.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from flotilla.core import units
from flotilla.core.errors import EXIT_USAGE, FlotillaError
from flotilla.localpv.model import (
    ANNOTATION_SUBDIR,
    Allocation,
    Backend,
    Claim,
    ClassParams,
    NodeReport,
    Pool,
    VolumeMode,
)

MAX_COMPONENT_BYTES = 255
"""Linux NAME_MAX: one directory entry."""
MAX_PATH_DEPTH = 4
# Every pattern below is applied with fullmatch: "$" would let a trailing newline through.
# Character classes are spelled out ([0-9], never \d), so only ASCII digits and letters match.
_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_PLACEHOLDER = re.compile(r"\{([a-z]+)\}")
_PLACEHOLDERS = frozenset({"namespace", "pvc", "pv", "subdir"})
_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)
_VG_NAME = re.compile(r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]*")
_WHOLE = re.compile(r"[0-9]{1,19}")
MAX_ID = 2**31 - 1
"""Largest uid or gid we accept (Linux ids are unsigned 32-bit; -1 means "unchanged")."""
_QUANTITY_TEXT = re.compile(r"[0-9.]+(?:[eE][-+]?[0-9]{1,3})?(?:[kMGTPE]i?)?")
"""The characters a quantity may have, checked on the whole string before core.units parses it
(which strips whitespace first, so ``1Gi\n`` would pass there)."""


class LocalPVError(FlotillaError):
    """Root error of ``flotilla localpv``; the CLI shows it as ``error: ...`` and its exit code."""


class InvalidInput(LocalPVError, ValueError):  # noqa: N818  (reads better at raise sites)
    """A StorageClass, PVC or LocalVolume asks for something we refuse; permanent, not retried.

    On the command line (a ``--hostpath-root`` it refuses) it is a usage error: exit 2.
    """

    exit_code = EXIT_USAGE


def parse_quantity(text: str) -> int:
    """A Kubernetes resource quantity (``1Gi``, ``500M``, ``1e3``) in whole bytes, rounded up."""
    if len(text) > 64 or not _QUANTITY_TEXT.fullmatch(text):
        raise InvalidInput(f"not a quantity: {text[:64]!r}")
    try:
        return units.parse_quantity(text)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc


def parse_class_params(parameters: dict[str, str]) -> ClassParams:
    """Validate a StorageClass's ``parameters``; unknown keys are refused so typos show."""
    known = {
        "backend",
        "pathPattern",
        "nodeAffinityKey",
        "uid",
        "gid",
        "mode",
        "fsType",
        "volumeGroup",
    }
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise InvalidInput(f"unknown StorageClass parameters: {', '.join(unknown)}")
    try:
        backend = Backend(parameters.get("backend", "hostpath"))
    except ValueError as exc:
        raise InvalidInput(f"backend must be one of {[b.value for b in Backend]}") from exc
    pattern = parameters.get("pathPattern", ClassParams.path_pattern)
    validate_pattern(pattern)
    key = parameters.get("nodeAffinityKey", ClassParams.node_affinity_key)
    if len(key) > 316 or not _LABEL_KEY.fullmatch(key):
        raise InvalidInput(f"nodeAffinityKey is not a label key: {key!r}")
    uid = _small_int(parameters, "uid")
    gid = _small_int(parameters, "gid")
    mode_text = parameters.get("mode", "0777")
    if not re.fullmatch(r"0?[0-7]{3,4}", mode_text):
        raise InvalidInput(f"mode must be octal like 0770, got {mode_text!r}")
    mode = int(mode_text, 8)
    if mode & 0o7000:
        raise InvalidInput("mode may not set setuid, setgid or sticky bits")
    fs_type = parameters.get("fsType", "ext4")
    if fs_type not in ("ext4", "xfs"):
        raise InvalidInput(f"fsType must be ext4 or xfs, got {fs_type!r}")
    vg = parameters.get("volumeGroup", "")
    if backend is Backend.LVM and (len(vg) > 127 or not _VG_NAME.fullmatch(vg)):
        raise InvalidInput(f"backend lvm needs a valid volumeGroup, got {vg!r}")
    return ClassParams(
        backend=backend,
        path_pattern=pattern,
        node_affinity_key=key,
        uid=uid,
        gid=gid,
        mode=mode,
        fs_type=fs_type,
        volume_group=vg,
    )


def _small_int(parameters: dict[str, str], key: str) -> int | None:
    text = parameters.get(key)
    if text is None:
        return None
    try:
        return whole_number(text, key, limit=MAX_ID)
    except InvalidInput as exc:
        raise InvalidInput(f"{key} must be a non-negative integer, got {text[:40]!r}") from exc


def whole_number(value: object, what: str, *, limit: int = 2**63 - 1) -> int:
    """A non-negative integer from JSON or text: an int (not a bool) or ASCII digits only.

    ``int()`` alone would take ``"٣"``, ``" 7\n"``, ``"+7"`` and ``"1_0"``; none of them is a
    number a Kubernetes object should carry.
    """
    if isinstance(value, bool):
        raise InvalidInput(f"{what} must be a whole number, got {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _WHOLE.fullmatch(value):
        number = int(value)
    else:
        raise InvalidInput(f"{what} must be a whole number, got {str(value)[:40]!r}")
    if not 0 <= number <= limit:
        raise InvalidInput(f"{what} must be between 0 and {limit}, got {number}")
    return number


def validate_pattern(pattern: str) -> None:
    """A path pattern is relative, uses known placeholders, and must name the PV (uniqueness)."""
    if not pattern or pattern.startswith("/") or "\\" in pattern or "\x00" in pattern:
        raise InvalidInput(f"pathPattern must be a relative path, got {pattern!r}")
    names = set(_PLACEHOLDER.findall(pattern))
    if names - _PLACEHOLDERS:
        raise InvalidInput(f"pathPattern uses unknown placeholders {sorted(names - _PLACEHOLDERS)}")
    if "pv" not in names:
        raise InvalidInput("pathPattern must contain {pv} so that two volumes never share a path")
    literal = _PLACEHOLDER.sub("x", pattern)
    parts = literal.split("/")
    if len(parts) > MAX_PATH_DEPTH:
        raise InvalidInput(f"pathPattern is deeper than {MAX_PATH_DEPTH} directories")
    for part in parts:
        try:
            validate_component(part)
        except InvalidInput as exc:
            raise InvalidInput(f"pathPattern {pattern!r}: {exc}") from exc


def validate_component(name: str) -> None:
    """One directory entry: no separators, no dot-names, a conservative alphabet, NAME_MAX bytes."""
    if name in ("", ".", ".."):
        raise InvalidInput(f"path component {name!r} is not allowed")
    if len(name.encode()) > MAX_COMPONENT_BYTES:
        raise InvalidInput(f"path component is longer than {MAX_COMPONENT_BYTES} bytes")
    if not _COMPONENT.fullmatch(name):
        raise InvalidInput(f"path component {name[:80]!r} has characters outside [A-Za-z0-9._-]")


def render_subpath(pattern: str, claim: Claim) -> tuple[str, ...]:
    """The directory components under the root for ``claim``; refused if anything could escape."""
    validate_pattern(pattern)
    values = {
        "namespace": claim.namespace,
        "pvc": claim.name,
        "pv": claim.pv_name,
        "subdir": claim.annotations.get(ANNOTATION_SUBDIR, ""),
    }
    if "{subdir}" in pattern and not values["subdir"]:
        raise InvalidInput(f"pathPattern uses {{subdir}} but the PVC has no {ANNOTATION_SUBDIR}")
    parts = tuple(_PLACEHOLDER.sub(lambda m: values[m.group(1)], p) for p in pattern.split("/"))
    for part in parts:
        validate_component(part)
    return parts


def validate_subpath(parts: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The agent's re-check of a subpath read from a LocalVolume object."""
    if not parts or len(parts) > MAX_PATH_DEPTH:
        raise InvalidInput("subpath must have 1 to 4 components")
    for part in parts:
        validate_component(part)
    return tuple(parts)


def check_claim(claim: Claim, params: ClassParams) -> None:
    """Refuse claims the backend cannot honour, before anything is allocated."""
    if claim.has_selector:
        raise InvalidInput("spec.selector is not supported for dynamically provisioned volumes")
    bad = sorted(set(claim.access_modes) - {"ReadWriteOnce", "ReadWriteOncePod"})
    if bad:
        raise InvalidInput(f"local volumes are single-node: access modes {bad} are not supported")
    if claim.size <= 0:
        raise InvalidInput("the claim requests no storage")
    if claim.volume_mode is VolumeMode.BLOCK and params.backend not in (
        Backend.DEVICE,
        Backend.LVM,
    ):
        raise InvalidInput(f"volumeMode Block needs backend device or lvm, not {params.backend}")
    if claim.data_source_pvc and params.backend is not Backend.BTRFS:
        raise InvalidInput("cloning from another PVC needs backend btrfs")


def available(pool: Pool, allocations: list[Allocation]) -> int:
    """Bytes ``pool`` can still promise: what is free on disk and left of its budget."""
    promised = sum(
        a.size
        for a in allocations
        if a.node == pool.node and a.backend == pool.backend and a.pool == pool.name
    )
    if pool.backend is Backend.DEVICE:
        return 0 if promised else pool.budget
    return max(0, min(pool.free, pool.budget - promised))


def choose_pool(
    pools: list[Pool] | tuple[Pool, ...], allocations: list[Allocation], backend: Backend, size: int
) -> Pool | None:
    """The pool for a new volume of ``size`` bytes, or None when nothing on the node fits.

    Directory-like pools: the one with the most room left (spreads wear and keeps big holes).
    Devices: the smallest one that fits (a 1Gi claim should not take the 4Ti disk).
    """
    fitting = [(available(p, allocations), p) for p in pools if p.backend == backend]
    fitting = [(room, p) for room, p in fitting if room >= size]
    if not fitting:
        return None
    if backend is Backend.DEVICE:
        return min(fitting, key=lambda rp: (rp[0], rp[1].name))[1]
    return max(fitting, key=lambda rp: (rp[0], rp[1].name))[1]


def nests(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """True when directory ``a`` is ``b``, an ancestor of ``b`` or a descendant of it."""
    if not a or not b:
        return False
    shorter = min(len(a), len(b))
    return a[:shorter] == b[:shorter]


def nesting_volume(candidate: Allocation, allocations: list[Allocation]) -> str | None:
    """The volume on the same node whose directory would contain, or sit inside, ``candidate``'s.

    Checked over absolute paths, across pools and backends, since configured roots may nest too.
    A volume never conflicts with itself (same name): a restart re-places the same volume.
    """
    mine = candidate.directory
    if not mine:
        return None
    for other in allocations:
        if (
            other.node == candidate.node
            and other.name != candidate.name
            and nests(mine, other.directory)
        ):
            return other.name or "/".join(other.directory)
    return None


def node_capacity(
    pools: list[Pool] | tuple[Pool, ...], allocations: list[Allocation], backend: Backend
) -> tuple[int, int]:
    """(total bytes available, largest single volume) for one backend on one node."""
    rooms = [available(p, allocations) for p in pools if p.backend == backend]
    return sum(rooms), max(rooms, default=0)


@dataclass(frozen=True)
class Place:
    """Provision on ``node`` in ``pool``."""

    node: str
    pool: str


@dataclass(frozen=True)
class Reschedule:
    """The selected node cannot take it: drop the annotation so the scheduler picks again."""

    reason: str


def place(
    claim: Claim,
    params: ClassParams,
    node: NodeReport,
    allocations: list[Allocation],
    *,
    source_pool: str | None = None,
    source_node: str | None = None,
    subpath: tuple[str, ...] = (),
) -> Place | Reschedule:
    """Decide where the claim goes on the node the scheduler selected.

    Directory volumes only go to a pool where ``subpath`` neither contains nor sits inside
    another volume's directory: deleting one volume must never delete another's data.
    """
    if not node.exists:
        return Reschedule(f"node {node.name} does not exist")
    if not node.agent_alive:
        return Reschedule(f"the localpv agent on node {node.name} is not running")
    if node.agent_uid and node.node_uid and node.agent_uid != node.node_uid:
        return Reschedule(f"node {node.name} was re-created; its agent has not re-registered")
    if source_node is not None:
        if source_node != node.name:
            return Reschedule(f"the clone source lives on node {source_node}, not {node.name}")
        pool = next(
            (p for p in node.pools if p.backend == params.backend and p.name == source_pool), None
        )
        if pool is None or available(pool, allocations) < claim.size:
            return Reschedule(f"not enough room for a {claim.size}-byte clone on {node.name}")
        clash = _clash(claim, pool, subpath, allocations)
        if clash:
            return Reschedule(clash)
        return Place(node.name, pool.name)
    pools = [
        p
        for p in node.pools
        if p.backend == params.backend
        and (params.backend is not Backend.LVM or p.name == params.volume_group)
    ]
    if not pools:
        return Reschedule(f"node {node.name} has no {params.backend} storage configured")
    clashes = [c for c in (_clash(claim, p, subpath, allocations) for p in pools) if c]
    pools = [p for p in pools if not _clash(claim, p, subpath, allocations)]
    if not pools:
        return Reschedule(clashes[0])
    chosen = choose_pool(pools, allocations, params.backend, claim.size)
    if chosen is None:
        total, largest = node_capacity(pools, allocations, params.backend)
        return Reschedule(
            f"node {node.name} has not enough free {params.backend} capacity: "
            f"need {claim.size} bytes, largest free {largest} (total {total})"
        )
    return Place(node.name, chosen.name)


def _clash(
    claim: Claim, pool: Pool, subpath: tuple[str, ...], allocations: list[Allocation]
) -> str | None:
    mine = Allocation(pool.node, pool.backend, pool.name, claim.size, subpath, claim.pv_name)
    other = nesting_volume(mine, allocations)
    if other is None:
        return None
    return (
        f"{pool.name}/{'/'.join(subpath)} would contain or sit inside the directory of "
        f"volume {other} on node {pool.node}"
    )


class Release(enum.Enum):
    """What to do with a LocalVolume that is being deleted."""

    AGENT = "agent"
    """The node and its agent are there: the agent deletes the data."""
    WAIT = "wait"
    """The node is gone; within the grace period it may come back."""
    FORGET = "forget"
    """Gone past the grace period: release the record, say the data was NOT deleted."""


def release_decision(
    node: NodeReport, volume_node_uid: str, gone_for: float | None, grace: float
) -> Release:
    """Whether a deleted volume's data can be removed by its agent or must be let go."""
    same_machine = node.exists and (not volume_node_uid or node.node_uid == volume_node_uid)
    if same_machine:
        return Release.AGENT
    if gone_for is None or gone_for < grace:
        return Release.WAIT
    return Release.FORGET
