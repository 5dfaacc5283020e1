"""Archives read as helm reads them: concatenated gzip streams, PAX sparse files, trailing data."""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import pytest
from charts_support import Helm

from flotilla.charts.archives import load_archive
from flotilla.charts.errors import ChartError


def tar_bytes(files: dict[str, bytes], end: bool) -> bytes:
    """A ustar stream of ``files``; without ``end`` the two zero blocks are left off."""
    out = io.BytesIO()
    for name, data in files.items():
        info = tarfile.TarInfo(name)
        info.size = len(data)
        out.write(info.tobuf(tarfile.USTAR_FORMAT))
        out.write(data + bytes(-len(data) % 512))
    if end:
        out.write(bytes(1024))
    return out.getvalue()


def chart_yaml(version: str) -> bytes:
    return f'apiVersion: v2\nname: app\nversion: "{version}"\n'.encode()


def helm_version(helm: Helm, archive: Path) -> str | None:
    proc = helm.run("show", "chart", str(archive), check=False)
    if proc.returncode != 0:
        return None
    line = next(x for x in proc.stdout.splitlines() if x.startswith("version:"))
    return line.split(":", 1)[1].strip()


def our_version(archive: Path) -> str | None:
    try:
        return load_archive(archive).metadata.version
    except ChartError:
        return None


FIRST = {"app/Chart.yaml": chart_yaml("1.0.0"), "app/values.yaml": b"a: 1\n"}
SECOND = {"app/Chart.yaml": chart_yaml("6.6.6")}
CASES = {
    "two streams, one tar": gzip.compress(tar_bytes(FIRST, False), mtime=0)
    + gzip.compress(tar_bytes(SECOND, True), mtime=0),
    "two streams, second after the end": gzip.compress(tar_bytes(FIRST, True), mtime=0)
    + gzip.compress(tar_bytes(SECOND, True), mtime=0),
    "trailing zeros": gzip.compress(tar_bytes(FIRST, True), mtime=0) + bytes(64),
    "trailing text": gzip.compress(tar_bytes(FIRST, True), mtime=0) + b"hello world",
    "one stream": gzip.compress(tar_bytes(FIRST, True), mtime=0),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_gzip_streams_as_helm(tmp_path: Path, helm: Helm, case: str) -> None:
    archive = tmp_path / "app-1.0.0.tgz"
    archive.write_bytes(CASES[case])
    assert our_version(archive) == helm_version(helm, archive)
    if case == "two streams, one tar":
        assert our_version(archive) == "6.6.6"


@pytest.mark.parametrize("sparse_version", ["0.0", "0.1", "1.0"])
def test_pax_sparse_files_as_helm(tmp_path: Path, helm: Helm, sparse_version: str) -> None:
    src = tmp_path / "src" / "app"
    (src / "templates").mkdir(parents=True)
    (src / "Chart.yaml").write_bytes(chart_yaml("1.0.0"))
    (src / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"
        'data: {sum: {{ .Files.Get "blob.bin" | sha256sum | quote }}}\n'
    )
    with (src / "blob.bin").open("wb") as f:
        f.write(b"head")
        f.seek(300_000)
        f.write(b"middle")
        f.seek(700_000)
        f.write(b"tail")
    archive = tmp_path / "app-1.0.0.tgz"
    subprocess.run(
        [
            *("tar", "--format=pax", "--sparse", f"--sparse-version={sparse_version}"),
            *("-czf", str(archive), "-C", str(tmp_path / "src"), "app"),
        ],
        check=True,
    )
    ours = load_archive(archive, keep_files=True).files["blob.bin"]
    assert ours == (src / "blob.bin").read_bytes()
    rendered = helm.run("template", "x", str(archive)).stdout
    assert hashlib.sha256(ours).hexdigest() in rendered
