"""``fn run`` mounts the function's volumes where it reads them in the cluster, and nowhere else."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from flotilla.fn.devloop import serve_command
from flotilla.fn.localmounts import LocalMount, mount_script
from flotilla.fn.model import FnError, load_spec

from .support import free_port, wait_http

HANDLER = """\
import os


def handle(request):
    out = {"secret": open("/etc/fnt-creds/password").read()}
    out["conf"] = sorted(os.listdir("/etc/fnt-conf"))
    try:
        open("/etc/fnt-creds/written", "w").close()
        out["secret_writable"] = True
    except OSError:
        out["secret_writable"] = False
    with open("/var/lib/fnt-data/count", "a") as f:
        f.write("x")
    out["pvc"] = open("/var/lib/fnt-data/count").read()
    open("/var/cache/fnt-scratch/t", "w").write("y")
    out["empty"] = sorted(os.listdir("/var/cache/fnt-scratch"))
    out["hosts"] = os.path.exists("/etc/hosts")  # the rest of /etc is still there
    return out
"""

VOLUMES = [
    {"path": "/etc/fnt-creds", "secret": "db"},
    {"path": "/etc/fnt-conf", "configMap": "settings"},
    {"path": "/var/lib/fnt-data", "pvc": "data"},
    {"path": "/var/cache/fnt-scratch", "emptyDir": {}},
]


def project_with(tmp_path: Path, volumes: list[dict[str, object]]) -> Path:
    project = tmp_path / "vol"
    project.mkdir()
    (project / "func.py").write_text(HANDLER)
    doc = {"name": "vol", "runtime": "python", "volumes": volumes}
    (project / "function.yaml").write_text(yaml.safe_dump(doc))
    return project


def serve_once(project: Path, scratch: Path) -> dict[str, object]:
    spec = load_spec((project / "function.yaml").read_text())
    port = free_port()
    command = serve_command(spec, project, port, scratch=scratch)
    log = scratch.with_suffix(".log")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command.argv, env=command.env, cwd=command.cwd, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/health/readiness")
        reply = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert reply.status_code == 200, reply.text + log.read_text()
        body: dict[str, object] = reply.json()
        return body
    finally:
        proc.terminate()
        proc.wait(20)  # uvicorn ends by re-raising SIGTERM: -15 is its normal end


def test_volumes_are_at_their_paths_and_only_inside_the_function(tmp_path: Path) -> None:
    project = project_with(tmp_path, VOLUMES)
    secrets = project / ".local-config" / "secrets" / "db"
    secrets.mkdir(parents=True)
    (secrets / "password").write_text("s3cret")
    settings = project / ".local-config" / "configmaps" / "settings"
    settings.mkdir(parents=True)
    (settings / "mode").write_text("fast")
    first = serve_once(project, tmp_path / "scratch-1")
    assert first == {
        "secret": "s3cret",
        "conf": ["mode"],
        "secret_writable": False,  # Secrets and ConfigMaps are read-only, as in a pod
        "pvc": "x",
        "empty": ["t"],
        "hosts": True,
    }
    second = serve_once(project, tmp_path / "scratch-2")
    assert second["pvc"] == "xx"  # the claim keeps what was written; the emptyDir starts empty
    assert second["empty"] == ["t"]
    assert (project / ".local-config" / "pvcs" / "data" / "count").read_text() == "xx"
    for path in ("/etc/fnt-creds", "/etc/fnt-conf", "/var/lib/fnt-data", "/var/cache/fnt-scratch"):
        assert not os.path.exists(path), f"{path} leaked out of the function's namespace"


def test_a_missing_secret_directory_is_one_line_naming_it(tmp_path: Path) -> None:
    project = project_with(tmp_path, VOLUMES[:1])
    spec = load_spec((project / "function.yaml").read_text())
    with pytest.raises(FnError, match=r"comes from secret db; put its files in .*secrets/db"):
        serve_command(spec, project, free_port(), scratch=tmp_path / "s")


TOP_LEVEL = """\
import os


def handle(request):
    with open("/fnt-data/count", "a") as f:
        f.write("x")
    open("/fnt-scratch/t", "w").write("y")
    return {
        "pvc": open("/fnt-data/count").read(),
        "empty": sorted(os.listdir("/fnt-scratch")),
        "cwd": os.getcwd(),
        "etc": os.path.exists("/etc/hosts"),
        "proc": os.path.exists("/proc/self/status"),
    }
"""


def test_paths_the_machine_lacks_like_slash_data_work_in_a_new_root(tmp_path: Path) -> None:
    """The docs' `/data` example: the root is overlaid and the function runs chrooted in it."""
    project = project_with(
        tmp_path, [{"path": "/fnt-data", "pvc": "data"}, {"path": "/fnt-scratch", "emptyDir": {}}]
    )
    (project / "func.py").write_text(TOP_LEVEL)
    got = serve_once(project, tmp_path / "scratch")
    assert got == {"pvc": "x", "empty": ["t"], "cwd": str(project), "etc": True, "proc": True}
    assert (project / ".local-config" / "pvcs" / "data" / "count").read_text() == "x"
    assert not os.path.exists("/fnt-data") and not os.path.exists("/fnt-scratch")


@pytest.mark.parametrize("path", ["relative/x", "/etc/../x", "/"])
def test_a_path_that_is_not_a_plain_absolute_one_is_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(FnError, match=r"needs an absolute path below / without '\.\.'"):
        mount_script([LocalMount(path, tmp_path, read_only=False)], tmp_path / "s", [])


def test_mounts_under_an_overlaid_directory_are_bound_back(tmp_path: Path) -> None:
    script = mount_script(
        [LocalMount("/etc/fnt-x", tmp_path, read_only=True)],
        tmp_path / "s",
        mountpoints=["/", "/etc/resolv.conf", "/etcetera", "/proc"],
    )
    assert "lowerdir=/etc," in script
    assert f"mount --rbind {tmp_path}/s/overlay-0/stash/resolv.conf /etc/resolv.conf" in script
    assert "/etcetera" not in script and "/proc" not in script
    assert script.splitlines()[-2] == "mount -o remount,bind,ro /etc/fnt-x"
    assert script.endswith('exec "$@"')
