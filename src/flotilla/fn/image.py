"""Function images: the build context (pure) and the dockerd adapter that builds and pushes it.

The images have no pip or npm and no network, so nothing is installed in them at build time:
- Python: the runtime package and the distributions it needs (starlette, uvicorn, ...) are copied
  from the environment flotilla runs in, uvloop and httptools included, so the image serves with
  the same event loop and parser as ``fn run``. A compiled distribution is copied only when its
  wheel tags fit the image's CPython 3.11 on glibc 2.36 x86_64; any other is refused.
- Node: the runtime is one file; cloudevent functions also get the pinned ``cloudevents`` npm
  package, installed once on the build host by ``npm ci`` (see ``deps``). The base image carries
  the same pinned Node as ``fn run`` (``flotilla.core.nodedist``).
Layers go from least to most often changed, so a code change rebuilds only the last ``COPY``.
"""

from __future__ import annotations

import functools
import io
import json
import os
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from flotilla.core.nodedist import NODE_MAJOR

from .deps import node_runtime_modules, tree_files
from .jvm import build_function, java_runtime, jvm_command, runtime_jars, training_command
from .model import FnError, FunctionSpec, Runtime, Signature

__all__ = [
    "BASE_IMAGES",
    "BuildContext",
    "BuildError",
    "BuildResult",
    "build_context",
    "build_image",
    "function_files",
    "push_image",
    "push_reference",
    "python_runtime_distributions",
    "tag_image",
    "wheel_fits_image",
]

BASE_IMAGES = {
    Runtime.PYTHON: "flotilla.local/python:3.11",
    Runtime.NODE: f"flotilla.local/node:{NODE_MAJOR}",
    Runtime.JAVA: "flotilla.local/java:17",
}
PYTHON_RUNTIME_REQUIRES = ("starlette", "uvicorn", "cloudevents", "uvloop", "httptools")
# What the Python base image is (Debian 12's python3 and libc): compiled wheels must fit it.
IMAGE_PYTHON = ("cp311", "x86_64", (2, 36))
IGNORED_DIRS = frozenset(
    {
        ".git",
        "__pycache__",
        ".pytest_cache",
        ".venv",
        ".mypy_cache",
        ".ruff_cache",
        ".flotilla-build",
        ".local-config",  # fn run's stand-ins for Secrets and ConfigMaps: never in an image
    }
)
IGNORED_SUFFIXES = (".pyc", ".pyo")
_PACKAGE = Path(__file__).resolve().parent
SITE = "/opt/flotilla/site"
NODE_LIB = "/opt/flotilla/node"
USER_DEPS = "/opt/flotilla/userdeps"
JAVA_HOME_FN = "/opt/flotilla/java"
JAVA_ARCHIVE = f"{JAVA_HOME_FN}/flotilla-fn.jsa"


class BuildError(FnError, RuntimeError):
    """The image could not be built or pushed; the message carries dockerd's own words."""


@dataclass(frozen=True)
class BuildContext:
    """A Dockerfile and the files it copies, as ``path -> bytes``."""

    files: dict[str, bytes]

    def tar(self) -> bytes:
        """A deterministic tar (fixed times and owners) so unchanged layers hit the cache."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for path in sorted(self.files):
                data = self.files[path]
                info = tarfile.TarInfo(path)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    def write(self, directory: Path) -> None:
        """Write the context to ``directory`` (for kaniko in the Tekton pipeline)."""
        for path, data in self.files.items():
            target = directory / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


@dataclass
class BuildResult:
    image: str
    image_id: str
    steps: int = 0
    cached_steps: int = 0
    log: list[str] = field(default_factory=list)
    digest: str = ""


def _ignored(rel: PurePosixPath) -> bool:
    return any(part in IGNORED_DIRS for part in rel.parts) or rel.name.endswith(IGNORED_SUFFIXES)


def function_files(project: Path) -> dict[str, bytes]:
    """The project's files (caches and VCS data left out), relative POSIX paths to bytes."""
    out: dict[str, bytes] = {}
    for path in sorted(project.rglob("*")):
        rel = PurePosixPath(path.relative_to(project).as_posix())
        if path.is_file() and not path.is_symlink() and not _ignored(rel):
            out[str(rel)] = path.read_bytes()
    return out


def python_runtime_distributions(
    roots: Iterable[str] = PYTHON_RUNTIME_REQUIRES,
) -> list[metadata.Distribution]:
    """``roots`` and everything they require (markers evaluated for Python 3.11 on Linux)."""
    from packaging.requirements import Requirement

    env = {
        "python_version": "3.11",
        "python_full_version": "3.11.2",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    seen: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        dist = metadata.distribution(name)
        seen[key] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate(env):
                todo.append(req.name)
    return [seen[k] for k in sorted(seen)]


def _wheel_tags(dist: metadata.Distribution) -> list[str]:
    wheel = dist.read_text("WHEEL") or ""
    return [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]


@functools.cache
def image_wheel_tags(image: tuple[str, str, tuple[int, int]] = IMAGE_PYTHON) -> frozenset[str]:
    """Every wheel tag the image's CPython accepts, from ``packaging.tags`` (as pip computes it
    for that interpreter); ``linux_*`` (a local build, linked to who knows what) is not one."""
    from packaging.tags import compatible_tags, cpython_tags

    interpreter, arch, (major, minor) = image
    version = (int(interpreter[2]), int(interpreter[3:]))
    legacy = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
    platforms: list[str] = []
    for glibc_minor in range(minor, 4, -1):
        platforms.append(f"manylinux_{major}_{glibc_minor}_{arch}")
        if (major, glibc_minor) in legacy:
            platforms.append(f"{legacy[major, glibc_minor]}_{arch}")
    tags = [
        *cpython_tags(version, platforms=platforms),
        *compatible_tags(version, platforms=platforms),
    ]
    return frozenset(str(tag) for tag in tags)


def wheel_fits_image(dist: metadata.Distribution) -> bool:
    """Whether one of the installed wheel's tags runs on the image's interpreter and libc."""
    from packaging.tags import parse_tag

    accepted = image_wheel_tags()
    return any(str(tag) in accepted for text in _wheel_tags(dist) for tag in parse_tag(text))


def _distribution_files(dists: list[metadata.Distribution]) -> Iterator[tuple[str, bytes]]:
    for dist in dists:
        for file in dist.files or []:
            rel = PurePosixPath(str(file))
            if rel.parts[0] == ".." or _ignored(rel):
                continue  # console scripts and caches
            if rel.suffix in (".so", ".pyd", ".dylib") and not wheel_fits_image(dist):
                tags = ", ".join(_wheel_tags(dist)) or "no wheel tags"
                raise BuildError(
                    f"{dist.metadata['Name']} has a compiled extension ({rel}) built for {tags}; "
                    "the image takes only pure-Python wheels or ones for CPython 3.11, "
                    "manylinux (glibc <= 2.36), x86_64"
                )
            yield str(rel), Path(str(dist.locate_file(file))).read_bytes()


def _runtime_package_files() -> Iterator[tuple[str, bytes]]:
    """``flotilla.fn.runtime`` alone, under empty parent packages, so nothing else is imported."""
    yield "flotilla/__init__.py", b""
    yield "flotilla/fn/__init__.py", b""
    for path in sorted((_PACKAGE / "runtime").glob("*.py")):
        yield f"flotilla/fn/runtime/{path.name}", path.read_bytes()


def _env_lines(spec: FunctionSpec) -> list[str]:
    env = {
        "FLOTILLA_FN_NAME": spec.name,
        "FLOTILLA_FN_SOURCE": "/function",
        "FLOTILLA_FN_HANDLER": spec.handler_ref,
        "FLOTILLA_FN_SIGNATURE": spec.signature.value,
        "PORT": str(spec.deploy.port),
    }
    return ["ENV " + " ".join(f'{k}="{v}"' for k, v in env.items())]


def _java_lines(project: Path | None, files: dict[str, bytes]) -> list[str]:
    """Java: the runtime jar and its libraries, the function's libraries, then its classes (the
    layer a code change rebuilds), all compiled on the build host by Maven, as ``fn run`` does."""
    if project is None:
        raise BuildError("a Java function is compiled from its project directory; none was given")
    runtime = java_runtime()
    built = build_function(project)
    files["runtime/flotilla-fn.jar"] = (runtime / "flotilla-fn.jar").read_bytes()
    files.update(tree_files(runtime / "lib", "runtime/lib"))
    function_libs = tree_files(built.lib, "function-lib")
    files.update(function_libs)
    files.update(tree_files(built.classes, "classes"))
    runtime_cp = [
        f"{JAVA_HOME_FN}/{p.relative_to(runtime).as_posix()}" for p in runtime_jars(runtime)
    ]
    function_cp = ["/opt/flotilla/classes", f"{JAVA_HOME_FN}/function-lib/*"]
    # The class-data archive is trained by the image's own JVM (an archive only fits the JVM
    # build that dumped it), in a layer that depends on the runtime alone, so it stays cached.
    train = training_command("java", runtime_cp, JAVA_ARCHIVE)
    argv = jvm_command("java", runtime_cp, function_cp, JAVA_ARCHIVE)
    return [
        f"FROM {BASE_IMAGES[Runtime.JAVA]}",
        f"COPY runtime/ {JAVA_HOME_FN}/",
        "RUN " + _exec_form(train),
        *([f"COPY function-lib/ {JAVA_HOME_FN}/function-lib/"] if function_libs else []),
        "CMD " + _exec_form(argv),
    ]


def _exec_form(argv: list[str]) -> str:
    return json.dumps(argv)


def build_context(
    spec: FunctionSpec,
    project_files: dict[str, bytes],
    dependencies: Path | None = None,
    *,
    project: Path | None = None,
) -> BuildContext:
    """Dockerfile plus files for ``spec``; ``project_files`` from :func:`function_files`;
    ``dependencies`` the function's installed dependencies (:func:`deps.function_dependencies`),
    copied as their own layer below the code, so a code change does not re-copy them.
    ``project`` is the directory itself, which Java needs to compile the function."""
    files: dict[str, bytes] = {}
    dep_lines: list[str] = []
    user_deps = tree_files(dependencies, "userdeps") if dependencies is not None else {}
    if user_deps:  # an install that left no files (a package.json without dependencies) adds none
        files.update(user_deps)
        dep_lines = [f"COPY userdeps/ {USER_DEPS}/"]
    if spec.runtime is Runtime.PYTHON:
        for rel, data in _distribution_files(python_runtime_distributions()):
            files[f"deps/{rel}"] = data
        for rel, data in _runtime_package_files():
            files[f"runtime/{rel}"] = data
        lines = [
            f"FROM {BASE_IMAGES[Runtime.PYTHON]}",
            f"COPY deps/ {SITE}/",
            f"COPY runtime/ {SITE}/",
            # Bytecode compiled once here, not at every cold start (the site is read-only later).
            f"RUN python3 -m compileall -q {SITE}",
            *dep_lines,
            f'ENV PYTHONPATH="{SITE}:{USER_DEPS}" PYTHONUNBUFFERED="1"',
            'CMD ["python3", "-m", "flotilla.fn.runtime"]',
        ]
    elif spec.runtime is Runtime.JAVA:
        lines = _java_lines(project, files)
        project_files = {k: v for k, v in project_files.items() if not k.startswith("target/")}
    else:
        files["runtime/flotilla-fn.js"] = (_PACKAGE / "node" / "flotilla-fn.js").read_bytes()
        lines = [f"FROM {BASE_IMAGES[Runtime.NODE]}"]
        if spec.signature is Signature.CLOUDEVENT:
            # The cloudevents npm package, installed once from node/package-lock.json.
            files.update(tree_files(node_runtime_modules(), "runtime-deps"))
            lines.append(f"COPY runtime-deps/ {NODE_LIB}/node_modules/")
        lines += [
            f"COPY runtime/ {NODE_LIB}/",
            *dep_lines,
            f'ENV NODE_PATH="{NODE_LIB}:{USER_DEPS}" NODE_ENV="production"',
            f'CMD ["node", "{NODE_LIB}/flotilla-fn.js"]',
        ]
    for rel, data in project_files.items():
        files[f"function/{rel}"] = data
    lines += [
        *_env_lines(spec),
        "USER 65532:65532",
        f"EXPOSE {spec.deploy.port}",
        "COPY function/ /function/",
    ]
    if spec.runtime is Runtime.JAVA:
        lines.append("COPY classes/ /opt/flotilla/classes/")
    files["Dockerfile"] = ("\n".join(lines) + "\n").encode()
    return BuildContext(files)


def push_reference(image: str, registry: str) -> str:
    """``image`` renamed into ``registry``: its own registry host (if any) replaced. Pure."""
    first, sep, rest = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        image = rest
    if ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
        image += ":latest"
    return f"{registry.rstrip('/')}/{image}"


# --- dockerd adapter ---------------------------------------------------------------------------


def _client(docker_host: str | None) -> Any:
    import docker
    import docker.errors

    if (
        docker_host
        and docker_host.startswith("unix://")
        and not Path(docker_host.removeprefix("unix://")).exists()
    ):
        # Checked here: the SDK leaks its socket when the connection fails.
        raise BuildError(f"cannot reach dockerd at {docker_host}: no such socket")
    try:
        if docker_host:
            return docker.DockerClient(base_url=docker_host, timeout=300)
        return docker.from_env(timeout=300)
    except docker.errors.DockerException as exc:
        where = docker_host or os.environ.get("DOCKER_HOST") or "the default socket"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BuildError(
            f"cannot reach dockerd at {where}: {reason} (is dockerd running? set --docker-host)"
        ) from None


def _base_hint(chunk: dict[str, Any]) -> str:
    """The Java base image is opt-in; say how to get it when dockerd lacks it."""
    if BASE_IMAGES[Runtime.JAVA].rsplit(":", 1)[0] in str(chunk.get("error", "")):
        return " (build it once with `flotilla testenv build --java-image`)"
    return ""


def build_image(context: BuildContext, tag: str, *, docker_host: str | None = None) -> BuildResult:
    """Build through dockerd's Engine API (legacy builder); never pulls the base image."""
    import docker.errors

    client = _client(docker_host)
    result = BuildResult(image=tag, image_id="")
    try:
        stream = client.api.build(
            fileobj=io.BytesIO(context.tar()),
            custom_context=True,
            tag=tag,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                raise BuildError(f"building {tag}: {chunk['error'].strip()}{_base_hint(chunk)}")
            text = str(chunk.get("stream", ""))
            if text.strip():
                result.log.append(text.rstrip())
                if text.startswith("Step "):
                    result.steps += 1
                elif "Using cache" in text:
                    result.cached_steps += 1
            aux = chunk.get("aux")
            if isinstance(aux, dict) and "ID" in aux:
                result.image_id = str(aux["ID"])
    except docker.errors.APIError as exc:
        raise BuildError(f"building {tag}: {exc.explanation or exc}") from exc
    finally:
        client.close()
    if not result.image_id:
        raise BuildError(f"building {tag}: dockerd reported no image\n" + "\n".join(result.log))
    return result


def push_image(tag: str, *, docker_host: str | None = None) -> str:
    """Push ``tag``; returns the registry's digest (``sha256:...``)."""
    import docker.errors

    repository, _, version = tag.rpartition(":")
    if "/" in version or not repository:
        repository, version = tag, "latest"
    client = _client(docker_host)
    digest = ""
    try:
        for chunk in client.api.push(repository, tag=version, stream=True, decode=True):
            if "error" in chunk:
                raise BuildError(f"pushing {tag}: {chunk['error']}")
            aux = chunk.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = str(aux["Digest"])
    except docker.errors.APIError as exc:
        raise BuildError(f"pushing {tag}: {exc.explanation or exc}") from exc
    finally:
        client.close()
    return digest


def tag_image(image_id: str, target: str, *, docker_host: str | None = None) -> None:
    """Give a built image another name (the registry's) before pushing."""
    repository, _, version = target.rpartition(":")
    if "/" in version or not repository:
        repository, version = target, "latest"
    client = _client(docker_host)
    try:
        client.api.tag(image_id, repository, version)
    finally:
        client.close()
