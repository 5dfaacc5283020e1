"""kube-proxy's and CoreDNS's configuration, and the host-side DNS probe."""

from __future__ import annotations

from pathlib import Path

from flotilla.testenv.cli import real_node_names
from flotilla.testenv.components import SERVICE_CIDR, Layout
from flotilla.testenv.services import (
    coredns_objects,
    corefile,
    dns_answer_count,
    dns_query,
    kube_proxy_config,
)


def test_kube_proxy_leaves_the_machine_sysctls_alone_and_masquerades(tmp_path: Path) -> None:
    config = kube_proxy_config(Layout(tmp_path), 1, 2)
    assert config["mode"] == "iptables"
    assert config["conntrack"]["maxPerCore"] == 0
    assert config["iptables"]["masqueradeAll"] is True  # same-bridge replies pass conntrack
    assert config["healthzBindAddress"].startswith("127.0.0.1:")
    assert config["nodePortAddresses"] == ["10.213.0.0/24"]


def test_coredns_binds_only_its_node_address() -> None:
    text = corefile()
    assert "bind {$POD_IP}" in text
    assert "health {$POD_IP}:8080" in text and "ready {$POD_IP}:8181" in text
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa" in text


def test_kube_dns_service_sits_at_the_cluster_dns_ip() -> None:
    objects = {o["kind"]: o for o in coredns_objects("flotilla.local/coredns:1", {"k": "v"})}
    service = objects["Service"]
    assert service["metadata"] == {
        "name": "kube-dns",
        "namespace": "kube-system",
        "labels": {"k8s-app": "kube-dns"},
    }
    assert service["spec"]["clusterIP"] == "10.96.0.10"
    assert service["spec"]["clusterIP"].startswith(SERVICE_CIDR.split(".0.0/")[0])
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["nodeSelector"] == {"flotilla.dev/real-node": "true"}
    binding = objects["ClusterRoleBinding"]
    assert binding["subjects"][0]["name"] == "system:coredns"


def test_dns_query_and_answer_count() -> None:
    query = dns_query("kubernetes.default.svc.cluster.local")
    assert query[:2] == b"\x42\x42" and b"\x0akubernetes\x07default" in query
    reply = bytearray(query)
    reply[2:4] = b"\x81\x80"  # a response, no error
    reply[6:8] = b"\x00\x01"  # one answer
    assert dns_answer_count(bytes(reply)) == 1
    reply[3] = 0x83  # NXDOMAIN
    assert dns_answer_count(bytes(reply)) == 0
    assert dns_answer_count(b"\x00\x01" + bytes(reply[2:])) == 0  # someone else's id
    assert dns_answer_count(b"") == 0


def test_real_node_names_keep_the_first_plain() -> None:
    assert real_node_names("real-node", 1) == ("real-node",)
    assert real_node_names("n", 3) == ("n", "n-2", "n-3")
    assert real_node_names("n", 0) == ()


def test_the_api_server_advertises_an_address_pods_reach(tmp_path: Path) -> None:
    from flotilla.testenv.build import BuildSpec
    from flotilla.testenv.cluster import host_address
    from flotilla.testenv.components import Ports, plan_components

    def apiserver_flags(*address: str) -> set[str]:
        plan = plan_components(BuildSpec(), Layout(tmp_path), Ports(1, 2, 3), *address)
        argv = next(c for c in plan if c.name == "kube-apiserver").argv
        return {a for a in argv if a.startswith(("--bind-address", "--advertise-address"))}

    # Loopback publishes no endpoint for the kubernetes Service; another address does, and then
    # the server listens everywhere so the 127.0.0.1 kubeconfigs keep working.
    assert apiserver_flags() == {"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"}
    assert apiserver_flags("192.0.2.2") == {
        "--bind-address=0.0.0.0",
        "--advertise-address=192.0.2.2",
    }
    assert host_address().count(".") == 3
