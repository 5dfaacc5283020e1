"""From declarations to resources: group objects by workload, apply ``k8s_resource`` options,
check ``resource_deps`` and order the graph. Pure functions over the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flotilla.core.errors import FlotillaError
from flotilla.dev.plan import kinds, manifests
from flotilla.dev.plan.model import (
    ImageTarget,
    LocalResource,
    Resource,
    ResourceKind,
    RestartContainer,
    TiltfileResult,
    TriggerMode,
)

UNCATEGORIZED = "uncategorized"


class ResourceError(FlotillaError, ValueError):
    """The declarations do not form a valid set of resources."""


def _selects(service: dict[str, Any], workload: dict[str, Any]) -> bool:
    selector = (service.get("spec") or {}).get("selector") or {}
    if not selector or not isinstance(selector, dict):
        return False
    same_ns = (service.get("metadata") or {}).get("namespace") == (
        workload.get("metadata") or {}
    ).get("namespace")
    labels = manifests.pod_labels(workload)
    return same_ns and all(labels.get(k) == v for k, v in selector.items())


def _workload_names(workloads: list[dict[str, Any]]) -> list[str]:
    """``name``, or ``name:kind`` (then ``name:kind:namespace``) where names collide."""

    def key(o: dict[str, Any], depth: int) -> str:
        meta = o.get("metadata") or {}
        parts = [
            str(meta.get("name", "")),
            str(o.get("kind", "")),
            str(meta.get("namespace") or "default"),
        ]
        return ":".join(parts[:depth]).lower()

    names = []
    for o in workloads:
        for depth in (1, 2, 3):
            k = key(o, depth)
            if sum(1 for w in workloads if key(w, depth) == k) == 1 or depth == 3:
                names.append(k)
                break
    return names


def assemble(result: TiltfileResult) -> list[Resource]:
    """Resources in dependency order: k8s workloads, local resources, compose services."""
    objs = result.k8s_objects

    def is_workload(o: dict[str, Any]) -> bool:
        return manifests.is_workload(o) or kinds.rule_for(o, result.kind_rules) is not None

    workloads = [o for o in objs if is_workload(o)]
    names = [
        result.workload_names.get(manifests.object_id(w), n)
        for n, w in zip(_workload_names(workloads), workloads, strict=True)
    ]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ResourceError(f"workload_to_resource_function: two workloads are named {dup!r}")
    by_name: dict[str, Resource] = {}
    refs = [i.ref for i in result.images]
    env_refs = {i.ref for i in result.images if i.match_in_env_vars}
    for name, w in zip(names, workloads, strict=True):
        rule = kinds.rule_for(w, result.kind_rules)
        by_name[name] = Resource(
            name=name,
            kind=ResourceKind.K8S,
            objects=[w],
            images=manifests.images_used(w, refs, env_vars=env_refs)
            if rule is None
            else kinds.images_used(w, rule[2], refs),
            trigger_mode=result.settings.trigger_mode,
            image_json_paths=None if rule is None else rule[2],
        )
    leftovers: list[dict[str, Any]] = []
    for o in objs:
        if is_workload(o):
            continue
        owner = next(
            (
                by_name[n]
                for n, w in zip(names, workloads, strict=True)
                if o.get("kind") == "Service" and _selects(o, w)
            ),
            None,
        )
        (owner.objects if owner else leftovers).append(o)

    custom = _custom_deploy_resources(result)
    for r in custom:
        if r.name in by_name:
            raise ResourceError(f"k8s_custom_deploy: resource {r.name!r} already exists")
        by_name[r.name] = r
    for opts in result.k8s_resources:
        if opts.workload:
            target = _find_workload(by_name, opts.workload)
        else:
            target = Resource(
                name=opts.new_name, kind=ResourceKind.K8S, trigger_mode=result.settings.trigger_mode
            )
            if opts.new_name in by_name:
                raise ResourceError(f"k8s_resource: resource {opts.new_name!r} already exists")
            by_name[opts.new_name] = target
        for sel in opts.objects:
            hits = [o for o in leftovers if manifests.selector_matches(sel, o)]
            if not hits:
                raise ResourceError(
                    f"k8s_resource {target.name}: no object matches {sel!r} "
                    "among the objects not already in a workload"
                )
            if len(hits) > 1:
                raise ResourceError(
                    f"k8s_resource {target.name}: {sel!r} matches several "
                    "objects; add :kind or :kind:namespace"
                )
            leftovers.remove(hits[0])
            target.objects.append(hits[0])
        if opts.new_name and opts.workload and opts.new_name != target.name:
            if opts.new_name in by_name:
                raise ResourceError(f"k8s_resource: resource {opts.new_name!r} already exists")
            del by_name[target.name]
            target.name = opts.new_name
            by_name[target.name] = target
        if opts.trigger_mode is not None:
            target.trigger_mode = opts.trigger_mode
        target.auto_init = opts.auto_init and target.auto_init
        target.port_forwards += opts.port_forwards
        target.links += opts.links
        target.labels += [lb for lb in opts.labels if lb not in target.labels]
        target.resource_deps += [d for d in opts.resource_deps if d not in target.resource_deps]
        target.extra_pod_selectors += opts.extra_pod_selectors
        target.pod_readiness = opts.pod_readiness or target.pod_readiness

    resources = list(by_name.values())
    if leftovers:
        for r in resources:
            r.resource_deps.insert(0, UNCATEGORIZED)
        resources.insert(
            0, Resource(name=UNCATEGORIZED, kind=ResourceKind.UNCATEGORIZED, objects=leftovers)
        )
    for lr in result.local_resources:
        resources.append(
            Resource(
                name=lr.name,
                kind=ResourceKind.LOCAL,
                resource_deps=list(lr.resource_deps),
                trigger_mode=lr.trigger_mode,
                auto_init=lr.auto_init,
                links=list(lr.links),
                labels=list(lr.labels),
                local=lr,
            )
        )
    resources += _compose_resources(result)
    _check_images(result.images, resources)
    _drop_unknown_deps(result, resources)
    return order(resources)


def _drop_unknown_deps(result: TiltfileResult, resources: list[Resource]) -> None:
    """A dependency on a resource that does not exist is ignored with a warning, as in Tilt.

    Tilt (tiltfile_state.go) warns and loads; refusing would stop Tiltfiles that Tilt runs, e.g.
    one whose optional resource is commented out.
    """
    known = {r.name for r in resources}
    for r in resources:
        for d in r.resource_deps:
            if d not in known:
                result.warnings.append(
                    f"resource {r.name} specified a dependency on unknown resource {d} - "
                    "dependency ignored"
                )
        r.resource_deps = [d for d in r.resource_deps if d in known]


def _find_workload(by_name: dict[str, Resource], selector: str) -> Resource:
    if selector.lower() in by_name:
        return by_name[selector.lower()]
    hits = [
        r
        for r in by_name.values()
        if r.kind == ResourceKind.K8S
        and r.objects
        and manifests.selector_matches(selector, r.objects[0])
    ]
    if len(hits) == 1:
        return hits[0]
    known = ", ".join(sorted(by_name)) or "none"
    raise ResourceError(f"k8s_resource: no workload named {selector!r} (workloads: {known})")


def _custom_deploy_resources(result: TiltfileResult) -> list[Resource]:
    """``k8s_custom_deploy``: its apply command runs as the resource's update."""
    out = []
    for cd in result.custom_deploys:
        local = LocalResource(
            name=cd.name,
            cmd=cd.apply_cmd,
            deps=cd.deps,
            trigger_mode=result.settings.trigger_mode,
            env=dict(cd.apply_env),
            dir=cd.apply_dir,
        )
        images = [cd.image_selector] if cd.image_selector in {i.ref for i in result.images} else []
        out.append(
            Resource(
                name=cd.name,
                kind=ResourceKind.LOCAL,
                trigger_mode=result.settings.trigger_mode,
                local=local,
                images=images,
                custom_deploy=cd,
            )
        )
    return out


def _compose_resources(result: TiltfileResult) -> list[Resource]:
    out: list[Resource] = []
    opts = {o.name: o for o in result.dc_resources}
    for proj in result.compose:
        for svc, spec in proj.services.items():
            r = Resource(
                name=svc,
                kind=ResourceKind.COMPOSE,
                compose_service=spec,
                compose_project=proj.project_name,
                trigger_mode=result.settings.trigger_mode,
                resource_deps=[str(d) for d in _depends_on(spec)],
            )
            image = str(spec.get("image") or "")
            exact = manifests.exact_names(i.ref for i in result.images)
            r.images = [
                i.ref for i in result.images if image and manifests.refers_to(image, i.ref, exact)
            ][:1]
            o = opts.pop(svc, None)
            if o is not None:
                r.name = o.new_name or svc
                r.trigger_mode = o.trigger_mode if o.trigger_mode is not None else r.trigger_mode
                r.resource_deps += [d for d in o.resource_deps if d not in r.resource_deps]
                r.links += o.links
                r.labels += list(o.labels)
                r.auto_init = o.auto_init
            out.append(r)
    if opts:
        raise ResourceError(f"dc_resource: no compose service named {next(iter(opts))!r}")
    return out


def _depends_on(spec: dict[str, Any]) -> Iterable[str]:
    deps = spec.get("depends_on") or []
    return list(deps) if isinstance(deps, list | dict) else []


def _check_images(images: list[ImageTarget], resources: list[Resource]) -> None:
    by_ref = {i.ref: i for i in images}
    for r in resources:
        for ref in r.images:
            steps = by_ref[ref].live_update
            if r.kind == ResourceKind.K8S and any(isinstance(s, RestartContainer) for s in steps):
                raise ResourceError(
                    f"{r.name}: restart_container() works only for Docker Compose; for "
                    "Kubernetes use load('ext://restart_process', 'docker_build_with_restart')"
                )


def unused_images(images: list[ImageTarget], resources: list[Resource]) -> list[str]:
    """Refs built by the Tiltfile that no resource deploys (Tilt warns about these)."""
    used = {ref for r in resources for ref in r.images}
    used |= {dep for i in images for dep in i.image_deps}
    return [i.ref for i in images if i.ref not in used]


def order(resources: list[Resource]) -> list[Resource]:
    """Topological order by ``resource_deps``, stable otherwise; unknown deps and cycles fail."""
    by_name = {r.name: r for r in resources}
    if len(by_name) != len(resources):
        dup = next(r.name for r in resources if sum(x.name == r.name for x in resources) > 1)
        raise ResourceError(f"two resources are named {dup!r}")
    for r in resources:
        for d in r.resource_deps:
            if d not in by_name:
                raise ResourceError(f"resource {r.name} depends on unknown resource {d!r}")
    out: list[Resource] = []
    state: dict[str, int] = {}

    def visit(r: Resource, path: list[str]) -> None:
        if state.get(r.name) == 2:
            return
        if state.get(r.name) == 1:
            cycle = [*path[path.index(r.name) :], r.name]
            raise ResourceError(f"resource_deps cycle: {' -> '.join(cycle)}")
        state[r.name] = 1
        for d in r.resource_deps:
            visit(by_name[d], [*path, r.name])
        state[r.name] = 2
        out.append(r)

    for r in resources:
        visit(r, [])
    return out


def dependents(resources: list[Resource], name: str) -> list[str]:
    """Names of resources that depend on ``name``, directly or not."""
    out: list[str] = []
    frontier = [name]
    while frontier:
        cur = frontier.pop()
        for r in resources:
            if cur in r.resource_deps and r.name not in out:
                out.append(r.name)
                frontier.append(r.name)
    return out


def initial_set(resources: list[Resource], enabled: list[str] | None) -> list[str]:
    """Resources to start at ``up``: ``auto_init`` ones (and enabled, if the Tiltfile says)."""
    names = [
        r.name
        for r in resources
        if r.auto_init
        and r.trigger_mode not in (TriggerMode.AUTO_NO_INIT, TriggerMode.MANUAL_NO_INIT)
    ]
    if enabled:
        keep = set(enabled)
        for r in resources:
            if r.name in keep:
                keep.update(r.resource_deps)
        names = [n for n in names if n in keep]
    return names
