"""The real node's configuration encodes what this kernel and containerd 1.6 need."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from flotilla.testenv.realnode import (
    NodeNetwork,
    RealNodeLayout,
    cni_conflist_text,
    containerd_config,
    kubelet_component,
    kubelet_config,
    registry_hosts,
)


def layout(tmp_path: Path) -> RealNodeLayout:
    return RealNodeLayout(tmp_path, "real-node")


def test_containerd_is_private_and_matches_the_kubelet(tmp_path: Path) -> None:
    node = layout(tmp_path)
    config = tomllib.loads(containerd_config(node))
    assert config["grpc"]["address"] == str(node.containerd_socket)
    assert config["root"].startswith(str(node.root))  # never the machine's /var/lib/containerd
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.10"
    assert cri["restrict_oom_score_adj"] is True
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["options"]["SystemdCgroup"] is False
    kubelet = kubelet_config(node, NodeNetwork(0), tmp_path / "ca.crt", 10250, 10248)
    assert kubelet["cgroupDriver"] == "cgroupfs"  # must match SystemdCgroup = false
    assert kubelet["containerRuntimeEndpoint"] == f"unix://{node.containerd_socket}"
    assert cri["cni"]["conf_dir"] == str(node.cni_conf_dir)


def test_each_node_has_its_own_cgroup_root_and_runc_state(tmp_path: Path) -> None:
    """Kubelets sharing /kubepods delete each other's pod cgroups as orphans (exit 137)."""
    first, second = layout(tmp_path), RealNodeLayout(tmp_path / "other", "real-node")
    roots = {
        kubelet_config(n, NodeNetwork(slot), tmp_path / "ca.crt", 1, 2)["cgroupRoot"]
        for n, slot in ((first, 0), (second, 1))
    }
    assert roots == {"/flotilla-node0", "/flotilla-node1"}
    runc_roots = {
        tomllib.loads(containerd_config(n))["plugins"]["io.containerd.grpc.v1.cri"]["containerd"][
            "runtimes"
        ]["runc"]["options"]["Root"]
        for n in (first, second)
    }
    assert runc_roots == {str(first.runc_root), str(second.runc_root)}
    assert all(r.startswith(str(tmp_path)) for r in runc_roots)  # never /run/containerd/runc


def test_pods_resolve_through_the_cluster_dns_service(tmp_path: Path) -> None:
    kubelet = kubelet_config(layout(tmp_path), NodeNetwork(0), tmp_path / "ca.crt", 1, 2)
    assert kubelet["clusterDNS"] == ["10.96.0.10"]
    assert kubelet["clusterDomain"] == "cluster.local"


def test_kubelet_keeps_the_unpinned_sandbox_image(tmp_path: Path) -> None:
    kubelet = kubelet_config(layout(tmp_path), NodeNetwork(3), tmp_path / "ca.crt", 1, 2)
    assert kubelet["imageGCHighThresholdPercent"] == 100
    assert kubelet["failCgroupV1"] is False
    assert kubelet["authentication"]["anonymous"]["enabled"] is False
    assert kubelet["authorization"]["mode"] == "Webhook"
    assert kubelet["address"] == "10.213.0.4"


def test_kubelet_command_names_the_node_and_its_ip(tmp_path: Path) -> None:
    network = NodeNetwork(0)
    argv = kubelet_component(layout(tmp_path), network, Path("/bin/kubelet")).argv
    assert "--hostname-override=real-node" in argv
    assert f"--node-ip={network.node_ip}" in argv
    assert any(a.startswith("--root-dir=") and str(tmp_path) in a for a in argv)


def test_cni_is_a_bridge_with_host_local_addresses_in_the_state_dir(tmp_path: Path) -> None:
    node = layout(tmp_path)
    conf = json.loads(cni_conflist_text(node, NodeNetwork(0)))
    bridge = conf["plugins"][0]
    assert bridge["type"] == "bridge"
    assert bridge["bridge"] == "flotilla0"
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["dataDir"] == str(node.cni_ipam_dir)
    assert bridge["ipam"]["ranges"][0][0]["subnet"] == "10.244.0.0/24"


def test_flotilla_local_resolves_to_the_loopback_registry() -> None:
    hosts = registry_hosts(5123)
    assert set(hosts) == {"flotilla.local", "127.0.0.1:5123", "localhost:5123"}
    parsed = tomllib.loads(hosts["flotilla.local"])
    assert parsed["server"] == "http://127.0.0.1:5123"
    assert "pull" in parsed["host"]["http://127.0.0.1:5123"]["capabilities"]


def test_slots_never_share_links_or_subnets() -> None:
    networks = [NodeNetwork(i) for i in range(16)]
    for attribute in ("node_ip", "node_link", "pod_bridge", "pod_cidr", "cgroup_root"):
        values = [getattr(n, attribute) for n in networks]
        assert len(set(values)) == 16, attribute
    assert all(len(n.node_link) <= 15 for n in networks), "Linux link names are 15 bytes at most"
    with pytest.raises(ValueError, match="slot"):
        NodeNetwork(16)


def test_a_slot_per_real_node_kept_on_up_again_and_freed_at_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flotilla.testenv import nodehost

    monkeypatch.setattr(nodehost, "SLOTS_DIR", tmp_path / "slots")
    env, other = tmp_path / "env", tmp_path / "other"
    first = nodehost.claim_slot(env, "real-node")
    second = nodehost.claim_slot(env, "real-node-2")
    assert (first.slot, second.slot) == (0, 1)
    assert nodehost.claim_slot(env, "real-node") == first  # `up` again keeps the node's slot
    # A dead environment's slots are free for others; a live one's would not be.
    assert nodehost.claim_slot(other, "real-node").slot == 0
    nodehost.release_slot(env, second)
    assert not (tmp_path / "slots" / "real-node-1.owner").exists()
    assert nodehost.service_proxy_owner(env) is None  # nobody's kube-proxy runs
