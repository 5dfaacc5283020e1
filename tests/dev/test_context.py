"""Build contexts: ignore rules, content-derived tags, registry names."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from flotilla.dev.plan.context import (
    GENERATED_DOCKERFILE,
    ContextFilter,
    Matcher,
    build_context,
    context_files,
    image_filter,
    registry_ref,
)
from flotilla.dev.plan.model import ImageTarget


def test_dockerignore_semantics() -> None:
    m = Matcher.of(["# comment", "*.log", "build/", "!build/keep.txt", "**/node_modules",
                    "docs/*.md"])
    assert m.ignored("debug.log")
    assert not m.ignored("sub/debug.log")  # * does not cross directories
    assert m.ignored("build/out.bin") and not m.ignored("build/keep.txt")
    assert m.ignored("a/b/node_modules/x.js")
    assert m.ignored("docs/a.md") and not m.ignored("docs/sub/a.md")
    assert not m.ignored("src/main.py")


def test_only_and_tiltignore(tmp_path: Path) -> None:
    flt = ContextFilter(str(tmp_path), Matcher.of([]), ("app",),
                        ((str(tmp_path), Matcher.of(["app/*.tmp"])),))
    assert flt.includes(str(tmp_path / "app" / "x.py"))
    assert not flt.includes(str(tmp_path / "README.md"))
    assert not flt.includes(str(tmp_path / "app" / "x.tmp"))
    assert not flt.includes("/elsewhere/app/x.py")


def make_context(tmp_path: Path) -> ImageTarget:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print(1)\n")
    (tmp_path / "notes.log").write_text("x")
    (tmp_path / ".dockerignore").write_text("*.log\n")
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY app /app\n")
    return ImageTarget("example/app", str(tmp_path), dockerfile=str(tmp_path / "Dockerfile"))


def test_tag_follows_content_only(tmp_path: Path) -> None:
    image = make_context(tmp_path)
    tar1, tag1 = build_context(image)
    (tmp_path / "notes.log").write_text("changed, but ignored")
    assert build_context(image)[1] == tag1
    (tmp_path / "app" / "main.py").write_text("print(2)\n")
    _, tag2 = build_context(image)
    assert tag2 != tag1 and tag2.startswith("tilt-")
    with tarfile.open(fileobj=io.BytesIO(tar1)) as tar:
        names = tar.getnames()
    assert "app/main.py" in names and GENERATED_DOCKERFILE in names
    assert "notes.log" not in names
    assert context_files(image_filter(image)) == [".dockerignore", "Dockerfile", "app/main.py"]


def test_build_args_change_the_tag(tmp_path: Path) -> None:
    image = make_context(tmp_path)
    _, tag = build_context(image)
    image.build_args = {"V": "2"}
    assert build_context(image)[1] != tag


def test_restart_wrapper_is_appended(tmp_path: Path) -> None:
    image = make_context(tmp_path)
    image.restart_entrypoint = ("python", "/app/main.py")
    tar, _ = build_context(image)
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        df = archive.extractfile(GENERATED_DOCKERFILE)
        assert df is not None
        text = df.read().decode()
    assert 'ENTRYPOINT ["/bin/sh", "-c"' in text and '"python", "/app/main.py"]' in text


def test_registry_names() -> None:
    assert registry_ref("app", "127.0.0.1:5000") == "127.0.0.1:5000/app"
    assert registry_ref("gcr.io/proj/app:1", "localhost:5000") == "localhost:5000/gcr.io_proj_app"
    assert registry_ref("app", "") == "app"
    assert registry_ref("a/b", "r:1", "dev") == "r:1/dev"
