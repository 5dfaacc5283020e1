"""Grouping objects into resources and ordering the resource_deps graph."""

from __future__ import annotations

from typing import Any

import pytest

from flotilla.dev.plan import manifests
from flotilla.dev.plan.model import (
    ImageTarget,
    K8sResourceOptions,
    LocalResource,
    RestartContainer,
    TiltfileResult,
    TriggerMode,
)
from flotilla.dev.plan.resources import (
    UNCATEGORIZED,
    ResourceError,
    assemble,
    dependents,
    initial_set,
    unused_images,
)


def deployment(name: str, image: str = "example/app", kind: str = "Deployment") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
        },
    }


def service(name: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": app}, "ports": [{"port": 80}]},
    }


def configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}


def result(objs: list[dict[str, Any]], **kw: Any) -> TiltfileResult:
    r = TiltfileResult(tiltfile="/t/Tiltfile", k8s_objects=objs)
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_workloads_become_resources_and_services_join_them() -> None:
    res = assemble(
        result(
            [
                deployment("api", "example/api"),
                service("api", "api"),
                deployment("web"),
                configmap("settings"),
            ],
            images=[ImageTarget("example/api", "/t")],
        )
    )
    names = [r.name for r in res]
    assert names == [UNCATEGORIZED, "api", "web"]
    api = next(r for r in res if r.name == "api")
    assert [manifests.object_id(o) for o in api.objects] == ["api:deployment", "api:service"]
    assert api.images == ["example/api"]
    assert api.resource_deps == [UNCATEGORIZED]


def test_same_name_different_kinds_get_qualified_names() -> None:
    res = assemble(result([deployment("db"), deployment("db", kind="StatefulSet")]))
    assert sorted(r.name for r in res) == ["db:deployment", "db:statefulset"]


def test_k8s_resource_options_apply() -> None:
    opts = K8sResourceOptions(
        workload="api",
        new_name="backend",
        resource_deps=("web",),
        objects=("settings:configmap",),
        labels=("be",),
        trigger_mode=TriggerMode.MANUAL,
        auto_init=False,
    )
    res = assemble(
        result([deployment("api"), deployment("web"), configmap("settings")], k8s_resources=[opts])
    )
    be = next(r for r in res if r.name == "backend")
    assert be.trigger_mode == TriggerMode.MANUAL and not be.auto_init
    assert be.labels == ["be"] and be.resource_deps == ["web"]
    assert "settings:configmap" in [manifests.object_id(o) for o in be.objects]
    assert [r.name for r in res] == ["web", "backend"]  # web first: backend depends on it
    assert initial_set(res, None) == ["web"]


def test_new_resource_from_objects() -> None:
    opts = K8sResourceOptions(new_name="config", objects=("settings",))
    res = assemble(result([configmap("settings")], k8s_resources=[opts]))
    assert [r.name for r in res] == ["config"]


def test_unknown_workload_lists_known_ones() -> None:
    with pytest.raises(ResourceError, match=r"no workload named 'nope' .*api"):
        assemble(result([deployment("api")], k8s_resources=[K8sResourceOptions("nope")]))


def test_cycles_fail_and_unknown_dependencies_are_dropped_with_a_warning() -> None:
    a = LocalResource("a", "true", resource_deps=("b",))
    b = LocalResource("b", "true", resource_deps=("c",))
    c = LocalResource("c", "true", resource_deps=("a",))
    with pytest.raises(ResourceError, match="cycle: a -> b -> c -> a"):
        assemble(result([], local_resources=[a, b, c]))
    # as Tilt: a dependency on a resource that does not exist warns and is ignored
    a = LocalResource("a", "true", resource_deps=("zzz", "b"))
    res = result([], local_resources=[a, LocalResource("b", "true")])
    by_name = {r.name: r for r in assemble(res)}
    assert by_name["a"].resource_deps == ["b"]
    assert res.warnings == [
        "resource a specified a dependency on unknown resource zzz - dependency ignored"
    ]


def test_order_and_dependents() -> None:
    locals_ = [
        LocalResource("deploy", resource_deps=("build",)),
        LocalResource("build"),
        LocalResource("test", resource_deps=("deploy",)),
    ]
    res = assemble(result([], local_resources=locals_))
    assert [r.name for r in res] == ["build", "deploy", "test"]
    assert dependents(res, "build") == ["deploy", "test"]


def test_restart_container_is_refused_for_kubernetes() -> None:
    img = ImageTarget("example/app", "/t", live_update=(RestartContainer(),))
    with pytest.raises(ResourceError, match="docker_build_with_restart"):
        assemble(result([deployment("api")], images=[img]))


def test_unused_images_are_reported() -> None:
    r = result(
        [deployment("api", "example/api")],
        images=[ImageTarget("example/api", "/t"), ImageTarget("example/unused", "/t")],
    )
    assert unused_images(r.images, assemble(r)) == ["example/unused"]


def test_enabled_resources_keep_their_dependencies() -> None:
    locals_ = [LocalResource("a"), LocalResource("b", resource_deps=("a",)), LocalResource("c")]
    res = assemble(result([], local_resources=locals_))
    assert initial_set(res, ["b"]) == ["a", "b"]


def test_image_injection_and_entrypoint() -> None:
    obj = deployment("api", "example/api:latest")
    obj["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "IMG", "value": "example/api"}
    ]
    out = manifests.inject_images(
        obj,
        {"example/api": "reg:5000/example_api:tilt-1"},
        env_vars={"example/api"},
        commands={"example/api": (["/bin/app"], None)},
    )
    c = out["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "reg:5000/example_api:tilt-1" and c["command"] == ["/bin/app"]
    assert c["env"][0]["value"] == "reg:5000/example_api:tilt-1"
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == "example/api:latest"


def test_yaml_parsing_rejects_non_objects() -> None:
    with pytest.raises(manifests.ManifestError, match="without kind"):
        manifests.parse_yaml_stream("a: 1\n")
    with pytest.raises(manifests.ManifestError, match="invalid YAML"):
        manifests.parse_yaml_stream("a: [\n")
    items = manifests.parse_yaml_stream(
        "kind: List\napiVersion: v1\nitems:\n- "
        + "{apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n"
    )
    assert items[0]["kind"] == "ConfigMap"
