"""Pure pieces of the adapters: command lines, report parsers, manifests, queue, lease rules."""

from __future__ import annotations

import datetime
import json
import struct
import threading
import time
from collections.abc import Sequence

import pytest

from flotilla.localpv.backends import VolumeSpec
from flotilla.localpv.backends.btrfs import (
    IOC_SNAP_CREATE,
    IOC_SNAP_DESTROY,
    IOC_SUBVOL_CREATE,
    parse_qgroup_show,
    qgroup_limit_command,
    vol_args,
)
from flotilla.localpv.backends.discovery import DeviceFilter, Disk, eligible, parse_lsblk
from flotilla.localpv.backends.lvm import (
    LvmBackend,
    lvcreate_command,
    lvextend_command,
    parse_lvs,
    parse_vgs,
    round_to_extent,
)
from flotilla.localpv.controller.leader import lease_free
from flotilla.localpv.deploy import deploy_manifests
from flotilla.localpv.manifests import (
    block_device,
    capacity_name,
    crds,
    csi_driver,
    persistent_volume,
    storage_capacity,
)
from flotilla.localpv.model import VolumeMode
from flotilla.localpv.node.agent import spec_from
from flotilla.localpv.policies import InvalidInput
from flotilla.localpv.runtime import WorkQueue

# --- btrfs ----------------------------------------------------------------------------------


def test_btrfs_ioctl_numbers_match_the_kernel_headers() -> None:
    assert (IOC_SNAP_CREATE, IOC_SUBVOL_CREATE, IOC_SNAP_DESTROY) == (
        0x50009401,
        0x5000940E,
        0x5000940F,
    )


def test_btrfs_vol_args_carry_one_name_and_a_source_fd() -> None:
    raw = vol_args("vol", 7)
    assert len(raw) == 4096
    fd, name = struct.unpack("q4088s", raw)
    assert fd == 7 and name.rstrip(b"\0") == b"vol"
    for bad in ("", "a/b", "x" * 5000):
        with pytest.raises(InvalidInput):
            vol_args(bad)


def test_qgroup_commands_and_reports() -> None:
    assert qgroup_limit_command(20971520, "/proc/self/fd/5") == [
        "btrfs",
        "qgroup",
        "limit",
        "20971520",
        "/proc/self/fd/5",
    ]
    report = """Qgroupid    Referenced    Exclusive  Max referenced  Max exclusive   Path
--------    ----------    ---------  --------------  -------------   ----
0/5              16384        16384            none           none   <toplevel>
0/256         20955136     20955136        20971520           none   v1
"""
    assert parse_qgroup_show(report, 256) == (20955136, 20971520)
    assert parse_qgroup_show(report, 5) == (16384, None)
    assert parse_qgroup_show(report, 999) is None


# --- lvm ------------------------------------------------------------------------------------

VGS = json.dumps(
    {"report": [{"vg": [{"vg_name": "vg0", "vg_size": "10737418240", "vg_free": "4294967296"}]}]}
)


def _lvs(name: str, size: int) -> str:
    return json.dumps(
        {
            "report": [
                {
                    "lv": [
                        {
                            "lv_name": name,
                            "vg_name": "vg0",
                            "lv_size": str(size),
                            "lv_path": f"/dev/vg0/{name}",
                        }
                    ]
                }
            ]
        }
    )


def test_lvm_commands_round_to_extents() -> None:
    assert round_to_extent(1) == 4 * 2**20
    assert round_to_extent(8 * 2**20) == 8 * 2**20
    assert lvcreate_command("vg0", "pvc-1", 10**9) == [
        "lvcreate",
        "--yes",
        "--wipesignatures",
        "y",
        "--zero",
        "y",
        "--name",
        "pvc-1",
        "--size",
        "1002438656b",
        "vg0",
    ]
    assert lvextend_command("vg0", "pvc-1", 2**30, resize_fs=True) == [
        "lvextend",
        "--size",
        "1073741824b",
        "--resizefs",
        "vg0/pvc-1",
    ]
    assert parse_vgs(VGS)[0].free == 4 * 2**30
    assert parse_lvs(_lvs("pvc-1", 2**30)) == {"pvc-1": (2**30, "/dev/vg0/pvc-1")}


def test_lvm_backend_flow_against_recorded_outputs() -> None:
    calls: list[list[str]] = []
    created: set[str] = set()

    def runner(argv: Sequence[str]) -> str:
        calls.append(list(argv))
        if argv[0] == "vgs":
            return VGS
        if argv[0] == "lvs":
            name = argv[-1].split("/")[1]
            return _lvs(name, 2**30) if name in created else json.dumps({"report": [{"lv": []}]})
        if argv[0] == "lvcreate":
            created.add(argv[argv.index("--name") + 1])
        if argv[0] == "lvremove":
            created.discard(argv[-1].split("/")[1])
        return ""

    backend = LvmBackend(["vg0"], mount_root="/mnt/lpv", runner=runner)
    assert [p.name for p in backend.pools()] == ["vg0"]
    spec = VolumeSpec(name="pvc-1", pool="vg0", size=2**30, volume_mode=VolumeMode.BLOCK)
    realised = backend.create(spec)
    assert (realised.path, realised.volume_mode) == ("/dev/vg0/pvc-1", VolumeMode.BLOCK)
    assert backend.create(spec).path == realised.path
    assert sum(c[0] == "lvcreate" for c in calls) == 1, "idempotent"
    assert backend.delete(spec) is True
    assert backend.delete(spec) is False
    with pytest.raises(InvalidInput):
        backend.create(VolumeSpec(name="x", pool="vg-other", size=1))


# --- discovery --------------------------------------------------------------------------------

LSBLK = json.dumps(
    {
        "blockdevices": [
            {
                "name": "vda",
                "path": "/dev/vda",
                "size": 274877906944,
                "type": "disk",
                "model": None,
                "serial": None,
                "rota": True,
                "fstype": None,
                "mountpoint": None,
                "ro": False,
                "children": [
                    {
                        "name": "vda1",
                        "path": "/dev/vda1",
                        "size": 1000,
                        "type": "part",
                        "fstype": "ext4",
                        "mountpoint": "/",
                        "ro": False,
                        "rota": True,
                    }
                ],
            },
            {
                "name": "loop3",
                "path": "/dev/loop3",
                "size": 67108864,
                "type": "loop",
                "model": None,
                "serial": None,
                "rota": False,
                "fstype": None,
                "mountpoint": None,
                "ro": False,
            },
            {
                "name": "loop4",
                "path": "/dev/loop4",
                "size": 67108864,
                "type": "loop",
                "fstype": "btrfs",
                "mountpoint": "/mnt/btrfs",
                "ro": False,
                "rota": False,
            },
            {"name": "sr0", "path": "/dev/sr0", "size": 1000000000, "type": "rom", "ro": True},
        ]
    }
)


def test_discovery_offers_only_allow_listed_unmounted_leaf_devices() -> None:
    disks = {d.path: d for d in parse_lsblk(LSBLK, {"/dev/loop3": "/dev/disk/by-id/loop-x"})}
    assert disks["/dev/vda"].has_children and disks["/dev/vda1"].mountpoint == "/"
    assert disks["/dev/loop3"].by_id == "/dev/disk/by-id/loop-x"
    rule = DeviceFilter(("/dev/*",), owned_mount_root="/var/lib/lpv")
    assert sorted(d.path for d in disks.values() if eligible(d, rule)) == ["/dev/loop3"]
    narrow = DeviceFilter(("/dev/loop4",))
    assert not [d for d in disks.values() if eligible(d, narrow)], "mounted elsewhere"
    ours = Disk("/dev/loop4", 2**26, "loop", mountpoint="/var/lib/lpv/pvc-1")
    assert eligible(ours, rule), "a device we formatted and mounted is still ours"


# --- manifests ----------------------------------------------------------------------------------


def _ready_volume() -> dict[str, object]:
    return {
        "metadata": {"name": "pvc-1"},
        "spec": {
            "node": "node-1",
            "backend": "hostpath",
            "size": 100,
            "reclaimPolicy": "Retain",
            "claim": {"namespace": "ns", "name": "data", "uid": "u"},
            "nodeAffinityKey": "topology.example.com/node",
        },
        "status": {"phase": "Ready", "path": "/srv/x", "capacity": 100},
    }


def test_pv_is_local_pre_bound_and_pinned_to_the_node() -> None:
    pv = persistent_volume(_ready_volume(), storage_class="sc", affinity_value="rack-1-node-1")
    spec = pv["spec"]
    assert spec["local"] == {"path": "/srv/x"}
    assert spec["claimRef"]["uid"] == "u"
    assert spec["persistentVolumeReclaimPolicy"] == "Retain"
    assert spec["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"] == [
        {"key": "topology.example.com/node", "operator": "In", "values": ["rack-1-node-1"]}
    ]
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == (
        "localpv.flotilla.dev"
    )


def test_capacity_objects_are_named_stably_and_shortly() -> None:
    name = capacity_name("a" * 200, "node-" + "x" * 200)
    assert name == capacity_name("a" * 200, "node-" + "x" * 200) and len(name) < 64
    assert capacity_name("a", "b") != capacity_name("b", "a")
    obj = storage_capacity("ns", "sc", "node-1", "kubernetes.io/hostname", "node-1", 10, 5)
    assert obj["nodeTopology"] == {"matchLabels": {"kubernetes.io/hostname": "node-1"}}
    assert (obj["capacity"], obj["maximumVolumeSize"]) == ("10", "5")
    assert csi_driver()["spec"]["storageCapacity"] is True


def test_crds_and_block_devices() -> None:
    kinds = [c["spec"]["names"]["kind"] for c in crds()]
    assert kinds == ["LocalVolume", "LocalNode", "BlockDevice"]
    assert all(c["spec"]["scope"] == "Cluster" for c in crds())
    bd = block_device("node-1", Disk("/dev/loop3", 10, "loop"), "pvc-1")
    assert bd["status"] == {"state": "Claimed", "claimedBy": "pvc-1"}
    assert (
        bd["metadata"]["name"]
        == block_device("node-1", Disk("/dev/loop3", 99, "loop"), None)["metadata"]["name"]
    )


def test_deploy_rbac_is_least_privilege() -> None:
    docs = deploy_manifests(image="img", namespace="lpv", hostpath_root="/var/lib/lpv")
    rules = [r for d in docs if d["kind"] in ("ClusterRole", "Role") for r in d["rules"]]
    assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in rules)
    assert not [r for r in rules if "pods" in r["resources"] or "secrets" in r["resources"]]
    kinds = [d["kind"] for d in docs]
    assert {"Deployment", "DaemonSet", "CustomResourceDefinition", "StorageClass"} <= set(kinds)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert "--leader-elect" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]


# --- agent input checks -------------------------------------------------------------------------


def test_the_agent_rechecks_what_a_local_volume_asks_for() -> None:
    lv = {
        "metadata": {"name": "pvc-1"},
        "spec": {
            "backend": "hostpath",
            "pool": "/srv",
            "size": 10,
            "subpath": ["ns", "v"],
            "owner": {"uid": 1, "gid": 2, "mode": 0o750},
        },
    }
    spec = spec_from(lv)
    assert spec.subpath == ("ns", "v") and spec.owner.mode == 0o750
    for bad in (
        {"subpath": ["..", "etc"]},
        {"subpath": ["/etc"]},
        {"owner": {"mode": 0o4777}},
        {"backend": "nfs"},
    ):
        broken = {"metadata": lv["metadata"], "spec": {**lv["spec"], **bad}}
        with pytest.raises((InvalidInput, ValueError)):
            spec_from(broken)


# --- runtime ------------------------------------------------------------------------------------


def test_work_queue_coalesces_and_never_hands_one_key_to_two_workers() -> None:
    queue = WorkQueue()
    for _ in range(3):
        queue.add("a")
    queue.add("b")
    first = queue.get(0.1)
    queue.add(first or "")  # re-added while active: runs again after done()
    second = queue.get(0.1)
    assert {first, second} == {"a", "b"}
    assert queue.get(0.05) is None
    queue.done(first or "")
    assert queue.get(0.1) == first
    queue.add_after("later", 0.05)
    started = time.monotonic()
    assert queue.get(1.0) == "later" and time.monotonic() - started >= 0.04
    queue.close()
    done = threading.Event()
    threading.Thread(target=lambda: (queue.get(5.0), done.set()), daemon=True).start()
    assert done.wait(1.0), "close wakes waiting workers"


def test_leases_are_taken_only_when_free_or_expired() -> None:
    now = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
    fresh = "2026-01-01T11:59:55.000000Z"
    stale = "2026-01-01T11:59:00.000000Z"
    assert lease_free(None, None, 15, "me", now)
    assert lease_free("me", fresh, 15, "me", now)
    assert not lease_free("other", fresh, 15, "me", now)
    assert lease_free("other", stale, 15, "me", now)


def test_agent_metrics_expose_pools_and_volumes() -> None:
    from prometheus_client import generate_latest

    from flotilla.localpv.node.metrics import AgentMetrics

    metrics = AgentMetrics("node-1")
    metrics.pools([{"backend": "btrfs", "name": "/mnt/b", "budget": 100, "free": 60}])
    metrics.volume("pvc-1", "btrfs", 50, 20)
    text = generate_latest(metrics.registry).decode()
    pool = 'flotilla_localpv_pool_free_bytes{backend="btrfs",node="node-1",pool="/mnt/b"} 60.0'
    used = 'flotilla_localpv_volume_used_bytes{backend="btrfs",node="node-1",volume="pvc-1"} 20.0'
    assert pool in text and used in text
    metrics.forget("pvc-1")
    assert "pvc-1" not in generate_latest(metrics.registry).decode()


def test_capacity_per_class_and_node_from_agent_reports() -> None:
    from flotilla.localpv.controller.capacity import desired_capacities, same_quantities
    from flotilla.localpv.model import Allocation, Backend
    from flotilla.localpv.resources import now_iso

    classes = [
        {"metadata": {"name": "local"}, "provisioner": "localpv.flotilla.dev"},
        {
            "metadata": {"name": "bad"},
            "provisioner": "localpv.flotilla.dev",
            "parameters": {"backend": "zfs"},
        },
        {"metadata": {"name": "other"}, "provisioner": "example.com/nfs"},
    ]
    nodes = [
        {"metadata": {"name": n, "uid": n, "labels": {"kubernetes.io/hostname": n}}}
        for n in ("n1", "n2", "n3")
    ]
    pools = [
        {"backend": "hostpath", "name": "/a", "budget": 100, "free": 100},
        {"backend": "hostpath", "name": "/b", "budget": 50, "free": 50},
    ]
    agents = {
        "n1": {"status": {"heartbeat": now_iso(), "nodeUID": "n1", "pools": pools}},
        "n2": {"status": {"heartbeat": "2020-01-01T00:00:00Z", "pools": pools}},
    }
    taken = [Allocation("n1", Backend.HOSTPATH, "/a", 70)]
    desired = desired_capacities(classes, nodes, agents, taken, namespace="lpv", agent_timeout=30)
    by_node = {o["metadata"]["labels"]["localpv.flotilla.dev/node"]: o for o in desired.values()}
    assert set(by_node) == {"n1", "n2", "n3"}, "only the valid class of ours"
    assert (by_node["n1"]["capacity"], by_node["n1"]["maximumVolumeSize"]) == ("80", "50")
    assert by_node["n2"]["capacity"] == "0", "a stale heartbeat offers nothing"
    assert by_node["n3"]["capacity"] == "0", "no agent, no room"
    assert same_quantities({"capacity": "80", "maximumVolumeSize": "50"}, by_node["n1"])
    assert not same_quantities({"capacity": "81", "maximumVolumeSize": "50"}, by_node["n1"])
