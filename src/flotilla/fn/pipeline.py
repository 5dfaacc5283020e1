"""Tekton ``tekton.dev/v1`` Pipeline and Tasks that build and deploy a function on a cluster. Pure.

Three Tasks, all defined here rather than fetched through resolvers (on-cluster builds that fetch
tasks remotely are the most reported failure of Knative func, and break air-gapped clusters):
``fetch`` clones the repository, ``build`` has flotilla write the same build context ``fn build``
uses and kaniko build and push it, ``deploy`` runs ``flotilla fn deploy`` with the pushed digest.
"""

from __future__ import annotations

from typing import Any

from .image import BASE_IMAGES
from .model import FunctionSpec, Runtime

__all__ = [
    "DEFAULT_FLOTILLA_IMAGE",
    "DEFAULT_GIT_IMAGE",
    "DEFAULT_KANIKO_IMAGE",
    "deployer_name",
    "pipeline_objects",
    "pipeline_run",
]

DEFAULT_FLOTILLA_IMAGE = "ghcr.io/flotilla/flotilla:latest"
DEFAULT_KANIKO_IMAGE = "gcr.io/kaniko-project/executor:v1.23.2"
DEFAULT_GIT_IMAGE = "alpine/git:2.45.2"
_LABELS = {"app.kubernetes.io/managed-by": "flotilla", "app.kubernetes.io/component": "function"}


def _param(name: str, description: str, default: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "type": "string", "description": description}
    if default is not None:
        out["default"] = default
    return out


def _meta(name: str, namespace: str, fn: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {**_LABELS, "flotilla.dev/function": fn},
    }


def pipeline_objects(
    spec: FunctionSpec,
    namespace: str,
    *,
    git_url: str = "",
    context_dir: str = ".",
    flotilla_image: str = DEFAULT_FLOTILLA_IMAGE,
    kaniko_image: str = DEFAULT_KANIKO_IMAGE,
    git_image: str = DEFAULT_GIT_IMAGE,
) -> list[dict[str, Any]]:
    """Three Tasks and a Pipeline named after the function, in ``namespace``."""
    fetch, build, deploy = (f"{spec.name}-{step}" for step in ("fetch", "build", "deploy"))
    src = "$(workspaces.source.path)"
    fetch_task = {
        "apiVersion": "tekton.dev/v1",
        "kind": "Task",
        "metadata": _meta(fetch, namespace, spec.name),
        "spec": {
            "params": [
                _param("url", "git repository to clone"),
                _param("revision", "branch, tag or commit", "main"),
            ],
            "workspaces": [{"name": "source", "description": "where the repository goes"}],
            "results": [{"name": "commit", "description": "the commit that was checked out"}],
            "steps": [
                {
                    "name": "clone",
                    "image": git_image,
                    "env": [
                        {"name": "URL", "value": "$(params.url)"},
                        {"name": "REVISION", "value": "$(params.revision)"},
                    ],
                    "script": (
                        "#!/bin/sh\nset -eu\n"
                        f'cd "{src}"\n'
                        'git init -q . && git remote add origin "$URL" 2>/dev/null || true\n'
                        'git fetch -q --depth 1 origin "$REVISION"\n'
                        "git checkout -q FETCH_HEAD\n"
                        'git rev-parse HEAD | tr -d "\\n" > "$(results.commit.path)"\n'
                    ),
                }
            ],
        },
    }
    build_task = {
        "apiVersion": "tekton.dev/v1",
        "kind": "Task",
        "metadata": _meta(build, namespace, spec.name),
        "spec": {
            "params": [
                _param("image", "image reference to push"),
                _param("context-dir", "function directory inside the repository", "."),
                {
                    "name": "build-flags",
                    "type": "array",
                    "description": "more kaniko flags (registry mirrors, --insecure, ...)",
                    "default": [],
                },
            ],
            "workspaces": [{"name": "source"}],
            "results": [{"name": "IMAGE_DIGEST", "description": "digest of the pushed image"}],
            "steps": [
                {
                    "name": "context",
                    "image": flotilla_image,
                    "workingDir": f"{src}/$(params.context-dir)",
                    "args": ["fn", "build", "--context-dir", f"{src}/.flotilla-build"],
                    "command": ["flotilla"],
                },
                _test_step(spec, src, flotilla_image),
                {
                    "name": "build-and-push",
                    "image": kaniko_image,
                    # Named, so Tekton need not ask a registry for the image's entrypoint.
                    "command": ["/kaniko/executor"],
                    "args": [
                        f"--context=dir://{src}/.flotilla-build",
                        f"--dockerfile={src}/.flotilla-build/Dockerfile",
                        "--destination=$(params.image)",
                        "--digest-file=$(results.IMAGE_DIGEST.path)",
                        "--reproducible",
                        "$(params.build-flags[*])",
                    ],
                },
            ],
        },
    }
    deploy_task = {
        "apiVersion": "tekton.dev/v1",
        "kind": "Task",
        "metadata": _meta(deploy, namespace, spec.name),
        "spec": {
            "params": [
                _param("image", "image reference that was pushed"),
                _param("digest", "its digest"),
                _param("target", "knative or kubernetes", spec.deploy.target.value),
                _param("context-dir", "function directory inside the repository", "."),
            ],
            "workspaces": [{"name": "source"}],
            "steps": [
                {
                    "name": "deploy",
                    "image": flotilla_image,
                    "workingDir": f"{src}/$(params.context-dir)",
                    "command": ["flotilla"],
                    "args": [
                        "fn",
                        "deploy",
                        "--target",
                        "$(params.target)",
                        "--in-cluster",
                        "--image",
                        "$(params.image)@$(params.digest)",
                        "--namespace",
                        namespace,
                    ],
                }
            ],
        },
    }
    pipeline = {
        "apiVersion": "tekton.dev/v1",
        "kind": "Pipeline",
        "metadata": _meta(spec.name, namespace, spec.name),
        "spec": {
            "description": f"Build and deploy the function {spec.name}.",
            "params": [
                _param("git-url", "repository holding the function", git_url or None),
                _param("git-revision", "branch, tag or commit", "main"),
                _param("context-dir", "function directory inside the repository", context_dir),
                _param("image", "image reference to push", spec.image_ref),
                _param("target", "knative or kubernetes", spec.deploy.target.value),
                {
                    "name": "build-flags",
                    "type": "array",
                    "description": "more kaniko flags (registry mirrors, --insecure, ...)",
                    "default": [],
                },
            ],
            "workspaces": [{"name": "source"}],
            "tasks": [
                {
                    "name": "fetch",
                    "taskRef": {"name": fetch, "kind": "Task"},
                    "params": [
                        {"name": "url", "value": "$(params.git-url)"},
                        {"name": "revision", "value": "$(params.git-revision)"},
                    ],
                    "workspaces": [{"name": "source", "workspace": "source"}],
                },
                {
                    "name": "build",
                    "runAfter": ["fetch"],
                    "taskRef": {"name": build, "kind": "Task"},
                    "params": [
                        {"name": "image", "value": "$(params.image)"},
                        {"name": "context-dir", "value": "$(params.context-dir)"},
                        {"name": "build-flags", "value": ["$(params.build-flags[*])"]},
                    ],
                    "workspaces": [{"name": "source", "workspace": "source"}],
                },
                {
                    "name": "deploy",
                    "runAfter": ["build"],
                    "taskRef": {"name": deploy, "kind": "Task"},
                    "params": [
                        {"name": "image", "value": "$(params.image)"},
                        {"name": "digest", "value": "$(tasks.build.results.IMAGE_DIGEST)"},
                        {"name": "target", "value": "$(params.target)"},
                        {"name": "context-dir", "value": "$(params.context-dir)"},
                    ],
                    "workspaces": [{"name": "source", "workspace": "source"}],
                },
            ],
        },
    }
    return [fetch_task, build_task, deploy_task, pipeline, *deployer_objects(spec, namespace)]


def _test_step(spec: FunctionSpec, src: str, flotilla_image: str) -> dict[str, Any]:
    """The function's own tests, before anything is built: a failure stops the run at this
    step. Python: ``flotilla fn test`` (pytest is in Flotilla's image). Node: ``node --test`` in
    the Node base image, with the runtime and its modules from the build context the step
    before wrote. Java: Maven is in no image here, so the step says it skipped them."""
    context = f"{src}/.flotilla-build"
    step: dict[str, Any] = {"name": "test", "workingDir": f"{src}/$(params.context-dir)"}
    if spec.runtime is Runtime.PYTHON:
        return {**step, "image": flotilla_image, "command": ["flotilla"], "args": ["fn", "test"]}
    if spec.runtime is Runtime.NODE:
        node_path = f"{context}/runtime:{context}/runtime-deps:{context}/userdeps"
        return {
            **step,
            "image": BASE_IMAGES[Runtime.NODE],
            "env": [{"name": "NODE_PATH", "value": node_path}],
            "command": ["node", "--test"],
        }
    script = "#!/bin/sh\necho 'Java tests are not run here: no image has Maven'\n"
    return {**step, "image": flotilla_image, "script": script}


def deployer_name(spec: FunctionSpec) -> str:
    return f"{spec.name}-deployer"


def deployer_objects(spec: FunctionSpec, namespace: str) -> list[dict[str, Any]]:
    """The deploy step's own ServiceAccount, and a Role with only what ``fn deploy`` does in
    this namespace: server-side apply (a patch, which needs create for a new object) and read
    back its Deployment and Service (or its Knative Service), and list pods to report why a
    rollout waits."""
    name = deployer_name(spec)
    verbs = ["get", "create", "patch"]
    rules: list[dict[str, Any]] = [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": verbs},
        {"apiGroups": [""], "resources": ["services"], "verbs": verbs},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": ["serving.knative.dev"], "resources": ["services"], "verbs": verbs},
    ]
    meta = _meta(name, namespace, spec.name)
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]


def pipeline_run(
    spec: FunctionSpec,
    namespace: str,
    *,
    params: dict[str, str | list[str]],
    workspace_claim: str = "",
    storage_class: str | None = None,
    workspace_size: str = "1Gi",
    pod_template: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A PipelineRun of the function's Pipeline: its source workspace on an existing claim or
    a claim made for this run, the deploy task under the deployer ServiceAccount."""
    if workspace_claim:
        workspace: dict[str, Any] = {
            "name": "source",
            "persistentVolumeClaim": {"claimName": workspace_claim},
        }
    else:
        claim_spec: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": workspace_size}},
        }
        if storage_class is not None:
            claim_spec["storageClassName"] = storage_class
        workspace = {"name": "source", "volumeClaimTemplate": {"spec": claim_spec}}
    run_spec: dict[str, Any] = {
        "pipelineRef": {"name": spec.name},
        "params": [{"name": key, "value": value} for key, value in params.items()],
        "workspaces": [workspace],
        "taskRunSpecs": [{"pipelineTaskName": "deploy", "serviceAccountName": deployer_name(spec)}],
    }
    if pod_template:
        run_spec["taskRunTemplate"] = {"podTemplate": pod_template}
    meta = _meta("", namespace, spec.name)
    del meta["name"]
    meta["generateName"] = f"{spec.name}-run-"
    return {
        "apiVersion": "tekton.dev/v1",
        "kind": "PipelineRun",
        "metadata": meta,
        "spec": run_spec,
    }
