"""``flotilla dev render``: what a Tiltfile declares, as YAML, without building or deploying."""

from __future__ import annotations

from typing import Any

import yaml

from flotilla.dev.plan import imagedeps, kinds, manifests
from flotilla.dev.plan.context import Matcher, build_context, registry_ref, restart_command
from flotilla.dev.plan.model import (
    FallBackOn,
    ImageTarget,
    InitialSync,
    LiveUpdateStep,
    Resource,
    RestartContainer,
    Run,
    Sync,
    TiltfileResult,
    UIButton,
)


def step_dict(step: LiveUpdateStep) -> dict[str, Any]:
    if isinstance(step, Sync):
        return {"sync": {"local_path": step.local_path, "remote_path": step.remote_path}}
    if isinstance(step, Run):
        out: dict[str, Any] = {"cmd": step.cmd if isinstance(step.cmd, str) else list(step.cmd)}
        if step.trigger:
            out["trigger"] = list(step.trigger)
        return {"run": out}
    if isinstance(step, FallBackOn):
        return {"fall_back_on": list(step.paths)}
    if isinstance(step, RestartContainer):
        return {"restart_container": True}
    assert isinstance(step, InitialSync)
    return {"initial_sync": True}


def planned_refs(
    result: TiltfileResult, tiltignore: tuple[tuple[str, Matcher], ...] = (), registry: str = ""
) -> dict[str, str]:
    """declared ref → the ref a deploy would use, with the content-derived tag computed now."""
    out: dict[str, str] = {}
    local: dict[str, str] = {}  # the refs a dependent Dockerfile is rewritten to (dockerd's)
    reg = result.settings.default_registry or registry
    by_ref = {i.ref: i for i in result.images}
    for ref in imagedeps.order({i.ref: i.image_deps for i in result.images}):
        image = by_ref[ref]
        if image.kind == "custom":
            tag = image.tag or "<custom_build>"
        else:
            bases = {d: local[d] for d in image.image_deps if d in local}
            _, tag = build_context(image, tiltignore, bases)
        pushed = registry_ref(image.ref, reg, result.settings.registry_single_name)
        local[image.ref] = f"{pushed}:{tag}"
        base = registry_ref(
            image.ref,
            result.settings.registry_from_cluster or reg,
            result.settings.registry_single_name,
        )
        out[image.ref] = f"{base}:{tag}"
    return {i.ref: out[i.ref] for i in result.images}


def image_dict(image: ImageTarget) -> dict[str, Any]:
    out: dict[str, Any] = {"ref": image.ref, "type": f"{image.kind}_build"}
    if image.kind == "docker":
        out["context"] = image.context
        out["dockerfile"] = image.dockerfile or "<dockerfile_contents>"
        if not image.dockerfile:
            out["dockerfile_contents"] = image.dockerfile_contents
        for key in ("only", "ignore", "entrypoint"):
            if getattr(image, key):
                out[key] = list(getattr(image, key))
        if image.build_args:
            out["build_args"] = dict(image.build_args)
        if image.target:
            out["target"] = image.target
        if image.container_args is not None:
            out["container_args"] = list(image.container_args)
        if image.restart_entrypoint:
            out["restart_entrypoint"] = list(image.restart_entrypoint)
        if image.image_deps:
            out["image_deps"] = list(image.image_deps)
    else:
        out["command"] = image.command if isinstance(image.command, str) else list(image.command)
        out["deps"] = list(image.deps)
    if image.live_update:
        out["live_update"] = [step_dict(s) for s in image.live_update]
    return out


def resource_dict(r: Resource, images: dict[str, ImageTarget]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": r.name, "kind": str(r.kind)}
    out["resource_deps"] = list(r.resource_deps)
    out["labels"] = list(r.labels)
    out["trigger_mode"] = "auto" if r.trigger_mode.auto else "manual"
    out["auto_init"] = r.auto_init
    if r.objects:
        out["objects"] = [manifests.object_id(o) for o in r.objects]
    if r.images:
        out["images"] = [image_dict(images[ref]) for ref in r.images]
    if r.port_forwards:
        out["port_forwards"] = [
            ("" if p.host in ("127.0.0.1", "localhost", "") else f"{p.host}:")
            + f"{p.local_port}:{p.container_port or p.local_port}"
            for p in r.port_forwards
        ]
    if r.links:
        out["links"] = [{"url": lk.url, "name": lk.name} for lk in r.links]
    if r.local is not None:
        lr = r.local
        out["cmd"] = lr.cmd if isinstance(lr.cmd, str) else list(lr.cmd)
        if lr.serve_cmd:
            out["serve_cmd"] = lr.serve_cmd if isinstance(lr.serve_cmd, str) else list(lr.serve_cmd)
        out["deps"] = list(lr.deps)
        if lr.readiness_probe is not None:
            out["readiness_probe"] = lr.readiness_probe.kind
    if r.custom_deploy is not None:
        cd = r.custom_deploy
        out["apply_cmd"] = out.pop("cmd")
        out["delete_cmd"] = cd.delete_cmd if isinstance(cd.delete_cmd, str) else list(cd.delete_cmd)
        if cd.image_selector:
            out["image_selector"] = cd.image_selector
        if cd.image_deps:
            out["image_deps"] = list(cd.image_deps)
    if r.compose_service is not None:
        out["compose_project"] = r.compose_project
        out["service"] = {k: v for k, v in r.compose_service.items() if not k.startswith("_")}
    return out


def button_dict(b: UIButton) -> dict[str, Any]:
    out: dict[str, Any] = {"name": b.name, "text": b.text, "location": b.location}
    if b.resource:
        out["resource"] = b.resource
    out["argv"] = list(b.argv)
    if b.env:
        out["env"] = list(b.env)
    return out


def render(result: TiltfileResult, resources: list[Resource], refs: dict[str, str]) -> str:
    """Two YAML documents: the resources, then the manifests with image refs injected."""
    images = {i.ref: i for i in result.images}
    doc: dict[str, Any] = {"resources": [resource_dict(r, images) for r in resources]}
    deployed = {ref for r in resources for ref in r.images}
    bases = [image_dict(i) for i in result.images if i.ref not in deployed]
    if bases:  # built only as the FROM of others: Tilt lists them in each dependent resource
        doc["base_images"] = bases
    if result.warnings:
        doc["warnings"] = list(result.warnings)
    if result.buttons:
        doc["buttons"] = [button_dict(b) for b in result.buttons]
    if result.enabled_resources is not None:
        doc["enabled_resources"] = list(result.enabled_resources)
    env_refs = {i.ref for i in result.images if i.match_in_env_vars}
    objs = []
    for r in resources:
        for o in r.objects:
            if r.image_json_paths is not None:
                objs.append(kinds.inject(o, r.image_json_paths, refs))
                continue
            objs.append(
                manifests.inject_images(
                    o, refs, env_vars=env_refs, commands=container_overrides(result.images)
                )
            )
    head = yaml.safe_dump(doc, sort_keys=False)
    return head + ("---\n" + manifests.dump_yaml_stream(objs) if objs else "")


def container_overrides(
    images: list[ImageTarget],
) -> dict[str, tuple[list[str] | None, list[str] | None]]:
    """``entrypoint=`` / ``container_args=`` of each image, as (command, args) for containers."""
    out: dict[str, tuple[list[str] | None, list[str] | None]] = {}
    for i in images:
        if i.restart_entrypoint:  # the restart wrapper wins over the YAML's command, as in Tilt
            out[i.ref] = (
                list(restart_command(i.restart_entrypoint)),
                None if i.container_args is None else list(i.container_args),
            )
        elif i.entrypoint or i.container_args is not None:
            out[i.ref] = (
                list(i.entrypoint) or None,
                None if i.container_args is None else list(i.container_args),
            )
    return out
