"""What a Tiltfile declares, as plain dataclasses: evaluation's output, the engine's input.

Nothing here does I/O. Paths are absolute (resolved against the Tiltfile that named them) so the
engine never has to know which file a declaration came from.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class TriggerMode(enum.IntEnum):
    """Tilt's trigger modes; the integers match Tilt's constants so Tiltfiles can compare them."""

    AUTO = 0
    MANUAL = 1
    AUTO_NO_INIT = 2
    MANUAL_NO_INIT = 3

    @property
    def auto(self) -> bool:
        return self in (TriggerMode.AUTO, TriggerMode.AUTO_NO_INIT)


@dataclass(frozen=True)
class Sync:
    """``sync(local_path, remote_path)``: copy files under ``local_path`` to ``remote_path``."""

    local_path: str
    remote_path: str


@dataclass(frozen=True)
class Run:
    """``run(cmd, trigger=[], echo_off=False)``: a command run in the container after syncing."""

    cmd: tuple[str, ...] | str
    trigger: tuple[str, ...] = ()
    echo_off: bool = False


@dataclass(frozen=True)
class RestartContainer:
    """``restart_container()``: restart the process after an update."""


@dataclass(frozen=True)
class FallBackOn:
    """``fall_back_on(files)``: a change to any of these forces a full rebuild."""

    paths: tuple[str, ...]


@dataclass(frozen=True)
class InitialSync:
    """``initial_sync()``: sync every watched file once when the container first starts."""


LiveUpdateStep = Sync | Run | RestartContainer | FallBackOn | InitialSync


@dataclass(frozen=True)
class PortForward:
    """``port_forward(local_port, container_port=None, name=None, link_path=None, host=None)``."""

    local_port: int
    container_port: int | None = None
    name: str = ""
    link_path: str = ""
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class Link:
    """``link(url, name=None)``: a link shown with the resource in the UI."""

    url: str
    name: str = ""


@dataclass(frozen=True)
class Probe:
    """``probe(...)`` with one of ``exec``/``http_get``/``tcp_socket``, for local resources."""

    kind: str  # "exec" | "http" | "tcp"
    command: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 0
    path: str = "/"
    initial_delay_secs: float = 0.0
    timeout_secs: float = 1.0
    period_secs: float = 10.0
    success_threshold: int = 1
    failure_threshold: int = 3


@dataclass
class ImageTarget:
    """A ``docker_build`` or ``custom_build``: how to produce the image named ``ref``."""

    ref: str
    context: str
    kind: str = "docker"  # "docker" | "custom"
    dockerfile: str = ""
    dockerfile_contents: str = ""
    build_args: dict[str, str] = field(default_factory=dict)
    target: str = ""
    live_update: tuple[LiveUpdateStep, ...] = ()
    ignore: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    container_args: tuple[str, ...] | None = None
    match_in_env_vars: bool = False
    extra_tag: tuple[str, ...] = ()
    pull: bool = False
    network: str = ""
    # docker_build_with_restart: wrap the entrypoint so a live update can restart the process.
    restart_entrypoint: tuple[str, ...] = ()
    # Declared images this one is built from (FROM / COPY --from), built first.
    image_deps: tuple[str, ...] = ()
    # custom_build
    command: tuple[str, ...] | str = ""
    deps: tuple[str, ...] = ()
    tag: str = ""
    disable_push: bool = False
    skips_local_docker: bool = False
    outputs_image_ref_to: str = ""
    env: dict[str, str] = field(default_factory=dict)
    dir: str = ""

    @property
    def watched(self) -> tuple[str, ...]:
        """Paths whose changes concern this image."""
        return self.deps if self.kind == "custom" else (self.context,)


@dataclass
class K8sResourceOptions:
    """One ``k8s_resource(...)`` call, applied to the resource it names after grouping."""

    workload: str = ""
    new_name: str = ""
    port_forwards: tuple[PortForward, ...] = ()
    extra_pod_selectors: tuple[dict[str, str], ...] = ()
    trigger_mode: TriggerMode | None = None
    resource_deps: tuple[str, ...] = ()
    objects: tuple[str, ...] = ()
    auto_init: bool = True
    pod_readiness: str = ""
    links: tuple[Link, ...] = ()
    labels: tuple[str, ...] = ()


@dataclass
class LocalResource:
    """``local_resource(name, cmd, deps=None, ...)``: a command (and server) run on this machine."""

    name: str
    cmd: tuple[str, ...] | str = ""
    deps: tuple[str, ...] = ()
    trigger_mode: TriggerMode = TriggerMode.AUTO
    resource_deps: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    auto_init: bool = True
    serve_cmd: tuple[str, ...] | str = ""
    allow_parallel: bool = False
    links: tuple[Link, ...] = ()
    labels: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    serve_env: dict[str, str] = field(default_factory=dict)
    readiness_probe: Probe | None = None
    dir: str = ""
    serve_dir: str = ""


@dataclass
class ComposeProject:
    """``docker_compose(configPaths, env_file=None, project_name="")``."""

    config_paths: tuple[str, ...]
    project_name: str = ""
    env_file: str = ""
    services: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class DcResourceOptions:
    """``dc_resource(name, trigger_mode=None, resource_deps=[], links=[], labels=[], ...)``."""

    name: str
    new_name: str = ""
    trigger_mode: TriggerMode | None = None
    resource_deps: tuple[str, ...] = ()
    links: tuple[Link, ...] = ()
    labels: tuple[str, ...] = ()
    auto_init: bool = True


@dataclass
class UIButton:
    """A ``v1alpha1.ui_button`` (the ``uibutton`` extension's ``cmd_button``) and its command."""

    name: str
    text: str = ""
    location: str = ""  # "Resource" | "Global"
    resource: str = ""
    icon: str = ""
    disabled: bool = False
    requires_confirmation: bool = False
    argv: tuple[str, ...] = ()
    dir: str = ""
    env: tuple[str, ...] = ()


@dataclass
class CustomDeploy:
    """``k8s_custom_deploy``: commands that apply (printing the YAML applied) and delete."""

    name: str
    apply_cmd: tuple[str, ...] | str
    delete_cmd: tuple[str, ...] | str
    deps: tuple[str, ...] = ()
    image_selector: str = ""
    apply_dir: str = ""
    apply_env: dict[str, str] = field(default_factory=dict)
    delete_dir: str = ""
    delete_env: dict[str, str] = field(default_factory=dict)
    image_deps: tuple[str, ...] = ()


@dataclass
class Settings:
    """Global settings a Tiltfile may set."""

    default_registry: str = ""
    registry_from_cluster: str = ""
    registry_single_name: str = ""
    allowed_contexts: tuple[str, ...] = ()
    trigger_mode: TriggerMode = TriggerMode.AUTO
    max_parallel_updates: int = 3
    k8s_upsert_timeout_secs: int = 30
    file_event_debounce_ms: int = 50
    version_constraint: str = ""
    watch_ignore: tuple[str, ...] = ()
    ci_timeout_secs: float = 1800.0
    readiness_timeout_secs: float = 300.0


@dataclass
class TiltfileResult:
    """Everything one evaluation of a Tiltfile (and the files it loaded) declared."""

    tiltfile: str
    k8s_objects: list[dict[str, Any]] = field(default_factory=list)
    images: list[ImageTarget] = field(default_factory=list)
    k8s_resources: list[K8sResourceOptions] = field(default_factory=list)
    local_resources: list[LocalResource] = field(default_factory=list)
    compose: list[ComposeProject] = field(default_factory=list)
    dc_resources: list[DcResourceOptions] = field(default_factory=list)
    settings: Settings = field(default_factory=Settings)
    watched_files: set[str] = field(default_factory=set)
    loaded_files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    k8s_context: str = ""
    namespace: str = ""
    enabled_resources: list[str] | None = None
    buttons: list[UIButton] = field(default_factory=list)
    custom_deploys: list[CustomDeploy] = field(default_factory=list)
    workload_names: dict[str, str] = field(default_factory=dict)
    """object id → resource name, from ``workload_to_resource_function``."""
    kind_rules: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)
    """``k8s_kind(kind, api_version, image_json_path)``: extra workload kinds and image paths."""


class ResourceKind(enum.StrEnum):
    K8S = "k8s"
    LOCAL = "local"
    COMPOSE = "compose"
    UNCATEGORIZED = "uncategorized"


@dataclass
class Resource:
    """One unit the engine builds, deploys and shows: a workload, a local command, a service."""

    name: str
    kind: ResourceKind
    objects: list[dict[str, Any]] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # refs of ImageTargets this resource uses
    resource_deps: list[str] = field(default_factory=list)
    trigger_mode: TriggerMode = TriggerMode.AUTO
    auto_init: bool = True
    port_forwards: list[PortForward] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    pod_readiness: str = ""
    extra_pod_selectors: list[dict[str, str]] = field(default_factory=list)
    local: LocalResource | None = None
    compose_service: dict[str, Any] | None = None
    compose_project: str = ""
    image_json_paths: tuple[str, ...] | None = None
    """Set for a ``k8s_kind`` workload: where its images are (empty: every ``image`` field)."""
    custom_deploy: CustomDeploy | None = None
