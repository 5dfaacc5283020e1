"""``flotilla.local/flotilla:<version>``: Flotilla's wheel on our python image, for in-cluster use.

The wheel is built from the source checkout (``pip wheel --no-deps``); it and its dependencies,
pinned by ``constraints.txt`` and fetched from PyPI, are installed at build time into
``/usr/local/lib/python3.11/dist-packages`` of a second layer over ``flotilla.local/python:3.11``
(Debian's python3 reads that directory), with pytest for the test step of ``fn pipeline``. The
archive is cached under a key made of the wheel's file contents and the constraints, so an
unchanged tree never rebuilds it.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import flotilla
from flotilla.testenv.errors import BuildError
from flotilla.testenv.images import (
    IMAGES,
    PYTHON_IMAGE,
    ImageSpec,
    archive_layers,
    build_image,
    images_cache_dir,
    write_image,
)

FLOTILLA_IMAGE_NAME = "flotilla.local/flotilla"
SITE_PACKAGES = "usr/local/lib/python3.11/dist-packages"
# glibc 2.36 (bookworm) runs wheels built for any manylinux_2_N up to 36.
MANYLINUX_MINORS = (17, 24, 26, 27, 28, 31, 32, 34, 35, 36)
# What `fn pipeline`'s test step runs (`flotilla fn test` of a Python function), pinned too.
EXTRA_REQUIREMENTS = ("pytest",)
ENTRYPOINT = "#!/usr/bin/python3\nimport sys\nfrom flotilla.cli import main\nsys.exit(main())\n"


def flotilla_image_reference() -> str:
    return f"{FLOTILLA_IMAGE_NAME}:{flotilla.__version__}"


def source_root() -> Path:
    """The checkout Flotilla runs from (an editable install); the image is built from it."""
    root = Path(flotilla.__file__).resolve().parents[2]
    if not (root / "pyproject.toml").exists() or not (root / "constraints.txt").exists():
        raise BuildError(f"Flotilla's image is built from a source checkout; {root} is not one")
    return root


def wheel_key(wheel: Path, constraints: Path) -> str:
    """Hash of what the wheel holds (not its zip timestamps) and of the pinned dependencies."""
    digest = hashlib.sha256(constraints.read_bytes() + "\0".join(EXTRA_REQUIREMENTS).encode())
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            digest.update(name.encode() + b"\0" + archive.read(name))
    return digest.hexdigest()[:16]


def _pip(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise BuildError(f"`pip {args[0]}` failed:\n{result.stderr.strip()[-2000:]}")


def _site_layer(target: Path) -> bytes:
    """The installed packages and the ``flotilla`` command, owned by root."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory, dirnames, filenames in os.walk(target):
            dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", "bin"))
            for name in sorted(dirnames) + sorted(filenames):
                full = Path(directory) / name
                info = tar.gettarinfo(
                    str(full), arcname=f"{SITE_PACKAGES}/{full.relative_to(target)}"
                )
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with full.open("rb") as handle:
                        tar.addfile(info, handle)
                else:
                    tar.addfile(info)
        script = ENTRYPOINT.encode()
        info = tarfile.TarInfo("usr/local/bin/flotilla")
        info.size, info.mode = len(script), 0o755
        tar.addfile(info, io.BytesIO(script))
    return out.getvalue()


def build_flotilla_image(cache: Path | None = None, root: Path | None = None) -> Path:
    """Build (or find cached) the image archive of this checkout; returns its path."""
    root = root or source_root()
    cache = cache or images_cache_dir()
    constraints = root / "constraints.txt"
    with tempfile.TemporaryDirectory(prefix="flotilla-wheel-") as tmp:
        work = Path(tmp)
        _pip("wheel", "--no-deps", "--quiet", "--wheel-dir", str(work / "wheel"), str(root))
        wheel = next((work / "wheel").glob("flotilla-*.whl"))
        key = wheel_key(wheel, constraints)
        spec = ImageSpec(flotilla_image_reference(), "flotilla", cmd=("flotilla", "--help"))
        target = cache / f"{key}-{spec.archive_name}"
        if target.exists():
            return target
        site = work / "site"
        _pip(
            "install",
            "--quiet",
            "--no-compile",
            "--target",
            str(site),
            "--constraint",
            str(constraints),
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            *(f"--platform=manylinux_2_{minor}_x86_64" for minor in MANYLINUX_MINORS),
            "--implementation",
            "cp",
            str(wheel),
            *EXTRA_REQUIREMENTS,
        )
        python = next(s for s in IMAGES if s.reference == PYTHON_IMAGE)
        base = archive_layers(build_image(python, cache=cache))
        return write_image(target, (*base, _site_layer(site)), spec)
