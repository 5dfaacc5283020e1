"""Which files changed → live update, rebuild, re-run or reload."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from flotilla.dev.plan.context import ContextFilter, Matcher
from flotilla.dev.plan.decide import ActionKind, Copy, image_action, plan
from flotilla.dev.plan.model import (
    FallBackOn,
    ImageTarget,
    LocalResource,
    Resource,
    ResourceKind,
    Run,
    Sync,
)

CTX = "/src/app"
IMAGE = ImageTarget("example/app", CTX, live_update=(
    FallBackOn((f"{CTX}/requirements.txt",)),
    Sync(f"{CTX}/app", "/srv/app"),
    Run("touch /tmp/reload", (f"{CTX}/app/server.py",)),
    Run("echo always"),
), restart_entrypoint=("python", "/srv/app/server.py"))


def test_synced_files_are_live_updated() -> None:
    changed = {f"{CTX}/app/server.py", f"{CTX}/app/lib/util.py", f"{CTX}/app/old.py"}
    a = image_action(IMAGE, changed, exists=changed - {f"{CTX}/app/old.py"})
    assert a.kind == ActionKind.LIVE_UPDATE
    assert Copy(f"{CTX}/app/lib/util.py", "/srv/app/lib/util.py") in a.copies
    assert a.deletes == ["/srv/app/old.py"]
    assert [r.cmd for r in a.runs] == ["touch /tmp/reload", "echo always"]
    assert a.restart


def test_run_trigger_only_fires_for_its_files() -> None:
    a = image_action(IMAGE, {f"{CTX}/app/other.py"}, exists={f"{CTX}/app/other.py"})
    assert [r.cmd for r in a.runs] == ["echo always"]


def test_fall_back_on_forces_rebuild() -> None:
    changed = {f"{CTX}/requirements.txt", f"{CTX}/app/server.py"}
    a = image_action(IMAGE, changed, exists=changed)
    assert a.kind == ActionKind.REBUILD and "fall_back_on" in a.reason


def test_file_outside_every_sync_rebuilds() -> None:
    a = image_action(IMAGE, {f"{CTX}/Dockerfile"}, exists={f"{CTX}/Dockerfile"})
    assert a.kind == ActionKind.REBUILD and "matches no sync" in a.reason


def test_not_deployed_yet_builds() -> None:
    a = image_action(IMAGE, {f"{CTX}/app/x.py"}, exists=set(), deployed=False)
    assert a.kind == ActionKind.REBUILD


def test_ignored_and_unrelated_files_do_nothing() -> None:
    flt = ContextFilter(CTX, Matcher.of(["**/*.log"]), ("app", "requirements.txt"))
    assert image_action(IMAGE, {f"{CTX}/app/debug.log"}, exists=set(), flt=flt).kind == "none"
    assert image_action(IMAGE, {f"{CTX}/README.md"}, exists=set(), flt=flt).kind == "none"
    assert image_action(IMAGE, {"/elsewhere/x"}, exists=set()).kind == "none"


def test_dockerfile_change_rebuilds_even_outside_only() -> None:
    image = ImageTarget("example/app", CTX, dockerfile=f"{CTX}/Dockerfile",
                        live_update=IMAGE.live_update)
    flt = ContextFilter(CTX, Matcher.of([]), ("app",))
    a = image_action(image, {f"{CTX}/Dockerfile"}, exists=set(), flt=flt)
    assert a.kind == ActionKind.REBUILD and a.reason == "Dockerfile changed"


def test_no_live_update_rebuilds() -> None:
    plain = ImageTarget("example/plain", CTX)
    assert image_action(plain, {f"{CTX}/x"}, exists=set()).kind == ActionKind.REBUILD


def test_plan_reloads_on_config_and_reruns_local() -> None:
    lr = LocalResource("compile", "make", deps=("/src/go",))
    resources = [Resource("app", ResourceKind.K8S, images=["example/app"]),
                 Resource("compile", ResourceKind.LOCAL, local=lr)]
    images = {"example/app": IMAGE}
    plans = plan(resources, images, {"/src/go/main.go", f"{CTX}/app/a.py"},
                 exists={"/src/go/main.go", f"{CTX}/app/a.py"}, filters={},
                 deployed={"app"}, config_files={"/src/Tiltfile"})
    assert plans["compile"].kind == ActionKind.RERUN
    assert plans["app"].kind == ActionKind.LIVE_UPDATE
    reload = plan(resources, images, {"/src/Tiltfile"}, exists=set(), filters={},
                  deployed=set(), config_files={"/src/Tiltfile"})
    assert list(reload) == ["*"] and reload["*"].kind == ActionKind.RELOAD


@given(st.lists(st.from_regex(r"[a-z]{1,5}(/[a-z]{1,5}){0,3}\.py", fullmatch=True), min_size=1,
                max_size=8))
def test_every_synced_path_lands_under_the_remote_root(rels: list[str]) -> None:
    changed = {str(Path(CTX) / "app" / r) for r in rels}
    a = image_action(IMAGE, changed, exists=changed)
    assert a.kind == ActionKind.LIVE_UPDATE
    assert len(a.copies) == len(changed)
    for c in a.copies:
        assert c.remote.startswith("/srv/app/")
        assert c.remote.removeprefix("/srv/app/") == c.local.removeprefix(f"{CTX}/app/")
