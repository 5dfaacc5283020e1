"""Services and cluster DNS on the real nodes: kube-proxy on the host, CoreDNS as a Deployment.

Pure functions here; ``realnode_lifecycle.py`` starts kube-proxy and applies the objects.

- kube-proxy runs once per environment, in iptables mode (``iptables`` 1.8.9 with the nf_tables
  backend works in this kernel; every real node of an environment shares the host network
  namespace, so one kube-proxy serves them all). ``masqueradeAll`` makes a pod's reply to a pod on
  the same bridge go back through the host, where conntrack undoes the Service DNAT.
- CoreDNS runs with ``hostNetwork`` and binds only its node's address (port 53 and its health
  ports never collide with another environment's). It reaches the API server on loopback with a
  client certificate of its own, ``system:coredns``, bound to the usual read-only ClusterRole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flotilla.testenv.components import (
    CLUSTER_DNS_IP,
    CLUSTER_DOMAIN,
    POD_CIDR,
    Component,
    Layout,
)
from flotilla.testenv.pki import ClientIdentity

PROXY_MODE = "iptables"
KUBE_PROXY = ClientIdentity("kube-proxy", "system:kube-proxy")  # bound by system:node-proxier
COREDNS = ClientIdentity("coredns", "system:coredns")
COREDNS_IMAGE_NAME = "flotilla.local/coredns"
DNS_NAMESPACE = "kube-system"
DNS_APP_LABEL = "kube-dns"
# NodePorts answer on the real nodes' addresses (10.213.0.<slot+1>), never on the host's others.
NODE_ADDRESS_RANGE = "10.213.0.0/24"


def kube_proxy_dir(layout: Layout) -> Path:
    return layout.state_dir / "kube-proxy"


def kube_proxy_config(layout: Layout, healthz_port: int, metrics_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kube_proxy_dir(layout) / "kubeconfig")},
        "mode": PROXY_MODE,
        "clusterCIDR": POD_CIDR,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "nodePortAddresses": [NODE_ADDRESS_RANGE],
        # Leave the machine's conntrack sysctls alone (0 = do not set).
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "iptables": {
            "masqueradeAll": True,
            "localhostNodePorts": False,
            "syncPeriod": "10s",
            "minSyncPeriod": "0s",
        },
    }


def kube_proxy_component(layout: Layout, binary: Path, node_name: str) -> Component:
    return Component(
        "kube-proxy",
        (
            str(binary),
            f"--config={kube_proxy_dir(layout) / 'config.yaml'}",
            f"--hostname-override={node_name}",
            "--v=1",
        ),
    )


def corefile() -> str:
    """Cluster DNS for ``cluster.local``; the rest goes to the node's resolv.conf."""
    return "\n".join(
        [
            ".:53 {",
            "    bind {$POD_IP}",
            "    errors",
            "    health {$POD_IP}:8080",
            "    ready {$POD_IP}:8181",
            f"    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{",
            "        kubeconfig /etc/coredns/kube/kubeconfig flotilla",
            "        pods insecure",
            "        fallthrough in-addr.arpa ip6.arpa",
            "        ttl 5",
            "    }",
            "    forward . /etc/resolv.conf",
            "    cache 5",
            "    loadbalance",
            "    reload",
            "}",
            "",
        ]
    )


def coredns_kubeconfig(api_port: int) -> str:
    """Paths inside the pod: the Secret is mounted at /etc/coredns/kube."""
    return "\n".join(
        [
            "apiVersion: v1",
            "kind: Config",
            "clusters:",
            "- name: flotilla",
            "  cluster:",
            f"    server: https://127.0.0.1:{api_port}",
            "    certificate-authority: /etc/coredns/kube/ca.crt",
            "users:",
            "- name: coredns",
            "  user:",
            "    client-certificate: /etc/coredns/kube/client.crt",
            "    client-key: /etc/coredns/kube/client.key",
            "contexts:",
            "- name: flotilla",
            "  context: {cluster: flotilla, user: coredns}",
            "current-context: flotilla",
            "",
        ]
    )


def _meta(name: str, namespace: str | None = DNS_NAMESPACE) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"k8s-app": DNS_APP_LABEL}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def coredns_objects(image: str, secret_data: dict[str, str]) -> list[dict[str, Any]]:
    """RBAC, Corefile, credentials, the Deployment and the ``kube-dns`` Service."""
    rules = [
        {
            "apiGroups": [""],
            "resources": ["endpoints", "services", "pods", "namespaces"],
            "verbs": ["list", "watch"],
        },
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["list", "watch"],
        },
    ]
    pod_spec: dict[str, Any] = {
        "hostNetwork": True,
        "dnsPolicy": "Default",
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"flotilla.dev/real-node": "true"},
        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
        "containers": [
            {
                "name": "coredns",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["/coredns", "-conf", "/etc/coredns/Corefile"],
                "env": [
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
                ],
                "ports": [
                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                ],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/coredns", "readOnly": True},
                    {"name": "kube", "mountPath": "/etc/coredns/kube", "readOnly": True},
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": "coredns"}},
            {"name": "kube", "secret": {"secretName": "coredns-kubeconfig"}},
        ],
    }
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta("system:coredns", None),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": _meta("system:coredns", None),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:coredns",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": COREDNS.user}
            ],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("coredns"),
            "data": {"Corefile": corefile()},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta("coredns-kubeconfig"),
            "stringData": secret_data,
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta("coredns"),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"k8s-app": DNS_APP_LABEL}},
                "template": {"metadata": {"labels": {"k8s-app": DNS_APP_LABEL}}, "spec": pod_spec},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("kube-dns"),
            "spec": {
                "clusterIP": CLUSTER_DNS_IP,
                "selector": {"k8s-app": DNS_APP_LABEL},
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                ],
            },
        },
    ]


def dns_query(name: str, query_id: int = 0x4242) -> bytes:
    """A minimal DNS query (type A, recursion desired) to probe the cluster DNS from the host."""
    header = query_id.to_bytes(2, "big") + b"\x01\x00" + b"\x00\x01" + b"\x00" * 6
    labels = b"".join(
        len(part).to_bytes(1, "big") + part.encode() for part in name.rstrip(".").split(".")
    )
    return header + labels + b"\x00" + b"\x00\x01\x00\x01"


def dns_answer_count(reply: bytes, query_id: int = 0x4242) -> int:
    """How many answers a reply to ``dns_query`` carries; 0 for an error or a stranger's reply."""
    if len(reply) < 12 or int.from_bytes(reply[:2], "big") != query_id:
        return 0
    if reply[3] & 0x0F:  # RCODE
        return 0
    return int.from_bytes(reply[6:8], "big")
