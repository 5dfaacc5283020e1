"""The image runs what ``fn run`` runs: uvloop and httptools for Python, the pinned Node 20."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

from flotilla.core.nodedist import NODE_MAJOR
from flotilla.fn.image import (
    BASE_IMAGES,
    BuildError,
    _distribution_files,
    build_context,
    wheel_fits_image,
)
from flotilla.fn.model import Runtime, load_spec


def fake_dist(tmp_path: Path, name: str, tags: list[str], files: dict[str, bytes]) -> Path:
    """An installed distribution (dist-info with WHEEL and RECORD) in a site directory."""
    site = tmp_path / "site"
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "WHEEL").write_text(
        "Wheel-Version: 1.0\nRoot-Is-Purelib: false\n" + "".join(f"Tag: {t}\n" for t in tags)
    )
    record = []
    for rel, data in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(data)
        record.append(f"{rel},,")
    (info / "RECORD").write_text("\n".join(record) + "\n")
    return info


@pytest.mark.parametrize(
    ("tags", "fits"),
    [
        (["cp311-cp311-manylinux_2_17_x86_64", "cp311-cp311-manylinux2014_x86_64"], True),
        (["cp311-cp311-manylinux_2_36_x86_64"], True),
        (["cp311-cp311-manylinux_2_38_x86_64"], False),  # newer glibc than Debian 12's
        (["cp312-cp312-manylinux_2_17_x86_64"], False),  # another interpreter
        (["cp311-cp311-manylinux_2_17_aarch64"], False),
        (["cp311-cp311-musllinux_1_1_x86_64"], False),
        (["cp38-abi3-manylinux1_x86_64.manylinux2010_x86_64"], True),  # stable ABI, 3.8+
        (["cp312-abi3-manylinux_2_17_x86_64"], False),  # stable ABI, but from 3.12 on
        (["cp311-cp311-linux_x86_64"], False),  # a local build
        (["cp311-abi3-manylinux2010_x86_64"], True),
        (["py3-none-any"], True),
        ([], False),  # no WHEEL tags at all: an egg or a local build
    ],
)
def test_a_compiled_wheel_fits_only_debian_12s_cpython_311(
    tmp_path: Path, tags: list[str], fits: bool
) -> None:
    dist = metadata.PathDistribution(fake_dist(tmp_path, "ext", tags, {}))
    assert wheel_fits_image(dist) is fits


def test_a_compiled_extension_that_does_not_fit_names_its_tags(tmp_path: Path) -> None:
    info = fake_dist(
        tmp_path, "ext", ["cp311-cp311-musllinux_1_1_x86_64"], {"ext/_c.so": b"\x7fELF"}
    )
    with pytest.raises(BuildError, match=r"ext has a compiled extension .*musllinux_1_1_x86_64"):
        list(_distribution_files([metadata.PathDistribution(info)]))


def test_the_python_image_carries_uvloop_and_httptools(tmp_path: Path) -> None:
    files = build_context(load_spec("name: p\nruntime: python\n"), {}).files
    compiled = [p for p in files if p.startswith(("deps/uvloop/", "deps/httptools/"))]
    assert any(p.endswith(".so") and p.startswith("deps/uvloop/loop.") for p in compiled)
    assert any(p.endswith(".so") and "httptools/parser/parser." in p for p in compiled)
    # ...so the runtime's own choice (httptools when importable, uvicorn's "auto" loop) is the
    # same in the image as in `fn run`, which runs in this environment.


def test_the_node_image_is_the_pinned_major() -> None:
    assert (
        BASE_IMAGES[Runtime.NODE] == f"flotilla.local/node:{NODE_MAJOR}" == "flotilla.local/node:20"
    )
    dockerfile = build_context(load_spec("name: n\nruntime: node\n"), {}).files["Dockerfile"]
    assert dockerfile.decode().startswith("FROM flotilla.local/node:20\n")


def test_fn_run_runs_the_pinned_node_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flotilla.core.nodedist import NODE_VERSION
    from flotilla.fn.devloop import serve_command, test_command
    from flotilla.fn.model import FnError

    spec = load_spec("name: n\nruntime: node\n")
    monkeypatch.delenv("FLOTILLA_FN_NODE", raising=False)
    argv = serve_command(spec, tmp_path, 8080).argv
    assert argv[0].endswith(f"/{NODE_VERSION}/bin/node")
    assert test_command(spec, tmp_path).argv[0] == argv[0]  # `fn test` too
    monkeypatch.setenv("FLOTILLA_FN_NODE", str(tmp_path / "no-such-node"))
    with pytest.raises(FnError, match=r"FLOTILLA_FN_NODE=.*is not an executable"):
        serve_command(spec, tmp_path, 8080)
