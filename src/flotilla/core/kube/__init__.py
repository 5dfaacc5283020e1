"""The one place that talks to the Kubernetes API.

Systems describe objects with lightkube's typed resources or plain dicts and go through these
helpers, so error mapping and client construction live here and the client library can be
swapped. ``errors`` maps API statuses to one exception class each; ``client`` holds clients and
polling; ``raw`` objects as dicts; ``informers`` list+watch caches and Events; ``streams`` exec,
port-forward, logs and the service proxy.
"""

from flotilla.core.kube.client import (
    KubeconfigError,
    client_for,
    client_from_environment,
    client_from_kubeconfig,
    kubeconfig_path,
    object_name,
    wait_until,
)
from flotilla.core.kube.errors import (
    KubeAlreadyExistsError,
    KubeConflictError,
    KubeError,
    KubeForbiddenError,
    KubeGoneError,
    KubeInvalidError,
    KubeNotFoundError,
    KubeTooManyRequestsError,
    KubeUnauthorizedError,
    error_for_status,
    kube_errors,
)
from flotilla.core.kube.informers import (
    Informer,
    custom_resource,
    post_event,
    to_dict,
    warm_up_decoders,
)
from flotilla.core.kube.raw import (
    apply_raw,
    create_raw,
    delete_raw,
    evict_pod,
    get_raw,
    list_raw,
    list_raw_fields,
    patch_merge_raw,
    resource_type,
)
from flotilla.core.kube.streams import (
    PortForward,
    exec_websocket,
    follow_pod_logs,
    kubeconfig_context,
    kubectl_binary,
    service_proxy,
)

__all__ = [
    "Informer",
    "KubeAlreadyExistsError",
    "KubeConflictError",
    "KubeError",
    "KubeForbiddenError",
    "KubeGoneError",
    "KubeInvalidError",
    "KubeNotFoundError",
    "KubeTooManyRequestsError",
    "KubeUnauthorizedError",
    "KubeconfigError",
    "PortForward",
    "apply_raw",
    "client_for",
    "client_from_environment",
    "client_from_kubeconfig",
    "create_raw",
    "custom_resource",
    "delete_raw",
    "error_for_status",
    "evict_pod",
    "exec_websocket",
    "follow_pod_logs",
    "get_raw",
    "kube_errors",
    "kubeconfig_context",
    "kubeconfig_path",
    "kubectl_binary",
    "list_raw",
    "list_raw_fields",
    "object_name",
    "patch_merge_raw",
    "post_event",
    "resource_type",
    "service_proxy",
    "to_dict",
    "wait_until",
    "warm_up_decoders",
]
