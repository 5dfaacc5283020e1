"""The generated wrapper modules and the build plan: what makes `go build` work from the proxy."""

from __future__ import annotations

import re
from pathlib import Path

from flotilla.testenv.build import (
    ALL_BINARIES,
    STAGING_MODULES,
    BuildSpec,
    is_built,
    kubernetes_go_mod,
    kwok_go_mod,
    kwok_stage_documents,
    kwok_stages_path,
    plan_build,
    version_ldflags,
)
from flotilla.testenv.coredns_build import coredns_go_mod, coredns_main


def test_every_staging_module_is_replaced_by_its_published_tag() -> None:
    text = kubernetes_go_mod(BuildSpec(kubernetes_version="1.34.10", cache_root=Path("/c")))
    replaced = re.findall(r"k8s\.io/([\w-]+) => k8s\.io/([\w-]+) (v\S+)", text)
    assert len(replaced) == 31 == len(STAGING_MODULES)
    assert all(a == b and version == "v0.34.10" for a, b, version in replaced)
    assert "require k8s.io/kubernetes v1.34.10" in text
    # The tool block keeps tidy from dropping the commands we build.
    assert "\tk8s.io/kubernetes/cmd/kube-apiserver\n" in text
    assert "\tgo.etcd.io/etcd/server/v3\n" in text


def test_the_staging_version_follows_the_kubernetes_version() -> None:
    spec = BuildSpec(kubernetes_version="1.33.7", cache_root=Path("/c"))
    assert spec.staging_version == "0.33.7"
    assert spec.directory == Path("/c/v1.33.7")
    assert "k8s.io/api => k8s.io/api v0.33.7" in kubernetes_go_mod(spec)


def test_kwok_builds_in_its_own_module_without_replaces() -> None:
    text = kwok_go_mod(BuildSpec(kwok_version="0.8.0"))
    assert "require sigs.k8s.io/kwok v0.8.0" in text
    assert "replace" not in text


def test_version_ldflags_make_version_report_the_release() -> None:
    flags = version_ldflags(BuildSpec(kubernetes_version="1.34.10"), "2026-01-01T00:00:00Z")
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {pkg}.gitVersion=v1.34.10" in flags
        assert f"-X {pkg}.gitMinor=34" in flags


def _fake_binaries(spec: BuildSpec, names: tuple[str, ...]) -> None:
    spec.bin_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        (spec.bin_dir / name).write_text("#!/bin/true\n")


def test_a_complete_cache_plans_nothing(tmp_path: Path) -> None:
    spec = BuildSpec(cache_root=tmp_path)
    assert not is_built(spec)
    _fake_binaries(spec, ALL_BINARIES)
    assert not is_built(spec), "kwok is useless without its stages file"
    kwok_stages_path(spec).write_text("kind: Stage\n")
    assert is_built(spec)
    assert plan_build(spec, "now") == []


def test_only_missing_binaries_are_rebuilt(tmp_path: Path) -> None:
    spec = BuildSpec(cache_root=tmp_path)
    _fake_binaries(spec, tuple(b for b in ALL_BINARIES if b not in {"kubelet", "kwok"}))
    steps = plan_build(spec, "now")
    built = [out for step in steps for out in step.outputs]
    assert built == ["kubelet", "kwok"]
    kubelet_step = next(s for s in steps if "kubelet" in s.outputs)
    assert kubelet_step.env["CGO_ENABLED"] == "1"  # the kubelet needs cgo, the rest are static


def test_static_binaries_build_without_cgo(tmp_path: Path) -> None:
    steps = plan_build(BuildSpec(cache_root=tmp_path), "now")
    static = next(s for s in steps if "kube-apiserver" in s.outputs)
    assert static.env["CGO_ENABLED"] == "0"
    assert set(static.outputs) == {
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubectl",
        "kube-proxy",
    }
    assert steps[0].args == ("mod", "tidy")


def test_kwok_stages_are_assembled_from_the_module_source(tmp_path: Path) -> None:
    for sub, names in {
        "kustomize/stage/node/fast": ["node-initialize.yaml"],
        "kustomize/stage/node/heartbeat-with-lease": ["node-heartbeat-with-lease.yaml"],
        "kustomize/stage/pod/fast": ["pod-complete.yaml", "pod-delete.yaml", "pod-ready.yaml"],
    }.items():
        (tmp_path / sub).mkdir(parents=True)
        (tmp_path / sub / "kustomization.yaml").write_text("kind: Kustomization\n")
        for name in names:
            (tmp_path / sub / name).write_text(f"kind: Stage\nmetadata:\n  name: {name[:-5]}\n")
    documents = kwok_stage_documents(tmp_path).split("---\n")
    assert [d.split("name: ")[1].strip() for d in documents] == [
        "node-initialize",
        "node-heartbeat-with-lease",
        "pod-complete",
        "pod-delete",
        "pod-ready",
    ]
    assert "Kustomization" not in "".join(documents)


def test_coredns_builds_from_a_wrapper_main_with_only_the_plugins_we_use(tmp_path: Path) -> None:
    spec = BuildSpec(cache_root=tmp_path)
    _fake_binaries(spec, tuple(b for b in ALL_BINARIES if b != "coredns"))
    steps = plan_build(spec, "now")
    assert [s.title for s in steps] == ["resolve coredns modules", "build coredns"]
    assert steps[1].workdir == spec.coredns_module_dir and steps[1].outputs == ("coredns",)
    main = coredns_main()
    assert '"github.com/coredns/coredns/coremain"' in main
    assert "core/plugin" not in main  # upstream's list of every plugin (and cloud SDK)
    for plugin in ("kubernetes", "forward", "cache", "health", "ready", "errors"):
        assert f'_ "github.com/coredns/coredns/plugin/{plugin}"' in main
    assert "require github.com/coredns/coredns v1.12.1" in coredns_go_mod("1.12.1")
