"""Bundle images against a private loopback registry: build, push, pull, plan; hostile images."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flotilla.cli import app
from flotilla.operators.bundle_image import build_bundle_image, push_bundle
from flotilla.operators.catalog import load_catalog
from flotilla.operators.lifecycle import plan_install
from flotilla.operators.oci import (
    DOCKER_LAYER_GZIP,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    ImageError,
    ImageRef,
    Registry,
    pull_bundle,
)
from tests.operators.helpers import BUNDLES

ETCD = BUNDLES / "etcd-0.9.2"


def test_image_references_parse_as_docker_does() -> None:
    assert ImageRef.parse("quay.io/org/b:v1") == ImageRef("quay.io", "org/b", "v1")
    assert ImageRef.parse("127.0.0.1:5000/b") == ImageRef("127.0.0.1:5000", "b", "latest")
    assert ImageRef.parse("busybox") == ImageRef("docker.io", "library/busybox", "latest")
    pinned = ImageRef.parse("quay.io/o/b@sha256:" + "a" * 64)
    assert pinned.reference == "sha256:" + "a" * 64 and pinned.tag == ""
    for bad in ("quay.io/O/B:v1", "quay.io/o/b@sha256:xyz", "quay.io/o/b:bad tag", ""):
        with pytest.raises(ImageError):
            ImageRef.parse(bad)


def test_built_image_is_opm_shaped_and_reproducible() -> None:
    config, layer, labels = build_bundle_image(ETCD)
    assert build_bundle_image(ETCD)[1] == layer  # same input, same digest
    cfg = json.loads(config)
    assert cfg["config"]["Labels"] == labels
    assert labels["operators.operatorframework.io.bundle.mediatype.v1"] == "registry+v1"
    assert labels["operators.operatorframework.io.bundle.package.v1"] == "etcd"
    assert labels["operators.operatorframework.io.bundle.manifests.v1"] == "manifests/"
    raw = gzip.decompress(layer)
    assert cfg["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(raw).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        names = tar.getnames()
    assert names[:2] == ["manifests", "manifests/etcdclusters.etcd.database.coreos.com.crd.yaml"]
    assert "metadata/annotations.yaml" in names


def test_build_refuses_what_is_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"no metadata/annotations\.yaml"):
        build_bundle_image(tmp_path)
    shutil.copytree(ETCD, tmp_path / "b")
    (tmp_path / "b" / "metadata" / "annotations.yaml").write_text("annotations: {}\n")
    with pytest.raises(ImageError, match=r"bundle\.package\.v1 annotation"):
        build_bundle_image(tmp_path / "b")


@pytest.mark.slow
def test_round_trip_build_push_catalog_plan(oci_registry: str, tmp_path: Path) -> None:
    image = f"{oci_registry}/bundles/etcd:v0.9.2"
    result = CliRunner().invoke(app, ["operators", "bundle", "build", str(ETCD), "--push", image])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"pushed {image}@sha256:")
    (tmp_path / "catalog.yaml").write_text(
        "schema: olm.package\nname: etcd\ndefaultChannel: alpha\n---\n"
        "schema: olm.channel\npackage: etcd\nname: alpha\nentries:\n- name: etcdoperator.v0.9.2\n"
        "---\nschema: olm.bundle\nname: etcdoperator.v0.9.2\npackage: etcd\n"
        f"image: {image}\n"
        "properties:\n- {type: olm.package, value: {packageName: etcd, version: 0.9.2}}\n"
    )
    catalog = load_catalog(tmp_path)
    assert catalog.problems == []
    assert catalog.package("etcd").bundle("etcdoperator.v0.9.2").image == image
    plan = plan_install(catalog, "etcd", channel=None, namespace="etcd-system")
    (step,) = plan.steps
    assert step.bundle.csv is not None and step.bundle.csv.name == "etcdoperator.v0.9.2"
    assert plan.state.install_mode == "OwnNamespace"
    assert step.report.findings, "the pulled bundle is audited"
    sources = {str(f.source) for f in step.report.findings}
    assert any(s.startswith(f"{image}/manifests/etcdoperator.v0.9.2.") for s in sources), sources
    # the same bundle pulled by digest
    digest = result.output.split("@", 1)[1].strip()
    pulled = pull_bundle(f"{oci_registry}/bundles/etcd@{digest}")
    assert sorted(m.kind for m in pulled.manifests) == [
        "ClusterServiceVersion",
        "CustomResourceDefinition",
    ]


def _tar(entries: list[tarfile.TarInfo], data: bytes = b"kind: x\n") -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for info in entries:
            if info.isreg():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return raw.getvalue()


def _entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def _push_raw(
    registry: str,
    name: str,
    layer: bytes,
    *,
    layer_type: str = OCI_LAYER,
    config_type: str = OCI_CONFIG,
    size: int | None = None,
) -> str:
    image = f"{registry}/hostile/{name}:v1"
    client = Registry(ImageRef.parse(image))
    try:
        config = json.dumps({"config": {"Labels": {}}}).encode()
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": config_type,
                "digest": client.push_blob(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": layer_type,
                    "digest": client.push_blob(layer),
                    "size": len(layer) if size is None else size,
                }
            ],
        }
        client.push_manifest("v1", json.dumps(manifest).encode(), OCI_MANIFEST)
    finally:
        client.close()
    return image


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "layer", "kwargs", "message"),
    [
        (
            "traversal",
            _tar([_entry("manifests/../../../etc/passwd")]),
            {},
            "tar entry 'manifests/../../../etc/passwd' leaves the image (..)",
        ),
        ("absolute", _tar([_entry("/manifests/x.yaml")]), {}, "absolute or odd path"),
        (
            "symlink",
            _tar([_entry("manifests/x.yaml", tarfile.SYMTYPE, "/etc/shadow")]),
            {},
            "tar entry 'manifests/x.yaml' is a link",
        ),
        (
            "device",
            _tar([_entry("manifests/null", tarfile.CHRTYPE)]),
            {},
            "is a special file",
        ),
        (
            "chart",
            _tar([]),
            {"config_type": "application/vnd.cncf.helm.config.v1+json"},
            "not an image config",
        ),
        (
            "wrongtype",
            _tar([]),
            {"layer_type": "application/vnd.cncf.helm.chart.content.v1.tar+gzip"},
            "is not a tar layer",
        ),
        ("notgzip", b"plain bytes", {"layer_type": OCI_LAYER_GZIP}, "layer is not gzip"),
        ("huge", _tar([]), {"size": 2**40}, "is 1099511627776 bytes, over"),
        (
            "nobundle",
            _tar([_entry("etc/x.yaml")]),
            {},
            "no manifests/ directory: not a bundle image",
        ),
        (
            "bomb",
            b"",  # made in the test: 100 MiB of zeros, gzipped to about 100 KiB
            {"layer_type": DOCKER_LAYER_GZIP},
            "layer unpacks to over",
        ),
    ],
)
def test_hostile_images_are_clear_errors(
    oci_registry: str, name: str, layer: bytes, kwargs: dict[str, Any], message: str
) -> None:
    if name == "bomb":
        packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        zeros = b"\0" * 2**20
        layer = b"".join(packer.compress(zeros) for _ in range(100)) + packer.flush()
    image = _push_raw(oci_registry, name, layer, **kwargs)
    with pytest.raises(ImageError) as err:
        pull_bundle(image)
    assert message in str(err.value)
    assert str(err.value).startswith(f"{oci_registry}/hostile/{name}:v1")


@pytest.mark.slow
def test_missing_image_and_unreachable_registry_are_one_line_errors(oci_registry: str) -> None:
    with pytest.raises(ImageError, match=r"fetching manifest v9: HTTP 404"):
        pull_bundle(f"{oci_registry}/nothing/here:v9")
    with pytest.raises(ImageError, match=r"127\.0\.0\.1:1/x:v1: "):
        pull_bundle("127.0.0.1:1/x:v1")
    with pytest.raises(ImageError, match="push to a tag"):
        push_bundle(ETCD, f"{oci_registry}/b@sha256:" + "0" * 64)
